"""Label new images with a trained segmenter, at their own size and resolution (docs/method.md §1 and §4).

Each image is read, made square by the segmenter's ``non_square`` policy and resized to its
``image_size`` as the dataset stage does (:mod:`ddpmseg.data.preprocess`), and its DDPM features are
computed in memory. The ensemble then labels the part of the image the model saw (all of it, or its
central square under ``center_crop``) at the image's own resolution: the members' first layers are
upsampled to the image's pixels rather than the model's (:func:`ddpmseg.prediction.predict.predict_image`
with ``out_shape``), so boundaries follow the image; test-time augmentation, when the segmenter has
views, votes there too. Pixels a center crop cut off get ``ignore_label``.

Outputs in the labelling folder, per image stem: ``labels/<stem>.png`` (8-bit palette PNG of class
ids, ignore_label pixels keep their id), ``overlay/<stem>.png`` (the classes' colours over the image,
class 0, the background, left untinted), ``uncertainty/<stem>.png`` (the plain ensemble's per-pixel JS
divergence on the fixed logarithmic colour scale of :mod:`ddpmseg.prediction.visualize`),
``rows/<stem>.json`` (the image's row of the table) and, over all images of a call,
``predictions.csv``. ``.ddpmseg-labelling.json`` records the segmenter's identity: a rerun with the
same segmenter skips the images whose outputs are all there and were made from the same file (its
sha256 is kept in the row), so an interrupted run resumes; another segmenter is refused.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from ..classifier.mlp import load_ensemble
from ..data.listing import check_unique_stems
from ..data.decode import read_image
from ..diffusion.model import select_device
from ..base.errors import DdpmsegError
from ..features.extract import channel_last_layers, feature_batches
from ..base.files import atomic_path, load_json, save_json, save_png, sha256_file
from ..prediction.predict import predict_image, uncertainty_score
from ..base.progress import progress_bar
from .segmenter import Segmenter, segmenter_ddpm
from ..base.files import write_csv
from ..prediction.tta import apply_view, tta_labels
from ..prediction.visualize import IGNORE_COLOUR, colourise, panel, uncertainty_legend, uncertainty_picture
from ..data.preprocess import crop_box, model_image, place_in_image, resize_nearest

MARKER = ".ddpmseg-labelling.json"
PREDICTIONS = "predictions.csv"
OUTPUT_FOLDERS = ("labels", "overlay", "uncertainty")
ROWS = "rows"
FIXED_COLUMNS = ("image", "width", "height", "uncertainty", "ignored")
OVERLAY_ALPHA = 0.5


@dataclass
class LabellingSummary:
    """What a labelling call did: images labelled now, skipped (done before), and failed with a reason."""

    labelled: int
    skipped: int
    failed: list[tuple[Path, str]] = field(default_factory=list)


@dataclass
class Prediction:
    """One image labelled at its own size."""

    path: Path  # the image's file (or, for an image given in memory, the name that seeds its TTA views)
    original: np.ndarray  # (H, W, 3) uint8 as read
    labels: np.ndarray  # (H, W) int32: the final labels (TTA-voted when TTA is on); ignore_label outside
    js: np.ndarray  # (H, W) float32: the plain ensemble's JS uncertainty (nats); 0 outside
    inside: np.ndarray  # (H, W) bool: the part the model saw (all but a center crop's margins)
    score: float  # the image's uncertainty: uncertainty_score of its JS inside


def tta_image_index(path: Path) -> int:
    """The image index that seeds an image's TTA views: CRC-32 of its file name, below 2**31, so a view
    depends on the name only, not on which other images are labelled with it."""
    return zlib.crc32(Path(path).name.encode()) % 2**31


def check_ensemble(ensemble: Sequence[nn.Module], segmenter: Segmenter) -> None:
    for path, member in zip(segmenter.member_paths, ensemble, strict=True):
        classes = member[-1].out_features
        if classes != segmenter.settings.number_class:
            raise DdpmsegError(f"{path}: member predicts {classes} classes, the segmenter has {segmenter.settings.number_class}")


def check_feature_width(ensemble: Sequence[nn.Module], segmenter: Segmenter, layers: Sequence[torch.Tensor]) -> None:
    width = sum(layer.shape[-1] for layer in layers)
    for path, member in zip(segmenter.member_paths, ensemble, strict=True):
        if member[0].in_features != width:
            raise DdpmsegError(
                f"{path}: member takes {member[0].in_features} features, the segmenter's feature settings give {width}"
            )


def image_layers(segmenter: Segmenter, images: Sequence[np.ndarray]) -> list[list[torch.Tensor]]:
    """Per image, its channel-last (h, w, C) float16 features in feature order, for (S, S, 3) uint8
    images as one batch: the DDPM's activations, or for the RGB control one layer of the pixels' values
    in [-1, 1]. Rounded to float16 as a feature store keeps them, so that an image gets the labels the
    workflow's test prediction gives it."""
    settings = segmenter.settings
    ddpm = None if settings.feature_source == "rgb" else segmenter_ddpm(segmenter)
    batch = np.stack(images)
    [(_, activations)] = feature_batches(batch, ddpm=ddpm, steps=settings.steps, blocks=settings.blocks,
                                         noise_seed=settings.noise_seed, batch_size=len(batch))
    return [channel_last_layers(activations, index) for index in range(len(batch))]


