"""
Tests for L{txfastcgi.pool}: the connection pool.
"""

from __future__ import annotations

import io
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from txfastcgi.client import (
    ApplicationConnectionLost,
    FastCGIClientProtocol,
    FastCGIRequest,
    MissingEndRequest,
    RequestAborted,
    RequestResult,
    ResponseBufferOverflow,
    ResponseProtocolError,
)
from txfastcgi.fcgi.constants import ProtocolStatus, RecordType
from txfastcgi.fcgi.records import (
    RecordReader,
    decodePairs,
    encodeEndRequestBody,
    encodePairs,
    encodeRecord,
)
from txfastcgi.pool import (
    ApplicationAddress,
    ConnectError,
    ConnectionPool,
    ConnectTimeout,
    PoolClosed,
    PoolOverloaded,
    _ProbeFactory,
)


def complete(requestId: int = 1, body: bytes = b"ok", protocolStatus: int = 0) -> bytes:
    """
    A complete response for C{requestId}.
    """
    return (
        encodeRecord(RecordType.STDOUT, requestId, body)
        + encodeRecord(RecordType.STDOUT, requestId)
        + encodeRecord(
            RecordType.END_REQUEST, requestId, encodeEndRequestBody(0, protocolStatus)
        )
    )


class Connection:
    """
    One faked connection: the protocol the pool built and its transport.
    """

    def __init__(self, protocol: FastCGIClientProtocol, transport: StringTransport) -> None:
        self.protocol = protocol
        self.transport = transport

    def records(self) -> list[tuple[int, int, bytes]]:
        """
        Decode and clear what was sent: (type, request id, content) triples.
        """
        records = RecordReader().feed(self.transport.value())
        self.transport.clear()
        return [(r.type, r.requestId, r.content) for r in records]

    def flags(self) -> list[int]:
        """
        The flags of each BEGIN_REQUEST sent (and clear).
        """
        return [c[2] for t, _, c in self.records() if t == RecordType.BEGIN_REQUEST]

    def receive(self, data: bytes) -> None:
        """
        Deliver bytes from the application.
        """
        self.protocol.dataReceived(data)

    def lose(self) -> None:
        """
        The application closes the connection.
        """
        self.transport.loseConnection()
        self.protocol.connectionLost(Failure(ConnectionDone()))


class FakeEndpoint:
    """
    An endpoint whose connection attempts the test completes by hand.
    """

    def __init__(self) -> None:
        self.attempts: list[tuple[Any, Deferred[Any]]] = []
        self.connections: list[Connection] = []
        self.autoConnect = False

    def connect(self, factory: Any) -> Deferred[Any]:
        """
        Record an attempt.
        """
        d: Deferred[Any] = Deferred()
        self.attempts.append((factory, d))
        if self.autoConnect and not isinstance(factory, _ProbeFactory):
            self.succeed(len(self.attempts) - 1)
        return d

    def pending(self, probe: bool = False) -> list[int]:
        """
        Indexes of attempts not yet answered (probe or not).
        """
        return [
            i
            for i, (factory, d) in enumerate(self.attempts)
            if not d.called and isinstance(factory, _ProbeFactory) == probe
        ]

    def succeed(self, index: int | None = None) -> Connection:
        """
        Complete an attempt (the oldest pending non-probe one by default).
        """
        if index is None:
            index = self.pending()[0]
        factory, d = self.attempts[index]
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        connection = Connection(protocol, transport)
        self.connections.append(connection)
        d.callback(protocol)
        return connection


class Collector:
    """
    Builds requests and keeps what they write.
    """

    def __init__(self) -> None:
        self.stdout: list[bytes] = []

    def request(
        self, body: Any = None, params: list[tuple[bytes, bytes]] | None = None
    ) -> FastCGIRequest:
        """
        A responder request writing here (a GET unless C{params} say otherwise).
        """
        return FastCGIRequest(
            params if params is not None else [(b"REQUEST_METHOD", b"GET")],
            writeStdout=self.stdout.append,
            body=body,
        )


class PoolTestMixin:
    """
    Builds pools over a L{FakeEndpoint} and a L{Clock}.
    """

    def makePool(self, **kw: Any) -> tuple[ConnectionPool, FakeEndpoint, Clock]:
        """
        A pool with the probe off unless asked for.
        """
        kw.setdefault("probeValues", False)
        clock = Clock()
        endpoint = FakeEndpoint()
        return ConnectionPool(clock, endpoint, **kw), endpoint, clock


