"""
Tests for L{txfastcgi.ipc}: the FastCgiIpcDir, socket names, listening
sockets and their hand-off to a child as fd 0.

Socket paths must fit in C{sun_path}, so sockets live in short directories
under C{/tmp} (the L{shortDir} fixture), not in pytest's C{tmp_path}.
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor

from txfastcgi import ipc
from txfastcgi.ipc import (
    IPCError,
    ListeningSocket,
    SocketNameAllocator,
    SocketRegistry,
    checkUnixSocketPath,
    createTCPListeningSocket,
    createUnixListeningSocket,
    prepareDynamicDirectory,
    prepareIpcDirectory,
    unixPathLimit,
)

NOBODY = 65534
"""A user and group id that is neither root nor ours."""

needsRoot = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to chown to another user"
)
linuxOnly = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="Linux-specific behaviour"
)


@pytest.fixture
def shortDir() -> Iterator[str]:
    """
    A fresh directory with a short path under C{/tmp}, mode 0700, removed
    afterwards.
    """
    directory = tempfile.mkdtemp(prefix="txf-", dir="/tmp")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def registry() -> Iterator[SocketRegistry]:
    """
    A registry whose sockets are all closed after the test.
    """
    sockets = SocketRegistry()
    yield sockets
    sockets.closeAll()


def modeOf(path: str) -> int:
    """
    The permission bits of C{path} (not following a final symlink).
    """
    return stat.S_IMODE(os.lstat(path).st_mode)


def staleSocket(path: str) -> None:
    """
    Leave a socket file at C{path} that nobody listens on.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


def exchange(address: str | tuple[str, int], data: bytes) -> bytes:
    """
    Connect to C{address}, send C{data}, and read the answer until EOF.
    """
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect(address)
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := client.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def connectVia(description: str) -> MemoryReactor:
    """
    Parse C{description} with Twisted's C{clientFromString} and connect the
    endpoint on a L{MemoryReactor}, which records where it would connect.
    """
    reactor = MemoryReactor()  # type: ignore[no-untyped-call]
    endpoint = clientFromString(reactor, description)  # type: ignore[no-untyped-call]
    endpoint.connect(Factory.forProtocol(Protocol))
    return reactor


def tcpAddress(listening: ListeningSocket) -> tuple[str, int]:
    """
    The C{(host, port)} of a TCP L{ListeningSocket}.
    """
    assert isinstance(listening.address, tuple)
    return listening.address


def acceptOne(listening: ListeningSocket, data: bytes) -> bytes:
    """
    Connect to C{listening}, accept the connection in this process, and
    return what the client sent.
    """
    family = socket.AF_UNIX if listening.isUnix else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect(listening.address)
        client.sendall(data)
        server, _ = listening.socket.accept()
        with server:
            server.settimeout(5)
            return server.recv(100)


# --- FastCgiIpcDir -----------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o277, 0o000])
def test_createsMissingDirectory0700(tmp_path: Any, umask: int) -> None:
    """
    A missing FastCgiIpcDir is created with mode 0700, whatever the umask.
    """
    path = str(tmp_path / "ipc")
    old = os.umask(umask)
    try:
        assert prepareIpcDirectory(path) == path
    finally:
        os.umask(old)
    assert stat.S_ISDIR(os.stat(path).st_mode)
    assert modeOf(path) == 0o700


def test_createsOnlyTheLastComponent(tmp_path: Any) -> None:
    """
    A missing parent is an error naming it, and nothing is created.
    """
    path = str(tmp_path / "missing" / "ipc")
    with pytest.raises(IPCError) as caught:
        prepareIpcDirectory(path)
    message = str(caught.value)
    assert message.startswith(f"FastCgiIpcDir {path}: ")
    assert f"parent directory {tmp_path / 'missing'} does not exist" in message
    assert caught.value.path == path
    assert not os.path.exists(tmp_path / "missing")


def test_normalisesThePath(tmp_path: Any) -> None:
    """
    Trailing slashes and C{.} components are removed from the returned path.
    """
    assert prepareIpcDirectory(f"{tmp_path}/./ipc//") == f"{tmp_path}/ipc"


def test_relativePathRefused() -> None:
    """
    FastCgiIpcDir must be absolute (the configuration resolves it).
    """
    with pytest.raises(IPCError, match="must be absolute"):
        prepareIpcDirectory("logs/fastcgi")


@needsRoot
def test_chownsANewDirectory(tmp_path: Any) -> None:
    """
    A directory created for the run-as user is given to that user.
    """
    path = str(tmp_path / "ipc")
    prepareIpcDirectory(path, uid=NOBODY, gid=NOBODY)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    assert modeOf(path) == 0o700


