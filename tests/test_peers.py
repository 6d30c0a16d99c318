"""
Smoke tests for the real-peer harness in tests/peers.py: the libfcgi
responder under spawn-fcgi, php-fpm and nginx, driven by cgi-fcgi, a raw
keep-conn client and urllib.
"""

from __future__ import annotations

import os
import socket
import urllib.request

import pytest
import pytest_twisted  # type: ignore[import-untyped]

from tests import peers
from txfastcgi.fcgi.constants import FCGI_KEEP_CONN, RecordType, Role
from txfastcgi.fcgi.records import (
    RecordReader,
    encodeBeginRequestBody,
    encodePairs,
    encodeRecord,
)


def rawRequest(
    connection: socket.socket, query: str, *, keepConn: bool, requestId: int = 1
) -> peers.CgiResponse:
    """
    One FastCGI request over C{connection}, with or without FCGI_KEEP_CONN,
    read up to its END_REQUEST.
    """
    params = encodePairs(
        [
            (b"REQUEST_METHOD", b"GET"),
            (b"SCRIPT_NAME", b"/app"),
            (b"QUERY_STRING", query.encode()),
        ]
    )
    flags = FCGI_KEEP_CONN if keepConn else 0
    connection.sendall(
        encodeRecord(
            RecordType.BEGIN_REQUEST, requestId, encodeBeginRequestBody(Role.RESPONDER, flags)
        )
        + encodeRecord(RecordType.PARAMS, requestId, params)
        + encodeRecord(RecordType.PARAMS, requestId)
        + encodeRecord(RecordType.STDIN, requestId)
    )
    reader = RecordReader()
    stdout = b""
    while True:
        data = connection.recv(65536)
        assert data, "connection closed before END_REQUEST"
        for record in reader.feed(data):
            assert record.requestId == requestId
            if record.type == RecordType.STDOUT:
                stdout += record.content
            elif record.type == RecordType.END_REQUEST:
                return peers.parseCgiResponse(stdout)


def connectTo(address: peers.Address) -> socket.socket:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    connection = socket.socket(family, socket.SOCK_STREAM)
    connection.settimeout(10)
    connection.connect(address)
    return connection


def processGone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_buildResponderCaches(responderBinary: str) -> None:
    """
    L{peers.buildResponder} gives an executable, and the same one again.
    """
    assert os.access(responderBinary, os.X_OK)
    assert peers.buildResponder() == responderBinary


@pytest.mark.peer("libfcgi-dev", "spawn-fcgi", "cgi-fcgi")
def test_responderOnUnixSocket(responderBinary: str, peerDir: str) -> None:
    """
    The responder started by spawn-fcgi on a unix socket answers cgi-fcgi:
    the default body, an exact size=N body, a 1 MiB echo, and counts one
    connection per cgi-fcgi run.
    """
    socketPath = os.path.join(peerDir, "r.sock")
    with peers.spawnFcgi([responderBinary], socketPath=socketPath) as app:
        assert app.address == socketPath
        assert app.endpointDescription == f"unix:path={socketPath}"
        assert app.alive()

        first = peers.cgiRequest(app)
        assert first.status == 200
        assert first.body == b"Hello, world\n"
        assert first.header("X-Pid") == str(app.pids[0])
        assert first.header("X-Requests") == "1"
        assert first.header("X-Connections") == "1"

        sized = peers.cgiRequest(app, "size=100000")
        assert sized.header("Content-Length") == "100000"
        assert sized.body == peers.responderPattern(100000)
        assert sized.header("X-Connections") == "2"

        payload = os.urandom(1024 * 1024)
        echoed = peers.cgiRequest(app, "echo", payload)
        assert echoed.header("X-Body-Length") == str(len(payload))
        assert echoed.body == payload
        assert echoed.header("X-Connections") == "3"
        assert echoed.header("X-Requests") == "3"

        env = peers.cgiRequest(app, "env&status=404")
        assert env.status == 404
        lines = env.body.decode().splitlines()
        assert lines == sorted(lines, key=lambda line: line.split("=", 1)[0])
        assert "QUERY_STRING=env&status=404" in lines

        result = peers.cgiFcgiRun(
            app.address, {"REQUEST_METHOD": "GET", "QUERY_STRING": "stderr=oops&push=10"}
        )
        assert result.returncode == 0
        assert b"oops" in result.stderr
        assert peers.parseCgiResponse(result.stdout).body == b"part1\npart2\n"
        pid = app.pids[0]
    assert not app.alive()
    assert processGone(pid)
    assert not os.path.exists(socketPath)


