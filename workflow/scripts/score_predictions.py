from pathlib import Path

import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.steps import score_predictions


def main(smk):
    p = smk.params
    score_predictions(
        smk.input.predictions,
        list(smk.input.stores),
        Path(smk.output.summary).parent,
        number_class=p.number_class,
        ignore_label=p.ignore_label,
        class_names=p.class_names,
    )


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
