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

from typing import Any, cast

from twisted.logger import Logger
from twisted.web import http, server
from twisted.web.resource import IResource

from txfastcgi.directwrite import writeThrough

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

    def write(self, data: bytes) -> None:
        """
        Write response bytes.
        """
        writeThrough(self.transport, data)

    def writeSequence(self, iovec: list[bytes]) -> None:
        """
        Write response bytes given as a list.
        """
        writeThrough(self.transport, b"".join(iovec))


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
