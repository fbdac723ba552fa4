import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.steps import train_demo_ddpm


def main(smk):
    p = smk.params
    train_demo_ddpm(
        smk.input.dataset,
        smk.output.checkpoint,
        smk.output.log_json,
        flags=p.flags,
        iterations=p.iterations,
        batch_size=p.batch_size,
        lr=p.lr,
        seed=p.seed,
    )


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