class ReuseTests(SynchronousTestCase, PoolTestMixin):
    """
    Keep-alive reuse.
    """

    def test_reuse(self) -> None:
        """
        A second request reuses the idle connection of the first.
        """
        pool, endpoint, clock = self.makePool()
        d1 = pool.request(Collector().request())
        self.assertEqual(len(endpoint.attempts), 1)
        connection = endpoint.succeed()
        self.assertEqual(connection.flags(), [1])
        connection.receive(complete())
        self.assertEqual(self.successResultOf(d1), RequestResult(0, 0))
        self.assertEqual(pool.idleConnections, 1)
        d2 = pool.request(Collector().request())
        self.assertEqual(len(endpoint.attempts), 1)
        connection.receive(complete())
        self.successResultOf(d2)
        self.assertEqual(
            (pool.connectionsOpened, pool.requestsServed, pool.requestsReused, pool.retries),
            (1, 2, 1, 0),
        )

    def test_finishedRequestsForgotten(self) -> None:
        """
        The pool keeps no reference to requests that finished, served or
        failed.
        """
        pool, endpoint, clock = self.makePool()
        d1 = pool.request(Collector().request())
        connection = endpoint.succeed()
        connection.receive(complete())
        self.successResultOf(d1)
        d2 = pool.request(Collector().request())
        connection.receive(encodeRecord(RecordType.STDOUT, 1, b"x"))
        connection.lose()
        self.failureResultOf(d2, ApplicationConnectionLost)
        self.assertEqual(pool._attempts, {})

    def test_nextRequestFromCallbackReuses(self) -> None:
        """
        A request started from the previous request's callback (as a
        sequential client does) reuses its connection: the connection is
        idle before the result is delivered.
        """
        pool, endpoint, clock = self.makePool()
        d1 = pool.request(Collector().request())
        connection = endpoint.succeed()
        follow: list[Deferred[RequestResult]] = []
        d1.addCallback(lambda _: follow.append(pool.request(Collector().request())))
        connection.receive(complete())
        self.assertEqual(len(follow), 1)
        self.assertEqual(len(endpoint.attempts), 1)
        connection.receive(complete())
        self.successResultOf(follow[0])

    def test_keepAliveOff(self) -> None:
        """
        With keep-alive off requests carry flags 0 and every request gets a
        new connection, which is closed after it.
        """
        pool, endpoint, clock = self.makePool(keepAlive=False)
        pool.request(Collector().request())
        connection = endpoint.succeed()
        self.assertEqual(connection.flags(), [0])
        connection.receive(complete())
        self.assertTrue(connection.transport.disconnecting)
        pool.request(Collector().request())
        self.assertEqual(len(endpoint.attempts), 2)

    def test_idleTimeout(self) -> None:
        """
        An idle connection is closed after C{idleTimeout}.
        """
        pool, endpoint, clock = self.makePool(idleTimeout=30)
        pool.request(Collector().request())
        connection = endpoint.succeed()
        connection.receive(complete())
        clock.advance(29)
        self.assertFalse(connection.transport.disconnecting)
        clock.advance(1)
        self.assertTrue(connection.transport.disconnecting)
        connection.lose()
        self.assertEqual(pool.openConnections, 0)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_idleClosedByApplication(self) -> None:
        """
        An idle connection the application closes is dropped; the next
        request connects anew.
        """
        pool, endpoint, clock = self.makePool()
        pool.request(Collector().request())
        connection = endpoint.succeed()
        connection.receive(complete())
        connection.lose()
        self.assertEqual(pool.idleConnections, 0)
        pool.request(Collector().request())
        self.assertEqual(len(endpoint.attempts), 2)

    def test_ourClosesAreNotEvidence(self) -> None:
        """
        Connections the pool itself closed after one request (idle timeout)
        do not count as an application that ignores keep-alive.
        """
        pool, endpoint, clock = self.makePool(idleTimeout=5)
        for _ in range(4):
            pool.request(Collector().request())
            connection = endpoint.succeed()
            connection.receive(complete())
            clock.advance(5)
            self.assertTrue(connection.transport.disconnecting)
            connection.lose()
        self.assertTrue(pool.keepAliveHonoured)

    def test_keepAliveNotHonouredDetected(self) -> None:
        """
        After three connections closed right after their first request the
        pool stops asking for keep-alive.
        """
        pool, endpoint, clock = self.makePool()
        for _ in range(3):
            self.assertTrue(pool.keepAliveHonoured)
            pool.request(Collector().request())
            connection = endpoint.succeed()
            self.assertEqual(connection.flags(), [1])
            connection.receive(complete())
            connection.lose()
        self.assertFalse(pool.keepAliveHonoured)
        pool.request(Collector().request())
        self.assertEqual(endpoint.succeed().flags(), [0])


