"""Where the demo server keeps photos — uploads, previews, protected copies — and how they go away.

Everything lives in one private folder per server (``t2ue-demo-PID-XXXX`` in the system's temporary
folder, 0700): gradio's upload and output cache (``gradio/``) and the local tab's protected copies
(``outputs/``). It is swept on a timer, so no file stays longer than :data:`RETENTION_S`, and removed
when the server stops — on exit, Ctrl-C, SIGTERM (``docker stop``, systemd) and SIGHUP (the terminal
closed). A server that was killed outright cannot clean up after itself: the next one removes the
folders of servers that are no longer running when it starts.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

PREFIX = "t2ue-demo-"
RETENTION_S = 3600  # no upload, preview or copy is kept longer than this
SWEEP_EVERY_S = 300


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # cannot ask without side effects; left alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_abandoned(parent: Path | None = None) -> list[Path]:
    """Remove the folders of demo servers that are no longer running, and return them."""
    removed = []
    for folder in Path(parent or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        pid = folder.name.removeprefix(PREFIX).split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def sweep(folder: Path, age_s: float = RETENTION_S) -> list[Path]:
    """Remove every file under ``folder`` older than ``age_s`` (and the folders they leave empty)."""
    removed, now = [], time.time()
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        try:
            if path.is_file() and now - path.stat().st_mtime > age_s:
                path.unlink()
                removed.append(path)
            elif path.is_dir() and not any(path.iterdir()) and now - path.stat().st_mtime > age_s:
                path.rmdir()
        except OSError:
            pass  # gone already, or being written: the next sweep takes it
    return removed


class DemoFiles:
    """The server's private folder: ``gradio`` for gradio's cache, ``outputs`` for the local tab's copies."""

    def __init__(self, parent: Path | None = None):
        remove_abandoned(parent)
        self.root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))  # 0700
        self.gradio = self.root / "gradio"
        self.outputs = self.root / "outputs"
        for folder in (self.gradio, self.outputs):
            folder.mkdir(mode=0o700)
        self._stop = threading.Event()

    def sweep(self, age_s: float = RETENTION_S) -> list[Path]:
        return sweep(self.root, age_s)

    def start_sweeping(self, every_s: float = SWEEP_EVERY_S) -> None:
        """Sweep every ``every_s`` seconds in a background thread until :meth:`remove`."""
        def loop():
            while not self._stop.wait(every_s):
                self.sweep()
        threading.Thread(target=loop, name="t2ue-demo-sweep", daemon=True).start()

    def remove(self) -> None:
        self._stop.set()
        shutil.rmtree(self.root, ignore_errors=True)

    def remove_when_stopped(self) -> None:
        """Remove the folder at exit and on SIGTERM and SIGHUP (which otherwise end the process without
        running exit handlers)."""
        atexit.register(self.remove)

        def stop(signum, _frame):
            self.remove()
            sys.exit(128 + signum)

        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), stop)
