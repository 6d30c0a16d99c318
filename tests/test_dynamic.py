"""
Tests for L{txfastcgi.dynamic}: the dynamic application manager, with a
fake process reactor, a fake connector and a L{Clock}.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.test_supervisor import FakeProcess, FakeProcessReactor
from txfastcgi.appclass import IpcDirConfig
from txfastcgi.config.model import DynamicConfig
from txfastcgi.client import FastCGIRequest
from txfastcgi.dynamic import (
    DynamicApplicationManager,
    DynamicEndpoint,
    DynamicPool,
    DynamicStartTimeout,
    DynamicUnavailable,
    socketKey,
)

APP = "/srv/htdocs/app.fcgi"
OTHER = "/srv/htdocs/other.fcgi"


class FakeConnection:
    """
    What the fake connector "connects": records C{connectionLost}.

    @ivar path: the socket it was connected to.
    @ivar lost: whether C{connectionLost} was called.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.lost = False

    def connectionLost(self, reason: object = None) -> None:
        """
        The connection closed.
        """
        self.lost = True


class FakeConnector:
    """
    Connects at once to any path, recording the connections.

    @ivar connections: every connection made, in order.
    """

    def __init__(self) -> None:
        self.connections: list[FakeConnection] = []

    def __call__(self, path: str, factory: Any) -> Deferred[Any]:
        connection = FakeConnection(path)
        self.connections.append(connection)
        return succeed(connection)


