"""
Tests for L{txfastcgi.listen}: detecting and adopting an inherited listening
socket, stale socket files, and the service's graceful stop.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import tempfile
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from txfastcgi.application import ApplicationRequest, FastCGIApplicationFactory
from txfastcgi.fcgi.constants import RecordType
from txfastcgi.fcgi.records import encodeBeginRequestBody, encodeRecord
from txfastcgi.listen import (
    FastCGIApplicationService,
    adoptListeningSocket,
    inheritedListeningFamily,
    removeStaleSocket,
)


def unixListener(directory: str, name: str = "s.sock") -> socket.socket:
    """
    A listening Unix socket in C{directory}.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(os.path.join(directory, name))
    sock.listen(5)
    return sock


class DetectionTests(SynchronousTestCase):
    """
    L{inheritedListeningFamily}.
    """

    def setUp(self) -> None:
        """
        A temporary directory for sockets.
        """
        self.directory = tempfile.mkdtemp(prefix="txf-listen-")
        self.addCleanup(os.rmdir, self.directory)

    def test_unixListening(self) -> None:
        """
        A listening Unix socket is detected as C{AF_UNIX}.
        """
        sock = unixListener(self.directory)
        self.addCleanup(os.unlink, os.path.join(self.directory, "s.sock"))
        self.addCleanup(sock.close)
        self.assertEqual(inheritedListeningFamily(sock.fileno()), socket.AF_UNIX)

    def test_tcpListening(self) -> None:
        """
        A listening TCP socket is detected as C{AF_INET}.
        """
        sock = socket.socket()
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        sock.listen(5)
        self.assertEqual(inheritedListeningFamily(sock.fileno()), socket.AF_INET)

    def test_notListening(self) -> None:
        """
        Connected or unbound sockets, files, pipes and closed fds are not
        listening sockets.
        """
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        self.assertIsNone(inheritedListeningFamily(a.fileno()))
        unbound = socket.socket()
        self.addCleanup(unbound.close)
        self.assertIsNone(inheritedListeningFamily(unbound.fileno()))
        r, w = os.pipe()
        os.close(w)
        self.assertIsNone(inheritedListeningFamily(r))
        os.close(r)
        self.assertIsNone(inheritedListeningFamily(r))
        with tempfile.TemporaryFile() as f:
            self.assertIsNone(inheritedListeningFamily(f.fileno()))


class AdoptionTests(SynchronousTestCase):
    """
    L{adoptListeningSocket}.
    """

    def setUp(self) -> None:
        """
        A temporary directory and a factory.
        """
        self.directory = tempfile.mkdtemp(prefix="txf-listen-")
        self.addCleanup(os.rmdir, self.directory)
        self.reactor = MemoryReactorClock()
        self.factory = FastCGIApplicationFactory(lambda request: None, self.reactor)

    def test_unixLeavesSocketAlone(self) -> None:
        """
        An adopted Unix socket keeps its file mode, and stopping the port
        neither removes the file nor shuts the socket down for the processes
        sharing it.
        """
        sock = unixListener(self.directory)
        path = os.path.join(self.directory, "s.sock")
        self.addCleanup(os.unlink, path)
        self.addCleanup(sock.close)
        os.chmod(path, 0o640)
        duplicate = os.dup(sock.fileno())
        port = adoptListeningSocket(self.reactor, self.factory, duplicate)
        self.assertRaises(OSError, os.fstat, duplicate)
        self.assertIn(port, self.reactor.readers)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o640)
        port.stopListening()
        self.reactor.advance(0)
        self.assertNotIn(port, self.reactor.readers)
        self.assertTrue(os.path.exists(path))
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(client.close)
        client.connect(path)
        server, _ = sock.accept()
        server.close()

    def test_tcpUsesAdoptStreamPort(self) -> None:
        """
        An adopted TCP socket goes through C{reactor.adoptStreamPort}.
        """
        sock = socket.socket()
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        sock.listen(5)
        duplicate = os.dup(sock.fileno())
        adoptListeningSocket(self.reactor, self.factory, duplicate)
        [(fd, family, factory)] = self.reactor.adoptedPorts
        self.assertEqual((fd, family, factory), (duplicate, socket.AF_INET, self.factory))

    def test_notASocket(self) -> None:
        """
        Adopting something that is not a listening socket raises ValueError.
        """
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        self.assertRaises(ValueError, adoptListeningSocket, self.reactor, self.factory, r)


