"""Bundles: one trained run (dataset, variant, seed) as a folder or a ``.tar`` that labels new images
elsewhere (``ddpmseg export`` writes one, ``ddpmseg predict``/``suggest`` load one).

A bundle holds ``manifest.json`` and the members' weights (``members/member<k>.pt``), and the DDPM
checkpoint (``ddpm/<name>.pt``) when it was included; otherwise the manifest names the checkpoint by its
sha256 and says where to get it (registry name, URL or path). The manifest records everything the
labels depend on: classes, palette, preprocessing, the DDPM's flags, the feature settings, the
variant's test-time augmentation, each file's sha256, and the run's test mIoU.

Loading checks every file's sha256 against the manifest and the DDPM checkpoint's against the one
recorded; a ``.tar`` bundle is extracted with :mod:`ddpmseg.data.archive`'s safe extraction (no links, no
absolute or ``..`` paths); members load with ``weights_only=True`` (:func:`ddpmseg.classifier.mlp.load_member`).
"""

from __future__ import annotations

import atexit
import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .. import __version__
from ..data.archive import extract_archive
from ..base.errors import DdpmsegError
from ..base.files import atomic_directory, atomic_path, load_json, save_json, sha256_file
from .segmenter import Segmenter, make_segmenter

FORMAT = "ddpmseg-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# How an image becomes the DDPM's input (ddpmseg.data.datasets): RGB, the non_square policy, a bilinear resize to
# image_size, values scaled to [-1, 1].
PREPROCESSING = {"colour": "RGB", "resize": "bilinear", "input_range": [-1.0, 1.0]}


@dataclass(frozen=True)
class RunInfo:
    """Where a bundle's segmenter comes from: its run, its DDPM's name, digest and source, its test mIoU."""

    dataset: str
    variant: str
    seed: int
    ddpm_name: str
    ddpm_sha256: str | None  # None for an RGB control's run, which uses no DDPM
    ddpm_source: dict[str, Any] | None  # "source" (registry, file, train) and any of registry_name, url, path, images, init
    test_miou: float | None = None


# --- a run's settings, shared by the workflow (apply.smk) and `ddpmseg export` ---------------------


def run_settings(config: dict[str, Any], *, dataset: str, variant: str, seed: int) -> dict[str, Any]:
    """Every setting a run's labels depend on besides its files, as plain JSON values (a rule's params)."""
    from ..config.checks import feature_source, noise_seed_of_run, tta_views, variant_settings
    from ..diffusion.model import model_flags
    from ..diffusion.activations import model_order
    from ..prediction.visualize import default_palette

    entry = config["datasets"][dataset]
    flags = model_flags(config["ddpms"][entry["ddpm"]]["flags"])
    number_class = entry["number_class"]
    return {
        "ddpm_flags": flags,
        "steps": [int(s) for s in config["features"]["steps"]],
        "blocks": model_order(config["features"]["blocks"]),  # listing them in another order changes nothing
        "noise_seed": noise_seed_of_run(config, seed),
        "feature_source": feature_source(config, variant),
        "image_size": int(flags["image_size"]),
        "non_square": entry.get("non_square"),
        "number_class": number_class,
        "ignore_label": entry["ignore_label"],
        "class_names": list(entry.get("class_names") or [str(c) for c in range(number_class)]),
        "palette": [list(c) for c in (entry.get("palette") or default_palette(number_class))],
        "tta_views": tta_views(config, variant),
        "tta_seed": int(variant_settings(config, variant)["tta_seed"]),
    }


def settings_of(segmenter: Segmenter) -> dict[str, Any]:
    """The settings of a segmenter, as :func:`run_settings` gives them (JSON values)."""
    return {
        "ddpm_flags": dict(segmenter.ddpm_flags),
        "steps": list(segmenter.steps),
        "blocks": list(segmenter.blocks),
        "noise_seed": segmenter.noise_seed,
        "feature_source": segmenter.feature_source,
        "image_size": segmenter.image_size,
        "non_square": segmenter.non_square,
        "number_class": segmenter.number_class,
        "ignore_label": segmenter.ignore_label,
        "class_names": list(segmenter.class_names),
        "palette": [list(colour) for colour in segmenter.palette],
        "tta_views": [list(view) for view in segmenter.tta_views],
        "tta_seed": segmenter.tta_seed,
    }


def run_segmenter(
    *,
    members: list[str | Path],
    checkpoint: str | Path | list[str] | None,
    check: str | Path | list[str] | None,
    settings: dict[str, Any],
) -> Segmenter:
    """The segmenter of a workflow run: its members, its DDPM checkpoint with the validation record
    ``check`` (``results/ddpm/<name>/check.json``, whose sha256 is the checkpoint's), its settings.
    An RGB control's run has no DDPM: its ``checkpoint`` and ``check`` are empty (None or ``[]``, how a
    rule passes an empty input)."""
    if not checkpoint:
        return make_segmenter(member_paths=[Path(m) for m in members], ddpm_checkpoint=None, **settings)
    return make_segmenter(
        member_paths=[Path(m) for m in members], ddpm_checkpoint=Path(checkpoint),
        ddpm_digest=load_json(check)["sha256"], **settings,
    )


