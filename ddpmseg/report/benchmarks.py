"""Wall time and peak memory of a run's jobs, from Snakemake's benchmark files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


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
