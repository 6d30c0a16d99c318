#!/usr/bin/env python3
# -*- test-case-name: tests.test_client_peers -*-
"""
Requests per second through txfastcgi's FastCGI client stack.

Builds /work/shared/bench/apps/hello.c (into a temporary directory, never
under the shared tree), starts it with spawn-fcgi on a Unix socket with
C{-t 32} responder threads, and drives it through L{FastCGIClientProtocol}
and L{ConnectionPool}: keep-alive on and off, 1 and 16 concurrent requests.
Each cell runs a few seconds after a warm-up; the median of 3 runs is
printed as a table.

Usage::

    .venv/bin/python bench/client_bench.py [--seconds 3] [--runs 3]
        [--profile] [--hello PATH]

C{--profile} also runs one keep-alive, 1-concurrent cell under cProfile and
prints where the CPU time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HELLO_SOURCE = "/work/shared/bench/apps/hello.c"


def buildHello(directory: str) -> str:
    """
    Compile hello.c into C{directory}; return the binary's path.
    """
    binary = os.path.join(directory, "hello")
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-o", binary, HELLO_SOURCE, "-lfcgi", "-pthread"],
        check=True,
    )
    return binary


def spawnHello(
    binary: str, socketPath: str, threads: int = 32, cpu: int | None = None
) -> subprocess.Popen[bytes]:
    """
    Start hello under C{spawn-fcgi -n} on C{socketPath} (pinned to C{cpu}
    if given) and wait until it accepts connections.
    """
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    process = subprocess.Popen(
        [*pin, "spawn-fcgi", "-n", "-s", socketPath, "--", binary, "-t", str(threads)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(socketPath)
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("hello did not start")


PARAMS = [
    (b"REQUEST_METHOD", b"GET"),
    (b"SCRIPT_NAME", b"/hello"),
    (b"QUERY_STRING", b""),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"),
    (b"SERVER_NAME", b"localhost"),
    (b"SERVER_PORT", b"8080"),
    (b"REMOTE_ADDR", b"127.0.0.1"),
    (b"GATEWAY_INTERFACE", b"CGI/1.1"),
]


async def measure(
    reactor: Any,
    start: Callable[[Any], Any],
    concurrency: int,
    seconds: float,
    warmup: float,
) -> tuple[float, float]:
    """
    Run C{concurrency} loops calling C{start(request)} for C{warmup} then
    C{seconds} seconds.

    @return: completed requests per second in the measured window, and this
        process's CPU microseconds per request (less sensitive than the rate
        to other load on the machine).
    """
    from twisted.internet.defer import Deferred, gatherResults

    from txfastcgi.client import FastCGIRequest

    state = {"count": 0, "measuring": False, "stop": False}
    sink = bytearray()

    def write(data: bytes) -> None:
        if len(data) > 10_000_000:
            sink.clear()

    async def loop() -> None:
        while not state["stop"]:
            request = FastCGIRequest(PARAMS, writeStdout=write)
            await start(request)
            if state["measuring"]:
                state["count"] += 1

    def sleep(t: float) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        reactor.callLater(t, d.callback, None)
        return d

    loops = gatherResults([Deferred.fromCoroutine(loop()) for _ in range(concurrency)])
    await sleep(warmup)
    state["measuring"] = True
    began = time.perf_counter()
    cpuBegan = time.process_time()
    await sleep(seconds)
    state["measuring"] = False
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpuBegan
    count = state["count"]
    state["stop"] = True
    await loops.addTimeout(30, reactor)
    return count / elapsed, cpu / max(count, 1) * 1e6


async def cell(
    reactor: Any, socketPath: str, mode: str, concurrency: int, seconds: float, warmup: float
) -> tuple[tuple[float, float], dict[str, int]]:
    """
    One measurement: C{mode} is C{"pool-keepalive"}, C{"pool-close"} or
    C{"protocol"} (one FastCGIClientProtocol, keep-alive, no pool).
    """
    from twisted.internet.endpoints import UNIXClientEndpoint
    from twisted.internet.protocol import Factory

    from txfastcgi.client import FastCGIClientProtocol
    from txfastcgi.pool import ConnectionPool

    if mode == "protocol":
        endpoint = UNIXClientEndpoint(reactor, socketPath)
        factory = Factory.forProtocol(lambda: FastCGIClientProtocol(reactor))
        protocol = await endpoint.connect(factory)
        rate = await measure(reactor, protocol.request, concurrency, seconds, warmup)
        await protocol.close()
        return rate, {"connections": 1}
    pool = ConnectionPool(
        reactor,
        "unix:" + socketPath,
        keepAlive=(mode == "pool-keepalive"),
        maxConnections=16,
    )
    rate = await measure(reactor, pool.request, concurrency, seconds, warmup)
    await pool.closeAll().addTimeout(10, reactor)
    return rate, {
        "connections": pool.connectionsOpened,
        "requests": pool.requestsServed,
        "retries": pool.retries,
    }


def main() -> int:
    """
    Build, spawn, measure, print.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--hello", help="a prebuilt hello binary")
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin this process to CPU 0 and hello to CPU 1",
    )
    options = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    pinned = not options.no_pin and len(cpus) >= 2 and shutil.which("taskset") is not None
    if pinned:
        os.sched_setaffinity(0, {cpus[0]})

    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    loadBefore = " ".join(open("/proc/loadavg").read().split()[:3])
    workdir = tempfile.mkdtemp(prefix="txf-bench-")
    binary = options.hello or buildHello(workdir)
    socketPath = os.path.join(workdir, "hello.sock")
    app = spawnHello(binary, socketPath, cpu=cpus[1] if pinned else None)
    rows: list[tuple[str, int, float, list[float], float, dict[str, int]]] = []
    profileText = ""

    cells = [
        ("pool, keep-alive", "pool-keepalive", 1),
        ("pool, keep-alive", "pool-keepalive", 16),
        ("pool, no keep-alive", "pool-close", 1),
        ("pool, no keep-alive", "pool-close", 16),
        ("protocol only, keep-alive", "protocol", 1),
    ]

    async def run() -> None:
        nonlocal profileText
        for label, mode, concurrency in cells:
            rates = []
            cpus = []
            stats: dict[str, int] = {}
            for _ in range(options.runs):
                (rate, cpu), stats = await cell(
                    reactor, socketPath, mode, concurrency, options.seconds, options.warmup
                )
                rates.append(rate)
                cpus.append(cpu)
            rows.append(
                (
                    label,
                    concurrency,
                    statistics.median(rates),
                    rates,
                    statistics.median(cpus),
                    stats,
                )
            )
        if options.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await cell(reactor, socketPath, "pool-keepalive", 1, options.seconds, 0.2)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(18)
            profileText = out.getvalue()

    failure: list[Any] = []

    def start() -> None:
        d = ensureDeferred(run())
        d.addErrback(failure.append)
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    try:
        reactor.callWhenRunning(start)  # type: ignore[attr-defined]
        reactor.run()  # type: ignore[attr-defined]
    finally:
        os.killpg(app.pid, signal.SIGTERM)
        app.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)
    if failure:
        failure[0].printTraceback()
        return 1

    print(
        f"hello.c under spawn-fcgi -t 32, unix socket; {options.seconds:g} s per run "
        f"after {options.warmup:g} s warm-up, median of {options.runs}; Python "
        f"{sys.version.split()[0]}, reactor {type(reactor).__name__}"  # type: ignore[attr-defined]
        f"; {'client on CPU %d, hello on CPU %d' % (cpus[0], cpus[1]) if pinned else 'not pinned'}"
        f"; load average before: {loadBefore}"
    )
    print()
    print(
        "| client | concurrent | req/s (median) | runs | client CPU µs/req | "
        "connections opened (last run) |"
    )
    print("|---|---:|---:|---|---:|---:|")
    for label, concurrency, median, rates, cpu, stats in rows:
        runs = " / ".join(f"{r:.0f}" for r in rates)
        print(
            f"| {label} | {concurrency} | {median:.0f} | {runs} | {cpu:.0f} | "
            f"{stats.get('connections', 0)} |"
        )
    if profileText:
        print()
        print(profileText)
    return 0


if __name__ == "__main__":
    sys.exit(main())
