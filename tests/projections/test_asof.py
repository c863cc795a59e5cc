"""Balances as of a past seq or time, replayed from the journal (snapshot + records), and the
end-of-day balances the OLAP export writes with them."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import duckdb
import pytest

from openbell.core.engine import Engine
from openbell.journal.file import FileJournal
from openbell.node.codec import decode_batch
from openbell.node.datadir import DataDir
from openbell.projections import db
from openbell.projections.asof import balances_as_of, balances_of, engine_as_of
from openbell.projections.olap import export_all
from openbell.projections.projector import Projector
from openbell.projections.source import ReplayError
from openbell.projections.sql import ReadModel


def _reference(data: Path, until_seq: int | None = None, before_ts_ns: int | None = None) -> Engine:
    """From seq 1, command by command: the straightforward replay asof must equal."""
    dirs = DataDir(data)
    engine = Engine(dirs.load_config())
    with FileJournal(dirs.journal) as journal:
        for record in journal.read(1):
            batch = decode_batch(record.payload)
            if before_ts_ns is not None and batch.ts_ns >= before_ts_ns:
                break
            for offset, command in enumerate(batch.commands):
                seq = record.first_seq + offset
                if until_seq is not None and seq > until_seq:
                    return engine
                engine.apply(seq, batch.ts_ns, command)
    return engine


def _batch_times(data: Path) -> list[tuple[int, int]]:
    """(first seq, ts_ns) of every batch."""
    with FileJournal(DataDir(data).journal) as journal:
        return [(r.first_seq, decode_batch(r.payload).ts_ns) for r in journal.read(1)]


@pytest.mark.parametrize("seq", [1, 700, 1_500, 2_345])
def test_state_as_of_a_seq_equals_a_replay_from_the_start(
    sample: tuple[Path, Engine], seq: int
) -> None:
    data, final = sample
    assert seq < final.seq
    engine = engine_as_of(data, seq=seq)  # from the snapshot near 1,500 when it can
    reference = _reference(data, until_seq=seq)
    assert engine.seq == seq == reference.seq
    assert engine.state_hash() == reference.state_hash()
    assert balances_of(engine) == balances_of(reference)


def test_balances_as_of_a_time_stop_before_the_first_later_batch(
    sample: tuple[Path, Engine],
) -> None:
    data, _final = sample
    times = _batch_times(data)
    first_seq, cut_ns = times[len(times) * 2 // 3]
    balances = balances_as_of(data, before_ts_ns=cut_ns)
    assert balances.as_of_seq == first_seq - 1  # the batch stamped at the cut is not in
    assert balances.as_of_ts_ns < cut_ns
    assert balances == balances_of(_reference(data, before_ts_ns=cut_ns))
    totals: dict[str, int] = defaultdict(int)  # double entry: each asset sums to zero
    for asset, available, frozen in zip(
        balances.asset, balances.available_minor, balances.frozen_minor, strict=True
    ):
        totals[asset] += available + frozen
    assert totals and all(total == 0 for total in totals.values()), totals


def test_a_seq_the_journal_does_not_reach_is_refused(sample: tuple[Path, Engine]) -> None:
    data, final = sample
    with pytest.raises(ReplayError):
        engine_as_of(data, seq=final.seq + 1)
    with pytest.raises(ValueError):
        engine_as_of(data, seq=-1)


def test_export_writes_end_of_day_balances(sample: tuple[Path, Engine], tmp_path: Path) -> None:
    data, final = sample
    url = db.default_url(data)
    Projector(data, [ReadModel(url)]).catch_up()
    [result] = export_all(url, tmp_path / "olap", data)
    parquet = str(Path(result.directory) / "balances.parquet")
    rows = duckdb.sql(
        f"SELECT account, asset, available_minor, frozen_minor, as_of_seq FROM '{parquet}' "
        "ORDER BY asset, account"
    ).fetchall()
    # the sample is one trading day: its end is after the last batch
    expected = balances_of(final)
    assert {row[4] for row in rows} == {final.seq}
    got = sorted((row[1], row[0], row[2], row[3]) for row in rows)
    want = sorted(
        zip(expected.asset, expected.account, expected.available_minor, expected.frozen_minor,
            strict=True)
    )  # fmt: skip
    assert got == want
    assert result.rows["balances"] == len(want)
