# -*- test-case-name: tests.test_cgienv -*-
"""
The CGI/1.1 environment (RFC 3875 §4.1) that a FastCGI gateway sends to an
application as FCGI_PARAMS, built by pure functions.

A caller (the gateway resource) describes one request with an immutable
L{GatewayRequest} and calls L{buildEnvironment} (Responder role),
L{buildAuthorizerEnvironment} (Authorizer role) or L{buildFilterEnvironment}
(Filter role).  Each returns a list of C{(name, value)} byte pairs in a
deterministic order: the server variables in a fixed order, then one
C{HTTP_*} variable per request header name in the order the names were first
received, then the extra variables.

Decisions (see also C{SPEC.md} §8 and Decision 14, C{STYLE.md} P16):

  - B{PATH_INFO} is set only when there is path info (Apache, mod_fastcgi and
    RFC 3875 §4.1.5/§4.1.6 behaviour, which PHP and WSGI adapters written for
    Apache handle).  L{EnvironmentOptions.emptyPathInfo} sends C{PATH_INFO=""}
    instead, as nginx's stock C{fastcgi_params} do, for applications that
    expect the key to exist.  C{PATH_TRANSLATED} is set only together with a
    non-empty C{PATH_INFO} (RFC 3875 §4.1.6).
  - B{CONTENT_LENGTH} comes only from L{GatewayRequest.contentLength} (the
    length of the spooled body, so chunked uploads have one), never from the
    client's C{Content-Length} header.  It is set when the body is not empty,
    and also as C{0} for an empty body of a method that normally carries one
    (C{POST}, C{PUT}, C{PATCH}) so the application does not wait for a body
    or answer 411.  RFC 3875 §4.1.2: set if and only if there is a body.
  - B{Server variables win.}  Every name in L{SERVER_VARIABLES} is owned by
    this module: neither a request header nor an extra variable can set it,
    even when this request leaves it unset (for example C{HTTPS} on a plain
    request, C{AUTH_TYPE} without an authorizer, C{SCRIPT_NAME} for an
    Authorizer).  Extra variables may supply any other name (C{REMOTE_HOST},
    C{PATH}, C{REDIRECT_URL}, ...); an extra named C{HTTP_X} replaces the
    client's C{X} header (operator configuration beats client input, as
    nginx's C{fastcgi_param HTTP_X} does).
  - B{Never emitted}: C{HTTP_PROXY} from any source (httpoxy; an application
    that needs an outbound proxy gets it from its process environment, not
    from per-request parameters); header names with characters other than
    ASCII letters, digits and C{-} (so C{X_Forwarded_For} cannot pose as
    C{X-Forwarded-For}); C{Authorization} and C{Proxy-Authorization} unless
    named in L{EnvironmentOptions.passHeaders}; C{HTTP_CONTENT_TYPE} and
    C{HTTP_CONTENT_LENGTH}; any variable whose value contains CR, LF or NUL.
  - B{Repeated headers} are joined with C{", "} (RFC 9110 §5.3), except
    C{Cookie}, joined with C{"; "} (RFC 6265 §5.4).  Names differing only in
    case are the same header.
  - B{Extra variable names} are sanitised as Apache does: every byte that is
    not an ASCII letter or digit becomes C{_}, a leading digit becomes C{_};
    case is kept.  When two extras end up with the same name the later value
    wins (like a later C{SetEnv}).

This module imports nothing from Twisted.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from operator import itemgetter

from txfastcgi import __version__

__all__ = [
    "GatewayRequest",
    "EnvironmentOptions",
    "SERVER_VARIABLES",
    "buildEnvironment",
    "buildAuthorizerEnvironment",
    "buildFilterEnvironment",
    "splitQuery",
]


SERVER_VARIABLES: frozenset[bytes] = frozenset(
    [
        b"GATEWAY_INTERFACE",
        b"SERVER_SOFTWARE",
        b"SERVER_NAME",
        b"SERVER_ADDR",
        b"SERVER_PORT",
        b"SERVER_PROTOCOL",
        b"REQUEST_SCHEME",
        b"HTTPS",
        b"REQUEST_METHOD",
        b"REQUEST_URI",
        b"SCRIPT_NAME",
        b"PATH_INFO",
        b"PATH_TRANSLATED",
        b"SCRIPT_FILENAME",
        b"QUERY_STRING",
        b"DOCUMENT_ROOT",
        b"REMOTE_ADDR",
        b"REMOTE_PORT",
        b"AUTH_TYPE",
        b"REMOTE_USER",
        b"CONTENT_TYPE",
        b"CONTENT_LENGTH",
        b"FCGI_ROLE",
        b"FCGI_DATA_LAST_MOD",
        b"FCGI_DATA_LENGTH",
    ]
)
"""
The names this module owns.  Neither request headers nor extra variables can
set them, whether or not a given request sets them.  C{FCGI_ROLE} is never
sent (applications derive it from BEGIN_REQUEST; php-fpm would let a
parameter override it), C{FCGI_DATA_*} only for the Filter role.
"""


@dataclass(frozen=True, kw_only=True, slots=True)
class GatewayRequest:
    """
    Everything the CGI environment says about one request.  All wire values
    are C{bytes}, exactly as received or computed; nothing is decoded.

    @ivar method: The request method, e.g. C{b"GET"}.
    @ivar rawURI: The request-target exactly as received, query included.
    @ivar scriptName: The URL path of the application (C{SCRIPT_NAME}).
    @ivar pathInfo: The decoded path after the script name, C{b""} if none.
    @ivar pathTranslated: C{pathInfo} mapped onto the document root, or
        C{None}; computed by the caller, which knows the mapping.
    @ivar scriptFilename: The application's file name, or C{None}.
    @ivar documentRoot: The document root, or C{None}.
    @ivar serverName: The server's host name (C{SERVER_NAME}).
    @ivar serverAddress: The local address the request arrived on.
    @ivar serverPort: The local port the request arrived on.
    @ivar serverProtocol: The request's protocol, e.g. C{b"HTTP/1.1"}.
    @ivar remoteAddress: The client's address.
    @ivar remotePort: The client's port, or C{None} (e.g. a UNIX socket).
    @ivar secure: Whether the request came over TLS.
    @ivar headers: The request headers as C{(name, value)} pairs in the order
        received; a name may repeat.
    @ivar contentLength: The length of the (spooled) request body, or C{None}
        when the request has no body.
    @ivar authType: C{AUTH_TYPE} set by an authorizer, or C{None}.
    @ivar remoteUser: C{REMOTE_USER} set by an authorizer, or C{None}.
    @ivar extraVariables: Further C{(name, value)} pairs: C{SetEnv}/C{PassEnv}
        results, C{REDIRECT_*} after an internal redirect, C{Variable-*}
        values from an authorizer.
    """

    method: bytes
    rawURI: bytes
    scriptName: bytes
    pathInfo: bytes = b""
    pathTranslated: bytes | None = None
    scriptFilename: bytes | None = None
    documentRoot: bytes | None = None
    serverName: bytes
    serverAddress: bytes
    serverPort: int
    serverProtocol: bytes = b"HTTP/1.1"
    remoteAddress: bytes
    remotePort: int | None = None
    secure: bool = False
    headers: tuple[tuple[bytes, bytes], ...] = ()
    contentLength: int | None = None
    authType: bytes | None = None
    remoteUser: bytes | None = None
    extraVariables: tuple[tuple[bytes, bytes], ...] = ()


_UPPER = string.ascii_uppercase.encode("ascii")
_LOWER = string.ascii_lowercase.encode("ascii")
_DIGITS = string.digits.encode("ascii")


def _translationTable(mapping: dict[int, int], other: int) -> bytes:
    """
    Build a C{bytes.translate} table.

    @param mapping: Byte value -> what it becomes.
    @param other: What every byte not in C{mapping} becomes.
    @return: The 256-byte table.
    """
    table = bytearray([other] * 256)
    for source, target in mapping.items():
        table[source] = target
    return bytes(table)


_HEADER_TABLE = _translationTable(
    {
        **{byte: byte for byte in _UPPER + _DIGITS},
        **{byte: byte - 32 for byte in _LOWER},
        ord("-"): ord("_"),
    },
    0,
)
"""
Header name -> CGI name: letters upper-cased, C{-} -> C{_}, digits kept, every
other byte (C{_} included) -> NUL, which marks the name as refused.
"""

_EXTRA_TABLE = _translationTable(
    {byte: byte for byte in _UPPER + _LOWER + _DIGITS}, ord("_")
)
"""
Extra variable names: ASCII letters and digits stay, every other byte becomes
C{_} (Apache's C{ap_create_environment}).
"""

_WITHHELD = {
    b"authorization": b"HTTP_AUTHORIZATION",
    b"proxy-authorization": b"HTTP_PROXY_AUTHORIZATION",
}
"""Headers withheld unless named in L{EnvironmentOptions.passHeaders}."""


@dataclass(frozen=True, kw_only=True, slots=True)
class EnvironmentOptions:
    """
    Per-application settings for building the environment.

    @ivar serverSoftware: The value of C{SERVER_SOFTWARE}.
    @ivar passHeaders: Lower-case names of headers that are normally withheld
        but should be passed (C{-pass-header}).  Only C{b"authorization"} and
        C{b"proxy-authorization"} are withheld, so other names change
        nothing.  They arrive as C{HTTP_AUTHORIZATION} and
        C{HTTP_PROXY_AUTHORIZATION} (mod_fastcgi used the bare header name).
    @ivar emptyPathInfo: Send C{PATH_INFO=""} when there is no path info
        instead of leaving it unset.
    """

    serverSoftware: bytes = b"txfastcgi/" + __version__.encode("ascii")
    passHeaders: frozenset[bytes] = frozenset()
    emptyPathInfo: bool = False
    _blocked: frozenset[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """
        Check L{passHeaders} and precompute the names withheld from requests.

        @raise ValueError: If C{passHeaders} holds something that is not a
            lower-case header name, or names C{proxy} (never passed: httpoxy),
            C{content-type} or C{content-length} (always sent unprefixed).
        """
        for name in self.passHeaders:
            variable = name.translate(_HEADER_TABLE)
            if (
                not variable
                or b"\x00" in variable
                or name != name.lower()
                or variable in (b"PROXY", b"CONTENT_TYPE", b"CONTENT_LENGTH")
            ):
                raise ValueError(
                    "passHeaders: expected lower-case header names other than"
                    f" proxy, content-type and content-length (got {name!r})"
                )
        blocked = {b""} | {
            variable
            for header, variable in _WITHHELD.items()
            if header not in self.passHeaders
        }
        object.__setattr__(self, "_blocked", frozenset(blocked))


def splitQuery(rawURI: bytes) -> tuple[bytes, bytes]:
    """
    Split a raw request-target at its first C{?}, without decoding.

    @param rawURI: The request-target as received.
    @return: C{(path, query)}; C{query} is C{b""} when there is none.
    """
    path, _, query = rawURI.partition(b"?")
    return path, query


_NAME_CACHE_LIMIT = 4096
_headerNames: dict[bytes, bytes] = {}
"""
Cache: raw header name -> CGI variable name, or C{b""} when refused.  Bounded
by L{_NAME_CACHE_LIMIT} so that random names from clients cannot grow it
without limit; past the bound names are translated on every use.
"""


def _headerVariable(name: bytes) -> bytes:
    """
    Translate a header name into its CGI variable name.

    @param name: A header name as received.
    @return: C{b"CONTENT_TYPE"}, C{b"HTTP_<NAME>"}, or C{b""} when the header
        never becomes a variable (bad characters, C{Proxy},
        C{Content-Length}).
    """
    upper = name.translate(_HEADER_TABLE)
    if not upper or b"\x00" in upper:
        variable = b""
    elif upper == b"CONTENT_TYPE":
        variable = upper
    elif upper == b"CONTENT_LENGTH" or upper == b"PROXY":
        variable = b""
    else:
        variable = b"HTTP_" + upper
        if variable in SERVER_VARIABLES:  # pragma: no cover - none start HTTP_
            variable = b""
    if len(_headerNames) < _NAME_CACHE_LIMIT:
        _headerNames[name] = variable
    return variable


for _name in (
    b"Accept",
    b"Accept-Charset",
    b"Accept-Encoding",
    b"Accept-Language",
    b"Authorization",
    b"Cache-Control",
    b"Connection",
    b"Content-Length",
    b"Content-Type",
    b"Cookie",
    b"Host",
    b"If-Modified-Since",
    b"If-None-Match",
    b"Origin",
    b"Pragma",
    b"Proxy",
    b"Proxy-Authorization",
    b"Referer",
    b"Upgrade-Insecure-Requests",
    b"User-Agent",
    b"X-Forwarded-For",
    b"X-Forwarded-Proto",
    b"X-Requested-With",
):
    _headerVariable(_name)
    _headerVariable(_name.lower())
del _name


_extraNames: dict[bytes, bytes] = {}
"""Cache: raw extra variable name -> sanitised name (bounded, see above)."""


def _extraVariable(name: bytes) -> bytes:
    """
    Sanitise an extra variable name as Apache does.

    @param name: The name as configured or received from an authorizer.
    @return: The name with non-alphanumerics replaced by C{_} and a leading
        digit replaced by C{_}; C{b""} for an empty name.
    """
    sanitised = _extraNames.get(name)
    if sanitised is None:
        sanitised = name.translate(_EXTRA_TABLE)
        if sanitised[:1].isdigit():
            sanitised = b"_" + sanitised[1:]
        if len(_extraNames) < _NAME_CACHE_LIMIT:
            _extraNames[name] = sanitised
    return sanitised


_BODY_METHODS = frozenset([b"POST", b"PUT", b"PATCH"])
"""Methods that get C{CONTENT_LENGTH=0} for an empty body."""


_second = itemgetter(1)


def _isClean(pair: tuple[bytes, bytes]) -> bool:
    """
    @return: Whether the value of C{pair} is free of CR, LF and NUL.
    """
    value = pair[1]
    return b"\r" not in value and b"\n" not in value and b"\x00" not in value


def _build(
    request: GatewayRequest,
    options: EnvironmentOptions,
    authorizer: bool,
    filterData: tuple[int, int] | None,
) -> list[tuple[bytes, bytes]]:
    """
    Build the environment for any role.

    @param request: The request.
    @param options: The application's options.
    @param authorizer: Leave out C{SCRIPT_NAME}, C{PATH_INFO},
        C{PATH_TRANSLATED} and C{CONTENT_LENGTH}.
    @param filterData: C{(lastModified, length)} of the Filter role's data
        file, or C{None} for other roles.
    @return: The variables, see L{buildEnvironment}.
    """
    # Headers first (they are emitted after the server variables), so that
    # Content-Type can be taken out.
    headerVariables: dict[bytes, bytes] = {}
    names = _headerNames
    blocked = options._blocked
    for name, value in request.headers:
        variable = names.get(name)
        if variable is None:
            variable = _headerVariable(name)
        if variable in blocked:
            continue
        previous = headerVariables.get(variable)
        if previous is None:
            headerVariables[variable] = value
        elif variable == b"HTTP_COOKIE":
            headerVariables[variable] = previous + b"; " + value
        else:
            headerVariables[variable] = previous + b", " + value
    contentType = headerVariables.pop(b"CONTENT_TYPE", None)

    query = request.rawURI.partition(b"?")[2]
    env = [
        (b"GATEWAY_INTERFACE", b"CGI/1.1"),
        (b"SERVER_SOFTWARE", options.serverSoftware),
        (b"SERVER_NAME", request.serverName),
        (b"SERVER_ADDR", request.serverAddress),
        (b"SERVER_PORT", b"%d" % (request.serverPort,)),
        (b"SERVER_PROTOCOL", request.serverProtocol),
    ]
    append = env.append
    if request.secure:
        append((b"REQUEST_SCHEME", b"https"))
        append((b"HTTPS", b"on"))
    else:
        append((b"REQUEST_SCHEME", b"http"))
    append((b"REQUEST_METHOD", request.method))
    append((b"REQUEST_URI", request.rawURI))
    if not authorizer:
        append((b"SCRIPT_NAME", request.scriptName))
        pathInfo = request.pathInfo
        if pathInfo:
            append((b"PATH_INFO", pathInfo))
            if request.pathTranslated is not None:
                append((b"PATH_TRANSLATED", request.pathTranslated))
        elif options.emptyPathInfo:
            append((b"PATH_INFO", b""))
    if request.scriptFilename is not None:
        append((b"SCRIPT_FILENAME", request.scriptFilename))
    append((b"QUERY_STRING", query))
    if request.documentRoot is not None:
        append((b"DOCUMENT_ROOT", request.documentRoot))
    append((b"REMOTE_ADDR", request.remoteAddress))
    if request.remotePort is not None:
        append((b"REMOTE_PORT", b"%d" % (request.remotePort,)))
    if request.authType is not None:
        append((b"AUTH_TYPE", request.authType))
    if request.remoteUser is not None:
        append((b"REMOTE_USER", request.remoteUser))
    if contentType is not None:
        append((b"CONTENT_TYPE", contentType))
    if not authorizer:
        contentLength = request.contentLength
        if contentLength is not None and (
            contentLength > 0 or request.method in _BODY_METHODS
        ):
            append((b"CONTENT_LENGTH", b"%d" % (contentLength,)))
    if filterData is not None:
        append((b"FCGI_DATA_LAST_MOD", b"%d" % (filterData[0],)))
        append((b"FCGI_DATA_LENGTH", b"%d" % (filterData[1],)))

    if request.extraVariables:
        extras: dict[bytes, bytes] = {}
        for name, value in request.extraVariables:
            sanitised = _extraVariable(name)
            if (
                not sanitised
                or sanitised.upper() in SERVER_VARIABLES
                or sanitised == b"HTTP_PROXY"
            ):
                continue
            headerVariables.pop(sanitised, None)
            extras[sanitised] = value
        env.extend(headerVariables.items())
        env.extend(extras.items())
    else:
        env.extend(headerVariables.items())

    # One scan of all values for CR, LF and NUL; only when one is found (it
    # cannot be for requests parsed by twisted.web) are values checked one by
    # one and the offending variables dropped.
    allValues = b"".join(map(_second, env))
    if b"\r" in allValues or b"\n" in allValues or b"\x00" in allValues:
        env = [pair for pair in env if _isClean(pair)]
    return env


def buildEnvironment(
    request: GatewayRequest, options: EnvironmentOptions
) -> list[tuple[bytes, bytes]]:
    """
    Build the FCGI_PARAMS of a Responder (or Filter) request.

    @param request: The request.
    @param options: The application's options.
    @return: C{(name, value)} pairs with distinct names: server variables in
        a fixed order, then C{HTTP_*} variables in the order their headers
        were first received, then the extra variables.  See the module
        docstring for the rules.
    """
    return _build(request, options, False, None)


def buildAuthorizerEnvironment(
    request: GatewayRequest, options: EnvironmentOptions
) -> list[tuple[bytes, bytes]]:
    """
    Build the FCGI_PARAMS of an Authorizer request: those of
    L{buildEnvironment} without C{CONTENT_LENGTH}, C{PATH_INFO},
    C{PATH_TRANSLATED} and C{SCRIPT_NAME} (FastCGI 1.0 §6.3).

    @param request: The request being authorized.
    @param options: The authorizer's options.
    @return: C{(name, value)} pairs, ordered as by L{buildEnvironment}.
    """
    return _build(request, options, True, None)


def buildFilterEnvironment(
    request: GatewayRequest,
    options: EnvironmentOptions,
    *,
    dataLastModified: int,
    dataLength: int,
) -> list[tuple[bytes, bytes]]:
    """
    Build the FCGI_PARAMS of a Filter request: those of L{buildEnvironment}
    plus C{FCGI_DATA_LAST_MOD} and C{FCGI_DATA_LENGTH} (FastCGI 1.0 §6.4),
    placed after the other server variables.

    @param request: The request.
    @param options: The filter's options.
    @param dataLastModified: The data file's modification time, in whole
        seconds since 1970-01-01 UTC.
    @param dataLength: The data file's size in bytes.
    @return: C{(name, value)} pairs, ordered as by L{buildEnvironment}.
    """
    return _build(request, options, False, (dataLastModified, dataLength))
