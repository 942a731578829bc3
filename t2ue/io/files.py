"""Atomic file writing: every file the library writes appears whole or not at all; and one rule for
reading a saved folder back: a damaged one is named in a ValueError.

One place for the rule: write under a temporary name that is unique to this writer, in the target's
own folder, then rename over the target. An interrupted write leaves the old file (or none), and two
processes filling the same cache at once (parallel evaluator shards) each finish with a whole file.
The temporary name, ``.NAME.RANDOM.PID.part``, says which process writes it, so a file left by a process
that was killed can be told from one being written and removed (:func:`remove_stale_parts`).
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from safetensors import SafetensorError


@contextmanager
def atomic_path(path: str | os.PathLike, *, before_commit: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a file name (safetensors, matplotlib);
    it is renamed over ``path`` when the block ends cleanly and removed otherwise. ``before_commit(tmp)``
    runs just before the rename (to record the file where it will be), and a failure there keeps it out."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{os.getpid()}{PART_SUFFIX}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; a normal file respects the umask
        if before_commit is not None:
            before_commit(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *,
                 before_commit: Callable[[Path], None] | None = None) -> Iterator[io.IOBase]:
    """A handle to write ``path`` through; the file appears at ``path`` only when the block ends cleanly."""
    with atomic_path(path, before_commit=before_commit) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle


PART_SUFFIX = ".part"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists (POSIX)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_parts(folder: Path, names: set[str]) -> list[Path]:
    """Remove the temporary files that writers of ``names`` in ``folder`` left when they were killed (their
    process is gone), and return them. Where a process cannot be asked about (not POSIX), a part is stale
    once a day old."""
    removed = []
    for part in folder.glob(f".*{PART_SUFFIX}"):
        name, _, rest = part.name[1:].removesuffix(PART_SUFFIX).rpartition(".")
        target = name.rpartition(".")[0]
        if target not in names or not rest.isdigit():
            continue
        stale = (not _alive(int(rest))) if os.name == "posix" else time.time() - part.stat().st_mtime > 86400
        if stale:
            part.unlink(missing_ok=True)
            removed.append(part)
    return removed


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file (UTF-8) atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(text)
    return Path(path)


def savez(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Write a compressed ``.npz`` atomically (the name is kept as given)."""
    with atomic_write(path) as handle:
        np.savez_compressed(handle, **arrays)
    return Path(path)


@contextmanager
def reading_folder(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn what a damaged or foreign saved folder raises while it is read (broken JSON, truncated
    safetensors, missing keys, mismatched shapes) into a ValueError that names the folder."""
    try:
        yield
    except (ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as err:
        raise ValueError(f"{path}: not a readable {what} ({type(err).__name__}: {err})") from err


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
