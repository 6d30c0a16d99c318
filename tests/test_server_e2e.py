"""
End-to-end tests of C{twistd fastcgi}: the real command in a subprocess,
serving a copy of C{examples/httpd.conf} on free ports, queried with
urllib; C{--check}; start-up errors; SIGTERM leaving no application process
or socket behind.

Every server is started in its own session and killed (its whole process
group) when its test module ends, whatever happened.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
TWISTD = str(VENV_BIN / "twistd")
ECHO = REPO / "examples" / "echo"
EXAMPLE = REPO / "examples" / "httpd.conf"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0

needsGateway = pytest.mark.skipif(
    importlib.util.find_spec("txfastcgi.gateway") is None,
    reason="txfastcgi.gateway (GatewayResource) has not landed yet",
)


def freePort() -> int:
    """
    A TCP port free on 127.0.0.1 right now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serverEnvironment() -> dict[str, str]:
    """
    The environment for twistd: this virtualenv first on PATH, so that the
    echo script's C{#!/usr/bin/env python3} (given C{-initial-env PATH})
    finds a Python with Twisted.
    """
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def exampleCopy(directory: Path, httpPort: int, appPort: int) -> Path:
    """
    Write C{examples/httpd.conf} into C{directory} with free ports, logs and
    sockets in C{directory}, and a document root there whose
    C{examples/echo} and C{examples/echo.fcg} are links to C{examples/echo}.
    """
    docroot = directory / "docroot"
    (docroot / "examples").mkdir(parents=True)
    for name in ("echo", "echo.fcg"):
        (docroot / "examples" / name).symlink_to(ECHO)
    text = EXAMPLE.read_text()
    replacements = [
        ("\nPort 5556\n", f"\nPort {httpPort}\n"),
        ("-port 8978", f"-port {appPort}"),
        ("localhost:8978", f"localhost:{appPort}"),
        ("/tmp/txfastcgi-error.log", f"{directory}/error.log"),
        ("/tmp/txfastcgi-access.log", f"{directory}/access.log"),
        ("\nDocumentRoot ..\n", f"\nDocumentRoot {docroot}\nFastCgiIpcDir {directory}/ipc\n"),
        ("\nAppClass echo ", f"\nAppClass {docroot}/examples/echo "),
        ("\nAppClass echo.fcg ", f"\nAppClass {docroot}/examples/echo.fcg "),
        ("\nExternalAppClass remote-echo ", f"\nExternalAppClass {docroot}/examples/remote-echo "),
    ]
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = directory / "httpd.conf"
    path.write_text(text)
    return path


