"""
Tests for L{txfastcgi.fcgi.client}: the sans-IO web-server side of a connection.
"""

from __future__ import annotations

import ast
import inspect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import strategies
from txfastcgi.fcgi import client as clientModule
from txfastcgi.fcgi.client import ClientConnection, InputState, OutputState
from txfastcgi.fcgi.constants import ProtocolStatus, RecordType, Role
from txfastcgi.fcgi.errors import LocalProtocolError, RemoteProtocolError
from txfastcgi.fcgi.events import (
    Event,
    ParamsReceived,
    RequestEnded,
    StderrEnded,
    StderrReceived,
    StdinEnded,
    StdinReceived,
    StdoutEnded,
    StdoutReceived,
    UnknownTypeReceived,
    ValuesReceived,
)
from txfastcgi.fcgi.server import ServerConnection
from txfastcgi.fcgi.records import (
    STREAM_CHUNK_SIZE,
    PairDecoder,
    encodeEndRequestBody,
    encodePairs,
    encodeRecord,
    readRecords,
)


def sent(conn: ClientConnection) -> bytes:
    """
    Join what C{conn} has queued to send.
    """
    return b"".join(conn.dataToSend())


def started(requestId: int = 1, role: int = Role.RESPONDER) -> ClientConnection:
    """
    A connection with one request begun, its output drained.
    """
    conn = ClientConnection()
    conn.beginRequest(requestId, role)
    conn.dataToSend()
    return conn


RESPONSE = (
    encodeRecord(RecordType.STDOUT, 1, b"Content-Type: text/plain\r\n\r\nhello")
    + encodeRecord(RecordType.STDERR, 1, b"warning\n")
    + encodeRecord(RecordType.STDOUT, 1, b" world")
    + encodeRecord(RecordType.STDOUT, 1)
    + encodeRecord(RecordType.STDERR, 1)
    + encodeRecord(RecordType.END_REQUEST, 1, encodeEndRequestBody(7, 0))
)


def collapse(events: list[Event]) -> list[Event]:
    """
    Merge adjacent data events of one stream, so event lists compare
    independently of how the bytes were split.
    """
    out: list[Event] = []
    for event in events:
        if (
            out
            and type(event) is type(out[-1])
            and isinstance(event, (StdoutReceived, StderrReceived))
        ):
            previous = out.pop()
            assert isinstance(previous, (StdoutReceived, StderrReceived))
            event = type(event)(
                requestId=event.requestId, data=previous.data + event.data
            )
        out.append(event)
    return out


EXPECTED = [
    StdoutReceived(requestId=1, data=b"Content-Type: text/plain\r\n\r\nhello"),
    StderrReceived(requestId=1, data=b"warning\n"),
    StdoutReceived(requestId=1, data=b" world"),
    StdoutEnded(requestId=1),
    StderrEnded(requestId=1),
    RequestEnded(requestId=1, appStatus=7, protocolStatus=0),
]


def test_noTwistedImport() -> None:
    """
    The sans-IO client module imports nothing from Twisted.
    """
    tree = ast.parse(inspect.getsource(clientModule))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        assert not any(n.split(".")[0] == "twisted" for n in names), names


def test_exactBytesOfResponderRequest() -> None:
    """
    A responder request with keep-alive, one param, a body and the end of
    every stream is encoded exactly as the spec's layout says.
    """
    conn = ClientConnection()
    conn.beginRequest(1, Role.RESPONDER, keepConnection=True)
    conn.sendParams(1, [(b"SERVER_PORT", b"80")])
    conn.endParams(1)
    conn.sendStdin(1, b"abc")
    conn.endStdin(1)
    assert sent(conn) == (
        b"\x01\x01\x00\x01\x00\x08\x00\x00"
        b"\x00\x01\x01\x00\x00\x00\x00\x00"
        b"\x01\x04\x00\x01\x00\x0f\x01\x00"
        b"\x0b\x02SERVER_PORT80\x00"
        b"\x01\x04\x00\x01\x00\x00\x00\x00"
        b"\x01\x05\x00\x01\x00\x03\x05\x00abc\x00\x00\x00\x00\x00"
        b"\x01\x05\x00\x01\x00\x00\x00\x00"
    )
    assert conn.requests[1].input is InputState.DONE


