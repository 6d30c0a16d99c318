#!/usr/bin/env python3
"""
CPU cost of the gateway's FastCGI work per request, in process.

A real L{GatewaySite} serves requests over a C{StringTransport} (no sockets):
C{/app} is a L{FastCGIResource} whose L{ConnectionPool} connects to an
instant fake application (it answers every request with the same canned
STDOUT and END_REQUEST records as soon as our empty STDIN record arrives);
C{/plain} is a plain in-process resource that sends the same response head
and body.  The difference between the two is what the FastCGI gateway
costs on top of Twisted's own HTTP handling: building the environment,
encoding the records, the pool and client protocol, decoding the answer,
parsing the CGI head and copying it onto the HTTP response.

Usage::

    .venv/bin/python bench/gateway_inproc.py [--requests 20000] [--runs 5]
        [--profile] [--top 30] [--stub]

Each figure is CPU time (C{time.process_time}) per request; the minimum of
C{--runs} runs is the figure to quote (the median is shown too, the machine
may be shared and noisy).  C{--profile} runs C{/app} under cProfile and
prints the C{--top} entries by own time, then the txfastcgi functions by
cumulative time.  C{--stub} also times C{/stub}: a resource whose pool is a
stub that answers at once, without the codec, pool or client protocol.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import statistics
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.defer import Deferred, succeed  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.web.resource import Resource  # noqa: E402
from twisted.web.server import Request  # noqa: E402

from txfastcgi.client import FastCGIRequest, RequestResult  # noqa: E402
from txfastcgi.fcgi.constants import RecordType  # noqa: E402
from txfastcgi.fcgi.records import encodeEndRequestBody, encodeRecord  # noqa: E402
from txfastcgi.pool import ConnectionPool  # noqa: E402
from txfastcgi.resource import FastCGIResource  # noqa: E402
from txfastcgi.site import GatewaySite  # noqa: E402

BODY = (
    b"Content-Type: text/plain\r\nX-Pid: 1234\r\nX-Requests: 5\r\n"
    b"X-Connections: 1\r\nX-Body-Length: 0\r\nContent-Length: 13\r\n\r\n"
    b"Hello, world\n"
)
"""What the fake application writes to STDOUT."""

ANSWER = (
    encodeRecord(RecordType.STDOUT, 1, BODY)
    + encodeRecord(RecordType.STDOUT, 1, b"")
    + encodeRecord(RecordType.END_REQUEST, 1, encodeEndRequestBody(0, 0))
)
"""The fake application's whole answer, in one read."""

_END_STDIN = encodeRecord(RecordType.STDIN, 1, b"")

REQUEST = (
    b"GET %s HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench\r\n"
    b"Accept: */*\r\n\r\n"
)
"""The HTTP request, with C{%s} for the path."""

_SERVER = IPv4Address("TCP", "127.0.0.1", 80)
_CLIENT = IPv4Address("TCP", "127.0.0.1", 54321)


class _AppTransport(StringTransport):
    """
    The fake application's side of a connection: it notes the protocol
    once the request's empty STDIN record has arrived (the request is
    complete), and the bench answers it then.
    """

    def __init__(self, protocol: Any, pending: list[Any]) -> None:
        super().__init__()
        self._protocol = protocol
        self._pending = pending

    def write(self, data: bytes) -> None:
        if _END_STDIN in data:
            self._pending.append(self._protocol)

    def writeSequence(self, seq: Any) -> None:
        self.write(b"".join(seq))


class _Endpoint:
    """
    A client endpoint that connects at once to a fake application.
    """

    def __init__(self, pending: list[Any]) -> None:
        self._pending = pending

    def connect(self, factory: Any) -> Deferred[Any]:
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(_AppTransport(protocol, self._pending))
        return succeed(protocol)


class _Plain(Resource):
    """
    The same response as the fake application's, made in process.
    """

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain")
        for name, value in (
            (b"X-Pid", b"1234"),
            (b"X-Requests", b"5"),
            (b"X-Connections", b"1"),
            (b"X-Body-Length", b"0"),
        ):
            request.responseHeaders.addRawHeader(name, value)
        return b"Hello, world\n"


