"""Trading ack latency with and without an IPO subscription flood (the IPO lane's purpose).

The trading load is the journal bench's client (``node_bench.offer``: the standard workload at
10 k orders/s, in chunks as a gateway submits them) on a Sequencer with a real FileJournal. The
flood is a second thread offering 1 M ``IpoSubscribe`` (one per funded account, chunks of 1,000)
as fast as the node accepts them: on ``LaneBusy`` it waits the ``retry_after_s`` it was given
and tries again. Ack latency is counted for trading commands only.

``python -m bench.lanes_bench [seconds] [standard-workload ops]`` prints the flat JSON keys.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from bench.node_bench import _percentile, offer
from openbell.core import commands as c
from openbell.core.engine import Engine
from openbell.core.events import Event
from openbell.journal.file import FileJournal
from openbell.node.codec import encode_batch
from openbell.node.lanes import IpoLaneConfig, LaneBusy
from openbell.node.sequencer import Busy, NodeHalted, Pending, Sequencer
from openbell.sim.ipo_flood import flood_setup, subscriptions
from openbell.sim.workload import QUOTE

FLOOD_SUBSCRIPTIONS = 1_000_000
FLOOD_CHUNK = 1_000
TRADING_PER_S = 10_000
# For comparison: the lane without its limits (no rate limit, room for the whole flood, an IPO
# share as large as a batch). Trading still goes first in each batch; a single FIFO queue
# would put it behind the whole flood instead.
UNLIMITED = IpoLaneConfig(
    max_per_s=10**9, burst=10**9, queue_capacity=FLOOD_SUBSCRIPTIONS, max_per_batch=2048
)


def _noop(seq: int, events: list[Event] | None, error: str) -> None:
    pass


class _Flood:
    """Offers the subscriptions from its own thread until all are in or ``stop`` is set."""

    def __init__(self, sequencer: Sequencer, first_account: int, total: int) -> None:
        self.sequencer = sequencer
        self.first_account = first_account
        self.total = total
        self.offered = 0
        self.refusals = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ipo-flood", daemon=True)

    def _run(self) -> None:
        chunk = subscriptions(self.first_account, 0, min(FLOOD_CHUNK, self.total))
        while self.offered < self.total and not self.stop.is_set():
            try:
                self.sequencer.submit_many(chunk, _noop)
            except LaneBusy as busy:
                self.refusals += 1
                self.stop.wait(max(busy.retry_after_s, 0.001))
                continue
            except (Busy, NodeHalted):
                return
            self.offered += len(chunk)
            count = min(FLOOD_CHUNK, self.total - self.offered)
            chunk = subscriptions(self.first_account, self.offered, count)


def bench_trading_ack(
    setup: Sequence[c.Command],
    work: Sequence[c.Command],
    seconds: float,
    flood: bool,
    lane: IpoLaneConfig | None = None,
) -> dict[str, float]:
    """Trading at TRADING_PER_S for ``seconds``, with or without the flood."""
    with tempfile.TemporaryDirectory(prefix="openbell-lanes-") as tmp:
        journal = FileJournal(Path(tmp))
        engine = Engine()
        engine.apply_batch(1, 0, list(setup))
        first_account = engine.ledger.accounts_count
        ipo_setup = flood_setup(first_account, FLOOD_SUBSCRIPTIONS, QUOTE)
        engine.apply_batch(engine.seq + 1, 0, ipo_setup)
        journal.append(0, 1, len(setup), encode_batch(0, setup))
        journal.append(len(setup), len(setup) + 1, len(ipo_setup), encode_batch(0, ipo_setup))
        latencies_ns: list[int] = []
        subscribed = [0]

        def on_durable(first_seq: int, batch: list[Pending], results: list[list[Event]]) -> None:
            now = time.perf_counter_ns()
            for p in batch:
                if p.token is None:
                    subscribed[0] += 1
                else:
                    latencies_ns.append(now - p.token)

        sequencer = Sequencer(
            engine, journal, on_durable=on_durable, queue_capacity=50_000, ipo_lane=lane
        )
        sequencer.start()
        flooder = _Flood(sequencer, first_account, FLOOD_SUBSCRIPTIONS)
        try:
            if flood:
                flooder.thread.start()
                time.sleep(0.5)  # the flood is on before the trading clock starts
            subscribed_before = subscribed[0]
            started = time.perf_counter()
            offer(sequencer, work, TRADING_PER_S, seconds)
            elapsed_s = time.perf_counter() - started
            subscribed_during = subscribed[0] - subscribed_before
        finally:
            flooder.stop.set()
            if flood:
                flooder.thread.join()
            sequencer.stop()
            journal.close()
        latencies_ns.sort()
        return {
            "ack_ms_p50": _percentile(latencies_ns, 0.50),
            "ack_ms_p99": _percentile(latencies_ns, 0.99),
            "trading_commands": float(len(latencies_ns)),
            "subscriptions_per_s": subscribed_during / elapsed_s,
            "subscriptions_offered": float(flooder.offered),
            "lane_refusals": float(flooder.refusals),
        }


def run_all(
    setup: Sequence[c.Command], work: Sequence[c.Command], seconds: float, rounds: int = 3
) -> dict[str, float]:
    """``rounds`` alternating quiet and flood runs (the machine's noise hits both alike); the
    keys are the medians over the rounds."""
    quiet: list[dict[str, float]] = []
    flood: list[dict[str, float]] = []
    for _ in range(rounds):
        quiet.append(bench_trading_ack(setup, work, seconds, flood=False))
        flood.append(bench_trading_ack(setup, work, seconds, flood=True))
    unlimited = bench_trading_ack(setup, work, seconds, flood=True, lane=UNLIMITED)

    def median(runs: list[dict[str, float]], key: str) -> float:
        return float(statistics.median(run[key] for run in runs))

    return {
        "node.trading_ack_ms_p99_quiet": median(quiet, "ack_ms_p99"),
        "node.trading_ack_ms_p50_quiet": median(quiet, "ack_ms_p50"),
        "node.trading_ack_ms_p99_during_ipo_flood": median(flood, "ack_ms_p99"),
        "node.trading_ack_ms_p50_during_ipo_flood": median(flood, "ack_ms_p50"),
        "node.ipo_flood.subscriptions_per_s": median(flood, "subscriptions_per_s"),
        "node.ipo_flood.lane_refusals": median(flood, "lane_refusals"),
        "node.trading_ack_ms_p99_during_ipo_flood_unlimited_lane": unlimited["ack_ms_p99"],
        "node.ipo_flood_unlimited_lane.subscriptions_per_s": unlimited["subscriptions_per_s"],
    }


def main() -> None:
    from bench.workload_cache import load

    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
    ops = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    setup, work = load(ops)
    print(json.dumps(run_all(setup, work[: int(TRADING_PER_S * seconds) + 1000], seconds)))


if __name__ == "__main__":
    main()
