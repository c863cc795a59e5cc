"""Shared fixtures: ``nodes`` starts real node processes and kills every one at teardown
(the node, IPO and any other tests that need a running ``openbell serve``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from node.harness import NodeRunner


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[NodeRunner]:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    runner = NodeRunner(log_dir)
    try:
        yield runner
    finally:
        runner.cleanup()
