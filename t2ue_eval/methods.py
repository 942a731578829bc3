"""The evaluator's protection methods that need no photo (and the image-based UC baseline): the clean row,
random noise controls, T2UE noise from text, text codes and cluster-wise noise. The photo-optimised
baselines are in :mod:`t2ue_eval.baselines`; :mod:`t2ue_eval.registry` lists them all by name.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import numpy as np
import torch

from t2ue.data.sets import ImageTextSet
from t2ue.models.registry import model_folder
from t2ue.training.transforms import grayscale
from t2ue_eval.protection import Noise, ProtectionMethod, to_levels

# The research noise models (variants that did not make the zoo) live in the repository, beside their
# results: methods find them by name there, after the installed ones
RESEARCH_MODELS = Path(__file__).resolve().parents[1] / "eval" / "models"


def resolve_model(model: str) -> Path:
    """A noise model's folder: installed by name, a research variant by name, or a folder."""
    return model_folder(model, extra=(RESEARCH_MODELS,))


class NoProtection(ProtectionMethod):
    """The clean row: images as scraped."""

    name = "none"

    def noise(self, data: ImageTextSet, epsilon: float, seed: int) -> Noise:
        return Noise(np.zeros((1, *data.images.shape[1:]), np.int8), np.zeros(len(data), np.int64))


