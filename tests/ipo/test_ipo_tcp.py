"""`openbell ipo` over the node's TCP port: it must present the node's token (from
`--token-file`, or from the data dir), and without one it is refused before anything is sent."""

from __future__ import annotations

from pathlib import Path

from node.harness import NodeRunner
from typer.testing import CliRunner

from openbell.cli import app


def test_ipo_over_tcp_needs_the_node_token(nodes: NodeRunner, tmp_path: Path) -> None:
    data = tmp_path / "node"
    node = nodes.run(data)
    assert node.startup is not None and node.startup.port
    port = str(node.startup.port)
    close = ["close", "--symbol", "NOPE", "--port", port]

    run = CliRunner().invoke(app, ["ipo", *close])
    assert run.exit_code == 2 and "--token-file" in run.output, run.output

    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token\n")
    run = CliRunner().invoke(app, ["ipo", "--token-file", str(wrong), *close])
    assert run.exit_code != 0 and "no offering" not in run.output, run.output

    token = data / "node.token"
    run = CliRunner().invoke(app, ["ipo", "--token-file", str(token), *close])
    assert run.exit_code == 1 and "no offering 'NOPE'" in run.output, run.output
