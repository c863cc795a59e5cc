"""``openbell report project``, ``recon generate | run | presettle`` and ``audit verify``:
options, output and exit codes (0 clean, 1 breaks or tampering, 2 bad input)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from openbell.cli import app
from openbell.projections.sample import IPO_SYMBOL, build_journal

runner = CliRunner()


def test_back_office_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    build_journal(data, commands=800, seed=9)
    done = runner.invoke(app, ["report", "project", "--data", str(data), "--audit"])
    assert done.exit_code == 0, done.output
    assert "projected to seq" in done.output

    clean = runner.invoke(app, ["recon", "generate", "--data", str(data), "--out",
                                str(tmp_path / "clean")])  # fmt: skip
    assert clean.exit_code == 0, clean.output
    run = ["recon", "run", "--data", str(data), "--clearing", str(tmp_path / "clean/clearing.csv"),
           "--bank", str(tmp_path / "clean/bank.csv")]  # fmt: skip
    ok = runner.invoke(app, run)
    assert ok.exit_code == 0, ok.output
    assert "0 breaks" in ok.output and "zero-sum per asset: OK" in ok.output

    faulty = runner.invoke(app, ["recon", "generate", "--data", str(data), "--out",
                                 str(tmp_path / "bad"), "--fault", "bank:duplicate:2",
                                 "--fault", "clearing:missing"])  # fmt: skip
    assert faulty.exit_code == 0 and faulty.output.count("injected") == 3
    bad_files = ["--clearing", str(tmp_path / "bad/clearing.csv"), "--bank",
                 str(tmp_path / "bad/bank.csv")]  # fmt: skip
    bad = runner.invoke(
        app, ["recon", "run", "--data", str(data), *bad_files, "--out", str(tmp_path / "rep")]
    )
    assert bad.exit_code == 1 and "DUPLICATE" in bad.output and "MISSING_IN_CLEARING" in bad.output
    assert (tmp_path / "rep/breaks.html").exists()
    wrong = runner.invoke(app, ["recon", "generate", "--data", str(data), "--out",
                                str(tmp_path / "x"), "--fault", "bank:lost"])  # fmt: skip
    assert wrong.exit_code == 2 and "unknown file or kind" in wrong.output
    missing = runner.invoke(app, [*run[:4], "--clearing", str(tmp_path / "nope.csv"), *run[6:]])
    assert missing.exit_code == 2

    presettle = runner.invoke(
        app,
        ["recon", "presettle", "--data", str(data), "--symbol", IPO_SYMBOL, "--bank",
         str(tmp_path / "clean/bank.csv")],
    )  # fmt: skip
    assert presettle.exit_code in (0, 1) and IPO_SYMBOL in presettle.output

    verified = runner.invoke(app, ["audit", "verify", "--data", str(data)])
    assert verified.exit_code == 0 and "OK" in verified.output, verified.output
    with sqlite3.connect(data / "readmodel.sqlite") as conn:
        conn.execute("UPDATE audit_log SET seq = seq + 1 WHERE idx = 5")
    tampered = runner.invoke(app, ["audit", "verify", "--data", str(data)])
    assert tampered.exit_code == 1
    assert "TAMPERED sql: entry 5" in tampered.output and "field seq" in tampered.output