# --- files of a finished workflow run ---------------------------------------------------------------


@dataclass(frozen=True)
class RunFiles:
    """The files of a finished run in a workflow's working directory, and the target that builds them."""

    members: list[Path]
    checkpoint: Path
    check: Path
    summary: Path
    target: str


def checkpoint_file(config: dict[str, Any], ddpm: str) -> str:
    """Where the workflow keeps a DDPM's checkpoint (as common.smk's ``checkpoint_path``)."""
    entry = config["ddpms"][ddpm]
    return entry["checkpoint"] if entry["source"] == "file" else f"resources/checkpoints/{ddpm}.pt"


def run_files(config: dict[str, Any], *, dataset: str, variant: str, seed: int, workdir: Path) -> RunFiles:
    """The paths of a run's members, DDPM checkpoint, validation record and score summary."""
    run = f"{dataset}/{variant}/seed{seed}"
    ddpm = config["datasets"][dataset]["ddpm"]
    return RunFiles(
        members=[workdir / f"results/models/{run}/member{m}.pt" for m in range(config["ensemble_size"])],
        checkpoint=workdir / checkpoint_file(config, ddpm),
        check=workdir / f"results/ddpm/{ddpm}/check.json",
        summary=workdir / f"results/scores/{run}/summary.csv",
        target=f"results/scores/{run}/summary.csv",
    )


def ddpm_source(config: dict[str, Any], ddpm: str, checkpoint: Path) -> dict[str, Any]:
    """Where a DDPM checkpoint can be had: its registry name and URL, or the file it was read from."""
    entry = config["ddpms"][ddpm]
    source: dict[str, Any] = {"source": entry["source"], "path": str(checkpoint.resolve())}
    if entry["source"] == "registry":
        source["registry_name"] = entry.get("registry_name", ddpm)
    if entry.get("url"):
        source["url"] = entry["url"]
    if entry["source"] == "train":  # trained by the workflow (train_ddpm): on what, from what
        source["images"] = [str(folder) for folder in entry["images"]]
        if entry.get("init"):
            source["init"] = entry["init"]
    return source


def test_miou(summary: Path) -> float | None:
    """A run's test mIoU (%) from its score summary; None before it is scored."""
    if not summary.is_file():
        return None
    from ..report.tables import read_table

    return float(read_table(summary)["miou"].iloc[0])


def exported_run(
    config: dict[str, Any], *, dataset: str, variant: str, seed: int, workdir: str | Path
) -> tuple[Segmenter, RunInfo]:
    """(segmenter, run info) of a finished run of a workflow in ``workdir``; a missing file is one line
    naming it and the target that builds it."""
    workdir = Path(workdir)
    for key, value, section in (("dataset", dataset, "datasets"), ("variant", variant, "variants")):
        if value not in config[section]:
            raise DdpmsegError(f"--{key}: '{value}' is not a key of {section} ({', '.join(config[section])})")
    if seed not in config["seeds"]:
        raise DdpmsegError(f"--seed: {seed} is not one of seeds {config['seeds']}")
    files = run_files(config, dataset=dataset, variant=variant, seed=seed, workdir=workdir)
    settings = run_settings(config, dataset=dataset, variant=variant, seed=seed)
    uses_ddpm = settings["feature_source"] != "rgb"  # the RGB control's run needs no DDPM
    for path in [*files.members, *([files.checkpoint, files.check] if uses_ddpm else [])]:
        if not path.is_file():
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


# --- export ------------------------------------------------------------------------------------------


def export_bundle(*, out: Path, segmenter: Segmenter, run: RunInfo, include_ddpm: bool = False, as_tar: bool = False) -> Path:
    """Write the bundle of ``segmenter`` (a folder, or one ``.tar`` with ``as_tar``) at ``out``; return it.

    The DDPM checkpoint is referenced by its sha256 and source, or copied in with ``include_ddpm``;
    either way its digest must be the run's (``run.ddpm_sha256``). An RGB control's bundle has no DDPM.
    """
    out = Path(out)
    _check_replaceable(out, as_tar)
    if segmenter.feature_source == "rgb":
        if include_ddpm:
            raise DdpmsegError("--include-ddpm: an RGB control's run uses no DDPM; its bundle has none to include")
    else:
        actual = sha256_file(segmenter.ddpm_checkpoint)
        if actual != run.ddpm_sha256:
            raise DdpmsegError(
                f"{segmenter.ddpm_checkpoint}: sha256 {actual} differs from the run's DDPM checkpoint {run.ddpm_sha256}"
            )
    if as_tar:
        with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
            folder = Path(tmp) / "bundle"
            folder.mkdir()
            _write_bundle(folder, segmenter, run, include_ddpm)
            with atomic_path(out) as tmp_tar:
                with tarfile.open(tmp_tar, "w", format=tarfile.PAX_FORMAT) as tar:
                    for path in sorted(folder.rglob("*")):
                        if path.is_file():
                            tar.add(path, arcname=path.relative_to(folder).as_posix(), filter=_plain_member)
    else:
        with atomic_directory(out) as tmp:
            _write_bundle(tmp, segmenter, run, include_ddpm)
    return out


