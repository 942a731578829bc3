"""The evaluator: protect a training split, train a victim from scratch on it, measure it on clean test data.

One run = one dataset, one protection method (budget, protected fraction), one victim recipe, one
seed; it writes one JSON. :func:`run_grid` expands a plan (a JSON file under ``eval/configs``) into runs,
skipping those already written, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from itertools import product
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from t2ue.budget import parse_epsilon
from t2ue.data.sets import ImageTextSet, fingerprint, load_dataset
from t2ue.io.files import write_text
from t2ue_eval.defenses import parse_defense
from t2ue_eval.metrics import contrastive_loss_floor, headline
from t2ue_eval.protection import ProtectionMethod, machine, method_noise
from t2ue_eval.registry import parse_method
from t2ue_eval.victims import VictimRecipe, build_victim, evaluate_victim, pick_device, train_victim
from t2ue_eval.views import VIEWS, exploiter_view

RUN_FORMAT = "t2ue-eval-run/1"


@dataclass(frozen=True)
class RunConfig:
    """Everything one evaluation run depends on."""

    dataset: str
    method: str = "none"
    victim: VictimRecipe = field(default_factory=VictimRecipe)
    seed: int = 0
    epsilon: str = "8/255"
    fraction: float = 1.0
    train_limit: int | None = None
    test_limit: int | None = None
    size: int = 64
    exploiter: str = "same"
    defense: str = "none"
    protector: str = "same"

    def __post_init__(self):
        for role in ("exploiter", "protector"):
            if getattr(self, role) not in VIEWS:
                raise ValueError(f"{role} view must be one of {VIEWS}, got {getattr(self, role)!r}")
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"protected fraction must be in [0, 1], got {self.fraction}")
        spec = parse_method(self.method).spec()
        object.__setattr__(self, "method", spec)
        object.__setattr__(self, "defense", parse_defense(self.defense).spec())
        if spec == "none":  # the clean row: no budget, nothing protected
            object.__setattr__(self, "epsilon", "0")
            object.__setattr__(self, "fraction", 1.0)
            object.__setattr__(self, "protector", "same")
        else:
            parse_epsilon(self.epsilon)  # a clear error for a malformed budget, before any work

    def as_dict(self) -> dict:
        """The configuration; the exploiter and protector views and the defense are recorded only when they
        are not the default (so the ids of runs made before they existed stay valid)."""
        out = {**asdict(self), "victim": self.victim.as_dict()}
        for role in ("exploiter", "protector"):
            if out[role] == "same":
                del out[role]
        if self.defense == "none":
            del out["defense"]
        return out

    def run_id(self) -> str:
        digest = hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:10]
        name = Path(self.dataset).stem if os.sep in self.dataset else self.dataset
        parts = [name, self.method.split(":")[0], *(["class"] if "mode=class" in self.method else []),
                 Path(self.victim.arch).stem, *([f"view-{self.exploiter}"] if self.exploiter != "same" else []),
                 *([f"prot-{self.protector}"] if self.protector != "same" else []),
                 *([f"def-{self.defense}"] if self.defense != "none" else []),
                 f"eps{self.epsilon}", f"frac{self.fraction:g}", f"seed{self.seed}", digest]
        return re.sub(r"[^A-Za-z0-9.+-]+", "_", "-".join(parts))


@lru_cache(maxsize=4)
def load_split(dataset: str, size: int, train_limit: int | None, test_limit: int | None,
               ) -> tuple[ImageTextSet, ImageTextSet]:
    """The victim_train and test parts of a set, decoded at ``size`` (kept for the next run)."""
    train = load_dataset(dataset, size, part="victim_train", limit=train_limit).materialize(size)
    test = load_dataset(dataset, size, part="test", limit=test_limit).materialize(size)
    if not len(train) or not len(test):
        raise ValueError(f"{dataset}: empty split (victim_train {len(train)}, test {len(test)})")
    return train, test


def protected_indices(n: int, fraction: float, seed: int) -> np.ndarray:
    """Which training images the owners protected: a seeded random ``fraction`` of them."""
    count = int(round(fraction * n))
    return np.sort(np.random.default_rng([seed, 0xF4AC]).choice(n, count, replace=False))


def image_quality(original: np.ndarray, protected: np.ndarray, max_ssim_images: int = 500) -> dict:
    """Mean PSNR (dB) over the changed images and mean SSIM over a sample of them."""
    from skimage.metrics import structural_similarity

    if not len(original):
        return {"psnr": None, "ssim": None}  # nothing was changed
    diff = original.astype(np.float64) - protected
    mse = (diff**2).reshape(len(original), -1).mean(axis=1)
    changed = mse > 0
    psnr = round(float(np.mean(10 * np.log10(255.0**2 / mse[changed]))), 3) if changed.any() else None
    step = max(1, len(original) // max_ssim_images)
    ssim = [structural_similarity(a, b, channel_axis=2, data_range=255) for a, b in
            zip(original[::step], protected[::step])]
    return {"psnr": psnr, "ssim": round(float(np.mean(ssim)), 5)}


def protect_split(data: ImageTextSet, method: ProtectionMethod, epsilon: float, seed: int, fraction: float,
                  use_cache: bool = True) -> tuple[ImageTextSet, dict]:
    """The training set as the exploiter scrapes it: a ``fraction`` of it protected by ``method``."""
    noise, cached = method_noise(method, data, epsilon, seed, use_cache)
    chosen = protected_indices(len(data), 0.0 if method.name == "none" else fraction, seed)
    images = noise.apply(data.images, chosen)
    posted = None
    if noise.captions is not None:  # the method writes captions too (MEM's triggers): the protected ones post them
        posted = list(data.captions)
        for i in chosen:
            posted[i] = noise.captions[i]
    info = {
        "spec": method.spec(), "needs_photo": method.needs_photo, "cached": cached,
        "protected_images": int(len(chosen)), "distinct_patterns": int(len(noise.levels)),
        "generation_seconds": round(noise.seconds, 3),
        "generation_seconds_per_image": round(noise.seconds / max(1, len(data)), 6),
        "gradient_steps_per_image": noise.gradient_steps / max(1, len(data)),
        "generation": noise.log,
        **image_quality(data.images[chosen], images[chosen]),
        **({"posted_caption_examples": [posted[i] for i in chosen[:3]]} if posted is not None else {}),
    }
    protected = data.with_images(images)
    return (protected if posted is None else protected.with_captions(posted)), info


def _versions() -> dict:
    from t2ue import __version__

    versions = {"t2ue": __version__, "torch": torch.__version__, "python": platform.python_version()}
    try:
        import open_clip

        versions["open_clip"] = open_clip.__version__
    except ImportError:
        pass
    return versions


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write a results JSON atomically: an interrupted run never leaves half a file where a sweep or a
    benchmark would read it."""
    return write_text(path, json.dumps(payload, indent=2) + "\n")


