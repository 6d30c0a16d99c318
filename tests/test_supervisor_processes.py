# -*- test-case-name: tests.test_supervisor_processes -*-
"""
Tests for L{txfastcgi.supervisor} with real processes: the libfcgi responder
(tests/apps/responder.c), C{examples/echo}, C{tests/apps/crash.py},
C{tests/apps/linger.py}, and a real C{twistd}.  Unix sockets in a short
temporary FastCgiIpcDir and loopback TCP only; every await is bounded.

Interpreter choice for the Python applications: their C{#!/usr/bin/env
python3} line is kept, and the class gets C{-initial-env
PATH=<venv>/bin:/usr/bin:/bin} (the environment is otherwise empty), so
C{env} finds the virtualenv's C{python3}, which has Twisted for
C{examples/echo}; argv[0] stays the script's full path.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped]
from twisted.web.http import HTTPChannel
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure

from tests import peers
from txfastcgi.appclass import AppClassConfig, IpcDirConfig
from txfastcgi.client import FastCGIRequest, RequestResult
from txfastcgi.pool import ConnectionPool
from txfastcgi.supervisor import ApplicationSupervisor

TIMEOUT = 10.0
"""Seconds any one await may take."""

ECHO = str(peers.REPO_ROOT / "examples" / "echo")
"""The echo example (a Python script)."""

CRASH = str(peers.APPS_DIRECTORY / "crash.py")
"""A program that exits at once (tests/apps/crash.py)."""

LINGER = str(peers.APPS_DIRECTORY / "linger.py")
"""A program slow to stop (tests/apps/linger.py)."""

PYTHON_PATH = f"PATH={os.path.dirname(sys.executable)}:/usr/bin:/bin"
"""The C{-initial-env} that lets C{#!/usr/bin/env python3} find this venv."""


def getReactor() -> Any:
    """
    The reactor pytest-twisted installed (imported late, see conftest).
    """
    from twisted.internet import reactor

    return reactor


async def bounded(d: Deferred[Any], seconds: float = TIMEOUT) -> Any:
    """
    Await C{d}, failing with a timeout rather than hanging.
    """
    return await d.addTimeout(seconds, getReactor())


async def sleep(seconds: float) -> None:
    """
    Let the reactor run for C{seconds}.
    """
    await deferLater(getReactor(), seconds, lambda: None)


async def waitFor(
    predicate: Callable[[], bool], what: str, seconds: float = TIMEOUT
) -> None:
    """
    Poll C{predicate} every 20 ms until it is true.

    @raise AssertionError: naming C{what} if it is still false after
        C{seconds}.
    """
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await sleep(0.02)


def procStat(pid: int) -> list[str]:
    """
    The fields of C{/proc/<pid>/stat} after the command name: index 0 is
    the state, 1 the parent pid, 16 the niceness.
    """
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cmdline(pid: int) -> list[str]:
    """
    A process's argv, from C{/proc}.
    """
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [arg.decode() for arg in f.read().split(b"\0")[:-1]]


def children() -> set[int]:
    """
    The pids of this process's children (zombies included).
    """
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(procStat(int(entry))[1]) == me:
                    found.add(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def alive(pid: int) -> bool:
    """
    Whether C{pid} exists and is not a zombie.
    """
    try:
        return procStat(pid)[0] != "Z"
    except OSError:
        return False


class Events:
    """
    Log events captured from the global publisher.
    """

    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def __call__(self, event: LogEvent) -> None:
        self.events.append(event)

    def having(self, **fields: object) -> list[LogEvent]:
        """
        The events with all the given field values.
        """
        return [
            e for e in self.events if all(k in e and e[k] == v for k, v in fields.items())
        ]

    def starts(self, path: str) -> list[LogEvent]:
        """
        The start and restart events of a class.
        """
        return [e for e in self.having(appClass=path) if "restart" in e]


@pytest.fixture
def events() -> Iterator[Events]:
    """
    Capture log events during the test.
    """
    observer = Events()
    globalLogPublisher.addObserver(observer)
    yield observer
    globalLogPublisher.removeObserver(observer)


@pytest.fixture(autouse=True)
def noDelayedCallsLeft() -> Iterator[None]:
    """
    Each test leaves no txfastcgi timer behind in the session's reactor.
    """
    yield
    left = [
        call
        for call in getReactor().getDelayedCalls()
        if call.active()
        and "txfastcgi" in repr(call.func)
        # twisted.web's timers of an HTTP connection (its channel is a
        # txfastcgi.site.DirectWriteChannel): Twisted's, not ours.
        and not isinstance(getattr(call.func, "__self__", None), HTTPChannel)
    ]
    assert left == [], left


def startSupervisor(ipcDir: str, *classes: AppClassConfig) -> ApplicationSupervisor:
    """
    Start a supervisor for C{classes} the way twistd would, without a
    status signal handler (that is process-wide).
    """
    supervisor = ApplicationSupervisor(
        getReactor(), classes, ipcDir=IpcDirConfig(ipcDir), statusSignal=None
    )
    supervisor.privilegedStartService()
    supervisor.startService()
    return supervisor


async def stopAndCheck(
    supervisor: ApplicationSupervisor, before: set[int], spawned: set[int]
) -> None:
    """
    Stop the supervisor and check that none of its processes and none of
    its socket files is left.

    @param before: this process's children before the test.
    @param spawned: every pid the supervisor started.
    """
    paths = [
        supervisor.addressFor(p).path
        for p in supervisor.paths
        if supervisor.isManaged(p) and supervisor.addressFor(p).kind == "unix"
    ]
    await bounded(supervisor.stopService(), 15)
    after = children()
    assert not (after & spawned), after & spawned
    assert after <= before, after - before
    assert [p for p in spawned if alive(p)] == []
    assert [p for p in paths if os.path.exists(p)] == []


def responderParams(query: str) -> list[tuple[bytes, bytes]]:
    """
    Minimal responder params.
    """
    params = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "/app",
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    return [(k.encode(), v.encode()) for k, v in params.items()]


async def get(pool: ConnectionPool, query: str) -> tuple[dict[str, str], bytes]:
    """
    One request through C{pool}.

    @return: the response headers (names lower-cased) and body.
    """
    chunks: list[bytes] = []
    request = FastCGIRequest(responderParams(query), writeStdout=chunks.append)
    result = await bounded(pool.request(request))
    assert result == RequestResult(0, 0)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    return headers, body


def newPool(supervisor: ApplicationSupervisor, path: str) -> ConnectionPool:
    """
    A pool with one connection per request, pointed at the class.
    """
    return ConnectionPool(
        getReactor(), supervisor.addressFor(path), keepAlive=False, probeValues=False
    )


@pytest_twisted.ensureDeferred
async def test_responderProcessesServeAndAreReplaced(
    responderBinary: str, peerDir: str, events: Events
) -> None:
    """
    Two libfcgi responders started with C{-priority 3} run with argv[0] the
    full path, the executable's directory as working directory, exactly
    the initial environment, the server's niceness plus 3, and no open
    descriptor but the listening socket and the output pipes; both serve
    requests through a pool pointed at C{addressFor}; one killed with
    SIGKILL is logged as a crash with its pid and replaced no sooner than
    the restart delay after the last start, and the replacement serves.
    Stopping leaves no process and no socket file.
    """
    before = children()
    path = responderBinary
    supervisor = startSupervisor(
        peerDir,
        AppClassConfig(
            path, processes=2, restartDelay=0.5, priority=3, initialEnv=("STATE=TEXAS",)
        ),
    )
    pool = newPool(supervisor, path)
    spawned: set[int] = set()
    try:
        pids = supervisor.pids(path)
        spawned.update(pids)
        assert len(pids) == 2
        # nice execs the responder in the same process.
        await waitFor(
            lambda: all(cmdline(pid) == [path] for pid in pids), "nice to exec"
        )
        expectedNice = min(19, os.nice(0) + 3)
        for pid in pids:
            assert os.readlink(f"/proc/{pid}/cwd") == os.path.dirname(path)
            assert int(procStat(pid)[16]) == expectedNice
            with open(f"/proc/{pid}/environ", "rb") as f:
                assert f.read() == b"STATE=TEXAS\0"
            # Only the listening socket and the two output pipes.
            assert sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2"]
            assert os.readlink(f"/proc/{pid}/fd/0").startswith("socket:")
            assert os.readlink(f"/proc/{pid}/fd/1").startswith("pipe:")

        answers = await bounded(
            gatherResults([Deferred.fromCoroutine(get(pool, "sleep=300")) for _ in range(2)])
        )
        assert {headers["x-pid"] for headers, _ in answers} == {str(p) for p in pids}

        victim = pids[0]
        os.kill(victim, signal.SIGKILL)
        await waitFor(lambda: len(events.starts(path)) == 3, "the replacement")
        [death] = events.having(appClass=path, pid=victim, signal=9)
        assert death["crash"] is True
        assert "crashed (signal 9)" in death["description"]
        first, _, replacement = events.starts(path)
        assert replacement["restart"] is True
        assert replacement["startedAt"] - first["startedAt"] >= 0.5
        newPid = replacement["pid"]
        spawned.add(newPid)
        assert sorted(supervisor.pids(path)) == sorted([pids[1], newPid])

        seen: set[str] = set()
        for _ in range(10):
            batch = await bounded(
                gatherResults(
                    [Deferred.fromCoroutine(get(pool, "sleep=100")) for _ in range(2)]
                )
            )
            seen.update(headers["x-pid"] for headers, _ in batch)
            if str(newPid) in seen:
                break
        assert str(newPid) in seen
    finally:
        await bounded(pool.closeAll())
        await stopAndCheck(supervisor, before, spawned)


@pytest_twisted.ensureDeferred
async def test_requestWhileDownAnsweredAfterRestart(
    responderBinary: str, peerDir: str, events: Events
) -> None:
    """
    While the only process is down, the socket stays open: a request sent
    then waits in the listen queue and is answered by the replacement.
    """
    before = children()
    path = responderBinary
    supervisor = startSupervisor(peerDir, AppClassConfig(path, restartDelay=1.5))
    pool = newPool(supervisor, path)
    spawned = set(supervisor.pids(path))
    try:
        [victim] = supervisor.pids(path)
        os.kill(victim, signal.SIGKILL)
        await waitFor(lambda: supervisor.pids(path) == [], "the death")
        sent = time.monotonic()
        answer = Deferred.fromCoroutine(get(pool, ""))
        await sleep(0.3)
        assert not answer.called
        headers, body = await bounded(answer)
        assert body == b"Hello, world\n"
        [newPid] = supervisor.pids(path)
        spawned.add(newPid)
        assert headers["x-pid"] == str(newPid)
        assert time.monotonic() - sent >= 0.5
    finally:
        await bounded(pool.closeAll())
        await stopAndCheck(supervisor, before, spawned)


@pytest_twisted.ensureDeferred
async def test_echoInitialEnvironment(peerDir: str, events: Events) -> None:
    """
    C{examples/echo} (a Python script, run through its C{#!/usr/bin/env
    python3} line with PATH from C{-initial-env}), on a C{-port} socket,
    shows C{-initial-env STATE=TEXAS} in its initial environment and nothing
    it was not given; its argv[0] is the script's full path.
    """
    before = children()
    port = peers.freePort()
    supervisor = startSupervisor(
        peerDir,
        AppClassConfig(
            ECHO, processes=2, port=port, initialEnv=("STATE=TEXAS", PYTHON_PATH)
        ),
    )
    assert str(supervisor.addressFor(ECHO)) == f"tcp:127.0.0.1:{port}"
    pool = newPool(supervisor, ECHO)
    spawned = set(supervisor.pids(ECHO))
    try:
        headers, body = await get(pool, "format=text")
        text = body.decode()
        initial = text.split("Initial environment:\n", 1)[1].split()
        assert "STATE=TEXAS" in initial
        assert PYTHON_PATH in initial
        assert not [v for v in initial if v.startswith("HOME=")]
        pid = int(re.search(r"Process ID: (\d+)", text).group(1))  # type: ignore[union-attr]
        assert pid in spawned
        assert cmdline(pid)[1] == ECHO
    finally:
        await bounded(pool.closeAll())
        await stopAndCheck(supervisor, before, spawned)


@pytest_twisted.ensureDeferred
async def test_immediateExitRestartedAtDelayPace(peerDir: str, events: Events) -> None:
    """
    A program that exits at once is restarted at the restart delay's pace
    (about every 0.5 s), not in a tight loop; each exit is logged with its
    pid, and its stdout and stderr lines appear in the log tagged with the
    same pid.
    """
    before = children()
    supervisor = startSupervisor(
        peerDir,
        AppClassConfig(
            CRASH, restartDelay=0.5, initialEnv=("CRASH_STATUS=0", PYTHON_PATH)
        ),
    )
    spawned: set[int] = set()
    try:
        await sleep(2.2)
        starts = events.starts(CRASH)
        spawned.update(e["pid"] for e in starts)
        assert 3 <= len(starts) <= 6, len(starts)
        times = [e["startedAt"] for e in starts]
        assert all(b - a >= 0.5 - 1e-6 for a, b in zip(times, times[1:])), times
        deaths = [e for e in events.having(appClass=CRASH, exitCode=0) if "description" in e]
        assert deaths
        for death in deaths:
            pid = death["pid"]
            [err] = events.having(appClass=CRASH, pid=pid, stream="stderr")
            assert err["line"] == f"crash.py pid {pid} exiting with status 0"
            [out] = events.having(appClass=CRASH, pid=pid, stream="stdout")
            assert out["line"] == f"crash.py pid {pid} started"
            # Its output is logged before its death.
            assert events.events.index(err) < events.events.index(death)
    finally:
        await stopAndCheck(supervisor, before, spawned)
        spawned.update(e["pid"] for e in events.starts(CRASH))
        assert [p for p in spawned if alive(p)] == []


class _Twistd(ProcessProtocol):
    """
    Collects a twistd's output and tells when it ended.
    """

    def __init__(self) -> None:
        self.output = b""
        self.reason: Failure | None = None
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    def errReceived(self, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Failure) -> None:
        self.reason = reason
        self.ended.callback(None)


TAC = """\
from twisted.application import service
from twisted.internet import reactor
from txfastcgi.appclass import AppClassConfig, IpcDirConfig
from txfastcgi.supervisor import ApplicationSupervisor

application = service.Application("supervisor-test")
ApplicationSupervisor(
    reactor,
    [
        AppClassConfig({responderBinary!r}, processes=2, restartDelay=0.5),
        AppClassConfig(
            {linger!r},
            initialEnv=("LINGER_SECONDS=never", {pythonPath!r}),
        ),
    ],
    ipcDir=IpcDirConfig({ipcDir!r}),
    stopGrace=1,
).setServiceParent(application)
"""


@pytest_twisted.ensureDeferred
async def test_twistdStopLeavesNoOrphans(responderBinary: str, peerDir: str) -> None:
    """
    Under a real C{twistd}, SIGUSR1 logs the status, and SIGTERM makes the
    server stop the applications before the reactor stops, waiting for one
    that ignores SIGTERM until SIGKILL ends it: when twistd has exited none
    of its application processes is alive and no socket file is left.
    """
    tac = os.path.join(peerDir, "app.tac")
    with open(tac, "w") as f:
        f.write(
            TAC.format(
                responderBinary=responderBinary,
                linger=LINGER,
                ipcDir=peerDir,
                pythonPath=PYTHON_PATH,
            )
        )
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    protocol = _Twistd()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(peers.REPO_ROOT),
    }
    process = getReactor().spawnProcess(
        protocol,
        twistd,
        [twistd, "-n", "--pidfile=", "--logfile=-", "-y", tac],
        env=env,
        path=peerDir,
    )
    started = re.compile(rb"started with pid (\d+)")
    pids: list[int] = []
    try:
        await waitFor(lambda: len(started.findall(protocol.output)) == 3, "three starts")
        pids = [int(p) for p in started.findall(protocol.output)]
        await waitFor(lambda: b"linger.py pid" in protocol.output, "linger.py to wait")
        sockets = [s.decode() for s in re.findall(rb"listening on unix:(\S+)", protocol.output)]
        assert len(sockets) == 2
        assert all(os.path.exists(s) for s in sockets)
        assert all(alive(p) for p in pids)
        process.signalProcess(signal.SIGUSR1)
        await waitFor(lambda: b"2 of 2 running" in protocol.output, "the status")
        stopping = time.monotonic()
        process.signalProcess("TERM")
        await bounded(protocol.ended, 15)
        assert time.monotonic() - stopping >= 1
    finally:
        if not protocol.ended.called:
            process.signalProcess("KILL")
            await bounded(protocol.ended)
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    output = protocol.output.decode(errors="replace")
    assert [p for p in pids if alive(p)] == [], output
    assert "sent SIGKILL" in output, output
    assert "Application supervisor stopped" in output, output
    assert [s for s in sockets if os.path.exists(s)] == []
