# -*- test-case-name: tests.test_cgiresponse -*-
"""
An incremental parser for the head of a CGI response (RFC 3875 section 6), as a
FastCGI Responder writes it at the start of its STDOUT stream.

Everything here is pure: bytes in, values out, no I/O and no Twisted.  The
gateway feeds STDOUT bytes, in whatever pieces they arrive, to a
L{ResponseHeadParser} until it returns a L{ResponseHead}; from then on the
bytes are body and go to the client unparsed (the first of them are
L{ResponseHead.bodyStart}).

Rules (SPEC.md section 5.3 and Decision 9; "2.0" is mod_fastcgi 2.0's
C{ScanCGIHeader}, "HEAD" is the last mod_fastcgi's C{process_headers}):

  - B{End of the head.}  The first empty line ends the header block: C{\\n\\n},
    C{\\r\\n\\r\\n} and C{\\n\\r\\n} all do (2.0: two consecutive C{\\n}, C{\\r}
    ignored).  An empty line at the very start gives an empty header block.
    A line ends at C{\\n}; one C{\\r} just before it belongs to the line end.
    The block, including the empty line, may be at most C{maxHeaderBytes}
    long (SPEC.md section 9.1; the C{==} case is accepted).
  - B{Continuation lines} (obs-fold: a line starting with SP or HT) are joined
    to the previous header with a single space, as 2.0 did and as RFC 9112
    section 5.2 allows a gateway to do.  A continuation line before the
    first header is malformed.
  - B{Names} must be non-empty RFC 9110 tokens (C{tchar}); whitespace
    between the name and the colon is malformed (RFC 9112 section 5.1).
    Names are kept as sent, and special names are recognised regardless of
    case.
  - B{Values} are stripped of SP and HT at both ends and must not contain a
    control character other than HT: NUL, a CR that is not part of the line
    end, VT, FF, DEL ... are all malformed (Decision 9 names NUL and CR;
    HEAD also rejected VT and FF; RFC 9110 section 5.5 calls them invalid).
    An LF cannot be inside a value: it always ends the line, so a stray LF
    shows up as a following line without a colon.
  - B{Status} (C{Status: NNN reason}) is consumed, not passed on.  The code is
    exactly three ASCII digits followed by the end of the value or by
    whitespace and the reason; it must lie in 200..599.  1xx codes are
    refused: they are interim responses and cannot end a CGI response, and
    a client reading "100" followed by a body would parse the body as the
    next response.  A missing reason becomes the standard phrase
    (L{http.HTTPStatus}), or C{b""} for a code without one, so the reason in
    the head is always the one to send (Twisted would otherwise say
    C{"Unknown Status"}).  A duplicate Status is malformed (2.0).
  - B{Location}: a duplicate is malformed (2.0; two Locations could send a
    client and a cache to different places).  An empty one is malformed.  A
    local path (L{classifyLocation}) with status 200 (absent or explicit)
    makes a L{LOCAL_REDIRECT} (HEAD's rule; 2.0 redirected whatever the
    status); with any other status the Location is an ordinary header.  Any
    other Location without a Status gives status 302; with a Status, that
    status is kept.  A Location with a 3xx status other than 304 makes a
    L{CLIENT_REDIRECT}; with another status (e.g. C{201 Created}) the response
    is L{NORMAL}.  The Location header stays in L{ResponseHead.headers}.
  - B{Content-type}: a duplicate is malformed (2.0 did the same; RFC 9110 makes
    it a singleton field, and two media types let the client and any cache or
    filter in between pick different ones, which is a content-sniffing and
    XSS risk).  An empty one is malformed.  An absent one is allowed, also
    with status 200 (2.0: the script sends no body); the parser adds no
    default type.
  - B{Generated body}: a L{CLIENT_REDIRECT} without Content-type has
    L{ResponseHead.needsGeneratedBody} set; the gateway writes a short body of
    its own and discards the app's, so any Content-Length from the app is
    dropped as well.
  - B{Content-Length} is kept when it is a valid number (ASCII digits only, at
    most 19 of them, so no sign, space, list or fraction).  An invalid
    one, or several that disagree, are all dropped (RFC 9112 section 6.3 calls
    such a message invalid): the FastCGI records frame the app's output, so
    no harm is done on the app side, and without a Content-Length Twisted
    frames the body itself (chunked, or close).  Repeated equal values are
    kept once.  The gateway should still check that the body matches a kept
    Content-Length.
  - B{Hop-by-hop} headers (Connection, Keep-Alive, Transfer-Encoding, TE,
    Trailer, Upgrade, Proxy-Connection) are dropped: Twisted frames the body
    and manages the connection itself, and a forwarded
    C{Transfer-Encoding: chunked} would double-chunk (STYLE.md P17).  Names
    listed inside an app's Connection header are not dropped.
  - All other headers, Set-Cookie included, pass through unmerged and in order.
  - The parser does not know the request method, so the "Location only for
    GET or HEAD" rule of the CGI spec is not enforced (neither did 2.0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from http import HTTPStatus

__all__ = [
    "CLIENT_REDIRECT",
    "LOCAL_REDIRECT",
    "NORMAL",
    "MalformedResponseError",
    "ResponseHead",
    "ResponseHeadParser",
    "ResponseKind",
    "classifyLocation",
]

DEFAULT_MAX_HEADER_BYTES = 8192
"""Default cap on the size of a header block, the blank line included."""


class MalformedResponseError(Exception):
    """
    The application's response head breaks the CGI rules.  The message says
    how; the gateway answers 502 and logs it.
    """


class ResponseKind(Enum):
    """
    What the gateway does with a response.

    @cvar NORMAL: send the status, headers and body to the client.
    @cvar CLIENT_REDIRECT: like C{NORMAL}, but the response sends the client
        elsewhere (a Location with a 3xx status other than 304); without a Content-type the
        gateway writes the body (L{ResponseHead.needsGeneratedBody}).
    @cvar LOCAL_REDIRECT: discard this response and serve a GET for the local
        path in the Location instead.
    """

    NORMAL = "normal"
    CLIENT_REDIRECT = "client-redirect"
    LOCAL_REDIRECT = "local-redirect"


NORMAL = ResponseKind.NORMAL
CLIENT_REDIRECT = ResponseKind.CLIENT_REDIRECT
LOCAL_REDIRECT = ResponseKind.LOCAL_REDIRECT


def classifyLocation(value: bytes) -> ResponseKind:
    """
    Say what kind of redirect a Location value asks for, on its own.

    A local path (C{/} not followed by another C{/}) asks for a
    L{LOCAL_REDIRECT}; anything else that is not empty (a full URL, a
    network-path reference such as C{//host/}, which names another host, or
    a relative reference, which the client resolves) is for the client, a
    L{CLIENT_REDIRECT}.  An empty value is no redirect at all: L{NORMAL}.
    Whether a local path really redirects also depends on the status; see
    L{ResponseHead.kind}.

    @param value: a Location header value, whitespace already stripped.
    @return: the kind of redirect.
    """
    if value[:1] == b"/":
        return CLIENT_REDIRECT if value[1:2] == b"/" else LOCAL_REDIRECT
    return CLIENT_REDIRECT if value else NORMAL


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseHead:
    """
    The parsed head of a CGI response.

    @ivar status: the HTTP status code to send.
    @ivar reason: the reason phrase to send: the app's, else the standard one,
        else C{b""}.
    @ivar headers: the headers to send, as C{(name, value)} pairs in the
        app's order with names as sent: Status and hop-by-hop headers removed,
        repeated headers (Set-Cookie) kept apart.
    @ivar contentType: the Content-type value, if the app sent one.
    @ivar location: the Location value, if the app sent one.
    @ivar contentLength: the Content-Length kept in C{headers}, if any.
    @ivar kind: what the gateway does with the response.
    @ivar bodyStart: the bytes that followed the blank line in the data that
        completed the head: the start of the body.  Unlike every other field,
        how much of the body this holds depends on how the data was split.
    """

    status: int
    reason: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    contentType: bytes | None
    location: bytes | None
    contentLength: int | None
    kind: ResponseKind
    bodyStart: bytes = field(default=b"", repr=False)

    @property
    def needsGeneratedBody(self) -> bool:
        """
        Whether the gateway writes a short body of its own: a client redirect
        without Content-type.  The app's body, if any, is then discarded.
        """
        return self.kind is CLIENT_REDIRECT and self.contentType is None


_TCHAR = (
    b"!#$%&'*+-.^_`|~0123456789"
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
# Any control character but HT and LF (LF separates the lines of a block).
_BAD_CONTROL = re.compile(b"[\x00-\x08\x0b-\x1f\x7f]")
_TOKEN = b"[-!#$%&'*+.^_`|~0-9A-Za-z]++"
_VALUE = b"[^\x00-\x08\x0a-\x1f\x7f]*+"
# One valid header line (LF or CRLF line end; a value holds no CR), from the
# start of a line.  A block is valid, without continuation lines, when every
# line is one of these.  Possessive quantifiers: no backtracking, linear time
# on any input.
_HEADER_LINE = re.compile(
    b"^(" + _TOKEN + b"):[ \t]*+(" + _VALUE + b")\r?\n", re.MULTILINE
)

_STATUS = 1
_LOCATION = 2
_CONTENT_TYPE = 3
_CONTENT_LENGTH = 4
_HOP_BY_HOP = 5
_SPECIAL = {
    b"status": _STATUS,
    b"location": _LOCATION,
    b"content-type": _CONTENT_TYPE,
    b"content-length": _CONTENT_LENGTH,
    b"connection": _HOP_BY_HOP,
    b"keep-alive": _HOP_BY_HOP,
    b"transfer-encoding": _HOP_BY_HOP,
    b"te": _HOP_BY_HOP,
    b"trailer": _HOP_BY_HOP,
    b"upgrade": _HOP_BY_HOP,
    b"proxy-connection": _HOP_BY_HOP,
}

_DROPPED = frozenset(
    name for name, special in _SPECIAL.items() if special in (_STATUS, _HOP_BY_HOP)
)

_REASONS = {int(s): s.phrase.encode("ascii") for s in HTTPStatus}


def _shown(data: bytes) -> str:
    """
    Show some bytes from the app in an error message, cut to a readable size.
    """
    if len(data) > 40:
        return repr(data[:40]) + "..."
    return repr(data)


def _malformed(lineNumber: int, what: str, line: bytes) -> MalformedResponseError:
    """
    Make the error for a malformed header line.

    @param lineNumber: the 1-based number of the line in the header block.
    @param what: what is wrong.
    @param line: the line, shown in the message.
    """
    return MalformedResponseError(
        f"malformed response header line {lineNumber}: {what}: {_shown(line)}"
    )


def _diagnoseLine(lineNumber: int, line: bytes) -> MalformedResponseError:
    """
    Say precisely what is wrong with a header line known to be malformed.

    @param lineNumber: the 1-based number of the line in the header block.
    @param line: the logical line (continuations joined, line end removed).
    """
    name, colon, value = line.partition(b":")
    if not colon:
        return _malformed(lineNumber, "no colon", line)
    if not name:
        return _malformed(lineNumber, "empty header name", line)
    for byte in name:
        if byte in b" \t":
            return _malformed(lineNumber, "whitespace in header name", line)
    for byte in name:
        if byte not in _TCHAR:
            return _malformed(
                lineNumber, f"invalid character 0x{byte:02x} in header name", line
            )
    bad = _BAD_CONTROL.search(value)
    if bad is not None:
        code = value[bad.start()]
        what = {0x0D: "CR", 0x00: "NUL"}.get(code, f"control character 0x{code:02x}")
        return _malformed(lineNumber, f"{what} in header value", line)
    raise AssertionError(f"line {lineNumber} is not malformed: {line!r}")


def _logicalLines(block: bytes) -> tuple[list[bytes], list[int]]:
    """
    Split a header block that contains continuation lines into logical lines.

    @param block: the header block, CRLF line ends already made LF, without
        the final line end.
    @return: the logical lines with continuations joined by a single space,
        and the 1-based number of the physical line each one starts on.
    @raise MalformedResponseError: for a continuation line before any header.
    """
    lines: list[bytes] = []
    numbers: list[int] = []
    for number, line in enumerate(block.split(b"\n"), 1):
        if line[:1] in (b" ", b"\t"):
            if not lines:
                raise _malformed(
                    number, "continuation line before the first header", line
                )
            lines[-1] = lines[-1].rstrip(b" \t") + b" " + line.strip(b" \t")
        else:
            lines.append(line)
            numbers.append(number)
    return lines, numbers


def _parseStatus(value: bytes) -> tuple[int, bytes]:
    """
    Parse the value of a Status header.

    @param value: the stripped value, e.g. C{b"404 Not Found"}.
    @return: the code, and the reason (the standard one if none was given).
    @raise MalformedResponseError: for an invalid code.
    """
    code = value[:3]
    rest = value[3:]
    if not (len(code) == 3 and code.isdigit()) or rest[:1] not in (b"", b" ", b"\t"):
        raise MalformedResponseError(
            f"malformed Status header: the code must be 3 digits: {_shown(value)}"
        )
    status = int(code)
    if not 200 <= status <= 599:
        raise MalformedResponseError(
            f"invalid Status header: code {status} is not a final status"
            f" (200-599): {_shown(value)}"
        )
    reason = rest.strip(b" \t")
    if not reason:
        reason = _REASONS.get(status, b"")
    return status, reason


def _splitSlowly(block: bytes) -> list[tuple[bytes, bytes]]:
    """
    Split a header block that has continuation lines, or that is malformed,
    into headers, line by line, saying precisely what is wrong if anything is.

    @param block: the header block, CRLF line ends already made LF, with the
        final LF.
    @return: the C{(name, value)} pairs, continuations joined, values stripped.
    @raise MalformedResponseError: if a line is malformed.
    """
    lines, numbers = _logicalLines(block[:-1])
    pairs = []
    for line, number in zip(lines, numbers):
        name, colon, value = line.partition(b":")
        if (
            not colon
            or not name
            or name.translate(None, _TCHAR)
            or _BAD_CONTROL.search(value) is not None
        ):
            raise _diagnoseLine(number, line)
        pairs.append((name, value.strip(b" \t")))
    return pairs


def _parseBlock(block: bytes, bodyStart: bytes) -> ResponseHead:
    """
    Parse a complete header block.

    @param block: the header lines, each ending in LF or CRLF, without the
        empty line that ended the block.
    @param bodyStart: the bytes that followed the empty line.
    @return: the head.
    @raise MalformedResponseError: if the block breaks the rules.
    """
    pairs = _HEADER_LINE.findall(block)
    if len(pairs) == block.count(b"\n"):
        # The common case: every line is a valid header line (no
        # continuation lines, nothing malformed).
        if b" \n" in block or b"\t\n" in block or b" \r" in block or b"\t\r" in block:
            pairs = [(name, value.rstrip(b" \t")) for name, value in pairs]
    else:
        pairs = _splitSlowly(block.replace(b"\r\n", b"\n"))

    status: int | None = None
    reason = b""
    contentType: bytes | None = None
    location: bytes | None = None
    contentLengths: list[bytes] = []
    dropSome = False
    for name, value in pairs:
        special = _SPECIAL.get(name.lower())
        if special is None:
            continue
        if special == _CONTENT_TYPE:
            if contentType is not None:
                raise MalformedResponseError("duplicate Content-type header")
            if not value:
                raise MalformedResponseError("empty Content-type header")
            contentType = value
        elif special == _CONTENT_LENGTH:
            contentLengths.append(value)
        elif special == _STATUS:
            if status is not None:
                raise MalformedResponseError("duplicate Status header")
            if not value:
                raise MalformedResponseError("empty Status header")
            status, reason = _parseStatus(value)
            dropSome = True
        elif special == _LOCATION:
            if location is not None:
                raise MalformedResponseError("duplicate Location header")
            if not value:
                raise MalformedResponseError("empty Location header")
            location = value
        else:
            dropSome = True
    headers = pairs
    if dropSome:
        headers = [pair for pair in pairs if pair[0].lower() not in _DROPPED]

    kind = NORMAL
    if location is not None:
        if status is None:
            if classifyLocation(location) is LOCAL_REDIRECT:
                kind = LOCAL_REDIRECT
            else:
                status = 302
                reason = b"Found"
                kind = CLIENT_REDIRECT
        elif status == 200 and classifyLocation(location) is LOCAL_REDIRECT:
            kind = LOCAL_REDIRECT
        elif 300 <= status <= 399 and status != 304:
            kind = CLIENT_REDIRECT
    if status is None:
        status = 200
        reason = b"OK"
    needsGeneratedBody = kind is CLIENT_REDIRECT and contentType is None

    contentLength: int | None = None
    if contentLengths:
        if len(contentLengths) == 1:
            # The common case.
            if not needsGeneratedBody and _isLength(contentLengths[0]):
                contentLength = int(contentLengths[0])
            else:
                headers = _keepOneContentLength(headers, False)
        else:
            if not needsGeneratedBody and all(_isLength(v) for v in contentLengths):
                distinct = {int(v) for v in contentLengths}
                if len(distinct) == 1:
                    contentLength = distinct.pop()
            headers = _keepOneContentLength(headers, contentLength is not None)

    return ResponseHead(
        status=status,
        reason=reason,
        headers=tuple(headers),
        contentType=contentType,
        location=location,
        contentLength=contentLength,
        kind=kind,
        bodyStart=bodyStart,
    )


def _isLength(value: bytes) -> bool:
    """
    Whether a Content-Length value is a valid number: ASCII digits only, at
    most 19 of them (a length that fits in 63 bits; longer strings are not
    lengths of anything, and C{int()} refuses very long ones).
    """
    return value.isdigit() and len(value) <= 19


def _keepOneContentLength(
    headers: list[tuple[bytes, bytes]], keep: bool
) -> list[tuple[bytes, bytes]]:
    """
    Keep the first Content-Length header and drop the others, or drop them all.

    @param headers: the headers.
    @param keep: whether to keep the first one.
    @return: the headers, changed only if needed.
    """
    result: list[tuple[bytes, bytes]] = []
    for header in headers:
        if header[0].lower() == b"content-length":
            if not keep:
                continue
            keep = False
        result.append(header)
    return result


class ResponseHeadParser:
    """
    Collect the head of a CGI response from STDOUT data in arbitrary pieces.

    States:
      - I{collecting} (initial): L{feed} buffers data and looks for the
        blank line; when it arrives, L{feed} returns the head and the parser
        is I{done}; on malformed data it raises and the parser has I{failed}.
        L{finish} (end of STDOUT) raises: the head is incomplete; the parser
        has I{failed}.
      - I{done}: L{finish} does nothing; L{feed} is a caller error.
      - I{failed}: L{feed} and L{finish} are caller errors.

    Each byte is searched for the end of the block once (plus an overlap of
    3 bytes between pieces), and the block is parsed once, so the work is
    linear however the data is split.

    @ivar maxHeaderBytes: the largest header block accepted, blank line
        included.
    """

    def __init__(self, maxHeaderBytes: int = DEFAULT_MAX_HEADER_BYTES) -> None:
        """
        @param maxHeaderBytes: the largest header block accepted, blank line
            included.
        @raise ValueError: if C{maxHeaderBytes} is not positive.
        """
        if maxHeaderBytes < 1:
            raise ValueError(f"maxHeaderBytes must be positive (got {maxHeaderBytes})")
        self.maxHeaderBytes = maxHeaderBytes
        self._buffer = bytearray()
        self._state = "collecting"

    def feed(self, data: bytes) -> ResponseHead | None:
        """
        Take the next piece of the app's STDOUT.

        @param data: the bytes.
        @return: L{None} while the head is incomplete; then the head, whose
            C{bodyStart} holds the bytes of C{data} after the blank line.
        @raise MalformedResponseError: if the head breaks the rules or grows
            past C{maxHeaderBytes}.
        @raise RuntimeError: if the head was already returned, or an error
            raised.
        """
        if self._state != "collecting":
            raise RuntimeError(f"feed() called on a ResponseHeadParser that is {self._state}")
        buffer: bytes | bytearray
        previous = len(self._buffer)
        if previous:
            self._buffer += data
            buffer = self._buffer
            start = previous - 3 if previous > 3 else 0
        else:
            buffer = data
            start = 0
        size = len(buffer)
        limit = self.maxHeaderBytes if size > self.maxHeaderBytes else size

        # The block's end: the first empty line.  Before the first byte there
        # is, in effect, a line end, so the block may also end at 1 or 2.
        end = -1
        if previous < 2 and buffer[:1] == b"\n":
            end = 1
        elif previous < 2 and buffer[:2] == b"\r\n":
            end = 2
        else:
            # A block that ends later ends at the first LF followed by LF or
            # by CR LF; the earlier of the two patterns wins.
            at = buffer.find(b"\n\r\n", start, limit)
            lf = buffer.find(b"\n\n", start, at + 2 if at >= 0 else limit)
            if lf >= 0:
                end = lf + 2
            elif at >= 0:
                end = at + 3

        if end < 0 or end > self.maxHeaderBytes:
            if size >= self.maxHeaderBytes:
                self._fail()
                raise MalformedResponseError(
                    f"response header block exceeds {self.maxHeaderBytes} bytes"
                )
            if not previous:
                self._buffer = bytearray(data)
            return None

        # The block is everything up to its empty line, each header line with
        # its line end.
        blockEnd = end - 2 if buffer[end - 2 : end - 1] == b"\r" else end - 1
        if previous:
            block = bytes(buffer[:blockEnd])
            bodyStart = bytes(buffer[end:])
        else:
            block = data[:blockEnd]
            bodyStart = data[end:]
        try:
            head = _parseBlock(block, bodyStart)
        except MalformedResponseError:
            self._fail()
            raise
        self._state = "done"
        self._buffer = bytearray()
        return head

    def finish(self) -> None:
        """
        Say that STDOUT has ended.

        @raise MalformedResponseError: if the head is incomplete.
        @raise RuntimeError: if an error was raised before.
        """
        if self._state == "done":
            return
        if self._state == "failed":
            raise RuntimeError("finish() called on a ResponseHeadParser that is failed")
        received = len(self._buffer)
        self._fail()
        raise MalformedResponseError(
            f"incomplete headers ({received} bytes) received from app"
        )

    def _fail(self) -> None:
        """
        Enter the I{failed} state and free the buffer.
        """
        self._state = "failed"
        self._buffer = bytearray()
