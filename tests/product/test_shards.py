"""WebDataset tar shards (img2dataset's layout) as a data source: indexed once, images read in place."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from t2ue.data.sets import load_dataset, open_image
from t2ue.data.shards import expand_shards

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def _member(archive: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    archive.addfile(info, io.BytesIO(payload))


def _encoded(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two shards of scikit-image photos as img2dataset writes them: KEY.jpg/png + KEY.txt or KEY.json
    (+ KEY.cls), each with one caption-less sample and one orphan caption."""
    from skimage import data

    root = tmp_path_factory.mktemp("shards")
    for s in range(2):
        with tarfile.open(root / f"{s:05d}.tar", "w") as archive:
            for j, name in enumerate(PHOTOS):
                key = f"{s:05d}{j:04d}"
                pixels = getattr(data, name)()[::4, ::4]
                _member(archive, f"{key}.{'jpg' if j % 2 else 'png'}", _encoded(pixels, "JPEG" if j % 2 else "PNG"))
                if j == 3:
                    _member(archive, f"{key}.json", json.dumps({"caption": f"a  {name}\nphoto", "width": 9}).encode())
                else:
                    _member(archive, f"{key}.txt", f"a photo of the {name}\n".encode())
                _member(archive, f"{key}.cls", str(j % 2).encode())
            _member(archive, f"{s:05d}9000.jpg", _encoded(np.zeros((8, 8, 3), np.uint8), "JPEG"))  # no caption
            _member(archive, f"{s:05d}9001.txt", b"a caption without its image")
    return root


def test_shards_load_by_range_folder_and_file(shards):
    with pytest.warns(UserWarning, match="left out"):
        by_range = load_dataset(str(shards / "{00000..00001}.tar"))
    with pytest.warns(UserWarning):
        by_folder = load_dataset(str(shards))
    with pytest.warns(UserWarning):
        one = load_dataset(str(shards / "00000.tar"))
    assert len(by_range) == len(by_folder) == 8 and len(one) == 4
    assert by_range.captions[:4] == ["a photo of the astronaut", "a photo of the coffee", "a photo of the chelsea",
                                     "a rocket photo"]  # .txt first, else the JSON's caption; whitespace tidied
    assert [str(m) for m in by_range.images] == [str(m) for m in by_folder.images]
    assert str(by_range.images[5]).endswith("00001.tar:000010001.jpg")
    skipped = by_range.meta["skipped"]
    assert len(skipped) == 4 and any("000009000: no caption" in s for s in skipped)
    assert any("000009001: no image" in s for s in skipped)
    assert by_range.class_names == ("0", "1") and by_range.labels.tolist() == [0, 1] * 4


def test_shard_images_read_in_place_match_the_originals(shards):
    from skimage import data

    with pytest.warns(UserWarning):
        pairs = load_dataset(str(shards / "00000.tar"))
    with open_image(pairs.images[0]) as image:
        assert image.format == "PNG"
        assert np.array_equal(np.asarray(image), data.astronaut()[::4, ::4])
    small = pairs.materialize(32)
    assert small.images.shape == (4, 32, 32, 3) and small.images.std() > 10


def test_a_damaged_member_is_named_and_left_out(tmp_path):
    from skimage import data

    whole = _encoded(data.astronaut()[::4, ::4], "JPEG")
    cut = _encoded(data.astronaut(), "JPEG")
    with tarfile.open(tmp_path / "photos.tar", "w") as archive:
        _member(archive, "good.jpg", whole)
        _member(archive, "good.txt", b"an astronaut")
        _member(archive, "cut.jpg", cut[: len(cut) // 3])  # its header is intact, two thirds of it missing
        _member(archive, "cut.txt", b"half an astronaut")
    pairs = load_dataset(str(tmp_path / "photos.tar"))
    assert len(pairs) == len(pairs.readable()) == 2  # headers alone do not show it
    with pytest.warns(UserWarning, match=r"photos\.tar:cut\.jpg"):
        decoded = pairs.materialize(16)
    assert decoded.captions == ["an astronaut"] and "photos.tar:cut.jpg" in decoded.meta["skipped"][0]


def test_bad_shard_specs_say_what_is_wrong(shards, tmp_path):
    with pytest.raises(FileNotFoundError, match="00002.tar"):
        expand_shards(str(shards / "{00000..00002}.tar"))
    with pytest.raises(ValueError, match="backwards"):
        expand_shards(str(shards / "{00001..00000}.tar"))
    assert [p.name for p in expand_shards(str(shards / "{0000..0000}{0..1}.tar"))] == ["00000.tar", "00001.tar"]
    packed = tmp_path / "packed.tar"
    with tarfile.open(packed, "w:gz") as archive:
        _member(archive, "a.txt", b"x")
    with pytest.raises(ValueError, match="decompress"):
        load_dataset(str(packed))


def test_a_noise_generator_trains_on_shards(minilm_surrogate_dir, shards, tmp_path):
    """The provider's path end to end: `t2ue train --data SHARDS` with decoding worker processes."""
    from typer.testing import CliRunner

    from t2ue.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--data", str(shards / "{00000..00001}.tar"), "--surrogate",
                                      str(minilm_surrogate_dir), "--resolution", "16", "--steps", "3",
                                      "--batch-size", "4", "--num-workers", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "model" / "noise_model.json").read_text())["training"]
    assert summary["pairs"] == 8 and summary["skipped_files"] == 4  # samples without an image or a caption
    assert summary["steps"] == 3
