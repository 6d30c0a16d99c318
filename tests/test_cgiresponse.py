"""
Tests for L{txfastcgi.cgiresponse}.
"""

from __future__ import annotations

import time
from dataclasses import FrozenInstanceError, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txfastcgi.cgiresponse import (
    CLIENT_REDIRECT,
    LOCAL_REDIRECT,
    NORMAL,
    MalformedResponseError,
    ResponseHead,
    ResponseHeadParser,
    ResponseKind,
    classifyLocation,
)

Outcome = tuple[str, object, bytes]


def outcome(pieces: list[bytes], maxHeaderBytes: int = 8192) -> Outcome:
    """
    Feed C{pieces} to a new parser and then end the stream, and say what
    happened in a form that does not depend on how the bytes were split.

    @return: C{("head", head without bodyStart, whole body)} or
        C{("error", message, b"")}.
    """
    parser = ResponseHeadParser(maxHeaderBytes)
    try:
        for index, piece in enumerate(pieces):
            head = parser.feed(piece)
            if head is not None:
                body = head.bodyStart + b"".join(pieces[index + 1 :])
                return ("head", replace(head, bodyStart=b""), body)
        parser.finish()
    except MalformedResponseError as e:
        return ("error", str(e), b"")
    raise AssertionError("finish() returned before a head was parsed")


def splits(data: bytes) -> list[list[bytes]]:
    """
    Ways to cut C{data}: whole, byte by byte, and in two at every index.
    """
    ways = [[data], [data[i : i + 1] for i in range(len(data))]]
    ways.extend([data[:i], data[i:]] for i in range(len(data) + 1))
    return ways


def parse(data: bytes, maxHeaderBytes: int = 8192) -> ResponseHead:
    """
    Parse C{data}, fed whole, checking that every other way of splitting it
    gives the same result, and return the head.
    """
    expected = outcome([data], maxHeaderBytes)
    for pieces in splits(data):
        assert outcome(pieces, maxHeaderBytes) == expected, pieces
    parser = ResponseHeadParser(maxHeaderBytes)
    head = parser.feed(data)
    assert head is not None, expected
    return head


def parseError(data: bytes, maxHeaderBytes: int = 8192) -> str:
    """
    Parse C{data}, which must be malformed, in every way of splitting it, and
    return the error message.
    """
    expected = outcome([data], maxHeaderBytes)
    assert expected[0] == "error", expected
    for pieces in splits(data):
        assert outcome(pieces, maxHeaderBytes) == expected, pieces
    return str(expected[1])


COMMON = b"Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world\n"


# --- the common case and line ends ---------------------------------------------


def test_commonCase() -> None:
    """
    A typical response head fed in one piece gives status 200 and its headers,
    and the rest of the piece as the start of the body.
    """
    head = ResponseHeadParser().feed(COMMON)
    assert head == ResponseHead(
        status=200,
        reason=b"OK",
        headers=((b"Content-Type", b"text/plain"), (b"Content-Length", b"13")),
        contentType=b"text/plain",
        location=None,
        contentLength=13,
        kind=NORMAL,
        bodyStart=b"Hello, world\n",
    )
    assert not head.needsGeneratedBody


def test_commonCaseEverySplit() -> None:
    """
    The typical response head gives the same head and body however it is split.
    """
    head = parse(COMMON)
    assert head.headers == ((b"Content-Type", b"text/plain"), (b"Content-Length", b"13"))


@pytest.mark.parametrize(
    "data",
    [
        b"Content-Type: text/plain\nX-A: 1\n\nbody",
        b"Content-Type: text/plain\r\nX-A: 1\r\n\r\nbody",
        b"Content-Type: text/plain\r\nX-A: 1\n\r\nbody",
        b"Content-Type: text/plain\nX-A: 1\r\n\nbody",
        b"Content-Type: text/plain\r\nX-A: 1\n\nbody",
        b"Content-Type: text/plain\nX-A: 1\r\n\r\nbody",
    ],
)
def test_lineEnds(data: bytes) -> None:
    """
    LF, CRLF and any mix of them end header lines, and an empty line ended by
    LF or CRLF ends the block.
    """
    head = parse(data)
    assert head.headers == ((b"Content-Type", b"text/plain"), (b"X-A", b"1"))
    assert head.bodyStart == b"body"


