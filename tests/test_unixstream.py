"""
Tests for L{txfastcgi.unixstream}: Unix client connections that read with
C{recv} and write with C{send}.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor

from txfastcgi.unixstream import StreamUNIXClient, streamUNIXClientEndpoint

TIMEOUT = 10.0


def getReactor() -> Any:
    from twisted.internet import reactor

    return reactor


class Echo(Protocol):
    """
    Sends back what it receives; closes when it receives C{b"bye"}.
    """

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)
        if data.endswith(b"bye"):
            self.transport.loseConnection()


class Collector(Protocol):
    """
    Keeps what it receives; C{closed} fires when the connection closes.
    """

    def __init__(self) -> None:
        self.received = bytearray()
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: object = None) -> None:
        self.closed.callback(None)


@pytest_twisted.ensureDeferred
async def test_streamConnectionCarriesBytesBothWays() -> None:
    """
    With the real reactor the connection is a L{StreamUNIXClient}; 4 MiB
    written to it come back whole and in order, and the peer's close is
    seen.
    """
    reactor = getReactor()
    directory = tempfile.mkdtemp()
    path = os.path.join(directory, "echo.sock")
    port = reactor.listenUNIX(path, Factory.forProtocol(Echo))
    try:
        endpoint = streamUNIXClientEndpoint(reactor, path, timeout=TIMEOUT)
        collector = Collector()
        connected = endpoint.connect(Factory.forProtocol(lambda: collector))
        protocol = await connected.addTimeout(TIMEOUT, reactor)
        assert protocol is collector
        assert type(collector.transport) is StreamUNIXClient
        payload = bytes(range(256)) * (4 * 4096)
        collector.transport.write(payload)
        collector.transport.write(b"bye")
        await collector.closed.addTimeout(TIMEOUT, reactor)
        assert bytes(collector.received) == payload + b"bye"
    finally:
        await port.stopListening()
        os.rmdir(directory)


def test_otherReactorsGetTheOrdinaryEndpoint() -> None:
    """
    A reactor that is not a POSIX reactor is asked for an ordinary Unix
    connection.
    """
    reactor = MemoryReactor()
    endpoint = streamUNIXClientEndpoint(reactor, "/run/app.sock", timeout=7)
    endpoint.connect(Factory.forProtocol(Protocol))
    [(path, _, timeout, _)] = reactor.unixClients
    assert (path, timeout) == ("/run/app.sock", 7)
