"""Figures and tables of the Snakemake report (``snakemake --report``): plain functions over paths and
DataFrames. Every file is written atomically; plots use matplotlib's Agg canvas (no display, no pyplot
state)."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .files import atomic_path, load_json, save_text
from .report import read_table, write_csv
from .visualize import IGNORE_COLOUR, default_palette

PANEL_GAP = 2  # px between the tiles of a prediction panel (ddpmseg.visualize.panel's default)

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; font-size: 14px;
       color: #1e293b; background: #ffffff; margin: 1.2em; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #cbd5e1; padding: 0.3em 0.7em; }
th { background: #e2e8f0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #f8fafc; }
p.note { color: #475569; }
"""


# ---------------------------------------------------------------- HTML


def html_document(title: str, body: str) -> str:
    """A self-contained HTML page (inline CSS, no external resources)."""
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _is_number(text: str) -> bool:
    """Whether a cell starts with a number (12.3, -0.5, 1,234, 12.3 ± 0.4, 0:01:15)."""
    return re.match(r"[-+]?\d", text) is not None


def html_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An HTML table; cells that start with a number are right-aligned."""
    lines = ["<table>", "<thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr></thead>"]
    lines.append("<tbody>")
    for row in rows:
        cells = []
        for value in row:
            text = str(value)
            cls = ' class="num"' if _is_number(text) else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</tbody>\n</table>")
    return "\n".join(lines)


def _table_cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def markdown_to_html(text: str) -> str:
    """The Markdown that ``ddpmseg.report.collect_tables`` writes (headings, pipe tables, paragraphs)
    as HTML body text; all text is escaped."""
    blocks: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            blocks.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|"):
            table = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                table.append(lines[i])
                i += 1
            header = _table_cells(table[0])
            body = [_table_cells(row) for row in table[1:] if not set(row.replace("|", "").strip()) <= set("-: ")]
            blocks.append(html_table(header, body))
        else:
            paragraph = []
            while i < len(lines) and lines[i].strip() and not lines[i].lstrip().startswith(("#", "|")):
                paragraph.append(lines[i].strip())
                i += 1
            blocks.append(f"<p>{html.escape(' '.join(paragraph))}</p>")
    return "\n".join(blocks)


def write_html(path: str | Path, title: str, body: str) -> None:
    save_text(path, html_document(title, body))


# ---------------------------------------------------------------- per-class IoU


def per_class_summary(per_class: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std (ddof=1) over seeds of the IoU of every (dataset, variant, class)."""
    grouped = per_class.groupby(["dataset", "variant", "class_id"], sort=False)["iou"]
    return grouped.agg(mean="mean", std="std", seeds="count").reset_index()


def _mean_std(mean: float, std: float) -> str:
    return f"{mean:.2f}" if np.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def per_class_html(
    per_class: pd.DataFrame,
    datasets: Sequence[str],
    variants: Sequence[str],
    class_names: Mapping[str, Sequence[str]],
) -> str:
    """Rows: (dataset, class); columns: variants; cells: IoU % as mean ± std over seeds."""
    summary = per_class_summary(per_class).set_index(["dataset", "variant", "class_id"])
    rows = []
    for dataset in datasets:
        ids = sorted(per_class.loc[per_class["dataset"] == dataset, "class_id"].unique())
        for class_id in ids:
            row = [dataset, class_names[dataset][class_id]]
            for variant in variants:
                key = (dataset, variant, class_id)
                row.append(_mean_std(*summary.loc[key, ["mean", "std"]]) if key in summary.index else "–")
            rows.append(row)
    return (
        "<h1>IoU (%) per class, mean ± std over seeds</h1>\n"
        + html_table(["dataset", "class", *variants], rows)
        + "\n<p class=\"note\">From results/tables/per_class.csv (final result, with TTA where the variant has it).</p>"
    )


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


# ---------------------------------------------------------------- training curves


def plot_training_curves(logs: Sequence[tuple[int, int, Mapping[str, Any]]], path: str | Path, title: str) -> None:
    """Training loss per epoch: one line per (seed, member), coloured by seed.

    ``logs``: (seed, member, training log) with the log's ``epoch_losses`` (the mean loss of each epoch).
    """
    figure = _new_figure(7.0, 4.2)
    axes = figure.add_subplot()
    seeds = list(dict.fromkeys(seed for seed, _, _ in logs))
    members = {seed: 0 for seed in seeds}
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
        members[seed] += 1
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=f"C{k % 10}", label=f"seed {s} ({members[s]} member{'s' if members[s] != 1 else ''})")
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