class RetryTests(SynchronousTestCase, PoolTestMixin):
    """
    Retrying on a fresh connection when a pooled one was stale.
    """

    def staleSetup(
        self, body: Any = None, method: bytes = b"GET"
    ) -> tuple[ConnectionPool, FakeEndpoint, Connection, Deferred[RequestResult], Collector]:
        """
        A pool whose idle connection has served one request, and a second
        request (by default a GET) started on it.
        """
        pool, endpoint, clock = self.makePool()
        pool.request(Collector().request())
        connection = endpoint.succeed()
        connection.receive(complete())
        collector = Collector()
        d = pool.request(
            collector.request(body=body, params=[(b"REQUEST_METHOD", method)])
        )
        return pool, endpoint, connection, d, collector

    def test_staleRetried(self) -> None:
        """
        A reused connection closed before any response byte: the request is
        sent again on a fresh connection, body included.
        """
        body = io.BytesIO(b"payload")
        body.read(0)
        pool, endpoint, connection, d, collector = self.staleSetup(body=body)
        connection.lose()
        self.assertNoResult(d)
        self.assertEqual(pool.retries, 1)
        fresh = endpoint.succeed()
        fresh.transport.producer.resumeProducing()
        sent = fresh.records()
        self.assertIn((RecordType.STDIN, 1, b"payload"), sent)
        fresh.receive(complete(1, b"second try"))
        self.successResultOf(d)
        self.assertEqual(collector.stdout, [b"second try"])

    def test_staleFileBodyRewound(self) -> None:
        """
        A file body already partly sent is rewound to where it started.
        """
        body = io.BytesIO(b"skip" + b"x" * 300_000)
        body.seek(4)
        pool, endpoint, connection, d, collector = self.staleSetup(body=body)
        connection.transport.producer.resumeProducing()
        connection.lose()
        fresh = endpoint.succeed()
        fresh.records()
        for _ in range(6):
            if fresh.transport.producer is None:
                break
            fresh.transport.producer.resumeProducing()
        stdin = b"".join(c for t, _, c in fresh.records() if t == RecordType.STDIN)
        self.assertEqual(stdin, b"x" * 300_000)

    def test_notRetriedAfterResponseBytes(self) -> None:
        """
        Once a byte of the response arrived the failure goes to the caller.
        """
        pool, endpoint, connection, d, collector = self.staleSetup()
        connection.receive(encodeRecord(RecordType.STDOUT, 1, b"x"))
        connection.lose()
        failure = self.failureResultOf(d, ApplicationConnectionLost)
        self.assertTrue(failure.value.responseStarted)
        self.assertEqual(pool.retries, 0)

    def test_notRetriedOnFreshConnection(self) -> None:
        """
        A fresh connection that dies without a byte is not retried (the app
        may have crashed on this request).
        """
        pool, endpoint, clock = self.makePool()
        d = pool.request(Collector().request())
        endpoint.succeed().lose()
        failure = self.failureResultOf(d, ApplicationConnectionLost)
        self.assertFalse(failure.value.responseStarted)
        self.assertEqual(pool.retries, 0)

    def test_notRetriedWithUnseekableBody(self) -> None:
        """
        A body that cannot be replayed is not retried.
        """

        class Pipe(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, buffer: Any) -> int:
                return 0

        pool, endpoint, connection, d, collector = self.staleSetup(body=Pipe())
        connection.lose()
        self.failureResultOf(d, ApplicationConnectionLost)
        self.assertEqual(pool.retries, 0)

    def test_missingEndRequestNotRetried(self) -> None:
        """
        L{MissingEndRequest} is never retried.
        """
        pool, endpoint, connection, d, collector = self.staleSetup()
        connection.receive(encodeRecord(RecordType.STDOUT, 1))
        connection.lose()
        self.failureResultOf(d, MissingEndRequest)

    def test_notRetriedAfterStaleWindow(self) -> None:
        """
        A connection lost long after the request started is not stale: the
        app was working on the request, so it is not run again.
        """
        pool, endpoint, connection, d, collector = self.staleSetup()
        pool.clock.advance(1.5)  # type: ignore[attr-defined]
        connection.lose()
        self.failureResultOf(d, ApplicationConnectionLost)
        self.assertEqual(pool.retries, 0)

    def test_unsafeMethodRetriedWhenLostAtOnce(self) -> None:
        """
        A POST on a connection that turns out closed as soon as it was
        written (the stale case) is retried.
        """
        pool, endpoint, connection, d, collector = self.staleSetup(
            body=b"form", method=b"POST"
        )
        pool.clock.advance(0.01)  # type: ignore[attr-defined]
        connection.lose()
        self.assertEqual(pool.retries, 1)
        fresh = endpoint.succeed()
        fresh.receive(complete(1, b"once"))
        self.successResultOf(d)

    def test_unsafeMethodNotRetriedAfterWork(self) -> None:
        """
        A POST whose connection is lost after the app may have worked on it
        (past C{unsafeRetryWindow}, though within C{staleRetryWindow}) is not
        run again: the caller gets the error.
        """
        pool, endpoint, connection, d, collector = self.staleSetup(
            body=b"form", method=b"POST"
        )
        pool.clock.advance(0.5)  # type: ignore[attr-defined]
        connection.lose()
        self.failureResultOf(d, ApplicationConnectionLost)
        self.assertEqual(pool.retries, 0)

    def test_idempotentMethodRetriedWithinStaleWindow(self) -> None:
        """
        A PUT or a GET lost within C{staleRetryWindow} is retried.
        """
        for method in (b"GET", b"put"):
            pool, endpoint, connection, d, collector = self.staleSetup(method=method)
            pool.clock.advance(0.5)  # type: ignore[attr-defined]
            connection.lose()
            self.assertEqual(pool.retries, 1, method)

    def test_retriedOnlyOnce(self) -> None:
        """
        A retry that fails too goes to the caller.
        """
        pool, endpoint, connection, d, collector = self.staleSetup()
        connection.lose()
        endpoint.succeed().lose()
        self.failureResultOf(d, ApplicationConnectionLost)
        self.assertEqual(pool.retries, 1)

    def test_freshConnectionEvenWithIdleOnes(self) -> None:
        """
        The retry goes to a new connection even if other idle (possibly
        stale) connections exist, closing one if the cap requires.
        """
        pool, endpoint, clock = self.makePool(maxConnections=2)
        pool.request(Collector().request())
        pool.request(Collector().request())
        first = endpoint.succeed()
        second = endpoint.succeed()
        first.receive(complete())
        second.receive(complete())
        d = pool.request(Collector().request())
        # LIFO: the most recently idle connection is used.
        second.lose()
        self.assertTrue(first.transport.disconnecting)
        first.lose()
        third = endpoint.succeed()
        third.receive(complete())
        self.successResultOf(d)


