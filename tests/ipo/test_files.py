"""IPO files: round trips, and bad files refused whole with a report (nothing reaches the node;
the core checks the control totals again)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from node.harness import NodeRunner

from openbell import ipo_io, ipo_ops
from openbell.core import events as e
from openbell.core.ipo import messages as m
from openbell.core.ipo.messages import BallotTier, LotteryMethod
from openbell.ipo_io import IpoFileError
from openbell.node.client import NodeClient
from openbell.sim.ipo import OFFERING_FILE, POPULATION_FILE, RESULTS_FILE, IpoSimConfig, generate

QUIET = ipo_ops.RunOptions(quiet=True, retry=ipo_ops.RetryPolicy(attempts=3, first_delay_s=0.05))


def _refused(path: Path, **kw: Any) -> ipo_io.FileReport:
    with pytest.raises(IpoFileError) as caught:
        ipo_io.read_results_file(path, **kw)
    return caught.value.report


# -- round trips -----------------------------------------------------------------------------


def test_numbering_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    counts = rng.integers(1, 30, 50_000).astype(np.int64)
    first = np.cumsum(counts) - counts + 1
    accounts = rng.permutation(50_000).astype(np.int64) + 16
    path = tmp_path / "numbering.csv"
    assert ipo_io.write_numbering_arrays(path, accounts, first, counts) == 50_000
    lines = path.read_text().splitlines()
    assert lines[0] == "account,first_number,count"
    assert lines[1] == f"{accounts[0]},000000000001,{counts[0]}"
    assert lines[-1].split(",")[1] == str(int(first[-1])).zfill(12)
    got = ipo_io.read_numbering(path)
    assert np.array_equal(got.accounts, accounts)
    assert np.array_equal(got.first_numbers, first)
    assert np.array_equal(got.counts, counts)
    assert got.sha256 == ipo_io.file_sha256(path)


def test_numbering_must_be_contiguous_from_one(tmp_path: Path) -> None:
    path = tmp_path / "numbering.csv"
    path.write_text("account,first_number,count\n16,000000000001,2\n17,000000000004,1\n")
    with pytest.raises(IpoFileError) as caught:
        ipo_io.read_numbering(path)
    report = caught.value.report
    assert report.counts == {"numbers not contiguous": 1}
    assert report.examples[0].line == 3 and "expected 3" in report.examples[0].text


def test_results_round_trip_fast_and_checked_paths_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    accounts = np.sort(rng.choice(10**6, 100_000, replace=False)).astype(np.int64) + 16
    won = rng.integers(1, 5, len(accounts)).astype(np.int64)
    path = tmp_path / "results.csv"
    ipo_io.write_results(path, accounts, won, 500, 1_234)
    text = path.read_text()
    total = int(won.sum())
    assert text.splitlines()[-1] == f"TOTAL,{total},{total * 500},{total * 500 * 1_234}"
    got = ipo_io.read_results_file(path, 500, 1_234)
    assert np.array_equal(got.accounts, accounts) and np.array_equal(got.won_units, won)
    assert (got.total_won_units, got.total_shares) == (total, total * 500)
    assert got.sha256 == ipo_io.file_sha256(path) and got.lines == len(accounts) + 2
    # CRLF line ends take the checked (line by line) path: same rows.
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    again = ipo_io.read_results_file(crlf, 500, 1_234)
    assert np.array_equal(again.accounts, accounts) and np.array_equal(again.won_units, won)
    command = ipo_io.read_results("NEWCO", path)
    assert command.source_sha256 == got.sha256
    assert np.frombuffer(command.accounts, "<i8").tolist() == accounts.tolist()


def test_results_without_winners(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    ipo_io.write_results(path, np.zeros(0, np.int64), np.zeros(0, np.int64), 500, 1_000)
    assert path.read_text() == "account,won_units\nTOTAL,0,0,0\n"
    got = ipo_io.read_results_file(path, 500, 1_000)
    assert len(got.accounts) == 0 and got.total_amount_minor == 0


def test_population_and_basis_round_trip(tmp_path: Path) -> None:
    accounts = np.array([18, 16, 17], dtype=np.int64)
    units = np.array([3, 1, 20], dtype=np.int64)
    cash = np.array([10**15, 0, 7], dtype=np.int64)
    path = tmp_path / "population.csv"
    ipo_io.write_population(path, accounts, units, cash)
    pop = ipo_io.read_population(path)
    assert pop.accounts.tolist() == [18, 16, 17] and pop.cash_minor.tolist() == cash.tolist()
    tiers = [
        BallotTier(min_units=1, max_units=1, extra_units=1, winners=5),
        BallotTier(min_units=2, max_units=9, base_units=1, extra_units=1, winners=2),
    ]
    basis = tmp_path / "basis.csv"
    ipo_io.write_basis(basis, tiers)
    assert ipo_io.read_basis(basis) == tiers
    basis.write_text(ipo_io.BASIS_HEADER + "\n1,2,3\n1,x,0,0,0\n")
    with pytest.raises(IpoFileError) as caught:
        ipo_io.read_basis(basis)
    assert caught.value.report.counts == {"wrong number of fields": 1, "not an integer": 1}
    path.write_text("account,units,cash_minor\n16,1,5\n17,0,5\n16,2,5\n")
    with pytest.raises(IpoFileError) as caught:
        ipo_io.read_population(path)
    assert caught.value.report.counts == {"zero units": 1, "duplicated account": 1}


# -- bad results files -----------------------------------------------------------------------

GOOD = "account,won_units\n16,1\n17,2\nTOTAL,3,1500,1500000\n"


@pytest.mark.parametrize(
    ("text", "kind", "line"),
    [
        ("account,won_units\n16,1\n17,x\nTOTAL,3,1500,1500000\n", "not an integer", 3),
        ("account,won_units\n16,1\n17,1.0\nTOTAL,2,1000,1000000\n", "not an integer", 3),
        ("account,won_units\n16,1\n17,+2\nTOTAL,3,1500,1500000\n", "not an integer", 3),
        ("account,won_units\n16,1\n17, 2\nTOTAL,3,1500,1500000\n", "not an integer", 3),
        ("account,won_units\n16,1\n17,-2\nTOTAL,3,1500,1500000\n", "negative number", 3),
        ("account,won_units\n16,1\n17,2,3\nTOTAL,3,1500,1500000\n", "wrong number of fields", 3),
        ("account,won_units\n16,1\n\n17,2\nTOTAL,3,1500,1500000\n", "blank line", 3),
        ("account,won_units\n16,1\n17,99999999999999999999\nTOTAL,3,1,1\n", "number too large", 3),
        ("16,1\n17,2\nTOTAL,3,1500,1500000\n", "missing header", 1),
        (
            "account,won_units\n16,1\naccount,won_units\n17,2\nTOTAL,3,1500,1500000\n",
            "repeated header",
            3,
        ),
        ("account,won_units\n16,1\n17,2\n", "missing trailer", 3),
        ("account,won_units\n16,1\n17,2\nTOTAL,3,1500\n", "malformed trailer", 4),
        (
            "account,won_units\n16,1\nTOTAL,1,500,500000\n17,2\nTOTAL,3,1500,1500000\n",
            "repeated or misplaced trailer",
            3,
        ),
        ("account,won_units\n16,1\n17,2\n16,1\nTOTAL,4,2000,2000000\n", "duplicated account", 4),
        ("account,won_units\n16,1\n17,0\nTOTAL,1,500,500000\n", "zero won units", 3),
        ("account,won_units\n3,1\n17,2\nTOTAL,3,1500,1500000\n", "not a user account", 2),
        ("account,won_units\n16,1\n17,2\nTOTAL,4,2000,2000000\n", "control total mismatch", 4),
        ("account,won_units\n16,1\n17,2\nTOTAL,3,1500,9\n", "control total mismatch", 4),
        ("account,won_units\n16,1\n17,\xe92\nTOTAL,3,1500,1500000\n", "not an integer", 3),
        ("", "empty file", 0),
    ],
)
def test_bad_results_file_refused_with_a_report(
    tmp_path: Path, text: str, kind: str, line: int
) -> None:
    path = tmp_path / "results.csv"
    path.write_text(text)
    report = _refused(path, unit_shares=500, price_minor=1_000)
    matching = [p for p in report.examples if p.kind.startswith(kind)]
    assert matching, report.render()
    assert matching[0].line == line, report.render()
    assert "nothing was submitted" in report.render()


def test_good_file_passes_and_non_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    path.write_text(GOOD)
    assert ipo_io.read_results_file(path, 500, 1_000).total_won_units == 3
    path.write_bytes(GOOD.encode().replace(b"17,2", b"17,\xff2"))
    report = _refused(path)
    assert report.counts == {"unreadable line": 1}
    assert report.examples[0].line == 3 and "UTF-8" in report.examples[0].text
    missing = _refused(tmp_path / "nope.csv")
    assert missing.counts == {"missing file": 1}


def test_report_counts_everything_and_quotes_the_first_few(tmp_path: Path) -> None:
    rows = [f"{16 + i},{'x' if i % 2 else '1'}" for i in range(200)]
    path = tmp_path / "results.csv"
    path.write_text("account,won_units\n" + "\n".join(rows) + "\nTOTAL,100,50000,50000000\n")
    report = _refused(path)
    assert report.counts == {"not an integer": 100}
    assert len(report.examples) == ipo_io.MAX_EXAMPLES
    assert [p.line for p in report.examples] == list(range(3, 3 + 2 * ipo_io.MAX_EXAMPLES, 2))
    assert f"... and {100 - ipo_io.MAX_EXAMPLES} more" in report.render()


# -- nothing reaches the node ----------------------------------------------------------------


async def _state_hash(data: Path) -> str:
    client = await NodeClient.connect_data_dir(data)
    try:
        return str((await client.query("state_hash"))["state_hash"])
    finally:
        await client.close()


async def _submit(data: Path, command: m.IpoImportResults) -> e.Event:
    client = await NodeClient.connect_data_dir(data)
    try:
        response = await client.submit(command)
        assert not response.error and response.events
        return response.events[0]
    finally:
        await client.close()


def test_bad_results_change_nothing_on_the_node(nodes: NodeRunner, tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    generate(
        IpoSimConfig(
            accounts=300, method=LotteryMethod.EXTERNAL, seed=4, max_units=10, chunk_rows=50
        ),
        sim,
    )
    data = tmp_path / "node"
    nodes.run(data)
    target = ipo_ops.Target(data=str(data))
    ipo_ops.fund(target, sim / OFFERING_FILE, sim / POPULATION_FILE, options=QUIET)
    ipo_ops.create(target, sim / OFFERING_FILE, options=QUIET)
    ipo_ops.subscribe(target, "NEWCO", sim / POPULATION_FILE, batch_rows=64, options=QUIET)
    ipo_ops.close(target, "NEWCO", options=QUIET)
    ipo_ops.number(target, "NEWCO", options=QUIET)
    before = asyncio.run(_state_hash(data))
    good = ipo_io.read_results_file(sim / RESULTS_FILE)
    body = (sim / RESULTS_FILE).read_text().splitlines()
    pop = ipo_io.read_population(sim / POPULATION_FILE)
    loser = int(np.setdiff1d(pop.accounts, good.accounts)[0])
    applied = dict(zip(pop.accounts.tolist(), pop.units.tolist(), strict=True))
    first = int(good.accounts[0])
    bad_files = {
        "duplicated": [*body[:-1], body[1], body[-1]],
        "malformed": [body[0], "16;1", *body[1:]],
        "no trailer": body[:-1],
        "mismatched total": [*body[:-1], "TOTAL,1,500,500000"],
    }
    for name, lines in bad_files.items():
        path = tmp_path / f"{name}.csv"
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(IpoFileError):
            ipo_ops.import_results(target, "NEWCO", path, options=QUIET)
        assert asyncio.run(_state_hash(data)) == before, name
    # Files the file layer cannot judge (it does not know who subscribed) are refused by the
    # core: a winner that never won a subscription, more won units than applied for.
    for name, row in {
        "unknown": f"{loser + 10_000},1",
        "too many": f"{first},{applied[first] + 1}",
    }.items():
        rows = [r for r in body[1:-1] if not r.startswith(f"{first},")] + [row]
        won = sum(int(r.split(",")[1]) for r in rows)
        path = tmp_path / f"{name}.csv"
        path.write_text("\n".join([body[0], *rows, f"TOTAL,{won},{won * 500},{won * 500_000}"]))
        with pytest.raises(ipo_ops.OpsError, match="refused"):
            ipo_ops.import_results(target, "NEWCO", path, options=QUIET)
        assert asyncio.run(_state_hash(data)) == before, name
    # The core checks the control totals itself: a command whose totals disagree with its rows
    # (shares and amount not checked by the reader here) is rejected, nothing changed.
    lying = tmp_path / "lying.csv"
    won = good.total_won_units
    lying.write_text("\n".join([*body[:-1], f"TOTAL,{won},{won * 499},{won * 499_000}"]) + "\n")
    event = asyncio.run(_submit(data, ipo_io.read_results("NEWCO", lying)))
    assert isinstance(event, e.Rejected) and event.reason is m.CONTROL_TOTALS_MISMATCH
    assert asyncio.run(_state_hash(data)) == before
    # The good file goes in, once.
    report = ipo_ops.import_results(target, "NEWCO", sim / RESULTS_FILE, options=QUIET)
    assert report.numbers["won_units"] == good.total_won_units and not report.already_done
    assert report.numbers["source"] == good.sha256
    assert asyncio.run(_state_hash(data)) != before
    again = ipo_ops.import_results(target, "NEWCO", sim / RESULTS_FILE, options=QUIET)
    assert again.already_done


def test_tails_file_round_trip_and_refusals(tmp_path: Path) -> None:
    good = tmp_path / "tails.csv"
    ipo_io.write_tails(good, ["0", "13", "007"], 6, 500, 1_000)
    assert ipo_io.results_kind(good) == "tails"
    cmd = ipo_io.read_tails("NEWCO", good, unit_shares=500, price_minor=1_000)
    assert cmd.tails == ["0", "13", "007"]  # leading zeros kept
    assert (cmd.total_winning_numbers, cmd.total_shares, cmd.total_amount_minor) == (
        6,
        3_000,
        3_000_000,
    )
    assert cmd.source_sha256 == ipo_io.file_sha256(good)
    cases = {
        "missing header": "0\n13\nTOTAL,6,3000,3000000\n",
        "not a tail": "tail\n0\n1x\nTOTAL,6,3000,3000000\n",
        "repeated tail": "tail\n13\n13\nTOTAL,6,3000,3000000\n",
        "missing trailer": "tail\n0\n13\n",
        "trailer not on the last line": "tail\n0\nTOTAL,6,3000,3000000\n13\n",
        "malformed trailer": "tail\n0\nTOTAL,6,-1,3000000\n",
        "unusable tails": "tail\n3\n13\nTOTAL,6,3000,3000000\n",  # 13 ends in 3
        "control total mismatch": "tail\n0\n13\nTOTAL,6,2999,3000000\n",
    }
    for kind, text in cases.items():
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(ipo_io.IpoFileError) as caught:
            ipo_io.read_tails("NEWCO", bad, unit_shares=500, price_minor=1_000)
        assert any(k.startswith(kind) for k in caught.value.report.counts), caught.value.report
