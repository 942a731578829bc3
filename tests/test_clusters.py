import itertools

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from t2ue import noise_from_text
from t2ue.api import load_noise_model
from t2ue.cli import app
from t2ue.models.cluster_fitting import cluster_noise_for, fit_cluster_noise
from t2ue.models.clusters import ClusterNoise, separate_patterns
from t2ue.models.noise_model import NoiseModel

TEXTS = ["a ginger cat asleep on a sofa", "a tabby cat on a windowsill", "a black cat in the garden",
         "a rocket on the launch pad", "a rocket lifting off into the sky", "the space shuttle on its pad",
         "a cup of coffee on a saucer", "an espresso in a white cup", "a latte with milk foam art"]


def test_cluster_members_share_noise_within_budget(tiny_noise_model_dir):
    noise = noise_from_text(TEXTS, size=16, model=tiny_noise_model_dir, mode="cluster", n_clusters=3, seed=0)
    assert noise.shape == (9, 3, 16, 16) and noise.abs().max() <= 8 / 255 + 1e-7
    distinct = torch.unique(noise.reshape(9, -1), dim=0)
    assert len(distinct) == 3  # three clusters, three perturbations shared by their members
    smaller = noise_from_text(TEXTS, size=16, model=tiny_noise_model_dir, mode="cluster", n_clusters=3,
                              epsilon="4/255")
    assert smaller.abs().max() <= 4 / 255 + 1e-7


def test_cluster_assignment_is_stable_and_reloads(tiny_noise_model_dir, tmp_path):
    model = load_noise_model(tiny_noise_model_dir)
    first = fit_cluster_noise(model, TEXTS, 3, seed=0)
    second = fit_cluster_noise(model, list(reversed(TEXTS)), 3, seed=0)
    owners = first.assign(model.text_encoder.encode(TEXTS))
    again = second.assign(model.text_encoder.encode(TEXTS))
    same_partition = (owners[:, None] == owners[None, :]) == (again[:, None] == again[None, :])
    assert bool(same_partition.all())
    first.save_pretrained(tmp_path / "clusters")
    loaded = ClusterNoise.from_pretrained(tmp_path / "clusters")
    tomorrow = ["a grey cat on the stairs"]
    assert torch.equal(cluster_noise_for(model, loaded, tomorrow), cluster_noise_for(model, first, tomorrow))
    via_api = noise_from_text(tomorrow, size=None, model=tiny_noise_model_dir, mode="cluster",
                              clusters=tmp_path / "clusters")
    assert torch.allclose(via_api, cluster_noise_for(model, first, tomorrow))


def test_uc_maker_fits_reference_images(tiny_noise_model_dir, tiny_pairs):
    """UC perturbations pull members' surrogate features towards the next cluster's centre."""
    model = load_noise_model(tiny_noise_model_dir)
    images = torch.nn.functional.interpolate(torch.from_numpy(tiny_pairs.images).permute(0, 3, 1, 2).float() / 255,
                                             size=16, mode="bilinear", antialias=True)
    fitted = fit_cluster_noise(model, tiny_pairs.captions, 2, maker="uc", reference_images=images,
                               reference_texts=tiny_pairs.captions, steps=30, lr=0.1)
    assert fitted.patterns.abs().max() <= model.epsilon + 1e-7
    owners = fitted.assign(model.text_encoder.encode(tiny_pairs.captions))
    targets = fitted.centres.roll(-1, dims=0)[owners]
    with torch.no_grad():
        before = (model.surrogate.encode_image(images) * targets).sum(1).mean()
        after = (model.surrogate.encode_image((images + fitted.patterns[owners]).clamp(0, 1)) * targets).sum(1).mean()
    assert after > before
    with pytest.raises(ValueError, match="reference images"):
        fit_cluster_noise(model, tiny_pairs.captions, 2, maker="uc")


def test_too_few_descriptions_is_a_clear_error(tiny_noise_model_dir):
    with pytest.raises(ValueError, match="3 clusters need at least 3 distinct"):
        noise_from_text(["a cat", "a cat"], model=tiny_noise_model_dir, mode="cluster", n_clusters=3)


