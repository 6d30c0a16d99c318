"""
Tests for L{txfastcgi.fcgi.records}: record and name-value pair encoding, the
incremental L{RecordReader} and L{PairDecoder}, and strict validation.

Byte fixtures come from SPEC.md section 7; round trips, split feeding and fuzzing
use hypothesis (strategies in C{tests/strategies.py}).
"""

from __future__ import annotations

import struct
import sys
from typing import Any, Callable, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import strategies as fs
from txfastcgi.fcgi.constants import (
    FCGI_KEEP_CONN,
    FCGI_MAX_CONNS,
    FCGI_MAX_REQS,
    FCGI_MPXS_CONNS,
    MAX_PAIR_LENGTH,
    ProtocolStatus,
    RecordType,
    Role,
)
from txfastcgi.fcgi.errors import (
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from txfastcgi.fcgi.records import (
    STREAM_CHUNK_SIZE,
    PairDecoder,
    Record,
    RecordReader,
    decodeBeginRequestBody,
    decodeEndRequestBody,
    decodePairs,
    decodeUnknownTypeBody,
    encodeBeginRequestBody,
    encodeEndRequestBody,
    encodeHeader,
    encodePairs,
    encodeRecord,
    encodeUnknownTypeBody,
    paddingLength,
    readRecords,
    recordChunks,
    streamChunks,
    streamEndChunks,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def h(text: str) -> bytes:
    """
    Bytes from hex text with spaces and C{|} separators.
    """
    return bytes.fromhex(text.replace("|", " "))


def feedAll(reader: RecordReader, chunks: list[bytes]) -> list[Record]:
    """
    Feed C{chunks} in order; return every record produced.
    """
    records: list[Record] = []
    for chunk in chunks:
        records.extend(reader.feed(chunk))
    return records


def encodeAll(records: list[Record]) -> bytes:
    """
    Encode C{records} back to back.
    """
    return b"".join(encodeRecord(r.type, r.requestId, r.content) for r in records)


def decodeHeader(header: bytes) -> tuple[int, int, int, int, int, int]:
    """
    Unpack an 8-byte header: version, type, id, content length, padding,
    reserved.
    """
    return cast(tuple[int, int, int, int, int, int], struct.unpack(">BBHHBB", header))


# --- byte-exact fixtures (SPEC.md section 7) ---------------------------------


END_REQUEST_BYTES = h("01 03 00 01 00 08 00 00 00 00 00 00 00 00 00 00")
BEGIN_REQUEST_BYTES = h("01 01 00 01 00 08 00 00 | 00 01 00 00 00 00 00 00")


def test_endRequestFixture() -> None:
    """
    END_REQUEST for id 1, appStatus 0, REQUEST_COMPLETE is the 16 bytes of
    SPEC.md 7.3, and decodes back.
    """
    body = encodeEndRequestBody(0, ProtocolStatus.REQUEST_COMPLETE)
    assert encodeRecord(RecordType.END_REQUEST, 1, body) == END_REQUEST_BYTES
    [record] = readRecords(END_REQUEST_BYTES)
    assert record == Record(RecordType.END_REQUEST, 1, bytes(8))
    assert decodeEndRequestBody(record.content) == (0, ProtocolStatus.REQUEST_COMPLETE)


def test_beginRequestFixture() -> None:
    """
    BEGIN_REQUEST for id 1, RESPONDER, flags 0 is the byte example of SPEC.md
    7.5, and decodes back.
    """
    body = encodeBeginRequestBody(Role.RESPONDER, 0)
    assert encodeRecord(RecordType.BEGIN_REQUEST, 1, body) == BEGIN_REQUEST_BYTES
    [record] = readRecords(BEGIN_REQUEST_BYTES)
    assert decodeBeginRequestBody(record.content) == (Role.RESPONDER, 0)


@pytest.mark.parametrize(
    "role, flags, expected",
    [
        (Role.RESPONDER, FCGI_KEEP_CONN, "00 01 01 00 00 00 00 00"),
        (Role.AUTHORIZER, 0, "00 02 00 00 00 00 00 00"),
        (Role.FILTER, FCGI_KEEP_CONN, "00 03 01 00 00 00 00 00"),
        (0x1234, 0xFF, "12 34 ff 00 00 00 00 00"),
    ],
)
def test_beginRequestBody(role: int, flags: int, expected: str) -> None:
    """
    The BEGIN_REQUEST body is roleB1, roleB0, flags and five reserved zeros.
    """
    assert encodeBeginRequestBody(role, flags) == h(expected)
    assert decodeBeginRequestBody(h(expected)) == (role, flags)


@pytest.mark.parametrize(
    "appStatus, protocolStatus, expected, decoded",
    [
        (0, ProtocolStatus.REQUEST_COMPLETE, "00 00 00 00 00 00 00 00", 0),
        (1, ProtocolStatus.CANT_MPX_CONN, "00 00 00 01 01 00 00 00", 1),
        (0x01020304, ProtocolStatus.OVERLOADED, "01 02 03 04 02 00 00 00", 0x01020304),
        (255, ProtocolStatus.UNKNOWN_ROLE, "00 00 00 ff 03 00 00 00", 255),
        (-1, 0, "ff ff ff ff 00 00 00 00", 0xFFFFFFFF),
    ],
)
def test_endRequestBody(
    appStatus: int, protocolStatus: int, expected: str, decoded: int
) -> None:
    """
    The END_REQUEST body is a 32-bit big-endian appStatus (negative values as
    C's unsigned wrap-around), protocolStatus and three reserved zeros.
    """
    assert encodeEndRequestBody(appStatus, protocolStatus) == h(expected)
    assert decodeEndRequestBody(h(expected)) == (decoded, protocolStatus)


def test_unknownTypeFixture() -> None:
    """
    UNKNOWN_TYPE naming type 42 is a management record whose body is the type
    and seven reserved zeros.
    """
    body = encodeUnknownTypeBody(42)
    assert body == h("2a 00 00 00 00 00 00 00")
    assert encodeRecord(RecordType.UNKNOWN_TYPE, 0, body) == h(
        "01 0b 00 00 00 08 00 00 | 2a 00 00 00 00 00 00 00"
    )
    assert decodeUnknownTypeBody(body) == 42


@pytest.mark.parametrize(
    "pairs, expected",
    [
        ([(b"SERVER_PORT", b"80")], b"\x0b\x02SERVER_PORT80"),
        ([(b"X", b"Y" * 200)], b"\x01\x80\x00\x00\xc8X" + b"Y" * 200),
        ([(b"N" * 200, b"")], b"\x80\x00\x00\xc8\x00" + b"N" * 200),
        ([(b"A" * 127, b"B" * 127)], b"\x7f\x7f" + b"A" * 127 + b"B" * 127),
        (
            [(b"A" * 128, b"B" * 128)],
            b"\x80\x00\x00\x80\x80\x00\x00\x80" + b"A" * 128 + b"B" * 128,
        ),
        ([(b"", b"")], b"\x00\x00"),
        ([(b"a", b"1"), (b"bb", b"")], b"\x01\x01a1\x02\x00bb"),
        ([(b"V", b"v" * 65536)], b"\x01\x80\x01\x00\x00V" + b"v" * 65536),
    ],
    ids=["spec-11", "spec-14", "41", "127", "128", "empty", "two", "64k"],
)
def test_pairFixtures(pairs: list[tuple[bytes, bytes]], expected: bytes) -> None:
    """
    Name-value pairs use 1-byte lengths up to 127 and 4-byte lengths with the
    top bit set from 128 on (SPEC.md 7.4 examples included), and decode back.
    """
    assert encodePairs(pairs) == expected
    assert decodePairs(expected) == pairs


def test_getValuesFixture() -> None:
    """
    A GET_VALUES record carries the three variable names with empty values; it
    is padded to 8 bytes and decodes back to the same names.
    """
    names = [FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS]
    content = encodePairs([(name, b"") for name in names])
    assert content == (
        b"\x0e\x00FCGI_MAX_CONNS\x0d\x00FCGI_MAX_REQS\x0f\x00FCGI_MPXS_CONNS"
    )
    record = encodeRecord(RecordType.GET_VALUES, 0, content)
    assert record[:8] == h("01 09 00 00 00 30 00 00")
    assert record[8:] == content
    single = encodeRecord(RecordType.GET_VALUES, 0, encodePairs([(FCGI_MPXS_CONNS, b"")]))
    assert single == h("01 09 00 00 00 11 07 00") + b"\x0f\x00FCGI_MPXS_CONNS" + bytes(7)
    [decoded] = readRecords(single)
    assert decodePairs(decoded.content) == [(FCGI_MPXS_CONNS, b"")]


@pytest.mark.parametrize(
    "length, padding",
    [(0, 0), (1, 7), (2, 6), (7, 1), (8, 0), (9, 7), (15, 1), (16, 0), (200, 0),
     (201, 7), (65527, 1), (65528, 0), (65535, 1)],
)
def test_padding(length: int, padding: int) -> None:
    """
    Every record is padded with zeros to a multiple of 8 bytes, and the header
    states the padding.
    """
    assert paddingLength(length) == padding
    record = encodeRecord(RecordType.STDOUT, 1, b"x" * length)
    assert len(record) == 8 + length + padding
    assert len(record) % 8 == 0
    assert decodeHeader(record[:8]) == (1, RecordType.STDOUT, 1, length, padding, 0)
    assert record[8 + length :] == bytes(padding)


def test_recordChunksDoNotCopy() -> None:
    """
    L{recordChunks} returns the content object itself between header and
    padding, and leaves out empty content and zero padding.
    """
    content = b"hello"
    chunks = recordChunks(RecordType.STDIN, 3, content)
    assert len(chunks) == 3
    assert chunks[1] is content
    assert chunks[2] == bytes(3)
    assert recordChunks(RecordType.STDIN, 3, b"") == [h("01 05 00 03 00 00 00 00")]
    eight = b"12345678"
    assert recordChunks(RecordType.STDIN, 3, eight)[1:] == [eight]


@pytest.mark.parametrize(
    "recordType, requestId, expected",
    [
        (RecordType.PARAMS, 1, "01 04 00 01 00 00 00 00"),
        (RecordType.STDIN, 0x1234, "01 05 12 34 00 00 00 00"),
        (RecordType.STDOUT, 0xFFFF, "01 06 ff ff 00 00 00 00"),
        (RecordType.DATA, 2, "01 08 00 02 00 00 00 00"),
    ],
)
def test_streamEnd(recordType: int, requestId: int, expected: str) -> None:
    """
    A stream ends with one empty record of its type (8 bytes, no padding).
    """
    assert streamEndChunks(recordType, requestId) == [h(expected)]
    assert readRecords(h(expected)) == [Record(recordType, requestId, b"")]


# --- streams -----------------------------------------------------------------


def test_streamChunksEmpty() -> None:
    """
    Empty stream data gives no records: an empty record would end the stream.
    """
    assert streamChunks(RecordType.STDOUT, 1, b"") == []


def test_streamChunksShortIsNotCopied() -> None:
    """
    Stream data that fits one record is passed on as the same object.
    """
    data = b"y" * 65535
    chunks = streamChunks(RecordType.STDOUT, 1, data)
    assert chunks[1] is data


@pytest.mark.parametrize(
    "length",
    [65535, 65536, STREAM_CHUNK_SIZE * 2, STREAM_CHUNK_SIZE * 2 + 1, 200_001, 1 << 20],
)
def test_streamChunksSplitLongData(length: int) -> None:
    """
    Long stream data is cut into records of at most 65535 bytes; every record
    is 8-byte aligned, only the last one needs padding, and the contents join
    back to the data.
    """
    data = fs.patternBytes(length, 7)
    wire = b"".join(streamChunks(RecordType.STDOUT, 9, data))
    assert len(wire) % 8 == 0
    records = readRecords(wire)
    assert all(r.type == RecordType.STDOUT and r.requestId == 9 for r in records)
    assert all(0 < len(r.content) <= 65535 for r in records)
    assert b"".join(r.content for r in records) == data
    expected = -(-length // STREAM_CHUNK_SIZE) if length > 65535 else 1
    assert len(records) == expected
    pos = 0
    for record in records:
        header = decodeHeader(wire[pos : pos + 8])
        assert header[3] == len(record.content)
        assert header[4] == paddingLength(len(record.content))
        if record is not records[-1]:
            assert header[4] == 0
        pos += 8 + header[3] + header[4]
    assert pos == len(wire)


@FEW
@given(
    recordType=st.sampled_from(
        [RecordType.PARAMS, RecordType.STDIN, RecordType.STDOUT, RecordType.STDERR, RecordType.DATA]
    ),
    requestId=fs.requestIds(),
    lengths=st.lists(
        st.one_of(st.sampled_from([1, 8, 65535, 65536, 131071]), st.integers(1, 300_000)),
        max_size=3,
    ),
)
def test_streamRoundTrip(
    recordType: int, requestId: int, lengths: list[int]
) -> None:
    """
    A stream written in pieces of any size, then ended, reads back as non-empty
    records of at most 65535 bytes whose contents join to the data, followed
    by exactly one empty record.
    """
    pieces = [fs.patternBytes(n, i) for i, n in enumerate(lengths)]
    chunks: list[bytes] = []
    for piece in pieces:
        chunks.extend(streamChunks(recordType, requestId, piece))
    chunks.extend(streamEndChunks(recordType, requestId))
    assert all(len(chunk) <= 65535 for chunk in chunks)
    wire = b"".join(chunks)
    assert len(wire) % 8 == 0
    records = readRecords(wire)
    assert records[-1] == Record(recordType, requestId, b"")
    assert all(r.content and len(r.content) <= 65535 for r in records[:-1])
    assert b"".join(r.content for r in records) == b"".join(pieces)


# --- round trips -------------------------------------------------------------


@FAST
@given(record=fs.records())
def test_recordRoundTrip(record: Record) -> None:
    """
    Any record, of any type including unknown ones, encodes to an 8-byte
    aligned string that reads back as the same record.
    """
    wire = encodeRecord(record.type, record.requestId, record.content)
    assert len(wire) % 8 == 0
    assert wire == b"".join(recordChunks(record.type, record.requestId, record.content))
    assert readRecords(wire) == [record]


@pytest.mark.parametrize("recordType", list(RecordType), ids=lambda t: t.name)
def test_recordRoundTripEveryType(recordType: RecordType) -> None:
    """
    Each of the eleven record types, with content that fits it, round trips
    through L{encodeRecord} and L{readRecords}, alone and between two others.
    """
    around = Record(RecordType.STDERR, 3, b"around")

    # Hypothesis runs inside the test: combining @given with parametrize
    # trips pytest-twisted's greenlet handling.
    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(record=fs.records(types=st.just(int(recordType))))
    def roundTrip(record: Record) -> None:
        assert record.type == recordType
        wire = encodeRecord(record.type, record.requestId, record.content)
        assert readRecords(wire) == [record]
        assert readRecords(encodeAll([around, record, around])) == [around, record, around]

    roundTrip()


@FAST
@given(recordType=fs.recordTypes(), requestId=fs.requestIds(), length=fs.contentLengths())
def test_headerRoundTrip(recordType: int, requestId: int, length: int) -> None:
    """
    L{encodeHeader} writes version 1, the type, id, length, the aligning
    padding and a zero reserved byte.
    """
    header = encodeHeader(recordType, requestId, length)
    assert decodeHeader(header) == (1, recordType, requestId, length, -length & 7, 0)


@FAST
@given(role=st.integers(0, 0xFFFF), flags=st.integers(0, 255))
def test_beginRequestBodyRoundTrip(role: int, flags: int) -> None:
    """
    Any role and flags survive a BEGIN_REQUEST body round trip.
    """
    assert decodeBeginRequestBody(encodeBeginRequestBody(role, flags)) == (role, flags)


@FAST
@given(appStatus=st.integers(-(2**31), 2**32 - 1), protocolStatus=st.integers(0, 255))
def test_endRequestBodyRoundTrip(appStatus: int, protocolStatus: int) -> None:
    """
    Any appStatus survives an END_REQUEST round trip modulo 2**32.
    """
    body = encodeEndRequestBody(appStatus, protocolStatus)
    assert decodeEndRequestBody(body) == (appStatus % 2**32, protocolStatus)


@FAST
@given(recordType=st.integers(0, 255))
def test_unknownTypeBodyRoundTrip(recordType: int) -> None:
    """
    Any type byte survives an UNKNOWN_TYPE body round trip.
    """
    assert decodeUnknownTypeBody(encodeUnknownTypeBody(recordType)) == recordType


@FAST
@given(pairs=fs.pairLists())
def test_pairsRoundTrip(pairs: list[tuple[bytes, bytes]]) -> None:
    """
    Pairs of any length, across the 127/128 boundary and beyond 65535, round
    trip through L{encodePairs} and L{decodePairs}.
    """
    encoded = encodePairs(pairs)
    assert decodePairs(encoded) == pairs


@FAST
@given(
    length=st.sampled_from([0, 1, 126, 127, 128, 129, 255, 256, 65535, 65536]),
    which=st.sampled_from(["name", "value"]),
)
def test_pairLengthForm(length: int, which: str) -> None:
    """
    A length below 128 takes one byte; from 128 on it takes four, with the top
    bit set and the length in the low 31 bits.
    """
    pair = (b"n" * length, b"v") if which == "name" else (b"n", b"v" * length)
    encoded = encodePairs([pair])
    offset = 0 if which == "name" else 1
    if length < 128:
        assert encoded[offset] == length
    else:
        assert encoded[offset] & 0x80
        assert struct.unpack(">I", encoded[offset : offset + 4])[0] == 0x80000000 | length
    assert decodePairs(encoded) == [pair]


@FAST
@given(pairs=fs.pairLists(), data=st.data())
def test_pairDecoderAnySplit(
    pairs: list[tuple[bytes, bytes]], data: st.DataObject
) -> None:
    """
    L{PairDecoder} returns the same pairs however the stream is cut into
    records (a pair may straddle record boundaries).
    """
    encoded = encodePairs(pairs)
    points = data.draw(fs.splitPoints(len(encoded)))
    decoder = PairDecoder()
    decoded: list[tuple[bytes, bytes]] = []
    for chunk in fs.splitAt(encoded, points):
        decoded.extend(decoder.feed(chunk))
    decoder.finish()
    assert decoded == pairs
    assert decoder.pending == 0


def test_pairDecoderByteAtATime() -> None:
    """
    Pairs fed one byte at a time come out as each completes, and nothing is
    pending at the end.
    """
    pairs = [(b"A" * 127, b"B" * 128), (b"", b""), (b"SERVER_PORT", b"80")]
    encoded = encodePairs(pairs)
    decoder = PairDecoder()
    seen: list[tuple[int, tuple[bytes, bytes]]] = []
    for i in range(len(encoded)):
        for pair in decoder.feed(encoded[i : i + 1]):
            seen.append((i, pair))
    decoder.finish()
    assert [pair for _, pair in seen] == pairs
    first = 1 + 4 + 127 + 128
    assert [i for i, _ in seen] == [first - 1, first + 1, len(encoded) - 1]


# --- the reader: split feeding -----------------------------------------------


def _sampleRecords() -> list[Record]:
    return [
        Record(RecordType.BEGIN_REQUEST, 1, encodeBeginRequestBody(Role.RESPONDER, 1)),
        Record(RecordType.PARAMS, 1, encodePairs([(b"SERVER_PORT", b"80"), (b"X", b"Y" * 130)])),
        Record(RecordType.PARAMS, 1, b""),
        Record(RecordType.STDIN, 1, b"abc"),
        Record(RecordType.STDIN, 1, b""),
        Record(RecordType.GET_VALUES, 0, encodePairs([(FCGI_MPXS_CONNS, b"")])),
        Record(200, 7, b"unknown type"),
        Record(RecordType.ABORT_REQUEST, 1, b""),
        Record(RecordType.STDOUT, 0xFFFF, b"12345678"),
        Record(RecordType.END_REQUEST, 1, encodeEndRequestBody(0, 0)),
    ]


def _paddedStream() -> tuple[bytes, list[Record]]:
    """
    The sample records, plus one written with non-minimal padding (255 bytes),
    which a reader must skip.
    """
    records = _sampleRecords()
    odd = Record(RecordType.STDERR, 2, b"oops")
    oddWire = h("01 07 00 02 00 04 ff 00") + b"oops" + b"\xaa" * 255
    return encodeAll(records) + oddWire, records + [odd]


def test_readerEverySplitPoint() -> None:
    """
    The reader yields the same records for every point at which a
    multi-record stream can be cut in two.
    """
    wire, expected = _paddedStream()
    for cut in range(len(wire) + 1):
        reader = RecordReader()
        assert feedAll(reader, [wire[:cut], wire[cut:]]) == expected, cut
        assert reader.atRecordBoundary


def test_readerEveryTwoSplitPoints() -> None:
    """
    The reader yields the same records for every pair of cut points in a short
    stream (three chunks, empty ones included).
    """
    wire = encodeAll(_sampleRecords()[:4])
    expected = _sampleRecords()[:4]
    for first in range(0, len(wire) + 1, 3):
        for second in range(first, len(wire) + 1):
            chunks = [wire[:first], wire[first:second], wire[second:]]
            assert feedAll(RecordReader(), chunks) == expected, (first, second)


def test_readerByteAtATime() -> None:
    """
    Fed one byte at a time, the reader returns each record exactly when its
    last content byte (or its header, for an empty record) arrives.
    """
    wire, expected = _paddedStream()
    reader = RecordReader()
    got: list[Record] = []
    for i in range(len(wire)):
        got.extend(reader.feed(wire[i : i + 1]))
    assert got == expected
    assert reader.atRecordBoundary


def test_readerRecordCompletesOnLastContentByte() -> None:
    """
    A record is returned when its content is complete, before its padding has
    arrived; the padding is then skipped.
    """
    wire = encodeRecord(RecordType.STDOUT, 1, b"abc")
    reader = RecordReader()
    assert reader.feed(wire[:10]) == []
    assert reader.feed(wire[10:11]) == [Record(RecordType.STDOUT, 1, b"abc")]
    assert not reader.atRecordBoundary
    assert reader.describePartial() == "STDOUT record missing 5 padding bytes"
    assert reader.feed(wire[11:]) == []
    assert reader.atRecordBoundary


@FAST
@given(records=fs.recordLists(maxRecords=6, maxSize=2000), data=st.data())
def test_readerRandomSplits(records: list[Record], data: st.DataObject) -> None:
    """
    Any list of records, cut into chunks at random points (empty chunks
    included), reads back as the same records.
    """
    wire = encodeAll(records)
    points = data.draw(fs.splitPoints(len(wire), maxSplits=20))
    reader = RecordReader()
    assert feedAll(reader, fs.splitAt(wire, points)) == records
    assert reader.atRecordBoundary


@FEW
@given(records=fs.recordLists(maxRecords=4), data=st.data())
def test_readerRandomSplitsLargeRecords(records: list[Record], data: st.DataObject) -> None:
    """
    Records up to 65535 bytes, cut at random points, read back the same.
    """
    wire = encodeAll(records)
    points = data.draw(fs.splitPoints(len(wire), maxSplits=6))
    assert feedAll(RecordReader(), fs.splitAt(wire, points)) == records


@pytest.mark.parametrize("pieces", [2, 7, 8, 9, 10, 50])
def test_readerContentInManyPieces(pieces: int) -> None:
    """
    Content cut into any number of chunks (few are held by reference, many are
    copied into one buffer) reads back whole, and the next record, arriving
    whole, is read normally.
    """
    content = fs.patternBytes(1000, 9)
    first = encodeRecord(RecordType.STDOUT, 1, content)
    second = encodeRecord(RecordType.STDERR, 1, b"next")
    size = -(-len(content) // pieces)
    chunks = [first[:8]]
    chunks += [first[8 + i : 8 + i + size] for i in range(0, len(content), size)]
    chunks += [first[8 + len(content) :] + second]
    assert len(chunks) == pieces + 2
    reader = RecordReader()
    assert feedAll(reader, chunks) == [
        Record(RecordType.STDOUT, 1, content),
        Record(RecordType.STDERR, 1, b"next"),
    ]
    assert feedAll(reader, chunks) == [
        Record(RecordType.STDOUT, 1, content),
        Record(RecordType.STDERR, 1, b"next"),
    ]


def test_readerAcceptsBytearrayAndMemoryview() -> None:
    """
    The reader takes any bytes-like chunk and returns C{bytes} content.
    """
    wire = encodeRecord(RecordType.STDOUT, 1, b"hello world")
    reader = RecordReader()
    got = reader.feed(cast(bytes, bytearray(wire[:12])))
    got += reader.feed(cast(bytes, memoryview(wire)[12:]))
    assert got == [Record(RecordType.STDOUT, 1, b"hello world")]
    assert type(got[0].content) is bytes


# --- trailing partial data ---------------------------------------------------


@pytest.mark.parametrize(
    "cut, description",
    [
        (0, None),
        (1, "1 of 8 header bytes"),
        (7, "7 of 8 header bytes"),
        (8, "STDOUT record for request 5 missing 11 content bytes"),
        (18, "STDOUT record for request 5 missing 1 content bytes"),
        (19, "STDOUT record missing 5 padding bytes"),
        (23, "STDOUT record missing 1 padding bytes"),
        (24, None),
        (25, "1 of 8 header bytes"),
    ],
)
def test_trailingPartial(cut: int, description: str | None) -> None:
    """
    A stream that stops inside a record is reported by C{atRecordBoundary},
    named by C{describePartial}, and refused by L{readRecords}.
    """
    wire = encodeRecord(RecordType.STDOUT, 5, b"x" * 11) + encodeRecord(RecordType.STDIN, 5)
    reader = RecordReader()
    reader.feed(wire[:cut])
    if description is None:
        assert reader.atRecordBoundary
        readRecords(wire[:cut])
        return
    assert not reader.atRecordBoundary
    assert reader.describePartial() == description
    with pytest.raises(RemoteProtocolError) as e:
        readRecords(wire[:cut])
    assert str(e.value) == f"stream ends inside a record: {description}"


def test_readRecordsEmpty() -> None:
    """
    No bytes are no records.
    """
    assert readRecords(b"") == []


# --- strict validation -------------------------------------------------------


@pytest.mark.parametrize(
    "header, words",
    [
        ("00 06 00 01 00 00 00 00", ["version 0", "expected 1"]),
        ("02 06 00 01 00 00 00 00", ["version 2", "expected 1"]),
        ("48 54 54 50 2f 31 2e 31", ["version 72"]),  # b"HTTP/1.1"
        ("01 06 00 01 00 00 00 01", ["reserved byte 1", "must be 0"]),
        ("01 06 00 01 00 00 00 ff", ["reserved byte 255"]),
        ("01 00 00 01 00 00 00 00", ["type 0"]),
        ("01 03 00 01 00 05 00 00", ["END_REQUEST", "5 bytes", "must be 8"]),
        ("01 03 00 01 00 10 00 00", ["END_REQUEST", "16 bytes", "must be 8"]),
        ("01 03 00 01 00 00 00 00", ["END_REQUEST", "0 bytes", "must be 8"]),
        ("01 01 00 01 00 05 00 00", ["BEGIN_REQUEST", "5 bytes", "must be 8"]),
        ("01 01 00 01 00 10 00 00", ["BEGIN_REQUEST", "16 bytes", "must be 8"]),
        ("01 0b 00 00 00 05 00 00", ["UNKNOWN_TYPE", "5 bytes", "must be 8"]),
        ("01 0b 00 00 ff ff 00 00", ["UNKNOWN_TYPE", "65535 bytes", "must be 8"]),
    ],
)
def test_badHeader(header: str, words: list[str]) -> None:
    """
    A header with a bad version, a non-zero reserved byte, type 0, or a
    fixed-size type of the wrong size is refused as soon as its 8 bytes are
    in, with a message that names the problem.
    """
    reader = RecordReader()
    wire = h(header)
    assert reader.feed(wire[:7]) == []
    with pytest.raises(RemoteProtocolError) as e:
        reader.feed(wire[7:])
    for word in words:
        assert word in str(e.value)


def test_errorIsSticky() -> None:
    """
    After a protocol error the reader refuses every later feed, even valid
    data or no data, with the same error.
    """
    reader = RecordReader()
    good = encodeRecord(RecordType.STDOUT, 1, b"ok")
    assert reader.feed(good) == [Record(RecordType.STDOUT, 1, b"ok")]
    with pytest.raises(RemoteProtocolError) as first:
        reader.feed(h("02 06 00 01 00 00 00 00"))
    for later in [good, b"", encodeRecord(RecordType.STDIN, 1)]:
        with pytest.raises(RemoteProtocolError) as again:
            reader.feed(later)
        assert again.value is first.value


def test_recordsBeforeErrorInSameChunk() -> None:
    """
    A bad header is refused whether it comes after good records in the same
    chunk or in a later one.
    """
    good = encodeRecord(RecordType.STDOUT, 1, b"ok")
    bad = h("01 06 00 01 00 00 00 07")
    reader = RecordReader()
    with pytest.raises(RemoteProtocolError):
        reader.feed(good + bad)
    reader = RecordReader()
    assert reader.feed(good) == [Record(RecordType.STDOUT, 1, b"ok")]
    with pytest.raises(RemoteProtocolError):
        reader.feed(bad)


@pytest.mark.parametrize(
    "decode, name",
    [
        (decodeBeginRequestBody, "BEGIN_REQUEST"),
        (decodeEndRequestBody, "END_REQUEST"),
        (decodeUnknownTypeBody, "UNKNOWN_TYPE"),
    ],
)
@pytest.mark.parametrize("length", [0, 5, 7, 9, 16])
def test_fixedBodyWrongSize(
    decode: Callable[[bytes], object], name: str, length: int
) -> None:
    """
    The fixed-size body decoders refuse bodies that are not 8 bytes, naming
    the record type and the size.
    """
    with pytest.raises(RemoteProtocolError) as e:
        decode(bytes(length))
    assert str(e.value) == f"{name} record of {length} bytes (must be 8)"


@pytest.mark.parametrize(
    "content, pending",
    [
        (b"\x0b\x02SERVER_PORT8", 14),
        (b"\x0b", 1),
        (b"\x80\x00", 2),
        (b"\x01\x80\x00\x00", 4),
        (b"\x01\x80\x00\x00\xc8X" + b"Y" * 199, 205),
        (b"\x01\x01ab\x05", 1),
    ],
)
def test_decodePairsOverrun(content: bytes, pending: int) -> None:
    """
    A name-value pair that runs past the end of its discrete record is
    refused, naming the record type and the bytes left over.
    """
    with pytest.raises(RemoteProtocolError) as e:
        decodePairs(content, what="GET_VALUES_RESULT")
    message = str(e.value)
    assert "GET_VALUES_RESULT" in message
    assert "overruns its record" in message
    assert f"{pending} bytes" in message


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xff\xff\xff\x00",  # name length 0x7fffffff
        b"\x00\xff\xff\xff\xff",  # value length 0x7fffffff
        b"\x80\x00\x01\x00\x80\x00\x01\x00",  # 256 + 256 > 500
        b"\x80\x00\x01\xf5\x00",  # 501
    ],
)
def test_pairDecoderDeclaredLengthTooLarge(content: bytes) -> None:
    """
    A pair whose declared lengths exceed C{maxSize} is refused as soon as the
    lengths are read, before any of its data arrives.
    """
    decoder = PairDecoder(maxSize=500, what="PARAMS")
    with pytest.raises(RemoteProtocolError) as e:
        decoder.feed(content)
    message = str(e.value)
    assert "PARAMS" in message
    assert "declares" in message
    assert "limit 500" in message


def test_pairDecoderDefaultLimitOverflow() -> None:
    """
    With the default limit, two maximal 31-bit lengths together are refused.
    """
    with pytest.raises(RemoteProtocolError) as e:
        PairDecoder().feed(b"\xff\xff\xff\xff\xff\xff\xff\xff")
    assert "2147483647+2147483647" in str(e.value)


def test_pairDecoderMaxSize() -> None:
    """
    A stream longer than C{maxSize} is refused when the byte that crosses the
    limit arrives, naming the stream and the limit.
    """
    decoder = PairDecoder(maxSize=20, what="PARAMS")
    assert decoder.feed(b"\x03\x03abcdef") == [(b"abc", b"def")]
    assert decoder.feed(b"\x03\x03abcdef") == [(b"abc", b"def")]
    with pytest.raises(RemoteProtocolError) as e:
        decoder.feed(b"\x00\x00\x00\x00\x00")
    assert str(e.value) == "PARAMS stream larger than 20 bytes"


def test_pairDecoderMaxSizeExact() -> None:
    """
    A stream of exactly C{maxSize} bytes is accepted.
    """
    decoder = PairDecoder(maxSize=8)
    assert decoder.feed(b"\x03\x03abcdef") == [(b"abc", b"def")]
    decoder.finish()


@pytest.mark.parametrize("leftover", [b"\x05", b"\x80\x00\x00", b"\x01\x01a"])
def test_pairDecoderFinishWithLeftovers(leftover: bytes) -> None:
    """
    C{finish} refuses a stream that ends inside a pair, saying how many bytes
    are left over.
    """
    decoder = PairDecoder(what="PARAMS")
    assert decoder.feed(b"\x01\x01ab" + leftover) == [(b"a", b"b")]
    assert decoder.pending == len(leftover)
    with pytest.raises(RemoteProtocolError) as e:
        decoder.finish()
    assert str(e.value) == (
        f"PARAMS stream ends inside a name-value pair ({len(leftover)} bytes left over)"
    )


def test_pairLongFormForShortLength() -> None:
    """
    A 4-byte length form may also carry a length below 128 (the reader does
    not insist on the shortest form).
    """
    assert decodePairs(b"\x80\x00\x00\x01\x01ab") == [(b"a", b"b")]


# --- encode-side errors ------------------------------------------------------


class _FakeLength(bytes):
    """
    Claims a length it does not have, to test limits without allocating them.
    """

    def __new__(cls, length: int) -> _FakeLength:
        self = super().__new__(cls, b"")
        self.fakeLength = length
        return self

    fakeLength: int

    def __len__(self) -> int:
        return self.fakeLength


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: encodeHeader(6, 1, 65536), ["65536 bytes", "65535"]),
        (lambda: encodeHeader(6, 1, -1), ["-1 bytes"]),
        (lambda: encodeHeader(6, 65536, 0), ["request id 65536", "0..65535"]),
        (lambda: encodeHeader(6, -1, 0), ["request id -1"]),
        (lambda: encodeHeader(0, 1, 0), ["record type 0", "1..255"]),
        (lambda: encodeHeader(256, 1, 0), ["record type 256"]),
        (lambda: recordChunks(6, 1, b"x" * 65536), ["65536 bytes"]),
        (lambda: encodeRecord(6, 1, b"x" * 70000), ["70000 bytes"]),
        (lambda: streamChunks(6, 70000, b"x"), ["request id 70000"]),
        (lambda: streamChunks(6, 70000, b"x" * 70000), ["request id 70000"]),
        (lambda: streamEndChunks(6, 70000), ["request id 70000"]),
        (
            lambda: encodePairs([(_FakeLength(2**31), b"")]),
            ["2147483648 bytes", "2**31-1"],
        ),
        (
            lambda: encodePairs([(b"n", _FakeLength(2**31))]),
            ["2147483648 bytes"],
        ),
    ],
)
def test_encodeErrors(call: Callable[[], object], words: list[str]) -> None:
    """
    Asking the encoder for something the protocol cannot carry (content over
    65535 bytes, a bad request id or type, a pair part over 2**31-1 bytes) is
    a L{LocalProtocolError} naming the value.
    """
    with pytest.raises(LocalProtocolError) as e:
        call()
    for word in words:
        assert word in str(e.value)


