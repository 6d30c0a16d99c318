# -*- test-case-name: tests.test_application -*-
"""
The FastCGI application server: a Twisted protocol and factory that accept
connections from a web server and run each request through a handler.

A handler is a callable taking one L{ApplicationRequest}::

    def hello(request: ApplicationRequest) -> None:
        request.write(b"Content-Type: text/plain\\r\\n\\r\\nhello\\n")

When the handler returns, the request is finished (END_REQUEST, appStatus 0),
unless it already called L{ApplicationRequest.finish}.  A handler that works
asynchronously returns a L{Deferred}: the request finishes when it fires (an
C{int} result is the appStatus).  An exception or failure is logged, its
traceback goes to FCGI_STDERR, a Responder that wrote nothing yet answers
C{500}, and the request ends with appStatus 1.

Roles (SPEC.md 7.5): Responder requests get the body as
L{ApplicationRequest.stdin}; Authorizer requests get an already-ended, empty
C{stdin} (whatever STDIN the web server sends is dropped); Filter requests get
C{stdin} and the file to filter as L{ApplicationRequest.data}, and must read
all of C{stdin} before writing.

Backpressure: the bodies are L{InputStream}s, delivered to an L{BodyProtocol}
whose transport is the stream (an L{IPushProducer}); pausing a stream, or
leaving more than C{highWater} bytes unread, stops reading the connection.
On the way out, L{ApplicationRequest} is an L{IConsumer}: a producer
registered on it is paused and resumed with the connection's transport, and
L{ApplicationRequest.whenWritable} gives a Deferred for code that cannot be a
producer (the WSGI threads).  With several requests on one connection, a
paused transport pauses all of them, and a paused body stops all bodies.

Abort (FCGI_ABORT_REQUEST): the request is marked C{aborted}, its unfinished
input streams fail with L{RequestAbortedError}, its
L{ApplicationRequest.notifyAbort} Deferreds fire (their callbacks may still
write and call C{finish}), the Deferred the handler returned is cancelled, a
registered producer is stopped, and if it is still not finished the request
ends at once with END_REQUEST and appStatus L{ABORTED_APP_STATUS}.  Later
writes are dropped.  A lost connection aborts its requests the same way,
without writing anything.

C{FCGI_WEB_SERVER_ADDRS} (SPEC.md 7.1): when set, connections from TCP peers
whose address is not in the list are closed at once.  Unix-domain peers are
accepted, as libfcgi does: a Unix socket has no peer address to check, and its
file permissions are the access control (the spec's "close non-TCP peers"
would make the variable unusable with the Unix sockets every web server uses).
"""

from __future__ import annotations

import ipaddress
from collections import deque
from typing import Any, Callable, Mapping, cast, Protocol as TypingProtocol

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer  # type: ignore[import-untyped]

from txfastcgi.fcgi.constants import ProtocolStatus, Role
from txfastcgi.fcgi.errors import RemoteProtocolError
from txfastcgi.fcgi.events import (
    DataEnded,
    DataReceived,
    Event,
    ParamsReceived,
    RequestAborted,
    RequestStarted,
    StdinEnded,
    StdinReceived,
    ValuesRequested,
)
from txfastcgi.fcgi.server import DEFAULT_MAX_PARAMS_SIZE, ServerConnection
from txfastcgi._time import DelayedCall, TimeSource

__all__ = [
    "ABORTED_APP_STATUS",
    "ApplicationRequest",
    "FastCGIApplicationFactory",
    "FastCGIApplicationProtocol",
    "Handler",
    "InputStream",
    "RequestAbortedError",
    "StreamDiscardedError",
    "parseWebServerAddrs",
    "peerAllowed",
]

ABORTED_APP_STATUS = 1
"""The appStatus of END_REQUEST for a request ended because it was aborted."""

ERROR_APP_STATUS = 1
"""The appStatus of END_REQUEST for a request whose handler failed."""

DEFAULT_HIGH_WATER = 256 * 1024
"""Unread body bytes buffered per stream before the connection stops reading."""

