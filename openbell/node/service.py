"""One node: data directory, recovery, sequencer and background snapshots, wired together."""

from __future__ import annotations

import gc
import hashlib
import logging
import queue
import threading
import time
from pathlib import Path

import msgspec

from openbell.core.commands import Command
from openbell.core.engine import Engine, EngineConfig
from openbell.journal.base import Journal
from openbell.journal.errors import CorruptRecordError, JournalError, ReplayMismatchError
from openbell.journal.file import DEFAULT_SEGMENT_BYTES, FileJournal, read_valid_prefix
from openbell.journal.snapshot import SnapshotStore
from openbell.node.datadir import DataDir
from openbell.node.halt import (
    LAST_COMMANDS,
    BundleCommand,
    HaltReason,
    VenueHalted,
    acknowledge_halt,
    commands_of,
    read_halt,
    write_bundle,
)
from openbell.node.lanes import IpoLaneConfig
from openbell.node.recovery import RecoveryReport, ResultCallback, load_snapshot, replay
from openbell.node.sequencer import DurableCallback, Sequencer, SnapshotPolicy, reply_each

log = logging.getLogger("openbell.node")


class NodeConfig(msgspec.Struct, kw_only=True, frozen=True):
    data_dir: str
    host: str = "127.0.0.1"
    # The client API: always the Unix socket DIR/node.sock (mode 0600). port: also TCP on
    # host:port with the token of DIR/node.token (0: any free port, written to DIR/node.port);
    # None: no TCP.
    port: int | None = None
    max_batch: int = 2048
    # Under load, wait up to this long for each further command before cutting a batch:
    # +20-30 % signed HTTP orders/s at 64 connections, +0.5 ms p50 ack at 10k/s (measured).
    max_linger_us: int = 200
    queue_capacity: int = 100_000
    snapshot_every_commands: int = 1_000_000
    snapshot_every_s: int = 300
    keep_snapshots: int = 2
    segment_bytes: int = DEFAULT_SEGMENT_BYTES
    # IPO commands' own admission lane: rate limit, bounded queue, share of each batch.
    ipo_lane: IpoLaneConfig = msgspec.field(default_factory=IpoLaneConfig)
    # The operator's resume after a consistency halt (DATA/HALTED): rebuild from snapshot and
    # journal, check every invariant, then serve. Without it a halted node refuses to start.
    resume_after_halt: bool = False


class Snapshotter:
    """Writes snapshots off the sequencer thread: waits until the snapshot's seq is durable in
    the journal, hashes, writes atomically, then applies the retention policy (keep the newest
    ``keep`` snapshots and the journal segments the oldest of them still needs)."""

    def __init__(self, sequencer: Sequencer, store: SnapshotStore, journal: FileJournal, keep: int):
        self._sequencer = sequencer
        self._store = store
        self._journal = journal
        self._keep = keep
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)
        self.written: list[int] = []

    def start(self) -> None:
        self._thread.start()

    def submit(self, seq: int, state: bytes) -> None:
        self._queue.put((seq, state))

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def write_now(self, seq: int, state: bytes) -> None:
        started = time.perf_counter()
        # The header carries a SHA-256 of the snapshot bytes (a content digest checked on load, on
        # top of the CRC); the engine's state_hash() leaves out seq and is recomputed after restore.
        self._store.write(seq, hashlib.sha256(state).hexdigest(), state)
        self.written.append(seq)
        self._store.prune(self._keep)
        kept = self._store.seqs()
        if kept:
            self._journal.prune_before(min(kept) + 1)
        log.info("snapshot %d written in %.1f ms", seq, (time.perf_counter() - started) * 1000)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            seq, state = item
            if not self._sequencer.wait_durable(seq, timeout_s=None) or self._sequencer.failure:
                log.error("snapshot %d dropped: the node failed before it was durable", seq)
                continue
            try:
                self.write_now(seq, state)
            except OSError as error:  # a failed snapshot is not fatal: the journal has it all
                log.error("snapshot %d failed: %s", seq, error)


