"""Text encoders of noise models: what turns a description into the embedding the generator reads.

Two kinds behind one interface (:class:`TextEncoder`):

* :class:`BertTextEncoder` — the text tower of an open_clip folder whose text side is a Hugging Face
  BERT (the bundled surrogate's locked MiniLM, mean-pooled and projected), run by a small BERT of our
  own with the ``tokenizers`` library. It gives the same embeddings, bit for bit, as open_clip with
  transformers (``tests/product/test_text_encoders.py``), without importing either: those two imports
  cost more than torch itself, and protecting a photo needs only this tower
  (``eval/bench_cold_start.py``).
* :class:`SurrogateTextEncoder` — any surrogate CLIP (:mod:`t2ue.models.surrogates`: open_clip names and
  folders, Hugging Face CLIP folders), for noise models trained against one; needs ``t2ue[train]``.

Both encode each description on its own (:func:`one_at_a_time`), never padded to another's length nor
batched with it, so a description's embedding does not depend on what else is encoded with it.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from t2ue.models.open_clip_folder import OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS, resolve_text_tower
from t2ue.models.registry import ASSETS


def one_at_a_time(rows: torch.Tensor, fn) -> torch.Tensor:
    """``fn`` over each row of ``rows`` on its own: a row's result never depends on the rows beside it
    (CPU kernels round differently for other batch sizes, which moves noise by ~1e-7 and now and then a
    pixel by a level)."""
    return torch.cat([fn(rows[i:i + 1]) for i in range(len(rows))])


class TextEncoder(nn.Module):
    """Descriptions to unit embeddings (N, D); ``source`` says where the weights came from."""

    source: str = ""

    def encode(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def encode_tokens(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token states (1, L, D) of one description and their mask (1, L), for cross-attention."""
        raise NotImplementedError

    @property
    def embed_dim(self) -> int:
        raise NotImplementedError

    @property
    def token_dim(self) -> int:
        raise NotImplementedError


class _BertLayer(nn.Module):
    """One post-norm BERT encoder layer, with the operations in transformers' order."""

    def __init__(self, width: int, heads: int, inner: int, eps: float):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(width, width) for _ in range(3))
        self.attention_out = nn.Linear(width, width)
        self.attention_norm = nn.LayerNorm(width, eps=eps)
        self.up = nn.Linear(width, inner)
        self.down = nn.Linear(inner, width)
        self.out_norm = nn.LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        head = width // self.heads
        shape = (batch, length, -1, head)
        q, k, v = (proj(x).view(shape).transpose(1, 2) for proj in (self.query, self.key, self.value))
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, scale=head**-0.5)
        attended = attended.transpose(1, 2).contiguous().reshape(batch, length, -1).contiguous()
        x = self.attention_norm(self.attention_out(attended) + x)
        return self.out_norm(self.down(F.gelu(self.up(x))) + x)


class BertTower(nn.Module):
    """A BERT encoder (embeddings and layers, no pooler) for unpadded token ids, from a Hugging Face folder
    (``config.json`` + ``model.safetensors``)."""

    _RENAMES = (("embeddings.word_embeddings", "words"), ("embeddings.position_embeddings", "positions"),
                ("embeddings.token_type_embeddings", "token_types"), ("embeddings.LayerNorm", "norm"),
                ("encoder.layer.", "layers."), ("attention.self.query", "query"), ("attention.self.key", "key"),
                ("attention.self.value", "value"), ("attention.output.dense", "attention_out"),
                ("attention.output.LayerNorm", "attention_norm"), ("intermediate.dense", "up"),
                ("output.dense", "down"), ("output.LayerNorm", "out_norm"))

    def __init__(self, config: dict):
        super().__init__()
        width, eps = config["hidden_size"], config["layer_norm_eps"]
        self.words = nn.Embedding(config["vocab_size"], width)
        self.positions = nn.Embedding(config["max_position_embeddings"], width)
        self.token_types = nn.Embedding(config["type_vocab_size"], width)
        self.norm = nn.LayerNorm(width, eps=eps)
        self.layers = nn.ModuleList(_BertLayer(width, config["num_attention_heads"], config["intermediate_size"], eps)
                                    for _ in range(config["num_hidden_layers"]))

    @staticmethod
    def supports(config: dict) -> bool:
        """Whether a Hugging Face config is a BERT this tower runs as transformers does."""
        return (config.get("model_type") == "bert" and config.get("hidden_act") == "gelu"
                and config.get("position_embedding_type", "absolute") == "absolute")

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> BertTower:
        folder = Path(folder)
        tower = cls(json.loads((folder / "config.json").read_text()))
        return tower.load_hf_state(load_file(str(folder / "model.safetensors")))

    def load_hf_state(self, state: dict[str, torch.Tensor]) -> BertTower:
        """Load weights named as transformers' ``BertModel`` names them (pooler and buffers left out)."""
        renamed = {}
        for name, tensor in state.items():
            name = name.removeprefix("bert.")
            if name.startswith("pooler.") or name.endswith("position_ids"):
                continue
            for old, new in self._RENAMES:
                name = name.replace(old, new)
            renamed[name] = tensor
        self.load_state_dict(renamed)  # copies into the module's own (aligned) storage
        return self.eval()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)[None]
        x = self.words(ids) + self.token_types(torch.zeros_like(positions).expand_as(ids))
        x = self.norm(x + self.positions(positions))
        for layer in self.layers:
            x = layer(x)
        return x