class LimitTests(SynchronousTestCase, PoolTestMixin):
    """
    The connection cap and the wait queue.
    """

    def test_capAndQueue(self) -> None:
        """
        Requests beyond the cap wait; beyond the queue they fail with
        L{PoolOverloaded}; a freed connection takes the next waiting request.
        """
        pool, endpoint, clock = self.makePool(maxConnections=2, maxQueued=1)
        d1 = pool.request(Collector().request())
        d2 = pool.request(Collector().request())
        self.assertEqual(len(endpoint.attempts), 2)
        a = endpoint.succeed()
        endpoint.succeed()
        d3 = pool.request(Collector().request())
        self.assertEqual(pool.queued, 1)
        d4 = pool.request(Collector().request())
        self.failureResultOf(d4, PoolOverloaded)
        self.assertEqual(pool.rejected, 1)
        self.assertEqual(len(endpoint.attempts), 2)
        a.records()
        a.receive(complete())
        self.successResultOf(d1)
        self.assertEqual(pool.queued, 0)
        self.assertEqual(a.flags(), [1])
        a.receive(complete())
        self.successResultOf(d3)
        self.assertNoResult(d2)

    def test_queuedAbort(self) -> None:
        """
        Aborting a queued request takes it out of the queue.
        """
        pool, endpoint, clock = self.makePool(maxConnections=1)
        pool.request(Collector().request())
        request = Collector().request()
        d = pool.request(request)
        endpoint.succeed()
        self.assertEqual(pool.queued, 1)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(pool.queued, 0)
        request2 = Collector().request()
        d2 = pool.request(request2)
        request2.abort()
        self.failureResultOf(d2, RequestAborted)
        self.assertEqual(pool.queued, 0)

    def test_connectFailure(self) -> None:
        """
        A refused connect fails the waiting request with L{ConnectError}.
        """
        pool, endpoint, clock = self.makePool()
        d = pool.request(Collector().request())
        endpoint.attempts[0][1].errback(ConnectionRefusedError())
        failure = self.failureResultOf(d, ConnectError)
        self.assertIn("cannot connect", str(failure.value))

    def test_connectTimeout(self) -> None:
        """
        A connect that takes too long fails with L{ConnectTimeout}.
        """
        pool, endpoint, clock = self.makePool(connectTimeout=3)
        d = pool.request(Collector().request())
        clock.advance(3)
        self.failureResultOf(d, ConnectTimeout)
        self.assertEqual(pool.openConnections, 0)


class ProbeTests(SynchronousTestCase, PoolTestMixin):
    """
    Learning FCGI_MAX_CONNS, FCGI_MAX_REQS and FCGI_MPXS_CONNS.
    """

    def answer(self, endpoint: FakeEndpoint, values: list[tuple[bytes, bytes]]) -> Connection:
        """
        Connect the probe and answer its GET_VALUES.
        """
        probe = endpoint.succeed(endpoint.pending(probe=True)[0])
        self.assertEqual(probe.records()[0][0], RecordType.GET_VALUES)
        probe.receive(encodeRecord(RecordType.GET_VALUES_RESULT, 0, encodePairs(values)))
        return probe

    def test_probeDoesNotDelay(self) -> None:
        """
        The first request connects at once, beside the probe; the answer
        lowers the cap and the probe connection is closed.
        """
        pool, endpoint, clock = self.makePool(probeValues=True, maxConnections=4)
        pool.request(Collector().request())
        self.assertEqual(len(endpoint.pending()), 1)
        self.assertEqual(len(endpoint.pending(probe=True)), 1)
        probe = self.answer(endpoint, [(b"FCGI_MAX_CONNS", b"1"), (b"FCGI_MPXS_CONNS", b"0")])
        self.assertTrue(probe.transport.disconnecting)
        self.assertEqual(pool.effectiveMaxConnections, 1)
        self.assertFalse(pool.appMultiplexes)
        pool.request(Collector().request())
        self.assertEqual(len(endpoint.pending()), 1)
        self.assertEqual(pool.queued, 2)

    def test_probeClosedWithoutAnswer(self) -> None:
        """
        An application that closes the probe connection without answering
        leaves the configured limits.
        """
        pool, endpoint, clock = self.makePool(probeValues=True, maxConnections=4)
        pool.request(Collector().request())
        probe = endpoint.succeed(endpoint.pending(probe=True)[0])
        probe.lose()
        self.assertEqual(pool.effectiveMaxConnections, 4)
        self.assertIsNone(pool.appMaxConns)

    def test_probeTimesOut(self) -> None:
        """
        A probe never answered is given up after C{probeTimeout}.
        """
        pool, endpoint, clock = self.makePool(probeValues=True, probeTimeout=2)
        pool.request(Collector().request())
        probe = endpoint.succeed(endpoint.pending(probe=True)[0])
        clock.advance(2)
        self.assertTrue(probe.transport.disconnecting)
        self.assertEqual(pool._probeState, "failed")