@pytest.mark.parametrize(
    "mode, accepted",
    [
        (0o700, True),
        (0o755, True),
        (0o750, True),
        (0o1777, True),  # /tmp
        (0o1770, True),
        (0o770, False),  # group-writable
        (0o720, False),
        (0o702, False),  # world-writable
        (0o777, False),
    ],
)
def test_writableByOthersNeedsStickyBit(
    tmp_path: Any, mode: int, accepted: bool
) -> None:
    """
    A directory group or others may write to is refused unless it has the
    sticky bit; its mode is left alone either way.
    """
    path = str(tmp_path / "ipc")
    os.mkdir(path)
    os.chmod(path, mode)
    if accepted:
        prepareIpcDirectory(path)
    else:
        with pytest.raises(IPCError) as caught:
            prepareIpcDirectory(path)
        assert f"(mode {mode:04o})" in str(caught.value)
        assert "sticky bit" in str(caught.value)
        assert "chmod go-w" in str(caught.value)
    assert modeOf(path) == mode


def test_realTmpIsAccepted() -> None:
    """
    C{/tmp} (root, 1777), the seed's default, is accepted as it is.
    """
    st = os.stat("/tmp")
    if st.st_uid != 0 or stat.S_IMODE(st.st_mode) != 0o1777:
        pytest.skip("/tmp is not root-owned 1777 here")
    assert prepareIpcDirectory("/tmp") == "/tmp"
    assert prepareIpcDirectory("/tmp", uid=NOBODY, gid=NOBODY) == "/tmp"


def test_notADirectory(tmp_path: Any) -> None:
    """
    A file at the FastCgiIpcDir path is refused and left alone.
    """
    path = tmp_path / "ipc"
    path.write_text("x")
    with pytest.raises(IPCError, match="exists but is not a directory"):
        prepareIpcDirectory(str(path))
    assert path.read_text() == "x"
    with pytest.raises(IPCError, match="a component of the path is not a directory"):
        prepareIpcDirectory(str(path / "sub"))


def test_symlinkToADirectoryIsFollowed(tmp_path: Any) -> None:
    """
    A symbolic link to an acceptable directory is accepted (as for a
    C{/tmp} that is a link); the checks apply to the target.
    """
    os.mkdir(tmp_path / "real", 0o700)
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert prepareIpcDirectory(str(tmp_path / "link")) == str(tmp_path / "link")
    os.chmod(tmp_path / "real", 0o777)
    with pytest.raises(IPCError, match="sticky"):
        prepareIpcDirectory(str(tmp_path / "link"))


@needsRoot
def test_ownedByAnotherUser(tmp_path: Any) -> None:
    """
    A directory owned by a user other than root, the server's and the
    run-as user is refused; owned by the run-as user it is accepted.
    """
    path = str(tmp_path / "ipc")
    os.mkdir(path, 0o700)
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(IPCError) as caught:
        prepareIpcDirectory(path)
    assert f"is owned by user {NOBODY}" in str(caught.value)
    assert prepareIpcDirectory(path, uid=NOBODY, gid=NOBODY) == path


@needsRoot
@pytest.mark.parametrize(
    "mode, owner, group, refusal",
    [
        (0o700, 0, 0, "needs read, write and search"),  # root's private one
        (0o755, 0, 0, "needs read, write and search"),  # cannot write
        (0o770, 0, NOBODY, "sticky"),  # group-writable: refused anyway
        (0o1770, 0, NOBODY, None),  # via the group, sticky
        (0o1777, 0, 0, None),  # /tmp-like
        (0o700, NOBODY, 0, None),  # the run-as user's own
    ],
)
def test_runAsUserNeedsAccess(
    tmp_path: Any, mode: int, owner: int, group: int, refusal: str | None
) -> None:
    """
    The run-as user must be able to read, write and search the directory
    (it removes its sockets at shutdown, after privileges are dropped).
    """
    path = str(tmp_path / "ipc")
    os.mkdir(path)
    os.chown(path, owner, group)
    os.chmod(path, mode)
    if refusal is None:
        prepareIpcDirectory(path, uid=NOBODY, gid=NOBODY)
        return
    with pytest.raises(IPCError) as caught:
        prepareIpcDirectory(path, uid=NOBODY, gid=NOBODY)
    message = str(caught.value)
    assert refusal in message
    if refusal.startswith("needs"):
        nobody = pwd.getpwuid(NOBODY).pw_name
        root = pwd.getpwuid(0).pw_name
        assert message == (
            f"FastCgiIpcDir {path}: user {NOBODY} ({nobody}) needs read, write "
            f"and search permission on it (mode {mode:04o}, owned by user 0 "
            f"({root})); chown it to that user, or choose another FastCgiIpcDir"
        )


