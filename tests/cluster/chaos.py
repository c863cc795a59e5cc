"""The chaos suite's load and checker: real processes (3 nats-server, 3 OpenBell nodes).

The load submits deposits, each with its own request id, through ``ClusterClient`` (which
finds the leader and retries across failovers). The checker records every acknowledged
command and verifies, after every fault, from the stream itself:

- nothing acknowledged is lost (its request id is in the stream, at the seq it was acked);
- nothing is applied twice (replaying the stream, each request id changes the state once);
- every replica's state hash equals the leader's (checkpoint hashes agree per seq, and the
  leader's live hash equals the replayed stream's);
- no two nodes ever appended in the same epoch.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats.js.errors

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine, EngineConfig
from openbell.journal.nats import NatsJournal, retry_api
from openbell.node.cluster import Cluster, ClusterClient
from openbell.node.codec import decode_batch
from openbell.node.replica import Checkpoint

ASSET = "USD"
ACCOUNTS = 8
FIRST_ACCOUNT = 16


@dataclass
class Tally:
    faults: Counter[str] = field(default_factory=Counter)
    acked: int = 0
    checks: int = 0
    rto_s: list[float] = field(default_factory=list)


class Load:
    """``workers`` tasks submitting deposits as fast as the cluster answers."""

    def __init__(self, client: ClusterClient, workers: int = 4) -> None:
        self.client = client
        self.workers = workers
        self.acked: dict[str, int] = {}  # request id -> seq
        self.ack_times: list[float] = []
        self._ids = itertools.count(1)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.prefix = f"L{time.monotonic_ns()}"

    async def setup(self) -> None:
        await self.client.submit(c.CreateAsset(asset=ASSET, scale=2, request_id="setup-asset"))
        await self.client.submit(c.OpenAccounts(count=ACCOUNTS, request_id="setup-accounts"))

    async def _worker(self) -> None:
        while not self._stop.is_set():
            n = next(self._ids)
            request_id = f"{self.prefix}-{n}"
            command = c.Deposit(
                account=FIRST_ACCOUNT + n % ACCOUNTS,
                asset=ASSET,
                amount_minor=1 + n % 7,
                request_id=request_id,
            )
            response = await self.client.submit(command)
            assert not response.error, response.error
            events = response.events or []
            if events and type(events[0]) is e.DuplicateRequest:
                seq = events[0].original_seq
            else:
                seq = response.seq
            self.acked[request_id] = seq
            self.ack_times.append(time.monotonic())

    def start(self) -> None:
        self._stop.clear()
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), 90)
        self._tasks = []

    def stall_after(self, since: float) -> float:
        """The longest time without any acknowledgement from just before ``since`` to the
        last ack (a fault's stall: acknowledgements already on the wire do not hide it)."""
        times = sorted(t for t in self.ack_times if t > since - 0.2)
        if not times or times[-1] <= since:
            return float("inf")
        return max(later - earlier for earlier, later in itertools.pairwise(times))


def leader_of(cluster: Cluster, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # a deposed leader may still think it leads for a moment: the newest epoch leads
        leaders = [
            (int(status.get("epoch", 0)), name)
            for name, status in cluster.node_status().items()
            if status.get("role") == "leader"
        ]
        if leaders:
            return max(leaders)[1]
        time.sleep(0.05)
    raise TimeoutError("no leader")


def wait_exit(cluster: Cluster, name: str, pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    process = cluster.nodes[name]
    while time.monotonic() < deadline:
        if process.pid != pid or process.poll() is not None:
            return True
        time.sleep(0.05)
    return False


def check(cluster: Cluster, load: Load, leader_hash: dict[str, Any], tally: Tally) -> None:
    """Every property of the module docstring, from the stream as NATS holds it now."""
    journal = NatsJournal(cluster.nats.urls, cluster.spec.stream, node="checker")
    try:
        entries = list(journal.entries(1, journal.refresh()[0]))
        # no two nodes appended in the same epoch; epoch records (each an atomic batch of
        # MAX_IN_FLIGHT messages, one claim) are unique and increasing
        writers: dict[int, set[str]] = {}
        epochs = [
            x.epoch
            for i, x in enumerate(entries)
            if x.is_epoch
            and not (i and entries[i - 1].is_epoch and entries[i - 1].epoch == x.epoch)
        ]
        assert epochs == sorted(set(epochs)), f"epoch records {epochs}"
        for entry in entries:
            writers.setdefault(entry.epoch, set()).add(entry.node)
        assert all(len(nodes) == 1 for nodes in writers.values()), writers
        # replay: request ids applied once; acknowledged ones at the seq they were acked at
        engine = Engine(EngineConfig())
        applied: Counter[str] = Counter()
        applied_at: dict[str, int] = {}
        for entry in entries:
            if entry.is_epoch:
                continue
            assert entry.first_seq == engine.seq + 1, "gap or overlap in the stream"
            batch = decode_batch(entry.payload)
            for offset, command in enumerate(batch.commands):
                seq = entry.first_seq + offset
                events = engine.apply(seq, batch.ts_ns, command)
                if events and type(events[0]) is not e.DuplicateRequest:
                    applied[command.request_id] += 1
                    applied_at[command.request_id] = seq
        twice = [rid for rid, n in applied.items() if n > 1]
        assert not twice, f"applied twice: {twice[:5]}"
        lost = [rid for rid in load.acked if rid not in applied]
        assert not lost, f"acknowledged but lost: {lost[:5]}"
        moved = [rid for rid, seq in load.acked.items() if applied_at[rid] != seq]
        assert not moved, f"acked at another seq: {moved[:5]}"
        # the leader's live state is the stream's state
        assert leader_hash["seq"] == engine.seq, (leader_hash, engine.seq)
        assert leader_hash["state_hash"] == engine.state_hash()
        # every node's checkpoint hash equals every other's at the same seq
        kv = journal.key_value(f"{cluster.spec.stream}_ckpt", ttl_s=3600.0)

        def get(key: str) -> bytes | None:
            try:
                entry = journal.loop.run(retry_api(kv.get, 30, key), 40)
            except nats.js.errors.KeyNotFoundError:
                return None
            return entry.value or b""

        assert get("halt") is None, "the venue was halted by a checkpoint mismatch"
        # The checkpoints are the ends of the batches that cross a multiple of N (the same for
        # every node: batch boundaries are in the stream); the newest 40 are compared here.
        every = cluster.spec.checkpoint_every
        crossing = [
            x.last_seq
            for x in entries
            if not x.is_epoch and x.last_seq // every > (x.first_seq - 1) // every
        ]
        by_seq: dict[int, set[str]] = {}
        nodes_by_seq: dict[int, set[str]] = {}
        for seq in crossing[-40:]:
            for node in cluster.spec.nodes:
                value = get(f"s{seq}.{node.name}")
                if value is None:
                    continue
                checkpoint = msgspec.json.decode(value, type=Checkpoint)
                by_seq.setdefault(seq, set()).add(checkpoint.state_hash)
                nodes_by_seq.setdefault(seq, set()).add(checkpoint.node)
        assert all(len(hashes) == 1 for hashes in by_seq.values()), by_seq
        if tally.checks >= 1:  # from the second check on, standbys have long been hot
            assert any(len(nodes) >= 2 for nodes in nodes_by_seq.values()), nodes_by_seq
        tally.checks += 1
        tally.acked = len(load.acked)
    finally:
        journal.close()


async def quiesce_and_check(cluster: Cluster, load: Load, tally: Tally) -> None:
    await load.stop()
    leader_hash = await load.client.query("state_hash")
    await asyncio.get_running_loop().run_in_executor(None, check, cluster, load, leader_hash, tally)


async def fault_leader_kill(cluster: Cluster, load: Load, tally: Tally) -> None:
    load.start()
    await asyncio.sleep(0.7)
    leader = leader_of(cluster)
    killed_at = time.monotonic()
    cluster.kill_node(leader, signal.SIGKILL)
    while load.stall_after(killed_at) == float("inf") and time.monotonic() - killed_at < 30:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    tally.rto_s.append(load.stall_after(killed_at))
    tally.faults["leader_kill"] += 1
    await asyncio.sleep(0.3)
    await quiesce_and_check(cluster, load, tally)


async def fault_zombie(cluster: Cluster, load: Load, tally: Tally) -> None:
    load.start()
    await asyncio.sleep(0.5)
    leader = leader_of(cluster)
    pid = cluster.node_pid(leader)
    cluster.kill_node(leader, signal.SIGSTOP)
    await asyncio.sleep(cluster.spec.ttl_s * 2.5)  # beyond the lease: a successor serves
    cluster.kill_node(leader, signal.SIGCONT)
    # The zombie must notice (lease renewal refused, or its append fenced) and step down.
    exited = await asyncio.get_running_loop().run_in_executor(
        None, wait_exit, cluster, leader, pid, 20.0
    )
    assert exited, "the zombie leader did not step down"
    tally.faults["zombie"] += 1
    await asyncio.sleep(0.3)
    await quiesce_and_check(cluster, load, tally)


async def fault_nats_kill(cluster: Cluster, load: Load, tally: Tally, index: int = 0) -> float:
    load.start()
    await asyncio.sleep(0.5)
    names = [s.name for s in cluster.spec.nats.servers]
    victim = names[index % len(names)]
    killed_at = time.monotonic()
    cluster.nats.kill(victim, signal.SIGKILL)
    await asyncio.sleep(1.0)
    cluster.nats.start_server(victim)
    await asyncio.sleep(1.0)
    stall = load.stall_after(killed_at)
    tally.faults["nats_kill"] += 1
    await quiesce_and_check(cluster, load, tally)
    return stall


async def fault_standby_kill(cluster: Cluster, load: Load, tally: Tally) -> None:
    load.start()
    await asyncio.sleep(0.5)
    leader = leader_of(cluster)
    standby = next(n.name for n in cluster.spec.nodes if n.name != leader)
    cluster.kill_node(standby, signal.SIGKILL)
    await asyncio.sleep(1.0)
    tally.faults["standby_kill"] += 1
    await quiesce_and_check(cluster, load, tally)


async def fault_whole_restart(cluster: Cluster, load: Load, tally: Tally) -> None:
    load.start()
    await asyncio.sleep(0.5)
    await load.stop()
    for node in cluster.spec.nodes:
        cluster.kill_node(node.name, signal.SIGKILL)
    for server in cluster.spec.nats.servers:
        cluster.nats.kill(server.name, signal.SIGKILL)
    cluster.nats.start()  # the supervisor starts the nodes again
    load.start()
    await asyncio.sleep(1.5)
    tally.faults["whole_restart"] += 1
    await quiesce_and_check(cluster, load, tally)
