# -*- test-case-name: tests.test_pool -*-
"""
A pool of FastCGI connections to one application.

L{ConnectionPool.request} runs a L{FastCGIRequest} on a connection to the
application at one address, reusing connections with C{FCGI_KEEP_CONN} where
the application honours it (SPEC.md Decision 13).

Policies
========

 - B{Limits.}  At most C{maxConnections} connections (never more than the
   application's C{FCGI_MAX_CONNS} once known).  Requests that find no
   connection wait in a queue of at most C{maxQueued}; past it a request
   fails at once with L{PoolOverloaded} (the gateway answers 503).

 - B{Learning the application.}  The first request triggers C{FCGI_GET_VALUES}
   on a I{dedicated} connection, opened beside the request's own so the
   request is not delayed (php-fpm closes a connection after answering
   GET_VALUES, and a single-threaded libfcgi app serves one connection at a
   time).  The probe connection is closed after the answer, on failure or
   after C{probeTimeout}; without an answer the configured limits stay.

 - B{Keep-alive.}  An application that closes connection after connection
   right after its first request although asked to keep it is taken not to
   honour C{FCGI_KEEP_CONN} (after three such connections in a row): from
   then on requests go without the flag and connections are not reused.

 - B{Retries.}  A request is retried once, on a fresh connection, only when
   it failed with L{ApplicationConnectionLost} (not L{MissingEndRequest})
   before any byte of its response arrived, on a I{reused} connection,
   within C{staleRetryWindow} seconds of starting, and its body can be sent
   again (bytes, or a seekable file).  That is the stale
   pooled connection case (php-fpm ends a worker after C{pm.max_requests};
   an app may drop idle connections): the app never saw the request.  A
   fresh connection that dies without answering means the app crashed on
   the request, so it is not retried.  An app that crashes while working on
   a request looks the same as a stale connection from our side, so a
   request whose C{REQUEST_METHOD} is not idempotent (RFC 9110: anything but
   GET, HEAD, OPTIONS, TRACE, PUT and DELETE, or no method at all) is
   retried only when the loss came within C{unsafeRetryWindow} seconds
   (50 ms by default): a stale connection's close is already on its way
   when the request is written, while a POST that the app has been running
   for longer must not run twice.  A request refused with
   C{CANT_MPX_CONN} is retried once without multiplexing (the app did not
   run it) and multiplexing is turned off for the pool.

 - B{Multiplexing.}  If the app answers C{FCGI_MPXS_CONNS=1}, up to
   C{maxRequestsPerConnection} requests share a connection (and no more than
   C{FCGI_MAX_REQS} in all).  Idle connections are used first, then busy
   ones with room, then new ones.  Trade-off: one TCP/Unix stream carries
   every request, so pausing the transport for one slow HTTP client would
   stall the others.  The connection is therefore paused only when I{every}
   request on it is paused; otherwise a paused request's STDOUT is buffered,
   up to C{maxBufferSize} bytes; past that the request is aborted
   (ABORT_REQUEST) and fails with L{ResponseBufferOverflow}, logged.  A
   slow client on a multiplexed connection thus gets cut off where on a
   connection of its own it would just be slowed; memory stays bounded by
   C{maxBufferSize} per request.

 - B{Workers that serve one connection each.}  libfcgi applications and
   php-fpm give each worker one connection at a time: with C{FCGI_KEEP_CONN}
   the worker that ended a request goes on reading I{that} connection and
   does not C{accept()} another.  With more pool connections than workers, a
   request written on a new connection can wait in the application's listen
   queue while the only worker that could take it blocks on one of our
   I{idle} connections, until the response timeout (504).  The pool cannot
   learn the worker count (libfcgi does not answer GET_VALUES), and from our
   side "queued, not yet accepted" looks the same as "accepted, still
   computing".  So it watches only requests on connections that have never
   received a byte (only those can be in the listen queue: a connection
   that answered once is held by its worker), and acts on evidence:

     1. A I{release} is a moment a worker we held may have become free: one
        of our connections went idle after a request, or the probe ended.
     2. A waiting request counts as I{stalled} when it is still without a
        byte C{stallGrace} plus the usual service time after the first
        release since it was written.  The service time is a moving average
        of how long requests took on connections that had answered before
        (so no listen-queue wait is in it; until there is one, the last
        request's time).  So with enough workers a request that is slow
        but being served answers before it counts as stalled; requests
        that all take about as long never do.
     3. For a stalled request the pool closes one idle connection (the
        least recently used), or, if none is idle, the next connection that
        goes idle instead of keeping it.  Busy connections are never closed.
        The freed worker returns to C{accept()} and takes the oldest queued
        connection.  Each rescue counts in C{stallRescues} and is logged
        (the first at info, with a hint, then at debug).
     4. A request still without a byte after a rescue (the freed worker
        went to another client of the application, say) may be rescued
        again, each time after twice as long: a request that is merely slow
        on a new connection costs a few reconnects at most, never one per
        request.
     5. Nothing is closed while the probe is unanswered (libfcgi holds a
        worker on the probe connection until C{probeTimeout}), nor when
        multiplexing (such an application does not hold a worker per
        connection), nor when connections are not kept.

   In the steady state every connection has answered before, so the rule
   costs nothing and closes nothing; it acts while connections are new.
   With one worker and several clients each connection serves requests for
   about C{stallGrace} before it is closed in turn (round robin), so kept
   connections are still reused.  I{Not done:} capping the pool at the
   largest number of connections the application was seen to serve at once
   (when it does not answer GET_VALUES).  That number only grows when the
   pool goes beyond it, so a cap would keep the pool from ever finding more
   workers, and it goes stale when workers are added, ended by php-fpm's
   C{pm = dynamic}, or held by another gateway; set C{maxConnections} to the
   worker count instead (the first rescue's log line says so).

 - B{Broken and idle connections.}  A connection that hits a protocol error
   or timeout is closed and dropped; one that the app closes is dropped;
   idle connections close after C{idleTimeout} seconds.

 - B{Shutdown.}  L{ConnectionPool.closeAll} fails queued requests, closes
   idle connections now and busy ones when their requests end.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Union, cast

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from txfastcgi.client import (
    DEFAULT_ABORT_GRACE,
    DEFAULT_MAX_BUFFER,
    DEFAULT_RESPONSE_TIMEOUT,
    ApplicationConnectionLost,
    CantMultiplexConnection,
    DelayedCall,
    FastCGIClientError,
    FastCGIClientProtocol,
    FastCGIRequest,
    MissingEndRequest,
    RequestResult,
    TimeSource,
)
from txfastcgi.fcgi.constants import FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS
from txfastcgi.unixstream import streamUNIXClientEndpoint

__all__ = [
    "ApplicationAddress",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionPool",
    "PoolClosed",
    "PoolOverloaded",
]


class ClientEndpoint(Protocol):
    """
    What we use of L{twisted.internet.interfaces.ClientEndpoint}
    (structural, so mypy checks it without the zope plugin).
    """

    def connect(self, protocolFactory: Any) -> Deferred[Any]:
        """
        Connect, returning a Deferred that fires with the built protocol.
        """


class PoolOverloaded(FastCGIClientError):
    """
    Every connection is busy and the wait queue is full (answer 503).
    """


class PoolClosed(FastCGIClientError):
    """
    The pool was closed (shutdown) before the request could run.
    """


class ConnectError(FastCGIClientError):
    """
    Connecting to the application failed (answer 503).

    @ivar reason: the endpoint's failure.
    """

    def __init__(self, message: str, reason: Failure | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class ConnectTimeout(ConnectError):
    """
    Connecting to the application took longer than the connect timeout
    (answer 504).
    """


@dataclass(frozen=True, slots=True)
class ApplicationAddress:
    """
    Where a FastCGI application listens: a Unix socket path or a TCP host and
    port.

    @ivar kind: C{"unix"} or C{"tcp"}.
    @ivar path: the socket path (Unix).
    @ivar host: the host (TCP): an IPv4 or IPv6 literal, or a name resolved
        as IPv4.
    @ivar port: the port (TCP).
    """

    kind: Literal["unix", "tcp"]
    path: str = ""
    host: str = ""
    port: int = 0

    @classmethod
    def unix(cls, path: str) -> ApplicationAddress:
        """
        A Unix socket address.
        """
        return cls("unix", path=path)

    @classmethod
    def tcp(cls, host: str, port: int) -> ApplicationAddress:
        """
        A TCP address.
        """
        return cls("tcp", host=host, port=port)

    @classmethod
    def parse(cls, text: str) -> ApplicationAddress:
        """
        Parse C{unix:/path}, C{unix:path=/path}, C{tcp:host:port},
        C{tcp:host=H:port=P}, a bare absolute path, or C{host:port}.

        @raise ValueError: for anything else.
        """
        if text.startswith("/"):
            return cls.unix(text)
        kind, sep, rest = text.partition(":")
        if kind == "unix" and sep:
            return cls.unix(rest[5:] if rest.startswith("path=") else rest)
        if kind == "tcp" and sep:
            fields = dict(re.findall(r"(\w+)=(.*?)(?=:\w+=|$)", rest))
            if fields:
                return cls.tcp(fields.get("host", "127.0.0.1"), int(fields["port"]))
            host, _, port = rest.rpartition(":")
            return cls.tcp(host.strip("[]"), int(port))
        host, _, port = text.rpartition(":")
        if host and port.isdigit():
            return cls.tcp(host.strip("[]"), int(port))
        raise ValueError(f"not a FastCGI application address: {text!r}")

    def endpoint(self, reactor: Any, timeout: float = 30) -> ClientEndpoint:
        """
        A client endpoint for this address.

        @param reactor: an L{IReactorUNIX}/L{IReactorTCP} provider.
        """
        endpoint: object
        if self.kind == "unix":
            endpoint = streamUNIXClientEndpoint(reactor, self.path, timeout=timeout)
        elif ":" in self.host:
            endpoint = TCP6ClientEndpoint(  # type: ignore[no-untyped-call]
                reactor, self.host, self.port, timeout=timeout
            )
        else:
            endpoint = TCP4ClientEndpoint(reactor, self.host, self.port, timeout=timeout)
        return cast(ClientEndpoint, endpoint)

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        return f"tcp:{self.host}:{self.port}"


Application = Union[ApplicationAddress, str, ClientEndpoint]
"""An application: an address, an address description, or an endpoint."""


class _ProtocolFactory(Factory):
    """
    Builds configured L{FastCGIClientProtocol}s for the pool.
    """

    noisy = False

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def buildProtocol(self, addr: object) -> FastCGIClientProtocol:  # type: ignore[override]
        pool = self._pool
        protocol = FastCGIClientProtocol(
            pool.clock,
            responseTimeout=pool.responseTimeout,
            abortGrace=pool.abortGrace,
            maxBufferSize=pool.maxBufferSize,
        )
        protocol.factory = self
        return protocol


_IDEMPOTENT_METHODS = frozenset(
    [b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"]
)


def _idempotent(request: FastCGIRequest) -> bool:
    """
    Whether running C{request} twice is harmless by its C{REQUEST_METHOD}
    (RFC 9110 section 9.2.2); a request without one counts as unsafe.
    """
    for name, value in request.params:
        if name == b"REQUEST_METHOD":
            return value.upper() in _IDEMPOTENT_METHODS
    return False


class ConnectionPool:
    """
    Connections to one FastCGI application, see the module docstring.

    @ivar address: a description of the application for logs.
    @ivar clock: the time source.
    @ivar maxConnections: the configured connection cap.
    @ivar maxQueued: how many requests may wait for a connection.
    @ivar keepAlive: whether to ask for C{FCGI_KEEP_CONN} at all.
    @ivar multiplex: whether to multiplex when the app says it can.
    @ivar maxRequestsPerConnection: requests per multiplexed connection.
    @ivar connectTimeout: seconds a connect may take.
    @ivar idleTimeout: seconds an idle connection is kept.
    @ivar stallGrace: seconds (beyond the usual service time) a request on a
        new connection may wait for its first byte after a worker may have
        become free, before an idle connection is closed to free a worker
        (see the module docstring); C{None} turns that off.
    @ivar staleRetryWindow: a lost connection counts as stale (so the
        request may be retried) only if it failed within this many seconds of
        the request starting: a stale connection fails at once, while an app
        that dies after working on a request for longer must not run it twice.
    @ivar unsafeRetryWindow: the same for requests whose method is not
        idempotent (POST, PATCH, ...): shorter, because running those twice
        is worse than answering 502.
    @ivar appMaxConns: C{FCGI_MAX_CONNS} as reported, or C{None}.
    @ivar appMaxReqs: C{FCGI_MAX_REQS} as reported, or C{None}.
    @ivar appMultiplexes: C{FCGI_MPXS_CONNS} as reported, or C{None}.
    @ivar keepAliveHonoured: C{False} once the app was seen to close kept
        connections after each request.
    @ivar connectAttempts: connects started (the probe's excluded).
    @ivar connectionsOpened: connects that succeeded (the probe's excluded).
    @ivar requestsStarted: request attempts started on a connection.
    @ivar requestsReused: attempts started on a connection that had served
        an earlier request.
    @ivar requestsServed: requests whose C{finished} fired with a result.
    @ivar requestsFailed: requests whose C{finished} failed.
    @ivar retries: requests retried on a fresh connection (or without
        multiplexing).
    @ivar rejected: requests refused with L{PoolOverloaded}.
    @ivar stallRescues: idle connections closed to free an application
        worker for a request stalled on a new connection.
    """

    log = Logger()

    def __init__(
        self,
        reactor: TimeSource,
        application: Application,
        *,
        maxConnections: int = 16,
        maxQueued: int = 256,
        keepAlive: bool = True,
        multiplex: bool = True,
        maxRequestsPerConnection: int = 8,
        connectTimeout: float = 10.0,
        idleTimeout: float = 60.0,
        responseTimeout: float | None = DEFAULT_RESPONSE_TIMEOUT,
        abortGrace: float = DEFAULT_ABORT_GRACE,
        maxBufferSize: int = DEFAULT_MAX_BUFFER,
        probeValues: bool = True,
        probeTimeout: float = 1.0,
        staleRetryWindow: float = 1.0,
        unsafeRetryWindow: float = 0.05,
        stallGrace: float | None = 0.5,
    ) -> None:
        if maxConnections < 1:
            raise ValueError("maxConnections must be at least 1")
        self.clock = reactor
        if isinstance(application, str):
            application = ApplicationAddress.parse(application)
        if isinstance(application, ApplicationAddress):
            self.address = str(application)
            self._endpoint: ClientEndpoint = application.endpoint(
                reactor, timeout=max(1, int(connectTimeout + 1))
            )
        else:
            self.address = repr(application)
            self._endpoint = application
        self.maxConnections = maxConnections
        self.maxQueued = maxQueued
        self.keepAlive = keepAlive
        self.multiplex = multiplex
        self.maxRequestsPerConnection = maxRequestsPerConnection
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
        self.responseTimeout = responseTimeout
        self.abortGrace = abortGrace
        self.maxBufferSize = maxBufferSize
        self.probeValues = probeValues
        self.probeTimeout = probeTimeout
        self.staleRetryWindow = staleRetryWindow
        self.unsafeRetryWindow = unsafeRetryWindow
        self.stallGrace = stallGrace

        self.appMaxConns: int | None = None
        self.appMaxReqs: int | None = None
        self.appMultiplexes: bool | None = None
        self.keepAliveHonoured = True

        self.connectAttempts = 0
        self.connectionsOpened = 0
        self.requestsStarted = 0
        self.requestsReused = 0
        self.requestsServed = 0
        self.requestsFailed = 0
        self.retries = 0
        self.rejected = 0
        self.stallRescues = 0

        self._factory = _ProtocolFactory(self)
        self._connections: set[FastCGIClientProtocol] = set()
        self._idle: list[FastCGIClientProtocol] = []
        self._idleSince: dict[FastCGIClientProtocol, float] = {}
        self._sweepCall: DelayedCall | None = None
        self._connecting = 0
        self._pendingConnects: set[Deferred[Any]] = set()
        self._waiting: deque[FastCGIRequest] = deque()
        self._needsFresh: set[FastCGIRequest] = set()
        self._attempts: dict[FastCGIRequest, tuple[bool, float]] = {}
        self._probeState: Literal["none", "running", "done", "failed"] = "none"
        self._probe: Deferred[Any] | None = None
        self._closed = False
        self._closeWaiters: list[Deferred[None]] = []
        self._earlyCloses = 0
        # Stalled-accept watch (module docstring): requests on connections
        # that never received a byte, in the order they were written.
        self._unanswered: dict[FastCGIClientProtocol, _Unanswered] = {}
        # When the current request on each connection started, and whether
        # the connection had answered before (no listen-queue wait).
        self._requestStarts: dict[FastCGIClientProtocol, tuple[float, bool]] = {}
        self._serviceTime: float | None = None
        self._serviceTimeMeasured = False
        self._stallCall: DelayedCall | None = None
        self._stallCallAt = 0.0

    # --- public -----------------------------------------------------------------

    @property
    def effectiveMaxConnections(self) -> int:
        """
        The connection cap in force: the configured one, lowered to the
        application's C{FCGI_MAX_CONNS} once reported.
        """
        if self.appMaxConns:
            return max(1, min(self.maxConnections, self.appMaxConns))
        return self.maxConnections

    @property
    def multiplexing(self) -> bool:
        """
        Whether requests may share connections now.
        """
        return bool(self.multiplex and self.appMultiplexes and self.keepAliveHonoured)

    @property
    def openConnections(self) -> int:
        """
        Connections open now (the probe's excluded).
        """
        return len(self._connections)

    @property
    def idleConnections(self) -> int:
        """
        Connections open and idle now.
        """
        return len(self._idle)

    @property
    def queued(self) -> int:
        """
        Requests waiting for a connection.
        """
        return len(self._waiting)

    def request(self, request: FastCGIRequest) -> Deferred[RequestResult]:
        """
        Run C{request} on a connection of this pool.

        @return: C{request.finished}: see L{FastCGIRequest}; also fails with
            L{PoolOverloaded}, L{PoolClosed}, L{ConnectError} or
            L{ConnectTimeout}.
        """
        self.submit(request)
        return request.finished

    def submit(self, request: FastCGIRequest) -> None:
        """
        Like L{request}, for a caller that learns the outcome from
        C{request.onEnd} rather than from C{request.finished}.
        """
        if request.done or request.attempts:
            raise RuntimeError(f"{request!r} was already started")
        request._finishHook = self._finished
        if self._closed:
            request._reject(PoolClosed(f"pool for {self.address} is closed"))
            return
        if not self._waiting and self._idle and self._probeState != "none":
            # The common case: an idle kept connection takes it at once.
            protocol = self._pickConnection(False)
            if protocol is not None:
                self._start(protocol, request)
                return
        request._retryHook = self._retryHook
        request._unqueueHook = self._unqueue
        self._waiting.append(request)
        self._dispatch()
        # After the request's own connect, so a single-threaded app accepts
        # the request's connection first.
        if self._probeState == "none":
            self._maybeProbe()
        if request._unqueueHook is not None and (
            len(self._waiting)
            - self._connecting
            * (self.maxRequestsPerConnection if self.multiplexing else 1)
            > self.maxQueued
        ):
            self._unqueue(request)
            self.rejected += 1
            self.log.warn(
                "FastCGI application {backend} overloaded: {queued} requests "
                "queued, {connections} connections busy",
                backend=self.address,
                queued=len(self._waiting),
                connections=len(self._connections),
            )
            request._reject(
                PoolOverloaded(
                    f"{len(self._connections)} connections to {self.address} busy "
                    f"and {len(self._waiting)} requests queued"
                )
            )

    def closeAll(self) -> Deferred[None]:
        """
        Shut the pool down: fail queued requests with L{PoolClosed}, stop
        connecting, close idle connections now and busy ones once their
        requests end.

        @return: a Deferred firing when every connection is closed.
        """
        self._closed = True
        self._unanswered.clear()
        self._cancelStallCheck()
        waiting, self._waiting = self._waiting, deque()
        self._needsFresh.clear()
        for request in waiting:
            request._reject(PoolClosed(f"pool for {self.address} is closed"))
        for d in list(self._pendingConnects):
            d.cancel()
        if self._probe is not None:
            self._probe.cancel()
        for protocol in list(self._idle):
            self._closeConnection(protocol)
        closed: Deferred[None] = Deferred()
        if self._connections or self._connecting:
            self._closeWaiters.append(closed)
        else:
            closed.callback(None)
        return closed

    # --- dispatching -------------------------------------------------------------

    def _useKeepAlive(self) -> bool:
        return self.keepAlive and self.keepAliveHonoured

    def _dispatch(self) -> None:
        while self._waiting and not self._closed:
            request = self._waiting[0]
            fresh = request in self._needsFresh
            protocol = self._pickConnection(fresh)
            if protocol is not None:
                self._waiting.popleft()
                self._needsFresh.discard(request)
                self._start(protocol, request)
                continue
            # A connection on its way takes one request, or several when
            # multiplexing: open no more than the queue needs.
            perConnection = self.maxRequestsPerConnection if self.multiplexing else 1
            if self._connecting * perConnection >= len(self._waiting):
                break
            if len(self._connections) + self._connecting >= self.effectiveMaxConnections:
                if not self._idle:
                    break
                # Only a request that needs a fresh connection gets here with
                # idle connections around: make room.
                self._closeConnection(self._idle[0])
            self._openConnection()

    def _pickConnection(self, fresh: bool) -> FastCGIClientProtocol | None:
        for index in range(len(self._idle) - 1, -1, -1):
            protocol = self._idle[index]
            if not protocol.reusable:
                continue
            if fresh and protocol.requestsStarted:
                continue
            del self._idle[index]
            self._idleSince.pop(protocol, None)
            return protocol
        if fresh or not self.multiplexing:
            return None
        if self.appMaxReqs is not None:
            active = sum(p.activeCount for p in self._connections)
            if active >= self.appMaxReqs:
                return None
        best: FastCGIClientProtocol | None = None
        for protocol in self._connections:
            if (
                protocol.reusable
                and 0 < protocol.activeCount < self.maxRequestsPerConnection
                and (best is None or protocol.activeCount < best.activeCount)
            ):
                best = protocol
        return best

    def _start(self, protocol: FastCGIClientProtocol, request: FastCGIRequest) -> None:
        reused = protocol.requestsStarted > 0
        now = self.clock.seconds()
        self._attempts[request] = (reused, now)
        self.requestsStarted += 1
        if reused:
            self.requestsReused += 1
        request._retryHook = self._retryHook
        if self._watchingStalls():
            answered = protocol.bytesReceived > 0
            self._requestStarts[protocol] = (now, answered)
            if not answered and protocol not in self._unanswered:
                self._unanswered[protocol] = _Unanswered(now)
        protocol.startRequest(request, keepConnection=self._useKeepAlive())

    def _unqueue(self, request: FastCGIRequest) -> None:
        try:
            self._waiting.remove(request)
        except ValueError:
            pass
        self._needsFresh.discard(request)
        request._unqueueHook = None

    def _retryHook(self, request: FastCGIRequest, error: FastCGIClientError) -> bool:
        reused, startedAt = self._attempts.pop(request, (False, 0.0))
        if self._closed or not request.replayable:
            return False
        if isinstance(error, CantMultiplexConnection) and request.attempts == 1:
            if self.appMultiplexes:
                self.log.info(
                    "FastCGI application {backend} refused a multiplexed request; "
                    "multiplexing turned off",
                    backend=self.address,
                )
            self.appMultiplexes = False
            self._requeue(request, fresh=False)
            return True
        if (
            isinstance(error, ApplicationConnectionLost)
            and not isinstance(error, MissingEndRequest)
            and not error.responseStarted
            and reused
            and request.attempts == 1
            and self.clock.seconds() - startedAt
            <= (
                self.staleRetryWindow
                if _idempotent(request)
                else self.unsafeRetryWindow
            )
        ):
            self.log.info(
                "FastCGI connection to {backend} was stale (closed before any "
                "response byte); retrying on a fresh connection",
                backend=self.address,
            )
            self._requeue(request, fresh=True)
            return True
        return False

    def _requeue(self, request: FastCGIRequest, fresh: bool) -> None:
        self.retries += 1
        self._waiting.appendleft(request)
        request._unqueueHook = self._unqueue
        if fresh:
            self._needsFresh.add(request)
        self._dispatch()

    def _finished(self, request: FastCGIRequest, succeeded: bool) -> None:
        # Called by the request just before its finished Deferred fires.
        if succeeded:
            self.requestsServed += 1
        else:
            self.requestsFailed += 1
        self._attempts.pop(request, None)

    # --- connections -----------------------------------------------------------

    def _openConnection(self) -> None:
        self._connecting += 1
        self.connectAttempts += 1
        d = self._endpoint.connect(self._factory)
        d.addTimeout(self.connectTimeout, self.clock)  # type: ignore[arg-type]
        self._pendingConnects.add(d)

        def done(result: object) -> object:
            self._pendingConnects.discard(d)
            self._connecting -= 1
            return result

        d.addBoth(done)
        d.addCallbacks(self._connected, self._connectFailed)

    def _connected(self, protocol: FastCGIClientProtocol) -> None:
        self.connectionsOpened += 1
        self._connections.add(protocol)
        protocol.onIdle = self._connectionIdle
        protocol.onLost = self._connectionLost
        protocol.onRequestEnded = self._requestEnded
        if self._closed:
            self._closeConnection(protocol)
            return
        self._connectionIdle(protocol)

    def _connectFailed(self, failure: Failure) -> None:
        if self._closed:
            self._maybeClosed()
            return
        error: ConnectError
        if isinstance(failure.value, (TimeoutError, CancelledError)):
            error = ConnectTimeout(
                f"connecting to {self.address} took over {self.connectTimeout} seconds",
                failure,
            )
        else:
            error = ConnectError(
                f"cannot connect to {self.address}: {failure.getErrorMessage()}",
                failure,
            )
        self.log.warn(
            "FastCGI connect to {backend} failed: {error}",
            backend=self.address,
            error=str(error),
        )
        if len(self._waiting) > self._connecting:
            request = self._waiting.popleft()
            self._needsFresh.discard(request)
            request._reject(error)
        self._dispatch()

    def _connectionIdle(self, protocol: FastCGIClientProtocol) -> None:
        served = protocol.requestsStarted > 0
        if served:
            self._measureRequest(protocol)
        if (
            self._closed
            or (protocol.requestsStarted and not self._useKeepAlive())
            or not protocol.reusable
            or len(self._connections) > self.effectiveMaxConnections
        ):
            self._closeConnection(protocol)
            self._dispatch()
            return
        if protocol.requestsCompleted >= 2:
            self._earlyCloses = 0
        if served and self._unanswered:
            if self._rescueOwed(protocol):
                self._dispatch()
                return
            self._released()
        self._idle.append(protocol)
        self._idleSince[protocol] = self.clock.seconds()
        if self._sweepCall is None:
            self._sweepCall = self.clock.callLater(self.idleTimeout, self._sweepIdle)
        self._dispatch()

    def _requestEnded(self, protocol: FastCGIClientProtocol) -> None:
        if self.multiplexing and self._waiting:
            self._dispatch()

    def _sweepIdle(self) -> None:
        # One timer for all idle connections, rescheduled for the oldest.
        self._sweepCall = None
        now = self.clock.seconds()
        for protocol, since in list(self._idleSince.items()):
            if now - since >= self.idleTimeout:
                self._closeConnection(protocol)
        if self._idleSince:
            oldest = min(self._idleSince.values())
            self._sweepCall = self.clock.callLater(
                max(0.0, oldest + self.idleTimeout - now), self._sweepIdle
            )

    def _closeConnection(self, protocol: FastCGIClientProtocol) -> None:
        if protocol in self._idle:
            self._idle.remove(protocol)
        self._idleSince.pop(protocol, None)
        self._stopSweepIfUnused()
        protocol.close()

    def _connectionLost(self, protocol: FastCGIClientProtocol) -> None:
        self._connections.discard(protocol)
        self._requestStarts.pop(protocol, None)
        if self._unanswered.pop(protocol, None) is not None and not self._unanswered:
            self._cancelStallCheck()
        if protocol in self._idle:
            self._idle.remove(protocol)
        self._idleSince.pop(protocol, None)
        self._stopSweepIfUnused()
        if (
            self._useKeepAlive()
            and protocol.requestsCompleted == 1
            and not protocol.closedLocally
            and not self._closed
        ):
            self._earlyCloses += 1
            if self._earlyCloses >= 3:
                self.keepAliveHonoured = False
                self.log.info(
                    "FastCGI application {backend} closes connections after each "
                    "request despite FCGI_KEEP_CONN; not keeping connections",
                    backend=self.address,
                )
        elif protocol.requestsCompleted >= 2:
            self._earlyCloses = 0
        self._maybeClosed()
        self._dispatch()

    def _stopSweepIfUnused(self) -> None:
        if not self._idleSince and self._sweepCall is not None:
            if self._sweepCall.active():
                self._sweepCall.cancel()
            self._sweepCall = None

    def _maybeClosed(self) -> None:
        if self._closed and not self._connections and not self._connecting:
            waiters, self._closeWaiters = self._closeWaiters, []
            for d in waiters:
                d.callback(None)

    # --- stalled accepts (module docstring) -----------------------------------------

    def _watchingStalls(self) -> bool:
        return bool(
            self.stallGrace is not None
            and self.stallGrace > 0
            and self._useKeepAlive()
            and not self.multiplexing
            and not self._closed
        )

    def _measureRequest(self, protocol: FastCGIClientProtocol) -> None:
        """
        Note how long the request that just ended on C{protocol} took: a
        moving average over requests on connections that had answered
        before (pure service time), or, until there is one, the last
        request's time.
        """
        started = self._requestStarts.pop(protocol, None)
        if started is None:
            return
        at, answered = started
        duration = max(0.0, self.clock.seconds() - at)
        if answered and self._serviceTimeMeasured and self._serviceTime is not None:
            self._serviceTime += (duration - self._serviceTime) / 4
        elif answered or not self._serviceTimeMeasured:
            self._serviceTime = duration
            self._serviceTimeMeasured = answered

    def _graceFor(self, entry: _Unanswered) -> float:
        grace = (self.stallGrace or 0.0) + (self._serviceTime or 0.0)
        return float(grace * 2 ** min(entry.rescues, 6))

    def _pruneUnanswered(self) -> None:
        """
        Forget requests whose connection answered, closed or went away;
        stop watching altogether when the rule does not apply.
        """
        if not self._watchingStalls():
            self._unanswered.clear()
        else:
            for protocol in list(self._unanswered):
                if (
                    protocol.bytesReceived > 0
                    or protocol.state != "ACTIVE"
                    or protocol not in self._connections
                ):
                    del self._unanswered[protocol]
        if not self._unanswered:
            self._cancelStallCheck()

    def _rescueOwed(self, protocol: FastCGIClientProtocol) -> bool:
        """
        C{protocol} just went idle: if a stalled request is owed a rescue,
        close C{protocol} for it.

        @return: whether C{protocol} was closed.
        """
        self._pruneUnanswered()
        for entry in self._unanswered.values():
            if entry.pending:
                self._rescue(protocol, entry)
                return True
        return False

    def _released(self, probeEnded: bool = False) -> None:
        """
        A worker may have become free: start the clock of each waiting
        request that has none (after the probe ended, restart them all).
        """
        self._pruneUnanswered()
        if not self._unanswered:
            return
        now = self.clock.seconds()
        for entry in self._unanswered.values():
            if entry.pending:
                continue
            due = now + self._graceFor(entry)
            if entry.due is None:
                entry.due = due
            elif probeEnded:
                entry.due = max(entry.due, due)
        self._scheduleStallCheck()

    def _scheduleStallCheck(self) -> None:
        if self._probeState == "running":
            # The probe may hold a worker; its end restarts the clocks.
            return
        dues = [e.due for e in self._unanswered.values() if e.due is not None]
        if not dues:
            self._cancelStallCheck()
            return
        due = min(dues)
        if self._stallCall is not None and self._stallCall.active():
            if self._stallCallAt <= due:
                return
            self._stallCall.cancel()
        self._stallCallAt = due
        self._stallCall = self.clock.callLater(
            max(0.0, due - self.clock.seconds()), self._checkStalls
        )

    def _cancelStallCheck(self) -> None:
        if self._stallCall is not None and self._stallCall.active():
            self._stallCall.cancel()
        self._stallCall = None

    def _checkStalls(self) -> None:
        self._stallCall = None
        self._pruneUnanswered()
        if self._probeState == "running":
            return
        now = self.clock.seconds()
        for entry in list(self._unanswered.values()):
            if entry.pending or entry.due is None or now < entry.due:
                continue
            if self._idle:
                self._rescue(self._idle[0], entry)
            else:
                entry.pending = True
                entry.due = None
        self._scheduleStallCheck()

    def _rescue(self, protocol: FastCGIClientProtocol, entry: _Unanswered) -> None:
        """
        Close C{protocol} (idle) so that the application worker reading it
        can accept the connection C{entry} waits on.
        """
        now = self.clock.seconds()
        entry.pending = False
        entry.rescues += 1
        # Closing frees a worker: the request gets a new, longer clock.
        entry.due = now + self._graceFor(entry)
        self.stallRescues += 1
        if self.stallRescues == 1:
            self.log.info(
                "FastCGI request to {backend} waited {waited} s without a byte on a "
                "new connection while {idle} of {connections} connections were idle: "
                "closing an idle connection so that the application worker holding "
                "it can accept; if the application has fewer workers than "
                "maxConnections ({maxConnections}), lower maxConnections",
                backend=self.address,
                waited=round(now - entry.since, 3),
                idle=len(self._idle),
                connections=len(self._connections),
                maxConnections=self.maxConnections,
            )
        else:
            self.log.debug(
                "FastCGI request to {backend} stalled {waited} s on a new connection "
                "(rescue {rescues}); closing an idle connection",
                backend=self.address,
                waited=round(now - entry.since, 3),
                rescues=entry.rescues,
            )
        self._closeConnection(protocol)
        self._scheduleStallCheck()

    # --- GET_VALUES probe ----------------------------------------------------------

    def _maybeProbe(self) -> None:
        if not self.probeValues or self._probeState != "none":
            return
        self._probeState = "running"
        probe: list[FastCGIClientProtocol] = []

        def connected(protocol: FastCGIClientProtocol) -> Deferred[dict[bytes, bytes]]:
            probe.append(protocol)
            return protocol.getValues((FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS))

        def finish(result: object) -> None:
            self._probe = None
            for protocol in probe:
                protocol.close()
            if isinstance(result, Failure):
                self._probeState = "failed"
                if not self._closed:
                    self.log.info(
                        "FastCGI application {backend} did not answer "
                        "FCGI_GET_VALUES ({error}); using configured limits",
                        backend=self.address,
                        error=result.getErrorMessage(),
                    )
            else:
                assert isinstance(result, dict)
                self._probeState = "done"
                self._learn(result)
            # A worker that held the probe connection is free again.
            self._released(probeEnded=True)

        d = self._endpoint.connect(_ProbeFactory(self))
        d.addCallback(connected)
        d.addTimeout(self.probeTimeout, self.clock)  # type: ignore[arg-type]
        d.addBoth(finish)
        self._probe = d

    def _learn(self, values: dict[bytes, bytes]) -> None:
        def number(name: bytes) -> int | None:
            raw = values.get(name)
            if raw is None:
                return None
            try:
                value = int(raw)
            except ValueError:
                return None
            return value if value > 0 else None

        self.appMaxConns = number(FCGI_MAX_CONNS)
        self.appMaxReqs = number(FCGI_MAX_REQS)
        mpxs = values.get(FCGI_MPXS_CONNS)
        if mpxs is not None:
            self.appMultiplexes = mpxs.strip() == b"1"
        self.log.info(
            "FastCGI application {backend}: FCGI_MAX_CONNS={maxConns} "
            "FCGI_MAX_REQS={maxReqs} FCGI_MPXS_CONNS={mpxs}",
            backend=self.address,
            maxConns=self.appMaxConns,
            maxReqs=self.appMaxReqs,
            mpxs=self.appMultiplexes,
        )
        # Close idle connections beyond a lowered cap.
        excess = len(self._connections) - self.effectiveMaxConnections
        for protocol in list(self._idle)[:max(0, excess)]:
            self._closeConnection(protocol)
        self._dispatch()


@dataclass(slots=True)
class _Unanswered:
    """
    A request waiting on a connection that never received a byte (it may
    be in the application's listen queue).

    @ivar since: when it was written.
    @ivar due: when it counts as stalled, once a worker may have become
        free; C{None} until then.
    @ivar rescues: connections closed for it so far.
    @ivar pending: a rescue is owed: close the next connection that goes
        idle.
    """

    since: float
    due: float | None = None
    rescues: int = 0
    pending: bool = False


class _ProbeFactory(_ProtocolFactory):
    """
    Builds the probe's protocol (not counted in the pool's connections).
    """
