import _repo  # noqa: F401 - makes this checkout's ddpmseg importable
from ddpmseg.cli import run_script
from ddpmseg.steps import train_classifier


def main(smk):
    p = smk.params
    train_classifier(
        list(smk.input.stores),
        smk.output.model,
        smk.output.log_json,
        p.number_class,
        p.ignore_label,
        p.settings,
        p.seed,
        p.member,
    )


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
