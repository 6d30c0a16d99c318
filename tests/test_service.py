"""
Tests for L{txfastcgi.service}: how a configuration becomes a
L{GatewayService}, its start-up, its ordered shutdown, the access and error
logs it writes and SIGHUP.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, LogPublisher, capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from txfastcgi.config import ServerConfig, readConfig
from txfastcgi.ipc import IPCError
from txfastcgi.pool import ApplicationAddress
from txfastcgi.service import (
    GatewayService,
    RunAs,
    StartupError,
    makeGatewayService,
    resolveRunAs,
)

ECHO = str(Path(__file__).resolve().parent.parent / "examples" / "echo")


def writeConfig(directory: Path, extra: str = "") -> ServerConfig:
    """
    Write and read a configuration with a managed and an external class,
    an error log, two access logs and an ignored directive.
    """
    docroot = directory / "htdocs"
    docroot.mkdir(exist_ok=True)
    path = directory / "httpd.conf"
    path.write_text(
        f"""Listen 127.0.0.1:18080
Listen tcp:18081:interface=127.0.0.1
ServerName www.example.com
DocumentRoot htdocs
StartServers 3
ErrorLog {directory}/error.log
TransferLog {directory}/access.log
CustomLog {directory}/combined.log combined
AppClass {ECHO} -processes 3 -socket echo.sock -appConnTimeout 7 -idle-timeout 40
ExternalAppClass /remote/app -host 127.0.0.1:9999
FastCgiIpcDir {directory}/ipc
{extra}"""
    )
    return readConfig(str(path))


class Recorder:
    """
    Records what the fakes are asked to do, in order.
    """

    def __init__(self) -> None:
        self.events: list[str] = []


class FakeSupervisor(Service):
    """
    An L{ApplicationSupervisor} stand-in.
    """

    def __init__(self, recorder: Recorder, reactor: Any, classes: Any, **kwargs: Any) -> None:
        self.recorder = recorder
        self.classes = list(classes)
        self.kwargs = kwargs
        self.stopped: Deferred[None] = Deferred()

    def addressFor(self, path: str) -> ApplicationAddress:
        """
        @return: a fixed address per class.
        """
        if path == "/remote/app":
            return ApplicationAddress.tcp("127.0.0.1", 9999)
        return ApplicationAddress.unix("/ipc/" + os.path.basename(path))

    def privilegedStartService(self) -> None:
        """
        Record.
        """
        self.recorder.events.append("supervisor sockets")

    def startService(self) -> None:
        """
        Record.
        """
        self.recorder.events.append("supervisor start")

    def stopService(self) -> Deferred[None]:
        """
        Record; the Deferred fires when the test says.
        """
        self.recorder.events.append("supervisor stop")
        return self.stopped


class FakePool:
    """
    A L{ConnectionPool} stand-in.
    """

    def __init__(self, recorder: Recorder, reactor: Any, address: Any, **kwargs: Any) -> None:
        self.recorder = recorder
        self.address = address
        self.kwargs = kwargs

    def closeAll(self) -> Deferred[None]:
        """
        Record.
        """
        self.recorder.events.append(f"close pool {self.address}")
        return succeed(None)


class FakePort:
    """
    A listening port stand-in.
    """

    def __init__(self, recorder: Recorder, description: str, factory: Any) -> None:
        self.recorder = recorder
        self.description = description
        self.factory = factory

    def stopListening(self) -> Deferred[None]:
        """
        Record.
        """
        self.recorder.events.append(f"stop listening {self.description}")
        self.factory.doStop()
        return succeed(None)


class FakeEndpoint:
    """
    A server endpoint stand-in.
    """

    def __init__(self, recorder: Recorder, description: str, failing: bool = False) -> None:
        self.recorder = recorder
        self.description = description
        self.failing = failing

    def listen(self, factory: Any) -> Deferred[Any]:
        """
        Record, and listen (or fail to).
        """
        if self.failing:
            return fail(CannotListenError("127.0.0.1", 18081, OSError("in use")))
        self.recorder.events.append(f"listen {self.description}")
        factory.doStart()
        return succeed(FakePort(self.recorder, self.description, factory))


class SlowResource(Resource):
    """
    A leaf resource whose requests wait until the test finishes them.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render(self, request: Any) -> Any:
        """
        Keep the request.
        """
        self.requests.append(request)
        return NOT_DONE_YET


