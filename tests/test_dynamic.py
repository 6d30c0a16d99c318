"""
Tests for L{txfastcgi.dynamic}: the dynamic application manager with a fake
process reactor (a L{Clock}), its real pool (L{DynamicPool}, keeping
connections) and, behind each process's socket, an in-memory FastCGI
application (L{txfastcgi.testing.MemoryApplicationEndpoint}).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.test_supervisor import FakeProcess, FakeProcessReactor
from txfastcgi.application import ApplicationRequest
from txfastcgi.appclass import IpcDirConfig
from txfastcgi.client import FastCGIClientProtocol, FastCGIRequest, RequestResult
from txfastcgi.config.model import DynamicConfig
from txfastcgi.dynamic import (
    DynamicApplicationManager,
    DynamicEndpoint,
    DynamicPool,
    DynamicStartTimeout,
    DynamicUnavailable,
    socketKey,
)
from txfastcgi.pool import ConnectError, PoolClosed
from txfastcgi.testing import MemoryApplicationEndpoint, ResponseCollector, makeParams

APP = "/srv/htdocs/app.fcgi"
OTHER = "/srv/htdocs/other.fcgi"


class Applications:
    """
    The in-memory applications behind the processes' sockets: one
    L{MemoryApplicationEndpoint} per socket path.  A request whose query
    string holds C{hold} is kept unanswered until L{release}; the others
    are answered at once with the socket's name in C{X-Socket}.

    @ivar endpoints: the endpoint of each socket path connected to.
    @ivar held: the held requests, oldest first, with their socket paths.
    @ivar served: C{(socket path, query string)} of every request seen.
    """

    def __init__(self, clock: FakeProcessReactor) -> None:
        self.clock = clock
        self.endpoints: dict[str, MemoryApplicationEndpoint] = {}
        self.held: list[tuple[str, ApplicationRequest, Deferred[None]]] = []
        self.served: list[tuple[str, bytes]] = []

    def connect(self, path: str, factory: Any) -> Deferred[Any]:
        """
        The manager's connector: connect to the application at C{path}.
        """
        return self.endpoint(path).connect(factory)

    def endpoint(self, path: str) -> MemoryApplicationEndpoint:
        """
        The endpoint of a socket path (made on first use).
        """
        endpoint = self.endpoints.get(path)
        if endpoint is None:

            def handler(request: ApplicationRequest) -> Deferred[None] | None:
                query = request.params.get(b"QUERY_STRING", b"")
                self.served.append((path, query))
                if b"hold" in query:
                    # The request stays open until the Deferred fires.
                    done: Deferred[None] = Deferred()
                    self.held.append((path, request, done))
                    return done
                self.answer(path, request)
                return None

            endpoint = self.endpoints[path] = MemoryApplicationEndpoint(
                handler, clock=self.clock
            )
        return endpoint

    def answer(self, path: str, request: ApplicationRequest) -> None:
        """
        Answer a request.
        """
        name = os.path.basename(path).encode()
        request.write(b"Content-Type: text/plain\r\nX-Socket: " + name + b"\r\n\r\nok")
        request.finish()

    def release(self, index: int = 0) -> str:
        """
        Answer a held request (the oldest by default).

        @return: its socket path.
        """
        path, request, done = self.held.pop(index)
        self.answer(path, request)
        done.callback(None)
        self.flush()
        return path

    def flush(self) -> None:
        """
        Move everything that can move on every endpoint.
        """
        while any([endpoint.flush() for endpoint in list(self.endpoints.values())]):
            pass

    def connections(self, path: str) -> int:
        """
        @return: the open connections to a socket path.
        """
        endpoint = self.endpoints.get(path)
        return 0 if endpoint is None else endpoint.openConnections

    def closeExited(self, processes: list[FakeProcess]) -> None:
        """
        Close, on the application's side, the connections of the processes
        that exited (as their death would), and move the bytes.
        """
        for process in processes:
            if process.exited:
                endpoint = self.endpoints.get(process.protocol.managed.socketPath)
                for connection in endpoint.connections if endpoint else []:
                    if connection.open:
                        connection.close()
        self.flush()

    def die(self, process: FakeProcess, socketPath: str, **how: Any) -> None:
        """
        A process dies: its connections close on the application's side,
        then it exits.
        """
        endpoint = self.endpoints.get(socketPath)
        if endpoint is not None:
            for connection in endpoint.connections:
                if connection.open:
                    connection.close()
        process.exit(**how)


class ManagerTestCase(SynchronousTestCase):
    """
    Set-up: fake reactor, temporary IPC directory, in-memory applications,
    captured log events.
    """

    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.ipcDir = tempfile.mkdtemp(prefix="txdyn-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.ipcDir, True)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.apps = Applications(self.reactor)
        self.pools: dict[str, DynamicPool] = {}

    def manager(self, **options: Any) -> DynamicApplicationManager:
        """
        A started manager with the given C{FCGIConfig} options; its pools
        are closed and it is stopped at cleanup.
        """
        options.setdefault("minProcesses", 0)
        manager = DynamicApplicationManager(
            self.reactor,
            DynamicConfig(**options),
            ipcDir=IpcDirConfig(self.ipcDir),
            connector=self.apps.connect,
            environ={"PATH": "/usr/bin", "SECRET": "x"},
        )

        def cleanup() -> None:
            for pool in self.pools.values():
                pool.closeAll()
            self.apps.flush()
            d = manager.stopService()
            self.reactor.advance(manager.stopGrace + 1)
            self.successResultOf(d)

        self.addCleanup(cleanup)
        manager.startService()
        return manager

    def pool(self, manager: DynamicApplicationManager, path: str = APP) -> DynamicPool:
        """
        The pool of an application (made once, as the server does).
        """
        pool = self.pools.get(path)
        if pool is None:
            pool = self.pools[path] = manager.poolFor(path)
        return pool

    def get(
        self, manager: DynamicApplicationManager, query: str = "", path: str = APP
    ) -> Deferred[ResponseCollector]:
        """
        Send a request through the application's pool and move the bytes.

        @return: fires with the collected response once it ended.
        """
        response = ResponseCollector()
        request = FastCGIRequest(
            makeParams(QUERY_STRING=query),
            writeStdout=response.writeStdout,
            writeStderr=response.writeStderr,
        )
        d = self.pool(manager, path).request(request)
        self.apps.flush()

        def ended(result: RequestResult) -> ResponseCollector:
            assert result == RequestResult(0, 0), result
            return response

        return d.addCallback(ended)

    def ok(self, d: Deferred[ResponseCollector]) -> str:
        """
        @return: the socket name that answered the request of C{d}.
        """
        response = self.successResultOf(d)
        assert response.body == b"ok", response.stdout
        return dict(response.head.headers)[b"X-Socket"].decode()

    def advance(self, seconds: float) -> None:
        """
        Advance the clock and move the bytes.
        """
        self.reactor.advance(seconds)
        self.apps.flush()

    def socketOf(self, slot: int, path: str = APP) -> str:
        """
        @return: the socket path of a class's slot.
        """
        return os.path.join(self.ipcDir, "dynamic", f"{socketKey(path)}.{slot}")

    def logged(self, **fields: object) -> list[LogEvent]:
        """
        The captured events having all the given field values.
        """
        return [
            e for e in self.events if all(k in e and e[k] == v for k, v in fields.items())
        ]


class OnDemandTests(ManagerTestCase):
    """
    The first request starts the class's first process; later ones reuse
    its kept connection.
    """

    def test_firstRequestStartsOneProcess(self) -> None:
        """
        The first request creates the class and spawns one process with
        argv C{[path]}, its directory as working directory, its own socket
        under C{dynamic/} as fd 0, and exactly the C{-initial-env} pairs;
        the request is answered by the application on that socket.
        """
        manager = self.manager(initialEnv=("A=1", "PATH"))
        d = self.get(manager)
        self.assertEqual(self.ok(d), socketKey(APP) + ".0")
        [process] = self.reactor.spawned
        self.assertEqual(process.executable, APP)
        self.assertEqual(process.args, [APP])
        self.assertEqual(process.path, "/srv/htdocs")
        self.assertEqual(process.env, {"A": "1", "PATH": "/usr/bin"})
        assert process.childFDs is not None
        self.assertIsInstance(process.childFDs[0], int)
        self.assertEqual(manager.processCount(APP), 1)
        [start] = self.logged(decision="start")
        self.assertIn("on demand", start["reason"])
        self.assertEqual(start["appClass"], APP)
        self.assertIn("load", start)

    def test_connectionKept(self) -> None:
        """
        Later requests go over the same kept connection to the same
        process: one spawn, one connection.
        """
        manager = self.manager()
        for _ in range(5):
            self.ok(self.get(manager))
        self.assertEqual(len(self.reactor.spawned), 1)
        endpoint = self.apps.endpoint(self.socketOf(0))
        self.assertEqual(endpoint.connectionsMade, 1)
        self.assertEqual(self.apps.connections(self.socketOf(0)), 1)
        self.assertTrue(all(request.keepConnection for request in endpoint.requests))

    def test_endpointWithoutPool(self) -> None:
        """
        L{DynamicEndpoint} works without a L{DynamicPool}: each connect
        gets a free process, the first starting one.
        """
        manager = self.manager()
        factory = Factory.forProtocol(lambda: FastCGIClientProtocol(self.reactor))
        first = DynamicEndpoint(manager, APP).connect(factory)
        second = DynamicEndpoint(manager, APP).connect(factory)
        self.apps.flush()
        protocol = self.successResultOf(first)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertNoResult(second)
        protocol.close()
        self.apps.flush()
        self.successResultOf(second).close()
        self.apps.flush()
        self.assertEqual(len(self.reactor.spawned), 1)


class GrowthTests(ManagerTestCase):
    """
    Requests that wait C{startDelay} ask for more processes, within limits.
    """

    def test_waiterServedWhenProcessFrees(self) -> None:
        """
        A request waiting for the only process gets it, over the same
        connection, when the request before it ends, before C{startDelay}.
        """
        manager = self.manager(startDelay=3)
        first = self.get(manager, "hold")
        second = self.get(manager)
        self.advance(1)
        self.assertNoResult(second)
        self.apps.release()
        self.ok(first)
        self.ok(second)
        self.advance(10)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertEqual(self.apps.endpoint(self.socketOf(0)).connectionsMade, 1)

    def test_growsToMaxClassProcesses(self) -> None:
        """
        Eight concurrent requests grow a class to exactly
        C{maxClassProcesses}, one start per request that waited, each on
        its own process; the limit is logged once; all eight are served.
        """
        manager = self.manager(
            maxClassProcesses=4, startDelay=1, appConnTimeout=0, initStartDelay=0
        )
        ds = [self.get(manager, f"hold{i}") for i in range(8)]
        self.assertEqual(len(self.reactor.spawned), 1)
        self.advance(0.999)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.advance(0.001)
        self.assertEqual(len(self.reactor.spawned), 4)
        self.assertEqual(len({held[0] for held in self.apps.held}), 4)
        self.advance(10)
        self.assertEqual(len(self.reactor.spawned), 4)
        self.assertEqual(manager.processCount(APP), 4)
        self.assertEqual(len(self.logged(limit="maxClassProcesses")), 1)
        reasons = [e["reason"] for e in self.logged(decision="start")]
        self.assertIn("startDelay", reasons[1])
        while self.apps.held:
            self.apps.release()
        for d in ds:
            self.ok(d)
        self.assertEqual(len(self.reactor.spawned), 4)

    def test_totalLimit(self) -> None:
        """
        C{maxProcesses} caps the processes of all classes together, logged.
        """
        manager = self.manager(maxProcesses=2, startDelay=1, processSlack=1, minProcesses=2)
        first = self.get(manager, "hold", APP)
        second = self.get(manager, "hold", OTHER)
        third = self.get(manager, "", OTHER)
        self.advance(1)
        self.assertNoResult(third)
        self.assertEqual(manager.processCount(), 2)
        self.assertEqual(len(self.logged(limit="maxProcesses")), 1)
        self.apps.release(1)
        self.ok(second)
        self.ok(third)
        self.apps.release()
        self.ok(first)

    def test_appConnTimeout(self) -> None:
        """
        A request that gets no process within C{appConnTimeout} fails with
        L{DynamicStartTimeout} (a L{ConnectError}: 503), logged; the
        requests before it are unaffected.
        """
        manager = self.manager(maxClassProcesses=1, startDelay=1, appConnTimeout=5)
        first = self.get(manager, "hold")
        d = self.get(manager)
        self.advance(4.9)
        self.assertNoResult(d)
        self.advance(0.1)
        failure = self.failureResultOf(d, DynamicStartTimeout)
        self.assertIsInstance(failure.value, ConnectError)
        self.assertEqual(len(self.logged(appConnTimeout=5)), 1)
        self.apps.release()
        self.ok(first)
        self.ok(self.get(manager))

    def test_eachWaitingRequestHasItsOwnDeadline(self) -> None:
        """
        Waiting requests time out C{appConnTimeout} after each one arrived;
        a request handed to the pool by the caller of one that timed out
        gets its own full wait.
        """
        manager = self.manager(maxClassProcesses=1, startDelay=1, appConnTimeout=3)
        first = self.get(manager, "hold")
        second = self.get(manager)
        self.advance(1.5)
        third = self.get(manager)
        later: list[Deferred[ResponseCollector]] = []

        def another(failure: object) -> object:
            later.append(self.get(manager))
            return failure

        second.addErrback(another)
        self.advance(1.5)  # t=3
        self.failureResultOf(second, DynamicStartTimeout)
        self.assertNoResult(third)
        [fourth] = later
        self.advance(1.499)
        self.assertNoResult(third)
        self.advance(0.001)  # t=4.5
        self.failureResultOf(third, DynamicStartTimeout)
        self.advance(1.499)
        self.assertNoResult(fourth)
        self.advance(0.001)  # t=6
        self.failureResultOf(fourth, DynamicStartTimeout)
        self.assertEqual(len(self.logged(appConnTimeout=3)), 3)
        self.apps.release()
        self.ok(first)

    def test_abortedWaitingRequestAsksNothing(self) -> None:
        """
        A waiting request its client gave up on asks for no process.
        """
        manager = self.manager(startDelay=1)
        first = self.get(manager, "hold")
        d = self.get(manager)
        d.cancel()
        self.failureResultOf(d)
        self.advance(5)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.apps.release()
        self.ok(first)

    def test_connectServedByReuseHoldsNoProcess(self) -> None:
        """
        A connect the pool made for a request that a kept connection then
        served starts nothing and holds no process; when a later request
        waits, it grows the class as usual.
        """
        manager = self.manager(startDelay=1, initStartDelay=0, killInterval=1000)
        first = self.get(manager, "hold")
        second = self.get(manager)  # waits; the pool opens a connect
        self.apps.release()
        self.ok(first)
        self.ok(second)  # over the kept connection
        self.advance(5)
        self.assertEqual(len(self.reactor.spawned), 1)
        third = self.get(manager, "hold")
        fourth = self.get(manager)
        self.advance(1)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertEqual(self.ok(fourth), socketKey(APP) + ".1")
        self.apps.release()
        self.ok(third)


class KillPolicyTests(ManagerTestCase):
    """
    The kill policy stops idle processes (their kept connection closed
    first), drains busy victims, and respects the floor.
    """

    def test_idleProcessKilledAtKillInterval(self) -> None:
        """
        An idle single process is stopped at C{killInterval} (load 0 <
        C{singleThreshold}), logged with its reason and load: its kept
        connection is closed first, then it gets C{SIGTERM}; the class is
        then forgotten.
        """
        manager = self.manager(killInterval=10, updateInterval=10)
        self.ok(self.get(manager))
        [process] = self.reactor.spawned
        self.advance(9.9)
        self.assertEqual(process.signals, [])
        self.reactor.advance(0.1)
        [kill] = self.logged(decision="kill")
        self.assertEqual(kill["load"], 0.0)
        self.assertIn("singleThreshold", kill["reason"])
        self.assertEqual(process.signals, [])  # its connection is closing
        self.apps.flush()
        self.assertEqual(self.apps.connections(self.socketOf(0)), 0)
        self.assertEqual(process.signals, ["TERM"])
        [term] = self.logged(decision="terminate")
        self.assertIn("kill policy", term["why"])
        self.advance(1)
        self.assertEqual(manager.processCount(), 0)

    def test_minProcessesFloor(self) -> None:
        """
        Nothing is stopped when the total is at C{minProcesses}.
        """
        manager = self.manager(killInterval=10, minProcesses=1)
        self.ok(self.get(manager))
        self.advance(100)
        self.assertEqual(self.reactor.spawned[0].signals, [])
        self.assertEqual(manager.processCount(), 1)

    def test_singleThresholdZeroKeepsLastProcess(self) -> None:
        """
        C{singleThreshold 0} never stops the last process.
        """
        manager = self.manager(killInterval=10, singleThreshold=0)
        self.ok(self.get(manager))
        self.advance(100)
        self.assertEqual(manager.processCount(), 1)

    def test_busyVictimDrainedFirst(self) -> None:
        """
        A victim serving a request takes no new one; its request completes,
        then its connection is closed and it gets C{SIGTERM}: no request
        fails.
        """
        manager = self.manager(killInterval=10, startDelay=100)
        first = self.get(manager, "hold")
        [process] = self.reactor.spawned
        self.advance(10)
        [kill] = self.logged(decision="kill")
        self.assertIn("after its request", kill["drain"])
        self.assertEqual(process.signals, [])
        # A new request does not go to the draining victim: a new process.
        second = self.get(manager)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertEqual(self.ok(second), socketKey(APP) + ".1")
        self.assertEqual(process.signals, [])
        self.apps.release()
        self.ok(first)
        self.assertEqual(self.apps.connections(self.socketOf(0)), 0)
        self.assertEqual(process.signals, ["TERM"])
        [term] = self.logged(decision="terminate")
        self.assertIn("connection closed", term["why"])

    def test_busyClassSpared(self) -> None:
        """
        A class whose process was busy most of the period is spared.
        """
        manager = self.manager(killInterval=10, updateInterval=10)
        first = self.get(manager, "hold")
        self.advance(9)
        self.apps.release()
        self.ok(first)
        self.advance(1)
        self.assertEqual(self.logged(decision="kill"), [])
        self.assertEqual(manager.processCount(), 1)

    def test_shrinksOneProcessPerInterval(self) -> None:
        """
        After the load stops, the class shrinks by one process per
        C{killInterval} down to the floor.
        """
        manager = self.manager(
            killInterval=10,
            updateInterval=10,
            startDelay=1,
            minProcesses=1,
            initStartDelay=0,
        )
        ds = [self.get(manager, "hold") for _ in range(3)]
        self.advance(1)
        self.assertEqual(manager.processCount(APP), 3)
        while self.apps.held:
            self.apps.release()
        for d in ds:
            self.ok(d)
        counts = []
        for _ in range(4):
            self.advance(10)
            self.advance(1)  # SIGTERM takes 0.5 s in the fake
            counts.append(manager.processCount(APP))
        self.assertEqual(counts, [2, 1, 1, 1])

    def test_processSlackTriggersAtOnce(self) -> None:
        """
        A start that brings running + C{processSlack} to C{maxProcesses}
        runs the kill policy at once: the idle class loses its process,
        the busy one is spared, and the floor (C{minProcesses 2}) stops the
        pass before the new class.
        """
        manager = self.manager(
            maxProcesses=4,
            processSlack=1,
            minProcesses=2,
            killInterval=1000,
            updateInterval=1000,
        )
        self.ok(self.get(manager, "", APP))
        other = self.get(manager, "hold", OTHER)
        self.advance(5)
        self.apps.release()  # OTHER served for 5 s: load 50
        self.ok(other)
        self.advance(5)
        self.assertEqual(self.logged(decision="kill"), [])
        self.ok(self.get(manager, "", "/srv/htdocs/third.fcgi"))
        kills = self.logged(decision="kill")
        self.assertEqual([k["appClass"] for k in kills], [APP])
        self.assertEqual(kills[0]["trigger"], "processSlack")

    def test_policyRunsOnlyWhenThePMWouldWake(self) -> None:
        """
        Under C{processSlack} pressure the kill policy runs at a start (2.0:
        a PLEASE_START or CONN_TIMEOUT message wakes the PM) and at its
        timer, not when a request ends or a process dies (2.0: REQ_COMPLETE
        sends no signal, a SIGCHLD-only wake-up skips the policy); else
        the epoch would be reset by every request and a moderately loaded
        class would never look idle enough to trim.
        """
        manager = self.manager(
            maxProcesses=3,
            processSlack=1,
            minProcesses=2,
            killInterval=100,
            updateInterval=100,
        )
        self.ok(self.get(manager, "", APP))
        self.assertEqual(manager.policyRuns, 0)
        self.ok(self.get(manager, "", OTHER))
        self.assertEqual(manager.policyRuns, 1)  # the start, 2 + 1 >= 3
        for _ in range(5):
            self.advance(1)
            self.ok(self.get(manager, "", APP))
            self.ok(self.get(manager, "", OTHER))
        self.assertEqual(manager.policyRuns, 1)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.advance(100)
        self.assertEqual(manager.policyRuns, 2)


class SupervisionTests(ManagerTestCase):
    """
    Deaths are logged; replacements only when requests need them; stop.
    """

    def test_deathLoggedNotReplaced(self) -> None:
        """
        A process that crashes is logged as an error and not replaced while
        no request needs one; the next request starts a new one.
        """
        manager = self.manager()
        self.ok(self.get(manager))
        self.apps.die(self.reactor.spawned[0], self.socketOf(0), signal=11)
        self.apps.flush()
        [death] = self.logged(signal=11, appClass=APP)
        self.assertEqual(death["log_level"].name, "error")
        self.assertIn("only when a request needs it", death["then"])
        self.advance(100)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.ok(self.get(manager))
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_staleKeptConnectionRetried(self) -> None:
        """
        A request sent on the kept connection of a process that has just
        died (its close not yet seen) is retried on a fresh connection,
        which the manager gives to a new process: the request succeeds.
        """
        manager = self.manager()
        self.ok(self.get(manager))
        self.reactor.spawned[0].exit(signal=9)
        response = ResponseCollector()
        request = FastCGIRequest(makeParams(), writeStdout=response.writeStdout)
        d = self.pool(manager).request(request)
        for connection in self.apps.endpoint(self.socketOf(0)).connections:
            connection.close()
        self.apps.flush()
        self.assertEqual(self.successResultOf(d), RequestResult(0, 0))
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertEqual(request.attempts, 2)

    def test_deathWithWaiterReplaced(self) -> None:
        """
        When the only process dies while a request waits, one is started.
        """
        manager = self.manager(startDelay=100)
        first = self.get(manager, "hold")
        second = self.get(manager)
        self.apps.held.clear()
        self.apps.die(self.reactor.spawned[0], self.socketOf(0), exitCode=1)
        self.apps.flush()
        self.failureResultOf(first)
        self.ok(second)
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_unreachableSocketStopsProcess(self) -> None:
        """
        A process whose socket cannot be connected to is stopped (logged)
        and the connect goes to a new process: the request succeeds.
        """
        manager = self.manager()
        self.apps.endpoint(self.socketOf(0)).connectError = ConnectionRefusedError()
        d = self.get(manager)
        self.assertEqual(self.ok(d), socketKey(APP) + ".1")
        self.assertEqual(self.reactor.spawned[0].signals, ["TERM"])
        [warning] = [
            e
            for e in self.logged(appClass=APP, pid=self.reactor.spawned[0].pid)
            if "error" in e
        ]
        self.assertEqual(warning["log_level"].name, "warn")

    def test_stopFailsWaitersAndStopsProcesses(self) -> None:
        """
        Stopping fails waiting requests, sends SIGTERM to every process and
        fires once all have ended; new requests are refused (503).
        """
        manager = self.manager(maxClassProcesses=1)
        first = self.get(manager, "hold")
        second = self.get(manager)
        stopped = manager.stopService()
        self.failureResultOf(second, ConnectError)
        self.assertEqual(self.reactor.spawned[0].signals, ["TERM"])
        self.assertNoResult(stopped)
        self.advance(1)
        self.successResultOf(stopped)
        self.apps.closeExited(self.reactor.spawned)
        self.failureResultOf(first)
        self.failureResultOf(self.get(manager), ConnectError)
        self.assertFalse(os.path.exists(os.path.join(self.ipcDir, "dynamic")))

    def test_closedPoolFailsRequests(self) -> None:
        """
        Requests after the pool closed fail with L{PoolClosed}.
        """
        manager = self.manager()
        pool = self.pool(manager)
        pool.closeAll()
        self.failureResultOf(self.get(manager), PoolClosed)


class ReviewFixTests(ManagerTestCase):
    """
    Defects found in review: what is logged, and what happens when a start
    fails.
    """

    def test_spawnFailureAnswersWaitersAtOnce(self) -> None:
        """
        When the class has no process and its start fails, the waiting
        request fails at once (503), logged, instead of waiting for
        C{appConnTimeout}.
        """
        manager = self.manager(appConnTimeout=15)
        self.reactor.spawnError = OSError(2, "No such file or directory")
        self.failureResultOf(self.get(manager), ConnectError)
        self.assertEqual(len(self.logged(appClass=APP, count=1)), 1)
        self.reactor.spawnError = None
        self.ok(self.get(manager))

    def test_backoffSurvivesForgottenClass(self) -> None:
        """
        The quick-failure count of a binary that keeps crashing survives
        its class being forgotten between requests, so the back-off of
        SPEC.md Decision 7 still bounds its starts.
        """
        manager = self.manager(startDelay=100)
        for _ in range(4):
            self.ok(self.get(manager))
            slot = len(self.reactor.spawned) - 1
            self.apps.die(self.reactor.spawned[-1], self.socketOf(0), signal=11)
            self.apps.flush()
            self.advance(1)
        self.assertEqual(manager.processCount(), 0)
        # Four quick failures, the last start at t=3: the next start waits
        # for the 2 s back-off, though the request made a new class.
        d = self.get(manager)
        self.assertEqual(len(self.reactor.spawned), 4)
        self.advance(0.9)
        self.assertNoResult(d)
        self.advance(0.1)
        self.ok(d)
        self.assertEqual(len(self.reactor.spawned), 5)
        del slot


class SpacingTests(ManagerTestCase):
    """
    Starts for growth are spaced by C{-init-start-delay} (fresh slots) and
    C{-restart-delay} (used slots); starts on demand are not.
    """

    def test_growthSpacedByInitStartDelay(self) -> None:
        """
        Eight waiting requests grow the class one process per
        C{initStartDelay} seconds from the class's last start, each start
        logged, the postponements too.
        """
        manager = self.manager(
            maxClassProcesses=4, startDelay=1, appConnTimeout=0, initStartDelay=2
        )
        ds = [self.get(manager, "hold") for _ in range(8)]
        times = []
        for _ in range(32):
            before = len(self.reactor.spawned)
            self.advance(0.25)
            if len(self.reactor.spawned) > before:
                times.append(self.reactor.seconds())
        self.assertEqual(times, [2.0, 4.0, 6.0])
        self.assertEqual(manager.processCount(APP), 4)
        postponed = self.logged(decision="postpone")
        self.assertTrue(postponed)
        self.assertIn("-init-start-delay 2 s", postponed[0]["why"])
        while self.apps.held:
            self.apps.release()
        for d in ds:
            self.ok(d)

    def test_usedSlotSpacedByRestartDelay(self) -> None:
        """
        Growth into a slot that held a process before waits
        C{restartDelay} after the class's last start.
        """
        manager = self.manager(
            maxClassProcesses=2,
            startDelay=1,
            initStartDelay=0,
            restartDelay=4,
            killInterval=1000,
        )
        first = self.get(manager, "hold")
        second = self.get(manager)
        self.advance(1)  # grows into slot 1 (fresh) at t=1
        self.ok(second)
        self.apps.die(self.reactor.spawned[1], self.socketOf(1), exitCode=0)
        self.apps.flush()  # slot 1 free again
        d = self.get(manager)
        self.advance(1)  # t=2: wanted, due 1 + 4 = 5
        self.assertEqual(len(self.reactor.spawned), 2)
        [postponed] = self.logged(decision="postpone")
        self.assertIn("-restart-delay 4 s", postponed["why"])
        self.advance(2.9)
        self.assertNoResult(d)
        self.advance(0.1)
        self.ok(d)
        self.assertEqual(len(self.reactor.spawned), 3)
        self.apps.release()
        self.ok(first)

    def test_onDemandNotSpaced(self) -> None:
        """
        A request that finds no running process starts one at once, however
        recently the class started one.
        """
        manager = self.manager(restartDelay=100, initStartDelay=100)
        self.ok(self.get(manager))
        self.apps.die(self.reactor.spawned[0], self.socketOf(0), exitCode=0)
        self.apps.flush()
        self.ok(self.get(manager))
        self.assertEqual(len(self.reactor.spawned), 2)


class RestartTests(ManagerTestCase):
    """
    C{-restart}: a dynamic process that dies on its own is restarted,
    C{restartDelay} after the class's last start; without it, only a
    request starts another.
    """

    def test_restartAfterRestartDelay(self) -> None:
        """
        With C{-restart}, a process that crashes is restarted once
        C{restartDelay} has passed since the class's last start, logged.
        """
        manager = self.manager(restart=True, restartDelay=5)
        self.ok(self.get(manager))
        self.advance(2)
        self.apps.die(self.reactor.spawned[0], self.socketOf(0), signal=11)
        self.apps.flush()
        [death] = self.logged(signal=11, appClass=APP)
        self.assertIn("-restart", death["then"])
        self.advance(2.9)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.advance(0.1)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertEqual(manager.processCount(APP), 1)
        [start] = [e for e in self.logged(decision="start") if "-restart" in e["reason"]]
        self.assertEqual(start["pid"], self.reactor.spawned[1].pid)
        self.ok(self.get(manager))
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_restartAtOnceWhenLongAfterLastStart(self) -> None:
        """
        A process that dies long after the class's last start is restarted
        at once.
        """
        manager = self.manager(restart=True, restartDelay=5, killInterval=1000)
        self.ok(self.get(manager))
        self.advance(60)
        self.apps.die(self.reactor.spawned[0], self.socketOf(0), exitCode=0)
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_noRestartWithoutFlag(self) -> None:
        """
        Without C{-restart} (and C{singleThreshold} not 0) nothing restarts
        a process nobody needs.
        """
        manager = self.manager(restartDelay=0)
        self.ok(self.get(manager))
        self.apps.die(self.reactor.spawned[0], self.socketOf(0), exitCode=1)
        self.advance(100)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertEqual(manager.processCount(), 0)

    def test_lastInstanceRestartedWithSingleThresholdZero(self) -> None:
        """
        With C{-singleThreshold 0} (keep the last instance), the last
        process of a class is restarted when it dies, as in mod_fastcgi
        HEAD; one of several is not.
        """
        manager = self.manager(
            singleThreshold=0, restartDelay=0, startDelay=1, initStartDelay=0,
            killInterval=1000,
        )
        first = self.get(manager, "hold")
        second = self.get(manager, "hold")
        self.advance(1)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.apps.release()
        self.apps.release()
        self.ok(first)
        self.ok(second)
        self.apps.die(self.reactor.spawned[1], self.socketOf(1), exitCode=0)
        self.apps.flush()
        self.assertEqual(len(self.reactor.spawned), 2)
        self.apps.die(self.reactor.spawned[0], self.socketOf(0), exitCode=0)
        self.apps.flush()
        self.assertEqual(len(self.reactor.spawned), 3)
        self.assertEqual(manager.processCount(APP), 1)

    def test_restartsBackOff(self) -> None:
        """
        A binary that keeps crashing right after its restart backs off
        (SPEC.md Decision 7) instead of restarting every C{restartDelay}.
        """
        manager = self.manager(restart=True, restartDelay=0, killInterval=1000)
        self.ok(self.get(manager))
        for _ in range(4):
            self.apps.die(self.reactor.spawned[-1], self.socketOf(0), signal=11)
            self.apps.flush()
        self.assertEqual(len(self.reactor.spawned), 4)
        backoffs = [e for e in self.logged(decision="postpone") if "back-off" in e["why"]]
        self.assertEqual(len(backoffs), 1)
        self.advance(2)
        self.assertEqual(len(self.reactor.spawned), 5)

    def test_restartOwedDroppedAtLimit(self) -> None:
        """
        A restart that would exceed C{maxProcesses} is not made (logged).
        """
        manager = self.manager(
            restart=True, restartDelay=5, maxProcesses=1, processSlack=1,
            minProcesses=1, killInterval=1000,
        )
        self.ok(self.get(manager, "", APP))
        self.advance(1)
        self.apps.die(self.reactor.spawned[0], self.socketOf(0), exitCode=0)
        self.apps.flush()  # restart due at t=5
        self.ok(self.get(manager, "", OTHER))
        self.advance(10)
        self.assertEqual(manager.processCount(APP), 0)
        self.assertEqual(len(self.logged(limit="maxProcesses", appClass=APP)), 1)


class AutoUpdateTests(ManagerTestCase):
    """
    C{-autoUpdate}: processes of a file that changed since they started are
    drained and stopped when a request for the application arrives.
    """

    def setUp(self) -> None:
        super().setUp()
        self.app = os.path.join(self.ipcDir, "app.fcgi")
        with open(self.app, "wb") as f:
            f.write(b"#!/bin/sh\n")
        os.utime(self.app, ns=(10**18, 10**18))

    def test_changedFileDrainsOldProcesses(self) -> None:
        """
        After the file's time changes, the next request's arrival stops the
        idle old process (its kept connection closed first) and the busy
        one after its request (logged); the request gets a new process.
        """
        manager = self.manager(
            autoUpdate=True, startDelay=1, initStartDelay=0, killInterval=1000
        )
        busy = self.get(manager, "hold", self.app)
        idle = self.get(manager, "", self.app)
        self.advance(1)
        self.ok(idle)
        busyProcess, idleProcess = self.reactor.spawned
        self.ok(self.get(manager, "", self.app))
        self.assertEqual(self.logged(decision="update"), [])
        os.utime(self.app, ns=(2 * 10**18, 2 * 10**18))
        new = self.get(manager, "", self.app)
        self.assertEqual(len(self.logged(decision="update")), 2)
        self.assertEqual(idleProcess.signals, ["TERM"])
        self.assertEqual(busyProcess.signals, [])
        self.assertEqual(self.ok(new), socketKey(self.app) + ".2")
        self.assertEqual(len(self.reactor.spawned), 3)
        self.apps.release()
        self.ok(busy)
        self.assertEqual(busyProcess.signals, ["TERM"])
        self.ok(self.get(manager, "", self.app))
        self.assertEqual(len(self.logged(decision="update")), 2)

    def test_olderFileCountsAsChanged(self) -> None:
        """
        A file moved back to an older time (a rollback) also counts.
        """
        manager = self.manager(autoUpdate=True)
        self.ok(self.get(manager, "", self.app))
        os.utime(self.app, ns=(10**17, 10**17))
        self.ok(self.get(manager, "", self.app))
        self.assertEqual(self.reactor.spawned[0].signals, ["TERM"])
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_offByDefault(self) -> None:
        """
        Without C{-autoUpdate} a changed file changes nothing.
        """
        manager = self.manager()
        self.ok(self.get(manager, "", self.app))
        os.utime(self.app, ns=(2 * 10**18, 2 * 10**18))
        self.ok(self.get(manager, "", self.app))
        self.assertEqual(self.reactor.spawned[0].signals, [])
        self.assertEqual(len(self.reactor.spawned), 1)
