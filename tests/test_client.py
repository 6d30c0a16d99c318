"""
Tests for L{txfastcgi.client}: the FastCGI client protocol and requests.
"""

from __future__ import annotations

import io

from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IPullProducer, IPushProducer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject  # type: ignore[import-untyped]

from twisted.internet.error import ConnectionDone, ConnectionLost
from txfastcgi.client import (
    ApplicationConnectionLost,
    ApplicationOverloaded,
    CantMultiplexConnection,
    FastCGIClientProtocol,
    FastCGIRequest,
    MissingEndRequest,
    RequestAborted,
    RequestRefused,
    RequestResult,
    ResponseBufferOverflow,
    ResponseProtocolError,
    ResponseTimeout,
    UnknownRole,
)
from txfastcgi.fcgi.constants import ProtocolStatus, RecordType, Role
from txfastcgi.fcgi.records import (
    STREAM_CHUNK_SIZE,
    Record,
    RecordReader,
    encodeEndRequestBody,
    encodePairs,
    encodeRecord,
)


def stdout(requestId: int, data: bytes) -> bytes:
    """
    Encode a STDOUT record.
    """
    return encodeRecord(RecordType.STDOUT, requestId, data)


def end(requestId: int = 1, appStatus: int = 0, protocolStatus: int = 0) -> bytes:
    """
    Encode END_REQUEST.
    """
    return encodeRecord(
        RecordType.END_REQUEST, requestId, encodeEndRequestBody(appStatus, protocolStatus)
    )


def complete(requestId: int = 1, body: bytes = b"ok") -> bytes:
    """
    A complete response: STDOUT, its end and END_REQUEST.
    """
    return stdout(requestId, body) + stdout(requestId, b"") + end(requestId)


class Collector:
    """
    Collects what a request writes.
    """

    def __init__(self) -> None:
        self.stdout: list[bytes] = []
        self.stderr: list[bytes] = []

    def request(self, **kw: object) -> FastCGIRequest:
        """
        Build a request writing here.
        """
        return FastCGIRequest(
            kw.pop("params", [(b"QUERY_STRING", b"")]),  # type: ignore[arg-type]
            writeStdout=self.stdout.append,
            writeStderr=self.stderr.append,
            **kw,  # type: ignore[arg-type]
        )


class ProtocolTestMixin:
    """
    Builds a connected protocol on a L{StringTransport} and a L{Clock}.
    """

    def connect(self, **kw: object) -> tuple[FastCGIClientProtocol, StringTransport, Clock]:
        """
        A connected protocol.
        """
        clock = Clock()
        protocol = FastCGIClientProtocol(clock, **kw)  # type: ignore[arg-type]
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport, clock


def sentRecords(transport: StringTransport) -> list[Record]:
    """
    Decode and clear what was written to C{transport}.
    """
    records = RecordReader().feed(transport.value())
    transport.clear()
    return records


