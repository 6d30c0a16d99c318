# -*- test-case-name: tests.test_supervisor -*-
"""
The supervisor of managed FastCGI applications (C{AppClass}): it creates
their listening sockets, starts C{-processes} copies of each, logs their
output, restarts them when they die, and stops them all at shutdown.

L{ApplicationSupervisor} is a L{twisted.application.service.Service}; each
process has its own L{ProcessProtocol} (L{_AppProcess}); when to restart is
decided by the pure functions of L{txfastcgi.policy}, the timers are the
supervisor's.  C{ExternalAppClass}es are only remembered, for
L{ApplicationSupervisor.addressFor}.

Life cycle
==========

  1. B{Construction} checks the classes (no path twice) and remembers them.
     Nothing is created yet.
  2. B{privilegedStartService} (twistd calls it while still root, after
     daemonising, before C{--uid/--gid} drops privileges) prepares the
     FastCgiIpcDir (if a class uses a Unix socket) and creates one listening
     socket per class with L{txfastcgi.ipc}, owned by the run-as user, so
     that the server can still connect to it later.  Generated socket names
     (C{OM_WS_<n>.<pid>}) are fixed here, with the server's pid (or the
     C{serverPid} given), unless L{ApplicationSupervisor.addressFor} was
     called earlier, which fixes them then.
  3. B{startService} resolves each class's environment, installs the status
     signal handler (SIGUSR1) and starts every class's processes: together
     (the seed), or C{-init-start-delay} seconds apart when the class has
     one.  (It runs step 2 first if nobody did.)
  4. B{While running}, a death is logged (crash or exit, status or signal,
     lifetime, what happens next) and the slot waits for a start under the
     policy: never sooner than C{-restart-delay} after the class's most
     recent start, longer when a class keeps failing (back-off, logged when
     it begins, grows and ends).  The listening socket stays open while no
     process is up, so connections wait in its queue and are served when a
     process is back.
  5. B{stopService} cancels pending starts, sends SIGTERM to every process,
     SIGKILL to those still alive after C{stopGrace} seconds, and returns a
     Deferred that fires when every process has exited (and its output pipes
     are closed), after the sockets are closed and their files removed.  If
     a process survives even SIGKILL for C{killTimeout} more seconds (stuck
     in the kernel), the Deferred fires anyway with an error logged naming
     it, so shutdown cannot hang.  twistd runs C{stopService} as a "before
     shutdown" trigger and waits for the Deferred, so a SIGTERM or SIGINT to
     the server leaves no application process behind.  Signals go to each
     process, not to its process group: processes an application forks
     itself are its own to stop.

How a process is started
========================

C{reactor.spawnProcess} with:

  - argv C{[path]} (mod_fastcgi: argv[0] is the full path) and executable
    C{path};
  - the class's listening socket as fd 0 (C{FCGI_LISTENSOCK_FILENO}) and
    pipes on fds 1 and 2: C{childFDs={0: fd, 1: "r", 2: "r"}}; Twisted
    closes every other descriptor in the child;
  - the environment exactly the class's C{-initial-env} pairs (SPEC.md
    Decision 5; an empty dict, never C{None}, which would mean "inherit");
  - the working directory of the executable's directory;
  - the class's uid/gid when configured (only a server still running as root
    can use them).

B{-priority N} (a niceness increment relative to the server) is applied by
running the application through C{nice}: executable C{/usr/bin/nice}, argv
C{[nice, "-n", N, path]}.  C{nice} sets the niceness and C{exec}s the
application in the same process (same pid), so the application's argv[0] is
still the full path and nothing stays between us and it.  Twisted's
C{spawnProcess} has no niceness argument and runs no user code in the child
(with C{posix_spawnp} it cannot), and setting the priority from the parent
after the spawn would race with the application's own start-up (children it
forks early would keep the old niceness).  The path of C{nice} is a
constructor argument; it must exist when a class has C{-priority} above 0.
The niceness is relative: a server running at niceness 2 gives C{-priority
5} processes niceness 7 (at most 19).

B{Interpreted applications}: the environment has no PATH unless
C{-initial-env} gives one, so a script whose first line is C{#!/usr/bin/env
python3} finds only the C{python3} of C{env}'s built-in default path.  Give
C{-initial-env PATH=/opt/app/venv/bin:/usr/bin:/bin} (or C{-initial-env
PATH} to copy the server's), or use an absolute interpreter in the C{#!}
line.  Either way the kernel passes the script's full path to the
interpreter, so the script's argv[0] is the full path.

Output and logs
===============

Each line an application writes to stdout or stderr is logged (stdout at
info, stderr at warn level) with the fields C{appClass} (the path), C{pid},
C{stream} (C{"stdout"} or C{"stderr"}) and C{line}; lines longer than
L{MAX_LINE_LENGTH} bytes are split; bytes that are not UTF-8 are shown
escaped (SPEC.md Decision 6); the texts are L{txfastcgi.processlog}'s,
shared with dynamic applications.  A death is handled once the process has
exited I{and} its pipes are closed, so its last output is logged before the
line announcing its death; if a process it left behind keeps the pipes open,
they are closed after L{PIPE_GRACE} seconds.

Operator events (all with C{appClass}; see L{ApplicationSupervisor}):
start and restart (info, C{pid}), death (error for a crash or a non-zero
exit, info for exit status 0; C{pid}, C{exitCode}, C{signal}, C{lifetime},
C{wait}, and C{description} from L{txfastcgi.policy.Decision.describe}),
back-off begun or raised (warn) and ended (info), a failed spawn (error),
and the stop sequence (info; error for a process that would not die).

Status
======

L{ApplicationSupervisor.status} returns one L{ClassStatus} per class
(managed or external): pids and uptimes, starts and restarts, the back-off,
when the next start is due.  L{ApplicationSupervisor.statusLines} renders
them, and L{ApplicationSupervisor.logStatus} logs the lines.  While the
service runs, the signal C{statusSignal} (SIGUSR1 by default) logs the
status.  The handler is installed through the C{installSignal} argument
(L{installSignalHandler} by default, which uses C{signal.signal}, defers the
work to the reactor with C{callFromThread}, and calls any Python handler
installed before it, so twistd's own SIGUSR1 log rotation still happens
when it logs to a file); it is removed when the service stops.  Pass
C{statusSignal=None} to install nothing, or another signal to avoid the
log rotation.
"""

