import numpy as np
import pytest

from t2ue.data.sets import load_pairs_file, openclipart_caption, role_split, svg_metadata
from t2ue.training.losses import clip_loss

SVG = """<?xml version="1.0"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:cc="http://web.resource.org/cc/"
     xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
 <metadata><rdf:RDF><cc:Work rdf:about="">
  <dc:title>Red  bicycle</dc:title><dc:description>A red bicycle leaning on a wall</dc:description>
  <dc:subject><rdf:Bag><rdf:li>bike</rdf:li><rdf:li>red</rdf:li></rdf:Bag></dc:subject>
  <dc:publisher><cc:Agent><dc:title>Someone</dc:title></cc:Agent></dc:publisher>
 </cc:Work></rdf:RDF></metadata></svg>"""




def test_svg_metadata_and_captions(tmp_path):
    path = tmp_path / "bike.svg"
    path.write_text(SVG)
    meta = svg_metadata(path)
    assert meta == {"title": "Red bicycle", "description": "A red bicycle leaning on a wall", "keywords": ["bike", "red"]}
    assert openclipart_caption(meta, "transportation") == "Red bicycle. A red bicycle leaning on a wall. keywords: bike, red"
    assert openclipart_caption(meta, "transportation", style="title") == "Red bicycle"


def test_role_split_is_disjoint_fixed_and_complete():
    parts = role_split(1000, seed=3)
    joined = np.concatenate(list(parts.values()))
    assert sorted(joined.tolist()) == list(range(1000))
    assert {k: len(v) for k, v in parts.items()} == {"provider": 500, "victim_train": 350, "test": 150}
    assert all(np.array_equal(parts[k], role_split(1000, seed=3)[k]) for k in parts)


def test_pairs_file_csv_and_jsonl(tmp_path):
    (tmp_path / "a.csv").write_text("image,caption,label\nx.png,a cat,pet\n/abs/y.png,a car,vehicle\n")
    data = load_pairs_file(tmp_path / "a.csv")
    assert data.images[0] == tmp_path / "x.png" and str(data.images[1]) == "/abs/y.png"
    assert data.labels.tolist() == [0, 1] and data.class_names == ("pet", "vehicle")
    (tmp_path / "b.jsonl").write_text('{"image": "x.png", "caption": "a cat"}\n')
    assert load_pairs_file(tmp_path / "b.jsonl").captions == ["a cat"]
    (tmp_path / "bad.csv").write_text("path,text\nx.png,a cat\n")
    with pytest.raises(ValueError, match="image"):
        load_pairs_file(tmp_path / "bad.csv")


def test_clip_loss_treats_repeated_captions_as_positives():
    import torch

    images = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])  # images 0 and 1 matched the other "a cat" text
    plain = clip_loss(images, texts, 10.0)
    grouped = clip_loss(images, texts, 10.0, keys=["a cat", "a cat", "a dog"])
    assert grouped < plain - 0.5
