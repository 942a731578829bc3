"""Which distinctions does a victim trained on protected Fashion-MNIST still learn?

Reads classifier runs (10 classes, the protector's own labels) that carry a confusion matrix and
splits their accuracy into the coarse part — tops, trousers, footwear, bags, the exploiter's groups in
label-agnostic setting (b) — and the fine part within a group: does protection remove only the fine
distinctions, or the coarse ones too? (Measured: the coarse ones too; see eval/REPORT.md, (b).)

    python eval/coarse_vs_fine.py [RUNS_FOLDER] [-o eval/results/coarse-vs-fine.json]
"""
from __future__ import annotations

import argparse

import numpy as np

from t2ue_eval.metrics import grouped_accuracy
from t2ue_eval.report import load_results
from t2ue_eval.runner import write_json
from t2ue_eval.views import COARSE_FASHION


def split_accuracy(matrix: list[list[int]]) -> dict:
    """Fine accuracy, accuracy at the coarse groups, and fine accuracy among right-group answers."""
    matrix = np.asarray(matrix)
    fine = float(np.trace(matrix) / matrix.sum())
    coarse = grouped_accuracy(matrix, list(COARSE_FASHION.values()))
    per_class = (np.diag(matrix) / matrix.sum(axis=1)).round(3).tolist()
    return {"accuracy": round(fine, 4), "coarse_group_accuracy": round(coarse, 4),
            "fine_given_right_group": round(fine / coarse, 4), "per_class_accuracy": per_class}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", default="eval/results/confusion-runs")
    parser.add_argument("-o", "--out", default="eval/results/coarse-vs-fine.json")
    args = parser.parse_args()
    rows = []
    for run in load_results(args.runs):
        matrix = run["metrics"].get("confusion")
        if run["dataset"]["name"] != "fashion-mnist" or matrix is None or len(matrix) != 10:
            continue
        rows.append({"method": run["config"]["method"], "defense": run["config"].get("defense", "none"),
                     "seed": run["config"]["seed"], "machine": run["machine"], **split_accuracy(matrix)})
    rows.sort(key=lambda r: (r["method"] != "none", r["method"], r["defense"], r["seed"]))
    print(f"{'method':55s} {'accuracy':>8s} {'coarse':>7s} {'fine|group':>10s}")
    for r in rows:
        print(f"{r['method'] + ('' if r['defense'] == 'none' else ' / ' + r['defense']):55s} "
              f"{r['accuracy']:8.3f} {r['coarse_group_accuracy']:7.3f} {r['fine_given_right_group']:10.3f}")
    payload = {"groups": {name: list(members) for name, members in COARSE_FASHION.items()}, "runs": rows}
    print(f"saved {write_json(args.out, payload)}")


if __name__ == "__main__":
    main()
