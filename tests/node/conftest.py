"""Fixtures for the node tests: every node process a test starts is killed at teardown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import NodeRunner


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[NodeRunner]:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    runner = NodeRunner(log_dir)
    try:
        yield runner
    finally:
        runner.cleanup()
