# -*- test-case-name: tests.test_resource_peers -*-
"""
L{FastCGIResource} behind a real L{GatewaySite} on 127.0.0.1, in front of
real FastCGI applications (the libfcgi responder of tests/apps/responder.c
under spawn-fcgi, and php-fpm) on Unix sockets, with
L{twisted.web.client.Agent} as the HTTP client in the same reactor.

The large transfers stream on both sides (the client hashes the download as
it arrives and generates the upload as it is sent), so the peak RSS of this
process, which holds both the server and the client, shows what the gateway
keeps in memory.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import os
from typing import Any, AsyncIterator

import pytest
import pytest_twisted  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.web.http import HTTPChannel
from twisted.internet.protocol import ClientCreator, Protocol
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer  # type: ignore[import-untyped]
from twisted.web.resource import Resource

from tests import peers
from txfastcgi.pool import ConnectionPool
from txfastcgi.resource import FastCGIResource
from txfastcgi.site import GatewaySite

TIMEOUT = 20.0
"""Seconds any one await may take."""

BIG = 64 * 1024 * 1024
"""Bytes of the large download and upload."""

PATTERN = peers.responderPattern(65536)


def getReactor() -> Any:
    """
    The reactor pytest-twisted installed (imported late, see conftest).
    """
    from twisted.internet import reactor

    return reactor


async def bounded(d: Deferred[Any], seconds: float = TIMEOUT) -> Any:
    """
    Await C{d}, failing with a timeout rather than hanging.
    """
    return await d.addTimeout(seconds, getReactor())


def resetPeakRSS() -> int:
    """
    Reset this process's peak RSS (VmHWM) to its current RSS, via
    C{/proc/self/clear_refs}, and return the current RSS in bytes.
    """
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return _status("VmRSS")


def peakRSS() -> int:
    """
    This process's peak RSS (VmHWM) in bytes.
    """
    return _status("VmHWM")


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/self/status")


def patternDigest(length: int) -> str:
    """
    SHA-256 of the first C{length} bytes of the responder's C{size=N} body.
    """
    digest = hashlib.sha256()
    full, rest = divmod(length, len(PATTERN))
    for _ in range(full):
        digest.update(PATTERN)
    digest.update(PATTERN[:rest])
    return digest.hexdigest()


class PatternFile(io.RawIOBase):
    """
    A read-only file of C{length} bytes of the responder pattern, generated
    as it is read (so an upload of it holds no more than one chunk).
    """

    def __init__(self, length: int) -> None:
        super().__init__()
        self.length = length
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.length}[whence]
        self.position = base + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def read(self, size: int = -1) -> bytes:
        size = min(size if size >= 0 else self.length, self.length - self.position)
        start = self.position % len(PATTERN)
        data = (PATTERN[start:] + PATTERN * (size // len(PATTERN) + 1))[:size]
        self.position += size
        return data


class Body(Protocol):
    """
    Receives a response body: hashes it, keeps its start, notes when each
    piece arrived.

    @ivar done: fires with this object at the end of the body.
    """

    def __init__(self, keep: int = 1 << 16) -> None:
        self.keep = keep
        self.kept = b""
        self.length = 0
        self.digest = hashlib.sha256()
        self.arrivals: list[tuple[float, int]] = []
        self.done: Deferred[Body] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.arrivals.append((getReactor().seconds(), len(data)))
        self.length += len(data)
        self.digest.update(data)
        if len(self.kept) < self.keep:
            self.kept += data[: self.keep - len(self.kept)]

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(self)
        else:
            self.done.errback(reason)


@implementer(IPolicyForHTTPS)
class TLSMaterial:
    """
    A self-signed certificate for C{localhost}: the server's TLS options,
    and a client policy trusting only it.
    """

    def __init__(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .sign(key, hashes.SHA256())
        )
        keyPEM = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        self.certPEM = cert.public_bytes(serialization.Encoding.PEM)
        self._server = ssl.PrivateCertificate.loadPEM(keyPEM + self.certPEM)

    def serverOptions(self) -> Any:
        """
        The server side's context factory.
        """
        return self._server.options()

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        """
        The client side: trust only this certificate.
        """
        return ssl.optionsForClientTLS(
            hostname.decode("ascii"), trustRoot=ssl.Certificate.loadPEM(self.certPEM)
        )


class Gateway:
    """
    A L{GatewaySite} on 127.0.0.1 with a L{FastCGIResource} at C{/app}, and
    an L{Agent} to talk to it.
    """

    def __init__(
        self, application: str, *, tls: TLSMaterial | None = None, **resourceOptions: Any
    ) -> None:
        reactor = getReactor()
        self.pool = ConnectionPool(reactor, application, probeValues=False)
        root = Resource()
        root.putChild(b"app", FastCGIResource(self.pool, **resourceOptions))
        self.site = GatewaySite(root, maxRequestBodySize=1 << 30)
        self.httpPool = HTTPConnectionPool(reactor, persistent=False)
        if tls is None:
            self.scheme, self.host = "http", "127.0.0.1"
            self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
            self.agent = Agent(reactor, pool=self.httpPool)
        else:
            self.scheme, self.host = "https", "localhost"
            self.port = reactor.listenSSL(
                0, self.site, tls.serverOptions(), interface="127.0.0.1"
            )
            self.agent = Agent(reactor, contextFactory=tls, pool=self.httpPool)

    def url(self, path: str) -> bytes:
        """
        The URL of C{path} on this gateway.
        """
        return f"{self.scheme}://{self.host}:{self.port.getHost().port}{path}".encode()

    async def fetch(
        self, path: str, method: bytes = b"GET", body: Any = None, keep: int = 1 << 16
    ) -> tuple[Any, Body]:
        """
        Request C{path}; return the response and its whole L{Body}.
        """
        response = await bounded(
            self.agent.request(method, self.url(path), Headers({}), body)
        )
        received = Body(keep)
        response.deliverBody(received)
        await bounded(received.done, 60)
        return response, received

    async def close(self) -> None:
        """
        Stop listening, close the HTTP and FastCGI connections.
        """
        await bounded(self.httpPool.closeCachedConnections())
        await bounded(self.port.stopListening())
        await bounded(self.pool.closeAll())


@pytest.fixture(autouse=True)
def noDelayedCallsLeft() -> Any:
    """
    Each test leaves no txfastcgi timer behind in the session's reactor
    (pytest-twisted does not check, STYLE.md P12).
    """
    yield
    left = [
        call
        for call in getReactor().getDelayedCalls()
        if call.active()
        and "txfastcgi" in repr(call.func)
        # twisted.web's timers of an HTTP connection (its channel is a
        # txfastcgi.site.DirectWriteChannel): Twisted's, not ours.
        and not isinstance(getattr(call.func, "__self__", None), HTTPChannel)
    ]
    assert left == [], left


@pytest.fixture
def responder(responderBinary: str, peerDir: str) -> Any:
    """
    The libfcgi responder with 4 threads on a Unix socket.
    """
    app = peers.spawnResponder(threads=4, directory=peerDir)
    yield app
    app.stop()


@pytest_twisted.async_yield_fixture
async def gateway(responder: Any) -> AsyncIterator[Gateway]:
    """
    A gateway in front of the responder.
    """
    gw = Gateway(responder.endpointDescription, documentRoot=b"/srv/docs")
    yield gw
    await gw.close()


def header(response: Any, name: bytes) -> bytes:
    """
    The first value of a response header.
    """
    values = response.headers.getRawHeaders(name)
    assert values, name
    value: bytes = values[0]
    return value


@pytest_twisted.ensureDeferred
async def test_basicGet(gateway: Gateway) -> None:
    """
    A GET is answered by the application, through the gateway.
    """
    response, body = await gateway.fetch("/app")
    assert response.code == 200
    assert body.kept == b"Hello, world\n"
    assert header(response, b"Content-Type") == b"text/plain"


@pytest_twisted.ensureDeferred
async def test_environment(gateway: Gateway) -> None:
    """
    The application sees the CGI variables of the request.
    """
    response, body = await gateway.fetch("/app/x/y%20z?env")
    env = dict(line.split(b"=", 1) for line in body.kept.splitlines())
    port = str(gateway.port.getHost().port).encode()
    assert env[b"SCRIPT_NAME"] == b"/app"
    assert env[b"PATH_INFO"] == b"/x/y z"
    assert env[b"PATH_TRANSLATED"] == b"/srv/docs/x/y z"
    assert env[b"QUERY_STRING"] == b"env"
    assert env[b"REQUEST_URI"] == b"/app/x/y%20z?env"
    assert env[b"REMOTE_ADDR"] == b"127.0.0.1"
    assert env[b"SERVER_PORT"] == port
    assert env[b"HTTP_HOST"] == b"127.0.0.1:" + port
    assert env[b"SERVER_NAME"] == b"127.0.0.1"


@pytest_twisted.ensureDeferred
async def test_postEcho(gateway: Gateway) -> None:
    """
    A POST body reaches the application and comes back.
    """
    producer = FileBodyProducer(io.BytesIO(b"hello body"))
    response, body = await gateway.fetch("/app?echo", b"POST", producer)
    assert response.code == 200
    assert body.kept == b"hello body"
    assert header(response, b"X-Body-Length") == b"10"


@pytest_twisted.ensureDeferred
async def test_statusAndStderr(gateway: Gateway) -> None:
    """
    The application's Status is the response's, and its STDERR is logged
    with the backend and URI.
    """
    logged: list[LogEvent] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        response, _ = await gateway.fetch("/app?status=404&stderr=oops-from-app")
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert response.code == 404
    lines = [e for e in logged if e.get("stream") == "stderr"]
    assert [e["line"] for e in lines] == ["oops-from-app"]
    assert lines[0]["uri"] == "/app?status=404&stderr=oops-from-app"
    assert lines[0]["backend"] == gateway.pool.address


@pytest_twisted.ensureDeferred
async def test_serverPush(gateway: Gateway) -> None:
    """
    What the application flushes reaches the client at once: the first part
    arrives well before the application's pause ends.
    """
    reactor = getReactor()
    start = reactor.seconds()
    response, body = await gateway.fetch("/app?push=1500")
    end = reactor.seconds()
    assert body.kept == b"part1\npart2\n"
    firstAt = body.arrivals[0][0] - start
    whole = end - start
    print(f"\npush: first part after {firstAt * 1e3:.1f} ms, whole after {whole * 1e3:.1f} ms")
    assert firstAt < 0.5
    assert end - start >= 1.4


@pytest_twisted.ensureDeferred
async def test_bigDownload(gateway: Gateway) -> None:
    """
    A 64 MiB response streams through: the bytes are right and the peak RSS
    of this process (server and client) grows by less than 64 MiB.
    """
    before = resetPeakRSS()
    response, body = await gateway.fetch(f"/app?size={BIG}")
    growth = peakRSS() - before
    print(f"\ndownload: peak RSS grew by {growth / 2**20:.1f} MiB")
    assert response.code == 200
    assert body.length == BIG
    assert body.digest.hexdigest() == patternDigest(BIG)
    assert growth < BIG


@pytest_twisted.async_yield_fixture
async def tlsGateway(responder: Any) -> AsyncIterator[Gateway]:
    """
    A gateway over TLS in front of the responder.
    """
    gw = Gateway(responder.endpointDescription, tls=TLSMaterial(), documentRoot=b"/srv/docs")
    yield gw
    await gw.close()


@pytest_twisted.ensureDeferred
async def test_tlsEnvironment(tlsGateway: Gateway) -> None:
    """
    Over TLS the application sees C{HTTPS=on} and the https scheme, and the
    answer arrives whole.
    """
    response, body = await tlsGateway.fetch("/app?env")
    assert response.code == 200
    env = dict(line.split(b"=", 1) for line in body.kept.splitlines())
    assert env[b"HTTPS"] == b"on"
    assert env[b"REQUEST_SCHEME"] == b"https"
    assert env[b"SERVER_NAME"] == b"localhost"


@pytest_twisted.ensureDeferred
async def test_tlsDownloadAndUpload(tlsGateway: Gateway) -> None:
    """
    Over TLS (where responses are not written straight to the socket), a
    4 MiB response and a 4 MiB request body go through intact.
    """
    size = 4 * 1024 * 1024
    response, body = await tlsGateway.fetch(f"/app?size={size}")
    assert response.code == 200
    assert body.length == size
    assert body.digest.hexdigest() == patternDigest(size)
    producer = FileBodyProducer(PatternFile(size))
    response, body = await tlsGateway.fetch("/app?echo", b"POST", producer, keep=0)
    assert response.code == 200
    assert header(response, b"X-Body-Length") == str(size).encode()
    assert body.length == size
    assert body.digest.hexdigest() == patternDigest(size)


class RawClient(Protocol):
    """
    An HTTP/1.0 client on a bare TCP connection that can stop reading:
    keeps a digest and count of everything after the response head.
    """

    def __init__(self) -> None:
        self.received = 0
        self.head = b""
        self.digest = hashlib.sha256()
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        if self.head.find(b"\r\n\r\n") < 0:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            data = self.head[end + 4 :]
            self.head = self.head[: end + 4]
        self.received += len(data)
        self.digest.update(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.closed.callback(None)


@pytest_twisted.ensureDeferred
async def test_slowClientHoldsTheApplication(gateway: Gateway) -> None:
    """
    A client that stops reading stops the gateway reading from the
    application (the direct writes to its socket do not bypass
    backpressure): while it is paused the gateway's FastCGI connection
    takes in a bounded amount and then nothing more; once it reads again
    the whole 32 MiB arrive intact.
    """
    reactor = getReactor()
    size = 32 * 1024 * 1024
    client = await bounded(
        ClientCreator(reactor, RawClient).connectTCP(
            "127.0.0.1", gateway.port.getHost().port
        )
    )
    client.transport.write(f"GET /app?size={size} HTTP/1.0\r\n\r\n".encode())
    client.transport.pauseProducing()
    await deferLater(reactor, 1.0, lambda: None)
    [connection] = list(gateway.pool._connections)
    held = connection.bytesReceived
    await deferLater(reactor, 0.5, lambda: None)
    assert connection.bytesReceived == held
    assert held < size // 2
    client.transport.resumeProducing()
    await bounded(client.closed, 60)
    assert client.head.startswith(b"HTTP/1.0 200 ")
    assert client.received == size
    assert client.digest.hexdigest() == patternDigest(size)


@pytest_twisted.ensureDeferred
async def test_bigUpload(gateway: Gateway) -> None:
    """
    A 64 MiB upload is spooled and streamed to the application, which reads
    all of it; the peak RSS grows by less than 64 MiB.
    """
    before = resetPeakRSS()
    producer = FileBodyProducer(PatternFile(BIG), readSize=1 << 16)
    response, body = await gateway.fetch("/app", b"POST", producer)
    growth = peakRSS() - before
    print(f"\nupload: peak RSS grew by {growth / 2**20:.1f} MiB")
    assert response.code == 200
    assert header(response, b"X-Body-Length") == str(BIG).encode()
    assert growth < BIG


@pytest_twisted.ensureDeferred
async def test_applicationDown(peerDir: str) -> None:
    """
    A socket nobody listens on gives 503.
    """
    gw = Gateway("unix:" + os.path.join(peerDir, "nobody.sock"))
    try:
        response, _ = await gw.fetch("/app")
        assert response.code == 503
    finally:
        await gw.close()


PHP_SCRIPT = r"""<?php
header('Content-Type: text/plain');
header('Set-Cookie: a=1', false);
header('Set-Cookie: b=2', false);
echo $_SERVER['SCRIPT_NAME'], '|', $_SERVER['PATH_INFO'] ?? '-', '|',
     $_GET['q'] ?? '-', '|', $_SERVER['REQUEST_METHOD'], '|',
     file_get_contents('php://input');
