# -*- test-case-name: tests.test_records -*-
"""
Events the sans-IO connections return from C{receiveData}.

The first group is what a web server (client) learns from an application; the
second is what an application learns from a web server.  All are frozen,
keyword-only value objects, so tests can compare lists of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """
    Base class of all codec events.
    """


# --- application -> web server -------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StdoutReceived(Event):
    """
    A piece of a request's STDOUT stream.
    """

    requestId: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StdoutEnded(Event):
    """
    The application closed a request's STDOUT stream with an empty record.
    """

    requestId: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StderrReceived(Event):
    """
    A piece of a request's STDERR stream.
    """

    requestId: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StderrEnded(Event):
    """
    The application closed a request's STDERR stream with an empty record.
    """

    requestId: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestEnded(Event):
    """
    END_REQUEST: the request is over and its id is free again.

    @ivar appStatus: the application's exit status (32 bits, unsigned).
    @ivar protocolStatus: a L{txfastcgi.fcgi.constants.ProtocolStatus} value.
    """

    requestId: int
    appStatus: int
    protocolStatus: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ValuesReceived(Event):
    """
    GET_VALUES_RESULT: the variables the application chose to report.
    """

    values: dict[bytes, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownTypeReceived(Event):
    """
    UNKNOWN_TYPE: the application did not understand a management record we sent.
    """

    recordType: int


# --- web server -> application -------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestStarted(Event):
    """
    BEGIN_REQUEST with a role the application accepted.
    """

    requestId: int
    role: int
    keepConnection: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ParamsReceived(Event):
    """
    The whole PARAMS stream of a request, once its empty record arrived.
    """

    requestId: int
    params: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class StdinReceived(Event):
    """
    A piece of a request's STDIN stream (the request body).
    """

    requestId: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StdinEnded(Event):
    """
    The web server closed a request's STDIN stream.
    """

    requestId: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived(Event):
    """
    A piece of a Filter request's DATA stream (the file to filter).
    """

    requestId: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class DataEnded(Event):
    """
    The web server closed a request's DATA stream.
    """

    requestId: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestAborted(Event):
    """
    ABORT_REQUEST: the web server asks the application to end the request soon.
    """

    requestId: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ValuesRequested(Event):
    """
    GET_VALUES: the web server asked for these variables (already answered by the
    connection from its configured values).
    """

    names: tuple[bytes, ...]