class Built:
    """
    A service built with fakes, and the fakes.
    """

    def __init__(self, config: ServerConfig, runAs: RunAs | None = None,
                 failingEndpoint: str | None = None) -> None:
        self.recorder = Recorder()
        self.reactor = MemoryReactorClock()
        self.resource = SlowResource()
        self.resourceArgs: dict[str, Any] = {}
        self.signals: dict[int, Callable[[], None]] = {}
        self.switched: list[RunAs] = []
        self.publisher = LogPublisher()
        self.supervisors: list[FakeSupervisor] = []
        recorder = self.recorder

        def supervisorFactory(reactor: Any, classes: Any, **kwargs: Any) -> FakeSupervisor:
            supervisor = FakeSupervisor(recorder, reactor, classes, **kwargs)
            self.supervisors.append(supervisor)
            return supervisor

        def resourceFactory(config: ServerConfig, **kwargs: Any) -> Resource:
            recorder.events.append("resource")
            self.resourceArgs = kwargs
            return self.resource

        def installSignal(signum: int, callback: Callable[[], None]) -> Callable[[], None]:
            self.signals[signum] = callback
            return lambda: self.signals.pop(signum, None) and None

        def switchUser(runAs: RunAs) -> None:
            recorder.events.append(f"switch to {runAs.uid}")
            self.switched.append(runAs)

        self.service: GatewayService = makeGatewayService(
            config,
            self.reactor,
            runAs=runAs,
            resourceFactory=resourceFactory,
            supervisorFactory=supervisorFactory,
            poolFactory=lambda reactor, address, **kw: FakePool(recorder, reactor, address, **kw),
            endpointFactory=lambda reactor, d: FakeEndpoint(recorder, d, d == failingEndpoint),
            installSignal=installSignal,
            switchUser=switchUser,
            logPublisher=self.publisher,
        )

    @property
    def supervisor(self) -> FakeSupervisor:
        """
        The fake supervisor.
        """
        return self.supervisors[0]

    def get(self, path: bytes = b"/x") -> StringTransport:
        """
        Send a GET through the site; the resource keeps the request.
        """
        site = self.service.site
        assert site is not None
        protocol = site.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        transport.protocol = protocol
        protocol.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: www.example.com\r\n"
                              b"User-Agent: test\r\n\r\n")
        return transport


