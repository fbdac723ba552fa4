"""Test-time augmentation (docs/method.md §6): named views, their deterministic application, undo and
the vote."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import IGNORE, SCENE_CLASS_IDS, SCENE_PALETTE, colour_scene

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.prediction.tta import apply_view, tta_vote, undo_view
from ddpmseg.prediction.views import NAMED_TTA_VIEWS, view_is_flipped, view_key

STUDY_TTA_VIEWS = list(NAMED_TTA_VIEWS["study"])
STUDY_CODE_TTA_VIEWS = list(NAMED_TTA_VIEWS["study_code"])


def test_views_and_keys() -> None:
    assert len(STUDY_TTA_VIEWS) == len(STUDY_CODE_TTA_VIEWS) == 4
    assert [view_key(v) for v in STUDY_TTA_VIEWS] == [
        "togray+coarsedropout",
        "togray",
        "colorjitter+horizontalflip",
        "colorjitter+horizontalflip+channelshuffle",
    ]
    assert view_key(["CoarseDropout", "ColorJitter"]) == "coarsedropout+colorjitter"
    assert view_key([]) == "original"
    assert [view_is_flipped(v) for v in STUDY_TTA_VIEWS] == [False, False, True, True]


@pytest.mark.parametrize("view", [["Blur"], ["ToGray", "Rotate"], "ToGray", ["ToGray", "ToGray"]])
def test_unknown_view_is_an_error(view) -> None:
    image, _ = colour_scene()
    with pytest.raises(DdpmsegError) as error:
        apply_view(image, view, 0, 0)
    assert "\n" not in str(error.value)
    if isinstance(view, list) and view[-1] in ("Blur", "Rotate"):
        assert f"'{view[-1]}'" in str(error.value) and "ChannelShuffle" in str(error.value)
    for call in (view_key, view_is_flipped):
        with pytest.raises(DdpmsegError):
            call(view)
    with pytest.raises(DdpmsegError):
        undo_view(np.zeros((2, 2), int), np.ones((2, 2), bool), view, IGNORE)


@pytest.mark.parametrize("view", STUDY_TTA_VIEWS + STUDY_CODE_TTA_VIEWS)
def test_apply_view_is_deterministic(view: list[str]) -> None:
    image, _ = colour_scene()
    first = apply_view(image, view, 3, 5)
    again = apply_view(image, view, 3, 5, IGNORE)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert first[0].dtype == np.uint8 and first[1].dtype == bool and first[1].shape == image.shape[:2]
    assert not np.array_equal(first[0], image)
    if "CoarseDropout" in view or "ColorJitter" in view:
        other = apply_view(image, view, 3, 6)
        assert not np.array_equal(first[0], other[0])
    assert first[1].all() == ("CoarseDropout" not in view)


def test_view_holes_are_invalid_in_the_view_frame() -> None:
    image, mask = colour_scene()
    for view in (["HorizontalFlip", "CoarseDropout"], ["CoarseDropout", "HorizontalFlip"],
                 ["ToGray", "CoarseDropout"]):
        view_image, valid = apply_view(image, view, 0, 1)
        expected = image[:, ::-1] if view_is_flipped(view) else image
        assert (view_image[~valid] == 0).all() and (~valid).sum() >= 10 * 10
        if "ToGray" not in view:
            np.testing.assert_array_equal(view_image[valid], expected[valid])
        # "predict" each pixel's class from its colour on the view, map back, compare to the truth
        if "ToGray" not in view:
            distances = ((view_image[:, :, None, :].astype(int) - SCENE_PALETTE[None, None]) ** 2).sum(-1)
            predicted = SCENE_CLASS_IDS[distances.argmin(axis=-1)].astype(np.int32)
            back = undo_view(predicted, valid, view, IGNORE)
            holes_back = ~valid[:, ::-1] if view_is_flipped(view) else ~valid
            np.testing.assert_array_equal(back == IGNORE, holes_back)
            np.testing.assert_array_equal(back[~holes_back], mask[~holes_back])


def test_undo_view_on_a_hand_made_mask() -> None:
    truth = np.array([[0, 1, 2, 3],
                      [4, 5, 6, 7],
                      [1, 1, 2, 2]])
    view = ["ColorJitter", "HorizontalFlip"]
    on_view = truth[:, ::-1]
    np.testing.assert_array_equal(on_view, [[3, 2, 1, 0], [7, 6, 5, 4], [2, 2, 1, 1]])
    np.testing.assert_array_equal(undo_view(on_view, np.ones((3, 4), bool), view, 9), truth)
    # a hole at view columns 0-1 of row 0 is at original columns 2-3
    valid = np.ones((3, 4), bool)
    valid[0, :2] = False
    np.testing.assert_array_equal(
        undo_view(on_view, valid, view, 9), [[0, 1, 9, 9], [4, 5, 6, 7], [1, 1, 2, 2]]
    )
    # un-flipped view: the hole stays where it is
    np.testing.assert_array_equal(
        undo_view(truth, valid, ["ToGray", "CoarseDropout"], 9), [[9, 9, 2, 3], [4, 5, 6, 7], [1, 1, 2, 2]]
    )


def test_tta_vote_hand_worked_cases() -> None:
    I = IGNORE
    # pixels:   majority  ignored-votes  tie->orig  tie-no-orig  all-ignore  orig-ignored  ignore-majority
    labels = np.array([
        [1,        I,             2,         0,           I,           I,             3],   # view 0: original
        [1,        3,             1,         2,           I,           2,             I],
        [2,        I,             1,         2,           I,           2,             I],
        [1,        I,             2,         4,           I,           1,             I],
        [0,        I,             0,         4,           I,           1,             I],
    ])
    # 0: 1 has 3 votes; 1: only view 1 votes; 2: 1 and 2 tie at 2, the original says 2; 3: 2 and 4 tie,
    # the original's 0 is not among them -> smallest 2; 4: nothing but ignore -> the original's ignore;
    # 5: 1 and 2 tie, the original is ignore -> 1; 6: one vote for 3 beats four ignore votes
    expected = np.array([1, 3, 2, 2, I, 1, 3])
    np.testing.assert_array_equal(tta_vote(labels, I, number_class=5), expected)
    np.testing.assert_array_equal(tta_vote(labels, I), expected)  # number_class inferred
    # the same pixels as a (V, H, W) stack keep their shape
    np.testing.assert_array_equal(tta_vote(labels.reshape(5, 1, 7), I, 0, 5), expected.reshape(1, 7))
    # view 1 as the un-augmented one: ties at pixels 2, 3, 5 go to its 1, 2, 2; pixel 4 takes its ignore
    np.testing.assert_array_equal(tta_vote(labels, I, original=1, number_class=5), [1, 3, 1, 2, I, 2, 3])


def test_tta_vote_ignores_an_ignore_label_that_is_a_class_id() -> None:
    # bedroom_28 ignores class 0: its votes do not count, the tie 1/2 goes to the original's 2
    labels = np.array([[2, 0, 0], [1, 0, 3], [0, 0, 3], [1, 0, 0], [2, 0, 0]])
    np.testing.assert_array_equal(tta_vote(labels, 0, 0, 4), [2, 0, 3])


def test_tta_vote_rejects_bad_labels() -> None:
    with pytest.raises(DdpmsegError, match="outside"):
        tta_vote(np.array([[0, 5], [1, 1]]), 255, 0, 5)
    with pytest.raises(DdpmsegError, match="original"):
        tta_vote(np.array([[0, 1], [1, 1]]), 255, original=2, number_class=5)
