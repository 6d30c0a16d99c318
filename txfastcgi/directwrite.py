# -*- test-case-name: tests.test_directwrite -*-
"""
Writing to a socket at once when nothing is waiting to be sent.

A Twisted transport's C{write} only buffers the bytes and asks the reactor
to watch the socket for writability: an C{epoll_ctl} now, then a wake-up,
a C{send} and another C{epoll_ctl} on the next turn of the loop.  A
gateway writes once or twice per request on each side, and each write
almost always fits in the socket's buffer, so L{writeThrough} sends it
straight away when the transport holds nothing unsent, and hands the
transport only what the socket did not take.  Errors are left to the
transport: it meets them again on its own write.

A response often comes as several writes in one turn of the loop (the
status line and headers, a body chunk, the chunked terminator).  Code that
dispatches one event (a read from an application or a client) can run it
as a I{write batch} (L{startBatch}/L{endBatch}): a writer such as
L{txfastcgi.site.DirectWriteChannel} then holds its bytes
(L{holdUntilBatchEnds}) and sends them as one C{send} when the batch ends.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import tcp, unix
from twisted.logger import Logger

from txfastcgi.unixstream import StreamUNIXClient

__all__ = [
    "HOLD_LIMIT",
    "endBatch",
    "holdUntilBatchEnds",
    "startBatch",
    "writeThrough",
]

_log = Logger()

HOLD_LIMIT = 65536
"""The most bytes a writer should hold in a batch before writing them."""

_flushes: list[Callable[[], None]] | None = None
"""The flushes to run when the current write batch ends (None: no batch)."""

_DIRECT_TRANSPORTS: frozenset[type] = frozenset(
    [tcp.Client, tcp.Server, unix.Client, unix.Server, StreamUNIXClient]
)
"""The reactor's own plain socket connections (not TLS, not test doubles)."""


def writeThrough(transport: object, data: bytes) -> None:
    """
    Write C{data} to C{transport}: straight to its socket when it is one of
    the reactor's plain socket connections, holds nothing unsent, and no
    producer waits for its buffer to drain; else with C{transport.write}.
    """
    t: Any = transport
    if (
        type(t) in _DIRECT_TRANSPORTS
        and t.connected
        and not t.disconnecting
        and not t._aborting
        and not t.dataBuffer
        and not t._tempDataBuffer
        and (t.producer is None or (t.streamingProducer and not t.producerPaused))
        and not getattr(t, "_sendmsgQueue", None)
        and not getattr(t, "TLS", False)
    ):
        try:
            sent = t.socket.send(data)
        except OSError:
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    t.write(data)


def startBatch() -> bool:
    """
    Start a write batch unless one is running.

    @return: whether this call started it; if so the caller must call
        L{endBatch} (in a C{finally}).
    """
    global _flushes
    if _flushes is not None:
        return False
    _flushes = []
    return True


def endBatch() -> None:
    """
    End the write batch: run every flush registered with
    L{holdUntilBatchEnds}, in order.
    """
    global _flushes
    flushes, _flushes = _flushes, None
    if not flushes:
        return
    for flush in flushes:
        try:
            flush()
        except Exception:
            _log.failure("A held write could not be flushed")


def holdUntilBatchEnds(flush: Callable[[], None]) -> bool:
    """
    Ask for C{flush} to run when the current write batch ends.

    @return: L{False} when no batch is running (write now), else L{True}.
    """
    if _flushes is None:
        return False
    _flushes.append(flush)
    return True
