# -*- test-case-name: tests.test_config_directives -*-
"""
The directive table: what each directive (case-insensitive) takes, where it
may be written, and how its arguments become L{txfastcgi.config.model}
values.  L{buildConfig} walks the statements L{txfastcgi.config.reader}
produced and returns a L{ServerConfig}, or raises the first L{ConfigError}.

Conventions
===========

  - A server-wide setting (C{Port}, C{ServerName}, C{DocumentRoot},
    C{FastCgiIpcDir}, ...) given twice is an error naming the first line;
    Apache silently kept the last one, which hides mistakes in split
    configurations.  Per-directory settings (C{SetHandler}, ...) follow
    Apache: the last one in a section wins.
  - Relative paths are ServerRoot-relative.
  - Directives that only tune Apache's process model or features txfastcgi
    does not have (L{IGNORED}) are accepted anywhere with any arguments and
    noted once per name (L{ServerConfig.notes}); Apache directives with
    effects txfastcgi would silently lose (access control, rewriting,
    redirects, ...; L{UNSUPPORTED}) are errors, as are unknown names.
  - mod_fastcgi options are case-insensitive (2.2 behaviour), given once
    each per line except the repeatable C{-initial-env} and
    C{-pass-header}; in C{FCGIConfig} lines the last value wins (SPEC.md
    section 4).  Checks that need the whole file (duplicate applications,
    socket paths in the FastCgiIpcDir, executability by C{User}, FCGIConfig
    cross-checks) run after the last line, so their order does not matter.
  - C{-initial-env} values are kept as written; C{NAME} alone is copied
    from the server's environment when the processes start
    (L{txfastcgi.appclass.resolveInitialEnv}), and the reader notes a NAME
    missing from the C{environ} given to L{buildConfig}.  C{PassEnv} values
    are taken from C{environ} when the file is read (an unset one is noted).
  - C{Options} is stored for the mapping step; C{AllowOverride} accepts only
    C{None} (no C{.htaccess} files are read).
"""

from __future__ import annotations

import difflib
import grp
import os
import pwd
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Flag, auto
from typing import Any

from txfastcgi.appclass import AppClassError, parseInitialEnv
from txfastcgi.config.errors import NO_VALUE, ConfigError, Source
from txfastcgi.config.lexer import Directive, Node, Section
from txfastcgi.config.model import (
    ActionRule,
    AliasConfig,
    ApplicationOptions,
    AliasKind,
    AppClassConfig,
    AuthorizerConfig,
    AuthRole,
    CustomLog,
    DirectoryConfig,
    DynamicConfig,
    EnvOp,
    EnvRule,
    ExtensionRule,
    ExternalAppClassConfig,
    GroupConfig,
    IpcDirConfig,
    OPTION_NAMES,
    ListenConfig,
    LogFormat,
    LogItem,
    Note,
    OptionsSetting,
    SectionConfig,
    SectionKind,
    ServerConfig,
    Setting,
    UserConfig,
)
from txfastcgi.config.reader import ReadResult, resolvePath
from txfastcgi.ipc import IPCError, SocketNameAllocator, checkUnixSocketPath

__all__ = [
    "APPCLASS_OPTIONS",
    "DIRECTIVES",
    "DYNAMIC_OPTIONS",
    "EXTERNAL_OPTIONS",
    "IGNORED",
    "PREDEFINED_LOG_FORMATS",
    "UNSUPPORTED",
    "Context",
    "DirectiveSpec",
    "EndpointCheck",
    "OptionSpec",
    "buildConfig",
    "parseLogFormat",
]

EndpointCheck = Callable[[str], None]
"""Validates a Twisted endpoint description, raising an exception if bad."""

MAX_INT = 2**31 - 1
"""The largest integer any option takes."""

_MAX_PID_DIGITS = 7
"""Linux pids have at most 7 digits (C{pid_max} is at most 4194304)."""


class Context(Flag):
    """
    Where a directive may be written.
    """

    SERVER = auto()
    DIRECTORY = auto()
    LOCATION = auto()
    FILES = auto()


_SECTIONS = Context.DIRECTORY | Context.LOCATION | Context.FILES
_ANYWHERE = Context.SERVER | _SECTIONS


# --- small value parsers -----------------------------------------------------


class _Bad(Exception):
    """
    A value is wrong; the handler adds the source and directive.

    @ivar message: what is wrong.
    @ivar value: the offending value.
    """

    def __init__(self, message: str, value: object = NO_VALUE) -> None:
        super().__init__(message)
        self.message = message
        self.value = value


_INT = re.compile(r"[+-]?[0-9]+")


def _integer(text: str, what: str, low: int, high: int | None) -> int:
    """
    Parse a decimal integer within bounds.

    @param text: the text.
    @param what: its name in the message (C{-processes}).
    @param low: the smallest value allowed.
    @param high: the largest, or C{None} for L{MAX_INT} (then the message
        says C{>= low}).
    @return: the value.
    @raise _Bad: if it is not an integer in range.
    """
    if high is None:
        message = f"{what} must be an integer >= {low}"
        top = MAX_INT
    else:
        message = f"{what} must be an integer between {low} and {high}"
        top = high
    if not _INT.fullmatch(text):
        raise _Bad(message, text)
    value = int(text)
    if value < low:
        raise _Bad(message, text)
    if value > top:
        raise _Bad(f"{what} must be an integer between {low} and {top}", text)
    return value


def _number(text: str, what: str, low: float, high: float) -> float:
    """
    Parse a decimal number within bounds.

    @param text: the text.
    @param what: its name in the message.
    @param low: the smallest value allowed.
    @param high: the largest value allowed.
    @return: the value.
    @raise _Bad: if it is not a finite number in range.
    """
    message = f"{what} must be a number between {low} and {high}"
    if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)", text):
        raise _Bad(message, text)
    value = float(text)
    if not low <= value <= high:
        raise _Bad(message, text)
    return value


def _onOff(text: str, what: str) -> bool:
    """
    Parse C{On} or C{Off}, case-insensitively.

    @param text: the text.
    @param what: its name in the message.
    @return: C{True} for On.
    @raise _Bad: for anything else.
    """
    lowered = text.lower()
    if lowered not in ("on", "off"):
        raise _Bad(f"{what} must be On or Off", text)
    return lowered == "on"


_PORT_HOST = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]\s]+)):([0-9A-Za-z+-]*)")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9.])?|\[[0-9A-Fa-f:.]+\]")
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]+")
_MEDIA_TYPE = re.compile(r"[^/\s]+/[^/\s]+")
_ENV_NAME = re.compile(r"[^=\s]+")


def _port(text: str, what: str) -> int:
    """
    Parse a TCP port, 1 ... 65535.

    @param text: the text.
    @param what: its name in the message.
    @return: the port.
    @raise _Bad: if it is not one.
    """
    return _integer(text, what, 1, 65535)


# --- log formats -------------------------------------------------------------

_LOG_LETTERS = frozenset("aAbBcCDefhHiklLmnopPqrRsStTuUvVXIO")

PREDEFINED_LOG_FORMATS: Mapping[str, str] = {
    "common": '%h %l %u %t "%r" %>s %b',
    "combined": '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"',
    "referer": "%{Referer}i -> %U",
    "agent": "%{User-agent}i",
}
"""Log format nicknames defined before the file is read (Apache's stock
httpd.conf defines them; here a C{LogFormat} may redefine them)."""


def _literal(text: str) -> str:
    """
    Resolve the C{\\n}, C{\\t} and C{\\\\} escapes of a log format's text.

    @param text: literal text of a format.
    @return: the text with escapes resolved; other backslashes are kept.
    """
    return re.sub(
        r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text
    )


def parseLogFormat(fmt: str) -> LogFormat:
    """
    Parse a mod_log_config format string.

    @param fmt: the format, e.g. C{%h %l %u %t "%r" %>s %b}.
    @return: the parsed format.
    @raise ValueError: for an unknown directive letter, an unclosed C{{},
        or a C{%} at the end.
    """
    parts: list[str | LogItem] = []
    text: list[str] = []
    i, n = 0, len(fmt)
    while i < n:
        c = fmt[i]
        if c != "%":
            text.append(c)
            i += 1
            continue
        i += 1
        if i < n and fmt[i] == "%":
            text.append("%")
            i += 1
            continue
        start = i - 1
        final: bool | None = None
        negated = False
        statuses: list[int] = []
        argument: str | None = None
        while True:
            if i >= n:
                raise ValueError(f"incomplete directive at the end: {fmt[start:]!r}")
            c = fmt[i]
            if c == "!":
                negated = True
                i += 1
            elif c == "<":
                final = False
                i += 1
            elif c == ">":
                final = True
                i += 1
            elif c == ",":
                i += 1
            elif c.isdigit():
                m = re.match(r"[0-9]+", fmt[i:])
                assert m is not None
                statuses.append(int(m.group()))
                i += len(m.group())
            elif c == "{":
                end = fmt.find("}", i)
                if end < 0:
                    raise ValueError(f"unclosed '{{' in {fmt[start:]!r}")
                argument = fmt[i + 1 : end]
                i = end + 1
            elif c in _LOG_LETTERS:
                i += 1
                break
            else:
                raise ValueError(f"unknown directive %{c}")
        if text:
            parts.append(_literal("".join(text)))
            text = []
        parts.append(LogItem(c, argument, final, tuple(statuses), negated))
    if text:
        parts.append(_literal("".join(text)))
    return LogFormat(fmt, tuple(parts))


