"""One function per workflow stage, over plain paths and values; the Snakemake scripts call these."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from .archive import check_archive, extract_archive
from .augment import augment_copies
from .classifier import load_ensemble, save_member
from .config import AugmentationSettings
from .data import (
    Split,
    load_split,
    read_image,
    resize_image,
    summarize_split,
    to_model_input,
)
from .ddpm import (
    build_model_and_diffusion,
    check_state_dict,
    load_ddpm,
    model_flags,
    read_checkpoint,
    select_device,
    train_ddpm,
)
from .download import download
from .errors import DdpmsegError
from .features import extract_to_store
from .files import (
    atomic_directory,
    load_json,
    save_json,
    save_npy,
    save_png,
    save_torch,
    sha256_file,
)
from .predict import predict_image, uncertainty_score
from .progress import progress_bar
from .sampler import PixelSampler
from .store import FeatureStore
from .tables import collect_tables, read_table, score_run, write_csv
from .training import TrainSettings, train_ensemble, train_member
from .tta import apply_view, tta_vote, undo_view, view_is_flipped
from .visualize import colourise, default_palette, panel


def train_demo_ddpm(
    dataset_root: str | Path,
    checkpoint: str | Path,
    log_json: str | Path,
    *,
    flags: dict[str, Any],
    iterations: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> None:
    """Train the small demo UNet on the demo's unlabelled images; save a plain state_dict."""
    flags = model_flags(flags)
    folder = Path(dataset_root) / "unlabelled"
    paths = sorted(folder.glob("*.png"))
    if not paths:
        raise DdpmsegError(f"{folder}: no unlabelled images to train the demo DDPM on")
    images = np.stack([to_model_input(resize_image(read_image(p), flags["image_size"])) for p in paths])
    torch.manual_seed(seed)
    model, diffusion = build_model_and_diffusion(flags)
    device = select_device()
    model.to(device)
    started = time.perf_counter()
    bar = progress_bar(total=iterations, desc="train demo DDPM", unit="it")

    def progress(_iteration: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    losses = train_ddpm(
        model, diffusion, images, iterations=iterations, batch_size=batch_size, lr=lr, seed=seed, progress=progress
    )
    bar.close()
    save_torch(checkpoint, {k: v.detach().cpu() for k, v in model.state_dict().items()})
    save_json(
        log_json,
        {
            "images": len(images),
            "iterations": iterations,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "first_loss": losses[0] if losses else None,
            "final_loss": float(np.mean(losses[-20:])) if losses else None,
            "losses": losses,
            "device": str(device),
            "wall_time_s": time.perf_counter() - started,
        },
    )


def validate_dataset(
    splits: dict[str, Split | dict],
    counts: dict[str, int],
    summary_json: str | Path,
    *,
    image_size: int,
    number_class: int,
    ignore_label: int,
) -> None:
    """Check every split (masks, sizes, labels, readability, stems, squareness) and write a summary."""
    summary = {}
    for name, split in splits.items():
        split = Split.of(split)
        summary[name] = summarize_split(
            split.images, counts[name], image_size, number_class, ignore_label, masks=split.masks,
            non_square=split.non_square, training=name == "train",
        )
    save_json(summary_json, {"number_class": number_class, "ignore_label": ignore_label, **summary})


def validate_ddpm(
    checkpoint: str | Path,
    check_json: str | Path,
    flags: dict[str, Any],
    verify: dict[str, Any] | None = None,
) -> None:
    """Check that the checkpoint fits the flags; record its sha256. (Steps and blocks are checked
    against the flags when the config is read, so that changing them does not rerun this.)

    ``verify`` (url, sha256, lock_file, lock_key) first checks a downloaded or hand-placed checkpoint
    against the registry's digest or the lock file; with neither, its digest goes into the lock file
    only once it has loaded (``weights_only``) and fitted the flags.
    """
    flags = model_flags(flags)
    model, _ = build_model_and_diffusion(flags)
    fitted: list[Path] = []

    def fits_flags(path: Path) -> None:
        check_state_dict(model, read_checkpoint(path), checkpoint, flags)
        fitted.append(path)

    digest = download(dest=checkpoint, progress=False, content_check=fits_flags, **verify) if verify else None
    if not fitted:  # a known digest (or no verification) skips the download's content check
        fits_flags(Path(checkpoint))
    save_json(
        check_json,
        {
            "checkpoint": str(checkpoint),
            "sha256": digest or sha256_file(checkpoint),
            "flags": flags,
            "decoder_blocks": len(model.output_blocks),
        },
    )


def fetch(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None,
    lock_file: str | Path | None,
    lock_key: str,
    retries: int,
    backoff_s: float,
    timeout_s: float,
) -> None:
    """Download one file (resuming, verified, atomic; see :func:`ddpmseg.download.download`).

    Without a known digest, an archive must read as extraction would (:func:`check_archive`) before
    its digest goes into the lock file. A checkpoint (``.pt``) is only verified here: its digest is
    recorded by :func:`validate_ddpm` once it has loaded and fitted the model flags (which this rule
    does not know, and loading would need far more memory than a download).
    """
    is_checkpoint = Path(dest).suffix == ".pt"
    digest = download(
        url, dest, sha256=sha256, lock_file=lock_file, retries=retries, backoff_s=backoff_s, timeout_s=timeout_s,
        lock_key=lock_key,
        content_check=None if is_checkpoint else check_archive, record=not is_checkpoint,
    )
    print(f"{dest}: sha256 {digest}")


def extract_dataset(
    archive: str | Path,
    out: str | Path,
    prefix: str,
    verify: dict[str, Any],
) -> None:
    """Verify the archive (registry digest or lock file; else it must read safely before its digest is
    recorded), then extract one dataset's folder from it."""
    download(dest=archive, progress=False, content_check=check_archive, **verify)
    files = extract_archive(archive, out, members_prefix=prefix)
    print(f"{archive}: {len(files)} files of {prefix} extracted to {out}")


def extract_features(
    split: Split | dict,
    *,
    count: int,
    start: int,
    stop: int,
    checkpoint: str | Path,
    check_json: str | Path,
    flags: dict[str, Any],
    steps: Sequence[int],
    blocks: Sequence[int],
    noise_seed: int,
    batch_size: int,
    number_class: int,
    ignore_label: int,
    out: str | Path,
) -> None:
    """Extract one shard (images ``start:stop`` of a split's first ``count``) into a zarr store."""
    flags = model_flags(flags)
    names, images, masks = load_split(
        split, count, start, stop, image_size=flags["image_size"], number_class=number_class, ignore_label=ignore_label
    )
    model, diffusion = load_ddpm(checkpoint, flags)
    print(f"device: {next(model.parameters()).device}, model dtype: {model.dtype}")
    attrs = {
        "model_flags": flags,
        "checkpoint_sha256": load_json(check_json)["sha256"],
        "source": Split.of(split).as_dict(),
        "number_class": number_class,
        "ignore_label": ignore_label,
    }
    extract_to_store(
        model, diffusion, images, masks, names, steps=steps, blocks=blocks, noise_seed=noise_seed, batch_size=batch_size,
        out=out, attrs=attrs,
    )


def train_classifier(
    stores: Sequence[str | Path],
    model_paths: Sequence[str | Path],
    log_paths: Sequence[str | Path],
    *,
    number_class: int,
    ignore_label: int,
    settings: dict[str, Any],
    seed: int,
    members: Sequence[int],
    original_images: int | None = None,
    memory_budget_mb: float | None = None,
    progress_path: str | Path | None = None,
) -> None:
    """Train ensemble members of run ``seed`` on the training stores; save each one's weights and JSON log.

    One member is trained alone; several are trained together in one batched computation
    (:func:`ddpmseg.training.train_ensemble`). With augmented copies after the first
    ``original_images`` views, an epoch keeps the number of batches of the un-augmented set (the study's
    protocol) while drawing from all views. Activations beyond ``memory_budget_mb`` are streamed.
    ``progress_path`` keeps the training state after every epoch (outside the job's declared outputs,
    which Snakemake deletes when a job fails), so a killed job resumes; it is removed when done.
    """
    train_settings = TrainSettings.of(settings)
    store = FeatureStore(stores)
    sampler = PixelSampler(store, ignore_label, memory_budget_mb=memory_budget_mb)
    mode = f"streamed in groups of {sampler.buffer_views} views" if sampler.streaming else "held in memory"
    print(f"{sampler.views} training views, {len(sampler)} labelled pixels; activations {mode}")
    if len(sampler) < train_settings.batch_size:
        raise DdpmsegError(f"{store.paths[0]}: only {len(sampler)} labelled training pixels, fewer than one batch")
    batches_per_epoch = None
    if original_images is not None and original_images < len(store):
        batches_per_epoch = sampler.pixels_of_first(original_images) // train_settings.batch_size
        print(f"{original_images} original views: {batches_per_epoch} batches per epoch")
    training = dict(batches_per_epoch=batches_per_epoch, progress_path=progress_path)
    if len(members) == 1:
        results = [train_member(sampler, number_class, train_settings, seed, members[0], **training)]
    else:
        results = train_ensemble(sampler, number_class, train_settings, seed, members, **training)
    for (model, log), model_path, log_path in zip(results, model_paths, log_paths, strict=True):
        log["training_views"] = sampler.views
        log["streamed"] = sampler.streaming
        log["noise_seed"] = store.attrs["noise_seed"]
        print(f"member {log['member']}: batches {log['batches']}, epochs {log['epochs']}, final loss {log['final_loss']:.4f}")
        save_member(
            model_path, model, in_features=store.feature_dim, number_class=number_class, dropout=train_settings.dropout
        )
        save_json(log_path, log)
    if progress_path is not None:
        Path(progress_path).unlink(missing_ok=True)


def predict_split(
    stores: Sequence[str | Path],
    member_paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    number_class: int,
    ignore_label: int,
    palette: Sequence[Sequence[int]] | None = None,
    tta_views: Sequence[Sequence[str]] = (),
    tta_stores: Sequence[str | Path] = (),
    tta_folders: Sequence[str | Path] = (),
) -> None:
    """Label every test image with the ensemble, with test-time augmentation when views are given.

    Writes ``labels/`` (the final label maps), ``labels_plain/`` (the ensemble on the image alone, when
    TTA is on), colourised ``masks/``, ``panels/`` (image | ground truth | [plain |] final) and
    ``uncertainty.csv`` (JS score of the un-augmented image).
    """
    out_dir = Path(out_dir)
    store = FeatureStore(stores)
    models = load_ensemble(member_paths)
    palette = palette or default_palette(number_class)
    shards = len(stores)
    views = [
        (list(view), FeatureStore(tta_stores[k * shards : (k + 1) * shards]), Path(folder))
        for k, (view, folder) in enumerate(zip(tta_views, tta_folders, strict=True))
    ]
    for view, view_store, _ in views:
        if view_store.names != store.names:
            raise DdpmsegError(f"{view_store.paths[0]}: images differ from the test split's ({'+'.join(view)})")
    rows = []
    for index in progress_bar(range(len(store)), desc="predict", unit="image"):
        name = store.names[index]
        plain, js = predict_image(models, store.activations(index), store.image_size, number_class)
        plain = plain.numpy().astype(np.int32)
        final = plain
        truth_rgb = colourise(store.labels(index), palette, ignore_label)
        shown = [truth_rgb]
        if views:
            votes = [plain]
            for view, view_store, folder in views:
                labels, _ = predict_image(models, view_store.activations(index), store.image_size, number_class)
                valid = np.load(folder / "valid" / f"{name}.npy")
                votes.append(undo_view(labels.numpy().astype(np.int32), valid, view, ignore_label))
            final = tta_vote(np.stack(votes), ignore_label, 0, number_class).astype(np.int32)
            save_npy(out_dir / "labels_plain" / f"{name}.npy", plain)
            shown.append(colourise(plain, palette, ignore_label))
        save_npy(out_dir / "labels" / f"{name}.npy", final)
        final_rgb = colourise(final, palette, ignore_label)
        save_png(out_dir / "masks" / f"{name}.png", final_rgb)
        save_png(out_dir / "panels" / f"{name}.png", panel(store.image(index), *shown, final_rgb))
        rows.append({"image": name, "uncertainty": uncertainty_score(js)})
    write_csv(out_dir / "uncertainty.csv", pd.DataFrame(rows))


def score_predictions(
    predictions: str | Path,
    stores: Sequence[str | Path],
    out_dir: str | Path,
    *,
    number_class: int,
    ignore_label: int,
    class_names: Sequence[str] | None = None,
) -> None:
    """Score one run's final predictions, and the plain ensemble's when TTA was on, against the test labels.

    Columns ending in ``_plain`` hold the ensemble without TTA (equal to the final ones without TTA).
    """
    predictions, out_dir = Path(predictions), Path(out_dir)
    store = FeatureStore(stores)
    uncertainty = read_table(predictions / "uncertainty.csv").set_index("image")["uncertainty"]
    gts = [store.labels(i) for i in range(len(store))]
    scores = {}
    for kind, folder in (("", "labels"), ("_plain", "labels_plain")):
        if not (predictions / folder).is_dir():
            folder = "labels"
        preds = [np.load(predictions / folder / f"{name}.npy") for name in store.names]
        scores[kind] = score_run(
            preds, gts, store.names, [uncertainty[n] for n in store.names],
            number_class=number_class, ignore_label=ignore_label, class_names=class_names,
        )
    (miou, per_class, per_image), (miou_plain, per_class_plain, per_image_plain) = scores[""], scores["_plain"]
    per_class["iou_plain"] = per_class_plain["iou"]
    per_image.insert(2, "miou_plain", per_image_plain["miou"])
    write_csv(out_dir / "per_class.csv", per_class)
    write_csv(out_dir / "per_image.csv", per_image)
    write_csv(out_dir / "summary.csv", pd.DataFrame([{"miou": miou, "miou_plain": miou_plain, "images": len(gts)}]))


def augment_training_set(
    split: Split | dict,
    out: str | Path,
    *,
    training_number: int,
    image_size: int,
    number_class: int,
    ignore_label: int,
    augmentation: AugmentationSettings,
) -> None:
    """Write ``scale - 1`` augmented copies of every training image and mask (archive layout, ``real/train``)."""
    names, images, masks = load_split(
        split, training_number, 0, training_number,
        image_size=image_size, number_class=number_class, ignore_label=ignore_label,
    )
    copies_images, copies_masks = augment_copies(
        images, masks, augmentation.copies, augmentation.seed, ignore_label, p=augmentation.p
    )
    copy_names = [f"{name}-aug{copy:02d}" for name in names for copy in range(augmentation.copies)]  # image-major
    with atomic_directory(out) as tmp:
        folder = tmp / "real" / "train"
        folder.mkdir(parents=True)
        for name, image, mask in zip(copy_names, copies_images, copies_masks, strict=True):
            Image.fromarray(image).save(folder / f"{name}.png")
            np.save(folder / f"{name}.npy", mask)


def make_tta_view(
    split: Split | dict,
    out: str | Path,
    *,
    testing_number: int,
    image_size: int,
    number_class: int,
    ignore_label: int,
    view: Sequence[str],
    seed: int,
) -> None:
    """Write one test-time augmentation view of the test split: view images, masks in the view's frame
    (ignore_label where the view removed content) and ``valid/<name>.npy`` (False where it did)."""
    names, images, masks = load_split(
        split, testing_number, 0, testing_number, image_size=image_size, number_class=number_class, ignore_label=ignore_label
    )
    with atomic_directory(out) as tmp:
        folder = tmp / "real" / "test"
        folder.mkdir(parents=True)
        (tmp / "valid").mkdir()
        for index, (name, image, mask) in enumerate(zip(names, images, masks, strict=True)):
            view_image, valid = apply_view(image, list(view), seed, index, ignore_label)
            view_mask = mask[:, ::-1] if view_is_flipped(list(view)) else mask
            view_mask = np.where(valid, view_mask, ignore_label)
            Image.fromarray(view_image).save(folder / f"{name}.png")
            np.save(folder / f"{name}.npy", view_mask.astype(np.int32))
            np.save(tmp / "valid" / f"{name}.npy", valid)


def make_tables(runs: Sequence[dict], out_dir: str | Path, variants: Sequence[str], datasets: Sequence[str]) -> None:
    collect_tables(runs, out_dir, variants, datasets)
