import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.steps import predict_split


def main(smk):
    p = smk.params
    predict_split(
        list(smk.input.stores),
        list(smk.input.members),
        smk.output.predictions,
        number_class=p.number_class,
        ignore_label=p.ignore_label,
        palette=p.palette,
        tta_views=p.tta_views,
        tta_stores=list(smk.input.tta_stores),
        tta_folders=list(smk.input.tta_folders),
    )


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
