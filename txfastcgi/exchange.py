# -*- test-case-name: tests.test_exchange -*-
"""
One HTTP request exchanged for one FastCGI request.

A L{FastCGIExchange} ties a C{twisted.web} L{Request} to a
L{FastCGIRequest} run through a L{ConnectionPool}: it is the machinery
under L{txfastcgi.resource.FastCGIResource} and is meant to be reused by the
other roles (Authorizer, Filter): the role, the params, the body and the
Filter data are parameters, and what happens once the response head has
arrived is decided by an C{onHead} callable.

Life cycle (the C{state} attribute)
===================================

  - C{NEW}: built.  L{FastCGIExchange.start} registers the exchange as a
    streaming producer on the HTTP request, passing pause and resume on to
    the FastCGI request (a slow client pauses the application connection),
    watches C{notifyFinish} and C{stopProducing} (a client that goes away
    aborts the FastCGI request: ABORT_REQUEST, then the client closes the
    application connection after a grace period), and hands the request to
    the pool.  The body (C{request.content}, twisted.web's spool) is streamed as
    STDIN while the response is read.
  - C{HEAD}: STDOUT bytes go to a L{ResponseHeadParser}.  A malformed head
    aborts the FastCGI request and answers 502; a failure maps to a status
    (L{errorStatus}, SPEC.md Decision 8) and an error page.  When the head is
    complete, C{onHead(exchange, head)} runs; it must call one of
    L{FastCGIExchange.respond}, L{FastCGIExchange.discard} or
    L{FastCGIExchange.fail}.  The default is L{FastCGIExchange.respond}.
  - C{BODY}: the head was written to the client; every STDOUT piece is
    written with C{request.write} as it arrives (nothing is buffered here).
    When the FastCGI request ends the HTTP request is finished.  If it fails
    (the application died, a protocol error, a timeout), or ends short of
    the Content-Length it announced, the client connection is closed
    without finishing the response, so the truncation is visible (see
    L{FastCGIExchange.respond}).
  - C{DISCARD}: the application's remaining output is read and dropped, so
    its connection can be reused (after a generated body, after the
    Content-Length was reached, or when the HTTP request was handed on, for
    example to an internal redirect).
  - C{DONE}: the FastCGI request is over.

Invariant: the HTTP request is finished only once the FastCGI request has
ended or been aborted, so the body spool (which C{finish} closes) is never
read after it was closed.  The producer is always unregistered before
C{finish}, and neither is called once the client has gone (STYLE.md P6).
"""

from __future__ import annotations

import html
from typing import Any, Callable, Iterator, Mapping, Sequence, cast

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, pages
from twisted.web.server import Request
from zope.interface import implementer  # type: ignore[import-untyped]

from txfastcgi.cgiresponse import (
    DEFAULT_MAX_HEADER_BYTES,
    MalformedResponseError,
    ResponseHead,
    ResponseHeadParser,
)
from txfastcgi.client import (
    ApplicationOverloaded,
    BodySource,
    FastCGIClientError,
    FastCGIRequest,
    RequestAborted,
    RequestResult,
    ResponseTimeout,
)
from txfastcgi.fcgi.constants import Role
from txfastcgi.pool import (
    ConnectError,
    ConnectionPool,
    ConnectTimeout,
    PoolClosed,
    PoolOverloaded,
)

__all__ = [
    "DEFAULT_MAX_STDERR_LINE",
    "DEFAULT_RETRY_AFTER",
    "FastCGIExchange",
    "errorStatus",
    "redirectBody",
]

DEFAULT_RETRY_AFTER = 5
"""Seconds sent in C{Retry-After} with a 503 for an overloaded application."""

DEFAULT_MAX_STDERR_LINE = 4096
"""Bytes of a STDERR line held back while waiting for its newline; a longer
partial line is logged as it is."""

_NO_BODY_CODES = frozenset(http.NO_BODY_CODES)

