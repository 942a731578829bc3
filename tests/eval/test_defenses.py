"""Defenses and the differentiable transformations behind them and behind robust generator training."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import pillow_jpeg

from t2ue.training import transforms as T
from t2ue.training.trainer import TrainConfig, train_generator
from t2ue_eval.defenses import DEFENSES, parse_defense
from t2ue_eval.report import load_results, tables, write_report
from t2ue_eval.runner import EvalPlan, RunConfig, run_one
from t2ue_eval.victims import Classifier, VictimRecipe, classifier_losses


def test_defense_specs_and_chains():
    assert {"jpeg", "grayscale", "blur", "bit-depth", "median", "noise-rescale", "strong-aug", "ueraser",
            "pgd-at"} <= set(DEFENSES)
    assert parse_defense("none").spec() == "none" and parse_defense("").spec() == "none"
    chain = parse_defense("jpeg:quality=10+grayscale")
    assert chain.spec() == "jpeg:quality=10+grayscale" and not chain.trains
    assert parse_defense("ueraser").spec() == "ueraser:copies=5" and parse_defense("ueraser").trains
    with pytest.raises(ValueError, match="unknown defense"):
        parse_defense("wash")
    with pytest.raises(ValueError, match="takes"):
        parse_defense("jpeg:q=10")


def test_purification_is_real_and_leaves_the_input(photos):
    original = photos.copy()
    jpeg = parse_defense("jpeg:quality=50").purify_images(photos, seed=0)
    assert np.array_equal(photos, original)
    assert np.array_equal(jpeg, np.stack([pillow_jpeg(p, 50) for p in photos]).astype(np.uint8))
    chain = parse_defense("grayscale+jpeg:quality=50")
    train, test = chain.purify_images(photos, 0), chain.purify_images(photos, 0, test=True)
    assert train.dtype == np.uint8 and not np.array_equal(train, test)  # JPEG is for scraped training data only
    assert np.abs(test.astype(int)[..., 0] - test[..., 2]).max() == 0  # grayscale also at test time
    noisy = parse_defense("noise-rescale")
    assert np.array_equal(noisy.purify_images(photos, 3), noisy.purify_images(photos, 3))
    assert not np.array_equal(noisy.purify_images(photos, 3), noisy.purify_images(photos, 4))


def test_ueraser_parts_can_be_left_out_for_ablation(photos):
    pixels = torch.from_numpy(photos).permute(0, 3, 1, 2).float() / 255
    assert parse_defense("ueraser:copies=2").spec() == "ueraser:copies=2"  # run names stay as they were
    shuffle_only = parse_defense("ueraser:copies=2,skip=crop/plasma/jitter")
    assert shuffle_only.spec() == "ueraser:copies=2,skip=crop/plasma/jitter"
    out = shuffle_only.parts[0].augment(pixels, torch.Generator().manual_seed(0))
    # only the channel order changes: every pixel keeps its three values
    assert torch.equal(out.sort(dim=1).values, pixels.sort(dim=1).values) and not torch.equal(out, pixels)
    full = parse_defense("ueraser:copies=2").parts[0].augment(pixels, torch.Generator().manual_seed(0))
    assert not torch.allclose(full.sort(dim=1).values, pixels.sort(dim=1).values, atol=1e-3)
    with pytest.raises(ValueError, match="crop, plasma, shuffle, jitter, not blurr"):
        parse_defense("ueraser:skip=blurr")


def test_worst_of_copies_and_adversarial_training(photos):
    pixels = torch.from_numpy(photos).permute(0, 3, 1, 2).float() / 255

    def brightness_loss(x, frozen=False):
        return x.mean(dim=(1, 2, 3))

    ueraser = parse_defense("ueraser:copies=3")
    value = ueraser.training_loss(brightness_loss, pixels, torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    copies = torch.stack([brightness_loss(ueraser.parts[0].augment(pixels, generator)) for _ in range(3)])
    assert torch.allclose(value, copies.amax(0).mean()) and value > copies.mean(0).mean()

    torch.manual_seed(0)
    model = Classifier("resnet18", 4).eval()
    loss_fn = classifier_losses(model, torch.arange(4))
    attack = parse_defense("pgd-at:steps=3").parts[0]
    adversarial = attack.attack(loss_fn, pixels, torch.Generator().manual_seed(0))
    assert (adversarial - pixels).abs().max() <= 8 / 255 + 1e-6
    assert loss_fn(adversarial).mean() > loss_fn(pixels).mean()


def test_runs_record_defenses_and_keep_old_ids(photo_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("T2UE_CACHE", str(tmp_path / "cache"))
    recipe = VictimRecipe(epochs=1, batch_size=8, warmup_steps=1)
    plain = RunConfig(str(photo_folder), "random", recipe)
    assert "defense" not in plain.as_dict() and "def-" not in plain.run_id()
    out = tmp_path / "runs"
    plan = EvalPlan(str(photo_folder), methods=["none", "random"], defenses=["none", "grayscale", "strong-aug"],
                    recipe={"epochs": 1, "batch_size": 8, "warmup_steps": 1})
    runs = plan.runs()
    assert len(runs) == 6 and sorted(r.run_id() for r in runs[0::2] + runs[1::2]) == sorted(r.run_id() for r in runs)
    for config in runs:
        result = run_one(config, out, progress=False)
        assert result["defense"]["spec"] == config.defense
        assert result["defense"]["in_training"] == (config.defense == "strong-aug")
    report = write_report(out, tmp_path / "report")
    markdown = report["markdown"].read_text()
    assert "method × defense" in markdown and "grayscale" in markdown
    assert any(name.endswith("-defenses") for name in report)
    (table,) = tables(load_results(out))
    rows = {row["method"]: row for row in table.defense_matrix()}
    assert set(rows["random"]["cells"]) == {"none", "grayscale", "strong-aug"}
    clean = rows["none"]["cells"]["none"]
    assert clean[1] == pytest.approx(1.0)


def test_committed_run_ids_are_unchanged():
    from pathlib import Path

    for path in sorted(Path("eval/results/runs").glob("openclipart-*seed0*.json"))[:5]:
        saved = json.loads(path.read_text())
        config = dict(saved["config"])
        config["victim"] = VictimRecipe(**config["victim"])
        assert RunConfig(**config).run_id() == saved["run_id"], path.name


def test_research_variants_resolve_by_name_in_the_evaluator():
    from t2ue import noise_from_text
    from t2ue.api import load_noise_model
    from t2ue_eval.methods import resolve_model

    def load(name):
        return load_noise_model(resolve_model(name))

    strong = load("robust-strong")
    assert strong.metadata["training"]["robust"] is True and strong.metadata["training"]["eot"] == "strong"
    assert load("robust-augment").metadata["training"]["eot"] == "augment"
    assert load("robust-ueraser").metadata["training"]["eot"] == "ueraser"
    assert load("robust-shuffle").metadata["training"]["eot"] == "shuffle"
    assert load("robust-depth").metadata["training"]["eot"] == "depth"
    hardened = load("robust-ueraser-surrogate")  # its own surrogate, trained under UEraser, with it
    assert hardened.metadata["training"]["eot"] == "ueraser" and hardened.text_encoder_spec is None
    assert "ueraser augmentation" in (resolve_model("robust-ueraser-surrogate") / "surrogate" / "README.md").read_text()
    luma = load("robust-luma")
    assert luma.metadata["training"]["robust"] is True and luma.generator.config["luma"] is True
    grey = noise_from_text("a red bicycle leaning on a wall", model=resolve_model("robust-luma"), size=32)
    assert grey.abs().max() <= 8 / 255 + 1e-6 and torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 0], grey[:, 2])


def test_depth_eot_quantises_as_the_defense_does_with_a_straight_through_gradient():
    """"depth" keeps the standard kinds and adds colour-depth reduction to 3-5 bits: the bit-depth
    defense's own quantisation, through which the generator still receives a gradient."""
    depth = T.EOT_PRESETS["depth"]
    assert set(T.EOT_PRESETS["standard"].kinds) < set(depth.kinds) and "bits" in depth.kinds
    x = torch.rand(2, 3, 16, 16)
    seen = set()
    for seed in range(80):
        d0, d1 = torch.rand(2, generator=torch.Generator().manual_seed(seed)).tolist()
        if depth.kinds[int(d0 * len(depth.kinds))] != "bits":
            continue
        bits = round(3 + 2 * d1)
        pixels = x.clone().requires_grad_(True)
        out = T.random_transformation(pixels, torch.Generator().manual_seed(seed), depth)
        expected = parse_defense(f"bit-depth:bits={bits}").parts[0].purify(x, torch.Generator())
        assert torch.equal(out.detach(), expected) and len(torch.unique(out.detach())) <= 2**bits
        (grad,) = torch.autograd.grad(out.sum(), [pixels])
        assert torch.equal(grad, torch.ones_like(x))
        seen.add(bits)
    assert seen == {3, 4, 5}


