"""Speed and memory of the user-facing path on this machine, saved with the machine named.

Measures: noise_from_text throughput (batch 64, 224x224) and one-text latency; protect on a
12-megapixel JPEG end to end (read, noise, add, write); peak resident memory, and what protecting one
12 MP or 50 MP photo adds to it (fresh processes); the `t2ue protect` command on one such photo (its
PSNR included) and on an album of eight 12 MP photos, one at a time and with --jobs = cores; default
model load time (imports included: the product path loads neither open_clip nor transformers).
Targets on a 2-core CPU: >= 100 texts/s batched, <= 1 s per 12 MP photo, <= 1.5 GB peak, load <= 5 s;
the demo's zero-contact answer (noise for one description, PNG-encoded) <= 1 s.

    python eval/bench_speed.py [--out eval/results/bench_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import t2ue
t1 = time.perf_counter()
model = t2ue.load_noise_model("default")
model_s = time.perf_counter() - t1
t2ue.noise_from_text(["warm up"], size=224)
load_s = time.perf_counter() - t0
print(json.dumps({"load_s": load_s, "model_s": model_s, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# What protecting one photo adds to a warm process's peak memory, in a fresh process per photo. Run
# while this process is still small: a child's peak-memory count starts from its parent's at fork.
CHILD_PHOTO = r"""
import sys
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)).resize((int(sys.argv[2]), int(sys.argv[3]))).save(
    sys.argv[1], quality=92)
