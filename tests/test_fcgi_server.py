"""
Tests for L{txfastcgi.fcgi.server.ServerConnection}, the sans-IO application
side of a FastCGI connection.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from txfastcgi.fcgi.client import ClientConnection
from txfastcgi.fcgi.constants import ProtocolStatus, RecordType, Role
from txfastcgi.fcgi.errors import LocalProtocolError, RemoteProtocolError
from txfastcgi.fcgi.events import (
    DataEnded,
    DataReceived,
    Event,
    ParamsReceived,
    RequestAborted,
    RequestEnded,
    RequestStarted,
    StderrReceived,
    StdinEnded,
    StdinReceived,
    StdoutReceived,
    ValuesRequested,
)
from txfastcgi.fcgi.records import (
    encodeBeginRequestBody,
    encodeEndRequestBody,
    encodePairs,
    encodeRecord,
    readRecords,
    Record,
)
from txfastcgi.fcgi.server import ServerConnection


def begin(requestId: int = 1, role: int = Role.RESPONDER, flags: int = 0) -> bytes:
    """
    A BEGIN_REQUEST record.
    """
    return encodeRecord(
        RecordType.BEGIN_REQUEST, requestId, encodeBeginRequestBody(role, flags)
    )


def params(requestId: int = 1, pairs: dict[bytes, bytes] | None = None) -> bytes:
    """
    A PARAMS stream (one record and its terminator).
    """
    if pairs is None:
        pairs = {b"REQUEST_METHOD": b"GET"}
    return encodeRecord(RecordType.PARAMS, requestId, encodePairs(pairs.items())) + (
        encodeRecord(RecordType.PARAMS, requestId)
    )


def rec(recordType: int, requestId: int = 1, content: bytes = b"") -> bytes:
    """
    One record.
    """
    return encodeRecord(recordType, requestId, content)


def sent(conn: ServerConnection) -> list[Record]:
    """
    The records the connection queued.
    """
    return readRecords(b"".join(conn.dataToSend()))


def endRecord(requestId: int, appStatus: int = 0, status: int = 0) -> Record:
    """
    The expected END_REQUEST record.
    """
    return Record(
        RecordType.END_REQUEST, requestId, encodeEndRequestBody(appStatus, status)
    )


RESPONDER_INPUT = (
    begin(1, Role.RESPONDER, 1)
    + params(1, {b"A": b"1", b"LONG": b"x" * 300})
    + rec(RecordType.STDIN, 1, b"hello ")
    + rec(RecordType.STDIN, 1, b"world")
    + rec(RecordType.STDIN, 1)
)

RESPONDER_EVENTS: list[Event] = [
    RequestStarted(requestId=1, role=Role.RESPONDER, keepConnection=True),
    ParamsReceived(requestId=1, params=((b"A", b"1"), (b"LONG", b"x" * 300))),
    StdinReceived(requestId=1, data=b"hello "),
    StdinReceived(requestId=1, data=b"world"),
    StdinEnded(requestId=1),
]


def normalise(events: list[Event]) -> list[Event]:
    """
    Merge adjacent StdinReceived/DataReceived pieces, whose split depends on
    how the bytes arrived.
    """
    out: list[Event] = []
    for event in events:
        if out and type(event) is type(out[-1]) and isinstance(
            event, (StdinReceived, DataReceived)
        ):
            previous = out.pop()
            assert isinstance(previous, (StdinReceived, DataReceived))
            out.append(type(event)(requestId=event.requestId, data=previous.data + event.data))
        else:
            out.append(event)
    return out


def test_noTwistedImport() -> None:
    """
    The sans-IO module imports nothing from Twisted.
    """
    import txfastcgi.fcgi.server as module

    tree = ast.parse(Path(module.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("twisted") for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("twisted")


def test_responderWhole() -> None:
    """
    A whole responder request fed at once gives its events in order.
    """
    conn = ServerConnection()
    assert normalise(conn.receiveData(RESPONDER_INPUT)) == normalise(RESPONDER_EVENTS)
    assert conn.dataToSend() == []


def test_everySplit() -> None:
    """
    Every two-piece split of the input, and one byte at a time, give the same
    events (STDIN pieces concatenated).
    """
    expected = normalise(RESPONDER_EVENTS)
    for cut in range(len(RESPONDER_INPUT) + 1):
        conn = ServerConnection()
        events = conn.receiveData(RESPONDER_INPUT[:cut])
        events += conn.receiveData(RESPONDER_INPUT[cut:])
        assert normalise(events) == expected, cut
    conn = ServerConnection()
    events = []
    for i in range(len(RESPONDER_INPUT)):
        events += conn.receiveData(RESPONDER_INPUT[i : i + 1])
    assert normalise(events) == expected


def test_responseExactBytes() -> None:
    """
    STDOUT, STDERR and END_REQUEST are encoded exactly: padded to 8 bytes, both
    streams closed with an empty record, then the 16-byte END_REQUEST.
    """
    conn = ServerConnection()
    conn.receiveData(begin(1) + params(1))
    conn.sendStdout(1, b"Status: 200 OK\r\n\r\nhi")
    conn.sendStderr(1, b"oops")
    conn.endRequest(1, appStatus=3)
    data = b"".join(conn.dataToSend())
    assert data == (
        b"\x01\x06\x00\x01\x00\x14\x04\x00Status: 200 OK\r\n\r\nhi\x00\x00\x00\x00"
        b"\x01\x07\x00\x01\x00\x04\x04\x00oops\x00\x00\x00\x00"
        b"\x01\x06\x00\x01\x00\x00\x00\x00"
        b"\x01\x07\x00\x01\x00\x00\x00\x00"
        b"\x01\x03\x00\x01\x00\x08\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00"
    )


def test_emptyStdoutAlwaysSent() -> None:
    """
    A request that wrote nothing still gets its empty STDOUT, and no STDERR.
    """
    conn = ServerConnection()
    conn.receiveData(begin(7) + params(7))
    conn.endRequest(7)
    assert b"".join(conn.dataToSend()) == (
        b"\x01\x06\x00\x07\x00\x00\x00\x00"
        b"\x01\x03\x00\x07\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    )


def test_largeStdoutSplit() -> None:
    """
    STDOUT larger than one record is split into several records.
    """
    conn = ServerConnection()
    conn.receiveData(begin(1) + params(1))
    conn.sendStdout(1, b"z" * 200000)
    records = sent(conn)
    assert all(r.type == RecordType.STDOUT for r in records)
    assert b"".join(r.content for r in records) == b"z" * 200000


@pytest.mark.parametrize(
    "multiplex, names, expected",
    [
        (
            False,
            [b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS"],
            b"\x0e\x02FCGI_MAX_CONNS10\x0d\x02FCGI_MAX_REQS20\x0f\x01FCGI_MPXS_CONNS0",
        ),
        (True, [b"FCGI_MPXS_CONNS"], b"\x0f\x01FCGI_MPXS_CONNS1"),
        (True, [b"NOT_A_NAME", b"FCGI_MAX_REQS"], b"\x0d\x02FCGI_MAX_REQS20"),
        (True, [b"NOT_A_NAME"], b""),
    ],
)
def test_getValues(multiplex: bool, names: list[bytes], expected: bytes) -> None:
    """
    GET_VALUES is answered with the configured values of the names asked for
    that the connection knows, in a padded GET_VALUES_RESULT record.
    """
    conn = ServerConnection(maxConns=10, maxReqs=20, multiplex=multiplex)
    query = encodePairs((n, b"") for n in names)
    events = conn.receiveData(rec(RecordType.GET_VALUES, 0, query))
    assert events == [ValuesRequested(names=tuple(names))]
    data = b"".join(conn.dataToSend())
    assert len(data) % 8 == 0
    assert readRecords(data) == [Record(RecordType.GET_VALUES_RESULT, 0, expected)]


def test_unknownManagementType() -> None:
    """
    An unknown management record type is answered with UNKNOWN_TYPE naming it.
    """
    conn = ServerConnection()
    assert conn.receiveData(rec(42, 0, b"abc")) == []
    assert b"".join(conn.dataToSend()) == (
        b"\x01\x0b\x00\x00\x00\x08\x00\x00\x2a\x00\x00\x00\x00\x00\x00\x00"
    )


def test_cantMpxConn() -> None:
    """
    A second BEGIN_REQUEST while a request is active on a non-multiplexing
    connection is answered with CANT_MPX_CONN; its later records are ignored,
    and the first request goes on.
    """
    conn = ServerConnection(multiplex=False)
    conn.receiveData(begin(1, flags=1) + params(1))
    events = conn.receiveData(begin(2, flags=1) + params(2) + rec(RecordType.STDIN, 2, b"x"))
    assert events == []
    assert sent(conn) == [endRecord(2, 0, ProtocolStatus.CANT_MPX_CONN)]
    assert conn.activeRequestIds == [1]
    assert conn.receiveData(rec(RecordType.STDIN, 1)) == [StdinEnded(requestId=1)]


def test_multiplexing() -> None:
    """
    A multiplexing connection runs several requests at once, up to maxReqs;
    one more is answered with OVERLOADED.
    """
    conn = ServerConnection(multiplex=True, maxReqs=2)
    events = conn.receiveData(begin(1, flags=1) + begin(2, flags=1) + params(2) + params(1))
    assert [type(e) for e in events] == [
        RequestStarted,
        RequestStarted,
        ParamsReceived,
        ParamsReceived,
    ]
    assert [getattr(e, "requestId") for e in events] == [1, 2, 2, 1]
    conn.receiveData(begin(3, flags=1))
    assert sent(conn) == [endRecord(3, 0, ProtocolStatus.OVERLOADED)]
    conn.sendStdout(2, b"two")
    conn.sendStdout(1, b"one")
    conn.endRequest(2)
    conn.endRequest(1)
    records = sent(conn)
    assert [(r.type, r.requestId) for r in records] == [
        (RecordType.STDOUT, 2),
        (RecordType.STDOUT, 1),
        (RecordType.STDOUT, 2),
        (RecordType.END_REQUEST, 2),
        (RecordType.STDOUT, 1),
        (RecordType.END_REQUEST, 1),
    ]
    assert not conn.shouldClose


def test_unknownRole() -> None:
    """
    A BEGIN_REQUEST with an unknown role is answered with UNKNOWN_ROLE; without
    KEEP_CONN the connection then asks to be closed.
    """
    conn = ServerConnection()
    assert conn.receiveData(begin(1, role=9, flags=0)) == []
    assert sent(conn) == [endRecord(1, 0, ProtocolStatus.UNKNOWN_ROLE)]
    assert conn.shouldClose
    conn = ServerConnection(roles=frozenset({Role.RESPONDER}))
    conn.receiveData(begin(1, role=Role.FILTER, flags=1))
    assert sent(conn) == [endRecord(1, 0, ProtocolStatus.UNKNOWN_ROLE)]
    assert not conn.shouldClose


def test_keepConn() -> None:
    """
    L{ServerConnection.shouldClose} is true after a request without KEEP_CONN
    ends, and stays false for one with it.
    """
    conn = ServerConnection()
    conn.receiveData(begin(1, flags=1) + params(1))
    assert not conn.shouldClose
    conn.endRequest(1)
    assert not conn.shouldClose
    conn.receiveData(begin(1, flags=0) + params(1))
    assert not conn.shouldClose
    conn.endRequest(1)
    assert conn.shouldClose


def test_inactiveIdsIgnored() -> None:
    """
    Records for inactive ids are ignored, including STDIN the web server keeps
    sending after the application ended the request.
    """
    conn = ServerConnection()
    assert conn.receiveData(rec(RecordType.STDIN, 5, b"x") + rec(RecordType.ABORT_REQUEST, 5)) == []
    conn.receiveData(begin(1, flags=1) + params(1))
    conn.endRequest(1)
    assert conn.receiveData(rec(RecordType.STDIN, 1, b"late") + rec(RecordType.STDIN, 1)) == []


def test_abort() -> None:
    """
    ABORT_REQUEST for an active request gives one L{RequestAborted}.
    """
    conn = ServerConnection()
    conn.receiveData(begin(1) + params(1))
    events = conn.receiveData(rec(RecordType.ABORT_REQUEST, 1) + rec(RecordType.ABORT_REQUEST, 1))
    assert events == [RequestAborted(requestId=1)]


def test_filter() -> None:
    """
    A Filter request gets PARAMS, STDIN and then DATA; it may write only once
    STDIN has ended.
    """
    conn = ServerConnection()
    events = conn.receiveData(begin(1, Role.FILTER) + params(1) + rec(RecordType.STDIN, 1, b"in"))
    with pytest.raises(LocalProtocolError):
        conn.sendStdout(1, b"early")
    events += conn.receiveData(
        rec(RecordType.STDIN, 1) + rec(RecordType.DATA, 1, b"file") + rec(RecordType.DATA, 1)
    )
    assert events[2:] == [
        StdinReceived(requestId=1, data=b"in"),
        StdinEnded(requestId=1),
        DataReceived(requestId=1, data=b"file"),
        DataEnded(requestId=1),
    ]
    conn.sendStdout(1, b"ok")


def test_authorizer() -> None:
    """
    An Authorizer request gets PARAMS and an (empty) STDIN stream.
    """
    conn = ServerConnection()
    events = conn.receiveData(begin(1, Role.AUTHORIZER) + params(1) + rec(RecordType.STDIN, 1))
    assert events[0] == RequestStarted(requestId=1, role=Role.AUTHORIZER, keepConnection=False)
    assert events[-1] == StdinEnded(requestId=1)


@pytest.mark.parametrize(
    "data, message",
    [
        (begin(1) + params(1) + rec(RecordType.PARAMS, 1, b"\x01\x01ab"), "after its PARAMS"),
        (begin(1) + rec(RecordType.STDIN, 1, b"x"), "before its PARAMS"),
        (begin(1) + params(1) + rec(RecordType.STDIN, 1) + rec(RecordType.STDIN, 1, b"x"), "after its STDIN"),
        (begin(1) + params(1) + rec(RecordType.DATA, 1, b"x"), "has no DATA"),
        (begin(1, Role.FILTER) + params(1) + rec(RecordType.DATA, 1, b"x"), "STDIN stream is still open"),
        (
            begin(1, Role.FILTER) + params(1) + rec(RecordType.STDIN, 1) + rec(RecordType.DATA, 1)
            + rec(RecordType.DATA, 1, b"x"),
            "after its DATA",
        ),
        (begin(1) + begin(1), "already active"),
        (rec(RecordType.STDOUT, 1, b"x"), "only an application"),
        (rec(RecordType.END_REQUEST, 1, bytes(8)), "only an application"),
        (rec(RecordType.GET_VALUES_RESULT, 0), "only an application"),
        (rec(RecordType.UNKNOWN_TYPE, 0, bytes(8)), "only an application"),
        (begin(0), "reserved for management"),
        (rec(RecordType.GET_VALUES, 1), "management records use request id 0"),
        (rec(42, 1, b"x"), "unknown type 42"),
        (begin(1) + rec(RecordType.PARAMS, 1, b"\x05\x05ab") + rec(RecordType.PARAMS, 1), "inside a name-value pair"),
        (b"\x02\x01\x00\x01\x00\x08\x00\x00", "protocol version 2"),
    ],
)
def test_remoteErrors(data: bytes, message: str) -> None:
    """
    Input that breaks the protocol raises L{RemoteProtocolError} saying how,
    and the connection stays broken.
    """
    conn = ServerConnection()
    with pytest.raises(RemoteProtocolError, match=message):
        conn.receiveData(data)
    with pytest.raises(RemoteProtocolError):
        conn.receiveData(b"")


def test_paramsLimit() -> None:
    """
    A PARAMS stream larger than maxParamsSize raises L{RemoteProtocolError}.
    """
    conn = ServerConnection(maxParamsSize=100)
    with pytest.raises(RemoteProtocolError, match="larger than 100"):
        conn.receiveData(begin(1) + params(1, {b"X": b"y" * 200}))


def test_localErrors() -> None:
    """
    Sending for an inactive request, or before PARAMS ended, raises
    L{LocalProtocolError}.
    """
    conn = ServerConnection()
    with pytest.raises(LocalProtocolError):
        conn.sendStdout(1, b"x")
    with pytest.raises(LocalProtocolError):
        conn.endRequest(1)
    conn.receiveData(begin(1))
    with pytest.raises(LocalProtocolError):
        conn.sendStderr(1, b"x")
    conn.endRequest(1, protocolStatus=ProtocolStatus.OVERLOADED)
    assert sent(conn) == [endRecord(1, 0, ProtocolStatus.OVERLOADED)]


def test_paddingAndPairsAcrossRecords() -> None:
    """
    Padded input records and a name-value pair split across PARAMS records
    decode to the same params.
    """
    pairs = encodePairs([(b"NAME", b"v" * 130)])
    data = begin(1) + rec(RecordType.PARAMS, 1, pairs[:3]) + rec(RecordType.PARAMS, 1, pairs[3:])
    data += rec(RecordType.PARAMS, 1)
    conn = ServerConnection()
    events = conn.receiveData(data)
    assert events[1] == ParamsReceived(requestId=1, params=((b"NAME", b"v" * 130),))


# --- round trips with the web-server side codec, in any split ------------------


def splitAt(data: bytes, cuts: list[int]) -> list[bytes]:
    """
    Cut C{data} at the given offsets (taken modulo its length).
    """
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


@settings(max_examples=60, deadline=None)
@given(
    role=st.sampled_from([Role.RESPONDER, Role.AUTHORIZER, Role.FILTER]),
    params=st.dictionaries(st.binary(min_size=1, max_size=140), st.binary(max_size=300), max_size=6),
    body=st.binary(max_size=70000),
    data=st.binary(max_size=3000),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
)
def test_roundTripWithClientConnection(
    role: int, params: dict[bytes, bytes], body: bytes, data: bytes, cuts: list[int]
) -> None:
    """
    Whatever the role, the params, the body and the split of the bytes, the
    application side receives what the web-server side
    (L{txfastcgi.fcgi.client.ClientConnection}) sent, and its answer (STDOUT
    echoing the inputs, STDERR, END_REQUEST) arrives back intact.
    """
    client = ClientConnection()
    server = ServerConnection(multiplex=True, maxReqs=5)
    client.beginRequest(3, role, keepConnection=True)
    client.sendParams(3, params.items())
    client.endParams(3)
    if role != Role.AUTHORIZER:
        client.sendStdin(3, body)
    client.endStdin(3)
    if role == Role.FILTER:
        client.sendData(3, data)
        client.endData(3)
    events: list[Event] = []
    for piece in splitAt(b"".join(client.dataToSend()), cuts):
        events += server.receiveData(piece)
    events = normalise(events)
    assert events[0] == RequestStarted(requestId=3, role=role, keepConnection=True)
    assert isinstance(events[1], ParamsReceived)
    assert dict(events[1].params) == params
    gotBody = b"".join(e.data for e in events if isinstance(e, StdinReceived))
    gotData = b"".join(e.data for e in events if isinstance(e, DataReceived))
    assert gotBody == (b"" if role == Role.AUTHORIZER else body)
    assert gotData == (data if role == Role.FILTER else b"")
    assert StdinEnded(requestId=3) in events
    assert (DataEnded(requestId=3) in events) == (role == Role.FILTER)
    server.sendStdout(3, gotBody + gotData)
    server.sendStderr(3, b"log line")
    server.endRequest(3, appStatus=role)
    answers: list[Event] = []
    for piece in splitAt(b"".join(server.dataToSend()), cuts):
        answers += client.receiveData(piece)
    stdout = b"".join(e.data for e in answers if isinstance(e, StdoutReceived))
    stderr = b"".join(e.data for e in answers if isinstance(e, StderrReceived))
    assert stdout == gotBody + gotData
    assert stderr == b"log line"
    assert answers[-1] == RequestEnded(requestId=3, appStatus=role, protocolStatus=0)
    assert not server.shouldClose