class RequestTests(SynchronousTestCase, ProtocolTestMixin):
    """
    Starting a request and reading its response.
    """

    def test_interfaces(self) -> None:
        """
        L{FastCGIRequest} is a push producer.
        """
        self.assertTrue(verifyObject(IPushProducer, Collector().request()))

    def test_beginAndParamsWrittenAtOnce(self) -> None:
        """
        BEGIN_REQUEST with FCGI_KEEP_CONN, PARAMS and (without a body) the end
        of STDIN are written as soon as the request starts.
        """
        protocol, transport, clock = self.connect()
        request = Collector().request(params=[(b"A", b"b")])
        protocol.request(request)
        records = sentRecords(transport)
        self.assertEqual(
            [(r.type, r.requestId, r.content) for r in records],
            [
                (RecordType.BEGIN_REQUEST, 1, b"\x00\x01\x01\x00\x00\x00\x00\x00"),
                (RecordType.PARAMS, 1, encodePairs([(b"A", b"b")])),
                (RecordType.PARAMS, 1, b""),
                (RecordType.STDIN, 1, b""),
            ],
        )
        self.assertEqual(protocol.state, "ACTIVE")

    def test_keepConnectionFalse(self) -> None:
        """
        Without keep-alive the flags are 0 and the connection closes after the
        request.
        """
        protocol, transport, clock = self.connect()
        protocol.request(Collector().request(), keepConnection=False)
        self.assertEqual(sentRecords(transport)[0].content[2], 0)
        self.assertFalse(protocol.reusable)
        protocol.dataReceived(complete())
        self.assertTrue(transport.disconnecting)

    def test_responseDelivered(self) -> None:
        """
        STDOUT and STDERR go to their callables as they arrive; END_REQUEST
        fires C{finished} with the statuses, and the protocol is idle again
        and tells its owner.
        """
        protocol, transport, clock = self.connect()
        idle: list[FastCGIClientProtocol] = []
        protocol.onIdle = idle.append
        collector = Collector()
        d = protocol.request(collector.request())
        protocol.dataReceived(stdout(1, b"Status: 200\r\n\r\n"))
        self.assertEqual(collector.stdout, [b"Status: 200\r\n\r\n"])
        protocol.dataReceived(encodeRecord(RecordType.STDERR, 1, b"oops"))
        self.assertEqual(collector.stderr, [b"oops"])
        self.assertNoResult(d)
        protocol.dataReceived(stdout(1, b"") + end(1, appStatus=3))
        self.assertEqual(self.successResultOf(d), RequestResult(3, 0))
        self.assertEqual(idle, [protocol])
        self.assertEqual(protocol.state, "IDLE")
        self.assertEqual(protocol.requestsCompleted, 1)

    def test_requestIdsReused(self) -> None:
        """
        A second request on a kept connection uses id 1 again.
        """
        protocol, transport, clock = self.connect()
        protocol.request(Collector().request())
        protocol.dataReceived(complete())
        transport.clear()
        protocol.request(Collector().request())
        self.assertEqual(sentRecords(transport)[0].requestId, 1)

    def test_requestTwiceRefused(self) -> None:
        """
        A request object runs once.
        """
        protocol, transport, clock = self.connect()
        request = Collector().request()
        protocol.request(request)
        self.assertRaises(RuntimeError, protocol.request, request)

    def test_refusals(self) -> None:
        """
        Each protocolStatus other than REQUEST_COMPLETE fails the request with
        its own exception type carrying the statuses.
        """
        for status, exceptionType in [
            (ProtocolStatus.CANT_MPX_CONN, CantMultiplexConnection),
            (ProtocolStatus.OVERLOADED, ApplicationOverloaded),
            (ProtocolStatus.UNKNOWN_ROLE, UnknownRole),
            (9, RequestRefused),
        ]:
            protocol, transport, clock = self.connect()
            d = protocol.request(Collector().request())
            protocol.dataReceived(end(1, 5, status))
            failure = self.failureResultOf(d, exceptionType)
            self.assertEqual(failure.value.protocolStatus, status)
            self.assertEqual(failure.value.appStatus, 5)
            self.assertIn("refused", str(failure.value))


