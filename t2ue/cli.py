"""The ``t2ue`` command line: noise, protect, fit-clusters, train, demo, evaluate, report, verify."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import typer

from .privacy import set_offline_defaults

set_offline_defaults()

MODEL_NAMES = ("'default', 'robust' (survives recompression), 'robust-strong' (also trained against grayscale "
               "and JPEG 10), a research variant (robust-luma, robust-augment, robust-ueraser, robust-shuffle, "
               "robust-ueraser-surrogate, robust-depth: the README says what each is and how it fared)")
MODEL_HELP = f"Noise model: {MODEL_NAMES} or a folder."
# protect makes the noise of this many photos in one call, then writes them (in --jobs threads)
NOISE_BATCH = 64

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Protect photos from unauthorised AI training with noise made from a text description.")


def _err(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"t2ue {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """Protect photos from unauthorised AI training with noise made from a text description."""


@app.command()
def noise(
    text: str = typer.Argument(..., help="Description of the photo."),
    output: Path = typer.Option(..., "-o", "--output", help="noise.npy (exact floats) or noise.png (visualised)."),
    size: int = typer.Option(224, help="Output side length in pixels."),
    model: str = typer.Option("default", help=MODEL_HELP),
    seed: int = typer.Option(0),
    mode: str = typer.Option("sample", help="sample, class or cluster (clusters fitted before: --cluster-dir "
                             "or a --model saved with them by t2ue fit-clusters)."),
    epsilon: str = typer.Option(None, help="Budget, e.g. 8/255 (default: the model's)."),
    cluster_dir: Path = typer.Option(None, help="Clusters fitted before (t2ue protect --mode cluster writes them)."),
) -> None:
    """Make noise from a description alone (no photo needed) and write it to a file."""
    import numpy as np
    from PIL import Image

    from .api import load_noise_model, noise_from_text
    from .files import atomic_write
    from .images import noise_levels, save_image

    suffix = output.suffix.lower()
    if suffix != ".npy" and Image.registered_extensions().get(suffix) not in ("PNG", "TIFF", "BMP", "WEBP"):
        _err(f"{output}: write the noise as .npy (exact floats) or as a lossless image (.png, .tif, .bmp, .webp)")
        raise typer.Exit(2)
    try:
        if mode == "cluster" and cluster_dir is None and load_noise_model(model).clusters is None:
            raise ValueError("--mode cluster for one description needs clusters fitted before: --cluster-dir, "
                             "or a --model folder saved with them (t2ue fit-clusters)")
        delta = noise_from_text([text], size=size, model=model, seed=seed, mode=mode, epsilon=epsilon,
                                clusters=cluster_dir)[0]
    except (ValueError, FileNotFoundError) as err:
        _err(str(err))
        raise typer.Exit(2) from err
    array = delta.permute(1, 2, 0).numpy()
    if suffix == ".npy":
        with atomic_write(output) as handle:
            np.save(handle, array)
    else:
        bound = float(np.abs(array).max()) or 1.0
        save_image(Image.fromarray(noise_levels(array, bound)), output)
    typer.echo(f"{output}  shape {array.shape}  max |noise| {float(delta.abs().max()) * 255:.2f}/255")


SEPARATE_HELP = ("When clusters are fitted: sign (take out what the groups' perturbations share, the differences at "
                 "±ε) or a gain (differences scaled, then clipped to the budget); none leaves them as made.")


def _cluster_noise(noise_model, descriptions: list[str], k: int, folder: Path, seed: int, separate: str):
    """Clusters from ``folder`` when it holds them; else fitted on ``descriptions`` and saved there."""
    from .clusters import CLUSTER_CONFIG, ClusterNoise, fit_cluster_noise

    if (folder / CLUSTER_CONFIG).is_file():
        if separate != "none":
            raise ValueError(f"--separate is chosen when clusters are fitted; {folder} holds clusters fitted before")
        typer.echo(f"reusing the clusters in {folder}")
        return ClusterNoise.from_pretrained(folder)
    fitted = fit_cluster_noise(noise_model, descriptions, k, seed=seed, separate=separate)
    fitted.save_pretrained(folder)
    typer.echo(f"{k} clusters fitted on {len(descriptions)} descriptions, saved to {folder} (reuse with --cluster-dir)")
    return fitted


@app.command("fit-clusters")
def fit_clusters(
    captions: Path = typer.Argument(..., help="Descriptions to cluster: CSV/JSONL with a 'caption' column, "
                                    "or a text file with one description per line."),
    output: Path = typer.Option(..., "-o", "--output", help="New noise model folder: the model plus its clusters."),
    model: str = typer.Option("default", help="Noise model to start from: " + MODEL_NAMES + " or a folder."),
    clusters: int = typer.Option(8, "-k", "--clusters", help="How many clusters."),
    seed: int = typer.Option(0),
    separate: str = typer.Option("none", help=SEPARATE_HELP),
) -> None:
    """Fit label-agnostic clusters on descriptions and save them with a copy of the noise model, so
    `t2ue protect --model OUTPUT --mode cluster` protects later photos with the same clusters."""
    from .api import load_noise_model
    from .clusters import fit_and_assign
    from .noise_model import NOISE_MODEL_CONFIG, NoiseModel

    try:
        if (output / NOISE_MODEL_CONFIG).exists() or (output.exists() and any(output.iterdir())):
            raise ValueError(f"{output}: exists and is not empty; choose a new folder")
        descriptions = _read_descriptions(captions)
        base = load_noise_model(model)
        fitted, owners = fit_and_assign(base, descriptions, clusters, seed=seed, separate=separate)
    except (ValueError, FileNotFoundError, OSError) as err:
        _err(str(err))
        raise typer.Exit(2) from err
    NoiseModel(base.generator, base.surrogate, surrogate_spec=base.surrogate_spec, metadata=base.metadata,
               clusters=fitted).save_pretrained(output)
    sizes = owners.bincount(minlength=fitted.k).tolist()
    typer.echo(f"{fitted.k} clusters fitted on {len(descriptions)} descriptions (sizes {sizes}); "
               f"noise model with clusters saved to {output}")


def _read_descriptions(path: Path) -> list[str]:
    """Descriptions from a captions CSV/JSONL ('caption' column) or a plain text file (one per line)."""
    from .data import read_rows

    if path.suffix.lower() in (".csv", ".jsonl"):
        rows = read_rows(path)
        if rows and "caption" not in rows[0]:
            raise ValueError(f"{path}: needs a 'caption' column")
        texts = [r["caption"] for r in rows]
    else:
        texts = path.read_text().splitlines()
    texts = [t.strip() for t in texts if t and t.strip()]
    if not texts:
        raise ValueError(f"{path}: no descriptions found")
    return texts


@app.command()
def protect(
    photos: list[Path] = typer.Argument(None, help="Photos to protect; a folder stands for the images in it, and "
                                        "a pattern such as photos/*.jpg is expanded where the shell does not. "
                                        "With --captions they may be left out: the images the file lists."),
    output_dir: Path = typer.Option(..., "-o", "--output-dir", help="Folder for the protected copies."),
    text: str = typer.Option(None, "--text", help="One description for every photo."),
    captions: Path = typer.Option(None, "--captions", help="CSV/JSONL with image,caption per photo (matched by "
                                  "path, else by file name)."),
    metadata_captions: bool = typer.Option(False, "--metadata-captions", help="Each photo's own description, as "
                                           "photo apps write it into the file (XMP, IPTC, EXIF, PNG text; titles "
                                           "when there is no description) or beside it (XMP sidecar, Google "
                                           "Takeout JSON); --text for photos without one."),
    recursive: bool = typer.Option(False, "-r", "--recursive", help="Folders' sub-folders too; every copy keeps "
                                   "its path relative to the folder (or as the captions file lists it)."),
    skip_existing: bool = typer.Option(False, help="Leave copies already in the output folder as they are (resumes "
                                       "an interrupted album; copies are written whole or not at all)."),
    jobs: int = typer.Option(1, "-j", "--jobs", min=1, help="Photos protected at once, in threads (each holds its "
                             "decoded photo: about 250 MB for 12 megapixels)."),
    model: str = typer.Option("default", help=MODEL_HELP),
    seed: int = typer.Option(0),
    mode: str = typer.Option("sample", help="sample, class or cluster."),
    epsilon: str = typer.Option(None, help="Budget, e.g. 8/255 (default: the model's)."),
    jpeg_quality: int = typer.Option(95, min=1, max=100, help="Quality of JPEG, MPO, HEIC, AVIF and lossy WebP copies."),
    clusters: int = typer.Option(8, help="--mode cluster: how many clusters to group the descriptions into."),
    cluster_dir: Path = typer.Option(None, help="--mode cluster: reuse the clusters in this folder if it exists, "
                                     "else fit them and save them there (default: those saved with the noise "
                                     "model, else fitted and saved in OUTPUT_DIR/clusters)."),
    separate: str = typer.Option("none", help="--mode cluster: " + SEPARATE_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say which photos would be protected into which copies "
                                 "with which words, and which would fail, without loading the model or writing."),
) -> None:
    """Protect photos on this machine; each copy keeps its name, size, format and orientation."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from .api import load_noise_model, noise_from_text, protect_file_with_noise
    from .images import ImageError, psnr, read_description
    from .photos import MANIFEST, Captions, EarlierCopies, find_photos, plan_copies, record_copy, refuse_earlier_copies

    if captions is not None and (text is not None or metadata_captions):
        _err("give --captions alone: the file holds every photo's description")
        raise typer.Exit(2)
    if text is None and captions is None and not metadata_captions:
        _err("give the descriptions: --text, --captions or --metadata-captions")
        raise typer.Exit(2)
    if text is not None and not text.strip():
        _err("--text is empty: the noise is made from the description, so give one")
        raise typer.Exit(2)
    if separate != "none" and mode != "cluster":
        _err("--separate goes with --mode cluster")
        raise typer.Exit(2)
    listed = None
    if captions is not None:
        try:
            listed = Captions(captions)
        except (ValueError, OSError) as err:
            _err(str(err))
            raise typer.Exit(2) from err
    if not photos and listed is None:
        _err("give the photos to protect")
        raise typer.Exit(2)
    earlier = EarlierCopies()  # the manifests as this run found them, read once
    if photos:
        found, problems, left_out = find_photos(photos, recursive=recursive, output_dir=output_dir, earlier=earlier)
    else:  # the photos the captions file lists
        (found, problems), left_out = refuse_earlier_copies(listed.photos(recursive), earlier), []
    for problem in problems:
        _err(problem)
    if left_out:
        typer.echo(f"left out {len(left_out)} cop{'y' if len(left_out) == 1 else 'ies'} t2ue protected earlier "
                   f"(listed in their folders' {MANIFEST}), e.g. {left_out[0]}")
    if not found:
        _err("no photo to protect")
        raise typer.Exit(1)

    @functools.cache  # cluster mode asks twice: to fit the clusters, then to protect
    def description(photo: Path) -> str:
        """The photo's description; LookupError or ImageError, naming the photo, when it has none."""
        if listed is not None:
            return listed.caption(photo)
        embedded = read_description(photo) if metadata_captions else None
        if embedded is None and text is None:
            raise LookupError(f"{photo}: no description in its metadata (XMP, IPTC, EXIF, PNG text) nor in a "
                              "sidecar; give --text for such photos, or a --captions file")
        return embedded or text

    if output_dir.exists() and not output_dir.is_dir():
        _err(f"{output_dir}: is a file; --output-dir names the folder for the protected copies")
        raise typer.Exit(2)
    plan = plan_copies(found, output_dir, skip_existing=skip_existing, earlier=earlier)
    for target in plan.kept:
        typer.echo(f"{target}  already there, kept")
    for message in plan.refused:
        _err(message)
    failures, kept = len(plan.refused), len(plan.kept)
    todo: list[tuple[Path, Path, str]] = []
    for source, target in plan.write:
        try:
            todo.append((source, target, description(source)))
        except (LookupError, ImageError) as err:
            failures += 1
            _err(str(err))

    if dry_run:
        for source, target, words in todo:
            typer.echo(f'{target}  would be protected from {source}  "{_shortened(words)}"')
        failed = failures + len(problems)
        typer.echo(f"{_counts(f'{len(todo)} would be protected', kept, failed, 'would fail')}; nothing written (dry run)")
        raise typer.Exit(1 if failed else 0)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        noise_model = load_noise_model(model)
        fitted = None
        if mode == "cluster" and cluster_dir is None and noise_model.clusters is not None:
            if separate != "none":
                raise ValueError("--separate is chosen when clusters are fitted; this noise model brings its own")
            fitted = noise_model.clusters
            typer.echo(f"using the {fitted.k} clusters saved with the noise model")
        elif mode == "cluster":
            texts = []
            for photo in found:
                try:
                    texts.append(description(photo.source))
                except (LookupError, ImageError):
                    pass  # named when that photo's turn comes
            fitted = _cluster_noise(noise_model, texts, clusters, cluster_dir or output_dir / "clusters", seed,
                                    separate)
    except (ValueError, FileNotFoundError, OSError) as err:
        _err(str(err))
        raise typer.Exit(2) from err

    def write(task: tuple[Path, Path, torch.Tensor]) -> tuple[str, bool]:
        source, target, noise = task
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            original, protected = protect_file_with_noise(source, target, noise, jpeg_quality=jpeg_quality)
            return f"{target}  PSNR {psnr(original, protected):.1f} dB", True
        except (ImageError, ValueError, OSError) as err:
            return (str(err) if str(source) in str(err) else f"{source}: {err}"), False

    with ThreadPoolExecutor(jobs) as pool:
        for start in range(0, len(todo), NOISE_BATCH):  # the noise of a batch of photos at a time, in one call
            batch = todo[start:start + NOISE_BATCH]
            texts = list(dict.fromkeys(words for _, _, words in batch))
            made = dict(zip(texts, noise_from_text(texts, size=None, model=noise_model, seed=seed, mode=mode,
                                                   epsilon=epsilon, clusters=fitted)))
            results = pool.map(write, [(source, target, made[words]) for source, target, words in batch])
            for (_, target, words), (line, ok) in zip(batch, results):
                if ok:
                    try:
                        record_copy(output_dir, target, earlier)
                    except OSError as err:  # the copy stands; a later run may not know it for one
                        _err(f"{output_dir / MANIFEST}: {target} could not be listed ({err})")
                    typer.echo(f'{line}  "{_shortened(words)}"' if metadata_captions else line)
                else:
                    failures += 1
                    _err(line)
    done, failed = len(found) - failures - kept, failures + len(problems)
    summary = _counts(f"{done} protected", kept, failed, "failed")
    if failed:
        typer.echo(summary, err=True)
        raise typer.Exit(1)
    if len(found) > 1:
        typer.echo(summary)


