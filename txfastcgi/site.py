# -*- test-case-name: tests.test_resource -*-
"""
A C{twisted.web} site for the gateway: request bodies are limited in size
(answer 413) and never parsed into C{request.args}.

twisted.web spools each request body (memory, then a temporary file) before
any resource runs, with no size limit (STYLE.md P5).  L{LimitedRequest}
enforces C{maxRequestBodySize} while the body arrives: a Content-Length over
the limit is refused as soon as the headers are in (before anything is
spooled, and without a C{100 Continue}); a chunked body is refused as soon as
it grows past the limit, so at most the limit is ever spooled.  Refusing
means writing a C{413 Content Too Large} response and closing the connection
(over HTTP/2, resetting the stream); the request never reaches a resource,
hence never a FastCGI application.

L{GatewaySite} uses it, and turns off twisted.web's parsing of form bodies,
which reads a whole body into memory (the application parses them).

I{Limitation}: the connection is closed right after the 413 is written; a
client still sending a large body may see a reset before it reads the 413
(no lingering close).
"""

from __future__ import annotations

from time import time
from urllib.parse import unquote_to_bytes
from typing import Any, cast

from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.web import http, server
from twisted.web.http_headers import Headers
from twisted.python import failure
from twisted.web.resource import IResource, _IEncodingResource

from txfastcgi.directwrite import (
    HOLD_LIMIT,
    endBatch,
    holdUntilBatchEnds,
    startBatch,
    writeThrough,
)

__all__ = [
    "DEFAULT_MAX_REQUEST_BODY_SIZE",
    "GatewaySite",
    "LimitedRequest",
]

DEFAULT_MAX_REQUEST_BODY_SIZE = 1 << 30
"""The default body limit: 1 GiB (Apache's C{LimitRequestBody} default)."""

_TOO_LARGE_BODY = (
    b"<html><head><title>413 - Content Too Large</title></head>"
    b"<body><h1>Content Too Large</h1>"
    b"<p>The request body is larger than this server accepts.</p></body></html>\n"
)

_TOO_LARGE = (
    b"HTTP/1.1 413 Content Too Large\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n"
    b"\r\n" % (len(_TOO_LARGE_BODY),)
) + _TOO_LARGE_BODY


_date: list[Any] = [None, b""]


def httpDate() -> bytes:
    """
    The current time as an HTTP date (C{Date} header), formatted at most
    once a second.
    """
    second = int(time())
    if _date[0] != second:
        _date[0] = second
        _date[1] = http.datetimeToString(second)  # type: ignore[no-untyped-call]
    value: bytes = _date[1]
    return value