class BackpressureTests(SynchronousTestCase, ProtocolTestMixin):
    """
    Pausing a request pauses the connection; the body follows the transport.
    """

    def test_pausePausesTransport(self) -> None:
        """
        Pausing the request pauses the transport; resuming resumes it.
        """
        protocol, transport, clock = self.connect()
        request = Collector().request()
        protocol.request(request)
        request.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        request.resumeProducing()
        self.assertEqual(transport.producerState, "producing")

    def test_pausedOutputBuffered(self) -> None:
        """
        STDOUT read while paused is held and delivered on resume; the result
        waits for it.
        """
        protocol, transport, clock = self.connect()
        collector = Collector()
        request = collector.request()
        d = protocol.request(request)
        protocol.dataReceived(stdout(1, b"a"))
        request.pauseProducing()
        protocol.dataReceived(stdout(1, b"b") + complete(1, b"c"))
        self.assertEqual(collector.stdout, [b"a"])
        self.assertNoResult(d)
        request.resumeProducing()
        # STDOUT records that arrive in one read are delivered as one piece.
        self.assertEqual(collector.stdout, [b"a", b"bc"])
        self.successResultOf(d)

    def test_pauseDuringWrite(self) -> None:
        """
        A consumer that pauses the request inside C{write} gets no more data
        until it resumes.
        """
        protocol, transport, clock = self.connect()
        got: list[bytes] = []

        def write(data: bytes) -> None:
            got.append(data)
            request.pauseProducing()

        request = FastCGIRequest([], writeStdout=write, writeStderr=lambda data: None)
        protocol.request(request)
        # (A STDERR record between them, or the two pieces would come as one.)
        protocol.dataReceived(
            stdout(1, b"1") + encodeRecord(RecordType.STDERR, 1, b"e") + stdout(1, b"2")
        )
        self.assertEqual(got, [b"1"])
        self.assertEqual(transport.producerState, "paused")
        request.resumeProducing()
        self.assertEqual(got, [b"1", b"2"])

    def test_detachedAfterEnd(self) -> None:
        """
        A finished request no longer controls the connection: pausing it
        does not pause the transport the next request uses.
        """
        protocol, transport, clock = self.connect()
        request = Collector().request()
        protocol.request(request)
        protocol.dataReceived(complete())
        request.pauseProducing()
        self.assertEqual(transport.producerState, "producing")
        protocol.request(Collector().request())
        self.assertEqual(transport.producerState, "producing")
        request.stopProducing()
        self.assertFalse(transport.disconnecting)

    def test_bodyStreamedByPullProducer(self) -> None:
        """
        A file body is read one chunk per C{resumeProducing} of a pull
        producer registered on the transport, which is unregistered after the
        empty STDIN record.
        """
        protocol, transport, clock = self.connect()
        body = io.BytesIO(b"x" * (STREAM_CHUNK_SIZE * 2 + 10))
        protocol.request(Collector().request(body=body))
        sentRecords(transport)
        producer = transport.producer
        self.assertIsNotNone(producer)
        self.assertFalse(transport.streaming)
        self.assertTrue(verifyObject(IPullProducer, producer))
        self.assertEqual(body.tell(), 0)
        producer.resumeProducing()
        self.assertEqual(body.tell(), STREAM_CHUNK_SIZE)
        self.assertEqual([len(r.content) for r in sentRecords(transport)], [STREAM_CHUNK_SIZE])
        producer.resumeProducing()
        producer.resumeProducing()
        self.assertEqual(
            [len(r.content) for r in sentRecords(transport)], [STREAM_CHUNK_SIZE, 10, 0]
        )
        self.assertIsNone(transport.producer)

    def test_answerBeforeBody(self) -> None:
        """
        The response is read while the body is still being sent (no
        deadlock); once END_REQUEST arrives the rest of the body is dropped.
        """
        protocol, transport, clock = self.connect()
        body = io.BytesIO(b"x" * (STREAM_CHUNK_SIZE * 5))
        collector = Collector()
        d = protocol.request(collector.request(body=body))
        transport.producer.resumeProducing()
        protocol.dataReceived(complete(1, b"early"))
        self.assertEqual(collector.stdout, [b"early"])
        self.successResultOf(d)
        self.assertIsNone(transport.producer)

    def test_smallBytesBodyInline(self) -> None:
        """
        A small bytes body is written at once, no producer needed.
        """
        protocol, transport, clock = self.connect()
        protocol.request(Collector().request(body=b"hello"))
        records = sentRecords(transport)
        self.assertEqual(
            [(r.type, r.content) for r in records[-2:]],
            [(RecordType.STDIN, b"hello"), (RecordType.STDIN, b"")],
        )
        self.assertIsNone(transport.producer)

    def test_filterData(self) -> None:
        """
        A Filter request sends STDIN, then DATA.
        """
        protocol, transport, clock = self.connect()
        protocol.request(Collector().request(role=Role.FILTER, body=b"in", data=b"file"))
        records = sentRecords(transport)
        self.assertEqual(
            [(r.type, r.content) for r in records[3:]],
            [
                (RecordType.STDIN, b"in"),
                (RecordType.STDIN, b""),
                (RecordType.DATA, b"file"),
                (RecordType.DATA, b""),
            ],
        )


