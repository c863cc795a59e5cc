"""Consistency halt: when the state cannot be trusted, stop the venue and leave a bundle.

Stopping is preferred to a wrong trade. Every source of doubt ends here:

- the engine's invariant check fails (``InvariantViolation``) or the engine raises mid-command;
- the journal cannot be appended to (the node's memory is then ahead of its journal);
- the journal has a gap or a mismatched / corrupt record when a node recovers from it;
- a replica's state hash differs from the leader's at a checkpoint (``openbell.node.replica``);
- the read model's ledger totals differ from the engine's at the same seq
  (``openbell.projections.consistency``), or reconciliation's per-asset totals are not zero-sum
  (``openbell recon run --halt-on-break``).

``write_bundle`` writes ``DATA/diagnostics/halt-<seq>-<reason>.json`` (a ``DiagnosticBundle``:
reason, detail, seq, hashes, the last commands with their seqs, the batch that failed) and the
marker ``DATA/HALTED``. A node refuses to start while the marker is there: the operator reads the
bundle, repairs what caused it, and restarts with ``--resume-after-halt``, which rebuilds the
state from the newest snapshot and the journal (never from the memory that was in doubt), checks
every invariant, and only then serves (see README, "Consistency halt").
"""

from __future__ import annotations

import collections
import logging
import os
import time
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any

import msgspec

from openbell.core.commands import Command
from openbell.journal.base import JournalRecord
from openbell.journal.fsutil import write_atomic
from openbell.node.codec import decode_batch

log = logging.getLogger("openbell.node")

HALT_MARKER = "HALTED"
DIAGNOSTICS = "diagnostics"
LAST_COMMANDS = 200  # commands kept in a bundle


class HaltReason(StrEnum):
    INVARIANT_VIOLATION = "INVARIANT_VIOLATION"  # the engine's own check, or a bug mid-command
    JOURNAL_APPEND_FAILED = "JOURNAL_APPEND_FAILED"  # memory is ahead of the journal
    JOURNAL_CORRUPT = "JOURNAL_CORRUPT"  # a gap or a bad record found at recovery
    REPLICA_HASH_MISMATCH = "REPLICA_HASH_MISMATCH"  # a replica disagrees at a checkpoint
    READ_MODEL_MISMATCH = "READ_MODEL_MISMATCH"  # read model totals differ from the ledger's
    RECONCILIATION_MISMATCH = "RECONCILIATION_MISMATCH"  # a per-asset total is not zero-sum


class BundleCommand(msgspec.Struct, frozen=True):
    seq: int
    ts_ns: int
    durable: bool  # in the journal (False: applied, not yet durable, when the halt came)
    command: Command


class DiagnosticBundle(msgspec.Struct, kw_only=True, frozen=True):
    reason: HaltReason
    detail: str
    seq: int  # the engine's seq when the halt came (an engine failure: the command that failed)
    durable_seq: int  # the last seq the journal holds
    state_hash: str = ""  # the engine's at ``seq`` ("" when it could not be computed)
    node: str = ""
    written_unix_ns: int
    last_commands: list[BundleCommand] = []
    # The batch that was being applied when the engine failed: never journaled, never answered.
    failed_batch: list[Command] = []
    peers: dict[str, str] = {}  # other nodes' state hashes at ``seq`` (replica mismatch)
    figures: dict[str, Any] = {}  # what the source measured (totals, stream position, ...)
    snapshot_file: str = ""  # the state in doubt, for offline comparison


class HaltRecord(msgspec.Struct, frozen=True):
    """The ``DATA/HALTED`` marker: why, where, and the bundle to read."""

    reason: HaltReason
    detail: str
    seq: int
    bundle: str
    unix_ns: int


class VenueHalted(RuntimeError):
    """The venue is halted for a consistency reason; nothing is accepted until an operator
    has investigated and restarted it (``--resume-after-halt``)."""

    def __init__(self, record: HaltRecord) -> None:
        super().__init__(
            f"VENUE_HALTED ({record.reason.value} at seq {record.seq}): {record.detail}; "
            f"diagnostic bundle {record.bundle}"
        )
        self.record = record


