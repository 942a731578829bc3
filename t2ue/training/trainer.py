"""Train a noise generator against a frozen surrogate (the provider's job), through accelerate.

Objective (error-minimising, one level): minimise the symmetric InfoNCE between the surrogate's
f_I(x + delta) and f_T(t), delta = G(f_T(t), z). ``robust=True`` puts a random transformation between
the protected image and the surrogate at every step (expectation over JPEG, thumbnailing and blur —
and grayscale with ``eot="strong"`` — :func:`t2ue.training.transforms.random_transformation`), so the noise
learns to survive recompression; ``eot="ueraser"`` trains against the worst of two UEraser-augmented
copies instead.
The same command runs on the CPU, one GPU or several
(``accelerate launch``). Checkpoints hold the full training state and resume exactly.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from t2ue.data.sets import ImageTextSet, PairDataset
from t2ue.io.files import write_text
from t2ue.models.generators import NoiseGenerator
from t2ue.models.noise_model import NoiseModel
from t2ue.models.surrogates import Surrogate
from t2ue.models.text_encoders import SurrogateTextEncoder
from t2ue.training.losses import clip_loss
from t2ue.training.transforms import EOT_PRESETS, random_transformation


@dataclass
class TrainConfig:
    """Hyper-parameters of generator training (paper: Adam, lr 1e-4, batch 128)."""

    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-4
    seed: int = 0
    checkpoint_every: int = 250
    log_every: int = 10
    num_workers: int = 0  # DataLoader workers that decode images while the device trains
    mixed_precision: str | None = None  # no, fp16, bf16; None: what `accelerate launch` was given, else no
    robust: bool = False
    eot: str = "standard"  # with robust: a preset of t2ue.training.transforms.EOT_PRESETS


def _collate(batch):
    pixels, captions, index = zip(*batch)
    return torch.stack(pixels), list(captions), torch.tensor(index)


def _has_device() -> bool:
    """Whether torch sees an accelerator (CUDA, XPU, MPS, ...). Without one, accelerate must be told it
    runs on the CPU, or processes launched together (torchrun, ``accelerate launch --multi_gpu``) each
    train alone instead of as one data-parallel job over gloo."""
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


def _latest_checkpoint(output_dir: Path) -> Path | None:
    checkpoints = sorted((output_dir / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    return checkpoints[-1] if checkpoints else None


def train_generator(generator: NoiseGenerator, surrogate: Surrogate, data: ImageTextSet, output_dir: str | Path,
                    config: TrainConfig | None = None, *, resume: bool = True, surrogate_spec: str | None = None,
                    progress: bool = True) -> NoiseModel:
    """Train ``generator`` and save the noise model to ``output_dir`` (final model in ``output_dir/model``)."""
    config = config or TrainConfig()
    if config.eot not in EOT_PRESETS:
        raise ValueError(f"unknown EOT preset {config.eot!r}; choose from {sorted(EOT_PRESETS)}")
    eot = EOT_PRESETS[config.eot]
    output_dir = Path(output_dir)
    accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=not _has_device())
    set_seed(config.seed)
    surrogate = surrogate.freeze().to(accelerator.device)
    data = data.readable()
    loader = DataLoader(PairDataset(data, generator.resolution[0]), batch_size=config.batch_size, shuffle=True,
                        drop_last=len(data) >= config.batch_size, num_workers=config.num_workers,
                        collate_fn=_collate)
    optimizer = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=(0.5, 0.999))
    generator, optimizer, loader = accelerator.prepare(generator, optimizer, loader)
    unwrapped = accelerator.unwrap_model(generator)

    step = 0
    latest = _latest_checkpoint(output_dir) if resume else None
    if latest is not None:
        accelerator.load_state(str(latest))
        step = json.loads((latest / "t2ue_step.json").read_text())["step"]
        accelerator.print(f"resumed from {latest} at step {step}")
    log_path = output_dir / "train_log.jsonl"
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=config.steps, initial=step, disable=not (progress and accelerator.is_local_main_process),
               desc="train generator")
    scale = surrogate.logit_scale.detach()
    text_cache = TextEmbeddingCache(surrogate)
    generator.train()
    started = time.time()
    while step < config.steps:
        for pixels, captions, _ in loader:
            if step >= config.steps:
                break
            with torch.no_grad():
                text = text_cache(captions)
                tokens, mask = surrogate.encode_text_tokens(captions) if unwrapped.uses_tokens else (None, None)
            z = torch.randn((len(captions), *unwrapped.latent_shape()), device=pixels.device)
            delta = generator(text, z, tokens=tokens, mask=mask)
            protected = (pixels + delta).clamp(0, 1)
            copies = [protected]
            if config.robust:  # seeded by the step, so a resumed run draws the same transformations
                draw = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
                copies = [random_transformation(protected, draw, eot) for _ in range(eot.copies)]
            images = surrogate.encode_image(torch.cat(copies)).chunk(len(copies))
            losses = [clip_loss(image, text, scale, keys=captions, reduction="none") for image in images]
            loss = torch.stack(losses).amax(dim=0).mean()  # worst copy per pair (one copy: the mean loss)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if accelerator.is_main_process and (step % config.log_every == 0 or step == config.steps):
                with log_path.open("a") as handle:
                    handle.write(json.dumps({"step": step, "loss": round(loss.item(), 5),
                                             "seconds": round(time.time() - started, 1)}) + "\n")
            if step % config.checkpoint_every == 0 and step < config.steps:
                _save_checkpoint(accelerator, output_dir, step)
    bar.close()
    accelerator.wait_for_everyone()
    noise_model = NoiseModel(accelerator.unwrap_model(generator).eval(), SurrogateTextEncoder(surrogate),
                             text_encoder_spec=surrogate_spec,
                             metadata={"training": {**asdict(config), "mixed_precision": accelerator.mixed_precision,
                                                   "pairs": len(data), "dataset": data.name,
                                                   "skipped_files": len(data.meta.get("skipped", [])),
                                                   "processes": accelerator.num_processes}})
    if accelerator.is_main_process:
        noise_model.save_pretrained(output_dir / "model")
    return noise_model


class TextEmbeddingCache:
    """The frozen surrogate's text embeddings, computed once per distinct caption."""

    def __init__(self, surrogate: Surrogate, max_items: int = 200_000):
        self.surrogate, self.max_items, self.table = surrogate, max_items, {}

    def __call__(self, captions: list[str]) -> torch.Tensor:
        missing = [c for c in dict.fromkeys(captions) if c not in self.table]
        if missing:
            fresh = self.surrogate.encode_text(missing)
            if len(self.table) + len(missing) <= self.max_items:
                self.table.update(zip(missing, fresh))
            else:
                return self.surrogate.encode_text(captions)
        return torch.stack([self.table[c] for c in captions])


def _save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int) -> None:
    path = output_dir / "checkpoints" / f"step_{step}"
    accelerator.save_state(str(path), safe_serialization=True)
    if accelerator.is_main_process:
        write_text(path / "t2ue_step.json", json.dumps({"step": step}))


def heldout_loss(noise_model: NoiseModel, data: ImageTextSet, *, batch_size: int = 256, seed: int = 0,
                 protect: bool = True) -> float:
    """Mean surrogate InfoNCE over ``data``, on protected (default) or clean pixels."""
    surrogate = noise_model.surrogate
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            idx = list(range(start, min(len(data), start + batch_size)))
            captions = [data.captions[i] for i in idx]
            pixels = torch.stack([PairDataset(data, noise_model.resolution[0])[i][0] for i in idx])
            if protect:
                pixels = (pixels + noise_model.generate(captions, seed=seed)).clamp(0, 1)
            loss = clip_loss(surrogate.encode_image(pixels), surrogate.encode_text(captions),
                             surrogate.logit_scale, keys=captions)
            total += float(loss) * len(idx)
            count += len(idx)
    return total / max(count, 1)


__all__ = ["TrainConfig", "train_generator", "heldout_loss"]
