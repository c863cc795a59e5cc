"""Hot standby: follow the JetStream journal live and apply every batch; state-hash checkpoints.

A standby boots from the newest snapshot in the object store plus the stream's tail, then
applies each batch as it is appended (so it is hot: taking over costs only the lease wait and
the last few batches). Every node, leader and standbys alike, computes its state hash at the
end of the batch that crosses each multiple of ``every`` commands (batch boundaries are in the
stream, so every node hashes the same state) and publishes it to the ``<STREAM>_ckpt`` KV
bucket; each node compares its own hashes with its peers'. A mismatch ("memory and log
disagree") halts the venue: the node writes a diagnostic bundle to its data directory and sets
the bucket's ``halt`` key, which every node obeys. The bundle is the shared one of
``openbell.node.halt`` (reason REPLICA_HASH_MISMATCH, with the peers' hashes and the last commands
this node applied).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import msgspec
import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from openbell.core.engine import Engine, EngineConfig
from openbell.core.events import Event
from openbell.journal.base import JournalRecord
from openbell.journal.nats import Follower, NatsJournal, StreamEntry
from openbell.node.halt import LAST_COMMANDS, HaltReason, commands_of, write_bundle
from openbell.node.recovery import replay

log = logging.getLogger("openbell.node")

HALT_KEY = "halt"
POSITION_PREFIX = "pos."  # + node name: the seq that node has applied (stream pruning)
POSITION_EVERY_S = 1.0
RECENT_RESULTS = 100_000  # results kept for answering retried request ids after a takeover


class Checkpoint(msgspec.Struct, frozen=True):
    seq: int
    node: str
    state_hash: str
    role: str  # leader | standby


class Position(msgspec.Struct, frozen=True):
    """What a node has applied, as it last published it (``time_ns``: when, wall clock)."""

    node: str
    seq: int
    time_ns: int


def boot_engine(journal: NatsJournal, config: EngineConfig) -> tuple[Engine, int]:
    """The engine from the newest object-store snapshot (or a fresh one) and the stream seq
    to follow from."""
    deadline = time.monotonic() + 60
    while True:  # at a cluster's first start the buckets may still be being created
        try:
            snapshot = journal.latest_snapshot()
            break
        except Exception as error:
            if time.monotonic() > deadline:
                raise
            log.info("object store not ready (%s); retrying", error)
            time.sleep(0.5)
    engine = Engine(config)
    if snapshot is not None:
        try:
            restored = Engine.restore(snapshot.state)
            if restored.seq == snapshot.seq:
                engine = restored
        except (ValueError, msgspec.DecodeError) as error:
            log.warning("snapshot %d unusable (%s); replaying the stream", snapshot.seq, error)
    first, last = journal.loop.run(journal._state(), 60)
    if last == 0:
        return engine, 1
    start = journal.loop.run(journal._locate(engine.seq + 1, first, last), 60)
    return engine, start


class Checkpointer:
    """Hashes at checkpoints, publishes them and compares them with the peers' (a thread)."""

    def __init__(
        self,
        journal: NatsJournal,
        node: str,
        peers: list[str],
        every: int,
        data_dir: Path,
        on_halt: Callable[[str], None],
    ) -> None:
        self.journal = journal
        self.node = node
        self.peers = [p for p in peers if p != node]
        self.every = every
        self.data_dir = data_dir
        self.on_halt = on_halt
        self.role = "standby"
        self.kv: KeyValue = journal.key_value(f"{journal.stream}_ckpt", ttl_s=3600.0)
        self._last_seq = -1
        self._queue: queue.Queue[Checkpoint | None] = queue.Queue()
        self._pending: deque[tuple[float, Checkpoint]] = deque()
        self._engine_for_bundle: Engine | None = None
        self.published = 0
        self.compared = 0
        self.halted = ""
        self._thread = threading.Thread(target=self._run, name="checkpoints", daemon=True)
        self._stop = threading.Event()
        self._durable: Callable[[int], bool] = lambda seq: True
        # The journal records this node applied last (a Replica sets it), for the bundle.
        self.recent_records: Callable[[], list[JournalRecord]] = list
        self.applied_seq = -1  # the engine's seq after the last batch observed
        self._position_at = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=10)

    def lead(self, durable: Callable[[int], bool]) -> None:
        """From now on this node leads: publish a hash only once its seq is durable."""
        self.role = "leader"
        self._durable = durable

    def observe(self, engine: Engine) -> None:
        """After each batch: hash if the batch crossed a multiple of ``every``."""
        seq = engine.seq
        self.applied_seq = seq
        if self._last_seq < 0:
            self._last_seq = seq
            return
        if seq // self.every > self._last_seq // self.every:
            self._engine_for_bundle = engine
            self._queue.put(Checkpoint(seq, self.node, engine.state_hash(), self.role))
        self._last_seq = seq

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                item = None
            if item is not None and self._durable(item.seq):
                self._publish(item)
                self._pending.append((time.monotonic(), item))
            self._compare()
            self._check_halt()
            if time.monotonic() - self._position_at >= POSITION_EVERY_S:
                self._position_at = time.monotonic()
                self._publish_position()

    def _publish_position(self) -> None:
        """This node's applied seq, for the leader's stream pruning (never past it)."""
        if self.applied_seq < 0:
            return
        position = Position(self.node, self.applied_seq, time.time_ns())
        try:
            key = POSITION_PREFIX + self.node
            self.journal.loop.run(self.kv.put(key, msgspec.json.encode(position)), 5)
        except Exception as error:  # liveness only: the next second publishes again
            log.info("position not published: %s", error)

    def positions(self) -> dict[str, Position]:
        """Every peer's last published position (missing: never published, or unreadable)."""
        out: dict[str, Position] = {}
        for peer in self.peers:
            try:
                entry = self.journal.loop.run(self.kv.get(POSITION_PREFIX + peer), 5)
            except Exception:
                continue
            if entry.value:
                out[peer] = msgspec.json.decode(entry.value, type=Position)
        return out

    def _publish(self, checkpoint: Checkpoint) -> None:
        key = f"s{checkpoint.seq}.{self.node}"
        try:
            self.journal.loop.run(self.kv.put(key, msgspec.json.encode(checkpoint)), 10)
            self.published += 1
        except Exception as error:  # liveness: a later checkpoint compares again
            log.warning("checkpoint %d not published: %s", checkpoint.seq, error)

    def _peer(self, seq: int, peer: str) -> Checkpoint | None:
        try:
            entry = self.journal.loop.run(self.kv.get(f"s{seq}.{peer}"), 5)
        except (nats.js.errors.KeyNotFoundError, nats.errors.TimeoutError, TimeoutError):
            return None
        except nats.js.errors.APIError:
            return None
        return msgspec.json.decode(entry.value or b"{}", type=Checkpoint)

    def _compare(self) -> None:
        now = time.monotonic()
        keep: deque[tuple[float, Checkpoint]] = deque()
        for since, own in self._pending:
            seen: dict[str, str] = {}
            for peer in self.peers:
                other = self._peer(own.seq, peer)
                if other is not None:
                    seen[peer] = other.state_hash
            bad = {peer: h for peer, h in seen.items() if h != own.state_hash}
            if bad:
                self._mismatch(own, seen)
                return
            self.compared += len(seen)
            if len(seen) < len(self.peers) and now - since < 30:
                keep.append((since, own))  # a peer may still be on its way there
        self._pending = keep

    def _mismatch(self, own: Checkpoint, peers: dict[str, str]) -> None:
        reason = (
            f"state hash mismatch at seq {own.seq}: {self.node} has {own.state_hash}, peers {peers}"
        )
        log.critical("%s; halting the venue", reason)
        engine = self._engine_for_bundle
        snapshot = engine.snapshot() if engine is not None and engine.seq == own.seq else None
        write_bundle(
            self.data_dir,
            HaltReason.REPLICA_HASH_MISMATCH,
            reason,
            seq=own.seq,
            durable_seq=own.seq,
            state_hash=own.state_hash,
            node=self.node,
            last_commands=commands_of(self.recent_records(), LAST_COMMANDS),
            peers=peers,
            figures={
                "stream": self.journal.stream,
                "stream_seq": self.journal.stream_seq,
                "epoch": self.journal.epoch,
                "role": own.role,
            },
            snapshot=snapshot,
        )
        try:
            self.journal.loop.run(self.kv.put(HALT_KEY, reason.encode()), 10)
        except Exception as error:
            log.error("could not set the venue's halt key: %s", error)
        self.halted = reason
        self.on_halt(reason)

    def _check_halt(self) -> None:
        if self.halted:
            return
        try:
            entry = self.journal.loop.run(self.kv.get(HALT_KEY), 5)
        except Exception:
            return
        if entry.value:
            self.halted = entry.value.decode(errors="replace")
            log.critical("venue halted by a checkpoint mismatch: %s", self.halted)
            self.on_halt(self.halted)


