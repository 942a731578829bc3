
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from t2ue import noise_from_text
from t2ue.api import load_noise_model
from t2ue.cli import app
from t2ue.models.cluster_fitting import cluster_noise_for, fit_cluster_noise
from t2ue.models.clusters import ClusterNoise
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


def test_damaged_clusters_folder_is_named(tmp_path):
    from t2ue.models.clusters import CLUSTER_CONFIG, ClusterNoise

    (tmp_path / CLUSTER_CONFIG).write_text('{"k": 3,')
    with pytest.raises(ValueError, match=f"{tmp_path}: not a readable clusters folder"):
        ClusterNoise.from_pretrained(tmp_path)
