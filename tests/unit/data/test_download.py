"""Downloads against a loopback HTTP server (conftest.LoopbackServer, fixture ``server``): resume with Range, Range ignored, HTTP errors, sha256 and lock files."""

from __future__ import annotations

import hashlib
import json
import re
import socket

import pytest
import yaml

from ddpmseg.data.download import download, load_lock, part_path
from ddpmseg.base.errors import DdpmsegError

FAST = {"backoff_s": 0.01, "timeout_s": 5, "progress": False}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


BODY = bytes(range(256)) * 4096  # 1 MiB, every byte value


def test_plain_download_returns_digest(server, tmp_path):
    server.files["/a.bin"] = BODY
    dest = tmp_path / "sub" / "a.bin"
    digest = download(server.url("/a.bin"), dest, sha256=sha(BODY), **FAST)
    assert digest == sha(BODY)
    assert dest.read_bytes() == BODY
    assert not part_path(dest).exists()
    assert [r["range"] for r in server.requests] == [None]


def test_cut_connection_resumes_with_range_on_rerun(server, tmp_path):
    server.files["/m.pt"] = BODY
    server.cut_once.add("/m.pt")
    dest = tmp_path / "m.pt"
    with pytest.raises(DdpmsegError, match=r"/m\.pt: connection cut after 524288 of 1048576 bytes"):
        download(server.url("/m.pt"), dest, sha256=sha(BODY), retries=0, **FAST)
    assert not dest.exists()
    assert part_path(dest).stat().st_size == len(BODY) // 2  # the interrupted transfer is kept

    digest = download(server.url("/m.pt"), dest, sha256=sha(BODY), retries=0, **FAST)
    assert digest == sha(BODY)
    assert dest.read_bytes() == BODY
    assert not part_path(dest).exists()
    assert server.requests[-1]["range"] == f"bytes={len(BODY) // 2}-"


def test_cut_connection_retried_within_one_call(server, tmp_path):
    server.files["/m.pt"] = BODY
    server.cut_once.add("/m.pt")
    dest = tmp_path / "m.pt"
    assert download(server.url("/m.pt"), dest, sha256=sha(BODY), retries=2, **FAST) == sha(BODY)
    assert dest.read_bytes() == BODY
    assert [r["range"] for r in server.requests] == [None, f"bytes={len(BODY) // 2}-"]


def test_range_ignored_restarts_from_zero(server, tmp_path):
    server.files["/m.pt"] = BODY
    server.ignore_range = True
    dest = tmp_path / "m.pt"
    part_path(dest).write_bytes(b"stale bytes of an earlier attempt")
    assert download(server.url("/m.pt"), dest, sha256=sha(BODY), **FAST) == sha(BODY)
    assert dest.read_bytes() == BODY  # the stale prefix was truncated, not kept
    assert server.requests[0]["range"] == f"bytes={len(b'stale bytes of an earlier attempt')}-"


def test_range_ignored_after_cut_gives_the_right_file(server, tmp_path):
    server.files["/m.pt"] = BODY
    server.cut_once.add("/m.pt")
    server.ignore_range = True
    dest = tmp_path / "m.pt"
    assert download(server.url("/m.pt"), dest, sha256=sha(BODY), retries=1, **FAST) == sha(BODY)
    assert dest.read_bytes() == BODY
    assert server.requests[1]["range"] is not None  # a resume was asked and refused (200)


def test_complete_part_file_is_finished_without_body(server, tmp_path):
    server.files["/m.pt"] = BODY
    dest = tmp_path / "m.pt"
    part_path(dest).write_bytes(BODY)  # killed between the last byte and the rename
    assert download(server.url("/m.pt"), dest, sha256=sha(BODY), **FAST) == sha(BODY)
    assert dest.read_bytes() == BODY
    assert server.requests == [{"path": "/m.pt", "range": f"bytes={len(BODY)}-"}]


def test_a_stale_complete_part_without_a_digest_or_validator_is_fetched_again(server, tmp_path):
    """An earlier version's bytes, of the very length of today's file, left without a validator: with no
    digest to check them, they are not taken as the download (a first use would record them)."""
    server.files["/m.pt"] = BODY
    dest = tmp_path / "m.pt"
    stale = bytes(reversed(BODY))
    part_path(dest).write_bytes(stale)  # same length, other content
    assert download(server.url("/m.pt"), dest, **FAST) == sha(BODY)
    assert dest.read_bytes() == BODY
    assert [r["range"] for r in server.requests] == [f"bytes={len(BODY)}-", None]


