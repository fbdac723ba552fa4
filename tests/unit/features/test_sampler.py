"""The training-pixel sampler: in memory or streamed under a memory budget, exact either way."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import (
    FEATURE_BLOCKS,
    FEATURE_STEPS,
    IGNORE,
    REPO,
    TINY_FLAGS,
    write_identity_store,
)

from ddpmseg.diffusion.model import load_ddpm
from ddpmseg.features.extract import extract_to_store
from ddpmseg.base.files import atomic_directory
from ddpmseg.features.sampler import PixelSampler
from ddpmseg.features.store import FeatureStore, StoreWriter


def labelled_pixel_ids(labels: np.ndarray) -> set[tuple[int, int, int]]:
    """Training pixels, computed independently: small annotations (< 20 px in a view) and ignore excluded."""
    ids = set()
    for view, mask in enumerate(labels):
        values, counts = np.unique(mask, return_counts=True)
        kept = [v for v, n in zip(values, counts) if v != IGNORE and n >= 20]
        ids |= {(view, y, x) for y, x in np.argwhere(np.isin(mask, kept)).tolist()}
    return ids


def visited_ids(features: torch.Tensor) -> list[tuple[int, int, int]]:
    ids = features[:, 5:8].round().long()  # coarse layer first (5 channels), then the identity channels
    return [tuple(row) for row in ids.tolist()]


@pytest.mark.parametrize("budget_mb", [None, 0.001, 0.003])
def test_every_labelled_pixel_once_per_epoch(tmp_path, budget_mb) -> None:
    labels = write_identity_store(tmp_path / "s.zarr", views=9)
    store = FeatureStore(tmp_path / "s.zarr")
    sampler = PixelSampler(store, IGNORE, memory_budget_mb=budget_mb)
    assert sampler.streaming == (budget_mb is not None)
    if budget_mb is not None:
        assert sampler.buffer_views < 9
    expected = labelled_pixel_ids(labels)
    batch = 16
    views = torch.Generator().manual_seed(1)
    pixels = torch.Generator().manual_seed(2)
    epochs = []
    for _ in range(2):
        seen = []
        for features, batch_labels in sampler.epoch(views, pixels, batch):
            assert features.shape == (batch, store.feature_dim)
            ids = visited_ids(features)
            assert [int(labels[i]) for i in ids] == batch_labels.tolist()
            seen += ids
        assert len(seen) == len(set(seen)) == (len(expected) // batch) * batch
        assert set(seen) <= expected and len(expected - set(seen)) < batch
        epochs.append(seen)
    assert epochs[0] != epochs[1]


def test_streamed_features_equal_in_memory_features(tmp_path) -> None:
    write_identity_store(tmp_path / "s.zarr", views=7)
    store = FeatureStore(tmp_path / "s.zarr")
    resident = PixelSampler(store, IGNORE)
    streamed = PixelSampler(store, IGNORE, memory_budget_mb=0.002)
    assert streamed.streaming and not resident.streaming
    by_id = {}
    everything = resident.features(torch.arange(len(resident)))
    for row, key in zip(everything, visited_ids(everything)):
        by_id[key] = row
    for features, _ in streamed.epoch(torch.Generator().manual_seed(0), torch.Generator().manual_seed(0), 8):
        for row, key in zip(features, visited_ids(features)):
            assert torch.equal(row, by_id[key])


def test_pixel_count_multiple_of_batch_is_visited_exactly_once(tmp_path) -> None:
    labels = write_identity_store(tmp_path / "s.zarr", views=5)
    store = FeatureStore(tmp_path / "s.zarr")
    sampler = PixelSampler(store, IGNORE, memory_budget_mb=0.001)
    expected = labelled_pixel_ids(labels)
    batch = next(b for b in range(16, 1, -1) if len(expected) % b == 0)
    seen = []
    for features, _ in sampler.epoch(torch.Generator().manual_seed(3), torch.Generator().manual_seed(4), batch):
        seen += visited_ids(features)
    assert sorted(seen) == sorted(expected)


@pytest.mark.parametrize("budget_mb", [None, 0.006, 0.018])
def test_epoch_order_is_the_view_groups_shuffled_one_after_another(tmp_path, budget_mb) -> None:
    """The batches, computed independently. Streamed: views in a random order (the view generator),
    cut into groups of B, B views being what half the budget holds; each group's labelled pixels (view
    by view, row-major) in a random order (the pixel generator); the groups one after another, cut into
    batches, the last partial batch dropped. Resident: one group of all views in their order (the view
    order is drawn all the same)."""
    views, batch = 7, 16
    labels = write_identity_store(tmp_path / "s.zarr", views=views)
    store = FeatureStore(tmp_path / "s.zarr")
    sampler = PixelSampler(store, IGNORE, memory_budget_mb=budget_mb)
    view_bytes = 2 * sum(layer.channels * layer.height * layer.width for layer in store.layers)
    size = views if budget_mb is None else int(budget_mb * 2**20 // (2 * view_bytes))
    assert sampler.buffer_views == size and (budget_mb is None or 1 <= size < views)
    pixels_of = [sorted(key for key in labelled_pixel_ids(labels) if key[0] == v) for v in range(views)]
    for epoch_seed in (0, 1):
        view_generator, pixel_generator = torch.Generator().manual_seed(epoch_seed), torch.Generator().manual_seed(9)
        order = torch.randperm(views, generator=torch.Generator().manual_seed(epoch_seed)).tolist()
        if budget_mb is None:
            order = sorted(order)
        expected_pixels = torch.Generator().manual_seed(9)
        expected = []
        for k in range(0, views, size):
            pool = [key for v in order[k : k + size] for key in pixels_of[v]]
            expected += [pool[i] for i in torch.randperm(len(pool), generator=expected_pixels).tolist()]
        expected = expected[: len(expected) // batch * batch]
        batches = sampler.epoch(view_generator, pixel_generator, batch)
        seen = [key for features, _ in batches for key in visited_ids(features)]
        assert seen == expected


def test_batches_cap_and_ensemble_members_have_own_orders(tmp_path) -> None:
    write_identity_store(tmp_path / "s.zarr", views=6)
    sampler = PixelSampler(FeatureStore(tmp_path / "s.zarr"), IGNORE, memory_budget_mb=0.002)
    batches = list(sampler.epoch(torch.Generator().manual_seed(0), torch.Generator().manual_seed(0), 8, batches=3))
    assert len(batches) == 3
    generators = [torch.Generator().manual_seed(s) for s in (5, 6)]
    fused = list(sampler.ensemble_epoch(torch.Generator().manual_seed(9), generators, 8))
    alone = list(sampler.epoch(torch.Generator().manual_seed(9), torch.Generator().manual_seed(6), 8))
    assert len(fused) == len(alone)
    for (features, labels), (features_alone, labels_alone) in zip(fused, alone):
        assert torch.equal(features[1], features_alone) and torch.equal(labels[1], labels_alone)
    assert not torch.equal(fused[0][0][0], fused[0][0][1])


RSS_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from ddpmseg.features.store import FeatureStore
    from ddpmseg.features.sampler import PixelSampler
    store = FeatureStore(sys.argv[1])
    budget = None if sys.argv[2] == "none" else float(sys.argv[2])
    if sys.argv[3] == "train":
        sampler = PixelSampler(store, 255, memory_budget_mb=budget)
        for _ in sampler.epoch(torch.Generator().manual_seed(0), torch.Generator().manual_seed(0), 64):
            pass
    # VmHWM: the OS's peak RSS of this process image (ru_maxrss would carry the forking parent's over exec)
    status = open("/proc/self/status").read()
    print(int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1]) // 1024)
    """
)