def test_encodePairsLargestLength() -> None:
    """
    A pair part of exactly 2**31-1 bytes gets its length encoded (checked
    without allocating it: the length prefix is written before the data).
    """
    prefix = bytearray()
    from txfastcgi.fcgi import records

    records._encodeLength(MAX_PAIR_LENGTH, prefix)
    assert bytes(prefix) == b"\xff\xff\xff\xff"


@pytest.mark.parametrize(
    "call",
    [
        lambda: encodeBeginRequestBody(0x10000, 0),
        lambda: encodeBeginRequestBody(-1, 0),
        lambda: encodeBeginRequestBody(1, 256),
        lambda: encodeEndRequestBody(0, 256),
        lambda: encodeEndRequestBody(0, -1),
        lambda: encodeUnknownTypeBody(256),
        lambda: encodeUnknownTypeBody(-1),
    ],
)
def test_encodeBodyOutOfRange(call: Callable[[], object]) -> None:
    """
    A role, flags, protocol status or type that does not fit its field is a
    L{LocalProtocolError} (a caller bug), not a C{struct.error}.
    """
    with pytest.raises(LocalProtocolError) as e:
        call()
    assert "out of range" in str(e.value)


# --- fuzz --------------------------------------------------------------------


def _mutated(wire: bytes, flips: list[tuple[int, int]]) -> bytes:
    data = bytearray(wire)
    for index, value in flips:
        if data:
            data[index % len(data)] = value
    return bytes(data)