from __future__ import annotations

import os
import signal as signalModule
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol, Union

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from txfastcgi._time import DelayedCall, TimeSource
from txfastcgi.appclass import (
    AppClassConfig,
    AppClassError,
    ExternalAppClassConfig,
    IpcDirConfig,
)
from txfastcgi.ipc import (
    ListeningSocket,
    SocketNameAllocator,
    SocketRegistry,
    prepareIpcDirectory,
)
from txfastcgi.policy import (
    BackoffChange,
    ClassHistory,
    DeathKind,
    Decision,
    RestartPolicy,
    nextStartTime,
    recordDeath,
    recordStart,
)
from txfastcgi.pool import ApplicationAddress
from txfastcgi.processlog import describeExit, logKill, logOutputLine

__all__ = [
    "DEFAULT_KILL_TIMEOUT",
    "DEFAULT_NICE",
    "DEFAULT_STOP_GRACE",
    "MAX_LINE_LENGTH",
    "PIPE_GRACE",
    "SPAWN_RETRY_DELAY",
    "ApplicationSupervisor",
    "ClassConfig",
    "ClassStatus",
    "ProcessOwner",
    "ProcessReactor",
    "ProcessStatus",
    "ProcessTransport",
    "SignalInstaller",
    "installSignalHandler",
]

