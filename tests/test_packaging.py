"""The plain install (pip install -e .) and the conda env hold what the README's commands need."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def requirement_names(requirements: list) -> set[str]:
    return {re.split(r"[<>=!~ \[]", r, maxsplit=1)[0].lower() for r in requirements if isinstance(r, str)}


def pyproject_dependencies() -> list[str]:
    """The strings of [project] dependencies (read without tomllib, which Python 3.10 lacks)."""
    block = re.search(r"^dependencies = \[(.*?)^\]", (REPO / "pyproject.toml").read_text(), re.S | re.M)
    return re.findall(r'^\s*"([^"]+)"', block.group(1), re.M)


def test_report_dependency_is_in_the_plain_install_and_the_conda_env() -> None:
    # snakemake --report stops with "Python package pygments must be installed to create reports"
    env = yaml.safe_load((REPO / "envs" / "ddpmseg.yaml").read_text())["dependencies"]
    assert "pygments" in requirement_names(pyproject_dependencies())
    assert "pygments" in requirement_names(env)


def optional_dependencies(extra: str) -> list[str]:
    """The strings of one [project.optional-dependencies] extra (one line each)."""
    line = re.search(rf"^{extra} = \[(.*)\]$", (REPO / "pyproject.toml").read_text(), re.M)
    return re.findall(r'"([^"]+)"', line.group(1))


def test_the_test_extra_and_the_conda_env_hold_the_diffusers_extra() -> None:
    # CI installs the test extra only, and its diffusers tests must run there, not skip; a diffusers DDPM's
    # jobs under --sdm conda need it too
    diffusers = optional_dependencies("diffusers")
    assert requirement_names(diffusers) == {"diffusers", "safetensors"}
    assert set(diffusers) <= set(optional_dependencies("test"))
    env = yaml.safe_load((REPO / "envs" / "ddpmseg.yaml").read_text())["dependencies"]
    pip = next(entry["pip"] for entry in env if isinstance(entry, dict))
    assert set(diffusers) <= set(pip)


def test_ci_runs_the_demo_and_its_report_before_installing_the_test_extras() -> None:
    script = (REPO / ".ci" / "run").read_text()
    report = script.index("\nsnakemake --report results/report.html")  # the command, not the echo
    assert script.index("pip install --quiet -e .\n") < report < script.index("pip install --quiet -e '.[test]'")


def test_no_test_file_imports_another() -> None:
    # Shared helpers live in tests/conftest.py; a helper imported from a test file runs that file's
    # module code twice and breaks when the file moves.
    test_files = sorted((REPO / "tests").rglob("test_*.py"))
    imports = [f"{path.relative_to(REPO)}: {line.strip()}" for path in test_files for line in path.read_text().splitlines()
               if re.match(r"\s*(from|import) test_\w+", line)]
    assert not imports, imports
