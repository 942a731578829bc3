"""The lean text tower against open_clip + transformers, and noise that does not depend on its batch."""

import pytest
import torch

from t2ue import noise_from_text
from t2ue.data.sets import OPENCLIPART_DIR, openclipart_caption, svg_metadata
from t2ue.models.registry import ASSETS
from t2ue.models.surrogates import load_surrogate
from t2ue.models.text_encoders import BertTextEncoder, load_text_encoder

ODD = ["a cat", "Café  naïve résumé &amp; <b>bold</b> — “quotes”", "ÃƒÂ© mojibake and\ttabs\n\nnewlines", "日本語の説明",
       "an astronaut in a white spacesuit holding a helmet, with an American flag behind her " * 4,  # > 48 tokens
       "x", "🙂 emoji 🙂", "   leading and trailing   "]


@pytest.fixture(scope="module")
def captions():
    """Odd texts, then the human-written captions of 120 openclipart drawings (read from their SVGs)."""
    svgs = sorted((OPENCLIPART_DIR / "svg").rglob("*.svg"))[::60][:120]
    assert len(svgs) == 120
    return ODD + [openclipart_caption(svg_metadata(svg), svg.parent.name) for svg in svgs]


def test_the_bundled_model_uses_the_lean_tower():
    encoder = load_text_encoder(ASSETS / "default" / "surrogate")
    assert isinstance(encoder, BertTextEncoder) and encoder.embed_dim == 256 and encoder.token_dim == 384


def test_lean_tower_equals_open_clip_with_transformers_bit_for_bit(captions):
    lean = load_text_encoder(ASSETS / "default" / "surrogate")
    reference = load_surrogate("default")
    for text in captions:
        assert lean.token_ids(text) == reference.tokenize([text])[0].tolist(), text
    with torch.inference_mode():
        expected = torch.cat([reference.encode_text([text]) for text in captions])
    assert torch.equal(lean.encode(captions), expected)
    states, mask = lean.encode_tokens(captions[0])
    with torch.inference_mode():
        ref_states, ref_mask = reference.encode_text_tokens([captions[0]])
    assert torch.equal(states, ref_states) and torch.equal(mask, ref_mask)


def test_a_description_gets_the_same_noise_alone_or_in_any_batch(captions):
    texts = captions[:40]
    alone = torch.cat([noise_from_text([text], size=None) for text in texts])
    together = noise_from_text(texts, size=None)
    shuffled = noise_from_text(texts[::-1] + ["a much longer description that pads nothing, since none is padded"],
                               size=None)
    assert torch.equal(together, alone) and torch.equal(shuffled[:-1].flip(0), alone)
