# -*- test-case-name: tests.test_dynamic -*-
"""
Dynamic FastCGI applications (SPEC.md section 4, Decision 5): executables
no C{AppClass}/C{ExternalAppClass} declares, started on the first request
for them and grown and shrunk with the load, within the limits of
C{FCGIConfig}.  The decisions are L{txfastcgi.loadpolicy}'s; this module
owns the processes, sockets and timers.

How a request reaches a dynamic application
===========================================

The gateway gives each dynamic application a L{DynamicPool}
(L{DynamicApplicationManager.poolFor}): a L{txfastcgi.pool.ConnectionPool}
that keeps connections (C{FCGI_KEEP_CONN}) like a static application's,
whose endpoint is a L{DynamicEndpoint}: a connect asks the manager for a
I{free} process (one no connection holds) instead of connecting to a fixed
address.  A process serves one connection at a time (as a libfcgi or
php-cgi process does: with C{FCGI_KEEP_CONN} it keeps reading that
connection), so the pool holds at most one connection per process and at
most C{maxClassProcesses} in all; a request finds an idle kept connection,
or the pool connects, or the request waits in the pool's queue.

  1. B{On demand.}  The first request for an application creates its class
     and starts one process; so does any request while the class has no
     running process.
  2. B{Growth.}  A request waiting in the pool for a connection asks, each
     C{startDelay} seconds it keeps waiting, for one more process; the
     start happens unless the class has C{maxClassProcesses} processes or
     all dynamic classes together have C{maxProcesses} (refusals are
     logged, once until a start succeeds), and no sooner than the spacing
     of C{-init-start-delay}/C{-restart-delay}
     (L{txfastcgi.loadpolicy.startDue}).  A new process goes to the pool's
     oldest waiting connect.  A connect the pool made for a request that a
     kept connection served meanwhile gets a process only once a request
     needs one again: no process is started or held for it.
  3. B{Give up.}  A request still waiting C{appConnTimeout} seconds after
     the pool took it (0: no limit) fails with L{DynamicStartTimeout},
     logged; the gateway answers 503.

B{One socket per process.}  2.0 shared one listening socket between the
processes of a class (C{dynamic/<md5>}), so the gateway could not know which
process would accept a connection: killing a process could catch it
between its C{accept()} and the request, the race behind 2.0's "one in
twenty" errors (SPEC.md sections 4.6 and 9.12).  Here every process has its
own listening socket, C{<FastCgiIpcDir>/dynamic/<md5 of the path>.<slot>},
created just before the spawn (mode 0600, owned by the run-as user) and
handed over as fd 0; the manager's copy of the descriptor is closed at
once, so connections queued to a process that dies are refused rather than
left hanging.  The manager gives each connection a process of its choice
and knows which processes are serving: a process is I{serving} from the
moment the pool starts a request on its connection (the connection's
C{state} becomes C{ACTIVE}, seen after each chance the pool had to start
one) until that request ends (the connection's C{onIdle}) or the
connection closes, and that time is the request's service time fed to the
load statistics (2.0's C{REQ_COMPLETE}).
A process whose socket cannot be connected to (it died; a /tmp cleaner
removed the file) is stopped, and the connect waits for another process.

Kill policy and draining
========================

The statistics are smoothed every C{updateInterval} and the kill policy runs
every C{killInterval}, or at once at a start that brings the running
processes plus C{processSlack} to C{maxProcesses} (L{txfastcgi.loadpolicy};
as in 2.0 it runs when the process manager would have woken: its timer, a
start, a C{startDelay} timeout, not at each request's end).  For each class
the policy picks, the victim is the youngest process that is not serving,
else the youngest one.  Draining (also used by C{-autoUpdate}): the victim
gets no new connection from that moment; its kept connection, if idle, is
closed at once; if it is serving, its connection is closed when that
request ends instead of going back to the pool; once it has no connection
it gets C{SIGTERM} (C{SIGKILL} after C{stopGrace} if it does not exit).  So
the kill policy never fails a request, and never leaves a kept connection
to a dead process in the pool.

C{-autoUpdate}: every request that reaches the pool compares the file's
modification time with the one each process was started from; processes of
a changed file are drained, and the request goes to a new process.

Supervision
===========

Processes are spawned as the supervisor spawns AppClass processes (the same
process protocol, L{txfastcgi.supervisor._AppProcess}): argv C{[path]}, the
executable's directory as working directory, the listening socket as fd 0,
stdout and stderr logged line by line, the environment exactly the
C{FCGIConfig -initial-env} pairs (never the server's environment).  A
process that dies on its own is logged (error for a crash or a non-zero
exit) and replaced only when a request needs it, unless C{-restart} is set
(or C{-singleThreshold 0} and it was its class's last process): then it is
restarted C{-restart-delay} seconds after the class's last start.  A class
whose processes keep dying within C{-min-server-life} seconds of their
start backs off (L{txfastcgi.policy}); the back-off outlives the class.  A class with no
process and no waiting request is forgotten.  L{stopService} fails the
waiting requests, stops every process (C{SIGTERM}, then C{SIGKILL}) and
removes the sockets.

Every start and stop decision is logged at info level with its reason and
the class's load figure (fields C{appClass}, C{pid}, C{reason}, C{load},
C{processes}, C{total}).
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from txfastcgi._time import DelayedCall, TimeSource
from txfastcgi.appclass import IpcDirConfig, resolveInitialEnv
from txfastcgi.client import FastCGIRequest, RequestResult
from txfastcgi.config.model import DynamicConfig
from txfastcgi.ipc import (
    IPCError,
    ListeningSocket,
    createUnixListeningSocket,
    prepareDynamicDirectory,
    prepareIpcDirectory,
)
from txfastcgi.loadpolicy import (
    ClassLoad,
    LoadParameters,
    StartKind,
    StartRefusal,
    Victim,
    analysisDue,
    chooseVictims,
    killTrigger,
    loadFactor,
    mayStart,
    smoothLoad,
    startDue,
)
from txfastcgi.policy import ClassHistory, RestartPolicy, nextStartTime, recordDeath, recordStart
from txfastcgi.pool import ApplicationAddress, ConnectError, ConnectionPool
from txfastcgi.processlog import describeExit, logKill, logOutputLine
from txfastcgi.supervisor import DEFAULT_STOP_GRACE, ProcessReactor, _AppProcess

__all__ = [
    "DynamicApplicationError",
    "DynamicApplicationManager",
    "DynamicEndpoint",
    "DynamicPool",
    "DynamicStartTimeout",
    "DynamicUnavailable",
    "socketKey",
]

_FOREVER = 10.0 * 365 * 24 * 3600
"""A connect timeout that never fires (the manager bounds the waits)."""

_INFINITY = float("inf")

_HISTORY_LIMIT = 1000
"""Forgotten classes whose failure history is kept (their back-off)."""

Connector = Callable[[str, Any], "Deferred[Any]"]
"""Connects a protocol factory to a Unix socket path: C{(path, factory)}."""


class DynamicApplicationError(Exception):
    """
    A request could not be given a process of a dynamic application.
    """


class DynamicStartTimeout(DynamicApplicationError, ConnectError):
    """
    No process could take the request within C{appConnTimeout} seconds: a
    L{txfastcgi.pool.ConnectError}, so the gateway answers 503.
    """


class DynamicUnavailable(DynamicApplicationError, ConnectError):
    """
    The manager is not running (shutdown), or the application cannot be
    started: a L{txfastcgi.pool.ConnectError}, so the gateway answers 503.
    """


def socketKey(path: str) -> str:
    """
    The name of an application's sockets in C{dynamic/}: the MD5 of its
    path, as mod_fastcgi 2.0.

    @param path: the application's file name.
    @return: 32 hexadecimal digits.
    """
    return hashlib.md5(os.fsencode(path)).hexdigest()


class _Process:
    """
    One process of a dynamic class.

    States: I{free} (alive, no connection: a connect of the pool may be
    given it), I{connecting} (a connect to its socket is under way),
    I{connected} (one pool connection holds it; it is I{serving} while a
    request runs on that connection, I{idle} between requests), I{draining}
    (a victim: it is given no connection, its idle connection is closed,
    and it gets C{SIGTERM} once no connection is left), I{ended} (removed
    from its class).

    @ivar dynamicClass: its class.
    @ivar slot: its slot number (in its socket name).
    @ivar socketPath: its listening socket's path.
    @ivar listening: the socket (the manager's descriptor is closed after the
        spawn; the file is removed when the process ends).
    @ivar protocol: its process protocol.
    @ivar startedAt: when it was spawned.
    @ivar connection: the pool's protocol connected to it, or C{None}.
    @ivar connecting: whether a connect to its socket is under way.
    @ivar servingSince: when the request running on its connection started,
        or C{None} while none runs.
    @ivar draining: whether it is being stopped (kill policy, C{-autoUpdate},
        unreachable socket).
    @ivar drainReason: why, for the log of its C{SIGTERM}.
    @ivar ended: whether it has ended (removed from its class).
    @ivar served: requests it served (or is serving).
    @ivar binaryMtime: the modification time (ns) of its file when it was
        spawned, for C{-autoUpdate}; C{None} if unknown.
    """

    def __init__(
        self,
        dynamicClass: _DynamicClass,
        slot: int,
        socketPath: str,
        listening: ListeningSocket,
        startedAt: float,
    ) -> None:
        self.dynamicClass = dynamicClass
        self.slot = slot
        self.socketPath = socketPath
        self.listening = listening
        self.protocol: _AppProcess | None = None
        self.startedAt = startedAt
        self.connection: Any = None
        self.connecting = False
        self.servingSince: float | None = None
        self.draining = False
        self.ended = False
        self.drainReason = ""
        self.served = 0
        self.binaryMtime: int | None = None

    @property
    def pid(self) -> int:
        """
        Its process id (0 before the spawn).
        """
        return self.protocol.pid if self.protocol is not None else 0

    @property
    def busy(self) -> bool:
        """
        Whether a request runs on its connection.
        """
        return self.servingSince is not None

    @property
    def assigned(self) -> bool:
        """
        Whether a connection holds it (or is being made to it).
        """
        return self.connecting or self.connection is not None


class _Waiter:
    """
    A connect of the pool waiting for a free process.

    @ivar factory: the pool's protocol factory.
    @ivar deferred: fires with the connected protocol.
    @ivar arrivedAt: when it asked.
    @ivar dynamicClass: its class.
    @ivar connecting: the connect in progress once a process was chosen.
    @ivar cancelled: whether the pool gave up on it.
    """

    def __init__(self, factory: Any, arrivedAt: float, dynamicClass: _DynamicClass) -> None:
        self.factory = factory
        self.arrivedAt = arrivedAt
        self.dynamicClass = dynamicClass
        self.deferred: Deferred[Any] = Deferred(self._cancel)
        self.connecting: Deferred[Any] | None = None
        self.cancelled = False

    def _cancel(self, deferred: Deferred[Any]) -> None:
        """
        The pool gave up on the connect (its own timeout, or shutdown).
        """
        self.cancelled = True
        if self.connecting is not None:
            self.connecting.cancel()
        else:
            try:
                self.dynamicClass.waiters.remove(self)
            except ValueError:
                pass


class _Queued:
    """
    A request waiting in the pool for a connection.

    @ivar request: the request.
    @ivar arrivedAt: when the pool took it.
    @ivar nextAsk: when it next asks for a process (every C{startDelay}).
    @ivar deadline: when it gives up (C{appConnTimeout}), or infinity.
    """

    __slots__ = ("request", "arrivedAt", "nextAsk", "deadline")

    def __init__(
        self, request: FastCGIRequest, arrivedAt: float, nextAsk: float, deadline: float
    ) -> None:
        self.request = request
        self.arrivedAt = arrivedAt
        self.nextAsk = nextAsk
        self.deadline = deadline

    @property
    def waiting(self) -> bool:
        """
        Whether the request still waits for its first connection.
        """
        return not self.request.done and not self.request.attempts

    @property
    def due(self) -> float:
        """
        When something next happens to it.
        """
        return min(self.nextAsk, self.deadline)


class _DynamicClass:
    """
    A dynamic application and its processes.

    @ivar path: the executable's file name (the class's key).
    @ivar key: L{socketKey} of it.
    @ivar processes: its live processes, oldest first.
    @ivar waiters: connects of the pool waiting for a free process, oldest
        first.
    @ivar queued: requests that waited in the pool for a connection, in
        arrival order (those since served are dropped lazily).
    @ivar queueCall: the timer for the earliest C{startDelay} or
        C{appConnTimeout} of C{queued}.
    @ivar connTime: service seconds of requests finished this period.
    @ivar smooth: the smoothed service seconds per period.
    @ivar history: restart history, for the back-off of a crashing binary.
    @ivar startCall: a postponed start (spacing or back-off).
    @ivar startAt: when C{startCall} is due.
    @ivar limitLogged: the limit whose refusal was logged (not again until
        a start succeeds).
    @ivar starts: processes started.
    @ivar usedSlots: the slot numbers that held a process (for the spacing
        of L{txfastcgi.loadpolicy.startDue}).
    @ivar restartsOwed: processes that died on their own and are to be
        restarted (C{-restart}).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.key = socketKey(path)
        self.processes: list[_Process] = []
        self.waiters: deque[_Waiter] = deque()
        self.queued: deque[_Queued] = deque()
        self.queueCall: DelayedCall | None = None
        self.connTime = 0.0
        self.smooth = 0.0
        self.history = ClassHistory()
        self.startCall: DelayedCall | None = None
        self.startAt = 0.0
        self.limitLogged: StartRefusal | None = None
        self.starts = 0
        self.usedSlots: set[int] = set()
        self.restartsOwed = 0

    @property
    def running(self) -> list[_Process]:
        """
        The processes that take requests (not draining).
        """
        return [p for p in self.processes if not p.draining]

    @property
    def free(self) -> list[_Process]:
        """
        The running processes no connection holds, oldest first.
        """
        return [p for p in self.processes if not p.draining and not p.assigned]

    def load(self) -> ClassLoad:
        """
        @return: its statistics for L{txfastcgi.loadpolicy}.
        """
        return ClassLoad(self.path, len(self.running), self.connTime, self.smooth)


