# -*- test-case-name: tests.test_records -*-
"""
The errors of the FastCGI codec.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """
    The FastCGI protocol was broken.  The message says how.
    """


class RemoteProtocolError(ProtocolError):
    """
    The peer sent bytes that break the FastCGI protocol.  The connection
    can no longer be trusted and must be closed.
    """


class LocalProtocolError(ProtocolError):
    """
    Our own side asked the codec to do something the protocol does not
    allow (a caller bug), e.g. send STDIN for a request that is not active.
    """
