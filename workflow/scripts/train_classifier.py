import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.steps import train_classifier


def main(smk):
    p = smk.params
    train_classifier(
        list(smk.input.stores),
        list(smk.output.models),
        list(smk.output.logs),
        number_class=p.number_class, ignore_label=p.ignore_label, settings=p.settings, seed=p.seed, members=p.members,
        original_images=p.original_images, memory_budget_mb=p.memory_budget_mb, progress_path=p.progress_file,
    )


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