# --- dynamic/ ----------------------------------------------------------------


def test_dynamicDirectoryCreated(tmp_path: Any) -> None:
    """
    C{dynamic/} is created inside the IPC directory with mode 0700.
    """
    ipcDir = prepareIpcDirectory(str(tmp_path / "ipc"))
    path = prepareDynamicDirectory(ipcDir)
    assert path == os.path.join(ipcDir, "dynamic")
    assert modeOf(path) == 0o700


@needsRoot
def test_dynamicDirectoryChowned(tmp_path: Any) -> None:
    """
    A new C{dynamic/} is given to the run-as user.
    """
    path = prepareDynamicDirectory(str(tmp_path), uid=NOBODY, gid=NOBODY)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)


def test_dynamicDirectoryWiped(shortDir: str) -> None:
    """
    Everything inside an existing C{dynamic/} is deleted (files, sockets,
    subdirectories, links), but not what a link inside points to.
    """
    dynamic = os.path.join(shortDir, "dynamic")
    os.mkdir(dynamic, 0o700)
    outside = os.path.join(shortDir, "outside")
    os.mkdir(outside)
    with open(os.path.join(outside, "keep"), "w") as f:
        f.write("keep")
    with open(os.path.join(dynamic, "mbox"), "w") as f:
        f.write("old")
    staleSocket(os.path.join(dynamic, "0123abcd"))
    os.makedirs(os.path.join(dynamic, "sub", "deeper"))
    os.symlink(outside, os.path.join(dynamic, "link"))
    assert prepareDynamicDirectory(shortDir) == dynamic
    assert os.listdir(dynamic) == []
    assert os.listdir(outside) == ["keep"]


def test_dynamicSymlinkRefused(tmp_path: Any) -> None:
    """
    A C{dynamic} that is a symbolic link is refused: wiping it would delete
    whatever it points to.
    """
    os.mkdir(tmp_path / "elsewhere", 0o700)
    (tmp_path / "elsewhere" / "precious").write_text("x")
    os.symlink(tmp_path / "elsewhere", tmp_path / "dynamic")
    with pytest.raises(IPCError, match="is a symbolic link"):
        prepareDynamicDirectory(str(tmp_path))
    assert (tmp_path / "elsewhere" / "precious").read_text() == "x"


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: p.write_text("x"), "not a directory"),
        (lambda p: (p.mkdir(), p.chmod(0o777)), "sticky"),
    ],
)
def test_dynamicDirectoryRules(tmp_path: Any, make: Any, match: str) -> None:
    """
    An existing C{dynamic} follows the FastCgiIpcDir rules.
    """
    make(tmp_path / "dynamic")
    with pytest.raises(IPCError, match=match):
        prepareDynamicDirectory(str(tmp_path))


