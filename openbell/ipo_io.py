"""IPO files at the edge (the core stays pure): CSV in and out, fast at 50 M rows (DuckDB).

Files (comma-separated, one header line, integers in plain decimal digits, no quoting):

- numbering: ``account,first_number,count``; first numbers zero-padded to 12 digits, rows in
  number order (the first row starts at 000000000001, each next row where the last ended);
- results (the external lottery's winners): ``account,won_units`` rows, then a trailer
  ``TOTAL,<won units>,<shares>,<amount minor>`` carrying the control totals (shares = won units
  x unit shares, amount = shares x the price charged, in cash minor units);
- population (a simulated or collected set of applicants, in subscription order):
  ``account,units,cash_minor``;
- basis of allotment (ballot): ``min_units,max_units,base_units,extra_units,winners``.

Readers check every line and refuse a bad file as a whole with ``IpoFileError``, whose
``report`` counts the problems by kind and quotes the first ``MAX_EXAMPLES`` with their line
numbers. Nothing is submitted from a refused file; the core checks the control totals again
(two layers). DuckDB does the heavy lifting (one in-memory connection per call, progress bar
off, numpy arrays registered as tables): lines are read verbatim and matched against a strict
pattern in SQL, so ``+1``, ``1.0``, `` 1`` or ``1e3`` are errors, never silently converted.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import numpy as np
import numpy.typing as npt

from openbell.core.ipo import numbering as numbering_file
from openbell.core.ipo.book import IpoBook
from openbell.core.ipo.lottery import MAX_IMPORTED_TAILS, MAX_NUMBERS, NUMBER_DIGITS, tails_draw
from openbell.core.ipo.messages import BallotTier, IpoImportResults, IpoImportTails
from openbell.core.ledger import exact_sum
from openbell.core.types import FIRST_USER_ACCOUNT

I64 = npt.NDArray[np.int64]

NUMBERING_HEADER = "account,first_number,count"
RESULTS_HEADER = "account,won_units"
TAILS_HEADER = "tail"
POPULATION_HEADER = "account,units,cash_minor"
BASIS_HEADER = "min_units,max_units,base_units,extra_units,winners"
TRAILER = "TOTAL"
MAX_EXAMPLES = 20  # problems quoted in a report (all are counted)
MAX_DIGITS = 18  # every value fits a signed 64-bit integer
MAX_QUOTED_CHARS = 80
_HASH_CHUNK_BYTES = 8 << 20
_CSV_ERROR_LINE = re.compile(r"Line: (\d+)")


class FileProblem(msgspec.Struct, frozen=True):
    line: int  # 1-based; 0: the file as a whole
    kind: str
    text: str  # the line (shortened) or what is wrong with it


class FileReport(msgspec.Struct, frozen=True):
    path: str
    what: str  # "results file", "numbering file", ...
    lines: int  # lines read (header and trailer included, trailing blank lines not)
    rows: int  # data rows
    counts: dict[str, int]  # problem kind -> how many
    examples: list[FileProblem]  # the first MAX_EXAMPLES, by line

    @property
    def problems(self) -> int:
        return sum(self.counts.values())

    def render(self) -> str:
        head = (
            f"{self.what} {self.path}: {self.problems} problem(s) in {self.lines} line(s) "
            f"({self.rows} well-formed rows); nothing was submitted"
        )
        kinds = [f"  {kind}: {count}" for kind, count in self.counts.items()]
        shown = [
            f"  line {p.line}: {p.kind}: {p.text}" if p.line else f"  {p.kind}: {p.text}"
            for p in self.examples
        ]
        more = self.problems - len(self.examples)
        tail = [f"  ... and {more} more"] if more > 0 else []
        return "\n".join([head, *kinds, "first problems:", *shown, *tail])


class IpoFileError(ValueError):
    """A refused file; ``report`` says where and why."""

    def __init__(self, report: FileReport) -> None:
        super().__init__(report.render())
        self.report = report


class _Problems:
    """Counts every problem; keeps a few examples of each kind for the report."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: list[FileProblem] = []

    def __bool__(self) -> bool:
        return bool(self.counts)

    def add(self, kind: str, line: int, text: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if sum(1 for p in self.examples if p.kind == kind) < MAX_EXAMPLES:
            self.examples.append(FileProblem(line, kind, _shorten(text)))

    def add_many(self, kind: str, lines: I64, text_of: Callable[[int], str]) -> None:
        if not len(lines):
            return
        self.counts[kind] = self.counts.get(kind, 0) + len(lines)
        for i, line in enumerate(lines[:MAX_EXAMPLES].tolist()):
            self.examples.append(FileProblem(int(line), kind, _shorten(text_of(i))))

    def raise_if_any(self, path: Path, what: str, lines: int, rows: int) -> None:
        if not self.counts:
            return
        examples = sorted(self.examples, key=lambda p: p.line)[:MAX_EXAMPLES]
        raise IpoFileError(FileReport(str(path), what, lines, rows, self.counts, examples))


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_QUOTED_CHARS else text[: MAX_QUOTED_CHARS - 3] + "..."


def duckdb_memory() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    return con


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


# -- reading ---------------------------------------------------------------------------------


class _Table(msgspec.Struct):
    """A parsed file: one int64 array per column, the line number of each row, the trailer."""

    columns: list[I64]
    line_of: I64
    trailer: list[int] | None
    lines: int


def _read_table(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    what: str,
    header: str,
    problems: _Problems,
    trailer_fields: int = 0,
) -> _Table:
    """Read and check ``path``: the header, the trailer (``TOTAL`` and ``trailer_fields``
    integers) if any, and every data line: as many non-negative integers as the header has
    names, plain digits only. Syntax problems go to ``problems``; the well-formed rows come
    back as int64 columns with their line numbers.

    A clean file takes the fast path (a byte-level check in numpy, then DuckDB's typed CSV
    reader); anything unusual (a stray byte, a blank line, CRLF, a row DuckDB rejects) takes
    the checked path, which reads every line as text and names each problem."""
    if not path.is_file():
        problems.add("missing file", 0, f"no such file: {path}")
        problems.raise_if_any(path, what, 0, 0)
    fast = _read_fast(con, path, header, trailer_fields)
    if fast is not None:
        return fast
    return _read_checked(con, path, what, header, problems, trailer_fields)


_ALLOWED_BODY_BYTES = np.zeros(256, dtype=bool)
_ALLOWED_BODY_BYTES[list(b"0123456789,\n")] = True
_SCAN_CHUNK_BYTES = 64 << 20
_EDGE_BYTES = 4096


def _edge_lines(path: Path) -> tuple[bytes, int, bytes, int] | None:
    """(first line, offset after it, last non-blank line, its offset) from the file's two ends;
    None when either is longer than _EDGE_BYTES or the file has a single line."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(_EDGE_BYTES)
        fh.seek(max(0, size - _EDGE_BYTES))
        tail_start = fh.tell()
        tail = fh.read()
    newline = head.find(b"\n")
    if newline < 0:
        return None
    end = len(tail.rstrip(b"\n"))
    start = tail.rfind(b"\n", 0, end) + 1
    if start == 0 and tail_start > 0:
        return None
    last_offset = tail_start + start
    if last_offset <= newline:
        return None
    return head[:newline], newline + 1, tail[start:end], last_offset


def _bytes_clean(path: Path, lo: int, hi: int) -> bool:
    """Only digits, commas and single newlines in bytes [lo, hi) of the file."""
    if hi <= lo:
        return True
    data = np.memmap(path, dtype=np.uint8, mode="r")
    try:
        previous_newline = True  # the byte before ``lo`` ends the header line
        for start in range(lo, hi, _SCAN_CHUNK_BYTES):
            chunk = np.asarray(data[start : min(hi, start + _SCAN_CHUNK_BYTES)])
            if not _ALLOWED_BODY_BYTES[chunk].all():
                return False
            newline = chunk == 10
            if previous_newline and newline[0]:
                return False
            if (newline[1:] & newline[:-1]).any():
                return False
            previous_newline = bool(newline[-1])
        return True
    finally:
        del data


def _read_fast(
    con: duckdb.DuckDBPyConnection, path: Path, header: str, trailer_fields: int
) -> _Table | None:
    edges = _edge_lines(path)
    if edges is None:
        return None
    first, body_lo, last, last_offset = edges
    if first != header.encode():
        return None
    trailer: list[int] | None = None
    body_hi = path.stat().st_size
    if trailer_fields:
        pattern = rf"{TRAILER}(,[0-9]{{1,{MAX_DIGITS}}}){{{trailer_fields}}}"
        if re.fullmatch(pattern, last.decode("ascii", "replace")) is None:
            return None
        trailer = [int(x) for x in last.split(b",")[1:]]
        body_hi = last_offset
    else:
        # Trailing newlines after the last row are fine; anything else is checked below.
        body_hi = last_offset + len(last)
    if not _bytes_clean(path, body_lo, body_hi):
        return None
    fields = header.count(",") + 1
    names = ", ".join(f"'c{i}': 'BIGINT'" for i in range(fields))
    try:
        got = con.execute(
            f"SELECT * FROM read_csv({sql_literal(str(path))}, columns={{{names}}}, "
            "header=false, delim=',', quote='', escape='', auto_detect=false, "
            "store_rejects=true)"
        ).fetchnumpy()
        rejected = con.execute("SELECT DISTINCT line FROM reject_errors ORDER BY line").fetchall()
    except duckdb.Error:
        return None
    columns = [got[f"c{i}"] for i in range(fields)]
    if any(np.ma.is_masked(c) for c in columns):
        return None
    arrays = [np.asarray(np.ma.getdata(c), dtype=np.int64) for c in columns]
    rows = len(arrays[0])
    lines = rows + 1 + (1 if trailer_fields else 0)
    expected = [1, lines] if trailer_fields else [1]
    if [int(r[0]) for r in rejected] != expected:
        return None
    limit = 10**MAX_DIGITS
    if any(len(a) and int(a.max()) >= limit for a in arrays):
        return None
    return _Table(arrays, np.arange(2, rows + 2, dtype=np.int64), trailer, lines)


def _read_checked(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    what: str,
    header: str,
    problems: _Problems,
    trailer_fields: int,
) -> _Table:
    fields = header.count(",") + 1
    source = (
        f"read_csv({sql_literal(str(path))}, columns={{'line': 'VARCHAR'}}, header=false, "
        "delim='\x01', quote='', escape='', auto_detect=false)"
    )
    try:
        con.execute(f"CREATE TEMP TABLE f AS SELECT row_number() OVER () AS n, line FROM {source}")
    except duckdb.Error as error:
        message = str(error)
        found = _CSV_ERROR_LINE.search(message)
        first = message.splitlines()[0] if message else type(error).__name__
        if "unicode" in message.lower() or "utf-8" in message.lower():
            first = "not UTF-8 text"
        problems.add("unreadable line", int(found.group(1)) if found else 0, first)
        problems.raise_if_any(path, what, 0, 0)
        raise  # unreachable: problems is not empty

    def raw(line: int) -> str:
        row = con.execute("SELECT line FROM f WHERE n = ?", [line]).fetchone()
        return "" if row is None or row[0] is None else str(row[0])

    stats = con.execute(
        "SELECT max(n) FILTER (WHERE line IS NOT NULL AND trim(line) <> '') FROM f"
    ).fetchone()
    lines = int(stats[0]) if stats is not None and stats[0] is not None else 0
    if lines == 0:
        problems.add("empty file", 0, "no lines")
        problems.raise_if_any(path, what, 0, 0)
    if raw(1) != header:
        problems.add("missing header", 1, f"expected {header!r}, found {raw(1)!r}")
    last = lines
    trailer: list[int] | None = None
    if trailer_fields:
        text = raw(lines)
        pattern = rf"{TRAILER}(,[0-9]{{1,{MAX_DIGITS}}}){{{trailer_fields}}}"
        if re.fullmatch(pattern, text):
            trailer = [int(x) for x in text.split(",")[1:]]
            last = lines - 1
        elif text.split(",")[0] == TRAILER:
            problems.add("malformed trailer", lines, text)
            last = lines - 1
        else:
            problems.add("missing trailer", lines, f"last line is {text!r}")
    lo, hi = 2, last
    row_pattern = sql_literal(",".join([f"[0-9]{{1,{MAX_DIGITS}}}"] * fields))
    bad_row = f"line IS NULL OR NOT regexp_full_match(line, {row_pattern})"
    body = f"FROM f WHERE n BETWEEN {lo} AND {hi}"
    counted = con.execute(f"SELECT count(*), count(*) FILTER (WHERE {bad_row}) {body}").fetchone()
    bad = int(counted[1]) if counted is not None else 0
    if bad:
        _classify(con, body, bad_row, header, fields, trailer_fields > 0, problems)
    casts = ", ".join(
        f"CAST(split_part(line, ',', {i + 1}) AS BIGINT) AS c{i}" for i in range(fields)
    )
    where = f" AND NOT ({bad_row})" if bad else ""
    got = con.execute(f"SELECT n, {casts} {body}{where} ORDER BY n").fetchnumpy()
    columns = [np.asarray(got[f"c{i}"], dtype=np.int64) for i in range(fields)]
    line_of = np.asarray(got["n"], dtype=np.int64)
    return _Table(columns, line_of, trailer, lines)


def _classify(
    con: duckdb.DuckDBPyConnection,
    body: str,
    bad_row: str,
    header: str,
    fields: int,
    has_trailer: bool,
    problems: _Problems,
) -> None:
    """Name what is wrong with each malformed data line (only run when there are some)."""
    trailer_case = (
        f"WHEN split_part(line, ',', 1) = '{TRAILER}' THEN 'repeated or misplaced trailer'"
        if has_trailer
        else ""
    )
    kind = f"""CASE
        WHEN line IS NULL OR trim(line) = '' THEN 'blank line'
        WHEN line = {sql_literal(header)} THEN 'repeated header'
        {trailer_case}
        WHEN len(string_split(line, ',')) <> {fields} THEN 'wrong number of fields'
        WHEN regexp_full_match(line, '-?[0-9]+(,-?[0-9]+)*') THEN
            CASE WHEN regexp_matches(line, '(^|,)-') THEN 'negative number'
                 ELSE 'number too large' END
        ELSE 'not an integer' END"""
    classified = f"SELECT n, line, {kind} AS kind {body} AND ({bad_row})"
    counts = con.execute(
        f"SELECT kind, count(*), min(n) FROM ({classified}) GROUP BY kind ORDER BY min(n)"
    ).fetchall()
    for name, count, _first in counts:
        examples = con.execute(
            f"SELECT n, line FROM ({classified}) WHERE kind = ? ORDER BY n LIMIT {MAX_EXAMPLES}",
            [name],
        ).fetchall()
        problems.counts[str(name)] = problems.counts.get(str(name), 0) + int(count)
        for n, line in examples:
            problems.examples.append(FileProblem(int(n), str(name), _shorten(line or "")))


def _duplicates(values: I64, line_of: I64, what: str, problems: _Problems) -> None:
    """Every repeat of a value after its first line is a problem."""
    if len(values) < 2:
        return
    low, high = int(values.min()), int(values.max())
    if high - low < 4 * len(values) and int(np.bincount(values - low).max()) <= 1:
        return  # dense values (account ids): a count per value says "no repeats" in O(n)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    repeat = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1
    if not len(repeat):
        return
    starts = np.ones(len(values), dtype=bool)
    starts[repeat] = False
    sorted_lines = line_of[order]
    first_line = sorted_lines[starts][np.cumsum(starts) - 1]
    lines = sorted_lines[repeat]
    by_line = np.argsort(lines, kind="stable")
    lines = lines[by_line]
    vals = ordered[repeat][by_line]
    firsts = first_line[repeat][by_line]
    problems.add_many(
        f"duplicated {what}",
        lines,
        lambda i: f"{what} {int(vals[i])} already on line {int(firsts[i])}",
    )


def _where(mask: npt.NDArray[np.bool_], line_of: I64) -> I64:
    out: I64 = line_of[mask]
    return out


class ResultsFile(msgspec.Struct, frozen=True):
    accounts: I64
    won_units: I64
    total_won_units: int
    total_shares: int
    total_amount_minor: int
    sha256: str
    lines: int


def read_results_file(
    path: Path, unit_shares: int | None = None, price_minor: int | None = None
) -> ResultsFile:
    """Parse and check an external results file. Refused (``IpoFileError``): a missing or
    repeated header or trailer, malformed lines, non-integers, negative or zero won units,
    accounts below the first user account, repeated accounts, won units that differ from the
    trailer's total, and (when ``unit_shares`` / ``price_minor`` are given) shares or amount
    that differ from the trailer's."""
    problems = _Problems()
    con = duckdb_memory()
    try:
        table = _read_table(con, path, "results file", RESULTS_HEADER, problems, trailer_fields=3)
        accounts, won = table.columns
        line_of = table.line_of
        problems.add_many(
            "zero won units (the file lists winners only)",
            _where(won == 0, line_of),
            lambda i: "0 won units",
        )
        low = _where(accounts < FIRST_USER_ACCOUNT, line_of)
        problems.add_many(
            "not a user account", low, lambda i: f"account below {int(FIRST_USER_ACCOUNT)}"
        )
        _duplicates(accounts, line_of, "account", problems)
        totals = table.trailer
        if totals is not None and not problems:
            won_total = exact_sum(won)
            checks = [("won units", won_total, totals[0])]
            if unit_shares is not None:
                checks.append(("shares", won_total * unit_shares, totals[1]))
                if price_minor is not None:
                    checks.append(("amount", won_total * unit_shares * price_minor, totals[2]))
            for name, rows_value, declared in checks:
                if rows_value != declared:
                    problems.add(
                        "control total mismatch",
                        table.lines,
                        f"{name}: rows add up to {rows_value}, trailer says {declared}",
                    )
        problems.raise_if_any(path, "results file", table.lines, len(line_of))
    finally:
        con.close()
    assert totals is not None
    return ResultsFile(
        accounts=accounts,
        won_units=won,
        total_won_units=totals[0],
        total_shares=totals[1],
        total_amount_minor=totals[2],
        sha256=file_sha256(path),
        lines=table.lines,
    )


def read_results(
    symbol: str,
    path: Path,
    request_id: str = "",
    unit_shares: int | None = None,
    price_minor: int | None = None,
) -> IpoImportResults:
    """A checked results file as the import command (the core checks it again)."""
    f = read_results_file(path, unit_shares, price_minor)
    return IpoImportResults(
        request_id=request_id,
        symbol=symbol,
        accounts=f.accounts.astype("<i8").tobytes(),
        won_units=f.won_units.astype("<i8").tobytes(),
        total_won_units=f.total_won_units,
        total_shares=f.total_shares,
        total_amount_minor=f.total_amount_minor,
        source_sha256=f.sha256,
    )


def results_kind(path: Path) -> str:
    """``"tails"`` for a winning-tails file (header ``tail``), else ``"results"``."""
    with path.open("rb") as fh:
        first = fh.readline(64).strip().decode("ascii", errors="replace")
    return "tails" if first == TAILS_HEADER else "results"


def read_tails(
    symbol: str,
    path: Path,
    request_id: str = "",
    unit_shares: int | None = None,
    price_minor: int | None = None,
) -> IpoImportTails:
    """A winning-tails file as the import command: header ``tail``, one tail a line (1..12
    digits, leading zeros kept), then ``TOTAL,<winning numbers>,<shares>,<amount minor>``.
    Refused as a whole (``IpoFileError``) for a missing header or trailer, a malformed line,
    a repeated tail, a tail already covered by a shorter one, or (with ``unit_shares`` /
    ``price_minor``) totals that disagree with each other. The winning-numbers total can only
    be checked against the numbering, which the core does."""
    problems = _Problems()
    lines = path.read_bytes().decode("ascii", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    tails: list[str] = []
    line_of: dict[str, list[int]] = {}
    totals: list[int] | None = None
    if not lines or lines[0] != TAILS_HEADER:
        problems.add("missing header", 1, f"the first line must be {TAILS_HEADER!r}")
    for number, text in enumerate(lines[1:], start=2):
        fields = text.split(",")
        if fields[0] == TRAILER:
            if number != len(lines):
                problems.add("trailer not on the last line", number, text)
            elif len(fields) != 4 or not all(f.isascii() and f.isdigit() for f in fields[1:]):
                problems.add("malformed trailer", number, text)
            else:
                totals = [int(f) for f in fields[1:]]
        elif not (0 < len(text) <= NUMBER_DIGITS and text.isascii() and text.isdigit()):
            problems.add(f"not a tail of 1..{NUMBER_DIGITS} digits", number, text)
        else:
            tails.append(text)
            line_of.setdefault(text, []).append(number)
    if totals is None and not any(k.endswith("trailer") for k in problems.counts):
        problems.add("missing trailer", len(lines), f"{TRAILER},<numbers>,<shares>,<amount>")
    for tail, where in line_of.items():
        for number in where[1:]:
            problems.add("repeated tail", number, tail)
    if not problems:
        if not 1 <= len(tails) <= MAX_IMPORTED_TAILS:
            problems.add("tail count", 0, f"{len(tails)} tails, 1..{MAX_IMPORTED_TAILS} allowed")
        else:
            draw = tails_draw(tails)
            if isinstance(draw, str):
                problems.add("unusable tails", 0, draw)
    if totals is not None and unit_shares is not None and not problems:
        numbers, shares, amount = totals
        if shares != numbers * unit_shares:
            problems.add(
                "control total mismatch",
                len(lines),
                f"shares {shares} != {numbers} x {unit_shares}",
            )
        elif price_minor is not None and amount != shares * price_minor:
            problems.add(
                "control total mismatch", len(lines), f"amount {amount} != {shares} x {price_minor}"
            )
    problems.raise_if_any(path, "tails file", len(lines), len(tails))
    assert totals is not None
    return IpoImportTails(
        request_id=request_id,
        symbol=symbol,
        tails=tails,
        total_winning_numbers=totals[0],
        total_shares=totals[1],
        total_amount_minor=totals[2],
        source_sha256=file_sha256(path),
    )


def write_tails(
    path: Path, tails: list[str], winning_numbers: int, unit_shares: int, price_minor: int
) -> None:
    """A winning-tails file as an exchange publishes it (tests, simulations)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        fh.write(TAILS_HEADER + "\n")
        fh.writelines(t + "\n" for t in tails)
        fh.write(results_trailer(winning_numbers, unit_shares, price_minor) + "\n")
    os.replace(tmp, path)


class Numbering(msgspec.Struct, frozen=True):
    accounts: I64
    first_numbers: I64
    counts: I64
    sha256: str


def read_numbering(path: Path) -> Numbering:
    """A numbering file, checked: counts >= 1, no repeated account, and numbers contiguous
    from 1 in row order (each row starts where the previous one ended)."""
    problems = _Problems()
    con = duckdb_memory()
    try:
        table = _read_table(con, path, "numbering file", NUMBERING_HEADER, problems)
        accounts, first, counts = table.columns
        line_of = table.line_of
        problems.add_many("zero count", _where(counts == 0, line_of), lambda i: "count 0")
        _duplicates(accounts, line_of, "account", problems)
        if not problems and len(first):
            expected = np.empty_like(first)
            expected[0] = 1
            np.cumsum(counts[:-1], out=expected[1:])
            expected[1:] += 1
            gap = np.flatnonzero(first != expected)
            problems.add_many(
                "numbers not contiguous",
                line_of[gap],
                lambda i: f"first number {int(first[gap[i]])}, expected {int(expected[gap[i]])}",
            )
        problems.raise_if_any(path, "numbering file", table.lines, len(line_of))
    finally:
        con.close()
    return Numbering(accounts, first, counts, file_sha256(path))


class Population(msgspec.Struct, frozen=True):
    accounts: I64
    units: I64
    cash_minor: I64
    sha256: str


def read_population(path: Path) -> Population:
    """A population file, checked: units >= 1 and no repeated account."""
    problems = _Problems()
    con = duckdb_memory()
    try:
        table = _read_table(con, path, "population file", POPULATION_HEADER, problems)
        accounts, units, cash = table.columns
        line_of = table.line_of
        problems.add_many("zero units", _where(units == 0, line_of), lambda i: "units 0")
        _duplicates(accounts, line_of, "account", problems)
        problems.raise_if_any(path, "population file", table.lines, len(line_of))
    finally:
        con.close()
    return Population(accounts, units, cash, file_sha256(path))


def read_basis(path: Path) -> list[BallotTier]:
    """A basis of allotment (small: one row per size tier). The core checks the tiers' logic
    (disjoint, covering every application, nobody over-allotted); this checks the syntax."""
    problems = _Problems()
    tiers: list[BallotTier] = []
    if not path.is_file():
        problems.add("missing file", 0, f"no such file: {path}")
        problems.raise_if_any(path, "basis file", 0, 0)
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()
    if not rows or ",".join(rows[0]) != BASIS_HEADER:
        problems.add("missing header", 1, f"expected {BASIS_HEADER!r}")
    digits = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}")
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != 5:
            problems.add("wrong number of fields", number, ",".join(row))
        elif not all(digits.fullmatch(cell) for cell in row):
            problems.add("not an integer", number, ",".join(row))
        else:
            a, b, base, extra, winners = (int(cell) for cell in row)
            tiers.append(
                BallotTier(
                    min_units=a, max_units=b, base_units=base, extra_units=extra, winners=winners
                )
            )
    problems.raise_if_any(path, "basis file", len(rows), max(len(rows) - 1, 0))
    return tiers


# -- writing ---------------------------------------------------------------------------------


def _copy_csv(
    path: Path,
    arrays: dict[str, I64],
    select: str,
    trailer: str | None = None,
) -> None:
    """``COPY (select) TO path`` over the registered arrays (table ``t``), then the trailer;
    written to a temporary name and renamed into place (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    con = duckdb_memory()
    try:
        con.register(
            "t", {name: np.ascontiguousarray(a, dtype=np.int64) for name, a in arrays.items()}
        )
        con.execute(
            f"COPY ({select}) TO {sql_literal(str(tmp))} (FORMAT csv, HEADER true, QUOTE '')"
        )
    finally:
        con.close()
    if trailer is not None:
        with tmp.open("a") as fh:
            fh.write(trailer + "\n")
    os.replace(tmp, path)


def write_numbering_arrays(path: Path, accounts: I64, first_numbers: I64, counts: I64) -> int:
    """The numbering file, byte for byte what the core hashes at numbering
    (``openbell.core.ipo.numbering``), written to a temporary name and renamed into place."""
    if len(first_numbers) and int(first_numbers.max()) > MAX_NUMBERS:
        raise ValueError(f"allotment numbers have at most {NUMBER_DIGITS} digits")
    tmp = path.with_name(path.name + ".tmp")
    arrays = [np.asarray(a, dtype=np.int64) for a in (accounts, first_numbers, counts)]
    with tmp.open("wb") as fh:
        for piece in numbering_file.chunks(*arrays):
            fh.write(piece)
    os.replace(tmp, path)
    return len(accounts)


def write_numbering(book: IpoBook, symbol: str, path: Path) -> int:
    """The numbering file of an offering held in this process (tests, benchmarks)."""
    accounts, first, count = book.numbering(symbol)
    return write_numbering_arrays(path, accounts, first, count)


def results_trailer(won_units_total: int, unit_shares: int, price_minor: int) -> str:
    shares = won_units_total * unit_shares
    return f"{TRAILER},{won_units_total},{shares},{shares * price_minor}"


def write_results(
    path: Path, accounts: Any, won_units: Any, unit_shares: int, price_minor: int
) -> None:
    """A results file as an external lottery agent sends it (tests, simulations)."""
    won = np.asarray(won_units, dtype=np.int64)
    total = exact_sum(won)
    _copy_csv(
        path,
        {"account": np.asarray(accounts, dtype=np.int64), "won_units": won},
        "SELECT account, won_units FROM t",
        trailer=results_trailer(total, unit_shares, price_minor),
    )


def write_population(path: Path, accounts: I64, units: I64, cash_minor: I64) -> int:
    _copy_csv(
        path,
        {"account": accounts, "units": units, "cash_minor": cash_minor},
        "SELECT account, units, cash_minor FROM t",
    )
    return len(accounts)


def write_basis(path: Path, tiers: Iterable[BallotTier]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        fh.write(BASIS_HEADER + "\n")
        for t in tiers:
            fh.write(f"{t.min_units},{t.max_units},{t.base_units},{t.extra_units},{t.winners}\n")
    os.replace(tmp, path)
