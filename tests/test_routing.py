# -*- test-case-name: tests.test_routing -*-
"""
Tests for L{txfastcgi.routing}: tables of URLs routed over a document tree
built in a temporary directory, with the configuration read by
L{txfastcgi.config.readConfig} from an httpd.conf written for the test.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote_to_bytes

import pytest

from txfastcgi.config import readConfig
from txfastcgi.config.model import ServerConfig
from txfastcgi.routing import Route, RouteKind, Router, environment, findPathInfo

CONFIG = """\
ServerRoot {root}
DocumentRoot {root}/docs
ScriptAlias /cgi-bin/ {root}/cgi-bin/
Alias /icons/ {root}/icons/
Alias /icons/special/ {root}/other/
AddType application/x-httpd-fcgi .fcg
AddHandler cgi-script .cgi
AddType application/x-httpd-php .php
Action application/x-httpd-php /cgi-bin/php
Action virtual-script /cgi-bin/php virtual
Action loop-type /loop virtual
AppClass {root}/docs/examples/echo -initial-env STATE=TEXAS
<Location /examples/echo>
SetHandler fastcgi-script
</Location>
AppClass {root}/docs/examples/echo.fcg -socket echo-fcg.sock
ExternalAppClass {root}/docs/examples/remote-echo -host localhost:8978
<Location /examples/remote-echo>
SetHandler fastcgi-script
</Location>
AppClass {root}/docs/nph-app.fcg -socket nph.sock
AppClass {root}/docs/forced/plain.html -socket forced.sock
ExternalAppClass {root}/cgi-bin/app.fcg -socket cgi-app.sock
SetEnv LEVEL server
SetEnv GONE yes
<Directory {root}/docs>
Options +ExecCGI
SetEnv LEVEL directory
</Directory>
<Directory {root}/docs/noexec>
Options -ExecCGI
</Directory>
<Directory {root}/docs/listed>
Options +Indexes
</Directory>
<Directory {root}/docs/nolinks>
Options -FollowSymLinks
</Directory>
<Directory {root}/docs/owned>
Options SymLinksIfOwnerMatch
</Directory>
<Directory {root}/docs/forced>
ForceType application/x-httpd-fcgi
</Directory>
<Directory {root}/docs/mixed>
AddHandler fastcgi-script .cgi
</Directory>
<Directory {root}/docs/*/deep>
SetEnv WILD yes
</Directory>
<DirectoryMatch "/ix[0-9]/$">
DirectoryIndex index.fcg index.html
</DirectoryMatch>
<Files "page*.html">
SetEnv LEVEL files
</Files>
<Directory {root}/docs/nested>
<Files inner.html>
SetEnv LEVEL nested-files
</Files>
</Directory>
<Location /page.html>
SetEnv LEVEL location
UnsetEnv GONE
</Location>
<Location /mixed/set>
SetHandler cgi-script
</Location>
<LocationMatch "^/virtual/">
SetHandler virtual-script
</LocationMatch>
<Location /loop>
SetHandler loop-type
</Location>
<Location /limited>
LimitRequestBody 10
</Location>
"""

FILES = [
    "docs/index.html",
    "docs/page.html",
    "docs/page2.html",
    "docs/other.html",
    "docs/unknown.zzz",
    "docs/page.php",
    "docs/examples/echo",
    "docs/examples/echo.fcg",
    "docs/nph-app.fcg",
    "docs/hello.cgi",
    "docs/plain.cgi",
    "docs/noexec/hello.cgi",
    "docs/dir/index.html",
    "docs/empty/.keep",
    "docs/listed/a.txt",
    "docs/forced/plain.html",
    "docs/mixed/x.cgi",
    "docs/mixed/set/y.cgi",
    "docs/a/deep/f.html",
    "docs/nested/inner.html",
    "docs/ix1/index.html",
    "docs/ix1/index.fcg",
    "docs/ix2/index.html",
    "docs/nolinks/real.html",
    "docs/owned/real.html",
    "cgi-bin/printenv",
    "cgi-bin/php",
    "cgi-bin/app.fcg",
    "cgi-bin/sub/x",
    "icons/a.png",
    "outside/secret.txt",
]

EXECUTABLE = {
    "docs/examples/echo",
    "docs/examples/echo.fcg",
    "docs/nph-app.fcg",
    "docs/hello.cgi",
    "docs/noexec/hello.cgi",
    "docs/forced/plain.html",
    "docs/mixed/x.cgi",
    "docs/mixed/set/y.cgi",
    "cgi-bin/printenv",
    "cgi-bin/php",
    "cgi-bin/app.fcg",
}


def buildTree(root: Path) -> ServerConfig:
    """
    Create the document tree and configuration under C{root}.

    @return: the configuration read back.
    """
    for name in FILES:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"#!/bin/sh\necho\n")
        os.chmod(path, 0o755 if name in EXECUTABLE else 0o644)
    (root / "docs" / "link").symlink_to(root / "outside")
    (root / "docs" / "nolinks" / "link.txt").symlink_to(root / "outside" / "secret.txt")
    (root / "docs" / "owned" / "link.html").symlink_to(root / "docs" / "owned" / "real.html")
    conf = root / "httpd.conf"
    conf.write_text(CONFIG.format(root=root))
    return readConfig(str(conf), environ={})


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Router]:
    """
    The document tree and a L{Router} for it.
    """
    root = tmp_path.resolve()
    return root, Router(buildTree(root))


def segmentsOf(path: bytes) -> list[bytes]:
    """
    Split and decode a raw path as twisted.web does for C{postpath}.
    """
    path = path.partition(b"?")[0]
    return [unquote_to_bytes(s) for s in path[1:].split(b"/")]


def routeOf(router: Router, path: bytes) -> Route:
    """
    Route a raw request path.
    """
    return router.route(segmentsOf(path), path)


R = "{root}"

# URL, kind, filename, SCRIPT_NAME, PATH_INFO, PATH_TRANSLATED, handler, type
TABLE: list[tuple[bytes, RouteKind, str | None, str, str, str | None, str | None, str]] = [
    # SPEC.md section 8's example table.
    (
        b"/examples/echo/a/b?x=1",
        RouteKind.FASTCGI,
        R + "/docs/examples/echo",
        "/examples/echo",
        "/a/b",
        R + "/docs/a/b",
        "fastcgi-script",
        "text/plain",
    ),
    (
        b"/examples/echo",
        RouteKind.FASTCGI,
        R + "/docs/examples/echo",
        "/examples/echo",
        "",
        None,
        "fastcgi-script",
        "text/plain",
    ),
    # <Location /examples/echo> does not match echo.fcg; AddType selects it.
    (
        b"/examples/echo.fcg/x",
        RouteKind.FASTCGI,
        R + "/docs/examples/echo.fcg",
        "/examples/echo.fcg",
        "/x",
        R + "/docs/x",
        None,
        "application/x-httpd-fcgi",
    ),
    # A virtual ExternalAppClass path: the parent directory exists.
    (
        b"/examples/remote-echo/x/y/",
        RouteKind.FASTCGI,
        R + "/docs/examples/remote-echo",
        "/examples/remote-echo",
        "/x/y/",
        R + "/docs/x/y/",
        "fastcgi-script",
        "text/plain",
    ),
    # PATH_TRANSLATED maps the path info through the aliases.
    (
        b"/examples/echo/icons/a.png",
        RouteKind.FASTCGI,
        R + "/docs/examples/echo",
        "/examples/echo",
        "/icons/a.png",
        R + "/icons/a.png",
        "fastcgi-script",
        "text/plain",
    ),
    # Percent-decoded path info; SCRIPT_NAME found from the right.
    (
        b"/examples/echo/a%20b/c",
        RouteKind.FASTCGI,
        R + "/docs/examples/echo",
        "/examples/echo",
        "/a b/c",
        R + "/docs/a b/c",
        "fastcgi-script",
        "text/plain",
    ),
    # Runs of slashes are collapsed.
    (
        b"//examples///echo//a",
        RouteKind.FASTCGI,
        R + "/docs/examples/echo",
        "/examples/echo",
        "/a",
        R + "/docs/a",
        "fastcgi-script",
        "text/plain",
    ),
    # ScriptAlias: cgi-script, even over AddType application/x-httpd-fcgi.
    (
        b"/cgi-bin/printenv/extra/path",
        RouteKind.CGI,
        R + "/cgi-bin/printenv",
        "/cgi-bin/printenv",
        "/extra/path",
        R + "/docs/extra/path",
        "cgi-script",
        "text/plain",
    ),
    (
        b"/cgi-bin/app.fcg",
        RouteKind.CGI,
        R + "/cgi-bin/app.fcg",
        "/cgi-bin/app.fcg",
        "",
        None,
        "cgi-script",
        "application/x-httpd-fcgi",
    ),
    # AddHandler cgi-script with Options ExecCGI.
    (b"/hello.cgi", RouteKind.CGI, R + "/docs/hello.cgi", "/hello.cgi", "", None, "cgi-script", "text/plain"),
    # Alias, first match in file order (/icons/special/ is never reached).
    (b"/icons/a.png", RouteKind.STATIC, R + "/icons/a.png", "/icons/a.png", "", None, None, "image/png"),
    (
        b"/icons/special/x",
        RouteKind.NOT_FOUND,
        R + "/icons/special",
        "/icons/special",
        "/x",
        R + "/docs/x",
        None,
        "text/plain",
    ),
    # The alias needs its trailing slash: /cgi-bin is a document.
    (b"/cgi-bin", RouteKind.NOT_FOUND, R + "/docs/cgi-bin", "/cgi-bin", "", None, None, "text/plain"),
    # Static files and their types.
    (b"/page.html", RouteKind.STATIC, R + "/docs/page.html", "/page.html", "", None, None, "text/html"),
    (b"/unknown.zzz", RouteKind.STATIC, R + "/docs/unknown.zzz", "/unknown.zzz", "", None, None, "text/plain"),
    # No path info for static files.
    (b"/page.html/x", RouteKind.NOT_FOUND, R + "/docs/page.html", "/page.html", "/x", R + "/docs/x", None, "text/html"),
    (b"/missing.html", RouteKind.NOT_FOUND, R + "/docs/missing.html", "/missing.html", "", None, None, "text/html"),
    # ForceType application/x-httpd-fcgi beats the .html type.
    (
        b"/forced/plain.html",
        RouteKind.FASTCGI,
        R + "/docs/forced/plain.html",
        "/forced/plain.html",
        "",
        None,
        None,
        "application/x-httpd-fcgi",
    ),
    # AddHandler in a <Directory> overrides the server's AddHandler (there
    # is no application for that executable file: a dynamic one).
    (b"/mixed/x.cgi", RouteKind.FASTCGI, R + "/docs/mixed/x.cgi", "/mixed/x.cgi", "", None, "fastcgi-script", "text/plain"),
    # SetHandler beats AddHandler.
    (b"/mixed/set/y.cgi", RouteKind.CGI, R + "/docs/mixed/set/y.cgi", "/mixed/set/y.cgi", "", None, "cgi-script", "text/plain"),
]


@pytest.mark.parametrize(
    "path, kind, filename, scriptName, pathInfo, pathTranslated, handler, mimeType", TABLE
)
def test_routeTable(
    tree: tuple[Path, Router],
    path: bytes,
    kind: RouteKind,
    filename: str | None,
    scriptName: str,
    pathInfo: str,
    pathTranslated: str | None,
    handler: str | None,
    mimeType: str,
) -> None:
    """
    Each URL is routed to the expected kind, file name, C{SCRIPT_NAME},
    C{PATH_INFO}, C{PATH_TRANSLATED}, handler and media type.
    """
    root, router = tree
    route = routeOf(router, path)

    def expand(value: str | None) -> str | None:
        return None if value is None else value.replace(R, str(root))

    actual = (
        route.kind,
        route.scriptName,
        route.pathInfo,
        route.pathTranslated,
        route.handler,
        route.mimeType,
    )
    assert actual == (kind, scriptName, pathInfo, expand(pathTranslated), handler, mimeType), route.reason
    if filename is not None:
        assert route.filename == expand(filename)


def test_fastcgiApplication(tree: tuple[Path, Router]) -> None:
    """
    A FastCGI route names the AppClass or ExternalAppClass whose path-name
    equals the file name; an executable file with no application is a
    dynamic application; a missing one is 404 with a reason for the log.
    """
    root, router = tree
    assert routeOf(router, b"/examples/echo/a").app == f"{root}/docs/examples/echo"
    assert not routeOf(router, b"/examples/echo/a").dynamic
    assert routeOf(router, b"/examples/remote-echo").app == f"{root}/docs/examples/remote-echo"
    route = routeOf(router, b"/mixed/x.cgi")
    assert route.kind is RouteKind.FASTCGI
    assert route.dynamic
    assert route.app == f"{root}/docs/mixed/x.cgi"
    route = routeOf(router, b"/mixed/missing.cgi")
    assert route.kind is RouteKind.NOT_FOUND
    assert "no AppClass" in route.reason


def test_dynamicRefusals(tree: tuple[Path, Router]) -> None:
    """
    Only executable regular files inside the tree they were mapped under
    are dynamic applications: a non-executable file and a symbolic link
    leaving the document root are 403; dot segments and encoded slashes
    404; a link staying inside the tree is allowed.
    """
    root, router = tree
    route = routeOf(router, b"/ix1/index.fcg")
    assert route.kind is RouteKind.FORBIDDEN
    assert "not executable" in route.reason
    outside = root / "outside" / "tool.fcg"
    outside.write_text("#!/bin/sh\n")
    outside.chmod(0o755)
    (root / "docs" / "mixed" / "escape.cgi").symlink_to(outside)
    route = routeOf(router, b"/mixed/escape.cgi")
    assert route.kind is RouteKind.FORBIDDEN
    assert "outside" in route.reason
    (root / "docs" / "mixed" / "inside.cgi").symlink_to(root / "docs" / "mixed" / "x.cgi")
    route = routeOf(router, b"/mixed/inside.cgi")
    assert route.kind is RouteKind.FASTCGI and route.dynamic
    for raw in ([b"mixed", b"..", b"..", b"outside", b"tool.fcg"], [b"mixed%2Fx.cgi"]):
        assert router.route(raw).kind is RouteKind.NOT_FOUND
    assert router.route([b"mixed/x.cgi"]).kind is RouteKind.NOT_FOUND


def test_locationPrefixAtSlashBoundary(tree: tuple[Path, Router]) -> None:
    """
    C{<Location /examples/echo>} applies to C{/examples/echo} and below, not
    to C{/examples/echo.fcg}.
    """
    _, router = tree
    patterns = lambda route: [s.pattern for s in route.config.sections]  # noqa: E731
    assert "/examples/echo" in patterns(routeOf(router, b"/examples/echo/x"))
    assert "/examples/echo" not in patterns(routeOf(router, b"/examples/echo.fcg"))


@pytest.mark.parametrize(
    "path, level",
    [
        (b"/index.html", "directory"),
        (b"/page2.html", "files"),
        (b"/page.html", "location"),
        (b"/nested/inner.html", "nested-files"),
        (b"/icons/a.png", "server"),
    ],
)
def test_sectionOrder(tree: tuple[Path, Router], path: bytes, level: str) -> None:
    """
    Sections merge as Apache merges them: Directory, then Files (server
    level, then nested in the matching Directory), then Location; the later
    one wins.
    """
    _, router = tree
    route = routeOf(router, path)
    assert route.config is not None
    assert dict(route.config.variables)["LEVEL"] == level


def test_environmentRules(tree: tuple[Path, Router]) -> None:
    """
    SetEnv, PassEnv and UnsetEnv apply in merge order: an UnsetEnv in a
    Location removes a server-level SetEnv.
    """
    _, router = tree
    env = dict(routeOf(router, b"/page2.html").config.variables)  # type: ignore[union-attr]
    assert env["GONE"] == "yes"
    env = dict(routeOf(router, b"/page.html").config.variables)  # type: ignore[union-attr]
    assert "GONE" not in env


def test_environmentFunction() -> None:
    """
    L{environment} applies rules in order; a PassEnv of an unset variable
    passes nothing.
    """
    from txfastcgi.config.errors import Source
    from txfastcgi.config.model import EnvOp, EnvRule

    s = Source("f", 1)
    rules = [
        EnvRule(EnvOp.SET, "A", "1", s),
        EnvRule(EnvOp.SET, "B", "2", s),
        EnvRule(EnvOp.PASS, "C", None, s),
        EnvRule(EnvOp.PASS, "D", "4", s),
        EnvRule(EnvOp.UNSET, "A", None, s),
        EnvRule(EnvOp.SET, "B", "3", s),
    ]
    assert environment(rules) == (("D", "4"), ("B", "3"))


def test_wildcardDirectory(tree: tuple[Path, Router]) -> None:
    """
    C{<Directory /docs/*/deep>} matches a directory one level down, not
    across C{/}.
    """
    _, router = tree
    route = routeOf(router, b"/a/deep/f.html")
    assert dict(route.config.variables).get("WILD") == "yes"  # type: ignore[union-attr]


def test_limitRequestBody(tree: tuple[Path, Router]) -> None:
    """
    The merged configuration carries a section's LimitRequestBody.
    """
    _, router = tree
    assert routeOf(router, b"/limited/x").config.limitRequestBody == 10  # type: ignore[union-attr]
    assert routeOf(router, b"/page.html").config.limitRequestBody == 0  # type: ignore[union-attr]


def test_action(tree: tuple[Path, Router]) -> None:
    """
    An Action for a media type routes to the action script: its
    C{SCRIPT_NAME} is the action URL, its C{PATH_INFO} and
    C{PATH_TRANSLATED} name the original document.
    """
    root, router = tree
    route = routeOf(router, b"/page.php")
    assert route.kind is RouteKind.ACTION
    assert route.action is not None and route.action.url == "/cgi-bin/php"
    target = route.target
    assert target is not None
    assert (target.kind, target.filename, target.scriptName, target.pathInfo, target.pathTranslated) == (
        RouteKind.CGI,
        f"{root}/cgi-bin/php",
        "/cgi-bin/php",
        "/page.php",
        f"{root}/docs/page.php",
    )
    assert route.served is target


def test_actionNeedsTheFile(tree: tuple[Path, Router]) -> None:
    """
    An Action for a file that does not exist is 404, unless the action is
    virtual.
    """
    _, router = tree
    assert routeOf(router, b"/missing.php").kind is RouteKind.NOT_FOUND
    route = routeOf(router, b"/virtual/nothing")
    assert route.kind is RouteKind.ACTION
    assert route.served.kind is RouteKind.CGI
    assert route.served.pathInfo == "/virtual/nothing"


def test_actionLoop(tree: tuple[Path, Router]) -> None:
    """
    An Action whose script leads back to the same Action ends in a server
    error after L{MAX_ACTION_DEPTH} steps.
    """
    _, router = tree
    route = routeOf(router, b"/loop")
    assert route.served.kind is RouteKind.SERVER_ERROR


@pytest.mark.parametrize(
    "path, kind, index",
    [
        (b"/dir/", RouteKind.DIRECTORY, "/dir/index.html"),
        (b"/", RouteKind.DIRECTORY, "/index.html"),
        (b"/ix1/", RouteKind.DIRECTORY, "/ix1/index.fcg"),
        (b"/ix2/", RouteKind.DIRECTORY, "/ix2/index.html"),
        (b"/empty/", RouteKind.FORBIDDEN, None),
        (b"/listed/", RouteKind.DIRECTORY, None),
        (b"/cgi-bin/", RouteKind.FORBIDDEN, None),
        (b"/cgi-bin/sub/", RouteKind.FORBIDDEN, None),
    ],
)
def test_directory(tree: tuple[Path, Router], path: bytes, kind: RouteKind, index: str | None) -> None:
    """
    A directory with its slash is served by its first DirectoryIndex file,
    else listed with Options Indexes, else forbidden; a ScriptAlias
    directory is forbidden (not a script).
    """
    _, router = tree
    route = routeOf(router, path)
    assert route.kind is kind, route.reason
    if index is None:
        assert route.target is None
    else:
        assert route.target is not None and route.target.scriptName == index


def test_indexNamedFastCGI(tree: tuple[Path, Router]) -> None:
    """
    The first DirectoryIndex name that is a regular file is the index,
    whatever then serves it: as in mod_dir, the sub-request does not run the
    handler, so an index with a FastCGI type and no application is refused
    rather than a reason to try the next name (here 403: it is not
    executable, so not a dynamic application either).
    """
    _, router = tree
    route = routeOf(router, b"/ix1/")
    assert route.target is not None
    assert route.target.mimeType == "application/x-httpd-fcgi"
    assert route.served.kind is RouteKind.FORBIDDEN


@pytest.mark.parametrize(
    "raw, location",
    [
        (b"/dir", b"/dir/"),
        (b"/dir?a=1", b"/dir/?a=1"),
        (b"/d%69r", b"/d%69r/"),
    ],
)
def test_directoryRedirect(tree: tuple[Path, Router], raw: bytes, location: bytes) -> None:
    """
    A directory without its trailing slash redirects to the URL with one,
    keeping the raw path and the query.
    """
    _, router = tree
    route = routeOf(router, raw)
    assert route.kind is RouteKind.REDIRECT
    assert route.location == location


@pytest.mark.parametrize(
    "path",
    [
        b"/../etc/passwd",
        b"/%2e%2e/etc/passwd",
        b"/examples/echo/../../etc",
        b"/examples/echo/%2E%2E",
        b"/examples%2Fecho",
        b"/examples/echo/a%2Fb",
        b"/page.html%00.txt",
        b"/./page.html",
    ],
)
def test_traversalRefused(tree: tuple[Path, Router], path: bytes) -> None:
    """
    Dot segments, encoded slashes and NUL are refused with 404 before the
    file system is looked at.
    """
    _, router = tree
    looked: list[str] = []

    def stat(p: str) -> os.stat_result:
        looked.append(p)
        return os.stat(p)

    route = Router(router.config, stat=stat).route(segmentsOf(path), path)
    assert route.kind is RouteKind.NOT_FOUND
    assert looked == []


def test_symlinksFollowedByDefault(tree: tuple[Path, Router]) -> None:
    """
    With the default Options (FollowSymLinks) a link is followed, even out
    of the document tree, as Apache does.
    """
    root, router = tree
    route = routeOf(router, b"/link/secret.txt")
    assert route.kind is RouteKind.STATIC
    assert route.filename == f"{root}/docs/link/secret.txt"


def test_symlinksRefused(tree: tuple[Path, Router]) -> None:
    """
    With C{Options -FollowSymLinks} a link is forbidden; with
    C{SymLinksIfOwnerMatch} a link owned like its target is followed.
    """
    _, router = tree
    route = routeOf(router, b"/nolinks/link.txt")
    assert route.kind is RouteKind.FORBIDDEN
    assert "symbolic link" in route.reason
    assert routeOf(router, b"/nolinks/real.html").kind is RouteKind.STATIC
    assert routeOf(router, b"/owned/link.html").kind is RouteKind.STATIC


@pytest.mark.parametrize(
    "path, reason",
    [
        (b"/nph-app.fcg", "NPH"),
        (b"/noexec/hello.cgi", "ExecCGI"),
        (b"/plain.cgi", "permissions"),
    ],
)
def test_forbidden(tree: tuple[Path, Router], path: bytes, reason: str) -> None:
    """
    A nph- FastCGI script, a CGI script without ExecCGI and a CGI script
    that is not executable are forbidden.
    """
    _, router = tree
    route = routeOf(router, path)
    assert route.kind is RouteKind.FORBIDDEN
    assert reason in route.reason


def test_statErrorForbidden(tree: tuple[Path, Router]) -> None:
    """
    A look-up failing with anything but ENOENT/ENOTDIR (a missing search
    permission) is forbidden, as in Apache's C{get_path_info}.
    """
    _, router = tree

    def stat(p: str) -> os.stat_result:
        raise PermissionError(errno.EACCES, "Permission denied", p)

    route = Router(router.config, stat=stat).route([b"page.html"])
    assert route.kind is RouteKind.FORBIDDEN
    assert "Permission denied" in route.reason


def test_typesConfig(tmp_path: Path) -> None:
    """
    With TypesConfig the types come from that file; DefaultType applies to
    unknown extensions; of several extensions the last known one wins.
    """
    root = tmp_path.resolve()
    (root / "docs").mkdir()
    for name in ("a.foo", "b.bar", "c.foo.bar", "d.bar.foo"):
        (root / "docs" / name).write_text("x")
    (root / "mime.types").write_text("text/x-foo foo\n")
    (root / "httpd.conf").write_text(
        f"ServerRoot {root}\nDocumentRoot {root}/docs\nTypesConfig mime.types\n"
        "DefaultType application/x-unknown\n"
    )
    router = Router(readConfig(str(root / "httpd.conf"), environ={}))
    types = {name: router.route([name.encode()]).mimeType for name in ("a.foo", "b.bar", "c.foo.bar", "d.bar.foo")}
    assert types == {
        "a.foo": "text/x-foo",
        "b.bar": "application/x-unknown",
        "c.foo.bar": "text/x-foo",
        "d.bar.foo": "text/x-foo",
    }


@pytest.mark.parametrize(
    "uri, pathInfo, expected",
    [
        ("/examples/echo/a/b", "/a/b", "/examples/echo"),
        ("/a/b", "/b", "/a"),
        ("/a/b/", "/b/", "/a"),
        ("/x", "/x", ""),
        ("/app/zz", "/z", "/app/zz"),
    ],
)
def test_findPathInfo(uri: str, pathInfo: str, expected: str) -> None:
    """
    L{findPathInfo} matches the path info from the right, then extends to
    the next slash, as C{ap_find_path_info}.
    """
    assert uri[: findPathInfo(uri, pathInfo)] == expected


def test_mergeCached(tree: tuple[Path, Router]) -> None:
    """
    Routing the same file twice (with different path info) reuses the merged
    configuration.
    """
    _, router = tree
    first = routeOf(router, b"/examples/echo/a").config
    second = routeOf(router, b"/examples/echo/b/c").config
    assert first is second


def fakeStat(existing: dict[str, int]) -> Callable[[str], Any]:
    """
    A C{stat} over a table of paths and modes.
    """

    def stat(path: str) -> Any:
        if path in existing:
            return os.stat_result((existing[path], 0, 0, 0, 0, 0, 0, 0, 0, 0))
        raise FileNotFoundError(errno.ENOENT, "No such file", path)

    return stat


def test_nothingExists(tree: tuple[Path, Router]) -> None:
    """
    When nothing along the file name exists, the file name stays whole and
    there is no path info (SPEC.md section 8, item 2).
    """
    _, router = tree
    route = Router(router.config, stat=fakeStat({})).route([b"a", b"b"])
    assert (route.kind, route.filename, route.pathInfo, route.scriptName) == (
        RouteKind.NOT_FOUND,
        router.documentRoot + "/a/b",
        "",
        "/a/b",
    )


def test_routeCache(tree: tuple[Path, Router]) -> None:
    """
    With C{cacheSeconds} a route is reused for the same path segments until
    that time has passed (no file system lookups meanwhile); then the file
    system is asked again and a change is seen.
    """
    root, router = tree
    looked: list[str] = []
    now = [100.0]

    def stat(p: str) -> os.stat_result:
        looked.append(p)
        return os.stat(p)

    cached = Router(router.config, stat=stat, cacheSeconds=1.0, clock=lambda: now[0])
    first = cached.route(segmentsOf(b"/page.html"), b"/page.html")
    assert first.kind is RouteKind.STATIC
    assert looked
    looked.clear()
    now[0] += 0.9
    assert cached.route(segmentsOf(b"/page.html"), b"/page.html?x=1") is first
    assert looked == []
    (root / "docs" / "page.html").unlink()
    now[0] += 0.2
    assert cached.route(segmentsOf(b"/page.html"), b"/page.html").kind is RouteKind.NOT_FOUND
    assert looked


def test_routeCacheKeepsNoRedirect(tree: tuple[Path, Router]) -> None:
    """
    A redirect, whose location carries the request's query, is worked out
    for every request.
    """
    _, router = tree
    cached = Router(router.config, cacheSeconds=60.0)
    assert cached.route(segmentsOf(b"/dir"), b"/dir?a=1").location == b"/dir/?a=1"
    assert cached.route(segmentsOf(b"/dir"), b"/dir?b=2").location == b"/dir/?b=2"
