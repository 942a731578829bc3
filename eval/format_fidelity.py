"""How much of the noise each output format keeps: what `t2ue protect` writes, measured on photos.

The four colour photos bundled with scikit-image (astronaut, coffee, chelsea, rocket; full size), each
protected with the default model from a description of it, and written through
``t2ue.io.images.save_image`` in every format ``protect`` writes — and, for comparison, with the writer
settings ``protect`` used before it kept formats (Pillow's defaults: every WebP lossy at quality 80,
MPO at JPEG quality 75 with 4:2:0 chroma, which is also a typical platform recompression). Figures per
format: the share of the perturbation the written file keeps (projection of decode(protected as
written) − decode(original as written) on the perturbation, as in noise_anatomy.py), the same for
uniform ±8/255 white noise (fine-grained, as error-minimising noise is; what a format can cost a
perturbation that is not as smooth as the generator's), the PSNR of the written file against the
original, and the file size. Seconds on a CPU.

    python eval/format_fidelity.py [--out eval/results/format-fidelity.json]
"""

from __future__ import annotations

import argparse
import io
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch
from noise_anatomy import kept
from PIL import Image
from skimage import data as skdata

from t2ue import protect
from t2ue.io.images import load_image, psnr, save_image
from t2ue_eval.runner import write_json

PHOTOS = {
    "astronaut": "an astronaut in a white spacesuit holding a helmet, with an American flag behind her",
    "coffee": "a cup of coffee with latte art on a saucer",
    "chelsea": "a tabby cat looking to the side",
    "rocket": "a rocket on a launch pad under a blue sky",
}
# name -> (what it is, format, info for save_image or None for Pillow's own defaults)
WRITERS = {
    "png": ("PNG (lossless)", "PNG", {}),
    "tiff-lzw": ("TIFF, LZW kept", "TIFF", {"compression": "tiff_lzw"}),
    "webp-lossless": ("WebP from a lossless original: written lossless", "WEBP", {"lossless": True}),
    "webp-lossy": ("WebP from a lossy original: quality 95", "WEBP", {"lossless": False}),
    "jpeg": ("JPEG / MPO: quality 95, 4:4:4", "JPEG", {}),
    "heic": ("HEIC / HEIF (phones): quality 95, 4:4:4", "HEIF", {}),
    "avif": ("AVIF: quality 95, 4:4:4", "AVIF", {}),
    "before-webp": ("before: any WebP, Pillow default (lossy, quality 80)", "WEBP", None),
    "before-mpo": ("before: MPO at Pillow's default (JPEG quality 75, 4:2:0)", "JPEG", None),
}


def written(image: Image.Image, fmt: str, info: dict | None) -> tuple[Image.Image, int]:
    """``image`` written as ``protect`` writes it (or with Pillow's defaults), decoded again, and its size."""
    if info is None:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        buffer.seek(0)
        return Image.open(buffer).convert("RGB"), buffer.getbuffer().nbytes
    path = Path(tempfile.gettempdir()) / f"t2ue-format-fidelity.{fmt.lower()}"
    save_image(image, path, format=fmt, info=dict(info))
    try:
        return load_image(path).image.convert("RGB"), path.stat().st_size
    finally:
        path.unlink()


def as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("eval/results/format-fidelity.json"))
    args = parser.parse_args()
    rows: dict[str, dict[str, list[float]]] = {name: {"kept": [], "kept_white_noise": [], "psnr_db": [], "kb": []}
                                               for name in WRITERS}
    rng = np.random.default_rng(0)
    for photo, description in PHOTOS.items():
        original = Image.fromarray(getattr(skdata, photo)()).convert("RGB")
        protected = protect(original, description)
        delta = as_tensor(protected) - as_tensor(original)  # the quantised perturbation, in levels
        pixels = np.asarray(original, dtype=np.int16)
        white = Image.fromarray(np.clip(pixels + rng.integers(-8, 9, pixels.shape), 0, 255).astype(np.uint8))
        white_delta = as_tensor(white) - as_tensor(original)
        for name, (_, fmt, info) in WRITERS.items():
            clean_written, _ = written(original, fmt, info)
            protected_written, size = written(protected, fmt, info)
            rows[name]["kept"].append(kept(as_tensor(protected_written) - as_tensor(clean_written), delta))
            white_written, _ = written(white, fmt, info)
            rows[name]["kept_white_noise"].append(kept(as_tensor(white_written) - as_tensor(clean_written),
                                                       white_delta))
            rows[name]["psnr_db"].append(psnr(original, protected_written))
            rows[name]["kb"].append(size / 1024)
    table = {name: {"what": WRITERS[name][0], **{k: round(float(np.mean(v)), 3 if k.startswith("kept") else 1)
                                                  for k, v in figures.items()}}
             for name, figures in rows.items()}
    print(f"{'writer':<16}{'kept':>7}{'white':>7}{'PSNR dB':>9}{'KiB':>8}  what")
    for name, row in table.items():
        print(f"{name:<16}{row['kept']:>7.3f}{row['kept_white_noise']:>7.3f}{row['psnr_db']:>9.1f}{row['kb']:>8.0f}"
              f"  {row['what']}")
    write_json(args.out, {"machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
                          "model": "bundled default", "photos": list(PHOTOS), "means_over_photos": table})
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