# Response headers Twisted sets itself before a resource runs; an
# application's own value replaces Twisted's rather than doubling it.
_REPLACED_HEADERS = frozenset([b"server", b"date"])


_STATUS_TABLE: tuple[tuple[type[BaseException], int, bool], ...] = (
    (ConnectTimeout, http.GATEWAY_TIMEOUT, False),
    (ResponseTimeout, http.GATEWAY_TIMEOUT, False),
    (ConnectError, http.SERVICE_UNAVAILABLE, False),
    (PoolOverloaded, http.SERVICE_UNAVAILABLE, True),
    (PoolClosed, http.SERVICE_UNAVAILABLE, False),
    (ApplicationOverloaded, http.SERVICE_UNAVAILABLE, True),
    (FastCGIClientError, http.BAD_GATEWAY, False),
    (MalformedResponseError, http.BAD_GATEWAY, False),
)

_BRIEF = {
    http.BAD_GATEWAY: ("Bad Gateway", "The application failed to answer this request."),
    http.SERVICE_UNAVAILABLE: (
        "Service Unavailable",
        "The application cannot take this request now. Please try again later.",
    ),
    http.GATEWAY_TIMEOUT: (
        "Gateway Timeout",
        "The application did not answer this request in time.",
    ),
    http.INTERNAL_SERVER_ERROR: (
        "Internal Server Error",
        "The server could not handle this request.",
    ),
}


def errorStatus(error: BaseException) -> tuple[int, bool]:
    """
    Map a failure of a FastCGI request that has not sent its head yet to
    the HTTP status of the answer (SPEC.md Decision 8).

      - 503: the application cannot be reached or refuses (L{ConnectError},
        L{PoolOverloaded}, L{PoolClosed}, END_REQUEST with OVERLOADED);
      - 502: the application broke the protocol, died, refused the request
        for another reason (CANT_MPX_CONN, UNKNOWN_ROLE), or sent a
        malformed head (L{MalformedResponseError});
      - 504: connecting or answering took too long (L{ConnectTimeout},
        L{ResponseTimeout});
      - 500: anything else (a bug; the caller logs it as a failure).

    @param error: the exception.
    @return: C{(status, retryAfter)}: whether a C{Retry-After} header goes
        with it (pool overload and OVERLOADED).
    """
    for kind, status, retryAfter in _STATUS_TABLE:
        if isinstance(error, kind):
            return status, retryAfter
    return http.INTERNAL_SERVER_ERROR, False


def redirectBody(
    location: bytes, status: int = http.FOUND, reason: bytes = b"Found"
) -> bytes:
    """
    The short HTML body sent with a client redirect whose application gave
    no body (SPEC.md section 5.3: "the server generates a standard text/html
    body").

    @param location: the Location value (escaped here).
    @param status: the status code, for the title.
    @param reason: the reason phrase, for the title.
    @return: an ASCII HTML document.
    """
    url = html.escape(location.decode("latin-1"), quote=True)
    title = html.escape(f"{status} {reason.decode('latin-1')}")
    text = (
        f"<html><head><title>{title}</title></head><body>"
        f'<h1>{title}</h1><p>The document has moved <a href="{url}">here</a>.</p>'
        "</body></html>\n"
    )
    return text.encode("ascii", "xmlcharrefreplace")


