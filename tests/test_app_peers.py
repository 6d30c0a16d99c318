"""
txfastcgi as a FastCGI application, driven by real clients nobody here wrote:
libfcgi's C{cgi-fcgi}, C{spawn-fcgi} (socket on fd 0) and nginx
(C{fastcgi_pass}).  Applications run as separate processes with this
interpreter (the venv's, which has Twisted); everything is on loopback, and
every wait is bounded.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests import peers
from tests.apps.wsgi_apps import pattern

REPO = peers.REPO_ROOT
ECHO = str(REPO / "examples" / "echo")
TWISTD = str(Path(sys.executable).with_name("twistd"))
MIB64 = 64 * 1024 * 1024
HTTP_TIMEOUT = 120


def echoArgv(*extra: str) -> list[str]:
    """
    The command line that runs examples/echo with this interpreter.
    """
    return [sys.executable, ECHO, *extra]


def twistdArgv(*extra: str) -> list[str]:
    """
    The command line that runs C{twistd -n fastcgi-app} with this
    interpreter, serving the WSGI test application.
    """
    return [
        sys.executable,
        TWISTD,
        "-n",
        "--pidfile=",
        "fastcgi-app",
        "--wsgi",
        "tests.apps.wsgi_apps:echo",
        *extra,
    ]


def initialEnv(**extra: str) -> dict[str, str]:
    """
    A small initial environment, as mod_fastcgi's C{-initial-env} gives.
    """
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    env.update(extra)
    return env


def echoText(address: peers.Address | peers.SpawnedApp, body: bytes = b"", **params: str) -> str:
    """
    One request to echo through cgi-fcgi, answered as text/plain.
    """
    env = {"REQUEST_METHOD": "POST" if body else "GET", "QUERY_STRING": "format=text"}
    env.update(params)
    raw = peers.cgiFcgi(address, env, body)
    response = peers.parseCgiResponse(raw)
    assert response.status == 200, raw[:500]
    assert response.header("Content-type") == "text/plain"
    return response.body.decode("utf-8")


def requestNumber(text: str) -> tuple[int, int]:
    """
    (request number, process id) from an echo page.
    """
    match = re.search(r"Request number (\d+),  Process ID: (\d+)", text)
    assert match is not None, text[:500]
    return int(match.group(1)), int(match.group(2))


def waitFor(predicate: object, timeout: float = 10.0) -> None:
    """
    Poll C{predicate()} until true.

    @raise AssertionError: after C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate!r}")
        time.sleep(0.02)


