# -*- test-case-name: tests.test_authorizer -*-
"""
Tests for L{txfastcgi.authorizer}: a FastCGI Authorizer in front of other
resources, driven through a real L{GatewaySite} over a L{StringTransport}
with in-memory and scripted applications.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import LogEvent, capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import pages
from twisted.web.resource import Resource
from twisted.web.server import Request

from tests.test_exchange import HTTPClient, HTTPResponse, events, makePool
from tests.test_resource import recorder
from txfastcgi.application import ApplicationRequest
from txfastcgi.authorizer import (
    AUTHORIZATION_ATTRIBUTE,
    Authorization,
    FastCGIAuthorizer,
    authorizationFromHead,
    authorizationOf,
    authorizedGatewayRequest,
)
from txfastcgi.cgienv import EnvironmentOptions, GatewayRequest
from txfastcgi.cgiresponse import ResponseHeadParser
from txfastcgi.resource import FastCGIResource
from txfastcgi.fcgi.constants import RecordType, Role
from txfastcgi.site import GatewaySite
from txfastcgi.testing import (
    Close,
    ExpectRequest,
    MemoryApplicationEndpoint,
    MemoryEndpoint,
    Pause,
    ScriptedApplicationEndpoint,
    Send,
    respond,
    stdout,
    streamContent,
)

GRANT = (
    b"Status: 200\r\n"
    b"Variable-USER_ROLE: admin\r\n"
    b"variable-Auth-Method: token\r\n"
    b"Variable-REMOTE_USER: alice\r\n"
    b"Variable-AUTH_TYPE: Bearer\r\n"
    b"X-Ignored: yes\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"ignored body"
)
"""An authorizer's grant with variables, another header and a body."""

DENY = (
    b"Status: 401 Unauthorized\r\n"
    b'WWW-Authenticate: Bearer realm="test"\r\n'
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<p>who are you?</p>"
)
"""An authorizer's refusal."""


class Leaf(Resource):
    """
    A leaf that records how it was reached and what it could read.

    @ivar seen: for each request: prepath, postpath, the body read from
        C{request.content}, and the request's L{Authorization}.
    """

    isLeaf = True

    def __init__(self, answer: bytes = b"served") -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.answer = answer
        self.seen: list[tuple[list[bytes], list[bytes], bytes, Authorization | None]] = []

    def render(self, request: Request) -> bytes:
        """
        Record the request and answer C{answer}.
        """
        r: Any = request
        self.seen.append(
            (list(r.prepath), list(r.postpath), r.content.read(), authorizationOf(request))
        )
        r.setHeader(b"Content-Type", b"text/plain")
        return self.answer


