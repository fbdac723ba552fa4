"""A config's diffusers DDPM at parse time: its folder read as its flags, steps and blocks checked against the
folder's UNet in one line, the missing extra named, its blocks listed (python -m ddpmseg.blocks). The folders
here are written by hand (the two configs and a placeholder for the weights): parsing reads no weights and
needs neither torch nor diffusers, so these tests run without the extra."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY_CONFIG, TINY_UNET2D

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.blocks import main as blocks_main
from ddpmseg.config.ddpms import ddpm_inputs
from ddpmseg.config.load import load_config

EXTRA_LINE = "ddpms.hub.source: a diffusers DDPM needs the diffusers extra; install it: pip install -e '.[diffusers]'"


def _hand_made_folder(folder: Path) -> Path:
    """The two configs of a tiny DDPMPipeline folder as diffusers writes them, and a weights file that is not
    read at parse time."""
    (folder / "unet").mkdir(parents=True)
    (folder / "scheduler").mkdir()
    unet = {"_class_name": "UNet2DModel", "_diffusers_version": "0.42.1", **TINY_UNET2D}
    (folder / "unet" / "config.json").write_text(json.dumps(unet))
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not read at parse time")
    scheduler = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_schedule": "linear"}
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler))
    return folder


def _config_file(workdir: Path, **features) -> Path:
    """The tiny config with its dataset on a diffusers DDPM 'hub' at the relative path tiny-ddpm."""
    _hand_made_folder(workdir / "tiny-ddpm")
    config = copy.deepcopy(TINY_CONFIG)
    config["datasets"]["tiny"]["ddpm"] = "hub"
    config["ddpms"] = {"hub": {"source": "diffusers", "path": "tiny-ddpm"}}
    config["features"].update(features)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture()
def with_extra(monkeypatch):
    """As if the diffusers extra were installed (whether or not it is here): parsing only looks for it."""
    monkeypatch.setattr("ddpmseg.diffusion.diffusers_folder.diffusers_installed", lambda: True)


def test_the_folder_is_the_ddpms_flags_and_its_files_its_inputs(tmp_path, with_extra, monkeypatch) -> None:
    config = load_config(_config_file(tmp_path), workdir=tmp_path)
    monkeypatch.chdir(tmp_path)  # the rules' inputs are relative to the workflow's working directory
    flags = config["ddpms"]["hub"]["flags"]
    assert flags["library"] == "diffusers" and flags["image_size"] == 32 and flags["diffusion_steps"] == 1000
    assert flags["unet"]["up_block_types"] == ["AttnUpBlock2D", "UpBlock2D"] and "_class_name" not in flags["unet"]
    assert ddpm_inputs(config, "hub") == [
        "tiny-ddpm/unet/config.json", "tiny-ddpm/unet/diffusion_pytorch_model.safetensors",
        "tiny-ddpm/scheduler/scheduler_config.json",
    ]


@pytest.mark.parametrize(
    ("features", "line"),
    [
        ({"blocks": [1, 4]}, "features.blocks: block 4 is beyond the model's 4 decoder blocks (0..3), of DDPM hub "
                             "(python -m ddpmseg.blocks CONFIG hub lists its blocks)"),
        ({"steps": [50, 1000]}, "features.steps: step 1000 is outside [0, diffusion_steps=1000), of DDPM hub "
                                "(python -m ddpmseg.blocks CONFIG hub lists its blocks)"),
    ],
)
def test_steps_and_blocks_beyond_the_folders_unet_are_one_line(tmp_path, with_extra, features, line) -> None:
    with pytest.raises(DdpmsegError) as error:
        load_config(_config_file(tmp_path, **features), workdir=tmp_path)
    assert str(error.value) == line


def test_flags_of_its_own_and_a_fine_tuning_from_it_are_refused(tmp_path, with_extra) -> None:
    path = _config_file(tmp_path)
    config = yaml.safe_load(path.read_text())
    config["ddpms"]["hub"]["flags"] = {"image_size": 32}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(DdpmsegError, match=r"ddpms.hub.flags: a diffusers DDPM's model is described by its folder's "
                                           r"unet/config.json; remove flags"):
        load_config(path, workdir=tmp_path)
    del config["ddpms"]["hub"]["flags"]
    config["ddpms"]["mine"] = {"source": "train", "images": ["resources/datasets/tiny/unlabelled"], "init": "hub",
                               "training": TINY_CONFIG["ddpms"]["tiny_ddpm"]["training"]}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(DdpmsegError, match="ddpms.mine.init: 'hub' is a diffusers DDPM; the workflow trains and "
                                           "fine-tunes guided-diffusion UNets only"):
        load_config(path, workdir=tmp_path)


def test_a_missing_folder_is_one_line_naming_the_setting(tmp_path, with_extra) -> None:
    path = _config_file(tmp_path)
    with pytest.raises(DdpmsegError, match=r"^ddpms.hub.path: .*/elsewhere/tiny-ddpm: not a folder \(a diffusers DDPMPipeline folder"):
        load_config(path, workdir=tmp_path / "elsewhere")


def test_without_the_extra_the_config_gets_one_line_naming_it(tmp_path, monkeypatch) -> None:
    # an import of diffusers fails as it does where the extra is not installed (sys.modules[name] = None
    # makes both importlib's look-up and the import statement fail)
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(ImportError):
        import diffusers  # noqa: F401
    with pytest.raises(DdpmsegError) as error:
        load_config(_config_file(tmp_path), workdir=tmp_path)
    assert str(error.value) == EXTRA_LINE


def test_the_blocks_of_a_diffusers_and_a_guided_diffusion_ddpm_are_listed(tmp_path, capsys) -> None:
    path = _config_file(tmp_path, blocks=[1, 2])
    assert blocks_main([str(path), "hub", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "DDPM hub (source diffusers, 32 px images): 4 decoder blocks"
    assert out[3:] == [
        "| 0 | `up_blocks.0.attentions.0` | 64 | 16 |  |",
        "| 1 | `up_blocks.0.upsamplers.0` | 64 | 32 | yes |",
        "| 2 | `up_blocks.1.resnets.0` | 32 | 32 | yes |",
        "| 3 | `up_blocks.1.resnets.1` | 32 | 32 |  |",
    ]
    # listed even when features.blocks does not fit the model: that is when a user needs the list
    beyond = _config_file(tmp_path / "beyond", blocks=[9])
    assert blocks_main([str(beyond), "hub", "--workdir", str(tmp_path / "beyond")]) == 0
    assert len([line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "`" in line]) == 4
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(TINY_CONFIG, sort_keys=False))
    assert blocks_main([str(tiny), "tiny_ddpm"]) == 0  # guided-diffusion: output_blocks from a meta pass
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "DDPM tiny_ddpm (source train, 32 px images): 4 decoder blocks"
    assert out[3] == "| 0 | `output_blocks.0` | 64 | 16 |  |" and out[5] == "| 2 | `output_blocks.2` | 32 | 32 | yes |"
    assert blocks_main([str(path), "nope", "--workdir", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "ddpmseg error: DDPM 'nope' is not a key of ddpms (hub)\n"
