"""Helpers for the node tests: run real node processes, talk to them, and read their data
directories back offline (journal scan, replay with events, record layout of segments)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine
from openbell.journal.file import FileJournal
from openbell.node.client import NodeClient
from openbell.node.codec import decode_batch
from openbell.node.datadir import DataDir
from openbell.node.protocol import Response
from openbell.sim.workload import setup_commands

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 30.0
STARTUP_LINE = re.compile(
    r"openbell node: seq (\d+) \(snapshot (\d+) \+ (\d+) replayed\), "
    r"listening on unix:(\S+?)(?: and 127\.0\.0\.1:(\d+) \(token \S+\))?, pid (\d+)"
)
STOPPED_LINE = re.compile(r"openbell node stopped at seq (\d+)")

# Record framing of openbell.journal.file (little-endian): magic, payload bytes, first seq,
# count, crc32c; the tests re-derive it here on purpose instead of importing private names.
RECORD_HEADER = struct.Struct("<4sIQII")
RECORD_MAGIC = b"OBJ1"


@dataclass(frozen=True)
class Startup:
    seq: int
    snapshot_seq: int
    replayed: int
    socket: Path
    port: int  # TCP (with the token of DIR/node.token); 0 when the node serves only the socket
    pid: int


class NodeProcess:
    """One ``python -m openbell.node`` process; stdout and stderr go to files (never a pipe
    that nobody reads: the node logs a line per snapshot). It serves its Unix socket and, unless
    ``args`` say ``--port`` or ``--no-tcp``, TCP on a free port (token in DIR/node.token)."""

    def __init__(self, data_dir: Path, args: Sequence[str], log_dir: Path, name: str) -> None:
        self.data_dir = data_dir
        self.stdout_path = log_dir / f"{name}.out"
        self.stderr_path = log_dir / f"{name}.err"
        args = list(args)
        if "--no-tcp" in args:
            args.remove("--no-tcp")
        elif "--port" not in args:
            args += ["--port", "0"]
        argv = [sys.executable, "-m", "openbell.node", "--data", str(data_dir), *args]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self.startup: Startup | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> Startup:
        """Block until the startup line appears; fail if the process exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = STARTUP_LINE.search(self.stdout())
            if match is not None:
                seq, snapshot_seq, replayed, socket_path, port, pid = match.groups()
                assert int(pid) == self.pid
                self.startup = Startup(
                    int(seq), int(snapshot_seq), int(replayed), Path(socket_path),
                    int(port or 0), int(pid),
                )  # fmt: skip
                return self.startup
            if self.process.poll() is not None:
                raise AssertionError(
                    f"node exited with {self.process.returncode} before it was ready:\n"
                    f"{self.stdout()}\n{self.stderr()}"
                )
            time.sleep(0.01)
        raise AssertionError(f"node not ready after {timeout_s} s:\n{self.stderr()}")

    def kill(self) -> None:
        """SIGKILL (no wait)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)

    def kill_and_wait(self) -> None:
        """SIGKILL, wait, and remove the socket file the killed node left behind (the next node
        would replace it; tests that copy a data directory cannot copy a socket)."""
        self.kill()
        self.process.wait(timeout=STOP_TIMEOUT_S)
        (self.data_dir / "node.sock").unlink(missing_ok=True)

    def terminate(self, signum: int = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Send ``signum`` and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout=timeout_s)

    def wait_exit(self, timeout_s: float = STARTUP_TIMEOUT_S) -> int:
        return self.process.wait(timeout=timeout_s)


@dataclass
class NodeRunner:
    """Starts nodes and guarantees none outlives the test (see the ``nodes`` fixture)."""

    log_dir: Path
    started: list[NodeProcess] = field(default_factory=list)

    def start(self, data_dir: Path, *args: str) -> NodeProcess:
        node = NodeProcess(data_dir, args, self.log_dir, f"node{len(self.started)}")
        self.started.append(node)
        return node

    def run(self, data_dir: Path, *args: str) -> NodeProcess:
        node = self.start(data_dir, *args)
        node.wait_ready()
        return node

    def cleanup(self) -> None:
        for node in self.started:
            if node.process.poll() is None:
                node.process.kill()
                node.process.wait(timeout=STOP_TIMEOUT_S)


# -- client side ----------------------------------------------------------------------------------


async def connect(node: NodeProcess) -> NodeClient:
    """A client on the node's Unix socket (what ``NodeClient.connect_data_dir`` picks)."""
    assert node.startup is not None
    assert node.startup.socket == node.data_dir / "node.sock"
    return await asyncio.wait_for(NodeClient.connect_data_dir(node.data_dir), REQUEST_TIMEOUT_S)


