"""The published image-based protections, reimplemented for the evaluator (each needs the photos).

* ``em``: error-minimising noise (Huang et al., ICLR 2021). Bilevel min-min: a fresh source model
  and the noise are trained in turns — a few model steps on the protected data, then PGD steps that
  *lower* the loss of every image — until the source model's training error is near zero. Sample-wise
  (one δ per image) or class-wise (one δ per label); contrastive CLIP loss for image–text data,
  cross-entropy for classifiers.
  ``against=ueraser`` (or ``strong-aug``) runs both minimisations under the exploiter's training-time
  defense — the source model learns through it and the noise lowers the loss of the augmented copies
  (the worst of ``copies`` for UEraser), an adaptive EM that knows the defense in advance.
* ``salm``: the same min-min, but each image's perturbation lives only on its most salient pixels
  (largest loss gradient), a ``keep`` share of them, under the same L∞ budget: a sparse, local mask.
* ``cuda``: convolution-based unlearnable data (Sadasivan et al., CVPR 2023): every class gets private
  random 3×3 filters per colour channel, drawn from a key; its images are convolved with them. Not an
  L∞ budget: its cost to image quality shows in PSNR/SSIM.

Generation cost is recorded as gradient evaluations per image (noise steps plus source-model steps),
so it compares directly with T2UE, whose protection needs none.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from t2ue.data.sets import ImageTextSet
from t2ue.training.optim import cosine_with_warmup, update
from t2ue_eval.defenses import DefenseChain, parse_defense
from t2ue_eval.protection import Noise, ProtectionMethod, method_noise, to_levels
from t2ue_eval.triggers import Triggers
from t2ue_eval.victims import Classifier, ScratchCLIP, classifier_losses, clip_losses, pick_device


def _source_model(loss: str, source: str, num_classes: int, device: torch.device):
    """The min-min source model, fresh (``auto``: a tiny ResNet-tower CLIP for the contrastive loss, a
    ResNet-18 for cross-entropy), with the optimiser settings of its kind."""
    if loss == "clip":
        model = ScratchCLIP("victim-rn-tiny" if source == "auto" else source).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.1)
    elif loss == "ce":
        if num_classes < 2:
            raise ValueError("cross-entropy error-minimising noise needs a labelled set")
        model = Classifier("resnet18" if source == "auto" else source, num_classes).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    else:
        raise ValueError(f"em loss must be clip or ce, got {loss!r}")
    return model, opt


def _batch_loss(model, loss: str, pixels: torch.Tensor, captions: list[str], labels: torch.Tensor,
                against: DefenseChain | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """The batch's mean loss, under the training-time defense ``against`` when one is given."""
    per_example = classifier_losses(model, labels) if loss == "ce" else clip_losses(model, captions)
    return per_example(pixels).mean() if against is None else against.training_loss(per_example, pixels, generator)


def training_defense(against: str, copies: int) -> DefenseChain | None:
    """The exploiter's training-time defense an adaptive EM runs under (``none``: plain EM)."""
    if against == "none":
        return None
    if against not in ("ueraser", "strong-aug"):
        raise ValueError(f"em against= must be none, ueraser or strong-aug, got {against!r}")
    if copies < 1:
        raise ValueError(f"em copies= must be at least 1, got {copies}")
    return parse_defense(f"ueraser:copies={copies}" if against == "ueraser" else against)


@torch.no_grad()
def _training_error(model, loss: str, pixels_of, captions: list[str], labels: torch.Tensor, batch_size: int) -> float:
    """The source model's error on the protected training set: misclassified share (ce), or the share
    of images whose best-matching caption in their batch is not theirs (clip)."""
    model.eval()
    wrong, n = 0, len(captions)
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(n, start + batch_size))
        pixels = pixels_of(idx)
        if loss == "ce":
            wrong += int((model(pixels).argmax(1) != labels[idx]).sum())
        else:
            chunk = [captions[i] for i in idx]
            best = (model.encode_images(pixels) @ model.encode_texts(chunk).T).argmax(1).tolist()
            wrong += sum(chunk[b] != chunk[i] for i, b in enumerate(best))
    model.train()
    return wrong / n