class MultiplexTests(SynchronousTestCase, PoolTestMixin):
    """
    Several requests on one connection when the application says it can.
    """

    def mpxPool(self, **kw: Any) -> tuple[ConnectionPool, FakeEndpoint, Clock, Connection]:
        """
        A pool that learned FCGI_MPXS_CONNS=1, with one connection up.
        """
        pool, endpoint, clock = self.makePool(probeValues=True, **kw)
        pool.request(Collector().request())
        connection = endpoint.succeed()
        ProbeTests.answer(
            self, endpoint, [(b"FCGI_MPXS_CONNS", b"1"), (b"FCGI_MAX_REQS", b"50")]  # type: ignore[arg-type]
        )
        self.assertTrue(pool.multiplexing)
        return pool, endpoint, clock, connection

    def test_secondRequestSharesConnection(self) -> None:
        """
        A second request goes on the busy connection with id 2.
        """
        pool, endpoint, clock, connection = self.mpxPool()
        connection.records()
        d2 = pool.request(Collector().request())
        self.assertEqual(endpoint.pending(), [])
        self.assertEqual(connection.records()[0][:2], (RecordType.BEGIN_REQUEST, 2))
        connection.receive(complete(2))
        self.successResultOf(d2)

    def test_connectsOnlyWhatTheQueueNeeds(self) -> None:
        """
        When multiplexing, a full connection's overflow opens one new
        connection per C{maxRequestsPerConnection} waiting requests, not one
        per request.
        """
        pool, endpoint, clock, connection = self.mpxPool(maxRequestsPerConnection=4)
        for _ in range(3 + 6):
            pool.request(Collector().request())
        self.assertEqual(connection.protocol.activeCount, 4)
        self.assertEqual(len(endpoint.pending()), 2)
        endpoint.succeed()
        endpoint.succeed()
        self.assertEqual(pool.queued, 0)

    def test_stalledRequestAbortedOthersGoOn(self) -> None:
        """
        A request whose consumer stays paused is aborted once its buffer
        passes the limit; the other request on the connection completes and
        the pool keeps serving.
        """
        pool, endpoint, clock, connection = self.mpxPool(maxBufferSize=1000)
        stalled = Collector().request()
        d = pool.request(stalled)
        stalled.pauseProducing()
        self.assertEqual(connection.transport.producerState, "producing")
        connection.receive(encodeRecord(RecordType.STDOUT, 2, b"x" * 1001))
        self.failureResultOf(d, ResponseBufferOverflow)
        connection.records()
        connection.receive(complete(1))
        connection.receive(complete(2))
        d3 = pool.request(Collector().request())
        connection.receive(complete(1))
        self.successResultOf(d3)

    def test_cantMpxRetried(self) -> None:
        """
        CANT_MPX_CONN turns multiplexing off and the request is retried on a
        connection of its own.
        """
        pool, endpoint, clock, connection = self.mpxPool()
        d2 = pool.request(Collector().request())
        connection.receive(
            encodeRecord(
                RecordType.END_REQUEST,
                2,
                encodeEndRequestBody(0, ProtocolStatus.CANT_MPX_CONN),
            )
        )
        self.assertFalse(pool.multiplexing)
        self.assertEqual(pool.retries, 1)
        second = endpoint.succeed()
        second.receive(complete(1))
        self.successResultOf(d2)


class BadApplicationTests(SynchronousTestCase, PoolTestMixin):
    """
    A misbehaving application fails its request; the pool keeps serving.
    """

    def check(self, data: bytes, close: bool = False) -> None:
        """
        Two requests on two connections; C{data} on the first fails it with
        a protocol error; the second, and a third, still work.
        """
        pool, endpoint, clock = self.makePool()
        d1 = pool.request(Collector().request())
        d2 = pool.request(Collector().request())
        bad = endpoint.succeed()
        good = endpoint.succeed()
        bad.receive(data)
        if close:
            bad.lose()
        self.failureResultOf(d1, ResponseProtocolError)
        if not close:
            self.assertTrue(bad.transport.disconnecting)
            bad.lose()
        good.receive(complete())
        self.successResultOf(d2)
        d3 = pool.request(Collector().request())
        good.receive(complete())
        self.successResultOf(d3)
        self.assertEqual(pool.openConnections, 1)

    def test_garbage(self) -> None:
        """
        Garbage instead of records.
        """
        self.check(b"<html>Internal Server Error</html>")

    def test_truncatedRecord(self) -> None:
        """
        A record cut short by a close.
        """
        self.check(encodeRecord(RecordType.STDOUT, 1, b"0123456789")[:13], close=True)

    def test_wrongSizeEndRequest(self) -> None:
        """
        END_REQUEST with 9 content bytes.
        """
        self.check(bytes.fromhex("0103000100090700") + bytes(16))

    def test_oversizedValuesResult(self) -> None:
        """
        A GET_VALUES_RESULT whose pair declares more than the record holds.
        """
        self.check(
            encodeRecord(RecordType.GET_VALUES_RESULT, 0, b"\x0e\xff\xff\xff\xffFCGI_MAX_CONNS")
        )

    def test_recordForOtherRequest(self) -> None:
        """
        STDOUT for a request id that is not active.
        """
        self.check(encodeRecord(RecordType.STDOUT, 7, b"x"))


