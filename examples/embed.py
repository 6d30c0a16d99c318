#!/usr/bin/env python3
# -*- test-case-name: tests.test_embed -*-
"""
embed: txfastcgi's gateway resources mounted in an ordinary C{twisted.web}
site, with the FastCGI applications they talk to started in the same
process, so that it runs on its own::

    python examples/embed.py --port 8080

Mounted paths:

  - C{/}: an index page (a plain L{twisted.web.static.Data}).
  - C{/unix/...}: a L{FastCGIResource} for a txfastcgi application (a
    handler that plays all three roles, see L{roleHandler}) listening on a
    Unix socket in a temporary directory.  As a Responder it shows its
    CGI variables and the size of the request body.
  - C{/tcp/...}: a L{FastCGIResource} for a WSGI application (L{wsgiHello})
    served by txfastcgi on 127.0.0.1, on a port the system picks.
  - C{/private/...}: a L{FastCGIAuthorizer} (the Unix application in the
    Authorizer role) in front of a static directory
    (L{twisted.web.static.File}).  Access needs the token C{letmein}: an
    C{Authorization: Bearer letmein} header or C{?token=letmein}; anything
    else is answered 401 with C{WWW-Authenticate}.
  - C{/private-app/...}: the same authorizer in front of the WSGI
    application (a L{FastCGIResource}), which then sees
    C{REMOTE_USER}, C{AUTH_TYPE} and C{DEMO_SCOPE} set by the authorizer's
    C{Variable-*} headers.
  - C{/filtered/...}: a L{FastCGIFilter} over the static directory: each
    file is sent to the Unix application in the Filter role, which answers
    it as an HTML page.

The static directory is C{--static DIR}, or a temporary one with two sample
files (C{hello.txt}, C{notes/todo.txt}).  Temporary files and the socket are
removed on exit (SIGINT or SIGTERM; the exit status is then 0).

Pointing it at php-fpm instead
==============================

php-fpm plays only the Responder role, so it can replace the applications
behind C{/unix/} or C{/tcp/} (or stand behind the authorizer), not the
authorizer or the filter.  With a pool listening on
C{/run/php/php-fpm.sock} (C{listen = /run/php/php-fpm.sock} in its pool
configuration, with the socket's owner or C{listen.mode} allowing this
process to connect) and PHP scripts under C{/srv/www}::

    phpPool = ConnectionPool(reactor, "unix:/run/php/php-fpm.sock")
    # One script for every path under /php (PATH_INFO is the rest):
    root.putChild(
        b"php",
        FastCGIResource(
            phpPool,
            documentRoot=b"/srv/www",
            scriptFilename=b"/srv/www/index.php",  # php-fpm needs it
        ),
    )
    # ... or behind the authorizer, with the variables in $_SERVER:
    root.putChild(
        b"php-private",
        FastCGIAuthorizer(
            unixPool,
            FastCGIResource(
                phpPool, documentRoot=b"/srv/www", scriptFilename=b"/srv/www/index.php"
            ),
        ),
    )

For a TCP pool (C{listen = 127.0.0.1:9000}) use
C{ConnectionPool(reactor, "tcp:127.0.0.1:9000")}.  php-fpm refuses a script
outside its C{security.limit_extensions} (C{.php} by default) and answers
C{File not found.} when C{SCRIPT_FILENAME} does not exist.
"""

from __future__ import annotations

import argparse
import html
import os
import shutil
import sys
import tempfile

# Run from a checkout, the txfastcgi package is next to examples/, not
# installed: Python puts only the script's own directory (examples/) on
# sys.path, so add the repository root when the import fails.
try:
    import txfastcgi  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from typing import Any, Callable, Iterable, Sequence

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.python.filepath import FilePath
from twisted.web.resource import Resource
from twisted.web.static import Data, File

from txfastcgi.application import ApplicationRequest, FastCGIApplicationFactory
from txfastcgi.authorizer import FastCGIAuthorizer
from txfastcgi.fcgi.constants import Role
from txfastcgi.filter import FastCGIFilter
from txfastcgi.listen import FastCGIApplicationService, tcpEndpoint, unixEndpoint
from txfastcgi.pool import ConnectionPool
from txfastcgi.resource import FastCGIResource
from txfastcgi.site import GatewaySite
from txfastcgi.wsgi import WSGIHandler

TOKEN = b"letmein"
"""The token the demonstration authorizer accepts."""

SHOWN_VARIABLES = (
    b"SCRIPT_NAME",
    b"PATH_INFO",
    b"QUERY_STRING",
    b"REQUEST_METHOD",
    b"REMOTE_USER",
    b"AUTH_TYPE",
    b"DEMO_SCOPE",
)
"""The CGI variables the Responder shows."""

