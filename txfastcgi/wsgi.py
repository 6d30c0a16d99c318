# -*- test-case-name: tests.test_wsgi -*-
"""
Serve a PEP 3333 WSGI application as a FastCGI application.

L{WSGIHandler} is a handler for L{txfastcgi.application}: each request runs
the application in a thread pool, the way L{twisted.web.wsgi} does, with
these differences:

  - C{wsgi.input} is streamed: the application thread reads blocks as STDIN
    records arrive; at most about C{highWater} bytes wait in memory, beyond
    that the connection stops reading.  A read never returns more than
    C{CONTENT_LENGTH} bytes in total.
  - Writes have backpressure: each block (from the response iterable or the
    C{write()} callable) is handed to the reactor thread and the application
    thread waits until the transport accepts more before going on.
  - The environ comes from the PARAMS (bytes decoded as latin-1, as PEP 3333
    says); C{FCGI_ROLE} is set as libfcgi does, and a Filter's DATA stream is
    C{environ["txfastcgi.data"]}, a file-like object like C{wsgi.input}.
  - The status and headers become a CGI response head (C{Status: 200 OK}).
  - C{wsgi.errors} goes to FCGI_STDERR.
  - An exception before the head was sent gives a 500 response; after it, the
    response is cut short.  Either way the traceback goes to FCGI_STDERR and
    the request ends with appStatus 1.
  - On abort (FCGI_ABORT_REQUEST or a lost connection), reads and writes in
    the application thread raise L{OSError}, iteration stops and C{close()}
    is called.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from types import TracebackType
from typing import Any, Callable, Iterable, Iterator, Protocol as TypingProtocol, cast

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.threads import blockingCallFromThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from txfastcgi.application import ApplicationRequest
from txfastcgi.fcgi.constants import Role

__all__ = ["WSGIHandler", "WSGIApplication"]

WSGIApplication = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
"""A PEP 3333 application."""

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

DEFAULT_HIGH_WATER = 256 * 1024
"""Unread C{wsgi.input} bytes kept before reading from the web server pauses."""


class ReactorThreads(TypingProtocol):
    """
    What we use of L{twisted.internet.interfaces.IReactorFromThreads}.
    """

    def callFromThread(self, callable: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run C{callable} in the reactor thread."""


