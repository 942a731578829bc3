import itertools

import numpy as np
import pytest
import torch

from t2ue.models.clusters import separate_patterns

TEXTS = ["a ginger cat asleep on a sofa", "a tabby cat on a windowsill", "a black cat in the garden",
         "a rocket on the launch pad", "a rocket lifting off into the sky", "the space shuttle on its pad",
         "a cup of coffee on a saucer", "an espresso in a white cup", "a latte with milk foam art"]




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
