"""Back office drills against a running node (real processes): the ledger's totals equal the
read model's on the sample venue (trades, fees, an IPO), and when a read-model row is altered,
reconciliation's zero-sum proof fails and ``recon run --halt-on-break`` halts the venue with a
diagnostic bundle."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from openbell.node.halt import HaltReason, read_bundle
from openbell.projections.runner import open_projector
from openbell.projections.sample import build_journal
from tests.node.harness import NodeRunner

CLI_TIMEOUT_S = 120


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openbell.cli", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def test_reconciliation_totals_that_are_not_zero_sum_halt_the_venue(
    tmp_path: Path, nodes: NodeRunner
) -> None:
    data = tmp_path / "data"
    last = build_journal(data, commands=800, seed=9).seq
    node = nodes.run(data)
    assert node.startup is not None and node.startup.seq == last
    projector = open_projector(data)
    try:
        assert projector.catch_up() == last
    finally:
        projector.close()
    # No false alarm on a venue with trades, fees, holds and an IPO.
    equal = _cli("check-read-model", "--data", str(data))
    assert equal.returncode == 0, equal.stdout + equal.stderr
    assert (
        _cli("recon", "generate", "--data", str(data), "--out", str(tmp_path / "files")).returncode
        == 0
    )
    run = ["recon", "run", "--data", str(data), "--halt-on-break",
           "--clearing", str(tmp_path / "files/clearing.csv"),
           "--bank", str(tmp_path / "files/bank.csv")]  # fmt: skip
    clean = _cli(*run)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "zero-sum per asset: OK" in clean.stdout and "venue halted" not in clean.stdout

    with sqlite3.connect(data / "readmodel.sqlite") as conn:  # a row altered by hand
        (asset,) = conn.execute(
            "SELECT asset FROM balances WHERE account >= 16 AND available_minor > 0 LIMIT 1"
        ).fetchone()
        conn.execute(
            "UPDATE balances SET available_minor = available_minor + 7 "
            "WHERE account = (SELECT MIN(account) FROM balances WHERE account >= 16 AND asset = ?) "
            "AND asset = ?",
            (asset, asset),
        )
    broken = _cli(*run)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"NOT ZERO: {asset}" in broken.stdout
    assert "venue halted (RECONCILIATION_MISMATCH)" in broken.stdout
    status = _cli("status", "--data", str(data))
    assert status.returncode == 1
    answer = json.loads(status.stdout)
    assert answer["halted"] == "RECONCILIATION_MISMATCH" and answer["seq"] == last
    bundle = read_bundle(Path(answer["bundle"]))
    assert bundle.reason is HaltReason.RECONCILIATION_MISMATCH
    assert f"{asset}: balances " in bundle.detail
    # The node sequenced nothing itself: its last commands come from the journal it recovered.
    assert bundle.seq == last and len(bundle.state_hash) == 64
    assert [b.seq for b in bundle.last_commands][-1] == last
    assert all(b.durable for b in bundle.last_commands) and len(bundle.last_commands) == 200
    assert node.terminate() == 1
