# -*- test-case-name: tests.test_routing -*-
"""
From a request's URL path to what serves it, as Apache 1.3 with mod_alias,
mod_mime, mod_dir, mod_actions, mod_cgi and mod_fastcgi does it (SPEC.md
sections 5.1, 5.2 and 8).  Pure: file-system look-ups go through an
injectable C{stat}/C{lstat}; nothing from C{twisted.internet} or
C{twisted.web}.

L{Router.route} takes the percent-decoded path segments of a request and
returns a frozen L{Route}.  The steps:

  1. B{Refusals.}  A segment that is C{.} or C{..}, or holds C{/} (an
     encoded C{%2F}) or NUL once decoded, gives L{RouteKind.NOT_FOUND}
     (Apache's C{AllowEncodedSlashes Off} answers 404; twisted.web does not
     resolve dot segments, so they are refused rather than resolved).  Empty
     segments (C{//}) are collapsed; a trailing slash is kept.
  2. B{URL to file name} (mod_alias C{translate_name}): the first C{Alias}
     or C{ScriptAlias}, in file order, whose URL path matches -- a prefix
     match where runs of C{/} match runs of C{/}, ending at a C{/} boundary
     -- replaces that prefix by its path; otherwise the C{DocumentRoot} is
     put in front.  Runs of C{/} in the file name are collapsed.
  3. B{Path info} (C{get_path_info}): the file name is walked back component
     by component until C{stat} succeeds.  A regular file found keeps the
     stripped tail as path info; a directory found I{after} stripping gives
     the directory plus the first stripped component (a file that does not
     exist) as file name and the rest as path info.  C{stat} failing with
     anything but C{ENOENT}/C{ENOTDIR} is L{RouteKind.FORBIDDEN}.
     C{SCRIPT_NAME} is the URL before the path info, matched from the right
     and extended to the next C{/} (C{ap_find_path_info});
     C{PATH_TRANSLATED} is the path info mapped as a URL by step 2.
  4. B{Per-directory configuration}, merged in Apache's order over the
     server level: C{<Directory>} sections by number of path components
     (shortest first, file order among equals) matched against the
     directory prefixes of the file name (literal or with C{*?[]}
     wildcards that do not cross C{/}); then C{<DirectoryMatch>} (and
     C{<Directory ~>}) in file order, searched in the file's directory
     with a trailing C{/}; then C{<Files>}/C{<FilesMatch>} on the base name
     (server-level ones, then those nested in the matching directory
     sections, in that order); then C{<Location>}/C{<LocationMatch>} in
     file order on the URL, a plain prefix matching only at a C{/}
     boundary (C{/examples/echo} does not match C{/examples/echo.fcg}).
     Later levels override earlier ones field by field; C{AddHandler},
     C{AddType} and C{Action} merge per extension or type; C{SetEnv},
     C{PassEnv} and C{UnsetEnv} rules accumulate in order; C{Options}
     combine with L{OptionsSetting.applyTo}.  When the result has neither
     C{FollowSymLinks} nor C{SymLinksIfOwnerMatch}, a symbolic link in the
     file name below the document root or alias target is
     L{RouteKind.FORBIDDEN} (with C{SymLinksIfOwnerMatch}, unless the link
     and its target have the same owner).
  5. B{Handler and media type} (mod_mime C{find_ct}): every extension of the
     base name (after its first dot, in order, later ones winning) is
     looked up in the C{AddType} rules, then in C{TypesConfig} (or Python's
     C{mimetypes} table when there is none), and in the C{AddHandler} rules.
     C{ForceType} overrides the type; no type at all is C{DefaultType}.  The
     handler is C{SetHandler}, else C{cgi-script} under a C{ScriptAlias}
     (which so wins over C{AddHandler} and C{AddType}: seed note 3), else
     the extension's handler.  A directory always has the type
     C{httpd/unix-directory} and only a C{ScriptAlias} handler, as in Apache
     1.3.  Without a handler, the media type names the handler (Apache 1.x),
     so C{AddType application/x-httpd-fcgi .fcg} selects FastCGI.
  6. B{Dispatch}, in the order Apache's handler table gives:
     C{fastcgi-script} or C{application/x-httpd-fcgi} is
     L{RouteKind.FASTCGI} (a C{nph-} base name or a directory is forbidden,
     as in mod_fastcgi 2.0; the application is the C{AppClass} or
     C{ExternalAppClass} whose path-name equals the normalised file name;
     with none, an executable regular file inside the document root or
     alias target, symbolic links resolved, is a dynamic application
     (L{Route.dynamic}), a missing file L{RouteKind.NOT_FOUND}, anything
     else L{RouteKind.FORBIDDEN}); C{cgi-script} or
     C{application/x-httpd-cgi} is L{RouteKind.CGI} (needs a
     C{ScriptAlias} or C{Options ExecCGI}, an existing executable regular
     file, and no C{nph-} prefix: non-parsed headers are not supported);
     C{httpd/unix-directory} is L{RouteKind.DIRECTORY} (mod_dir: without a
     trailing slash L{RouteKind.REDIRECT} to the URL with one; else the first
     C{DirectoryIndex} name that routes to a regular file, else a listing
     with C{Options Indexes}, else forbidden); a handler or type with an
     C{Action} is L{RouteKind.ACTION} (the requested file must exist unless
     the action is C{virtual}; the action script is routed for the URL
     C{action URL + original URL}, so its C{SCRIPT_NAME} is the action URL
     and its C{PATH_INFO}/C{PATH_TRANSLATED} name the original document);
     anything else is L{RouteKind.STATIC} for an existing regular file
     without path info (Apache 2's C{AcceptPathInfo} default for files;
     an unknown handler falls back to the default handler as in Apache 1.3).

Caching: alias and section patterns are compiled once per L{Router};
merged configurations are cached per (directory, base name, matching
Location sections), which is bounded by the file tree rather than by the
URLs asked for.  Only the C{stat} calls of step 3 (and the C{lstat} calls of
the symbolic-link check when it applies) are made per request, unless the
router was given a C{cacheSeconds}: then a route is reused for requests with
the same path segments for that long (at most L{ROUTE_CACHE_SIZE} of them;
redirects, whose location carries the query, are not kept), so a file that
appears, disappears or changes kind is noticed within that time.  The
configured server uses one second (L{txfastcgi.gateway.ROUTE_CACHE_SECONDS}).
"""

