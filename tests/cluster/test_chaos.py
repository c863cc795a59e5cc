"""Chaos under load on a real cluster (3 nats-server + 3 OpenBell node processes): the short
form runs in the default suite; the long form (``-m soak``) repeats the faults and prints the
checker's tallies."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from openbell.node.cluster import Cluster, ClusterClient, make_cluster_spec

from .chaos import (
    Load,
    Tally,
    fault_leader_kill,
    fault_nats_kill,
    fault_standby_kill,
    fault_whole_restart,
    fault_zombie,
)

TTL_S = 1.5


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    spec = make_cluster_spec(tmp_path / "cluster", ttl_s=TTL_S, checkpoint_every=200)
    # the checker replays the whole stream from seq 1: no pruning here (test_prune tests it)
    spec = msgspec.structs.replace(spec, prune=False)
    running = Cluster(spec)
    try:
        running.start(supervise=True)
        yield running
    finally:
        running.stop()


async def _run(cluster: Cluster, rounds: dict[str, int], tally: Tally) -> None:
    client = ClusterClient(cluster.data_dirs, request_timeout_s=2.0, deadline_s=60.0)
    load = Load(client)
    try:
        await asyncio.wait_for(load.setup(), 90)
        for index in range(max(rounds.values())):
            if index < rounds.get("leader_kill", 0):
                await fault_leader_kill(cluster, load, tally)
            if index < rounds.get("zombie", 0):
                await fault_zombie(cluster, load, tally)
            if index < rounds.get("nats_kill", 0):
                await fault_nats_kill(cluster, load, tally, index)
            if index < rounds.get("standby_kill", 0):
                await fault_standby_kill(cluster, load, tally)
            if index < rounds.get("whole_restart", 0):
                await fault_whole_restart(cluster, load, tally)
    finally:
        await client.close()


@pytest.mark.timeout(240)
def test_chaos_short(cluster: Cluster) -> None:
    tally = Tally()
    rounds = {"leader_kill": 1, "zombie": 1, "nats_kill": 1, "standby_kill": 1, "whole_restart": 1}
    asyncio.run(_run(cluster, rounds, tally))
    print(
        f"chaos short: {dict(tally.faults)}, {tally.acked} acked, {tally.checks} checks, "
        f"leader-kill RTO {tally.rto_s}"
    )
    assert tally.checks == 5
    assert sum(tally.faults.values()) == 5
    assert tally.acked > 0


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_chaos_long(cluster: Cluster) -> None:
    tally = Tally()
    rounds = {
        "leader_kill": 50,
        "zombie": 20,
        "nats_kill": 20,
        "standby_kill": 5,
        "whole_restart": 3,
    }
    asyncio.run(_run(cluster, rounds, tally))
    print(f"chaos long: faults {dict(tally.faults)}, {tally.acked} acked, {tally.checks} checks")
    assert tally.faults["leader_kill"] >= 50
    assert tally.faults["zombie"] >= 20
    assert tally.faults["nats_kill"] >= 20