Handler = Callable[["ApplicationRequest"], Any]
"""A request handler: called with the request, may return a Deferred."""


Clock = TimeSource
"""What the application side uses of a reactor's time API."""


class BodyProtocol(TypingProtocol):
    """
    What L{InputStream.deliverBody} calls on its protocol (a subset of
    L{twisted.internet.interfaces.BodyProtocol}).
    """

    def makeConnection(self, transport: Any) -> None:
        """The stream is about to be delivered; C{transport} is the stream."""

    def dataReceived(self, data: bytes) -> None:
        """A piece of the stream."""

    def connectionLost(self, reason: Failure) -> None:
        """The stream ended (L{ConnectionDone}) or failed."""


class Producer(TypingProtocol):
    """
    A push or pull producer, as registered with
    L{ApplicationRequest.registerProducer}.
    """

    def resumeProducing(self) -> None:
        """Produce (more)."""

    def stopProducing(self) -> None:
        """Stop for good."""


def _failure(exception: BaseException) -> Failure:
    return Failure(exception)  # type: ignore[no-untyped-call]


def _clean(reason: Failure) -> bool:
    return reason.check(ConnectionDone) is not None  # type: ignore[no-untyped-call]


class RequestAbortedError(Exception):
    """
    The web server aborted the request (FCGI_ABORT_REQUEST) or the connection
    carrying it was lost.
    """


class StreamDiscardedError(Exception):
    """
    The request finished before this input stream ended; the rest of it was
    discarded.
    """


def parseWebServerAddrs(value: str | None) -> frozenset[str] | None:
    """
    Parse C{FCGI_WEB_SERVER_ADDRS}: comma-separated dotted-quad IPv4
    addresses.

    @param value: the variable's value, or L{None} if it is not set.
    @return: the set of addresses, or L{None} when every peer is allowed (the
        variable is unset or empty, as libfcgi treats it).
    @raise ValueError: if an entry is not an IPv4 address.
    """
    if value is None or not value.strip():
        return None
    addresses = set()
    for entry in value.split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            addresses.add(str(ipaddress.IPv4Address(entry)))
        except ValueError:
            raise ValueError(
                f"FCGI_WEB_SERVER_ADDRS: {entry!r} is not a dotted-quad IPv4 address"
            ) from None
    return frozenset(addresses)


def peerAllowed(peer: IAddress, allowed: frozenset[str] | None) -> bool:
    """
    Whether C{FCGI_WEB_SERVER_ADDRS} lets C{peer} in.

    @param peer: the address of the connecting web server.
    @param allowed: the parsed list (see L{parseWebServerAddrs}).
    @return: C{True} for any peer when the list is L{None}; else for a TCP
        peer in the list (an IPv4-mapped IPv6 address counts as its IPv4
        address) and for any Unix-domain peer.
    """
    if allowed is None or isinstance(peer, UNIXAddress):
        return True
    if isinstance(peer, IPv4Address):
        return peer.host in allowed
    if isinstance(peer, IPv6Address):
        try:
            mapped = ipaddress.IPv6Address(peer.host.split("%")[0]).ipv4_mapped
        except ValueError:
            return False
        return mapped is not None and str(mapped) in allowed
    return False