from __future__ import annotations

import errno
import mimetypes
import os
import re
import stat as statModule
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from types import MappingProxyType

from txfastcgi.config.model import (
    DEFAULT_DIRECTORY_INDEX,
    DEFAULT_OPTIONS,
    DEFAULT_TYPE,
    ActionRule,
    AliasKind,
    AuthorizerConfig,
    DirectoryConfig,
    EnvOp,
    EnvRule,
    SectionConfig,
    SectionKind,
    ServerConfig,
)

__all__ = [
    "CGI_HANDLERS",
    "DIRECTORY_TYPE",
    "FASTCGI_HANDLERS",
    "MAX_ACTION_DEPTH",
    "MergedConfig",
    "Route",
    "RouteKind",
    "Router",
    "findPathInfo",
]

FASTCGI_HANDLERS = frozenset({"fastcgi-script", "application/x-httpd-fcgi"})
"""The handler names mod_fastcgi registers."""

CGI_HANDLERS = frozenset({"cgi-script", "application/x-httpd-cgi"})
"""The handler names mod_cgi registers."""

DIRECTORY_TYPE = "httpd/unix-directory"
"""Apache's C{DIR_MAGIC_TYPE}: the media type of a directory (mod_dir)."""

MAX_ACTION_DEPTH = 10
"""How many C{Action} (and directory index) redirections one route may
follow before it is L{RouteKind.SERVER_ERROR} (Apache's redirect limit)."""

_CACHE_LIMIT = 4096

StatFunction = Callable[[str], os.stat_result]


class RouteKind(Enum):
    """
    What serves a request.
    """

    FASTCGI = "fastcgi"
    """A FastCGI Responder: L{Route.app} names the application."""
    CGI = "cgi"
    """A CGI script: L{Route.filename}."""
    STATIC = "static"
    """A regular file sent as it is."""
    DIRECTORY = "directory"
    """A directory: its index (L{Route.target}) or, without one, a listing."""
    REDIRECT = "redirect"
    """A redirect to L{Route.location} (a directory without its slash)."""
    ACTION = "action"
    """An C{Action}: L{Route.target} is the action script's route."""
    NOT_FOUND = "not found"
    """404; L{Route.reason} says why."""
    FORBIDDEN = "forbidden"
    """403; L{Route.reason} says why."""
    SERVER_ERROR = "server error"
    """500 (too many C{Action} redirections); L{Route.reason} says why."""


@dataclass(frozen=True, eq=False, slots=True)
class MergedConfig:
    """
    The per-directory settings in force for one file and URL: the server
    level and every matching section merged in Apache's order.

    @ivar setHandler: C{SetHandler}, L{None} if unset or C{None}.
    @ivar forceType: C{ForceType}, L{None} if unset or C{None}.
    @ivar defaultType: C{DefaultType} (C{text/plain} by default).
    @ivar handlers: C{AddHandler}: extension to handler name.
    @ivar types: C{AddType}: extension to media type.
    @ivar actions: C{Action}: handler name or media type to its rule.
    @ivar env: the C{SetEnv}/C{PassEnv}/C{UnsetEnv} rules in order.
    @ivar variables: what the rules give, in order (see L{environment}).
    @ivar directoryIndex: C{DirectoryIndex} names.
    @ivar limitRequestBody: C{LimitRequestBody} bytes, 0 for no limit.
    @ivar options: the C{Options} in force.
    @ivar authenticator: C{FastCgiAuthenticator}, if any.
    @ivar authorizer: C{FastCgiAuthorizer}, if any.
    @ivar accessChecker: C{FastCgiAccessChecker}, if any.
    @ivar authenticatorAuthoritative: C{FastCgiAuthenticatorAuthoritative}.
    @ivar authorizerAuthoritative: C{FastCgiAuthorizerAuthoritative}.
    @ivar accessCheckerAuthoritative: C{FastCgiAccessCheckerAuthoritative}.
    @ivar sections: the sections merged, in the order they were applied.
    """

    setHandler: str | None = None
    forceType: str | None = None
    defaultType: str = DEFAULT_TYPE
    handlers: Mapping[str, str] = field(default_factory=dict)
    types: Mapping[str, str] = field(default_factory=dict)
    actions: Mapping[str, ActionRule] = field(default_factory=dict)
    env: tuple[EnvRule, ...] = ()
    variables: tuple[tuple[str, str], ...] = ()
    directoryIndex: tuple[str, ...] = DEFAULT_DIRECTORY_INDEX
    limitRequestBody: int = 0
    options: frozenset[str] = DEFAULT_OPTIONS
    authenticator: AuthorizerConfig | None = None
    authorizer: AuthorizerConfig | None = None
    accessChecker: AuthorizerConfig | None = None
    authenticatorAuthoritative: bool = True
    authorizerAuthoritative: bool = True
    accessCheckerAuthoritative: bool = True
    sections: tuple[SectionConfig, ...] = ()