class CloseAllTests(SynchronousTestCase, PoolTestMixin):
    """
    Shutting the pool down.
    """

    def test_closeAll(self) -> None:
        """
        Queued requests fail with L{PoolClosed}, idle connections close now,
        busy ones after their request; the Deferred fires when all are gone.
        """
        pool, endpoint, clock = self.makePool(maxConnections=2)
        d1 = pool.request(Collector().request())
        d2 = pool.request(Collector().request())
        a = endpoint.succeed()
        b = endpoint.succeed()
        d3 = pool.request(Collector().request())
        a.receive(complete())
        self.successResultOf(d1)
        # a took the queued request; finish it so a is idle
        a.receive(complete())
        self.successResultOf(d3)
        d4 = pool.request(Collector().request())
        a.receive(complete())
        self.successResultOf(d4)
        pool.request(Collector().request())  # on a again
        closed = pool.closeAll()
        self.failureResultOf(pool.request(Collector().request()), PoolClosed)
        self.assertNoResult(closed)
        a.receive(complete())
        self.assertTrue(a.transport.disconnecting)
        a.lose()
        self.assertNoResult(closed)
        b.receive(complete())
        self.successResultOf(d2)
        b.lose()
        self.successResultOf(closed)

    def test_closeAllFailsQueued(self) -> None:
        """
        Requests still waiting fail with L{PoolClosed}, pending connects are
        cancelled.
        """
        pool, endpoint, clock = self.makePool(maxConnections=1)
        d1 = pool.request(Collector().request())
        d2 = pool.request(Collector().request())
        closed = pool.closeAll()
        self.failureResultOf(d2, PoolClosed)
        self.failureResultOf(d1, PoolClosed)
        self.successResultOf(closed)

    def test_closeAllEmpty(self) -> None:
        """
        An unused pool closes at once.
        """
        pool, endpoint, clock = self.makePool()
        self.successResultOf(pool.closeAll())


class AddressTests(SynchronousTestCase):
    """
    L{ApplicationAddress}.
    """

    def test_parse(self) -> None:
        """
        Descriptions parse to addresses and print back.
        """
        for text, address, shown in [
            ("unix:/tmp/a.sock", ApplicationAddress.unix("/tmp/a.sock"), "unix:/tmp/a.sock"),
            ("unix:path=/x", ApplicationAddress.unix("/x"), "unix:/x"),
            ("/run/php.sock", ApplicationAddress.unix("/run/php.sock"), "unix:/run/php.sock"),
            ("tcp:127.0.0.1:9000", ApplicationAddress.tcp("127.0.0.1", 9000), "tcp:127.0.0.1:9000"),
            ("tcp:host=::1:port=9000", ApplicationAddress.tcp("::1", 9000), "tcp:::1:9000"),
            ("localhost:9000", ApplicationAddress.tcp("localhost", 9000), "tcp:localhost:9000"),
            ("[::1]:9000", ApplicationAddress.tcp("::1", 9000), "tcp:::1:9000"),
        ]:
            self.assertEqual(ApplicationAddress.parse(text), address)
            self.assertEqual(str(address), shown)
        self.assertRaises(ValueError, ApplicationAddress.parse, "nonsense")

    def test_endpoint(self) -> None:
        """
        A pool built from a description connects through the reactor.
        """
        reactor = MemoryReactorClock()
        pool = ConnectionPool(reactor, "unix:/tmp/x.sock", probeValues=False)
        pool.request(Collector().request())
        self.assertEqual(reactor.unixClients[0][0], "/tmp/x.sock")
        pool = ConnectionPool(reactor, "tcp:127.0.0.1:9000", probeValues=False)
        pool.request(Collector().request())
        self.assertEqual(reactor.tcpClients[0][:2], ("127.0.0.1", 9000))


class OneConnectionWorkers:
    """
    A fake application that, like libfcgi or php-fpm, serves one connection
    per worker: a worker C{accept}s the oldest connection in the listen
    queue and then reads only that connection, request after request, until
    it closes.  Connections wait in the listen queue (in connect order) until
    a worker is free.  A request takes the milliseconds its C{MS} param says
    from the moment a worker reads it.

    @ivar served: (connection index, request id) of each request answered.
    """

    def __init__(self, endpoint: FakeEndpoint, clock: Clock, workers: int = 1) -> None:
        self.endpoint = endpoint
        self.clock = clock
        self.workers: list[Connection | None] = [None] * workers
        self.queue: list[Connection] = []
        self.lost: set[int] = set()
        self.served: list[tuple[int, int]] = []
        self._seen = 0
        # connection id -> (request id, params so far, due time or None)
        self._current: dict[int, tuple[int, bytes, float | None]] = {}
        self._unread: dict[int, bytes] = {}

    def _index(self, connection: Connection) -> int:
        return self.endpoint.connections.index(connection)

    def _lose(self, connection: Connection) -> None:
        if id(connection) not in self.lost:
            self.lost.add(id(connection))
            connection.lose()

    def step(self) -> None:
        """
        Complete closes, accept, read and answer what is due now.
        """
        while self._seen < len(self.endpoint.connections):
            self.queue.append(self.endpoint.connections[self._seen])
            self._seen += 1
        for connection in self.endpoint.connections:
            if connection.transport.disconnecting and id(connection) not in self.lost:
                self._lose(connection)
        for index, connection in enumerate(self.workers):
            if connection is not None and id(connection) in self.lost:
                self.workers[index] = None
                self._current.pop(id(connection), None)
        for index, connection in enumerate(self.workers):
            while self.workers[index] is None and self.queue:
                candidate = self.queue.pop(0)
                if id(candidate) not in self.lost:
                    self.workers[index] = candidate
        now = self.clock.seconds()
        for connection in list(self.workers):
            if connection is None:
                continue
            key = id(connection)
            data = self._unread.pop(key, b"") + connection.transport.value()
            connection.transport.clear()
            reader = RecordReader()
            for record in reader.feed(data):
                requestId, params, due = self._current.get(key, (record.requestId, b"", None))
                if record.type == RecordType.PARAMS and record.content:
                    params += record.content
                elif record.type == RecordType.PARAMS:
                    pairs = dict(decodePairs(params, "PARAMS"))
                    due = now + int(pairs.get(b"MS", b"0")) / 1000
                self._current[key] = (requestId, params, due)
            requestId, params, due = self._current.get(key, (0, b"", None))
            if due is not None and due <= now:
                del self._current[key]
                self.served.append((self._index(connection), requestId))
                connection.receive(complete(requestId))

    def run(self, until: Any, limit: float, tick: float = 0.005) -> None:
        """
        Step the application and advance the clock by C{tick} until
        C{until()} is true or C{limit} seconds have passed.
        """
        end = self.clock.seconds() + limit
        self.step()
        while not until() and self.clock.seconds() < end:
            self.clock.advance(tick)
            self.step()


