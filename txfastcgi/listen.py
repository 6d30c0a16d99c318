# -*- test-case-name: tests.test_listen -*-
"""
How a FastCGI application listens, and how it stops.

Three ways (SPEC.md 7.1):
  - an inherited listening socket on fd 0 (C{FCGI_LISTENSOCK_FILENO}), as
    mod_fastcgi, spawn-fcgi and C{cgi-fcgi -start} hand it over: detected with
    L{inheritedListeningFamily} (C{getpeername} fails with C{ENOTCONN},
    C{SO_ACCEPTCONN} is set) and adopted with L{adoptListeningSocket};
  - a Unix socket path (L{unixEndpoint}; a stale socket file nobody listens on
    is replaced, the file is removed at exit);
  - a TCP port (L{tcpEndpoint}, bound to 127.0.0.1 unless told otherwise).

L{FastCGIApplicationService} starts listening, and on stop (SIGTERM under
twistd or L{runApplication}) stops accepting, lets the running requests finish
(bounded by a timeout, after which they are aborted), stops the thread pool,
and lets the process exit with status 0 (also under twistd, which would
otherwise re-raise the SIGTERM).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from typing import Any, Protocol as TypingProtocol

from twisted.application.service import Service
from twisted.internet import tcp, unix
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint, UNIXServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from txfastcgi.application import FastCGIApplicationFactory
from txfastcgi.fcgi.constants import FCGI_LISTENSOCK_FILENO

__all__ = [
    "FastCGIApplicationService",
    "adoptListeningSocket",
    "inheritedListeningFamily",
    "removeStaleSocket",
    "tcpEndpoint",
    "unixEndpoint",
]

DEFAULT_BACKLOG = 100
"""Listen queue depth (SPEC.md decision 2: mod_fastcgi's 5 refused bursts)."""


class StartableThreadPool(TypingProtocol):
    """
    What the service uses of L{twisted.python.threadpool.ThreadPool}.
    """

    def start(self) -> None:
        """Start the threads."""

    def stop(self) -> None:
        """Stop (and join) the threads."""


def inheritedListeningFamily(fd: int = FCGI_LISTENSOCK_FILENO) -> socket.AddressFamily | None:
    """
    Whether C{fd} is a listening stream socket, as a web server hands a
    FastCGI application on fd 0.

    @return: its address family (C{AF_UNIX}, C{AF_INET}, C{AF_INET6}), or
        L{None} if C{fd} is closed, not a socket, connected, or not listening.
    """
    try:
        duplicate = os.dup(fd)
    except OSError:
        return None
    try:
        sock = socket.socket(fileno=duplicate)
    except OSError:
        os.close(duplicate)
        return None
    with sock:
        try:
            sock.getpeername()
        except OSError as e:
            if e.errno != errno.ENOTCONN:
                return None
        else:
            return None
        if sock.type != socket.SOCK_STREAM:
            return None
        try:
            if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                return None
        except OSError:
            return None
        return socket.AddressFamily(sock.family)


class _AdoptedUNIXPort(unix.Port):
    """
    A Unix listening port on an inherited socket that leaves the socket as it
    found it.  Twisted's own adoption (L{unix.Port._fromListeningDescriptor},
    26.10) treats it as its own: it C{chmod}s the file to 0666, calls
    C{listen()} again with its backlog, C{shutdown()}s the socket when it
    stops (which stops every sibling process sharing it, as spawn-fcgi
    C{-F N} children do) and unlinks the file.  The socket belongs to whoever
    created it (spawn-fcgi, a process manager); this port only accepts on it
    and closes its own descriptor.
    """

    _shouldShutdown = False

    def startListening(self) -> None:
        """
        Start accepting on the inherited socket, changing nothing about it.
        """
        reserved = getattr(tcp, "_reservedFD", None)
        if reserved is not None:
            reserved.reserve()
        this: Any = self  # Twisted's Port attributes are loosely typed
        this.factory.doStart()
        skt = this._preexistingSocket
        this._preexistingSocket = None
        this.connected = True
        this.socket = skt
        this.fileno = skt.fileno
        this.numberAccepts = 100
        this.startReading()

    def connectionLost(self, reason: Failure) -> None:
        """
        Stop listening without unlinking the socket file.
        """
        tcp.Port.connectionLost(self, reason)  # type: ignore[no-untyped-call]


def adoptListeningSocket(
    reactor: Any,
    factory: FastCGIApplicationFactory,
    fd: int = FCGI_LISTENSOCK_FILENO,
    closeOriginal: bool = True,
) -> Any:
    """
    Listen on an inherited listening socket.

    TCP sockets go through C{reactor.adoptStreamPort}; Unix sockets through
    L{_AdoptedUNIXPort}, because the reactor's Unix port would unlink the
    shared socket file when this one process stops.

    @param reactor: an L{IReactorSocket} provider.
    @param fd: the listening socket (made non-blocking here).
    @param closeOriginal: release C{fd} once the reactor holds its own
        duplicate; fd 0 is pointed at C{/dev/null} rather than closed, so a
        later socket cannot land on it.
    @return: the L{IListeningPort}.
    @raise ValueError: if C{fd} is not a listening socket.
    """
    family = inheritedListeningFamily(fd)
    if family is None:
        raise ValueError(f"fd {fd} is not a listening socket")
    os.set_blocking(fd, False)
    port: Any
    if family == socket.AF_UNIX:
        port = _AdoptedUNIXPort._fromListeningDescriptor(reactor, fd, factory)  # type: ignore[no-untyped-call]
        port.startListening()
    else:
        port = reactor.adoptStreamPort(fd, family, factory)
    if closeOriginal:
        if fd == 0:
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
        else:
            os.close(fd)
    return port


def removeStaleSocket(path: str) -> bool:
    """
    Remove C{path} if it is a Unix socket nobody listens on any more.

    @return: whether it was removed.
    @raise OSError: if C{path} exists and is not a socket, or something
        listens on it (C{EADDRINUSE}).
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"something is listening on {path}")


def unixEndpoint(
    reactor: Any, path: str, mode: int = 0o600, backlog: int = DEFAULT_BACKLOG
) -> UNIXServerEndpoint:
    """
    An endpoint listening on the Unix socket C{path} (file mode C{mode}).
    """
    return UNIXServerEndpoint(reactor, path, backlog=backlog, mode=mode)  # type: ignore[no-untyped-call]


def tcpEndpoint(
    reactor: Any, port: int, interface: str = "127.0.0.1", backlog: int = DEFAULT_BACKLOG
) -> TCP4ServerEndpoint:
    """
    An endpoint listening on TCP C{port} of C{interface} (loopback unless
    told otherwise: FastCGI has no authentication).
    """
    return TCP4ServerEndpoint(reactor, port, backlog=backlog, interface=interface)  # type: ignore[no-untyped-call]


class FastCGIApplicationService(Service):
    """
    Listens for a L{FastCGIApplicationFactory} and stops gracefully.

    States: stopped -> listening (L{startService}) -> draining
    (L{stopService}: not accepting, running requests finishing) -> stopped.

    @ivar port: the listening port once started.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        factory: FastCGIApplicationFactory,
        *,
        endpoint: Any = None,
        inheritedFd: int | None = None,
        socketPath: str | None = None,
        drainTimeout: float = 30.0,
        threadpool: StartableThreadPool | None = None,
    ) -> None:
        """
        @param reactor: the reactor (sockets and time).
        @param factory: the application factory.
        @param endpoint: an L{IStreamServerEndpoint} to listen on, or
        @param inheritedFd: an inherited listening socket to adopt.
        @param socketPath: the Unix socket path behind C{endpoint}, if any: a
            stale socket file is removed before listening.
        @param drainTimeout: seconds running requests get to finish on stop.
        @param threadpool: a thread pool to start and stop with the service.
        """
        if (endpoint is None) == (inheritedFd is None):
            raise ValueError("give exactly one of endpoint and inheritedFd")
        self._reactor = reactor
        self.factory = factory
        self._endpoint = endpoint
        self._inheritedFd = inheritedFd
        self._socketPath = socketPath
        self.drainTimeout = drainTimeout
        self._threadpool = threadpool
        self.port: Any = None

    def startService(self) -> None:
        """
        Start the thread pool and listen.

        @raise Exception: if listening fails (twistd reports it and exits).
        """
        if self._inheritedFd is not None:
            self.port = adoptListeningSocket(self._reactor, self.factory, self._inheritedFd)
        else:
            if self._socketPath is not None:
                removeStaleSocket(self._socketPath)
            failures: list[Failure] = []
            d = self._endpoint.listen(self.factory)
            d.addCallbacks(lambda port: setattr(self, "port", port), failures.append)
            if failures:
                failures[0].raiseException()
        if self._threadpool is not None:
            self._threadpool.start()
        Service.startService(self)  # type: ignore[no-untyped-call]
        self._log.info(
            "FastCGI application listening on {address}", address=str(self.port.getHost())
        )

    def stopService(self) -> Deferred[None]:
        """
        Stop accepting, wait for the running requests (at most
        C{drainTimeout} seconds, then abort them), stop the thread pool.

        @return: a Deferred that fires when all of it is done.
        """
        Service.stopService(self)  # type: ignore[no-untyped-call]
        self._log.info(
            "stopping: {activeRequests} requests running, waiting up to {timeout} s",
            activeRequests=self.factory.activeRequests,
            timeout=self.drainTimeout,
        )
        port, self.port = self.port, None
        d: Deferred[Any] = maybeDeferred(port.stopListening) if port is not None else Deferred()
        if port is None:
            d.callback(None)
        d.addCallback(lambda ignored: self.factory.drain(self.drainTimeout))

        def stopThreads(ignored: object) -> None:
            if self._threadpool is not None:
                self._threadpool.stop()
            # twistd (and twist) re-raise the signal that stopped the
            # reactor, so the process would die "by SIGTERM".  A FastCGI
            # process manager reads that as a crash (SPEC.md 7.5: status 0 is
            # a deliberate exit); after a graceful stop, exit with 0.
            if getattr(self._reactor, "_exitSignal", None) is not None:
                self._reactor._exitSignal = None
            self._log.info("stopped")

        d.addCallback(stopThreads)
        return d
