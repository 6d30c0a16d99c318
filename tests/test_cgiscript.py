# -*- test-case-name: tests.test_cgiscript -*-
"""
Tests for L{txfastcgi.cgiscript}: a CGI script's request body is streamed
to its standard input a chunk at a time, the transfer stops quietly when
the script stops reading and when the client goes away, and its standard
error is logged by lines.

The first tests drive L{StreamingCGIProcessProtocol} with a fake process
transport whose pipe the test drains (deterministic); the last ones run
real scripts through L{GatewayResource} with the real reactor, bounded by
timeouts.
"""

from __future__ import annotations

import gc
import hashlib
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.logger import LogEvent, capturedLogs
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure

from tests.test_exchange import HTTPClient, events
from tests.test_server_e2e import CGI_READER
from txfastcgi.cgiscript import StreamingCGIProcessProtocol
from txfastcgi.config import readConfig
from txfastcgi.gateway import GatewayResource
from txfastcgi.site import GatewaySite

CHUNK = FileSender.CHUNK_SIZE
BIG = 3 * 1024 * 1024 + 123
TIMEOUT = 20

READER = CGI_READER


EARLY = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nearly\\n'\nexit 0\n"
"""A CGI script answering without reading its input."""

SLEEPER = "#!/bin/sh\nexec sleep 30\n"
"""A CGI script that never reads its input nor answers."""