class DynamicEndpoint:
    """
    The client endpoint of a dynamic application's pool: C{connect} asks
    the manager for a process (see the module docstring).
    """

    def __init__(self, manager: DynamicApplicationManager, path: str) -> None:
        """
        @param manager: the manager.
        @param path: the application's file name.
        """
        self.manager = manager
        self.path = path

    def connect(self, protocolFactory: Any) -> Deferred[Any]:
        """
        @param protocolFactory: the pool's factory.
        @return: a Deferred firing with the connected protocol, or failing
            with L{DynamicApplicationError}.
        """
        return self.manager.connect(self.path, protocolFactory)

    def __repr__(self) -> str:
        return f"<dynamic {self.path}>"


_baseSubmit: Callable[[ConnectionPool, FastCGIRequest], object] = getattr(
    ConnectionPool, "submit", None
) or ConnectionPool.request
"""
How L{ConnectionPool} takes a request: C{submit} where the pool has it,
else C{request} (whose result L{DynamicPool} does not need).
"""


class DynamicPool(ConnectionPool):
    """
    The connection pool of one dynamic application: a
    L{txfastcgi.pool.ConnectionPool} whose connections come from the
    manager (L{DynamicEndpoint}), and which tells the manager of each
    request before it takes it (C{-autoUpdate}) and after (a request left
    waiting for a connection gets its C{startDelay} and C{appConnTimeout}
    timers).

    What the manager relies on besides the pool's public API: the
    protocol's C{state} is C{"ACTIVE"} while a request runs on the
    connection; the pool learns that the request ended from the protocol's
    C{onIdle} and that the connection closed from its C{onLost} (the
    manager puts its own callbacks in front of these); it gives a
    connection that is closing no request.

    @ivar manager: the manager.
    @ivar path: the application's file name.
    """

    def __init__(
        self, manager: DynamicApplicationManager, path: str, **options: Any
    ) -> None:
        """
        @param manager: the manager.
        @param path: the application's file name.
        @param options: for L{ConnectionPool}.
        """
        super().__init__(manager._clock, manager.endpointFor(path), **options)
        self.manager = manager
        self.path = path

    def request(self, request: FastCGIRequest) -> Deferred[RequestResult]:
        """
        Run C{request} (see L{ConnectionPool.request}).
        """
        self.submit(request)
        return request.finished

    def submit(self, request: FastCGIRequest) -> None:
        """
        Take C{request}; its outcome reaches C{request.finished} (and
        C{request.onEnd} where the client has it).
        """
        self.manager._arrived(self.path)
        _baseSubmit(self, request)
        self.manager._submitted(self.path, request)


