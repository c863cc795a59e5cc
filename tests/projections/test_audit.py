"""The hash-chained audit trail: built from the journal, anchored to the engine's state hash,
verified by recomputation; one altered row in SQL and one altered line in the file are found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from openbell.core.engine import Engine
from openbell.projections import db
from openbell.projections.audit import (
    ANCHOR,
    AUDIT_DIR,
    AUDIT_FILE,
    AuditEntry,
    AuditLog,
    read_file,
    verify,
    verify_chain,
)
from openbell.projections.projector import Projector
from openbell.projections.sql import ReadModel


def project_audit(data: Path, anchor_every: int = 500, chunk: int = 700) -> str:
    url = db.default_url(data)
    sinks = [ReadModel(url), AuditLog(data, url, anchor_every=anchor_every)]
    projector = Projector(data, sinks, chunk_commands=chunk)  # type: ignore[list-item]
    projector.catch_up()
    projector.close()
    return url


def test_chain_holds_money_movements_operator_actions_and_anchors(
    sample: tuple[Path, Engine],
) -> None:
    data, engine = sample
    url = project_audit(data)
    entries = [x for x in read_file(data / AUDIT_DIR / AUDIT_FILE) if isinstance(x, AuditEntry)]
    kinds = {x.kind for x in entries}
    assert {"Transferred", "HoldFrozen", "HoldResolved", "Trade", "AccountStateChanged",
            "PhaseChanged", "IpoChunkSettled", "IpoDrawn", ANCHOR} <= kinds  # fmt: skip
    assert "BookDelta" not in kinds and "Rejected" not in kinds
    anchors = [x for x in entries if x.kind == ANCHOR]
    assert [a.seq for a in anchors] == list(range(500, engine.seq + 1, 500))
    assert verify_chain(entries) is None
    report = verify(data, url, anchor_every=500)
    assert report.ok, report.tampered
    assert report.entries == len(entries) == report.sql_entries == report.file_entries
    assert report.anchors == len(anchors)


def test_one_altered_row_in_sql_and_one_line_in_the_file_are_found(
    sample: tuple[Path, Engine],
) -> None:
    data, _ = sample
    url = project_audit(data)
    path = data / AUDIT_DIR / AUDIT_FILE
    entries = [x for x in read_file(path) if isinstance(x, AuditEntry)]
    transfer = next(x for x in entries if x.kind == "Transferred")
    trade = next(x for x in entries if x.kind == "Trade" and x.idx > transfer.idx)
    # SQL: someone edits a transfer's amount (and even re-hashes nothing)
    content = json.loads(transfer.content)
    content["amount_minor"] += 100
    forged = json.dumps(content, sort_keys=True, separators=(",", ":"))
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET content = :c WHERE idx = :i"),
                     {"c": forged, "i": transfer.idx})  # fmt: skip
    engine.dispose()
    # the file: someone edits a trade's price in its line
    lines = path.read_bytes().splitlines(keepends=True)
    trade_content = json.loads(trade.content)
    altered = dict(trade_content, price_ticks=trade_content["price_ticks"] + 1)
    line = json.loads(lines[trade.idx - 1])
    line["content"] = json.dumps(altered, sort_keys=True, separators=(",", ":"))
    lines[trade.idx - 1] = (json.dumps(line) + "\n").encode()
    path.write_bytes(b"".join(lines))

    report = verify(data, url, anchor_every=500)
    assert not report.ok
    found = {t.store: t for t in report.tampered}
    assert found["sql"].seq == transfer.seq and found["sql"].idx == transfer.idx
    assert found["sql"].field == "content.amount_minor"
    assert found["sql"].expected == str(content["amount_minor"] - 100)
    assert found["sql"].found == str(content["amount_minor"])
    assert found["file"].seq == trade.seq and found["file"].field == "content.price_ticks"
    assert found["file"].expected == str(trade_content["price_ticks"])
    assert found["file"].found == str(trade_content["price_ticks"] + 1)


def test_a_rehashed_forgery_is_still_found_by_recomputation(sample: tuple[Path, Engine]) -> None:
    """Rewriting an entry and every later hash keeps the chain consistent; the journal does not
    agree with it."""
    data, _ = sample
    url = project_audit(data)
    path = data / AUDIT_DIR / AUDIT_FILE
    entries = [x for x in read_file(path) if isinstance(x, AuditEntry)]
    from openbell.projections.audit import entry_hash

    victim = next(x for x in entries if x.kind == "HoldFrozen")
    prev = entries[victim.idx - 2].hash
    rewritten = []
    for entry in entries[victim.idx - 1 :]:
        content = entry.content
        if entry.idx == victim.idx:
            content = content.replace('"amount_minor":50000', '"amount_minor":5000')
        digest = entry_hash(prev, entry.idx, entry.seq, entry.kind, content)
        rewritten.append(AuditEntry(idx=entry.idx, seq=entry.seq, kind=entry.kind,
                                    content=content, prev_hash=prev, hash=digest))  # fmt: skip
        prev = digest
    forged = entries[: victim.idx - 1] + rewritten
    assert verify_chain(forged) is None  # the links alone cannot tell
    import msgspec

    path.write_bytes(b"".join(msgspec.json.encode(x) + b"\n" for x in forged))
    report = verify(data, url, anchor_every=500)
    [tampered] = [t for t in report.tampered if t.store == "file"]
    assert (tampered.seq, tampered.field) == (victim.seq, "content.amount_minor")
    assert (tampered.expected, tampered.found) == ("50000", "5000")


def test_restart_cuts_the_file_back_to_the_sql_position(sample: tuple[Path, Engine]) -> None:
    """A crash after the file was written but before the SQL commit: the next start drops the
    file's extra entries and writes them again, once."""
    data, engine = sample
    url = db.default_url(data)
    log = AuditLog(data, url, anchor_every=500)
    Projector(data, [log], chunk_commands=400).catch_up(until_seq=1_200)
    log.close()
    path = data / AUDIT_DIR / AUDIT_FILE
    stale = path.read_bytes()
    # simulate: the file got entries for seqs 1201.. but the SQL transaction never committed

    class CrashBeforeSql(AuditLog):
        def commit(self, seq: int, ts_ns: int) -> None:
            self.write_file()
            self._file.write(b'{"torn":')  # and a torn line at the end
            self._file.flush()
            raise KeyboardInterrupt("crash")

    ahead = CrashBeforeSql(data, url, anchor_every=500)
    with pytest.raises(KeyboardInterrupt):
        Projector(data, [ahead], chunk_commands=400).step()
    ahead.close()
    assert len(path.read_bytes()) > len(stale)
    resumed = AuditLog(data, url, anchor_every=500)
    assert path.read_bytes() == stale
    Projector(data, [resumed], chunk_commands=400).catch_up()
    resumed.close()
    report = verify(data, url, anchor_every=500)
    assert report.ok and report.last_seq == engine.seq
