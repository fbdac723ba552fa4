"""The registry of the paper's datasets and checkpoints against docs/method.md §1-2, and its validation."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.config.registry import (
    DEFAULT_REGISTRY,
    REGISTRY_SCHEMA,
    checkpoint_entry,
    load_registry,
)

DATASETS_URL = "https://storage.yandexcloud.net/yandex-research/ddpm-segmentation/datasets.tar.gz"

# docs/method.md §1: number_class, ignore_label, train, test, DDPM
PAPER = {
    "bedroom_28": (29, 0, 40, 20, "lsun_bedroom"),
    "ffhq_34": (34, 255, 20, 20, "ffhq"),
    "cat_15": (15, 255, 30, 20, "lsun_cat"),
    "horse_21": (21, 255, 30, 30, "lsun_horse"),
    "celeba_19": (19, 255, 20, 500, "ffhq"),
    "ade_bedroom_30": (30, 255, 50, 650, "lsun_bedroom"),
}

# docs/method.md §2
CHECKPOINT_URLS = {
    "lsun_bedroom": "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/lsun_bedroom.pt",
    "lsun_cat": "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/lsun_cat.pt",
    "lsun_horse": "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/lsun_horse.pt",
    "ffhq": "https://storage.yandexcloud.net/yandex-research/ddpm-segmentation/models/ddpm_checkpoints/ffhq.pt",
    "imagenet_256_uncond": "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt",
}
PAPER_FLAGS = {
    "attention_resolutions": "32,16,8",
    "class_cond": False,
    "diffusion_steps": 1000,
    "dropout": 0.1,
    "image_size": 256,
    "learn_sigma": True,
    "noise_schedule": "linear",
    "num_channels": 256,
    "num_head_channels": 64,
    "num_res_blocks": 2,
    "resblock_updown": True,
    "use_fp16": True,
    "use_scale_shift_norm": True,
}


@pytest.fixture(scope="module")
def registry() -> dict:
    return load_registry()


def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(yaml.safe_load(REGISTRY_SCHEMA.read_text()))


def test_six_datasets_with_the_paper_numbers(registry):
    assert set(registry["datasets"]) == set(PAPER)
    for name, (number_class, ignore_label, train, test, ddpm) in PAPER.items():
        entry = registry["datasets"][name]
        assert (entry["number_class"], entry["ignore_label"]) == (number_class, ignore_label), name
        assert (entry["training_number"], entry["testing_number"]) == (train, test), name
        assert entry["ddpm"] == ddpm
        assert entry["archive"] == {"url": DATASETS_URL, "sha256": None, "prefix": f"{name}/"}
        assert len(entry["class_names"]) == number_class
        assert len(entry["palette"]) == number_class
        assert len({tuple(c) for c in entry["palette"]}) == number_class  # distinct colours


def test_class_names_as_in_method_md(registry):
    names = {name: entry["class_names"] for name, entry in registry["datasets"].items()}
    assert names["bedroom_28"][0] == "background" and names["bedroom_28"][-1] == "table staff"
    assert names["horse_21"][-1] == "leg protection"
    assert names["celeba_19"][:3] == ["background", "cloth", "ear_r"]
    assert names["ffhq_34"][:3] == ["background", "head", "cheek"] and names["ffhq_34"][-1] == "wrinkles"
    assert names["ade_bedroom_30"][0] == "wall" and names["ade_bedroom_30"][-1] == "television"
    assert names["cat_15"] == [
        "background", "back", "belly", "chest", "leg", "paw", "head", "ear",
        "eye", "mouth", "tongue", "nose", "tail", "whiskers", "neck",
    ]  # fmt: skip


def test_five_checkpoints_with_the_same_flags(registry):
    assert registry["checkpoints"].keys() == CHECKPOINT_URLS.keys()
    for name, url in CHECKPOINT_URLS.items():
        entry = checkpoint_entry(name, registry)
        assert entry == {"url": url, "sha256": None, "flags": PAPER_FLAGS}


def test_the_paper_flags_are_written_once():
    """One anchor holds the paper's flags; the five checkpoints refer to it."""
    text = DEFAULT_REGISTRY.read_text()
    assert text.count("attention_resolutions") == 1
    assert text.count("flags: &paper_flags") == 1 and text.count("flags: *paper_flags") == len(CHECKPOINT_URLS) - 1


