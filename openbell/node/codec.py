"""Encoding of one journal record's payload: a sequencer batch.

A batch is the commands of one group commit and the one timestamp the sequencer stamped on
them. Record framing (length, CRC32C, first seq, count) is the journal's job.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from openbell.core.commands import SCHEMA_VERSION, Command


class Batch(msgspec.Struct, array_like=True, gc=False):
    version: int
    ts_ns: int
    commands: list[Command]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Batch)


def encode_batch(ts_ns: int, commands: Sequence[Command]) -> bytes:
    listed = commands if type(commands) is list else list(commands)
    return _encoder.encode(Batch(SCHEMA_VERSION, ts_ns, listed))


def decode_batch(payload: bytes) -> Batch:
    batch = _decoder.decode(payload)
    if batch.version != SCHEMA_VERSION:
        raise ValueError(f"batch schema version {batch.version}, expected {SCHEMA_VERSION}")
    return batch