class _StubPool:
    """
    A pool that answers every request at once, without any FastCGI.
    """

    address = "stub"

    def submit(self, request: FastCGIRequest) -> None:
        request.writeStdout(BODY)
        request._complete(RequestResult(0, 0))


class Bench:
    """
    A site with C{/app}, C{/plain} and C{/stub}, and one HTTP connection to it.
    """

    def __init__(self) -> None:
        self.pending: list[Any] = []
        self.pool = ConnectionPool(Clock(), _Endpoint(self.pending), probeValues=False)
        root = Resource()
        root.putChild(b"app", FastCGIResource(self.pool))
        root.putChild(b"plain", _Plain())
        root.putChild(b"stub", FastCGIResource(_StubPool()))  # type: ignore[arg-type]
        site = GatewaySite(root)
        site.log = lambda request: None  # type: ignore[method-assign]
        self.protocol = site.buildProtocol(_CLIENT)
        self.transport = StringTransport(
            hostAddress=_SERVER, peerAddress=_CLIENT, lenient=True
        )
        self.protocol.makeConnection(self.transport)

    def one(self, path: bytes) -> None:
        """
        Serve one request for C{path}.
        """
        self.protocol.dataReceived(REQUEST % (path,))
        pending = self.pending
        while pending:
            pending.pop().dataReceived(ANSWER)
        self.transport.clear()

    def check(self, path: bytes) -> None:
        """
        Serve one request and check that it was answered in full.
        """
        self.transport.clear()
        self.protocol.dataReceived(REQUEST % (path,))
        while self.pending:
            self.pending.pop().dataReceived(ANSWER)
        response = self.transport.value()
        if not (response.startswith(b"HTTP/1.1 200 OK\r\n") and response.endswith(
            b"Hello, world\n"
        )):
            raise SystemExit(f"{path!r} answered unexpectedly: {response!r}")
        self.transport.clear()

    def run(self, path: bytes, count: int) -> float:
        """
        @return: CPU microseconds per request over C{count} requests.
        """
        one = self.one
        gc.collect()
        started = time.process_time()
        for _ in range(count):
            one(path)
        return (time.process_time() - started) / count * 1e6


def measure(bench: Bench, path: bytes, count: int, runs: int) -> list[float]:
    """
    @return: the per-request figure of each of C{runs} runs.
    """
    return [bench.run(path, count) for _ in range(runs)]


def profile(run: Callable[[], object], top: int) -> None:
    """
    Run C{run} under cProfile and print where the time went.
    """
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumtime").print_stats("txfastcgi", top)


def main() -> None:
    """
    Measure, print, and optionally profile.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--stub", action="store_true")
    options = parser.parse_args()

    bench = Bench()
    paths = [b"/plain", b"/app"] + ([b"/stub"] if options.stub else [])
    for path in paths:
        bench.check(path)
        for _ in range(500):
            bench.one(path)
    results: dict[bytes, list[float]] = {path: [] for path in paths}
    # Interleave the runs, so that a noisy moment hits every path alike.
    for _ in range(options.runs):
        for path in paths:
            results[path].extend(measure(bench, path, options.requests, 1))
    best = {path: min(figures) for path, figures in results.items()}
    median = {path: statistics.median(figures) for path, figures in results.items()}
    for path in paths:
        print(
            f"{path.decode():7s} min {best[path]:6.1f} us   median {median[path]:6.1f} us"
            f"   ({options.runs} runs of {options.requests})"
        )
    print(
        f"in-process: /plain {best[b'/plain']:.1f} us, /app {best[b'/app']:.1f} us, "
        f"FastCGI work {best[b'/app'] - best[b'/plain']:.1f} us/request (min); "
        f"median {median[b'/app'] - median[b'/plain']:.1f}"
    )
    if options.stub:
        print(
            f"stub pool (resource, exchange, environment, head parser; no codec, "
            f"pool or client): {best[b'/stub'] - best[b'/plain']:.1f} us over /plain"
        )
    if options.profile:
        count = options.requests // 4
        profile(lambda: [bench.one(b"/app") for _ in range(count)], options.top)


if __name__ == "__main__":
    main()
