"""What every protection method of the evaluator is: :class:`ProtectionMethod` turns a training set into
:class:`Noise` — a few distinct perturbations and, for every image, which one it gets.

Sample-wise methods have one pattern per image (or per distinct description), class-wise ones one per
label. Noise is kept as signed integer levels (``round(delta * 255)``): for uint8 images,
``clip(x + level)`` is exactly the quantise-after-adding rule, and the levels cache compactly.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from t2ue.data.sets import ImageTextSet, cache_dir, fingerprint
from t2ue.io.files import savez


@dataclass
class Noise:
    """Integer noise levels (U, H, W, 3) and the pattern index (N,) of every image. Levels are int8 for
    additive noise within a budget, int16 for image-dependent changes (CUDA's convolutions); ``log``
    holds what the method reports about making it (rounds, device, final error…); ``captions``, for a
    method that also writes each photo's caption (MEM's triggers), what is posted with it."""

    levels: np.ndarray
    index: np.ndarray
    seconds: float = 0.0
    gradient_steps: int = 0
    log: dict = field(default_factory=dict)
    captions: list[str] | None = None  # what the protector posts with each image, for methods that write it

    def apply(self, images: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
        """A protected copy of uint8 ``images`` (N, H, W, 3); only rows in ``which`` (default all) change."""
        which = np.arange(len(images)) if which is None else np.asarray(which, dtype=np.int64)
        if self.levels.shape[1:] != images.shape[1:]:
            raise ValueError(f"noise of shape {self.levels.shape[1:]} for images of shape {images.shape[1:]}")
        out = images.copy()
        for start in range(0, len(which), 1024):
            rows = which[start : start + 1024]
            work = images[rows].astype(np.int16) + self.levels[self.index[rows]]
            out[rows] = np.clip(work, 0, 255).astype(np.uint8)
        return out


def to_levels(delta: np.ndarray) -> np.ndarray:
    """Signed noise in [0, 1] units (…, H, W, 3) to int8 levels of 1/255."""
    return np.clip(np.rint(np.asarray(delta, dtype=np.float32) * 255.0), -127, 127).astype(np.int8)


class ProtectionMethod:
    """One way to protect a training set. ``needs_photo``: does it have to see the pixels?"""

    name: ClassVar[str]
    needs_photo: ClassVar[bool] = False
    cacheable: ClassVar[bool] = True
    defaults: ClassVar[dict] = {}

    def __init__(self, **params):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(f"method {self.name!r} takes {sorted(self.defaults) or 'no parameters'}, "
                             f"not {sorted(unknown)}")
        self.params = {**self.defaults, **params}

    def spec(self) -> str:
        """The canonical spec string (parameters sorted, defaults included)."""
        args = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.name}:{args}" if args else self.name

    def fingerprint(self) -> str:
        """What a cached noise depends on besides the data, budget and seed."""
        return self.spec()

    def noise(self, data: ImageTextSet, epsilon: float, seed: int) -> Noise:
        raise NotImplementedError


def method_noise(method: ProtectionMethod, data: ImageTextSet, epsilon: float, seed: int,
                 use_cache: bool = True) -> tuple[Noise, bool]:
    """A method's noise for a set, from the cache when this exact noise was made before."""
    key = hashlib.sha256(f"{method.fingerprint()}|{epsilon!r}|{seed}".encode()).hexdigest()[:16]
    path = cache_dir() / "protection" / f"{fingerprint(data)}-{key}.npz"
    if use_cache and method.cacheable and path.is_file():
        with np.load(path) as saved:
            log = json.loads(str(saved["log"])) if "log" in saved else {}
            captions = json.loads(str(saved["captions"])) if "captions" in saved else None
            return Noise(saved["levels"], saved["index"], float(saved["seconds"]), int(saved["gradient_steps"]),
                         log, captions), True
    noise = method.noise(data, epsilon, seed)
    noise.log.setdefault("machine", machine(noise.log.get("device", "cpu")))
    if use_cache and method.cacheable:
        extra = {"captions": json.dumps(noise.captions)} if noise.captions is not None else {}
        savez(path, levels=noise.levels, index=noise.index, seconds=noise.seconds,
              gradient_steps=noise.gradient_steps, log=json.dumps(noise.log), **extra)
    return noise, False


def machine(device: str) -> str:
    """The machine a method or victim ran on, in words."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA)"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, CPU"