"""
CHILD_PROTECT = r"""
import json, resource, sys
import t2ue
from t2ue.api import protect_file
t2ue.noise_from_text(["warm up"], size=224)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
protect_file(sys.argv[1], sys.argv[2], "a wide landscape photo of mountains")
print(json.dumps({"increment_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
"""

# `t2ue protect` as a user runs it on one photo (read, noise, add, write, read back, PSNR printed),
# after a small photo has warmed the process: its seconds and what it adds to the peak.
CHILD_CLI = r"""
import json, resource, sys, time
from pathlib import Path
from PIL import Image
from t2ue.cli import app
small = Path(sys.argv[2]) / "small.jpg"
small.parent.mkdir()
Image.new("RGB", (64, 48), (90, 120, 150)).save(small)
app(["protect", str(small), "--text", "warm up", "-o", sys.argv[2] + "-out"], standalone_mode=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
app(["protect", sys.argv[1], "--text", "a wide landscape photo of mountains", "-o", sys.argv[3]], standalone_mode=False)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "increment_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
"""

# `t2ue protect FOLDER -j N` on an album of 12 MP photos, after a warm-up photo: seconds for the album.
CHILD_ALBUM = r"""
import json, sys, time
from pathlib import Path
from t2ue.cli import app
album, out, jobs = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
app(["protect", str(next(album.iterdir())), "--text", "warm up", "-o", str(out) + "-warm"], standalone_mode=False)
t = time.perf_counter()
app(["protect", str(album), "--text", "a wide landscape photo of mountains", "-o", str(out), "-j", jobs],
    standalone_mode=False)
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def run_child(script: str, *args) -> dict:
    """Run a measuring script in a fresh process (so one measure's memory is not another's); its last
    printed line, as JSON."""
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_photo(path: Path, width: int, height: int) -> None:
    """A JPEG of smooth random content at the given size, made in its own process (so its memory is not
    counted as protecting's)."""
    subprocess.run([sys.executable, "-c", CHILD_PHOTO, str(path), str(width), str(height)], check=True)


def protect_increment_mb(width: int, height: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        photo, out = str(Path(tmp) / "photo.jpg"), str(Path(tmp) / "out.jpg")
        make_photo(Path(photo), width, height)
        increment = run_child(CHILD_PROTECT, photo, out)["increment_mb"]
    return round(increment, 1)


def cli_protect(width: int, height: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.jpg"
        make_photo(photo, width, height)
        measured = run_child(CHILD_CLI, photo, Path(tmp) / "a", Path(tmp) / "b")
    return {"seconds": round(measured["seconds"], 3), "adds_to_peak_mb": round(measured["increment_mb"], 1)}


def album_throughput(photos: int = 8) -> dict:
    """Photos per second for `t2ue protect FOLDER` one at a time and with one thread per core."""
    jobs = sorted({1, os.cpu_count() or 1})
    result = {"photos": photos, "size": "4000x3000 JPEG"}
    with tempfile.TemporaryDirectory() as tmp:
        album = Path(tmp) / "album"
        album.mkdir()
        for i in range(photos):
            make_photo(album / f"photo{i}.jpg", 4000, 3000)
        for n in jobs:
            seconds = run_child(CHILD_ALBUM, album, Path(tmp) / f"out{n}", n)["seconds"]
            result[f"jobs_{n}_photos_per_s"] = round(photos / seconds, 2)
    if len(jobs) > 1:
        result["speedup"] = round(result[f"jobs_{jobs[-1]}_photos_per_s"] / result["jobs_1_photos_per_s"], 2)
    return result


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="eval/results/bench_speed.json")
    args = parser.parse_args()

    cold = run_child(CHILD)
    increments = {"12mp_4000x3000": protect_increment_mb(4000, 3000), "50mp_8192x6144": protect_increment_mb(8192, 6144)}
    command = {"12mp_4000x3000": cli_protect(4000, 3000), "50mp_8192x6144": cli_protect(8192, 6144)}
    album = album_throughput()
    import torch

    import t2ue
    from t2ue.cli import app  # noqa: F401  (the CLI's import cost is part of real use)

    t2ue.noise_from_text(["warm up"] * 4, size=224)
    texts = [f"a holiday photo number {i} of a family on a beach at sunset" for i in range(64)]
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        out = t2ue.noise_from_text(texts, size=224)
        runs.append(time.perf_counter() - t)
    assert out.shape == (64, 3, 224, 224)
    batch_s = float(np.median(runs))
    singles = []
    for i in range(10):
        t = time.perf_counter()
        t2ue.noise_from_text([f"a selfie of me at the beach, take {i}"], size=224)
        singles.append(time.perf_counter() - t)

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "photo.jpg"
        make_photo(src, 4000, 3000)
        from t2ue.api import protect_file

        times = []
        for i in range(3):
            t = time.perf_counter()
            protect_file(src, Path(tmp) / f"out{i}.jpg", "a wide landscape photo of mountains")
            times.append(time.perf_counter() - t)
        protect_s = float(np.median(times))

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the demo's imports

    from t2ue.demo.app import noise_payload

    payload_times = []
    for i in range(10):
        t = time.perf_counter()
        noise_payload(f"a selfie of me at the beach, take {i}")
        payload_times.append(time.perf_counter() - t)
    result = {
        "machine": machine(),
        "torch_threads": torch.get_num_threads(),
        "model": "bundled default (t2ue-gan 64 px + MiniLM text tower)",
        "noise_from_text_batch64_224px_texts_per_s": round(64 / batch_s, 1),
        "noise_from_text_one_text_latency_ms": round(1000 * float(np.median(singles)), 1),
        "protect_12mp_jpeg_end_to_end_s": round(protect_s, 3),
        "demo_zero_contact_noise_payload_ms": round(1000 * float(np.median(payload_times)), 1),
        "peak_rss_mb_this_process": round(peak_mb, 1),
        "protect_adds_to_peak_mb": increments,
        "t2ue_protect_command_per_photo": command,
        "t2ue_protect_album": album,
        "default_model_cold_load_s": round(cold["load_s"], 2),
        "default_model_load_after_imports_s": round(cold["model_s"], 2),
        "default_model_cold_load_rss_mb": round(cold["rss_mb"], 1),
        "targets": {"texts_per_s": ">= 100", "protect_12mp_s": "<= 1", "peak_rss_mb": "<= 1536", "load_s": "<= 5"},
    }
    print(json.dumps(result, indent=2))
    from t2ue_eval.runner import write_json  # after the peak-memory reading

    write_json(args.out, result)


if __name__ == "__main__":
    main()
