"""The perturbation budget: one place where noise is parsed and projected onto the L-infinity ball."""

from __future__ import annotations

from fractions import Fraction

import torch

DEFAULT_EPSILON = 8 / 255


def parse_epsilon(value: float | int | str) -> float:
    """Read a budget given as ``8/255``, ``8`` (pixel levels out of 255) or ``0.0314`` (fraction of the range)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(Fraction(text))
        except (ValueError, ZeroDivisionError) as err:
            raise ValueError(f"cannot read budget {value!r}: use 8/255, 8 or 0.0314") from err
    else:
        number = float(value)
    if number >= 1:
        number = number / 255
    if not 0 < number < 1:
        raise ValueError(f"budget must lie in (0, 1) of the pixel range, got {value!r}")
    return number


def project_linf(delta: torch.Tensor, epsilon: float, *, inplace: bool = False) -> torch.Tensor:
    """Project a perturbation onto the L-infinity ball of radius ``epsilon`` (in place for large tensors)."""
    return delta.clamp_(-epsilon, epsilon) if inplace else delta.clamp(-epsilon, epsilon)
