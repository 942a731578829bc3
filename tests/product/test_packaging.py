"""What `pip install .` (not editable) ships: every data file a package reads must be in its package data."""

import fnmatch
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("package", ["t2ue", "t2ue_eval"])
def test_every_data_file_of_the_package_is_shipped(package):
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][package]
    folder = ROOT / package
    data_files = [p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data_files, "the package has no data files at all?"
    # setuptools' "**" crosses folders; fnmatch's "*" does too, which is what these patterns mean here
    missing = [f for f in data_files if not any(fnmatch.fnmatch(f, pattern.replace("**/", "")) or
                                                fnmatch.fnmatch(f, pattern) for pattern in patterns)]
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


def test_the_evaluator_commands_are_entry_points_of_t2ue():
    points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["t2ue.commands"]
    assert set(points) == {"evaluate", "report", "verify"} and all(v.startswith("t2ue_eval.") for v in points.values())
