import numpy as np
import pytest
import torch
from PIL import Image

from t2ue.data.sets import ImageTextSet
from t2ue_eval.victims import VictimRecipe, build_victim, evaluate_victim, train_victim, victim_config


def test_victim_learns_a_small_set(tiny_pairs):
    """A from-scratch CLIP victim fits 16 real photo-caption pairs far above chance."""
    images = np.stack([np.asarray(Image.fromarray(im).resize((64, 64))) for im in tiny_pairs.images])
    data = ImageTextSet(images, tiny_pairs.captions)
    recipe = VictimRecipe(epochs=40, batch_size=16, lr=1e-3, warmup_steps=5)
    model, log = train_victim(data, recipe, seed=0, progress=False)
    metrics = evaluate_victim(model, recipe, data)
    assert metrics["t2i_R@1"] >= 0.5 > metrics["random_t2i_R@1"]
    assert log["final_loss"] < np.log(16)


def test_both_victim_towers_build_from_their_configs():
    for arch in ("victim-vit-tiny", "victim-rn-tiny"):
        model = build_victim(VictimRecipe(arch=arch))
        size = victim_config(arch)["vision_cfg"]["image_size"]
        image = model.encode_images(torch.rand(2, 3, size, size))
        text = model.encode_texts(["a cat", "a dog"])
        assert image.shape == text.shape == (2, 128)


def test_classifier_victim_learns_labels(tiny_pairs):
    """ResNet-18 from scratch separates two groups of real photos it was trained on."""
    images = np.stack([np.asarray(Image.fromarray(im).resize((64, 64))) for im in tiny_pairs.images])
    labels = np.arange(len(images)) // 8  # first four photos (with mirrors) vs the last four
    data = ImageTextSet(images, tiny_pairs.captions, labels, ("a", "b"))
    recipe = VictimRecipe.for_kind("classifier", epochs=15, batch_size=16, warmup_steps=2)
    model, _ = train_victim(data, recipe, progress=False)
    metrics = evaluate_victim(model, recipe, data)
    assert metrics["accuracy"] >= 0.8 and metrics["random_accuracy"] == 0.5
    matrix = np.array(metrics["confusion"])
    assert matrix.shape == (2, 2) and matrix.sum(axis=1).tolist() == [8, 8]
    assert np.trace(matrix) / matrix.sum() == metrics["accuracy"]


def test_finetune_victim_updates_a_pretrained_clip(open_clip_dir, tiny_pairs):
    """clip-finetune loads a saved open_clip folder, unfreezes it and changes its weights."""
    from t2ue.models.surrogates import load_surrogate

    before = {k: v.clone() for k, v in load_surrogate(open_clip_dir).state_dict().items()}
    recipe = VictimRecipe.for_kind("clip-finetune", arch=str(open_clip_dir), epochs=2, batch_size=8, lr=1e-3,
                                   warmup_steps=1)
    model, log = train_victim(tiny_pairs, recipe, progress=False)
    after = model.surrogate.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert "i2t_R@10" in evaluate_victim(model, recipe, tiny_pairs)


def test_recipe_specs():
    assert VictimRecipe.parse("clip:victim-rn-tiny", epochs=3).as_dict()["epochs"] == 3
    assert VictimRecipe.parse("classifier").arch == "resnet18"
    assert VictimRecipe.parse("clip-finetune:open_clip:ViT-B-32/openai").arch == "open_clip:ViT-B-32/openai"
    with pytest.raises(ValueError, match="kind"):
        VictimRecipe.parse("svm:linear")
