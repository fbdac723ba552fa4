"""Figures of the Snakemake report (``snakemake --report``) and the rule that writes them with the
report's tables: plain functions over paths and DataFrames. Every file is written atomically; plots use
matplotlib's Agg canvas (no display, no pyplot state)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..base.files import atomic_path, load_json
from .html import miou_html, per_class_html, resources_html, write_html
from .benchmarks import read_benchmarks, summarize_benchmarks
from .tables import per_class_summary
from ..base.files import read_table, write_csv
from ..prediction.visualize import IGNORE_COLOUR, default_palette

PANEL_GAP = 2  # px between the tiles of a prediction panel (ddpmseg.prediction.visualize.panel's default)


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path: str | Path) -> None:
    """Save a matplotlib figure as PNG, atomically."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)


def plot_per_class_iou(
    per_class: pd.DataFrame,
    dataset: str,
    variants: Sequence[str],
    class_names: Sequence[str],
    path: str | Path,
) -> None:
    """Grouped bars for one dataset: IoU % per class (and mIoU, last), one bar per variant (mean over
    seeds, error bar: sample std over seeds when there are at least two)."""
    data = per_class[per_class["dataset"] == dataset]
    if data.empty:
        raise ValueError(f"no per-class scores of dataset {dataset}")
    summary = per_class_summary(data).set_index(["variant", "class_id"])
    ids = sorted(data["class_id"].unique())
    labels = [class_names[c] for c in ids] + ["mIoU"]
    present = [v for v in variants if v in set(data["variant"])]
    figure = _new_figure(max(6.0, 0.3 * len(labels) * max(len(present), 2) + 2.0), 4.2)
    axes = figure.add_subplot()
    width = 0.8 / len(present)
    colours = [f"C{k % 10}" for k in range(len(present))]
    for k, variant in enumerate(present):
        means = [summary.loc[(variant, c), "mean"] if (variant, c) in summary.index else np.nan for c in ids]
        stds = [summary.loc[(variant, c), "std"] if (variant, c) in summary.index else np.nan for c in ids]
        per_seed = data[data["variant"] == variant].groupby("seed")["iou"].mean()
        means.append(per_seed.mean())
        stds.append(per_seed.std())
        x = np.arange(len(labels)) - 0.4 + width * (k + 0.5)
        errors = np.nan_to_num(np.asarray(stds, dtype=float))
        axes.bar(x, means, width, yerr=errors if errors.any() else None, capsize=2, label=variant, color=colours[k])
    axes.axvline(len(ids) - 0.5, color="0.6", linewidth=0.8, linestyle="--")
    axes.set_xticks(np.arange(len(labels)), labels, rotation=45 if len(labels) > 8 else 0, ha="right" if len(labels) > 8 else "center")
    axes.set_ylim(0, 100)
    axes.set_ylabel("IoU (%)")
    seeds = data.groupby("variant")["seed"].nunique().max()
    axes.set_title(f"{dataset}: IoU per class, mean over {seeds} seed{'s' if seeds != 1 else ''}")
    axes.grid(axis="y", color="0.9")
    axes.set_axisbelow(True)
    axes.legend(title="variant", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save_figure(figure, path)


def plot_training_curves(logs: Sequence[tuple[int, int, Mapping[str, Any]]], path: str | Path, title: str) -> None:
    """Training loss per epoch: one line per (seed, member), coloured by seed.

    ``logs``: (seed, member, training log) with the log's ``epoch_losses`` (the mean loss of each epoch).
    """
    figure = _new_figure(7.0, 4.2)
    axes = figure.add_subplot()
    seeds = list(dict.fromkeys(seed for seed, _, _ in logs))
    member_counts = {seed: 0 for seed in seeds}
    longest = 1
    for seed, member, log in logs:
        losses = [float(x) for x in log.get("epoch_losses", [])]
        if not losses:
            continue
        longest = max(longest, len(losses))
        epochs = np.arange(1, len(losses) + 1)
        colour = f"C{seeds.index(seed) % 10}"
        axes.plot(epochs, losses, color=colour, linewidth=1.2, alpha=0.85, marker="o" if len(losses) <= 20 else None,
                  markersize=3)
        member_counts[seed] += 1
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=f"C{k % 10}", label=f"seed {s} ({member_counts[s]} member{'s' if member_counts[s] != 1 else ''})")
               for k, s in enumerate(seeds)]
    axes.legend(handles=handles, fontsize="small", loc="upper right")
    values = [float(x) for _, _, log in logs for x in log.get("epoch_losses", [])]
    if values and min(values) > 0:
        from matplotlib.ticker import FuncFormatter

        axes.set_yscale("log")
        plain = FuncFormatter(lambda y, _: f"{y:g}")  # 0.5 rather than 5 x 10^-1
        axes.yaxis.set_major_formatter(plain)
        decades = math.log10(max(values) / min(values))
        shown = range(2, 10) if decades < 1 else (2, 5) if decades < 2.5 else ()  # label fewer 2..9 ticks on a long axis

        def minor(y: float, _: int) -> str:
            return f"{y:g}" if round(y / 10 ** math.floor(math.log10(y) + 1e-9)) in shown else ""

        axes.yaxis.set_minor_formatter(FuncFormatter(minor))
    axes.set_xlabel("epoch")
    axes.set_ylabel("mean training loss (cross-entropy)")
    axes.set_xlim(0.5, longest + 0.5)
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(color="0.9")
    axes.set_title(title)
    save_figure(figure, path)


