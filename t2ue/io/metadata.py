"""What metadata a protected copy carries: the owner's words (rights, credit, description) and nothing
that holds the picture itself.

Photo files often hide smaller copies of the photo in their metadata — a camera's preview inside its
EXIF maker note, a Photoshop thumbnail in the JPEG's IPTC block, an XMP thumbnail, an EXIF dump in a
PNG text chunk. Those copies would not carry the noise, so a scraper could train on them instead. The
functions here keep the metadata and leave every such copy out.

They also read the photo's own description from it (:func:`description`), for noise made from the words
the owner already wrote.
"""

from __future__ import annotations

import functools
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from PIL import Image, IptcImagePlugin

XMP_TAG = 700
# A TIFF's description, software, date, artist, copyright, XMP, IPTC: who made the photo and on what terms
# (Pillow turns a TIFF upright as it loads it, so its orientation is in the pixels)
TIFF_DESCRIPTIVE_TAGS = (270, 305, 306, 315, 33432, XMP_TAG, 33723)
MAKER_NOTE = 0x927C  # in the Exif sub-IFD: opaque vendor data, where cameras keep their previews
EXIF_IFD = 0x8769
IPTC_RECORD = 0x0404  # the Photoshop resource that holds the IPTC-IIM record (credit, copyright notice)
_XMP_THUMBNAILS = re.compile(rb"<xmp:Thumbnails\b.*?</xmp:Thumbnails>", re.DOTALL)
# A motion photo's XMP (Google's MotionPhoto / MicroVideo) declares the video appended to the JPEG, which a
# copy does not carry; left in, viewers would look for a video that is not there
_MOTION_PHOTO = (re.compile(rb"\s+GCamera:(?:MotionPhoto|MicroVideo)\w*=(?:\"[^\"]*\"|'[^']*')"),
                 re.compile(rb"<GCamera:((?:MotionPhoto|MicroVideo)\w*)>[^<]*</GCamera:\1>"),
                 re.compile(rb"<Container:Directory\b.*?</Container:Directory>", re.DOTALL))

_DC, _RDF = "{http://purl.org/dc/elements/1.1/}", "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
IMAGE_DESCRIPTION, XP_TITLE, XP_COMMENT, XP_SUBJECT = 0x010E, 0x9C9B, 0x9C9C, 0x9C9F
IPTC_CAPTION, IPTC_HEADLINE, IPTC_OBJECT_NAME = (2, 120), (2, 105), (2, 5)
# what cameras and phones write into EXIF's image description when nobody described the photo
_PLACEHOLDERS = re.compile(r"(olympus|minolta|samsung|kodak|pentax|sony|nikon|canon)?\s*(digital\s*(still\s*)?camera|"
                           r"dsc|image)?|exif_jpeg_picture|default|dcf|untitled|image description", re.IGNORECASE)


def exif_bytes(exif: Image.Exif) -> bytes:
    """EXIF to write with the copy: every tag but the maker note (Pillow's writer already leaves out
    the thumbnail of IFD1)."""
    exif.get_ifd(EXIF_IFD).pop(MAKER_NOTE, None)
    return exif.tobytes()


def iptc_blocks(app13_segments: list[bytes]) -> list[bytes]:
    """JPEG APP13 segments reduced to their IPTC records: Photoshop's thumbnails (resources 0x0409
    and 0x040C) and every other resource left out. Segments that do not parse are dropped whole."""
    kept = []
    for segment in app13_segments:
        header = b"Photoshop 3.0\x00"
        if not segment.startswith(header):
            continue
        out, pos = bytearray(header), len(header)
        while pos + 12 <= len(segment) and segment[pos:pos + 4] == b"8BIM":
            resource = int.from_bytes(segment[pos + 4:pos + 6], "big")
            name_length = segment[pos + 6]
            name_end = pos + 6 + 1 + name_length + ((1 + name_length) % 2)  # a padded Pascal string
            size = int.from_bytes(segment[name_end:name_end + 4], "big")
            end = name_end + 4 + size + (size % 2)
            if end > len(segment):
                break
            if resource == IPTC_RECORD:
                out += segment[pos:end]
            pos = end
        if len(out) > len(header):
            kept.append(bytes(out))
    return kept


