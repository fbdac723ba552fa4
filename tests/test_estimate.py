"""Cost estimates of a configuration, against the method's own numbers."""

from __future__ import annotations

from conftest import REPO_ROOT

from ddpmseg.config import load_config
from ddpmseg.ddpm import PAPER_MODEL_FLAGS
from ddpmseg.estimate import activation_values, plan


def test_paper_activations_per_image_match_method_md() -> None:
    # docs/method.md §3: 1024, 512, 512, 512, 256 channels at 32, 32, 32, 64, 128 px per step
    per_step = 1024 * 32**2 + 2 * 512 * 32**2 + 512 * 64**2 + 256 * 128**2
    assert activation_values(PAPER_MODEL_FLAGS, [5, 6, 7, 8, 12]) == per_step
    assert 3 * per_step / 1e6 == 25.165824  # "25.2 M values"


def test_paper_plan_counts_views_per_dataset() -> None:
    rows = {row["dataset"]: row for row in plan(load_config(REPO_ROOT / "config" / "paper.yaml"))}
    horse = rows["horse_21"]
    assert horse["train_views"] == 30 + 30 * 4  # originals + augmented copies
    assert horse["test_views"] == 30 * 5  # the test images and their 4 TTA views
    assert horse["forward_passes"] == 3 * (150 + 150)
    assert rows["bedroom_28"]["train_views"] == 40 + 40 * 3  # enlarged four-fold
    assert round(horse["store_gb"], 1) == round(300 * 25.165824e6 * 2 / 1e9, 1)
