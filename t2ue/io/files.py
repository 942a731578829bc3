"""Atomic file writing: every file the library writes appears whole or not at all; and one rule for
reading a saved folder back: a damaged one is named in a ValueError.

One place for the rule: write under a temporary name that is unique to this writer, in the target's
own folder, then rename over the target. An interrupted write leaves the old file (or none), and two
processes filling the same cache at once (parallel evaluator shards) each finish with a whole file.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from safetensors import SafetensorError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a file name (safetensors, matplotlib);
    it is renamed over ``path`` when the block ends cleanly and removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; a normal file respects the umask
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[io.IOBase]:
    """A handle to write ``path`` through; the file appears at ``path`` only when the block ends cleanly."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else "utf-8") as handle:
        yield handle


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