def batched_layers(segmenter: Segmenter, images: Sequence[np.ndarray], batch_size: int) -> list[list[torch.Tensor]]:
    """:func:`image_layers` of any number of images, ``batch_size`` per DDPM forward pass."""
    layers: list[list[torch.Tensor]] = []
    for start in range(0, len(images), batch_size):
        layers += image_layers(segmenter, images[start : start + batch_size])
    return layers


class EnsembleLabeller:
    """The segmenter's members, loaded once, labelling batches of images (see :func:`predictions`)."""

    def __init__(self, segmenter: Segmenter, *, tta: bool, batch_size: int):
        if batch_size < 1:
            raise DdpmsegError(f"batch size {batch_size} must be at least 1")
        self.segmenter, self.batch_size = segmenter, batch_size
        self.views = [list(view) for view in segmenter.settings.tta_views] if tta else []
        # the members on the DDPM's device (CUDA when present): the native-resolution products run there
        self.ensemble = [member.to(select_device()) for member in load_ensemble(segmenter.member_paths)]
        check_ensemble(self.ensemble, segmenter)

    def label(self, layers: Sequence[torch.Tensor], shape: tuple[int, int]) -> tuple[np.ndarray, torch.Tensor]:
        """(labels int32, JS float32) of one image's activations on an (H, W) grid over the model's square."""
        check_feature_width(self.ensemble, self.segmenter, layers)
        settings = self.segmenter.settings
        labels, js = predict_image(self.ensemble, layers, settings.image_size, settings.number_class, out_shape=shape)
        return labels.numpy().astype(np.int32), js

    def label_batch(
        self, paths: Sequence[Path], originals: Sequence[np.ndarray], squares: Sequence[np.ndarray]
    ) -> list[Prediction]:
        """Each image's :class:`Prediction`, from the image as read and the model's square of it
        (:func:`read_for_model`); views are batched like the images."""
        settings = self.segmenter.settings
        boxes = [crop_box(*original.shape[:2], settings.non_square)[2:] for original in originals]
        plain = [self.label(layers, box) for layers, box in zip(batched_layers(self.segmenter, squares, self.batch_size), boxes)]
        finals = [labels for labels, _ in plain]
        if self.views:
            per_image: list[list[tuple[np.ndarray, np.ndarray, list[str]]]] = [[] for _ in squares]
            for view in self.views:
                shown = [apply_view(square, view, settings.tta_seed, tta_image_index(path))
                         for path, square in zip(paths, squares, strict=True)]
                view_layers = batched_layers(self.segmenter, [image for image, _ in shown], self.batch_size)
                for votes, (_, valid), layers, box in zip(per_image, shown, view_layers, boxes, strict=True):
                    # the view's labels on the image's grid; its dropout holes scaled up with it
                    votes.append((self.label(layers, box)[0], resize_nearest(valid, *box), view))
            finals = [tta_labels(labels, votes, settings.ignore_label, settings.number_class)
                      for labels, votes in zip(finals, per_image, strict=True)]
        predictions = []
        for path, original, labels, (_, js) in zip(paths, originals, finals, plain, strict=True):
            height, width = original.shape[:2]
            placed, inside = place_in_image(labels, height, width, settings.non_square, settings.ignore_label)
            js_map, _ = place_in_image(js.numpy(), height, width, settings.non_square, 0.0)
            predictions.append(Prediction(path, original, placed, js_map, inside, uncertainty_score(js)))
        return predictions