@implementer(IPushProducer)
class InputStream:
    """
    One inbound stream of a request (its STDIN body or a Filter's DATA),
    delivered with backpressure.

    States: buffering (no protocol yet; data is kept), delivering (a protocol
    gets data as it arrives unless paused), ended (the end arrived: cleanly,
    or as a failure, which drops unread data) and closed (the protocol got
    C{connectionLost}, or the reader called L{stopProducing}).  The stream
    itself is the transport given to the protocol: it can pause, resume and
    stop it.

    @ivar bytesReceived: how many bytes of the stream have arrived so far.
    """

    def __init__(self, onFlowChange: Callable[[], None], highWater: int) -> None:
        self._onFlowChange = onFlowChange
        self._highWater = highWater
        self._protocol: BodyProtocol | None = None
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._consumerPaused = False
        self._endReason: Failure | None = None
        self._delivered = False
        self._closed = False
        self._flushing = False
        self.bytesReceived = 0

    @property
    def ended(self) -> bool:
        """
        Whether the whole stream has arrived (or it failed): no more data
        will come from the web server.
        """
        return self._endReason is not None

    @property
    def wantsPause(self) -> bool:
        """
        Whether the connection should stop reading for this stream's sake: its
        reader paused it, or too much of it lies unread.
        """
        if self._endReason is not None or self._closed:
            return False
        return self._consumerPaused or self._buffered > self._highWater

    def deliverBody(self, protocol: BodyProtocol) -> None:
        """
        Deliver the stream to C{protocol}: C{makeConnection(self)}, then
        C{dataReceived} per chunk, then C{connectionLost} with
        L{ConnectionDone} at the end (or L{RequestAbortedError} /
        L{StreamDiscardedError} if the stream did not end cleanly).

        @raise RuntimeError: if the stream was already delivered.
        """
        if self._delivered:
            raise RuntimeError("the stream was already delivered")
        self._delivered = True
        self._protocol = protocol
        protocol.makeConnection(self)
        self._flush()
        self._onFlowChange()

    def read(self) -> Deferred[bytes]:
        """
        Collect the whole stream in memory; for small bodies only.

        @return: a Deferred firing with the bytes, or failing if the stream
            does not end cleanly.
        """
        collector = _Collector()
        self.deliverBody(collector)
        return collector.done

    def pauseProducing(self) -> None:
        """
        Stop delivering data until L{resumeProducing}.
        """
        self._consumerPaused = True
        self._onFlowChange()

    def resumeProducing(self) -> None:
        """
        Deliver data again.
        """
        self._consumerPaused = False
        self._flush()
        self._onFlowChange()

    def stopProducing(self) -> None:
        """
        Discard the rest of the stream; the protocol gets no more calls.
        """
        self._closed = True
        self._buffer.clear()
        self._buffered = 0
        self._protocol = None
        self._onFlowChange()

    def _dataReceived(self, data: bytes) -> None:
        if self._endReason is not None or self._closed:
            return
        self.bytesReceived += len(data)
        self._buffer.append(data)
        self._buffered += len(data)
        self._flush()
        if self._buffered > self._highWater:
            self._onFlowChange()

    def _end(self, reason: Failure) -> None:
        if self._endReason is not None:
            return
        self._endReason = reason
        if not _clean(reason):
            self._buffer.clear()
            self._buffered = 0
        self._flush()
        self._onFlowChange()

    def _flush(self) -> None:
        if self._flushing or self._closed:
            return
        protocol = self._protocol
        if protocol is None:
            return
        self._flushing = True
        try:
            while self._buffer and not self._consumerPaused:
                data = self._buffer.popleft()
                self._buffered -= len(data)
                protocol.dataReceived(data)
                if self._protocol is not protocol:
                    return
        finally:
            self._flushing = False
        if self._endReason is not None and not self._buffer and not self._closed:
            self._closed = True
            self._protocol = None
            protocol.connectionLost(self._endReason)


class _Collector(Protocol):
    """
    Gathers a whole L{InputStream} for L{InputStream.read}.
    """

    def __init__(self) -> None:
        self.done: Deferred[bytes] = Deferred()
        self._chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        """
        Keep a chunk.
        """
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = _failure(ConnectionDone())) -> None:
        """
        Fire with the whole stream, or fail.
        """
        if _clean(reason):
            self.done.callback(b"".join(self._chunks))
        else:
            self.done.errback(reason)