garbage = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=40).map(lambda tail: b"\x01" + tail),
    st.tuples(
        fs.recordLists(maxRecords=4, maxSize=300),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3),
        st.binary(max_size=20),
    ).map(lambda t: _mutated(encodeAll(t[0]), t[1]) + t[2]),
)
"""Arbitrary bytes, FastCGI-looking bytes, and valid streams with bytes changed."""


@settings(max_examples=300, deadline=None)
@given(wire=garbage, data=st.data())
def test_fuzzReader(wire: bytes, data: st.DataObject) -> None:
    """
    Arbitrary bytes in arbitrary splits make the reader return records or
    raise L{RemoteProtocolError}, never anything else; split feeding agrees
    with whole feeding on the outcome and the error message.
    """
    try:
        whole: list[Record] | str = RecordReader().feed(wire)
    except RemoteProtocolError as e:
        whole = str(e)
    points = data.draw(fs.splitPoints(len(wire)))
    reader = RecordReader()
    got: list[Record] = []
    try:
        for chunk in fs.splitAt(wire, points):
            got.extend(reader.feed(chunk))
    except RemoteProtocolError as e:
        assert whole == str(e)
        with pytest.raises(RemoteProtocolError):
            reader.feed(b"")
    else:
        assert whole == got
    try:
        readRecords(wire)
    except RemoteProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    content=st.one_of(
        st.binary(max_size=300),
        st.tuples(fs.pairLists(maxPairs=3, large=False), st.binary(max_size=6)).map(
            lambda t: encodePairs(t[0]) + t[1]
        ),
    ),
    maxSize=st.sampled_from([0, 10, 300, MAX_PAIR_LENGTH]),
    data=st.data(),
)
def test_fuzzPairs(content: bytes, maxSize: int, data: st.DataObject) -> None:
    """
    Arbitrary pair data, whole or in arbitrary splits, makes L{decodePairs}
    and L{PairDecoder} return pairs or raise L{RemoteProtocolError} only, and
    both agree.
    """
    try:
        whole: list[tuple[bytes, bytes]] | None = decodePairs(content, maxSize=maxSize)
    except RemoteProtocolError:
        whole = None
    decoder = PairDecoder(maxSize=maxSize)
    got: list[tuple[bytes, bytes]] = []
    try:
        for chunk in fs.splitAt(content, data.draw(fs.splitPoints(len(content)))):
            got.extend(decoder.feed(chunk))
        decoder.finish()
    except RemoteProtocolError:
        assert whole is None
    else:
        assert whole == got
        assert encodePairs(got) == content or any(b & 0x80 for b in content)