class MultiplexTests(SynchronousTestCase, ProtocolTestMixin):
    """
    Several requests on one connection.
    """

    def test_stalledRequestDoesNotPauseOthers(self) -> None:
        """
        With two requests active, pausing one does not pause the transport;
        its output is buffered while the other's flows.
        """
        protocol, transport, clock = self.connect()
        one, two = Collector(), Collector()
        r1 = one.request()
        r2 = two.request()
        protocol.request(r1)
        d2 = protocol.request(r2)
        self.assertEqual(r2.requestId, 2)
        r1.pauseProducing()
        self.assertEqual(transport.producerState, "producing")
        protocol.dataReceived(stdout(1, b"held") + complete(2, b"free"))
        self.assertEqual(one.stdout, [])
        self.assertEqual(two.stdout, [b"free"])
        self.successResultOf(d2)
        # Now only the paused request is active: the transport pauses.
        self.assertEqual(transport.producerState, "paused")
        r1.resumeProducing()
        self.assertEqual(one.stdout, [b"held"])

    def test_bufferOverflowAborts(self) -> None:
        """
        A paused request whose buffer passes the limit is aborted with
        ABORT_REQUEST and fails with L{ResponseBufferOverflow}; the other
        request goes on, and the aborted one's END_REQUEST is absorbed.
        """
        protocol, transport, clock = self.connect(maxBufferSize=100)
        r1 = Collector().request()
        two = Collector()
        r2 = two.request()
        d1 = protocol.request(r1)
        d2 = protocol.request(r2)
        transport.clear()
        r1.pauseProducing()
        protocol.dataReceived(stdout(1, b"x" * 60))
        self.assertNoResult(d1)
        protocol.dataReceived(stdout(1, b"x" * 60))
        self.failureResultOf(d1, ResponseBufferOverflow)
        self.assertEqual(
            [(r.type, r.requestId) for r in sentRecords(transport)],
            [(RecordType.ABORT_REQUEST, 1)],
        )
        protocol.dataReceived(stdout(1, b"late") + complete(2, b"two") + end(1))
        self.assertEqual(two.stdout, [b"two"])
        self.successResultOf(d2)
        self.assertEqual(protocol.state, "IDLE")
        self.assertTrue(protocol.reusable)

    def test_bodiesRoundRobin(self) -> None:
        """
        Two bodies share the one pull producer, a chunk each in turn.
        """
        protocol, transport, clock = self.connect()
        size = STREAM_CHUNK_SIZE * 5
        protocol.request(Collector().request(body=io.BytesIO(b"a" * size)))
        protocol.request(Collector().request(body=io.BytesIO(b"b" * size)))
        sentRecords(transport)
        transport.producer.resumeProducing()
        transport.producer.resumeProducing()
        self.assertEqual([r.requestId for r in sentRecords(transport)], [1, 2])


