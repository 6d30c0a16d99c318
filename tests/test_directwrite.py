"""
Tests for L{txfastcgi.directwrite} and the L{DirectWriteChannel} of
L{txfastcgi.site.GatewaySite}.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource

from txfastcgi.directwrite import writeThrough
from txfastcgi.site import DirectWriteChannel, GatewaySite

TIMEOUT = 10.0


def getReactor() -> Any:
    from twisted.internet import reactor

    return reactor


class Collector(Protocol):
    """
    Keeps what it receives until C{expected} bytes came.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = bytearray()
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.expected and not self.done.called:
            self.done.callback(bytes(self.received))


@pytest_twisted.ensureDeferred
async def test_sentAtOnceAndInOrder() -> None:
    """
    Over a real TCP connection, bytes written through an empty transport
    leave at once (the reactor is not asked to watch for writability); after
    a buffered write they are queued behind it, so the order holds; a
    payload larger than the socket buffer arrives whole.
    """
    reactor = getReactor()
    big = bytes(range(256)) * 40000
    collector = Collector(2 + 3 + len(big))
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(lambda: collector)
    )
    try:
        client = await TCP4ClientEndpoint(
            reactor, "127.0.0.1", port.getHost().port
        ).connect(Factory.forProtocol(Protocol))
        transport = client.transport
        writeThrough(transport, b"ab")
        assert transport not in reactor.getWriters()
        transport.write(b"c")
        writeThrough(transport, b"de")
        writeThrough(transport, big)
        received = await collector.done.addTimeout(TIMEOUT, reactor)
        assert received == b"abcde" + big
        transport.loseConnection()
    finally:
        await port.stopListening()


def test_otherTransportsWrite() -> None:
    """
    A transport that is not one of the reactor's socket connections is
    written to with C{write}.
    """
    transport = StringTransport()
    writeThrough(transport, b"hello")
    assert transport.value() == b"hello"


def test_gatewaySiteChannel() -> None:
    """
    A L{GatewaySite} serves HTTP/1.1 with a L{DirectWriteChannel} (inside
    Twisted's wrapper that can switch to HTTP/2).
    """
    site = GatewaySite(Resource())
    protocol = site.buildProtocol(None)
    channel = getattr(protocol, "_channel", protocol)
    assert isinstance(channel, DirectWriteChannel)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 404 ")


def test_gatewaySiteChannelAddressesAskedOnce() -> None:
    """
    The channel asks its transport for the local and peer addresses once
    per connection, and every request sees them.
    """
    asked: list[str] = []

    class CountingTransport(StringTransport):
        def getHost(self) -> Any:
            asked.append("host")
            return super().getHost()

        def getPeer(self) -> Any:
            asked.append("peer")
            return super().getPeer()

    seen: list[tuple[Any, Any]] = []

    class Where(Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:
            seen.append((request.getHost(), request.getClientAddress()))
            return b"ok"

    protocol = GatewaySite(Where()).buildProtocol(None)
    transport = CountingTransport()
    protocol.makeConnection(transport)
    for _ in range(3):
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().count(b"HTTP/1.1 200 ") == 3
    assert len(seen) == 3
    assert asked.count("host") == 1 and asked.count("peer") == 1
    assert all(where == (transport.getHost(), transport.getPeer()) for where in seen)