def test_protocolErrorHierarchy() -> None:
    """
    Both error kinds are L{ProtocolError}s, so callers can catch either.
    """
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert issubclass(LocalProtocolError, ProtocolError)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)


# --- linearity (counted, not timed) --------------------------------------------


class _CountingBytes(bytes):
    """
    Bytes that count how many bytes are sliced out of them.
    """

    sliced = 0

    def __getitem__(self, index: Any) -> Any:
        result = super().__getitem__(index)
        if isinstance(index, slice):
            _CountingBytes.sliced += len(result)
        return result


def _countCalls(function: Callable[[], object]) -> dict[str, int]:
    """
    Run C{function} under a profiler; count Python calls and C calls by name.
    """
    counts: dict[str, int] = {}

    def profile(frame: object, event: str, arg: object) -> None:
        if event == "call":
            counts["python"] = counts.get("python", 0) + 1
        elif event == "c_call":
            name = getattr(arg, "__name__", "?")
            counts[name] = counts.get(name, 0) + 1
            counts["c"] = counts.get("c", 0) + 1

    sys.setprofile(profile)
    try:
        function()
    finally:
        sys.setprofile(None)
    return counts


def _manySmallRecords(count: int) -> tuple[bytes, list[Record]]:
    records = [Record(RecordType.STDOUT, 1, b"%06d" % i) for i in range(count)]
    return encodeAll(records), records


