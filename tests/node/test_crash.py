"""THE crash test: a client drives a real node process while the node is SIGKILLed at random
moments and restarted; the client retries every unacknowledged command with the same request id.

At the end: every acknowledged command is in the journal at the seq it was acknowledged with,
every command took effect exactly once (the rest of its copies are DuplicateRequest), the
depositors' balances hold every deposit exactly once, the state the node reported after each
restart equals a replay of the journal up to that seq, and the final state hash equals both a
full replay and snapshot + tail.

The default suite runs ~30 kills; ``-m soak`` runs many more (OPENBELL_SOAK_KILLS, default 300).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine
from openbell.core.types import FIRST_USER_ACCOUNT, Side
from openbell.journal.snapshot import SnapshotStore, snapshot_file_name
from openbell.node.client import NodeClient
from openbell.node.commands import run_replay
from openbell.node.protocol import Response

from .harness import (
    REQUEST_TIMEOUT_S,
    STOPPED_LINE,
    NodeProcess,
    NodeRunner,
    close_client,
    connect,
    journal_entries,
    query,
    replay_entries,
    segments,
    setup_with_ids,
    submit,
)

SYMBOL = "BENCH"
USD = "USD"
TRADERS = 8  # accounts 16..23 trade
DEPOSITORS = 4  # accounts 24..27 only receive deposits
FIRST_TRADER = int(FIRST_USER_ACCOUNT)
FIRST_DEPOSITOR = FIRST_TRADER + TRADERS
FUND_MINOR = 10**12
FUND_SHARES = 10**9
MID_TICKS = 10_000
ROUND_WAIT_S = REQUEST_TIMEOUT_S
SETTLED_COMMANDS = 1_000  # after the last kill: snapshots, segment rolls and pruning for sure

pytestmark = pytest.mark.keep_artifacts  # a failed run's data dirs go to test-artifacts/


@dataclass(frozen=True)
class Ack:
    seq: int  # where the command took effect (the original seq for a DuplicateRequest answer)
    duplicate: bool
    events: list[e.Event]
    original: list[e.Event] | None = None  # a duplicate's original events, if the node had them


@dataclass
class CrashClient:
    """The client's view: every command it made, which ones are acknowledged, what to retry."""

    rng: random.Random
    commands: dict[str, c.Command] = field(default_factory=dict)
    unacked: dict[str, c.Command] = field(default_factory=dict)
    acks: dict[str, Ack] = field(default_factory=dict)
    deposited: dict[int, int] = field(default_factory=dict)  # account -> sum of its deposits
    resting: dict[int, int] = field(default_factory=dict)  # order id -> account (approximate)
    checkpoints: dict[int, str] = field(default_factory=dict)  # seq -> hash after a restart
    max_acked_seq: int = 0
    next_n: int = 0
    duplicates: int = 0
    kills_with_commands_in_flight: int = 0

    def add(self, command: c.Command) -> None:
        assert command.request_id not in self.commands
        self.commands[command.request_id] = command
        self.unacked[command.request_id] = command

    def new_command(self) -> c.Command:
        rng = self.rng
        n = self.next_n
        self.next_n += 1
        roll = rng.random()
        command: c.Command
        if roll < 0.35:
            account = FIRST_DEPOSITOR + rng.randrange(DEPOSITORS)
            amount = rng.randint(1, 1_000_000)
            self.deposited[account] = self.deposited.get(account, 0) + amount
            command = c.Deposit(account=account, asset=USD, amount_minor=amount, request_id=f"d{n}")
        elif roll < 0.55 and self.resting:
            order_id = rng.choice(list(self.resting))
            account = self.resting.pop(order_id)
            command = c.CancelOrder(account=account, order_id=order_id, request_id=f"x{n}")
        else:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            offset = rng.randint(-3, 15)  # a few cross the spread and trade
            price = MID_TICKS - offset if side is Side.BUY else MID_TICKS + offset
            command = c.PlaceOrder(
                account=FIRST_TRADER + rng.randrange(TRADERS),
                symbol=SYMBOL,
                client_order_id=f"c{n}",
                side=side,
                quantity_lots=rng.randint(1, 50),
                price_ticks=price,
                request_id=f"p{n}",
            )
        self.add(command)
        return command

    def record(self, command: c.Command, response: Response) -> None:
        rid = command.request_id
        assert not response.error, (rid, response.error)
        assert response.seq > 0 and response.events, response
        assert rid not in self.acks and rid in self.unacked
        events = response.events
        assert all(event.seq == response.seq for event in events), events
        first = events[0]
        if isinstance(first, e.DuplicateRequest):
            assert len(events) == 1 and first.request_id == rid
            assert 0 < first.original_seq < response.seq
            ack = Ack(first.original_seq, True, events, response.original)
            self.duplicates += 1
        else:
            ack = Ack(response.seq, False, events)
            for event in events:
                if isinstance(event, e.OrderAccepted):
                    self.resting[event.order_id] = event.account
                elif isinstance(event, e.Execution | e.OrderCancelled) and event.leaves_lots == 0:
                    self.resting.pop(event.order_id, None)
        self.acks[rid] = ack
        del self.unacked[rid]
        self.max_acked_seq = max(self.max_acked_seq, response.seq)