NON_SQUARE_SETTING = "a non_square policy"


def read_for_model(path: Path, segmenter: Segmenter, non_square_setting: str = NON_SQUARE_SETTING) -> tuple[np.ndarray, np.ndarray]:
    """(original (H, W, 3), square model input (S, S, 3)) of one image file; DdpmsegError if unreadable, or
    non-square without a policy (naming ``non_square_setting``, where the user gives one)."""
    original = read_image(path)
    return original, model_square(original, segmenter, path, non_square_setting)


def model_square(
    original: np.ndarray, segmenter: Segmenter, path: str | Path, non_square_setting: str = NON_SQUARE_SETTING
) -> np.ndarray:
    """The (S, S, 3) model input of an (H, W, 3) uint8 image under the segmenter's policy (errors name
    ``path``)."""
    settings = segmenter.settings
    return model_image(original, settings.image_size, settings.non_square, path, choose=non_square_setting)


def predictions(
    segmenter: Segmenter,
    paths: Sequence[Path],
    failed: list[tuple[Path, str]],
    *,
    tta: bool,
    batch_size: int,
    progress: bool,
    desc: str,
    non_square_setting: str = NON_SQUARE_SETTING,
) -> Iterator[Prediction]:
    """Label ``paths`` batch by batch, yielding each readable image's :class:`Prediction` in order; an
    image that cannot be read or preprocessed is appended to ``failed`` with its one-line reason (which
    names it; a non-square one without a policy names ``non_square_setting``)."""
    labeller = EnsembleLabeller(segmenter, tta=tta, batch_size=batch_size)
    with progress_bar(total=len(paths), desc=desc, unit="image", disable=not progress) as bar:
        for start in range(0, len(paths), batch_size):
            readable: list[tuple[Path, np.ndarray, np.ndarray]] = []
            for path in paths[start : start + batch_size]:
                try:
                    readable.append((path, *read_for_model(path, segmenter, non_square_setting)))
                except DdpmsegError as error:
                    failed.append((path, str(error)))
            if readable:
                yield from labeller.label_batch(*zip(*readable))
            bar.update(len(paths[start : start + batch_size]))


def uncertainty_map(prediction: Prediction, segmenter: Segmenter) -> np.ndarray:
    """The (H, W, 3) uint8 picture of the image's JS map (white outside a center crop)."""
    return uncertainty_picture(prediction.js, segmenter.settings.number_class, prediction.inside)


def palette_bytes(segmenter: Segmenter) -> list[int]:
    """A 256-entry PNG palette: the classes' colours, ignore_label white (unless it is a class), rest black."""
    colours = [(0, 0, 0)] * 256
    colours[segmenter.settings.ignore_label] = IGNORE_COLOUR
    colours[: segmenter.settings.number_class] = segmenter.settings.palette[: segmenter.settings.number_class]
    return [value for colour in colours for value in colour]


