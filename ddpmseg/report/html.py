"""The report's HTML tables (``snakemake --report``): self-contained pages rendered from DataFrames,
written atomically."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..base.files import save_text
from .benchmarks import hms
from .tables import (
    DELTA_NOTE,
    MIOU_TITLE,
    NOT_PUBLISHED,
    PUBLISHED_TITLE,
    miou_cells,
    paper_results_note,
    per_class_summary,
    published_comparison,
)

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


def frame_html(cells: pd.DataFrame) -> str:
    """A DataFrame of display cells as an HTML table (its columns as the header)."""
    return html_table(list(cells.columns), cells.itertuples(index=False))


def write_html(path: str | Path, title: str, body: str) -> None:
    save_text(path, html_document(title, body))


def miou_html(summary: pd.DataFrame, variants: Sequence[str], datasets: Sequence[str]) -> str:
    """The content of ``miou.md`` as HTML body text, from the summary of ``miou.csv``."""
    comparison = published_comparison(summary, variants, datasets)
    blocks = [
        f"<h1>{html.escape(MIOU_TITLE)}</h1>",
        frame_html(miou_cells(summary, variants, datasets)),
        f"<p>{html.escape(DELTA_NOTE)}</p>",
        f"<h2>{html.escape(PUBLISHED_TITLE)}</h2>",
    ]
    if comparison.empty:
        blocks.append(f"<p>{html.escape(NOT_PUBLISHED)}</p>")
    else:
        blocks.append(frame_html(comparison))
        note = paper_results_note(datasets)
        if note is not None:
            blocks.append(f"<p>{html.escape(note)}</p>")
    return "\n".join(blocks)


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
