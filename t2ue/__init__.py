"""t2ue: protective, error-minimising noise for photos, from a text description alone."""

from t2ue.album import protect_folder
from t2ue.api import apply_noise, load_noise_model, noise_from_text, protect, protect_file
from t2ue.budget import DEFAULT_EPSILON, parse_epsilon, project_linf
from t2ue.io.images import read_description
from t2ue.models.cluster_fitting import fit_cluster_noise
from t2ue.models.clusters import ClusterNoise
from t2ue.models.noise_model import NoiseModel

__version__ = "0.1.0"

__all__ = [
    "noise_from_text",
    "apply_noise",
    "protect",
    "protect_file",
    "protect_folder",
    "fit_cluster_noise",
    "ClusterNoise",
    "load_noise_model",
    "read_description",
    "NoiseModel",
    "DEFAULT_EPSILON",
    "parse_epsilon",
    "project_linf",
    "__version__",
]