# --- directive table ---------------------------------------------------------


@dataclass(frozen=True)
class DirectiveSpec:
    """
    One entry of the directive table.

    @ivar name: the canonical spelling.
    @ivar usage: the syntax, for argument-count messages.
    @ivar minArgs: fewest arguments.
    @ivar maxArgs: most arguments, C{None} for no limit.
    @ivar contexts: where it may be written.
    @ivar handler: what it does, given the builder, the directive and the
        per-directory settings of the place it is written in.
    """

    name: str
    usage: str
    minArgs: int
    maxArgs: int | None
    contexts: Context
    handler: Callable[[_Builder, Directive, _DirectoryBuilder], None]


@dataclass
class _DirectoryBuilder:
    """
    Per-directory settings being collected for one level.
    """

    values: dict[str, Any] = field(default_factory=dict)
    lists: dict[str, list[Any]] = field(default_factory=dict)

    def set(self, name: str, value: object) -> None:
        """
        Set a single-valued setting (the last one wins).
        """
        self.values[name] = value

    def add(self, name: str, value: object) -> None:
        """
        Append to a list setting.
        """
        self.lists.setdefault(name, []).append(value)

    def build(self) -> DirectoryConfig:
        """
        @return: the frozen settings.
        """
        fields: dict[str, Any] = dict(self.values)
        fields.update((k, tuple(v)) for k, v in self.lists.items())
        return DirectoryConfig(**fields)


@dataclass
class _PendingApp:
    """
    An C{AppClass} or C{ExternalAppClass} line, checked as far as it can be
    alone; finished after the last line.

    @ivar managed: C{AppClass} rather than C{ExternalAppClass}.
    @ivar path: the normalised absolute path.
    @ivar written: the path as written.
    @ivar directive: the directive's name as written.
    @ivar source: where it was written.
    @ivar values: keyword arguments for the L{txfastcgi.appclass} value.
    @ivar options: keyword arguments for its L{ApplicationOptions}.
    @ivar userName: C{-user} as written, if given.
    """

    managed: bool
    path: str
    written: str
    directive: str
    source: Source
    values: dict[str, Any]
    options: dict[str, Any]
    userName: str | None = None


@dataclass
class _PendingLog:
    """
    An access log whose format is resolved after the last line (nicknames
    may be defined later, as in Apache).
    """

    path: str
    format: str | None
    condition: str | None
    source: Source
    directive: str