def _clean(text: str) -> str:
    """open_clip's text cleaning for Hugging Face tokenizers: fix mojibake, unescape HTML, one space."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split())


class BertTextEncoder(TextEncoder):
    """An open_clip text tower made of a Hugging Face BERT, pooled and projected: the bundled surrogate's."""

    def __init__(self, tower: BertTower, tokenizer, context_length: int, pooler: str, projection: nn.Module,
                 source: str):
        super().__init__()
        self.tower, self.tokenizer, self.pooler, self.projection = tower, tokenizer, pooler, projection
        self.context_length = context_length
        self.source = source

    @staticmethod
    def supports(text_cfg: dict) -> bool:
        """Whether an open_clip ``text_cfg`` describes a tower this class runs."""
        folder = Path(resolve_text_tower(text_cfg.get("hf_model_name", "")))
        tokenizer = Path(resolve_text_tower(text_cfg.get("hf_tokenizer_name", text_cfg.get("hf_model_name", ""))))
        if not ((folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
                and (tokenizer / "tokenizer.json").is_file()):
            return False
        return (BertTower.supports(json.loads((folder / "config.json").read_text()))
                and text_cfg.get("hf_pooler_type") in ("mean_pooler", "cls_pooler")
                and text_cfg.get("hf_proj_type", "linear") in ("linear", None)
                and text_cfg.get("context_length") is not None)

    @classmethod
    def from_open_clip_folder(cls, folder: str | os.PathLike) -> BertTextEncoder:
        from tokenizers import Tokenizer

        folder = Path(folder)
        config = json.loads((folder / OPEN_CLIP_CONFIG).read_text())
        text_cfg = config["model_cfg"]["text_cfg"]
        tower_folder = Path(resolve_text_tower(text_cfg["hf_model_name"]))
        tokenizer = Tokenizer.from_file(str(Path(resolve_text_tower(text_cfg.get("hf_tokenizer_name",
                                                                                 text_cfg["hf_model_name"])))
                                            / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(int(text_cfg["context_length"]))
        weights = load_file(str(folder / OPEN_CLIP_WEIGHTS))
        if text_cfg.get("hf_proj_type", "linear") == "linear":
            weight = weights["text.proj.weight"]
            projection = nn.Linear(weight.shape[1], weight.shape[0], bias="text.proj.bias" in weights)
            projection.load_state_dict({k.removeprefix("text.proj."): v for k, v in weights.items()
                                        if k.startswith("text.proj.")})
        else:
            projection = nn.Identity()
        tower = BertTower.from_pretrained(tower_folder)
        carried = {k.removeprefix("text.transformer."): v for k, v in weights.items() if k.startswith("text.transformer.")}
        if carried:  # a folder with all its weights carries its (maybe fine-tuned) tower too
            tower.load_hf_state(carried)
        return cls(tower, tokenizer, int(text_cfg["context_length"]), text_cfg["hf_pooler_type"], projection,
                   source=str(folder)).eval()

    def token_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(_clean(text)).ids

    def _pooled(self, states: torch.Tensor) -> torch.Tensor:
        if self.pooler == "cls_pooler":
            return states[:, 0]
        mask = torch.ones(states.shape[:2], dtype=torch.long, device=states.device)  # unpadded: every token counts
        return (states * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(-1, keepdim=True)

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> torch.Tensor:
        out = [F.normalize(self.projection(self._pooled(self.tower(torch.tensor([self.token_ids(text)])))), dim=-1)
               for text in texts]
        return torch.cat(out).float() if out else torch.empty(0, self.embed_dim)

    @torch.inference_mode()
    def encode_tokens(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.tensor([self.token_ids(text)], dtype=torch.long)
        return self.tower(ids), torch.ones_like(ids)

    @property
    def embed_dim(self) -> int:
        return int(self.projection.out_features) if isinstance(self.projection, nn.Linear) else self.token_dim

    @property
    def token_dim(self) -> int:
        return int(self.tower.words.embedding_dim)


class SurrogateTextEncoder(TextEncoder):
    """The text side of a loaded surrogate CLIP (:class:`~t2ue.models.surrogates.Surrogate`)."""

    def __init__(self, surrogate):
        super().__init__()
        self.surrogate = surrogate
        self.source = str(surrogate.source)

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> torch.Tensor:
        return torch.cat([self.surrogate.encode_text([text]).float().cpu() for text in texts])

    @torch.inference_mode()
    def encode_tokens(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.surrogate.encode_text_tokens([text])

    @property
    def embed_dim(self) -> int:
        return int(self.surrogate.embed_dim)

    @property
    def token_dim(self) -> int:
        return int(self.surrogate.token_dim)


def load_text_encoder(spec: str | os.PathLike) -> TextEncoder:
    """A noise model's text encoder: the lean BERT tower for an open_clip folder that has one (the bundled
    surrogate), else the whole surrogate (open_clip or Hugging Face; ``pip install 't2ue[train]'``)."""
    path = ASSETS / "default" / "surrogate" if str(spec) == "default" else Path(spec)  # the bundled surrogate
    if (path / OPEN_CLIP_CONFIG).is_file():
        text_cfg = json.loads((path / OPEN_CLIP_CONFIG).read_text())["model_cfg"].get("text_cfg", {})
        if BertTextEncoder.supports(text_cfg):
            return BertTextEncoder.from_open_clip_folder(path)
    try:
        from t2ue.models.surrogates import load_surrogate

        return SurrogateTextEncoder(load_surrogate(path if path.is_dir() else spec))
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(f"{spec}: this noise model's text encoder needs {err.name}; install it with "
                                  "pip install 't2ue[train]'") from err
