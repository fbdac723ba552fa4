"""The ``ddpmseg`` command: use a trained run outside the workflow.

    ddpmseg export --dataset D --variant V --seed S|best [--config config.yaml] [--workdir .] --out PATH [--tar] [--include-ddpm]
    ddpmseg predict BUNDLE IMAGE_OR_FOLDER... --out DIR [--tta/--no-tta] [--batch-size N] [--ddpm PATH] [--non-square P]
    ddpmseg suggest BUNDLE FOLDER --top K --out DIR [--batch-size N] [--ddpm PATH] [--non-square P]

A bad input ends the command with one line, ``ddpmseg error: ...``, its last, and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .base.errors import DdpmsegError

NON_SQUARE_OPTION = "--non-square"
BUNDLE_HELP = "a bundle folder or .tar written by `ddpmseg export`"


def export_command(args: argparse.Namespace) -> int:
    from .config.load import load_config
    from .use.bundle import export_bundle
    from .use.run import best_seed, exported_run

    workdir = Path(args.workdir)
    config_path = Path(args.config) if Path(args.config).is_absolute() else workdir / args.config
    if not config_path.is_file():
        raise DdpmsegError(f"--config: {config_path} does not exist")
    config = load_config(config_path, workdir=workdir)
    seed = args.seed
    if seed == "best":
        seed, miou = best_seed(config, dataset=args.dataset, variant=args.variant, workdir=workdir)
        print(f"--seed best: seed {seed}, the highest test mIoU of {args.dataset}/{args.variant} ({miou:.2f} %)")
    segmenter, run = exported_run(config, dataset=args.dataset, variant=args.variant, seed=seed, workdir=workdir)
    out = export_bundle(out=Path(args.out), segmenter=segmenter, run=run, include_ddpm=args.include_ddpm, as_tar=args.tar)
    miou = "not scored" if run.test_miou is None else f"test mIoU {run.test_miou:.2f} %"
    if run.ddpm_sha256 is None:
        ddpm = "no DDPM (RGB control)"
    else:
        ddpm = f"DDPM {run.ddpm_name} " + ("included" if args.include_ddpm else f"referenced by sha256 {run.ddpm_sha256[:12]}...")
    print(f"bundle {out}: {run.dataset}/{run.variant}/seed{run.seed}, {len(segmenter.member_paths)} members, {miou}, {ddpm}")
    return 0


def loaded_segmenter(args: argparse.Namespace):
    """The bundle's segmenter, under ``--non-square`` when given."""
    from .use.bundle import read_bundle
    from .use.segmenter import with_non_square

    segmenter = read_bundle(Path(args.bundle), ddpm_checkpoint=_optional_path(args.ddpm))
    return with_non_square(segmenter, args.non_square)


def predict_command(args: argparse.Namespace) -> int:
    from .data.listing import image_files
    from .use.labelling import label_images

    segmenter = loaded_segmenter(args)
    images = image_files(args.images)
    summary = label_images(segmenter, images, Path(args.out), tta=args.tta, batch_size=args.batch_size,
                           non_square_setting=NON_SQUARE_OPTION)
    print(f"{summary.labelled} labelled, {summary.skipped} already labelled (skipped), {len(summary.failed)} failed; "
          f"outputs in {args.out}")
    for _, reason in summary.failed:
        print(f"failed: {reason}", file=sys.stderr)
    if summary.failed:
        raise DdpmsegError(f"{len(summary.failed)} of {len(images)} images could not be labelled (listed above)")
    return 0


def suggest_command(args: argparse.Namespace) -> int:
    from .data.listing import image_files
    from .use.suggest import suggest_images

    segmenter = loaded_segmenter(args)
    images = image_files([args.folder])
    ranking = suggest_images(segmenter, images, Path(args.out), top=args.top, batch_size=args.batch_size,
                             non_square_setting=NON_SQUARE_OPTION)
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


def _seed(text: str) -> int | str:
    if text == "best":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a seed of the config or 'best', not {text!r}") from None


def _bundle_options(command: argparse.ArgumentParser) -> None:
    """The options of the commands that label with a bundle."""
    from .data.preprocess import NON_SQUARE_POLICIES

    command.add_argument("--out", required=True, help="the output folder (made when missing; a rerun resumes in it)")
    command.add_argument("--batch-size", type=_positive, default=4, help="images per DDPM forward pass (default 4)")
    command.add_argument("--ddpm", help="the DDPM checkpoint, when the bundle only references it (its sha256 is checked)")
    command.add_argument(
        NON_SQUARE_OPTION, choices=NON_SQUARE_POLICIES, default=None,
        help="how a non-square image is made square, overriding the bundle's policy: resize (stretch the whole "
             "image) or center_crop (its central square; the margins get the ignore label). Default: the bundle's; "
             "a bundle without one refuses non-square images",
    )


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(prog="ddpmseg", description="Use a run trained by the ddpmseg workflow.")
    main_parser.add_argument("--version", action="version", version=f"ddpmseg {__version__}")
    commands = main_parser.add_subparsers(dest="command", metavar="COMMAND")

    export = commands.add_parser("export", help="write the bundle of a trained run (dataset, variant, seed)")
    export.add_argument("--dataset", required=True, help="the run's dataset (a key of the config's datasets)")
    export.add_argument("--variant", required=True, help="the run's variant (a key of the config's variants)")
    export.add_argument("--seed", required=True, type=_seed,
                        help="the run's seed (one of the config's seeds), or best: the seed with the highest test mIoU")
    export.add_argument("--config", default="config.yaml", help="the workflow's config (relative to --workdir)")
    export.add_argument("--workdir", default=".", help="the workflow's working directory (holds results/)")
    export.add_argument("--out", required=True, help="the bundle folder, or .tar file with --tar")
    export.add_argument("--tar", action="store_true", help="write one .tar file instead of a folder")
    export.add_argument("--include-ddpm", action="store_true", help="copy the DDPM checkpoint in (else referenced)")
    export.set_defaults(run=export_command)

    predict = commands.add_parser("predict", help="label images with a bundle")
    predict.add_argument("bundle", help=BUNDLE_HELP)
    predict.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                         help="image files, or folders whose .png/.jpg/.jpeg files are labelled (not recursing)")
    _bundle_options(predict)
    predict.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                         help="use the variant's test-time augmentation views (default: yes)")
    predict.set_defaults(run=predict_command)

    suggest = commands.add_parser("suggest", help="rank unlabelled images by the ensemble's uncertainty")
    suggest.add_argument("bundle", help=BUNDLE_HELP)
    suggest.add_argument("folder", help="the folder of images to rank")
    _bundle_options(suggest)
    suggest.add_argument("--top", type=_positive, required=True,
                         help="how many of the most uncertain images the contact sheet shows")
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
        return _fail(str(error))
    except OSError as error:  # a folder the user cannot write, a full disk: the path and the reason
        where = error.filename if error.filename is not None else ""
        return _fail(f"{where}: {error.strerror or error}" if where else str(error))


def _fail(message: str) -> int:
    sys.stdout.flush()
    print(f"ddpmseg error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