class LimitedRequest(server.Request):
    """
    A L{server.Request} that refuses bodies larger than
    C{maxRequestBodySize} with 413 and closes the connection.

    The limit is the site's C{maxRequestBodySize} attribute when it has one
    (L{GatewaySite}), else this class's; L{None} means no limit.

    @ivar maxRequestBodySize: the default limit in bytes.
    @ivar bodyRefused: whether this request's body was refused.
    """

    maxRequestBodySize: int | None = DEFAULT_MAX_REQUEST_BODY_SIZE
    bodyRefused = False
    _bodyReceived = 0
    _bodyLimit: int | None = None
    _log = Logger()

    def _limit(self) -> int | None:
        site = getattr(self.channel, "site", None)
        limit: int | None = getattr(site, "maxRequestBodySize", self.maxRequestBodySize)
        return limit

    def gotLength(self, length: int | None) -> None:
        """
        Refuse a declared length over the limit; otherwise spool as usual.

        @param length: the Content-Length, or L{None} for a chunked body.
        """
        self._bodyLimit = self._limit()
        if length is not None and self._bodyLimit is not None and length > self._bodyLimit:
            # No "100 Continue" after the refusal: the channel sends it
            # after gotLength when the header is there.
            self.requestHeaders.removeHeader(b"Expect")
            self._refuse(length)
            return
        super().gotLength(length)  # type: ignore[no-untyped-call]

    def handleContentChunk(self, data: bytes) -> None:
        """
        Spool C{data} unless the body has grown past the limit.
        """
        if self.bodyRefused:
            return
        received = self._bodyReceived + len(data)
        self._bodyReceived = received
        limit = self._bodyLimit
        if limit is not None and received > limit:
            self._refuse(None)
            return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]

    def process(self) -> None:
        """
        As L{server.Request.process}, with the C{Date} header's value made
        once a second rather than once a request.
        """
        site = self.site = cast(Any, self.channel).site
        self.setHeader(b"Server", server.version)  # type: ignore[no-untyped-call]
        self.setHeader(b"Date", httpDate())  # type: ignore[no-untyped-call]
        self.prepath = []
        self.postpath = list(map(unquote_to_bytes, self.path[1:].split(b"/")))
        if self.path == b"*":
            self._handleStar()  # type: ignore[no-untyped-call]
            return
        try:
            target = site.getResourceFor(self)
            if _IEncodingResource.providedBy(target):
                encoder = target.getEncoder(self)
                if encoder is not None:
                    self._encoder = encoder
            self.render(target)  # type: ignore[no-untyped-call]
        except BaseException:
            self.processingFailed(failure.Failure())  # type: ignore[no-untyped-call]

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """
        Process the request, unless its body was refused.
        """
        if self.bodyRefused:
            return
        super().requestReceived(command, path, version)  # type: ignore[no-untyped-call]

    def _refuse(self, length: int | None) -> None:
        self.bodyRefused = True
        self.content = None
        channel: Any = self.channel
        self._log.info(
            "Refusing a request body over {limit} bytes (declared length "
            "{length}) from {peer}; answering 413",
            limit=self._bodyLimit,
            length=length,
            peer=str(channel.getPeer()),
        )
        if isinstance(channel, http.HTTPChannel):
            if isinstance(channel, DirectWriteChannel):
                channel.flushHeld()
            transport: Any = channel.transport
            transport.write(_TOO_LARGE)
            cast(Any, channel).loseConnection()
        else:
            # An HTTP/2 stream: reset it (RST_STREAM); the connection and
            # its other streams go on.
            channel.abortConnection()


