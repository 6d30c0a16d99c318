# -*- test-case-name: tests.test_apptap -*-
"""
C{twistd fastcgi-app}: serve a WSGI application (or a txfastcgi handler) as a
FastCGI application.

    twistd -n fastcgi-app --wsgi package.module:app --socket /run/app.sock
    twistd -n fastcgi-app --wsgi package.module:app --port 9000
    spawn-fcgi -s /run/app.sock -n -- twistd -n fastcgi-app --wsgi pkg.mod:app

With neither C{--socket} nor C{--port}, fd 0 must be a listening socket
(FCGI_LISTENSOCK_FILENO), as spawn-fcgi, mod_fastcgi and C{cgi-fcgi -start}
provide.  It is duplicated while the options are parsed, so it survives
twistd's daemonising (which points fd 0 at /dev/null).

C{FCGI_WEB_SERVER_ADDRS} from the environment is honoured.  The current
directory is put on C{sys.path} so that C{--wsgi app:application} finds a
module next to where twistd was started, as other WSGI servers do.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.python import reflect, usage

from txfastcgi.application import FastCGIApplicationFactory, Handler, parseWebServerAddrs
from txfastcgi.listen import (
    DEFAULT_BACKLOG,
    FastCGIApplicationService,
    inheritedListeningFamily,
    tcpEndpoint,
    unixEndpoint,
)

__all__ = ["Options", "makeService", "loadObject"]


def loadObject(spec: str) -> Any:
    """
    Import C{"package.module:attribute"} (or C{"package.module.attribute"}).

    @raise usage.UsageError: if it cannot be imported.
    """
    module, sep, attribute = spec.partition(":")
    dotted = f"{module}.{attribute}" if sep else spec
    if not module or (sep and not attribute):
        raise usage.UsageError(f"expected package.module:object, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return reflect.namedAny(dotted)  # type: ignore[no-untyped-call]
    except Exception as e:
        raise usage.UsageError(f"cannot import {spec!r}: {e}") from e


def _mode(value: str) -> int:
    return int(value, 8)


class Options(usage.Options):
    """
    Command line of C{twistd fastcgi-app}.
    """

    synopsis = "[options] (--wsgi pkg.mod:app | --handler pkg.mod:handler)"
    longdesc = __doc__
    optParameters: list[list[Any]] = [
        ["wsgi", "w", None, "The WSGI application to serve, as package.module:name."],
        ["handler", None, None, "A txfastcgi handler to serve instead, as package.module:name."],
        ["socket", "s", None, "Listen on this Unix socket path."],
        ["port", "p", None, "Listen on this TCP port.", int],
        ["interface", "i", "127.0.0.1", "The address --port binds to."],
        ["fd", None, None, "Adopt the listening socket inherited on this fd (default: 0 when it is one).", int],
        ["socket-mode", None, 0o600, "File mode of the --socket file (octal).", _mode],
        ["backlog", None, DEFAULT_BACKLOG, "Listen queue depth for --socket/--port.", int],
        ["threads", "t", 10, "Most WSGI application threads.", int],
        ["max-conns", None, 100, "Most connections at once (FCGI_MAX_CONNS).", int],
        ["max-reqs", None, 100, "Most requests at once (FCGI_MAX_REQS).", int],
        ["drain-timeout", None, 30.0, "Seconds running requests get to finish on SIGTERM.", float],
    ]
    optFlags = [
        ["no-multiplex", None, "Refuse several requests at once on one connection (FCGI_MPXS_CONNS=0)."],
    ]

    def postOptions(self) -> None:
        """
        Check the options, load the application, and find where to listen.

        @raise usage.UsageError: for anything wrong.
        """
        if (self["wsgi"] is None) == (self["handler"] is None):
            raise usage.UsageError("give exactly one of --wsgi and --handler")
        given = [n for n in ("socket", "port", "fd") if self[n] is not None]
        if len(given) > 1:
            raise usage.UsageError("--socket, --port and --fd are mutually exclusive")
        for name in ("threads", "max-conns", "max-reqs"):
            if self[name] < 1:
                raise usage.UsageError(f"--{name} must be at least 1")
        if self["drain-timeout"] < 0:
            raise usage.UsageError("--drain-timeout must not be negative")
        try:
            self["webServerAddrs"] = parseWebServerAddrs(os.environ.get("FCGI_WEB_SERVER_ADDRS"))
        except ValueError as e:
            raise usage.UsageError(str(e)) from e
        self["application"] = loadObject(self["wsgi"] or self["handler"])
        if not callable(self["application"]):
            raise usage.UsageError(f"{self['wsgi'] or self['handler']!r} is not callable")
        if not given:
            if inheritedListeningFamily(0) is None:
                raise usage.UsageError(
                    "no --socket, --port or --fd, and fd 0 is not a listening socket"
                )
            self["fd"] = 0
        if self["fd"] is not None:
            if inheritedListeningFamily(self["fd"]) is None:
                raise usage.UsageError(f"fd {self['fd']} is not a listening socket")
            if self["fd"] <= 2:
                # twistd points fds 0-2 at /dev/null when it daemonises.
                self["fd"] = os.dup(self["fd"])


def makeService(options: Options, reactor: Any = None) -> FastCGIApplicationService:
    """
    Wire the application server from parsed options.

    @param reactor: the reactor; the global one when L{None} (looked up here,
        never at import time).
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    threadpool = None
    handler: Handler
    if options["wsgi"] is not None:
        from twisted.python.threadpool import ThreadPool

        from txfastcgi.wsgi import WSGIHandler

        threadpool = ThreadPool(minthreads=0, maxthreads=options["threads"], name="fastcgi-app")
        handler = WSGIHandler(reactor, threadpool, options["application"])
    else:
        handler = options["application"]
    factory = FastCGIApplicationFactory(
        handler,
        reactor,
        maxConns=options["max-conns"],
        maxReqs=options["max-reqs"],
        multiplex=not options["no-multiplex"],
        webServerAddrs=options["webServerAddrs"],
    )
    common: dict[str, Any] = dict(
        drainTimeout=options["drain-timeout"], threadpool=threadpool
    )
    if options["fd"] is not None:
        return FastCGIApplicationService(reactor, factory, inheritedFd=options["fd"], **common)
    if options["socket"] is not None:
        endpoint = unixEndpoint(reactor, options["socket"], options["socket-mode"], options["backlog"])
        return FastCGIApplicationService(
            reactor, factory, endpoint=endpoint, socketPath=options["socket"], **common
        )
    tcp = tcpEndpoint(reactor, options["port"], options["interface"], options["backlog"])
    return FastCGIApplicationService(reactor, factory, endpoint=tcp, **common)
