"""Cold start of `t2ue protect` for one photo, against `python -c "import torch"` in the same run.

Protecting one photo on a laptop is mostly start-up: importing torch, loading the noise model, one pass
of the text tower and generator, writing the copy. This pairs the two commands, alternating their order,
and reports the median CPU time (user + system) of each and their ratio; the target is at most 2x.
It also lists which heavy packages the protect process imported (none of open_clip, transformers,
torchvision, accelerate, diffusers, gradio, scikit-learn or the evaluator should be).

    python eval/bench_cold_start.py            # 7 pairs, about a minute on a 2-core CPU
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_speed import machine

from t2ue_eval.runner import write_json

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "demos" / "samples" / "astronaut.png"
TEXT = "an astronaut in a white spacesuit holding a helmet, with an American flag behind her"
HEAVY = ("open_clip", "transformers", "torchvision", "accelerate", "diffusers", "gradio", "sklearn", "t2ue_eval",
         "kornia", "matplotlib", "skimage")


def timed(command: list[str]) -> tuple[float, float]:
    """CPU seconds (user + system) and wall seconds of one command run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def imported_heavy(command: list[str]) -> list[str]:
    """The heavy top-level packages a command imports (read from ``python -X importtime``)."""
    result = subprocess.run([sys.executable, "-X", "importtime", *command[1:]], capture_output=True, text=True,
                            check=True)
    names = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    return sorted(names & set(HEAVY))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "bench-cold-start.json")
    args = parser.parse_args()
    baseline = [sys.executable, "-c", "import torch"]
    with tempfile.TemporaryDirectory() as tmp:
        protect = [sys.executable, "-m", "t2ue", "protect", str(PHOTO), "--text", TEXT, "-o", tmp]
        timed(baseline), timed(protect + ["--skip-existing"])  # warm the page cache for both
        runs = {"import torch": [], "t2ue protect": []}
        for i in range(args.pairs):
            order = [("import torch", baseline), ("t2ue protect", protect)]
            for name, command in order if i % 2 == 0 else order[::-1]:
                if name == "t2ue protect":
                    for old in Path(tmp).iterdir():
                        old.unlink()
                runs[name].append(timed(command))
        heavy = imported_heavy(protect)
    cpu = {name: statistics.median(c for c, _ in values) for name, values in runs.items()}
    wall = {name: statistics.median(w for _, w in values) for name, values in runs.items()}
    ratio = cpu["t2ue protect"] / cpu["import torch"]
    result = {
        "what": "CPU time (user + system) of `t2ue protect` of one 512 x 512 PNG with the default model, against "
                "`python -c 'import torch'`, medians of paired runs in alternating order",
        "pairs": args.pairs, "cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
        "wall_seconds": {k: round(v, 3) for k, v in wall.items()}, "cpu_ratio": round(ratio, 3), "target_ratio": 2.0,
        "heavy_packages_imported_by_protect": heavy,
        "machine": machine(),
    }
    for name in runs:
        print(f"{name:14s} CPU {cpu[name]:.2f} s  wall {wall[name]:.2f} s (median of {args.pairs})")
    print(f"ratio {ratio:.2f} (target <= 2); heavy packages imported by protect: {', '.join(heavy) or 'none'}")
    print(f"saved {write_json(args.out, result)}")


if __name__ == "__main__":
    main()
