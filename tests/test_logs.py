"""
Tests for L{txfastcgi.logs}: access log lines, the error log, and log files
opened with C{O_APPEND}, written with one C{write()} per entry, reopened for
log rotation.
"""

from __future__ import annotations

import fcntl
import os
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers

from txfastcgi.config.directives import PREDEFINED_LOG_FORMATS, parseLogFormat
from txfastcgi.logs import (
    AccessLog,
    ErrorLogObserver,
    LogFile,
    apacheErrorTime,
    apacheLogTime,
    escapeLogItem,
    formatAccessLine,
    reopenAll,
)

# 2026-11-27 17:57:03 UTC
WHEN = 1795802223.25


class FakeRequest:
    """
    The parts of a twisted.web request that access log lines use.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.method = b"GET"
        self.uri = b"/examples/echo?x=1"
        self.path = b"/examples/echo"
        self.clientproto = b"HTTP/1.1"
        self.code = 200
        self.sentLength = 1234
        self.requestHeaders = Headers(
            {
                b"referer": [b"http://example.com/"],
                b"user-agent": [b'Mozilla/5.0 "quoted"'],
                b"host": [b"www.example.com:5556"],
            }
        )
        self.responseHeaders = Headers({b"content-type": [b"text/html"]})
        self.content = BytesIO(b"abc")
        self.client = IPv4Address("TCP", "192.0.2.7", 40000)
        self.host = IPv4Address("TCP", "127.0.0.1", 5556)
        self.__dict__.update(kwargs)

    def getClientAddress(self) -> Any:
        """
        @return: the client's address.
        """
        return self.client

    def getHost(self) -> Any:
        """
        @return: the server's address.
        """
        return self.host

    def getCookie(self, name: bytes) -> bytes | None:
        """
        @return: a fixed cookie.
        """
        return b"abc" if name == b"session" else None


def line(fmt: str, request: Any = None, **kwargs: Any) -> str:
    """
    Format a line in UTC for C{fmt}.
    """
    return formatAccessLine(
        parseLogFormat(fmt),
        request if request is not None else FakeRequest(),
        started=kwargs.pop("started", WHEN),
        finished=kwargs.pop("finished", WHEN + 1.5),
        serverName="www.example.com",
        pid=4242,
        localtime=time.gmtime,
        **kwargs,
    )


def test_commonFormat() -> None:
    """
    The common log format gives Apache's exact line.
    """
    assert line(PREDEFINED_LOG_FORMATS["common"]) == (
        '192.0.2.7 - - [27/Nov/2026:17:57:03 +0000] "GET /examples/echo?x=1 HTTP/1.1" 200 1234'
    )


def test_combinedFormat() -> None:
    """
    The combined log format adds the escaped Referer and User-Agent.
    """
    assert line(PREDEFINED_LOG_FORMATS["combined"]) == (
        '192.0.2.7 - - [27/Nov/2026:17:57:03 +0000] "GET /examples/echo?x=1 HTTP/1.1" '
        '200 1234 "http://example.com/" "Mozilla/5.0 \\"quoted\\""'
    )


def test_emptyBody() -> None:
    """
    C{%b} gives C{-} for an empty body, C{%B} gives C{0}.
    """
    assert line("%b %B", FakeRequest(sentLength=0)) == "- 0"


@pytest.mark.parametrize(
    "fmt, expected",
    [
        ("%m %U %q %H", "GET /examples/echo ?x=1 HTTP/1.1"),
        ("%>s %s %<s", "200 200 200"),
        ("%{Content-Type}o %{Missing}o", "text/html -"),
        ("%{Host}i %V %v", "www.example.com:5556 www.example.com www.example.com"),
        ("%T %{ms}T %D", "1 1500 1500000"),
        ("%a %A %p %{remote}p", "192.0.2.7 127.0.0.1 5556 40000"),
        ("%P %l %u", "4242 - -"),
        ("%{session}C %{nope}C", "abc -"),
        ("%I %O", "3 1234"),
        ("%{sec}t %{msec}t", "1795802223 1795802223250"),
        ("%{%Y-%m-%d}t", "2026-11-27"),
        ("100%% %e %{X}e %f", "100% - - -"),
        ("%400,501{Referer}i %!200{Referer}i %200{Referer}i", "- - http://example.com/"),
    ],
)
def test_items(fmt: str, expected: str) -> None:
    """
    Each item gives what mod_log_config gives for it.
    """
    assert line(fmt) == expected


def test_percentDecodedPath() -> None:
    """
    C{%U} is the decoded path, escaped; C{%r} is the request line as sent.
    """
    request = FakeRequest(uri=b"/a%20b%0A?q", path=b"/a%20b%0A")
    assert line("%U|%r", request) == '/a b\\n|GET /a%20b%0A?q HTTP/1.1'


def test_internalRedirect() -> None:
    """
    After an internal redirect rewrote the request, C{%r} and C{%U} give
    the original request, C{%>r} and C{%>U} and the other items the final
    one.
    """
    request = FakeRequest(
        uri=b"/index.php?env=1",
        originalRequestLine=b"GET /redirect.php?local=1 HTTP/1.1",
        originalUri=b"/redirect.php?local=1",
    )
    assert line('"%r" %U %q', request) == '"GET /redirect.php?local=1 HTTP/1.1" /redirect.php ?env=1'
    assert line('"%>r" %>U', request) == '"GET /index.php?env=1 HTTP/1.1" /index.php'


def test_basicUser() -> None:
    """
    C{%u} is the user name of a Basic Authorization header.
    """
    request = FakeRequest()
    request.requestHeaders.setRawHeaders(b"authorization", [b"Basic YWxpY2U6c2VjcmV0"])
    assert line("%u", request) == "alice"


@pytest.mark.parametrize(
    "raw, escaped",
    [
        (b'a"b\\c', 'a\\"b\\\\c'),
        (b"line\nbreak\ttab\r", "line\\nbreak\\ttab\\r"),
        (b"\x00\x7f\xe9", "\\x00\\x7f\\xe9"),
        ("caf\xe9", "caf\\xe9"),
    ],
)
def test_escapeLogItem(raw: bytes | str, escaped: str) -> None:
    """
    L{escapeLogItem} escapes quotes, backslashes, control characters and
    bytes above 126 as Apache does, so a line stays one line.
    """
    assert escapeLogItem(raw) == escaped


def test_localTimeOffset() -> None:
    """
    C{%t} shows the local time's offset from UTC.
    """

    def localtime(when: float) -> time.struct_time:
        t = time.gmtime(when - 7 * 3600)
        return time.struct_time(tuple(t)[:9], {"tm_zone": "MST", "tm_gmtoff": -7 * 3600})

    assert apacheLogTime(WHEN, localtime) == "[27/Nov/2026:10:57:03 -0700]"
    assert apacheErrorTime(WHEN, time.gmtime) == "Fri Nov 27 17:57:03 2026"


def test_logFileAppends(tmp_path: Path) -> None:
    """
    L{LogFile} opens with C{O_APPEND} and adds to what the file holds.
    """
    path = tmp_path / "access.log"
    path.write_text("before\n")
    logFile = LogFile(str(path))
    logFile.open()
    assert logFile._fd is not None
    assert fcntl.fcntl(logFile._fd, fcntl.F_GETFL) & os.O_APPEND
    logFile.write("one\n")
    logFile.close()
    assert path.read_text() == "before\none\n"
    logFile.write("dropped\n")
    assert path.read_text() == "before\none\n"


def test_oneWritePerEntry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    An access log line and an error log entry with a traceback are each one
    C{write()} call.
    """
    logFile = LogFile(str(tmp_path / "log"))
    logFile.open()
    calls: list[bytes] = []
    realWrite = os.write

    def write(fd: int, data: bytes) -> int:
        calls.append(bytes(data))
        return realWrite(fd, data)

    monkeypatch.setattr("txfastcgi.logs.os.write", write)
    AccessLog(logFile, parseLogFormat(PREDEFINED_LOG_FORMATS["combined"]),
              serverName="x").log(FakeRequest(), started=WHEN, finished=WHEN)
    try:
        1 / 0
    except ZeroDivisionError:
        failure = Failure()
    ErrorLogObserver(logFile)(
        {"log_format": "boom {x}", "x": 1, "log_level": LogLevel.critical,
         "log_failure": failure, "log_time": WHEN}
    )
    assert len(calls) == 2
    assert calls[0].endswith(b"\n") and calls[0].count(b"\n") == 1
    assert b"ZeroDivisionError" in calls[1]
    logFile.close()