def _counts(done: str, kept: int, failed: int, failed_word: str) -> str:
    """protect's count line: what was (or would be) protected, then the kept and failed, when any."""
    return ", ".join([done, *([f"{kept} kept"] if kept else []), *([f"{failed} {failed_word}"] if failed else [])])


def _shortened(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


@app.command()
def train(
    data: str = typer.Option(..., help="openclipart, fashion-mnist, a CSV/JSONL of image,caption, an image folder, "
                             "a Karpathy JSON, or WebDataset tar shards (cc3m/{00000..00331}.tar, or their folder)."),
    output_dir: Path = typer.Option(..., "-o", "--output-dir"),
    surrogate: str = typer.Option("default", help="'default' (bundled), open_clip:ARCH/TAG, or a folder."),
    generator: str = typer.Option("t2ue-gan", help="t2ue-gan or unet."),
    init_unet: Path = typer.Option(None, help="Start the unet generator from a pretrained (SD) UNet folder."),
    resolution: int = typer.Option(64),
    epsilon: str = typer.Option("8/255"),
    steps: int = typer.Option(1000),
    batch_size: int = typer.Option(128),
    lr: float = typer.Option(1e-4),
    seed: int = typer.Option(0),
    checkpoint_every: int = typer.Option(250),
    part: str = typer.Option(None, help="provider, victim_train, test or all; default: provider for the built-in sets, "
                             "all for your own data."),
    limit_per_set: int = typer.Option(None, help="Keep a seeded sample of at most this many pairs of each set."),
    resume: bool = typer.Option(True, help="Resume from the latest checkpoint in the output folder."),
    robust: bool = typer.Option(False, help="Expectation over JPEG / thumbnailing / blur in the loop, so the noise "
                                "survives recompression."),
    eot: str = typer.Option("standard", help="With --robust: 'standard' (JPEG quality 30-95, thumbnails to 50 %, "
                            "blur sigma <= 1.5), 'strong' (adds grayscale; JPEG down to quality 10, thumbnails to "
                            "25 %, sigma <= 2), 'augment' (standard plus UEraser's crop, plasma, colour jitter and "
                            "channel shuffle, one per step), 'ueraser' (UEraser's composed augmentation, worst of "
                            "two copies per pair), 'shuffle' (channel shuffle alone, worst of two orders) or 'depth' "
                            "(standard plus colour depth reduced to 3-5 bits)."),
    luma: bool = typer.Option(False, help="One noise plane shared by R, G and B (t2ue-gan): survives grayscale "
                              "conversion exactly and sits in JPEG's full-resolution luma channel."),
    mixed_precision: str = typer.Option(None, help="no, fp16 or bf16 (default: what `accelerate launch "
                                        "--mixed_precision` says, else no)."),
    num_workers: int = typer.Option(0, min=0, help="DataLoader processes decoding images while the device trains "
                                    "(for large image sets on a GPU)."),
) -> None:
    """Train a text-to-noise generator against a frozen surrogate (CPU, one GPU, or `accelerate launch`)."""
    from .budget import parse_epsilon
    from .data import BUILTIN, load_dataset
    from .generators import T2UEGenerator, UNetGenerator, build_generator
    from .surrogates import load_surrogate
    from .training import TrainConfig, train_generator
    from .transforms import EOT_PRESETS

    if eot not in EOT_PRESETS:
        raise typer.BadParameter(f"{eot!r} is not one of {sorted(EOT_PRESETS)}", param_hint="--eot")
    if eot != "standard" and not robust:
        raise typer.BadParameter("--eot chooses the transformations of --robust; add --robust", param_hint="--eot")
    if luma and generator != T2UEGenerator.kind:
        raise typer.BadParameter(f"--luma is a t2ue-gan option, not one of {generator!r}", param_hint="--luma")
    sur = load_surrogate(surrogate)
    if part is None:
        part = "provider" if all(name in BUILTIN for name in data.split("+")) else "all"
    dataset = load_dataset(data, size=resolution, part=None if part == "all" else part, limit=limit_per_set)
    eps = parse_epsilon(epsilon)
    if generator == UNetGenerator.kind and init_unet:
        gen = UNetGenerator.from_stable_diffusion(init_unet, token_dim=sur.token_dim, resolution=resolution, epsilon=eps)
    elif generator == T2UEGenerator.kind:
        gen = build_generator(generator, text_dim=sur.embed_dim, resolution=resolution, epsilon=eps, luma=luma)
    else:
        gen = build_generator(generator, token_dim=sur.token_dim, resolution=resolution, epsilon=eps)
    if mixed_precision not in (None, "no", "fp16", "bf16"):
        raise typer.BadParameter(f"{mixed_precision!r} is not no, fp16 or bf16", param_hint="--mixed-precision")
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, checkpoint_every=checkpoint_every,
                         robust=robust, eot=eot, mixed_precision=mixed_precision, num_workers=num_workers)
    train_generator(gen, sur, dataset, output_dir, config, resume=resume,
                    surrogate_spec=None if surrogate == "default" else surrogate)
    if os.environ.get("RANK", "0") == "0":  # once, from the main process of a distributed launch
        typer.echo(f"noise model saved to {output_dir / 'model'}")



