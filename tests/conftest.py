"""Tiny real models, saved in the formats users bring, built once per test session."""

from __future__ import annotations

import gzip
import json

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from t2ue.data.sets import ImageTextSet
from t2ue.models.open_clip_folder import resolve_text_tower
from t2ue.models.surrogates import save_open_clip_folder

TINY_VISION = {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8}


@pytest.fixture(scope="session")
def minilm_surrogate_dir(tmp_path_factory):
    """A CLIP with the real, locked MiniLM text tower and a tiny random image tower (trained parts only)."""
    cfg = {"embed_dim": 32, "vision_cfg": TINY_VISION,
           "text_cfg": {"hf_model_name": "sentence-transformers/all-MiniLM-L6-v2",
                        "hf_tokenizer_name": "sentence-transformers/all-MiniLM-L6-v2",
                        "hf_pooler_type": "mean_pooler", "hf_proj_type": "linear", "context_length": 24}}
    resolved = json.loads(json.dumps(cfg))
    for key in ("hf_model_name", "hf_tokenizer_name"):
        resolved["text_cfg"][key] = resolve_text_tower(cfg["text_cfg"][key])
    torch.manual_seed(0)
    model = open_clip.CustomTextCLIP(**resolved)
    path = tmp_path_factory.mktemp("surrogate-minilm")
    save_open_clip_folder(model, cfg, path, preprocess_cfg={"mean": [0.5] * 3, "std": [0.25] * 3},
                          trained_parts_only=True)
    return path