@implementer(IConsumer)
class ApplicationRequest:
    """
    One FastCGI request as a handler sees it.

    States: running (the handler may write), finished (END_REQUEST queued by
    L{finish}), or aborted (the web server aborted it or the connection was
    lost; writes are dropped).

    @ivar requestId: the FastCGI request id.
    @ivar role: the L{Role}.
    @ivar keepConnection: whether the web server set FCGI_KEEP_CONN.
    @ivar params: the request's name-value pairs (CGI/1.1 variables), bytes to
        bytes; of a name sent twice the last value wins.
    @ivar stdin: the body (empty and ended for an Authorizer).
    @ivar data: a Filter's DATA stream (empty and ended for other roles).
    @ivar peer: the address of the web server's end of the connection.
    @ivar finished: whether L{finish} was called (or the abort ended it).
    @ivar aborted: whether the request was aborted (set before anything is
        told, so code woken by the failing body already sees it).
    @ivar stdoutWritten: how many bytes were written to STDOUT.
    """

    def __init__(
        self,
        channel: FastCGIApplicationProtocol,
        requestId: int,
        role: int,
        keepConnection: bool,
        peer: IAddress,
        highWater: int = DEFAULT_HIGH_WATER,
    ) -> None:
        self._channel = channel
        self.requestId = requestId
        self.role = Role(role)
        self.keepConnection = keepConnection
        self.peer = peer
        self.params: dict[bytes, bytes] = {}
        self.stdin = InputStream(channel._updateReading, highWater)
        self.data = InputStream(channel._updateReading, highWater)
        if self.role != Role.FILTER:
            self.data._end(_failure(ConnectionDone()))
        if self.role == Role.AUTHORIZER:
            self.stdin._end(_failure(ConnectionDone()))
        self.finished = False
        self.aborted = False
        self.stdoutWritten = 0
        self._abortWaiters: list[Deferred[None]] = []
        self._finishWaiters: list[Deferred[None]] = []
        self._writableWaiters: list[Deferred[None]] = []
        self._producer: Producer | None = None
        self._streaming = False
        self._pullCall: DelayedCall | None = None
        self._handlerResult: Deferred[Any] | None = None
        self._inAbortCallbacks = False

    def __repr__(self) -> str:
        return f"<ApplicationRequest {self.requestId} {self.role.name}>"

    # --- output --------------------------------------------------------------

    @property
    def writePaused(self) -> bool:
        """
        Whether the connection's transport asked writers to pause.
        """
        return self._channel._writePaused

    def write(self, data: bytes) -> None:
        """
        Write bytes to FCGI_STDOUT (a CGI response: head, blank line, body).

        Dropped silently once the request was aborted.

        @raise RuntimeError: after L{finish}.
        @raise txfastcgi.fcgi.errors.LocalProtocolError: for a Filter that
            has not read all of C{stdin} yet.
        """
        if self.aborted and not self._inAbortCallbacks:
            return
        if self.finished:
            raise RuntimeError("write() called after finish()")
        if data:
            self._channel._connection.sendStdout(self.requestId, data)
            self.stdoutWritten += len(data)
            self._channel._flush()
            self._schedulePull()

    def writeStderr(self, data: bytes) -> None:
        """
        Write bytes to FCGI_STDERR (the web server logs them).

        Dropped silently once the request was aborted.

        @raise RuntimeError: after L{finish}.
        """
        if self.aborted and not self._inAbortCallbacks:
            return
        if self.finished:
            raise RuntimeError("writeStderr() called after finish()")
        if data:
            self._channel._connection.sendStderr(self.requestId, data)
            self._channel._flush()

    def finish(self, appStatus: int = 0) -> None:
        """
        End the request: close its streams and send END_REQUEST with
        C{appStatus} (what a CGI program's exit status would be).  Calling it
        again, or after an abort, does nothing.
        """
        if self.finished or (self.aborted and not self._inAbortCallbacks):
            return
        self._end(appStatus)

    def _end(self, appStatus: int) -> None:
        self.finished = True
        self._channel._connection.endRequest(self.requestId, appStatus)
        self._done(_failure(StreamDiscardedError("the request finished")))
        self._channel._requestDone(self)

    def whenWritable(self) -> Deferred[None]:
        """
        A Deferred that fires when the transport accepts more data (at once
        when it is not paused, or when the request is no longer running).
        """
        if not self.writePaused or self.finished or self.aborted:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._writableWaiters.append(d)
        return d

    def registerProducer(self, producer: Producer, streaming: bool) -> None:
        """
        Register a producer of the response: a streaming one is paused and
        resumed with the transport; a pull one is asked for more on the next
        reactor turn after registration and after each L{write}, while the
        transport is not paused (as a transport asks once its buffer drained).

        @raise RuntimeError: if a producer is already registered.
        """
        if self._producer is not None:
            raise RuntimeError(f"{self._producer!r} is already registered")
        self._producer = producer
        self._streaming = streaming
        if streaming:
            if self.writePaused:
                cast(Any, producer).pauseProducing()
        else:
            self._schedulePull()

    def unregisterProducer(self) -> None:
        """
        Unregister the producer.
        """
        self._producer = None
        if self._pullCall is not None and self._pullCall.active():
            self._pullCall.cancel()
        self._pullCall = None

    def _schedulePull(self) -> None:
        if (
            self._producer is None
            or self._streaming
            or self.writePaused
            or self.finished
            or self.aborted
            or (self._pullCall is not None and self._pullCall.active())
        ):
            return
        self._pullCall = self._channel._clock.callLater(0, self._pull)

    def _pull(self) -> None:
        self._pullCall = None
        producer = self._producer
        if producer is None or self.writePaused or self.finished or self.aborted:
            return
        producer.resumeProducing()

    def _transportPaused(self) -> None:
        if self._producer is not None and self._streaming:
            cast(Any, self._producer).pauseProducing()

    def _transportResumed(self) -> None:
        if self._producer is not None:
            if self._streaming:
                self._producer.resumeProducing()
            else:
                self._schedulePull()
        waiters, self._writableWaiters = self._writableWaiters, []
        for d in waiters:
            d.callback(None)

    # --- abort ---------------------------------------------------------------

    def notifyAbort(self) -> Deferred[None]:
        """
        A Deferred that fires when the request is aborted (never, if it
        finishes first).  Its callbacks run before the request is ended on the
        handler's behalf, so they may still write and call L{finish}.
        """
        d: Deferred[None] = Deferred()
        if self.aborted:
            d.callback(None)
        elif not self.finished:
            self._abortWaiters.append(d)
        return d

    def notifyFinish(self) -> Deferred[None]:
        """
        A Deferred that fires when the request is over: finished or aborted.
        """
        if self.finished or self.aborted:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._finishWaiters.append(d)
        return d

    def _abort(self, connected: bool) -> None:
        """
        Abort the request (see the module docstring).

        @param connected: whether the connection is still there; if not,
            whatever the abort callbacks write is discarded.
        """
        if self.finished or self.aborted:
            return
        self.aborted = True
        reason = _failure(RequestAbortedError(f"request {self.requestId} was aborted"))
        for stream in (self.stdin, self.data):
            stream._end(reason)
        waiters, self._abortWaiters = self._abortWaiters, []
        self._inAbortCallbacks = True
        try:
            for d in waiters:
                d.callback(None)
        finally:
            self._inAbortCallbacks = False
        if self._handlerResult is not None and not self._handlerResult.called:
            self._handlerResult.cancel()
        producer = self._producer
        if producer is not None:
            self.unregisterProducer()
            producer.stopProducing()
        if not self.finished:
            self._end(ABORTED_APP_STATUS)

    def _done(self, reason: Failure) -> None:
        for stream in (self.stdin, self.data):
            if not stream.ended:
                stream._end(reason)
        self.unregisterProducer()
        for d in self._writableWaiters:
            d.callback(None)
        self._writableWaiters = []
        self._abortWaiters = []
        waiters, self._finishWaiters = self._finishWaiters, []
        for d in waiters:
            d.callback(None)


