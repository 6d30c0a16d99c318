# -*- test-case-name: tests.test_filter -*-
"""
L{FastCGIFilter}: serve files through a FastCGI Filter (FastCGI 1.0 section
6.4, SPEC.md section 7.5)::

    pool = ConnectionPool(reactor, "unix:/run/markdown.sock")
    root.putChild(b"docs", FastCGIFilter(pool, FilePath("/srv/docs")))

The application gets, for the requested file:

  - PARAMS: the request's CGI environment (as a responder's) plus
    C{FCGI_DATA_LAST_MOD} (the file's modification time, whole seconds since
    1970-01-01 UTC) and C{FCGI_DATA_LENGTH} (its size in bytes), both taken
    from the open file (C{fstat}), so they describe exactly the bytes sent.
    C{SCRIPT_FILENAME} is the file's path unless configured otherwise.
  - STDIN: the request body, streamed from the spool, with
    C{CONTENT_LENGTH} (as for a responder);
  - then FCGI_DATA: the file, read from disk in record-sized pieces as the
    application's connection takes them (never read whole), at most
    C{FCGI_DATA_LENGTH} bytes even if the file grows meanwhile, and ended
    with an empty DATA record.  The order PARAMS, STDIN, DATA is the
    specification's; L{txfastcgi.client.FastCGIRequest} sends it so.

Its output is the response, with exactly the rules of L{FastCGIResource}
(L{FastCGIExchange}): CGI response head, streaming, local redirects, and
SPEC.md Decision 8 for failures (503, 502, 504).  The file is closed when the
FastCGI request is over.

Paths
=====

Given a file, the resource is a leaf: the path after it is C{PATH_INFO}
(C{PATH_TRANSLATED} with a C{documentRoot}), as for L{FastCGIResource}.

Given a directory, the resource serves the tree under it: each path segment
selects a child with L{FilePath.child} (like L{twisted.web.static.File}), so
C{..}, encoded slashes and NUL never leave the directory (404), and C{.} is
refused too.  A path that ends at a file filters that file (further segments
become its C{PATH_INFO}); one that ends at a directory is answered 403 (as
mod_fastcgi did for a directory, SPEC.md section 5.2); a missing file 404, an
unreadable one 403.  Symbolic links inside the directory are followed.
"""

from __future__ import annotations

import copy
import os
import stat
from dataclasses import replace
from typing import IO, Any, Sequence, cast

from twisted.logger import Logger
from twisted.python.filepath import FilePath, InsecurePath
from twisted.web import http, pages
from twisted.web.server import NOT_DONE_YET, Request

from txfastcgi.cgienv import EnvironmentOptions, GatewayRequest, buildFilterEnvironment
from txfastcgi.cgiresponse import DEFAULT_MAX_HEADER_BYTES
from txfastcgi.exchange import DEFAULT_RETRY_AFTER, FastCGIExchange
from txfastcgi.fcgi.constants import Role
from txfastcgi.pool import ConnectionPool
from txfastcgi.resource import (
    DEFAULT_MAX_REDIRECTS,
    FastCGIResource,
    _refuseUnsafePath,
    _renderError,
    requestBody,
)

__all__ = ["FastCGIFilter"]

log = Logger()


class _LimitedReader:
    """
    A binary file read from its current position, ending after C{length}
    bytes (or at the end of the file, if that comes first).  Seekable back
    to its start, so a pool may replay it for a retry.
    """

    def __init__(self, file: IO[bytes], length: int) -> None:
        """
        @param file: the open file.
        @param length: how many bytes to read at most.
        """
        self._file = file
        self._start = file.tell()
        self._length = length
        self._remaining = length

    def read(self, size: int = -1) -> bytes:
        """
        Read at most C{size} bytes (all that remain when negative).
        """
        if size < 0 or size > self._remaining:
            size = self._remaining
        if size == 0:
            return b""
        data = self._file.read(size)
        self._remaining -= len(data)
        return data

    def seekable(self) -> bool:
        """
        @return: C{True}.
        """
        return True

    def tell(self) -> int:
        """
        @return: how many bytes were read.
        """
        return self._length - self._remaining

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """
        Go to C{offset} bytes from the start (only C{SEEK_SET}).
        """
        if whence != os.SEEK_SET or not 0 <= offset <= self._length:
            raise OSError("unsupported seek")
        self._file.seek(self._start + offset)
        self._remaining = self._length - offset
        return offset


def _notFound(request: Request) -> None:
    _renderError(request, http.NOT_FOUND, "No Such Resource", "No such file.")


def _forbidden(request: Request) -> None:
    _renderError(request, http.FORBIDDEN, "Forbidden", "You may not see this resource.")


