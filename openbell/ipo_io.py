"""IPO files at the edge (the core stays pure): the numbering file out, external results in.

Numbering file (CSV): ``account,first_number,count`` with 12-digit zero-padded first numbers.
Results file (CSV): ``account,won_units`` rows, then a trailer
``TOTAL,<won units>,<shares>,<amount minor>`` carrying the control totals.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from openbell.core.ipo.book import IpoBook
from openbell.core.ipo.messages import IpoImportResults


def write_numbering(book: IpoBook, symbol: str, path: Path) -> int:
    accounts, first, count = book.numbering(symbol)
    table = np.column_stack((accounts, first, count))
    with path.open("w") as fh:
        fh.write("account,first_number,count\n")
        np.savetxt(fh, table, fmt="%d,%012d,%d")
    return len(accounts)


def write_results(
    path: Path, accounts: np.ndarray, won_units: np.ndarray, unit_shares: int, price_minor: int
) -> None:
    """A results file as an external lottery agent would send it (tests, simulations)."""
    total = int(won_units.sum())
    with path.open("w") as fh:
        fh.write("account,won_units\n")
        np.savetxt(fh, np.column_stack((accounts, won_units)), fmt="%d,%d")
        shares = total * unit_shares
        fh.write(f"TOTAL,{total},{shares},{shares * price_minor}\n")


def read_results(symbol: str, path: Path, request_id: str = "") -> IpoImportResults:
    """Parse a results file into the import command (the core checks it, not this reader)."""
    raw = path.read_bytes()
    lines = raw.decode().strip().splitlines()
    if not lines or lines[0].strip() != "account,won_units":
        raise ValueError("missing header account,won_units")
    trailer = lines[-1].split(",")
    if trailer[0] != "TOTAL" or len(trailer) != 4:
        raise ValueError("missing trailer TOTAL,<won units>,<shares>,<amount>")
    body = lines[1:-1]
    table = np.array([[int(x) for x in row.split(",")] for row in body], dtype=np.int64)
    table = table.reshape(-1, 2)
    return IpoImportResults(
        request_id=request_id,
        symbol=symbol,
        accounts=table[:, 0].astype("<i8").tobytes(),
        won_units=table[:, 1].astype("<i8").tobytes(),
        total_won_units=int(trailer[1]),
        total_shares=int(trailer[2]),
        total_amount_minor=int(trailer[3]),
        source_sha256=hashlib.sha256(raw).hexdigest(),
    )
