"""``openbell cluster up`` starts the whole venue from one command; ``cluster status`` shows
the leader, each node's seq and lag; SIGTERM stops every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openbell.node.natsd import pid_alive

OPENBELL = [sys.executable, "-c", "from openbell.cli import main; main()"]


def _status(root: Path) -> str:
    result = subprocess.run(
        [*OPENBELL, "cluster", "status", "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.timeout(120)
def test_cluster_up_status_and_stop(tmp_path: Path) -> None:
    root = tmp_path / "venue"
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115 - the child's output
    up = subprocess.Popen(
        [*OPENBELL, "cluster", "up", "--root", str(root)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        status = ""
        while time.monotonic() < deadline:
            if (root / "cluster.json").exists():
                status = _status(root)
                if "leader" in status and status.count("standby") == 2:
                    break
            time.sleep(0.5)
        assert "stream OPENBELL" in status, status
        assert status.count("leader") == 1 and status.count("standby") == 2, status
        pids = [
            int(line.split("pid ")[1].split()[0]) for line in status.splitlines() if "pid" in line
        ]
        assert len(pids) == 3
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0
        assert not any(pid_alive(pid) for pid in pids)
        assert "cluster stopped" in (tmp_path / "up.log").read_text()
    finally:
        if up.poll() is None:  # a failure above: stop it the way a user does, then by force
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait(timeout=10)
        log.close()
