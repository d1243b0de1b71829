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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:
    import hiredis
except ImportError:  # redis-py reads the replies then
    hiredis = None  # type: ignore[assignment]

Command = Sequence[bytes]
_RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)


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
    pre, post = around
    head = b"*%d\r\n$%d\r\n%b\r\n" % (2 + len(tail), len(name), name)
    rest = b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in tail)
    width = len(keys[0])
    if all(len(k) == width for k in keys):
        before = head + b"$%d\r\n" % (len(pre) + width + len(post)) + pre
        after = post + b"\r\n" + rest
        return Packed(before + (after + before).join(keys) + after, len(keys))
    return Packed(b"".join([b"%b$%d\r\n%b%b%b\r\n%b" % (head, len(pre) + len(k) + len(post),
                                                         pre, k, post, rest) for k in keys]),
                  len(keys))


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
            return _raise_first(_replies(conn, count))
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
        return [_reply(conn) for _ in range(count)]
    reader = hiredis.Reader(protocolError=InvalidResponse, replyError=parser.parse_error)
    buffer = bytearray(1 << 16)
    out: list[Any] = []
    while len(out) < count:
        reply = reader.gets()
        if reply is False:  # RESP2 has no boolean: False is hiredis's "need more bytes"
            got = sock.recv_into(buffer)
            if not got:
                raise RedisConnectionError("Connection closed by server.")
            reader.feed(buffer, 0, got)  # type: ignore[arg-type]  # a bytearray works
        else:
            out.append(reply)
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
