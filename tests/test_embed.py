# -*- test-case-name: tests.test_embed -*-
"""
Tests for C{examples/embed.py}: run it as a program on a free port, fetch
each mounted path with a standard-library HTTP client, and stop it with
SIGTERM.
"""

from __future__ import annotations

import http.client
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import IO, Iterator

import pytest

EMBED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "embed.py")
"""The example program."""

STARTUP_SECONDS = 20.0
"""How long the example may take to say it is serving."""

STOP_SECONDS = 15.0
"""How long it may take to exit after SIGTERM."""


@dataclass
class Embed:
    """
    A running example.

    @ivar process: the process.
    @ivar port: its HTTP port.
    @ivar socketPath: the Unix socket of its in-process application.
    @ivar stderr: the file its log goes to.
    """

    process: subprocess.Popen[bytes]
    port: int
    socketPath: str
    stderr: IO[str]

    def get(
        self, path: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """
        One request on a new connection.

        @return: the status, the headers (names lower-cased) and the body.
        """
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return (
                response.status,
                {name.lower(): value for name, value in response.getheaders()},
                response.read(),
            )
        finally:
            connection.close()

    def log(self) -> str:
        """
        What the example logged so far.
        """
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read()


class LineReader:
    """
    Reads lines from a pipe with a deadline (C{select} on the descriptor,
    C{os.read} into a buffer of our own, so no line hides in a file
    object's buffer).
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._fd = stream.fileno()
        self._buffer = b""

    def readLine(self, deadline: float) -> str:
        """
        The next line, or C{""} at the end of the stream.

        @param deadline: a C{time.monotonic} value.
        @raise TimeoutError: if no whole line comes before C{deadline}.
        """
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._fd], [], [], remaining)[0]:
                raise TimeoutError("the example did not start in time")
            data = os.read(self._fd, 4096)
            if not data:
                return ""
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", "replace") + "\n"


@pytest.fixture
def embed() -> Iterator[Embed]:
    """
    Start C{examples/embed.py --port 0}, wait until it serves, and make sure
    it is stopped afterwards.
    """
    stderr = tempfile.TemporaryFile("w+")
    socketPath = ""
    process = subprocess.Popen(
        [sys.executable, EMBED, "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        reader = LineReader(process.stdout)
        port = 0
        while not port:
            line = reader.readLine(deadline)
            if not line:
                stderr.seek(0)
                raise AssertionError(f"the example exited early:\n{stderr.read()}")
            match = re.match(r"embed: Unix-socket application on (\S+)", line)
            if match:
                socketPath = match.group(1)
            match = re.match(r"embed: serving on http://127\.0\.0\.1:(\d+)/", line)
            if match:
                port = int(match.group(1))
        yield Embed(process, port, socketPath, stderr)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_SECONDS)
        if process.stdout is not None:
            process.stdout.close()
        stderr.close()
        # A process that had to be killed left its temporary directory.
        if socketPath and os.path.basename(os.path.dirname(socketPath)).startswith(
            "txfastcgi-embed-"
        ):
            shutil.rmtree(os.path.dirname(socketPath), ignore_errors=True)


def test_everyMountAnswers(embed: Embed) -> None:
    """
    Each mounted path answers as the example documents: the index, the
    Unix-socket responder (with a body), the TCP WSGI application, the
    authorizer in front of static files and of the WSGI application, and
    the filter (which refuses to leave its directory).
    """
    status, _, body = embed.get("/")
    assert status == 200
    assert b"/private/" in body

    status, _, body = embed.get("/unix/some/path?x=1")
    assert status == 200
    assert b"SCRIPT_NAME=/unix\n" in body
    assert b"PATH_INFO=/some/path\n" in body
    assert b"QUERY_STRING=x=1\n" in body

    status, _, body = embed.get("/unix/upload", method="POST", body=b"x" * 150_000)
    assert status == 200
    assert b"body=150000 bytes" in body

    status, _, body = embed.get("/tcp/hello")
    assert status == 200
    assert body.startswith(b"hello from WSGI\n")
    assert b"PATH_INFO=/hello\n" in body
    assert b"REMOTE_USER" not in body

    status, headers, body = embed.get("/private/hello.txt")
    assert status == 401
    assert headers["www-authenticate"] == 'Bearer realm="embed"'
    assert b"token" in body

    status, _, body = embed.get("/private/hello.txt", headers={"Authorization": "Bearer letmein"})
    assert status == 200
    assert body == b"Hello from a static file <served> as is.\n"

    status, _, body = embed.get("/private/notes/todo.txt?token=letmein")
    assert status == 200
    assert body.startswith(b"1. embed txfastcgi")

    status, _, body = embed.get("/private-app/who?token=letmein")
    assert status == 200
    assert b"SCRIPT_NAME=/private-app\n" in body
    assert b"PATH_INFO=/who\n" in body
    assert b"REMOTE_USER=demo\n" in body
    assert b"AUTH_TYPE=Bearer\n" in body
    assert b"DEMO_SCOPE=read\n" in body

    status, headers, body = embed.get("/filtered/hello.txt")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert b"<h1>/filtered/hello.txt</h1>" in body
    assert b"FCGI_DATA_LENGTH=41 " in body
    assert b"static file &lt;served&gt; as is." in body

    assert embed.get("/filtered/notes")[0] == 403
    assert embed.get("/filtered/missing.txt")[0] == 404
    assert embed.get("/filtered/../embed.py")[0] == 404


def test_stopsCleanly(embed: Embed) -> None:
    """
    SIGTERM stops the example with status 0, after it removed its
    temporary directory and Unix socket.
    """
    assert os.path.exists(embed.socketPath)
    assert embed.get("/unix/")[0] == 200
    embed.process.send_signal(signal.SIGTERM)
    assert embed.process.wait(STOP_SECONDS) == 0
    assert not os.path.exists(embed.socketPath)
    assert not os.path.exists(os.path.dirname(embed.socketPath))
    assert "Traceback" not in embed.log()
