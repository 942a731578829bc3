"""Captions files: the CSV (with a header) and JSONL tables that pair photos with their descriptions.

Every problem is a ValueError that names the file and, where there is one, the line: a file that is not
UTF-8, a CSV without its header, a row without an image or a caption, a caption that is not text, the same
image listed twice with different captions. A UTF-8 byte-order mark (what Excel writes) is fine.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    """One record of a table and the line it starts on (1 is the first line of the file)."""

    line: int
    fields: dict


def read_rows(path: str | os.PathLike, required: tuple[str, ...] = ()) -> list[Row]:
    """The records of a CSV (with a header) or JSONL file, each with its line; ``required`` columns must be in
    the header (CSV) or in every record (JSONL)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line} is not UTF-8 text; save the file as UTF-8") from err
    rows = _jsonl_rows(path, text) if path.suffix.lower() == ".jsonl" else _csv_rows(path, text, required)
    for row in rows:
        missing = [key for key in required if key not in row.fields]
        if missing:
            raise ValueError(f"{path}: line {row.line} has no {', '.join(repr(m) for m in missing)}")
    return rows


def _csv_rows(path: Path, text: str, required: tuple[str, ...]) -> list[Row]:
    reader = csv.DictReader(text.splitlines(keepends=True))
    header = reader.fieldnames or []
    if required and not set(required) <= {name.strip() for name in header}:
        shown = ", ".join(header) if header else "nothing"
        raise ValueError(f"{path}: line 1 should be a header naming the columns {', '.join(required)}; it holds "
                         f"{shown}")
    rows = []
    for record in reader:
        fields = {(key or "").strip(): value for key, value in record.items() if key is not None}
        if any(value not in (None, "") for value in fields.values()):
            rows.append(Row(reader.line_num, fields))
    return rows


def _jsonl_rows(path: Path, text: str) -> list[Row]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {number} is not JSON ({err.msg})") from err
            if not isinstance(record, dict):
                raise ValueError(f"{path}: line {number} is not a JSON object")
            rows.append(Row(number, record))
    return rows


def read_captions(path: str | os.PathLike) -> list[tuple[int, str, str]]:
    """(line, image, caption) for every row of a captions file; the same image listed twice is fine only
    with the same caption."""
    path = Path(path)
    out, seen = [], {}
    for row in read_rows(path, ("image", "caption")):
        image, caption = row.fields["image"], row.fields["caption"]
        if not isinstance(image, str) or not image.strip():
            raise ValueError(f"{path}: line {row.line} names no image")
        if not isinstance(caption, str):
            kind = "no caption" if caption is None else f"a caption that is not text ({caption!r})"
            raise ValueError(f"{path}: line {row.line} has {kind}; write the photo's description there")
        if not caption.strip():
            raise ValueError(f"{path}: line {row.line} has an empty caption for {image}")
        earlier = seen.get(image)
        if earlier is not None and earlier[1] != caption:
            raise ValueError(f"{path}: lines {earlier[0]} and {row.line} give {image} two different captions; keep one")
        if earlier is None:
            seen[image] = (row.line, caption)
            out.append((row.line, image, caption))
    if not out:
        raise ValueError(f"{path}: no rows of image,caption")
    return out
