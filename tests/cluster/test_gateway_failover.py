"""The HTTP gateway and the demo on the cluster (real processes: 3 nats-server, 3 OpenBell
nodes, 3 gateways): orders go through a gateway while the demo's flow trades, the leader is
killed with SIGKILL, the same gateway keeps answering after the failover, and the stream
holds every acknowledged order exactly once, at the seq it was acknowledged with."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openbell.core import events as e
from openbell.core.engine import Engine, EngineConfig
from openbell.gateway.client import AsyncClient, GatewayError
from openbell.gateway.demo import YOUR_ACCOUNT
from openbell.gateway.keys import create_key
from openbell.journal.nats import NatsJournal
from openbell.node.cluster import Cluster, make_cluster_spec
from openbell.node.codec import decode_batch

from .chaos import leader_of

TTL_S = 1.5
WORKERS = 4
LOAD_BEFORE_KILL_S = 1.5
LOAD_AFTER_RESUME_S = 1.5
RESUME_LIMIT_S = 15.0  # the failover must cost clients less than this


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    spec = make_cluster_spec(tmp_path / "c", ttl_s=TTL_S, checkpoint_every=500, demo_seed=7)
    running = Cluster(spec)
    try:
        running.start(supervise=True)
        running.wait_gateways(90)
        yield running
    finally:
        running.stop()


class Orders:
    """``WORKERS`` tasks placing orders, each with its own request id, through one gateway."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.acked: dict[str, int] = {}  # request id -> seq the gateway answered
        self.duplicates = 0
        self.errors: list[str] = []
        self.ack_times: list[float] = []
        self._ids = itertools.count(1)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _worker(self) -> None:
        while not self._stop.is_set():
            request_id = f"o{next(self._ids)}"
            try:
                answer = await self.client.place_order(
                    account=YOUR_ACCOUNT, symbol="ACME", side="BUY", quantity="1",
                    price="95.00", request_id=request_id, client_order_id=request_id,
                )  # fmt: skip
                seq = int(answer["seq"])
                self.duplicates += bool(answer["duplicate"])
            except GatewayError as error:
                if error.status != 422:  # an engine reject is durable: acknowledged too
                    self.errors.append(f"{request_id}: {error}")
                    continue
                seq = int(error.body["seq"])
            self.acked[request_id] = seq
            self.ack_times.append(time.monotonic())

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(WORKERS)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), 90)

    def acks_after(self, moment: float) -> int:
        return sum(1 for t in self.ack_times if t > moment)


def applied_request_ids(cluster: Cluster) -> tuple[Counter[str], dict[str, int]]:
    """Replaying the stream: how often each request id changed the state, and at which seq."""
    journal = NatsJournal(cluster.nats.urls, cluster.spec.stream, node="checker")
    try:
        engine = Engine(EngineConfig())
        applied: Counter[str] = Counter()
        applied_at: dict[str, int] = {}
        for entry in journal.entries(1, journal.refresh()[0]):
            if entry.is_epoch:
                continue
            assert entry.first_seq == engine.seq + 1, "gap or overlap in the stream"
            batch = decode_batch(entry.payload)
            for offset, command in enumerate(batch.commands):
                seq = entry.first_seq + offset
                events = engine.apply(seq, batch.ts_ns, command)
                if command.request_id and type(events[0]) is not e.DuplicateRequest:
                    applied[command.request_id] += 1
                    applied_at[command.request_id] = seq
        return applied, applied_at
    finally:
        journal.close()


def stream_seq(cluster: Cluster) -> int:
    journal = NatsJournal(cluster.nats.urls, cluster.spec.stream, node="probe")
    try:
        return journal.refresh()[1]
    finally:
        journal.close()


async def _wait_demo_venue(client: AsyncClient, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            instruments = await client.request("GET", "/v1/instruments")
            balances = await client.balances(YOUR_ACCOUNT)
            if len(instruments) >= 3 and balances:
                return
        except (GatewayError, httpx.HTTPError):
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError("the demo venue was not built on the cluster")


@pytest.mark.timeout(240)
def test_orders_through_the_gateway_survive_a_leader_kill(cluster: Cluster) -> None:
    key_id, secret = create_key(
        cluster.spec.keys_dir, "trader", [YOUR_ACCOUNT], rate_per_s=10_000, burst=10_000
    )
    first_leader = leader_of(cluster)
    first_epoch = int(cluster.node_status()[first_leader]["epoch"])
    # a gateway beside a standby: it outlives the leader, and must find the next one itself
    node = next(n for n in cluster.spec.nodes if n.name != first_leader)
    url = f"http://127.0.0.1:{node.http_port}"

    async def scenario() -> tuple[Orders, float, float]:
        client = AsyncClient(url, key_id, secret, timeout=60.0)
        try:
            await _wait_demo_venue(client)
            orders = Orders(client)
            orders.start()
            await asyncio.sleep(LOAD_BEFORE_KILL_S)
            killed_at = time.monotonic()
            cluster.kill_node(first_leader, signal.SIGKILL)
            while orders.acks_after(killed_at + 0.5) == 0:
                assert time.monotonic() - killed_at < RESUME_LIMIT_S, "no ack after the kill"
                await asyncio.sleep(0.05)
            resumed_at = min(t for t in orders.ack_times if t > killed_at + 0.5)
            await asyncio.sleep(LOAD_AFTER_RESUME_S)
            await orders.stop()
            return orders, killed_at, resumed_at
        finally:
            await client.http.aclose()

    orders, killed_at, resumed_at = asyncio.run(scenario())
    new_leader = leader_of(cluster)  # the restarted node may win again: a newer epoch
    assert int(cluster.node_status()[new_leader]["epoch"]) > first_epoch
    assert not orders.errors, orders.errors[:5]
    assert orders.acks_after(resumed_at) > 0
    before = sum(1 for t in orders.ack_times if t <= killed_at)
    assert before > 0, "no order acknowledged before the kill"

    applied, applied_at = applied_request_ids(cluster)
    namespaced = {f"{key_id}:{rid}": seq for rid, seq in orders.acked.items()}
    lost = [rid for rid in namespaced if rid not in applied]
    twice = [rid for rid, n in applied.items() if n > 1]
    moved = [rid for rid, seq in namespaced.items() if applied_at.get(rid) != seq]
    assert not lost, f"acknowledged but lost: {lost[:5]}"
    assert not twice, f"applied twice: {twice[:5]}"
    assert not moved, f"acknowledged at another seq: {moved[:5]}"
    # the demo's own order flow goes on on the new leader (our orders have stopped)
    first = stream_seq(cluster)
    deadline = time.monotonic() + 20
    while stream_seq(cluster) <= first:
        assert time.monotonic() < deadline, "the demo flow does not run on the new leader"
        time.sleep(0.3)
    print(
        f"\n{len(orders.acked)} orders acknowledged ({before} before the kill, "
        f"{orders.duplicates} answered as duplicates of a retry); gateway paused "
        f"{resumed_at - killed_at:.2f} s; leader {first_leader} -> {new_leader}"
    )