def error_minimising(data: ImageTextSet, epsilon: float, seed: int, *, loss: str = "clip", mode: str = "sample",
                     source: str = "auto", train_steps: int = 10, attack_steps: int = 20,
                     max_rounds: int = 20, stop_error: float = 0.01, batch_size: int = 128, keep: float = 1.0,
                     against: DefenseChain | None = None, trigger_tokens: int = 0, trigger_search: bool = False,
                     device: str = "auto") -> tuple[torch.Tensor, np.ndarray, dict, list[str] | None]:
    """Min-min noise (U, 3, H, W) with each image's pattern index, a cost log and, with triggers, the
    captions to post; ``keep`` < 1 masks every image's update to its most salient pixels (SALM);
    ``against`` runs both minimisations under a training-time defense (fresh augmentations at every step).

    ``trigger_tokens`` > 0 is MEM: each sample gets a caption trigger of that many words
    (:class:`~t2ue_eval.triggers.Triggers`; searched HotFlip-style with ``trigger_search``, else random and
    kept); the source model trains on the triggered captions, and each image's noise is fitted against
    *other* captions carrying its trigger (a fresh pairing every round), so that it encodes the trigger
    rather than the picture's content."""
    dev = pick_device(device)
    torch.manual_seed(seed)
    augment = torch.Generator().manual_seed(seed + 0xA06)
    rng = np.random.default_rng(seed)
    n = len(data)
    if mode == "class" and data.labels is None:
        raise ValueError(f"class-wise error-minimising noise needs labels; the set {data.name!r} has none")
    if mode not in ("sample", "class"):
        raise ValueError(f"em mode must be sample or class, got {mode!r}")
    labels = torch.as_tensor(np.asarray(data.labels if data.labels is not None else np.zeros(n)), device=dev).long()
    num_classes = len(data.class_names) if data.labels is not None else 0
    model, opt = _source_model(loss, source, num_classes, dev)
    model.train()
    images = torch.from_numpy(np.ascontiguousarray(data.images)).to(dev).permute(0, 3, 1, 2)
    owner = labels if mode == "class" else torch.arange(n, device=dev)
    patterns = num_classes if mode == "class" else n
    shape = (patterns, *images.shape[1:])
    delta = torch.zeros(shape, device=dev) if keep < 1 else (torch.rand(shape, device=dev) * 2 - 1) * epsilon
    captions = list(data.captions)
    triggers = None
    if trigger_tokens:
        if loss != "clip" or mode != "sample" or against is not None:
            raise ValueError("caption triggers (mem) are for sample-wise noise with the contrastive loss")
        triggers = Triggers(model.tokenizer, n, trigger_tokens, seed)
    posted = (lambda: triggers.all(list(data.captions))) if triggers else (lambda: list(data.captions))
    bs, alpha = min(batch_size, n), epsilon / 10
    sched = cosine_with_warmup(opt, 0, max_rounds * train_steps)

    def protected(idx: np.ndarray) -> torch.Tensor:
        rows = torch.as_tensor(idx, device=dev)
        return (images[rows].float() / 255 + delta[owner[rows]]).clamp(0, 1)

    noise_grads = model_grads = rounds = 0
    copies = 1 if against is None else against.copies  # gradient evaluations per example and step
    error = 1.0
    started = time.perf_counter()
    for _ in range(max_rounds):
        rounds += 1
        captions = posted()
        bound = captions
        if triggers is not None:  # MEM: each image's noise meets its trigger on another sample's caption
            other = rng.permutation(n)
            bound = [triggers.caption(i, data.captions[other[i]]) for i in range(n)]
        for _ in range(train_steps):  # the outer min: the source model learns the protected data
            idx = rng.choice(n, bs, replace=False)
            update(model, opt, sched, _batch_loss(model, loss, protected(idx), [captions[i] for i in idx],
                                                  labels[idx], against, augment))
            model_grads += bs * copies
        model.eval()
        for batch in np.array_split(rng.permutation(n), max(1, n // bs)):  # the inner min: every image's noise
            rows = torch.as_tensor(batch, device=dev)
            if mode == "class":
                targets, inverse = torch.unique(owner[rows], return_inverse=True)
            else:
                targets, inverse = owner[rows], torch.arange(len(batch), device=dev)
            clean, chunk, mask = images[rows].float() / 255, [bound[i] for i in batch], None
            for step in range(attack_steps):
                noise = delta[targets].clone().requires_grad_(True)
                value = _batch_loss(model, loss, (clean + noise[inverse]).clamp(0, 1), chunk, labels[rows],
                                    against, augment)
                (grad,) = torch.autograd.grad(value, [noise])
                if keep < 1 and step == 0:  # SALM: each image's most salient pixels, chosen once a round
                    mask = _salient_mask(grad, keep)
                    delta[targets] *= mask
                direction = grad.sign() if mask is None else grad.sign() * mask
                delta[targets] = (delta[targets] - alpha * direction).clamp(-epsilon, epsilon)
                noise_grads += len(batch) * copies
            if triggers is not None and trigger_search:
                with torch.no_grad():
                    features = model.encode_images((clean + delta[targets][inverse]).clamp(0, 1))
                triggers.hotflip(model, batch, chunk, features, rng)
                noise_grads += len(batch)
        model.train()
        captions = posted()
        error = _training_error(model, loss, protected, captions, labels, bs)
        if error < stop_error:
            break
    clean = _training_error(model, loss, lambda idx: images[torch.as_tensor(idx, device=dev)].float() / 255,
                            captions, labels, bs)
    log = {"rounds": rounds, "final_training_error": round(error, 4), "clean_training_error": round(clean, 4),
           "seconds": time.perf_counter() - started,
           "gradient_steps_per_image": (noise_grads + model_grads) / n, "device": str(dev),
           "against": "none" if against is None else against.spec()}
    if triggers is not None:
        log["trigger_examples"] = [triggers.text(i) for i in range(min(5, n))]
    return delta.cpu(), owner.cpu().numpy().astype(np.int64), log, (posted() if triggers else None)


def _salient_mask(grad: torch.Tensor, keep: float) -> torch.Tensor:
    """(B, 1, H, W) ones on each image's top ``keep`` share of pixels by gradient magnitude."""
    saliency = grad.abs().sum(dim=1).flatten(1)
    count = max(1, int(round(keep * saliency.shape[1])))
    threshold = saliency.topk(count, dim=1).values[:, -1:]
    return (saliency >= threshold).float().view(grad.shape[0], 1, *grad.shape[2:])


class ErrorMinimising(ProtectionMethod):
    """Error-minimising noise (Huang et al. 2021): bilevel min-min with a fresh source model."""

    name = "em"
    needs_photo = True
    defaults = {"loss": "clip", "mode": "sample", "source": "auto", "attack_steps": "20",
                "train_steps": "10", "max_rounds": "20", "stop_error": "0.01", "against": "none", "copies": "2"}
    keep = 1.0  # share of each image's pixels the noise may touch (SALM lowers it)

    def spec(self) -> str:
        """Canonical spec; ``against`` and ``copies`` are left out while EM is plain, so runs made
        before adaptive EM existed keep their names."""
        shown = {k: v for k, v in self.params.items()
                 if self.params["against"] != "none" or k not in ("against", "copies")}
        return f"{self.name}:" + ",".join(f"{k}={v}" for k, v in sorted(shown.items()))

    def noise(self, data: ImageTextSet, epsilon: float, seed: int) -> Noise:
        p = self.params
        delta, index, log, _ = error_minimising(
            data, epsilon, seed, loss=p["loss"], mode=p["mode"], source=p["source"], train_steps=int(p["train_steps"]),
            attack_steps=int(p["attack_steps"]), max_rounds=int(p["max_rounds"]), stop_error=float(p["stop_error"]),
            keep=self.keep, against=training_defense(p["against"], int(p["copies"])))
        return Noise(to_levels(delta.permute(0, 2, 3, 1).numpy()), index, seconds=log["seconds"],
                     gradient_steps=int(round(log["gradient_steps_per_image"] * len(data))), log=log)


class MultimodalErrorMinimising(ProtectionMethod):
    """MEM (Liu et al. 2024): error-minimising noise bound to a caption trigger of ``tokens`` words per
    sample, the trigger ``random`` (drawn and kept) or ``hotflip`` (searched); the victim trains on the
    protected picture with its triggered caption. ``noise=false`` posts the same triggered captions with
    clean pictures: the trigger-only control."""

    name = "mem"
    needs_photo = True
    defaults = {"trigger": "random", "tokens": "3", "attack_steps": "10", "train_steps": "10",
                "max_rounds": "40", "stop_error": "0.01", "noise": "true"}

    def __init__(self, **params):
        super().__init__(**params)
        if self.params["trigger"] not in ("random", "hotflip") or self.params["noise"] not in ("true", "false"):
            raise ValueError(f"mem takes trigger=random|hotflip and noise=true|false, got {self.spec()!r}")

    def noise(self, data: ImageTextSet, epsilon: float, seed: int) -> Noise:
        p = self.params
        if p["noise"] == "false":  # the same triggers, posted with the clean pictures
            made, _ = method_noise(MultimodalErrorMinimising(**{**p, "noise": "true"}), data, epsilon, seed)
            return Noise(np.zeros_like(made.levels[:1]), np.zeros(len(data), np.int64), captions=made.captions,
                         log={"trigger_of": "mem with noise", **{k: v for k, v in made.log.items() if "trigger" in k}})
        delta, index, log, posted = error_minimising(
            data, epsilon, seed, loss="clip", mode="sample", train_steps=int(p["train_steps"]),
            attack_steps=int(p["attack_steps"]), max_rounds=int(p["max_rounds"]), stop_error=float(p["stop_error"]),
            trigger_tokens=int(p["tokens"]), trigger_search=p["trigger"] == "hotflip")
        return Noise(to_levels(delta.permute(0, 2, 3, 1).numpy()), index, seconds=log["seconds"],
                     gradient_steps=int(round(log["gradient_steps_per_image"] * len(data))), log=log, captions=posted)


class SparseLocalMask(ErrorMinimising):
    """SALM: sample-wise min-min noise on each image's ``keep`` most salient pixels only."""

    name = "salm"
    defaults = {**ErrorMinimising.defaults, "keep": "0.1"}

    def __init__(self, **params):
        super().__init__(**params)
        if self.params["mode"] != "sample":
            raise ValueError("salm is sample-wise (a mask per image)")
        self.keep = float(self.params["keep"])


def cuda_filters(num_classes: int, key: int, blur: float = 0.3, size: int = 3) -> torch.Tensor:
    """Private per-class, per-channel filters (C, 3, 1, k, k): off-centre weights uniform in [0, blur],
    centre 1, each normalised to sum to one."""
    rng = np.random.default_rng([key, 0xC0DA])
    filters = rng.uniform(0, blur, size=(num_classes, 3, 1, size, size))
    filters[..., size // 2, size // 2] = 1.0
    return torch.from_numpy(filters / filters.sum(axis=(-1, -2), keepdims=True)).float()


class ConvolutionalUnlearnable(ProtectionMethod):
    """CUDA (Sadasivan et al. 2023): each class's images convolved with its private random filters."""

    name = "cuda"
    needs_photo = True
    defaults = {"blur": "0.3", "size": "3"}

    def noise(self, data: ImageTextSet, epsilon: float, seed: int) -> Noise:
        if data.labels is None:
            raise ValueError(f"cuda is class-wise and needs labels; the set {data.name!r} has none")
        started = time.perf_counter()
        size = int(self.params["size"])
        filters = cuda_filters(len(data.class_names), seed, float(self.params["blur"]), size)
        labels = np.asarray(data.labels)
        levels = np.empty(data.images.shape, dtype=np.int16)
        for start in range(0, len(data), 1024):
            rows = slice(start, start + 1024)
            x = torch.from_numpy(np.ascontiguousarray(data.images[rows])).permute(0, 3, 1, 2).float()
            padded = F.pad(x, (size // 2,) * 4, mode="reflect")
            weights = filters[torch.as_tensor(labels[rows])]  # (B, 3, 1, k, k): one grouped conv per image
            out = F.conv2d(padded.reshape(1, -1, *padded.shape[2:]), weights.reshape(-1, 1, size, size),
                           groups=weights.shape[0] * 3).view_as(x)
            levels[rows] = (out.round().clamp(0, 255) - x).permute(0, 2, 3, 1).numpy().astype(np.int16)
        return Noise(levels, np.arange(len(data)), seconds=time.perf_counter() - started)
