from pathlib import Path

import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.steps import make_tables


def main(smk):
    runs = [
        {**run, "scores": str(Path(summary).parent)}
        for run, summary in zip(smk.params.runs, smk.input.scores, strict=True)
    ]
    make_tables(runs, Path(smk.output.markdown).parent, smk.params.variants, smk.params.datasets)


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
