# -*- test-case-name: tests.test_config_directives -*-
"""
The values a configuration file produces: frozen dataclasses, each
carrying the L{Source} of the statement that set it, so that later steps
(the URL mapping, the supervisor, the resources) can report problems at the
right line too.

Nothing here merges per-directory settings: a L{ServerConfig} keeps the
server-level L{DirectoryConfig} and every section's own L{DirectoryConfig}
with the section's kind and pattern, in file order, for the mapping step
to merge in Apache's order (Directory, DirectoryMatch, Files and
FilesMatch, Location and LocationMatch).

The managed and external application values are
L{txfastcgi.appclass}'s (L{AppClassConfig}, L{ExternalAppClassConfig},
L{IpcDirConfig}), which the supervisor consumes; the options they do not
hold are in L{ApplicationOptions}.  L{DynamicConfig} (FCGIConfig) is
defined here.  Defaults are the seed's (SPEC.md sections 1.1 and 4.1)
except C{-listen-queue-depth} (100, Decision 2); the defaults of options
the seed did not have are those of mod_fastcgi 2.4 (SPEC.md section 6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

from txfastcgi.appclass import (
    DEFAULT_IPC_DIR,
    AppClassConfig,
    ExternalAppClassConfig,
    IpcDirConfig,
)
from txfastcgi.config.errors import Source

__all__ = [
    "ActionRule",
    "AliasConfig",
    "AliasKind",
    "AppClassConfig",
    "ApplicationOptions",
    "AuthRole",
    "AuthorizerConfig",
    "CustomLog",
    "DEFAULT_DIRECTORY_INDEX",
    "DEFAULT_OPTIONS",
    "DEFAULT_IPC_DIR",
    "DEFAULT_PORT",
    "DEFAULT_TYPE",
    "DirectoryConfig",
    "DynamicConfig",
    "EnvOp",
    "EnvRule",
    "ExtensionRule",
    "ExternalAppClassConfig",
    "GroupConfig",
    "IpcDirConfig",
    "ListenConfig",
    "LogFormat",
    "LogItem",
    "Note",
    "OPTION_NAMES",
    "OptionsSetting",
    "SectionConfig",
    "SectionKind",
    "ServerConfig",
    "Setting",
    "Source",
    "UserConfig",
]

_T = TypeVar("_T")

DEFAULT_PORT = 80
"""Apache's port when neither C{Port} nor C{Listen} is given."""

DEFAULT_DIRECTORY_INDEX = ("index.html",)
"""Apache's C{DirectoryIndex} when none is configured."""

DEFAULT_TYPE = "text/plain"
"""Apache 1.x's C{DefaultType} when none is configured."""


@dataclass(frozen=True)
class Setting(Generic[_T]):
    """
    A single value set by a directive.

    @ivar value: the value.
    @ivar source: where it was set.
    """

    value: _T
    source: Source


@dataclass(frozen=True)
class Note:
    """
    Something the server should log once at startup: an ignored directive, or
    a warning about a value that is legal but probably not meant.

    @ivar source: where the statement was written.
    @ivar directive: the directive's name as written.
    @ivar message: what to say, in the same style as an error message.
    """

    source: Source
    directive: str
    message: str

    def __str__(self) -> str:
        """
        @return: C{FILE:LINE: DIRECTIVE: MESSAGE}.
        """
        return f"{self.source}: {self.directive}: {self.message}"


class SectionKind(Enum):
    """
    The kinds of per-directory sections.  C{<Directory ~ re>},
    C{<Location ~ re>} and C{<Files ~ re>} are the C{*_MATCH} kinds.
    """

    DIRECTORY = "Directory"
    DIRECTORY_MATCH = "DirectoryMatch"
    FILES = "Files"
    FILES_MATCH = "FilesMatch"
    LOCATION = "Location"
    LOCATION_MATCH = "LocationMatch"

    @property
    def isRegex(self) -> bool:
        """
        Whether the section's pattern is a regular expression.
        """
        return self.name.endswith("_MATCH")


@dataclass(frozen=True)
class ExtensionRule:
    """
    C{AddHandler} or C{AddType}: a handler or media type for file-name
    extensions.

    @ivar name: the handler name or the media type (lower-case).
    @ivar extensions: the extensions, lower-case, without the leading dot.
    @ivar source: where it was set.
    """

    name: str
    extensions: tuple[str, ...]
    source: Source