@pytest.mark.parametrize(
    "data, body",
    [
        (b"X: 1\n\n\r\n\nrest", b"\r\n\nrest"),
        (b"X: 1\r\n\r\n\r\n", b"\r\n"),
        (b"X: 1\n\r\n\n", b"\n"),
        (b"X: 1\n\n", b""),
    ],
)
def test_firstEmptyLineEndsBlock(data: bytes, body: bytes) -> None:
    """
    Only the first empty line ends the block; what follows it is body.
    """
    head = parse(data)
    assert head.headers == ((b"X", b"1"),)
    assert head.bodyStart == body


@pytest.mark.parametrize("data, body", [(b"\nbody", b"body"), (b"\r\nbody", b"body")])
def test_emptyBlock(data: bytes, body: bytes) -> None:
    """
    An empty line at the very start is an empty header block: status 200, no
    headers, no Content-type.
    """
    head = parse(data)
    assert (head.status, head.reason, head.headers, head.contentType, head.kind) == (
        200,
        b"OK",
        (),
        None,
        NORMAL,
    )
    assert head.bodyStart == body


def test_crBeforeCrlfIsNotALineEnd() -> None:
    """
    Only one CR before the LF belongs to the line end; a second one is a CR in
    the value.
    """
    assert "CR in header value" in parseError(b"X: 1\r\r\n\r\n")


def test_crOnlyLineIsNotEmpty() -> None:
    """
    A line holding only a CR besides its CRLF end is not the empty line.
    """
    assert "no colon" in parseError(b"X: 1\r\n\r\r\n\r\n")


# --- Status, Location, Content-type ---------------------------------------------


@pytest.mark.parametrize(
    "data, status, reason, kind, needsGeneratedBody",
    [
        # No Status, no Location.
        (b"Content-type: text/html\n\n", 200, b"OK", NORMAL, False),
        (b"X-A: 1\n\n", 200, b"OK", NORMAL, False),
        # Status sets the status; reason optional.
        (b"Status: 404 Not Found\n\n", 404, b"Not Found", NORMAL, False),
        (b"Status: 404\n\n", 404, b"Not Found", NORMAL, False),
        (b"Status: 404 Gone Fishing\n\n", 404, b"Gone Fishing", NORMAL, False),
        (b"Status: 200\tFine\n\n", 200, b"Fine", NORMAL, False),
        (b"Status:   503   Busy  now  \n\n", 503, b"Busy  now", NORMAL, False),
        (b"Status: 299\n\n", 299, b"", NORMAL, False),
        (b"Status: 200\n\n", 200, b"OK", NORMAL, False),
        (b"Status: 599\n\n", 599, b"", NORMAL, False),
        (b"status: 418\n\n", 418, b"I'm a Teapot", NORMAL, False),
        (b"STATUS: 204\n\n", 204, b"No Content", NORMAL, False),
        # A full URL without Status: 302.
        (b"Location: http://x/\n\n", 302, b"Found", CLIENT_REDIRECT, True),
        (
            b"Location: http://x/\nContent-type: text/html\n\n",
            302,
            b"Found",
            CLIENT_REDIRECT,
            False,
        ),
        # A full URL with Status: that status.
        (b"Status: 301\nLocation: http://x/\n\n", 301, b"Moved Permanently", CLIENT_REDIRECT, True),
        (b"Location: http://x/\nStatus: 303 See There\n\n", 303, b"See There", CLIENT_REDIRECT, True),
        (b"Status: 307\nLocation: https://x/y?z\n\n", 307, b"Temporary Redirect", CLIENT_REDIRECT, True),
        (b"Status: 201\nLocation: http://x/new\n\n", 201, b"Created", NORMAL, False),
        (b"Status: 200\nLocation: http://x/\n\n", 200, b"OK", NORMAL, False),
        (b"Status: 304\nLocation: http://x/\n\n", 304, b"Not Modified", NORMAL, False),
        # A network-path reference names another host: for the client.
        (b"Location: //evil.example/\n\n", 302, b"Found", CLIENT_REDIRECT, True),
        # A relative reference is resolved by the client.
        (b"Location: relative/path\n\n", 302, b"Found", CLIENT_REDIRECT, True),
        # A local path with status 200 (absent or explicit): internal redirect.
        (b"Location: /local?q=1\n\n", 200, b"OK", LOCAL_REDIRECT, False),
        (b"Location: /local\nContent-type: text/html\n\n", 200, b"OK", LOCAL_REDIRECT, False),
        (b"Status: 200\nLocation: /local\n\n", 200, b"OK", LOCAL_REDIRECT, False),
        # A local path with another status is an ordinary header.
        (b"Status: 302\nLocation: /local\n\n", 302, b"Found", CLIENT_REDIRECT, True),
        (b"Status: 404\nLocation: /local\n\n", 404, b"Not Found", NORMAL, False),
        (b"Status: 201\nLocation: /new\n\n", 201, b"Created", NORMAL, False),
    ],
)
def test_statusAndKind(
    data: bytes,
    status: int,
    reason: bytes,
    kind: ResponseKind,
    needsGeneratedBody: bool,
) -> None:
    """
    The status, reason and kind of a response follow from its Status and
    Location headers.
    """
    head = parse(data)
    assert (head.status, head.reason, head.kind, head.needsGeneratedBody) == (
        status,
        reason,
        kind,
        needsGeneratedBody,
    )


