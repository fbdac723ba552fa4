import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.steps import make_tta_view


def main(smk):
    p = smk.params
    make_tta_view(
        p.split,
        smk.output.images,
        testing_number=p.testing_number, image_size=p.image_size, number_class=p.number_class,
        ignore_label=p.ignore_label, view=p.view, seed=p.seed,
    )


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
