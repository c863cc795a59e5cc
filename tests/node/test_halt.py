"""Consistency halt drills: whatever shows the state cannot be trusted stops the venue and leaves
a diagnostic bundle (openbell.node.halt).

- an engine invariant violation (in-process Node: its sequencer writes the bundle);
- a read-model row altered: ``openbell check-read-model`` (its own process) halts a real node
  process; ``openbell status`` shows it; the node refuses to restart until resumed;
- a corrupted journal record at restart: the node refuses to start, says why, writes a bundle.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from openbell.core import commands as c
from openbell.node.halt import HaltReason, read_bundle, read_halt
from openbell.node.sequencer import NodeHalted
from openbell.node.service import Node, NodeConfig
from openbell.projections import db
from openbell.projections.runner import open_projector
from openbell.sim.workload import QUOTE

from .harness import (
    RECORD_HEADER,
    NodeRunner,
    close_client,
    connect,
    setup_with_ids,
    submit,
    submit_all,
)
from .test_sequencer import Replies, _poison

CLI_TIMEOUT_S = 60
ACCOUNT = 16


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openbell.cli", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def _deposits(count: int, start: int = 0) -> list[c.Command]:
    return [
        c.Deposit(account=ACCOUNT, asset=QUOTE, amount_minor=100 + i, request_id=f"dep-{i}")
        for i in range(start, start + count)
    ]


def test_an_invariant_violation_halts_with_a_bundle(tmp_path: Path) -> None:
    node = Node(NodeConfig(data_dir=str(tmp_path / "data")))
    node.open()
    _poison(node.sequencer.engine, "poison")
    node.start()
    try:
        replies = Replies()
        commands = setup_with_ids(2, 10**9, 10**6) + _deposits(3)
        node.sequencer.submit_many(commands, replies)
        replies.wait(len(commands))
        poison = c.Deposit(account=ACCOUNT, asset=QUOTE, amount_minor=1, request_id="poison")
        node.sequencer.submit(poison, replies)
        replies.wait(len(commands) + 1)
        assert replies.items[-1][2] == "NODE_HALTED"
        with pytest.raises(NodeHalted):
            node.sequencer.submit(_deposits(1, 10)[0], replies)
    finally:
        node.stop()
    record = read_halt(tmp_path / "data")
    assert record is not None and record.reason is HaltReason.INVARIANT_VIOLATION
    bundle = read_bundle(Path(record.bundle))
    assert bundle.reason is HaltReason.INVARIANT_VIOLATION and "KeyError" in bundle.detail
    assert bundle.seq == len(commands) + 1  # the command that failed
    assert bundle.durable_seq == len(commands)
    assert bundle.failed_batch == [poison]
    assert [b.command for b in bundle.last_commands][-3:] == _deposits(3)
    assert all(b.durable for b in bundle.last_commands)
    assert [b.seq for b in bundle.last_commands] == list(range(1, len(commands) + 1))
    # A halted data directory does not start again without the operator's resume.
    again = Node(NodeConfig(data_dir=str(tmp_path / "data")))
    with pytest.raises(RuntimeError, match="VENUE_HALTED \\(INVARIANT_VIOLATION"):
        again.open()
    resumed = Node(NodeConfig(data_dir=str(tmp_path / "data"), resume_after_halt=True))
    report = resumed.open()  # rebuilt from the journal, invariants checked
    assert report.last_seq == len(commands)
    assert read_halt(tmp_path / "data") is None
    resumed.start()
    resumed.stop()


def test_an_altered_read_model_row_halts_the_venue(tmp_path: Path, nodes: NodeRunner) -> None:
    data = tmp_path / "data"
    node = nodes.run(data)
    commands = setup_with_ids(3, 10**9, 10**6) + _deposits(5)

    async def load() -> None:
        client = await connect(node)
        try:
            responses = await submit_all(client, commands)
            assert all(not r.error for r in responses)
        finally:
            await close_client(client)

    asyncio.run(load())
    projector = open_projector(data)
    try:
        assert projector.catch_up() == len(commands)
    finally:
        projector.close()
    clean = _cli("check-read-model", "--data", str(data))
    assert clean.returncode == 0, clean.stderr
    assert f"read model equals the ledger at seq {len(commands)}" in clean.stdout

    engine = db.make_engine(db.default_url(data))
    with engine.begin() as conn:  # one row altered behind the projector's back
        changed = conn.execute(
            sa.text(
                "UPDATE balances SET available_minor = available_minor + 1 "
                "WHERE account = :account AND asset = :asset"
            ),
            {"account": ACCOUNT + 1, "asset": QUOTE},
        ).rowcount
    engine.dispose()
    assert changed == 1
    checked = _cli("check-read-model", "--data", str(data))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"MISMATCH at seq {len(commands)}: {QUOTE}: ledger available" in checked.stderr
    assert "venue halted" in checked.stderr

    status = _cli("status", "--data", str(data))
    assert status.returncode == 1, status.stderr
    answer = json.loads(status.stdout)
    assert answer["halted"] == "READ_MODEL_MISMATCH" and answer["seq"] == len(commands)
    bundle = read_bundle(Path(answer["bundle"]))
    assert bundle.reason is HaltReason.READ_MODEL_MISMATCH and bundle.seq == len(commands)
    assert "read model totals differ" in bundle.detail and QUOTE in bundle.detail
    assert [b.command for b in bundle.last_commands][-5:] == _deposits(5)
    assert len(bundle.state_hash) == 64

    async def refused() -> str:
        client = await connect(node)
        try:
            response = await submit(client, _deposits(1, 50)[0])
            return response.error
        finally:
            await close_client(client)

    assert asyncio.run(refused()).startswith("NODE_HALTED: READ_MODEL_MISMATCH")
    assert node.terminate() == 1
    # The halt outlives the process: a restart is refused until the operator resumes.
    blocked = nodes.start(data)
    assert blocked.wait_exit() == 2
    assert "VENUE_HALTED (READ_MODEL_MISMATCH at seq" in blocked.stderr()
    offline = _cli("status", "--data", str(data))
    assert offline.returncode == 1 and json.loads(offline.stdout)["running"] is False
    resumed = nodes.run(data, "--resume-after-halt")
    assert resumed.startup is not None and resumed.startup.seq == len(commands)
    assert read_halt(data) is None
    assert resumed.terminate() == 0


def test_a_corrupt_journal_record_at_restart_refuses_to_start(
    tmp_path: Path, nodes: NodeRunner
) -> None:
    data = tmp_path / "data"
    node = nodes.run(data)
    commands = setup_with_ids(2, 10**9, 10**6) + _deposits(6)

    async def load() -> None:
        client = await connect(node)
        try:
            for command in commands:  # one record each
                response = await submit(client, command)
                assert not response.error
        finally:
            await close_client(client)

    asyncio.run(load())
    node.process.kill()  # no snapshot at exit: the restart must replay the journal
    node.process.wait(timeout=30)
    (data / "node.sock").unlink(missing_ok=True)
    (segment,) = sorted((data / "journal").glob("*.seg"))
    raw = bytearray(segment.read_bytes())
    offset = 0
    for _ in range(3):  # to the fourth record: valid records follow it, so not a torn tail
        _magic, payload_bytes, *_rest = RECORD_HEADER.unpack_from(raw, offset)
        offset += RECORD_HEADER.size + payload_bytes
    raw[offset + RECORD_HEADER.size + 2] ^= 0x10  # one bit of its payload
    segment.write_bytes(bytes(raw))

    started = time.monotonic()
    refused = nodes.start(data)
    assert refused.wait_exit() == 2
    assert time.monotonic() - started < 30
    err = refused.stderr()
    assert "openbell node cannot start: VENUE_HALTED (JOURNAL_CORRUPT at seq 0)" in err
    assert "CRC32C mismatch" in err and "diagnostic bundle" in err
    record = read_halt(data)
    assert record is not None and record.reason is HaltReason.JOURNAL_CORRUPT
    bundle = read_bundle(Path(record.bundle))
    assert bundle.figures["path"] == str(segment) and bundle.figures["offset"] == offset
    # The commands before the bad record, read back from the journal for the operator.
    assert [b.command for b in bundle.last_commands] == commands[:3]
    # Resuming does not paper over a corrupt journal: still refused, still a bundle.
    again = nodes.start(data, "--resume-after-halt")
    assert again.wait_exit() == 2
    assert "JOURNAL_CORRUPT" in again.stderr()