@dataclass(frozen=True)
class ActionRule:
    """
    C{Action}: requests whose handler or media type is C{actionType} are
    served by the script at C{url} (mod_actions).

    @ivar actionType: a handler name or a media type (lower-case).
    @ivar url: the URL path of the script, starting with C{/}.
    @ivar virtual: C{Action ... virtual}: do not require the requested file
        to exist.
    @ivar source: where it was set.
    """

    actionType: str
    url: str
    virtual: bool
    source: Source


class EnvOp(Enum):
    """
    What a mod_env rule does.
    """

    SET = "SetEnv"
    PASS = "PassEnv"
    UNSET = "UnsetEnv"


@dataclass(frozen=True)
class EnvRule:
    """
    One mod_env rule, kept in file order.

    @ivar op: set, pass from the server's environment, or unset.
    @ivar name: the variable.
    @ivar value: for C{SET}, the value; for C{PASS}, the value the server's
        environment had when the configuration was read (C{None} if unset,
        which was noted); for C{UNSET}, C{None}.
    @ivar source: where it was set.
    """

    op: EnvOp
    name: str
    value: str | None
    source: Source


class AuthRole(Enum):
    """
    The Apache phase a FastCGI Authorizer-role application takes part in
    (mod_fastcgi 2.2; the app sees it as C{FCGI_APACHE_ROLE}).
    """

    AUTHENTICATOR = "FastCgiAuthenticator"
    AUTHORIZER = "FastCgiAuthorizer"
    ACCESS_CHECKER = "FastCgiAccessChecker"


@dataclass(frozen=True)
class AuthorizerConfig:
    """
    C{FastCgiAuthenticator}, C{FastCgiAuthorizer} or C{FastCgiAccessChecker}.

    @ivar role: which phase.
    @ivar path: the application's path (ServerRoot-relative paths
        resolved); a static, external or dynamic application.
    @ivar compat: C{-compat}: only C{Variable-*} reply headers become
        variables, as the FastCGI specification says.
    @ivar source: where it was set.
    """

    role: AuthRole
    path: str
    compat: bool
    source: Source


OPTION_NAMES = (
    "ExecCGI",
    "FollowSymLinks",
    "Includes",
    "IncludesNOEXEC",
    "Indexes",
    "MultiViews",
    "SymLinksIfOwnerMatch",
)
"""The names C{Options} takes, besides C{All} and C{None}."""

DEFAULT_OPTIONS = frozenset({"FollowSymLinks"})
"""The options in force where no C{Options} applies (Apache 2.4's
default; Apache 1.x's was C{All})."""


@dataclass(frozen=True)
class OptionsSetting:
    """
    An C{Options} directive.  Apache merges levels like this: a directive
    whose names are all absolute (no C{+}/C{-}) replaces what the enclosing
    levels gave; one whose names are all relative adds (C{+}) and removes
    (C{-}) from it.  Mixing both kinds is refused here, as Apache 2.4 does.

    @ivar absolute: whether the names replace (C{True}) or adjust.
    @ivar add: the names set (absolute) or added (relative), canonical
        spelling, C{All} expanded; empty for C{Options None}.
    @ivar remove: the names removed (relative only).
    @ivar source: where it was written.
    """

    absolute: bool
    add: frozenset[str]
    remove: frozenset[str]
    source: Source

    def applyTo(self, inherited: frozenset[str]) -> frozenset[str]:
        """
        The options in force after this directive.

        @param inherited: the options the enclosing levels give.
        @return: the options in force.
        """
        if self.absolute:
            return self.add
        return (inherited - self.remove) | self.add


@dataclass(frozen=True)
class DirectoryConfig:
    """
    The per-directory settings written at one level: the server level or
    one section.  C{None} or an empty tuple means "not set here".

    @ivar setHandler: C{SetHandler}; a value of C{None} is C{SetHandler None}.
    @ivar forceType: C{ForceType}; a value of C{None} is C{ForceType None}.
    @ivar defaultType: C{DefaultType}.
    @ivar addHandlers: C{AddHandler} rules in order.
    @ivar addTypes: C{AddType} rules in order.
    @ivar actions: C{Action} rules in order.
    @ivar env: C{SetEnv}, C{PassEnv} and C{UnsetEnv} rules in order.
    @ivar directoryIndex: C{DirectoryIndex} names (the last directive wins).
    @ivar limitRequestBody: C{LimitRequestBody} bytes, 0 for no limit.
    @ivar options: C{Options} (the last one wins here; see L{OptionsSetting}
        for how levels combine).
    @ivar authenticator: C{FastCgiAuthenticator}.
    @ivar authorizer: C{FastCgiAuthorizer}.
    @ivar accessChecker: C{FastCgiAccessChecker}.
    @ivar authenticatorAuthoritative: C{FastCgiAuthenticatorAuthoritative}.
    @ivar authorizerAuthoritative: C{FastCgiAuthorizerAuthoritative}.
    @ivar accessCheckerAuthoritative: C{FastCgiAccessCheckerAuthoritative}.
    """

    setHandler: Setting[str | None] | None = None
    forceType: Setting[str | None] | None = None
    defaultType: Setting[str] | None = None
    addHandlers: tuple[ExtensionRule, ...] = ()
    addTypes: tuple[ExtensionRule, ...] = ()
    actions: tuple[ActionRule, ...] = ()
    env: tuple[EnvRule, ...] = ()
    directoryIndex: Setting[tuple[str, ...]] | None = None
    limitRequestBody: Setting[int] | None = None
    options: OptionsSetting | None = None
    authenticator: AuthorizerConfig | None = None
    authorizer: AuthorizerConfig | None = None
    accessChecker: AuthorizerConfig | None = None
    authenticatorAuthoritative: Setting[bool] | None = None
    authorizerAuthoritative: Setting[bool] | None = None
    accessCheckerAuthoritative: Setting[bool] | None = None


