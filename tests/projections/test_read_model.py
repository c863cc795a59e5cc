"""The SQL read model against the engine it projects: balances, orders, fills, IPO rows, schema."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pj_helpers import fingerprint

from openbell.core.engine import Engine
from openbell.journal.file import FileJournal
from openbell.projections import db
from openbell.projections.projector import Projector
from openbell.projections.sample import IPO_SYMBOL, build_journal
from openbell.projections.schema import metadata
from openbell.projections.source import FileJournalTail
from openbell.projections.sql import ReadModel, live_status


def project(data: Path, url: str | None = None, chunk: int = 20_000) -> ReadModel:
    model = ReadModel(url or db.default_url(data))
    projector = Projector(data, [model], chunk_commands=chunk)
    projector.catch_up()
    return model


def test_read_model_agrees_with_the_engine(sample: tuple[Path, Engine]) -> None:
    data, engine = sample
    model = project(data)
    assert model.position() == engine.seq
    with model.db.connect() as conn:
        # every balance row is the engine's, and every non-zero user balance has a row
        rows = conn.execute(
            sa.text("SELECT account, asset, available_minor, frozen_minor FROM balances")
        ).all()
        stored = {(a, s): (av, fr) for a, s, av, fr in rows}
        for (account, asset), value in stored.items():
            assert engine.balance(account, asset) == value, (account, asset)
        for asset, bal in engine.ledger.assets.items():
            available = np.frombuffer(bal.available, dtype=np.int64)
            frozen = np.frombuffer(bal.frozen, dtype=np.int64)
            for account in np.flatnonzero((available != 0) | (frozen != 0)).tolist():
                assert (account, asset) in stored, (account, asset)
            del available, frozen
        # open orders: exactly the engine's, with its quantities
        open_rows = conn.execute(
            sa.text(
                "SELECT order_id, leaves_lots, cum_lots, price_ticks, status FROM orders "
                "WHERE status IN ('NEW', 'PARTIALLY_FILLED', 'PENDING_TRIGGER')"
            )
        ).all()
        assert {r[0] for r in open_rows} == set(engine.orders)
        for order_id, leaves, cum, price, status in open_rows:
            order = engine.orders[order_id]
            assert (leaves, cum, price) == (order.leaves_lots, order.cum_lots, order.price_ticks)
            assert status == live_status(engine, order_id)
        # each order's fills add up to its filled quantity; each trade has a buy and a sell fill
        mismatched = conn.execute(
            sa.text(
                "SELECT o.order_id FROM orders o LEFT JOIN "
                "(SELECT order_id, SUM(quantity_lots) q FROM fills GROUP BY order_id) f "
                "ON f.order_id = o.order_id WHERE COALESCE(f.q, 0) != o.cum_lots"
            )
        ).all()
        assert mismatched == []
        trades = conn.execute(sa.text("SELECT COUNT(*) FROM trades")).scalar()
        assert trades == engine.next_trade_id - 1
        assert conn.execute(sa.text("SELECT COUNT(*) FROM fills")).scalar() == 2 * trades
        # order history: a filled order is still there, with every state change
        filled = conn.execute(
            sa.text("SELECT order_id FROM orders WHERE status = 'FILLED' LIMIT 1")
        ).scalar()
        kinds = (
            conn.execute(
                sa.text("SELECT kind FROM order_events WHERE order_id = :o ORDER BY seq, idx"),
                {"o": filled},
            )
            .scalars()
            .all()
        )
        assert kinds[0] == "ACCEPTED" and kinds[-1] == "FILL"
        # IPO: one row per subscription with the engine's outcome
        off = engine.ipo.offerings[IPO_SYMBOL]
        ipo = conn.execute(
            sa.text(
                "SELECT row, account, units, won_units, first_number, status "
                "FROM ipo_subscriptions WHERE symbol = :s ORDER BY row"
            ),
            {"s": IPO_SYMBOL},
        ).all()
        assert [r[0] for r in ipo] == list(range(off.n))
        for row, account, units, won, first, status in ipo:
            view = engine.ipo.subscription_view(IPO_SYMBOL, account)
            assert view is not None
            assert (row, units, won, first) == (view.row, view.units, view.won_units,
                                                 view.first_number)  # fmt: skip
            assert status == view.status.value
        assert {r[5] for r in ipo} == {"SETTLED", "REFUNDED"}
        holds = dict(conn.execute(sa.text("SELECT hold_id, status FROM holds")).all())
        assert holds == {"h1": "POSTED", "h2": "RELEASED"}


def test_chunking_does_not_change_the_result(sample: tuple[Path, Engine], tmp_path: Path) -> None:
    data, _ = sample
    one = project(data, f"sqlite:///{tmp_path / 'a.sqlite'}", chunk=20_000)
    small = project(data, f"sqlite:///{tmp_path / 'b.sqlite'}", chunk=7)
    assert fingerprint(one.url) == fingerprint(small.url)


def test_resumes_from_its_position_using_a_snapshot(
    sample: tuple[Path, Engine], tmp_path: Path
) -> None:
    """Stop part way; the next run starts from the node snapshot at or before its position."""
    data, engine = sample
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    first = ReadModel(url)
    Projector(data, [first], chunk_commands=500).catch_up(until_seq=2_000)
    assert first.position() == 2_000
    second = ReadModel(url)
    projector = Projector(data, [second], chunk_commands=500)
    projector.open()
    assert projector.seq == 2_000
    projector.catch_up()
    assert second.position() == engine.seq
    assert fingerprint(url) == fingerprint(project(data, f"sqlite:///{tmp_path / 'c.sqlite'}").url)


def test_follows_a_journal_being_written(tmp_path: Path) -> None:
    """A writer appends while the projector follows; it ends at the writer's last seq."""
    source = tmp_path / "source"
    engine = build_journal(source, commands=1_500)
    live = tmp_path / "live"
    (live / "journal").mkdir(parents=True)
    (live / "engine.json").write_bytes((source / "engine.json").read_bytes())
    records = list(FileJournalTail(source / "journal").read(1))
    model = ReadModel(db.default_url(live))
    projector = Projector(live, [model], chunk_commands=100)
    stop = threading.Event()
    follower = threading.Thread(target=projector.follow, args=(stop,), kwargs={"poll_s": 0.001})
    follower.start()
    try:
        with FileJournal(live / "journal", segment_bytes=16_384) as journal:
            for record in records:
                journal.append(record.first_seq - 1, record.first_seq, record.count,
                               record.payload)  # fmt: skip
        deadline = threading.Event()
        for _ in range(400):
            if model.position() == engine.seq:
                break
            deadline.wait(0.025)
    finally:
        stop.set()
        follower.join(30)
    assert model.position() == engine.seq
    assert fingerprint(model.url) == fingerprint(project(source).url)


def test_migrations_create_exactly_the_schema(tmp_path: Path) -> None:
    model = ReadModel(f"sqlite:///{tmp_path / 'm.sqlite'}")
    with model.db.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    ReadModel(model.url)  # a second upgrade is a no-op


def test_postgres_read_model_equals_sqlite(
    sample: tuple[Path, Engine], fresh_postgres: str
) -> None:
    data, engine = sample
    pg = project(data, fresh_postgres, chunk=3_000)
    assert pg.position() == engine.seq
    assert fingerprint(fresh_postgres) == fingerprint(project(data).url)


def test_postgres_columnar_batches_equal_sqlite(
    sample: tuple[Path, Engine], fresh_postgres: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every insert and per-row update through COPY (as at IPO scale), even tiny batches."""
    monkeypatch.setattr(db, "COPY_THRESHOLD", 1)
    data, _ = sample
    project(data, fresh_postgres, chunk=3_000)
    assert fingerprint(fresh_postgres) == fingerprint(project(data).url)
