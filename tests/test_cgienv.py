"""
Tests for L{txfastcgi.cgienv}: the CGI/1.1 environment sent as FCGI_PARAMS.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from txfastcgi import __version__, cgienv
from txfastcgi.cgienv import (
    SERVER_VARIABLES,
    EnvironmentOptions,
    GatewayRequest,
    buildAuthorizerEnvironment,
    buildEnvironment,
    buildFilterEnvironment,
    splitQuery,
)

OPTIONS = EnvironmentOptions()


def makeRequest(**overrides: Any) -> GatewayRequest:
    """
    A plain GET request for C{/app/x?q=1} with no headers, changed by
    C{overrides}.
    """
    fields: dict[str, Any] = dict(
        method=b"GET",
        rawURI=b"/app/x?q=1",
        scriptName=b"/app",
        pathInfo=b"/x",
        pathTranslated=b"/srv/www/x",
        scriptFilename=b"/srv/app",
        documentRoot=b"/srv/www",
        serverName=b"example.com",
        serverAddress=b"192.0.2.1",
        serverPort=80,
        serverProtocol=b"HTTP/1.1",
        remoteAddress=b"203.0.113.9",
        remotePort=40000,
    )
    fields.update(overrides)
    return GatewayRequest(**fields)


def envDict(
    request: GatewayRequest, options: EnvironmentOptions = OPTIONS
) -> dict[bytes, bytes]:
    """
    The Responder environment of C{request} as a dict, checking on the way
    that no name repeats.
    """
    pairs = buildEnvironment(request, options)
    result = dict(pairs)
    assert len(result) == len(pairs)
    return result


def headerEnv(
    *headers: tuple[bytes, bytes], options: EnvironmentOptions = OPTIONS
) -> dict[bytes, bytes]:
    """
    The variables that are not server variables, for a request with
    C{headers}.
    """
    env = envDict(makeRequest(headers=headers), options)
    return {k: v for k, v in env.items() if k not in SERVER_VARIABLES}


# The SPEC.md §8 example.


def test_specExampleTable() -> None:
    """
    C{GET /examples/echo/a/b?x=1} for the seed's echo app gives the values of
    SPEC.md §8's table.
    """
    env = envDict(
        makeRequest(
            rawURI=b"/examples/echo/a/b?x=1",
            scriptName=b"/examples/echo",
            pathInfo=b"/a/b",
            pathTranslated=b"/fastcgi/a/b",
            scriptFilename=b"/fastcgi/examples/echo",
            documentRoot=b"/fastcgi",
            serverPort=5556,
        )
    )
    assert env[b"SCRIPT_FILENAME"] == b"/fastcgi/examples/echo"
    assert env[b"SCRIPT_NAME"] == b"/examples/echo"
    assert env[b"PATH_INFO"] == b"/a/b"
    assert env[b"PATH_TRANSLATED"] == b"/fastcgi/a/b"
    assert env[b"QUERY_STRING"] == b"x=1"
    assert env[b"REQUEST_URI"] == b"/examples/echo/a/b?x=1"
    assert env[b"SERVER_PORT"] == b"5556"
    assert env[b"GATEWAY_INTERFACE"] == b"CGI/1.1"


def test_fullOrder() -> None:
    """
    The output is the server variables in a fixed order, then the headers in
    received order, then the extra variables.
    """
    request = makeRequest(
        method=b"POST",
        secure=True,
        serverPort=443,
        headers=(
            (b"Host", b"example.com"),
            (b"Content-Type", b"text/plain"),
            (b"Accept", b"*/*"),
        ),
        contentLength=3,
        authType=b"Basic",
        remoteUser=b"alice",
        extraVariables=((b"TZ", b"UTC"), (b"REDIRECT_URL", b"/old")),
    )
    assert buildEnvironment(request, OPTIONS) == [
        (b"GATEWAY_INTERFACE", b"CGI/1.1"),
        (b"SERVER_SOFTWARE", b"txfastcgi/" + __version__.encode()),
        (b"SERVER_NAME", b"example.com"),
        (b"SERVER_ADDR", b"192.0.2.1"),
        (b"SERVER_PORT", b"443"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REQUEST_SCHEME", b"https"),
        (b"HTTPS", b"on"),
        (b"REQUEST_METHOD", b"POST"),
        (b"REQUEST_URI", b"/app/x?q=1"),
        (b"SCRIPT_NAME", b"/app"),
        (b"PATH_INFO", b"/x"),
        (b"PATH_TRANSLATED", b"/srv/www/x"),
        (b"SCRIPT_FILENAME", b"/srv/app"),
        (b"QUERY_STRING", b"q=1"),
        (b"DOCUMENT_ROOT", b"/srv/www"),
        (b"REMOTE_ADDR", b"203.0.113.9"),
        (b"REMOTE_PORT", b"40000"),
        (b"AUTH_TYPE", b"Basic"),
        (b"REMOTE_USER", b"alice"),
        (b"CONTENT_TYPE", b"text/plain"),
        (b"CONTENT_LENGTH", b"3"),
        (b"HTTP_HOST", b"example.com"),
        (b"HTTP_ACCEPT", b"*/*"),
        (b"TZ", b"UTC"),
        (b"REDIRECT_URL", b"/old"),
    ]


def test_deterministic() -> None:
    """
    The same request gives the same list twice.
    """
    request = makeRequest(headers=((b"B", b"1"), (b"A", b"2"), (b"C", b"3")))
    assert buildEnvironment(request, OPTIONS) == buildEnvironment(request, OPTIONS)


# Server variables and when they are present.


@pytest.mark.parametrize(
    "overrides, name, expected",
    [
        ({}, b"GATEWAY_INTERFACE", b"CGI/1.1"),
        ({}, b"SERVER_NAME", b"example.com"),
        ({}, b"SERVER_ADDR", b"192.0.2.1"),
        ({}, b"SERVER_PORT", b"80"),
        ({"serverPort": 8443}, b"SERVER_PORT", b"8443"),
        ({}, b"SERVER_PROTOCOL", b"HTTP/1.1"),
        ({"serverProtocol": b"HTTP/1.0"}, b"SERVER_PROTOCOL", b"HTTP/1.0"),
        ({}, b"REQUEST_METHOD", b"GET"),
        ({"method": b"DELETE"}, b"REQUEST_METHOD", b"DELETE"),
        ({}, b"REQUEST_URI", b"/app/x?q=1"),
        ({}, b"SCRIPT_NAME", b"/app"),
        ({"scriptName": b""}, b"SCRIPT_NAME", b""),
        ({}, b"PATH_INFO", b"/x"),
        ({"pathInfo": b""}, b"PATH_INFO", None),
        ({}, b"PATH_TRANSLATED", b"/srv/www/x"),
        ({"pathInfo": b""}, b"PATH_TRANSLATED", None),
        ({"pathTranslated": None}, b"PATH_TRANSLATED", None),
        ({}, b"SCRIPT_FILENAME", b"/srv/app"),
        ({"scriptFilename": None}, b"SCRIPT_FILENAME", None),
        ({}, b"DOCUMENT_ROOT", b"/srv/www"),
        ({"documentRoot": None}, b"DOCUMENT_ROOT", None),
        ({}, b"REMOTE_ADDR", b"203.0.113.9"),
        ({"remoteAddress": b"2001:db8::1"}, b"REMOTE_ADDR", b"2001:db8::1"),
        ({}, b"REMOTE_PORT", b"40000"),
        ({"remotePort": None}, b"REMOTE_PORT", None),
        ({}, b"AUTH_TYPE", None),
        ({"authType": b"Basic"}, b"AUTH_TYPE", b"Basic"),
        ({}, b"REMOTE_USER", None),
        ({"remoteUser": b"bob"}, b"REMOTE_USER", b"bob"),
        ({"remoteUser": b""}, b"REMOTE_USER", b""),
        ({}, b"HTTPS", None),
        ({"secure": True}, b"HTTPS", b"on"),
        ({}, b"REQUEST_SCHEME", b"http"),
        ({"secure": True}, b"REQUEST_SCHEME", b"https"),
        ({}, b"CONTENT_TYPE", None),
        ({}, b"CONTENT_LENGTH", None),
        ({}, b"REMOTE_HOST", None),
        ({}, b"REMOTE_IDENT", None),
        ({}, b"FCGI_ROLE", None),
    ],
)
def test_serverVariable(
    overrides: dict[str, Any], name: bytes, expected: bytes | None
) -> None:
    """
    Each server variable has the expected value, or is absent where
    C{expected} is C{None}.
    """
    assert envDict(makeRequest(**overrides)).get(name) == expected


def test_serverSoftwareDefault() -> None:
    """
    C{SERVER_SOFTWARE} defaults to C{txfastcgi/<version>}.
    """
    assert envDict(makeRequest())[b"SERVER_SOFTWARE"] == (
        b"txfastcgi/" + __version__.encode("ascii")
    )


def test_serverSoftwareOption() -> None:
    """
    L{EnvironmentOptions.serverSoftware} sets C{SERVER_SOFTWARE}.
    """
    options = EnvironmentOptions(serverSoftware=b"Apache/1.2.6 mod_fastcgi/2.0")
    env = envDict(makeRequest(), options)
    assert env[b"SERVER_SOFTWARE"] == b"Apache/1.2.6 mod_fastcgi/2.0"


def test_emptyPathInfoOption() -> None:
    """
    With L{EnvironmentOptions.emptyPathInfo} a request without path info gets
    C{PATH_INFO=""} and still no C{PATH_TRANSLATED}.
    """
    env = envDict(makeRequest(pathInfo=b""), EnvironmentOptions(emptyPathInfo=True))
    assert env[b"PATH_INFO"] == b""
    assert b"PATH_TRANSLATED" not in env


def test_emptyPathInfoOptionWithPathInfo() -> None:
    """
    L{EnvironmentOptions.emptyPathInfo} does not change a non-empty
    C{PATH_INFO}.
    """
    env = envDict(makeRequest(), EnvironmentOptions(emptyPathInfo=True))
    assert env[b"PATH_INFO"] == b"/x"


@pytest.mark.parametrize(
    "rawURI, query",
    [
        (b"/app", b""),
        (b"/app?", b""),
        (b"/app?x=1", b"x=1"),
        (b"/app?a=1&b=2", b"a=1&b=2"),
        (b"/app?a=%20b+c", b"a=%20b+c"),
        (b"/app?a?b", b"a?b"),
        (b"/a%3Fb?c", b"c"),
        (b"/app?\xff\xfe", b"\xff\xfe"),
        (b"http://example.com/app?x=1", b"x=1"),
        (b"*", b""),
    ],
)
def test_queryString(rawURI: bytes, query: bytes) -> None:
    """
    C{QUERY_STRING} is everything after the first C{?} of the raw URI,
    undecoded, and empty when there is none; C{REQUEST_URI} is the raw URI.
    """
    env = envDict(makeRequest(rawURI=rawURI))
    assert env[b"QUERY_STRING"] == query
    assert env[b"REQUEST_URI"] == rawURI


@pytest.mark.parametrize(
    "rawURI, expected",
    [
        (b"", (b"", b"")),
        (b"/", (b"/", b"")),
        (b"/a/b", (b"/a/b", b"")),
        (b"/a/b?", (b"/a/b", b"")),
        (b"/a/b?x=1", (b"/a/b", b"x=1")),
        (b"/a?b?c", (b"/a", b"b?c")),
        (b"?x", (b"", b"x")),
        (b"/%3F?%3F", (b"/%3F", b"%3F")),
    ],
)
def test_splitQuery(rawURI: bytes, expected: tuple[bytes, bytes]) -> None:
    """
    L{splitQuery} splits at the first C{?} and decodes nothing.
    """
    assert splitQuery(rawURI) == expected


@pytest.mark.parametrize(
    "method, contentLength, expected",
    [
        (b"GET", None, None),
        (b"GET", 0, None),
        (b"GET", 5, b"5"),
        (b"HEAD", 0, None),
        (b"DELETE", 0, None),
        (b"DELETE", 12, b"12"),
        (b"OPTIONS", 0, None),
        (b"POST", None, None),
        (b"POST", 0, b"0"),
        (b"POST", 1024, b"1024"),
        (b"PUT", 0, b"0"),
        (b"PUT", 10**10, b"10000000000"),
        (b"PATCH", 0, b"0"),
    ],
)
def test_contentLength(
    method: bytes, contentLength: int | None, expected: bytes | None
) -> None:
    """
    C{CONTENT_LENGTH} is set when the body is not empty, and as C{0} for an
    empty body of POST, PUT and PATCH; never when there is no body.
    """
    env = envDict(makeRequest(method=method, contentLength=contentLength))
    assert env.get(b"CONTENT_LENGTH") == expected


@pytest.mark.parametrize(
    "contentLength, expected",
    [(None, None), (0, b"0"), (7, b"7")],
)
def test_contentLengthNeverFromHeader(
    contentLength: int | None, expected: bytes | None
) -> None:
    """
    C{CONTENT_LENGTH} comes from L{GatewayRequest.contentLength}, never from a
    C{Content-Length} header, which gives no variable of its own.
    """
    env = envDict(
        makeRequest(
            method=b"POST",
            contentLength=contentLength,
            headers=((b"Content-Length", b"999"),),
        )
    )
    assert env.get(b"CONTENT_LENGTH") == expected
    assert b"HTTP_CONTENT_LENGTH" not in env


@pytest.mark.parametrize(
    "name",
    [b"Content-Type", b"content-type", b"CONTENT-TYPE", b"Content-type"],
)
def test_contentType(name: bytes) -> None:
    """
    A C{Content-Type} header, in any case, becomes C{CONTENT_TYPE}, not
    C{HTTP_CONTENT_TYPE}.
    """
    env = envDict(makeRequest(headers=((name, b"application/json"),)))
    assert env[b"CONTENT_TYPE"] == b"application/json"
    assert b"HTTP_CONTENT_TYPE" not in env


def test_contentTypeRepeated() -> None:
    """
    Repeated C{Content-Type} headers are joined with C{", "} like other
    headers, so the application sees what the client sent.
    """
    env = envDict(
        makeRequest(headers=((b"Content-Type", b"a/b"), (b"Content-Type", b"c/d")))
    )
    assert env[b"CONTENT_TYPE"] == b"a/b, c/d"


# Headers.


@pytest.mark.parametrize(
    "name, variable",
    [
        (b"Host", b"HTTP_HOST"),
        (b"host", b"HTTP_HOST"),
        (b"User-Agent", b"HTTP_USER_AGENT"),
        (b"X-Forwarded-For", b"HTTP_X_FORWARDED_FOR"),
        (b"x-a-1", b"HTTP_X_A_1"),
        (b"DNT", b"HTTP_DNT"),
        (b"1", b"HTTP_1"),
        (b"-", b"HTTP__"),
        (b"Remote-User", b"HTTP_REMOTE_USER"),
        (b"Https", b"HTTP_HTTPS"),
        (b"Proxy-Connection", b"HTTP_PROXY_CONNECTION"),
    ],
)
def test_headerVariableName(name: bytes, variable: bytes) -> None:
    """
    A header becomes C{HTTP_} plus its name upper-cased with C{-} turned into
    C{_}.
    """
    assert headerEnv((name, b"v")) == {variable: b"v"}


@pytest.mark.parametrize(
    "name",
    [
        b"X_Forwarded_For",
        b"x_forwarded_for",
        b"Remote.User",
        b"X Foo",
        b"X:Foo",
        b"X\tFoo",
        b"X-Foo\x00",
        b"X\xc3\xa9",
        b"\xff",
        b"",
        b"X=1",
        b"(X)",
    ],
)
def test_badHeaderNameRefused(name: bytes) -> None:
    """
    A header whose name has anything but ASCII letters, digits and C{-}
    (an underscore in particular) gives no variable.
    """
    assert headerEnv((name, b"spoof")) == {}


def test_underscoreCannotSpoofHyphen() -> None:
    """
    C{X_Forwarded_For} neither adds to nor replaces C{X-Forwarded-For}.
    """
    env = headerEnv(
        (b"X_Forwarded_For", b"6.6.6.6"), (b"X-Forwarded-For", b"192.0.2.7")
    )
    assert env == {b"HTTP_X_FORWARDED_FOR": b"192.0.2.7"}


@pytest.mark.parametrize("name", [b"Proxy", b"proxy", b"PROXY", b"pRoXy"])
def test_proxyHeaderRefused(name: bytes) -> None:
    """
    The C{Proxy} header never becomes C{HTTP_PROXY} (httpoxy).
    """
    assert headerEnv((name, b"http://evil:8080")) == {}


def test_proxyHeaderRefusedWithPassHeaders() -> None:
    """
    Passing every withheld header still does not pass C{Proxy}.
    """
    options = EnvironmentOptions(
        passHeaders=frozenset([b"authorization", b"proxy-authorization"])
    )
    assert headerEnv((b"Proxy", b"http://evil"), options=options) == {}


@pytest.mark.parametrize(
    "name", [b"Authorization", b"authorization", b"Proxy-Authorization"]
)
def test_authorizationWithheld(name: bytes) -> None:
    """
    C{Authorization} and C{Proxy-Authorization} are withheld by default.
    """
    assert headerEnv((name, b"Basic YWxpY2U6c2VjcmV0")) == {}


@pytest.mark.parametrize(
    "passHeaders, expected",
    [
        (
            [b"authorization"],
            {b"HTTP_AUTHORIZATION": b"Basic a"},
        ),
        (
            [b"proxy-authorization"],
            {b"HTTP_PROXY_AUTHORIZATION": b"Basic p"},
        ),
        (
            [b"authorization", b"proxy-authorization"],
            {
                b"HTTP_AUTHORIZATION": b"Basic a",
                b"HTTP_PROXY_AUTHORIZATION": b"Basic p",
            },
        ),
        ([b"x-other"], {}),
    ],
)
def test_authorizationPassed(
    passHeaders: list[bytes], expected: dict[bytes, bytes]
) -> None:
    """
    A withheld header named in L{EnvironmentOptions.passHeaders} is passed as
    C{HTTP_<NAME>}; the other stays withheld.
    """
    options = EnvironmentOptions(passHeaders=frozenset(passHeaders))
    env = headerEnv(
        (b"Authorization", b"Basic a"),
        (b"Proxy-Authorization", b"Basic p"),
        options=options,
    )
    assert env == expected


@pytest.mark.parametrize(
    "name",
    [
        b"proxy",
        b"content-type",
        b"content-length",
        b"Authorization",
        b"x_foo",
        b"",
        b"a b",
    ],
)
def test_passHeadersValidated(name: bytes) -> None:
    """
    L{EnvironmentOptions} refuses C{passHeaders} entries that are not
    lower-case header names or that can never be passed as C{HTTP_*}.
    """
    with pytest.raises(ValueError):
        EnvironmentOptions(passHeaders=frozenset([name]))


@pytest.mark.parametrize(
    "headers, expected",
    [
        (
            [(b"Accept", b"text/html"), (b"Accept", b"*/*")],
            {b"HTTP_ACCEPT": b"text/html, */*"},
        ),
        (
            [(b"X-A", b"1"), (b"x-a", b"2"), (b"X-A", b"3")],
            {b"HTTP_X_A": b"1, 2, 3"},
        ),
        (
            [(b"Cookie", b"a=1"), (b"Cookie", b"b=2")],
            {b"HTTP_COOKIE": b"a=1; b=2"},
        ),
        (
            [(b"cookie", b"a=1"), (b"COOKIE", b"b=2"), (b"Cookie", b"c=3")],
            {b"HTTP_COOKIE": b"a=1; b=2; c=3"},
        ),
        (
            [(b"X-Empty", b""), (b"X-Empty", b"v")],
            {b"HTTP_X_EMPTY": b", v"},
        ),
        ([(b"X-Empty", b"")], {b"HTTP_X_EMPTY": b""}),
    ],
)
def test_repeatedHeadersJoined(
    headers: list[tuple[bytes, bytes]], expected: dict[bytes, bytes]
) -> None:
    """
    Repeated headers (names compared without case) give one variable, joined
    with C{", "}, or C{"; "} for C{Cookie}.
    """
    assert headerEnv(*headers) == expected


def test_headerOrderFirstOccurrence() -> None:
    """
    Header variables come in the order their names first appeared.
    """
    request = makeRequest(
        headers=((b"B", b"1"), (b"A", b"2"), (b"b", b"3"), (b"C", b"4"))
    )
    pairs = buildEnvironment(request, OPTIONS)
    names = [name for name, _ in pairs if name.startswith(b"HTTP_")]
    assert names == [b"HTTP_B", b"HTTP_A", b"HTTP_C"]


@pytest.mark.parametrize(
    "value",
    [b"a\rb", b"a\nb", b"a\x00b", b"\r\n", b"x\r\nX-Injected: 1", b"\x00"],
)
def test_headerValueWithControlDropped(value: bytes) -> None:
    """
    A header whose value contains CR, LF or NUL gives no variable; the other
    headers are kept.
    """
    env = headerEnv((b"X-Bad", value), (b"X-Good", b"ok"))
    assert env == {b"HTTP_X_GOOD": b"ok"}


def test_joinedValueWithControlDropped() -> None:
    """
    A repeated header with one bad value is dropped as a whole.
    """
    env = headerEnv((b"X-A", b"fine"), (b"X-A", b"bad\n"), (b"X-B", b"ok"))
    assert env == {b"HTTP_X_B": b"ok"}


@pytest.mark.parametrize(
    "field, value, variable",
    [
        ("rawURI", b"/app\r\n", b"REQUEST_URI"),
        ("serverName", b"evil\nhost", b"SERVER_NAME"),
        ("remoteUser", b"bob\x00", b"REMOTE_USER"),
        ("pathInfo", b"/a\nb", b"PATH_INFO"),
    ],
)
def test_serverValueWithControlDropped(
    field: str, value: bytes, variable: bytes
) -> None:
    """
    No variable is ever sent with CR, LF or NUL in its value, even a server
    variable built from a bad caller-supplied field.
    """
    env = envDict(makeRequest(**{field: value}))
    assert variable not in env
    assert env[b"GATEWAY_INTERFACE"] == b"CGI/1.1"


def test_tabAndHighBytesKept() -> None:
    """
    Tabs and bytes outside ASCII in a value are passed unchanged.
    """
    value = b"a\tb\x7f\x80\xff"
    assert headerEnv((b"X-T", value)) == {b"HTTP_X_T": value}


def test_nonUTF8Preserved() -> None:
    """
    Bytes that are not UTF-8 reach the application unchanged, in headers,
    the URI, the query and the path variables.
    """
    env = envDict(
        makeRequest(
            rawURI=b"/app/\xe9t\xe9?q=\xff\xfe",
            pathInfo=b"/\xe9t\xe9",
            pathTranslated=b"/srv/www/\xe9t\xe9",
            headers=((b"X-Name", b"caf\xe9 \x80\xff"), (b"Cookie", b"n=\xc3\x28")),
            remoteUser=b"j\xf6rg",
        )
    )
    assert env[b"REQUEST_URI"] == b"/app/\xe9t\xe9?q=\xff\xfe"
    assert env[b"QUERY_STRING"] == b"q=\xff\xfe"
    assert env[b"PATH_INFO"] == b"/\xe9t\xe9"
    assert env[b"PATH_TRANSLATED"] == b"/srv/www/\xe9t\xe9"
    assert env[b"HTTP_X_NAME"] == b"caf\xe9 \x80\xff"
    assert env[b"HTTP_COOKIE"] == b"n=\xc3\x28"
    assert env[b"REMOTE_USER"] == b"j\xf6rg"


def test_headersCannotOverrideServerVariables() -> None:
    """
    No header changes or duplicates a server variable: every header variable
    has the C{HTTP_} prefix, and the server variables keep their values.
    """
    headers = tuple((name.replace(b"_", b"-"), b"spoof") for name in SERVER_VARIABLES)
    env = envDict(makeRequest(headers=headers, contentLength=None))
    for name in SERVER_VARIABLES - {b"CONTENT_TYPE"}:
        assert env.get(name) != b"spoof"
    assert b"HTTPS" not in env
    assert b"CONTENT_LENGTH" not in env
    # Content-Type is the one header that gives an unprefixed variable.
    assert env[b"CONTENT_TYPE"] == b"spoof"


# Extra variables.


@pytest.mark.parametrize(
    "name, sanitised",
    [
        (b"TZ", b"TZ"),
        (b"lower_case", b"lower_case"),
        (b"AUTH-METHOD", b"AUTH_METHOD"),
        (b"a.b c", b"a_b_c"),
        (b"1ST", b"_ST"),
        (b"9", b"_"),
        (b"X1", b"X1"),
        (b"caf\xe9", b"caf_"),
        (b"A=B", b"A_B"),
        (b"A\x00B", b"A_B"),
    ],
)
def test_extraNameSanitised(name: bytes, sanitised: bytes) -> None:
    """
    Extra variable names have non-alphanumerics and a leading digit replaced
    by C{_}, as Apache does; case is kept.
    """
    env = envDict(makeRequest(extraVariables=((name, b"v"),)))
    assert env[sanitised] == b"v"


def test_extraEmptyNameDropped() -> None:
    """
    An extra variable with an empty name is dropped.
    """
    env = envDict(makeRequest(extraVariables=((b"", b"v"),)))
    assert b"" not in env


@pytest.mark.parametrize(
    "name",
    sorted(SERVER_VARIABLES)
    + [b"https", b"Script_Name", b"SCRIPT-NAME", b"HTTP_PROXY", b"REMOTE.USER"],
)
def test_extraCannotOverrideServerVariable(name: bytes) -> None:
    """
    An extra variable never sets a server variable (in any case or spelling),
    whether or not this request sets it, nor C{HTTP_PROXY}.
    """
    request = makeRequest(
        pathInfo=b"", contentLength=None, extraVariables=((name, b"spoof"),)
    )
    env = envDict(request)
    assert b"spoof" not in env.values()


@pytest.mark.parametrize(
    "name", [b"REMOTE_HOST", b"REMOTE_IDENT", b"PATH", b"SERVER_ADMIN", b"REDIRECT_URL"]
)
def test_extraSuppliesUnsetVariable(name: bytes) -> None:
    """
    An extra variable may supply a variable this module never sets.
    """
    env = envDict(makeRequest(extraVariables=((name, b"value"),)))
    assert env[name] == b"value"


def test_extraReplacesHeader() -> None:
    """
    An extra named C{HTTP_X} replaces the client's C{X} header and is sent
    once, among the extras.
    """
    request = makeRequest(
        headers=((b"X-Real-IP", b"6.6.6.6"), (b"Host", b"h")),
        extraVariables=((b"HTTP_X_REAL_IP", b"203.0.113.9"),),
    )
    pairs = buildEnvironment(request, OPTIONS)
    assert pairs[-2:] == [(b"HTTP_HOST", b"h"), (b"HTTP_X_REAL_IP", b"203.0.113.9")]
    assert [name for name, _ in pairs].count(b"HTTP_X_REAL_IP") == 1


def test_extraLaterWins() -> None:
    """
    When two extras share a (sanitised) name, the later value is sent, once.
    """
    request = makeRequest(
        extraVariables=((b"A-B", b"1"), (b"C", b"x"), (b"A.B", b"2"))
    )
    pairs = buildEnvironment(request, OPTIONS)
    assert pairs[-2:] == [(b"A_B", b"2"), (b"C", b"x")]


@pytest.mark.parametrize("value", [b"a\rb", b"a\nb", b"a\x00b"])
def test_extraValueWithControlDropped(value: bytes) -> None:
    """
    An extra variable whose value contains CR, LF or NUL is dropped.
    """
    env = envDict(makeRequest(extraVariables=((b"BAD", value), (b"GOOD", b"ok"))))
    assert b"BAD" not in env
    assert env[b"GOOD"] == b"ok"


# Other roles.


AUTHORIZER_OMITS = [b"CONTENT_LENGTH", b"PATH_INFO", b"PATH_TRANSLATED", b"SCRIPT_NAME"]


def test_authorizerOmits() -> None:
    """
    The Authorizer environment is the Responder one without C{CONTENT_LENGTH},
    C{PATH_INFO}, C{PATH_TRANSLATED} and C{SCRIPT_NAME}, in the same order.
    """
    request = makeRequest(
        method=b"POST",
        contentLength=10,
        headers=((b"Content-Type", b"text/plain"), (b"Host", b"h")),
        extraVariables=((b"TZ", b"UTC"),),
    )
    responder = buildEnvironment(request, OPTIONS)
    authorizer = buildAuthorizerEnvironment(request, OPTIONS)
    assert authorizer == [pair for pair in responder if pair[0] not in AUTHORIZER_OMITS]
    assert {name for name, _ in responder} - {name for name, _ in authorizer} == set(
        AUTHORIZER_OMITS
    )


def test_authorizerOmitsEvenWithEmptyPathInfoOption() -> None:
    """
    L{EnvironmentOptions.emptyPathInfo} does not add C{PATH_INFO} for an
    Authorizer.
    """
    options = EnvironmentOptions(emptyPathInfo=True)
    env = dict(buildAuthorizerEnvironment(makeRequest(pathInfo=b""), options))
    assert b"PATH_INFO" not in env


@pytest.mark.parametrize("name", AUTHORIZER_OMITS)
def test_authorizerOmittedNotFromExtras(name: bytes) -> None:
    """
    Extra variables cannot put back what the Authorizer environment omits.
    """
    request = makeRequest(extraVariables=((name, b"spoof"),))
    env = dict(buildAuthorizerEnvironment(request, OPTIONS))
    assert name not in env


def test_authorizerKeepsAuthVariables() -> None:
    """
    The Authorizer environment keeps C{SCRIPT_FILENAME}, C{QUERY_STRING},
    C{REQUEST_URI}, C{CONTENT_TYPE} and the headers.
    """
    request = makeRequest(
        headers=((b"Content-Type", b"a/b"), (b"Cookie", b"s=1")),
        authType=b"Basic",
        remoteUser=b"alice",
    )
    env = dict(buildAuthorizerEnvironment(request, OPTIONS))
    assert env[b"SCRIPT_FILENAME"] == b"/srv/app"
    assert env[b"QUERY_STRING"] == b"q=1"
    assert env[b"REQUEST_URI"] == b"/app/x?q=1"
    assert env[b"CONTENT_TYPE"] == b"a/b"
    assert env[b"HTTP_COOKIE"] == b"s=1"
    assert env[b"AUTH_TYPE"] == b"Basic"
    assert env[b"REMOTE_USER"] == b"alice"


def test_filterEnvironment() -> None:
    """
    The Filter environment is the Responder one plus C{FCGI_DATA_LAST_MOD} and
    C{FCGI_DATA_LENGTH} after the server variables.
    """
    request = makeRequest(headers=((b"Host", b"h"),))
    responder = buildEnvironment(request, OPTIONS)
    pairs = buildFilterEnvironment(
        request, OPTIONS, dataLastModified=1700000000, dataLength=4096
    )
    index = responder.index((b"HTTP_HOST", b"h"))
    assert pairs == (
        responder[:index]
        + [(b"FCGI_DATA_LAST_MOD", b"1700000000"), (b"FCGI_DATA_LENGTH", b"4096")]
        + responder[index:]
    )


def test_filterVariablesNotFromExtras() -> None:
    """
    Extra variables cannot supply C{FCGI_DATA_*} to a Responder.
    """
    request = makeRequest(extraVariables=((b"FCGI_DATA_LENGTH", b"1"),))
    assert b"FCGI_DATA_LENGTH" not in envDict(request)


# Values and types.


def test_gatewayRequestFrozenKeywordOnly() -> None:
    """
    L{GatewayRequest} is immutable and takes keyword arguments only.
    """
    request = makeRequest()
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.method = b"POST"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cast(Any, GatewayRequest)(b"GET")


def test_environmentOptionsFrozen() -> None:
    """
    L{EnvironmentOptions} is immutable and equal options compare equal.
    """
    options = EnvironmentOptions(passHeaders=frozenset([b"authorization"]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.emptyPathInfo = True  # type: ignore[misc]
    assert options == EnvironmentOptions(passHeaders=frozenset([b"authorization"]))


def test_allBytes() -> None:
    """
    Every name and value is C{bytes}.
    """
    request = makeRequest(
        headers=((b"Host", b"h"),), contentLength=3, extraVariables=((b"A", b"b"),)
    )
    for name, value in buildEnvironment(request, OPTIONS):
        assert type(name) is bytes
        assert type(value) is bytes


def test_noTwistedImport() -> None:
    """
    L{txfastcgi.cgienv} imports nothing from Twisted.
    """
    tree = ast.parse(Path(cgienv.__file__).read_text())
    modules: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.append(node.module or "")
    assert modules
    assert not [m for m in modules if m.split(".")[0] == "twisted"]


def test_noTwistedImportAtRuntime() -> None:
    """
    Importing L{txfastcgi.cgienv} in a fresh interpreter loads no Twisted
    module.
    """
    code = (
        "import sys, txfastcgi.cgienv; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'twisted'))"
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_nameCacheBounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The cache of header names stops growing at its limit and names past it
    are still translated correctly.
    """
    monkeypatch.setattr(cgienv, "_headerNames", {})
    limit = cgienv._NAME_CACHE_LIMIT
    headers = tuple((b"X-Junk-%d" % (i,), b"v") for i in range(limit + 10))
    env = envDict(makeRequest(headers=headers))
    assert len(cgienv._headerNames) <= limit
    assert env[b"HTTP_X_JUNK_%d" % (limit + 9,)] == b"v"
    assert headerEnv((b"X_Uncached_Name", b"v"), (b"Proxy", b"p")) == {}


