"""Tables and plots from a folder of run JSONs (``t2ue report``): CSV, markdown, PNG.

Runs are compared only within one table: same dataset split, same victim recipe. Every table has a
random-guess row and a clean row; protected rows show mean ± std over seeds and their ratio to clean.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import textwrap
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import numpy as np

from t2ue.budget import parse_epsilon
from t2ue.io.files import atomic_write, write_text
from t2ue_eval.defenses import DEFENSES, parse_defense
from t2ue_eval.metrics import headline
from t2ue_eval.runner import RUN_FORMAT

RETRIEVAL = [f"{d}_R@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)]


class RecipeMismatch(ValueError):
    """Rows trained with different victim recipes (or on different data) were put in one table."""


def load_results(folder: str | os.PathLike) -> list[dict]:
    """Every run JSON under ``folder`` (other JSON files are ignored)."""
    results = []
    for path in sorted(Path(folder).rglob("*.json")):
        try:
            payload = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(payload, dict) and payload.get("format") == RUN_FORMAT:
            results.append(payload)
    return results


def _table_key(result: dict) -> tuple:
    victim = result["config"]["victim"]
    data = result["dataset"]
    view = result["config"].get("exploiter", "same")
    return (data["name"], view, data["train_fingerprint"], data["test_fingerprint"], json.dumps(victim, sort_keys=True))


def _row_key(result: dict) -> tuple[str, str, float, str]:
    """(method, budget, fraction, defense); a protector that protected with another view than the set's
    own (e.g. the oracle that knows the exploiter's labels) says so after the method."""
    config = result["config"]
    protector = config.get("protector", "same")
    method = config["method"] + ("" if protector == "same" else f" [protector view: {protector}]")
    return method, config["epsilon"], float(config["fraction"]), config.get("defense", "none")


def _budget(epsilon: str) -> float:
    return 0.0 if epsilon == "0" else parse_epsilon(epsilon)


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def defense_order(spec: str) -> tuple:
    """Sort key for defense columns: none first, then the registry's order (JPEG, grayscale, blur, …,
    PGD-AT), one defense's settings by their numbers (JPEG 10 before 75)."""
    parts = parse_defense(spec).parts
    if not parts:
        return ((-1, ()),)
    names = list(DEFENSES)
    return tuple((names.index(part.name), tuple(_number(v) for _, v in sorted(part.params.items()))) for part in parts)


def defense_label(spec: str) -> str:
    """A short axis label that still tells settings apart: ``jpeg:quality=10`` → ``jpeg:10``,
    ``ueraser:copies=2+blur`` → ``ueraser:2+blur``; several settings keep their names."""
    items = []
    for item in filter(None, (s.strip() for s in spec.split("+"))):
        name, _, args = item.partition(":")
        args = [arg for arg in args.split(",") if arg]
        shown = [arg.partition("=")[2] for arg in args] if len(args) == 1 else args
        items.append(name + (":" + ",".join(shown) if shown else ""))
    return "+".join(items) or "none"


def _number(value: str) -> float:
    try:
        return float(Fraction(value))
    except (ValueError, ZeroDivisionError):
        return 0.0


class Table:
    """One comparison: rows (method, budget, fraction) × metric columns, aggregated over seeds."""

    def __init__(self, results: list[dict]):
        keys = {_table_key(r) for r in results}
        if len(keys) > 1:
            differing = sorted({k for a in results for b in results for k in a["config"]["victim"]
                                if a["config"]["victim"][k] != b["config"]["victim"].get(k)})
            raise RecipeMismatch("one table needs one victim recipe and one data split; these runs differ in "
                                 f"{', '.join(differing) or 'their data'}")
        if not results:
            raise ValueError("no runs")
        self.results = results
        first = results[0]
        self.dataset = first["dataset"]
        self.victim = first["config"]["victim"]
        self.view = first["config"].get("exploiter", "same")
        self.label = ""  # set by tables() when another table has the same dataset, victim and view
        self.kind = self.victim["kind"]
        self.metric = headline(first["metrics"])[0]
        rows = defaultdict(list)
        for result in results:
            rows[_row_key(result)].append(result)
        self.defenses = sorted(dict.fromkeys(r["config"].get("defense", "none") for r in results), key=defense_order)
        order = {d: i for i, d in enumerate(self.defenses)}
        self.rows = dict(sorted(rows.items(), key=lambda item: (order[item[0][3]], item[0][0] != "none", item[0][0],
                                                                _budget(item[0][1]), item[0][2])))
        clean = self.rows.get(("none", "0", 1.0, "none"))
        self.clean = _mean_std([headline(r["metrics"])[1] for r in clean])[0] if clean else None

    @property
    def title(self) -> str:
        view = "" if self.view == "same" else f" — exploiter view: {self.view}"
        label = f" ({self.label})" if self.label else ""
        return f"{self.dataset['name']} — {self.victim['kind']}:{self.victim['arch']}{view}{label}"

    @property
    def slug(self) -> str:
        view = "" if self.view == "same" else f"-{self.view}"
        name = f"{self.dataset['name']}-{self.victim['kind']}-{Path(self.victim['arch']).stem}{view}-{self.label}"
        return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")

    @property
    def before_training(self) -> dict | None:
        """A fine-tuned victim's metrics before fine-tuning, on the undefended test set: what its pretrained
        model knows, which protection cannot take away (it can only withhold the gain)."""
        return next((r["metrics_before_training"] for r in self.results
                     if "metrics_before_training" in r and r["config"].get("defense", "none") == "none"), None)

    def columns(self) -> list[str]:
        """Accuracy for classifiers; R@k (and zero-shot accuracy on labelled sets) for CLIPs, but only
        zero-shot accuracy where per-image retrieval means nothing (see :func:`t2ue_eval.metrics.headline`)."""
        metrics = self.results[0]["metrics"]
        if self.kind == "classifier" or self.metric == "zeroshot_accuracy":
            return [self.metric]
        return RETRIEVAL + (["zeroshot_accuracy"] if "zeroshot_accuracy" in metrics else [])

    def records(self) -> list[dict]:
        """Rows as dicts: label, per-column (mean, std), ratio of the headline to clean, quality, seeds."""
        first = self.results[0]["metrics"]
        guess = {c: (first.get(f"random_{c}", float("nan")), 0.0) for c in self.columns()}
        out = [_reference_row("random guess", guess)]
        column = self.columns()[0] if len(self.columns()) == 1 else None
        majority = first.get(f"majority_{column}")
        if majority is not None and majority > 1.5 * guess[column][0]:
            # Unbalanced labels (e.g. 4 coarse groups, half of them tops): a constant answer beats chance.
            out.append(_reference_row("majority class (one constant answer)", {column: (majority, 0.0)}))
        before = self.before_training
        if before is not None:
            value = headline(before)[1]
            out.append({**_reference_row("pretrained model, before fine-tuning",
                                         {c: (before.get(c), 0.0) for c in self.columns()}),
                        "headline": value, "ratio": value / self.clean if self.clean else None})
        for (method, epsilon, fraction, defense), runs in self.rows.items():
            label = "clean (none)" if method == "none" else f"{method} ε={epsilon}" + (
                f" {fraction:.0%} protected" if fraction < 1 else "")
            label += "" if defense == "none" else f" → defense {defense}"
            values = {c: _mean_std([r["metrics"].get(c) for r in runs]) for c in self.columns()}
            value = _mean_std([headline(r["metrics"])[1] for r in runs])[0]
            out.append({
                "row": label, "method": method, "epsilon": epsilon, "fraction": fraction, "defense": defense,
                "values": values,
                "headline": value, "ratio": value / self.clean if self.clean else None,
                "psnr": _mean_std([r["protection"]["psnr"] for r in runs])[0],
                "ssim": _mean_std([r["protection"]["ssim"] for r in runs])[0],
                "train_loss": _mean_std([r["victim"]["final_loss"] for r in runs])[0],
                "seeds": ",".join(str(r["config"]["seed"]) for r in sorted(runs, key=lambda r: r["config"]["seed"])),
                "gen_s_per_image": _mean_std([r["protection"]["generation_seconds_per_image"] for r in runs])[0],
                "gradient_steps_per_image": _mean_std([r["protection"]["gradient_steps_per_image"] for r in runs])[0],
                "needs_photo": runs[0]["protection"].get("needs_photo", False),
            })
        return out

    def defense_matrix(self) -> list[dict]:
        """Methods × defenses: the headline and its ratio to the *undefended* clean row in each cell,
        with each method's image quality and generation cost (from its undefended runs)."""
        records = [r for r in self.records() if r.get("method")]
        matrix = {}
        for rec in records:
            key = (rec["method"], rec["epsilon"], rec["fraction"])
            row = matrix.setdefault(key, {"method": rec["method"], "epsilon": rec["epsilon"], "cells": {}})
            row["cells"][rec["defense"]] = (rec["headline"], rec["ratio"], rec["values"])
            if rec["defense"] == "none" or "psnr" not in row:
                row.update({k: rec[k] for k in ("psnr", "ssim", "gen_s_per_image", "gradient_steps_per_image",
                                                "needs_photo")})
        return list(matrix.values())

    def matrix_markdown(self) -> str:
        """The method × defense table (only for tables with more than one defense)."""
        defenses = self.defenses
        two_way = self.metric == "R@10"
        lines = [f"#### {self.title}: method × defense", "",
                 f"Each cell: {self.metric}" + (" (image→text / text→image R@10, then their mean)" if two_way else "")
                 + " and, in brackets, its ratio to the clean row *without* defense. A defense *restores* a "
                 "method when its ratio comes back above 0.5.", "",
                 "| training data | " + " | ".join(defenses) + " | PSNR dB | SSIM | needs photo | gradient steps / image "
                 "| generation s / image |", "|---" * (len(defenses) + 6) + "|"]
        guess = headline(self.results[0]["metrics"])[2]
        lines.append("| random guess | " + " | ".join(f"{guess:.3f}" for _ in defenses) + " | — | — | — | — | — |")
        for row in self.defense_matrix():
            label = "clean (none)" if row["method"] == "none" else f"{row['method']} ε={row['epsilon']}"
            cells = []
            for d in defenses:
                if d not in row["cells"]:
                    cells.append("—")
                    continue
                value, ratio, values = row["cells"][d]
                text = f"{value:.3f}" if not two_way else (
                    f"{values['i2t_R@10'][0]:.3f} / {values['t2i_R@10'][0]:.3f} → {value:.3f}")
                cells.append(text + ("" if ratio is None else f" ({ratio:.2f})"))
            protected = row["method"] != "none"
            psnr = f"{row['psnr']:.1f}" if protected and row["psnr"] is not None and not np.isnan(row["psnr"]) else "—"
            ssim = f"{row['ssim']:.3f}" if protected and row["ssim"] is not None and not np.isnan(row["ssim"]) else "—"
            cost = (f"{row['gradient_steps_per_image']:.0f}", f"{row['gen_s_per_image']:.4f}") if protected else ("—", "—")
            photo = ("yes" if row["needs_photo"] else "no") if protected else "—"
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {psnr} | {ssim} | {photo} | {cost[0]} | {cost[1]} |")
        return "\n".join(lines)

    def markdown(self) -> str:
        columns = self.columns()
        v = self.victim
        machines = sorted({r["machine"] for r in self.results})
        lines = [f"### {self.title}", "",
                 f"Victim recipe: {v['kind']} `{v['arch']}`, {v['epochs']} epochs, batch {v['batch_size']}, "
                 f"AdamW lr {v['lr']:g}, weight decay {v['weight_decay']:g}, warm-up {v['warmup_steps']} steps. "
                 f"Train {self.dataset['train_pairs']} pairs, test {self.dataset['test_images']} images / "
                 f"{self.dataset['test_captions']} captions. Ran on {'; '.join(machines)}. "
                 f"Ratio column: {self.metric} of the row over the clean row"
                 f"{' (mean of image→text and text→image R@10)' if self.metric == 'R@10' else ''}. Train loss: the "
                 "victim's mean loss over its last epoch. Noise protects by being a shortcut the victim fits faster "
                 "than the pictures: a protected row far below the clean row took one; once the clean row has fitted "
                 "its data too, equal losses tell nothing either way.", "",
                 "| training data | " + " | ".join(columns) + f" | {self.metric} / clean | PSNR dB | SSIM | train loss "
                 "| seeds |", "|---" * (len(columns) + 6) + "|"]
        for rec in self.records():
            cells = []
            for c in columns:
                mean, std = rec["values"][c]
                cells.append("—" if np.isnan(mean) else (f"{mean:.3f}" if not std else f"{mean:.3f} ± {std:.3f}"))
            ratio = "—" if rec["ratio"] is None else f"{rec['ratio']:.2f}"
            psnr = "—" if rec["psnr"] is None or np.isnan(rec["psnr"]) else f"{rec['psnr']:.1f}"
            ssim = "—" if rec["ssim"] is None or np.isnan(rec["ssim"]) else f"{rec['ssim']:.3f}"
            loss = "—" if rec["train_loss"] is None else f"{rec['train_loss']:.3f}"
            lines.append(f"| {rec['row']} | " + " | ".join(cells) + f" | {ratio} | {psnr} | {ssim} | {loss} "
                         f"| {rec['seeds']} |")
        return "\n".join(lines)


def plot_defenses(table: Table, out_dir: Path) -> Path | None:
    """A heat map of the method × defense ratios to the undefended clean row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    defenses = table.defenses
    if len(defenses) < 2 or table.clean is None:
        return None
    # Rows measured under the undefended setting only (other plans' methods) say nothing about defenses.
    rows = [row for row in table.defense_matrix()
            if row["method"] == "none" or any(d != "none" for d in row["cells"])]
    labels = ["clean" if r["method"] == "none" else textwrap.fill(r["method"].replace(",", ", "), 48) for r in rows]
    ratios = [[row["cells"].get(d, (None, None, None))[1] for d in defenses] for row in rows]
    grid = np.array([[np.nan if r is None else r for r in line] for line in ratios], dtype=float)
    width = 1.6 + 0.06 * max(len(line) for label in labels for line in label.split("\n")) + 0.6 * len(defenses)
    fig, ax = plt.subplots(figsize=(width, 1.6 + 0.4 * sum(label.count("\n") + 1 for label in labels)))
    image = ax.imshow(grid, cmap="RdYlGn_r", vmin=0, vmax=1.2, aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(defenses)), [defense_label(d) for d in defenses], rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    title = textwrap.fill(f"{table.title}: {table.metric} / clean without defense", width=int(12 * width))
    ax.set_title(title, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    path = out_dir / f"{table.slug}-defenses.png"
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def tables(results: list[dict]) -> list[Table]:
    """One table per (data split, victim recipe)."""
    groups = defaultdict(list)
    for result in results:
        groups[_table_key(result)].append(result)
    made = [Table(runs) for _, runs in sorted(groups.items())]
    namesakes = defaultdict(list)
    for table in made:
        namesakes[table.title].append(table)
    for same in namesakes.values():
        if len(same) == 1:
            continue
        for table in same:  # tell them apart by data size, then by recipe
            size = table.results[0]["config"].get("size", "?")
            table.label = f"{table.dataset['train_pairs']} pairs, {size} px"
        by_label = defaultdict(list)
        for table in same:
            by_label[table.label].append(table)
        for alike in by_label.values():
            if len(alike) > 1:
                differing = [k for k in alike[0].victim if len({json.dumps(t.victim.get(k)) for t in alike}) > 1]
                for table in alike:
                    recipe = json.dumps(table.victim, sort_keys=True)
                    table.label += (", recipe: " + ", ".join(_recipe_field(k, table.victim.get(k)) for k in differing)
                                    if differing else f", recipe {hashlib.sha256(recipe.encode()).hexdigest()[:6]}")
    return made


def _reference_row(label: str, values: dict) -> dict:
    """A table row that no protected training made (random guess, majority class, the pretrained start):
    values only, no ratio, image quality, loss or seeds."""
    return {"row": label, "values": values, "ratio": None, "psnr": None, "ssim": None, "train_loss": None,
            "seeds": ""}


def _recipe_field(key: str, value) -> str:
    """A victim recipe field as a table label says it (``50 epochs``, ``lr 0.001``)."""
    names = {"epochs": "{} epochs", "batch_size": "batch {}", "lr": "lr {:g}", "weight_decay": "weight decay {:g}",
             "warmup_steps": "warm-up {} steps"}
    return names[key].format(value) if key in names and value is not None else f"{key} {value}"


def write_csv(results: list[dict], path: str | os.PathLike) -> Path:
    """One row per run: configuration, protection, scalar metrics and timings, flattened (the
    confusion matrix stays in the run JSON)."""
    rows = []
    for r in results:
        row = {"run_id": r["run_id"], "dataset": r["dataset"]["name"], "method": r["config"]["method"],
               "defense": r["config"].get("defense", "none"), "exploiter": r["config"].get("exploiter", "same"),
               "protector": r["config"].get("protector", "same"),
               "epsilon": r["config"]["epsilon"], "fraction": r["config"]["fraction"], "seed": r["config"]["seed"],
               **{f"victim_{k}": v for k, v in r["config"]["victim"].items()},
               **{f"protection_{k}": v for k, v in r["protection"].items()},
               **{k: v for k, v in r["metrics"].items() if not isinstance(v, list)},
               "train_seconds": r["timings"]["train_seconds"], "train_loss": r["victim"]["final_loss"],
               "machine": r["machine"]}
        rows.append(row)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    path = Path(path)
    with atomic_write(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _save(fig, ax, path: Path) -> Path:
    import matplotlib.pyplot as plt

    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)
    return path


def plot_table(table: Table, out_dir: Path) -> list[Path]:
    """R@10 (or accuracy) against protected fraction and against ε, and clean vs protected bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in table.records() if r.get("method")]
    guess_value = headline(table.results[0]["metrics"])[2]
    written = []
    series = defaultdict(list)
    for r in records:
        if r["method"] != "none" and r["defense"] == "none":
            series[(r["method"], r["epsilon"])].append((r["fraction"], r["headline"]))
    if table.clean is not None and any(len(points) > 1 for points in series.values()):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for (method, epsilon), points in sorted(series.items()):
            if len(points) < 2:
                continue
            points = sorted([(0.0, table.clean), *points])
            ax.plot([100 * f for f, _ in points], [v for _, v in points], marker="o", label=f"{method} ε={epsilon}")
        ax.axhline(guess_value, color="grey", linestyle=":", label="random guess")
        ax.set(xlabel="protected share of the training set (%)", ylabel=table.metric, title=table.title)
        written.append(_save(fig, ax, out_dir / f"{table.slug}-fraction.png"))
    by_eps = defaultdict(list)
    for r in records:
        if r["method"] != "none" and r["fraction"] == 1.0 and r["defense"] == "none":
            by_eps[r["method"]].append((parse_epsilon(r["epsilon"]) * 255, r["headline"]))
    if any(len(points) > 1 for points in by_eps.values()):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for method, points in sorted(by_eps.items()):
            points = sorted(points)
            ax.plot([e for e, _ in points], [v for _, v in points], marker="o", label=method)
        if table.clean is not None:
            ax.axhline(table.clean, color="black", linestyle="--", label="clean")
        ax.axhline(guess_value, color="grey", linestyle=":", label="random guess")
        ax.set(xlabel="budget ε (×1/255)", ylabel=table.metric, title=table.title)
        written.append(_save(fig, ax, out_dir / f"{table.slug}-epsilon.png"))
    bars = [r for r in records if r["fraction"] == 1.0 and r["epsilon"] in ("0", "8/255") and r["defense"] == "none"]
    if bars:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.bar([r["row"].replace(" ε=8/255", "") for r in bars], [r["headline"] for r in bars], color="tab:blue")
        ax.axhline(guess_value, color="grey", linestyle=":", label="random guess")
        if table.before_training is not None:
            ax.axhline(headline(table.before_training)[1], color="tab:orange", linestyle="--", label="before fine-tuning")
        ax.set(ylabel=table.metric, title=f"{table.title}\nclean vs protected (ε=8/255, 100 %)")
        ax.tick_params(axis="x", labelsize=7, rotation=20)
        written.append(_save(fig, ax, out_dir / f"{table.slug}-bars.png"))
    return written


def write_report(folder: str | os.PathLike, out_dir: str | os.PathLike, plots: bool = True) -> dict[str, Path]:
    """``results.csv``, ``tables.md`` and the plots for every table of the runs under ``folder``."""
    results = load_results(folder)
    if not results:
        raise FileNotFoundError(f"{folder}: no run JSONs (format {RUN_FORMAT})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"csv": write_csv(results, out / "results.csv")}
    sections = []
    for table in tables(results):
        if len(table.defenses) > 1:
            sections.append(table.matrix_markdown())
            heat = plot_defenses(table, out) if plots else None
            if heat is not None:
                sections.append(f"![{heat.stem}]({heat.name})")
                written[heat.stem] = heat
        sections.append(table.markdown())
        if plots:
            for png in plot_table(table, out):
                sections.append(f"![{png.stem}]({png.name})")
                written[png.stem] = png
    write_text(out / "tables.md", "\n\n".join(sections) + "\n")
    written["markdown"] = out / "tables.md"
    return written
