"""
WSGI test applications for C{twistd fastcgi-app} (tests/test_app_peers.py,
tests/test_apptap.py).

C{echo}: C{?size=N} streams N bytes of L{pattern} (64 KiB blocks);
otherwise it streams the request body back as it reads it (64 KiB blocks of
C{wsgi.input}), so neither side is ever held whole in memory.  C{?sha=1}
reads the whole body first and answers C{"<length> <sha256 hex>"}.
C{?env=1} answers the environ as text.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Iterator

BLOCK = 65536


def pattern(length: int) -> bytes:
    """
    The body C{?size=length} sends: byte k is C{b"0123456789abcdef"[k % 16]}.
    """
    chunk = b"0123456789abcdef" * (BLOCK // 16)
    whole, rest = divmod(length, BLOCK)
    return chunk * whole + chunk[:rest]


def echo(environ: dict[str, Any], startResponse: Callable[..., Any]) -> Iterator[bytes]:
    """
    The echo application (see the module docstring).
    """
    query = dict(
        part.partition("=")[::2] for part in environ.get("QUERY_STRING", "").split("&") if part
    )
    if "env" in query:
        startResponse("200 OK", [("Content-Type", "text/plain")])
        yield "".join(f"{k}={v}\n" for k, v in sorted(environ.items())).encode("utf-8", "replace")
        return
    if "sha" in query:
        digest = hashlib.sha256()
        length = 0
        inp = environ["wsgi.input"]
        while True:
            block = inp.read(BLOCK)
            if not block:
                break
            digest.update(block)
            length += len(block)
        startResponse("200 OK", [("Content-Type", "text/plain")])
        yield f"{length} {digest.hexdigest()}".encode()
        return
    if "size" in query:
        size = int(query["size"])
        startResponse(
            "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
        )
        chunk = pattern(BLOCK)
        sent = 0
        while sent < size:
            block = chunk[: min(BLOCK, size - sent)]
            sent += len(block)
            yield block
        return
    startResponse("200 OK", [("Content-Type", "application/octet-stream")])
    inp = environ["wsgi.input"]
    while True:
        block = inp.read(BLOCK)
        if not block:
            return
        yield block


def handler(request: Any) -> None:
    """
    A txfastcgi handler (for C{--handler}): a fixed text response.
    """
    request.write(b"Content-Type: text/plain\r\n\r\nhandled\n")
