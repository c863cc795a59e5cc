"""The event bus against a real nats-server (JetStream, 127.0.0.1): every durable event once, on
its subject, in order, one message per command and subject with Nats-Msg-Id seq/index of its
first event; kill -9 of the publisher at random points publishes nothing twice and loses
nothing."""

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
from openbell.journal.nats import DEFAULT_STREAM as JOURNAL_STREAM
from openbell.projections.bus import STREAM, BusError, BusPublisher, subject_of
from openbell.projections.projector import Projector
from openbell.projections.sample import build_journal
from openbell.projections.source import FileJournalTail, Replayer, engine_config
from openbell.testing.servers import NatsServer


def expected_messages(data: Path) -> dict[str, tuple[str, list[str]]]:
    """msg id -> (subject, its events' types in order) of every message the journal's commands
    give: one per command and subject, with the index of the subject's first event."""
    out: dict[str, tuple[str, list[str]]] = {}

    def collect(seq: int, ts: int, cmd: Any, events: list[Any], eng: Engine) -> None:
        first: dict[str, str] = {}
        for index, event in enumerate(events):
            subject = subject_of(event)
            if subject is not None:
                msg_id = first.setdefault(subject, f"{seq}/{index}")
                out.setdefault(msg_id, (subject, []))[1].append(type(event).__name__)

    Replayer(FileJournalTail(data / "journal"), engine_config(data)).pump(collect)
    return out


def as_messages(stored: list[tuple[str, str, bytes]]) -> dict[str, tuple[str, list[str]]]:
    return {
        msg_id: (subject, [event["type"] for event in msgspec.json.decode(data)])
        for subject, msg_id, data in stored
    }


def stored_events(stored: list[tuple[str, str, bytes]], prefix: str = "") -> list[Any]:
    return [
        event
        for subject, _, data in stored
        if subject.startswith(prefix)
        for event in msgspec.json.decode(data)
    ]


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
        for name in (STREAM, JOURNAL_STREAM):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
    finally:
        await nc.close()


async def _add_stream(url: str, name: str, subjects: list[str]) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(name=name, subjects=subjects)
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
    assert len(stored) == len(expected) == publisher.messages
    assert as_messages(stored) == expected  # every event once, on its subject, in order
    assert publisher.published == sum(len(types) for _, types in expected.values())
    assert publisher.messages < publisher.published  # a command's events share messages
    subjects = Counter(subject.split(".")[1] for subject, _, _ in stored)
    assert set(subjects) == {"md", "exec", "ipo", "admin"}
    trades = [t for t in stored_events(stored, "openbell.md.") if t["type"] == "Trade"]
    assert [t["trade_id"] for t in trades] == list(range(1, engine.next_trade_id))
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
    assert as_messages(stored) == expected  # nothing lost
    trades = [t for t in stored_events(stored) if t["type"] == "Trade"]
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
    ours = [message for message in stored if message[1] != "foreign"]
    assert len(ours) == len(expected) == len(stored) - 1
    assert as_messages(ours) == expected


def test_small_blocks_and_a_small_payload_limit_split_the_same_way_every_time(
    sample: tuple[Path, Engine], bus: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many acknowledged blocks per chunk (at most a few unacknowledged), and a command's
    events on one subject too big for one message split into several, each with the index of
    its first event: every event once, in order, and a second run adds nothing."""
    from openbell.projections import bus as bus_module

    data, _engine = sample
    monkeypatch.setattr(bus_module, "BLOCK_MESSAGES", 7)
    monkeypatch.setattr(bus_module, "MAX_UNACKED_BLOCKS", 2)

    def small(publisher: BusPublisher) -> BusPublisher:
        publisher._max_payload_bytes = 600
        return publisher

    publisher = small(BusPublisher(data, bus))
    Projector(data, [publisher], chunk_commands=700).catch_up()
    publisher.close()
    assert publisher.slow_chunks == 0 and publisher.duplicates == 0
    stored = asyncio.run(_read_all(bus))
    grouped = expected_messages(data)
    assert len(stored) == publisher.messages > len(grouped)  # some commands split
    assert all(len(data) <= 600 or data.count(b'"type"') == 1 for _, _, data in stored)
    events = [(s, t["type"]) for s, _, d in stored for t in msgspec.json.decode(d)]
    assert sorted(events) == sorted((s, t) for s, types in grouped.values() for t in types)
    by_subject: dict[str, list[str]] = {}
    for subject, msg_id, _ in stored:
        by_subject.setdefault(subject, []).append(msg_id)
    for ids in by_subject.values():  # each subject in journal order
        keys = [tuple(int(x) for x in msg_id.split("/")) for msg_id in ids]
        assert keys == sorted(keys)
    # republished from the start (position lost): the same ids, all dropped as duplicates
    (data / "projections" / "bus.position").unlink()
    again = small(BusPublisher(data, bus))
    Projector(data, [again], chunk_commands=700).catch_up()
    again.close()
    assert again.duplicates == again.messages == publisher.messages
    assert len(asyncio.run(_read_all(bus))) == len(stored)


def test_the_bus_shares_a_server_with_a_nats_journal_and_refuses_a_foreign_stream(
    tmp_path: Path, bus: str
) -> None:
    data = tmp_path / "data"
    engine = build_journal(data, commands=300, seed=5)
    asyncio.run(_add_stream(bus, JOURNAL_STREAM, [f"{JOURNAL_STREAM}.>"]))  # a journal's stream
    publisher = BusPublisher(data, bus)
    Projector(data, [publisher]).catch_up()
    publisher.close()
    assert publisher.position() == engine.seq
    assert len(asyncio.run(_read_all(bus))) == publisher.messages > 0
    asyncio.run(_delete_stream(bus))
    asyncio.run(_add_stream(bus, STREAM, ["elsewhere.>"]))  # the bus's name, not its subjects
    with pytest.raises(BusError, match="give the bus a stream of its own"):
        BusPublisher(tmp_path / "other", bus)
