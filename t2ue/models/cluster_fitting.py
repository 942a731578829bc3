"""Fitting cluster-wise noise (:class:`~t2ue.models.clusters.ClusterNoise`) with a noise model: K-means on
its text embeddings, then one perturbation per cluster, by its generator or by the UC objective."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from t2ue.budget import project_linf
from t2ue.models.clusters import ClusterNoise, _separation_gain, nearest_centre, separate_patterns
from t2ue.models.noise_model import NoiseModel

MAKERS = ("generator", "uc")


@torch.inference_mode()
def embed_texts(model: NoiseModel, texts: list[str]) -> torch.Tensor:
    """The noise model's text embeddings (float32, CPU): what clusters are fitted on and assigned by."""
    return model.text_encoder.encode(list(texts)).float().cpu()


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
    return project_linf(model.from_embeddings(centres, z).float().cpu(), model.epsilon)


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
                           "text_encoder": str(model.text_encoder.source), **({"separate": str(separate)} if separated else {})})
    return fitted, nearest_centre(centres, embeddings)


def fit_cluster_noise(model: NoiseModel, texts: list[str], k: int, **options) -> ClusterNoise:
    """Clusters and their perturbations fitted on ``texts`` (options as :func:`fit_and_assign`)."""
    return fit_and_assign(model, texts, k, **options)[0]


@torch.inference_mode()
def cluster_noise_for(model: NoiseModel, clusters: ClusterNoise, texts: list[str]) -> torch.Tensor:
    """Each text's cluster perturbation (N, 3, h, w): the nearest centre's pattern."""
    if clusters.centres.shape[1] != model.text_encoder.embed_dim:
        raise ValueError("these clusters were fitted with another text encoder than this noise model's")
    return clusters.patterns[clusters.assign(embed_texts(model, texts))]