@implementer(IPushProducer)
class FastCGIApplicationProtocol(Protocol):
    """
    One connection from a web server: feeds a L{ServerConnection} and runs
    each request through the factory's handler.

    It is registered on its transport as a streaming producer, so that a full
    send buffer pauses every request's producer; it pauses reading the
    transport while any request's body is paused or has too much unread data.

    States: open; closing (C{loseConnection} called after the last request of
    a connection without FCGI_KEEP_CONN, on a protocol error, or when draining
    and idle); closed (C{connectionLost}: the remaining requests are aborted).
    """

    _log = Logger()
    transport: Any = None

    def __init__(self, factory: FastCGIApplicationFactory) -> None:
        self.factory = factory
        self._clock = factory.clock
        self._connection = ServerConnection(
            maxConns=factory.maxConns,
            maxReqs=factory.maxReqs,
            multiplex=factory.multiplex,
            maxParamsSize=factory.maxParamsSize,
        )
        self.requests: dict[int, ApplicationRequest] = {}
        self._writePaused = False
        self._readPaused = False
        self._closing = False
        self._connected = False

    def connectionMade(self) -> None:
        """
        Register as the transport's producer and join the factory.
        """
        self._connected = True
        assert self.transport is not None
        self.transport.registerProducer(self, True)
        self.factory._connections.add(self)

    def dataReceived(self, data: bytes) -> None:
        """
        Feed bytes to the codec and act on the events.
        """
        if self._closing:
            return
        try:
            events = self._connection.receiveData(data)
        except RemoteProtocolError as e:
            self._log.warn(
                "FastCGI protocol error from {peer}: {error}; closing the connection",
                peer=self._peer(),
                error=str(e),
            )
            self._flush()
            self._close()
            return
        for event in events:
            self._dispatch(event)
        self._flush()

    def _peer(self) -> str:
        if self.transport is None:
            return "?"
        peer = self.transport.getPeer()
        if isinstance(peer, (IPv4Address, IPv6Address)):
            return f"{peer.host}:{peer.port}"
        if isinstance(peer, UNIXAddress):
            return f"unix:{peer.name!r}"
        return str(peer)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, RequestStarted):
            self._requestStarted(event)
            return
        if isinstance(event, ValuesRequested):
            self._log.debug("GET_VALUES {names}", names=event.names)
            return
        request = self.requests.get(getattr(event, "requestId", -1))
        if request is None:
            return
        if isinstance(event, ParamsReceived):
            request.params = dict(event.params)
            self._runHandler(request)
        elif isinstance(event, StdinReceived):
            if request.role != Role.AUTHORIZER:
                request.stdin._dataReceived(event.data)
        elif isinstance(event, StdinEnded):
            request.stdin._end(_failure(ConnectionDone()))
        elif isinstance(event, DataReceived):
            request.data._dataReceived(event.data)
        elif isinstance(event, DataEnded):
            request.data._end(_failure(ConnectionDone()))
        elif isinstance(event, RequestAborted):
            self._log.info(
                "request {requestId} aborted by the web server", requestId=request.requestId
            )
            request._abort(connected=True)
        self._updateReading()

    def _requestStarted(self, event: RequestStarted) -> None:
        factory = self.factory
        if factory.draining or factory.activeRequests >= factory.maxReqs:
            self._log.warn(
                "refusing request {requestId} (OVERLOADED): {why}",
                requestId=event.requestId,
                why="shutting down" if factory.draining else "too many requests",
            )
            self._connection.endRequest(
                event.requestId, protocolStatus=ProtocolStatus.OVERLOADED
            )
            return
        assert self.transport is not None
        request = ApplicationRequest(
            self,
            event.requestId,
            event.role,
            event.keepConnection,
            self.transport.getPeer(),
            factory.highWater,
        )
        self.requests[event.requestId] = request
        factory.activeRequests += 1

    def _runHandler(self, request: ApplicationRequest) -> None:
        result = maybeDeferred(self.factory.handler, request)
        request._handlerResult = result
        result.addCallbacks(
            lambda value: self._handlerDone(request, value),
            lambda failure: self._handlerFailed(request, failure),
        )

    def _handlerDone(self, request: ApplicationRequest, value: object) -> None:
        if not request.finished and not request.aborted:
            request.finish(value if isinstance(value, int) and not isinstance(value, bool) else 0)

    def _handlerFailed(self, request: ApplicationRequest, failure: Failure) -> None:
        if request.aborted:
            return
        self._log.failure(
            "handler failed for request {requestId}",
            failure=failure,
            requestId=request.requestId,
        )
        if request.finished:
            return
        text = failure.getTraceback()
        try:
            request.writeStderr(text.encode("utf-8", "replace"))
            if request.stdoutWritten == 0 and request.role != Role.FILTER:
                request.write(
                    b"Status: 500 Internal Server Error\r\n"
                    b"Content-Type: text/plain\r\n\r\nInternal Server Error\n"
                )
        except Exception:
            pass
        request.finish(ERROR_APP_STATUS)

    def _requestDone(self, request: ApplicationRequest) -> None:
        if self.requests.pop(request.requestId, None) is not None:
            self.factory.activeRequests -= 1
            self.factory._requestDone()
        self._updateReading()
        self._flush()

    def _flush(self) -> None:
        if self.transport is None or not self._connected:
            self._connection.dataToSend()
            return
        chunks = self._connection.dataToSend()
        if chunks:
            self.transport.writeSequence(chunks)
        if self._connection.shouldClose:
            self._close()
        elif self.factory.draining and not self.requests and not self._connection.activeRequestIds:
            self._close()

    def _close(self) -> None:
        if not self._closing and self.transport is not None:
            self._closing = True
            # A transport with a registered producer may wait for it to be
            # unregistered before it closes (ITransport.loseConnection).
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    def _updateReading(self) -> None:
        if self.transport is None or not self._connected or self._closing:
            return
        want = any(
            r.stdin.wantsPause or r.data.wantsPause for r in self.requests.values()
        )
        if want and not self._readPaused:
            self._readPaused = True
            self.transport.pauseProducing()
        elif not want and self._readPaused:
            self._readPaused = False
            self.transport.resumeProducing()

    # --- IPushProducer (the transport's send buffer) ---------------------------

    def pauseProducing(self) -> None:
        """
        The transport's send buffer is full: pause every request's producer.
        """
        self._writePaused = True
        for request in list(self.requests.values()):
            request._transportPaused()

    def resumeProducing(self) -> None:
        """
        The transport drained: resume the requests' producers and writers.
        """
        self._writePaused = False
        for request in list(self.requests.values()):
            request._transportResumed()

    def stopProducing(self) -> None:
        """
        The transport is going away; C{connectionLost} follows.
        """

    def abortConnection(self) -> None:
        """
        Close the connection at once, aborting its requests (used when a drain
        times out).
        """
        if self.transport is not None:
            self._closing = True
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure = _failure(ConnectionDone())) -> None:
        """
        Abort the requests still running and leave the factory.
        """
        self._connected = False
        for request in list(self.requests.values()):
            self._log.info(
                "connection lost during request {requestId}",
                requestId=request.requestId,
            )
            request._abort(connected=False)
        self.factory._connections.discard(self)
        self.factory._requestDone()


