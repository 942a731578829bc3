"""What metadata a protected copy carries: the owner's words (rights, credit, description) and nothing
that holds the picture itself.

Photo files often hide smaller copies of the photo in their metadata — a camera's preview inside its
EXIF maker note, a Photoshop thumbnail in the JPEG's IPTC block, an XMP thumbnail, an EXIF dump in a
PNG text chunk. Those copies would not carry the noise, so a scraper could train on them instead. The
functions here keep the metadata and leave every such copy out.
"""

from __future__ import annotations

import re

from PIL import Image

XMP_TAG = 700
# A TIFF's description, software, date, artist, copyright, XMP, IPTC: who made the photo and on what terms
# (Pillow turns a TIFF upright as it loads it, so its orientation is in the pixels)
TIFF_DESCRIPTIVE_TAGS = (270, 305, 306, 315, 33432, XMP_TAG, 33723)
MAKER_NOTE = 0x927C  # in the Exif sub-IFD: opaque vendor data, where cameras keep their previews
EXIF_IFD = 0x8769
IPTC_RECORD = 0x0404  # the Photoshop resource that holds the IPTC-IIM record (credit, copyright notice)
_XMP_THUMBNAILS = re.compile(rb"<xmp:Thumbnails\b.*?</xmp:Thumbnails>", re.DOTALL)


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


def xmp_without_thumbnails(xmp: bytes | str) -> bytes | str:
    """An XMP packet without its ``xmp:Thumbnails`` (base64 JPEG previews of the photo)."""
    if isinstance(xmp, bytes):
        return _XMP_THUMBNAILS.sub(b"", xmp)
    return _XMP_THUMBNAILS.sub(b"", xmp.encode()).decode()  # a PNG's iTXt chunk holds it as text


def png_text(chunks: dict[str, str]) -> dict[str, str]:
    """A PNG's text chunks without the raw profiles tools such as ImageMagick store there (hex dumps of
    EXIF or APP1 data, previews included) and with XMP thumbnails taken out."""
    return {key: (xmp_without_thumbnails(value) if key == "XML:com.adobe.xmp" else value)
            for key, value in chunks.items() if not key.startswith("Raw profile type")}


def carried(im: Image.Image) -> dict:
    """The ``info`` of an opened image as a protected copy should carry it (what
    :func:`t2ue.images.save_image` writes back): EXIF without the maker note, XMP without thumbnails,
    a JPEG's IPTC records (``app13``), a PNG's text chunks (``text``) and a TIFF's descriptive tags
    (``tiff_tags``), and no raw profile, nor HEIF's thumbnails (its writer would make reduced copies of
    the protected photo, half purified by the downscaling) and depth or gain maps."""
    info = {key: value for key, value in im.info.items() if not str(key).startswith("Raw profile type")
            and key not in ("thumbnails", "depth_images", "aux")}  # HEIF: reduced copies, depth and gain maps
    exif = im.getexif()
    # a TIFF's "EXIF" is its own directory of tags, carried as tiff_tags
    info["exif"] = exif_bytes(exif) if exif and im.format != "TIFF" else None
    info["xmp"] = xmp_without_thumbnails(im.info["xmp"]) if im.info.get("xmp") else None
    if im.format in ("JPEG", "MPO"):
        info["app13"] = iptc_blocks([data for marker, data in getattr(im, "applist", []) if marker == "APP13"])
    if im.format == "PNG":
        info["text"] = png_text(dict(im.text))
    if im.format == "TIFF":
        tags = {tag: im.tag_v2[tag] for tag in TIFF_DESCRIPTIVE_TAGS if tag in im.tag_v2}
        if XMP_TAG in tags:
            tags[XMP_TAG] = xmp_without_thumbnails(tags[XMP_TAG])
        info["tiff_tags"] = tags
    return info