@dataclass(frozen=True)
class SectionConfig:
    """
    One per-directory section and what is set inside it.

    @ivar kind: the section's kind.
    @ivar pattern: its argument: a URL path or file-system path (with
        Apache wildcards), a file name, or a regular expression.  Directory
        paths are absolute (ServerRoot-relative ones resolved).
    @ivar config: the settings written inside it.
    @ivar within: for a C{<Files>} or C{<FilesMatch>} inside a
        C{<Directory>} section, that section; otherwise C{None}.
    @ivar source: where the section was opened.
    """

    kind: SectionKind
    pattern: str
    config: DirectoryConfig
    within: SectionConfig | None
    source: Source


@dataclass(frozen=True)
class ListenConfig:
    """
    One listening address: C{Listen}, or C{Port} with C{BindAddress}.

    Either C{port} is set (a TCP address, C{host} C{None} for all
    interfaces) or C{endpoint} is (a Twisted server endpoint description,
    such as C{ssl:443:privateKey=key.pem}, that the server validates).

    @ivar host: the address to bind, or C{None} for all.
    @ivar port: the TCP port.
    @ivar endpoint: a Twisted endpoint description.
    @ivar source: where it was set; C{None} for the default port.
    """

    host: str | None
    port: int | None
    endpoint: str | None
    source: Source | None

    def endpointDescription(self) -> str:
        """
        The listener as a Twisted server endpoint description.

        @return: C{endpoint} itself, or C{tcp:PORT} / C{tcp:PORT:interface=HOST}
            (colons in an IPv6 address escaped).
        """
        if self.endpoint is not None:
            return self.endpoint
        description = f"tcp:{self.port}"
        if self.host is not None:
            description += ":interface=" + self.host.replace(":", "\\:")
        return description


@dataclass(frozen=True)
class LogItem:
    """
    One C{%} directive of a log format (mod_log_config).

    @ivar letter: the directive letter (C{h}, C{s}, C{t}, ...); C{%} for a
        literal per cent sign is never an item (it is literal text).
    @ivar argument: the C{{...}} argument, if any.
    @ivar final: C{True} for C{%>s}, C{False} for C{%<s}, C{None} if neither.
    @ivar statuses: the status codes of a C{%400,501{...}i} condition.
    @ivar negated: whether the condition was C{!}-negated.
    """

    letter: str
    argument: str | None = None
    final: bool | None = None
    statuses: tuple[int, ...] = ()
    negated: bool = False


@dataclass(frozen=True)
class LogFormat:
    """
    A parsed log format.

    @ivar format: the format string as written (after the config file's
        quotes and escapes).
    @ivar parts: literal text (C{\\n} and C{\\t} escapes resolved) and
        L{LogItem}s, in order.
    """

    format: str
    parts: tuple[str | LogItem, ...]


@dataclass(frozen=True)
class CustomLog:
    """
    An access log: C{CustomLog} or C{TransferLog}.

    @ivar path: the file, absolute (ServerRoot-relative paths resolved).
    @ivar format: the format it writes.
    @ivar nickname: the nickname the format was named by, if any.
    @ivar condition: the C{env=[!]NAME} condition as written, if any.
    @ivar source: where it was set.
    """

    path: str
    format: LogFormat
    nickname: str | None
    condition: str | None
    source: Source


class AliasKind(Enum):
    """
    C{Alias} maps to documents, C{ScriptAlias} to CGI scripts.
    """

    ALIAS = "Alias"
    SCRIPT_ALIAS = "ScriptAlias"


