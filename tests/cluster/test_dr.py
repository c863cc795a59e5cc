"""The second site: the stream's mirror in another NATS cluster (its own JetStream domain),
promoted to primary after the whole primary site is killed; the venue goes on from it with
nothing acknowledged lost (the mirror had caught up: the async mirror's RPO under load is
measured by bench/cluster_bench.py)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import msgspec
import pytest

from openbell.journal.nats import NatsJournal
from openbell.node.cluster import Cluster, ClusterClient, make_cluster_spec, promote_dr
from openbell.node.dr import mirror_state

from .chaos import Load, Tally, quiesce_and_check


def _wait_mirrored(cluster: Cluster, timeout_s: float = 30.0) -> int:
    assert cluster.dr_nats is not None
    with NatsJournal(cluster.nats.urls, cluster.spec.stream, node="probe") as journal:
        primary_seq, _ = journal.refresh()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        mirrored, _lag = mirror_state(cluster.dr_nats.urls, cluster.spec.stream)
        if mirrored >= primary_seq:
            return mirrored
        time.sleep(0.2)
    raise TimeoutError(f"the mirror did not reach stream seq {primary_seq}")


@pytest.mark.timeout(240)
def test_promote_the_second_site_after_losing_the_first(tmp_path: Path) -> None:
    root = tmp_path / "cluster"
    spec = make_cluster_spec(root, ttl_s=1.5, checkpoint_every=200, dr=True)
    primary = Cluster(msgspec.structs.replace(spec, prune=False))  # the checker replays all
    promoted: Cluster | None = None
    tally = Tally()
    try:
        primary.start(supervise=True)
        load = Load(ClusterClient(primary.data_dirs, request_timeout_s=2.0, deadline_s=60.0))

        async def before() -> None:
            await asyncio.wait_for(load.setup(), 90)
            load.start()
            await asyncio.sleep(1.5)
            await load.stop()
            await load.client.close()

        asyncio.run(before())
        acked_before = len(load.acked)
        assert acked_before > 0
        mirrored = _wait_mirrored(primary)
        # The disaster: every process of the primary site dies at once.
        primary.stop_supervising()
        for node in primary.spec.nodes:
            primary.kill_node(node.name, signal.SIGKILL)
        for server in primary.spec.nats.servers:
            primary.nats.kill(server.name, signal.SIGKILL)
        assert promote_dr(root) == mirrored
        assert primary.dr_nats is not None
        primary.dr_nats.stop()  # `openbell cluster up` starts it again as the primary site
        promoted = Cluster.load(root)
        assert promoted.spec.dr is None and promoted.spec.nats.domain == "dr"
        promoted.start(supervise=True)
        load.client = ClusterClient(promoted.data_dirs, request_timeout_s=2.0, deadline_s=90.0)

        async def after(cluster: Cluster) -> None:
            load.start()
            await asyncio.sleep(1.5)
            await quiesce_and_check(cluster, load, tally)
            await load.client.close()

        asyncio.run(after(promoted))
        assert tally.checks == 1
        assert len(load.acked) > acked_before
    finally:
        if promoted is not None:
            promoted.stop()
        primary.stop()
