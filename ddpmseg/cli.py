"""The ``ddpmseg`` command: use a trained run outside the workflow.

    ddpmseg export --dataset D --variant V --seed S [--config config.yaml] [--workdir .] --out PATH [--tar] [--include-ddpm]
    ddpmseg predict BUNDLE IMAGE_OR_FOLDER... --out DIR [--tta/--no-tta] [--batch-size N] [--ddpm PATH]
    ddpmseg suggest BUNDLE FOLDER --top K --out DIR [--batch-size N] [--ddpm PATH]

A bad input ends the command with one line, ``ddpmseg error: ...``, its last, and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .base.errors import DdpmsegError


def export_command(args: argparse.Namespace) -> int:
    from .use.bundle import export_bundle
    from .use.run import exported_run
    from .config.load import load_config

    workdir = Path(args.workdir)
    config_path = Path(args.config) if Path(args.config).is_absolute() else workdir / args.config
    if not config_path.is_file():
        raise DdpmsegError(f"--config: {config_path} does not exist")
    config = load_config(config_path)
    segmenter, run = exported_run(config, dataset=args.dataset, variant=args.variant, seed=args.seed, workdir=workdir)
    out = export_bundle(out=Path(args.out), segmenter=segmenter, run=run, include_ddpm=args.include_ddpm, as_tar=args.tar)
    miou = "not scored" if run.test_miou is None else f"test mIoU {run.test_miou:.2f} %"
    if run.ddpm_sha256 is None:
        ddpm = "no DDPM (RGB control)"
    else:
        ddpm = f"DDPM {run.ddpm_name} " + ("included" if args.include_ddpm else f"referenced by sha256 {run.ddpm_sha256[:12]}...")
    print(f"bundle {out}: {run.dataset}/{run.variant}/seed{run.seed}, {len(segmenter.member_paths)} members, {miou}, {ddpm}")
    return 0


def predict_command(args: argparse.Namespace) -> int:
    from .use.bundle import load_bundle
    from .data.listing import image_files
    from .use.labelling import label_images

    segmenter = load_bundle(Path(args.bundle), ddpm_checkpoint=_optional_path(args.ddpm))
    images = image_files(args.images)
    if not images:
        raise DdpmsegError(f"no image files in {', '.join(args.images)}")
    summary = label_images(segmenter, images, Path(args.out), tta=args.tta, batch_size=args.batch_size)
    print(f"{summary.labelled} labelled, {summary.skipped} already labelled (skipped), {len(summary.failed)} failed; "
          f"outputs in {args.out}")
    for path, reason in summary.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    if summary.failed:
        raise DdpmsegError(f"{len(summary.failed)} of {len(images)} images could not be labelled (listed above)")
    return 0


def suggest_command(args: argparse.Namespace) -> int:
    from .use.bundle import load_bundle
    from .data.listing import image_files
    from .use.suggest import suggest_images

    segmenter = load_bundle(Path(args.bundle), ddpm_checkpoint=_optional_path(args.ddpm))
    images = image_files([args.folder])
    if not images:
        raise DdpmsegError(f"{args.folder}: no image files")
    ranking = suggest_images(segmenter, images, Path(args.out), top=args.top, batch_size=args.batch_size)
    print(ranking.head(args.top).to_string(index=False))
    print(f"ranking of {len(ranking)} images and the contact sheet of the {min(args.top, len(ranking))} most "
          f"uncertain in {args.out}")
    return 0


def _optional_path(value: str | None) -> Path | None:
    return Path(value) if value is not None else None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(prog="ddpmseg", description="Use a run trained by the ddpmseg workflow.")
    main_parser.add_argument("--version", action="version", version=f"ddpmseg {__version__}")
    commands = main_parser.add_subparsers(dest="command", metavar="COMMAND")

    export = commands.add_parser("export", help="write the bundle of a trained run (dataset, variant, seed)")
    export.add_argument("--dataset", required=True)
    export.add_argument("--variant", required=True)
    export.add_argument("--seed", required=True, type=int)
    export.add_argument("--config", default="config.yaml", help="the workflow's config (relative to --workdir)")
    export.add_argument("--workdir", default=".", help="the workflow's working directory (holds results/)")
    export.add_argument("--out", required=True, help="the bundle folder, or .tar file with --tar")
    export.add_argument("--tar", action="store_true", help="write one .tar file instead of a folder")
    export.add_argument("--include-ddpm", action="store_true", help="copy the DDPM checkpoint in (else referenced)")
    export.set_defaults(run=export_command)

    predict = commands.add_parser("predict", help="label images with a bundle")
    predict.add_argument("bundle")
    predict.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER")
    predict.add_argument("--out", required=True)
    predict.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                         help="use the variant's test-time augmentation views (default: yes)")
    predict.add_argument("--batch-size", type=_positive, default=4)
    predict.add_argument("--ddpm", help="the DDPM checkpoint, when the bundle only references it")
    predict.set_defaults(run=predict_command)

    suggest = commands.add_parser("suggest", help="rank unlabelled images by the ensemble's uncertainty")
    suggest.add_argument("bundle")
    suggest.add_argument("folder")
    suggest.add_argument("--top", type=_positive, required=True)
    suggest.add_argument("--out", required=True)
    suggest.add_argument("--batch-size", type=_positive, default=4)
    suggest.add_argument("--ddpm", help="the DDPM checkpoint, when the bundle only references it")
    suggest.set_defaults(run=suggest_command)
    return main_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    command_parser = parser()
    args = command_parser.parse_args(argv)
    if args.command is None:
        command_parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args)
    except DdpmsegError as error:
        sys.stdout.flush()
        print(f"ddpmseg error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