def save_label_png(path: Path, labels: np.ndarray, segmenter: Segmenter) -> None:
    """Class ids as an 8-bit palette ('P') PNG, written atomically."""
    image = Image.fromarray(labels.astype(np.uint8), mode="L")
    image.putpalette(palette_bytes(segmenter))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def overlay(original: np.ndarray, labels: np.ndarray, inside: np.ndarray, segmenter: Segmenter) -> np.ndarray:
    """The classes' colours blended over the image where the model labelled it; class 0 (the background
    of the paper's datasets and the demo's) and ignore_label leave the image as it is."""
    settings = segmenter.settings
    colours = colourise(labels, settings.palette, settings.ignore_label).astype(np.float32)
    blended = (1 - OVERLAY_ALPHA) * original.astype(np.float32) + OVERLAY_ALPHA * colours
    labelled = inside & (labels != 0) & ((labels != settings.ignore_label) | (settings.ignore_label < settings.number_class))
    return np.where(labelled[..., None], np.rint(blended), original).astype(np.uint8)


def class_fractions(labels: np.ndarray, inside: np.ndarray, segmenter: Segmenter) -> dict[str, float]:
    """Each class's share of the labelled pixels (summing to 1) and the ``ignored`` share of all pixels
    (the margins a center crop cut off)."""
    counts = np.bincount(labels[inside].ravel(), minlength=segmenter.settings.number_class)[: segmenter.settings.number_class]
    fractions = {name: float(count / max(1, inside.sum())) for name, count in zip(segmenter.settings.class_names, counts, strict=True)}
    return {**fractions, "ignored": float(1 - inside.mean())}


def paths_of(out_dir: Path, stem: str) -> dict[str, Path]:
    """An image's output files, its table row last (written last: it marks the image as done)."""
    files = {folder: out_dir / folder / f"{stem}.png" for folder in OUTPUT_FOLDERS}
    return {**files, ROWS: out_dir / ROWS / f"{stem}.json"}


def is_done(out_dir: Path, path: Path) -> bool:
    """Whether an image's outputs all exist and were made from this very file (its sha256 is in its row)."""
    files = paths_of(out_dir, path.stem)
    if not all(output.is_file() for output in files.values()):
        return False
    return load_json(files[ROWS]).get("sha256") == sha256_file(path)


def write_outputs(prediction: Prediction, segmenter: Segmenter, out_dir: Path) -> None:
    """An image's label PNG, overlay, uncertainty map and (last) its table row."""
    height, width = prediction.original.shape[:2]
    files = paths_of(out_dir, prediction.path.stem)
    save_label_png(files["labels"], prediction.labels, segmenter)
    save_png(files["overlay"], overlay(prediction.original, prediction.labels, prediction.inside, segmenter))
    save_png(files["uncertainty"], uncertainty_map(prediction, segmenter))
    row = {
        "image": prediction.path.name,
        "width": width,
        "height": height,
        "uncertainty": prediction.score,
        **class_fractions(prediction.labels, prediction.inside, segmenter),
        "sha256": sha256_file(prediction.path),  # not a table column: tells a rerun whether the file changed
    }
    save_json(files[ROWS], row)


def claim_folder(out_dir: Path, segmenter: Segmenter, *, tta: bool = False) -> None:
    """Make ``out_dir`` this segmenter's labelling folder: new or empty folders are claimed, one that
    records the same identity and TTA setting is resumed, anything else is refused (``tta`` counts only
    when the segmenter has views: without them both settings give the same labels)."""
    marker = out_dir / MARKER
    tta = bool(tta and segmenter.settings.tta_views)
    if marker.is_file():
        recorded = load_json(marker)
        if recorded.get("identity") != segmenter.identity:
            raise DdpmsegError(
                f"{out_dir}: holds labels of another segmenter (identity {recorded.get('identity')}, this one "
                f"{segmenter.identity}); choose another --out folder or empty this one"
            )
        if bool(recorded.get("tta", False)) != tta:
            was, now = ("on", "off") if recorded.get("tta") else ("off", "on")
            raise DdpmsegError(
                f"{out_dir}: holds labels made with TTA {was}, asked for TTA {now}; "
                "choose another --out folder or empty this one"
            )
        return
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DdpmsegError(f"{out_dir}: exists and is not an empty folder or a ddpmseg labelling folder")
    save_json(marker, {"identity": segmenter.identity, "tta": tta})