class Node:
    # After a halt, keep answering ``status`` (refusing everything else) until stopped, so the
    # operator sees why; a cluster leader instead exits and lets a standby take over.
    serve_status_when_halted = True

    def __init__(self, config: NodeConfig, engine_config: EngineConfig | None = None) -> None:
        self.config = config
        self.dirs = DataDir(Path(config.data_dir))
        self._engine_config = engine_config
        self.recovery: RecoveryReport | None = None
        self.journal: FileJournal
        self.sequencer: Sequencer
        self.snapshotter: Snapshotter

    def new_sequencer(
        self, engine: Engine, journal: Journal, on_durable: DurableCallback
    ) -> Sequencer:
        """The sequencer this node's configuration asks for, on ``journal``; a halt writes the
        diagnostic bundle to the data directory."""
        sequencer = Sequencer(
            engine,
            journal,
            max_batch=self.config.max_batch,
            max_linger_us=self.config.max_linger_us,
            queue_capacity=self.config.queue_capacity,
            on_durable=on_durable,
            ipo_lane=self.config.ipo_lane,
            snapshot_policy=SnapshotPolicy(
                self.config.snapshot_every_commands, self.config.snapshot_every_s
            ),
        )
        sequencer.on_halt = lambda reason, detail, failed: self._write_halt_bundle(
            sequencer, reason, detail, failed
        )
        return sequencer

    def _write_halt_bundle(
        self, sequencer: Sequencer, reason: HaltReason, detail: str, failed: list[Command]
    ) -> None:
        engine = sequencer.engine
        try:
            state_hash = engine.state_hash()
        except Exception as error:  # a broken engine may not hash; the bundle says so
            state_hash = f"unavailable: {type(error).__name__}: {error}"
        write_bundle(
            self.dirs.root,
            reason,
            detail,
            seq=engine.seq,
            durable_seq=sequencer.durable_seq,
            state_hash=state_hash,
            node=str(self.dirs.root),
            last_commands=self._last_commands(sequencer),
            failed_batch=failed,
        )

    @staticmethod
    def _last_commands(sequencer: Sequencer) -> list[BundleCommand]:
        """The last commands for a bundle: the durable ones from the journal (also those a
        recovery replayed), then those applied but not yet durable from the sequencer's ring."""
        durable_seq = sequencer.durable_seq
        pending = [b for b in sequencer.recent.last(LAST_COMMANDS, durable_seq) if not b.durable]
        journal = sequencer.journal
        if not isinstance(journal, FileJournal):
            return sequencer.recent.last(LAST_COMMANDS, durable_seq)
        try:
            start = max(journal.first_seq, durable_seq - LAST_COMMANDS + 1, 1)
            durable = commands_of(journal.read(start), LAST_COMMANDS)
        except JournalError as error:
            log.error("bundle: could not read the journal's last commands: %s", error)
            return sequencer.recent.last(LAST_COMMANDS, durable_seq)
        durable = [b for b in durable if b.seq <= durable_seq]
        return (durable + pending)[-LAST_COMMANDS:]

    def halt(self, reason: HaltReason, detail: str) -> None:
        """A consistency check outside the engine failed: stop the venue (see Sequencer.halt)."""
        self.sequencer.halt(reason, detail)

    def open(
        self, on_durable: DurableCallback = reply_each, on_replayed: ResultCallback | None = None
    ) -> RecoveryReport:
        """Lock the data directory, recover the state, and make the sequencer (not started)."""
        dirs = self.dirs
        dirs.create(self._engine_config or EngineConfig())
        dirs.lock()
        started = time.perf_counter()
        try:
            engine, snapshot_seq, replayed = self._recover(on_replayed)
        except BaseException:
            dirs.unlock()
            raise
        self.recovery = RecoveryReport(snapshot_seq, replayed, engine.seq, engine.state_hash())
        # The collector stays on (a reference cycle must never leak in a long-running node), but
        # everything recovery built moves to the permanent generation so collections do not
        # traverse it again; the hot-path objects (orders, events, commands) are gc=False
        # structs the collector never tracks.
        gc.collect()
        gc.freeze()
        log.info(
            "recovered to seq %d (snapshot %d + %d replayed) in %.2f s",
            engine.seq,
            snapshot_seq,
            replayed,
            time.perf_counter() - started,
        )
        self.sequencer = self.new_sequencer(engine, self.journal, on_durable)
        self.snapshotter = Snapshotter(
            self.sequencer, SnapshotStore(dirs.snapshots), self.journal, self.config.keep_snapshots
        )
        self.sequencer.snapshot_sink = self.snapshotter.submit
        return self.recovery

    def _recover(self, on_replayed: ResultCallback | None) -> tuple[Engine, int, int]:
        """Snapshot + journal, refusing a halted venue (unless resuming) and a journal that
        does not continue the state (a consistency halt with its bundle)."""
        dirs = self.dirs
        halted = read_halt(dirs.root)
        if halted is not None and not self.config.resume_after_halt:
            raise VenueHalted(halted)
        dirs.port_path.unlink(missing_ok=True)  # a stale port must not attract clients
        store = SnapshotStore(dirs.snapshots)
        engine = load_snapshot(store, dirs.load_config())
        snapshot_seq = engine.seq
        try:
            self.journal = FileJournal(dirs.journal, segment_bytes=self.config.segment_bytes)
            try:
                replayed = replay(engine, self.journal.read(engine.seq + 1), on_result=on_replayed)
                if engine.seq != self.journal.last_seq:
                    raise ReplayMismatchError(
                        engine.seq,
                        f"recovered to {engine.seq}, journal ends at {self.journal.last_seq}",
                    )
            except BaseException:
                self.journal.close()
                raise
        except (CorruptRecordError, ReplayMismatchError) as error:
            figures: dict[str, str | int] = {"snapshot_seq": snapshot_seq}
            if isinstance(error, CorruptRecordError):
                figures.update(path=error.path, offset=error.offset)
            path = write_bundle(
                dirs.root,
                HaltReason.JOURNAL_CORRUPT,
                str(error),
                seq=engine.seq,
                durable_seq=engine.seq,
                state_hash=engine.state_hash(),
                node=str(dirs.root),
                last_commands=commands_of(read_valid_prefix(dirs.journal), LAST_COMMANDS),
                figures=figures,
            )
            record = read_halt(dirs.root)
            if record is None or record.bundle != str(path):  # an older halt is still open
                raise JournalError(f"{error}; diagnostic bundle {path}") from None
            raise VenueHalted(record) from None
        if halted is not None:
            # Resuming: the state was rebuilt from snapshot and journal only; prove it before
            # anything is served.
            engine.check_invariants()
            acknowledge_halt(dirs.root)
        return engine, snapshot_seq, replayed

    def start(self) -> None:
        self.snapshotter.start()
        self.sequencer.start()

    def stop(self, snapshot: bool = True) -> None:
        """Finish the batch in flight, snapshot (if healthy), close everything."""
        self.sequencer.stop()
        self.snapshotter.stop()
        engine = self.sequencer.engine
        healthy = self.sequencer.failure is None
        if snapshot and healthy and engine.seq > 0 and engine.seq not in self.snapshotter.written:
            self.snapshotter.write_now(engine.seq, engine.snapshot())
        self.journal.close()
        self.dirs.unlock()
