"""The IPO tools against real ``openbell`` node processes: T / T+1 / T+2 / listing for each
lottery method, summaries checked against the node's views and ledger, the offline draw
verification, and THE crash test: a node SIGKILLed in the middle of settlement, restarted,
and settlement resumed, ends in exactly the state of an uninterrupted run."""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from node.harness import NodeProcess, NodeRunner
from typer.testing import CliRunner

from openbell import ipo_io, ipo_ops
from openbell.cli import app
from openbell.core.ipo.book import fee_of_many
from openbell.core.ipo.messages import IpoPhase, LotteryMethod, SubscriptionStatus
from openbell.core.types import EXTERNAL_ACCOUNT, FEE_ACCOUNT, IPO_ESCROW_ACCOUNT
from openbell.node.client import NodeClient, NodeError
from openbell.node.commands import run_replay
from openbell.sim.ipo import (
    OFFERING_FILE,
    POPULATION_FILE,
    RESULTS_FILE,
    SEED_FILE,
    TAILS_FILE,
    IpoSimConfig,
    generate,
    holds_minor,
    read_offering,
)

S = "NEWCO"
CASH = "CNY"
ACCOUNTS = 2_000
CHUNK_ROWS = 100  # 20 settlement chunks
FINAL_PRICE_MINOR = 800  # the ballot offering's final price (its maximum is 1,000)
RETRY = ipo_ops.RetryPolicy(attempts=3, first_delay_s=0.05, max_delay_s=0.2)
QUIET = ipo_ops.RunOptions(quiet=True, retry=RETRY)


def _sim(tmp_path: Path, method: LotteryMethod, **kw: Any) -> Path:
    out = tmp_path / f"sim-{method.value}"
    config = IpoSimConfig(
        accounts=ACCOUNTS,
        method=method,
        seed=11,
        max_units=20,
        oversubscription=15,
        chunk_rows=CHUNK_ROWS,
        **kw,
    )
    generate(config, out)
    return out


def _query(data: Path, what: str, **args: str | int) -> Any:
    async def ask() -> Any:
        client = await NodeClient.connect_data_dir(data)
        try:
            return await client.query(what, **args)
        finally:
            await client.close()

    return asyncio.run(ask())


def _state_hash(data: Path) -> str:
    return str(_query(data, "state_hash")["state_hash"])


def _balances(data: Path, accounts: list[int], asset: str) -> list[tuple[int, int]]:
    async def ask() -> list[tuple[int, int]]:
        client = await NodeClient.connect_data_dir(data)
        try:
            answers = await asyncio.gather(
                *(client.query("balance", account=a, asset=asset) for a in accounts)
            )
        finally:
            await client.close()
        return [(int(x["available_minor"]), int(x["frozen_minor"])) for x in answers]

    return asyncio.run(ask())


def _published(data: Path) -> dict[int, int]:
    async def ask() -> dict[int, int]:
        client = await NodeClient.connect_data_dir(data)
        try:
            accounts, won = await client.ipo_results(S, 0, 1_000_000)
        finally:
            await client.close()
        return dict(zip(accounts.tolist(), won.tolist(), strict=True))

    return asyncio.run(ask())


