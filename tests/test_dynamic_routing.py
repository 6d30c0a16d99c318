# -*- test-case-name: tests.test_dynamic_routing -*-
"""
Tests for the routing of dynamic applications (L{txfastcgi.routing}, SPEC.md
section 4.2): only a regular file that the application's processes could
execute qualifies, and a refusal names why (for the log), never an exec.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from txfastcgi.config import readConfig
from txfastcgi.routing import RouteKind, Router

CONFIG = """\
DocumentRoot {root}/docs
AddHandler fastcgi-script .fcgi
{user}
"""


def router(root: Path, user: str = "") -> Router:
    """
    A router for C{root/docs}, with an optional C{User}/C{Group} line.
    """
    conf = root / "httpd.conf"
    conf.write_text(CONFIG.format(root=root, user=user))
    return Router(readConfig(str(conf), environ={}))


def app(root: Path, name: str, mode: int, uid: int | None = None) -> None:
    """
    Write C{docs/NAME} with C{mode} (and owner C{uid}).
    """
    path = root / "docs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"#!/bin/sh\n")
    path.chmod(mode)
    if uid is not None:
        os.chown(path, uid, -1)


def test_anyExecuteBitWithoutUser(tmp_path: Path) -> None:
    """
    Without C{User}, an executable regular file is a dynamic application
    and one with no execute bit is 403 with the reason.
    """
    app(tmp_path, "a.fcgi", 0o755)
    app(tmp_path, "b.fcgi", 0o644)
    r = router(tmp_path)
    route = r.route([b"a.fcgi"])
    assert route.kind is RouteKind.FASTCGI and route.dynamic
    route = r.route([b"b.fcgi"])
    assert route.kind is RouteKind.FORBIDDEN
    assert route.reason.endswith("is not executable: not run as a dynamic application")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files as others")
def test_executableByTheConfiguredUser(tmp_path: Path) -> None:
    """
    A server still running as root starts dynamic applications as C{User}:
    a file only its owner (root) may execute is refused for C{User nobody}
    (403 naming the user), while one executable by others, or owned by
    nobody with the owner bit, is served.
    """
    app(tmp_path, "rootonly.fcgi", 0o700)
    app(tmp_path, "everyone.fcgi", 0o711)
    app(tmp_path, "mine.fcgi", 0o700, uid=65534)
    r = router(tmp_path, "User nobody")
    route = r.route([b"rootonly.fcgi"])
    assert route.kind is RouteKind.FORBIDDEN
    assert "not executable by user nobody" in route.reason
    assert r.route([b"everyone.fcgi"]).dynamic
    assert r.route([b"mine.fcgi"]).dynamic


def test_notExecutableByTheServersUser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A server that is not root checks its own access: an execute bit it may
    not use (C{os.access} says no) is 403.
    """
    app(tmp_path, "a.fcgi", 0o755)
    r = router(tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    route = r.route([b"a.fcgi"])
    assert route.kind is RouteKind.FORBIDDEN
    assert "not executable by the server's user" in route.reason
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    assert r.route([b"a.fcgi"]).dynamic