# Properties.

_NAME = re.compile(rb"[A-Z0-9_]+\Z")

headerNames = st.one_of(
    st.binary(max_size=12),
    st.sampled_from(
        [
            b"Host",
            b"Cookie",
            b"cookie",
            b"Proxy",
            b"Authorization",
            b"Content-Type",
            b"Content-Length",
            b"X-Forwarded-For",
            b"X_Forwarded_For",
            b"Https",
            b"Script-Name",
            b"-",
        ]
    ),
    st.text(alphabet="abcXYZ09-_.", max_size=8).map(str.encode),
)
headerLists = st.lists(st.tuples(headerNames, st.binary(max_size=16)), max_size=20)


@given(headers=headerLists, authorizer=st.booleans())
def test_propertyNamesWellFormedAndUnique(
    headers: list[tuple[bytes, bytes]], authorizer: bool
) -> None:
    """
    For any header list, every name is made of C{[A-Z0-9_]}, no name repeats,
    C{HTTP_PROXY} and C{HTTP_AUTHORIZATION} never appear, no value holds CR,
    LF or NUL, and the server variables keep their values.
    """
    request = makeRequest(headers=tuple(headers), contentLength=None)
    build = buildAuthorizerEnvironment if authorizer else buildEnvironment
    pairs = build(request, OPTIONS)
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names))
    for name, value in pairs:
        assert _NAME.match(name), name
        assert b"\r" not in value and b"\n" not in value and b"\x00" not in value
    assert b"HTTP_PROXY" not in names
    assert b"HTTP_AUTHORIZATION" not in names
    assert b"HTTP_CONTENT_LENGTH" not in names
    assert b"HTTP_CONTENT_TYPE" not in names
    assert b"CONTENT_LENGTH" not in names
    env = dict(pairs)
    assert env[b"REQUEST_URI"] == b"/app/x?q=1"
    assert env[b"REMOTE_ADDR"] == b"203.0.113.9"


@given(
    headers=headerLists,
    extras=st.lists(st.tuples(headerNames, st.binary(max_size=8)), max_size=10),
)
def test_propertyExtrasNeverRepeatOrOverride(
    headers: list[tuple[bytes, bytes]], extras: list[tuple[bytes, bytes]]
) -> None:
    """
    With any headers and extra variables, no name repeats, names are made of
    C{[A-Za-z0-9_]}, and the server variables before the headers are exactly
    those built without extras.
    """
    plain = buildEnvironment(makeRequest(headers=tuple(headers)), OPTIONS)
    pairs = buildEnvironment(
        makeRequest(headers=tuple(headers), extraVariables=tuple(extras)), OPTIONS
    )
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names))
    assert b"HTTP_PROXY" not in names
    for name in names:
        assert re.match(rb"[A-Za-z0-9_]+\Z", name), name
    serverPart = [pair for pair in plain if pair[0] in SERVER_VARIABLES]
    assert pairs[: len(serverPart)] == serverPart
    assert not any(name in SERVER_VARIABLES for name in names[len(serverPart) :])