class MakeGatewayServiceTests(SynchronousTestCase):
    """
    L{makeGatewayService} composes the server, and L{GatewayService} starts
    it in order.
    """

    def setUp(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="txfastcgi-service-"))
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.config = writeConfig(self.directory)

    def test_composition(self) -> None:
        """
        The supervisor gets every class and the IPC directory; there is a
        pool per class keyed by path-name, a managed class's capped at its
        C{-processes}, with C{-appConnTimeout} and C{-idle-timeout}; the
        resource gets the pools.
        """
        built = Built(self.config)
        built.service.privilegedStartService()
        supervisor = built.supervisor
        self.assertEqual([c.path for c in supervisor.classes], [ECHO, "/remote/app"])
        self.assertEqual(supervisor.kwargs["ipcDir"].path, str(self.directory / "ipc"))
        pools = built.service.pools
        self.assertEqual(sorted(pools), sorted([ECHO, "/remote/app"]))
        echo: Any = pools[ECHO]
        self.assertEqual(echo.address, ApplicationAddress.unix("/ipc/echo"))
        self.assertEqual(echo.kwargs["maxConnections"], 3)
        self.assertEqual(echo.kwargs["connectTimeout"], 7.0)
        self.assertEqual(echo.kwargs["responseTimeout"], 40.0)
        remote: Any = pools["/remote/app"]
        self.assertEqual(remote.kwargs["maxConnections"], 16)
        self.assertIs(built.resourceArgs["pools"], pools)
        self.assertIs(built.service.getServiceNamed("supervisor"), supervisor)

    def test_startOrder(self) -> None:
        """
        Log files, then sockets, then the resource, then the ports, then the
        user switch; the applications start in C{startService}.
        """
        built = Built(self.config, runAs=RunAs(4000001, 4000001, "web", switch=True))
        built.service.privilegedStartService()
        self.assertTrue((self.directory / "error.log").exists())
        self.assertTrue((self.directory / "access.log").exists())
        self.assertEqual(
            built.recorder.events,
            [
                "supervisor sockets",
                "resource",
                "listen tcp:18080:interface=127.0.0.1",
                "listen tcp:18081:interface=127.0.0.1",
                "switch to 4000001",
            ],
        )
        built.service.startService()
        self.assertEqual(built.recorder.events[-1], "supervisor start")
        self.assertIn(signal.SIGHUP, built.signals)

    def test_noSwitchWhenNotAsked(self) -> None:
        """
        Without a L{RunAs} that says so, the service switches no user.
        """
        built = Built(self.config, runAs=RunAs(4000001, 4000001, "web", switch=False))
        built.service.startService()
        self.assertEqual(built.switched, [])
        self.assertEqual(built.supervisor.kwargs["uid"], 4000001)

    def test_notesLoggedOnce(self) -> None:
        """
        The configuration's notes are logged when the service first starts,
        not again after a restart.
        """
        built = Built(self.config)
        with capturedLogs() as events:
            built.service.startService()
            built.supervisor.stopped.callback(None)
            self.successResultOf(built.service.stopService())
            built.supervisor.stopped = Deferred()
            built.service.startService()
        notes = [e for e in events if e.get("directive") == "StartServers"]
        self.assertEqual(len(notes), 1)
        self.assertEqual(notes[0]["line"], 5)
        self.assertEqual(notes[0]["log_format"], "{file}:{line}: {directive}: {message}")

    def test_listenFailure(self) -> None:
        """
        An address that cannot be bound stops the start with a one-line
        L{StartupError}; ports opened, sockets and log files are closed again.
        """
        built = Built(self.config, failingEndpoint="tcp:18081:interface=127.0.0.1")
        with self.assertRaises(StartupError) as raised:
            built.service.privilegedStartService()
        self.assertIn("cannot listen on tcp:18081:interface=127.0.0.1", str(raised.exception))
        self.assertNotIn("\n", str(raised.exception))
        self.assertIn("stop listening tcp:18080:interface=127.0.0.1", built.recorder.events)
        self.assertIn("supervisor stop", built.recorder.events)
        self.assertFalse(any(f.isOpen for f in built.service.logFiles))

    def test_socketFailure(self) -> None:
        """
        An application socket that cannot be set up stops the start with a
        one-line L{StartupError}; the log files are closed again.
        """
        built = Built(self.config)

        def refuse() -> None:
            raise IPCError(
                "TCP 127.0.0.1:8978: cannot listen: Address already in use",
                "127.0.0.1:8978",
            )

        built.supervisor.privilegedStartService = refuse  # type: ignore[method-assign]
        with self.assertRaises(StartupError) as raised:
            built.service.privilegedStartService()
        self.assertEqual(
            str(raised.exception),
            "cannot set up the applications' sockets: TCP 127.0.0.1:8978: cannot "
            "listen: Address already in use",
        )
        self.assertFalse(any(f.isOpen for f in built.service.logFiles))
        self.assertEqual(built.service.state, "stopped")

    def test_accessLogs(self) -> None:
        """
        A finished request is written to every access log in its format,
        not to twisted.web's log.
        """
        built = Built(self.config)
        built.service.startService()
        built.reactor.advance(2)
        transport = built.get(b"/x?y")
        request = built.resource.requests[0]
        request.write(b"hello")
        request.finish()
        self.assertIn(b"hello", transport.value())
        access = (self.directory / "access.log").read_text()
        combined = (self.directory / "combined.log").read_text()
        self.assertRegex(access, r'^192\.168\.1\.1 - - \[.*\] "GET /x\?y HTTP/1\.1" 200 5\n$')
        self.assertRegex(combined, r'^192\.168\.1\.1 - - \[.*\] "GET /x\?y HTTP/1\.1" 200 5 "-" "test"\n$')

    def test_abandonedRequestLogged(self) -> None:
        """
        A request whose client goes away is logged then, with C{%X} C{X}.
        """
        directory = self.directory
        config = writeConfig(directory, f'CustomLog {directory}/x.log "%U %X"\n')
        built = Built(config)
        built.service.startService()
        transport = built.get(b"/gone")
        transport.protocol.connectionLost(Exception("gone"))
        self.assertEqual((directory / "x.log").read_text(), "/gone X\n")
        self.assertEqual(built.service.site and built.service.site.inFlight, set())

    def test_errorLog(self) -> None:
        """
        While running, log events go to the ErrorLog; after the stop they
        no longer do.
        """
        built = Built(self.config)
        built.service.startService()
        built.publisher({"log_format": "hello {who}", "who": "world",
                         "log_level": LogLevel.warn})
        built.supervisor.stopped.callback(None)
        self.successResultOf(built.service.stopService())
        built.publisher({"log_format": "late", "log_level":
                         LogLevel.warn})
        text = (self.directory / "error.log").read_text()
        self.assertIn("] [warn] hello world\n", text)
        self.assertNotIn("late", text)

    def test_sighupReopens(self) -> None:
        """
        The SIGHUP handler reopens every log file after a rotation.
        """
        built = Built(self.config)
        built.service.startService()
        os.rename(self.directory / "access.log", self.directory / "access.log.1")
        built.signals[signal.SIGHUP]()
        built.get(b"/after")
        built.resource.requests[0].finish()
        self.assertEqual((self.directory / "access.log.1").read_text(), "")
        self.assertIn("/after", (self.directory / "access.log").read_text())

    def test_shutdownOrder(self) -> None:
        """
        Shutdown stops listening, waits for the request in flight, closes
        the pools, stops the supervisor, then closes the logs; the Deferred
        fires only then.
        """
        built = Built(self.config)
        built.service.startService()
        built.get()
        del built.recorder.events[:]
        stopped = built.service.stopService()
        self.assertNoResult(stopped)
        self.assertEqual(
            built.recorder.events,
            [
                "stop listening tcp:18080:interface=127.0.0.1",
                "stop listening tcp:18081:interface=127.0.0.1",
            ],
        )
        built.resource.requests[0].finish()
        self.assertEqual(
            built.recorder.events[2:],
            [
                "close pool unix:/ipc/echo",
                "close pool tcp:127.0.0.1:9999",
                "supervisor stop",
            ],
        )
        self.assertNoResult(stopped)
        self.assertTrue(all(f.isOpen for f in built.service.logFiles))
        built.supervisor.stopped.callback(None)
        self.successResultOf(stopped)
        self.assertFalse(any(f.isOpen for f in built.service.logFiles))
        self.assertNotIn(signal.SIGHUP, built.signals)

    def test_drainBounded(self) -> None:
        """
        Requests still running after C{drainTimeout} have their connections
        aborted and the shutdown goes on.
        """
        built = Built(self.config)
        built.service.startService()
        transport = built.get()
        stopped = built.service.stopService()
        built.reactor.advance(9)
        self.assertNotIn("supervisor stop", built.recorder.events)
        built.reactor.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertIn("supervisor stop", built.recorder.events)
        built.supervisor.stopped.callback(None)
        self.successResultOf(stopped)


