"""The public functions promised to users: noise_from_text, apply_noise, protect."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from t2ue.budget import DEFAULT_EPSILON, parse_epsilon, project_linf
from t2ue.io.images import MAX_PIXELS, ImageError, apply_noise, check_jpeg_quality, load_image, save_image
from t2ue.models.cluster_fitting import cluster_noise_for, fit_and_assign
from t2ue.models.clusters import ClusterNoise
from t2ue.models.noise_model import NoiseModel
from t2ue.models.registry import NOISE_MODEL_CONFIG, installed_models, is_model_name, model_folder

__all__ = ["noise_from_text", "apply_noise", "protect", "protect_file", "protect_file_with_noise", "load_noise_model"]


MODES = ("sample", "class", "cluster")
# The text encoder reads a few hundred characters at most (48 tokens); far longer text only costs time
MAX_DESCRIPTION_CHARS = 10_000


def check_descriptions(texts: list) -> list[str]:
    """The descriptions as given, or a ValueError that says which one is not usable text and why."""
    if not texts:
        raise ValueError("give at least one description")
    for i, text in enumerate(texts):
        where = f"description {i + 1}" if len(texts) > 1 else "the description"
        if not isinstance(text, str):
            raise ValueError(f"{where} is {type(text).__name__}, not text")
        if not text.strip():
            raise ValueError(f"{where} is empty: the noise is made from the words, so give some")
        if len(text) > MAX_DESCRIPTION_CHARS:
            raise ValueError(f"{where} has {len(text):,} characters; at most {MAX_DESCRIPTION_CHARS:,} are taken "
                             "(the text encoder reads the first few hundred)")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"{where} is not valid UTF-8 text (byte {err.start}: {text[err.start:err.end]!a})") from err
    return texts


def _check_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    sides = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    try:
        sides = tuple(sides)
    except TypeError:
        sides = ()
    if len(sides) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sides) \
            or sides[0] * sides[1] > MAX_PIXELS:
        raise ValueError(f"size must be None, one side or (height, width) in whole pixels, at most "
                         f"{MAX_PIXELS:,} pixels in all; got {size!r}")
    return sides


def _budget(model, epsilon) -> float:
    """The budget noise is made at: the one asked for, else the model's own."""
    return parse_epsilon(epsilon) if epsilon is not None else load_noise_model(model).epsilon


def _refuse_same_file(source: str | os.PathLike, target: str | os.PathLike) -> None:
    source, target = Path(source), Path(target)
    same = source.resolve() == target.resolve()
    if not same and target.exists() and source.exists():
        same = os.path.samefile(source, target)  # a hard link, or the same name in another case
    if same:
        raise ValueError(f"{source}: the protected copy would be written over the original ({target}); write it "
                         "elsewhere")


@lru_cache(maxsize=4)
def _load_cached(path: str) -> NoiseModel:
    return NoiseModel.from_pretrained(path)


def load_noise_model(model: str | os.PathLike | NoiseModel = "default") -> NoiseModel:
    """An installed noise model by name (``t2ue models`` lists them), a folder, or an already loaded instance."""
    if isinstance(model, NoiseModel):
        return model
    path = model_folder(model)
    if not (path / NOISE_MODEL_CONFIG).is_file():
        if is_model_name(model):
            names = ", ".join(m.name for m in installed_models())
            raise FileNotFoundError(f"{model}: no such noise model (installed: {names}), nor a folder of that name")
        raise FileNotFoundError(f"{path}: not a noise model folder (expected {NOISE_MODEL_CONFIG})")
    return _load_cached(str(path.resolve()))


