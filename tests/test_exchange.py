# -*- test-case-name: tests.test_exchange -*-
"""
Tests for L{txfastcgi.exchange}: one HTTP request exchanged for one FastCGI
request, driven through a real L{twisted.web.server.Site} over a
L{StringTransport}, with in-memory and scripted applications and a L{Clock}.

The helpers here (L{HTTPClient}, L{parseResponse}, ...) are also used by
C{tests/test_resource.py}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import IResource, Resource
from zope.interface import directlyProvides

from txfastcgi.application import ApplicationRequest
from txfastcgi.cgiresponse import MalformedResponseError, ResponseHead
from txfastcgi.client import (
    ApplicationConnectionLost,
    ApplicationOverloaded,
    CantMultiplexConnection,
    FastCGIRequest,
    MissingEndRequest,
    ResponseBufferOverflow,
    ResponseTimeout,
    UnknownRole,
)
from txfastcgi.exchange import FastCGIExchange, errorStatus, redirectBody
from txfastcgi.fcgi.constants import ProtocolStatus, RecordType, Role
from txfastcgi.pool import (
    ConnectError,
    ConnectionPool,
    ConnectTimeout,
    PoolClosed,
    PoolOverloaded,
)
from txfastcgi.resource import FastCGIResource
from txfastcgi.site import GatewaySite
from txfastcgi.testing import (
    Close,
    Expect,
    ExpectRequest,
    MemoryApplicationEndpoint,
    MemoryEndpoint,
    Pause,
    ScriptedApplicationEndpoint,
    Send,
    endRequest,
    paramsFrom,
    respond,
    stderr,
    stdout,
)

CLIENT = IPv4Address("TCP", "192.0.2.7", 50123)
SERVER = IPv4Address("TCP", "198.51.100.1", 8080)


# --- helpers -----------------------------------------------------------------


@dataclass
class HTTPResponse:
    """
    One HTTP response as a client read it.

    @ivar status: the status code.
    @ivar reason: the reason phrase.
    @ivar headers: the header lines, in order.
    @ivar body: the body, de-chunked.
    @ivar complete: whether the framing says the body is whole: the last
        chunk was read, or Content-Length bytes were; L{None} for a
        close-delimited body.
    @ivar chunked: whether the body was chunked.
    """

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    complete: bool | None = None
    chunked: bool = False
    rest: bytes = field(default=b"", repr=False)

    def header(self, name: bytes) -> list[bytes]:
        """
        @return: every value of header C{name} (case-insensitive), in order.
        """
        return [v for n, v in self.headers if n.lower() == name.lower()]


def parseResponse(data: bytes, headRequest: bool = False) -> HTTPResponse:
    """
    Parse the first HTTP/1.x response in C{data}.

    @param headRequest: the response answers a HEAD (no body).
    @return: the response; C{rest} holds the bytes after it.
    """
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {data!r}"
    lines = head.split(b"\r\n")
    _, code, reason = (lines[0].split(b" ", 2) + [b""])[:3]
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name, value.strip()))
    response = HTTPResponse(int(code), reason, headers)
    if headRequest or response.status in (204, 304) or response.status < 200:
        response.complete = True
        response.rest = rest
        return response
    if b"chunked" in response.header(b"Transfer-Encoding"):
        response.chunked = True
        body = []
        while True:
            sizeLine, sep, after = rest.partition(b"\r\n")
            if not sep:
                response.complete = False
                break
            size = int(sizeLine, 16)
            if size == 0:
                response.complete = after.startswith(b"\r\n")
                rest = after[2:]
                break
            if len(after) < size + 2:
                body.append(after[:size])
                response.complete = False
                rest = b""
                break
            body.append(after[:size])
            rest = after[size + 2 :]
        response.body = b"".join(body)
    elif response.header(b"Content-Length"):
        length = int(response.header(b"Content-Length")[0])
        response.body = rest[:length]
        response.complete = len(response.body) == length
        rest = rest[length:]
    else:
        response.body = rest
        rest = b""
    response.rest = rest
    return response


class HTTPClient:
    """
    One HTTP connection to a L{GatewaySite}, over a L{StringTransport}.

    @ivar transport: the server's transport (what the client reads).
    @ivar protocol: what the site built (a wrapper around the channel).
    """

    def __init__(self, site: Any, *, secure: bool = False) -> None:
        self.site = site
        self.protocol = site.buildProtocol(CLIENT)
        self.transport = StringTransport(
            hostAddress=SERVER, peerAddress=CLIENT, lenient=True
        )
        if secure:
            directlyProvides(self.transport, ISSLTransport)
            self.transport.setTcpNoDelay = lambda enabled: None  # type: ignore[attr-defined]
        self.protocol.makeConnection(self.transport)

    @property
    def channel(self) -> Any:
        """
        The L{twisted.web.http.HTTPChannel} (the transport's producer).
        """
        return self.transport.producer

    def send(self, data: bytes) -> None:
        """
        Bytes from the client.
        """
        self.protocol.dataReceived(data)

    def get(
        self,
        path: bytes,
        method: bytes = b"GET",
        headers: Sequence[bytes] = (),
        body: bytes = b"",
        version: bytes = b"HTTP/1.1",
    ) -> None:
        """
        Send one request.
        """
        lines = [method + b" " + path + b" " + version, b"Host: example.com"]
        lines.extend(headers)
        if body or method in (b"POST", b"PUT"):
            lines.append(b"Content-Length: %d" % (len(body),))
        self.send(b"\r\n".join(lines) + b"\r\n\r\n" + body)

    def response(self, headRequest: bool = False) -> HTTPResponse:
        """
        The first response written so far.
        """
        return parseResponse(self.transport.value(), headRequest)

    @property
    def closed(self) -> bool:
        """
        Whether the server closed (or aborted) the connection.
        """
        return bool(self.transport.disconnecting or self.transport.disconnected)

    @property
    def aborted(self) -> bool:
        """
        Whether the server aborted the connection.
        """
        return bool(self.transport.disconnected)

    def disconnect(self) -> None:
        """
        The client goes away, as a real transport reports it: the channel
        is stopped, then told the connection is lost (STYLE.md P7).
        """
        channel = self.channel
        if channel is not None:
            channel.stopProducing()
        self.protocol.connectionLost(Failure(ConnectionDone("client gone")))

    def currentRequest(self) -> Any:
        """
        The L{twisted.web.server.Request} being served.
        """
        return self.protocol._channel.requests[0]


def makePool(endpoint: MemoryEndpoint, **kwargs: Any) -> ConnectionPool:
    """
    A pool over an in-memory endpoint, without the GET_VALUES probe.
    """
    kwargs.setdefault("probeValues", False)
    return ConnectionPool(endpoint.clock, endpoint, **kwargs)


def siteFor(resource: IResource, **kwargs: Any) -> GatewaySite:
    """
    A L{GatewaySite} with C{resource} at C{/app}.
    """
    root = Resource()
    root.putChild(b"app", resource)
    return GatewaySite(root, **kwargs)


def gatewayFor(
    endpoint: MemoryEndpoint, poolOptions: dict[str, Any] | None = None, **kwargs: Any
) -> tuple[GatewaySite, ConnectionPool, FastCGIResource]:
    """
    A site with a L{FastCGIResource} for C{endpoint} at C{/app}.
    """
    pool = makePool(endpoint, **(poolOptions or {}))
    resource = FastCGIResource(pool, **kwargs)
    return siteFor(resource), pool, resource


def events(logged: Sequence[LogEvent], text: str) -> list[LogEvent]:
    """
    The events whose format contains C{text}.
    """
    return [e for e in logged if text in (e.get("log_format") or "")]


def hello(request: ApplicationRequest) -> None:
    """
    An application answering "hello".
    """
    request.write(b"Content-Type: text/plain\r\n\r\nhello")


def held(request: ApplicationRequest) -> Deferred[None]:
    """
    An application that answers nothing until the test writes through
    C{request} (L{MemoryApplicationEndpoint.requests}).
    """
    return Deferred()


# --- pure parts ----------------------------------------------------------------


@pytest.mark.parametrize(
    "error, expected",
    [
        (ConnectError("refused"), (503, False)),
        (ConnectTimeout("slow"), (504, False)),
        (PoolOverloaded("full"), (503, True)),
        (PoolClosed("closed"), (503, False)),
        (ApplicationOverloaded(0, ProtocolStatus.OVERLOADED), (503, True)),
        (CantMultiplexConnection(0, ProtocolStatus.CANT_MPX_CONN), (502, False)),
        (UnknownRole(0, ProtocolStatus.UNKNOWN_ROLE), (502, False)),
        (ApplicationConnectionLost(False), (502, False)),
        (MissingEndRequest(), (502, False)),
        (ResponseTimeout("silent"), (504, False)),
        (ResponseBufferOverflow("full"), (502, False)),
        (MalformedResponseError("bad"), (502, False)),
        (ValueError("bug"), (500, False)),
    ],
)
def test_errorStatus(error: BaseException, expected: tuple[int, bool]) -> None:
    """
    L{errorStatus} maps each failure to the status of SPEC.md Decision 8,
    with C{Retry-After} only for overload.
    """
    assert errorStatus(error) == expected


def test_redirectBodyEscapes() -> None:
    """
    L{redirectBody} escapes the URL, so a Location cannot inject markup.
    """
    body = redirectBody(b'http://x/"><script>alert(1)</script>\xe9')
    assert b"<script>" not in body
    assert b"&quot;&gt;&lt;script&gt;" in body
    assert b"&#233;" in body
    assert body.startswith(b"<html>")


# --- streaming and the response -------------------------------------------------


class StreamingTests(SynchronousTestCase):
    """
    Body bytes reach the client as they arrive; the request finishes at the
    end of the FastCGI request.
    """

    def test_bodyStreamsAsItArrives(self) -> None:
        """
        Each piece of STDOUT is written to the client before the application
        ends, and the request finishes only with END_REQUEST.
        """
        app = MemoryApplicationEndpoint(held, clock=Clock())
        site, _, _ = gatewayFor(app)
        client = HTTPClient(site)
        client.get(b"/app")
        app.flush()
        appRequest = app.requests[0]
        appRequest.write(b"Content-Type: text/plain\r\n\r\n")
        app.flush()
        response = client.response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"")
        self.assertFalse(response.complete)
        appRequest.write(b"first ")
        app.flush()
        self.assertEqual(client.response().body, b"first ")
        appRequest.write(b"second")
        app.flush()
        self.assertEqual(client.response().body, b"first second")
        self.assertFalse(client.response().complete)
        appRequest.finish()
        app.flush()
        response = client.response()
        self.assertTrue(response.complete)
        self.assertTrue(response.chunked)
        self.assertEqual(response.body, b"first second")
        self.assertFalse(client.closed)

    def test_cgiEnvironmentRecordedForTheLog(self) -> None:
        """
        The variables sent to the application are on the HTTP request as
        C{cgiEnvironment}, a C{str} mapping, for the access log's
        C{%{NAME}e}.
        """
        app = MemoryApplicationEndpoint(hello, clock=Clock())
        site, _, _ = gatewayFor(app)
        logged: list[dict[str, str]] = []
        site.log = lambda request: logged.append(dict(request.cgiEnvironment))  # type: ignore[method-assign]
        client = HTTPClient(site)
        client.get(b"/app/x?q=1")
        app.flush()
        self.assertTrue(client.response().complete)
        self.assertEqual(len(logged), 1)
        self.assertEqual(logged[0]["SCRIPT_NAME"], "/app")
        self.assertEqual(logged[0]["PATH_INFO"], "/x")
        self.assertEqual(logged[0]["QUERY_STRING"], "q=1")

    def test_keepAliveServesSeveralRequests(self) -> None:
        """
        Two requests on one HTTP connection are both answered, in order.
        """
        app = MemoryApplicationEndpoint(hello, clock=Clock())
        site, _, _ = gatewayFor(app)
        client = HTTPClient(site)
        client.get(b"/app")
        app.flush()
        client.get(b"/app?2")
        app.flush()
        first = client.response()
        second = parseResponse(first.rest)
        self.assertEqual((first.body, second.body), (b"hello", b"hello"))
        self.assertTrue(first.complete and second.complete)

    def test_contentLengthKept(self) -> None:
        """
        A valid Content-Length from the application is sent and the body is
        not chunked.
        """

        def handler(request: ApplicationRequest) -> None:
            request.write(b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")

        app = MemoryApplicationEndpoint(handler, clock=Clock())
        site, _, _ = gatewayFor(app)
        client = HTTPClient(site)
        client.get(b"/app")
        app.flush()
        response = client.response()
        self.assertEqual(response.header(b"Content-Length"), [b"5"])
        self.assertFalse(response.chunked)
        self.assertEqual(response.body, b"hello")
        self.assertTrue(response.complete)
        self.assertFalse(client.closed)

    def test_excessBeyondContentLengthDropped(self) -> None:
        """
        Bytes beyond the Content-Length the application announced are
        dropped (and logged), so the next response on the connection is not
        corrupted.
        """

        def handler(request: ApplicationRequest) -> None:
            request.write(b"Content-Length: 3\r\n\r\nabc")
            request.write(b"def")

        app = MemoryApplicationEndpoint(handler, clock=Clock())
        site, _, _ = gatewayFor(app)
        client = HTTPClient(site)
        with capturedLogs() as logged:
            client.get(b"/app")
            app.flush()
        response = client.response()
        self.assertEqual(response.body, b"abc")
        self.assertEqual(response.rest, b"")
        self.assertTrue(response.complete)
        self.assertFalse(client.closed)
        self.assertEqual(len(events(logged, "more than the Content-Length")), 1)

    def test_headSendsHeadersOnlyAndDrains(self) -> None:
        """
        A HEAD request gets the head (Content-Length kept) and no body; the
        application is read to its end before the request finishes.
        """
        app = MemoryApplicationEndpoint(held, clock=Clock())
        site, _, _ = gatewayFor(app)
        client = HTTPClient(site)
        client.get(b"/app", method=b"HEAD")
        app.flush()
        appRequest = app.requests[0]
        self.assertEqual(appRequest.params[b"REQUEST_METHOD"], b"HEAD")
        appRequest.write(b"Content-Type: text/plain\r\nContent-Length: 10\r\n\r\n01234")
        app.flush()
        data = client.transport.value()
        self.assertTrue(data.endswith(b"\r\n\r\n"))
        response = client.response(headRequest=True)
        self.assertEqual(response.header(b"Content-Length"), [b"10"])
        self.assertEqual(response.rest, b"")
        request = client.currentRequest()
        self.assertFalse(request.finished)
        appRequest.write(b"56789")
        appRequest.finish()
        app.flush()
        self.assertTrue(request.finished)
        self.assertEqual(client.transport.value(), data)
        self.assertFalse(client.closed)


# --- failures -------------------------------------------------------------------


class FailureTests(SynchronousTestCase):
    """
    Each failure maps to its status (SPEC.md Decision 8) with an error page
    that reveals nothing internal, and is logged with named fields.
    """

    def answer(
        self,
        endpoint: MemoryEndpoint,
        poolOptions: dict[str, Any] | None = None,
        advance: float = 0,
    ) -> tuple[HTTPResponse, list[LogEvent]]:
        """
        Send C{GET /app} and return the answer and what was logged.
        """
        site, _, _ = gatewayFor(endpoint, poolOptions)
        client = HTTPClient(site)
        with capturedLogs() as logged:
            client.get(b"/app")
            endpoint.flush()
            if advance:
                endpoint.advance(advance)
        response = client.response()
        self.assertTrue(response.complete)
        self.assertEqual(response.header(b"Content-Type"), [b"text/html; charset=utf-8"])
        self.assertNotIn(b"127.0.0.1", response.body)
        self.assertNotIn(b"9000", response.body)
        return response, list(logged)

    def test_connectRefused(self) -> None:
        """
        An application that refuses connections gives 503 without
        C{Retry-After}.
        """
        app = MemoryApplicationEndpoint(hello, clock=Clock())
        app.connectError = ConnectionRefusedError("no")
        response, logged = self.answer(app)
        self.assertEqual(response.status, 503)
        self.assertEqual(response.header(b"Retry-After"), [])
        [event] = events(logged, "(answering {status})")
        self.assertEqual(event["status"], 503)
        self.assertEqual(event["uri"], "/app")
        self.assertIn("backend", event)

    def test_connectTimeout(self) -> None:
        """
        A connect that does not complete in time gives 504.
        """
        app = MemoryApplicationEndpoint(hello, clock=Clock())
        app.holdConnects = True
        response, _ = self.answer(app, {"connectTimeout": 2}, advance=3)
        self.assertEqual(response.status, 504)

    def test_responseTimeout(self) -> None:
        """
        An application silent for the response timeout gives 504.
        """
        app = ScriptedApplicationEndpoint([ExpectRequest(), Pause()])
        response, _ = self.answer(app, {"responseTimeout": 5}, advance=6)
        self.assertEqual(response.status, 504)

    def test_applicationOverloaded(self) -> None:
        """
        END_REQUEST with OVERLOADED gives 503 with C{Retry-After}.
        """
        app = ScriptedApplicationEndpoint(
            [ExpectRequest(), Send(endRequest(0, ProtocolStatus.OVERLOADED))]
        )
        response, _ = self.answer(app)
        self.assertEqual(response.status, 503)
        self.assertEqual(response.header(b"Retry-After"), [b"5"])

    def test_poolOverloaded(self) -> None:
        """
        A request the pool cannot queue gives 503 with C{Retry-After}.
        """
        app = MemoryApplicationEndpoint(held, clock=Clock())
        site, _, _ = gatewayFor(app, {"maxConnections": 1, "maxQueued": 0})
        first = HTTPClient(site)
        first.get(b"/app")
        app.flush()
        second = HTTPClient(site)
        second.get(b"/app")
        app.flush()
        response = second.response()
        self.assertEqual(response.status, 503)
        self.assertEqual(response.header(b"Retry-After"), [b"5"])
        self.assertEqual(first.transport.value(), b"")

    def test_poolClosed(self) -> None:
        """
        A request to a closed pool gives 503.
        """
        app = MemoryApplicationEndpoint(hello, clock=Clock())
        site, pool, _ = gatewayFor(app)
        pool.closeAll()
        client = HTTPClient(site)
        client.get(b"/app")
        self.assertEqual(client.response().status, 503)

    def test_protocolError(self) -> None:
        """
        Bytes that are not FastCGI records give 502.
        """
        app = ScriptedApplicationEndpoint([ExpectRequest(), Send(b"<html>oops</html>")])
        response, _ = self.answer(app)
        self.assertEqual(response.status, 502)

    def test_diedBeforeHead(self) -> None:
        """
        An application that closes the connection before its head gives 502.
        """
        app = ScriptedApplicationEndpoint(
            [ExpectRequest(), Send(stdout(b"Content-Type: te")), Close()]
        )
        response, _ = self.answer(app)
        self.assertEqual(response.status, 502)

    def test_refusedRoles(self) -> None:
        """
        UNKNOWN_ROLE gives 502.
        """
        app = ScriptedApplicationEndpoint(
            [ExpectRequest(), Send(endRequest(0, ProtocolStatus.UNKNOWN_ROLE))]
        )
        response, _ = self.answer(app)
        self.assertEqual(response.status, 502)

    def test_malformedHead(self) -> None:
        """
        A malformed head gives 502, the reason is logged with named fields,
        and the FastCGI request is aborted.
        """
        app = ScriptedApplicationEndpoint(
            [ExpectRequest(), Send(stdout(b"Not a header\r\n\r\nbody")), Pause()]
        )
        response, logged = self.answer(app)
        self.assertEqual(response.status, 502)
        [event] = events(logged, "Malformed response head")
        self.assertEqual(event["uri"], "/app")
        self.assertIn("line 1", event["error"])
        self.assertIn(RecordType.ABORT_REQUEST, [r.type for r in app.received])

    def test_headTooLarge(self) -> None:
        """
        A head over C{maxHeaderBytes} gives 502.
        """
        app = ScriptedApplicationEndpoint(
            [ExpectRequest(), Send(stdout(b"X-Big: " + b"x" * 200)), Pause()]
        )
        site, _, _ = gatewayFor(app, maxHeaderBytes=100)
        client = HTTPClient(site)
        client.get(b"/app")
        app.flush()
        self.assertEqual(client.response().status, 502)

    def test_incompleteHead(self) -> None:
        """
        STDOUT that ends before the blank line gives 502, logged with the
        number of bytes received.
        """
        app = ScriptedApplicationEndpoint([ExpectRequest(), respond(b"Content-Type: x\r\n")])
        response, logged = self.answer(app)
        self.assertEqual(response.status, 502)
        [event] = events(logged, "Bad response head")
        self.assertIn("incomplete headers", event["error"])

    def test_noOutputAtAll(self) -> None:
        """
        An application that ends the request without any STDOUT gives 502.
        """
        app = ScriptedApplicationEndpoint([ExpectRequest(), respond(b"")])
        response, _ = self.answer(app)
        self.assertEqual(response.status, 502)

    def test_headRequestErrorHasNoBody(self) -> None:
        """
        An error answering a HEAD sends the head only.
        """
        app = MemoryApplicationEndpoint(hello, clock=Clock())
        app.connectError = ConnectionRefusedError("no")
        site, _, _ = gatewayFor(app)
        client = HTTPClient(site)
        client.get(b"/app", method=b"HEAD")
        app.flush()
        response = client.response(headRequest=True)
        self.assertEqual(response.status, 503)
        self.assertEqual(response.rest, b"")


class TruncationTests(SynchronousTestCase):
    """
    An application that dies after the head was sent makes the client
    connection close without a complete response.
    """

    def cutShort(
        self, head: bytes, version: bytes = b"HTTP/1.1"
    ) -> tuple[HTTPClient, list[LogEvent]]:
        """
        Serve C{GET /app} from an application that sends C{head} and
        C{part}, then closes the connection.
        """
        app = ScriptedApplicationEndpoint(
            [ExpectRequest(), Send(stdout(head + b"part")), Close()]
        )
        site, _, _ = gatewayFor(app)
        client = HTTPClient(site)
        with capturedLogs() as logged:
            client.get(b"/app", version=version)
            app.flush()
        return client, list(logged)

    def test_chunkedBodyHasNoLastChunk(self) -> None:
        """
        A chunked body is cut without its last chunk and the connection is
        aborted; the truncation is logged.
        """
        client, logged = self.cutShort(b"Content-Type: text/plain\r\n\r\n")
        response = client.response()
        self.assertTrue(response.chunked)
        self.assertEqual(response.body, b"part")
        self.assertFalse(response.complete)
        self.assertNotIn(b"0\r\n\r\n", client.transport.value())
        self.assertTrue(client.aborted)
        [event] = events(logged, "cut short")
        self.assertEqual(event["uri"], "/app")
        request = client.currentRequest()
        self.assertFalse(request.finished)
        self.assertIsNone(request.producer)
        # The connection then goes away; nothing is written or finished.
        client.protocol.connectionLost(Failure(ConnectionDone()))

    def test_contentLengthBodyIsShort(self) -> None:
        """
        A body with Content-Length is cut short of it and the connection is
        aborted.
        """
        client, _ = self.cutShort(b"Content-Length: 100\r\n\r\n")
        response = client.response()
        self.assertFalse(response.chunked)
        self.assertEqual(response.body, b"part")
        self.assertFalse(response.complete)
        self.assertTrue(client.aborted)

    def test_closeDelimitedBodyAborted(self) -> None:
        """
        An HTTP/1.0 body (delimited by the close) is aborted too.
        """
        client, _ = self.cutShort(b"Content-Type: text/plain\r\n\r\n", version=b"HTTP/1.0")
        response = client.response()
        self.assertIsNone(response.complete)
        self.assertEqual(response.body, b"part")
        self.assertTrue(client.aborted)

    def test_endedShortOfContentLength(self) -> None:
        """
        An application that ends its request short of its Content-Length
        gets the connection aborted too.
        """
        app = ScriptedApplicationEndpoint(
            [ExpectRequest(), respond(b"Content-Length: 10\r\n\r\nabc")]
        )
        site, _, _ = gatewayFor(app)
        client = HTTPClient(site)
        with capturedLogs():
            client.get(b"/app")
            app.flush()
        self.assertEqual(client.response().body, b"abc")
        self.assertTrue(client.aborted)

    def test_diedAfterCompleteContentLength(self) -> None:
        """
        An application that sent its whole Content-Length and then died
        (no END_REQUEST) still gives a complete response.
        """
        app = ScriptedApplicationEndpoint(
            [ExpectRequest(), Send(stdout(b"Content-Length: 3\r\n\r\nabc")), Close()]
        )
        site, _, _ = gatewayFor(app)
        client = HTTPClient(site)
        with capturedLogs():
            client.get(b"/app")
            app.flush()
        response = client.response()
        self.assertTrue(response.complete)
        self.assertFalse(client.closed)


# --- the client side: disconnects and backpressure ---------------------------------


class ClientSideTests(SynchronousTestCase):
    """
    A client that goes away aborts the FastCGI request; a slow client pauses
    it.
    """

    def test_disconnectAbortsApplication(self) -> None:
        """
        When the client disconnects, the application's request is aborted
        (ABORT_REQUEST reaches it: C{notifyAbort} fires), and nothing is
        written or finished on the dead request.
        """
        app = MemoryApplicationEndpoint(held, clock=Clock())
        site, pool, _ = gatewayFor(app)
        client = HTTPClient(site)
        client.get(b"/app")
        app.flush()
        appRequest = app.requests[0]
        aborted = appRequest.notifyAbort()
        appRequest.write(b"Content-Type: text/plain\r\n\r\nsome")
        app.flush()
        self.assertNoResult(aborted)
        client.disconnect()
        app.flush()
        self.successResultOf(aborted)
        self.assertTrue(appRequest.aborted)
        self.assertEqual(pool.requestsFailed, 1)

    def test_disconnectBeforeHead(self) -> None:
        """
        A client gone before the head arrives gets nothing written, and the
        application sees the abort.
        """
        app = ScriptedApplicationEndpoint([ExpectRequest(), Pause()])
        site, _, _ = gatewayFor(app)
        client = HTTPClient(site)
        client.get(b"/app")
        app.flush()
        client.disconnect()
        app.flush()
        self.assertEqual(client.transport.value(), b"")
        self.assertIn(RecordType.ABORT_REQUEST, [r.type for r in app.received])

    def test_disconnectWithoutStopProducing(self) -> None:
        """
        C{notifyFinish}'s errback alone (as StringTransport disconnects
        report it, P7) aborts the FastCGI request.
        """
        app = ScriptedApplicationEndpoint([ExpectRequest(), Pause()])
        site, _, _ = gatewayFor(app)
        client = HTTPClient(site)
        client.get(b"/app")
        app.flush()
        client.protocol.connectionLost(Failure(ConnectionDone()))
        app.flush()
        self.assertIn(RecordType.ABORT_REQUEST, [r.type for r in app.received])

    def test_disconnectWhileQueued(self) -> None:
        """
        A request still queued in the pool when its client goes away leaves
        the queue.
        """
        app = MemoryApplicationEndpoint(held, clock=Clock())
        site, pool, _ = gatewayFor(app, {"maxConnections": 1})
        HTTPClient(site).get(b"/app")
        app.flush()
        client = HTTPClient(site)
        client.get(b"/app")
        app.flush()
        self.assertEqual(pool.queued, 1)
        client.disconnect()
        self.assertEqual(pool.queued, 0)

    def test_slowClientPausesApplication(self) -> None:
        """
        The exchange is the HTTP request's streaming producer: when the
        client's transport pauses the channel, the FastCGI request is paused
        and so is the application connection; resuming resumes both.
        """
        app = MemoryApplicationEndpoint(held, clock=Clock())
        site, _, _ = gatewayFor(app)
        client = HTTPClient(site)
        client.get(b"/app")
        app.flush()
        request = client.currentRequest()
        self.assertIsInstance(request.producer, FastCGIExchange)
        producer = request.producer.fastcgiRequest
        self.assertIsInstance(producer, FastCGIRequest)
        appRequest = app.requests[0]
        appRequest.write(b"Content-Type: text/plain\r\n\r\n")
        app.flush()
        connection = app.connections[0]
        client.channel.pauseProducing()
        self.assertTrue(producer._paused)
        self.assertTrue(producer._protocol._transportPaused)
        appRequest.write(b"held back")
        app.flush()
        self.assertEqual(client.response().body, b"")
        client.channel.resumeProducing()
        app.flush()
        self.assertFalse(producer._paused)
        self.assertEqual(client.response().body, b"held back")
        appRequest.finish()
        app.flush()
        self.assertTrue(client.response().complete)
        self.assertIsNone(request.producer)
        self.assertTrue(connection.open)

    def test_bodyStreamedWhileResponseRead(self) -> None:
        """
        A large spooled body (a temporary file) goes to the application as
        STDIN in several records, while the response is already being read:
        the application answers before reading the whole body.
        """
        app = ScriptedApplicationEndpoint(
            [
                Expect(RecordType.BEGIN_REQUEST),
                Expect(RecordType.PARAMS, end=True),
                Send(stdout(b"Content-Type: text/plain\r\n\r\nearly ")),
                Expect(RecordType.STDIN, end=True),
                respond(b"late"),
            ]
        )
        site, _, _ = gatewayFor(app)
        client = HTTPClient(site)
        body = bytes(range(256)) * 1200
        client.get(b"/app", method=b"POST", body=body)
        app.flush()
        response = client.response()
        self.assertEqual(response.body, b"early late")
        self.assertTrue(response.complete)
        stdin = [r.content for r in app.received if r.type == RecordType.STDIN]
        self.assertGreater(len(stdin), 2)
        self.assertEqual(b"".join(stdin), body)
        self.assertEqual(paramsFrom(app.received)[b"CONTENT_LENGTH"], b"307200")


# --- STDERR ------------------------------------------------------------------------


class StderrTests(SynchronousTestCase):
    """
    STDERR is logged line by line with named fields.
    """

    def test_linesSplitAndTagged(self) -> None:
        """
        Lines split across records are logged whole, a partial line is held
        until its newline or the end of the request, and each event carries
        C{backend}, C{uri}, C{requestId} and C{line}.
        """
        app = ScriptedApplicationEndpoint(
            [
                ExpectRequest(),
                Send(stderr(b"first li"), stderr(b"ne\r\nsecond\nthi")),
                Send(stderr(b"rd {not a field}")),
                respond(b"Content-Type: text/plain\r\n\r\nok"),
            ]
        )
        site, pool, _ = gatewayFor(app)
        client = HTTPClient(site)
        with capturedLogs() as logged:
            client.get(b"/app?x={y}")
            app.flush()
        self.assertEqual(client.response().body, b"ok")
        lines = events(logged, "stderr for {uri}")
        self.assertEqual(
            [e["line"] for e in lines], ["first line", "second", "third {not a field}"]
        )
        for event in lines:
            self.assertEqual(event["backend"], pool.address)
            self.assertEqual(event["uri"], "/app?x={y}")
            self.assertEqual(event["requestId"], 1)
            self.assertEqual(event["stream"], "stderr")

    def test_longPartialLineCapped(self) -> None:
        """
        A partial line longer than C{maxStderrLine} is logged without waiting
        for its newline.
        """
        app = MemoryApplicationEndpoint(held, clock=Clock())
        site, _, _ = gatewayFor(app)
        client = HTTPClient(site)
        with capturedLogs() as logged:
            client.get(b"/app")
            app.flush()
            app.requests[0].writeStderr(b"y" * 5000)
            app.flush()
        [event] = events(logged, "stderr for {uri}")
        self.assertEqual(len(event["line"]), 5000)


# --- reuse for other roles ----------------------------------------------------------


class ReuseTests(SynchronousTestCase):
    """
    The exchange takes the role, params, body and what to do with the head
    as parameters, so other roles can use it.
    """

    def test_customOnHeadAndRole(self) -> None:
        """
        An Authorizer-style exchange: role AUTHORIZER, no body, the head is
        inspected and the rest discarded; C{notifyEnd} fires once the
        FastCGI request is over, and the HTTP request is left alone.
        """
        seen: list[ResponseHead] = []
        roles: list[int] = []

        def handler(request: ApplicationRequest) -> None:
            roles.append(request.role)
            request.write(b"Status: 200\r\nVariable-User: bob\r\n\r\nignored")

        app = MemoryApplicationEndpoint(handler, clock=Clock())
        pool = makePool(app)
        ends: list[object] = []

        class Gate(Resource):
            isLeaf = True

            def render(self, request: Any) -> Any:
                def onHead(exchange: FastCGIExchange, head: ResponseHead) -> None:
                    seen.append(head)
                    exchange.discard()

                exchange = FastCGIExchange(
                    request,
                    pool,
                    [(b"REQUEST_METHOD", b"GET")],
                    role=Role.AUTHORIZER,
                    onHead=onHead,
                )
                exchange.start()

                def then(_: object) -> None:
                    ends.append(exchange.state)
                    request.write(b"authorized")
                    request.finish()

                exchange.notifyEnd().addCallback(then)
                return 1  # NOT_DONE_YET

        client = HTTPClient(siteFor(Gate()))
        client.get(b"/app")
        app.flush()
        self.assertEqual(roles, [Role.AUTHORIZER])
        self.assertEqual(seen[0].headers, ((b"Variable-User", b"bob"),))
        self.assertEqual(ends, ["DONE"])
        response = client.response()
        self.assertEqual(response.body, b"authorized")
        self.assertTrue(response.complete)


class FailAfterHeadTests(SynchronousTestCase):
    """
    L{FastCGIExchange.fail} after the head was written closes the
    connection instead of writing an error page into the body.
    """

    def test_failAfterHead(self) -> None:
        """
        An C{onHead} that responds and then fails leaves a truncated
        response and an aborted FastCGI request.
        """
        app = ScriptedApplicationEndpoint(
            [ExpectRequest(), Send(stdout(b"Content-Type: text/plain\r\n\r\nstart")), Pause()]
        )
        pool = makePool(app)

        def onHead(exchange: FastCGIExchange, head: ResponseHead) -> None:
            exchange.respond(head)
            exchange.fail(502)

        class Failing(Resource):
            isLeaf = True

            def render(self, request: Any) -> Any:
                FastCGIExchange(request, pool, [], onHead=onHead).start()
                return 1

        client = HTTPClient(siteFor(Failing()))
        with capturedLogs():
            client.get(b"/app")
            app.flush()
        response = client.response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"start")
        self.assertFalse(response.complete)
        self.assertTrue(client.aborted)
        self.assertIn(RecordType.ABORT_REQUEST, [r.type for r in app.received])


class OnHeadMisuseTests(SynchronousTestCase):
    """
    An C{onHead} that raises, or decides nothing, does not leave the HTTP
    request hanging.
    """

    def serve(self, onHead: Any) -> tuple[HTTPClient, ScriptedApplicationEndpoint]:
        """
        Serve C{GET /app} with C{onHead}.
        """
        app = ScriptedApplicationEndpoint(
            [ExpectRequest(), Send(stdout(b"Content-Type: text/plain\r\n\r\nx")), Pause()]
        )
        pool = makePool(app)

        class Custom(Resource):
            isLeaf = True

            def render(self, request: Any) -> Any:
                FastCGIExchange(request, pool, [], onHead=onHead).start()
                return 1

        client = HTTPClient(siteFor(Custom()))
        client.get(b"/app")
        app.flush()
        return client, app

    def test_raising(self) -> None:
        """
        An C{onHead} that raises gives 500 (the failure is logged) and the
        FastCGI request is aborted.
        """

        def onHead(exchange: FastCGIExchange, head: ResponseHead) -> None:
            raise ValueError("oops")

        client, app = self.serve(onHead)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(client.response().status, 500)
        self.assertIn(RecordType.ABORT_REQUEST, [r.type for r in app.received])

    def test_undecided(self) -> None:
        """
        An C{onHead} that calls none of respond, discard and fail gives 500.
        """
        with capturedLogs() as logged:
            client, _ = self.serve(lambda exchange, head: None)
        self.assertEqual(client.response().status, 500)
        self.assertEqual(len(events(logged, "neither responded")), 1)
