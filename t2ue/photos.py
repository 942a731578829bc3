"""Which photos a `t2ue protect` command names, where each protected copy goes, and its caption.

A folder stands for the images in it (with ``recursive``, in its sub-folders too, each copy keeping its
path relative to the folder); a pattern the shell left unexpanded is globbed; a captions file may list
the photos itself. Copies land in one output folder, so two photos that would share a copy's path are
caught here, before anything is written — compared without case, as macOS and Windows compare names.
Each output folder lists the copies written into it (:data:`MANIFEST`), so that a later run over an
album that holds them leaves them out instead of adding a second noise to protected copies.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from t2ue.io.images import IMAGE_SUFFIXES
from t2ue.io.manifest import MANIFEST, EarlierCopies
from t2ue.io.tables import read_captions


@dataclass(frozen=True)
class Photo:
    """One photo to protect: where it is, and its copy's path under the output folder."""

    source: Path
    copy: PurePosixPath


@dataclass
class CopyPlan:
    """Where each photo's protected copy goes, decided before anything is written."""

    write: list[tuple[Path, Path]]  # (photo, its copy) to protect
    kept: list[Path]                # copies already there, left as they are
    refused: list[str]              # one message per photo that cannot be written, naming it


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and (path == folder or folder in path.parents)


def _folder_images(folder: Path, recursive: bool, skip: Path | None) -> list[Path]:
    """Image files in a folder, hidden files and folders left out; with ``recursive`` its sub-folders'
    too (symbolic links to folders not followed, so a link loop cannot trap the walk), but never those
    inside ``skip`` (the output folder, so that a second run does not protect its own copies)."""
    if not recursive:
        return sorted(f for f in folder.iterdir() if _is_image(f))
    found = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not _inside((here / d).resolve(), skip))
        found += [here / f for f in sorted(files) if _is_image(here / f)]
    return found


def _glob_base(pattern: str) -> Path:
    """The part of a pattern before its first wildcard: what a globbed file's copy path is relative to."""
    parts = Path(pattern).parts
    first = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    return Path(*parts[:first]) if first else Path(".")


def _relative(path: Path, base: Path) -> PurePosixPath:
    return PurePosixPath(path.relative_to(base).as_posix())


def find_photos(paths: list[Path], *, recursive: bool = False, output_dir: Path | None = None,
                earlier: EarlierCopies | None = None) -> tuple[list[Photo], list[str], list[Path]]:
    """The photos the arguments name; one message for each argument that names none, or names a copy
    protected earlier; and the earlier copies a folder or pattern reached and left out.

    A copy keeps only the file name, unless ``recursive``: then a folder's images keep their path
    relative to it, and a pattern's matches (``**`` reaches into sub-folders) theirs relative to the
    pattern's fixed part."""
    skip = output_dir.resolve() if output_dir is not None else None
    earlier = earlier or EarlierCopies()
    photos, problems, left_out = [], [], []
    for path in paths:
        if path.is_dir():
            found = [Photo(f, _relative(f, path) if recursive else PurePosixPath(f.name))
                     for f in _folder_images(path, recursive, skip)]
            problem = f"{path}: a folder with no images ({', '.join(IMAGE_SUFFIXES)})"
        elif not path.exists() and glob.has_magic(str(path)):
            base = _glob_base(str(path))
            matches = sorted(Path(f) for f in glob.glob(str(path), recursive=recursive))
            found = [Photo(f, _relative(f, base) if recursive else PurePosixPath(f.name))
                     for f in matches if f.is_file() and not (recursive and _inside(f.resolve(), skip))]
            problem = f"{path}: no file matches"
        else:
            named, refused = refuse_earlier_copies([Photo(path, PurePosixPath(path.name))], earlier)
            photos += named
            problems += refused
            continue
        if not found:
            problems.append(problem)
        for photo in found:
            if earlier.manifest(photo.source) is None:
                photos.append(photo)
            else:
                left_out.append(photo.source)
    return distinct_photos(photos), problems, left_out


def distinct_photos(photos: list[Photo]) -> list[Photo]:
    """Each file once, however many times it was named (as a file, through a folder, a pattern or a link)."""
    seen, kept = set(), []
    for photo in photos:
        try:
            key = photo.source.resolve()
            stat = photo.source.stat()
            key = (stat.st_dev, stat.st_ino) if stat.st_ino else key
        except OSError:
            key = photo.source  # named in its own error later
        if key not in seen:
            seen.add(key)
            kept.append(photo)
    return kept


