"""
Tests for L{txfastcgi.testing}: the in-memory and scripted FastCGI
applications, driven with the real client protocol and pool.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Iterable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject  # type: ignore[import-untyped]

from txfastcgi.application import ABORTED_APP_STATUS, ApplicationRequest, FastCGIApplicationFactory
from txfastcgi.cgiresponse import MalformedResponseError
from txfastcgi.client import (
    ApplicationConnectionLost,
    ApplicationOverloaded,
    FastCGIClientError,
    FastCGIClientProtocol,
    MissingEndRequest,
    RequestAborted,
    RequestResult,
    ResponseProtocolError,
    ResponseTimeout,
)
from txfastcgi.fcgi.constants import (
    FCGI_KEEP_CONN,
    FCGI_MAX_CONNS,
    FCGI_MAX_REQS,
    FCGI_MPXS_CONNS,
    ProtocolStatus,
    RecordType,
    Role,
)
from txfastcgi.fcgi.errors import RemoteProtocolError
from txfastcgi.fcgi.records import (
    Record,
    encodeBeginRequestBody,
    encodeEndRequestBody,
    encodePairs,
    encodeRecord,
)
from txfastcgi.pool import ConnectError, ConnectionPool, ConnectTimeout
from txfastcgi.testing import (
    Call,
    Close,
    Delay,
    Expect,
    ExpectRequest,
    MemoryApplicationEndpoint,
    Pause,
    Reply,
    ResponseCollector,
    ScriptedApplicationEndpoint,
    Send,
    Step,
    endRequest,
    getValuesResult,
    makeParams,
    paramsFrom,
    recordsFrom,
    respond,
    stderr,
    stdout,
    streamContent,
    truncated,
)

OK = b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nok"


def hello(request: ApplicationRequest) -> None:
    """
    A responder that greets the path it was asked for.
    """
    request.write(b"Content-Type: text/plain\r\n\r\nhello " + request.params[b"PATH_INFO"])


def echo(request: ApplicationRequest) -> Deferred[None]:
    """
    A responder that answers with its whole body.
    """

    def answer(body: bytes) -> None:
        request.write(b"Content-Type: application/octet-stream\r\n\r\n" + body)

    return request.stdin.read().addCallback(answer)


class MemoryApplicationTests(SynchronousTestCase):
    """
    L{MemoryApplicationEndpoint} runs a real application in memory, for the
    real pool and client protocol.
    """

    def setUp(self) -> None:
        """
        A clock shared by the application and the client side.
        """
        self.clock = Clock()

    def test_providesEndpoint(self) -> None:
        """
        The endpoint provides L{IStreamClientEndpoint}.
        """
        self.assertTrue(verifyObject(IStreamClientEndpoint, MemoryApplicationEndpoint(hello)))

    def test_poolKeepAlive(self) -> None:
        """
        Two requests through a pool are answered by the handler on one kept
        connection, which the endpoint counts.
        """
        app = MemoryApplicationEndpoint(hello, clock=self.clock)
        pool = ConnectionPool(self.clock, app, probeValues=False)
        for path in ("/a", "/b"):
            response = ResponseCollector()
            d = pool.request(response.request(makeParams(PATH_INFO=path)))
            self.assertNoResult(d)
            app.flush()
            self.assertEqual(self.successResultOf(d), RequestResult(0, 0))
            self.assertEqual(response.head.status, 200)
            self.assertEqual(response.body, b"hello " + path.encode())
        self.assertEqual(app.connectionsMade, 1)
        self.assertEqual(app.openConnections, 1)
        self.assertEqual(pool.requestsReused, 1)
        self.assertEqual([r.keepConnection for r in app.requests], [True, True])
        self.assertEqual([r.params[b"PATH_INFO"] for r in app.requests], [b"/a", b"/b"])

    def test_connectsOnlyInFlush(self) -> None:
        """
        A connect is completed by L{MemoryApplicationEndpoint.flush}, not
        before.
        """
        app = MemoryApplicationEndpoint(hello, clock=self.clock)
        pool = ConnectionPool(self.clock, app, probeValues=False)
        pool.request(ResponseCollector().request())
        self.assertEqual((app.connectAttempts, app.pendingConnects, app.connectionsMade), (1, 1, 0))
        app.flush()
        self.assertEqual((app.pendingConnects, app.connectionsMade), (0, 1))

    def test_probeAnswered(self) -> None:
        """
        The pool's GET_VALUES probe gets the application factory's limits on
        a second connection, which the pool then closes.
        """
        app = MemoryApplicationEndpoint(hello, clock=self.clock, maxConns=3, multiplex=False)
        pool = ConnectionPool(self.clock, app)
        d = pool.request(ResponseCollector().request())
        app.flush()
        self.successResultOf(d)
        self.assertEqual((pool.appMaxConns, pool.appMultiplexes), (3, False))
        self.assertEqual((app.connectionsMade, app.openConnections), (2, 1))

    def test_clientProtocolDirectly(self) -> None:
        """
        L{MemoryApplicationEndpoint.connectClient} connects a client protocol
        at once; a body larger than one record reaches the handler whole.
        """
        app = MemoryApplicationEndpoint(echo, clock=self.clock)
        client = FastCGIClientProtocol(self.clock)
        app.connectClient(client)
        body = bytes(range(256)) * 1000
        response = ResponseCollector()
        d = client.request(response.request(body=body))
        app.flush()
        self.successResultOf(d)
        self.assertEqual(response.body, body)

    def test_readyFactory(self) -> None:
        """
        A ready L{FastCGIApplicationFactory} is used as it is, and its
        requests are recorded; factory options beside it are refused.
        """
        factory = FastCGIApplicationFactory(hello, self.clock, maxReqs=5)
        app = MemoryApplicationEndpoint(factory, clock=self.clock)
        self.assertIs(app.factory, factory)
        client = FastCGIClientProtocol(self.clock)
        app.connectClient(client)
        d = client.request(ResponseCollector().request())
        app.flush()
        self.successResultOf(d)
        self.assertEqual(len(app.requests), 1)
        self.assertRaises(TypeError, MemoryApplicationEndpoint, factory, maxReqs=1)

    def test_abortReachesApplication(self) -> None:
        """
        Aborting a request on the client side aborts it in the application:
        its C{notifyAbort} Deferred fires and it ends with
        L{ABORTED_APP_STATUS}; the connection stays in the pool.
        """
        aborted: list[ApplicationRequest] = []

        def hang(request: ApplicationRequest) -> Deferred[None]:
            request.notifyAbort().addCallback(lambda _: aborted.append(request))
            return Deferred()

        app = MemoryApplicationEndpoint(hang, clock=self.clock)
        pool = ConnectionPool(self.clock, app, probeValues=False)
        request = ResponseCollector().request()
        d = pool.request(request)
        app.flush()
        self.assertNoResult(d)
        request.abort()
        self.failureResultOf(d, RequestAborted)
        app.flush()
        self.assertEqual(aborted, app.requests)
        self.assertTrue(app.requests[0].aborted)
        self.assertEqual(pool.idleConnections, 1)
        self.assertEqual(app.openConnections, 1)

    def test_responseTimeout(self) -> None:
        """
        With the shared clock, a silent application makes the client time
        out; L{MemoryApplicationEndpoint.advance} moves time and bytes.
        """
        app = MemoryApplicationEndpoint(lambda request: Deferred(), clock=self.clock)
        pool = ConnectionPool(self.clock, app, probeValues=False, responseTimeout=10)
        d = pool.request(ResponseCollector().request())
        app.flush()
        app.advance(10)
        self.failureResultOf(d, ResponseTimeout)
        self.assertEqual(app.openConnections, 0)
        self.assertTrue(app.requests[0].aborted)

    def test_connectError(self) -> None:
        """
        With C{connectError} set, connects fail, and the pool reports it.
        """
        app = MemoryApplicationEndpoint(hello, clock=self.clock)
        app.connectError = ConnectionRefusedError()
        pool = ConnectionPool(self.clock, app, probeValues=False)
        d = pool.request(ResponseCollector().request())
        app.flush()
        self.failureResultOf(d, ConnectError)
        self.assertEqual(app.connectionsMade, 0)

    def test_holdConnects(self) -> None:
        """
        With C{holdConnects}, connects wait, so the pool's connect timeout
        can be reached; the cancelled connect is forgotten.
        """
        app = MemoryApplicationEndpoint(hello, clock=self.clock)
        app.holdConnects = True
        pool = ConnectionPool(self.clock, app, probeValues=False, connectTimeout=5)
        d = pool.request(ResponseCollector().request())
        app.flush()
        self.assertNoResult(d)
        app.advance(5)
        self.failureResultOf(d, ConnectTimeout)
        self.assertEqual(app.pendingConnects, 0)

    def test_refusedByFactory(self) -> None:
        """
        A connection the factory refuses (here: C{maxConns} reached) is
        accepted and closed at once, as by a real server.
        """
        app = MemoryApplicationEndpoint(hello, clock=self.clock, maxConns=0)
        pool = ConnectionPool(self.clock, app, probeValues=False)
        d = pool.request(ResponseCollector().request())
        app.flush()
        self.failureResultOf(d, ApplicationConnectionLost)
        self.assertEqual((app.connectionsMade, app.openConnections), (1, 0))

    def test_applicationClosesIdleConnection(self) -> None:
        """
        L{MemoryConnection.close} closes a connection from the application's
        side; the pool drops it and connects again for the next request.
        """
        app = MemoryApplicationEndpoint(hello, clock=self.clock)
        pool = ConnectionPool(self.clock, app, probeValues=False)
        self.successResultOf(self.runOnce(app, pool))
        app.connections[0].close()
        app.flush()
        self.assertEqual((app.openConnections, pool.openConnections), (0, 0))
        self.successResultOf(self.runOnce(app, pool))
        self.assertEqual(app.connectionsMade, 2)

    def runOnce(
        self, app: MemoryApplicationEndpoint, pool: ConnectionPool
    ) -> Deferred[RequestResult]:
        """
        Run one request through C{pool} and flush C{app}.
        """
        d = pool.request(ResponseCollector().request())
        app.flush()
        return d

    def test_handlerFailure(self) -> None:
        """
        A failing handler gives a 500 and its traceback on STDERR; the
        logged failure is the test's to flush.
        """

        def broken(request: ApplicationRequest) -> None:
            raise ZeroDivisionError()

        app = MemoryApplicationEndpoint(broken, clock=self.clock)
        pool = ConnectionPool(self.clock, app, probeValues=False)
        response = ResponseCollector()
        d = pool.request(response.request())
        app.flush()
        self.assertEqual(self.successResultOf(d).appStatus, 1)
        self.assertEqual(response.head.status, 500)
        self.assertIn(b"ZeroDivisionError", response.stderr)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class WSGITests(SynchronousTestCase):
    """
    L{MemoryApplicationEndpoint.fromWSGI} runs a WSGI application in the
    test's thread.
    """

    def setUp(self) -> None:
        """
        A clock and a list of the environs the application saw.
        """
        self.clock = Clock()
        self.environs: list[dict[str, Any]] = []

    def application(
        self, environ: dict[str, Any], startResponse: Callable[..., Any]
    ) -> Iterable[bytes]:
        """
        Answer with the SHA-256 of the body.
        """
        self.environs.append(environ)
        digest = hashlib.sha256(environ["wsgi.input"].read()).hexdigest()
        startResponse("201 Created", [("Content-Type", "text/plain"), ("X-A", "1")])
        return [digest.encode("ascii"), b"\n"]

    def test_wsgi(self) -> None:
        """
        A POST with a body of several records through the pool reaches the
        WSGI application whole, and its answer comes back.
        """
        app = MemoryApplicationEndpoint.fromWSGI(self.application, clock=self.clock)
        pool = ConnectionPool(self.clock, app, probeValues=False)
        body = b"x" * 300_000
        response = ResponseCollector()
        params = makeParams(
            REQUEST_METHOD="POST", PATH_INFO="/upload", CONTENT_LENGTH=str(len(body))
        )
        d = pool.request(response.request(params, body=body))
        app.flush()
        self.successResultOf(d)
        self.assertEqual(response.head.status, 201)
        self.assertIn((b"X-A", b"1"), response.head.headers)
        self.assertEqual(response.body, hashlib.sha256(body).hexdigest().encode() + b"\n")
        [environ] = self.environs
        self.assertEqual((environ["REQUEST_METHOD"], environ["PATH_INFO"]), ("POST", "/upload"))

    def test_abortedBeforeItRuns(self) -> None:
        """
        A request aborted before its body ended never reaches the WSGI
        application.
        """
        app = MemoryApplicationEndpoint.fromWSGI(self.application, clock=self.clock)
        client = FastCGIClientProtocol(self.clock)
        app.connectClient(client)
        request = ResponseCollector().request(body=b"x" * 1_000_000)
        d = client.request(request)
        request.abort()
        self.failureResultOf(d, RequestAborted)
        app.flush()
        self.assertEqual(self.environs, [])
        self.assertTrue(app.requests[0].aborted)

    def test_wsgiError(self) -> None:
        """
        An exception in the WSGI application gives a 500 response.
        """

        def broken(environ: dict[str, Any], startResponse: Callable[..., Any]) -> list[bytes]:
            raise ValueError("broken")

        app = MemoryApplicationEndpoint.fromWSGI(broken, clock=self.clock)
        pool = ConnectionPool(self.clock, app, probeValues=False)
        response = ResponseCollector()
        d = pool.request(response.request())
        app.flush()
        self.assertEqual(self.successResultOf(d).appStatus, 1)
        self.assertEqual(response.head.status, 500)
        self.assertIn(b"ValueError: broken", response.stderr)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class ScriptedExchangeTests(SynchronousTestCase):
    """
    L{ScriptedApplicationEndpoint} plays scripts to the real client and
    records what it sent.
    """

    def setUp(self) -> None:
        """
        A clock.
        """
        self.clock = Clock()

    def test_providesEndpoint(self) -> None:
        """
        The endpoint provides L{IStreamClientEndpoint} and needs a script.
        """
        endpoint = ScriptedApplicationEndpoint([ExpectRequest()])
        self.assertTrue(verifyObject(IStreamClientEndpoint, endpoint))
        self.assertRaises(ValueError, ScriptedApplicationEndpoint)

    def test_normalExchange(self) -> None:
        """
        A scripted answer completes the request, and C{received} holds
        exactly the records the client sent.
        """
        endpoint = ScriptedApplicationEndpoint(
            [ExpectRequest(), respond(OK, stderrData=b"warning")], clock=self.clock
        )
        pool = ConnectionPool(self.clock, endpoint, probeValues=False)
        response = ResponseCollector()
        params = makeParams(REQUEST_METHOD="POST", CONTENT_LENGTH="4")
        d = pool.request(response.request(params, body=b"body"))
        endpoint.flush()
        self.assertEqual(self.successResultOf(d), RequestResult(0, 0))
        self.assertEqual((response.stdout, response.stderr), (OK, b"warning"))
        [peer] = endpoint.peers
        self.assertTrue(peer.done)
        self.assertEqual(peer.requestIds, [1])
        received = endpoint.received
        self.assertEqual(
            received,
            [
                Record(
                    RecordType.BEGIN_REQUEST,
                    1,
                    encodeBeginRequestBody(Role.RESPONDER, FCGI_KEEP_CONN),
                ),
                Record(RecordType.PARAMS, 1, encodePairs(params)),
                Record(RecordType.PARAMS, 1),
                Record(RecordType.STDIN, 1, b"body"),
                Record(RecordType.STDIN, 1),
            ],
        )
        self.assertEqual(paramsFrom(received), dict(params))
        self.assertEqual(streamContent(received, RecordType.STDIN, 1), b"body")

    def test_keepAlive(self) -> None:
        """
        A script may serve several requests on one connection.
        """
        endpoint = ScriptedApplicationEndpoint(
            [ExpectRequest(), respond(OK), ExpectRequest(), respond(OK)], clock=self.clock
        )
        pool = ConnectionPool(self.clock, endpoint, probeValues=False)
        for _ in range(2):
            d = pool.request(ResponseCollector().request())
            endpoint.flush()
            self.successResultOf(d)
        self.assertEqual(endpoint.connectionsMade, 1)
        self.assertEqual(endpoint.peers[0].requestIds, [1, 1])

    def test_probe(self) -> None:
        """
        The pool's GET_VALUES probe, on the second connection, can be
        scripted.
        """
        endpoint = ScriptedApplicationEndpoint(
            [ExpectRequest(), respond(OK)],
            [
                Expect(RecordType.GET_VALUES),
                Send(getValuesResult({FCGI_MAX_CONNS: b"2", FCGI_MAX_REQS: b"2", FCGI_MPXS_CONNS: b"0"})),
            ],
            clock=self.clock,
        )
        pool = ConnectionPool(self.clock, endpoint)
        d = pool.request(ResponseCollector().request())
        endpoint.flush()
        self.successResultOf(d)
        self.assertEqual((pool.appMaxConns, pool.appMultiplexes), (2, False))
        probe = endpoint.peers[1].received
        self.assertEqual([r.type for r in probe], [RecordType.GET_VALUES])
        self.assertEqual(
            paramsFrom([Record(RecordType.PARAMS, 0, probe[0].content)]),
            {FCGI_MAX_CONNS: b"", FCGI_MAX_REQS: b"", FCGI_MPXS_CONNS: b""},
        )

    def test_pauseAndResume(self) -> None:
        """
        A paused script answers only once resumed.
        """
        endpoint = ScriptedApplicationEndpoint(
            [ExpectRequest(), Pause(), respond(OK)], clock=self.clock
        )
        pool = ConnectionPool(self.clock, endpoint, probeValues=False)
        d = pool.request(ResponseCollector().request())
        endpoint.flush()
        self.assertNoResult(d)
        self.assertTrue(endpoint.peers[0].paused)
        endpoint.resume()
        endpoint.flush()
        self.successResultOf(d)

    def test_delay(self) -> None:
        """
        L{Delay} waits on the clock: longer than the response timeout, and
        the client gives up.
        """
        endpoint = ScriptedApplicationEndpoint(
            [ExpectRequest(), Delay(5), respond(OK)], clock=self.clock
        )
        pool = ConnectionPool(self.clock, endpoint, probeValues=False, responseTimeout=10)
        d = pool.request(ResponseCollector().request())
        endpoint.flush()
        endpoint.advance(4)
        self.assertNoResult(d)
        endpoint.advance(1)
        self.successResultOf(d)
        endpoint = ScriptedApplicationEndpoint(
            [ExpectRequest(), Delay(11), respond(OK)], clock=self.clock
        )
        pool = ConnectionPool(self.clock, endpoint, probeValues=False, responseTimeout=10)
        d = pool.request(ResponseCollector().request())
        endpoint.flush()
        endpoint.advance(10)
        self.failureResultOf(d, ResponseTimeout)

    def test_abortSeen(self) -> None:
        """
        A client-side abort shows up as ABORT_REQUEST; once the script ends
        the request the connection is reused.
        """
        endpoint = ScriptedApplicationEndpoint(
            [
                ExpectRequest(),
                Expect(RecordType.ABORT_REQUEST),
                Send(endRequest(ABORTED_APP_STATUS)),
                ExpectRequest(),
                respond(OK),
            ],
            clock=self.clock,
        )
        pool = ConnectionPool(self.clock, endpoint, probeValues=False)
        request = ResponseCollector().request()
        d = pool.request(request)
        endpoint.flush()
        request.abort()
        self.failureResultOf(d, RequestAborted)
        endpoint.flush()
        self.assertEqual(endpoint.received[-1], Record(RecordType.ABORT_REQUEST, 1))
        self.assertEqual(pool.idleConnections, 1)
        self.successResultOf(self.runOnce(endpoint, pool))
        self.assertEqual(endpoint.connectionsMade, 1)

    def runOnce(
        self, endpoint: ScriptedApplicationEndpoint, pool: ConnectionPool
    ) -> Deferred[RequestResult]:
        """
        Start one request through C{pool} and flush C{endpoint}.
        """
        d = pool.request(ResponseCollector().request())
        endpoint.flush()
        return d

    def test_call(self) -> None:
        """
        L{Call} runs code at its point of the script, with the peer.
        """
        seen: list[int | None] = []
        endpoint = ScriptedApplicationEndpoint(
            [ExpectRequest(), Call(lambda peer: seen.append(peer.requestId)), respond(OK)],
            clock=self.clock,
        )
        pool = ConnectionPool(self.clock, endpoint, probeValues=False)
        self.successResultOf(self.runOnce(endpoint, pool))
        self.assertEqual(seen, [1])

    def test_sendForms(self) -> None:
        """
        L{Send} takes records with their own id, replies for the current
        request, raw bytes and callables returning several of these, and
        writes them at once.
        """
        endpoint = ScriptedApplicationEndpoint(
            [
                ExpectRequest(),
                Send(
                    Record(RecordType.STDOUT, 1, b"Status: 200 OK\r\n"),
                    stdout(b"\r\n"),
                    encodeRecord(RecordType.STDOUT, 1, b"a"),
                    lambda peer: [stdout(b"b"), stdout(), stderr(b"e")],
                    lambda peer: Reply(RecordType.STDERR),
                    endRequest(3),
                ),
            ],
            clock=self.clock,
        )
        client = FastCGIClientProtocol(self.clock)
        endpoint.connectClient(client)
        response = ResponseCollector()
        d = client.request(response.request())
        endpoint.flush()
        self.assertEqual(self.successResultOf(d).appStatus, 3)
        # The client takes STDOUT records that arrive together as one piece.
        self.assertEqual(b"".join(response.stdoutChunks), b"Status: 200 OK\r\n\r\nab")
        self.assertEqual(response.body, b"ab")
        self.assertEqual(response.stderr, b"e")

    def test_replyNeedsRequest(self) -> None:
        """
        A L{Reply} for the current request cannot be encoded before a
        request was expected.
        """
        self.assertRaises(RuntimeError, stdout(b"x").encode, None)
        self.assertEqual(stdout(b"x").encode(7), encodeRecord(RecordType.STDOUT, 7, b"x"))
        self.assertRaises(NotImplementedError, Step()._run, None)

    def test_clientGarbageRecorded(self) -> None:
        """
        Bytes from the client that are not records are noted in
        C{readError}; the records before them are kept.
        """
        endpoint = ScriptedApplicationEndpoint([ExpectRequest()], clock=self.clock)
        sender = Protocol()
        connection = endpoint.connectClient(sender)
        connection.clientTransport.write(encodeRecord(RecordType.GET_VALUES, 0) + b"\x09" * 8)
        endpoint.flush()
        [peer] = endpoint.peers
        self.assertEqual(peer.received, [Record(RecordType.GET_VALUES, 0)])
        self.assertIsInstance(peer.readError, RemoteProtocolError)

    def test_close(self) -> None:
        """
        L{Close} closes the connection; the steps after it are not played.
        """
        endpoint = ScriptedApplicationEndpoint(
            [ExpectRequest(), Close(), respond(OK)], clock=self.clock
        )
        client = FastCGIClientProtocol(self.clock)
        endpoint.connectClient(client)
        d = client.request(ResponseCollector().request())
        endpoint.flush()
        self.failureResultOf(d, ApplicationConnectionLost)
        [peer] = endpoint.peers
        self.assertTrue(peer.done)
        self.assertEqual(peer.position, 4)
        self.assertIsNotNone(peer.lostReason)
        self.assertEqual(endpoint.openConnections, 0)


class BadPeerTests(SynchronousTestCase):
    """
    Each kind of broken application fails the request with the client's
    typed error, and the pool goes on serving on a new connection.
    """

    def check(self, badScript: Sequence[Step], error: type[FastCGIClientError]) -> None:
        """
        The first connection plays C{badScript}: its request fails with
        C{error}; the next request is served on a second connection.
        """
        clock = Clock()
        endpoint = ScriptedApplicationEndpoint(
            [ExpectRequest(), *badScript], [ExpectRequest(), respond(OK)], clock=clock
        )
        pool = ConnectionPool(clock, endpoint, probeValues=False)
        d = pool.request(ResponseCollector().request())
        endpoint.flush()
        self.failureResultOf(d, error)
        response = ResponseCollector()
        d = pool.request(response.request())
        endpoint.flush()
        self.successResultOf(d)
        self.assertEqual(response.stdout, OK)
        self.assertEqual((endpoint.connectionsMade, endpoint.openConnections), (2, 1))
        self.assertEqual([r.type for r in endpoint.peers[1].received][0], RecordType.BEGIN_REQUEST)

    def test_garbage(self) -> None:
        """
        An HTML page instead of records.
        """
        self.check([Send(b"<html>Internal Server Error</html>")], ResponseProtocolError)

    def test_truncatedRecord(self) -> None:
        """
        A record cut short by a close.
        """
        self.check([Send(truncated(stdout(b"0123456789"), 13)), Close()], ResponseProtocolError)

    def test_wrongSizeEndRequest(self) -> None:
        """
        END_REQUEST with 5 content bytes instead of 8.
        """
        self.check(
            [Send(stdout(OK), stdout(), Reply(RecordType.END_REQUEST, bytes(5)))],
            ResponseProtocolError,
        )

    def test_oversizedValuesResult(self) -> None:
        """
        A GET_VALUES_RESULT whose pair declares a value longer than the
        record.
        """
        self.check(
            [Send(Reply(RecordType.GET_VALUES_RESULT, b"\x0e\xff\xff\xff\xffFCGI_MAX_CONNS", 0))],
            ResponseProtocolError,
        )

    def test_closeMidRecord(self) -> None:
        """
        The connection closes in the middle of a STDOUT record's content.
        """
        self.check(
            [Send(stdout(OK), truncated(stdout(b"x" * 100), 50)), Close()],
            ResponseProtocolError,
        )

    def test_closeWithoutEndRequest(self) -> None:
        """
        STDOUT ends but END_REQUEST never comes.
        """
        self.check([Send(stdout(OK), stdout()), Close()], MissingEndRequest)

    def test_closeBeforeAnswer(self) -> None:
        """
        The application closes a fresh connection without answering (a
        crash): not retried.
        """
        self.check([Close()], ApplicationConnectionLost)

    def test_overloaded(self) -> None:
        """
        END_REQUEST with FCGI_OVERLOADED fails the request with
        L{ApplicationOverloaded}; the connection stays usable.
        """
        clock = Clock()
        endpoint = ScriptedApplicationEndpoint(
            [
                ExpectRequest(),
                respond(protocolStatus=ProtocolStatus.OVERLOADED),
                ExpectRequest(),
                respond(OK),
            ],
            clock=clock,
        )
        pool = ConnectionPool(clock, endpoint, probeValues=False)
        d = pool.request(ResponseCollector().request())
        endpoint.flush()
        self.failureResultOf(d, ApplicationOverloaded)
        d = pool.request(ResponseCollector().request())
        endpoint.flush()
        self.successResultOf(d)
        self.assertEqual(endpoint.connectionsMade, 1)

    def test_wrongRequestId(self) -> None:
        """
        STDOUT for a request id that is not active.
        """
        self.check([Send(Reply(RecordType.STDOUT, b"x", requestId=7))], ResponseProtocolError)


class HelperTests(SynchronousTestCase):
    """
    The small helpers.
    """

    def test_recordsFrom(self) -> None:
        """
        L{recordsFrom} decodes whole records and refuses a partial one.
        """
        data = encodeRecord(RecordType.STDOUT, 1, b"abc") + encodeRecord(
            RecordType.END_REQUEST, 1, encodeEndRequestBody(0, 0)
        )
        self.assertEqual(
            recordsFrom(data),
            [
                Record(RecordType.STDOUT, 1, b"abc"),
                Record(RecordType.END_REQUEST, 1, bytes(8)),
            ],
        )
        self.assertRaises(RemoteProtocolError, recordsFrom, data[:-1])

    def test_makeParams(self) -> None:
        """
        L{makeParams} gives defaults, overridden by keyword, removed by
        L{None}, with C{str} encoded as latin-1.
        """
        params = dict(makeParams(PATH_INFO="/é", QUERY_STRING=None, HTTP_X=b"\xff"))
        self.assertEqual(params[b"REQUEST_METHOD"], b"GET")
        self.assertEqual(params[b"PATH_INFO"], b"/\xe9")
        self.assertEqual(params[b"HTTP_X"], b"\xff")
        self.assertNotIn(b"QUERY_STRING", params)

    def test_streamHelpers(self) -> None:
        """
        L{streamContent} joins a stream of one request or of all;
        L{paramsFrom} decodes PARAMS split across records.
        """
        pairs = encodePairs([(b"A", b"1"), (b"B", b"2")])
        records = [
            Record(RecordType.PARAMS, 1, pairs[:3]),
            Record(RecordType.STDIN, 2, b"x"),
            Record(RecordType.PARAMS, 1, pairs[3:]),
            Record(RecordType.STDIN, 1, b"y"),
        ]
        self.assertEqual(paramsFrom(records, 1), {b"A": b"1", b"B": b"2"})
        self.assertEqual(streamContent(records, RecordType.STDIN), b"xy")
        self.assertEqual(streamContent(records, RecordType.STDIN, 2), b"x")

    def test_collector(self) -> None:
        """
        L{ResponseCollector} parses the head and splits off the body, and
        reports an incomplete head.
        """
        response = ResponseCollector()
        response.writeStdout(b"Status: 404 Not Found\r\n")
        response.writeStdout(b"\r\nnothing")
        self.assertEqual((response.head.status, response.body), (404, b"nothing"))
        request = response.request(role=Role.AUTHORIZER)
        self.assertEqual(request.role, Role.AUTHORIZER)
        self.assertEqual(dict(request.params), dict(makeParams()))
        self.assertRaises(MalformedResponseError, lambda: ResponseCollector().head)


class ExampleTests(SynchronousTestCase):
    """
    The example of the README.
    """

    def test_hello(self) -> None:
        """
        A handler answers through the pool, in memory.
        """

        def handler(request: ApplicationRequest) -> None:
            name = request.params[b"QUERY_STRING"]
            request.write(b"Content-Type: text/plain\r\n\r\nhello " + name)

        clock = Clock()
        app = MemoryApplicationEndpoint(handler, clock=clock)
        pool = ConnectionPool(clock, app, probeValues=False)
        response = ResponseCollector()
        d = pool.request(response.request(makeParams(QUERY_STRING="world")))
        app.flush()
        self.successResultOf(d)
        self.assertEqual(response.head.status, 200)
        self.assertEqual(response.body, b"hello world")
