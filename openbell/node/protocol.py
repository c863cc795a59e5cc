"""The node's local client protocol: length-prefixed msgpack frames over a Unix domain socket
(``DIR/node.sock``, mode 0600: the default) or, when asked for, TCP on 127.0.0.1.

Each frame is a 4-byte big-endian length and a msgpack ``Request`` or ``Response``. Requests
carry a client-chosen ``id`` echoed in the response, so a client may pipeline many requests on
one connection.

Authentication: the socket file's mode (0600, owner only) is the check on the Unix socket. On
TCP any local process can connect, so the first frame must be an ``AuthRequest`` carrying the
token of ``DIR/node.token`` (mode 0600); any other first frame, or a wrong token, is answered
``UNAUTHORIZED`` and the connection is closed before anything reaches the sequencer.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from openbell.core.commands import Command
from openbell.core.events import Event

MAX_FRAME_BYTES = 64 << 20  # room for columnar batches: 4 M rows of two int64 columns
RECENT_RESULTS = 100_000
LENGTH = struct.Struct(">I")


class SubmitRequest(msgspec.Struct, tag="submit", frozen=True):
    id: int
    command: Command


class QueryRequest(msgspec.Struct, tag="query", frozen=True):
    """``what``: status | state_hash | l2 | l3 | balance | order | accounts | assets |
    instruments | ipo_offering | ipo_subscription | ipo_numbering | ipo_results (arguments in
    ``args``)."""

    id: int
    what: str
    args: dict[str, str | int] = {}


class AuthRequest(msgspec.Struct, tag="auth", frozen=True):
    """The first frame on TCP: the node's token (``DIR/node.token``)."""

    id: int
    token: str


Request = SubmitRequest | QueryRequest | AuthRequest


class Response(msgspec.Struct, omit_defaults=True):
    id: int
    seq: int = 0
    events: list[Event] | None = None
    error: str = ""  # BUSY, NODE_HALTED, NODE_STOPPING, BAD_REQUEST, BAD_QUERY, UNAUTHORIZED
    answer: Any = None
    # For a repeated request id (events == [DuplicateRequest]): the original command's events,
    # while the node still remembers them (the most recent RECENT_RESULTS commands).
    original: list[Event] | None = None


request_encoder = msgspec.msgpack.Encoder()
request_decoder = msgspec.msgpack.Decoder(Request)
response_decoder = msgspec.msgpack.Decoder(Response)


def frame(payload: bytes) -> bytes:
    return LENGTH.pack(len(payload)) + payload
