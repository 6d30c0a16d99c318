"""
Tests for L{txfastcgi.client} and L{txfastcgi.pool} against real FastCGI
applications: the libfcgi responder (tests/apps/responder.c) under
spawn-fcgi, and php-fpm, on Unix sockets.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any, Callable

import pytest
import pytest_twisted  # type: ignore[import-untyped]
from twisted.web.http import HTTPChannel
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from tests import peers
from txfastcgi.client import FastCGIRequest, RequestResult
from txfastcgi.fcgi.records import STREAM_CHUNK_SIZE
from txfastcgi.pool import ConnectionPool

TIMEOUT = 20.0
"""Seconds any one await may take."""

BIG = 64 * 1024 * 1024
"""Bytes of the large STDOUT and STDIN bodies."""


def getReactor() -> Any:
    """
    The reactor pytest-twisted installed (imported late, see conftest).
    """
    from twisted.internet import reactor

    return reactor


async def bounded(d: Deferred[Any], seconds: float = TIMEOUT) -> Any:
    """
    Await C{d}, failing with a timeout rather than hanging.
    """
    return await d.addTimeout(seconds, getReactor())


class Response:
    """
    Collects a FastCGI response: headers parsed, body hashed (not kept
    when large), STDERR kept.

    @ivar keepBody: keep at most this many body bytes.
    """

    def __init__(self, keepBody: int = 1 << 20) -> None:
        self.keepBody = keepBody
        self.head = b""
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self.bodyLength = 0
        self.digest = hashlib.sha256()
        self.stderr = b""
        self._inHead = True

    def write(self, data: bytes) -> None:
        """
        Take STDOUT.
        """
        if self._inHead:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, _, data = self.head.partition(b"\r\n\r\n")
            self.head = head
            self._inHead = False
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                self.headers[name.strip().lower()] = value.strip()
        self.bodyLength += len(data)
        self.digest.update(data)
        if len(self.body) < self.keepBody:
            self.body += data[: self.keepBody - len(self.body)]

    def writeStderr(self, data: bytes) -> None:
        """
        Take STDERR.
        """
        self.stderr += data

    def header(self, name: str) -> str:
        """
        A response header's value.
        """
        return self.headers[name.lower().encode()].decode()


def responderParams(query: str, **extra: str) -> list[tuple[bytes, bytes]]:
    """
    Params for the libfcgi responder.
    """
    params = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "/app",
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        **extra,
    }
    return [(k.encode(), v.encode()) for k, v in params.items()]


async def call(
    pool: ConnectionPool,
    params: list[tuple[bytes, bytes]],
    body: Any = None,
    response: Response | None = None,
    setup: Callable[[FastCGIRequest], None] | None = None,
) -> tuple[Response, RequestResult]:
    """
    Run one request through C{pool}.
    """
    response = response or Response()
    request = FastCGIRequest(
        params, writeStdout=response.write, writeStderr=response.writeStderr, body=body
    )
    if setup is not None:
        setup(request)
    result = await bounded(pool.request(request))
    return response, result


def vmRSS() -> int:
    """
    This process's resident set size in bytes.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def patternDigest(length: int) -> str:
    """
    SHA-256 of the responder's C{size=N} body.
    """
    block = peers.responderPattern(65536)
    digest = hashlib.sha256()
    full, rest = divmod(length, len(block))
    for _ in range(full):
        digest.update(block)
    digest.update(block[:rest])
    return digest.hexdigest()


@pytest.fixture(autouse=True)
def noDelayedCallsLeft() -> Any:
    """
    Each test leaves no timer behind in the session's reactor (pytest-twisted
    does not check, STYLE.md P12).
    """
    yield
    left = [
        call
        for call in getReactor().getDelayedCalls()
        if call.active()
        and "txfastcgi" in repr(call.func)
        # twisted.web's timers of an HTTP connection (its channel is a
        # txfastcgi.site.DirectWriteChannel): Twisted's, not ours.
        and not isinstance(getattr(call.func, "__self__", None), HTTPChannel)
    ]
    assert left == [], left