class Server:
    """
    A C{twistd -n fastcgi} subprocess.
    """

    def __init__(self, directory: Path, config: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.output = directory / "twistd.out"
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                [TWISTD, "-n", "--pidfile=", "fastcgi", "--config", str(config)],
                cwd=directory,
                env=serverEnvironment(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def waitUntilListening(self) -> None:
        """
        Wait until the HTTP port accepts connections.
        """
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"twistd exited:\n{self.output.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"twistd is not listening:\n{self.output.read_text()}")

    def get(self, path: str, timeout: float = 15) -> tuple[int, str]:
        """
        GET C{path}; return the status and the body.
        """
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def kill(self) -> None:
        """
        Kill the server's whole process group (cleanup).
        """
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=STOP_TIMEOUT)


def serving(directory: Path, config: Path, port: int) -> Iterator[Server]:
    """
    Start a L{Server}, yield it once it listens, kill it afterwards (for
    fixtures: C{yield from serving(...)}).
    """
    running = Server(directory, config, port)
    try:
        running.waitUntilListening()
        yield running
    finally:
        running.kill()


def processesUnder(directory: Path) -> list[int]:
    """
    The pids of processes whose command line mentions C{directory}.
    """
    found = []
    needle = str(directory).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """
    A server for the copy of C{examples/httpd.conf}; killed at the end.
    """
    if importlib.util.find_spec("txfastcgi.gateway") is None:
        pytest.skip("txfastcgi.gateway (GatewayResource) has not landed yet")
    directory = tmp_path_factory.mktemp("e2e")
    httpPort, appPort = freePort(), freePort()
    config = exampleCopy(directory, httpPort, appPort)
    yield from serving(directory, config, httpPort)


def counter(body: str) -> int:
    """
    The request number echo shows.
    """
    for line in body.splitlines():
        if line.startswith("Request number "):
            return int(line.split()[2].rstrip(","))
    raise AssertionError(f"no request number in {body!r}")


def test_echoStateAndCounter(server: Server) -> None:
    """
    C{/examples/echo} shows C{STATE=TEXAS} in its initial environment and a
    request counter that increases from one request to the next.
    """
    status, first = server.get("/examples/echo?format=text")
    assert status == 200, first
    assert "\nSTATE=TEXAS\n" in first.split("Initial environment:")[1]
    status, second = server.get("/examples/echo?format=text")
    assert status == 200
    assert counter(second) == counter(first) + 1


def test_echoFcgAndRemote(server: Server) -> None:
    """
    The AppClass on a TCP port and the ExternalAppClass connected to it
    answer; they are the same process, so they share its counter.
    """
    status, local = server.get("/examples/echo.fcg?format=text")
    assert status == 200, local
    assert "FastCGI echo" in local
    status, remote = server.get("/examples/remote-echo?format=text")
    assert status == 200, remote
    assert counter(remote) == counter(local) + 1


def test_logsWritten(server: Server) -> None:
    """
    The transfer log has a common-format line per request and the error log
    has the start-up messages.
    """
    server.get("/examples/echo?logged=1")
    access = (server.directory / "access.log").read_text()
    assert '"GET /examples/echo?logged=1 HTTP/1.1" 200 ' in access
    assert access.startswith("127.0.0.1 - - [")
    error = (server.directory / "error.log").read_text()
    assert "] [info] " in error
    assert "started with pid" in error


def test_sighupReopensLogs(server: Server) -> None:
    """
    After logrotate moves the logs away, SIGHUP makes the server write to
    new files at the configured paths.
    """
    access = server.directory / "access.log"
    os.rename(access, server.directory / "access.log.1")
    os.rename(server.directory / "error.log", server.directory / "error.log.1")
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not (server.directory / "error.log").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    server.get("/examples/echo?rotated=1")
    assert "rotated=1" in access.read_text()
    assert "rotated=1" not in (server.directory / "access.log.1").read_text()
    assert "Reopened 2 log files" in (server.directory / "error.log").read_text()


def test_sigtermStops(server: Server) -> None:
    """
    SIGTERM stops the server with no application process or socket left
    behind.  (twistd ends by killing itself with the signal that stopped
    its reactor, so the status is -SIGTERM.)
    """
    assert processesUnder(server.directory / "docroot")
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=STOP_TIMEOUT) in (0, -signal.SIGTERM)
    assert processesUnder(server.directory / "docroot") == []
    assert os.listdir(server.directory / "ipc") == []
    assert "Shutdown complete" in (server.directory / "error.log").read_text()