def refuse_earlier_copies(photos: list[Photo], earlier: EarlierCopies | None = None) -> tuple[list[Photo], list[str]]:
    """Photos named one by one (on the command line, in a captions file), less those that are copies t2ue
    protected earlier, each refused with a message that names it."""
    earlier = earlier or EarlierCopies()
    kept, refused = [], []
    for photo in photos:
        manifest = earlier.manifest(photo.source) if photo.source.exists() else None
        if manifest is None:
            kept.append(photo)
        else:
            refused.append(f"{photo.source}: a copy t2ue protected earlier (listed in {manifest}); protecting it "
                           "again would add a second noise, so give the original")
    return distinct_photos(kept), refused


def plan_copies(photos: list[Photo], output_dir: Path, *, skip_existing: bool = False,
                earlier: EarlierCopies | None = None) -> CopyPlan:
    """Each photo's copy under ``output_dir``; refused when it would overwrite an input, a copy made for an
    earlier photo (paths compared without case) or any file there that is not a copy t2ue wrote (an
    original of the user's); with ``skip_existing``, files already there kept."""
    inputs = {p.source.resolve() for p in photos}
    claimed: dict[str, Path] = {}
    earlier = earlier or EarlierCopies()
    plan = CopyPlan([], [], [])
    for photo in photos:
        source, target = photo.source, output_dir.joinpath(*photo.copy.parts)
        try:
            if target.resolve() in inputs or (target.exists() and target.samefile(source)):
                plan.refused.append(f"{source}: output would overwrite an input; choose another --output-dir")
                continue
        except OSError as err:
            plan.refused.append(f"{source}: {err}")
            continue
        key = photo.copy.as_posix().casefold()
        if key in claimed:
            same = "file name" if len(photo.copy.parts) == 1 else "path under its folder"
            plan.refused.append(f"{source}: has the same {same} as {claimed[key]}, whose protected copy {target} "
                                "this would overwrite; protect them into different --output-dir")
            continue
        claimed[key] = source
        if skip_existing and target.exists():
            plan.kept.append(target)
        elif target.exists() and earlier.manifest(target) is None:
            plan.refused.append(f"{source}: {target} is already there and is no copy t2ue wrote (it is not listed in "
                                f"{output_dir / MANIFEST}); it is left as it is: choose another --output-dir, or "
                                "--skip-existing to keep such files")
        elif target.exists() and not earlier.written_as_listed(target):
            plan.refused.append(f"{source}: {target} is not the copy t2ue wrote there (it has changed since, or was "
                                "put there in its place); it is left as it is: choose another --output-dir, "
                                "--skip-existing to keep it, or remove it to have it made again")
        else:
            plan.write.append((source, target))
    return plan


class Captions:
    """A captions file (CSV with columns image,caption, or JSONL): each photo's description.

    A photo is matched by its path (the file's paths are relative to its folder unless absolute), else
    by its file name when the file lists exactly one photo of that name."""

    def __init__(self, path: Path):
        self.path = path
        rows = [(Path(image), caption) for _, image, caption in read_captions(path)]
        self.listed = [(path.parent / image, image) for image, _ in rows]  # an absolute path stays as it is
        self._by_path = {os.path.normcase((path.parent / image).resolve()): text for image, text in rows}
        self._by_name: dict[str, list[tuple[Path, str]]] = {}
        for image, text in rows:
            self._by_name.setdefault(image.name, []).append((image, text))

    def photos(self, recursive: bool = False) -> list[Photo]:
        """The photos the file lists; with ``recursive`` a copy keeps the path the file gives it
        (when relative and inside the file's folder), else only its name."""
        def copy(image: Path) -> PurePosixPath:
            keep = recursive and not image.is_absolute() and ".." not in image.parts
            return PurePosixPath(image.as_posix() if keep else image.name)
        return [Photo(source, copy(image)) for source, image in self.listed]

    def caption(self, photo: Path) -> str:
        """The photo's caption; ``LookupError`` naming the photo when the file has none, or several by name."""
        text = self._by_path.get(os.path.normcase(photo.resolve()))
        if text is None:
            named = self._by_name.get(photo.name, [])
            if len(named) > 1:
                listed = ", ".join(str(image) for image, _ in named)
                raise LookupError(f"{photo}: {self.path} lists {len(named)} photos of this name ({listed}) and none "
                                  "at this path; give the photos as the file lists them")
            text = named[0][1] if named else None
        if text is None or not text.strip():
            raise LookupError(f"{photo}: no caption for this file in {self.path}")
        return text