@dataclass(frozen=True)
class AliasConfig:
    """
    C{Alias} or C{ScriptAlias}.

    @ivar kind: which one.
    @ivar urlPath: the URL prefix, as written.
    @ivar path: the file-system path it maps to (ServerRoot-relative ones
        resolved; a trailing slash kept).
    @ivar source: where it was set.
    """

    kind: AliasKind
    urlPath: str
    path: str
    source: Source


@dataclass(frozen=True)
class UserConfig:
    """
    C{User}: the account the server (and its applications) run as.

    @ivar name: as written (C{#1000} for a numeric id).
    @ivar uid: the numeric id.
    @ivar gid: the user's primary group, if the account exists.
    @ivar source: where it was set.
    """

    name: str
    uid: int
    gid: int | None
    source: Source


@dataclass(frozen=True)
class GroupConfig:
    """
    C{Group}.

    @ivar name: as written (C{#1000} for a numeric id).
    @ivar gid: the numeric id.
    @ivar source: where it was set.
    """

    name: str
    gid: int
    source: Source


@dataclass(frozen=True)
class ApplicationOptions:
    """
    The options of an C{AppClass} or C{ExternalAppClass} line (or their
    later names) that L{txfastcgi.appclass}'s values do not hold: mod_fastcgi
    2.x options about connections to the application, for the gateway.
    Defaults are mod_fastcgi 2.4's.

    @ivar path: the application's path, as in its L{AppClassConfig} or
        L{ExternalAppClassConfig}.
    @ivar appConnTimeout: C{-appConnTimeout} seconds, 0 for no limit of
        our own.
    @ivar idleTimeout: C{-idle-timeout} seconds of application silence.
    @ivar flush: C{-flush} (accepted; output is always streamed, Decision 10).
    @ivar passHeaders: C{-pass-header} names in order.
    @ivar source: where the line was written, C{None} for the defaults.
    """

    path: str
    appConnTimeout: int = 0
    idleTimeout: int = 30
    flush: bool = False
    passHeaders: tuple[str, ...] = ()
    source: Source | None = None


