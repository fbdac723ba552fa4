"""Rule of ``report.smk``: the figures and HTML tables of ``snakemake --report``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..report.figures import make_report_figures as write_report_figures

File = str | Path
Files = Sequence[str | Path]
Runs = Sequence[Mapping[str, Any]]


def make_report_figures(
    *,
    miou_csv: File, per_class_csv: File, per_image_csv: File, member_logs: Files, predictions: Files, benchmarks: Files,
    miou: File, per_class_table: File, resources: File, resources_csv: File, per_class: Files, curves: Files, examples: Files,
    member_runs: Runs, prediction_runs: Runs, datasets: Sequence[str], variants: Sequence[str],
    class_names: Mapping[str, Sequence[str] | None], palettes: Mapping[str, Sequence[Sequence[int]] | None],
    number_class: Mapping[str, int],
) -> None:
    """Write the report's figures and tables (see :func:`ddpmseg.report.figures.make_report_figures`) from the
    collected tables (``*_csv``), the members' training logs (in the order of ``member_runs``), the
    runs' predictions (in the order of ``prediction_runs``) and the heavy jobs' ``benchmarks``.

    The parameters are grouped as the rule names them: inputs, outputs, then params.
    """
    write_report_figures(
        tables={"miou": miou_csv, "per_class": per_class_csv, "per_image": per_image_csv},
        member_logs=list(zip(member_runs, member_logs, strict=True)),
        predictions=list(zip(prediction_runs, predictions, strict=True)),
        benchmarks=list(benchmarks),
        outputs={
            "miou": miou, "per_class_table": per_class_table, "resources": resources, "resources_csv": resources_csv,
            "per_class": list(per_class), "curves": list(curves), "examples": list(examples),
        },
        datasets=datasets, variants=variants, class_names=class_names, palettes=palettes, number_class=number_class,
    )