class UniformNoise(ProtectionMethod):
    """Uniform random noise in [-eps, eps], independent per pixel unless ``patch`` says otherwise: the
    "is it just noise?" row.

    ``mode=sample`` draws one pattern per image, ``mode=class`` one per label; ``luma=true`` draws one
    plane for R, G and B (grey noise, which grayscale conversion leaves as it is); ``patch=P`` draws one
    value per P x P block (low-frequency noise, the linearly separable "synthetic shortcut" of Yu et al.,
    KDD 2022, which blur, resizing and median filters leave nearly as it is); ``dist=sign`` draws every
    value as +eps or -eps (the most energy the budget allows, RMS eps against eps / sqrt(3) for uniform);
    ``pattern=grating`` draws each pattern as a square-wave grating of +-eps instead (period 4-10 px, any
    angle, any phase): a shortcut that is the same wherever it is cropped, under brightness and contrast
    changes and, with ``luma=true``, under channel shuffle — every part of UEraser's augmentation.
    ``pattern=chroma-grating`` puts the pattern in *where the colour is* instead: one grating per pattern
    whose stripes alternate between colourful noise (every 2 x 2 cell a random +-eps colour whose
    channels are not all equal) and no noise, so that channel shuffle, saturation, brightness and
    contrast change the colours but not which stripes carry them — colour noise that survives channel
    shuffle without turning grey.
    ``pattern=picture`` hides a whole drawing instead: each pattern is an openclipart picture (drawn
    without repeats while there are enough), mean-free per channel and scaled to +-eps — a "semantic"
    shortcut with edges and colour at every scale, transformed by any augmentation as the photo's own
    content is (the idea of Deep Hiding, Meng et al. 2024, without its invertible network);
    ``stretch=true`` scales each to two standard deviations at the budget's edge and clips the rest (a
    drawing is mostly white paper, so at peak scaling it carries little energy).
    """

    name = "random"
    cacheable = False
    defaults = {"mode": "sample", "luma": "false", "patch": "1", "dist": "uniform", "pattern": "blocks",
                "stretch": "false"}

    def spec(self) -> str:
        """Parameters left at their defaults are left out, so the plain row stays ``random`` (its name
        in every run made before these parameters existed)."""
        args = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()) if v != self.defaults[k])
        return f"{self.name}:{args}" if args else self.name

    def noise(self, data: ImageTextSet, epsilon: float, seed: int) -> Noise:
        mode, luma, patch, dist, pattern, stretch = (self.params[k] for k in ("mode", "luma", "patch", "dist",
                                                                             "pattern", "stretch"))
        if (mode not in ("sample", "class") or luma not in ("true", "false") or not patch.isdigit()
                or int(patch) < 1 or dist not in ("uniform", "sign")
                or pattern not in ("blocks", "grating", "chroma-grating", "picture")
                or (pattern != "blocks" and (patch != "1" or dist != "uniform"))
                or (pattern == "chroma-grating" and luma == "true")
                or stretch not in ("true", "false") or (stretch == "true" and pattern != "picture")):
            raise ValueError(f"random takes mode=sample|class, luma=true|false, patch=P (pixels, >= 1), "
                             f"dist=uniform|sign and pattern=blocks|grating|chroma-grating|picture (a grating "
                             f"or picture takes no patch or dist, a chroma-grating no luma; stretch=true is "
                             f"for pictures), "
                             f"got {self.spec()!r}")
        if mode == "class":
            if data.labels is None:
                raise ValueError(f"class-wise random noise needs labels; the set {data.name!r} has none")
            count, index = len(data.class_names), np.asarray(data.labels, dtype=np.int64)
        else:
            count, index = len(data), np.arange(len(data))
        rng = np.random.default_rng([seed, 0x5EED])
        planes, p = (1 if luma == "true" else data.images.shape[-1]), int(patch)
        height, width = data.images.shape[1:3]
        if pattern == "grating":
            delta = epsilon * square_gratings(rng, count, height, width, planes)
        elif pattern == "chroma-grating":
            delta = epsilon * chroma_gratings(rng, count, height, width)
        elif pattern == "picture":
            from t2ue.data.sets import load_openclipart

            delta = epsilon * hidden_pictures(load_openclipart(height).images, rng, count, planes,
                                              stretch=stretch == "true")
        else:
            blocks = (count, -(-height // p), -(-width // p), planes)
            if dist == "sign":
                delta = (epsilon * rng.choice(np.array([-1.0, 1.0]), size=blocks)).astype(np.float32)
            else:
                delta = rng.uniform(-epsilon, epsilon, size=blocks).astype(np.float32)
            delta = blocks_to_pixels(delta, p, height, width)
        delta = np.repeat(delta, data.images.shape[-1] // planes, axis=-1)
        return Noise(to_levels(delta), index)


def blocks_to_pixels(blocks: np.ndarray, size: int, height: int, width: int) -> np.ndarray:
    """Patterns of one value per ``size`` x ``size`` block (N, h, w, ...) at pixel resolution, cut to
    ``height`` x ``width`` (the last blocks at the border are partial)."""
    return blocks.repeat(size, axis=1).repeat(size, axis=2)[:, :height, :width]


def square_gratings(rng: np.random.Generator, count: int, height: int, width: int, planes: int) -> np.ndarray:
    """``count`` x ``planes`` square-wave gratings of +-1, each with its own period (4-10 px), angle and phase."""
    period, angle, phase = (rng.uniform(low, high, size=(count, 1, 1, planes))
                            for low, high in ((4.0, 10.0), (0.0, np.pi), (0.0, 2 * np.pi)))
    y, x = np.mgrid[:height, :width].astype(np.float64)
    along = x[None, :, :, None] * np.cos(angle) + y[None, :, :, None] * np.sin(angle)
    return np.where(np.sin(2 * np.pi * along / period + phase) >= 0, 1.0, -1.0).astype(np.float32)


def chroma_gratings(rng: np.random.Generator, count: int, height: int, width: int, cell: int = 2) -> np.ndarray:
    """``count`` RGB patterns in +-1 whose stripes (a square-wave grating, as :func:`square_gratings`)
    alternate between random non-grey sign colours, one per ``cell`` x ``cell`` block, and zero. The six
    non-grey sign colours are closed under channel permutation, so a shuffled pattern is the same kind
    of pattern with the same stripes."""
    stripes = square_gratings(rng, count, height, width, 1) > 0
    colours = np.array([c for c in np.ndindex(2, 2, 2) if 0 < sum(c) < 3], dtype=np.float32) * 2 - 1
    cells = rng.integers(len(colours), size=(count, -(-height // cell), -(-width // cell)))
    coloured = blocks_to_pixels(colours[cells], cell, height, width)
    return np.where(stripes, coloured, 0.0).astype(np.float32)


def hidden_pictures(pictures: np.ndarray, rng: np.random.Generator, count: int, planes: int,
                    stretch: bool = False) -> np.ndarray:
    """``count`` of the uint8 ``pictures`` (N, H, W, 3), drawn without repeats while there are enough,
    each mean-free per plane and scaled to peak +-1 (``planes=1``: their luma); ``stretch``: scaled so
    that two standard deviations reach +-1, and clipped there."""
    chosen = rng.choice(len(pictures), size=count, replace=count > len(pictures))
    work = pictures[chosen].astype(np.float32) / 255.0
    if planes == 1:
        work = grayscale(torch.from_numpy(work).permute(0, 3, 1, 2))[:, :1].permute(0, 2, 3, 1).numpy()
    work -= work.mean(axis=(1, 2), keepdims=True)
    if stretch:
        spread = work.std(axis=(1, 2, 3), keepdims=True)
        return np.clip(work / np.maximum(2 * spread, 1e-6), -1.0, 1.0).astype(np.float32)
    peak = np.abs(work).max(axis=(1, 2, 3), keepdims=True)
    return (work / np.maximum(peak, 1e-6)).astype(np.float32)


def distinct_captions(data: ImageTextSet) -> tuple[list[str], np.ndarray]:
    """The set's distinct descriptions (sorted) and, for every image, the index of its own: sample-wise
    noise is one pattern per description, so images that share a caption share it."""
    texts, index = np.unique(np.asarray(data.captions, dtype=object), return_inverse=True)
    return [str(t) for t in texts], index.reshape(-1)


def model_digest(model: str, salt: str = "") -> str:
    """A hash of a noise model folder's configs and weights (``default``, ``robust``: bundled ones)."""
    folder = resolve_model(model)
    digest = hashlib.sha256(salt.encode())
    for file in sorted(folder.rglob("*")):
        if file.is_file() and file.suffix in (".json", ".safetensors"):
            digest.update(file.relative_to(folder).as_posix().encode() + file.read_bytes())
    return digest.hexdigest()[:16]


class T2UENoise(ProtectionMethod):
    """Noise from the description alone, by a noise model (``model``: default or a folder).

    ``mode=sample``: one pattern per distinct description (its seed follows the text);
    ``mode=class``: one pattern per label, from the class name in a fixed template.
    """

    name = "t2ue"
    defaults = {"model": "default", "mode": "sample"}

    def fingerprint(self) -> str:
        return f"t2ue:{self.params['mode']}:{model_digest(self.params['model'], self.params['mode'])}"

    def noise(self, data: ImageTextSet, epsilon: float, seed: int) -> Noise:
        from t2ue.api import noise_from_text

        mode = self.params["mode"]
        if mode == "class":
            if data.labels is None:
                raise ValueError(f"class-wise t2ue noise needs labels; the set {data.name!r} has none")
            texts, index = list(data.class_names), np.asarray(data.labels, dtype=np.int64)
        elif mode == "sample":
            texts, index = distinct_captions(data)
        else:
            raise ValueError(f"t2ue mode must be sample or class, got {mode!r}")
        started = time.perf_counter()
        size = data.images.shape[1]
        levels = []
        for start in range(0, len(texts), 512):
            noise = noise_from_text(texts[start : start + 512], size=size, model=resolve_model(self.params["model"]), seed=seed,
                                    mode=mode, epsilon=epsilon)
            levels.append(to_levels(noise.permute(0, 2, 3, 1).numpy()))
        return Noise(np.concatenate(levels), np.asarray(index, dtype=np.int64).reshape(-1),
                     seconds=time.perf_counter() - started)


class TextCode(ProtectionMethod):
    """A control for text-made noise: the most decodable noise a description can be turned into, with no
    training and no surrogate. Each distinct description gets a SimHash of its text, laid out as +-eps
    blocks of ``block`` pixels: the signs of fixed random projections of the noise model's text embedding
    (``code=embedding``), or of the sum of a random vector per word (``code=words``). Similar descriptions
    share most blocks, and a linear read-out of block means recovers the code, so if any text-only shortcut
    can be learnt from a set, this one can; where it fails too, the generator is not what is missing."""

    name = "textcode"
    defaults = {"code": "embedding", "block": "8", "model": "default"}

    def fingerprint(self) -> str:
        digest = model_digest(self.params["model"]) if self.params["code"] == "embedding" else "words"
        return f"textcode:{self.params['code']}:b{self.params['block']}:{digest}"

    def noise(self, data: ImageTextSet, epsilon: float, seed: int) -> Noise:
        code, block = self.params["code"], self.params["block"]
        if code not in ("embedding", "words") or not block.isdigit() or int(block) < 1:
            raise ValueError(f"textcode takes code=embedding|words and block=P (pixels, >= 1), got {self.spec()!r}")
        texts, index = distinct_captions(data)
        p = int(block)
        height, width, channels = data.images.shape[1:]
        grid = (-(-height // p), -(-width // p), channels)
        bits = int(np.prod(grid))
        started = time.perf_counter()
        if code == "words":
            codes = np.stack([sum((_word_vector(word, seed, bits) for word in set(re.findall(r"\w+", text.lower()))),
                                  np.zeros(bits, np.float32)) for text in texts])
        else:
            from t2ue.api import load_noise_model
            from t2ue.models.cluster_fitting import embed_texts

            embedding = embed_texts(load_noise_model(resolve_model(self.params["model"])), texts)
            projection = np.random.default_rng([seed, 0x51A4]).standard_normal((embedding.shape[1], bits))
            codes = torch.nn.functional.normalize(embedding, dim=-1).numpy() @ projection.astype(np.float32)
        signs = np.where(codes >= 0, 1.0, -1.0).astype(np.float32).reshape(len(texts), *grid)
        delta = blocks_to_pixels(epsilon * signs, p, height, width)
        return Noise(to_levels(delta), np.asarray(index, dtype=np.int64).reshape(-1),
                     seconds=time.perf_counter() - started)


def _word_vector(word: str, seed: int, size: int) -> np.ndarray:
    """A fixed Gaussian vector for a word (the same on every machine for one seed)."""
    key = int.from_bytes(hashlib.sha256(f"{seed}\x00{word}".encode()).digest()[:8], "little")
    return np.random.default_rng(key).standard_normal(size).astype(np.float32)


def _reference_images(data: ImageTextSet, limit: int = 2000) -> tuple[torch.Tensor, list[str]]:
    """Public pictures to fit cluster perturbations on: the *provider* part of the same built-in set
    (never the protected training images)."""
    from t2ue.data.sets import BUILTIN, load_dataset

    if data.name not in BUILTIN:
        raise ValueError(f"maker=uc needs public reference images; only the built-in sets ({', '.join(BUILTIN)}) "
                         "have a provider part")
    reference = load_dataset(data.name, data.images.shape[1], part="provider", limit=limit)
    pixels = torch.from_numpy(np.ascontiguousarray(reference.images)).permute(0, 3, 1, 2).float() / 255
    return pixels, reference.captions


def _levels_at(patterns: torch.Tensor, size: int) -> np.ndarray:
    """Perturbations (K, 3, h, w) resized to the set's size, as int8 levels (K, size, size, 3)."""
    if patterns.shape[-1] != size:
        bound = float(patterns.abs().max())
        patterns = torch.nn.functional.interpolate(patterns, size=(size, size), mode="bilinear", align_corners=False,
                                                   antialias=patterns.shape[-1] > size).clamp(-bound, bound)
    return to_levels(patterns.permute(0, 2, 3, 1).numpy())


class T2UEClusterNoise(ProtectionMethod):
    """Label-agnostic: descriptions grouped by K-means (``clusters``), one perturbation per group, made by
    the noise model's generator from the group centre (``maker=generator``, text only) or fitted with
    the UC objective on public reference images (``maker=uc``).

    ``clusters=4+10`` layers several groupings: each picture gets the mean of its group's perturbation
    at every K, so members of one coarse group share a component whatever finer group they are in (a
    shortcut at each granularity, each at a share of the budget).

    ``separate=sign`` or ``separate=G`` (a gain) takes out what all clusters' perturbations share and
    spreads the differences over the budget (:func:`t2ue.models.clusters.separate_patterns`)."""

    name = "t2ue-cluster"
    defaults = {"model": "default", "clusters": "10", "maker": "generator", "separate": "none"}

    def spec(self) -> str:
        """Defaults included, except ``separate=none`` (left out so that runs made before it keep their ids)."""
        args = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()) if k != "separate" or v != "none")
        return f"{self.name}:{args}"

    def fingerprint(self) -> str:
        separate = "" if self.params["separate"] == "none" else f":sep{self.params['separate']}"
        return (f"t2ue-cluster:{model_digest(self.params['model'])}:k{self.params['clusters']}:"
                f"{self.params['maker']}{separate}")

    def noise(self, data: ImageTextSet, epsilon: float, seed: int) -> Noise:
        from t2ue.api import load_noise_model
        from t2ue.models.cluster_fitting import fit_and_assign

        levels = self.params["clusters"].split("+")
        if not all(k.isdigit() for k in levels) or len(set(levels)) != len(levels):
            raise ValueError(f"clusters takes K or distinct K1+K2+…, got {self.params['clusters']!r}")
        model = load_noise_model(resolve_model(self.params["model"]))
        started = time.perf_counter()
        reference = _reference_images(data) if self.params["maker"] == "uc" else (None, None)
        patterns, owners = [], []
        for k in levels:
            fitted, owner = fit_and_assign(model, list(data.captions), int(k), seed=seed, maker=self.params["maker"],
                                           reference_images=reference[0], reference_texts=reference[1],
                                           separate=self.params["separate"])
            patterns.append(fitted.patterns * (epsilon / fitted.epsilon))
            owners.append(owner.numpy().astype(np.int64))
        combos, index = np.unique(np.stack(owners, axis=1), axis=0, return_inverse=True)
        mixed = torch.stack([patterns[level][combos[:, level]] for level in range(len(levels))]).mean(dim=0)
        return Noise(_levels_at(mixed, data.images.shape[1]), index.reshape(-1), seconds=time.perf_counter() - started)


class UnlearnableClusters(ProtectionMethod):
    """The image-based UC baseline: K-means on the surrogate's *image* features of the training images,
    one perturbation per cluster fitted on those images with the UC objective. Needs the photos."""

    name = "uc"
    needs_photo = True
    defaults = {"model": "default", "clusters": "10", "steps": "200"}

    def fingerprint(self) -> str:
        return f"uc:{model_digest(self.params['model'])}:k{self.params['clusters']}:s{self.params['steps']}"

    def noise(self, data: ImageTextSet, epsilon: float, seed: int) -> Noise:
        from t2ue.api import load_noise_model
        from t2ue.models.cluster_fitting import kmeans, uc_patterns

        model = load_noise_model(resolve_model(self.params["model"]))
        started = time.perf_counter()
        pixels = torch.from_numpy(np.ascontiguousarray(data.images)).permute(0, 3, 1, 2).float() / 255
        with torch.inference_mode():
            features = torch.cat([model.surrogate.encode_image(pixels[i : i + 256]).float()
                                  for i in range(0, len(pixels), 256)])
        centres, owners = kmeans(features, int(self.params["clusters"]), seed)
        steps = int(self.params["steps"])
        patterns = uc_patterns(model, centres, pixels, owners, steps=steps, lr=0.05, batch_size=64, seed=seed)
        patterns = patterns * (epsilon / model.epsilon)
        return Noise(_levels_at(patterns, data.images.shape[1]), owners, seconds=time.perf_counter() - started,
                     gradient_steps=steps * min(64, len(data)))

