"""The projector: follows the durable journal and feeds its sinks (read model, audit log, bus).

Why replay and not the node's event output: the journal is the only durable, ordered record,
and a projection must survive its own crashes and the node's without losing or doubling
anything. The projector runs beside the node (its own process; the node never waits for it),
reads only durable batches (``FileJournalTail``, or the NATS journal), and re-derives each
command's events with its own engine, so a sink's stored position (``last_seq``) is enough to
resume exactly where it stopped: its rows and its position are written in one transaction.

The projector's engine starts from the newest snapshot at or before the lowest sink position:
its own (``DATA/projections/snapshots``, written every ``snapshot_every`` commands) or the
node's (``DATA/snapshots``); otherwise from an empty engine and the journal's first seq.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Protocol

from openbell.core.commands import Command
from openbell.core.engine import Engine
from openbell.core.events import Event
from openbell.journal.snapshot import SnapshotStore
from openbell.projections.source import (
    FileJournalTail,
    JournalSource,
    Replayer,
    engine_config,
)

log = logging.getLogger("openbell.projections")

DEFAULT_CHUNK_COMMANDS = 20_000
DEFAULT_SNAPSHOT_EVERY = 500_000


class Sink(Protocol):
    name: str

    def position(self) -> int:
        """The last seq whose effects are stored (0: nothing)."""
        ...

    def start(self, engine: Engine) -> None:
        """The projector's engine is at this sink's position (rebuild in-memory helpers)."""
        ...

    def on_command(
        self, seq: int, ts_ns: int, command: Command, events: list[Event], engine: Engine
    ) -> None: ...

    def commit(self, seq: int, ts_ns: int) -> None:
        """Store everything pending and the position ``seq`` atomically."""
        ...

    def close(self) -> None: ...


def projection_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "projections"


class Projector:
    def __init__(
        self,
        data_dir: Path,
        sinks: list[Sink],
        journal: JournalSource | None = None,
        chunk_commands: int = DEFAULT_CHUNK_COMMANDS,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        keep_snapshots: int = 2,
    ) -> None:
        if not sinks:
            raise ValueError("a projector needs at least one sink")
        self.data_dir = Path(data_dir)
        self.sinks = sinks
        self.journal = journal or FileJournalTail(self.data_dir / "journal")
        self.chunk_commands = chunk_commands
        self.snapshot_every = snapshot_every
        self.keep_snapshots = keep_snapshots
        self.own_snapshots = SnapshotStore(projection_dir(self.data_dir) / "snapshots")
        stores = [self.own_snapshots]
        if (self.data_dir / "snapshots").is_dir():
            stores.append(SnapshotStore(self.data_dir / "snapshots"))
        self.replayer = Replayer(self.journal, engine_config(self.data_dir), stores)
        self._positions: dict[str, int] = {}
        self._last_snapshot = 0
        self._opened = False

    @property
    def seq(self) -> int:
        return self.replayer.seq

    def open(self) -> int:
        """Bring the engine to the lowest sink position; returns it."""
        self._positions = {sink.name: sink.position() for sink in self.sinks}
        start = min(self._positions.values())
        self.replayer.seek(start)
        self._last_snapshot = start
        for sink in self.sinks:
            if self._positions[sink.name] == start:
                sink.start(self.replayer.engine)
        self._opened = True
        log.info("projector at seq %d (sinks %s)", start, self._positions)
        return start

    def _dispatch(
        self, seq: int, ts_ns: int, command: Command, events: list[Event], engine: Engine
    ) -> None:
        for sink in self.sinks:
            position = self._positions[sink.name]
            if seq > position:
                sink.on_command(seq, ts_ns, command, events, engine)
            elif seq == position:
                sink.start(engine)

    def step(self, max_commands: int | None = None) -> int:
        """Apply up to one chunk of durable commands and commit it; returns commands applied."""
        if not self._opened:
            self.open()
        applied = self.replayer.pump(
            self._dispatch, max_commands=max_commands or self.chunk_commands
        )
        if not applied:
            return 0
        engine = self.replayer.engine
        for sink in self.sinks:
            if engine.seq > self._positions[sink.name]:
                sink.commit(engine.seq, engine.ts_ns)
                self._positions[sink.name] = engine.seq
        if engine.seq - self._last_snapshot >= self.snapshot_every:
            self._snapshot(engine)
        return applied

    def _snapshot(self, engine: Engine) -> None:
        state = engine.snapshot()
        self.own_snapshots.write(engine.seq, hashlib.sha256(state).hexdigest(), state)
        self.own_snapshots.prune(self.keep_snapshots)
        self._last_snapshot = engine.seq

    def catch_up(self, until_seq: int | None = None) -> int:
        """Project every durable command (or up to ``until_seq``); returns the last seq."""
        while True:
            limit = self.chunk_commands
            if until_seq is not None:
                limit = min(limit, until_seq - self.replayer.seq)
                if limit <= 0:
                    break
            if not self.step(limit):
                break
        return self.replayer.seq

    def follow(
        self,
        stop: threading.Event,
        poll_s: float = 0.005,
        until_seq: int | None = None,
    ) -> int:
        """Keep projecting until ``stop`` is set (or ``until_seq`` is reached)."""
        while not stop.is_set():
            if until_seq is not None and self.replayer.seq >= until_seq:
                break
            limit = None
            if until_seq is not None:
                limit = min(self.chunk_commands, until_seq - self.replayer.seq)
            if not self.step(limit):
                stop.wait(poll_s)
        return self.replayer.seq

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