class _Builder:
    """
    The state of one L{buildConfig} run.
    """

    def __init__(
        self,
        read: ReadResult,
        environ: Mapping[str, str],
        checkEndpoint: EndpointCheck | None,
    ) -> None:
        """
        @param read: the statements and ServerRoot.
        @param environ: the server's environment.
        @param checkEndpoint: validates Listen endpoint descriptions.
        """
        self.read = read
        self.serverRoot = read.serverRoot.value
        self.environ = environ
        self.checkEndpoint = checkEndpoint
        self.server: dict[str, Any] = {}
        self.once: dict[str, Source] = {}
        self.listens: list[ListenConfig] = []
        self.logs: list[_PendingLog] = []
        self.formats: dict[str, tuple[str, Source | None]] = {
            k: (v, None) for k, v in PREDEFINED_LOG_FORMATS.items()
        }
        self.defaultFormat: str | None = None
        self.aliases: list[AliasConfig] = []
        self.sections: list[SectionConfig] = []
        self.applications: list[_PendingApp] = []
        self.dynamic: dict[str, Any] = {}
        self.dynamicSources: list[Source] = []
        self.dynamicName = "FCGIConfig"
        self.notes: list[Note] = []
        self.ignoredSeen: set[str] = set()
        self.mimeTypes: tuple[tuple[str, str], ...] = ()
        self.topLevel = _DirectoryBuilder()

    # -- helpers

    def error(
        self, d: Directive, message: str, value: object = NO_VALUE
    ) -> ConfigError:
        """
        @return: an error for directive C{d}.
        """
        return ConfigError.at(d.source, d.name, message, value)

    def note(self, source: Source, directive: str, message: str) -> None:
        """
        Record a note for the server to log.
        """
        self.notes.append(Note(source, directive, message))

    def setOnce(self, d: Directive, key: str, value: object) -> None:
        """
        Set a server-wide setting that may be given once.

        @raise ConfigError: if it was given before.
        """
        if key in self.once:
            raise self.error(d, f"given twice (first at {self.once[key]})", d.args)
        self.once[key] = d.source
        self.server[key] = value

    def path(self, text: str) -> str:
        """
        @return: C{text} resolved against the ServerRoot.
        """
        return resolvePath(self.serverRoot, text)

    # -- walking

    def walk(self) -> None:
        """
        Apply every statement.

        @raise ConfigError: at the first problem.
        """
        self.walkNodes(self.read.nodes, Context.SERVER, self.topLevel, None)

    def walkNodes(
        self,
        nodes: tuple[Node, ...],
        context: Context,
        scope: _DirectoryBuilder,
        within: SectionConfig | None,
    ) -> None:
        """
        Apply statements written in one place.

        @param nodes: the statements.
        @param context: the place's kind.
        @param scope: its per-directory settings.
        @param within: the enclosing C{<Directory>} section for C{<Files>}.
        """
        for node in nodes:
            if isinstance(node, Section):
                self.section(node, context, within)
            else:
                self.directive(node, context, scope)

    def directive(
        self, d: Directive, context: Context, scope: _DirectoryBuilder
    ) -> None:
        """
        Apply one directive.

        @raise ConfigError: if it is unknown, misplaced, has the wrong number
            of arguments, or its handler refuses it.
        """
        key = d.name.lower()
        if key in IGNORED:
            if key not in self.ignoredSeen:
                self.ignoredSeen.add(key)
                self.note(
                    d.source,
                    d.name,
                    "ignored: it tunes Apache's own process model or a feature "
                    "txfastcgi does not have",
                )
            return
        if key in UNSUPPORTED:
            raise self.error(
                d, "is an Apache directive txfastcgi does not implement", d.args
            )
        spec = DIRECTIVES.get(key)
        if spec is None:
            close = difflib.get_close_matches(key, list(DIRECTIVES) + list(IGNORED), 1)
            hint = ""
            if close:
                hint = f"; did you mean {_canonical(close[0])}?"
            raise self.error(d, f"unknown directive{hint}", d.name)
        if not context & spec.contexts:
            raise self.error(d, f"not allowed {_placeName(context)}")
        count = len(d.args)
        if count < spec.minArgs or (spec.maxArgs is not None and count > spec.maxArgs):
            message = f"takes {_countText(spec.minArgs, spec.maxArgs)}: {spec.usage}"
            if any(arg.startswith("#") for arg in d.args):
                message += " ('#' starts a comment only at the beginning of a line)"
            raise self.error(d, message, d.args if d.args else NO_VALUE)
        try:
            spec.handler(self, d, scope)
        except _Bad as e:
            raise self.error(d, e.message, e.value) from None

    def section(
        self, s: Section, context: Context, within: SectionConfig | None
    ) -> None:
        """
        Apply a per-directory section.

        @raise ConfigError: if the section is unknown, misplaced, or its
            argument is wrong.
        """
        key = s.name.lower()
        kinds = {k.value.lower(): k for k in SectionKind}
        if key in _UNSUPPORTED_SECTIONS:
            raise ConfigError.at(
                s.source,
                s.display,
                "is an Apache section txfastcgi does not implement",
                s.args if s.args else NO_VALUE,
            )
        if key not in kinds:
            raise ConfigError.at(s.source, s.display, "unknown section", s.name)
        kind = kinds[key]
        if kind in (SectionKind.FILES, SectionKind.FILES_MATCH):
            if context not in (Context.SERVER, Context.DIRECTORY):
                raise ConfigError.at(
                    s.source, s.display, f"not allowed {_placeName(context)}"
                )
            inner = Context.FILES
        else:
            if context is not Context.SERVER:
                raise ConfigError.at(
                    s.source, s.display, f"not allowed {_placeName(context)}"
                )
            inner = (
                Context.LOCATION
                if kind in (SectionKind.LOCATION, SectionKind.LOCATION_MATCH)
                else Context.DIRECTORY
            )
        args = s.args
        if len(args) == 2 and args[0] == "~" and not kind.isRegex:
            kind = SectionKind[kind.name + "_MATCH"]
            args = args[1:]
        if len(args) != 1 or not args[0]:
            raise ConfigError.at(
                s.source,
                s.display,
                f"takes one argument: {_SECTION_USAGE[kind]}",
                s.args if s.args else NO_VALUE,
            )
        pattern = args[0]
        if kind.isRegex:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError.at(
                    s.source, s.display, f"bad regular expression: {e}", pattern
                ) from None
        elif kind is SectionKind.DIRECTORY:
            if not os.path.isabs(pattern):
                raise ConfigError.at(
                    s.source,
                    s.display,
                    "the directory must be an absolute path",
                    pattern,
                )
        elif kind is SectionKind.FILES and "/" in pattern:
            raise ConfigError.at(
                s.source, s.display, "a file name pattern cannot contain '/'", pattern
            )
        scope = _DirectoryBuilder()
        placeholder = SectionConfig(kind, pattern, DirectoryConfig(), within, s.source)
        index = len(self.sections)
        self.sections.append(placeholder)
        self.walkNodes(
            s.children,
            inner,
            scope,
            placeholder if inner is Context.DIRECTORY else within,
        )
        built = replace(placeholder, config=scope.build())
        self.sections[index] = built
        # Files sections nested in this one point at the placeholder; point
        # them at the finished section.
        for i in range(index + 1, len(self.sections)):
            if self.sections[i].within is placeholder:
                self.sections[i] = replace(self.sections[i], within=built)

    # -- finishing

    def finish(self) -> ServerConfig:
        """
        Run the whole-file checks and build the result.

        @raise ConfigError: if one fails.
        """
        logs = tuple(self.resolveLog(p) for p in self.logs)
        bindAddress: Setting[str | None] | None = self.server.get("bindAddress")
        if bindAddress is not None and self.listens:
            self.note(
                bindAddress.source,
                "BindAddress",
                "ignored: Listen directives say where to listen",
            )
        ipcDir: IpcDirConfig = self.server.get("ipcDir", IpcDirConfig())
        appClasses, externals, options = self.finishApplications(ipcDir)
        dynamic = self.finishDynamic()
        return ServerConfig(
            files=self.read.files,
            serverRoot=self.serverRoot,
            port=self.server.get("port"),
            bindAddress=self.server.get("bindAddress"),
            listens=tuple(self.listens),
            serverName=self.server.get("serverName"),
            documentRoot=self.server.get("documentRoot"),
            errorLog=self.server.get("errorLog"),
            logs=logs,
            aliases=tuple(self.aliases),
            typesConfig=self.server.get("typesConfig"),
            mimeTypes=self.mimeTypes,
            user=self.server.get("user"),
            group=self.server.get("group"),
            server=self.topLevel.build(),
            sections=tuple(self.sections),
            ipcDir=ipcDir,
            appClasses=appClasses,
            externalAppClasses=externals,
            applicationOptions=options,
            dynamic=dynamic,
            notes=tuple(self.notes),
        )

    def resolveLog(self, p: _PendingLog) -> CustomLog:
        """
        Resolve an access log's format.

        @raise ConfigError: for an unknown nickname or a bad format.
        """
        nickname: str | None = None
        if p.format is None:
            fmt = self.defaultFormat or self.formats["common"][0]
        elif "%" in p.format:
            fmt = p.format
        else:
            nickname = p.format
            if nickname not in self.formats:
                raise ConfigError.at(
                    p.source,
                    p.directive,
                    "unknown log format nickname (define it with LogFormat)",
                    nickname,
                )
            fmt = self.formats[nickname][0]
        try:
            parsed = parseLogFormat(fmt)
        except ValueError as e:
            raise ConfigError.at(
                p.source, p.directive, f"bad log format: {e}", fmt
            ) from None
        return CustomLog(p.path, parsed, nickname, p.condition, p.source)

    def socketPath(
        self, allocator: SocketNameAllocator, name: str, app: _PendingApp
    ) -> str:
        """
        Resolve a C{-socket} name in the IPC directory and check its length.

        @raise ConfigError: if it cannot be used.
        """
        try:
            return allocator.resolve(name)
        except IPCError as e:
            raise ConfigError.at(app.source, app.directive, str(e), name) from None

    def finishApplications(self, ipcDir: IpcDirConfig) -> tuple[
        tuple[AppClassConfig, ...],
        tuple[ExternalAppClassConfig, ...],
        tuple[ApplicationOptions, ...],
    ]:
        """
        Check what needs the whole file (executability by the final User,
        socket paths in the final FastCgiIpcDir, sockets and ports used
        twice) and build L{txfastcgi.appclass} values.

        @raise ConfigError: at the offending line.
        """
        allocator = SocketNameAllocator(ipcDir.path, pid=10**_MAX_PID_DIGITS - 1)
        apps: list[AppClassConfig] = []
        externals: list[ExternalAppClassConfig] = []
        options: list[ApplicationOptions] = []
        sockets: dict[str, _PendingApp] = {}
        ports: dict[int, _PendingApp] = {}
        served = self.loopbackPorts()
        generated = 0
        for app in self.applications:
            values = app.values
            if app.managed:
                problem = _executableProblem(app.path, self.account(app))
                if problem is not None:
                    raise ConfigError.at(
                        app.source, app.directive, problem, app.written
                    )
            if values.get("port") is not None:
                port = values["port"]
                listener = served.get(port)
                if listener is not None:
                    raise ConfigError.at(
                        app.source,
                        app.directive,
                        f"-port {port} is the port the server itself listens on "
                        f"({listener})",
                        port,
                    )
                if port in ports:
                    raise ConfigError.at(
                        app.source,
                        app.directive,
                        f"-port is already used by the {ports[port].directive} "
                        f"at {ports[port].source}",
                        port,
                    )
                ports[port] = app
            elif values.get("socket") is not None:
                path = self.socketPath(allocator, values["socket"], app)
                if app.managed:
                    if path in sockets:
                        raise ConfigError.at(
                            app.source,
                            app.directive,
                            f"-socket {path} is already used by the "
                            f"{sockets[path].directive} at {sockets[path].source}",
                            values["socket"],
                        )
                    sockets[path] = app
            elif app.managed:
                path = os.path.join(
                    ipcDir.path, f"OM_WS_{generated}.{'9' * _MAX_PID_DIGITS}"
                )
                generated += 1
                try:
                    checkUnixSocketPath(path)
                except IPCError as e:
                    raise ConfigError.at(
                        app.source,
                        app.directive,
                        f"the generated socket name would be too long: {e}",
                        ipcDir.path,
                    ) from None
            try:
                if app.managed:
                    apps.append(
                        AppClassConfig(
                            path=app.path,
                            directive=app.directive,
                            source=app.source,
                            **values,
                        )
                    )
                else:
                    externals.append(
                        ExternalAppClassConfig(
                            path=app.path,
                            directive=app.directive,
                            source=app.source,
                            **values,
                        )
                    )
            except AppClassError as e:
                # The reader checks everything first; this is a safety net
                # for checks added to txfastcgi.appclass later.
                prefix = f"{e.directive} {e.path}: "
                message = str(e)
                if message.startswith(prefix):
                    message = message[len(prefix) :]
                raise ConfigError.at(app.source, app.directive, message) from None
            options.append(
                ApplicationOptions(path=app.path, source=app.source, **app.options)
            )
        return tuple(apps), tuple(externals), tuple(options)

    def loopbackPorts(self) -> dict[int, str]:
        """
        The TCP ports the server listens on that a managed application's
        C{-port} (bound on 127.0.0.1) would collide with.

        @return: port to a description of the directive that set it.
        """
        if not self.listens:
            port: Setting[int] | None = self.server.get("port")
            bind: Setting[str | None] | None = self.server.get("bindAddress")
            host = bind.value if bind is not None else None
            if host not in (None, "127.0.0.1", "localhost"):
                return {}
            if port is None:
                return {80: "the default Port"}
            return {port.value: f"Port at {port.source}"}
        return {
            listen.port: f"Listen at {listen.source}"
            for listen in self.listens
            if listen.port is not None
            and listen.host in (None, "127.0.0.1", "localhost")
        }

    def account(self, app: _PendingApp) -> _Account | None:
        """
        The account whose permissions decide whether the server can run an
        application: its C{-user}/C{-group}, else C{User}/C{Group}.

        @return: C{(name, uid, gid)}, or C{None} if no account is configured.
        """
        uid = app.values.get("uid")
        gid = app.values.get("gid")
        if uid is not None:
            if gid is None:
                gid = _primaryGroup(uid)
            return (app.userName or f"#{uid}", uid, gid)
        user: UserConfig | None = self.server.get("user")
        group: GroupConfig | None = self.server.get("group")
        if user is None:
            return None
        if gid is None:
            gid = group.gid if group is not None else user.gid
        return (user.name, user.uid, gid)

    def finishDynamic(self) -> DynamicConfig:
        """
        Combine the FCGIConfig lines and cross-check them.

        @raise ConfigError: at the last FCGIConfig line if options conflict.
        """
        values = dict(self.dynamic)
        dynamic = DynamicConfig(**values, sources=tuple(self.dynamicSources))
        if not self.dynamicSources:
            return dynamic
        last = self.dynamicSources[-1]
        for name, fieldName in (
            ("-minProcesses", "minProcesses"),
            ("-processSlack", "processSlack"),
        ):
            value = getattr(dynamic, fieldName)
            if value > dynamic.maxProcesses:
                label = name if fieldName in self.dynamic else f"{name} (default)"
                raise ConfigError.at(
                    last,
                    self.dynamicName,
                    f"{label} must not exceed -maxProcesses",
                    f"{value} > {dynamic.maxProcesses}",
                )
        if dynamic.maxClassProcesses > dynamic.maxProcesses:
            self.note(
                last,
                self.dynamicName,
                f"-maxClassProcesses {dynamic.maxClassProcesses} exceeds "
                f"-maxProcesses {dynamic.maxProcesses}; no class will get more "
                "than -maxProcesses",
            )
        if 0 < dynamic.appConnTimeout <= dynamic.startDelay:
            self.note(
                last,
                self.dynamicName,
                f"-appConnTimeout {dynamic.appConnTimeout} does not exceed "
                f"-startDelay {dynamic.startDelay}; a request gives up before a "
                "second process is started",
            )
        return dynamic


