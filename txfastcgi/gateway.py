# -*- test-case-name: tests.test_gateway -*-
"""
L{GatewayResource}: the root resource of the server configured by an
httpd.conf.  Every request is routed in one step by
L{txfastcgi.routing.Router} and served by a leaf resource chosen for it::

    config = readConfig("/etc/txfastcgi/httpd.conf")
    pools = {path: ConnectionPool(reactor, endpointFor(path)) for path in ...}
    site = GatewaySite(GatewayResource(config, pools=pools, reactor=reactor))

What serves each kind of L{Route}
=================================

  - L{RouteKind.FASTCGI}: the application's pool (C{pools[route.app]}), as a
    L{FastCGIResource} whose C{SCRIPT_NAME}, C{PATH_INFO},
    C{PATH_TRANSLATED} and C{SCRIPT_FILENAME} are the route's (the request's
    C{prepath}/C{postpath} are also set to match), C{DOCUMENT_ROOT} the
    configuration's, C{SERVER_NAME} the C{ServerName} (else the Host
    header's), extra variables the merged C{SetEnv}/C{PassEnv}/C{UnsetEnv}
    rules, and C{-pass-header} names from C{config.optionsFor(app)}.  One
    such resource per application is built once and reused.  A route whose
    application has no pool is a configuration mistake: 500, logged.  A
    dynamic application (L{Route.dynamic}) gets its pool from
    C{dynamicPools} (L{txfastcgi.dynamic}) and the C{FCGIConfig
    -pass-header} names; without C{dynamicPools} it is 404, logged.
  - L{RouteKind.CGI}: a L{twisted.web.twcgi.CGIScript} subclass working
    around STYLE.md P19.  The environment is built by
    L{txfastcgi.cgienv.buildEnvironment} (the same variables a FastCGI
    application gets, plus C{PATH} from the server's environment unless
    C{SetEnv} gives one) instead of twcgi's, which raises C{TypeError} on
    path info and hands the script the server's whole environment.  The
    script runs in its own directory, as Apache's mod_cgi does, by way of
    C{/bin/sh -c 'cd -- "$0" && exec "$@"'} spawned with the server's
    working directory, so Twisted uses C{posix_spawnp} rather than forking
    the server process (P19: ~6x faster).  The process is handled by
    L{txfastcgi.cgiscript.StreamingCGIProcessProtocol}: the spooled request
    body goes to the script's standard input a chunk at a time, with
    backpressure, then standard input is closed; a script that stops
    reading ends the transfer quietly; a client going away stops it and
    sends the script C{SIGTERM}; standard error is logged by lines.  The
    response head is parsed and applied by the same rules as a FastCGI
    application's (C{Status}, C{Location} redirects, internal redirects,
    hop-by-hop headers dropped, 502 for a malformed or oversized head).
  - L{RouteKind.STATIC}: a L{twisted.web.static.File} for that one file
    with the route's media type: ranges, C{If-Modified-Since}, C{HEAD}.
  - L{RouteKind.DIRECTORY}: the index file's route, served as an internal
    redirect (C{REDIRECT_URL}, C{REDIRECT_STATUS}, C{REDIRECT_QUERY_STRING}
    for FastCGI and CGI); without one, a listing (the router allows it only
    with C{Options Indexes}).
  - L{RouteKind.ACTION}: the action script's route, likewise as an internal
    redirect (mod_actions' C{ap_internal_redirect_handler}).
  - L{RouteKind.REDIRECT}: 301 to the path with its trailing slash.
  - L{RouteKind.NOT_FOUND}, L{RouteKind.FORBIDDEN},
    L{RouteKind.SERVER_ERROR}: L{twisted.web.pages.errorPage} with 404, 403
    or 500; the reason goes to the log, not to the client.

Authorizers
===========

A route whose merged configuration names C{FastCgiAccessChecker},
C{FastCgiAuthenticator} or C{FastCgiAuthorizer} is wrapped in a
L{FastCGIAuthorizer} for each, in Apache's phase order (access checker
outermost, then authenticator, then authorizer), each with the pool of its
application (none: 500, so nothing is served unchecked).  For an Action or
index, the sections of the original URL and of the script both count
(Apache 1.3 checks internal redirects again).  The C{*Authoritative} flags
are not implemented: there are no other authentication modules to fall
back on, so every authorizer is authoritative.

Per-section body limits
=======================

L{txfastcgi.site.LimitedRequest} enforces the site's limit while the body
arrives.  A C{LimitRequestBody} in the sections of the route that serves
the request is checked here, on the spooled body, before anything is
forwarded: a longer body is answered 413.  So a per-section limit larger
than the site's cannot let more through, and a smaller one still lets the
body up to the site's limit be spooled (to memory or a temporary file)
before it is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import unquote_to_bytes

from twisted.internet.interfaces import IReactorProcess
from twisted.logger import Logger
from twisted.web import http, pages, static
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.twcgi import CGIScript

from txfastcgi.authorizer import FastCGIAuthorizer
from txfastcgi.cgienv import EnvironmentOptions, GatewayRequest, buildEnvironment
from txfastcgi.cgiresponse import DEFAULT_MAX_HEADER_BYTES
from txfastcgi.cgiscript import StreamingCGIProcessProtocol
from txfastcgi.config.model import AuthorizerConfig, ServerConfig
from txfastcgi.pool import ConnectionPool
from txfastcgi.resource import FastCGIResource, gatewayRequestFor, requestBody
from txfastcgi.routing import MergedConfig, Route, RouteKind, Router

__all__ = [
    "ROUTE_CACHE_SECONDS",
    "DEFAULT_CGI_PATH",
    "GatewayResource",
    "ROUTE_ATTRIBUTE",
    "routeOf",
]

ROUTE_CACHE_SECONDS = 1.0
"""How long the configured server reuses the route of a URL path before it
looks at the file system again (see L{txfastcgi.routing})."""

ROUTE_ATTRIBUTE = "_txfastcgiRoute"
"""The request attribute holding the L{Route} that serves it."""

DEFAULT_CGI_PATH = "/usr/local/bin:/usr/bin:/bin"
"""C{PATH} for CGI scripts when the server has none (Apache's default)."""

_SHELL = "/bin/sh"
_IN_DIRECTORY = 'cd -- "$0" && exec "$@"'

_CACHE_LIMIT = 4096

log = Logger()


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _segments(path: str) -> list[bytes]:
    """
    C{"/a/b"} gives C{[b"a", b"b"]}, C{""} gives C{[]}.
    """
    if not path:
        return []
    return [_bytes(s) for s in path[1:].split("/")]


def routeOf(request: Request) -> Route | None:
    """
    @return: the L{Route} serving C{request} (set by L{GatewayResource}),
        or L{None}.
    """
    route: Route | None = getattr(request, ROUTE_ATTRIBUTE, None)
    return route


class _Served:
    """
    What a leaf needs about its request beyond the request itself: the route
    and the variables for the application.
    """

    __slots__ = ("route", "variables", "redirectVariables")

    def __init__(
        self,
        route: Route,
        variables: tuple[tuple[bytes, bytes], ...],
        redirectVariables: tuple[tuple[bytes, bytes], ...],
    ) -> None:
        self.route = route
        self.variables = variables
        self.redirectVariables = redirectVariables


_SERVED_ATTRIBUTE = "_txfastcgiServed"


def _gatewayRequest(
    request: Request,
    *,
    contentLength: int | None,
    documentRoot: bytes,
    serverName: bytes | None,
) -> GatewayRequest | None:
    """
    The request's description for L{txfastcgi.cgienv}, with the path
    variables of its route (L{gatewayRequestFor} adds the variables granted
    by authorizers).
    """
    served: _Served = getattr(request, _SERVED_ATTRIBUTE)
    route = served.route
    # An earlier internal redirect's variables come after the authorizer's:
    # this one is the latest, as Apache's REDIRECT_URL names the previous
    # request.
    return gatewayRequestFor(
        request,
        contentLength=contentLength,
        scriptFilename=_bytes(route.filename) if route.filename is not None else None,
        documentRoot=documentRoot,
        serverName=serverName,
        extraVariables=served.variables,
        paths=(
            _bytes(route.scriptName),
            _bytes(route.pathInfo),
            _bytes(route.pathTranslated) if route.pathTranslated is not None else None,
        ),
        trailingVariables=served.redirectVariables,
    )


def _notFound(request: Request) -> None:
    pages.errorPage(http.NOT_FOUND, "No Such Resource", "No such resource.").render(
        cast(Any, request)
    )


class _RoutedFastCGIResource(FastCGIResource):
    """
    A L{FastCGIResource} taking its path variables from the request's
    route (C{PATH_TRANSLATED} goes through the aliases, which
    L{gatewayRequestFor} cannot know) and the authorizers' variables.
    """

    def gatewayRequest(
        self, request: Request, contentLength: int | None
    ) -> GatewayRequest | None:
        """
        The request's description, with its route's path variables.
        """
        assert self.documentRoot is not None
        return _gatewayRequest(
            request,
            contentLength=contentLength,
            documentRoot=self.documentRoot,
            serverName=self.serverName,
        )


class _CGIScript(CGIScript):
    """
    A CGI script run with L{txfastcgi.cgienv}'s environment, in its own
    directory, through C{posix_spawnp} (see the module docstring).
    """

    def __init__(
        self,
        filename: str,
        *,
        reactor: IReactorProcess,
        documentRoot: bytes,
        serverName: bytes | None,
        path: bytes,
    ) -> None:
        super().__init__(filename, reactor=reactor)  # type: ignore[no-untyped-call]
        self._documentRoot = documentRoot
        self._serverName = serverName
        self._path = path

    def render(self, request: Request) -> bytes | int:
        """
        Run the script for C{request}.

        @return: C{NOT_DONE_YET}.
        """
        _, length = requestBody(request)
        gateway = _gatewayRequest(
            request,
            contentLength=length,
            documentRoot=self._documentRoot,
            serverName=self._serverName,
        )
        if gateway is None:
            _notFound(request)
            return NOT_DONE_YET
        env = {b"PATH": self._path}
        env.update(buildEnvironment(gateway, _CGI_OPTIONS))
        query = cast(Any, request).uri.partition(b"?")[2]
        qargs = []
        if query and b"=" not in query:
            # The ISINDEX convention (RFC 3875 section 4.4), as mod_cgi.
            qargs = [unquote_to_bytes(arg) for arg in query.split(b"+")]
        self.runProcess(env, request, qargs)
        return NOT_DONE_YET

    def runProcess(self, env: Any, request: Any, qargs: Any = ()) -> None:
        """
        Spawn the script in its directory without forking the server.

        @param env: the environment.
        @param request: the request.
        @param qargs: command-line arguments.
        """
        filename: str = self.filename
        protocol = StreamingCGIProcessProtocol(request, filename)
        self._reactor.spawnProcess(
            protocol,
            _SHELL,
            [_SHELL, "-c", _IN_DIRECTORY, os.path.dirname(filename), filename, *qargs],
            env,
            None,
        )


_CGI_OPTIONS = EnvironmentOptions()


class _StaticFile(static.File):
    """
    A L{static.File} whose own error pages come from L{twisted.web.pages}
    (STYLE.md P18) and which shares one registry.
    """

    childNotFound = pages.notFound()
    forbidden = pages.forbidden()


_REGISTRY = static.Registry()  # type: ignore[no-untyped-call]


class _PermanentRedirect(Resource):
    """
    301 to a local path (mod_dir adding a directory's slash).
    """

    isLeaf = True

    def __init__(self, location: bytes) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._location = location

    def render(self, request: Request) -> bytes:
        """
        @return: a short HTML body.
        """
        r: Any = request
        r.setResponseCode(http.MOVED_PERMANENTLY)
        r.setHeader(b"location", self._location)
        r.setHeader(b"content-type", b"text/html; charset=utf-8")
        escaped = (
            self._location.replace(b"&", b"&amp;").replace(b"<", b"&lt;").replace(b'"', b"&quot;")
        )
        return b'<html><body><a href="%s">Moved Permanently</a></body></html>\n' % (escaped,)


class GatewayResource(Resource):
    """
    The root resource: routes each request with a L{Router} and serves it
    with a leaf resource (see the module docstring).

    @ivar config: the configuration.
    @ivar router: the router.
    @ivar pools: the connection pools of the applications, by path-name.
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        pools: Mapping[str, ConnectionPool],
        reactor: IReactorProcess,
        router: Router | None = None,
        maxHeaderBytes: int = DEFAULT_MAX_HEADER_BYTES,
        environ: Mapping[str, str] | None = None,
        dynamicPools: Callable[[str], ConnectionPool] | None = None,
    ) -> None:
        """
        @param config: the server's configuration.
        @param pools: a L{ConnectionPool} for each C{AppClass} and
            C{ExternalAppClass} (and authorizer application), by path-name.
        @param reactor: spawns CGI scripts.
        @param router: the router; by default one for C{config}.
        @param maxHeaderBytes: the cap on an application's response head.
        @param environ: the server's environment, for CGI scripts' C{PATH};
            C{os.environ} by default.
        @param dynamicPools: gives the pool of a dynamic application (a
            route with L{Route.dynamic}) by its file name; C{None}: dynamic
            applications are not served (404, logged).
        """
        super().__init__()  # type: ignore[no-untyped-call]
        self.config = config
        self.router = (
            router
            if router is not None
            else Router(config, cacheSeconds=ROUTE_CACHE_SECONDS)
        )
        self.pools = pools
        self._reactor = reactor
        self._maxHeaderBytes = maxHeaderBytes
        self._documentRoot = _bytes(config.documentRootPath)
        self._serverName = (
            config.serverName.value.encode("idna") if config.serverName is not None else None
        )
        environ = os.environ if environ is None else environ
        self._cgiPath = _bytes(environ.get("PATH") or DEFAULT_CGI_PATH)
        self._dynamicPools = dynamicPools
        self._fastcgi: dict[str, _RoutedFastCGIResource] = {}
        self._variables: dict[MergedConfig, tuple[tuple[bytes, bytes], ...]] = {}

    # -- traversal

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        """
        Route the whole path of C{request} (C{path} is its first segment).

        @return: the leaf resource that serves it.
        """
        r: Any = request
        sitepath: list[bytes] = getattr(r, "sitepath", None) or []
        segments = r.prepath[len(sitepath) :] + r.postpath
        return cast(IResource, self.resourceFor(request, self.router.route(segments, r.uri)))

    getChild = getChildWithDefault

    def render(self, request: Request) -> bytes | int:
        """
        Serve a request that reached the root with no path left (only when
        mounted below another resource).

        @return: what the leaf returns.
        """
        leaf = self.getChildWithDefault(b"", request)
        return cast(Any, leaf).render(request)  # type: ignore[no-any-return]

    # -- leaves

    def resourceFor(self, request: Request, route: Route) -> Resource:
        """
        The leaf resource serving C{request} along C{route}; the request's
        C{prepath}/C{postpath} are set to match it.

        @param request: the request.
        @param route: its route.
        @return: the resource.
        """
        r: Any = request
        served = route.served
        redirected = served is not route
        if served.kind in (RouteKind.FASTCGI, RouteKind.CGI):
            r.prepath = _segments(served.scriptName)
            r.postpath = _segments(served.pathInfo)
        else:
            r.postpath = []
        setattr(request, ROUTE_ATTRIBUTE, served)
        leaf = self._leaf(request, served)
        if leaf is None:
            return self._refusal(request, served)
        config = served.config
        assert config is not None
        limit = config.limitRequestBody
        if limit and _spooledLength(request) > limit:
            log.info(
                "Refusing a request body over {limit} bytes for {uri} "
                "(LimitRequestBody); answering 413",
                limit=limit,
                uri=r.uri.decode("latin-1"),
            )
            return pages.errorPage(
                http.REQUEST_ENTITY_TOO_LARGE,
                "Content Too Large",
                "The request body is larger than this resource accepts.",
            )
        if served.kind in (RouteKind.FASTCGI, RouteKind.CGI):
            setattr(
                request,
                _SERVED_ATTRIBUTE,
                _Served(
                    served,
                    self._variablesFor(config),
                    _redirectVariables(r.uri) if redirected else (),
                ),
            )
        return self._authorized(request, leaf, route, served)

    def _leaf(self, request: Request, route: Route) -> Resource | None:
        kind = route.kind
        if kind is RouteKind.FASTCGI:
            assert route.app is not None
            return self._fastcgiResource(route.app, dynamic=route.dynamic)
        if kind is RouteKind.STATIC:
            assert route.filename is not None and route.mimeType is not None
            resource = _StaticFile(
                route.filename, defaultType=route.mimeType, registry=_REGISTRY
            )
            resource.type = route.mimeType
            resource.encoding = None
            return resource
        if kind is RouteKind.CGI:
            assert route.filename is not None
            return _CGIScript(
                route.filename,
                reactor=self._reactor,
                documentRoot=self._documentRoot,
                serverName=self._serverName,
                path=self._cgiPath,
            )
        if kind is RouteKind.DIRECTORY:
            assert route.filename is not None
            listing: Resource = static.File(route.filename).directoryListing()  # type: ignore[no-untyped-call]
            return listing
        if kind is RouteKind.REDIRECT:
            assert route.location is not None
            return _PermanentRedirect(route.location)
        return None

    def _refusal(self, request: Request, route: Route) -> Resource:
        uri = cast(Any, request).uri.decode("latin-1")
        if route.kind is RouteKind.FORBIDDEN:
            log.info("Forbidden: {uri}: {reason}", uri=uri, reason=route.reason)
            return pages.errorPage(
                http.FORBIDDEN, "Forbidden", "You may not access this resource."
            )
        if route.kind is RouteKind.NOT_FOUND:
            log.info("Not found: {uri}: {reason}", uri=uri, reason=route.reason)
            return pages.errorPage(http.NOT_FOUND, "No Such Resource", "No such resource.")
        log.error("Cannot serve {uri}: {reason}", uri=uri, reason=route.reason)
        return _serverError()

    def _fastcgiResource(self, app: str, *, dynamic: bool = False) -> Resource:
        resource = self._fastcgi.get(app)
        if resource is not None:
            return resource
        passHeaders: tuple[str, ...]
        if dynamic:
            if self._dynamicPools is None:
                log.info(
                    "Not found: {appClass} would be a dynamic FastCGI "
                    "application, but dynamic applications are not enabled",
                    appClass=app,
                )
                return pages.errorPage(
                    http.NOT_FOUND, "No Such Resource", "No such resource."
                )
            dynamicPool: ConnectionPool | None = self._dynamicPools(app)
            pool = dynamicPool
            passHeaders = self.config.dynamic.passHeaders
        else:
            pool = self.pools.get(app)
            passHeaders = self.config.optionsFor(app).passHeaders
        if pool is None:
            log.error(
                "No connection pool for the FastCGI application {appClass}; answering 500",
                appClass=app,
            )
            return _serverError()
        resource = _RoutedFastCGIResource(
            pool,
            documentRoot=self._documentRoot,
            serverName=self._serverName,
            environmentOptions=EnvironmentOptions(
                passHeaders=frozenset(name.lower().encode("ascii") for name in passHeaders)
            ),
            maxHeaderBytes=self._maxHeaderBytes,
        )
        self._fastcgi[app] = resource
        return resource

    def _variablesFor(self, config: MergedConfig) -> tuple[tuple[bytes, bytes], ...]:
        variables = self._variables.get(config)
        if variables is None:
            variables = tuple((_bytes(name), _bytes(value)) for name, value in config.variables)
            if len(self._variables) >= _CACHE_LIMIT:
                self._variables.clear()
            self._variables[config] = variables
        return variables

    def _authorized(
        self, request: Request, leaf: Resource, route: Route, served: Route
    ) -> Resource:
        """
        Wrap C{leaf} in the authorizers the sections of C{route} (and of
        C{served}, for an Action or index) name.
        """
        configs = [route.config] if route.config is served.config else [route.config, served.config]
        phases: list[AuthorizerConfig] = []
        for config in configs:
            if config is None:
                continue
            for auth in (config.accessChecker, config.authenticator, config.authorizer):
                if auth is not None and auth not in phases:
                    phases.append(auth)
        if not phases:
            return leaf
        wrapped = leaf
        for auth in reversed(phases):
            pool = self.pools.get(auth.path)
            if pool is None:
                log.error(
                    "No connection pool for the FastCGI {role} {appClass}; answering 500",
                    role=auth.role.value,
                    appClass=auth.path,
                )
                return _serverError()
            wrapped = FastCGIAuthorizer(
                pool,
                cast(IResource, wrapped),
                documentRoot=self._documentRoot,
                serverName=self._serverName,
                extraVariables=self._variablesFor(served.config) if served.config else (),
                maxHeaderBytes=self._maxHeaderBytes,
            )
        return wrapped


def _serverError() -> Resource:
    return pages.errorPage(
        http.INTERNAL_SERVER_ERROR,
        "Internal Server Error",
        "The server could not handle this request.",
    )


def _redirectVariables(uri: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """
    The variables of an internal redirect from C{uri} (Apache's
    C{REDIRECT_URL}, C{REDIRECT_STATUS}, and C{REDIRECT_QUERY_STRING} when
    there is a query).
    """
    path, question, query = uri.partition(b"?")
    variables: tuple[tuple[bytes, bytes], ...] = (
        (b"REDIRECT_URL", path),
        (b"REDIRECT_STATUS", b"200"),
    )
    if question:
        variables += ((b"REDIRECT_QUERY_STRING", query),)
    return variables


def _spooledLength(request: Request) -> int:
    """
    The length of the spooled request body.
    """
    content: Any = cast(Any, request).content
    if content is None:
        return 0
    position = content.tell()
    content.seek(0, 2)
    length: int = content.tell()
    content.seek(position, 0)
    return length
