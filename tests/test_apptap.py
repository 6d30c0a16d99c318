"""
Tests for L{txfastcgi.apptap} (C{twistd fastcgi-app}) and its plugin.
"""

from __future__ import annotations

import ast
import os
import socket
import tempfile
from pathlib import Path

from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from tests.apps import wsgi_apps
from txfastcgi.apptap import Options, loadObject, makeService
from txfastcgi.listen import FastCGIApplicationService
from txfastcgi.wsgi import WSGIHandler

PLUGIN = Path(__file__).resolve().parent.parent / "twisted" / "plugins" / "txfastcgi_app_plugin.py"


class OptionsTests(SynchronousTestCase):
    """
    Parsing the command line.
    """

    def setUp(self) -> None:
        """
        No FCGI_WEB_SERVER_ADDRS unless a test sets it.
        """
        environ = dict(os.environ)
        environ.pop("FCGI_WEB_SERVER_ADDRS", None)
        self.patch(os, "environ", environ)

    def parse(self, *argv: str) -> Options:
        """
        Parse C{argv}.
        """
        options = Options()
        options.parseOptions(list(argv))
        return options

    def test_wsgiAndPort(self) -> None:
        """
        C{--wsgi module:name --port N} loads the application and keeps the
        defaults.
        """
        options = self.parse("--wsgi", "tests.apps.wsgi_apps:echo", "--port", "9000")
        self.assertIs(options["application"], wsgi_apps.echo)
        self.assertEqual(options["port"], 9000)
        self.assertEqual(options["interface"], "127.0.0.1")
        self.assertEqual(options["threads"], 10)
        self.assertIsNone(options["webServerAddrs"])

    def test_socketMode(self) -> None:
        """
        C{--socket-mode} is octal.
        """
        options = self.parse("--handler", "tests.apps.wsgi_apps:handler", "--socket", "/tmp/x.sock", "--socket-mode", "660")
        self.assertEqual(options["socket-mode"], 0o660)

    def test_errors(self) -> None:
        """
        Missing or conflicting options, an unimportable or non-callable
        object, and a bad FCGI_WEB_SERVER_ADDRS are usage errors.
        """
        for argv in [
            ["--port", "1"],
            ["--wsgi", "tests.apps.wsgi_apps:echo", "--handler", "tests.apps.wsgi_apps:handler", "--port", "1"],
            ["--wsgi", "tests.apps.wsgi_apps:echo", "--port", "1", "--socket", "/tmp/s"],
            ["--wsgi", "no.such.module:app", "--port", "1"],
            ["--wsgi", "tests.apps.wsgi_apps:BLOCK", "--port", "1"],
            ["--wsgi", "tests.apps.wsgi_apps:echo", "--port", "1", "--threads", "0"],
        ]:
            self.assertRaises(UsageError, self.parse, *argv)
        os.environ["FCGI_WEB_SERVER_ADDRS"] = "not-an-address"
        self.assertRaises(UsageError, self.parse, "--wsgi", "tests.apps.wsgi_apps:echo", "--port", "1")

    def test_webServerAddrs(self) -> None:
        """
        FCGI_WEB_SERVER_ADDRS from the environment reaches the options.
        """
        os.environ["FCGI_WEB_SERVER_ADDRS"] = "127.0.0.1,10.1.2.3"
        options = self.parse("--wsgi", "tests.apps.wsgi_apps:echo", "--port", "1")
        self.assertEqual(options["webServerAddrs"], frozenset({"127.0.0.1", "10.1.2.3"}))

    def test_noListeningSocket(self) -> None:
        """
        Without --socket/--port/--fd, fd 0 must be a listening socket; a
        --fd that is not one is refused too.
        """
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        saved = os.dup(0)
        self.addCleanup(os.close, saved)
        os.dup2(r, 0)
        self.addCleanup(os.dup2, saved, 0)
        self.assertRaises(UsageError, self.parse, "--wsgi", "tests.apps.wsgi_apps:echo")
        self.assertRaises(UsageError, self.parse, "--wsgi", "tests.apps.wsgi_apps:echo", "--fd", str(w))

    def test_inheritedFd(self) -> None:
        """
        A listening socket on fd 0 is found without options and duplicated
        (so twistd's daemonising cannot replace it); --fd N adopts fd N.
        """
        directory = tempfile.mkdtemp(prefix="txf-tap-")
        self.addCleanup(os.rmdir, directory)
        path = os.path.join(directory, "s.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(1)
        self.addCleanup(os.unlink, path)
        self.addCleanup(sock.close)
        saved = os.dup(0)
        self.addCleanup(os.close, saved)
        os.dup2(sock.fileno(), 0)
        self.addCleanup(os.dup2, saved, 0)
        options = self.parse("--wsgi", "tests.apps.wsgi_apps:echo")
        self.assertGreater(options["fd"], 2)
        self.addCleanup(os.close, options["fd"])
        options = self.parse("--wsgi", "tests.apps.wsgi_apps:echo", "--fd", str(sock.fileno()))
        self.assertEqual(options["fd"], sock.fileno())

    def test_loadObject(self) -> None:
        """
        L{loadObject} takes C{module:name} and dotted names.
        """
        self.assertIs(loadObject("tests.apps.wsgi_apps:echo"), wsgi_apps.echo)
        self.assertIs(loadObject("tests.apps.wsgi_apps.echo"), wsgi_apps.echo)
        self.assertRaises(UsageError, loadObject, "tests.apps.wsgi_apps:")


class MakeServiceTests(SynchronousTestCase):
    """
    L{makeService} wiring.
    """

    def test_wsgiOverTCP(self) -> None:
        """
        A WSGI application gets a L{WSGIHandler}, the limits reach the
        factory, and the service listens on loopback TCP.
        """
        options = Options()
        options.parseOptions(
            ["--wsgi", "tests.apps.wsgi_apps:echo", "--port", "0", "--max-conns", "7", "--max-reqs", "9", "--no-multiplex"]
        )
        reactor = MemoryReactorClock()
        service = makeService(options, reactor)
        self.assertIsInstance(service, FastCGIApplicationService)
        self.assertIsInstance(service.factory.handler, WSGIHandler)
        self.assertEqual(
            (service.factory.maxConns, service.factory.maxReqs, service.factory.multiplex), (7, 9, False)
        )
        service.startService()
        [(port, factory, backlog, interface)] = reactor.tcpServers
        self.assertEqual((port, interface, backlog), (0, "127.0.0.1", 100))
        d = service.stopService()
        self.successResultOf(d)

    def test_handlerOverUnix(self) -> None:
        """
        A handler is used as it is; --socket listens there with mode 0600.
        """
        options = Options()
        options.parseOptions(["--handler", "tests.apps.wsgi_apps:handler", "--socket", "/tmp/txf-no-such.sock"])
        reactor = MemoryReactorClock()
        service = makeService(options, reactor)
        self.assertIs(service.factory.handler, wsgi_apps.handler)
        service.startService()
        [(path, factory, backlog, mode, wantPID)] = reactor.unixServers
        self.assertEqual((path, mode), ("/tmp/txf-no-such.sock", 0o600))


class PluginTests(SynchronousTestCase):
    """
    The twistd plugin.
    """

    def test_discoverable(self) -> None:
        """
        twistd finds a service maker with tapname C{fastcgi-app} whose options
        are L{Options}.
        """
        makers = [p for p in getPlugins(IServiceMaker) if p.tapname == "fastcgi-app"]
        self.assertEqual(len(makers), 1)
        self.assertIs(makers[0].options, Options)

    def test_noReactorImport(self) -> None:
        """
        The dropin imports nothing but L{ServiceMaker} (no reactor, STYLE P1),
        and there is no C{__init__.py} beside it.
        """
        tree = ast.parse(PLUGIN.read_text())
        imported = [
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        ]
        self.assertEqual(sorted(imported), ["ServiceMaker", "annotations"])
        self.assertFalse((PLUGIN.parent / "__init__.py").exists())
        self.assertFalse((PLUGIN.parent.parent / "__init__.py").exists())