@pytest.fixture
def responder(responderBinary: str, peerDir: str) -> Any:
    """
    The libfcgi responder with 4 threads under spawn-fcgi on a unix socket.
    """
    app = peers.spawnResponder(threads=4, directory=peerDir)
    yield app
    app.stop()


async def closePool(pool: ConnectionPool) -> None:
    """
    Close C{pool}, bounded, and let the probe's timer (if any) go.
    """
    await bounded(pool.closeAll())


@pytest_twisted.ensureDeferred
async def test_keepAliveReuse(responder: Any) -> None:
    """
    Sequential requests share one kept connection: the application counts
    one accepted connection, and so does the pool.
    """
    pool = ConnectionPool(getReactor(), responder.endpointDescription)
    try:
        for i in range(1, 11):
            response, result = await call(pool, responderParams(""))
            assert result == RequestResult(0, 0)
            assert response.body == b"Hello, world\n"
            assert response.header("X-Requests") == str(i)
            assert response.header("X-Connections") == "1"
        assert pool.connectionsOpened == 1
        assert pool.requestsServed == 10
        assert pool.requestsReused == 9
        assert pool.retries == 0
    finally:
        await closePool(pool)


@pytest_twisted.ensureDeferred
async def test_keepAliveOff(responder: Any) -> None:
    """
    With keep-alive off each request is a new connection.
    """
    pool = ConnectionPool(getReactor(), responder.endpointDescription, keepAlive=False)
    try:
        for i in range(1, 4):
            response, result = await call(pool, responderParams(""))
            assert response.header("X-Connections") == str(i)
        assert pool.connectionsOpened == 3
    finally:
        await closePool(pool)


@pytest_twisted.ensureDeferred
async def test_staleConnectionRetried(responderBinary: str, peerDir: str) -> None:
    """
    When the application behind a pooled connection goes away (here: it is
    restarted on the same socket), the next request fails on the stale
    connection before any byte and is retried once on a fresh connection,
    which the new process counts as its first.
    """
    socketPath = os.path.join(peerDir, "stale.sock")
    app = peers.spawnResponder(threads=2, socketPath=socketPath)
    pool = ConnectionPool(getReactor(), "unix:" + socketPath, probeValues=False)
    try:
        response, _ = await call(pool, responderParams(""))
        firstPid = response.header("X-Pid")
        assert pool.idleConnections == 1
        # Blocking restart: the reactor does not run, so the pool has not
        # seen the old connection close when the next request starts on it.
        app.stop()
        app = peers.spawnResponder(threads=2, socketPath=socketPath)
        response, result = await call(pool, responderParams(""))
        assert result == RequestResult(0, 0)
        assert response.header("X-Pid") != firstPid
        assert response.header("X-Connections") == "1"
        assert response.header("X-Requests") == "1"
        assert pool.retries == 1
        assert pool.connectionsOpened == 2
        assert pool.requestsServed == 2
    finally:
        await closePool(pool)
        app.stop()


@pytest_twisted.ensureDeferred
async def test_stderrDelivered(responder: Any) -> None:
    """
    STDERR reaches the request's callback.
    """
    pool = ConnectionPool(getReactor(), responder.endpointDescription)
    try:
        response, _ = await call(pool, responderParams("stderr=something+odd"))
        assert response.stderr == b"something+odd\n"
        assert response.body == b"Hello, world\n"
    finally:
        await closePool(pool)


@pytest_twisted.ensureDeferred
async def test_concurrentRequests(responder: Any) -> None:
    """
    Concurrent requests each get a connection up to the cap and all complete.
    """
    pool = ConnectionPool(
        getReactor(), responder.endpointDescription, maxConnections=4, probeValues=False
    )
    try:
        results = await bounded(
            Deferred.fromCoroutine(_gather([call(pool, responderParams("sleep=50")) for _ in range(12)]))
        )
        assert len(results) == 12
        assert pool.connectionsOpened == 4
        assert pool.requestsServed == 12
    finally:
        await closePool(pool)