def test_dynamicLeftoverThatCannotBeRemoved(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A leftover in C{dynamic/} that cannot be removed is an error naming it.
    """
    dynamic = tmp_path / "dynamic"
    dynamic.mkdir(mode=0o700)
    (dynamic / "mbox").write_text("old")

    def unlink(p: str) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted", p)

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(IPCError) as caught:
        prepareDynamicDirectory(str(tmp_path))
    assert caught.value.path == str(dynamic / "mbox")
    assert str(caught.value).endswith(
        f"cannot remove the leftover {dynamic / 'mbox'}: Operation not permitted; "
        "remove it by hand"
    )


# --- names ---------------------------------------------------------------------


def test_generatedNames() -> None:
    """
    Generated names are C{OM_WS_<n>.<pid>} in the IPC directory, C{n}
    counting generated names only, from 0, in the order asked.
    """
    names = SocketNameAllocator("/var/run/fcgi/", pid=4242)
    assert names.resolve(None) == "/var/run/fcgi/OM_WS_0.4242"
    assert names.resolve("echo.sock") == "/var/run/fcgi/echo.sock"
    assert names.resolve("/srv/app.sock") == "/srv/app.sock"
    assert names.generate() == "/var/run/fcgi/OM_WS_1.4242"
    assert names.resolve(None) == "/var/run/fcgi/OM_WS_2.4242"


def test_defaultPidIsOurs() -> None:
    """
    Without a pid the allocator uses the current process's.
    """
    assert SocketNameAllocator("/tmp").generate() == f"/tmp/OM_WS_0.{os.getpid()}"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("a", "/ipc/a"),
        ("sub/a", "/ipc/sub/a"),
        ("./a", "/ipc/a"),
        ("sub/../a", "/ipc/a"),
        ("/abs//x/../y", "/abs/y"),
        ("/ipc/../elsewhere", "/elsewhere"),
    ],
)
def test_resolve(name: str, expected: str) -> None:
    """
    A relative C{-socket} lives in the IPC directory, an absolute one is used
    as given (SPEC.md Decision 3); both are normalised.
    """
    assert SocketNameAllocator("/ipc", pid=1).resolve(name) == expected


@pytest.mark.parametrize("name", ["../a", "sub/../../a", ".", "", "a\0b"])
def test_resolveRefused(name: str) -> None:
    """
    A relative name may not leave the IPC directory or be it, and empty or
    NUL-containing names are refused.
    """
    with pytest.raises(IPCError):
        SocketNameAllocator("/ipc", pid=1).resolve(name)


def test_relativeIpcDirRefused() -> None:
    """
    The allocator needs an absolute IPC directory.
    """
    with pytest.raises(IPCError, match="must be absolute"):
        SocketNameAllocator("ipc", pid=1)


def test_generatedNameTooLong() -> None:
    """
    A generated name in an IPC directory too deep for C{sun_path} is a
    configuration error, and the counter does not move.
    """
    deep = "/" + "d" * 110
    names = SocketNameAllocator(deep, pid=123)
    with pytest.raises(IPCError, match="bytes long"):
        names.generate()
    with pytest.raises(IPCError, match="bytes long"):
        names.resolve("x")
    shallow = SocketNameAllocator("/" + "d" * 80, pid=123)
    assert shallow.generate().endswith("/OM_WS_0.123")


# --- path length ---------------------------------------------------------------


@linuxOnly
def test_unixPathLimitOnLinux() -> None:
    """
    On Linux C{sun_path} has 108 bytes, so a path may have 107 plus the NUL.
    """
    assert unixPathLimit() == 107


def pathOfLength(directory: str, length: int) -> str:
    """
    A path in C{directory} exactly C{length} bytes long.
    """
    stem = directory + "/"
    return stem + "s" * (length - len(stem))


def test_longestPathWorks(shortDir: str, registry: SocketRegistry) -> None:
    """
    A path of exactly the limit passes the check and can really be bound.
    """
    path = pathOfLength(shortDir, unixPathLimit())
    checkUnixSocketPath(path)
    listening = registry.openUnix(path, backlog=5)
    assert acceptOne(listening, b"hi") == b"hi"


def test_pathOneByteTooLong(shortDir: str) -> None:
    """
    One byte more is an error naming the path, its length and the limit,
    raised before anything is touched.
    """
    limit = unixPathLimit()
    path = pathOfLength(shortDir, limit + 1)
    with pytest.raises(IPCError) as caught:
        createUnixListeningSocket(path, backlog=5)
    message = str(caught.value)
    assert message.startswith(f"socket path {path} is {limit + 1} bytes long")
    assert f"at most {limit} bytes" in message
    assert "shorter FastCgiIpcDir or -socket" in message
    assert caught.value.path == path
    assert os.listdir(shortDir) == []


def test_pathLengthCountsBytes(shortDir: str) -> None:
    """
    The limit is in bytes of the encoded path, not characters.
    """
    limit = unixPathLimit()
    path = pathOfLength(shortDir, limit - 1) + "\u00e9"  # two bytes in UTF-8
    assert len(path) == limit
    with pytest.raises(IPCError, match=f"is {limit + 1} bytes long"):
        checkUnixSocketPath(path)


@pytest.mark.parametrize("path", ["relative.sock", "/tmp/a\0b"])
def test_badSocketPaths(path: str) -> None:
    """
    Socket paths must be absolute and free of NUL.
    """
    with pytest.raises(IPCError):
        checkUnixSocketPath(path)


# --- Unix sockets ------------------------------------------------------------


def test_unixSocketCreated(shortDir: str, registry: SocketRegistry) -> None:
    """
    The socket file is a socket with mode 0600, listening, blocking and not
    inheritable (close-on-exec), and its address is the path.
    """
    path = os.path.join(shortDir, "app.sock")
    listening = registry.openUnix(path, backlog=5)
    assert listening.address == path
    assert listening.isUnix
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert modeOf(path) == 0o600
    assert listening.socket.getblocking()
    assert not os.get_inheritable(listening.fileno())
    assert acceptOne(listening, b"hello") == b"hello"


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_noWorldConnectableWindow(
    shortDir: str, monkeypatch: pytest.MonkeyPatch, umask: int
) -> None:
    """
    The socket file exists with mode 0600 from the moment it is bound, even
    when a wider mode is asked for later and whatever the process umask;
    the umask is restored afterwards.
    """
    path = os.path.join(shortDir, "app.sock")
    seen = []
    originalBind = socket.socket.bind

    def bind(self: socket.socket, address: Any) -> None:
        originalBind(self, address)
        if address == path:
            seen.append(modeOf(path))

    monkeypatch.setattr(socket.socket, "bind", bind)
    old = os.umask(umask)
    try:
        listening = createUnixListeningSocket(path, backlog=5, mode=0o660)
        assert os.umask(umask) == umask
    finally:
        os.umask(old)
    try:
        assert seen == [0o600]
        assert modeOf(path) == 0o660
    finally:
        listening.close()


@needsRoot
def test_unixSocketChowned(shortDir: str, registry: SocketRegistry) -> None:
    """
    The socket file is given to the run-as user and group.
    """
    path = os.path.join(shortDir, "app.sock")
    registry.openUnix(path, backlog=5, uid=NOBODY, gid=NOBODY)
    st = os.lstat(path)
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    assert modeOf(path) == 0o600


@linuxOnly
def test_unixBacklog(shortDir: str, registry: SocketRegistry) -> None:
    """
    C{listen()} gets the backlog: with nobody accepting, the first
    C{backlog} connections queue and a few more are refused (Linux queues
    one more than the backlog).
    """
    listening = registry.openUnix(os.path.join(shortDir, "q.sock"), backlog=2)
    outcomes = []
    clients = []
    try:
        for _ in range(5):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            clients.append(client)
            client.setblocking(False)
            try:
                client.connect(listening.address)
            except BlockingIOError:
                outcomes.append(False)
            else:
                outcomes.append(True)
    finally:
        for client in clients:
            client.close()
    assert outcomes[:2] == [True, True]
    assert outcomes[-1] is False


def test_staleSocketReplaced(shortDir: str, registry: SocketRegistry) -> None:
    """
    A socket file nobody listens on is replaced by a new socket.
    """
    path = os.path.join(shortDir, "app.sock")
    staleSocket(path)
    listening = registry.openUnix(path, backlog=5)
    assert acceptOne(listening, b"new") == b"new"
    assert modeOf(path) == 0o600


def makeRegularFile(path: str) -> None:
    """
    Put a regular file at C{path}.
    """
    with open(path, "w") as f:
        f.write("precious")


def makeSymlinkToStaleSocket(path: str) -> None:
    """
    Put at C{path} a symbolic link to a stale socket.
    """
    staleSocket(path + ".target")
    os.symlink(path + ".target", path)


@pytest.mark.parametrize(
    "make, kind",
    [
        (makeRegularFile, "a regular file"),
        (os.mkdir, "a directory"),
        (os.mkfifo, "a FIFO"),
        (makeSymlinkToStaleSocket, "a symbolic link"),
    ],
)
def test_notASocketIsLeftAlone(shortDir: str, make: Any, kind: str) -> None:
    """
    Anything but a socket at the path is refused and not removed.
    """
    path = os.path.join(shortDir, "app.sock")
    make(path)
    before = os.lstat(path)
    with pytest.raises(IPCError) as caught:
        createUnixListeningSocket(path, backlog=5)
    message = str(caught.value)
    assert message.startswith(f"socket {path}: {kind} is in the way")
    assert "left alone" in message
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)


def test_liveSocketNotStolen(shortDir: str, registry: SocketRegistry) -> None:
    """
    A socket another process listens on is refused, left in place, and its
    listener keeps working.
    """
    path = os.path.join(shortDir, "app.sock")
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        other.bind(path)
        other.listen(5)
        with pytest.raises(IPCError) as caught:
            createUnixListeningSocket(path, backlog=5)
        assert "another process is listening on it" in str(caught.value)
        assert "stop that process, or choose another -socket" in str(caught.value)
        # The probe's connection is in the queue; the listener still works.
        probe, _ = other.accept()
        probe.close()
        listening = registry.add(ListeningSocket(other, path))
        assert acceptOne(listening, b"still") == b"still"
    except BaseException:
        other.close()
        raise


@linuxOnly
def test_busySocketNotStolen(shortDir: str) -> None:
    """
    A live socket whose queue is full (connect would block) is refused too.
    """
    path = os.path.join(shortDir, "app.sock")
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    clients = []
    try:
        other.bind(path)
        other.listen(0)
        while True:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            clients.append(client)
            client.setblocking(False)
            try:
                client.connect(path)
            except BlockingIOError:
                break
        with pytest.raises(IPCError, match="its queue is full"):
            createUnixListeningSocket(path, backlog=5)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        for client in clients:
            client.close()
        other.close()


def test_missingParentDirectory(shortDir: str) -> None:
    """
    A socket in a directory that does not exist cannot be bound: the error
    says so.
    """
    path = os.path.join(shortDir, "nope", "app.sock")
    with pytest.raises(IPCError, match=r"cannot bind: No such file or directory"):
        createUnixListeningSocket(path, backlog=5)


@pytest.mark.parametrize("backlog", [0, -1, True, 2.5])
def test_badBacklog(shortDir: str, backlog: Any) -> None:
    """
    The backlog must be a positive integer (the configuration checks the
    range; this is a caller bug).
    """
    with pytest.raises(ValueError, match="backlog"):
        createUnixListeningSocket(os.path.join(shortDir, "s"), backlog=backlog)
    with pytest.raises(ValueError, match="backlog"):
        createTCPListeningSocket(0, backlog=backlog)


def test_badMode(shortDir: str) -> None:
    """
    Only permission bits may be asked for.
    """
    with pytest.raises(ValueError, match="mode"):
        createUnixListeningSocket(os.path.join(shortDir, "s"), backlog=1, mode=0o4700)


def test_closeUnlinks(shortDir: str) -> None:
    """
    Closing removes the socket file and closes the descriptor; closing again
    does nothing; the descriptor is no longer offered.
    """
    path = os.path.join(shortDir, "app.sock")
    listening = createUnixListeningSocket(path, backlog=5)
    fd = listening.fileno()
    listening.close()
    assert listening.closed
    assert not os.path.lexists(path)
    with pytest.raises(OSError):
        os.fstat(fd)
    listening.close()
    with pytest.raises(ValueError, match="closed"):
        listening.fileno()
    assert repr(listening) == f"<ListeningSocket unix:path={path} closed>"


def test_closeLeavesAReplacement(shortDir: str) -> None:
    """
    If the path was replaced since (another server took it over), closing
    leaves the new file alone.
    """
    path = os.path.join(shortDir, "app.sock")
    listening = createUnixListeningSocket(path, backlog=5)
    os.unlink(path)
    makeRegularFile(path)
    listening.close()
    with open(path) as f:
        assert f.read() == "precious"


def test_closeAlreadyRemoved(shortDir: str) -> None:
    """
    A socket file someone already removed is not an error at close.
    """
    path = os.path.join(shortDir, "app.sock")
    listening = createUnixListeningSocket(path, backlog=5)
    os.unlink(path)
    listening.close()
    assert listening.closed


def test_closeUnlinkFailure(shortDir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A file that cannot be removed is reported with its path; the socket is
    closed anyway.
    """
    path = os.path.join(shortDir, "app.sock")
    listening = createUnixListeningSocket(path, backlog=5)

    def unlink(p: str) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", p)

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(IPCError) as caught:
        listening.close()
    assert str(caught.value) == (
        f"socket {path}: cannot remove it at shutdown: Permission denied; "
        "remove it by hand"
    )
    assert listening.socket.fileno() == -1
    monkeypatch.undo()
    os.unlink(path)


# --- TCP ---------------------------------------------------------------------


def test_tcpDefaultsToLoopback(registry: SocketRegistry) -> None:
    """
    Without a host the socket binds 127.0.0.1 (not all interfaces), with
    SO_REUSEADDR, blocking and close-on-exec, and accepts connections.
    """
    listening = registry.openTCP(0, backlog=5)
    host, port = tcpAddress(listening)
    assert host == "127.0.0.1"
    assert port > 0
    assert not listening.isUnix
    sock = listening.socket
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    assert sock.getblocking()
    assert not os.get_inheritable(sock.fileno())
    assert acceptOne(listening, b"tcp") == b"tcp"


@linuxOnly
@pytest.mark.parametrize("backlog", [1, 5, 100])
def test_tcpBacklog(registry: SocketRegistry, backlog: int) -> None:
    """
    C{listen()} gets the backlog (Linux reports a listening socket's
    maximum queue in C{TCP_INFO.tcpi_sacked}).
    """
    listening = registry.openTCP(0, backlog=backlog)
    info = listening.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    assert struct.unpack_from("=I", info, 28)[0] == backlog


def test_tcpPortInUse(registry: SocketRegistry) -> None:
    """
    A port another socket listens on is refused with advice, despite
    SO_REUSEADDR.
    """
    first = registry.openTCP(0, backlog=5)
    port = tcpAddress(first)[1]
    with pytest.raises(IPCError) as caught:
        createTCPListeningSocket(port, backlog=5)
    assert str(caught.value).startswith(f"TCP 127.0.0.1:{port}: cannot listen: ")
    assert "another process is using the port" in str(caught.value)


@pytest.mark.parametrize(
    "host", ["localhost", "example.invalid", "1.2.3.4.5", "::1::2"]
)
def test_tcpHostMustBeNumeric(host: str) -> None:
    """
    The host is a numeric address: names are not resolved.
    """
    with pytest.raises(IPCError, match="is not a numeric IP address"):
        createTCPListeningSocket(0, host=host, backlog=5)


@pytest.mark.parametrize("port", [-1, 65536, True])
def test_tcpPortRange(port: Any) -> None:
    """
    Ports outside 0..65535 are refused.
    """
    with pytest.raises(IPCError, match="from 1 to 65535"):
        createTCPListeningSocket(port, backlog=5)


def test_tcpOtherAddress(registry: SocketRegistry) -> None:
    """
    Configuration may ask for another address; all interfaces are reached
    through loopback in the endpoint description.
    """
    listening = registry.openTCP(0, host="0.0.0.0", backlog=5)
    port = tcpAddress(listening)[1]
    assert listening.address == ("0.0.0.0", port)
    assert listening.endpointDescription == f"tcp:host=127.0.0.1:port={port}"
    assert exchangeWith(listening, b"any") == b"any"


def exchangeWith(listening: ListeningSocket, data: bytes) -> bytes:
    """
    L{acceptOne} through the address in the endpoint description.
    """
    reactor = connectVia(listening.endpointDescription)
    host, port = reactor.tcpClients[0][:2]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect((host, port))
        client.sendall(data)
        server, _ = listening.socket.accept()
        with server:
            return server.recv(100)


def test_tcpIPv6(registry: SocketRegistry) -> None:
    """
    An IPv6 loopback address works, and is escaped in the description.
    """
    try:
        listening = registry.openTCP(0, host="::1", backlog=5)
    except IPCError as e:
        pytest.skip(f"no IPv6 loopback: {e}")
    port = tcpAddress(listening)[1]
    assert listening.address == ("::1", port)
    assert listening.endpointDescription == f"tcp:host=\\:\\:1:port={port}"
    reactor = connectVia(listening.endpointDescription)
    assert reactor.tcpClients[0][:2] == ("::1", port)


def test_tcpCloseHasNoFile(registry: SocketRegistry) -> None:
    """
    Closing a TCP socket closes it (there is no file to remove).
    """
    listening = createTCPListeningSocket(0, backlog=5)
    listening.close()
    assert listening.closed
    assert listening.socket.fileno() == -1


# --- endpoint descriptions -------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["app.sock", "a:b.sock", "a=b.sock", "back\\slash", "sp ace,x"]
)
def test_unixEndpointDescription(
    shortDir: str, registry: SocketRegistry, name: str
) -> None:
    """
    The endpoint description of a Unix socket, parsed by Twisted's
    C{clientFromString}, connects to exactly its path, however odd.
    """
    path = os.path.join(shortDir, name)
    listening = registry.openUnix(path, backlog=5)
    reactor = connectVia(listening.endpointDescription)
    assert reactor.unixClients[0][0] == path


