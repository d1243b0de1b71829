"""Negative conformance for HTTP/2 (RFC 9113) against both gRPC servers.

Each case writes frames no correct client sends. tureen's own server must answer exactly as
the RFC says (the stream error or connection error named in ``want``); grpc.aio must refuse
the request one way or another. Either way the process keeps serving: a legitimate call on
a new connection succeeds after every case.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.e2e.conformance.h2peer import (
    COMPRESSION_ERROR,
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    PROTOCOL_ERROR,
    STREAM_CLOSED,
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    Outcome,
    Peer,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
    legit_call,
    request_headers,
)
from tests.e2e.server_process import ServerProcess

Case = Callable[[Peer], int]


def malformed(**kw: str) -> Case:
    def case(p: Peer) -> int:
        p.send(*p.call(1, request_headers(**kw)))
        return 1
    return case


def extra(*fields: tuple[str, str]) -> Case:
    def case(p: Peer) -> int:
        p.send(*p.call(1, request_headers(extra=list(fields))))
        return 1
    return case


def ordered(headers: list[tuple[str, str]]) -> Case:
    def case(p: Peer) -> int:
        p.send(*p.call(1, headers))
        return 1
    return case


def content_length_mismatch(p: Peer) -> int:
    p.send(*p.call(1, request_headers(extra=[("content-length", "99")])))
    return 1


def window_update_on_idle_stream(p: Peer) -> int:
    p.send(WindowUpdateFrame(7, window_increment=100))
    return 7


def short_goaway(p: Peer) -> int:
    p.raw(b"\x00\x00\x04\x07\x00\x00\x00\x00\x00" + b"\x00\x00\x00\x01")
    return 1


def priority_self_dependency(p: Peer) -> int:
    p.send(PriorityFrame(1, depends_on=1, stream_weight=16))
    return 1


def headers_self_dependency_keeps_hpack_in_sync(p: Peer) -> int:
    """The refused HEADERS carries a literal the dynamic table must learn; the next request
    refers to it by index (a server that skipped decoding the refused block fails it)."""
    blk = p.block(request_headers(extra=[("x-tenant", "acme")]))
    p.send(_self_dep(1, blk))
    p.send(*p.call(3, request_headers(extra=[("x-tenant", "acme")])))
    return 3


def _self_dep(sid: int, block: bytes) -> HeadersFrame:
    fr = HeadersFrame(sid, block, flags={"END_HEADERS", "PRIORITY"})
    fr.depends_on, fr.stream_weight, fr.exclusive = sid, 16, False
    return fr


def settings_window_overflow(p: Peer) -> int:
    p.send(p.headers(1, request_headers()))  # open, no END_STREAM
    p.send(WindowUpdateFrame(1, window_increment=2**31 - 1 - 65_535))
    p.send(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65_536}))
    return 1


def data_on_closed_stream(p: Peer) -> int:
    p.send(*p.call(1))
    p.outcome(1)
    p.send(DataFrame(1, b"late", flags={"END_STREAM"}))
    return 1


def data_on_stream_zero(p: Peer) -> int:
    p.raw(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
    return 1


def header_list_too_large(p: Peer) -> int:
    big = [(f"x-m{i}", "v" * 1000) for i in range(80)]
    blk = p.block(request_headers(extra=big))
    p.send(HeadersFrame(1, blk[:16000], flags=set()))
    rest = blk[16000:]
    chunks = [rest[i:i + 16000] for i in range(0, len(rest), 16000)]
    for i, chunk in enumerate(chunks):
        p.send(ContinuationFrame(1, chunk, flags={"END_HEADERS"} if i == len(chunks) - 1
                                 else set()))
    p.send(DataFrame(1, b"\0\0\0\0\0", flags={"END_STREAM"}))
    return 1


def continuation_flood(p: Peer) -> int:
    p.send(HeadersFrame(1, p.block(request_headers()), flags=set()))
    p.send(*[ContinuationFrame(1, b"") for _ in range(200)])
    return 1


def flood(make: Callable[[int], object], n: int) -> Case:
    def case(p: Peer) -> int:
        p.send(*[make(i) for i in range(n)])  # type: ignore[misc]
        return 1
    return case


def rapid_reset(p: Peer) -> int:
    frames = []
    for i in range(700):
        sid = 2 * i + 1
        frames += [p.headers(sid, request_headers()), RstStreamFrame(sid, error_code=8)]
    p.send(*frames)
    return 1


def bad_hpack_index(p: Peer) -> int:
    p.send(HeadersFrame(1, b"\xff\xff\x7f", flags={"END_HEADERS", "END_STREAM"}))
    return 1


CASES: dict[str, tuple[Case, tuple[str, int] | tuple[str, str]]] = {
    "uppercase-name": (extra(("X-Upper", "v")), ("rst", PROTOCOL_ERROR)),
    "connection-header": (extra(("connection", "keep-alive")), ("rst", PROTOCOL_ERROR)),
    "transfer-encoding": (extra(("transfer-encoding", "chunked")), ("rst", PROTOCOL_ERROR)),
    "te-not-trailers": (malformed(te="gzip"), ("rst", PROTOCOL_ERROR)),
    "crlf-in-value": (extra(("x-request-id", "a\r\nx-injected: 1")), ("rst", PROTOCOL_ERROR)),
    "lf-in-value": (extra(("x-tenant", "a\nb")), ("rst", PROTOCOL_ERROR)),
    "nul-in-value": (extra(("x-tenant", "a\0b")), ("rst", PROTOCOL_ERROR)),
    "leading-space": (extra(("x-tenant", " a")), ("rst", PROTOCOL_ERROR)),
    "pseudo-after-regular": (ordered([(":method", "POST"), (":scheme", "http"),
                                      ("content-type", "application/grpc"),
                                      (":path", "/inference.GRPCInferenceService/ServerLive")]),
                             ("rst", PROTOCOL_ERROR)),
    "duplicate-path": (ordered([*request_headers()[:3], (":path", "/x"),
                                *request_headers()[3:]]), ("rst", PROTOCOL_ERROR)),
    "missing-method": (ordered([h for h in request_headers() if h[0] != ":method"]),
                       ("rst", PROTOCOL_ERROR)),
    "unknown-pseudo": (ordered([(":bogus", "1"), *request_headers()]),
                       ("rst", PROTOCOL_ERROR)),
    "empty-path": (malformed(**{":path": ""}), ("rst", PROTOCOL_ERROR)),
    "content-length-mismatch": (content_length_mismatch, ("rst", PROTOCOL_ERROR)),
    "window-update-idle-stream": (window_update_on_idle_stream, ("goaway", PROTOCOL_ERROR)),
    "short-goaway": (short_goaway, ("goaway", FRAME_SIZE_ERROR)),
    "priority-self-dependency": (priority_self_dependency, ("rst", PROTOCOL_ERROR)),
    "settings-window-overflow": (settings_window_overflow, ("goaway", FLOW_CONTROL_ERROR)),
    "data-on-closed-stream": (data_on_closed_stream, ("rst", STREAM_CLOSED)),
    "data-on-stream-zero": (data_on_stream_zero, ("goaway", PROTOCOL_ERROR)),
    "bad-hpack-index": (bad_hpack_index, ("goaway", COMPRESSION_ERROR)),
    "header-list-too-large": (header_list_too_large, ("status", "8")),
    "continuation-flood": (continuation_flood, ("goaway", ENHANCE_YOUR_CALM)),
    "ping-flood": (flood(lambda i: PingFrame(0, opaque_data=i.to_bytes(8, "big")), 1500),
                   ("goaway", ENHANCE_YOUR_CALM)),
    "settings-flood": (flood(lambda i: SettingsFrame(0, settings={}), 800),
                       ("goaway", ENHANCE_YOUR_CALM)),
    "empty-data-flood": (lambda p: (p.send(p.headers(1, request_headers())),
                                    flood(lambda i: DataFrame(1, b""), 1500)(p))[1],
                         ("goaway", ENHANCE_YOUR_CALM)),
    "rapid-reset": (rapid_reset, ("goaway", ENHANCE_YOUR_CALM)),
}


#: what grpc.aio (the fallback server) accepts: framing details grpc core does not check; header
#: values with control characters are refused by tureen's servicer on both servers
GRPCIO_LENIENT = {"connection-header", "transfer-encoding", "content-length-mismatch",
                  "header-list-too-large", "data-on-closed-stream"}


def check_own(out: Outcome, want: tuple[str, int] | tuple[str, str]) -> None:
    kind, value = want
    if kind == "rst":
        assert out.rst == value and out.goaway is None, out
    elif kind == "goaway":
        assert out.goaway == value, out
    else:
        assert out.grpc_status == value, out


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_input_is_refused_and_the_server_keeps_serving(h2: ServerProcess,
                                                                 name: str) -> None:
    case, want = CASES[name]
    with Peer(h2.grpc_target) as p:
        sid = case(p)
        out = p.outcome(sid)
    if h2.kind == "own":  # type: ignore[attr-defined]
        if name == "headers-self-dependency-keeps-hpack-in-sync":
            assert out.grpc_status == "0", out
        else:
            check_own(out, want)
    else:
        assert out.refused() or not out.ended or name in GRPCIO_LENIENT, (name, out)
    assert legit_call(h2.grpc_target), f"the server stopped serving after {name}"
    assert h2.proc.poll() is None


def test_a_refused_header_block_is_still_decoded(h2: ServerProcess) -> None:
    """A HEADERS refused for its priority (self-dependency) still teaches the HPACK table:
    the next request, which refers to the entry it added, succeeds."""
    with Peer(h2.grpc_target) as p:
        sid = headers_self_dependency_keeps_hpack_in_sync(p)
        out = p.outcome(sid)
    if h2.kind == "own":  # type: ignore[attr-defined]
        assert out.grpc_status == "0", out
    assert legit_call(h2.grpc_target)
