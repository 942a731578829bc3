"""Where each bundled model's noise keeps its energy: colour or grey, fine or coarse detail.

At 64 px, seed 0. For the descriptions of 500 Fashion-MNIST test pictures (the sample-wise rows of the
defense tables): the noise's size and its luma share. For the ten Fashion-MNIST class names (the
patterns `t2ue:mode=class` adds): share of the mean-square perturbation that is luma (what grayscale
conversion keeps), share left after a Gaussian blur of sigma 2 (coarse detail), and how much of the
perturbation, of its grey part and of its colour part the real JPEG codec at quality 10 keeps on the
same 500 pictures (projection of the change JPEG leaves on the perturbation). Explains the defense
tables in eval/REPORT.md.

With ``--method`` (repeatable, evaluator specs such as ``em:attack_steps=10,max_rounds=8``): the same
figures, plus JPEG 75, for the noise each method puts on the training split of the Fashion-MNIST CLIP
plans (64 px, 4 000 pictures, 8/255, seed 0), read from the evaluator's protection cache or made as the
evaluator makes it (EM: about 21 min on a 2-core CPU). Why JPEG 10 erases one method's noise and not
another's.

    python eval/noise_anatomy.py [--out eval/results/noise-anatomy.json]
    python eval/noise_anatomy.py --method t2ue --method em:attack_steps=10,max_rounds=8 --method cuda
        [--out eval/results/noise-anatomy-methods.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from t2ue import noise_from_text
from t2ue.budget import parse_epsilon
from t2ue.data.sets import ImageTextSet, load_dataset
from t2ue.models.registry import installed_models
from t2ue.training import transforms as T
from t2ue_eval.defenses import parse_defense
from t2ue_eval.methods import RESEARCH_MODELS, resolve_model
from t2ue_eval.protection import method_noise
from t2ue_eval.registry import parse_method
from t2ue_eval.runner import load_split, write_json


def mean_square(x: torch.Tensor) -> float:
    return float((x**2).mean())


def kept(change: torch.Tensor, pattern: torch.Tensor) -> float | None:
    """Share of ``pattern`` that ``change`` still holds (projection coefficient); None for no pattern."""
    energy = float((pattern * pattern).sum())
    return round(float((change * pattern).sum()) / energy, 3) if energy > 1e-6 else None


def shares(delta: torch.Tensor) -> dict[str, float]:
    """Share of a perturbation's mean square that is luma (grayscale keeps it) and that a blur of
    sigma 2 keeps (coarse detail)."""
    return {"luma_share": round(mean_square(T.grayscale(delta)) / mean_square(delta), 3),
            "coarse_share_blur_sigma2": round(mean_square(T.gaussian_blur(delta, 2.0)) / mean_square(delta), 3)}


def jpeg_survival(images: np.ndarray, protected: np.ndarray, delta: torch.Tensor,
                  qualities: tuple[int, ...] = (10,)) -> dict[str, float | None]:
    """How much of ``delta`` (N, 3, H, W), and of its grey and colour parts, the real JPEG codec leaves
    in the change from uint8 ``images`` to ``protected``, at each quality."""
    luma = T.grayscale(delta)
    figures: dict[str, float | None] = {}
    for quality in qualities:
        jpeg = parse_defense(f"jpeg:quality={quality}")
        change = jpeg.purify_images(protected, 0).astype(np.float32) - jpeg.purify_images(images, 0)
        change = torch.from_numpy(change).permute(0, 3, 1, 2)
        figures[f"jpeg{quality}_kept"] = kept(change, delta)
        figures[f"jpeg{quality}_kept_grey_part"] = kept(T.grayscale(change), luma)
        figures[f"jpeg{quality}_kept_colour_part"] = kept(change - T.grayscale(change), delta - luma)
    return figures


def anatomy(model: str, data: ImageTextSet, size: int = 64) -> dict[str, float | None]:
    """Size and luma share of one model's sample-wise noise; luma, coarse and JPEG-10 shares of its
    class patterns on ``data``."""
    patterns = noise_from_text(list(data.class_names), size=size, model=resolve_model(model), seed=0, mode="class")
    levels = torch.round(patterns * 255)[torch.as_tensor(data.labels)].permute(0, 2, 3, 1).numpy()
    protected = (data.images.astype(np.float32) + levels).clip(0, 255).astype(np.uint8)
    samples = noise_from_text(list(data.captions), size=size, model=resolve_model(model), seed=0)
    return {
        "sample_wise_rms_levels": round(mean_square(samples) ** 0.5 * 255, 2),
        "sample_wise_luma_share": round(mean_square(T.grayscale(samples)) / mean_square(samples), 3),
        "rms_levels": round(mean_square(patterns) ** 0.5 * 255, 2),
        **shares(patterns),
        **jpeg_survival(data.images, protected, torch.from_numpy(levels).permute(0, 3, 1, 2)),
    }


def method_anatomy(spec: str, data: ImageTextSet, epsilon: str = "8/255", seed: int = 0) -> dict:
    """Size, luma and coarse shares, and JPEG 10 and 75 survival of an evaluator method's noise on
    ``data`` (every picture protected)."""
    noise, cached = method_noise(parse_method(spec), data, parse_epsilon(epsilon), seed)
    delta = torch.from_numpy(noise.levels[noise.index].astype(np.float32)).permute(0, 3, 1, 2)
    return {"cached": cached, "distinct_patterns": int(len(noise.levels)),
            "rms_levels": round(mean_square(delta) ** 0.5, 2), **shares(delta),
            **jpeg_survival(data.images, noise.apply(data.images), delta, qualities=(10, 75))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="default: eval/results/noise-anatomy.json, "
                        "with --method eval/results/noise-anatomy-methods.json")
    parser.add_argument("--method", action="append", default=[],
                        help="evaluator method spec (repeatable); measures these instead of the bundled models")
    args = parser.parse_args()
    if args.method:
        data = load_split("fashion-mnist", 64, 4000, 2000)[0]
        results = {"split": "fashion-mnist victim_train, 64 px", "epsilon": "8/255", "seed": 0, "pictures": len(data),
                   "models": {spec: method_anatomy(spec, data) for spec in args.method}}
    else:
        data = load_dataset("fashion-mnist", 64, part="test", limit=500).materialize(64)
        results = {"texts": list(data.class_names), "size": 64, "seed": 0, "pictures": len(data),
                   "models": {m.name: anatomy(m.name, data) for m in installed_models(extra=(RESEARCH_MODELS,))}}
    out = args.out or Path(f"eval/results/noise-anatomy{'-methods' if args.method else ''}.json")
    for name, row in results["models"].items():
        print(f"{name:14s} " + "  ".join(f"{key} {value}" for key, value in row.items()))
    print(f"saved {write_json(out, results)}")


if __name__ == "__main__":
    main()
