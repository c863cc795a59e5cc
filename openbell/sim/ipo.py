"""A simulated IPO: the offering, a population of applicants and (for ``external``) the
exchange's results file. Deterministic from the seed, vectorised (numpy), integers only.

Application sizes are skewed to the small end: a geometric decay (each size 7/10 as likely as
the one below) over 1..max_units with a Zipf floor (weight ~ 1/size^2) so sizes near the top
stay possible, plus a few large applicants (1 in 200) who apply for the top tenth of the range.
The probabilities are integer weights and the draws integer indices: no float touches a
quantity. Each applicant's cash is the hold its application takes (units x unit shares x price
plus the fee) and, for three in ten, up to as much again in whole units of the currency.

Accounts are dense from ``first_account`` (16 is the first user account of a fresh venue);
the rows of population.csv are in subscription order, a random permutation of the accounts.
For ``external`` the exchange decides the winners on its own (independent of our numbering):
it draws the won units of each account as a multivariate hypergeometric sample of
min(units offered, units applied) units out of all units applied, so no account wins more than
it applied for and the total never exceeds the units on offer.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt

from openbell import ipo_io
from openbell.core.ipo import lottery
from openbell.core.ipo.book import fee_of_many
from openbell.core.ipo.messages import LotteryMethod, OfferingSpec
from openbell.core.ledger import exact_sum
from openbell.core.types import FIRST_USER_ACCOUNT

I64 = npt.NDArray[np.int64]
SEED_DOMAIN = b"openbell/sim/ipo/lottery-seed/v1"
OFFERING_FILE = "offering.json"
SEED_FILE = "lottery_seed.hex"
POPULATION_FILE = "population.csv"
RESULTS_FILE = "results.csv"
TAILS_FILE = "tails.csv"
LARGE_APPLICANTS_PER = 200  # one applicant in this many applies for the top tenth of sizes
SPARE_CASH_TENTHS = 3  # this many applicants in ten hold spare cash
WEIGHT_SCALE = 10**15


class IpoSimConfig(msgspec.Struct, frozen=True, kw_only=True):
    accounts: int
    method: LotteryMethod
    seed: int = 1
    symbol: str = "NEWCO"
    cash_asset: str = "CNY"
    cash_scale: int = 2
    price_minor: int = 1_000  # per share, in cash minor units (the maximum if price_is_maximum)
    final_price_minor: int = 0  # external + price_is_maximum: the price in the results file
    unit_shares: int = 500
    max_units: int = 100
    oversubscription: int = 100  # units applied / units offered (approximately)
    units_offered: int = 0  # 0: units applied // oversubscription (at least 1)
    fee_bps: int = 10
    chunk_rows: int = 1_000_000
    first_account: int = int(FIRST_USER_ACCOUNT)
    price_is_maximum: bool = False
    cancellable: bool = False
    external_tails: bool = False  # external: the exchange publishes winning tails (tails.csv)


class IpoSimResult(msgspec.Struct, frozen=True):
    out_dir: str
    spec: OfferingSpec
    applicants: int
    units_applied: int
    units_offered: int
    cash_minor: int  # total cash of the population
    winners: int  # external only
    won_units: int  # external only
    seconds: float


def lottery_seed(seed: int) -> bytes:
    """The secret lottery seed of a simulation (32 bytes), derived from the sim seed."""
    return hashlib.sha256(SEED_DOMAIN + seed.to_bytes(8, "big", signed=True)).digest()


def size_weights(max_units: int) -> list[int]:
    """Integer weight of each application size 1..max_units (index 0 is size 1)."""
    return [
        WEIGHT_SCALE * 7 ** (k - 1) // 10 ** (k - 1) + WEIGHT_SCALE // 100 // (k * k)
        for k in range(1, max_units + 1)
    ]


def draw_units(rng: np.random.Generator, n: int, max_units: int) -> I64:
    """Application sizes in 1..max_units, skewed small, with a few large applicants."""
    cumulative = np.cumsum(np.asarray(size_weights(max_units), dtype=np.int64))
    picks = rng.integers(0, int(cumulative[-1]), size=n, dtype=np.int64)
    units: I64 = np.searchsorted(cumulative, picks, side="right").astype(np.int64) + 1
    large = rng.integers(0, LARGE_APPLICANTS_PER, size=n) == 0
    low = max(1, max_units - max_units // 10)
    units[large] = rng.integers(low, max_units + 1, size=int(large.sum()), dtype=np.int64)
    return units


def holds_minor(units: I64, unit_shares: int, price_minor: int, fee_bps: int) -> I64:
    """The hold of each application: notional + fee, as the core computes it."""
    notional = units * (unit_shares * price_minor)
    out: I64 = notional + fee_of_many(notional, fee_bps)
    return out


def generate(config: IpoSimConfig, out_dir: Path) -> IpoSimResult:
    """Write offering.json, population.csv, lottery_seed.hex (seeded methods) or results.csv
    (external) into ``out_dir``."""
    started = time.perf_counter()
    if config.accounts < 1:
        raise ValueError("accounts must be at least 1")
    if config.first_account < FIRST_USER_ACCOUNT:
        raise ValueError(f"first account must be >= {int(FIRST_USER_ACCOUNT)}")
    rng = np.random.default_rng(config.seed)
    n = config.accounts
    units = draw_units(rng, n, config.max_units)
    accounts = rng.permutation(n).astype(np.int64) + config.first_account
    holds = holds_minor(units, config.unit_shares, config.price_minor, config.fee_bps)
    spare = rng.integers(0, holds + 1, dtype=np.int64)
    spare -= spare % (10**config.cash_scale)
    spare[rng.integers(0, 10, size=n) >= SPARE_CASH_TENTHS] = 0
    cash = holds + spare
    units_applied = exact_sum(units)
    units_offered = config.units_offered or max(1, units_applied // config.oversubscription)
    seed = lottery_seed(config.seed)
    spec = OfferingSpec(
        symbol=config.symbol,
        cash_asset=config.cash_asset,
        price_minor=config.price_minor,
        unit_shares=config.unit_shares,
        max_units=config.max_units,
        shares_offered=units_offered * config.unit_shares,
        fee_bps=config.fee_bps,
        method=config.method,
        seed_commitment=""
        if config.method is LotteryMethod.EXTERNAL
        else hashlib.sha256(seed).hexdigest(),
        chunk_rows=config.chunk_rows,
        price_is_maximum=config.price_is_maximum,
        cancellable=config.cancellable,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / OFFERING_FILE).write_bytes(msgspec.json.format(msgspec.json.encode(spec)) + b"\n")
    ipo_io.write_population(out_dir / POPULATION_FILE, accounts, units, cash)
    winners = won_total = 0
    price = config.final_price_minor or config.price_minor
    for stale in (SEED_FILE, RESULTS_FILE, TAILS_FILE):
        (out_dir / stale).unlink(missing_ok=True)
    if config.method is LotteryMethod.EXTERNAL and config.external_tails:
        # The exchange numbers the applications in subscription order (the population file's
        # order, which `openbell ipo subscribe` keeps) and draws tails with its own seed.
        draw = lottery.draw_tails(
            lottery_seed(config.seed + 1), config.symbol, units_applied, units_offered
        )
        ipo_io.write_tails(
            out_dir / TAILS_FILE, draw.labels(), draw.winning_units, config.unit_shares, price
        )
        won = lottery.won_units(units, draw)
        winners, won_total = int(np.count_nonzero(won)), exact_sum(won)
    elif config.method is LotteryMethod.EXTERNAL:
        by_account = np.argsort(accounts)
        won = rng.multivariate_hypergeometric(
            units[by_account], min(units_offered, units_applied), method="marginals"
        ).astype(np.int64)
        winning = won > 0
        ipo_io.write_results(
            out_dir / RESULTS_FILE,
            accounts[by_account][winning],
            won[winning],
            config.unit_shares,
            price,
        )
        winners, won_total = int(winning.sum()), exact_sum(won)
    else:
        (out_dir / SEED_FILE).write_text(seed.hex() + "\n")
    return IpoSimResult(
        out_dir=str(out_dir),
        spec=spec,
        applicants=n,
        units_applied=units_applied,
        units_offered=units_offered,
        cash_minor=exact_sum(cash),
        winners=winners,
        won_units=won_total,
        seconds=time.perf_counter() - started,
    )


def read_offering(path: Path) -> OfferingSpec:
    """An offering.json file (an OfferingSpec as JSON)."""
    return msgspec.json.decode(path.read_bytes(), type=OfferingSpec)
