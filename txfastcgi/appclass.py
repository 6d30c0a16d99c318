# -*- test-case-name: tests.test_supervisor -*-
"""
Configuration values for managed and external FastCGI applications: what an
C{AppClass} (alias C{FastCgiServer}), C{ExternalAppClass} (alias
C{FastCgiExternalServer}) or C{FastCgiIpcDir} line says, checked and frozen.

The httpd.conf parser builds these values (one per directive, with the
C{source} file and line) and the L{txfastcgi.supervisor.ApplicationSupervisor}
consumes them.  Nothing here touches the file system, the network or a
reactor: the checks are the ones that depend on the values alone (ranges,
exclusive options, shapes of names).  What depends on the machine is checked
later, by the supervisor and L{txfastcgi.ipc} (the IPC directory, socket
paths and their length, free ports) or by the parser (whether the file is
executable by the server's user, duplicate class paths across lines, DNS).

Errors are L{AppClassError}s whose message says what is wrong and the value
given, in the form the parser prefixes with C{FILE:LINE: } (see
L{AppClassError.located}):
C{AppClass /srv/app.fcgi: -processes must be an integer from 1 to 50 (got 0)}.

Ranges and defaults (SPEC.md sections 1.1, 1.2, 2 and 3; Decisions 2-5)
=====================================================================

  - C{-processes}: 1 to L{MAX_PROCESSES} (50, mod_fastcgi 2.0's limit),
    default 1.
  - C{-listen-queue-depth}: at least 1, default 100 (Decision 2).
  - C{-restart-delay}: seconds, a finite number C{>= 0}, default 5.  The
    configuration file gives whole seconds; fractions are accepted for
    programs and tests.
  - C{-priority}: 0 to 20, default 0: a niceness increment relative to the
    server (mod_fastcgi called C{nice(N)} in the child).
  - C{-port} (1 to 65535) and C{-socket} (a non-empty name) exclude each
    other ("-port and -socket options are mutually exclusive", 2.0's
    wording); with neither, the supervisor generates a socket name.
  - C{-initial-env}: C{NAME=VALUE} (value may be empty), or C{NAME} alone,
    which copies NAME from the server's environment (Decision 5); see
    L{resolveInitialEnv}.  The environment of the processes is I{exactly}
    these pairs: no PATH, no HOME, nothing inherited.
  - C{-min-server-life} (mod_fastcgi HEAD): seconds C{>= 0}, default 30; a
    process that dies younger counts toward the restart back-off
    (L{txfastcgi.policy}).
  - C{-init-start-delay} (mod_fastcgi 2.x): seconds C{>= 0} between the
    initial starts of a class's processes; default 0, all together as in
    the seed.
  - C{ExternalAppClass}: exactly one of C{-host host:port} and C{-socket};
    the path is a lookup key only and need not exist.
  - C{FastCgiIpcDir}: an absolute path, default C{/tmp} (Decision 4).

Paths are normalised (C{os.path.normpath}) so that C{/a//b/../c} and
C{/a/c} name the same class; making a relative path absolute (against
ServerRoot) is the parser's job, so a relative one is an error here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from txfastcgi.policy import RestartPolicy

__all__ = [
    "DEFAULT_IPC_DIR",
    "MAX_PRIORITY",
    "MAX_PROCESSES",
    "AppClassConfig",
    "AppClassError",
    "ExternalAppClassConfig",
    "IpcDirConfig",
    "ResolvedEnvironment",
    "parseInitialEnv",
    "resolveInitialEnv",
]

MAX_PROCESSES = 50
"""The largest C{-processes} (mod_fastcgi 2.0's C{FCGI_DEFAULT_MAX_PROCS})."""

MAX_PRIORITY = 20
"""The largest C{-priority} (mod_fastcgi 2.0's limit; niceness stops at 19)."""

DEFAULT_IPC_DIR = "/tmp"
"""The FastCgiIpcDir when none is configured (Decision 4, the seed's)."""

Source = tuple[str, int]
"""Where a directive was read: C{(file name, line number)}."""

_NOTHING = object()


class AppClassError(ValueError):
    """
    A configuration value for a managed or external application is invalid.

    C{str(error)} is C{"<directive> <path>: <what is wrong>"}, with C{(got
    <value>)} at the end when a value is to blame; the parser prefixes
    C{FILE:LINE: } (L{located} does it when the value knows its source).

    @ivar directive: the directive, e.g. C{"AppClass"} or C{"FastCgiServer"}.
    @ivar path: the class's path-name (or the directory, for
        C{FastCgiIpcDir}), as given.
    @ivar option: the option concerned, e.g. C{"-processes"}, or C{None}.
    @ivar reason: what is wrong, without directive, path or value.
    @ivar source: C{(file, line)} of the directive, if known.
    """

    def __init__(
        self,
        reason: str,
        *,
        directive: str,
        path: str,
        option: str | None = None,
        value: object = _NOTHING,
        source: Source | None = None,
    ) -> None:
        """
        @param reason: what is wrong, e.g. C{"-processes must be an integer
            from 1 to 50"}.
        @param directive: the directive's name as written.
        @param path: the class's path-name.
        @param option: the option concerned.
        @param value: the offending value, shown as C{(got ...)}; leave out
            when no single value is to blame.
        @param source: C{(file, line)}, if known.
        """
        message = f"{directive} {path}: {reason}"
        if value is not _NOTHING:
            message += f" (got {value!r})"
        super().__init__(message)
        self.directive = directive
        self.path = path
        self.option = option
        self.reason = reason
        self.source = source

    def located(self) -> str:
        """
        The message with C{FILE:LINE: } in front when the source is known.

        @return: e.g. C{"httpd.conf:14: AppClass /a: -priority must be ..."}.
        """
        if self.source is None:
            return str(self)
        fileName, line = self.source
        return f"{fileName}:{line}: {self}"


def _isInteger(value: object) -> bool:
    """
    @param value: anything.
    @return: whether it is an C{int} (not a C{bool}).
    """
    return isinstance(value, int) and not isinstance(value, bool)


def _isSeconds(value: object) -> bool:
    """
    @param value: anything.
    @return: whether it is a finite, non-negative C{int} or C{float}.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and value >= 0


def _checkPath(directive: str, path: object, source: Source | None) -> str:
    """
    Check and normalise a class path-name.

    @param directive: for messages.
    @param path: the path as given.
    @param source: for messages.
    @return: the normalised path.
    @raise AppClassError: if it is not an absolute path.
    """
    if not isinstance(path, str) or not path:
        raise AppClassError(
            "a path-name is required",
            directive=directive,
            path=str(path),
            value=path,
            source=source,
        )
    if "\0" in path:
        raise AppClassError(
            "the path-name contains a NUL character",
            directive=directive,
            path=repr(path),
            source=source,
        )
    if not os.path.isabs(path):
        raise AppClassError(
            "the path-name must be absolute (the configuration parser resolves "
            "relative ones against ServerRoot)",
            directive=directive,
            path=path,
            source=source,
        )
    return os.path.normpath(path)


def parseInitialEnv(entry: str) -> tuple[str, str | None]:
    """
    Split one C{-initial-env} value.

    @param entry: C{"NAME=VALUE"}, C{"NAME="} (empty value) or C{"NAME"}
        (copy from the server's environment).
    @return: C{(name, value)}, C{value} being C{None} for a copy.
    @raise ValueError: if the name is empty or either part contains NUL.
    """
    if "\0" in entry:
        raise ValueError("-initial-env must not contain a NUL character")
    name, equals, value = entry.partition("=")
    if not name:
        raise ValueError("-initial-env needs a variable name before '='")
    return name, (value if equals else None)


@dataclass(frozen=True)
class ResolvedEnvironment:
    """
    The environment of a class's processes, and the names that could not be
    copied.

    @ivar env: the variables, in configuration order (a later entry for the
        same name replaces an earlier one).
    @ivar missing: the names given without C{=} that the server's own
        environment does not have; they are left out (the supervisor logs a
        warning naming them).
    """

    env: dict[str, str]
    missing: tuple[str, ...]


def resolveInitialEnv(
    entries: tuple[str, ...], environ: Mapping[str, str]
) -> ResolvedEnvironment:
    """
    Build the initial environment of a class's processes from its
    C{-initial-env} values (SPEC.md Decision 5).

    C{NAME=VALUE} sets NAME; C{NAME=} sets it to the empty string; C{NAME}
    alone copies NAME's value from C{environ} (the server's environment)
    and is left out, and reported in C{missing}, when C{environ} does not
    have it (mod_fastcgi HEAD behaviour is the same in effect: nothing
    usable to pass).  Nothing else from C{environ} is passed.

    @param entries: the C{-initial-env} values, in configuration order.
    @param environ: the server's environment (normally C{os.environ}).
    @return: the environment and the names that were missing.
    @raise ValueError: for a malformed entry (see L{parseInitialEnv}).
    """
    env: dict[str, str] = {}
    missing: list[str] = []
    for entry in entries:
        name, value = parseInitialEnv(entry)
        if value is None:
            if name in environ:
                env[name] = environ[name]
            else:
                missing.append(name)
                env.pop(name, None)
        else:
            env[name] = value
    return ResolvedEnvironment(env, tuple(missing))


@dataclass(frozen=True)
class AppClassConfig:
    """
    One managed application class: C{AppClass path-name [options]} (SPEC.md
    section 1).  The server starts C{processes} copies of the executable at
    C{path}, all accepting on one listening socket, and restarts them when
    they die.  Ranges are in the module docstring.

    @ivar path: the executable's absolute path (normalised); also the key
        requests are matched against, and argv[0] of the processes.
    @ivar processes: C{-processes}: how many copies run.
    @ivar listenQueueDepth: C{-listen-queue-depth}: the C{listen()} backlog
        of the shared socket.
    @ivar restartDelay: C{-restart-delay}: no start sooner than this many
        seconds after the class's most recent start.
    @ivar priority: C{-priority}: niceness increment of the processes
        relative to the server.
    @ivar port: C{-port}: listen on this TCP port (on 127.0.0.1), or
        C{None}.
    @ivar socket: C{-socket}: the Unix socket's name (relative to
        FastCgiIpcDir) or absolute path, or C{None}.  With neither C{port}
        nor C{socket}, a name C{OM_WS_<n>.<pid>} is generated.
    @ivar initialEnv: C{-initial-env} values as written (C{NAME=VALUE} or
        C{NAME}), in order.
    @ivar minServerLife: C{-min-server-life}: seconds a process must live
        for its death not to count toward the back-off.
    @ivar initStartDelay: C{-init-start-delay}: seconds between the initial
        starts of the class's processes.  C{0} (the default here, the
        seed's behaviour) starts them all together; mod_fastcgi 2.4 used 1.
    @ivar uid: run the processes as this user (needs a server that is still
        root when it starts them), or C{None} for the server's user.
    @ivar gid: run the processes with this group, or C{None}.
    @ivar directive: the directive name used in messages (C{AppClass} or
        its alias C{FastCgiServer}); not part of equality.
    @ivar source: C{(file, line)} of the directive, if known; not part of
        equality.
    """

    path: str
    processes: int = 1
    listenQueueDepth: int = 100
    restartDelay: float = 5
    priority: int = 0
    port: int | None = None
    socket: str | None = None
    initialEnv: tuple[str, ...] = ()
    minServerLife: float = 30
    initStartDelay: float = 0
    uid: int | None = None
    gid: int | None = None
    directive: str = field(default="AppClass", compare=False)
    source: Source | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        """
        Check every field and normalise C{path}.

        @raise AppClassError: naming the first invalid option.
        """
        path = _checkPath(self.directive, self.path, self.source)
        object.__setattr__(self, "path", path)

        def fail(reason: str, option: str | None, value: object = _NOTHING) -> None:
            raise AppClassError(
                reason,
                directive=self.directive,
                path=path,
                option=option,
                value=value,
                source=self.source,
            )

        if not _isInteger(self.processes) or not 1 <= self.processes <= MAX_PROCESSES:
            fail(
                f"-processes must be an integer from 1 to {MAX_PROCESSES}",
                "-processes",
                self.processes,
            )
        if not _isInteger(self.listenQueueDepth) or self.listenQueueDepth < 1:
            fail(
                "-listen-queue-depth must be an integer of at least 1",
                "-listen-queue-depth",
                self.listenQueueDepth,
            )
        if not _isSeconds(self.restartDelay):
            fail(
                "-restart-delay must be a number of seconds >= 0",
                "-restart-delay",
                self.restartDelay,
            )
        if not _isInteger(self.priority) or not 0 <= self.priority <= MAX_PRIORITY:
            fail(
                f"-priority must be an integer from 0 to {MAX_PRIORITY} "
                "(negative values are not allowed)",
                "-priority",
                self.priority,
            )
        if self.port is not None and self.socket is not None:
            fail("-port and -socket options are mutually exclusive", "-port")
        if self.port is not None and (
            not _isInteger(self.port) or not 1 <= self.port <= 65535
        ):
            fail("-port must be an integer from 1 to 65535", "-port", self.port)
        if self.socket is not None and (
            not isinstance(self.socket, str) or not self.socket or "\0" in self.socket
        ):
            fail(
                "-socket must be a non-empty name without NUL characters",
                "-socket",
                self.socket,
            )
        if not isinstance(self.initialEnv, tuple):
            fail("-initial-env values must be a tuple of strings", "-initial-env")
        for entry in self.initialEnv:
            if not isinstance(entry, str):
                fail("-initial-env values must be strings", "-initial-env", entry)
            try:
                parseInitialEnv(entry)
            except ValueError as e:
                fail(str(e), "-initial-env", entry)
        if not _isSeconds(self.minServerLife):
            fail(
                "-min-server-life must be a number of seconds >= 0",
                "-min-server-life",
                self.minServerLife,
            )
        if not _isSeconds(self.initStartDelay):
            fail(
                "-init-start-delay must be a number of seconds >= 0",
                "-init-start-delay",
                self.initStartDelay,
            )
        for option, value in (("-user", self.uid), ("-group", self.gid)):
            if value is not None and (not _isInteger(value) or value < 0):
                fail(f"{option} must be a numeric id >= 0", option, value)

    @property
    def workingDirectory(self) -> str:
        """
        The directory the processes start in: the executable's (as
        mod_fastcgi did).
        """
        return os.path.dirname(self.path) or "/"

    def restartPolicy(self) -> RestartPolicy:
        """
        The restart policy of this class for L{txfastcgi.policy}.

        @return: C{restartDelay} and C{minServerLife} from this value, the
            back-off threshold and cap at the policy's defaults.
        """
        return RestartPolicy(
            restartDelay=float(self.restartDelay),
            minServerLife=float(self.minServerLife),
        )

    def environment(self, environ: Mapping[str, str]) -> ResolvedEnvironment:
        """
        The initial environment of the processes (L{resolveInitialEnv}).

        @param environ: the server's environment.
        @return: the resolved environment.
        """
        return resolveInitialEnv(self.initialEnv, environ)


def _splitHostPort(text: str) -> tuple[str, int] | None:
    """
    Split C{host:port} or C{[v6-address]:port}.

    @param text: the C{-host} value.
    @return: C{(host, port)}, or C{None} if malformed or the port is out of
        range.
    """
    if text.startswith("["):
        closing = text.find("]")
        if closing < 0 or text[closing + 1 : closing + 2] != ":":
            return None
        host, portText = text[1:closing], text[closing + 2 :]
    else:
        host, colon, portText = text.rpartition(":")
        if not colon or ":" in host:
            return None
    if not host or not portText.isdigit() or not portText.isascii():
        return None
    port = int(portText)
    if not 1 <= port <= 65535:
        return None
    return host, port


@dataclass(frozen=True)
class ExternalAppClassConfig:
    """
    An application the server does not start: C{ExternalAppClass path-name
    (-host host:port | -socket name)} (SPEC.md section 2).

    @ivar path: the lookup key requests are matched against (absolute,
        normalised; it need not exist).
    @ivar host: C{-host}: C{host:port} (C{[v6]:port} for an IPv6 literal),
        or C{None}.  The host is resolved when connecting.
    @ivar socket: C{-socket}: a Unix socket path, absolute or relative to
        FastCgiIpcDir, or C{None}.
    @ivar directive: the directive name used in messages; not part of
        equality.
    @ivar source: C{(file, line)} of the directive; not part of equality.
    """

    path: str
    host: str | None = None
    socket: str | None = None
    directive: str = field(default="ExternalAppClass", compare=False)
    source: Source | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        """
        Check the fields and normalise C{path}.

        @raise AppClassError: for a bad path, a malformed C{-host}, an empty
            C{-socket}, or not exactly one of the two.
        """
        path = _checkPath(self.directive, self.path, self.source)
        object.__setattr__(self, "path", path)
        if (self.host is None) == (self.socket is None):
            raise AppClassError(
                "exactly one of -host and -socket is required",
                directive=self.directive,
                path=path,
                option="-host",
                source=self.source,
            )
        if self.host is not None and (
            not isinstance(self.host, str) or _splitHostPort(self.host) is None
        ):
            raise AppClassError(
                "-host must be host:port with a port from 1 to 65535 "
                "(an IPv6 address in brackets: [::1]:9000)",
                directive=self.directive,
                path=path,
                option="-host",
                value=self.host,
                source=self.source,
            )
        if self.socket is not None and (
            not isinstance(self.socket, str) or not self.socket or "\0" in self.socket
        ):
            raise AppClassError(
                "-socket must be a non-empty name without NUL characters",
                directive=self.directive,
                path=path,
                option="-socket",
                value=self.socket,
                source=self.source,
            )

    @property
    def hostAndPort(self) -> tuple[str, int] | None:
        """
        C{-host} split into host and port, or C{None} for a socket class.
        """
        if self.host is None:
            return None
        return _splitHostPort(self.host)


@dataclass(frozen=True)
class IpcDirConfig:
    """
    C{FastCgiIpcDir dir-path} (SPEC.md section 3, Decision 4): where Unix
    sockets of managed classes with generated or relative names live.

    @ivar path: the directory, absolute and normalised; C{/tmp} by default.
    @ivar directive: the directive name used in messages.
    @ivar source: C{(file, line)} of the directive; not part of equality.
    """

    path: str = DEFAULT_IPC_DIR
    directive: str = field(default="FastCgiIpcDir", compare=False)
    source: Source | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        """
        Check and normalise C{path}.

        @raise AppClassError: if it is not absolute.
        """
        object.__setattr__(
            self, "path", _checkPath(self.directive, self.path, self.source)
        )
