"""The back office: projections of the durable journal.

The journal holds commands; a projector (``projector.Projector``) reads its durable batches
(``source.FileJournalTail`` beside a running node, or any ``Journal`` such as the NATS one),
re-applies them to its own engine to obtain each command's events, and feeds its sinks. Each
sink stores its last applied seq together with its effects, so a crash (``kill -9`` included)
neither loses nor doubles anything:

- ``sql.ReadModel``: the SQL read model (SQLAlchemy 2 Core; SQLite ``DATA/readmodel.sqlite``
  by default, PostgreSQL at scale, Alembic migrations): accounts, balances, transfers, holds,
  orders with every state change, trades, fills, instruments, trading days, IPO offerings and
  subscriptions; the gateway's history endpoints read it (``openbell.gateway.history``);
- ``audit.AuditLog``: the hash-chained audit trail (file and SQL) with state-hash anchors;
  ``audit.verify`` recomputes it from the journal;
- ``bus.BusPublisher``: every event on NATS JetStream subjects, a command's events for one
  subject in one message (a JSON array), ``Nats-Msg-Id`` = seq/index of the first
  (``consumer_example`` shows the subjects from nats-py);
- ``olap``: Parquet per trading day and DuckDB daily reports.

Run it: ``python -m openbell.projections DATA --follow [--audit] [--bus URL] [--db URL]`` or
``openbell report project --data DATA --follow``.
"""