def test_cli_protect_cluster_mode_saves_and_reuses_clusters(tiny_noise_model_dir, tmp_path):
    from PIL import Image
    from skimage import data as skdata

    photos = []
    for name in ["astronaut", "coffee", "chelsea", "rocket"]:
        path = tmp_path / f"{name}.png"
        Image.fromarray(getattr(skdata, name)()).convert("RGB").resize((40, 30)).save(path)
        photos.append(path)
    captions = tmp_path / "captions.csv"
    captions.write_text("image,caption\n" + "\n".join(f"{p.name},{TEXTS[3 * (i % 3)]}" for i, p in enumerate(photos)))
    runner = CliRunner()
    args = ["protect", *map(str, photos), "--captions", str(captions), "--model", str(tiny_noise_model_dir),
            "--mode", "cluster", "--clusters", "2"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "clusters" / "clusters.json").is_file() and "2 clusters fitted" in result.output
    again = runner.invoke(app, [*args, "-o", str(tmp_path / "out2"), "--cluster-dir", str(tmp_path / "out" / "clusters")])
    assert again.exit_code == 0 and "reusing the clusters" in again.output
    for photo in photos:
        a = np.asarray(Image.open(tmp_path / "out" / photo.name), dtype=int)
        b = np.asarray(Image.open(tmp_path / "out2" / photo.name), dtype=int)
        assert np.array_equal(a, b) and np.abs(a - np.asarray(Image.open(photo), dtype=int)).max() <= 8


def test_clusters_save_and_load_with_the_noise_model(tiny_noise_model_dir, tmp_path):
    from PIL import Image
    from skimage import data as skdata

    descriptions = tmp_path / "descriptions.txt"
    descriptions.write_text("\n".join(TEXTS) + "\n\n")
    runner = CliRunner()
    made = runner.invoke(app, ["fit-clusters", str(descriptions), "-k", "3", "--model", str(tiny_noise_model_dir),
                               "-o", str(tmp_path / "with-clusters")])
    assert made.exit_code == 0, made.output
    model = load_noise_model(tmp_path / "with-clusters")
    base = load_noise_model(tiny_noise_model_dir)
    assert model.clusters is not None and model.clusters.k == 3 and base.clusters is None
    assert torch.equal(model.clusters.centres, fit_cluster_noise(base, TEXTS, 3, seed=0).centres)
    tomorrow = ["a grey cat on the stairs", "a rocket on the pad"]
    # mode="cluster" with no clusters given reuses the model's instead of fitting new ones on two texts
    assert torch.equal(noise_from_text(tomorrow, size=None, model=tmp_path / "with-clusters", mode="cluster"),
                       cluster_noise_for(base, model.clusters, tomorrow))
    photo = tmp_path / "cat.png"
    Image.fromarray(skdata.chelsea()).resize((40, 30)).save(photo)
    used = runner.invoke(app, ["protect", str(photo), "--text", tomorrow[0], "--mode", "cluster",
                               "--model", str(tmp_path / "with-clusters"), "-o", str(tmp_path / "out")])
    assert used.exit_code == 0 and "3 clusters saved with the noise model" in used.output, used.output
    assert not (tmp_path / "out" / "clusters").exists()
    again = runner.invoke(app, ["fit-clusters", str(descriptions), "-o", str(tmp_path / "with-clusters")])
    assert again.exit_code == 2 and "not empty" in again.output
    (tmp_path / "with-clusters" / "clusters" / "clusters.json").write_text('{"k": 4, "epsilon": 0.03}')
    with pytest.raises(ValueError, match="does not match"):
        NoiseModel.from_pretrained(tmp_path / "with-clusters")


def test_cluster_methods_in_the_evaluator(tiny_noise_model_dir, tiny_pairs):
    from PIL import Image

    from t2ue.data.sets import ImageTextSet
    from t2ue_eval.registry import parse_method

    images = np.stack([np.asarray(Image.fromarray(im).resize((16, 16))) for im in tiny_pairs.images])
    data = ImageTextSet(images, tiny_pairs.captions)
    text = parse_method(f"t2ue-cluster:model={tiny_noise_model_dir},clusters=4").noise(data, 8 / 255, seed=0)
    assert len(text.levels) == 4 and set(text.index) <= set(range(4)) and np.abs(text.levels).max() <= 8
    coarse = parse_method(f"t2ue-cluster:model={tiny_noise_model_dir},clusters=2").noise(data, 8 / 255, seed=0)
    layered = parse_method(f"t2ue-cluster:model={tiny_noise_model_dir},clusters=2+4").noise(data, 8 / 255, seed=0)
    pairs = sorted(set(zip(coarse.index.tolist(), text.index.tolist())))
    assert len(layered.levels) == len(pairs) and np.abs(layered.levels).max() <= 8  # one pattern per (K=2, K=4) pair
    for i, j in itertools.product(range(len(data)), repeat=2):  # shared exactly when both groups are
        same = coarse.index[i] == coarse.index[j] and text.index[i] == text.index[j]
        assert (layered.index[i] == layered.index[j]) == same
    mean = (coarse.levels[coarse.index].astype(float) + text.levels[text.index]) / 2  # the mean of the two layers
    assert np.abs(layered.levels[layered.index] - mean).max() <= 1.0
    with pytest.raises(ValueError, match="distinct"):
        parse_method(f"t2ue-cluster:model={tiny_noise_model_dir},clusters=4+4").noise(data, 8 / 255, seed=0)
    uc = parse_method(f"uc:model={tiny_noise_model_dir},clusters=3,steps=5")
    assert uc.needs_photo and not parse_method("t2ue-cluster").needs_photo
    image_based = uc.noise(data, 4 / 255, seed=0)
    assert len(image_based.levels) == 3 and np.abs(image_based.levels).max() <= 4 and image_based.gradient_steps > 0