class ResolveRunAsTests(SynchronousTestCase):
    """
    L{resolveRunAs} decides who the server runs as.
    """

    def setUp(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="txfastcgi-service-"))
        self.addCleanup(shutil.rmtree, self.directory, True)

    def test_notRoot(self) -> None:
        """
        Started as another user, C{User} is ignored.
        """
        config = writeConfig(self.directory, "User #4000001\nGroup #4000002\n")
        self.assertIsNone(resolveRunAs(config, euid=4000001))

    def test_root(self) -> None:
        """
        Started as root, the server switches to C{User}/C{Group} itself.
        """
        config = writeConfig(self.directory, "User #4000001\nGroup #4000002\n")
        self.assertEqual(
            resolveRunAs(config, euid=0), RunAs(4000001, 4000002, None, switch=True)
        )

    def test_noUser(self) -> None:
        """
        Without C{User}, nothing changes.
        """
        self.assertIsNone(resolveRunAs(writeConfig(self.directory), euid=0))

    def test_twistdUid(self) -> None:
        """
        twistd's C{--uid/--gid} win; twistd switches, not the service.
        """
        config = writeConfig(self.directory, "User #4000001\n")
        self.assertEqual(
            resolveRunAs(config, euid=0, twistdUid=4000003, twistdGid=4000004),
            RunAs(4000003, 4000004, None, switch=False),
        )

    def test_classWithOwnUser(self) -> None:
        """
        An AppClass with C{-user} keeps the server root; the others are
        started as C{User}.
        """
        path = self.directory / "httpd.conf"
        (self.directory / "htdocs").mkdir()
        path.write_text(
            "Listen 127.0.0.1:18080\nDocumentRoot htdocs\nUser #4000001\nGroup #4000002\n"
            f"AppClass {ECHO} -user #0\n"
        )
        config = readConfig(str(path))
        runAs = resolveRunAs(config, euid=0)
        self.assertEqual(runAs, RunAs(4000001, 4000002, None, switch=False, keepRoot=True))


needsRoot = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


class PrivilegeTests(SynchronousTestCase):
    """
    What the service does with privileges when started as root.
    """

    @needsRoot
    def test_switchUser(self) -> None:
        """
        L{_switchUser} sets the supplementary groups, the gid and the uid
        (checked in a forked child, which then exits).
        """
        from txfastcgi.service import _switchUser

        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.close(read)
                _switchUser(RunAs(65534, 65534, None, switch=True))
                os.write(write, repr((os.getuid(), os.geteuid(), os.getgid(),
                                      os.getgroups())).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as f:
            result = f.read()
        os.waitpid(pid, 0)
        self.assertEqual(result, repr((65534, 65534, 65534, [65534])))

    @needsRoot
    def test_logFilesGivenToUser(self) -> None:
        """
        Log files opened by root for a server that will run as another
        user are given to that user, so that SIGHUP can reopen them.
        """
        from txfastcgi.logs import LogFile

        directory = Path(tempfile.mkdtemp(prefix="txfastcgi-service-"))
        self.addCleanup(shutil.rmtree, directory, True)
        logFile = LogFile(str(directory / "access.log"), uid=65534, gid=65534)
        logFile.open()
        logFile.close()
        info = os.stat(directory / "access.log")
        self.assertEqual((info.st_uid, info.st_gid), (65534, 65534))