def test_http_404_is_one_line_and_not_retried(server, tmp_path):
    url = server.url("/missing.pt")
    with pytest.raises(DdpmsegError) as info:
        download(url, tmp_path / "missing.pt", retries=3, **FAST)
    assert str(info.value) == f"{url}: HTTP 404 Not Found"
    assert len(server.requests) == 1
    assert not (tmp_path / "missing.pt").exists()


def test_http_500_is_retried_then_one_line(server, tmp_path):
    server.status["/broken.pt"] = 500
    url = server.url("/broken.pt")
    with pytest.raises(DdpmsegError) as info:
        download(url, tmp_path / "broken.pt", retries=2, **FAST)
    assert str(info.value) == f"{url}: HTTP 500 Internal Server Error"
    assert "\n" not in str(info.value)
    assert len(server.requests) == 3


def test_connection_refused_names_the_url(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.pt"
    with pytest.raises(DdpmsegError, match=re.escape(url)):
        download(url, tmp_path / "x.pt", retries=1, **FAST)


def test_wrong_bytes_give_both_digests_and_leave_nothing(server, tmp_path):
    good, bad = b"the real checkpoint" * 1000, b"something else" * 1000
    server.files["/c.pt"] = bad
    dest = tmp_path / "c.pt"
    with pytest.raises(DdpmsegError) as info:
        download(server.url("/c.pt"), dest, sha256=sha(good), **FAST)
    message = str(info.value)
    assert sha(good) in message and sha(bad) in message
    assert message.startswith(server.url("/c.pt"))
    assert not dest.exists()
    assert not part_path(dest).exists()


def test_preplaced_file_is_verified_without_request(server, tmp_path):
    dest = tmp_path / "c.pt"
    dest.write_bytes(BODY)
    assert download(server.url("/c.pt"), dest, sha256=sha(BODY), **FAST) == sha(BODY)
    with pytest.raises(DdpmsegError, match=sha(b"other")):
        download(server.url("/c.pt"), dest, sha256=sha(b"other"), **FAST)
    assert dest.read_bytes() == BODY  # a hand-placed file is never deleted
    assert server.requests == []


def test_preplaced_file_is_recorded_in_lock_without_request(server, tmp_path):
    dest, lock = tmp_path / "c.pt", tmp_path / "lock.yaml"
    dest.write_bytes(BODY)
    url = server.url("/c.pt")
    assert download(url, dest, lock_file=lock, **FAST) == sha(BODY)
    assert yaml.safe_load(lock.read_text()) == {url: {"sha256": sha(BODY), "size": len(BODY)}}
    assert server.requests == []


@pytest.mark.parametrize("lock_name", ["lock.yaml", "lock.json"])
def test_lock_file_records_then_detects_a_changed_file(server, tmp_path, lock_name):
    lock = tmp_path / lock_name
    url = server.url("/d.tar.gz")
    server.files["/d.tar.gz"] = BODY
    dest = tmp_path / "d.tar.gz"
    assert download(url, dest, lock_file=lock, **FAST) == sha(BODY)
    text = lock.read_text()
    recorded = json.loads(text) if lock_name.endswith(".json") else yaml.safe_load(text)
    assert recorded == {url: {"sha256": sha(BODY), "size": len(BODY)}}
    assert load_lock(lock) == recorded

    changed = BODY[:-1] + b"X"
    server.files["/d.tar.gz"] = changed
    dest.unlink()
    with pytest.raises(DdpmsegError) as info:
        download(url, dest, lock_file=lock, **FAST)
    assert sha(BODY) in str(info.value) and sha(changed) in str(info.value)
    assert not dest.exists() and not part_path(dest).exists()
    assert load_lock(lock) == recorded  # the lock keeps the first digest


def test_lock_entry_by_file_name(server, tmp_path):
    server.files["/e.pt"] = b"weights"
    lock = tmp_path / "lock.yaml"
    lock.write_text(yaml.safe_dump({"e.pt": {"sha256": sha(b"other weights"), "size": 13}}))
    with pytest.raises(DdpmsegError, match=sha(b"other weights")):
        download(server.url("/e.pt"), tmp_path / "e.pt", lock_file=lock, **FAST)


def test_file_url_and_local_path(tmp_path):
    source = tmp_path / "src" / "model.pt"
    source.parent.mkdir()
    source.write_bytes(BODY)
    first = download(source.as_uri(), tmp_path / "a" / "model.pt", sha256=sha(BODY), **FAST)
    second = download(str(source), tmp_path / "b" / "model.pt", **FAST)
    assert first == second == sha(BODY)
    assert (tmp_path / "a" / "model.pt").read_bytes() == BODY
    assert (tmp_path / "b" / "model.pt").read_bytes() == BODY
    with pytest.raises(DdpmsegError, match="sha256 mismatch"):
        download(str(source), tmp_path / "c" / "model.pt", sha256=sha(b"x"), **FAST)
    assert list((tmp_path / "c").iterdir()) == []
    with pytest.raises(DdpmsegError, match="no such file"):
        download(str(tmp_path / "nowhere.pt"), tmp_path / "d.pt", **FAST)


def test_bad_inputs(tmp_path):
    with pytest.raises(DdpmsegError, match="not a 64-digit hex digest"):
        download("http://127.0.0.1:9/x", tmp_path / "x", sha256="abc", **FAST)
    with pytest.raises(DdpmsegError, match="unsupported URL scheme 'ftp'"):
        download("ftp://example.org/x", tmp_path / "x", **FAST)
    bad_lock = tmp_path / "lock.yaml"
    bad_lock.write_text("- just\n- a list\n")
    with pytest.raises(DdpmsegError, match=r"lock\.yaml"):
        download("http://127.0.0.1:9/x", tmp_path / "x", lock_file=bad_lock, **FAST)


# -- what arrives first must not become the reference; resumes must not splice versions --


def validator_file(dest) -> object:
    """The sidecar that keeps the first response's ETag / Last-Modified beside the ``.part`` file."""
    return dest.with_name(dest.name + ".part.validator")


def starts_with_good(path) -> None:
    """A content check: the file must start with b'GOOD'."""
    if path.read_bytes()[:4] != b"GOOD":
        raise DdpmsegError(f"{path}: does not start with GOOD")


GOOD = b"GOOD" + BODY


def test_html_page_for_a_binary_file_is_refused_and_not_saved(server, tmp_path):
    server.files["/lsun_horse.pt"] = b"<!doctype html><html><body>Sign in to continue</body></html>"
    server.content_types["/lsun_horse.pt"] = "text/html; charset=utf-8"
    url, dest, lock = server.url("/lsun_horse.pt"), tmp_path / "lsun_horse.pt", tmp_path / "lock.yaml"
    with pytest.raises(DdpmsegError) as info:
        download(url, dest, lock_file=lock, retries=2, **FAST)
    message = str(info.value)
    assert message.startswith(f"{url}: ") and "HTML" in message and "\n" not in message
    assert not dest.exists() and not part_path(dest).exists() and not lock.exists()
    assert len(server.requests) == 1  # not retried: the server answers the same page again


def test_failed_content_check_records_nothing_and_the_right_file_then_passes(server, tmp_path):
    url, dest, lock = server.url("/c.pt"), tmp_path / "c.pt", tmp_path / "lock.yaml"
    server.files["/c.pt"] = b"BAD!" + BODY  # e.g. a truncated or spliced checkpoint
    with pytest.raises(DdpmsegError) as info:
        download(url, dest, lock_file=lock, content_check=starts_with_good, **FAST)
    message = str(info.value)
    assert message.startswith(f"{url}: ") and "does not start with GOOD" in message and "\n" not in message
    assert not dest.exists() and not part_path(dest).exists()
    assert not lock.exists()  # the bad file did not become the reference

    server.files["/c.pt"] = GOOD
    assert download(url, dest, lock_file=lock, content_check=starts_with_good, **FAST) == sha(GOOD)
    assert dest.read_bytes() == GOOD
    assert load_lock(lock) == {url: {"sha256": sha(GOOD), "size": len(GOOD)}}


def test_content_check_sees_the_complete_file(server, tmp_path):
    server.files["/c.pt"] = GOOD
    server.cut_once.add("/c.pt")
    seen = []
    url = server.url("/c.pt")
    download(url, tmp_path / "c.pt", content_check=lambda p: seen.append(p.read_bytes()), retries=1, **FAST)
    assert seen == [GOOD]


def test_content_check_is_skipped_when_a_digest_is_known(server, tmp_path):
    server.files["/c.pt"] = GOOD
    calls = []
    download(server.url("/c.pt"), tmp_path / "c.pt", sha256=sha(GOOD), content_check=calls.append, **FAST)
    assert calls == []


def test_preplaced_file_failing_its_check_is_kept_but_not_recorded(server, tmp_path):
    dest, lock = tmp_path / "c.pt", tmp_path / "lock.yaml"
    dest.write_bytes(b"BAD!")
    with pytest.raises(DdpmsegError, match=re.escape(f"{dest}: does not start with GOOD")):
        download(server.url("/c.pt"), dest, lock_file=lock, content_check=starts_with_good, **FAST)
    assert dest.read_bytes() == b"BAD!"  # a hand-placed file is never deleted
    assert not lock.exists()
    assert server.requests == []


@pytest.mark.parametrize("preplaced", [False, True])
def test_lock_mismatch_names_the_entry_to_delete(server, tmp_path, preplaced):
    url, dest, lock = server.url("/d.tar.gz"), tmp_path / "d.tar.gz", tmp_path / "lock.yaml"
    lock.write_text(yaml.safe_dump({"archives/d.tar.gz": {"sha256": sha(b"old"), "size": 3}}))
    server.files["/d.tar.gz"] = BODY
    if preplaced:
        dest.write_bytes(BODY)
    with pytest.raises(DdpmsegError) as info:
        download(url, dest, lock_file=lock, lock_key="archives/d.tar.gz", **FAST)
    message = str(info.value)
    assert "\n" not in message and sha(b"old") in message and sha(BODY) in message
    assert f"delete entry 'archives/d.tar.gz' from {lock}" in message


@pytest.mark.parametrize("validator", ["ETag", "Last-Modified"])
def test_resume_sends_if_range_and_restarts_when_the_remote_file_changed(server, tmp_path, validator):
    first, second = BODY, BODY[::-1]
    versions = {
        "ETag": ['"v1"', '"v2"'],
        "Last-Modified": ["Mon, 05 Jul 2021 10:00:00 GMT", "Tue, 06 Jul 2021 10:00:00 GMT"],
    }
    table = server.etags if validator == "ETag" else server.last_modified
    url, dest = server.url("/m.pt"), tmp_path / "m.pt"
    server.files["/m.pt"] = first
    table["/m.pt"] = versions[validator][0]
    server.cut_once.add("/m.pt")
    with pytest.raises(DdpmsegError, match="cut after"):
        download(url, dest, retries=0, **FAST)
    assert part_path(dest).stat().st_size == len(first) // 2
    assert validator_file(dest).exists()  # kept on disk: survives a killed process

    server.files["/m.pt"] = second  # the file changed on the server between the two runs
    table["/m.pt"] = versions[validator][1]
    assert download(url, dest, sha256=sha(second), retries=0, **FAST) == sha(second)
    assert dest.read_bytes() == second  # not half of the old file spliced onto the new one
    assert server.requests[-1]["range"] == f"bytes={len(first) // 2}-"
    assert server.if_ranges[-1] == versions[validator][0]
    assert not validator_file(dest).exists() and not part_path(dest).exists()


def test_resume_of_an_unchanged_file_continues_with_if_range(server, tmp_path):
    server.files["/m.pt"] = BODY
    server.etags["/m.pt"] = '"v1"'
    server.cut_once.add("/m.pt")
    dest = tmp_path / "m.pt"
    assert download(server.url("/m.pt"), dest, sha256=sha(BODY), retries=1, **FAST) == sha(BODY)
    assert [r["range"] for r in server.requests] == [None, f"bytes={len(BODY) // 2}-"]
    assert server.if_ranges == [None, '"v1"']


def test_partial_answer_of_another_version_restarts_from_zero(server, tmp_path):
    """A server that ignores If-Range but names the new version in its 206 answer."""
    server.files["/m.pt"] = BODY
    server.etags["/m.pt"] = '"v1"'
    server.cut_once.add("/m.pt")
    dest = tmp_path / "m.pt"
    with pytest.raises(DdpmsegError):
        download(server.url("/m.pt"), dest, retries=0, **FAST)
    server.files["/m.pt"] = BODY[::-1]
    server.etags["/m.pt"] = '"v2"'
    server.ignore_if_range = True
    assert download(server.url("/m.pt"), dest, sha256=sha(BODY[::-1]), retries=1, **FAST) == sha(BODY[::-1])
    assert dest.read_bytes() == BODY[::-1]
    assert server.requests[-1]["range"] is None  # the retry started from zero


def test_timeout_keeps_the_bytes_received_and_reports_them(server, tmp_path):
    server.files["/m.pt"] = BODY
    server.stall_once.add("/m.pt")
    dest = tmp_path / "m.pt"
    with pytest.raises(DdpmsegError) as info:
        download(server.url("/m.pt"), dest, sha256=sha(BODY), retries=0, backoff_s=0.01, timeout_s=0.5, progress=False)
    assert f"cut after {len(BODY) // 2} bytes" in str(info.value)
    assert part_path(dest).stat().st_size == len(BODY) // 2
    server.release.set()
    assert download(server.url("/m.pt"), dest, sha256=sha(BODY), retries=0, **FAST) == sha(BODY)
    assert server.requests[-1]["range"] == f"bytes={len(BODY) // 2}-"
