"""How coarse may an exploiter's labelling be before text-made noise stops protecting?

Reads the classifier runs of label-agnostic setting (b) along a nested hierarchy of Fashion-MNIST
groupings (10 classes -> 8 -> 5 -> 4 -> 2; ``t2ue_eval.views``) and prints, per number of groups, the clean
accuracy, the majority-class share and each noise's accuracy as a ratio to clean; saves the table as
JSON and the curve as a PNG. The runs come from plans ``label-agnostic-fashion`` (10 classes) and
``label-agnostic-fashion-granularity`` (the rest), and the control (8 groups merged from pairs
easy to tell apart) from ``label-agnostic-fashion-granularity-control``.

    python eval/granularity_curve.py [RUNS_FOLDER] [-o eval/results/granularity.json] [--seeds 0]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from t2ue_eval.registry import parse_method
from t2ue_eval.report import load_results
from t2ue_eval.runner import write_json
from t2ue_eval.views import COARSE_VIEWS

LEVELS = (("same", 10), ("coarse-labels-8", 8), ("coarse-labels-5", 5), ("coarse-labels-alt", 4),
          ("coarse-labels-2", 2))
CONTROLS = (("coarse-labels-8-easy", 8),)  # as many groups, merged from pairs easy to tell apart
METHODS = {"none": "clean", "t2ue": "sample-wise", "t2ue:mode=class": "class-wise",
           "t2ue-cluster": "cluster-wise (K = 10)"}


def _wanted(run: dict, seeds: set[int]) -> bool:
    """The setting of every level: Fashion-MNIST, ResNet-18, 4 000 / 2 000 at 64 px, 8/255, undefended."""
    c = run["config"]
    return (run["dataset"]["name"] == "fashion-mnist" and c["victim"].get("arch") == "resnet18"
            and c.get("train_limit") == 4000 and c.get("test_limit") == 2000 and c.get("size") == 64
            and c["seed"] in seeds and c.get("fraction") == 1.0 and c.get("defense", "none") == "none"
            and c.get("protector", "same") == "same" and c.get("epsilon") in ("0", "8/255"))


def curve(runs: list[dict], seeds: set[int], levels=LEVELS) -> list[dict]:
    """One row per level: groups, clean / majority / random accuracy and each method's mean and ratio."""
    specs = {parse_method(m).spec(): m for m in METHODS}
    rows = []
    for view, groups in levels:
        found: dict[str, list[dict]] = {}
        for run in runs:
            if _wanted(run, seeds) and run["config"].get("exploiter", "same") == view:
                method = specs.get(run["config"]["method"])
                if method is not None:
                    found.setdefault(method, []).append(run)
        if "none" not in found:
            continue
        clean = float(np.mean([r["metrics"]["accuracy"] for r in found["none"]]))
        first = found["none"][0]["metrics"]
        row = {"view": view, "groups": groups, "clean": round(clean, 4),
               "majority": first.get("majority_accuracy"), "random": first.get("random_accuracy"), "methods": {}}
        for method, label in METHODS.items():
            if method == "none" or method not in found:
                continue
            values = [r["metrics"]["accuracy"] for r in found[method]]
            row["methods"][label] = {"accuracy": round(float(np.mean(values)), 4),
                                     "ratio": round(float(np.mean(values)) / clean, 3),
                                     "seeds": sorted(r["config"]["seed"] for r in found[method])}
        rows.append(row)
    return rows


def plot(rows: list[dict], controls: list[dict], path: Path) -> Path:
    """Ratio to clean against the number of groups, with half of clean and the majority share marked;
    the controls as open markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4))
    groups = [r["groups"] for r in rows]
    for label in METHODS.values():
        points = [(r["groups"], r["methods"][label]["ratio"]) for r in rows if label in r["methods"]]
        if points:
            line, = ax.plot(*zip(*points), marker="o", label=label)
            extra = [(r["groups"], r["methods"][label]["ratio"]) for r in controls if label in r["methods"]]
            if extra:
                ax.plot(*zip(*extra), ls="none", marker="s", mfc="none", color=line.get_color())
    ax.plot(groups, [r["majority"] / r["clean"] for r in rows], "k:", label="one constant answer (majority)")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="half of clean (target)")
    ax.plot([], [], ls="none", marker="s", mfc="none", color="grey", label="8 groups from easy pairs (control)")
    ax.set_xlabel("exploiter's number of groups (nested: 10 → 8 → 5 → 4 → 2)")
    ax.set_ylabel("accuracy / clean accuracy")
    ax.set_xticks(groups)
    ax.set_ylim(0, 1.1)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title("Fashion-MNIST, ResNet-18 exploiter, noise at 8/255")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", default="eval/results/runs")
    parser.add_argument("-o", "--out", default="eval/results/granularity.json")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds to average (default 0)")
    args = parser.parse_args()
    runs, seeds = load_results(args.runs), {int(s) for s in args.seeds.split(",")}
    rows, controls = curve(runs, seeds), curve(runs, seeds, CONTROLS)
    if not rows:
        raise SystemExit(f"no runs of this setting in {args.runs}")
    labels = [label for label in METHODS.values() if label != "clean"]
    print(f"{'exploiter view':>20s} {'groups':>6s} {'clean':>6s} {'majority':>8s} "
          + " ".join(f"{label:>22s}" for label in labels))
    for r in rows + controls:
        cells = [f"{r['methods'][lb]['accuracy']:.3f} ({r['methods'][lb]['ratio']:.2f})" if lb in r["methods"]
                 else "—" for lb in labels]
        print(f"{r['view']:>20s} {r['groups']:6d} {r['clean']:6.3f} {r['majority']:8.4f} "
              + " ".join(f"{c:>22s}" for c in cells))
    out = Path(args.out)
    figure = plot(rows, controls, out.with_suffix(".png"))
    payload = {"groups": {view: {name: list(members) for name, members in COARSE_VIEWS[view].items()}
                          for view, _ in LEVELS + CONTROLS if view in COARSE_VIEWS},
               "seeds": args.seeds, "levels": rows, "controls": controls, "plot": figure.name}
    print(f"saved {write_json(out, payload)} and {figure}")


if __name__ == "__main__":
    main()