def writeResponseHead(request: Any, head: ResponseHead) -> bool:
    """
    Put an application's response head on C{request}: its status and
    reason, its headers unmerged and in order (a C{Server} or C{Date} of the
    application's replaces Twisted's), no default Content-Type; for a client
    redirect without a body of its own, also write L{redirectBody}.

    @param request: the HTTP request (nothing written to it yet).
    @param head: the parsed head (L{txfastcgi.cgiresponse}).
    @return: whether a generated body was written (the application's own
        body must then be dropped).
    """
    request.setResponseCode(head.status, head.reason)
    request.defaultContentType = None
    headers = request.responseHeaders
    replaced: set[bytes] | None = None
    for name, value in head.headers:
        if len(name) in (4, 6):
            lower = name.lower()
            if lower in _REPLACED_HEADERS:
                if replaced is None:
                    replaced = set()
                if lower not in replaced:
                    replaced.add(lower)
                    headers.removeHeader(name)
        headers.addRawHeader(name, value)
    if not head.needsGeneratedBody:
        return False
    assert head.location is not None
    body = redirectBody(head.location, head.status, head.reason)
    headers.setRawHeaders(b"Content-Type", [b"text/html"])
    headers.setRawHeaders(b"Content-Length", [b"%d" % (len(body),)])
    request.write(body)
    return True


OnHead = Callable[["FastCGIExchange", ResponseHead], object]
"""What runs when the response head is complete: it must call
L{FastCGIExchange.respond}, L{FastCGIExchange.discard} or
L{FastCGIExchange.fail}."""


class CGIEnvironmentView(Mapping[str, str]):
    """
    The CGI variables sent to the application, as a read-only mapping of
    C{str} (latin-1) decoded on first use, so requests whose log format does
    not ask for them pay nothing.  Set on the HTTP request as
    C{request.cgiEnvironment}.
    """

    def __init__(self, params: Sequence[tuple[bytes, bytes]]) -> None:
        self._params = params
        self._decoded: dict[str, str] | None = None

    def _variables(self) -> dict[str, str]:
        if self._decoded is None:
            self._decoded = {
                name.decode("latin-1"): value.decode("latin-1")
                for name, value in self._params
            }
        return self._decoded

    def __getitem__(self, name: str) -> str:
        return self._variables()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._variables())

    def __len__(self) -> int:
        return len(self._variables())


class LoggedLines:
    """
    Mixin: a stream (an application's STDERR, a CGI script's standard
    error) logged a line at a time as it arrives.  C{_stderr} takes bytes,
    C{_flushStderr} logs a partial last line at the end; each line (without
    its LF or CRLF) goes to C{_logStderr}, which the class defines.  A
    partial line longer than C{maxStderrLine} is logged without waiting for
    its newline, so what is held stays bounded.
    """

    maxStderrLine: int
    _stderrHeld = b""

    def _stderr(self, data: bytes) -> None:
        held = self._stderrHeld
        if held:
            data = held + data
        lines = data.split(b"\n")
        held = lines.pop()
        if len(held) > self.maxStderrLine:
            lines.append(held)
            held = b""
        self._stderrHeld = held
        for line in lines:
            self._logStderr(line[:-1] if line.endswith(b"\r") else line)

    def _flushStderr(self) -> None:
        held = self._stderrHeld
        if held:
            self._stderrHeld = b""
            self._logStderr(held[:-1] if held.endswith(b"\r") else held)

    def _logStderr(self, line: bytes) -> None:
        raise NotImplementedError


