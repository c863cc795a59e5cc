"""Cluster benchmarks: the NATS JetStream journal (R3, fsync always) and failover.

- ``journal.nats_r3.*``: the journal's own figures (1,000 commands x 40 bytes a message, up to
  ``MAX_IN_FLIGHT`` appends in flight, as the sequencer's journal thread makes them): the max
  rate, and the acknowledgement latency with 100,000 commands/s offered; ``*_one_at_a_time``
  is the max rate waiting for each acknowledgement before the next append;
- ``cluster.nats_r3.*``: the sequencer and the engine on the NATS journal with the standard
  workload (engine-bound until the compiled core lands);
- ``failover.leader_kill.rto_s_p50|p99``: kill -9 of the leader under load, longest time
  without an acknowledgement (3 NATS + 3 node processes);
- ``failover.nats_kill.stall_s_p99``: kill -9 of one NATS server under load, the same measure;
- ``dr.mirror.rpo_ms_*``: the second site's asynchronous mirror, acknowledgement at the
  primary to arrival at the DR site, per message.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from openbell.core import commands as c
from openbell.core.engine import Engine
from openbell.core.events import Event
from openbell.journal.nats import MAX_IN_FLIGHT, Follower, NatsJournal
from openbell.node.cluster import Cluster, ClusterClient, make_cluster_spec
from openbell.node.codec import encode_batch
from openbell.node.dr import DR_DOMAIN, PRIMARY_DOMAIN, create_mirror
from openbell.node.natsd import NatsCluster, make_spec
from openbell.node.sequencer import Busy, Pending, Sequencer


def _noop(seq: int, events: list[Event] | None, error: str) -> None:
    pass


def bench_raw(
    journal: NatsJournal,
    appends: int,
    offered_cmd_per_s: int | None = None,
    in_flight: int = MAX_IN_FLIGHT,
) -> dict[str, float]:
    """Appends of 1,000 commands x 40 bytes with up to ``in_flight`` unacknowledged (as the
    sequencer's journal thread makes them; 1: each waits for the previous one's ack): as fast
    as they go, or paced at ``offered_cmd_per_s``. An append's latency runs from its send to
    the moment this thread sees it durable (it and every earlier one)."""
    payload = os.urandom(1000 * 40)
    latencies = np.empty(appends, dtype=np.float64)
    sent: deque[tuple[int, Future[int], float]] = deque()

    def settle(timeout_s: float | None = None) -> bool:
        index, future, t0 = sent[0]
        try:
            future.result(timeout_s)
        except TimeoutError:
            return False
        latencies[index] = (time.perf_counter() - t0) * 1000
        sent.popleft()
        return True

    last = journal.last_seq
    started = time.perf_counter()
    for index in range(appends):
        if offered_cmd_per_s is not None:
            slot = started + index * 1000 / offered_cmd_per_s
            while (pause := slot - time.perf_counter()) > 0:
                if not sent:
                    time.sleep(pause)
                else:
                    settle(pause)
        while sent and (sent[0][1].done() or len(sent) >= in_flight):
            settle()
        t0 = time.perf_counter()
        sent.append((index, journal.append_async(last, last + 1, 1000, payload), t0))
        last += 1000
    while sent:
        settle()
    seconds = time.perf_counter() - started
    return {
        "appends_per_s": appends / seconds,
        "cmd_per_s": appends * 1000 / seconds,
        "ack_ms_p50": float(np.percentile(latencies, 50)),
        "ack_ms_p99": float(np.percentile(latencies, 99)),
    }


def bench_sequencer_nats(
    journal: NatsJournal,
    setup: Sequence[c.Command],
    work: Sequence[c.Command],
    offered_per_s: int | None,
    seconds: float,
) -> dict[str, float]:
    """The sequencer on the NATS journal; ack = submit -> durable-and-applied."""
    engine = Engine()
    journal.append(0, 1, len(setup), encode_batch(0, setup))  # a fresh stream
    for i, command in enumerate(setup):
        engine.apply(i + 1, 0, command)
    latencies_ns: list[int] = []

    def on_durable(first_seq: int, batch: list[Pending], results: list[list[Event]]) -> None:
        now = time.perf_counter_ns()
        latencies_ns.extend([now - p.token for p in batch])

    sequencer = Sequencer(engine, journal, on_durable=on_durable, queue_capacity=50_000)
    sequencer.start()
    clock = time.perf_counter_ns
    start_ns = clock()
    deadline_ns = start_ns + int(seconds * 1e9)
    sent = 0
    total = len(work)
    while sent < total and clock() < deadline_ns:
        if offered_per_s is None:
            target = total
        else:
            target = min(total, (clock() - start_ns) * offered_per_s // 1_000_000_000 + 1)
        while sent < target:
            try:
                sequencer.submit(work[sent], _noop, clock())
            except Busy:
                time.sleep(0.0005)
                break
            sent += 1
        if offered_per_s is not None:
            time.sleep(0.0005)
    sequencer.stop()
    elapsed = (clock() - start_ns) / 1e9
    lat = np.array(latencies_ns, dtype=np.float64) / 1e6
    return {
        "cmd_per_s": len(latencies_ns) / elapsed,
        "ack_ms_p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "ack_ms_p99": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
    }


def bench_journal(
    setup: Sequence[c.Command], work: Sequence[c.Command], quick: bool
) -> dict[str, float]:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="openbell-nats-") as tmp:
        nats = NatsCluster(Path(tmp), make_spec("bench"))
        nats.start()
        try:
            # the journal's own figures (the journal.nats_r3.* keys)
            with NatsJournal(nats.urls, "BENCHRAW", node="bench") as journal:
                raw = bench_raw(journal, 200 if quick else 2000)
            results["journal.nats_r3.cmd_per_s_max"] = raw["cmd_per_s"]
            results["journal.nats_r3.appends_per_s_max"] = raw["appends_per_s"]
            results["journal.nats_r3.ack_ms_p50_at_max"] = raw["ack_ms_p50"]
            results["journal.nats_r3.ack_ms_p99_at_max"] = raw["ack_ms_p99"]
            with NatsJournal(nats.urls, "BENCHRAW100K", node="bench") as journal:
                raw = bench_raw(journal, 100 if quick else 500, 100_000)
            results["journal.nats_r3.ack_ms_p50_at_100k"] = raw["ack_ms_p50"]
            results["journal.nats_r3.ack_ms_p99_at_100k"] = raw["ack_ms_p99"]
            # one append at a time (each waits for the previous ack): what pipelining adds
            with NatsJournal(nats.urls, "BENCHRAW1", node="bench") as journal:
                raw = bench_raw(journal, 200 if quick else 2000, in_flight=1)
            results["journal.nats_r3.cmd_per_s_max_one_at_a_time"] = raw["cmd_per_s"]
            results["journal.nats_r3.ack_ms_p50_at_max_one_at_a_time"] = raw["ack_ms_p50"]
            # the sequencer and the engine on it (engine-bound until the compiled core lands)
            seconds = 1.0 if quick else 4.0
            with NatsJournal(nats.urls, "BENCHMAX", node="bench") as journal:
                r = bench_sequencer_nats(journal, setup, work, None, seconds)
            results["cluster.nats_r3.cmd_per_s_max"] = r["cmd_per_s"]
            results["cluster.nats_r3.ack_ms_p99_at_max"] = r["ack_ms_p99"]
            with NatsJournal(nats.urls, "BENCH100K", node="bench") as journal:
                r = bench_sequencer_nats(journal, setup, work, 100_000, seconds)
            results["cluster.nats_r3.cmd_per_s_at_100k"] = r["cmd_per_s"]
            results["cluster.nats_r3.ack_ms_p50_at_100k"] = r["ack_ms_p50"]
            results["cluster.nats_r3.ack_ms_p99_at_100k"] = r["ack_ms_p99"]
        finally:
            nats.stop()
    return results


async def _failovers(cluster: Cluster, leader_kills: int, nats_kills: int) -> dict[str, float]:
    client = ClusterClient(cluster.data_dirs, request_timeout_s=2.0, deadline_s=60.0)
    acks: list[float] = []
    ids = itertools.count(1)
    stop = asyncio.Event()

    async def worker() -> None:
        while not stop.is_set():
            n = next(ids)
            command = c.Deposit(account=16 + n % 4, asset="USD", amount_minor=1, request_id=f"b{n}")
            await client.submit(command)
            acks.append(time.monotonic())

    def stall(since: float) -> float:
        times = sorted(t for t in acks if t > since - 0.2)
        return max((b - a for a, b in itertools.pairwise(times)), default=float("inf"))

    await client.submit(c.CreateAsset(asset="USD", scale=2, request_id="setup-asset"))
    await client.submit(c.OpenAccounts(count=4, request_id="setup-accounts"))
    tasks = [asyncio.create_task(worker()) for _ in range(4)]
    rto: list[float] = []
    stalls: list[float] = []
    try:
        for _ in range(leader_kills):
            await asyncio.sleep(1.0)
            leaders = [
                (int(s.get("epoch", 0)), n)
                for n, s in cluster.node_status().items()
                if s.get("role") == "leader"
            ]
            if not leaders:
                continue
            leader = max(leaders)[1]
            killed = time.monotonic()
            cluster.kill_node(leader, signal.SIGKILL)
            await asyncio.sleep(6.0)
            rto.append(stall(killed))
        for index in range(nats_kills):
            await asyncio.sleep(1.0)
            victim = cluster.spec.nats.servers[index % len(cluster.spec.nats.servers)].name
            killed = time.monotonic()
            cluster.nats.kill(victim, signal.SIGKILL)
            await asyncio.sleep(2.0)
            cluster.nats.start_server(victim)
            await asyncio.sleep(8.0)
            stalls.append(stall(killed))
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        await client.close()
    out: dict[str, float] = {}
    if rto:
        out["failover.leader_kill.rto_s_p50"] = float(np.percentile(rto, 50))
        out["failover.leader_kill.rto_s_p99"] = float(np.percentile(rto, 99))
        out["failover.leader_kill.samples"] = float(len(rto))
    if stalls:
        out["failover.nats_kill.stall_s_p99"] = float(np.percentile(stalls, 99))
        out["failover.nats_kill.samples"] = float(len(stalls))
    return out


def bench_failover(quick: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="openbell-cluster-") as tmp:
        cluster = Cluster(make_cluster_spec(Path(tmp), ttl_s=1.5, checkpoint_every=5_000))
        cluster.start(supervise=True)
        try:
            return asyncio.run(_failovers(cluster, 2 if quick else 10, 1 if quick else 5))
        finally:
            cluster.stop()


def bench_dr(quick: bool) -> dict[str, float]:
    """The second site's asynchronous mirror: for every message, the time from its
    acknowledgement at the primary to its arrival at the DR site (what a disaster at that
    moment would lose), under a steady append load."""
    seconds = 2.0 if quick else 10.0
    with tempfile.TemporaryDirectory(prefix="openbell-dr-") as tmp:
        primary = NatsCluster(
            Path(tmp) / "primary", make_spec("p", domain=PRIMARY_DOMAIN, leaf_listen=True)
        )
        primary.start()
        second = NatsCluster(
            Path(tmp) / "dr",
            make_spec("d", prefix="d", domain=DR_DOMAIN, leaf_remotes=primary.spec.leaf_urls()),
        )
        second.start()
        try:
            writer = NatsJournal(primary.urls, "DRBENCH", node="bench")
            create_mirror(second.urls, "DRBENCH")
            reader = NatsJournal(second.urls, "DRBENCH", node="reader")
            acked: dict[int, float] = {}
            arrived: dict[int, float] = {}
            done = threading.Event()

            def follow() -> None:
                follower = Follower(reader, 1)
                try:
                    while not (done.is_set() and len(arrived) >= len(acked)):
                        for entry in follower.next_entries(timeout_s=0.2):
                            arrived[entry.stream_seq] = time.perf_counter()
                finally:
                    follower.close()

            thread = threading.Thread(target=follow, daemon=True)
            thread.start()
            payload = os.urandom(1000 * 40)
            warm_until = time.perf_counter() + 1.0  # the mirror's first connection is not RPO
            deadline = warm_until + seconds
            while time.perf_counter() < deadline:
                last = writer.last_seq
                writer.append(last, last + 1, 1000, payload)
                acked[writer.stream_seq] = time.perf_counter()
                time.sleep(0.002)  # a steady ~400 batches/s, not a flood
            done.set()
            thread.join(timeout=60)
            writer.close()
            reader.close()
        finally:
            second.stop()
            primary.stop()
    lags_ms = [
        (arrived[seq] - t) * 1000 for seq, t in acked.items() if seq in arrived and t > warm_until
    ]
    return {
        "dr.mirror.rpo_ms_p50": float(np.percentile(lags_ms, 50)),
        "dr.mirror.rpo_ms_p99": float(np.percentile(lags_ms, 99)),
        "dr.mirror.rpo_ms_max": float(max(lags_ms)),
        "dr.mirror.messages": float(len(lags_ms)),
    }


def run_all(setup: Sequence[c.Command], work: Sequence[c.Command], quick: bool) -> dict[str, float]:
    results = bench_journal(setup, work, quick)
    results.update(bench_failover(quick))
    results.update(bench_dr(quick))
    return results


if __name__ == "__main__":
    from bench.workload_cache import load

    quick_run = os.environ.get("OPENBELL_BENCH_QUICK") == "1"
    standard_setup, standard_work = load(20_000 if quick_run else 400_000)
    for key, value in run_all(standard_setup, standard_work, quick_run).items():
        print(f"{key:>44}: {value:,.3f}")
