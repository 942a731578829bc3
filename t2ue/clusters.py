"""Label-agnostic, cluster-wise noise from text (after *Unlearnable Clusters*, Zhang et al., CVPR 2023).

Descriptions are embedded by the noise model's text encoder and grouped with K-means; every member of
a cluster gets the same perturbation, so the protection does not depend on which labels or captions an
exploiter later attaches. Each cluster's perturbation is made in one of two ways:

* ``generator``: the noise model's generator conditioned on the cluster centre (text only, instant);
* ``uc``: trained against the frozen surrogate with the UC objective on reference images whose
  descriptions fall in the cluster: the surrogate's embedding of x + delta_k is pulled onto the *next*
  cluster's centre, so members collapse onto one point away from their own content.

A fitted :class:`ClusterNoise` (centres + perturbations) saves to a folder of its own or inside a noise
model's folder (``clusters/``, loaded with the model), and protects tomorrow's photos with the same
clusters.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .budget import project_linf
from .files import atomic_path, reading_folder, write_text

if TYPE_CHECKING:
    from .noise_model import NoiseModel

CLUSTER_CONFIG = "clusters.json"
CLUSTER_WEIGHTS = "clusters.safetensors"
MAKERS = ("generator", "uc")


@dataclass
class ClusterNoise:
    """K unit-norm centres in the text-embedding space and one perturbation (K, 3, H, W) per cluster."""

    centres: torch.Tensor
    patterns: torch.Tensor
    epsilon: float
    meta: dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        return len(self.centres)

    def assign(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The nearest centre (cosine) of each embedding."""
        return nearest_centre(self.centres, embeddings)

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write centres and perturbations (safetensors) and their config; each file atomically."""
        path = Path(path)
        with atomic_path(path / CLUSTER_WEIGHTS) as tmp:
            save_file({"centres": self.centres.contiguous(), "patterns": self.patterns.contiguous()}, str(tmp))
        write_text(path / CLUSTER_CONFIG, json.dumps({"format": "t2ue-clusters/1", "k": self.k,
                                                      "epsilon": self.epsilon, **self.meta}, indent=2))
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> ClusterNoise:
        path = Path(path)
        if not (path / CLUSTER_CONFIG).is_file():
            raise FileNotFoundError(f"{path}: not a clusters folder (no {CLUSTER_CONFIG})")
        with reading_folder(path, "clusters folder"):
            config = json.loads((path / CLUSTER_CONFIG).read_text())
            tensors = load_file(str(path / CLUSTER_WEIGHTS))
            if len(tensors["centres"]) != len(tensors["patterns"]) or len(tensors["centres"]) != config["k"]:
                raise ValueError(f"{CLUSTER_WEIGHTS} does not match {CLUSTER_CONFIG} (k = {config['k']})")
            meta = {k: v for k, v in config.items() if k not in ("format", "k", "epsilon")}
            return cls(tensors["centres"], tensors["patterns"], float(config["epsilon"]), meta)


def nearest_centre(centres: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """Index of the nearest unit centre (cosine) of each embedding."""
    return (F.normalize(embeddings.float(), dim=-1) @ centres.T).argmax(dim=1)


@torch.inference_mode()
def embed_texts(model: NoiseModel, texts: list[str]) -> torch.Tensor:
    """The noise model's text embeddings (float32, CPU): what clusters are fitted on and assigned by."""
    return model.surrogate.encode_text(list(texts)).float().cpu()


