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
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.web.resource import Resource

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET

from txfastcgi import site
from txfastcgi.directwrite import (
    HOLD_LIMIT,
    endBatch,
    holdUntilBatchEnds,
    startBatch,
    writeThrough,
)
from txfastcgi.site import DirectWriteChannel, GatewaySite, httpDate


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


class RecordingTransport(StringTransport):
    """
    A L{StringTransport} that keeps each C{write} call's bytes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))


def connectedChannel(root: Resource) -> tuple[Any, RecordingTransport]:
    protocol = GatewaySite(root).buildProtocol(None)
    transport = RecordingTransport()
    protocol.makeConnection(transport)
    return protocol, transport


class Body(Resource):
    """
    Answers with C{parts} written one by one (chunked: no length).
    """

    isLeaf = True

    def __init__(self, parts: list[bytes]) -> None:
        super().__init__()
        self.parts = parts

    def render_GET(self, request: Any) -> int:
        for part in self.parts:
            request.write(part)
        request.finish()
        return NOT_DONE_YET


def test_batchNesting() -> None:
    """
    Only the outermost L{startBatch} starts a batch; L{endBatch} runs the
    held flushes in order; outside a batch nothing is held.
    """
    ran: list[int] = []
    assert holdUntilBatchEnds(lambda: ran.append(0)) is False
    assert startBatch() is True
    assert startBatch() is False
    assert holdUntilBatchEnds(lambda: ran.append(1)) is True
    assert holdUntilBatchEnds(lambda: ran.append(2)) is True
    assert ran == []
    endBatch()
    assert ran == [1, 2]
    assert holdUntilBatchEnds(lambda: ran.append(3)) is False
    endBatch()
    assert ran == [1, 2]


def test_batchFlushFailureLogged() -> None:
    """
    A flush that raises is logged; the flushes after it still run.
    """
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("broken flush")

    with capturedLogs() as events:
        startBatch()
        holdUntilBatchEnds(broken)
        holdUntilBatchEnds(lambda: ran.append("after"))
        endBatch()
    assert ran == ["after"]
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 1
    assert "broken flush" in str(failures[0]["log_failure"].value)


def test_responseInOneWrite() -> None:
    """
    A response made while the client's bytes are handled (status line,
    headers, each body chunk, the chunked terminator) reaches the transport
    as one write, byte for byte what twisted.web would have sent.
    """
    protocol, transport = connectedChannel(Body([b"one", b"two"]))
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(transport.writes) == 1
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"


def test_heldBytesBounded() -> None:
    """
    A channel holds at most L{HOLD_LIMIT} bytes: a larger response is
    written as it grows, in order and whole.
    """
    part = b"x" * (HOLD_LIMIT // 2 + 1)
    protocol, transport = connectedChannel(Body([part] * 5))
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(transport.writes) >= 3
    assert max(map(len, transport.writes)) < 2 * HOLD_LIMIT
    body = transport.value().partition(b"\r\n\r\n")[2]
    chunk = b"%x\r\n%s\r\n" % (len(part), part)
    assert body == chunk * 5 + b"0\r\n\r\n"


def test_pipelinedResponsesInOrder() -> None:
    """
    Pipelined requests arriving together are answered in order, each
    response sent before the next request is handled.
    """
    protocol, transport = connectedChannel(Body([b"a"]))
    protocol.dataReceived(
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert transport.value().count(b"HTTP/1.1 200 OK") == 2
    assert len(transport.writes) == 2


def test_heldBytesSentBeforeClose() -> None:
    """
    A response to a request that closes the connection (HTTP/1.0) is
    written whole before the transport is asked to close.
    """
    events: list[str] = []

    class Watching(RecordingTransport):
        def write(self, data: bytes) -> None:
            events.append("write")
            super().write(data)

        def loseConnection(self) -> None:
            events.append("close")
            super().loseConnection()

    protocol = GatewaySite(Body([b"bye"])).buildProtocol(None)
    transport = Watching()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
    assert events == ["write", "close"]
    assert transport.value().endswith(b"\r\n\r\nbye")


def test_heldBytesDroppedWhenConnectionLost() -> None:
    """
    Bytes held for a connection that is lost during the batch are dropped,
    not written to the dead transport.
    """
    protocol, transport = connectedChannel(Body([]))
    channel = getattr(protocol, "_channel", protocol)
    startBatch()
    try:
        channel.write(b"held")
        assert transport.writes == []
        protocol.connectionLost(Failure(ConnectionDone()))
    finally:
        endBatch()
    assert transport.writes == []


def test_httpDateOncePerSecond(monkeypatch: Any) -> None:
    """
    L{httpDate} formats the time as twisted.web does, once per second.
    """
    now = [1_700_000_000.25]
    monkeypatch.setattr(site, "time", lambda: now[0])
    formatted: list[object] = []
    real = site.http.datetimeToString

    def counting(seconds: object = None) -> bytes:
        formatted.append(seconds)
        return real(seconds)  # type: ignore[no-any-return]

    monkeypatch.setattr(site.http, "datetimeToString", counting)
    first = httpDate()
    assert first == real(1_700_000_000)
    now[0] = 1_700_000_000.9
    assert httpDate() == first
    now[0] = 1_700_000_001.0
    assert httpDate() == real(1_700_000_001)
    assert formatted == [1_700_000_000, 1_700_000_001]


class Pending(Resource):
    """
    Keeps each request open until the test finishes it.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render_GET(self, request: Any) -> int:
        self.requests.append(request)
        return NOT_DONE_YET


def timedChannel(root: Resource, timeout: int = 60) -> tuple[Any, StringTransport, Any]:
    clock = MemoryReactorClock()
    protocol = GatewaySite(root, timeout=timeout, reactor=clock).buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, clock


def test_idleConnectionTimesOut() -> None:
    """
    A connection with no request for the site's timeout is closed.
    """
    protocol, transport, clock = timedChannel(Pending(), timeout=10)
    clock.advance(9)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting


def test_noTimeoutDuringRequest() -> None:
    """
    The idle timeout does not run while a request is handled, however long;
    it starts again, whole, when the request is done.
    """
    root = Pending()
    protocol, transport, clock = timedChannel(root, timeout=10)
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    clock.advance(35)
    assert not transport.disconnecting
    root.requests[0].finish()
    clock.advance(9)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting


def test_oneIdleTimerPerConnection() -> None:
    """
    Requests on a kept connection reuse one timer: no timer is made or
    cancelled per request, and client bytes push the deadline back.
    """
    root = Pending()
    protocol, transport, clock = timedChannel(root, timeout=10)
    timers = list(clock.getDelayedCalls())
    assert len(timers) == 1
    for _ in range(3):
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        root.requests.pop().finish()
        clock.advance(6)
    assert list(clock.getDelayedCalls()) == timers
    assert not transport.disconnecting
    clock.advance(4)
    assert transport.disconnecting


def test_idleTimerStoppedWhenConnectionLost() -> None:
    """
    A lost connection leaves no timer behind, also when it was lost during
    a request.
    """
    for duringRequest in (False, True):
        root = Pending()
        protocol, transport, clock = timedChannel(root)
        if duringRequest:
            protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        protocol.connectionLost(Failure(ConnectionDone()))
        assert clock.getDelayedCalls() == []
