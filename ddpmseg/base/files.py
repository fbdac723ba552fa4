"""Atomic writes: every output appears complete under its final name, or not at all.

Temporaries come from ``mkstemp``/``mkdtemp``, which make them readable by their owner only; outputs
get the modes the umask gives ordinary files and folders before they take their final names.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def remove_stale_temporaries(path: Path) -> None:
    """Remove temporaries of ``path`` that a killed process left behind (``.<name>.*.tmp``).

    Only one job writes a given output at a time (Snakemake's rule), so any such leftover is dead.
    """
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back: there is no plain getter)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def give_umask_modes(path: Path) -> None:
    """Give ``path`` and, for a folder, everything inside it the modes a new file (0666) or folder (0777)
    gets under the umask; links are left alone."""
    umask = current_umask()
    file_mode, folder_mode = 0o666 & ~umask, 0o777 & ~umask
    if path.is_symlink():
        return
    if not path.is_dir():
        os.chmod(path, file_mode)
        return
    os.chmod(path, folder_mode)
    for root, folders, files in os.walk(path):
        for name in folders:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), folder_mode)
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), file_mode)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        give_umask_modes(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``path``; it replaces ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        give_umask_modes(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def finish_part(part: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give a complete file kept beside ``path`` under a lasting temporary name (a download's
    ``.part``, which outlives a killed process so that the next one resumes it) its final name,
    atomically. Unlike :func:`atomic_path`'s temporaries, it is created with the umask's mode."""
    os.replace(part, path)


def save_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def load_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array)


def save_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save an (H, W, 3) uint8 array as PNG."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def save_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def write_csv(path: str | Path, table: pd.DataFrame) -> None:
    """A table as CSV, atomically (floats to 6 significant digits); :func:`read_table` reads it back."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


# Columns that hold names: always strings ("0001" keeps its zeros).
NAME_COLUMNS = ("image", "class_name", "dataset", "variant")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV written by :func:`write_csv`: name columns as strings, and only empty cells (how
    NaN is written) as missing, so that an image named NA, null, None or nan keeps its name."""
    import pandas as pd

    return pd.read_csv(path, dtype={c: str for c in NAME_COLUMNS}, keep_default_na=False, na_values=[""])
