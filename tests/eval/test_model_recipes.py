"""Every noise model in the repository has a recipe, and its recipe says what the model's own config records."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))

from make_model import RECIPES, train_arguments  # noqa: E402


def _folders():
    return {p.name: p for folder in (ROOT / "t2ue" / "assets", ROOT / "eval" / "models") for p in folder.iterdir()
            if (p / "noise_model.json").is_file()}


def test_every_model_has_a_recipe_and_every_recipe_a_model():
    assert set(_folders()) == set(json.loads(RECIPES.read_text())["models"])


def test_each_recipe_matches_the_training_its_model_recorded(tmp_path):
    for name, folder in _folders().items():
        config = json.loads((folder / "noise_model.json").read_text())
        training = config["training"]
        args = train_arguments(name, tmp_path)
        value = {key: args[args.index(flag) + 1] for key, flag in (("steps", "--steps"), ("batch_size", "--batch-size"),
                                                                    ("lr", "--lr"), ("seed", "--seed"))}
        assert (int(value["steps"]), int(value["batch_size"]), float(value["lr"]), int(value["seed"])) == \
            (training["steps"], training["batch_size"], training["lr"], training["seed"]), name
        assert ("--robust" in args) == bool(training.get("robust")), name
        eot = args[args.index("--eot") + 1] if "--eot" in args else "standard"
        assert eot == training.get("eot", "standard"), name
        assert ("--luma" in args) == bool(config.get("luma") or json.loads(
            (folder / "generator" / "generator_config.json").read_text()).get("luma")), name
        assert args[args.index("--data") + 1] == training["dataset"] and training["pairs"] == 8000, name
        own_surrogate = (folder / "surrogate").is_dir()
        assert own_surrogate == (config["text_encoder"] == "surrogate"), name
