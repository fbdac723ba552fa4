"""Bundles: a trained run exported as a folder or a .tar and loaded back, every digest checked."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    FEATURE_BLOCKS,
    FEATURE_STEPS,
    TINY_CONFIG,
    TINY_FLAGS,
    finished_tiny_run,
    tiny_feature_width,
)
from PIL import Image

from ddpmseg.use.bundle import MANIFEST, export_bundle, read_bundle
from ddpmseg.use.run import RunInfo
from ddpmseg.use.settings import SegmenterSettings
from ddpmseg.use.run import exported_run, run_segmenter
from ddpmseg.classifier.mlp import load_member
from ddpmseg.config.registry import resolve_registry
from ddpmseg.config.load import validate_config
from ddpmseg.base.errors import DdpmsegError
from ddpmseg.base.files import save_json, sha256_file
from ddpmseg.use.labelling import label_images
from ddpmseg.config.registry import load_registry

NUMBER_CLASS = 5


def tiny_config() -> dict:
    config = copy.deepcopy(TINY_CONFIG)
    config["features"]["steps"], config["features"]["blocks"] = FEATURE_STEPS, FEATURE_BLOCKS
    validate_config(config)
    return resolve_registry(config, load_registry())


@pytest.fixture
def run(tmp_path, tiny_checkpoint):
    """(segmenter, run info, config) of a finished run of the tiny config in tmp_path/work."""
    config = tiny_config()
    workdir = tmp_path / "work"
    finished_tiny_run(workdir, tiny_checkpoint, config)
    segmenter, info = exported_run(config, dataset="tiny", variant="final", seed=1, workdir=workdir)
    return segmenter, info, config


def fields(segmenter) -> dict:
    """The fields of a segmenter that do not depend on where its files are."""
    values = dataclasses.asdict(segmenter)
    del values["member_paths"], values["ddpm_checkpoint"]
    return values


def test_exported_run_reads_the_runs_settings_and_score(run, tmp_path) -> None:
    segmenter, info, config = run
    assert segmenter.settings.tta_views == (("HorizontalFlip",), ("ToGray", "CoarseDropout"))
    assert segmenter.settings.noise_seed == 1  # per_run noise: the run's seed
    assert segmenter.settings.steps == tuple(FEATURE_STEPS) and segmenter.settings.blocks == tuple(FEATURE_BLOCKS)
    assert segmenter.settings.class_names == ("background", "disc", "square", "triangle", "ring")
    assert segmenter.settings.image_size == 32 and segmenter.settings.number_class == NUMBER_CLASS
    assert info.test_miou == pytest.approx(61.25)
    assert info.ddpm_source == {"source": "train", "file_name": "tiny_ddpm.pt"}  # nothing of this machine's paths
    assert info.ddpm_sha256 == sha256_file(segmenter.ddpm_checkpoint)


@pytest.mark.parametrize("as_tar", [False, True])
def test_round_trip_gives_the_same_segmenter(run, tmp_path, as_tar) -> None:
    segmenter, info, _ = run
    out = export_bundle(out=tmp_path / ("b.tar" if as_tar else "b"), segmenter=segmenter, run=info, as_tar=as_tar)
    assert out.is_file() == as_tar
    loaded = read_bundle(out, ddpm_checkpoint=segmenter.ddpm_checkpoint)  # referenced: given again
    assert fields(loaded) == fields(segmenter)
    assert loaded.ddpm_checkpoint == segmenter.ddpm_checkpoint
    for original, copied in zip(segmenter.member_paths, loaded.member_paths, strict=True):
        assert copied != original
        state, state_copy = load_member(original).state_dict(), load_member(copied).state_dict()
        assert all(torch.equal(state[k], state_copy[k]) for k in state)


def test_manifest_records_what_the_labels_depend_on(run, tmp_path) -> None:
    segmenter, info, _ = run
    manifest = read_manifest(export_bundle(out=tmp_path / "b", segmenter=segmenter, run=info))
    assert manifest["format_version"] == 2 and manifest["ddpmseg_version"]
    assert manifest["run"] == {"dataset": "tiny", "variant": "final", "seed": 1, "test_miou": 61.25}
    assert manifest["ddpm"]["sha256"] == info.ddpm_sha256 and manifest["ddpm"]["file"] is None
    assert manifest["ddpm"]["where"] == {"source": "train", "file_name": "tiny_ddpm.pt"}
    written = json.dumps(manifest)
    assert str(tmp_path) not in written and str(segmenter.ddpm_checkpoint.parent) not in written  # portable
    settings = manifest["settings"]
    assert settings == segmenter.settings.plain()
    assert settings["ddpm_flags"]["num_channels"] == TINY_FLAGS["num_channels"]
    assert settings["image_size"] == 32 and settings["non_square"] is None
    assert settings["tta_views"] == [["HorizontalFlip"], ["ToGray", "CoarseDropout"]] and settings["tta_seed"] == 0
    assert settings["noise_seed"] == 1
    assert set(manifest["files"]) == {f"members/member{m}.pt" for m in range(2)}
    for name, digest in manifest["files"].items():
        assert sha256_file(tmp_path / "b" / name) == digest


def test_included_ddpm_is_used_without_the_original(run, tmp_path) -> None:
    segmenter, info, _ = run
    out = export_bundle(out=tmp_path / "b.tar", segmenter=segmenter, run=info, include_ddpm=True, as_tar=True)
    segmenter.ddpm_checkpoint.unlink()
    loaded = read_bundle(out)
    assert loaded.ddpm_checkpoint.name == "tiny_ddpm.pt" and loaded.ddpm_checkpoint.is_file()
    assert sha256_file(loaded.ddpm_checkpoint) == info.ddpm_sha256
    assert loaded.identity == segmenter.identity


def test_a_tampered_member_is_named(run, tmp_path) -> None:
    segmenter, info, _ = run
    out = export_bundle(out=tmp_path / "b", segmenter=segmenter, run=info)
    member = out / "members" / "member1.pt"
    data = bytearray(member.read_bytes())
    data[len(data) // 2] ^= 0xFF
    member.write_bytes(bytes(data))
    with pytest.raises(DdpmsegError, match=r"members/member1\.pt has sha256 [0-9a-f]{64}, the manifest says") as error:
        read_bundle(out)
    assert "\n" not in str(error.value)


def test_a_ddpm_with_another_digest_is_refused_naming_both(run, tmp_path, tiny_checkpoint) -> None:
    segmenter, info, _ = run
    out = export_bundle(out=tmp_path / "b", segmenter=segmenter, run=info)
    other = tmp_path / "other.pt"
    state = torch.load(tiny_checkpoint, weights_only=True)
    torch.save({k: v + 1 for k, v in state.items()}, other)
    with pytest.raises(DdpmsegError) as error:
        read_bundle(out, ddpm_checkpoint=other)
    message = str(error.value)
    assert "\n" not in message
    assert sha256_file(other) in message and info.ddpm_sha256 in message


def test_a_referenced_ddpm_that_is_gone_asks_for_ddpm(run, tmp_path) -> None:
    segmenter, info, _ = run
    out = export_bundle(out=tmp_path / "b", segmenter=segmenter, run=info)
    kept = tmp_path / "kept.pt"
    segmenter.ddpm_checkpoint.rename(kept)
    with pytest.raises(DdpmsegError, match=rf"DDPM 'tiny_ddpm' \(sha256 {info.ddpm_sha256}\) is not in the bundle; give "
                       r"its checkpoint with --ddpm PATH \(Python: load_bundle\(\.\.\., ddpm=PATH\)\): tiny_ddpm\.pt, "
                       r"trained by the workflow that exported the bundle"):
        read_bundle(out)
    assert read_bundle(out, ddpm_checkpoint=kept).ddpm_checkpoint == kept


def test_an_edited_manifest_is_refused(run, tmp_path) -> None:
    segmenter, info, _ = run
    out = export_bundle(out=tmp_path / "b", segmenter=segmenter, run=info, include_ddpm=True)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["settings"]["class_names"][1] = "horse"
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DdpmsegError, match="was changed after export"):
        read_bundle(out)


def test_an_edit_with_a_recomputed_identity_cannot_change_the_features_or_classes(run, tmp_path) -> None:
    """The identity detects accidents, not tampering (it is not keyed): the members themselves refuse settings
    of another feature layout or other classes."""
    from ddpmseg.use.segmenter import segmenter_identity

    segmenter, info, _ = run
    out = export_bundle(out=tmp_path / "b", segmenter=segmenter, run=info, include_ddpm=True)
    original = json.loads((out / MANIFEST).read_text())
    for change, pattern in (({"blocks": [0, 1, 2, 3]}, r"takes 256 features and predicts 5 classes, the settings give 384"),
                            ({"number_class": 4, "class_names": ["a", "b", "c", "d"]}, "predicts 5 classes")):
        manifest = json.loads(json.dumps(original))
        manifest["settings"].update(change)
        edited = SegmenterSettings.from_plain(manifest["settings"])
        manifest["identity"] = segmenter_identity(member_digests=segmenter.member_digests,
                                                  ddpm_digest=segmenter.ddpm_digest, settings=edited)
        (out / MANIFEST).write_text(json.dumps(manifest))
        with pytest.raises(DdpmsegError, match=pattern):
            read_bundle(out)


def test_a_manifest_path_outside_the_bundle_is_refused(run, tmp_path) -> None:
    segmenter, info, _ = run
    out = export_bundle(out=tmp_path / "b", segmenter=segmenter, run=info)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"]["../outside.pt"] = "0" * 64
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DdpmsegError, match=r"names '\.\./outside\.pt', a path outside the bundle; refused"):
        read_bundle(out)


def test_a_ddpm_file_without_a_digest_is_refused(run, tmp_path) -> None:
    segmenter, info, _ = run
    out = export_bundle(out=tmp_path / "b", segmenter=segmenter, run=info)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["ddpm"]["file"] = "../../elsewhere.pt"
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DdpmsegError, match=r"\.\./\.\./elsewhere\.pt has no sha256 in manifest\.json"):
        read_bundle(out)


def test_a_member_linked_out_of_a_bundle_folder_is_refused(run, tmp_path) -> None:
    segmenter, info, _ = run
    out = export_bundle(out=tmp_path / "b", segmenter=segmenter, run=info)
    member = out / "members" / "member0.pt"
    outside = tmp_path / "outside.pt"
    member.rename(outside)
    member.symlink_to(outside)  # same bytes, same digest: only the link gives it away
    with pytest.raises(DdpmsegError, match="member0.pt is a symbolic link or leads outside the bundle; refused"):
        read_bundle(out)


def tar_with(path: Path, bundle: Path, extra: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w") as tar:
        for file in sorted(bundle.rglob("*")):
            if file.is_file():
                tar.add(file, arcname=file.relative_to(bundle).as_posix())
        tar.addfile(extra, io.BytesIO(data) if data else None)
    return path


def test_a_tar_bundle_with_a_link_is_refused(run, tmp_path) -> None:
    segmenter, info, _ = run
    folder = export_bundle(out=tmp_path / "b", segmenter=segmenter, run=info)
    link = tarfile.TarInfo("members/extra.pt")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    bad = tar_with(tmp_path / "link.tar", folder, link)
    with pytest.raises(DdpmsegError, match=r"member 'members/extra\.pt' is a symbolic link to '/etc/passwd'; refused"):
        read_bundle(bad)


def test_a_tar_bundle_with_an_escaping_path_is_refused(run, tmp_path) -> None:
    segmenter, info, _ = run
    folder = export_bundle(out=tmp_path / "b", segmenter=segmenter, run=info)
    escaping = tarfile.TarInfo("../escaped.pt")
    escaping.size = 4
    bad = tar_with(tmp_path / "escape.tar", folder, escaping, b"data")
    with pytest.raises(DdpmsegError, match=r"member '\.\./escaped\.pt' has a '\.\.' component; refused"):
        read_bundle(bad)
    assert not (tmp_path / "escaped.pt").exists()


def test_a_missing_run_names_the_target_to_build(tmp_path, tiny_checkpoint) -> None:
    config = tiny_config()
    finished_tiny_run(tmp_path, tiny_checkpoint, config)
    (tmp_path / "results/models/tiny/final/seed1/member1.pt").unlink()
    with pytest.raises(DdpmsegError, match=r"member1\.pt: missing; build the run first: snakemake results/scores/tiny/final/seed1/summary\.csv"):
        exported_run(config, dataset="tiny", variant="final", seed=1, workdir=tmp_path)
    with pytest.raises(DdpmsegError, match=r"--seed: 7 is not one of seeds \[0, 1\]"):
        exported_run(config, dataset="tiny", variant="final", seed=7, workdir=tmp_path)


def test_a_changed_checkpoint_is_not_exported_as_the_runs(run, tmp_path) -> None:
    segmenter, info, _ = run
    segmenter.ddpm_checkpoint.write_bytes(b"another checkpoint")
    with pytest.raises(DdpmsegError, match="differs from the run's DDPM checkpoint"):
        export_bundle(out=tmp_path / "b", segmenter=segmenter, run=info)
    assert not (tmp_path / "b").exists()


def test_run_segmenter_takes_the_recorded_ddpm_digest(run, tmp_path) -> None:
    """The workflow's stage builds the same segmenter (same identity) as `ddpmseg export` from the rule's
    inputs and params."""
    segmenter, info, config = run
    check = tmp_path / "check.json"
    save_json(check, {"sha256": info.ddpm_sha256})
    again = run_segmenter(
        members=[str(p) for p in segmenter.member_paths], checkpoint=str(segmenter.ddpm_checkpoint), check=check,
        settings=SegmenterSettings.of_run(config, dataset="tiny", variant="final", seed=1).plain(),
    )
    assert again == segmenter
    assert isinstance(info, RunInfo)


def test_a_loaded_bundle_labels_as_the_run_does(run, tmp_path, tiny_checkpoint) -> None:
    """Members fitting the tiny UNet's features: the run's segmenter and the one loaded from its .tar
    (DDPM included, original checkpoint gone) write the same labels, maps and table."""
    _, _, config = run
    width = tiny_feature_width(config, tiny_checkpoint)
    finished_tiny_run(tmp_path / "fitting", tiny_checkpoint, config, in_features=width)
    segmenter, info = exported_run(config, dataset="tiny", variant="final", seed=1, workdir=tmp_path / "fitting")
    rng = np.random.default_rng(1)
    images = []
    for index in range(2):
        images.append(tmp_path / "new" / f"img{index}.png")
        images[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)).save(images[-1])
    label_images(segmenter, images, tmp_path / "by_run", batch_size=2, progress=False)
    bundle = export_bundle(out=tmp_path / "b.tar", segmenter=segmenter, run=info, include_ddpm=True, as_tar=True)
    segmenter.ddpm_checkpoint.unlink()
    loaded = read_bundle(bundle)
    label_images(loaded, images, tmp_path / "by_bundle", batch_size=2, progress=False)
    for folder in ("labels", "uncertainty", "overlay"):
        for image in images:
            first = np.asarray(Image.open(tmp_path / "by_run" / folder / f"{image.stem}.png"))
            second = np.asarray(Image.open(tmp_path / "by_bundle" / folder / f"{image.stem}.png"))
            assert np.array_equal(first, second), (folder, image.name)
    assert (tmp_path / "by_run/predictions.csv").read_text() == (tmp_path / "by_bundle/predictions.csv").read_text()


def test_export_replaces_only_an_earlier_bundle(run, tmp_path) -> None:
    segmenter, info, _ = run
    out = export_bundle(out=tmp_path / "b", segmenter=segmenter, run=info)
    assert export_bundle(out=out, segmenter=segmenter, run=info) == out  # a new export of the same run
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(DdpmsegError, match="precious: exists and is not a ddpmseg bundle; choose another --out"):
        export_bundle(out=precious, segmenter=segmenter, run=info)
    with pytest.raises(DdpmsegError, match=r"thesis\.tex: exists and is not a ddpmseg bundle \.tar"):
        export_bundle(out=precious / "thesis.tex", segmenter=segmenter, run=info, as_tar=True)
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_an_rgb_control_run_exports_and_labels_without_any_ddpm(tmp_path, tiny_checkpoint, capsys) -> None:
    """A config whose variant classifies RGB values: no DDPM checkpoint or check.json in the working directory,
    none in or referenced by the bundle, and none asked for when it labels images."""
    config = tiny_config()
    config["variants"] = {"rgb_control": {"features": "rgb"}}
    workdir = tmp_path / "work"
    finished_tiny_run(workdir, tiny_checkpoint, config, variant="rgb_control", in_features=3)
    (workdir / "resources/checkpoints/tiny_ddpm.pt").unlink()
    (workdir / "results/ddpm/tiny_ddpm/check.json").unlink()
    segmenter, info = exported_run(config, dataset="tiny", variant="rgb_control", seed=1, workdir=workdir)
    assert segmenter.ddpm_checkpoint is None and info.ddpm_sha256 is None
    with pytest.raises(DdpmsegError, match="--include-ddpm: an RGB control's run uses no DDPM"):
        export_bundle(out=tmp_path / "b", segmenter=segmenter, run=info, include_ddpm=True)
    bundle = export_bundle(out=tmp_path / "b.tar", segmenter=segmenter, run=info, as_tar=True)
    manifest = read_manifest(bundle)
    assert manifest["ddpm"]["file"] is None and manifest["ddpm"]["sha256"] is None
    loaded = read_bundle(bundle)
    assert loaded.identity == segmenter.identity and loaded.ddpm_checkpoint is None
    image = tmp_path / "new.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)).save(image)
    summary = label_images(loaded, [image], tmp_path / "out", tta=False, progress=False)
    assert summary.labelled == 1 and np.asarray(Image.open(tmp_path / "out/labels/new.png")).shape == (32, 32)


def read_manifest(bundle: Path) -> dict:
    """The manifest of a bundle folder or .tar, as written."""
    if bundle.is_dir():
        return json.loads((bundle / MANIFEST).read_text())
    with tarfile.open(bundle) as tar:
        return json.loads(tar.extractfile(MANIFEST).read())
