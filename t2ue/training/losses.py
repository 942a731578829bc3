"""The symmetric CLIP InfoNCE, the one loss every trainer here uses."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def positive_mask(keys: Sequence) -> torch.Tensor:
    """(B, B) boolean: which pairs share a caption (or label); the diagonal is always positive."""
    index = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    ids = torch.tensor([index[k] for k in keys])
    return ids[:, None] == ids[None, :]


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor | float,
              keys: Sequence | None = None, reduction: str = "mean") -> torch.Tensor:
    """Symmetric InfoNCE over normalised features (``reduction="none"``: one value per pair).

    When ``keys`` (captions or labels) repeat inside a batch, every pair with the same key is a positive
    (probability mass split evenly), so identical captions are not pushed apart as false negatives.
    """
    logits = logit_scale * image_features @ text_features.t()
    if keys is None:
        target = torch.arange(logits.shape[0], device=logits.device)
    else:
        mask = positive_mask(keys).to(logits.device, logits.dtype)
        target = mask / mask.sum(dim=1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, target, reduction=reduction)
                  + F.cross_entropy(logits.t(), target, reduction=reduction))