def test_manySmallRecordsInOneChunk() -> None:
    """
    Many small records in one big chunk are each sliced out once: the bytes
    copied out of the input are no more than their content, and the work done
    (calls counted) grows linearly with the number of records.
    """
    wire, expected = _manySmallRecords(20_000)
    _CountingBytes.sliced = 0
    assert RecordReader().feed(_CountingBytes(wire)) == expected
    assert _CountingBytes.sliced <= sum(len(r.content) for r in expected)

    smallWire = _manySmallRecords(1000)[0]
    largeWire = _manySmallRecords(8000)[0]
    small = _countCalls(lambda: RecordReader().feed(smallWire))
    large = _countCalls(lambda: RecordReader().feed(largeWire))
    assert large["c"] <= 8 * small["c"] + 100
    assert large.get("python", 0) <= 8 * small.get("python", 0) + 100


def test_bigRecordByteAtATime() -> None:
    """
    A 65535-byte record fed one byte at a time is joined once, when complete,
    and the calls made grow linearly with its size.
    """
    content = fs.patternBytes(65535, 3)
    wire = encodeRecord(RecordType.STDOUT, 1, content)

    def run(data: bytes) -> list[Record]:
        reader = RecordReader()
        out: list[Record] = []
        for i in range(len(data)):
            out.extend(reader.feed(data[i : i + 1]))
        return out

    result: list[list[Record]] = []
    counts = _countCalls(lambda: result.append(run(wire)))
    assert result == [[Record(RecordType.STDOUT, 1, content)]]
    assert counts.get("join", 0) <= 1
    small = _countCalls(lambda: run(encodeRecord(RecordType.STDOUT, 1, content[:8000])))
    assert counts["c"] <= 9 * small["c"]


