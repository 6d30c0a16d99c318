#!/usr/bin/env python3
"""
The cost of a dynamic application beside the same binary as a static
AppClass, in the same run.

Set-up: the libfcgi test responder (C{tests/apps/responder.c}, compiled by
L{tests.peers.buildResponder}) as

  - B{static}: an C{AppClass} with C{-processes P} under
    L{txfastcgi.supervisor.ApplicationSupervisor}, reached through a
    L{txfastcgi.pool.ConnectionPool} built as the service builds it
    (C{maxConnections = P}, the pool's keep-alive defaults);
  - B{dynamic}: the same file under
    L{txfastcgi.dynamic.DynamicApplicationManager} (C{FCGIConfig
    -maxClassProcesses P -startDelay 1}), reached through
    L{txfastcgi.dynamic.DynamicApplicationManager.poolFor} (kept
    connections, one per process), and, for comparison in the same run,
    through the same L{txfastcgi.dynamic.DynamicPool} with
    C{keepAlive=False} (one connection per request, as dynamic pools were
    before they kept connections).

Figures (FastCGI requests from this process, no HTTP in front; each a
median over C{--runs}):

  - C{first ms}: latency of the first request.  Dynamic: the process start
    is included (the class does not exist before).  Static: the process was
    started by the supervisor before the request (as at server start-up).
  - C{req/s}: steady state, C{--clients} concurrent clients sending
    C{GET ?sleep=0} in a loop for C{--seconds} after a one-second warm-up.
  - C{procs}: processes of the class at the end.

Rows: static with C{P} processes (with kept connections, and with one
connection per request) and with one; dynamic as the load made it (fast
requests never wait C{startDelay}, so it stays at one process: compare with
static P=1); dynamic first grown to C{P} processes by C{2P} concurrent 1.5 s
requests (compare with static P=4); each dynamic row also without kept
connections.

Run: C{.venv/bin/python bench/dynamic_bench.py [--runs 3] [--clients 4]
[--seconds 3] [--processes 4]}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.defer import Deferred, gatherResults  # noqa: E402
from twisted.internet.task import deferLater, react  # noqa: E402

from tests import peers  # noqa: E402
from txfastcgi.appclass import AppClassConfig, IpcDirConfig  # noqa: E402
from txfastcgi.client import FastCGIRequest  # noqa: E402
from txfastcgi.config.model import DynamicConfig  # noqa: E402
from txfastcgi.dynamic import DynamicApplicationManager, DynamicPool  # noqa: E402
from txfastcgi.pool import ConnectionPool  # noqa: E402
from txfastcgi.supervisor import ApplicationSupervisor  # noqa: E402

PARAMS = [
    (b"REQUEST_METHOD", b"GET"),
    (b"SCRIPT_NAME", b"/app"),
    (b"QUERY_STRING", b"sleep=0"),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"),
]


async def one(pool: Any) -> None:
    """
    One request; raise if it does not end with status 0.
    """
    chunks: list[bytes] = []
    request = FastCGIRequest(PARAMS, writeStdout=chunks.append)
    result = await pool.request(request)
    if result.appStatus != 0 or b"X-Pid" not in b"".join(chunks):
        raise RuntimeError(f"bad response {result!r}")


async def throughput(reactor: Any, pool: Any, clients: int, seconds: float) -> float:
    """
    Requests per second with C{clients} closed-loop clients.
    """
    count = 0
    deadline = 0.0

    async def client() -> None:
        nonlocal count
        while reactor.seconds() < deadline:
            await one(pool)
            count += 1

    deadline = reactor.seconds() + 1.0
    await gatherResults([Deferred.fromCoroutine(client()) for _ in range(clients)])
    count = 0
    started = time.perf_counter()
    deadline = reactor.seconds() + seconds
    await gatherResults([Deferred.fromCoroutine(client()) for _ in range(clients)])
    return count / (time.perf_counter() - started)


async def runStatic(
    reactor: Any,
    path: str,
    args: argparse.Namespace,
    processes: int,
    keepAlive: bool = True,
) -> tuple[float, float, int]:
    """
    One static run with C{processes} processes: first-request latency,
    req/s, processes.
    """
    ipcDir = tempfile.mkdtemp(prefix="dynb-", dir="/tmp")
    supervisor = ApplicationSupervisor(
        reactor,
        [AppClassConfig(path, processes=processes)],
        ipcDir=IpcDirConfig(ipcDir),
        statusSignal=None,
    )
    supervisor.privilegedStartService()
    supervisor.startService()
    pool = ConnectionPool(
        reactor,
        supervisor.addressFor(path),
        maxConnections=processes,
        keepAlive=keepAlive,
        probeValues=keepAlive,
    )
    try:
        await deferLater(reactor, 0.3, lambda: None)  # processes up
        started = time.perf_counter()
        await one(pool)
        first = (time.perf_counter() - started) * 1000
        rate = await throughput(reactor, pool, args.clients, args.seconds)
        return first, rate, len(supervisor.pids(path))
    finally:
        await pool.closeAll()
        await supervisor.stopService()
        os.rmdir(ipcDir)


async def grow(pool: Any, count: int) -> None:
    """
    Make the class grow to C{count} processes: C{2 * count} concurrent
    requests of 1.5 s (they wait past C{startDelay}).
    """
    slow = [(n, b"sleep=1500" if n == b"QUERY_STRING" else v) for n, v in PARAMS]

    async def request() -> None:
        await pool.request(FastCGIRequest(slow, writeStdout=lambda data: None))

    await gatherResults([Deferred.fromCoroutine(request()) for _ in range(2 * count)])


async def runDynamic(
    reactor: Any,
    path: str,
    args: argparse.Namespace,
    grown: bool,
    keepAlive: bool = True,
) -> tuple[float, float, int]:
    """
    One dynamic run: first-request latency (start included), req/s,
    processes; with C{grown}, the class is first grown to C{--processes}
    by slow requests (the kill policy does not run within the run).
    """
    ipcDir = tempfile.mkdtemp(prefix="dynb-", dir="/tmp")
    manager = DynamicApplicationManager(
        reactor,
        DynamicConfig(maxClassProcesses=args.processes, startDelay=1, minProcesses=0),
        ipcDir=IpcDirConfig(ipcDir),
    )
    manager.privilegedStartService()
    manager.startService()
    if keepAlive:
        pool = manager.poolFor(path)
    else:
        pool = DynamicPool(
            manager,
            path,
            maxConnections=args.processes,
            keepAlive=False,
            multiplex=False,
            probeValues=False,
            stallGrace=None,
            connectTimeout=3600.0,
        )
    try:
        started = time.perf_counter()
        await one(pool)
        first = (time.perf_counter() - started) * 1000
        if grown:
            await grow(pool, args.processes)
        rate = await throughput(reactor, pool, args.clients, args.seconds)
        return first, rate, manager.processCount(path)
    finally:
        await pool.closeAll()
        await manager.stopService()
        os.rmdir(ipcDir)


async def main(reactor: Any, args: argparse.Namespace) -> None:
    """
    Run both set-ups C{--runs} times, interleaved, and print the medians.
    """
    path = peers.buildResponder()
    P = args.processes
    names = [
        f"static P={P}",
        f"static P={P} no keep",
        "static P=1",
        "dynamic",
        "dynamic no keep",
        f"dynamic grown to {P}",
        f"dyn. grown {P} no keep",
    ]
    results: dict[str, list[tuple[float, float, int]]] = {n: [] for n in names}
    for _ in range(args.runs):
        results[names[0]].append(await runStatic(reactor, path, args, P))
        results[names[1]].append(await runStatic(reactor, path, args, P, False))
        results[names[2]].append(await runStatic(reactor, path, args, 1))
        results[names[3]].append(await runDynamic(reactor, path, args, False))
        results[names[4]].append(await runDynamic(reactor, path, args, False, False))
        results[names[5]].append(await runDynamic(reactor, path, args, True))
        results[names[6]].append(await runDynamic(reactor, path, args, True, False))
    print(
        f"responder {path}; {args.clients} clients, {args.seconds} s, "
        f"P={args.processes}, medians of {args.runs} runs"
    )
    print(f"{'':20} {'first ms':>9} {'req/s':>9} {'procs':>6}")
    for name, rows in results.items():
        first = statistics.median(r[0] for r in rows)
        rate = statistics.median(r[1] for r in rows)
        procs = statistics.median(r[2] for r in rows)
        print(f"{name:20} {first:9.2f} {rate:9.0f} {procs:6.0f}")


def parse() -> argparse.Namespace:
    """
    @return: the command-line options.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--processes", type=int, default=4)
    return parser.parse_args()


if __name__ == "__main__":
    options = parse()
    react(lambda reactor: Deferred.fromCoroutine(main(reactor, options)))
