"""Only the node's figures of ``make bench``: the sequencer + file journal at max and at 100 k
commands/s offered, and recovery (snapshot + 1 M-command tail), the same way ``bench.run``
measures them. ``python -m bench.node_quick [max|100k|10k|recovery ...]`` prints flat JSON."""

from __future__ import annotations

import json
import sys

from bench.node_bench import bench_recovery, bench_sequencer
from bench.workload_cache import load

SECONDS = 4.0


def main(argv: list[str]) -> None:
    which = argv or ["max", "100k", "recovery"]
    setup, work = load(1_000_000)
    node_work = work[:400_000]
    out: dict[str, float] = {}
    for label in which:
        if label == "recovery":
            r = bench_recovery(setup, work[:1_000_000])
            out["recovery.tail_1m.seconds"] = r["seconds"]
            continue
        rate = None if label == "max" else int(label.removesuffix("k")) * 1000
        r = bench_sequencer(setup, node_work, rate, SECONDS)
        if rate is None:
            out["journal.file.cmd_per_s_max"] = r["cmd_per_s"]
            out["journal.file.ack_ms_p99_at_max"] = r["ack_ms_p99"]
        else:
            out[f"journal.file.cmd_per_s_at_{label}"] = r["cmd_per_s"]
            out[f"journal.file.ack_ms_p50_at_{label}"] = r["ack_ms_p50"]
            out[f"journal.file.ack_ms_p99_at_{label}"] = r["ack_ms_p99"]
        out[f"journal.file.batches_at_{label}"] = r["batches"]
        out[f"journal.file.fsync_ms_mean_at_{label}"] = r["fsync_ms_mean"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