class AbortTests(SynchronousTestCase, ProtocolTestMixin):
    """
    Cancelling and aborting requests.
    """

    def test_cancelSendsAbort(self) -> None:
        """
        Cancelling C{finished} fails it with L{CancelledError} at once and
        sends ABORT_REQUEST; when the application ends the request the
        connection is idle and reusable.
        """
        protocol, transport, clock = self.connect()
        idle: list[FastCGIClientProtocol] = []
        protocol.onIdle = idle.append
        collector = Collector()
        d = protocol.request(collector.request())
        transport.clear()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(
            [(r.type, r.requestId) for r in sentRecords(transport)],
            [(RecordType.ABORT_REQUEST, 1)],
        )
        protocol.dataReceived(stdout(1, b"ignored"))
        self.assertEqual(collector.stdout, [])
        protocol.dataReceived(stdout(1, b"") + end(1))
        self.assertEqual(idle, [protocol])
        clock.advance(100)
        self.assertFalse(transport.disconnecting)

    def test_abortFromStdoutOfAnEndedRequest(self) -> None:
        """
        A caller that aborts while handling STDOUT that arrived in the same
        read as the request's END_REQUEST (the codec has already ended the
        request) fails the request without sending ABORT_REQUEST, and the
        connection is idle and reusable afterwards.
        """
        protocol, transport, clock = self.connect()
        idle: list[FastCGIClientProtocol] = []
        protocol.onIdle = idle.append
        holder: list[FastCGIRequest] = []

        def abortOnStdout(data: bytes) -> None:
            holder[0].abort()

        request = FastCGIRequest([(b"QUERY_STRING", b"")], writeStdout=abortOnStdout)
        holder.append(request)
        d = protocol.request(request)
        transport.clear()
        protocol.dataReceived(complete(1, b"no colon\r\n\r\n"))
        self.failureResultOf(d, RequestAborted)
        self.assertEqual(sentRecords(transport), [])
        self.assertEqual(idle, [protocol])
        self.assertEqual(protocol.state, "IDLE")
        clock.advance(100)
        self.assertFalse(transport.disconnecting)

    def test_graceExpiryCloses(self) -> None:
        """
        An application that does not end an aborted request within the grace
        period gets its connection closed.
        """
        protocol, transport, clock = self.connect(abortGrace=2.0)
        request = Collector().request()
        d = protocol.request(request)
        request.abort()
        self.failureResultOf(d, RequestAborted)
        clock.advance(1.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.2)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(protocol.reusable)

    def test_graceExpiryWithOthersRetires(self) -> None:
        """
        When other requests still run, grace expiry retires the connection:
        no new requests, closed once they end.
        """
        protocol, transport, clock = self.connect(abortGrace=1.0)
        r1 = Collector().request()
        protocol.request(r1)
        d2 = protocol.request(Collector().request())
        r1.abort()
        self.failureResultOf(r1.finished, RequestAborted)
        clock.advance(1.5)
        self.assertFalse(transport.disconnecting)
        self.assertFalse(protocol.reusable)
        protocol.dataReceived(complete(2))
        self.successResultOf(d2)
        self.assertTrue(transport.disconnecting)

    def test_consumerExceptionAbortsOnlyItsRequest(self) -> None:
        """
        A C{writeStdout} that raises aborts its request (logged), not the
        connection.
        """
        protocol, transport, clock = self.connect()

        def explode(data: bytes) -> None:
            raise ValueError("consumer broke")

        d = protocol.request(FastCGIRequest([], writeStdout=explode))
        protocol.dataReceived(stdout(1, b"x"))
        self.failureResultOf(d, RequestAborted)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertFalse(transport.disconnecting)

    def test_dataAfterProtocolErrorIgnored(self) -> None:
        """
        Bytes that arrive after a protocol error closed the connection are
        ignored.
        """
        protocol, transport, clock = self.connect()
        d = protocol.request(Collector().request())
        protocol.dataReceived(b"garbage!")
        protocol.dataReceived(b"more garbage")
        self.failureResultOf(d, ResponseProtocolError)

    def test_stopProducingAborts(self) -> None:
        """
        The consumer going away aborts the request.
        """
        protocol, transport, clock = self.connect()
        request = Collector().request()
        d = protocol.request(request)
        transport.clear()
        request.stopProducing()
        self.failureResultOf(d, RequestAborted)
        self.assertEqual(sentRecords(transport)[0].type, RecordType.ABORT_REQUEST)

    def test_abortAfterEndIsHarmless(self) -> None:
        """
        Aborting a finished request does nothing.
        """
        protocol, transport, clock = self.connect()
        request = Collector().request()
        d = protocol.request(request)
        protocol.dataReceived(complete())
        transport.clear()
        request.abort()
        self.successResultOf(d)
        self.assertEqual(transport.value(), b"")


