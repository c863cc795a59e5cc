"""Stream pruning: after a snapshot the leader purges the stream up to what the oldest kept
snapshot, every live standby and the mirror still need; a node killed afterwards boots from
the snapshot plus the pruned stream's tail and agrees with the leader again."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from nats.js.errors import NoKeysError

from openbell.journal.nats import NatsJournal
from openbell.node.cluster import Cluster, ClusterClient, make_cluster_spec
from openbell.node.prune import PruneTarget, prune_target
from openbell.node.replica import Position

from .chaos import Load, leader_of

NOW_NS = 1_000_000 * 10**9


def _position(node: str, seq: int, age_s: float) -> Position:
    return Position(node, seq, NOW_NS - int(age_s * 1e9))


def test_nothing_goes_before_the_first_snapshot() -> None:
    assert prune_target([], {"ob2": _position("ob2", 900, 0)}, NOW_NS) is None


def test_the_oldest_kept_snapshot_bounds_the_purge() -> None:
    target = prune_target([4_000, 6_000], {"ob2": _position("ob2", 9_000, 0.5)}, NOW_NS)
    assert target == PruneTarget(4_001, None, "oldest snapshot 4000")


def test_a_live_standby_behind_the_snapshot_holds_the_stream() -> None:
    positions = {"ob2": _position("ob2", 9_000, 0.5), "ob3": _position("ob3", 2_500, 3.0)}
    target = prune_target([4_000, 6_000], positions, NOW_NS)
    assert target is not None and target.before_seq == 2_501
    assert "ob3" in target.reason


def test_a_standby_silent_past_the_window_is_not_waited_for() -> None:
    positions = {"ob3": _position("ob3", 100, 60.0)}
    target = prune_target([4_000], positions, NOW_NS, live_s=15.0)
    assert target is not None and target.before_seq == 4_001


def test_the_mirror_keeps_what_it_has_not_copied() -> None:
    target = prune_target([4_000], {}, NOW_NS, mirrored_stream_seq=37)
    assert target == PruneTarget(4_001, 38, "oldest snapshot 4000")


# -- on a real cluster ------------------------------------------------------------------------

SNAPSHOT_EVERY = 1_500


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    spec = make_cluster_spec(tmp_path / "c", ttl_s=1.5, checkpoint_every=200)
    spec = msgspec.structs.replace(spec, snapshot_every=SNAPSHOT_EVERY, prune=True)
    running = Cluster(spec)
    try:
        running.start(supervise=True)
        yield running
    finally:
        running.stop()


def _stream(cluster: Cluster) -> tuple[int, int, list[int]]:
    """(first command seq held, last command seq, snapshot seqs in the object store)."""
    journal = NatsJournal(cluster.nats.urls, cluster.spec.stream, node="probe")
    try:
        return journal.first_seq(), journal.refresh()[1], journal.snapshot_seqs()
    finally:
        journal.close()


def _wait_seq(cluster: Cluster, name: str, seq: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = cluster.node_status().get(name, {})
        if status.get("role") != "down" and int(status.get("seq", -1)) >= seq:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{name} did not reach seq {seq}: {cluster.node_status()}")


def _checkpoints(cluster: Cluster, name: str) -> dict[int, str]:
    """The state hashes ``name`` published at checkpoints: seq -> hash."""
    journal = NatsJournal(cluster.nats.urls, cluster.spec.stream, node="probe")
    try:
        kv = journal.key_value(f"{cluster.spec.stream}_ckpt", ttl_s=3600.0)
        try:
            keys = journal.loop.run(kv.keys(), 30)
        except NoKeysError:  # none published (yet): the caller waits for them
            keys = []
        out: dict[int, str] = {}
        for key in keys:
            if key.startswith("s") and key.endswith(f".{name}"):
                entry = journal.loop.run(kv.get(key), 10)
                out[int(key[1:].split(".")[0])] = msgspec.json.decode(entry.value)["state_hash"]
        return out
    finally:
        journal.close()


@pytest.mark.timeout(240)
def test_pruned_stream_still_boots_a_killed_standby(cluster: Cluster) -> None:
    async def scenario() -> tuple[int, int, list[int], str, str]:
        client = ClusterClient(cluster.data_dirs, request_timeout_s=2.0, deadline_s=60.0)
        load = Load(client)
        try:
            await asyncio.wait_for(load.setup(), 90)
            load.start()
            deadline = time.monotonic() + 90
            while True:
                await asyncio.sleep(1.0)
                first, last, snapshots = _stream(cluster)
                if first > 1 and len(snapshots) >= 2:
                    break
                assert time.monotonic() < deadline, f"never pruned: {first} {snapshots}"
            await load.stop()
            first, last, snapshots = _stream(cluster)
            leader = leader_of(cluster)
            victim = next(n.name for n in cluster.spec.nodes if n.name != leader)
            await asyncio.to_thread(_wait_seq, cluster, victim, last, 60)  # a standby, up
            cluster.kill_node(victim, signal.SIGKILL)  # the supervisor starts it again
            await asyncio.to_thread(_wait_seq, cluster, victim, last, 60)
            load.start()  # more checkpoints, now with the restarted standby among the peers
            await asyncio.sleep(3.0)
            await load.stop()
            return first, last, snapshots, leader, victim
        finally:
            await client.close()

    first, last, snapshots, leader, victim = asyncio.run(scenario())
    assert 1 < first <= min(snapshots) + 1, (first, snapshots)
    log = (Path(cluster.spec.root) / victim / "node.log").read_text()
    restarted = log.rsplit("standby from stream seq", 1)[1].split()[0]
    assert log.count("standby from stream seq") >= 2
    assert int(restarted) > 1, "the restarted standby did not boot from a snapshot"
    deadline = time.monotonic() + 30
    while True:  # the restarted standby's hashes equal the leader's at the same seqs
        ours, theirs = _checkpoints(cluster, victim), _checkpoints(cluster, leader)
        after = {seq for seq in ours if seq > last and seq in theirs}
        if after:
            break
        assert time.monotonic() < deadline, "no checkpoint of the restarted standby"
        time.sleep(0.5)
    assert all(ours[seq] == theirs[seq] for seq in after), (ours, theirs)
    assert not list(Path(cluster.spec.root).glob("*/diagnostic-*.json"))
