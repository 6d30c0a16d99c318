# -*- test-case-name: tests.test_logs -*-
"""
The server's log files: access logs (C{TransferLog}, C{CustomLog}) in
mod_log_config formats, and the C{ErrorLog}.

Every file is a L{LogFile}: opened with C{O_APPEND} (several processes may
append to one file, SPEC.md section 9.15) and written with one C{write()}
per entry, so entries never interleave; L{LogFile.reopen} opens the path
again, for log rotation (the service calls it on SIGHUP).

Access log items
================

L{formatAccessLine} renders the items the configuration parser accepts
(L{txfastcgi.config.directives.parseLogFormat}).  What each letter gives:

  - C{%h} C{%a}: the client's IP address; C{%A}: the server's; C{%p}: the
    server's port (C{%{remote}p}: the client's); C{%l}: C{-}.
  - C{%u}: the user of a Basic C{Authorization} header, else C{-}.
  - C{%t}: C{[27/Nov/2026:17:57:03 +0000]}, local time, English month
    names; C{%{FORMAT}t} a C{strftime} format, C{%{sec}t}, C{%{msec}t},
    C{%{usec}t} (and C{begin:}/C{end:} prefixes, both the request start).
  - C{%r}: the request line as received (C{METHOD URI PROTOCOL}); C{%m},
    C{%U} (the path, percent-decoded), C{%q} (C{?query} or nothing),
    C{%H}.  After an internal redirect (which rewrites the request in
    place), C{%r} and C{%U} still give the original request, as in Apache
    (C{%>r}, C{%>U}: the final one); the other items give the final one.
  - C{%s}, C{%>s}, C{%<s}: the status sent (txfastcgi does not keep an
    original status apart from the final one).
  - C{%b}: body bytes sent, C{-} for none; C{%B}: the same, C{0} for none;
    C{%O}, C{%S}: body bytes sent (headers are not counted; mod_logio
    counted them); C{%I}: request body bytes received.
  - C{%{NAME}i}, C{%{NAME}o}: a request or response header (the first
    value); C{%{NAME}C}: a cookie; C{%{NAME}e}: a variable of the request's
    environment when the gateway recorded one (C{request.cgiEnvironment}),
    else C{-}.
  - C{%T}: seconds taken (C{%{ms}T}, C{%{us}T}, C{%{s}T}); C{%D}:
    microseconds.
  - C{%v}, C{%V}: the C{ServerName} (C{%V}: the C{Host} header's name when
    there is one).
  - C{%P}: the server's pid; C{%k}: requests served before this one on the
    connection; C{%X}: C{X} if the client went away before the response
    ended, C{+} if the connection may stay open, C{-} otherwise.
  - C{%f}, C{%n}, C{%R}, C{%L}, C{%c}, C{%C} without a name, C{%e} without
    a name, C{%o}/C{%i} without a name: C{-}.
  - A status condition (C{%400,501{User-agent}i}, C{%!200b}) gives C{-}
    when the status does (or, negated, does not) match.

Request-derived text in C{%r}, C{%i}, C{%o}, C{%u}, C{%U}, C{%q}, C{%C},
C{%e}, C{%m}, C{%H} and C{%V} is escaped as Apache 2 does: C{"} and C{\\}
with a backslash, C{\\n}, C{\\t} and the like, other control characters
and bytes above 126 as C{\\xhh}.  So a line of the log is always one line.

Error log
=========

L{ErrorLogObserver} writes C{twisted.logger} events as
C{[Fri Nov 27 17:57:03 2026] [error] message}, one entry per C{write()}
(a traceback, when there is one, follows its message in the same write).
"""

from __future__ import annotations

import binascii
import os
import time
from base64 import b64decode
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

from twisted.logger import ILogObserver, LogEvent, LogLevel, eventAsText
from zope.interface import implementer  # type: ignore[import-untyped]

from txfastcgi.config import LogFormat, LogItem
from txfastcgi.site import LimitedRequest

__all__ = [
    "AccessLog",
    "ErrorLogObserver",
    "LogFile",
    "TimedRequest",
    "apacheErrorTime",
    "apacheLogTime",
    "escapeLogItem",
    "formatAccessLine",
    "reopenAll",
]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

