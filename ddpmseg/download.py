"""Download one URL to one file: resumable, retried, and verified by sha256 before the file appears.

Bytes go to ``<dest>.part`` beside ``dest`` and are renamed onto ``dest`` only after verification, so
``dest`` is complete and checked or absent. A transfer cut short leaves the ``.part`` file; the next
attempt (a retry, or a later call) asks for the rest with ``Range: bytes=N-`` and starts over from zero
when the server ignores the range (answers 200).

Verification, in order of precedence: the ``sha256`` argument; else the entry of the lock file; else
the digest and size of this first download are recorded in the lock file (trust on first use).

The lock file (YAML, or JSON when its name ends in ``.json``) maps a key to ``{sha256, size}``::

    https://openaipublic.blob.core.windows.net/diffusion/jul-2021/lsun_horse.pt:
      sha256: 0123...cdef
      size: 2211383297

Entries are looked up under ``lock_key`` (default: the URL), then under the file name of ``dest``;
new entries are recorded under ``lock_key`` (default: the URL).

``file://`` URLs and plain local paths are copied with the same verification. A file already at
``dest`` (placed by hand for offline use) is verified and no request is made.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from . import __version__
from .errors import DdpmsegError
from .files import atomic_path, sha256_file
from .progress import progress_bar

try:  # POSIX only: serialises concurrent lock-file updates (parallel Snakemake jobs)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

CHUNK_SIZE = 1 << 20
USER_AGENT = f"ddpmseg/{__version__} (python urllib)"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.IGNORECASE)


class _Retryable(Exception):
    """A failure worth another attempt: connection error, body cut short, HTTP 5xx."""


def part_path(dest: str | os.PathLike) -> Path:
    """Where the bytes of ``dest`` gather until they are verified."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    lock_file: str | os.PathLike | None = None,
    retries: int = 3,
    backoff_s: float = 1.0,
    timeout_s: float = 60,
    progress: bool = True,
    lock_key: str | None = None,
) -> str:
    """Fetch ``url`` to ``dest`` (see the module docstring); return the sha256 hex digest of ``dest``.

    Connection errors, bodies cut short and HTTP 5xx are retried ``retries`` times, waiting
    ``backoff_s * 2**k`` seconds before retry k (each resumes with a Range request); HTTP 4xx fails at
    once. Raises :class:`DdpmsegError` with one line naming the URL (or file) and what is wrong; after a
    digest mismatch neither ``dest`` nor its ``.part`` file is left behind (a file that was already at
    ``dest`` before the call is kept: it was not made here).
    """
    dest = Path(dest)
    key = lock_key or url
    expected, origin = _expected_digest(sha256, lock_file, [key, dest.name])

    if dest.exists():
        if not dest.is_file():
            raise DdpmsegError(f"{dest}: exists and is not a file")
        digest = sha256_file(dest)
        if expected is not None and digest != expected:
            raise DdpmsegError(f"{dest}: sha256 mismatch: expected {expected} ({origin}), got {digest}")
        if expected is None and lock_file is not None:
            _record(lock_file, key, digest, dest.stat().st_size, str(dest))
        return digest

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    source = _local_source(url)
    if source is not None:
        _copy(url, source, part, progress)
    else:
        _fetch(url, part, retries, backoff_s, timeout_s, progress)

    digest = sha256_file(part)
    try:
        if expected is not None and digest != expected:
            raise DdpmsegError(f"{url}: sha256 mismatch: expected {expected} ({origin}), got {digest}")
        if expected is None and lock_file is not None:
            _record(lock_file, key, digest, part.stat().st_size, url)
    except DdpmsegError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return digest


# -- verification ---------------------------------------------------------------------------------


def _expected_digest(
    sha256: str | None, lock_file: str | os.PathLike | None, keys: Sequence[str]
) -> tuple[str | None, str]:
    """The digest to check against and where it comes from (for messages)."""
    if sha256 is not None:
        digest = sha256.strip().lower()
        if not _HEX64.fullmatch(digest):
            raise DdpmsegError(f"sha256 '{sha256}' is not a 64-digit hex digest")
        return digest, "sha256 argument"
    if lock_file is not None:
        entries = load_lock(lock_file)
        for key in keys:
            if key in entries:
                return entries[key]["sha256"], f"lock file {lock_file}, entry {key}"
    return None, ""


