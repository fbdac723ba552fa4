"""Stage demo: the generated demo dataset."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ddpmseg.data.demo import render_scene, scene_rng
from ddpmseg.stages.demo import generate_demo_dataset


def test_the_demo_dataset_has_its_splits_and_unlabelled_images(tmp_path) -> None:
    dataset = tmp_path / "demo"
    generate_demo_dataset(dataset=dataset, seed=3, image_size=32, train=2, test=1, unlabelled=2)
    assert sorted(p.name for p in (dataset / "real" / "train").iterdir()) == ["0000.npy", "0000.png", "0001.npy", "0001.png"]
    assert len(list((dataset / "unlabelled").glob("*.png"))) == 2
    image, mask = render_scene(scene_rng(3, "test", 0), 32)
    assert np.array_equal(np.asarray(Image.open(dataset / "real" / "test" / "0000.png")), image)
    assert np.array_equal(np.load(dataset / "real" / "test" / "0000.npy"), mask)