class StaleSocketTests(SynchronousTestCase):
    """
    L{removeStaleSocket}.
    """

    def setUp(self) -> None:
        """
        A temporary directory.
        """
        self.directory = tempfile.mkdtemp(prefix="txf-listen-")
        self.addCleanup(os.rmdir, self.directory)
        self.path = os.path.join(self.directory, "s.sock")

    def test_stale(self) -> None:
        """
        A socket file nobody listens on is removed; a missing one is fine.
        """
        unixListener(self.directory).close()
        self.assertTrue(removeStaleSocket(self.path))
        self.assertFalse(os.path.exists(self.path))
        self.assertFalse(removeStaleSocket(self.path))

    def test_live(self) -> None:
        """
        A socket somebody listens on is left alone (EADDRINUSE).
        """
        sock = unixListener(self.directory)
        self.addCleanup(os.unlink, self.path)
        self.addCleanup(sock.close)
        error = self.assertRaises(OSError, removeStaleSocket, self.path)
        self.assertEqual(error.errno, errno.EADDRINUSE)

    def test_notASocket(self) -> None:
        """
        A regular file is never removed.
        """
        with open(self.path, "w"):
            pass
        self.addCleanup(os.unlink, self.path)
        self.assertRaises(OSError, removeStaleSocket, self.path)
        self.assertTrue(os.path.exists(self.path))


class FakePort:
    """
    A listening port that records stopListening.
    """

    stopped = False

    def stopListening(self) -> Deferred[None]:
        """
        Record the stop.
        """
        self.stopped = True
        return succeed(None)

    def getHost(self) -> str:
        """
        A printable address.
        """
        return "fake"


class FakeEndpoint:
    """
    An endpoint whose listen succeeds with a L{FakePort}, or fails.
    """

    def __init__(self, error: Exception | None = None) -> None:
        self.port = FakePort()
        self.error = error
        self.factory: Any = None

    def listen(self, factory: Any) -> Deferred[FakePort]:
        """
        Listen (or fail).
        """
        self.factory = factory
        if self.error is not None:
            d: Deferred[FakePort] = Deferred()
            d.errback(self.error)
            return d
        return succeed(self.port)


class FakeThreadPool:
    """
    Records start and stop.
    """

    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self) -> None:
        """
        Record a start.
        """
        self.calls.append("start")

    def stop(self) -> None:
        """
        Record a stop.
        """
        self.calls.append("stop")


class ServiceTests(SynchronousTestCase):
    """
    L{FastCGIApplicationService}: start, and the graceful stop used on
    SIGTERM.
    """

    def setUp(self) -> None:
        """
        A service over a fake endpoint, with a handler that leaves requests
        running.
        """
        self.reactor = MemoryReactorClock()
        self.requests: list[ApplicationRequest] = []

        def handler(request: ApplicationRequest) -> Deferred[None]:
            self.requests.append(request)
            return Deferred()

        self.factory = FastCGIApplicationFactory(handler, self.reactor)
        self.endpoint = FakeEndpoint()
        self.pool = FakeThreadPool()
        self.service = FastCGIApplicationService(
            self.reactor, self.factory, endpoint=self.endpoint, drainTimeout=10, threadpool=self.pool
        )

    def startRequest(self) -> StringTransport:
        """
        Start a request on a new connection.
        """
        proto = self.factory.buildProtocol(None)  # type: ignore[arg-type]
        assert proto is not None
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(
            encodeRecord(RecordType.BEGIN_REQUEST, 1, encodeBeginRequestBody(1, 0))
            + encodeRecord(RecordType.PARAMS, 1)
        )
        self.proto = proto
        return transport

    def test_start(self) -> None:
        """
        Starting listens on the endpoint with the factory and starts the
        thread pool.
        """
        self.service.startService()
        self.assertIs(self.endpoint.factory, self.factory)
        self.assertIs(self.service.port, self.endpoint.port)
        self.assertEqual(self.pool.calls, ["start"])

    def test_listenFailure(self) -> None:
        """
        A failure to listen is raised from startService.
        """
        self.endpoint.error = OSError(errno.EADDRINUSE, "in use")
        self.assertRaises(OSError, self.service.startService)

    def test_stopDrains(self) -> None:
        """
        Stopping stops listening at once, waits for the running request, then
        stops the thread pool.
        """
        self.service.startService()
        transport = self.startRequest()
        d = self.service.stopService()
        self.assertTrue(self.endpoint.port.stopped)
        self.assertNoResult(d)
        self.assertEqual(self.pool.calls, ["start"])
        self.requests[0].write(b"Status: 200 OK\r\n\r\n")
        self.requests[0].finish()
        self.assertTrue(transport.disconnecting)
        self.proto.connectionLost()
        self.successResultOf(d)
        self.assertEqual(self.pool.calls, ["start", "stop"])

    def test_stopTimeout(self) -> None:
        """
        A request still running after the drain timeout is aborted and the
        stop completes.
        """
        self.service.startService()
        self.startRequest()
        d = self.service.stopService()
        self.reactor.advance(10)
        self.successResultOf(d)
        self.assertTrue(self.requests[0].aborted)
        self.assertEqual(self.pool.calls, ["start", "stop"])

    def test_needsOneWay(self) -> None:
        """
        Exactly one of endpoint and inheritedFd must be given.
        """
        self.assertRaises(ValueError, FastCGIApplicationService, self.reactor, self.factory)
        self.assertRaises(
            ValueError,
            FastCGIApplicationService,
            self.reactor,
            self.factory,
            endpoint=self.endpoint,
            inheritedFd=0,
        )
