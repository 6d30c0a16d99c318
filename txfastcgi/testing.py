# -*- test-case-name: tests.test_testing -*-
"""
Helpers for testing code that talks FastCGI, without sockets, threads or a
running reactor (like C{treq.testing}, built on L{twisted.test.iosim}).

In-memory applications
======================

L{MemoryApplicationEndpoint} is an C{IStreamClientEndpoint} whose
connections lead to a real L{FastCGIApplicationFactory} running a handler
(or, with L{MemoryApplicationEndpoint.fromWSGI}, a WSGI application run
synchronously).  Point a L{txfastcgi.pool.ConnectionPool} at it, start
requests, and call L{MemoryEndpoint.flush} to move the bytes::

    app = MemoryApplicationEndpoint(handler, clock=clock)
    pool = ConnectionPool(clock, app, probeValues=False)
    response = ResponseCollector()
    d = pool.request(response.request(makeParams(PATH_INFO="/hello")))
    app.flush()
    self.successResultOf(d)

Scripted peers
==============

L{ScriptedApplicationEndpoint} accepts connections with a L{ScriptedPeer}
that plays a script: a list of steps such as L{ExpectRequest} (wait until
the client has sent a whole request), L{Send} (records, L{Reply} values
addressed to the current request, raw bytes, or callables), L{respond},
L{Close}, L{Pause} and L{Delay}.  Everything the client sent is kept, as
records, in C{received}, so a test can say exactly what went over the wire.
Raw bytes, L{truncated} records and wrong-size records reproduce broken
applications.

Both endpoints complete connects, move bytes and run zero-delay calls of
their clock only inside L{MemoryEndpoint.flush}: nothing happens behind the
test's back, and a L{twisted.trial.unittest.SynchronousTestCase} sees every
result with C{successResultOf}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol as TypingProtocol
from typing import Sequence, Union, cast

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump
from zope.interface import implementer  # type: ignore[import-untyped]

from txfastcgi.application import (
    ApplicationRequest,
    FastCGIApplicationFactory,
    Handler,
)
from txfastcgi.cgiresponse import ResponseHead, ResponseHeadParser
from txfastcgi.client import BodySource, FastCGIRequest
from txfastcgi.fcgi.constants import (
    FCGI_MAX_CONTENT_LENGTH,
    FCGI_NULL_REQUEST_ID,
    ProtocolStatus,
    RecordType,
    Role,
)
from txfastcgi.fcgi.errors import RemoteProtocolError
from txfastcgi.fcgi.records import (
    PairDecoder,
    Record,
    RecordReader,
    encodeEndRequestBody,
    encodePairs,
    encodeRecord,
    readRecords,
)
from txfastcgi.wsgi import WSGIApplication, WSGIHandler

__all__ = [
    "APPLICATION_ADDRESS",
    "Call",
    "Close",
    "Delay",
    "Expect",
    "ExpectRequest",
    "MemoryApplicationEndpoint",
    "MemoryConnection",
    "MemoryEndpoint",
    "Pause",
    "Reply",
    "ResponseCollector",
    "ScriptedApplicationEndpoint",
    "ScriptedPeer",
    "Send",
    "SendItem",
    "SendSpec",
    "Step",
    "endRequest",
    "getValuesResult",
    "makeParams",
    "paramsFrom",
    "recordsFrom",
    "respond",
    "stderr",
    "stdout",
    "streamContent",
    "truncated",
]

APPLICATION_ADDRESS = IPv4Address("TCP", "127.0.0.1", 9000)
"""The address in-memory applications appear to listen on."""

_FIRST_CLIENT_PORT = 40000
_MAX_ROUNDS = 100000


class _ProtocolFactory(TypingProtocol):
    """
    What we use of L{twisted.internet.interfaces.IProtocolFactory}
    (structural, so mypy checks it without the zope plugin).
    """

    def buildProtocol(self, addr: Any) -> Any:
        """
        Build a protocol for a connection from C{addr}, or return L{None}.
        """


def _fakeTransport(protocol: Any, isServer: bool, host: Any, peer: Any) -> Any:
    return FakeTransport(  # type: ignore[no-untyped-call]
        protocol, isServer, hostAddress=host, peerAddress=peer
    )


class _Refused(Protocol):
    """
    Stands in for an application that accepted a connection and closed it
    at once (its factory's C{buildProtocol} returned L{None}).
    """

    def connectionMade(self) -> None:
        """
        Close the connection.
        """
        cast(Any, self.transport).loseConnection()


# --- connections and endpoints --------------------------------------------------


class MemoryConnection:
    """
    One in-memory connection between a client protocol and an application
    protocol, through two L{FakeTransport}s.

    @ivar client: the client's protocol (what the endpoint's caller built).
    @ivar server: the application side's protocol.
    @ivar clientTransport: the client protocol's transport.
    @ivar serverTransport: the application protocol's transport.
    @ivar pump: the L{IOPump} moving bytes between them.
    """

    def __init__(self, client: Any, server: Any, clientPort: int, clock: Clock) -> None:
        """
        Connect C{client} and C{server}: C{makeConnection} is called on the
        server first, as a listening port would.

        @param client: the client's protocol.
        @param server: the application side's protocol.
        @param clientPort: the port of the client's (fake) address.
        @param clock: the clock of the L{IOPump}.
        """
        clientAddress = IPv4Address("TCP", "127.0.0.1", clientPort)
        self.client = client
        self.server = server
        self.clientTransport = _fakeTransport(
            client, False, clientAddress, APPLICATION_ADDRESS
        )
        self.serverTransport = _fakeTransport(
            server, True, APPLICATION_ADDRESS, clientAddress
        )
        server.makeConnection(self.serverTransport)
        client.makeConnection(self.clientTransport)
        self.pump = IOPump(  # type: ignore[no-untyped-call]
            client, server, self.clientTransport, self.serverTransport, False, clock=clock
        )

    @property
    def open(self) -> bool:
        """
        Whether either side has not yet been told the connection closed.
        """
        return not (self.clientTransport.disconnected and self.serverTransport.disconnected)

    def close(self) -> None:
        """
        Close the connection from the application's side, as an application
        dropping an idle connection does; the client hears of it on the next
        L{MemoryEndpoint.flush}.
        """
        self.serverTransport.loseConnection()

    def _pump(self) -> bool:
        if not self.open:
            return False
        return bool(self.pump.pump(advanceClock=False))  # type: ignore[no-untyped-call]


@implementer(IStreamClientEndpoint)
class MemoryEndpoint:
    """
    A client endpoint whose connections lead, in memory, to protocols built
    by a server factory.  Subclasses: L{MemoryApplicationEndpoint} and
    L{ScriptedApplicationEndpoint}.

    Connects complete, bytes move and the clock's zero-delay calls run only
    in L{flush}.

    @ivar clock: the clock whose zero-delay calls L{flush} runs; the
        application side uses it for its timers.
    @ivar connections: every connection made, in order, open or closed.
    @ivar connectAttempts: how many times L{connect} was called.
    @ivar connectError: when set, connects fail with this exception (in
        L{flush}), as with an application that is not listening.
    @ivar holdConnects: when C{True}, connects stay pending (a connect timeout
        can then be tested with the clock).
    """

    def __init__(self, serverFactory: _ProtocolFactory, *, clock: Clock | None = None) -> None:
        """
        @param serverFactory: builds the application side's protocol for
            each connection (called with the client's address); L{None}
            from it means the connection is accepted and closed at once.
        @param clock: the clock to use; a new L{Clock} by default.
        """
        self.clock = clock if clock is not None else Clock()
        self._serverFactory = serverFactory
        self.connections: list[MemoryConnection] = []
        self.connectAttempts = 0
        self.connectError: BaseException | None = None
        self.holdConnects = False
        self._pending: list[tuple[_ProtocolFactory, Deferred[Any]]] = []

    @property
    def connectionsMade(self) -> int:
        """
        How many connections were established.
        """
        return len(self.connections)

    @property
    def openConnections(self) -> int:
        """
        How many connections are open now.
        """
        return sum(1 for connection in self.connections if connection.open)

    @property
    def pendingConnects(self) -> int:
        """
        How many connects wait for L{flush} (or for C{holdConnects} to end).
        """
        return len(self._pending)

    def connect(self, protocolFactory: _ProtocolFactory) -> Deferred[Any]:
        """
        Connect to the application; the connection is made by the next
        L{flush}.

        @param protocolFactory: builds the client's protocol.
        @return: a Deferred firing with the client's protocol once connected
            and C{connectionMade} was called; cancelling it abandons the
            connect.
        """
        self.connectAttempts += 1

        def cancel(d: Deferred[Any]) -> None:
            self._pending = [entry for entry in self._pending if entry[1] is not d]

        d: Deferred[Any] = Deferred(cancel)
        self._pending.append((protocolFactory, d))
        return d

    def connectClient(self, protocol: Any) -> MemoryConnection:
        """
        Connect C{protocol} (for example a
        L{txfastcgi.client.FastCGIClientProtocol}) to the application now,
        without a factory or a Deferred.

        @return: the connection.
        """
        return self._makeConnection(protocol)

    def flush(self) -> bool:
        """
        Complete pending connects, move bytes both ways on every connection,
        deliver closes and run the clock's due calls, until nothing moves.

        @return: whether anything happened.
        @raise RuntimeError: if it never settles.
        """
        happened = False
        for _ in range(_MAX_ROUNDS):
            self.clock.advance(0)
            progress = self._completeConnects()
            for connection in list(self.connections):
                if connection._pump():
                    progress = True
            if self._afterPump():
                progress = True
            now = self.clock.seconds()
            if any(cast(Any, call).getTime() <= now for call in self.clock.getDelayedCalls()):
                progress = True
            if not progress:
                return happened
            happened = True
        raise RuntimeError(f"{self!r} did not settle after {_MAX_ROUNDS} rounds")

    def advance(self, seconds: float) -> None:
        """
        Advance the clock by C{seconds}, then L{flush}.
        """
        self.clock.advance(seconds)
        self.flush()

    def _completeConnects(self) -> bool:
        if self.holdConnects or not self._pending:
            return False
        pending, self._pending = self._pending, []
        for factory, d in pending:
            if self.connectError is not None:
                d.errback(Failure(self.connectError))  # type: ignore[no-untyped-call]
                continue
            port = _FIRST_CLIENT_PORT + len(self.connections)
            protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
            if protocol is None:
                d.errback(Failure(RuntimeError(f"{factory!r} built no protocol")))  # type: ignore[no-untyped-call]
                continue
            self._makeConnection(protocol)
            d.callback(protocol)
        return True

    def _makeConnection(self, client: Any) -> MemoryConnection:
        port = _FIRST_CLIENT_PORT + len(self.connections)
        server = self._serverFactory.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        if server is None:
            server = _Refused()
        connection = MemoryConnection(client, server, port, self.clock)
        self.connections.append(connection)
        return connection

    def _afterPump(self) -> bool:
        """
        A hook for subclasses: run work waiting for the bytes just moved.

        @return: whether anything ran.
        """
        return False


# --- an in-memory application -------------------------------------------------------


class _SynchronousReactorThreads:
    """
    Stands in for the reactor of L{WSGIHandler}: "from thread" calls run at
    once, in the caller (which is the test's thread).
    """

    def callFromThread(self, callable: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """
        Call C{callable} now.
        """
        callable(*args, **kwargs)


class _BodyFirstThreadPool:
    """
    Stands in for the thread pool of L{WSGIHandler}: a call is kept until the
    whole body (and a Filter's data) of its request has arrived, then run in
    the test's thread, so that reading C{wsgi.input} never waits.

    @ivar current: the request whose handler is running (set around the
        call to the L{WSGIHandler}).
    """

    def __init__(self) -> None:
        self.current: ApplicationRequest | None = None
        self._calls: list[tuple[ApplicationRequest | None, Callable[[], None]]] = []

    def callInThread(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """
        Keep the call for L{runReady}.
        """
        self._calls.append((self.current, lambda: func(*args, **kwargs)))

    def runReady(self) -> bool:
        """
        Run the calls whose request's input has ended.

        @return: whether any ran.
        """
        ran = False
        while True:
            for index, (request, call) in enumerate(self._calls):
                if request is None or (request.stdin.ended and request.data.ended):
                    del self._calls[index]
                    call()
                    ran = True
                    break
            else:
                return ran


class MemoryApplicationEndpoint(MemoryEndpoint):
    """
    A client endpoint connected, in memory, to a
    L{FastCGIApplicationFactory}: point a pool or a client protocol at it.

    @ivar factory: the application factory.
    @ivar requests: every L{ApplicationRequest} the handler was called
        with, in order.
    """

    def __init__(
        self,
        application: Handler | FastCGIApplicationFactory,
        *,
        clock: Clock | None = None,
        **factoryOptions: Any,
    ) -> None:
        """
        @param application: a handler (see L{txfastcgi.application}), or a
            ready factory (whose C{handler} is then wrapped to record the
            requests, and whose clock should be C{clock}).
        @param clock: the clock for both sides; a new L{Clock} by default.
        @param factoryOptions: keyword arguments for the
            L{FastCGIApplicationFactory} built around a handler (C{maxConns},
            C{maxReqs}, C{multiplex}, ...).
        """
        clock = clock if clock is not None else Clock()
        if isinstance(application, FastCGIApplicationFactory):
            if factoryOptions:
                raise TypeError("factory options given with a ready factory")
            factory = application
        else:
            factory = FastCGIApplicationFactory(application, clock, **factoryOptions)
        self.factory = factory
        self.requests: list[ApplicationRequest] = []
        self._handler: Handler = factory.handler
        factory.handler = self._record
        self._threads: _BodyFirstThreadPool | None = None
        super().__init__(factory, clock=clock)

    @classmethod
    def fromWSGI(
        cls,
        application: WSGIApplication,
        *,
        clock: Clock | None = None,
        **factoryOptions: Any,
    ) -> MemoryApplicationEndpoint:
        """
        An in-memory application serving a WSGI application through
        L{WSGIHandler}, deterministically: the application runs in the
        test's thread during L{flush}, once its request's whole body has
        arrived (so the body is buffered in memory first).

        @param application: the WSGI application.
        @param clock: see L{MemoryApplicationEndpoint.__init__}.
        @param factoryOptions: see L{MemoryApplicationEndpoint.__init__}.
        """
        threads = _BodyFirstThreadPool()
        # A high-water mark of its own that is never reached: the body is
        # complete when the application runs, and nothing may wait for more.
        wsgi = WSGIHandler(
            _SynchronousReactorThreads(), threads, application, highWater=1 << 62
        )

        def handler(request: ApplicationRequest) -> Any:
            threads.current = request
            try:
                return wsgi(request)
            finally:
                threads.current = None

        endpoint = cls(handler, clock=clock, **factoryOptions)
        endpoint._threads = threads
        return endpoint

    def _record(self, request: ApplicationRequest) -> Any:
        self.requests.append(request)
        return self._handler(request)

    def _afterPump(self) -> bool:
        return self._threads is not None and self._threads.runReady()

    def __repr__(self) -> str:
        return f"<MemoryApplicationEndpoint {self._handler!r}>"


# --- scripted peers ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """
    A record a L{ScriptedPeer} sends, for the request it is serving unless
    C{requestId} is given.  Its content is sent as is, so a wrong-size
    END_REQUEST is C{Reply(RecordType.END_REQUEST, bytes(5))}.

    @ivar type: the record type.
    @ivar content: the content (at most 65535 bytes).
    @ivar requestId: the request id, or L{None} for the current request.
    """

    type: int
    content: bytes = b""
    requestId: int | None = None

    def encode(self, currentRequestId: int | None) -> bytes:
        """
        The record's bytes.

        @param currentRequestId: the id used when C{requestId} is L{None}.
        @raise RuntimeError: if both are L{None}.
        """
        requestId = self.requestId if self.requestId is not None else currentRequestId
        if requestId is None:
            raise RuntimeError(f"{self!r} needs a request id, and no request was expected yet")
        return encodeRecord(self.type, requestId, self.content)


def stdout(data: bytes = b"") -> Reply:
    """
    A STDOUT record for the current request (empty: the end of STDOUT).
    """
    return Reply(RecordType.STDOUT, data)


def stderr(data: bytes = b"") -> Reply:
    """
    A STDERR record for the current request (empty: the end of STDERR).
    """
    return Reply(RecordType.STDERR, data)


def endRequest(
    appStatus: int = 0, protocolStatus: int = ProtocolStatus.REQUEST_COMPLETE
) -> Reply:
    """
    An END_REQUEST record for the current request.
    """
    return Reply(RecordType.END_REQUEST, encodeEndRequestBody(appStatus, protocolStatus))


def getValuesResult(values: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]) -> Reply:
    """
    A GET_VALUES_RESULT record (request id 0).
    """
    pairs = list(values.items()) if isinstance(values, Mapping) else list(values)
    return Reply(RecordType.GET_VALUES_RESULT, encodePairs(pairs), FCGI_NULL_REQUEST_ID)


SendItem = Union[Record, Reply, bytes]
"""Something a L{Send} step writes: a record, a L{Reply}, or raw bytes."""

SendSpec = Union[SendItem, Callable[["ScriptedPeer"], Union[SendItem, Iterable[SendItem]]]]
"""An argument of L{Send}: a L{SendItem}, or a callable of the peer that
returns one or several."""


def _encodeItem(item: SendItem, peer: ScriptedPeer) -> bytes:
    if isinstance(item, Reply):
        return item.encode(peer.requestId)
    if isinstance(item, Record):
        return encodeRecord(item.type, item.requestId, item.content)
    if isinstance(item, bytes):
        return item
    raise TypeError(f"cannot send {item!r}")


def truncated(item: SendItem, length: int) -> Callable[[ScriptedPeer], bytes]:
    """
    The first C{length} bytes of C{item} (for L{Send}): a record cut short.
    """

    def cut(peer: ScriptedPeer) -> bytes:
        return _encodeItem(item, peer)[:length]

    return cut


class Step:
    """
    One step of a L{ScriptedPeer}'s script.  Steps hold no state (a script
    may be played on several connections); the peer does.
    """

    def _expand(self) -> list[Step]:
        """
        The elementary steps this one stands for.
        """
        return [self]

    def _run(self, peer: ScriptedPeer) -> bool:
        """
        Do the step.

        @return: C{True} when done, C{False} to be run again when more
            records arrive.
        """
        raise NotImplementedError


_ANY_REQUEST_TYPES = frozenset(
    {RecordType.BEGIN_REQUEST, RecordType.GET_VALUES, RecordType.GET_VALUES_RESULT}
)


@dataclass(frozen=True, slots=True)
class Expect(Step):
    """
    Wait until a record of C{type} arrives (after the records earlier
    expectations matched; records skipped over stay in C{received}).  A
    BEGIN_REQUEST makes its id the current request id.

    @ivar type: the record type.
    @ivar end: match only an empty record (the end of a stream).
    @ivar requestId: the request id to match; by default the current
        request's (any id for BEGIN_REQUEST and management records, or
        before any request).
    """

    type: int
    end: bool = False
    requestId: int | None = None

    def _run(self, peer: ScriptedPeer) -> bool:
        requestId = self.requestId
        if requestId is None and self.type not in _ANY_REQUEST_TYPES:
            requestId = peer.requestId
        received = peer.received
        for index in range(peer._cursor, len(received)):
            record = received[index]
            if record.type != self.type:
                continue
            if requestId is not None and record.requestId != requestId:
                continue
            if self.end and record.content:
                continue
            peer._cursor = index + 1
            if record.type == RecordType.BEGIN_REQUEST:
                peer.requestId = record.requestId
                peer.requestIds.append(record.requestId)
            return True
        return False


@dataclass(frozen=True, slots=True)
class ExpectRequest(Step):
    """
    Wait for a whole request: BEGIN_REQUEST, the end of PARAMS, the end of
    STDIN and, with C{data}, the end of DATA (a Filter's).

    @ivar data: also wait for the end of the DATA stream.
    """

    data: bool = False

    def _expand(self) -> list[Step]:
        steps: list[Step] = [
            Expect(RecordType.BEGIN_REQUEST),
            Expect(RecordType.PARAMS, end=True),
            Expect(RecordType.STDIN, end=True),
        ]
        if self.data:
            steps.append(Expect(RecordType.DATA, end=True))
        return steps


class Send(Step):
    """
    Write records or raw bytes, all in one write.

    @ivar items: what to send: L{Record}s (sent with their own request id),
        L{Reply} values (for the current request unless they say
        otherwise), raw bytes, or callables taking the L{ScriptedPeer} and
        returning one or several of those.
    """

    def __init__(self, *items: SendSpec) -> None:
        """
        @param items: see C{items}.
        """
        self.items = items

    def __repr__(self) -> str:
        return f"Send{self.items!r}"

    def _run(self, peer: ScriptedPeer) -> bool:
        out: list[bytes] = []
        for spec in self.items:
            if callable(spec):
                produced = spec(peer)
                if isinstance(produced, (Record, Reply, bytes)):
                    out.append(_encodeItem(produced, peer))
                else:
                    out.extend(_encodeItem(item, peer) for item in produced)
            else:
                out.append(_encodeItem(spec, peer))
        cast(Any, peer.transport).write(b"".join(out))
        return True


def respond(
    stdoutData: bytes = b"",
    *,
    stderrData: bytes = b"",
    appStatus: int = 0,
    protocolStatus: int = ProtocolStatus.REQUEST_COMPLETE,
) -> Send:
    """
    A complete answer to the current request: STDOUT (split into records
    as needed) and its end, STDERR if any and its end, and END_REQUEST.
    """
    items: list[SendSpec] = []
    for streamType, data in ((RecordType.STDOUT, stdoutData), (RecordType.STDERR, stderrData)):
        if streamType == RecordType.STDERR and not data:
            continue
        for start in range(0, len(data), FCGI_MAX_CONTENT_LENGTH):
            items.append(Reply(streamType, data[start : start + FCGI_MAX_CONTENT_LENGTH]))
        items.append(Reply(streamType))
    items.append(endRequest(appStatus, protocolStatus))
    return Send(*items)


@dataclass(frozen=True, slots=True)
class Close(Step):
    """
    Close the connection; later steps are not played.
    """

    def _run(self, peer: ScriptedPeer) -> bool:
        cast(Any, peer.transport).loseConnection()
        peer._closing = True
        return True


@dataclass(frozen=True, slots=True)
class Pause(Step):
    """
    Stop playing the script until L{ScriptedPeer.resume} (or
    L{ScriptedApplicationEndpoint.resume}); records still arrive and are
    kept.
    """

    def _run(self, peer: ScriptedPeer) -> bool:
        peer.paused = True
        return True


@dataclass(frozen=True, slots=True)
class Delay(Step):
    """
    Stop playing the script for C{seconds} of the endpoint's clock.

    @ivar seconds: how long.
    """

    seconds: float

    def _run(self, peer: ScriptedPeer) -> bool:
        peer.paused = True
        peer._clock.callLater(self.seconds, peer.resume)
        return True


@dataclass(frozen=True, slots=True)
class Call(Step):
    """
    Call C{function} with the L{ScriptedPeer} (to act on the client side at
    a precise point of the exchange, say).

    @ivar function: what to call.
    """

    function: Callable[[ScriptedPeer], object]

    def _run(self, peer: ScriptedPeer) -> bool:
        self.function(peer)
        return True


def _recordsBefore(data: bytes) -> list[Record]:
    """
    The whole records at the start of C{data}, before what breaks the
    protocol (read byte by byte to find where that is).
    """
    reader = RecordReader()
    records: list[Record] = []
    for index in range(len(data)):
        try:
            records.extend(reader.feed(data[index : index + 1]))
        except RemoteProtocolError:
            break
    return records


class ScriptedPeer(Protocol):
    """
    The application side of one connection to a
    L{ScriptedApplicationEndpoint}: it plays its script step by step,
    waiting where an L{Expect} step waits, and keeps every record received.

    States: I{playing} (steps run as soon as they can), I{paused} (after
    L{Pause} or during L{Delay}), I{done} (every step ran, or L{Close} ran);
    records are received and kept in every state until the connection is
    lost.

    @ivar script: the elementary steps.
    @ivar position: the index of the next step to play.
    @ivar received: every record received, in order.
    @ivar requestId: the id of the last BEGIN_REQUEST an expectation
        matched, or L{None}.
    @ivar requestIds: the ids of every BEGIN_REQUEST expectations matched.
    @ivar paused: whether the script is paused.
    @ivar readError: what went wrong if the client sent bytes that are not
        FastCGI records (the peer then ignores further input).
    @ivar lostReason: why the connection closed, once it did.
    """

    def __init__(self, script: Sequence[Step], clock: Clock) -> None:
        """
        @param script: the steps to play.
        @param clock: for L{Delay}.
        """
        self.script = [elementary for step in script for elementary in step._expand()]
        self.position = 0
        self.received: list[Record] = []
        self.requestId: int | None = None
        self.requestIds: list[int] = []
        self.paused = False
        self.readError: RemoteProtocolError | None = None
        self.lostReason: Failure | None = None
        self._clock = clock
        self._cursor = 0
        self._reader = RecordReader()
        self._tail = b""
        self._closing = False
        self._playing = False

    @property
    def done(self) -> bool:
        """
        Whether the whole script was played (or a L{Close} ended it).
        """
        return self._closing or self.position >= len(self.script)

    def connectionMade(self) -> None:
        """
        Start playing.
        """
        self._play()

    def dataReceived(self, data: bytes) -> None:
        """
        Keep the records in C{data}, then play on.
        """
        if self.readError is not None:
            return
        try:
            records = self._reader.feed(data)
        except RemoteProtocolError as e:
            # Keep the records that came before the bad bytes.
            self.received.extend(_recordsBefore(self._tail + data))
            self.readError = e
            return
        self._tail = b"" if self._reader.atRecordBoundary else self._tail + data
        self.received.extend(records)
        self._play()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Remember why the connection closed; stop playing.
        """
        self.lostReason = reason

    def resume(self) -> None:
        """
        Play on after L{Pause} or L{Delay}.
        """
        if self.paused:
            self.paused = False
            self._play()

    def _play(self) -> None:
        if self._playing:
            return
        self._playing = True
        try:
            while not self.done and not self.paused and self.lostReason is None:
                if not self.script[self.position]._run(self):
                    return
                self.position += 1
        finally:
            self._playing = False

    def __repr__(self) -> str:
        return (
            f"<ScriptedPeer step {self.position}/{len(self.script)} "
            f"{len(self.received)} records received>"
        )


class _ScriptedFactory:
    """
    Builds the L{ScriptedPeer} of each connection: connection I{n} plays
    script I{n}, later ones the last script.
    """

    def __init__(self, endpoint: ScriptedApplicationEndpoint) -> None:
        self._endpoint = endpoint

    def buildProtocol(self, addr: Any) -> ScriptedPeer:
        endpoint = self._endpoint
        scripts = endpoint.scripts
        script = scripts[min(len(endpoint.peers), len(scripts) - 1)]
        peer = ScriptedPeer(script, endpoint.clock)
        endpoint.peers.append(peer)
        return peer


class ScriptedApplicationEndpoint(MemoryEndpoint):
    """
    A client endpoint whose connections lead to L{ScriptedPeer}s: a fake
    application that plays a script of records, for testing how a client
    copes with good and bad applications.

    Connection I{n} plays C{scripts[n]}; connections beyond the last script
    play the last one again.

    @ivar scripts: the scripts.
    @ivar peers: the peer of each connection, in order.
    """

    def __init__(self, *scripts: Sequence[Step], clock: Clock | None = None) -> None:
        """
        @param scripts: one script per connection (at least one).
        @param clock: the clock for L{Delay} and L{flush}.
        @raise ValueError: without a script.
        """
        if not scripts:
            raise ValueError("at least one script is needed")
        self.scripts = [list(script) for script in scripts]
        self.peers: list[ScriptedPeer] = []
        super().__init__(_ScriptedFactory(self), clock=clock)

    @property
    def received(self) -> list[Record]:
        """
        Every record received, on all connections, in connection order.
        """
        return [record for peer in self.peers for record in peer.received]

    def resume(self) -> None:
        """
        Resume every paused peer (see L{Pause}).
        """
        for peer in self.peers:
            peer.resume()

    def __repr__(self) -> str:
        return f"<ScriptedApplicationEndpoint {len(self.scripts)} scripts>"


# --- small helpers -------------------------------------------------------------------


def recordsFrom(data: bytes) -> list[Record]:
    """
    Decode a complete byte string of records (what a transport got).

    @raise txfastcgi.fcgi.errors.RemoteProtocolError: for bytes that are not
        whole records.
    """
    return readRecords(data)


def _matching(records: Iterable[Record], recordType: int, requestId: int | None) -> list[Record]:
    return [
        r
        for r in records
        if r.type == recordType and (requestId is None or r.requestId == requestId)
    ]


def streamContent(
    records: Iterable[Record], recordType: int, requestId: int | None = None
) -> bytes:
    """
    The content of a stream (STDIN, STDOUT, PARAMS, ...) among C{records}.

    @param requestId: the request whose stream to take; all by default.
    """
    return b"".join(r.content for r in _matching(records, recordType, requestId))


def paramsFrom(records: Iterable[Record], requestId: int | None = None) -> dict[bytes, bytes]:
    """
    Decode the PARAMS stream among C{records} (of a name sent twice the last
    value wins).

    @param requestId: the request whose PARAMS to take; all by default.
    """
    decoder = PairDecoder()
    pairs = decoder.feed(streamContent(records, RecordType.PARAMS, requestId))
    decoder.finish()
    return dict(pairs)


_DEFAULT_PARAMS: dict[str, str] = {
    "GATEWAY_INTERFACE": "CGI/1.1",
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/",
    "QUERY_STRING": "",
    "SERVER_NAME": "localhost",
    "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
}


def makeParams(**variables: str | bytes | None) -> list[tuple[bytes, bytes]]:
    """
    CGI variables for a request: sensible defaults (C{GET /}, as a gateway
    would send them) overridden by C{variables}.  C{str} values are encoded
    as latin-1; L{None} removes a default.
    """
    merged: dict[str, str | bytes | None] = dict(_DEFAULT_PARAMS)
    merged.update(variables)
    return [
        (name.encode("latin-1"), value if isinstance(value, bytes) else value.encode("latin-1"))
        for name, value in merged.items()
        if value is not None
    ]


class ResponseCollector:
    """
    Collects what a L{FastCGIRequest} receives: give its C{writeStdout} and
    C{writeStderr} to the request, or let L{request} build one.

    @ivar stdoutChunks: each piece of STDOUT, as delivered.
    @ivar stderrChunks: each piece of STDERR.
    """

    def __init__(self) -> None:
        self.stdoutChunks: list[bytes] = []
        self.stderrChunks: list[bytes] = []

    def writeStdout(self, data: bytes) -> None:
        """
        Keep a piece of STDOUT.
        """
        self.stdoutChunks.append(data)

    def writeStderr(self, data: bytes) -> None:
        """
        Keep a piece of STDERR.
        """
        self.stderrChunks.append(data)

    @property
    def stdout(self) -> bytes:
        """
        All STDOUT so far.
        """
        return b"".join(self.stdoutChunks)

    @property
    def stderr(self) -> bytes:
        """
        All STDERR so far.
        """
        return b"".join(self.stderrChunks)

    @property
    def head(self) -> ResponseHead:
        """
        The CGI response head parsed from STDOUT (status, headers, ...).

        @raise txfastcgi.cgiresponse.MalformedResponseError: if STDOUT holds
            no complete, valid head.
        """
        parser = ResponseHeadParser()
        head = parser.feed(self.stdout)
        if head is None:
            parser.finish()
        assert head is not None
        return head

    @property
    def body(self) -> bytes:
        """
        The STDOUT after the response head.
        """
        return self.head.bodyStart

    def request(
        self,
        params: Iterable[tuple[bytes, bytes]] | None = None,
        *,
        body: BodySource = None,
        role: int = Role.RESPONDER,
        data: BodySource = None,
    ) -> FastCGIRequest:
        """
        A request whose output this collector collects.

        @param params: the CGI variables; L{makeParams}C{()} by default.
        @param body: the body (STDIN).
        @param role: the role.
        @param data: a Filter's data.
        """
        return FastCGIRequest(
            makeParams() if params is None else params,
            writeStdout=self.writeStdout,
            writeStderr=self.writeStderr,
            role=role,
            body=body,
            data=data,
        )
