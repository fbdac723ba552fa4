"""The GPU check script (benchmarks/gpu_check.sh): its CPU quick mode prints every section with
numbers, and without a GPU its full mode stops with one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
NUMBER = r"\d+(\.\d+)?(e[-+]\d+)?"
# every row of the Markdown block: (check, what its result must look like)
EXPECTED_ROWS = [
    ("fp16 vs CPU fp32 features, relative error", rf"mean {NUMBER}, max {NUMBER} \(step \d+, block \d+\) over 15 layers"),
    ("extraction, batch 1", rf"{NUMBER} images/s"),
    ("extraction, batch 2", rf"{NUMBER} images/s"),
    ("extraction, batch 4", rf"{NUMBER} images/s"),
    ("member training, 1 member alone", rf"{NUMBER} member-steps/s"),
    ("member training, 10 members fused", rf"{NUMBER} member-steps/s"),
    ("member training, fused / alone", rf"{NUMBER}×"),
    ("prediction, per pixel", rf"{NUMBER} s per image"),
    ("prediction, native", rf"{NUMBER} s per image"),
    ("prediction, per pixel / native", rf"{NUMBER}× \(10 members, \d+ features, \d+ px; \d+ of \d+ labels differ\)"),
    ("DDPM training iterations/s", rf"({NUMBER} iterations/s \(batch \d+, \d+ iterations\)|not available .*)"),
]


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    environment.pop("OUT", None)
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=environment, timeout=300)


def markdown_rows(stdout: str) -> dict[str, str]:
    block = re.search(r"<!-- gpu_check -->\n(.*?)\n<!-- /gpu_check -->", stdout, re.S)
    assert block, f"no Markdown block in:\n{stdout}"
    rows = [line.strip("|").split(" | ") for line in block.group(1).splitlines() if line.startswith("| ")]
    return {check.strip(): result.strip() for check, result in rows[1:]}  # the first row is the header


def test_quick_mode_prints_every_section_with_numbers() -> None:
    done = run_script("--quick")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = markdown_rows(done.stdout)
    assert list(rows) == [check for check, _ in EXPECTED_ROWS]
    for check, pattern in EXPECTED_ROWS:
        assert re.fullmatch(pattern, rows[check]), f"{check}: {rows[check]!r} is not {pattern!r}"
    for section in "abcde":
        assert re.search(rf"^\({section}\) ", done.stdout, re.M), f"section ({section}) not announced"
    error = float(re.search(rf"max ({NUMBER})", rows["fp16 vs CPU fp32 features, relative error"]).group(1))
    assert 0 < error < 1e-2  # float16 rounds (not 0), but the features are the same (not garbage)


def test_without_a_gpu_the_full_check_is_one_line_and_exit_status_1() -> None:
    done = run_script(env={"CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "gpu_check: no GPU (torch.cuda.is_available() is false); run with --quick for the CPU check"
    ]
