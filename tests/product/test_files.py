"""Atomic writing (t2ue.io.files): whole files or none, and writers that do not trip over each other."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from t2ue.io.files import atomic_path, atomic_write, savez, write_text


def test_concurrent_writers_of_one_cache_all_finish_with_a_whole_file(tmp_path):
    # Parallel evaluator shards on a fresh machine all build the same data cache at once.
    target = tmp_path / "fashion-mnist-64.npz"
    arrays = [np.full((200, 64, 64), i, dtype=np.uint8) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        written = list(pool.map(lambda a: savez(target, images=a), arrays))
    assert written == [target] * 8
    with np.load(target) as saved:
        images = saved["images"]
    assert images.shape == (200, 64, 64) and len(np.unique(images)) == 1  # one writer's array, whole
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left behind


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = write_text(tmp_path / "run.json", '{"ok": true}\n')
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_write(target, "w") as handle:
            handle.write('{"half')
            raise RuntimeError("disk full")
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "weights.safetensors") as tmp:
            tmp.write_bytes(b"partial")
            raise ValueError("interrupted")
    assert target.read_text() == '{"ok": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_written_files_follow_the_umask(tmp_path):
    import os

    old = os.umask(0o027)
    try:
        path = write_text(tmp_path / "a" / "table.md", "| x |\n")  # parent folders are made
    finally:
        os.umask(old)
    assert path.read_text() == "| x |\n" and path.stat().st_mode & 0o777 == 0o640
