"""A diffusers DDPM folder without torch: its files and digest, its description, its decoder blocks, where a
DDPM loads from."""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, make_diffusers_folder

from ddpmseg.base.errors import DdpmsegError
from ddpmseg.diffusion.diffusers_folder import (
    FOLDER_FILES,
    SCHEDULER_DEFAULTS,
    UNET_DEFAULTS,
    ddpm_digest,
    ddpm_location,
    decoder_blocks,
    diffusers_flags,
    file_digests,
    folder_digest,
    folder_files,
    read_flags,
)
from ddpmseg.diffusion.flags import check_feature_settings, decoder_block_count, model_flags

pytest.importorskip("diffusers", reason="the diffusers extra is not installed: pip install -e '.[diffusers]'")


def _edit_config(folder, name, **changes) -> None:
    path = folder / name
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_defaults_are_the_installed_libraries_defaults() -> None:
    from diffusers import DDPMScheduler, UNet2DModel

    unet = inspect.signature(UNet2DModel.__init__).parameters
    scheduler = inspect.signature(DDPMScheduler.__init__).parameters
    for name, value in UNET_DEFAULTS.items():
        default = unet[name].default
        assert (list(default) if isinstance(default, tuple) else default) == value, name
    assert {name: scheduler[name].default for name in SCHEDULER_DEFAULTS} == SCHEDULER_DEFAULTS


def test_the_description_of_a_pipeline_folder(diffusers_folder) -> None:
    flags = read_flags(diffusers_folder)
    assert flags["library"] == "diffusers" and flags["image_size"] == 32 and flags["diffusion_steps"] == 1000
    assert flags["unet"]["block_out_channels"] == [32, 64] and "_class_name" not in flags["unet"]
    assert flags["scheduler"]["beta_schedule"] == "linear"
    assert model_flags(flags) == flags  # a description passes through guided-diffusion's flag function unchanged
    assert model_flags(json.loads(json.dumps(flags))) == flags  # as a rule's params carry it


def test_decoder_blocks_follow_the_up_blocks_layer_by_layer(diffusers_folder) -> None:
    blocks = decoder_blocks(read_flags(diffusers_folder))
    assert [(b.module, b.channels, b.resolution) for b in blocks] == [
        ("up_blocks.0.attentions.0", 64, 16),  # resnet 0 then its attention
        ("up_blocks.0.upsamplers.0", 64, 32),  # the last layer of a level ends with its upsampler
        ("up_blocks.1.resnets.0", 32, 32),  # no attention in an UpBlock2D
        ("up_blocks.1.resnets.1", 32, 32),  # the last level has no upsampler
    ]
    assert [b.index for b in blocks] == [0, 1, 2, 3] and decoder_block_count(read_flags(diffusers_folder)) == 4


def test_decoder_blocks_of_a_deeper_unet_count_as_guided_diffusions_levels_times_layers() -> None:
    flags = diffusers_flags({"library": "diffusers", "scheduler": {}, "unet": {
        "sample_size": 64, "layers_per_block": 2, "block_out_channels": [32, 64, 96],
        "down_block_types": ["DownBlock2D"] * 3, "up_block_types": ["AttnUpBlock2D", "ResnetUpsampleBlock2D", "UpBlock2D"],
    }})
    blocks = decoder_blocks(flags)
    assert len(blocks) == 3 * (2 + 1)
    assert [b.resolution for b in blocks] == [16, 16, 32, 32, 32, 64, 64, 64, 64]
    assert [b.channels for b in blocks] == [96] * 3 + [64] * 3 + [32] * 3
    assert blocks[2].module == "up_blocks.0.upsamplers.0" and blocks[5].module == "up_blocks.1.upsamplers.0"


def test_steps_and_blocks_are_checked_against_the_folder(diffusers_folder) -> None:
    flags = read_flags(diffusers_folder)
    check_feature_settings(flags, [0, 999], [0, 3])
    with pytest.raises(DdpmsegError, match=r"features.blocks: block 4 is beyond the model's 4 decoder blocks"):
        check_feature_settings(flags, [50], [4])
    with pytest.raises(DdpmsegError, match=r"features.steps: step 1000 is outside \[0, diffusion_steps=1000\)"):
        check_feature_settings(flags, [1000], [0])


@pytest.mark.parametrize("layout", ["subfolders", "flat"])
def test_a_folder_of_unet_and_scheduler_alone_or_flat_reads_the_same(tmp_path, diffusers_folder, layout) -> None:
    plain = make_diffusers_folder(tmp_path / "plain", layout=layout)
    assert not (plain / "model_index.json").exists()
    assert (plain / "unet").is_dir() == (layout == "subfolders")
    files = folder_files(plain)
    assert [path.relative_to(plain).as_posix() for path in files] == (
        list(FOLDER_FILES) if layout == "subfolders"
        else ["config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json"]
    )
    assert ddpm_location([str(path) for path in files]) == plain  # a rule's input: the folder's files
    assert read_flags(plain) == read_flags(diffusers_folder)
    assert list(file_digests(plain)) == list(FOLDER_FILES)  # the same names whichever the layout
    assert folder_digest(plain) == folder_digest(diffusers_folder)  # same files, same seed: same digest


