"""HTTP/1.1 (RFC 9110/9112) on both shipped HTTP/1.1 servers — tureen's own and uvicorn — with
raw sockets: the defects the review found (false 431, Host, Expect on HTTP/1.0), request
smuggling probes, and issue 11 #8 and #11 (1-byte chunks, slow heads and bodies, the
connection cap), each checked with the server still serving afterwards."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from tests.e2e.conformance.conftest import SERVERS, rss_mb, start, wait_for_no_connections
from tests.e2e.server_process import ServerProcess

PREDICT = b"/v1/models/echo:predict"


def exchange(port: int, *parts: bytes, pause: float = 0.0, timeout: float = 10.0) -> bytes:
    """Send ``parts`` (pausing between them), then read until the server closes or is idle."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        for i, part in enumerate(parts):
            if i and pause:
                time.sleep(pause)
            s.sendall(part)
        s.settimeout(1.5)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        except ConnectionResetError:
            pass
        return out


def status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.") else 0


def works(server: ServerProcess) -> bool:
    r = httpx.post(f"{server.url}{PREDICT.decode()}", json={"instances": [1]}, timeout=10)
    return r.status_code == 200


def test_a_head_split_across_reads_with_a_large_body_is_not_431(h2: ServerProcess) -> None:
    body = b'{"instances": [' + b"1," * 60_000 + b'1]}'
    head = (b"POST " + PREDICT + b" HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n")
    raw = exchange(h2.http_port, head[:20], head[20:] + body, pause=0.3)
    assert status(raw) == 200, raw[:300]


@pytest.mark.parametrize("head", [
    b"GET /v2/health/live HTTP/1.1\r\nconnection: close\r\n\r\n",
    b"GET /v2/health/live HTTP/1.1\r\nhost: a\r\nhost: b\r\nconnection: close\r\n\r\n",
])
def test_http11_needs_exactly_one_host(h2: ServerProcess, head: bytes) -> None:
    assert status(exchange(h2.http_port, head)) == 400
    assert works(h2)


def test_expect_100_continue_is_ignored_for_http10(h2: ServerProcess) -> None:
    raw = exchange(h2.http_port, b"POST " + PREDICT + b" HTTP/1.0\r\nexpect: 100-continue\r\n"
                   b"content-type: application/json\r\ncontent-length: 17\r\n\r\n",
                   b'{"instances":[1]}', pause=0.5)
    assert not raw.startswith(b"HTTP/1.1 100"), raw[:200]
    assert status(raw) == 200


