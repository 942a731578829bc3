"""Retrieval metrics with several captions per image, and a random-guess baseline for each.

Ties are counted against the model (a competitor scoring *equal* to the positive ranks ahead of it),
so a collapsed model whose embeddings are all equal scores like chance, not like a perfect model.
"""

from __future__ import annotations

from math import comb

import numpy as np
import torch

KS = (1, 5, 10)


def _ranks_of_positives(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """For each row, 1 + the number of negatives scoring at least as high as the best positive."""
    best = np.where(positive, scores, -np.inf).max(axis=1, keepdims=True)
    return 1 + ((scores >= best) & ~positive).sum(axis=1)


def retrieval_metrics(image_features: torch.Tensor | np.ndarray, text_features: torch.Tensor | np.ndarray,
                      caption_image: np.ndarray | list[int], ks: tuple[int, ...] = KS) -> dict[str, float]:
    """Image-to-text and text-to-image R@k, median and mean rank, plus the random-guess R@k.

    ``caption_image[j]`` is the index of the image that caption ``j`` belongs to. An image-to-text hit
    counts if any of the image's captions ranks within k; each caption is ranked against all images.
    """
    img = np.asarray(image_features, dtype=np.float64)
    txt = np.asarray(text_features, dtype=np.float64)
    owner = np.asarray(caption_image)
    n_img, n_txt = len(img), len(txt)
    if owner.shape != (n_txt,) or owner.min() < 0 or owner.max() >= n_img:
        raise ValueError("caption_image must give an image index for every caption")
    scores = img @ txt.T  # (images, captions)
    positive = owner[None, :] == np.arange(n_img)[:, None]
    if not positive.any(axis=1).all():
        raise ValueError("every image needs at least one caption")
    i2t = _ranks_of_positives(scores, positive)
    t2i = _ranks_of_positives(scores.T, positive.T)
    out: dict[str, float] = {}
    for name, ranks in (("i2t", i2t), ("t2i", t2i)):
        for k in ks:
            out[f"{name}_R@{k}"] = float((ranks <= k).mean())
        out[f"{name}_median_rank"] = float(np.median(ranks))
        out[f"{name}_mean_rank"] = float(ranks.mean())
    counts = positive.sum(axis=1)
    for k in ks:
        # Chance that k captions drawn at random include one of the image's c captions.
        out[f"random_i2t_R@{k}"] = 1.0 if k >= n_txt else float(
            np.mean([1 - comb(n_txt - int(c), k) / comb(n_txt, k) for c in counts]))
        out[f"random_t2i_R@{k}"] = min(1.0, k / n_img)
    return out


def accuracy(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """Top-1 accuracy."""
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(labels)).mean())


def confusion(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> list[list[int]]:
    """Counts of (true class, predicted class), rows true: shows *which* distinctions a victim
    learnt, e.g. whether protected training still separates coarse groups of classes."""
    n = np.asarray(logits).shape[1]
    pairs = np.asarray(labels) * n + np.asarray(logits).argmax(axis=1)
    return np.bincount(pairs, minlength=n * n).reshape(n, n).tolist()


def grouped_accuracy(matrix: list[list[int]] | np.ndarray, groups: list[tuple[int, ...]]) -> float:
    """Accuracy once classes are merged into groups (a prediction counts if it lands in the true
    class's group), read from a confusion matrix."""
    matrix = np.asarray(matrix)
    group_of = np.empty(len(matrix), dtype=int)
    for g, members in enumerate(groups):
        group_of[list(members)] = g
    same = group_of[:, None] == group_of[None, :]
    return float(matrix[same].sum() / matrix.sum())


def headline(metrics: dict[str, float]) -> tuple[str, float, float]:
    """The one number a verdict or plot uses, and its random-guess value.

    Classifier: accuracy. CLIP: mean of image-to-text and text-to-image R@10, unless most test captions
    repeat (Fashion-MNIST's are class names in templates), where per-image retrieval means nothing and
    zero-shot accuracy over the class names is used instead.
    """
    if "accuracy" in metrics:
        return "accuracy", metrics["accuracy"], metrics["random_accuracy"]
    if metrics.get("distinct_caption_fraction", 1.0) < 0.1 and "zeroshot_accuracy" in metrics:
        return "zeroshot_accuracy", metrics["zeroshot_accuracy"], metrics["random_zeroshot_accuracy"]
    return ("R@10", (metrics["i2t_R@10"] + metrics["t2i_R@10"]) / 2,
            (metrics["random_i2t_R@10"] + metrics["random_t2i_R@10"]) / 2)


def contrastive_loss_floor(captions: list[str], batch_size: int, *, draws: int = 20, seed: int = 0) -> float:
    """The lowest symmetric InfoNCE a CLIP can reach on these captions, expected over random batches.

    A caption repeated k times in a batch has k equal text embeddings, so neither direction can put more
    than 1/k on the true pair: the floor is the batch mean of ln k. Error-minimising noise protects by
    taking the victim to it before the pictures do; once clean training has reached it too, the final
    losses no longer tell the two apart."""
    index = np.unique(np.asarray(captions, dtype=object), return_inverse=True)[1].reshape(-1)
    size = min(batch_size, len(index))
    rng = np.random.default_rng(seed)
    floors = []
    for _ in range(draws):
        order = index[rng.permutation(len(index))]
        for start in range(0, len(order) - size + 1, size):
            batch = order[start : start + size]
            floors.append(np.log(np.bincount(batch)[batch]).mean())
    return float(np.mean(floors))