def environment(rules: Sequence[EnvRule]) -> tuple[tuple[str, str], ...]:
    """
    The variables mod_env rules give, applied in order: C{SetEnv} sets,
    C{PassEnv} sets the value the server's environment had when the
    configuration was read (nothing if it was unset), C{UnsetEnv} removes.

    @param rules: the rules in order.
    @return: C{(name, value)} pairs in the order each name was last set.
    """
    values: dict[str, str] = {}
    for rule in rules:
        if rule.op is EnvOp.UNSET:
            values.pop(rule.name, None)
        elif rule.value is not None:
            values.pop(rule.name, None)
            values[rule.name] = rule.value
    return tuple(values.items())


def _merge(levels: Sequence[DirectoryConfig], sections: tuple[SectionConfig, ...]) -> MergedConfig:
    """
    Fold per-directory levels, earliest first, into a L{MergedConfig}.
    """
    setHandler: str | None = None
    forceType: str | None = None
    defaultType = DEFAULT_TYPE
    handlers: dict[str, str] = {}
    types: dict[str, str] = {}
    actions: dict[str, ActionRule] = {}
    env: list[EnvRule] = []
    directoryIndex: tuple[str, ...] = DEFAULT_DIRECTORY_INDEX
    limit = 0
    options = DEFAULT_OPTIONS
    auth: dict[str, AuthorizerConfig | None] = {
        "authenticator": None,
        "authorizer": None,
        "accessChecker": None,
    }
    authoritative = {
        "authenticatorAuthoritative": True,
        "authorizerAuthoritative": True,
        "accessCheckerAuthoritative": True,
    }
    for level in levels:
        if level.setHandler is not None:
            setHandler = level.setHandler.value
        if level.forceType is not None:
            forceType = level.forceType.value
        if level.defaultType is not None:
            defaultType = level.defaultType.value
        for rule in level.addHandlers:
            for ext in rule.extensions:
                handlers[ext] = rule.name
        for rule in level.addTypes:
            for ext in rule.extensions:
                types[ext] = rule.name
        for action in level.actions:
            actions[action.actionType] = action
        env.extend(level.env)
        if level.directoryIndex is not None:
            directoryIndex = level.directoryIndex.value
        if level.limitRequestBody is not None:
            limit = level.limitRequestBody.value
        if level.options is not None:
            options = level.options.applyTo(options)
        for name in auth:
            value: AuthorizerConfig | None = getattr(level, name)
            if value is not None:
                auth[name] = value
        for name in authoritative:
            setting = getattr(level, name)
            if setting is not None:
                authoritative[name] = setting.value
    return MergedConfig(
        setHandler=setHandler,
        forceType=forceType,
        defaultType=defaultType,
        handlers=MappingProxyType(handlers),
        types=MappingProxyType(types),
        actions=MappingProxyType(actions),
        env=tuple(env),
        variables=environment(env),
        directoryIndex=directoryIndex,
        limitRequestBody=limit,
        options=options,
        authenticator=auth["authenticator"],
        authorizer=auth["authorizer"],
        accessChecker=auth["accessChecker"],
        authenticatorAuthoritative=authoritative["authenticatorAuthoritative"],
        authorizerAuthoritative=authoritative["authorizerAuthoritative"],
        accessCheckerAuthoritative=authoritative["accessCheckerAuthoritative"],
        sections=sections,
    )


