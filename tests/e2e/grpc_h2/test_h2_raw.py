"""Requests no gRPC client sends, written frame by frame on a real socket: wrong method,
wrong content-type, unknown grpc-encoding, a malformed timeout; and a port already in use."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tureen.errors import PortInUseError
from tureen.serving import DataPlane
from tureen.transports.grpc import h2frames as f
from tureen.transports.grpc.h2server import start_h2_server
from tureen.transports.grpc.hpack import Decoder, Encoder

from .conftest import Running

PATH = "/inference.GRPCInferenceService/ServerLive"


def exchange(target: str, headers: list[tuple[str, str]], body: bytes = b"\0\0\0\0\0"
             ) -> dict[str, str]:
    """One request on a fresh connection; the response's headers and trailers, merged."""
    host, port = target.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f.PREFACE + f.settings({}) +
                     f.frame(f.HEADERS, f.END_HEADERS, 1, Encoder().encode(headers)) +
                     f.frame(f.DATA, f.END_STREAM, 1, body))
        dec, buf = Decoder(), b""
        got: dict[str, str] = {}
        while True:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before the response ended"
            buf += chunk
            while len(buf) >= 9:
                lt, flags, sid = f.FRAME_HEADER.unpack_from(buf)
                end = 9 + (lt >> 8)
                if len(buf) < end:
                    break
                kind, payload, buf = lt & 0xFF, buf[9:end], buf[end:]
                if kind == f.HEADERS and sid == 1:
                    got.update(dec.decode(payload))
                if sid == 1 and flags & f.END_STREAM and kind in (f.HEADERS, f.DATA):
                    return got


def request(method: str = "POST", ctype: str = "application/grpc",
            extra: tuple[tuple[str, str], ...] = ()) -> list[tuple[str, str]]:
    return [(":method", method), (":scheme", "http"), (":path", PATH),
            (":authority", "x"), ("content-type", ctype), ("te", "trailers"), *extra]


def test_a_plain_call_works(server: Running) -> None:
    got = exchange(server.target, request())
    assert got[":status"] == "200" and got["grpc-status"] == "0"
    assert got["content-type"] == "application/grpc"


def test_non_post_and_wrong_content_type_are_http_errors(server: Running) -> None:
    got = exchange(server.target, request(method="GET"))
    assert got[":status"] == "405" and "POST" in got["grpc-message"]
    got = exchange(server.target, request(ctype="application/json"))
    assert got[":status"] == "415" and "application/grpc" in got["grpc-message"]


def test_unknown_encoding_and_bad_timeout(server: Running) -> None:
    got = exchange(server.target, request(extra=(("grpc-encoding", "snappy"),)),
                   body=b"\1\0\0\0\0")
    assert got["grpc-status"] == "12" and "gzip" in got["grpc-accept-encoding"]
    got = exchange(server.target, request(extra=(("grpc-timeout", "soon"),)))
    assert got["grpc-status"] == "3" and "grpc-timeout" in got["grpc-message"]
    got = exchange(server.target, request(), body=b"\1\0\0\0\0")  # compressed, no encoding
    assert got["grpc-status"] == "3"  # INVALID_ARGUMENT: the client's mistake
    got = exchange(server.target, request(), body=b"\0\0\0\0\5ab")  # truncated message
    assert got["grpc-status"] == "3" and "truncated" in got["grpc-message"]


async def test_port_in_use_names_the_port_and_the_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        dp = DataPlane()
        with pytest.raises(PortInUseError, match=rf"{port}.*--grpc_port"):
            await start_h2_server(dp, "127.0.0.1", port, max_message_bytes=1024)
        dp.close()
    await asyncio.sleep(0)
