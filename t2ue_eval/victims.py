"""Victim models, trained by one loop per kind with one recipe, and their clean-test evaluation.

A victim is what an exploiter trains on scraped (possibly protected) data:

* ``clip``: an open_clip CLIP trained from scratch (``arch``: a config in ``t2ue/configs`` or a JSON path);
* ``clip-finetune``: a given pretrained CLIP fine-tuned (``arch``: any surrogate spec, e.g.
  ``open_clip:ViT-B-32/openai`` or a folder);
* ``classifier``: a supervised torchvision ResNet-18 (``weights=None``) on the set's labels.

Clean and protected rows of a comparison must share the recipe exactly; :class:`VictimRecipe` is
recorded with every result and the report refuses to mix recipes in one table.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from t2ue.data.sets import ImageTextSet
from t2ue.training.losses import clip_loss
from t2ue.training.optim import cosine_with_warmup, update
from t2ue_eval.defenses import DefenseChain
from t2ue_eval.metrics import accuracy, confusion, retrieval_metrics

CONFIG_DIR = Path(__file__).parent / "configs"
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
KINDS = ("clip", "clip-finetune", "classifier")
DEFAULTS = {
    "clip": {"arch": "victim-vit-tiny", "epochs": 10, "batch_size": 128, "lr": 5e-4, "weight_decay": 0.1},
    "clip-finetune": {"arch": "default", "epochs": 5, "batch_size": 128, "lr": 1e-5, "weight_decay": 0.1},
    "classifier": {"arch": "resnet18", "epochs": 10, "batch_size": 128, "lr": 1e-3, "weight_decay": 5e-4},
}


@dataclass(frozen=True)
class VictimRecipe:
    """Everything that defines how a victim is trained; identical across the rows of a table."""

    kind: str = "clip"
    arch: str = "victim-vit-tiny"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_steps: int = 50

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"victim kind must be one of {KINDS}, got {self.kind!r}")

    @classmethod
    def for_kind(cls, kind: str, **overrides) -> VictimRecipe:
        """The default recipe of a kind, with any field overridden (``None`` values are ignored)."""
        if kind not in DEFAULTS:
            raise ValueError(f"victim kind must be one of {KINDS}, got {kind!r}")
        fields = {**DEFAULTS[kind], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(kind=kind, **fields)

    @classmethod
    def parse(cls, spec: str, **overrides) -> VictimRecipe:
        """``clip:victim-rn-tiny``, ``classifier:resnet18``, ``clip-finetune:open_clip:ViT-B-32/openai``…"""
        kind, _, arch = spec.partition(":")
        return cls.for_kind(kind, arch=arch or None, **overrides)

    def as_dict(self) -> dict:
        return asdict(self)

    def label(self) -> str:
        return f"{self.kind}:{self.arch}"


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def victim_config(arch: str) -> dict:
    """An open_clip model config by name (``t2ue/configs/NAME.json``) or by path."""
    path = Path(arch) if Path(arch).is_file() else CONFIG_DIR / f"{arch}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no victim config {arch!r}; available: {sorted(p.stem for p in CONFIG_DIR.glob('victim-*'))}")
    return json.loads(path.read_text())


class ScratchCLIP(nn.Module):
    """An open_clip CLIP with random weights and open_clip's bundled BPE tokenizer (offline)."""

    def __init__(self, arch: str):
        super().__init__()
        import open_clip

        cfg = victim_config(arch)
        self.model = open_clip.CLIP(**cfg)
        self.tokenizer = open_clip.SimpleTokenizer(context_length=cfg["text_cfg"]["context_length"])
        self.image_size = int(cfg["vision_cfg"]["image_size"])
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.model.logit_scale

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.shape[-1] != self.image_size:
            pixels = F.interpolate(pixels, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                                   align_corners=False)
        return self.model.encode_image((pixels - self.mean) / self.std, normalize=True)

    def encode_texts(self, captions: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(captions).to(self.mean.device), normalize=True)


class PretrainedCLIP(nn.Module):
    """A pretrained CLIP (any surrogate spec) unfrozen for fine-tuning; its own preprocessing and tokenizer."""

    def __init__(self, spec: str):
        super().__init__()
        from t2ue.models.surrogates import load_surrogate

        self.surrogate = load_surrogate(spec)
        self.surrogate.train()
        for param in self.surrogate.parameters():
            param.requires_grad_(True)

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.surrogate.model.logit_scale

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.surrogate.encode_image(pixels, normalize=True)

    def encode_texts(self, captions: list[str]) -> torch.Tensor:
        return self.surrogate.encode_text(captions, normalize=True)


class Classifier(nn.Module):
    """torchvision ResNet-18, randomly initialised, on normalised pixels."""

    def __init__(self, arch: str, num_classes: int):
        super().__init__()
        import torchvision

        if arch != "resnet18":
            raise ValueError(f"classifier victims: resnet18 only, got {arch!r}")
        self.net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net((pixels - self.mean) / self.std)


def build_victim(recipe: VictimRecipe, num_classes: int = 0) -> nn.Module:
    if recipe.kind == "clip":
        return ScratchCLIP(recipe.arch)
    if recipe.kind == "clip-finetune":
        return PretrainedCLIP(recipe.arch)
    if num_classes < 2:
        raise ValueError("a classifier victim needs a labelled set with at least two classes")
    return Classifier(recipe.arch, num_classes)


