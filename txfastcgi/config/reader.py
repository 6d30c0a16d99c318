# -*- test-case-name: tests.test_config_reader -*-
"""
Reading a configuration: the main file, what it includes, and the
statements that act while reading (Apache's C{EXEC_ON_READ} ones).

  - C{ServerRoot DIR} (once, outside sections, before it is needed): the
    directory relative paths are resolved against.  A relative ServerRoot is
    relative to the current directory, as in Apache.  Without one, the
    ServerRoot is the directory holding the main configuration file.
  - C{Include PATH} and C{IncludeOptional PATH}, anywhere: the file's
    statements take the place of the directive (inside a section, they are
    inside it).  C{PATH} is ServerRoot-relative; a directory includes every
    file in it, and a wildcard (C{*}, C{?}, C{[...]}) every match, in
    sorted order, skipping names that start with a dot.  For C{Include},
    a missing file, an empty directory or a wildcard that matches nothing
    is an error; C{IncludeOptional} ignores them.  Includes nest at most
    L{MAX_INCLUDE_DEPTH} deep and a file may not include itself, directly or
    not.
  - C{ResourceConfig PATH} and C{AccessConfig PATH} (Apache 1.x, main file
    only, once each): after the main file, the ResourceConfig file and then
    the AccessConfig file are read as if appended to it.  Apache 1.x read
    C{conf/srm.conf} and C{conf/access.conf} when these were not given;
    txfastcgi reads nothing then.  C{/dev/null} reads nothing.
  - C{<IfModule [!]NAME>}: its statements count if the module is (is not)
    one txfastcgi implements (L{IMPLEMENTED_MODULES}); C{NAME} may be
    written C{mod_mime.c}, C{mod_mime} or C{mime_module}.
  - C{<VirtualHost>} and C{NameVirtualHost} are errors: txfastcgi serves
    one host; run one server per host.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from dataclasses import dataclass

from txfastcgi.config.errors import NO_VALUE, ConfigError, Source
from txfastcgi.config.lexer import Directive, Node, Section, parseText
from txfastcgi.config.model import Setting

__all__ = [
    "IMPLEMENTED_MODULES",
    "MAX_INCLUDE_DEPTH",
    "ReadResult",
    "isImplementedModule",
    "readFile",
    "readTree",
    "resolvePath",
]

MAX_INCLUDE_DEPTH = 16
"""How deeply C{Include}s may nest (the main file is depth 0)."""

IMPLEMENTED_MODULES = frozenset(
    {
        "core",
        "http_core",
        "fastcgi",
        "mime",
        "env",
        "alias",
        "actions",
        "cgi",
        "dir",
        "log_config",
    }
)
"""The modules C{<IfModule>} finds, by their short names."""

_WILDCARDS = "*?["


def _shown(args: tuple[str, ...]) -> object:
    """
    @return: the arguments as an error's value, L{NO_VALUE} if there are none.
    """
    return args if args else NO_VALUE


def isImplementedModule(name: str) -> bool:
    """
    Whether C{<IfModule NAME>} is true (without the C{!}).

    @param name: C{mod_mime.c}, C{mod_mime}, C{mime_module}, C{core.c}, ...
    @return: whether txfastcgi implements that module.
    """
    key = name.lower()
    for suffix in (".c", ".so"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    if key.startswith("mod_"):
        key = key[4:]
    elif key.endswith("_module"):
        key = key[: -len("_module")]
    return key in IMPLEMENTED_MODULES


def resolvePath(serverRoot: str, path: str) -> str:
    """
    Resolve a ServerRoot-relative path, keeping a trailing slash.

    @param serverRoot: the ServerRoot, absolute.
    @param path: the path as written.
    @return: C{path} if absolute, else C{path} under C{serverRoot}.
    """
    if os.path.isabs(path):
        return path
    return os.path.join(serverRoot, path)


@dataclass(frozen=True)
class ReadResult:
    """
    What reading produced.

    @ivar nodes: the top-level statements with includes spliced in and
        C{<IfModule>} sections resolved; C{ServerRoot}, C{Include*},
        C{ResourceConfig} and C{AccessConfig} are consumed.
    @ivar serverRoot: the ServerRoot (for the default, the source is the
        main file at line 0).
    @ivar files: every file read, in order.
    """

    nodes: tuple[Node, ...]
    serverRoot: Setting[str]
    files: tuple[str, ...]


def readFile(path: str, shown: str, source: Source | None, directive: str) -> str:
    """
    Read a configuration file's text.

    @param path: the path to open.
    @param shown: the path as messages show it.
    @param source: the statement that asked for the file, or C{None} for the
        main file.
    @param directive: that statement's name.
    @return: the text.
    @raise ConfigError: if it cannot be read or decoded.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        reason = e.strerror or str(e)
        if source is None:
            raise ConfigError(
                shown, 0, "config", f"cannot read the file: {reason}"
            ) from None
        raise ConfigError.at(
            source, directive, f"cannot read {shown}: {reason}", path
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(
            shown, line, "config", "the file is not valid UTF-8", data[e.start : e.end]
        ) from None


class _Reader:
    """
    The state of one reading: the ServerRoot so far, the files read, the
    chain of files being read (for cycles), ResourceConfig and AccessConfig.
    """

    def __init__(
        self, mainFile: str, read: Callable[[str, str, Source | None, str], str]
    ) -> None:
        """
        @param mainFile: the main file's path, as given.
        @param read: L{readFile} or a replacement for tests.
        """
        self.mainFile = mainFile
        self.read = read
        self.serverRoot: Setting[str] = Setting(
            os.path.dirname(os.path.abspath(mainFile)), Source(mainFile, 0)
        )
        self.serverRootSet = False
        self.files: list[str] = []
        self.chain: list[str] = []
        self.extra: dict[str, tuple[str, Source]] = {}

    def readOne(
        self, path: str, source: Source | None, directive: str, depth: int
    ) -> list[Node]:
        """
        Read, parse and expand one file.

        @param path: the file, as messages show it.
        @param source: the statement including it, C{None} for the main file.
        @param directive: that statement's name.
        @param depth: its include depth.
        @return: its expanded statements.
        @raise ConfigError: for any problem in it or in what it includes.
        """
        real = os.path.realpath(path)
        if real in self.chain:
            assert source is not None
            cycle = " -> ".join(
                [os.path.basename(p) for p in self.chain[self.chain.index(real) :]]
                + [os.path.basename(real)]
            )
            raise ConfigError.at(source, directive, f"include cycle: {cycle}", path)
        if depth > MAX_INCLUDE_DEPTH:
            assert source is not None
            raise ConfigError.at(
                source,
                directive,
                f"includes nest deeper than {MAX_INCLUDE_DEPTH} files",
                path,
            )
        text = self.read(path, path, source, directive)
        self.files.append(path)
        self.chain.append(real)
        try:
            return self.expand(parseText(text, path), depth, inSection=False)
        finally:
            self.chain.pop()

    def expand(
        self, nodes: list[Node] | tuple[Node, ...], depth: int, inSection: bool
    ) -> list[Node]:
        """
        Act on the read-time statements of a list of statements.

        @param nodes: the statements.
        @param depth: the include depth of the file they are in.
        @param inSection: whether they are inside a section.
        @return: the statements with includes spliced in.
        @raise ConfigError: for any problem.
        """
        out: list[Node] = []
        for node in nodes:
            if isinstance(node, Section):
                out.extend(self.expandSection(node, depth, inSection))
                continue
            key = node.name.lower()
            if key in ("include", "includeoptional"):
                out.extend(self.include(node, depth, optional=key == "includeoptional"))
            elif key == "serverroot":
                self.setServerRoot(node, inSection)
            elif key in ("resourceconfig", "accessconfig"):
                self.setExtra(node, inSection, depth)
            elif key == "namevirtualhost":
                raise ConfigError.at(
                    node.source,
                    node.name,
                    "virtual hosts are not supported; run one txfastcgi per host",
                    node.args,
                )
            else:
                out.append(node)
        return out

    def expandSection(self, node: Section, depth: int, inSection: bool) -> list[Node]:
        """
        Resolve C{<IfModule>}, refuse C{<VirtualHost>}, expand the inside of
        other sections.

        @param node: the section.
        @param depth: the include depth of its file.
        @param inSection: whether it is inside another section.
        @return: the statements that replace it.
        @raise ConfigError: for any problem.
        """
        key = node.name.lower()
        if key == "ifmodule":
            if len(node.args) != 1 or node.args[0] in ("", "!"):
                raise ConfigError.at(
                    node.source,
                    node.display,
                    "takes one argument, a module name with an optional '!'",
                    node.args,
                )
            name = node.args[0]
            wanted = not name.startswith("!")
            if isImplementedModule(name.lstrip("!")) == wanted:
                return self.expand(node.children, depth, inSection)
            return []
        if key == "virtualhost":
            raise ConfigError.at(
                node.source,
                node.display,
                "virtual hosts are not supported; run one txfastcgi per host",
                node.args,
            )
        children = self.expand(node.children, depth, inSection=True)
        return [Section(node.name, node.args, node.source, tuple(children))]

    def include(self, node: Directive, depth: int, optional: bool) -> list[Node]:
        """
        Read the files an C{Include} or C{IncludeOptional} names.

        @param node: the directive.
        @param depth: the include depth of its file.
        @param optional: whether missing files are fine.
        @return: their statements.
        @raise ConfigError: for any problem.
        """
        if len(node.args) != 1 or not node.args[0]:
            raise ConfigError.at(
                node.source,
                node.name,
                "takes one argument, a file, directory or wildcard",
                _shown(node.args),
            )
        pattern = resolvePath(self.serverRoot.value, node.args[0])
        if any(c in pattern for c in _WILDCARDS):
            paths = sorted(
                p
                for p in glob.glob(pattern)
                if not os.path.basename(p).startswith(".") and not os.path.isdir(p)
            )
            if not paths and not optional:
                raise ConfigError.at(
                    node.source, node.name, "no file matches the wildcard", node.args[0]
                )
        elif os.path.isdir(pattern):
            try:
                entries = os.listdir(pattern)
            except OSError as e:
                raise ConfigError.at(
                    node.source,
                    node.name,
                    f"cannot list the directory: {e.strerror}",
                    node.args[0],
                ) from None
            paths = sorted(
                os.path.join(pattern, name)
                for name in entries
                if not name.startswith(".")
                and not os.path.isdir(os.path.join(pattern, name))
            )
            if not paths and not optional:
                raise ConfigError.at(
                    node.source, node.name, "the directory holds no file", node.args[0]
                )
        elif not os.path.exists(pattern):
            if optional:
                return []
            raise ConfigError.at(
                node.source, node.name, "no such file or directory", node.args[0]
            )
        else:
            paths = [pattern]
        out: list[Node] = []
        for path in paths:
            out.extend(self.readOne(path, node.source, node.name, depth + 1))
        return out

    def setServerRoot(self, node: Directive, inSection: bool) -> None:
        """
        Act on C{ServerRoot}.

        @param node: the directive.
        @param inSection: whether it is inside a section.
        @raise ConfigError: if it is misplaced, repeated or not a directory.
        """
        if inSection:
            raise ConfigError.at(node.source, node.name, "not allowed inside a section")
        if self.serverRootSet:
            raise ConfigError.at(
                node.source,
                node.name,
                f"given twice (first at {self.serverRoot.source})",
                node.args,
            )
        if len(node.args) != 1 or not node.args[0]:
            raise ConfigError.at(
                node.source,
                node.name,
                "takes one argument, a directory",
                _shown(node.args),
            )
        path = os.path.abspath(node.args[0])
        if not os.path.isdir(path):
            raise ConfigError.at(
                node.source, node.name, "not an existing directory", node.args[0]
            )
        self.serverRoot = Setting(path, node.source)
        self.serverRootSet = True

    def setExtra(self, node: Directive, inSection: bool, depth: int) -> None:
        """
        Act on C{ResourceConfig} or C{AccessConfig}.

        @param node: the directive.
        @param inSection: whether it is inside a section.
        @param depth: the include depth of its file.
        @raise ConfigError: if it is misplaced, repeated or names no file.
        """
        if inSection or depth != 0 or node.source.filename != self.mainFile:
            raise ConfigError.at(
                node.source,
                node.name,
                "only allowed in the main configuration file, outside sections",
            )
        key = node.name.lower()
        if key in self.extra:
            raise ConfigError.at(
                node.source,
                node.name,
                f"given twice (first at {self.extra[key][1]})",
                _shown(node.args),
            )
        if len(node.args) != 1 or not node.args[0]:
            raise ConfigError.at(
                node.source, node.name, "takes one argument, a file", _shown(node.args)
            )
        path = resolvePath(self.serverRoot.value, node.args[0])
        if not os.path.exists(path):
            raise ConfigError.at(node.source, node.name, "no such file", node.args[0])
        if os.path.isdir(path):
            raise ConfigError.at(
                node.source, node.name, "is a directory, not a file", node.args[0]
            )
        self.extra[key] = (path, node.source)

    def readAll(self) -> ReadResult:
        """
        Read the main file, then the ResourceConfig and AccessConfig files.

        @return: the result.
        @raise ConfigError: for any problem.
        """
        nodes = self.readOne(self.mainFile, None, "config", 0)
        for key in ("resourceconfig", "accessconfig"):
            if key in self.extra:
                path, source = self.extra[key]
                if os.path.realpath(path) == os.devnull:
                    continue
                name = "ResourceConfig" if key == "resourceconfig" else "AccessConfig"
                nodes.extend(self.readOne(path, source, name, 1))
        return ReadResult(tuple(nodes), self.serverRoot, tuple(self.files))


def readTree(
    path: str, read: Callable[[str, str, Source | None, str], str] = readFile
) -> ReadResult:
    """
    Read a configuration file and everything it includes.

    @param path: the main file.
    @param read: how to read a file (L{readFile}).
    @return: the statements and the ServerRoot.
    @raise ConfigError: for any syntax error, missing include, include
        cycle, or misplaced read-time directive.
    """
    return _Reader(path, read).readAll()
