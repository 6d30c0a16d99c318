"""
Tests for L{txfastcgi.config.reader} and the package entry points: files,
C{Include} (globs, directories, cycles, depth), C{ServerRoot},
C{ResourceConfig}/C{AccessConfig}, C{<IfModule>}, C{<VirtualHost>},
L{readConfig} and C{python -m txfastcgi.config}.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from txfastcgi.config import ConfigError, readConfig
from txfastcgi.config.__main__ import main
from txfastcgi.config.lexer import Directive, Section
from txfastcgi.config.reader import (
    MAX_INCLUDE_DEPTH,
    isImplementedModule,
    readTree,
    resolvePath,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """
    A temporary directory that is also the current directory, so that
    messages name files relative to it.
    """
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(base: Path, name: str, text: str) -> Path:
    """
    Write a file under C{base}, creating directories.
    """
    path = base / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def names(path: str) -> list[str]:
    """
    The directive names (and arguments) at the top level after reading.
    """
    out = []
    for node in readTree(path).nodes:
        assert isinstance(node, Directive)
        out.append(" ".join((node.name, *node.args)))
    return out


def readError(path: str) -> str:
    """
    The message reading C{path} fails with.
    """
    with pytest.raises(ConfigError) as caught:
        readTree(path)
    return str(caught.value)


def test_defaultServerRootIsTheConfigDirectory(here: Path) -> None:
    """
    Without C{ServerRoot}, the ServerRoot is the main file's directory.
    """
    write(here, "conf/httpd.conf", "Port 80\n")
    result = readTree("conf/httpd.conf")
    assert result.serverRoot.value == str(here / "conf")
    assert result.files == ("conf/httpd.conf",)


def test_includeIsSplicedInPlace(here: Path) -> None:
    """
    An included file's statements replace the C{Include} line, and the
    included file's name and lines are kept in sources.
    """
    write(here, "httpd.conf", "A 1\nInclude extra.conf\nB 2\n")
    write(here, "extra.conf", "\nX 1\nY 2\n")
    result = readTree("httpd.conf")
    assert [n.name for n in result.nodes] == ["A", "X", "Y", "B"]
    assert result.nodes[1].source == (str(here / "extra.conf"), 2)
    assert result.files == ("httpd.conf", str(here / "extra.conf"))


def test_includeGlobSortedSkippingDotfiles(here: Path) -> None:
    """
    A wildcard includes every matching file in sorted order, skipping dot
    files and directories.
    """
    write(here, "httpd.conf", "Include conf.d/*.conf\n")
    write(here, "conf.d/b.conf", "B\n")
    write(here, "conf.d/a.conf", "A\n")
    write(here, "conf.d/.hidden.conf", "H\n")
    write(here, "conf.d/c.txt", "C\n")
    (here / "conf.d" / "d.conf").mkdir()
    assert names("httpd.conf") == ["A", "B"]


def test_includeDirectory(here: Path) -> None:
    """
    Including a directory reads every (non-dot) file in it, sorted.
    """
    write(here, "httpd.conf", "Include conf.d\n")
    write(here, "conf.d/2", "Two\n")
    write(here, "conf.d/1", "One\n")
    write(here, "conf.d/.swp", "No\n")
    assert names("httpd.conf") == ["One", "Two"]


def test_includeInsideSection(here: Path) -> None:
    """
    An C{Include} inside a section puts the file's statements inside it.
    """
    write(here, "httpd.conf", "<Location /a>\nInclude inner.conf\n</Location>\n")
    write(here, "inner.conf", "SetHandler fastcgi-script\n")
    [section] = readTree("httpd.conf").nodes
    assert isinstance(section, Section)
    assert [c.name for c in section.children] == ["SetHandler"]


def test_includeIsServerRootRelative(here: Path) -> None:
    """
    Include paths are resolved against the ServerRoot in force when the
    C{Include} is read.
    """
    write(here, "root/conf/x.conf", "X\n")
    write(here, "httpd.conf", f"ServerRoot {here / 'root'}\nInclude conf/x.conf\n")
    result = readTree("httpd.conf")
    assert names("httpd.conf") == ["X"]
    assert result.serverRoot.value == str(here / "root")
    assert result.serverRoot.source == ("httpd.conf", 1)


def test_includeOptional(here: Path) -> None:
    """
    C{IncludeOptional} ignores a missing file and an unmatched wildcard.
    """
    write(
        here,
        "httpd.conf",
        "IncludeOptional nothing.conf\nIncludeOptional n/*.conf\nA\n",
    )
    assert names("httpd.conf") == ["A"]


def test_includeDevNull(here: Path) -> None:
    """
    C{Include /dev/null} reads nothing.
    """
    write(here, "httpd.conf", "Include /dev/null\nA\n")
    assert names("httpd.conf") == ["A"]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "Port 80\nInclude missing.conf\n",
            "httpd.conf:2: Include: no such file or directory (got 'missing.conf')",
        ),
        (
            "Include none/*.conf\n",
            "httpd.conf:1: Include: no file matches the wildcard (got 'none/*.conf')",
        ),
        (
            "Include\n",
            "httpd.conf:1: Include: takes one argument, a file, directory or wildcard",
        ),
        (
            "Include a b\n",
            "httpd.conf:1: Include: takes one argument, a file, directory or wildcard (got 'a b')",
        ),
        (
            "Include empty\n",
            "httpd.conf:1: Include: the directory holds no file (got 'empty')",
        ),
    ],
)
def test_includeErrors(here: Path, text: str, message: str) -> None:
    """
    A missing include, an unmatched wildcard, an empty directory or a
    wrong argument count stops reading at the C{Include} line.
    """
    (here / "empty").mkdir()
    write(here, "httpd.conf", text)
    assert readError("httpd.conf") == message


def test_errorInsideIncludedFileNamesThatFile(here: Path) -> None:
    """
    A syntax error in an included file is reported at that file's line.
    """
    write(here, "httpd.conf", "Include sub/x.conf\n")
    write(here, "sub/x.conf", "A\n\n<Location /a>\n")
    assert readError("httpd.conf") == (
        f"{here / 'sub/x.conf'}:3: <Location>: section is not closed: </Location> "
        "missing before the end of the file (got '/a')"
    )


def test_sectionsCannotSpanFiles(here: Path) -> None:
    """
    A section must be closed in the file that opened it.
    """
    write(here, "httpd.conf", "Include open.conf\n")
    write(here, "open.conf", "<Location /a>\n")
    assert "open.conf:1: <Location>: section is not closed" in readError("httpd.conf")


def test_includeCycle(here: Path) -> None:
    """
    A file including itself through others is an error naming the chain.
    """
    write(here, "httpd.conf", "Include a.conf\n")
    write(here, "a.conf", "\nInclude b.conf\n")
    write(here, "b.conf", "Include a.conf\n")
    assert readError("httpd.conf") == (
        f"{here / 'b.conf'}:1: Include: include cycle: a.conf -> b.conf -> a.conf "
        f"(got '{here / 'a.conf'}')"
    )


def test_includeSelf(here: Path) -> None:
    """
    The main file including itself is a cycle too.
    """
    write(here, "httpd.conf", "Include httpd.conf\n")
    assert "include cycle: httpd.conf -> httpd.conf" in readError("httpd.conf")


def test_includeDepthLimit(here: Path) -> None:
    """
    Includes may nest L{MAX_INCLUDE_DEPTH} deep, not deeper.
    """
    for i in range(MAX_INCLUDE_DEPTH + 1):
        write(here, f"d{i}.conf", f"Include d{i + 1}.conf\n")
    write(here, f"d{MAX_INCLUDE_DEPTH + 1}.conf", "X\n")
    write(here, "ok.conf", "Include d2.conf\n")
    write(here, "httpd.conf", "Include d0.conf\n")
    assert f"includes nest deeper than {MAX_INCLUDE_DEPTH} files" in readError(
        "httpd.conf"
    )
    assert names("ok.conf") == ["X"]


def test_resourceAndAccessConfigAreReadAfterTheMainFile(here: Path) -> None:
    """
    C{ResourceConfig} then C{AccessConfig} are read after the main file,
    whatever their order in it; C{/dev/null} reads nothing.
    """
    write(here, "conf/srm.conf", "Srm\n")
    write(here, "conf/access.conf", "Access\n")
    write(
        here,
        "httpd.conf",
        "AccessConfig conf/access.conf\nResourceConfig conf/srm.conf\nMain\n",
    )
    assert names("httpd.conf") == ["Main", "Srm", "Access"]
    write(
        here, "null.conf", "ResourceConfig /dev/null\nAccessConfig   /dev/null\nMain\n"
    )
    assert names("null.conf") == ["Main"]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "ResourceConfig nope.conf\n",
            "httpd.conf:1: ResourceConfig: no such file (got 'nope.conf')",
        ),
        (
            "AccessConfig /dev/null\nAccessConfig /dev/null\n",
            "httpd.conf:2: AccessConfig: given twice (first at httpd.conf:1) (got '/dev/null')",
        ),
        (
            "<Location />\nAccessConfig /dev/null\n</Location>\n",
            "httpd.conf:2: AccessConfig: only allowed in the main configuration file, "
            "outside sections",
        ),
        (
            "ResourceConfig\n",
            "httpd.conf:1: ResourceConfig: takes one argument, a file",
        ),
        (
            "ResourceConfig sub\n",
            "httpd.conf:1: ResourceConfig: is a directory, not a file (got 'sub')",
        ),
    ],
)
def test_resourceConfigErrors(here: Path, text: str, message: str) -> None:
    """
    C{ResourceConfig}/C{AccessConfig} must name an existing file, once,
    in the main file outside sections.
    """
    (here / "sub").mkdir()
    write(here, "httpd.conf", text)
    assert readError("httpd.conf") == message


def test_resourceConfigOnlyInMainFile(here: Path) -> None:
    """
    C{ResourceConfig} in an included file is refused.
    """
    write(here, "httpd.conf", "Include x.conf\n")
    write(here, "x.conf", "ResourceConfig /dev/null\n")
    assert readError("httpd.conf") == (
        f"{here / 'x.conf'}:1: ResourceConfig: only allowed in the main configuration "
        "file, outside sections"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("ServerRoot\n", "httpd.conf:1: ServerRoot: takes one argument, a directory"),
        (
            "ServerRoot /no/such/dir\n",
            "httpd.conf:1: ServerRoot: not an existing directory (got '/no/such/dir')",
        ),
        (
            "ServerRoot .\nServerRoot .\n",
            "httpd.conf:2: ServerRoot: given twice (first at httpd.conf:1) (got '.')",
        ),
        (
            "<Location />\nServerRoot .\n</Location>\n",
            "httpd.conf:2: ServerRoot: not allowed inside a section",
        ),
    ],
)
def test_serverRootErrors(here: Path, text: str, message: str) -> None:
    """
    C{ServerRoot} takes one existing directory, once, outside sections.
    """
    write(here, "httpd.conf", text)
    assert readError("httpd.conf") == message


def test_relativeServerRootIsCurrentDirectoryRelative(here: Path) -> None:
    """
    A relative ServerRoot is relative to the current directory, as in Apache.
    """
    (here / "srv").mkdir()
    write(here, "conf/httpd.conf", "ServerRoot srv\n")
    assert readTree("conf/httpd.conf").serverRoot.value == str(here / "srv")


@pytest.mark.parametrize(
    "name, implemented",
    [
        ("mod_fastcgi.c", True),
        ("mod_fastcgi", True),
        ("fastcgi_module", True),
        ("MOD_MIME.C", True),
        ("mod_env.c", True),
        ("mod_alias.c", True),
        ("mod_actions.c", True),
        ("mod_cgi.c", True),
        ("mod_dir.c", True),
        ("mod_log_config.c", True),
        ("log_config_module", True),
        ("core.c", True),
        ("mod_ssl.c", False),
        ("mod_rewrite.c", False),
        ("mod_fastcgi.so", True),
        ("fastcgi", True),
        ("mod_php5.c", False),
    ],
)
def test_isImplementedModule(name: str, implemented: bool) -> None:
    """
    C{<IfModule>} knows the modules txfastcgi implements, in every spelling.
    """
    assert isImplementedModule(name) is implemented


def test_ifModule(here: Path) -> None:
    """
    C{<IfModule>} keeps its statements when the module is implemented and
    drops them otherwise; C{!} inverts; they nest; the kept statements are
    in the place of the section.
    """
    write(
        here,
        "httpd.conf",
        "<IfModule mod_fastcgi.c>\nA\n<IfModule !mod_ssl.c>\nB\n</IfModule>\n</IfModule>\n"
        "<IfModule mod_ssl.c>\nC\nInclude missing.conf\n</IfModule>\n"
        "<IfModule !mod_mime.c>\nD\n</IfModule>\n"
        "<Location />\n<IfModule mod_env.c>\nE\n</IfModule>\n</Location>\n",
    )
    nodes = readTree("httpd.conf").nodes
    assert [n.name for n in nodes] == ["A", "B", "Location"]
    location = nodes[2]
    assert isinstance(location, Section)
    assert [c.name for c in location.children] == ["E"]


@pytest.mark.parametrize("arguments", ["", " a b", " !"])
def test_ifModuleArguments(here: Path, arguments: str) -> None:
    """
    C{<IfModule>} takes exactly one module name.
    """
    write(here, "httpd.conf", f"<IfModule{arguments}>\n</IfModule>\n")
    assert readError("httpd.conf").startswith(
        "httpd.conf:1: <IfModule>: takes one argument, a module name with an optional '!'"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "<VirtualHost *:80>\nServerName a\n</VirtualHost>\n",
            "httpd.conf:1: <VirtualHost>: virtual hosts are not supported; run one "
            "txfastcgi per host (got '*:80')",
        ),
        (
            "NameVirtualHost *\n",
            "httpd.conf:1: NameVirtualHost: virtual hosts are not supported; run one "
            "txfastcgi per host (got '*')",
        ),
    ],
)
def test_virtualHostsAreRefused(here: Path, text: str, message: str) -> None:
    """
    Name-based virtual hosts are not implemented: a clear error.
    """
    write(here, "httpd.conf", text)
    assert readError("httpd.conf") == message


def test_unreadableMainFile(here: Path) -> None:
    """
    A missing main file is a one-line error too.
    """
    assert readError("nope.conf") == (
        "nope.conf:0: config: cannot read the file: No such file or directory"
    )


def test_notUTF8(here: Path) -> None:
    """
    A file that is not UTF-8 is refused at the offending line.
    """
    (here / "httpd.conf").write_bytes(b"Port 80\nServerName \xff\n")
    assert readError("httpd.conf") == (
        "httpd.conf:2: config: the file is not valid UTF-8 (got b'\\xff')"
    )


@pytest.mark.parametrize(
    "root, path, expected",
    [
        ("/srv", "logs/x", "/srv/logs/x"),
        ("/srv", "/var/log/x", "/var/log/x"),
        ("/srv", "icons/", "/srv/icons/"),
    ],
)
def test_resolvePath(root: str, path: str, expected: str) -> None:
    """
    L{resolvePath} joins relative paths to the ServerRoot, keeping a
    trailing slash.
    """
    assert resolvePath(root, path) == expected


def test_readConfigUsesGivenEnviron(here: Path) -> None:
    """
    L{readConfig} takes the environment for C{PassEnv} from its argument.
    """
    write(here, "httpd.conf", "PassEnv HOME\n")
    config = readConfig("httpd.conf", environ={"HOME": "/home/x"})
    assert config.server.env[0].value == "/home/x"


def test_checkModeValid(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """
    The check mode prints the notes of a valid file and returns 0.
    """
    write(here, "httpd.conf", "Port 8080\nTimeout 300\n")
    assert main(["httpd.conf"]) == 0
    out, err = capsys.readouterr()
    assert out == (
        "httpd.conf:2: Timeout: ignored: it tunes Apache's own process model or a "
        "feature txfastcgi does not have\n"
    )
    assert err == ""


def test_checkModeInvalid(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """
    The check mode prints one line per invalid file on stderr and returns 1.
    """
    write(here, "good.conf", "Port 8080\n")
    write(here, "bad.conf", "Port 8080\nPort many\n")
    assert main(["bad.conf", "good.conf"]) == 1
    out, err = capsys.readouterr()
    assert (
        err
        == "bad.conf:2: Port: the port must be an integer between 1 and 65535 (got 'many')\n"
    )


def test_checkModeUsage(capsys: pytest.CaptureFixture[str]) -> None:
    """
    Without a file the check mode prints its usage and returns 2.
    """
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().err


def test_checkModeAsAProgram(here: Path) -> None:
    """
    C{python -m txfastcgi.config FILE} exits non-zero with the one-line
    error on stderr and no traceback.
    """
    write(here, "httpd.conf", "\n\nAppClass /bin/sh -processes many\n")
    done = subprocess.run(
        [sys.executable, "-m", "txfastcgi.config", "httpd.conf"],
        capture_output=True,
        text=True,
        cwd=here,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "httpd.conf:3: AppClass: -processes must be an integer between 1 and 50 "
        "(got 'many')\n"
    )


def _imports(path: Path) -> set[str]:
    """
    The absolute module names a file imports.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize(
    "path", sorted((ROOT / "txfastcgi" / "config").glob("*.py")), ids=lambda p: p.name
)
def test_configImportsNoTwisted(path: Path) -> None:
    """
    The config package never imports Twisted; of the project it uses only
    itself and the pure L{txfastcgi.ipc} and L{txfastcgi.appclass}.
    """
    for name in _imports(path):
        assert not name.startswith("twisted"), name
        if name.startswith("txfastcgi"):
            assert name.startswith("txfastcgi.config") or name in (
                "txfastcgi.ipc",
                "txfastcgi.appclass",
            ), name


def test_importingConfigLoadsNoTwisted() -> None:
    """
    Importing the package in a fresh interpreter loads no Twisted module,
    directly or through what it imports.
    """
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, txfastcgi.config, txfastcgi.config.__main__; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'twisted'))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"


def test_includeUnlistableDirectory(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A directory that cannot be listed is an error at the C{Include} line.
    """
    (here / "conf.d").mkdir()
    write(here, "httpd.conf", "Include conf.d\n")

    def refuse(path: str) -> list[str]:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "listdir", refuse)
    assert readError("httpd.conf") == (
        "httpd.conf:1: Include: cannot list the directory: Permission denied (got 'conf.d')"
    )
