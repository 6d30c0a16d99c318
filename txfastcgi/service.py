# -*- test-case-name: tests.test_service -*-
"""
The gateway server as one service: what C{twistd fastcgi --config FILE}
runs.

L{makeGatewayService} turns a L{ServerConfig} into a L{GatewayService},
which holds:

  - the L{ApplicationSupervisor} for the C{AppClass} (managed) and
    C{ExternalAppClass} (external) applications;
  - one L{ConnectionPool} per application, keyed by its path-name:
    a managed class's pool connects to the supervisor's socket
    (L{ApplicationSupervisor.addressFor}), an external one's to its
    C{-host} or C{-socket}.  A managed class's pool has at most
    C{-processes} connections: libfcgi applications (and most others that
    inherit a listening socket) serve one connection per process at a time,
    so more connections would only wait in the listen queue while holding
    nothing.  An external application's pool has the pool's default cap (16),
    lowered to its C{FCGI_MAX_CONNS} when it answers C{FCGI_GET_VALUES}
    (php-fpm does).  C{-appConnTimeout} is the connect timeout (10 s when 0),
    C{-idle-timeout} the response timeout;
  - the root resource (L{txfastcgi.gateway.GatewayResource}) in a
    L{GatewayHTTPSite}: a L{txfastcgi.site.GatewaySite} that writes the
    access logs itself (twisted.web's own access log is not used) and keeps
    track of the requests in flight;
  - one listening port per C{Listen} (or C{Port}/C{BindAddress}), from its
    endpoint description (C{tcp:5556}, C{ssl:443:privateKey=...}, ...);
  - the log files: C{ErrorLog} as a C{twisted.logger} observer, each
    C{TransferLog}/C{CustomLog} (L{txfastcgi.logs}).

Start-up
========

B{privilegedStartService} (twistd calls it while the process may still be
root): open the log files; open the applications' sockets
(supervisor); build the pools, the resource and the site; listen on every
address (an address that cannot be bound stops the start with a one-line
error); then, when the configuration names a C{User} and the server is
root, switch to that user and group (see L{RunAs}).  B{startService}:
log the configuration's notes (once), start the applications'
processes, install the SIGHUP handler (reopen every log file, for
logrotate).

Privileges
==========

When started as root with C{User} (and C{Group}) in the configuration:

  - sockets in the FastCgiIpcDir and the log files are given to that user,
    so that the server can still connect to them and reopen them;
  - after binding, the server itself switches to that user (supplementary
    groups, gid, uid), so the applications it starts run as that user too.
  - C{twistd --uid/--gid} take precedence over C{User}/C{Group}: twistd
    then switches after L{GatewayService.privilegedStartService} and the
    service does not.
  - If an C{AppClass} has its own C{-user}/C{-group}, the server cannot
    give up root (it must start processes as several users): it stays root,
    starts every class as its own user (C{User}/C{Group} for classes
    without one), and logs a warning.  Started as another user, C{User}
    is ignored (with a warning), as in Apache.
  - After the switch the server still imports modules now and then (lazily),
    so the Python installation must be readable by that user (a Python
    under a mode-0700 C{/root} is not).

The C{ErrorLog} gets every event at C{info} level and above (C{LogLevel} is
one of the directives the configuration reader ignores).

Shutdown (STYLE.md P4)
======================

L{GatewayService.stopService} runs these steps one after the other, each
logged, each bounded:

  1. stop listening on every address;
  2. let the requests in flight finish, for at most C{drainTimeout}
     seconds (10); the connections of those still running then are aborted;
  3. close every pool (at most C{poolCloseTimeout} seconds, 5);
  4. stop the supervisor (SIGTERM, SIGKILL after its grace; it waits for
     every process and removes the sockets), then the dynamic applications
     (L{txfastcgi.dynamic}) likewise;
  5. remove the SIGHUP handler, detach the error log and close the log files.
"""

from __future__ import annotations

import os
import pwd
import signal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, cast

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, TimeoutError, succeed
from twisted.internet.error import ConnectionLost
from twisted.logger import ILogObserver, Logger, LogPublisher, globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.resource import IResource

