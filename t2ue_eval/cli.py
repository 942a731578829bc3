"""The evaluator's commands: ``t2ue evaluate``, ``t2ue report`` and ``t2ue verify``.

They join the ``t2ue`` command line through the ``t2ue.commands`` entry points (``pyproject.toml``); the
product names none of them. Heavy imports happen inside each command, so listing them costs nothing.
"""

from __future__ import annotations

from pathlib import Path

import typer

from t2ue.cli import MODEL_HELP, echo_error


def _split_list(text: str | None, kind=str) -> list | None:
    return None if text is None else [kind(item.strip()) for item in text.split(",") if item.strip()]


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
    from t2ue_eval.runner import EvalPlan, cache_noise, run_grid

    if config is None and data is None:
        echo_error("give --data or --config")
        raise typer.Exit(2)
    try:
        plan = EvalPlan.from_file(config) if config else EvalPlan(dataset=data)
    except (OSError, ValueError, TypeError) as error:
        echo_error(f"{config}: {error}")
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
        echo_error(str(error))
        raise typer.Exit(2) from error
    if noise_only:
        typer.echo(f"{cache_noise(plan, progress)} noises cached for {len(runs)} runs")
        return
    typer.echo(f"{len(runs)} runs → {out}")
    try:
        results = run_grid(plan, out, skip_existing=skip_existing, device=device, progress=progress,
                           shard=(index, count))
    except ValueError as error:
        echo_error(str(error))
        raise typer.Exit(2) from error
    except RuntimeError as error:
        echo_error(str(error))
        raise typer.Exit(1) from error
    typer.echo(f"{len(results)} runs in {out}; build the tables with: t2ue report {out}")


def report(
    results: Path = typer.Argument(..., help="A folder of run JSONs written by t2ue evaluate."),
    out: Path = typer.Option(None, "-o", "--out", help="Where to write results.csv, tables.md and plots "
                             "(default: RESULTS/report)."),
    plots: bool = typer.Option(True, help="Draw the plots (needs matplotlib)."),
) -> None:
    """Build the CSV, the markdown tables and the plots from a folder of run JSONs."""
    from t2ue_eval.report import RecipeMismatch, write_report

    try:
        written = write_report(results, out or results / "report", plots=plots)
    except (FileNotFoundError, RecipeMismatch) as error:
        echo_error(str(error))
        raise typer.Exit(1) from error
    except ImportError as error:
        echo_error(f"plots need matplotlib (pip install 't2ue[eval]'), or pass --no-plots: {error}")
        raise typer.Exit(1) from error
    for name, path in written.items():
        typer.echo(f"{name}: {path}")


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
    from t2ue_eval.runner import verify as run_verify

    try:
        summary = run_verify(model, data, pairs=pairs, test_pairs=test_pairs, epochs=epochs, seed=seed, mode=mode,
                             device=device)
    except (FileNotFoundError, ValueError) as error:
        echo_error(str(error))
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
        from t2ue_eval.runner import write_json

        write_json(json_out, summary)
