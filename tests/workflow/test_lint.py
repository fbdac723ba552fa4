"""The Snakefile and rule files pass `snakemake --lint` and `snakefmt --check`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SNAKEMAKE

pytestmark = pytest.mark.workflow


def test_lint_and_format_are_clean() -> None:
    lint = subprocess.run([SNAKEMAKE, "--lint", "-s", str(REPO / "Snakefile"), "--directory", str(REPO)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert lint.returncode == 0 and "Congratulations" in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    snakefmt = str(Path(sys.executable).parent / "snakefmt")
    fmt = subprocess.run([snakefmt, "--check", "."], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert fmt.returncode == 0, fmt.stderr