@pytest.mark.peer("libfcgi-dev", "spawn-fcgi", "cgi-fcgi")
def test_responderOnTCP(responderBinary: str) -> None:
    """
    The responder started by spawn-fcgi on a free TCP port answers cgi-fcgi;
    stop() is idempotent and leaves nothing behind.
    """
    app = peers.spawnFcgi([responderBinary, "-t", "2"], port=0)
    assert isinstance(app.address, tuple)
    host, port = app.address
    assert host == "127.0.0.1"
    assert app.endpointDescription == f"tcp:host=127.0.0.1:port={port}"
    assert peers.cgiRequest(app).body == b"Hello, world\n"
    app.stop()
    app.stop()
    assert processGone(app.pids[0])
    assert not set(app.processes) & set(peers.liveProcesses())
    with pytest.raises(OSError):
        connectTo(app.address)


@pytest.mark.peer("libfcgi-dev", "spawn-fcgi", "cgi-fcgi")
def test_keepConnCounting(responderBinary: str) -> None:
    """
    X-Connections counts connections, not requests: two FCGI_KEEP_CONN
    requests on one connection count once; after that connection closes, a
    new one (which may get the same fd number in the responder) counts again.
    """
    with peers.spawnResponder() as app:
        with connectTo(app.address) as connection:
            one = rawRequest(connection, "", keepConn=True)
            two = rawRequest(connection, "size=10", keepConn=True, requestId=2)
        assert (one.header("X-Connections"), two.header("X-Connections")) == ("1", "1")
        assert (one.header("X-Requests"), two.header("X-Requests")) == ("1", "2")
        assert two.body == peers.responderPattern(10)

        with connectTo(app.address) as connection:
            three = rawRequest(connection, "", keepConn=True)
        assert three.header("X-Connections") == "2"

        with connectTo(app.address) as connection:
            four = rawRequest(connection, "", keepConn=False)
            assert connection.recv(1) == b""  # the responder closed it
        assert four.header("X-Connections") == "3"
        assert peers.cgiRequest(app).header("X-Connections") == "4"


@pytest.mark.peer("libfcgi-dev", "cgi-fcgi")
def test_severalChildren(responderBinary: str) -> None:
    """
    children=2 hands one listening socket to two processes; both serve and
    both are stopped.
    """
    app = peers.spawnFcgi([responderBinary], children=2)
    assert len(app.pids) == 2
    assert app.alive()
    seen = {peers.cgiRequest(app).header("X-Pid") for _ in range(4)}
    assert seen <= {str(pid) for pid in app.pids}
    app.stop()
    assert all(processGone(pid) for pid in app.pids)
    with pytest.raises(OSError):
        connectTo(app.address)


@pytest.mark.peer("php-fpm", "cgi-fcgi")
def test_phpFpmRecyclesWorkers(peerDir: str) -> None:
    """
    php-fpm with pm.max_requests=3 serves requests through cgi-fcgi and
    replaces its worker after three.
    """
    fpm = peers.phpFpm(peerDir, maxRequests=3, maxChildren=1)
    pids = []
    for _ in range(4):
        response = peers.parseCgiResponse(peers.cgiFcgi(fpm.address, fpm.params()))
        assert response.status == 200
        assert response.body == f"pid={response.header('X-Pid')}\n".encode()
        pids.append(response.header("X-Pid"))
    assert pids[0] == pids[1] == pids[2] != pids[3]
    echoed = peers.parseCgiResponse(
        peers.cgiFcgi(
            fpm.address,
            fpm.params(REQUEST_METHOD="POST", QUERY_STRING="echo", CONTENT_LENGTH="5"),
            b"hello",
        )
    )
    assert echoed.body == b"hello"
    fpm.stop()
    assert not fpm.alive()
    assert "ready to handle connections" in fpm.errorLog()


