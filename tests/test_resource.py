# -*- test-case-name: tests.test_resource -*-
"""
Tests for L{txfastcgi.resource} (L{FastCGIResource}, internal redirects) and
L{txfastcgi.site} (the body limit), through a real L{GatewaySite} over a
L{StringTransport} with in-memory applications.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.test_exchange import (
    HTTPClient,
    events,
    gatewayFor,
    makePool,
    parseResponse,
    siteFor,
)
from txfastcgi.application import ApplicationRequest
from txfastcgi.cgienv import EnvironmentOptions
from txfastcgi.resource import FastCGIResource, safePathInfo
from txfastcgi.site import GatewaySite, LimitedRequest
from txfastcgi.testing import MemoryApplicationEndpoint


def recorder(
    answer: bytes = b"Content-Type: text/plain\r\n\r\nok",
) -> tuple[MemoryApplicationEndpoint, list[dict[bytes, bytes]], list[bytes]]:
    """
    An application that records each request's params and body and answers
    C{answer}.

    @return: the endpoint, the params seen, the bodies seen.
    """
    params: list[dict[bytes, bytes]] = []
    bodies: list[bytes] = []

    def handler(request: ApplicationRequest) -> Any:
        params.append(dict(request.params))
        chunks: list[bytes] = []

        def more(data: bytes) -> Any:
            chunks.append(data)
            if request.stdin.ended:
                bodies.append(b"".join(chunks))
                request.write(answer)
                return None
            return request.stdin.read().addCallback(more)

        return request.stdin.read().addCallback(more)

    return MemoryApplicationEndpoint(handler, clock=Clock()), params, bodies


class EnvironmentTests(SynchronousTestCase):
    """
    Every CGI variable reaches the application, built from the request.
    """

    def serve(self, path: bytes, **kwargs: Any) -> tuple[dict[bytes, bytes], HTTPClient]:
        """
        Serve one GET of C{path} with extra request options in C{kwargs}.
        """
        secure = kwargs.pop("secure", False)
        headers = kwargs.pop("headers", ())
        method = kwargs.pop("method", b"GET")
        body = kwargs.pop("body", b"")
        app, params, _ = recorder()
        site, _, _ = gatewayFor(app, **kwargs)
        client = HTTPClient(site, secure=secure)
        client.get(path, method=method, headers=headers, body=body)
        app.flush()
        self.assertEqual(client.response().status, 200)
        return params[0], client

    def test_variables(self) -> None:
        """
        The server, request, path and client variables are all set.
        """
        env, _ = self.serve(
            b"/app/a%20b/c?x=1&y=%41",
            documentRoot=b"/srv/www/",
            scriptFilename=b"/srv/www/app.fcgi",
            extraVariables=[(b"STATE", b"TEXAS")],
            headers=[b"Accept: text/html", b"X-Forwarded-For: 1.2.3.4"],
        )
        expected = {
            b"GATEWAY_INTERFACE": b"CGI/1.1",
            b"SERVER_NAME": b"example.com",
            b"SERVER_ADDR": b"198.51.100.1",
            b"SERVER_PORT": b"8080",
            b"SERVER_PROTOCOL": b"HTTP/1.1",
            b"REQUEST_SCHEME": b"http",
            b"REQUEST_METHOD": b"GET",
            b"REQUEST_URI": b"/app/a%20b/c?x=1&y=%41",
            b"SCRIPT_NAME": b"/app",
            b"PATH_INFO": b"/a b/c",
            b"PATH_TRANSLATED": b"/srv/www/a b/c",
            b"SCRIPT_FILENAME": b"/srv/www/app.fcgi",
            b"DOCUMENT_ROOT": b"/srv/www/",
            b"QUERY_STRING": b"x=1&y=%41",
            b"REMOTE_ADDR": b"192.0.2.7",
            b"REMOTE_PORT": b"50123",
            b"HTTP_HOST": b"example.com",
            b"HTTP_ACCEPT": b"text/html",
            b"HTTP_X_FORWARDED_FOR": b"1.2.3.4",
            b"STATE": b"TEXAS",
        }
        for name, value in expected.items():
            self.assertEqual(env.get(name), value, name)
        self.assertTrue(env[b"SERVER_SOFTWARE"].startswith(b"txfastcgi/"))
        self.assertNotIn(b"CONTENT_LENGTH", env)
        self.assertNotIn(b"HTTPS", env)

    def test_secure(self) -> None:
        """
        A request over TLS gets C{HTTPS=on} and the https scheme.
        """
        env, _ = self.serve(b"/app", secure=True)
        self.assertEqual(env[b"HTTPS"], b"on")
        self.assertEqual(env[b"REQUEST_SCHEME"], b"https")

    def test_repeatedHeadersAndWithheld(self) -> None:
        """
        Repeated headers all arrive (joined), Authorization is withheld
        unless passed, and Transfer-Encoding is not forwarded.
        """
        env, _ = self.serve(
            b"/app",
            headers=[
                b"Cookie: a=1",
                b"X-Many: one",
                b"Cookie: b=2",
                b"X-Many: two",
                b"Authorization: Basic eDp5",
            ],
        )
        self.assertEqual(env[b"HTTP_COOKIE"], b"a=1; b=2")
        self.assertEqual(env[b"HTTP_X_MANY"], b"one, two")
        self.assertNotIn(b"HTTP_AUTHORIZATION", env)
        env, _ = self.serve(
            b"/app",
            headers=[b"Authorization: Basic eDp5"],
            environmentOptions=EnvironmentOptions(passHeaders=frozenset([b"authorization"])),
        )
        self.assertEqual(env[b"HTTP_AUTHORIZATION"], b"Basic eDp5")

    def test_serverNameOverride(self) -> None:
        """
        A configured server name replaces the Host header's.
        """
        env, _ = self.serve(b"/app", serverName=b"www.example.org")
        self.assertEqual(env[b"SERVER_NAME"], b"www.example.org")

    def test_pathShapes(self) -> None:
        """
        No path info, a trailing slash, and a resource at the root.
        """
        env, _ = self.serve(b"/app")
        self.assertEqual(env[b"SCRIPT_NAME"], b"/app")
        self.assertNotIn(b"PATH_INFO", env)
        env, _ = self.serve(b"/app/")
        self.assertEqual(env[b"PATH_INFO"], b"/")
        app, params, _ = recorder()
        site = GatewaySite(FastCGIResource(makePool(app)))
        client = HTTPClient(site)
        client.get(b"/x/y?q")
        app.flush()
        self.assertEqual(params[0][b"SCRIPT_NAME"], b"")
        self.assertEqual(params[0][b"PATH_INFO"], b"/x/y")

    def test_unsafePathInfoRefused(self) -> None:
        """
        Dot segments and encoded slashes in the path info are answered 404
        and never reach the application.
        """
        for path in [
            b"/app/../etc/passwd",
            b"/app/%2e%2e/x",
            b"/app/a%2Fb",
            b"/app/./x",
            b"/app/a%00b",
        ]:
            app, params, _ = recorder()
            site, _, _ = gatewayFor(app, documentRoot=b"/srv")
            client = HTTPClient(site)
            with capturedLogs():
                client.get(path)
                app.flush()
            self.assertEqual(client.response().status, 404, path)
            self.assertEqual(params, [])
            self.assertEqual(app.connectionsMade, 0)

    def test_safePathInfo(self) -> None:
        """
        L{safePathInfo} accepts ordinary and empty segments only.
        """
        self.assertTrue(safePathInfo([b"a", b"", b"b c", b"..."]))
        self.assertFalse(safePathInfo([b"a", b".."]))
        self.assertFalse(safePathInfo([b"."]))
        self.assertFalse(safePathInfo([b"a/b"]))


class BodyTests(SynchronousTestCase):
    """
    The spooled body reaches the application as STDIN with its length.
    """

    def post(
        self, body: bytes, headers: list[bytes] | None = None, raw: bytes | None = None
    ) -> tuple[dict[bytes, bytes], bytes]:
        """
        POST C{body} (or send C{raw}) and return what the application saw.
        """
        app, params, bodies = recorder()
        site, _, _ = gatewayFor(app)
        client = HTTPClient(site)
        if raw is not None:
            client.send(raw)
        else:
            client.get(b"/app", method=b"POST", body=body, headers=headers or [])
        app.flush()
        self.assertEqual(client.response().status, 200)
        return params[0], bodies[0]

    def test_smallBody(self) -> None:
        """
        A small body and its type arrive.
        """
        env, body = self.post(b"a=1&b=2", [b"Content-Type: application/x-www-form-urlencoded"])
        self.assertEqual(body, b"a=1&b=2")
        self.assertEqual(env[b"CONTENT_LENGTH"], b"7")
        self.assertEqual(env[b"CONTENT_TYPE"], b"application/x-www-form-urlencoded")

    def test_largeBody(self) -> None:
        """
        A body spooled to a temporary file arrives whole.
        """
        data = bytes(range(256)) * 1000
        env, body = self.post(data)
        self.assertEqual(body, data)
        self.assertEqual(env[b"CONTENT_LENGTH"], b"256000")

    def test_emptyPost(self) -> None:
        """
        An empty POST says C{CONTENT_LENGTH=0}.
        """
        env, body = self.post(b"")
        self.assertEqual(body, b"")
        self.assertEqual(env[b"CONTENT_LENGTH"], b"0")

    def test_chunkedUploadHasLength(self) -> None:
        """
        A chunked upload gets a CONTENT_LENGTH from the spool, and no
        HTTP_TRANSFER_ENCODING.
        """
        env, body = self.post(
            b"",
            raw=b"POST /app HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        self.assertEqual(body, b"abcde")
        self.assertEqual(env[b"CONTENT_LENGTH"], b"5")
        self.assertNotIn(b"HTTP_TRANSFER_ENCODING", env)


class ResponseTests(SynchronousTestCase):
    """
    The application's head becomes the HTTP response head (SPEC.md 5.3).
    """

    def answer(self, stdout: bytes, method: bytes = b"GET") -> Any:
        """
        Serve one request answered with C{stdout}.
        """
        app, _, _ = recorder(stdout)
        site, _, _ = gatewayFor(app)
        client = HTTPClient(site)
        client.get(b"/app", method=method)
        app.flush()
        return client.response(headRequest=method == b"HEAD")

    def test_statusAndHeaders(self) -> None:
        """
        Status and reason come from C{Status}; headers go through unmerged
        and in order; no default Content-Type is added.
        """
        response = self.answer(
            b"Status: 201 Made It\r\nSet-Cookie: a=1\r\nX-Y: z\r\nSet-Cookie: b=2\r\n\r\nbody"
        )
        self.assertEqual((response.status, response.reason), (201, b"Made It"))
        self.assertEqual(response.header(b"Set-Cookie"), [b"a=1", b"b=2"])
        self.assertEqual(response.header(b"X-Y"), [b"z"])
        self.assertEqual(response.header(b"Content-Type"), [])
        self.assertEqual(response.body, b"body")

    def test_serverAndDateReplaced(self) -> None:
        """
        An application's Server and Date replace Twisted's instead of
        doubling them.
        """
        response = self.answer(
            b"Server: app/1\r\nDate: Thu, 01 Jan 1998 00:00:00 GMT\r\n\r\n"
        )
        self.assertEqual(response.header(b"Server"), [b"app/1"])
        self.assertEqual(response.header(b"Date"), [b"Thu, 01 Jan 1998 00:00:00 GMT"])

    def test_badContentLengthAndHopByHop(self) -> None:
        """
        An invalid Content-Length and hop-by-hop headers are dropped, and
        Twisted frames the body itself.
        """
        response = self.answer(
            b"Content-Length: 1x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nabc"
        )
        self.assertEqual(response.header(b"Content-Length"), [])
        self.assertEqual(response.header(b"Transfer-Encoding"), [b"chunked"])
        self.assertEqual(response.header(b"Connection"), [])
        self.assertEqual(response.body, b"abc")
        self.assertTrue(response.complete)

    def test_noBodyStatus(self) -> None:
        """
        A 304 sends no body.
        """
        response = self.answer(b"Status: 304\r\n\r\nignored")
        self.assertEqual(response.status, 304)
        self.assertEqual(response.rest, b"")

    def test_clientRedirectGeneratedBody(self) -> None:
        """
        A full-URL Location without Content-type gives 302 with a short,
        escaped HTML body; the application's body is dropped.
        """
        response = self.answer(b'Location: http://x.example/"<b>\r\n\r\nsecret')
        self.assertEqual(response.status, 302)
        self.assertEqual(response.header(b"Location"), [b'http://x.example/"<b>'])
        self.assertEqual(response.header(b"Content-Type"), [b"text/html"])
        self.assertIn(b"http://x.example/&quot;&lt;b&gt;", response.body)
        self.assertNotIn(b"secret", response.body)
        self.assertNotIn(b"<b>", response.body)
        self.assertEqual(int(response.header(b"Content-Length")[0]), len(response.body))
        self.assertTrue(response.complete)

    def test_clientRedirectOwnBody(self) -> None:
        """
        A full-URL Location with Content-type sends the application's body.
        """
        response = self.answer(
            b"Location: http://x.example/\r\nContent-Type: text/plain\r\n\r\nmine"
        )
        self.assertEqual(response.status, 302)
        self.assertEqual(response.body, b"mine")


class Static(Resource):
    """
    A plain resource answering "static page".
    """

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        """
        @return: the page.
        """
        request.setHeader(b"Content-Type", b"text/plain")
        return b"static page"


class InternalRedirectTests(SynchronousTestCase):
    """
    C{Location: /path} serves that path on the same site as a GET.
    """

    def test_redirectToOtherResource(self) -> None:
        """
        The target resource answers; the application's body is dropped.
        """

        def handler(request: ApplicationRequest) -> None:
            request.write(b"Location: /static\r\nContent-Type: text/plain\r\n\r\nhidden")

        app = MemoryApplicationEndpoint(handler, clock=Clock())
        root = Resource()
        root.putChild(b"app", FastCGIResource(makePool(app)))
        root.putChild(b"static", Static())
        client = HTTPClient(GatewaySite(root))
        client.get(b"/app/x")
        app.flush()
        response = client.response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"static page")
        self.assertTrue(response.complete)

    def test_redirectToApplication(self) -> None:
        """
        A redirect to another FastCGI path is a GET without body, with the
        new query, and C{REDIRECT_URL}, C{REDIRECT_QUERY_STRING} and
        C{REDIRECT_STATUS}; a HEAD stays a HEAD.
        """
        seen: list[dict[bytes, bytes]] = []

        def handler(request: ApplicationRequest) -> None:
            seen.append(dict(request.params))
            if request.params[b"SCRIPT_NAME"] == b"/app":
                request.write(b"Location: /other/p%20q?n=2\r\n\r\n")
            else:
                request.write(b"Content-Type: text/plain\r\n\r\nother")

        app = MemoryApplicationEndpoint(handler, clock=Clock())
        pool = makePool(app)
        root = Resource()
        root.putChild(b"app", FastCGIResource(pool))
        root.putChild(b"other", FastCGIResource(pool))
        client = HTTPClient(GatewaySite(root))
        client.get(
            b"/app/x?q=1",
            method=b"POST",
            body=b"payload",
            headers=[b"Content-Type: text/plain"],
        )
        app.flush()
        response = client.response()
        self.assertEqual(response.body, b"other")
        self.assertTrue(response.complete)
        second = seen[1]
        self.assertEqual(second[b"REQUEST_METHOD"], b"GET")
        self.assertEqual(second[b"SCRIPT_NAME"], b"/other")
        self.assertEqual(second[b"PATH_INFO"], b"/p q")
        self.assertEqual(second[b"QUERY_STRING"], b"n=2")
        self.assertEqual(second[b"REQUEST_URI"], b"/other/p%20q?n=2")
        self.assertEqual(second[b"REDIRECT_URL"], b"/app/x")
        self.assertEqual(second[b"REDIRECT_QUERY_STRING"], b"q=1")
        self.assertEqual(second[b"REDIRECT_STATUS"], b"200")
        self.assertNotIn(b"CONTENT_LENGTH", second)
        self.assertNotIn(b"CONTENT_TYPE", second)

        seen.clear()
        client = HTTPClient(GatewaySite(root))
        client.get(b"/app", method=b"HEAD")
        app.flush()
        self.assertEqual(seen[1][b"REQUEST_METHOD"], b"HEAD")
        self.assertEqual(client.response(headRequest=True).status, 200)

    def test_loopLimit(self) -> None:
        """
        A redirect loop is cut after ten internal redirects with a logged
        500.
        """
        calls: list[bytes] = []

        def handler(request: ApplicationRequest) -> None:
            calls.append(request.params[b"REQUEST_URI"])
            request.write(b"Location: /app/again\r\n\r\n")

        app = MemoryApplicationEndpoint(handler, clock=Clock())
        site, _, _ = gatewayFor(app)
        client = HTTPClient(site)
        with capturedLogs() as logged:
            client.get(b"/app")
            app.flush()
        self.assertEqual(client.response().status, 500)
        self.assertTrue(client.response().complete)
        self.assertEqual(len(calls), 11)
        [event] = events(logged, "Internal redirect loop")
        self.assertEqual(event["count"], 10)
        self.assertEqual(event["location"], "/app/again")

    def test_redirectToMissing(self) -> None:
        """
        A redirect to a path the site does not have gives its 404.
        """

        def handler(request: ApplicationRequest) -> None:
            request.write(b"Location: /nowhere\r\n\r\n")

        app = MemoryApplicationEndpoint(handler, clock=Clock())
        site, _, _ = gatewayFor(app)
        client = HTTPClient(site)
        client.get(b"/app")
        app.flush()
        self.assertEqual(client.response().status, 404)


class BodyLimitTests(SynchronousTestCase):
    """
    L{GatewaySite} answers 413 to bodies over its limit, before anything
    reaches the application.
    """

    def site(
        self, limit: int | None
    ) -> tuple[GatewaySite, MemoryApplicationEndpoint, list[bytes]]:
        """
        A gateway site with body limit C{limit}.
        """
        app, _, bodies = recorder()
        root = Resource()
        root.putChild(b"app", FastCGIResource(makePool(app)))
        return GatewaySite(root, maxRequestBodySize=limit), app, bodies

    def test_declaredLengthOverLimit(self) -> None:
        """
        A Content-Length over the limit is refused with 413 at once (no
        C{100 Continue}), the connection is closed, nothing is spooled.
        """
        site, app, _ = self.site(10)
        client = HTTPClient(site)
        with capturedLogs() as logged:
            client.send(
                b"POST /app HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                b"Content-Length: 11\r\n\r\n"
            )
        response = client.response()
        self.assertEqual(response.status, 413)
        self.assertTrue(response.complete)
        self.assertNotIn(b"100 Continue", client.transport.value())
        self.assertTrue(client.closed)
        client.send(b"01234567890")
        app.flush()
        self.assertEqual(app.connectionsMade, 0)
        [event] = events(logged, "Refusing a request body")
        self.assertEqual(event["limit"], 10)
        self.assertEqual(event["length"], 11)

    def test_chunkedOverLimit(self) -> None:
        """
        A chunked body is refused as soon as it grows past the limit, with at
        most the limit spooled.
        """
        site, app, _ = self.site(10)
        client = HTTPClient(site)
        with capturedLogs():
            client.send(
                b"POST /app HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"8\r\n01234567\r\n"
            )
            request = client.protocol._channel.requests[0]
            self.assertEqual(request.content.tell(), 8)
            client.send(b"8\r\n89abcdef\r\n0\r\n\r\n")
        self.assertEqual(client.response().status, 413)
        self.assertTrue(client.closed)
        self.assertIsNone(request.content)
        app.flush()
        self.assertEqual(app.connectionsMade, 0)

    def test_withinLimit(self) -> None:
        """
        A body at the limit goes through.
        """
        site, app, bodies = self.site(10)
        client = HTTPClient(site)
        client.get(b"/app", method=b"POST", body=b"0123456789")
        app.flush()
        self.assertEqual(client.response().status, 200)
        self.assertEqual(bodies, [b"0123456789"])

    def test_noLimit(self) -> None:
        """
        L{None} means no limit.
        """
        site, app, bodies = self.site(None)
        client = HTTPClient(site)
        client.get(b"/app", method=b"POST", body=b"x" * 1000)
        app.flush()
        self.assertEqual(bodies, [b"x" * 1000])

    def test_requestFactoryOnPlainSite(self) -> None:
        """
        L{LimitedRequest} on a plain L{Site} uses its class limit, and
        L{GatewaySite} does not parse form bodies.
        """

        class Small(LimitedRequest):
            maxRequestBodySize = 4

        app, _, _ = recorder()
        root = Resource()
        root.putChild(b"app", FastCGIResource(makePool(app)))
        client = HTTPClient(Site(root, requestFactory=Small))
        with capturedLogs():
            client.get(b"/app", method=b"POST", body=b"12345")
        self.assertEqual(client.response().status, 413)
        self.assertFalse(GatewaySite(root)._parsePOSTFormSubmission)


def test_parseResponseHelper() -> None:
    """
    The test helper L{parseResponse} reads chunked, sized and open bodies.
    """
    chunked = parseResponse(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nX"
    )
    assert (chunked.body, chunked.complete, chunked.rest) == (b"abc", True, b"X")
    short = parseResponse(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
    assert (short.body, short.complete) == (b"ab", False)
    assert siteFor(Resource()).resource is not None
