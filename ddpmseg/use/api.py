"""The Python API: a bundle loaded once, labelling images held in memory.

    import ddpmseg
    from PIL import Image

    segmenter = ddpmseg.load_bundle("bundle.tar", ddpm="ffhq.pt")
    result = segmenter.predict(Image.open("face.jpg"))
    result.labels, result.uncertainty, result.score

The labels are those ``ddpmseg predict`` writes for the same file (:mod:`ddpmseg.use.labelling`: the
image's own size and resolution, the bundle's non-square policy, TTA when the bundle has views), on CUDA
when present. See docs/apply.md, "From Python".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..base.errors import DdpmsegError
from ..data.decode import read_image, viewed_rgb
from ..data.preprocess import check_non_square_policy
from .bundle import read_bundle
from .labelling import EnsembleLabeller, check_class_columns, model_square
from .segmenter import Segmenter, with_non_square
from .settings import SegmenterSettings

IN_MEMORY_NAME = "image.png"  # the name that seeds the TTA views of an array given without one
NON_SQUARE_ARGUMENT = "load_bundle(..., non_square=...)"


@dataclass(frozen=True)
class ImageLabels:
    """One image labelled at its own size (H, W: as viewers show it, EXIF orientation applied)."""

    labels: np.ndarray  # (H, W) int32 class ids; ignore_label where a center crop cut the image off
    uncertainty: np.ndarray  # (H, W) float32: the members' Jensen-Shannon divergence in nats; 0 outside
    score: float  # the image's uncertainty: the mean of the top 10 % of its JS values (ddpmseg suggest's)
    inside: np.ndarray  # (H, W) bool: the part of the image the model saw


class BundleSegmenter:
    """A bundle's ensemble and DDPM, loaded once (:func:`load_bundle`)."""

    def __init__(self, segmenter: Segmenter, *, tta: bool = True, batch_size: int = 4):
        check_class_columns(segmenter)
        self.segmenter = segmenter
        self._labeller = EnsembleLabeller(segmenter, tta=tta, batch_size=batch_size)

    @property
    def settings(self) -> SegmenterSettings:
        """The run's settings: ``class_names``, ``palette``, ``ignore_label``, ``image_size``, ..."""
        return self.segmenter.settings

    def predict(self, image: Image.Image | np.ndarray | str | Path, *, name: str | None = None) -> ImageLabels:
        """Label one image: a PIL image, an (H, W, 3) uint8 RGB array, or an image file's path.

        ``name`` is the file name that seeds the image's random TTA views (CoarseDropout, ColorJitter), as
        ``ddpmseg predict`` seeds them by the file's name; it defaults to the file's name for a path or a
        PIL image opened from a file, else ``image.png``. The same name gives the same labels.
        """
        [labelled] = self.predict_many([image], names=[name])
        return labelled

    def predict_many(self, images, *, names=None) -> list[ImageLabels]:
        """:meth:`predict` of each image (``names``: each one's ``name``), ``batch_size`` per DDPM pass."""
        names = list(names) if names is not None else [None] * len(images)
        results = []
        for start in range(0, len(images), self._labeller.batch_size):
            arrays, labels = zip(*(_rgb(image, name) for image, name in
                                   zip(images[start : start + self._labeller.batch_size],
                                       names[start : start + self._labeller.batch_size], strict=True)))
            squares = [model_square(array, self.segmenter, label, NON_SQUARE_ARGUMENT)
                       for array, label in zip(arrays, labels)]
            for labelled in self._labeller.label_batch([Path(label) for label in labels], arrays, squares):
                results.append(ImageLabels(labelled.labels, labelled.js, labelled.score, labelled.inside))
        return results


def _rgb(image: Image.Image | np.ndarray | str | Path, name: str | None) -> tuple[np.ndarray, str]:
    """(H, W, 3) uint8 RGB as viewers show the image, and the name that seeds its TTA views."""
    if isinstance(image, (str, Path)):
        return read_image(image), name or Path(image).name
    if isinstance(image, Image.Image):
        source = getattr(image, "filename", "") or ""
        label = name or (Path(source).name if source else IN_MEMORY_NAME)
        try:
            return viewed_rgb(image, source or label), label
        except (OSError, ValueError) as error:
            raise DdpmsegError(f"{label}: unreadable image ({error})") from None
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise DdpmsegError(f"an image array must be (H, W, 3) uint8 RGB, got {array.shape} {array.dtype}")
    return np.ascontiguousarray(array), name or IN_MEMORY_NAME


def load_bundle(
    path: str | Path,
    ddpm: str | Path | None = None,
    *,
    non_square: str | None = None,
    tta: bool = True,
    batch_size: int = 4,
) -> BundleSegmenter:
    """A bundle written by ``ddpmseg export`` (folder or ``.tar``), every file checked, ready to label.

    ``ddpm``: the DDPM checkpoint, required when the bundle only names it (exported without
    ``--include-ddpm``); ``non_square`` (``resize`` or ``center_crop``) overrides the bundle's policy for
    non-square images; ``tta`` False labels without test-time augmentation (``--no-tta``);
    ``batch_size``: images per DDPM forward pass in :meth:`BundleSegmenter.predict_many`.
    """
    check_non_square_policy(non_square, "non_square")
    segmenter = read_bundle(Path(path), ddpm_checkpoint=None if ddpm is None else Path(ddpm))
    return BundleSegmenter(with_non_square(segmenter, non_square), tta=tta, batch_size=batch_size)