class DirectWriteChannel(http.HTTPChannel):
    """
    An L{http.HTTPChannel} whose responses go straight to the socket when
    nothing is waiting to be sent (L{txfastcgi.directwrite}): no reactor
    round trip per response write.
    """

    _host: Any = None
    _peer: Any = None

    def getHost(self) -> Any:
        """
        The local address, asked of the transport once per connection
        (each request asks, and a TCP transport makes a system call).
        """
        host = self._host
        if host is None:
            host = self._host = super().getHost()  # type: ignore[no-untyped-call]
        return host

    def getPeer(self) -> Any:
        """
        The client's address, asked of the transport once per connection.
        """
        peer = self._peer
        if peer is None:
            peer = self._peer = super().getPeer()  # type: ignore[no-untyped-call]
        return peer

    _held: list[bytes] | None = None
    _heldSize = 0

    def dataReceived(self, data: bytes) -> None:
        """
        Handle bytes from the client as one write batch: a response made
        at once (an error page, a small file) leaves in one C{send}.
        """
        began = startBatch()
        try:
            super().dataReceived(data)  # type: ignore[no-untyped-call]
        finally:
            if began:
                endBatch()

    def write(self, data: bytes) -> None:
        """
        Write response bytes: held until the running write batch ends (or
        L{HOLD_LIMIT} bytes are held), else straight through.
        """
        held = self._held
        if held is None:
            if not holdUntilBatchEnds(self.flushHeld):
                writeThrough(self.transport, data)
                return
            held = self._held = []
            self._heldSize = 0
        held.append(data)
        self._heldSize += len(data)
        if self._heldSize >= HOLD_LIMIT:
            self.flushHeld()

    def writeSequence(self, iovec: list[bytes]) -> None:
        """
        Write response bytes given as a list.
        """
        self.write(b"".join(iovec))

    def writeHeaders(
        self, version: bytes, code: bytes, reason: bytes, headers: Any
    ) -> None:
        """
        Write the status line and headers through L{write} (twisted.web
        hands them to the transport itself, which would queue them and
        everything after them).
        """
        if not isinstance(headers, Headers):
            sanitized = Headers()
            for name, value in headers:
                sanitized.addRawHeader(name, value)
            headers = sanitized
        parts = [version, b" ", code, b" ", reason, b"\r\n"]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                parts.extend((name, b": ", value, b"\r\n"))
        parts.append(b"\r\n")
        self.write(b"".join(parts))

    def flushHeld(self) -> None:
        """
        Write what this channel holds, if anything.
        """
        held = self._held
        if held is None:
            return
        self._held = None
        writeThrough(self.transport, held[0] if len(held) == 1 else b"".join(held))

    def requestDone(self, request: Any) -> None:
        """
        Send what is held before the channel moves on (to a pipelined
        request, which may write to the transport itself, or to closing).
        """
        self.flushHeld()
        super().requestDone(request)  # type: ignore[no-untyped-call]

    def loseConnection(self) -> None:
        """
        Send what is held, then close the connection once it is written.
        """
        self.flushHeld()
        super().loseConnection()  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: failure.Failure = connectionDone) -> None:
        """
        Drop what is held: nobody can read it any more; stop the idle timer.
        """
        self._held = None
        super().connectionLost(reason)  # type: ignore[no-untyped-call]
        self._stopIdleTimer()

    # The idle timeout (twisted.web's TimeoutMixin) without a new timer per
    # request: twisted.web suspends the timeout while a request is handled
    # (setTimeout(None)) and sets it again when the request is done, which
    # cancels one DelayedCall and makes another per request.  Here one timer
    # lives as long as the connection: suspending leaves it armed (it does
    # nothing if it fires while suspended), and setting it again moves it.

    _idleTimer: Any = None

    def setTimeout(self, period: int | None) -> int | None:
        """
        Set the idle timeout to C{period} seconds, or suspend it (L{None}).

        @return: the previous period.
        """
        previous: int | None = self.timeOut
        self.timeOut = period
        timer = self._idleTimer
        if period is None:
            if timer is not None and not self.requests:
                # Not a suspension for a request: the channel is done with
                # its timer (connection lost, or handed over to HTTP/2).
                self._stopIdleTimer()
        elif timer is not None:
            timer.reset(period)
        else:
            self._idleTimer = self.callLater(period, self._idleTimedOut)  # type: ignore[no-untyped-call]
        return previous

    def resetTimeout(self) -> None:
        """
        Restart the idle countdown (the client sent something).
        """
        timer = self._idleTimer
        if timer is not None and self.timeOut is not None:
            timer.reset(self.timeOut)

    def _idleTimedOut(self) -> None:
        self._idleTimer = None
        if self.timeOut is not None:
            self.timeoutConnection()  # type: ignore[no-untyped-call]

    def _stopIdleTimer(self) -> None:
        timer, self._idleTimer = self._idleTimer, None
        if timer is not None and timer.active():
            timer.cancel()


def _directWriteChannelProtocol(factory: object) -> Any:
    """
    What C{HTTPFactory.protocol} makes, with a L{DirectWriteChannel}: the
    wrapper that switches to HTTP/2 when TLS negotiates it.
    """
    wrapper = getattr(http, "_GenericHTTPChannelProtocol", None)
    if wrapper is None:  # pragma: no cover - older or newer Twisted
        return DirectWriteChannel()  # type: ignore[no-untyped-call]
    return wrapper(DirectWriteChannel())  # type: ignore[no-untyped-call]


class GatewaySite(server.Site):
    """
    A L{server.Site} with L{LimitedRequest} and no form-body parsing.

    @ivar maxRequestBodySize: the body limit in bytes (L{None}: none).
    """

    protocol = _directWriteChannelProtocol

    def __init__(
        self,
        resource: IResource,
        *,
        maxRequestBodySize: int | None = DEFAULT_MAX_REQUEST_BODY_SIZE,
        requestFactory: Any = LimitedRequest,
        parsePOSTFormSubmission: bool = False,
        **kwargs: Any,
    ) -> None:
        """
        @param resource: the root resource.
        @param maxRequestBodySize: the body limit in bytes; L{None} for none.
        @param requestFactory: the request class (a L{LimitedRequest} for
            the limit to apply).
        @param parsePOSTFormSubmission: parse form bodies into
            C{request.args} (reads them into memory).
        @param kwargs: more L{server.Site} arguments (C{timeout},
            C{logPath}, ...).
        """
        super().__init__(  # type: ignore[no-untyped-call]
            resource,
            requestFactory,
            parsePOSTFormSubmission=parsePOSTFormSubmission,
            **kwargs,
        )
        self.maxRequestBodySize = maxRequestBodySize
