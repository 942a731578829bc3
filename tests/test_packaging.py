"""What `pip install .` (not editable) ships: every data file the package reads must be in its package data."""

import fnmatch
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_data_file_of_the_package_is_shipped():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["t2ue"]
    package = ROOT / "t2ue"
    data_files = [p.relative_to(package).as_posix() for p in package.rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data_files, "the package has no data files at all?"
    # setuptools' "**" crosses folders; fnmatch's "*" does too, which is what these patterns mean here
    missing = [f for f in data_files if not any(fnmatch.fnmatch(f, pattern.replace("**/", "")) or
                                                fnmatch.fnmatch(f, pattern) for pattern in patterns)]
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