def _check_replaceable(out: Path, as_tar: bool) -> None:
    """Only an earlier bundle is replaced: never a folder or file that holds something else."""
    if not out.exists() and not out.is_symlink():
        return
    if as_tar:
        replaceable = out.is_file() and not out.is_symlink() and tarfile.is_tarfile(out)
    else:
        replaceable = out.is_dir() and not out.is_symlink() and (
            not any(out.iterdir()) or _is_manifest(out / MANIFEST)
        )
    if not replaceable:
        raise DdpmsegError(f"{out}: exists and is not a ddpmseg bundle{' .tar' if as_tar else ''}; choose another --out")


def _is_manifest(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _plain_member(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_bundle(folder: Path, segmenter: Segmenter, run: RunInfo, include_ddpm: bool) -> None:
    members = []
    for index, path in enumerate(segmenter.member_paths):
        name = f"members/member{index}.pt"
        (folder / "members").mkdir(exist_ok=True)
        shutil.copyfile(path, folder / name)
        members.append(name)
    ddpm_file = None
    if include_ddpm:
        ddpm_file = f"ddpm/{run.ddpm_name}.pt"
        (folder / "ddpm").mkdir()
        shutil.copyfile(segmenter.ddpm_checkpoint, folder / ddpm_file)
    files = {name: sha256_file(folder / name) for name in [*members, *([ddpm_file] if ddpm_file else [])]}
    save_json(folder / MANIFEST, _manifest(segmenter, run, members, ddpm_file, files))


def _manifest(segmenter: Segmenter, run: RunInfo, members: list[str], ddpm_file: str | None, files: dict[str, str]) -> dict:
    settings = settings_of(segmenter)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ddpmseg_version": __version__,
        "run": {"dataset": run.dataset, "variant": run.variant, "seed": run.seed, "test_miou": run.test_miou},
        "classes": {key: settings[key] for key in ("number_class", "ignore_label", "class_names", "palette")},
        "preprocessing": {"image_size": settings["image_size"], "non_square": settings["non_square"], **PREPROCESSING},
        "ddpm": {
            "name": run.ddpm_name, "flags": settings["ddpm_flags"], "sha256": run.ddpm_sha256,
            "where": run.ddpm_source, "file": ddpm_file,
        },
        "features": {key: settings[key] for key in ("feature_source", "steps", "blocks", "noise_seed")},
        "tta": {"views": settings["tta_views"], "seed": settings["tta_seed"]},
        "members": members,
        "files": files,
        "identity": segmenter.identity,
    }


# --- load --------------------------------------------------------------------------------------------


def load_bundle(path: Path, *, ddpm_checkpoint: Path | None = None) -> Segmenter:
    """The :class:`ddpmseg.use.segmenter.Segmenter` of a bundle folder or ``.tar`` after checking every
    file's sha256; ``ddpm_checkpoint`` (default: the bundle's own copy, else the path it was exported
    from) must have the sha256 the manifest records."""
    path = Path(path)
    if not path.exists():
        raise DdpmsegError(f"{path}: no such bundle")
    root = _extracted(path) if path.is_file() else path
    manifest = _read_manifest(path, root)
    try:
        return _checked_segmenter(path, root, manifest, ddpm_checkpoint)
    except (KeyError, TypeError, AttributeError) as error:
        raise DdpmsegError(f"{path}: {MANIFEST} is incomplete or malformed ({type(error).__name__}: {error})") from None


def _checked_segmenter(path: Path, root: Path, manifest: dict[str, Any], ddpm_checkpoint: Path | None) -> Segmenter:
    for name, digest in manifest["files"].items():
        _check_file(path, root, name, digest)
    ddpm_file = manifest["ddpm"].get("file")
    for name in [*manifest["members"], *([ddpm_file] if ddpm_file else [])]:
        if name not in manifest["files"]:
            raise DdpmsegError(f"{path}: {name} has no sha256 in {MANIFEST}")
    ddpm, settings = manifest["ddpm"], _manifest_settings(manifest)
    # an RGB control's segmenter never reads a DDPM: none is looked for (a given one is not used)
    checkpoint = None if settings["feature_source"] == "rgb" else _ddpm_checkpoint(path, root, ddpm, ddpm_checkpoint)
    try:
        segmenter = make_segmenter(
            member_paths=[root / m for m in manifest["members"]], ddpm_checkpoint=checkpoint,
            member_digests=[manifest["files"][m] for m in manifest["members"]], ddpm_digest=ddpm["sha256"],
            **settings,
        )
    except DdpmsegError as error:
        raise DdpmsegError(f"{path}: {MANIFEST}: {error}") from None
    if segmenter.identity != manifest["identity"]:
        raise DdpmsegError(f"{path}: {MANIFEST} was changed after export (its settings do not give its identity)")
    return segmenter


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a bundle folder or ``.tar``, unchecked (for showing what a bundle holds)."""
    path = Path(path)
    return _read_manifest(path, _extracted(path) if path.is_file() else path)


def _extracted(tar: Path) -> Path:
    """A ``.tar`` bundle safely extracted into a temporary folder removed when the process exits."""
    if not tarfile.is_tarfile(tar):
        raise DdpmsegError(f"{tar}: not a bundle folder or .tar")
    tmp = Path(tempfile.mkdtemp(prefix="ddpmseg-bundle-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    extract_archive(tar, tmp / "bundle")
    return tmp / "bundle"


def _read_manifest(path: Path, root: Path) -> dict[str, Any]:
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise DdpmsegError(f"{path}: no {MANIFEST}; not a ddpmseg bundle")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DdpmsegError(f"{path}: {MANIFEST} is not JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DdpmsegError(f"{path}: {MANIFEST} is not a ddpmseg bundle manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DdpmsegError(
            f"{path}: bundle format version {manifest.get('format_version')}; this ddpmseg reads version {FORMAT_VERSION}"
        )
    return manifest


def _check_file(bundle: Path, root: Path, name: str, expected: str) -> None:
    """A file of the bundle exists inside it as a plain file with the manifest's sha256."""
    parts = PurePosixPath(name).parts
    if PurePosixPath(name).is_absolute() or ".." in parts or not parts:
        raise DdpmsegError(f"{bundle}: {MANIFEST} names '{name}', a path outside the bundle; refused")
    file = root.joinpath(*parts)
    if file.is_symlink() or not file.resolve().is_relative_to(root.resolve()):
        raise DdpmsegError(f"{bundle}: {name} is a symbolic link or leads outside the bundle; refused")
    if not file.is_file():
        raise DdpmsegError(f"{bundle}: {name} is missing")
    actual = sha256_file(file)
    if actual != expected:
        raise DdpmsegError(f"{bundle}: {name} has sha256 {actual}, the manifest says {expected}: changed or damaged")


def _ddpm_checkpoint(bundle: Path, root: Path, ddpm: dict[str, Any], given: Path | None) -> Path:
    """The DDPM checkpoint to use, after checking its sha256 against the manifest's."""
    if given is not None:
        checkpoint = Path(given)
        if not checkpoint.is_file():
            raise DdpmsegError(f"{checkpoint}: DDPM checkpoint does not exist")
    elif ddpm.get("file"):
        return root.joinpath(*PurePosixPath(ddpm["file"]).parts)  # checked with the other files
    else:
        checkpoint = Path(ddpm["where"].get("path", ""))
        if not ddpm["where"].get("path") or not checkpoint.is_file():
            where = ddpm["where"].get("url") or ddpm["where"].get("path") or "its source"
            raise DdpmsegError(
                f"{bundle}: DDPM '{ddpm['name']}' (sha256 {ddpm['sha256']}) is not in the bundle; "
                f"give its checkpoint with --ddpm PATH (from {where})"
            )
    actual = sha256_file(checkpoint)
    if actual != ddpm["sha256"]:
        raise DdpmsegError(
            f"{checkpoint}: DDPM checkpoint sha256 {actual} differs from the bundle's {ddpm['sha256']}"
        )
    return checkpoint


def _manifest_settings(manifest: dict[str, Any]) -> dict[str, Any]:
    """The settings (as :func:`run_settings` gives them) recorded in a manifest."""
    classes, preprocessing, features = manifest["classes"], manifest["preprocessing"], manifest["features"]
    return {
        "ddpm_flags": manifest["ddpm"]["flags"],
        "steps": features["steps"],
        "blocks": features["blocks"],
        "noise_seed": features["noise_seed"],
        "feature_source": features["feature_source"],
        "image_size": preprocessing["image_size"],
        "non_square": preprocessing["non_square"],
        "number_class": classes["number_class"],
        "ignore_label": classes["ignore_label"],
        "class_names": classes["class_names"],
        "palette": classes["palette"],
        "tta_views": manifest["tta"]["views"],
        "tta_seed": manifest["tta"]["seed"],
    }
