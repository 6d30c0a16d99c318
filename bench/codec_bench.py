"""
Throughput of the sans-IO FastCGI record codec (L{txfastcgi.fcgi.records}).

Run from the repository root::

    python bench/codec_bench.py

Every figure is the median of 5 runs.  Beside each codec figure, measured in
the same run on the same data, is a baseline doing only the copying that any
decoder or encoder of that data must do with plain C{bytes}; the ratio
codec/baseline says what the codec's bookkeeping costs on top of that (1.00 =
as fast as copying).  No external dependencies; time.perf_counter only.
"""

from __future__ import annotations

import datetime
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from txfastcgi.fcgi.constants import ProtocolStatus, RecordType, Role  # noqa: E402
from txfastcgi.fcgi.records import (  # noqa: E402
    RecordReader,
    decodeEndRequestBody,
    encodeBeginRequestBody,
    encodeEndRequestBody,
    encodePairs,
    encodeRecord,
    recordChunks,
    streamChunks,
    streamEndChunks,
)

RUNS = 5
NETWORK_CHUNK = 65536
RECORD_CONTENT = 65535
RECORDS = 128  # 8 MiB of STDOUT per run
MB = 1e6


MIN_RUN_SECONDS = 0.2


def calibrate(function: Callable[[], object]) -> int:
    """
    How many calls of C{function} make one run last at least
    C{MIN_RUN_SECONDS} (after a warm-up call).
    """
    function()
    repeat = 1
    while True:
        start = time.perf_counter()
        for _ in range(repeat):
            function()
        if time.perf_counter() - start >= MIN_RUN_SECONDS / 4:
            return max(1, int(repeat * MIN_RUN_SECONDS / (time.perf_counter() - start)))
        repeat *= 2


def timeRun(function: Callable[[], object], repeat: int) -> float:
    """
    Wall time of one call of C{function}, averaged over one run of C{repeat}
    calls.
    """
    start = time.perf_counter()
    for _ in range(repeat):
        function()
    return (time.perf_counter() - start) / repeat


def compare(
    codec: Callable[[], object], baseline: Callable[[], object]
) -> tuple[float, float]:
    """
    Median time per call of C{codec} and of C{baseline} over C{RUNS} runs
    each, every run sized to last about C{MIN_RUN_SECONDS}; codec and baseline
    runs alternate so that both see the same machine state.
    """
    codecRepeat = calibrate(codec)
    baseRepeat = calibrate(baseline)
    codecTimes = []
    baseTimes = []
    for _ in range(RUNS):
        codecTimes.append(timeRun(codec, codecRepeat))
        baseTimes.append(timeRun(baseline, baseRepeat))
    return statistics.median(codecTimes), statistics.median(baseTimes)


