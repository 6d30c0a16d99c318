# -*- test-case-name: tests.test_authorizer -*-
"""
L{FastCGIAuthorizer}: a FastCGI Authorizer (FastCGI 1.0 section 6.3, SPEC.md
section 7.5) in front of any C{twisted.web} resource::

    authorizer = ConnectionPool(reactor, "unix:/run/auth.sock")
    app = ConnectionPool(reactor, "unix:/run/app.sock")
    root.putChild(b"files", FastCGIAuthorizer(authorizer, File("/srv/files")))
    root.putChild(
        b"app", FastCGIAuthorizer(authorizer, FastCGIResource(app))
    )

The authorizer application
==========================

For each request the Authorizer gets the request's CGI environment without
C{CONTENT_LENGTH}, C{PATH_INFO}, C{PATH_TRANSLATED} and C{SCRIPT_NAME}
(L{buildAuthorizerEnvironment}), and an empty STDIN: the request body never
reaches it.  The body spool (C{request.content}) is not touched, so the
resource that serves the request still reads all of it from the start.

Unlike a responder, the Authorizer gets the C{Authorization} header (as
C{HTTP_AUTHORIZATION}) by default: checking credentials is its job.  Give
C{environmentOptions=EnvironmentOptions()} to withhold it (SPEC.md
Decision 14).

Its answer:

  - B{200} (C{Status: 200}, or no Status at all): access is granted.  Once
    the application has ended the request (END_REQUEST), the wrapped
    resource serves the request (see I{Delegation} below).  Headers named
    C{Variable-NAME: value} are kept on the request as L{Authorization}
    variables named C{NAME}: the prefix is stripped, as mod_fastcgi does (the
    FastCGI specification's example would have kept C{AUTH-METHOD}; a CGI
    variable name then has its other characters made C{_} by
    L{txfastcgi.cgienv}, so C{Variable-AUTH-METHOD} reaches a responder as
    C{AUTH_METHOD}).  Other headers and the body of a 200 are ignored.  An
    application that fails after its 200 head (dies, breaks the protocol,
    times out) does not grant anything: the answer is 502.
  - C{Variable-REMOTE_USER} and C{Variable-AUTH_TYPE} (names matched without
    regard to case, C{-} or C{_}) are the user and the method the authorizer
    established: they become C{REMOTE_USER} and C{AUTH_TYPE} of responders
    behind it (L{Authorization.remoteUser}, L{Authorization.authType}), the
    variables RFC 3875 reserves for exactly that.  Any other name that
    L{txfastcgi.cgienv} owns (C{SCRIPT_NAME}, C{HTTPS}, ...) is kept on the
    request but never overrides the server's value.
  - B{A local redirect} (C{Location: /login}, status 200): access is not
    granted; the request is served again, as a GET, for that path
    (L{internalRedirect}, loop-guarded), so an authorizer can show a login
    page.  mod_fastcgi refused any redirect from an authorizer with 401;
    the FastCGI specification says nothing about local redirects.
  - B{Any other status} (401 with C{WWW-Authenticate}, 403, a 302 to a login
    URL...): access is denied and the authorizer's own response goes to the
    client: its status, headers and body, streamed like a responder's
    (L{FastCGIExchange.respond}; a client redirect without a body gets the
    standard one).
  - B{Failures} answer as for a responder (SPEC.md Decision 8): unreachable
    or overloaded 503, malformed or dead 502, too slow 504.  Nothing is
    granted.

Variables on the request
========================

Granted variables are stored on the request (the same L{Request} object
travels through traversal, rendering and internal redirects) as an
L{Authorization} under the attribute named L{AUTHORIZATION_ATTRIBUTE};
L{authorizationOf} reads it, for any resource.  Nested authorizers merge
their variables (the inner one's win).  An internal redirect keeps them: the
request is the same, and so is who made it.

L{FastCGIResource} adds them to its application's environment
(C{txfastcgi.resource.gatewayRequestFor} applies L{Authorization.applyTo}).

Delegation
==========

The authorizer is a leaf: traversal stops at it, with C{request.postpath}
holding the rest of the path.  After access is granted the wrapped resource
is traversed from there with L{getChildForRequest} (its
C{getChildWithDefault}, segment by segment, moving segments from
C{postpath} to C{prepath}), then rendered with C{request.render}, as the site
itself would have done.  So a wrapped tree sees the same C{prepath} and
C{postpath} as if it were mounted where the authorizer is, and nothing of
the wrapped tree is looked up (no C{getChild}, no file system access) for a
request that was not granted.  A request whose path under the authorizer has
a C{.} or C{..} segment, an encoded slash or NUL is answered 404 before the
authorizer is asked (L{txfastcgi.resource.gatewayRequestFor}).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence, cast

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import IResource, getChildForRequest
from twisted.web.server import NOT_DONE_YET, Request

from txfastcgi.cgienv import (
    EnvironmentOptions,
    GatewayRequest,
    buildAuthorizerEnvironment,
)
from txfastcgi.cgiresponse import DEFAULT_MAX_HEADER_BYTES, LOCAL_REDIRECT, ResponseHead
from txfastcgi.exchange import DEFAULT_RETRY_AFTER, FastCGIExchange
from txfastcgi.fcgi.constants import Role
from txfastcgi.pool import ConnectionPool
from txfastcgi.resource import (
    DEFAULT_MAX_REDIRECTS,
    FastCGIResource,
    _GatewayResource,
    _refuseUnsafePath,
    _renderError,
    internalRedirect,
)

__all__ = [
    "AUTHORIZATION_ATTRIBUTE",
    "Authorization",
    "AuthorizedFastCGIResource",
    "FastCGIAuthorizer",
    "authorizationFromHead",
    "authorizationOf",
    "authorizedGatewayRequest",
]

AUTHORIZATION_ATTRIBUTE = "_txfastcgiAuthorization"
"""The name of the request attribute holding the granted L{Authorization}."""

_VARIABLE_PREFIX = b"variable-"
_REMOTE_USER = b"REMOTE_USER"
_AUTH_TYPE = b"AUTH_TYPE"

log = Logger()


@dataclass(frozen=True, slots=True)
class Authorization:
    """
    What an Authorizer granted a request: the variables for the
    applications behind it.

    @ivar variables: C{(NAME, value)} pairs from C{Variable-NAME} headers,
        prefix stripped, in the order sent (C{REMOTE_USER} and C{AUTH_TYPE}
        excepted).
    @ivar remoteUser: C{REMOTE_USER}, if the authorizer set it.
    @ivar authType: C{AUTH_TYPE}, if the authorizer set it.
    """

    variables: tuple[tuple[bytes, bytes], ...] = ()
    remoteUser: bytes | None = None
    authType: bytes | None = None

    def mergedWith(self, later: Authorization) -> Authorization:
        """
        Combine with what a later (inner) authorizer granted: its variables
        come after these (so they win in the environment), its user and
        method replace these when set.

        @param later: the later authorization.
        @return: the combination.
        """
        return Authorization(
            self.variables + later.variables,
            later.remoteUser if later.remoteUser is not None else self.remoteUser,
            later.authType if later.authType is not None else self.authType,
        )

    def applyTo(self, gateway: GatewayRequest) -> GatewayRequest:
        """
        Add these variables to a request's description for
        L{txfastcgi.cgienv}: the variables after its extra variables, and
        C{REMOTE_USER}/C{AUTH_TYPE} when set.  Applying twice changes
        nothing more.

        @param gateway: the request's description.
        @return: the description with the authorization applied.
        """
        extras = gateway.extraVariables
        variables = self.variables
        if variables and extras[len(extras) - len(variables) :] != variables:
            extras = extras + variables
        return replace(
            gateway,
            extraVariables=extras,
            remoteUser=self.remoteUser if self.remoteUser is not None else gateway.remoteUser,
            authType=self.authType if self.authType is not None else gateway.authType,
        )


def authorizationOf(request: Request) -> Authorization | None:
    """
    @param request: a request.
    @return: what the authorizers in front of the resource serving
        C{request} granted, or L{None} when none did.
    """
    authorization: Authorization | None = getattr(request, AUTHORIZATION_ATTRIBUTE, None)
    return authorization


def authorizedGatewayRequest(request: Request, gateway: GatewayRequest) -> GatewayRequest:
    """
    Apply the request's L{Authorization}, if any, to its description.

    @param request: the request.
    @param gateway: its description (from L{txfastcgi.resource.gatewayRequestFor}).
    @return: C{gateway} with the variables, C{REMOTE_USER} and C{AUTH_TYPE}.
    """
    authorization = authorizationOf(request)
    if authorization is None:
        return gateway
    return authorization.applyTo(gateway)


def _grant(request: Request, authorization: Authorization) -> None:
    """
    Store C{authorization} on C{request}, merged with an earlier one.
    """
    previous = authorizationOf(request)
    if previous is not None:
        authorization = previous.mergedWith(authorization)
    setattr(request, AUTHORIZATION_ATTRIBUTE, authorization)


def authorizationFromHead(head: ResponseHead) -> Authorization:
    """
    The L{Authorization} an Authorizer's 200 response grants: its
    C{Variable-NAME} headers (the prefix matched without regard to case).

    @param head: the response head.
    @return: the authorization; headers without the prefix, or with nothing
        after it, are left out.
    """
    variables: list[tuple[bytes, bytes]] = []
    remoteUser: bytes | None = None
    authType: bytes | None = None
    for name, value in head.headers:
        if name[:9].lower() != _VARIABLE_PREFIX:
            continue
        variable = name[9:]
        if not variable:
            continue
        canonical = variable.upper().replace(b"-", b"_")
        if canonical == _REMOTE_USER:
            remoteUser = value
        elif canonical == _AUTH_TYPE:
            authType = value
        else:
            variables.append((variable, value))
    return Authorization(tuple(variables), remoteUser, authType)


class _Authorization:
    """
    One request being authorized.

    States: I{asking} (the authorizer has not answered its head yet; the
    exchange answers failures), then one of I{denied} (the authorizer's
    response goes to the client), I{redirected} (internal redirect), or
    I{granted} (waiting for the end of the FastCGI request: success serves
    the wrapped resource, a failure answers 502).

    @ivar granted: the L{Authorization} of a 200 head, else L{None}.
    @ivar failure: how the FastCGI request failed, if it did.
    """

    def __init__(self, authorizer: FastCGIAuthorizer, request: Request) -> None:
        self._authorizer = authorizer
        self._request = request
        self.granted: Authorization | None = None

    def onHead(self, exchange: FastCGIExchange, head: ResponseHead) -> None:
        """
        The authorizer's head: grant, redirect or deny.
        """
        if head.kind is LOCAL_REDIRECT:
            assert head.location is not None
            exchange.discard()
            if not exchange.clientGone:
                log.info(
                    "FastCGI authorizer {backend} redirected {uri} to {location}",
                    backend=exchange.backend,
                    uri=self._uri(),
                    location=head.location.decode("latin-1"),
                )
                internalRedirect(
                    self._request, head.location, maxRedirects=self._authorizer.maxRedirects
                )
        elif head.status == http.OK:
            self.granted = authorizationFromHead(head)
            exchange.discard()
        else:
            log.info(
                "FastCGI authorizer {backend} denied {uri} ({status})",
                backend=exchange.backend,
                uri=self._uri(),
                status=head.status,
            )
            exchange.respond(head)

    def ended(self, exchange: FastCGIExchange) -> None:
        """
        The FastCGI request is over: serve the wrapped resource if access
        was granted and the authorizer ended its request properly.
        """
        granted = self.granted
        if granted is None or exchange.clientGone or self._request.channel is None:
            return
        error = exchange.endError
        if error is not None:
            log.error(
                "FastCGI authorizer {backend} failed after granting {uri}: {error}; "
                "answering 502",
                backend=exchange.backend,
                uri=self._uri(),
                error=str(error),
            )
            _renderError(
                self._request,
                http.BAD_GATEWAY,
                "Bad Gateway",
                "The application failed to answer this request.",
            )
            return
        _grant(self._request, granted)
        request: Any = self._request
        try:
            target = getChildForRequest(  # type: ignore[no-untyped-call]
                self._authorizer.wrapped, request
            )
            request.render(target)
        except BaseException:
            request.processingFailed(Failure())  # type: ignore[no-untyped-call]

    def _uri(self) -> str:
        uri: bytes = cast(Any, self._request).uri
        return uri.decode("latin-1")


class FastCGIAuthorizer(_GatewayResource):
    """
    A leaf resource that asks a FastCGI Authorizer about each request and,
    if access is granted, lets C{wrapped} serve it (see the module
    docstring).

    @ivar pool: the authorizer application's connection pool.
    @ivar wrapped: the resource (or tree) that serves granted requests.
    @ivar scriptFilename: C{SCRIPT_FILENAME}, if any.
    @ivar documentRoot: C{DOCUMENT_ROOT}, if any.
    @ivar serverName: C{SERVER_NAME}, or L{None} to take the Host header's.
    @ivar environmentOptions: see L{EnvironmentOptions}; passes
        C{Authorization} by default.
    @ivar extraVariables: variables added to every request.
    @ivar maxHeaderBytes: the cap on the authorizer's response head.
    @ivar maxRedirects: internal redirects allowed per request.
    @ivar retryAfter: seconds in C{Retry-After} on 503s that carry one.
    """

    _defaultEnvironmentOptions = EnvironmentOptions(
        passHeaders=frozenset([b"authorization"])
    )

    def __init__(
        self,
        pool: ConnectionPool,
        wrapped: IResource,
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
        @param pool: the authorizer application's connection pool.
        @param wrapped: the resource that serves granted requests.
        @param scriptFilename: C{SCRIPT_FILENAME} for the authorizer.
        @param documentRoot: C{DOCUMENT_ROOT} for the authorizer.
        @param serverName: a fixed C{SERVER_NAME}.
        @param environmentOptions: see L{EnvironmentOptions}; by default
            C{Authorization} is passed.
        @param extraVariables: variables for every request (C{SetEnv}).
        @param maxHeaderBytes: the cap on the response head.
        @param maxRedirects: internal redirects allowed per request.
        @param retryAfter: seconds for C{Retry-After}.
        """
        super().__init__(
            pool,
            scriptFilename=scriptFilename,
            documentRoot=documentRoot,
            serverName=serverName,
            environmentOptions=environmentOptions,
            extraVariables=extraVariables,
            maxHeaderBytes=maxHeaderBytes,
            maxRedirects=maxRedirects,
            retryAfter=retryAfter,
        )
        self.wrapped = wrapped

    def render(self, request: Request) -> bytes | int:
        """
        Ask the authorizer about C{request}; the answer (the wrapped
        resource's, or the authorizer's own) is written when it comes.

        @return: C{NOT_DONE_YET}.
        """
        # The authorizer gets no body: no CONTENT_LENGTH.  The description
        # carries what earlier authorizers granted (gatewayRequestFor).
        gateway = self.gatewayRequest(request, None)
        if gateway is None:
            _refuseUnsafePath(request, logger=log)
            return NOT_DONE_YET
        attempt = _Authorization(self, request)
        exchange = FastCGIExchange(
            request,
            self.pool,
            buildAuthorizerEnvironment(gateway, self.environmentOptions),
            role=Role.AUTHORIZER,
            body=None,
            onHead=attempt.onHead,
            maxHeaderBytes=self.maxHeaderBytes,
            retryAfter=self.retryAfter,
        )
        exchange.notifyEnd().addCallback(lambda ignored: attempt.ended(exchange))
        exchange.start()
        return NOT_DONE_YET


AuthorizedFastCGIResource = FastCGIResource
"""
Kept as a name for the L{FastCGIResource} behind an authorizer: every
L{FastCGIResource} now passes the authorizer's variables on.
"""