from txfastcgi.appclass import AppClassError
from txfastcgi.config import AppClassConfig, ExternalAppClassConfig, ServerConfig
from txfastcgi.dynamic import DynamicApplicationManager
from txfastcgi.ipc import IPCError
from txfastcgi.logs import (
    AccessLog,
    ErrorLogObserver,
    LogFile,
    TimedRequest,
    reopenAll,
)
from txfastcgi.pool import ApplicationAddress, ConnectionPool
from txfastcgi.site import DEFAULT_MAX_REQUEST_BODY_SIZE, GatewaySite
from txfastcgi.supervisor import (
    ApplicationSupervisor,
    SignalInstaller,
    installSignalHandler,
)

__all__ = [
    "DEFAULT_DRAIN_TIMEOUT",
    "DEFAULT_EXTERNAL_MAX_CONNECTIONS",
    "DEFAULT_POOL_CLOSE_TIMEOUT",
    "GatewayHTTPSite",
    "GatewayService",
    "RunAs",
    "StartupError",
    "checkEndpoint",
    "makeGatewayService",
    "resolveRunAs",
]

DEFAULT_DRAIN_TIMEOUT = 10.0
"""Seconds requests in flight get to finish at shutdown."""

DEFAULT_POOL_CLOSE_TIMEOUT = 5.0
"""Seconds the pools get to close their connections at shutdown."""

DEFAULT_EXTERNAL_MAX_CONNECTIONS = 16
"""The connection cap of an external application's pool."""

DEFAULT_CONNECT_TIMEOUT = 10.0
"""The connect timeout when C{-appConnTimeout} is 0."""

ResourceFactory = Callable[..., IResource]
"""Builds the root resource: C{(config, *, pools, reactor)}."""

PoolFactory = Callable[..., ConnectionPool]
"""Builds a pool: C{(reactor, address, **options)}."""

SwitchUser = Callable[["RunAs"], None]
"""Switches the process to a user."""


class StartupError(SystemExit):
    """
    The server cannot start (an address cannot be bound, a log file cannot
    be opened, an application's socket cannot be set up).  C{str()} is one
    line.

    A L{SystemExit}, so that twistd, which calls
    L{GatewayService.privilegedStartService} unguarded, exits with status 1
    printing that line (and no traceback); the line is logged too, for a
    daemon whose stderr goes nowhere.
    """

    def __str__(self) -> str:
        """
        @return: the message.
        """
        return str(self.code)


def checkEndpoint(description: str) -> None:
    """
    Check a Twisted server endpoint description the way the server will use
    it (C{serverFromString}); for L{txfastcgi.config.readConfig}.

    No reactor is used: the parsers only build endpoint objects (the TLS
    one loads its key and certificate, so a missing file is reported).

    @param description: e.g. C{ssl:443:privateKey=key.pem}.
    @raise Exception: whatever C{serverFromString} raises.
    """
    from twisted.internet.endpoints import serverFromString

    serverFromString(None, description)  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class RunAs:
    """
    The account the server and its applications run as after binding.

    @ivar uid: the user id.
    @ivar gid: the group id.
    @ivar name: the user's name, for supplementary groups, if it has one.
    @ivar switch: whether L{GatewayService} switches the process to it after
        binding (C{False} when twistd's C{--uid} does, or when the server
        must stay root).
    @ivar keepRoot: whether the server stays root to start applications as
        several users (an C{AppClass} with C{-user}/C{-group}).
    """

    uid: int
    gid: int
    name: str | None
    switch: bool
    keepRoot: bool = False


def resolveRunAs(
    config: ServerConfig,
    *,
    euid: int,
    twistdUid: int | None = None,
    twistdGid: int | None = None,
) -> RunAs | None:
    """
    Decide who the server runs as (module docstring, "Privileges").

    @param config: the configuration.
    @param euid: the server's effective uid now.
    @param twistdUid: twistd's C{--uid}, if given.
    @param twistdGid: twistd's C{--gid}, if given.
    @return: the account, or C{None} to stay as started.
    """

    def nameOf(uid: int) -> str | None:
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return None

    def primaryGroup(uid: int) -> int | None:
        try:
            return pwd.getpwuid(uid).pw_gid
        except KeyError:
            return None

    if twistdUid is not None or twistdGid is not None:
        uid = twistdUid if twistdUid is not None else euid
        twistdGroup = twistdGid if twistdGid is not None else primaryGroup(uid)
        if twistdGroup is None:
            twistdGroup = os.getegid()
        return RunAs(uid, twistdGroup, nameOf(uid), False)
    if config.user is None or euid != 0:
        return None
    uid = config.user.uid
    gid: int | None
    if config.group is not None:
        gid = config.group.gid
    else:
        gid = config.user.gid
    if gid is None:
        gid = uid
    keepRoot = any(c.uid is not None or c.gid is not None for c in config.appClasses)
    return RunAs(uid, gid, nameOf(uid), not keepRoot, keepRoot)