def test_separated_patterns_keep_only_their_differences(tiny_noise_model_dir, tiny_pairs):
    from PIL import Image

    from t2ue.data.sets import ImageTextSet
    from t2ue_eval.registry import parse_method

    eps = 8 / 255
    shared = torch.linspace(-eps, eps, 3 * 8 * 8).reshape(1, 3, 8, 8)
    own = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * eps / 4
    patterns = (0.8 * shared + own).clamp(-eps, eps)
    signs = separate_patterns(patterns, eps)
    assert torch.allclose(signs.abs(), torch.full_like(signs, eps))  # saturated: every value at the budget's edge
    assert torch.equal(torch.sign(signs), torch.sign(patterns - patterns.mean(0)))  # the shared part is gone
    doubled = separate_patterns(patterns, eps, "2")
    assert doubled.abs().max() <= eps + 1e-7
    inside = (2 * (patterns - patterns.mean(0))).abs() < eps  # where the projection did not clip
    assert torch.allclose(doubled[inside], 2 * (patterns - patterns.mean(0))[inside])
    gap = (patterns[0] - patterns[1]).norm()
    assert (signs[0] - signs[1]).norm() > gap and (doubled[0] - doubled[1]).norm() > gap  # clusters further apart
    with pytest.raises(ValueError, match="two clusters"):
        separate_patterns(patterns[:1], eps)
    for bad in ("lots", 0, "-1"):
        with pytest.raises(ValueError, match="sign or a gain"):
            separate_patterns(patterns, eps, bad)

    images = np.stack([np.asarray(Image.fromarray(im).resize((16, 16))) for im in tiny_pairs.images])
    data = ImageTextSet(images, tiny_pairs.captions)
    plain = parse_method(f"t2ue-cluster:model={tiny_noise_model_dir},clusters=4")
    separated = parse_method(f"t2ue-cluster:model={tiny_noise_model_dir},clusters=4,separate=sign")
    assert "separate" not in plain.spec() and plain.fingerprint() != separated.fingerprint()
    noise = separated.noise(data, eps, seed=0)
    assert np.array_equal(noise.index, plain.noise(data, eps, seed=0).index)  # same clusters, other patterns
    assert np.abs(noise.levels).max() == 8 and np.abs(noise.levels.astype(float).mean(axis=0)).max() < 8
    with pytest.raises(ValueError, match="separate"):
        parse_method(f"t2ue-cluster:model={tiny_noise_model_dir},separate=lots").noise(data, eps, seed=0)


