import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.steps import predict_split


def main(smk):
    p = smk.params
    predict_split(
        list(smk.input.stores),
        list(smk.input.members),
        smk.output.predictions,
        p.number_class,
        p.ignore_label,
        p.palette,
        p.tta_views,
        list(smk.input.tta_stores),
        list(smk.input.tta_folders),
    )


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
