"""The ``t2ue`` command line: noise, protect, train."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import typer

from .privacy import set_offline_defaults

set_offline_defaults()

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Protect photos from unauthorised AI training with noise made from a text description.")


def _err(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


@app.command()
def noise(
    text: str = typer.Argument(..., help="Description of the photo."),
    output: Path = typer.Option(..., "-o", "--output", help="noise.npy (exact floats) or noise.png (visualised)."),
    size: int = typer.Option(224, help="Output side length in pixels."),
    model: str = typer.Option("default", help="Noise model: 'default' or a folder."),
    seed: int = typer.Option(0),
    mode: str = typer.Option("sample", help="sample or class."),
    epsilon: str = typer.Option(None, help="Budget, e.g. 8/255 (default: the model's)."),
) -> None:
    """Make noise from a description alone (no photo needed) and write it to a file."""
    import numpy as np

    from .api import noise_from_text
    from .images import noise_levels, save_image

    try:
        delta = noise_from_text([text], size=size, model=model, seed=seed, mode=mode, epsilon=epsilon)[0]
    except (ValueError, FileNotFoundError) as err:
        _err(str(err))
        raise typer.Exit(2) from err
    array = delta.permute(1, 2, 0).numpy()
    if output.suffix.lower() == ".npy":
        tmp = output.with_name(f".{output.name}.part")
        with tmp.open("wb") as handle:
            np.save(handle, array)
        os.replace(tmp, output)
    else:
        from PIL import Image

        bound = float(np.abs(array).max()) or 1.0
        save_image(Image.fromarray(noise_levels(array, bound)), output)
    typer.echo(f"{output}  shape {tuple(delta.shape)}  max |noise| {float(delta.abs().max()) * 255:.2f}/255")


def _read_captions(path: Path) -> dict[str, str]:
    """Captions file: CSV with columns image,caption (or JSONL); keys are file names."""
    if path.suffix.lower() == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    else:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    try:
        return {Path(r["image"]).name: r["caption"] for r in rows}
    except KeyError as err:
        raise ValueError(f"{path}: needs columns 'image' and 'caption'") from err


@app.command()
def protect(
    photos: list[Path] = typer.Argument(..., help="Photos to protect."),
    output_dir: Path = typer.Option(..., "-o", "--output-dir", help="Folder for the protected copies."),
    text: str = typer.Option(None, "--text", help="One description for every photo."),
    captions: Path = typer.Option(None, "--captions", help="CSV/JSONL with image,caption per photo."),
    model: str = typer.Option("default", help="Noise model: 'default' or a folder."),
    seed: int = typer.Option(0),
    mode: str = typer.Option("sample", help="sample or class."),
    epsilon: str = typer.Option(None, help="Budget, e.g. 8/255 (default: the model's)."),
    jpeg_quality: int = typer.Option(95, help="Quality for JPEG outputs."),
) -> None:
    """Protect photos on this machine; each copy keeps its name, size, format and orientation."""
    from .api import load_noise_model, protect_file
    from .images import ImageError, psnr

    if (text is None) == (captions is None):
        _err("give exactly one of --text or --captions")
        raise typer.Exit(2)
    try:
        by_name = _read_captions(captions) if captions else {}
        noise_model = load_noise_model(model)
    except (ValueError, FileNotFoundError, OSError) as err:
        _err(str(err))
        raise typer.Exit(2) from err
    output_dir.mkdir(parents=True, exist_ok=True)
    inputs = {p.resolve() for p in photos}
    failures = 0
    for photo in photos:
        target = output_dir / photo.name
        try:
            if target.resolve() in inputs or (target.exists() and target.samefile(photo)):
                raise ImageError(f"{photo}: output would overwrite an input; choose another --output-dir")
            description = text if text is not None else by_name.get(photo.name)
            if not description:
                raise ImageError(f"{photo}: no caption for this file in {captions}")
            original, protected = protect_file(photo, target, description, model=noise_model, seed=seed, mode=mode,
                                               epsilon=epsilon, jpeg_quality=jpeg_quality)
            typer.echo(f"{target}  PSNR {psnr(original, protected):.1f} dB")
        except (ImageError, ValueError, OSError) as err:
            failures += 1
            _err(str(err) if str(photo) in str(err) else f"{photo}: {err}")
    if failures:
        typer.echo(f"{len(photos) - failures} protected, {failures} failed", err=True)
        raise typer.Exit(1)


@app.command()
def train(
    data: str = typer.Option(..., help="openclipart, fashion-mnist, or a CSV/JSONL of image,caption."),
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
    part: str = typer.Option("provider", help="Built-in sets: which part to train on (provider, victim_train, test, all)."),
    limit_per_set: int = typer.Option(None, help="Keep a seeded sample of at most this many pairs of each set."),
    resume: bool = typer.Option(True, help="Resume from the latest checkpoint in the output folder."),
) -> None:
    """Train a text-to-noise generator against a frozen surrogate (CPU, one GPU, or `accelerate launch`)."""
    from .api import DEFAULT_MODEL_DIR
    from .budget import parse_epsilon
    from .data import load_dataset
    from .generators import T2UEGenerator, UNetGenerator, build_generator
    from .surrogates import load_surrogate
    from .training import TrainConfig, train_generator

    spec = str(DEFAULT_MODEL_DIR / "surrogate") if surrogate == "default" else surrogate
    sur = load_surrogate(spec)
    dataset = load_dataset(data, size=resolution, part=None if part == "all" else part, limit=limit_per_set)
    eps = parse_epsilon(epsilon)
    if generator == UNetGenerator.kind and init_unet:
        gen = UNetGenerator.from_stable_diffusion(init_unet, token_dim=sur.token_dim, resolution=resolution, epsilon=eps)
    elif generator == T2UEGenerator.kind:
        gen = build_generator(generator, text_dim=sur.embed_dim, resolution=resolution, epsilon=eps)
    else:
        gen = build_generator(generator, token_dim=sur.token_dim, resolution=resolution, epsilon=eps)
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, checkpoint_every=checkpoint_every)
    train_generator(gen, sur, dataset, output_dir, config, resume=resume,
                    surrogate_spec=None if surrogate == "default" else surrogate)
    typer.echo(f"noise model saved to {output_dir / 'model'}")



@app.command()
def demo(
    host: str = typer.Option("127.0.0.1", help="Address to bind; 127.0.0.1 keeps it on this machine."),
    port: int = typer.Option(7860),
    model: str = typer.Option("default", help="Noise model: 'default' or a folder."),
    max_mb: float = typer.Option(25, help="Largest upload accepted in the local tab, in MB."),
) -> None:
    """Launch the Gradio demo (zero-contact and local tabs), fully offline."""
    from .demo import launch

    launch(model=model, host=host, port=port, max_mb=max_mb)
