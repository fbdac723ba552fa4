"""Safe, atomic extraction of ``.tar`` (plain, gzip, bzip2 or xz) and ``.zip`` archives.

Only regular files and directories are extracted. A member with an absolute path, a ``..`` component,
a symbolic or hard link, or a device file or fifo makes the whole extraction fail, as does a truncated
or corrupt archive (for gzip, the CRC and length in its trailer are checked too). The files are written
by this module, never by ``tarfile``'s own extraction, so the behaviour is the same on every Python
>= 3.10; where ``tarfile.data_filter`` exists (3.12, 3.11.4+, 3.10.12+) it is applied to every tar
member as a second check.

Extraction goes to a temporary folder beside ``target`` that replaces ``target`` when complete; after
a failure ``target`` is left as it was (not created when it did not exist). File permissions, owners
and modification times of the archive are not restored.

:func:`check_archive` makes the same checks and reads every member to its end without writing
anything: the content check of a downloaded archive before its digest is trusted.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import IO

from ..base.errors import DdpmsegError
from ..base.files import atomic_directory

CHUNK_SIZE = 1 << 20
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")

_CHECK_ROOT = Path("/nonexistent-ddpmseg-check")  # where data_filter resolves members when only checking
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError)


def extract_archive(
    archive: str | os.PathLike, target: str | os.PathLike, members_prefix: str | None = None
) -> list[str]:
    """Extract ``archive`` into the folder ``target`` (replacing it); return the extracted files' paths.

    With ``members_prefix`` (e.g. ``"horse_21/"``) only members under that folder are extracted, and
    relative to it: ``horse_21/real/train/x.png`` becomes ``<target>/real/train/x.png``. Leading ``./``
    of member names is ignored. The returned paths are POSIX paths relative to ``target``, in archive
    order. Raises :class:`DdpmsegError` naming the archive (and the member) for unsafe members, a
    corrupt or truncated archive, or when nothing is selected.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise DdpmsegError(f"{archive}: no such archive")
    prefix = _normalise_prefix(archive, members_prefix)
    with atomic_directory(target) as tmp:
        extract = _extract_zip if _is_zip(archive) else _extract_tar
        files = extract(archive, tmp, prefix)
        if not files:
            under = f" under '{prefix}/'" if prefix else ""
            raise DdpmsegError(f"{archive}: no files{under} in the archive")
        os.chmod(tmp, 0o755)  # mkdtemp made it 0o700
    return files


