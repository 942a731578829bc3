import numpy as np
import pytest
import torch
from PIL import Image

from t2ue.budget import parse_epsilon, project_linf
from t2ue.io.images import ImageError, ResizedNoise, apply_noise, load_image, psnr, save_image

EPS = 8 / 255


def _noise(h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((3, h, w), generator=g) * 2 - 1) * EPS


@pytest.mark.parametrize("text, expected", [("8/255", 8 / 255), (8, 8 / 255), ("0.0314", 0.0314), (16, 16 / 255),
                                            ("1/255", 1 / 255), ("32/255", 32 / 255), (1.0, 1 / 255)])
def test_parse_epsilon(text, expected):
    assert parse_epsilon(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["-1", "0", "abc", "300", "nan", "0.5", "0.0015", "33/255", "1/0", True, None, "inf"])
def test_parse_epsilon_rejects(bad):
    with pytest.raises(ValueError):
        parse_epsilon(bad)


def test_project_linf_bounds():
    x = torch.randn(2, 3, 8, 8)
    assert project_linf(x, EPS).abs().max() <= EPS


def test_negative_noise_survives_quantisation():
    """Quantising after adding keeps -3/255 on a mid-grey image; clamping noise to [0,1] would lose it."""
    image = Image.new("RGB", (8, 8), (128, 128, 128))
    noise = torch.full((3, 8, 8), -3 / 255)
    out = np.asarray(apply_noise(image, noise)).astype(int)
    assert (out == 125).all()


def test_values_clip_at_range_ends():
    image = Image.fromarray(np.array([[[0, 255, 3]]], dtype=np.uint8))
    out = np.asarray(apply_noise(image, torch.tensor([[[-EPS]], [[EPS]], [[-EPS]]])))
    assert out.tolist() == [[[0, 255, 0]]]


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (999, 3), (4000, 3000)])
def test_odd_and_huge_sizes_keep_size_and_budget(size):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(20, 235, (size[1], size[0], 3), dtype=np.uint8))
    out = apply_noise(image, _noise())
    assert out.size == image.size and out.mode == "RGB"
    diff = np.abs(np.asarray(out).astype(int) - np.asarray(image).astype(int))
    assert diff.max() <= 8  # 8/255 plus rounding never exceeds 8 levels
    if size[0] * size[1] > 1:  # a single pixel averages the noise away
        assert diff.max() >= 1


@pytest.mark.parametrize("size", [(3000, 4000), (64, 64), (4001, 2999), (65, 1), (30, 50), (100, 40)])
def test_noise_resized_band_by_band_is_bilinear_resizing(size):
    """Resizing a band of rows at a time (no full-size float copy of the noise) gives what resizing
    the whole noise at once gives, upscaling and shrinking (antialiased) alike, within the bound."""
    import torch.nn.functional as F

    noise = _noise(64, 48)
    height, width = size
    shrinking = height < 64 or width < 48
    whole = F.interpolate(noise[None], size=size, mode="bilinear", align_corners=False, antialias=shrinking)[0]
    bands = ResizedNoise(noise, height, width)
    rows = np.concatenate([bands[top:top + 256] for top in range(0, height, 256)])
    assert rows.shape == (height, width, 3)
    assert np.abs(rows - whole.permute(1, 2, 0).numpy()).max() < 1e-6
    assert np.abs(rows).max() <= float(noise.abs().max())


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "CMYK"])
def test_modes_keep_mode_and_budget(mode):
    rng = np.random.default_rng(1)
    base = Image.fromarray(rng.integers(30, 225, (20, 30, 3), dtype=np.uint8))
    image = base.convert(mode)
    out = apply_noise(image, _noise())
    assert out.mode == mode and out.size == image.size
    a, b = np.asarray(image).astype(int), np.asarray(out).astype(int)
    assert np.abs(a - b).max() <= 8 and np.abs(a - b).max() >= 1
    if mode in ("LA", "RGBA"):
        assert (a[..., -1] == b[..., -1]).all()  # alpha untouched
    if mode == "CMYK":
        assert (a[..., 3] == b[..., 3]).all()  # K untouched