class ManagerTestCase(SynchronousTestCase):
    """
    Set-up: fake reactor, temporary IPC directory, captured log events.
    """

    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.ipcDir = tempfile.mkdtemp(prefix="txdyn-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.ipcDir, True)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.connector = FakeConnector()

    def manager(self, **options: Any) -> DynamicApplicationManager:
        """
        A started manager with the given C{FCGIConfig} options, stopped at
        cleanup.
        """
        options.setdefault("minProcesses", 0)
        manager = DynamicApplicationManager(
            self.reactor,
            DynamicConfig(**options),
            ipcDir=IpcDirConfig(self.ipcDir),
            connector=self.connector,
            environ={"PATH": "/usr/bin", "SECRET": "x"},
        )

        def cleanup() -> None:
            d = manager.stopService()
            self.reactor.advance(manager.stopGrace + 1)
            self.successResultOf(d)

        self.addCleanup(cleanup)
        manager.startService()
        return manager

    def logged(self, **fields: object) -> list[LogEvent]:
        """
        The captured events having all the given field values.
        """
        return [
            e for e in self.events if all(k in e and e[k] == v for k, v in fields.items())
        ]

    def request(self, manager: DynamicApplicationManager, path: str = APP) -> Deferred[Any]:
        """
        Ask for a connection as a pool would.
        """
        return DynamicEndpoint(manager, path).connect(object())

    def finish(self, connection: FakeConnection) -> None:
        """
        Close a connection the manager handed out (its request ended).
        """
        connection.connectionLost(None)  # the manager's wrapper

    def live(self) -> list[FakeProcess]:
        """
        The fake processes that have not exited.
        """
        return self.reactor.running()


class OnDemandTests(ManagerTestCase):
    """
    The first request starts the class's first process.
    """

    def test_firstRequestStartsOneProcess(self) -> None:
        """
        The first request creates the class and spawns one process with
        argv C{[path]}, its directory as working directory, its own socket
        under C{dynamic/} as fd 0, and exactly the C{-initial-env} pairs;
        the request gets a connection to that socket.
        """
        manager = self.manager(initialEnv=("A=1", "PATH"))
        d = self.request(manager)
        connection = self.successResultOf(d)
        [process] = self.reactor.spawned
        self.assertEqual(process.executable, APP)
        self.assertEqual(process.args, [APP])
        self.assertEqual(process.path, "/srv/htdocs")
        self.assertEqual(process.env, {"A": "1", "PATH": "/usr/bin"})
        assert process.childFDs is not None
        self.assertIsInstance(process.childFDs[0], int)
        expected = os.path.join(self.ipcDir, "dynamic", socketKey(APP) + ".0")
        self.assertEqual(connection.path, expected)
        self.assertEqual(manager.processCount(APP), 1)
        [start] = self.logged(decision="start")
        self.assertIn("on demand", start["reason"])
        self.assertEqual(start["appClass"], APP)
        self.assertIn("load", start)

    def test_secondRequestReusesIdleProcess(self) -> None:
        """
        A request arriving when the process is idle again starts nothing.
        """
        manager = self.manager()
        first = self.successResultOf(self.request(manager))
        self.finish(first)
        second = self.successResultOf(self.request(manager))
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertEqual(first.path, second.path)

    def test_waiterServedWhenProcessFrees(self) -> None:
        """
        A request waiting for the only process gets it when the request
        before it ends, before C{startDelay}.
        """
        manager = self.manager(startDelay=3)
        first = self.successResultOf(self.request(manager))
        d = self.request(manager)
        self.assertNoResult(d)
        self.reactor.advance(1)
        self.finish(first)
        self.successResultOf(d)
        self.reactor.advance(10)
        self.assertEqual(len(self.reactor.spawned), 1)


class ClosingConnection(FakeConnection):
    """
    A connection with a C{close} method (as L{FastCGIClientProtocol} has)
    whose C{connectionLost} comes later.
    """

    closed = False

    def close(self) -> None:
        """
        Start closing.
        """
        self.closed = True


class ReleaseOnCloseTests(ManagerTestCase):
    """
    The process is free again as soon as the pool closes the connection of
    a finished request.
    """

    def test_releasedAtClose(self) -> None:
        """
        A waiting request gets the process when the pool calls C{close} on
        the previous connection, before its C{connectionLost}; the later
        C{connectionLost} releases nothing twice.
        """

        def connector(path: str, factory: Any) -> Deferred[Any]:
            return succeed(ClosingConnection(path))

        self.connector = connector  # type: ignore[assignment]
        manager = self.manager(startDelay=100)
        first = self.successResultOf(self.request(manager))
        d = self.request(manager)
        self.assertNoResult(d)
        first.close()
        self.assertTrue(first.closed)
        second = self.successResultOf(d)
        first.connectionLost(None)
        third = self.request(manager)
        self.assertNoResult(third)
        second.close()
        self.successResultOf(third)
        self.assertEqual(len(self.reactor.spawned), 1)


class GrowthTests(ManagerTestCase):
    """
    Requests that wait C{startDelay} ask for more processes, within limits.
    """

    def test_growsToMaxClassProcesses(self) -> None:
        """
        Eight concurrent requests grow a class to exactly
        C{maxClassProcesses}, one start per request that waited; the limit
        is logged once.
        """
        manager = self.manager(
            maxClassProcesses=4, startDelay=1, appConnTimeout=0, initStartDelay=0
        )
        ds = [self.request(manager) for _ in range(8)]
        self.assertEqual(len(self.reactor.spawned), 1)
        self.reactor.advance(0.999)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.reactor.advance(0.001)
        self.assertEqual(len(self.reactor.spawned), 4)
        self.reactor.advance(10)
        self.assertEqual(len(self.reactor.spawned), 4)
        self.assertEqual(manager.processCount(APP), 4)
        self.assertEqual(len([d for d in ds if d.called]), 4)
        for d in ds[4:]:
            d.cancel()
            self.failureResultOf(d)
        limits = self.logged(limit="maxClassProcesses")
        self.assertEqual(len(limits), 1)
        reasons = [e["reason"] for e in self.logged(decision="start")]
        self.assertIn("startDelay", reasons[1])

    def test_totalLimit(self) -> None:
        """
        C{maxProcesses} caps the processes of all classes together, logged.
        """
        manager = self.manager(
            maxProcesses=2, startDelay=1, processSlack=1, minProcesses=2
        )
        self.successResultOf(self.request(manager, APP))
        self.successResultOf(self.request(manager, OTHER))
        d = self.request(manager, OTHER)
        self.reactor.advance(1)
        self.assertNoResult(d)
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(manager.processCount(), 2)
        self.assertEqual(len(self.logged(limit="maxProcesses")), 1)

    def test_appConnTimeout(self) -> None:
        """
        A request that gets no process within C{appConnTimeout} fails with
        L{DynamicStartTimeout}, logged.
        """
        manager = self.manager(maxClassProcesses=1, startDelay=1, appConnTimeout=5)
        self.successResultOf(self.request(manager))
        d = self.request(manager)
        self.reactor.advance(4.9)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        self.failureResultOf(d, DynamicStartTimeout)
        self.assertEqual(len(self.logged(appConnTimeout=5)), 1)

    def test_cancelledWaiterForgotten(self) -> None:
        """
        A connect the pool cancels leaves the queue and asks for nothing
        more.
        """
        manager = self.manager(startDelay=1)
        self.successResultOf(self.request(manager))
        d = self.request(manager)
        d.cancel()
        self.failureResultOf(d)
        self.reactor.advance(5)
        self.assertEqual(len(self.reactor.spawned), 1)


class KillPolicyTests(ManagerTestCase):
    """
    The kill policy stops idle processes, drains busy victims first, and
    respects the floor.
    """

    def test_idleProcessKilledAtKillInterval(self) -> None:
        """
        An idle single process is stopped at C{killInterval} (load 0 <
        C{singleThreshold}), logged with its reason and load; the class is
        then forgotten.
        """
        manager = self.manager(killInterval=10, updateInterval=10)
        self.finish(self.successResultOf(self.request(manager)))
        [process] = self.reactor.spawned
        self.reactor.advance(9.9)
        self.assertEqual(process.signals, [])
        self.reactor.advance(0.1)
        self.assertEqual(process.signals, ["TERM"])
        [kill] = self.logged(decision="kill")
        self.assertEqual(kill["load"], 0.0)
        self.assertIn("singleThreshold", kill["reason"])
        self.reactor.advance(1)
        self.assertEqual(manager.processCount(), 0)

    def test_minProcessesFloor(self) -> None:
        """
        Nothing is stopped when the total is at C{minProcesses}.
        """
        manager = self.manager(killInterval=10, minProcesses=1)
        self.finish(self.successResultOf(self.request(manager)))
        self.reactor.advance(100)
        self.assertEqual(self.reactor.spawned[0].signals, [])
        self.assertEqual(manager.processCount(), 1)

    def test_singleThresholdZeroKeepsLastProcess(self) -> None:
        """
        C{singleThreshold 0} never stops the last process.
        """
        manager = self.manager(killInterval=10, singleThreshold=0)
        self.finish(self.successResultOf(self.request(manager)))
        self.reactor.advance(100)
        self.assertEqual(manager.processCount(), 1)

    def test_busyVictimDrainedFirst(self) -> None:
        """
        A victim serving a request takes no new one and gets SIGTERM only
        when its request's connection closes: no request fails.
        """
        manager = self.manager(killInterval=10, startDelay=100)
        connection = self.successResultOf(self.request(manager))
        [process] = self.reactor.spawned
        self.reactor.advance(10)
        [kill] = self.logged(decision="kill")
        self.assertEqual(process.signals, [])
        # A new request does not go to the draining victim: a new process.
        d = self.request(manager)
        self.assertEqual(len(self.reactor.spawned), 2)
        other = self.successResultOf(d)
        self.assertNotEqual(other.path, connection.path)
        self.finish(connection)
        self.assertEqual(process.signals, ["TERM"])

    def test_busyClassSpared(self) -> None:
        """
        A class whose process was busy most of the period is spared.
        """
        manager = self.manager(killInterval=10, updateInterval=10)
        connection = self.successResultOf(self.request(manager))
        self.reactor.advance(9)
        self.finish(connection)
        self.reactor.advance(1)
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
        connections = [self.request(manager) for _ in range(3)]
        self.reactor.advance(1)
        self.assertEqual(manager.processCount(APP), 3)
        for d in connections:
            self.finish(self.successResultOf(d))
        counts = []
        for _ in range(4):
            self.reactor.advance(10)
            self.reactor.advance(1)  # SIGTERM takes 0.5 s in the fake
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
        self.finish(self.successResultOf(self.request(manager, APP)))
        other = self.successResultOf(self.request(manager, OTHER))
        self.reactor.advance(5)
        self.finish(other)  # OTHER served for 5 s: load 50
        self.reactor.advance(5)
        self.assertEqual(self.logged(decision="kill"), [])
        self.successResultOf(self.request(manager, "/srv/htdocs/third.fcgi"))
        kills = self.logged(decision="kill")
        self.assertEqual([k["appClass"] for k in kills], [APP])
        self.assertEqual(kills[0]["trigger"], "processSlack")


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
        self.finish(self.successResultOf(self.request(manager)))
        self.reactor.spawned[0].exit(signal=11)
        [death] = self.logged(signal=11, appClass=APP)
        self.assertEqual(death["log_level"].name, "error")
        self.assertEqual(len(self.reactor.spawned), 1)
        self.successResultOf(self.request(manager))
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_deathWithWaiterReplaced(self) -> None:
        """
        When the only process dies while requests wait, one is started.
        """
        manager = self.manager(startDelay=100)
        self.successResultOf(self.request(manager))
        d = self.request(manager)
        self.reactor.spawned[0].exit(exitCode=1)
        self.successResultOf(d)
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_stopFailsWaitersAndStopsProcesses(self) -> None:
        """
        Stopping fails waiting requests with L{DynamicUnavailable}, sends
        SIGTERM to every process and fires once all have ended; new
        requests are refused.
        """
        manager = self.manager(maxClassProcesses=1)
        self.successResultOf(self.request(manager))
        d = self.request(manager)
        stopped = manager.stopService()
        self.failureResultOf(d, DynamicUnavailable)
        self.assertEqual(self.reactor.spawned[0].signals, ["TERM"])
        self.assertNoResult(stopped)
        self.reactor.advance(1)
        self.successResultOf(stopped)
        self.failureResultOf(self.request(manager), DynamicUnavailable)
        self.assertFalse(os.path.exists(os.path.join(self.ipcDir, "dynamic")))


class ReviewFixTests(ManagerTestCase):
    """
    Defects found in review: when the kill policy runs, what is logged, and
    what happens when a start fails.
    """

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
        first = self.successResultOf(self.request(manager, APP))
        self.assertEqual(manager.policyRuns, 0)
        second = self.successResultOf(self.request(manager, OTHER))
        self.assertEqual(manager.policyRuns, 1)  # the start, 2 + 1 >= 3
        for _ in range(5):
            self.reactor.advance(1)
            self.finish(first)
            self.finish(second)
            first = self.successResultOf(self.request(manager, APP))
            second = self.successResultOf(self.request(manager, OTHER))
        self.assertEqual(manager.policyRuns, 1)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.reactor.advance(100)
        self.assertEqual(manager.policyRuns, 2)

    def test_drainedVictimTerminationLogged(self) -> None:
        """
        The C{SIGTERM} sent to a victim once its request ended is logged at
        info with the reason.
        """
        manager = self.manager(killInterval=10, startDelay=100)
        connection = self.successResultOf(self.request(manager))
        self.reactor.advance(10)
        self.assertEqual(self.logged(decision="terminate"), [])
        self.finish(connection)
        [term] = self.logged(decision="terminate")
        self.assertEqual(term["log_level"].name, "info")
        self.assertIn("request in progress finished", term["why"])
        self.assertEqual(term["pid"], self.reactor.spawned[0].pid)

    def test_idleVictimTerminationLogged(self) -> None:
        """
        An idle victim's C{SIGTERM} is logged too.
        """
        manager = self.manager(killInterval=10)
        self.finish(self.successResultOf(self.request(manager)))
        self.reactor.advance(10)
        [term] = self.logged(decision="terminate")
        self.assertIn("idle", term["why"])

    def test_spawnFailureAnswersWaitersAtOnce(self) -> None:
        """
        When the class has no process and its start fails, the waiting
        request fails at once with L{DynamicUnavailable} (503), logged,
        instead of waiting for C{appConnTimeout}.
        """
        manager = self.manager(appConnTimeout=15)
        self.reactor.spawnError = OSError(2, "No such file or directory")
        d = self.request(manager)
        self.failureResultOf(d, DynamicUnavailable)
        self.assertEqual(len(self.logged(appClass=APP, count=1)), 1)
        self.reactor.spawnError = None
        self.successResultOf(self.request(manager))

    def test_backoffSurvivesForgottenClass(self) -> None:
        """
        The quick-failure count of a binary that keeps crashing survives
        its class being forgotten between requests, so the back-off of
        SPEC.md Decision 7 still bounds its starts.
        """
        manager = self.manager(startDelay=100)
        for _ in range(4):
            d = self.request(manager)
            self.successResultOf(d)
            self.reactor.spawned[-1].exit(signal=11)
            self.reactor.advance(1)
        self.assertEqual(manager.processCount(), 0)
        # Four quick failures, the last start at t=3: the next start waits
        # for the 2 s back-off, though the request made a new class.
        d = self.request(manager)
        self.assertEqual(len(self.reactor.spawned), 4)
        self.reactor.advance(0.9)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        self.successResultOf(d)
        self.assertEqual(len(self.reactor.spawned), 5)


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
        ds = [self.request(manager) for _ in range(8)]
        times = []
        for _ in range(32):
            before = len(self.reactor.spawned)
            self.reactor.advance(0.25)
            if len(self.reactor.spawned) > before:
                times.append(self.reactor.seconds())
        self.assertEqual(times, [2.0, 4.0, 6.0])
        self.assertEqual(manager.processCount(APP), 4)
        postponed = self.logged(decision="postpone")
        self.assertTrue(postponed)
        self.assertIn("-init-start-delay 2 s", postponed[0]["why"])
        for d in ds:
            d.cancel()
            d.addErrback(lambda f: None)

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
        first = self.successResultOf(self.request(manager))
        d = self.request(manager)
        self.reactor.advance(1)  # grows into slot 1 (fresh) at t=1
        second = self.successResultOf(d)
        self.finish(second)
        self.reactor.spawned[1].exit(exitCode=0)  # slot 1 free again
        d = self.request(manager)
        self.reactor.advance(1)  # t=2: wanted, due 1 + 4 = 5
        self.assertEqual(len(self.reactor.spawned), 2)
        [postponed] = self.logged(decision="postpone")
        self.assertIn("-restart-delay 4 s", postponed["why"])
        self.reactor.advance(2.9)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        self.successResultOf(d)
        self.assertEqual(len(self.reactor.spawned), 3)
        self.finish(first)

    def test_onDemandNotSpaced(self) -> None:
        """
        A request that finds no running process starts one at once, however
        recently the class started one.
        """
        manager = self.manager(restartDelay=100, initStartDelay=100)
        self.successResultOf(self.request(manager))
        self.reactor.spawned[0].exit(exitCode=0)
        self.successResultOf(self.request(manager))
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
        self.finish(self.successResultOf(self.request(manager)))
        self.reactor.advance(2)
        self.reactor.spawned[0].exit(signal=11)
        [death] = self.logged(signal=11, appClass=APP)
        self.assertIn("-restart", death["then"])
        self.reactor.advance(2.9)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertEqual(manager.processCount(APP), 1)
        [start] = [e for e in self.logged(decision="start") if "-restart" in e["reason"]]
        self.assertEqual(start["pid"], self.reactor.spawned[1].pid)

    def test_restartAtOnceWhenLongAfterLastStart(self) -> None:
        """
        A process that dies long after the class's last start is restarted
        at once.
        """
        manager = self.manager(restart=True, restartDelay=5, killInterval=1000)
        self.finish(self.successResultOf(self.request(manager)))
        self.reactor.advance(60)
        self.reactor.spawned[0].exit(exitCode=0)
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_noRestartWithoutFlag(self) -> None:
        """
        Without C{-restart} (and C{singleThreshold} not 0) nothing restarts
        a process nobody needs.
        """
        manager = self.manager(restartDelay=0)
        self.finish(self.successResultOf(self.request(manager)))
        self.reactor.spawned[0].exit(exitCode=1)
        self.reactor.advance(100)
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
        first = self.successResultOf(self.request(manager))
        d = self.request(manager)
        self.reactor.advance(1)
        second = self.successResultOf(d)
        self.finish(first)
        self.finish(second)
        self.reactor.spawned[1].exit(exitCode=0)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.reactor.spawned[0].exit(exitCode=0)
        self.assertEqual(len(self.reactor.spawned), 3)
        self.assertEqual(manager.processCount(APP), 1)

    def test_restartsBackOff(self) -> None:
        """
        A binary that keeps crashing right after its restart backs off
        (SPEC.md Decision 7) instead of restarting every C{restartDelay}.
        """
        manager = self.manager(restart=True, restartDelay=0, killInterval=1000)
        self.finish(self.successResultOf(self.request(manager)))
        for _ in range(4):
            self.reactor.spawned[-1].exit(signal=11)
        self.assertEqual(len(self.reactor.spawned), 4)
        backoffs = [e for e in self.logged(decision="postpone") if "back-off" in e["why"]]
        self.assertEqual(len(backoffs), 1)
        self.reactor.advance(2)
        self.assertEqual(len(self.reactor.spawned), 5)

    def test_restartOwedDroppedAtLimit(self) -> None:
        """
        A restart that would exceed C{maxProcesses} is not made (logged).
        """
        manager = self.manager(
            restart=True, restartDelay=5, maxProcesses=1, processSlack=1,
            minProcesses=1, killInterval=1000,
        )
        self.finish(self.successResultOf(self.request(manager, APP)))
        self.reactor.advance(1)
        self.reactor.spawned[0].exit(exitCode=0)  # restart due at t=5
        self.finish(self.successResultOf(self.request(manager, OTHER)))
        self.reactor.advance(10)
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
        idle old process at once and the busy one after its request
        (logged); the request gets a new process.
        """
        manager = self.manager(autoUpdate=True, startDelay=1, initStartDelay=0)
        busy = self.successResultOf(self.request(manager, self.app))
        d = self.request(manager, self.app)
        self.reactor.advance(1)
        self.finish(self.successResultOf(d))
        busyProcess, idleProcess = self.reactor.spawned
        manager._arrived(self.app)
        self.assertEqual(self.logged(decision="update"), [])
        os.utime(self.app, ns=(2 * 10**18, 2 * 10**18))
        manager._arrived(self.app)
        self.assertEqual(len(self.logged(decision="update")), 2)
        self.assertEqual(idleProcess.signals, ["TERM"])
        self.assertEqual(busyProcess.signals, [])
        new = self.successResultOf(self.request(manager, self.app))
        self.assertEqual(len(self.reactor.spawned), 3)
        self.assertNotEqual(new.path, busy.path)
        self.finish(busy)
        self.assertEqual(busyProcess.signals, ["TERM"])
        manager._arrived(self.app)
        self.assertEqual(len(self.logged(decision="update")), 2)

    def test_olderFileCountsAsChanged(self) -> None:
        """
        A file moved back to an older time (a rollback) also counts.
        """
        manager = self.manager(autoUpdate=True)
        self.finish(self.successResultOf(self.request(manager, self.app)))
        os.utime(self.app, ns=(10**17, 10**17))
        manager._arrived(self.app)
        self.assertEqual(self.reactor.spawned[0].signals, ["TERM"])

    def test_offByDefault(self) -> None:
        """
        Without C{-autoUpdate} a changed file changes nothing.
        """
        manager = self.manager()
        self.finish(self.successResultOf(self.request(manager, self.app)))
        os.utime(self.app, ns=(2 * 10**18, 2 * 10**18))
        manager._arrived(self.app)
        self.assertEqual(self.reactor.spawned[0].signals, [])

    def test_poolReportsArrivals(self) -> None:
        """
        L{DynamicPool} tells the manager of each request before taking it.
        """
        manager = self.manager()
        arrived: list[str] = []
        manager._arrived = arrived.append  # type: ignore[method-assign]
        pool = manager.poolFor(self.app)
        self.assertIsInstance(pool, DynamicPool)
        request = FastCGIRequest([], writeStdout=lambda data: None)
        pool.closeAll()
        self.failureResultOf(pool.request(request))
        self.assertEqual(arrived, [self.app])
