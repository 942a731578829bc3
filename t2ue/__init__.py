"""t2ue: protective, error-minimising noise for photos, from a text description alone."""

from .api import apply_noise, load_noise_model, noise_from_text, protect
from .budget import DEFAULT_EPSILON, parse_epsilon, project_linf
from .images import read_description
from .noise_model import NoiseModel

__version__ = "0.1.0"

__all__ = [
    "noise_from_text",
    "apply_noise",
    "protect",
    "load_noise_model",
    "read_description",
    "NoiseModel",
    "DEFAULT_EPSILON",
    "parse_epsilon",
    "project_linf",
    "__version__",
]