def check_class_columns(segmenter: Segmenter) -> None:
    names = list(segmenter.settings.class_names)
    clashes = [name for name in names if name in FIXED_COLUMNS or names.count(name) > 1]
    if clashes:
        raise DdpmsegError(f"class name '{clashes[0]}' is repeated or is one of the table's columns {', '.join(FIXED_COLUMNS)}")


EXAMPLE_MIN_HEIGHT = 160  # px: small images are enlarged (nearest) so that a viewer sees their pixels


def enlarged(picture: np.ndarray, min_height: int = EXAMPLE_MIN_HEIGHT) -> np.ndarray:
    """``picture`` repeated pixel by pixel an integer number of times until it is ``min_height`` high."""
    factor = max(1, math.ceil(min_height / picture.shape[0]))
    return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


def write_examples(folder: Path, labelled: Mapping[Path, Path], count: int) -> None:
    """``folder/<stem>.png``: image | overlay | uncertainty of the first ``count`` images of ``labelled``
    (image -> the labelling folder holding its outputs), enlarged to at least :data:`EXAMPLE_MIN_HEIGHT` px
    high, over the uncertainty scale's legend."""
    for path, labelling_folder in list(labelled.items())[:count]:
        files = paths_of(labelling_folder, path.stem)
        shown = [np.asarray(Image.open(files[kind]).convert("RGB")) for kind in ("overlay", "uncertainty")]
        picture = enlarged(panel(read_image(path), *shown))
        save_png(Path(folder) / f"{path.stem}.png", with_legend(picture))


def with_legend(picture: np.ndarray) -> np.ndarray:
    """``picture`` over the uncertainty legend, on white."""
    legend = uncertainty_legend(min(picture.shape[1], 480))
    below = np.full((legend.shape[0], picture.shape[1], 3), 255, dtype=np.uint8)
    below[:, : legend.shape[1]] = legend[:, : picture.shape[1]]
    return np.concatenate([picture, below], axis=0)


def label_images(
    segmenter: Segmenter,
    images: Sequence[Path],
    out_dir: Path,
    *,
    tta: bool = True,
    batch_size: int = 4,
    progress: bool = True,
    examples: int = 0,
    non_square_setting: str = NON_SQUARE_SETTING,
) -> LabellingSummary:
    """Label ``images`` into ``out_dir`` (see the module's docstring); ``batch_size`` images per DDPM
    forward pass; ``examples`` panels of the first images. Images whose outputs exist for the same
    segmenter and file contents are skipped; an unreadable image is listed in ``failed`` (its reason names
    it; a non-square image without a policy names ``non_square_setting``) and the others are labelled."""
    images, out_dir = [Path(p) for p in images], Path(out_dir)
    check_unique_stems(images)
    check_class_columns(segmenter)
    claim_folder(out_dir, segmenter, tta=tta)
    todo = [path for path in images if not is_done(out_dir, path)]
    summary = LabellingSummary(labelled=0, skipped=len(images) - len(todo))
    if todo:
        for prediction in predictions(
            segmenter, todo, summary.failed, tta=tta, batch_size=batch_size, progress=progress, desc="label",
            non_square_setting=non_square_setting,
        ):
            write_outputs(prediction, segmenter, out_dir)
            summary.labelled += 1
    failed = {path for path, _ in summary.failed}
    done = {path: out_dir for path in images if path not in failed}
    write_csv(out_dir / PREDICTIONS, prediction_table(done, segmenter.settings.class_names))
    write_examples(out_dir / "examples", done, examples)
    return summary


def prediction_table(labelled: Mapping[Path, Path], class_names: Sequence[str]) -> pd.DataFrame:
    """The rows of the ``labelled`` images (image -> its labelling folder; labelled now or before), in their
    order, in the columns' fixed order."""
    columns = list(FIXED_COLUMNS[:4]) + list(class_names) + ["ignored"]
    rows = [load_json(paths_of(folder, path.stem)[ROWS]) for path, folder in labelled.items()]
    return pd.DataFrame(rows, columns=columns)