@dataclass(frozen=True, eq=False, slots=True)
class Route:
    """
    What L{Router.route} decided for one URL.  URL values (C{uri},
    C{scriptName}, C{pathInfo}) are percent-decoded text (undecodable bytes
    kept as surrogates: encode them with C{"utf-8", "surrogateescape"} to
    get the bytes back); file names likewise (as L{os.fsdecode} gives).

    @ivar kind: what serves the request.
    @ivar uri: the URL path routed (empty segments collapsed).
    @ivar filename: the file name after the path-info walk (C{r->filename}).
    @ivar scriptName: C{SCRIPT_NAME}.
    @ivar pathInfo: C{PATH_INFO}, C{""} if none.
    @ivar pathTranslated: C{PATH_TRANSLATED}, L{None} without path info.
    @ivar handler: the handler name set (C{SetHandler}, C{ScriptAlias},
        C{AddHandler}), L{None} if none (the media type then names it).
    @ivar mimeType: the media type.
    @ivar config: the merged per-directory configuration.
    @ivar app: for L{RouteKind.FASTCGI}, the application's path-name (the
        key of its pool).
    @ivar dynamic: for L{RouteKind.FASTCGI}, whether C{app} is a dynamic
        application (no AppClass or ExternalAppClass declares it).
    @ivar action: for L{RouteKind.ACTION}, the C{Action} rule.
    @ivar target: for L{RouteKind.ACTION}, the action script's route; for
        L{RouteKind.DIRECTORY}, the index file's route (L{None}: a listing).
    @ivar location: for L{RouteKind.REDIRECT}, the path (and query) to
        redirect to, as raw bytes.
    @ivar scriptAliased: whether a C{ScriptAlias} mapped the URL.
    @ivar regularFile: whether C{filename} exists and is a regular file.
    @ivar reason: for refusals, why (for the log, not for the client).
    """

    kind: RouteKind
    uri: str
    filename: str | None = None
    scriptName: str = ""
    pathInfo: str = ""
    pathTranslated: str | None = None
    handler: str | None = None
    mimeType: str | None = None
    config: MergedConfig | None = None
    app: str | None = None
    dynamic: bool = False
    action: ActionRule | None = None
    target: Route | None = None
    location: bytes | None = None
    scriptAliased: bool = False
    regularFile: bool = False
    reason: str = ""

    @property
    def served(self) -> Route:
        """
        The route that finally serves the request: the action script's or
        the index file's (recursively), else this one.
        """
        route = self
        while route.target is not None:
            route = route.target
        return route


def findPathInfo(uri: str, pathInfo: str) -> int:
    """
    Where C{SCRIPT_NAME} ends in C{uri} (Apache's C{ap_find_path_info}):
    match C{pathInfo} against the end of C{uri}, then extend to the next
    C{/}.

    @param uri: the URL path.
    @param pathInfo: the path info.
    @return: the length of C{SCRIPT_NAME}.
    """
    lu = len(uri)
    lp = len(pathInfo)
    while True:
        if lu == 0:
            lu = -1
            break
        lu -= 1
        if lp == 0:
            break
        lp -= 1
        if uri[lu] != pathInfo[lp]:
            break
    if lu == -1:
        lu = 0
    while lu < len(uri) and uri[lu] != "/":
        lu += 1
    return lu


def _aliasMatches(uri: str, fake: str) -> int:
    """
    mod_alias C{alias_matches} for a URL path and an alias URL path that
    both have no runs of C{/} (the router collapses them in both): the
    length of the match, 0 for none; the match must end at a C{/} boundary.
    """
    if not uri.startswith(fake):
        return 0
    n = len(fake)
    if fake[n - 1] == "/" or len(uri) == n or uri[n] == "/":
        return n
    return 0


_SLASHES = re.compile("/{2,}")


def _wildcard(pattern: str) -> re.Pattern[str]:
    """
    Compile an Apache wildcard (C{fnmatch} with C{FNM_PATHNAME}: C{*} and
    C{?} do not match C{/}) into a regular expression for C{fullmatch}.
    """
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i < n:
            out.append(re.escape(pattern[i]))
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 1 if i < n and pattern[i] in "!^" else i)
            if j == -1:
                out.append(re.escape(c))
                continue
            body = pattern[i:j]
            i = j + 1
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            body = body.replace("\\", "\\\\")
            out.append("(?!/)[" + ("^" if negate else "") + body + "]")
        else:
            out.append(re.escape(c))
    return re.compile("".join(out), re.DOTALL)


