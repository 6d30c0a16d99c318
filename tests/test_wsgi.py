"""
Tests for L{txfastcgi.wsgi}: WSGI applications served over FastCGI.

Most tests run the application synchronously: a L{ManualThreadPool} keeps the
call until the test has fed the whole request, then runs it in the test
thread, and L{SynchronousReactorThreads} runs "from thread" calls at once (as
Twisted's own C{test_wsgi} does).  The backpressure tests use one real thread
and a reactor stand-in whose queue the test pumps, with bounded waits.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from typing import Any, Callable, Iterator

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from txfastcgi.application import FastCGIApplicationFactory, FastCGIApplicationProtocol
from txfastcgi.fcgi.constants import RecordType, Role
from txfastcgi.fcgi.records import (
    Record,
    decodeEndRequestBody,
    encodeBeginRequestBody,
    encodePairs,
    encodeRecord,
    readRecords,
)
from txfastcgi.wsgi import WSGIHandler, responseHead

PEER = IPv4Address("TCP", "127.0.0.1", 40000)


class ManualThreadPool:
    """
    Keeps the functions given to C{callInThread} until L{runAll}.
    """

    def __init__(self) -> None:
        self.calls: list[Callable[[], None]] = []

    def callInThread(self, f: Callable[..., Any], *a: Any, **kw: Any) -> None:
        """
        Keep the call.
        """
        self.calls.append(lambda: f(*a, **kw))

    def runAll(self) -> None:
        """
        Run the kept calls in this thread.
        """
        calls, self.calls = self.calls, []
        for call in calls:
            call()


class SynchronousReactorThreads:
    """
    Runs "from thread" calls at once, in the calling thread.
    """

    def callFromThread(self, f: Callable[..., Any], *a: Any, **kw: Any) -> None:
        """
        Call C{f} now.
        """
        f(*a, **kw)


class ThreadPerCallPool:
    """
    Runs each C{callInThread} in a new daemon thread.
    """

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def callInThread(self, f: Callable[..., Any], *a: Any, **kw: Any) -> None:
        """
        Start a thread for C{f}.
        """
        thread = threading.Thread(target=f, args=a, kwargs=kw, daemon=True)
        self.threads.append(thread)
        thread.start()


class QueueReactorThreads:
    """
    Queues "from thread" calls for the test thread (the stand-in reactor
    thread) to run with L{pump}.
    """

    def __init__(self) -> None:
        self.queue: queue.Queue[Callable[[], None]] = queue.Queue()

    def callFromThread(self, f: Callable[..., Any], *a: Any, **kw: Any) -> None:
        """
        Queue the call.
        """
        self.queue.put(lambda: f(*a, **kw))

    def pump(self, until: Callable[[], bool], timeout: float = 10.0) -> None:
        """
        Run queued calls until C{until()} is true.

        @raise AssertionError: after C{timeout} seconds.
        """
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the application thread")
            try:
                call = self.queue.get(timeout=0.01)
            except queue.Empty:
                continue
            call()

    def settle(self, seconds: float = 0.2) -> None:
        """
        Run queued calls for a while (to let a thread reach a blocking point).
        """
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.queue.get(timeout=0.01)()
            except queue.Empty:
                pass


def requestBytes(
    requestId: int = 1,
    role: int = Role.RESPONDER,
    params: dict[bytes, bytes] | None = None,
    body: bytes | None = b"",
) -> bytes:
    """
    BEGIN_REQUEST, PARAMS and (unless C{body} is None) a STDIN stream.
    """
    if params is None:
        params = {b"REQUEST_METHOD": b"GET", b"PATH_INFO": b"/x"}
    out = encodeRecord(RecordType.BEGIN_REQUEST, requestId, encodeBeginRequestBody(role, 1))
    if params:
        out += encodeRecord(RecordType.PARAMS, requestId, encodePairs(params.items()))
    out += encodeRecord(RecordType.PARAMS, requestId)
    if body is not None:
        if body:
            out += encodeRecord(RecordType.STDIN, requestId, body)
        out += encodeRecord(RecordType.STDIN, requestId)
    return out


class WSGITestsMixin:
    """
    Connects a L{WSGIHandler} to a L{StringTransport}.
    """

    def serve(
        self, application: Any, reactor: Any = None, pool: Any = None, highWater: int = 256 * 1024
    ) -> tuple[FastCGIApplicationProtocol, StringTransport, Any]:
        """
        A connection to a factory serving C{application}.
        """
        pool = pool if pool is not None else ManualThreadPool()
        reactor = reactor if reactor is not None else SynchronousReactorThreads()
        handler = WSGIHandler(reactor, pool, application, highWater=highWater)
        factory = FastCGIApplicationFactory(handler, Clock(), highWater=highWater)
        proto = factory.buildProtocol(PEER)
        assert proto is not None
        transport = StringTransport(peerAddress=PEER)
        proto.makeConnection(transport)
        return proto, transport, pool

    def records(self, transport: StringTransport) -> list[Record]:
        """
        Take the records written so far.
        """
        out = readRecords(transport.value())
        transport.clear()
        return out

    def stream(self, records: list[Record], recordType: int) -> bytes:
        """
        A stream's content.
        """
        return b"".join(r.content for r in records if r.type == recordType)

    def end(self, records: list[Record]) -> tuple[int, int] | None:
        """
        The END_REQUEST body, if any.
        """
        for r in records:
            if r.type == RecordType.END_REQUEST:
                return decodeEndRequestBody(r.content)
        return None


class EnvironTests(WSGITestsMixin, SynchronousTestCase):
    """
    The WSGI environ.
    """

    def environFor(self, params: dict[bytes, bytes], role: int = Role.RESPONDER) -> dict[str, Any]:
        """
        Run an application that keeps its environ.
        """
        seen: dict[str, Any] = {}

        def app(environ: dict[str, Any], startResponse: Any) -> list[bytes]:
            seen.update(environ)
            startResponse("200 OK", [])
            return []

        proto, transport, pool = self.serve(app)
        proto.dataReceived(requestBytes(role=role, params=params))
        if role == Role.FILTER:
            proto.dataReceived(encodeRecord(RecordType.DATA, 1, b"d") + encodeRecord(RecordType.DATA, 1))
        pool.runAll()
        return seen

    def test_paramsAreLatin1Strings(self) -> None:
        """
        PARAMS become native strings decoded as latin-1, with the WSGI keys.
        """
        environ = self.environFor(
            {b"REQUEST_METHOD": b"POST", b"PATH_INFO": b"/caf\xe9", b"HTTP_X": b"y"}
        )
        self.assertEqual(environ["REQUEST_METHOD"], "POST")
        self.assertEqual(environ["PATH_INFO"], "/caf\xe9")
        self.assertEqual(environ["HTTP_X"], "y")
        self.assertEqual(environ["wsgi.version"], (1, 0))
        self.assertEqual(environ["wsgi.url_scheme"], "http")
        self.assertEqual(environ["FCGI_ROLE"], "RESPONDER")
        for key in ("SCRIPT_NAME", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL"):
            self.assertIsInstance(environ[key], str)

    def test_https(self) -> None:
        """
        C{HTTPS=on} makes the URL scheme https.
        """
        self.assertEqual(self.environFor({b"HTTPS": b"on"})["wsgi.url_scheme"], "https")

    def test_roles(self) -> None:
        """
        C{FCGI_ROLE} names the role; a Filter gets its DATA as
        C{txfastcgi.data}.
        """
        self.assertEqual(self.environFor({}, Role.AUTHORIZER)["FCGI_ROLE"], "AUTHORIZER")
        environ = self.environFor({}, Role.FILTER)
        self.assertEqual(environ["FCGI_ROLE"], "FILTER")
        self.assertEqual(environ["txfastcgi.data"].read(), b"d")

    def test_responseHead(self) -> None:
        """
        Status and headers become a CGI response head; CR/LF in a header is
        refused.
        """
        self.assertEqual(
            responseHead("404 Not Found", [("Content-Type", "text/plain"), ("X", "1")]),
            b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nX: 1\r\n\r\n",
        )
        self.assertRaises(ValueError, responseHead, "200 OK", [("X", "a\r\nEvil: 1")])
        self.assertRaises(ValueError, responseHead, "OK", [])


class ResponseTests(WSGITestsMixin, SynchronousTestCase):
    """
    Responses, input, errors, close and abort.
    """

    def test_iterable(self) -> None:
        """
        A response iterable is written after the head; empty blocks are
        skipped; close() is called.
        """
        closed: list[bool] = []

        class Body:
            def __iter__(self) -> Iterator[bytes]:
                yield b"hello "
                yield b""
                yield b"world"

            def close(self) -> None:
                closed.append(True)

        def app(environ: Any, startResponse: Any) -> Body:
            startResponse("200 OK", [("Content-Type", "text/plain")])
            return Body()

        proto, transport, pool = self.serve(app)
        proto.dataReceived(requestBytes())
        pool.runAll()
        records = self.records(transport)
        self.assertEqual(
            self.stream(records, RecordType.STDOUT),
            b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello world",
        )
        self.assertEqual(self.end(records), (0, 0))
        self.assertEqual(closed, [True])

    def test_writeCallable(self) -> None:
        """
        The C{write} callable sends the head first, then its data.
        """

        def app(environ: Any, startResponse: Any) -> list[bytes]:
            write = startResponse("201 Created", [])
            write(b"a")
            return [b"b"]

        proto, transport, pool = self.serve(app)
        proto.dataReceived(requestBytes())
        pool.runAll()
        self.assertEqual(
            self.stream(self.records(transport), RecordType.STDOUT), b"Status: 201 Created\r\n\r\nab"
        )

    def test_emptyBody(self) -> None:
        """
        An application with no body still sends its head.
        """

        def app(environ: Any, startResponse: Any) -> list[bytes]:
            startResponse("204 No Content", [])
            return []

        proto, transport, pool = self.serve(app)
        proto.dataReceived(requestBytes())
        pool.runAll()
        self.assertEqual(
            self.stream(self.records(transport), RecordType.STDOUT), b"Status: 204 No Content\r\n\r\n"
        )

    def test_inputHonoursContentLength(self) -> None:
        """
        C{wsgi.input} returns at most CONTENT_LENGTH bytes; readline and
        iteration work.
        """
        got: list[Any] = []

        def app(environ: Any, startResponse: Any) -> list[bytes]:
            inp = environ["wsgi.input"]
            got.append(inp.readline())
            got.append(inp.read(3))
            got.append(list(inp))
            got.append(inp.read())
            startResponse("200 OK", [])
            return []

        proto, transport, pool = self.serve(app)
        proto.dataReceived(
            requestBytes(params={b"CONTENT_LENGTH": b"15"}, body=b"line1\nabcline2\nEXTRA")
        )
        pool.runAll()
        self.assertEqual(got, [b"line1\n", b"abc", [b"line2\n"], b""])

    def test_errorsToStderr(self) -> None:
        """
        C{wsgi.errors} goes to FCGI_STDERR.
        """

        def app(environ: Any, startResponse: Any) -> list[bytes]:
            environ["wsgi.errors"].write("warn\n")
            environ["wsgi.errors"].writelines(["a", "b"])
            startResponse("200 OK", [])
            return []

        proto, transport, pool = self.serve(app)
        proto.dataReceived(requestBytes())
        pool.runAll()
        self.assertEqual(self.stream(self.records(transport), RecordType.STDERR), b"warn\nab")

    def test_exceptionBeforeHead(self) -> None:
        """
        An exception before the head was sent gives a 500, the traceback on
        STDERR, appStatus 1, and close() is still called.
        """
        closed: list[bool] = []

        class Body:
            def __iter__(self) -> Iterator[bytes]:
                raise KeyError("broken")
                yield b""

            def close(self) -> None:
                closed.append(True)

        def app(environ: Any, startResponse: Any) -> Body:
            startResponse("200 OK", [])
            return Body()

        proto, transport, pool = self.serve(app)
        proto.dataReceived(requestBytes())
        pool.runAll()
        records = self.records(transport)
        self.assertTrue(self.stream(records, RecordType.STDOUT).startswith(b"Status: 500 "))
        self.assertIn(b"KeyError: 'broken'", self.stream(records, RecordType.STDERR))
        self.assertEqual(self.end(records), (1, 0))
        self.assertEqual(closed, [True])
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_exceptionAfterHead(self) -> None:
        """
        An exception after the head was sent cuts the response short (no
        500) and ends with appStatus 1.
        """

        def app(environ: Any, startResponse: Any) -> Iterator[bytes]:
            startResponse("200 OK", [])
            yield b"partial"
            raise ValueError("late")

        proto, transport, pool = self.serve(app)
        proto.dataReceived(requestBytes())
        pool.runAll()
        records = self.records(transport)
        self.assertEqual(self.stream(records, RecordType.STDOUT), b"Status: 200 OK\r\n\r\npartial")
        self.assertEqual(self.end(records), (1, 0))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_noStartResponse(self) -> None:
        """
        An application that never calls start_response gets a 500.
        """
        proto, transport, pool = self.serve(lambda environ, startResponse: [])
        proto.dataReceived(requestBytes())
        pool.runAll()
        records = self.records(transport)
        self.assertTrue(self.stream(records, RecordType.STDOUT).startswith(b"Status: 500 "))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_abort(self) -> None:
        """
        ABORT_REQUEST while the application runs ends the request at once;
        its reads of C{wsgi.input} then raise OSError, iteration stops,
        nothing more is written and close() is called.
        """
        closed: list[bool] = []
        errors: list[BaseException] = []
        proto: Any = None

        class Body:
            def __iter__(self) -> Iterator[bytes]:
                yield b"first"
                proto.dataReceived(encodeRecord(RecordType.ABORT_REQUEST, 1))
                try:
                    environ["wsgi.input"].read()
                except OSError as e:
                    errors.append(e)
                yield b"never sent"

            def close(self) -> None:
                closed.append(True)

        environ: dict[str, Any] = {}

        def app(env: Any, startResponse: Any) -> Body:
            environ.update(env)
            startResponse("200 OK", [])
            return Body()

        proto, transport, pool = self.serve(app)
        proto.dataReceived(requestBytes(body=None) + encodeRecord(RecordType.STDIN, 1, b"part"))
        pool.runAll()
        records = self.records(transport)
        self.assertEqual(self.stream(records, RecordType.STDOUT), b"Status: 200 OK\r\n\r\nfirst")
        self.assertEqual(self.end(records), (1, 0))
        self.assertEqual(records[-1].type, RecordType.END_REQUEST)
        self.assertEqual(len(errors), 1)
        self.assertEqual(closed, [True])

    def test_abortedBeforeStart(self) -> None:
        """
        A request aborted while waiting for a thread never runs the
        application.
        """
        calls: list[bool] = []

        def app(environ: Any, startResponse: Any) -> list[bytes]:
            calls.append(True)
            startResponse("200 OK", [])
            return []

        proto, transport, pool = self.serve(app)
        proto.dataReceived(requestBytes() + encodeRecord(RecordType.ABORT_REQUEST, 1))
        pool.runAll()
        self.assertEqual(calls, [])
        self.assertEqual(self.end(self.records(transport)), (1, 0))


class ThreadedTests(WSGITestsMixin, SynchronousTestCase):
    """
    Backpressure with a real application thread.
    """

    def test_streamedInputBackpressure(self) -> None:
        """
        A body larger than the high-water mark, arriving faster than the
        application reads it, pauses reading the connection, which resumes as
        the application reads; the application sees the whole body.
        """
        release = threading.Event()
        digest: list[str] = []

        def app(environ: Any, startResponse: Any) -> list[bytes]:
            release.wait(10)
            h = hashlib.sha256()
            while True:
                block = environ["wsgi.input"].read(4096)
                if not block:
                    break
                h.update(block)
            digest.append(h.hexdigest())
            startResponse("200 OK", [])
            return [h.hexdigest().encode()]

        reactor = QueueReactorThreads()
        proto, transport, pool = self.serve(app, reactor, ThreadPerCallPool(), highWater=1000)
        body = bytes(range(256)) * 40
        proto.dataReceived(requestBytes(params={b"CONTENT_LENGTH": str(len(body)).encode()}, body=None))
        proto.dataReceived(encodeRecord(RecordType.STDIN, 1, body[:5000]))
        self.assertEqual(transport.producerState, "paused")
        release.set()
        reactor.pump(lambda: transport.producerState == "producing")
        proto.dataReceived(encodeRecord(RecordType.STDIN, 1, body[5000:]) + encodeRecord(RecordType.STDIN, 1))
        reactor.pump(lambda: b"\x01\x03\x00\x01" in transport.value())
        self.assertEqual(digest, [hashlib.sha256(body).hexdigest()])

    def test_writeBackpressure(self) -> None:
        """
        While the transport is paused, the application thread blocks in its
        write; it goes on once the transport resumes.
        """
        written: list[int] = []

        def app(environ: Any, startResponse: Any) -> Iterator[bytes]:
            startResponse("200 OK", [])
            for i in range(3):
                yield b"x" * 10
                written.append(i)

        reactor = QueueReactorThreads()
        proto, transport, pool = self.serve(app, reactor, ThreadPerCallPool())
        proto.pauseProducing()
        proto.dataReceived(requestBytes())
        reactor.settle()
        self.assertEqual(written, [])
        proto.resumeProducing()
        reactor.pump(lambda: b"\x01\x03\x00\x01" in transport.value())
        self.assertEqual(written, [0, 1, 2])
