"""The ddpmseg command: export a finished run, predict with the bundle, exit codes and last-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, checkpoint_of, export, finished_tiny_run, new_images, resolved_tiny_config, tiny_feature_width
from PIL import Image

from ddpmseg.cli import main
from ddpmseg.base.files import sha256_file


def last_line(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]


def test_export_then_predict(workflow_dir, tmp_path, capsys) -> None:
    assert export(workflow_dir, tmp_path / "bundle") == 0
    assert "tiny/final/seed1, 2 members, test mIoU 61.25 %" in capsys.readouterr().out
    images = new_images(tmp_path / "new")
    assert main(["predict", str(tmp_path / "bundle"), str(images), "--out", str(tmp_path / "out"), "--no-tta",
                 "--batch-size", "2", "--ddpm", str(checkpoint_of(workflow_dir))]) == 0
    assert "2 labelled, 0 already labelled (skipped), 0 failed" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == ["img0.png", "img1.png"]
    assert (tmp_path / "out" / "predictions.csv").is_file()


def test_failed_images_are_counted_last_and_exit_non_zero(workflow_dir, tmp_path, capsys) -> None:
    assert export(workflow_dir, tmp_path / "bundle.tar", "--tar", "--include-ddpm") == 0
    images = new_images(tmp_path / "new")
    (images / "broken.png").write_bytes(b"not a png")
    status = main(["predict", str(tmp_path / "bundle.tar"), str(images), "--out", str(tmp_path / "out"), "--no-tta"])
    captured = capsys.readouterr()
    assert status == 1
    assert "2 labelled" in captured.out
    failed = [line for line in captured.err.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and failed[0].startswith(f"failed: {images / 'broken.png'}: unreadable image")
    assert failed[0].count("broken.png") == 1  # the path once
    assert last_line(captured.err) == "ddpmseg error: 1 of 3 images could not be labelled (listed above)"
    (images / "broken.png").unlink()  # a rerun labels nothing again
    assert main(["predict", str(tmp_path / "bundle.tar"), str(images), "--out", str(tmp_path / "out"), "--no-tta"]) == 0
    assert "0 labelled, 2 already labelled (skipped)" in capsys.readouterr().out


def test_a_non_square_image_needs_a_policy_which_the_option_gives(workflow_dir, tmp_path, capsys) -> None:
    assert export(workflow_dir, tmp_path / "bundle", "--include-ddpm") == 0
    images = tmp_path / "photos"
    images.mkdir()
    Image.fromarray(np.zeros((370, 371, 3), np.uint8)).save(images / "p.png")
    assert main(["predict", str(tmp_path / "bundle"), str(images), "--out", str(tmp_path / "out"), "--no-tta"]) == 1
    failed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("failed: ")]
    assert failed == [f"failed: {images / 'p.png'}: image is 371x370, not square; choose --non-square (resize or center_crop)"]
    assert main(["predict", str(tmp_path / "bundle"), str(images), "--out", str(tmp_path / "out2"), "--no-tta",
                 "--non-square", "center_crop"]) == 0
    labels = np.asarray(Image.open(tmp_path / "out2" / "labels" / "p.png"))
    assert labels.shape == (370, 371) and (labels[:, -1] == 255).all()  # the column a center crop cut off


def test_export_of_the_best_seed_says_which(workflow_dir, tmp_path, capsys) -> None:
    config = resolved_tiny_config()
    finished_tiny_run(workflow_dir, workflow_dir / "resources/checkpoints/tiny_ddpm.pt", config, seed=0,
                      in_features=tiny_feature_width(config, workflow_dir / "resources/checkpoints/tiny_ddpm.pt"))
    (workflow_dir / "results/scores/tiny/final/seed0/summary.csv").write_text("miou,miou_plain,images\n70.5,60,3\n")
    assert main(["export", "--dataset", "tiny", "--variant", "final", "--seed", "best", "--workdir", str(workflow_dir),
                 "--out", str(tmp_path / "bundle")]) == 0
    out = capsys.readouterr().out
    assert "--seed best: seed 0, the highest test mIoU of tiny/final (70.50 %)" in out and "tiny/final/seed0" in out


def test_an_output_that_cannot_be_written_is_one_line(workflow_dir, tmp_path, capsys) -> None:
    assert export(workflow_dir, tmp_path / "bundle", "--include-ddpm") == 0
    (tmp_path / "a-file").write_text("not a folder")
    assert main(["predict", str(tmp_path / "bundle"), str(new_images(tmp_path / "new")), "--out",
                 str(tmp_path / "a-file" / "out"), "--no-tta"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and last_line(err).startswith(f"ddpmseg error: {tmp_path / 'a-file'}")


def test_every_option_says_what_it_is_for() -> None:
    from ddpmseg.cli import parser

    commands = parser()._subparsers._group_actions[0].choices
    for name, command in commands.items():
        for action in command._actions:
            assert action.help, f"{name} {action.dest} has no help text"


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
    assert export(workflow_dir, tmp_path / "bundle", "--include-ddpm") == 0
    images = new_images(tmp_path / "new", count=3)
    assert main(["suggest", str(tmp_path / "bundle"), str(images), "--top", "2", "--out", str(tmp_path / "next")]) == 0
    out = capsys.readouterr().out
    assert "ranking of 3 images and the contact sheet of the 2 most uncertain" in out
    assert (tmp_path / "next" / "ranking.csv").is_file() and (tmp_path / "next" / "contact_sheet.png").is_file()


def test_pip_install_gives_the_ddpmseg_command() -> None:
    text = (REPO / "pyproject.toml").read_text()  # tomllib needs Python 3.11; the project supports 3.10
    assert '[project.scripts]\nddpmseg = "ddpmseg.cli:main"\n' in text
