"""The IPO lane: a queued subscription flood does not delay trading, its limits refuse with a
typed LaneBusy, and the journal's interleaving replays to the same state.

In-process: a real FileJournal (behind the gate of test_sequencer's GatedJournal) and a real
Engine.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine
from openbell.core.ipo import messages as m
from openbell.journal.file import FileJournal
from openbell.node.codec import decode_batch
from openbell.node.lanes import IpoLaneConfig, LaneBusy, TokenBucket
from openbell.node.protocol import Response
from openbell.node.recovery import replay
from openbell.node.sequencer import Sequencer
from openbell.sim.ipo_flood import flood_setup, subscriptions
from openbell.sim.workload import QUOTE

from .harness import NodeRunner, close_client, connect, setup_with_ids, submit, submit_all
from .test_sequencer import WAIT_S, GatedJournal, Replies

TRADERS = 4
FLOOD_FIRST = 16 + TRADERS  # setup_with_ids opens accounts 16.. first
FLOOD = 3_000
SHARE = 16


def _started(journal: GatedJournal, lane: IpoLaneConfig) -> Sequencer:
    """A sequencer with the venue and the open offering set up, the journal gate closed."""
    sequencer = Sequencer(Engine(), journal, ipo_lane=lane)
    sequencer.start()
    journal.gate.set()
    replies = Replies()
    commands = setup_with_ids(TRADERS, 10**9, 10**6) + flood_setup(FLOOD_FIRST, FLOOD, QUOTE)
    sequencer.submit_many(commands, replies)
    replies.wait(len(commands))
    assert all(not error for _, _, error in replies.items)
    assert not any(isinstance(ev, e.Rejected) for _, evs, _ in replies.items for ev in evs or [])
    journal.gate.clear()
    journal.entered.clear()
    return sequencer


def _journal_commands(journal: GatedJournal) -> list[c.Command]:
    return [command for r in journal.read(1) for command in decode_batch(r.payload).commands]


def test_a_trading_command_is_sequenced_ahead_of_a_queued_flood(tmp_path: Path) -> None:
    journal = GatedJournal(FileJournal(tmp_path / "journal"))
    lane = IpoLaneConfig(max_per_s=10**6, burst=10**6, queue_capacity=10_000, max_per_batch=SHARE)
    sequencer = _started(journal, lane)
    try:
        first_flood_seq = sequencer.engine.seq + 1
        flood_replies = Replies()
        sequencer.submit_many(subscriptions(FLOOD_FIRST, 0, FLOOD), flood_replies)
        assert journal.entered.wait(WAIT_S)  # the first IPO batch is at the closed gate
        time.sleep(0.2)  # the sequencer cuts what it may while the journal is held
        assert sequencer.ipo_queue_depth >= FLOOD - 2 * SHARE  # the flood waits in its lane
        trading = Replies()
        deposit = c.Deposit(account=16, asset=QUOTE, amount_minor=5, request_id="after-flood")
        sequencer.submit(deposit, trading)
        time.sleep(0.1)
        journal.gate.set()
        trading.wait(1)
        ((seq, events, error),) = trading.items
        assert not error and events and not isinstance(events[0], e.Rejected)
        # Behind it: the IPO batch at the gate and at most one more cut before it arrived; a
        # single FIFO queue would have put it behind all FLOOD subscriptions.
        ahead = seq - first_flood_seq
        print(f"trading command sequenced after {ahead} of {FLOOD} queued subscriptions")
        assert ahead <= 2 * SHARE
        flood_replies.wait(FLOOD, timeout_s=60)
        assert all(not error for _, _, error in flood_replies.items)
        subscribed = [evs[0] for _, evs, _ in flood_replies.items if evs]
        assert all(isinstance(ev, m.IpoSubscribed) for ev in subscribed)
        assert len(subscribed) == FLOOD
        # FIFO within the lane: the subscriptions are in the journal in the order sent.
        journaled = _journal_commands(journal)
        flood_in_journal = [cmd for cmd in journaled if isinstance(cmd, m.IpoSubscribe)]
        assert flood_in_journal == subscriptions(FLOOD_FIRST, 0, FLOOD)
        assert journaled.index(deposit) == seq - 1
    finally:
        sequencer.stop()
    # The journal records the interleaving chosen: replay gives the same state.
    replayed = Engine()
    replay(replayed, journal.read(1))
    assert replayed.seq == sequencer.engine.seq
    assert replayed.state_hash() == sequencer.engine.state_hash()
    journal.close()


def test_the_lanes_limits_refuse_with_a_typed_busy(tmp_path: Path) -> None:
    journal = GatedJournal(FileJournal(tmp_path / "journal"))
    lane = IpoLaneConfig(max_per_s=10**6, burst=10**6, queue_capacity=100, max_per_batch=SHARE)
    sequencer = _started(journal, lane)
    try:
        replies = Replies()
        accepted = 0
        refused: LaneBusy | None = None
        for sub in subscriptions(FLOOD_FIRST, 0, 400):  # bounded: the lane holds 100
            try:
                sequencer.submit(sub, replies)
            except LaneBusy as busy:
                refused = busy
                break
            accepted += 1
        assert refused is not None, "the full lane never refused"
        assert refused.why == "queue full" and refused.retry_after_s > 0
        assert "IPO lane is busy (queue full)" in str(refused)
        assert 100 <= accepted <= 100 + 4 * SHARE  # batches cut behind the closed gate
        depth = sequencer.ipo_queue_depth
        # All or nothing: a mixed submit_many refused by the IPO lane queues nothing at all.
        mixed = [c.Deposit(account=16, asset=QUOTE, amount_minor=1, request_id="mixed")]
        with pytest.raises(LaneBusy):
            sequencer.submit_many([*mixed, *subscriptions(FLOOD_FIRST, 400, 1)], replies)
        assert sequencer.ipo_queue_depth == depth
        # Trading still gets in while the IPO lane refuses.
        trading = Replies()
        sequencer.submit(c.Deposit(account=16, asset=QUOTE, amount_minor=1), trading)
        journal.gate.set()
        trading.wait(1)
        assert not trading.items[0][2]
        replies.wait(accepted, timeout_s=30)
        assert all(not error for _, _, error in replies.items)
    finally:
        journal.gate.set()
        sequencer.stop()
    assert len(replies) == accepted  # the refused ones were never sequenced
    assert not any(cmd.request_id == "mixed" for cmd in _journal_commands(journal))
    journal.close()


def test_the_rate_limit_refuses_beyond_the_burst(tmp_path: Path) -> None:
    journal = GatedJournal(FileJournal(tmp_path / "journal"), gated=False)
    lane = IpoLaneConfig(max_per_s=20, burst=10, queue_capacity=1000, max_per_batch=SHARE)
    sequencer = _started(journal, lane)
    journal.gate.set()
    try:
        replies = Replies()
        refused: LaneBusy | None = None
        accepted = 0
        for sub in subscriptions(FLOOD_FIRST, 0, 30):  # bounded; in well under 50 ms
            try:
                sequencer.submit(sub, replies)
            except LaneBusy as busy:
                refused = busy
                break
            accepted += 1
        assert refused is not None and refused.why == "rate limit 20/s"
        assert 0 < refused.retry_after_s <= 1 / 20 + 1e-9
        assert 10 <= accepted <= 11
        # An operator's IPO command is not a subscription: never rate-limited.
        operator = Replies()
        sequencer.submit(m.IpoClose(symbol="FLOOD", request_id="close"), operator)
        operator.wait(1)
        assert not operator.items[0][2]
        # A refused subscription changed nothing; after the wait it is admitted (and, the
        # offering now being closed, rejected by the engine with a reason).
        time.sleep(refused.retry_after_s + 0.01)
        sequencer.submit(subscriptions(FLOOD_FIRST, accepted, 1)[0], replies)
        replies.wait(accepted + 1)
        assert isinstance((replies.items[-1][1] or [None])[0], e.Rejected)
    finally:
        sequencer.stop()
        journal.close()


def test_stop_sequences_what_the_ipo_lane_holds(tmp_path: Path) -> None:
    journal = GatedJournal(FileJournal(tmp_path / "journal"), gated=False)
    lane = IpoLaneConfig(max_per_s=10**6, burst=10**6, queue_capacity=10_000, max_per_batch=SHARE)
    sequencer = _started(journal, lane)
    journal.gate.set()
    replies = Replies()
    sequencer.submit_many(subscriptions(FLOOD_FIRST, 0, 500), replies)
    sequencer.stop()
    assert len(replies) == 500 and all(not error for _, _, error in replies.items)
    assert sequencer.ipo_queue_depth == 0
    assert sum(isinstance(cmd, m.IpoSubscribe) for cmd in _journal_commands(journal)) == 500
    journal.close()


def test_token_bucket_refills_at_its_rate() -> None:
    now = [100.0]
    bucket = TokenBucket(10, 5, lambda: now[0])
    assert bucket.take(5) == 0.0
    assert bucket.take(1) == pytest.approx(0.1)
    now[0] += 0.25  # 2.5 tokens
    assert bucket.take(2) == 0.0
    assert bucket.take(1) == pytest.approx(0.05)
    now[0] += 10.0  # never more than the burst saved up
    assert bucket.take(6) == 0.0  # larger than any burst: admitted on a full bucket only
    assert bucket.take(6) > 0


def test_a_node_process_answers_busy_for_the_ipo_lane(tmp_path: Path, nodes: NodeRunner) -> None:
    """Through the node API of a real process: past the lane's burst, subscriptions are refused
    with a BUSY that names the lane and when to retry, while trading is still accepted."""
    node = nodes.run(tmp_path / "data", "--ipo-per-s", "5", "--ipo-queue", "1000")
    setup = setup_with_ids(TRADERS, 10**9, 10**6) + flood_setup(FLOOD_FIRST, 50, QUOTE)

    async def drive() -> tuple[list[Response], Response]:
        client = await connect(node)
        try:
            assert all(not r.error for r in await submit_all(client, setup))
            flood = await submit_all(client, subscriptions(FLOOD_FIRST, 0, 20))
            trading = await submit(
                client, c.Deposit(account=16, asset=QUOTE, amount_minor=1, request_id="t")
            )
            return flood, trading
        finally:
            await close_client(client)

    flood, trading = asyncio.run(drive())
    busy = [r for r in flood if r.error]
    accepted = [r for r in flood if not r.error]
    assert 1 <= len(accepted) <= 2 and len(busy) >= 18  # burst: 5 // 5 = 1 token
    assert all(
        r.error.startswith("BUSY: the IPO lane is busy (rate limit 5/s); retry in ") for r in busy
    )
    assert all(isinstance((r.events or [None])[0], m.IpoSubscribed) for r in accepted)
    assert not trading.error and trading.seq > 0
    assert node.terminate() == 0