async def _drive(
    client: NodeClient, crash: CrashClient, commands: list[c.Command], node: NodeProcess | None
) -> None:
    """Pipeline ``commands``; if ``node`` is given, SIGKILL it at a random moment of the round
    (after a random number of acknowledgements, or after a random delay)."""
    rng = crash.rng
    kill_after_acks = rng.randrange(len(commands)) if node is not None else -1
    kill_delay_s = rng.uniform(0.0, 0.08) if node is not None and rng.random() < 0.3 else None
    acks = 0

    def kill() -> None:
        assert node is not None
        if node.process.poll() is None:
            if crash.unacked:
                crash.kills_with_commands_in_flight += 1
            node.kill()

    async def one(command: c.Command) -> None:
        nonlocal acks
        response = await client.submit(command)
        crash.record(command, response)
        acks += 1
        if kill_delay_s is None and acks == kill_after_acks:
            kill()

    tasks = [asyncio.create_task(one(command)) for command in commands]
    if node is not None:
        if kill_delay_s is not None:
            await asyncio.sleep(kill_delay_s)
            kill()
        elif kill_after_acks == 0:
            await asyncio.sleep(0)  # the writes are issued; nothing is acknowledged yet
            kill()
    done, pending = await asyncio.wait(tasks, timeout=ROUND_WAIT_S)
    assert not pending, f"{len(pending)} requests neither answered nor failed"
    if node is None:
        for task in done:
            task.result()  # no kill: every command must be acknowledged
    else:
        kill()  # all acknowledged before the kill point: kill now (nothing in flight)
        for task in done:
            error = task.exception()
            assert error is None or isinstance(error, ConnectionError), repr(error)


def _start(nodes: NodeRunner, data_dir: Path, args: list[str], crash: CrashClient) -> NodeProcess:
    node = nodes.run(data_dir, *args)
    assert node.startup is not None
    # durability: nothing acknowledged before the crash is lost
    assert node.startup.seq >= crash.max_acked_seq, (node.startup, crash.max_acked_seq)
    assert node.startup.replayed == node.startup.seq - node.startup.snapshot_seq
    return node