class FastCGIApplicationFactory(ServerFactory):
    """
    Builds L{FastCGIApplicationProtocol}s for a handler, and keeps the limits
    and the state of the whole application server.

    @ivar handler: the request handler.
    @ivar clock: the reactor's time interface (drain timeouts, pull
        producers).
    @ivar maxConns: connections accepted at once (more are closed at once);
        reported as C{FCGI_MAX_CONNS}.
    @ivar maxReqs: requests running at once over all connections (more are
        answered with C{FCGI_OVERLOADED}); reported as C{FCGI_MAX_REQS}.
    @ivar multiplex: whether one connection may carry several requests at
        once; reported as C{FCGI_MPXS_CONNS}.
    @ivar maxParamsSize: the most bytes of one request's PARAMS.
    @ivar webServerAddrs: the allowed TCP peers (C{FCGI_WEB_SERVER_ADDRS}),
        or L{None} for any.
    @ivar activeRequests: requests running now.
    @ivar draining: whether L{drain} was called (new requests are refused).
    """

    _log = Logger()
    protocol = FastCGIApplicationProtocol

    def __init__(
        self,
        handler: Handler,
        clock: Clock,
        *,
        maxConns: int = 100,
        maxReqs: int = 100,
        multiplex: bool = True,
        maxParamsSize: int = DEFAULT_MAX_PARAMS_SIZE,
        webServerAddrs: frozenset[str] | None = None,
        highWater: int = DEFAULT_HIGH_WATER,
    ) -> None:
        self.handler = handler
        self.clock = clock
        self.maxConns = maxConns
        self.maxReqs = maxReqs
        self.multiplex = multiplex
        self.maxParamsSize = maxParamsSize
        self.webServerAddrs = webServerAddrs
        self.highWater = highWater
        self.activeRequests = 0
        self.draining = False
        self._connections: set[FastCGIApplicationProtocol] = set()
        self._drainWaiters: list[Deferred[None]] = []

    @classmethod
    def fromEnvironment(
        cls, handler: Handler, clock: Clock, environ: Mapping[str, str], **kwargs: Any
    ) -> FastCGIApplicationFactory:
        """
        Build a factory that honours C{FCGI_WEB_SERVER_ADDRS} from
        C{environ}.

        @raise ValueError: if the variable is malformed.
        """
        addrs = parseWebServerAddrs(environ.get("FCGI_WEB_SERVER_ADDRS"))
        return cls(handler, clock, webServerAddrs=addrs, **kwargs)

    def buildProtocol(self, addr: IAddress) -> FastCGIApplicationProtocol | None:  # type: ignore[override]
        """
        Build a protocol for a connection from C{addr}, or refuse it (return
        L{None}, which closes it) when C{FCGI_WEB_SERVER_ADDRS} does not allow
        the peer, C{maxConns} connections are open, or the server is draining.
        """
        if not peerAllowed(addr, self.webServerAddrs):
            self._log.warn(
                "closing connection from {peer}: not in FCGI_WEB_SERVER_ADDRS",
                peer=str(addr),
            )
            return None
        if len(self._connections) >= self.maxConns:
            self._log.warn(
                "closing connection from {peer}: {maxConns} connections open",
                peer=str(addr),
                maxConns=self.maxConns,
            )
            return None
        if self.draining:
            return None
        return FastCGIApplicationProtocol(self)

    @property
    def connections(self) -> frozenset[FastCGIApplicationProtocol]:
        """
        The open connections.
        """
        return frozenset(self._connections)

    def drain(self, timeout: float) -> Deferred[None]:
        """
        Stop taking requests and wait for the running ones to finish: idle
        connections are closed now, busy ones after their last request; after
        C{timeout} seconds the remaining connections are aborted.

        @return: a Deferred that fires when no request is running and every
            connection is closed (or aborted at the timeout).
        """
        self.draining = True
        d: Deferred[None] = Deferred()
        self._drainWaiters.append(d)
        for connection in list(self._connections):
            connection._flush()
        timer = self.clock.callLater(timeout, self._drainTimedOut)

        def cancelTimer(result: None) -> None:
            if timer.active():
                timer.cancel()

        d.addCallback(cancelTimer)
        self._requestDone()
        return d

    def _drainTimedOut(self) -> None:
        if not self._drainWaiters:
            return
        self._log.warn(
            "drain timed out with {activeRequests} requests running; aborting them",
            activeRequests=self.activeRequests,
        )
        for connection in list(self._connections):
            for request in list(connection.requests.values()):
                request._abort(connected=False)
            connection.abortConnection()
        self._connections.clear()
        self._requestDone()

    def _requestDone(self) -> None:
        if self.draining and self.activeRequests == 0 and not self._connections:
            waiters, self._drainWaiters = self._drainWaiters, []
            for d in waiters:
                d.callback(None)
