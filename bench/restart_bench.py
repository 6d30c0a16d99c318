#!/usr/bin/env python3
"""
How the gateway rides out the SIGKILL of a managed FastCGI process.

The figure (from the issue): time from a managed process's SIGKILL to the
first request served by its replacement, with C{-restart-delay 0} and C{1},
and the number of failed requests during that window under a steady load of
16 concurrent clients (goal: none beyond those in flight on the killed
process).

Set-up, per run (a fresh server each run, so no restart history carries
over):

  - the whole gateway path, in this process, built the way C{twistd -n
    fastcgi --config FILE} builds it (L{txfastcgi.tap.Options} and
    L{txfastcgi.tap.makeService}): a generated httpd.conf with one
    C{AppClass} (the libfcgi test responder, C{tests/apps/responder.c},
    single-threaded, compiled by L{tests.peers.buildResponder}) with
    C{-processes P -restart-delay D}, served at C{/app} through
    C{FastCGIResource} and the class's C{ConnectionPool} (whose
    C{maxConnections} the service sets to C{-processes});
  - the load in a separate process (this script with C{--load-worker}, plain
    asyncio, no Twisted) so that it does not share the gateway's reactor:
    C{--clients} (16) keep-alive HTTP/1.1 clients, each sending C{GET
    /app?sleep=MS} in a loop (the responder sleeps C{--sleep-ms} before
    answering, so a request is in the application most of the time);
  - after C{--warmup} seconds of load, B{kill 1}: SIGKILL to one process of
    the class, which by then has lived longer than the restart delay; the
    first response carrying the replacement's C{X-Pid} is awaited; then at
    once B{kill 2}: SIGKILL to that replacement, i.e. less than the restart
    delay after the class's last start, so that C{-restart-delay} is in
    force (the policy measures the delay from the class's most recent start:
    a process that dies long after it started is restarted at once whatever
    the delay); the same measurement again, then C{--settle} seconds more
    of load before the server is stopped.

Per kill:

  - C{spawn}: ms from the SIGKILL to the supervisor's "restarted" event;
  - C{first}: ms from the SIGKILL to the first HTTP response (as the client
    received it) carrying the replacement's pid;
  - C{fail}: HTTP requests that failed (non-200, a wrong body, or a broken
    connection) from the kill up to the next kill or the end of the run,
    with their kinds;
  - C{inflt}: FastCGI requests in flight on the killed process at the
    moment of the kill: requests active (sent, not finished) on pool
    connections that the application side then closed (the kernel closes
    exactly the connections the dead process had accepted; connections
    still in the listen queue of the class's socket, which the supervisor
    keeps open, are not lost);
  - C{retry}: requests the pool retried on a fresh connection in that
    period (its stale-connection rule);
  - C{http@k}: HTTP requests outstanding at the kill (sent, not answered);
  - C{maxlat}: the longest latency among requests outstanding at the kill
    (kill 2 follows kill 1 by a few tens of ms, so requests outstanding at
    kill 1 are mostly outstanding at kill 2 too: read this on kill 2's row);
  - C{base}: the median latency in the second before kill 1, for scale.

Figures are medians over C{--runs}; failure kinds are summed over runs.

Usage::

    .venv/bin/python bench/restart_bench.py [--runs 3] [--clients 16]
        [--sleep-ms 10] [--processes 1 2] [--delays 0 1] [--verbose]

Everything started is stopped in C{finally} blocks: the server (the
supervisor SIGTERMs/SIGKILLs its processes and removes the socket files), the
load process, and the temporary directory; the script then checks that no
child process and no socket file is left.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELLO = b"Hello, world\n"
CLIENT_TIMEOUT = 20.0
"""Seconds one HTTP request may take in the load process."""


# ---------------------------------------------------------------------------
# The load process (asyncio only)


async def _readResponse(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    close = headers.get("connection", "").lower() == "close"
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = await reader.read()
        close = True
    return status, headers, body, close


async def _loadMain(port: int, clients: int, target: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def watchStdin() -> None:
        sys.stdin.buffer.read()  # until the parent closes it
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watchStdin, daemon=True).start()
    records: list[tuple[float, float, str, str]] = []
    seen: set[str] = set()
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()

    async def client() -> None:
        writer: asyncio.StreamWriter | None = None
        reader: asyncio.StreamReader | None = None
        while not stop.is_set():
            sent = time.monotonic()
            pid = ""
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                assert reader is not None
                writer.write(request)
                status, headers, body, close = await asyncio.wait_for(
                    _readResponse(reader), CLIENT_TIMEOUT
                )
                pid = headers.get("x-pid", "")
                if status == 200 and body == HELLO:
                    outcome = "ok"
                elif status == 200:
                    outcome = f"HTTP 200, wrong body ({len(body)} bytes)"
                else:
                    outcome = f"HTTP {status}"
                if close:
                    writer.close()
                    writer = None
            except Exception as e:
                outcome = f"connection: {type(e).__name__}"
                if writer is not None:
                    writer.close()
                writer = None
            done = time.monotonic()
            records.append((sent, done, outcome, pid))
            if pid and pid not in seen:
                seen.add(pid)
                sys.stdout.write(f"PID {pid} {done!r}\n")
                sys.stdout.flush()
            if outcome != "ok":
                # Do not spin on a gateway that refuses connections.
                await asyncio.sleep(0.01)
        if writer is not None:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    sys.stdout.write("RECORDS " + json.dumps(records) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------
# The gateway side (Twisted)


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def childrenOf(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.add(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


class Bench:
    """
    One gateway-side harness, shared by the runs (one reactor).
    """

    def __init__(self, reactor: Any, args: argparse.Namespace, responder: str) -> None:
        self.reactor = reactor
        self.args = args
        self.responder = responder
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.restarts: dict[int, float] = {}
        self.spawned: set[int] = set()

    # log observer (installed once, for every run)
    def __call__(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        if event.get("appClass") is not None and "restart" in event and event.get("pid"):
            self.spawned.add(int(event["pid"]))
            if event.get("restart"):
                self.restarts[int(event["pid"])] = now
        ns = str(event.get("log_namespace", ""))
        if ns.startswith("txfastcgi"):
            self.events.append((now, event))
        if self.args.verbose:
            from twisted.logger import LogLevel, formatEvent

            level = event.get("log_level")
            if level is not None and level >= LogLevel.info and ns.startswith("txfastcgi"):
                print(f"  [{now:.3f}] {formatEvent(event)}", file=sys.stderr)

    async def sleep(self, seconds: float) -> None:
        from twisted.internet.task import deferLater

        await deferLater(self.reactor, seconds, lambda: None)

    async def waitFor(self, predicate: Any, what: str, seconds: float = 20.0) -> None:
        deadline = time.monotonic() + seconds
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            await self.sleep(0.005)

    async def run(self, processes: int, delay: float) -> list[dict[str, Any]]:
        """
        One run: a fresh server, load, two kills.  Returns one dict per kill.
        """
        from twisted.internet.defer import Deferred
        from twisted.internet.protocol import ProcessProtocol

        from txfastcgi import tap

        tmp = tempfile.mkdtemp(prefix="rstb-", dir="/tmp")  # short: unix socket paths
        docroot = os.path.join(tmp, "htdocs")
        os.mkdir(docroot)
        app = os.path.join(docroot, "app")
        shutil.copy2(self.responder, app)
        os.chmod(app, 0o755)
        port = freePort()
        confPath = os.path.join(tmp, "httpd.conf")
        with open(confPath, "w") as f:
            f.write(
                f"Listen 127.0.0.1:{port}\n"
                f"DocumentRoot {docroot}\n"
                f"FastCgiIpcDir {tmp}/ipc\n"
                f"AppClass {app} -processes {processes} -restart-delay {delay:g}\n"
                f"<Location /app>\nSetHandler fastcgi-script\n</Location>\n"
            )
        service = None
        load: Any = None
        socketPaths: list[str] = []
        runSpawned: set[int] = set()
        spawnedBefore = set(self.spawned)
        try:
            options = tap.Options()
            options.parseOptions(["--config", confPath])
            service = tap.makeService(options, self.reactor)
            service.privilegedStartService()
            service.startService()
            supervisor = service.supervisor
            pool = service.pools[app]
            address = supervisor.addressFor(app)
            if address.kind == "unix":
                socketPaths.append(address.path)

            # Note when the application side closes a pool connection.
            lost: dict[Any, float] = {}
            original = pool._connectionLost

            def connectionLost(protocol: Any) -> None:
                lost.setdefault(protocol, time.monotonic())
                original(protocol)

            pool._connectionLost = connectionLost

            # The load process.
            firstSeen: dict[int, float] = {}
            output: dict[str, Any] = {"records": None}
            ended: Deferred[None] = Deferred()

            class Load(ProcessProtocol):
                buffer = b""

                def outReceived(self, data: bytes) -> None:
                    self.buffer += data
                    while b"\n" in self.buffer:
                        line, self.buffer = self.buffer.split(b"\n", 1)
                        if line.startswith(b"PID "):
                            _, pid, at = line.split()
                            firstSeen.setdefault(int(pid), float(at))
                        elif line.startswith(b"RECORDS "):
                            output["records"] = json.loads(line[8:])

                def errReceived(self, data: bytes) -> None:
                    sys.stderr.write(data.decode(errors="replace"))

                def processEnded(self, reason: Any) -> None:
                    ended.callback(None)

            load = Load()
            self.reactor.spawnProcess(
                load,
                sys.executable,
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--load-worker",
                    str(port),
                    str(self.args.clients),
                    f"/app?sleep={self.args.sleep_ms}",
                ],
                env=dict(os.environ),
                childFDs={0: "w", 1: "r", 2: "r"},
            )
            await self.waitFor(lambda: bool(firstSeen), "the first response")
            await self.sleep(self.args.warmup)

            kills: list[dict[str, Any]] = []
            victim = sorted(supervisor.pids(app))[0]
            for number in (1, 2):
                pidsBefore = set(supervisor.pids(app))
                runSpawned |= pidsBefore
                active = {p: p.activeCount for p in pool._connections}
                counters = (pool.retries, pool.requestsFailed, pool.rejected, pool.stallRescues)
                eventIndex = len(self.events)
                lost.clear()
                killedAt = time.monotonic()
                os.kill(victim, signal.SIGKILL)
                await self.waitFor(
                    lambda: any(p not in pidsBefore for p in self.restarts if self.restarts[p] >= killedAt),
                    "the replacement's start",
                )
                [newPid] = [p for p in self.restarts if p not in pidsBefore and self.restarts[p] >= killedAt]
                runSpawned.add(newPid)
                await self.waitFor(lambda: newPid in firstSeen, "the replacement's first response")
                if number == 2:
                    # Kill 1's window ends with that first response and kill 2
                    # follows at once; after kill 2, wait for the dust to settle.
                    await self.sleep(self.args.settle)
                victimConnections = [p for p in lost if not p.closedLocally]
                kills.append(
                    dict(
                        kill=number,
                        killedAt=killedAt,
                        victim=victim,
                        newPid=newPid,
                        spawnMs=(self.restarts[newPid] - killedAt) * 1000,
                        firstMs=(firstSeen[newPid] - killedAt) * 1000,
                        inFlightOnVictim=sum(active.get(p, 0) for p in victimConnections),
                        victimConnections=len(victimConnections),
                        retries=pool.retries - counters[0],
                        poolFailed=pool.requestsFailed - counters[1],
                        rejected=pool.rejected - counters[2],
                        stallRescues=pool.stallRescues - counters[3],
                        eventRange=(eventIndex, None),
                    )
                )
                if kills[-2:-1]:
                    kills[-2]["eventRange"] = (kills[-2]["eventRange"][0], eventIndex)
                victim = newPid

            # Stop the load, collect its records.
            load.transport.closeStdin()
            await ended
            records = output["records"] or []
        finally:
            if load is not None and load.transport is not None and load.transport.pid:
                try:
                    load.transport.signalProcess("KILL")
                except Exception:
                    pass
            if service is not None:
                try:
                    await service.stopService().addTimeout(30, self.reactor)
                except Exception as e:
                    print(f"stopping the server failed: {e!r}", file=sys.stderr)
            runSpawned |= self.spawned - spawnedBefore
            for pid in runSpawned:
                try:
                    os.kill(pid, 0)
                except OSError:
                    continue
                # Still there (not a zombie of ours: the supervisor reaps): kill it.
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        state = f.read().rsplit(")", 1)[1].split()[0]
                except OSError:
                    continue
                if state != "Z":
                    print(f"left-over process {pid}: SIGKILL", file=sys.stderr)
                    os.kill(pid, signal.SIGKILL)
            shutil.rmtree(tmp, ignore_errors=True)
        leftSockets = [p for p in socketPaths if os.path.exists(p)]
        if leftSockets:
            print(f"left-over sockets: {leftSockets}", file=sys.stderr)

        # Attribute each request to the kill it follows.
        for index, kill in enumerate(kills):
            start = kill["killedAt"]
            end = kills[index + 1]["killedAt"] if index + 1 < len(kills) else float("inf")
            failed = [r for r in records if r[2] != "ok" and start <= r[1] < end]
            kill["failed"] = len(failed)
            kill["failures"] = Counter(r[2] for r in failed)
            outstanding = [r for r in records if r[0] <= start < r[1]]
            kill["httpOutstanding"] = len(outstanding)
            kill["maxLatencyMs"] = max(((r[1] - r[0]) * 1000 for r in outstanding), default=0.0)
            steady = [(r[1] - r[0]) * 1000 for r in records if start - 1.0 <= r[1] < kills[0]["killedAt"]]
            kill["baseLatencyMs"] = statistics.median(steady) if steady else 0.0
            first, last = kill["eventRange"]
            window = self.events[first:last]
            messages: Counter[str] = Counter()
            from twisted.logger import LogLevel, formatEvent

            for _, event in window:
                level = event.get("log_level")
                if level is not None and level >= LogLevel.warn or "stale" in str(event.get("log_format", "")):
                    text = formatEvent(event)
                    for pid in (kill["victim"], kill["newPid"]):
                        text = text.replace(str(pid), "<pid>")
                    text = text.replace(tmp, "<tmp>").replace(f".{os.getpid()}", ".<pid>")
                    messages[text[:160]] += 1
            kill["messages"] = messages
            del kill["eventRange"]
        before = [r for r in records if r[2] != "ok" and kills and r[1] < kills[0]["killedAt"]]
        for kill in kills:
            kill["failedBeforeKill1"] = len(before)
            kill["requests"] = len(records)
        return kills


def printTable(
    results: dict[tuple[int, float, int], list[dict[str, Any]]], args: argparse.Namespace
) -> None:
    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.0f}" if values else "-"

    header = (
        f"{'procs':>5} {'delay':>5} {'kill':>4} {'lived':>9} {'spawn ms':>8} {'first ms':>8} "
        f"{'fail':>4} {'inflt':>5} {'retry':>5} {'http@k':>6} {'maxlat':>6} {'base':>4}  per-run fail/inflt/retry"
    )
    print(header)
    print("-" * len(header))
    for (processes, delay, number), kills in sorted(results.items()):
        lived = ">warmup" if number == 1 else "~1st resp"
        perRun = " ".join(f"{k['failed']}/{k['inFlightOnVictim']}/{k['retries']}" for k in kills)
        print(
            f"{processes:>5} {delay:>5g} {number:>4} {lived:>9} "
            f"{med([k['spawnMs'] for k in kills]):>8} {med([k['firstMs'] for k in kills]):>8} "
            f"{med([k['failed'] for k in kills]):>4} {med([k['inFlightOnVictim'] for k in kills]):>5} "
            f"{med([k['retries'] for k in kills]):>5} {med([k['httpOutstanding'] for k in kills]):>6} "
            f"{med([k['maxLatencyMs'] for k in kills]):>6} {med([k['baseLatencyMs'] for k in kills]):>4}  {perRun}"
        )
    print()
    print("Failure kinds (HTTP, summed over runs) and gateway log lines at warn+ (and")
    print("the pool's stale-retry line), per configuration and kill:")
    for (processes, delay, number), kills in sorted(results.items()):
        failures: Counter[str] = Counter()
        messages: Counter[str] = Counter()
        for k in kills:
            failures.update(k["failures"])
            messages.update(k["messages"])
        extra = sum(k["rejected"] for k in kills), sum(k["stallRescues"] for k in kills)
        print(
            f"  procs={processes} delay={delay:g} kill={number}: "
            f"failures {dict(failures) or 'none'}; pool rejected {extra[0]}, stall rescues {extra[1]}"
        )
        for text, count in messages.most_common(6):
            print(f"      {count:>3} x {text}")
    pre = sum(k["failedBeforeKill1"] for (_, _, n), ks in results.items() if n == 1 for k in ks)
    total = sum(k["requests"] for (_, _, n), ks in results.items() if n == 1 for k in ks)
    print(f"\nRequests in all runs: {total}; failures before the first kill: {pre}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--load-worker"]:
        port, clients, target = int(argv[1]), int(argv[2]), argv[3]
        asyncio.run(_loadMain(port, clients, target))
        return 0

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--sleep-ms", type=int, default=10, help="responder sleep per request")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--delays", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before kill 1")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds after the replacement's first response")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    sys.path.insert(0, REPO)
    from tests.peers import buildResponder

    responder = buildResponder()

    from twisted.internet.defer import Deferred
    from twisted.internet.task import react
    from twisted.logger import globalLogBeginner

    results: dict[tuple[int, float, int], list[dict[str, Any]]] = {}

    async def body(reactor: Any) -> None:
        bench = Bench(reactor, args, responder)
        globalLogBeginner.beginLoggingTo([bench], redirectStandardIO=False)
        for run in range(args.runs):
            for processes in args.processes:
                for delay in args.delays:
                    kills = await bench.run(processes, delay)
                    for kill in kills:
                        results.setdefault((processes, delay, kill["kill"]), []).append(kill)
                    print(
                        f"run {run + 1} procs={processes} delay={delay:g}: "
                        + "; ".join(
                            f"kill {k['kill']}: first {k['firstMs']:.0f} ms, "
                            f"failed {k['failed']}, in flight {k['inFlightOnVictim']}, "
                            f"retried {k['retries']}"
                            for k in kills
                        ),
                        file=sys.stderr,
                        flush=True,
                    )

    import twisted

    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        react(lambda reactor: Deferred.fromCoroutine(body(reactor)))
    except SystemExit as e:
        if e.code:
            raise
    finally:
        left = childrenOf(os.getpid())
        if left:
            print(f"left-over children: {sorted(left)}", file=sys.stderr)

    print(
        f"restart_bench: {started:%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"Twisted {twisted.__version__}, {os.cpu_count()} CPUs, runs={args.runs}, "
        f"clients={args.clients}, responder sleep={args.sleep_ms} ms, warmup={args.warmup} s"
    )
    print(
        "kill 1: process lived > warmup (restart delay not in force); kill 2: the replacement, "
        "killed right after its first response (delay in force)"
    )
    print(
        "spawn/first: ms from SIGKILL to the supervisor's restart / to the first HTTP response "
        "from the new pid; fail: failed HTTP requests; inflt: FastCGI requests in flight on the "
        "killed process; retry: pool retries; http@k: HTTP requests outstanding at the kill; "
        "maxlat: their longest latency (ms; for kill 1 it includes the wait through kill 2, which follows within ms); base: median latency in the second before kill 1 (ms).  Medians."
    )
    print()
    printTable(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