@pytest.mark.parametrize("head", [
    b"POST /v2/health/live HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n"
    b"transfer-encoding: chunked\r\n\r\n0\r\n\r\n",  # CL.TE
    b"POST /v2/health/live HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ncontent-length: 4\r\n"
    b"\r\nabcd",
    b"POST /v2/health/live HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\nx-a: a\rb: c\r\n\r\n",  # bare CR
    b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\nx-a: a\x00b\r\n\r\n",  # NUL
    b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n x-folded: yes\r\n\r\n",  # obs-fold
])
def test_smuggling_probes_are_refused(h2: ServerProcess, head: bytes) -> None:
    raw = exchange(h2.http_port, head + b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
    assert status(raw) == 400, raw[:300]
    assert raw.count(b"HTTP/1.1 200") == 0, raw[:600]
    assert works(h2)


def test_1_byte_chunks_cost_their_bytes(h2: ServerProcess) -> None:
    """Issue 11 #8: a body of 1-byte chunks cost 14x its wire size on tureen's server. The
    upload is sent in pieces over a few seconds; a legitimate client is served meanwhile."""
    n = 6_000_000 if h2.kind == "own" else 600_000  # type: ignore[attr-defined]
    payload = b'{"instances": ["' + b"a" * n + b'"]}'  # 36 MB on the wire for own
    chunks = b"".join(b"1\r\n" + payload[i:i + 1] + b"\r\n" for i in range(len(payload)))
    step = len(chunks) // 20 + 1
    pieces = [chunks[i:i + step] for i in range(0, len(chunks), step)]
    head = (b"POST " + PREDICT + b" HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n")
    base = rss_mb(h2.proc.pid)
    got: list[bytes] = []
    upload = threading.Thread(target=lambda: got.append(exchange(
        h2.http_port, head, *pieces, b"0\r\n\r\n", pause=0.1, timeout=30)))
    upload.start()
    served, peak = 0, 0.0
    while upload.is_alive():
        assert works(h2), "a legitimate request failed during the upload"
        served += 1
        peak = max(peak, rss_mb(h2.proc.pid))
    upload.join()
    assert served >= 2 and status(got[0]) == 200, got[0][:200]
    growth = max(peak, rss_mb(h2.proc.pid)) - base  # was 8x the payload, now ~1.5x
    assert growth < max(4 * len(payload) / 2**20, 16), f"RSS grew by {growth:.0f} MB"


def test_11_a_head_that_trickles_is_cut_off(h2: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", h2.http_port), timeout=10) as s:
        s.sendall(b"POST " + PREDICT + b" HTTP/1.1\r\nhost: x\r\n")
        t, got = time.monotonic(), b""
        s.settimeout(0.3)
        while time.monotonic() - t < 8:
            try:
                s.sendall(b"x")  # one byte of a header name at a time, forever
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            except TimeoutError:
                continue
            except OSError:
                break
        assert time.monotonic() - t < 6, "the trickling head was never cut off"
    assert not got or status(got) == 408
    assert works(h2)


def test_11_a_body_that_stops_is_cut_off(h2: ServerProcess) -> None:
    t = time.monotonic()
    raw = exchange(h2.http_port, b"POST " + PREDICT + b" HTTP/1.1\r\nhost: x\r\n"
                   b"content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"",
                   timeout=15)
    assert time.monotonic() - t < 9
    assert not raw or status(raw) == 408, raw[:200]
    assert works(h2)


def test_11_connection_cap_refuses_clearly_and_recovers(h2: ServerProcess) -> None:
    """The cap (64) is the number of connections served: 64 are, the 65th gets 503 at once,
    and once they close the server serves again. uvicorn used to refuse the 64th request too
    (its own check counts the connection asking), and, when requests arrived together, every
    one of them (refused connections still counted until closed), then served the 65th: a
    CI run saw that 200."""
    wait_for_no_connections(h2.http_port)  # earlier tests' connections would count
    socks = [socket.create_connection(("127.0.0.1", h2.http_port), timeout=5)
             for _ in range(64)]
    try:
        for s in socks:
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")  # keep-alive
        served = Counter(status(s.recv(4096)) for s in socks)
        assert served == {200: 64}, served
        raw = exchange(h2.http_port, b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n"
                       b"connection: close\r\n\r\n")
        assert status(raw) == 503, raw[:200]
    finally:
        for s in socks:
            s.close()
    wait_for_no_connections(h2.http_port)
    assert works(h2)


def test_11_the_connection_cap_fits_the_file_descriptors(h2: ServerProcess,
                                                         model_repo: Path,
                                                         tmp_path: Path) -> None:
    """With 300 descriptors and a configured cap of 1000 per server, 320 idle connections
    used to exhaust accept(): a legitimate client hung. The cap now follows the descriptors:
    extra clients get a clear 503 at once, and the server logs why."""
    server = start(model_repo, tmp_path / "fds.log", *SERVERS[h2.kind],  # type: ignore[attr-defined]
                   limits={"MAX_CONNECTIONS": "1000"}, max_fds=300)
    socks: list[socket.socket] = []
    try:
        for _ in range(320):
            try:
                socks.append(socket.create_connection(("127.0.0.1", server.http_port),
                                                      timeout=5))
            except OSError:
                break
        raw = exchange(server.http_port, b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n"
                       b"connection: close\r\n\r\n", timeout=5)
        assert status(raw) == 503, raw[:200]
    finally:
        for s in socks:
            s.close()
        assert server.stop() == 0
    log = (tmp_path / "fds.log").read_text()
    assert "limits.max_connections" in log and "ulimit -n" in log


def test_11_a_client_that_never_reads_its_answer_is_cut_off(h2: ServerProcess) -> None:
    """Slow readers: 12 clients send a 4 MiB echo request each and never read the answer.
    Both servers held every answer for as long as the socket stayed open (+240 MB for 30);
    now a connection whose answer makes no progress for the body deadline (4 s here) is
    reset, and legitimate clients are served meanwhile."""
    raw = b"\1" * (4 << 20)
    head = json.dumps({"inputs": [{"name": "in", "datatype": "UINT8", "shape": [len(raw)],
                                   "parameters": {"binary_data_size": len(raw)}}]}).encode()
    req = (b"POST /v2/models/echo/infer HTTP/1.1\r\nhost: x\r\n"
           b"content-type: application/octet-stream\r\ninference-header-content-length: " +
           str(len(head)).encode() + b"\r\ncontent-length: " +
           str(len(head) + len(raw)).encode() + b"\r\n\r\n" + head + raw)
    socks = []
    for _ in range(12):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", h2.http_port))
        s.sendall(req)
        socks.append(s)
    try:
        end = time.monotonic() + 8
        while time.monotonic() < end:
            assert works(h2)
            time.sleep(0.5)
        got = []
        for s in socks:
            s.settimeout(2)
            n = 0
            try:
                while chunk := s.recv(1 << 20):
                    n += len(chunk)
            except OSError:  # reset by the server (or still open and silent)
                pass
            got.append(n)
    finally:
        for s in socks:
            s.close()
    assert all(n < len(raw) for n in got), got