def test_statusIsConsumed() -> None:
    """
    The Status header is not among the headers to send.
    """
    head = parse(b"X-A: 1\nStatus: 404\nX-B: 2\n\n")
    assert head.headers == ((b"X-A", b"1"), (b"X-B", b"2"))


def test_locationAndContentTypeKept() -> None:
    """
    Location and Content-type are reported and also stay among the headers, as
    sent.
    """
    head = parse(b"Status: 301\nlocation:  http://x/  \nCONTENT-TYPE: text/html\n\n")
    assert head.location == b"http://x/"
    assert head.contentType == b"text/html"
    assert head.headers == ((b"location", b"http://x/"), (b"CONTENT-TYPE", b"text/html"))


def test_noContentTypeAllowed() -> None:
    """
    A status 200 response without Content-type is allowed and gets no default
    type.
    """
    head = parse(b"X-A: 1\n\n")
    assert head.contentType is None
    assert head.headers == ((b"X-A", b"1"),)


@pytest.mark.parametrize(
    "value",
    [
        b"abc",
        b"20",
        b"2000",
        b"-200",
        b"+200",
        b"200OK",
        b"20 0",
        b"2.0",
        b"\xef\xbc\x92\xef\xbc\x90\xef\xbc\x90",  # full-width digits
        b"0x1",
    ],
)
def test_statusNotThreeDigits(value: bytes) -> None:
    """
    A Status whose code is not three ASCII digits followed by the end or
    whitespace is malformed.
    """
    message = parseError(b"Status: " + value + b"\n\n")
    assert "malformed Status header: the code must be 3 digits" in message
    assert repr(value) in message


@pytest.mark.parametrize("value", [b"000", b"099", b"100", b"101 Switching", b"199", b"600", b"999"])
def test_statusOutOfRange(value: bytes) -> None:
    """
    A Status code outside 200..599 is refused, 1xx included (not a final status).
    """
    message = parseError(b"Status: " + value + b"\n\n")
    assert f"code {int(value[:3])} is not a final status (200-599)" in message


@pytest.mark.parametrize(
    "data, message",
    [
        (b"Status: 200\nStatus: 200\n\n", "duplicate Status header"),
        (b"Status: 200\nstatus: 404\n\n", "duplicate Status header"),
        (b"Location: /a\nLocation: /a\n\n", "duplicate Location header"),
        (b"Location: http://a/\nLOCATION: http://b/\n\n", "duplicate Location header"),
        (b"Content-type: text/html\nContent-Type: text/html\n\n", "duplicate Content-type header"),
        (b"Content-type: text/html\ncontent-type: text/plain\n\n", "duplicate Content-type header"),
        (b"Status:\n\n", "empty Status header"),
        (b"Status:   \n\n", "empty Status header"),
        (b"Location:\n\n", "empty Location header"),
        (b"Location: \t \n\n", "empty Location header"),
        (b"Content-type:\n\n", "empty Content-type header"),
    ],
)
def test_duplicateAndEmptySpecialHeaders(data: bytes, message: str) -> None:
    """
    Status, Location and Content-type may each appear once, and not empty.
    """
    assert parseError(data) == message