def load_lock(lock_file: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Entries ``{key: {sha256, size}}`` of a lock file; {} when it does not exist yet."""
    path = Path(lock_file)
    if not path.exists():
        return {}
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DdpmsegError(f"{path}: unreadable lock file ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DdpmsegError(f"{path}: a lock file maps file names or URLs to {{sha256, size}}")
    for key, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise DdpmsegError(f"{path}: entry {key}: needs a sha256 string")
        if not _HEX64.fullmatch(entry["sha256"].lower()):
            raise DdpmsegError(f"{path}: entry {key}: sha256 '{entry['sha256']}' is not a 64-digit hex digest")
        entry["sha256"] = entry["sha256"].lower()
    return data


def _record(lock_file: str | os.PathLike, key: str, digest: str, size: int, what: str) -> None:
    """Add ``key: {sha256, size}`` to the lock file atomically; a different digest already there is a mismatch."""
    path = Path(lock_file)
    with _exclusive(path):
        entries = load_lock(path)
        known = entries.get(key)
        if known is not None:
            if known["sha256"] != digest:
                raise DdpmsegError(
                    f"{what}: sha256 mismatch: expected {known['sha256']} (lock file {path}, entry {key}), got {digest}"
                )
            return
        entries[key] = {"sha256": digest, "size": int(size)}
        if path.suffix.lower() == ".json":
            text = json.dumps(entries, indent=2, sort_keys=True) + "\n"
        else:
            text = yaml.safe_dump(entries, sort_keys=True, default_flow_style=False, width=1000)
        with atomic_path(path) as tmp:
            tmp.write_text(text)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on a hidden file beside ``path`` (POSIX); a no-op elsewhere."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.flock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- local sources --------------------------------------------------------------------------------


def _local_source(url: str) -> Path | None:
    """The local file of a ``file://`` URL or plain path; None for http(s); an error for other schemes."""
    parsed = urllib.parse.urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return None
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise DdpmsegError(f"{url}: file:// URL of another host '{parsed.netloc}'")
        return Path(urllib.request.url2pathname(parsed.path))
    if scheme == "" or len(scheme) == 1:  # a plain path (one letter: a Windows drive)
        return Path(url)
    raise DdpmsegError(f"{url}: unsupported URL scheme '{parsed.scheme}' (http, https, file or a local path)")


def _copy(url: str, source: Path, part: Path, progress: bool) -> None:
    if not source.is_file():
        raise DdpmsegError(f"{url}: no such file")
    bar = progress_bar(
        total=source.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name[:-5],
        disable=not progress,
    )
    try:
        with open(source, "rb") as src, open(part, "wb") as out:
            while chunk := src.read(CHUNK_SIZE):
                out.write(chunk)
                bar.update(len(chunk))
    except OSError as error:
        raise DdpmsegError(f"{url}: copy to {part} failed ({error.strerror or error})") from None
    finally:
        bar.close()


# -- HTTP -----------------------------------------------------------------------------------------


def _fetch(url: str, part: Path, retries: int, backoff_s: float, timeout_s: float, progress: bool) -> None:
    failures = 0
    while True:
        try:
            _fetch_once(url, part, timeout_s, progress)
            return
        except _Retryable as error:
            if failures >= retries:
                raise DdpmsegError(str(error)) from None
            time.sleep(backoff_s * 2**failures)
            failures += 1


def _http_line(url: str, code: int, reason: Any) -> str:
    reason = str(reason or "").strip() or http.client.responses.get(code, "")
    return f"{url}: HTTP {code} {reason}".rstrip()


def _fetch_once(url: str, part: Path, timeout_s: float, progress: bool) -> None:
    """One request; the body is appended to ``part`` (206) or replaces it (200)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        with contextlib.closing(error):
            if error.code == 416 and offset:
                match = _CONTENT_RANGE.fullmatch((error.headers.get("Content-Range") or "").strip())
                if match and match.group(3) != "*" and int(match.group(3)) == offset:
                    return  # the .part file already holds the whole body (killed before the rename)
                part.unlink()
                raise _Retryable(f"{url}: server refused to resume at byte {offset}") from None
            line = _http_line(url, error.code, error.reason)
        if error.code >= 500:
            raise _Retryable(line) from None
        raise DdpmsegError(line) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _Retryable(f"{url}: {getattr(error, 'reason', None) or error}") from None
    except ValueError as error:  # malformed URL
        raise DdpmsegError(f"{url}: {error}") from None

    with response:
        mode = "wb"
        if response.status == 206:
            match = _CONTENT_RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
            start = int(match.group(1)) if match and match.group(1) is not None else None
            if start != offset:
                part.unlink(missing_ok=True)
                raise _Retryable(f"{url}: server sent bytes from {start}, asked from {offset}")
            mode = "ab"
        else:  # 200: the whole body, Range ignored or not asked; start from zero
            offset = 0
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        total = offset + length if length is not None else None
        received = 0
        bar = progress_bar(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name[:-5],
            disable=not progress,
        )
        try:
            with open(part, mode) as out:
                while True:
                    try:
                        chunk = response.read(CHUNK_SIZE)
                    except (OSError, http.client.HTTPException) as error:
                        raise _Retryable(
                            f"{url}: transfer cut after {offset + received} bytes ({error or type(error).__name__})"
                        ) from None
                    if not chunk:
                        break
                    try:
                        out.write(chunk)
                    except OSError as error:
                        raise DdpmsegError(f"{part}: cannot write ({error.strerror or error})") from None
                    received += len(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
        if length is not None and received < length:
            raise _Retryable(f"{url}: connection cut after {offset + received} of {total} bytes")

