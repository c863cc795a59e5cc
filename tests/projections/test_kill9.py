"""Exactly once after kill -9: a projector process is killed at random points and restarted;
the read model ends with the same row counts and sums as a clean run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pj_helpers import fingerprint

from openbell.core.engine import Engine
from openbell.projections import db
from openbell.projections.audit import verify
from openbell.projections.projector import Projector
from openbell.projections.sample import build_journal
from openbell.projections.sql import ReadModel

KILLS = 4


@pytest.fixture(scope="module")
def bigger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Engine]:
    """A journal long enough for a projector to be killed in the middle of it."""
    data = tmp_path_factory.mktemp("kill9") / "data"
    return data, build_journal(data, commands=15_000, seed=3)


def _spawn(data: Path, url: str, chunk: int, audit: bool) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "openbell.projections", str(data), "--db", url,
         "--chunk", str(chunk), *(["--audit"] if audit else [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _position(url: str) -> int:
    try:
        return ReadModel(url, migrate=False).position()
    except Exception:  # the first run may not have created the tables yet
        return 0


def kill_and_restart(
    data: Path, url: str, engine: Engine, seed: int, audit: bool = False
) -> list[int]:
    """Kill -9 the projector ``KILLS`` times at random moments, then let it finish."""
    rng = random.Random(seed)
    positions: list[int] = []
    for _ in range(KILLS):
        process = _spawn(data, url, chunk=rng.choice((7, 13, 40)), audit=audit)
        deadline = time.monotonic() + 30
        before = _position(url)
        # wait until it has committed something past the previous kill, then a random extra
        while time.monotonic() < deadline and process.poll() is None:
            if _position(url) > before:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.1))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
        positions.append(_position(url))
    final = _spawn(data, url, chunk=50, audit=audit)
    assert final.wait(120) == 0
    assert _position(url) == engine.seq
    return positions


def test_kill9_of_the_projector_is_exactly_once(
    sample: tuple[Path, Engine], tmp_path: Path
) -> None:
    data, engine = sample
    url = f"sqlite:///{tmp_path / 'killed.sqlite'}"
    positions = kill_and_restart(data, url, engine, seed=11, audit=True)
    assert any(0 < p < engine.seq for p in positions), positions  # killed mid-way at least once
    clean = ReadModel(db.default_url(data))
    Projector(data, [clean]).catch_up()
    assert fingerprint(url) == fingerprint(clean.url)
    # the audit chain, written by the same killed processes: whole, once, and as recomputed
    report = verify(data, url)
    assert report.ok, report.tampered
    assert report.last_seq == engine.seq and report.entries == report.sql_entries
    assert fingerprint(url)["trades"][0] == engine.next_trade_id - 1


def test_kill9_with_postgres_is_exactly_once(
    bigger: tuple[Path, Engine], fresh_postgres: str, tmp_path: Path
) -> None:
    data, engine = bigger
    positions = kill_and_restart(data, fresh_postgres, engine, seed=5)
    assert any(0 < p < engine.seq for p in positions), positions
    clean = ReadModel(f"sqlite:///{tmp_path / 'clean.sqlite'}")
    Projector(data, [clean]).catch_up()
    assert fingerprint(fresh_postgres) == fingerprint(clean.url)
