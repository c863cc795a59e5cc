"""The compiled core equals the interpreted one (the reference), event for event and hash for
hash: random streams of every command kind the property tests make (orders of all types, STP,
stops, auctions, halts, account states, kill switch, deposits, withdrawals, holds) go through
both, and a snapshot from either build restores in the other byte for byte.

The interpreted core runs in a worker process (``pure_worker.py``): which build a process uses
is chosen when ``openbell`` is first imported. Without a compiled build (an interpreted test
run) the comparison is between two interpreted processes, and still checks determinism."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings

from openbell._build import core_build
from openbell.core import commands as c
from openbell.core.engine import Engine, EngineConfig

from .test_properties import Op, new_venue, run_stream, streams

ROOT = Path(__file__).resolve().parents[2]
_encoder = msgspec.msgpack.Encoder()


class PureCore:
    """The interpreted core in its own process."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBELL_PURE_PYTHON": "1"}
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("pure_worker.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )

    def run(
        self, commands: list[c.Command], *, snapshot: bytes | None = None,
        config: EngineConfig | None = None,
    ) -> tuple[str, list[bytes], str, bytes]:  # fmt: skip
        assert self.process.stdin is not None and self.process.stdout is not None
        request = _encoder.encode([snapshot, config, commands])
        self.process.stdin.write(struct.pack(">I", len(request)) + request)
        self.process.stdin.flush()
        (length,) = struct.unpack(">I", self.process.stdout.read(4))
        build, events, state_hash, blob = msgspec.msgpack.decode(self.process.stdout.read(length))
        return build, events, state_hash, blob

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def pure() -> Iterator[PureCore]:
    core = PureCore()
    try:
        yield core
    finally:
        core.close()


def _venue_config(d: Any) -> EngineConfig:
    config: EngineConfig = d.eng.config
    return config


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(streams)
def test_compiled_equals_interpreted(pure: PureCore, ops: list[Op]) -> None:
    d, _, _ = run_stream(ops, checks=False)
    commands = [cmd for cmd, _ in d.log]
    mine = [_encoder.encode(events) for _, events in d.log]
    build, theirs, their_hash, their_blob = pure.run(commands, config=_venue_config(d))
    assert build == "interpreted"
    assert theirs == mine  # every event of every command, byte for byte
    assert their_hash == d.eng.state_hash()
    assert their_blob == d.eng.snapshot()
    # A snapshot from either build restores in the other and goes on identically.
    assert Engine.restore(their_blob).snapshot() == their_blob
    _, _, hash_back, blob_back = pure.run([], snapshot=d.eng.snapshot())
    assert blob_back == d.eng.snapshot() and hash_back == d.eng.state_hash()


def test_this_process_runs_the_build_it_says(pure: PureCore) -> None:
    build, *_ = pure.run([], config=EngineConfig())
    assert build == "interpreted"
    expected = "interpreted" if os.environ.get("OPENBELL_PURE_PYTHON") == "1" else "compiled"
    assert core_build() == expected, "the compiled core is not built (run `make venv`)"


def test_venue_setup_is_the_same(pure: PureCore) -> None:
    d = new_venue()
    _, events, state_hash, _ = pure.run([cmd for cmd, _ in d.log], config=_venue_config(d))
    assert events == [_encoder.encode(ev) for _, ev in d.log]
    assert state_hash == d.eng.state_hash()
