"""Shared fixtures and helpers of the unit tests (tests/unit) and the workflow tests (tests/workflow):
the tiny test config (.test/config.yaml), a tiny guided-diffusion UNet saved as a real checkpoint,
dataset and feature-store builders, a loopback HTTP server, and the real ``snakemake`` with its dry-run
job counts. Test files import helpers only from here, never from each other."""

from __future__ import annotations

import copy
import fcntl
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from ddpmseg.config.load import default_variant_settings
from ddpmseg.diffusion.model import build_model_and_diffusion
from ddpmseg.base.files import atomic_directory
from ddpmseg.features.store import StoreWriter
from ddpmseg.classifier.settings import TrainSettings

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def train_settings(**overrides) -> TrainSettings:
    """Training settings: the schema's ``variant_defaults`` (the paper's), with ``overrides``."""
    return TrainSettings.of({**default_variant_settings(), **overrides})


# The tiny test config, a file a person can run: snakemake --cores 2 --configfile .test/config.yaml.
# Its key order is the tables' order (yaml keeps it). Tests deep-copy it before changing it.
TINY_CONFIG = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
# A small UNet built with the same guided-diffusion functions as the paper's models.
TINY_FLAGS = TINY_CONFIG["ddpms"]["tiny_ddpm"]["flags"]
# Diffusion steps and decoder blocks the unit tests extract from the tiny UNet (block 0 is below the
# image resolution).
FEATURE_STEPS = [10, 400]
FEATURE_BLOCKS = [0, 2, 3]


def pytest_collection_modifyitems(config, items) -> None:
    """Every test under tests/workflow, and only those, carries the ``workflow`` marker, so that
    ``pytest -m "not workflow"`` and ``pytest tests/unit`` select the same tests."""
    workflow_dir = REPO / "tests" / "workflow"
    wrong = [item.nodeid for item in items
             if (workflow_dir in item.path.parents) != (item.get_closest_marker("workflow") is not None)]
    if wrong:
        raise pytest.UsageError("the workflow marker must be on exactly the tests under tests/workflow: " + ", ".join(wrong))