def test_palette_becomes_rgb_within_budget():
    rng = np.random.default_rng(2)
    image = Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).convert("P")
    out = apply_noise(image, _noise())
    assert out.mode == "RGB"
    diff = np.abs(np.asarray(out).astype(int) - np.asarray(image.convert("RGB")).astype(int))
    assert 1 <= diff.max() <= 8


def test_unsupported_mode_is_a_clear_error():
    with pytest.raises(ImageError, match="mode"):
        apply_noise(Image.new("I;16", (4, 4)), _noise())


def test_save_is_atomic_and_keeps_exif(tmp_path):
    image = Image.new("RGB", (40, 30), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    source = tmp_path / "in.jpg"
    image.save(source, exif=exif.tobytes())
    loaded = load_image(source)
    target = save_image(apply_noise(loaded.image, _noise()), tmp_path / "out.jpg", format=loaded.format,
                        info=loaded.info)
    with Image.open(target) as reread:
        assert reread.format == "JPEG" and reread.size == (40, 30)
        assert reread.getexif()[0x0112] == 6
    assert not list(tmp_path.glob("*.part"))
    assert target.stat().st_mode & 0o044  # readable by others like any file the user saves (umask 022)


def test_damaged_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    good = tmp_path / "good.jpg"
    Image.new("RGB", (64, 64), "red").save(good)
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageError, match="broken.jpg"):
        load_image(bad)


def test_camera_raw_is_refused_not_read_as_its_preview(tmp_path):
    """A NEF, CR2, ARW or DNG is a TIFF whose first directory Pillow would read — the camera's small
    preview — so a raw file is refused by name instead of being protected at the wrong size."""
    for name in ("DSC_0001.NEF", "IMG_0001.dng"):
        Image.new("RGB", (20, 10)).save(tmp_path / name, format="TIFF")  # the preview a raw file starts with
        with pytest.raises(ImageError, match=f"{name}: a camera raw file"):
            load_image(tmp_path / name)


def test_sixteen_bit_rgb_is_refused_not_truncated(tmp_path):
    """Pillow decodes a 48-bit PNG to 8-bit RGB without a word; the loader says so instead."""
    import struct
    import zlib

    rows = np.full((4, 4, 3), 40000, dtype=">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    path = tmp_path / "deep.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    assert Image.open(path).mode == "RGB"  # what Pillow makes of it
    with pytest.raises(ImageError, match="^[^ ]*deep.png: 16 bits per channel"):
        load_image(path)


def test_psnr():
    a = Image.new("RGB", (4, 4), (100, 100, 100))
    b = Image.new("RGB", (4, 4), (101, 101, 101))
    assert psnr(a, b) == pytest.approx(48.13, abs=0.01)


@pytest.mark.parametrize("shape", [(1025, 257), (300, 200), (37, 900), (6, 9)])
def test_psnr_and_ssim_in_bands_equal_the_whole_image_measures(monkeypatch, shape):
    """Measured band by band (small bands here, so that a last band of one row occurs), PSNR and SSIM are
    the whole-image values: the float formula and scikit-image's SSIM on all pixels at once."""
    from skimage.metrics import structural_similarity

    from t2ue.io import images

    monkeypatch.setattr(images, "_BAND_PIXELS", 1 << 12)
    rng = np.random.default_rng(sum(shape))
    a = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-8, 9, a.shape), 0, 255).astype(np.uint8)
    whole_psnr = 10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2))
    small = min(shape)
    whole_ssim = structural_similarity(a, b, channel_axis=2, data_range=255,
                                       win_size=max(min(7, small if small % 2 else small - 1), 3))
    assert images.psnr(Image.fromarray(a), Image.fromarray(b)) == pytest.approx(whole_psnr, abs=1e-9)
    assert images.ssim(Image.fromarray(a), Image.fromarray(b)) == pytest.approx(whole_ssim, abs=1e-12)
    assert images.ssim(Image.fromarray(a).convert("L"), Image.fromarray(b).convert("L")) < 1
