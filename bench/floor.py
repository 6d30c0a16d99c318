#!/usr/bin/env python3
"""
The floor: the least a FastCGI gateway on twisted.web can cost per request.

A deliberately minimal front end (no error handling, no timeouts, no
streaming, no backpressure, a fixed CGI environment, 16 kept connections
handed out in turn) to measure beside ``bench/frontend.py`` in the anchor
benchmark: what is left between the two is what txfastcgi's own machinery
costs, and what is left between this and plain twisted.web is the
unavoidable FastCGI work (encode, one send, one receive, decode, copy the
head) on this stack.  Not for serving anything.

    ./run_anchors.sh -f twisted,floor,fastcgiresource \\
        -x 'floor=exec /work/main/.venv/bin/python /work/main/bench/floor.py $PORT $FCGI_SOCKET' \\
        -x 'fastcgiresource=exec /work/main/.venv/bin/python /work/main/bench/frontend.py $PORT $FCGI_SOCKET'
"""

import struct
import sys

from twisted.internet import protocol, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.web import resource, server
from twisted.web.server import NOT_DONE_YET

HEADER = struct.Struct(">BBHHBx")
BEGIN = HEADER.pack(1, 1, 1, 8, 0) + b"\x00\x01\x01\x00\x00\x00\x00\x00"
END_PARAMS = HEADER.pack(1, 4, 1, 0, 0)
END_STDIN = HEADER.pack(1, 5, 1, 0, 0)

idle = []
waiting = []


def pairs(env):
    out = []
    for name, value in env:
        for length in (len(name), len(value)):
            out.append(bytes((length,)) if length < 128 else struct.pack(">I", length | 0x80000000))
        out.append(name)
        out.append(value)
    return b"".join(out)


class Connection(protocol.Protocol):
    request = None
    buffered = b""

    def connectionMade(self):
        idle.append(self)
        if waiting:
            self.start(*waiting.pop(0))

    def start(self, request, payload):
        self.request = request
        self.out = []
        self.transport.write(payload)

    def dataReceived(self, data):
        data = self.buffered + data if self.buffered else data
        pos = 0
        while len(data) - pos >= 8:
            _, kind, _, length, padding = HEADER.unpack_from(data, pos)
            end = pos + 8 + length + padding
            if end > len(data):
                break
            if kind == 6 and length:
                self.out.append(data[pos + 8 : pos + 8 + length])
            elif kind == 3:
                self.finish()
            pos = end
        self.buffered = data[pos:]

    def finish(self):
        request, self.request = self.request, None
        head, _, body = b"".join(self.out).partition(b"\r\n\r\n")
        if request.channel is not None:
            headers = request.responseHeaders
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                headers.addRawHeader(name, value.strip())
            request.write(body)
            request.finish()
        if waiting:
            self.start(*waiting.pop(0))
        else:
            idle.append(self)


class Gateway(resource.Resource):
    isLeaf = True

    def render(self, request):
        host, client = request.getHost(), request.getClientAddress()
        env = [
            (b"GATEWAY_INTERFACE", b"CGI/1.1"),
            (b"SERVER_SOFTWARE", b"floor"),
            (b"REQUEST_METHOD", request.method),
            (b"REQUEST_URI", request.uri),
            (b"SCRIPT_NAME", b""),
            (b"QUERY_STRING", request.uri.partition(b"?")[2]),
            (b"SERVER_NAME", b"localhost"),
            (b"SERVER_ADDR", host.host.encode()),
            (b"SERVER_PORT", b"%d" % host.port),
            (b"SERVER_PROTOCOL", request.clientproto),
            (b"REMOTE_ADDR", client.host.encode()),
            (b"REMOTE_PORT", b"%d" % client.port),
        ]
        for name, values in request.requestHeaders.getAllRawHeaders():
            env.append((b"HTTP_" + name.upper().replace(b"-", b"_"), b", ".join(values)))
        params = pairs(env)
        payload = b"".join([BEGIN, HEADER.pack(1, 4, 1, len(params), 0), params, END_PARAMS, END_STDIN])
        if idle:
            idle.pop().start(request, payload)
        else:
            waiting.append((request, payload))
        return NOT_DONE_YET


def main():
    port, socketPath = int(sys.argv[1]), sys.argv[2]
    factory = protocol.ClientFactory()
    factory.protocol = Connection
    for _ in range(16):
        reactor.connectUNIX(socketPath, factory)
    site = server.Site(Gateway())
    site.log = lambda request: None
    TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(site)
    reactor.run()


if __name__ == "__main__":
    main()