def test_ueraser_eot_is_the_defenses_own_augmentation_worst_of_two(minilm_surrogate_dir, tiny_pairs, tmp_path):
    """"ueraser" draws exactly what the UEraser defense trains on, two copies per step, and a generator
    trains under it (the per-pair worst copy is what it minimises)."""
    from t2ue.models.generators import T2UEGenerator
    from t2ue.models.surrogates import load_surrogate

    preset = T.EOT_PRESETS["ueraser"]
    assert preset.copies == 2 and preset.kinds == ("ueraser",)
    x = torch.rand(3, 3, 16, 16)
    out = T.random_transformation(x, torch.Generator().manual_seed(5), preset)
    replay = torch.Generator().manual_seed(5)
    torch.rand(2, generator=replay)
    defense = parse_defense("ueraser:copies=2").parts[0]
    assert torch.equal(out, defense.augment(x, replay)) and not torch.equal(out, x)

    surrogate = load_surrogate(minilm_surrogate_dir)
    generator = T2UEGenerator(text_dim=surrogate.embed_dim, resolution=32)
    train_generator(generator, surrogate, tiny_pairs, tmp_path / "run",
                    TrainConfig(steps=3, batch_size=8, checkpoint_every=1000, log_every=1, robust=True, eot="ueraser"),
                    progress=False)
    saved = json.loads((tmp_path / "run" / "model" / "noise_model.json").read_text())
    assert saved["training"]["eot"] == "ueraser"
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and all(math.isfinite(v) and v > 0 for v in losses)


def test_defense_columns_follow_the_registry_and_strength():
    from t2ue_eval.report import defense_order

    found = ["median", "jpeg:quality=75", "grayscale+strong-aug", "none", "pgd-at:steps=2", "jpeg:quality=10", "grayscale"]
    assert sorted(found, key=defense_order) == ["none", "jpeg:quality=10", "jpeg:quality=75", "grayscale",
                                                "grayscale+strong-aug", "median", "pgd-at:steps=2"]


def test_defense_plot_labels_keep_settings_apart():
    from t2ue_eval.report import defense_label

    specs = ["none", "ueraser:copies=1", "ueraser:copies=2", "jpeg:quality=10", "grayscale+strong-aug",
             "pgd-at:steps=2,alpha=5/255"]
    labels = [defense_label(s) for s in specs]
    assert labels == ["none", "ueraser:1", "ueraser:2", "jpeg:10", "grayscale+strong-aug",
                      "pgd-at:steps=2,alpha=5/255"]
    assert len(set(labels)) == len(labels)
