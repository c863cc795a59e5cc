"""The IPO simulator: deterministic from its seed, consistent totals, realistic shape."""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec
import numpy as np
import pytest
from typer.testing import CliRunner

from openbell import ipo_io
from openbell.cli import app
from openbell.core.ipo.book import fee_of
from openbell.core.ipo.messages import LotteryMethod, OfferingSpec
from openbell.sim.ipo import (
    OFFERING_FILE,
    POPULATION_FILE,
    RESULTS_FILE,
    SEED_FILE,
    IpoSimConfig,
    generate,
    holds_minor,
    lottery_seed,
    read_offering,
)

N = 20_000


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.mark.parametrize("method", list(LotteryMethod))
def test_same_seed_same_files_other_seed_other_files(tmp_path: Path, method: LotteryMethod) -> None:
    config = IpoSimConfig(accounts=N, method=method, seed=7, max_units=30)
    generate(config, tmp_path / "a")
    generate(config, tmp_path / "b")
    generate(msgspec.structs.replace(config, seed=8), tmp_path / "c")
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert a == b
    assert a[POPULATION_FILE] != c[POPULATION_FILE]
    expected = {OFFERING_FILE, POPULATION_FILE}
    expected |= {RESULTS_FILE} if method is LotteryMethod.EXTERNAL else {SEED_FILE}
    assert set(a) == expected


def test_population_totals_shape_and_commitment(tmp_path: Path) -> None:
    config = IpoSimConfig(
        accounts=N, method=LotteryMethod.TAIL_LOTTERY, seed=3, max_units=50, oversubscription=40
    )
    result = generate(config, tmp_path)
    spec = read_offering(tmp_path / OFFERING_FILE)
    pop = ipo_io.read_population(tmp_path / POPULATION_FILE)
    # Dense accounts from 16 (a fresh venue's first user account), in a shuffled order.
    assert sorted(pop.accounts.tolist()) == list(range(16, 16 + N))
    assert pop.accounts.tolist() != sorted(pop.accounts.tolist())
    assert int(pop.units.sum()) == result.units_applied
    assert result.units_offered == result.units_applied // 40
    assert spec.shares_offered == result.units_offered * spec.unit_shares
    assert int(pop.units.min()) >= 1 and int(pop.units.max()) <= 50
    # Skewed small: each of the smallest sizes is more common than the next; a few large ones.
    counts = np.bincount(pop.units, minlength=51)
    assert all(counts[k] > counts[k + 1] for k in range(1, 8))
    assert counts[1] > N // 5
    assert 0 < int((pop.units >= 45).sum()) < N // 50
    # Cash covers each application's hold exactly or with spare whole currency units.
    holds = holds_minor(pop.units, spec.unit_shares, spec.price_minor, spec.fee_bps)
    spare = pop.cash_minor - holds
    assert int(spare.min()) == 0 and int((spare % 100).max()) == 0
    assert 0.2 < float((spare > 0).mean()) < 0.4
    unit = 3 * spec.unit_shares * spec.price_minor
    assert int(holds[np.flatnonzero(pop.units == 3)[0]]) == unit + fee_of(unit, spec.fee_bps)
    # The seed file holds the secret whose SHA-256 the offering commits to.
    seed = bytes.fromhex((tmp_path / SEED_FILE).read_text().strip())
    assert seed == lottery_seed(3) and len(seed) == 32
    assert hashlib.sha256(seed).hexdigest() == spec.seed_commitment


def test_external_results_never_exceed_the_offer(tmp_path: Path) -> None:
    config = IpoSimConfig(
        accounts=N, method=LotteryMethod.EXTERNAL, seed=5, max_units=20, oversubscription=9
    )
    result = generate(config, tmp_path)
    spec = msgspec.json.decode((tmp_path / OFFERING_FILE).read_bytes(), type=OfferingSpec)
    assert spec.seed_commitment == "" and spec.method is LotteryMethod.EXTERNAL
    pop = ipo_io.read_population(tmp_path / POPULATION_FILE)
    # The control totals are right (checked by the reader, given unit size and price).
    res = ipo_io.read_results_file(tmp_path / RESULTS_FILE, spec.unit_shares, spec.price_minor)
    applied = dict(zip(pop.accounts.tolist(), pop.units.tolist(), strict=True))
    assert res.total_won_units == result.won_units == result.units_offered  # demand > supply
    assert res.total_won_units <= spec.shares_offered // spec.unit_shares
    assert len(res.accounts) == result.winners
    pairs = zip(res.accounts.tolist(), res.won_units.tolist(), strict=True)
    assert all(1 <= w <= applied[a] for a, w in pairs)
    assert res.accounts.tolist() == sorted(res.accounts.tolist())


def test_external_undersubscribed_everyone_wins_everything(tmp_path: Path) -> None:
    config = IpoSimConfig(accounts=500, method=LotteryMethod.EXTERNAL, units_offered=10**6)
    result = generate(config, tmp_path)
    res = ipo_io.read_results_file(tmp_path / RESULTS_FILE)
    pop = ipo_io.read_population(tmp_path / POPULATION_FILE)
    assert result.won_units == result.units_applied == res.total_won_units
    assert len(res.accounts) == 500
    order = np.argsort(pop.accounts)
    assert res.won_units.tolist() == pop.units[order].tolist()


def test_cli_sim_ipo(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    run = CliRunner().invoke(
        app,
        [
            *("sim", "ipo", "--accounts", "1000", "--method", "ballot", "--out", str(out)),
            *("--price", "12.5", "--seed", "9", "--first-account", "100"),
        ],
    )
    assert run.exit_code == 0, run.output
    spec = read_offering(out / OFFERING_FILE)
    assert spec.price_minor == 1_250 and spec.method is LotteryMethod.BALLOT
    assert int(ipo_io.read_population(out / POPULATION_FILE).accounts.min()) == 100
    bad = CliRunner().invoke(
        app, ["sim", "ipo", "--accounts", "10", "--out", str(out), "--price", "1.234"]
    )
    assert bad.exit_code == 2 and "more than 2 decimals" in bad.output
