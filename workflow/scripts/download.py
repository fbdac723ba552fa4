import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.steps import fetch


def main(smk):
    p = smk.params
    fetch(
        p.verify["url"],
        smk.output[0],
        sha256=p.verify["sha256"],
        lock_file=p.verify["lock_file"],
        lock_key=p.verify["lock_key"],
        retries=p.retries,
        backoff_s=p.backoff_s,
        timeout_s=p.timeout_s,
    )


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
