import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.steps import train_classifier


def main(smk):
    p = smk.params
    train_classifier(
        list(smk.input.stores),
        list(smk.output.models),
        list(smk.output.logs),
        p.number_class,
        p.ignore_label,
        p.settings,
        p.seed,
        p.members,
        p.original_images,
        p.memory_budget_mb,
        p.progress_file,
    )


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
