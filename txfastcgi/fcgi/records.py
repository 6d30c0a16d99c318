# -*- test-case-name: tests.test_records -*-
"""
FastCGI records and name-value pairs: encoding, and an incremental reader.

Everything here is pure: bytes in, values out, no I/O.  Output is produced as
lists of byte strings ("chunks") so that content handed to us as C{bytes} is
written as is, with a separate header and padding, and never copied into a
larger buffer (use C{transport.writeSequence}).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable

from txfastcgi.fcgi.constants import (
    FCGI_HEADER_LEN,
    FCGI_MAX_CONTENT_LENGTH,
    FCGI_VERSION_1,
    MAX_PAIR_LENGTH,
    RecordType,
    recordTypeName,
)
from txfastcgi.fcgi.errors import LocalProtocolError, RemoteProtocolError

_HEADER = struct.Struct(">BBHHBB")
_FIXED_BODY = struct.Struct(">HB5x")
_END_BODY = struct.Struct(">IB3x")
_UNKNOWN_BODY = struct.Struct(">B7x")
_LONG_LENGTH = struct.Struct(">I")
_PADDING = bytes(8)

STREAM_CHUNK_SIZE = FCGI_MAX_CONTENT_LENGTH - 7
"""
Content bytes per record when a long stream is split: the largest multiple of
8 that fits, so that split records need no padding.
"""

_FIXED_SIZE_TYPES = frozenset(
    {RecordType.BEGIN_REQUEST, RecordType.END_REQUEST, RecordType.UNKNOWN_TYPE}
)


@dataclass(frozen=True, slots=True)
class Record:
    """
    One FastCGI record, padding removed.

    @ivar type: the record type byte (a L{RecordType} value, or an unknown one).
    @ivar requestId: the request id; 0 for management records.
    @ivar content: the content bytes.
    """

    type: int
    requestId: int
    content: bytes = b""

    def __repr__(self) -> str:
        shown = self.content if len(self.content) <= 32 else self.content[:32] + b"..."
        return (
            f"Record({recordTypeName(self.type)}, requestId={self.requestId}, "
            f"{len(self.content)} bytes: {shown!r})"
        )


def paddingLength(contentLength: int) -> int:
    """
    The padding that keeps a record of C{contentLength} bytes 8-byte aligned.
    """
    return -contentLength & 7


def encodeHeader(recordType: int, requestId: int, contentLength: int) -> bytes:
    """
    Encode the 8-byte header of a record, with the padding that aligns it.

    @raise LocalProtocolError: for a length, id or type out of range.
    """
    if not 0 <= contentLength <= FCGI_MAX_CONTENT_LENGTH:
        raise LocalProtocolError(
            f"record content of {contentLength} bytes (at most 65535 fit in one record)"
        )
    if not 0 <= requestId <= 0xFFFF:
        raise LocalProtocolError(f"request id {requestId} out of range 0..65535")
    if not 1 <= recordType <= 0xFF:
        raise LocalProtocolError(f"record type {recordType} out of range 1..255")
    return _HEADER.pack(
        FCGI_VERSION_1,
        recordType,
        requestId,
        contentLength,
        paddingLength(contentLength),
        0,
    )


def recordChunks(recordType: int, requestId: int, content: bytes = b"") -> list[bytes]:
    """
    One record as chunks: header, content (the same object, not copied) and
    padding.

    @raise LocalProtocolError: if C{content} does not fit in one record.
    """
    length = len(content)
    chunks = [encodeHeader(recordType, requestId, length)]
    if length:
        chunks.append(content)
        pad = -length & 7
        if pad:
            chunks.append(_PADDING[:pad])
    return chunks


def encodeRecord(recordType: int, requestId: int, content: bytes = b"") -> bytes:
    """
    One record as a single byte string.
    """
    return b"".join(recordChunks(recordType, requestId, content))


def streamChunks(recordType: int, requestId: int, data: bytes) -> list[bytes]:
    """
    Stream content as records of at most 65535 bytes.  Empty C{data} gives no
    records (an empty record would end the stream; see L{streamEndChunks}).

    Data of up to 65535 bytes is passed on without a copy; longer data is cut
    into L{STREAM_CHUNK_SIZE} pieces.
    """
    length = len(data)
    if length <= FCGI_MAX_CONTENT_LENGTH:
        return recordChunks(recordType, requestId, data) if length else []
    chunks: list[bytes] = []
    view = memoryview(data)
    for start in range(0, length, STREAM_CHUNK_SIZE):
        chunks.extend(
            recordChunks(
                recordType, requestId, bytes(view[start : start + STREAM_CHUNK_SIZE])
            )
        )
    return chunks


def streamEndChunks(recordType: int, requestId: int) -> list[bytes]:
    """
    The empty record that ends a stream.
    """
    return [encodeHeader(recordType, requestId, 0)]


def encodeBeginRequestBody(role: int, flags: int) -> bytes:
    """
    The 8-byte body of BEGIN_REQUEST.

    @raise LocalProtocolError: for a role or flags that do not fit their field.
    """
    _checkField("role", role, 0xFFFF)
    _checkField("flags", flags, 0xFF)
    return _FIXED_BODY.pack(role, flags)


def decodeBeginRequestBody(content: bytes) -> tuple[int, int]:
    """
    Decode a BEGIN_REQUEST body into C{(role, flags)}.

    @raise RemoteProtocolError: if the body is not 8 bytes.
    """
    _checkFixedSize(RecordType.BEGIN_REQUEST, len(content))
    role, flags = _FIXED_BODY.unpack(content)
    return role, flags


def encodeEndRequestBody(appStatus: int, protocolStatus: int) -> bytes:
    """
    The 8-byte body of END_REQUEST; C{appStatus} is taken modulo 2**32 so that
    negative exit codes encode as C does.

    @raise LocalProtocolError: for a protocol status that does not fit a byte.
    """
    _checkField("protocol status", protocolStatus, 0xFF)
    return _END_BODY.pack(appStatus & 0xFFFFFFFF, protocolStatus)


def decodeEndRequestBody(content: bytes) -> tuple[int, int]:
    """
    Decode an END_REQUEST body into C{(appStatus, protocolStatus)}.

    @raise RemoteProtocolError: if the body is not 8 bytes.
    """
    _checkFixedSize(RecordType.END_REQUEST, len(content))
    appStatus, protocolStatus = _END_BODY.unpack(content)
    return appStatus, protocolStatus


def encodeUnknownTypeBody(recordType: int) -> bytes:
    """
    The 8-byte body of UNKNOWN_TYPE naming the type we did not understand.

    @raise LocalProtocolError: for a type that does not fit a byte.
    """
    _checkField("record type", recordType, 0xFF)
    return _UNKNOWN_BODY.pack(recordType)


def decodeUnknownTypeBody(content: bytes) -> int:
    """
    Decode an UNKNOWN_TYPE body into the type it names.

    @raise RemoteProtocolError: if the body is not 8 bytes.
    """
    _checkFixedSize(RecordType.UNKNOWN_TYPE, len(content))
    (recordType,) = _UNKNOWN_BODY.unpack(content)
    return int(recordType)


def _checkField(name: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise LocalProtocolError(f"{name} {value} out of range 0..{maximum}")


def _checkFixedSize(recordType: int, length: int) -> None:
    if length != 8:
        raise RemoteProtocolError(
            f"{recordTypeName(recordType)} record of {length} bytes (must be 8)"
        )


def _encodeLength(length: int, out: bytearray) -> None:
    if length < 0x80:
        out.append(length)
    elif length <= MAX_PAIR_LENGTH:
        out += _LONG_LENGTH.pack(length | 0x80000000)
    else:
        raise LocalProtocolError(
            f"name-value pair part of {length} bytes (at most 2**31-1 can be encoded)"
        )


def encodePairs(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """
    Encode name-value pairs (1-byte lengths up to 127, 4-byte lengths above).
    """
    out = bytearray()
    append = out.append
    for name, value in pairs:
        nameLength = len(name)
        valueLength = len(value)
        if nameLength < 0x80 and valueLength < 0x80:
            # The common case (every CGI variable name, most values).
            append(nameLength)
            append(valueLength)
        else:
            _encodeLength(nameLength, out)
            _encodeLength(valueLength, out)
        out += name
        out += value
    return bytes(out)


class PairDecoder:
    """
    Incremental decoder for a stream of name-value pairs, such as the content of
    a PARAMS stream, where a pair may straddle record boundaries.

    @ivar maxSize: the most bytes the whole stream may hold; a longer stream, or a
        pair that declares a length beyond it, raises L{RemoteProtocolError}.
    """

    def __init__(self, maxSize: int = MAX_PAIR_LENGTH, what: str = "PARAMS") -> None:
        self.maxSize = maxSize
        self._what = what
        self._buffer = bytearray()
        self._total = 0

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """
        Add bytes; return the pairs they complete.

        @raise RemoteProtocolError: if the stream gets larger than C{maxSize}.
        """
        self._total += len(data)
        if self._total > self.maxSize:
            raise RemoteProtocolError(
                f"{self._what} stream larger than {self.maxSize} bytes"
            )
        buf = self._buffer
        buf += data
        pairs: list[tuple[bytes, bytes]] = []
        pos = 0
        end = len(buf)
        while pos < end:
            parsed = self._lengths(buf, pos, end)
            if parsed is None:
                break
            nameLength, valueLength, start = parsed
            stop = start + nameLength + valueLength
            if stop > end:
                break
            pairs.append(
                (bytes(buf[start : start + nameLength]), bytes(buf[start + nameLength : stop]))
            )
            pos = stop
        if pos:
            del buf[:pos]
        return pairs

    def _lengths(self, buf: bytearray, pos: int, end: int) -> tuple[int, int, int] | None:
        lengths = []
        for _ in range(2):
            if pos >= end:
                return None
            first = buf[pos]
            if first < 0x80:
                lengths.append(first)
                pos += 1
            else:
                if pos + 4 > end:
                    return None
                (value,) = _LONG_LENGTH.unpack_from(buf, pos)
                lengths.append(value & 0x7FFFFFFF)
                pos += 4
        nameLength, valueLength = lengths
        if nameLength + valueLength > self.maxSize:
            raise RemoteProtocolError(
                f"{self._what} name-value pair declares {nameLength}+{valueLength} "
                f"bytes (limit {self.maxSize})"
            )
        return nameLength, valueLength, pos

    @property
    def pending(self) -> int:
        """
        Bytes of an incomplete pair held back.
        """
        return len(self._buffer)

    def finish(self) -> None:
        """
        The stream has ended: no partial pair may be left.

        @raise RemoteProtocolError: if one is.
        """
        if self._buffer:
            raise RemoteProtocolError(
                f"{self._what} stream ends inside a name-value pair "
                f"({len(self._buffer)} bytes left over)"
            )


def decodePairs(
    content: bytes, what: str = "GET_VALUES", maxSize: int = MAX_PAIR_LENGTH
) -> list[tuple[bytes, bytes]]:
    """
    Decode the name-value pairs of one discrete record (GET_VALUES,
    GET_VALUES_RESULT): a pair may not overrun it.

    @raise RemoteProtocolError: if the content does not end on a pair boundary.
    """
    decoder = PairDecoder(maxSize=maxSize, what=what)
    pairs = decoder.feed(content)
    if decoder.pending:
        raise RemoteProtocolError(
            f"{what} name-value pair overruns its record "
            f"({decoder.pending} bytes of an incomplete pair)"
        )
    return pairs


_HEADER_STATE, _CONTENT_STATE, _PADDING_STATE = range(3)

_MAX_PIECES = 8
"""
Chunks of one record's content held by reference; past this many (content
trickling in small chunks) they are copied into one buffer instead, so a
record never costs more than about its own size however it is cut.
"""


def _joinRun(
    data: bytes, recordType: int, requestId: int, run: list[tuple[int, int]]
) -> tuple[int, int, bytes]:
    """
    One record whose content is the contents at the offsets in C{run}.
    """
    if len(run) == 1:
        start, stop = run[0]
        return (recordType, requestId, data[start:stop])
    view = memoryview(data)
    return (recordType, requestId, b"".join([view[start:stop] for start, stop in run]))


class RecordReader:
    """
    Incremental record reader: feed it bytes as they arrive, in any split, and it
    returns the same records.

    It holds at most one record (content at most 65535 bytes).  Content that
    arrives whole in one chunk is sliced out once; content split across a few
    chunks is gathered by reference and joined once when complete; content split
    across many small chunks is copied into one buffer as it arrives.

    States: reading a header, reading content, skipping padding.  After an
    error the reader is broken and raises the same error again.
    """

    def __init__(self, mergeTypes: Iterable[int] = ()) -> None:
        """
        @param mergeTypes: record types whose consecutive non-empty records
            of one request, when they arrive whole in one chunk, are returned
            as one record with their contents joined (a large STDOUT stream
            then costs one record per read rather than one per 8 KiB).
        """
        self._merge = frozenset(mergeTypes)
        self._state = _HEADER_STATE
        self._header = bytearray()
        self._type = 0
        self._requestId = 0
        self._remaining = 0
        self._padding = 0
        self._pieces: list[memoryview] = []
        self._partial: bytearray | None = None
        self._error: RemoteProtocolError | None = None

    @property
    def atRecordBoundary(self) -> bool:
        """
        C{True} when no partial record is held: the stream may end here.
        """
        return self._state == _HEADER_STATE and not self._header

    def describePartial(self) -> str:
        """
        Describe what is held of an incomplete record, for error messages.
        """
        if self._state == _HEADER_STATE:
            return f"{len(self._header)} of 8 header bytes"
        if self._state == _CONTENT_STATE:
            return (
                f"{recordTypeName(self._type)} record for request {self._requestId} "
                f"missing {self._remaining} content bytes"
            )
        return f"{recordTypeName(self._type)} record missing {self._padding} padding bytes"

    def feed(self, data: bytes) -> list[Record]:
        """
        Add bytes; return the records they complete, in order.

        @raise RemoteProtocolError: for a header that breaks the protocol.
        """
        return [Record(*fields) for fields in self.feedTuples(data)]

    def feedTuples(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """
        Like L{feed}, with each record as a C{(type, requestId, content)}
        tuple rather than a L{Record} (cheaper, for a connection's hot path).

        @raise RemoteProtocolError: for a header that breaks the protocol.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._feed(data)
        except RemoteProtocolError as e:
            self._error = e
            raise

    def _feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        if not isinstance(data, bytes):
            data = bytes(data)
        records: list[tuple[int, int, bytes]] = []
        pos = 0
        end = len(data)
        if self._state == _HEADER_STATE and not self._header:
            # Fast path: whole records (header, content and padding all in
            # this chunk), as an application's answer usually arrives.
            unpack = _HEADER.unpack_from
            merge = self._merge
            # A run of records to merge: their type, request id and content
            # offsets.
            runType = runId = -1
            run: list[tuple[int, int]] = []
            while end - pos >= FCGI_HEADER_LEN:
                version, recordType, requestId, length, padding, reserved = unpack(
                    data, pos
                )
                start = pos + FCGI_HEADER_LEN
                stop = start + length
                if (
                    stop + padding > end
                    or version != FCGI_VERSION_1
                    or reserved
                    or not recordType
                    or (recordType in _FIXED_SIZE_TYPES and length != 8)
                ):
                    # Incomplete, or broken: the general path below deals
                    # with it (and raises for a broken header).
                    break
                pos = stop + padding
                if length and recordType in merge:
                    if recordType == runType and requestId == runId:
                        run.append((start, stop))
                        continue
                    if run:
                        records.append(_joinRun(data, runType, runId, run))
                    runType, runId, run = recordType, requestId, [(start, stop)]
                    continue
                if run:
                    records.append(_joinRun(data, runType, runId, run))
                    runType = runId = -1
                    run = []
                records.append((recordType, requestId, data[start:stop]))
            if run:
                records.append(_joinRun(data, runType, runId, run))
            if pos == end:
                return records
        view: memoryview | None = None
        while pos < end:
            state = self._state
            if state == _HEADER_STATE:
                if not self._header and end - pos >= FCGI_HEADER_LEN:
                    fields = _HEADER.unpack_from(data, pos)
                    pos += FCGI_HEADER_LEN
                else:
                    take = min(FCGI_HEADER_LEN - len(self._header), end - pos)
                    self._header += data[pos : pos + take]
                    pos += take
                    if len(self._header) < FCGI_HEADER_LEN:
                        break
                    fields = _HEADER.unpack(self._header)
                    self._header.clear()
                self._startRecord(*fields)
                if self._remaining == 0:
                    records.append((self._type, self._requestId, b""))
                    self._state = _PADDING_STATE if self._padding else _HEADER_STATE
            elif state == _CONTENT_STATE:
                available = end - pos
                remaining = self._remaining
                if not self._pieces and self._partial is None and available >= remaining:
                    content = data[pos : pos + remaining]
                    pos += remaining
                else:
                    if view is None:
                        view = memoryview(data)
                    take = min(available, remaining)
                    piece = view[pos : pos + take]
                    if self._partial is not None:
                        self._partial += piece
                    elif len(self._pieces) < _MAX_PIECES:
                        self._pieces.append(piece)
                    else:
                        self._partial = bytearray().join(self._pieces)
                        self._partial += piece
                        self._pieces = []
                    pos += take
                    self._remaining = remaining - take
                    if self._remaining:
                        break
                    if self._partial is not None:
                        content = bytes(self._partial)
                        self._partial = None
                    else:
                        content = b"".join(self._pieces)
                        self._pieces = []
                records.append((self._type, self._requestId, content))
                self._state = _PADDING_STATE if self._padding else _HEADER_STATE
            else:
                take = min(self._padding, end - pos)
                pos += take
                self._padding -= take
                if self._padding == 0:
                    self._state = _HEADER_STATE
        return records

    def _startRecord(
        self,
        version: int,
        recordType: int,
        requestId: int,
        contentLength: int,
        padding: int,
        reserved: int,
    ) -> None:
        if version != FCGI_VERSION_1:
            raise RemoteProtocolError(
                f"record with protocol version {version} (expected 1); "
                "the stream is not FastCGI or is out of step"
            )
        if reserved != 0:
            raise RemoteProtocolError(
                f"record header with reserved byte {reserved} (must be 0); "
                "the stream is out of step"
            )
        if recordType == 0:
            raise RemoteProtocolError("record of type 0 (types start at 1)")
        if recordType in _FIXED_SIZE_TYPES and contentLength != 8:
            _checkFixedSize(recordType, contentLength)
        self._type = recordType
        self._requestId = requestId
        self._remaining = contentLength
        self._padding = padding
        self._state = _CONTENT_STATE


def readRecords(data: bytes) -> list[Record]:
    """
    Decode a complete byte string of records.

    @raise RemoteProtocolError: for bad records or a trailing partial record.
    """
    reader = RecordReader()
    records = reader.feed(data)
    if not reader.atRecordBoundary:
        raise RemoteProtocolError(f"stream ends inside a record: {reader.describePartial()}")
    return records
