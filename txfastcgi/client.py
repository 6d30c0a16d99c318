# -*- test-case-name: tests.test_client -*-
"""
The FastCGI client protocol: one connection from the gateway to an application.

Life cycle of a request
=======================

 1. The caller builds a L{FastCGIRequest}: params, role, a body source (bytes
    or a file such as C{twisted.web}'s C{request.content} spool), a
    C{writeStdout} callable and optionally C{writeStderr}.  The request is an
    L{IPushProducer}: the caller registers it on its own consumer (the HTTP
    request), so a slow HTTP client pauses it.

 2. L{FastCGIClientProtocol.request} (usually through
    L{txfastcgi.pool.ConnectionPool.request}) starts it: BEGIN_REQUEST (with
    C{FCGI_KEEP_CONN} unless told otherwise) and every PARAMS record are written
    at once, since libfcgi drops Unix connections that stay silent for ~2 s.

 3. The body goes out as STDIN records, one L{STREAM_CHUNK_SIZE} piece per
    C{resumeProducing} of a pull producer registered on the transport: a slow
    application fills the socket buffer, the transport stops asking, and the
    file is not read further.  STDOUT is read at the same time, so an
    application that answers before reading its body cannot deadlock us.

 4. STDOUT is passed to C{writeStdout} as it arrives.  Pausing the request
    pauses the transport (when every request active on the connection is
    paused) — the application then blocks on its writes.  Bytes already read
    while paused wait in a small per-request buffer.  STDERR goes to
    C{writeStderr} (or the log).

 5. END_REQUEST fires L{FastCGIRequest.finished} with a L{RequestResult} for
    C{REQUEST_COMPLETE}, or fails it with L{CantMultiplexConnection},
    L{ApplicationOverloaded} or L{UnknownRole}.  The request is then detached
    from the connection, so it can never pause a connection that went back to
    a pool.  Other failures: L{ApplicationConnectionLost} (with
    C{responseStarted}), L{MissingEndRequest}, L{ResponseProtocolError},
    L{ResponseTimeout}.

 6. Cancelling C{finished} or calling L{FastCGIRequest.abort} fails it at once
    and sends ABORT_REQUEST; if the application does not end the request
    within C{abortGrace} seconds the connection is closed.

Nothing waits forever: a connection whose application stays silent for
C{responseTimeout} seconds while a request is active (and not paused by its
consumer) is closed and its requests fail with L{ResponseTimeout}.
"""

from __future__ import annotations

from collections import deque
from typing import IO, Callable, Iterable, NamedTuple, Protocol as TypingProtocol
from typing import Sequence, Union, cast

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPullProducer, IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from txfastcgi._time import DelayedCall as DelayedCall, TimeSource as TimeSource
from zope.interface import implementer  # type: ignore[import-untyped]

from txfastcgi.fcgi.client import ClientConnection, OutputState
from txfastcgi.fcgi.constants import (
    FCGI_MAX_CONNS,
    FCGI_MAX_REQS,
    FCGI_MPXS_CONNS,
    ProtocolStatus,
    RecordType,
    Role,
)
from txfastcgi.fcgi.errors import RemoteProtocolError
from txfastcgi.fcgi.events import (
    RequestEnded,
    StderrEnded,
    StderrReceived,
    StdoutEnded,
    StdoutReceived,
    UnknownTypeReceived,
    ValuesReceived,
)
from txfastcgi.fcgi.records import STREAM_CHUNK_SIZE
from txfastcgi.directwrite import endBatch, startBatch, writeThrough

__all__ = [
    "ApplicationConnectionLost",
    "ApplicationOverloaded",
    "BodySource",
    "CantMultiplexConnection",
    "FastCGIClientError",
    "FastCGIClientProtocol",
    "FastCGIRequest",
    "MissingEndRequest",
    "RequestAborted",
    "RequestRefused",
    "RequestResult",
    "ResponseBufferOverflow",
    "ResponseProtocolError",
    "ResponseTimeout",
    "UnknownRole",
]