# ---------------------------------------------------------------- example predictions


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


# ---------------------------------------------------------------- benchmarks


def benchmark_rule(path: str | Path) -> str:
    """The rule of a benchmark file ``.../benchmarks/<rule>/...tsv``."""
    parts = Path(path).parts
    if "benchmarks" not in parts[:-2]:
        raise ValueError(f"{path}: not under a benchmarks/<rule>/ folder")
    index = len(parts) - 1 - parts[::-1].index("benchmarks")
    return parts[index + 1]


def read_benchmarks(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per job: rule, file, wall time ``s`` and peak memory ``max_rss`` (MB) of a Snakemake
    benchmark TSV (the mean over its repeats; missing values, written as NA or -, become NaN)."""
    rows = []
    for path in paths:
        table = pd.read_csv(path, sep="\t")
        values = {c: pd.to_numeric(table[c], errors="coerce").mean() for c in ("s", "max_rss", "cpu_time") if c in table}
        rows.append({"rule": benchmark_rule(path), "file": str(path), **values})
    return pd.DataFrame(rows, columns=["rule", "file", "s", "max_rss", "cpu_time"])


def hms(seconds: float) -> str:
    if np.isnan(seconds):
        return "–"
    seconds = int(np.rint(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def summarize_benchmarks(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule (in order of first appearance): jobs, total and max wall time (s), total CPU time (s),
    max peak RSS (MB)."""
    grouped = jobs.groupby("rule", sort=False)
    return pd.DataFrame(
        {
            "jobs": grouped.size(),
            "total_s": grouped["s"].sum(min_count=1),
            "max_s": grouped["s"].max(),
            "cpu_time_s": grouped["cpu_time"].sum(min_count=1),
            "max_rss_mb": grouped["max_rss"].max(),
        }
    ).reset_index()


def resources_html(summary: pd.DataFrame) -> str:
    def number(value: float, digits: int) -> str:
        return "–" if value is None or math.isnan(value) else f"{value:,.{digits}f}"

    rows = [
        [r.rule, r.jobs, number(r.total_s, 1), hms(r.total_s), number(r.max_s, 1), number(r.cpu_time_s, 1), number(r.max_rss_mb, 0)]
        for r in summary.itertuples()
    ]
    total = summary["total_s"].sum()
    rows.append(["all", summary["jobs"].sum(), number(total, 1), hms(total), number(summary["max_s"].max(), 1),
                 number(summary["cpu_time_s"].sum(), 1), number(summary["max_rss_mb"].max(), 0)])
    header = ["rule", "jobs", "total wall time (s)", "total (h:m:s)", "max wall time (s)", "total CPU time (s)",
              "max peak RSS (MB)"]
    return (
        "<h1>Wall time and peak memory per rule</h1>\n"
        + html_table(header, rows)
        + "\n<p class=\"note\">From the Snakemake benchmark files under results/benchmarks/&lt;rule&gt;/ "
        "(one per job, written when the job ends): wall time <code>s</code>, CPU time <code>cpu_time</code> "
        "and peak resident memory <code>max_rss</code> of the job's processes. Jobs run in parallel, so the "
        "total wall time is the sum over jobs, not the time the run took.</p>"
    )


# ---------------------------------------------------------------- the report rule


def make_report_figures(
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

    ``tables``: paths ``miou_md``, ``per_class`` and ``per_image`` of the collected tables.
    ``member_logs`` and ``predictions``: ({dataset, variant, seed[, member]}, path) pairs.
    ``outputs``: paths ``miou``, ``per_class_table``, ``resources``, ``resources_csv``, and the lists
    ``per_class`` (one PNG per dataset), ``curves`` (per dataset and variant) and ``examples`` (per
    dataset, variant, then best and worst), in the order of ``datasets`` and ``variants``.
    """
    names = {d: list(class_names.get(d) or [str(c) for c in range(number_class[d])]) for d in datasets}
    colours = {d: palettes.get(d) or default_palette(number_class[d]) for d in datasets}

    write_html(outputs["miou"], "mIoU", markdown_to_html(Path(tables["miou_md"]).read_text()))
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
