"""``make bench``: every benchmark, a table on screen, flat JSON in bench/results.json.

Environment: OPENBELL_BENCH_OPS (standard workload size, default 1,000,000),
OPENBELL_BENCH_ACCOUNTS (ledger scale, default 50,000,000), OPENBELL_BENCH_QUICK=1 (small
sizes, for a smoke run), OPENBELL_BENCH_IPO_50M=1 (also IPO close -> settled at 50 M).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.backoffice_bench import run_all as bench_backoffice
from bench.bare_book import run_bare
from bench.cluster_bench import run_all as bench_cluster
from bench.engine_bench import (
    BREAKERS_TS_STEP_NS,
    GcPauses,
    bench_engine,
    breakers_on,
    run_quiet,
    run_throughput,
)
from bench.fix_bench import bench_fix
from bench.gateway_access_bench import bench_gateway_access
from bench.gateway_bench import bench_gateway
from bench.ipo_bench import run_all as bench_ipo
from bench.lanes_bench import TRADING_PER_S
from bench.lanes_bench import run_all as bench_lanes
from bench.node_bench import bench_recovery, bench_sequencer
from bench.workload_cache import load
from openbell._build import core_build
from openbell.journal.bench import bench_append

RESULTS = Path(__file__).parent / "results.json"
console = Console()


def _own_process(module: str, *args: str) -> dict[str, float]:
    """Run ``python -m module args`` from the project root; it prints flat JSON."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    ).stdout
    data: dict[str, float] = json.loads(out)
    return data


