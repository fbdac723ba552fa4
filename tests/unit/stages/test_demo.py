"""Stage demo: the generated demo dataset and the demo DDPM trained on its unlabelled images."""

from __future__ import annotations

import json

import numpy as np
from conftest import TINY_FLAGS
from PIL import Image

from ddpmseg.ddpm import build_model_and_diffusion, check_state_dict, read_checkpoint
from ddpmseg.demo import render_scene, scene_rng
from ddpmseg.stages.demo import generate_demo_dataset, train_demo_ddpm


def test_the_demo_dataset_then_a_ddpm_trained_on_its_unlabelled_images(tmp_path) -> None:
    dataset = tmp_path / "demo"
    generate_demo_dataset(dataset=dataset, seed=3, image_size=32, train=2, test=1, unlabelled=2)
    assert sorted(p.name for p in (dataset / "real" / "train").iterdir()) == ["0000.npy", "0000.png", "0001.npy", "0001.png"]
    assert len(list((dataset / "unlabelled").glob("*.png"))) == 2
    image, mask = render_scene(scene_rng(3, "test", 0), 32)
    assert np.array_equal(np.asarray(Image.open(dataset / "real" / "test" / "0000.png")), image)
    assert np.array_equal(np.load(dataset / "real" / "test" / "0000.npy"), mask)

    checkpoint, log_json = tmp_path / "ddpm.pt", tmp_path / "training.json"
    train_demo_ddpm(dataset=dataset, checkpoint=checkpoint, log_json=log_json, flags=TINY_FLAGS, iterations=2,
                    batch_size=2, lr=1e-4, seed=0)
    model, _ = build_model_and_diffusion(TINY_FLAGS)
    check_state_dict(model, read_checkpoint(checkpoint), checkpoint)  # loads weights_only and fits the flags
    log = json.loads(log_json.read_text())
    assert log["images"] == 2 and log["iterations"] == 2 and len(log["losses"]) == 2
