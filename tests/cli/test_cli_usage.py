"""The command line's small defects of issue 12 (6 and 7): mistakes are one-line usage errors
with exit status 2 (no traceback), journal verify prints a table or JSON, help shows no
"<bool>" nor literal double backticks, --version exists, keys list/create/revoke/rotate."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from node.harness import NodeRunner, close_client, connect, submit

from openbell.core import commands as c
from openbell.gateway.keys import load_keys
from openbell.journal.file import DEFAULT_SEGMENT_BYTES

REPO = Path(__file__).resolve().parents[2]


def openbell(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openbell.cli", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )  # fmt: skip


def assert_usage_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_mistakes_are_one_line_usage_errors(tmp_path: Path) -> None:
    assert_usage_error(openbell("keys", "create", "--data", tmp_path), "--account")
    assert_usage_error(
        openbell("keys", "create", "--data", tmp_path, "--role", "admin", "--account", "1"),
        "admin", "trader, operator, auditor",
    )  # fmt: skip
    assert_usage_error(openbell("keys", "revoke", "knope", "--data", tmp_path), "knope")
    assert_usage_error(openbell("replay", "/nonexistent"), "/nonexistent")
    assert_usage_error(openbell("journal", "verify", "/nonexistent"), "/nonexistent")
    assert_usage_error(openbell("journal", "verify", tmp_path), str(tmp_path))
    assert_usage_error(openbell("serve"), "--data")
    assert_usage_error(openbell("serve", "--demo", "--matching-only"), "--matching-only")
    assert_usage_error(openbell("serve", "--data", tmp_path, "--keep"), "--keep")
    assert_usage_error(openbell("admin", "deposit", "--account", "1", "--asset", "USD",
                                "--amount", "1"), "--data")  # fmt: skip
    assert_usage_error(openbell("admin", "phase", "ACME", "OPEN", "--data", tmp_path), "OPEN")
    assert load_keys(tmp_path) == {}  # nothing was created


def test_replay_full_on_a_pruned_journal_is_a_usage_error(
    nodes: NodeRunner, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    node = nodes.run(
        data, "--snapshot-every", "20", "--segment-bytes", "4096", "--keep-snapshots", "1"
    )

    async def fill() -> None:
        client = await connect(node)
        await submit(client, c.CreateAsset(asset="USD", scale=2))
        await submit(client, c.OpenAccounts(count=1))
        for i in range(300):
            response = await submit(client, c.Deposit(account=16, asset="USD", amount_minor=i + 1))
            assert not response.error
        await close_client(client)

    asyncio.run(fill())
    assert node.terminate() == 0
    assert_usage_error(openbell("replay", "--full", data), "pruned")
    result = openbell("replay", data)  # from the snapshot it works
    assert result.returncode == 0 and result.stdout.startswith("seq 302 state_hash ")

    table = openbell("journal", "verify", data)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0] == f"journal {data / 'journal'}: OK"
    assert any(line.split()[:2] == ["last", "seq"] and line.split()[-1] == "302"
               for line in table.stdout.splitlines())  # fmt: skip
    assert "{" not in table.stdout  # not a Python dict
    report = json.loads(openbell("journal", "verify", data, "--json").stdout)
    assert report["last_seq"] == 302 and report["first_seq"] > 1


def test_help_is_plain_and_version_exists() -> None:
    version = openbell("--version")
    assert version.returncode == 0 and version.stdout.startswith("openbell ")
    from typer.testing import CliRunner

    from openbell import cli

    cli._plain_docstrings(cli.app)  # what main() does before parsing
    runner = CliRunner()
    for command in (
        [], ["serve"], ["bench"], ["keys"], ["keys", "create"], ["admin"], ["admin", "instrument"],
        ["journal", "verify"], ["ipo"], ["ipo", "create"], ["demo"], ["replay"],
    ):  # fmt: skip
        result = runner.invoke(cli.app, [*command, "--help"], terminal_width=100)
        assert result.exit_code == 0, (command, result.output)
        assert "<bool>" not in result.output and "``" not in result.output, (command, result.output)
    serve_help = runner.invoke(cli.app, ["serve", "--help"], terminal_width=100).output
    for option in ("--segment-bytes", "--venue", "--keep", "--metrics-token-file", "--port"):
        assert option in serve_help


def test_the_cli_default_segment_size_is_the_journals() -> None:
    from openbell.cli import DEFAULT_SEGMENT_BYTES as CLI_DEFAULT

    assert CLI_DEFAULT == DEFAULT_SEGMENT_BYTES


def test_keys_list_create_revoke_rotate(tmp_path: Path) -> None:
    created = openbell(
        "keys", "create", "--data", tmp_path, "--role", "trader",
        "--account", "16", "--account", "17", "--rate", "5", "--burst", "7",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    key_id = created.stdout.split()[1]
    secret = created.stdout.split()[3]
    assert openbell("keys", "create", "--data", tmp_path, "--role", "operator").returncode == 0
    listed = openbell("keys", "list", "--data", tmp_path)
    assert listed.returncode == 0 and key_id in listed.stdout and secret not in listed.stdout
    rows = json.loads(openbell("keys", "list", "--data", tmp_path, "--json").stdout)
    mine = next(row for row in rows if row["key_id"] == key_id)
    assert (mine["role"], mine["accounts"], mine["rate_per_s"], mine["burst"]) == (
        "trader", [16, 17], 5.0, 7,
    )  # fmt: skip
    assert all("secret" not in name for row in rows for name in row)
    rotated = openbell("keys", "rotate", key_id, "--data", tmp_path, "--burst", "9")
    assert rotated.returncode == 0
    new_secret = rotated.stdout.split()[3]
    assert new_secret != secret and load_keys(tmp_path)[key_id].burst == 9
    assert (tmp_path / "gateway" / "keys.json").stat().st_mode & 0o077 == 0
    revoked = openbell("keys", "revoke", key_id, "--data", tmp_path)
    assert revoked.returncode == 0 and key_id not in load_keys(tmp_path)
    assert_usage_error(openbell("keys", "create", "--data", tmp_path, "--role", "auditor",
                                "--rate", "0"), "rate")  # fmt: skip


@pytest.mark.parametrize("flag", ["--json"])
def test_keys_list_of_an_empty_venue(tmp_path: Path, flag: str) -> None:
    assert openbell("keys", "list", "--data", tmp_path).stdout.strip() == "no keys"
    assert json.loads(openbell("keys", "list", "--data", tmp_path, flag).stdout) == []
