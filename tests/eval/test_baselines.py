"""The photo-based baselines: error-minimising noise (sample-/class-wise), SALM and CUDA."""

import numpy as np
import pytest
import torch

from t2ue.data.sets import load_dataset
from t2ue_eval.baselines import cuda_filters, error_minimising
from t2ue_eval.protection import to_levels
from t2ue_eval.registry import parse_method
from t2ue_eval.runner import protect_split


@pytest.fixture(scope="module")
def garments():
    """64 real Fashion-MNIST photos at 32 px, with their labels and templated captions."""
    return load_dataset("fashion-mnist", 32, part="victim_train", limit=64).materialize(32)


def test_class_wise_em_makes_its_source_model_right_only_on_protected_images(garments):
    delta, owner, log, _ = error_minimising(garments, 8 / 255, 0, loss="ce", mode="class", train_steps=5,
                                         attack_steps=5, max_rounds=3, batch_size=32)
    assert delta.shape == (10, 3, 32, 32) and delta.abs().max() <= 8 / 255 + 1e-6
    assert np.array_equal(owner, garments.labels)
    assert log["final_training_error"] < log["clean_training_error"], log
    assert log["gradient_steps_per_image"] == pytest.approx(log["rounds"] * (5 + 5 * 32 / 64))


def test_sample_wise_em_with_the_contrastive_loss(tiny_pairs):
    delta, owner, log, _ = error_minimising(tiny_pairs, 8 / 255, 0, loss="clip", mode="sample", train_steps=2,
                                         attack_steps=2, max_rounds=1, batch_size=8)
    assert delta.shape == (16, 3, 32, 32) and np.array_equal(owner, np.arange(16))
    assert delta.abs().max() <= 8 / 255 + 1e-6 and delta.abs().sum() > 0
    with pytest.raises(ValueError, match="needs labels"):
        error_minimising(tiny_pairs, 8 / 255, 0, mode="class")


def test_adaptive_em_runs_both_minimisations_under_the_defense(garments):
    """against=ueraser: the source model and the noise both take the worst of two UEraser copies (twice
    the gradient evaluations of plain EM), the budget holds, and plain EM keeps its committed spec."""
    kwargs = dict(loss="ce", mode="class", train_steps=2, attack_steps=2, max_rounds=1, stop_error=0)
    plain_delta, _, plain, _ = error_minimising(garments, 8 / 255, 0, **kwargs)
    method = parse_method("em:against=ueraser,loss=ce,mode=class,train_steps=2,attack_steps=2,max_rounds=1,stop_error=0")
    noise = method.noise(garments, 8 / 255, 0)
    assert noise.log["against"] == "ueraser:copies=2" and plain["against"] == "none"
    assert noise.log["gradient_steps_per_image"] == pytest.approx(2 * plain["gradient_steps_per_image"])
    assert np.abs(noise.levels).max() <= 8
    assert not np.array_equal(noise.levels, to_levels(plain_delta.permute(0, 2, 3, 1).numpy()))
    assert parse_method("em:attack_steps=10,max_rounds=8").spec() == (
        "em:attack_steps=10,loss=clip,max_rounds=8,mode=sample,source=auto,stop_error=0.01,train_steps=10")
    with pytest.raises(ValueError, match="against= must be none, ueraser or strong-aug"):
        parse_method("em:against=jpeg").noise(garments, 8 / 255, 0)


def test_salm_perturbs_only_the_salient_share(tiny_pairs):
    method = parse_method("salm:keep=0.1,max_rounds=1,attack_steps=2,train_steps=1")
    assert method.needs_photo
    noise = method.noise(tiny_pairs, 8 / 255, 0)
    touched = (noise.levels != 0).any(axis=-1).reshape(len(noise.levels), -1).mean(axis=1)
    assert touched.max() <= 0.1 + 1e-3 and touched.min() > 0
    assert np.abs(noise.levels).max() <= 8


def test_cuda_convolves_each_class_with_its_private_filters(garments):
    filters = cuda_filters(10, key=0)
    assert torch.allclose(filters.sum(dim=(-1, -2)), torch.ones(10, 3, 1))
    assert not torch.equal(filters, cuda_filters(10, key=1))
    method = parse_method("cuda")
    protected, info = protect_split(garments, method, 8 / 255, 0, 1.0, use_cache=False)
    assert info["needs_photo"] and info["gradient_steps_per_image"] == 0
    assert 15 < info["psnr"] < 60  # visibly changed, not bounded by a budget
    x = torch.from_numpy(garments.images[:1]).permute(0, 3, 1, 2).float()
    weights = filters[int(garments.labels[0])].view(3, 1, 3, 3)
    expected = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"), weights, groups=3)
    expected = expected.round().clamp(0, 255).permute(0, 2, 3, 1).numpy().astype(np.uint8)
    assert np.array_equal(protected.images[:1], expected)
    assert np.array_equal(garments.images[0], load_dataset("fashion-mnist", 32, part="victim_train",
                                                             limit=64).materialize(32).images[0])


def test_mem_binds_noise_to_caption_triggers_and_posts_them(tiny_pairs, tmp_path, monkeypatch):
    """MEM: every protected image's caption starts with its trigger words (whole words of the victim's
    vocabulary, one token each), the noise is within budget, the trigger-only control posts the very same
    captions with clean pictures, and HotFlip search changes the triggers."""
    from t2ue_eval.victims import ScratchCLIP

    monkeypatch.setenv("T2UE_CACHE", str(tmp_path))
    settings = "tokens=2,attack_steps=2,train_steps=2,max_rounds=2"
    mem = parse_method(f"mem:{settings}")
    noise = mem.noise(tiny_pairs, 8 / 255, 0)
    assert np.abs(noise.levels).max() <= 8 and len(noise.captions) == len(tiny_pairs)
    tokenizer = ScratchCLIP("victim-vit-tiny").tokenizer
    for posted, caption in zip(noise.captions, tiny_pairs.captions):
        trigger = posted.removesuffix(" " + caption)
        assert trigger != posted and len(trigger.split()) == 2
        assert len(tokenizer.encode(trigger)) == 2  # one token per word
    control = parse_method(f"mem:{settings},noise=false").noise(tiny_pairs, 8 / 255, 0)
    assert control.captions == noise.captions and not np.abs(control.levels).any()
    searched = parse_method(f"mem:{settings},trigger=hotflip").noise(tiny_pairs, 8 / 255, 0)
    assert searched.captions != noise.captions
    protected, info = protect_split(tiny_pairs, mem, 8 / 255, 0, 1.0)
    assert protected.captions == noise.captions and info["posted_caption_examples"] == noise.captions[:3]