async def _gather(coroutines: list[Any]) -> list[Any]:
    from twisted.internet.defer import gatherResults

    return await gatherResults([Deferred.fromCoroutine(c) for c in coroutines])  # type: ignore[no-any-return]


async def closedLoopLoad(
    pool: ConnectionPool, clients: int, count: int, query: Callable[[int], str]
) -> tuple[list[Exception], float]:
    """
    C{clients} clients each sending C{count} responder requests one after the
    other (C{query(i)} for the i-th), all bounded by L{TIMEOUT} in total.

    @return: the exceptions requests failed with, and the seconds it took.
    """
    reactor = getReactor()
    errors: list[Exception] = []

    async def client() -> None:
        for i in range(count):
            try:
                response, result = await call(pool, responderParams(query(i)))
                assert result == RequestResult(0, 0)
                assert response.body == b"Hello, world\n"
            except Exception as e:
                errors.append(e)

    start = reactor.seconds()
    await bounded(Deferred.fromCoroutine(_gather([client() for _ in range(clients)])))
    return errors, reactor.seconds() - start


@pytest_twisted.ensureDeferred
async def test_singleWorkerKeepAliveNoStall(responderBinary: str, peerDir: str) -> None:
    """
    A libfcgi responder with one thread serves one connection at a time and
    keeps reading a kept connection after each request.  Four clients send
    25 requests each through a pool of up to 16 connections: requests on
    new connections wait in the listen queue while the worker sits on an
    idle kept connection, until the pool closes that one.  Every request
    succeeds (none waits for the 10 s response timeout), all well inside
    20 s, and kept connections are still reused.
    """
    socketPath = os.path.join(peerDir, "one.sock")
    app = peers.spawnResponder(threads=1, socketPath=socketPath)
    pool = ConnectionPool(
        getReactor(), "unix:" + socketPath, maxConnections=16, responseTimeout=10
    )
    try:
        errors, elapsed = await closedLoopLoad(
            pool, 4, 25, lambda i: "sleep=5" if i % 5 == 0 else ""
        )
        print(
            f"one worker: {elapsed:.2f} s, {pool.connectionsOpened} connections, "
            f"{pool.requestsReused} reused, {pool.stallRescues} rescues, "
            f"errors {errors[:3]}"
        )
        assert errors == []
        assert elapsed < TIMEOUT
        assert pool.requestsServed == 100
        assert pool.requestsFailed == 0
        assert pool.stallRescues > 0
        assert pool.requestsReused >= 50
        assert pool.connectionsOpened < 50
    finally:
        await closePool(pool)
        app.stop()


@pytest_twisted.ensureDeferred
async def test_enoughWorkersNoThrash(responder: Any) -> None:
    """
    With as many responder threads as clients (and the GET_VALUES probe
    holding one thread for its first second), four clients sending 25
    requests each keep exactly one connection each: no connection is closed
    to free a worker.
    """
    pool = ConnectionPool(getReactor(), responder.endpointDescription, maxConnections=16)
    try:
        errors, elapsed = await closedLoopLoad(
            pool, 4, 25, lambda i: "sleep=5" if i % 5 == 0 else ""
        )
        assert errors == []
        assert pool.connectionsOpened == 4
        assert pool.stallRescues == 0
        assert pool.requestsReused == 96
    finally:
        await closePool(pool)