def kmeans(embeddings: torch.Tensor, k: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Seeded K-means (scikit-learn) on unit-normalised embeddings: unit centres and labels."""
    from sklearn.cluster import KMeans

    points = F.normalize(embeddings.float(), dim=-1).cpu().numpy()
    distinct = len(np.unique(points.round(6), axis=0))
    if not 2 <= k <= distinct:
        raise ValueError(f"{k} clusters need at least {k} distinct descriptions; got {distinct}")
    fitted = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(points)
    centres = F.normalize(torch.from_numpy(fitted.cluster_centers_).float(), dim=-1)
    return centres, fitted.labels_.astype(np.int64)


@torch.no_grad()
def _generator_patterns(model: NoiseModel, centres: torch.Tensor, seed: int) -> torch.Tensor:
    if model.generator.uses_tokens:
        raise ValueError("cluster noise by generator needs a generator conditioned on pooled text embeddings "
                         "(t2ue-gan); use maker='uc' for this model")
    z = model.latents(["\x00cluster"] * len(centres), seed)
    return project_linf(model.generator(centres.to(z.device), z).float(), model.epsilon).cpu()


def separate_patterns(patterns: torch.Tensor, epsilon: float, how: str | float = "sign") -> torch.Tensor:
    """Patterns with the component every cluster shares taken out and the rest spread over the budget.

    What all clusters have in common tells no cluster from another, yet spends budget; without it the
    differences between clusters, the shortcut a victim learns, can be scaled up: ``how="sign"``
    saturates them at ±epsilon, a number (a gain, also as text) scales them and projects onto the budget.
    """
    gain = _separation_gain(how)
    if len(patterns) < 2:
        raise ValueError("separating patterns needs at least two clusters")
    distinct = patterns - patterns.mean(dim=0, keepdim=True)
    if gain is None:
        return epsilon * torch.sign(distinct)
    return project_linf(distinct * gain, epsilon)


def _separation_gain(how: str | float) -> float | None:
    """The gain ``how`` asks for, None for ``sign``; a clear error for anything else."""
    if how == "sign":
        return None
    try:
        gain = float(how)
    except (TypeError, ValueError):
        gain = float("nan")
    if not gain > 0:
        raise ValueError(f"separate takes none, sign or a gain > 0, got {how!r}")
    return gain


def uc_patterns(model: NoiseModel, centres: torch.Tensor, images: torch.Tensor, image_clusters: np.ndarray, *,
                steps: int, lr: float, batch_size: int, seed: int) -> torch.Tensor:
    """Per-cluster perturbations by the UC objective on reference images in [0, 1] (N, 3, h, w)."""
    surrogate = model.surrogate.freeze()
    k, eps = len(centres), model.epsilon
    height, width = model.resolution
    generator = torch.Generator().manual_seed(seed)
    raw = torch.nn.Parameter(0.01 * torch.randn((k, 3, height, width), generator=generator))
    opt = torch.optim.Adam([raw], lr=lr)
    targets = centres.roll(-1, dims=0)  # cluster k is pushed onto centre k + 1
    owners = torch.as_tensor(image_clusters)
    images = F.interpolate(images, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    for _ in range(steps):
        idx = torch.randint(len(images), (min(batch_size, len(images)),), generator=generator)
        delta = eps * torch.tanh(raw[owners[idx]])
        features = surrogate.encode_image((images[idx] + delta).clamp(0, 1))
        loss = (1 - (features * targets[owners[idx]]).sum(dim=1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (eps * torch.tanh(raw.detach())).float()


def fit_and_assign(model: NoiseModel, texts: list[str], k: int, *, seed: int = 0, maker: str = "generator",
                   reference_images: torch.Tensor | None = None, reference_texts: list[str] | None = None,
                   steps: int = 200, lr: float = 0.05, batch_size: int = 64, separate: str | float | None = None,
                   ) -> tuple[ClusterNoise, torch.Tensor]:
    """Cluster ``texts``, make one perturbation per cluster (see the module docstring for ``maker``) and
    return the clusters with each text's cluster, its description embedded once.

    ``separate`` (``"sign"`` or a gain; ``None`` or ``"none"``: off) passes the perturbations through
    :func:`separate_patterns`, which takes out what they share and spreads their differences over the budget.

    ``uc`` needs reference images in [0, 1] with their descriptions: public pictures, never the
    user's, are placed in clusters by their descriptions and the perturbations are fitted on them.
    """
    if maker not in MAKERS:
        raise ValueError(f"maker must be one of {MAKERS}, got {maker!r}")
    separated = separate not in (None, "none")
    if separated:
        _separation_gain(separate)  # a bad value fails before any work
    embeddings = embed_texts(model, texts)
    centres, _ = kmeans(embeddings, k, seed)
    if maker == "generator":
        patterns = _generator_patterns(model, centres, seed)
    else:
        if reference_images is None or not reference_texts:
            raise ValueError("maker='uc' needs reference images and their descriptions")
        owners = nearest_centre(centres, embed_texts(model, reference_texts))
        patterns = uc_patterns(model, centres, reference_images.float(), owners.numpy(), steps=steps, lr=lr,
                               batch_size=batch_size, seed=seed)
    if separated:
        patterns = separate_patterns(patterns, model.epsilon, separate)
    fitted = ClusterNoise(centres, patterns, model.epsilon,
                          {"maker": maker, "seed": seed, "fitted_on": len(texts),
                           "text_encoder": str(model.surrogate.source), **({"separate": str(separate)} if separated else {})})
    return fitted, nearest_centre(centres, embeddings)


def fit_cluster_noise(model: NoiseModel, texts: list[str], k: int, **options) -> ClusterNoise:
    """Clusters and their perturbations fitted on ``texts`` (options as :func:`fit_and_assign`)."""
    return fit_and_assign(model, texts, k, **options)[0]


@torch.inference_mode()
def cluster_noise_for(model: NoiseModel, clusters: ClusterNoise, texts: list[str]) -> torch.Tensor:
    """Each text's cluster perturbation (N, 3, h, w): the nearest centre's pattern."""
    if clusters.centres.shape[1] != model.surrogate.embed_dim:
        raise ValueError("these clusters were fitted with another text encoder than this noise model's")
    return clusters.patterns[clusters.assign(embed_texts(model, texts))]