@dataclass(frozen=True)
class DynamicConfig:
    """
    C{FCGIConfig} / C{FastCgiConfig}: the parameters of dynamic applications
    (SPEC.md section 4).  Several lines combine; the last value of an option
    wins.

    @ivar maxProcesses: C{-maxProcesses}.
    @ivar minProcesses: C{-minProcesses}.
    @ivar maxClassProcesses: C{-maxClassProcesses}.
    @ivar killInterval: C{-killInterval} seconds.
    @ivar updateInterval: C{-updateInterval} seconds.
    @ivar gainValue: C{-gainValue}.
    @ivar singleThreshold: C{-singleThreshhold}/C{-singleThreshold}; 0 never
        kills the last process of a class.
    @ivar multiThreshold: C{-multiThreshhold}/C{-multiThreshold}.
    @ivar startDelay: C{-startDelay} seconds.
    @ivar appConnTimeout: C{-appConnTimeout} seconds, 0 for no limit.
    @ivar processSlack: C{-processSlack}.
    @ivar initialEnv: C{-initial-env} values as written (C{NAME=VALUE} or
        C{NAME}), in order, across lines; resolve them with
        L{txfastcgi.appclass.resolveInitialEnv}.
    @ivar initStartDelay: C{-init-start-delay} seconds.
    @ivar restartDelay: C{-restart-delay} seconds.
    @ivar listenQueueDepth: C{-listen-queue-depth}.
    @ivar restart: C{-restart}: restart dynamic applications that die.
    @ivar autoUpdate: C{-autoUpdate}: restart an application whose file is
        newer than its socket.
    @ivar idleTimeout: C{-idle-timeout} seconds.
    @ivar minServerLife: C{-min-server-life} seconds.
    @ivar flush: C{-flush}.
    @ivar passHeaders: C{-pass-header} names in order.
    @ivar sources: where each C{FCGIConfig} line was written, in order.
    """

    maxProcesses: int = 50
    minProcesses: int = 5
    maxClassProcesses: int = 10
    killInterval: int = 300
    updateInterval: int = 300
    gainValue: float = 0.5
    singleThreshold: int = 10
    multiThreshold: int = 50
    startDelay: int = 3
    appConnTimeout: int = 15
    processSlack: int = 5
    initialEnv: tuple[str, ...] = ()
    initStartDelay: int = 1
    restartDelay: int = 5
    listenQueueDepth: int = 100
    restart: bool = False
    autoUpdate: bool = False
    idleTimeout: int = 30
    minServerLife: int = 30
    flush: bool = False
    passHeaders: tuple[str, ...] = ()
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True)
class ServerConfig:
    """
    Everything a configuration file says.

    @ivar files: every file read, in order (main file first).
    @ivar serverRoot: the ServerRoot, absolute.
    @ivar port: C{Port}.
    @ivar bindAddress: C{BindAddress} (C{None} value for C{*}); ignored,
        with a note, when there are C{Listen} directives.
    @ivar listens: C{Listen} directives in order.
    @ivar serverName: C{ServerName}.
    @ivar documentRoot: C{DocumentRoot}, absolute.
    @ivar errorLog: C{ErrorLog}, absolute; C{None}: the server logs where
        twistd logs.
    @ivar logs: access logs (C{TransferLog}, C{CustomLog}) in order.
    @ivar aliases: C{Alias} and C{ScriptAlias} in order.
    @ivar typesConfig: C{TypesConfig}, absolute.  Apache required a
        C{mime.types} file; without C{TypesConfig} txfastcgi reads none and
        the server uses its built-in table.
    @ivar mimeTypes: the C{(extension, media type)} pairs read from the
        C{TypesConfig} file, in file order.
    @ivar user: C{User}.
    @ivar group: C{Group}.
    @ivar server: per-directory settings written outside any section.
    @ivar sections: per-directory sections in file order.
    @ivar ipcDir: C{FastCgiIpcDir}.
    @ivar appClasses: C{AppClass}/C{FastCgiServer} in order.
    @ivar externalAppClasses: C{ExternalAppClass}/C{FastCgiExternalServer}
        in order.
    @ivar applicationOptions: the other options of both, in order (see
        L{optionsFor}).
    @ivar dynamic: C{FCGIConfig}/C{FastCgiConfig} combined.
    @ivar notes: ignored directives (each name once) and warnings, in order.
    """

    files: tuple[str, ...]
    serverRoot: str
    port: Setting[int] | None = None
    bindAddress: Setting[str | None] | None = None
    listens: tuple[ListenConfig, ...] = ()
    serverName: Setting[str] | None = None
    documentRoot: Setting[str] | None = None
    errorLog: Setting[str] | None = None
    logs: tuple[CustomLog, ...] = ()
    aliases: tuple[AliasConfig, ...] = ()
    typesConfig: Setting[str] | None = None
    mimeTypes: tuple[tuple[str, str], ...] = ()
    user: UserConfig | None = None
    group: GroupConfig | None = None
    server: DirectoryConfig = field(default_factory=DirectoryConfig)
    sections: tuple[SectionConfig, ...] = ()
    ipcDir: IpcDirConfig = field(default_factory=IpcDirConfig)
    appClasses: tuple[AppClassConfig, ...] = ()
    externalAppClasses: tuple[ExternalAppClassConfig, ...] = ()
    applicationOptions: tuple[ApplicationOptions, ...] = ()
    dynamic: DynamicConfig = field(default_factory=DynamicConfig)
    notes: tuple[Note, ...] = ()

    @property
    def listeners(self) -> tuple[ListenConfig, ...]:
        """
        The addresses to listen on: the C{Listen} directives if there are
        any (then C{Port} only names the port in self-referring URLs, as in
        Apache 1.x), else C{Port} (default 80) on C{BindAddress} (default all
        interfaces).
        """
        if self.listens:
            return self.listens
        port = self.port.value if self.port is not None else DEFAULT_PORT
        host = self.bindAddress.value if self.bindAddress is not None else None
        source = self.port.source if self.port is not None else None
        return (ListenConfig(host, port, None, source),)

    @property
    def serverPort(self) -> int:
        """
        The port for self-referring URLs and C{SERVER_PORT} defaults: C{Port},
        else the first TCP listener's port, else 80.
        """
        if self.port is not None:
            return self.port.value
        for listen in self.listens:
            if listen.port is not None:
                return listen.port
        return DEFAULT_PORT

    def optionsFor(self, path: str) -> ApplicationOptions:
        """
        The L{ApplicationOptions} of the static or external application at
        C{path}.

        @param path: the application's normalised path.
        @return: its options, or the defaults if there is no such
            application (dynamic ones).
        """
        for options in self.applicationOptions:
            if options.path == path:
                return options
        return ApplicationOptions(path)

    @property
    def documentRootPath(self) -> str:
        """
        The document root: C{DocumentRoot}, else C{htdocs} under the
        ServerRoot as in Apache.
        """
        if self.documentRoot is not None:
            return self.documentRoot.value
        return self.serverRoot.rstrip("/") + "/htdocs"