class Tree(Resource):
    """
    A non-leaf resource counting the children it was asked for (those not
    put there are 404).

    @ivar asked: the names asked for with C{getChild}.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.asked: list[bytes] = []

    def getChild(self, path: bytes, request: Any) -> Any:
        """
        Record C{path} and look it up as usual.
        """
        self.asked.append(path)
        return pages.notFound()


def authorizerApp(
    answer: bytes = GRANT,
) -> tuple[MemoryApplicationEndpoint, list[ApplicationRequest]]:
    """
    An in-memory authorizer answering C{answer} to every request.

    @return: the endpoint and the requests it got.
    """
    seen: list[ApplicationRequest] = []

    def handler(request: ApplicationRequest) -> None:
        seen.append(request)
        request.write(answer)

    return MemoryApplicationEndpoint(handler, clock=Clock()), seen


def siteWith(authorizer: FastCGIAuthorizer) -> tuple[GatewaySite, Leaf]:
    """
    A site with C{authorizer} at C{/app} and a login page at C{/login}.

    @return: the site and the login page.
    """
    root = Resource()
    root.putChild(b"app", authorizer)
    login = Leaf(b"please log in")
    root.putChild(b"login", login)
    return GatewaySite(root), login


def flushAll(*endpoints: MemoryEndpoint) -> None:
    """
    Flush every endpoint until none moves anything.
    """
    while any([endpoint.flush() for endpoint in endpoints]):
        pass


def fetch(
    site: GatewaySite,
    path: bytes,
    *endpoints: MemoryEndpoint,
    **kwargs: Any,
) -> tuple[HTTPResponse, list[LogEvent]]:
    """
    Send one request, flush the applications, and return the response and
    what was logged.
    """
    client = HTTPClient(site)
    with capturedLogs() as logged:
        client.get(path, **kwargs)
        flushAll(*endpoints)
    return client.response(), list(logged)


class GrantTests(SynchronousTestCase):
    """
    A 200 from the authorizer lets the wrapped resource serve the request.
    """

    def test_grantServesWrapped(self) -> None:
        """
        The authorizer is asked in the Authorizer role with the request's
        environment minus C{CONTENT_LENGTH}, C{PATH_INFO},
        C{PATH_TRANSLATED} and C{SCRIPT_NAME}; on 200 the wrapped resource's
        answer goes to the client and the authorizer's other headers and
        body do not.
        """
        app, seen = authorizerApp()
        leaf = Leaf()
        site, _ = siteWith(
            FastCGIAuthorizer(makePool(app), leaf, documentRoot=b"/srv/www")
        )
        response, _ = fetch(
            site,
            b"/app/a/b?x=1",
            app,
            method=b"POST",
            body=b"secret body",
            headers=[b"Authorization: Bearer t0k3n", b"Content-Type: text/plain"],
        )
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"served")
        self.assertEqual(response.header(b"X-Ignored"), [])
        self.assertEqual(response.header(b"Variable-USER_ROLE"), [])
        [request] = seen
        self.assertEqual(request.role, Role.AUTHORIZER)
        self.assertTrue(request.stdin.ended)
        self.assertEqual(request.stdin.bytesReceived, 0)
        params = request.params
        for absent in (b"CONTENT_LENGTH", b"PATH_INFO", b"PATH_TRANSLATED", b"SCRIPT_NAME"):
            self.assertNotIn(absent, params)
        self.assertEqual(params[b"REQUEST_METHOD"], b"POST")
        self.assertEqual(params[b"REQUEST_URI"], b"/app/a/b?x=1")
        self.assertEqual(params[b"QUERY_STRING"], b"x=1")
        self.assertEqual(params[b"CONTENT_TYPE"], b"text/plain")
        self.assertEqual(params[b"HTTP_AUTHORIZATION"], b"Bearer t0k3n")
        self.assertEqual(params[b"DOCUMENT_ROOT"], b"/srv/www")
        [(prepath, postpath, body, authorization)] = leaf.seen
        self.assertEqual((prepath, postpath), ([b"app"], [b"a", b"b"]))
        self.assertEqual(body, b"secret body")
        self.assertEqual(
            authorization,
            Authorization(
                ((b"USER_ROLE", b"admin"), (b"Auth-Method", b"token")), b"alice", b"Bearer"
            ),
        )

    def test_authorizationWithheldOnRequest(self) -> None:
        """
        With plain L{EnvironmentOptions} the Authorization header is
        withheld from the authorizer too (SPEC.md Decision 14).
        """
        app, seen = authorizerApp()
        site, _ = siteWith(
            FastCGIAuthorizer(makePool(app), Leaf(), environmentOptions=EnvironmentOptions())
        )
        response, _ = fetch(site, b"/app", app, headers=[b"Authorization: Basic eDp5"])
        self.assertEqual(response.status, 200)
        self.assertNotIn(b"HTTP_AUTHORIZATION", seen[0].params)

    def test_bodyNeverReachesAuthorizer(self) -> None:
        """
        A large (file-spooled) body is not sent to the authorizer: its STDIN
        is only the empty end record, BEGIN_REQUEST names the Authorizer
        role, and the wrapped resource still reads the whole body.
        """
        app = ScriptedApplicationEndpoint([ExpectRequest(), respond(b"Status: 200\r\n\r\n")])
        leaf = Leaf()
        site, _ = siteWith(FastCGIAuthorizer(makePool(app), leaf))
        body = bytes(range(256)) * 600
        response, _ = fetch(site, b"/app", app, method=b"POST", body=body)
        self.assertEqual(response.status, 200)
        begin = [r for r in app.received if r.type == RecordType.BEGIN_REQUEST]
        self.assertEqual(int.from_bytes(begin[0].content[:2], "big"), Role.AUTHORIZER)
        stdinRecords = [r for r in app.received if r.type == RecordType.STDIN]
        self.assertEqual([r.content for r in stdinRecords], [b""])
        self.assertEqual(streamContent(app.received, RecordType.DATA), b"")
        self.assertEqual(leaf.seen[0][2], body)

    def test_variablesReachResponder(self) -> None:
        """
        C{Variable-NAME} headers reach a FastCGI responder behind the
        authorizer as C{NAME} (sanitised), C{Variable-REMOTE_USER} and
        C{Variable-AUTH_TYPE} as C{REMOTE_USER} and C{AUTH_TYPE}; the
        responder gets its usual C{SCRIPT_NAME}/C{PATH_INFO} and the whole
        body.
        """
        authorizer, _ = authorizerApp()
        responder, params, bodies = recorder(b"Content-Type: text/plain\r\n\r\nresponder")
        site, _ = siteWith(
            FastCGIAuthorizer(
                makePool(authorizer),
                FastCGIResource(makePool(responder), documentRoot=b"/srv"),
            )
        )
        response, _ = fetch(
            site, b"/app/x/y", authorizer, responder, method=b"POST", body=b"payload"
        )
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"responder")
        [env] = params
        self.assertEqual(env[b"USER_ROLE"], b"admin")
        self.assertEqual(env[b"Auth_Method"], b"token")
        self.assertEqual(env[b"REMOTE_USER"], b"alice")
        self.assertEqual(env[b"AUTH_TYPE"], b"Bearer")
        self.assertEqual(env[b"SCRIPT_NAME"], b"/app")
        self.assertEqual(env[b"PATH_INFO"], b"/x/y")
        self.assertEqual(env[b"PATH_TRANSLATED"], b"/srv/x/y")
        self.assertEqual(env[b"CONTENT_LENGTH"], b"7")
        self.assertEqual(bodies, [b"payload"])

    def test_serverVariablesNotOverridden(self) -> None:
        """
        A C{Variable-} naming a variable the server owns does not override
        it.
        """
        authorizer, _ = authorizerApp(
            b"Variable-SCRIPT_NAME: /evil\r\nVariable-HTTPS: on\r\n\r\n"
        )
        responder, params, _ = recorder(b"Content-Type: text/plain\r\n\r\nresponder")
        site, _ = siteWith(
            FastCGIAuthorizer(makePool(authorizer), FastCGIResource(makePool(responder)))
        )
        response, _ = fetch(site, b"/app", authorizer, responder)
        self.assertEqual(response.status, 200)
        self.assertEqual(params[0][b"SCRIPT_NAME"], b"/app")
        self.assertNotIn(b"HTTPS", params[0])

    def test_wrappedTreeTraversal(self) -> None:
        """
        A wrapped tree is traversed from the authorizer's position after
        the grant, as if it were mounted there; a missing child is 404.
        """
        app, _ = authorizerApp()
        tree = Tree()
        leaf = Leaf()
        tree.putChild(b"docs", leaf)
        site, _ = siteWith(FastCGIAuthorizer(makePool(app), tree))
        response, _ = fetch(site, b"/app/docs/a/b", app)
        self.assertEqual(response.body, b"served")
        self.assertEqual(leaf.seen[0][:2], ([b"app", b"docs"], [b"a", b"b"]))
        response, _ = fetch(site, b"/app/missing", app)
        self.assertEqual(response.status, 404)
        self.assertEqual(tree.asked, [b"missing"])

    def test_unsafePathRefused(self) -> None:
        """
        Dot segments and encoded slashes under the authorizer are answered
        404 and never reach the authorizer.
        """
        app, seen = authorizerApp()
        site, _ = siteWith(FastCGIAuthorizer(makePool(app), Leaf()))
        for path in [b"/app/../x", b"/app/a%2Fb", b"/app/./x"]:
            response, _ = fetch(site, path, app)
            self.assertEqual(response.status, 404, path)
        self.assertEqual(seen, [])

    def test_nestedAuthorizersMerge(self) -> None:
        """
        Two authorizers in a row: both are asked, and the inner one's
        variables come after (and win over) the outer one's.
        """
        outer, _ = authorizerApp(b"Variable-A: 1\r\nVariable-B: outer\r\nVariable-REMOTE_USER: bob\r\n\r\n")
        inner, innerSeen = authorizerApp(b"Variable-B: inner\r\n\r\n")
        leaf = Leaf()
        site, _ = siteWith(
            FastCGIAuthorizer(makePool(outer), FastCGIAuthorizer(makePool(inner), leaf))
        )
        response, _ = fetch(site, b"/app", outer, inner)
        self.assertEqual(response.status, 200)
        self.assertEqual(innerSeen[0].params[b"A"], b"1")
        self.assertEqual(innerSeen[0].params[b"REMOTE_USER"], b"bob")
        authorization = leaf.seen[0][3]
        assert authorization is not None
        self.assertEqual(
            authorization.variables, ((b"A", b"1"), (b"B", b"outer"), (b"B", b"inner"))
        )
        self.assertEqual(authorization.remoteUser, b"bob")


class DenyTests(SynchronousTestCase):
    """
    Any other answer is the authorizer's own response, and the wrapped
    resource is not asked.
    """

    def denied(self, answer: bytes, method: bytes = b"GET") -> tuple[HTTPResponse, Tree, Leaf]:
        """
        Send a request to an authorizer answering C{answer} in front of a
        tree.

        @return: the response, the tree and the login page.
        """
        app, _ = authorizerApp(answer)
        tree = Tree()
        site, login = siteWith(FastCGIAuthorizer(makePool(app), tree))
        response, _ = fetch(site, b"/app/doc", app, method=method)
        return response, tree, login

    def test_unauthorized(self) -> None:
        """
        A 401 goes to the client with its C{WWW-Authenticate} and body.
        """
        response, tree, _ = self.denied(DENY)
        self.assertEqual(response.status, 401)
        self.assertEqual(response.reason, b"Unauthorized")
        self.assertEqual(response.header(b"WWW-Authenticate"), [b'Bearer realm="test"'])
        self.assertEqual(response.header(b"Content-Type"), [b"text/html"])
        self.assertEqual(response.body, b"<p>who are you?</p>")
        self.assertTrue(response.complete)
        self.assertEqual(tree.asked, [])

    def test_forbiddenWithVariables(self) -> None:
        """
        A 403 goes to the client with all its headers, C{Variable-} ones
        included; nothing is granted.
        """
        response, tree, _ = self.denied(
            b"Status: 403\r\nVariable-X: y\r\nContent-Type: text/plain\r\n\r\nno"
        )
        self.assertEqual(response.status, 403)
        self.assertEqual(response.header(b"Variable-X"), [b"y"])
        self.assertEqual(response.body, b"no")
        self.assertEqual(tree.asked, [])

    def test_headDenied(self) -> None:
        """
        A denied HEAD request gets the status and headers without a body.
        """
        response, tree, _ = self.denied(DENY, method=b"HEAD")
        self.assertEqual(response.status, 401)
        self.assertEqual(response.rest, b"")
        self.assertEqual(tree.asked, [])

    def test_clientRedirect(self) -> None:
        """
        A redirect to a full URL goes to the client as a 302 with a
        generated body.
        """
        response, tree, _ = self.denied(b"Location: https://login.example/?next=x\r\n\r\n")
        self.assertEqual(response.status, 302)
        self.assertEqual(response.header(b"Location"), [b"https://login.example/?next=x"])
        self.assertIn(b"login.example", response.body)
        self.assertEqual(tree.asked, [])

    def test_localRedirect(self) -> None:
        """
        A local redirect serves the other path internally, as a GET without
        the body; the wrapped resource is not asked.
        """
        app, _ = authorizerApp(b"Location: /login?from=app\r\n\r\n")
        tree = Tree()
        site, login = siteWith(FastCGIAuthorizer(makePool(app), tree))
        response, _ = fetch(site, b"/app/doc", app, method=b"POST", body=b"data")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"please log in")
        self.assertEqual(login.seen[0][:3], ([b"login"], [], b""))
        self.assertEqual(tree.asked, [])


class FailureTests(SynchronousTestCase):
    """
    An authorizer that fails grants nothing; the answer follows SPEC.md
    Decision 8.
    """

    def answer(self, app: MemoryEndpoint) -> tuple[HTTPResponse, Tree, list[LogEvent]]:
        """
        Send C{GET /app/doc} through an authorizer served by C{app}.
        """
        tree = Tree()
        site, _ = siteWith(FastCGIAuthorizer(makePool(app), tree))
        response, logged = fetch(site, b"/app/doc", app)
        self.assertTrue(response.complete)
        return response, tree, logged

    def test_unreachable(self) -> None:
        """
        An authorizer that cannot be reached gives 503.
        """
        app, _ = authorizerApp()
        app.connectError = ConnectionRefusedError("no")
        response, tree, logged = self.answer(app)
        self.assertEqual(response.status, 503)
        self.assertEqual(tree.asked, [])
        self.assertTrue(events(logged, "(answering {status})"))

    def test_malformed(self) -> None:
        """
        A malformed response head gives 502.
        """
        app = ScriptedApplicationEndpoint(
            [ExpectRequest(), Send(stdout(b"Status: 200\r\nno colon here\r\n\r\n")), Pause()]
        )
        response, tree, _ = self.answer(app)
        self.assertEqual(response.status, 502)
        self.assertEqual(tree.asked, [])

    def test_diedAfterGrant(self) -> None:
        """
        An authorizer that sends a 200 head but dies before END_REQUEST
        grants nothing: 502, logged.
        """
        app = ScriptedApplicationEndpoint(
            [ExpectRequest(), Send(stdout(b"Status: 200\r\nVariable-X: y\r\n\r\n")), Close()]
        )
        response, tree, logged = self.answer(app)
        self.assertEqual(response.status, 502)
        self.assertEqual(tree.asked, [])
        [event] = events(logged, "failed after granting")
        self.assertEqual(event["uri"], "/app/doc")

    def test_timeout(self) -> None:
        """
        An authorizer that does not answer in time gives 504.
        """
        app = ScriptedApplicationEndpoint([ExpectRequest()])
        tree = Tree()
        site, _ = siteWith(
            FastCGIAuthorizer(makePool(app, responseTimeout=5), tree)
        )
        client = HTTPClient(site)
        with capturedLogs():
            client.get(b"/app/doc")
            app.flush()
            app.advance(6)
        self.assertEqual(client.response().status, 504)
        self.assertEqual(tree.asked, [])

    def test_clientGoneWhileAsking(self) -> None:
        """
        A client that leaves while the authorizer thinks aborts the
        authorizer's request; the wrapped resource is never asked.
        """
        app = ScriptedApplicationEndpoint([ExpectRequest()])
        tree = Tree()
        site, _ = siteWith(FastCGIAuthorizer(makePool(app), tree))
        client = HTTPClient(site)
        with capturedLogs():
            client.get(b"/app/doc")
            app.flush()
            client.disconnect()
            app.flush()
        aborts = [r for r in app.received if r.type == RecordType.ABORT_REQUEST]
        self.assertEqual(len(aborts), 1)
        self.assertEqual(tree.asked, [])


class AuthorizationTests(SynchronousTestCase):
    """
    The pure parts: reading variables from a head, merging and applying
    them.
    """

    def test_fromHead(self) -> None:
        """
        Only C{Variable-} headers count (prefix in any case); an empty name
        is skipped; C{REMOTE_USER} and C{AUTH_TYPE} are matched in any case
        and with C{-} or C{_}.
        """
        head = ResponseHeadParser().feed(
            b"VARIABLE-One: 1\r\nVariable-: empty\r\nOther: x\r\n"
            b"Variable-remote-user: carol\r\nVariable-Auth_Type: Basic\r\n\r\n"
        )
        assert head is not None
        self.assertEqual(
            authorizationFromHead(head),
            Authorization(((b"One", b"1"),), b"carol", b"Basic"),
        )

    def test_applyToIsIdempotent(self) -> None:
        """
        Applying an authorization adds its variables after the extra
        variables once, and sets the user and method.
        """
        gateway = GatewayRequest(
            method=b"GET",
            rawURI=b"/",
            scriptName=b"",
            serverName=b"h",
            serverAddress=b"127.0.0.1",
            serverPort=80,
            remoteAddress=b"127.0.0.1",
            extraVariables=((b"S", b"1"),),
        )
        authorization = Authorization(((b"V", b"2"),), b"dave", None)
        once = authorization.applyTo(gateway)
        self.assertEqual(once.extraVariables, ((b"S", b"1"), (b"V", b"2")))
        self.assertEqual((once.remoteUser, once.authType), (b"dave", None))
        self.assertEqual(authorization.applyTo(once), once)

    def test_requestStorage(self) -> None:
        """
        L{authorizationOf} reads the attribute named
        L{AUTHORIZATION_ATTRIBUTE}; L{authorizedGatewayRequest} leaves a
        request without one alone.
        """

        class Bare:
            pass

        request: Any = Bare()
        self.assertIsNone(authorizationOf(request))
        gateway = GatewayRequest(
            method=b"GET",
            rawURI=b"/",
            scriptName=b"",
            serverName=b"h",
            serverAddress=b"127.0.0.1",
            serverPort=80,
            remoteAddress=b"127.0.0.1",
        )
        self.assertIs(authorizedGatewayRequest(request, gateway), gateway)
        setattr(request, AUTHORIZATION_ATTRIBUTE, Authorization(remoteUser=b"e"))
        self.assertEqual(authorizedGatewayRequest(request, gateway).remoteUser, b"e")

