import numpy as np
from PIL import Image

from t2ue.data import ImageTextSet
from t2ue.victims import VictimRecipe, evaluate_clip_victim, train_clip_victim


def test_victim_learns_a_small_set(tiny_pairs):
    """A from-scratch CLIP victim fits 16 real photo-caption pairs far above chance."""
    images = np.stack([np.asarray(Image.fromarray(im).resize((64, 64))) for im in tiny_pairs.images])
    data = ImageTextSet(images, tiny_pairs.captions)
    recipe = VictimRecipe(epochs=40, batch_size=16, lr=1e-3, warmup_steps=5)
    model, tokenizer, log = train_clip_victim(data, recipe, seed=0, progress=False)
    metrics = evaluate_clip_victim(model, tokenizer, data)
    assert metrics["t2i_R@1"] >= 0.5 > metrics["random_t2i_R@1"]
    assert log["final_loss"] < np.log(16)


def test_both_victim_towers_build_from_their_configs():
    import torch

    from t2ue.victims import build_victim, victim_config

    for arch in ("victim-vit-tiny", "victim-rn-tiny"):
        model, tokenizer = build_victim(arch)
        size = victim_config(arch)["vision_cfg"]["image_size"]
        image = model.encode_image(torch.rand(2, 3, size, size), normalize=True)
        text = model.encode_text(tokenizer(["a cat", "a dog"]), normalize=True)
        assert image.shape == text.shape == (2, 128)