def test_entries_are_copies(registry):
    entry = checkpoint_entry("lsun_horse", registry)
    entry["flags"]["image_size"] = 64
    assert registry["checkpoints"]["lsun_horse"]["flags"]["image_size"] == 256
    assert checkpoint_entry("ffhq")["url"].endswith("ffhq.pt")  # default registry file


def test_unknown_names(registry):
    with pytest.raises(DdpmsegError, match=r"unknown checkpoint 'sd15'.*lsun_horse"):
        checkpoint_entry("sd15", registry)


def _broken(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(DEFAULT_REGISTRY.read_text())
    data = json.loads(json.dumps(data))  # every entry its own flags (the file shares them through an anchor)
    change(data)
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_wrong_type_names_the_key(tmp_path):
    path = _broken(tmp_path, lambda d: d["datasets"]["horse_21"].update(number_class="21"))
    with pytest.raises(DdpmsegError) as info:
        load_registry(path)
    assert str(info.value) == f"{path}: datasets.horse_21.number_class: '21' is not of type 'integer'"


@pytest.mark.parametrize(
    "change,key",
    [
        (lambda d: d["checkpoints"]["ffhq"].update(sha256="abc"), "checkpoints.ffhq.sha256"),
        (
            lambda d: d["checkpoints"]["lsun_cat"]["flags"].update(image_size=[256]),
            "checkpoints.lsun_cat.flags.image_size",
        ),
        (lambda d: d["datasets"]["cat_15"].update(colour="red"), "datasets.cat_15: Additional properties"),
        (lambda d: d["datasets"]["cat_15"].pop("ignore_label"), "datasets.cat_15: 'ignore_label' is a required"),
        (lambda d: d["datasets"]["cat_15"]["palette"][3].append(7), "datasets.cat_15.palette.3"),
        (
            lambda d: d["datasets"]["cat_15"]["class_names"].pop(),
            "datasets.cat_15.class_names: 14 names for number_class 15",
        ),
        (lambda d: d["datasets"]["cat_15"].update(ddpm="lsun_dog"), "datasets.cat_15.ddpm: 'lsun_dog' is not a key"),
    ],
)
def test_broken_registry_names_the_key(tmp_path, change, key):
    path = _broken(tmp_path, change)
    with pytest.raises(DdpmsegError) as info:
        load_registry(path)
    assert str(info.value).startswith(f"{path}: {key}")
    assert "\n" not in str(info.value)


def test_missing_registry(tmp_path):
    with pytest.raises(DdpmsegError, match="registry not found"):
        load_registry(tmp_path / "nope.yaml")


def test_registry_flags_pass_the_config_schema_and_model_flags(registry):
    from ddpmseg.config.load import SCHEMA
    from ddpmseg.diffusion.flags import model_flags

    flags_schema = yaml.safe_load(SCHEMA.read_text())["$defs"]["model_flags"]
    for name, entry in registry["checkpoints"].items():
        jsonschema.Draft202012Validator(flags_schema).validate(entry["flags"])
        assert model_flags(entry["flags"])["image_size"] == 256, name


def test_registry_flags_of_the_wrong_type_stop_the_config(tmp_path):
    from ddpmseg.config.checks import check_config
    from ddpmseg.config.registry import resolve_registry
    from ddpmseg.config.load import validate_config

    path = _broken(tmp_path, lambda d: d["checkpoints"]["lsun_horse"]["flags"].update(learn_sigma="false"))
    config = {"datasets": {"horse_21": {"source": "registry"}}, "ddpms": {}, "features": {"steps": [50], "blocks": [5]},
              "variants": {"baseline": {}}, "seeds": [0]}
    validate_config(config)
    resolved = resolve_registry(config, load_registry(path))
    with pytest.raises(DdpmsegError, match=r"^ddpms\.lsun_horse\.flags: model flag 'learn_sigma' must be true or false, not 'false'$"):
        check_config(resolved)
