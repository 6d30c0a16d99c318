"""
txfastcgi as a front end for the anchor benchmarks (../shared/bench), until
``twistd fastcgi`` exists: a L{GatewaySite} whose root is one
L{FastCGIResource} talking to the shared backend.

    python bench/frontend.py PORT SOCKET [--no-keepalive] [--max-connections N]

Listens on 127.0.0.1:PORT; no access log (as in the anchors' configs).  Use
it from ``run_anchors.sh`` with::

    ./run_anchors.sh -x 'txfastcgi=exec /work/main/.venv/bin/python \
        /work/main/bench/frontend.py $PORT $FCGI_SOCKET'
"""

from __future__ import annotations

import argparse


def main() -> None:
    """
    Run the front end until killed.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("socket")
    parser.add_argument("--no-keepalive", action="store_true")
    parser.add_argument("--max-connections", type=int, default=16)
    options = parser.parse_args()

    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from txfastcgi.pool import ApplicationAddress, ConnectionPool
    from txfastcgi.resource import FastCGIResource
    from txfastcgi.site import GatewaySite

    pool = ConnectionPool(
        reactor,
        ApplicationAddress.unix(options.socket),
        keepAlive=not options.no_keepalive,
        maxConnections=options.max_connections,
    )
    site = GatewaySite(FastCGIResource(pool), maxRequestBodySize=None)
    site.log = lambda request: None  # type: ignore[method-assign]
    TCP4ServerEndpoint(reactor, options.port, interface="127.0.0.1").listen(site)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
