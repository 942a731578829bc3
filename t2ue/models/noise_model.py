"""A noise model: a generator plus the text encoder it was trained with, saved as one folder.

Folder layout (``save_pretrained`` / ``from_pretrained``)::

    noise_model.json          budget, resolution, generator kind, text encoder, training summary
    README.md                 (optional) the model card: recipe, data, what it protects against
    generator/                generator_config.json + generator.safetensors
    surrogate/                (optional) the surrogate CLIP, when it is small enough to travel along
    clusters/                 (optional) fitted clusters for ``mode="cluster"`` (see ``t2ue.models.clusters``)

When ``surrogate/`` is absent, ``noise_model.json`` names the surrogate (for example
``open_clip:ViT-B-32/openai``) and it is loaded from there. Making noise needs only the surrogate's
text side (:mod:`t2ue.models.text_encoders`); the whole surrogate is loaded on first use of
:attr:`NoiseModel.surrogate` (fitting cluster noise on images, training).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from t2ue.budget import project_linf
from t2ue.io.files import reading_folder, write_text
from t2ue.models.clusters import ClusterNoise
from t2ue.models.generators import NoiseGenerator, load_generator
from t2ue.models.registry import NOISE_MODEL_CONFIG
from t2ue.models.text_encoders import SurrogateTextEncoder, TextEncoder, load_text_encoder, one_at_a_time

CLUSTERS_FOLDER = "clusters"
SURROGATE_FOLDER = "surrogate"
CLASS_TEMPLATE = "a photo of a {}"
MODES = ("sample", "class")


def text_seed(text: str, seed: int) -> int:
    """A 63-bit seed from a text and a user seed, stable across runs, machines and batch positions."""
    digest = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class NoiseModel(nn.Module):
    """Turns descriptions into bounded perturbations at the generator's resolution.

    ``text_encoder_spec`` is how ``noise_model.json`` names the text encoder when it does not travel in
    the folder (an open_clip name such as ``open_clip:ViT-B-32/openai``); ``None`` copies a small local
    one along."""

    def __init__(self, generator: NoiseGenerator, text_encoder: TextEncoder, *, text_encoder_spec: str | None = None,
                 metadata: dict | None = None, clusters: ClusterNoise | None = None):
        super().__init__()
        self.generator = generator
        self.text_encoder = text_encoder
        self.text_encoder_spec = text_encoder_spec
        self.metadata = dict(metadata or {})
        self.clusters = clusters
        self._surrogate = text_encoder.surrogate if isinstance(text_encoder, SurrogateTextEncoder) else None

    @property
    def epsilon(self) -> float:
        return self.generator.epsilon

    @property
    def resolution(self) -> tuple[int, int]:
        return self.generator.resolution

    @property
    def surrogate(self):
        """The whole surrogate CLIP the noise was trained against (loaded when first asked for: needs
        ``t2ue[train]``)."""
        if self._surrogate is None:
            from t2ue.models.surrogates import load_surrogate

            with torch.inference_mode(False):  # its weights may be trained through later, wherever first asked for
                self._surrogate = load_surrogate(self.text_encoder.source)
        return self._surrogate

    def with_clusters(self, clusters: ClusterNoise | None) -> NoiseModel:
        """The same model carrying other clusters (for ``t2ue fit-clusters``)."""
        return NoiseModel(self.generator, self.text_encoder, text_encoder_spec=self.text_encoder_spec,
                          metadata=self.metadata, clusters=clusters)

    def latents(self, keys: list[str], seed: int) -> torch.Tensor:
        """One z per key, drawn from a generator seeded by the key and the user seed."""
        shape = self.generator.latent_shape()
        zs = [torch.randn(shape, generator=torch.Generator().manual_seed(text_seed(k, seed))) for k in keys]
        return torch.stack(zs)

    @torch.inference_mode()
    def from_embeddings(self, embeddings: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The generator's noise for pooled text embeddings (N, D), a row at a time, so that a row's noise is
        the same whatever rows it is made with."""
        device = next(self.generator.parameters()).device
        rows = torch.cat([embeddings.to(device), z.to(device).flatten(1)], dim=1)
        width = embeddings.shape[1]
        return one_at_a_time(rows, lambda block: self.generator(block[:, :width], block[:, width:].view(-1, *z.shape[1:])))

    @torch.inference_mode()
    def generate(self, texts: list[str], *, seed: int = 0, mode: str = "sample") -> torch.Tensor:
        """Noise (N, 3, h, w) for each text, each computed as if it were alone; ``class`` mode wraps labels in
        a template and shares one z."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.eval()
        texts = [CLASS_TEMPLATE.format(t) for t in texts] if mode == "class" else list(texts)
        z = self.latents(["\x00class"] * len(texts) if mode == "class" else texts, seed)
        if self.generator.uses_tokens:  # cross-attention to each text's own tokens, one text at a time
            device = next(self.generator.parameters()).device
            out = []
            for i, text in enumerate(texts):
                tokens, mask = self.text_encoder.encode_tokens(text)
                embedding = self.text_encoder.encode([text])
                out.append(self.generator(embedding.to(device), z[i:i + 1].to(device), tokens=tokens.to(device),
                                          mask=mask.to(device)))
            noise = torch.cat(out)
        else:
            noise = self.from_embeddings(self.text_encoder.encode(texts), z)
        return project_linf(noise.float().cpu(), self.epsilon)

    def save_pretrained(self, path: str | os.PathLike, *, include_surrogate: bool | None = None) -> Path:
        """Write the folder; the surrogate is copied along when it was loaded from a small local folder,
        fitted clusters go to ``clusters/``; a model card (``README.md``) of the source folder is kept."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.generator.save_pretrained(path / "generator")
        if self.clusters is not None:
            self.clusters.save_pretrained(path / CLUSTERS_FOLDER)
        source = Path(self.text_encoder.source)
        if include_surrogate is None:
            include_surrogate = self.text_encoder_spec is None and source.is_dir() and _folder_size(source) < 50e6
        spec = self.text_encoder_spec or self.text_encoder.source
        if include_surrogate:
            if source.resolve() != (path / SURROGATE_FOLDER).resolve():
                shutil.copytree(source, path / SURROGATE_FOLDER, dirs_exist_ok=True)
            spec = SURROGATE_FOLDER
        config = {
            "format": "t2ue-noise-model/1",
            "epsilon": self.epsilon,
            "resolution": list(self.resolution),
            "generator": self.generator.kind,
            "text_encoder": spec,
            **self.metadata,
        }
        write_text(path / NOISE_MODEL_CONFIG, json.dumps(config, indent=2))
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> NoiseModel:
        path = Path(path)
        config_file = path / NOISE_MODEL_CONFIG
        if not config_file.is_file():
            raise FileNotFoundError(f"{path}: not a noise model folder (no {NOISE_MODEL_CONFIG})")
        with reading_folder(path, "noise model"):
            config = json.loads(config_file.read_text())
            generator = load_generator(path / "generator")
            spec = config["text_encoder"]
            local = path / spec
            text_encoder = load_text_encoder(local if local.is_dir() else spec)
            metadata = {k: v for k, v in config.items()
                        if k not in ("format", "epsilon", "resolution", "generator", "text_encoder")}
            clusters = (ClusterNoise.from_pretrained(path / CLUSTERS_FOLDER) if (path / CLUSTERS_FOLDER).is_dir()
                        else None)
        if clusters is not None and clusters.centres.shape[1] != text_encoder.embed_dim:
            raise ValueError(f"{path}: its clusters were fitted with another text encoder than its own")
        return cls(generator, text_encoder, text_encoder_spec=None if local.is_dir() else spec,
                   metadata=metadata, clusters=clusters).eval()


def _folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
