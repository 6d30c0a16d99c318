# -*- test-case-name: tests.test_supervisor -*-
"""
Tests for L{txfastcgi.appclass} (configuration values) and
L{txfastcgi.supervisor} (driven by a fake process reactor and a fake clock:
no process is started here; listening sockets are real, in a temporary
FastCgiIpcDir).
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import stat
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogEvent, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from txfastcgi.appclass import (
    MAX_PROCESSES,
    AppClassConfig,
    AppClassError,
    ExternalAppClassConfig,
    IpcDirConfig,
    parseInitialEnv,
    resolveInitialEnv,
)
from txfastcgi.ipc import IPCError
from txfastcgi.pool import ApplicationAddress
from txfastcgi.supervisor import (
    MAX_LINE_LENGTH,
    PIPE_GRACE,
    SPAWN_RETRY_DELAY,
    ApplicationSupervisor,
    ClassConfig,
    installSignalHandler,
)

APP = "/srv/fcgi/app.fcgi"
"""A managed class's path (never executed: the reactor is fake)."""

OTHER = "/srv/fcgi/other.fcgi"
"""A second managed class's path."""


# --- configuration values ------------------------------------------------------


def test_appClassDefaults() -> None:
    """
    L{AppClassConfig} has the seed's defaults, except a listen queue of 100
    (Decision 2), and an empty initial environment.
    """
    config = AppClassConfig(APP)
    assert (
        config.processes,
        config.listenQueueDepth,
        config.restartDelay,
        config.priority,
        config.port,
        config.socket,
        config.initialEnv,
        config.minServerLife,
        config.uid,
        config.gid,
        config.initStartDelay,
    ) == (1, 100, 5, 0, None, None, (), 30, None, None, 0)
    assert config.workingDirectory == "/srv/fcgi"
    policy = config.restartPolicy()
    assert (policy.restartDelay, policy.minServerLife) == (5.0, 30.0)


def test_appClassPathNormalised() -> None:
    """
    The path is normalised, so two spellings of one file are one class.
    """
    assert AppClassConfig("/srv//fcgi/../fcgi/app.fcgi").path == APP
    assert AppClassConfig("/srv//fcgi/../fcgi/app.fcgi") == AppClassConfig(APP)


def test_sourceAndDirectiveNotCompared() -> None:
    """
    Where a directive was read and which alias named it do not take part in
    equality.
    """
    assert AppClassConfig(APP, source=("a.conf", 1)) == AppClassConfig(
        APP, directive="FastCgiServer", source=("b.conf", 9)
    )


@pytest.mark.parametrize(
    "kwargs, option, reason",
    [
        ({"processes": 0}, "-processes", f"from 1 to {MAX_PROCESSES}"),
        ({"processes": MAX_PROCESSES + 1}, "-processes", "integer"),
        ({"processes": True}, "-processes", "integer"),
        ({"processes": "2"}, "-processes", "integer"),
        ({"listenQueueDepth": 0}, "-listen-queue-depth", "at least 1"),
        ({"restartDelay": -1}, "-restart-delay", ">= 0"),
        ({"restartDelay": math.nan}, "-restart-delay", ">= 0"),
        ({"restartDelay": math.inf}, "-restart-delay", ">= 0"),
        ({"priority": -1}, "-priority", "negative values are not allowed"),
        ({"priority": 21}, "-priority", "from 0 to 20"),
        ({"port": 0}, "-port", "from 1 to 65535"),
        ({"port": 65536}, "-port", "from 1 to 65535"),
        ({"port": 9000, "socket": "s"}, "-port", "mutually exclusive"),
        ({"socket": ""}, "-socket", "non-empty"),
        ({"socket": "a\0b"}, "-socket", "NUL"),
        ({"initialEnv": ("=x",)}, "-initial-env", "variable name"),
        ({"initialEnv": ("A=\0",)}, "-initial-env", "NUL"),
        ({"initialEnv": ["A=1"]}, "-initial-env", "tuple"),
        ({"minServerLife": -1}, "-min-server-life", ">= 0"),
        ({"initStartDelay": -0.5}, "-init-start-delay", ">= 0"),
        ({"uid": -1}, "-user", "numeric id"),
        ({"gid": "www"}, "-group", "numeric id"),
    ],
)
def test_appClassInvalid(kwargs: dict[str, Any], option: str, reason: str) -> None:
    """
    Every out-of-range or conflicting option is an L{AppClassError} naming
    the option, saying what is allowed.
    """
    with pytest.raises(AppClassError) as info:
        AppClassConfig(APP, **kwargs)
    assert info.value.option == option
    assert reason in str(info.value)
    assert str(info.value).startswith(f"AppClass {APP}: ")


@pytest.mark.parametrize("path", ["", "relative/app", "/a\0b"])
def test_appClassBadPath(path: str) -> None:
    """
    The path-name must be a non-empty absolute path without NUL.
    """
    with pytest.raises(AppClassError):
        AppClassConfig(path)


