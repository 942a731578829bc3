"""Image reading, noise application and atomic writing: every pixel the library touches goes through here.

Noise is added in [0, 1] and the result is quantised to 8 bits *after* the addition, so negative noise
survives (never clamp the noise itself to [0, 1]).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageSequence, PngImagePlugin, TiffImagePlugin, UnidentifiedImageError
from pillow_heif import register_heif_opener

from t2ue.budget import DEFAULT_EPSILON, parse_epsilon, project_linf
from t2ue.io import metadata
from t2ue.io.files import atomic_write

# Pixels x frames of one file, checked from its header before anything is decoded: large camera files
# (50-150 MP) pass, decompression bombs (a few hundred bytes declaring gigapixels) do not. Pillow's own
# check stays as a backstop, but it only raises at twice its limit.
MAX_PIXELS = 200_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
register_heif_opener()  # HEIC / HEIF, what phones save photos as

# raw modes of 16 bits per channel (RGB;16B, RGBA;16L, ...); not BGR;16, which is 5-6-5 BMP pixels
_DEEP_RAW_MODE = re.compile(r"\b(RGBA?|RGBX|LA|CMYK);16")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic", ".heif", ".avif")
SUPPORTED_MODES = ("L", "LA", "RGB", "RGBA", "P", "PA", "CMYK")
# Camera raw files: most are TIFF inside, and Pillow would read their first directory — a small preview,
# not the photo — so they are refused by name rather than protected at the wrong size
RAW_SUFFIXES = (".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".raf",
                ".pef", ".srw", ".3fr", ".erf", ".kdc", ".mos", ".mrw", ".x3f", ".iiq", ".raw")

GIF_REFUSED = ("GIF keeps at most 256 colours, too few to hold the noise within its budget; convert the "
               "original to PNG (or WebP) and protect that")


class ImageError(ValueError):
    """An input image that cannot be read or protected; the message names the file."""


@dataclass
class LoadedImage:
    """A decoded image (every frame of an animation or page of a multi-page file) plus what is needed
    to write it back the way it came."""

    frames: list[Image.Image]
    path: Path
    format: str | None
    info: dict

    @property
    def image(self) -> Image.Image:
        """The first (for most files the only) frame."""
        return self.frames[0]


def _webp_is_lossless(path: Path) -> bool:
    """Whether every frame of a WebP file is coded losslessly (VP8L), read from its RIFF chunks."""
    data = path.read_bytes()

    def chunks(start: int, end: int):
        while start + 8 <= end:
            size = int.from_bytes(data[start + 4:start + 8], "little")
            yield data[start:start + 4], start + 8, size
            start += 8 + size + (size & 1)

    codecs = set()
    for tag, offset, size in chunks(12, len(data)):
        if tag == b"ANMF":  # an animation frame: 16 bytes of placement, then its own chunks
            codecs.update(sub for sub, _, _ in chunks(offset + 16, offset + size))
        else:
            codecs.add(tag)
    return b"VP8L" in codecs and b"VP8 " not in codecs


@contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """An image file opened (its header read, pixels not yet decoded), any failure inside the block
    raised as :class:`ImageError` naming the file."""
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image; pass the images in it (e.g. {path / '*.jpg'})")
    if path.suffix.lower() in RAW_SUFFIXES:
        raise ImageError(f"{path}: a camera raw file; export a JPEG or TIFF of it (what gets posted) and protect that")
    try:
        with Image.open(path) as im:
            yield im
    except ImageError:
        raise
    except FileNotFoundError as err:
        raise ImageError(f"{path}: no such file") from err
    except UnidentifiedImageError as err:
        raise ImageError(f"{path}: not an image this tool can read") from err
    except Image.DecompressionBombError as err:
        raise ImageError(f"{path}: image too large ({err})") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: damaged or truncated image ({err})") from err


def _refuse_from_header(im: Image.Image, path: Path, max_pixels: int) -> None:
    """Every reason to refuse a file that its header already gives, as an :class:`ImageError` naming it."""
    if im.format == "GIF":
        raise ImageError(f"{path}: {GIF_REFUSED}")
    frames = getattr(im, "n_frames", 1)
    pixels = im.width * im.height * frames
    if not im.width or not im.height:
        raise ImageError(f"{path}: an empty image ({im.width} × {im.height} pixels)")
    if pixels > max_pixels:
        count = f"{im.width} × {im.height} pixels" + (f" × {frames} frames" if frames > 1 else "")
        raise ImageError(f"{path}: too large to protect ({count} = {pixels / 1e6:,.0f} megapixels; the limit is "
                         f"{max_pixels / 1e6:,.0f})")
    # Pillow decodes 16-bit PNG and TIFF, and the HEIF plugin 10- and 12-bit HEIC, to 8 bits silently
    depth = 16 if any(_DEEP_RAW_MODE.search(str(tile.args)) for tile in im.tile) else im.info.get("bit_depth", 8)
    if depth > 8 or im.mode.startswith("I;16"):
        raise ImageError(f"{path}: {max(depth, 16) if im.mode.startswith('I;16') else depth} bits per channel; t2ue "
                         "protects 8-bit images, so export an 8-bit copy (the precision of this one would be lost "
                         "without a word)")
    if im.mode not in SUPPORTED_MODES:
        raise ImageError(f"{path}: image mode {im.mode!r} is not supported (supported: {', '.join(SUPPORTED_MODES)})")


def check_image(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS) -> None:
    """Raise :class:`ImageError` naming the file for everything its header shows would make protecting it
    fail (unreadable or truncated header, GIF, 16-bit, an unsupported mode, too many pixels), reading the
    header only: what ``--dry-run`` reports."""
    path = Path(path)
    with _opened(path) as im:
        _refuse_from_header(im, path, max_pixels)


def load_image(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Decode an image file fully, every frame of it, raising :class:`ImageError` with the file's name
    on any failure (first everything :func:`check_image` finds from the header, before decoding). ``info``
    holds the metadata a protected copy carries (:func:`t2ue.io.metadata.carried`) and, for WebP, whether the
    file was lossless, so that it is written back the same way."""
    path = Path(path)
    with _opened(path) as im:
        _refuse_from_header(im, path, max_pixels)
        im.load()
        fmt = im.format
        info = metadata.carried(im)
        frames, durations = [], []
        for frame in ImageSequence.Iterator(im):
            frames.append(frame.copy())  # decodes the frame, which is when some formats set its duration
            durations.append(frame.info.get("duration"))
        if len(frames) > 1 and any(d is not None for d in durations):
            info["duration"] = [d or 0 for d in durations]
        if fmt == "WEBP":
            info["lossless"] = _webp_is_lossless(path)
        for frame in frames:  # what a writer falls back on, or a caller saves, is the cleaned metadata
            frame.info = dict(info)
    return LoadedImage(frames=frames, path=path, format=fmt, info=info)