def _switchUser(runAs: RunAs) -> None:
    """
    Switch this process to C{runAs}: supplementary groups, gid, then uid.
    """
    if runAs.name is not None:
        os.initgroups(runAs.name, runAs.gid)
    else:
        os.setgroups([runAs.gid])
    os.setgid(runAs.gid)
    os.setuid(runAs.uid)


class _FinishWatch:
    """
    Stands in for the Deferred C{Request.notifyFinish} would return: tells
    the site of the request's end, whichever way it ended.
    """

    __slots__ = ("_site", "_request")

    def __init__(self, site: GatewayHTTPSite, request: Any) -> None:
        self._site = site
        self._request = request

    def callback(self, result: object) -> None:
        self._site._requestDone(result, self._request)

    def errback(self, reason: object = None) -> None:
        if not isinstance(reason, Failure):
            # As Deferred.errback: whatever the connection was lost with.
            if not isinstance(reason, BaseException):
                reason = ConnectionLost()
            reason = Failure(reason)  # type: ignore[no-untyped-call]
        self._site._requestDone(reason, self._request)


class GatewayHTTPSite(GatewaySite):
    """
    The gateway's site: a L{GatewaySite} of L{TimedRequest}s that writes
    the access logs (instead of twisted.web's combined log) and knows the
    requests in flight.

    A request is in flight from when it reaches the resource tree until its
    response ends or its client goes away.  A request whose client went away
    is logged then (C{%X} gives C{X}).

    @ivar accessLogs: the access logs.
    @ivar inFlight: the requests in flight.
    """

    requestFactory: Any
    _log = Logger()

    def __init__(
        self,
        resource: IResource,
        *,
        reactor: Any,
        accessLogs: Iterable[AccessLog] = (),
        maxRequestBodySize: int | None = DEFAULT_MAX_REQUEST_BODY_SIZE,
        **kwargs: Any,
    ) -> None:
        """
        @param resource: the root resource.
        @param reactor: the clock for request times (and the site's timers).
        @param accessLogs: the access logs to write.
        @param maxRequestBodySize: the body limit (L{None}: none).
        @param kwargs: more L{GatewaySite} arguments.
        """
        super().__init__(
            resource,
            maxRequestBodySize=maxRequestBodySize,
            requestFactory=TimedRequest,
            reactor=reactor,
            **kwargs,
        )
        self.accessLogs = list(accessLogs)
        self.inFlight: set[Any] = set()
        self._idleWaiters: list[Deferred[None]] = []

    def getResourceFor(self, request: Any) -> IResource:
        """
        Note the request as in flight, then find its resource as usual.

        @param request: the request.
        @return: the resource.
        """
        if request not in self.inFlight:
            self.inFlight.add(request)
            notifications = getattr(request, "notifications", None)
            if type(notifications) is list:
                # What notifyFinish() would add, without a Deferred per
                # request: finish calls callback(None), a lost connection
                # errback(reason).
                notifications.append(_FinishWatch(self, request))
            else:
                request.notifyFinish().addBoth(self._requestDone, request)
        resource: IResource = super().getResourceFor(request)  # type: ignore[no-untyped-call]
        return resource

    def _requestDone(self, result: object, request: Any) -> None:
        if isinstance(result, Failure) and not request.finished:
            # The client went away: log what happened so far.
            self.log(request)
        self.inFlight.discard(request)
        if not self.inFlight:
            waiters, self._idleWaiters = self._idleWaiters, []
            for waiter in waiters:
                waiter.callback(None)

    def whenIdle(self) -> Deferred[None]:
        """
        @return: a Deferred firing when no request is in flight.
        """
        if not self.inFlight:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idleWaiters.append(waiter)
        return waiter

    def log(self, request: Any) -> None:
        """
        Write C{request}'s line to every access log.

        @param request: the finished (or abandoned) request.
        """
        if not self.accessLogs:
            return
        clock: Any = self.reactor
        finished: float = clock.seconds()
        started = getattr(request, "startedAt", finished)
        for accessLog in self.accessLogs:
            try:
                accessLog.log(request, started=started, finished=finished)
            except Exception:
                self._log.failure(
                    "Cannot write the access log {path}", path=accessLog.file.path
                )


