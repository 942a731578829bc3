"""The optimiser pieces shared by every model trained here from scratch (victims and the surrogate)."""

from __future__ import annotations

import math

import torch

MAX_LOGIT_SCALE = math.log(100)


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up, then cosine decay to zero at ``total_steps``."""

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / max(1, warmup_steps)) * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def update(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, loss: torch.Tensor) -> float:
    """One optimiser step; a CLIP's learned temperature (``logit_scale``) is kept at most 100, as in CLIP."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    if hasattr(model, "logit_scale"):
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
    return float(loss.detach())