def msRequest(collector: Collector, ms: int) -> FastCGIRequest:
    """
    A request the fake application takes C{ms} milliseconds to answer.
    """
    return FastCGIRequest(
        [(b"MS", str(ms).encode())], writeStdout=collector.stdout.append
    )


class ClosedLoop:
    """
    C{clients} clients, each sending C{count} requests one after the other
    (the next from the previous one's callback, as a real client does).

    @ivar latencies: seconds from start to result of each request.
    @ivar failures: failures of requests.
    """

    def __init__(
        self, pool: ConnectionPool, clients: int, count: int, ms: Any
    ) -> None:
        self.pool = pool
        self.count = count
        self.ms = ms
        self.latencies: list[float] = []
        self.failures: list[Failure] = []
        self.finished = 0
        self.clients = clients
        for client in range(clients):
            self._send(client, 0)

    def _send(self, client: int, number: int) -> None:
        started = self.pool.clock.seconds()
        d = self.pool.request(msRequest(Collector(), self.ms(client, number)))

        def done(result: object) -> None:
            self.latencies.append(self.pool.clock.seconds() - started)
            if isinstance(result, Failure):
                self.failures.append(result)
            if number + 1 < self.count:
                self._send(client, number + 1)
            else:
                self.finished += 1

        d.addBoth(done)

    def done(self) -> bool:
        """
        Whether every client sent all its requests.
        """
        return self.finished == self.clients


