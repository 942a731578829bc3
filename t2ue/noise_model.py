"""A noise model: a generator plus the text encoder it was trained with, saved as one folder.

Folder layout (``save_pretrained`` / ``from_pretrained``)::

    noise_model.json          budget, resolution, generator kind, text encoder, training summary
    generator/                generator_config.json + generator.safetensors
    surrogate/                (optional) the surrogate CLIP, when it is small enough to travel along
    clusters/                 (optional) fitted clusters for ``mode="cluster"`` (see ``t2ue.clusters``)

When ``surrogate/`` is absent, ``noise_model.json`` names the surrogate (for example
``open_clip:ViT-B-32/openai``) and it is loaded from there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from .budget import project_linf
from .clusters import ClusterNoise
from .files import reading_folder, write_text
from .generators import NoiseGenerator, load_generator
from .surrogates import Surrogate, load_surrogate

NOISE_MODEL_CONFIG = "noise_model.json"
CLUSTERS_FOLDER = "clusters"
CLASS_TEMPLATE = "a photo of a {}"
MODES = ("sample", "class")


def text_seed(text: str, seed: int) -> int:
    """A 63-bit seed from a text and a user seed, stable across runs, machines and batch positions."""
    digest = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class NoiseModel(nn.Module):
    """Turns descriptions into bounded perturbations at the generator's resolution."""

    def __init__(self, generator: NoiseGenerator, surrogate: Surrogate, *, surrogate_spec: str | None = None,
                 metadata: dict | None = None, clusters: ClusterNoise | None = None):
        super().__init__()
        self.generator = generator
        self.surrogate = surrogate
        self.surrogate_spec = surrogate_spec
        self.metadata = dict(metadata or {})
        self.clusters = clusters

    @property
    def epsilon(self) -> float:
        return self.generator.epsilon

    @property
    def resolution(self) -> tuple[int, int]:
        return self.generator.resolution

    def text_condition(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The surrogate's text embedding (and token states when the generator cross-attends)."""
        embedding = self.surrogate.encode_text(texts)
        if self.generator.uses_tokens:
            tokens, mask = self.surrogate.encode_text_tokens(texts)
            return embedding, tokens, mask
        return embedding, None, None

    def latents(self, keys: list[str], seed: int) -> torch.Tensor:
        """One z per key, drawn from a generator seeded by the key and the user seed."""
        shape = self.generator.latent_shape()
        zs = [torch.randn(shape, generator=torch.Generator().manual_seed(text_seed(k, seed))) for k in keys]
        return torch.stack(zs).to(self.surrogate.device)

    def forward(self, texts: list[str], z: torch.Tensor) -> torch.Tensor:
        embedding, tokens, mask = self.text_condition(texts)
        return self.generator(embedding, z, tokens=tokens, mask=mask)

    @torch.inference_mode()
    def generate(self, texts: list[str], *, seed: int = 0, mode: str = "sample", batch_size: int = 256) -> torch.Tensor:
        """Noise (N, 3, h, w) for each text; ``class`` mode wraps labels in a template and shares one z."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.eval()
        texts = [CLASS_TEMPLATE.format(t) for t in texts] if mode == "class" else list(texts)
        out = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            keys = ["\x00class"] * len(chunk) if mode == "class" else chunk
            out.append(self(chunk, self.latents(keys, seed)))
        return project_linf(torch.cat(out).float(), self.epsilon)

    def save_pretrained(self, path: str | os.PathLike, *, include_surrogate: bool | None = None) -> Path:
        """Write the folder; the surrogate is copied along when it was loaded from a small local folder,
        fitted clusters go to ``clusters/``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.generator.save_pretrained(path / "generator")
        if self.clusters is not None:
            self.clusters.save_pretrained(path / CLUSTERS_FOLDER)
        source = Path(self.surrogate.source)
        if include_surrogate is None:
            include_surrogate = source.is_dir() and _folder_size(source) < 50e6
        spec = self.surrogate_spec or self.surrogate.source
        if include_surrogate:
            if source.resolve() != (path / "surrogate").resolve():
                shutil.copytree(source, path / "surrogate", dirs_exist_ok=True)
            spec = "surrogate"
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
    def from_pretrained(cls, path: str | os.PathLike, *, surrogate: Surrogate | None = None) -> NoiseModel:
        path = Path(path)
        config_file = path / NOISE_MODEL_CONFIG
        if not config_file.is_file():
            raise FileNotFoundError(f"{path}: not a noise model folder (no {NOISE_MODEL_CONFIG})")
        with reading_folder(path, "noise model"):
            config = json.loads(config_file.read_text())
            generator = load_generator(path / "generator")
            spec = config["text_encoder"]
            if surrogate is None:
                local = path / spec
                surrogate = load_surrogate(local if local.is_dir() else spec)
            metadata = {k: v for k, v in config.items()
                        if k not in ("format", "epsilon", "resolution", "generator", "text_encoder")}
            clusters = (ClusterNoise.from_pretrained(path / CLUSTERS_FOLDER) if (path / CLUSTERS_FOLDER).is_dir()
                        else None)
        if clusters is not None and clusters.centres.shape[1] != surrogate.embed_dim:
            raise ValueError(f"{path}: its clusters were fitted with another text encoder than its own")
        return cls(generator, surrogate, surrogate_spec=None if spec == "surrogate" else spec,
                   metadata=metadata, clusters=clusters).eval()


def _folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