def _through_the_draw(
    nodes: NodeRunner, tmp_path: Path, sim: Path, name: str
) -> tuple[NodeProcess, ipo_ops.Target, dict[str, ipo_ops.PhaseReport]]:
    """A fresh node; fund, create, subscribe, close, number (+ export), draw (or import)."""
    data = tmp_path / name
    node = nodes.run(data)
    target = ipo_ops.Target(data=str(data))
    spec = read_offering(sim / OFFERING_FILE)
    reports = {
        "fund": ipo_ops.fund(target, sim / OFFERING_FILE, sim / POPULATION_FILE, options=QUIET),
        "create": ipo_ops.create(target, sim / OFFERING_FILE, options=QUIET),
        "subscribe": ipo_ops.subscribe(
            target, S, sim / POPULATION_FILE, batch_rows=300, options=QUIET
        ),
        "close": ipo_ops.close(target, S, options=QUIET),
        "number": ipo_ops.number(target, S, export=sim / f"numbering-{name}.csv", options=QUIET),
    }
    if spec.price_is_maximum:
        reports["set-price"] = ipo_ops.set_price(target, S, FINAL_PRICE_MINOR, options=QUIET)
    if spec.method is LotteryMethod.EXTERNAL:
        exchange = sim / TAILS_FILE if (sim / TAILS_FILE).exists() else sim / RESULTS_FILE
        reports["draw"] = ipo_ops.import_results(target, S, exchange, options=QUIET)
    elif spec.method is LotteryMethod.BALLOT:
        reports["basis"] = ipo_ops.basis(target, S, sim / "basis.csv", options=QUIET)
        reports["draw"] = ipo_ops.draw(
            target, S, sim / SEED_FILE, basis_file=sim / "basis.csv", options=QUIET
        )
    else:
        reports["draw"] = ipo_ops.draw(target, S, sim / SEED_FILE, options=QUIET)
    return node, target, reports


def _check_ledger(data: Path, sim: Path, price_minor: int, listed: bool) -> dict[int, int]:
    """Every applicant's cash and shares, and the system accounts, against the population,
    the published results and the fee rule."""
    spec = read_offering(sim / OFFERING_FILE)
    pop = ipo_io.read_population(sim / POPULATION_FILE)
    won_by = _published(data)
    accounts = pop.accounts.tolist()
    won = np.array([won_by.get(a, 0) for a in accounts], dtype=np.int64)
    cost = won * spec.unit_shares * price_minor
    fees = fee_of_many(cost, spec.fee_bps)
    cash = _balances(data, accounts, CASH)
    shares = _balances(data, accounts, S)
    assert [f for _, f in cash] == [0] * len(accounts)  # every hold resolved
    assert [a for a, _ in cash] == (pop.cash_minor - cost - fees).tolist()
    assert [a for a, _ in shares] == (won * spec.unit_shares).tolist()
    paid, fee_total = int(cost.sum()), int(fees.sum())
    won_shares = int(won.sum()) * spec.unit_shares
    (escrow_cash, _), (fee_cash, _), (external_cash, _) = _balances(
        data, [IPO_ESCROW_ACCOUNT, FEE_ACCOUNT, EXTERNAL_ACCOUNT], CASH
    )
    (escrow_shares, _), (external_shares, _) = _balances(
        data, [IPO_ESCROW_ACCOUNT, EXTERNAL_ACCOUNT], S
    )
    assert fee_cash == fee_total
    deposited = int(pop.cash_minor.sum())
    if listed:  # the issuer (here the external account) has the proceeds and unsold shares
        assert (escrow_cash, escrow_shares) == (0, 0)
        assert external_cash == -deposited + paid
        assert external_shares == -won_shares
    else:
        assert (escrow_cash, escrow_shares) == (paid, spec.shares_offered - won_shares)
        assert external_cash == -deposited
    return won_by