def test_beginWithoutKeepConnection() -> None:
    """
    Without keep-alive BEGIN_REQUEST carries flags 0 and the connection is
    closing: no other request may begin.
    """
    conn = ClientConnection()
    conn.beginRequest(3, Role.AUTHORIZER, keepConnection=False)
    assert sent(conn) == bytes.fromhex("0101000300080000 0002000000000000")
    assert conn.closing
    with pytest.raises(LocalProtocolError, match="without FCGI_KEEP_CONN"):
        conn.beginRequest(4)


def test_abortAndGetValuesBytes() -> None:
    """
    ABORT_REQUEST is an empty record for the request; GET_VALUES is a
    management record with empty values.
    """
    conn = started(2)
    conn.abortRequest(2)
    assert sent(conn) == bytes.fromhex("0102000200000000")
    conn.getValues([b"FCGI_MAX_CONNS", b"FCGI_MPXS_CONNS"])
    content = encodePairs([(b"FCGI_MAX_CONNS", b""), (b"FCGI_MPXS_CONNS", b"")])
    assert sent(conn) == encodeRecord(RecordType.GET_VALUES, 0, content)


def test_filterSendsData() -> None:
    """
    A Filter request goes PARAMS, STDIN, DATA, DONE.
    """
    conn = started(1, Role.FILTER)
    conn.endParams(1)
    conn.endStdin(1)
    assert conn.requests[1].input is InputState.DATA
    conn.sendData(1, b"file")
    conn.endData(1)
    assert conn.requests[1].input is InputState.DONE
    records = readRecords(sent(conn))
    assert [(r.type, r.content) for r in records] == [
        (RecordType.PARAMS, b""),
        (RecordType.STDIN, b""),
        (RecordType.DATA, b"file"),
        (RecordType.DATA, b""),
    ]


@pytest.mark.parametrize("valueLength", [0, 127, 128, 65535, 200_000])
def test_paramsSplitAcrossRecords(valueLength: int) -> None:
    """
    A pair of any size is sent as one PARAMS stream whose records each fit,
    and the concatenated stream decodes back to the pairs, one pair
    straddling records where needed.
    """
    conn = started()
    pairs = [(b"A", b"x" * valueLength), (b"B" * 300, b"y")]
    conn.sendParams(1, pairs)
    conn.endParams(1)
    records = readRecords(sent(conn))
    assert all(len(r.content) <= 65535 for r in records)
    assert records[-1].content == b""
    assert all(r.content for r in records[:-1])
    decoder = PairDecoder()
    got = []
    for r in records:
        got += decoder.feed(r.content)
    decoder.finish()
    assert got == pairs
    if valueLength > STREAM_CHUNK_SIZE:
        assert len(records) > 2


@pytest.mark.parametrize(
    "setup, call, message",
    [
        (lambda c: None, lambda c: c.sendStdin(9, b"x"), "request 9: it is not active"),
        (lambda c: None, lambda c: c.beginRequest(1), "already active"),
        (lambda c: None, lambda c: c.beginRequest(0), "ids are 1..65535"),
        (lambda c: None, lambda c: c.beginRequest(65536), "ids are 1..65535"),
        (lambda c: None, lambda c: c.sendStdin(1, b"x"), "sendStdin for request 1 in state input PARAMS"),
        (lambda c: c.endParams(1), lambda c: c.sendParams(1, []), "sendParams for request 1 in state input STDIN"),
        (lambda c: (c.endParams(1), c.endStdin(1)), lambda c: c.sendStdin(1, b"x"), "in state input DONE"),
        (lambda c: (c.endParams(1), c.endStdin(1)), lambda c: c.endStdin(1), "endStdin"),
        (lambda c: c.endParams(1), lambda c: c.sendData(1, b"x"), "sendData for request 1"),
        (lambda c: c.abortRequest(1), lambda c: c.abortRequest(1), "already aborted"),
        (lambda c: c.abortRequest(1), lambda c: c.endParams(1), "it was aborted"),
        (lambda c: None, lambda c: c.abortRequest(2), "abort for request 2"),
        (lambda c: None, lambda c: c.getValues([b"x" * 70000]), "does not fit"),
    ],
)
def test_localMisuse(setup, call, message) -> None:  # type: ignore[no-untyped-def]
    """
    Misusing the API raises L{LocalProtocolError} naming the request and state.
    """
    conn = started()
    setup(conn)
    with pytest.raises(LocalProtocolError, match=message):
        call(conn)