# --- other headers ---------------------------------------------------------------


def test_setCookieMultiplicity() -> None:
    """
    Repeated headers stay separate and in order, with their names as sent.
    """
    head = parse(
        b"Set-Cookie: a=1; Path=/\r\nX-A: 1\r\nset-cookie: b=2\r\n"
        b"Set-Cookie: c=3, d=4\r\nSet-Cookie: a=1; Path=/\r\n\r\n"
    )
    assert head.headers == (
        (b"Set-Cookie", b"a=1; Path=/"),
        (b"X-A", b"1"),
        (b"set-cookie", b"b=2"),
        (b"Set-Cookie", b"c=3, d=4"),
        (b"Set-Cookie", b"a=1; Path=/"),
    )


@pytest.mark.parametrize(
    "name",
    [
        b"Connection",
        b"connection",
        b"Keep-Alive",
        b"Transfer-Encoding",
        b"TRANSFER-ENCODING",
        b"TE",
        b"Trailer",
        b"Upgrade",
        b"Proxy-Connection",
    ],
)
def test_hopByHopRemoved(name: bytes) -> None:
    """
    Hop-by-hop headers from the app are dropped; the others stay in order.
    """
    head = parse(b"X-A: 1\n" + name + b": chunked\nX-B: 2\n" + name + b": x\n\n")
    assert head.headers == ((b"X-A", b"1"), (b"X-B", b"2"))


def test_hopByHopLookalikesKept() -> None:
    """
    Headers whose names merely resemble hop-by-hop ones are kept.
    """
    head = parse(b"Connections: 1\nX-Connection: 2\nTE-X: 3\nContent-Encoding: gzip\n\n")
    assert [name for name, value in head.headers] == [
        b"Connections",
        b"X-Connection",
        b"TE-X",
        b"Content-Encoding",
    ]


@pytest.mark.parametrize(
    "raw, stripped",
    [
        (b"X:a", b"a"),
        (b"X: a", b"a"),
        (b"X:  \t a b \t ", b"a b"),
        (b"X:\ta\t", b"a"),
        (b"X:", b""),
        (b"X:   ", b""),
        (b"X: a  \t  b", b"a  \t  b"),
        (b"X: \xff\x80 obs-text", b"\xff\x80 obs-text"),
        (b"X: a:b:c", b"a:b:c"),
    ],
)
def test_valueWhitespaceStripped(raw: bytes, stripped: bytes) -> None:
    """
    SP and HT are stripped from both ends of a value and kept inside it.
    """
    for end in (b"\n", b"\r\n"):
        assert parse(raw + end + end).headers == ((b"X", stripped),)


# --- Content-Length ---------------------------------------------------------------


@pytest.mark.parametrize(
    "lines, contentLength, kept",
    [
        ([b"Content-Length: 13"], 13, [b"13"]),
        ([b"Content-Length: 0"], 0, [b"0"]),
        ([b"content-length: 007"], 7, [b"007"]),
        ([b"Content-Length: 9223372036854775807"], 9223372036854775807, [b"9223372036854775807"]),
        ([b"Content-Length: 13", b"Content-Length: 13"], 13, [b"13"]),
        ([b"Content-Length: 13", b"Content-Length: 013"], 13, [b"13"]),
        ([b"Content-Length: 13", b"Content-Length: 14"], None, []),
        ([b"Content-Length: 13", b"Content-Length: x"], None, []),
        ([b"Content-Length: abc"], None, []),
        ([b"Content-Length: -1"], None, []),
        ([b"Content-Length: +1"], None, []),
        ([b"Content-Length: 1.5"], None, []),
        ([b"Content-Length: 1 2"], None, []),
        ([b"Content-Length: 13, 13"], None, []),
        ([b"Content-Length:"], None, []),
        ([b"Content-Length: 12345678901234567890"], None, []),
        ([b"Content-Length: " + b"1" * 5000], None, []),
    ],
)
def test_contentLength(lines: list[bytes], contentLength: int | None, kept: list[bytes]) -> None:
    """
    A valid Content-Length is kept; repeated equal ones are kept once; invalid or
    disagreeing ones are all dropped, so that Twisted frames the body itself.
    """
    head = parse(b"Content-type: text/plain\n" + b"\n".join(lines) + b"\n\n")
    assert head.contentLength == contentLength
    assert [v for n, v in head.headers if n.lower() == b"content-length"] == kept
    assert head.headers[0] == (b"Content-type", b"text/plain")


