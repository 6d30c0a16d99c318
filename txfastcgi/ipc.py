# -*- test-case-name: tests.test_ipc -*-
"""
Listening sockets for managed applications (AppClass): the FastCgiIpcDir,
socket names, Unix and TCP listening sockets, and their removal at shutdown.

No processes and no reactor here: plain C{socket} and C{os} calls, run by
the supervisor while it can still act as root (C{privilegedStartService},
before C{twistd --uid/--gid} drops privileges), so that sockets can be
C{chown}ed to the run-as user as mod_fastcgi did (SPEC.md section 1.3).

Rules (SPEC.md Decisions 3 and 4, sections 1.3, 3 and 9.14)
==========================================================

  - B{FastCgiIpcDir} (L{prepareIpcDirectory}) must be an absolute path.  A
    missing directory is created with mode 0700 and C{chown}ed to the
    run-as user; only the last component is created (as mod_fastcgi HEAD
    did): a missing parent is an error, so a typo fails loudly instead of
    growing a tree of directories with guessed owners and modes.  An
    existing directory is refused if it is not a directory, if it is owned
    by a user other than root, the server's user and the run-as user
    (that user could replace our sockets), if group or others may write to
    it without the sticky bit (C{/tmp}, mode 1777, is fine), or if the
    run-as user lacks read, write and search permission on it (it removes
    the sockets at shutdown).  Symbolic links to the directory are
    followed; the checks apply to the directory itself.
  - B{dynamic/} (L{prepareDynamicDirectory}): created with mode 0700 (2.0
    used 0744; nobody else needs to list it) or, if it exists, checked
    like the IPC directory (and refused if it is a symbolic link), then
    emptied, as mod_fastcgi 2.0 did at every start.
  - B{Names} (L{SocketNameAllocator}, Decision 3): a generated name is
    C{OM_WS_<n>.<pid>} inside the IPC directory, C{n} counting generated
    names from 0 in configuration order and C{pid} being the server's; a
    relative C{-socket} name lives in the IPC directory (it may not climb
    out of it with C{..}); an absolute one is used as given.
  - B{Length}: a Unix socket path must fit in C{sun_path} with its
    terminating NUL (107 bytes on Linux, 103 on the BSDs); the limit is
    measured once at run time (L{unixPathLimit}) and a longer path is an
    L{IPCError} naming the path and its length (L{checkUnixSocketPath}),
    which the configuration parser can report at the directive's line.
  - B{Unix sockets} (L{createUnixListeningSocket}): a stale socket file at
    the path is replaced, but only a socket: a regular file, directory,
    symbolic link or FIFO there is refused, never unlinked.  A socket some
    live process still listens on (a connect attempt succeeds or finds the
    queue full) is refused too rather than stolen.  The socket is bound
    under umask 0177, so it is created 0600 and is never connectable by
    others, then C{chmod}ed to the requested mode, C{chown}ed to the run-as
    user (who must be able to connect: connecting needs write permission
    on the socket) and put in listening state.  The umask is process-wide:
    create sockets from the reactor thread at start-up, not while other
    threads create files.
  - B{TCP sockets} (L{createTCPListeningSocket}) bind 127.0.0.1 by default,
    not all interfaces as mod_fastcgi did: see that function.
  - B{Shutdown}: L{ListeningSocket.close} closes the socket and unlinks its
    file if the file at the path is still the one we created (same device
    and inode); L{SocketRegistry.closeAll} does it for every socket.

Handing a socket to an application (FCGI_LISTENSOCK_FILENO)
==========================================================

A FastCGI application accepts connections on file descriptor 0.  The
supervisor passes the listening socket with Twisted's C{spawnProcess}::

    reactor.spawnProcess(
        protocol, path, [path], env=initialEnv, path=workingDirectory,
        childFDs={0: listening.fileno(), 1: "r", 2: "r"},
    )

Twisted's child setup (the fork path, and the C{posix_spawnp} path used when
no uid/gid/cwd change is needed) C{dup2}s the descriptor onto fd 0 of the
child, which clears close-on-exec on the copy.  So the parent's descriptor
stays close-on-exec (Python's default), which keeps it out of every other
program the server runs (CGI scripts, helpers) - do not make it
inheritable.  Keep it in blocking mode: C{O_NONBLOCK} belongs to the open
file description shared by the parent and every child, and libfcgi's
C{accept()} on a non-blocking fd 0 fails with C{EAGAIN}.  Never call
C{settimeout} or C{setblocking(False)} on it, and do not hand it to the
reactor.  The application recognises FastCGI mode because
C{getpeername(0)} fails with C{ENOTCONN}.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import socket
import stat
from collections.abc import Iterator

__all__ = [
    "IPCError",
    "ListeningSocket",
    "SocketNameAllocator",
    "SocketRegistry",
    "checkUnixSocketPath",
    "createTCPListeningSocket",
    "createUnixListeningSocket",
    "prepareDynamicDirectory",
    "prepareIpcDirectory",
    "unixPathLimit",
]

_STALE_PROBE_TIMEOUT = 1.0
"""Seconds a connect attempt to an existing socket file may take."""

_FALLBACK_PATH_LIMIT = 107
"""The Linux limit, if measuring L{unixPathLimit} fails."""


class IPCError(Exception):
    """
    A listening socket or the IPC directory cannot be set up.  The message
    names the path, says what is wrong and what to do about it.

    @ivar path: the file system path or address concerned.
    """

    def __init__(self, message: str, path: str) -> None:
        """
        @param message: the whole message, for an operator.
        @param path: the file system path or address concerned.
        """
        super().__init__(message)
        self.path = path


# --- paths -------------------------------------------------------------------


@functools.cache
def unixPathLimit() -> int:
    """
    The longest Unix socket path, in bytes, this system accepts, not
    counting the terminating NUL: C{sizeof(sun_path) - 1}.

    Measured once by asking the C{socket} module to connect to ever longer
    paths under C{/dev/null/} (which can never exist, so nothing is touched):
    a path that is too long fails before any system call, one that fits
    fails with C{ENOTDIR}.

    @return: 107 on Linux, 103 on the BSDs and macOS.
    """
    base = os.devnull + "/"
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        fits, tooLong = len(base), 4096
        while tooLong - fits > 1:
            middle = (fits + tooLong) // 2
            try:
                probe.connect(base + "x" * (middle - len(base)))
            except OSError as e:
                if e.errno is None:
                    tooLong = middle
                else:
                    fits = middle
            else:  # pragma: no cover - /dev/null/x cannot exist
                fits = middle
    finally:
        probe.close()
    if fits == len(base) or tooLong == 4096:  # pragma: no cover - odd system
        return _FALLBACK_PATH_LIMIT
    return fits


def checkUnixSocketPath(path: str) -> None:
    """
    Check that C{path} can name a Unix socket: absolute, no NUL, and short
    enough for C{sun_path} (SPEC.md Decision 4: a configuration error).

    @param path: the socket path.
    @raise IPCError: if it cannot.
    """
    if "\0" in path:
        raise IPCError(f"socket path {path!r} contains a NUL character", path)
    if not os.path.isabs(path):
        raise IPCError(
            f"socket path {path}: must be absolute (relative -socket names are "
            "resolved against FastCgiIpcDir first)",
            path,
        )
    length = len(os.fsencode(path))
    limit = unixPathLimit()
    if length > limit:
        raise IPCError(
            f"socket path {path} is {length} bytes long, but a Unix socket path "
            f"may have at most {limit} bytes on this system; use a shorter "
            "FastCgiIpcDir or -socket name",
            path,
        )


class SocketNameAllocator:
    """
    Turns AppClass C{-socket} names into paths and generates names for
    classes without one (SPEC.md Decision 3).

    Create it after the server has daemonised (twistd forks, which changes
    the pid) and feed it the classes in configuration order.

    @ivar ipcDir: the FastCgiIpcDir, absolute.
    @ivar pid: the server's process id, part of generated names.
    """

    def __init__(self, ipcDir: str, pid: int | None = None) -> None:
        """
        @param ipcDir: the FastCgiIpcDir, absolute.
        @param pid: the server's process id; the current one by default.
        @raise IPCError: if C{ipcDir} is not absolute.
        """
        if not os.path.isabs(ipcDir):
            raise IPCError(
                f"FastCgiIpcDir {ipcDir}: the path must be absolute", ipcDir
            )
        self.ipcDir = os.path.normpath(ipcDir)
        self.pid = os.getpid() if pid is None else pid
        self._count = 0

    def generate(self) -> str:
        """
        Allocate the next generated socket path, C{<ipcDir>/OM_WS_<n>.<pid>}.

        @return: the path.
        @raise IPCError: if it is too long for a Unix socket.
        """
        path = os.path.join(self.ipcDir, f"OM_WS_{self._count}.{self.pid}")
        checkUnixSocketPath(path)
        self._count += 1
        return path

    def resolve(self, name: str | None) -> str:
        """
        The socket path for a class's C{-socket} value.

        @param name: the C{-socket} value, or C{None} if the class has none
            (then a name is generated).
        @return: the absolute, normalised path.
        @raise IPCError: if the name is empty, contains NUL, climbs out of
            the IPC directory, or the path is too long.
        """
        if name is None:
            return self.generate()
        if not name or "\0" in name:
            raise IPCError(f"-socket {name!r}: not a usable socket name", name)
        if os.path.isabs(name):
            path = os.path.normpath(name)
        else:
            path = os.path.normpath(os.path.join(self.ipcDir, name))
            inside = os.path.commonpath([self.ipcDir, path]) == self.ipcDir
            if not inside or path == self.ipcDir:
                raise IPCError(
                    f"-socket {name}: a relative name must stay inside "
                    f"FastCgiIpcDir {self.ipcDir}; give an absolute path to put "
                    "the socket elsewhere",
                    name,
                )
        checkUnixSocketPath(path)
        return path


# --- directories -------------------------------------------------------------


def _describeOwner(uid: int) -> str:
    """
    @param uid: a user id.
    @return: C{"user 33 (www-data)"} or C{"user 1234"}.
    """
    try:
        import pwd

        return f"user {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"user {uid}"


def _canUse(st: os.stat_result, uid: int, gid: int | None) -> bool:
    """
    Whether the user C{uid} (primary group C{gid}) has read, write and
    search permission on a directory, from its mode bits.  Supplementary
    groups are not known here and not considered.

    @param st: the directory's status.
    @param uid: the user.
    @param gid: the user's group, if known.
    @return: C{True} if it has.
    """
    if uid == 0:
        return True
    mode = st.st_mode
    if st.st_uid == uid:
        bits = (mode >> 6) & 0o7
    elif gid is not None and st.st_gid == gid:
        bits = (mode >> 3) & 0o7
    else:
        bits = mode & 0o7
    return bits == 0o7


def _checkDirectory(
    label: str, path: str, st: os.stat_result, uid: int | None, gid: int | None
) -> None:
    """
    Apply the FastCgiIpcDir rules to an existing directory.

    @param label: what the directory is, for messages.
    @param path: its path.
    @param st: its status.
    @param uid: the run-as user, if any.
    @param gid: the run-as group, if any.
    @raise IPCError: if a rule is broken.
    """
    if not stat.S_ISDIR(st.st_mode):
        raise IPCError(
            f"{label} {path}: exists but is not a directory; remove it or choose "
            "another FastCgiIpcDir",
            path,
        )
    allowed = {0, os.geteuid()}
    if uid is not None:
        allowed.add(uid)
    if st.st_uid not in allowed:
        raise IPCError(
            f"{label} {path}: is owned by {_describeOwner(st.st_uid)}, who could "
            "replace the sockets in it; chown it to root or to the server's user, "
            "or choose another FastCgiIpcDir",
            path,
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
        raise IPCError(
            f"{label} {path}: group or others may write to it (mode {mode:04o}) "
            "and it has no sticky bit, so another user could replace the "
            "sockets in it; run 'chmod go-w' (or 'chmod +t') on it, or choose "
            "another FastCgiIpcDir",
            path,
        )
    if uid is not None:
        usable = _canUse(st, uid, gid)
    else:
        usable = os.access(path, os.R_OK | os.W_OK | os.X_OK)
    if not usable:
        who = _describeOwner(os.geteuid() if uid is None else uid)
        raise IPCError(
            f"{label} {path}: {who} needs read, write and search permission on "
            f"it (mode {mode:04o}, owned by {_describeOwner(st.st_uid)}); chown "
            "it to that user, or choose another FastCgiIpcDir",
            path,
        )


def _makeDirectory(
    label: str, path: str, uid: int | None, gid: int | None
) -> None:
    """
    Create the last component of C{path} with mode 0700 and chown it.

    @param label: what the directory is, for messages.
    @param path: the directory to create.
    @param uid: owner to give it, if any.
    @param gid: group to give it, if any.
    @raise IPCError: if the parent is missing or creation fails.
    """
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise IPCError(
            f"{label} {path}: its parent directory {parent} does not exist (only "
            "the last component is created); create it, or choose another "
            "FastCgiIpcDir",
            path,
        )
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    except OSError as e:
        raise IPCError(
            f"{label} {path}: cannot create it: {e.strerror}; create it with mode "
            "0700, or choose another FastCgiIpcDir",
            path,
        ) from e
    try:
        os.chmod(path, 0o700)
        if uid is not None or gid is not None:
            os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    except OSError as e:
        raise IPCError(
            f"{label} {path}: created, but cannot set its mode or owner: "
            f"{e.strerror}",
            path,
        ) from e


def prepareIpcDirectory(
    path: str, *, uid: int | None = None, gid: int | None = None
) -> str:
    """
    Make sure the FastCgiIpcDir exists and is safe to hold sockets (see the
    module docstring for the rules).

    @param path: the FastCgiIpcDir, absolute.
    @param uid: the run-as user (C{twistd --uid}), if the server drops
        privileges; a new directory is given to it.
    @param gid: the run-as group, likewise.
    @return: the normalised path (no trailing slash).
    @raise IPCError: if the directory is missing and cannot be created, or
        breaks a rule.
    """
    label = "FastCgiIpcDir"
    if not os.path.isabs(path):
        raise IPCError(f"{label} {path}: the path must be absolute", path)
    path = os.path.normpath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        _makeDirectory(label, path, uid, gid)
        st = os.stat(path)
    except NotADirectoryError as e:
        raise IPCError(
            f"{label} {path}: a component of the path is not a directory; "
            "choose another FastCgiIpcDir",
            path,
        ) from e
    except OSError as e:
        raise IPCError(
            f"{label} {path}: cannot look at it: {e.strerror}; check the "
            "permissions of the directories above it",
            path,
        ) from e
    _checkDirectory(label, path, st, uid, gid)
    return path


def prepareDynamicDirectory(
    ipcDir: str, *, uid: int | None = None, gid: int | None = None
) -> str:
    """
    Create or check C{<ipcDir>/dynamic} and delete everything in it, as
    mod_fastcgi does at every start (dynamic applications keep their sockets
    and lock files there; leftovers of an earlier run are stale).

    @param ipcDir: the prepared FastCgiIpcDir (L{prepareIpcDirectory}).
    @param uid: the run-as user, if any.
    @param gid: the run-as group, if any.
    @return: the path of the C{dynamic} directory.
    @raise IPCError: if it cannot be created, is a symbolic link or breaks a
        FastCgiIpcDir rule, or an entry cannot be removed.
    """
    label = "FastCgiIpcDir dynamic directory"
    path = os.path.join(os.path.normpath(ipcDir), "dynamic")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        _makeDirectory(label, path, uid, gid)
        st = os.lstat(path)
    except OSError as e:
        raise IPCError(
            f"{label} {path}: cannot look at it: {e.strerror}; check "
            "FastCgiIpcDir",
            path,
        ) from e
    if stat.S_ISLNK(st.st_mode):
        raise IPCError(
            f"{label} {path}: is a symbolic link; its contents are deleted at "
            "every start, so it must be a real directory: remove the link",
            path,
        )
    _checkDirectory(label, path, st, uid, gid)
    try:
        entries = list(os.scandir(path))
    except OSError as e:
        raise IPCError(
            f"{label} {path}: cannot list it: {e.strerror}", path
        ) from e
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise IPCError(
                f"{label} {path}: cannot remove the leftover {entry.path}: "
                f"{e.strerror}; remove it by hand",
                entry.path,
            ) from e
    return path


# --- sockets -----------------------------------------------------------------


def _fileKind(mode: int) -> str:
    """
    @param mode: an C{st_mode}.
    @return: a name for the kind of file, with its article.
    """
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "a special file"


def _quote(value: str) -> str:
    """
    Escape a value for a Twisted endpoint description (what
    C{twisted.internet.endpoints.quoteStringArgument} does, plus C{=}).

    @param value: the raw value.
    @return: the value with C{\\}, C{:} and C{=} backslash-escaped.
    """
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def _displayAddress(host: str, port: int) -> str:
    """
    @return: C{host:port}, with brackets around an IPv6 address.
    """
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


class ListeningSocket:
    """
    A listening socket for one AppClass, shared by all its processes.

    States: open (after creation), closed (after L{close}; closing again
    does nothing).

    @ivar socket: the socket object (blocking, close-on-exec).
    @ivar address: the socket's path (Unix) or C{(host, port)} (TCP), the
        port being the one actually bound.
    """

    def __init__(
        self,
        sock: socket.socket,
        address: str | tuple[str, int],
        *,
        fileIdentity: tuple[int, int] | None = None,
    ) -> None:
        """
        @param sock: a socket in listening state.
        @param address: its path or C{(host, port)}.
        @param fileIdentity: C{(st_dev, st_ino)} of the socket file we
            created, for a Unix socket; L{close} unlinks the path only if it
            still names that file.  C{None}: never unlink.
        """
        self.socket = sock
        self.address = address
        self._fileIdentity = fileIdentity
        self._closed = False

    def __repr__(self) -> str:
        """
        @return: e.g. C{<ListeningSocket unix:path=/tmp/OM_WS_0.42 open>}.
        """
        state = "closed" if self._closed else "open"
        return f"<ListeningSocket {self.endpointDescription} {state}>"

    @property
    def closed(self) -> bool:
        """
        Whether L{close} was called.
        """
        return self._closed

    @property
    def isUnix(self) -> bool:
        """
        Whether this is a Unix socket (else TCP).
        """
        return isinstance(self.address, str)

    def fileno(self) -> int:
        """
        The descriptor to map onto fd 0 of each application process
        (C{childFDs={0: listening.fileno(), ...}}).

        @return: the file descriptor.
        @raise ValueError: if the socket is closed.
        """
        if self._closed:
            raise ValueError(f"{self!r} is closed")
        return self.socket.fileno()

    @property
    def endpointDescription(self) -> str:
        """
        A Twisted client endpoint description (for C{clientFromString}) that
        connects to this socket: C{unix:path=...} or
        C{tcp:host=...:port=N}, values escaped.  A TCP socket bound to all
        interfaces is reached through the loopback address.
        """
        if isinstance(self.address, str):
            return f"unix:path={_quote(self.address)}"
        host, port = self.address
        if host == "0.0.0.0":
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return f"tcp:host={_quote(host)}:port={port}"

    def close(self) -> None:
        """
        Close the socket and, for a Unix socket, remove its file if the path
        still names the file created for it (not one that replaced it since).
        Closing twice does nothing.

        @raise IPCError: if the file cannot be removed (the socket is closed
            anyway).
        """
        if self._closed:
            return
        self._closed = True
        try:
            if isinstance(self.address, str) and self._fileIdentity is not None:
                path = self.address
                try:
                    st = os.lstat(path)
                    if (st.st_dev, st.st_ino) == self._fileIdentity:
                        os.unlink(path)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    raise IPCError(
                        f"socket {path}: cannot remove it at shutdown: "
                        f"{e.strerror}; remove it by hand",
                        path,
                    ) from e
        finally:
            self.socket.close()


def _checkBacklog(backlog: int) -> None:
    """
    @param backlog: a C{listen()} backlog.
    @raise ValueError: unless it is an integer C{>= 1}.
    """
    if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 1:
        raise ValueError(f"backlog must be an integer >= 1 (got {backlog!r})")


def _removeStaleSocket(path: str) -> None:
    """
    Remove a stale socket file at C{path}, refusing anything else.

    @param path: the socket path.
    @raise IPCError: if something other than a socket is there, or a live
        process is listening on it, or it cannot be removed.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise IPCError(
            f"socket {path}: cannot look at the path: {e.strerror}; check the "
            "directories in it",
            path,
        ) from e
    if not stat.S_ISSOCK(st.st_mode):
        raise IPCError(
            f"socket {path}: {_fileKind(st.st_mode)} is in the way; it is not a "
            "socket, so it is left alone: remove it if it is safe to, or choose "
            "another -socket",
            path,
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(_STALE_PROBE_TIMEOUT)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        pass  # Nobody listens: stale.
    except FileNotFoundError:
        return  # Removed meanwhile.
    except (BlockingIOError, TimeoutError) as e:
        raise IPCError(
            f"socket {path}: another process is listening on it (its queue is "
            "full); stop that process, or choose another -socket",
            path,
        ) from e
    except OSError as e:
        raise IPCError(
            f"socket {path}: cannot tell whether another process uses it: "
            f"{e.strerror}; remove it if it is stale, or choose another -socket",
            path,
        ) from e
    else:
        raise IPCError(
            f"socket {path}: another process is listening on it (another "
            "txfastcgi, or an application started by hand); stop that process, "
            "or choose another -socket",
            path,
        )
    finally:
        probe.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise IPCError(
            f"socket {path}: cannot remove the stale socket: {e.strerror}; "
            "remove it by hand",
            path,
        ) from e


def createUnixListeningSocket(
    path: str,
    *,
    backlog: int,
    uid: int | None = None,
    gid: int | None = None,
    mode: int = 0o600,
) -> ListeningSocket:
    """
    Create a Unix listening socket at C{path} (rules in the module
    docstring: stale replacement, refusals, umask, chmod, chown).

    @param path: the absolute socket path (see L{SocketNameAllocator}).
    @param backlog: the C{listen()} queue depth (C{-listen-queue-depth}).
    @param uid: give the socket file to this user (the run-as user).
    @param gid: give the socket file to this group.
    @param mode: the socket file's permission bits; 0600 by default.
    @return: the listening socket, blocking and close-on-exec.
    @raise IPCError: if the path is unusable or taken, or a system call
        fails.
    @raise ValueError: for a bad C{backlog} or C{mode}.
    """
    _checkBacklog(backlog)
    if mode & ~0o777:
        raise ValueError(f"mode must be permission bits only (got {mode:o})")
    checkUnixSocketPath(path)
    path = os.path.normpath(path)
    _removeStaleSocket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Created 0600 at most: no window in which others may connect.
        oldMask = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(oldMask)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            advice = "another process created it just now; choose another -socket"
        else:
            advice = "check the directory and its permissions"
        raise IPCError(
            f"socket {path}: cannot bind: {e.strerror}; {advice}", path
        ) from e
    try:
        st = os.lstat(path)
        identity = (st.st_dev, st.st_ino)
    except OSError as e:  # pragma: no cover - we just created it
        sock.close()
        raise IPCError(f"socket {path}: vanished after bind: {e.strerror}", path)
    listening = ListeningSocket(sock, path, fileIdentity=identity)
    try:
        os.chmod(path, mode)
        if uid is not None or gid is not None:
            os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
        sock.listen(backlog)
        sock.setblocking(True)
    except OSError as e:
        try:
            listening.close()
        except IPCError:  # pragma: no cover - best effort on the error path
            pass
        raise IPCError(
            f"socket {path}: cannot set its owner or mode, or listen: "
            f"{e.strerror}",
            path,
        ) from e
    return listening


def createTCPListeningSocket(
    port: int, *, host: str = "127.0.0.1", backlog: int
) -> ListeningSocket:
    """
    Create a TCP listening socket for an AppClass with C{-port}.

    It binds 127.0.0.1 by default, not all interfaces as mod_fastcgi did:
    a FastCGI application trusts whoever connects (there is no
    authentication in the protocol; an app given CGI variables can be told
    any C{REMOTE_USER} or C{SCRIPT_FILENAME}), so it must not be reachable
    from other hosts unless the configuration asks for another address on
    purpose.  C{SO_REUSEADDR} is set so a restart does not wait for old
    connections in TIME_WAIT; it does not let two listeners share the port.

    @param port: the port, 1-65535 (0 picks a free port, for tests).
    @param host: a numeric IPv4 or IPv6 address to bind.
    @param backlog: the C{listen()} queue depth (C{-listen-queue-depth}).
    @return: the listening socket; its L{ListeningSocket.address} has the
        port actually bound.
    @raise IPCError: if the address is not numeric, or bind/listen fails
        (e.g. the port is in use).
    @raise ValueError: for a bad C{backlog}.
    """
    _checkBacklog(backlog)
    where = _displayAddress(host, port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise IPCError(f"-port {port!r}: must be an integer from 1 to 65535", where)
    try:
        infos = socket.getaddrinfo(
            host,
            port,
            type=socket.SOCK_STREAM,
            flags=socket.AI_NUMERICHOST | socket.AI_PASSIVE,
        )
    except (socket.gaierror, UnicodeError) as e:
        raise IPCError(
            f"TCP {where}: {host!r} is not a numeric IP address; give an address "
            "such as 127.0.0.1 or ::1",
            where,
        ) from e
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(True)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            advice = (
                "another process is using the port; stop it or choose another -port"
            )
        elif e.errno == errno.EACCES:
            advice = "ports below 1024 need root; choose another -port"
        elif e.errno == errno.EADDRNOTAVAIL:
            advice = "the address is not one of this host's; choose another"
        else:
            advice = "choose another address or -port"
        raise IPCError(
            f"TCP {where}: cannot listen: {e.strerror}; {advice}", where
        ) from e
    boundHost, boundPort = sock.getsockname()[:2]
    return ListeningSocket(sock, (boundHost, boundPort))


class SocketRegistry:
    """
    Every listening socket the supervisor opened, so that all are closed and
    their files removed at shutdown, and no two classes share an address.
    """

    def __init__(self) -> None:
        """
        Start empty.
        """
        self._sockets: list[ListeningSocket] = []

    def __iter__(self) -> Iterator[ListeningSocket]:
        """
        @return: the open sockets, in the order they were opened.
        """
        return iter(list(self._sockets))

    def __len__(self) -> int:
        """
        @return: the number of open sockets.
        """
        return len(self._sockets)

    def _refuseDuplicate(self, address: str | tuple[str, int], shown: str) -> None:
        """
        @param address: an address about to be opened.
        @param shown: how to name it in the message.
        @raise IPCError: if an open socket already has it.
        """
        for listening in self._sockets:
            if listening.address == address:
                raise IPCError(
                    f"socket {shown}: two AppClasses use the same socket; give "
                    "each its own -socket or -port",
                    shown,
                )

    def add(self, listening: ListeningSocket) -> ListeningSocket:
        """
        Take charge of a socket created elsewhere.

        @param listening: the socket.
        @return: C{listening}.
        """
        self._sockets.append(listening)
        return listening

    def openUnix(
        self,
        path: str,
        *,
        backlog: int,
        uid: int | None = None,
        gid: int | None = None,
        mode: int = 0o600,
    ) -> ListeningSocket:
        """
        L{createUnixListeningSocket} and L{add}, refusing a path already
        open here (which would otherwise look like "another process is
        listening").

        @return: the socket.
        @raise IPCError: as L{createUnixListeningSocket}, or for a
            duplicate.
        """
        normalised = os.path.normpath(path)
        self._refuseDuplicate(normalised, normalised)
        return self.add(
            createUnixListeningSocket(
                normalised, backlog=backlog, uid=uid, gid=gid, mode=mode
            )
        )

    def openTCP(
        self, port: int, *, host: str = "127.0.0.1", backlog: int
    ) -> ListeningSocket:
        """
        L{createTCPListeningSocket} and L{add}, refusing an address already
        open here.

        @return: the socket.
        @raise IPCError: as L{createTCPListeningSocket}, or for a duplicate.
        """
        if port:
            self._refuseDuplicate((host, port), _displayAddress(host, port))
        return self.add(createTCPListeningSocket(port, host=host, backlog=backlog))

    def closeAll(self) -> list[IPCError]:
        """
        Close every socket and remove its file, newest first.  One failure
        does not stop the others.

        @return: the errors, for the caller to log (empty if none).
        """
        errors = []
        while self._sockets:
            listening = self._sockets.pop()
            try:
                listening.close()
            except IPCError as e:
                errors.append(e)
        return errors
