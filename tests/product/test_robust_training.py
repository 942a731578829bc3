"""Defenses and the differentiable transformations behind them and behind robust generator training."""

import json

import numpy as np
import pytest
import torch
from conftest import pillow_jpeg

from t2ue.training import transforms as T
from t2ue.training.trainer import TrainConfig, train_generator


@pytest.mark.parametrize("quality", [10, 50, 90])
def test_differentiable_jpeg_tracks_the_real_codec(photos, quality):
    x = torch.from_numpy(photos).permute(0, 3, 1, 2).float().div(255).requires_grad_(True)
    approx = T.jpeg(x, quality)
    approx.sum().backward()
    assert x.grad.abs().sum() > 0  # gradients reach the pixels
    ours = approx.detach().permute(0, 2, 3, 1).numpy() * 255
    real = np.stack([pillow_jpeg(p, quality) for p in photos])
    codec_change = np.abs(real - photos).mean()
    assert np.abs(ours - real).mean() < 0.35 * codec_change, (np.abs(ours - real).mean(), codec_change)


def test_robust_training_draws_transformations_by_step(minilm_surrogate_dir, tiny_pairs, tmp_path):
    from t2ue.models.generators import T2UEGenerator
    from t2ue.models.surrogates import load_surrogate

    x = torch.rand(2, 3, 32, 32)
    first = T.random_transformation(x, torch.Generator().manual_seed(5))
    assert torch.equal(first, T.random_transformation(x, torch.Generator().manual_seed(5)))
    surrogate = load_surrogate(minilm_surrogate_dir)
    generator = T2UEGenerator(text_dim=surrogate.embed_dim, resolution=32)
    model = train_generator(generator, surrogate, tiny_pairs, tmp_path / "run",
                            TrainConfig(steps=4, batch_size=8, checkpoint_every=1000, robust=True), progress=False)
    saved = json.loads((tmp_path / "run" / "model" / "noise_model.json").read_text())
    assert saved["training"]["robust"] is True
    assert model.generate(["a ginger cat"]).abs().max() <= 8 / 255 + 1e-6


def test_bundled_robust_model_loads_by_name():
    from t2ue import noise_from_text
    from t2ue.api import load_noise_model

    robust = load_noise_model("robust")
    assert robust.metadata["training"]["robust"] is True
    assert load_noise_model("default").metadata["training"].get("robust", False) is False
    a = noise_from_text("a red bicycle leaning on a wall", model="robust", size=32)
    b = noise_from_text("a red bicycle leaning on a wall", model="default", size=32)
    assert a.abs().max() <= 8 / 255 + 1e-6 and not torch.allclose(a, b)


def test_luma_generator_noise_passes_grayscale_and_round_trips(minilm_surrogate_dir, tiny_pairs, tmp_path):
    from t2ue.models.generators import T2UEGenerator
    from t2ue.models.noise_model import NoiseModel
    from t2ue.models.surrogates import load_surrogate

    surrogate = load_surrogate(minilm_surrogate_dir)
    torch.manual_seed(0)  # the generator's initial weights come from the global generator, whatever ran before
    generator = T2UEGenerator(text_dim=surrogate.embed_dim, resolution=32, luma=True)
    model = train_generator(generator, surrogate, tiny_pairs, tmp_path / "run",
                            TrainConfig(steps=2, batch_size=8, checkpoint_every=1000, robust=True), progress=False)
    delta = model.generate(["a ginger cat", "a blue kite"], seed=1)
    assert 1 / 255 < delta.abs().max() <= 8 / 255 + 1e-6
    assert torch.equal(delta[:, 0], delta[:, 1]) and torch.equal(delta[:, 0], delta[:, 2])
    x = 8 / 255 + (1 - 16 / 255) * torch.rand(2, 3, 32, 32)  # away from 0 and 1: no clipping
    assert torch.allclose(T.grayscale(x + delta) - T.grayscale(x), delta, atol=1e-6)
    reloaded = NoiseModel.from_pretrained(tmp_path / "run" / "model")
    assert reloaded.generator.config["luma"] is True
    assert torch.equal(reloaded.generate(["a ginger cat", "a blue kite"], seed=1), delta)