def payload(length: int) -> bytes:
    """
    C{length} bytes that are not all one value.
    """
    return (bytes(range(256)) * (length // 256 + 1))[:length]


# --- bulk STDOUT: decode -------------------------------------------------------


def decodeCase() -> tuple[float, float, int]:
    """
    Decode 64 KiB STDOUT records (65535 content bytes, 65544 on the wire) fed
    in 64 KiB chunks, which therefore never align with the records: almost
    every record arrives in two pieces.

    Baseline: the same content gathered from the same chunks with
    C{b"".join} of C{memoryview} slices at known offsets (no parsing).
    """
    content = payload(RECORD_CONTENT)
    wire = b"".join(encodeRecord(RecordType.STDOUT, 1, content) for _ in range(RECORDS))
    chunks = [wire[i : i + NETWORK_CHUNK] for i in range(0, len(wire), NETWORK_CHUNK)]
    total = RECORDS * RECORD_CONTENT

    def codec() -> None:
        reader = RecordReader()
        got = 0
        for chunk in chunks:
            for record in reader.feed(chunk):
                got += len(record.content)
        assert got == total

    # Where each record's content lies in the chunk list, worked out once.
    plan: list[list[tuple[int, int, int]]] = []
    recordSize = 8 + RECORD_CONTENT + (-RECORD_CONTENT & 7)
    for n in range(RECORDS):
        start = n * recordSize + 8
        stop = start + RECORD_CONTENT
        pieces = []
        while start < stop:
            index, offset = divmod(start, NETWORK_CHUNK)
            take = min(stop - start, NETWORK_CHUNK - offset)
            pieces.append((index, offset, offset + take))
            start += take
        plan.append(pieces)

    def baseline() -> None:
        views = [memoryview(chunk) for chunk in chunks]
        got = 0
        for pieces in plan:
            if len(pieces) == 1:
                index, a, b = pieces[0]
                got += len(chunks[index][a:b])
            else:
                got += len(b"".join([views[i][a:b] for i, a, b in pieces]))
        assert got == total

    return (*compare(codec, baseline), total)


# --- bulk STDOUT: encode -------------------------------------------------------


def encodePiecesCase() -> tuple[float, float, int]:
    """
    Encode 64 KiB STDOUT writes (65535 bytes each, as an application would
    write them) with L{streamChunks}: header + the same object + padding.

    Baseline: C{b"".join} of the same header/content/padding pieces, i.e. what
    a transport does with them (one copy per byte).
    """
    content = payload(RECORD_CONTENT)
    writes = [content] * RECORDS
    total = RECORDS * RECORD_CONTENT
    header = encodeRecord(RecordType.STDOUT, 1, b"")
    pad = bytes(-RECORD_CONTENT & 7)

    def codec() -> None:
        out: list[bytes] = []
        for data in writes:
            out.extend(streamChunks(RecordType.STDOUT, 1, data))
        assert len(out) == 3 * RECORDS

    def baseline() -> None:
        got = 0
        for data in writes:
            got += len(b"".join([header, data, pad]))
        assert got == total + RECORDS * (8 + len(pad))

    return (*compare(codec, baseline), total)


def encodeLongCase() -> tuple[float, float, int]:
    """
    Encode one 8 MiB STDOUT write with L{streamChunks}, which cuts it into
    65528-byte records (a copy per piece).

    Baseline: C{data[i:i+65528]} slices of the same data.
    """
    data = payload(RECORDS * RECORD_CONTENT)
    step = 65528

    def codec() -> None:
        chunks = streamChunks(RecordType.STDOUT, 1, data)
        assert sum(map(len, chunks)) >= len(data)

    def baseline() -> None:
        pieces = [data[i : i + step] for i in range(0, len(data), step)]
        assert sum(map(len, pieces)) == len(data)

    return (*compare(codec, baseline), len(data))


# --- small responder exchange --------------------------------------------------


PARAMS = [
    (b"GATEWAY_INTERFACE", b"CGI/1.1"),
    (b"SERVER_SOFTWARE", b"txfastcgi/0.1"),
    (b"SERVER_NAME", b"www.example.com"),
    (b"SERVER_PORT", b"80"),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"),
    (b"SERVER_ADDR", b"192.0.2.10"),
    (b"REMOTE_ADDR", b"198.51.100.7"),
    (b"REMOTE_PORT", b"51234"),
    (b"REQUEST_METHOD", b"GET"),
    (b"REQUEST_URI", b"/app/items/42?sort=name&page=3"),
    (b"SCRIPT_NAME", b"/app"),
    (b"SCRIPT_FILENAME", b"/srv/www/cgi-bin/app.fcgi"),
    (b"PATH_INFO", b"/items/42"),
    (b"PATH_TRANSLATED", b"/srv/www/htdocs/items/42"),
    (b"QUERY_STRING", b"sort=name&page=3"),
    (b"DOCUMENT_ROOT", b"/srv/www/htdocs"),
    (b"CONTENT_LENGTH", b""),
    (b"CONTENT_TYPE", b""),
    (b"HTTP_HOST", b"www.example.com"),
    (b"HTTP_USER_AGENT", b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    (b"HTTP_ACCEPT", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    (b"HTTP_ACCEPT_LANGUAGE", b"en-GB,en;q=0.5"),
    (b"HTTP_ACCEPT_ENCODING", b"gzip, deflate, br"),
    (b"HTTP_CONNECTION", b"keep-alive"),
    (b"HTTP_COOKIE", b"session=" + b"a" * 120),
    (b"HTTP_REFERER", b"https://www.example.com/app/items"),
    (b"HTTP_CACHE_CONTROL", b"max-age=0"),
    (b"HTTP_UPGRADE_INSECURE_REQUESTS", b"1"),
    (b"HTTPS", b"off"),
    (b"REDIRECT_STATUS", b"200"),
]


def exchangeCase() -> tuple[float, int]:
    """
    One small responder exchange, the codec's share of it: encode
    BEGIN_REQUEST + PARAMS (30 pairs) + empty PARAMS + empty STDIN; decode
    STDOUT (200 bytes) + empty STDOUT + END_REQUEST arriving in one chunk.
    """
    response = b"".join(
        [
            encodeRecord(RecordType.STDOUT, 1, b"Status: 200 OK\r\nContent-Type: text/html\r\n\r\n".ljust(200, b"x")),
            encodeRecord(RecordType.STDOUT, 1),
            encodeRecord(RecordType.END_REQUEST, 1, encodeEndRequestBody(0, ProtocolStatus.REQUEST_COMPLETE)),
        ]
    )
    begin = encodeBeginRequestBody(Role.RESPONDER, 0)

    def exchange() -> None:
        out = recordChunks(RecordType.BEGIN_REQUEST, 1, begin)
        out += streamChunks(RecordType.PARAMS, 1, encodePairs(PARAMS))
        out += streamEndChunks(RecordType.PARAMS, 1)
        out += streamEndChunks(RecordType.STDIN, 1)
        records = RecordReader().feed(response)
        assert decodeEndRequestBody(records[-1].content) == (0, 0)

    repeat = calibrate(exchange)
    times = [timeRun(exchange, repeat) for _ in range(RUNS)]
    return statistics.median(times), 4 + 3


def main() -> None:
    """
    Run every case and print the table.
    """
    print(f"txfastcgi codec benchmark  {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}")
    print(f"Python {sys.version.split()[0]} ({platform.python_implementation()}) on {platform.machine()} {platform.system()}")
    print(f"median of {RUNS} runs; MB = 10^6 bytes of record content\n")
    print(f"{'case':<50} {'codec MB/s':>11} {'baseline MB/s':>14} {'codec/base':>11}")
    cases = [
        ("decode 64 KiB STDOUT records, 64 KiB chunks", decodeCase),
        ("encode 64 KiB STDOUT writes (streamChunks)", encodePiecesCase),
        ("encode one 8 MiB STDOUT write (streamChunks)", encodeLongCase),
    ]
    for name, case in cases:
        codec, base, size = case()
        codecRate = size / codec / MB
        baseRate = size / base / MB
        print(f"{name:<50} {codecRate:>11.0f} {baseRate:>14.0f} {codecRate / baseRate:>11.2f}")
    seconds, recordsPer = exchangeCase()
    perSecond = 1 / seconds
    print(
        f"\nsmall responder exchange (4 records encoded incl. 30 PARAMS pairs, 3 decoded):\n"
        f"  {perSecond:,.0f} exchanges/s = {perSecond * recordsPer:,.0f} records/s "
        f"({seconds * 1e6:.1f} us per exchange)"
    )


if __name__ == "__main__":
    main()
