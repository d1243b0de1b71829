"""Many Redis commands in one round trip, packed by hand onto a pooled redis-py connection.

redis-py's pipeline costs a few microseconds of Python per command (options, packing, result
callbacks). A batch online read is dozens to thousands of ``HMGET``s of bytes arguments, so
they are packed here into one RESP buffer (``*N`` then ``$len`` + bytes per argument), sent
with one ``sendall``, and the N replies are read back by one hiredis reader fed straight
from the connection's socket (RESP2; about 10x less time per reply than redis-py's
``read_response``, which costs a few microseconds of Python each), or by the connection's
own parser (no hiredis, or RESP3). Connections come from, and go back to, the
client's pool, so authentication, the database number and TLS are redis-py's. A
connection that fails mid-exchange is disconnected (never returned with unread replies) and
the exchange is tried once more on a fresh one; a second failure propagates to the caller.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:
    import hiredis
except ImportError:  # redis-py reads the replies then
    hiredis = None  # type: ignore[assignment]

Command = Sequence[bytes]
_RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)
#: the receive buffer of ``_replies``, per thread (hiredis copies what it is fed)
_buffers = threading.local()
_FEED = 2048
#: what the hiredis reader answers when it needs more bytes (equal to no reply)
_MORE = object()


@dataclass(frozen=True)
class Packed:
    """Commands in RESP, back to back, and how many there are (replies to read)."""

    payload: bytes
    count: int


def pack(commands: Sequence[Command]) -> Packed:
    """The RESP encoding of ``commands`` (every argument bytes), back to back."""
    parts: list[bytes] = []
    add = parts.append
    for command in commands:
        add(b"*%d\r\n" % len(command))
        for arg in command:
            add(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return Packed(b"".join(parts), len(commands))


def pack_keyed(name: bytes, keys: Sequence[bytes], around: tuple[bytes, bytes],
               tail: Sequence[bytes]) -> Packed:
    """``pack`` of one command per key: ``name, around[0] + key + around[1], *tail``.
    Keys of one length (the usual case) are packed with a single ``join``."""
    if not keys:
        return Packed(b"", 0)
    width = len(keys[0])
    if len(set(map(len, keys))) == 1:
        before, after = _around(name, width, around, tail)
        return Packed(before + (after + before).join(keys) + after, len(keys))
    pre, post = around
    head = b"*%d\r\n$%d\r\n%b\r\n" % (2 + len(tail), len(name), name)
    rest = b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in tail)
    return Packed(b"".join([b"%b$%d\r\n%b%b%b\r\n%b" % (head, len(pre) + len(k) + len(post),
                                                         pre, k, post, rest) for k in keys]),
                  len(keys))


def pack_rows(name: bytes, keys: np.ndarray[Any, np.dtype[np.uint8]],
              around: tuple[bytes, bytes], tail: Sequence[bytes]) -> Packed:
    """``pack_keyed`` of keys given as the rows of a uint8 array: the commands differ only
    in their keys, so the payload is one command repeated with the keys copied in."""
    count, width = keys.shape
    if not count:
        return Packed(b"", 0)
    before, after = _around(name, width, around, tail)
    payload = bytearray(before + bytes(width) + after) * count
    grid = np.frombuffer(payload, dtype=np.uint8).reshape(count, -1)
    grid[:, len(before) : len(before) + width] = keys
    return Packed(bytes(payload), count)


def _around(name: bytes, width: int, around: tuple[bytes, bytes], tail: Sequence[bytes]
            ) -> tuple[bytes, bytes]:
    """The bytes before and after a ``width``-byte key in its command."""
    pre, post = around
    head = b"*%d\r\n$%d\r\n%b\r\n" % (2 + len(tail), len(name), name)
    rest = b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in tail)
    return head + b"$%d\r\n" % (len(pre) + width + len(post)) + pre, post + b"\r\n" + rest


def roundtrip(client: Any, commands: Packed) -> list[Any]:
    """Send ``commands`` in one write on one pooled connection of ``client`` (a sync
    ``redis.Redis``) and return their replies in order. Every reply is read before the
    first error reply (a ``ResponseError``) is raised, so the connection stays usable."""
    payload, count = commands.payload, commands.count
    pool = client.connection_pool
    for attempt in (0, 1):
        conn = pool.get_connection()
        try:
            conn.send_packed_command([payload], check_health=attempt == 1)
            return _replies(conn, count)
        except _RETRYABLE:
            conn.disconnect()
            if attempt:
                raise
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)
    raise AssertionError("unreachable")


async def roundtrip_async(client: Any, commands: Packed) -> list[Any]:
    """``roundtrip`` on a ``redis.asyncio.Redis`` client."""
    payload, count = commands.payload, commands.count
    pool = client.connection_pool
    for attempt in (0, 1):
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command([payload], check_health=attempt == 1)
            return _raise_first([await _reply_async(conn) for _ in range(count)])
        except _RETRYABLE:
            await conn.disconnect()
            if attempt:
                raise
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
    raise AssertionError("unreachable")


def _raise_first(replies: list[Any]) -> list[Any]:
    for r in replies:
        if isinstance(r, ResponseError):
            raise r
    return replies


def _replies(conn: Any, count: int) -> list[Any]:
    """The next ``count`` replies on ``conn`` (a redis-py connection that has nothing else
    pending). With hiredis and RESP2, one reader parses them all straight from the socket;
    error replies become the exceptions redis-py would raise (``NoScriptError``, ...)."""
    sock, parser = getattr(conn, "_sock", None), getattr(conn, "_parser", None)
    if (hiredis is None or sock is None or parser is None
            or str(getattr(conn, "protocol", 2) or 2) != "2"):
        return _raise_first([_reply(conn) for _ in range(count)])
    errors: list[Any] = []
    parse_error = parser.parse_error

    def error_reply(message: str) -> Any:
        errors.append(parse_error(message))
        return errors[-1]

    reader = hiredis.Reader(protocolError=InvalidResponse, replyError=error_reply,
                            notEnoughData=_MORE)
    buffer = getattr(_buffers, "buffer", None)
    if buffer is None:  # one per thread, reused: a fresh one costs a 64 KiB memset a call
        buffer = _buffers.buffer = bytearray(1 << 16)
    out: list[Any] = []
    while len(out) < count:
        got = sock.recv_into(buffer)
        if not got:
            raise RedisConnectionError("Connection closed by server.")
        # Fed in pieces: hiredis moves what it holds unparsed each time it has parsed 1 KiB,
        # so one big feed costs a copy of the rest every few replies.
        for at in range(0, got, _FEED):
            reader.feed(buffer, at, min(_FEED, got - at))  # type: ignore[arg-type]
            out.extend(iter(reader.gets, _MORE))  # every reply complete so far, pulled in C
    if len(out) > count:
        raise InvalidResponse(f"{len(out)} replies to {count} commands.")
    if errors:  # every reply is read: the connection stays usable
        raise errors[0]
    return out


def _reply(conn: Any) -> Any:
    try:
        return conn.read_response()
    except ResponseError as exc:
        return exc


async def _reply_async(conn: Any) -> Any:
    try:
        return await conn.read_response()
    except ResponseError as exc:
        return exc