def test_contentLengthDroppedForGeneratedBody() -> None:
    """
    A client redirect whose body the gateway generates loses the app's
    Content-Length, which would not match the generated body.
    """
    head = parse(b"Location: http://x/\nContent-Length: 0\nX-A: 1\n\n")
    assert head.needsGeneratedBody
    assert head.contentLength is None
    assert head.headers == ((b"Location", b"http://x/"), (b"X-A", b"1"))


def test_contentLengthKeptForRedirectWithBody() -> None:
    """
    A client redirect with a Content-type sends the app's body, so its
    Content-Length is kept.
    """
    head = parse(b"Location: http://x/\nContent-type: text/html\nContent-Length: 5\n\n")
    assert not head.needsGeneratedBody
    assert head.contentLength == 5


# --- continuation lines ------------------------------------------------------------


@pytest.mark.parametrize(
    "data, headers",
    [
        (b"X: a\n b\n\n", ((b"X", b"a b"),)),
        (b"X: a  \n \t b  \n\n", ((b"X", b"a b"),)),
        (b"X: a\r\n\tb\r\n c\r\nY: 1\r\n\r\n", ((b"X", b"a b c"), (b"Y", b"1"))),
        (b"X: a\n \nY: 1\n\n", ((b"X", b"a"), (b"Y", b"1"))),
        (b"X:\n a\n\n", ((b"X", b"a"),)),
    ],
)
def test_continuationLinesJoined(data: bytes, headers: tuple[tuple[bytes, bytes], ...]) -> None:
    """
    A line starting with SP or HT continues the previous header, joined with a
    single space.
    """
    assert parse(data).headers == headers


def test_continuedStatus() -> None:
    """
    Continuation lines are joined before the special headers are interpreted.
    """
    head = parse(b"Status: 404\n Not Here\n\n")
    assert (head.status, head.reason) == (404, b"Not Here")


@pytest.mark.parametrize("data", [b" X: a\n\n", b"\tX: a\n\n", b" \nX: a\n\n"])
def test_continuationBeforeFirstHeader(data: bytes) -> None:
    """
    A continuation line (or whitespace before a name) on the first line is
    malformed.
    """
    assert "line 1: continuation line before the first header" in parseError(data)


def test_malformedLineAfterContinuationNumbered() -> None:
    """
    The error names the physical line number even after continuation lines.
    """
    assert "line 4: no colon" in parseError(b"X: a\n b\n c\nbad\n\n")


# --- malformed lines -----------------------------------------------------------------


@pytest.mark.parametrize(
    "line, what",
    [
        (b"no colon here", "no colon"),
        (b"X", "no colon"),
        (b": value", "empty header name"),
        (b":", "empty header name"),
        (b"X Y: 1", "whitespace in header name"),
        (b"X : 1", "whitespace in header name"),
        (b"X\t: 1", "whitespace in header name"),
        (b"X(y): 1", "invalid character 0x28 in header name"),
        (b"X/y: 1", "invalid character 0x2f in header name"),
        (b"X\"y: 1", "invalid character 0x22 in header name"),
        (b"X\x00: 1", "invalid character 0x00 in header name"),
        (b"X\x7f: 1", "invalid character 0x7f in header name"),
        (b"X\xc3\xa9: 1", "invalid character 0xc3 in header name"),
        (b"X\ry: 1", "invalid character 0x0d in header name"),
        (b"X: a\rb", "CR in header value"),
        (b"X: a\x00b", "NUL in header value"),
        (b"X: \x00", "NUL in header value"),
        (b"X: a\x0bb", "control character 0x0b in header value"),
        (b"X: a\x0cb", "control character 0x0c in header value"),
        (b"X: a\x1bb", "control character 0x1b in header value"),
        (b"X: a\x7fb", "control character 0x7f in header value"),
        (b"Content-type: text/html\x00", "NUL in header value"),
        (b"Status: 200\rX", "CR in header value"),
    ],
)
def test_malformedLine(line: bytes, what: str) -> None:
    """
    Each kind of malformed line is refused with a message naming the line and
    the fault.
    """
    for end in (b"\n", b"\r\n"):
        message = parseError(b"X-First: 1" + end + line + end + end)
        assert message.startswith(f"malformed response header line 2: {what}: "), message


