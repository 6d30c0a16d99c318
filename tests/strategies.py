"""
Hypothesis strategies for the FastCGI codec (L{txfastcgi.fcgi.records}).

Sizes favour the boundaries where codecs go wrong: 0, 1, the 8-byte padding
step, 127/128 (the 1-byte/4-byte name-value length switch), 255/256 and the
65535-byte record limit.  Large byte strings are built from a seeded pattern
rather than drawn byte by byte, because hypothesis draws at most a few KiB of
raw data per example.
"""

from __future__ import annotations

from hypothesis import strategies as st

from txfastcgi.fcgi.constants import FCGI_MAX_CONTENT_LENGTH, RecordType
from txfastcgi.fcgi.records import (
    Record,
    encodeBeginRequestBody,
    encodeEndRequestBody,
    encodePairs,
    encodeUnknownTypeBody,
)

_PATTERN = bytes(range(256)) * 2


def patternBytes(length: int, seed: int = 0) -> bytes:
    """
    A deterministic byte string of C{length} bytes that is not all one value,
    so that misplaced slices show up as wrong content.

    @param length: how many bytes.
    @param seed: where in the 0..255 cycle to start.
    """
    seed %= 256
    block = _PATTERN[seed : seed + 256]
    return (block * (length // 256 + 1))[:length]


CONTENT_BOUNDARIES = (
    0, 1, 2, 7, 8, 9, 15, 16, 17, 127, 128, 255, 256,
    65527, 65528, 65529, 65534, FCGI_MAX_CONTENT_LENGTH,
)
"""Content lengths where padding and the one-record limit change."""

PAIR_LENGTH_BOUNDARIES = (0, 1, 126, 127, 128, 129, 254, 255, 256, 65535, 65536, 70000)
"""Name or value lengths around the 1-byte/4-byte switch and the record size."""

REQUEST_ID_BOUNDARIES = (0, 1, 2, 255, 256, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)


def sizedBytes(lengths: st.SearchStrategy[int]) -> st.SearchStrategy[bytes]:
    """
    Byte strings whose lengths come from C{lengths}: random bytes when short,
    a seeded pattern when long.
    """

    def build(length: int) -> st.SearchStrategy[bytes]:
        if length <= 64:
            return st.binary(min_size=length, max_size=length)
        return st.integers(0, 255).map(lambda seed: patternBytes(length, seed))

    return lengths.flatmap(build)


def contentLengths(maxSize: int = FCGI_MAX_CONTENT_LENGTH) -> st.SearchStrategy[int]:
    """
    Content lengths 0..C{maxSize}, mostly boundaries and small sizes.
    """
    return st.one_of(
        st.sampled_from([n for n in CONTENT_BOUNDARIES if n <= maxSize]),
        st.integers(0, min(64, maxSize)),
        st.integers(0, maxSize),
    )


def contents(maxSize: int = FCGI_MAX_CONTENT_LENGTH) -> st.SearchStrategy[bytes]:
    """
    Record contents of 0..C{maxSize} bytes, favouring boundaries.
    """
    return sizedBytes(contentLengths(maxSize))


def requestIds() -> st.SearchStrategy[int]:
    """
    Request ids 0..65535, favouring boundaries.
    """
    return st.one_of(st.sampled_from(REQUEST_ID_BOUNDARIES), st.integers(0, 0xFFFF))


def recordTypes(unknown: bool = True) -> st.SearchStrategy[int]:
    """
    Record type bytes: the eleven defined types, and (if C{unknown}) types
    12..255 that a reader must pass through.
    """
    known = st.sampled_from(list(RecordType)).map(int)
    if not unknown:
        return known
    return st.one_of(known, st.integers(int(RecordType.UNKNOWN_TYPE) + 1, 255))


def pairLengths(large: bool = True) -> st.SearchStrategy[int]:
    """
    Name or value lengths around 0, 127/128, 255, 65535 and (if C{large}) some
    larger.
    """
    boundaries = [n for n in PAIR_LENGTH_BOUNDARIES if large or n <= 256]
    return st.one_of(st.sampled_from(boundaries), st.integers(0, 300))


def pairs(large: bool = True) -> st.SearchStrategy[tuple[bytes, bytes]]:
    """
    One name-value pair, C{(name, value)}, lengths from L{pairLengths}.
    """
    return st.tuples(sizedBytes(pairLengths(large)), sizedBytes(pairLengths(large)))


def pairLists(
    maxPairs: int = 6, large: bool = True
) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    """
    Lists of name-value pairs.
    """
    return st.lists(pairs(large), max_size=maxPairs)


def _fixedBody(recordType: int) -> st.SearchStrategy[bytes]:
    if recordType == RecordType.BEGIN_REQUEST:
        return st.builds(encodeBeginRequestBody, st.integers(0, 0xFFFF), st.integers(0, 255))
    if recordType == RecordType.END_REQUEST:
        return st.builds(
            encodeEndRequestBody, st.integers(0, 0xFFFFFFFF), st.integers(0, 255)
        )
    return st.builds(encodeUnknownTypeBody, st.integers(1, 255))


def recordContents(
    recordType: int, maxSize: int = FCGI_MAX_CONTENT_LENGTH
) -> st.SearchStrategy[bytes]:
    """
    Content that makes sense for C{recordType}: 8-byte bodies for the fixed
    types, empty for ABORT_REQUEST, encoded pairs for the pair types, else
    any bytes.
    """
    if recordType in (
        RecordType.BEGIN_REQUEST,
        RecordType.END_REQUEST,
        RecordType.UNKNOWN_TYPE,
    ):
        return _fixedBody(recordType)
    if recordType == RecordType.ABORT_REQUEST:
        return st.just(b"")
    if recordType in (
        RecordType.PARAMS,
        RecordType.GET_VALUES,
        RecordType.GET_VALUES_RESULT,
    ):
        return pairLists(maxPairs=4, large=False).map(encodePairs).filter(
            lambda content: len(content) <= maxSize
        )
    return contents(maxSize)


def records(
    maxSize: int = FCGI_MAX_CONTENT_LENGTH, types: st.SearchStrategy[int] | None = None
) -> st.SearchStrategy[Record]:
    """
    Records of any type (unknown ones included) with content fitting the type.
    """
    if types is None:
        types = recordTypes()

    def build(recordType: int) -> st.SearchStrategy[Record]:
        return st.builds(
            Record, st.just(recordType), requestIds(), recordContents(recordType, maxSize)
        )

    return types.flatmap(build)


def recordLists(
    maxRecords: int = 8, maxSize: int = FCGI_MAX_CONTENT_LENGTH
) -> st.SearchStrategy[list[Record]]:
    """
    Lists of records, as a peer would send them back to back.
    """
    return st.lists(records(maxSize), max_size=maxRecords)


def splitPoints(length: int, maxSplits: int = 12) -> st.SearchStrategy[list[int]]:
    """
    Sorted cut positions inside a byte string of C{length} bytes (ends
    included, duplicates allowed: they make empty chunks).
    """
    return st.lists(st.integers(0, length), max_size=maxSplits).map(sorted)


def splitAt(data: bytes, points: list[int]) -> list[bytes]:
    """
    Cut C{data} at sorted C{points}.
    """
    chunks = []
    start = 0
    for point in points:
        chunks.append(data[start:point])
        start = point
    chunks.append(data[start:])
    return chunks
