import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.steps import train_demo_ddpm


def main(smk):
    p = smk.params
    train_demo_ddpm(
        smk.input.dataset,
        smk.output.checkpoint,
        smk.output.log_json,
        p.flags,
        p.iterations,
        p.batch_size,
        p.lr,
        p.seed,
    )


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