_Account = tuple[str, int, "int | None"]
"""An account to check permissions for: C{(name as written, uid, gid)}."""


def _primaryGroup(uid: int) -> int | None:
    """
    @return: the primary group of user C{uid}, if the account exists.
    """
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return None


def _executableProblem(path: str, account: _Account | None) -> str | None:
    """
    Why the server could not execute C{path} for an application, if it
    could not.

    When the server runs as root and an account is configured (C{User}, or
    the class's C{-user}), the file's permission bits are checked for that
    account, as mod_fastcgi did; otherwise the current process's access is
    checked.

    @param path: the executable.
    @param account: the account the processes will run as, if configured.
    @return: a message, or C{None} if it is executable.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except OSError as e:
        return f"cannot examine the file: {e.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if account is not None and os.geteuid() == 0:
        name, uid, gid = account
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif gid is not None and st.st_gid == gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return f"not executable by user {name}"
        return None
    if not os.access(path, os.X_OK) or not st.st_mode & 0o111:
        return "not executable by the server"
    return None


def _canonical(key: str) -> str:
    """
    @return: the canonical spelling of a table key.
    """
    spec = DIRECTIVES.get(key)
    if spec is not None:
        return spec.name
    return _IGNORED_NAMES.get(key, key)


def _placeName(context: Context) -> str:
    """
    @return: how messages name a place.
    """
    return {
        Context.SERVER: "outside sections",
        Context.DIRECTORY: "inside <Directory> sections",
        Context.LOCATION: "inside <Location> sections",
        Context.FILES: "inside <Files> sections",
    }[context]


def _countText(low: int, high: int | None) -> str:
    """
    @return: "1 argument", "1 or 2 arguments", "at least 2 arguments", ...
    """

    def plural(k: int) -> str:
        return f"{k} argument" + ("" if k == 1 else "s")

    if high is None:
        return f"at least {plural(low)}"
    if low == high:
        return plural(low)
    if high == low + 1:
        return f"{low} or {plural(high)}"
    return f"{low} to {plural(high)}"


_SECTION_USAGE = {
    SectionKind.DIRECTORY: "<Directory /absolute/path> or <Directory ~ regex>",
    SectionKind.DIRECTORY_MATCH: "<DirectoryMatch regex>",
    SectionKind.FILES: "<Files name> or <Files ~ regex>",
    SectionKind.FILES_MATCH: "<FilesMatch regex>",
    SectionKind.LOCATION: "<Location /url-path> or <Location ~ regex>",
    SectionKind.LOCATION_MATCH: "<LocationMatch regex>",
}


# --- handlers: server ----------------------------------------------------------


def _portDirective(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{Port N}.
    """
    b.setOnce(d, "port", Setting(_port(d.args[0], "the port"), d.source))


_ENDPOINT_TYPES = frozenset({"tcp", "tcp6", "ssl", "tls", "unix", "systemd", "onion"})