class _Listening:
    """
    One listening address: its description and, once listening, its port.
    """

    def __init__(self, description: str, endpoint: Any) -> None:
        self.description = description
        self.endpoint = endpoint
        self.port: Any = None


class GatewayService(MultiService):
    """
    The whole server; see the module docstring for what it holds and the
    order of start-up and shutdown.

    States: C{"new"}, C{"prepared"} (after L{privilegedStartService}:
    files, sockets and ports open), C{"running"}, C{"stopping"},
    C{"stopped"}.

    @ivar config: the configuration.
    @ivar supervisor: the applications' supervisor (also the child service
        named C{"supervisor"}).
    @ivar pools: path-name → pool, once prepared.
    @ivar site: the site, once prepared.
    @ivar logFiles: every log file.
    @ivar accessLogs: the access logs.
    @ivar errorLog: the C{ErrorLog} observer, if configured.
    @ivar drainTimeout: seconds in-flight requests get at shutdown.
    @ivar poolCloseTimeout: seconds the pools get to close.
    @ivar runAs: who the server runs as after binding.
    """

    log = Logger()

    def __init__(
        self,
        config: ServerConfig,
        reactor: Any,
        *,
        supervisor: ApplicationSupervisor,
        endpoints: Iterable[tuple[str, Any]],
        resourceFactory: ResourceFactory,
        poolFactory: PoolFactory = ConnectionPool,
        accessLogs: Iterable[AccessLog] = (),
        errorLog: ErrorLogObserver | None = None,
        runAs: RunAs | None = None,
        switchUser: SwitchUser = _switchUser,
        installSignal: SignalInstaller | None = None,
        logPublisher: LogPublisher | None = None,
        drainTimeout: float = DEFAULT_DRAIN_TIMEOUT,
        poolCloseTimeout: float = DEFAULT_POOL_CLOSE_TIMEOUT,
        dynamic: DynamicApplicationManager | None = None,
    ) -> None:
        """
        @param config: the configuration.
        @param reactor: the reactor (time, and what the endpoints need).
        @param supervisor: the supervisor of the applications.
        @param endpoints: C{(description, server endpoint)} per address.
        @param resourceFactory: builds the root resource, called as
            C{resourceFactory(config, pools=pools, reactor=reactor)}.
        @param poolFactory: builds a pool, as L{ConnectionPool}.
        @param accessLogs: the access logs.
        @param errorLog: the C{ErrorLog} observer, if any.
        @param runAs: who to run as (L{resolveRunAs}).
        @param switchUser: switches the process to C{runAs}.
        @param installSignal: installs the SIGHUP handler
            (L{installSignalHandler} of C{reactor} by default).
        @param logPublisher: where C{errorLog} is attached
            (C{globalLogPublisher} by default).
        @param drainTimeout: seconds in-flight requests get at shutdown.
        @param poolCloseTimeout: seconds the pools get to close.
        @param dynamic: the manager of dynamic applications, or C{None} to
            serve none.
        """
        super().__init__()  # type: ignore[no-untyped-call]
        self.config = config
        self._reactor = reactor
        self.supervisor = supervisor
        supervisor.setName("supervisor")  # type: ignore[no-untyped-call]
        supervisor.setServiceParent(self)  # type: ignore[no-untyped-call]
        self._listening = [_Listening(d, e) for d, e in endpoints]
        self._resourceFactory = resourceFactory
        self._poolFactory = poolFactory
        self.accessLogs = list(accessLogs)
        self.errorLog = errorLog
        self.logFiles: list[LogFile] = []
        if errorLog is not None:
            self.logFiles.append(errorLog.file)
        for accessLog in self.accessLogs:
            if all(accessLog.file is not f for f in self.logFiles):
                self.logFiles.append(accessLog.file)
        self.runAs = runAs
        self._switchUser = switchUser
        self._installSignal = (
            installSignal if installSignal is not None else installSignalHandler(reactor)
        )
        self._uninstallSignal: Callable[[], None] | None = None
        self._publisher = logPublisher if logPublisher is not None else globalLogPublisher
        self.drainTimeout = drainTimeout
        self.poolCloseTimeout = poolCloseTimeout
        self.pools: dict[str, ConnectionPool] = {}
        self.dynamic = dynamic
        self.site: GatewayHTTPSite | None = None
        self.state = "new"
        self._notesLogged = False
        self._stopping: Deferred[None] | None = None

    # --- start ------------------------------------------------------------

    @property
    def ports(self) -> list[Any]:
        """
        The listening ports (C{IListeningPort}s), once prepared.
        """
        return [listening.port for listening in self._listening if listening.port]

    def _poolFor(self, app: AppClassConfig | ExternalAppClassConfig) -> ConnectionPool:
        options = self.config.optionsFor(app.path)
        address: ApplicationAddress = self.supervisor.addressFor(app.path)
        if isinstance(app, AppClassConfig):
            maxConnections = app.processes
        else:
            maxConnections = DEFAULT_EXTERNAL_MAX_CONNECTIONS
        connectTimeout = float(options.appConnTimeout or DEFAULT_CONNECT_TIMEOUT)
        return self._poolFactory(
            self._reactor,
            address,
            maxConnections=maxConnections,
            connectTimeout=connectTimeout,
            responseTimeout=float(options.idleTimeout) or None,
        )

    def dynamicPool(self, path: str) -> ConnectionPool:
        """
        The pool of a dynamic application, made on its first request
        (L{DynamicApplicationManager.poolFor}) and closed with the others.

        @param path: the application's file name.
        @return: the pool.
        """
        pool = self.pools.get(path)
        if pool is None:
            assert self.dynamic is not None
            pool = self.dynamic.poolFor(path)
            self.pools[path] = pool
        return pool

    def privilegedStartService(self) -> None:
        """
        Open the log files and the applications' sockets, build pools,
        resource and site, listen, then switch user (module docstring).

        @raise StartupError: if a log file cannot be opened or an address
            cannot be bound (everything opened so far is closed again).
        """
        if self.state not in ("new", "stopped"):
            return
        Service.privilegedStartService(self)  # type: ignore[no-untyped-call]
        try:
            self._openLogs()
            try:
                self.supervisor.privilegedStartService()
            except (IPCError, AppClassError) as e:
                message = e.located() if isinstance(e, AppClassError) else str(e)
                raise StartupError(
                    f"cannot set up the applications' sockets: {message}"
                ) from e
            if self.dynamic is not None:
                try:
                    self.dynamic.privilegedStartService()
                except IPCError as e:
                    raise StartupError(
                        f"cannot set up the dynamic applications' directory: {e}"
                    ) from e
            self.pools = {}
            apps: list[AppClassConfig | ExternalAppClassConfig] = [
                *self.config.appClasses,
                *self.config.externalAppClasses,
            ]
            for app in apps:
                self.pools[app.path] = self._poolFor(app)
            extra: dict[str, Any] = {}
            if self.dynamic is not None:
                extra["dynamicPools"] = self.dynamicPool
            resource = self._resourceFactory(
                self.config, pools=self.pools, reactor=self._reactor, **extra
            )
            limit = self.config.server.limitRequestBody
            maxBody: int | None = DEFAULT_MAX_REQUEST_BODY_SIZE
            if limit is not None:
                maxBody = limit.value or None
            self.site = GatewayHTTPSite(
                resource,
                reactor=self._reactor,
                accessLogs=self.accessLogs,
                maxRequestBodySize=maxBody,
            )
            self._listen(self.site)
        except StartupError as e:
            self.log.critical("Cannot start: {error}", error=str(e))
            self._abortStart()
            raise
        except BaseException:
            self._abortStart()
            raise
        self.state = "prepared"
        if self.runAs is not None and self.runAs.switch:
            self._switchUser(self.runAs)
            self.log.info(
                "Switched to user {uid} group {gid}{name}",
                uid=self.runAs.uid,
                gid=self.runAs.gid,
                name=f" ({self.runAs.name})" if self.runAs.name else "",
            )

    def _openLogs(self) -> None:
        for logFile in self.logFiles:
            try:
                logFile.open()
            except OSError as e:
                raise StartupError(
                    f"cannot open the log file {logFile.path}: {e.strerror}"
                ) from e
        if self.errorLog is not None:
            self._publisher.addObserver(cast(ILogObserver, self.errorLog))

    def _listen(self, site: GatewayHTTPSite) -> None:
        for listening in self._listening:
            results: list[object] = []
            listening.endpoint.listen(site).addBoth(results.append)
            if not results:
                raise StartupError(
                    f"listening on {listening.description} did not finish at once"
                )
            result = results[0]
            if isinstance(result, Failure):
                raise StartupError(
                    f"cannot listen on {listening.description}: "
                    f"{result.getErrorMessage()}"
                )
            listening.port = result
            self.log.info(
                "Listening on {address}", address=listening.description
            )

    def _abortStart(self) -> None:
        for listening in self._listening:
            if listening.port is not None:
                listening.port.stopListening()
                listening.port = None
        for pool in self.pools.values():
            pool.closeAll()
        self.pools = {}
        self.supervisor.stopService()
        if self.dynamic is not None:
            self.dynamic.stopService()
        self._closeLogs()
        self.state = "stopped"

    def startService(self) -> None:
        """
        Log the configuration's notes (the first time), start the
        applications and install the SIGHUP handler.  Prepares first if
        L{privilegedStartService} did not run.
        """
        if self.state in ("new", "stopped"):
            self.privilegedStartService()
        if self.state != "prepared":
            return
        Service.startService(self)  # type: ignore[no-untyped-call]
        self.state = "running"
        if not self._notesLogged:
            self._notesLogged = True
            for note in self.config.notes:
                self.log.warn(
                    "{file}:{line}: {directive}: {message}",
                    file=note.source.filename,
                    line=note.source.line,
                    directive=note.directive,
                    message=note.message,
                )
            if self.runAs is not None and self.runAs.keepRoot:
                self.log.warn(
                    "An AppClass has its own -user or -group, so the server "
                    "keeps root privileges to start it; applications without "
                    "one run as user {uid} group {gid}",
                    uid=self.runAs.uid,
                    gid=self.runAs.gid,
                )
            if (
                self.config.user is not None
                and self.runAs is None
                and os.geteuid() != 0
            ):
                self.log.warn(
                    "User {user}: the server was not started as root; it runs "
                    "as user {uid}",
                    user=self.config.user.name,
                    uid=os.geteuid(),
                )
        self.supervisor.startService()
        if self.dynamic is not None:
            self.dynamic.startService()
        self._uninstallSignal = self._installSignal(
            signal.SIGHUP, self.reopenLogs
        )
        self.log.info(
            "txfastcgi serving {applications} applications on {addresses}",
            applications=len(self.pools),
            addresses=", ".join(listening.description for listening in self._listening),
        )

    def reopenLogs(self) -> None:
        """
        Reopen every log file (SIGHUP, after logrotate moved them).
        """
        failed = reopenAll(self.logFiles)
        for logFile, error in failed:
            self.log.error(
                "Cannot reopen the log file {path}: {error}; still writing to "
                "the old one",
                path=logFile.path,
                error=error.strerror,
            )
        self.log.info(
            "Reopened {count} log files", count=len(self.logFiles) - len(failed)
        )

    # --- stop -------------------------------------------------------------

    def stopService(self) -> Deferred[None]:
        """
        Stop in order: listening, in-flight requests (bounded), pools
        (bounded), the supervisor, the logs.

        @return: a Deferred firing when all is done; it does not fail
            (failures of a step are logged and the next step runs).
        """
        if self._stopping is not None:
            return self._chained(self._stopping)
        Service.stopService(self)  # type: ignore[no-untyped-call]
        if self.state in ("new", "stopped"):
            return succeed(None)
        self.state = "stopping"
        self._stopping = Deferred.fromCoroutine(self._stop())
        return self._chained(self._stopping)

    @staticmethod
    def _chained(d: Deferred[None]) -> Deferred[None]:
        chained: Deferred[None] = Deferred()

        def fire(result: object) -> object:
            chained.callback(None)
            return result

        d.addBoth(fire)
        return chained

    async def _stop(self) -> None:
        try:
            await self._step("stop listening", self._stopListening())
            await self._step("drain requests", self._drain())
            await self._step("close pools", self._closePools())
            self.log.info("Shutdown: stopping the applications")
            await self._step("stop applications", self.supervisor.stopService())
            if self.dynamic is not None:
                await self._step("stop dynamic applications", self.dynamic.stopService())
        finally:
            if self._uninstallSignal is not None:
                self._uninstallSignal()
                self._uninstallSignal = None
            self.log.info("Shutdown complete")
            self._closeLogs()
            self.state = "stopped"
            self._stopping = None

    async def _step(self, name: str, d: Deferred[Any]) -> None:
        try:
            await d
        except Exception:
            self.log.failure("Shutdown step {step} failed", step=name)

    def _stopListening(self) -> Deferred[Any]:
        self.log.info(
            "Shutdown: no longer listening on {addresses}",
            addresses=", ".join(listening.description for listening in self._listening),
        )
        stops = []
        for listening in self._listening:
            if listening.port is not None:
                stops.append(Deferred.fromCoroutine(_await(listening.port.stopListening())))
                listening.port = None
        return DeferredList(stops, consumeErrors=True)

    def _drain(self) -> Deferred[None]:
        site = self.site
        if site is None or not site.inFlight:
            self.log.info("Shutdown: no request in flight")
            return succeed(None)
        self.log.info(
            "Shutdown: waiting up to {timeout} s for {count} requests in flight",
            timeout=self.drainTimeout,
            count=len(site.inFlight),
        )
        d = site.whenIdle()
        d.addTimeout(self.drainTimeout, self._reactor)

        def timedOut(failure: Failure) -> None:
            failure.trap(TimeoutError)  # type: ignore[no-untyped-call]
            self.log.warn(
                "Shutdown: {count} requests still running after {timeout} s; "
                "closing their connections",
                count=len(site.inFlight),
                timeout=self.drainTimeout,
            )
            for request in list(site.inFlight):
                transport = getattr(request.channel, "transport", None)
                if transport is not None:
                    abort = getattr(transport, "abortConnection", None)
                    (abort or transport.loseConnection)()

        return d.addErrback(timedOut)

    def _closePools(self) -> Deferred[None]:
        self.log.info("Shutdown: closing {count} connection pools", count=len(self.pools))
        d: Deferred[Any] = DeferredList(
            [pool.closeAll() for pool in self.pools.values()], consumeErrors=True
        )
        d.addTimeout(self.poolCloseTimeout, self._reactor)

        def timedOut(failure: Failure) -> None:
            failure.trap(TimeoutError)  # type: ignore[no-untyped-call]
            self.log.warn(
                "Shutdown: connection pools still open after {timeout} s",
                timeout=self.poolCloseTimeout,
            )

        return d.addCallbacks(lambda _: None, timedOut)

    def _closeLogs(self) -> None:
        if self.errorLog is not None:
            self._publisher.removeObserver(cast(ILogObserver, self.errorLog))
        for logFile in self.logFiles:
            logFile.close()


