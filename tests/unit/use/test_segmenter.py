"""The Segmenter: its identity follows file contents and settings (not paths), bad settings are refused
with one line, and its DDPM is built once."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import FEATURE_BLOCKS, FEATURE_STEPS, TINY_FLAGS

from ddpmseg.classifier.mlp import build_classifier, save_member
from ddpmseg.diffusion.model import model_flags
from ddpmseg.base.errors import DdpmsegError
from ddpmseg.base.files import sha256_file
from ddpmseg.use.segmenter import make_segmenter, segmenter_ddpm


def settings(**overrides) -> dict:
    base = {
        "ddpm_flags": model_flags(TINY_FLAGS),
        "steps": FEATURE_STEPS,
        "blocks": list(reversed(FEATURE_BLOCKS)),
        "noise_seed": 0,
        "feature_source": "ddpm",
        "image_size": TINY_FLAGS["image_size"],
        "non_square": "resize",
        "number_class": 2,
        "ignore_label": 255,
        "class_names": ["background", "thing"],
        "palette": [(0, 0, 0), (255, 0, 0)],
        "tta_views": [["HorizontalFlip"]],
        "tta_seed": 0,
    }
    return {**base, **overrides}


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
    first = make_segmenter(member_paths=members, ddpm_checkpoint=tiny_checkpoint, **settings())
    assert first.blocks == tuple(sorted(FEATURE_BLOCKS))  # model order
    moved = tmp_path / "moved"
    moved.mkdir()
    copies = [shutil.copy(p, moved / p.name) for p in members]
    checkpoint_copy = shutil.copy(tiny_checkpoint, moved / "ddpm.pt")
    same = make_segmenter(member_paths=copies, ddpm_checkpoint=checkpoint_copy, **settings())
    assert same.identity == first.identity
    # given digests (a bundle's manifest) give the same identity as computed ones
    given = make_segmenter(
        member_paths=members, ddpm_checkpoint=tiny_checkpoint, member_digests=[sha256_file(p) for p in members],
        ddpm_digest=sha256_file(tiny_checkpoint), **settings(),
    )
    assert given.identity == first.identity

    others = {
        make_segmenter(member_paths=members, ddpm_checkpoint=tiny_checkpoint, **settings(noise_seed=1)).identity,
        make_segmenter(member_paths=members, ddpm_checkpoint=tiny_checkpoint, **settings(tta_views=[])).identity,
        make_segmenter(member_paths=members, ddpm_checkpoint=tiny_checkpoint, **settings(palette=[(0, 0, 0), (0, 0, 1)])).identity,
        make_segmenter(member_paths=list(reversed(members)), ddpm_checkpoint=tiny_checkpoint, **settings()).identity,
    }
    torch.save({"other": torch.zeros(1)}, copies[0])  # a member's contents change, its path does not
    others.add(make_segmenter(member_paths=copies, ddpm_checkpoint=checkpoint_copy, **settings()).identity)
    assert first.identity not in others and len(others) == 5


@pytest.mark.parametrize(
    "change, pattern",
    [
        ({"class_names": ["only one"]}, "1 class names for number_class 2"),
        ({"non_square": "stretch"}, "non_square 'stretch'"),
        ({"image_size": 64}, "image_size 64 differs"),
        ({"feature_source": "clip"}, "feature_source 'clip'"),
        ({"tta_views": [["Rotate"]]}, "unknown transform 'Rotate'"),
        ({"palette": [(0, 0, 0)]}, "palette"),
        ({"ignore_label": 300}, "8-bit label PNGs"),
        ({"blocks": [2, 2]}, "block 2 is listed twice"),
    ],
)
def test_bad_settings_are_one_line_errors(members, tiny_checkpoint, change, pattern) -> None:
    with pytest.raises(DdpmsegError, match=pattern) as error:
        make_segmenter(member_paths=members, ddpm_checkpoint=tiny_checkpoint, **settings(**change))
    assert "\n" not in str(error.value)


def test_missing_member_file_is_named(tmp_path, members, tiny_checkpoint) -> None:
    with pytest.raises(DdpmsegError, match="gone.pth: member file does not exist"):
        make_segmenter(member_paths=[tmp_path / "gone.pth"], ddpm_checkpoint=tiny_checkpoint, **settings())


def test_ddpm_is_built_once_per_checkpoint_and_device(members, tiny_checkpoint) -> None:
    segmenter = make_segmenter(member_paths=members, ddpm_checkpoint=tiny_checkpoint, **settings())
    model, _ = segmenter_ddpm(segmenter, "cpu")
    assert segmenter_ddpm(segmenter, "cpu")[0] is model
    assert next(model.parameters()).dtype == torch.float32 and not model.training


def test_rgb_control_does_not_depend_on_the_ddpm_file(tmp_path, members, tiny_checkpoint) -> None:
    rgb = settings(feature_source="rgb", steps=[], blocks=[])
    first = make_segmenter(member_paths=members, ddpm_checkpoint=tmp_path / "absent.pt", **rgb)
    assert first.identity == make_segmenter(member_paths=members, ddpm_checkpoint=tiny_checkpoint, **rgb).identity
    with pytest.raises(DdpmsegError, match="absent.pt: DDPM checkpoint file does not exist"):
        make_segmenter(member_paths=members, ddpm_checkpoint=tmp_path / "absent.pt", **settings())
    # no checkpoint at all: the RGB control needs none, DDPM features do
    without = make_segmenter(member_paths=members, ddpm_checkpoint=None, **rgb)
    assert without.ddpm_checkpoint is None and without.identity == first.identity
    with pytest.raises(DdpmsegError, match="^a segmenter with DDPM features needs the DDPM checkpoint$"):
        make_segmenter(member_paths=members, ddpm_checkpoint=None, **settings())
    with pytest.raises(DdpmsegError, match="DDPM features needs at least one feature step"):
        make_segmenter(member_paths=members, ddpm_checkpoint=tiny_checkpoint, **settings(steps=[]))
