"""Training speed of a DDPM with ddpmseg.diffusion.training.loop: iterations/s of the demo UNet on the CPU, the
whole batch at once against two microbatches of half of it; and, when a GPU is present, of the paper's
UNet on it (float32 and fp16).

Every row is ``ddpm_training_speed`` (one process, random images, the same iteration code as
``train_ddpm``: guided-diffusion's losses, AdamW, the EMA update), after one warm-up iteration.
"""

from __future__ import annotations

from typing import Any

import common
import performance_doc
import yaml
from performance_doc import fmt

from ddpmseg.diffusion.training.loop import ddpm_training_speed
from ddpmseg.config.registry import paper_model_flags

NAME = "ddpm_training"
DEMO_DDPM = "demo_ddpm"
PAPER_GPU_BATCH = 4  # the paper's 256 px UNet, per GPU, as guided-diffusion's fine-tuning runs take it


def demo_settings() -> tuple[dict[str, Any], int]:
    """The demo UNet's flags (config.yaml) and its training batch size (the config's, else the schema's
    default)."""
    config = yaml.safe_load((common.REPO / "config.yaml").read_text())
    schema = yaml.safe_load((common.REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    entry = config["ddpms"][DEMO_DDPM]
    batch = (entry.get("training") or {}).get("batch_size") or (config.get("demo", {}).get("ddpm_training") or {}).get("batch_size")
    if batch is None:
        batch = schema["properties"]["demo"]["properties"]["ddpm_training"]["properties"]["batch_size"]["default"]
    return entry["flags"], int(batch)


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=None, help="timed iterations per row (default 10, --quick 3)")
    args = common.parse_args(p)
    iterations = args.iterations or (3 if args.quick else 10)
    threads = common.set_threads(args.threads)
    flags, batch = demo_settings()

    rows = []
    for microbatch in (batch, batch // 2):
        print(f"demo UNet, batch {batch}, microbatch {microbatch} ...", flush=True)
        rate = ddpm_training_speed(flags, batch, iterations, "cpu", microbatch=microbatch)
        rows.append(["demo (config.yaml)", "cpu", "float32", batch, microbatch, fmt(rate, 2), fmt(rate * batch, 1)])
    import torch

    if torch.cuda.is_available():
        for fp16 in (False, True):
            print(f"paper UNet on CUDA, fp16={fp16} ...", flush=True)
            rate = ddpm_training_speed(paper_model_flags(), PAPER_GPU_BATCH, iterations, "cuda", fp16=fp16)
            rows.append(["paper (256 px)", torch.cuda.get_device_name(), "fp16" if fp16 else "float32",
                         PAPER_GPU_BATCH, PAPER_GPU_BATCH, fmt(rate, 2), fmt(rate * PAPER_GPU_BATCH, 1)])
    else:
        rows.append(["paper (256 px)", "no GPU here", "", "", "", "n/a", "n/a"])

    header = ["UNet", "device", "precision", "batch", "microbatch", "iterations/s", "images/s"]
    notes = f"""
{iterations} timed iterations per row after one warm-up, in one process (`ddpm_training_speed`:
random images, guided-diffusion's losses with the uniform timestep sampler, AdamW, the EMA update).
Microbatches trade speed for memory: the gradient is the same (the batch mean), the model runs
once per microbatch. The GPU rows are also what `benchmarks/gpu_check.py` reports when a GPU is lent.
"""
    body = performance_doc.markdown_table(header, rows) + "\n" + notes
    performance_doc.report(NAME, "DDPM training speed", body, threads, not args.print_only)


if __name__ == "__main__":
    main()
