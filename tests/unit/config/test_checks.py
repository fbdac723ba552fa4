"""Variant settings: each variant differs from the baseline only where it says."""

from __future__ import annotations

from dataclasses import asdict

import copy

import pytest
import torch
import yaml
from conftest import REPO

from ddpmseg.classifier.mlp import build_classifier
from ddpmseg.config.imagesets import (
    AugmentationSettings,
    augmentation_set,
    imageset_count,
    parse_augmentation_set,
    shard_ranges,
    variant_tta_sets,
)
from ddpmseg.config.checks import check_config
from ddpmseg.config.variants import classifier_settings, tta_views, variant_settings
from ddpmseg.config.load import default_variant_settings
from ddpmseg.base.errors import DdpmsegError
from ddpmseg.classifier.training import make_optimizer
from ddpmseg.classifier.settings import TrainSettings


@pytest.fixture()
def config() -> dict:
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    _validated(raw)  # the schema's defaults fill in what config.yaml leaves out
    raw["variants"].update(
        {
            "baseline_11ep": {"epochs_before_stopping": 11},
            "augment": {"epochs_before_stopping": 11, "augmentation_scale": 5},
        }
    )
    return raw


def test_regularised_variant_has_dropout_and_adamw_baseline_neither(config) -> None:
    final = TrainSettings.of(variant_settings(config, "final"))
    baseline = TrainSettings.of(variant_settings(config, "baseline"))
    final_model = build_classifier(16, 5, final.dropout)
    baseline_model = build_classifier(16, 5, baseline.dropout)
    assert sum(isinstance(m, torch.nn.Dropout) for m in final_model) == 2
    assert not any(isinstance(m, torch.nn.Dropout) for m in baseline_model)
    final_opt = make_optimizer(final_model.parameters(), final)
    baseline_opt = make_optimizer(baseline_model.parameters(), baseline)
    assert type(final_opt) is torch.optim.AdamW and final_opt.defaults["weight_decay"] == 0.0001
    assert type(baseline_opt) is torch.optim.Adam and baseline_opt.defaults["weight_decay"] == 0.0
    assert baseline.epochs_before_stopping == 4 and final.epochs_before_stopping == 11


def test_variants_differ_only_where_they_say(config) -> None:
    baseline = variant_settings(config, "baseline")
    longer = variant_settings(config, "baseline_11ep")
    assert {k for k in baseline if baseline[k] != longer[k]} == {"epochs_before_stopping"}
    augment = variant_settings(config, "augment")
    assert {k for k in baseline if baseline[k] != augment[k]} == {"epochs_before_stopping", "augmentation_scale"}


def test_augmentation_sets_are_shared_and_dataset_scale_wins(config) -> None:
    dataset = next(iter(config["datasets"]))
    assert augmentation_set(config, dataset, "baseline") is None
    assert augmentation_set(config, dataset, "augment") == augmentation_set(config, dataset, "final") == "aug-x5-p0.4-s0"
    config["datasets"][dataset]["augmentation_scale"] = 4  # bedroom_28 in the study
    name = augmentation_set(config, dataset, "final")
    assert name == "aug-x4-p0.4-s0"
    settings = parse_augmentation_set(name)
    assert settings == AugmentationSettings(scale=4, p=0.4, seed=0) and settings.copies == 3 and settings.name == name
    assert imageset_count(config, dataset, name) == config["datasets"][dataset]["training_number"] * 3


def test_tta_views_named_and_explicit(config) -> None:
    assert len(tta_views(config, "final")) == 4 and tta_views(config, "baseline") == []
    assert variant_tta_sets(config, "final")[0] == "tta-s0-togray+coarsedropout"
    config["variants"]["final"]["tta_views"] = "nonsense"
    with pytest.raises(DdpmsegError, match="variants.final.tta_views: 'nonsense' is not one of study, study_code"):
        check_config(config)


def test_config_cross_checks(config) -> None:
    check_config(config)
    broken = copy.deepcopy(config)
    dataset = next(iter(broken["datasets"]))
    broken["datasets"][dataset]["class_names"] = ["a"]
    with pytest.raises(DdpmsegError, match=rf"datasets.{dataset}.class_names: 1 names for number_class 5"):
        check_config(broken)
    broken = copy.deepcopy(config)
    broken["seeds"] = [0, 0]
    with pytest.raises(DdpmsegError, match="seeds: a seed is listed twice"):
        check_config(broken)