def test_bigRecordByteAtATimeMemory() -> None:
    """
    While a record arrives one byte at a time the reader holds memory in
    proportion to the record, not hundreds of bytes per byte received.
    """
    import gc
    import tracemalloc

    wire = encodeRecord(RecordType.STDOUT, 1, fs.patternBytes(65535, 1))
    gc.collect()
    tracemalloc.start()
    try:
        reader = RecordReader()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(8 + 65000):
            reader.feed(wire[i : i + 1])
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert not reader.atRecordBoundary
    assert held < 4 * 65535, held


def test_pairDecoderLinear() -> None:
    """
    Many small pairs in one chunk, and one 1 MiB value fed in 1 KiB pieces,
    decode correctly with work growing linearly.
    """
    pairs = [(b"NAME%05d" % i, b"value") for i in range(20_000)]
    assert decodePairs(encodePairs(pairs)) == pairs

    smallData = encodePairs(pairs[:1000])
    largeData = encodePairs(pairs[:8000])
    small = _countCalls(lambda: PairDecoder().feed(smallData))
    large = _countCalls(lambda: PairDecoder().feed(largeData))
    assert large["c"] <= 8 * small["c"] + 100

    value = fs.patternBytes(1 << 20, 5)
    encoded = encodePairs([(b"BIG", value)])
    decoder = PairDecoder()
    got: list[tuple[bytes, bytes]] = []
    for start in range(0, len(encoded), 1024):
        got.extend(decoder.feed(encoded[start : start + 1024]))
    decoder.finish()
    assert got == [(b"BIG", value)]