class ConsistencyHalt(RuntimeError):
    """Raised into the sequencer (its ``failure``) by a source outside the engine."""

    def __init__(self, reason: HaltReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def diagnostics_dir(data_dir: Path) -> Path:
    return Path(data_dir) / DIAGNOSTICS


def marker_path(data_dir: Path) -> Path:
    return Path(data_dir) / HALT_MARKER


class RecentCommands:
    """The last batches the sequencer applied (a ring of references: O(1) per batch)."""

    def __init__(self, batches: int = 64) -> None:
        self._batches: collections.deque[tuple[int, int, list[Command]]] = collections.deque(
            maxlen=batches
        )

    def add(self, first_seq: int, ts_ns: int, commands: list[Command]) -> None:
        self._batches.append((first_seq, ts_ns, commands))

    def last(self, count: int, durable_seq: int) -> list[BundleCommand]:
        out: list[BundleCommand] = []
        for first_seq, ts_ns, commands in reversed(list(self._batches)):
            for i in range(len(commands) - 1, -1, -1):
                seq = first_seq + i
                out.append(BundleCommand(seq, ts_ns, seq <= durable_seq, commands[i]))
                if len(out) >= count:
                    return out[::-1]
        return out[::-1]


def commands_of(records: Iterable[JournalRecord], count: int) -> list[BundleCommand]:
    """The last ``count`` commands of ``records`` (journal records, in order)."""
    ring: collections.deque[BundleCommand] = collections.deque(maxlen=count)
    for record in records:
        batch = decode_batch(record.payload)
        for i, command in enumerate(batch.commands):
            ring.append(BundleCommand(record.first_seq + i, batch.ts_ns, True, command))
    return list(ring)


def write_bundle(
    data_dir: Path,
    reason: HaltReason,
    detail: str,
    *,
    seq: int,
    durable_seq: int,
    state_hash: str = "",
    node: str = "",
    last_commands: list[BundleCommand] | None = None,
    failed_batch: list[Command] | None = None,
    peers: dict[str, str] | None = None,
    figures: dict[str, Any] | None = None,
    snapshot: bytes | None = None,
    mark_halted: bool = True,
) -> Path:
    """Write the bundle (and the state in doubt, if given) and, unless told not to, the
    ``HALTED`` marker; returns the bundle's path. Never raises for a bundle it could not
    write completely: the halt matters more (the error is logged)."""
    directory = diagnostics_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"halt-{seq}-{reason.value.lower()}"
    path = directory / f"{stem}.json"
    snapshot_file = ""
    if snapshot is not None:
        snapshot_path = directory / f"{stem}.snapshot"
        try:
            write_atomic(snapshot_path, snapshot)
            snapshot_file = str(snapshot_path)
        except OSError as error:
            log.error("could not write the halt's snapshot %s: %s", snapshot_path, error)
    now = time.time_ns()
    bundle = DiagnosticBundle(
        reason=reason,
        detail=detail,
        seq=seq,
        durable_seq=durable_seq,
        state_hash=state_hash,
        node=node,
        written_unix_ns=now,
        last_commands=last_commands or [],
        failed_batch=failed_batch or [],
        peers=peers or {},
        figures=figures or {},
        snapshot_file=snapshot_file,
    )
    write_atomic(path, msgspec.json.format(msgspec.json.encode(bundle)))
    if mark_halted and not marker_path(data_dir).exists():
        record = HaltRecord(reason, detail, seq, str(path), now)
        write_atomic(marker_path(data_dir), msgspec.json.encode(record))
    log.critical("consistency halt (%s) at seq %d: %s; bundle %s", reason.value, seq, detail, path)
    return path


def read_halt(data_dir: Path) -> HaltRecord | None:
    path = marker_path(data_dir)
    if not path.exists():
        return None
    return msgspec.json.decode(path.read_bytes(), type=HaltRecord)


def read_bundle(path: Path) -> DiagnosticBundle:
    return msgspec.json.decode(Path(path).read_bytes(), type=DiagnosticBundle)


def acknowledge_halt(data_dir: Path) -> HaltRecord | None:
    """The operator's resume: move the marker beside its bundle (kept for the record)."""
    record = read_halt(data_dir)
    if record is None:
        return None
    target = diagnostics_dir(data_dir) / f"resumed-{record.seq}-{time.time_ns()}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(marker_path(data_dir), target)
    log.warning("resuming after the halt at seq %d (%s)", record.seq, record.reason.value)
    return record
