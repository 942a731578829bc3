"""A photo's own description, read from its metadata the way photo apps write it."""

import json

import pytest
from PIL import Image

from t2ue.io.images import ImageError, read_description


@pytest.mark.parametrize("name, kind", [("lr.jpg", "xmp"), ("agency.jpg", "iptc"), ("camera.jpg", "exif"),
                                        ("windows.jpg", "xp-title"), ("drawing.png", "png-text"),
                                        ("edited.png", "xmp"), ("scan.tif", "tiff"), ("phone.heic", "xmp"),
                                        ("web.webp", "xmp")])
def test_description_is_read_from_where_the_photo_app_wrote_it(described_photo, tmp_path, name, kind):
    path = described_photo(tmp_path / name, kind, "Grandma’s  garden,\n June 2024")
    assert read_description(path) == "Grandma’s garden, June 2024"  # the x-default of XMP; spaces folded


def test_description_order_and_camera_placeholders(described_photo, tmp_path):
    """XMP's description comes before EXIF's; a camera's placeholder or own model name is no description
    (a Windows title behind it is taken); a photo with neither has none."""
    both = described_photo(tmp_path / "both.jpg", "xmp", "a dog on the beach", exif_extra={0x010E: "SONY DSC"})
    assert read_description(both) == "a dog on the beach"
    placeholder = described_photo(tmp_path / "olympus.jpg", "xp-title", "the harbour at noon",
                                  exif_extra={0x010E: "OLYMPUS DIGITAL CAMERA   "})
    assert read_description(placeholder) == "the harbour at noon"
    model_name = described_photo(tmp_path / "model.jpg", "exif", "E-M10 Mark III", exif_extra={0x0110: "E-M10 Mark III"})
    assert read_description(model_name) is None
    assert read_description(described_photo(tmp_path / "plain.png", "none", "")) is None


def test_description_of_a_broken_file_names_it(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a photo")
    with pytest.raises(ImageError, match="broken.jpg"):
        read_description(bad)
    unparsable = tmp_path / "odd.jpg"
    Image.new("RGB", (8, 8)).save(unparsable, xmp=b"<x:xmpmeta unclosed", exif=_exif(0x010E, "a red kite"))
    assert read_description(unparsable) == "a red kite"  # a packet that does not parse is passed over


def _exif(tag, value):
    exif = Image.Exif()
    exif[tag] = value
    return exif


def test_description_kept_beside_the_photo(described_photo, xmp_packet, tmp_path):
    """A description in an XMP sidecar (darktable's IMG.jpg.xmp, Lightroom's IMG.xmp) or in Google
    Takeout's JSON (also under the cut-short name Takeout gives long ones) is read when the file itself
    has none; the file's own comes first; a JSON that does not parse is passed over."""
    darktable = described_photo(tmp_path / "dt.jpg", "none", "")
    (tmp_path / "dt.jpg.xmp").write_bytes(xmp_packet("the old mill in fog"))
    lightroom = described_photo(tmp_path / "IMG_7.jpg", "none", "")
    (tmp_path / "IMG_7.xmp").write_bytes(xmp_packet("", title="Harbour at dawn"))
    takeout = described_photo(tmp_path / "PXL_2024.jpg", "none", "")
    (tmp_path / "PXL_2024.jpg.supplemental-metad.json").write_text(json.dumps(
        {"title": "PXL_2024.jpg", "description": "Mia's first birthday"}))
    older = described_photo(tmp_path / "a.png", "none", "")
    (tmp_path / "a.png.json").write_text(json.dumps({"title": "a.png", "description": "  snow  day "}))
    own = described_photo(tmp_path / "own.jpg", "xmp", "what the file says")
    (tmp_path / "own.jpg.json").write_text(json.dumps({"description": "what Takeout says"}))
    broken = described_photo(tmp_path / "b.jpg", "none", "")
    (tmp_path / "b.jpg.json").write_text("{not json")
    (tmp_path / "b.jpg.other.json").write_text(json.dumps({"description": "not a sidecar of b.jpg"}))
    assert [read_description(p) for p in (darktable, lightroom, takeout, older, own, broken)] == [
        "the old mill in fog", "Harbour at dawn", "Mia's first birthday", "snow day", "what the file says", None]