def body(size: int) -> bytes:
    """
    C{size} bytes that are not all alike.
    """
    block = bytes(range(256)) * 16
    return (block * (size // len(block) + 1))[:size]


class RecordingFile:
    """
    A file-like wrapper recording the size of every read.

    @ivar reads: the sizes of the reads, in order.
    @ivar got: the bytes read in all.
    """

    def __init__(self, wrapped: Any) -> None:
        self._wrapped = wrapped
        self.reads: list[int] = []
        self.got = 0

    def read(self, size: int = -1) -> bytes:
        """
        Read from the wrapped file, recording the size.
        """
        self.reads.append(size)
        data: bytes = self._wrapped.read(size)
        self.got += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


class FakeProcess:
    """
    A process transport whose standard input pipe takes what was written
    only when the test calls L{drain}, as L{twisted.internet.process.Process}
    hands its stdin producer to the pipe's writer.

    @ivar written: the writes to standard input, in order.
    @ivar pending: bytes written since the last L{drain}.
    @ivar stdinClosed: whether standard input was closed.
    @ivar lost: whether C{loseConnection} was called.
    @ivar signals: the signals sent.
    """

    pid: int | None = 4242

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.pending = 0
        self.maxPending = 0
        self.producer: Any = None
        self.stdinClosed = False
        self.lost = False
        self.signals: list[str] = []

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        Register the stdin producer; a pull producer is asked for data.
        """
        assert self.producer is None
        if self.stdinClosed:
            producer.stopProducing()
            return
        self.producer = producer
        if not streaming:
            producer.resumeProducing()

    def unregisterProducer(self) -> None:
        """
        Forget the stdin producer.
        """
        self.producer = None

    def write(self, data: bytes) -> None:
        """
        Write to standard input.
        """
        assert not self.stdinClosed
        self.written.append(data)
        self.pending += len(data)
        self.maxPending = max(self.maxPending, self.pending)

    def drain(self) -> None:
        """
        The script read what was written: ask the producer for more.
        """
        self.pending = 0
        if self.producer is not None:
            self.producer.resumeProducing()

    def scriptClosedStdin(self) -> None:
        """
        The pipe broke (EPIPE): the producer is stopped, as a lost
        L{twisted.internet.abstract.FileDescriptor} stops its producer.
        """
        self.stdinClosed = True
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.stopProducing()

    def closeStdin(self) -> None:
        """
        Close standard input.
        """
        self.stdinClosed = True

    def loseConnection(self) -> None:
        """
        Close every pipe.
        """
        self.lost = True
        self.stdinClosed = True

    def signalProcess(self, signal: str) -> None:
        """
        Record a signal.
        """
        self.signals.append(signal)

    def pauseProducing(self) -> None:
        """
        Stop reading the script's output.
        """

    def resumeProducing(self) -> None:
        """
        Read the script's output again.
        """


class SpawnRecorder:
    """
    A reactor recording C{spawnProcess} calls.
    """

    def __init__(self) -> None:
        self.spawned: list[Any] = []

    def spawnProcess(self, protocol: Any, *args: Any, **kwargs: Any) -> None:
        """
        Record the protocol.
        """
        self.spawned.append(protocol)


def cgiSite(root: Path, reactor: Any, scripts: dict[str, str]) -> GatewaySite:
    """
    A site serving C{scripts} (name: text) from C{/cgi-bin/} in C{root}.
    """
    (root / "docs").mkdir()
    (root / "cgi-bin").mkdir()
    for name, text in scripts.items():
        path = root / "cgi-bin" / name
        path.write_text(text)
        os.chmod(path, 0o755)
    (root / "httpd.conf").write_text(
        f"ServerRoot {root}\nDocumentRoot {root}/docs\n"
        f"ScriptAlias /cgi-bin/ {root}/cgi-bin/\n"
    )
    config = readConfig(str(root / "httpd.conf"), environ={})
    return GatewaySite(GatewayResource(config, pools={}, reactor=reactor))


def problems(logged: Sequence[LogEvent]) -> list[LogEvent]:
    """
    The events that report an error or carry a failure.
    """
    return [
        e
        for e in logged
        if "log_failure" in e or getattr(e.get("log_level"), "name", "") in ("error", "critical")
    ]


def started(
    tmp_path: Path, data: bytes, script: str = "reader"
) -> tuple[HTTPClient, StreamingCGIProcessProtocol, RecordingFile, FakeProcess]:
    """
    POST C{data} to a CGI script and connect its protocol to a
    L{FakeProcess}, the request's spool wrapped in a L{RecordingFile}.
    """
    reactor = SpawnRecorder()
    site = cgiSite(tmp_path.resolve(), reactor, {script: "#!/bin/sh\n"})
    client = HTTPClient(site)
    client.get(b"/cgi-bin/" + script.encode(), method=b"POST", body=data)
    [protocol] = reactor.spawned
    assert isinstance(protocol, StreamingCGIProcessProtocol)
    spool = RecordingFile(protocol.request.content)
    protocol.request.content = spool
    process = FakeProcess()
    protocol.makeConnection(process)  # type: ignore[arg-type]
    return client, protocol, spool, process


def test_bodyStreamedInChunks(tmp_path: Path) -> None:
    """
    A multi-MiB body goes to standard input one chunk at a time: the spool
    is read a chunk at a time, and only when the pipe has taken the
    previous chunk; standard input is closed after the last byte.
    """
    data = body(BIG)
    client, protocol, spool, process = started(tmp_path, data)
    assert process.written == [data[:CHUNK]]
    assert spool.reads == [CHUNK]
    for _ in range(BIG // CHUNK + 2):
        if process.stdinClosed:
            break
        assert not process.stdinClosed
        process.drain()
    assert process.stdinClosed
    assert process.producer is None
    assert b"".join(process.written) == data
    assert max(spool.reads) <= CHUNK
    assert process.maxPending <= CHUNK
    protocol.outReceived(b"Content-Type: text/plain\r\n\r\nok")
    protocol.processEnded(Failure(ProcessDone(0)))
    response = client.response()
    assert (response.status, response.body) == (200, b"ok")


def test_emptyBodyClosesStdinAtOnce(tmp_path: Path) -> None:
    """
    Without a body, standard input is closed as the process starts.
    """
    client, protocol, spool, process = started(tmp_path, b"")
    assert process.stdinClosed
    assert process.written == []
    assert process.producer is None


def test_scriptStopsReading(tmp_path: Path) -> None:
    """
    A script that closes its standard input (or exits) before reading the
    whole body stops the transfer with one info line and nothing worse;
    its response is served.
    """
    data = body(BIG)
    with capturedLogs() as logged:
        client, protocol, spool, process = started(tmp_path, data)
        process.drain()
        process.scriptClosedStdin()
        reads = len(spool.reads)
        process.drain()
        protocol.outReceived(b"Content-Type: text/plain\r\n\r\nearly")
        protocol.processEnded(Failure(ProcessDone(0)))
        gc.collect()
    assert len(spool.reads) == reads == 2
    assert len(events(logged, "closed its input")) == 1
    assert problems(logged) == []
    response = client.response()
    assert (response.status, response.body) == (200, b"early")


def test_oversizedHeadRefused(tmp_path: Path) -> None:
    """
    A response head still not ended after C{maxHeaderBytes} bytes is
    refused: 502, one error line naming the script and the reason, the
    script ended; nothing it writes after that reaches the client.
    """
    with capturedLogs() as logged:
        client, protocol, spool, process = started(tmp_path, b"")
        limit = protocol.maxHeaderBytes
        protocol.outReceived(b"X-Long: " + b"a" * (limit // 2))
        assert client.transport.value() == b""
        protocol.outReceived(b"a" * (limit // 2))
        protocol.outReceived(b"\r\n\r\nlate body")
        protocol.processEnded(Failure(ProcessTerminated(signal=15)))
    response = client.response()
    assert response.status == 502
    assert b"late body" not in client.transport.value()
    assert b"aaaa" not in client.transport.value()
    assert process.signals == ["TERM"] and process.lost
    [refusal] = events(logged, "malformed response head")
    assert str(limit) in refusal["reason"]
    assert len(problems(logged)) == 1


def test_headUpToTheLimitAccepted(tmp_path: Path) -> None:
    """
    A head of up to C{maxHeaderBytes} bytes, in pieces, is accepted.
    """
    client, protocol, spool, process = started(tmp_path, b"")
    limit = protocol.maxHeaderBytes
    head = b"Content-Type: text/plain\r\nX-Long: " + b"b" * (limit - 40)
    protocol.outReceived(head[: limit // 2])
    protocol.outReceived(head[limit // 2 :])
    protocol.outReceived(b"\r\n\r\nfine")
    protocol.processEnded(Failure(ProcessDone(0)))
    response = client.response()
    assert (response.status, response.body) == (200, b"fine")
    assert process.signals == []


def answered(tmp_path: Path, output: bytes, path: bytes = b"/cgi-bin/reader") -> Any:
    """
    The response to a GET of a CGI script that writes C{output} and exits.
    """
    reactor = SpawnRecorder()
    root = tmp_path.resolve()
    site = cgiSite(root, reactor, {"reader": "#!/bin/sh\n"})
    client = HTTPClient(site)
    client.get(path)
    [protocol] = reactor.spawned
    protocol.makeConnection(FakeProcess())
    protocol.outReceived(output)
    protocol.processEnded(Failure(ProcessDone(0)))
    return client.response()


def test_statusAndHeaders(tmp_path: Path) -> None:
    """
    A script's Status and headers are applied as for a FastCGI
    application: repeated headers kept, hop-by-hop headers dropped, LF-only
    line ends accepted.
    """
    response = answered(
        tmp_path,
        b"Status: 404 Not Here\nContent-Type: text/plain\nX-A: 1\nX-A: 2\n"
        b"Connection: close\nKeep-Alive: timeout=5\nTransfer-Encoding: gzip\n\nmissing",
    )
    assert (response.status, response.reason, response.body) == (404, b"Not Here", b"missing")
    assert response.header(b"X-A") == [b"1", b"2"]
    assert response.header(b"Connection") == []
    assert response.header(b"Keep-Alive") == []
    assert response.header(b"Transfer-Encoding") == [b"chunked"]


def test_clientRedirect(tmp_path: Path) -> None:
    """
    A full-URL Location without Status is a 302 with a short body naming
    it.
    """
    response = answered(tmp_path, b"Location: http://example.com/x?a=1\r\n\r\n")
    assert response.status == 302
    assert response.header(b"Location") == [b"http://example.com/x?a=1"]
    assert b'href="http://example.com/x?a=1"' in response.body


def test_localRedirect(tmp_path: Path) -> None:
    """
    A local-path Location is an internal redirect: the site serves a GET
    for that path (here another script, with the query kept) and that is
    the response; what the first script wrote after its head is dropped,
    and its end finishes nothing.
    """
    reactor = SpawnRecorder()
    site = cgiSite(tmp_path.resolve(), reactor, {"reader": "#!/bin/sh\n", "other": "#!/bin/sh\n"})
    client = HTTPClient(site)
    client.get(b"/cgi-bin/reader", method=b"POST", body=b"form")
    [first] = reactor.spawned
    first.makeConnection(FakeProcess())
    first.outReceived(b"Location: /cgi-bin/other?x=1\r\n\r\nnot this")
    [_, second] = reactor.spawned
    assert second.request is first.request
    assert (second.request.method, second.request.uri) == (b"GET", b"/cgi-bin/other?x=1")
    second.makeConnection(FakeProcess())
    first.outReceived(b" nor this")
    first.processEnded(Failure(ProcessDone(0)))
    second.outReceived(b"Content-Type: text/plain\r\n\r\nfrom other")
    second.processEnded(Failure(ProcessDone(0)))
    response = client.response()
    assert (response.status, response.body) == (200, b"from other")


def test_contentLengthOverrun(tmp_path: Path) -> None:
    """
    Bytes beyond the script's Content-Length are dropped (logged once), so
    they cannot read as the next response on a kept connection.
    """
    with capturedLogs() as logged:
        response = answered(tmp_path, b"Content-Length: 3\r\n\r\nabcdef")
    assert (response.status, response.body, response.complete) == (200, b"abc", True)
    [warning] = events(logged, "more than its Content-Length")
    assert warning["contentLength"] == 3


def test_contentLengthShort(tmp_path: Path) -> None:
    """
    A script that ends short of its Content-Length gets the client
    connection aborted (the truncation is visible), logged.
    """
    reactor = SpawnRecorder()
    site = cgiSite(tmp_path.resolve(), reactor, {"reader": "#!/bin/sh\n"})
    client = HTTPClient(site)
    with capturedLogs() as logged:
        client.get(b"/cgi-bin/reader")
        [protocol] = reactor.spawned
        protocol.makeConnection(FakeProcess())
        protocol.outReceived(b"Content-Length: 10\r\n\r\nabc")
        protocol.processEnded(Failure(ProcessDone(0)))
    assert client.closed
    assert client.response().complete is False
    [error] = events(logged, "cut short")
    assert error["missing"] == 7


def test_malformedHead(tmp_path: Path) -> None:
    """
    A header line without a colon is answered 502, the reason logged.
    """
    with capturedLogs() as logged:
        response = answered(tmp_path, b"Content-Type: text/plain\r\nno colon here\r\n\r\nx")
    assert response.status == 502
    [refusal] = events(logged, "malformed response head")
    assert refusal["script"].endswith("reader")


def test_clientGoesAway(tmp_path: Path) -> None:
    """
    When the client goes away mid-transfer, the transfer stops, the pipes
    are closed and the script gets SIGTERM; its end is logged at info
    level only.
    """
    data = body(BIG)
    with capturedLogs() as logged:
        client, protocol, spool, process = started(tmp_path, data)
        process.drain()
        client.disconnect()
        assert process.signals == ["TERM"]
        assert process.lost
        assert process.producer is None
        reads = len(spool.reads)
        process.drain()
        assert len(spool.reads) == reads
        protocol.processEnded(Failure(ProcessTerminated(signal=15)))
        gc.collect()
    assert len(events(logged, "client went away")) == 1
    assert problems(logged) == []


def test_requestLostWithoutStopProducing(tmp_path: Path) -> None:
    """
    A lost request (its finish notification failing) ends the script even
    if the channel did not stop its producer first.
    """
    client, protocol, spool, process = started(tmp_path, body(BIG))
    client.protocol.connectionLost(Failure(ProcessDone(0)))
    assert process.signals == ["TERM"]
    assert process.producer is None


def test_stderrLoggedByLines(tmp_path: Path) -> None:
    """
    Standard error is logged a line at a time with the script and the URI;
    a partial line longer than C{maxStderrLine} is logged without waiting
    for its newline; nothing is kept for the end of the script but a
    partial last line.
    """
    with capturedLogs() as logged:
        client, protocol, spool, process = started(tmp_path, b"")
        protocol.maxStderrLine = 8
        protocol.errReceived(b"one\r\ntw")
        protocol.errReceived(b"o\n0123456789abcdefXY")
        assert protocol.errortext == b""
        protocol.errReceived(b"tail")
        protocol.outReceived(b"Content-Type: text/plain\r\n\r\nok")
        protocol.processEnded(Failure(ProcessDone(0)))
    lines = [(e["line"], e["script"], e["uri"]) for e in events(logged, "stderr")]
    script = str(tmp_path.resolve() / "cgi-bin" / "reader")
    assert lines == [
        (line, script, "/cgi-bin/reader")
        for line in ["one", "two", "0123456789abcdefXY", "tail"]
    ]
    assert events(logged, "Errors from CGI") == []


# -- real scripts


class SpawningReactor:
    """
    The real reactor's C{spawnProcess}, wrapping each request's spool in a
    L{RecordingFile} first and remembering the protocol and the spool;
    C{ended} fires with the reason's exception when the script ends.
    """

    def __init__(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.protocols: list[StreamingCGIProcessProtocol] = []
        self.spools: list[RecordingFile] = []
        self.spawned: Deferred[StreamingCGIProcessProtocol] = Deferred()
        self.ended: Deferred[BaseException] = Deferred()

    def spawnProcess(self, protocol: Any, *args: Any, **kwargs: Any) -> Any:
        """
        Spawn the script.
        """
        spool = RecordingFile(protocol.request.content)
        protocol.request.content = spool
        self.spools.append(spool)
        processEnded = protocol.processEnded

        def ended(reason: Failure) -> None:
            processEnded(reason)
            self.ended.callback(reason.value)

        protocol.processEnded = ended
        self.protocols.append(protocol)
        process = self.reactor.spawnProcess(protocol, *args, **kwargs)
        self.spawned.callback(protocol)
        return process


def within(d: Deferred[Any], reactor: Any) -> Deferred[Any]:
    """
    C{d}, failing after L{TIMEOUT} seconds.
    """
    return d.addTimeout(TIMEOUT, reactor)


@pytest_twisted.ensureDeferred
async def test_realScriptGetsBigBody(tmp_path: Path) -> None:
    """
    A real script reading C{CONTENT_LENGTH} bytes gets a multi-MiB body
    intact, read from the spool a chunk at a time.
    """
    spawner = SpawningReactor()
    site = cgiSite(tmp_path.resolve(), spawner, {"reader": READER.format(python=sys.executable)})
    data = body(BIG)
    client = HTTPClient(site)
    client.get(b"/cgi-bin/reader", method=b"POST", body=data)
    await within(client.currentRequest().notifyFinish(), spawner.reactor)
    response = client.response()
    assert response.status == 200
    assert response.body == b"%d %s\n" % (BIG, hashlib.sha256(data).hexdigest().encode())
    [spool] = spawner.spools
    assert max(spool.reads) <= CHUNK
    assert sum(1 for size in spool.reads if size) >= BIG // CHUNK


@pytest_twisted.ensureDeferred
async def test_realScriptExitsWithoutReading(tmp_path: Path) -> None:
    """
    A real script that answers and exits without reading a multi-MiB body
    (more than a pipe holds): the response arrives, the transfer stops with
    one info line, and no error is logged.
    """
    spawner = SpawningReactor()
    site = cgiSite(tmp_path.resolve(), spawner, {"early": EARLY})
    client = HTTPClient(site)
    with capturedLogs() as logged:
        client.get(b"/cgi-bin/early", method=b"POST", body=body(BIG))
        await within(client.currentRequest().notifyFinish(), spawner.reactor)
        gc.collect()
    response = client.response()
    assert (response.status, response.body) == (200, b"early\n")
    [spool] = spawner.spools
    assert spool.got < BIG
    assert len(events(logged, "closed its input")) == 1
    assert problems(logged) == []


@pytest_twisted.ensureDeferred
async def test_realClientGoesAway(tmp_path: Path) -> None:
    """
    A client going away while a real script (not reading) is being sent a
    multi-MiB body: the transfer stops and the script is ended by SIGTERM,
    with nothing worse than info lines logged.
    """
    spawner = SpawningReactor()
    site = cgiSite(tmp_path.resolve(), spawner, {"sleeper": SLEEPER})
    client = HTTPClient(site)
    with capturedLogs() as logged:
        client.get(b"/cgi-bin/sleeper", method=b"POST", body=body(BIG))
        await within(spawner.spawned, spawner.reactor)
        client.disconnect()
        reason = await within(spawner.ended, spawner.reactor)
        gc.collect()
    assert isinstance(reason, ProcessTerminated)
    assert reason.signal == 15
    [spool] = spawner.spools
    assert spool.got < BIG
    assert len(events(logged, "client went away")) == 1
    assert problems(logged) == []