def test_users_fit_separated_clusters_and_keep_them(tiny_noise_model_dir, tmp_path):
    from PIL import Image
    from skimage import data as skdata

    model = load_noise_model(tiny_noise_model_dir)
    plain = noise_from_text(TEXTS, size=None, model=model, mode="cluster", n_clusters=3)
    signs = noise_from_text(TEXTS, size=None, model=model, mode="cluster", n_clusters=3, separate="sign")
    groups = torch.unique(plain.reshape(9, -1), dim=0, return_inverse=True)[1]
    assert torch.equal(torch.unique(signs.reshape(9, -1), dim=0, return_inverse=True)[1], groups)  # same groups
    assert torch.allclose(signs.abs(), torch.full_like(signs, model.epsilon))
    fitted = fit_cluster_noise(model, TEXTS, 3, separate="sign")
    assert fitted.meta["separate"] == "sign" and "separate" not in fit_cluster_noise(model, TEXTS, 3).meta
    with pytest.raises(ValueError, match="when clusters are fitted"):
        noise_from_text(TEXTS, model=model, mode="cluster", clusters=fitted, separate="sign")
    with pytest.raises(ValueError, match="when clusters are fitted"):
        noise_from_text(TEXTS, model=model, mode="sample", separate="sign")

    photo = tmp_path / "cat.png"
    Image.fromarray(skdata.chelsea()).resize((40, 30)).save(photo)
    runner = CliRunner()
    args = ["protect", str(photo), "--text", TEXTS[0], "--model", str(tiny_noise_model_dir), "--mode", "cluster",
            "--clusters", "2"]
    bad = runner.invoke(app, [*args, "--separate", "lots", "-o", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "sign or a gain" in bad.output and not (tmp_path / "bad" / "cat.png").exists()
    descriptions = tmp_path / "descriptions.txt"
    descriptions.write_text("\n".join(TEXTS))
    made = runner.invoke(app, ["fit-clusters", str(descriptions), "-k", "3", "--separate", "sign", "--model",
                               str(tiny_noise_model_dir), "-o", str(tmp_path / "model")])
    assert made.exit_code == 0, made.output
    kept = load_noise_model(tmp_path / "model").clusters
    assert kept.meta["separate"] == "sign" and torch.equal(kept.patterns, fitted.patterns)
    reuse = runner.invoke(app, ["protect", str(photo), "--text", TEXTS[0], "--mode", "cluster", "--separate", "sign",
                                "--model", str(tmp_path / "model"), "-o", str(tmp_path / "out")])
    assert reuse.exit_code == 2 and "brings its own" in reuse.output


def test_exploiter_views_change_labels_not_pixels():
    from t2ue.data.sets import FASHION_MNIST_CLASSES, ImageTextSet
    from t2ue_eval.views import REWORDED_FASHION_CLASSES, exploiter_view

    images = np.zeros((10, 4, 4, 3), np.uint8)
    data = ImageTextSet(images, [f"a photo of a {c}" for c in FASHION_MNIST_CLASSES], np.arange(10),
                        FASHION_MNIST_CLASSES, "fashion-mnist")
    coarse = exploiter_view("coarse-labels", data, "fashion-mnist", 4, "test", None)
    assert coarse.images is images and coarse.class_names == ("top", "trousers", "footwear", "bag")
    assert list(coarse.labels) == [0, 1, 0, 0, 0, 2, 0, 2, 3, 2]
    alt = exploiter_view("coarse-labels-alt", data, "fashion-mnist", 4, "test", None)  # dresses beside trousers
    assert alt.class_names[1] == "trousers or dress" and list(alt.labels) == [0, 1, 0, 1, 0, 2, 0, 2, 3, 2]
    nested = [exploiter_view(f"coarse-labels-{g}", data, "fashion-mnist", 4, "test", None).labels for g in (8, 5)]
    nested += [alt.labels, exploiter_view("coarse-labels-2", data, "fashion-mnist", 4, "test", None).labels]
    for fine, coarse in zip([np.arange(10), *nested], nested):  # each level merges groups of the one above
        assert all(len(set(coarse[fine == g])) == 1 for g in set(fine)) and len(set(coarse)) < len(set(fine))
    assert [len(set(labels)) for labels in nested] == [8, 5, 4, 2]
    easy = exploiter_view("coarse-labels-8-easy", data, "fashion-mnist", 4, "test", None).labels
    assert len(set(easy)) == 8 and len(set(easy[[0, 2, 4, 6, 5, 7, 9]])) == 7  # tops and shoes still all apart
    assert exploiter_view("same", data, "fashion-mnist", 4, "test", None) is data
    reworded = exploiter_view("reworded-captions", data, "fashion-mnist", 4, "test", None)
    assert reworded.images is images and list(reworded.labels) == list(range(10))
    assert reworded.class_names == REWORDED_FASHION_CLASSES and reworded.meta["templates"] != data.meta.get("templates")
    for caption, name in zip(reworded.captions, REWORDED_FASHION_CLASSES):  # the exploiter's words, not the protector's
        assert name in caption and "photo" not in caption
    with pytest.raises(ValueError, match="fashion-mnist"):
        exploiter_view("reworded-captions", ImageTextSet(images, data.captions, name="openclipart"), "openclipart", 4,
                       "test", None)
    with pytest.raises(ValueError, match="openclipart"):
        exploiter_view("title-captions", data, "fashion-mnist", 4, "test", None)


def test_damaged_clusters_folder_is_named(tmp_path):
    from t2ue.models.clusters import CLUSTER_CONFIG, ClusterNoise

    (tmp_path / CLUSTER_CONFIG).write_text('{"k": 3,')
    with pytest.raises(ValueError, match=f"{tmp_path}: not a readable clusters folder"):
        ClusterNoise.from_pretrained(tmp_path)