_LEVEL_NAMES = {
    LogLevel.debug: "debug",
    LogLevel.info: "info",
    LogLevel.warn: "warn",
    LogLevel.error: "error",
    LogLevel.critical: "crit",
}

_PRIORITY = {
    level: index
    for index, level in enumerate(LogLevel.iterconstants())  # type: ignore[no-untyped-call]
}

LocalTime = Callable[[float], time.struct_time]
"""C{time.localtime}, or a replacement for tests."""


class LogFile:
    """
    A log file opened for appending: C{O_WRONLY | O_APPEND | O_CREAT}, mode
    0644 for a new file, given to C{uid}/C{gid} when those are set (so that
    a server that dropped its privileges can still reopen it).

    States: closed (no descriptor) and open; L{open} and L{reopen} open it,
    L{close} closes it.  Writing to a closed file drops the text.

    @ivar path: the file.
    """

    def __init__(
        self,
        path: str,
        *,
        mode: int = 0o644,
        uid: int | None = None,
        gid: int | None = None,
    ) -> None:
        """
        @param path: the file.
        @param mode: the mode of a file created here.
        @param uid: the owner to give it (when the server is root), or
            C{None}.
        @param gid: the group to give it, or C{None}.
        """
        self.path = path
        self._mode = mode
        self._uid = uid
        self._gid = gid
        self._fd: int | None = None

    @property
    def isOpen(self) -> bool:
        """
        Whether the file is open.
        """
        return self._fd is not None

    def _openDescriptor(self) -> int:
        fd = os.open(
            self.path,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
            self._mode,
        )
        if (self._uid is not None or self._gid is not None) and os.geteuid() == 0:
            try:
                os.fchown(
                    fd,
                    -1 if self._uid is None else self._uid,
                    -1 if self._gid is None else self._gid,
                )
            except OSError:
                os.close(fd)
                raise
        return fd

    def open(self) -> None:
        """
        Open the file (nothing happens when it is open already).

        @raise OSError: if it cannot be opened.
        """
        if self._fd is None:
            self._fd = self._openDescriptor()

    def reopen(self) -> None:
        """
        Open the path again and switch to the new descriptor (after a log
        rotation moved the file away); the old one is closed.  If the path
        cannot be opened, the old descriptor stays in use.

        @raise OSError: if the path cannot be opened.
        """
        fd = self._openDescriptor()
        old, self._fd = self._fd, fd
        if old is not None:
            os.close(old)

    def close(self) -> None:
        """
        Close the file.
        """
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def write(self, text: str) -> None:
        """
        Append C{text} with one C{write()} (more only if the kernel writes
        part of it, which regular files do only when the disk is full).

        @param text: one or more whole lines; encoded as UTF-8, characters
            that cannot be encoded are backslash-escaped.
        """
        if self._fd is None:
            return
        data = text.encode("utf-8", "backslashreplace")
        while data:
            written = os.write(self._fd, data)
            data = data[written:]


def apacheLogTime(when: float, localtime: LocalTime = time.localtime) -> str:
    """
    Render a time as mod_log_config's C{%t} does.

    @param when: seconds since the epoch.
    @param localtime: converts to local time.
    @return: e.g. C{[27/Nov/2026:17:57:03 +0000]}.
    """
    t = localtime(when)
    offset = (t.tm_gmtoff or 0) // 60
    sign = "-" if offset < 0 else "+"
    offset = abs(offset)
    return "[%02d/%s/%04d:%02d:%02d:%02d %s%02d%02d]" % (
        t.tm_mday,
        _MONTHS[t.tm_mon - 1],
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
        sign,
        offset // 60,
        offset % 60,
    )


def apacheErrorTime(when: float, localtime: LocalTime = time.localtime) -> str:
    """
    Render a time as Apache's error log does (C{ctime} style).

    @param when: seconds since the epoch.
    @param localtime: converts to local time.
    @return: e.g. C{Fri Nov 27 17:57:03 2026}.
    """
    t = localtime(when)
    return "%s %s %02d %02d:%02d:%02d %04d" % (
        _DAYS[t.tm_wday],
        _MONTHS[t.tm_mon - 1],
        t.tm_mday,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
        t.tm_year,
    )