def _pixels(images: torch.Tensor, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, 3) rows to float (B, 3, H, W) in [0, 1] on ``device``."""
    batch = images[torch.as_tensor(idx, device=images.device)]
    return batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)


def classifier_losses(model: nn.Module, labels: torch.Tensor):
    """Per-example cross-entropy of a batch's pixels against its labels."""
    return lambda pixels, frozen=False: F.cross_entropy(model(pixels), labels, reduction="none")


def clip_losses(model: nn.Module, captions: list[str]):
    """Per-pair InfoNCE of a batch's pixels against its captions (text encoded once; ``frozen``: no
    gradient into the text tower, as an attack on the pixels needs)."""
    text = model.encode_texts(captions)

    def loss(pixels: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        return clip_loss(model.encode_images(pixels), text.detach() if frozen else text, model.logit_scale.exp(),
                         keys=captions, reduction="none")

    return loss


def train_victim(data: ImageTextSet, recipe: VictimRecipe, *, seed: int = 0, device: str = "auto",
                 progress: bool = True, defense: DefenseChain | None = None) -> tuple[nn.Module, dict]:
    """Train a victim on uint8 images (N, H, W, 3) with captions (and labels for a classifier); a
    training-time ``defense`` (augmentation, worst-of-copies, adversarial training) changes the loss."""
    dev = pick_device(device)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    augment_rng = torch.Generator().manual_seed(seed + 0xDEF)
    defense = defense if defense is not None and defense.trains else None
    num_classes = len(data.class_names) if data.labels is not None else 0
    model = build_victim(recipe, num_classes).to(dev)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    n = len(data)
    bs = min(recipe.batch_size, n)
    per_epoch = max(1, n // bs)
    total = recipe.epochs * per_epoch
    sched = cosine_with_warmup(opt, recipe.warmup_steps, total)
    images = torch.from_numpy(np.ascontiguousarray(data.images))
    images = images.to(dev) if dev.type == "cuda" else images
    labels = None if data.labels is None else torch.as_tensor(data.labels, device=dev)
    caption_sets = data.caption_sets or [[c] for c in data.captions]
    started, losses = time.time(), []
    bar = tqdm(total=total, disable=not progress, desc=f"victim {recipe.label()}", leave=False)
    for _ in range(recipe.epochs):
        order = rng.permutation(n)
        for i in range(per_epoch):
            idx = order[i * bs : (i + 1) * bs]
            pixels = _pixels(images, idx, dev)
            if recipe.kind == "classifier":
                loss_fn = classifier_losses(model, labels[torch.as_tensor(idx, device=dev)])
            else:
                loss_fn = clip_losses(model, [caption_sets[j][rng.integers(len(caption_sets[j]))] for j in idx])
            loss = loss_fn(pixels).mean() if defense is None else defense.training_loss(loss_fn, pixels, augment_rng)
            losses.append(update(model, opt, sched, loss))
            bar.update(1)
    bar.close()
    model.eval()
    log = {"train_seconds": round(time.time() - started, 1), "train_steps": total,
           "final_loss": float(np.mean(losses[-per_epoch:])), "device": str(dev)}
    return model, log


def _majority(labels: np.ndarray, num_classes: int) -> float:
    """What one constant answer (the most frequent class) scores on these labels."""
    counts = np.bincount(labels, minlength=num_classes)
    return float(counts.max() / counts.sum())


@torch.no_grad()
def evaluate_victim(model: nn.Module, recipe: VictimRecipe, test: ImageTextSet, *, batch_size: int = 256) -> dict:
    """Metrics on the clean test set: retrieval (and zero-shot accuracy on labelled sets) for CLIPs,
    top-1 accuracy and the confusion matrix for classifiers; each with its random-guess value."""
    dev = next(model.parameters()).device
    images = torch.from_numpy(np.ascontiguousarray(test.images))
    chunks = [np.arange(i, min(i + batch_size, len(test))) for i in range(0, len(test), batch_size)]
    labels = None if test.labels is None else np.asarray(test.labels)
    if recipe.kind == "classifier":
        logits = torch.cat([model(_pixels(images, idx, dev)).float().cpu() for idx in chunks])
        return {"accuracy": accuracy(logits, labels), "random_accuracy": 1.0 / logits.shape[1],
                "majority_accuracy": _majority(labels, logits.shape[1]), "confusion": confusion(logits, labels)}
    img = torch.cat([model.encode_images(_pixels(images, idx, dev)).float().cpu() for idx in chunks])
    captions, owner = test.all_captions()
    txt = torch.cat([model.encode_texts(captions[i : i + batch_size]).float().cpu()
                     for i in range(0, len(captions), batch_size)])
    metrics = retrieval_metrics(img, txt, owner)
    metrics["distinct_caption_fraction"] = len(set(captions)) / len(captions)
    if labels is not None and len(test.class_names) >= 2:
        templates = test.meta.get("templates") or ("a photo of a {}",)
        classes = []
        for name in test.class_names:
            emb = model.encode_texts([t.format(name) for t in templates]).float().cpu().mean(dim=0)
            classes.append(F.normalize(emb, dim=-1))
        metrics["zeroshot_accuracy"] = accuracy(img @ torch.stack(classes).T, labels)
        metrics["random_zeroshot_accuracy"] = 1.0 / len(test.class_names)
        metrics["majority_zeroshot_accuracy"] = _majority(labels, len(test.class_names))
    return metrics
