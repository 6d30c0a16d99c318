# -*- test-case-name: tests.test_gateway -*-
"""
Tests for L{txfastcgi.gateway}: L{GatewayResource} behind a real
L{GatewaySite} over a L{StringTransport}, with in-memory FastCGI
applications, a document tree built in a temporary directory and the
configuration read from an httpd.conf written for the test.  One test runs
a real CGI script under pytest-twisted.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet.error import ProcessDone
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.test_exchange import HTTPClient, events, makePool
from txfastcgi.application import ApplicationRequest
from txfastcgi.config import readConfig
from txfastcgi.gateway import GatewayResource, routeOf
from txfastcgi.routing import RouteKind
from txfastcgi.site import GatewaySite
from txfastcgi.testing import MemoryApplicationEndpoint

CONFIG = """\
ServerRoot {root}
DocumentRoot {root}/docs
ScriptAlias /cgi-bin/ {root}/cgi-bin/
Alias /data/ {root}/data/
SetEnv GLOBAL yes
PassEnv HOME
AppClass {root}/docs/examples/echo -pass-header Authorization
<Location /examples/echo>
SetHandler fastcgi-script
SetEnv STATE_LOC here
</Location>
<Location /examples/echo/small>
LimitRequestBody 5
</Location>
AddType application/x-httpd-php .php
Action application/x-httpd-php /php-fpm virtual
ExternalAppClass {root}/docs/php-fpm -socket php.sock
<Location /php-fpm>
SetHandler fastcgi-script
</Location>
ExternalAppClass {root}/auth -socket auth.sock
ExternalAppClass {root}/docs/private/app -socket private.sock
<Location /private>
FastCgiAuthorizer {root}/auth
</Location>
<Location /private/app>
SetHandler fastcgi-script
</Location>
ExternalAppClass {root}/docs/nopool -socket nopool.sock
<Location /nopool>
SetHandler fastcgi-script
</Location>
<Directory {root}/docs/listed>
Options +Indexes
</Directory>
"""

PAGE = b"0123456789abcdef"


class Tree:
    """
    A document tree, its configuration, in-memory applications and a site.

    @ivar root: the temporary directory.
    @ivar params: the params each application saw, by name.
    @ivar bodies: the bodies each application read, by name.
    @ivar spawned: the C{spawnProcess} calls made for CGI scripts.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        docs = root / "docs"
        for name in ("examples", "private", "dir", "empty", "listed"):
            (docs / name).mkdir(parents=True)
        (root / "cgi-bin").mkdir()
        (root / "data").mkdir()
        (docs / "examples" / "echo").write_bytes(b"#!/bin/sh\n")
        os.chmod(docs / "examples" / "echo", 0o755)
        (docs / "page.html").write_bytes(PAGE)
        (docs / "page.php").write_bytes(b"<?php ?>")
        (docs / "dir" / "index.html").write_bytes(b"index")
        (docs / "listed" / "a.txt").write_bytes(b"a")
        (root / "cgi-bin" / "printenv").write_bytes(b"#!/bin/sh\n")
        os.chmod(root / "cgi-bin" / "printenv", 0o755)
        (root / "httpd.conf").write_text(CONFIG.format(root=root))
        self.config = readConfig(str(root / "httpd.conf"), environ={"HOME": "/home/www"})
        self.params: dict[str, list[dict[bytes, bytes]]] = {}
        self.bodies: dict[str, list[bytes]] = {}
        self.endpoints: dict[str, MemoryApplicationEndpoint] = {}
        self.authorizerAnswer = b"Status: 200\r\nVariable-USER_ROLE: admin\r\n\r\n"
        pools = {}
        for name, path in [
            ("echo", f"{root}/docs/examples/echo"),
            ("php", f"{root}/docs/php-fpm"),
            ("auth", f"{root}/auth"),
            ("private", f"{root}/docs/private/app"),
        ]:
            endpoint = MemoryApplicationEndpoint(self.handler(name), clock=Clock())
            self.endpoints[name] = endpoint
            pools[path] = makePool(endpoint)
        self.spawned: list[tuple[Any, ...]] = []
        self.resource = GatewayResource(
            self.config, pools=pools, reactor=self, environ={"PATH": "/bin"}
        )
        self.site = GatewaySite(self.resource)

    def spawnProcess(self, *args: Any, **kwargs: Any) -> None:
        """
        Record a CGI script's spawn (this object is the reactor).
        """
        self.spawned.append(args)

    def handler(self, name: str) -> Any:
        """
        An application recording params and body; the authorizer answers
        C{authorizerAnswer}.
        """
        params = self.params.setdefault(name, [])
        bodies = self.bodies.setdefault(name, [])

        def handle(request: ApplicationRequest) -> Any:
            params.append(dict(request.params))
            chunks: list[bytes] = []

            def more(data: bytes) -> Any:
                chunks.append(data)
                if request.stdin.ended:
                    bodies.append(b"".join(chunks))
                    if name == "auth":
                        request.write(self.authorizerAnswer)
                    elif request.params.get(b"PATH_INFO") == b"/go":
                        request.write(b"Location: /page.php?from=echo\r\n\r\n")
                    else:
                        request.write(b"Content-Type: text/plain\r\n\r\n" + name.encode())
                    return None
                return request.stdin.read().addCallback(more)

            return request.stdin.read().addCallback(more)

        return handle

    def get(self, path: bytes, **kwargs: Any) -> HTTPClient:
        """
        Send one request and let the applications answer.
        """
        client = HTTPClient(self.site)
        client.get(path, **kwargs)
        for _ in range(3):
            for endpoint in self.endpoints.values():
                endpoint.flush()
        pumpPullProducer(client)
        return client


