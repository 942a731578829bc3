"""Cluster-wise noise: the saved form of fitted clusters (:class:`ClusterNoise`) and what every
maker of cluster noise shares. Fitting them is :mod:`t2ue.models.cluster_fitting`.

Label-agnostic, cluster-wise noise from text (after *Unlearnable Clusters*, Zhang et al., CVPR 2023).

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

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from t2ue.budget import project_linf
from t2ue.io.files import atomic_path, reading_folder, write_text

CLUSTER_CONFIG = "clusters.json"
CLUSTER_WEIGHTS = "clusters.safetensors"


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