@pytest_twisted.ensureDeferred
async def test_enoughWorkersSlowRequestsNoThrash(responder: Any) -> None:
    """
    The same with requests of 0.7 s, longer than the pool's C{stallGrace}:
    requests on new connections wait that long for their first byte (one
    of them behind the probe), yet no connection is closed.
    """
    pool = ConnectionPool(getReactor(), responder.endpointDescription, maxConnections=16)
    try:
        errors, elapsed = await closedLoopLoad(pool, 4, 3, lambda i: "sleep=700")
        assert errors == []
        assert pool.connectionsOpened == 4
        assert pool.stallRescues == 0
        assert pool.requestsReused == 8
    finally:
        await closePool(pool)


@pytest_twisted.ensureDeferred
async def test_bigStdoutBoundedMemory(responder: Any) -> None:
    """
    64 MiB of STDOUT stream through a consumer that pauses after every
    write and resumes on the next reactor turn: the body arrives intact,
    the request's buffer stays within one read, and memory stays bounded.
    """
    reactor = getReactor()
    pool = ConnectionPool(reactor, responder.endpointDescription, probeValues=False)
    response = Response(keepBody=0)
    peaks = {"rss": vmRSS(), "buffered": 0}
    start = peaks["rss"]
    requests: list[FastCGIRequest] = []

    def write(data: bytes) -> None:
        response.write(data)
        request = requests[0]
        request.pauseProducing()
        peaks["buffered"] = max(peaks["buffered"], request._buffered)
        if response.bodyLength % (4 << 20) < len(data):
            peaks["rss"] = max(peaks["rss"], vmRSS())
        reactor.callLater(0, request.resumeProducing)

    try:
        request = FastCGIRequest(responderParams(f"size={BIG}"), writeStdout=write)
        requests.append(request)
        await bounded(pool.request(request), 60)
        assert response.bodyLength == BIG
        assert response.digest.hexdigest() == patternDigest(BIG)
        assert peaks["buffered"] <= 1 << 20
        assert peaks["rss"] - start < 32 << 20
    finally:
        await closePool(pool)


