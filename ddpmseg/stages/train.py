"""Rule of ``train.smk`` (``train_members``): pixel classifiers of one run, one member per job or all of
them together (``training.fused_ensemble``), trained on the features of its training images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..classifier.mlp import save_member
from ..base.errors import DdpmsegError
from ..base.files import save_json
from ..features.sampler import PixelSampler
from ..features.store import FeatureStore
from ..classifier.training import study_batches_per_epoch, train_ensemble
from ..classifier.settings import TrainSettings


def train_members(
    *,
    stores: Sequence[str | Path],
    models: Sequence[str | Path],
    logs: Sequence[str | Path],
    settings: Mapping[str, Any],
    original_images: int | None,
    number_class: int,
    ignore_label: int,
    seed: int,
    members: Sequence[int],
    memory_budget_mb: float | None = None,
    progress_file: str | Path | None = None,
) -> None:
    """Train ensemble ``members`` of run ``seed`` on the training ``stores``; save each one's weights
    (``models``) and JSON log (``logs``), in the order of ``members``.

    The members train together in one batched computation (:func:`ddpmseg.classifier.training.train_ensemble`).
    An epoch has :func:`ddpmseg.classifier.training.study_batches_per_epoch` batches of the first
    ``original_images`` views. Activations beyond ``memory_budget_mb`` are streamed.
    ``progress_file`` keeps the training state after every epoch (outside the job's declared outputs,
    which Snakemake deletes when a job fails), so a killed job resumes; it is removed when done.
    """
    train_settings = TrainSettings.of(settings)
    store = FeatureStore(stores)
    sampler = PixelSampler(store, ignore_label, memory_budget_mb=memory_budget_mb)
    mode = f"streamed in groups of {sampler.buffer_views} views" if sampler.streaming else "held in memory"
    print(f"{sampler.views} training views, {len(sampler)} labelled pixels; activations {mode}")
    if len(sampler) < train_settings.batch_size:
        raise DdpmsegError(f"{store.paths[0]}: only {len(sampler)} labelled training pixels, fewer than one batch")
    batches_per_epoch = study_batches_per_epoch(
        sampler, original_views=original_images, batch_size=train_settings.batch_size
    )
    if batches_per_epoch is not None:
        print(f"{original_images} original views: {batches_per_epoch} batches per epoch")
    results = train_ensemble(
        sampler, number_class, train_settings, seed, members,
        batches_per_epoch=batches_per_epoch, progress_path=progress_file,
    )
    for (model, log), model_path, log_path in zip(results, models, logs, strict=True):
        log["training_views"] = sampler.views
        log["streamed"] = sampler.streaming
        log["noise_seed"] = store.attrs["noise_seed"]
        print(f"member {log['member']}: batches {log['batches']}, epochs {log['epochs']}, final loss {log['final_loss']:.4f}")
        save_member(
            model_path, model, in_features=store.feature_dim, number_class=number_class, dropout=train_settings.dropout
        )
        save_json(log_path, log)
    if progress_file is not None:
        Path(progress_file).unlink(missing_ok=True)