_ESCAPES = {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    ord("\b"): "\\b",
    ord("\v"): "\\v",
    ord('"'): '\\"',
    ord("\\"): "\\\\",
}


def escapeLogItem(value: bytes | str) -> str:
    """
    Escape request-derived text for an access log, as Apache 2's
    C{ap_escape_logitem} does.

    @param value: the text; a C{str} is taken as Latin-1 (as header values
        are).
    @return: printable ASCII.
    """
    if isinstance(value, str):
        value = value.encode("latin-1", "replace")
    out = []
    for byte in value:
        escaped = _ESCAPES.get(byte)
        if escaped is not None:
            out.append(escaped)
        elif byte < 0x20 or byte > 0x7E:
            out.append("\\x%02x" % (byte,))
        else:
            out.append(chr(byte))
    return "".join(out)


class LoggedRequest(Protocol):
    """
    What L{formatAccessLine} reads of a request (a
    L{twisted.web.http.Request} has all of it).
    """

    method: bytes
    uri: bytes
    path: bytes
    clientproto: bytes
    code: int
    sentLength: int
    requestHeaders: Any
    responseHeaders: Any

    def getClientAddress(self) -> Any:
        """
        The client's address.
        """

    def getHost(self) -> Any:
        """
        The server's address.
        """


def _first(headers: Any, name: str) -> bytes | None:
    values = headers.getRawHeaders(name.encode("latin-1", "replace"))
    if not values:
        return None
    value: bytes = values[0] if isinstance(values[0], bytes) else values[0].encode(
        "latin-1", "replace"
    )
    return value