class Replica:
    """Follows the stream from ``stream_seq`` and applies every batch to ``engine``."""

    def __init__(
        self,
        journal: NatsJournal,
        engine: Engine,
        from_stream_seq: int,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self.journal = journal
        self.engine = engine
        self.checkpointer = checkpointer
        self.stream_seq = from_stream_seq - 1  # last stream message applied (or skipped)
        self.epoch = 0
        self.epoch_nodes: dict[int, str] = {}
        self.recent: deque[tuple[int, list[Event]]] = deque(maxlen=RECENT_RESULTS)
        self.recent_records: deque[JournalRecord] = deque(maxlen=64)
        if checkpointer is not None:
            checkpointer.recent_records = lambda: list(self.recent_records)
        self._follower: Follower | None = None
        if checkpointer is not None:
            checkpointer.applied_seq = engine.seq

    def _on_result(self, seq: int, events: list[Event]) -> None:
        self.recent.append((seq, events))

    def apply(self, entries: list[StreamEntry]) -> int:
        applied = 0
        for entry in entries:
            if entry.stream_seq <= self.stream_seq:
                continue
            if entry.is_epoch:
                self.epoch = entry.epoch
                self.epoch_nodes[entry.epoch] = entry.node
            else:
                record = entry.record()
                self.recent_records.append(record)
                applied += replay(self.engine, [record], on_result=self._on_result)
                if entry.epoch > self.epoch:
                    self.epoch = entry.epoch
                if self.checkpointer is not None:
                    self.checkpointer.observe(self.engine)
            self.stream_seq = entry.stream_seq
        if self.checkpointer is not None:
            self.checkpointer.applied_seq = self.engine.seq
        return applied

    def poll(self, timeout_s: float = 0.2) -> int:
        """Apply whatever arrived (waiting at most ``timeout_s``)."""
        if self._follower is None:
            self._follower = Follower(self.journal, self.stream_seq + 1)
        return self.apply(self._follower.next_entries(timeout_s=timeout_s))

    def catch_up(self, deadline_s: float = 60.0) -> None:
        """Apply up to the stream's end as it is now."""
        deadline = time.monotonic() + deadline_s
        _first, last = self.journal.loop.run(self.journal._state(), 30)
        while self.stream_seq < last:
            if time.monotonic() > deadline:
                raise TimeoutError(f"catch-up stuck at stream seq {self.stream_seq} of {last}")
            self.poll(0.5)

    def close(self) -> None:
        if self._follower is not None:
            self._follower.close()
            self._follower = None