async def _crash_run(
    nodes: NodeRunner, data_dir: Path, args: list[str], crash: CrashClient, kills: int
) -> tuple[int, str, dict[int, int]]:
    """Drive the node through ``kills`` SIGKILLs; return the final (seq, hash, balances)."""
    rng = crash.rng
    for command in setup_with_ids(TRADERS + DEPOSITORS, FUND_MINOR, FUND_SHARES):
        crash.add(command)
    kills_done = 0
    while kills_done < kills:
        if kills_done and rng.random() < 0.1:
            # kill during recovery / startup, before or just after it is ready
            node = nodes.start(data_dir, *args)
            time.sleep(rng.uniform(0.0, 0.6))
            node.kill_and_wait()
            kills_done += 1
            continue
        node = _start(nodes, data_dir, args, crash)
        client = await connect(node)
        answer = await query(client, "state_hash")
        assert node.startup is not None and answer["seq"] == node.startup.seq
        crash.checkpoints[answer["seq"]] = answer["state_hash"]
        if not crash.acks:  # the venue set-up goes first, in order, without a kill
            for command in list(crash.unacked.values()):
                crash.record(command, await submit(client, command))
        retries = list(crash.unacked.values())
        fresh = [crash.new_command() for _ in range(rng.randint(40, 400))]
        await _drive(client, crash, retries + fresh, node)
        await close_client(client)
        node.kill_and_wait()
        kills_done += 1

    node = _start(nodes, data_dir, args, crash)
    client = await connect(node)
    for _ in range(5):  # bounded: without kills every retry is answered at once
        if not crash.unacked:
            break
        await _drive(client, crash, list(crash.unacked.values()), None)
    assert not crash.unacked
    # Then a stretch without kills, long enough for periodic snapshots to be written and for
    # retention to prune whatever the kills left. Issue 12, defect 8, second cause: under CPU
    # load a snapshot triggered near the end of a round was usually killed before it was
    # written, so a run could end with its first snapshot still the oldest kept one and the
    # journal never pruned ("the test lost its point"; seen with test-artifacts/).
    await _drive(client, crash, [crash.new_command() for _ in range(SETTLED_COMMANDS)], None)
    balances: dict[int, int] = {}
    for account in range(FIRST_DEPOSITOR, FIRST_DEPOSITOR + DEPOSITORS):
        answer = await query(client, "balance", account=account, asset=USD)
        assert answer["frozen_minor"] == 0
        balances[account] = answer["available_minor"]
    final = await query(client, "state_hash")
    await close_client(client)
    rc = node.terminate()
    assert rc == 0, node.stderr()
    stopped = STOPPED_LINE.search(node.stdout())
    assert stopped is not None and int(stopped.group(1)) == final["seq"]
    return final["seq"], final["state_hash"], balances


def _base_engine(data_dir: Path, first_seq: int) -> Engine | None:
    """Where a replay of a pruned journal starts: the oldest snapshot the journal continues
    (None: the journal is whole, start from a fresh engine)."""
    if first_seq == 1:
        return None
    store = SnapshotStore(data_dir / "snapshots")
    usable = [s for s in sorted(store.seqs()) if s >= first_seq - 1]
    assert usable, f"journal starts at {first_seq} but no snapshot covers it"
    return Engine.restore(store.load(store.directory / snapshot_file_name(usable[0])).state)


def _check(data_dir: Path, crash: CrashClient, seq: int, state_hash: str) -> None:
    entries = journal_entries(data_dir)
    first_seq = entries[0].seq
    pruned = first_seq > 1
    assert [entry.seq for entry in entries] == list(range(first_seq, seq + 1))
    by_request: dict[str, list[int]] = {}
    for entry in entries:
        rid = entry.command.request_id
        assert rid in crash.commands, f"seq {entry.seq}: a command nobody sent: {rid!r}"
        assert entry.command == crash.commands[rid]
        by_request.setdefault(rid, []).append(entry.seq)

    # (a) every acknowledged command is in the journal, at the seq it was acknowledged with
    assert set(crash.acks) == set(crash.commands)
    for rid, ack in crash.acks.items():
        if ack.seq >= first_seq:
            assert ack.seq in by_request.get(rid, []), (rid, ack.seq, by_request.get(rid))
        else:
            assert pruned

    # (b) exactly one effective application per request id; the rest are DuplicateRequest
    base = _base_engine(data_dir, first_seq)
    base_seq = 0 if base is None else base.seq
    replayed = replay_entries(data_dir, entries, set(crash.checkpoints), base)
    replayed.engine.check_invariants()
    for rid, seqs in by_request.items():
        if seqs[0] <= base_seq:
            continue  # its first application may be in a pruned segment
        first_kept = replayed.events[seqs[0]][0]
        if isinstance(first_kept, e.DuplicateRequest) and first_kept.original_seq <= base_seq:
            # A retry (after a kill lost the original's acknowledgement) whose original was
            # applied before the replay's base: the segment holding the original was pruned
            # (a snapshot fell between the original and its retry). Issue 12, defect 8: the
            # check expected to find the original among the kept entries and failed on
            # such a legitimate journal in about one run in six. Every kept copy must name
            # the same original, the one the client was told.
            for s in seqs:
                copy = replayed.events[s][0]
                assert isinstance(copy, e.DuplicateRequest), (rid, seqs)
                assert copy.original_seq == first_kept.original_seq, (rid, seqs)
            assert crash.acks[rid].seq == first_kept.original_seq, (rid, crash.acks[rid])
            continue
        effective: list[int] = []
        for s in seqs:
            first = replayed.events[s][0]
            if isinstance(first, e.DuplicateRequest):
                assert len(effective) == 1 and first.original_seq == effective[0], (rid, seqs)
            elif not isinstance(first, e.Rejected):
                effective.append(s)
        assert len(effective) <= 1, (rid, seqs)
        ack = crash.acks[rid]
        if not ack.duplicate:
            assert replayed.events[ack.seq] == ack.events, rid
        elif ack.original is not None:
            assert replayed.events[ack.seq] == ack.original, rid
        if ack.duplicate or not isinstance(ack.events[0], e.Rejected):
            assert effective == [ack.seq], (rid, seqs, ack)
        if isinstance(crash.commands[rid], c.Deposit):
            assert len(effective) == 1, (rid, seqs)

    for account in range(FIRST_DEPOSITOR, FIRST_DEPOSITOR + DEPOSITORS):
        expected = FUND_MINOR + crash.deposited.get(account, 0)
        assert replayed.engine.balance(account, USD) == (expected, 0)

    # every state the node reported after a restart is the replay of the journal up to there
    checked = 0
    for checkpoint, checkpoint_hash in crash.checkpoints.items():
        if checkpoint >= base_seq:
            assert replayed.hashes[checkpoint] == checkpoint_hash, checkpoint
            checked += 1
    assert pruned or checked == len(crash.checkpoints)

    # (c) the final state: node == full replay == snapshot + tail (empty after SIGTERM)
    assert replayed.engine.seq == seq and replayed.engine.state_hash() == state_hash
    if not pruned:
        full = run_replay(data_dir, from_snapshot=False, show_progress=False)
        assert (full.seq, full.state_hash, full.snapshot_seq) == (seq, state_hash, 0)
    from_snapshot = run_replay(data_dir, from_snapshot=True, show_progress=False)
    assert (from_snapshot.seq, from_snapshot.state_hash) == (seq, state_hash)
    assert from_snapshot.snapshot_seq == seq and from_snapshot.replayed_commands == 0