def pumpPullProducer(client: HTTPClient) -> None:
    """
    Run the pull producer a static file registered (the channel wraps it in
    a C{_PullToPush} driven by the global cooperator, which does not run in
    a L{SynchronousTestCase}) until it unregisters.
    """
    channel = client.protocol._channel
    for _ in range(1000):
        producer = getattr(channel, "_requestProducer", None)
        if producer is None or getattr(channel, "_requestProducerStreaming", True):
            return
        producer._producer.resumeProducing()


class GatewayTests(SynchronousTestCase):
    """
    L{GatewayResource} serves each kind of route.
    """

    def setUp(self) -> None:
        self.tree = Tree(Path(tempfile.mkdtemp()).resolve())
        self.root = str(self.tree.root)

    def tearDown(self) -> None:
        import shutil

        shutil.rmtree(self.tree.root, ignore_errors=True)

    def test_fastcgiEnvironment(self) -> None:
        """
        A FastCGI route reaches its application with the path variables of
        SPEC.md section 8's table, the merged SetEnv/PassEnv variables and a
        C{-pass-header} header.
        """
        client = self.tree.get(
            b"/examples/echo/a/b?x=1", headers=[b"Authorization: Basic eA=="]
        )
        self.assertEqual(client.response().status, 200)
        self.assertEqual(client.response().body, b"echo")
        env = self.tree.params["echo"][0]
        expected = {
            b"SCRIPT_FILENAME": f"{self.root}/docs/examples/echo",
            b"SCRIPT_NAME": "/examples/echo",
            b"PATH_INFO": "/a/b",
            b"PATH_TRANSLATED": f"{self.root}/docs/a/b",
            b"QUERY_STRING": "x=1",
            b"REQUEST_URI": "/examples/echo/a/b?x=1",
            b"DOCUMENT_ROOT": f"{self.root}/docs",
            b"STATE_LOC": "here",
            b"GLOBAL": "yes",
            b"HOME": "/home/www",
            b"HTTP_AUTHORIZATION": "Basic eA==",
        }
        for name, value in expected.items():
            self.assertEqual(env.get(name), value.encode(), name)
        self.assertNotIn(b"REDIRECT_STATUS", env)

    def test_pathTranslatedThroughAlias(self) -> None:
        """
        C{PATH_TRANSLATED} maps the path info through the aliases, not
        just onto the document root.
        """
        self.tree.get(b"/examples/echo/data/x%20y")
        env = self.tree.params["echo"][0]
        self.assertEqual(env[b"PATH_INFO"], b"/data/x y")
        self.assertEqual(env[b"PATH_TRANSLATED"], f"{self.root}/data/x y".encode())

    def test_action(self) -> None:
        """
        An Action sends the request to the action's application as an
        internal redirect: C{SCRIPT_NAME} is the action URL, C{PATH_INFO}
        and C{PATH_TRANSLATED} name the document, C{REDIRECT_*} are set.
        """
        client = self.tree.get(b"/page.php?q=1")
        self.assertEqual(client.response().body, b"php")
        env = self.tree.params["php"][0]
        expected = {
            b"SCRIPT_NAME": "/php-fpm",
            b"PATH_INFO": "/page.php",
            b"PATH_TRANSLATED": f"{self.root}/docs/page.php",
            b"SCRIPT_FILENAME": f"{self.root}/docs/php-fpm",
            b"REQUEST_URI": "/page.php?q=1",
            b"REDIRECT_URL": "/page.php",
            b"REDIRECT_STATUS": "200",
            b"REDIRECT_QUERY_STRING": "q=1",
        }
        for name, value in expected.items():
            self.assertEqual(env.get(name), value.encode(), name)

    def test_internalRedirect(self) -> None:
        """
        An application's local redirect is routed again by the gateway (here
        to an Action), with the redirect's variables.
        """
        client = self.tree.get(b"/examples/echo/go")
        self.assertEqual(client.response().body, b"php")
        env = self.tree.params["php"][0]
        self.assertEqual(env[b"PATH_INFO"], b"/page.php")
        self.assertEqual(env[b"QUERY_STRING"], b"from=echo")
        self.assertEqual(env[b"REDIRECT_URL"], b"/page.php")
        self.assertEqual(env[b"REDIRECT_STATUS"], b"200")

    def test_staticFile(self) -> None:
        """
        A static file is served with its type, and honours Range.
        """
        client = self.tree.get(b"/page.html")
        response = client.response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, PAGE)
        self.assertEqual(response.header(b"content-type"), [b"text/html"])
        client = self.tree.get(b"/page.html", headers=[b"Range: bytes=2-5"])
        response = client.response()
        self.assertEqual(response.status, 206)
        self.assertEqual(response.body, PAGE[2:6])

    def test_staticConditional(self) -> None:
        """
        A static file not modified since If-Modified-Since is a 304.
        """
        client = self.tree.get(
            b"/page.html", headers=[b"If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT"]
        )
        self.assertEqual(client.response().status, 304)

    def test_directory(self) -> None:
        """
        A directory redirects to add its slash, then serves its index; one
        without an index is 403, unless Options Indexes lists it.
        """
        response = self.tree.get(b"/dir?a=1").response()
        self.assertEqual(response.status, 301)
        self.assertEqual(response.header(b"location"), [b"/dir/?a=1"])
        response = self.tree.get(b"/dir/").response()
        self.assertEqual((response.status, response.body), (200, b"index"))
        self.assertEqual(self.tree.get(b"/empty/").response().status, 403)
        response = self.tree.get(b"/listed/").response()
        self.assertEqual(response.status, 200)
        self.assertIn(b"a.txt", response.body)

    def test_notFoundAndForbidden(self) -> None:
        """
        Missing files, unsafe paths and a FastCGI path without an
        application are 404, logged with the reason; a ScriptAlias
        directory is 403.
        """
        with capturedLogs() as logged:
            self.assertEqual(self.tree.get(b"/missing.html").response().status, 404)
            self.assertEqual(self.tree.get(b"/%2e%2e/etc/passwd").response().status, 404)
            self.assertEqual(self.tree.get(b"/examples%2Fecho").response().status, 404)
            self.assertEqual(self.tree.get(b"/cgi-bin/").response().status, 403)
        self.assertTrue(events(logged, "Not found"))
        self.assertTrue(events(logged, "Forbidden"))

    def test_missingPool(self) -> None:
        """
        An application without a pool (a wiring mistake) is a logged 500.
        """
        with capturedLogs() as logged:
            self.assertEqual(self.tree.get(b"/nopool").response().status, 500)
        self.assertTrue(events(logged, "No connection pool"))

    def test_authorizerGrants(self) -> None:
        """
        A FastCgiAuthorizer section asks the authorizer first; a grant lets
        the application serve the request, with the granted variables.
        """
        client = self.tree.get(b"/private/app/x")
        self.assertEqual(client.response().body, b"private")
        self.assertEqual(len(self.tree.params["auth"]), 1)
        env = self.tree.params["private"][0]
        self.assertEqual(env[b"USER_ROLE"], b"admin")
        self.assertEqual(env[b"SCRIPT_NAME"], b"/private/app")
        self.assertEqual(env[b"PATH_INFO"], b"/x")

    def test_authorizerDenies(self) -> None:
        """
        An authorizer's refusal is the answer; the application is not asked.
        """
        self.tree.authorizerAnswer = b"Status: 403\r\nContent-Type: text/plain\r\n\r\nno"
        client = self.tree.get(b"/private/app")
        self.assertEqual(client.response().status, 403)
        self.assertEqual(self.tree.params["private"], [])

    def test_sectionBodyLimit(self) -> None:
        """
        A LimitRequestBody in the route's sections answers 413 for a longer
        body, before the application is asked; a shorter body goes through.
        """
        with capturedLogs() as logged:
            client = self.tree.get(b"/examples/echo/small", method=b"POST", body=b"0123456789")
        self.assertEqual(client.response().status, 413)
        self.assertEqual(self.tree.params["echo"], [])
        self.assertTrue(events(logged, "LimitRequestBody"))
        client = self.tree.get(b"/examples/echo/small", method=b"POST", body=b"012")
        self.assertEqual(client.response().status, 200)
        self.assertEqual(self.tree.bodies["echo"], [b"012"])

    def test_cgiSpawn(self) -> None:
        """
        A CGI route spawns the script through C{/bin/sh} in its directory,
        with the server's working directory (so posix_spawnp can be used),
        the cgienv environment (path info included, STYLE.md P19) and no
        server environment beyond PATH; its output is the response.
        """
        client = HTTPClient(self.tree.site)
        client.get(b"/cgi-bin/printenv/extra/path?k=v")
        [(protocol, executable, args, env, path)] = self.tree.spawned
        script = f"{self.root}/cgi-bin/printenv"
        self.assertEqual(executable, "/bin/sh")
        self.assertEqual(args[3:], [f"{self.root}/cgi-bin", script])
        self.assertIsNone(path)
        self.assertEqual(env[b"PATH_INFO"], b"/extra/path")
        self.assertEqual(env[b"SCRIPT_NAME"], b"/cgi-bin/printenv")
        self.assertEqual(env[b"PATH_TRANSLATED"], f"{self.root}/docs/extra/path".encode())
        self.assertEqual(env[b"SCRIPT_FILENAME"], script.encode())
        self.assertEqual(env[b"QUERY_STRING"], b"k=v")
        self.assertEqual(env[b"PATH"], b"/bin")
        self.assertEqual(env[b"GLOBAL"], b"yes")
        self.assertNotIn(b"HOME_DIRECTORY_LEAK", env)
        protocol.outReceived(b"Content-Type: text/plain\r\n\r\nfrom cgi")
        protocol.processEnded(Failure(ProcessDone(0)))
        response = client.response()
        self.assertEqual((response.status, response.body), (200, b"from cgi"))

    def test_cgiIsindexArguments(self) -> None:
        """
        A query without C{=} becomes the script's arguments (the ISINDEX
        convention, as mod_cgi).
        """
        HTTPClient(self.tree.site).get(b"/cgi-bin/printenv?a+b%20c")
        [(_, _, args, _, _)] = self.tree.spawned
        self.assertEqual(args[5:], [b"a", b"b c"])

    def test_routeOnRequest(self) -> None:
        """
        The route serving a request is kept on it (L{routeOf}).
        """
        client = HTTPClient(self.tree.site)
        client.get(b"/cgi-bin/printenv")
        route = routeOf(client.currentRequest())
        self.assertIsNotNone(route)
        assert route is not None
        self.assertIs(route.kind, RouteKind.CGI)