def main() -> None:
    quick = os.environ.get("OPENBELL_BENCH_QUICK") == "1"
    ops = int(os.environ.get("OPENBELL_BENCH_OPS", "20000" if quick else "1000000"))
    accounts = int(os.environ.get("OPENBELL_BENCH_ACCOUNTS", "100000" if quick else "50000000"))
    results: dict[str, float | str] = {
        "meta.python": platform.python_version(),
        "meta.machine": platform.machine(),
        "meta.cores": float(os.cpu_count() or 0),
        "meta.unix_time": float(int(time.time())),
        "meta.standard_ops": float(ops),
        "meta.core_build": core_build(),
    }
    console.print(f"standard workload: {ops:,} operations (seed 1) ...")
    setup, work = load(ops)

    console.print("engine: matching only ...")
    results.update(bench_engine("engine.standard", False, setup, work))
    console.print("engine: matching only, every circuit breaker on (thresholds not reached) ...")
    results.update(
        bench_engine(
            "engine.standard_breakers", False, setup + breakers_on(), work,
            latency=False, ts_step_ns=BREAKERS_TS_STEP_NS,
        )
    )  # fmt: skip
    results["engine.standard_breakers.vs_off"] = float(
        results["engine.standard_breakers.ops_per_s"]
    ) / float(results["engine.standard.ops_per_s"])
    console.print("engine: matching + funds, holds, fees, risk, request ids ...")
    results.update(bench_engine("engine.standard_ledger", True, setup, work))
    console.print("engine: matching only, garbage collector left on ...")
    pauses = GcPauses()
    rate, _ = run_throughput(False, setup, work, freeze_gc=False, pauses=pauses)
    results["engine.standard_gc_on.ops_per_s"] = rate
    results["engine.standard.gc_pause_ms_max"] = pauses.max_ns / 1e6
    results["engine.standard.gc_collections"] = float(pauses.collections)
    console.print("engine: replay (one apply_batch, no events built) ...")
    results["engine.standard_replay.ops_per_s"] = run_quiet(False, setup, work)
    results["engine.standard_ledger_replay.ops_per_s"] = run_quiet(True, setup, work)
    console.print("engine: the interpreted core (own process) ...")
    results.update(_own_process("bench.engine_pure", str(ops)))
    console.print("baseline: a bare 100-line price-time book in plain Python ...")
    results["engine.baseline_bare_python.ops_per_s"] = max(run_bare(work) for _ in range(3))
    results["engine.standard.vs_bare_python"] = (
        float(results["engine.standard.ops_per_s"])
        / results["engine.baseline_bare_python.ops_per_s"]
    )

    console.print(f"ledger: {accounts:,} funded accounts (own process) ...")
    ledger = _own_process("bench.ledger_accounts", str(accounts))
    tag = "accounts_50m" if accounts == 50_000_000 else f"accounts_{accounts}"
    results[f"ledger.{tag}.rss_gb"] = ledger["rss_gb"]
    results[f"ledger.{tag}.fund_s"] = ledger["fund_s"]
    results[f"ledger.{tag}.bytes_per_account"] = ledger["bytes_per_account"]

    console.print("journal: raw appends (1000 commands x 40 bytes per fsync) ...")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="openbell-journal-") as tmp:
        raw = bench_append(Path(tmp), 300 if quick else 2000, 1000, 40)
    for key, value in raw.items():
        results[f"journal.file.raw.{key}"] = value

    seconds = 1.0 if quick else 4.0
    node_work = work[: min(len(work), 400_000)]
    for label, rate in (("10k", 10_000), ("100k", 100_000), ("max", None)):
        console.print(f"sequencer + file journal, offered load {label} ...")
        r = bench_sequencer(setup, node_work, rate, seconds)
        if rate is None:
            results["journal.file.cmd_per_s_max"] = r["cmd_per_s"]
            results["journal.file.ack_ms_p50_at_max"] = r["ack_ms_p50"]
            results["journal.file.ack_ms_p99_at_max"] = r["ack_ms_p99"]
        else:
            results[f"journal.file.cmd_per_s_at_{label}"] = r["cmd_per_s"]
            results[f"journal.file.ack_ms_p50_at_{label}"] = r["ack_ms_p50"]
            results[f"journal.file.ack_ms_p99_at_{label}"] = r["ack_ms_p99"]

    console.print("node: trading ack at 10k/s, quiet and during a 1 M IPO subscription flood ...")
    results.update(bench_lanes(setup, work[: int(TRADING_PER_S * seconds) + 1000], seconds))

    tail = work[: min(len(work), 1_000_000)]
    console.print(f"recovery: snapshot + {len(tail):,}-command tail ...")
    recovery = bench_recovery(setup, tail)
    key = "recovery.tail_1m" if len(tail) == 1_000_000 else f"recovery.tail_{len(tail)}"
    results[f"{key}.seconds"] = recovery["seconds"]
    results[f"{key}.cmd_per_s"] = recovery["cmd_per_s"]

    console.print("ipo: journaled batch subscribe; close -> settled (own process) ...")
    results.update(bench_ipo(quick))

    console.print("gateway: signed HTTP orders, WebSocket fan-out (server in its own process) ...")
    results.update(bench_gateway(quick))
    console.print("gateway: HTTP servers compared, WebSocket order entry (own processes) ...")
    # after bench_gateway: gateway.http.orders_per_s is this bench's same-run figure
    results.update(bench_gateway_access(quick))

    console.print("gateway: FIX 4.4 order entry, 8 sessions (server in its own process) ...")
    results.update(bench_fix(seconds=3.0 if quick else 8.0))

    console.print("cluster: NATS JetStream R3 journal, leader and NATS-server kills ...")
    results.update(bench_cluster(setup, node_work, quick))

    console.print("back office: projections, lag, NATS bus, reconciliation, audit chain ...")
    results.update(bench_backoffice(quick))

    table = Table(title="OpenBell benchmarks")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, metric in results.items():
        shown = (
            f"{metric:,.3f}"
            if isinstance(metric, float) and metric < 1000
            else (f"{metric:,.0f}" if isinstance(metric, float) else str(metric))
        )
        table.add_row(name, shown)
    console.print(table)
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    console.print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