def _crash_test(
    nodes: NodeRunner, tmp_path: Path, seed: int, kills: int, segment_bytes: int, keep: int
) -> CrashClient:
    data_dir = tmp_path / "data"
    args = [
        *("--snapshot-every", "200"),
        *("--segment-bytes", str(segment_bytes)),
        *("--keep-snapshots", str(keep)),
    ]
    crash = CrashClient(random.Random(seed))
    seq, state_hash, balances = asyncio.run(_crash_run(nodes, data_dir, args, crash, kills))
    for account, balance in balances.items():
        assert balance == FUND_MINOR + crash.deposited.get(account, 0), account
    _check(data_dir, crash, seq, state_hash)
    # the run did what it claims: most kills landed with commands in flight, and snapshots
    # were taken (and, with small segments, the journal rolled and was pruned)
    assert crash.kills_with_commands_in_flight >= kills // 2
    assert len(list((data_dir / "snapshots").glob("*.snap"))) >= 2
    return crash


BIG_SEGMENTS = 1 << 30  # one segment: nothing is pruned, a full replay from seq 1 is possible
SMALL_SEGMENTS = 64 << 10


def test_sigkill_and_retry_is_exactly_once(nodes: NodeRunner, tmp_path: Path) -> None:
    crash = _crash_test(
        nodes, tmp_path, seed=20250611, kills=30, segment_bytes=BIG_SEGMENTS, keep=3
    )
    assert len(crash.commands) > 3000


def test_sigkill_with_segment_rolls_and_pruning(nodes: NodeRunner, tmp_path: Path) -> None:
    _crash_test(nodes, tmp_path, seed=424242, kills=10, segment_bytes=SMALL_SEGMENTS, keep=2)
    first_segment = segments(tmp_path / "data")[0]
    assert int(first_segment.stem) > 1, "the journal was never pruned: the test lost its point"


