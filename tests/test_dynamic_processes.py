# -*- test-case-name: tests.test_dynamic_processes -*-
"""
Tests for L{txfastcgi.dynamic} with real processes: the libfcgi responder
(tests/apps/responder.c, C{?sleep=MS}, C{X-Pid}) started on demand,
grown under concurrent load, reaped when the load stops, and killed under
load without a failed request.  Unix sockets in a short temporary
FastCgiIpcDir; every await is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet.defer import Deferred, gatherResults

from tests.test_server_e2e import Server, freePort, processesUnder
from tests.test_supervisor_processes import (  # noqa: F401 (fixtures)
    Events,
    alive,
    bounded,
    children,
    events,
    get,
    getReactor,
    noDelayedCallsLeft,
    sleep,
    waitFor,
)
from txfastcgi.appclass import IpcDirConfig
from txfastcgi.config.model import DynamicConfig
from txfastcgi.dynamic import DynamicApplicationManager
from txfastcgi.pool import ConnectionPool


def startManager(ipcDir: str, **options: Any) -> DynamicApplicationManager:
    """
    Start a manager with the given C{FCGIConfig} options.
    """
    options.setdefault("minProcesses", 0)
    manager = DynamicApplicationManager(
        getReactor(), DynamicConfig(**options), ipcDir=IpcDirConfig(ipcDir)
    )
    manager.privilegedStartService()
    manager.startService()
    return manager


async def stopAndCheck(
    manager: DynamicApplicationManager,
    pool: ConnectionPool,
    before: set[int],
    spawned: set[int],
    ipcDir: str,
) -> None:
    """
    Close the pool, stop the manager, and check no process or socket is
    left.
    """
    await bounded(pool.closeAll())
    await bounded(manager.stopService(), 15)
    assert [p for p in spawned if alive(p)] == []
    assert children() <= before
    assert not os.path.exists(os.path.join(ipcDir, "dynamic"))


def track(manager: DynamicApplicationManager, path: str, spawned: set[int]) -> int:
    """
    Add the class's pids to C{spawned}.

    @return: its process count now.
    """
    spawned.update(manager.pids(path))
    return manager.processCount(path)


@pytest_twisted.ensureDeferred
async def test_onDemandStart(responderBinary: str, peerDir: str, events: Events) -> None:
    """
    The first request starts one process, with exactly the C{-initial-env}
    pairs as environment, and is served by it; later requests reuse it.
    """
    before = children()
    path = responderBinary
    manager = startManager(peerDir, initialEnv=("STATE=TEXAS",))
    pool = manager.poolFor(path)
    spawned: set[int] = set()
    try:
        assert manager.processCount(path) == 0
        headers, _ = await get(pool, "")
        [pid] = manager.pids(path)
        spawned.add(pid)
        assert headers["x-pid"] == str(pid)
        with open(f"/proc/{pid}/environ", "rb") as f:
            assert f.read() == b"STATE=TEXAS\0"
        headers, _ = await get(pool, "")
        assert headers["x-pid"] == str(pid)
        assert manager.processCount(path) == 1
        [start] = events.having(decision="start", appClass=path)
        assert "on demand" in start["reason"]
    finally:
        await stopAndCheck(manager, pool, before, spawned, peerDir)


@pytest_twisted.ensureDeferred
async def test_growsToMaxClassProcessesThenReaped(
    responderBinary: str, peerDir: str, events: Events
) -> None:
    """
    Eight concurrent slow requests grow the class to exactly
    C{maxClassProcesses} (4), all succeed, and once the load stops the
    processes are reaped down to the floor (C{minProcesses 1}).  With no
    C{-init-start-delay} the seven waiting requests all ask at C{startDelay}:
    three starts, then the limit (logged).
    """
    before = children()
    path = responderBinary
    manager = startManager(
        peerDir,
        maxClassProcesses=4,
        minProcesses=1,
        startDelay=1,
        initStartDelay=0,
        killInterval=1,
        updateInterval=1,
        appConnTimeout=30,
    )
    pool = manager.poolFor(path)
    spawned: set[int] = set()
    peak = 0
    try:
        work = gatherResults(
            [Deferred.fromCoroutine(get(pool, "sleep=1500")) for _ in range(8)]
        )
        while not work.called:
            peak = max(peak, track(manager, path, spawned))
            await sleep(0.05)
        answers = await bounded(work, 20)
        assert len(answers) == 8
        assert peak == 4
        assert len({headers["x-pid"] for headers, _ in answers}) >= 4
        assert len(events.having(limit="maxClassProcesses", appClass=path)) >= 1
        await waitFor(lambda: manager.processCount(path) == 1, "reaping", 15)
        await sleep(2.5)
        assert manager.processCount(path) == 1
        kills = events.having(decision="kill", appClass=path)
        assert len(kills) >= 3
        assert all("load" in kill for kill in kills)
    finally:
        await stopAndCheck(manager, pool, before, spawned, peerDir)


@pytest_twisted.ensureDeferred
async def test_killUnderLoadFailsNoRequest(
    responderBinary: str, peerDir: str, events: Events
) -> None:
    """
    With the most aggressive kill policy (every second, any class below load
    100 loses a process, the last one included) under steady load from
    three clients, processes are killed while requests stream in and new
    ones are started, and yet every request succeeds: victims take no new
    request and get SIGTERM only once their request is done.
    """
    before = children()
    path = responderBinary
    manager = startManager(
        peerDir,
        maxClassProcesses=4,
        startDelay=1,
        killInterval=1,
        updateInterval=1,
        singleThreshold=100,
        multiThreshold=100,
        appConnTimeout=30,
    )
    pool = manager.poolFor(path)
    spawned: set[int] = set()
    failures: list[object] = []
    served = 0
    clock = getReactor()
    deadline = clock.seconds() + 5

    async def client() -> None:
        nonlocal served
        while clock.seconds() < deadline:
            try:
                await get(pool, "sleep=100")
                served += 1
            except Exception as e:
                failures.append(e)
            track(manager, path, spawned)

    try:
        await bounded(
            gatherResults([Deferred.fromCoroutine(client()) for _ in range(3)]), 30
        )
        assert failures == []
        assert served > 30
        assert len(events.having(decision="kill", appClass=path)) >= 3
        assert len(events.having(decision="start", appClass=path)) >= 3
    finally:
        await stopAndCheck(manager, pool, before, spawned, peerDir)


def test_gatewayServesDynamicApplications(tmp_path: Path, responderBinary: str) -> None:
    """
    Through C{twistd fastcgi}: an executable C{.fcgi} file in the document
    root is started on its first request and answers 200; a second request
    while the only allowed process is busy answers 503 after
    C{appConnTimeout}; a non-executable file and a link leaving the document
    root answer 403, an encoded slash or dot segment 404, and none of these
    starts a process; SIGTERM leaves no process and no socket.
    """
    docroot = tmp_path / "docroot"
    docroot.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(responderBinary, docroot / "app.fcgi")
    (docroot / "plain.fcgi").write_bytes((docroot / "app.fcgi").read_bytes())
    (docroot / "plain.fcgi").chmod(0o644)
    shutil.copy(responderBinary, outside / "tool.fcgi")
    (docroot / "escape.fcgi").symlink_to(outside / "tool.fcgi")
    ipcDir = tempfile.mkdtemp(prefix="dyne2e-", dir="/tmp")
    port = freePort()
    config = tmp_path / "httpd.conf"
    config.write_text(
        f"Port {port}\n"
        "BindAddress 127.0.0.1\n"
        f"DocumentRoot {docroot}\n"
        f"FastCgiIpcDir {ipcDir}\n"
        f"ErrorLog {tmp_path}/error.log\n"
        "AddHandler fastcgi-script .fcgi\n"
        "FCGIConfig -maxClassProcesses 1 -startDelay 1 -appConnTimeout 1\n"
    )
    server = Server(tmp_path, config, port)
    try:
        server.waitUntilListening()
        assert server.get("/app.fcgi")[0] == 200
        assert len(processesUnder(docroot)) == 1
        results: dict[str, int] = {}
        slow = threading.Thread(
            target=lambda: results.update(slow=server.get("/app.fcgi?sleep=4000")[0])
        )
        slow.start()
        time.sleep(1.0)  # the slow request reaches the only process
        started = time.monotonic()
        assert server.get("/app.fcgi")[0] == 503
        assert time.monotonic() - started >= 0.9
        slow.join(15)
        assert results == {"slow": 200}
        assert server.get("/plain.fcgi")[0] == 403
        assert server.get("/escape.fcgi")[0] == 403
        assert server.get("/%2e%2e/outside/tool.fcgi")[0] == 404
        assert server.get("/x%2F..%2Foutside%2Ftool.fcgi")[0] == 404
        assert processesUnder(outside) == []
        assert len(processesUnder(docroot)) == 1
        log = (tmp_path / "error.log").read_text()
        assert "first request" in log
        assert "appConnTimeout" in log
        assert "not executable" in log
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(30)
        assert processesUnder(docroot) == []
        assert os.listdir(ipcDir) == []
    finally:
        server.kill()
        shutil.rmtree(ipcDir, True)


@pytest_twisted.ensureDeferred
async def test_autoUpdateRestartsChangedApplication(
    responderBinary: str, peerDir: str, events: Events
) -> None:
    """
    With C{-autoUpdate}, once the application's file changes the next
    request is served by a new process and the old one exits; no request
    fails.
    """
    before = children()
    path = os.path.join(peerDir, "app.fcgi")
    shutil.copy(responderBinary, path)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    manager = startManager(peerDir, autoUpdate=True)
    pool = manager.poolFor(path)
    spawned: set[int] = set()
    try:
        headers, _ = await get(pool, "")
        old = int(headers["x-pid"])
        spawned.add(old)
        headers, _ = await get(pool, "")
        assert int(headers["x-pid"]) == old
        os.utime(path, (1_100_000_000, 1_100_000_000))
        headers, _ = await get(pool, "")
        new = int(headers["x-pid"])
        spawned.add(new)
        assert new != old
        await waitFor(lambda: manager.pids(path) == [new], "the old process to end", 10)
        assert not alive(old)
        assert len(events.having(decision="update", appClass=path)) == 1
    finally:
        await stopAndCheck(manager, pool, before, spawned, peerDir)
