"""Three-way reconciliation on the sample venue's read model: clean files match everywhere;
every injected fault (missing row, wrong amount, duplicate, unknown account) in either file is
found as its kind of break; the zero-sum proof; the reports; the IPO pre-settlement check."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from openbell.core.engine import Engine
from openbell.projections import db
from openbell.projections.audit import operator_actions, verify_chain
from openbell.projections.projector import Projector
from openbell.projections.sample import IPO_SYMBOL, build_journal
from openbell.projections.sql import ReadModel
from openbell.recon.files import Fault, write_external
from openbell.recon.ledger import Ledger, ledger_from_read_model
from openbell.recon.presettle import (
    PresettlementBreaks,
    check_presettlement,
    require_clean_presettlement,
    write_ipo_bank_file,
)
from openbell.recon.reconcile import ReconError, reconcile

EXPECTED = {
    ("clearing", "missing"): {"ledger-clearing": "MISSING_IN_CLEARING"},
    ("clearing", "wrong_amount"): {"ledger-clearing": "AMOUNT_MISMATCH"},
    ("clearing", "duplicate"): {"ledger-clearing": "DUPLICATE"},
    ("clearing", "unknown_account"): {"ledger-clearing": "UNKNOWN_ACCOUNT"},
    ("bank", "missing"): {"ledger-bank": "MISSING_IN_BANK"},
    ("bank", "wrong_amount"): {"ledger-bank": "AMOUNT_MISMATCH"},
    ("bank", "duplicate"): {"ledger-bank": "DUPLICATE"},
    ("bank", "unknown_account"): {"ledger-bank": "UNKNOWN_ACCOUNT"},
}


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Engine, Ledger]:
    data = tmp_path_factory.mktemp("recon") / "data"
    engine = build_journal(data, commands=2_000, seed=5)
    Projector(data, [ReadModel(db.default_url(data))]).catch_up()
    return data, engine, ledger_from_read_model(db.default_url(data))


def test_clean_files_match_in_every_pair_and_all_three(
    venue: tuple[Path, Engine, Ledger], tmp_path: Path
) -> None:
    _, engine, ledger = venue
    clearing, bank, injected = write_external(ledger, tmp_path / "files")
    assert injected == []
    report = reconcile(ledger, clearing, bank, tmp_path / "out")
    assert report.ok and report.exit_code == 0 and report.breaks == 0
    for pair in report.pairs:
        assert set(pair.outcomes) == {"MATCHED"} and pair.outcomes["MATCHED"] > 0
    assert report.three_way_keys > 0 and report.three_way_matched == report.three_way_keys
    # zero-sum proof: balances over every account, and NET lines, sum to zero per asset
    assert {z.asset for z in report.zero_sum} >= {"USD", "ACME", "GLOBEX", "INITECH"}
    for z in report.zero_sum:
        assert z.ok and z.balances_minor == 0 and z.ledger_net_minor == 0
    trades = sum(1 for row in csv.DictReader(clearing.open()) if row["record"] == "TRADE")
    assert trades == engine.next_trade_id - 1
    assert (tmp_path / "out" / "breaks.csv").read_text().startswith("pair,outcome,ref")
    assert "no breaks" in (tmp_path / "out" / "breaks.html").read_text()


@pytest.mark.parametrize(("file", "kind"), sorted(EXPECTED))
def test_each_injected_fault_is_found(
    venue: tuple[Path, Engine, Ledger], tmp_path: Path, file: str, kind: str
) -> None:
    _, _, ledger = venue
    clearing, bank, injected = write_external(
        ledger,
        tmp_path,
        [Fault(file, kind, count=2)],
        seed=len(kind),  # type: ignore[arg-type]
    )
    assert len(injected) == 2
    report = reconcile(ledger, clearing, bank, tmp_path / "out")
    assert report.exit_code == 1
    for fault in injected:
        for pair, outcome in EXPECTED[(file, kind)].items():
            found = [b for b in report.sample if b.pair == pair and b.ref == fault.ref
                     and b.asset == fault.asset]  # fmt: skip
            assert [b.outcome for b in found] == [outcome], (fault, report.sample)
    # nothing else breaks in the pair without the file: ledger-clearing for a bank fault etc.
    untouched = "ledger-bank" if file == "clearing" else "ledger-clearing"
    assert all(b.pair != untouched for b in report.sample)
    rows = list(csv.DictReader((tmp_path / "out" / "breaks.csv").open()))
    assert len(rows) == report.breaks
    assert "breaks" in (tmp_path / "out" / "breaks.html").read_text()


def test_a_bad_line_is_refused_with_a_clear_error(
    venue: tuple[Path, Engine, Ledger], tmp_path: Path
) -> None:
    _, _, ledger = venue
    clearing, bank, _ = write_external(ledger, tmp_path)
    lines = clearing.read_text().splitlines()
    record, ref, account, asset, amount = lines[1].split(",")
    lines[1] = ",".join([record, ref, account, asset, amount + "001"])  # more decimals
    clearing.write_text("\n".join(lines) + "\n")
    with pytest.raises(ReconError, match="more decimals than the asset has"):
        reconcile(ledger, clearing, bank)


def test_presettlement_refuses_on_breaks_unless_overridden_and_audited(
    tmp_path: Path,
) -> None:
    """The IPO check before settlement: frozen subscription funds against the bank file."""
    data = tmp_path / "ipo"
    engine = build_journal(data, commands=0, seed=2)
    # project only up to the draw (settlement not yet run): rows are WIN or LOSE
    settle_from = next(seq for seq in range(1, engine.seq + 1) if _is_settle(data, seq))
    url = db.default_url(data)
    Projector(data, [ReadModel(url)]).catch_up(until_seq=settle_from - 1)
    bank = tmp_path / "ipo-bank.csv"
    assert write_ipo_bank_file(url, IPO_SYMBOL, bank) == []
    clean = check_presettlement(url, IPO_SYMBOL, bank)
    assert clean.ok and clean.subscriptions > 0 and clean.bank_minor == clean.frozen_minor
    require_clean_presettlement(data, IPO_SYMBOL, bank)  # no breaks: allowed
    for kind, outcome in (
        ("missing", "MISSING_IN_BANK"),
        ("wrong_amount", "AMOUNT_MISMATCH"),
        ("duplicate", "DUPLICATE"),
        ("unknown_account", "UNKNOWN_ACCOUNT"),
    ):
        faulty = tmp_path / f"bank-{kind}.csv"
        [fault] = write_ipo_bank_file(url, IPO_SYMBOL, faulty, [Fault("bank", kind)])  # type: ignore[arg-type]
        result = check_presettlement(url, IPO_SYMBOL, faulty)
        assert outcome in {b.outcome for b in result.breaks}, (kind, result.breaks)
        named = {f"IPO-{IPO_SYMBOL}-{b.account}" for b in result.breaks}
        assert kind == "unknown_account" or fault.ref in named
        with pytest.raises(PresettlementBreaks, match="settle refused"):
            require_clean_presettlement(data, IPO_SYMBOL, faulty)
    assert operator_actions(data) == []
    require_clean_presettlement(
        data,
        IPO_SYMBOL,
        faulty,
        operator="ops-1",
        override_reason="bank file late, confirmed by phone",
    )
    [entry] = operator_actions(data)
    assert entry.kind == "IPO_SETTLE_OVERRIDE" and "confirmed by phone" in entry.content
    assert verify_chain(operator_actions(data)) is None
    shutil.rmtree(data)


def _is_settle(data: Path, seq: int) -> bool:
    from openbell.core.ipo.messages import IpoSettleChunk
    from openbell.node.codec import decode_batch
    from openbell.projections.source import FileJournalTail

    for record in FileJournalTail(data / "journal").read(seq):
        batch = decode_batch(record.payload)
        return isinstance(batch.commands[seq - record.first_seq], IpoSettleChunk)
    return False
