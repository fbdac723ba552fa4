"""Download one URL to one file: resumable, retried, and verified before the file appears.

Bytes go to ``<dest>.part`` beside ``dest`` and are renamed onto ``dest`` only after verification, so
``dest`` is complete and checked or absent. A transfer cut short (connection lost, timeout, killed
process) leaves the ``.part`` file with every byte that arrived; the next attempt (a retry, or a later
call) asks for the rest with ``Range: bytes=N-``. The strong ``ETag`` (else the ``Last-Modified``) of the
response that started the ``.part`` file is kept beside it in ``<dest>.part.validator`` and sent as
``If-Range``, so a file that changed on the server is fetched again from zero (the server answers 200)
instead of being spliced onto the old bytes; a 206 answer that names another version also restarts.
A ``.part`` file without that sidecar resumes unchecked (the digest or content check then decides); one
that already holds a whole body is finished without a transfer only when a known digest will check it or
its validator matches the server's: otherwise it may be an earlier version of the file (whose content
check would pass) and it is fetched again from zero.

A response with ``Content-Type: text/html`` (a login, quota or error page served with status 200) is
refused unless ``dest`` itself ends in ``.html``/``.htm``.

Verification, in order of precedence: the ``sha256`` argument; else the entry of the lock file; else
(trust on first use) the ``content_check`` runs on the complete file, and only if it passes are the
digest and size recorded in the lock file. A file that fails its check is not kept and nothing is
recorded, so a bad first download never becomes the reference.

The lock file (YAML, or JSON when its name ends in ``.json``) maps a key to ``{sha256, size}``::

    https://openaipublic.blob.core.windows.net/diffusion/jul-2021/lsun_horse.pt:
      sha256: 0123...cdef
      size: 2211383297

Entries are looked up under ``lock_key`` (default: the URL), then under the file name of ``dest``;
new entries are recorded under ``lock_key`` (default: the URL). A mismatch with an entry names the
entry to delete when the file was meant to change.

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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from .. import __version__
from ..base.errors import DdpmsegError
from ..base.files import atomic_path, finish_part, sha256_file
from ..base.progress import progress_bar

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


class _Reference(NamedTuple):
    """The digest a file must have, where it comes from, and what to do when the file was meant to change."""

    sha256: str | None
    origin: str = ""
    hint: str = ""


def part_path(dest: str | os.PathLike) -> Path:
    """Where the bytes of ``dest`` gather until they are verified."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    lock_file: str | os.PathLike | None = None,
    retries: int = 3,
    backoff_s: float = 1.0,
    timeout_s: float = 60,
    progress: bool = True,
    lock_key: str | None = None,
    content_check: Callable[[Path], object] | None = None,
    record: bool = True,
) -> str:
    """Fetch ``url`` to ``dest`` (see the module docstring); return the sha256 hex digest of ``dest``.

    Connection errors, bodies cut short and HTTP 5xx are retried ``retries`` times, waiting
    ``backoff_s * 2**k`` seconds before retry k (each resumes with a Range request); HTTP 4xx and HTML
    pages fail at once. Raises :class:`DdpmsegError` with one line naming the URL (or file) and what is
    wrong; after a digest mismatch or a failed content check neither ``dest`` nor its ``.part`` file is
    left behind (a file that was already at ``dest`` before the call is kept: it was not made here).

    ``content_check(path)`` (its return value is ignored) raises :class:`DdpmsegError` when the complete
    file is not what it should be (an archive that does not list, a checkpoint that does not load); it
    runs only when no digest is known, before a first-use digest is recorded. ``record=False`` verifies
    against the lock file but records nothing (a later step that checks the file more closely does).
    """
    dest = Path(dest)
    key = lock_key or url
    reference = _expected_digest(sha256, lock_file, [key, dest.name])
    trust = _FirstUse(lock_file if record else None, key, content_check)

    if dest.exists():
        if not dest.is_file():
            raise DdpmsegError(f"{dest}: exists and is not a file")
        digest = sha256_file(dest)
        _verify(reference, trust, dest, digest, None)
        return digest

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    source = _local_source(url)
    if source is not None:
        _copy(url, source, part, progress)
    else:
        refuse_html = not dest.name.lower().endswith((".html", ".htm"))
        _fetch(
            url, part, retries=retries, backoff_s=backoff_s, timeout_s=timeout_s, progress=progress, refuse_html=refuse_html,
            digest_known=reference.sha256 is not None,
        )

    digest = sha256_file(part)
    try:
        _verify(reference, trust, part, digest, url)
    except DdpmsegError:
        _discard_part(part)
        raise
    finish_part(part, dest)
    _validator_file(part).unlink(missing_ok=True)
    return digest