class TimeoutTests(SynchronousTestCase, ProtocolTestMixin):
    """
    The response timeout.
    """

    def test_silentApplicationTimesOut(self) -> None:
        """
        No byte for C{responseTimeout} seconds fails the request with
        L{ResponseTimeout} and closes the connection.
        """
        protocol, transport, clock = self.connect(responseTimeout=10.0)
        d = protocol.request(Collector().request())
        clock.advance(9)
        self.assertNoResult(d)
        clock.advance(1)
        self.failureResultOf(d, ResponseTimeout)
        self.assertTrue(transport.disconnecting)
        self.flushLoggedErrors()

    def test_activityResetsTimeout(self) -> None:
        """
        Each arrival restarts the timeout.
        """
        protocol, transport, clock = self.connect(responseTimeout=10.0)
        d = protocol.request(Collector().request())
        for _ in range(5):
            clock.advance(8)
            protocol.dataReceived(stdout(1, b"."))
        self.assertNoResult(d)
        clock.advance(10)
        self.failureResultOf(d, ResponseTimeout)

    def test_pausedDoesNotTimeOut(self) -> None:
        """
        While the consumer holds the request paused the application cannot
        send, so the timeout does not run.
        """
        protocol, transport, clock = self.connect(responseTimeout=10.0)
        request = Collector().request()
        d = protocol.request(request)
        request.pauseProducing()
        clock.advance(100)
        self.assertNoResult(d)
        request.resumeProducing()
        clock.advance(10)
        self.failureResultOf(d, ResponseTimeout)

    def test_idleDoesNotTimeOut(self) -> None:
        """
        An idle connection has no response timeout, and no delayed call left.
        """
        protocol, transport, clock = self.connect(responseTimeout=10.0)
        protocol.request(Collector().request())
        protocol.dataReceived(complete())
        clock.advance(10)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(5)
        d = protocol.request(Collector().request())
        clock.advance(9)
        self.assertNoResult(d)
        clock.advance(1)
        self.failureResultOf(d, ResponseTimeout)


