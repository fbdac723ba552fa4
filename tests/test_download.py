"""Downloads against a loopback HTTP server: resume with Range, Range ignored, HTTP errors, sha256 and lock files."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import socket
import threading

import pytest
import yaml

from ddpmseg.download import download, load_lock, part_path
from ddpmseg.errors import DdpmsegError

FAST = {"backoff_s": 0.01, "timeout_s": 5, "progress": False}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    timeout = 5  # a stuck client cannot hold the server thread longer

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        state: LoopbackServer = self.server.state  # type: ignore[attr-defined]
        path = self.path
        range_header = self.headers.get("Range")
        state.requests.append({"path": path, "range": range_header})
        if path in state.status:
            self.send_error(state.status[path])
            return
        if path not in state.files:
            self.send_error(404)
            return
        body = state.files[path]
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if match and not state.ignore_range:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if path in state.cut_once:
            state.cut_once.discard(path)
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(payload)


class LoopbackServer:
    """Serves ``files`` {path: bytes}; ``status`` {path: code} answers an error; ``cut_once`` paths are cut
    mid-body on their next request; ``ignore_range`` answers 200 with the full body to Range requests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.status: dict[str, int] = {}
        self.cut_once: set[str] = set()
        self.ignore_range = False
        self.requests: list[dict] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.state = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    srv = LoopbackServer()
    yield srv
    srv.close()


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