def test_check_accepts_a_retry_whose_original_was_pruned(nodes: NodeRunner, tmp_path: Path) -> None:
    """The cause of the flaky ``test_sigkill_with_segment_rolls_and_pruning`` (issue 12,
    defect 8), made deterministic: a command applied, its acknowledgement lost, then enough
    commands for snapshots and segment rolls, then its retry (a DuplicateRequest), and a clean
    stop. Retention prunes the segment with the original but keeps the retry after the oldest
    kept snapshot: a correct journal that the old check refused ("len(effective) == 1")."""
    data_dir = tmp_path / "data"
    args = ["--snapshot-every", "40", "--segment-bytes", "4096", "--keep-snapshots", "2"]
    crash = CrashClient(random.Random(1))

    async def run() -> tuple[int, str]:
        node = nodes.run(data_dir, *args)
        client = await connect(node)
        for command in setup_with_ids(TRADERS + DEPOSITORS, FUND_MINOR, FUND_SHARES):
            crash.add(command)
            crash.record(command, await submit(client, command))
        lost = c.Deposit(account=FIRST_DEPOSITOR, asset=USD, amount_minor=5, request_id="lost")
        crash.add(lost)
        crash.deposited[FIRST_DEPOSITOR] = 5
        original = await submit(client, lost)  # applied; the client "never saw" this answer
        assert original.seq > 0 and not original.error
        for n in range(300):  # snapshots every 40 commands, a segment roll every few dozen
            account = FIRST_DEPOSITOR + n % DEPOSITORS
            filler = c.Deposit(account=account, asset=USD, amount_minor=n + 1, request_id=f"f{n}")
            crash.add(filler)
            crash.deposited[account] = crash.deposited.get(account, 0) + n + 1
            crash.record(filler, await submit(client, filler))
        retry = await submit(client, lost)
        crash.record(lost, retry)
        assert isinstance(retry.events and retry.events[0], e.DuplicateRequest)
        final = await query(client, "state_hash")
        await close_client(client)
        assert node.terminate() == 0
        return int(final["seq"]), str(final["state_hash"])

    seq, state_hash = asyncio.run(run())
    entries = journal_entries(data_dir)
    assert entries[0].seq > crash.acks["lost"].seq  # the original was pruned ...
    assert any(entry.command.request_id == "lost" for entry in entries)  # ... its retry kept
    _check(data_dir, crash, seq, state_hash)


@pytest.mark.soak
@pytest.mark.timeout(7200)
@pytest.mark.parametrize(
    ("seed", "segment_bytes", "keep"),
    [(1, BIG_SEGMENTS, 3), (2, BIG_SEGMENTS, 3), (3, SMALL_SEGMENTS, 2)],
)
def test_sigkill_soak(
    nodes: NodeRunner, tmp_path: Path, seed: int, segment_bytes: int, keep: int
) -> None:
    kills = int(os.environ.get("OPENBELL_SOAK_KILLS", "300"))
    _crash_test(nodes, tmp_path, seed, kills, segment_bytes, keep)


def test_a_request_after_the_node_died_fails_fast(nodes: NodeRunner, tmp_path: Path) -> None:
    node = nodes.run(tmp_path / "data")

    async def run() -> None:
        client = await connect(node)
        try:
            await query(client, "status")  # the node has accepted the connection
            node.kill_and_wait()  # nothing unread on its side: the client sees EOF, not RST
            await asyncio.sleep(0.3)  # the client's reader has seen EOF by now
            with pytest.raises(ConnectionError):
                await asyncio.wait_for(client.submit(setup_with_ids(1, 1, 1)[0]), 1.0)
        finally:
            await close_client(client)

    asyncio.run(run())


def test_a_retry_after_a_crash_gets_the_original_result(nodes: NodeRunner, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    place = c.PlaceOrder(
        account=FIRST_TRADER,
        symbol=SYMBOL,
        client_order_id="c1",
        side=Side.BUY,
        quantity_lots=5,
        price_ticks=MID_TICKS,
        request_id="p1",
    )

    async def send(node: NodeProcess, commands: list[c.Command]) -> list[Response]:
        client = await connect(node)
        try:
            return [await submit(client, command) for command in commands]
        finally:
            await close_client(client)

    node = nodes.run(data_dir)
    setup = setup_with_ids(TRADERS, FUND_MINOR, FUND_SHARES)
    first = asyncio.run(send(node, [*setup, place]))[-1]
    assert first.events and isinstance(first.events[0], e.OrderAccepted)
    again = asyncio.run(send(node, [place]))[0]  # same process: the original is known
    assert again.events and isinstance(again.events[0], e.DuplicateRequest)
    assert again.original == first.events
    node.kill_and_wait()
    node = nodes.run(data_dir)
    retry = asyncio.run(send(node, [place]))[0]
    assert retry.events and isinstance(retry.events[0], e.DuplicateRequest)
    assert retry.events[0].original_seq == first.seq
    assert retry.original == first.events
