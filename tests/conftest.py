"""Shared fixtures: ``nodes`` starts real node processes and kills every one at teardown
(the node, IPO and any other tests that need a running ``openbell serve``).

Tests marked ``keep_artifacts`` (the crash tests) keep their temporary directory when they
fail: it is copied to ``test-artifacts/<test>-<time>/`` (git-ignored; sockets skipped), with
the node logs and data directories, so a failure that happens once in many runs can be read
after the fact.
"""

from __future__ import annotations

import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from node.harness import NodeRunner

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "keep_artifacts: copy the test's tmp_path to test-artifacts/ when it fails"
    )


def _skip_special(directory: str, names: list[str]) -> list[str]:
    """Sockets and other special files cannot be copied."""
    skipped = []
    for name in names:
        try:
            mode = (Path(directory) / name).lstat().st_mode
        except OSError:
            skipped.append(name)
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            skipped.append(name)
    return skipped


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    if item.get_closest_marker("keep_artifacts") is None:
        return
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if not isinstance(tmp_path, Path) or not tmp_path.exists():
        return
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in item.name)
    target = ARTIFACTS / f"{safe}-{time.strftime('%Y%m%dT%H%M%S')}"
    try:
        shutil.copytree(tmp_path, target, ignore=_skip_special, symlinks=True)
    except (OSError, shutil.Error) as error:
        report.sections.append(("artifacts", f"could not keep {tmp_path}: {error}"))
        return
    report.sections.append(("artifacts", f"kept {tmp_path} as {target}"))


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[NodeRunner]:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    runner = NodeRunner(log_dir)
    try:
        yield runner
    finally:
        runner.cleanup()
