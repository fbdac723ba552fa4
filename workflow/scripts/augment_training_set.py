import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.config import AugmentationSettings
from ddpmseg.steps import augment_training_set


def main(smk):
    p = smk.params
    augment_training_set(
        p.split,
        smk.output.images,
        training_number=p.training_number,
        image_size=p.image_size,
        number_class=p.number_class,
        ignore_label=p.ignore_label,
        augmentation=AugmentationSettings(**p.settings),
    )


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