@pytest.mark.peer("libfcgi-dev", "spawn-fcgi", "nginx")
@pytest.mark.parametrize("keepConn", [False, True])
def test_nginxInFront(responderBinary: str, peerDir: str, keepConn: bool) -> None:
    """
    nginx in front of the responder answers HTTP; with keepConn it reuses
    its FastCGI connection.
    """
    app = peers.spawnResponder(threads=2, directory=peerDir)
    front = peers.nginxFrontEnd(peerDir, fastcgiPass=app.address, keepConn=keepConn)
    connections = []
    for path in ["/", "/x?size=70000"]:
        with urllib.request.urlopen(front.url(path), timeout=10) as reply:
            assert reply.status == 200
            body = reply.read()
            connections.append(reply.headers["X-Connections"])
    assert body == peers.responderPattern(70000)
    assert connections == (["1", "1"] if keepConn else ["1", "2"])
    front.stop()
    app.stop()
    assert not front.alive()


def test_requirePeerMissing(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A missing program skips the test with an apt-get hint, or fails it with
    TXFASTCGI_REQUIRE_PEERS=1; a present one is found on PATH or in sbin.
    """
    monkeypatch.delenv("TXFASTCGI_REQUIRE_PEERS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="fcgiwrap not installed: apt-get install fcgiwrap"):
        peers.requirePeer("fcgiwrap", "/nonexistent/fcgiwrap")
    monkeypatch.setenv("TXFASTCGI_REQUIRE_PEERS", "1")
    with pytest.raises(pytest.fail.Exception, match="cgi-fcgi not installed: apt-get install libfcgi-bin"):
        peers.requirePeer("cgi-fcgi", "no-such-cgi-fcgi")
    assert os.path.isabs(peers.requirePeer("spawn-fcgi"))


@pytest.mark.peer("fcgiwrap", "spawn-fcgi", "cgi-fcgi")
def test_fcgiwrapRunsCgiScripts(peerDir: str) -> None:
    """
    fcgiwrap under spawn-fcgi runs a CGI script named by SCRIPT_FILENAME.
    """
    app = peers.fcgiwrap(
        peerDir, scripts={"hi.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nhi %s\\n' \"$QUERY_STRING\"\n"}
    )
    response = peers.cgiRequest(
        app, "x=1", extraEnv={"SCRIPT_FILENAME": os.path.join(peerDir, "cgi-bin", "hi.sh")}
    )
    assert response.body == b"hi x=1\n"
    app.stop()
    assert not app.alive()


@pytest.mark.peer("libfcgi-dev", "spawn-fcgi", "cgi-fcgi")
@pytest_twisted.ensureDeferred  # type: ignore[untyped-decorator]
async def test_deferCgiFcgi(responderBinary: str) -> None:
    """
    L{peers.deferCgiFcgi} runs cgi-fcgi without blocking the reactor.
    """
    from twisted.internet import reactor

    with peers.spawnResponder() as app:
        raw = await peers.deferCgiFcgi(reactor, app, {"QUERY_STRING": "size=5"})
    assert peers.parseCgiResponse(raw).body == b"abcde"


@pytest.mark.peer("libfcgi-dev", "spawn-fcgi")
def test_responderPushFlushes(responderBinary: str) -> None:
    """
    push=MS sends part1 (FCGX_FFlush) before sleeping, part2 after.
    """
    import time

    with peers.spawnResponder() as app, connectTo(app.address) as connection:
        started = time.monotonic()
        params = encodePairs([(b"QUERY_STRING", b"push=400")])
        connection.sendall(
            encodeRecord(RecordType.BEGIN_REQUEST, 1, encodeBeginRequestBody(Role.RESPONDER, 0))
            + encodeRecord(RecordType.PARAMS, 1, params)
            + encodeRecord(RecordType.PARAMS, 1)
            + encodeRecord(RecordType.STDIN, 1)
        )
        reader = RecordReader()
        stdout = b""
        while b"part1" not in stdout:
            for record in reader.feed(connection.recv(65536)):
                if record.type == RecordType.STDOUT:
                    stdout += record.content
        assert b"part2" not in stdout
        assert time.monotonic() - started < 0.35
        ended = False
        while not ended:
            for record in reader.feed(connection.recv(65536)):
                if record.type == RecordType.STDOUT:
                    stdout += record.content
                ended = ended or record.type == RecordType.END_REQUEST
        assert stdout.endswith(b"part1\npart2\n")
        assert time.monotonic() - started >= 0.4
