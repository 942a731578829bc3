"""The perturbation budget: one place where a budget is read, checked and projected onto the L-infinity ball.

A budget is read as ``8/255`` (a fraction), ``8`` (levels out of 255, any number from 1 up) or ``0.0314``
(a fraction of the pixel range, any number below 1), and must lie between :data:`MIN_EPSILON` and
:data:`MAX_EPSILON`: below one level an 8-bit copy cannot hold the noise (nothing would change), and past
32 levels it is plainly visible (PSNR about 21 dB), no longer a protection anyone would post.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

DEFAULT_EPSILON = 8 / 255
MIN_EPSILON = 1 / 255
MAX_EPSILON = 32 / 255


def parse_epsilon(value: float | int | str) -> float:
    """A budget as a fraction of the pixel range, from ``8/255``, ``8`` or ``0.0314``; ValueError naming the
    accepted range for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"cannot read budget {value!r}: use 8/255, 8 or 0.0314")
    if isinstance(value, str):
        try:
            number = float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError) as err:
            raise ValueError(f"cannot read budget {value!r}: use 8/255, 8 (levels out of 255) or 0.0314") from err
    else:
        try:
            number = float(value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"cannot read budget {value!r}: use 8/255, 8 or 0.0314") from err
    if math.isnan(number) or number <= 0:
        raise ValueError(f"budget must be positive, got {value!r}")
    if number >= 1:
        number = number / 255
    if number < MIN_EPSILON - 1e-12:
        raise ValueError(f"budget {value!r} is {number * 255:.2g}/255, less than one level out of 255: an 8-bit copy "
                         "cannot hold it, so nothing would change; use 1/255 to 32/255 (8/255 by default)")
    if number > MAX_EPSILON + 1e-12:
        raise ValueError(f"budget {value!r} is {number * 255:.3g}/255: past 32/255 the noise is plainly visible; use "
                         "1/255 to 32/255 (8/255 by default)")
    return number


def project_linf(delta: torch.Tensor, epsilon: float, *, inplace: bool = False) -> torch.Tensor:
    """Project a perturbation onto the L-infinity ball of radius ``epsilon`` (in place for large tensors)."""
    return delta.clamp_(-epsilon, epsilon) if inplace else delta.clamp(-epsilon, epsilon)
