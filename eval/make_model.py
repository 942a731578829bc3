"""Train a noise model from its recipe in eval/model_recipes.json and install it (``make model NAME=...``).

The recipe's ``common`` arguments and its own go to ``t2ue train -o runs/NAME``; a recipe with a
``surrogate`` entry first trains that surrogate (``surrogates/train_surrogate.py``) and the model carries
it. The trained generator and ``noise_model.json`` then replace those in ``INTO/NAME``; the model card
(``README.md``) there is kept. Models trained against the bundled surrogate name it as ``default``, except
the default model itself, whose folder holds it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "eval" / "model_recipes.json"


def recipe(name: str) -> dict:
    recipes = json.loads(RECIPES.read_text())
    if name not in recipes["models"]:
        raise SystemExit(f"no recipe named {name!r} in {RECIPES}; known: {', '.join(recipes['models'])}")
    return {**recipes["models"][name], "common": recipes["common"]}


def train_arguments(name: str, runs: Path) -> list[str]:
    """The ``t2ue train`` arguments of a recipe (its own surrogate, when it has one, in ``runs``)."""
    spec = recipe(name)
    own = ["--surrogate", str(runs / f"{name}-surrogate")] if "surrogate" in spec else []
    return [*spec["common"], *own, *spec["train"], "-o", str(runs / name)]


def install(name: str, runs: Path) -> Path:
    spec = recipe(name)
    trained, target = runs / name / "model", ROOT / spec["into"] / name
    target.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target / "generator", ignore_errors=True)
    shutil.copytree(trained / "generator", target / "generator")
    config = json.loads((trained / "noise_model.json").read_text())
    if "surrogate" in spec or target == ROOT / "t2ue" / "assets" / "default":
        shutil.copytree(trained / "surrogate", target / "surrogate", dirs_exist_ok=True)
    else:
        config["text_encoder"] = "default"
    (target / "noise_model.json").write_text(json.dumps(config, indent=2))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs")
    args = parser.parse_args()
    spec = recipe(args.name)
    if "surrogate" in spec:
        subprocess.run([sys.executable, str(ROOT / "surrogates" / "train_surrogate.py"), *spec["surrogate"],
                        "--out", str(args.runs / f"{args.name}-surrogate")], check=True)
    subprocess.run([sys.executable, "-m", "t2ue", "train", *train_arguments(args.name, args.runs)], check=True)
    print(f"installed {install(args.name, args.runs)}")


if __name__ == "__main__":
    main()