def xmp_carried(xmp: bytes | str) -> bytes | str:
    """An XMP packet as a copy carries it: without ``xmp:Thumbnails`` (base64 JPEG previews of the photo)
    nor a motion photo's declaration of the video appended to the original file."""
    data = xmp if isinstance(xmp, bytes) else xmp.encode()  # a PNG's iTXt chunk holds it as text
    for pattern in (_XMP_THUMBNAILS, *_MOTION_PHOTO):
        data = pattern.sub(b"", data)
    return data if isinstance(xmp, bytes) else data.decode()


def png_text(chunks: dict[str, str]) -> dict[str, str]:
    """A PNG's text chunks without the raw profiles tools such as ImageMagick store there (hex dumps of
    EXIF or APP1 data, previews included) and with XMP thumbnails taken out."""
    return {key: (xmp_carried(value) if key == "XML:com.adobe.xmp" else value)
            for key, value in chunks.items() if not key.startswith("Raw profile type")}


def carried(im: Image.Image) -> dict:
    """The ``info`` of an opened image as a protected copy should carry it (what
    :func:`t2ue.io.images.save_image` writes back): EXIF without the maker note, XMP without thumbnails,
    a JPEG's IPTC records (``app13``), a PNG's text chunks (``text``) and a TIFF's descriptive tags
    (``tiff_tags``), and no raw profile, nor HEIF's thumbnails (its writer would make reduced copies of
    the protected photo, half purified by the downscaling) and depth or gain maps."""
    info = {key: value for key, value in im.info.items() if not str(key).startswith("Raw profile type")
            and key not in ("thumbnails", "depth_images", "aux")}  # HEIF: reduced copies, depth and gain maps
    exif = im.getexif()
    # a TIFF's "EXIF" is its own directory of tags, carried as tiff_tags
    info["exif"] = exif_bytes(exif) if exif and im.format != "TIFF" else None
    info["xmp"] = xmp_carried(im.info["xmp"]) if im.info.get("xmp") else None
    if im.format in ("JPEG", "MPO"):
        info["app13"] = iptc_blocks([data for marker, data in getattr(im, "applist", []) if marker == "APP13"])
    if im.format == "PNG":
        info["text"] = png_text(dict(im.text))
    if im.format == "TIFF":
        tags = {tag: im.tag_v2[tag] for tag in TIFF_DESCRIPTIVE_TAGS if tag in im.tag_v2}
        if XMP_TAG in tags:
            tags[XMP_TAG] = xmp_carried(tags[XMP_TAG])
        info["tiff_tags"] = tags
    return info


def _xmp_alternatives(xmp: bytes | str | None) -> dict[str, str]:
    """dc:description and dc:title of an XMP packet: each language alternative's x-default, else its first."""
    if not xmp:
        return {}
    try:
        root = ET.fromstring(xmp.encode() if isinstance(xmp, str) else xmp.lstrip(b"\xef\xbb\xbf"))
    except ET.ParseError:
        return {}
    found = {}
    for field in ("description", "title"):
        for prop in root.iter(_DC + field):
            items = list(prop.iter(_RDF + "li")) or [prop]
            chosen = next((li for li in items if li.get(_XML_LANG) == "x-default"), items[0])
            if chosen.text and chosen.text.strip():
                found[field] = chosen.text
                break
    return found


def _iptc_text(iptc: dict, key: tuple[int, int]) -> str | None:
    value = iptc.get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    if not value:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")  # IPTC-IIM before UTF-8 was the norm


def _exif_text(exif: Image.Exif, tag: int) -> str | None:
    value = exif.get(tag)
    if isinstance(value, bytes):  # Windows' XP tags are UTF-16LE; text in any other byte tag, UTF-8
        value = value.decode("utf-16-le" if tag in (XP_TITLE, XP_COMMENT, XP_SUBJECT) else "utf-8", errors="replace")
    elif isinstance(value, str):  # an ASCII tag, which Pillow reads as Latin-1, but tools write UTF-8 into it
        try:
            value = value.encode("latin-1").decode("utf-8")
        except UnicodeError:
            pass
    return value.replace("\x00", "") if isinstance(value, str) else None


