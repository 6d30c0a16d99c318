# -*- test-case-name: tests.test_fcgi_client -*-
"""
The web-server side of one FastCGI connection, sans-IO.

L{ClientConnection} turns method calls into bytes to send and received bytes
into L{txfastcgi.fcgi.events} events, checking both directions against the
FastCGI 1.0 rules (SPEC.md S{sect}7).  It never does I/O and imports nothing
from Twisted: a L{txfastcgi.client.FastCGIClientProtocol} feeds it.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import Iterable

from txfastcgi.fcgi.constants import (
    FCGI_KEEP_CONN,
    FCGI_MAX_CONTENT_LENGTH,
    FCGI_NULL_REQUEST_ID,
    ProtocolStatus,
    RecordType,
    Role,
    recordTypeName,
)
from txfastcgi.fcgi.errors import LocalProtocolError, RemoteProtocolError
from txfastcgi.fcgi.events import (
    Event,
    RequestEnded,
    StderrEnded,
    StderrReceived,
    StdoutEnded,
    StdoutReceived,
    UnknownTypeReceived,
    ValuesReceived,
)
from txfastcgi.fcgi.records import (
    RecordReader,
    decodeEndRequestBody,
    decodePairs,
    decodeUnknownTypeBody,
    encodeBeginRequestBody,
    encodePairs,
    encodeRecord,
    recordChunks,
    streamChunks,
    streamEndChunks,
)

__all__ = ["ClientConnection", "InputState", "OutputState", "RequestState"]

MAX_REQUEST_ID = 0xFFFF
"""The largest request id a record header can carry."""


class InputState(enum.Enum):
    """
    Where a request's input (what we send) stands.

    @cvar PARAMS: BEGIN_REQUEST was sent; PARAMS records may follow.
    @cvar STDIN: the PARAMS stream is closed; STDIN records may follow.
    @cvar DATA: (Filter only) STDIN is closed; DATA records may follow.
    @cvar DONE: every input stream of the request is closed.
    """

    PARAMS = "PARAMS"
    STDIN = "STDIN"
    DATA = "DATA"
    DONE = "DONE"


class OutputState(enum.Enum):
    """
    Where one of a request's output streams (STDOUT or STDERR) stands.

    @cvar OPEN: records may arrive (none may have yet).
    @cvar ENDED: the empty record that ends the stream arrived; no more may.
    """

    OPEN = "OPEN"
    ENDED = "ENDED"


# What we do -> (the one state it is allowed in, the next state).  Anything
# else is a LocalProtocolError.
_INPUT_TRANSITIONS: dict[str, tuple[InputState, InputState]] = {
    "sendParams": (InputState.PARAMS, InputState.PARAMS),
    "endParams": (InputState.PARAMS, InputState.STDIN),
    "sendStdin": (InputState.STDIN, InputState.STDIN),
    "endStdin": (InputState.STDIN, InputState.DONE),  # DATA for a Filter
    "sendData": (InputState.DATA, InputState.DATA),
    "endData": (InputState.DATA, InputState.DONE),
}

# Record types an application may send, and whether they carry a request id.
_REQUEST_OUTPUT_TYPES = frozenset(
    {RecordType.STDOUT, RecordType.STDERR, RecordType.END_REQUEST}
)
_MANAGEMENT_OUTPUT_TYPES = frozenset(
    {RecordType.GET_VALUES_RESULT, RecordType.UNKNOWN_TYPE}
)


_STDOUT = int(RecordType.STDOUT)
_STDERR = int(RecordType.STDERR)
_PARAMS = int(RecordType.PARAMS)
_STDIN = int(RecordType.STDIN)
_FILTER = int(Role.FILTER)
_ENDED = OutputState.ENDED

# Records and events are immutable values: the frequent ones without data
# are made once.
_CACHED_EVENTS_LIMIT = 64
_CACHED_RECORDS_LIMIT = 256


@functools.lru_cache(maxsize=_CACHED_RECORDS_LIMIT)
def _beginRecord(requestId: int, role: int, flags: int) -> bytes:
    return encodeRecord(
        RecordType.BEGIN_REQUEST, requestId, encodeBeginRequestBody(role, flags)
    )


@functools.lru_cache(maxsize=_CACHED_RECORDS_LIMIT)
def _endRecord(recordType: int, requestId: int) -> bytes:
    return b"".join(streamEndChunks(recordType, requestId))


@functools.lru_cache(maxsize=_CACHED_EVENTS_LIMIT)
def _stdoutEnded(requestId: int) -> StdoutEnded:
    return StdoutEnded(requestId=requestId)


@functools.lru_cache(maxsize=_CACHED_EVENTS_LIMIT)
def _requestEnded(requestId: int, appStatus: int, protocolStatus: int) -> RequestEnded:
    return RequestEnded(
        requestId=requestId, appStatus=appStatus, protocolStatus=protocolStatus
    )


@dataclass(slots=True)
class RequestState:
    """
    The state of one active request, as plain data.

    @ivar requestId: the request id.
    @ivar role: the role asked for in BEGIN_REQUEST.
    @ivar keepConnection: whether BEGIN_REQUEST carried C{FCGI_KEEP_CONN}.
    @ivar input: how far our input streams have got.
    @ivar stdout: the state of the STDOUT stream.
    @ivar stderr: the state of the STDERR stream.
    @ivar aborted: whether we sent ABORT_REQUEST for it.
    """

    requestId: int
    role: int
    keepConnection: bool
    input: InputState = InputState.PARAMS
    stdout: OutputState = OutputState.OPEN
    stderr: OutputState = OutputState.OPEN
    aborted: bool = False

    def describe(self) -> str:
        """
        Name the state for error messages, e.g. C{"input STDIN, stdout ENDED"}.
        """
        return (
            f"input {self.input.value}, stdout {self.stdout.value}, "
            f"stderr {self.stderr.value}{', aborted' if self.aborted else ''}"
        )


class ClientConnection:
    """
    The web-server (client) side of one FastCGI connection.

    Send methods queue chunks of bytes; L{dataToSend} drains them (a list, for
    C{transport.writeSequence}; content is not copied).  L{receiveData} takes
    bytes from the application, in any split, and returns events.

    Each active request has a L{RequestState}:

      - C{input}: C{PARAMS} after L{beginRequest} → (L{endParams}) C{STDIN} →
        (L{endStdin}) C{DONE}, or for a Filter C{DATA} → (L{endData}) C{DONE}.
        L{sendParams}, L{sendStdin}, L{sendData} are allowed only in their own
        state; anything else raises L{LocalProtocolError}.
      - C{stdout}, C{stderr}: C{OPEN} → C{ENDED} when the empty record
        arrives; a non-empty record after it is a L{RemoteProtocolError}.
      - C{aborted}: set by L{abortRequest}; the request stays active.

    A request is active from L{beginRequest} until its END_REQUEST arrives;
    then its id is free again (see L{nextRequestId}).  STDOUT, STDERR or
    END_REQUEST for an id that is not active, a record type an application
    must not send, a malformed management record or a broken record header
    raise L{RemoteProtocolError}; after one the connection is broken and
    every further L{receiveData} raises the same error.

    @ivar requests: the active requests by id (read-only for callers).
    @ivar closing: C{True} once a request without C{FCGI_KEEP_CONN} was
        started: the application closes the connection after it, so no other
        request may start.
    """

    def __init__(self) -> None:
        self.requests: dict[int, RequestState] = {}
        self.closing = False
        self._reader = RecordReader(mergeTypes=(_STDOUT,))
        self._out: list[bytes] = []
        self._error: RemoteProtocolError | None = None

    # --- sending ---------------------------------------------------------------

    def dataToSend(self) -> list[bytes]:
        """
        Take the chunks queued by the send methods.

        @return: byte strings to write in order (possibly empty).
        """
        out = self._out
        self._out = []
        return out

    def nextRequestId(self) -> int:
        """
        The smallest request id that is not active, as the spec asks (ids are
        kept small and reused).

        @raise LocalProtocolError: if all 65535 ids are active.
        """
        requestId = 1
        while requestId in self.requests:
            requestId += 1
        if requestId > MAX_REQUEST_ID:
            raise LocalProtocolError("all 65535 request ids are active")
        return requestId

    def beginRequest(
        self, requestId: int, role: int = Role.RESPONDER, keepConnection: bool = True
    ) -> None:
        """
        Queue BEGIN_REQUEST: the request becomes active in state C{PARAMS}.

        @param requestId: 1..65535, not active.
        @param role: a L{Role} (other values are sent as given; the application
            may refuse them with UNKNOWN_ROLE).
        @param keepConnection: set C{FCGI_KEEP_CONN}; without it the
            application closes the connection after this request.
        @raise LocalProtocolError: for an id out of range or already active,
            or when the connection is closing.
        """
        if not 1 <= requestId <= MAX_REQUEST_ID:
            raise LocalProtocolError(
                f"cannot begin request {requestId}: ids are 1..{MAX_REQUEST_ID}"
            )
        if requestId in self.requests:
            raise LocalProtocolError(
                f"cannot begin request {requestId}: it is already active "
                f"({self.requests[requestId].describe()})"
            )
        if self.closing:
            raise LocalProtocolError(
                f"cannot begin request {requestId}: an earlier request was sent "
                "without FCGI_KEEP_CONN, so the application closes the connection"
            )
        if not 0 <= role <= 0xFFFF:
            raise LocalProtocolError(f"role {role} out of range 0..65535")
        self.requests[requestId] = RequestState(requestId, role, keepConnection)
        if not keepConnection:
            self.closing = True
        self._out.append(
            _beginRecord(requestId, role, FCGI_KEEP_CONN if keepConnection else 0)
        )

    def sendRequest(
        self,
        requestId: int,
        role: int,
        keepConnection: bool,
        pairs: Iterable[tuple[bytes, bytes]],
        stdin: bytes = b"",
    ) -> None:
        """
        Queue a whole Responder or Authorizer request as one byte string:
        what L{beginRequest}, L{sendParams}, L{endParams}, L{sendStdin} with
        C{stdin} and L{endStdin} would queue one after the other.  The request
        moves to C{DONE}.

        @raise LocalProtocolError: as L{beginRequest}; for the Filter role,
            whose DATA stream follows STDIN.
        """
        if role == _FILTER:
            raise LocalProtocolError(
                "sendRequest cannot send a Filter request (its DATA stream follows)"
            )
        out = self._out
        self.beginRequest(requestId, role, keepConnection)
        parts = [out.pop()]
        parts += streamChunks(_PARAMS, requestId, encodePairs(pairs))
        parts.append(_endRecord(_PARAMS, requestId))
        if stdin:
            parts += streamChunks(_STDIN, requestId, stdin)
        parts.append(_endRecord(_STDIN, requestId))
        out.append(b"".join(parts))
        self.requests[requestId].input = InputState.DONE

    def sendParams(self, requestId: int, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        """
        Queue name-value pairs as PARAMS records.  The encoded pairs are one
        stream: a pair may straddle records, so any size of name or value works.

        @raise LocalProtocolError: if the request is not in state C{PARAMS}.
        """
        self._transition(requestId, "sendParams")
        self._out += streamChunks(RecordType.PARAMS, requestId, encodePairs(pairs))

    def endParams(self, requestId: int) -> None:
        """
        Queue the empty PARAMS record; the request moves to C{STDIN}.

        @raise LocalProtocolError: if the request is not in state C{PARAMS}.
        """
        self._transition(requestId, "endParams")
        self._out.append(_endRecord(_PARAMS, requestId))

    def sendStdin(self, requestId: int, data: bytes) -> None:
        """
        Queue body bytes as STDIN records (none for empty C{data}).

        @raise LocalProtocolError: if the request is not in state C{STDIN}.
        """
        self._transition(requestId, "sendStdin")
        self._out += streamChunks(RecordType.STDIN, requestId, data)

    def endStdin(self, requestId: int) -> None:
        """
        Queue the empty STDIN record; the request moves to C{DONE}, or to
        C{DATA} for a Filter.

        @raise LocalProtocolError: if the request is not in state C{STDIN}.
        """
        state = self._transition(requestId, "endStdin")
        if state.role == _FILTER:
            state.input = InputState.DATA
        self._out.append(_endRecord(_STDIN, requestId))

    def sendData(self, requestId: int, data: bytes) -> None:
        """
        Queue Filter file data as DATA records (none for empty C{data}).

        @raise LocalProtocolError: if the request is not a Filter in state
            C{DATA}.
        """
        self._transition(requestId, "sendData")
        self._out += streamChunks(RecordType.DATA, requestId, data)

    def endData(self, requestId: int) -> None:
        """
        Queue the empty DATA record; the request moves to C{DONE}.

        @raise LocalProtocolError: if the request is not a Filter in state
            C{DATA}.
        """
        self._transition(requestId, "endData")
        self._out += streamEndChunks(RecordType.DATA, requestId)

    def abortRequest(self, requestId: int) -> None:
        """
        Queue ABORT_REQUEST.  The request stays active until the application
        answers with END_REQUEST; input may no longer be sent for it.

        @raise LocalProtocolError: if the request is not active or was
            already aborted.
        """
        state = self._active(requestId, "abort")
        if state.aborted:
            raise LocalProtocolError(
                f"cannot abort request {requestId}: already aborted"
            )
        state.aborted = True
        self._out += recordChunks(RecordType.ABORT_REQUEST, requestId)

    def getValues(self, names: Iterable[bytes]) -> None:
        """
        Queue GET_VALUES asking for C{names}, e.g. L{FCGI_MAX_CONNS}.

        @raise LocalProtocolError: if the names do not fit in one record.
        """
        content = encodePairs((name, b"") for name in names)
        if len(content) > FCGI_MAX_CONTENT_LENGTH:
            raise LocalProtocolError(
                f"GET_VALUES of {len(content)} bytes does not fit in one record"
            )
        self._out += recordChunks(RecordType.GET_VALUES, FCGI_NULL_REQUEST_ID, content)

    def _active(self, requestId: int, what: str) -> RequestState:
        state = self.requests.get(requestId)
        if state is None:
            raise LocalProtocolError(
                f"cannot {what} for request {requestId}: it is not active"
            )
        return state

    def _transition(self, requestId: int, action: str) -> RequestState:
        state = self._active(requestId, action)
        if state.aborted:
            raise LocalProtocolError(
                f"cannot {action} for request {requestId}: it was aborted"
            )
        allowed, nextState = _INPUT_TRANSITIONS[action]
        if state.input is not allowed:
            raise LocalProtocolError(
                f"cannot {action} for request {requestId} in state "
                f"{state.describe()}"
            )
        state.input = nextState
        return state

    # --- receiving -------------------------------------------------------------

    @property
    def atRecordBoundary(self) -> bool:
        """
        C{True} when no partial record is held, so the application may close
        the connection here without breaking a record.
        """
        return self._reader.atRecordBoundary

    def checkClosed(self) -> None:
        """
        The application closed the connection: check it did not do so in the
        middle of a record.

        @raise RemoteProtocolError: if a record was cut short.
        """
        if self._error is None and not self._reader.atRecordBoundary:
            self._error = RemoteProtocolError(
                "connection closed inside a record: "
                + self._reader.describePartial()
            )
        if self._error is not None:
            raise self._error

    def receiveData(self, data: bytes) -> list[Event]:
        """
        Feed bytes from the application.

        @return: the events the bytes complete, in order; consecutive
            STDOUT records of one request that arrive whole in one chunk come
            as one L{StdoutReceived}.
        @raise RemoteProtocolError: if the application broke the protocol;
            events before the bad record are lost with it, since the
            connection cannot be trusted any more.
        """
        if self._error is not None:
            raise self._error
        try:
            try:
                records = self._reader.feedTuples(data)
            except RemoteProtocolError as e:
                raise RemoteProtocolError(
                    f"{e} (active requests: {self._describeActive()})"
                ) from e
            events: list[Event] = []
            for recordType, requestId, content in records:
                self._receiveRecord(recordType, requestId, content, events)
            return events
        except RemoteProtocolError as e:
            self._error = e
            raise

    def _describeActive(self) -> str:
        return ", ".join(str(i) for i in sorted(self.requests)) or "none"

    def _receiveRecord(
        self, recordType: int, requestId: int, content: bytes, events: list[Event]
    ) -> None:
        if recordType in _REQUEST_OUTPUT_TYPES:
            state = self.requests.get(requestId)
            if state is None:
                raise RemoteProtocolError(
                    f"received {recordTypeName(recordType)} record for request "
                    f"{requestId}, which is not active "
                    f"(active requests: {self._describeActive()})"
                )
            if recordType == _STDOUT:
                if state.stdout is _ENDED:
                    raise RemoteProtocolError(
                        f"received STDOUT record for request {requestId} in state "
                        f"{state.describe()}: the stream was already ended"
                    )
                if content:
                    events.append(StdoutReceived(requestId=requestId, data=content))
                else:
                    state.stdout = _ENDED
                    events.append(_stdoutEnded(requestId))
            elif recordType == _STDERR:
                if state.stderr is _ENDED:
                    raise RemoteProtocolError(
                        f"received STDERR record for request {requestId} in state "
                        f"{state.describe()}: the stream was already ended"
                    )
                if content:
                    events.append(StderrReceived(requestId=requestId, data=content))
                else:
                    state.stderr = _ENDED
                    events.append(StderrEnded(requestId=requestId))
            else:
                appStatus, protocolStatus = decodeEndRequestBody(content)
                del self.requests[requestId]
                if not state.keepConnection:
                    self.closing = True
                events.append(_requestEnded(requestId, appStatus, protocolStatus))
        elif recordType in _MANAGEMENT_OUTPUT_TYPES:
            if requestId != FCGI_NULL_REQUEST_ID:
                raise RemoteProtocolError(
                    f"received {recordTypeName(recordType)} record for request "
                    f"{requestId} (management records use request id 0)"
                )
            if recordType == RecordType.GET_VALUES_RESULT:
                try:
                    pairs = decodePairs(
                        content,
                        what="GET_VALUES_RESULT",
                        maxSize=len(content),
                    )
                except RemoteProtocolError as e:
                    raise RemoteProtocolError(
                        f"received malformed GET_VALUES_RESULT record for request 0: {e}"
                    ) from e
                events.append(ValuesReceived(values=dict(pairs)))
            else:
                events.append(
                    UnknownTypeReceived(recordType=decodeUnknownTypeBody(content))
                )
        else:
            state = self.requests.get(requestId)
            where = (
                f"in state {state.describe()}" if state is not None else "(not active)"
            )
            raise RemoteProtocolError(
                f"received {recordTypeName(recordType)} record for request "
                f"{requestId} {where}: an application never sends this type"
            )


def describeProtocolStatus(protocolStatus: int) -> str:
    """
    Name a protocolStatus for messages, also an unknown one.
    """
    try:
        return ProtocolStatus(protocolStatus).name
    except ValueError:
        return f"protocolStatus {protocolStatus}"