# --- registry ------------------------------------------------------------------


def test_registryClosesEverything(shortDir: str) -> None:
    """
    L{SocketRegistry.closeAll} closes every socket and removes every file.
    """
    sockets = SocketRegistry()
    paths = [os.path.join(shortDir, f"s{i}") for i in range(3)]
    opened = [sockets.openUnix(p, backlog=5) for p in paths]
    opened.append(sockets.openTCP(0, backlog=5))
    assert len(sockets) == 4
    assert list(sockets) == opened
    assert sockets.closeAll() == []
    assert len(sockets) == 0
    assert all(s.closed for s in opened)
    assert os.listdir(shortDir) == []


def test_registryRefusesDuplicates(shortDir: str, registry: SocketRegistry) -> None:
    """
    Two classes cannot share a Unix path or a TCP address; the message says
    so (not "another process").
    """
    path = os.path.join(shortDir, "same")
    registry.openUnix(path, backlog=5)
    with pytest.raises(IPCError, match="two AppClasses use the same socket"):
        registry.openUnix(shortDir + "/./same", backlog=5)
    port = tcpAddress(registry.openTCP(0, backlog=5))[1]
    with pytest.raises(IPCError, match="two AppClasses use the same socket"):
        registry.openTCP(port, backlog=5)
    assert len(registry) == 2