async def connect_tcp(node: NodeProcess, token: str | None) -> NodeClient:
    """A TCP client; ``token`` None: one that presents no token."""
    assert node.startup is not None and node.startup.port
    return await asyncio.wait_for(
        NodeClient.connect("127.0.0.1", node.startup.port, token), REQUEST_TIMEOUT_S
    )


async def submit(client: NodeClient, command: c.Command) -> Response:
    return await asyncio.wait_for(client.submit(command), REQUEST_TIMEOUT_S)


async def submit_ok(client: NodeClient, command: c.Command) -> Response:
    response = await asyncio.wait_for(client.submit(command), REQUEST_TIMEOUT_S)
    assert not response.error, response
    assert response.seq > 0 and response.events
    return response


async def submit_all(client: NodeClient, commands: Sequence[c.Command]) -> list[Response]:
    """Pipeline every command on one connection; every one must be acknowledged."""
    return list(
        await asyncio.wait_for(
            asyncio.gather(*(client.submit(command) for command in commands)),
            REQUEST_TIMEOUT_S,
        )
    )


async def query(client: NodeClient, what: str, **args: str | int) -> Any:
    return await asyncio.wait_for(client.query(what, **args), REQUEST_TIMEOUT_S)


async def close_client(client: NodeClient) -> None:
    await client.close()
    await asyncio.sleep(0)


# -- workload ------------------------------------------------------------------------------------


def setup_with_ids(accounts: int, fund_minor: int, fund_shares: int) -> list[c.Command]:
    """The standard venue set-up, each command with a request id so retrying it is safe."""
    return [
        msgspec.structs.replace(command, request_id=f"setup-{i}")
        for i, command in enumerate(setup_commands(accounts, fund_minor, fund_shares))
    ]


# -- offline inspection --------------------------------------------------------------------------


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    ts_ns: int
    command: c.Command


def journal_entries(data_dir: Path) -> list[JournalEntry]:
    """Every command still in the journal, in seq order (the node must be stopped)."""
    entries: list[JournalEntry] = []
    with FileJournal(DataDir(data_dir).journal, segment_bytes=1 << 40) as journal:
        for record in journal.read(journal.first_seq):
            batch = decode_batch(record.payload)
            assert len(batch.commands) == record.count
            for i, command in enumerate(batch.commands):
                entries.append(JournalEntry(record.first_seq + i, batch.ts_ns, command))
    return entries


@dataclass
class Replayed:
    engine: Engine
    events: dict[int, list[e.Event]]  # seq -> events
    hashes: dict[int, str]  # checkpoint seq -> state hash after it


def replay_entries(
    data_dir: Path,
    entries: Sequence[JournalEntry],
    checkpoints: set[int] | None = None,
    engine: Engine | None = None,
) -> Replayed:
    """Apply the ``entries`` after ``engine.seq`` to ``engine`` (default: a fresh engine with the
    data dir's config), keeping the events of every command applied and the state hash at each
    checkpoint seq (``engine.seq`` included)."""
    if engine is None:
        engine = Engine(DataDir(data_dir).load_config())
    wanted = checkpoints or set()
    hashes: dict[int, str] = {}
    if engine.seq in wanted:
        hashes[engine.seq] = engine.state_hash()
    events: dict[int, list[e.Event]] = {}
    for entry in entries:
        if entry.seq <= engine.seq:
            continue
        events[entry.seq] = engine.apply(entry.seq, entry.ts_ns, entry.command)
        if entry.seq in wanted:
            hashes[entry.seq] = engine.state_hash()
    return Replayed(engine, events, hashes)


@dataclass(frozen=True)
class RecordSpan:
    path: Path
    offset: int  # of the header
    end: int  # one past the payload
    first_seq: int
    count: int

    @property
    def payload_offset(self) -> int:
        return self.offset + RECORD_HEADER.size


def segments(data_dir: Path) -> list[Path]:
    return sorted(DataDir(data_dir).journal.glob("*.seg"))


def record_spans(segment: Path) -> Iterator[RecordSpan]:
    data = segment.read_bytes()
    offset = 0
    while offset < len(data):
        magic, length, first_seq, count, _crc = RECORD_HEADER.unpack_from(data, offset)
        assert magic == RECORD_MAGIC
        end = offset + RECORD_HEADER.size + length
        assert end <= len(data)
        yield RecordSpan(segment, offset, end, first_seq, count)
        offset = end


def flip_bit(path: Path, offset: int, bit: int = 0) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))
        f.flush()
        os.fsync(f.fileno())
