import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.steps import extract_features


def main(smk):
    p = smk.params
    start, stop = p.shard
    extract_features(
        p.split,
        p.split_size,
        start,
        stop,
        smk.input.checkpoint,
        smk.input.check,
        p.flags,
        p.steps,
        p.blocks,
        p.noise_seed,
        p.batch_size,
        p.number_class,
        p.ignore_label,
        smk.output.store,
    )


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
