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
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp, unix

from txfastcgi.unixstream import StreamUNIXClient

__all__ = ["writeThrough"]

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