def _listen(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{Listen [ADDRESS:]PORT} or C{Listen ENDPOINT-DESCRIPTION}.
    """
    arg = d.args[0]
    prefix = arg.split(":", 1)[0].lower()
    listen: ListenConfig
    if (":" in arg and prefix in _ENDPOINT_TYPES) or (
        arg.count(":") > 1 and not arg.startswith("[")
    ):
        if b.checkEndpoint is not None:
            try:
                b.checkEndpoint(arg)
            except Exception as e:
                raise _Bad(f"not a valid endpoint description: {e}", arg) from None
        listen = ListenConfig(None, None, arg, d.source)
    elif arg.isdigit():
        listen = ListenConfig(None, _port(arg, "the port"), None, d.source)
    else:
        m = _PORT_HOST.fullmatch(arg)
        if m is None:
            raise _Bad(
                "must be PORT, ADDRESS:PORT, [IPv6-ADDRESS]:PORT or a Twisted "
                "endpoint description such as ssl:443:privateKey=key.pem",
                arg,
            )
        host = m.group(1) or m.group(2)
        if host in ("*", "0.0.0.0"):
            host = None
        listen = ListenConfig(host, _port(m.group(3), "the port"), None, d.source)
    for other in b.listens:
        if (other.host, other.port, other.endpoint) == (
            listen.host,
            listen.port,
            listen.endpoint,
        ):
            raise _Bad(f"the same address was given at {other.source}", arg)
    b.listens.append(listen)


def _bindAddress(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{BindAddress ADDRESS|*}.
    """
    arg = d.args[0]
    host: str | None = None
    if arg != "*":
        if not _HOSTNAME.fullmatch(arg):
            raise _Bad("must be an address, a host name or *", arg)
        host = arg.strip("[]")
    b.setOnce(d, "bindAddress", Setting(host, d.source))


def _serverName(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{ServerName HOST[:PORT]}.
    """
    arg = d.args[0]
    host, port = arg, None
    m = _PORT_HOST.fullmatch(arg)
    if m is not None:
        host = m.group(1) and f"[{m.group(1)}]" or m.group(2)
        port = m.group(3)
    if not _HOSTNAME.fullmatch(host):
        raise _Bad("must be HOST or HOST:PORT", arg)
    if port is not None:
        _port(port, "the port")
    b.setOnce(d, "serverName", Setting(arg, d.source))


def _existingDirectory(b: _Builder, text: str) -> str:
    """
    Resolve a directory path and check that it is one.

    @raise _Bad: if it is not an existing directory.
    """
    if not text:
        raise _Bad("needs a directory", text)
    path = b.path(text)
    if not os.path.isdir(path):
        raise _Bad("must be an existing directory", text)
    return path


def _documentRoot(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{DocumentRoot DIR}: an existing directory (as Apache 1.x required).
    """
    path = _existingDirectory(b, d.args[0])
    b.setOnce(d, "documentRoot", Setting(os.path.normpath(path), d.source))


def _logPath(b: _Builder, text: str) -> str:
    """
    Resolve a log file path.

    @raise _Bad: for piped or syslog logs, or a missing directory.
    """
    if text.startswith("|"):
        raise _Bad("piped logs are not supported; give a file", text)
    if text.lower().startswith("syslog"):
        raise _Bad("syslog is not supported; give a file", text)
    if not text:
        raise _Bad("needs a file", text)
    path = b.path(text)
    parent = os.path.dirname(path) or "/"
    if not os.path.isdir(parent):
        raise _Bad(f"the directory {parent} does not exist", text)
    if os.path.isdir(path):
        raise _Bad("is a directory, not a file", text)
    return path


def _errorLog(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{ErrorLog FILE}.
    """
    b.setOnce(d, "errorLog", Setting(_logPath(b, d.args[0]), d.source))


def _transferLog(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{TransferLog FILE}: an access log in the default format (the last
    C{LogFormat} without a nickname, else the common format).
    """
    b.logs.append(_PendingLog(_logPath(b, d.args[0]), None, None, d.source, d.name))


def _customLog(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{CustomLog FILE FORMAT|NICKNAME [env=[!]VAR]}.
    """
    path = _logPath(b, d.args[0])
    fmt = d.args[1]
    condition: str | None = None
    if len(d.args) == 3:
        condition = d.args[2]
        if not re.fullmatch(r"env=!?[^=\s]+", condition):
            raise _Bad("the condition must be env=VAR or env=!VAR", condition)
    if "%" in fmt:
        try:
            parseLogFormat(fmt)
        except ValueError as e:
            raise _Bad(f"bad log format: {e}", fmt) from None
    b.logs.append(_PendingLog(path, fmt, condition, d.source, d.name))


def _logFormat(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{LogFormat FORMAT [NICKNAME]}: with a nickname, define it; without,
    set the default format (a known nickname alone selects that format).
    """
    fmt = d.args[0]
    if len(d.args) == 1 and "%" not in fmt and fmt in b.formats:
        b.defaultFormat = b.formats[fmt][0]
        return
    try:
        parseLogFormat(fmt)
    except ValueError as e:
        raise _Bad(f"bad log format: {e}", fmt) from None
    if len(d.args) == 2:
        nickname = d.args[1]
        if not nickname or "%" in nickname:
            raise _Bad("the nickname must be a word without '%'", nickname)
        b.formats[nickname] = (fmt, d.source)
    else:
        b.defaultFormat = fmt


def _alias(kind: AliasKind) -> Callable[[_Builder, Directive, _DirectoryBuilder], None]:
    """
    C{Alias URL-PATH PATH} and C{ScriptAlias URL-PATH PATH}.
    """

    def handler(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
        url, target = d.args
        if not url.startswith("/"):
            raise _Bad("the URL path must start with '/'", url)
        if not target:
            raise _Bad("needs a file-system path", target)
        path = b.path(target)
        for other in b.aliases:
            if _aliasCovers(other.urlPath, url):
                b.note(
                    d.source,
                    d.name,
                    f"{url} will never match: the {other.kind.value} {other.urlPath} "
                    f"at {other.source} comes first and covers it",
                )
                break
        b.aliases.append(AliasConfig(kind, url, path, d.source))

    return handler


def _aliasCovers(earlier: str, later: str) -> bool:
    """
    Whether an alias for C{earlier} matches every URL C{later} would (Apache
    matches alias prefixes on C{/} boundaries, first one wins).
    """
    if earlier == later:
        return True
    if earlier.endswith("/"):
        return later.startswith(earlier)
    return later.startswith(earlier + "/")


def _typesConfig(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{TypesConfig FILE}: a mime.types file, read now.
    """
    path = b.path(d.args[0])
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise _Bad(f"cannot read the file: {e.strerror}", d.args[0]) from None
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if not _MEDIA_TYPE.fullmatch(words[0]):
            raise ConfigError(path, number, "TypesConfig", "not a media type", words[0])
        pairs.extend((ext.lower().lstrip("."), words[0].lower()) for ext in words[1:])
    b.setOnce(d, "typesConfig", Setting(path, d.source))
    b.mimeTypes = tuple(pairs)


def _user(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{User NAME|#UID}.
    """
    name = d.args[0]
    gid: int | None = None
    if name.startswith("#"):
        uid = _integer(name[1:], "the user id after '#'", 0, None)
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = None
    else:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise _Bad("no such user", name) from None
        uid, gid = entry.pw_uid, entry.pw_gid
    b.setOnce(d, "user", UserConfig(name, uid, gid, d.source))


def _group(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{Group NAME|#GID}.
    """
    name = d.args[0]
    if name.startswith("#"):
        gid = _integer(name[1:], "the group id after '#'", 0, None)
    else:
        try:
            gid = grp.getgrnam(name).gr_gid
        except KeyError:
            raise _Bad("no such group", name) from None
    b.setOnce(d, "group", GroupConfig(name, gid, d.source))


# --- handlers: per directory -----------------------------------------------------


def _handlerName(text: str) -> str | None:
    """
    @return: a handler name lower-cased, C{None} for C{None}.
    @raise _Bad: if empty.
    """
    if not text:
        raise _Bad("needs a handler name", text)
    return None if text.lower() == "none" else text.lower()


def _mediaType(text: str) -> str:
    """
    @return: a media type lower-cased.
    @raise _Bad: if it is not TYPE/SUBTYPE.
    """
    if not _MEDIA_TYPE.fullmatch(text):
        raise _Bad("must be a media type, TYPE/SUBTYPE", text)
    return text.lower()


def _extensions(args: tuple[str, ...]) -> tuple[str, ...]:
    """
    @return: extensions lower-cased without their leading dot.
    @raise _Bad: for an empty one or one with C{/}.
    """
    out = []
    for arg in args:
        ext = arg.lower()
        if ext.startswith("."):
            ext = ext[1:]
        if not ext or "/" in ext:
            raise _Bad("not a file-name extension", arg)
        out.append(ext)
    return tuple(out)


def _setHandler(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{SetHandler NAME|None}.
    """
    scope.set("setHandler", Setting(_handlerName(d.args[0]), d.source))


def _addHandler(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{AddHandler NAME EXT...}.
    """
    name = _handlerName(d.args[0])
    if name is None:
        raise _Bad("needs a handler name", d.args[0])
    scope.add("addHandlers", ExtensionRule(name, _extensions(d.args[1:]), d.source))


def _addType(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{AddType TYPE EXT...}.
    """
    scope.add(
        "addTypes",
        ExtensionRule(_mediaType(d.args[0]), _extensions(d.args[1:]), d.source),
    )


def _forceType(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{ForceType TYPE|None}.
    """
    arg = d.args[0]
    value = None if arg.lower() == "none" else _mediaType(arg)
    scope.set("forceType", Setting(value, d.source))


def _defaultType(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{DefaultType TYPE}.
    """
    scope.set("defaultType", Setting(_mediaType(d.args[0]), d.source))


def _action(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{Action HANDLER-OR-TYPE URL-PATH [virtual]}.
    """
    actionType, url = d.args[0], d.args[1]
    if not actionType:
        raise _Bad("needs a handler name or media type", actionType)
    if not url.startswith("/"):
        raise _Bad("the script must be a URL path starting with '/'", url)
    virtual = False
    if len(d.args) == 3:
        if d.args[2].lower() != "virtual":
            raise _Bad("the third argument can only be 'virtual'", d.args[2])
        virtual = True
    scope.add("actions", ActionRule(actionType.lower(), url, virtual, d.source))


def _envName(text: str) -> str:
    """
    @return: C{text}, checked to be a variable name.
    @raise _Bad: if it is empty or holds C{=} or blanks.
    """
    if not _ENV_NAME.fullmatch(text):
        raise _Bad("not an environment variable name", text)
    return text


def _setEnv(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{SetEnv NAME [VALUE]}.
    """
    value = d.args[1] if len(d.args) == 2 else ""
    scope.add("env", EnvRule(EnvOp.SET, _envName(d.args[0]), value, d.source))


def _passEnv(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{PassEnv NAME...}: the values are taken from the server's environment
    now; an unset one is noted.
    """
    for arg in d.args:
        name = _envName(arg)
        value = b.environ.get(name)
        if value is None:
            b.note(
                d.source,
                d.name,
                f"{name} is not set in the server's environment; it is not passed",
            )
        scope.add("env", EnvRule(EnvOp.PASS, name, value, d.source))


def _unsetEnv(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{UnsetEnv NAME...}.
    """
    for arg in d.args:
        scope.add("env", EnvRule(EnvOp.UNSET, _envName(arg), None, d.source))


def _directoryIndex(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{DirectoryIndex NAME...}.
    """
    for arg in d.args:
        if not arg:
            raise _Bad("needs file names", arg)
    scope.set("directoryIndex", Setting(tuple(d.args), d.source))


def _limitRequestBody(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{LimitRequestBody BYTES} (0 means no limit).
    """
    value = _integer(d.args[0], "the limit", 0, 2147483647)
    scope.set("limitRequestBody", Setting(value, d.source))


_OPTION_NAMES = {name.lower(): name for name in OPTION_NAMES}
_ALL_OPTIONS = frozenset(OPTION_NAMES) - {"IncludesNOEXEC", "MultiViews"}


def _options(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{Options [+|-]NAME...}: stored for the mapping step (C{ExecCGI} allows
    dynamic FastCGI applications, C{Indexes} directory listings, ...).
    """
    signs: set[bool] = set()
    add: set[str] = set()
    remove: set[str] = set()
    for arg in d.args:
        sign = arg[:1] if arg[:1] in ("+", "-") else ""
        key = arg[len(sign) :].lower()
        signs.add(bool(sign))
        if key == "none" and not sign:
            if len(d.args) > 1:
                raise _Bad("None cannot be combined with other options", d.args)
            continue
        if key == "all":
            names = set(_ALL_OPTIONS)
        elif key in _OPTION_NAMES:
            names = {_OPTION_NAMES[key]}
        else:
            raise _Bad(
                "unknown option; known: All, None, " + ", ".join(OPTION_NAMES), arg
            )
        (remove if sign == "-" else add).update(names)
    if len(signs) > 1:
        raise _Bad("either all options have + or - before them, or none has", d.args)
    scope.set(
        "options",
        OptionsSetting(not any(signs), frozenset(add), frozenset(remove), d.source),
    )


def _allowOverride(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{AllowOverride None}: accepted; txfastcgi reads no C{.htaccess} files,
    so anything else is refused rather than silently ignored.
    """
    if [arg.lower() for arg in d.args] != ["none"]:
        raise _Bad(
            "txfastcgi reads no .htaccess files; only AllowOverride None is "
            "accepted",
            d.args,
        )


_ROLE_FIELDS = {
    AuthRole.AUTHENTICATOR: "authenticator",
    AuthRole.AUTHORIZER: "authorizer",
    AuthRole.ACCESS_CHECKER: "accessChecker",
}


def _auth(role: AuthRole) -> Callable[[_Builder, Directive, _DirectoryBuilder], None]:
    """
    C{FastCgiAuthenticator PATH [-compat]} and its siblings.
    """

    def handler(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
        if not d.args[0]:
            raise _Bad("needs the application's path", d.args[0])
        compat = False
        if len(d.args) == 2:
            if d.args[1].lower() != "-compat":
                raise _Bad("unknown option", d.args[1])
            compat = True
        path = os.path.normpath(b.path(d.args[0]))
        scope.set(_ROLE_FIELDS[role], AuthorizerConfig(role, path, compat, d.source))

    return handler


def _authoritative(
    role: AuthRole,
) -> Callable[[_Builder, Directive, _DirectoryBuilder], None]:
    """
    C{FastCgiAuthenticatorAuthoritative On|Off} and its siblings.
    """

    def handler(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
        value = _onOff(d.args[0], "the value")
        scope.set(_ROLE_FIELDS[role] + "Authoritative", Setting(value, d.source))

    return handler


# --- mod_fastcgi -----------------------------------------------------------------


@dataclass(frozen=True)
class OptionSpec:
    """
    One option of AppClass, ExternalAppClass or FCGIConfig.

    @ivar name: the canonical spelling (C{-processes}).
    @ivar field: the field it sets.
    @ivar kind: C{int}, C{float}, C{str}, C{flag}, C{env}, C{header},
        C{hostport}, C{user}, C{group}, or C{refused} (a known option
        txfastcgi rejects, with C{why} as the message).
    @ivar low: the smallest value.
    @ivar high: the largest value, C{None} for no stated bound.
    @ivar repeat: whether it may be given several times (values accumulate).
    @ivar why: for C{refused}, the message.
    @ivar target: C{values} for a field of the L{txfastcgi.appclass} value
        (or of L{DynamicConfig}), C{options} for one of L{ApplicationOptions}.
    """

    name: str
    field: str
    kind: str = "int"
    low: float = 0
    high: float | None = None
    repeat: bool = False
    why: str = ""
    target: str = "values"


def _table(*specs: OptionSpec, **aliases: str) -> Mapping[str, OptionSpec]:
    """
    @return: options by lower-case name, with aliases (keyword names use
        C{_} for C{-}).
    """
    table = {s.name.lower(): s for s in specs}
    for alias, target in aliases.items():
        table["-" + alias.lower()] = table[target.lower()]
    return table


_CONNECTION_OPTIONS = (
    OptionSpec("-appConnTimeout", "appConnTimeout", low=0, target="options"),
    OptionSpec("-idle-timeout", "idleTimeout", low=1, target="options"),
    OptionSpec("-flush", "flush", kind="flag", target="options"),
    OptionSpec(
        "-pass-header", "passHeaders", kind="header", repeat=True, target="options"
    ),
    OptionSpec(
        "-nph",
        "",
        kind="refused",
        why="-nph is not supported: responses are always parsed, and nph- "
        "scripts are refused",
    ),
)

APPCLASS_OPTIONS = _table(
    OptionSpec("-processes", "processes", low=1, high=50),
    OptionSpec("-listen-queue-depth", "listenQueueDepth", low=1),
    OptionSpec("-restart-delay", "restartDelay", low=0),
    OptionSpec("-priority", "priority", low=0, high=20),
    OptionSpec("-port", "port", low=1, high=65535),
    OptionSpec("-socket", "socket", kind="str"),
    OptionSpec("-initial-env", "initialEnv", kind="env", repeat=True),
    OptionSpec("-min-server-life", "minServerLife", low=0),
    OptionSpec("-user", "uid", kind="user"),
    OptionSpec("-group", "gid", kind="group"),
    OptionSpec("-init-start-delay", "initStartDelay", low=0),
    *_CONNECTION_OPTIONS,
)
"""AppClass / FastCgiServer options (SPEC.md sections 1.1 and 6)."""

EXTERNAL_OPTIONS = _table(
    OptionSpec("-host", "host", kind="hostport"),
    OptionSpec("-socket", "socket", kind="str"),
    *_CONNECTION_OPTIONS,
    OptionSpec(
        "-user",
        "",
        kind="refused",
        why="-user only applies to applications the server starts (AppClass)",
    ),
    OptionSpec(
        "-group",
        "",
        kind="refused",
        why="-group only applies to applications the server starts (AppClass)",
    ),
)
"""ExternalAppClass / FastCgiExternalServer options (SPEC.md sections 2, 6)."""

DYNAMIC_OPTIONS = _table(
    OptionSpec("-maxProcesses", "maxProcesses", low=1, high=250),
    OptionSpec("-minProcesses", "minProcesses", low=0, high=250),
    OptionSpec("-maxClassProcesses", "maxClassProcesses", low=1, high=250),
    OptionSpec("-killInterval", "killInterval", low=1),
    OptionSpec("-updateInterval", "updateInterval", low=1),
    OptionSpec("-gainValue", "gainValue", kind="float", low=0.0, high=1.0),
    OptionSpec("-singleThreshhold", "singleThreshold", low=0, high=100),
    OptionSpec("-multiThreshhold", "multiThreshold", low=0, high=100),
    OptionSpec("-startDelay", "startDelay", low=1),
    OptionSpec("-appConnTimeout", "appConnTimeout", low=0),
    OptionSpec("-processSlack", "processSlack", low=1, high=250),
    OptionSpec("-initial-env", "initialEnv", kind="env", repeat=True),
    OptionSpec("-init-start-delay", "initStartDelay", low=0),
    OptionSpec("-restart-delay", "restartDelay", low=0),
    OptionSpec("-listen-queue-depth", "listenQueueDepth", low=1),
    OptionSpec("-restart", "restart", kind="flag"),
    OptionSpec("-autoUpdate", "autoUpdate", kind="flag"),
    OptionSpec("-idle-timeout", "idleTimeout", low=1),
    OptionSpec("-pass-header", "passHeaders", kind="header", repeat=True),
    OptionSpec("-flush", "flush", kind="flag"),
    OptionSpec("-min-server-life", "minServerLife", low=0),
    singleThreshold="-singleThreshhold",
    multiThreshold="-multiThreshhold",
)
"""FCGIConfig / FastCgiConfig options (SPEC.md section 4.1 and later)."""


@dataclass
class _Options:
    """
    The parsed options of one mod_fastcgi line.

    @ivar values: fields of the L{txfastcgi.appclass} value or of
        L{DynamicConfig}.
    @ivar options: fields of L{ApplicationOptions}.
    @ivar userName: C{-user} as written.
    """

    values: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    userName: str | None = None


def _parseOptions(
    b: _Builder,
    d: Directive,
    tokens: tuple[str, ...],
    table: Mapping[str, OptionSpec],
    lastWins: bool,
) -> _Options:
    """
    Parse the options of a mod_fastcgi line.  Option names are
    case-insensitive; messages name them as written.

    @param b: the builder (for the environment and notes).
    @param d: the directive.
    @param tokens: the arguments after the path (all of them for FCGIConfig).
    @param table: the options it takes.
    @param lastWins: whether a repeated option replaces the earlier value
        (FCGIConfig) rather than being an error.
    @return: the values.
    @raise _Bad: for an unknown, repeated or bad option.
    """
    parsed = _Options()
    seen: set[str] = set()
    i = 0
    while i < len(tokens):
        written = tokens[i]
        spec = table.get(written.lower())
        if spec is None:
            if not written.startswith("-"):
                raise _Bad("expected an option starting with '-'", written)
            raise _Bad("unknown option", written)
        if spec.kind == "refused":
            raise _Bad(spec.why, written)
        if spec.name in seen and not spec.repeat and not lastWins:
            raise _Bad(f"{written} is given twice", written)
        seen.add(spec.name)
        into = parsed.values if spec.target == "values" else parsed.options
        if spec.kind == "flag":
            into[spec.field] = True
            i += 1
            continue
        if i + 1 >= len(tokens):
            raise _Bad(f"{written} needs a value")
        text = tokens[i + 1]
        i += 2
        value: Any
        if spec.kind == "int":
            high = None if spec.high is None else int(spec.high)
            value = _integer(text, written, int(spec.low), high)
        elif spec.kind == "float":
            assert spec.high is not None
            value = _number(text, written, spec.low, spec.high)
        elif spec.kind == "str":
            if not text or "\0" in text:
                raise _Bad(f"{written} needs a non-empty value", text)
            value = text
        elif spec.kind == "header":
            if not _HEADER_NAME.fullmatch(text):
                raise _Bad(f"{written} needs a header name", text)
            value = text
        elif spec.kind == "env":
            value = _initialEnv(b, d, written, text)
        elif spec.kind == "user":
            value = _userId(text, written)
            parsed.userName = text
        elif spec.kind == "group":
            value = _groupId(text, written)
        else:
            assert spec.kind == "hostport"
            value = _hostPort(written, text)
        if spec.repeat:
            into.setdefault(spec.field, []).append(value)
        else:
            into[spec.field] = value
    for into in (parsed.values, parsed.options):
        for name, value in into.items():
            if isinstance(value, list):
                into[name] = tuple(value)
    return parsed


def _userId(text: str, what: str) -> int:
    """
    Resolve a user name or C{#uid}.

    @raise _Bad: if there is no such user.
    """
    if text.startswith("#"):
        return _integer(text[1:], f"{what} #ID", 0, None)
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise _Bad(f"{what}: no such user", text) from None


def _groupId(text: str, what: str) -> int:
    """
    Resolve a group name or C{#gid}.

    @raise _Bad: if there is no such group.
    """
    if text.startswith("#"):
        return _integer(text[1:], f"{what} #ID", 0, None)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise _Bad(f"{what}: no such group", text) from None


def _initialEnv(b: _Builder, d: Directive, written: str, text: str) -> str:
    """
    Check an C{-initial-env} value: C{NAME=VALUE}, C{NAME=} (empty) or
    C{NAME} (copied from the server's environment when the processes start,
    SPEC.md Decision 5; noted now if the reader's environment lacks it).

    @return: the value as written.
    @raise _Bad: if the name is empty or holds blanks.
    """
    try:
        name, value = parseInitialEnv(text)
    except ValueError:
        raise _Bad(f"{written} needs NAME=VALUE or NAME", text) from None
    if any(c.isspace() for c in name):
        raise _Bad(f"{written} needs NAME=VALUE or NAME", text)
    if value is None and name not in b.environ:
        b.note(
            d.source,
            d.name,
            f"{written} {name}: {name} is not set in the server's environment; "
            "the application will not get it",
        )
    return text


def _hostPort(written: str, text: str) -> str:
    """
    Check C{-host HOST:PORT} (C{[IPv6]:PORT} too).

    @return: the value as written.
    @raise _Bad: if malformed.
    """
    message = f"{written} must be HOST:PORT with a port between 1 and 65535"
    m = _PORT_HOST.fullmatch(text)
    if m is None:
        raise _Bad(message, text)
    host = m.group(1) or m.group(2)
    if not _HOSTNAME.fullmatch(m.group(1) and f"[{host}]" or host):
        raise _Bad(message, text)
    if not m.group(3).isdigit() or not 1 <= int(m.group(3)) <= 65535:
        raise _Bad(message, text)
    return text


def _applicationPath(b: _Builder, d: Directive) -> str:
    """
    Resolve an application's path and refuse a redefinition.

    @return: the absolute, normalised path.
    @raise _Bad: if empty or already defined.
    """
    text = d.args[0]
    if not text or text.startswith("-") or "\0" in text:
        raise _Bad("the first argument must be the application's path", text)
    path = os.path.normpath(b.path(text))
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    for other in b.applications:
        if other.path == path:
            raise _Bad(
                f"redefinition of the application defined by {other.directive} "
                f"at {other.source}",
                text,
            )
    return path


def _appClass(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{AppClass PATH [options]} / C{FastCgiServer}.  Executability and socket
    paths are checked after the last line.
    """
    path = _applicationPath(b, d)
    parsed = _parseOptions(b, d, d.args[1:], APPCLASS_OPTIONS, lastWins=False)
    values = parsed.values
    if "port" in values and "socket" in values:
        raise _Bad(
            "-port and -socket are mutually exclusive",
            f"-port {values['port']} -socket {values['socket']}",
        )
    b.applications.append(
        _PendingApp(
            True,
            path,
            d.args[0],
            d.name,
            d.source,
            values,
            parsed.options,
            parsed.userName,
        )
    )


def _externalAppClass(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{ExternalAppClass PATH -host HOST:PORT|-socket NAME [options]} /
    C{FastCgiExternalServer}.  The path need not exist.
    """
    path = _applicationPath(b, d)
    parsed = _parseOptions(b, d, d.args[1:], EXTERNAL_OPTIONS, lastWins=False)
    values = parsed.values
    if ("host" in values) == ("socket" in values):
        if "host" in values:
            raise _Bad(
                "-host and -socket are mutually exclusive",
                f"-host {values['host']} -socket {values['socket']}",
            )
        raise _Bad("needs exactly one of -host HOST:PORT and -socket NAME")
    b.applications.append(
        _PendingApp(False, path, d.args[0], d.name, d.source, values, parsed.options)
    )


def _ipcDir(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{FastCgiIpcDir DIR}: stored; the server checks and creates it.
    """
    text = d.args[0]
    if not text or "\0" in text:
        raise _Bad("needs a directory", text)
    path = os.path.normpath(b.path(text))
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    b.setOnce(d, "ipcDir", IpcDirConfig(path, directive=d.name, source=d.source))


def _fcgiConfig(b: _Builder, d: Directive, scope: _DirectoryBuilder) -> None:
    """
    C{FCGIConfig options...} / C{FastCgiConfig}: combined with earlier
    lines, the last value of an option wins.
    """
    values = _parseOptions(b, d, d.args, DYNAMIC_OPTIONS, lastWins=True).values
    for name in ("initialEnv", "passHeaders"):
        if name in values:
            values[name] = tuple(b.dynamic.get(name, ())) + tuple(values[name])
    b.dynamic.update(values)
    b.dynamicSources.append(d.source)
    b.dynamicName = d.name


# --- the table -------------------------------------------------------------------

_Handler = Callable[[_Builder, Directive, _DirectoryBuilder], None]


def _spec(
    name: str,
    usage: str,
    low: int,
    high: int | None,
    contexts: Context,
    handler: _Handler,
) -> tuple[str, DirectiveSpec]:
    """
    @return: a table entry.
    """
    return name.lower(), DirectiveSpec(name, usage, low, high, contexts, handler)


DIRECTIVES: Mapping[str, DirectiveSpec] = dict(
    [
        _spec("Port", "Port NUMBER", 1, 1, Context.SERVER, _portDirective),
        _spec(
            "Listen", "Listen [ADDRESS:]PORT|ENDPOINT", 1, 1, Context.SERVER, _listen
        ),
        _spec(
            "BindAddress", "BindAddress ADDRESS|*", 1, 1, Context.SERVER, _bindAddress
        ),
        _spec(
            "ServerName", "ServerName HOST[:PORT]", 1, 1, Context.SERVER, _serverName
        ),
        _spec(
            "DocumentRoot",
            "DocumentRoot DIRECTORY",
            1,
            1,
            Context.SERVER,
            _documentRoot,
        ),
        _spec("ErrorLog", "ErrorLog FILE", 1, 1, Context.SERVER, _errorLog),
        _spec("TransferLog", "TransferLog FILE", 1, 1, Context.SERVER, _transferLog),
        _spec(
            "CustomLog",
            "CustomLog FILE FORMAT|NICKNAME [env=[!]VAR]",
            2,
            3,
            Context.SERVER,
            _customLog,
        ),
        _spec(
            "LogFormat", "LogFormat FORMAT [NICKNAME]", 1, 2, Context.SERVER, _logFormat
        ),
        _spec(
            "Alias",
            "Alias URL-PATH PATH",
            2,
            2,
            Context.SERVER,
            _alias(AliasKind.ALIAS),
        ),
        _spec(
            "ScriptAlias",
            "ScriptAlias URL-PATH PATH",
            2,
            2,
            Context.SERVER,
            _alias(AliasKind.SCRIPT_ALIAS),
        ),
        _spec("TypesConfig", "TypesConfig FILE", 1, 1, Context.SERVER, _typesConfig),
        _spec("User", "User NAME|#UID", 1, 1, Context.SERVER, _user),
        _spec("Group", "Group NAME|#GID", 1, 1, Context.SERVER, _group),
        _spec("SetHandler", "SetHandler HANDLER|None", 1, 1, _ANYWHERE, _setHandler),
        _spec(
            "AddHandler",
            "AddHandler HANDLER EXTENSION...",
            2,
            None,
            _ANYWHERE,
            _addHandler,
        ),
        _spec(
            "AddType", "AddType MEDIA-TYPE EXTENSION...", 2, None, _ANYWHERE, _addType
        ),
        _spec("ForceType", "ForceType MEDIA-TYPE|None", 1, 1, _ANYWHERE, _forceType),
        _spec("DefaultType", "DefaultType MEDIA-TYPE", 1, 1, _ANYWHERE, _defaultType),
        _spec(
            "Action",
            "Action HANDLER|MEDIA-TYPE URL-PATH [virtual]",
            2,
            3,
            _ANYWHERE,
            _action,
        ),
        _spec("SetEnv", "SetEnv NAME [VALUE]", 1, 2, _ANYWHERE, _setEnv),
        _spec("PassEnv", "PassEnv NAME...", 1, None, _ANYWHERE, _passEnv),
        _spec("UnsetEnv", "UnsetEnv NAME...", 1, None, _ANYWHERE, _unsetEnv),
        _spec(
            "DirectoryIndex",
            "DirectoryIndex FILE...",
            1,
            None,
            _ANYWHERE,
            _directoryIndex,
        ),
        _spec(
            "LimitRequestBody",
            "LimitRequestBody BYTES",
            1,
            1,
            _ANYWHERE,
            _limitRequestBody,
        ),
        _spec(
            "AppClass", "AppClass PATH [OPTIONS]", 1, None, Context.SERVER, _appClass
        ),
        _spec(
            "FastCgiServer",
            "FastCgiServer PATH [OPTIONS]",
            1,
            None,
            Context.SERVER,
            _appClass,
        ),
        _spec(
            "ExternalAppClass",
            "ExternalAppClass PATH -host HOST:PORT|-socket NAME [OPTIONS]",
            1,
            None,
            Context.SERVER,
            _externalAppClass,
        ),
        _spec(
            "FastCgiExternalServer",
            "FastCgiExternalServer PATH -host HOST:PORT|-socket NAME [OPTIONS]",
            1,
            None,
            Context.SERVER,
            _externalAppClass,
        ),
        _spec(
            "FastCgiIpcDir", "FastCgiIpcDir DIRECTORY", 1, 1, Context.SERVER, _ipcDir
        ),
        _spec(
            "FCGIConfig", "FCGIConfig OPTION...", 1, None, Context.SERVER, _fcgiConfig
        ),
        _spec(
            "FastCgiConfig",
            "FastCgiConfig OPTION...",
            1,
            None,
            Context.SERVER,
            _fcgiConfig,
        ),
        _spec("Options", "Options [+|-]OPTION...", 1, None, _ANYWHERE, _options),
        _spec(
            "AllowOverride",
            "AllowOverride None",
            1,
            None,
            Context.SERVER | Context.DIRECTORY,
            _allowOverride,
        ),
        *(
            _spec(
                role.value, f"{role.value} PATH [-compat]", 1, 2, _SECTIONS, _auth(role)
            )
            for role in AuthRole
        ),
        *(
            _spec(
                role.value + "Authoritative",
                f"{role.value}Authoritative On|Off",
                1,
                1,
                _SECTIONS,
                _authoritative(role),
            )
            for role in AuthRole
        ),
    ]
)
"""Directives by lower-case name.  C{ServerRoot}, C{Include},
C{IncludeOptional}, C{ResourceConfig}, C{AccessConfig} and C{<IfModule>} act
while reading (L{txfastcgi.config.reader})."""

_IGNORED_NAMES = {
    name.lower(): name
    for name in (
        "StartServers",
        "MinSpareServers",
        "MaxSpareServers",
        "MaxClients",
        "MaxRequestsPerChild",
        "MaxRequestWorkers",
        "MaxConnectionsPerChild",
        "ServerLimit",
        "ThreadLimit",
        "ThreadsPerChild",
        "MinSpareThreads",
        "MaxSpareThreads",
        "ScoreBoardFile",
        "Timeout",
        "KeepAlive",
        "KeepAliveTimeout",
        "MaxKeepAliveRequests",
        "HostnameLookups",
        "IdentityCheck",
        "ServerAdmin",
        "ServerType",
        "ServerTokens",
        "ServerSignature",
        "UseCanonicalName",
        "PidFile",
        "LockFile",
        "Mutex",
        "AcceptMutex",
        "CoreDumpDirectory",
        "ListenBacklog",
        "SendBufferSize",
        "EnableSendfile",
        "EnableMMAP",
        "ExtendedStatus",
        "LogLevel",
        "LoadModule",
        "AddModule",
        "ClearModuleList",
    )
}

IGNORED = frozenset(_IGNORED_NAMES)
"""Lower-case names of directives accepted and noted once as ignored."""

UNSUPPORTED = frozenset(
    name.lower()
    for name in (
        "AccessFileName",
        "Order",
        "Allow",
        "Deny",
        "Require",
        "Satisfy",
        "AuthType",
        "AuthName",
        "AuthUserFile",
        "AuthGroupFile",
        "Redirect",
        "RedirectMatch",
        "RedirectTemp",
        "RedirectPermanent",
        "AliasMatch",
        "ScriptAliasMatch",
        "RewriteEngine",
        "RewriteRule",
        "RewriteCond",
        "RewriteBase",
        "ErrorDocument",
        "Header",
        "RequestHeader",
        "ProxyPass",
        "ProxyPassReverse",
        "SSLEngine",
        "SSLCertificateFile",
        "SSLCertificateKeyFile",
        "UserDir",
        "RemoveHandler",
        "RemoveType",
        "AddEncoding",
        "AddLanguage",
        "AddCharset",
        "AddDefaultCharset",
        "FastCgiWrapper",
        "FastCgiSuexec",
        "SetEnvIf",
        "BrowserMatch",
        "ScriptLog",
        "IndexOptions",
        "DirectoryIndexRedirect",
        "DirectorySlash",
        "LimitRequestFields",
        "LimitRequestFieldSize",
        "LimitRequestLine",
    )
)
"""Lower-case names of Apache directives refused because ignoring them would
change what the server does (access control, redirects, ...)."""


_UNSUPPORTED_SECTIONS = frozenset(
    {
        "limit",
        "limitexcept",
        "proxy",
        "proxymatch",
        "ifdefine",
        "ifversion",
        "if",
        "elseif",
        "else",
        "requireall",
        "requireany",
        "requirenone",
        "macro",
    }
)
"""Lower-case names of Apache sections refused as not implemented."""


def buildConfig(
    read: ReadResult,
    *,
    environ: Mapping[str, str],
    checkEndpoint: EndpointCheck | None = None,
) -> ServerConfig:
    """
    Apply the directive table to what L{txfastcgi.config.reader.readTree}
    read.

    @param read: the statements and the ServerRoot.
    @param environ: the server's environment, for C{PassEnv} and
        C{-initial-env NAME}.
    @param checkEndpoint: called with each C{Listen} endpoint description;
        an exception it raises becomes a L{ConfigError} at that line.
    @return: the configuration.
    @raise ConfigError: at the first problem.
    """
    builder = _Builder(read, environ, checkEndpoint)
    builder.walk()
    return builder.finish()