@pytest.fixture(scope="session")
def open_clip_dir(tmp_path_factory):
    """A tiny native open_clip CLIP saved as open_clip_config.json + full safetensors (local-dir layout)."""
    cfg = {"embed_dim": 32, "vision_cfg": TINY_VISION,
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    torch.manual_seed(0)
    model = open_clip.CLIP(**cfg)
    path = tmp_path_factory.mktemp("surrogate-openclip")
    save_open_clip_folder(model, cfg, path)
    return path


@pytest.fixture(scope="session")
def hf_clip_dir(tmp_path_factory):
    """A tiny Hugging Face CLIPModel + CLIPTokenizer (open_clip's BPE vocabulary) saved with save_pretrained."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    bpe = open_clip.tokenizer.default_bpe()
    merges_raw = gzip.open(bpe).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    tok = open_clip.SimpleTokenizer()
    vocab = dict(tok.encoder)
    merges = [tuple(m.split()) for m in merges_raw]
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    config = CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 32,
                     "bos_token_id": vocab["<start_of_text>"], "eos_token_id": vocab["<end_of_text>"]},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=24)
    torch.manual_seed(0)
    model = CLIPModel(config)
    path = tmp_path_factory.mktemp("surrogate-hf")
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_pairs():
    """A small real image-text set: scikit-image photos with hand-written captions, 32 px."""
    from PIL import Image
    from skimage import data as skdata

    photos = {"astronaut": "an astronaut in a spacesuit holding a helmet beside a flag",
              "coffee": "a cup of coffee on a saucer seen from above",
              "chelsea": "a ginger cat looking to the side",
              "rocket": "a rocket on the launch pad under a clear sky",
              "hubble_deep_field": "thousands of faint galaxies in the deep night sky",
              "immunohistochemistry": "a microscope image of stained tissue cells",
              "camera": "a man with a camera on a tripod in a field, black and white",
              "moon": "the surface of the moon with craters"}
    images, captions = [], []
    for name, caption in photos.items():
        image = Image.fromarray(getattr(skdata, name)()).convert("RGB")
        for flip in (False, True):
            im = image.transpose(Image.FLIP_LEFT_RIGHT) if flip else image
            images.append(np.asarray(im.resize((32, 32), Image.BILINEAR)))
            captions.append(caption if not flip else caption + ", mirrored")
    return ImageTextSet(np.stack(images), captions, name="skimage-photos")


@pytest.fixture(scope="session")
def tiny_noise_model_dir(minilm_surrogate_dir, tmp_path_factory):
    """An untrained but complete noise model folder (t2ue-gan, 16 px) with its surrogate inside."""
    from t2ue.models.generators import T2UEGenerator
    from t2ue.models.noise_model import NoiseModel
    from t2ue.models.surrogates import load_surrogate
    from t2ue.models.text_encoders import SurrogateTextEncoder

    surrogate = load_surrogate(minilm_surrogate_dir)
    torch.manual_seed(0)
    model = NoiseModel(T2UEGenerator(text_dim=surrogate.embed_dim, resolution=16).eval(), SurrogateTextEncoder(surrogate))
    return model.save_pretrained(tmp_path_factory.mktemp("noise-model"))


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
    """A labelled image folder of real photos (scikit-image): 8 photos × 4 views, captions in .txt files."""
    from PIL import Image
    from skimage import data as skdata

    groups = {"space": ["astronaut", "rocket", "hubble_deep_field", "moon"],
              "everyday": ["coffee", "chelsea", "camera", "immunohistochemistry"]}
    root = tmp_path_factory.mktemp("photos")
    for label, names in groups.items():
        (root / label).mkdir()
        for name in names:
            image = Image.fromarray(getattr(skdata, name)()).convert("RGB")
            w, h = image.size
            views = {"full": image, "mirrored": image.transpose(Image.FLIP_LEFT_RIGHT),
                     "left half": image.crop((0, 0, w // 2, h)), "right half": image.crop((w // 2, 0, w, h))}
            for view, im in views.items():
                stem = f"{name}-{view.replace(' ', '_')}"
                im.resize((48, 48), Image.BILINEAR).save(root / label / f"{stem}.png")
                (root / label / f"{stem}.txt").write_text(f"{view} view of the {name.replace('_', ' ')} photo")
    return root


def _xmp_packet(description: str, title: str = "") -> bytes:
    """An XMP packet as Lightroom writes it: dc:description and dc:title as language alternatives."""
    def alt(field, value):
        return (f"<dc:{field}><rdf:Alt><rdf:li xml:lang='de'>auf Deutsch</rdf:li>"
                f"<rdf:li xml:lang='x-default'>{value}</rdf:li></rdf:Alt></dc:{field}>") if value else ""
    return ("<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?><x:xmpmeta xmlns:x='adobe:ns:meta/'>"
            "<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'><rdf:Description rdf:about='' "
            f"xmlns:dc='http://purl.org/dc/elements/1.1/'>{alt('description', description)}{alt('title', title)}"
            "</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end='w'?>").encode()


def _iptc_app13(datasets: dict[int, bytes]) -> bytes:
    """A JPEG APP13 segment holding IPTC-IIM record 2 datasets (2:120 caption, 2:105 headline, ...)."""
    iim = b"".join(b"\x1c\x02" + bytes([number]) + len(value).to_bytes(2, "big") + value
                   for number, value in datasets.items())
    block = b"8BIM\x04\x04\x00\x00" + len(iim).to_bytes(4, "big") + iim + b"\x00" * (len(iim) % 2)
    app13 = b"Photoshop 3.0\x00" + block
    return b"\xff\xed" + (len(app13) + 2).to_bytes(2, "big") + app13


@pytest.fixture
def xmp_packet():
    """Makes an XMP packet with a description (and a title), as a sidecar file or a photo holds it."""
    return _xmp_packet


@pytest.fixture
def iptc_segment():
    """Makes a JPEG APP13 segment holding IPTC-IIM record 2 datasets, ready to pass as Pillow's ``extra``."""
    return _iptc_app13


@pytest.fixture
def described_photo():
    """Writes a small photo whose description sits where a photo app puts it: ``kind`` is xmp (JPEG, WebP,
    HEIC, PNG), iptc (JPEG), exif (ImageDescription), xp-title (Windows), png-text or tiff."""
    from PIL import Image, PngImagePlugin

    def write(path, kind: str, text: str, exif_extra: dict | None = None, colour=(90, 140, 60)):
        image = Image.new("RGB", (24, 18), colour)
        exif = Image.Exif()
        for tag, value in (exif_extra or {}).items():
            exif[tag] = value
        options = {"exif": exif} if exif_extra else {}
        if kind == "xmp" and path.suffix == ".png":
            info = PngImagePlugin.PngInfo()
            info.add_itxt("XML:com.adobe.xmp", _xmp_packet(text).decode())
            options["pnginfo"] = info
        elif kind == "xmp":
            options["xmp"] = _xmp_packet(text)
        elif kind == "iptc":
            options["extra"] = _iptc_app13({120: text.encode("utf-8")})
        elif kind == "exif":
            exif[0x010E] = text.encode("utf-8")  # as exiftool writes it into the ASCII tag
            options["exif"] = exif
        elif kind == "xp-title":
            exif[0x9C9B] = (text + "\0").encode("utf-16-le")
            options["exif"] = exif
        elif kind == "png-text":
            info = PngImagePlugin.PngInfo()
            info.add_text("Description", text)
            options["pnginfo"] = info
        elif kind == "tiff":
            options["tiffinfo"] = {270: text.encode("utf-8")}
        elif kind != "none":
            raise ValueError(kind)
        image.save(path, **options)
        return path

    return write


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """Four scikit-image colour photos at 48 px, uint8 (N, 48, 48, 3)."""
    from skimage import data as skdata

    names = ("astronaut", "coffee", "chelsea", "rocket")
    return np.stack([np.asarray(Image.fromarray(getattr(skdata, n)()).convert("RGB").resize((48, 48))) for n in names])


def pillow_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` through Pillow's real JPEG codec at ``quality``, as float64."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB")).astype(np.float64)
