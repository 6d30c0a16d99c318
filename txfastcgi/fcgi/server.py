# -*- test-case-name: tests.test_fcgi_server -*-
"""
The application side of one FastCGI connection, sans-IO.

L{ServerConnection} turns the bytes a web server sends into events
(L{txfastcgi.fcgi.events}) and queues the records an application sends back.
It never touches a socket: feed it with L{ServerConnection.receiveData}, write
what L{ServerConnection.dataToSend} returns, close the connection when
L{ServerConnection.shouldClose} says so.  It never imports Twisted.

What the connection answers by itself, without bothering the application
(SPEC.md section 7.3 and 7.5):
  - C{FCGI_GET_VALUES} with the configured, truthful C{FCGI_MAX_CONNS},
    C{FCGI_MAX_REQS} and C{FCGI_MPXS_CONNS}, omitting names it does not know;
  - an unknown management record type with C{FCGI_UNKNOWN_TYPE};
  - a C{BEGIN_REQUEST} while another request is active on a connection that
    does not multiplex with C{END_REQUEST}/C{FCGI_CANT_MPX_CONN};
  - a C{BEGIN_REQUEST} beyond C{maxReqs} concurrent requests on a multiplexing
    connection with C{END_REQUEST}/C{FCGI_OVERLOADED};
  - a C{BEGIN_REQUEST} with a role not in C{roles} with
    C{END_REQUEST}/C{FCGI_UNKNOWN_ROLE}.

Records for inactive request ids (other than C{BEGIN_REQUEST}) are ignored,
as the specification says; this is what lets an application end a request
before the web server has finished sending its body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from txfastcgi.fcgi.constants import (
    FCGI_KEEP_CONN,
    FCGI_MAX_CONNS,
    FCGI_MAX_REQS,
    FCGI_MPXS_CONNS,
    FCGI_NULL_REQUEST_ID,
    ProtocolStatus,
    RecordType,
    Role,
    recordTypeName,
)
from txfastcgi.fcgi.errors import LocalProtocolError, RemoteProtocolError
from txfastcgi.fcgi.events import (
    DataEnded,
    DataReceived,
    Event,
    ParamsReceived,
    RequestAborted,
    RequestStarted,
    StdinEnded,
    StdinReceived,
    ValuesRequested,
)
from txfastcgi.fcgi.records import (
    PairDecoder,
    Record,
    RecordReader,
    decodeBeginRequestBody,
    decodePairs,
    encodeEndRequestBody,
    encodePairs,
    encodeUnknownTypeBody,
    recordChunks,
    streamChunks,
    streamEndChunks,
)

__all__ = ["ServerConnection", "DEFAULT_MAX_PARAMS_SIZE"]

DEFAULT_MAX_PARAMS_SIZE = 1 << 20
"""
Default cap on the bytes of one request's PARAMS stream (1 MiB; nginx's own
default header limits keep real environments far below it).
"""

_SERVER_TO_APP_REQUEST_TYPES = frozenset(
    {
        RecordType.BEGIN_REQUEST,
        RecordType.ABORT_REQUEST,
        RecordType.PARAMS,
        RecordType.STDIN,
        RecordType.DATA,
    }
)
_APP_TO_SERVER_TYPES = frozenset(
    {
        RecordType.END_REQUEST,
        RecordType.STDOUT,
        RecordType.STDERR,
        RecordType.GET_VALUES_RESULT,
        RecordType.UNKNOWN_TYPE,
    }
)
_KNOWN_TYPES = frozenset(int(t) for t in RecordType)
_ALL_ROLES = frozenset(int(r) for r in Role)


class _Input(Enum):
    """
    Which inbound stream of a request is open.

    Responder and Authorizer: PARAMS -> STDIN -> DONE.
    Filter: PARAMS -> STDIN -> DATA -> DONE.
    """

    PARAMS = "PARAMS"
    STDIN = "STDIN"
    DATA = "DATA"
    DONE = "DONE"


@dataclass(slots=True)
class _RequestState:
    """
    What the connection knows of one active request.
    """

    requestId: int
    role: int
    keepConnection: bool
    params: PairDecoder
    pairs: list[tuple[bytes, bytes]] = field(default_factory=list)
    input: _Input = _Input.PARAMS
    aborted: bool = False
    stdoutUsed: bool = False
    stderrUsed: bool = False


class ServerConnection:
    """
    The application side of one FastCGI connection.

    Per-request states (inbound): C{PARAMS} (BEGIN_REQUEST accepted, PARAMS
    open) -> C{STDIN} (PARAMS ended) -> C{DATA} (Filter only, STDIN ended) ->
    C{DONE} (all inbound streams ended).  Outbound, STDOUT and STDERR stay open
    until L{endRequest}, which closes them and makes the id inactive again.

    Connection states: open, then "closing" once a request that came without
    C{FCGI_KEEP_CONN} has ended and no request is active (L{shouldClose}), and
    broken once a L{RemoteProtocolError} was raised (every later call to
    L{receiveData} raises it again).

    @ivar maxConns: the value reported for C{FCGI_MAX_CONNS}.
    @ivar maxReqs: the value reported for C{FCGI_MAX_REQS}; a multiplexing
        connection also refuses (C{FCGI_OVERLOADED}) a request beyond it.
    @ivar multiplex: whether several requests may be active at once
        (C{FCGI_MPXS_CONNS}).
    @ivar maxParamsSize: the most bytes one PARAMS stream may hold.
    @ivar roles: the roles the application plays.
    """

    def __init__(
        self,
        *,
        maxConns: int = 1,
        maxReqs: int = 1,
        multiplex: bool = False,
        maxParamsSize: int = DEFAULT_MAX_PARAMS_SIZE,
        roles: frozenset[int] = _ALL_ROLES,
    ) -> None:
        if maxConns < 1 or maxReqs < 1:
            raise ValueError("maxConns and maxReqs must be at least 1")
        self.maxConns = maxConns
        self.maxReqs = maxReqs
        self.multiplex = multiplex
        self.maxParamsSize = maxParamsSize
        self.roles = roles
        self._reader = RecordReader()
        self._requests: dict[int, _RequestState] = {}
        self._out: list[bytes] = []
        self._error: RemoteProtocolError | None = None
        self._closeWhenIdle = False

    # --- state ---------------------------------------------------------------

    @property
    def activeRequestIds(self) -> list[int]:
        """
        The ids of the requests that are active (begun and not yet ended by
        L{endRequest}), in the order they began.
        """
        return list(self._requests)

    @property
    def shouldClose(self) -> bool:
        """
        C{True} when the application should close the connection after writing
        L{dataToSend}: a request that came without C{FCGI_KEEP_CONN} has ended
        and no request is active any more.
        """
        return self._closeWhenIdle and not self._requests

    def isActive(self, requestId: int) -> bool:
        """
        Whether C{requestId} is an active request.
        """
        return requestId in self._requests

    # --- receiving -----------------------------------------------------------

    def receiveData(self, data: bytes) -> list[Event]:
        """
        Take bytes from the web server; return the events they complete.

        @raise RemoteProtocolError: if the bytes break the protocol.  The
            connection is then broken for good and must be closed.
        """
        if self._error is not None:
            raise self._error
        try:
            events: list[Event] = []
            for record in self._reader.feed(data):
                self._handleRecord(record, events)
            return events
        except RemoteProtocolError as e:
            self._error = e
            raise

    def _handleRecord(self, record: Record, events: list[Event]) -> None:
        recordType = record.type
        requestId = record.requestId
        if recordType in _APP_TO_SERVER_TYPES:
            raise RemoteProtocolError(
                f"received {recordTypeName(recordType)} record for request "
                f"{requestId}, which only an application may send"
            )
        if requestId == FCGI_NULL_REQUEST_ID:
            self._handleManagement(record, events)
            return
        if recordType not in _KNOWN_TYPES:
            raise RemoteProtocolError(
                f"received record of unknown {recordTypeName(recordType)} "
                f"for request {requestId}"
            )
        if recordType == RecordType.GET_VALUES:
            raise RemoteProtocolError(
                f"received GET_VALUES record for request {requestId} "
                "(management records use request id 0)"
            )
        if recordType == RecordType.BEGIN_REQUEST:
            self._beginRequest(record, events)
            return
        state = self._requests.get(requestId)
        if state is None:
            # SPEC 7.2: records for an inactive id are ignored.
            return
        if recordType == RecordType.ABORT_REQUEST:
            if not state.aborted:
                state.aborted = True
                events.append(RequestAborted(requestId=requestId))
        elif recordType == RecordType.PARAMS:
            self._params(state, record.content, events)
        elif recordType == RecordType.STDIN:
            self._stdin(state, record.content, events)
        else:
            self._data(state, record.content, events)

    def _handleManagement(self, record: Record, events: list[Event]) -> None:
        recordType = record.type
        if recordType == RecordType.GET_VALUES:
            pairs = decodePairs(record.content, what="GET_VALUES")
            names = tuple(name for name, _ in pairs)
            known = {
                FCGI_MAX_CONNS: str(self.maxConns).encode("ascii"),
                FCGI_MAX_REQS: str(self.maxReqs).encode("ascii"),
                FCGI_MPXS_CONNS: b"1" if self.multiplex else b"0",
            }
            answer: dict[bytes, bytes] = {}
            for name in names:
                if name in known and name not in answer:
                    answer[name] = known[name]
            self._out += recordChunks(
                RecordType.GET_VALUES_RESULT,
                FCGI_NULL_REQUEST_ID,
                encodePairs(answer.items()),
            )
            events.append(ValuesRequested(names=names))
        elif recordType in _SERVER_TO_APP_REQUEST_TYPES:
            raise RemoteProtocolError(
                f"received {recordTypeName(recordType)} record for request id 0, "
                "which is reserved for management records"
            )
        else:
            self._out += recordChunks(
                RecordType.UNKNOWN_TYPE,
                FCGI_NULL_REQUEST_ID,
                encodeUnknownTypeBody(recordType),
            )

    def _beginRequest(self, record: Record, events: list[Event]) -> None:
        requestId = record.requestId
        role, flags = decodeBeginRequestBody(record.content)
        keep = bool(flags & FCGI_KEEP_CONN)
        if requestId in self._requests:
            raise RemoteProtocolError(
                f"received BEGIN_REQUEST for request {requestId}, which is "
                "already active"
            )
        if self._requests and not self.multiplex:
            self._reject(requestId, ProtocolStatus.CANT_MPX_CONN)
            return
        if len(self._requests) >= self.maxReqs:
            self._reject(requestId, ProtocolStatus.OVERLOADED)
            return
        if role not in self.roles:
            self._reject(requestId, ProtocolStatus.UNKNOWN_ROLE)
            if not keep:
                self._closeWhenIdle = True
            return
        self._requests[requestId] = _RequestState(
            requestId=requestId,
            role=role,
            keepConnection=keep,
            params=PairDecoder(maxSize=self.maxParamsSize, what="PARAMS"),
        )
        events.append(
            RequestStarted(requestId=requestId, role=role, keepConnection=keep)
        )

    def _reject(self, requestId: int, protocolStatus: ProtocolStatus) -> None:
        self._out += recordChunks(
            RecordType.END_REQUEST,
            requestId,
            encodeEndRequestBody(0, protocolStatus),
        )

    def _params(self, state: _RequestState, content: bytes, events: list[Event]) -> None:
        if state.input is not _Input.PARAMS:
            raise RemoteProtocolError(
                f"received PARAMS record for request {state.requestId} after "
                "its PARAMS stream ended"
            )
        if content:
            state.pairs += state.params.feed(content)
            return
        state.params.finish()
        state.input = _Input.STDIN
        events.append(
            ParamsReceived(requestId=state.requestId, params=tuple(state.pairs))
        )
        state.pairs = []

    def _stdin(self, state: _RequestState, content: bytes, events: list[Event]) -> None:
        if state.input is _Input.PARAMS:
            raise RemoteProtocolError(
                f"received STDIN record for request {state.requestId} before "
                "its PARAMS stream ended"
            )
        if state.input is not _Input.STDIN:
            raise RemoteProtocolError(
                f"received STDIN record for request {state.requestId} after "
                "its STDIN stream ended"
            )
        if content:
            events.append(StdinReceived(requestId=state.requestId, data=content))
            return
        state.input = _Input.DATA if state.role == Role.FILTER else _Input.DONE
        events.append(StdinEnded(requestId=state.requestId))

    def _data(self, state: _RequestState, content: bytes, events: list[Event]) -> None:
        if state.role != Role.FILTER:
            raise RemoteProtocolError(
                f"received DATA record for request {state.requestId}, whose "
                f"role {Role(state.role).name} has no DATA stream"
            )
        if state.input is not _Input.DATA:
            where = "after its DATA stream ended" if state.input is _Input.DONE else (
                f"while its {state.input.value} stream is still open"
            )
            raise RemoteProtocolError(
                f"received DATA record for request {state.requestId} {where}"
            )
        if content:
            events.append(DataReceived(requestId=state.requestId, data=content))
            return
        state.input = _Input.DONE
        events.append(DataEnded(requestId=state.requestId))

    # --- sending -------------------------------------------------------------

    def _writable(self, requestId: int, what: str) -> _RequestState:
        state = self._requests.get(requestId)
        if state is None:
            raise LocalProtocolError(f"cannot send {what} for inactive request {requestId}")
        if state.input is _Input.PARAMS:
            raise LocalProtocolError(
                f"cannot send {what} for request {requestId} before its PARAMS "
                "stream ended"
            )
        if state.role == Role.FILTER and state.input is _Input.STDIN:
            raise LocalProtocolError(
                f"cannot send {what} for Filter request {requestId} before its "
                "STDIN stream ended (a Filter must read all of STDIN first)"
            )
        return state

    def sendStdout(self, requestId: int, data: bytes) -> None:
        """
        Queue bytes of a request's STDOUT stream.  Empty data queues nothing.

        @raise LocalProtocolError: if the request is not active, or its PARAMS
            (for a Filter: its STDIN) stream has not ended yet.
        """
        state = self._writable(requestId, "STDOUT")
        if data:
            state.stdoutUsed = True
            self._out += streamChunks(RecordType.STDOUT, requestId, data)

    def sendStderr(self, requestId: int, data: bytes) -> None:
        """
        Queue bytes of a request's STDERR stream.  Empty data queues nothing.

        @raise LocalProtocolError: as for L{sendStdout}.
        """
        state = self._writable(requestId, "STDERR")
        if data:
            state.stderrUsed = True
            self._out += streamChunks(RecordType.STDERR, requestId, data)

    def endRequest(
        self,
        requestId: int,
        appStatus: int = 0,
        protocolStatus: int = ProtocolStatus.REQUEST_COMPLETE,
    ) -> None:
        """
        End a request: close STDOUT (sent at least once, even empty, for a
        completed request), close STDERR if it was used, queue END_REQUEST and
        make the id inactive.

        A request ended with another C{protocolStatus} (e.g. C{OVERLOADED}
        right after L{RequestStarted}) gets only the END_REQUEST record, unless
        it already wrote to STDOUT.

        @raise LocalProtocolError: if the request is not active.
        """
        state = self._requests.pop(requestId, None)
        if state is None:
            raise LocalProtocolError(f"cannot end inactive request {requestId}")
        if state.stdoutUsed or protocolStatus == ProtocolStatus.REQUEST_COMPLETE:
            self._out += streamEndChunks(RecordType.STDOUT, requestId)
        if state.stderrUsed:
            self._out += streamEndChunks(RecordType.STDERR, requestId)
        self._out += recordChunks(
            RecordType.END_REQUEST,
            requestId,
            encodeEndRequestBody(appStatus, protocolStatus),
        )
        if not state.keepConnection:
            self._closeWhenIdle = True

    def dataToSend(self) -> list[bytes]:
        """
        Take the queued output chunks (for C{transport.writeSequence}).
        """
        out, self._out = self._out, []
        return out