class ConnectionLossTests(SynchronousTestCase, ProtocolTestMixin):
    """
    The application closing the connection, and protocol errors.
    """

    def test_lostBeforeFirstByte(self) -> None:
        """
        A close before any response byte says so in the failure.
        """
        protocol, transport, clock = self.connect()
        d = protocol.request(Collector().request())
        protocol.connectionLost(Failure(ConnectionDone()))
        failure = self.failureResultOf(d, ApplicationConnectionLost)
        self.assertFalse(failure.value.responseStarted)
        self.assertNotIsInstance(failure.value, MissingEndRequest)

    def test_lostAfterFirstByte(self) -> None:
        """
        A close after some STDOUT says the response had started.
        """
        protocol, transport, clock = self.connect()
        d = protocol.request(Collector().request())
        protocol.dataReceived(stdout(1, b"partial"))
        protocol.connectionLost(Failure(ConnectionLost()))
        failure = self.failureResultOf(d, ApplicationConnectionLost)
        self.assertTrue(failure.value.responseStarted)

    def test_missingEndRequest(self) -> None:
        """
        A close after the end of STDOUT but before END_REQUEST is
        L{MissingEndRequest}.
        """
        protocol, transport, clock = self.connect()
        d = protocol.request(Collector().request())
        protocol.dataReceived(stdout(1, b"all") + stdout(1, b""))
        protocol.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(d, MissingEndRequest)

    def test_closedMidRecord(self) -> None:
        """
        A close inside a record is a protocol error.
        """
        protocol, transport, clock = self.connect()
        d = protocol.request(Collector().request())
        protocol.dataReceived(stdout(1, b"abcdefgh")[:12])
        protocol.connectionLost(Failure(ConnectionDone()))
        failure = self.failureResultOf(d, ResponseProtocolError)
        self.assertIn("inside a record", str(failure.value))

    def test_garbage(self) -> None:
        """
        Bytes that are not FastCGI fail the request with
        L{ResponseProtocolError} and close the connection.
        """
        protocol, transport, clock = self.connect()
        d = protocol.request(Collector().request())
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")
        failure = self.failureResultOf(d, ResponseProtocolError)
        self.assertIn("version", str(failure.value))
        self.assertTrue(transport.disconnected)
        self.assertFalse(protocol.reusable)

    def test_wrongSizeEndRequest(self) -> None:
        """
        END_REQUEST with a 4-byte body is a protocol error.
        """
        protocol, transport, clock = self.connect()
        d = protocol.request(Collector().request())
        protocol.dataReceived(bytes.fromhex("0103000100040400") + bytes(4))
        self.failureResultOf(d, ResponseProtocolError)

    def test_closeAfterEnd(self) -> None:
        """
        A close of an idle connection fails nothing and tells the owner.
        """
        protocol, transport, clock = self.connect()
        lost: list[FastCGIClientProtocol] = []
        protocol.onLost = lost.append
        d = protocol.request(Collector().request())
        protocol.dataReceived(complete())
        protocol.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(d)
        self.assertEqual(lost, [protocol])
        self.assertEqual(protocol.state, "CLOSED")

    def test_close(self) -> None:
        """
        L{FastCGIClientProtocol.close} fires once the connection is gone.
        """
        protocol, transport, clock = self.connect()
        d = protocol.close()
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(d)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(d)
        self.successResultOf(protocol.close())


class GetValuesTests(SynchronousTestCase, ProtocolTestMixin):
    """
    FCGI_GET_VALUES.
    """

    def test_values(self) -> None:
        """
        GET_VALUES_RESULT fires the Deferred with a dict.
        """
        protocol, transport, clock = self.connect()
        d = protocol.getValues()
        record = sentRecords(transport)[0]
        self.assertEqual(record.type, RecordType.GET_VALUES)
        protocol.dataReceived(
            encodeRecord(
                RecordType.GET_VALUES_RESULT,
                0,
                encodePairs([(b"FCGI_MAX_CONNS", b"4"), (b"FCGI_MPXS_CONNS", b"1")]),
            )
        )
        self.assertEqual(
            self.successResultOf(d), {b"FCGI_MAX_CONNS": b"4", b"FCGI_MPXS_CONNS": b"1"}
        )

    def test_unknownType(self) -> None:
        """
        An application that answers UNKNOWN_TYPE reports nothing.
        """
        protocol, transport, clock = self.connect()
        d = protocol.getValues()
        protocol.dataReceived(
            encodeRecord(RecordType.UNKNOWN_TYPE, 0, bytes([RecordType.GET_VALUES]) + bytes(7))
        )
        self.assertEqual(self.successResultOf(d), {})

    def test_oversizedPairLength(self) -> None:
        """
        A GET_VALUES_RESULT declaring a pair longer than its record is a
        protocol error.
        """
        protocol, transport, clock = self.connect()
        d = protocol.getValues()
        protocol.dataReceived(
            encodeRecord(RecordType.GET_VALUES_RESULT, 0, b"\x8f\xff\xff\xff\x01abc")
        )
        self.failureResultOf(d, ResponseProtocolError)

    def test_closedBeforeAnswer(self) -> None:
        """
        A close before the answer (php-fpm may do that) fails the Deferred.
        """
        protocol, transport, clock = self.connect()
        d = protocol.getValues()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(d, ApplicationConnectionLost)
