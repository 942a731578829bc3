"""Differentiable image transformations on float batches (B, 3, H, W) in [0, 1].

One place for the pixel operations that both sides of the arms race use: the exploiter's defenses
(:mod:`t2ue_eval.defenses`) and the provider's expectation over transformations when training a robust
generator (:func:`random_transformation`). Every function keeps the batch's shape and dtype and lets
gradients through, so the same code purifies data and sits inside a training loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

# The luminance and chrominance quantisation tables of the JPEG standard (ITU-T T.81, Annex K).
_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
         14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
         49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
_CHROMA = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, *(99,) * 4, 24, 26, 56, *(99,) * 5, 47, 66,
           *(99,) * 38)


@lru_cache(maxsize=4)
def _dct_matrix(device: str) -> torch.Tensor:
    """The orthonormal 8-point DCT-II matrix: ``C @ block @ C.T`` is the 2-D DCT of an 8×8 block."""
    k = torch.arange(8, dtype=torch.float32)[:, None]
    i = torch.arange(8, dtype=torch.float32)[None, :]
    matrix = torch.cos((2 * i + 1) * k * math.pi / 16) * math.sqrt(2 / 8)
    matrix[0] /= math.sqrt(2)
    return matrix.to(device)


def quantisation_table(quality: float, chroma: bool, device: torch.device | str = "cpu") -> torch.Tensor:
    """The libjpeg-scaled 8×8 table for a quality in [1, 100]."""
    quality = min(max(float(quality), 1.0), 100.0)
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    base = torch.tensor(_CHROMA if chroma else _LUMA, dtype=torch.float32).view(8, 8)
    return torch.floor((base * scale + 50) / 100).clamp(min=1).to(device)


def _soft_round(x: torch.Tensor) -> torch.Tensor:
    """Rounding with a useful gradient (Shin & Song 2017): round(x) + (x − round(x))³."""
    rounded = torch.round(x)
    return rounded + (x - rounded) ** 3


def _blockwise(channel: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Quantise one channel (B, H, W), H and W multiples of 8, in the 8×8 DCT domain, and invert."""
    b, h, w = channel.shape
    c = _dct_matrix(str(channel.device))
    blocks = channel.reshape(b, h // 8, 8, w // 8, 8).transpose(2, 3)
    coefficients = c @ blocks @ c.T
    restored = c.T @ (_soft_round(coefficients / table) * table) @ c
    return restored.transpose(2, 3).reshape(b, h, w)


def jpeg(x: torch.Tensor, quality: float) -> torch.Tensor:
    """A differentiable approximation of baseline JPEG (YCbCr, 4:2:0 chroma, 8×8 DCT, libjpeg tables).

    Kept rather than ``kornia.enhance.jpeg_codec_differentiable``: against Pillow's real codec on four
    scikit-image photos it is closer at every quality (mean error 0.76–1.19/255 against kornia's
    0.87–1.75/255), and 2.7 × faster on 64 px batches;
    ``eval/transforms_vs_kornia.py`` measures it (``eval/results/transforms-vs-kornia.json``)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % 16, (-w) % 16
    work = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") * 255
    r, g, b = work.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    y = _blockwise(y - 128, quantisation_table(quality, False, x.device)) + 128
    chroma = F.avg_pool2d(torch.stack([cb, cr], 1), 2)
    table = quantisation_table(quality, True, x.device)
    chroma = torch.stack([_blockwise(chroma[:, i], table) for i in range(2)], 1)
    cb, cr = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False).unbind(1)
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1) / 255
    return rgb[..., :h, :w].clamp(0, 1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur with a kernel of radius 2σ and reflected borders (kornia's)."""
    from kornia.filters import gaussian_blur2d

    side = 2 * max(1, math.ceil(2 * sigma)) + 1
    return gaussian_blur2d(x, (side, side), (sigma, sigma), border_type="reflect")


def median_filter(x: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Per-channel median over a size×size window (kornia's)."""
    from kornia.filters import median_blur

    return median_blur(x, (size, size))


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, repeated over three channels."""
    luma = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    return luma.expand_as(x).contiguous()


def bit_depth(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Keep ``bits`` bits per channel (straight-through gradient)."""
    levels = 2**bits - 1
    return x + (torch.round(x * levels) / levels - x).detach()


def rescale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Down-sample by ``scale`` (anti-aliased) and back up: what a platform's thumbnailing does."""
    h, w = x.shape[-2:]
    small = (max(1, round(h * scale)), max(1, round(w * scale)))
    down = F.interpolate(x, size=small, mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(down, size=(h, w), mode="bilinear", align_corners=False)


# The augmentations below stay hand-written: each draws from the ``generator`` it is given, so a defended
# run and a resumed training run draw the same augmentations, which kornia's (drawing from torch's global
# RNG) would not; and the committed UEraser results were made with them.


def random_resized_crop(x: torch.Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.5, 1.0),
                        flip: bool = True) -> torch.Tensor:
    """Per-image random crop of ``scale`` of the area (aspect 3/4–4/3), resized back, optionally mirrored."""
    n = x.shape[0]
    rand = torch.rand(n, 5, generator=generator).to(x.device, x.dtype)
    area = scale[0] + (scale[1] - scale[0]) * rand[:, 0]
    aspect = torch.exp(math.log(3 / 4) + math.log(16 / 9) * rand[:, 1])
    sx, sy = (area * aspect).sqrt().clamp(max=1), (area / aspect).sqrt().clamp(max=1)
    tx, ty = (1 - sx) * (2 * rand[:, 2] - 1), (1 - sy) * (2 * rand[:, 3] - 1)
    mirror = (1 - 2 * (rand[:, 4] < 0.5).to(x.dtype)) if flip else torch.ones_like(sx)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx * mirror, tx, sy, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def colour_jitter(x: torch.Tensor, generator: torch.Generator, strength: float = 0.4) -> torch.Tensor:
    """Per-image random brightness, contrast and saturation factors in [1 − s, 1 + s]."""
    factors = 1 + strength * (2 * torch.rand(x.shape[0], 3, 1, 1, 1, generator=generator) - 1)
    brightness, contrast, saturation = factors.to(x.device, x.dtype).unbind(1)
    x = (x * brightness).clamp(0, 1)
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean).clamp(0, 1)
    grey = grayscale(x)
    return ((x - grey) * saturation + grey).clamp(0, 1)


def plasma(x: torch.Tensor, generator: torch.Generator, strength: float = 0.3) -> torch.Tensor:
    """Smooth random brightness and contrast fields (a low-frequency stand-in for kornia's plasma
    fractals, as UEraser uses)."""
    n, _, h, w = x.shape
    fields = torch.rand(n, 2, 4, 4, generator=generator).to(x.device, x.dtype)
    fields = F.interpolate(fields, size=(h, w), mode="bicubic", align_corners=False)
    brightness, contrast = (strength * (2 * fields - 1)).unbind(1)
    return ((x - 0.5) * (1 + contrast[:, None]) + 0.5 + brightness[:, None]).clamp(0, 1)


def channel_shuffle(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image's colour channels in a random order."""
    order = torch.stack([torch.randperm(3, generator=generator) for _ in range(x.shape[0])]).to(x.device)
    return torch.gather(x, 1, order[:, :, None, None].expand_as(x))


# UEraser's augmentation, part by part, in the order it composes them.
UERASER_PARTS = {"crop": random_resized_crop, "plasma": plasma, "shuffle": channel_shuffle, "jitter": colour_jitter}


def check_ueraser_parts(parts: tuple[str, ...]) -> None:
    """Raise a ValueError naming any of ``parts`` that is not a part of UEraser's augmentation."""
    unknown = set(parts) - set(UERASER_PARTS)
    if unknown:
        raise ValueError(f"UEraser has parts {', '.join(UERASER_PARTS)}, not {', '.join(sorted(unknown))}")


def ueraser_augment(x: torch.Tensor, generator: torch.Generator, skip: tuple[str, ...] = ()) -> torch.Tensor:
    """UEraser's training-time augmentation (Qin et al. 2023): resized crop and flip, plasma
    brightness/contrast, channel shuffle and colour jitter, composed, drawn per image; ``skip`` leaves
    parts out (for ablations: which part undoes a protection)."""
    check_ueraser_parts(skip)
    for part, step in UERASER_PARTS.items():
        if part not in skip:
            x = step(x, generator)
    return x


@dataclass(frozen=True)
class EOT:
    """The distribution a robust generator trains under: one kind drawn uniformly per step, then its
    strength uniformly from its range (JPEG quality, thumbnail scale, blur σ, bits). With ``copies`` > 1 the
    loss of each pair is the worst over that many independent draws (min-max, as UEraser-Max trains)."""

    kinds: tuple[str, ...] = ("identity", "jpeg", "rescale", "blur")
    jpeg_quality: tuple[float, float] = (30, 95)
    rescale: tuple[float, float] = (0.5, 1.0)
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    bits: tuple[float, float] = (3, 5)
    copies: int = 1


# "standard": the bundled robust model's recipe. "strong": adds grayscale and reaches JPEG quality 10,
# quarter-size thumbnails and σ 2 — the cheap defenses that break the standard robust model.
# "augment": the standard recipe plus UEraser's training-time augmentations (resized crop and flip,
# plasma brightness/contrast, colour jitter, channel shuffle), one kind per step.
EOT_PRESETS = {
    "standard": EOT(),
    "strong": EOT(kinds=("identity", "jpeg", "rescale", "blur", "grayscale"), jpeg_quality=(10, 95),
                  rescale=(0.25, 1.0), blur_sigma=(0.5, 2.0)),
    "augment": EOT(kinds=("identity", "jpeg", "rescale", "blur", "crop", "plasma", "jitter", "shuffle")),
    # "depth": the standard recipe plus colour-depth reduction to 3-5 bits (straight-through), the one
    # purification that lifts the default model above half of clean on one seed of the Fashion-MNIST CLIP.
    "depth": EOT(kinds=("identity", "jpeg", "rescale", "blur", "bits")),
    # "ueraser": UEraser's whole composed augmentation at every step, worst of two copies per pair — the
    # exploiter's own training recipe (defense ueraser:copies=2) turned against the noise.
    "ueraser": EOT(kinds=("ueraser",), copies=2),
    # "shuffle": only the part of UEraser without which it no longer breaks the default model's colour noise
    # (its ablation on the Fashion-MNIST CLIP): each image's channels in a random order, worst of two per pair.
    "shuffle": EOT(kinds=("shuffle",), copies=2),
}


def random_transformation(x: torch.Tensor, generator: torch.Generator, eot: EOT = EOT_PRESETS["standard"]) -> torch.Tensor:
    """One draw from ``eot`` (by default: nothing, JPEG at quality 30–95, thumbnail-and-back at 50–100 %,
    or blur with σ 0.5–1.5), applied to the whole batch."""
    draw = torch.rand(2, generator=generator).tolist()
    kind = eot.kinds[int(draw[0] * len(eot.kinds))]

    def pick(bounds: tuple[float, float]) -> float:
        return bounds[0] + (bounds[1] - bounds[0]) * draw[1]

    if kind == "jpeg":
        return jpeg(x, pick(eot.jpeg_quality))
    if kind == "rescale":
        return rescale(x, pick(eot.rescale))
    if kind == "blur":
        return gaussian_blur(x, pick(eot.blur_sigma))
    if kind == "grayscale":
        return grayscale(x)
    if kind == "bits":
        return bit_depth(x, round(pick(eot.bits)))
    augmentations = {**UERASER_PARTS, "ueraser": ueraser_augment}
    if kind in augmentations:
        return augmentations[kind](x, generator)
    return x
