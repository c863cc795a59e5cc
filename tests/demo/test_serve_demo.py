"""``openbell serve --demo`` (what ``make run`` starts), defects 4 and 5 of issue 12: SIGTERM
and SIGINT stop it cleanly with its final snapshot (also when started in the background by a
script, where SIGINT starts out ignored), and its temporary data directory is printed and
removed at exit unless ``--keep``."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from cli.serving import REPO, STOPPED_LINE, Serve

DATA_LINE = re.compile(r"^data directory (\S+) \((removed|kept) at exit", re.MULTILINE)


def _replay(data: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "openbell.cli", "replay", str(data)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def _traded(serve: Serve, data: Path) -> None:
    """Wait until the flow has journaled something beyond the set-up."""
    serve.port()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if sum(f.stat().st_size for f in (data / "journal").glob("*.seg")) > 20_000:
            return
        time.sleep(0.1)
    raise AssertionError("the demo flow journaled nothing")


def test_sigterm_stops_the_demo_cleanly_and_removes_its_temp_dir(tmp_path: Path) -> None:
    serve = Serve(tmp_path, "--demo", "--http-port", "0")
    try:
        data = Path(serve.wait_for(DATA_LINE).group(1))
        assert serve.wait_for(DATA_LINE).group(2) == "removed"
        assert data.is_dir() and data.name.startswith("openbell-demo-")
        _traded(serve, data)
        assert serve.stop(signal.SIGTERM) == 0, serve.err()
        out = serve.out()
        assert STOPPED_LINE.search(out) and "final snapshot written" in out, out
        assert f"removed {data}" in out
        assert not data.exists()
    finally:
        serve.kill()


def test_sigint_with_keep_leaves_a_final_snapshot(tmp_path: Path) -> None:
    """Started the way a script starts a background job (SIGINT ignored), stopped by SIGINT."""
    serve = Serve(
        tmp_path, "--demo", "--http-port", "0", "--keep", "--seed", "3", ignore_sigint=True
    )
    data = None
    try:
        data = Path(serve.wait_for(DATA_LINE).group(1))
        assert serve.wait_for(DATA_LINE).group(2) == "kept"
        _traded(serve, data)
        assert serve.stop(signal.SIGINT) == 0, serve.err()
        stopped = STOPPED_LINE.search(serve.out())
        assert stopped is not None and "final snapshot written" in serve.out()
        seq = int(stopped.group(1))
        assert data.is_dir()  # --keep
        assert not (data / "node.sock").exists()
        replayed = _replay(data)
        assert replayed.startswith(f"seq {seq} ") and f"(snapshot {seq} + 0 replayed" in replayed
    finally:
        serve.kill()
        if data is not None:
            shutil.rmtree(data, ignore_errors=True)
