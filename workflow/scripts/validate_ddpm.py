import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.steps import validate_ddpm


def main(smk):
    p = smk.params
    validate_ddpm(smk.input.checkpoint, smk.output.check, p.flags, p.verify)


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