@implementer(IPushProducer)
class FastCGIExchange(LoggedLines):
    """
    One HTTP request forwarded as one FastCGI request; see the module
    docstring for the states.

    @ivar request: the HTTP request.
    @ivar pool: the pool the FastCGI request runs through.
    @ivar fastcgiRequest: the L{FastCGIRequest}.
    @ivar backend: the application's address, for logs.
    @ivar state: C{"NEW"}, C{"HEAD"}, C{"BODY"}, C{"DISCARD"} or C{"DONE"}.
    @ivar head: the response head once parsed, else L{None}.
    @ivar clientGone: whether the HTTP client went away before the end.
    @ivar endError: why the FastCGI request failed, once it did.
    @ivar retryAfter: seconds for C{Retry-After} on 503s that carry one.
    @ivar maxStderrLine: see L{DEFAULT_MAX_STDERR_LINE}.
    """

    log = Logger()

    def __init__(
        self,
        request: Request,
        pool: ConnectionPool,
        params: Sequence[tuple[bytes, bytes]],
        *,
        role: int = Role.RESPONDER,
        body: BodySource = None,
        data: BodySource = None,
        onHead: OnHead | None = None,
        maxHeaderBytes: int = DEFAULT_MAX_HEADER_BYTES,
        retryAfter: int = DEFAULT_RETRY_AFTER,
        maxStderrLine: int = DEFAULT_MAX_STDERR_LINE,
    ) -> None:
        """
        @param request: the HTTP request to answer.
        @param pool: the pool of the application.
        @param params: the FCGI_PARAMS (see L{txfastcgi.cgienv}).
        @param role: the FastCGI role.
        @param body: STDIN: bytes, a binary file read from its current
            position (C{request.content}), or L{None}.
        @param data: FCGI_DATA, for the Filter role.
        @param onHead: called with the exchange and the head; by default the
            head and body are sent to the client (L{respond}).
        @param maxHeaderBytes: the cap on the response head.
        @param retryAfter: seconds for C{Retry-After}.
        @param maxStderrLine: see L{DEFAULT_MAX_STDERR_LINE}.
        """
        self.request = request
        self.pool = pool
        self.backend = pool.address
        self.onHead: OnHead = onHead if onHead is not None else _respond
        self.retryAfter = retryAfter
        self.maxStderrLine = maxStderrLine
        self.state = "NEW"
        self.head: ResponseHead | None = None
        self.clientGone = False
        self.endError: BaseException | None = None
        self.fastcgiRequest = FastCGIRequest(
            params,
            writeStdout=self._stdout,
            writeStderr=self._stderr,
            role=role,
            body=body,
            data=data,
        )
        # The access log's %{NAME}e and CustomLog env=NAME read this.
        cast(Any, request).cgiEnvironment = CGIEnvironmentView(self.fastcgiRequest.params)
        self._parser = ResponseHeadParser(maxHeaderBytes)
        self._registered = False
        self._finishAtEnd = False
        self._remaining: int | None = None
        self._aborted = False
        self._endWaiters: list[Deferred[None]] | None = None

    # --- public ---------------------------------------------------------------

    def start(self) -> None:
        """
        Register this exchange as the HTTP request's streaming producer,
        watch for the client going away, and run the FastCGI request through
        the pool.
        """
        request: Any = self.request
        notifications = getattr(request, "notifications", None)
        if type(notifications) is list:
            # What notifyFinish() would add, without a Deferred per request:
            # Request.finish calls callback(None), connectionLost errback().
            notifications.append(_DisconnectWatch(self))
        else:
            request.notifyFinish().addErrback(self._clientDisconnected)
        request.registerProducer(self, True)
        self._registered = True
        self.state = "HEAD"
        fastcgiRequest = self.fastcgiRequest
        fastcgiRequest.onEnd = self._over
        self.pool.submit(fastcgiRequest)

    def notifyEnd(self) -> Deferred[None]:
        """
        @return: a Deferred firing (with L{None}, never failing) once the
            FastCGI request is over and the HTTP side was dealt with.
        """
        d: Deferred[None] = Deferred()
        if self.state == "DONE":
            d.callback(None)
        else:
            if self._endWaiters is None:
                self._endWaiters = []
            self._endWaiters.append(d)
        return d

    def respond(self, head: ResponseHead) -> None:
        """
        Send C{head} to the client, then stream the body.

        Status and reason come from the head; its headers are added
        unmerged and in order (an application's C{Server} or C{Date}
        replaces Twisted's); no default Content-Type is added.  A client
        redirect without a body of its own gets L{redirectBody} and the
        application's body is dropped.  For HEAD requests and 204/304
        Twisted sends no body; the application is still read to its end.
        A Content-Length the application announced is enforced: bytes beyond
        it are dropped (logged), and a body that ends short of it is
        treated as a truncation.

        Framing when the response is cut short: Twisted frames an HTTP/1.1
        body without Content-Length with chunked encoding, and an HTTP/1.0
        one by closing the connection.  Truncation is shown by aborting the
        connection without C{finish()}: a chunked body then lacks its last
        chunk and a Content-Length body is short; Twisted's TCP
        C{abortConnection} closes with C{SO_LINGER} {1, 0}, so the client
        gets a reset, and a close-delimited body does not read as complete
        either.  (Bytes still in our send buffer are dropped: the response
        is broken anyway, and a slow client cannot hold the connection.)
        Over HTTP/2 only the stream is reset.
        """
        self.head = head
        if self._clientGoneNow():
            self.state = "DISCARD"
            return
        request: Any = self.request
        if writeResponseHead(request, head):
            self.state = "DISCARD"
            self._finishAtEnd = True
            return
        if (
            head.contentLength is not None
            and request.method != b"HEAD"
            and head.status not in _NO_BODY_CODES
        ):
            self._remaining = head.contentLength
        self.state = "BODY"
        # Even an empty start is written: the head goes out now.
        self._write(head.bodyStart)

    def discard(self, finishRequest: bool = False) -> None:
        """
        Drop the rest of the application's output and let go of the HTTP
        request: the FastCGI request is unregistered as its producer (so
        another may be registered), and the request is left alone.

        @param finishRequest: finish the HTTP request once the FastCGI request
            is over (for a caller that already wrote a complete response).
        """
        self.state = "DISCARD" if self.state != "DONE" else "DONE"
        self._finishAtEnd = finishRequest
        self._unregister()

    def fail(self, status: int, retryAfter: bool = False) -> None:
        """
        Abort the FastCGI request (if still running) and answer with an
        error page for C{status}; if the head was already written, close
        the client connection instead (a truncated response); if the client
        is gone, do nothing more.

        @param status: the HTTP status.
        @param retryAfter: add C{Retry-After}.
        """
        self._abort(RequestAborted("the gateway answered the client itself"))
        request: Any = self.request
        if request.startedWriting and not request.finished:
            self._truncate(f"the gateway gave up on the response (status {status})")
        else:
            self._sendError(status, retryAfter)

    # --- IPushProducer, registered on the HTTP request ------------------------

    def pauseProducing(self) -> None:
        """
        The client is slow: pause the FastCGI request (and with it the
        application connection).
        """
        self.fastcgiRequest.pauseProducing()

    def resumeProducing(self) -> None:
        """
        The client caught up: resume the FastCGI request.
        """
        self.fastcgiRequest.resumeProducing()

    def stopProducing(self) -> None:
        """
        The client connection is going away (a real transport calls this
        before C{connectionLost}): abort the FastCGI request.
        """
        self._clientDisconnected(None)

    # --- FastCGI side -------------------------------------------------------

    def _stdout(self, data: bytes) -> None:
        state = self.state
        if state == "BODY":
            self._write(data)
        elif state == "HEAD":
            try:
                head = self._parser.feed(data)
            except MalformedResponseError as e:
                self.log.error(
                    "Malformed response head from FastCGI application {backend} "
                    "for {uri}: {error}",
                    backend=self.backend,
                    uri=self._uri(),
                    error=str(e),
                    requestId=self.fastcgiRequest.requestId,
                )
                self.fail(http.BAD_GATEWAY)
                return
            if head is not None:
                self.state = "DISCARD"
                self.head = head
                try:
                    self.onHead(self, head)
                except Exception:
                    self.log.failure(
                        "Response head handler for {uri} ({backend}) raised",
                        backend=self.backend,
                        uri=self._uri(),
                    )
                    self.fail(http.INTERNAL_SERVER_ERROR)
                    return
                if (
                    self._registered
                    and self.state == "DISCARD"
                    and not self._finishAtEnd
                    and not self.clientGone
                ):
                    self.log.error(
                        "Response head handler for {uri} ({backend}) neither "
                        "responded, discarded nor failed; answering 500",
                        backend=self.backend,
                        uri=self._uri(),
                    )
                    self.fail(http.INTERNAL_SERVER_ERROR)

    def _write(self, data: bytes) -> None:
        remaining = self._remaining
        if remaining is not None:
            if len(data) > remaining:
                self.log.warn(
                    "FastCGI application {backend} sent more than the "
                    "Content-Length it announced ({contentLength}) for {uri}; "
                    "the excess is dropped",
                    backend=self.backend,
                    uri=self._uri(),
                    contentLength=self.head.contentLength if self.head else None,
                    requestId=self.fastcgiRequest.requestId,
                )
                data = data[:remaining]
                self._remaining = 0
                self.state = "DISCARD"
                self._finishAtEnd = True
            else:
                self._remaining = remaining - len(data)
        request: Any = self.request
        if request.channel is not None:
            request.write(data)

    def _logStderr(self, line: bytes) -> None:
        self.log.warn(
            "FastCGI application {backend} stderr for {uri}: {line}",
            backend=self.backend,
            uri=self._uri(),
            requestId=self.fastcgiRequest.requestId,
            stream="stderr",
            line=line.decode("utf-8", "replace"),
        )

    def _over(self, result: RequestResult | None, error: BaseException | None) -> None:
        if error is None:
            assert result is not None
            self._ended(result)
        else:
            self.endError = error
            self._failed(error)

    def _ended(self, result: RequestResult) -> None:
        self._flushStderr()
        state = self.state
        if state == "HEAD":
            try:
                self._parser.finish()
            except MalformedResponseError as e:
                self.log.error(
                    "Bad response head from FastCGI application {backend} "
                    "for {uri}: {error}",
                    backend=self.backend,
                    uri=self._uri(),
                    error=str(e),
                    requestId=self.fastcgiRequest.requestId,
                )
            self._done()
            self._sendError(http.BAD_GATEWAY, False)
            return
        self._done()
        if state == "BODY" or self._finishAtEnd:
            if self._remaining:
                self._truncate(
                    f"the application ended {self._remaining} bytes short of "
                    "its Content-Length"
                )
            else:
                self._finish()

    def _failed(self, error: BaseException) -> None:
        self._flushStderr()
        state = self.state
        self._done()
        if self.clientGone or self._aborted or isinstance(error, CancelledError):
            # We aborted it ourselves, and answered already if we could.
            return
        if state == "HEAD":
            assert error is not None
            status, retryAfter = errorStatus(error)
            if status == http.INTERNAL_SERVER_ERROR:
                self.log.failure(
                    "FastCGI request to {backend} for {uri} failed unexpectedly",
                    Failure(error),  # type: ignore[no-untyped-call]
                    backend=self.backend,
                    uri=self._uri(),
                )
            else:
                self.log.error(
                    "FastCGI request to {backend} for {uri} failed: {error} "
                    "(answering {status})",
                    backend=self.backend,
                    uri=self._uri(),
                    error=str(error),
                    status=status,
                    requestId=self.fastcgiRequest.requestId,
                )
            self._sendError(status, retryAfter)
        elif state == "BODY" and self._remaining != 0 and self._bodyExpected():
            self._truncate(str(error))
        else:
            self.log.warn(
                "FastCGI request to {backend} for {uri} failed after its "
                "response was complete: {error}",
                backend=self.backend,
                uri=self._uri(),
                error=str(error),
                requestId=self.fastcgiRequest.requestId,
            )
            if self._finishAtEnd or state == "BODY":
                self._finish()

    def _done(self) -> None:
        self.state = "DONE"
        # The FastCGI request is over and delivers no more output: let go of
        # our bound methods, so that the exchange, the FastCGI request and the
        # HTTP request form no reference cycle and are freed at once rather
        # than by the cyclic garbage collector (a large part of the cost of a
        # request).
        fastcgiRequest = self.fastcgiRequest
        fastcgiRequest.writeStdout = fastcgiRequest.writeStderr = _discardOutput
        waiters, self._endWaiters = self._endWaiters, None
        if waiters:
            for d in waiters:
                d.callback(None)

    # --- HTTP side ----------------------------------------------------------

    def _clientDisconnected(self, reason: Failure | None) -> None:
        if self.clientGone:
            return
        self.clientGone = True
        self._registered = False
        if self.state not in ("DONE",):
            self.log.info(
                "HTTP client gone; aborting FastCGI request for {uri} to {backend}",
                backend=self.backend,
                uri=self._uri(),
                requestId=self.fastcgiRequest.requestId,
            )
        self._abort(RequestAborted("the HTTP client went away"))

    def _clientGoneNow(self) -> bool:
        return self.clientGone or self.request.channel is None

    def _abort(self, reason: FastCGIClientError) -> None:
        if not self.fastcgiRequest.done:
            self._aborted = True
            self.fastcgiRequest.abort(reason)

    def _unregister(self) -> None:
        if self._registered:
            self._registered = False
            if not self._clientGoneNow():
                cast(Any, self.request).unregisterProducer()

    def _bodyExpected(self) -> bool:
        return self.request.method != b"HEAD" and self.request.code not in _NO_BODY_CODES

    def _finish(self) -> None:
        self._unregister()
        if self._clientGoneNow():
            return
        cast(Any, self.request).finish()

    def _sendError(self, status: int, retryAfter: bool) -> None:
        self._unregister()
        request: Any = self.request
        if self._clientGoneNow() or request.startedWriting or request.finished:
            return
        if retryAfter:
            request.setHeader(b"Retry-After", b"%d" % (self.retryAfter,))
        brief, detail = _BRIEF.get(status, ("Error", "The request failed."))
        pages.errorPage(status, brief, detail).render(request)

    def _truncate(self, why: str) -> None:
        self.log.error(
            "Response from FastCGI application {backend} for {uri} cut short "
            "after the head was sent ({error}); closing the client connection",
            backend=self.backend,
            uri=self._uri(),
            error=why,
            requestId=self.fastcgiRequest.requestId,
        )
        self._unregister()
        if self._clientGoneNow():
            return
        abortResponse(self.request)

    def _uri(self) -> str:
        return self.request.uri.decode("latin-1")


