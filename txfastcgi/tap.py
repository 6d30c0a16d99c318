# -*- test-case-name: tests.test_tap -*-
"""
C{twistd fastcgi}: the FastCGI gateway web server, configured by an Apache
httpd.conf::

    twistd -n fastcgi --config /etc/txfastcgi/httpd.conf
    twistd fastcgi --check --config httpd.conf     # like apachectl configtest

The configuration is read and checked while the command line is parsed, so a
bad file stops twistd before it daemonises, with the one-line message
C{FILE:LINE: Directive: what is wrong (got VALUE)}.  C{--check} reads the
file, prints its notes and C{Syntax OK} on stdout and exits with status 0,
or prints the error line on stderr and exits with status 1.

Without C{--config} the server serves the configuration shipped in the
package (C{txfastcgi/data/default.conf}): the echo example (a copy of
C{examples/echo} in C{txfastcgi/data/htdocs/examples/echo}, so that it is
in the wheel) at C{http://127.0.0.1:5556/examples/echo}.  echo is a Python
script started with an environment of its C{-initial-env} pairs only; the
default configuration copies C{PATH} from the server's environment, and for
it the server puts the directory of the Python running twistd at the head
of that C{PATH}, so that C{#!/usr/bin/env python3} finds a Python that has
Twisted and txfastcgi.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from twisted.python import usage

from txfastcgi.config import ConfigError, ServerConfig, readConfig
from txfastcgi.service import (
    DEFAULT_DRAIN_TIMEOUT,
    GatewayService,
    checkEndpoint,
    makeGatewayService,
    resolveRunAs,
)

_LONGDESC = __doc__

__all__ = ["Options", "defaultConfigPath", "defaultEnvironment", "makeService"]


def defaultConfigPath() -> str:
    """
    @return: the path of the configuration shipped in the package.
    """
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "default.conf")


def defaultEnvironment(environ: Mapping[str, str]) -> dict[str, str]:
    """
    The server's environment as the default configuration sees it: C{PATH}
    starts with the directory of the running Python.

    @param environ: the real environment.
    @return: a copy with C{PATH} adjusted.
    """
    env = dict(environ)
    here = os.path.dirname(sys.executable)
    rest = env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["PATH"] = f"{here}:{rest}" if here else rest
    return env


class Options(usage.Options):
    """
    Command line of C{twistd fastcgi}.
    """

    synopsis = "[--config FILE] [--check]"
    longdesc = _LONGDESC
    optParameters: list[list[Any]] = [
        ["config", "c", None, "The httpd.conf to serve (default: the packaged echo example)."],
        [
            "drain-timeout",
            None,
            DEFAULT_DRAIN_TIMEOUT,
            "Seconds requests in flight get to finish at shutdown.",
            float,
        ],
    ]
    optFlags = [
        ["check", "t", "Check the configuration and exit (0: Syntax OK, 1: error)."],
    ]

    def postOptions(self) -> None:
        """
        Read and check the configuration.

        @raise usage.UsageError: with the configuration's one-line error.
        @raise SystemExit: for C{--check}, with status 0 or 1.
        """
        if self["drain-timeout"] < 0:
            raise usage.UsageError("--drain-timeout must not be negative")
        path = self["config"]
        if path is None:
            path = defaultConfigPath()
            environ = defaultEnvironment(os.environ)
        else:
            environ = dict(os.environ)
        try:
            config = readConfig(path, environ=environ, checkEndpoint=checkEndpoint)
        except ConfigError as e:
            if self["check"]:
                print(e, file=sys.stderr)
                raise SystemExit(1) from None
            raise usage.UsageError(str(e)) from None
        if self["check"]:
            for note in config.notes:
                print(note)
            print("Syntax OK")
            raise SystemExit(0)
        self["configPath"] = path
        self["serverConfig"] = config
        self["environ"] = environ


def _twistdOption(options: usage.Options, name: str) -> int | None:
    parent = options.parent
    if parent is None:
        return None
    value = parent.get(name)
    return value if isinstance(value, int) else None


def makeService(options: Options, reactor: Any = None) -> GatewayService:
    """
    Compose the server from parsed options.

    @param options: the parsed options (L{Options.postOptions} read the
        configuration).
    @param reactor: the reactor; the global one when L{None} (looked up
        here, never at import time).
    @return: the service.
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    config: ServerConfig = options["serverConfig"]
    runAs = resolveRunAs(
        config,
        euid=os.geteuid(),
        twistdUid=_twistdOption(options, "uid"),
        twistdGid=_twistdOption(options, "gid"),
    )
    return makeGatewayService(
        config,
        reactor,
        runAs=runAs,
        environ=options["environ"],
        drainTimeout=options["drain-timeout"],
    )
