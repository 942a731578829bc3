"""The ``t2ue`` command line: noise, protect, models, fit-clusters, train, demo; and the commands other
packages add through the ``t2ue.commands`` entry points (the evaluator's evaluate, report and verify)."""

from __future__ import annotations

import functools
import os
from importlib.metadata import entry_points
from pathlib import Path

import click
import typer
from typer.core import TyperGroup

from t2ue.privacy import set_offline_defaults

set_offline_defaults()

MODEL_HELP = "Noise model: a name `t2ue models` lists (default, robust) or a noise model folder."
COMMANDS_GROUP = "t2ue.commands"  # entry points: name = "module:function", a typer-annotated function


class Commands(TyperGroup):
    """The built-in commands, then those added through the ``t2ue.commands`` entry points (loaded only
    when named or listed, so protecting a photo imports none of them)."""

    @functools.cached_property
    def _added(self) -> dict:
        return {point.name: point for point in entry_points(group=COMMANDS_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *sorted(set(self._added) - set(self.commands))]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None or name not in self._added:
            return command
        try:
            function = self._added[name].load()
        except ModuleNotFoundError as err:
            raise click.ClickException(f"`t2ue {name}` needs {err.name}: pip install 't2ue[eval]'") from err
        single = typer.Typer(add_completion=False)
        single.command(name)(function)
        return typer.main.get_command(single)


app = typer.Typer(cls=Commands, add_completion=False, no_args_is_help=True,
                  help="Protect photos from unauthorised AI training with noise made from a text description.")


def echo_error(message: str) -> None:
    """One line on standard error, as every command reports a failure."""
    typer.echo(f"error: {message}", err=True)


def _print_version(value: bool) -> None:
    if value:
        from t2ue import __version__

        typer.echo(f"t2ue {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """Protect photos from unauthorised AI training with noise made from a text description."""


@app.command()
def models() -> None:
    """List the installed noise models (bundled, and those in T2UE_MODELS_PATH folders)."""
    from t2ue.models.registry import installed_models

    for model in installed_models():
        where = "bundled" if model.bundled else str(model.path.parent)
        typer.echo(f"{model.name:<16} {model.summary}  [{where}]")


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

    from t2ue.api import load_noise_model, noise_from_text
    from t2ue.io.files import atomic_write
    from t2ue.io.images import noise_levels, save_image

    suffix = output.suffix.lower()
    if suffix != ".npy" and Image.registered_extensions().get(suffix) not in ("PNG", "TIFF", "BMP", "WEBP"):
        echo_error(f"{output}: write the noise as .npy (exact floats) or as a lossless image (.png, .tif, .bmp, .webp)")
        raise typer.Exit(2)
    try:
        if mode == "cluster" and cluster_dir is None and load_noise_model(model).clusters is None:
            raise ValueError("--mode cluster for one description needs clusters fitted before: --cluster-dir, "
                             "or a --model folder saved with them (t2ue fit-clusters)")
        delta = noise_from_text([text], size=size, model=model, seed=seed, mode=mode, epsilon=epsilon,
                                clusters=cluster_dir)[0]
    except (ValueError, FileNotFoundError) as err:
        echo_error(str(err))
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


@app.command("fit-clusters")
def fit_clusters(
    captions: Path = typer.Argument(..., help="Descriptions to cluster: CSV/JSONL with a 'caption' column, "
                                    "or a text file with one description per line."),
    output: Path = typer.Option(..., "-o", "--output", help="New noise model folder: the model plus its clusters."),
    model: str = typer.Option("default", help="Noise model to start from: " + MODEL_HELP),
    clusters: int = typer.Option(8, "-k", "--clusters", help="How many clusters."),
    seed: int = typer.Option(0),
    separate: str = typer.Option("none", help=SEPARATE_HELP),
) -> None:
    """Fit label-agnostic clusters on descriptions and save them with a copy of the noise model, so
    `t2ue protect --model OUTPUT --mode cluster` protects later photos with the same clusters."""
    from t2ue.api import load_noise_model
    from t2ue.models.cluster_fitting import fit_and_assign
    from t2ue.models.noise_model import NOISE_MODEL_CONFIG

    try:
        if (output / NOISE_MODEL_CONFIG).exists() or (output.exists() and any(output.iterdir())):
            raise ValueError(f"{output}: exists and is not empty; choose a new folder")
        descriptions = _read_descriptions(captions)
        base = load_noise_model(model)
        fitted, owners = fit_and_assign(base, descriptions, clusters, seed=seed, separate=separate)
    except (ValueError, FileNotFoundError, OSError) as err:
        echo_error(str(err))
        raise typer.Exit(2) from err
    base.with_clusters(fitted).save_pretrained(output)
    sizes = owners.bincount(minlength=fitted.k).tolist()
    typer.echo(f"{fitted.k} clusters fitted on {len(descriptions)} descriptions (sizes {sizes}); "
               f"noise model with clusters saved to {output}")


def _read_descriptions(path: Path) -> list[str]:
    """Descriptions from a captions CSV/JSONL ('caption' column) or a plain text file (one per line)."""
    from t2ue.io.tables import read_captions

    if path.suffix.lower() in (".csv", ".jsonl"):
        texts = [caption for _, _, caption in read_captions(path)]
    else:
        texts = path.read_text(encoding="utf-8").splitlines()
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
    from t2ue.album import NothingToProtect, protect_folder

    def show(outcome, original, protected) -> None:
        if outcome.status == "failed":
            echo_error(outcome.message)
        elif outcome.status == "kept":
            typer.echo(f"{outcome.target}  already there, kept")
        elif outcome.status == "planned":
            typer.echo(f'{outcome.target}  would be protected from {outcome.source}  "{_shortened(outcome.words)}"')
        else:
            line = f"{outcome.target}  PSNR {outcome.psnr:.1f} dB"
            typer.echo(f'{line}  "{_shortened(outcome.words)}"' if metadata_captions else line)

    def log(line: str) -> None:
        if line.startswith("error: "):
            echo_error(line.removeprefix("error: "))
        else:
            typer.echo(line)

    try:
        report = protect_folder(photos, output_dir, text=text, captions=captions, metadata_captions=metadata_captions,
                                recursive=recursive, skip_existing=skip_existing, jobs=jobs, model=model, seed=seed,
                                mode=mode, epsilon=epsilon, jpeg_quality=jpeg_quality, n_clusters=clusters,
                                cluster_dir=cluster_dir, separate=separate, dry_run=dry_run, on_photo=show, log=log)
    except NothingToProtect as err:
        echo_error(str(err))
        raise typer.Exit(1) from err
    except KeyboardInterrupt as err:  # the copies being written were finished and listed; nothing else started
        echo_error("interrupted; the copies written so far are complete and listed, run again to go on")
        raise typer.Exit(130) from err
    except (ValueError, FileNotFoundError, OSError) as err:
        echo_error(str(err))
        raise typer.Exit(2) from err
    if dry_run:
        typer.echo(report.summary())
        raise typer.Exit(1 if report.failed else 0)
    if report.failed:
        typer.echo(report.summary(), err=True)
        raise typer.Exit(1)
    if len(report.outcomes) > 1:
        typer.echo(report.summary())


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
    from t2ue.budget import parse_epsilon
    from t2ue.data.sets import BUILTIN, load_dataset
    from t2ue.models.generators import T2UEGenerator, UNetGenerator, build_generator
    from t2ue.models.surrogates import load_surrogate
    from t2ue.training.trainer import TrainConfig, train_generator
    from t2ue.training.transforms import EOT_PRESETS

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
    max_megapixels: float = typer.Option(50, min=1, help="Largest upload the local tab decodes, in megapixels "
                                         "(pixels times frames)."),
) -> None:
    """Launch the Gradio demo (zero-contact and local tabs), fully offline."""
    from t2ue.api import load_noise_model
    from t2ue.demo.app import launch

    try:
        load_noise_model(model)  # a bad --model is named here, before gradio starts
    except (ValueError, FileNotFoundError) as err:
        echo_error(str(err))
        raise typer.Exit(2) from err
    launch(model=model, host=host, port=port, max_mb=max_mb, local_tab=not zero_contact_only,
           max_megapixels=max_megapixels)