def read_description(path: str | os.PathLike) -> str | None:
    """The description written into a photo file's own metadata (:func:`t2ue.io.metadata.description`),
    read without decoding its pixels, else the one kept beside it in a sidecar (an XMP file, Google
    Takeout's JSON: :func:`t2ue.io.metadata.sidecar_description`); ``None`` when there is none.
    :class:`ImageError` names a file that cannot be read."""
    path = Path(path)
    with _opened(path) as im:
        embedded = metadata.description(im)
    return embedded or metadata.sidecar_description(path)


def _linear_weights(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each output index: the two input indices and their weights of bilinear resizing with
    ``align_corners=False`` (the coordinates :func:`torch.nn.functional.interpolate` uses)."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp_(min=0)
    low = src.floor().long().clamp_(max=n_in - 1)
    high = (low + 1).clamp_(max=n_in - 1)
    frac = (src - low).float()
    return low, high, frac


class ResizedNoise:
    """A (3, h, w) or (1, 3, h, w) perturbation seen as (height, width, 3) float32, resized bilinearly a
    band of rows at a time (``noise[top:bottom]``), so protecting a large photo never holds a full-size
    float copy of the noise. Every value stays within the perturbation's own bound."""

    def __init__(self, noise: torch.Tensor | np.ndarray, height: int, width: int):
        tensor = torch.as_tensor(noise, dtype=torch.float32)
        if tensor.ndim == 4:
            if tensor.shape[0] != 1:
                raise ValueError("apply_noise takes the noise of one image; got a batch of several")
            tensor = tensor[0]
        if tensor.ndim != 3 or tensor.shape[0] != 3 or not tensor.shape[1] or not tensor.shape[2]:
            raise ValueError(f"noise must have shape (3, H, W) with H, W >= 1; got {tuple(tensor.shape)}")
        if not torch.isfinite(tensor).all():
            raise ValueError("noise holds NaN or infinite values; it cannot be added to a photo")
        self.bound = float(tensor.abs().max())
        h, w = tensor.shape[1:]
        if (h, w) == (height, width):
            self._columns, self._rows = tensor, None
        elif h > height or w > width:  # shrinking needs antialiasing; the result is small, made whole
            small = F.interpolate(tensor[None], size=(height, width), mode="bilinear", align_corners=False,
                                  antialias=True)[0]
            self._columns, self._rows = project_linf(small, self.bound, inplace=True), None
        else:  # widen every row once (3 x h x width), then blend two of those rows per output row
            low, high, frac = _linear_weights(w, width)
            self._columns = tensor[:, :, low] * (1 - frac) + tensor[:, :, high] * frac
            self._rows = _linear_weights(h, height)

    def __getitem__(self, rows: slice) -> np.ndarray:
        if self._rows is None:
            band = self._columns[:, rows]
        else:
            low, high, frac = (part[rows] for part in self._rows)
            frac = frac[None, :, None]
            band = project_linf(self._columns[:, low] * (1 - frac) + self._columns[:, high] * frac, self.bound,
                                inplace=True)  # convex weights: this guards rounding only
        return band.permute(1, 2, 0).numpy()


def add_noise_uint8(pixels: np.ndarray, delta: np.ndarray | ResizedNoise, band: int = 256,
                    transform=None) -> np.ndarray:
    """uint8 pixels + noise in [0, 1] units, rounded and clipped to uint8 after the addition.

    Works in bands of rows so that a 12-megapixel photo needs no full-size float copy of itself (nor,
    with a :class:`ResizedNoise`, of the noise); ``transform`` maps each band of noise to the pixels'
    channels first.
    """
    out = np.empty(pixels.shape, dtype=np.uint8)
    for top in range(0, pixels.shape[0], band):
        rows = slice(top, top + band)
        noise = delta[rows] if transform is None else transform(delta[rows])
        work = pixels[rows].astype(np.float32)
        work += noise * 255.0
        np.rint(work, out=work)
        np.clip(work, 0, 255, out=work)
        out[rows] = work
    return out


def _channel_mean(band: np.ndarray) -> np.ndarray:
    """The grey part of a band of RGB noise: what a grey image receives."""
    return band.mean(axis=2)


def apply_noise(image: Image.Image, noise: torch.Tensor | np.ndarray, *,
                epsilon: float | str | None = DEFAULT_EPSILON) -> Image.Image:
    """Add a perturbation to an image of any size; return an image of the same size and mode.

    Noise past the budget ``epsilon`` (8/255 unless said; ``None`` checks nothing) is refused, as is noise
    holding NaN or infinity. The noise is resized to the image. Grey images receive the channel mean of the noise; CMYK images
    receive it on C, M and Y with the sign that matches RGB; alpha is left untouched. Palette images
    cannot hold an 8/255 perturbation in 256 colours without breaking the budget, so they come back as
    RGB (or RGBA when they have transparency).
    """
    mode = image.mode
    if mode not in SUPPORTED_MODES:
        raise ImageError(f"image mode {mode!r} is not supported (supported: {', '.join(SUPPORTED_MODES)})")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
    width, height = image.size
    if not width or not height:
        raise ImageError(f"an empty image ({width} × {height} pixels) has nothing to protect")
    delta = ResizedNoise(noise, height, width)
    if epsilon is not None:
        bound = parse_epsilon(epsilon)
        if delta.bound > bound + 1e-6:
            raise ValueError(f"noise reaches {delta.bound * 255:.3g}/255, past the budget {bound * 255:.3g}/255; "
                             f"pass epsilon=\"{round(delta.bound * 255)}/255\" to apply_noise to add it anyway")
    pixels = np.asarray(image)
    if mode == "RGB":
        out = add_noise_uint8(pixels, delta)
    elif mode == "RGBA":
        out = pixels.copy()
        out[..., :3] = add_noise_uint8(pixels[..., :3], delta)
    elif mode == "L":
        out = add_noise_uint8(pixels, delta, transform=_channel_mean)
    elif mode == "LA":
        out = pixels.copy()
        out[..., 0] = add_noise_uint8(pixels[..., 0], delta, transform=_channel_mean)
    else:  # CMYK: C = 1 - R, so the RGB perturbation enters C, M, Y negated; K is left alone
        out = pixels.copy()
        out[..., :3] = add_noise_uint8(pixels[..., :3], delta, transform=np.negative)
    result = Image.fromarray(out, mode=mode)
    result.info = dict(image.info)
    return result


_SAVE_KEYS = ("exif", "icc_profile", "dpi", "transparency", "comment")
_ANIMATION_KEYS = ("duration", "loop", "background")
_LOSSLESS_TIFF = ("tiff_lzw", "tiff_deflate", "tiff_adobe_deflate", "packbits")


def check_jpeg_quality(quality: int) -> int:
    """A JPEG / HEIC / AVIF / lossy WebP quality between 1 and 100, or a ValueError."""
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"jpeg_quality must be a whole number from 1 to 100; got {quality!r}")
    return quality