@pytest_twisted.ensureDeferred
async def test_bigStdinBoundedMemory(responder: Any) -> None:
    """
    A 64 MiB body in a spool file goes out as STDIN in chunks (the file is
    never read whole) and the application sees every byte.
    """
    pool = ConnectionPool(getReactor(), responder.endpointDescription, probeValues=False)
    block = os.urandom(1 << 20)
    expected = hashlib.sha256()
    with tempfile.TemporaryFile() as spool:
        for _ in range(BIG // len(block)):
            spool.write(block)
            expected.update(block)
        spool.seek(0)
        reads: list[int] = []
        original = spool.read

        def read(size: int = -1) -> bytes:
            reads.append(size)
            return original(size)

        spool.read = read  # type: ignore[method-assign]
        start = vmRSS()
        try:
            response, result = await call(
                pool,
                responderParams("echo", REQUEST_METHOD="POST", CONTENT_LENGTH=str(BIG)),
                body=spool,
                response=Response(keepBody=0),
            )
            assert result == RequestResult(0, 0)
            assert response.header("X-Body-Length") == str(BIG)
            assert response.bodyLength == BIG
            assert response.digest.hexdigest() == expected.hexdigest()
            assert max(reads) == STREAM_CHUNK_SIZE
            assert vmRSS() - start < 32 << 20
        finally:
            await closePool(pool)


@pytest_twisted.ensureDeferred
async def test_phpFpmMaxRequests(peerDir: str) -> None:
    """
    php-fpm with C{pm.max_requests = 3} ends its workers (closing their
    connections) every three requests; 100 sequential requests through the
    pool all succeed, stale connections being retried.
    """
    php = peers.phpFpm(peerDir, maxRequests=3, maxChildren=2)
    pool = ConnectionPool(getReactor(), php.endpointDescription)
    params = [(k.encode(), v.encode()) for k, v in php.params().items()]
    try:
        pids = set()
        for _ in range(100):
            response, result = await call(pool, params)
            assert result.protocolStatus == 0
            assert response.body.startswith(b"pid=")
            pids.add(response.header("X-Pid"))
        assert pool.requestsServed == 100
        assert pool.requestsFailed == 0
        assert len(pids) >= 100 // 3
        assert pool.appMultiplexes is False
        print(
            f"php-fpm: {len(pids)} workers, {pool.connectionsOpened} connections, "
            f"{pool.retries} retries, {pool.requestsReused} reused"
        )
    finally:
        await closePool(pool)
        php.stop()


@pytest_twisted.ensureDeferred
async def test_phpFpmPostBody(peerDir: str) -> None:
    """
    php-fpm echoes a POST body sent as STDIN.  (Its error_log goes to a
    file under the harness's configuration, so STDERR is checked with the
    libfcgi responder only.)
    """
    php = peers.phpFpm(peerDir)
    pool = ConnectionPool(getReactor(), php.endpointDescription)
    try:
        params = [
            (k.encode(), v.encode())
            for k, v in php.params(
                QUERY_STRING="echo",
                REQUEST_METHOD="POST",
                CONTENT_LENGTH="11",
                CONTENT_TYPE="text/plain",
            ).items()
        ]
        response, result = await call(pool, params, body=b"hello there")
        assert response.body == b"hello there"
        assert response.header("X-Body-Length") == "11"
    finally:
        await closePool(pool)
        php.stop()


@pytest_twisted.ensureDeferred
async def test_abortOnRealApplication(responder: Any) -> None:
    """
    Cancelling a slow request sends ABORT_REQUEST; libfcgi ignores it, so
    the connection is closed after the grace period; the pool then serves
    the next request on a new connection.
    """
    reactor = getReactor()
    pool = ConnectionPool(
        reactor, responder.endpointDescription, abortGrace=0.2, probeValues=False
    )
    try:
        request = FastCGIRequest(responderParams("sleep=1000"), writeStdout=lambda data: None)
        d = pool.request(request)
        await deferLater(reactor, 0.1, lambda: None)
        d.cancel()
        d.addErrback(lambda f: None)
        await deferLater(reactor, 0.4, lambda: None)
        assert pool.openConnections == 0
        response, result = await call(pool, responderParams(""))
        assert result == RequestResult(0, 0)
        assert pool.connectionsOpened == 2
    finally:
        await closePool(pool)


# --- multiplexing, against txfastcgi's own application server -----------------
#
# Neither libfcgi nor php-fpm multiplexes; txfastcgi.application does, so it
# serves as the peer for FCGI_MPXS_CONNS=1 over a real Unix socket.


def _queryOptions(request: Any) -> dict[str, str]:
    query = dict(request.params).get(b"QUERY_STRING", b"").decode()
    options = {}
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            options[name] = value
    return options


def multiplexingHandler(seen: dict[str, Any]) -> Callable[[Any], Any]:
    """
    A handler for L{txfastcgi.application}: C{wait=MS} answers after MS ms;
    C{stream=N} writes N bytes in 64 KiB pieces as the connection takes
    them.  Records request ids and aborts in C{seen}.
    """
    from twisted.internet.defer import CancelledError

    reactor = getReactor()

    async def handle(request: Any) -> None:
        seen.setdefault("ids", []).append(request.requestId)
        request.notifyAbort().addCallback(
            lambda _: seen.setdefault("aborted", []).append(request.requestId)
        )
        options = _queryOptions(request)
        request.write(b"Content-Type: text/plain\r\n\r\n")
        try:
            if "wait" in options:
                await deferLater(reactor, int(options["wait"]) / 1000, lambda: None)
                request.write(b"done\n")
            if "stream" in options:
                left = int(options["stream"])
                chunk = b"s" * 65536
                while left > 0 and not request.aborted:
                    await request.whenWritable()
                    request.write(chunk[:left])
                    left -= len(chunk)
        except CancelledError:
            pass

    def handler(request: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(handle(request))

    return handler


async def multiplexingApp(peerDir: str, seen: dict[str, Any]) -> tuple[Any, str]:
    """
    Listen with txfastcgi's application server on a Unix socket.
    """
    from txfastcgi.application import FastCGIApplicationFactory

    reactor = getReactor()
    path = os.path.join(peerDir, "mpx.sock")
    factory = FastCGIApplicationFactory(multiplexingHandler(seen), reactor, maxReqs=50)
    port = reactor.listenUNIX(path, factory)
    return port, "unix:" + path


async def learned(pool: ConnectionPool) -> None:
    """
    Run one request, then wait (bounded) until the probe has answered.
    """
    await call(pool, responderParams(""))
    for _ in range(100):
        if pool._probeState != "running":
            break
        await deferLater(getReactor(), 0.01, lambda: None)
    assert pool.multiplexing, pool._probeState


@pytest_twisted.ensureDeferred
async def test_multiplexedRequests(peerDir: str) -> None:
    """
    An application answering FCGI_MPXS_CONNS=1 gets concurrent requests
    interleaved on few connections (ids above 1), all answered.
    """
    seen: dict[str, Any] = {}
    port, address = await multiplexingApp(peerDir, seen)
    pool = ConnectionPool(getReactor(), address, maxRequestsPerConnection=8)
    try:
        await learned(pool)
        results = await bounded(
            Deferred.fromCoroutine(
                _gather([call(pool, responderParams("wait=30")) for _ in range(20)])
            )
        )
        assert all(response.body == b"done\n" for response, _ in results)
        assert pool.connectionsOpened <= 3
        assert max(seen["ids"]) == 8
        assert pool.requestsServed == 21
    finally:
        await closePool(pool)
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_stalledMultiplexedRequestAborted(peerDir: str) -> None:
    """
    On a multiplexed connection, a request whose consumer stays paused is
    aborted (ABORT_REQUEST reaches the application) once its buffer passes
    the limit, while its neighbour streams 4 MiB to completion.
    """
    from txfastcgi.client import ResponseBufferOverflow

    seen: dict[str, Any] = {}
    port, address = await multiplexingApp(peerDir, seen)
    pool = ConnectionPool(
        getReactor(), address, maxConnections=1, maxBufferSize=256 * 1024
    )
    try:
        await learned(pool)
        stalledRequest = FastCGIRequest(
            responderParams("stream=67108864"), writeStdout=lambda data: stalledRequest.pauseProducing()
        )
        stalled = pool.request(stalledRequest)
        moving = Deferred.fromCoroutine(
            call(pool, responderParams("stream=4194304"), response=Response(keepBody=0))
        )
        with pytest.raises(ResponseBufferOverflow):
            await bounded(stalled)
        response, result = await bounded(moving)
        assert response.bodyLength == 4194304
        for _ in range(100):
            if seen.get("aborted"):
                break
            await deferLater(getReactor(), 0.01, lambda: None)
        assert seen["aborted"] == [stalledRequest.requestId]
        assert pool.connectionsOpened == 1
    finally:
        await closePool(pool)
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_requestSentStraightToTheSocket(responder: Any) -> None:
    """
    A request on an idle kept connection is written straight to the socket:
    right after it starts, the transport holds nothing unsent and is not
    waiting for writability (no reactor round trip per request); the
    answer arrives as usual.
    """
    pool = ConnectionPool(getReactor(), responder.endpointDescription)
    try:
        await call(pool, responderParams(""))
        [protocol] = list(pool._idle)
        transport = protocol.transport
        response = Response()
        request = FastCGIRequest(
            responderParams("echo"), writeStdout=response.write, body=b"x" * 5000
        )
        finished = pool.request(request)
        assert transport.dataBuffer == b""
        assert transport._tempDataBuffer == []
        assert transport not in getReactor().getWriters()
        assert await bounded(finished) == RequestResult(0, 0)
        assert response.body == b"x" * 5000
    finally:
        await closePool(pool)