DEFAULT_STOP_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL at shutdown."""

DEFAULT_KILL_TIMEOUT = 5.0
"""Seconds after SIGKILL before the stop gives up waiting for a process."""

DEFAULT_NICE = "/usr/bin/nice"
"""The C{nice} program used for C{-priority}."""

MAX_LINE_LENGTH = 4096
"""Output lines longer than this many bytes are logged in pieces."""

PIPE_GRACE = 1.0
"""
Seconds the output pipes of a process that exited may stay open (held by a
process it left behind) before they are closed and its death is handled.
"""

SPAWN_RETRY_DELAY = 1.0
"""
After C{spawnProcess} itself fails, the next attempt for the class waits at
least this long, whatever the policy says, so that a missing program cannot
make the supervisor loop.
"""

ClassConfig = Union[AppClassConfig, ExternalAppClassConfig]
"""A managed or an external application class."""

SignalInstaller = Callable[[int, Callable[[], None]], Callable[[], None]]
"""
Installs a handler: called with a signal number and a callback to run (in
the reactor thread) when the signal arrives; returns a function that removes
the handler again.
"""


class ProcessTransport(Protocol):
    """
    What the supervisor uses of L{twisted.internet.interfaces.IProcessTransport}.
    """

    pid: int | None

    def signalProcess(self, signalID: str | int) -> None:
        """
        Send a signal (C{"TERM"}, C{"KILL"} or a number).
        """

    def loseConnection(self) -> None:
        """
        Close the pipes to the process.
        """


class ProcessReactor(TimeSource, Protocol):
    """
    What the supervisor uses of a reactor: L{IReactorProcess.spawnProcess}
    and L{IReactorTime}.
    """

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
    ) -> Any:
        """
        Start a process.
        """


def installSignalHandler(reactor: object) -> SignalInstaller:
    """
    The default L{SignalInstaller}: C{signal.signal}, with the callback run
    through C{reactor.callFromThread} (safe from a signal handler), after
    calling the Python-level handler that was installed before (twistd's
    SIGUSR1 log rotation, for instance).  Outside the main thread, where
    Python cannot install handlers, it installs nothing.

    @param reactor: the reactor (an C{IReactorFromThreads}; without
        C{callFromThread}, C{callLater(0, ...)} is used).
    @return: the installer.
    """

    def install(signum: int, callback: Callable[[], None]) -> Callable[[], None]:
        previous = signalModule.getsignal(signum)

        def handler(number: int, frame: FrameType | None) -> None:
            if callable(previous):
                previous(number, frame)
            schedule = getattr(reactor, "callFromThread", None)
            if schedule is None:
                reactor.callLater(0, callback)  # type: ignore[attr-defined]
            else:
                schedule(callback)

        try:
            signalModule.signal(signum, handler)
        except ValueError:  # not the main thread
            return lambda: None

        def uninstall() -> None:
            if signalModule.getsignal(signum) is handler:
                signalModule.signal(signum, previous)

        return uninstall

    return install


@dataclass(frozen=True)
class ProcessStatus:
    """
    A running process of a managed class.

    @ivar pid: its process id.
    @ivar uptime: seconds since it was started.
    """

    pid: int
    uptime: float


@dataclass(frozen=True)
class ClassStatus:
    """
    The state of one application class, for operators.

    @ivar path: the class's path.
    @ivar managed: C{True} for an AppClass, C{False} for an
        ExternalAppClass (the other fields are then zero or empty).
    @ivar address: where the gateway connects, as a string.
    @ivar configured: C{-processes}.
    @ivar processes: the running processes, oldest first.
    @ivar starts: processes started since the service started.
    @ivar restarts: starts that replaced a dead process.
    @ivar waiting: processes waiting to be (re)started.
    @ivar nextStartIn: seconds until the next start is due, or C{None}.
    @ivar quickFailures: quick failures in a row (L{txfastcgi.policy}).
    @ivar backoff: the back-off in force, in seconds (C{0.0}: none).
    """

    path: str
    managed: bool
    address: str
    configured: int = 0
    processes: tuple[ProcessStatus, ...] = ()
    starts: int = 0
    restarts: int = 0
    waiting: int = 0
    nextStartIn: float | None = None
    quickFailures: int = 0
    backoff: float = 0.0

    def describe(self) -> str:
        """
        One line for an operator, e.g. C{"AppClass /srv/app (unix:/tmp/x): 2
        of 2 running (pid 10 up 5 s, pid 11 up 5 s); 2 starts, 0 restarts"}.

        @return: the line.
        """
        if not self.managed:
            return f"ExternalAppClass {self.path} ({self.address}): not managed"
        running = ", ".join(
            f"pid {p.pid} up {_seconds(p.uptime)}" for p in self.processes
        )
        line = (
            f"AppClass {self.path} ({self.address}): {len(self.processes)} of "
            f"{self.configured} running"
        )
        if running:
            line += f" ({running})"
        line += f"; {self.starts} starts, {self.restarts} restarts"
        if self.backoff:
            line += (
                f"; backing off ({self.quickFailures} quick failures in a row, "
                f"{_seconds(self.backoff)} between starts)"
            )
        if self.waiting:
            line += f"; {self.waiting} waiting"
            if self.nextStartIn is not None:
                line += f", next start in {_seconds(self.nextStartIn)}"
        return line


def _seconds(value: float) -> str:
    """
    @param value: seconds.
    @return: C{"5 s"}, C{"0.4 s"}.
    """
    if value >= 10 or value == int(value):
        return f"{int(round(value))} s"
    return f"{value:.1f} s"


class _LineSplitter:
    """
    Splits one output stream of a process into lines and hands each to
    C{emit}; bounded by L{MAX_LINE_LENGTH}.
    """

    def __init__(self, emit: Callable[[str], None]) -> None:
        """
        @param emit: called with each line (decoded, without its newline).
        """
        self._emit = emit
        self._buffer = b""

    def _line(self, raw: bytes) -> None:
        """
        @param raw: one line without its newline.
        """
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        self._emit(raw.decode("utf-8", "backslashreplace"))

    def feed(self, data: bytes) -> None:
        """
        @param data: bytes read from the pipe.
        """
        buffer = self._buffer + data
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        for raw in lines:
            while len(raw) > MAX_LINE_LENGTH:
                self._line(raw[:MAX_LINE_LENGTH])
                raw = raw[MAX_LINE_LENGTH:]
            self._line(raw)
        while len(self._buffer) >= MAX_LINE_LENGTH:
            self._line(self._buffer[:MAX_LINE_LENGTH])
            self._buffer = self._buffer[MAX_LINE_LENGTH:]

    def flush(self) -> None:
        """
        Emit an unfinished last line, if any.
        """
        if self._buffer:
            raw, self._buffer = self._buffer, b""
            self._line(raw)


class ProcessOwner(Protocol):
    """
    Who an L{_AppProcess} reports to: the L{ApplicationSupervisor}, or the
    dynamic application manager (L{txfastcgi.dynamic}), which reuses the
    same process protocol.
    """

    _clock: TimeSource

    def _logOutput(self, process: _AppProcess, stream: str, line: str) -> None:
        """
        Log one line of the process's output.
        """

    def _processEnded(
        self, process: _AppProcess, exitCode: int | None, signal: int | None
    ) -> None:
        """
        The process exited and its pipes are closed.
        """

    def _logKill(self, process: _AppProcess) -> None:
        """
        The process got SIGKILL after its grace.
        """


class _AppProcess(ProcessProtocol):
    """
    One process of a managed class (or of a dynamic application: the owner
    and the C{managed} value are then the dynamic manager's).

    States: running (after C{connectionMade}), exited (C{processExited}: the
    process is gone, its pipes may still be open), ended (C{processEnded}:
    the supervisor has been told, L{ended} has fired).

    @ivar managed: the class's state.
    @ivar startedAt: when it was spawned.
    @ivar pid: its process id (kept after it exits).
    @ivar stopping: whether the supervisor asked it to stop (its death is
        then not a failure and is not restarted).
    @ivar exitedAt: when it exited, or C{None}.
    @ivar ended: fires (with C{None}) once it has ended.
    """

    transport: ProcessTransport | None  # type: ignore[assignment]

    def __init__(self, supervisor: ProcessOwner, managed: Any, startedAt: float) -> None:
        """
        @param supervisor: who to tell about output and the end.
        @param managed: the class it belongs to (the owner's value: a
            C{_ManagedClass} for the supervisor).
        @param startedAt: when it is spawned.
        """
        self.supervisor = supervisor
        self.managed = managed
        self.startedAt = startedAt
        self.pid = 0
        self.stopping = False
        self.exitedAt: float | None = None
        self.ended: Deferred[None] = Deferred()
        self._reason: Failure | None = None
        self._pipeCall: DelayedCall | None = None
        self._killCall: DelayedCall | None = None
        self._stdout = _LineSplitter(lambda line: self._output("stdout", line))
        self._stderr = _LineSplitter(lambda line: self._output("stderr", line))

    def _output(self, stream: str, line: str) -> None:
        """
        Log a line of output.

        @param stream: C{"stdout"} or C{"stderr"}.
        @param line: the line.
        """
        self.supervisor._logOutput(self, stream, line)

    def connectionMade(self) -> None:
        """
        The process exists: remember its pid.
        """
        assert self.transport is not None
        self.pid = self.transport.pid or 0

    def outReceived(self, data: bytes) -> None:
        """
        @param data: from its stdout.
        """
        self._stdout.feed(data)

    def errReceived(self, data: bytes) -> None:
        """
        @param data: from its stderr.
        """
        self._stderr.feed(data)

    def processExited(self, reason: Failure) -> None:
        """
        The process is gone; give its pipes L{PIPE_GRACE} seconds to close.

        @param reason: L{ProcessDone} or L{ProcessTerminated}.
        """
        self.exitedAt = self.supervisor._clock.seconds()
        self._reason = reason
        self._cancelKill()
        self._pipeCall = self.supervisor._clock.callLater(
            PIPE_GRACE, self._closePipes
        )

    def _closePipes(self) -> None:
        """
        Something the process left behind holds its pipes: close our ends.
        """
        self._pipeCall = None
        if self.transport is not None:
            self.transport.loseConnection()

    def processEnded(self, reason: Failure) -> None:
        """
        The process exited and its pipes are closed: log what is left of its
        output, then tell the supervisor.

        @param reason: L{ProcessDone} or L{ProcessTerminated}.
        """
        if self._pipeCall is not None and self._pipeCall.active():
            self._pipeCall.cancel()
        self._pipeCall = None
        self._cancelKill()
        self._stdout.flush()
        self._stderr.flush()
        if self._reason is None:
            self._reason = reason
        if self.exitedAt is None:
            self.exitedAt = self.supervisor._clock.seconds()
        value = self._reason.value
        exitCode = getattr(value, "exitCode", None)
        signal = getattr(value, "signal", None)
        if exitCode is None and signal is None:
            exitCode = 0
        if exitCode is not None and signal is not None:
            signal = None
        try:
            self.supervisor._processEnded(self, exitCode, signal)
        finally:
            self.ended.callback(None)

    def terminate(self, grace: float) -> None:
        """
        Ask the process to stop: SIGTERM now, SIGKILL after C{grace} seconds.

        @param grace: seconds before SIGKILL.
        """
        self.stopping = True
        if self.exitedAt is not None:
            return
        if self._signal("TERM"):
            self._killCall = self.supervisor._clock.callLater(grace, self._kill)

    def _kill(self) -> None:
        """
        The grace is over: SIGKILL.
        """
        self._killCall = None
        if self.exitedAt is None and self._signal("KILL"):
            self.supervisor._logKill(self)

    def _signal(self, name: str) -> bool:
        """
        @param name: C{"TERM"} or C{"KILL"}.
        @return: whether the signal was sent (not if the process is gone).
        """
        if self.transport is None:
            return False
        try:
            self.transport.signalProcess(name)
        except ProcessExitedAlready:
            return False
        return True

    def _cancelKill(self) -> None:
        """
        Cancel a pending SIGKILL.
        """
        if self._killCall is not None and self._killCall.active():
            self._killCall.cancel()
        self._killCall = None


class _ManagedClass:
    """
    The state of one AppClass.

    @ivar config: its configuration.
    @ivar policy: its restart policy.
    @ivar history: what the policy remembers.
    @ivar socketPath: its Unix socket path, or C{None} for TCP.
    @ivar listening: its listening socket while open.
    @ivar env: its processes' environment (set at start).
    @ivar running: its processes that have not ended, in start order.
    @ivar waiting: slots waiting for a (re)start under the policy.
    @ivar timer: the pending (re)start timer.
    @ivar initialPending: initial starts not made yet (C{-init-start-delay}).
    @ivar initialTimer: the timer of the next initial start.
    @ivar initialDue: when that timer fires.
    @ivar starts: processes started.
    @ivar restarts: starts that replaced a dead process.
    """

    def __init__(self, config: AppClassConfig) -> None:
        """
        @param config: the class's configuration.
        """
        self.config = config
        self.policy: RestartPolicy = config.restartPolicy()
        self.history = ClassHistory()
        self.socketPath: str | None = None
        self.listening: ListeningSocket | None = None
        self.env: dict[str, str] = {}
        self.running: dict[_AppProcess, None] = {}
        self.waiting = 0
        self.timer: DelayedCall | None = None
        self.initialPending = 0
        self.initialTimer: DelayedCall | None = None
        self.initialDue = 0.0
        self.starts = 0
        self.restarts = 0

    def cancelTimer(self) -> None:
        """
        Cancel the pending restart timer, if any.
        """
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def cancelInitialStarts(self) -> None:
        """
        Forget the initial starts not made yet (C{-init-start-delay}).
        """
        if self.initialTimer is not None and self.initialTimer.active():
            self.initialTimer.cancel()
        self.initialTimer = None
        self.initialPending = 0


class ApplicationSupervisor(Service):
    """
    Starts, restarts and stops the processes of managed FastCGI applications
    (see the module docstring for the whole story).

    States: C{"new"} (constructed), C{"prepared"} (sockets open),
    C{"running"} (processes started, restarts happen), C{"stopping"}
    (signals sent, waiting for exits), C{"stopped"} (sockets closed; a new
    C{privilegedStartService}/C{startService} may start it again).

    @ivar state: the current state.
    @ivar stopGrace: seconds between SIGTERM and SIGKILL at stop.
    @ivar killTimeout: seconds after SIGKILL before the stop gives up on a
        process.
    """

    log = Logger()

    def __init__(
        self,
        reactor: ProcessReactor,
        classes: Iterable[ClassConfig],
        *,
        ipcDir: IpcDirConfig | None = None,
        uid: int | None = None,
        gid: int | None = None,
        serverPid: int | None = None,
        environ: Mapping[str, str] | None = None,
        stopGrace: float = DEFAULT_STOP_GRACE,
        killTimeout: float = DEFAULT_KILL_TIMEOUT,
        niceCommand: str = DEFAULT_NICE,
        statusSignal: int | None = signalModule.SIGUSR1,
        installSignal: SignalInstaller | None = None,
    ) -> None:
        """
        @param reactor: spawns processes and keeps time
            (C{IReactorProcess} and C{IReactorTime}).
        @param classes: the AppClass and ExternalAppClass values, in
            configuration order (generated socket names count in that
            order).
        @param ipcDir: the FastCgiIpcDir; C{/tmp} by default.
        @param uid: the user the server runs as after dropping privileges
            (C{twistd --uid}): the IPC directory and the socket files are
            given to it, so that the server can connect to them.
        @param gid: the group, likewise.
        @param serverPid: the pid in generated socket names; the server's
            pid when the names are fixed (see the module docstring).
        @param environ: the server's environment, for C{-initial-env NAME};
            C{os.environ} by default.
        @param stopGrace: seconds between SIGTERM and SIGKILL at stop.
        @param killTimeout: seconds after SIGKILL before giving up.
        @param niceCommand: the C{nice} program, for C{-priority}.
        @param statusSignal: the signal that logs the status while running,
            or C{None} for none.
        @param installSignal: installs that handler; L{installSignalHandler}
            of C{reactor} by default.
        @raise AppClassError: if two classes have the same path.
        """
        self._reactor = reactor
        self._clock: TimeSource = reactor
        self._ipcDir = ipcDir if ipcDir is not None else IpcDirConfig()
        self._uid = uid
        self._gid = gid
        self._serverPid = serverPid
        self._environ = environ
        self.stopGrace = stopGrace
        self.killTimeout = killTimeout
        self._niceCommand = niceCommand
        self._statusSignal = statusSignal
        self._installSignal = (
            installSignal if installSignal is not None else installSignalHandler(reactor)
        )
        self._uninstallSignal: Callable[[], None] | None = None
        self._managed: dict[str, _ManagedClass] = {}
        self._external: dict[str, ExternalAppClassConfig] = {}
        self._order: list[str] = []
        for config in classes:
            if config.path in self._managed or config.path in self._external:
                raise AppClassError(
                    "Redefinition of previously defined class",
                    directive=config.directive,
                    path=config.path,
                    source=config.source,
                )
            if isinstance(config, AppClassConfig):
                self._managed[config.path] = _ManagedClass(config)
            else:
                self._external[config.path] = config
            self._order.append(config.path)
        self._addresses: dict[str, ApplicationAddress] | None = None
        self._registry = SocketRegistry()
        self.state = "new"
        self._stopWaiters: list[Deferred[None]] = []
        self._giveUpCall: DelayedCall | None = None

    # --- addresses ----------------------------------------------------------

    def _resolveAddresses(self) -> dict[str, ApplicationAddress]:
        """
        Fix every class's address (generating socket names) once.

        @return: path → address.
        @raise IPCError: for an unusable socket name or path.
        """
        if self._addresses is not None:
            return self._addresses
        allocator = SocketNameAllocator(self._ipcDir.path, self._serverPid)
        addresses: dict[str, ApplicationAddress] = {}
        for path in self._order:
            if path in self._managed:
                managed = self._managed[path]
                config = managed.config
                if config.port is not None:
                    addresses[path] = ApplicationAddress.tcp("127.0.0.1", config.port)
                else:
                    managed.socketPath = allocator.resolve(config.socket)
                    addresses[path] = ApplicationAddress.unix(managed.socketPath)
            else:
                external = self._external[path]
                hostAndPort = external.hostAndPort
                if hostAndPort is not None:
                    addresses[path] = ApplicationAddress.tcp(*hostAndPort)
                else:
                    assert external.socket is not None
                    addresses[path] = ApplicationAddress.unix(
                        allocator.resolve(external.socket)
                    )
        self._addresses = addresses
        return addresses

    def addressFor(self, path: str) -> ApplicationAddress:
        """
        Where the gateway connects for a class (managed or external): pass
        it to L{txfastcgi.pool.ConnectionPool}.

        The first call (or C{privilegedStartService}) fixes generated socket
        names with the server's pid; under a daemonising twistd, ask after
        C{privilegedStartService} (twistd forks before it), or pass
        C{serverPid}.

        @param path: the class's path (normalised like the configuration's).
        @return: its address: a Unix socket path or C{127.0.0.1:port} for a
            managed class, the configured one for an external class.
        @raise KeyError: if no class has that path.
        @raise IPCError: if a socket name is unusable.
        """
        return self._resolveAddresses()[os.path.normpath(path)]

    def endpointDescriptionFor(self, path: str) -> str:
        """
        The address of L{addressFor} as a string C{ConnectionPool} accepts
        (C{unix:/path} or C{tcp:host:port}).

        @param path: the class's path.
        @return: the description.
        @raise KeyError: if no class has that path.
        """
        return str(self.addressFor(path))

    @property
    def paths(self) -> list[str]:
        """
        The paths of every class, managed and external, in configuration
        order.
        """
        return list(self._order)

    def isManaged(self, path: str) -> bool:
        """
        @param path: a class's path.
        @return: C{True} for an AppClass, C{False} for an ExternalAppClass.
        @raise KeyError: if no class has that path.
        """
        path = os.path.normpath(path)
        if path in self._managed:
            return True
        if path in self._external:
            return False
        raise KeyError(path)

    def pids(self, path: str) -> list[int]:
        """
        @param path: a managed class's path.
        @return: the pids of its running processes, oldest first.
        @raise KeyError: if no managed class has that path.
        """
        managed = self._managed[os.path.normpath(path)]
        return [process.pid for process in managed.running]

    # --- service ------------------------------------------------------------

    def privilegedStartService(self) -> None:
        """
        Prepare the FastCgiIpcDir (when a class uses a Unix socket) and open
        every class's listening socket, owned by the run-as user.  Runs
        before twistd drops privileges.

        @raise IPCError: if the directory or a socket cannot be set up (the
            sockets opened so far are closed again).
        @raise AppClassError: if a class has C{-priority} and C{nice} is
            missing.
        """
        Service.privilegedStartService(self)  # type: ignore[no-untyped-call]
        if self.state in ("prepared", "running", "stopping"):
            return
        addresses = self._resolveAddresses()
        if any(m.config.priority for m in self._managed.values()) and not os.access(
            self._niceCommand, os.X_OK
        ):
            config = next(m.config for m in self._managed.values() if m.config.priority)
            raise AppClassError(
                f"-priority needs {self._niceCommand}, which is missing or not "
                "executable",
                directive=config.directive,
                path=config.path,
                option="-priority",
                source=config.source,
            )
        try:
            if any(m.socketPath is not None for m in self._managed.values()):
                prepareIpcDirectory(self._ipcDir.path, uid=self._uid, gid=self._gid)
            for path, managed in self._managed.items():
                config = managed.config
                if managed.socketPath is not None:
                    managed.listening = self._registry.openUnix(
                        managed.socketPath,
                        backlog=config.listenQueueDepth,
                        uid=self._uid,
                        gid=self._gid,
                    )
                else:
                    assert config.port is not None
                    managed.listening = self._registry.openTCP(
                        config.port, backlog=config.listenQueueDepth
                    )
                self.log.info(
                    "AppClass {appClass}: listening on {address} "
                    "(queue depth {listenQueueDepth})",
                    appClass=path,
                    address=str(addresses[path]),
                    listenQueueDepth=config.listenQueueDepth,
                )
        except BaseException:
            self._closeSockets()
            raise
        self.state = "prepared"

    def startService(self) -> None:
        """
        Start C{-processes} copies of every managed class and install the
        status signal handler.  Opens the sockets first if
        L{privilegedStartService} did not run.

        @raise IPCError: as L{privilegedStartService}.
        """
        if self.state in ("new", "stopped"):
            self.privilegedStartService()
        if self.state != "prepared":
            return
        Service.startService(self)  # type: ignore[no-untyped-call]
        self.state = "running"
        environ = os.environ if self._environ is None else self._environ
        for path, managed in self._managed.items():
            resolved = managed.config.environment(environ)
            managed.env = resolved.env
            if resolved.missing:
                self.log.warn(
                    "AppClass {appClass}: -initial-env {names} not set in the "
                    "server's environment; left out",
                    appClass=path,
                    names=", ".join(resolved.missing),
                )
            managed.history = ClassHistory()
            managed.waiting = 0
            if managed.config.initStartDelay:
                managed.initialPending = managed.config.processes
                self._initialStart(managed)
                continue
            for _ in range(managed.config.processes):
                if not self._startOne(managed, restart=False):
                    managed.waiting += 1
            if managed.waiting:
                self._retryLater(managed)
        if self._statusSignal is not None:
            self._uninstallSignal = self._installSignal(
                self._statusSignal, self.logStatus
            )

    def stopService(self) -> Deferred[None]:
        """
        Stop every process: cancel pending starts, SIGTERM, SIGKILL after
        C{stopGrace}; then close and remove the sockets.

        @return: a Deferred that fires when every process has ended (or
            C{killTimeout} seconds after SIGKILL, with the survivors
            logged) and the sockets are closed.
        """
        Service.stopService(self)  # type: ignore[no-untyped-call]
        if self.state == "stopping":
            waiter: Deferred[None] = Deferred()
            self._stopWaiters.append(waiter)
            return waiter
        if self.state in ("new", "stopped", "prepared"):
            self._closeSockets()
            self.state = "stopped" if self.state != "new" else "new"
            return succeed(None)
        self.state = "stopping"
        self._removeSignalHandler()
        processes: list[_AppProcess] = []
        for managed in self._managed.values():
            managed.cancelTimer()
            managed.cancelInitialStarts()
            managed.waiting = 0
            processes.extend(managed.running)
        done: Deferred[None] = Deferred()
        self._stopWaiters.append(done)
        if not processes:
            self._finishStop()
            return done
        self.log.info(
            "Stopping {count} application processes: SIGTERM, SIGKILL after "
            "{stopGrace} s",
            count=len(processes),
            stopGrace=self.stopGrace,
        )
        for process in processes:
            process.terminate(self.stopGrace)
        self._giveUpCall = self._clock.callLater(
            self.stopGrace + self.killTimeout, self._giveUp
        )
        return done

    def _processEnded(
        self, process: _AppProcess, exitCode: int | None, signal: int | None
    ) -> None:
        """
        A process ended: log it, and queue its restart unless stopping.

        @param process: its protocol.
        @param exitCode: its exit status, or C{None}.
        @param signal: the signal that ended it, or C{None}.
        """
        managed = process.managed
        managed.running.pop(process, None)
        path = managed.config.path
        exitedAt = process.exitedAt if process.exitedAt is not None else 0.0
        if process.stopping or self.state in ("stopping", "stopped"):
            self.log.info(
                "AppClass {appClass} pid {pid} stopped ({how})",
                appClass=path,
                pid=process.pid,
                how=describeExit(exitCode, signal),
                exitCode=exitCode,
                signal=signal,
            )
            if self.state == "stopping" and not any(
                m.running for m in self._managed.values()
            ):
                self._finishStop()
            return
        managed.history, decision = recordDeath(
            managed.policy,
            managed.history,
            startedAt=process.startedAt,
            now=exitedAt,
            exitCode=exitCode,
            signal=signal,
            runningSince=[p.startedAt for p in managed.running],
            queued=managed.waiting,
        )
        self._logDeath(path, process.pid, decision)
        managed.waiting += 1
        self._schedule(managed)

    def _logDeath(self, path: str, pid: int, decision: Decision) -> None:
        """
        Log a death and what the policy made of it.

        @param path: the class.
        @param pid: the process (0 for a failed spawn).
        @param decision: the policy's decision.
        """
        fields: dict[str, Any] = dict(
            appClass=path,
            pid=pid,
            exitCode=decision.exitCode,
            signal=decision.signal,
            crash=decision.death is DeathKind.CRASH,
            death=decision.death.value,
            lifetime=decision.lifetime,
            wait=decision.wait,
            reason=decision.reason.value,
            quickFailures=decision.consecutiveFailures,
            backoff=decision.backoff,
            description=decision.describe(),
        )
        if decision.death is DeathKind.EXIT:
            self.log.info("AppClass {appClass} pid {pid} {description}", **fields)
        else:
            self.log.error("AppClass {appClass} pid {pid} {description}", **fields)
        self._logBackoff(path, decision)

    def _logBackoff(self, path: str, decision: Decision) -> None:
        """
        Log what a death (or failed start) did to the class's back-off.

        @param path: the class.
        @param decision: the policy's decision.
        """
        change = decision.backoffChange
        if change in (BackoffChange.BEGAN, BackoffChange.GREW):
            self.log.warn(
                "AppClass {appClass}: {quickFailures} quick failures in a row "
                "(each lived less than {minServerLife} s): starts are now at "
                "least {backoff} s apart",
                appClass=path,
                quickFailures=decision.consecutiveFailures,
                minServerLife=decision.policy.minServerLife,
                backoff=decision.backoff,
                previousBackoff=decision.previousBackoff,
                backoffChange=change.value,
            )
        elif change is BackoffChange.ENDED:
            self.log.info(
                "AppClass {appClass}: a process lived {minServerLife} s or more; "
                "back-off of {previousBackoff} s ended",
                appClass=path,
                minServerLife=decision.policy.minServerLife,
                previousBackoff=decision.previousBackoff,
                backoff=0.0,
                backoffChange=change.value,
            )

    def _schedule(self, managed: _ManagedClass) -> None:
        """
        Start the class's waiting slots that are due; set the timer for the
        next one.

        @param managed: the class.
        """
        managed.cancelTimer()
        while managed.waiting and self.state == "running":
            now = self._clock.seconds()
            due = nextStartTime(managed.policy, managed.history, now)
            if due > now:
                managed.timer = self._clock.callLater(
                    due - now, self._timerFired, managed
                )
                return
            managed.waiting -= 1
            if not self._startOne(managed, restart=True):
                managed.waiting += 1
                self._retryLater(managed)
                return

    def _retryLater(self, managed: _ManagedClass) -> None:
        """
        C{spawnProcess} failed for the class: set its timer no sooner than
        L{SPAWN_RETRY_DELAY} from now, so that a missing program never makes
        the supervisor loop.

        @param managed: the class, with the failed slot counted in
            C{waiting}.
        """
        managed.cancelTimer()
        now = self._clock.seconds()
        due = max(
            nextStartTime(managed.policy, managed.history, now),
            now + SPAWN_RETRY_DELAY,
        )
        managed.timer = self._clock.callLater(due - now, self._timerFired, managed)

    def _initialStart(self, managed: _ManagedClass) -> None:
        """
        Make the next initial start of a class with C{-init-start-delay},
        and set the timer for the one after.

        @param managed: the class, with C{initialPending > 0}.
        """
        managed.initialTimer = None
        if self.state != "running" or not managed.initialPending:
            return
        managed.initialPending -= 1
        if not self._startOne(managed, restart=False):
            managed.waiting += 1
            self._retryLater(managed)
        if managed.initialPending:
            delay = float(managed.config.initStartDelay)
            managed.initialDue = self._clock.seconds() + delay
            managed.initialTimer = self._clock.callLater(
                delay, self._initialStart, managed
            )

    def _timerFired(self, managed: _ManagedClass) -> None:
        """
        A class's start timer fired.

        @param managed: the class.
        """
        managed.timer = None
        self._schedule(managed)

    def _command(self, config: AppClassConfig) -> tuple[str, list[str]]:
        """
        @param config: a class.
        @return: the executable and argv to spawn (see the module docstring
            on C{-priority}).
        """
        if config.priority:
            nice = self._niceCommand
            return nice, [nice, "-n", str(config.priority), config.path]
        return config.path, [config.path]

    def _startOne(self, managed: _ManagedClass, *, restart: bool) -> bool:
        """
        Spawn one process of a class.

        @param managed: the class.
        @param restart: whether it replaces a dead process.
        @return: C{True} if spawned; C{False} if C{spawnProcess} failed
            (logged and counted as a failed start by the policy).
        """
        config = managed.config
        now = self._clock.seconds()
        managed.history = recordStart(managed.history, now)
        assert managed.listening is not None
        protocol = _AppProcess(self, managed, now)
        executable, args = self._command(config)
        try:
            transport = self._reactor.spawnProcess(
                protocol,
                executable,
                args,
                env=dict(managed.env),
                path=config.workingDirectory,
                uid=config.uid,
                gid=config.gid,
                childFDs={0: managed.listening.fileno(), 1: "r", 2: "r"},
            )
        except Exception as e:
            # Counted by the policy as a process that failed at once.
            managed.history, decision = recordDeath(
                managed.policy,
                managed.history,
                startedAt=now,
                now=now,
                exitCode=127,
                runningSince=[p.startedAt for p in managed.running],
                queued=managed.waiting,
            )
            self.log.error(
                "AppClass {appClass}: cannot start {executable}: {error}; next "
                "attempt in at least {wait} s",
                appClass=config.path,
                executable=executable,
                error=str(e),
                wait=max(decision.wait, SPAWN_RETRY_DELAY),
                quickFailures=decision.consecutiveFailures,
                backoff=decision.backoff,
            )
            self._logBackoff(config.path, decision)
            return False
        if not protocol.pid:
            protocol.pid = getattr(transport, "pid", None) or 0
        if protocol.ended.called:
            # It ended inside spawnProcess (only fakes do that).
            return True
        managed.running[protocol] = None
        managed.starts += 1
        if restart:
            managed.restarts += 1
            self.log.info(
                "AppClass {appClass} restarted with pid {pid} (restart {restarts})",
                appClass=config.path,
                pid=protocol.pid,
                restarts=managed.restarts,
                restart=True,
                startedAt=now,
            )
        else:
            self.log.info(
                "AppClass {appClass} started with pid {pid}",
                appClass=config.path,
                pid=protocol.pid,
                restart=False,
                startedAt=now,
            )
        return True

    def _logOutput(self, process: _AppProcess, stream: str, line: str) -> None:
        """
        Log one line of a process's output.

        @param process: the process.
        @param stream: C{"stdout"} or C{"stderr"}.
        @param line: the line.
        """
        logOutputLine(self.log, process.managed.config.path, process.pid, stream, line)

    def _logKill(self, process: _AppProcess) -> None:
        """
        Log that a process got SIGKILL.

        @param process: the process.
        """
        logKill(
            self.log, "AppClass", process.managed.config.path, process.pid, self.stopGrace
        )

    def _giveUp(self) -> None:
        """
        Processes survived SIGKILL for C{killTimeout}: stop waiting.
        """
        self._giveUpCall = None
        for managed in self._managed.values():
            for process in managed.running:
                self.log.error(
                    "AppClass {appClass} pid {pid} did not exit even after "
                    "SIGKILL; no longer waiting for it",
                    appClass=managed.config.path,
                    pid=process.pid,
                )
        self._finishStop()

    def _finishStop(self) -> None:
        """
        Every process has ended (or we gave up): close the sockets and fire
        the stop Deferreds.
        """
        if self.state != "stopping":
            return
        if self._giveUpCall is not None and self._giveUpCall.active():
            self._giveUpCall.cancel()
        self._giveUpCall = None
        self._closeSockets()
        self.state = "stopped"
        self.log.info("Application supervisor stopped")
        waiters, self._stopWaiters = self._stopWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _closeSockets(self) -> None:
        """
        Close every listening socket and remove its file; log failures.
        """
        for managed in self._managed.values():
            managed.listening = None
        for error in self._registry.closeAll():
            self.log.error(
                "Cannot remove socket {path}: {error}", path=error.path, error=str(error)
            )

    def _removeSignalHandler(self) -> None:
        """
        Remove the status signal handler, if installed.
        """
        if self._uninstallSignal is not None:
            uninstall, self._uninstallSignal = self._uninstallSignal, None
            uninstall()

    # --- status -------------------------------------------------------------

    def status(self) -> list[ClassStatus]:
        """
        The state of every class, in configuration order.

        @return: one L{ClassStatus} per class.
        """
        now = self._clock.seconds()
        result = []
        addresses = self._addresses or {}
        for path in self._order:
            address = str(addresses[path]) if path in addresses else "not yet known"
            if path in self._external:
                result.append(ClassStatus(path=path, managed=False, address=address))
                continue
            managed = self._managed[path]
            nextStartIn = None
            if self.state == "running":
                times = []
                if managed.waiting:
                    times.append(nextStartTime(managed.policy, managed.history, now))
                if managed.initialTimer is not None and managed.initialTimer.active():
                    times.append(managed.initialDue)
                if times:
                    nextStartIn = max(0.0, min(times) - now)
            result.append(
                ClassStatus(
                    path=path,
                    managed=True,
                    address=address,
                    configured=managed.config.processes,
                    processes=tuple(
                        ProcessStatus(p.pid, max(0.0, now - p.startedAt))
                        for p in managed.running
                    ),
                    starts=managed.starts,
                    restarts=managed.restarts,
                    waiting=managed.waiting + managed.initialPending,
                    nextStartIn=nextStartIn,
                    quickFailures=managed.history.quickFailures,
                    backoff=managed.history.backoff,
                )
            )
        return result

    def statusLines(self) -> list[str]:
        """
        The status as lines for an operator: a summary, then one line per
        class (L{ClassStatus.describe}).

        @return: the lines.
        """
        statuses = self.status()
        running = sum(len(s.processes) for s in statuses)
        lines = [
            f"Application supervisor {self.state}: {len(self._managed)} managed "
            f"and {len(self._external)} external classes, {running} processes "
            "running"
        ]
        lines.extend(s.describe() for s in statuses)
        return lines

    def logStatus(self) -> None:
        """
        Log L{statusLines}, one event per line (field C{statusLine}).
        """
        for line in self.statusLines():
            self.log.info("{statusLine}", statusLine=line)
