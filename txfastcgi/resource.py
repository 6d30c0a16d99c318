# -*- test-case-name: tests.test_resource -*-
"""
L{FastCGIResource}: the CGI/1.1 gateway as a C{twisted.web} resource.

Put it anywhere in a resource tree of your own L{twisted.web.server.Site}
(preferably L{txfastcgi.site.GatewaySite}, which limits request bodies)::

    pool = ConnectionPool(reactor, "unix:/run/app.sock")
    root = Resource()
    root.putChild(b"app", FastCGIResource(pool, documentRoot=b"/srv/www"))
    site = GatewaySite(root, maxRequestBodySize=10 << 20)

Each request is forwarded to the application as one FastCGI Responder
request (L{txfastcgi.exchange.FastCGIExchange}) and its answer streamed back.

Paths
=====

The resource is a leaf.  Like C{twcgi}, C{SCRIPT_NAME} is the path that led to
it (C{request.prepath}) and C{PATH_INFO} the rest (C{request.postpath}), both
percent-decoded as RFC 3875 wants; C{REQUEST_URI} and C{QUERY_STRING} are
taken from the raw request-target.  Twisted decodes each segment on its own,
so C{%2F} would put a C{/} inside a segment and C{..} is not resolved
(STYLE.md P14): a request whose path info has a segment that is C{.} or
C{..}, or contains C{/} or NUL once decoded, is answered 404 and never reaches
the application (Apache's C{AllowEncodedSlashes Off} answers 404 too).  So
C{PATH_TRANSLATED}, the document root followed by C{PATH_INFO}, stays inside
the document root.

Internal redirects
==================

A response whose C{Location} is a local path (C{Location: /x?y}, with status
200) is not sent: the application's output is read to its end and dropped,
and the same L{Request} is served again, as a GET (a HEAD stays a HEAD) for
that path, by whatever resource the site has there (L{internalRedirect}).
The request object is adjusted in place: C{method}, C{uri}, C{path},
C{args}, C{prepath}/C{postpath}; its body becomes empty and the
C{Content-Length}, C{Content-Type} and C{Transfer-Encoding} request headers
are removed; response headers are untouched (nothing was written).  A
L{FastCGIResource} serving the redirected request adds C{REDIRECT_URL} (the
previous raw path), C{REDIRECT_QUERY_STRING} (the previous raw query) and
C{REDIRECT_STATUS=200} to its variables; C{REQUEST_URI} and C{QUERY_STRING}
are the new ones.  Twisted's access log shows the last URI served.  After
C{maxRedirects} (10) redirects of one request the answer is 500, logged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from io import BytesIO
from typing import Any, ClassVar, Sequence, cast
from urllib.parse import unquote_to_bytes as unquote

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, pages
from twisted.web.http import parse_qs
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from txfastcgi.cgienv import EnvironmentOptions, GatewayRequest, buildEnvironment
from txfastcgi.cgiresponse import DEFAULT_MAX_HEADER_BYTES, LOCAL_REDIRECT, ResponseHead
from txfastcgi.client import BodySource
from txfastcgi.exchange import DEFAULT_RETRY_AFTER, FastCGIExchange
from txfastcgi.pool import ConnectionPool

__all__ = [
    "DEFAULT_MAX_REDIRECTS",
    "FastCGIResource",
    "RedirectState",
    "gatewayRequestFor",
    "internalRedirect",
    "redirectStateOf",
    "requestBody",
    "safePathInfo",
]

DEFAULT_MAX_REDIRECTS = 10
"""Internal redirects allowed for one request before it is answered 500."""

_REDIRECT_ATTRIBUTE = "_txfastcgiRedirect"

log = Logger()


@dataclass(frozen=True, slots=True)
class RedirectState:
    """
    What an internally redirected request carries (see L{internalRedirect}).

    @ivar count: how many internal redirects led here.
    @ivar variables: the C{REDIRECT_*} variables for the application.
    """

    count: int
    variables: tuple[tuple[bytes, bytes], ...]


def redirectStateOf(request: Request) -> RedirectState | None:
    """
    @return: the L{RedirectState} of an internally redirected request, else
        L{None}.
    """
    state: RedirectState | None = getattr(request, _REDIRECT_ATTRIBUTE, None)
    return state


def safePathInfo(segments: Sequence[bytes]) -> bool:
    """
    Whether decoded path segments are safe to use as C{PATH_INFO}: none is
    C{.} or C{..}, and none holds C{/} (an encoded C{%2F}) or NUL.
    """
    for segment in segments:
        if segment == b".." or segment == b"." or b"/" in segment or b"\x00" in segment:
            return False
    return True


def _addressParts(address: object) -> tuple[bytes, int | None]:
    """
    @return: the host (as bytes) and port of a Twisted address; C{b"unix:"}
        and L{None} for a Unix socket.
    """
    if isinstance(address, (IPv4Address, IPv6Address)):
        return address.host.encode("ascii"), address.port
    if isinstance(address, UNIXAddress):
        return b"unix:", None
    return b"", None


def _isSecure(request: Any) -> bool:
    """
    C{request.isSecure()}, with the channel's answer kept on the channel
    (it asks zope.interface about its transport, for every request).
    """
    if getattr(request, "_forceSSL", False):
        return True
    channel = request.channel
    secure: bool | None = getattr(channel, "_txfastcgiSecure", None)
    if secure is None:
        secure = bool(request.isSecure())
        try:
            channel._txfastcgiSecure = secure
        except AttributeError:
            pass
    return secure


def requestBody(request: Request) -> tuple[BodySource, int]:
    """
    The body of a request as a L{FastCGIRequest} source, and its length.

    An in-memory spool (twisted.web uses one below 100 000 bytes) is given
    as bytes, so it goes out with the params in one write; a temporary-file
    spool is given as the file, rewound, and read in chunks; an empty body
    is L{None}.

    @return: C{(source, length)}.
    """
    content: Any = request.content
    if content is None:
        return None, 0
    if type(content) is BytesIO:
        data = content.getvalue()
        return (data or None), len(data)
    content.seek(0, 2)
    length: int = content.tell()
    content.seek(0, 0)
    return (content if length else None), length


def gatewayRequestFor(
    request: Request,
    *,
    contentLength: int | None,
    scriptFilename: bytes | None = None,
    documentRoot: bytes | None = None,
    serverName: bytes | None = None,
    extraVariables: tuple[tuple[bytes, bytes], ...] = (),
    paths: tuple[bytes, bytes, bytes | None] | None = None,
    trailingVariables: tuple[tuple[bytes, bytes], ...] = (),
) -> GatewayRequest | None:
    """
    Describe a twisted.web request for L{txfastcgi.cgienv}.

    @param request: the request, as traversal left it (C{prepath} leads to
        the gateway resource, C{postpath} is the path info).
    @param contentLength: the body's length (see L{requestBody}).
    @param scriptFilename: C{SCRIPT_FILENAME}.
    @param documentRoot: C{DOCUMENT_ROOT}, also the base of
        C{PATH_TRANSLATED}.
    @param serverName: C{SERVER_NAME}; by default the Host header's name,
        else the local address.
    @param extraVariables: more variables (a redirected request's
        C{REDIRECT_*} ones are added here).
    @param paths: C{(SCRIPT_NAME, PATH_INFO, PATH_TRANSLATED)} worked out by
        the caller (a router), instead of from C{prepath} and C{postpath}.
    @param trailingVariables: variables after all others, those of an
        authorizer included.
    @return: the L{GatewayRequest}, or L{None} when the path info is unsafe
        (L{safePathInfo}).
    """
    r: Any = request
    postpath: list[bytes] = r.postpath
    if postpath and not safePathInfo(postpath):
        return None
    pathTranslated: bytes | None
    if paths is not None:
        scriptName, pathInfo, pathTranslated = paths
    else:
        pathInfo = b"/" + b"/".join(postpath) if postpath else b""
        prepath: list[bytes] = r.prepath
        scriptName = b"/" + b"/".join(prepath) if prepath else b""
        pathTranslated = None
        if documentRoot is not None and pathInfo:
            pathTranslated = documentRoot.rstrip(b"/") + pathInfo
    serverAddress, serverPort = _addressParts(r.getHost())
    remoteAddress, remotePort = _addressParts(r.getClientAddress())
    headerList: list[tuple[bytes, bytes]] = []
    hosts: Sequence[bytes] | None = None
    for name, values in r.requestHeaders.getAllRawHeaders():
        # Twisted keeps names in canonical capitalisation.
        if name == b"Host":
            hosts = values
        elif name == b"Transfer-Encoding":
            continue
        for value in values:
            headerList.append((name, value))
    headers = tuple(headerList)
    if serverName is None:
        if hosts and hosts[0][:1] != b"[":
            # The common case, without Twisted's regular expression.
            serverName = hosts[0].partition(b":")[0]
        else:
            serverName = r.getRequestHostname()
    redirect: RedirectState | None = getattr(request, _REDIRECT_ATTRIBUTE, None)
    if redirect is not None:
        extraVariables = extraVariables + redirect.variables
    gateway = GatewayRequest(
        method=r.method,
        rawURI=r.uri,
        scriptName=scriptName,
        pathInfo=pathInfo,
        pathTranslated=pathTranslated,
        scriptFilename=scriptFilename,
        documentRoot=documentRoot,
        serverName=serverName or serverAddress,
        serverAddress=serverAddress,
        serverPort=serverPort or 0,
        serverProtocol=r.clientproto,
        remoteAddress=remoteAddress,
        remotePort=remotePort,
        secure=_isSecure(r),
        headers=headers,
        contentLength=contentLength,
        extraVariables=extraVariables,
    )
    # An authorizer in front of this resource (txfastcgi.authorizer) leaves
    # its Variable-* headers, REMOTE_USER and AUTH_TYPE on the request.
    authorization = getattr(request, "_txfastcgiAuthorization", None)
    if authorization is not None:
        gateway = authorization.applyTo(gateway)
    if trailingVariables:
        gateway = replace(
            gateway, extraVariables=gateway.extraVariables + trailingVariables
        )
    return gateway


def _renderError(request: Request, status: int, brief: str, detail: str) -> None:
    """Answer C{request} with a L{twisted.web.pages.errorPage}."""
    pages.errorPage(status, brief, detail).render(cast(Any, request))


def _refuseUnsafePath(
    request: Request, *, logger: Logger, detail: str = "No such child resource."
) -> None:
    """
    Log (to the refusing module's C{logger}) and answer 404 for a request
    whose path info is unsafe (L{safePathInfo}).
    """
    logger.info(
        "Refusing unsafe path info in {uri} (dot segment, encoded slash or NUL)",
        uri=cast(Any, request).uri.decode("latin-1"),
    )
    _renderError(request, http.NOT_FOUND, "No Such Resource", detail)


def internalRedirect(
    request: Request, location: bytes, *, maxRedirects: int = DEFAULT_MAX_REDIRECTS
) -> None:
    """
    Serve C{request} again for the local path C{location}, as a GET (a HEAD
    stays a HEAD) without a body, through the request's site (see the
    module docstring).  Nothing may have been written to the request, and no
    producer may be registered on it.

    @param request: the request, with its C{site} set (as twisted.web does).
    @param location: a local path, with an optional query: C{/x?y}.
    @param maxRedirects: past this many redirects of one request it is
        answered 500 (logged) instead.
    """
    r: Any = request
    previous: RedirectState | None = getattr(request, _REDIRECT_ATTRIBUTE, None)
    count = previous.count + 1 if previous is not None else 1
    if count > maxRedirects:
        log.error(
            "Internal redirect loop: {uri} redirected to {location} after "
            "{count} internal redirects; answering 500",
            uri=r.uri.decode("latin-1"),
            location=location.decode("latin-1"),
            count=count - 1,
        )
        _renderError(
            request,
            http.INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "The server could not handle this request.",
        )
        return
    oldPath, _, oldQuery = r.uri.partition(b"?")
    setattr(
        request,
        _REDIRECT_ATTRIBUTE,
        RedirectState(
            count,
            (
                (b"REDIRECT_URL", oldPath),
                (b"REDIRECT_QUERY_STRING", oldQuery),
                (b"REDIRECT_STATUS", b"200"),
            ),
        ),
    )
    path, _, query = location.partition(b"?")
    if r.method != b"HEAD":
        r.method = b"GET"
    r.uri = location
    r.path = path
    r.args = parse_qs(query, 1) if query else {}  # type: ignore[no-untyped-call]
    r.prepath = []
    r.postpath = list(map(unquote, path[1:].split(b"/")))
    r.content = BytesIO()
    headers = r.requestHeaders
    for name in (b"Content-Length", b"Content-Type", b"Transfer-Encoding"):
        headers.removeHeader(name)
    try:
        target = r.site.getResourceFor(request)
        r.render(target)
    except BaseException:
        r.processingFailed(Failure())  # type: ignore[no-untyped-call]


class _GatewayResource(Resource):
    """
    The options and the L{gatewayRequest} hook that L{FastCGIResource} and
    L{txfastcgi.authorizer.FastCGIAuthorizer} share (they document the
    attributes); C{_defaultEnvironmentOptions} applies when none are given.
    """

    isLeaf = True
    _defaultEnvironmentOptions: ClassVar[EnvironmentOptions] = EnvironmentOptions()

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        scriptFilename: bytes | None = None,
        documentRoot: bytes | None = None,
        serverName: bytes | None = None,
        environmentOptions: EnvironmentOptions | None = None,
        extraVariables: Sequence[tuple[bytes, bytes]] = (),
        maxHeaderBytes: int = DEFAULT_MAX_HEADER_BYTES,
        maxRedirects: int = DEFAULT_MAX_REDIRECTS,
        retryAfter: int = DEFAULT_RETRY_AFTER,
    ) -> None:
        """
        @param pool: the application's connection pool.
        @param scriptFilename: C{SCRIPT_FILENAME} (php-fpm needs it).
        @param documentRoot: C{DOCUMENT_ROOT}, base of C{PATH_TRANSLATED}.
        @param serverName: a fixed C{SERVER_NAME}.
        @param environmentOptions: see L{EnvironmentOptions}.
        @param extraVariables: variables for every request (C{SetEnv}).
        @param maxHeaderBytes: the cap on the response head.
        @param maxRedirects: internal redirects allowed per request.
        @param retryAfter: seconds for C{Retry-After}.
        """
        super().__init__()  # type: ignore[no-untyped-call]
        self.pool = pool
        self.scriptFilename = scriptFilename
        self.documentRoot = documentRoot
        self.serverName = serverName
        self.environmentOptions = (
            environmentOptions
            if environmentOptions is not None
            else self._defaultEnvironmentOptions
        )
        self.extraVariables = tuple(extraVariables)
        self.maxHeaderBytes = maxHeaderBytes
        self.maxRedirects = maxRedirects
        self.retryAfter = retryAfter

    def gatewayRequest(
        self, request: Request, contentLength: int | None
    ) -> GatewayRequest | None:
        """
        Describe C{request} for L{txfastcgi.cgienv}: the hook a subclass
        overrides to supply its own path variables (the configured server's
        L{txfastcgi.gateway} takes them from the request's route).

        @param request: the request being rendered.
        @param contentLength: the spooled body's length.
        @return: the description, or L{None} to refuse unsafe path info with
            404.
        """
        return gatewayRequestFor(
            request,
            contentLength=contentLength,
            scriptFilename=self.scriptFilename,
            documentRoot=self.documentRoot,
            serverName=self.serverName,
            extraVariables=self.extraVariables,
        )


class FastCGIResource(_GatewayResource):
    """
    A leaf resource that forwards each request to a FastCGI Responder and
    streams its answer back (see the module docstring and
    L{txfastcgi.exchange}).

    Failures answer as SPEC.md Decision 8 says (503 with C{Retry-After} for
    an overloaded application or pool, 502, 504); error bodies come from
    L{twisted.web.pages.errorPage} and reveal nothing internal, the details
    go to the log.

    @ivar pool: the application's connection pool.
    @ivar scriptFilename: C{SCRIPT_FILENAME}, if any.
    @ivar documentRoot: C{DOCUMENT_ROOT} and the base of C{PATH_TRANSLATED}.
    @ivar serverName: C{SERVER_NAME}, or L{None} to take the Host header's.
    @ivar environmentOptions: see L{EnvironmentOptions}.
    @ivar extraVariables: variables added to every request.
    @ivar maxHeaderBytes: the cap on an application's response head.
    @ivar maxRedirects: see L{DEFAULT_MAX_REDIRECTS}.
    @ivar retryAfter: seconds in C{Retry-After} on 503s that carry one.
    """

    def render(self, request: Request) -> bytes | int:
        """
        Forward C{request} to the application.

        @return: C{NOT_DONE_YET}; the answer is written as it arrives.
        """
        body, length = requestBody(request)
        gateway = self.gatewayRequest(request, length)
        if gateway is None:
            _refuseUnsafePath(request, logger=log)
            return NOT_DONE_YET
        exchange = FastCGIExchange(
            request,
            self.pool,
            buildEnvironment(gateway, self.environmentOptions),
            body=body,
            onHead=self._onHead,
            maxHeaderBytes=self.maxHeaderBytes,
            retryAfter=self.retryAfter,
        )
        exchange.start()
        return NOT_DONE_YET

    def _onHead(self, exchange: FastCGIExchange, head: ResponseHead) -> None:
        if head.kind is LOCAL_REDIRECT and not exchange.clientGone:
            assert head.location is not None
            exchange.discard()
            internalRedirect(exchange.request, head.location, maxRedirects=self.maxRedirects)
        else:
            exchange.respond(head)
