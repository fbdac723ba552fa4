"""The decoder blocks of a config's DDPM, with their module, channels and resolution, and which of them the
config's ``features.blocks`` take: ``python -m ddpmseg.blocks CONFIG DDPM``.

A diffusers UNet's blocks come from its folder's ``unet/config.json`` alone
(:func:`ddpmseg.diffusion.diffusers_folder.decoder_blocks`); a guided-diffusion UNet's ``output_blocks``
from a forward pass on the meta device (no weights, no memory).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base.errors import DdpmsegError


def block_rows(flags: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per decoder block, in forward order: ``block`` (its index in ``features.blocks``),
    ``module`` (the module whose output it is), ``channels``, ``resolution`` (pixels per side)."""
    from .diffusion.diffusers_folder import decoder_blocks, is_diffusers
    from .diffusion.flags import decoder_block_count, model_flags

    flags = model_flags(flags)
    if is_diffusers(flags):
        return [{"block": b.index, "module": b.module, "channels": b.channels, "resolution": b.resolution}
                for b in decoder_blocks(flags)]
    from .diffusion.model import forward_profile

    shapes, _ = forward_profile(flags, list(range(decoder_block_count(flags))))
    return [{"block": index, "module": f"output_blocks.{index}", "channels": shape[1], "resolution": shape[-1]}
            for index, shape in sorted(shapes.items())]


def blocks_table(rows: Sequence[dict[str, Any]], chosen: Sequence[int]) -> str:
    """A Markdown table of the rows, the blocks of ``chosen`` marked."""
    lines = ["| block | module | channels | resolution | in features.blocks |", "|---|---|---|---|---|"]
    lines += [f"| {r['block']} | `{r['module']}` | {r['channels']} | {r['resolution']} | {'yes' if r['block'] in chosen else ''} |"
              for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddpmseg.blocks", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the workflow's config file")
    parser.add_argument("ddpm", help="a key of the config's ddpms")
    parser.add_argument("--workdir", default=".", help="the workflow's working directory (relative paths start there)")
    args = parser.parse_args(argv)
    from .config.load import load_config

    try:
        # not cross-checked: the blocks are listed most when features.blocks does not fit them
        config = load_config(Path(args.config), workdir=args.workdir, cross_check=False)
        if args.ddpm not in config["ddpms"]:
            raise DdpmsegError(f"DDPM '{args.ddpm}' is not a key of ddpms ({', '.join(config['ddpms'])})")
        entry = config["ddpms"][args.ddpm]
        rows = block_rows(entry["flags"])
    except DdpmsegError as error:
        print(f"ddpmseg error: {error}", file=sys.stderr)
        return 1
    print(f"DDPM {args.ddpm} (source {entry['source']}, {entry['flags']['image_size']} px images): "
          f"{len(rows)} decoder blocks")
    print(blocks_table(rows, config["features"]["blocks"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