@app.command()
def demo(
    host: str = typer.Option("127.0.0.1", help="Address to bind; 127.0.0.1 keeps it on this machine."),
    port: int = typer.Option(7860),
    model: str = typer.Option("default", help=MODEL_HELP),
    max_mb: float = typer.Option(25, help="Largest upload accepted in the local tab, in MB."),
    zero_contact_only: bool = typer.Option(False, "--zero-contact-only", help="Serve the text-to-noise part "
                                           "alone (page and /noise API): no tab that accepts photos."),
) -> None:
    """Launch the Gradio demo (zero-contact and local tabs), fully offline."""
    from .api import load_noise_model
    from .demo import launch

    try:
        load_noise_model(model)  # a bad --model is named here, before gradio starts
    except (ValueError, FileNotFoundError) as err:
        _err(str(err))
        raise typer.Exit(2) from err
    launch(model=model, host=host, port=port, max_mb=max_mb, local_tab=not zero_contact_only)


def _split_list(text: str | None, kind=str) -> list | None:
    return None if text is None else [kind(item.strip()) for item in text.split(",") if item.strip()]


@app.command()
def evaluate(
    config: Path = typer.Option(None, "--config", help="A plan JSON (see eval/configs); flags below override it."),
    data: str = typer.Option(None, help="openclipart, fashion-mnist, a CSV/JSONL, a Karpathy JSON, an image folder or "
                             "WebDataset tar shards."),
    method: list[str] = typer.Option(None, "--method", help="Repeatable: none, random, t2ue, t2ue:mode=class, "
                                     "t2ue:model=FOLDER…"),
    victim: list[str] = typer.Option(None, "--victim", help="Repeatable: clip:victim-vit-tiny, clip:victim-rn-tiny, "
                                     "classifier:resnet18, clip-finetune:SURROGATE."),
    seeds: str = typer.Option(None, help="Comma-separated seeds, e.g. 0,1,2."),
    epsilons: str = typer.Option(None, help="Comma-separated budgets, e.g. 4/255,8/255,16/255."),
    fractions: str = typer.Option(None, help="Comma-separated protected shares, e.g. 0,0.2,0.4,0.6,0.8,1."),
    defense: list[str] = typer.Option(None, "--defense", help="Repeatable: none, jpeg:quality=75, grayscale, blur, "
                                      "bit-depth, median, noise-rescale, strong-aug, ueraser, pgd-at; combine with +."),
    exploiter: list[str] = typer.Option(None, "--exploiter", help="Repeatable: same, coarse-labels (Fashion-MNIST "
                                        "10 -> 4 groups), coarse-labels-alt (the same with dresses beside trousers), "
                                        "coarse-labels-8 / -5 / -2 (a nested hierarchy through -alt), coarse-labels-8-easy "
                                        "(8 groups from pairs easy to tell apart), "
                                        "reworded-captions (Fashion-MNIST: other class names and "
                                        "templates), title-captions (openclipart): the labels or captions the victim "
                                        "trains on."),
    protector: list[str] = typer.Option(None, "--protector", help="Repeatable: the view the protector protects "
                                        "with (default same: the set's own labels and captions); the exploiter's "
                                        "own view here is the oracle that knows how it will label."),
    train_limit: int = typer.Option(None, help="Use a seeded sample of at most this many training pairs."),
    test_limit: int = typer.Option(None, help="Use a seeded sample of at most this many test pairs."),
    epochs: int = typer.Option(None, help="Override the victims' epochs."),
    lr: float = typer.Option(None, help="Override the victims' learning rate."),
    batch_size: int = typer.Option(None, help="Override the victims' batch size."),
    out: Path = typer.Option(Path("eval/results/runs"), "-o", "--out", help="Folder for the run JSONs."),
    skip_existing: bool = typer.Option(True, help="Keep runs already in --out (resume an interrupted sweep)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    noise_only: bool = typer.Option(False, help="Only make and cache the noise (in $T2UE_CACHE); train nothing."),
    progress: bool = typer.Option(True, help="Progress bars (off for logs)."),
    shard: str = typer.Option("0/1", help="I/N: run every N-th run from the I-th, so N processes share a plan."),
) -> None:
    """Train victims from scratch on clean and protected data; write one JSON per run."""
    from .evaluation import EvalPlan, cache_noise, run_grid

    if config is None and data is None:
        _err("give --data or --config")
        raise typer.Exit(2)
    try:
        plan = EvalPlan.from_file(config) if config else EvalPlan(dataset=data)
    except (OSError, ValueError, TypeError) as error:
        _err(f"{config}: {error}")
        raise typer.Exit(2) from error
    overrides = {"dataset": data, "methods": method or None, "victims": victim or None,
                 "seeds": _split_list(seeds, int), "epsilons": _split_list(epsilons),
                 "fractions": _split_list(fractions, float), "defenses": defense or None,
                 "exploiters": exploiter or None, "protectors": protector or None,
                 "train_limit": train_limit, "test_limit": test_limit}
    for key, value in overrides.items():
        if value is not None:
            setattr(plan, key, value)
    plan.recipe = {**plan.recipe, **{k: v for k, v in {"epochs": epochs, "lr": lr, "batch_size": batch_size}.items()
                                     if v is not None}}
    try:
        runs = plan.runs()
        index, count = (int(part) for part in shard.split("/"))
    except ValueError as error:
        _err(str(error))
        raise typer.Exit(2) from error
    if noise_only:
        typer.echo(f"{cache_noise(plan, progress)} noises cached for {len(runs)} runs")
        return
    typer.echo(f"{len(runs)} runs → {out}")
    try:
        results = run_grid(plan, out, skip_existing=skip_existing, device=device, progress=progress,
                           shard=(index, count))
    except ValueError as error:
        _err(str(error))
        raise typer.Exit(2) from error
    except RuntimeError as error:
        _err(str(error))
        raise typer.Exit(1) from error
    typer.echo(f"{len(results)} runs in {out}; build the tables with: t2ue report {out}")


@app.command()
def report(
    results: Path = typer.Argument(..., help="A folder of run JSONs written by t2ue evaluate."),
    out: Path = typer.Option(None, "-o", "--out", help="Where to write results.csv, tables.md and plots "
                             "(default: RESULTS/report)."),
    plots: bool = typer.Option(True, help="Draw the plots (needs matplotlib)."),
) -> None:
    """Build the CSV, the markdown tables and the plots from a folder of run JSONs."""
    from .report import RecipeMismatch, write_report

    try:
        written = write_report(results, out or results / "report", plots=plots)
    except (FileNotFoundError, RecipeMismatch) as error:
        _err(str(error))
        raise typer.Exit(1) from error
    except ImportError as error:
        _err(f"plots need matplotlib (pip install 't2ue[eval]'), or pass --no-plots: {error}")
        raise typer.Exit(1) from error
    for name, path in written.items():
        typer.echo(f"{name}: {path}")


@app.command()
def verify(
    model: str = typer.Argument("default", help=MODEL_HELP),
    data: str = typer.Option("openclipart", help="Your kind of data: a built-in set, CSV/JSONL, Karpathy JSON, "
                             "image folder or tar shards."),
    pairs: int = typer.Option(1000, help="Training pairs for the small victims."),
    test_pairs: int = typer.Option(500),
    epochs: int = typer.Option(10),
    mode: str = typer.Option("sample", help="sample or class."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto"),
    json_out: Path = typer.Option(None, "--json", help="Also write the summary and both runs here."),
) -> None:
    """A few minutes on a CPU: how much a model trained on data protected by NOISE_MODEL still learns."""
    from .evaluation import verify as run_verify

    try:
        summary = run_verify(model, data, pairs=pairs, test_pairs=test_pairs, epochs=epochs, seed=seed, mode=mode,
                             device=device)
    except (FileNotFoundError, ValueError) as error:
        _err(str(error))
        raise typer.Exit(1) from error
    metric = summary["metric"]
    typer.echo(f"data: {data} ({summary['train_pairs']} training pairs, {summary['test_images']} clean test images)")
    typer.echo(f"{metric}: clean {summary['clean']:.3f}, protected {summary['protected']:.3f}, "
               f"random guess {summary['random']:.3f} → protected/clean {summary['ratio']:.2f}")
    typer.echo(f"image quality of protected images: PSNR {summary['psnr']:.1f} dB, SSIM {summary['ssim']:.3f}")
    loss = summary["train_loss"]
    easier = 1 - loss["protected"] / loss["clean"]
    typer.echo(f"training loss, last epoch: clean {loss['clean']:.3f}, protected {loss['protected']:.3f} "
               f"(chance {summary['chance_loss']:.3f}, floor set by repeated captions {summary['loss_floor']:.3f}) "
               f"→ protected pairs {easier:.0%} easier to fit"
               + (": this victim took no shortcut from the noise" if easier < 0.05 and summary["undertrained"] else ""))
    typer.echo(f"verdict: {summary['verdict']}")
    if summary["undertrained"]:
        typer.echo(f"caution: after {epochs} epoch{'s' if epochs != 1 else ''} the clean victim has gone only "
                   f"{summary['clean_fitted']:.0%} of the way from chance to the floor; the verdict may change "
                   "with more --epochs (eval/REPORT.md: on openclipart a drop at 10 epochs vanished at 50)")
    if json_out:
        from .evaluation import write_json

        write_json(json_out, summary)