def test_the_digest_covers_the_three_files_and_not_their_place(tmp_path, diffusers_folder) -> None:
    moved = tmp_path / "elsewhere" / "renamed"
    shutil.copytree(diffusers_folder, moved)
    digest = folder_digest(diffusers_folder)
    assert folder_digest(moved) == digest == ddpm_digest(moved)
    files = file_digests(moved)
    assert list(files) == list(FOLDER_FILES)
    expected = "".join(f"{name}\t{hashlib.sha256((moved / name).read_bytes()).hexdigest()}\n" for name in sorted(FOLDER_FILES))
    assert digest == hashlib.sha256(expected.encode()).hexdigest()
    (moved / "model_index.json").write_text("{}")  # not read, not counted
    (moved / "README.md").write_text("notes")
    assert folder_digest(moved) == digest
    _edit_config(moved, "scheduler/scheduler_config.json", beta_end=0.03)
    assert folder_digest(moved) != digest


def test_pickled_weights_missing_files_and_shards_are_refused(tmp_path, diffusers_folder) -> None:
    folder = tmp_path / "pickled"
    shutil.copytree(diffusers_folder, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(folder / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(DdpmsegError, match=r"diffusion_pytorch_model.safetensors: missing; the folder has only "
                                           r"diffusion_pytorch_model.bin \(a pickle\), and ddpmseg loads safetensors only"):
        folder_files(folder)
    (folder / "unet" / "diffusion_pytorch_model.safetensors.index.json").write_text("{}")
    with pytest.raises(DdpmsegError, match="sharded weights are not supported"):
        folder_files(folder)
    no_scheduler = tmp_path / "no-scheduler"
    shutil.copytree(diffusers_folder, no_scheduler)
    shutil.rmtree(no_scheduler / "scheduler")
    with pytest.raises(DdpmsegError, match="scheduler_config.json: missing"):
        folder_files(no_scheduler)
    with pytest.raises(DdpmsegError, match="not a folder"):
        read_flags(tmp_path / "absent")


@pytest.mark.parametrize(
    ("file", "changes", "message"),
    [
        ("unet/config.json", {"up_block_types": ["AttnSkipUpBlock2D", "UpBlock2D"]}, "up block type AttnSkipUpBlock2D is not supported"),
        ("unet/config.json", {"sample_size": [32, 48]}, r"sample_size \[32, 48\]: ddpmseg needs a square sample"),
        ("unet/config.json", {"in_channels": 1}, "in_channels 1: ddpmseg runs the UNet on RGB images"),
        ("unet/config.json", {"num_class_embeds": 10}, "the UNet is class-conditional"),
        ("unet/config.json", {"_class_name": "UNet2DConditionModel"}, "_class_name is 'UNet2DConditionModel'; ddpmseg reads a UNet2DModel"),
        ("scheduler/scheduler_config.json", {"_class_name": "PNDMScheduler"}, "ddpmseg reads a DDPMScheduler"),
    ],
)
def test_unets_it_cannot_hook_are_one_line(tmp_path, diffusers_folder, file, changes, message) -> None:
    folder = tmp_path / "edited"
    shutil.copytree(diffusers_folder, folder)
    _edit_config(folder, file, **changes)
    with pytest.raises(DdpmsegError, match=message) as error:
        read_flags(folder)
    assert "\n" not in str(error.value) and str(folder) in str(error.value)


def test_where_a_ddpm_loads_from(diffusers_folder) -> None:
    files = [str(path) for path in folder_files(diffusers_folder)]
    assert ddpm_location(files) == diffusers_folder
    assert ddpm_location(["resources/checkpoints/x.pt"]).as_posix() == "resources/checkpoints/x.pt"
    assert ddpm_location("a/b.pt").as_posix() == "a/b.pt"
    with pytest.raises(DdpmsegError, match="neither one checkpoint nor a diffusers folder's files"):
        ddpm_location(["a.pt", "b.pt"])


def test_reading_a_folder_imports_neither_torch_nor_diffusers(diffusers_folder) -> None:
    code = (
        "import sys; from ddpmseg.diffusion.diffusers_folder import read_flags, decoder_blocks, folder_digest; "
        f"f = read_flags({str(diffusers_folder)!r}); decoder_blocks(f); folder_digest({str(diffusers_folder)!r}); "
        "print('torch' in sys.modules, 'diffusers' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.split() == ["False", "False"]


# unet/config.json of google/ddpm-cat-256 (the original DDPM paper's LSUN architecture), its keys that count here
HUB_DDPM_256 = {
    "sample_size": 256, "in_channels": 3, "out_channels": 3, "layers_per_block": 2,
    "block_out_channels": [128, 128, 256, 256, 512, 512],
    "down_block_types": ["DownBlock2D"] * 4 + ["AttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"],
}


def test_the_hub_ddpms_have_the_papers_block_resolutions_as_docs_diffusers_md_says() -> None:
    flags = diffusers_flags({"library": "diffusers", "unet": HUB_DDPM_256, "scheduler": {"num_train_timesteps": 1000}})
    blocks = decoder_blocks(flags)
    assert len(blocks) == 18 == decoder_block_count(flags)  # as the paper's guided-diffusion UNet (docs/method.md §2)
    paper = [blocks[k] for k in (5, 6, 7, 8, 12)]
    assert [b.resolution for b in paper] == [32, 32, 32, 64, 128]
    assert [b.channels for b in paper] == [512, 256, 256, 256, 128] and sum(b.channels for b in paper) == 1408
    assert [b.module for b in blocks[3:6]] == ["up_blocks.1.attentions.0", "up_blocks.1.attentions.1",
                                               "up_blocks.1.upsamplers.0"]
    assert blocks[17].module == "up_blocks.5.resnets.2" and blocks[17].resolution == 256
