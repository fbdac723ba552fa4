"""The ddpmseg command: export a finished run, predict with the bundle, exit codes and last-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import (
    REPO,
    TINY_CONFIG,
    finished_tiny_run,
    resolved_tiny_config,
    tiny_feature_width,
)
from PIL import Image

from ddpmseg.cli import main
from ddpmseg.base.files import sha256_file


def last_line(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]


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
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)).save(folder / f"img{index}.png")
    return folder


def export(workdir, out, *extra: str) -> int:
    return main(["export", "--dataset", "tiny", "--variant", "final", "--seed", "1", "--workdir", str(workdir),
                 "--out", str(out), *extra])


def test_export_then_predict(workflow_dir, tmp_path, capsys) -> None:
    assert export(workflow_dir, tmp_path / "bundle") == 0
    assert "tiny/final/seed1, 2 members, test mIoU 61.25 %" in capsys.readouterr().out
    images = new_images(tmp_path / "new")
    assert main(["predict", str(tmp_path / "bundle"), str(images), "--out", str(tmp_path / "out"), "--no-tta",
                 "--batch-size", "2"]) == 0
    assert "2 labelled, 0 already labelled (skipped), 0 failed" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == ["img0.png", "img1.png"]
    assert (tmp_path / "out" / "predictions.csv").is_file()


def test_failed_images_are_counted_last_and_exit_non_zero(workflow_dir, tmp_path, capsys) -> None:
    assert export(workflow_dir, tmp_path / "bundle.tar", "--tar") == 0
    images = new_images(tmp_path / "new")
    (images / "broken.png").write_bytes(b"not a png")
    status = main(["predict", str(tmp_path / "bundle.tar"), str(images), "--out", str(tmp_path / "out"), "--no-tta"])
    captured = capsys.readouterr()
    assert status == 1
    assert "2 labelled" in captured.out and "broken.png" in captured.err
    assert last_line(captured.err) == "ddpmseg error: 1 of 3 images could not be labelled (listed above)"
    (images / "broken.png").unlink()  # a rerun labels nothing again
    assert main(["predict", str(tmp_path / "bundle.tar"), str(images), "--out", str(tmp_path / "out"), "--no-tta"]) == 0
    assert "0 labelled, 2 already labelled (skipped)" in capsys.readouterr().out


def test_a_missing_run_says_which_target_to_build(workflow_dir, tmp_path, capsys) -> None:
    (workflow_dir / "results/ddpm/tiny_ddpm/check.json").unlink()
    assert export(workflow_dir, tmp_path / "bundle") == 1
    line = last_line(capsys.readouterr().err)
    assert line.startswith("ddpmseg error: ") and line.endswith(
        "check.json: missing; build the run first: snakemake results/scores/tiny/final/seed1/summary.csv"
    )
    assert not (tmp_path / "bundle").exists()


def test_a_wrong_ddpm_is_one_last_line_with_both_digests(workflow_dir, tmp_path, tiny_checkpoint, capsys) -> None:
    assert export(workflow_dir, tmp_path / "bundle") == 0
    other = tmp_path / "other.pt"
    torch.save({k: v * 2 for k, v in torch.load(tiny_checkpoint, weights_only=True).items()}, other)
    images = new_images(tmp_path / "new")
    assert main(["predict", str(tmp_path / "bundle"), str(images), "--out", str(tmp_path / "out"),
                 "--ddpm", str(other)]) == 1
    line = last_line(capsys.readouterr().err)
    expected = sha256_file(workflow_dir / "resources/checkpoints/tiny_ddpm.pt")
    assert line == (f"ddpmseg error: {other}: DDPM checkpoint sha256 {sha256_file(other)} differs from the "
                    f"bundle's {expected}")
    assert not (tmp_path / "out").exists()


def test_python_m_ddpmseg_runs_the_command(tmp_path) -> None:
    help_run = subprocess.run([sys.executable, "-m", "ddpmseg", "--help"], capture_output=True, text=True, cwd=REPO)
    assert help_run.returncode == 0 and all(c in help_run.stdout for c in ("export", "predict", "suggest"))
    missing = subprocess.run(
        [sys.executable, "-m", "ddpmseg", "predict", str(tmp_path / "nope"), str(tmp_path), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert missing.returncode == 1
    assert last_line(missing.stderr) == f"ddpmseg error: {tmp_path / 'nope'}: no such bundle"


def test_usage_errors_exit_2(capsys) -> None:
    assert main([]) == 2
    with pytest.raises(SystemExit) as stop:
        main(["predict", "bundle", "img", "--out", "o", "--batch-size", "0"])
    assert stop.value.code == 2
    assert "must be at least 1, not 0" in capsys.readouterr().err


def test_suggest_ranks_a_folder(workflow_dir, tmp_path, capsys) -> None:
    assert export(workflow_dir, tmp_path / "bundle") == 0
    images = new_images(tmp_path / "new", count=3)
    assert main(["suggest", str(tmp_path / "bundle"), str(images), "--top", "2", "--out", str(tmp_path / "next")]) == 0
    out = capsys.readouterr().out
    assert "ranking of 3 images and the contact sheet of the 2 most uncertain" in out
    assert (tmp_path / "next" / "ranking.csv").is_file() and (tmp_path / "next" / "contact_sheet.png").is_file()


def test_pip_install_gives_the_ddpmseg_command() -> None:
    text = (REPO / "pyproject.toml").read_text()  # tomllib needs Python 3.11; the project supports 3.10
    assert '[project.scripts]\nddpmseg = "ddpmseg.cli:main"\n' in text
