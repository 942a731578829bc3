"""Where each bundled model's noise keeps its energy: colour or grey, fine or coarse detail.

At 64 px, seed 0. For the descriptions of 500 Fashion-MNIST test pictures (the sample-wise rows of the
defense tables): the noise's size and its luma share. For the ten Fashion-MNIST class names (the
patterns `t2ue:mode=class` adds): share of the mean-square perturbation that is luma (what grayscale
conversion keeps), share left after a Gaussian blur of sigma 2 (coarse detail), and how much of the
perturbation, of its grey part and of its colour part the real JPEG codec at quality 10 keeps on the
same 500 pictures (projection of the change JPEG leaves on the perturbation). Explains the defense
tables in eval/REPORT.md.

    python eval/noise_anatomy.py [--out eval/results/noise-anatomy.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from t2ue import noise_from_text
from t2ue import transforms as T
from t2ue.api import BUNDLED_MODELS
from t2ue.data import ImageTextSet, load_dataset
from t2ue.defenses import parse_defense
from t2ue.evaluation import write_json


def mean_square(x: torch.Tensor) -> float:
    return float((x**2).mean())


def kept(change: torch.Tensor, pattern: torch.Tensor) -> float | None:
    """Share of ``pattern`` that ``change`` still holds (projection coefficient); None for no pattern."""
    energy = float((pattern * pattern).sum())
    return round(float((change * pattern).sum()) / energy, 3) if energy > 1e-6 else None


def anatomy(model: str, data: ImageTextSet, size: int = 64) -> dict[str, float]:
    """Luma share, coarse share and JPEG-10 survival of one model's class patterns on ``data``."""
    patterns = noise_from_text(list(data.class_names), size=size, model=model, seed=0, mode="class")
    levels = torch.round(patterns * 255)[torch.as_tensor(data.labels)].permute(0, 2, 3, 1).numpy()
    protected = (data.images.astype(np.float32) + levels).clip(0, 255).astype(np.uint8)
    jpeg10 = parse_defense("jpeg:quality=10")
    change = jpeg10.purify_images(protected, 0).astype(np.float32) - jpeg10.purify_images(data.images, 0)
    change, delta = torch.from_numpy(change).permute(0, 3, 1, 2), torch.from_numpy(levels).permute(0, 3, 1, 2)
    luma = T.grayscale(delta)
    samples = noise_from_text(list(data.captions), size=size, model=model, seed=0)
    return {
        "sample_wise_rms_levels": round(mean_square(samples) ** 0.5 * 255, 2),
        "sample_wise_luma_share": round(mean_square(T.grayscale(samples)) / mean_square(samples), 3),
        "rms_levels": round(mean_square(patterns) ** 0.5 * 255, 2),
        "luma_share": round(mean_square(T.grayscale(patterns)) / mean_square(patterns), 3),
        "coarse_share_blur_sigma2": round(mean_square(T.gaussian_blur(patterns, 2.0)) / mean_square(patterns), 3),
        "jpeg10_kept": kept(change, delta),
        "jpeg10_kept_grey_part": kept(T.grayscale(change), luma),
        "jpeg10_kept_colour_part": kept(change - T.grayscale(change), delta - luma),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("eval/results/noise-anatomy.json"))
    args = parser.parse_args()
    data = load_dataset("fashion-mnist", 64, part="test", limit=500).materialize(64)
    results = {"texts": list(data.class_names), "size": 64, "seed": 0, "pictures": len(data),
               "models": {name: anatomy(name, data) for name in BUNDLED_MODELS}}
    for name, row in results["models"].items():
        print(f"{name:14s} " + "  ".join(f"{key} {value}" for key, value in row.items()))
    print(f"saved {write_json(args.out, results)}")


if __name__ == "__main__":
    main()