def test_nextRequestIdReusesSmallIds() -> None:
    """
    L{ClientConnection.nextRequestId} picks the smallest free id, and an id is
    free again after its END_REQUEST.
    """
    conn = ClientConnection()
    assert conn.nextRequestId() == 1
    conn.beginRequest(1)
    conn.beginRequest(2)
    assert conn.nextRequestId() == 3
    conn.receiveData(encodeRecord(RecordType.END_REQUEST, 1, encodeEndRequestBody(0, 0)))
    assert conn.nextRequestId() == 1


def test_responseWhole() -> None:
    """
    A whole response gives its events in order and frees the id.
    """
    conn = started()
    assert conn.receiveData(RESPONSE) == EXPECTED
    assert conn.requests == {}
    assert conn.atRecordBoundary


@pytest.mark.parametrize("split", range(1, len(RESPONSE)))
def test_responseEverySplitInTwo(split: int) -> None:
    """
    Every split of the response in two gives the same events.
    """
    conn = started()
    events = conn.receiveData(RESPONSE[:split]) + conn.receiveData(RESPONSE[split:])
    assert collapse(events) == EXPECTED


def test_responseByteByByte() -> None:
    """
    Feeding the response one byte at a time gives the same events.
    """
    conn = started()
    events: list[Event] = []
    for i in range(len(RESPONSE)):
        events += conn.receiveData(RESPONSE[i : i + 1])
    assert collapse(events) == EXPECTED


def test_stateTracksStreams() -> None:
    """
    The STDOUT and STDERR states go OPEN → ENDED as their empty records arrive.
    """
    conn = started()
    conn.receiveData(encodeRecord(RecordType.STDOUT, 1))
    assert conn.requests[1].stdout is OutputState.ENDED
    assert conn.requests[1].stderr is OutputState.OPEN


def test_multiplexedResponses() -> None:
    """
    Records of two active requests may interleave, and either may end first.
    """
    conn = ClientConnection()
    conn.beginRequest(1)
    conn.beginRequest(2)
    events = conn.receiveData(
        encodeRecord(RecordType.STDOUT, 2, b"two")
        + encodeRecord(RecordType.STDOUT, 1, b"one")
        + encodeRecord(RecordType.END_REQUEST, 2, encodeEndRequestBody(0, 0))
    )
    assert events == [
        StdoutReceived(requestId=2, data=b"two"),
        StdoutReceived(requestId=1, data=b"one"),
        RequestEnded(requestId=2, appStatus=0, protocolStatus=0),
    ]
    assert list(conn.requests) == [1]


def test_managementRecords() -> None:
    """
    GET_VALUES_RESULT gives a dict, UNKNOWN_TYPE the type it names.
    """
    conn = ClientConnection()
    content = encodePairs([(b"FCGI_MAX_CONNS", b"10"), (b"FCGI_MPXS_CONNS", b"0")])
    events = conn.receiveData(
        encodeRecord(RecordType.GET_VALUES_RESULT, 0, content)
        + encodeRecord(RecordType.UNKNOWN_TYPE, 0, bytes([42]) + bytes(7))
    )
    assert events == [
        ValuesReceived(values={b"FCGI_MAX_CONNS": b"10", b"FCGI_MPXS_CONNS": b"0"}),
        UnknownTypeReceived(recordType=42),
    ]


def test_endRequestOfKeepConnFalseMarksClosing() -> None:
    """
    END_REQUEST of a request without keep-alive leaves the connection closing.
    """
    conn = ClientConnection()
    conn.beginRequest(1, keepConnection=False)
    conn.receiveData(encodeRecord(RecordType.END_REQUEST, 1, encodeEndRequestBody(0, 0)))
    assert conn.closing


