"""A seeded sample venue written as a real journal: the projections' tests and benchmarks run on it.

``build_journal(data_dir, ...)`` writes a node data directory (engine config, file journal of
command batches, optionally a snapshot) holding: the demo venue (three instruments, an opening
call auction), operator money movements (transfers, two-phase holds, withdrawals, an account
suspended and resumed, a kill switch), an IPO (single and batch subscriptions, close, numbering,
draw, settlement of every chunk), then seeded continuous order flow. Every command is applied
to an engine as the sequencer would, so the returned engine is what the node would hold.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from openbell.core import commands as c
from openbell.core.engine import Engine, EngineConfig
from openbell.core.ipo import messages as m
from openbell.core.types import FIRST_USER_ACCOUNT, AccountState, Phase
from openbell.journal.file import FileJournal
from openbell.journal.snapshot import SnapshotStore
from openbell.node.codec import encode_batch
from openbell.node.datadir import DataDir
from openbell.sim.flow import SESSION_OPEN_NS, USD, MarketFlow, SimClock, venue_setup

IPO_SYMBOL = "NEWCO"
IPO_SEED = b"openbell sample lottery seed"


def operator_commands(accounts: int) -> list[c.Command]:
    """Money movements and operator actions on the demo venue's accounts."""
    first = int(FIRST_USER_ACCOUNT)
    a, b, d = first + 1, first + 2, first + 3
    return [
        c.Transfer(legs=(c.TransferLeg(a, b, USD, 12_345),), request_id="ops-t1"),
        c.Freeze(hold_id="h1", account=a, asset=USD, amount_minor=50_000, request_id="ops-h1"),
        c.PostHold(hold_id="h1", to_account=b, amount_minor=20_000, request_id="ops-p1"),
        c.Freeze(hold_id="h2", account=b, asset=USD, amount_minor=7_000, request_id="ops-h2"),
        c.ReleaseHold(hold_id="h2", request_id="ops-r2"),
        c.Withdraw(account=d, asset=USD, amount_minor=99_999, request_id="ops-w1"),
        c.Deposit(account=d, asset=USD, amount_minor=1_000, request_id="ops-d1"),
        c.SetAccountState(account=d, state=AccountState.SUSPENDED, operator="ops", reason="kyc"),
        c.SetAccountState(account=d, state=AccountState.ACTIVE, operator="ops", reason="kyc ok"),
        c.Withdraw(account=a, asset=USD, amount_minor=10**15, request_id="ops-w2"),  # rejected
    ]


def ipo_commands(accounts: int, chunk_rows: int = 8) -> list[c.Command]:
    """A small tail-lottery offering: two single subscriptions, one batch, the whole lifecycle."""
    first = int(FIRST_USER_ACCOUNT)
    spec = m.OfferingSpec(
        symbol=IPO_SYMBOL,
        cash_asset=USD,
        price_minor=1_000,
        unit_shares=100,
        max_units=10,
        shares_offered=3_000,
        fee_bps=10,
        seed_commitment=hashlib.sha256(IPO_SEED).hexdigest(),
        chunk_rows=chunk_rows,
    )
    batch_accounts = np.arange(first + 3, first + accounts, dtype="<i8")
    units = (np.arange(len(batch_accounts), dtype="<i8") % 10) + 1
    out: list[c.Command] = [
        m.IpoCreateOffering(symbol=IPO_SYMBOL, spec=spec),
        m.IpoSubscribe(symbol=IPO_SYMBOL, account=first + 1, units=5, client_subscription_id="s1"),
        m.IpoSubscribe(symbol=IPO_SYMBOL, account=first + 2, units=3, client_subscription_id="s2"),
        m.IpoSubscribeBatch(
            symbol=IPO_SYMBOL, accounts=batch_accounts.tobytes(), units=units.tobytes()
        ),
        m.IpoClose(symbol=IPO_SYMBOL),
        m.IpoNumber(symbol=IPO_SYMBOL),
        m.IpoDraw(symbol=IPO_SYMBOL, seed=IPO_SEED),
    ]
    rows = len(batch_accounts) + 2
    out += [m.IpoSettleChunk(symbol=IPO_SYMBOL, chunk=i) for i in range(-(-rows // chunk_rows))]
    return out


def sample_commands(
    seed: int, commands: int, accounts: int, engine: Engine, batch: int = 64
) -> Iterator[list[c.Command]]:
    """Batches of the sample's commands, generated against ``engine`` as it is applied."""
    setup = venue_setup(accounts)
    opening: list[c.Command] = [
        cmd for cmd in setup if isinstance(cmd, c.SetPhase) and cmd.phase is Phase.CONTINUOUS
    ]
    before = [cmd for cmd in setup if cmd not in opening]
    yield before
    yield [*operator_commands(accounts), *ipo_commands(accounts)]
    yield opening
    flow = MarketFlow(seed, engine, accounts=accounts)
    produced = 0
    while produced < commands:
        n = min(batch, commands - produced)
        yield flow.next_commands(n)
        produced += n


def build_journal(
    data_dir: Path,
    commands: int = 5_000,
    seed: int = 7,
    accounts: int = 40,
    batch: int = 64,
    snapshot_at: Sequence[int] = (),
    config: EngineConfig | None = None,
) -> Engine:
    """Write the sample venue as a node data directory; returns the engine after the last seq.

    ``snapshot_at``: write a node snapshot at the first batch boundary at or after each seq.
    """
    dirs = DataDir(Path(data_dir))
    dirs.create(config or EngineConfig())
    engine = Engine(dirs.load_config())
    clock = SimClock(seed)
    store = SnapshotStore(dirs.snapshots)
    pending_snapshots = sorted(snapshot_at)
    with FileJournal(dirs.journal) as journal:
        for cmds in sample_commands(seed, commands, accounts, engine, batch):
            if not cmds:
                continue
            if any(isinstance(cmd, c.SetPhase) and cmd.phase is Phase.CONTINUOUS for cmd in cmds):
                clock.advance_to(SESSION_OPEN_NS)
            first = engine.seq + 1
            ts_ns = clock.next_ns()
            for offset, cmd in enumerate(cmds):
                engine.apply(first + offset, ts_ns, cmd)
            journal.append(first - 1, first, len(cmds), encode_batch(ts_ns, cmds))
            if pending_snapshots and engine.seq >= pending_snapshots[0]:
                state = engine.snapshot()
                store.write(engine.seq, hashlib.sha256(state).hexdigest(), state)
                while pending_snapshots and engine.seq >= pending_snapshots[0]:
                    pending_snapshots.pop(0)
    if engine.failure is not None:
        raise RuntimeError(f"the sample venue broke an invariant: {engine.failure}")
    return engine