class FastCGIFilter(FastCGIResource):
    """
    Serves a file, or the files of a directory tree, through a FastCGI
    Filter application (see the module docstring).  A L{FastCGIResource}
    in the Filter role: same options, same response handling.

    @ivar pool: the filter application's connection pool.
    @ivar path: the file or directory.
    @ivar scriptFilename: C{SCRIPT_FILENAME}, or L{None} for the filtered
        file's path.
    @ivar documentRoot: C{DOCUMENT_ROOT} and the base of C{PATH_TRANSLATED}.
    @ivar serverName: C{SERVER_NAME}, or L{None} to take the Host header's.
    @ivar environmentOptions: see L{EnvironmentOptions}.
    @ivar extraVariables: variables added to every request.
    @ivar maxHeaderBytes: the cap on an application's response head.
    @ivar maxRedirects: internal redirects allowed per request.
    @ivar retryAfter: seconds in C{Retry-After} on 503s that carry one.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        path: FilePath[Any] | str | bytes,
        *,
        scriptFilename: bytes | None = None,
        documentRoot: bytes | None = None,
        serverName: bytes | None = None,
        environmentOptions: EnvironmentOptions | None = None,
        extraVariables: Sequence[tuple[bytes, bytes]] = (),
        maxHeaderBytes: int = DEFAULT_MAX_HEADER_BYTES,
        maxRedirects: int = DEFAULT_MAX_REDIRECTS,
        retryAfter: int = DEFAULT_RETRY_AFTER,
    ) -> None:
        """
        @param pool: the filter application's connection pool.
        @param path: the file to filter, or a directory whose files are
            filtered; a string path or a L{FilePath}.
        @param scriptFilename: a fixed C{SCRIPT_FILENAME}; by default the
            filtered file's path.
        @param documentRoot: C{DOCUMENT_ROOT}, base of C{PATH_TRANSLATED}.
        @param serverName: a fixed C{SERVER_NAME}.
        @param environmentOptions: see L{EnvironmentOptions}.
        @param extraVariables: variables for every request (C{SetEnv}).
        @param maxHeaderBytes: the cap on the response head.
        @param maxRedirects: internal redirects allowed per request.
        @param retryAfter: seconds for C{Retry-After}.
        """
        super().__init__(
            pool,
            scriptFilename=scriptFilename,
            documentRoot=documentRoot,
            serverName=serverName,
            environmentOptions=environmentOptions,
            extraVariables=extraVariables,
            maxHeaderBytes=maxHeaderBytes,
            maxRedirects=maxRedirects,
            retryAfter=retryAfter,
        )
        if not isinstance(path, FilePath):
            path = FilePath(os.fsdecode(path))
        elif isinstance(path.path, bytes):
            path = FilePath(os.fsdecode(path.path))
        self.path: FilePath[str] = path
        self.isLeaf = not self.path.isdir()

    def getChild(self, path: bytes, request: Any) -> Any:
        """
        The resource for the entry C{path} of this directory: a filter for
        it, or a 404 page for an unsafe or missing name.

        @param path: one decoded path segment.
        @param request: the request.
        """
        if path == b"":
            # A trailing slash: the directory itself.
            return self
        if path in (b".", b"..") or b"/" in path or b"\x00" in path:
            return pages.notFound("No Such Resource", "No such file.")
        try:
            child = self.path.child(os.fsdecode(path))
        except InsecurePath:
            return pages.notFound("No Such Resource", "No such file.")
        resource = copy.copy(self)
        resource.children = {}
        resource.path = child
        resource.isLeaf = not child.isdir()
        return resource

    def gatewayRequest(
        self, request: Request, contentLength: int | None
    ) -> GatewayRequest | None:
        """
        Describe C{request} as L{FastCGIResource} does, with the filtered
        file's path as C{SCRIPT_FILENAME} unless one is configured.

        @param request: the request being rendered.
        @param contentLength: the spooled body's length.
        @return: the description, or L{None} to refuse unsafe path info with
            404.
        """
        gateway = super().gatewayRequest(request, contentLength)
        if gateway is None or self.scriptFilename is not None:
            return gateway
        return replace(gateway, scriptFilename=os.fsencode(self.path.path))

    def render(self, request: Request) -> bytes | int:
        """
        Filter the file through the application.

        @return: C{NOT_DONE_YET}; the answer is written as it arrives.
        """
        r: Any = request
        try:
            file = self.path.open("r")
        except IsADirectoryError:
            _forbidden(request)
            return NOT_DONE_YET
        except PermissionError:
            log.info(
                "Filter cannot read {path} for {uri}",
                path=self.path.path,
                uri=r.uri.decode("latin-1"),
            )
            _forbidden(request)
            return NOT_DONE_YET
        except OSError:
            _notFound(request)
            return NOT_DONE_YET
        try:
            status = os.fstat(file.fileno())
            if stat.S_ISDIR(status.st_mode):
                file.close()
                _forbidden(request)
                return NOT_DONE_YET
            if not stat.S_ISREG(status.st_mode):
                file.close()
                _notFound(request)
                return NOT_DONE_YET
            body, length = requestBody(request)
            gateway = self.gatewayRequest(request, length)
            if gateway is None:
                file.close()
                _refuseUnsafePath(request, logger=log, detail="No such file.")
                return NOT_DONE_YET
            params = buildFilterEnvironment(
                gateway,
                self.environmentOptions,
                dataLastModified=int(status.st_mtime),
                dataLength=status.st_size,
            )
            exchange = FastCGIExchange(
                request,
                self.pool,
                params,
                role=Role.FILTER,
                body=body,
                data=cast(IO[bytes], _LimitedReader(file, status.st_size)),
                onHead=self._onHead,
                maxHeaderBytes=self.maxHeaderBytes,
                retryAfter=self.retryAfter,
            )
        except BaseException:
            file.close()
            raise
        exchange.notifyEnd().addCallback(lambda ignored: file.close())
        exchange.start()
        return NOT_DONE_YET
