"""The settings of a trained segmenter: everything the labels of a run (dataset, variant, seed) depend on
besides its files. One object, built once from a config (:meth:`SegmenterSettings.of_run`) or read from
plain values (a rule's params, a bundle's manifest), and passed whole to the workflow's labelling, bundles
and ``ddpmseg predict``. No torch here: the workflow builds it when it is parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..base.errors import DdpmsegError
from ..base.settings import from_plain
from ..config.imagesets import noise_seed_of_run
from ..config.variants import feature_source, tta_views, variant_settings
from ..data.preprocess import NON_SQUARE_POLICIES
from ..diffusion.flags import model_flags, model_order
from ..prediction.views import check_view
from ..prediction.visualize import default_palette

FEATURE_SOURCES = ("ddpm", "rgb")


@dataclass(frozen=True)
class SegmenterSettings:
    """What labelling with one trained run needs besides the members' and the DDPM's files.

    Values are normalised when made: full DDPM flags, blocks in model order, tuples for sequences. A wrong
    value raises :class:`DdpmsegError` naming the setting.
    """

    ddpm_flags: dict[str, Any]  # every create_model_and_diffusion argument
    steps: tuple[int, ...]
    blocks: tuple[int, ...]  # model order
    noise_seed: int
    feature_source: str  # "ddpm", or "rgb" (the RGB control: each pixel's values in [-1, 1])
    image_size: int
    non_square: str | None  # "resize" | "center_crop" | None (a non-square image is an error)
    number_class: int
    ignore_label: int
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    tta_views: tuple[tuple[str, ...], ...]  # () = no TTA
    tta_seed: int

    def __post_init__(self) -> None:
        normalised = {
            "ddpm_flags": model_flags(self.ddpm_flags),
            "steps": tuple(int(step) for step in self.steps),
            "blocks": tuple(model_order(self.blocks)),
            "noise_seed": int(self.noise_seed),
            "image_size": int(self.image_size),
            "number_class": int(self.number_class),
            "ignore_label": int(self.ignore_label),
            "class_names": tuple(str(name) for name in self.class_names),
            "palette": tuple(tuple(int(c) for c in colour) for colour in self.palette),
            "tta_views": tuple(tuple(check_view(view)) for view in self.tta_views),
            "tta_seed": int(self.tta_seed),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)
        self._check()

    def _check(self) -> None:
        if self.feature_source not in FEATURE_SOURCES:
            raise DdpmsegError(f"feature_source '{self.feature_source}' must be one of {', '.join(FEATURE_SOURCES)}")
        flags_size = self.ddpm_flags["image_size"]
        if self.feature_source == "ddpm" and self.image_size != flags_size:
            raise DdpmsegError(f"image_size {self.image_size} differs from the DDPM flags' image_size {flags_size}")
        if self.non_square is not None and self.non_square not in NON_SQUARE_POLICIES:
            raise DdpmsegError(f"non_square '{self.non_square}' must be one of {', '.join(NON_SQUARE_POLICIES)} or null")
        if not 2 <= self.number_class <= 256 or not 0 <= self.ignore_label <= 255:
            raise DdpmsegError(
                f"number_class {self.number_class} and ignore_label {self.ignore_label} must fit 8-bit label PNGs "
                "(2 to 256 classes, ignore_label 0 to 255)"
            )
        if len(self.class_names) != self.number_class:
            raise DdpmsegError(f"{len(self.class_names)} class names for number_class {self.number_class}")
        if len(self.palette) < self.number_class or any(len(colour) != 3 for colour in self.palette):
            raise DdpmsegError(f"palette must give an RGB colour to each of the {self.number_class} classes")
        if self.feature_source == "ddpm" and (not self.steps or not self.blocks):
            raise DdpmsegError("a segmenter with DDPM features needs at least one feature step and one block")

    @classmethod
    def of_run(cls, config: dict[str, Any], *, dataset: str, variant: str, seed: int) -> SegmenterSettings:
        """The settings of run (dataset, variant, seed) of a checked config."""
        entry = config["datasets"][dataset]
        flags = model_flags(config["ddpms"][entry["ddpm"]]["flags"])
        number_class = entry["number_class"]
        return cls(
            ddpm_flags=flags,
            steps=config["features"]["steps"],
            blocks=config["features"]["blocks"],  # listing them in another order changes nothing
            noise_seed=noise_seed_of_run(config, seed),
            feature_source=feature_source(config, variant),
            image_size=flags["image_size"],
            non_square=entry.get("non_square"),
            number_class=number_class,
            ignore_label=entry["ignore_label"],
            class_names=entry.get("class_names") or [str(c) for c in range(number_class)],
            palette=entry.get("palette") or default_palette(number_class),
            tta_views=tta_views(config, variant),
            tta_seed=variant_settings(config, variant)["tta_seed"],
        )

    @classmethod
    def from_plain(cls, values: Mapping[str, Any]) -> SegmenterSettings:
        """From :meth:`plain`'s values (a rule's params, a bundle's manifest); a missing or unknown key is an
        error naming it."""
        return from_plain(cls, values, what="segmenter")

    def plain(self) -> dict[str, Any]:
        """Plain JSON values (lists for tuples): a rule's params, a bundle's manifest, the identity's input."""
        return _lists(asdict(self))


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _lists(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(item) for item in value]
    return value
