# -*- test-case-name: tests.test_records -*-
"""
Numbers and names defined by the FastCGI 1.0 specification.
"""

from __future__ import annotations

from enum import IntEnum

FCGI_VERSION_1 = 1
"""The only protocol version that exists."""

FCGI_HEADER_LEN = 8
"""Length of a record header in bytes."""

FCGI_MAX_CONTENT_LENGTH = 0xFFFF
"""Largest content length one record can carry."""

FCGI_NULL_REQUEST_ID = 0
"""Request id of management records."""

FCGI_KEEP_CONN = 1
"""BEGIN_REQUEST flag: the web server keeps the connection open after the request."""

FCGI_LISTENSOCK_FILENO = 0
"""File descriptor on which a web server hands an application its listening socket."""

FCGI_MAX_CONNS = b"FCGI_MAX_CONNS"
FCGI_MAX_REQS = b"FCGI_MAX_REQS"
FCGI_MPXS_CONNS = b"FCGI_MPXS_CONNS"

MAX_PAIR_LENGTH = 0x7FFFFFFF
"""Largest name or value length a name-value pair can declare (31 bits)."""


class RecordType(IntEnum):
    """
    The record types of FastCGI 1.0.
    """

    BEGIN_REQUEST = 1
    ABORT_REQUEST = 2
    END_REQUEST = 3
    PARAMS = 4
    STDIN = 5
    STDOUT = 6
    STDERR = 7
    DATA = 8
    GET_VALUES = 9
    GET_VALUES_RESULT = 10
    UNKNOWN_TYPE = 11


FCGI_MAXTYPE = int(RecordType.UNKNOWN_TYPE)


class Role(IntEnum):
    """
    The role an application plays for one request.
    """

    RESPONDER = 1
    AUTHORIZER = 2
    FILTER = 3


class ProtocolStatus(IntEnum):
    """
    The protocol-level outcome an application reports in END_REQUEST.
    """

    REQUEST_COMPLETE = 0
    CANT_MPX_CONN = 1
    OVERLOADED = 2
    UNKNOWN_ROLE = 3


def recordTypeName(recordType: int) -> str:
    """
    Name a record type for messages, also when it is not a known one.

    @param recordType: the type byte of a record.
    @return: C{"STDOUT"}, or C{"type 42"} for an unknown type.
    """
    try:
        return RecordType(recordType).name
    except ValueError:
        return f"type {recordType}"
