# -*- test-case-name: tests.test_filter -*-
"""
Tests for L{txfastcgi.filter}: files served through a FastCGI Filter,
driven through a real L{GatewaySite} over a L{StringTransport} with
in-memory and scripted applications.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import IO, Any

from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import LogEvent, capturedLogs
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from tests.test_authorizer import authorizerApp, flushAll
from tests.test_exchange import HTTPClient, HTTPResponse, makePool
from txfastcgi.application import ApplicationRequest
from txfastcgi.authorizer import FastCGIAuthorizer
from txfastcgi.fcgi.constants import RecordType, Role
from txfastcgi.fcgi.records import STREAM_CHUNK_SIZE
from txfastcgi.filter import FastCGIFilter
from txfastcgi.site import GatewaySite
from txfastcgi.testing import (
    ExpectRequest,
    MemoryApplicationEndpoint,
    MemoryEndpoint,
    Pause,
    ScriptedApplicationEndpoint,
    Send,
    paramsFrom,
    respond,
    stdout,
    streamContent,
)

MTIME = 1_000_000_007
"""The modification time given to the test files."""


class SpyFile:
    """
    A file that records the sizes it was asked to read and whether it was
    closed.

    @ivar reads: the C{size} of each C{read}.
    @ivar closed: whether C{close} was called.
    """

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self.reads: list[int] = []
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        """
        Read and record the size asked for.
        """
        self.reads.append(size)
        return self._file.read(size)

    def fileno(self) -> int:
        """
        The descriptor.
        """
        return self._file.fileno()

    def tell(self) -> int:
        """
        The position.
        """
        return self._file.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        """
        Move.
        """
        return self._file.seek(offset, whence)

    def close(self) -> None:
        """
        Close, and remember it.
        """
        self.closed = True
        self._file.close()


class SpyPath(FilePath[str]):
    """
    A L{FilePath} whose opened files are L{SpyFile}s, kept in C{opened}
    (shared by its children).
    """

    opened: list[SpyFile]
    refuse = False

    def clonePath(self, path: Any, alwaysCreate: bool = False) -> Any:
        """
        A child is a L{SpyPath} too, sharing C{opened}.
        """
        clone = SpyPath(path, alwaysCreate)
        clone.opened = self.opened
        return clone

    def open(self, mode: Any = "r") -> Any:
        """
        Open a L{SpyFile}, or raise L{PermissionError} when C{refuse} is
        set on the class.
        """
        if self.refuse:
            raise PermissionError(13, "no", self.path)
        spy = SpyFile(super().open(mode))
        self.opened.append(spy)
        return spy


def filterApp() -> tuple[MemoryApplicationEndpoint, list[ApplicationRequest], list[tuple[bytes, bytes]]]:
    """
    An in-memory filter that reads all of STDIN, then all of DATA, and
    answers the data upper-cased, with the body length in C{X-Stdin}.

    @return: the endpoint, the requests it got, and (stdin, data) of each.
    """
    seen: list[ApplicationRequest] = []
    inputs: list[tuple[bytes, bytes]] = []

    def handler(request: ApplicationRequest) -> Any:
        seen.append(request)

        def gotStdin(body: bytes) -> Any:
            return request.data.read().addCallback(gotData, body)

        def gotData(data: bytes, body: bytes) -> None:
            inputs.append((body, data))
            request.write(
                b"Content-Type: text/plain\r\nX-Stdin: %d\r\n\r\n" % (len(body),) + data.upper()
            )

        return request.stdin.read().addCallback(gotStdin)

    return MemoryApplicationEndpoint(handler, clock=Clock()), seen, inputs


def scratch(test: SynchronousTestCase) -> FilePath[str]:
    """
    A new directory, removed after C{test}.
    """
    path = tempfile.mkdtemp(prefix="txfastcgi-filter-")
    test.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return FilePath(path)


def makeFile(directory: FilePath[str], name: str, content: bytes) -> FilePath[str]:
    """
    Write C{content} to C{directory/name} (parents created) with the
    modification time L{MTIME}.
    """
    path = directory.preauthChild(name)
    path.parent().makedirs(ignoreExistingDirectory=True)
    path.setContent(content)
    os.utime(path.path, (MTIME, MTIME))
    return path


def fetch(
    resource: Resource, path: bytes, *endpoints: MemoryEndpoint, **kwargs: Any
) -> tuple[HTTPResponse, list[LogEvent]]:
    """
    Serve one request for C{path} with C{resource} at C{/app}.
    """
    root = Resource()
    root.putChild(b"app", resource)
    client = HTTPClient(GatewaySite(root))
    with capturedLogs() as logged:
        client.get(path, **kwargs)
        flushAll(*endpoints)
    return client.response(), list(logged)


class FilterTests(SynchronousTestCase):
    """
    A file is sent as FCGI_DATA with its length and time in PARAMS, and the
    application's output is the response.
    """

    def setUp(self) -> None:
        """
        A directory for the test's files.
        """
        self.directory = scratch(self)

    def test_fileFiltered(self) -> None:
        """
        The Filter role gets the responder's variables plus
        C{FCGI_DATA_LAST_MOD} and C{FCGI_DATA_LENGTH}, the body as STDIN,
        the file as DATA; its output is the response.
        """
        file = makeFile(self.directory, "doc.txt", b"hello filter\n")
        app, seen, inputs = filterApp()
        response, _ = fetch(
            FastCGIFilter(makePool(app), file, documentRoot=b"/srv"),
            b"/app/more?q=1",
            app,
            method=b"POST",
            body=b"posted",
        )
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"HELLO FILTER\n")
        self.assertEqual(response.header(b"X-Stdin"), [b"6"])
        [request] = seen
        self.assertEqual(request.role, Role.FILTER)
        params = request.params
        self.assertEqual(params[b"FCGI_DATA_LAST_MOD"], b"%d" % (MTIME,))
        self.assertEqual(params[b"FCGI_DATA_LENGTH"], b"13")
        self.assertEqual(params[b"SCRIPT_FILENAME"], os.fsencode(file.path))
        self.assertEqual(params[b"SCRIPT_NAME"], b"/app")
        self.assertEqual(params[b"PATH_INFO"], b"/more")
        self.assertEqual(params[b"PATH_TRANSLATED"], b"/srv/more")
        self.assertEqual(params[b"QUERY_STRING"], b"q=1")
        self.assertEqual(params[b"CONTENT_LENGTH"], b"6")
        self.assertEqual(inputs, [(b"posted", b"hello filter\n")])

    def test_stringPathAndScriptFilename(self) -> None:
        """
        A path may be given as a string; a configured C{scriptFilename}
        replaces the file's path.
        """
        file = makeFile(self.directory, "doc.txt", b"x")
        app, seen, _ = filterApp()
        response, _ = fetch(
            FastCGIFilter(makePool(app), file.path, scriptFilename=b"/usr/bin/up"),
            b"/app",
            app,
        )
        self.assertEqual(response.body, b"X")
        self.assertEqual(seen[0].params[b"SCRIPT_FILENAME"], b"/usr/bin/up")

    def test_recordOrder(self) -> None:
        """
        On the wire: BEGIN_REQUEST (Filter role), PARAMS and their end, STDIN
        and its end, then DATA (the file) and its end.
        """
        file = makeFile(self.directory, "doc.txt", b"data bytes")
        app = ScriptedApplicationEndpoint(
            [ExpectRequest(data=True), respond(b"Content-Type: text/plain\r\n\r\nok")]
        )
        response, _ = fetch(FastCGIFilter(makePool(app), file), b"/app", app, method=b"POST", body=b"in")
        self.assertEqual(response.body, b"ok")
        kinds: list[int] = []
        for record in app.received:
            if not kinds or kinds[-1] != record.type:
                kinds.append(record.type)
        self.assertEqual(
            kinds,
            [RecordType.BEGIN_REQUEST, RecordType.PARAMS, RecordType.STDIN, RecordType.DATA],
        )
        begin = app.received[0]
        self.assertEqual(int.from_bytes(begin.content[:2], "big"), Role.FILTER)
        self.assertEqual(streamContent(app.received, RecordType.STDIN), b"in")
        self.assertEqual(streamContent(app.received, RecordType.DATA), b"data bytes")
        self.assertEqual(app.received[-1].type, RecordType.DATA)
        self.assertEqual(app.received[-1].content, b"")
        params = paramsFrom(app.received)
        self.assertEqual(params[b"FCGI_DATA_LENGTH"], b"10")

    def test_bigFileStreamedInChunks(self) -> None:
        """
        A large file goes out as record-sized DATA records, read from disk
        one record's worth at a time (never whole), and is closed at the
        end.
        """
        content = os.urandom(1024) * 1100
        file = makeFile(self.directory, "big.bin", content)
        spyPath = SpyPath(file.path)
        spyPath.opened = []
        app = ScriptedApplicationEndpoint(
            [ExpectRequest(data=True), respond(b"Content-Type: text/plain\r\n\r\nok")]
        )
        response, _ = fetch(FastCGIFilter(makePool(app), spyPath), b"/app", app)
        self.assertEqual(response.body, b"ok")
        records = [r for r in app.received if r.type == RecordType.DATA and r.content]
        expected = -(-len(content) // STREAM_CHUNK_SIZE)
        self.assertEqual(len(records), expected)
        self.assertTrue(all(len(r.content) <= STREAM_CHUNK_SIZE for r in records))
        self.assertEqual(b"".join(r.content for r in records), content)
        [spy] = spyPath.opened
        self.assertTrue(spy.closed)
        self.assertGreaterEqual(len(spy.reads), expected)
        self.assertTrue(all(0 <= size <= STREAM_CHUNK_SIZE for size in spy.reads))

    def test_lengthIsFixedAtOpen(self) -> None:
        """
        Bytes appended to the file after the request started are not sent:
        DATA holds exactly C{FCGI_DATA_LENGTH} bytes.
        """
        file = makeFile(self.directory, "log.txt", b"first\n")
        app, seen, inputs = filterApp()
        root = Resource()
        root.putChild(b"app", FastCGIFilter(makePool(app), file))
        client = HTTPClient(GatewaySite(root))
        client.get(b"/app")
        with file.open("a") as appended:
            appended.write(b"second\n")
        flushAll(app)
        self.assertEqual(client.response().body, b"FIRST\n")
        self.assertEqual(seen[0].params[b"FCGI_DATA_LENGTH"], b"6")
        self.assertEqual(inputs[0][1], b"first\n")

    def test_localRedirect(self) -> None:
        """
        A local redirect from the filter is served internally.
        """
        file = makeFile(self.directory, "doc.txt", b"x")
        app = ScriptedApplicationEndpoint(
            [ExpectRequest(data=True), respond(b"Location: /app\r\n\r\n")],
            [ExpectRequest(data=True), respond(b"Content-Type: text/plain\r\n\r\nsecond")],
        )
        response, _ = fetch(FastCGIFilter(makePool(app, keepAlive=False), file), b"/app/x", app)
        self.assertEqual(response.body, b"second")

    def test_behindAuthorizer(self) -> None:
        """
        A filter behind an authorizer gets its variables.
        """
        file = makeFile(self.directory, "doc.txt", b"x")
        authorizer, _ = authorizerApp(b"Variable-SCOPE: read\r\nVariable-REMOTE_USER: ann\r\n\r\n")
        app, seen, _ = filterApp()
        response, _ = fetch(
            FastCGIAuthorizer(makePool(authorizer), FastCGIFilter(makePool(app), file)),
            b"/app",
            authorizer,
            app,
        )
        self.assertEqual(response.body, b"X")
        self.assertEqual(seen[0].params[b"SCOPE"], b"read")
        self.assertEqual(seen[0].params[b"REMOTE_USER"], b"ann")


class TreeTests(SynchronousTestCase):
    """
    A filter for a directory serves the files under it, and nothing outside.
    """

    def setUp(self) -> None:
        """
        A tree: C{sub/file.txt} and C{top.txt}, and a filter application.
        """
        self.directory = scratch(self)
        self.file = makeFile(self.directory, "sub/file.txt", b"in sub\n")
        makeFile(self.directory, "top.txt", b"top\n")
        self.app, self.seen, _ = filterApp()
        self.resource = FastCGIFilter(makePool(self.app), self.directory)

    def test_fileInTree(self) -> None:
        """
        The path under the resource names the file; the rest is
        C{PATH_INFO}.
        """
        response, _ = fetch(self.resource, b"/app/sub/file.txt/extra", self.app)
        self.assertEqual(response.body, b"IN SUB\n")
        params = self.seen[0].params
        self.assertEqual(params[b"SCRIPT_NAME"], b"/app/sub/file.txt")
        self.assertEqual(params[b"PATH_INFO"], b"/extra")
        self.assertEqual(params[b"SCRIPT_FILENAME"], os.fsencode(self.file.path))
        response, _ = fetch(self.resource, b"/app/top.txt", self.app)
        self.assertEqual(response.body, b"TOP\n")

    def test_refused(self) -> None:
        """
        Directories are 403; missing files, dot segments, encoded slashes
        and NUL are 404; none reaches the application.
        """
        for path, status in [
            (b"/app", 403),
            (b"/app/", 403),
            (b"/app/sub", 403),
            (b"/app/sub/", 403),
            (b"/app/missing.txt", 404),
            (b"/app/sub/../top.txt", 404),
            (b"/app/./top.txt", 404),
            (b"/app/sub%2Ffile.txt", 404),
            (b"/app/top.txt%00", 404),
            (b"/app/top.txt/../x", 404),
        ]:
            response, _ = fetch(self.resource, path, self.app)
            self.assertEqual(response.status, status, path)
        self.assertEqual(self.seen, [])
        self.assertEqual(self.app.connectionsMade, 0)

    def test_unreadable(self) -> None:
        """
        A file that cannot be opened for lack of permission is 403.
        """
        spyPath = SpyPath(self.directory.path)
        spyPath.opened = []
        self.patch(SpyPath, "refuse", True)
        response, logged = fetch(FastCGIFilter(makePool(self.app), spyPath), b"/app/top.txt", self.app)
        self.assertEqual(response.status, 403)
        self.assertEqual(self.seen, [])
        self.assertTrue([e for e in logged if e.get("path")])


class FailureTests(SynchronousTestCase):
    """
    Failures answer as for a responder, and the file is closed.
    """

    def answer(self, app: MemoryEndpoint) -> tuple[HTTPResponse, SpyFile]:
        """
        Filter a file through C{app}.

        @return: the response and the opened file.
        """
        directory = scratch(self)
        file = makeFile(directory, "f.txt", b"data")
        spyPath = SpyPath(file.path)
        spyPath.opened = []
        response, _ = fetch(FastCGIFilter(makePool(app), spyPath), b"/app", app)
        [spy] = spyPath.opened
        return response, spy

    def test_unreachable(self) -> None:
        """
        An unreachable filter gives 503.
        """
        app, _, _ = filterApp()
        app.connectError = ConnectionRefusedError("no")
        response, spy = self.answer(app)
        self.assertEqual(response.status, 503)
        self.assertTrue(spy.closed)

    def test_malformed(self) -> None:
        """
        A malformed head gives 502.
        """
        app = ScriptedApplicationEndpoint(
            [ExpectRequest(data=True), Send(stdout(b"broken\r\n\r\n")), Pause()]
        )
        response, spy = self.answer(app)
        self.assertEqual(response.status, 502)
        self.assertTrue(spy.closed)

    def test_missingFile(self) -> None:
        """
        A missing file is 404 and the application is not asked.
        """
        app, seen, _ = filterApp()
        directory = scratch(self)
        response, _ = fetch(FastCGIFilter(makePool(app), directory.child("none")), b"/app", app)
        self.assertEqual(response.status, 404)
        self.assertEqual(seen, [])
        self.assertEqual(app.connectionsMade, 0)