def save_image(image: Image.Image, path: str | os.PathLike, *, format: str | None = None,
               info: dict | None = None, jpeg_quality: int = 95, more_frames: list[Image.Image] = (),
               before_commit: Callable[[Path], None] | None = None) -> Path:
    """Write an image atomically (:func:`t2ue.io.files.atomic_write`), keeping EXIF, ICC profile, DPI, XMP
    (where rights such as "no data mining" are declared), JPEG's IPTC blocks, PNG text chunks and TIFF's
    descriptive tags;
    ``more_frames`` follow the first as the frames of an animation or the pages of a multi-page file.

    Refuses only formats that cannot hold the noise (GIF); callers decide whether a path may be
    written. JPEG, MPO, HEIF and AVIF are written at ``jpeg_quality`` with 4:4:4 chroma so as much of the
    perturbation as possible survives; WebP losslessly unless ``info`` says the original was lossy
    (then at ``jpeg_quality``); TIFF keeps a lossless compression, and any other is written uncompressed.
    """
    path = Path(path)
    check_jpeg_quality(jpeg_quality)
    fmt = (format or Image.registered_extensions().get(path.suffix.lower()) or "PNG").upper()
    if fmt == "GIF":
        raise ImageError(f"{path}: {GIF_REFUSED}")
    info = info if info is not None else image.info
    frames = [image, *more_frames]
    params = {k: info[k] for k in _SAVE_KEYS if k in info and info[k] is not None}
    if len(frames) > 1:
        params.update({k: info[k] for k in _ANIMATION_KEYS if k in info and info[k] is not None},
                      save_all=True)
    if fmt in ("JPEG", "MPO", "WEBP", "HEIF", "AVIF") and info.get("xmp"):
        params["xmp"] = info["xmp"]
    if fmt in ("JPEG", "MPO"):
        params.update(quality=jpeg_quality, subsampling=0)
        if info.get("app13"):
            params["extra"] = b"".join(b"\xff\xed" + (len(data) + 2).to_bytes(2, "big") + data
                                       for data in info["app13"])
        frames = [f.convert("RGB") if f.mode in ("RGBA", "LA", "P", "PA") else f for f in frames]
        params.pop("transparency", None)
    elif fmt == "PNG":
        params["compress_level"] = 1
        if info.get("text"):
            params["pnginfo"] = PngImagePlugin.PngInfo()
            for key, value in info["text"].items():
                params["pnginfo"].add_itxt(key, value)
    elif fmt == "WEBP":
        if info.get("lossless", True):
            params.update(lossless=True, quality=100, exact=True)  # exact: keep RGB under transparent pixels
        else:
            params["quality"] = jpeg_quality
    elif fmt == "HEIF":  # the primary image (and any others of the file), no thumbnails nor depth maps
        params.update(quality=jpeg_quality, chroma=444)
    elif fmt == "AVIF":
        params.update(quality=jpeg_quality, subsampling="4:4:4")
    elif fmt == "TIFF":
        if info.get("compression") in _LOSSLESS_TIFF:
            params["compression"] = info["compression"]
        if info.get("tiff_tags"):
            params["tiffinfo"] = TiffImagePlugin.ImageFileDirectory_v2()
            for tag, value in info["tiff_tags"].items():
                params["tiffinfo"][tag] = value
    if "transparency" in params and frames[0].mode not in ("P", "L", "RGB"):
        params.pop("transparency")
    if len(frames) > 1:
        params["append_images"] = frames[1:]
    # "w+b": readable too, since the multi-page TIFF writer reads back what it wrote
    with atomic_write(path, "w+b", before_commit=before_commit) as handle:
        frames[0].save(handle, format=fmt, **params)
    return path