def noise_from_text(texts: str | list[str], *, size: int | tuple[int, int] | None = 224,
                    model: str | os.PathLike | NoiseModel = "default", seed: int = 0, mode: str = "sample",
                    epsilon: float | str | None = None, n_clusters: int = 8,
                    clusters: str | os.PathLike | ClusterNoise | None = None,
                    separate: str | float | None = None) -> torch.Tensor:
    """Protective noise for each description: float32 (N, 3, H, W), every value within +-epsilon.

    ``size`` is the output size (``None`` keeps the model's resolution); ``epsilon`` rescales the
    model's noise to another budget (default: the model's own, 8/255 for the bundled model).
    ``mode``: ``sample`` (each description its own noise; the same text and seed always give the same
    noise, wherever it stands in the batch), ``class`` (each text is a label) or ``cluster`` (the
    descriptions are grouped into ``n_clusters`` by K-means and each group shares one perturbation;
    clusters fitted before are reused: ``clusters`` — a folder or :class:`~t2ue.models.clusters.ClusterNoise`
    from :func:`~t2ue.models.cluster_fitting.fit_cluster_noise` — or else those saved with the noise model).
    ``separate`` (``"sign"`` or a gain), when clusters are fitted here, spreads the differences between the
    groups' perturbations over the budget (:func:`~t2ue.models.clusters.separate_patterns`).
    """
    texts = check_descriptions([texts] if isinstance(texts, str) else list(texts))
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    size = _check_size(size)
    bound = parse_epsilon(epsilon) if epsilon is not None else None
    noise_model = load_noise_model(model)
    if separate not in (None, "none") and (mode != "cluster" or clusters is not None or noise_model.clusters is not None):
        raise ValueError("separate is chosen when clusters are fitted: mode='cluster' without clusters fitted before")
    if mode == "cluster":
        clusters = noise_model.clusters if clusters is None else clusters
        if clusters is None:
            clusters, owners = fit_and_assign(noise_model, texts, n_clusters, seed=seed, separate=separate)
            noise = clusters.patterns[owners]
        else:
            if not isinstance(clusters, ClusterNoise):
                clusters = ClusterNoise.from_pretrained(clusters)
            noise = cluster_noise_for(noise_model, clusters, texts)
        noise = noise * (noise_model.epsilon / clusters.epsilon)
    else:
        noise = noise_model.generate(texts, seed=seed, mode=mode)
    if bound is not None:
        noise = noise * (bound / noise_model.epsilon)
    else:
        bound = noise_model.epsilon
    if size is not None:
        if tuple(noise.shape[-2:]) != size:
            shrinking = size[0] < noise.shape[-2] or size[1] < noise.shape[-1]
            noise = F.interpolate(noise, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    return project_linf(noise, bound).float().contiguous()


def protect(image_or_path: Image.Image | str | os.PathLike, text: str, *,
            model: str | os.PathLike | NoiseModel = "default", seed: int = 0, mode: str = "sample",
            epsilon: float | str | None = None, clusters: str | os.PathLike | ClusterNoise | None = None,
            ) -> Image.Image:
    """A protected copy of a photo (same size and mode) from its description; the original is untouched.
    ``mode="cluster"`` needs clusters fitted before (``clusters`` or a noise model saved with them).
    Of a file with several frames this is the first; :func:`protect_file` protects and writes them all."""
    image = image_or_path if isinstance(image_or_path, Image.Image) else load_image(image_or_path).image
    noise = noise_from_text([text], size=None, model=model, seed=seed, mode=mode, epsilon=epsilon, clusters=clusters)
    return apply_noise(image, noise[0], epsilon=_budget(model, epsilon))


def protect_file(source: str | os.PathLike, target: str | os.PathLike, text: str, *,
                 model: str | os.PathLike | NoiseModel = "default", seed: int = 0, mode: str = "sample",
                 epsilon: float | str | None = None, jpeg_quality: int = 95,
                 clusters: str | os.PathLike | ClusterNoise | None = None) -> tuple[Image.Image, Image.Image]:
    """Protect one photo file into ``target`` (atomically, same format, EXIF and ICC kept; every frame
    of an animation or page of a multi-page file gets the same noise).

    Returns the decoded original and the protected image as read back from ``target`` (first frames),
    so that what a caller measures is what was written, lossy formats included. ``target`` is never the
    source itself (by any path, link or differently cased name); other files there are the caller's to
    keep (:func:`t2ue.protect_folder` decides that for an album).
    """
    check_jpeg_quality(jpeg_quality)
    _refuse_same_file(source, target)
    noise = noise_from_text([text], size=None, model=model, seed=seed, mode=mode, epsilon=epsilon, clusters=clusters)
    return protect_file_with_noise(source, target, noise[0], jpeg_quality=jpeg_quality,
                                   epsilon=_budget(model, epsilon))


def protect_file_with_noise(source: str | os.PathLike, target: str | os.PathLike, noise: torch.Tensor, *,
                            jpeg_quality: int = 95, epsilon: float | str | None = DEFAULT_EPSILON,
                            max_pixels: int = MAX_PIXELS, before_commit: Callable[[Path], None] | None = None,
                            ) -> tuple[Image.Image, Image.Image]:
    """:func:`protect_file` with the noise already made (one (3, h, w) tensor from :func:`noise_from_text`,
    within ``epsilon``), so that an album's noise can be made in one batch and its photos written in
    parallel: this part holds no model and is safe to run in several threads at once. ``before_commit``
    runs just before the copy is renamed into place (:func:`t2ue.io.files.atomic_path`)."""
    check_jpeg_quality(jpeg_quality)
    _refuse_same_file(source, target)
    loaded = load_image(source, max_pixels=max_pixels)
    protected = [apply_noise(frame, noise, epsilon=epsilon) for frame in loaded.frames]
    if all(np.array_equal(np.asarray(a.convert(b.mode) if a.mode != b.mode else a), np.asarray(b))
           for a, b in zip(loaded.frames, protected)):
        raise ImageError(f"{source}: the noise changed no pixel of it (every change rounds to nothing at this "
                         "budget), so a copy would not be protected; use a larger budget")
    save_image(protected[0], target, format=loaded.format, info=loaded.info, jpeg_quality=jpeg_quality,
               more_frames=protected[1:], before_commit=before_commit)
    with Image.open(target) as written:  # the first frame only, as a viewer decodes it
        written.load()
        return loaded.image, written.copy()