async def _await(result: Any) -> Any:
    """
    Await C{result} if it is a Deferred (C{stopListening} may return
    C{None}).
    """
    if isinstance(result, Deferred):
        return await result
    return result


def _defaultResource(
    config: ServerConfig,
    *,
    pools: Mapping[str, ConnectionPool],
    reactor: Any,
    environ: Mapping[str, str] | None = None,
    **extra: Any,
) -> IResource:
    """
    Build L{txfastcgi.gateway.GatewayResource} (imported when needed).
    """
    from twisted.python.reflect import namedAny

    gatewayResource = namedAny("txfastcgi.gateway.GatewayResource")  # type: ignore[no-untyped-call]
    resource: IResource = gatewayResource(
        config, pools=pools, reactor=reactor, environ=environ, **extra
    )
    return resource


def makeGatewayService(
    config: ServerConfig,
    reactor: Any,
    *,
    runAs: RunAs | None = None,
    environ: Mapping[str, str] | None = None,
    resourceFactory: ResourceFactory = _defaultResource,
    supervisorFactory: Callable[..., ApplicationSupervisor] = ApplicationSupervisor,
    dynamicFactory: Callable[..., DynamicApplicationManager] | None = (
        DynamicApplicationManager
    ),
    poolFactory: PoolFactory = ConnectionPool,
    endpointFactory: Callable[[Any, str], Any] | None = None,
    installSignal: SignalInstaller | None = None,
    switchUser: SwitchUser = _switchUser,
    logPublisher: LogPublisher | None = None,
    drainTimeout: float = DEFAULT_DRAIN_TIMEOUT,
) -> GatewayService:
    """
    Compose the server from a configuration (nothing is opened yet).

    @param config: the configuration.
    @param reactor: the reactor.
    @param runAs: who to run as after binding (L{resolveRunAs}), or
        C{None}.
    @param environ: the server's environment for C{-initial-env NAME};
        C{os.environ} by default.
    @param resourceFactory: builds the root resource
        (L{txfastcgi.gateway.GatewayResource} by default).
    @param supervisorFactory: builds the supervisor, as
        L{ApplicationSupervisor}.
    @param dynamicFactory: builds the manager of dynamic applications, as
        L{DynamicApplicationManager}; C{None} serves none.
    @param poolFactory: builds a pool, as L{ConnectionPool}.
    @param endpointFactory: C{(reactor, description) -> endpoint};
        C{serverFromString} by default.
    @param installSignal: installs the SIGHUP handler (and the supervisor's
        status handler).
    @param switchUser: switches the process to C{runAs}.
    @param logPublisher: where the C{ErrorLog} observer goes.
    @param drainTimeout: seconds in-flight requests get at shutdown.
    @return: the service.
    """
    if resourceFactory is _defaultResource:
        resourceFactory = partial(_defaultResource, environ=environ)
    if endpointFactory is None:
        from twisted.internet.endpoints import serverFromString

        endpointFactory = serverFromString
    uid = gid = None
    appClasses: list[AppClassConfig] = list(config.appClasses)
    if runAs is not None:
        uid, gid = runAs.uid, runAs.gid
        if runAs.keepRoot:
            appClasses = [
                app
                if app.uid is not None
                else replace(app, uid=runAs.uid, gid=app.gid if app.gid is not None else runAs.gid)
                for app in appClasses
            ]
    supervisorArgs: dict[str, Any] = {}
    if installSignal is not None:
        supervisorArgs["installSignal"] = installSignal
    supervisor = supervisorFactory(
        reactor,
        [*appClasses, *config.externalAppClasses],
        ipcDir=config.ipcDir,
        uid=uid,
        gid=gid,
        environ=environ,
        **supervisorArgs,
    )
    dynamic = None
    if dynamicFactory is not None:
        dynamic = dynamicFactory(
            reactor, config.dynamic, ipcDir=config.ipcDir, uid=uid, gid=gid, environ=environ
        )
    serverName = (
        config.serverName.value if config.serverName is not None else _hostname()
    )
    files: dict[str, LogFile] = {}

    def fileFor(path: str) -> LogFile:
        if path not in files:
            files[path] = LogFile(path, uid=uid, gid=gid)
        return files[path]

    accessLogs = [
        AccessLog(
            fileFor(custom.path),
            custom.format,
            serverName=serverName,
            condition=custom.condition,
        )
        for custom in config.logs
    ]
    errorLog = None
    if config.errorLog is not None:
        errorLog = ErrorLogObserver(fileFor(config.errorLog.value))
    endpoints = [
        (listen.endpointDescription(), endpointFactory(reactor, listen.endpointDescription()))
        for listen in config.listeners
    ]
    return GatewayService(
        config,
        reactor,
        supervisor=supervisor,
        endpoints=endpoints,
        resourceFactory=resourceFactory,
        poolFactory=poolFactory,
        accessLogs=accessLogs,
        errorLog=errorLog,
        runAs=runAs,
        switchUser=switchUser,
        installSignal=installSignal,
        logPublisher=logPublisher,
        drainTimeout=drainTimeout,
        dynamic=dynamic,
    )


def _hostname() -> str:
    import socket

    return socket.gethostname()