def starting_point(recipe: VictimRecipe, test: ImageTextSet, device: str = "auto") -> dict | None:
    """A fine-tuned victim's metrics before any training (``None`` for victims trained from scratch):
    what the exploiter has without the scraped data, which protection cannot take away — it can only
    withhold what fine-tuning adds."""
    if recipe.kind != "clip-finetune":
        return None
    return evaluate_victim(build_victim(recipe).to(pick_device(device)).eval(), recipe, test)


def run_one(config: RunConfig, out_dir: str | os.PathLike | None = None, *, skip_existing: bool = False,
            device: str = "auto", progress: bool = True, use_cache: bool = True) -> dict:
    """Protect, train, evaluate; return the result (and write ``OUT_DIR/RUN_ID.json`` when given)."""
    path = Path(out_dir) / f"{config.run_id()}.json" if out_dir is not None else None
    if skip_existing and path is not None and path.is_file():
        return json.loads(path.read_text())
    started = time.time()
    train, test = load_split(config.dataset, config.size, config.train_limit, config.test_limit)
    if config.victim.kind == "classifier" and train.labels is None:
        raise ValueError(f"{config.dataset}: a classifier victim needs labels, and this set has none")
    method = parse_method(config.method)
    epsilon = 0.0 if config.method == "none" else parse_epsilon(config.epsilon)
    protected = exploiter_view(config.protector, train, config.dataset, config.size, "victim_train", config.train_limit)
    protected, protection = protect_split(protected, method, epsilon, config.seed, config.fraction, use_cache)
    scraped = train.with_images(protected.images)
    if protected.captions != train.captions and config.protector == "same" and config.exploiter != "strip-trigger":
        scraped = scraped.with_captions(protected.captions)  # the captions the protector posted (MEM's triggers)
    scraped = exploiter_view(config.exploiter, scraped, config.dataset, config.size, "victim_train", config.train_limit)
    test = exploiter_view(config.exploiter, test, config.dataset, config.size, "test", config.test_limit)
    test_fingerprint = fingerprint(test)  # of the clean test split, so defended and undefended rows share a table
    defense = parse_defense(config.defense)
    defense_started = time.time()
    scraped = scraped.with_images(defense.purify_images(scraped.images, config.seed))
    test = test.with_images(defense.purify_images(test.images, config.seed, test=True))
    purify_seconds = round(time.time() - defense_started, 2)
    before = starting_point(config.victim, test, device)
    model, log = train_victim(scraped, config.victim, seed=config.seed, device=device, progress=progress,
                              defense=defense)
    eval_started = time.time()
    metrics = evaluate_victim(model, config.victim, test)
    result = {
        "format": RUN_FORMAT,
        "run_id": config.run_id(),
        "config": config.as_dict(),
        "dataset": {"name": config.dataset, "train_pairs": len(train), "test_images": len(test),
                    "test_captions": len(test.all_captions()[0]), "classes": len(test.class_names),
                    "train_fingerprint": fingerprint(train), "test_fingerprint": test_fingerprint,
                    "split": "victim_train / test parts (t2ue.data.part_indices, seed 0)",
                    "skipped_files": train.meta.get("skipped", []) + test.meta.get("skipped", [])},
        "protection": protection,
        "defense": {"spec": config.defense, "purify_seconds": purify_seconds, "in_training": defense.trains},
        "victim": {**config.victim.as_dict(), **log},
        "metrics": metrics,
        **({"metrics_before_training": before} if before is not None else {}),
        "timings": {"total_seconds": round(time.time() - started, 1), "train_seconds": log["train_seconds"],
                    "eval_seconds": round(time.time() - eval_started, 1)},
        "machine": machine(log["device"]),
        "versions": _versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if path is not None:
        write_json(path, result)
    return result


@dataclass
class EvalPlan:
    """A sweep: every victim × seed × method × budget × protected fraction on one dataset."""

    dataset: str
    methods: list[str] = field(default_factory=lambda: ["none", "random", "t2ue"])
    victims: list[str] = field(default_factory=lambda: ["clip:victim-vit-tiny"])
    seeds: list[int] = field(default_factory=lambda: [0])
    epsilons: list[str] = field(default_factory=lambda: ["8/255"])
    fractions: list[float] = field(default_factory=lambda: [1.0])
    train_limit: int | None = None
    test_limit: int | None = None
    size: int = 64
    recipe: dict = field(default_factory=dict)
    exploiters: list[str] = field(default_factory=lambda: ["same"])
    defenses: list[str] = field(default_factory=lambda: ["none"])
    protectors: list[str] = field(default_factory=lambda: ["same"])

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> EvalPlan:
        data = json.loads(Path(path).read_text())
        unknown = set(data) - set(cls.__dataclass_fields__) - {"description"}
        if unknown:
            raise ValueError(f"{path}: unknown plan keys {sorted(unknown)}")
        data.pop("description", None)
        return cls(**data)

    def runs(self) -> list[RunConfig]:
        """The plan's runs, one recipe per victim (so the clean and protected rows share it)."""
        runs = []
        for victim_spec, view, protector, defense, seed, method in product(
                self.victims, self.exploiters, self.protectors, self.defenses, self.seeds, self.methods):
            victim = VictimRecipe.parse(victim_spec, **self.recipe)
            if parse_method(method).spec() == "none":
                runs.append(RunConfig(self.dataset, method, victim, seed, train_limit=self.train_limit,
                                      test_limit=self.test_limit, size=self.size, exploiter=view, defense=defense))
                continue
            for epsilon, fraction in product(self.epsilons, self.fractions):
                if fraction > 0:  # 0 % protected is the clean row
                    runs.append(RunConfig(self.dataset, method, victim, seed, epsilon, fraction, self.train_limit,
                                          self.test_limit, self.size, view, defense, protector))
        return list(dict.fromkeys(runs))


def cache_noise(plan: EvalPlan, progress: bool = True) -> int:
    """Make and cache every noise a plan needs, training nothing: protect on one machine (the noise
    model's text encoder needed), train the victims on another (``T2UE_CACHE`` carried along)."""
    needed = {(r.method, r.epsilon, r.seed, r.protector) for r in plan.runs() if r.method != "none"}
    train, _ = load_split(plan.dataset, plan.size, plan.train_limit, plan.test_limit)
    for method, epsilon, seed, protector in tqdm(sorted(needed), desc="noise", disable=not progress):
        data = exploiter_view(protector, train, plan.dataset, plan.size, "victim_train", plan.train_limit)
        method_noise(parse_method(method), data, parse_epsilon(epsilon), seed)
    return len(needed)


def run_grid(plan: EvalPlan, out_dir: str | os.PathLike, *, skip_existing: bool = True, device: str = "auto",
             progress: bool = True, shard: tuple[int, int] = (0, 1)) -> list[dict]:
    """Run (or pick up) every run of a plan; a failing run is reported and the others go on.
    ``shard=(i, n)`` takes every n-th run from the i-th, so n processes (or GPUs) share one plan."""
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: need 0 <= i < n")
    results, failures = [], []
    runs = plan.runs()[index::count]
    bar = tqdm(runs, desc="evaluate", disable=not progress)
    for config in bar:
        bar.set_postfix_str(config.run_id()[:60])
        try:
            results.append(run_one(config, out_dir, skip_existing=skip_existing, device=device, progress=progress))
        except (ValueError, FileNotFoundError, RuntimeError) as error:
            failures.append(f"{config.run_id()}: {error}")
            tqdm.write(f"run failed: {config.run_id()}: {error}")
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(runs)} runs failed:\n" + "\n".join(failures))
    return results


