"""Captions files: the CSV (with a header) and JSONL tables that pair photos with their descriptions."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path


def read_rows(path: str | os.PathLike) -> list[dict]:
    """The records of a CSV (with a header) or JSONL file: what every captions file in t2ue is read with."""
    path = Path(path)
    if path.suffix.lower() != ".jsonl":
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {number} is not JSON ({err.msg})") from err
            if not isinstance(rows[-1], dict):
                raise ValueError(f"{path}: line {number} is not a JSON object")
    return rows
