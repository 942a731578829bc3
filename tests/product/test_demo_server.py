"""The demo server's files, from the outside (issue 37, item 11): private, without the originals' metadata in
previews, and gone when the server is stopped by SIGTERM or SIGHUP or replaced after being killed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmpdir: Path, model: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "HF_"))}
    env["TMPDIR"] = str(tmpdir)
    proc = subprocess.Popen([sys.executable, "-m", "t2ue", "demo", "--port", str(port), "--model", str(model)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=1)
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read().decode()[-2000:]) from None
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the demo did not start")


def _own_folder(tmpdir: Path, proc: subprocess.Popen) -> Path:
    (folder,) = tmpdir.glob(f"t2ue-demo-{proc.pid}-*")
    return folder


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGHUP"])
def test_the_servers_photos_are_private_and_gone_when_it_stops(tiny_noise_model_dir, tmp_path, stop):
    from gradio_client import Client, handle_file

    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    abandoned = tmpdir / f"t2ue-demo-{dead}-zz9x8c7v"  # a server killed outright left its photos
    (abandoned / "outputs").mkdir(parents=True)
    (abandoned / "outputs" / "photo.jpg").write_bytes(b"someone's photo")
    photo = tmp_path / "street.jpg"
    exif = Image.Exif()
    exif[0x010E] = "taken at 52.37 N, 4.89 E"  # what a preview must not carry
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(photo, exif=exif)
    proc, url = _start(tmpdir, tiny_noise_model_dir)
    try:
        assert not abandoned.exists()
        folder = _own_folder(tmpdir, proc)
        result = Client(url, verbose=False).predict([handle_file(str(photo))], "a street at night", 8,
                                                    api_name="/protect")
        downloads = [Path(item if isinstance(item, str) else item["path"]) for item in result[2]]
        assert [d.name for d in downloads] == ["street-protected.jpg"]
        held = [p for p in folder.rglob("*")]
        assert any(p.suffix == ".webp" for p in held) and any(p.name == "street-protected.jpg" for p in held)
        for path in [folder, *held]:
            assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
        for preview in (p for p in held if p.suffix == ".webp"):
            with Image.open(preview) as image:
                assert not image.getexif() and "exif" not in image.info, preview
    finally:
        proc.send_signal(getattr(signal, stop))
        proc.wait(timeout=30)
    assert not folder.exists()
    assert not list(tmpdir.glob("t2ue-demo-*"))
