import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.steps import validate_dataset


def main(smk):
    p = smk.params
    validate_dataset(
        p.splits,
        p.counts,
        smk.output.summary,
        image_size=p.image_size,
        number_class=p.number_class,
        ignore_label=p.ignore_label,
    )


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
