"""Test-time augmentation views by name (docs/method.md §6), without albumentations: the transforms a view
may list, the named sets of views a config may give, and a view's name in paths. Applying a view is
:mod:`ddpmseg.prediction.tta`'s job."""

from __future__ import annotations

from collections.abc import Sequence

from ..base.errors import DdpmsegError

TTA_TRANSFORMS = ("ToGray", "CoarseDropout", "ColorJitter", "HorizontalFlip", "ChannelShuffle")
# Named sets of views, each besides the image itself: the 4 views of the report's table ("study") and
# those of the study's code ("study_code"); a config's tta_views may name one.
NAMED_TTA_VIEWS = {
    "study": (
        ("ToGray", "CoarseDropout"),
        ("ToGray",),
        ("ColorJitter", "HorizontalFlip"),
        ("ColorJitter", "HorizontalFlip", "ChannelShuffle"),
    ),
    "study_code": (
        ("ToGray", "CoarseDropout"),
        ("ColorJitter", "HorizontalFlip"),
        ("CoarseDropout", "ColorJitter"),
        ("ColorJitter", "HorizontalFlip", "ChannelShuffle"),
    ),
}


def check_view(view: Sequence[str]) -> list[str]:
    """The view as a list, after checking that it names known transforms, each once."""
    if isinstance(view, str) or not all(isinstance(name, str) for name in view):
        raise DdpmsegError(
            f"TTA view {view!r} must be a list of transform names from {', '.join(TTA_TRANSFORMS)}"
        )
    for name in view:
        if name not in TTA_TRANSFORMS:
            raise DdpmsegError(
                f"TTA view {list(view)}: unknown transform '{name}', allowed: {', '.join(TTA_TRANSFORMS)}"
            )
    if len(set(view)) != len(view):
        raise DdpmsegError(f"TTA view {list(view)} names a transform twice")
    return list(view)


def view_key(view: Sequence[str]) -> str:
    """A short, stable, file-system-safe name of a view, e.g. 'togray+coarsedropout'; 'original' for []."""
    view = check_view(view)
    return "+".join(name.lower() for name in view) if view else "original"


def view_is_flipped(view: Sequence[str]) -> bool:
    """Whether the view mirrors the image left-right (its labels must be flipped back)."""
    return "HorizontalFlip" in check_view(view)
