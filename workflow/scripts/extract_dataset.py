import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.steps import extract_dataset


def main(smk):
    p = smk.params
    extract_dataset(smk.input.archive, smk.output.dataset, p.prefix, p.verify)


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