class ThreadPool(TypingProtocol):
    """
    What we use of L{twisted.python.threadpool.ThreadPool}.
    """

    def callInThread(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run C{func} in a pool thread."""


def _failureOf(excInfo: ExcInfo) -> Failure:
    return Failure(excInfo[1], excInfo[0], excInfo[2])  # type: ignore[no-untyped-call]


class _ThreadedInput:
    """
    A C{wsgi.input}: a file-like object read in the application thread and
    fed, as an L{InputStream} protocol, in the reactor thread.

    @ivar limit: the most bytes reads return in total (CONTENT_LENGTH), or
        L{None}.
    """

    def __init__(
        self, reactor: ReactorThreads, limit: int | None, highWater: int = DEFAULT_HIGH_WATER
    ) -> None:
        self._reactor = reactor
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._transport: Any = None
        self._paused = False
        self._highWater = highWater
        self.limit = limit
        self._consumed = 0

    # --- the reactor-thread side (a body protocol) ---------------------------

    def makeConnection(self, transport: Any) -> None:
        """
        Keep the L{InputStream}, to pause and resume it.
        """
        self._transport = transport

    def dataReceived(self, data: bytes) -> None:
        """
        Queue a chunk for the application thread; pause the stream when too
        much is queued.
        """
        with self._cond:
            self._chunks.append(data)
            self._size += len(data)
            self._cond.notify_all()
            pause = self._size > self._highWater and not self._paused
            if pause:
                self._paused = True
        if pause:
            self._transport.pauseProducing()

    def connectionLost(self, reason: Failure) -> None:
        """
        The stream ended (cleanly or not): wake the application thread.
        """
        with self._cond:
            self._eof = True
            if reason.check(ConnectionDone) is None:  # type: ignore[no-untyped-call]
                self._error = OSError(f"request body unavailable: {reason.getErrorMessage()}")
            self._cond.notify_all()

    def _maybeResume(self) -> None:
        with self._cond:
            resume = self._paused and self._size <= self._highWater // 2
            if resume:
                self._paused = False
        if resume and self._transport is not None:
            self._transport.resumeProducing()

    # --- the application-thread side (the file API) --------------------------

    def _take(self, size: int, stopAtNewline: bool = False) -> bytes:
        """
        Take up to C{size} bytes (all when negative), waiting for them; with
        C{stopAtNewline}, stop after the first newline.
        """
        if self.limit is not None:
            left = self.limit - self._consumed
            size = left if size < 0 else min(size, left)
        out: list[bytes] = []
        got = 0
        with self._cond:
            while size < 0 or got < size:
                if self._chunks:
                    chunk = self._chunks.popleft()
                    want = len(chunk) if size < 0 else size - got
                    if stopAtNewline:
                        newline = chunk.find(b"\n", 0, want)
                        if newline >= 0:
                            want = newline + 1
                    if want < len(chunk):
                        self._chunks.appendleft(chunk[want:])
                        chunk = chunk[:want]
                    self._size -= len(chunk)
                    out.append(chunk)
                    got += len(chunk)
                    if stopAtNewline and chunk.endswith(b"\n"):
                        break
                    continue
                if self._error is not None:
                    raise self._error
                if self._eof:
                    break
                if self._paused:
                    # Everything queued was read: let the web server send more.
                    self._reactor.callFromThread(self._maybeResume)
                self._cond.wait()
            wasPaused = self._paused
        self._consumed += got
        if wasPaused:
            self._reactor.callFromThread(self._maybeResume)
        return b"".join(out)

    def read(self, size: int | None = -1) -> bytes:
        """
        Read up to C{size} bytes (to the end when negative or L{None}).

        @raise OSError: if the request was aborted.
        """
        return self._take(-1 if size is None else size)

    def readline(self, size: int | None = -1) -> bytes:
        """
        Read one line (up to C{size} bytes).

        @raise OSError: if the request was aborted.
        """
        return self._take(-1 if size is None else size, stopAtNewline=True)

    def readlines(self, hint: int | None = None) -> list[bytes]:
        """
        Read lines until the end (or past C{hint} bytes).
        """
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        """
        Iterate over lines.
        """
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class _ErrorStream:
    """
    C{wsgi.errors}: text written here goes to FCGI_STDERR (from any thread).
    """

    def __init__(self, run: _WSGIRun) -> None:
        self._run = run

    def write(self, data: str) -> None:
        """
        Send C{data} to FCGI_STDERR.

        @raise TypeError: if C{data} is not C{str}.
        """
        if not isinstance(data, str):
            raise TypeError(f"write() argument must be str, not {data!r} ({type(data).__name__})")
        self._run._reactor.callFromThread(self._run._writeStderr, data.encode("utf-8", "replace"))

    def writelines(self, lines: Iterable[str]) -> None:
        """
        Write each of C{lines}.
        """
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """
        Nothing to do: every write is sent.
        """


def _native(value: bytes) -> str:
    return value.decode("latin-1")


def buildEnviron(request: ApplicationRequest) -> dict[str, Any]:
    """
    The CGI part of a WSGI environ from a request's PARAMS: latin-1 decoded
    C{str}, with the keys PEP 3333 requires filled in when missing, and
    C{FCGI_ROLE}.
    """
    environ: dict[str, Any] = {_native(k): _native(v) for k, v in request.params.items()}
    environ.setdefault("REQUEST_METHOD", "GET")
    environ.setdefault("SCRIPT_NAME", "")
    environ.setdefault("PATH_INFO", "")
    environ.setdefault("QUERY_STRING", "")
    environ.setdefault("SERVER_NAME", "localhost")
    environ.setdefault("SERVER_PORT", "80")
    environ.setdefault("SERVER_PROTOCOL", "HTTP/1.0")
    environ["FCGI_ROLE"] = request.role.name
    https = environ.get("HTTPS", "").lower() in ("on", "1", "yes")
    scheme = environ.get("REQUEST_SCHEME", "").lower()
    environ["wsgi.version"] = (1, 0)
    environ["wsgi.url_scheme"] = "https" if https or scheme == "https" else "http"
    environ["wsgi.multithread"] = True
    environ["wsgi.multiprocess"] = True
    environ["wsgi.run_once"] = False
    return environ


def _contentLength(environ: dict[str, Any]) -> int | None:
    value = environ.get("CONTENT_LENGTH", "")
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


def responseHead(status: str, headers: list[tuple[str, str]]) -> bytes:
    """
    Encode a WSGI status and headers as a CGI response head.

    @raise ValueError: for a malformed status or a CR, LF or NUL in a header.
    """
    parts = status.split(None, 1)
    if len(parts) < 1 or len(parts[0]) != 3 or not parts[0].isdigit():
        raise ValueError(f"malformed WSGI status {status!r}")
    lines = [f"Status: {status}"]
    for name, value in headers:
        if any(c in name for c in "\r\n\0:") or any(c in value for c in "\r\n\0"):
            raise ValueError(f"malformed header {(name, value)!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _WSGIRun:
    """
    One request through the application: environ, start_response, the
    application thread's loop, and the reactor-side writes.

    Attributes touched by both threads: C{_aborted} (set in the reactor
    thread, read in the application thread) and C{_headSent} (set in the
    reactor thread only).
    """

    _log = Logger()

    def __init__(
        self,
        reactor: ReactorThreads,
        threadpool: ThreadPool,
        application: WSGIApplication,
        request: ApplicationRequest,
        highWater: int,
    ) -> None:
        self._reactor = reactor
        self._threadpool = threadpool
        self._application = application
        self.request = request
        self._status: str | None = None
        self._headers: list[tuple[str, str]] = []
        self._headSent = False
        self._aborted = False
        self.done: Deferred[int] = Deferred(self._cancel)
        self.environ = buildEnviron(request)
        limit = _contentLength(self.environ) if request.role != Role.AUTHORIZER else 0
        self._input = _ThreadedInput(reactor, limit, highWater)
        request.stdin.deliverBody(self._input)
        self.environ["wsgi.input"] = self._input
        self.environ["wsgi.errors"] = _ErrorStream(self)
        if request.role == Role.FILTER:
            data = _ThreadedInput(reactor, None, highWater)
            request.data.deliverBody(data)
            self.environ["txfastcgi.data"] = data
        request.notifyAbort().addCallback(lambda ignored: self._cancel(self.done))

    def _cancel(self, d: Deferred[int]) -> None:
        self._aborted = True

    def start(self) -> None:
        """
        Run the application in the thread pool.
        """
        self._threadpool.callInThread(self._runInThread)

    # --- application thread --------------------------------------------------

    def startResponse(
        self, status: str, headers: list[tuple[str, str]], excInfo: ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        """
        The WSGI C{start_response} callable.
        """
        if excInfo is not None:
            try:
                if self._headSent:
                    raise excInfo[1].with_traceback(excInfo[2])
            finally:
                excInfo = None
        elif self._status is not None:
            raise RuntimeError("start_response called twice without exc_info")
        if not isinstance(status, str):
            raise TypeError(f"status must be str, not {status!r} ({type(status).__name__})")
        for header in headers:
            if (
                len(header) != 2
                or not isinstance(header[0], str)
                or not isinstance(header[1], str)
            ):
                raise TypeError(f"header must be a (str, str) tuple, not {header!r}")
        responseHead(status, list(headers))
        self._status = status
        self._headers = list(headers)
        return self.write

    def write(self, data: bytes) -> None:
        """
        The WSGI C{write} callable; also used for each block of the response
        iterable.  Waits until the transport accepts more.

        @raise OSError: if the request was aborted.
        """
        if not isinstance(data, bytes):
            raise TypeError(f"WSGI output must be bytes, not {type(data).__name__}")
        if self._status is None:
            raise RuntimeError("write() before start_response()")
        blockingCallFromThread(cast(Any, self._reactor), cast(Any, self._writeInReactor), data)

    def _runInThread(self) -> None:
        if self._aborted:
            # Aborted while waiting for a thread: do not start the application.
            self._reactor.callFromThread(self._succeeded)
            return
        try:
            result = self._application(self.environ, self.startResponse)
            try:
                for block in result:
                    if self._aborted:
                        break
                    if block:
                        self.write(block)
                if self._status is None and not self._aborted:
                    raise RuntimeError("the WSGI application did not call start_response")
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except BaseException:
            excInfo = sys.exc_info()
            self._reactor.callFromThread(self._failed, excInfo)
        else:
            self._reactor.callFromThread(self._succeeded)

    # --- reactor thread ------------------------------------------------------

    def _running(self) -> bool:
        return not (self._aborted or self.request.aborted or self.request.finished)

    def _writeInReactor(self, data: bytes) -> Deferred[None]:
        if not self._running():
            raise OSError("the FastCGI request was aborted")
        if not self._headSent:
            self._sendHead()
        self.request.write(data)
        return self.request.whenWritable()

    def _sendHead(self) -> None:
        assert self._status is not None
        self._headSent = True
        self.request.write(responseHead(self._status, self._headers))

    def _writeStderr(self, data: bytes) -> None:
        if self._running():
            self.request.writeStderr(data)

    def _succeeded(self) -> None:
        if self.done.called:
            return
        if self._running() and not self._headSent and self._status is not None:
            self._sendHead()
        self.done.callback(0)

    def _failed(self, excInfo: ExcInfo) -> None:
        if self.done.called:
            return
        if not self._running():
            self._log.info(
                "WSGI application stopped after abort of request {requestId}: {error}",
                requestId=self.request.requestId,
                error=repr(excInfo[1]),
            )
            self.done.callback(0)
            return
        failure = _failureOf(excInfo)
        self._log.failure(
            "WSGI application error in request {requestId}",
            failure=failure,
            requestId=self.request.requestId,
        )
        self.request.writeStderr(failure.getTraceback().encode("utf-8", "replace"))
        if not self._headSent:
            self._headSent = True
            self.request.write(
                b"Status: 500 Internal Server Error\r\n"
                b"Content-Type: text/plain\r\n\r\n"
                b"Internal Server Error\n"
            )
        self.done.callback(1)


class WSGIHandler:
    """
    A L{txfastcgi.application} handler that runs a WSGI application in a
    thread pool.

    @ivar application: the WSGI application.
    """

    def __init__(
        self,
        reactor: ReactorThreads,
        threadpool: ThreadPool,
        application: WSGIApplication,
        *,
        highWater: int = DEFAULT_HIGH_WATER,
    ) -> None:
        """
        @param reactor: where the application threads send their output.
        @param threadpool: where the application runs (started by the
            caller).
        @param application: the WSGI application.
        @param highWater: unread body bytes per request before the connection
            stops reading.
        """
        self._reactor = reactor
        self._threadpool = threadpool
        self.application = application
        self._highWater = highWater

    def __call__(self, request: ApplicationRequest) -> Deferred[int]:
        """
        Run the application for C{request}.

        @return: a Deferred firing with the appStatus (0, or 1 after an
            exception) when the application is done.
        """
        run = _WSGIRun(self._reactor, self._threadpool, self.application, request, self._highWater)
        run.start()
        return run.done
