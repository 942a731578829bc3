"""How far apart the perturbations of one protection are, per seed: a check on why setting (b) varies.

Setting (b)'s protecting cells (T2UE class-wise from the exploiter's 4 group names; K = 4 text clusters
against the grouping they match) protect on some seeds and not on others. If the cause were the noise
(a latent that makes the 4 patterns alike), the patterns of the failing seeds should be closer together.
For each method and seed this prints and saves each pattern's RMS, the RMS of what is left once the
component all patterns share is taken out, their mean pairwise cosine and the smallest RMS distance
between two patterns (all in levels of 1/255), next to the accuracy of the committed runs.

    python eval/pattern_distinctness.py        # ≈ 1 min on a 2-core CPU → eval/results/pattern-distinctness.json
"""

from __future__ import annotations

import argparse
import json
from itertools import combinations
from pathlib import Path

import numpy as np

from t2ue_eval.protection import method_noise
from t2ue_eval.registry import parse_method
from t2ue_eval.runner import load_split, write_json
from t2ue_eval.views import exploiter_view

ROOT = Path(__file__).resolve().parents[1]
# (method, protector view, exploiter view of the committed runs whose accuracy is shown beside it)
CASES = [("t2ue:mode=class", "coarse-labels", "coarse-labels"),
         ("t2ue-cluster:clusters=4", "same", "coarse-labels-alt"),
         ("t2ue-cluster:clusters=4,separate=sign", "same", "coarse-labels-alt")]
TRAIN, TEST = 4000, 2000  # the setting (b) plans' seeded samples


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt((x**2).mean()))


def distinctness(levels: np.ndarray) -> dict:
    """Spread of K patterns (K, H, W, 3) of integer levels."""
    flat = levels.reshape(len(levels), -1).astype(np.float64)
    unit = flat / np.linalg.norm(flat, axis=1, keepdims=True)
    pairs = list(combinations(range(len(flat)), 2))
    return {"rms": [round(_rms(p), 2) for p in flat],
            "distinct_rms": [round(_rms(p), 2) for p in flat - flat.mean(axis=0)],
            "mean_cosine": round(float(np.mean([unit[i] @ unit[j] for i, j in pairs])), 3),
            "min_distance_rms": round(min(_rms(flat[i] - flat[j]) for i, j in pairs), 2)}


def committed_accuracy(runs: Path, method: str, protector: str, exploiter: str, seed: int) -> float | None:
    """Accuracy of the committed undefended 8/255 classifier run of this cell, if there is one."""
    spec = parse_method(method).spec()
    for path in sorted(runs.glob("fashion-mnist-*resnet18*.json")):
        run = json.loads(path.read_text())
        config = run["config"]
        if (config["method"] == spec and config.get("protector", "same") == protector
                and config.get("exploiter", "same") == exploiter and config["seed"] == seed
                and config.get("defense", "none") == "none" and config["epsilon"] == "8/255"
                and config["train_limit"] == TRAIN and config["test_limit"] == TEST):
            return run["metrics"]["accuracy"]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "eval" / "results" / "pattern-distinctness.json"))
    parser.add_argument("--runs", default=str(ROOT / "eval" / "results" / "runs"))
    args = parser.parse_args()
    train, _ = load_split("fashion-mnist", 64, TRAIN, TEST)
    results = []
    for method, protector, exploiter in CASES:
        data = exploiter_view(protector, train, "fashion-mnist", 64, "victim_train", TRAIN)
        for seed in (0, 1, 2):
            noise, _ = method_noise(parse_method(method), data, 8 / 255, seed)
            row = {"method": method, "protector": protector, "seed": seed, "patterns": len(noise.levels),
                   **distinctness(noise.levels), "exploiter": exploiter,
                   "accuracy": committed_accuracy(Path(args.runs), method, protector, exploiter, seed)}
            print(json.dumps(row))
            results.append(row)
    payload = {"what": "levels of 1/255; accuracy of the committed ResNet-18 run of the cell (CPU)", "cases": results}
    print(f"saved {write_json(args.out, payload)}")


if __name__ == "__main__":
    main()
