"""A process that runs the interpreted core (``OPENBELL_PURE_PYTHON=1``), for tests that compare
it with the compiled core in the test process. Frames on stdin and stdout: a 4-byte big-endian
length, then msgpack. A request is ``[snapshot or None, config or None, commands]``: the engine
is restored from the snapshot (or made with the config), applies the commands as seq
``engine.seq + 1, ...`` with ``ts_ns = 1_000_000 * seq``, and answers
``[core build, [events of each command, msgpack], state hash, snapshot]``."""

from __future__ import annotations

import os
import struct
import sys

os.environ["OPENBELL_PURE_PYTHON"] = "1"

import msgspec

from openbell._build import core_build
from openbell.core.commands import Command
from openbell.core.engine import Engine, EngineConfig


class Request(msgspec.Struct, array_like=True):
    snapshot: bytes | None
    config: EngineConfig | None
    commands: list[Command]


def main() -> None:
    decoder = msgspec.msgpack.Decoder(Request)
    encoder = msgspec.msgpack.Encoder()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while header := stdin.read(4):
        request = decoder.decode(stdin.read(struct.unpack(">I", header)[0]))
        if request.snapshot is not None:
            engine = Engine.restore(request.snapshot)
        else:
            engine = Engine(request.config)
        events = []
        for cmd in request.commands:
            seq = engine.seq + 1
            events.append(encoder.encode(engine.apply(seq, 1_000_000 * seq, cmd)))
        answer = encoder.encode([core_build(), events, engine.state_hash(), engine.snapshot()])
        stdout.write(struct.pack(">I", len(answer)) + answer)
        stdout.flush()


if __name__ == "__main__":
    main()