@pytest.mark.parametrize(
    "data, message",
    [
        (encodeRecord(RecordType.STDOUT, 2, b"x"), "STDOUT record for request 2, which is not active"),
        (encodeRecord(RecordType.STDERR, 5, b"x"), "STDERR record for request 5, which is not active"),
        (encodeRecord(RecordType.END_REQUEST, 3, bytes(8)), "END_REQUEST record for request 3, which is not active"),
        (encodeRecord(RecordType.STDOUT, 1) + encodeRecord(RecordType.STDOUT, 1, b"x"), "STDOUT record for request 1 in state .*stdout ENDED.*already ended"),
        (encodeRecord(RecordType.STDOUT, 1) + encodeRecord(RecordType.STDOUT, 1), "already ended"),
        (encodeRecord(RecordType.STDERR, 1) + encodeRecord(RecordType.STDERR, 1, b"x"), "STDERR record for request 1 .*already ended"),
        (bytes.fromhex("0103000100050300") + bytes(8), "END_REQUEST record of 5 bytes .must be 8. .active requests: 1"),
        (encodeRecord(RecordType.BEGIN_REQUEST, 1, bytes(8)), "BEGIN_REQUEST record for request 1 in state input PARAMS.*never sends"),
        (encodeRecord(RecordType.PARAMS, 1, b""), "PARAMS record .*never sends"),
        (encodeRecord(RecordType.STDIN, 1, b"x"), "STDIN record .*never sends"),
        (encodeRecord(RecordType.DATA, 1, b"x"), "DATA record .*never sends"),
        (encodeRecord(RecordType.ABORT_REQUEST, 1), "ABORT_REQUEST record .*never sends"),
        (encodeRecord(RecordType.GET_VALUES, 0, b""), "GET_VALUES record for request 0 .not active.: an application never sends"),
        (encodeRecord(42, 1, b"x"), "type 42 record"),
        (encodeRecord(RecordType.GET_VALUES_RESULT, 1, b""), "GET_VALUES_RESULT record for request 1 .management"),
        (encodeRecord(RecordType.GET_VALUES_RESULT, 0, b"\x05\x01ab" + bytes(4) + b"\x81"), "malformed GET_VALUES_RESULT.*overruns"),
        (encodeRecord(RecordType.GET_VALUES_RESULT, 0, b"\x8f\xff\xff\xff\x01" + b"x" * 10), "malformed GET_VALUES_RESULT.*declares"),
        (b"\x02\x06\x00\x01\x00\x00\x00\x00", "protocol version 2"),
        (b"HTTP/1.1 200 OK\r\n", "protocol version 72"),
    ],
)
def test_remoteProtocolErrors(data: bytes, message: str) -> None:
    """
    Each way an application can break the protocol raises
    L{RemoteProtocolError} naming the record type, request id and state, and
    the connection stays broken.
    """
    conn = started()
    with pytest.raises(RemoteProtocolError, match=message):
        conn.receiveData(data)
    with pytest.raises(RemoteProtocolError, match=message):
        conn.receiveData(b"")


def test_closedInsideRecord() -> None:
    """
    L{ClientConnection.checkClosed} raises when the connection ended inside a
    record, and not at a record boundary.
    """
    conn = started()
    conn.receiveData(encodeRecord(RecordType.STDOUT, 1, b"abc"))
    conn.checkClosed()
    conn.receiveData(encodeRecord(RecordType.STDOUT, 1, b"abcdef")[:10])
    with pytest.raises(RemoteProtocolError, match="closed inside a record: STDOUT"):
        conn.checkClosed()


def test_unknownProtocolStatusPassesThrough() -> None:
    """
    END_REQUEST with any protocolStatus ends the request; interpreting the
    status is the caller's business.
    """
    conn = started()
    events = conn.receiveData(
        encodeRecord(RecordType.END_REQUEST, 1, encodeEndRequestBody(-1, ProtocolStatus.OVERLOADED))
    )
    assert events == [RequestEnded(requestId=1, appStatus=0xFFFFFFFF, protocolStatus=2)]
    assert clientModule.describeProtocolStatus(2) == "OVERLOADED"
    assert clientModule.describeProtocolStatus(9) == "protocolStatus 9"