def abortResponse(request: Any) -> None:
    """
    Make a response that was cut short after its head visibly incomplete:
    abort the client connection (over HTTP/2, the stream) instead of
    finishing the request.

    @param request: the HTTP request, its client still connected.
    """
    channel = request.channel
    transport: Any
    if isinstance(channel, http.HTTPChannel):
        # Twisted's TCP abortConnection closes with SO_LINGER {1, 0}:
        # the client gets a reset, even for a close-delimited body.
        transport = channel.transport
    else:
        # HTTP/2: the stream itself aborts (RST_STREAM).
        transport = channel
    abort = getattr(transport, "abortConnection", None)
    if abort is not None:
        abort()
    else:
        transport.loseConnection()


class _DisconnectWatch:
    """
    Stands in for the Deferred C{Request.notifyFinish} would return: told
    of the end of the HTTP request (ignored) or of the client going away.
    """

    __slots__ = ("_exchange",)

    def __init__(self, exchange: FastCGIExchange) -> None:
        self._exchange = exchange

    def callback(self, result: object) -> None:
        del self._exchange

    def errback(self, reason: Failure | None = None) -> None:
        exchange = self._exchange
        del self._exchange
        exchange._clientDisconnected(reason)


def _respond(exchange: FastCGIExchange, head: ResponseHead) -> None:
    exchange.respond(head)


def _discardOutput(data: bytes) -> None:
    """
    What a finished FastCGI request would write its output to (nothing).
    """
