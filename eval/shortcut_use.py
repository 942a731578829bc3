"""Does the victim use the noise at all? Its final training loss next to its clean-test score, per row.

Error-minimising noise protects by being a shortcut: a victim that learns it reaches a lower training
loss on protected data than on clean data, and scores less on clean test data. A protected row whose
training loss equals the clean row's was not given a shortcut it could use, whatever its test score. This
reads the committed run JSONs of the given plans (nothing is trained) and prints and saves, per victim
recipe (epochs), method and budget: the mean final training loss and headline score over seeds, the
score's ratio to the clean row of the same recipe, and the seeds.

    python eval/shortcut_use.py     # seconds → eval/results/shortcut-use.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from t2ue.evaluation import EvalPlan, write_json
from t2ue.metrics import headline

ROOT = Path(__file__).resolve().parents[1]
PLANS = ["openclipart-text-code", "openclipart-converged", "openclipart-converged-epsilon"]


def rows(plans: list[str], runs: Path) -> list[dict]:
    """One row per (epochs, method, budget) of the plans' committed runs, means over seeds."""
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for name in plans:
        for config in EvalPlan.from_file(ROOT / "eval" / "configs" / f"{name}.json").runs():
            path = runs / f"{config.run_id()}.json"
            if not path.is_file():
                print(f"not run yet: {path.name}")
                continue
            run = json.loads(path.read_text())
            cells[(config.victim.epochs, config.method, config.epsilon)].append(run)
    out = []
    for (epochs, method, epsilon), found in sorted(cells.items()):
        metric = headline(found[0]["metrics"])[0]
        clean = cells.get((epochs, "none", "0"), [])
        clean_score = np.mean([headline(r["metrics"])[1] for r in clean]) if clean else float("nan")
        score = float(np.mean([headline(r["metrics"])[1] for r in found]))
        out.append({"epochs": epochs, "method": method, "epsilon": epsilon, "seeds": sorted(r["config"]["seed"] for r in found),
                    "final_loss": round(float(np.mean([r["victim"]["final_loss"] for r in found])), 3),
                    "metric": metric, "score": round(score, 3), "ratio_to_clean": round(score / clean_score, 2),
                    "psnr": found[0]["protection"].get("psnr")})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", action="append", help=f"plan names under eval/configs (default: {', '.join(PLANS)})")
    parser.add_argument("--runs", default=str(ROOT / "eval" / "results" / "runs"))
    parser.add_argument("--out", default=str(ROOT / "eval" / "results" / "shortcut-use.json"))
    args = parser.parse_args()
    table = rows(args.plan or PLANS, Path(args.runs))
    print(f"{'epochs':>6}  {'method':44} {'budget':>7} {'seeds':>9} {'train loss':>10} {'score':>6} {'x clean':>7}")
    for row in table:
        print(f"{row['epochs']:>6}  {row['method']:44} {row['epsilon']:>7} {','.join(map(str, row['seeds'])):>9} "
              f"{row['final_loss']:>10.3f} {row['score']:>6.3f} {row['ratio_to_clean']:>7.2f}")
    payload = {"what": "final victim training loss and headline score (mean over seeds) of committed runs; CPU",
               "plans": args.plan or PLANS, "rows": table}
    print(f"saved {write_json(args.out, payload)}")


if __name__ == "__main__":
    main()
