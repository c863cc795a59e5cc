"""Database plumbing shared by the read model and the audit table: engines, URLs, bulk writes.

SQLite (the default, a file in the node's data directory) runs in WAL mode with
``synchronous=NORMAL``: a crash may lose the last committed transactions, never half of one,
and the projector's position is in the same transaction as its rows, so it simply re-applies
them. PostgreSQL through psycopg 3; batches above ``COPY_THRESHOLD`` rows are loaded with COPY.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

COPY_THRESHOLD = 2_000
READ_MODEL_FILE = "readmodel.sqlite"


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{Path(data_dir) / READ_MODEL_FILE}"


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy's default would be psycopg2)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _executemany(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """executemany on the DB-API cursor of the connection's transaction (no per-row overhead)."""
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(sql, rows)
    finally:
        cursor.close()


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def placeholders(conn: Connection, count: int) -> str:
    mark = "%s" if is_postgres(conn) else "?"
    return ", ".join([mark] * count)


def insert_rows(
    conn: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert many rows: COPY on PostgreSQL for big batches, executemany otherwise."""
    if not rows:
        return
    if is_postgres(conn) and len(rows) >= COPY_THRESHOLD:
        raw = conn.connection.driver_connection
        assert raw is not None
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders(conn, len(columns))})"
    _executemany(conn, sql, rows)


def upsert_rows(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    """INSERT ... ON CONFLICT (key) DO UPDATE SET every other column (SQLite and PostgreSQL)."""
    if not rows:
        return
    updates = ", ".join(f"{col} = excluded.{col}" for col in columns if col not in key)
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders(conn, len(columns))}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )
    _executemany(conn, sql, rows)


def execute_many(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run ``sql`` written with ``?`` placeholders once per row (translated for PostgreSQL)."""
    if not rows:
        return
    if is_postgres(conn):
        sql = sql.replace("?", "%s")
    _executemany(conn, sql, rows)


def update_rows(
    conn: Connection,
    table: str,
    key: Sequence[str],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    """``UPDATE table SET columns WHERE key`` for each row (the columns' values, then the
    key's). On PostgreSQL a big batch is one COPY into a temporary table and one
    ``UPDATE ... FROM`` (columnar, not row by row)."""
    if not rows:
        return
    if is_postgres(conn) and len(rows) >= COPY_THRESHOLD:
        temp = f"update_{table}"
        names = [*columns, *key]
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE {temp} AS SELECT {', '.join(names)} FROM {table} WITH NO DATA"
        )
        insert_rows(conn, temp, names, rows)
        sets = ", ".join(f"{col} = {temp}.{col}" for col in columns)
        match = " AND ".join(f"{table}.{col} = {temp}.{col}" for col in key)
        conn.exec_driver_sql(f"UPDATE {table} SET {sets} FROM {temp} WHERE {match}")
        conn.exec_driver_sql(f"DROP TABLE {temp}")
        return
    sets = ", ".join(f"{col} = ?" for col in columns)
    match = " AND ".join(f"{col} = ?" for col in key)
    execute_many(conn, f"UPDATE {table} SET {sets} WHERE {match}", rows)