def test_appClassErrorMessage() -> None:
    """
    The message is C{"<directive> <path>: <reason> (got <value>)"}, and
    L{AppClassError.located} prefixes C{FILE:LINE: } when the source is
    known; the alias used in the file names the directive.
    """
    with pytest.raises(AppClassError) as info:
        AppClassConfig(
            APP, processes=0, directive="FastCgiServer", source=("httpd.conf", 14)
        )
    error = info.value
    assert str(error) == (
        f"FastCgiServer {APP}: -processes must be an integer from 1 to 50 (got 0)"
    )
    assert error.located() == f"httpd.conf:14: {error}"
    assert (error.directive, error.path, error.source) == (
        "FastCgiServer",
        APP,
        ("httpd.conf", 14),
    )
    with pytest.raises(AppClassError) as info:
        AppClassConfig(APP, port=1, socket="s")
    assert str(info.value) == (
        f"AppClass {APP}: -port and -socket options are mutually exclusive"
    )
    assert info.value.located() == str(info.value)


@pytest.mark.parametrize(
    "entries, environ, env, missing",
    [
        (("STATE=TEXAS",), {}, {"STATE": "TEXAS"}, ()),
        (("EMPTY=",), {}, {"EMPTY": ""}, ()),
        (("A=b=c",), {}, {"A": "b=c"}, ()),
        (("HOME",), {"HOME": "/root", "PATH": "/bin"}, {"HOME": "/root"}, ()),
        (("NOPE",), {"HOME": "/root"}, {}, ("NOPE",)),
        (("A=1", "A=2"), {}, {"A": "2"}, ()),
        (("A=1", "A"), {}, {}, ("A",)),
        (("A", "A=1"), {"A": "0"}, {"A": "1"}, ()),
        ((), {"PATH": "/bin"}, {}, ()),
    ],
)
def test_resolveInitialEnv(
    entries: tuple[str, ...],
    environ: dict[str, str],
    env: dict[str, str],
    missing: tuple[str, ...],
) -> None:
    """
    C{NAME=VALUE} sets, C{NAME} copies from the server's environment (and
    is reported missing when it is not there), later entries win, and
    nothing else from the server's environment is passed (Decision 5).
    """
    resolved = resolveInitialEnv(entries, environ)
    assert resolved.env == env
    assert resolved.missing == missing
    assert AppClassConfig(APP, initialEnv=entries).environment(environ) == resolved


def test_parseInitialEnv() -> None:
    """
    L{parseInitialEnv} splits at the first C{=}; no C{=} means "copy".
    """
    assert parseInitialEnv("A=1=2") == ("A", "1=2")
    assert parseInitialEnv("A=") == ("A", "")
    assert parseInitialEnv("A") == ("A", None)
    with pytest.raises(ValueError):
        parseInitialEnv("=1")


@pytest.mark.parametrize(
    "host, expected",
    [
        ("localhost:9000", ("localhost", 9000)),
        ("127.0.0.1:1", ("127.0.0.1", 1)),
        ("[::1]:65535", ("::1", 65535)),
    ],
)
def test_externalHost(host: str, expected: tuple[str, int]) -> None:
    """
    C{-host} is C{host:port}, an IPv6 literal in brackets.
    """
    assert ExternalAppClassConfig(APP, host=host).hostAndPort == expected


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({}, "exactly one of -host and -socket"),
        ({"host": "h:1", "socket": "s"}, "exactly one of -host and -socket"),
        ({"host": "nohost"}, "host:port"),
        ({"host": ":9000"}, "host:port"),
        ({"host": "h:0"}, "host:port"),
        ({"host": "h:65536"}, "host:port"),
        ({"host": "h:x"}, "host:port"),
        ({"host": "::1:9000"}, "host:port"),
        ({"host": "[::1]9000"}, "host:port"),
        ({"socket": ""}, "non-empty"),
    ],
)
def test_externalInvalid(kwargs: dict[str, Any], reason: str) -> None:
    """
    An ExternalAppClass needs exactly one well-formed C{-host} or C{-socket}.
    """
    with pytest.raises(AppClassError) as info:
        ExternalAppClassConfig(APP, **kwargs)
    assert reason in str(info.value)
    assert str(info.value).startswith(f"ExternalAppClass {APP}: ")


def test_ipcDir() -> None:
    """
    FastCgiIpcDir defaults to C{/tmp} and must be absolute.
    """
    assert IpcDirConfig().path == "/tmp"
    assert IpcDirConfig("/var/run/fcgi/").path == "/var/run/fcgi"
    with pytest.raises(AppClassError) as info:
        IpcDirConfig("run/fcgi")
    assert str(info.value).startswith("FastCgiIpcDir run/fcgi: ")


# --- a fake process reactor ----------------------------------------------------