def test_lfInsideValue() -> None:
    """
    An LF always ends a line, so an LF meant to be inside a value leaves a
    following line without a colon.
    """
    assert "line 2: no colon: b'b'" in parseError(b"X: a\nb\n\n")


def test_malformedMessageShortened() -> None:
    """
    The error message shows at most 40 bytes of the offending line.
    """
    message = parseError(b"X" * 100 + b"\n\n")
    assert message == f"malformed response header line 1: no colon: {b'X' * 40!r}..."


# --- classifyLocation ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value, kind",
    [
        (b"http://x/", CLIENT_REDIRECT),
        (b"https://x/y?z", CLIENT_REDIRECT),
        (b"HTTP://X", CLIENT_REDIRECT),
        (b"mailto:a@example.com", CLIENT_REDIRECT),
        (b"mailto:", CLIENT_REDIRECT),
        (b"//evil.example/", CLIENT_REDIRECT),
        (b"//", CLIENT_REDIRECT),
        (b"relative/path", CLIENT_REDIRECT),
        (b"?q=1", CLIENT_REDIRECT),
        (b"#frag", CLIENT_REDIRECT),
        (b"/", LOCAL_REDIRECT),
        (b"/local?q=1", LOCAL_REDIRECT),
        (b"/a//b", LOCAL_REDIRECT),
        (b"/\\evil.example", LOCAL_REDIRECT),
        (b"", NORMAL),
    ],
)
def test_classifyLocation(value: bytes, kind: ResponseKind) -> None:
    """
    A local path (C{/} but not C{//}) is a local redirect, an empty value none,
    and anything else is for the client.
    """
    assert classifyLocation(value) is kind


# --- the size cap ---------------------------------------------------------------------


def blockOfSize(size: int, lineEnd: bytes = b"\r\n") -> bytes:
    """
    A header block of exactly C{size} bytes, blank line included.
    """
    filler = size - len(b"X: " + lineEnd + lineEnd)
    return b"X: " + b"a" * filler + lineEnd + lineEnd


@pytest.mark.parametrize("maxHeaderBytes", [8192, 64])
@pytest.mark.parametrize("lineEnd", [b"\n", b"\r\n"])
def test_capExactBoundary(maxHeaderBytes: int, lineEnd: bytes) -> None:
    """
    A header block of exactly C{maxHeaderBytes} bytes is accepted, however it
    is split, and one of a byte more is refused.
    """
    block = blockOfSize(maxHeaderBytes, lineEnd)
    assert len(block) == maxHeaderBytes
    data = block + b"body"
    for pieces in [[data], [data[i : i + 1] for i in range(len(data))]]:
        result = outcome(pieces, maxHeaderBytes)
        assert result[0] == "head" and result[2] == b"body"
    bigger = blockOfSize(maxHeaderBytes + 1, lineEnd) + b"body"
    message = f"response header block exceeds {maxHeaderBytes} bytes"
    for pieces in [[bigger], [bigger[i : i + 1] for i in range(len(bigger))]]:
        assert outcome(pieces, maxHeaderBytes) == ("error", message, b"")


def test_capEverySplit() -> None:
    """
    The size cap gives the same answer at every split point, on both sides of
    the boundary.
    """
    assert parse(blockOfSize(31) + b"xy", 32).bodyStart == b"xy"
    assert parse(blockOfSize(32) + b"xy", 32).bodyStart == b"xy"
    assert parseError(blockOfSize(33) + b"xy", 32) == (
        "response header block exceeds 32 bytes"
    )