# -- verification ---------------------------------------------------------------------------------


class _FirstUse(NamedTuple):
    """What happens to a file whose digest is not known yet: its content check, then its lock entry."""

    lock_file: str | os.PathLike | None
    key: str
    content_check: Callable[[Path], object] | None


def _verify(reference: _Reference, trust: _FirstUse, path: Path, digest: str, url: str | None) -> None:
    """Check ``path`` against its reference digest, or trust it on first use.

    ``url`` names a ``.part`` file in messages; None for a file that was already at ``dest``.
    """
    what = url or str(path)
    if reference.sha256 is not None:
        if digest != reference.sha256:
            raise DdpmsegError(
                f"{what}: sha256 mismatch: expected {reference.sha256} ({reference.origin}), "
                f"got {digest}{reference.hint}"
            )
        return
    if trust.content_check is not None:
        _check_content(trust.content_check, path, url)
    if trust.lock_file is not None:
        _record(trust.lock_file, trust.key, digest, path.stat().st_size, what)


def _check_content(content_check: Callable[[Path], object], path: Path, url: str | None) -> None:
    """Run the content check; the error of a downloaded ``.part`` file names its URL instead."""
    if url is None:
        content_check(path)
        return
    try:
        content_check(path)
    except DdpmsegError as error:
        reason = str(error).removeprefix(f"{path}: ")
        raise DdpmsegError(f"{url}: the downloaded file is not usable ({reason}); not kept, nothing recorded") from None


def _lock_hint(lock_file: str | os.PathLike, key: str) -> str:
    return f"; if the file was meant to change, delete entry '{key}' from {lock_file} to trust the new one"


def _expected_digest(sha256: str | None, lock_file: str | os.PathLike | None, keys: Sequence[str]) -> _Reference:
    """The digest to check against, where it comes from and what to do on a mismatch (for messages)."""
    if sha256 is not None:
        digest = sha256.strip().lower()
        if not _HEX64.fullmatch(digest):
            raise DdpmsegError(f"sha256 '{sha256}' is not a 64-digit hex digest")
        return _Reference(digest, "sha256 argument")
    if lock_file is not None:
        entries = load_lock(lock_file)
        for key in keys:
            if key in entries:
                origin = f"lock file {lock_file}, entry {key}"
                return _Reference(entries[key]["sha256"], origin, _lock_hint(lock_file, key))
    return _Reference(None)


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
                    f"{what}: sha256 mismatch: expected {known['sha256']} (lock file {path}, entry {key}), "
                    f"got {digest}{_lock_hint(path, key)}"
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


def _fetch(
    url: str, part: Path, *, retries: int, backoff_s: float, timeout_s: float, progress: bool, refuse_html: bool,
    digest_known: bool,
) -> None:
    failures = 0
    while True:
        try:
            _fetch_once(url, part, timeout_s, progress, refuse_html, digest_known)
            return
        except _Retryable as error:
            if failures >= retries:
                raise DdpmsegError(str(error)) from None
            time.sleep(backoff_s * 2**failures)
            failures += 1


def _http_line(url: str, code: int, reason: Any) -> str:
    reason = str(reason or "").strip() or http.client.responses.get(code, "")
    return f"{url}: HTTP {code} {reason}".rstrip()


def _fetch_once(url: str, part: Path, timeout_s: float, progress: bool, refuse_html: bool, digest_known: bool) -> None:
    """One request; the body is appended to ``part`` (206) or replaces it (200). A ``part`` that already
    holds the whole body (416) is kept only when its version is proven (module docstring)."""
    offset = part.stat().st_size if part.exists() else 0
    kept = _read_validators(part) if offset else {}
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if_range = kept.get("etag") or kept.get("last_modified")
        if if_range:
            headers["If-Range"] = if_range
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        with contextlib.closing(error):
            if error.code == 416 and offset:
                if not _complete_part_is_current(url, part, offset, kept, error.headers, digest_known):
                    _fetch_once(url, part, timeout_s, progress, refuse_html, digest_known)  # from byte 0
                return
            line = _http_line(url, error.code, error.reason)
        if error.code >= 500:
            raise _Retryable(line) from None
        raise DdpmsegError(line) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _Retryable(f"{url}: {getattr(error, 'reason', None) or error}") from None
    except ValueError as error:  # malformed URL
        raise DdpmsegError(f"{url}: {error}") from None

    with response:
        if refuse_html:
            _refuse_html(url, response.headers)
        if response.status == 206:
            _check_resume(url, part, offset, kept, response.headers)
            mode = "ab"
        else:  # 200: the whole body (Range not asked, ignored, or If-Range found the file changed)
            offset, mode = 0, "wb"
        _receive(url, response, part, mode=mode, offset=offset, progress=progress)


