"""First efficacy figure: does the bundled default noise make a victim CLIP learn nothing useful?

On the held-out parts of openclipart (never seen by the surrogate or the generator), the same tiny
victim CLIP is trained from scratch with one recipe on (a) clean, (b) uniform random +-8/255 and
(c) default-noise-protected training images; retrieval is measured on the clean test images.

    python eval/efficacy_core.py [--dataset openclipart] [--epochs 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import t2ue
from t2ue.data import load_dataset
from t2ue.images import add_noise_uint8
from t2ue.victims import VictimRecipe, evaluate_clip_victim, train_clip_victim

KEYS = [f"{d}_R@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)]


def protect_set(images: np.ndarray, captions: list[str], method: str, seed: int, model: str = "default") -> np.ndarray:
    """uint8 images with noise added (quantised after adding), by method."""
    if method == "none":
        return images
    if method == "random":
        rng = np.random.default_rng(seed)
        delta = rng.uniform(-8 / 255, 8 / 255, size=images.shape).astype(np.float32)
    else:
        noise = t2ue.noise_from_text(captions, size=images.shape[1], seed=seed, model=model)
        delta = noise.permute(0, 2, 3, 1).numpy()
    return add_noise_uint8(images, delta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="openclipart")
    parser.add_argument("--arch", default="victim-vit-tiny")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--model", default="default", help="noise model: 'default' or a folder")
    parser.add_argument("--methods", default="none,random,t2ue", help="comma-separated rows; 'none' is required")
    parser.add_argument("--out", default="eval/results/efficacy_core.json")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train = load_dataset(args.dataset, 64, part="victim_train", limit=args.train_limit)
    test = load_dataset(args.dataset, 64, part="test", limit=2000)
    recipe = VictimRecipe(arch=args.arch, epochs=args.epochs)
    rows = {}
    methods = args.methods.split(",")
    if "none" not in methods or "t2ue" not in methods:
        parser.error("--methods must include none (the clean row) and t2ue")
    for method in methods:
        started = time.time()
        images = protect_set(train.images, train.captions, method, args.seed, args.model)
        protect_seconds = time.time() - started
        data = type(train)(images, train.captions, name=train.name)
        model, tokenizer, log = train_clip_victim(data, recipe, seed=args.seed)
        metrics = evaluate_clip_victim(model, tokenizer, test)
        rows[method] = {**metrics, **log, "protect_seconds": round(protect_seconds, 2)}
        print(method, {k: round(metrics[k], 3) for k in KEYS}, flush=True)
    clean = rows["none"]
    ratios = {k: (rows["t2ue"][k] / clean[k] if clean[k] else None) for k in KEYS}
    result = {
        "dataset": args.dataset, "train_pairs": len(train), "test_pairs": len(test), "seed": args.seed,
        "victim_recipe": recipe.as_dict(), "noise_model": args.model, "epsilon": "8/255",
        "rows": rows, "t2ue_over_clean": ratios,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, CPU",
        "note": "tiny victim (ViT 64 px, patch 16, width 128, 4 layers; text width 128, 4 layers) trained here",
        "versions": {"t2ue": t2ue.__version__, "torch": torch.__version__},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    header = "| training images | " + " | ".join(KEYS) + " |"
    lines = [header, "|" + "---|" * (len(KEYS) + 1)]
    random_row = {k: clean[f"random_{k}"] for k in KEYS}
    names = {"none": "clean", "random": "uniform noise ±8/255", "t2ue": f"t2ue ({args.model}) ±8/255"}
    for name, row in [("random guess", random_row)] + [(names[m], rows[m]) for m in methods]:
        lines.append(f"| {name} | " + " | ".join(f"{row[k]:.3f}" for k in KEYS) + " |")
    print("\n".join(lines))
    print(f"t2ue / clean R@10: i2t {ratios['i2t_R@10'] or 0:.2f}, t2i {ratios['t2i_R@10'] or 0:.2f}")


if __name__ == "__main__":
    main()