def test_capWithoutEnd() -> None:
    """
    Once C{maxHeaderBytes} bytes are buffered without the end of the block, the
    parser fails at once instead of buffering more.
    """
    parser = ResponseHeadParser(maxHeaderBytes=16)
    assert parser.feed(b"X: " + b"a" * 12) is None
    with pytest.raises(MalformedResponseError, match="exceeds 16 bytes"):
        parser.feed(b"a")


def test_capSmallest() -> None:
    """
    A cap of 1 still allows an empty block ended by a bare LF.
    """
    assert outcome([b"\nbody"], 1)[0] == "head"
    assert outcome([b"\r\nbody"], 1)[0] == "error"


def test_capLargeDataNotSearched() -> None:
    """
    A huge piece without an early blank line is refused without scanning it all.
    """
    parser = ResponseHeadParser(maxHeaderBytes=8192)
    with pytest.raises(MalformedResponseError, match="exceeds 8192 bytes"):
        parser.feed(b"X: " + b"a" * 10_000_000 + b"\n\n")


@pytest.mark.parametrize("maxHeaderBytes", [0, -1])
def test_capMustBePositive(maxHeaderBytes: int) -> None:
    """
    A cap below 1 is refused.
    """
    with pytest.raises(ValueError):
        ResponseHeadParser(maxHeaderBytes)


# --- end of stream and caller errors -----------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"X: 1", b"X: 1\n", b"X: 1\r\n\r", b"\r", b"X: 1\n\r"])
def test_eofInHeaders(data: bytes) -> None:
    """
    The end of STDOUT before the end of the block is an error saying how many
    bytes arrived.
    """
    for pieces in splits(data):
        assert outcome(pieces) == (
            "error",
            f"incomplete headers ({len(data)} bytes) received from app",
            b"",
        )


def test_finishAfterHead() -> None:
    """
    Ending the stream after the head is fine.
    """
    parser = ResponseHeadParser()
    assert parser.feed(COMMON) is not None
    parser.finish()
    parser.finish()


def test_feedAfterHead() -> None:
    """
    Feeding more data after the head was returned is a caller error.
    """
    parser = ResponseHeadParser()
    assert parser.feed(COMMON) is not None
    with pytest.raises(RuntimeError, match="done"):
        parser.feed(b"more body")


def test_callsAfterFailure() -> None:
    """
    Feeding or finishing after an error was raised is a caller error.
    """
    parser = ResponseHeadParser()
    with pytest.raises(MalformedResponseError):
        parser.feed(b"bad\n\n")
    with pytest.raises(RuntimeError, match="failed"):
        parser.feed(b"X: 1\n\n")
    with pytest.raises(RuntimeError, match="failed"):
        parser.finish()


def test_emptyFeeds() -> None:
    """
    Empty pieces change nothing.
    """
    parser = ResponseHeadParser()
    assert parser.feed(b"") is None
    assert parser.feed(b"X: 1\n") is None
    assert parser.feed(b"") is None
    head = parser.feed(b"\n")
    assert head is not None
    assert head.headers == ((b"X", b"1"),) and head.bodyStart == b""


def test_headIsFrozen() -> None:
    """
    A L{ResponseHead} cannot be changed.
    """
    head = ResponseHeadParser().feed(COMMON)
    assert head is not None
    with pytest.raises(FrozenInstanceError):
        head.status = 500  # type: ignore[misc]


def test_bodyStartNotInRepr() -> None:
    """
    The repr of a head leaves out the body bytes.
    """
    head = ResponseHeadParser().feed(COMMON)
    assert "Hello" not in repr(head)


def test_linearByteByByte() -> None:
    """
    A 128 KiB header block fed one byte at a time is parsed in linear time (a
    quadratic search would take well over ten seconds here).
    """
    block = b"X-Header: value\r\n" * 7710 + b"\r\n"
    parser = ResponseHeadParser(maxHeaderBytes=len(block))
    started = time.perf_counter()
    for i in range(len(block) - 1):
        assert parser.feed(block[i : i + 1]) is None
    head = parser.feed(block[-1:])
    elapsed = time.perf_counter() - started
    assert head is not None and len(head.headers) == 7710
    assert elapsed < 3.0


