"""Protecting an album: the one loop that finds the photos, gives each its description, decides where each
copy goes, makes the noise a batch of photos at a time and writes the copies (in threads), listing each in
its output folder's manifest. ``t2ue protect``, the demo's local tab and Python callers all go through
:func:`protect_folder`.

Nothing is ever written over an input, and an unreadable photo is reported (its outcome names it) while
the others go on.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from t2ue.api import MODES, check_descriptions, load_noise_model, noise_from_text, protect_file_with_noise
from t2ue.budget import parse_epsilon
from t2ue.io.files import remove_stale_parts
from t2ue.io.images import MAX_PIXELS, ImageError, check_image, check_jpeg_quality, psnr, read_description
from t2ue.io.manifest import MANIFEST, EarlierCopies, record_copy
from t2ue.photos import Captions, find_photos, plan_copies, refuse_earlier_copies

# The noise of this many photos is made in one call, then they are written (in ``jobs`` threads)
NOISE_BATCH = 64


@dataclass(frozen=True)
class PhotoOutcome:
    """What became of one photo: ``protected``, ``kept`` (a copy already there), ``planned`` (a dry run) or
    ``failed`` (``message`` says why, naming the file)."""

    source: Path | None
    target: Path | None
    status: str
    words: str | None = None
    message: str = ""
    psnr: float | None = None


@dataclass
class AlbumReport:
    """Every photo's outcome, in the order they were decided, and the copies protected earlier that a
    folder or pattern reached and left out."""

    dry_run: bool = False
    outcomes: list[PhotoOutcome] = field(default_factory=list)
    left_out: list[Path] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(outcome.status == status for outcome in self.outcomes)

    @property
    def failed(self) -> int:
        return self.count("failed")

    def summary(self) -> str:
        """One line: what was (or would be) protected, then the kept and failed, when any."""
        done = f"{self.count('planned')} would be protected" if self.dry_run else f"{self.count('protected')} protected"
        parts = [done, *([f"{self.count('kept')} kept"] if self.count("kept") else []),
                 *([f"{self.failed} {'would fail' if self.dry_run else 'failed'}"] if self.failed else [])]
        return ", ".join(parts) + ("; nothing written (dry run)" if self.dry_run else "")


class NothingToProtect(ValueError):
    """The photos named hold no photo to protect (each reason is an outcome of the report)."""


def _describer(captions: Captions | None, texts: Mapping[Path, str] | None, text: str | None,
               metadata_captions: bool) -> Callable[[Path], str]:
    """The function that gives a photo its description, raising LookupError (or ImageError) that names
    the photo when it has none."""
    chosen = {Path(k).resolve(): v for k, v in (texts or {}).items()}

    @functools.cache  # cluster mode asks twice: to fit the clusters, then to protect
    def description(photo: Path) -> str:
        if captions is not None:
            return captions.caption(photo)
        if photo.resolve() in chosen:
            words = chosen[photo.resolve()]
            if not words or not words.strip():
                raise LookupError(f"{photo}: its description is empty")
            return words
        embedded = read_description(photo) if metadata_captions else None
        if embedded is None and text is None:
            raise LookupError(f"{photo}: no description in its metadata (XMP, IPTC, EXIF, PNG text) nor in a "
                              "sidecar; give --text for such photos, or a --captions file")
        return embedded or text

    return description


def _cluster_noise(noise_model, descriptions: list[str], k: int, folder: Path, seed: int, separate: str,
                   log: Callable[[str], None]):
    """Clusters from ``folder`` when it holds them; else fitted on ``descriptions`` and saved there."""
    from t2ue.models.cluster_fitting import fit_cluster_noise
    from t2ue.models.clusters import CLUSTER_CONFIG, ClusterNoise

    if (folder / CLUSTER_CONFIG).is_file():
        if separate != "none":
            raise ValueError(f"--separate is chosen when clusters are fitted; {folder} holds clusters fitted before")
        log(f"reusing the clusters in {folder}")
        return ClusterNoise.from_pretrained(folder)
    fitted = fit_cluster_noise(noise_model, descriptions, k, seed=seed, separate=separate)
    fitted.save_pretrained(folder)
    log(f"{k} clusters fitted on {len(descriptions)} descriptions, saved to {folder} (reuse with --cluster-dir)")
    return fitted


def protect_folder(photos: Iterable[str | os.PathLike] | str | os.PathLike | None, output_dir: str | os.PathLike, *,
                   text: str | None = None, captions: str | os.PathLike | None = None,
                   texts: Mapping[str | os.PathLike, str] | None = None, metadata_captions: bool = False,
                   recursive: bool = False, skip_existing: bool = False, jobs: int = 1,
                   model: str | os.PathLike = "default", seed: int = 0, mode: str = "sample",
                   epsilon: float | str | None = None, jpeg_quality: int = 95, n_clusters: int = 8,
                   cluster_dir: str | os.PathLike | None = None, separate: str = "none", dry_run: bool = False,
                   max_pixels: int = MAX_PIXELS,
                   on_photo: Callable[[PhotoOutcome, Image.Image | None, Image.Image | None], None] | None = None,
                   log: Callable[[str], None] | None = None) -> AlbumReport:
    """Protect photos, folders (their images; with ``recursive`` their sub-folders' too) or the photos a
    captions file lists into ``output_dir``, each copy keeping its name, format and metadata.

    Descriptions come from ``text`` (one for all), ``captions`` (a CSV/JSONL file), ``texts`` (a mapping
    from photo to words) or, with ``metadata_captions``, each photo's own (``text`` for those without).
    ``on_photo(outcome, original, protected)`` is called as each photo is decided or written (the two
    images, as decoded and as written, for a protected photo); ``log`` gets the other lines a user should
    read. Raises ValueError (or :class:`NothingToProtect`) for options or inputs that leave nothing to do.
    """
    on_photo = on_photo or (lambda *_: None)
    log = log or (lambda _: None)
    report = AlbumReport(dry_run=dry_run)

    def emit(outcome: PhotoOutcome, original=None, protected=None) -> None:
        report.outcomes.append(outcome)
        on_photo(outcome, original, protected)

    output_dir = Path(output_dir)
    if captions is not None and (text is not None or metadata_captions or texts):
        raise ValueError("give --captions alone: the file holds every photo's description")
    if text is None and captions is None and not metadata_captions and not texts:
        raise ValueError("give the descriptions: --text, --captions or --metadata-captions")
    if text is not None and not text.strip():
        raise ValueError("--text is empty: the noise is made from the description, so give one")
    if separate != "none" and mode != "cluster":
        raise ValueError("--separate goes with --mode cluster")
    if mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}; got {mode!r}")
    if text is not None:
        check_descriptions([text])
    budget = parse_epsilon(epsilon) if epsilon is not None else None
    check_jpeg_quality(jpeg_quality)
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a whole number from 1 up; got {jobs!r}")
    listed = Captions(Path(captions)) if captions is not None else None
    paths = [Path(photos)] if isinstance(photos, (str, os.PathLike)) else [Path(p) for p in photos or ()]
    if not paths and listed is None:
        raise ValueError("give the photos to protect")
    earlier = EarlierCopies()  # the manifests as this run found them, read once
    if paths:
        found, problems, report.left_out = find_photos(paths, recursive=recursive, output_dir=output_dir,
                                                       earlier=earlier)
    else:  # the photos the captions file lists
        found, problems = refuse_earlier_copies(listed.photos(recursive), earlier)
    for problem in problems:
        emit(PhotoOutcome(None, None, "failed", message=problem))
    if report.left_out:
        count = len(report.left_out)
        log(f"left out {count} cop{'y' if count == 1 else 'ies'} t2ue protected earlier (listed in their folders' "
            f"{MANIFEST}), e.g. {report.left_out[0]}")
    if not found:
        raise NothingToProtect("no photo to protect")
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"{output_dir}: is a file; --output-dir names the folder for the protected copies")

    description = _describer(listed, texts, text, metadata_captions)
    plan = plan_copies(found, output_dir, skip_existing=skip_existing, earlier=earlier)
    for target in plan.kept:
        emit(PhotoOutcome(None, target, "kept", message="already there, kept"))
    for message in plan.refused:
        emit(PhotoOutcome(None, None, "failed", message=message))
    todo: list[tuple[Path, Path, str]] = []
    for source, target in plan.write:
        try:
            todo.append((source, target, description(source)))
        except (LookupError, ImageError) as err:
            emit(PhotoOutcome(source, target, "failed", message=str(err)))
    if dry_run:
        for source, target, words in todo:
            try:
                check_image(source, max_pixels=max_pixels)
                emit(PhotoOutcome(source, target, "planned", words))
            except ImageError as err:
                emit(PhotoOutcome(source, target, "failed", words, str(err)))
        return report

    noise_model = load_noise_model(model)
    output_dir.mkdir(parents=True, exist_ok=True)
    for folder, names in _by_folder([target for _, target, _ in todo]).items():
        remove_stale_parts(folder, names)
    fitted = None
    if mode == "cluster" and cluster_dir is None and noise_model.clusters is not None:
        if separate != "none":
            raise ValueError("--separate is chosen when clusters are fitted; this noise model brings its own")
        fitted = noise_model.clusters
        log(f"using the {fitted.k} clusters saved with the noise model")
    elif mode == "cluster":
        words = []
        for photo in found:
            try:
                words.append(description(photo.source))
            except (LookupError, ImageError):
                pass  # named when that photo's turn comes
        fitted = _cluster_noise(noise_model, words, n_clusters, Path(cluster_dir or output_dir / "clusters"), seed,
                                separate, log)
    _write_all(todo, output_dir, noise_model, fitted, earlier, emit, seed=seed, mode=mode, epsilon=epsilon,
               budget=budget or noise_model.epsilon, jpeg_quality=jpeg_quality, jobs=jobs, max_pixels=max_pixels)
    return report


def _by_folder(targets: list[Path]) -> dict[Path, set[str]]:
    folders: dict[Path, set[str]] = {}
    for target in targets:
        folders.setdefault(target.parent, set()).add(target.name)
    return folders


def _write_all(todo: list[tuple[Path, Path, str]], output_dir: Path, noise_model, clusters, earlier: EarlierCopies,
               emit, *, seed: int, mode: str, epsilon, budget: float, jpeg_quality: int, jobs: int,
               max_pixels: int) -> None:
    """Make each batch's noise in one call, write its photos in ``jobs`` threads, each copy listed in the
    manifest as it is renamed into place; outcomes come in the order of ``todo``. Interrupted (Ctrl-C),
    the photos not started are dropped and those being written are finished, each listed."""

    def write(task: tuple[Path, Path, str, torch.Tensor]):
        source, target, words, noise = task
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            original, protected = protect_file_with_noise(
                source, target, noise, jpeg_quality=jpeg_quality, epsilon=budget, max_pixels=max_pixels,
                before_commit=lambda written: record_copy(output_dir, target, written, earlier))
            return PhotoOutcome(source, target, "protected", words, psnr=psnr(original, protected)), original, protected
        except (ImageError, ValueError, OSError) as err:
            message = str(err) if str(source) in str(err) else f"{source}: {err}"
            return PhotoOutcome(source, target, "failed", words, message), None, None

    pool = ThreadPoolExecutor(jobs)
    try:
        for start in range(0, len(todo), NOISE_BATCH):
            batch = todo[start:start + NOISE_BATCH]
            distinct = list(dict.fromkeys(words for _, _, words in batch))
            made = dict(zip(distinct, noise_from_text(distinct, size=None, model=noise_model, seed=seed, mode=mode,
                                                      epsilon=epsilon, clusters=clusters)))
            for outcome, original, protected in pool.map(write, [(*task, made[task[2]]) for task in batch]):
                emit(outcome, original, protected)
    finally:  # on an interruption too: nothing new starts, what is being written is finished and listed
        pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["protect_folder", "AlbumReport", "PhotoOutcome", "NothingToProtect"]
