import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.steps import make_tta_view


def main(smk):
    p = smk.params
    make_tta_view(
        p.split,
        smk.output.images,
        p.testing_number,
        p.image_size,
        p.number_class,
        p.ignore_label,
        p.view,
        p.seed,
    )


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