def test_luma_noise_keeps_more_of_itself_through_real_jpeg(photos):
    """Why the luma option exists: Pillow's JPEG (4:2:0) keeps more of a grey perturbation than of a coloured
    one with the same per-pixel budget."""
    rng = np.random.default_rng(0)
    sign = rng.choice([-1.0, 1.0], size=(*photos.shape[:3], 3))
    kept = {}
    for name, noise in {"rgb": 8 * sign, "luma": 8 * sign[..., :1].repeat(3, axis=-1)}.items():
        kept[name] = []
        for image, delta in zip(photos, noise):
            base = image.astype(np.float64).clip(8, 247)
            protected = (base + delta).astype(np.uint8)
            residual = pillow_jpeg(protected, 75) - pillow_jpeg(base.astype(np.uint8), 75)
            kept[name].append((residual * delta).sum() / (delta * delta).sum())
    assert np.mean(kept["luma"]) > np.mean(kept["rgb"]) + 0.05, kept


def test_luma_is_refused_for_the_unet_generator(tmp_path):
    from typer.testing import CliRunner

    from t2ue.cli import app

    result = CliRunner().invoke(app, ["train", "--data", "fashion-mnist", "--generator", "unet", "--luma",
                                      "-o", str(tmp_path / "x")])
    assert result.exit_code != 0 and "--luma" in result.output
    assert not (tmp_path / "x").exists()


def test_eot_presets_standard_recipe_unchanged_and_strong_reaches_the_breaking_defenses():
    """The standard preset keeps the bundled robust model's draws; "strong" adds grayscale and JPEG 10."""
    x = torch.rand(2, 3, 32, 32)
    for seed in range(12):  # the standard recipe, written out: kind from the first draw, strength from the second
        d0, d1 = torch.rand(2, generator=torch.Generator().manual_seed(seed)).tolist()
        kind = ("identity", "jpeg", "rescale", "blur")[int(d0 * 4)]
        expected = {"identity": x, "jpeg": T.jpeg(x, 30 + 65 * d1), "rescale": T.rescale(x, 0.5 + 0.5 * d1),
                    "blur": T.gaussian_blur(x, 0.5 + d1)}[kind]
        assert torch.equal(T.random_transformation(x, torch.Generator().manual_seed(seed)), expected)
    strong = T.EOT_PRESETS["strong"]
    assert "grayscale" in strong.kinds and strong.jpeg_quality[0] <= 10
    outputs = [T.random_transformation(x, torch.Generator().manual_seed(s), strong) for s in range(40)]
    assert any(torch.equal(out, T.grayscale(x)) for out in outputs)


def test_augment_eot_draws_uerasers_augmentations():
    """"augment" keeps the standard kinds and adds crop, plasma, colour jitter and channel shuffle, each
    the defense's own transformation with the same random draws."""
    augment = T.EOT_PRESETS["augment"]
    assert set(T.EOT_PRESETS["standard"].kinds) < set(augment.kinds)
    x = torch.rand(2, 3, 16, 16)
    seen = set()
    for seed in range(60):
        d0 = torch.rand(2, generator=torch.Generator().manual_seed(seed)).tolist()[0]
        kind = augment.kinds[int(d0 * len(augment.kinds))]
        fn = {"crop": T.random_resized_crop, "plasma": T.plasma, "jitter": T.colour_jitter,
              "shuffle": T.channel_shuffle}.get(kind)
        if fn is None:
            continue
        generator = torch.Generator().manual_seed(seed)
        out = T.random_transformation(x, generator, augment)
        replay = torch.Generator().manual_seed(seed)
        torch.rand(2, generator=replay)
        assert torch.equal(out, fn(x, replay)) and not torch.equal(out, x)
        seen.add(kind)
    assert seen == {"crop", "plasma", "jitter", "shuffle"}


def test_strong_eot_is_recorded_and_refused_without_robust(minilm_surrogate_dir, tiny_pairs, tmp_path):
    from typer.testing import CliRunner

    from t2ue.cli import app
    from t2ue.models.generators import T2UEGenerator
    from t2ue.models.surrogates import load_surrogate

    surrogate = load_surrogate(minilm_surrogate_dir)
    generator = T2UEGenerator(text_dim=surrogate.embed_dim, resolution=32)
    train_generator(generator, surrogate, tiny_pairs, tmp_path / "run",
                    TrainConfig(steps=5, batch_size=8, checkpoint_every=1000, robust=True, eot="strong"), progress=False)
    saved = json.loads((tmp_path / "run" / "model" / "noise_model.json").read_text())
    assert saved["training"]["eot"] == "strong"
    with pytest.raises(ValueError, match="EOT preset"):
        train_generator(generator, surrogate, tiny_pairs, tmp_path / "bad", TrainConfig(steps=1, eot="jpeg-only"))
    result = CliRunner().invoke(app, ["train", "--data", "fashion-mnist", "--eot", "strong", "-o", str(tmp_path / "x")])
    assert result.exit_code != 0 and "--robust" in result.output
    assert not (tmp_path / "x").exists()