@pytest.fixture(autouse=True, scope="session")
def bundle_cache(tmp_path_factory) -> Path:
    """Tests extract .tar bundles into a cache of their own, not the user's ~/.cache/ddpmseg."""
    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("DDPMSEG_CACHE")
    os.environ["DDPMSEG_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("DDPMSEG_CACHE", None)
    else:
        os.environ["DDPMSEG_CACHE"] = previous


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-weight tiny UNet saved as a plain state_dict checkpoint."""
    torch.manual_seed(0)
    model, _ = build_model_and_diffusion(TINY_FLAGS)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save(model.state_dict(), path)
    return path


# A tiny diffusers UNet2DModel: 32 px, two levels (the lower with attention), one resnet per down level, so
# 2 x 2 = 4 decoder blocks: up_blocks.0 (attention, 16 px, 64 channels, its last block upsampled to 32 px)
# and up_blocks.1 (32 channels, 32 px).
TINY_UNET2D = {
    "sample_size": 32, "in_channels": 3, "out_channels": 3, "layers_per_block": 1,
    "block_out_channels": (32, 64), "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D"), "norm_num_groups": 8, "attention_head_dim": 16,
}


def make_diffusers_folder(folder: Path, *, seed: int = 0, unet: dict | None = None, layout: str = "pipeline") -> Path:
    """A random-weight tiny UNet2DModel and a linear 1000-step DDPMScheduler saved by diffusers'
    ``save_pretrained``: a DDPMPipeline folder (``layout`` "pipeline"), a folder holding unet/ and
    scheduler/ alone ("subfolders"), or both saved at the folder's top ("flat", the google/ddpm-* layout)."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    model = UNet2DModel(**{**TINY_UNET2D, **(unet or {})})
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    if layout == "pipeline":
        DDPMPipeline(unet=model, scheduler=scheduler).save_pretrained(folder)
    else:
        model.save_pretrained(folder / "unet" if layout == "subfolders" else folder)
        scheduler.save_pretrained(folder / "scheduler" if layout == "subfolders" else folder)
    return folder


@pytest.fixture(scope="session")
def diffusers_folder(tmp_path_factory) -> Path:
    """A tiny diffusers DDPMPipeline folder (:func:`make_diffusers_folder`), shared by a session's tests."""
    pytest.importorskip("diffusers", reason="the diffusers extra is not installed: pip install -e '.[diffusers]'")
    return make_diffusers_folder(tmp_path_factory.mktemp("diffusers") / "tiny-ddpm")


def write_sample(folder: Path, stem: str, image: np.ndarray, mask: np.ndarray, suffix: str = ".png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / f"{stem}{suffix}")
    np.save(folder / f"{stem}.npy", mask)


def make_dataset(root: Path, train: int = 3, test: int = 2, size: int = 32, number_class: int = 3, seed: int = 0) -> Path:
    """A dataset in the archive layout: random images, masks of horizontal class bands."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        for index in range(count):
            image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            mask = (np.arange(size)[:, None] * number_class // size).repeat(size, axis=1).astype(np.uint8)
            write_sample(root / "real" / split, f"{index:03d}", image, mask)
    return root


IGNORE = 255


# Five saturated colours, none black (the fill colour); class ids deliberately not contiguous, so a
# mask resampled with anything but nearest neighbour would show ids outside this set.
SCENE_PALETTE = np.array([[230, 30, 30], [30, 200, 30], [30, 30, 230], [230, 230, 30], [200, 30, 200]], np.uint8)
SCENE_CLASS_IDS = np.array([0, 3, 7, 12, 20])


def colour_scene(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Four quadrants and a central disc, each of one colour; the mask holds the class id of each pixel."""
    yy, xx = np.mgrid[0:size, 0:size]
    region = (yy >= size // 2) * 2 + (xx >= size // 2)
    region[(yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 < (size / 5) ** 2] = 4
    return SCENE_PALETTE[region], SCENE_CLASS_IDS[region].astype(np.int32)


def write_identity_store(path, views: int, size: int = 12, seed: int = 0, extra_channels: int = 6, identity: bool = True):
    """A store whose full-resolution layer holds (view, y, x) of each pixel in its first 3 channels
    (random values instead when ``identity`` is False: a channel constant within a view is a second
    bias to a classifier, whose vanishing gradients Adam turns into rounding noise)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=(views, size, size))
    labels[rng.random(labels.shape) < 0.2] = IGNORE
    labels[:, 0, :3] = 3  # a class of 3 pixels in every view: a small annotation, never trained on
    yy, xx = np.mgrid[0:size, 0:size]
    ids = np.stack([np.stack([np.full((size, size), v), yy, xx]) for v in range(views)]).astype(np.float32)
    if not identity:
        ids = rng.normal(size=ids.shape)
    full = np.concatenate([ids, rng.normal(size=(views, extra_channels, size, size))], axis=1)
    coarse = rng.normal(size=(views, 5, size // 2, size // 2))
    with atomic_directory(path) as tmp:
        writer = StoreWriter(tmp, [f"v{v}" for v in range(views)], size, {"checkpoint_sha256": "x"})
        writer.write(
            0,
            {(10, 0): torch.from_numpy(coarse).float(), (10, 1): torch.from_numpy(full).float()},
            np.zeros((views, size, size, 3), np.uint8),
            labels,
        )
        writer.close()
    return labels


def make_custom_dataset(root: Path, seed: int = 0) -> dict:
    """A user's dataset in separate image and mask folders: non-square images of mixed sizes, 8-bit
    and 16-bit PNG masks and a uint16 .npy mask; img1 (train) and img4 (test) are stored at twice their
    masks' size. Returns its config entry (source: folders)."""
    rng = np.random.default_rng(seed)
    sizes = [(40, 32), (48, 36), (36, 36), (50, 40), (44, 30), (38, 46)]
    entry = {"source": "folders", "number_class": 3, "ignore_label": 255, "non_square": "center_crop",
             "training_number": 3, "testing_number": 3}
    for split, indices in (("train", range(0, 3)), ("test", range(3, 6))):
        images, masks = root / split / "images", root / split / "masks"
        images.mkdir(parents=True)
        masks.mkdir(parents=True)
        for k in indices:
            width, height = sizes[k]
            image = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
            mask = np.zeros((height, width), dtype=np.uint16)
            mask[height // 4 : 3 * height // 4, : width // 2] = 1
            mask[height // 4 : 3 * height // 4, width // 2 :] = 2
            mask[0, :] = 255
            image[mask == 1] = (200, 40, 40)
            image[mask == 2] = (40, 200, 40)
            if k in (1, 4):  # image at twice its mask's resolution (as CelebAMask-HQ ships them)
                image = image.repeat(2, axis=0).repeat(2, axis=1)
            Image.fromarray(image).save(images / f"img{k}.jpg" if k % 2 else images / f"img{k}.png")
            if k % 3 == 0:
                np.save(masks / f"img{k}.npy", mask)  # uint16 array
            elif k % 3 == 1:
                Image.fromarray(mask.astype(np.uint8)).save(masks / f"img{k}.png")  # 8-bit PNG
            else:
                Image.fromarray(mask).save(masks / f"img{k}.png")  # 16-bit PNG
        entry[f"{split}_images"], entry[f"{split}_masks"] = str(images), str(masks)
    return entry


NA_NAMES = ["NA", "null", "None", "nan", "0001"]  # names pandas reads as missing values or numbers by default


def raw_cells(path) -> pd.DataFrame:
    """Every cell as the text written, independent of ddpmseg's reading."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def snakemake(workdir: Path, config: dict, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """The real snakemake on ``config`` (written to ``workdir``/test-config.yaml) in ``workdir``, 2 cores."""
    config_path = workdir / "test-config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))  # config order = table order
    command = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile", str(config_path), "--cores", "2", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The tiny demo plus a user's dataset (separate folders, non-square mixed sizes, PNG and uint16
    masks) through the whole pipeline, and that dataset's test images labelled by one of its runs (an
    ``apply:`` entry); returns (workdir, config).

    Made once per test session. Under pytest-xdist the first worker that needs it makes it, under a
    lock, in the folder the workers share, and each worker gets its own copy (timestamps and
    Snakemake's metadata kept), so that workers never run Snakemake in one working directory."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    shared = tmp_path_factory.getbasetemp() if worker is None else tmp_path_factory.getbasetemp().parent
    original, made = shared / "demo_run" / "run", shared / "demo_run" / "config.yaml"
    original.parent.mkdir(exist_ok=True)
    with open(shared / "demo_run" / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not made.exists():
            shutil.rmtree(original, ignore_errors=True)
            original.mkdir()
            config = copy.deepcopy(TINY_CONFIG)
            config["datasets"]["custom"] = {**make_custom_dataset(original / "custom"), "ddpm": "tiny_ddpm"}
            # new images labelled by a trained run (apply.smk): the custom test images, non-square, mixed sizes
            config["apply"] = {"new_fields": {"images": config["datasets"]["custom"]["test_images"],
                                              "dataset": "custom", "variant": "final", "seed": 1, "suggest_top": 2}}
            result = snakemake(original, config)
            assert result.returncode == 0, result.stderr[-4000:]
            made.write_text(yaml.safe_dump(config, sort_keys=False))
        config = yaml.safe_load(made.read_text())
    if worker is None:
        return original, config
    workdir = tmp_path_factory.mktemp("demo_run") / "run"
    shutil.copytree(original, workdir, symlinks=True)
    return workdir, config


def folder_config(dataset_root: Path, checkpoint: Path, flags: dict | None = None) -> dict:
    """The tiny config on one dataset 'mine' in the archive layout at ``dataset_root`` and a checkpoint file."""
    config = copy.deepcopy(TINY_CONFIG)
    config["datasets"] = {
        "mine": {"source": "folder", "path": str(dataset_root), "ddpm": "tiny", "number_class": 3,
                 "ignore_label": 255, "training_number": 3, "testing_number": 2}
    }
    config["ddpms"] = {"tiny": {"source": "file", "checkpoint": str(checkpoint), "flags": flags or TINY_FLAGS}}
    return config


def validate_dataset_run(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    """Only the validation of dataset 'mine' (seconds, no DDPM forward pass)."""
    return snakemake(workdir, config, "results/datasets/mine/summary.json", *args, timeout=300)


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    lines = output.split("Job stats:")[-1].splitlines()
    counts = {}
    for line in lines[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    counts.pop("total", None)
    return counts


def dry_run(workdir: Path, config: dict) -> dict[str, int]:
    """Rule -> job count that ``snakemake -n`` plans for ``config`` in ``workdir``."""
    result = snakemake(workdir, config, "-n", timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return planned_jobs(result.stdout + result.stderr)


class _Handler(http.server.BaseHTTPRequestHandler):
    timeout = 5  # a stuck client cannot hold the server thread longer

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        state: LoopbackServer = self.server.state  # type: ignore[attr-defined]
        path = self.path
        range_header = self.headers.get("Range")
        state.requests.append({"path": path, "range": range_header})
        state.if_ranges.append(self.headers.get("If-Range"))
        if path in state.status:
            self.send_error(state.status[path])
            return
        if path not in state.files:
            self.send_error(404)
            return
        body = state.files[path]
        validators = {"ETag": state.etags.get(path), "Last-Modified": state.last_modified.get(path)}
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if match and not state.ignore_range and self._if_range_holds(state, validators):
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Content-Type", state.content_types.get(path, "application/octet-stream"))
        self.send_header("Accept-Ranges", "bytes")
        for name, value in validators.items():
            if value is not None:
                self.send_header(name, value)
        self.end_headers()
        if path in state.cut_once or path in state.stall_once:
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            if path in state.stall_once:  # the client times out while the connection stays open
                state.stall_once.discard(path)
                state.release.wait(10)
            state.cut_once.discard(path)
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(payload)

    def _if_range_holds(self, state: LoopbackServer, validators: dict[str, str | None]) -> bool:
        """RFC 9110 If-Range: the Range applies only while the validator still matches."""
        if_range = self.headers.get("If-Range")
        if if_range is None or state.ignore_if_range:
            return True
        return if_range in [v for v in validators.values() if v is not None]


class LoopbackServer:
    """Serves ``files`` {path: bytes}; ``status`` {path: code} answers an error; ``cut_once`` paths are cut
    mid-body on their next request; ``stall_once`` paths send half their body and then nothing until
    ``release`` is set; ``ignore_range`` answers 200 with the full body to Range requests.

    ``etags`` and ``last_modified`` {path: value} are sent as validators, and an ``If-Range`` that does not
    match them gets the whole body (200), unless ``ignore_if_range``. ``content_types`` {path: type}
    (default application/octet-stream). ``if_ranges`` lists the If-Range header of every request."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.status: dict[str, int] = {}
        self.cut_once: set[str] = set()
        self.stall_once: set[str] = set()
        self.release = threading.Event()
        self.ignore_range = False
        self.ignore_if_range = False
        self.etags: dict[str, str] = {}
        self.last_modified: dict[str, str] = {}
        self.content_types: dict[str, str] = {}
        self.requests: list[dict] = []
        self.if_ranges: list[str | None] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.state = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    """A LoopbackServer, closed after the test."""
    srv = LoopbackServer()
    yield srv
    srv.close()


def finished_tiny_run(
    workdir: Path, checkpoint: Path, config: dict, *, variant: str = "final", seed: int = 1, in_features: int | None = None
) -> None:
    """The files a finished run of dataset 'tiny' leaves in a workflow's ``workdir``: random members
    taking ``in_features`` (default: the features the config's settings give), the DDPM checkpoint (a copy
    of ``checkpoint``), its check.json, the score."""
    if in_features is None:
        in_features = tiny_feature_width(config, checkpoint, variant=variant, seed=seed)
    from ddpmseg.classifier.mlp import build_classifier, save_member
    from ddpmseg.base.files import save_json, sha256_file

    run = f"tiny/{variant}/seed{seed}"
    number_class = config["datasets"]["tiny"]["number_class"]
    for member in range(config["ensemble_size"]):
        torch.manual_seed(member)
        model = build_classifier(in_features, number_class).eval()
        save_member(workdir / f"results/models/{run}/member{member}.pt", model, in_features=in_features,
                    number_class=number_class, dropout=0.0)
    ddpm = config["datasets"]["tiny"]["ddpm"]
    copied = workdir / f"resources/checkpoints/{ddpm}.pt"
    copied.parent.mkdir(parents=True, exist_ok=True)
    copied.write_bytes(Path(checkpoint).read_bytes())
    save_json(workdir / f"results/ddpm/{ddpm}/check.json", {"sha256": sha256_file(copied)})
    (workdir / f"results/scores/{run}").mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"miou": 61.25, "miou_plain": 60.0, "images": 3}]).to_csv(
        workdir / f"results/scores/{run}/summary.csv", index=False
    )


def tiny_feature_width(config: dict, checkpoint: Path, *, variant: str = "final", seed: int = 1) -> int:
    """Features per pixel the tiny UNet gives with ``config``'s steps and blocks (a member's in_features)."""
    from ddpmseg.use.labelling import image_layers
    from ddpmseg.use.segmenter import make_segmenter
    from ddpmseg.use.settings import SegmenterSettings

    settings = SegmenterSettings.of_run(config, dataset="tiny", variant=variant, seed=seed)
    probe = make_segmenter(member_paths=[checkpoint], ddpm_checkpoint=checkpoint, settings=settings)
    size = settings.image_size
    return sum(layer.shape[-1] for layer in image_layers(probe, [np.zeros((size, size, 3), np.uint8)])[0])


def resolved_config(raw: dict) -> dict:
    """A config validated (defaults filled in) and resolved against the registry, as the Snakefile has it."""
    from ddpmseg.config.load import validate_config
    from ddpmseg.config.registry import load_registry, resolve_registry

    config = copy.deepcopy(raw)
    validate_config(config)
    return resolve_registry(config, load_registry())


def resolved_tiny_config() -> dict:
    """The tiny config, resolved as the Snakefile has it."""
    return resolved_config(TINY_CONFIG)


def segmenter_settings(**overrides) -> dict:
    """Plain values of a segmenter's settings on the tiny UNet (``SegmenterSettings(**...)``), with ``overrides``."""
    base = {
        "ddpm_flags": TINY_FLAGS,
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


def write_collected_tables(runs, folder: Path, variants, datasets):
    """The collected tables of ``runs`` written into ``folder`` under the workflow's file names."""
    from ddpmseg.config.paths import TABLES
    from ddpmseg.report.tables import write_tables

    paths = {name: Path(folder) / file for name, file in TABLES.items()}
    return write_tables(runs, paths, variants=variants, datasets=datasets)


def checkpoint_of(workdir):
    """The DDPM checkpoint of a workflow directory's tiny runs."""
    return workdir / "resources/checkpoints/tiny_ddpm.pt"


@pytest.fixture
def workflow_dir(tmp_path, tiny_checkpoint):
    """A workflow working directory with config.yaml (the tiny config) and a finished run tiny/final/seed1
    whose members fit the tiny UNet's features."""
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "config.yaml").write_text(yaml.safe_dump(TINY_CONFIG, sort_keys=False))
    config = resolved_tiny_config()
    width = tiny_feature_width(config, tiny_checkpoint)
    finished_tiny_run(tmp_path / "work", tiny_checkpoint, config, in_features=width)
    return tmp_path / "work"


def new_images(folder, count: int = 2):
    """``count`` random 32 x 32 images img<k>.png in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)).save(folder / f"img{index}.png")
    return folder


def export(workdir, out, *extra: str) -> int:
    """`ddpmseg export` of workflow_dir's run tiny/final/seed1 to ``out``; its exit status."""
    from ddpmseg.cli import main

    return main(["export", "--dataset", "tiny", "--variant", "final", "--seed", "1", "--workdir", str(workdir),
                 "--out", str(out), *extra])