error_log('php says hi');
"""


@pytest.mark.peer("php-fpm")
@pytest_twisted.ensureDeferred
async def test_phpFpm(peerDir: str) -> None:
    """
    php-fpm behind the gateway: variables, the body and repeated headers
    go through.
    """
    # php-fpm's test pool sends error_log() to its own log file, not to
    # FCGI_STDERR; the libfcgi responder covers STDERR.
    php = peers.phpFpm(peerDir, scripts={"t.php": PHP_SCRIPT})
    gw = Gateway(
        "unix:" + php.address,
        scriptFilename=php.scriptFilename("t.php").encode(),
        documentRoot=php.documentRoot.encode(),
    )
    try:
        response, body = await gw.fetch("/app/more?q=1")
        assert response.code == 200
        assert body.kept == b"/app|/more|1|GET|"
        assert response.headers.getRawHeaders(b"Set-Cookie") == [b"a=1", b"b=2"]
        producer = FileBodyProducer(io.BytesIO(b"posted"))
        response, body = await gw.fetch("/app", b"POST", producer)
        assert body.kept == b"/app|-|-|POST|posted"
    finally:
        await gw.close()
        php.stop()


def _readUntilClosed(port: int, request: bytes, onFirstData: Any) -> tuple[bytes, str]:
    """
    A blocking raw-socket client (run in a thread): send C{request}, read
    the answer until the server closes; call C{onFirstData} once the first
    megabyte has arrived.

    @return: what was read (at most its first 64 KiB and last 64 KiB) and
        how it ended: C{"eof"} or C{"reset"}.
    """
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        head = b""
        tail = b""
        total = 0
        called = False
        while True:
            try:
                data = sock.recv(1 << 16)
            except ConnectionResetError:
                return head + tail, "reset"
            if not data:
                return head + tail, "eof"
            total += len(data)
            if len(head) < 1 << 16:
                head += data
            tail = (tail + data)[-(1 << 16) :]
            if total > 1 << 20 and not called:
                called = True
                onFirstData()


STREAM_SCRIPT = r"""<?php
header('Content-Type: text/plain');
$block = str_repeat('a', 65536);
for ($i = 0; $i < 2048; $i++) {
    echo $block;
    flush();
}
"""


def _killGroup(pids: list[int]) -> None:
    """
    SIGKILL the process groups (or processes) C{pids}.
    """
    import signal

    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            os.kill(pid, signal.SIGKILL)


async def _dieMidResponse(
    application: str, pids: list[int], request: bytes, **options: Any
) -> tuple[bytes, str]:
    """
    Send C{request} through a gateway to C{application} with a raw-socket
    client in a thread, kill C{pids} once a megabyte has arrived, and
    return what the client read and how the connection ended.
    """
    from twisted.internet.threads import deferToThread

    gw = Gateway(application, **options)
    try:
        result: tuple[bytes, str] = await bounded(
            deferToThread(
                _readUntilClosed, gw.port.getHost().port, request, lambda: _killGroup(pids)
            )
        )
    finally:
        await gw.close()
    return result


@pytest_twisted.ensureDeferred
async def test_applicationDiesMidSizedResponse(responderBinary: str, peerDir: str) -> None:
    """
    When the application dies after the head of a response with
    Content-Length was sent, the client gets fewer bytes than announced and
    the connection closes.
    """
    app = peers.spawnResponder(threads=1, directory=peerDir)
    try:
        data, _ = await _dieMidResponse(
            app.endpointDescription,
            app.pids,
            b"GET /app?size=%d HTTP/1.1\r\nHost: x\r\n\r\n" % (BIG,),
        )
    finally:
        app.stop()
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Length: %d" % (BIG,) in data


@pytest.mark.peer("php-fpm")
@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
@pytest_twisted.ensureDeferred
async def test_applicationDiesMidStream(peerDir: str, version: bytes) -> None:
    """
    When the application dies after the head was sent, the client sees a
    truncated response: an HTTP/1.1 chunked body ends without its last
    chunk; an HTTP/1.0 body (delimited by the close) ends with a TCP reset,
    never with a clean close that would look complete.
    """
    php = peers.phpFpm(peerDir, scripts={"stream.php": STREAM_SCRIPT})
    try:
        data, end = await _dieMidResponse(
            "unix:" + php.address,
            php.pids,
            b"GET /app " + version + b"\r\nHost: x\r\n\r\n",
            scriptFilename=php.scriptFilename("stream.php").encode(),
        )
    finally:
        php.stop()
    head = data.partition(b"\r\n\r\n")[0]
    assert data.startswith(version + b" 200 ")
    assert b"Content-Length" not in head
    if version == b"HTTP/1.1":
        assert b"Transfer-Encoding: chunked" in head
        assert not data.endswith(b"0\r\n\r\n")
    else:
        assert end == "reset"
