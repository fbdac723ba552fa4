import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.steps import augment_training_set


def main(smk):
    p = smk.params
    augment_training_set(
        p.split,
        smk.output.images,
        p.training_number,
        p.image_size,
        p.number_class,
        p.ignore_label,
        p.settings["scale"],
        p.settings["p"],
        p.settings["seed"],
    )


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
