"""
Real FastCGI peers for tests: programs nobody here wrote.

Synchronous helpers that build, start and stop external programs
(spawn-fcgi + a libfcgi responder, php-fpm, nginx, cgi-fcgi) so that tests
can check txfastcgi against independent implementations of the protocol.
No Twisted reactor is imported here; blocking calls are fine in fixtures and
in plain tests and fixtures.  They block: from a pytest-twisted test whose
FastCGI application runs in this process's reactor, use L{deferCgiFcgi}
(or C{deferToThread}) instead of L{cgiFcgi}.

Process hygiene:
  - every long-running peer is started in its own session (process group)
    and stopped by signalling the whole group: SIGTERM, up to 5 s, SIGKILL;
  - when started from the main thread, the group leader also gets
    PR_SET_PDEATHSIG=SIGTERM, so even a SIGKILLed pytest leaves no peer
    behind;
  - every peer is registered; L{stopAll} (run by the conftest fixtures and by
    an atexit hook) stops whatever is left.

A missing program makes the calling test skip with an "apt-get install"
hint, or fail when C{TXFASTCGI_REQUIRE_PEERS=1} is set (for CI).

The libfcgi responder (tests/apps/responder.c) chooses its behaviour from
the query string; see that file's header comment.  L{responderPattern}
gives the body it sends for C{size=N}.
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, NoReturn, Sequence, Union

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

Address = Union[str, tuple[str, int]]
"""
Where a FastCGI application listens: a unix socket path, or (host, port).
"""

REPO_ROOT = Path(__file__).resolve().parent.parent
"""
The checkout: use it as C{cwd} to run C{python -m examples.echo}.
"""

APPS_DIRECTORY = Path(__file__).resolve().parent / "apps"
RESPONDER_SOURCE = APPS_DIRECTORY / "responder.c"
BUILD_ROOT = Path(os.environ.get("TXFASTCGI_TEST_BUILD_DIR", "/tmp/txfastcgi-test-build"))

STARTUP_TIMEOUT = 10.0
"""Seconds a peer gets to start accepting connections."""

STOP_TIMEOUT = 5.0
"""Seconds a peer gets to exit after SIGTERM before it is SIGKILLed."""

_PACKAGES = {
    "spawn-fcgi": "spawn-fcgi",
    "cgi-fcgi": "libfcgi-bin",
    "php-fpm": "php-fpm",
    "nginx": "nginx",
    "fcgiwrap": "fcgiwrap",
    "gcc": "gcc",
}

_SBIN_DIRECTORIES = ("/usr/local/sbin", "/usr/sbin", "/sbin")

_MAX_UNIX_PATH = 107


# ---------------------------------------------------------------------------
# Finding peers


class PeerMissing(AssertionError):
    """
    A required peer is missing (with C{TXFASTCGI_REQUIRE_PEERS=1}) or could
    not be built: a test failure under trial.
    """


def _underPytest() -> bool:
    return "PYTEST_CURRENT_TEST" in os.environ and "pytest" in sys.modules


def _missing(reason: str) -> NoReturn:
    """
    Skip the calling test, or fail it with C{TXFASTCGI_REQUIRE_PEERS=1}:
    through pytest when pytest runs it, else with C{unittest.SkipTest} or
    L{PeerMissing} (which trial understands).
    """
    if os.environ.get("TXFASTCGI_REQUIRE_PEERS") == "1":
        _fail(reason)
    if _underPytest():
        import pytest

        pytest.skip(reason)
    raise unittest.SkipTest(reason)


def _fail(reason: str) -> NoReturn:
    if _underPytest():
        import pytest

        pytest.fail(reason, pytrace=False)
    raise PeerMissing(reason)


def findPeer(*candidates: str) -> str | None:
    """
    The first of C{candidates} that is an executable: absolute paths are
    checked as they are, bare names on C{PATH} and then in the sbin
    directories (which a non-root C{PATH} often lacks).
    """
    for candidate in candidates:
        if os.path.isabs(candidate):
            if os.access(candidate, os.X_OK) and os.path.isfile(candidate):
                return candidate
            continue
        found = shutil.which(candidate)
        if found is None:
            found = shutil.which(candidate, path=os.pathsep.join(_SBIN_DIRECTORIES))
        if found is not None:
            return found
    return None


def requirePeer(name: str, *candidates: str) -> str:
    """
    The path of the program C{name} (or the first of C{candidates} found).

    If none is installed, skip the calling test with
    C{"<name> not installed: apt-get install <package>"}, or fail it with
    that reason when the environment has C{TXFASTCGI_REQUIRE_PEERS=1}
    (C{pytest.skip}/C{pytest.fail} under pytest; C{unittest.SkipTest}/
    L{PeerMissing} under trial).
    """
    found = findPeer(*(candidates or (name,)))
    if found is None:
        _missing(f"{name} not installed: apt-get install {_PACKAGES.get(name, name)}")
    return found


def requirePhpFpm() -> str:
    """
    The php-fpm binary (Debian installs it as php-fpm<version>).
    """
    candidates = ["php-fpm"]
    for directory in _SBIN_DIRECTORIES:
        if os.path.isdir(directory):
            candidates.extend(
                os.path.join(directory, entry)
                for entry in sorted(os.listdir(directory), reverse=True)
                if entry.startswith("php-fpm")
            )
    return requirePeer("php-fpm", *candidates)


def requireLibfcgiDev() -> str:
    """
    Check that C programs using libfcgi can be built: gcc and fcgiapp.h.

    @return: the path of gcc.
    """
    gcc = requirePeer("gcc")
    if not os.path.exists("/usr/include/fcgiapp.h"):
        _missing("libfcgi-dev not installed: apt-get install libfcgi-dev")
    return gcc


def requireNamedPeer(name: str) -> str:
    """
    L{requirePeer} by the names the C{peer(name)} pytest marker uses:
    C{spawn-fcgi}, C{cgi-fcgi}, C{php-fpm}, C{nginx}, C{fcgiwrap}, C{gcc},
    C{libfcgi-dev}.
    """
    if name == "php-fpm":
        return requirePhpFpm()
    if name == "libfcgi-dev":
        return requireLibfcgiDev()
    return requirePeer(name, name, *(os.path.join(d, name) for d in _SBIN_DIRECTORIES))


# ---------------------------------------------------------------------------
# Building the responder


_buildLock = threading.Lock()


def buildResponder() -> str:
    """
    Compile tests/apps/responder.c (once per source and compiler flags) and
    return the path of the binary.

    The binary is cached in C{BUILD_ROOT/<hash>/responder}; concurrent
    pytest processes each build to a private name and C{os.replace} it into
    place, so a half-written binary is never visible.
    """
    gcc = requireLibfcgiDev()
    source = RESPONDER_SOURCE.read_bytes()
    flags = ["-O2", "-Wall", "-pthread"]
    digest = hashlib.sha256(source + repr(flags).encode()).hexdigest()[:16]
    target = BUILD_ROOT / digest / "responder"
    with _buildLock:
        if target.exists():
            return str(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f"responder.tmp.{os.getpid()}")
        result = subprocess.run(
            [gcc, *flags, "-o", str(temporary), str(RESPONDER_SOURCE), "-lfcgi"],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            temporary.unlink(missing_ok=True)
            _fail(f"building {RESPONDER_SOURCE} failed:\n{result.stderr}")
        os.replace(temporary, target)
    return str(target)


def responderPattern(length: int) -> bytes:
    """
    The body the responder sends for C{size=length}: byte k is
    C{PATTERN[k % 65536]} with C{PATTERN[i] = "\\n" if i % 64 == 63 else
    chr(ord("a") + i % 26)}.
    """
    chunk = bytes(10 if i % 64 == 63 else 97 + i % 26 for i in range(65536))
    whole, rest = divmod(length, len(chunk))
    return chunk * whole + chunk[:rest]


# ---------------------------------------------------------------------------
# Small helpers


def freePort(host: str = "127.0.0.1") -> int:
    """
    A TCP port on C{host} that was free a moment ago.  Helpers that take a
    port from here retry with another one if a race makes the bind fail.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _escapeEndpoint(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def endpointDescription(address: Address) -> str:
    """
    The Twisted client endpoint string for C{address}: C{unix:path=...} or
    C{tcp:host=...:port=...}.
    """
    if isinstance(address, str):
        return f"unix:path={_escapeEndpoint(address)}"
    host, port = address
    return f"tcp:host={_escapeEndpoint(host)}:port={port}"


def connectArgument(address: Address) -> str:
    """
    C{address} as cgi-fcgi, spawn-fcgi's users and nginx's C{fastcgi_pass}
    (after C{unix:}) spell it: a path, or C{host:port}.
    """
    if isinstance(address, str):
        return address
    return f"{address[0]}:{address[1]}"


def _checkUnixPath(path: str) -> None:
    if len(os.fsencode(path)) > _MAX_UNIX_PATH:
        raise ValueError(
            f"unix socket path is {len(path)} bytes, longer than {_MAX_UNIX_PATH}: "
            f"{path!r} (use the peerDir fixture, which gives short paths)"
        )


def _accepts(address: Address) -> bool:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(address)
        except OSError:
            return False
    return True


def makeDirectory(prefix: str = "txf-") -> str:
    """
    A new, short directory under the system temporary directory (short so
    that unix socket paths inside it fit in C{sun_path}).
    """
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp" if os.path.isdir("/tmp") else None)


# ---------------------------------------------------------------------------
# Processes


_registryLock = threading.Lock()
_registry: dict[int, "PeerProcess"] = {}


def _prctlDeathSignal() -> Callable[[], None] | None:
    """
    A preexec function asking the kernel to SIGTERM the child when the
    thread that started it dies, or None where that is not available.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    PR_SET_PDEATHSIG = 1
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took hold
            os._exit(1)

    return preexec


class PeerProcess:
    """
    One external program, in its own process group, registered for cleanup.

    States: running → stopped (L{stop} is idempotent; the process may also
    exit on its own, which L{alive} reports).

    @ivar name: a label for messages.
    @ivar argv: the command line.
    @ivar logPath: the file that receives its stdout and stderr.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        logPath: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: int | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.logPath = logPath
        self._stopped = False
        preexec = None
        if threading.current_thread() is threading.main_thread():
            preexec = _prctlDeathSignal()
        with open(logPath, "ab") as log:
            self.popen: subprocess.Popen[bytes] = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL if stdin is None else stdin,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=preexec,
                close_fds=True,
            )
        self.pid = self.popen.pid
        with _registryLock:
            _registry[id(self)] = self

    def __repr__(self) -> str:
        state = "running" if self.alive() else f"exited {self.popen.returncode}"
        return f"<PeerProcess {self.name} pid={self.pid} {state}>"

    def alive(self) -> bool:
        """
        Whether the process (the group leader) is still running.
        """
        return self.popen.poll() is None

    def output(self) -> str:
        """
        Everything the process wrote to stdout and stderr so far.
        """
        try:
            return Path(self.logPath).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _signalGroup(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _leaderExited(self, timeout: float) -> bool:
        """
        Wait until the leader has exited, without reaping it (so its pid,
        which is also the group id, cannot be reused meanwhile).
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.popen.returncode is not None:
                return True
            try:
                info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return True
            if info is not None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """
        Stop the whole process group: SIGTERM, wait up to C{timeout} seconds
        for the leader, SIGKILL (the leader if it is still there, and any
        member of its group left behind), reap.  Idempotent.

        @return: the leader's exit status (negative for a signal).
        """
        if not self._stopped:
            self._stopped = True
            if self.popen.returncode is None:
                self._signalGroup(signal.SIGTERM)
                self._leaderExited(timeout)
                # The leader is dead or hung; its pid is not reaped yet, so
                # the group id still names our group.
                self._signalGroup(signal.SIGKILL)
                self.popen.wait()
            else:
                self._signalGroup(signal.SIGKILL)
            with _registryLock:
                _registry.pop(id(self), None)
        returncode: int | None = self.popen.returncode
        return returncode


def liveProcesses() -> list[PeerProcess]:
    """
    The peers started and not yet stopped, oldest first.
    """
    with _registryLock:
        return list(_registry.values())


def stopAll() -> list[PeerProcess]:
    """
    Stop every registered peer (newest first, so front ends go before the
    applications behind them).

    @return: the peers that were still registered.
    """
    left = liveProcesses()
    for process in reversed(left):
        process.stop()
    return left


atexit.register(stopAll)


def _waitUntilAccepting(
    address: Address, processes: Iterable[PeerProcess], timeout: float = STARTUP_TIMEOUT
) -> None:
    """
    Poll until C{address} accepts a connection.

    @raise PeerStartError: if a process exits first or C{timeout} passes.
    """
    processes = list(processes)
    deadline = time.monotonic() + timeout
    while True:
        if _accepts(address):
            return
        for process in processes:
            if not process.alive():
                raise PeerStartError(
                    f"{process.name} exited with {process.popen.returncode} before "
                    f"{connectArgument(address)} accepted connections:\n{process.output()}"
                )
        if time.monotonic() >= deadline:
            raise PeerStartError(
                f"{connectArgument(address)} did not accept connections within "
                f"{timeout} s:\n" + "\n".join(p.output() for p in processes)
            )
        time.sleep(0.02)


class PeerStartError(Exception):
    """
    A peer did not come up; the message carries its output.
    """


class _Stoppable:
    """
    Context-manager support for objects with C{stop()}.
    """

    def stop(self) -> None:
        raise NotImplementedError()

    def __enter__(self) -> "_Stoppable":
        return self

    def __exit__(
        self,
        excType: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------
# FastCGI applications


class SpawnedApp(_Stoppable):
    """
    A FastCGI application (one or more processes) listening on one socket.

    @ivar address: a unix socket path, or a (host, port) tuple.
    @ivar socketPath: the unix socket path, or None for TCP.
    @ivar endpointDescription: a Twisted client endpoint string for it.
    @ivar processes: the L{PeerProcess}es.
    @ivar directory: where logs (and a default socket) live.
    """

    def __init__(
        self,
        address: Address,
        processes: list[PeerProcess],
        directory: str,
        *,
        ownDirectory: bool = False,
        ownSocket: bool = False,
    ) -> None:
        self.address = address
        self.processes = processes
        self.directory = directory
        self._ownDirectory = ownDirectory
        self._ownSocket = ownSocket
        self._finalOutput: str | None = None

    @property
    def socketPath(self) -> str | None:
        return self.address if isinstance(self.address, str) else None

    @property
    def endpointDescription(self) -> str:
        return endpointDescription(self.address)

    @property
    def connectArgument(self) -> str:
        """
        The address as cgi-fcgi C{-connect} takes it.
        """
        return connectArgument(self.address)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def alive(self) -> bool:
        """
        Whether every process is still running.
        """
        return all(process.alive() for process in self.processes)

    def output(self) -> str:
        """
        The processes' stdout and stderr (what they wrote to the log).
        """
        if self._finalOutput is not None:
            return self._finalOutput
        return "".join(process.output() for process in self.processes)

    def stop(self) -> None:
        """
        Stop every process (see L{PeerProcess.stop}), remove the socket file
        we created and the directory we created.  Idempotent.
        """
        for process in self.processes:
            process.stop()
        if self._finalOutput is None:
            self._finalOutput = "".join(process.output() for process in self.processes)
        if self._ownSocket and isinstance(self.address, str):
            try:
                os.unlink(self.address)
            except FileNotFoundError:
                pass
        if self._ownDirectory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self._ownDirectory = False

    def __enter__(self) -> "SpawnedApp":
        return self

    def __repr__(self) -> str:
        return f"<SpawnedApp {self.connectArgument} pids={self.pids}>"


def _bindListeningSocket(address: Address, backlog: int = 1024) -> socket.socket:
    if isinstance(address, str):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.unlink(address)
        except FileNotFoundError:
            pass
    else:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen(backlog)
    except BaseException:
        listener.close()
        raise
    return listener


def spawnFcgi(
    argv: Sequence[str],
    *,
    socketPath: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    children: int = 1,
    env: Mapping[str, str] | None = None,
    directory: str | None = None,
    cwd: str | None = None,
    useSpawnFcgi: bool | None = None,
) -> SpawnedApp:
    """
    Start the FastCGI application C{argv} with a listening socket on fd 0
    and wait until the socket accepts connections.

    The socket is a unix socket at C{socketPath}, or TCP on C{host}:C{port}
    when C{port} is given (C{port=0} picks a free one); with neither, a unix
    socket C{app.sock} in C{directory}.

    With C{children=1} (and C{useSpawnFcgi} not False) the application is
    started with C{spawn-fcgi -n}: spawn-fcgi binds the socket and execs the
    application, so the process we own is the application itself.
    C{spawn-fcgi -n} cannot fork several children, and without C{-n} it
    leaves them as orphans we cannot reap; so for C{children > 1} (or
    C{useSpawnFcgi=False}) the socket is bound here and handed as fd 0 to
    C{children} processes, as mod_fastcgi and txfastcgi's supervisor do.
    Either way we close our copy, so connecting fails once the children
    are gone.

    The application connects to nothing else: each probe of the socket
    while waiting is a connection that is closed without a request.

    @param env: the application's whole environment (default: ours).
    @param directory: where the log (and a default socket) go; default: a
        new temporary directory, removed by L{SpawnedApp.stop}.
    """
    if children < 1:
        raise ValueError("children must be at least 1")
    if useSpawnFcgi is None:
        useSpawnFcgi = children == 1
    if useSpawnFcgi and children != 1:
        raise ValueError("spawn-fcgi -n runs exactly one child")
    spawner = requirePeer("spawn-fcgi") if useSpawnFcgi else None
    ownDirectory = directory is None
    if directory is None:
        directory = makeDirectory("txf-app-")
    tcp = port is not None
    if not tcp and socketPath is None:
        socketPath = os.path.join(directory, "app.sock")
    if socketPath is not None:
        _checkUnixPath(socketPath)
    name = os.path.basename(argv[0])
    attempts = 3 if tcp and not port else 1
    for attempt in range(attempts):
        address: Address = (host, port or freePort(host)) if tcp else str(socketPath)
        logPath = os.path.join(directory, f"{name}.log")
        processes: list[PeerProcess] = []
        try:
            if spawner is not None:
                if isinstance(address, str):
                    where = ["-s", address]
                else:
                    where = ["-a", address[0], "-p", str(address[1])]
                processes.append(
                    PeerProcess(
                        name, [spawner, "-n", *where, "--", *argv], logPath=logPath, env=env, cwd=cwd
                    )
                )
            else:
                try:
                    listener = _bindListeningSocket(address)
                except OSError as e:
                    if e.errno == errno.EADDRINUSE and attempt + 1 < attempts:
                        continue
                    raise
                with listener:
                    for _ in range(children):
                        processes.append(
                            PeerProcess(
                                name,
                                argv,
                                logPath=logPath,
                                env=env,
                                cwd=cwd,
                                stdin=listener.fileno(),
                            )
                        )
            app = SpawnedApp(
                address, processes, directory, ownDirectory=ownDirectory, ownSocket=not tcp
            )
            _waitUntilAccepting(address, processes)
            return app
        except PeerStartError:
            for process in processes:
                process.stop()
            if attempt + 1 < attempts and "in use" in "".join(p.output() for p in processes):
                continue
            if ownDirectory:
                shutil.rmtree(directory, ignore_errors=True)
            raise
        except BaseException:
            for process in processes:
                process.stop()
            if ownDirectory:
                shutil.rmtree(directory, ignore_errors=True)
            raise
    raise AssertionError("unreachable")


def spawnResponder(
    *,
    threads: int = 1,
    socketPath: str | None = None,
    port: int | None = None,
    children: int = 1,
    directory: str | None = None,
) -> SpawnedApp:
    """
    Build the libfcgi responder and start it with L{spawnFcgi}
    (C{threads} responder threads per process).
    """
    binary = buildResponder()
    return spawnFcgi(
        [binary, "-t", str(threads)],
        socketPath=socketPath,
        port=port,
        children=children,
        directory=directory,
        env={"PATH": "/usr/bin:/bin"},
    )


def fcgiwrap(
    directory: str,
    *,
    scripts: Mapping[str, str],
    children: int = 1,
) -> SpawnedApp:
    """
    Start fcgiwrap (a FastCGI server that runs CGI scripts) under
    spawn-fcgi on C{<directory>/fcgiwrap.sock}.  C{scripts} (name → source,
    with a C{#!} line) are written executable into C{<directory>/cgi-bin};
    requests name one with C{SCRIPT_FILENAME} (see L{SpawnedApp.directory}).

    @param children: fcgiwrap's own prefork count (C{-c}).
    """
    binary = requirePeer("fcgiwrap", "fcgiwrap", "/usr/sbin/fcgiwrap")
    scriptDirectory = os.path.join(directory, "cgi-bin")
    os.makedirs(scriptDirectory, exist_ok=True)
    for name, source in scripts.items():
        path = Path(scriptDirectory, name)
        path.write_text(source)
        path.chmod(0o755)
    return spawnFcgi(
        [binary, "-c", str(children)],
        socketPath=os.path.join(directory, "fcgiwrap.sock"),
        directory=directory,
        env={"PATH": "/usr/bin:/bin"},
    )


# ---------------------------------------------------------------------------
# php-fpm


PHP_INDEX = r"""<?php
// Default txfastcgi test script.  Query string (like tests/apps/responder.c):
//   echo -> the request body; env -> sorted NAME=VALUE lines of $_SERVER;
//   size=N -> N bytes of responderPattern(); status=NNN; stderr=TEXT;
//   default -> "pid=<pid>\n".
$q = [];
parse_str($_SERVER['QUERY_STRING'] ?? '', $q);
$body = file_get_contents('php://input');
header('Content-Type: text/plain');
header('X-Pid: ' . getmypid());
header('X-Body-Length: ' . strlen($body));
if (isset($q['status'])) {
    http_response_code((int)$q['status']);
}
if (isset($q['stderr'])) {
    error_log((string)$q['stderr']);
}
if (isset($q['echo'])) {
    header('Content-Length: ' . strlen($body));
    echo $body;
} elseif (isset($q['env'])) {
    $e = [];
    foreach ($_SERVER as $k => $v) {
        if (is_string($v)) {
            $e[$k] = $v;
        }
    }
    ksort($e, SORT_STRING);
    foreach ($e as $k => $v) {
        echo "$k=$v\n";
    }
} elseif (isset($q['size'])) {
    $n = max(0, (int)$q['size']);
    $chunk = '';
    for ($i = 0; $i < 65536; $i++) {
        $chunk .= ($i % 64 == 63) ? "\n" : chr(97 + $i % 26);
    }
    header('Content-Length: ' . $n);
    for (; $n >= 65536; $n -= 65536) {
        echo $chunk;
    }
    echo substr($chunk, 0, $n);
} else {
    echo 'pid=' . getmypid() . "\n";
}
"""


class PhpFpm(SpawnedApp):
    """
    A php-fpm master and its static pool of workers, on a unix socket.

    @ivar documentRoot: where the scripts are.
    @ivar configPath: the php-fpm configuration file.
    """

    def __init__(
        self,
        documentRoot: str,
        configPath: str,
        errorLogPath: str,
        address: str,
        processes: list[PeerProcess],
        directory: str,
    ) -> None:
        super().__init__(address, processes, directory, ownSocket=True)
        self.documentRoot = documentRoot
        self.configPath = configPath
        self.errorLogPath = errorLogPath

    def scriptFilename(self, script: str = "index.php") -> str:
        """
        The C{SCRIPT_FILENAME} param php-fpm needs for C{script}.
        """
        return os.path.join(self.documentRoot, script)

    def params(self, script: str = "index.php", **extra: str) -> dict[str, str]:
        """
        A minimal CGI environment for a GET of C{script} (for L{cgiFcgi}),
        with C{extra} added.
        """
        return {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": "GET",
            "SCRIPT_FILENAME": self.scriptFilename(script),
            "SCRIPT_NAME": "/" + script,
            "REQUEST_URI": "/" + script,
            "QUERY_STRING": "",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "REMOTE_ADDR": "127.0.0.1",
            **extra,
        }

    def errorLog(self) -> str:
        """
        php-fpm's error log: master messages and worker output
        (C{catch_workers_output}).
        """
        try:
            return Path(self.errorLogPath).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __repr__(self) -> str:
        return f"<PhpFpm {self.connectArgument} master={self.pids}>"


def phpFpm(
    directory: str,
    *,
    maxRequests: int = 0,
    maxChildren: int = 2,
    scripts: Mapping[str, str] | None = None,
    extraPool: str = "",
) -> PhpFpm:
    """
    Start php-fpm in the foreground with a static pool listening on
    C{<directory>/php-fpm.sock}, and wait until it accepts.

    @param maxRequests: C{pm.max_requests} (0: never recycle workers).
    @param maxChildren: C{pm.max_children} (all started at once).
    @param scripts: file name → PHP source, written into
        C{<directory>/docroot}, next to a default C{index.php} (see
        L{PHP_INDEX}) unless C{scripts} replaces it.
    @param extraPool: more lines for the pool section.
    """
    binary = requirePhpFpm()
    documentRoot = os.path.join(directory, "docroot")
    os.makedirs(documentRoot, exist_ok=True)
    for scriptName, source in {"index.php": PHP_INDEX, **(scripts or {})}.items():
        Path(documentRoot, scriptName).write_text(source)
    socketPath = os.path.join(directory, "php-fpm.sock")
    _checkUnixPath(socketPath)
    errorLogPath = os.path.join(directory, "php-fpm.log")
    configPath = os.path.join(directory, "php-fpm.conf")
    Path(configPath).write_text(
        f"""[global]
pid = {directory}/php-fpm.pid
error_log = {errorLogPath}
log_level = notice
daemonize = no

[www]
listen = {socketPath}
listen.backlog = 1024
pm = static
pm.max_children = {maxChildren}
pm.max_requests = {maxRequests}
catch_workers_output = yes
decorate_workers_output = no
clear_env = yes
security.limit_extensions = .php
php_admin_value[error_log] = {errorLogPath}
php_admin_flag[log_errors] = on
{extraPool}
"""
    )
    argv = [binary, "-n", "-F", "-y", configPath, "-p", directory]
    if os.geteuid() == 0:
        argv.append("-R")
    process = PeerProcess("php-fpm", argv, logPath=os.path.join(directory, "php-fpm.out"))
    app = PhpFpm(
        documentRoot,
        configPath,
        errorLogPath,
        address=socketPath,
        processes=[process],
        directory=directory,
    )
    try:
        _waitUntilAccepting(socketPath, [process])
    except BaseException:
        app.stop()
        raise
    return app


# ---------------------------------------------------------------------------
# nginx


NGINX_FASTCGI_PARAMS = """\
fastcgi_param QUERY_STRING $query_string;
fastcgi_param REQUEST_METHOD $request_method;
fastcgi_param CONTENT_TYPE $content_type;
fastcgi_param CONTENT_LENGTH $content_length;
fastcgi_param SCRIPT_NAME $fastcgi_script_name;
fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
fastcgi_param REQUEST_URI $request_uri;
fastcgi_param DOCUMENT_URI $document_uri;
fastcgi_param DOCUMENT_ROOT $document_root;
fastcgi_param SERVER_PROTOCOL $server_protocol;
fastcgi_param REQUEST_SCHEME $scheme;
fastcgi_param GATEWAY_INTERFACE CGI/1.1;
fastcgi_param SERVER_SOFTWARE nginx/$nginx_version;
fastcgi_param REMOTE_ADDR $remote_addr;
fastcgi_param REMOTE_PORT $remote_port;
fastcgi_param SERVER_ADDR $server_addr;
fastcgi_param SERVER_PORT $server_port;
fastcgi_param SERVER_NAME $server_name;
"""
"""
The params nginx sends (nginx's own fastcgi_params, written out, plus
SCRIPT_FILENAME); HTTP headers are added by nginx as HTTP_*.
"""


class NginxFrontEnd(_Stoppable):
    """
    nginx, in the foreground, as an HTTP front end to a FastCGI application.

    @ivar port: its HTTP port on 127.0.0.1.
    @ivar directory: its prefix: config, logs, temp directories.
    @ivar process: the master L{PeerProcess} (workers are in its group).
    """

    def __init__(self, directory: str, port: int, process: PeerProcess) -> None:
        self.directory = directory
        self.port = port
        self.process = process

    def url(self, path: str = "/") -> str:
        """
        The http URL of C{path} (which starts with "/") on this nginx.
        """
        return f"http://127.0.0.1:{self.port}{path}"

    def alive(self) -> bool:
        return self.process.alive()

    def errorLog(self) -> str:
        """
        nginx's error log (level info).
        """
        return self._read("error.log")

    def accessLog(self) -> str:
        return self._read("access.log")

    def _read(self, name: str) -> str:
        try:
            return Path(self.directory, name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """
        Stop the master and its workers.  Idempotent.
        """
        self.process.stop()

    def __enter__(self) -> "NginxFrontEnd":
        return self

    def __repr__(self) -> str:
        return f"<NginxFrontEnd {self.url()} -> pid={self.process.pid}>"


def nginxFrontEnd(
    directory: str,
    *,
    fastcgiPass: str | Address,
    keepConn: bool = False,
    extra: str = "",
    buffering: bool = True,
    documentRoot: str | None = None,
    port: int | None = None,
) -> NginxFrontEnd:
    """
    Start nginx (C{daemon off}, one worker) listening on 127.0.0.1 and
    passing every request to a FastCGI application; wait until it accepts.

    @param fastcgiPass: C{"unix:/path"}, C{"host:port"}, a unix socket path
        or a (host, port) tuple.
    @param keepConn: set C{fastcgi_keep_conn on}, through an upstream with
        C{keepalive} connections (nginx keeps none without it).
    @param extra: directives added to the C{location /} block
        (e.g. C{"fastcgi_read_timeout 5s;"}).
    @param buffering: C{fastcgi_buffering} (response); request buffering is
        always off, so bodies stream to the application.
    @param documentRoot: C{root} (SCRIPT_FILENAME is root + script name);
        default C{directory}.
    """
    binary = requirePeer("nginx", "nginx", "/usr/sbin/nginx")
    if isinstance(fastcgiPass, tuple):
        target = connectArgument(fastcgiPass)
    elif fastcgiPass.startswith("/"):
        target = f"unix:{fastcgiPass}"
    else:
        target = fastcgiPass
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(directory, "tmp", name), exist_ok=True)
    upstream = ""
    passTo = target
    if keepConn:
        upstream = f"    upstream fastcgiBackend {{\n        server {target};\n        keepalive 8;\n    }}\n"
        passTo = "fastcgiBackend"
    params = "".join("            " + line + "\n" for line in NGINX_FASTCGI_PARAMS.splitlines())
    attempts = 1 if port else 3
    for attempt in range(attempts):
        listenPort = port or freePort()
        config = f"""\
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
{"user root;" if os.geteuid() == 0 else ""}
events {{
    worker_connections 512;
}}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/tmp/client_body;
    proxy_temp_path {directory}/tmp/proxy;
    fastcgi_temp_path {directory}/tmp/fastcgi;
    uwsgi_temp_path {directory}/tmp/uwsgi;
    scgi_temp_path {directory}/tmp/scgi;
    client_max_body_size 0;
    default_type application/octet-stream;
{upstream}
    server {{
        listen 127.0.0.1:{listenPort};
        server_name localhost;
        root {documentRoot or directory};
        location / {{
            fastcgi_pass {passTo};
            fastcgi_index index.php;
            fastcgi_keep_conn {"on" if keepConn else "off"};
            fastcgi_request_buffering off;
            fastcgi_buffering {"on" if buffering else "off"};
{params}            {extra}
        }}
    }}
}}
"""
        configPath = os.path.join(directory, "nginx.conf")
        Path(configPath).write_text(config)
        process = PeerProcess(
            "nginx",
            [
                binary,
                "-p",
                directory + "/",
                "-c",
                configPath,
                "-e",
                os.path.join(directory, "error.log"),
                "-g",
                "daemon off;",
            ],
            logPath=os.path.join(directory, "nginx.out"),
        )
        front = NginxFrontEnd(directory, listenPort, process)
        try:
            _waitUntilAccepting(("127.0.0.1", listenPort), [process])
        except PeerStartError:
            front.stop()
            if attempt + 1 < attempts and "in use" in front.errorLog() + process.output():
                continue
            raise
        except BaseException:
            front.stop()
            raise
        return front
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------
# cgi-fcgi, a libfcgi client


@dataclass(frozen=True)
class CgiResponse:
    """
    A CGI response (what a FastCGI responder writes to FCGI_STDOUT), split.

    @ivar status: from the C{Status} header, or 200.
    @ivar headers: (name, value) in order, as text.
    @ivar body: the bytes after the blank line.
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """
        The first value of header C{name} (case-insensitive), or None.
        """
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


def parseCgiResponse(raw: bytes) -> CgiResponse:
    """
    Split a CGI response into status, headers and body.

    @raise ValueError: if there is no blank line ending the headers.
    """
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, body = raw.partition(separator)
        if found:
            break
    else:
        raise ValueError(f"no end of headers in {raw[:200]!r}")
    headers: list[tuple[str, str]] = []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    response = CgiResponse(200, headers, body)
    status = response.header("Status")
    if status:
        response = CgiResponse(int(status.split()[0]), headers, body)
    return response


@dataclass(frozen=True)
class CgiFcgiResult:
    """
    What cgi-fcgi printed and returned.
    """

    stdout: bytes
    stderr: bytes
    returncode: int


def cgiFcgiRun(
    address: Address,
    env: Mapping[str, str],
    body: bytes = b"",
    timeout: float = 30,
) -> CgiFcgiResult:
    """
    Run C{cgi-fcgi -bind -connect <address>} once with exactly the
    environment C{env} (plus C{CONTENT_LENGTH} when C{body} is not empty and
    C{env} lacks it) and C{body} on its stdin.  Does not check the exit
    status.

    @raise subprocess.TimeoutExpired: after C{timeout} seconds (cgi-fcgi is
        killed).
    """
    binary = requirePeer("cgi-fcgi")
    environment = dict(env)
    if body and "CONTENT_LENGTH" not in environment:
        environment["CONTENT_LENGTH"] = str(len(body))
    result = subprocess.run(
        [binary, "-bind", "-connect", connectArgument(address)],
        input=body,
        capture_output=True,
        env=environment,
        timeout=timeout,
    )
    return CgiFcgiResult(result.stdout, result.stderr, result.returncode)


def cgiFcgi(
    address: Address | SpawnedApp,
    env: Mapping[str, str],
    body: bytes = b"",
    timeout: float = 30,
) -> bytes:
    """
    One FastCGI request through cgi-fcgi (see L{cgiFcgiRun}); returns its
    stdout, the application's whole CGI response.

    @raise CgiFcgiError: if cgi-fcgi exits with a non-zero status.
    @raise subprocess.TimeoutExpired: after C{timeout} seconds.
    """
    if isinstance(address, SpawnedApp):
        address = address.address
    result = cgiFcgiRun(address, env, body, timeout)
    if result.returncode != 0:
        raise CgiFcgiError(
            f"cgi-fcgi -connect {connectArgument(address)} exited with "
            f"{result.returncode}: {result.stderr.decode(errors='replace')}",
            result,
        )
    return result.stdout


class CgiFcgiError(Exception):
    """
    cgi-fcgi failed; C{result} holds what it printed.
    """

    def __init__(self, message: str, result: CgiFcgiResult) -> None:
        super().__init__(message)
        self.result = result


def deferCgiFcgi(
    reactor: object,
    address: Address | SpawnedApp,
    env: Mapping[str, str],
    body: bytes = b"",
    timeout: float = 30,
) -> "Deferred[bytes]":
    """
    L{cgiFcgi} in C{reactor}'s thread pool, for tests whose FastCGI
    application runs in this process's reactor (a blocking call would
    deadlock it).
    """
    from twisted.internet.threads import deferToThreadPool

    return deferToThreadPool(
        reactor,  # type: ignore[arg-type]
        reactor.getThreadPool(),  # type: ignore[attr-defined]
        cgiFcgi,
        address,
        env,
        body,
        timeout,
    )


def cgiRequest(
    address: Address | SpawnedApp,
    query: str = "",
    body: bytes = b"",
    *,
    method: str | None = None,
    extraEnv: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> CgiResponse:
    """
    A request with a small default CGI environment through cgi-fcgi,
    parsed.  C{method} defaults to POST with a body, GET without.
    """
    env = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_METHOD": method or ("POST" if body else "GET"),
        "SCRIPT_NAME": "/app",
        "REQUEST_URI": "/app" + (f"?{query}" if query else ""),
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
    }
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
        env["CONTENT_TYPE"] = "application/octet-stream"
    env.update(extraEnv or {})
    return parseCgiResponse(cgiFcgi(address, env, body, timeout))