def runTwistd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """
    Run C{twistd ARGS} to completion (bounded).
    """
    return subprocess.run(
        [TWISTD, *args],
        cwd=cwd,
        env=serverEnvironment(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_checkGoodAndBad(tmp_path: Path) -> None:
    """
    C{twistd fastcgi --check} exits 0 with C{Syntax OK} for a good file and
    1 with the one-line error for a bad one.
    """
    good = exampleCopy(tmp_path, freePort(), freePort())
    result = runTwistd("fastcgi", "--check", "--config", str(good), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("Syntax OK\n")
    bad = tmp_path / "bad.conf"
    bad.write_text(good.read_text().replace("-port ", "-port x"))
    result = runTwistd("fastcgi", "--check", "--config", str(bad), cwd=tmp_path)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{bad}:")
    assert ": AppClass: -port must be an integer between 1 and 65535 (got 'x" in line


@pytest.mark.skipif(
    not (REPO / "examples" / "echo.fcg").exists(),
    reason="examples/echo.fcg (a link to echo) is not in the checkout yet",
)
def test_checkExample() -> None:
    """
    C{examples/httpd.conf} itself is valid.
    """
    result = runTwistd("fastcgi", "--check", "--config", str(EXAMPLE), cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_badConfigNoTraceback(tmp_path: Path) -> None:
    """
    Started with a bad file, twistd prints the one-line error after its
    usage text and exits 1, with no traceback.
    """
    bad = tmp_path / "bad.conf"
    bad.write_text("Listen 127.0.0.1:1\nAppClass /nonexistent/app\n")
    result = runTwistd("-n", "--pidfile=", "fastcgi", "--config", str(bad), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" not in result.stdout + result.stderr
    assert result.stdout.rstrip("\n").splitlines()[-1].endswith(
        f": {bad}:2: AppClass: no such file (got '/nonexistent/app')"
    )


@needsGateway
def test_portInUse(tmp_path: Path) -> None:
    """
    An address already in use stops the start with a one-line error, exit
    status 1 and no application left running.
    """
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = exampleCopy(tmp_path, port, freePort())
        result = runTwistd("-n", "--pidfile=", "fastcgi", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" not in result.stdout + result.stderr
    assert f"cannot listen on tcp:{port}" in result.stdout + result.stderr
    assert processesUnder(tmp_path / "docroot") == []


# --- php-fpm as an ExternalAppClass ------------------------------------------

PHP_SCRIPTS = {
    "form.php": (
        "<?php header('Content-Type: text/plain');\n"
        "echo 'method=' . $_SERVER['REQUEST_METHOD'] . \"\\n\";\n"
        "echo 'name=' . ($_POST['name'] ?? '') . \"\\n\";\n"
    ),
    "cookie.php": (
        "<?php setcookie('visit', 'one'); setcookie('other', 'two');\n"
        "echo 'got=' . ($_COOKIE['visit'] ?? 'none');\n"
    ),
    "slow.php": "<?php sleep(2); echo 'done';\n",
    "redirect.php": (
        "<?php if (isset($_GET['local'])) { header('Location: /index.php?env=1', true, 200); }\n"
        "elseif (isset($_GET['found'])) { header('Location: /index.php'); }\n"
        "else { header('Location: http://example.com/elsewhere'); }\n"
    ),
}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """
    Do not follow redirects: the tests look at them.
    """

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        """
        Follow nothing.
        """
        return None


@pytest.fixture(scope="module")
def phpServer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """
    php-fpm (tests/peers.py) behind C{twistd fastcgi}: C{.php} files go to
    it through an C{Action}, as Apache 1.3 with mod_fastcgi did it.
    """
    if importlib.util.find_spec("txfastcgi.gateway") is None:
        pytest.skip("txfastcgi.gateway (GatewayResource) has not landed yet")
    from tests import peers

    peers.requireNamedPeer("php-fpm")
    directory = tmp_path_factory.mktemp("php")
    fpm = peers.phpFpm(str(directory), scripts=PHP_SCRIPTS)
    docroot = directory / "docroot"
    port = freePort()
    config = directory / "httpd.conf"
    config.write_text(
        f"""Listen 127.0.0.1:{port}
DocumentRoot {docroot}
DirectoryIndex index.php
ErrorLog {directory}/error.log
TransferLog {directory}/access.log
AddType application/x-httpd-php .php
Action application/x-httpd-php /php-fpm virtual
ExternalAppClass {docroot}/php-fpm -socket {fpm.socketPath}
<Location /php-fpm>
SetHandler fastcgi-script
</Location>
"""
    )
    try:
        yield from serving(directory, config, port)
    finally:
        fpm.stop()


def phpRequest(
    server: Server, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, list[str]], str]:
    """
    Send a request without following redirects.

    @return: status, headers (lower-case names, every value), body.
    """
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}", data=data, headers=headers or {}
    )
    try:
        response = opener.open(request, timeout=15)
    except urllib.error.HTTPError as e:
        response = e
    with response:
        found: dict[str, list[str]] = {}
        for name, value in response.headers.items():
            found.setdefault(name.lower(), []).append(value)
        return response.status, found, response.read().decode("utf-8", "replace")


@pytest.mark.peer("php-fpm")
def test_phpGet(phpServer: Server) -> None:
    """
    A GET of a PHP script (and of the directory, through DirectoryIndex)
    is answered by php-fpm.
    """
    status, headers, body = phpRequest(phpServer, "/index.php?env=1")
    assert status == 200, body
    assert "REQUEST_URI=/index.php?env=1" in body
    assert "QUERY_STRING=env=1" in body
    status, headers, body = phpRequest(phpServer, "/")
    assert status == 200, body
    assert body.startswith("pid=")


@pytest.mark.peer("php-fpm")
def test_phpPostForm(phpServer: Server) -> None:
    """
    A POSTed form reaches PHP's C{$_POST}.
    """
    status, _, body = phpRequest(
        phpServer,
        "/form.php",
        data=b"name=J%C3%BCrgen&x=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200, body
    assert body == "method=POST\nname=J\u00fcrgen\n"


@pytest.mark.peer("php-fpm")
def test_phpCookies(phpServer: Server) -> None:
    """
    Several C{Set-Cookie} headers pass through unmerged, and a request's
    C{Cookie} reaches C{$_COOKIE}.
    """
    status, headers, body = phpRequest(phpServer, "/cookie.php")
    assert status == 200
    assert body == "got=none"
    assert sorted(headers["set-cookie"]) == ["other=two", "visit=one"]
    status, _, body = phpRequest(phpServer, "/cookie.php", headers={"Cookie": "visit=again"})
    assert body == "got=again"


@pytest.mark.peer("php-fpm")
def test_phpStatus(phpServer: Server) -> None:
    """
    A status set by the script is the response's; a missing script is 404.
    """
    status, _, _ = phpRequest(phpServer, "/index.php?status=418")
    assert status == 418
    status, _, _ = phpRequest(phpServer, "/missing.php")
    assert status == 404


@pytest.mark.peer("php-fpm")
def test_phpRedirects(phpServer: Server) -> None:
    """
    A C{Location} with a full URL is a 302 to it; a local path with status
    200 is served inside the server (internal redirect, as a GET); PHP's
    own 302 for a local path goes to the client.
    """
    status, headers, _ = phpRequest(phpServer, "/redirect.php")
    assert status == 302
    assert headers["location"] == ["http://example.com/elsewhere"]
    status, headers, _ = phpRequest(phpServer, "/redirect.php?found=1")
    assert status == 302
    assert headers["location"][0].endswith("/index.php")
    status, headers, body = phpRequest(phpServer, "/redirect.php?local=1")
    assert status == 200, body
    assert "REQUEST_URI=/index.php?env=1" in body
    # The Action's own redirect (to /php-fpm/index.php) comes last, so
    # REDIRECT_URL names /index.php, as in Apache.
    assert "REDIRECT_STATUS=200" in body
    access = (phpServer.directory / "access.log").read_text()
    assert '"GET /redirect.php?local=1 HTTP/1.1" 200 ' in access


@needsGateway
def test_applicationPortInUse(tmp_path: Path) -> None:
    """
    An AppClass C{-port} already in use stops the start with a one-line
    error and exit status 1.
    """
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        appPort = busy.getsockname()[1]
        config = exampleCopy(tmp_path, freePort(), appPort)
        result = runTwistd("-n", "--pidfile=", "fastcgi", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "Traceback (most recent call last)" not in output
    assert f"cannot set up the applications' sockets: TCP 127.0.0.1:{appPort}" in output
    assert processesUnder(tmp_path / "docroot") == []


@pytest.mark.peer("php-fpm")
def test_phpDrainOnSigterm(phpServer: Server) -> None:
    """
    SIGTERM while a request is running: the server stops listening at once,
    lets the request finish (it answers 200), then stops.  (Uses up the
    module's php server: keep it the last test that uses it.)
    """
    import threading

    results: list[tuple[int, str]] = []
    thread = threading.Thread(
        target=lambda: results.append(phpServer.get("/slow.php", timeout=30))
    )
    thread.start()
    # The request is in flight (php-fpm sleeps 2 s in it) well before this.
    time.sleep(0.5)
    phpServer.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", phpServer.port), timeout=1).close()
    thread.join(timeout=30)
    assert results == [(200, "done")]
    assert phpServer.process.wait(timeout=STOP_TIMEOUT) in (0, -signal.SIGTERM)
    error = (phpServer.directory / "error.log").read_text()
    assert "Shutdown: waiting up to 10.0 s for 1 requests in flight" in error
    assert error.index("requests in flight") < error.index("closing 1 connection pools")


CGI_READER = """\
#!{python}
import hashlib, os, sys
length = int(os.environ.get("CONTENT_LENGTH") or 0)
digest = hashlib.sha256()
got = 0
while got < length:
    data = sys.stdin.buffer.read(min(65536, length - got))
    if not data:
        break
    digest.update(data)
    got += len(data)
sys.stdout.write("Content-Type: text/plain\\r\\n\\r\\n")
sys.stdout.write("%d %s\\n" % (got, digest.hexdigest()))
"""
"""A CGI script reading C{CONTENT_LENGTH} bytes from its standard input and
printing their length and SHA-256."""

CGI_EARLY = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nearly\\n'\nexit 0\n"
"""A CGI script answering without reading its standard input."""


@pytest.fixture(scope="module")
def cgiServer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """
    A server with C{ScriptAlias /cgi-bin/} holding C{reader} (L{CGI_READER})
    and C{early} (L{CGI_EARLY}); killed at the end.
    """
    if importlib.util.find_spec("txfastcgi.gateway") is None:
        pytest.skip("txfastcgi.gateway (GatewayResource) has not landed yet")
    directory = tmp_path_factory.mktemp("cgi")
    (directory / "docroot").mkdir()
    scripts = directory / "cgi-bin"
    scripts.mkdir()
    for name, text in [
        ("reader", CGI_READER.format(python=sys.executable)),
        ("early", CGI_EARLY),
    ]:
        (scripts / name).write_text(text)
        os.chmod(scripts / name, 0o755)
    port = freePort()
    config = directory / "httpd.conf"
    config.write_text(
        f"""Listen 127.0.0.1:{port}
DocumentRoot {directory}/docroot
ScriptAlias /cgi-bin/ {scripts}/
ErrorLog {directory}/error.log
TransferLog {directory}/access.log
"""
    )
    yield from serving(directory, config, port)


def cgiPost(server: Server, path: str, data: bytes) -> tuple[int, bytes]:
    """
    POST C{data} to C{path}; return the status and the body.
    """
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", data=data)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_cgiBigPost(cgiServer: Server) -> None:
    """
    A multi-MiB POST body reaches a CGI script intact (streamed to its
    standard input, not read into memory at once), and nothing goes wrong
    in the log.
    """
    import hashlib

    data = os.urandom(8 * 1024 * 1024 + 7)
    status, answer = cgiPost(cgiServer, "/cgi-bin/reader", data)
    assert status == 200, answer
    assert answer == b"%d %s\n" % (len(data), hashlib.sha256(data).hexdigest().encode())
    error = (cgiServer.directory / "error.log").read_text()
    assert "Traceback" not in error


def test_cgiExitsWithoutReading(cgiServer: Server) -> None:
    """
    A CGI script that answers without reading a multi-MiB body: the answer
    arrives, the server logs one line about it and no traceback, and keeps
    serving.
    """
    status, answer = cgiPost(cgiServer, "/cgi-bin/early", os.urandom(4 * 1024 * 1024))
    assert (status, answer) == (200, b"early\n")
    deadline = time.monotonic() + 10
    error = ""
    while time.monotonic() < deadline:
        error = (cgiServer.directory / "error.log").read_text()
        if "closed its input" in error:
            break
        time.sleep(0.1)
    assert error.count("closed its input") == 1, error
    assert "Traceback" not in error
    status, answer = cgiPost(cgiServer, "/cgi-bin/reader", b"abc")
    assert status == 200
    assert answer.startswith(b"3 ")
