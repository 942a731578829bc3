"""Victim models, trained from scratch by one loop with one recipe, and their clean-test evaluation.

A victim is what an exploiter trains on scraped (possibly protected) data. Clean and protected rows of
a comparison must share the recipe exactly; :class:`VictimRecipe` is recorded with every result.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
from tqdm.auto import tqdm

from .data import ImageTextSet
from .losses import clip_loss
from .metrics import retrieval_metrics
from .optim import clip_step, cosine_with_warmup

CONFIG_DIR = Path(__file__).parent / "configs"
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@dataclass(frozen=True)
class VictimRecipe:
    """Everything that defines how a victim CLIP is trained; identical across the rows of a table."""

    arch: str = "victim-vit-tiny"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_steps: int = 50

    def as_dict(self) -> dict:
        return asdict(self)


def victim_config(arch: str) -> dict:
    """An open_clip model config by name (``t2ue/configs/NAME.json``) or by path."""
    path = Path(arch) if Path(arch).is_file() else CONFIG_DIR / f"{arch}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no victim config {arch!r}; available: {sorted(p.stem for p in CONFIG_DIR.glob('victim-*'))}")
    return json.loads(path.read_text())


def build_victim(arch: str) -> tuple[torch.nn.Module, object]:
    """A randomly initialised open_clip CLIP and its tokenizer (open_clip's bundled BPE, offline)."""
    cfg = victim_config(arch)
    model = open_clip.CLIP(**cfg)
    tokenizer = open_clip.SimpleTokenizer(context_length=cfg["text_cfg"]["context_length"])
    return model, tokenizer


def _normalise(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def train_clip_victim(data: ImageTextSet, recipe: VictimRecipe, seed: int = 0, progress: bool = True,
                      ) -> tuple[torch.nn.Module, object, dict]:
    """Train a CLIP victim from scratch on uint8 images (N, H, W, 3) and captions; return model, tokenizer, log."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model, tokenizer = build_victim(recipe.arch)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    n = len(data)
    bs = min(recipe.batch_size, n)
    per_epoch = max(1, n // bs)
    total = recipe.epochs * per_epoch
    sched = cosine_with_warmup(opt, recipe.warmup_steps, total)
    tokens = tokenizer(data.captions)
    model.train()
    started, losses = time.time(), []
    bar = tqdm(total=total, disable=not progress, desc=f"victim {recipe.arch}", leave=False)
    for _ in range(recipe.epochs):
        order = rng.permutation(n)
        for i in range(per_epoch):
            idx = order[i * bs : (i + 1) * bs]
            img = model.encode_image(_normalise(data.images[idx]), normalize=True)
            txt = model.encode_text(tokens[idx], normalize=True)
            loss = clip_loss(img, txt, model.logit_scale.exp(), keys=[data.captions[j] for j in idx])
            losses.append(clip_step(model, opt, sched, loss))
            bar.update(1)
    bar.close()
    model.eval()
    return model, tokenizer, {"train_seconds": round(time.time() - started, 1), "final_loss": float(np.mean(losses[-per_epoch:]))}


@torch.no_grad()
def evaluate_clip_victim(model: torch.nn.Module, tokenizer, data: ImageTextSet, batch_size: int = 256) -> dict:
    """Retrieval on (clean) test data; captions may repeat across images (each caption is its own entry)."""
    img = torch.cat([model.encode_image(_normalise(data.images[i : i + batch_size]), normalize=True)
                     for i in range(0, len(data), batch_size)])
    txt = torch.cat([model.encode_text(tokenizer(data.captions[i : i + batch_size]), normalize=True)
                     for i in range(0, len(data), batch_size)])
    return retrieval_metrics(img, txt, np.arange(len(data)))
