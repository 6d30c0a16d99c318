"""
The FastCGI 1.0 protocol without I/O (sans-IO): records, name-value pairs, and
the two sides of a connection as state machines that turn bytes into events
and calls into bytes.

Nothing under this package imports Twisted (C{tests/test_sansio_purity.py}
enforces it): L{txfastcgi.client} and L{txfastcgi.application} are the Twisted
shells around L{ClientConnection} and L{ServerConnection}.
"""

from txfastcgi.fcgi.client import ClientConnection
from txfastcgi.fcgi.constants import (
    FCGI_KEEP_CONN,
    FCGI_MAX_CONNS,
    FCGI_MAX_REQS,
    FCGI_MPXS_CONNS,
    ProtocolStatus,
    RecordType,
    Role,
)
from txfastcgi.fcgi.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from txfastcgi.fcgi.events import (
    DataEnded,
    DataReceived,
    Event,
    ParamsReceived,
    RequestAborted,
    RequestEnded,
    RequestStarted,
    StderrEnded,
    StderrReceived,
    StdinEnded,
    StdinReceived,
    StdoutEnded,
    StdoutReceived,
    UnknownTypeReceived,
    ValuesReceived,
    ValuesRequested,
)
from txfastcgi.fcgi.records import (
    PairDecoder,
    Record,
    RecordReader,
    decodePairs,
    encodePairs,
    encodeRecord,
    readRecords,
)
from txfastcgi.fcgi.server import ServerConnection

__all__ = [
    "ClientConnection",
    "DataEnded",
    "DataReceived",
    "Event",
    "FCGI_KEEP_CONN",
    "FCGI_MAX_CONNS",
    "FCGI_MAX_REQS",
    "FCGI_MPXS_CONNS",
    "LocalProtocolError",
    "PairDecoder",
    "ParamsReceived",
    "ProtocolError",
    "ProtocolStatus",
    "Record",
    "RecordReader",
    "RecordType",
    "RemoteProtocolError",
    "RequestAborted",
    "RequestEnded",
    "RequestStarted",
    "Role",
    "ServerConnection",
    "StderrEnded",
    "StderrReceived",
    "StdinEnded",
    "StdinReceived",
    "StdoutEnded",
    "StdoutReceived",
    "UnknownTypeReceived",
    "ValuesReceived",
    "ValuesRequested",
    "decodePairs",
    "encodePairs",
    "encodeRecord",
    "readRecords",
]