def peak_rss_mb(*runs: tuple[object, str, str]) -> list[int]:
    """Peak RSS of RSS_SCRIPT for each (store, budget, action), run side by side: each is its own
    process, so running them at once changes none of their peaks, only the wall time."""
    processes = [subprocess.Popen([sys.executable, "-c", RSS_SCRIPT, str(store), budget, action],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for store, budget, action in runs]
    peaks = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
        peaks.append(int(out.strip().splitlines()[-1]))
    return peaks


def write_random_store(path, views: int, size: int = 64) -> None:
    rng = np.random.default_rng(0)
    with atomic_directory(path) as tmp:
        writer = StoreWriter(tmp, [f"v{v}" for v in range(views)], size, {"checkpoint_sha256": "x"})
        writer.write(
            0,
            {(1, 0): torch.randn(views, 384, size, size), (1, 1): torch.randn(views, 64, size // 2, size // 2)},
            np.zeros((views, size, size, 3), np.uint8),
            rng.integers(0, 3, size=(views, size, size)),
        )
        writer.close()


def test_training_stays_under_its_memory_budget(tmp_path) -> None:
    # 48 views of 384 + 64 channels at 64 px and 32 px: 3.125 MiB per view in float16, 150 MiB in all
    views, size = 48, 64
    write_random_store(tmp_path / "big.zarr", views, size)
    write_random_store(tmp_path / "one.zarr", 1, size)
    # the reference point runs the same code on a one-view store, so that libraries, kernels and thread
    # pools loaded by the first gather are not counted against the budget
    warm, in_memory, streamed = peak_rss_mb(
        (tmp_path / "one.zarr", "none", "train"), (tmp_path / "big.zarr", "none", "train"), (tmp_path / "big.zarr", "16", "train")
    )
    total_mb = views * (384 * size * size + 64 * (size // 2) ** 2) * 2 / 2**20
    assert in_memory - warm > total_mb * 0.8  # the measurement sees the resident activations
    # the budget, plus a margin for the pixel tables, decompression buffers and allocator arenas
    assert streamed - warm < 16 + 40, (warm, streamed, in_memory)


def test_paper_budget_holds_every_un_augmented_training_set_and_streams_the_augmented_ones() -> None:
    """config/paper.yaml's budget against the paper's activation sizes (docs/method.md §3): every
    baseline shuffles all its pixels each epoch as the reference does; the 4-5x augmented sets stream."""
    import yaml

    from ddpmseg.config.registry import load_registry
    from ddpmseg.features.sampler import fits_in_budget

    channels_and_sizes = [(1024, 32), (512, 32), (512, 32), (512, 64), (256, 128)]  # blocks 5, 6, 7, 8, 12
    view_bytes = 3 * sum(c * s * s for c, s in channels_and_sizes) * 2  # 3 steps, float16
    assert view_bytes == 25_165_824 * 2
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    budget = paper["training"]["memory_budget_mb"]
    registry = load_registry()["datasets"]
    for name, entry in paper["datasets"].items():
        views = registry[name]["training_number"]
        assert fits_in_budget(view_bytes, views, budget), (name, views, budget)
        scale = entry.get("augmentation_scale", 5)
        assert not fits_in_budget(view_bytes, views * scale, budget), (name, scale)
    assert not fits_in_budget(view_bytes, 50, 2048)  # the former default streamed ade_bedroom_30's baseline


def test_sampler_features_equal_store_features(tmp_path, tiny_checkpoint) -> None:
    model, diffusion = load_ddpm(tiny_checkpoint, TINY_FLAGS, device="cpu")
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    labels = np.full((2, 32, 32), 255)
    labels[0, :10, :] = 1
    labels[1, 5:25, 3:9] = 0
    labels[1, 0, 0] = 2  # a 1-pixel class: removed as a small annotation
    extract_to_store(model, diffusion, images, labels, ["a", "b"], steps=FEATURE_STEPS, blocks=FEATURE_BLOCKS, noise_seed=0, batch_size=2,
                     out=tmp_path / "s.zarr", attrs={"checkpoint_sha256": "x"}, progress=False)
    store = FeatureStore(tmp_path / "s.zarr")
    sampler = PixelSampler(store, ignore_label=255)
    assert len(sampler) == 10 * 32 + 20 * 6
    assert set(sampler.labels.tolist()) == {0, 1}
    pixels = torch.arange(0, len(sampler), 37)
    got = sampler.features(pixels)
    for row, p in enumerate(pixels.tolist()):
        image, y, x = int(sampler.image[p]), int(sampler.ys[p]), int(sampler.xs[p])
        torch.testing.assert_close(got[row], store.pixel_features(image, [y], [x])[0], rtol=1e-3, atol=1e-3)