# --- split independence (property tests) ------------------------------------------------

NAMES = st.sampled_from(
    [
        b"Status",
        b"status",
        b"Location",
        b"Content-Type",
        b"Content-type",
        b"Content-Length",
        b"Set-Cookie",
        b"Transfer-Encoding",
        b"Connection",
        b"X-A",
        b"",
        b"X Y",
        b"X(",
        b"\xff",
        b" X",
        b"\tX",
    ]
)
VALID_NAMES = st.sampled_from(
    [b"Status", b"Location", b"Content-Type", b"Content-Length", b"Set-Cookie", b"X-A"]
)
SEPARATORS = st.sampled_from([b": "] * 4 + [b":", b":\t ", b" :", b""])
VALUES = st.sampled_from(
    [
        b"200",
        b"302 Found",
        b"404",
        b"99",
        b"-1",
        b"13",
        b"14",
        b"/local",
        b"http://x/",
        b"//evil/",
        b"text/plain",
        b"a=1",
        b"",
        b"  padded  ",
        b"a\rb",
        b"a\x00b",
        b"a\x0bb",
        b"\xff",
    ]
)
LINE_ENDS = st.sampled_from([b"\n", b"\r\n"] * 4 + [b"\r\r\n", b"\n ", b"\n\t"])
LINES = st.lists(
    st.tuples(NAMES | VALID_NAMES, SEPARATORS, VALUES, LINE_ENDS).map(b"".join),
    max_size=8,
).map(b"".join)
STRUCTURED = st.tuples(
    LINES,
    st.sampled_from([b"\n", b"\r\n"] * 4 + [b"", b"\r"]),
    st.binary(max_size=20),
).map(b"".join)
FRAGMENTS = st.lists(
    st.one_of(NAMES, SEPARATORS, VALUES, LINE_ENDS), max_size=40
).map(b"".join)
RESPONSES = st.one_of(st.binary(max_size=200), FRAGMENTS, STRUCTURED, STRUCTURED)


@st.composite
def responseAndCuts(draw: st.DrawFn) -> tuple[bytes, list[bytes], int]:
    """
    Draw a response, a way of cutting it into pieces, and a header size cap.
    """
    data = draw(RESPONSES)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:])]
    maxHeaderBytes = draw(st.one_of(st.just(8192), st.integers(1, 120)))
    return data, pieces, maxHeaderBytes


@settings(max_examples=1000, deadline=None)
@given(responseAndCuts())
def test_splitIndependence(case: tuple[bytes, list[bytes], int]) -> None:
    """
    Arbitrary bytes in arbitrary pieces give a head or a
    L{MalformedResponseError}, nothing else, and the same one (with the same
    body) as when fed whole.
    """
    data, pieces, maxHeaderBytes = case
    assert outcome(pieces, maxHeaderBytes) == outcome([data], maxHeaderBytes)


@settings(max_examples=300, deadline=None)
@given(RESPONSES)
def test_byteByByteIndependence(data: bytes) -> None:
    """
    Arbitrary bytes fed one byte at a time give the same result as fed whole.
    """
    assert outcome([data[i : i + 1] for i in range(len(data))]) == outcome([data])


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"X-A", b"Set-Cookie", b"Content-Type", b"Status", b"Vary"]),
            st.sampled_from([b"1", b"text/plain", b"404 Nope", b"a b", b""]),
        ),
        max_size=6,
    ),
    st.sampled_from([b"\n", b"\r\n"]),
)
def test_wellFormedHeadersAccepted(
    pairs: list[tuple[bytes, bytes]], lineEnd: bytes
) -> None:
    """
    Well-formed header lines are accepted unless a rule about the special
    headers forbids them, and plain headers come out as they went in.
    """
    data = b"".join(n + b": " + v + lineEnd for n, v in pairs) + lineEnd + b"body"
    result = outcome([data])
    if result[0] == "error":
        message = str(result[1])
        assert message.startswith(("duplicate ", "empty ", "malformed Status", "invalid Status"))
    else:
        head = result[1]
        assert isinstance(head, ResponseHead)
        assert result[2] == b"body"
        assert head.headers == tuple((n, v) for n, v in pairs if n != b"Status")