# --- round trips with the application side --------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    pairs=strategies.pairLists(),
    body=st.binary(max_size=200_000),
    output=st.lists(st.binary(min_size=1, max_size=70_000), max_size=4),
    requestId=st.integers(1, 0xFFFF),
    chunk=st.integers(1, 70_000),
)
def test_roundTripWithServerConnection(
    pairs: list[tuple[bytes, bytes]],
    body: bytes,
    output: list[bytes],
    requestId: int,
    chunk: int,
) -> None:
    """
    What L{ClientConnection} sends, L{ServerConnection} (written separately,
    for the application side) reads back as the same params and body; what
    the server answers, the client reads back as the same output, however
    the bytes are cut.
    """
    client = ClientConnection()
    server = ServerConnection()
    client.beginRequest(requestId, Role.RESPONDER)
    client.sendParams(requestId, pairs)
    client.endParams(requestId)
    client.sendStdin(requestId, body)
    client.endStdin(requestId)
    wire = sent(client)
    serverEvents = []
    for start in range(0, len(wire), chunk):
        serverEvents += server.receiveData(wire[start : start + chunk])
    params = [e for e in serverEvents if isinstance(e, ParamsReceived)]
    assert [list(p.params) for p in params] == [pairs]
    assert b"".join(e.data for e in serverEvents if isinstance(e, StdinReceived)) == body
    assert isinstance(serverEvents[-1], StdinEnded)
    for data in output:
        server.sendStdout(requestId, data)
    server.endRequest(requestId, appStatus=5)
    answer = b"".join(server.dataToSend())
    events: list[Event] = []
    for start in range(0, len(answer), chunk):
        events += client.receiveData(answer[start : start + chunk])
    assert b"".join(e.data for e in events if isinstance(e, StdoutReceived)) == b"".join(output)
    assert events[-2:] == [
        StdoutEnded(requestId=requestId),
        RequestEnded(requestId=requestId, appStatus=5, protocolStatus=0),
    ]
    assert client.requests == {}


@given(
    params=st.lists(
        st.tuples(st.binary(max_size=300), st.binary(max_size=70000)), max_size=4
    ),
    stdin=st.binary(max_size=140000),
    role=st.sampled_from([Role.RESPONDER, Role.AUTHORIZER]),
    keep=st.booleans(),
)
@settings(max_examples=40, deadline=None)
def test_sendRequestIsTheSeparateCallsInOne(
    params: list[tuple[bytes, bytes]], stdin: bytes, role: Role, keep: bool
) -> None:
    """
    C{sendRequest} queues one byte string equal to what C{beginRequest},
    C{sendParams}, C{endParams}, C{sendStdin} and C{endStdin} queue, and
    leaves the request with every input stream closed.
    """
    separate = ClientConnection()
    separate.beginRequest(3, role, keep)
    separate.sendParams(3, params)
    separate.endParams(3)
    separate.sendStdin(3, stdin)
    separate.endStdin(3)
    together = ClientConnection()
    together.sendRequest(3, role, keep, params, stdin)
    chunks = together.dataToSend()
    assert len(chunks) == 1
    assert chunks[0] == sent(separate)
    assert together.requests[3].input is InputState.DONE
    assert together.closing is (not keep)
    with pytest.raises(LocalProtocolError):
        together.sendStdin(3, b"more")


def test_sendRequestRefusesFilterAndActiveIds() -> None:
    """
    A Filter request cannot be sent whole (its DATA follows STDIN), and an
    active id cannot be begun again; nothing is queued either way.
    """
    conn = ClientConnection()
    with pytest.raises(LocalProtocolError, match="Filter"):
        conn.sendRequest(1, Role.FILTER, True, [])
    assert conn.requests == {}
    conn.sendRequest(1, Role.RESPONDER, True, [])
    conn.dataToSend()
    with pytest.raises(LocalProtocolError, match="already active"):
        conn.sendRequest(1, Role.RESPONDER, True, [])
    assert conn.dataToSend() == []


def test_stdoutRecordsOfOneReadMerged() -> None:
    """
    Consecutive STDOUT records of one request in one read come as one
    event; records of another request or of another type end the run.
    """
    conn = ClientConnection()
    conn.beginRequest(1)
    conn.beginRequest(2)
    data = (
        encodeRecord(RecordType.STDOUT, 1, b"a")
        + encodeRecord(RecordType.STDOUT, 1, b"b")
        + encodeRecord(RecordType.STDOUT, 1, b"c")
        + encodeRecord(RecordType.STDOUT, 2, b"x")
        + encodeRecord(RecordType.STDOUT, 2, b"y")
        + encodeRecord(RecordType.STDERR, 1, b"e")
        + encodeRecord(RecordType.STDOUT, 1, b"d")
        + encodeRecord(RecordType.STDOUT, 1)
    )
    assert conn.receiveData(data) == [
        StdoutReceived(requestId=1, data=b"abc"),
        StdoutReceived(requestId=2, data=b"xy"),
        StderrReceived(requestId=1, data=b"e"),
        StdoutReceived(requestId=1, data=b"d"),
        StdoutEnded(requestId=1),
    ]