def test_shard_ranges_cover_every_image_once() -> None:
    assert shard_ranges(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert shard_ranges(6, 3) == [(0, 3), (3, 6)]


def test_registry_entries_fill_the_config_and_urls_can_be_overridden() -> None:
    from ddpmseg.config.registry import resolve_registry
    from ddpmseg.config.registry import load_registry

    registry = load_registry()
    config = {
        "datasets": {
            "horse_21": {"source": "registry", "training_number": 5},
            "mirror": {"source": "registry", "registry_name": "cat_15", "url": "file:///cache/datasets.tar.gz"},
        },
        "ddpms": {"lsun_horse": {"source": "registry", "url": "http://127.0.0.1:1/h.pt", "flags": {"use_fp16": False}}},
    }
    resolved = resolve_registry(config, registry)
    horse = resolved["datasets"]["horse_21"]
    assert horse["number_class"] == 21 and horse["ignore_label"] == 255 and horse["testing_number"] == 30
    assert horse["training_number"] == 5  # the config's own value wins
    assert horse["url"].endswith("/datasets.tar.gz") and horse["archive_prefix"] == "horse_21/"
    mirror = resolved["datasets"]["mirror"]
    assert mirror["url"] == "file:///cache/datasets.tar.gz" and mirror["number_class"] == 15
    assert mirror["archive_prefix"] == "cat_15/"
    assert set(resolved["ddpms"]) == {"lsun_horse", "lsun_cat"}  # lsun_cat added for the cat dataset
    horse_ddpm = resolved["ddpms"]["lsun_horse"]
    assert horse_ddpm["url"] == "http://127.0.0.1:1/h.pt"
    assert horse_ddpm["flags"]["num_channels"] == 256 and horse_ddpm["flags"]["use_fp16"] is False
    assert "url" not in config["datasets"]["horse_21"]  # the input is left as it was


def test_unknown_registry_names_are_refused() -> None:
    from ddpmseg.config.registry import resolve_registry
    from ddpmseg.config.registry import load_registry

    with pytest.raises(DdpmsegError, match=r"datasets.zebra: 'zebra' is not a dataset of the registry"):
        resolve_registry({"datasets": {"zebra": {"source": "registry"}}, "ddpms": {}}, load_registry())


def test_paper_config_resolves_to_the_six_datasets_and_five_variants() -> None:
    from ddpmseg.config.registry import resolve_registry
    from ddpmseg.config.registry import load_registry

    raw = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    resolved = resolve_registry(_validated(raw), load_registry())
    check_config(resolved)
    assert list(resolved["variants"]) == ["baseline", "baseline_11ep", "augment", "augment_regularize", "final"]
    assert set(resolved["ddpms"]) == {"lsun_bedroom", "ffhq", "lsun_cat", "lsun_horse"}
    assert augmentation_set(resolved, "bedroom_28", "final") == "aug-x4-p0.4-s0"
    assert augmentation_set(resolved, "horse_21", "augment") == "aug-x5-p0.4-s0"
    assert imageset_count(resolved, "ade_bedroom_30", "test") == 650


def _validated(config: dict) -> dict:
    from ddpmseg.config.load import validate_config

    validate_config(config)
    return config


@pytest.mark.parametrize(
    "edit,line",
    [
        (lambda c: c["datasets"]["demo_shapes"].update(number_class="5"),
         "datasets.demo_shapes.number_class: '5' is not of type 'integer'"),
        (lambda c: c["datasets"]["demo_shapes"].update(number_clas=5),
         "datasets.demo_shapes: Additional properties are not allowed ('number_clas' was unexpected)"),
        (lambda c: c.update(sedes=[0]), "Additional properties are not allowed ('sedes' was unexpected)"),
        (lambda c: c["ddpms"]["demo_ddpm"]["flags"].update(learn_sigma="yes"),
         "ddpms.demo_ddpm.flags.learn_sigma: 'yes' is not of type 'boolean'"),
        (lambda c: c["ddpms"]["demo_ddpm"]["flags"].update(num_res_blocks="1"),
         "ddpms.demo_ddpm.flags.num_res_blocks: '1' is not of type 'integer'"),
        (lambda c: c["ddpms"]["demo_ddpm"]["flags"].update(attention_resolutions="16;8"),
         "ddpms.demo_ddpm.flags.attention_resolutions: '16;8' does not match"),
        (lambda c: c["variants"].update({"aug+drop": {}}),
         "variants: name 'aug+drop' is not allowed: use letters, digits, '_', '.' and '-' only, starting with a letter or digit"),
        (lambda c: c["datasets"].update({"cells (2024)": c["datasets"]["demo_shapes"]}),
         "datasets: name 'cells (2024)' is not allowed"),
        (lambda c: c["ddpms"].update({"-ddpm": c["ddpms"]["demo_ddpm"]}), "ddpms: name '-ddpm' is not allowed"),
    ],
)
def test_schema_errors_are_one_line_naming_the_key(config, edit, line) -> None:
    edit(config)
    with pytest.raises(DdpmsegError) as info:
        _validated(config)
    message = str(info.value)
    assert message.startswith(line) and "\n" not in message and len(message) < 320


def test_validation_fills_nested_defaults(config) -> None:
    for key in ("demo", "variant_defaults", "download", "training", "ensemble_size"):
        config.pop(key, None)
    config["features"] = {"steps": [50], "blocks": [1]}
    filled = _validated(config)
    assert filled["demo"] == {"seed": 0, "image_size": 64, "train_images": 12, "test_images": 12, "unlabelled_images": 300}
    trained = filled["ddpms"]["demo_ddpm"]["training"]  # guided-diffusion's defaults where config.yaml sets none
    assert trained["microbatch"] == 0 and trained["weight_decay"] == 0.0 and trained["log_every"] == 10
    assert trained["schedule_sampler"] == "uniform" and trained["fp16"] is False and "gpus" not in trained
    assert filled["variant_defaults"]["optimizer"] == "adam" and filled["variant_defaults"]["tta_views"] == []
    assert filled["download"]["retries"] == 3 and filled["training"]["fused_ensemble"] is False
    assert filled["ensemble_size"] == 10 and filled["features"]["batch_size"] == 8
    again = _validated({**copy.deepcopy(config), "demo": {}})  # defaults are copies, never shared
    again["demo"]["seed"] = 1
    assert _validated(copy.deepcopy(config))["demo"]["seed"] == 0


def test_load_config_names_the_file_and_the_key(tmp_path, config) -> None:
    from ddpmseg.config.load import load_config

    config["features"]["fetures"] = 1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(DdpmsegError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: features: Additional properties are not allowed ('fetures' was unexpected)"


def test_name_constraint_takes_names_literally() -> None:
    import re

    from ddpmseg.config.paths import name_constraint

    pattern = name_constraint(["aug+drop", "cells (2024)", "v1.2"])
    assert all(re.fullmatch(pattern, name) for name in ("aug+drop", "cells (2024)", "v1.2"))
    assert not any(re.fullmatch(pattern, name) for name in ("augdrop", "augggdrop", "cells 2024", "v1x2"))
    assert not re.fullmatch(name_constraint([]), "")


def test_check_paths_names_the_key_and_the_missing_path(tmp_path) -> None:
    from ddpmseg.config.checks import check_paths

    (tmp_path / "data/real/train").mkdir(parents=True)
    (tmp_path / "images").mkdir()
    (tmp_path / "model.pt").write_bytes(b"x")
    config = {
        "datasets": {
            "cells": {"source": "folders", "train_images": str(tmp_path / "images"), "train_masks": "/data/x",
                      "test_images": str(tmp_path / "images"), "test_masks": str(tmp_path / "images")},
        },
        "ddpms": {"net": {"source": "file", "checkpoint": str(tmp_path / "model.pt")}},
    }
    with pytest.raises(DdpmsegError, match=r"^datasets\.cells\.train_masks: /data/x does not exist$"):
        check_paths(config)
    config["datasets"]["cells"]["train_masks"] = str(tmp_path / "model.pt")
    with pytest.raises(DdpmsegError, match=r"^datasets\.cells\.train_masks: .*model\.pt is not a folder$"):
        check_paths(config)
    config["datasets"] = {"cells": {"source": "folder", "path": str(tmp_path / "data")}}
    with pytest.raises(DdpmsegError, match=r"^datasets\.cells\.path: .*data/real/test does not exist$"):
        check_paths(config)
    (tmp_path / "data/real/test").mkdir()
    check_paths(config)
    config["ddpms"]["net"]["checkpoint"] = str(tmp_path / "images")
    with pytest.raises(DdpmsegError, match=r"^ddpms\.net\.checkpoint: .*images is not a file$"):
        check_paths(config)


@pytest.mark.parametrize(
    "environ,listing,count",
    [
        ({"CUDA_VISIBLE_DEVICES": "0,1"}, "GPU 0: A\nGPU 1: B\nGPU 2: C\n", 2),  # the variable wins
        ({"CUDA_VISIBLE_DEVICES": ""}, "GPU 0: A\n", 0),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, "GPU 0: A\n", 0),
        ({"CUDA_VISIBLE_DEVICES": "GPU-5e1f,GPU-77aa, "}, None, 2),
        ({}, "GPU 0: NVIDIA H200 (UUID: GPU-a)\nGPU 1: NVIDIA H200 (UUID: GPU-b)\n", 2),
        ({}, "GPU 0: NVIDIA A100 (UUID: GPU-a)\n  MIG 3g.40gb Device 0: (UUID: MIG-b)\n", 1),
        ({}, None, 0),  # no nvidia-smi, or it failed: no GPU
    ],
)
def test_visible_gpu_count(environ, listing, count) -> None:
    from ddpmseg.stages.resources import visible_gpu_count

    assert visible_gpu_count(environ, lambda: listing) == count


def test_local_gpu_limit_is_the_machines_gpu_count_unless_given_or_on_a_cluster() -> None:
    from ddpmseg.stages.resources import local_gpu_limit

    assert local_gpu_limit(visible_gpus=0, limit_given=False, cluster=False) is None  # CPU-only: jobs side by side
    assert local_gpu_limit(visible_gpus=4, limit_given=False, cluster=False) == 4  # one job per GPU
    assert local_gpu_limit(visible_gpus=4, limit_given=True, cluster=False) is None  # --resources gpu=N wins
    assert local_gpu_limit(visible_gpus=4, limit_given=False, cluster=True) is None  # SLURM hands out GPUs


def test_default_profile_leaves_the_gpu_limit_to_the_workflow() -> None:
    # A fixed gpu=1 there ran extraction and training one at a time on machines without a GPU.
    profile = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    assert not any(str(r).startswith("gpu=") for r in profile.get("resources", []))


def test_training_settings_take_their_defaults_from_the_schema_only() -> None:
    with pytest.raises(TypeError):
        TrainSettings()  # no defaults of its own to drift from the schema's
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    declared = schema["properties"]["variant_defaults"]["properties"]
    defaults = default_variant_settings()
    assert defaults == {key: prop["default"] for key, prop in declared.items()}
    settings = asdict(classifier_settings({"variant_defaults": defaults, "variants": {"v": {}}}, "v"))
    assert set(settings) == set(TrainSettings.__dataclass_fields__)
    assert TrainSettings.of(defaults) == TrainSettings(**settings)


def test_schema_allows_exactly_the_tta_transforms_and_named_views() -> None:
    from ddpmseg.prediction.views import NAMED_TTA_VIEWS, TTA_TRANSFORMS

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    views = schema["$defs"]["variant_settings"]["properties"]["tta_views"]
    listed = next(option for option in views["oneOf"] if option["type"] == "array")
    assert listed["items"]["items"]["enum"] == list(TTA_TRANSFORMS)
    assert all(f'"{name}"' in views["description"] for name in NAMED_TTA_VIEWS)


def test_the_rgb_control_reads_rgb_stores_of_its_own_image_sets_and_the_others_their_noise(config) -> None:
    from ddpmseg.config.imagesets import feature_imagesets, features_folder
    from ddpmseg.config.variants import feature_source

    config["variants"] = {
        "baseline": {},
        "rgb_control": {"features": "rgb", "augmentation_scale": 3, "tta_views": [["HorizontalFlip"]]},
    }
    _validated(config)
    assert feature_source(config, "baseline") == "ddpm" and feature_source(config, "rgb_control") == "rgb"
    assert features_folder(config, "baseline", 1) == "noise1" and features_folder(config, "rgb_control", 1) == "rgb"
    config["features"]["noise_seed"] = 5
    assert features_folder(config, "baseline", 1) == "noise5" and features_folder(config, "rgb_control", 1) == "rgb"
    assert feature_imagesets(config, "demo_shapes", "ddpm") == ["train", "test"]  # no DDPM features of the copies
    assert feature_imagesets(config, "demo_shapes", "rgb") == ["train", "test", "aug-x3-p0.4-s0", "tta-s0-horizontalflip"]
    config["variants"] = {"rgb_control": {"features": "rgb"}}
    assert feature_imagesets(config, "demo_shapes", "ddpm") == []
    config["variants"]["rgb_control"]["features"] = "pixels"
    with pytest.raises(DdpmsegError, match=r"variants.rgb_control.features: 'pixels' is not one of \['ddpm', 'rgb'\]"):
        _validated(config)


def _trained_config(tmp_path, **entry) -> dict:
    """config.yaml's demo with a trained DDPM 'cells' on a folder of two images (and ``entry``'s keys)."""
    folder = tmp_path / "cells"
    folder.mkdir(exist_ok=True)
    for name in ("b.png", "a.jpg", "notes.txt"):
        (folder / name).write_bytes(b"x")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["ddpms"]["cells"] = {"source": "train", "images": [str(folder)], "training": {"iterations": 10}, **entry}
    if "init" not in entry:
        config["ddpms"]["cells"]["flags"] = {"image_size": 64}
    return _validated(config)


def test_a_trained_ddpm_fine_tuned_from_the_registry_adds_it_and_takes_its_flags(tmp_path) -> None:
    from ddpmseg.config.checks import ddpm_init
    from ddpmseg.config.registry import resolve_registry
    from ddpmseg.config.registry import load_registry

    config = _trained_config(tmp_path, init="lsun_horse", flags={"use_fp16": False})
    resolved = resolve_registry(config, load_registry())
    assert resolved["ddpms"]["lsun_horse"]["source"] == "registry"  # downloaded by download_checkpoint
    flags = resolved["ddpms"]["cells"]["flags"]
    assert flags["num_channels"] == 256 and flags["image_size"] == 256 and flags["use_fp16"] is False
    assert ddpm_init(resolved, "cells") == ("ddpm", "lsun_horse")
    check_config(resolved)

    config["ddpms"]["cells"]["init"] = "demo_ddpm"  # a DDPM of the config, trained itself
    resolved = resolve_registry(config, load_registry())
    assert "lsun_horse" not in resolved["ddpms"] and ddpm_init(resolved, "cells") == ("ddpm", "demo_ddpm")
    assert resolved["ddpms"]["cells"]["flags"]["num_channels"] == 32  # demo_ddpm's

    config["ddpms"]["cells"]["init"] = str(tmp_path / "model.pt")
    config["ddpms"]["cells"]["flags"] = {"image_size": 64}
    assert ddpm_init(resolve_registry(config, load_registry()), "cells") == ("file", str(tmp_path / "model.pt"))


@pytest.mark.parametrize(
    "edit,line",
    [
        (lambda c: c["ddpms"]["cells"]["training"].update(microbatch=4, batch_size=2),
         "ddpms.cells.training.microbatch: 4 is more than batch_size 2 (0: the whole batch)"),
        (lambda c: c["ddpms"]["cells"].pop("flags"),
         "ddpms.cells.flags: required (or an init naming a DDPM of this config or the registry)"),
        (lambda c: c["ddpms"]["demo_ddpm"].update(source="file", checkpoint="x.pt"),
         "ddpms.demo_ddpm.images: only a DDPM with source train has it (this one is file)"),
        (lambda c: c["ddpms"]["cells"].update(checkpoint="x.pt"),
         "ddpms.cells.checkpoint: only a DDPM with source file has it (this one is train)"),
        (lambda c: c["ddpms"]["cells"]["training"].update(batch_size=6, gpus=2, nodes=2),
         "ddpms.cells.training.batch_size: 6 is not a multiple of the 4 training processes (nodes 2 x gpus 2)"),
        (lambda c: c["ddpms"]["cells"]["training"].update(batch_size=4, gpus=3),
         "ddpms.cells.training.batch_size: 4 is not a multiple of the 3 training processes (nodes 1 x gpus 3)"),
        (lambda c: c["ddpms"]["cells"]["training"].update(batch_size=4, nodes=2),
         "ddpms.cells.training.nodes: 2 nodes need GPUs on each (training.gpus or gpu_per_job, now 0)"),
    ],
)
def test_trained_ddpm_cross_checks_are_one_line(tmp_path, edit, line) -> None:
    config = _trained_config(tmp_path)
    edit(config)
    with pytest.raises(DdpmsegError) as info:
        check_config(config)
    assert str(info.value) == line


def test_init_cycles_are_refused(tmp_path) -> None:
    from ddpmseg.config.registry import resolve_registry
    from ddpmseg.config.registry import load_registry

    config = _trained_config(tmp_path, init="other")
    config["ddpms"]["other"] = {**copy.deepcopy(config["ddpms"]["cells"]), "init": "cells"}
    with pytest.raises(DdpmsegError, match=r"^ddpms\.\w+\.init: '\w+' fine-tunes from \w+ itself \(a cycle of inits\)$"):
        resolve_registry(config, load_registry())


def test_trained_ddpm_paths_are_checked_at_parse_time(tmp_path) -> None:
    from ddpmseg.config.checks import check_paths

    config = _trained_config(tmp_path)
    check_paths(config)  # demo_ddpm's folder is made by generate_demo_dataset: not checked before
    missing = tmp_path / "gone"
    config["ddpms"]["cells"]["images"].append(str(missing))
    with pytest.raises(DdpmsegError, match=rf"^ddpms\.cells\.images: {missing} does not exist$"):
        check_paths(config)
    missing.mkdir()
    (missing / "readme.txt").write_text("no images")
    with pytest.raises(DdpmsegError, match=rf"^ddpms\.cells\.images: {missing} holds no \.png/\.jpg/\.jpeg images$"):
        check_paths(config)
    config["ddpms"]["cells"]["images"].pop()
    config["ddpms"]["cells"]["init"] = "lsun_hrse"  # a typo: neither a DDPM, a registry checkpoint nor a file
    with pytest.raises(DdpmsegError) as info:
        check_paths(config)
    assert str(info.value) == (
        "ddpms.cells.init: 'lsun_hrse' is neither a DDPM of this config, a checkpoint of the registry "
        "(workflow/registry.yaml) nor an existing checkpoint file"
    )
    (tmp_path / "model.pt").write_bytes(b"x")
    config["ddpms"]["cells"]["init"] = str(tmp_path / "model.pt")
    check_paths(config)


def test_training_inputs_are_the_image_files_or_the_generated_dataset(tmp_path) -> None:
    from ddpmseg.config.ddpms import ddpm_image_inputs, ddpm_training_gpus, ddpm_training_nodes, ddpm_training_processes
    from ddpmseg.config.checks import ddpm_training_settings

    config = _trained_config(tmp_path)
    assert ddpm_image_inputs(config, "cells") == [str(tmp_path / "cells/a.jpg"), str(tmp_path / "cells/b.png")]
    assert ddpm_image_inputs(config, "demo_ddpm") == ["resources/datasets/demo_shapes"]
    config["ddpms"]["cells"]["images"].append("./resources/datasets/demo_shapes/unlabelled/")
    assert ddpm_image_inputs(config, "cells")[-1] == "resources/datasets/demo_shapes"
    settings = ddpm_training_settings(config["ddpms"]["cells"])
    assert list(settings)[:3] == ["iterations", "batch_size", "microbatch"] and "gpus" not in settings
    assert settings["iterations"] == 10 and settings["lr"] == 0.0001 and settings["ema_rate"] == 0.9999
    assert ddpm_training_gpus(config, "cells") == config["gpu_per_job"] == 0
    assert ddpm_training_nodes(config, "cells") == 1 and "nodes" not in settings  # the schema's default
    config["ddpms"]["cells"]["training"].update(gpus=4, nodes=3, batch_size=12)
    assert ddpm_training_gpus(config, "cells") == 4 and ddpm_training_processes(config, "cells") == 12
    check_config(config)