def accepts(path: str) -> bool:
    """
    Whether the Unix socket C{path} accepts connections.
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


@pytest.mark.peer("spawn-fcgi", "cgi-fcgi")
def test_echoUnderSpawnFcgi(peerDir: str) -> None:
    """
    examples/echo started by spawn-fcgi (socket on fd 0) answers cgi-fcgi
    with a request counter, its pid, the request environment, its initial
    environment (STATE=TEXAS) and the length of the body it read.
    """
    app = peers.spawnFcgi(echoArgv(), env=initialEnv(STATE="TEXAS"), directory=peerDir)
    first = echoText(app, SCRIPT_NAME="/examples/echo", PATH_INFO="/a/b")
    assert requestNumber(first) == (1, app.pids[0])
    request, initial = first.split("Initial environment:")
    assert "SCRIPT_NAME=/examples/echo" in request
    assert "PATH_INFO=/a/b" in request
    assert "STATE=TEXAS" in initial
    assert "STATE=TEXAS" not in request
    second = echoText(app, body=b"hello")
    assert requestNumber(second) == (2, app.pids[0])
    assert f"Request body: 5 bytes, sha256 {hashlib.sha256(b'hello').hexdigest()}" in second
    html = peers.parseCgiResponse(peers.cgiFcgi(app, {"REQUEST_METHOD": "GET"}))
    assert html.header("Content-type") == "text/html"
    assert b"<h1>FastCGI echo</h1>" in html.body
    assert b"Request number 3" in html.body


@pytest.mark.peer("cgi-fcgi")
def test_siblingsSurviveOneStopping(peerDir: str) -> None:
    """
    Two echo processes share one inherited socket; SIGTERM stops one
    (exit 0) without shutting the socket down or removing its file, and the
    other keeps answering.
    """
    app = peers.spawnFcgi(echoArgv(), env=initialEnv(), children=2, directory=peerDir)
    # Both must be up (past start-up) before one is stopped: a SIGTERM
    # during start-up kills a process before it could install its handler.
    seen: set[int] = set()
    deadline = time.monotonic() + 20
    while seen != set(app.pids):
        assert time.monotonic() < deadline, f"only {seen} of {app.pids} answered"
        seen.add(requestNumber(echoText(app))[1])
        time.sleep(0.01)
    first = app.processes[0]
    assert first.stop() == 0, first.output()
    assert os.path.exists(str(app.socketPath))
    for _ in range(3):
        assert requestNumber(echoText(app))[1] == app.pids[1]


@pytest.mark.peer("cgi-fcgi")
def test_echoCgiFcgiStart(peerDir: str) -> None:
    """
    C{cgi-fcgi -start -connect PATH examples/echo} starts echo with the
    socket on fd 0 (echo's shebang finds this interpreter on PATH); then
    C{cgi-fcgi -bind -connect} talks to it.
    """
    binary = peers.requirePeer("cgi-fcgi")
    path = os.path.join(peerDir, "start.sock")
    started = subprocess.run(
        [binary, "-start", "-connect", path, ECHO],
        env=initialEnv(STATE="TEXAS"),
        cwd=peerDir,
        timeout=30,
        capture_output=True,
    )
    assert started.returncode == 0, started.stderr
    pid = None
    try:
        waitFor(lambda: accepts(path))
        text = echoText(path)
        number, pid = requestNumber(text)
        assert number == 1
        assert "STATE=TEXAS" in text.split("Initial environment:")[1]
        assert requestNumber(echoText(path)) == (2, pid)
    finally:
        if pid is None:
            text = echoText(path)
            pid = requestNumber(text)[1]
        os.kill(pid, signal.SIGTERM)
        waitFor(lambda: not accepts(path))


@pytest.mark.peer("cgi-fcgi")
@pytest.mark.parametrize("where", ["socket", "port"])
def test_echoFlagsAndSigterm(peerDir: str, where: str) -> None:
    """
    examples/echo --socket PATH / --port N serves cgi-fcgi; on SIGTERM a
    request in flight still completes, then echo exits 0 (and removes the
    socket file it made).
    """
    if where == "socket":
        address: peers.Address = os.path.join(peerDir, "flag.sock")
        flags = ["--socket", address]
    else:
        address = ("127.0.0.1", peers.freePort())
        flags = ["--port", str(address[1])]
    process = peers.PeerProcess(
        "echo", echoArgv(*flags), logPath=os.path.join(peerDir, "echo.log"), env=initialEnv()
    )
    try:
        peers._waitUntilAccepting(address, [process])
        assert requestNumber(echoText(address))[0] == 1
        body = b"0123456789"
        client = subprocess.Popen(
            [peers.requirePeer("cgi-fcgi"), "-bind", "-connect", peers.connectArgument(address)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={"REQUEST_METHOD": "POST", "QUERY_STRING": "format=text", "CONTENT_LENGTH": "10"},
        )
        assert client.stdin is not None
        client.stdin.write(body[:4])
        client.stdin.flush()
        time.sleep(0.5)
        os.kill(process.pid, signal.SIGTERM)
        time.sleep(0.5)
        assert process.alive()
        out, _ = client.communicate(body[4:], timeout=30)
        assert client.returncode == 0
        assert b"Request body: 10 bytes" in out
        waitFor(lambda: not process.alive())
        assert process.popen.returncode == 0, process.output()
        if where == "socket":
            assert not os.path.exists(str(address))
    finally:
        process.stop()


@pytest.mark.peer("nginx", "spawn-fcgi")
@pytest.mark.parametrize("keepConn", [False, True])
def test_nginxToEcho(peerDir: str, keepConn: bool) -> None:
    """
    nginx C{fastcgi_pass} to examples/echo under spawn-fcgi: the page comes
    back through HTTP, with nginx's CGI variables; with
    C{fastcgi_keep_conn on}, consecutive requests share the process.
    """
    app = peers.spawnFcgi(echoArgv(), env=initialEnv(STATE="TEXAS"), directory=peerDir)
    front = peers.nginxFrontEnd(peerDir, fastcgiPass=str(app.socketPath), keepConn=keepConn)
    connection = http.client.HTTPConnection("127.0.0.1", front.port, timeout=HTTP_TIMEOUT)
    try:
        numbers = []
        for _ in range(3):
            connection.request("GET", "/examples/echo?format=text")
            response = connection.getresponse()
            text = response.read().decode()
            assert response.status == 200, front.errorLog()
            assert response.getheader("Content-Type", "").startswith("text/plain")
            assert "REQUEST_URI=/examples/echo?format=text" in text
            assert "STATE=TEXAS" in text.split("Initial environment:")[1]
            numbers.append(requestNumber(text))
        assert [n for n, _ in numbers] == [1, 2, 3]
    finally:
        connection.close()
        front.stop()
        app.stop()


def sha256Response(response: http.client.HTTPResponse) -> tuple[int, str]:
    """
    Read a response body in blocks: (length, sha256).
    """
    digest = hashlib.sha256()
    length = 0
    while True:
        block = response.read(1 << 20)
        if not block:
            return length, digest.hexdigest()
        digest.update(block)
        length += len(block)


def bodyBlocks(data: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    """
    C{data} in blocks, for a streamed upload.
    """
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield bytes(view[start : start + size])


@pytest.fixture
def wsgiBehindNginx(peerDir: str) -> Iterator[peers.NginxFrontEnd]:
    """
    C{twistd -n fastcgi-app --wsgi tests.apps.wsgi_apps:echo} under
    spawn-fcgi (socket on fd 0), behind nginx with keep-conn.
    """
    peers.requirePeer("nginx")
    app = peers.spawnFcgi(twistdArgv(), env=initialEnv(), directory=peerDir, cwd=str(REPO))
    front = peers.nginxFrontEnd(peerDir, fastcgiPass=str(app.socketPath), keepConn=True)
    yield front
    front.stop()
    app.stop()


@pytest.mark.peer("nginx", "spawn-fcgi")
def test_wsgi64MiBDownload(wsgiBehindNginx: peers.NginxFrontEnd) -> None:
    """
    64 MiB streamed by the WSGI application reach the HTTP client intact.
    """
    connection = http.client.HTTPConnection("127.0.0.1", wsgiBehindNginx.port, timeout=HTTP_TIMEOUT)
    try:
        connection.request("GET", f"/big?size={MIB64}")
        response = connection.getresponse()
        assert response.status == 200, wsgiBehindNginx.errorLog()
        assert sha256Response(response) == (MIB64, hashlib.sha256(pattern(MIB64)).hexdigest())
    finally:
        connection.close()


@pytest.mark.peer("nginx", "spawn-fcgi")
def test_wsgi64MiBUpload(wsgiBehindNginx: peers.NginxFrontEnd) -> None:
    """
    A 64 MiB request body streams through nginx into wsgi.input intact (the
    application hashes it block by block and answers length and sha256).
    """
    body = os.urandom(1 << 20) * 64
    connection = http.client.HTTPConnection("127.0.0.1", wsgiBehindNginx.port, timeout=HTTP_TIMEOUT)
    try:
        connection.request(
            "POST", "/upload?sha=1", body=bodyBlocks(body), headers={"Content-Length": str(len(body))}
        )
        response = connection.getresponse()
        assert response.status == 200, wsgiBehindNginx.errorLog()
        assert response.read().decode() == f"{MIB64} {hashlib.sha256(body).hexdigest()}"
    finally:
        connection.close()


@pytest.mark.peer("spawn-fcgi", "cgi-fcgi")
def test_wsgi64MiBFullDuplexEcho(peerDir: str) -> None:
    """
    cgi-fcgi (which reads and writes at once) sends 64 MiB to the WSGI
    application, which echoes it block by block while still reading: the
    64 MiB come back intact, with bounded buffering on both sides.

    (nginx is not used here: with C{fastcgi_request_buffering off}, once it
    starts passing the response on it stops reading the client's body, so an
    application that answers before it has read the whole body stalls -- we
    saw 320 KiB come back, then nothing until nginx's 60 s timeout.)
    """
    app = peers.spawnFcgi(twistdArgv(), env=initialEnv(), directory=peerDir, cwd=str(REPO))
    body = os.urandom(1 << 20) * 64
    raw = peers.cgiFcgi(app, {"REQUEST_METHOD": "POST"}, body, timeout=HTTP_TIMEOUT)
    response = peers.parseCgiResponse(raw)
    assert response.status == 200
    assert len(response.body) == MIB64
    assert hashlib.sha256(response.body).hexdigest() == hashlib.sha256(body).hexdigest()


@pytest.mark.peer("nginx", "spawn-fcgi")
def test_handler64MiBUpload(peerDir: str) -> None:
    """
    A 64 MiB body through nginx to examples/echo (the handler API) is read
    whole: echo reports its exact length and sha256.
    """
    app = peers.spawnFcgi(echoArgv(), env=initialEnv(), directory=peerDir)
    front = peers.nginxFrontEnd(peerDir, fastcgiPass=str(app.socketPath))
    body = os.urandom(1 << 20) * 64
    connection = http.client.HTTPConnection("127.0.0.1", front.port, timeout=HTTP_TIMEOUT)
    try:
        connection.request(
            "POST", "/echo?format=text", body=bodyBlocks(body), headers={"Content-Length": str(len(body))}
        )
        response = connection.getresponse()
        text = response.read().decode()
        assert response.status == 200, front.errorLog()
        assert f"Request body: {MIB64} bytes, sha256 {hashlib.sha256(body).hexdigest()}" in text
    finally:
        connection.close()
        front.stop()
        app.stop()


@pytest.mark.peer("cgi-fcgi")
def test_twistdFastcgiAppOverTCP(peerDir: str) -> None:
    """
    C{twistd -n fastcgi-app --port N} serves the WSGI application to
    cgi-fcgi: the environ comes from the PARAMS and the body round-trips;
    SIGTERM stops it with exit status 0.
    """
    port = peers.freePort()
    process = peers.PeerProcess(
        "twistd",
        twistdArgv("--port", str(port)),
        logPath=os.path.join(peerDir, "twistd.log"),
        env=initialEnv(),
        cwd=str(REPO),
    )
    try:
        peers._waitUntilAccepting(("127.0.0.1", port), [process], timeout=20)
        raw = peers.cgiFcgi(
            ("127.0.0.1", port),
            {"REQUEST_METHOD": "GET", "QUERY_STRING": "env=1", "SERVER_NAME": "example.org"},
        )
        response = peers.parseCgiResponse(raw)
        assert response.status == 200
        assert b"SERVER_NAME=example.org\n" in response.body
        assert b"FCGI_ROLE=RESPONDER\n" in response.body
        body = os.urandom(300000)
        echoed = peers.parseCgiResponse(
            peers.cgiFcgi(("127.0.0.1", port), {"REQUEST_METHOD": "POST"}, body)
        )
        assert echoed.body == body
        os.kill(process.pid, signal.SIGTERM)
        waitFor(lambda: not process.alive(), timeout=20)
        assert process.popen.returncode == 0, process.output()
    finally:
        process.stop()


@pytest.mark.peer("cgi-fcgi")
def test_webServerAddrs(peerDir: str) -> None:
    """
    With FCGI_WEB_SERVER_ADDRS set, echo closes TCP connections from peers
    not in the list (cgi-fcgi gets no response), serves listed ones, and
    serves Unix-socket peers (which have no address to check).
    """
    started = []
    for name, allowed in [("denied", "10.9.9.9"), ("allowed", "10.9.9.9, 127.0.0.1")]:
        port = peers.freePort()
        process = peers.PeerProcess(
            name,
            echoArgv("--port", str(port)),
            logPath=os.path.join(peerDir, f"{name}.log"),
            env=initialEnv(FCGI_WEB_SERVER_ADDRS=allowed),
        )
        started.append(process)
        peers._waitUntilAccepting(("127.0.0.1", port), [process])
        result = peers.cgiFcgiRun(("127.0.0.1", port), {"REQUEST_METHOD": "GET", "QUERY_STRING": "format=text"})
        if name == "denied":
            assert b"Request number" not in result.stdout
            assert "not in FCGI_WEB_SERVER_ADDRS" in process.output()
        else:
            assert b"Request number 1" in result.stdout
    path = os.path.join(peerDir, "addrs.sock")
    process = peers.PeerProcess(
        "unix",
        echoArgv("--socket", path),
        logPath=os.path.join(peerDir, "unix.log"),
        env=initialEnv(FCGI_WEB_SERVER_ADDRS="10.9.9.9"),
    )
    started.append(process)
    peers._waitUntilAccepting(path, [process])
    assert requestNumber(echoText(path))[0] == 1
    for process in started:
        process.stop()
