"""The event bus against a real nats-server (JetStream, 127.0.0.1): every durable event once, on
its subject, with Nats-Msg-Id seq/index; kill -9 of the publisher at random points publishes
nothing twice and loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest

from openbell.core.engine import Engine
from openbell.projections.bus import STREAM, BusPublisher, subject_of
from openbell.projections.projector import Projector
from openbell.projections.sample import build_journal
from openbell.projections.source import FileJournalTail, Replayer, engine_config
from openbell.testing.servers import NatsServer


def expected_messages(data: Path) -> dict[str, str]:
    """msg id -> subject of every event the journal's commands produce."""
    out: dict[str, str] = {}

    def collect(seq: int, ts: int, cmd: Any, events: list[Any], eng: Engine) -> None:
        for index, event in enumerate(events):
            subject = subject_of(event)
            if subject is not None:
                out[f"{seq}/{index}"] = subject

    Replayer(FileJournalTail(data / "journal"), engine_config(data)).pump(collect)
    return out


async def _read_all(url: str) -> list[tuple[str, str, bytes]]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(STREAM)
        total = info.state.messages
        sub = await js.pull_subscribe("openbell.>", stream=STREAM)
        out: list[tuple[str, str, bytes]] = []
        while len(out) < total:
            for msg in await sub.fetch(min(500, total - len(out)), timeout=10):
                out.append((msg.subject, (msg.headers or {})["Nats-Msg-Id"], msg.data))
                await msg.ack()
        return out
    finally:
        await nc.close()


async def _delete_stream(url: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(STREAM)
    finally:
        await nc.close()


@pytest.fixture
def bus(nats: NatsServer) -> str:
    asyncio.run(_delete_stream(nats.url))
    return nats.url


def test_every_durable_event_is_published_once_on_its_subject(
    sample: tuple[Path, Engine], bus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data, engine = sample
    publisher = BusPublisher(data, bus)
    Projector(data, [publisher], chunk_commands=500).catch_up()
    publisher.close()
    assert publisher.position() == engine.seq
    assert publisher.slow_chunks == 0 and publisher.duplicates == 0  # every ack, first time
    stored = asyncio.run(_read_all(bus))
    expected = expected_messages(data)
    assert len(stored) == len(expected)
    assert {msg_id: subject for subject, msg_id, _ in stored} == expected
    subjects = Counter(subject.split(".")[1] for subject, _, _ in stored)
    assert set(subjects) == {"md", "exec", "ipo", "admin"}
    trades = [msgspec.json.decode(d) for s, _, d in stored if s.startswith("openbell.md.")]
    trades = [t for t in trades if t["type"] == "Trade"]
    assert len(trades) == engine.next_trade_id - 1
    # the README's consumer example reads the subjects
    from openbell.projections.consumer_example import follow

    asyncio.run(asyncio.wait_for(follow(bus, "ACME", 17, limit=30), 20))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 30 and any(line.startswith("openbell.md.ACME") for line in lines)
    # a second publisher on the same position publishes nothing more
    again = BusPublisher(data, bus)
    Projector(data, [again]).catch_up()
    again.close()
    assert len(asyncio.run(_read_all(bus))) == len(expected)


def test_kill9_of_the_publisher_is_exactly_once(tmp_path: Path, bus: str) -> None:
    data = tmp_path / "data"
    engine = build_journal(data, commands=6_000, seed=4)
    rng = random.Random(8)
    position = data / "projections" / "bus.position"
    positions = []
    for _ in range(4):
        before = int(position.read_text()) if position.exists() else 0
        process = subprocess.Popen(
            [sys.executable, "-m", "openbell.projections", str(data), "--no-sql", "--bus", bus,
             "--chunk", str(rng.choice((5, 11, 29)))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            if position.exists() and int(position.read_text() or 0) > before:
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.08))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
        positions.append(int(position.read_text()) if position.exists() else 0)
    assert any(0 < p < engine.seq for p in positions), positions
    final = subprocess.run(
        [sys.executable, "-m", "openbell.projections", str(data), "--no-sql", "--bus", bus],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert final.returncode == 0, final.stderr[-2000:]
    stored = asyncio.run(_read_all(bus))
    ids = Counter(msg_id for _, msg_id, _ in stored)
    assert max(ids.values()) == 1  # nothing twice
    expected = expected_messages(data)
    assert set(ids) == set(expected)  # nothing lost
    trades = [msgspec.json.decode(d) for s, _, d in stored if b'"type":"Trade"' in d]
    assert len(trades) == engine.next_trade_id - 1
    assert sorted(t["trade_id"] for t in trades) == list(range(1, engine.next_trade_id))


async def _foreign_message(url: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().publish("openbell.admin", b"{}", headers={"Nats-Msg-Id": "foreign"})
    finally:
        await nc.close()


def test_a_chunk_whose_stream_seqs_do_not_add_up_is_republished_acknowledged(
    sample: tuple[Path, Engine], bus: str
) -> None:
    """Another writer's message between two chunks: the next chunk's acknowledgement does not
    land where the publisher expects it, so that chunk goes again message by message; the
    stream still holds every event once."""
    data, engine = sample
    publisher = BusPublisher(data, bus)
    projector = Projector(data, [publisher], chunk_commands=500)
    projector.catch_up(until_seq=engine.seq // 2)
    asyncio.run(_foreign_message(bus))
    projector.catch_up()
    publisher.close()
    assert publisher.slow_chunks == 1 and publisher.duplicates > 0
    stored = asyncio.run(_read_all(bus))
    expected = expected_messages(data)
    ours = [(subject, msg_id) for subject, msg_id, _ in stored if msg_id != "foreign"]
    assert len(ours) == len(expected) == len(stored) - 1
    assert dict((msg_id, subject) for subject, msg_id in ours) == expected