class FakeProcess:
    """
    A process "spawned" by L{FakeProcessReactor}.

    @ivar signals: the signals it received, in order.
    @ivar termDelay: seconds after SIGTERM at which it exits with signal
        15, or C{None} to ignore SIGTERM.
    @ivar killable: whether SIGKILL ends it (at once).
    @ivar exited: whether it exited.
    @ivar pipesOpen: whether its output pipes are still open.
    """

    def __init__(
        self,
        reactor: FakeProcessReactor,
        protocol: Any,
        executable: str,
        args: Sequence[str],
        env: Mapping[str, str] | None,
        path: str | None,
        uid: int | None,
        gid: int | None,
        childFDs: Mapping[int, int | str] | None,
        pid: int,
    ) -> None:
        self.reactor = reactor
        self.protocol = protocol
        self.executable = executable
        self.args = list(args)
        self.env = env
        self.path = path
        self.uid = uid
        self.gid = gid
        self.childFDs = childFDs
        self.pid: int | None = pid
        self.originalPid = pid
        self.signals: list[str | int] = []
        self.termDelay: float | None = reactor.termDelay
        self.killable = True
        self.exited = False
        self.pipesOpen = True
        self._reason: Failure | None = None

    def signalProcess(self, signalID: str | int) -> None:
        """
        Record the signal; TERM ends the process after L{termDelay}, KILL
        at once (if L{killable}).
        """
        if self.exited:
            raise ProcessExitedAlready()
        self.signals.append(signalID)
        if signalID == "TERM" and self.termDelay is not None:
            self.reactor.callLater(self.termDelay, self.exit, signal=15)
        elif signalID == "KILL" and self.killable:
            self.exit(signal=9)

    def loseConnection(self) -> None:
        """
        The supervisor closes the pipes: the process has ended.
        """
        if self.pipesOpen and self.exited:
            self.pipesOpen = False
            assert self._reason is not None
            self.protocol.processEnded(self._reason)

    def exit(
        self,
        exitCode: int | None = None,
        signal: int | None = None,
        closePipes: bool = True,
    ) -> None:
        """
        Make the process exit.

        @param exitCode: its status, or C{None} with C{signal}.
        @param signal: the signal that killed it.
        @param closePipes: whether its pipes close too (else something it
            left behind holds them).
        """
        if self.exited:
            return
        self.exited = True
        self.pid = None
        if signal is None and exitCode == 0:
            reason = Failure(ProcessDone(0))
        else:
            reason = Failure(ProcessTerminated(exitCode, signal))
        self._reason = reason
        self.protocol.processExited(reason)
        if closePipes:
            self.pipesOpen = False
            self.protocol.processEnded(reason)