class _Transport(TypingProtocol):
    """
    What we use of a stream transport (L{twisted.internet.interfaces.ITCPTransport}).
    """

    def write(self, data: bytes) -> None: ...

    def writeSequence(self, data: Iterable[bytes]) -> None: ...

    def loseConnection(self) -> None: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def registerProducer(self, producer: object, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...


BodySource = Union[bytes, IO[bytes], None]
"""A request body: bytes, a binary file read in chunks, or nothing."""

DEFAULT_RESPONSE_TIMEOUT = 30.0
"""Seconds an application may stay silent during a request (mod_fastcgi's
C{-idle-timeout})."""

DEFAULT_ABORT_GRACE = 5.0
"""Seconds an aborted request has to end before its connection is closed."""

DEFAULT_MAX_BUFFER = 1 << 20
"""STDOUT bytes a paused request may hold before it is aborted."""

_INLINE_BODY = 4 * STREAM_CHUNK_SIZE

_JOIN_LIMIT = 16384

"""Output of at most this many bytes is joined into one write."""


class RequestResult(NamedTuple):
    """
    What END_REQUEST said about a completed request.

    @ivar appStatus: the application's exit status (unsigned 32 bits).
    @ivar protocolStatus: always C{ProtocolStatus.REQUEST_COMPLETE} here.
    """

    appStatus: int
    protocolStatus: int


_REQUEST_COMPLETE = int(ProtocolStatus.REQUEST_COMPLETE)

_SUCCESS = RequestResult(0, _REQUEST_COMPLETE)
"""The usual result (an immutable value, made once)."""


# --- errors ---------------------------------------------------------------------


class FastCGIClientError(Exception):
    """
    A FastCGI request failed.  Subclasses say why.
    """


class RequestRefused(FastCGIClientError):
    """
    The application ended the request with a protocolStatus other than
    REQUEST_COMPLETE, so it did not run it.

    @ivar appStatus: the appStatus it sent.
    @ivar protocolStatus: the protocolStatus it sent.
    """

    def __init__(self, appStatus: int, protocolStatus: int) -> None:
        super().__init__(appStatus, protocolStatus)
        self.appStatus = appStatus
        self.protocolStatus = protocolStatus

    def __str__(self) -> str:
        try:
            name = ProtocolStatus(self.protocolStatus).name
        except ValueError:
            name = f"protocolStatus {self.protocolStatus}"
        return f"application refused the request: {name} (appStatus {self.appStatus})"


class CantMultiplexConnection(RequestRefused):
    """
    END_REQUEST with CANT_MPX_CONN: the application does not run several
    requests on one connection.
    """


class ApplicationOverloaded(RequestRefused):
    """
    END_REQUEST with OVERLOADED: the application is out of some resource.
    """


class UnknownRole(RequestRefused):
    """
    END_REQUEST with UNKNOWN_ROLE: the application does not play that role.
    """


_REFUSALS: dict[int, type[RequestRefused]] = {
    ProtocolStatus.CANT_MPX_CONN: CantMultiplexConnection,
    ProtocolStatus.OVERLOADED: ApplicationOverloaded,
    ProtocolStatus.UNKNOWN_ROLE: UnknownRole,
}


class ApplicationConnectionLost(FastCGIClientError):
    """
    The connection closed while the request was active.

    @ivar responseStarted: whether any byte arrived from the application
        while this request was active (if not, and the connection was a reused
        one, a pool may retry the request on a fresh connection).
    @ivar reason: why the connection closed, if known.
    """

    def __init__(self, responseStarted: bool, reason: Failure | None = None) -> None:
        super().__init__(responseStarted, reason)
        self.responseStarted = responseStarted
        self.reason = reason

    def __str__(self) -> str:
        why = self.reason.getErrorMessage() if self.reason is not None else "unknown"
        started = "after" if self.responseStarted else "before"
        return f"connection to the application lost {started} the response began ({why})"


class MissingEndRequest(ApplicationConnectionLost):
    """
    The application ended STDOUT and closed the connection without sending
    END_REQUEST.
    """

    def __init__(self, reason: Failure | None = None) -> None:
        super().__init__(True, reason)

    def __str__(self) -> str:
        return "application closed the connection after STDOUT but before END_REQUEST"


class ResponseProtocolError(FastCGIClientError):
    """
    The application broke the FastCGI protocol (garbage, a malformed record,
    a record cut short by a close).

    @ivar error: the codec's L{RemoteProtocolError}.
    @ivar responseStarted: whether response bytes had arrived.
    """

    def __init__(self, error: RemoteProtocolError, responseStarted: bool = True) -> None:
        super().__init__(error, responseStarted)
        self.error = error
        self.responseStarted = responseStarted

    def __str__(self) -> str:
        return f"FastCGI protocol error from the application: {self.error}"


class ResponseTimeout(FastCGIClientError):
    """
    The application stayed silent for longer than the response timeout.
    """


class RequestAborted(FastCGIClientError):
    """
    The request was aborted on our side (L{FastCGIRequest.abort}).
    """


class ResponseBufferOverflow(RequestAborted):
    """
    The request's consumer stayed paused while more STDOUT than the buffer
    limit arrived; the request was aborted so the other requests sharing the
    connection could go on.
    """


# --- body sources -------------------------------------------------------------


class _BodyReader:
    """
    Read a L{BodySource} in chunks, and rewind it for a retry if possible.
    """

    def __init__(self, source: BodySource) -> None:
        # In-memory bodies are sliced from bytes (no BytesIO per request).
        self._file: IO[bytes] | None = None
        self._data = b""
        self._position = 0
        self._start = 0
        self.size: int | None
        if source is None:
            self.size = 0
            self.replayable = True
        elif isinstance(source, (bytes, bytearray, memoryview)):
            self._data = bytes(source)
            self.size = len(source)
            self.replayable = True
        else:
            self._file = source
            self.size = None
            try:
                self.replayable = bool(source.seekable())
                if self.replayable:
                    self._start = source.tell()
            except (AttributeError, OSError, ValueError):
                self.replayable = False

    def read(self, size: int) -> bytes:
        """
        Read up to C{size} bytes; a short read means the end.
        """
        if self._file is not None:
            return self._file.read(size)
        position = self._position
        chunk = self._data[position : position + size]
        self._position = position + len(chunk)
        return chunk

    def rewind(self) -> None:
        """
        Go back to where the body started.
        """
        if self._file is not None:
            self._file.seek(self._start)
        else:
            self._position = 0


# --- the request ------------------------------------------------------------


@implementer(IPushProducer)
class FastCGIRequest:
    """
    One FastCGI request and its handle: what to send, where output goes, and
    the push producer the caller registers on its consumer.

    States: I{new} (not started) → I{queued} (in a pool) → I{active} (attached
    to a connection, C{requestId} set) → I{done} (C{finished} fired).  A pool
    may move an active request that failed before any response byte back to
    I{queued} for one retry.  A request whose END_REQUEST arrives while its
    STDOUT is still buffered (consumer paused) is detached from the
    connection at once, but fires C{finished} only when the buffer has
    drained.

    @param params: the CGI environment as (name, value) byte pairs.
    @param writeStdout: called with each piece of STDOUT, in order.
    @param writeStderr: called with each piece of STDERR; without it STDERR
        is logged.
    @param role: the L{Role}.
    @param body: the request body (STDIN): bytes, or a binary file read in
        L{STREAM_CHUNK_SIZE} pieces from its current position, where a short
        read means the end (a regular file, C{BytesIO}, twisted.web's
        C{request.content} spool).  Seekable files and bytes can be replayed
        for a retry.
    @param data: the file to filter (FCGI_DATA), for L{Role.FILTER} only.

    @ivar params: the CGI environment as (name, value) byte pairs.
    @ivar requestId: the request id of the current attempt (0 before).
    @ivar role: the role (L{Role}).
    @ivar onEnd: called once with C{(result, None)} or C{(None, error)}
        when the request is over, just before L{finished} fires: a cheaper
        alternative to callbacks on L{finished} for a caller that makes
        many requests.
    @ivar responseStarted: whether any byte arrived from the application
        during the current attempt.
    @ivar attempts: how many connections the request was started on.
    """

    def __init__(
        self,
        params: Iterable[tuple[bytes, bytes]],
        *,
        writeStdout: Callable[[bytes], object],
        writeStderr: Callable[[bytes], object] | None = None,
        role: int = Role.RESPONDER,
        body: BodySource = None,
        data: BodySource = None,
    ) -> None:
        self.params: Sequence[tuple[bytes, bytes]] = list(params)
        self.role = role
        self.writeStdout = writeStdout
        self.writeStderr = writeStderr
        self._body = _BodyReader(body)
        self._data = _BodyReader(data) if role == Role.FILTER else None
        # finished is made on first use: a caller that set onEnd instead
        # (FastCGIExchange) never pays for a Deferred.
        self._finished: Deferred[RequestResult] | None = None
        self._outcome: tuple[RequestResult | None, BaseException | None] | None = None
        self.onEnd: Callable[[RequestResult | None, BaseException | None], object] | None = (
            None
        )
        self.responseStarted = False
        self.attempts = 0
        self.requestId = 0
        self._protocol: FastCGIClientProtocol | None = None
        self._done = False
        self._paused = False
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._pendingResult: RequestResult | None = None
        # Set by a pool: called with (request, error) when an attempt fails;
        # returns True if it takes the request back for a retry.
        self._retryHook: Callable[[FastCGIRequest, FastCGIClientError], bool] | None = None
        # Set by a pool while the request is queued: called on abort.
        self._unqueueHook: Callable[[FastCGIRequest], None] | None = None
        # Set by a pool: called with (request, succeeded) once, just before
        # finished fires (cheaper than callbacks on finished).
        self._finishHook: Callable[[FastCGIRequest, bool], None] | None = None
        # Input streams still to send: (record type, reader).
        self._inputs: list[tuple[RecordType, _BodyReader]] = []

    @property
    def finished(self) -> Deferred[RequestResult]:
        """
        Fires with a L{RequestResult}, or fails with a L{FastCGIClientError}
        subclass; cancel it to abort the request.
        """
        d = self._finished
        if d is None:
            d = self._finished = Deferred(self._cancel)
            outcome = self._outcome
            if outcome is not None:
                self._outcome = None
                result, error = outcome
                if error is None:
                    d.callback(cast(RequestResult, result))
                else:
                    d.errback(error)
        return d

    def _resolve(self, result: RequestResult | None, error: BaseException | None) -> None:
        """
        The request is over: call L{onEnd} (once), then fire L{finished}
        (or keep the outcome for when it is first asked for).
        """
        hook = self.onEnd
        if hook is not None:
            self.onEnd = None
            hook(result, error)
        d = self._finished
        if d is None:
            self._outcome = (result, error)
        elif error is None:
            d.callback(cast(RequestResult, result))
        else:
            d.errback(error)

    @property
    def replayable(self) -> bool:
        """
        Whether the body (and Filter data) can be sent again for a retry.
        """
        return self._body.replayable and (self._data is None or self._data.replayable)

    @property
    def done(self) -> bool:
        """
        Whether L{finished} has fired (or is about to, once buffered output
        drains).
        """
        return self._done

    # IPushProducer: the caller's consumer drives these.

    def pauseProducing(self) -> None:
        """
        The consumer is full: stop delivering STDOUT, and pause the connection
        if no other request on it is running.
        """
        if self._paused:
            return
        self._paused = True
        if self._protocol is not None:
            self._protocol._updatePause()

    def resumeProducing(self) -> None:
        """
        The consumer has room again: deliver buffered STDOUT, then let the
        connection read again.
        """
        if not self._paused:
            return
        self._paused = False
        self._drain()
        if self._protocol is not None:
            self._protocol._updatePause()

    def stopProducing(self) -> None:
        """
        The consumer is gone (the HTTP client disconnected): abort.
        """
        self._buffer.clear()
        self._buffered = 0
        self.abort(RequestAborted("consumer stopped"))

    def abort(self, reason: FastCGIClientError | None = None) -> None:
        """
        Abort the request: fail L{finished} with C{reason} (a
        L{RequestAborted} by default) now, and send ABORT_REQUEST if it is
        active on a connection (which closes if the application does not end
        the request within the grace period).  Does nothing once finished.
        """
        if self._done:
            if self._pendingResult is not None:
                # Finished on the wire, but output was still buffered.
                self._pendingResult = None
                self._buffer.clear()
                self._buffered = 0
                self._settle(False)
                self._resolve(None, reason or RequestAborted("aborted"))
            return
        self._done = True
        self._stop()
        self._settle(False)
        self._resolve(None, reason or RequestAborted("aborted"))

    def _settle(self, succeeded: bool) -> None:
        """
        L{finished} is about to fire: tell the pool, once.
        """
        hook = self._finishHook
        if hook is not None:
            self._finishHook = None
            hook(self, succeeded)

    def _cancel(self, d: Deferred[RequestResult]) -> None:
        # Deferred fails with CancelledError itself, once this returns.
        self._settle(False)
        hook = self.onEnd
        if hook is not None:
            self.onEnd = None
            hook(None, CancelledError())
        if self._done:
            if self._pendingResult is not None:
                self._pendingResult = None
                self._buffer.clear()
            return
        self._done = True
        self._stop()

    def _stop(self) -> None:
        self._buffer.clear()
        self._buffered = 0
        if self._protocol is not None:
            self._protocol._abortRequest(self)
        elif self._unqueueHook is not None:
            hook, self._unqueueHook = self._unqueueHook, None
            hook(self)

    # Called by the protocol.

    def _attach(self, protocol: FastCGIClientProtocol, requestId: int) -> None:
        if self.attempts:
            self._body.rewind()
            if self._data is not None:
                self._data.rewind()
        self.attempts += 1
        self._protocol = protocol
        self.requestId = requestId
        self.responseStarted = False
        self._unqueueHook = None
        self._inputs = [(RecordType.STDIN, self._body)]
        if self._data is not None:
            self._inputs.append((RecordType.DATA, self._data))

    def _detach(self) -> None:
        self._protocol = None
        self._inputs = []

    def _deliverStdout(self, data: bytes, limit: int) -> bool:
        """
        Hand STDOUT to the caller, or buffer it while paused.

        @return: C{False} if the buffer is over C{limit}.
        """
        if self._paused or self._buffer:
            self._buffer.append(data)
            self._buffered += len(data)
            return self._buffered <= limit
        self.writeStdout(data)
        return True

    def _drain(self) -> None:
        while self._buffer and not self._paused:
            data = self._buffer.popleft()
            self._buffered -= len(data)
            self.writeStdout(data)
        if not self._buffer and self._pendingResult is not None:
            result, self._pendingResult = self._pendingResult, None
            self._settle(True)
            self._resolve(result, None)

    def _complete(self, result: RequestResult) -> None:
        self._detach()
        if self._done:
            return
        self._done = True
        if self._buffer:
            self._pendingResult = result
        else:
            self._settle(True)
            self._resolve(result, None)

    def _fail(self, error: FastCGIClientError) -> None:
        self._detach()
        if self._done:
            return
        if self._retryHook is not None and self._retryHook(self, error):
            return
        self._done = True
        self._buffer.clear()
        self._buffered = 0
        self._settle(False)
        self._resolve(None, error)

    def _reject(self, error: FastCGIClientError) -> None:
        """
        Fail a request that never reached a connection (no retry).
        """
        self._retryHook = None
        self._unqueueHook = None
        self._fail(error)

    def _nextInput(self, connection: ClientConnection) -> bool:
        """
        Queue the next piece of input on C{connection}.

        @return: C{True} if more input remains.
        """
        recordType, reader = self._inputs[0]
        chunk = reader.read(STREAM_CHUNK_SIZE)
        requestId = self.requestId
        if recordType == RecordType.STDIN:
            if chunk:
                connection.sendStdin(requestId, chunk)
            if len(chunk) < STREAM_CHUNK_SIZE:
                connection.endStdin(requestId)
                del self._inputs[0]
        else:
            if chunk:
                connection.sendData(requestId, chunk)
            if len(chunk) < STREAM_CHUNK_SIZE:
                connection.endData(requestId)
                del self._inputs[0]
        return bool(self._inputs)

    def __repr__(self) -> str:
        return (
            f"<FastCGIRequest id={self.requestId} attempts={self.attempts} "
            f"done={self._done} paused={self._paused}>"
        )


# --- the STDIN pump -------------------------------------------------------------


@implementer(IPullProducer)
class _InputPump:
    """
    The pull producer registered on the transport while some request has body
    (or Filter data) left to send.  Each C{resumeProducing} sends one chunk of
    one request, round robin.
    """

    def __init__(self, protocol: FastCGIClientProtocol) -> None:
        self._protocol = protocol
        self._requests: deque[FastCGIRequest] = deque()
        self.registered = False

    def add(self, request: FastCGIRequest) -> None:
        self._requests.append(request)
        if not self.registered and self._protocol.transport is not None:
            self.registered = True
            self._protocol._transport.registerProducer(self, False)

    def remove(self, request: FastCGIRequest) -> None:
        if self._requests:
            try:
                self._requests.remove(request)
            except ValueError:
                pass
        self._unregisterIfIdle()

    def _unregisterIfIdle(self) -> None:
        if self.registered and not self._requests:
            self.registered = False
            if self._protocol.transport is not None:
                self._protocol._transport.unregisterProducer()

    def resumeProducing(self) -> None:
        protocol = self._protocol
        while self._requests:
            request = self._requests.popleft()
            if protocol._requests.get(request.requestId) is not request:
                continue
            if request._nextInput(protocol._connection):
                self._requests.append(request)
            protocol._flush()
            protocol._noteActivity()
            break
        self._unregisterIfIdle()

    def stopProducing(self) -> None:
        self._requests.clear()
        self.registered = False


# --- the protocol ------------------------------------------------------------------


class FastCGIClientProtocol(Protocol):
    """
    One connection to a FastCGI application, wrapping a L{ClientConnection}.

    States (the C{state} attribute):

      - C{CONNECTING}: built, C{connectionMade} not yet called.
      - C{IDLE}: connected, no active request; reusable unless C{closing}.
      - C{ACTIVE}: one or more requests are active.
      - C{CLOSING}: we asked the transport to close (after a request without
        C{FCGI_KEEP_CONN}, a protocol error, a timeout, or L{close}).
      - C{CLOSED}: C{connectionLost} was called; every request failed.

    @ivar clock: the time source for timeouts.
    @ivar responseTimeout: seconds of application silence tolerated while a
        request is active and not paused; C{None} for no limit.
    @ivar abortGrace: seconds an aborted request has to end before the
        connection is closed.
    @ivar maxBufferSize: STDOUT bytes a paused request may hold (when other
        requests keep the connection reading) before it is aborted with
        L{ResponseBufferOverflow}.
    @ivar requestsStarted: requests started on this connection so far.
    @ivar requestsCompleted: requests that ended with END_REQUEST.
    @ivar bytesReceived: bytes read from the application so far.
    @ivar closedLocally: whether we closed the connection (rather than the
        application or the network).
    @ivar onIdle: called with the protocol when its last active request ended
        and it can take another (the pool's quiescent callback).
    @ivar onLost: called with the protocol when the connection closed.
    @ivar onRequestEnded: called with the protocol after each END_REQUEST
        (a multiplexing pool may start another request then).
    """

    log = Logger()

    def __init__(
        self,
        clock: TimeSource,
        *,
        responseTimeout: float | None = DEFAULT_RESPONSE_TIMEOUT,
        abortGrace: float = DEFAULT_ABORT_GRACE,
        maxBufferSize: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        self.clock = clock
        self.responseTimeout = responseTimeout
        self.abortGrace = abortGrace
        self.maxBufferSize = maxBufferSize
        self.state = "CONNECTING"
        self.requestsStarted = 0
        self.requestsCompleted = 0
        self.closedLocally = False
        self.bytesReceived = 0
        self.onIdle: Callable[[FastCGIClientProtocol], object] | None = None
        self.onLost: Callable[[FastCGIClientProtocol], object] | None = None
        self.onRequestEnded: Callable[[FastCGIClientProtocol], object] | None = None
        self._connection = ClientConnection()
        self._requests: dict[int, FastCGIRequest] = {}
        self._aborted: dict[int, DelayedCall] = {}
        self._pump = _InputPump(self)
        self._valueWaiters: deque[Deferred[dict[bytes, bytes]]] = deque()
        self._transportPaused = False
        self._timeoutCall: DelayedCall | None = None
        self._lastActivity = 0.0
        self._closedDeferreds: list[Deferred[None]] = []
        self._retiring = False

    @property
    def _transport(self) -> _Transport:
        return cast(_Transport, self.transport)

    # --- introspection used by the pool -----------------------------------------

    @property
    def activeCount(self) -> int:
        """
        Requests active on this connection, aborted ones included.
        """
        return len(self._connection.requests)

    @property
    def reusable(self) -> bool:
        """
        Whether another request may start on this connection now or once the
        active ones end.
        """
        return (
            self.state in ("IDLE", "ACTIVE")
            and not self._connection.closing
            and not self._retiring
        )

    # --- Protocol ---------------------------------------------------------------

    def connectionMade(self) -> None:
        """
        The connection is up: the protocol is idle.
        """
        self.state = "IDLE"

    def dataReceived(self, data: bytes) -> None:
        """
        Feed the codec and dispatch its events, as one write batch
        (L{txfastcgi.directwrite}): what the events make the gateway write
        to each client leaves in one C{send} at the end.
        """
        began = startBatch()
        try:
            self._dispatchReceived(data)
        finally:
            if began:
                endBatch()

    def _dispatchReceived(self, data: bytes) -> None:
        if self.state in ("CLOSING", "CLOSED"):
            return
        self.bytesReceived += len(data)
        for active in self._requests.values():
            active.responseStarted = True
        self._noteActivity()
        try:
            events = self._connection.receiveData(data)
        except RemoteProtocolError as e:
            self._protocolError(e)
            return
        for event in events:
            if isinstance(event, StdoutReceived):
                request = self._requests.get(event.requestId)
                if request is None:
                    continue
                try:
                    withinLimit = request._deliverStdout(event.data, self.maxBufferSize)
                except Exception:
                    self.log.failure(
                        "FastCGI request {requestId}: its STDOUT consumer raised",
                        requestId=event.requestId,
                    )
                    request.abort(RequestAborted("the STDOUT consumer raised an exception"))
                    continue
                if not withinLimit:
                    self.log.warn(
                        "FastCGI request {requestId} aborted: its consumer stayed "
                        "paused with {buffered} bytes of STDOUT buffered "
                        "(limit {limit})",
                        requestId=event.requestId,
                        buffered=request._buffered,
                        limit=self.maxBufferSize,
                    )
                    request.abort(
                        ResponseBufferOverflow(
                            f"request {event.requestId}: more than "
                            f"{self.maxBufferSize} bytes of STDOUT buffered "
                            "while its consumer was paused"
                        )
                    )
            elif isinstance(event, RequestEnded):
                self._requestEnded(event)
            elif isinstance(event, (StdoutEnded, StderrEnded)):
                pass
            elif isinstance(event, StderrReceived):
                request = self._requests.get(event.requestId)
                if request is not None and request.writeStderr is not None:
                    request.writeStderr(event.data)
                elif request is not None:
                    self.log.warn(
                        "FastCGI request {requestId} stderr: {stderr}",
                        requestId=event.requestId,
                        stderr=event.data.decode("utf-8", "replace"),
                    )
            elif isinstance(event, ValuesReceived):
                if self._valueWaiters:
                    self._valueWaiters.popleft().callback(dict(event.values))
            elif isinstance(event, UnknownTypeReceived):
                if event.recordType == RecordType.GET_VALUES and self._valueWaiters:
                    self._valueWaiters.popleft().callback({})
        if self.state == "ACTIVE" and not self._connection.requests:
            self._becameIdle()
        elif self._retiring and not self._requests:
            self._abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Fail every active request: with L{ResponseProtocolError} if the close
        cut a record short, L{MissingEndRequest} if STDOUT had ended, else
        L{ApplicationConnectionLost}.
        """
        self.state = "CLOSED"
        self._cancelTimers()
        error: RemoteProtocolError | None = None
        try:
            self._connection.checkClosed()
        except RemoteProtocolError as e:
            error = e
        requests, self._requests = self._requests, {}
        for requestId, request in requests.items():
            exc: FastCGIClientError
            state = self._connection.requests.get(requestId)
            if error is not None:
                exc = ResponseProtocolError(error, request.responseStarted)
            elif state is not None and state.stdout is OutputState.ENDED:
                exc = MissingEndRequest(reason)
            else:
                exc = ApplicationConnectionLost(request.responseStarted, reason)
            request._fail(exc)
        waiters, self._valueWaiters = self._valueWaiters, deque()
        for waiter in waiters:
            waiter.errback(ApplicationConnectionLost(False, reason))
        closed, self._closedDeferreds = self._closedDeferreds, []
        for d in closed:
            d.callback(None)
        if self.onLost is not None:
            self.onLost(self)

    # --- API ---------------------------------------------------------------------

    def request(
        self, request: FastCGIRequest, keepConnection: bool = True
    ) -> Deferred[RequestResult]:
        """
        Start C{request} on this connection: BEGIN_REQUEST and all PARAMS are
        written now, the body follows as the transport takes it.

        @param keepConnection: send C{FCGI_KEEP_CONN}; without it the
            application closes the connection after this request.
        @return: C{request.finished}.
        @raise RuntimeError: if the connection cannot take a request.
        """
        self.startRequest(request, keepConnection)
        return request.finished

    def startRequest(self, request: FastCGIRequest, keepConnection: bool = True) -> None:
        """
        Like L{request}, for a caller that learns the outcome from
        C{request.onEnd} (a pool).
        """
        if not self.reusable or self.transport is None:
            raise RuntimeError(f"connection in state {self.state} cannot take a request")
        if request.done or request._protocol is not None:
            raise RuntimeError(f"{request!r} was already started")
        connection = self._connection
        requestId = connection.nextRequestId()
        request._attach(self, requestId)
        self._requests[requestId] = request
        self.requestsStarted += 1
        body = request._body
        size = body.size
        if request._data is None and size is not None and size <= _INLINE_BODY:
            # The common case: the whole request in one write.
            connection.sendRequest(
                requestId, request.role, keepConnection, request.params, body.read(size)
            )
            request._inputs = []
        else:
            connection.beginRequest(requestId, request.role, keepConnection)
            connection.sendParams(requestId, request.params)
            connection.endParams(requestId)
            inline = 0
            for _, reader in request._inputs:
                size = reader.size
                if size is None:
                    inline = _INLINE_BODY + 1
                    break
                inline += size
            if inline <= _INLINE_BODY:
                # Small in-memory bodies go out at once.
                while request._inputs:
                    request._nextInput(connection)
        self._flush()
        if self.state == "IDLE":
            self.state = "ACTIVE"
            self._lastActivity = self.clock.seconds()
        if request._inputs:
            self._pump.add(request)
        self._updatePause()
        self._updateTimeout()

    def getValues(
        self, names: Iterable[bytes] = (FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS)
    ) -> Deferred[dict[bytes, bytes]]:
        """
        Ask the application for its variables with GET_VALUES.

        @return: a Deferred firing with the values it reported (C{{}} if it
            answered UNKNOWN_TYPE); it fails with L{ApplicationConnectionLost}
            if the connection closes first.  Bound it with C{addTimeout}.
        """
        d: Deferred[dict[bytes, bytes]] = Deferred(
            lambda d: self._valueWaiters.remove(d) if d in self._valueWaiters else None
        )
        self._valueWaiters.append(d)
        self._connection.getValues(names)
        self._flush()
        return d

    def close(self) -> Deferred[None]:
        """
        Close the connection (active requests fail).

        @return: a Deferred that fires once the connection is closed.
        """
        d: Deferred[None] = Deferred()
        if self.state == "CLOSED":
            d.callback(None)
            return d
        self._closedDeferreds.append(d)
        self._loseConnection()
        return d

    # --- internals -----------------------------------------------------------

    def _flush(self) -> None:
        data = self._connection.dataToSend()
        if data and self.transport is not None:
            if len(data) == 1:
                writeThrough(self.transport, data[0])
            elif sum(map(len, data)) <= _JOIN_LIMIT:
                # One write of a few small records (a request's BEGIN_REQUEST,
                # PARAMS and empty STDIN) is cheaper than a sequence of them.
                writeThrough(self.transport, b"".join(data))
            else:
                self._transport.writeSequence(data)

    def _noteActivity(self) -> None:
        self._lastActivity = self.clock.seconds()

    def _loseConnection(self) -> None:
        if self.state in ("CLOSING", "CLOSED"):
            return
        self.state = "CLOSING"
        self.closedLocally = True
        self._cancelTimers()
        if self.transport is not None:
            self._transport.loseConnection()

    def _abortConnection(self) -> None:
        if self.state == "CLOSED":
            return
        self.state = "CLOSING"
        self.closedLocally = True
        self._cancelTimers()
        if self.transport is not None:
            abort = getattr(self.transport, "abortConnection", None)
            if abort is not None:
                abort()
            else:
                self._transport.loseConnection()

    def _cancelTimers(self) -> None:
        if self._timeoutCall is not None and self._timeoutCall.active():
            self._timeoutCall.cancel()
        self._timeoutCall = None
        for call in self._aborted.values():
            if call.active():
                call.cancel()
        self._aborted.clear()

    def _becameIdle(self) -> None:
        self.state = "IDLE"
        self._updateTimeout()
        if self._connection.closing or self._retiring:
            self._loseConnection()
        elif self.onIdle is not None:
            self.onIdle(self)

    def _updatePause(self) -> None:
        """
        Pause the transport exactly when every active request is paused by its
        consumer, so a stalled request never stalls its neighbours.
        """
        shouldPause = False
        for request in self._requests.values():
            if not request._paused:
                shouldPause = False
                break
            shouldPause = True
        if shouldPause == self._transportPaused or self.transport is None:
            return
        if self.state not in ("IDLE", "ACTIVE"):
            return
        self._transportPaused = shouldPause
        if shouldPause:
            self._transport.pauseProducing()
        else:
            self._noteActivity()
            self._transport.resumeProducing()
        self._updateTimeout()

    def _updateTimeout(self) -> None:
        # Lazy: the timer is started when a request is active and, once
        # running, is never cancelled (cheaper than a callLater and a cancel
        # per request); when it fires it checks what happened meanwhile.
        if (
            self._timeoutCall is None
            and self.responseTimeout is not None
            and self.state == "ACTIVE"
        ):
            self._timeoutCall = self.clock.callLater(self.responseTimeout, self._checkTimeout)

    def _checkTimeout(self) -> None:
        self._timeoutCall = None
        assert self.responseTimeout is not None
        if self.state != "ACTIVE" or not self._connection.requests:
            return
        now = self.clock.seconds()
        if self._transportPaused:
            # The consumer holds us: the application cannot send.
            self._lastActivity = now
        remaining = self._lastActivity + self.responseTimeout - now
        if remaining > 0:
            self._timeoutCall = self.clock.callLater(remaining, self._checkTimeout)
            return
        self.log.warn(
            "FastCGI application silent for {timeout} seconds; closing the "
            "connection and failing {count} request(s)",
            timeout=self.responseTimeout,
            count=len(self._requests),
        )
        self._failAll(
            lambda request: ResponseTimeout(
                f"no response from the application for {self.responseTimeout} seconds"
            )
        )
        self._abortConnection()

    def _failAll(self, makeError: Callable[[FastCGIRequest], FastCGIClientError]) -> None:
        requests, self._requests = self._requests, {}
        for request in requests.values():
            self._pump.remove(request)
            request._fail(makeError(request))

    def _protocolError(self, error: RemoteProtocolError) -> None:
        self.log.error(
            "FastCGI protocol error from the application: {error}; closing the "
            "connection and failing {count} request(s)",
            error=str(error),
            count=len(self._requests),
        )
        self._failAll(lambda request: ResponseProtocolError(error, request.responseStarted))
        waiters, self._valueWaiters = self._valueWaiters, deque()
        for waiter in waiters:
            waiter.errback(ResponseProtocolError(error))
        self._abortConnection()

    def _requestEnded(self, event: RequestEnded) -> None:
        requestId = event.requestId
        self.requestsCompleted += 1
        grace = self._aborted.pop(requestId, None)
        if grace is not None and grace.active():
            grace.cancel()
        request = self._requests.pop(requestId, None)
        if request is not None:
            self._pump.remove(request)
            request._detach()
            self._updatePause()
        # Hand the connection back before the caller hears of the end, so a
        # request the caller starts from its callback can reuse it.
        if self.state == "ACTIVE" and not self._connection.requests:
            self._becameIdle()
        elif self._retiring and not self._requests:
            self._abortConnection()
        elif self.onRequestEnded is not None:
            self.onRequestEnded(self)
        if request is not None:
            if event.protocolStatus == _REQUEST_COMPLETE:
                request._complete(
                    _SUCCESS
                    if event.appStatus == 0
                    else RequestResult(event.appStatus, event.protocolStatus)
                )
            else:
                refusal = _REFUSALS.get(event.protocolStatus, RequestRefused)
                request._fail(refusal(event.appStatus, event.protocolStatus))

    def _abortRequest(self, request: FastCGIRequest) -> None:
        """
        The caller gave up on C{request}: send ABORT_REQUEST and wait
        C{abortGrace} seconds for its END_REQUEST.
        """
        requestId = request.requestId
        if self._requests.get(requestId) is not request:
            return
        del self._requests[requestId]
        request._detach()
        self._pump.remove(request)
        if self.state not in ("IDLE", "ACTIVE"):
            return
        if requestId not in self._connection.requests:
            # The application already ended it: its END_REQUEST came in the
            # same read as the STDOUT the caller is reacting to, and is being
            # dispatched after it.  Nothing to abort, no grace to wait for.
            self._updatePause()
            return
        self.log.info(
            "Aborting FastCGI request {requestId}", requestId=requestId
        )
        self._connection.abortRequest(requestId)
        self._flush()
        self._aborted[requestId] = self.clock.callLater(
            self.abortGrace, self._abortGraceExpired, requestId
        )
        self._updatePause()

    def _abortGraceExpired(self, requestId: int) -> None:
        self._aborted.pop(requestId, None)
        self.log.warn(
            "FastCGI request {requestId} not ended {grace} seconds after "
            "ABORT_REQUEST; closing the connection",
            requestId=requestId,
            grace=self.abortGrace,
        )
        if self._requests:
            # Other requests still run on this connection: let them finish,
            # take no new ones, then close.
            self._retiring = True
        else:
            self._abortConnection()