INDEX = b"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>txfastcgi embed</title></head>
<body><h1>txfastcgi resources in a twisted.web site</h1>
<ul>
<li><a href="/unix/some/path?x=1">/unix/</a>: a Responder on a Unix socket</li>
<li><a href="/tcp/hello">/tcp/</a>: a WSGI application over TCP</li>
<li><a href="/private/hello.txt?token=letmein">/private/</a>: static files behind an
Authorizer (token <code>letmein</code>)</li>
<li><a href="/private-app/who?token=letmein">/private-app/</a>: the WSGI application
behind the Authorizer</li>
<li><a href="/filtered/hello.txt">/filtered/</a>: static files through a Filter</li>
</ul></body></html>
"""

log = Logger()


# --- the FastCGI applications ---------------------------------------------------


def _queryToken(query: bytes) -> bytes | None:
    """
    @return: the value of C{token} in a raw query string, if any.
    """
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name == b"token":
            return value
    return None


def authorize(request: ApplicationRequest) -> None:
    """
    The Authorizer role: grant a request that carries L{TOKEN} (as a
    bearer token or C{?token=}), naming the user and a scope in
    C{Variable-*} headers; deny others with 401.

    @param request: the Authorizer request (it has no body).
    """
    params = request.params
    bearer = params.get(b"HTTP_AUTHORIZATION", b"")
    if bearer == b"Bearer " + TOKEN or _queryToken(params.get(b"QUERY_STRING", b"")) == TOKEN:
        request.write(
            b"Status: 200 OK\r\n"
            b"Variable-REMOTE_USER: demo\r\n"
            b"Variable-AUTH_TYPE: Bearer\r\n"
            b"Variable-DEMO_SCOPE: read\r\n"
            b"\r\n"
        )
        return
    request.write(
        b"Status: 401 Unauthorized\r\n"
        b'WWW-Authenticate: Bearer realm="embed"\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
        b"A token is needed: add ?token=letmein to the URL.\n"
    )


def respond(request: ApplicationRequest) -> Deferred[None]:
    """
    The Responder role: read the body, then answer with some of the CGI
    variables and the body's size.

    @param request: the Responder request.
    @return: a Deferred firing when the answer was written.
    """

    def answer(body: bytes) -> None:
        lines = [b"Content-Type: text/plain; charset=utf-8", b"", b"Responder on a Unix socket"]
        for name in SHOWN_VARIABLES:
            if name in request.params:
                lines.append(name + b"=" + request.params[name])
        lines.append(b"body=%d bytes" % (len(body),))
        request.write(b"\r\n".join(lines[:2]) + b"\r\n" + b"\n".join(lines[2:]) + b"\n")

    return request.stdin.read().addCallback(answer)


def filterFile(request: ApplicationRequest) -> Deferred[None]:
    """
    The Filter role: read the body (the role requires it before writing),
    then the file, and answer the file as an HTML page.

    @param request: the Filter request.
    @return: a Deferred firing when the answer was written.
    """
    params = request.params

    def answer(data: bytes) -> None:
        title = html.escape(params.get(b"SCRIPT_NAME", b"").decode("latin-1"))
        text = html.escape(data.decode("utf-8", "replace"))
        page = (
            f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"</head><body><h1>{title}</h1>"
            f"<p>FCGI_DATA_LENGTH={params.get(b'FCGI_DATA_LENGTH', b'').decode('ascii')} "
            f"FCGI_DATA_LAST_MOD={params.get(b'FCGI_DATA_LAST_MOD', b'').decode('ascii')}</p>"
            f"<pre>{text}</pre></body></html>\n"
        ).encode("utf-8")
        request.write(b"Content-Type: text/html; charset=utf-8\r\n\r\n" + page)

    return request.stdin.read().addCallback(lambda body: request.data.read()).addCallback(answer)


def roleHandler(request: ApplicationRequest) -> Any:
    """
    One txfastcgi application handler for the three roles: dispatch on
    C{request.role}.

    @param request: the request.
    @return: what the role's handler returns.
    """
    if request.role == Role.AUTHORIZER:
        return authorize(request)
    if request.role == Role.FILTER:
        return filterFile(request)
    return respond(request)


def wsgiHello(
    environ: dict[str, Any], startResponse: Callable[..., Any]
) -> Iterable[bytes]:
    """
    A WSGI application: a greeting with the path and, behind the
    authorizer, the user and scope it granted.

    @param environ: the WSGI environ.
    @param startResponse: the WSGI C{start_response}.
    @return: the body.
    """
    lines = [
        "hello from WSGI",
        f"SCRIPT_NAME={environ.get('SCRIPT_NAME', '')}",
        f"PATH_INFO={environ.get('PATH_INFO', '')}",
    ]
    for name in ("REMOTE_USER", "AUTH_TYPE", "DEMO_SCOPE"):
        if name in environ:
            lines.append(f"{name}={environ[name]}")
    body = ("\n".join(lines) + "\n").encode("utf-8")
    startResponse(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


# --- the site -------------------------------------------------------------------------


def makeStaticDirectory(directory: FilePath[str]) -> None:
    """
    Put the sample files in C{directory}.

    @param directory: an existing directory.
    """
    directory.child("hello.txt").setContent(b"Hello from a static file <served> as is.\n")
    notes = directory.child("notes")
    notes.makedirs(ignoreExistingDirectory=True)
    notes.child("todo.txt").setContent(b"1. embed txfastcgi\n2. there is no step 2\n")


def buildRoot(
    unixPool: ConnectionPool, tcpPool: ConnectionPool, staticDirectory: FilePath[str]
) -> Resource:
    """
    The resource tree of the example (see the module docstring).

    @param unixPool: the pool of the three-role application.
    @param tcpPool: the pool of the WSGI application.
    @param staticDirectory: the directory served under C{/private/} and
        C{/filtered/}.
    @return: the root resource.
    """
    root = Resource()
    root.putChild(b"", Data(INDEX, "text/html; charset=utf-8"))
    root.putChild(b"unix", FastCGIResource(unixPool))
    root.putChild(b"tcp", FastCGIResource(tcpPool))
    root.putChild(b"private", FastCGIAuthorizer(unixPool, File(staticDirectory.path)))
    root.putChild(
        b"private-app", FastCGIAuthorizer(unixPool, FastCGIResource(tcpPool))
    )
    root.putChild(b"filtered", FastCGIFilter(unixPool, staticDirectory))
    return root


def parseArguments(argv: Sequence[str]) -> argparse.Namespace:
    """
    Parse the command line.

    @param argv: the arguments, without the program name.
    @return: the options.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8080, help="HTTP port (0: any free one)")
    parser.add_argument("--interface", default="127.0.0.1", help="HTTP address to bind")
    parser.add_argument("--static", default=None, help="directory for /private/ and /filtered/")
    parser.add_argument("--quiet", action="store_true", help="do not log to stderr")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Start the two applications, the pools and the web site; run until
    SIGINT or SIGTERM; clean up.

    @param argv: the arguments (default: C{sys.argv[1:]}).
    @return: the exit status.
    """
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor
    options = parseArguments(sys.argv[1:] if argv is None else argv)
    if not options.quiet:
        globalLogBeginner.beginLoggingTo(
            [textFileLogObserver(sys.stderr)], redirectStandardIO=False
        )

    workDirectory = tempfile.mkdtemp(prefix="txfastcgi-embed-")
    try:
        if options.static is not None:
            staticDirectory = FilePath(os.path.abspath(options.static))
        else:
            staticDirectory = FilePath(workDirectory).child("static")
            staticDirectory.makedirs()
            makeStaticDirectory(staticDirectory)
        socketPath = os.path.join(workDirectory, "app.sock")

        applications = MultiService()
        FastCGIApplicationService(
            reactor,
            FastCGIApplicationFactory(roleHandler, reactor),
            endpoint=unixEndpoint(reactor, socketPath),
            socketPath=socketPath,
            drainTimeout=5,
        ).setServiceParent(applications)
        tcpService = FastCGIApplicationService(
            reactor,
            FastCGIApplicationFactory(
                WSGIHandler(reactor, reactor.getThreadPool(), wsgiHello), reactor
            ),
            endpoint=tcpEndpoint(reactor, 0),
            drainTimeout=5,
        )
        tcpService.setServiceParent(applications)
        applications.startService()
        tcpPort = tcpService.port.getHost().port

        unixPool = ConnectionPool(reactor, "unix:" + socketPath)
        tcpPool = ConnectionPool(reactor, f"tcp:127.0.0.1:{tcpPort}")
        site = GatewaySite(
            buildRoot(unixPool, tcpPool, staticDirectory), maxRequestBodySize=10 << 20
        )
        httpPort = reactor.listenTCP(options.port, site, interface=options.interface)
    except BaseException:
        shutil.rmtree(workDirectory, ignore_errors=True)
        raise

    def stop() -> Deferred[Any]:
        """
        Stop accepting HTTP requests, close the pools, stop the
        applications (letting running requests finish).
        """
        d = maybeDeferred(httpPort.stopListening)
        d.addCallback(
            lambda ignored: DeferredList([unixPool.closeAll(), tcpPool.closeAll()])
        )
        d.addCallback(lambda ignored: applications.stopService())
        d.addErrback(lambda failure: log.failure("Stopping failed", failure))
        return d

    reactor.addSystemEventTrigger("before", "shutdown", stop)
    host = httpPort.getHost()
    print(f"embed: Unix-socket application on {socketPath}", flush=True)
    print(f"embed: TCP application on 127.0.0.1:{tcpPort}", flush=True)
    print(f"embed: serving on http://{host.host}:{host.port}/", flush=True)
    try:
        reactor.run()
    finally:
        shutil.rmtree(workDirectory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
