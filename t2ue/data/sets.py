"""Image-text sets: the built-in offline sets and the user's own CSV / JSONL files.

Built-in sets come from Debian packages (``dataset-fashion-mnist``, ``openclipart-png`` and
``openclipart-svg``). They are decoded once into a small ``.npz`` cache at a fixed square size.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import struct
import subprocess
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from t2ue.data.shards import TarMember, expand_shards, index_shard, is_shard_spec
from t2ue.io.files import savez, write_text
from t2ue.io.images import IMAGE_SUFFIXES
from t2ue.io.tables import read_rows

FASHION_MNIST_DIR = Path(os.environ.get("T2UE_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
OPENCLIPART_DIR = Path("/usr/share/openclipart")
FASHION_MNIST_CLASSES = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                         "bag", "ankle boot")
FASHION_TEMPLATES = ("a photo of a {}", "a black and white photo of a {}", "a product photo of a {}",
                     "a small grey picture of a {}", "a catalogue image of a {}")
DEBIAN_PACKAGES = {"fashion-mnist": ["dataset-fashion-mnist"], "openclipart": ["openclipart-png", "openclipart-svg"]}
BUILTIN = tuple(DEBIAN_PACKAGES)


@dataclass
class ImageTextSet:
    """Images (N, H, W, 3) uint8, or files (paths, or members of tar shards), one description each,
    optional labels and extra captions.

    ``captions[i]`` is the description a protector writes for image ``i``; ``caption_sets[i]``, when
    given, holds every caption of that image (Karpathy-style sets have five), the first being ``captions[i]``.
    """

    images: np.ndarray | list[Path | TarMember]
    captions: list[str]
    labels: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    name: str = "custom"
    meta: dict = field(default_factory=dict)
    caption_sets: list[list[str]] | None = None

    def __len__(self) -> int:
        return len(self.captions)

    def subset(self, indices: np.ndarray | list[int]) -> ImageTextSet:
        indices = np.asarray(indices, dtype=np.int64)
        images = self.images[indices] if isinstance(self.images, np.ndarray) else [self.images[i] for i in indices]
        labels = None if self.labels is None else self.labels[indices]
        sets = None if self.caption_sets is None else [self.caption_sets[i] for i in indices]
        return ImageTextSet(images, [self.captions[i] for i in indices], labels, self.class_names, self.name,
                            dict(self.meta), sets)

    def all_captions(self) -> tuple[list[str], np.ndarray]:
        """Every caption, flattened, and the index of the image each belongs to."""
        sets = self.caption_sets or [[c] for c in self.captions]
        flat = [c for captions in sets for c in captions]
        owner = np.repeat(np.arange(len(sets)), [len(c) for c in sets])
        return flat, owner

    def with_images(self, images: np.ndarray) -> ImageTextSet:
        """The same set with other pixels (a protected or transformed copy)."""
        if len(images) != len(self):
            raise ValueError(f"{len(images)} images for a set of {len(self)}")
        return ImageTextSet(images, list(self.captions), self.labels, self.class_names, self.name, dict(self.meta),
                            self.caption_sets)

    def with_captions(self, captions: list[str]) -> ImageTextSet:
        """The same set with other captions (each image's first; further ones of a Karpathy set dropped)."""
        if len(captions) != len(self):
            raise ValueError(f"{len(captions)} captions for {len(self)} images")
        return ImageTextSet(self.images, list(captions), self.labels, self.class_names, self.name, dict(self.meta))

    def materialize(self, size: int) -> ImageTextSet:
        """All images decoded into one uint8 array (N, size, size, 3). Files that cannot be read are
        left out with a warning that names each of them (listed in ``meta["skipped"]``)."""
        if isinstance(self.images, np.ndarray):
            if self.images.shape[1:3] == (size, size):
                return self
            return self.with_images(np.stack([_resize(im, size) for im in self.images]))
        out = np.empty((len(self), size, size, 3), dtype=np.uint8)

        def decode(i: int, image: Image.Image) -> None:
            out[i] = _square_rgb(image, size)

        good, skipped = self._read_each(decode)
        kept = self.subset(good).with_images(out[good])
        kept.meta["skipped"] = self.meta.get("skipped", []) + skipped
        return kept

    def readable(self) -> ImageTextSet:
        """The pairs whose image files open as images, for code that decodes them later (training reads
        them batch by batch): a missing or non-image file is left out, with a warning that names it,
        before the first step instead of ending the run when its batch comes. Only headers are read, so
        this takes seconds for a hundred thousand files; listed in ``meta["skipped"]``."""
        if isinstance(self.images, np.ndarray):
            return self
        good, skipped = self._read_each(lambda i, image: None)
        kept = self.subset(good)
        kept.meta["skipped"] = self.meta.get("skipped", []) + skipped
        return kept

    def _read_each(self, read) -> tuple[list[int], list[str]]:
        """Open every image file and pass it to ``read(index, image)``: the indices that worked, and one
        line per file that did not (each also warned about)."""
        good, skipped = [], []
        for i, path in enumerate(self.images):
            try:
                with open_image(path) as image:
                    read(i, image)
                good.append(i)
            except (OSError, ValueError, Image.DecompressionBombError) as error:
                skipped.append(f"{path}: {error}")
                warnings.warn(f"{path}: left out, cannot be read as an image ({error})", stacklevel=3)
        if not good:
            raise ValueError(f"{self.name}: none of the {len(self)} images could be read")
        return good, skipped


@contextlib.contextmanager
def open_image(source: str | os.PathLike | TarMember) -> Iterator[Image.Image]:
    """Open an image file or a member of a tar shard, lazily as :func:`PIL.Image.open` does; closed on exit."""
    if isinstance(source, TarMember):
        with source.open() as handle, Image.open(handle) as image:
            yield image
    else:
        with Image.open(source) as image:
            yield image


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def fingerprint(data: ImageTextSet) -> str:
    """A short hash of a set's pixels (or file names and sizes) and captions: names a cached protection."""
    digest = hashlib.sha256()
    if isinstance(data.images, np.ndarray):
        digest.update(str(data.images.shape).encode())
        digest.update(np.ascontiguousarray(data.images).tobytes())
    else:
        for path in data.images:
            stat = (path.shard if isinstance(path, TarMember) else Path(path)).stat()
            digest.update(f"{path}\x00{stat.st_size}\x00{stat.st_mtime_ns}\x00".encode())
    for caption in data.captions:
        digest.update(caption.encode() + b"\x00")
    if data.labels is not None:
        digest.update(np.asarray(data.labels, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


class PairDataset(Dataset):
    """Torch view of an :class:`ImageTextSet`: (pixels in [0, 1] at ``size``, caption, index)."""

    def __init__(self, data: ImageTextSet, size: int):
        self.data, self.size = data, size

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        image = self.data.images[index]
        if not isinstance(image, np.ndarray):
            try:
                with open_image(image) as opened:
                    image = _square_rgb(opened, self.size)
            except (OSError, ValueError) as error:
                raise ValueError(f"{image}: damaged image ({error}); take it out of the set and run again (training "
                                 "resumes from its last checkpoint)") from error
        elif image.shape[0] != self.size:
            image = _resize(image, self.size)
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0  # a writable copy
        return pixels, self.data.captions[index], index


def cache_dir() -> Path:
    root = os.environ.get("T2UE_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "t2ue")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def ensure_debian_packages(name: str) -> None:
    """Install a built-in set's Debian packages if missing (root only); otherwise say how."""
    root = FASHION_MNIST_DIR if name == "fashion-mnist" else OPENCLIPART_DIR / "svg"
    if root.is_dir() and (name == "fashion-mnist" or (OPENCLIPART_DIR / "png").is_dir()):
        return
    packages = DEBIAN_PACKAGES[name]
    command = ["apt-get", "install", "-y", "-q", *packages]
    if os.environ.get("T2UE_AUTO_INSTALL", "1") == "1" and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
        if subprocess.run(command, capture_output=True).returncode == 0:
            return
    raise FileNotFoundError(f"the built-in set {name!r} needs the Debian packages {' '.join(packages)}: "
                            f"run `sudo {' '.join(command)}` (or `make data`)")


def _square_rgb(image: Image.Image, size: int) -> np.ndarray:
    """Flatten transparency onto white, pad to a square and resize to ``size``. A JPEG not yet decoded
    is decoded at the smallest DCT scale that keeps at least twice ``size`` (several times faster for
    large photos; the resize to ``size`` is what decides the pixels)."""
    image.draft("RGB", (2 * size, 2 * size))
    if image.mode in ("RGB", "L", "CMYK", "YCbCr") and "transparency" not in image.info:
        image = image.convert("RGB")  # opaque: what compositing onto white would give, without its cost
    else:
        image = image.convert("RGBA")
        canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
        canvas.alpha_composite(image)
        image = canvas.convert("RGB")
    side = max(image.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return np.asarray(square.resize((size, size), Image.LANCZOS))


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def templated_captions(labels: np.ndarray, names: tuple[str, ...], templates: tuple[str, ...], seed: int,
                       ) -> list[str]:
    """One caption per label: its class name in a template drawn at random (seeded) for each picture."""
    drawn = np.random.default_rng(seed).integers(0, len(templates), size=len(labels))
    return [templates[t].format(names[c]) for t, c in zip(drawn, labels)]


def load_fashion_mnist(size: int = 64, seed: int = 0) -> ImageTextSet:
    """All 70 000 Fashion-MNIST images as RGB at ``size``; captions from class names and templates."""
    cache = cache_dir() / f"fashion-mnist-{size}.npz"
    if not cache.exists():
        ensure_debian_packages("fashion-mnist")
        images = np.concatenate([_read_idx(FASHION_MNIST_DIR / f"{p}-images-idx3-ubyte.gz") for p in ("train", "t10k")])
        labels = np.concatenate([_read_idx(FASHION_MNIST_DIR / f"{p}-labels-idx1-ubyte.gz") for p in ("train", "t10k")])
        resized = np.stack([np.asarray(Image.fromarray(255 - im).resize((size, size), Image.BILINEAR)) for im in images])
        rgb = np.repeat(resized[..., None], 3, axis=-1)  # dark garments on white, like a product photo
        savez(cache, images=rgb, labels=labels.astype(np.int64))
    with np.load(cache) as arrays:
        images, labels = arrays["images"], arrays["labels"]
    captions = templated_captions(labels, FASHION_MNIST_CLASSES, FASHION_TEMPLATES, seed)
    return ImageTextSet(images, captions, labels, FASHION_MNIST_CLASSES, "fashion-mnist",
                        {"size": size, "templates": FASHION_TEMPLATES})


_NS = {"dc": "http://purl.org/dc/elements/1.1/", "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#"}


def svg_metadata(path: Path) -> dict:
    """Title, description and keywords from an openclipart SVG's Dublin Core metadata."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return {"title": "", "description": "", "keywords": []}
    work = root.find(".//{http://web.resource.org/cc/}Work") or root.find(".//{http://creativecommons.org/ns#}Work")
    node = work if work is not None else root

    def text(tag: str) -> str:
        found = node.find(f"dc:{tag}", _NS)
        return " ".join((found.text or "").split()) if found is not None else ""

    keywords = [" ".join((li.text or "").split()) for li in node.findall("dc:subject/rdf:Bag/rdf:li", _NS)]
    return {"title": text("title"), "description": text("description"), "keywords": [k for k in keywords if k]}


def openclipart_caption(meta: dict, category: str, style: str = "full", max_chars: int = 200) -> str:
    """A caption from SVG metadata: ``title`` only, or ``full`` (title, description, keywords)."""
    title = re.sub(r"[_\-]+", " ", meta["title"]).strip() or category
    if style == "title":
        return title[:max_chars]
    parts = [title]
    description = meta["description"]
    if description and description.lower() != title.lower():
        parts.append(description)
    if meta["keywords"]:
        parts.append("keywords: " + ", ".join(dict.fromkeys(meta["keywords"][:8])))
    return ". ".join(parts)[:max_chars]


def load_openclipart(size: int = 64, caption_style: str = "full") -> ImageTextSet:
    """The 8 000 openclipart drawings as RGB on white at ``size``, captioned from their SVG metadata."""
    cache = cache_dir() / f"openclipart-{size}.npz"
    meta_cache = cache_dir() / "openclipart-meta.json"
    if not cache.exists() or not meta_cache.exists():
        ensure_debian_packages("openclipart")
        pngs = sorted((OPENCLIPART_DIR / "png").rglob("*.png"))
        images, metas = [], []
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for png in pngs:
            rel = png.relative_to(OPENCLIPART_DIR / "png")
            svg = (OPENCLIPART_DIR / "svg" / rel).with_suffix(".svg")
            try:
                with Image.open(png) as image:
                    image.thumbnail((4 * size, 4 * size))
                    pixels = _square_rgb(image, size)
            except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning):
                continue  # a handful of drawings are rendered at hundreds of megapixels
            meta = svg_metadata(svg) if svg.exists() else {"title": "", "description": "", "keywords": []}
            meta["category"] = rel.parts[0]
            meta["file"] = str(rel)
            images.append(pixels)
            metas.append(meta)
        savez(cache, images=np.stack(images))
        write_text(meta_cache, json.dumps(metas))
    with np.load(cache) as arrays:
        images = arrays["images"]
    metas = json.loads(meta_cache.read_text())
    categories = sorted({m["category"] for m in metas})
    labels = np.array([categories.index(m["category"]) for m in metas], dtype=np.int64)
    captions = [openclipart_caption(m, m["category"], caption_style) for m in metas]
    return ImageTextSet(images, captions, labels, tuple(categories), "openclipart",
                        {"size": size, "caption_style": caption_style, "files": [m["file"] for m in metas]})


def load_pairs_file(path: str | os.PathLike) -> ImageTextSet:
    """A user set: CSV (header ``image,caption[,label]``) or JSONL (``{"image", "caption", "label"?}``).

    Image paths are relative to the file's folder unless absolute.
    """
    path = Path(path)
    rows = [row.fields for row in read_rows(path, ("image", "caption"))]
    if not rows:
        raise ValueError(f"{path}: no rows of image,caption")
    images = [(path.parent / r["image"]) if not Path(r["image"]).is_absolute() else Path(r["image"]) for r in rows]
    captions = [str(r["caption"]) for r in rows]
    labels = None
    if all(r.get("label") not in (None, "") for r in rows):
        names = sorted({str(r["label"]) for r in rows})
        labels = np.array([names.index(str(r["label"])) for r in rows], dtype=np.int64)
        return ImageTextSet(images, captions, labels, tuple(names), path.stem)
    return ImageTextSet(images, captions, labels, (), path.stem)


def load_karpathy(path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> ImageTextSet:
    """A Karpathy-style split file (``dataset_flickr8k.json``, ``dataset_coco.json``…): every caption kept.

    Images are looked for under ``image_root`` (default: the JSON's folder, then its ``images/``
    sub-folder), at ``filepath/filename`` when the entry has a ``filepath`` (MSCOCO). The published
    split of each image is kept in ``meta["split"]`` and used by :func:`load_dataset`'s ``part``.
    """
    path = Path(path)
    try:
        entries = json.loads(path.read_text())["images"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a Karpathy-style split file (needs an 'images' list)") from error
    roots = [Path(image_root)] if image_root else [path.parent, path.parent / "images"]
    root = next((r for r in roots if entries and (r / entries[0].get("filepath", "") / entries[0]["filename"]).exists()),
                roots[0])
    images, sets, splits = [], [], []
    for entry in entries:
        captions = [" ".join(s["raw"].split()) for s in entry.get("sentences", []) if s.get("raw", "").strip()]
        if not captions:
            continue
        images.append(root / entry.get("filepath", "") / entry["filename"])
        sets.append(captions)
        splits.append(entry.get("split", "train"))
    if not images:
        raise ValueError(f"{path}: no image with a caption")
    return ImageTextSet(images, [c[0] for c in sets], name=path.stem.removeprefix("dataset_"),
                        meta={"split": splits, "source": str(path)}, caption_sets=sets)


def load_image_folder(path: str | os.PathLike) -> ImageTextSet:
    """Every image under a folder. Caption: a ``.txt`` file of the same name, else the file name.
    Label: the first sub-folder an image lies in (``folder/cat/x.jpg`` is a ``cat``), when all have one."""
    path = Path(path)
    files = sorted(f for f in path.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise ValueError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)})")
    captions = []
    for file in files:
        sidecar = file.with_suffix(".txt")
        text = sidecar.read_text(errors="replace").strip() if sidecar.is_file() else ""
        captions.append(" ".join(text.split()) or re.sub(r"[_\-]+", " ", file.stem).strip())
    groups = [f.relative_to(path).parts[0] if len(f.relative_to(path).parts) > 1 else None for f in files]
    if all(groups):
        names = sorted(set(groups))
        labels = np.array([names.index(g) for g in groups], dtype=np.int64)
        return ImageTextSet(files, captions, labels, tuple(names), path.name)
    return ImageTextSet(files, captions, name=path.name)


def concat(sets: list[ImageTextSet]) -> ImageTextSet:
    """One set from several with in-memory images of the same size (labels are dropped)."""
    if len(sets) == 1:
        return sets[0]
    return ImageTextSet(np.concatenate([s.images for s in sets]), [c for s in sets for c in s.captions],
                        name="+".join(s.name for s in sets))


KARPATHY_PARTS = {"provider": ("val",), "victim_train": ("train", "restval"), "test": ("test",)}


def part_indices(data: ImageTextSet, part: str, seed: int = 0) -> np.ndarray:
    """Indices of one role: the published split for Karpathy sets, else the seeded :func:`role_split`."""
    if part not in ROLES:
        raise ValueError(f"part must be one of {tuple(ROLES)}, got {part!r}")
    if "split" in data.meta:
        return np.flatnonzero(np.isin(data.meta["split"], KARPATHY_PARTS[part]))
    return role_split(len(data), seed)[part]


def load_dataset(name_or_path: str, size: int = 64, *, part: str | None = None, limit: int | None = None,
                 **kwargs) -> ImageTextSet:
    """A built-in set by name, a CSV / JSONL pair file, a Karpathy JSON, an image folder, WebDataset tar
    shards (:mod:`t2ue.data.shards`: ``a.tar``, ``cc3m/{00000..00331}.tar`` or a folder of shards), or several
    built-in sets joined with ``+``.

    ``part`` selects one of :data:`ROLES` (fixed and seeded; Karpathy sets keep their published split);
    ``limit`` keeps a seeded random sample of at most that many items.
    """
    if "+" in name_or_path and not Path(name_or_path).exists():
        return concat([load_dataset(n, size, part=part, limit=limit) for n in name_or_path.split("+")])
    if part is not None or limit is not None:
        data = load_dataset(name_or_path, size, **kwargs)
        keep = part_indices(data, part) if part is not None else np.arange(len(data))
        if limit is not None and len(keep) > limit:
            keep = np.sort(np.random.default_rng(0).choice(keep, limit, replace=False))
        subset = data.subset(keep)
        subset.meta.pop("split", None)
        subset.meta.update(part=part, limit=limit)
        return subset
    if name_or_path == "fashion-mnist":
        return load_fashion_mnist(size, **kwargs)
    if name_or_path == "openclipart":
        return load_openclipart(size, **kwargs)
    if is_shard_spec(name_or_path):
        return load_shards(name_or_path)
    path = Path(name_or_path)
    if path.is_dir():
        return load_image_folder(path)
    if path.is_file() and path.suffix.lower() == ".json":
        return load_karpathy(path, **kwargs)
    if path.is_file():
        return load_pairs_file(path)
    raise FileNotFoundError(f"{name_or_path}: not a built-in set ({', '.join(BUILTIN)}), a CSV/JSONL file, "
                            "a Karpathy JSON, an image folder nor tar shards")


ROLES = {"provider": 0.5, "victim_train": 0.35, "test": 0.15}


def role_split(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Fixed, seeded, disjoint parts of a set: ``provider`` (surrogate and generator training),
    ``victim_train`` (what an exploiter scrapes) and ``test`` (clean evaluation)."""
    order = np.random.default_rng(seed).permutation(n)
    cuts = np.cumsum([int(round(n * f)) for f in ROLES.values()])[:-1]
    return {role: np.sort(part) for role, part in zip(ROLES, np.split(order, cuts))}


def load_shards(spec: str) -> ImageTextSet:
    """Every pair in the shards of ``spec`` (:func:`~t2ue.data.shards.expand_shards`) as an :class:`ImageTextSet`
    whose images are :class:`~t2ue.data.shards.TarMember`; samples without an image or a caption are left out with one
    warning; ``.cls`` members become labels when every sample has one."""
    images, captions, labels, skipped = [], [], [], []
    shards = expand_shards(spec)
    for shard in shards:
        i, c, lab, s = index_shard(shard)
        images += i
        captions += c
        labels += lab
        skipped += s
    if skipped:
        warnings.warn(f"{spec}: {len(skipped)} sample(s) left out, first {skipped[0]}", stacklevel=2)
    if not images:
        raise ValueError(f"{spec}: no sample with both an image and a caption")
    name = (Path(spec).resolve().name if Path(spec).is_dir() else shards[0].stem if len(shards) == 1
            else shards[0].parent.resolve().name)
    meta = {"shards": len(shards), "skipped": skipped}
    if all(label is not None for label in labels):
        names = sorted(set(labels))
        return ImageTextSet(images, captions, np.array([names.index(x) for x in labels], dtype=np.int64),
                            tuple(names), name, meta)
    return ImageTextSet(images, captions, name=name, meta=meta)
