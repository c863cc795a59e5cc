"""The node's client API (issue 12): a Unix socket (0600) by default, TCP only with the token
of a 0600 file; a client without the token is refused and nothing changes."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import pytest
from node.harness import (
    NodeRunner,
    close_client,
    connect,
    connect_tcp,
    query,
    setup_with_ids,
    submit,
)

from openbell.core import commands as c
from openbell.node.client import NodeClient, NodeError
from openbell.node.protocol import LENGTH, SubmitRequest, frame, request_encoder

ACCOUNT = 16


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def _set_up(client: NodeClient) -> None:
    for command in setup_with_ids(2, 10**6, 10**6):
        response = await submit(client, command)
        assert not response.error, response


async def _state(client: NodeClient) -> tuple[int, str, int]:
    answer = await query(client, "state_hash")
    balance = await query(client, "balance", account=ACCOUNT, asset="USD")
    return int(answer["seq"]), str(answer["state_hash"]), int(balance["available_minor"])


def test_files_are_private_and_the_socket_is_the_default(nodes: NodeRunner, tmp_path: Path) -> None:
    data = tmp_path / "data"
    node = nodes.run(data, "--no-tcp")
    assert node.startup is not None and node.startup.port == 0
    assert not (data / "node.port").exists() and not (data / "node.token").exists()
    assert stat.S_ISSOCK((data / "node.sock").stat().st_mode)
    assert _mode(data / "node.sock") == 0o600
    assert node.terminate() == 0
    assert not (data / "node.sock").exists()  # removed at a clean stop

    node = nodes.run(data)  # the harness adds --port 0: TCP with a token
    assert node.startup is not None and node.startup.port > 0
    for name in ("node.sock", "node.token", "node.port"):
        assert _mode(data / name) == 0o600, name
    token = (data / "node.token").read_text().strip()
    assert len(token) >= 32
    assert node.terminate() == 0
    node = nodes.run(data)
    assert (data / "node.token").read_text().strip() == token  # kept across restarts
    assert node.terminate() == 0


def test_a_tcp_client_without_the_token_is_refused_and_nothing_changes(
    nodes: NodeRunner, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    node = nodes.run(data)
    token = (data / "node.token").read_text().strip()
    deposit = c.Deposit(account=ACCOUNT, asset="USD", amount_minor=500, request_id="steal")

    async def run() -> None:
        owner = await connect(node)  # the Unix socket
        await _set_up(owner)
        before = await _state(owner)

        # no token: the first request is refused, the connection closed
        anonymous = await connect_tcp(node, None)
        answer = await asyncio.wait_for(anonymous.submit(deposit), 10)
        assert answer.error.startswith("UNAUTHORIZED"), answer
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(anonymous.submit(deposit), 10)
        await close_client(anonymous)

        # a wrong token
        with pytest.raises(NodeError, match="UNAUTHORIZED"):
            await connect_tcp(node, "0" * 64)

        # a raw peer that pipelines commands without any auth frame
        assert node.startup is not None
        raw = socket.create_connection(("127.0.0.1", node.startup.port), timeout=10)
        raw.sendall(
            b"".join(frame(request_encoder.encode(SubmitRequest(i, deposit))) for i in range(50))
        )
        header = raw.recv(LENGTH.size)
        assert len(header) == LENGTH.size
        raw.settimeout(10)
        rest = b""
        while chunk := raw.recv(65536):  # then the node closes the connection
            rest += chunk
        assert b"UNAUTHORIZED" in rest
        raw.close()

        # an oversized first frame is not buffered
        raw = socket.create_connection(("127.0.0.1", node.startup.port), timeout=10)
        raw.sendall(LENGTH.pack(60 << 20) + b"x" * 1024)
        raw.settimeout(10)
        assert b"UNAUTHORIZED" in raw.recv(65536)
        raw.close()

        assert await _state(owner) == before  # nothing changed: no seq, no money

        # with the token it works, and the node counts it once
        trusted = await connect_tcp(node, token)
        response = await asyncio.wait_for(trusted.submit(deposit), 10)
        assert not response.error and response.seq == before[0] + 1
        await close_client(trusted)
        seq, _, balance = await _state(owner)
        assert (seq, balance) == (before[0] + 1, before[2] + 500)
        await close_client(owner)

    asyncio.run(run())
    assert node.terminate() == 0


def test_connect_data_dir_uses_the_port_and_token_without_a_socket(
    nodes: NodeRunner, tmp_path: Path
) -> None:
    """A client that cannot see the socket file (only node.port and node.token) still gets in
    with the token: whichever the node offers."""
    data = tmp_path / "data"
    node = nodes.run(data)

    async def run() -> None:
        os.rename(data / "node.sock", data / "hidden.sock")
        try:
            client = await NodeClient.connect_data_dir(data)
            assert (await query(client, "status"))["seq"] == 0
            await close_client(client)
        finally:
            os.rename(data / "hidden.sock", data / "node.sock")

    asyncio.run(run())
    assert node.terminate() == 0


def test_a_token_file_others_may_read_stops_the_start(nodes: NodeRunner, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    token = data / "node.token"
    token.write_text("a" * 64 + "\n")
    token.chmod(0o644)
    node = nodes.start(data)
    assert node.wait_exit() == 2
    assert "others may read it" in node.stderr()
    assert "listening" not in node.stdout()


def test_a_killed_nodes_stale_socket_is_replaced(nodes: NodeRunner, tmp_path: Path) -> None:
    data = tmp_path / "data"
    node = nodes.run(data, "--no-tcp")
    node.kill()  # not kill_and_wait: that also removes the socket file
    node.process.wait(timeout=30)
    assert stat.S_ISSOCK((data / "node.sock").stat().st_mode)  # left behind, nobody listening

    async def refused() -> None:
        with pytest.raises(OSError):
            await NodeClient.connect_data_dir(data)

    asyncio.run(refused())
    node = nodes.run(data, "--no-tcp")

    async def works() -> None:
        client = await connect(node)
        assert (await query(client, "status"))["seq"] == 0
        await close_client(client)

    asyncio.run(works())
    assert node.terminate() == 0
