"""Bundles: one trained run (dataset, variant, seed) as a folder or a ``.tar`` that labels new images
elsewhere (``ddpmseg export`` writes one, ``ddpmseg predict``/``suggest`` load one).

A bundle holds ``manifest.json`` and the members' weights (``members/member<k>.pt``), and the DDPM
checkpoint (``ddpm/<name>.pt``, or a diffusers DDPM's files under ``ddpm/<name>/``) when it was included; otherwise the manifest names the checkpoint by its
sha256 and says where to get it in terms that hold on any machine (its source, file name, registry
name and URL), never a path of the exporting machine. The manifest records everything the
labels depend on, the run's :class:`~ddpmseg.use.settings.SegmenterSettings` (classes, palette,
preprocessing, the DDPM's flags, the feature settings, the variant's test-time augmentation), each
file's sha256, and the run's test mIoU.

Loading checks every file's sha256 against the manifest, the DDPM checkpoint's against the one recorded,
and each member against the settings (the features it takes, the classes it predicts); the manifest's
own ``identity`` digest catches accidental edits, not deliberate ones, which the member check limits to
what cannot change the labels silently; a ``.tar`` bundle is extracted with :mod:`ddpmseg.data.archive`'s safe extraction (no links, no
absolute or ``..`` paths); members load with ``weights_only=True`` (:func:`ddpmseg.classifier.mlp.load_member`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from .. import __version__
from ..data.archive import extract_archive
from ..base.errors import DdpmsegError
from ..base.files import atomic_directory, atomic_path, save_json, sha256_file
from ..diffusion.diffusers_folder import FOLDER_FILES, ddpm_digest, digest_of, folder_files, is_diffusers
from .run import RunInfo
from .segmenter import Segmenter, check_members_fit, make_segmenter
from .settings import SegmenterSettings

FORMAT = "ddpmseg-bundle"
FORMAT_VERSION = 2  # 2: the settings as one object (SegmenterSettings.plain())
MANIFEST = "manifest.json"
# How an image becomes the DDPM's input (ddpmseg.data.preprocess): RGB, the non_square policy, a bilinear resize
# to image_size, values scaled to [-1, 1]; for a reader of the manifest.
PREPROCESSING = {"colour": "RGB", "resize": "bilinear", "input_range": [-1.0, 1.0]}


# --- export ------------------------------------------------------------------------------------------


def export_bundle(*, out: Path, segmenter: Segmenter, run: RunInfo, include_ddpm: bool = False, as_tar: bool = False) -> Path:
    """Write the bundle of ``segmenter`` (a folder, or one ``.tar`` with ``as_tar``) at ``out``; return it.

    The DDPM checkpoint is referenced by its sha256 and source, or copied in with ``include_ddpm``;
    either way its digest must be the run's (``run.ddpm_sha256``). An RGB control's bundle has no DDPM.
    """
    out = Path(out)
    _check_replaceable(out, as_tar)
    if segmenter.settings.feature_source == "rgb":
        if include_ddpm:
            raise DdpmsegError("--include-ddpm: an RGB control's run uses no DDPM; its bundle has none to include")
    else:
        actual = ddpm_digest(segmenter.ddpm_checkpoint)
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
    ddpm_file, ddpm_files = None, []
    if include_ddpm and is_diffusers(segmenter.settings.ddpm_flags):  # the folder's files that count
        ddpm_file = f"ddpm/{run.ddpm_name}"
        ddpm_files = [f"{ddpm_file}/{name}" for name in FOLDER_FILES]
        for source, copy in zip(folder_files(segmenter.ddpm_checkpoint), ddpm_files, strict=True):  # either layout
            (folder / copy).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, folder / copy)
    elif include_ddpm:
        ddpm_file = f"ddpm/{run.ddpm_name}.pt"
        ddpm_files = [ddpm_file]
        (folder / "ddpm").mkdir()
        shutil.copyfile(segmenter.ddpm_checkpoint, folder / ddpm_file)
    files = {name: sha256_file(folder / name) for name in [*members, *ddpm_files]}
    save_json(folder / MANIFEST, _manifest(segmenter, run, members, ddpm_file, files))


def _manifest(segmenter: Segmenter, run: RunInfo, members: list[str], ddpm_file: str | None, files: dict[str, str]) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ddpmseg_version": __version__,
        "run": {"dataset": run.dataset, "variant": run.variant, "seed": run.seed, "test_miou": run.test_miou},
        "settings": segmenter.settings.plain(),
        "preprocessing": PREPROCESSING,
        "ddpm": {"name": run.ddpm_name, "sha256": run.ddpm_sha256, "where": run.ddpm_source, "file": ddpm_file},
        "members": members,
        "files": files,
        "identity": segmenter.identity,
    }


# --- load --------------------------------------------------------------------------------------------


def read_bundle(path: Path, *, ddpm_checkpoint: Path | None = None) -> Segmenter:
    """The :class:`ddpmseg.use.segmenter.Segmenter` of a bundle folder or ``.tar`` after checking every
    file's sha256; ``ddpm_checkpoint`` (default: the bundle's own copy; required when it only references
    its DDPM) must have the sha256 the manifest records. A ``.tar`` is extracted into the cache
    (:func:`cached_extraction`)."""
    path = Path(path)
    if not path.exists():
        raise DdpmsegError(f"{path}: no such bundle")
    root = cached_extraction(path) if path.is_file() else path
    manifest = _read_manifest(path, root)
    try:
        return _checked_segmenter(path, root, manifest, ddpm_checkpoint)
    except (KeyError, TypeError, AttributeError) as error:
        raise DdpmsegError(f"{path}: {MANIFEST} is incomplete or malformed ({type(error).__name__}: {error})") from None


def _checked_segmenter(path: Path, root: Path, manifest: dict[str, Any], ddpm_checkpoint: Path | None) -> Segmenter:
    for name, digest in manifest["files"].items():
        _check_file(path, root, name, digest)
    for name in [*manifest["members"], *_included_ddpm_files(manifest)]:
        if name not in manifest["files"]:
            raise DdpmsegError(f"{path}: {name} has no sha256 in {MANIFEST}")
    ddpm = manifest["ddpm"]
    try:
        settings = SegmenterSettings.from_plain(manifest["settings"])
    except DdpmsegError as error:
        raise DdpmsegError(f"{path}: {MANIFEST}: {error}") from None
    # an RGB control's segmenter never reads a DDPM: none is looked for (a given one is not used)
    checkpoint = None if settings.feature_source == "rgb" else _ddpm_checkpoint(path, root, manifest, ddpm_checkpoint)
    try:
        segmenter = make_segmenter(
            member_paths=[root / m for m in manifest["members"]], ddpm_checkpoint=checkpoint, settings=settings,
            member_digests=[manifest["files"][m] for m in manifest["members"]], ddpm_digest=ddpm["sha256"],
        )
    except DdpmsegError as error:
        raise DdpmsegError(f"{path}: {MANIFEST}: {error}") from None
    if segmenter.identity != manifest["identity"]:
        raise DdpmsegError(f"{path}: {MANIFEST} was changed after export (its settings do not give its identity)")
    check_members_fit(segmenter)
    return segmenter


CACHE_VARIABLE = "DDPMSEG_CACHE"
CACHED_BUNDLES = 3  # extractions kept: the bundles used last


def cache_folder() -> Path:
    """Where ``.tar`` bundles are extracted: ``$DDPMSEG_CACHE``, else ``$XDG_CACHE_HOME/ddpmseg``, else
    ``~/.cache/ddpmseg``; its ``bundles/`` folder."""
    root = os.environ.get(CACHE_VARIABLE) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ddpmseg"
    return Path(root) / "bundles"


def cached_extraction(tar: Path) -> Path:
    """A ``.tar`` bundle safely extracted (no links, no paths leaving it) into the cache, under a key of the
    file (its path, size and modification time): a later run with the same file reuses the extraction (its
    files are checked against the manifest either way); an extraction killed half way is a temporary that
    the next one removes; only the :data:`CACHED_BUNDLES` bundles used last are kept."""
    if not tarfile.is_tarfile(tar):
        raise DdpmsegError(f"{tar}: not a bundle folder or .tar")
    stat = tar.stat()
    key = hashlib.sha256(f"{tar.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:24]
    cache = cache_folder()
    folder = cache / key
    if not folder.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        with atomic_directory(folder) as tmp:
            extract_archive(tar, tmp / "bundle")
    os.utime(folder)  # last used now
    for stale in sorted((p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")),
                        key=lambda p: p.stat().st_mtime, reverse=True)[CACHED_BUNDLES:]:
        shutil.rmtree(stale, ignore_errors=True)
    return folder / "bundle"


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


def _included_ddpm_files(manifest: dict[str, Any]) -> list[str]:
    """The bundle's files of its included DDPM: its checkpoint, or a diffusers folder's files; none when
    it is referenced."""
    ddpm_file = manifest["ddpm"].get("file")
    if not ddpm_file:
        return []
    if is_diffusers(manifest["settings"]["ddpm_flags"]):
        return [f"{ddpm_file}/{name}" for name in FOLDER_FILES]
    return [ddpm_file]


def _where(source: dict[str, Any]) -> str:
    """Where a referenced checkpoint can be had, for the message that asks for it."""
    if source.get("source") == "diffusers":
        return f"the diffusers DDPMPipeline folder {source.get('folder_name')} (its {', '.join(source.get('files', {}))})"
    name = source.get("file_name", "the checkpoint")
    if source.get("url"):
        return f"{name}, downloadable from {source['url']}"
    if source.get("registry_name"):
        return f"{name}, the registry's {source['registry_name']}"
    if source.get("source") == "train":
        return f"{name}, trained by the workflow that exported the bundle"
    return name


def _ddpm_checkpoint(bundle: Path, root: Path, manifest: dict[str, Any], given: Path | None) -> Path:
    """The DDPM checkpoint (or diffusers folder) to use, after checking its sha256 against the manifest's."""
    ddpm = manifest["ddpm"]
    if given is not None:
        checkpoint = Path(given)
        if not checkpoint.is_file() and not checkpoint.is_dir():
            raise DdpmsegError(f"{checkpoint}: DDPM checkpoint does not exist")
    elif ddpm.get("file"):
        included = _included_ddpm_files(manifest)
        if is_diffusers(manifest["settings"]["ddpm_flags"]):  # its files were checked: their digest is the folder's
            digest = digest_of({name.removeprefix(f"{ddpm['file']}/"): manifest["files"][name] for name in included})
            if digest != ddpm["sha256"]:
                raise DdpmsegError(f"{bundle}: {ddpm['file']} is not the DDPM the manifest names (digest {digest})")
        return root.joinpath(*PurePosixPath(ddpm["file"]).parts)  # checked with the other files
    else:
        raise DdpmsegError(
            f"{bundle}: DDPM '{ddpm['name']}' (sha256 {ddpm['sha256']}) is not in the bundle; give its checkpoint "
            f"with --ddpm PATH (Python: load_bundle(..., ddpm=PATH)): {_where(ddpm['where'])}"
        )
    actual = ddpm_digest(checkpoint)
    if actual != ddpm["sha256"]:
        raise DdpmsegError(
            f"{checkpoint}: DDPM checkpoint sha256 {actual} differs from the bundle's {ddpm['sha256']}"
        )
    return checkpoint


