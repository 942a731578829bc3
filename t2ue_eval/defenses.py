"""What an exploiter may do to scraped data to learn from it anyway: a registry of defenses.

Two kinds, combinable with ``+`` (``jpeg:quality=75+strong-aug``):

* *purifications* rewrite the scraped training images once, before training, and the result is
  stored as uint8 again (JPEG uses the real codec, Pillow's libjpeg);
* *training-time* defenses change the victim's loop: random augmentation, UEraser's worst of several
  augmented copies, PGD adversarial training.

A defense sees only the scraped training set; the test set stays clean, except for defenses with
``at_test`` (a grayscale pipeline feeds its model grayscale pictures at test time too).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
from PIL import Image

from t2ue.budget import parse_epsilon
from t2ue.training import transforms as T

LossFn = Callable[..., torch.Tensor]


class Defense:
    """One defense; ``params`` are strings from the spec, typed by the subclass."""

    name: ClassVar[str]
    defaults: ClassVar[dict] = {}
    purifies: ClassVar[bool] = False  # rewrites the scraped images before training
    trains: ClassVar[bool] = False  # changes the training loop
    at_test: ClassVar[bool] = False  # the exploiter's model sees the defense's output at test time too
    copies: int = 1
    adversarial: bool = False

    def __init__(self, **params):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(f"defense {self.name!r} takes {sorted(self.defaults) or 'no parameters'}, not {sorted(unknown)}")
        self.params = {**self.defaults, **params}

    def spec(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()) if v != "")
        return f"{self.name}:{args}" if args else self.name

    def purify(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Purification of a float batch (B, 3, H, W) in [0, 1]; training-time defenses return it unchanged."""
        return x

    def purify_uint8(self, images: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """Purified uint8 images (N, H, W, 3), quantised again as the exploiter would store them."""
        return _map_float(images, lambda x: self.purify(x, generator))

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random augmentation of a training batch; purifications return it unchanged."""
        return x


class JPEG(Defense):
    """Re-encode with the real JPEG codec (Pillow, 4:2:0) at ``quality``."""

    name = "jpeg"
    defaults = {"quality": "75"}
    purifies = True

    def purify_uint8(self, images: np.ndarray, generator: torch.Generator) -> np.ndarray:
        out = np.empty_like(images)
        for i, image in enumerate(images):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=int(self.params["quality"]))
            out[i] = np.asarray(Image.open(buffer).convert("RGB"))
        return out


class Grayscale(Defense):
    """Luma only, for training and test images (the ISS "grayscale" squeeze)."""

    name = "grayscale"
    purifies = at_test = True

    def purify(self, x, generator):
        return T.grayscale(x)


class GaussianBlur(Defense):
    name = "blur"
    defaults = {"sigma": "1.0"}
    purifies = True

    def purify(self, x, generator):
        return T.gaussian_blur(x, float(self.params["sigma"]))


class BitDepth(Defense):
    name = "bit-depth"
    defaults = {"bits": "3"}
    purifies = True

    def purify(self, x, generator):
        return T.bit_depth(x, int(self.params["bits"]))


class Median(Defense):
    name = "median"
    defaults = {"size": "3"}
    purifies = True

    def purify(self, x, generator):
        return T.median_filter(x, int(self.params["size"]))


class NoiseRescale(Defense):
    """Purification by adding Gaussian noise, then thumbnailing and back (drowns, then averages out)."""

    name = "noise-rescale"
    defaults = {"sigma": "16/255", "scale": "0.5"}
    purifies = True

    def purify(self, x, generator):
        noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype) * parse_epsilon(self.params["sigma"])
        return T.rescale((x + noise).clamp(0, 1), float(self.params["scale"]))


class StrongAugmentation(Defense):
    """Random resized crop (50–100 % of the area), flip, colour jitter, on every training batch."""

    name = "strong-aug"
    trains = True

    def augment(self, x, generator):
        return T.colour_jitter(T.random_resized_crop(x, generator), generator)


class UEraser(Defense):
    """UEraser-Max (Qin et al. 2023): the loss of each image is the worst over ``copies`` heavily augmented
    copies (crop and flip, plasma brightness/contrast, channel shuffle, colour jitter). ``skip`` leaves
    parts out, ``/``-separated (``skip=shuffle/plasma``): the ablation of which part breaks a noise."""

    name = "ueraser"
    defaults = {"copies": "5", "skip": ""}
    trains = True

    def __init__(self, **params):
        super().__init__(**params)
        T.check_ueraser_parts(self.skipped)

    @property
    def copies(self) -> int:
        return int(self.params["copies"])

    @property
    def skipped(self) -> tuple[str, ...]:
        return tuple(filter(None, self.params["skip"].split("/")))

    def augment(self, x, generator):
        return T.ueraser_augment(x, generator, self.skipped)


class AdversarialTraining(Defense):
    """PGD adversarial training (Madry et al.): every batch replaced by its L∞ ``epsilon`` worst case."""

    name = "pgd-at"
    defaults = {"epsilon": "8/255", "steps": "5", "alpha": "2/255"}
    adversarial = trains = True

    def attack(self, loss_fn: LossFn, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        eps, alpha = parse_epsilon(self.params["epsilon"]), parse_epsilon(self.params["alpha"])
        delta = ((torch.rand(x.shape, generator=generator).to(x.device) * 2 - 1) * eps).requires_grad_(True)
        for _ in range(int(self.params["steps"])):
            loss = loss_fn((x + delta).clamp(0, 1), frozen=True).mean()
            (grad,) = torch.autograd.grad(loss, [delta])
            delta = (delta + alpha * grad.sign()).clamp(-eps, eps).detach().requires_grad_(True)
        return (x + delta.detach()).clamp(0, 1)


# Every defense by name, in the order reports list them
DEFENSES: dict[str, type[Defense]] = {defense.name: defense for defense in (
    JPEG, Grayscale, GaussianBlur, BitDepth, Median, NoiseRescale, StrongAugmentation, UEraser, AdversarialTraining,
)}


class DefenseChain:
    """Several defenses applied in the order given; the canonical spec joins theirs with ``+``."""

    def __init__(self, parts: list[Defense]):
        self.parts = parts

    def spec(self) -> str:
        return "+".join(p.spec() for p in self.parts) or "none"

    @property
    def trains(self) -> bool:
        return any(p.trains for p in self.parts)

    @property
    def copies(self) -> int:
        """How many augmented copies of each example the training loss takes the worst of."""
        return max([p.copies for p in self.parts] + [1])

    def purify_images(self, images: np.ndarray, seed: int, *, test: bool = False) -> np.ndarray:
        """Purified uint8 images (N, H, W, 3), the input left untouched; ``test``: only the
        purifications the exploiter's pipeline also applies to test pictures."""
        generator = torch.Generator().manual_seed(seed)
        out = images
        for part in self.parts:
            if part.purifies and (part.at_test or not test):
                out = part.purify_uint8(out, generator)
        return out

    def training_loss(self, loss_fn: LossFn, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The batch loss under the training-time defenses: each copy augmented (and attacked), the
        per-example maximum over copies, then the mean."""
        losses = []
        for _ in range(self.copies):
            x = pixels
            for part in self.parts:
                x = part.augment(x, generator)
            for part in self.parts:
                if part.adversarial:
                    x = part.attack(loss_fn, x, generator)
            losses.append(loss_fn(x))
        return torch.stack(losses).amax(dim=0).mean()


def _map_float(images: np.ndarray, fn: Callable[[torch.Tensor], torch.Tensor], batch: int = 512) -> np.ndarray:
    """Apply a float batch function to uint8 images in chunks and quantise back to uint8."""
    out = np.empty_like(images)
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch])).permute(0, 3, 1, 2).float() / 255
            y = fn(x).clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1)
            out[start : start + batch] = y.numpy()
    return out


def parse_defense(spec: str) -> DefenseChain:
    """``none``, ``jpeg:quality=10``, ``grayscale+strong-aug`` … to a chain."""
    parts = []
    for item in filter(None, (s.strip() for s in spec.split("+"))):
        name, _, args = item.partition(":")
        if name == "none":
            continue
        if name not in DEFENSES:
            raise ValueError(f"unknown defense {name!r}; known: none, {', '.join(sorted(DEFENSES))}")
        params = {}
        for arg in filter(None, args.split(",")):
            key, sep, value = arg.partition("=")
            if not sep:
                raise ValueError(f"defense parameter {arg!r} in {spec!r} is not key=value")
            params[key.strip()] = value.strip()
        parts.append(DEFENSES[name](**params))
    return DefenseChain(parts)