def _hasWildcard(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


@dataclass(frozen=True, slots=True)
class _DirectorySection:
    """
    A compiled C{<Directory>}: C{components} is the number of path
    components, C{literal} the prefix with a trailing slash or C{regex} a
    wildcard pattern over such a prefix.
    """

    section: SectionConfig
    components: int
    literal: str | None
    regex: re.Pattern[str] | None


@dataclass(frozen=True, slots=True)
class _PatternSection:
    """
    A compiled C{<Files>}, C{<Location>} or C{*Match} section: a literal,
    a wildcard (C{fullmatch}) or a regular expression (C{search}).
    """

    section: SectionConfig
    literal: str | None
    wildcard: re.Pattern[str] | None
    regex: re.Pattern[str] | None

    def matchesName(self, name: str) -> bool:
        """
        Whether a C{<Files>} section matches a base name.
        """
        if self.regex is not None:
            return self.regex.search(name) is not None
        if self.wildcard is not None:
            return self.wildcard.fullmatch(name) is not None
        return name == self.literal

    def matchesLocation(self, uri: str) -> bool:
        """
        Whether a C{<Location>} section matches a URL path: a plain prefix
        only at a C{/} boundary (Apache 1.3 C{location_walk}).
        """
        if self.regex is not None:
            return self.regex.search(uri) is not None
        if self.wildcard is not None:
            return self.wildcard.fullmatch(uri) is not None
        literal = self.literal
        assert literal is not None
        if not uri.startswith(literal):
            return False
        n = len(literal)
        return literal[n - 1 : n] == "/" or len(uri) == n or uri[n] == "/"


def _compilePattern(section: SectionConfig) -> _PatternSection:
    pattern = section.pattern
    if section.kind.isRegex:
        return _PatternSection(section, None, None, re.compile(pattern))
    if section.kind is SectionKind.LOCATION:
        pattern = _SLASHES.sub("/", pattern)
    if _hasWildcard(pattern):
        return _PatternSection(section, None, _wildcard(pattern), None)
    return _PatternSection(section, pattern, None, None)


def _directoryPrefixes(directory: str) -> list[str]:
    """
    C{"/a/b/"} gives C{["/", "/a/", "/a/b/"]}.
    """
    prefixes = ["/"]
    index = 1
    while True:
        slash = directory.find("/", index)
        if slash == -1:
            return prefixes
        prefixes.append(directory[: slash + 1])
        index = slash + 1


ROUTE_CACHE_SIZE = 4096
"""Routes a L{Router} with a C{cacheSeconds} keeps at most (then it starts
again from none)."""


def _cacheable(route: Route) -> bool:
    """
    Whether C{route} may be reused for another request with the same path:
    it (and any route it leads to) is not a redirect, whose location holds
    the request's own query.
    """
    current: Route | None = route
    while current is not None:
        if current.kind is RouteKind.REDIRECT:
            return False
        current = current.target
    return True


class Router:
    """
    Routes URL paths with one L{ServerConfig} (see the module docstring).

    @ivar config: the configuration.
    @ivar documentRoot: the document root, without a trailing slash.
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        stat: StatFunction = os.stat,
        lstat: StatFunction = os.lstat,
        cacheSeconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        @param config: the server's configuration.
        @param stat: C{os.stat} or a stand-in (tests).
        @param lstat: C{os.lstat} or a stand-in, for the symbolic-link check.
        @param cacheSeconds: how long a route is reused for the same path
            segments (0: routes are worked out for every request).
        @param clock: the time source for C{cacheSeconds}.
        """
        self.config = config
        self.cacheSeconds = cacheSeconds
        self._clock = clock
        self._routeCache: dict[tuple[bytes, ...], tuple[float, Route]] = {}
        self._stat = stat
        self._lstat = lstat
        self.documentRoot = config.documentRootPath.rstrip("/")
        self._aliases = tuple(
            (
                _SLASHES.sub("/", alias.urlPath),
                alias.path,
                alias.kind is AliasKind.SCRIPT_ALIAS,
            )
            for alias in config.aliases
        )
        apps: dict[str, str] = {}
        for path in [a.path for a in config.appClasses] + [
            a.path for a in config.externalAppClasses
        ]:
            apps.setdefault(os.path.normpath(path), path)
        self._apps = apps
        if config.typesConfig is not None:
            mime: dict[str, str] = {}
            for ext, mediaType in config.mimeTypes:
                mime.setdefault(ext, mediaType)
        else:
            mimetypes.init()
            mime = {
                ext.lstrip(".").lower(): mediaType
                for ext, mediaType in mimetypes.types_map.items()
            }
        self._mimeTypes = mime
        directories: list[_DirectorySection] = []
        directoryMatches: list[_PatternSection] = []
        files: list[_PatternSection] = []
        nestedFiles: dict[int, list[_PatternSection]] = {}
        locations: list[_PatternSection] = []
        for section in config.sections:
            kind = section.kind
            if kind is SectionKind.DIRECTORY:
                pattern = _SLASHES.sub("/", section.pattern).rstrip("/") + "/"
                components = pattern.count("/") - 1
                if _hasWildcard(pattern):
                    directories.append(
                        _DirectorySection(section, components, None, _wildcard(pattern))
                    )
                else:
                    directories.append(_DirectorySection(section, components, pattern, None))
            elif kind is SectionKind.DIRECTORY_MATCH:
                directoryMatches.append(_compilePattern(section))
            elif kind in (SectionKind.FILES, SectionKind.FILES_MATCH):
                if section.within is None:
                    files.append(_compilePattern(section))
                else:
                    nestedFiles.setdefault(id(section.within), []).append(
                        _compilePattern(section)
                    )
            else:
                locations.append(_compilePattern(section))
        directories.sort(key=lambda d: d.components)
        self._directories = tuple(directories)
        self._directoryMatches = tuple(directoryMatches)
        self._files = tuple(files)
        self._nestedFiles = {k: tuple(v) for k, v in nestedFiles.items()}
        self._locations = tuple(locations)
        self._directoryCache: dict[tuple[str, str], tuple[SectionConfig, ...]] = {}
        self._mergedCache: dict[
            tuple[str, str, tuple[int, ...]], MergedConfig
        ] = {}

    # -- the steps

    def translate(self, uri: str) -> tuple[str, bool]:
        """
        Map a URL path to a file name (step 2 of the module docstring).

        @param uri: a decoded URL path starting with C{/}.
        @return: the file name, and whether a C{ScriptAlias} mapped it.
        """
        for fake, real, scriptAlias in self._aliases:
            n = _aliasMatches(uri, fake)
            if n > 0:
                return _SLASHES.sub("/", real + uri[n:]), scriptAlias
        return _SLASHES.sub("/", self.documentRoot + uri), False

    def _walk(self, path: str) -> tuple[str, str, os.stat_result | None, OSError | None]:
        """
        Apache's C{get_path_info} (step 3 of the module docstring).

        @return: the file name, the path info, the file's C{stat} (L{None}
            if it does not exist), and the error that stopped the walk.
        """
        stat = self._stat
        cp = len(path)
        while cp > 0 and path[cp - 1] == "/":
            cp -= 1
        lastCp: int | None = None
        while cp > 0:
            try:
                found = stat(path[:cp])
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                    return path, "", None, e
                lastCp = cp
                cp -= 1
                while cp > 0 and path[cp] != "/":
                    cp -= 1
                while cp > 0 and path[cp - 1] == "/":
                    cp -= 1
                continue
            if lastCp is not None and statModule.S_ISDIR(found.st_mode):
                return path[:lastCp], path[lastCp:], None, None
            return path[:cp], path[cp:], found, None
        return path, "", None, None

    def _directorySections(self, directory: str, basename: str) -> tuple[SectionConfig, ...]:
        """
        The C{<Directory>}, C{<DirectoryMatch>} and C{<Files>} sections
        applying to C{basename} in C{directory} (with a trailing slash), in
        merge order.
        """
        key = (directory, basename)
        cached = self._directoryCache.get(key)
        if cached is not None:
            return cached
        prefixes = _directoryPrefixes(directory)
        matched: list[SectionConfig] = []
        for d in self._directories:
            if d.components >= len(prefixes):
                break
            prefix = prefixes[d.components]
            if d.literal is not None:
                if prefix == d.literal:
                    matched.append(d.section)
            else:
                assert d.regex is not None
                if d.regex.fullmatch(prefix):
                    matched.append(d.section)
        for m in self._directoryMatches:
            assert m.regex is not None
            if m.regex.search(directory):
                matched.append(m.section)
        filesSections = list(self._files)
        for section in list(matched):
            filesSections.extend(self._nestedFiles.get(id(section), ()))
        for f in filesSections:
            if f.matchesName(basename):
                matched.append(f.section)
        result = tuple(matched)
        if len(self._directoryCache) >= _CACHE_LIMIT:
            self._directoryCache.clear()
        self._directoryCache[key] = result
        return result

    def merged(self, filename: str, isDirectory: bool, uri: str) -> MergedConfig:
        """
        The configuration in force for a file and URL (step 4 of the module
        docstring).

        @param filename: the file name after the path-info walk.
        @param isDirectory: whether it is an existing directory.
        @param uri: the URL path.
        @return: the merged configuration (cached).
        """
        if isDirectory:
            directory = filename.rstrip("/") + "/"
            basename = directory[:-1].rpartition("/")[2]
        else:
            head, _, basename = filename.rpartition("/")
            directory = head + "/"
        locations = tuple(
            i for i, loc in enumerate(self._locations) if loc.matchesLocation(uri)
        )
        key = (directory, basename, locations)
        cached = self._mergedCache.get(key)
        if cached is not None:
            return cached
        sections = self._directorySections(directory, basename) + tuple(
            self._locations[i].section for i in locations
        )
        result = _merge(
            [self.config.server, *(s.config for s in sections)], sections
        )
        if len(self._mergedCache) >= _CACHE_LIMIT:
            self._mergedCache.clear()
        self._mergedCache[key] = result
        return result

    def _symlinkProblem(self, filename: str, base: str, options: frozenset[str]) -> str | None:
        """
        With neither C{FollowSymLinks} nor C{SymLinksIfOwnerMatch}, a
        symbolic link in C{filename} below C{base} is refused.

        @return: why it is refused, or L{None}.
        """
        if "FollowSymLinks" in options:
            return None
        ownerMatch = "SymLinksIfOwnerMatch" in options
        base = base.rstrip("/")
        if not (filename == base or filename.startswith(base + "/")):
            base = ""
        index = len(base)
        while index < len(filename):
            slash = filename.find("/", index + 1)
            end = len(filename) if slash == -1 else slash
            component = filename[:end]
            index = end
            try:
                link = self._lstat(component)
            except OSError:
                return None
            if not statModule.S_ISLNK(link.st_mode):
                continue
            if ownerMatch:
                try:
                    target = self._stat(component)
                except OSError:
                    return f"symbolic link {component} is broken"
                if target.st_uid == link.st_uid:
                    continue
                return (
                    f"symbolic link {component} and its target have different "
                    "owners (Options SymLinksIfOwnerMatch)"
                )
            return f"symbolic link {component} not allowed (Options FollowSymLinks is off)"
        return None

    # -- the whole thing

    def route(self, pathSegments: Sequence[bytes], rawPath: bytes = b"") -> Route:
        """
        Route a request (see the module docstring).

        @param pathSegments: the percent-decoded path segments
            (C{request.postpath} at the root: C{/a/b/} is C{[a, b, ""]}).
        @param rawPath: the raw request-target (path and optional query),
            used for the location of a L{RouteKind.REDIRECT}.
        @return: the route.
        """
        if self.cacheSeconds <= 0:
            return self._route(pathSegments, rawPath, 0)
        key = tuple(pathSegments)
        now = self._clock()
        cached = self._routeCache.get(key)
        if cached is not None and now < cached[0]:
            return cached[1]
        route = self._route(pathSegments, rawPath, 0)
        if _cacheable(route):
            if len(self._routeCache) >= ROUTE_CACHE_SIZE:
                self._routeCache.clear()
            self._routeCache[key] = (now + self.cacheSeconds, route)
        return route

    def _route(self, pathSegments: Sequence[bytes], rawPath: bytes, depth: int) -> Route:
        parts: list[str] = []
        for raw in pathSegments:
            if not raw:
                continue
            if raw == b".." or raw == b"." or b"/" in raw or b"\x00" in raw:
                return Route(
                    RouteKind.NOT_FOUND,
                    "",
                    reason="a path segment is '.' or '..', or holds an encoded "
                    "slash or NUL",
                )
            parts.append(raw.decode("utf-8", "surrogateescape"))
        trailingSlash = bool(pathSegments) and not pathSegments[-1]
        uri = "/" + "/".join(parts)
        if parts and trailingSlash:
            uri += "/"
        mapped, scriptAliased = self.translate(uri)
        filename, pathInfo, found, error = self._walk(mapped)
        if error is not None:
            return Route(
                RouteKind.FORBIDDEN,
                uri,
                filename=filename,
                scriptAliased=scriptAliased,
                reason=f"cannot look up {filename}: {error.strerror}",
            )
        scriptName = uri[: findPathInfo(uri, pathInfo)] if pathInfo else uri
        pathTranslated = self.translate(pathInfo)[0] if pathInfo else None
        isDirectory = found is not None and statModule.S_ISDIR(found.st_mode)
        regularFile = found is not None and statModule.S_ISREG(found.st_mode)
        config = self.merged(filename, isDirectory, uri)
        basename = filename.rstrip("/").rpartition("/")[2]

        # Handler and media type (mod_mime find_ct).
        handler: str | None
        if isDirectory:
            mimeType: str = DIRECTORY_TYPE
            handler = "cgi-script" if scriptAliased else None
        else:
            foundType: str | None = None
            extensionHandler: str | None = None
            for ext in basename.lower().split(".")[1:]:
                if not ext:
                    continue
                t = config.types.get(ext) or self._mimeTypes.get(ext)
                if t is not None:
                    foundType = t
                h = config.handlers.get(ext)
                if h is not None:
                    extensionHandler = h
            if config.forceType is not None:
                foundType = config.forceType
            mimeType = foundType if foundType is not None else config.defaultType
            if config.setHandler is not None:
                handler = config.setHandler
            elif scriptAliased:
                handler = "cgi-script"
            else:
                handler = extensionHandler
        effective = handler if handler is not None else mimeType

        def make(kind: RouteKind, reason: str = "", **more: object) -> Route:
            return Route(
                kind,
                uri,
                filename=filename,
                scriptName=scriptName,
                pathInfo=pathInfo,
                pathTranslated=pathTranslated,
                handler=handler,
                mimeType=mimeType,
                config=config,
                scriptAliased=scriptAliased,
                regularFile=regularFile,
                reason=reason,
                **more,  # type: ignore[arg-type]
            )

        if found is not None and "FollowSymLinks" not in config.options:
            problem = self._symlinkProblem(filename, self._baseOf(uri), config.options)
            if problem is not None:
                # Refused before any handler: not a usable index file either.
                return replace(make(RouteKind.FORBIDDEN, problem), regularFile=False)

        if effective in FASTCGI_HANDLERS:
            if basename.startswith("nph-"):
                return make(
                    RouteKind.FORBIDDEN, "NPH scripts are not allowed to run as FastCGI"
                )
            if isDirectory:
                return make(RouteKind.FORBIDDEN, f"{filename} is a directory")
            app = self._apps.get(os.path.normpath(filename))
            if app is None:
                return self._dynamic(filename, found, uri, make)
            return make(RouteKind.FASTCGI, app=app)

        if effective in CGI_HANDLERS:
            if basename.startswith("nph-"):
                return make(
                    RouteKind.FORBIDDEN, "non-parsed-header (nph-) CGI scripts are not supported"
                )
            if not scriptAliased and "ExecCGI" not in config.options:
                return make(
                    RouteKind.FORBIDDEN,
                    f"Options ExecCGI is off in this directory: {filename}",
                )
            if found is None:
                return make(
                    RouteKind.NOT_FOUND, f"script not found or unable to stat: {filename}"
                )
            if isDirectory:
                return make(
                    RouteKind.FORBIDDEN, f"attempt to invoke directory as script: {filename}"
                )
            if not regularFile or not found.st_mode & 0o111:
                return make(
                    RouteKind.FORBIDDEN,
                    f"file permissions deny server execution: {filename}",
                )
            return make(RouteKind.CGI)

        if isDirectory and handler is None:
            return self._directory(uri, rawPath, depth, parts, make)

        action = config.actions.get(effective)
        if action is not None:
            if found is None and not action.virtual:
                return make(RouteKind.NOT_FOUND, f"File does not exist: {filename}")
            if depth >= MAX_ACTION_DEPTH:
                return make(
                    RouteKind.SERVER_ERROR,
                    f"more than {MAX_ACTION_DEPTH} Action or DirectoryIndex "
                    f"redirections for {uri}",
                )
            segments = [s.encode("utf-8", "surrogateescape") for s in action.url.split("/")]
            original = [p.encode("utf-8", "surrogateescape") for p in parts]
            if trailingSlash:
                original.append(b"")
            target = self._route(segments[1:] + original, rawPath, depth + 1)
            return make(RouteKind.ACTION, action=action, target=target)

        if found is None:
            return make(RouteKind.NOT_FOUND, f"File does not exist: {filename}")
        if pathInfo:
            return make(
                RouteKind.NOT_FOUND,
                f"File does not exist: {filename}{pathInfo} (no path info for static files)",
            )
        if isDirectory:
            return self._directory(uri, rawPath, depth, parts, make)
        if not regularFile:
            return make(RouteKind.FORBIDDEN, f"{filename} is not a regular file")
        return make(RouteKind.STATIC)

    def _dynamic(
        self,
        filename: str,
        found: os.stat_result | None,
        uri: str,
        make: Callable[..., Route],
    ) -> Route:
        """
        A FastCGI request for a file no AppClass or ExternalAppClass
        declares: a dynamic application (SPEC.md section 4.2) if the file
        is an executable regular file inside the document root or the
        alias target it was mapped under, symbolic links resolved.  (Dot
        segments and encoded slashes were refused before.)

        @return: the route: L{RouteKind.FASTCGI} with C{dynamic} set, or a
            refusal.
        """
        if found is None:
            return make(
                RouteKind.NOT_FOUND,
                f"no AppClass or ExternalAppClass for {filename}, and no such file "
                "for a dynamic application",
            )
        if not statModule.S_ISREG(found.st_mode):
            return make(
                RouteKind.FORBIDDEN,
                f"{filename} is not a regular file: not run as a dynamic application",
            )
        notExecutable = self._notExecutable(filename, found)
        if notExecutable is not None:
            return make(
                RouteKind.FORBIDDEN,
                f"{filename} is {notExecutable}: not run as a dynamic application",
            )
        base = os.path.realpath(self._baseOf(uri))
        real = os.path.realpath(filename)
        if real != base and not real.startswith(base.rstrip("/") + "/"):
            return make(
                RouteKind.FORBIDDEN,
                f"{filename} resolves to {real}, outside {base}: not run as a "
                "dynamic application",
            )
        return make(RouteKind.FASTCGI, app=os.path.normpath(filename), dynamic=True)

    def _notExecutable(self, filename: str, found: os.stat_result) -> str | None:
        """
        Whether the processes of a dynamic application could execute
        C{filename} (SPEC.md section 4.2: "executable by User/Group").  They
        run as the server does once it has switched user; a server still
        running as root starts them as C{User}/C{Group} when configured,
        so then the permission bits are checked for that account, as
        mod_fastcgi did.

        @param filename: the file.
        @param found: its C{stat}.
        @return: why it is not executable (C{"not executable"}, C{"not
            executable by user NAME"}), or C{None}.
        """
        mode = found.st_mode
        if not mode & 0o111:
            return "not executable"
        if os.geteuid() != 0:
            if not os.access(filename, os.X_OK):
                return "not executable by the server's user"
            return None
        user = self.config.user
        if user is None:
            return None
        group = self.config.group
        gid = group.gid if group is not None else user.gid
        if found.st_uid == user.uid:
            allowed = mode & statModule.S_IXUSR
        elif gid is not None and found.st_gid == gid:
            allowed = mode & statModule.S_IXGRP
        else:
            allowed = mode & statModule.S_IXOTH
        if not allowed:
            return f"not executable by user {user.name}"
        return None

    def _baseOf(self, uri: str) -> str:
        """
        The directory a URL is mapped under: its alias's target or the
        document root.
        """
        for fake, real, _ in self._aliases:
            if _aliasMatches(uri, fake) > 0:
                return real
        return self.documentRoot

    def _directory(
        self,
        uri: str,
        rawPath: bytes,
        depth: int,
        parts: list[str],
        make: Callable[..., Route],
    ) -> Route:
        """
        mod_dir: redirect to add the slash, else the index, else a listing
        or 403.
        """
        if not uri.endswith("/"):
            path, question, query = rawPath.partition(b"?")
            if not path:
                path = uri.encode("utf-8", "surrogateescape")
            return make(
                RouteKind.REDIRECT,
                f"directory without a trailing slash: {uri}",
                location=path + b"/" + question + query,
            )
        route = make(RouteKind.DIRECTORY)
        config = route.config
        assert config is not None
        error: Route | None = None
        for name in config.directoryIndex:
            if depth >= MAX_ACTION_DEPTH:
                return make(
                    RouteKind.SERVER_ERROR,
                    f"more than {MAX_ACTION_DEPTH} Action or DirectoryIndex "
                    f"redirections for {uri}",
                )
            if name.startswith("/"):
                segments = [s.encode("utf-8", "surrogateescape") for s in name[1:].split("/")]
            else:
                segments = [
                    s.encode("utf-8", "surrogateescape") for s in [*parts, *name.split("/")]
                ]
            candidate = self._route(segments, b"", depth + 1)
            if candidate.regularFile:
                # mod_dir's sub-request stops before the handler: a regular
                # file is the index, whatever then serves it.
                return make(RouteKind.DIRECTORY, target=candidate)
            if error is None and candidate.kind in (
                RouteKind.FORBIDDEN,
                RouteKind.SERVER_ERROR,
            ):
                error = candidate
        if error is not None:
            return error
        if "Indexes" in config.options:
            return route
        return make(RouteKind.FORBIDDEN, f"Directory index forbidden by rule: {uri}")
