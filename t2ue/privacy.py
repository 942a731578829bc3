"""Offline-by-default settings: no telemetry, no hub look-ups, unless the user has chosen otherwise."""

from __future__ import annotations

import os

OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def set_offline_defaults() -> None:
    """Set privacy-preserving environment defaults; values the user set explicitly are kept."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
