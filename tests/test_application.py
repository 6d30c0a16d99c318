"""
Tests for L{txfastcgi.application}: the FastCGI application server protocol,
factory and request API.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from txfastcgi.application import (
    ABORTED_APP_STATUS,
    ApplicationRequest,
    FastCGIApplicationFactory,
    FastCGIApplicationProtocol,
    RequestAbortedError,
    parseWebServerAddrs,
    peerAllowed,
)
from txfastcgi.fcgi.constants import ProtocolStatus, RecordType, Role
from txfastcgi.fcgi.errors import LocalProtocolError
from txfastcgi.fcgi.records import (
    Record,
    decodeEndRequestBody,
    encodeBeginRequestBody,
    encodePairs,
    encodeRecord,
    readRecords,
)

PEER = IPv4Address("TCP", "127.0.0.1", 40000)


def begin(requestId: int = 1, role: int = Role.RESPONDER, keep: bool = False) -> bytes:
    """
    A BEGIN_REQUEST record.
    """
    return encodeRecord(
        RecordType.BEGIN_REQUEST, requestId, encodeBeginRequestBody(role, int(keep))
    )


def params(requestId: int = 1, **values: str) -> bytes:
    """
    A whole PARAMS stream.
    """
    pairs = [(k.encode(), v.encode()) for k, v in values.items()] or [(b"A", b"1")]
    return encodeRecord(RecordType.PARAMS, requestId, encodePairs(pairs)) + encodeRecord(
        RecordType.PARAMS, requestId
    )


def stdin(requestId: int = 1, *chunks: bytes) -> bytes:
    """
    A STDIN stream: the chunks then the terminator.
    """
    return b"".join(encodeRecord(RecordType.STDIN, requestId, c) for c in chunks) + (
        encodeRecord(RecordType.STDIN, requestId)
    )


def request(requestId: int = 1, role: int = Role.RESPONDER, keep: bool = False, body: bytes = b"") -> bytes:
    """
    A complete request.
    """
    return begin(requestId, role, keep) + params(requestId) + stdin(
        requestId, *([body] if body else [])
    )


class Collector(Protocol):
    """
    A body protocol that records what it gets.
    """

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.reason: Failure | None = None
        self.transport: Any = None

    def dataReceived(self, data: bytes) -> None:
        """
        Keep a chunk.
        """
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        """
        Keep the reason.
        """
        self.reason = reason


class StreamingProducer:
    """
    A push producer that records pause/resume calls.
    """

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        """
        Record a pause.
        """
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        """
        Record a resume.
        """
        self.calls.append("resume")

    def stopProducing(self) -> None:
        """
        Record a stop.
        """
        self.calls.append("stop")


class ApplicationTestsMixin:
    """
    Builds a factory and connections over L{StringTransport}.
    """

    clock: Clock
    requests: list[ApplicationRequest]

    def makeFactory(self, handler: Any = None, **kwargs: Any) -> FastCGIApplicationFactory:
        """
        A factory whose default handler records requests and leaves them
        running (it returns a Deferred that never fires).
        """
        self.clock = Clock()
        self.requests = []
        self.pending: list[Deferred[Any]] = []
        self.cancelled: list[Deferred[Any]] = []

        def recordingHandler(req: ApplicationRequest) -> Deferred[Any]:
            self.requests.append(req)
            d: Deferred[Any] = Deferred(self.cancelled.append)
            self.pending.append(d)
            return d

        return FastCGIApplicationFactory(handler or recordingHandler, self.clock, **kwargs)

    def connect(
        self, factory: FastCGIApplicationFactory, peer: Any = PEER
    ) -> tuple[FastCGIApplicationProtocol, StringTransport]:
        """
        Connect a new protocol to a L{StringTransport}.
        """
        proto = factory.buildProtocol(peer)
        assert proto is not None
        transport = StringTransport(peerAddress=peer)
        proto.makeConnection(transport)
        return proto, transport

    def records(self, transport: StringTransport) -> list[Record]:
        """
        Take the records written so far.
        """
        out = readRecords(transport.value())
        transport.clear()
        return out

    def stdout(self, records: list[Record], requestId: int = 1) -> bytes:
        """
        A request's STDOUT in C{records}.
        """
        return b"".join(
            r.content for r in records if r.type == RecordType.STDOUT and r.requestId == requestId
        )

    def end(self, records: list[Record], requestId: int = 1) -> tuple[int, int] | None:
        """
        A request's END_REQUEST in C{records} as (appStatus, protocolStatus).
        """
        for r in records:
            if r.type == RecordType.END_REQUEST and r.requestId == requestId:
                return decodeEndRequestBody(r.content)
        return None


class ResponderTests(ApplicationTestsMixin, SynchronousTestCase):
    """
    Responder requests, keep-conn and multiplexing.
    """

    def test_simpleResponse(self) -> None:
        """
        A handler that writes and returns ends the request (STDOUT closed,
        END_REQUEST 0); without KEEP_CONN the connection is then closed.
        """

        def handler(req: ApplicationRequest) -> None:
            req.write(b"Content-Type: text/plain\r\n\r\nhi " + req.params[b"A"])

        factory = self.makeFactory(handler)
        proto, transport = self.connect(factory)
        proto.dataReceived(request())
        records = self.records(transport)
        self.assertEqual(self.stdout(records), b"Content-Type: text/plain\r\n\r\nhi 1")
        self.assertEqual(records[-2], Record(RecordType.STDOUT, 1, b""))
        self.assertEqual(self.end(records), (0, ProtocolStatus.REQUEST_COMPLETE))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(factory.activeRequests, 0)

    def test_intResultIsAppStatus(self) -> None:
        """
        An C{int} returned (or fired) by the handler is the appStatus.
        """
        factory = self.makeFactory(lambda req: 7)
        proto, transport = self.connect(factory)
        proto.dataReceived(request())
        self.assertEqual(self.end(self.records(transport)), (7, 0))

    def test_keepConnection(self) -> None:
        """
        With KEEP_CONN the connection stays open and carries the next request.
        """
        factory = self.makeFactory(lambda req: req.write(b"x"))
        proto, transport = self.connect(factory)
        proto.dataReceived(request(1, keep=True))
        self.assertEqual(self.end(self.records(transport)), (0, 0))
        self.assertFalse(transport.disconnecting)
        proto.dataReceived(request(1, keep=True))
        self.assertEqual(self.end(self.records(transport)), (0, 0))
        self.assertFalse(transport.disconnecting)
        proto.dataReceived(request(1, keep=False))
        self.assertTrue(transport.disconnecting)

    def test_bodyStreamed(self) -> None:
        """
        The body arrives through L{InputStream.deliverBody} as STDIN arrives,
        then the protocol gets L{ConnectionDone}.
        """
        factory = self.makeFactory()
        proto, transport = self.connect(factory)
        proto.dataReceived(begin() + params())
        [req] = self.requests
        collector = Collector()
        req.stdin.deliverBody(collector)
        proto.dataReceived(encodeRecord(RecordType.STDIN, 1, b"abc"))
        self.assertEqual(collector.chunks, [b"abc"])
        self.assertIsNone(collector.reason)
        proto.dataReceived(encodeRecord(RecordType.STDIN, 1, b"def") + stdin(1))
        self.assertEqual(collector.chunks, [b"abc", b"def"])
        assert collector.reason is not None
        self.assertTrue(collector.reason.check(ConnectionDone))
        self.assertEqual(req.stdin.bytesReceived, 6)

    def test_readWholeBody(self) -> None:
        """
        L{InputStream.read} collects a body that arrived before it was called.
        """
        factory = self.makeFactory()
        proto, transport = self.connect(factory)
        proto.dataReceived(request(body=b"payload"))
        [req] = self.requests
        self.assertEqual(self.successResultOf(req.stdin.read()), b"payload")

    def test_multiplexing(self) -> None:
        """
        Two requests interleaved on one connection run at once and end in
        either order; the connection closes when both are done.
        """
        factory = self.makeFactory()
        proto, transport = self.connect(factory)
        proto.dataReceived(begin(1, keep=True) + begin(2, keep=True) + params(2) + params(1))
        self.assertEqual([r.requestId for r in self.requests], [2, 1])
        two, one = self.requests
        one.write(b"one")
        two.write(b"two")
        two.finish()
        records = self.records(transport)
        self.assertEqual(self.stdout(records, 1), b"one")
        self.assertEqual(self.end(records, 2), (0, 0))
        self.assertIsNone(self.end(records, 1))
        one.finish(3)
        self.assertEqual(self.end(self.records(transport), 1), (3, 0))
        self.assertFalse(transport.disconnecting)

    def test_noMultiplexing(self) -> None:
        """
        With multiplexing off, a second request on a busy connection gets
        CANT_MPX_CONN.
        """
        factory = self.makeFactory(multiplex=False)
        proto, transport = self.connect(factory)
        proto.dataReceived(begin(1, keep=True) + params(1) + begin(2, keep=True))
        self.assertEqual(self.end(self.records(transport), 2), (0, ProtocolStatus.CANT_MPX_CONN))
        self.assertEqual(len(self.requests), 1)

    def test_overloaded(self) -> None:
        """
        Beyond maxReqs requests over all connections, a request is answered
        with OVERLOADED.
        """
        factory = self.makeFactory(maxReqs=1)
        proto1, transport1 = self.connect(factory)
        proto2, transport2 = self.connect(factory)
        proto1.dataReceived(begin(1) + params(1))
        proto2.dataReceived(begin(1) + params(1))
        self.assertEqual(self.end(self.records(transport2)), (0, ProtocolStatus.OVERLOADED))
        self.assertTrue(transport2.disconnecting)

    def test_maxConns(self) -> None:
        """
        Beyond maxConns connections, new connections are refused.
        """
        factory = self.makeFactory(maxConns=1)
        self.connect(factory)
        self.assertIsNone(factory.buildProtocol(PEER))

    def test_getValues(self) -> None:
        """
        GET_VALUES is answered with the factory's configured limits.
        """
        factory = self.makeFactory(maxConns=5, maxReqs=9, multiplex=True)
        proto, transport = self.connect(factory)
        proto.dataReceived(
            encodeRecord(
                RecordType.GET_VALUES,
                0,
                encodePairs([(b"FCGI_MAX_CONNS", b""), (b"FCGI_MAX_REQS", b""), (b"FCGI_MPXS_CONNS", b"")]),
            )
        )
        [record] = self.records(transport)
        self.assertEqual(
            record.content,
            encodePairs([(b"FCGI_MAX_CONNS", b"5"), (b"FCGI_MAX_REQS", b"9"), (b"FCGI_MPXS_CONNS", b"1")]),
        )

    def test_protocolErrorCloses(self) -> None:
        """
        Bytes that break the protocol close the connection.
        """
        factory = self.makeFactory()
        proto, transport = self.connect(factory)
        proto.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertTrue(transport.disconnecting)

    def test_handlerError(self) -> None:
        """
        A handler exception is logged, its traceback goes to STDERR, a 500 is
        sent and the request ends with appStatus 1.
        """

        def handler(req: ApplicationRequest) -> None:
            raise ZeroDivisionError("boom")

        factory = self.makeFactory(handler)
        proto, transport = self.connect(factory)
        proto.dataReceived(request())
        records = self.records(transport)
        self.assertTrue(self.stdout(records).startswith(b"Status: 500 "))
        stderr = b"".join(r.content for r in records if r.type == RecordType.STDERR)
        self.assertIn(b"ZeroDivisionError: boom", stderr)
        self.assertEqual(self.end(records), (1, 0))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_writeAfterFinish(self) -> None:
        """
        Writing after L{ApplicationRequest.finish} is a bug and raises.
        """
        factory = self.makeFactory()
        proto, transport = self.connect(factory)
        proto.dataReceived(request())
        [req] = self.requests
        req.finish()
        self.assertRaises(RuntimeError, req.write, b"x")


class RoleTests(ApplicationTestsMixin, SynchronousTestCase):
    """
    Authorizer and Filter roles.
    """

    def test_authorizerGetsNoBody(self) -> None:
        """
        An Authorizer's stdin is empty and ended even if the web server sends
        STDIN data.
        """
        factory = self.makeFactory()
        proto, transport = self.connect(factory)
        proto.dataReceived(begin(1, Role.AUTHORIZER) + params(1))
        [req] = self.requests
        self.assertEqual(req.role, Role.AUTHORIZER)
        self.assertTrue(req.stdin.ended)
        proto.dataReceived(stdin(1, b"ignored"))
        self.assertEqual(self.successResultOf(req.stdin.read()), b"")
        req.write(b"Status: 200 OK\r\nVariable-USER: bob\r\n\r\n")
        req.finish()
        self.assertEqual(self.end(self.records(transport)), (0, 0))

    def test_filterGetsData(self) -> None:
        """
        A Filter gets its body on stdin and the file on data; it may write once
        stdin has ended.
        """
        factory = self.makeFactory()
        proto, transport = self.connect(factory)
        proto.dataReceived(begin(1, Role.FILTER) + params(1) + encodeRecord(RecordType.STDIN, 1, b"in"))
        [req] = self.requests
        self.assertRaises(LocalProtocolError, req.write, b"too early")
        body = req.stdin.read()
        data = req.data.read()
        proto.dataReceived(
            stdin(1)
            + encodeRecord(RecordType.DATA, 1, b"file ")
            + encodeRecord(RecordType.DATA, 1, b"content")
            + encodeRecord(RecordType.DATA, 1)
        )
        self.assertEqual(self.successResultOf(body), b"in")
        self.assertEqual(self.successResultOf(data), b"file content")
        req.write(b"Content-Type: text/plain\r\n\r\nFILE CONTENT")
        req.finish()
        self.assertEqual(self.end(self.records(transport)), (0, 0))

    def test_responderHasNoData(self) -> None:
        """
        A Responder's data stream is empty and ended.
        """
        factory = self.makeFactory()
        proto, transport = self.connect(factory)
        proto.dataReceived(request())
        self.assertEqual(self.successResultOf(self.requests[0].data.read()), b"")


class AbortTests(ApplicationTestsMixin, SynchronousTestCase):
    """
    ABORT_REQUEST and lost connections.
    """

    def test_abort(self) -> None:
        """
        ABORT_REQUEST fires notifyAbort, fails the unfinished body, cancels the
        handler's Deferred and ends the request at once; later writes are
        dropped.
        """
        factory = self.makeFactory()
        proto, transport = self.connect(factory)
        proto.dataReceived(begin(1, keep=True) + params(1) + encodeRecord(RecordType.STDIN, 1, b"x"))
        [req] = self.requests
        aborted = req.notifyAbort()
        body = req.stdin.read()
        self.assertNoResult(aborted)
        proto.dataReceived(encodeRecord(RecordType.ABORT_REQUEST, 1))
        self.successResultOf(aborted)
        self.failureResultOf(body, RequestAbortedError)
        self.assertEqual(self.cancelled, self.pending)
        self.assertEqual(self.end(self.records(transport)), (ABORTED_APP_STATUS, 0))
        self.assertTrue(req.aborted)
        req.write(b"dropped")
        req.finish()
        self.assertEqual(transport.value(), b"")
        self.assertEqual(factory.activeRequests, 0)
        self.assertFalse(transport.disconnecting)

    def test_abortVisibleToBodyReader(self) -> None:
        """
        Code woken by the failing body already sees C{aborted}, and its writes
        are dropped (the END_REQUEST of the abort follows alone).
        """
        factory = self.makeFactory()
        proto, transport = self.connect(factory)
        proto.dataReceived(begin(1, keep=True) + params(1))
        [req] = self.requests
        seen: list[bool] = []

        def bodyFailed(failure: Failure) -> None:
            seen.append(req.aborted)
            req.write(b"dropped")

        req.stdin.read().addErrback(bodyFailed)
        proto.dataReceived(encodeRecord(RecordType.ABORT_REQUEST, 1))
        self.assertEqual(seen, [True])
        records = self.records(transport)
        self.assertEqual(self.stdout(records), b"")
        self.assertEqual(self.end(records), (ABORTED_APP_STATUS, 0))

    def test_abortStopsProducer(self) -> None:
        """
        A producer registered on an aborted request is unregistered and
        stopped.
        """
        factory = self.makeFactory()
        proto, transport = self.connect(factory)
        proto.dataReceived(request(keep=True))
        producer = StreamingProducer()
        self.requests[0].registerProducer(producer, True)
        proto.dataReceived(encodeRecord(RecordType.ABORT_REQUEST, 1))
        self.assertEqual(producer.calls, ["stop"])

    def test_abortCallbackMayFinish(self) -> None:
        """
        A notifyAbort callback may write and finish with its own status.
        """
        factory = self.makeFactory()
        proto, transport = self.connect(factory)
        proto.dataReceived(request(keep=True))
        [req] = self.requests

        def onAbort(ignored: None) -> None:
            req.write(b"Status: 499 Aborted\r\n\r\n")
            req.finish(42)

        req.notifyAbort().addCallback(onAbort)
        proto.dataReceived(encodeRecord(RecordType.ABORT_REQUEST, 1))
        records = self.records(transport)
        self.assertEqual(self.stdout(records), b"Status: 499 Aborted\r\n\r\n")
        self.assertEqual(self.end(records), (42, 0))

    def test_connectionLost(self) -> None:
        """
        A lost connection aborts its running requests.
        """
        factory = self.makeFactory()
        proto, transport = self.connect(factory)
        proto.dataReceived(begin(1) + params(1))
        [req] = self.requests
        aborted = req.notifyAbort()
        finished = req.notifyFinish()
        proto.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(aborted)
        self.successResultOf(finished)
        self.assertTrue(req.aborted)
        self.assertEqual(factory.activeRequests, 0)
        self.assertEqual(factory.connections, frozenset())


class WebServerAddrsTests(ApplicationTestsMixin, SynchronousTestCase):
    """
    FCGI_WEB_SERVER_ADDRS.
    """

    def test_parse(self) -> None:
        """
        The variable is a comma-separated list of IPv4 addresses; unset or
        empty allows everyone; a bad entry raises.
        """
        self.assertEqual(parseWebServerAddrs("10.0.0.1, 127.0.0.1"), frozenset({"10.0.0.1", "127.0.0.1"}))
        self.assertIsNone(parseWebServerAddrs(None))
        self.assertIsNone(parseWebServerAddrs(""))
        self.assertRaises(ValueError, parseWebServerAddrs, "example.com")

    def test_peers(self) -> None:
        """
        Listed IPv4 peers (also IPv4-mapped IPv6) and Unix peers are allowed;
        other TCP peers are not.
        """
        allowed = frozenset({"10.0.0.1"})
        self.assertTrue(peerAllowed(IPv4Address("TCP", "10.0.0.1", 1), allowed))
        self.assertFalse(peerAllowed(IPv4Address("TCP", "10.0.0.2", 1), allowed))
        self.assertTrue(peerAllowed(IPv6Address("TCP", "::ffff:10.0.0.1", 1), allowed))
        self.assertFalse(peerAllowed(IPv6Address("TCP", "::1", 1), allowed))
        self.assertTrue(peerAllowed(UNIXAddress(b"/tmp/s"), allowed))
        self.assertTrue(peerAllowed(IPv4Address("TCP", "10.0.0.2", 1), None))

    def test_factoryRefuses(self) -> None:
        """
        A factory built from the environment refuses connections from peers
        not in the list.
        """
        clock = Clock()
        factory = FastCGIApplicationFactory.fromEnvironment(
            lambda req: None, clock, {"FCGI_WEB_SERVER_ADDRS": "127.0.0.2"}
        )
        self.assertIsNone(factory.buildProtocol(PEER))
        self.assertIsNotNone(factory.buildProtocol(IPv4Address("TCP", "127.0.0.2", 9)))
        self.assertIsNotNone(factory.buildProtocol(UNIXAddress(b"/tmp/x")))


class BackpressureTests(ApplicationTestsMixin, SynchronousTestCase):
    """
    Producer/consumer behaviour in both directions.
    """

    def test_streamingProducer(self) -> None:
        """
        A streaming producer registered on a request is paused and resumed
        with the transport, and whenWritable waits for the resume.
        """
        factory = self.makeFactory()
        proto, transport = self.connect(factory)
        self.assertIs(transport.producer, proto)
        self.assertTrue(transport.streaming)
        proto.dataReceived(request())
        [req] = self.requests
        producer = StreamingProducer()
        req.registerProducer(producer, True)
        self.successResultOf(req.whenWritable())
        proto.pauseProducing()
        self.assertEqual(producer.calls, ["pause"])
        self.assertTrue(req.writePaused)
        writable = req.whenWritable()
        self.assertNoResult(writable)
        proto.resumeProducing()
        self.assertEqual(producer.calls, ["pause", "resume"])
        self.successResultOf(writable)
        req.unregisterProducer()
        req.finish()

    def test_registerWhilePaused(self) -> None:
        """
        A streaming producer registered while the transport is paused is paused
        at once.
        """
        factory = self.makeFactory()
        proto, transport = self.connect(factory)
        proto.dataReceived(request())
        proto.pauseProducing()
        producer = StreamingProducer()
        self.requests[0].registerProducer(producer, True)
        self.assertEqual(producer.calls, ["pause"])

    def test_pullProducer(self) -> None:
        """
        A pull producer is asked for more on the next reactor turn after each
        write, but not while the transport is paused.
        """
        factory = self.makeFactory()
        proto, transport = self.connect(factory)
        proto.dataReceived(request())
        [req] = self.requests
        chunks = [b"a", b"b", b"c"]

        class Pull:
            calls = 0

            def resumeProducing(self) -> None:
                self.calls += 1
                if chunks:
                    req.write(chunks.pop(0))
                    if not chunks:
                        req.unregisterProducer()
                        req.finish()

            def stopProducing(self) -> None:
                pass

        producer = Pull()
        req.registerProducer(producer, False)
        proto.pauseProducing()
        self.clock.advance(0)
        self.assertEqual(producer.calls, 0)
        proto.resumeProducing()
        self.clock.advance(0)
        self.assertEqual(producer.calls, 3)
        records = self.records(transport)
        self.assertEqual(self.stdout(records), b"abc")
        self.assertEqual(self.end(records), (0, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unreadBodyPausesReading(self) -> None:
        """
        More than highWater unread body bytes pause reading the transport;
        delivering the body resumes it.
        """
        factory = self.makeFactory(highWater=10)
        proto, transport = self.connect(factory)
        proto.dataReceived(begin() + params())
        self.assertEqual(transport.producerState, "producing")
        proto.dataReceived(encodeRecord(RecordType.STDIN, 1, b"x" * 11))
        self.assertEqual(transport.producerState, "paused")
        collector = Collector()
        self.requests[0].stdin.deliverBody(collector)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(collector.chunks, [b"x" * 11])

    def test_readerPausesReading(self) -> None:
        """
        A body reader that pauses its stream pauses reading the transport
        until it resumes; data held meanwhile is delivered on resume.
        """
        factory = self.makeFactory()
        proto, transport = self.connect(factory)
        proto.dataReceived(begin() + params())
        collector = Collector()
        self.requests[0].stdin.deliverBody(collector)
        collector.transport.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        proto.dataReceived(encodeRecord(RecordType.STDIN, 1, b"held") + stdin(1))
        self.assertEqual(collector.chunks, [])
        collector.transport.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(collector.chunks, [b"held"])
        assert collector.reason is not None
        self.assertTrue(collector.reason.check(ConnectionDone))

    def test_finishUnpausesReading(self) -> None:
        """
        Finishing a request whose body was left unread resumes reading, and
        the rest of its STDIN is ignored.
        """
        factory = self.makeFactory(highWater=10)
        proto, transport = self.connect(factory)
        proto.dataReceived(begin(keep=True) + params() + encodeRecord(RecordType.STDIN, 1, b"x" * 11))
        self.assertEqual(transport.producerState, "paused")
        self.requests[0].finish()
        self.assertEqual(transport.producerState, "producing")
        proto.dataReceived(stdin(1, b"more"))
        self.assertEqual(self.end(self.records(transport)), (0, 0))


class DrainTests(ApplicationTestsMixin, SynchronousTestCase):
    """
    L{FastCGIApplicationFactory.drain}, used on SIGTERM.
    """

    def test_drainWaitsForRequests(self) -> None:
        """
        Draining closes idle connections at once, refuses new requests with
        OVERLOADED, and fires when the running requests are done and their
        connections closed.
        """
        factory = self.makeFactory()
        busy, busyTransport = self.connect(factory)
        idle, idleTransport = self.connect(factory)
        busy.dataReceived(begin(1, keep=True) + params(1))
        d = factory.drain(30)
        self.assertTrue(idleTransport.disconnecting)
        idle.connectionLost(Failure(ConnectionDone()))
        self.assertNoResult(d)
        busy.dataReceived(begin(2, keep=True))
        self.assertEqual(self.end(self.records(busyTransport), 2), (0, ProtocolStatus.OVERLOADED))
        self.assertIsNone(factory.buildProtocol(PEER))
        self.requests[0].finish()
        self.assertTrue(busyTransport.disconnecting)
        busy.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_drainTimeout(self) -> None:
        """
        After the timeout, the remaining requests are aborted and their
        connections aborted.
        """
        factory = self.makeFactory()
        proto, transport = self.connect(factory)
        proto.dataReceived(begin(1) + params(1))
        [req] = self.requests
        d = factory.drain(5)
        self.clock.advance(4)
        self.assertNoResult(d)
        self.clock.advance(1)
        self.successResultOf(d)
        self.assertTrue(req.aborted)
        self.assertTrue(transport.disconnecting)

    def test_drainIdle(self) -> None:
        """
        Draining with nothing running fires at once.
        """
        factory = self.makeFactory()
        self.successResultOf(factory.drain(5))