VERDICTS = ((0.3, "strong: a model trained on protected data keeps at most 30 % of what clean data teaches"),
            (0.6, "partial: protected data still teaches a model a good part of what clean data does"),
            (float("inf"), "weak: a model learns nearly as much from the protected data as from clean data"))


def verify(model: str, dataset: str = "openclipart", *, pairs: int = 1000, test_pairs: int = 500, epochs: int = 10,
           seed: int = 0, mode: str = "sample", device: str = "auto", progress: bool = True) -> dict:
    """How protective a noise model is on a kind of data: a small victim CLIP trained on clean and on
    protected pairs with one recipe, compared on clean test pairs. Both victims' last-epoch training
    losses come along: noise protects by being a shortcut fitted faster than the pictures, so while the
    clean victim is still far from fitted, a protected loss no lower than the clean one means the victim
    took none. ``clean_fitted`` is how far the clean victim's loss went from chance
    (ln batch) towards the floor that repeated captions set (:func:`~t2ue_eval.metrics.contrastive_loss_floor`);
    below 0.9 the victim is ``undertrained`` and the verdict may change with more epochs."""
    from t2ue.api import load_noise_model
    from t2ue_eval.methods import resolve_model

    bound = load_noise_model(resolve_model(model)).epsilon
    levels = bound * 255
    epsilon = f"{round(levels)}/255" if abs(levels - round(levels)) < 1e-6 else repr(bound)
    recipe = VictimRecipe.for_kind("clip", epochs=epochs)
    clean = run_one(RunConfig(dataset, "none", recipe, seed, train_limit=pairs, test_limit=test_pairs),
                    device=device, progress=progress)
    protected = run_one(RunConfig(dataset, f"t2ue:model={model},mode={mode}", recipe, seed, epsilon, 1.0, pairs,
                                  test_pairs), device=device, progress=progress)
    metric, clean_value, guess = headline(clean["metrics"])
    protected_value = headline(protected["metrics"])[1]
    ratio = protected_value / clean_value if clean_value > 0 else float("nan")
    verdict = next(text for bound, text in VERDICTS if ratio <= bound) if clean_value > guess else (
        "inconclusive: the clean victim itself did not beat random guessing; use more pairs or epochs")
    train_loss = {"clean": clean["victim"]["final_loss"], "protected": protected["victim"]["final_loss"]}
    chance_loss = math.log(min(recipe.batch_size, clean["dataset"]["train_pairs"]))
    floor = contrastive_loss_floor(load_split(dataset, clean["config"]["size"], pairs, test_pairs)[0].captions,
                                   recipe.batch_size)
    fitted = (chance_loss - train_loss["clean"]) / (chance_loss - floor) if chance_loss > floor else 1.0
    return {"metric": metric, "clean": clean_value, "protected": protected_value, "random": guess, "ratio": ratio,
            "verdict": verdict, "train_loss": train_loss, "chance_loss": chance_loss, "loss_floor": floor,
            "clean_fitted": fitted, "undertrained": fitted < 0.9, "train_pairs": clean["dataset"]["train_pairs"],
            "test_images": clean["dataset"]["test_images"], "psnr": protected["protection"]["psnr"],
            "ssim": protected["protection"]["ssim"], "runs": [clean, protected]}