def test_registryCloseAllContinuesAfterAnError(
    shortDir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    One socket whose file cannot be removed does not stop the others; the
    error is returned for logging.
    """
    sockets = SocketRegistry()
    bad = sockets.openUnix(os.path.join(shortDir, "bad"), backlog=5)
    good = sockets.openUnix(os.path.join(shortDir, "good"), backlog=5)
    realUnlink = os.unlink

    def unlink(p: str) -> None:
        if p == bad.address:
            raise PermissionError(errno.EPERM, "Operation not permitted", p)
        realUnlink(p)

    monkeypatch.setattr(os, "unlink", unlink)
    errors = sockets.closeAll()
    assert [e.path for e in errors] == [bad.address]
    assert bad.closed and good.closed
    assert not os.path.lexists(str(good.address))


# --- hand-off to a child as fd 0 ---------------------------------------------

CHILD = textwrap.dedent(
    """
    import errno, os, socket
    listener = socket.socket(fileno=0)
    try:
        listener.getpeername()
        fcgi = False
    except OSError as e:
        fcgi = e.errno == errno.ENOTCONN
    blocking = os.get_blocking(0)
    connection, _ = listener.accept()
    data = b""
    while chunk := connection.recv(100):
        data += chunk
    connection.sendall(
        b"%s from %d fcgi=%r blocking=%r"
        % (data, os.getpid(), fcgi, blocking)
    )
    connection.close()
    """
)


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_childAcceptsOnFdZero(
    shortDir: str, registry: SocketRegistry, kind: str
) -> None:
    """
    A child given the listening socket as its stdin (what C{spawnProcess}'s
    C{childFDs={0: fd}} does) accepts on fd 0 and answers; it sees a
    blocking, unconnected socket (FastCGI mode), although the parent's
    descriptor is close-on-exec.
    """
    if kind == "unix":
        listening = registry.openUnix(os.path.join(shortDir, "app"), backlog=5)
    else:
        listening = registry.openTCP(0, backlog=5)
    assert not os.get_inheritable(listening.fileno())
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=listening.fileno(),
        env={},
        cwd="/",
    )
    try:
        answer = exchange(listening.address, b"ping")
        assert child.wait(timeout=10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert answer == b"ping from %d fcgi=True blocking=True" % child.pid
    # The parent's socket is still usable for the next child.
    assert acceptOne(listening, b"again") == b"again"


SPAWNER = textwrap.dedent(
    """
    import os, socket, sys
    spawned = []
    realSpawn = os.posix_spawnp

    def posix_spawnp(*args, **kwargs):
        spawned.append(True)
        return realSpawn(*args, **kwargs)

    os.posix_spawnp = posix_spawnp
    from twisted.internet import reactor
    from twisted.internet.protocol import ProcessProtocol
    from txfastcgi.ipc import createUnixListeningSocket

    path, how, child = sys.argv[1:]
    listening = createUnixListeningSocket(path, backlog=5)
    ended = []

    class Watch(ProcessProtocol):
        def processEnded(self, reason):
            ended.append(reason.value.exitCode)
            reactor.stop()

    reactor.spawnProcess(
        Watch(), sys.executable, [sys.executable, "-c", child], env={},
        path="/" if how == "fork" else None,
        childFDs={0: listening.fileno(), 1: 1, 2: 2},
    )
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(5)
        client.connect(path)
        client.sendall(b"ping")
        client.shutdown(socket.SHUT_WR)
        answer = client.recv(200)
    reactor.callLater(10, reactor.stop)
    reactor.run()
    listening.close()
    words = answer.split(b" ")
    del words[1:3]  # "from <pid>"
    sys.stdout.write(repr((b" ".join(words), ended, bool(spawned))))
    """
)


@pytest.mark.parametrize("how", ["fork", "posix_spawn"])
def test_twistedSpawnProcessHandOff(shortDir: str, how: str) -> None:
    """
    In a separate interpreter, Twisted's C{spawnProcess} with
    C{childFDs={0: listening.fileno()}} hands the close-on-exec socket to
    the child as fd 0, both on its fork path (a working directory is given)
    and on its C{posix_spawnp} path (none is).
    """
    path = os.path.join(shortDir, "twisted")
    result = subprocess.run(
        [sys.executable, "-c", SPAWNER, path, how, CHILD],
        capture_output=True,
        timeout=30,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(ipc.__file__))),
    )
    assert result.returncode == 0, result.stderr.decode()
    usedSpawn = how == "posix_spawn"
    expected = f"(b'ping fcgi=True blocking=True', [0], {usedSpawn})"
    assert result.stdout.decode() == expected
    assert not os.path.lexists(path)


def test_moduleImportsNoReactor() -> None:
    """
    L{txfastcgi.ipc} uses nothing from C{twisted.internet}.
    """
    code = (
        "import sys, txfastcgi.ipc\n"
        "bad = [m for m in sys.modules if m.startswith('twisted.internet')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert ipc.__all__