@pytest.mark.parametrize("method", list(LotteryMethod))
def test_full_offering_through_a_real_node(
    nodes: NodeRunner, tmp_path: Path, method: LotteryMethod
) -> None:
    maximum = method is LotteryMethod.BALLOT
    sim = _sim(
        tmp_path,
        method,
        price_is_maximum=maximum,
        final_price_minor=FINAL_PRICE_MINOR if maximum else 0,
    )
    spec = read_offering(sim / OFFERING_FILE)
    price = FINAL_PRICE_MINOR if maximum else spec.price_minor
    pop = ipo_io.read_population(sim / POPULATION_FILE)
    node, target, r = _through_the_draw(nodes, tmp_path, sim, "node")
    data = node.data_dir
    units = int(pop.units.sum())
    frozen = int(holds_minor(pop.units, spec.unit_shares, spec.price_minor, spec.fee_bps).sum())
    # T: the summaries agree with the population and the node's view.
    assert r["fund"].numbers["accounts_opened"] == ACCOUNTS
    assert r["fund"].numbers["cash_minor"] == int(pop.cash_minor.sum())
    sub = r["subscribe"].numbers
    assert (sub["active_subscriptions"], sub["active_units"]) == (ACCOUNTS, units)
    assert sub["active_frozen_minor"] == frozen and sub["batches"] == -(-ACCOUNTS // 300)
    assert r["close"].numbers["phase"] == "CLOSED"
    # The node recorded the numbering file's SHA-256; the exported file is that file.
    assert r["number"].numbers == {
        "numbered": ACCOUNTS,
        "units": units,
        "numbering_file": str(sim / "numbering-node.csv"),
        "numbering_sha256": ipo_io.file_sha256(sim / "numbering-node.csv"),
    }
    stored = _query(data, "ipo_offering", symbol=S)["numbering_sha256"]
    assert stored == r["number"].numbers["numbering_sha256"]
    numbering = ipo_io.read_numbering(sim / "numbering-node.csv")
    assert numbering.accounts.tolist() == pop.accounts.tolist()  # subscription order
    # T+1: the draw's summary is the node's.
    drawn = r["draw"].numbers
    won_by = _published(data)
    assert drawn["winners"] == len(won_by) and drawn["won_units"] == sum(won_by.values())
    assert drawn["won_units"] <= spec.shares_offered // spec.unit_shares
    assert drawn["won_shares"] == drawn["won_units"] * spec.unit_shares
    assert drawn["amount_minor"] == drawn["won_shares"] * price
    assert drawn["price_minor"] == price
    if method is LotteryMethod.TAIL_LOTTERY:
        assert drawn["tails"] and drawn["rate_digits"]
        # Winning numbers equal the units on offer; the full tail list, per length, with the
        # winning rate to 10 significant digits (exact Decimal arithmetic).
        assert drawn["won_units"] == spec.shares_offered // spec.unit_shares
        assert drawn["numbering_sha256"] == stored
        text = r["draw"].render()
        assert f"winning rate {ipo_ops.winning_rate(drawn['units_offered'], units)}" in text
        assert all(t in text for t in drawn["tails"]) and "..." not in text
        exported = ipo_ops.export_tails(target, S, sim / "tails-out.csv", options=QUIET)
        assert exported.numbers["tails"] == drawn["tails"]
        assert exported.numbers["winning_numbers"] == drawn["won_units"]
        assert ipo_io.read_tails(S, sim / "tails-out.csv").tails == drawn["tails"]
        args = ["ipo", "tails", "--symbol", S, "--data", str(data)]
        run = CliRunner().invoke(app, [*args, "--export", str(sim / "tails-cli.csv")])
        assert run.exit_code == 0 and "winning numbers in all: " in run.output, run.output
        assert (sim / "tails-cli.csv").read_bytes() == (sim / "tails-out.csv").read_bytes()
    if method is LotteryMethod.BALLOT:
        basis = ipo_io.read_basis(sim / "basis.csv")
        assert r["basis"].numbers["tiers"] == len(basis)
        assert r["basis"].numbers["allotted_units"] == drawn["won_units"]
    if method is LotteryMethod.EXTERNAL:
        res = ipo_io.read_results_file(sim / RESULTS_FILE)
        assert won_by == dict(zip(res.accounts.tolist(), res.won_units.tolist(), strict=True))
    # T+2: settlement moves exactly the drawn money and shares.
    settled = ipo_ops.settle(target, S, options=QUIET)
    st = settled.numbers
    assert st["chunks"] == 20 and st["chunks_settled_now"] == 20 and st["phase"] == "SETTLED"
    assert (st["settled_winners"], st["settled_won_shares"]) == (
        drawn["winners"],
        drawn["won_shares"],
    )
    assert (st["paid_minor"], st["fee_minor"]) == (drawn["amount_minor"], drawn["fee_minor"])
    assert st["released_minor"] == frozen - st["paid_minor"] - st["fee_minor"]
    assert st["active_frozen_minor"] == 0 and st["settled_rows"] == ACCOUNTS
    _check_ledger(data, sim, price, listed=False)
    winner = next(iter(won_by))
    loser = next(a for a in pop.accounts.tolist() if a not in won_by)
    views = [_query(data, "ipo_subscription", symbol=S, account=a) for a in (winner, loser)]
    assert [v["status"] for v in views] == [SubscriptionStatus.SETTLED, SubscriptionStatus.REFUNDED]
    assert views[0]["won_units"] == won_by[winner] and views[1]["won_units"] == 0
    # Listing: proceeds and unsold shares to the issuer; the instrument opens in PRE_OPEN.
    listed = ipo_ops.list_offering(target, S, lot_shares=100, tick_minor=1, options=QUIET)
    assert listed.numbers["proceeds_minor"] == drawn["amount_minor"]
    assert listed.numbers["unsold_shares"] == spec.shares_offered - drawn["won_shares"]
    assert listed.numbers["reference_price_ticks"] == price
    _check_ledger(data, sim, price, listed=True)
    assert _query(data, "l2", symbol=S) == {"bids": [], "asks": []}
    assert ipo_ops.status(target, S, options=QUIET).numbers["phase"] == "LISTED"
    run = CliRunner().invoke(app, ["ipo", "status", "--symbol", S, "--data", str(data)])
    assert run.exit_code == 0 and f"{S} LISTED" in run.output, run.output
    # After settlement: winners, shares, paid and refunded, not "0 active subscriptions".
    assert "0 active subscriptions" not in run.output
    assert f"{drawn['winners']:,} winners" in run.output
    assert f"winners received {drawn['won_shares']:,} shares" in run.output
    assert "refunded (released holds)" in run.output
    assert "the issuer (account 0, the venue's external account)" in run.output
    run = CliRunner().invoke(app, ["ipo", "settle", "--symbol", S, "--data", str(data)])
    assert run.exit_code == 0 and "settle: already done" in run.output, run.output
    # Queries about an unknown offering, or pages too large, get a clear error.
    for what, args in (
        ("ipo_offering", {"symbol": "NOPE"}),
        ("ipo_numbering", {"symbol": "NOPE", "offset": 0, "limit": 10}),
        ("ipo_results", {"symbol": S, "offset": 0, "limit": 1_000_001}),
    ):
        with pytest.raises(NodeError, match=r"unknown offering 'NOPE'|limit 0\.\.1000000"):
            _query(data, what, **args)
    run = CliRunner().invoke(app, ["ipo", "close", "--symbol", "NOPE", "--data", str(data)])
    assert run.exit_code == 1 and "no offering 'NOPE'" in run.output, run.output
    # Every phase re-run is "already done" and changes nothing.
    before = _state_hash(data)
    again = [
        ipo_ops.create(target, sim / OFFERING_FILE, options=QUIET),
        ipo_ops.subscribe(target, S, sim / POPULATION_FILE, batch_rows=300, options=QUIET),
        ipo_ops.close(target, S, options=QUIET),
        ipo_ops.number(target, S, options=QUIET),
        ipo_ops.settle(target, S, options=QUIET),
        ipo_ops.list_offering(target, S, options=QUIET),
        ipo_ops.fund(target, sim / OFFERING_FILE, sim / POPULATION_FILE, options=QUIET),
    ]
    assert all(report.already_done for report in again), [a.phase for a in again]
    assert _state_hash(data) == before
    # The draw, recomputed offline, equals the published one.
    if method is LotteryMethod.EXTERNAL:
        with pytest.raises(ipo_ops.VerifyUsageError, match="nothing to recompute"):
            ipo_ops.verify_draw(
                sim / OFFERING_FILE,
                sim / "numbering-node.csv",
                sim / SEED_FILE,
                target=target,
            )
    else:
        _verify_draw_cli(sim, target, data, basis=method is LotteryMethod.BALLOT)


def test_exchange_tails_matched_against_our_numbering(nodes: NodeRunner, tmp_path: Path) -> None:
    """External results as the exchange's winning tails: the node matches them against its
    own numbering, and the winners are exactly the numbers ending in a tail."""
    sim = _sim(tmp_path, LotteryMethod.EXTERNAL, external_tails=True)
    tails = ipo_io.read_tails(S, sim / TAILS_FILE)
    node, target, r = _through_the_draw(nodes, tmp_path, sim, "node")
    drawn = r["draw"].numbers
    assert drawn["tails"] == sorted(tails.tails, key=lambda t: (len(t), t))
    assert drawn["won_units"] == tails.total_winning_numbers
    numbering = ipo_io.read_numbering(sim / "numbering-node.csv")
    want: dict[int, int] = {}
    for account, first, count in zip(
        numbering.accounts.tolist(),
        numbering.first_numbers.tolist(),
        numbering.counts.tolist(),
        strict=True,
    ):  # by enumerating 12-digit numbers, on purpose: an independent check of the matcher
        hits = sum(
            any(f"{n:012d}".endswith(t) for t in tails.tails) for n in range(first, first + count)
        )
        if hits:
            want[account] = hits
    assert _published(node.data_dir) == want
    ipo_ops.settle(target, S, options=QUIET)
    price = read_offering(sim / OFFERING_FILE).price_minor
    _check_ledger(node.data_dir, sim, price, listed=False)
    # A tampered file (one tail changed) is refused whole: nothing changes.
    bad = tmp_path / "bad-tails.csv"
    text = (sim / TAILS_FILE).read_text().splitlines()
    text[1] = text[2]  # a repeated tail
    bad.write_text("\n".join(text) + "\n")
    with pytest.raises(ipo_io.IpoFileError, match="repeated tail"):
        ipo_io.read_tails(S, bad)


def _verify(sim: Path, numbering: Path, seed: Path, basis: bool, *where: str) -> tuple[int, str]:
    args = ["ipo", "verify-draw", "--offering", str(sim / OFFERING_FILE)]
    args += ["--numbering", str(numbering), "--seed-file", str(seed), *where]
    if basis:
        args += ["--basis", str(sim / "basis.csv")]
    run = CliRunner().invoke(app, args)
    return run.exit_code, run.output


def _write_numbering(path: Path, header: str, rows: list[list[str]]) -> Path:
    path.write_text("\n".join([header, *(",".join(r) for r in rows)]) + "\n")
    return path


def _verify_draw_cli(sim: Path, target: ipo_ops.Target, data: Path, basis: bool) -> None:
    numbering = sim / "numbering-node.csv"
    seed = sim / SEED_FILE
    stored = ipo_io.file_sha256(numbering)
    code, out = _verify(sim, numbering, seed, basis, "--data", str(data))
    assert code == 0 and out.startswith("VERIFIED: ") and len(out.splitlines()) == 1, out
    published = sim / "published.csv"
    exported = ipo_ops.export_results(target, S, published, options=QUIET)
    assert exported.numbers["won_units"] == sum(_published(data).values())
    offline = ("--results", str(published), "--numbering-sha256", stored)
    code, out = _verify(sim, numbering, seed, basis, *offline)
    assert code == 0 and out.startswith("VERIFIED: "), out
    won_by = _published(data)
    lines = numbering.read_text().splitlines()
    rows = [line.split(",") for line in lines[1:]]
    # Caught before too: two applicants' places swapped, one a winner.
    w = next(i for i, r in enumerate(rows) if int(r[0]) in won_by)
    lo = next(i for i, r in enumerate(rows) if int(r[0]) not in won_by and r[2] == rows[w][2])
    swapped = [list(r) for r in rows]
    swapped[w][0], swapped[lo][0] = swapped[lo][0], swapped[w][0]
    tampered = _write_numbering(sim / "tampered-numbering.csv", lines[0], swapped)
    for where in (("--data", str(data)), offline):
        code, out = _verify(sim, tampered, seed, basis, *where)
        assert code == 1 and out.startswith("MISMATCH: ") and len(out.splitlines()) == 1, out
        assert "not the published numbering" in out and "missing from the published draw" in out
    # Missed before: two LOSERS' accounts swapped (the recomputed winners do not change).
    losers = [i for i, r in enumerate(rows) if int(r[0]) not in won_by]
    swapped = [list(r) for r in rows]
    a, b = losers[0], losers[1]
    swapped[a][0], swapped[b][0] = swapped[b][0], swapped[a][0]
    tampered = _write_numbering(sim / "losers-swapped.csv", lines[0], swapped)
    code, out = _verify(sim, tampered, seed, basis, "--data", str(data))
    assert code == 1 and "not the published numbering" in out, out
    # Missed before: one unit moved inside a winner's block: the winner's block shrinks by
    # one unit at its end and the next applicant's grows, so every winning number stays with
    # the same account (the old check, which only compared winners, saw nothing).
    firsts = [int(r[1]) for r in rows]
    counts = [int(r[2]) for r in rows]
    moved = None
    for i in range(len(rows) - 1):
        if int(rows[i][0]) in won_by and int(rows[i + 1][0]) not in won_by and counts[i] >= 2:
            moved = [list(r) for r in rows]
            moved[i][2] = str(counts[i] - 1)
            moved[i + 1][1] = str(firsts[i + 1] - 1).zfill(12)
            moved[i + 1][2] = str(counts[i + 1] + 1)
            try:
                recomputed = _recompute(sim, moved, seed, stored, basis)
            except ipo_ops.OpsError:  # ballot: the grown application fits no tier
                recomputed = {}
            if recomputed == won_by:
                break
            moved = None
    # (The ballot ranks by first number: there such a move may change its winners.)
    assert moved is not None or basis, "no winner's last unit moves without changing winners"
    if moved is not None:
        tampered = _write_numbering(sim / "unit-moved.csv", lines[0], moved)
        code, out = _verify(sim, tampered, seed, basis, "--data", str(data))
        assert code == 1 and "not the published numbering" in out, out
        code, out = _verify(sim, tampered, seed, basis, *offline)
        assert code == 1 and "not the published numbering" in out, out
    # Caught before: a tampered seed no longer matches the commitment.
    other = sim / "other_seed.hex"
    hex_seed = seed.read_text()
    other.write_text(("00" if not hex_seed.startswith("00") else "11") + hex_seed[2:])
    code, out = _verify(sim, numbering, other, basis, *offline)
    assert code == 1 and "differs from the commitment" in out, out
    # Caught before: a published winner with a changed allotment.
    bad = sim / "bad-results.csv"
    accounts = np.array(sorted(won_by), dtype=np.int64)
    won = np.array([won_by[x] for x in accounts.tolist()], dtype=np.int64)
    won[0] += 1
    spec = read_offering(sim / OFFERING_FILE)
    ipo_io.write_results(bad, accounts, won, spec.unit_shares, spec.price_minor)
    code, out = _verify(sim, numbering, seed, basis, "--results", str(bad), *offline[2:])
    assert code == 1 and "different won units" in out, out
    # A malformed numbering file: MISMATCH with the reason (never "nothing was submitted").
    gap = [list(r) for r in rows]
    gap[3][1] = str(firsts[3] + 1).zfill(12)
    tampered = _write_numbering(sim / "gap.csv", lines[0], gap)
    code, out = _verify(sim, tampered, seed, basis, *offline)
    assert code == 1 and "numbers not contiguous" in out and "submitted" not in out, out
    # Usage errors: exit 2.
    code, out = _verify(sim, numbering, seed, basis, "--results", str(published))
    assert code == 2 and "--numbering-sha256" in out, out
    code, out = _verify(sim, numbering, seed, basis)
    assert code == 2, out


def _recompute(
    sim: Path, rows: list[list[str]], seed: Path, stored: str, basis: bool
) -> dict[int, int]:
    """The winners the rule gives over ``rows`` with the published seed and stored hash."""
    numbering = ipo_io.Numbering(
        np.array([int(r[0]) for r in rows], dtype=np.int64),
        np.array([int(r[1]) for r in rows], dtype=np.int64),
        np.array([int(r[2]) for r in rows], dtype=np.int64),
        "",
    )
    tiers = ipo_io.read_basis(sim / "basis.csv") if basis else []
    spec = read_offering(sim / OFFERING_FILE)
    won, *_ = ipo_ops.recompute_draw(spec, numbering, ipo_ops.read_seed(seed), tiers, stored)
    return {
        int(a): int(w) for a, w in zip(numbering.accounts.tolist(), won.tolist(), strict=True) if w
    }


# -- the crash test --------------------------------------------------------------------------


def _stop(node: NodeProcess) -> None:
    assert node.terminate(signal.SIGTERM) == 0, node.stderr()


def test_kill_9_during_settlement_then_resume_equals_an_uninterrupted_run(
    nodes: NodeRunner, tmp_path: Path
) -> None:
    sim = _sim(tmp_path, LotteryMethod.TAIL_LOTTERY)
    rng = random.Random(20_26)
    # A: uninterrupted.
    node_a, target_a, _ = _through_the_draw(nodes, tmp_path, sim, "a")
    drawn_hash = _state_hash(node_a.data_dir)
    ipo_ops.settle(target_a, S, options=QUIET)
    settled_hash = _state_hash(node_a.data_dir)
    ipo_ops.list_offering(target_a, S, options=QUIET)
    listed_hash = _state_hash(node_a.data_dir)
    _stop(node_a)

    # B: SIGKILL after a random number of acknowledged chunks; settle gives up (bounded
    # retries); restart on the same data dir; settle again resumes where the journal ended.
    node_b, target_b, _ = _through_the_draw(nodes, tmp_path, sim, "b")
    assert _state_hash(node_b.data_dir) == drawn_hash
    kill_after = rng.randint(2, 12)

    def crash(acknowledged: int) -> None:
        if acknowledged == kill_after:
            node_b.kill_and_wait()

    crashing = ipo_ops.RunOptions(quiet=True, retry=RETRY, window=2)
    with pytest.raises(ipo_ops.OpsError, match="unreachable"):
        ipo_ops.settle(target_b, S, options=crashing, on_chunk=crash)
    assert node_b.process.returncode == -signal.SIGKILL
    node_b = nodes.run(node_b.data_dir)
    view = _query(node_b.data_dir, "ipo_offering", symbol=S)
    done = sum(view["chunk_done"])
    assert view["phase"] == IpoPhase.DRAWN and kill_after <= done < view["chunks"], done
    resumed = ipo_ops.settle(target_b, S, options=QUIET)
    assert resumed.numbers["chunks_settled_now"] == view["chunks"] - done
    assert _state_hash(node_b.data_dir) == settled_hash
    # Re-running settle after completion changes nothing.
    assert ipo_ops.settle(target_b, S, options=QUIET).already_done
    assert _state_hash(node_b.data_dir) == settled_hash
    ipo_ops.list_offering(target_b, S, options=QUIET)
    assert _state_hash(node_b.data_dir) == listed_hash
    _check_ledger(node_b.data_dir, sim, read_offering(sim / OFFERING_FILE).price_minor, True)
    _stop(node_b)
    for from_snapshot in (False, True):
        replayed = run_replay(node_b.data_dir, from_snapshot=from_snapshot, show_progress=False)
        assert replayed.state_hash == listed_hash

    # C: the node comes back while settle is still retrying: settle carries on by itself.
    node_c, target_c, _ = _through_the_draw(nodes, tmp_path, sim, "c")
    kill_at = rng.randint(1, 15)
    restarted: list[NodeProcess] = []

    def crash_and_restart(acknowledged: int) -> None:
        if acknowledged == kill_at:
            node_c.kill_and_wait()

            def restart() -> None:
                time.sleep(0.3)
                restarted.append(nodes.start(node_c.data_dir))

            threading.Thread(target=restart, daemon=True).start()

    patient = ipo_ops.RunOptions(
        quiet=True, retry=ipo_ops.RetryPolicy(attempts=40, first_delay_s=0.1, max_delay_s=0.5)
    )
    ipo_ops.settle(target_c, S, options=patient, on_chunk=crash_and_restart)
    assert len(restarted) == 1 and restarted[0].process.poll() is None
    restarted[0].wait_ready()
    assert _state_hash(node_c.data_dir) == settled_hash


def test_funding_killed_midway_resumes_without_paying_anyone_twice(
    nodes: NodeRunner, tmp_path: Path
) -> None:
    sim = tmp_path / "sim"
    generate(IpoSimConfig(accounts=20_000, method=LotteryMethod.TAIL_LOTTERY, seed=2), sim)
    pop = ipo_io.read_population(sim / POPULATION_FILE)
    node = nodes.run(tmp_path / "node")
    target = ipo_ops.Target(data=str(node.data_dir))
    small = ipo_ops.RunOptions(quiet=True, retry=RETRY, deposit_chunk=20, deposit_rows=100)
    killer = threading.Timer(random.Random(3).uniform(0.2, 0.8), node.kill_and_wait)
    killer.start()
    try:
        ipo_ops.fund(target, sim / OFFERING_FILE, sim / POPULATION_FILE, options=small)
        interrupted = False
    except ipo_ops.OpsError:
        interrupted = True
    killer.join()
    node = nodes.run(node.data_dir)
    report = ipo_ops.fund(target, sim / OFFERING_FILE, sim / POPULATION_FILE, options=small)
    assert report.numbers["accounts_opened"] == 0  # opened before the kill
    if interrupted:
        assert report.numbers["deposit_commands_sent"] < report.numbers["deposit_commands"]
    # Every account holds exactly its cash: the external account paid out the total once.
    ((external, _),) = _balances(node.data_dir, [EXTERNAL_ACCOUNT], CASH)
    assert external == -int(pop.cash_minor.sum())
    sample = pop.accounts[:: len(pop.accounts) // 200].tolist()
    want = dict(zip(pop.accounts.tolist(), pop.cash_minor.tolist(), strict=True))
    assert [a for a, _ in _balances(node.data_dir, sample, CASH)] == [want[a] for a in sample]


def test_settle_with_a_bank_file_moves_money_only_when_it_reconciles(
    nodes: NodeRunner, tmp_path: Path
) -> None:
    """`ipo settle --bank-file`: the read model is brought up to date, the offering's frozen
    funds are reconciled with the bank statement, and a break stops the settlement (nothing
    moves) unless an operator overrides it with a reason, which is audited."""
    from openbell.projections.audit import operator_actions
    from openbell.projections.db import default_url
    from openbell.projections.projector import Projector
    from openbell.projections.sql import ReadModel
    from openbell.recon.files import Fault
    from openbell.recon.presettle import write_ipo_bank_file

    sim = _sim(tmp_path, LotteryMethod.TAIL_LOTTERY)
    node, _, _ = _through_the_draw(nodes, tmp_path, sim, "bank")
    data = node.data_dir
    url = default_url(data)
    Projector(data, [ReadModel(url)]).catch_up()
    faulty = tmp_path / "bank-wrong.csv"
    write_ipo_bank_file(url, S, faulty, [Fault("bank", "wrong_amount")])
    settle = ["ipo", "settle", "--symbol", S, "--data", str(data), "--quiet"]
    drawn = _state_hash(data)
    run = CliRunner().invoke(app, [*settle, "--bank-file", str(faulty)])
    assert run.exit_code == 1 and "AMOUNT_MISMATCH" in run.output, run.output
    assert _state_hash(data) == drawn  # nothing moved
    assert operator_actions(data) == []
    override = ["--operator", "ops-1", "--override-reason", "bank file late, confirmed by phone"]
    run = CliRunner().invoke(app, [*settle, "--bank-file", str(faulty), *override])
    assert run.exit_code == 0, run.output
    assert _state_hash(data) != drawn
    [entry] = operator_actions(data)
    assert "confirmed by phone" in entry.content