def _basicUser(request: LoggedRequest) -> bytes | None:
    header = _first(request.requestHeaders, "Authorization")
    if header is None:
        return None
    scheme, _, credentials = header.partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = b64decode(credentials.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user = decoded.partition(b":")[0]
    return user or None


def _host(address: Any) -> str:
    host = getattr(address, "host", None)
    return str(host) if host else "-"


def _timeItem(item: LogItem, started: float, localtime: LocalTime) -> str:
    argument = item.argument
    if argument is None:
        return apacheLogTime(started, localtime)
    for prefix in ("begin:", "end:"):
        if argument.startswith(prefix):
            argument = argument[len(prefix) :]
    if argument == "sec":
        return str(int(started))
    if argument == "msec":
        return str(int(started * 1000))
    if argument == "usec":
        return str(int(started * 1000000))
    if argument == "msec_frac":
        return "%03d" % (int(started * 1000) % 1000,)
    if argument == "usec_frac":
        return "%06d" % (int(started * 1000000) % 1000000,)
    t = localtime(started)
    return time.strftime(argument, t)


def _duration(item: LogItem, seconds: float) -> str:
    unit = item.argument
    if unit == "ms":
        return str(int(seconds * 1000))
    if unit == "us":
        return str(int(seconds * 1000000))
    return str(int(seconds))


def formatAccessLine(
    fmt: LogFormat,
    request: LoggedRequest,
    *,
    started: float,
    finished: float,
    serverName: str,
    pid: int | None = None,
    localtime: LocalTime = time.localtime,
) -> str:
    """
    Render one access log line (without the newline).

    @param fmt: the parsed format.
    @param request: the finished request.
    @param started: when the request arrived (seconds since the epoch).
    @param finished: when its response ended.
    @param serverName: the C{ServerName}, for C{%v}.
    @param pid: for C{%P}; the current process's by default.
    @param localtime: converts times to local time.
    @return: the line.
    """
    out: list[str] = []
    code = request.code
    for part in fmt.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        if part.statuses and ((code in part.statuses) == part.negated):
            out.append("-")
            continue
        out.append(
            _item(part, request, started, finished, serverName, pid, localtime)
        )
    return "".join(out)


def _item(
    item: LogItem,
    request: LoggedRequest,
    started: float,
    finished: float,
    serverName: str,
    pid: int | None,
    localtime: LocalTime,
) -> str:
    letter = item.letter
    argument = item.argument
    sent = request.sentLength or 0
    if letter in "ha":
        return _host(request.getClientAddress())
    if letter == "A":
        return _host(request.getHost())
    if letter == "p":
        if argument == "remote":
            address = request.getClientAddress()
        else:
            address = request.getHost()
        port = getattr(address, "port", None)
        return str(port) if port is not None else "-"
    if letter == "l":
        return "-"
    if letter == "u":
        user = _basicUser(request)
        return escapeLogItem(user) if user is not None else "-"
    if letter == "t":
        return _timeItem(item, started, localtime)
    if letter == "r":
        original = getattr(request, "originalRequestLine", None)
        if original is None or item.final:
            original = b" ".join((request.method, request.uri, request.clientproto))
        return escapeLogItem(original)
    if letter == "m":
        return escapeLogItem(request.method)
    if letter == "H":
        return escapeLogItem(request.clientproto)
    if letter == "U":
        uri = getattr(request, "originalUri", None)
        if uri is None or item.final:
            uri = request.uri
        return escapeLogItem(unquote_to_bytes(uri.split(b"?", 1)[0]))
    if letter == "q":
        _, question, query = request.uri.partition(b"?")
        return escapeLogItem(b"?" + query) if question else ""
    if letter == "s":
        return str(request.code)
    if letter == "b":
        return str(sent) if sent else "-"
    if letter in "BOS":
        return str(sent)
    if letter == "I":
        return str(_received(request))
    if letter == "i":
        if argument is None:
            return "-"
        value = _first(request.requestHeaders, argument)
        return escapeLogItem(value) if value is not None else "-"
    if letter == "o":
        if argument is None:
            return "-"
        value = _first(request.responseHeaders, argument)
        return escapeLogItem(value) if value is not None else "-"
    if letter == "C":
        if argument is None:
            return "-"
        getCookie = getattr(request, "getCookie", None)
        cookie = getCookie(argument.encode("latin-1", "replace")) if getCookie else None
        return escapeLogItem(cookie) if cookie is not None else "-"
    if letter == "e":
        env: Mapping[str, str] | None = getattr(request, "cgiEnvironment", None)
        if argument is None or not env or argument not in env:
            return "-"
        return escapeLogItem(env[argument])
    if letter == "T":
        return _duration(item, max(0.0, finished - started))
    if letter == "D":
        return str(int(max(0.0, finished - started) * 1000000))
    if letter == "v":
        return escapeLogItem(serverName)
    if letter == "V":
        host = _first(request.requestHeaders, "Host")
        if host is None:
            return escapeLogItem(serverName)
        name = host.rsplit(b":", 1)[0] if not host.endswith(b"]") else host
        return escapeLogItem(name)
    if letter == "P":
        return str(os.getpid() if pid is None else pid)
    if letter == "k":
        return str(getattr(request, "keepAliveCount", 0))
    if letter == "X":
        if getattr(request, "_disconnected", False):
            return "X"
        channel = getattr(request, "channel", None)
        return "+" if getattr(channel, "persistent", False) else "-"
    return "-"


def _received(request: LoggedRequest) -> int:
    content = getattr(request, "content", None)
    if content is None:
        return 0
    try:
        position = content.tell()
        content.seek(0, os.SEEK_END)
        size: int = content.tell()
        content.seek(position)
    except (OSError, ValueError):
        return 0
    return size


class AccessLog:
    """
    One C{TransferLog} or C{CustomLog}: a format and a file.

    @ivar file: the file.
    @ivar format: the format.
    @ivar condition: C{env=VAR} or C{env=!VAR}, or C{None}.
    """

    def __init__(
        self,
        file: LogFile,
        format: LogFormat,
        *,
        serverName: str,
        condition: str | None = None,
        localtime: LocalTime = time.localtime,
    ) -> None:
        """
        @param file: the file to append to.
        @param format: the format.
        @param serverName: for C{%v}.
        @param condition: the C{env=[!]VAR} condition as written, if any:
            the line is written only when the request's environment
            (C{request.cgiEnvironment}, when the gateway recorded one) has
            (or, with C{!}, has not) the variable.
        @param localtime: converts times to local time.
        """
        self.file = file
        self.format = format
        self.condition = condition
        self._serverName = serverName
        self._localtime = localtime

    def wants(self, request: LoggedRequest) -> bool:
        """
        Whether the condition lets C{request} be logged.

        @param request: the request.
        @return: C{True} without a condition.
        """
        if self.condition is None:
            return True
        name = self.condition[len("env=") :]
        negated = name.startswith("!")
        name = name.lstrip("!")
        env: Mapping[str, str] = getattr(request, "cgiEnvironment", None) or {}
        return (name in env) != negated

    def log(self, request: LoggedRequest, *, started: float, finished: float) -> None:
        """
        Append the line for C{request}, if the condition lets it.

        @param request: the finished request.
        @param started: when it arrived.
        @param finished: when it ended.
        """
        if not self.wants(request):
            return
        line = formatAccessLine(
            self.format,
            request,
            started=started,
            finished=finished,
            serverName=self._serverName,
            localtime=self._localtime,
        )
        self.file.write(line + "\n")


class TimedRequest(LimitedRequest):
    """
    A L{LimitedRequest} that remembers when it arrived (for C{%t}, C{%T} and
    C{%D}) and how many requests its connection served before it (C{%k}).

    @ivar startedAt: when the request object was made (its first line had
        arrived), by the site's reactor clock.
    @ivar keepAliveCount: requests served on the connection before this one.
    @ivar originalRequestLine: the request line as received (internal
        redirects rewrite C{method} and C{uri}), for C{%r}.
    @ivar originalUri: the request-target as received, for C{%U}.
    """

    startedAt: float = 0.0
    keepAliveCount: int = 0
    originalRequestLine: bytes | None = None
    originalUri: bytes | None = None

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        """
        @param channel: the HTTP channel.
        """
        super().__init__(channel, *args, **kwargs)  # type: ignore[no-untyped-call]
        site = getattr(channel, "site", None)
        reactor = getattr(site, "reactor", None)
        self.startedAt = reactor.seconds() if reactor is not None else time.time()
        count = getattr(channel, "_txfastcgiServed", 0)
        self.keepAliveCount = count
        try:
            channel._txfastcgiServed = count + 1
        except AttributeError:
            pass

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """
        Remember the request line as received, then process the request.
        """
        self.originalRequestLine = b" ".join((command, path, version))
        self.originalUri = path
        super().requestReceived(command, path, version)


@implementer(ILogObserver)
class ErrorLogObserver:
    """
    A C{twisted.logger} observer writing the C{ErrorLog}: one entry per
    event at or above C{minLevel}, C{[time] [level] message}, with the
    traceback of a failure after it, in one C{write()}.
    """

    def __init__(
        self,
        file: LogFile,
        *,
        minLevel: LogLevel = LogLevel.info,
        localtime: LocalTime = time.localtime,
    ) -> None:
        """
        @param file: the file.
        @param minLevel: the least important level written.
        @param localtime: converts times to local time.
        """
        self.file = file
        self.minLevel = minLevel
        self._localtime = localtime

    def __call__(self, event: LogEvent) -> None:
        """
        Write C{event}.

        @param event: a log event.
        """
        level = event.get("log_level", LogLevel.info)
        if not isinstance(level, type(LogLevel.info)):
            level = LogLevel.info
        if _PRIORITY.get(level, 1) < _PRIORITY.get(self.minLevel, 1):
            return
        text = eventAsText(
            event, includeTimestamp=False, includeSystem=False, includeTraceback=True
        )
        if not text:
            return
        when = event.get("log_time") or time.time()
        lines = text.rstrip("\n").split("\n")
        entry = "[%s] [%s] %s\n" % (
            apacheErrorTime(when, self._localtime),
            _LEVEL_NAMES.get(level, "info"),
            "\n".join(lines),
        )
        self.file.write(entry)


def reopenAll(files: Sequence[LogFile]) -> list[tuple[LogFile, OSError]]:
    """
    Reopen every file (log rotation).

    @param files: the files.
    @return: those that could not be reopened, with the error; they keep
        writing to their old descriptor.
    """
    failed: list[tuple[LogFile, OSError]] = []
    for logFile in files:
        try:
            logFile.reopen()
        except OSError as e:
            failed.append((logFile, e))
    return failed

