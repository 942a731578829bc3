"""The manifest of an output folder (``.t2ue-protected``): the copies t2ue wrote there, so that a later run
never protects one of them a second time, and never writes over a file it did not write.

One line per copy: its path relative to the folder, a tab and ``sha256=`` the hash of the file as written.
A path that holds a tab, a line break or starts with a double quote is written as a JSON string. Lines
without a hash (written before hashes were kept) still name a copy. A copy is listed just before it is
renamed into place (:func:`t2ue.io.files.atomic_path`'s ``before_commit``), so a copy that exists is
always listed, even when the run is interrupted right after.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

MANIFEST = ".t2ue-protected"
_HASH = "sha256="
_APPENDING = threading.Lock()  # threads writing copies list them one line at a time


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _line(relative: str, digest: str | None) -> str:
    name = json.dumps(relative, ensure_ascii=False) if any(c in relative for c in "\t\n\r") or \
        relative.startswith('"') else relative
    return f"{name}\t{_HASH}{digest}" if digest else name


def _parse(line: str) -> tuple[str, str | None] | None:
    name, tab, rest = line.rpartition("\t")
    digest = rest.removeprefix(_HASH) if tab and rest.startswith(_HASH) else None
    if digest is None:
        name = line
    if name.startswith('"'):
        try:
            name = json.loads(name)
        except json.JSONDecodeError:
            return None
    return (name, digest) if name else None


def read_manifest(folder: Path) -> dict[str, str | None]:
    """The copies a folder's manifest lists, each with its hash as written (None when not recorded)."""
    try:
        text = (folder / MANIFEST).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    listed: dict[str, str | None] = {}
    for line in text.split("\n"):
        parsed = _parse(line)
        if parsed is not None:
            listed[parsed[0]] = parsed[1]  # a copy made again: its last line holds its hash
    return listed


class EarlierCopies:
    """Which files are protected copies an earlier run wrote: those listed in the manifest of a folder
    above them (each manifest read once)."""

    def __init__(self) -> None:
        self._listed: dict[Path, dict[str, str | None]] = {}

    def _list(self, folder: Path) -> dict[str, str | None]:
        if folder not in self._listed:
            self._listed[folder] = read_manifest(folder)
        return self._listed[folder]

    def _entry(self, path: Path) -> tuple[Path, str] | None:
        path = path.resolve()
        for folder in path.parents:
            relative = path.relative_to(folder).as_posix()
            if relative in self._list(folder):
                return folder, relative
        return None

    def manifest(self, path: Path) -> Path | None:
        """The manifest that lists ``path`` as a protected copy, or None for a photo of the user's own."""
        entry = self._entry(path)
        return entry[0] / MANIFEST if entry else None

    def written_as_listed(self, path: Path) -> bool:
        """Whether ``path`` is still the very file t2ue wrote there (its hash as listed)."""
        entry = self._entry(path)
        if entry is None:
            return False
        digest = self._list(entry[0])[entry[1]]
        return digest is not None and path.is_file() and file_hash(path) == digest

    def note(self, folder: Path, relative: str, digest: str) -> None:
        self._list(folder)[relative] = digest


def record_copy(output_dir: Path, copy: Path, written: Path, earlier: EarlierCopies) -> None:
    """List ``copy`` (about to be renamed from ``written``) in its output folder's manifest, in one appended
    line, unless it is listed already with the same content."""
    relative = copy.relative_to(output_dir).as_posix()
    digest = file_hash(written)
    with _APPENDING:
        listed = earlier._list(output_dir.resolve())
        if listed.get(relative) == digest:
            return
        with open(output_dir / MANIFEST, "a", encoding="utf-8") as manifest:
            manifest.write(_line(relative, digest) + "\n")
        earlier.note(output_dir.resolve(), relative, digest)
