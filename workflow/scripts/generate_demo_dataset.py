import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.demo import write_demo_dataset


def main(smk):
    p = smk.params
    write_demo_dataset(
        smk.output[0], seed=p.seed, image_size=p.image_size, train=p.train, test=p.test, unlabelled=p.unlabelled
    )


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