def test_recordRepr() -> None:
    """
    A record's repr names its type and shortens long content.
    """
    assert repr(Record(RecordType.STDOUT, 1, b"hi")) == "Record(STDOUT, requestId=1, 2 bytes: b'hi')"
    long = repr(Record(99, 2, b"x" * 40))
    assert long.startswith("Record(type 99, requestId=2, 40 bytes: b'xxxx")
    assert long.endswith("...')")


@given(
    records=st.lists(
        st.tuples(
            st.sampled_from([RecordType.STDOUT, RecordType.STDERR]),
            st.integers(min_value=1, max_value=2),
            st.binary(max_size=40),
        ),
        max_size=12,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=3),
)
@settings(max_examples=200, deadline=None)
def test_mergedReaderKeepsEveryByte(
    records: list[tuple[int, int, bytes]], cuts: list[int]
) -> None:
    """
    A reader that merges STDOUT returns, for any split of the stream, the
    same STDOUT bytes per request and the same other records, in order;
    no two consecutive records it returns are non-empty STDOUT of one
    request when the whole stream came in one chunk.
    """
    data = b"".join(encodeRecord(t, i, c) for t, i, c in records)
    whole = RecordReader(mergeTypes=(RecordType.STDOUT,)).feedTuples(data)
    for before, after in zip(whole, whole[1:]):
        assert not (
            before[0] == after[0] == RecordType.STDOUT
            and before[1] == after[1]
            and before[2]
            and after[2]
        )
    reader = RecordReader(mergeTypes=(RecordType.STDOUT,))
    split: list[tuple[int, int, bytes]] = []
    position = 0
    for cut in sorted(min(c, len(data)) for c in cuts) + [len(data)]:
        split += reader.feedTuples(data[position:cut])
        position = cut

    def normal(found: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
        # Join runs of non-empty STDOUT of one request; keep the rest.
        out: list[tuple[int, int, bytes]] = []
        for recordType, requestId, content in found:
            if (
                out
                and recordType == RecordType.STDOUT
                and content
                and out[-1][0] == RecordType.STDOUT
                and out[-1][1] == requestId
                and out[-1][2]
            ):
                out[-1] = (recordType, requestId, out[-1][2] + content)
            else:
                out.append((int(recordType), requestId, content))
        return out

    expected = normal([(int(t), i, c) for t, i, c in records])
    assert normal(whole) == expected
    assert normal(split) == expected
