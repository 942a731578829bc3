"""Which noise models are installed: the folders under ``t2ue/assets`` and under ``T2UE_MODELS_PATH``.

A noise model is found by its folder's name; nothing here keeps a list of names by hand, so a model
copied into one of these folders is available to ``--model NAME`` and listed by ``t2ue models``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"
NOISE_MODEL_CONFIG = "noise_model.json"
MODELS_PATH_ENV = "T2UE_MODELS_PATH"  # more folders of noise models, separated like PATH


@dataclass(frozen=True)
class InstalledModel:
    """A noise model folder found by name, with the one-line summary of its model card."""

    name: str
    path: Path
    bundled: bool

    @property
    def summary(self) -> str:
        """The first paragraph of the folder's ``README.md`` (its model card), else what its config says."""
        card = self.path / "README.md"
        if card.is_file():
            lines = [line.strip() for line in card.read_text(encoding="utf-8").splitlines()]
            body = [line for line in lines if line and not line.startswith(("#", "---"))]
            if body:
                return body[0]
        config = json.loads((self.path / NOISE_MODEL_CONFIG).read_text())
        return f"{config.get('generator', '?')} generator, budget {round(config.get('epsilon', 0) * 255)}/255"


def search_folders(extra: tuple[Path, ...] = ()) -> list[Path]:
    """Where models are looked for, in order: the bundled assets, ``T2UE_MODELS_PATH``, then ``extra``."""
    env = [Path(p) for p in os.environ.get(MODELS_PATH_ENV, "").split(os.pathsep) if p]
    return [ASSETS, *env, *extra]


def installed_models(extra: tuple[Path, ...] = ()) -> list[InstalledModel]:
    """Every noise model folder in the search folders; a name found twice is the first one's."""
    found: dict[str, InstalledModel] = {}
    for folder in search_folders(extra):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if (path / NOISE_MODEL_CONFIG).is_file() and path.name not in found:
                found[path.name] = InstalledModel(path.name, path, folder == ASSETS)
    return list(found.values())


def model_folder(model: str | os.PathLike, extra: tuple[Path, ...] = ()) -> Path:
    """The folder of an installed noise model by name, or the given path as it is."""
    if is_model_name(model):
        for installed in installed_models(extra):
            if installed.name == str(model):
                return installed.path
    return Path(model)


def is_model_name(model: str | os.PathLike) -> bool:
    """Whether ``model`` looks like a name rather than a path (no separator, not an existing path)."""
    text = str(model)
    return os.sep not in text and "/" not in text and not Path(text).exists()