def test_reopen(tmp_path: Path) -> None:
    """
    L{LogFile.reopen} (what SIGHUP does) switches to a new file at the path
    after a rotation moved the old one away.
    """
    path = tmp_path / "error.log"
    logFile = LogFile(str(path))
    logFile.open()
    logFile.write("old\n")
    os.rename(path, tmp_path / "error.log.1")
    logFile.write("still old\n")
    assert reopenAll([logFile]) == []
    logFile.write("new\n")
    logFile.close()
    assert (tmp_path / "error.log.1").read_text() == "old\nstill old\n"
    assert path.read_text() == "new\n"


def test_reopenFailureKeepsOldFile(tmp_path: Path) -> None:
    """
    When the path cannot be opened again, the file keeps writing to its old
    descriptor and L{reopenAll} reports it.
    """
    directory = tmp_path / "d"
    directory.mkdir()
    logFile = LogFile(str(directory / "log"))
    logFile.open()
    os.rename(directory / "log", tmp_path / "moved")
    directory.rmdir()
    failed = reopenAll([logFile])
    assert [f for f, _ in failed] == [logFile]
    logFile.write("kept\n")
    logFile.close()
    assert (tmp_path / "moved").read_text() == "kept\n"


def test_errorLogFormat(tmp_path: Path) -> None:
    """
    The error log writes C{[time] [level] message}, named fields
    substituted, and leaves out events below its level.
    """
    logFile = LogFile(str(tmp_path / "error.log"))
    logFile.open()
    observer = ErrorLogObserver(logFile, localtime=time.gmtime)
    observer({"log_format": "AppClass {appClass} started", "appClass": "/a/echo",
              "log_level": LogLevel.info, "log_time": WHEN})
    observer({"log_format": "uri {uri}", "uri": "/{x}", "log_level": LogLevel.error,
              "log_time": WHEN})
    observer({"log_format": "noise", "log_level": LogLevel.debug, "log_time": WHEN})
    observer({"log_format": "bad", "log_level": LogLevel.critical, "log_time": WHEN})
    logFile.close()
    assert (tmp_path / "error.log").read_text() == (
        "[Fri Nov 27 17:57:03 2026] [info] AppClass /a/echo started\n"
        "[Fri Nov 27 17:57:03 2026] [error] uri /{x}\n"
        "[Fri Nov 27 17:57:03 2026] [crit] bad\n"
    )


def test_condition(tmp_path: Path) -> None:
    """
    A C{CustomLog ... env=VAR} line is written only for requests whose
    environment has VAR (C{env=!VAR}: has not).
    """
    logFile = LogFile(str(tmp_path / "log"))
    logFile.open()
    fmt = parseLogFormat("%U")
    withVar = FakeRequest(cgiEnvironment={"DEBUG": "1"}, uri=b"/with")
    without = FakeRequest(uri=b"/without")
    for condition in ("env=DEBUG", "env=!DEBUG"):
        accessLog = AccessLog(logFile, fmt, serverName="x", condition=condition)
        for request in (withVar, without):
            accessLog.log(request, started=WHEN, finished=WHEN)
    logFile.close()
    assert (tmp_path / "log").read_text() == "/with\n/without\n"
