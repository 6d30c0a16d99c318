# -*- test-case-name: tests.test_unixstream -*-
"""
Unix-socket client connections that are plain byte streams.

Twisted's Unix connections can pass file descriptors, so they read with
C{recvmsg} and write through the descriptor-passing queue, in Python, on
every read and write.  A FastCGI connection never passes descriptors; on a
busy gateway that extra work is a visible share of the CPU spent per
request.  L{streamUNIXClientEndpoint} gives the standard
L{UNIXClientEndpoint}, whose connections read and write as TCP ones do
(C{recv} and C{send}).

Only the reactors built on Twisted's POSIX base make their Unix connections
this way; with any other reactor (a test double, for one) the endpoint is
the ordinary one.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp, unix
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.posixbase import PosixReactorBase

__all__ = ["StreamUNIXClient", "streamUNIXClientEndpoint"]


class StreamUNIXClient(unix.Client):
    """
    A Unix client connection that reads with C{recv} and writes with
    C{send}: it neither receives nor sends file descriptors.
    """

    doRead = tcp.Connection.doRead  # type: ignore[assignment]
    writeSomeData = tcp.Connection.writeSomeData


class _StreamConnector(unix.Connector):
    """
    A Unix connector whose transport is a L{StreamUNIXClient}.
    """

    def _makeTransport(self) -> Any:
        return StreamUNIXClient(  # type: ignore[no-untyped-call]
            self.address, self, self.reactor, self.checkPID
        )


class _StreamReactor:
    """
    The reactor, as L{UNIXClientEndpoint} sees it: C{connectUNIX} uses
    L{_StreamConnector}.
    """

    def __init__(self, reactor: PosixReactorBase) -> None:
        self._reactor = reactor

    def connectUNIX(
        self, address: str, factory: Any, timeout: float = 30, checkPID: int = 0
    ) -> _StreamConnector:
        connector = _StreamConnector(  # type: ignore[no-untyped-call]
            address, factory, timeout, self._reactor, checkPID
        )
        connector.connect()
        return connector


def streamUNIXClientEndpoint(
    reactor: Any, path: str, timeout: float = 30
) -> UNIXClientEndpoint:
    """
    A client endpoint for the Unix socket at C{path} whose connections are
    L{StreamUNIXClient}s when C{reactor} is a POSIX reactor.

    @param reactor: the reactor.
    @param path: the socket's path.
    @param timeout: seconds to wait for the connection.
    """
    target: Any = _StreamReactor(reactor) if isinstance(reactor, PosixReactorBase) else reactor
    return UNIXClientEndpoint(target, path, timeout=timeout)  # type: ignore[no-untyped-call]