def select_examples(per_image: pd.DataFrame, dataset: str, variant: str) -> dict[str, pd.Series]:
    """The best and the worst (seed, test image) of a variant by per-image mIoU (final result).

    Ties go to the smaller seed, then the smaller image name. Images with no scored class (NaN) are skipped.
    """
    rows = per_image[(per_image["dataset"] == dataset) & (per_image["variant"] == variant)].dropna(subset=["miou"])
    if rows.empty:
        raise ValueError(f"no per-image scores of {dataset}/{variant}")
    rows = rows.assign(image=rows["image"].astype(str)).sort_values(["seed", "image"], kind="stable")
    return {"best": rows.loc[rows["miou"].idxmax()], "worst": rows.loc[rows["miou"].idxmin()]}


def panel_columns(width: int, height: int) -> list[str] | None:
    """Titles of the tiles of a prediction panel (image | truth | [plain |] final), from its size."""
    tiles = (width + PANEL_GAP) / (height + PANEL_GAP)
    if tiles == 3:
        return ["image", "ground truth", "prediction"]
    if tiles == 4:
        return ["image", "ground truth", "ensemble without TTA", "prediction (with TTA)"]
    return None


def plot_example(
    panel_path: str | Path,
    path: str | Path,
    title: str,
    class_names: Sequence[str],
    palette: Sequence[Sequence[int]],
) -> None:
    """A prediction panel, enlarged (nearest neighbour), with a title, tile titles and a class legend."""
    from matplotlib.patches import Patch
    from PIL import Image

    with Image.open(panel_path) as image:
        pixels = np.asarray(image.convert("RGB"))
    height, width = pixels.shape[:2]
    columns = panel_columns(width, height)
    tile_inches = 2.4
    figure = _new_figure(max(6.0, tile_inches * width / height), tile_inches + 1.3)
    axes = figure.add_subplot()
    axes.imshow(pixels, interpolation="nearest")
    axes.set_xticks([])
    axes.set_yticks([])
    if columns:
        centres = [(k + 0.5) * height + k * PANEL_GAP for k in range(len(columns))]
        axes.set_xticks(centres, columns)
        axes.xaxis.tick_top()
        axes.tick_params(axis="x", length=0)
    for spine in axes.spines.values():
        spine.set_visible(False)
    handles = [Patch(facecolor=np.asarray(palette[c]) / 255, edgecolor="0.5", label=name) for c, name in enumerate(class_names)]
    handles.append(Patch(facecolor=np.asarray(IGNORE_COLOUR) / 255, edgecolor="0.5", label="ignored"))
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), fontsize="small", frameon=False)
    figure.suptitle(title)
    save_figure(figure, path)



def make_report_figures(
    *,
    tables: Mapping[str, str | Path],
    member_logs: Sequence[tuple[Mapping[str, Any], str | Path]],
    predictions: Sequence[tuple[Mapping[str, Any], str | Path]],
    benchmarks: Sequence[str | Path],
    outputs: Mapping[str, Any],
    datasets: Sequence[str],
    variants: Sequence[str],
    class_names: Mapping[str, Sequence[str] | None],
    palettes: Mapping[str, Sequence[Sequence[int]] | None],
    number_class: Mapping[str, int],
) -> None:
    """Write every figure and table of the report.

    ``tables``: paths ``miou`` (miou.csv), ``per_class`` and ``per_image`` of the collected tables.
    ``member_logs`` and ``predictions``: ({dataset, variant, seed[, member]}, path) pairs.
    ``outputs``: paths ``miou``, ``per_class_table``, ``resources``, ``resources_csv``, and the lists
    ``per_class`` (one PNG per dataset), ``curves`` (per dataset and variant) and ``examples`` (per
    dataset, variant, then best and worst), in the order of ``datasets`` and ``variants``.
    """
    names = {d: list(class_names.get(d) or [str(c) for c in range(number_class[d])]) for d in datasets}
    colours = {d: palettes.get(d) or default_palette(number_class[d]) for d in datasets}

    write_html(outputs["miou"], "mIoU", miou_html(read_table(tables["miou"]), variants, datasets))
    per_class = read_table(tables["per_class"])
    write_html(outputs["per_class_table"], "IoU per class", per_class_html(per_class, datasets, variants, names))
    for dataset, path in zip(datasets, outputs["per_class"], strict=True):
        plot_per_class_iou(per_class, dataset, variants, names[dataset], path)

    logs: dict[tuple[str, str], list] = {}
    for run, path in member_logs:
        logs.setdefault((run["dataset"], run["variant"]), []).append((run["seed"], run["member"], load_json(path)))
    curves = iter(outputs["curves"])
    for dataset in datasets:
        for variant in variants:
            plot_training_curves(logs[(dataset, variant)], next(curves), f"{dataset} / {variant}: training loss per epoch")

    per_image = read_table(tables["per_image"])
    folders = {(r["dataset"], r["variant"], int(r["seed"])): Path(p) for r, p in predictions}
    examples = iter(outputs["examples"])
    for dataset in datasets:
        for variant in variants:
            chosen = select_examples(per_image, dataset, variant)
            for rank in ("best", "worst"):
                row = chosen[rank]
                panel_path = folders[(dataset, variant, int(row["seed"]))] / "panels" / f"{row['image']}.png"
                title = (f"{dataset} / {variant}: {rank} test image {row['image']} (seed {int(row['seed'])}), "
                         f"mIoU {row['miou']:.1f} %")
                plot_example(panel_path, next(examples), title, names[dataset], colours[dataset])

    jobs = read_benchmarks(benchmarks)
    summary = summarize_benchmarks(jobs)
    write_csv(outputs["resources_csv"], summary)
    write_html(outputs["resources"], "Wall time and peak memory", resources_html(summary))