def noise_levels(delta: np.ndarray, bound: float) -> np.ndarray:
    """Signed noise (..., in [-bound, bound]) as uint8 levels, -bound -> 0, 0 -> 127.5, +bound -> 255.

    Used to show noise and to carry it to the browser, which decodes ``(v / 127.5 - 1) * bound``.
    """
    return np.clip(np.rint((np.asarray(delta, dtype=np.float32) / bound + 1) * 127.5), 0, 255).astype(np.uint8)


_BAND_PIXELS = 1 << 18  # pixels per band of rows when a measure walks a large image


def _rgb_rows(image: Image.Image, top: int, bottom: int) -> np.ndarray:
    """Rows [top, bottom) of an image as 8-bit RGB."""
    return np.asarray(image.crop((0, top, image.width, bottom)).convert("RGB"))


def _band_rows(width: int) -> int:
    return max(16, _BAND_PIXELS // max(width, 1))


def psnr(original: Image.Image, protected: Image.Image) -> float:
    """Peak signal-to-noise ratio in dB between two images of the same size (on RGB values).

    Summed exactly in integers over bands of rows, so that a 50-megapixel photo costs megabytes, not
    gigabytes of float copies."""
    width, height = original.size
    step, sse = _band_rows(width), 0
    for top in range(0, height, step):
        bottom = min(height, top + step)
        diff = _rgb_rows(original, top, bottom).astype(np.int32) - _rgb_rows(protected, top, bottom)
        sse += int(np.einsum("ijk,ijk->", diff, diff, dtype=np.int64))
    return float("inf") if sse == 0 else 10 * np.log10(255.0**2 * width * height * 3 / sse)


def ssim(original: Image.Image, protected: Image.Image) -> float:
    """Structural similarity (scikit-image's, 7 x 7 window, on 8-bit RGB) between two images of the same size.

    A large image is measured in bands of rows that overlap by the window, each band's map kept where
    the window lies inside it: the mean of the same map scikit-image computes for the whole image, in a
    fraction of the memory."""
    from skimage.metrics import structural_similarity

    width, height = original.size
    small = min(width, height)
    win = max(min(7, small if small % 2 else small - 1), 3)
    step = _band_rows(width)
    if height <= step:
        return float(structural_similarity(_rgb_rows(original, 0, height), _rgb_rows(protected, 0, height),
                                           channel_axis=2, data_range=255, win_size=win))
    pad, total = (win - 1) // 2, 0.0
    for top in range(0, height, step):
        bottom = min(height, top + step)
        high = min(height, bottom + pad)
        low = max(0, min(top - pad, high - win))  # a last band of a few rows still holds one window
        _, local = structural_similarity(_rgb_rows(original, low, high), _rgb_rows(protected, low, high),
                                         channel_axis=2, data_range=255, win_size=win, full=True)
        first, last = max(top, pad), min(bottom, height - pad)  # rows whose window lies in the image
        total += float(local[first - low:last - low, pad:width - pad].sum(dtype=np.float64))
    return total / ((height - 2 * pad) * (width - 2 * pad) * 3)
