"""A finished run of the workflow (dataset, variant, seed) in its working directory: its files, its
segmenter and where its DDPM comes from, its test mIoU. The workflow's labelling (``apply:`` entries) and
``ddpmseg export`` both take a run from here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import DdpmsegError
from ..base.files import load_json, read_table
from ..config import paths
from ..config.checks import check_run
from ..config.ddpms import DIFFUSERS, checkpoint_path
from ..diffusion.diffusers_folder import ddpm_location, file_digests
from .segmenter import Segmenter, make_segmenter
from .settings import SegmenterSettings


@dataclass(frozen=True)
class RunInfo:
    """Where a bundle's segmenter comes from: its run, its DDPM's name, digest and source, its test mIoU."""

    dataset: str
    variant: str
    seed: int
    ddpm_name: str
    ddpm_sha256: str | None  # None for an RGB control's run, which uses no DDPM
    # "source" (registry, file, train, diffusers), "file_name", any of registry_name, url, init; a diffusers
    # folder's "folder_name" and "files" (each file's sha256 by its path in the folder)
    ddpm_source: dict[str, Any] | None
    test_miou: float | None = None


def run_segmenter(
    *,
    members: list[str | Path],
    checkpoint: str | Path | list[str] | None,
    check: str | Path | list[str] | None,
    settings: SegmenterSettings | dict[str, Any],
) -> Segmenter:
    """The segmenter of a workflow run: its members, its DDPM checkpoint with the validation record
    ``check`` (``results/ddpm/<name>/check.json``, whose sha256 is the checkpoint's), its settings (or
    their plain values, as a rule's params carry them). An RGB control's run has no DDPM: its
    ``checkpoint`` and ``check`` are empty (None or ``[]``, how a rule passes an empty input). A rule gives
    ``checkpoint`` as a list: of one file, or of a diffusers folder's files."""
    if not isinstance(settings, SegmenterSettings):
        settings = SegmenterSettings.from_plain(settings)
    members = [Path(m) for m in members]
    if not checkpoint:
        return make_segmenter(member_paths=members, ddpm_checkpoint=None, settings=settings)
    return make_segmenter(
        member_paths=members, ddpm_checkpoint=ddpm_location(checkpoint), settings=settings,
        ddpm_digest=load_json(check)["sha256"],
    )


@dataclass(frozen=True)
class RunFiles:
    """The files of a finished run in a workflow's working directory, and the target that builds them."""

    members: list[Path]
    checkpoint: Path
    check: Path
    summary: Path
    target: str


def run_files(config: dict[str, Any], *, dataset: str, variant: str, seed: int, workdir: Path) -> RunFiles:
    """The paths of a run's members, DDPM checkpoint, validation record and score summary."""
    run = {"dataset": dataset, "variant": variant, "seed": seed}
    ddpm = config["datasets"][dataset]["ddpm"]
    summary = paths.score_table("summary").format(**run)
    return RunFiles(
        members=[workdir / paths.MEMBER.format(**run, member=m) for m in range(config["ensemble_size"])],
        checkpoint=workdir / checkpoint_path(config, ddpm),
        check=workdir / paths.DDPM_CHECK.format(ddpm=ddpm),
        summary=workdir / summary,
        target=summary,
    )


def ddpm_source(config: dict[str, Any], ddpm: str, checkpoint: Path) -> dict[str, Any]:
    """Where a DDPM checkpoint can be had, in terms that hold on another machine: its source, its file's
    name, and its registry name and URL, or what it was trained from (a DDPM of the config or of the
    registry by name, or an init file by name), or a diffusers folder's name and its files' sha256;
    nothing of this machine's file system."""
    entry = config["ddpms"][ddpm]
    if entry["source"] == DIFFUSERS:
        return {"source": DIFFUSERS, "folder_name": checkpoint.name, "files": file_digests(checkpoint)}
    source: dict[str, Any] = {"source": entry["source"], "file_name": checkpoint.name}
    if entry["source"] == "registry":
        source["registry_name"] = entry.get("registry_name", ddpm)
    if entry.get("url"):
        source["url"] = entry["url"]
    if entry["source"] == "train" and entry.get("init"):  # fine-tuned from
        init = entry["init"]
        source["init"] = init if init in config["ddpms"] else Path(init).name
    return source


def test_miou(summary: Path) -> float | None:
    """A run's test mIoU (%) from its score summary; None before it is scored."""
    if not summary.is_file():
        return None
    return float(read_table(summary)["miou"].iloc[0])


def best_seed(config: dict[str, Any], *, dataset: str, variant: str, workdir: str | Path) -> tuple[int, float]:
    """(seed, test mIoU %) of the scored run of (dataset, variant) with the highest test mIoU (the first
    seed on a tie)."""
    check_run(config, dataset=dataset, variant=variant, seed=config["seeds"][0], setting=lambda key: f"--{key}")
    scored = {}
    for seed in config["seeds"]:
        files = run_files(config, dataset=dataset, variant=variant, seed=int(seed), workdir=Path(workdir))
        miou = test_miou(files.summary)
        if miou is not None:
            scored[int(seed)] = miou
    if not scored:
        target = paths.score_table("summary").format(dataset=dataset, variant=variant, seed=config["seeds"][0])
        raise DdpmsegError(f"--seed best: no run of {dataset}/{variant} is scored yet; build them first: snakemake {target}")
    seed = max(scored, key=lambda s: (scored[s], -config["seeds"].index(s)))
    return seed, scored[seed]


def exported_run(
    config: dict[str, Any], *, dataset: str, variant: str, seed: int, workdir: str | Path
) -> tuple[Segmenter, RunInfo]:
    """(segmenter, run info) of a finished run of a workflow in ``workdir``; a missing file is one line
    naming it and the target that builds it."""
    workdir = Path(workdir)
    check_run(config, dataset=dataset, variant=variant, seed=seed, setting=lambda key: f"--{key}")
    files = run_files(config, dataset=dataset, variant=variant, seed=seed, workdir=workdir)
    settings = SegmenterSettings.of_run(config, dataset=dataset, variant=variant, seed=seed)
    uses_ddpm = settings.feature_source != "rgb"  # the RGB control's run needs no DDPM
    for path in [*files.members, *([files.checkpoint, files.check] if uses_ddpm else [])]:
        if not (path.is_file() or (path == files.checkpoint and path.is_dir())):  # a diffusers DDPM: a folder
            raise DdpmsegError(f"{path}: missing; build the run first: snakemake {files.target}")
    segmenter = run_segmenter(
        members=files.members, checkpoint=files.checkpoint if uses_ddpm else None,
        check=files.check if uses_ddpm else None, settings=settings,
    )
    ddpm = config["datasets"][dataset]["ddpm"]
    run = RunInfo(
        dataset=dataset, variant=variant, seed=seed, ddpm_name=ddpm,
        ddpm_sha256=load_json(files.check)["sha256"] if uses_ddpm else None,
        ddpm_source=ddpm_source(config, ddpm, files.checkpoint) if uses_ddpm else None,
        test_miou=test_miou(files.summary),
    )
    return segmenter, run