def _complete_part_is_current(
    url: str, part: Path, offset: int, kept: dict[str, str], headers: Any, digest_known: bool
) -> bool:
    """A 416 answer to ``Range: bytes=<size of part>-``: True when the part already holds the whole body of
    the server's current version (killed between the last byte and the rename). A part of the right length
    is that only if a known digest will check it, or a validator kept with it matches the server's: a part
    left by an earlier version of the file, without either, is discarded (False) and fetched again."""
    match = _CONTENT_RANGE.fullmatch((headers.get("Content-Range") or "").strip())
    complete = match is not None and match.group(3) != "*" and int(match.group(3)) == offset
    if not complete:
        _discard_part(part)
        raise _Retryable(f"{url}: server refused to resume at byte {offset}")
    received = _validators(headers)
    proven = digest_known or any(name in kept and name in received for name in ("etag", "last_modified"))
    if proven and _same_version(kept, received):
        return True
    _discard_part(part)
    return False


def _check_resume(url: str, part: Path, offset: int, kept: dict[str, str], headers: Any) -> None:
    """A 206 answer must continue the same version of the file at the byte asked; else start from zero."""
    match = _CONTENT_RANGE.fullmatch((headers.get("Content-Range") or "").strip())
    start = int(match.group(1)) if match and match.group(1) is not None else None
    if start != offset:
        _discard_part(part)
        raise _Retryable(f"{url}: server sent bytes from {start}, asked from {offset}")
    if not _same_version(kept, _validators(headers)):
        _discard_part(part)
        raise _Retryable(f"{url}: the file changed on the server since the partial download; its bytes were discarded")


def _refuse_html(url: str, headers: Any) -> None:
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type in ("text/html", "application/xhtml+xml"):
        raise DdpmsegError(
            f"{url}: the server sent an HTML page (Content-Type {content_type}), not the file; "
            "check the URL in a browser (a login, quota or error page?)"
        )


def _receive(url: str, response: Any, part: Path, *, mode: str, offset: int, progress: bool) -> None:
    """Write the body to ``part``; every byte that arrived stays there when the transfer is cut."""
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
            if mode == "wb":  # after the truncation: the sidecar never describes older bytes
                _keep_validators(part, _validators(response.headers))
            while True:
                try:
                    # read1 returns what has arrived; read(n) would drop it when the socket times out
                    chunk = response.read1(CHUNK_SIZE)
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


# -- the version of a partial download -------------------------------------------------------------


def _validator_file(part: Path) -> Path:
    """Sidecar of ``part``: the validators of the response that started it (JSON)."""
    return part.with_name(part.name + ".validator")


def _validators(headers: Any) -> dict[str, str]:
    """The strong ETag and the Last-Modified of a response, those it has (a weak ETag cannot be If-Range)."""
    found = {}
    etag = (headers.get("ETag") or "").strip()
    if etag and not etag.startswith("W/"):
        found["etag"] = etag
    last_modified = (headers.get("Last-Modified") or "").strip()
    if last_modified:
        found["last_modified"] = last_modified
    return found


def _same_version(kept: dict[str, str], received: dict[str, str]) -> bool:
    """False only when a validator present on both sides differs (ETag first)."""
    for name in ("etag", "last_modified"):
        if name in kept and name in received:
            return kept[name] == received[name]
    return True


def _read_validators(part: Path) -> dict[str, str]:
    try:
        data = json.loads(_validator_file(part).read_text())
    except (OSError, ValueError):
        return {}  # none kept (or unreadable): the resume goes unchecked, the digest or content check decides
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if k in ("etag", "last_modified") and isinstance(v, str)}


def _keep_validators(part: Path, validators: dict[str, str]) -> None:
    sidecar = _validator_file(part)
    if not validators:
        sidecar.unlink(missing_ok=True)
        return
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps(validators))


def _discard_part(part: Path) -> None:
    part.unlink(missing_ok=True)
    _validator_file(part).unlink(missing_ok=True)