def description(im: Image.Image) -> str | None:
    """The description the photo's owner (or their photo app) wrote into the file, or ``None``.

    Looked for in the order photo software writes and reads it: XMP ``dc:description``, IPTC
    Caption-Abstract, EXIF ImageDescription, Windows' comment and subject, PNG's Description chunk;
    then the title fields (XMP ``dc:title``, IPTC Headline and Object Name, Windows' title, PNG's
    Title). A camera's placeholder ("OLYMPUS DIGITAL CAMERA", the camera's own make or model) is no
    description and is passed over; runs of white space become one space."""
    exif = im.getexif()
    xmp = _xmp_alternatives(im.info.get("xmp") or (im.tag_v2.get(XMP_TAG) if im.format == "TIFF" else None))
    iptc = (IptcImagePlugin.getiptcinfo(im) if im.format in ("JPEG", "MPO", "TIFF") else None) or {}
    png = im.info if im.format == "PNG" else {}
    camera = {str(exif.get(tag, "")).strip().lower() for tag in (0x010F, 0x0110)} - {""}  # make, model
    for text in (xmp.get("description"), _iptc_text(iptc, IPTC_CAPTION), _exif_text(exif, IMAGE_DESCRIPTION),
                 _exif_text(exif, XP_COMMENT), _exif_text(exif, XP_SUBJECT), png.get("Description"),
                 xmp.get("title"), _iptc_text(iptc, IPTC_HEADLINE), _iptc_text(iptc, IPTC_OBJECT_NAME),
                 _exif_text(exif, XP_TITLE), png.get("Title")):
        text = _clean(text)
        if text and not _PLACEHOLDERS.fullmatch(text) and text.lower() not in camera:
            return text
    return None


def _clean(text: object) -> str:
    return " ".join(str(text or "").split())


def _xmp_sidecars(photo: Path) -> list[Path]:
    """XMP sidecars as photo tools write them: ``IMG_1.jpg.xmp`` (darktable, digiKam) or ``IMG_1.xmp``
    (Lightroom, Capture One)."""
    return [photo.with_name(photo.name + ".xmp"), photo.with_suffix(".xmp")]


@functools.lru_cache(maxsize=16)
def _json_names(folder: Path, mtime_ns: int) -> frozenset[str]:
    """The JSON file names in a folder, listed once per state of the folder (its mtime changes when a
    file is added or removed), so an album of thousands of photos is not listed once per photo."""
    return frozenset(name for name in os.listdir(folder) if name.endswith(".json"))


def _takeout_sidecars(photo: Path) -> list[Path]:
    """Google Takeout's JSON beside a photo: ``IMG_1.jpg.json``, or ``IMG_1.jpg.supplemental-metadata.json``
    with that word cut short where the whole name passed Takeout's length limit."""
    full = ".supplemental-metadata"
    try:
        names = _json_names(photo.parent, photo.parent.stat().st_mtime_ns)
    except OSError:
        return []
    found = [photo.name + ".json"] + sorted(
        name for name in names if name.startswith(photo.name + ".") and full.startswith(name[len(photo.name):-5]))
    return [photo.with_name(name) for name in dict.fromkeys(found) if name in names]


def sidecar_description(photo: Path) -> str | None:
    """The description kept *beside* a photo: an XMP sidecar's ``dc:description`` (else its title) or
    the ``description`` of Google Takeout's JSON. ``None`` when there is none or it does not parse."""
    for sidecar in _xmp_sidecars(photo):
        if sidecar.is_file():
            try:
                fields = _xmp_alternatives(sidecar.read_bytes())
            except OSError:
                continue
            text = _clean(fields.get("description") or fields.get("title"))
            if text:
                return text
    for sidecar in _takeout_sidecars(photo):
        if sidecar.is_file():
            try:
                text = _clean(json.loads(sidecar.read_text(encoding="utf-8")).get("description"))
            except (OSError, ValueError, AttributeError):
                continue
            if text:
                return text
    return None