def check_archive(archive: str | os.PathLike) -> list[str]:
    """Read ``archive`` as :func:`extract_archive` would, writing nothing; return its files' member names.

    Raises :class:`DdpmsegError` naming the archive (and the member) for the same unsafe members, a
    corrupt or truncated archive, or an archive without files.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise DdpmsegError(f"{archive}: no such archive")
    read = _extract_zip if _is_zip(archive) else _extract_tar
    files = read(archive, None, "")
    if not files:
        raise DdpmsegError(f"{archive}: no files in the archive")
    return files


def _is_zip(archive: Path) -> bool:
    name = archive.name.lower()
    if name.endswith(".zip"):
        return True
    if name.endswith(TAR_SUFFIXES):
        return False
    return zipfile.is_zipfile(archive)


def _normalise_prefix(archive: Path, members_prefix: str | None) -> str:
    if members_prefix is None:
        return ""
    parts = _safe_parts(archive, members_prefix)
    if not parts:
        raise DdpmsegError(f"{archive}: members_prefix '{members_prefix}' names no folder")
    return "/".join(parts)


def _safe_parts(archive: Path, name: str) -> list[str]:
    """Components of a member name without ``.`` and empty ones; refuses absolute paths and ``..``."""
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        raise DdpmsegError(f"{archive}: member '{name}' has an absolute path; refused")
    parts = [p for p in re.split(r"[/\\]", name) if p not in ("", ".")]
    if ".." in parts:
        raise DdpmsegError(f"{archive}: member '{name}' has a '..' component; refused")
    return parts


def _relative(parts: list[str], prefix: str) -> str | None:
    """Path of a member relative to the prefix; None when the member is not under it (or is it)."""
    path = "/".join(parts)
    if not prefix:
        return path or None
    if not path.startswith(prefix + "/"):
        return None
    return path[len(prefix) + 1 :]


def _make_dir(archive: Path, name: str, destination: Path | None) -> None:
    if destination is None:  # checking only
        return
    try:
        destination.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DdpmsegError(f"{archive}: cannot create folder of member '{name}' ({error.strerror or error})") from None


def _write_file(archive: Path, name: str, source: IO[bytes], destination: Path | None, size: int) -> None:
    """Copy a member's data to ``destination``, or only read it through when that is None (checking).

    Read errors propagate (corrupt archive); write errors and short members are named here.
    """
    written = _drain(source) if destination is None else _copy_member(archive, name, source, destination)
    if written != size:
        raise DdpmsegError(f"{archive}: member '{name}' is truncated ({written} of {size} bytes)")


def _drain(source: IO[bytes]) -> int:
    read = 0
    while chunk := source.read(CHUNK_SIZE):
        read += len(chunk)
    return read


def _copy_member(archive: Path, name: str, source: IO[bytes], destination: Path) -> int:
    _make_dir(archive, name, destination.parent)
    try:
        out = open(destination, "wb")  # noqa: SIM115 - closed below
    except OSError as error:
        raise DdpmsegError(f"{archive}: cannot write member '{name}' ({error.strerror or error})") from None
    written = 0
    with out:
        while chunk := source.read(CHUNK_SIZE):
            try:
                out.write(chunk)
            except OSError as error:
                raise DdpmsegError(f"{archive}: cannot write member '{name}' ({error.strerror or error})") from None
            written += len(chunk)
    return written


def _extract_tar(archive: Path, tmp: Path | None, prefix: str) -> list[str]:
    """Extract the tar members under ``prefix`` into ``tmp``; with ``tmp`` None, check and read them only."""
    files: list[str] = []
    data_filter = getattr(tarfile, "data_filter", None)
    try:
        # stream mode: one pass; every member is checked before anything of it is written
        with _open_decompressed(archive) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                parts = _safe_parts(archive, member.name)
                if member.issym() or member.islnk():
                    kind = "symbolic" if member.issym() else "hard"
                    raise DdpmsegError(
                        f"{archive}: member '{member.name}' is a {kind} link to '{member.linkname}'; refused"
                    )
                if not (member.isreg() or member.isdir()):
                    raise DdpmsegError(f"{archive}: member '{member.name}' is a device file or fifo; refused")
                if data_filter is not None:
                    try:
                        data_filter(member, str(tmp or _CHECK_ROOT))
                    except tarfile.FilterError as error:
                        raise DdpmsegError(f"{archive}: member '{member.name}' refused ({error})") from None
                relative = _relative(parts, prefix)
                if relative is None:
                    continue
                destination = tmp / relative if tmp is not None else None
                if member.isdir():
                    _make_dir(archive, member.name, destination)
                    continue
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - isreg() members always have data
                    raise DdpmsegError(f"{archive}: member '{member.name}' has no data")
                with source:
                    _write_file(archive, member.name, source, destination, member.size)
                files.append(relative)
            # read to the end: the gzip trailer (CRC and length) is checked only there
            while stream.read(CHUNK_SIZE):
                pass
    except DdpmsegError:
        raise
    except _CORRUPT as error:
        raise DdpmsegError(f"{archive}: corrupt or truncated archive ({_describe(error)})") from None
    return files


def _open_decompressed(archive: Path) -> IO[bytes]:
    """The archive's bytes, decompressed when gzip, bzip2 or xz (recognised by their magic bytes)."""
    with open(archive, "rb") as handle:
        magic = handle.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(archive, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(archive, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(archive, "rb")
    return open(archive, "rb")


def _extract_zip(archive: Path, tmp: Path | None, prefix: str) -> list[str]:
    """Extract the zip members under ``prefix`` into ``tmp``; with ``tmp`` None, check and read them only."""
    files: list[str] = []
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:  # check all before writing anything
                _safe_parts(archive, info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise DdpmsegError(f"{archive}: member '{info.filename}' is a symbolic link; refused")
                if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise DdpmsegError(f"{archive}: member '{info.filename}' is a device file or fifo; refused")
                if info.flag_bits & 0x1:
                    raise DdpmsegError(f"{archive}: member '{info.filename}' is encrypted; refused")
            for info in members:
                relative = _relative(_safe_parts(archive, info.filename), prefix)
                if relative is None:
                    continue
                destination = tmp / relative if tmp is not None else None
                if info.is_dir():
                    _make_dir(archive, info.filename, destination)
                    continue
                with zf.open(info) as source:
                    _write_file(archive, info.filename, source, destination, info.file_size)
                files.append(relative)
    except DdpmsegError:
        raise
    except _CORRUPT as error:
        raise DdpmsegError(f"{archive}: corrupt or truncated archive ({_describe(error)})") from None
    return files


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