@pytest_twisted.ensureDeferred
async def test_cgiScriptRuns(tmp_path: Path) -> None:
    """
    A real CGI script runs in its own directory, gets its path info, and
    its output becomes the response (bounded by a timeout).
    """
    from twisted.internet import reactor

    root = tmp_path.resolve()
    (root / "docs").mkdir()
    (root / "cgi-bin").mkdir()
    script = root / "cgi-bin" / "show"
    script.write_text(
        "#!/bin/sh\n"
        "printf 'Content-Type: text/plain\\r\\n\\r\\n'\n"
        'echo "PATH_INFO=$PATH_INFO"\n'
        'echo "PWD=$(pwd)"\n'
        "cat\n"
    )
    os.chmod(script, 0o755)
    (root / "httpd.conf").write_text(
        f"ServerRoot {root}\nDocumentRoot {root}/docs\nScriptAlias /cgi-bin/ {root}/cgi-bin/\n"
    )
    config = readConfig(str(root / "httpd.conf"), environ={})
    site = GatewaySite(GatewayResource(config, pools={}, reactor=reactor))
    client = HTTPClient(site)
    client.get(b"/cgi-bin/show/a/b", method=b"POST", body=b"posted")
    finished = client.currentRequest().notifyFinish()
    finished.addTimeout(10, reactor)
    await finished
    response = client.response()
    assert response.status == 200
    assert response.body == (
        f"PATH_INFO=/a/b\nPWD={root}/cgi-bin\nposted".encode()
    )
