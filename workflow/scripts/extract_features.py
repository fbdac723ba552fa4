import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.steps import extract_features


def main(smk):
    p = smk.params
    start, stop = p.shard
    extract_features(
        p.split,
        count=p.split_size, start=start, stop=stop, checkpoint=smk.input.checkpoint, check_json=smk.input.check,
        flags=p.flags, steps=p.steps, blocks=p.blocks, noise_seed=p.noise_seed, batch_size=p.batch_size,
        number_class=p.number_class, ignore_label=p.ignore_label, out=smk.output.store,
    )


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