class FakeProcessReactor(Clock):
    """
    A L{Clock} that also "spawns" processes (Twisted's C{MemoryReactor} has
    no C{spawnProcess}; compare L{twisted.runner.test.test_procmon}).

    @ivar spawned: every process spawned, in order.
    @ivar spawnError: raised by C{spawnProcess} when set.
    @ivar termDelay: given to new processes (see L{FakeProcess}).
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[FakeProcess] = []
        self.spawnError: Exception | None = None
        self.termDelay: float | None = 0.5
        self._nextPid = 1000

    def spawnProcess(
        self,
        processProtocol: Any,
        executable: str,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        path: str | None = None,
        uid: int | None = None,
        gid: int | None = None,
        usePTY: bool = False,
        childFDs: Mapping[int, int | str] | None = None,
    ) -> FakeProcess:
        """
        Record the call and connect the protocol to a L{FakeProcess}.
        """
        if self.spawnError is not None:
            raise self.spawnError
        self._nextPid += 1
        process = FakeProcess(
            self, processProtocol, executable, args, env, path, uid, gid, childFDs,
            self._nextPid,
        )
        self.spawned.append(process)
        processProtocol.makeConnection(process)
        return process

    def running(self) -> list[FakeProcess]:
        """
        @return: the processes that have not exited.
        """
        return [p for p in self.spawned if not p.exited]


class SignalRecorder:
    """
    A L{txfastcgi.supervisor.SignalInstaller} that installs nothing and
    remembers what it was asked.

    @ivar installed: C{(signum, callback)} while installed, else C{None}.
    @ivar uninstalls: how often the handler was removed.
    """

    def __init__(self) -> None:
        self.installed: tuple[int, Callable[[], None]] | None = None
        self.uninstalls = 0

    def __call__(self, signum: int, callback: Callable[[], None]) -> Callable[[], None]:
        self.installed = (signum, callback)

        def uninstall() -> None:
            self.installed = None
            self.uninstalls += 1

        return uninstall


class SupervisorTestCase(SynchronousTestCase):
    """
    Common set-up: a fake reactor, a temporary IPC directory, captured log
    events.
    """

    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.ipcDir = tempfile.mkdtemp(prefix="txsup-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.ipcDir, True)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.signals = SignalRecorder()

    def supervisor(
        self, *classes: ClassConfig, start: bool = True, **kwargs: Any
    ) -> ApplicationSupervisor:
        """
        Build a supervisor (pid 4242 in generated names), start it unless
        told not to, and stop it at cleanup.
        """
        kwargs.setdefault("environ", {"PATH": "/usr/bin", "HOME": "/root"})
        kwargs.setdefault("installSignal", self.signals)
        supervisor = ApplicationSupervisor(
            self.reactor,
            classes,
            ipcDir=IpcDirConfig(self.ipcDir),
            serverPid=4242,
            **kwargs,
        )

        def cleanup() -> None:
            for process in self.reactor.spawned:
                process.killable = True
            d = supervisor.stopService()
            self.reactor.advance(supervisor.stopGrace + 1)
            self.successResultOf(d)

        self.addCleanup(cleanup)
        if start:
            supervisor.privilegedStartService()
            supervisor.startService()
        return supervisor

    def logged(self, **fields: object) -> list[LogEvent]:
        """
        The captured events that have all the given fields with the given
        values.
        """
        return [
            event
            for event in self.events
            if all(k in event and event[k] == v for k, v in fields.items())
        ]

    def runNextTimer(self) -> None:
        """
        Advance the fake clock to the next pending timer and run it.
        """
        due = min(call.getTime() for call in self.reactor.getDelayedCalls())
        self.reactor.advance(due - self.reactor.seconds())

    def deaths(self) -> list[LogEvent]:
        """
        The captured death events (they carry C{description}).
        """
        return [e for e in self.events if "description" in e and "death" in e]

    def starts(self) -> list[float]:
        """
        When each logged start happened (fake time).
        """
        return [e["startedAt"] for e in self.events if "restart" in e]


class SpawnTests(SupervisorTestCase):
    """
    How L{ApplicationSupervisor} starts processes.
    """

    def test_spawnsProcessesWithArgvEnvCwdAndSocket(self) -> None:
        """
        C{-processes 3} spawns three processes, each with argv C{[path]},
        exactly the C{-initial-env} environment, the executable's directory
        as working directory, and the class's listening socket as fd 0 with
        pipes on 1 and 2.
        """
        supervisor = self.supervisor(
            AppClassConfig(APP, processes=3, initialEnv=("STATE=TEXAS", "HOME"))
        )
        self.assertEqual(len(self.reactor.spawned), 3)
        address = supervisor.addressFor(APP)
        self.assertEqual(address, ApplicationAddress.unix(f"{self.ipcDir}/OM_WS_0.4242"))
        for process in self.reactor.spawned:
            self.assertEqual(process.executable, APP)
            self.assertEqual(process.args, [APP])
            self.assertEqual(process.env, {"STATE": "TEXAS", "HOME": "/root"})
            self.assertEqual(process.path, "/srv/fcgi")
            self.assertEqual((process.uid, process.gid), (None, None))
            assert process.childFDs is not None
            self.assertEqual(process.childFDs[1], "r")
            self.assertEqual(process.childFDs[2], "r")
            fd = process.childFDs[0]
            assert isinstance(fd, int)
            listening = socket.socket(fileno=os.dup(fd))
            try:
                self.assertEqual(listening.getsockname(), address.path)
                self.assertEqual(
                    listening.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN), 1
                )
            finally:
                listening.close()
        self.assertEqual(
            sorted(supervisor.pids(APP)), sorted(p.originalPid for p in self.reactor.spawned)
        )

    def test_startsLogged(self) -> None:
        """
        Each start is logged at info level with the class and the pid.
        """
        self.supervisor(AppClassConfig(APP, processes=2))
        started = self.logged(appClass=APP, restart=False)
        self.assertEqual(
            [e["pid"] for e in started], [p.originalPid for p in self.reactor.spawned]
        )
        self.assertTrue(all(e["log_level"] is LogLevel.info for e in started))

    def test_emptyEnvironmentIsEmpty(self) -> None:
        """
        Without C{-initial-env} the environment is an empty dict (C{None}
        would make the process inherit the server's).
        """
        self.supervisor(AppClassConfig(APP))
        self.assertEqual(self.reactor.spawned[0].env, {})

    def test_missingCopiedVariableLogged(self) -> None:
        """
        C{-initial-env NAME} for a NAME the server's environment lacks is
        left out, with a warning naming it.
        """
        self.supervisor(AppClassConfig(APP, initialEnv=("HOME", "NOPE")))
        self.assertEqual(self.reactor.spawned[0].env, {"HOME": "/root"})
        [warning] = self.logged(appClass=APP, names="NOPE")
        self.assertEqual(warning["log_level"], LogLevel.warn)

    def test_priorityRunsThroughNice(self) -> None:
        """
        C{-priority N} runs the application through C{nice -n N}, which
        execs it with argv[0] still the full path.
        """
        nice = os.path.join(self.ipcDir, "nice")
        with open(nice, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(nice, 0o755)
        self.supervisor(AppClassConfig(APP, priority=7), niceCommand=nice)
        [process] = self.reactor.spawned
        self.assertEqual(process.executable, nice)
        self.assertEqual(process.args, [nice, "-n", "7", APP])
        self.assertEqual(process.path, "/srv/fcgi")

    def test_priorityWithoutNiceRefused(self) -> None:
        """
        A class with C{-priority} cannot start when the C{nice} program is
        missing: the error names the option.
        """
        supervisor = self.supervisor(
            AppClassConfig(APP, priority=1),
            niceCommand="/nonexistent/nice",
            start=False,
        )
        error = self.assertRaises(AppClassError, supervisor.privilegedStartService)
        self.assertEqual(error.option, "-priority")
        self.assertIn("/nonexistent/nice", str(error))

    def test_initStartDelaySpacesInitialStarts(self) -> None:
        """
        With C{-init-start-delay} the initial processes start that many
        seconds apart; the status counts the ones not started yet, and a
        stop cancels them.
        """
        supervisor = self.supervisor(AppClassConfig(APP, processes=3, initStartDelay=2))
        self.assertEqual(self.starts(), [0])
        [status] = supervisor.status()
        self.assertEqual((status.waiting, status.nextStartIn), (2, 2.0))
        self.reactor.pump([1] * 3)
        self.assertEqual(self.starts(), [0, 2])
        self.assertEqual(self.logged(restart=True), [])
        d = supervisor.stopService()
        self.reactor.pump([1] * 10)
        self.successResultOf(d)
        self.assertEqual(self.starts(), [0, 2])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_uidAndGid(self) -> None:
        """
        A class's uid and gid are passed to C{spawnProcess}.
        """
        self.supervisor(AppClassConfig(APP, uid=33, gid=34))
        [process] = self.reactor.spawned
        self.assertEqual((process.uid, process.gid), (33, 34))

    def test_addresses(self) -> None:
        """
        Generated names are C{OM_WS_<n>.<pid>}, counted in configuration
        order over the classes without C{-socket}/C{-port}; a relative
        C{-socket} lives in FastCgiIpcDir; C{-port} listens on 127.0.0.1;
        external classes keep their address.  Socket files are mode 0600.
        """
        port = _freePort()
        supervisor = self.supervisor(
            AppClassConfig("/a/one"),
            AppClassConfig("/a/two", socket="named"),
            ExternalAppClassConfig("/a/ext1", host="example.com:9000"),
            AppClassConfig("/a/three"),
            AppClassConfig("/a/four", port=port),
            ExternalAppClassConfig("/a/ext2", socket="relative.sock"),
            ExternalAppClassConfig("/a/ext3", socket="/run/abs.sock"),
        )
        self.assertEqual(
            [str(supervisor.addressFor(p)) for p in supervisor.paths],
            [
                f"unix:{self.ipcDir}/OM_WS_0.4242",
                f"unix:{self.ipcDir}/named",
                "tcp:example.com:9000",
                f"unix:{self.ipcDir}/OM_WS_1.4242",
                f"tcp:127.0.0.1:{port}",
                f"unix:{self.ipcDir}/relative.sock",
                "unix:/run/abs.sock",
            ],
        )
        for name in ("OM_WS_0.4242", "named", "OM_WS_1.4242"):
            mode = os.stat(os.path.join(self.ipcDir, name)).st_mode
            self.assertTrue(stat.S_ISSOCK(mode))
            self.assertEqual(stat.S_IMODE(mode), 0o600)
        probe = socket.create_connection(("127.0.0.1", port))
        probe.close()
        self.assertEqual(supervisor.addressFor("/a//four"), supervisor.addressFor("/a/four"))
        self.assertRaises(KeyError, supervisor.addressFor, "/a/none")
        self.assertEqual(supervisor.endpointDescriptionFor("/a/ext1"), "tcp:example.com:9000")

    def test_externalNeverSpawned(self) -> None:
        """
        External classes are never started, and the IPC directory is not
        even needed for them.
        """
        supervisor = ApplicationSupervisor(
            self.reactor,
            [ExternalAppClassConfig(APP, socket="/run/app.sock")],
            ipcDir=IpcDirConfig("/nonexistent/ipc"),
            installSignal=self.signals,
        )
        supervisor.privilegedStartService()
        supervisor.startService()
        self.reactor.advance(100)
        self.assertEqual(self.reactor.spawned, [])
        self.assertFalse(supervisor.isManaged(APP))
        self.assertEqual(supervisor.addressFor(APP), ApplicationAddress.unix("/run/app.sock"))
        self.successResultOf(supervisor.stopService())

    def test_duplicatePathRefused(self) -> None:
        """
        Two classes with one path are refused with 2.0's message.
        """
        error = self.assertRaises(
            AppClassError,
            ApplicationSupervisor,
            self.reactor,
            [AppClassConfig(APP), ExternalAppClassConfig(APP + "/.", host="h:1")],
        )
        self.assertIn("Redefinition of previously defined class", str(error))

    def test_sameSocketRefused(self) -> None:
        """
        Two classes cannot share one socket; nothing stays open after the
        refusal.
        """
        supervisor = self.supervisor(
            AppClassConfig(APP, socket="s"), AppClassConfig(OTHER, socket="s"), start=False
        )
        self.assertRaises(IPCError, supervisor.privilegedStartService)
        self.assertEqual(os.listdir(self.ipcDir), [])

    def test_startServiceAlonePreparesSockets(self) -> None:
        """
        C{startService} without C{privilegedStartService} opens the sockets
        itself.
        """
        supervisor = self.supervisor(AppClassConfig(APP), start=False)
        supervisor.startService()
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertTrue(os.path.exists(supervisor.addressFor(APP).path))


class RestartTests(SupervisorTestCase):
    """
    Deaths and restarts under L{txfastcgi.policy}.
    """

    def test_deathLongAfterStartRestartsAtOnce(self) -> None:
        """
        A process dying long after the class's last start is replaced at
        once, and the death is logged as a crash with the signal.
        """
        supervisor = self.supervisor(AppClassConfig(APP, restartDelay=5))
        self.reactor.advance(60)
        first = self.reactor.spawned[0]
        first.exit(signal=11)
        self.assertEqual(len(self.reactor.spawned), 2)
        [death] = self.deaths()
        self.assertEqual(death["log_level"], LogLevel.error)
        self.assertEqual(
            (death["appClass"], death["pid"], death["signal"], death["exitCode"]),
            (APP, first.originalPid, 11, None),
        )
        self.assertTrue(death["crash"])
        self.assertEqual(death["lifetime"], 60)
        self.assertEqual(death["wait"], 0)
        [restart] = self.logged(restart=True)
        self.assertEqual(restart["pid"], self.reactor.spawned[1].originalPid)
        self.assertEqual(supervisor.pids(APP), [self.reactor.spawned[1].originalPid])

    def test_restartWaitsForDelayAfterMostRecentStart(self) -> None:
        """
        No process starts sooner than C{-restart-delay} after the class's
        most recent start, of any of its processes.
        """
        self.supervisor(AppClassConfig(APP, processes=2, restartDelay=5))
        self.reactor.advance(2)
        self.reactor.spawned[0].exit(exitCode=1)
        self.reactor.advance(2.9)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.spawned), 3)
        # The other one dies at t=6: due at 5 + 5 = 10.
        self.reactor.advance(1)
        self.reactor.spawned[1].exit(exitCode=1)
        self.reactor.advance(3.9)
        self.assertEqual(len(self.reactor.spawned), 3)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.spawned), 4)
        self.assertEqual(self.starts(), [0, 0, 5, 10])

    def test_simultaneousDeathsSpacedByDelay(self) -> None:
        """
        When several processes die together their replacements start
        C{-restart-delay} apart.
        """
        self.supervisor(AppClassConfig(APP, processes=3, restartDelay=5))
        self.reactor.advance(1)
        for process in list(self.reactor.spawned):
            process.exit(signal=9)
        self.reactor.pump([1] * 20)
        self.assertEqual(self.starts(), [0, 0, 0, 5, 10, 15])

    def test_exitStatusLogged(self) -> None:
        """
        Exit status 0 is logged at info level as an exit; a non-zero status
        at error level, not as a crash.
        """
        self.supervisor(AppClassConfig(APP, restartDelay=0))
        self.reactor.advance(60)
        self.reactor.spawned[-1].exit(exitCode=0)
        self.reactor.advance(60)
        self.reactor.spawned[-1].exit(exitCode=3)
        clean, failed = self.deaths()
        self.assertEqual(
            (clean["log_level"], clean["exitCode"], clean["signal"], clean["crash"]),
            (LogLevel.info, 0, None, False),
        )
        self.assertEqual(
            (failed["log_level"], failed["exitCode"], failed["signal"], failed["crash"]),
            (LogLevel.error, 3, None, False),
        )
        self.assertIn("exited with status 3", failed["description"])

    def test_backoffDoublesCapsAndRecovers(self) -> None:
        """
        A class whose processes keep failing within C{-min-server-life}
        backs off: after three quick failures the spacing doubles with each
        failure up to 600 s; the change is logged when it begins and grows;
        a process that lives C{-min-server-life} ends it (logged), and the
        normal delay applies again.
        """
        self.supervisor(AppClassConfig(APP, restartDelay=1, minServerLife=30))
        for _ in range(14):
            # Each process fails as soon as it starts.
            self.reactor.spawned[-1].exit(exitCode=1)
            self.runNextTimer()
        starts = self.starts()
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        self.assertEqual(
            gaps, [1, 1, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]
        )
        changes = [
            (e["backoffChange"], e["backoff"], e["log_level"])
            for e in self.events
            if "backoffChange" in e
        ]
        self.assertEqual(changes[0], ("began", 2.0, LogLevel.warn))
        self.assertEqual([c[0] for c in changes], ["began"] + ["grew"] * 9)
        self.assertEqual(changes[-1][1], 600.0)
        # The last process lives longer than minServerLife.
        self.reactor.advance(30)
        self.reactor.spawned[-1].exit(signal=11)
        ended = self.logged(backoffChange="ended")
        self.assertEqual(len(ended), 1)
        self.assertEqual(ended[0]["log_level"], LogLevel.info)
        self.assertEqual(ended[0]["previousBackoff"], 600.0)
        self.assertEqual(len(self.reactor.spawned), 16)  # at once
        self.reactor.spawned[-1].exit(exitCode=1)
        self.reactor.advance(0.9)
        self.assertEqual(len(self.reactor.spawned), 16)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.spawned), 17)

    def test_cleanExitsDoNotBackOff(self) -> None:
        """
        Processes exiting with status 0 are restarted at the delay's pace,
        however young they die: an exit is not a failure.
        """
        self.supervisor(AppClassConfig(APP, restartDelay=0.5))
        for _ in range(10):
            self.reactor.spawned[-1].exit(exitCode=0)
            self.reactor.advance(0.5)
        starts = self.starts()
        gaps = [round(b - a, 6) for a, b in zip(starts, starts[1:])]
        self.assertEqual(gaps, [0.5] * 10)
        self.assertEqual([e for e in self.events if "backoffChange" in e], [])

    def test_spawnFailureRetriedWithoutLooping(self) -> None:
        """
        When C{spawnProcess} itself fails the error is logged and the start
        is retried no sooner than L{SPAWN_RETRY_DELAY}, even with
        C{-restart-delay 0}; once it works, the process runs.
        """
        self.reactor.spawnError = OSError(2, "No such file or directory")
        supervisor = self.supervisor(AppClassConfig(APP, restartDelay=0))
        failures = self.logged(appClass=APP, executable=APP)
        self.assertEqual(len(failures), 1)
        self.assertEqual(failures[0]["log_level"], LogLevel.error)
        self.assertIn("No such file", failures[0]["error"])
        self.reactor.advance(SPAWN_RETRY_DELAY * 0.99)
        self.assertEqual(len(self.logged(appClass=APP, executable=APP)), 1)
        self.reactor.advance(SPAWN_RETRY_DELAY * 0.01)
        self.assertEqual(len(self.logged(appClass=APP, executable=APP)), 2)
        for _ in range(10):
            self.reactor.advance(SPAWN_RETRY_DELAY)
        self.assertLessEqual(len(self.logged(appClass=APP, executable=APP)), 8)
        self.reactor.spawnError = None
        self.reactor.advance(600)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertEqual(len(supervisor.pids(APP)), 1)

    def test_outputLoggedLineByLine(self) -> None:
        """
        stdout and stderr are logged line by line with the class, pid and
        stream; a last line without newline is logged before the death;
        long lines are split and undecodable bytes escaped.
        """
        self.supervisor(AppClassConfig(APP))
        process = self.reactor.spawned[0]
        protocol = process.protocol
        protocol.outReceived(b"hel")
        protocol.outReceived(b"lo\r\nwor")
        protocol.errReceived(b"oops \xff\n")
        protocol.errReceived(b"x" * (MAX_LINE_LENGTH + 10) + b"\n")
        lines = [(e["stream"], e["line"]) for e in self.events if "stream" in e]
        self.assertEqual(
            lines,
            [
                ("stdout", "hello"),
                ("stderr", "oops \\xff"),
                ("stderr", "x" * MAX_LINE_LENGTH),
                ("stderr", "x" * 10),
            ],
        )
        for event in self.logged(stream="stderr"):
            self.assertEqual((event["appClass"], event["pid"]), (APP, process.originalPid))
            self.assertEqual(event["log_level"], LogLevel.warn)
        process.exit(exitCode=2)
        tail = [e for e in self.events if e.get("line") == "wor" or "description" in e]
        self.assertEqual([("line" in e) for e in tail], [True, False])

    def test_pipesHeldOpenAreClosedAfterGrace(self) -> None:
        """
        A process that exited while something it left behind holds its
        pipes is handled L{PIPE_GRACE} seconds later: the pipes are closed.
        """
        self.supervisor(AppClassConfig(APP, restartDelay=0))
        self.reactor.advance(10)
        process = self.reactor.spawned[0]
        process.exit(exitCode=1, closePipes=False)
        self.assertEqual(self.deaths(), [])
        self.reactor.advance(PIPE_GRACE)
        self.assertFalse(process.pipesOpen)
        self.assertEqual(len(self.deaths()), 1)
        self.assertEqual(len(self.reactor.spawned), 2)


class StopTests(SupervisorTestCase):
    """
    L{ApplicationSupervisor.stopService}.
    """

    def test_termThenKillAfterGrace(self) -> None:
        """
        Stopping sends SIGTERM to every process and SIGKILL to those still
        alive after the grace; the Deferred fires only when all have exited,
        then the socket file is gone.
        """
        self.reactor.termDelay = None  # ignores SIGTERM
        supervisor = self.supervisor(AppClassConfig(APP, processes=2), stopGrace=3)
        path = supervisor.addressFor(APP).path
        self.assertTrue(os.path.exists(path))
        d = supervisor.stopService()
        self.assertEqual([p.signals for p in self.reactor.spawned], [["TERM"], ["TERM"]])
        self.reactor.advance(2.9)
        self.assertNoResult(d)
        self.assertEqual([p.signals for p in self.reactor.spawned], [["TERM"], ["TERM"]])
        self.reactor.advance(0.1)
        self.assertEqual(
            [p.signals for p in self.reactor.spawned], [["TERM", "KILL"], ["TERM", "KILL"]]
        )
        self.successResultOf(d)
        self.assertFalse(os.path.exists(path))
        self.assertEqual(len(self.logged(appClass=APP, stopGrace=3)), 2)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(supervisor.state, "stopped")

    def test_waitsForEveryExit(self) -> None:
        """
        The stop Deferred waits for the slowest process; no SIGKILL is sent
        to processes that exit within the grace; their ends are logged as
        stops, not deaths, and nothing is restarted.
        """
        supervisor = self.supervisor(AppClassConfig(APP, processes=2, restartDelay=0))
        first, second = self.reactor.spawned
        first.termDelay, second.termDelay = 1, 2
        d = supervisor.stopService()
        self.reactor.advance(1.5)
        self.assertNoResult(d)
        self.assertTrue(os.path.exists(supervisor.addressFor(APP).path))
        self.reactor.advance(0.5)
        self.successResultOf(d)
        self.assertEqual([p.signals for p in self.reactor.spawned], [["TERM"], ["TERM"]])
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertEqual(self.deaths(), [])
        self.assertEqual(len(self.logged(appClass=APP, signal=15)), 2)

    def test_pendingRestartCancelled(self) -> None:
        """
        A restart waiting for its delay is cancelled by the stop, and no
        timer is left behind.
        """
        supervisor = self.supervisor(AppClassConfig(APP, restartDelay=5))
        self.reactor.spawned[0].exit(signal=9)
        d = supervisor.stopService()
        self.successResultOf(d)
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(os.listdir(self.ipcDir), [])

    def test_giveUpOnUnkillable(self) -> None:
        """
        A process that survives SIGKILL (stuck in the kernel) does not hang
        the stop forever: after C{killTimeout} the Deferred fires with an
        error naming the pid.
        """
        self.reactor.termDelay = None
        supervisor = self.supervisor(AppClassConfig(APP), stopGrace=1, killTimeout=2)
        process = self.reactor.spawned[0]
        process.killable = False
        d = supervisor.stopService()
        self.reactor.advance(2.9)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        self.successResultOf(d)
        [error] = [
            e
            for e in self.logged(appClass=APP, pid=process.originalPid)
            if e["log_level"] is LogLevel.error
        ]
        self.assertIn("SIGKILL", error["log_format"])

    def test_stopTwice(self) -> None:
        """
        A second C{stopService} while stopping fires with the first.
        """
        supervisor = self.supervisor(AppClassConfig(APP))
        first = supervisor.stopService()
        second = supervisor.stopService()
        self.assertNoResult(second)
        self.reactor.advance(1)
        self.successResultOf(first)
        self.successResultOf(second)

    def test_stopBeforeStart(self) -> None:
        """
        Stopping a supervisor whose sockets are open but whose processes
        were never started closes the sockets.
        """
        supervisor = self.supervisor(AppClassConfig(APP), start=False)
        supervisor.privilegedStartService()
        self.assertEqual(len(os.listdir(self.ipcDir)), 1)
        self.successResultOf(supervisor.stopService())
        self.assertEqual(os.listdir(self.ipcDir), [])


class StatusTests(SupervisorTestCase):
    """
    L{ApplicationSupervisor.status}, C{statusLines} and the status signal.
    """

    def test_signalHandlerInstalledWhileRunning(self) -> None:
        """
        The service installs a SIGUSR1 handler that logs the status, and
        removes it when it stops.
        """
        supervisor = self.supervisor(AppClassConfig(APP))
        assert self.signals.installed is not None
        signum, callback = self.signals.installed
        self.assertEqual(signum, signal.SIGUSR1)
        callback()
        lines = [e["statusLine"] for e in self.events if "statusLine" in e]
        self.assertEqual(lines, supervisor.statusLines())
        d = supervisor.stopService()
        self.assertIsNone(self.signals.installed)
        self.assertEqual(self.signals.uninstalls, 1)
        self.reactor.advance(1)
        self.successResultOf(d)

    def test_noSignal(self) -> None:
        """
        C{statusSignal=None} installs nothing.
        """
        self.supervisor(AppClassConfig(APP), statusSignal=None)
        self.assertIsNone(self.signals.installed)

    def test_statusReportsEveryClass(self) -> None:
        """
        The status lists every class: pids and uptimes, starts, restarts,
        back-off and the next start of a managed class; the address of an
        external one.
        """
        supervisor = self.supervisor(
            AppClassConfig(APP, processes=2, restartDelay=0),
            ExternalAppClassConfig(OTHER, host="127.0.0.1:9000"),
        )
        self.reactor.advance(10)
        first, second = self.reactor.spawned
        managed, external = supervisor.status()
        self.assertEqual(
            [(p.pid, p.uptime) for p in managed.processes],
            [(first.originalPid, 10), (second.originalPid, 10)],
        )
        self.assertEqual((managed.starts, managed.restarts, managed.waiting), (2, 0, 0))
        self.assertFalse(external.managed)
        self.assertEqual(external.address, "tcp:127.0.0.1:9000")
        # Four quick failures (restarts at once for the first three): a
        # back-off of 2 s from the last start, at 11.
        for _ in range(4):
            self.reactor.spawned[-1].exit(exitCode=1)
            self.reactor.advance(0.5)
        managed, external = supervisor.status()
        self.assertEqual((managed.quickFailures, managed.backoff), (4, 2.0))
        self.assertEqual((managed.starts, managed.restarts, managed.waiting), (5, 3, 1))
        self.assertEqual(managed.nextStartIn, 1.0)
        lines = supervisor.statusLines()
        self.assertEqual(len(lines), 3)
        self.assertIn("1 of 2 running", lines[1])
        self.assertIn(f"(pid {first.originalPid} up 12 s)", lines[1])
        self.assertIn("5 starts, 3 restarts", lines[1])
        self.assertIn("backing off (4 quick failures in a row, 2 s between starts)", lines[1])
        self.assertIn("1 waiting, next start in 1 s", lines[1])
        self.assertEqual(
            lines[2], f"ExternalAppClass {OTHER} (tcp:127.0.0.1:9000): not managed"
        )

    def test_installSignalHandlerChains(self) -> None:
        """
        L{installSignalHandler} runs the callback through the reactor's
        C{callFromThread}, calls the Python handler installed before it
        (twistd's log rotation), and its removal restores that handler.
        """
        calls: list[str] = []
        scheduled: list[Callable[[], None]] = []

        class ThreadedReactor:
            def callFromThread(self, f: Callable[[], None]) -> None:
                scheduled.append(f)

        def previous(signum: int, frame: object) -> None:
            calls.append("previous")

        original = signal.signal(signal.SIGUSR2, previous)
        self.addCleanup(signal.signal, signal.SIGUSR2, original)
        uninstall = installSignalHandler(ThreadedReactor())(
            signal.SIGUSR2, lambda: calls.append("status")
        )
        os.kill(os.getpid(), signal.SIGUSR2)
        self.assertEqual(calls, ["previous"])
        [callback] = scheduled
        callback()
        self.assertEqual(calls, ["previous", "status"])
        uninstall()
        self.assertIs(signal.getsignal(signal.SIGUSR2), previous)


def _freePort() -> int:
    """
    @return: a TCP port on 127.0.0.1 that was free a moment ago.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port

