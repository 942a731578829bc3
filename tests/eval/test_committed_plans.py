"""The committed results stay reproducible: `make report` runs every plan, and every run is in one."""

import json
import re
from pathlib import Path

from t2ue_eval.runner import EvalPlan

ROOT = Path(__file__).resolve().parents[2]


def _report_plans() -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    block = re.search(r"^PLANS \?=(.*?)^report:", makefile, re.S | re.M)
    assert block, "Makefile has no PLANS list for `make report`"
    return block.group(1).replace("\\\n", " ").split()


def test_make_report_runs_every_committed_plan():
    on_disk = sorted(p.stem for p in (ROOT / "eval" / "configs").glob("*.json"))
    assert sorted(_report_plans()) == on_disk


def test_every_committed_run_is_reproduced_by_a_plan():
    planned = set()
    for name in _report_plans():
        runs = EvalPlan.from_file(ROOT / "eval" / "configs" / f"{name}.json").runs()
        assert runs, f"plan {name} expands to no runs"
        planned.update(run.run_id() for run in runs)
    committed = sorted((ROOT / "eval" / "results" / "runs").glob("*.json"))
    assert committed
    orphans = [p.name for p in committed if p.stem not in planned]
    assert not orphans, f"runs no plan in `make report` reproduces: {orphans}"
    for path in committed[:5]:
        assert json.loads(path.read_text())["run_id"] == path.stem