class StalledAcceptTests(SynchronousTestCase, PoolTestMixin):
    """
    Applications with fewer workers than pool connections (libfcgi, php-fpm):
    a worker keeps reading the idle connection it served, so a request on a
    new connection waits in the listen queue until the pool closes an idle
    connection.
    """

    def test_idleConnectionClosedForStalledRequest(self) -> None:
        """
        Request A runs on the only worker's connection; B goes on a second
        connection, unread; A ends and its connection goes idle.  The pool
        closes the idle connection shortly after (C{stallGrace}), so the
        worker accepts B's connection and B completes, long before the
        response timeout.
        """
        pool, endpoint, clock = self.makePool(maxConnections=16)
        endpoint.autoConnect = True
        app = OneConnectionWorkers(endpoint, clock, workers=1)
        dA = pool.request(msRequest(Collector(), 100))
        app.step()
        dB = pool.request(msRequest(Collector(), 100))
        app.run(lambda: dA.called, 1)
        self.successResultOf(dA)
        self.assertNoResult(dB)
        first, second = endpoint.connections
        self.assertEqual(pool.idleConnections, 1)
        self.assertFalse(first.transport.disconnecting)
        endedA = clock.seconds()
        with capturedLogs() as events:
            app.run(lambda: dB.called, 5)
        self.successResultOf(dB)
        [event] = [e for e in events if "rescues" in e or "maxConnections" in e]
        self.assertEqual(event["log_level"], LogLevel.info)
        self.assertEqual((event["idle"], event["connections"]), (1, 2))
        self.assertGreaterEqual(event["waited"], 0.5)
        self.assertTrue(first.transport.disconnecting)
        self.assertLess(clock.seconds() - endedA, 1.0)
        self.assertEqual(pool.stallRescues, 1)
        self.assertEqual(pool.connectionsOpened, 2)
        # The worker now serves the second connection, which is reused.
        dC = pool.request(msRequest(Collector(), 10))
        app.run(lambda: dC.called, 1)
        self.successResultOf(dC)
        self.assertEqual((pool.connectionsOpened, pool.requestsReused), (2, 1))

    def test_singleWorkerClosedLoop(self) -> None:
        """
        Four clients sending 25 requests each, one after the other, through
        a pool of 16 connections to a one-worker application: every request
        succeeds within a few seconds, and kept connections are still
        reused.
        """
        pool, endpoint, clock = self.makePool(maxConnections=16)
        endpoint.autoConnect = True
        app = OneConnectionWorkers(endpoint, clock, workers=1)
        load = ClosedLoop(pool, 4, 25, lambda client, number: 5 if number % 5 == 0 else 1)
        app.run(load.done, 60)
        self.assertTrue(load.done())
        self.assertEqual(load.failures, [])
        self.assertEqual(pool.requestsServed, 100)
        self.assertLess(max(load.latencies), 3.0)
        self.assertGreater(pool.requestsReused, 50)
        self.assertGreater(pool.stallRescues, 0)

    def test_singleWorkerSlowRequests(self) -> None:
        """
        The same with requests of 1 s each: all succeed, none waits for
        the response timeout.
        """
        pool, endpoint, clock = self.makePool(maxConnections=16)
        endpoint.autoConnect = True
        app = OneConnectionWorkers(endpoint, clock, workers=1)
        load = ClosedLoop(pool, 4, 4, lambda client, number: 1000)
        app.run(load.done, 60, tick=0.05)
        self.assertTrue(load.done())
        self.assertEqual(load.failures, [])
        self.assertLess(max(load.latencies), 10.0)

    def assertNoThrash(self, workers: int, ms: Any, count: int = 10) -> ConnectionPool:
        """
        C{workers} clients against an application with as many workers:
        every request succeeds, exactly one connection per client is
        opened and none is closed.
        """
        pool, endpoint, clock = self.makePool(maxConnections=16)
        endpoint.autoConnect = True
        app = OneConnectionWorkers(endpoint, clock, workers=workers)
        load = ClosedLoop(pool, workers, count, ms)
        app.run(load.done, 120, tick=0.01)
        self.assertTrue(load.done())
        self.assertEqual(load.failures, [])
        self.assertEqual(pool.connectionsOpened, workers)
        self.assertEqual(pool.stallRescues, 0)
        self.assertEqual(
            [c.transport.disconnecting for c in endpoint.connections], [False] * workers
        )
        self.assertEqual(pool.requestsReused, workers * (count - 1))
        return pool

    def test_enoughWorkersFastRequests(self) -> None:
        """
        With a worker per client, fast requests never close a connection.
        """
        self.assertNoThrash(4, lambda client, number: 5 if number % 3 == 0 else 1)

    def test_enoughWorkersSlowRequests(self) -> None:
        """
        With a worker per client, requests of 2 s each (longer than
        C{stallGrace}: the first ones on new connections wait that long for
        their first byte) never close a connection.
        """
        self.assertNoThrash(4, lambda client, number: 2000, count=4)

    def test_enoughWorkersMixedRequests(self) -> None:
        """
        With a worker per client, a mix of slow and fast requests does not
        close connections once the pool knows how long requests take.
        """
        self.assertNoThrash(
            4, lambda client, number: 800 if (client + number) % 4 == 0 else 300, count=8
        )

    def test_probeHoldsRescue(self) -> None:
        """
        While the GET_VALUES probe is unanswered it may hold a worker
        itself, so no idle connection is closed for a stalled request before
        the probe is given up.
        """
        pool, endpoint, clock = self.makePool(maxConnections=16, probeValues=True, probeTimeout=1.0)
        endpoint.autoConnect = True
        app = OneConnectionWorkers(endpoint, clock, workers=1)
        dA = pool.request(msRequest(Collector(), 10))
        app.step()
        dB = pool.request(msRequest(Collector(), 10))
        app.run(lambda: dA.called, 1)
        self.successResultOf(dA)
        app.run(lambda: False, 0.95 - clock.seconds())
        self.assertNoResult(dB)
        self.assertEqual(pool.stallRescues, 0)
        app.run(lambda: dB.called, 3)
        self.successResultOf(dB)
        self.assertEqual(pool.stallRescues, 1)

    def test_stallGraceNoneDisables(self) -> None:
        """
        C{stallGrace=None} keeps the old behaviour: the idle connection is
        kept and the second request waits.
        """
        pool, endpoint, clock = self.makePool(maxConnections=16, stallGrace=None)
        endpoint.autoConnect = True
        app = OneConnectionWorkers(endpoint, clock, workers=1)
        dA = pool.request(msRequest(Collector(), 10))
        app.step()
        dB = pool.request(msRequest(Collector(), 10))
        app.run(lambda: dA.called, 1)
        app.run(lambda: False, 5)
        self.assertNoResult(dB)
        self.assertEqual(pool.idleConnections, 1)
        pool.closeAll()
        app.step()

    def test_slowFirstRequestBoundedCloses(self) -> None:
        """
        A request that is merely slow (10 s, the application has a worker
        for it) on a new connection, while another client's fast requests
        keep a connection busy, closes only a few connections (the pool
        backs off), and everything succeeds.
        """
        pool, endpoint, clock = self.makePool(maxConnections=16)
        endpoint.autoConnect = True
        app = OneConnectionWorkers(endpoint, clock, workers=4)
        load = ClosedLoop(pool, 1, 400, lambda client, number: 20)
        slow = pool.request(msRequest(Collector(), 10_000))
        app.run(lambda: slow.called and load.done(), 60, tick=0.01)
        self.successResultOf(slow)
        self.assertEqual(load.failures, [])
        self.assertLessEqual(pool.stallRescues, 5)

    def test_multiplexingUnaffected(self) -> None:
        """
        On a multiplexing pool an idle connection is not closed for a
        request waiting on another connection.
        """
        pool, endpoint, clock, connection = MultiplexTests.mpxPool(
            self, maxRequestsPerConnection=1  # type: ignore[arg-type]
        )
        d2 = pool.request(Collector().request())
        second = endpoint.succeed()
        connection.receive(complete(1))
        self.assertEqual(pool.idleConnections, 1)
        clock.advance(5)
        self.assertFalse(connection.transport.disconnecting)
        self.assertEqual(pool.stallRescues, 0)
        second.receive(complete(1))
        self.successResultOf(d2)
