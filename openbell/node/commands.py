"""What ``openbell serve``, ``openbell replay`` and ``openbell journal verify`` do."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from openbell.core.engine import Engine, EngineConfig
from openbell.journal.errors import JournalError
from openbell.journal.file import FileJournal, verify
from openbell.journal.snapshot import SnapshotStore
from openbell.node.datadir import DataDir, DataDirLockedError
from openbell.node.recovery import load_snapshot, replay
from openbell.node.server import serve
from openbell.node.service import Node, NodeConfig

console = Console(stderr=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def run_serve(config: NodeConfig, engine_config: EngineConfig | None = None) -> int:
    """Run a node; a node that cannot start says why in one line and exits 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return asyncio.run(serve(Node(config, engine_config)))
    except (DataDirLockedError, JournalError, RuntimeError) as error:
        print(f"openbell node cannot start: {error}", file=sys.stderr, flush=True)
        return 2


class ReplayResult(msgspec.Struct, frozen=True):
    seq: int
    state_hash: str
    snapshot_seq: int
    replayed_commands: int
    seconds: float


def run_replay(
    data_dir: Path, from_snapshot: bool = True, show_progress: bool = True
) -> ReplayResult:
    """Rebuild the state of a stopped node's data directory and return its hash."""
    dirs = DataDir(data_dir)
    dirs.lock()  # refuse while a node runs: recovery may truncate a torn tail
    try:
        started = time.perf_counter()
        with FileJournal(dirs.journal) as journal:
            config = dirs.load_config()
            if from_snapshot:
                engine = load_snapshot(SnapshotStore(dirs.snapshots), config)
            else:
                engine = Engine(config)
                if journal.first_seq > 1:
                    raise RuntimeError(
                        f"journal starts at seq {journal.first_seq} (pruned): needs a snapshot"
                    )
            snapshot_seq = engine.seq
            total = journal.last_seq - engine.seq
            if show_progress:
                with _progress() as progress:
                    task = progress.add_task("replaying", total=max(total, 1))
                    replayed = replay(
                        engine,
                        journal.read(engine.seq + 1),
                        lambda seq: progress.update(task, completed=seq - snapshot_seq),
                    )
            else:
                replayed = replay(engine, journal.read(engine.seq + 1))
        return ReplayResult(
            engine.seq, engine.state_hash(), snapshot_seq, replayed, time.perf_counter() - started
        )
    finally:
        dirs.unlock()


def run_verify(data_dir: Path, show_progress: bool = True) -> str:
    """Check every record of a journal (read-only); returns a one-line summary."""
    journal_dir = DataDir(data_dir).journal if (data_dir / "journal").is_dir() else data_dir
    if show_progress:
        with _progress() as progress:
            task = progress.add_task("verifying", total=1)

            def update(done: int, total: int) -> None:
                progress.update(task, completed=done, total=max(total, 1))

            report = verify(journal_dir, update)
    else:
        report = verify(journal_dir)
    return str(msgspec.to_builtins(report))
