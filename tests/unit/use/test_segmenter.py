"""The Segmenter: its identity follows file contents and settings (not paths), a DDPM segmenter needs its
checkpoint, and its DDPM is built once."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import FEATURE_BLOCKS, segmenter_settings

from ddpmseg.classifier.mlp import build_classifier, save_member
from ddpmseg.base.errors import DdpmsegError
from ddpmseg.base.files import sha256_file
from ddpmseg.use.settings import SegmenterSettings
from ddpmseg.use.segmenter import make_segmenter, segmenter_ddpm


@pytest.fixture
def members(tmp_path):
    paths = []
    for seed in range(2):
        torch.manual_seed(seed)
        path = tmp_path / f"member{seed}.pth"
        save_member(path, build_classifier(8, 2), in_features=8, number_class=2, dropout=0.0)
        paths.append(path)
    return paths


def test_identity_follows_contents_and_settings_not_paths(tmp_path, members, tiny_checkpoint) -> None:
    first = make_segmenter(member_paths=members, ddpm_checkpoint=tiny_checkpoint, settings=SegmenterSettings(**segmenter_settings()))
    assert first.settings.blocks == tuple(sorted(FEATURE_BLOCKS))  # model order
    moved = tmp_path / "moved"
    moved.mkdir()
    copies = [shutil.copy(p, moved / p.name) for p in members]
    checkpoint_copy = shutil.copy(tiny_checkpoint, moved / "ddpm.pt")
    same = make_segmenter(member_paths=copies, ddpm_checkpoint=checkpoint_copy, settings=SegmenterSettings(**segmenter_settings()))
    assert same.identity == first.identity
    # given digests (a bundle's manifest) give the same identity as computed ones
    given = make_segmenter(
        member_paths=members, ddpm_checkpoint=tiny_checkpoint, member_digests=[sha256_file(p) for p in members],
        ddpm_digest=sha256_file(tiny_checkpoint), settings=SegmenterSettings(**segmenter_settings()),
    )
    assert given.identity == first.identity

    others = {
        make_segmenter(member_paths=members, ddpm_checkpoint=tiny_checkpoint, settings=SegmenterSettings(**segmenter_settings(noise_seed=1))).identity,
        make_segmenter(member_paths=members, ddpm_checkpoint=tiny_checkpoint, settings=SegmenterSettings(**segmenter_settings(tta_views=[]))).identity,
        make_segmenter(member_paths=members, ddpm_checkpoint=tiny_checkpoint, settings=SegmenterSettings(**segmenter_settings(palette=[(0, 0, 0), (0, 0, 1)]))).identity,
        make_segmenter(member_paths=list(reversed(members)), ddpm_checkpoint=tiny_checkpoint, settings=SegmenterSettings(**segmenter_settings())).identity,
    }
    torch.save({"other": torch.zeros(1)}, copies[0])  # a member's contents change, its path does not
    others.add(make_segmenter(member_paths=copies, ddpm_checkpoint=checkpoint_copy, settings=SegmenterSettings(**segmenter_settings())).identity)
    assert first.identity not in others and len(others) == 5


def test_missing_member_file_is_named(tmp_path, members, tiny_checkpoint) -> None:
    with pytest.raises(DdpmsegError, match="gone.pth: member file does not exist"):
        make_segmenter(member_paths=[tmp_path / "gone.pth"], ddpm_checkpoint=tiny_checkpoint, settings=SegmenterSettings(**segmenter_settings()))


def test_ddpm_is_built_once_per_checkpoint_and_device(members, tiny_checkpoint) -> None:
    segmenter = make_segmenter(member_paths=members, ddpm_checkpoint=tiny_checkpoint, settings=SegmenterSettings(**segmenter_settings()))
    model, _ = segmenter_ddpm(segmenter, "cpu")
    assert segmenter_ddpm(segmenter, "cpu")[0] is model
    assert next(model.parameters()).dtype == torch.float32 and not model.training


def test_rgb_control_does_not_depend_on_the_ddpm_file(tmp_path, members, tiny_checkpoint) -> None:
    rgb = segmenter_settings(feature_source="rgb", steps=[], blocks=[])
    first = make_segmenter(member_paths=members, ddpm_checkpoint=tmp_path / "absent.pt", settings=SegmenterSettings(**rgb))
    assert first.identity == make_segmenter(member_paths=members, ddpm_checkpoint=tiny_checkpoint, settings=SegmenterSettings(**rgb)).identity
    with pytest.raises(DdpmsegError, match="absent.pt: DDPM checkpoint file does not exist"):
        make_segmenter(member_paths=members, ddpm_checkpoint=tmp_path / "absent.pt", settings=SegmenterSettings(**segmenter_settings()))
    # no checkpoint at all: the RGB control needs none, DDPM features do
    without = make_segmenter(member_paths=members, ddpm_checkpoint=None, settings=SegmenterSettings(**rgb))
    assert without.ddpm_checkpoint is None and without.identity == first.identity
    with pytest.raises(DdpmsegError, match="^a segmenter with DDPM features needs the DDPM checkpoint$"):
        make_segmenter(member_paths=members, ddpm_checkpoint=None, settings=SegmenterSettings(**segmenter_settings()))