class DynamicApplicationManager(Service):
    """
    Starts, grows, shrinks and stops the processes of dynamic applications
    (see the module docstring).

    States: C{"new"}, C{"prepared"} (the C{dynamic/} directory is ready),
    C{"running"}, C{"stopping"}, C{"stopped"}.

    @ivar config: the C{FCGIConfig} values.
    @ivar params: the decision parameters.
    @ivar state: the current state.
    @ivar stopGrace: seconds between SIGTERM and SIGKILL.
    @ivar policyRuns: how many times the kill policy ran.
    """

    log = Logger()

    def __init__(
        self,
        reactor: ProcessReactor,
        config: DynamicConfig,
        *,
        ipcDir: IpcDirConfig | None = None,
        uid: int | None = None,
        gid: int | None = None,
        environ: Mapping[str, str] | None = None,
        connector: Connector | None = None,
        stopGrace: float = DEFAULT_STOP_GRACE,
    ) -> None:
        """
        @param reactor: spawns processes, keeps time, and (with the default
            C{connector}) connects to Unix sockets.
        @param config: C{FCGIConfig}.
        @param ipcDir: the FastCgiIpcDir (C{/tmp} by default).
        @param uid: the run-as user: owner of the sockets, and of the
            processes when the server is still root.
        @param gid: the run-as group, likewise.
        @param environ: the server's environment, for C{-initial-env NAME}.
        @param connector: connects to a process's socket; a
            Unix endpoint of C{reactor} made as a static pool makes it by default.
        @param stopGrace: seconds between SIGTERM and SIGKILL.
        """
        self._reactor = reactor
        self._clock: TimeSource = reactor
        self.config = config
        self.params = LoadParameters.fromConfig(config)
        self._ipcDir = ipcDir if ipcDir is not None else IpcDirConfig()
        self._uid = uid
        self._gid = gid
        self._environ = environ
        self._connector = connector if connector is not None else self._connectUnix
        self.stopGrace = stopGrace
        self._restartPolicy = RestartPolicy(
            restartDelay=0.0, minServerLife=float(config.minServerLife)
        )
        self._classes: dict[str, _DynamicClass] = {}
        self._pools: dict[str, DynamicPool] = {}
        self._histories: dict[str, ClassHistory] = {}
        self._dynamicDir: str | None = None
        self._env: dict[str, str] = {}
        self._epoch: float | None = None
        self._lastAnalysis = 0.0
        self._tickCall: DelayedCall | None = None
        self._stopWaiters: list[Deferred[None]] = []
        self.policyRuns = 0
        self.state = "new"

    # --- public ---------------------------------------------------------------

    def endpointFor(self, path: str) -> DynamicEndpoint:
        """
        @param path: an application's file name (normalised).
        @return: the endpoint for its pool.
        """
        return DynamicEndpoint(self, path)

    def poolFor(self, path: str) -> DynamicPool:
        """
        The connection pool for a dynamic application (L{DynamicPool}): it
        keeps connections (C{FCGI_KEEP_CONN}), at most one per process, so
        at most C{maxClassProcesses}; no C{FCGI_GET_VALUES} probe, no
        multiplexing (a process serves one connection at a time), no stall
        rescue (a connection only goes to a free process); its connect
        timeout is beyond reach, since the manager's C{appConnTimeout}
        bounds each request's wait.

        @param path: the application's file name.
        @return: the pool, which the manager consults for its waiting
            requests (the last one made for C{path}).
        """
        pool = DynamicPool(
            self,
            path,
            maxConnections=self.params.maxClassProcesses,
            keepAlive=True,
            multiplex=False,
            probeValues=False,
            stallGrace=None,
            connectTimeout=_FOREVER,
            responseTimeout=float(self.config.idleTimeout) or None,
        )
        self._pools[path] = pool
        return pool

    def processCount(self, path: str | None = None) -> int:
        """
        @param path: an application, or C{None} for all.
        @return: its live processes (draining included), or all of them.
        """
        if path is None:
            return sum(len(c.processes) for c in self._classes.values())
        dynamicClass = self._classes.get(path)
        return len(dynamicClass.processes) if dynamicClass is not None else 0

    def pids(self, path: str) -> list[int]:
        """
        @param path: an application.
        @return: the pids of its live processes, oldest first.
        """
        dynamicClass = self._classes.get(path)
        if dynamicClass is None:
            return []
        return [p.pid for p in dynamicClass.processes]

    # --- service ----------------------------------------------------------------

    def privilegedStartService(self) -> None:
        """
        Prepare C{<FastCgiIpcDir>/dynamic} (created if missing, emptied of
        an earlier run's leftovers), owned by the run-as user.

        @raise IPCError: if it cannot be set up.
        """
        Service.privilegedStartService(self)  # type: ignore[no-untyped-call]
        if self.state not in ("new", "stopped"):
            return
        prepareIpcDirectory(self._ipcDir.path, uid=self._uid, gid=self._gid)
        self._dynamicDir = prepareDynamicDirectory(
            self._ipcDir.path, uid=self._uid, gid=self._gid
        )
        self.state = "prepared"

    def startService(self) -> None:
        """
        Start taking requests (prepares first if needed).
        """
        if self.state in ("new", "stopped"):
            self.privilegedStartService()
        if self.state != "prepared":
            return
        Service.startService(self)  # type: ignore[no-untyped-call]
        environ = os.environ if self._environ is None else self._environ
        resolved = resolveInitialEnv(self.config.initialEnv, environ)
        if resolved.missing:
            self.log.warn(
                "FCGIConfig: -initial-env {names} not set in the server's "
                "environment; left out",
                names=", ".join(resolved.missing),
            )
        self._env = resolved.env
        now = self._clock.seconds()
        self._epoch = now
        self._lastAnalysis = now
        self.state = "running"
        self._scheduleTick()

    def stopService(self) -> Deferred[None]:
        """
        Fail the waiting requests, stop every process, remove the sockets.

        @return: fires when every process has ended.
        """
        Service.stopService(self)  # type: ignore[no-untyped-call]
        if self.state == "stopping":
            waiter: Deferred[None] = Deferred()
            self._stopWaiters.append(waiter)
            return waiter
        if self.state != "running":
            if self.state == "prepared":
                self._removeDirectory()
            self.state = "stopped" if self.state != "new" else "new"
            return succeed(None)
        self.state = "stopping"
        self._cancelTick()
        processes: list[_Process] = []
        for dynamicClass in self._classes.values():
            if dynamicClass.startCall is not None and dynamicClass.startCall.active():
                dynamicClass.startCall.cancel()
            dynamicClass.startCall = None
            self._cancelQueueCall(dynamicClass)
            queued, dynamicClass.queued = dynamicClass.queued, deque()
            for entry in queued:
                if entry.waiting:
                    entry.request.abort(
                        DynamicUnavailable(f"{dynamicClass.path}: the server is stopping")
                    )
            waiters, dynamicClass.waiters = dynamicClass.waiters, deque()
            for w in waiters:
                w.deferred.errback(
                    DynamicUnavailable(f"{dynamicClass.path}: the server is stopping")
                )
            processes.extend(dynamicClass.processes)
        done: Deferred[None] = Deferred()
        self._stopWaiters.append(done)
        if not processes:
            self._finishStop()
            return done
        self.log.info(
            "Stopping {count} dynamic application processes",
            count=len(processes),
        )
        for process in processes:
            if process.protocol is not None:
                process.protocol.terminate(self.stopGrace)
        return done

    def _removeDirectory(self) -> None:
        """
        Remove the C{dynamic/} directory if nothing is left in it (every
        socket is removed at shutdown, SPEC.md Decision 4).
        """
        if self._dynamicDir is not None:
            try:
                os.rmdir(self._dynamicDir)
            except OSError:
                pass

    def _finishStop(self) -> None:
        if self.state != "stopping":
            return
        self.state = "stopped"
        self._classes.clear()
        self._removeDirectory()
        waiters, self._stopWaiters = self._stopWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    # --- requests -----------------------------------------------------------------

    def connect(self, path: str, factory: Any) -> Deferred[Any]:
        """
        Give a connect of the application's pool a free process (module
        docstring).

        @param path: the application's file name.
        @param factory: the pool's protocol factory.
        @return: a Deferred firing with the connected protocol.
        """
        if self.state != "running":
            return fail(DynamicUnavailable(f"{path}: dynamic applications are not running"))
        dynamicClass = self._classFor(path)
        waiter = _Waiter(factory, self._clock.seconds(), dynamicClass)
        dynamicClass.waiters.append(waiter)
        self._serveWaiters(dynamicClass)
        return waiter.deferred

    def _classFor(self, path: str) -> _DynamicClass:
        """
        @return: the class of C{path}, created (and logged) if new.
        """
        dynamicClass = self._classes.get(path)
        if dynamicClass is None:
            dynamicClass = self._classes[path] = _DynamicClass(path)
            history = self._histories.pop(path, None)
            if history is not None:
                dynamicClass.history = history
            self.log.info(
                "Dynamic application {appClass}: first request; class created",
                appClass=path,
            )
        return dynamicClass

    def _arrived(self, path: str) -> None:
        """
        A request for the application at C{path} reached its pool
        (L{DynamicPool}): with C{-autoUpdate}, processes started from an
        older version of the file are drained and stopped, so the request
        (and later ones) go to a process of the new file (SPEC.md section
        4.1: 2.0 compared the file's mtime with its socket's on every
        request).

        Each process remembers the file's modification time (in
        nanoseconds) when it was spawned; a file whose time differs now
        was replaced or rewritten since -- newer, or an older build moved
        back into place, which 2.0's "newer than the socket" missed.

        @param path: the application's file name.
        """
        if not self.config.autoUpdate or self.state != "running":
            return
        dynamicClass = self._classes.get(path)
        if dynamicClass is None:
            return
        live = [p for p in dynamicClass.processes if not p.draining]
        if not live:
            return
        try:
            mtime: int | None = os.stat(path).st_mtime_ns
        except OSError:
            return
        for process in live:
            if process.binaryMtime is None or process.binaryMtime == mtime:
                continue
            self.log.info(
                "Dynamic application {appClass}: its file changed since pid {pid} "
                "started (-autoUpdate); stopping it{drain}, the next requests go "
                "to a new process",
                appClass=path,
                pid=process.pid,
                drain=" after its request in progress" if process.busy else "",
                load=self._loadOf(dynamicClass, self._clock.seconds()),
                processes=len(dynamicClass.processes),
                total=self.processCount(),
                decision="update",
            )
            self._drain(process, "its file changed (-autoUpdate)")

    def _submitted(self, path: str, request: FastCGIRequest) -> None:
        """
        The pool of the application at C{path} took C{request}: if it waits
        for a connection (every connection busy), time its wait: each
        C{startDelay} it asks for one more process, and after
        C{appConnTimeout} it fails with L{DynamicStartTimeout} (module
        docstring).  One timer per class serves all its waiting requests.

        @param path: the application's file name.
        @param request: the request.
        """
        dynamicClass = self._classes.get(path)
        if dynamicClass is None:
            return
        if request.attempts:
            self._noteStarts(dynamicClass)
            return
        if request.done or self.state != "running":
            return
        queued = dynamicClass.queued
        while queued:
            head = queued[0].request
            if not (head.done or head.attempts):
                break
            queued.popleft()
        now = self._clock.seconds()
        timeout = self.config.appConnTimeout
        entry = _Queued(
            request,
            now,
            now + self.config.startDelay,
            now + timeout if timeout else _INFINITY,
        )
        queued.append(entry)
        if dynamicClass.queueCall is None:
            self._scheduleQueueCall(dynamicClass, entry.due)
        wanted = True
        for process in dynamicClass.processes:
            if not process.draining:
                wanted = False
                break
        if wanted:
            self._wantProcess(
                dynamicClass, "on demand: no process is running", StartKind.ON_DEMAND
            )
        if dynamicClass.waiters:
            self._dispatch(dynamicClass)
        if wanted:
            self._evaluate()

    def _scheduleQueueCall(self, dynamicClass: _DynamicClass, due: float) -> None:
        delay = max(0.0, due - self._clock.seconds())
        dynamicClass.queueCall = self._clock.callLater(delay, self._queueDue, dynamicClass)

    def _cancelQueueCall(self, dynamicClass: _DynamicClass) -> None:
        if dynamicClass.queueCall is not None and dynamicClass.queueCall.active():
            dynamicClass.queueCall.cancel()
        dynamicClass.queueCall = None

    def _queueDue(self, dynamicClass: _DynamicClass) -> None:
        """
        Requests of the class waited C{startDelay} more seconds (each asks
        for one more process: 2.0's CONN_TIMEOUT message, which wakes the
        kill policy too) or C{appConnTimeout} (each fails, 503, logged).
        """
        dynamicClass.queueCall = None
        if self.state != "running":
            return
        now = self._clock.seconds()
        asked = False
        # A snapshot: failing a request runs its caller's code, which may
        # hand the pool another request.
        for entry in list(dynamicClass.queued):
            if not entry.waiting:
                continue
            if entry.deadline <= now:
                self._timedOut(dynamicClass, entry)
                continue
            if entry.nextAsk <= now:
                asked = True
                self._wantProcess(
                    dynamicClass,
                    f"a request waited {now - entry.arrivedAt:g} s (startDelay "
                    f"{self.config.startDelay} s)",
                    StartKind.GROWTH if dynamicClass.running else StartKind.ON_DEMAND,
                )
                while entry.nextAsk <= now:
                    entry.nextAsk += self.config.startDelay
        if asked:
            self._dispatch(dynamicClass)
        remaining = deque(e for e in dynamicClass.queued if e.waiting)
        dynamicClass.queued = remaining
        self._cancelQueueCall(dynamicClass)
        if remaining:
            self._scheduleQueueCall(dynamicClass, min(e.due for e in remaining))
        if asked:
            self._evaluate()
        else:
            self._forgetIfUnused(dynamicClass)

    def _timedOut(self, dynamicClass: _DynamicClass, entry: _Queued) -> None:
        """
        A request waited C{appConnTimeout} seconds: fail it (503), logged.
        """
        self.log.warn(
            "Dynamic application {appClass}: a request waited {appConnTimeout} s "
            "for a process (appConnTimeout); answering 503 ({processes} "
            "processes, all busy or starting)",
            appClass=dynamicClass.path,
            appConnTimeout=self.config.appConnTimeout,
            processes=len(dynamicClass.processes),
        )
        entry.request.abort(
            DynamicStartTimeout(
                f"{dynamicClass.path}: no process took the request within "
                f"{self.config.appConnTimeout} s"
            )
        )

    def _demand(self, dynamicClass: _DynamicClass) -> int | None:
        """
        How many more connections the class's pool needs now: its requests
        waiting for one, less the connects already given a process.

        @return: that number, or C{None} without a L{DynamicPool} (then
            every connect counts).
        """
        pool = self._pools.get(dynamicClass.path)
        if pool is None:
            return None
        connecting = sum(1 for p in dynamicClass.processes if p.connecting)
        return pool.queued - connecting

    def _waitingCount(self, dynamicClass: _DynamicClass) -> int:
        """
        @return: how many requests of the class wait for a connection.
        """
        pool = self._pools.get(dynamicClass.path)
        return pool.queued if pool is not None else len(dynamicClass.waiters)

    def _needsProcess(self, dynamicClass: _DynamicClass) -> bool:
        """
        Whether requests of the class wait for a connection.
        """
        demand = self._demand(dynamicClass)
        if demand is None:
            return bool(dynamicClass.waiters)
        return demand > 0 and bool(dynamicClass.waiters)

    def _dispatch(self, dynamicClass: _DynamicClass) -> None:
        """
        Give free processes to the pool's waiting connects, oldest first,
        as long as its requests need them.  (A connect the pool made for a
        request that a kept connection served meanwhile waits, without
        timers, until a request needs it again: no process is started or
        held for it.)
        """
        while dynamicClass.waiters:
            free = dynamicClass.free
            if not free:
                return
            demand = self._demand(dynamicClass)
            if demand is not None and demand <= 0:
                return
            waiter = dynamicClass.waiters.popleft()
            self._assign(free[0], waiter)

    def _assign(self, process: _Process, waiter: _Waiter) -> None:
        """
        Connect C{waiter} (the pool) to C{process}'s socket.
        """
        process.connecting = True
        d = self._connector(process.socketPath, waiter.factory)
        waiter.connecting = d
        dynamicClass = process.dynamicClass

        def connected(protocol: Any) -> None:
            waiter.connecting = None
            process.connecting = False
            usable = (
                not process.ended
                and not process.draining
                and self.state == "running"
            )
            if waiter.cancelled or not usable:
                # A victim (or a process that died) gets no connection; the
                # connect goes to another process.
                self._closeProtocol(protocol)
                if not waiter.cancelled:
                    dynamicClass.waiters.appendleft(waiter)
                self._released(process)
                self._serveWaiters(dynamicClass)
                return
            process.connection = protocol
            waiter.deferred.callback(protocol)
            self._hookIdleAndLost(process, protocol)
            self._noteStarts(dynamicClass)

        def failed(failure: Failure) -> None:
            waiter.connecting = None
            process.connecting = False
            if waiter.cancelled:
                self._released(process)
                return
            # The process's socket does not answer (it died, or a /tmp
            # cleaner removed its socket, SPEC.md section 9.14): stop it, and
            # let the connect wait for another process.
            self.log.warn(
                "Dynamic application {appClass}: cannot connect to pid {pid}: "
                "{error}; stopping it",
                appClass=dynamicClass.path,
                pid=process.pid,
                error=failure.getErrorMessage(),
            )
            dynamicClass.waiters.appendleft(waiter)
            if not process.ended and not process.draining:
                self._drain(process, "its socket cannot be reached")
            else:
                self._released(process)
            self._serveWaiters(dynamicClass)

        d.addCallbacks(connected, failed)

    def _serveWaiters(self, dynamicClass: _DynamicClass) -> None:
        """
        Give the class's waiting connects a process: a free one, or a new
        one when none runs.
        """
        if self.state != "running":
            return
        wanted = bool(dynamicClass.waiters) and not dynamicClass.running
        if wanted:
            self._wantProcess(
                dynamicClass, "on demand: no process is running", StartKind.ON_DEMAND
            )
        self._dispatch(dynamicClass)
        if wanted:
            self._evaluate()

    def _hookIdleAndLost(self, process: _Process, protocol: Any) -> None:
        """
        Learn when the request on C{protocol} ends (its C{onIdle} callback)
        and when the connection closes (C{onLost}), in front of the pool's
        own callbacks.  A draining process's connection is closed when its
        request ends instead of going back to the pool.
        """
        poolIdle = getattr(protocol, "onIdle", None)
        poolLost = getattr(protocol, "onLost", None)

        def onIdle(p: Any) -> None:
            self._requestEnded(process)
            if process.draining or process.ended:
                self._closeProtocol(p)
                return
            if poolIdle is not None:
                poolIdle(p)
                # The pool may have started a waiting request on it.
                self._noteStarts(process.dynamicClass)

        def onLost(p: Any) -> None:
            try:
                if poolLost is not None:
                    poolLost(p)
            finally:
                self._connectionLost(process, p)
                self._noteStarts(process.dynamicClass)

        protocol.onIdle = onIdle
        protocol.onLost = onLost
        if getattr(protocol, "state", None) == "CLOSED":
            self._connectionLost(process, protocol)

    def _closeProtocol(self, protocol: Any) -> None:
        """
        Close a connection made to a process.
        """
        close = getattr(protocol, "close", None)
        if close is not None:
            close()
        elif getattr(protocol, "transport", None) is not None:
            protocol.transport.loseConnection()

    def _noteStarts(self, dynamicClass: _DynamicClass) -> None:
        """
        After the pool had a chance to start requests (a request taken, a
        connection made, idle or lost), note which processes' connections
        became active: they are serving from now.  The connection's
        C{state} says so, whatever the method the pool starts requests
        with.
        """
        now: float | None = None
        for process in dynamicClass.processes:
            connection = process.connection
            if (
                connection is not None
                and process.servingSince is None
                and getattr(connection, "state", None) == "ACTIVE"
            ):
                if now is None:
                    now = self._clock.seconds()
                process.servingSince = now
                process.served += 1

    def _requestEnded(self, process: _Process) -> None:
        """
        The request on C{process}'s connection ended: its service time
        counts in the class's load (2.0's REQ_COMPLETE).
        """
        if process.servingSince is not None:
            process.dynamicClass.connTime += max(
                0.0, self._clock.seconds() - process.servingSince
            )
            process.servingSince = None

    def _connectionLost(self, process: _Process, protocol: Any) -> None:
        """
        C{process}'s connection closed: the process is free again (or, if
        draining, gets its C{SIGTERM}).
        """
        if process.connection is not protocol:
            return
        self._requestEnded(process)
        process.connection = None
        self._released(process)

    def _released(self, process: _Process) -> None:
        """
        No connection holds C{process} any more.
        """
        dynamicClass = process.dynamicClass
        if process.ended or process.assigned:
            return
        if process.draining:
            self._terminate(process, f"{process.drainReason}: its connection closed")
            return
        self._dispatch(dynamicClass)

    def _connectUnix(self, path: str, factory: Any) -> Deferred[Any]:
        """
        Connect to a process's socket as a static application's pool does
        (L{ApplicationAddress.endpoint}).
        """
        return ApplicationAddress.unix(path).endpoint(self._reactor).connect(factory)

    # --- starting -------------------------------------------------------------------


    def _wantProcess(
        self, dynamicClass: _DynamicClass, reason: str, kind: StartKind
    ) -> None:
        """
        One more process of the class is wanted: start one unless a limit
        forbids it (logged), or later when the spacing of
        L{txfastcgi.loadpolicy.startDue} or the crash back-off says so (the
        postponement is logged, and the start happens then if it is still
        wanted: see L{_postponedStart}).

        @param reason: why, for the log.
        @param kind: the kind of start (spacing).
        """
        if self.state != "running":
            return
        refusal = mayStart(
            self.params,
            classProcesses=len(dynamicClass.processes),
            totalProcesses=self.processCount(),
        )
        if refusal is not None:
            if kind is StartKind.RESTART:
                dynamicClass.restartsOwed = 0
            if dynamicClass.limitLogged is not refusal:
                dynamicClass.limitLogged = refusal
                limit = (
                    self.params.maxClassProcesses
                    if refusal is StartRefusal.CLASS_LIMIT
                    else self.params.maxProcesses
                )
                self.log.warn(
                    "Dynamic application {appClass}: not starting another "
                    "process ({reason}): {limit} reached ({value}); {waiting} "
                    "requests wait",
                    appClass=dynamicClass.path,
                    reason=reason,
                    limit=refusal.value,
                    value=limit,
                    waiting=self._waitingCount(dynamicClass),
                    processes=len(dynamicClass.processes),
                    total=self.processCount(),
                    load=self._loadOf(dynamicClass, self._clock.seconds()),
                    decision="refuse",
                )
            return
        now = self._clock.seconds()
        slot = self._freeSlot(dynamicClass)
        spaced = startDue(
            self.params,
            kind,
            lastStart=dynamicClass.history.lastStart,
            freshSlot=slot not in dynamicClass.usedSlots,
            now=now,
        )
        backoff = nextStartTime(self._restartPolicy, dynamicClass.history, now)
        due = max(spaced, backoff)
        if due > now:
            if dynamicClass.startCall is not None and dynamicClass.startAt <= due:
                return
            if dynamicClass.startCall is not None:
                dynamicClass.startCall.cancel()
            if backoff >= spaced:
                why = "its processes keep dying (back-off)"
            elif kind is StartKind.RESTART or slot in dynamicClass.usedSlots:
                why = f"-restart-delay {self.params.restartDelay:g} s after its last start"
            else:
                why = f"-init-start-delay {self.params.initStartDelay:g} s after its last start"
            emit = self.log.warn if backoff >= spaced else self.log.info
            emit(
                "Dynamic application {appClass}: another process wanted "
                "({reason}); it starts in {wait:.2f} s: {why}",
                appClass=dynamicClass.path,
                reason=reason,
                wait=due - now,
                why=why,
                load=self._loadOf(dynamicClass, now),
                processes=len(dynamicClass.processes),
                total=self.processCount(),
                decision="postpone",
            )
            dynamicClass.startAt = due
            dynamicClass.startCall = self._clock.callLater(
                due - now, self._postponedStart, dynamicClass
            )
            return
        if self._spawn(dynamicClass, reason) and kind is StartKind.RESTART:
            dynamicClass.restartsOwed = max(0, dynamicClass.restartsOwed - 1)

    def _postponedStart(self, dynamicClass: _DynamicClass) -> None:
        """
        A postponed start is due: start a process if one is still wanted (a
        restart owed, or a request waiting with no process free to take
        it), then further ones later if still owed.
        """
        dynamicClass.startCall = None
        if self.state != "running":
            return
        waiting = self._needsProcess(dynamicClass) and not dynamicClass.free
        if dynamicClass.restartsOwed:
            self._wantProcess(
                dynamicClass, "restarting a process that died (-restart)", StartKind.RESTART
            )
        elif waiting:
            if dynamicClass.running:
                self._wantProcess(
                    dynamicClass, "a request still waits", StartKind.GROWTH
                )
            else:
                self._wantProcess(
                    dynamicClass, "on demand: no process is running", StartKind.ON_DEMAND
                )
        else:
            return
        self._dispatch(dynamicClass)
        if dynamicClass.restartsOwed and dynamicClass.startCall is None:
            self._wantProcess(
                dynamicClass, "restarting a process that died (-restart)", StartKind.RESTART
            )
        self._evaluate()

    def _freeSlot(self, dynamicClass: _DynamicClass) -> int:
        used = {p.slot for p in dynamicClass.processes}
        slot = 0
        while slot in used:
            slot += 1
        return slot

    def _spawn(self, dynamicClass: _DynamicClass, reason: str) -> bool:
        assert self._dynamicDir is not None
        path = dynamicClass.path
        slot = self._freeSlot(dynamicClass)
        socketPath = os.path.join(self._dynamicDir, f"{dynamicClass.key}.{slot}")
        now = self._clock.seconds()
        try:
            listening = createUnixListeningSocket(
                socketPath,
                backlog=self.config.listenQueueDepth,
                uid=self._uid,
                gid=self._gid,
            )
        except IPCError as e:
            self.log.error(
                "Dynamic application {appClass}: cannot create its socket: {error}",
                appClass=path,
                error=str(e),
            )
            self._failWaitersIfHopeless(dynamicClass, f"cannot create its socket: {e}")
            return False
        dynamicClass.usedSlots.add(slot)
        process = _Process(dynamicClass, slot, socketPath, listening, now)
        try:
            process.binaryMtime = os.stat(path).st_mtime_ns
        except OSError:
            process.binaryMtime = None
        protocol = _AppProcess(self, process, now)
        process.protocol = protocol
        dynamicClass.history = recordStart(dynamicClass.history, now)
        try:
            transport = self._reactor.spawnProcess(
                protocol,
                path,
                [path],
                env=dict(self._env),
                path=os.path.dirname(path) or ".",
                uid=self._uid if os.geteuid() == 0 else None,
                gid=self._gid if os.geteuid() == 0 else None,
                childFDs={0: listening.fileno(), 1: "r", 2: "r"},
            )
        except Exception as e:
            self._closeSocket(listening)
            dynamicClass.history, _ = recordDeath(
                self._restartPolicy,
                dynamicClass.history,
                startedAt=now,
                now=now,
                exitCode=127,
            )
            self.log.error(
                "Dynamic application {appClass}: cannot start it: {error}",
                appClass=path,
                error=str(e),
            )
            self._failWaitersIfHopeless(dynamicClass, f"cannot start it: {e}")
            return False
        # The process has its copy as fd 0: when it dies, connections
        # queued to it are refused instead of waiting forever.
        listening.socket.close()
        if not protocol.pid:
            protocol.pid = getattr(transport, "pid", None) or 0
        if protocol.ended.called:
            return True
        dynamicClass.processes.append(process)
        dynamicClass.starts += 1
        dynamicClass.limitLogged = None
        load = self._loadOf(dynamicClass, now)
        self.log.info(
            "Dynamic application {appClass}: started pid {pid} ({reason}); "
            "{processes} processes of the class, {total} in all; load {load:.2f}",
            appClass=path,
            pid=protocol.pid,
            reason=reason,
            processes=len(dynamicClass.processes),
            total=self.processCount(),
            load=load,
            decision="start",
        )
        # The kill policy runs (processSlack) once the caller has given the
        # new process its request: see _changed.
        return True

    def _failWaitersIfHopeless(self, dynamicClass: _DynamicClass, why: str) -> None:
        """
        A start failed: if the class has no process that could serve its
        waiting requests, answer them now (503) instead of letting them wait
        for C{appConnTimeout}.
        """
        if dynamicClass.processes:
            return
        waiters, dynamicClass.waiters = dynamicClass.waiters, deque()
        if waiters:
            self.log.warn(
                "Dynamic application {appClass}: {count} waiting requests answered "
                "503: {why}",
                appClass=dynamicClass.path,
                count=len(waiters),
                why=why,
            )
        for waiter in waiters:
            waiter.deferred.errback(DynamicUnavailable(f"{dynamicClass.path}: {why}"))

    def _loadOf(self, dynamicClass: _DynamicClass, now: float) -> float:
        epoch = self._epoch if self._epoch is not None else now
        return loadFactor(dynamicClass.load(), now=now, epoch=epoch)

    # --- kill policy -----------------------------------------------------------------

    def _evaluate(self) -> None:
        """
        Smooth the statistics when a period ended, and run the kill policy
        when it is due (L{txfastcgi.loadpolicy}).
        """
        if self.state != "running":
            return
        now = self._clock.seconds()
        periods, self._lastAnalysis = analysisDue(self.params, self._lastAnalysis, now)
        if periods:
            for dynamicClass in self._classes.values():
                smoothed = smoothLoad(self.params, dynamicClass.load())
                dynamicClass.smooth = smoothed.smooth
                dynamicClass.connTime = smoothed.connTime
        if self._epoch is None:
            self._epoch = now
        running = sum(len(c.running) for c in self._classes.values())
        trigger = killTrigger(
            self.params, epoch=self._epoch, now=now, totalProcesses=running
        )
        if trigger is not None:
            self.policyRuns += 1
            classes = list(self._classes.values())
            victims = chooseVictims(
                self.params, [c.load() for c in classes], now=now, epoch=self._epoch
            )
            self._epoch = now
            for victim in victims:
                self._kill(self._classes[victim.path], victim, trigger.value)
        self._scheduleTick()

    def _kill(self, dynamicClass: _DynamicClass, victim: Victim, trigger: str) -> None:
        """
        Stop one process of a class the kill policy chose: the youngest
        that is not serving a request, else the youngest.
        """
        running = dynamicClass.running
        if not running:
            return
        idle = [p for p in running if not p.busy]
        process = (idle or running)[-1]
        self.log.info(
            "Dynamic application {appClass}: stopping pid {pid} ({reason}; kill "
            "policy run by {trigger}){drain}",
            appClass=dynamicClass.path,
            pid=process.pid,
            reason=victim.describe(),
            trigger=trigger,
            load=victim.loadFactor,
            processes=victim.processes,
            total=self.processCount(),
            drain="" if not process.busy else "; after its request in progress",
            decision="kill",
        )
        self._drain(process, "chosen by the kill policy")

    def _drain(self, process: _Process, why: str) -> None:
        """
        Stop a process without failing a request: from now on no
        connection is given to it; its idle connection is closed now, the
        one serving a request when that request ends; once none is left it
        gets C{SIGTERM}.

        @param why: the reason, for the log of the C{SIGTERM}.
        """
        process.draining = True
        process.drainReason = why
        if process.connecting:
            return
        if process.connection is None:
            self._terminate(process, f"{why}, while idle")
        elif not process.busy:
            self._closeProtocol(process.connection)

    def _terminate(self, process: _Process, why: str) -> None:
        """
        Send a victim C{SIGTERM} (C{SIGKILL} after C{stopGrace}), logged
        with C{why}.
        """
        if process.protocol is not None and not process.protocol.stopping:
            self.log.info(
                "Dynamic application {appClass}: SIGTERM to pid {pid} ({why})",
                appClass=process.dynamicClass.path,
                pid=process.pid,
                why=why,
                decision="terminate",
            )
            process.protocol.terminate(self.stopGrace)

    def _scheduleTick(self) -> None:
        self._cancelTick()
        if self.state != "running" or self._epoch is None:
            return
        now = self._clock.seconds()
        due = min(
            self._lastAnalysis + self.params.updateInterval,
            self._epoch + self.params.killInterval,
        )
        self._tickCall = self._clock.callLater(max(0.0, due - now), self._tick)

    def _tick(self) -> None:
        self._tickCall = None
        self._evaluate()

    def _cancelTick(self) -> None:
        if self._tickCall is not None and self._tickCall.active():
            self._tickCall.cancel()
        self._tickCall = None

    # --- process ends (the ProcessOwner interface) ------------------------------------

    def _logOutput(self, process: _AppProcess, stream: str, line: str) -> None:
        logOutputLine(self.log, process.managed.dynamicClass.path, process.pid, stream, line)

    def _logKill(self, process: _AppProcess) -> None:
        logKill(
            self.log,
            "Dynamic application",
            process.managed.dynamicClass.path,
            process.pid,
            self.stopGrace,
        )

    def _processEnded(
        self, protocol: _AppProcess, exitCode: int | None, signal: int | None
    ) -> None:
        process: _Process = protocol.managed
        dynamicClass = process.dynamicClass
        process.ended = True
        if process in dynamicClass.processes:
            dynamicClass.processes.remove(process)
        self._closeSocket(process.listening)
        how = describeExit(exitCode, signal)
        exitedAt = protocol.exitedAt if protocol.exitedAt is not None else 0.0
        if protocol.stopping or self.state != "running":
            self.log.info(
                "Dynamic application {appClass} pid {pid} stopped ({how}); "
                "{processes} processes of the class, {total} in all",
                appClass=dynamicClass.path,
                pid=protocol.pid,
                how=how,
                exitCode=exitCode,
                signal=signal,
                processes=len(dynamicClass.processes),
                total=self.processCount(),
            )
        else:
            dynamicClass.history, decision = recordDeath(
                self._restartPolicy,
                dynamicClass.history,
                startedAt=process.startedAt,
                now=exitedAt,
                exitCode=exitCode,
                signal=signal,
                runningSince=[p.startedAt for p in dynamicClass.processes],
            )
            restart = self.config.restart or (
                not dynamicClass.processes and self.params.singleThreshold == 0
            )
            if restart:
                dynamicClass.restartsOwed += 1
                then = (
                    "restarted (-restart)"
                    if self.config.restart
                    else "restarted: it was the last one and -singleThreshold 0 "
                    "keeps one"
                )
            else:
                then = "replaced only when a request needs it"
            emit = self.log.info if exitCode == 0 else self.log.error
            emit(
                "Dynamic application {appClass} pid {pid} {how} after {lifetime:.1f} "
                "s; {then}",
                appClass=dynamicClass.path,
                pid=protocol.pid,
                how="exited with " + how if signal is None else "crashed (" + how + ")",
                then=then,
                exitCode=exitCode,
                signal=signal,
                lifetime=decision.lifetime,
                quickFailures=decision.consecutiveFailures,
            )
        if self.state == "stopping":
            if not any(c.processes for c in self._classes.values()):
                self._finishStop()
            return
        needed = self._needsProcess(dynamicClass) and not dynamicClass.running
        wanted = needed or bool(dynamicClass.restartsOwed)
        if dynamicClass.restartsOwed:
            self._wantProcess(
                dynamicClass, "restarting a process that died (-restart)", StartKind.RESTART
            )
            self._dispatch(dynamicClass)
        if needed and not dynamicClass.running:
            self._wantProcess(
                dynamicClass,
                "on demand: a request waits and no process is running",
                StartKind.ON_DEMAND,
            )
            self._dispatch(dynamicClass)
        self._forgetIfUnused(dynamicClass)
        if wanted:
            # A start request wakes the policy; a death alone does not
            # (2.0 skips the kill policy on a purely SIGCHLD wake-up).
            self._evaluate()

    def _forgetIfUnused(self, dynamicClass: _DynamicClass) -> None:
        if any(entry.waiting for entry in dynamicClass.queued):
            return
        dynamicClass.queued.clear()
        self._cancelQueueCall(dynamicClass)
        if (
            not dynamicClass.queued
            and not dynamicClass.processes
            and not dynamicClass.waiters
            and dynamicClass.startCall is None
            and self._classes.get(dynamicClass.path) is dynamicClass
        ):
            del self._classes[dynamicClass.path]
            if dynamicClass.history.quickFailures:
                # Keep the back-off of a binary that keeps failing for the
                # class made by its next request.
                if len(self._histories) >= _HISTORY_LIMIT:
                    self._histories.pop(next(iter(self._histories)))
                self._histories[dynamicClass.path] = dynamicClass.history
            self.log.info(
                "Dynamic application {appClass}: no process left; class removed",
                appClass=dynamicClass.path,
            )

    def _closeSocket(self, listening: ListeningSocket) -> None:
        try:
            listening.close()
        except IPCError as e:
            self.log.error("Cannot remove socket {path}: {error}", path=e.path, error=str(e))
