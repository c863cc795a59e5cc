"""``python -m openbell.node --data DIR``: run one node (the same as ``openbell serve``)."""

from __future__ import annotations

import argparse
import sys

from openbell.core.engine import EngineConfig
from openbell.node.commands import run_serve
from openbell.node.lanes import IpoLaneConfig
from openbell.node.service import NodeConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openbell.node")
    parser.add_argument("--data", required=True, help="data directory")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="also serve the client API on TCP 127.0.0.1:PORT with the token of DIR/node.token "
        "(0: any free port); by default only the Unix socket DIR/node.sock",
    )
    parser.add_argument("--snapshot-every", type=int, default=1_000_000, help="commands")
    parser.add_argument("--snapshot-seconds", type=int, default=300)
    parser.add_argument("--keep-snapshots", type=int, default=2)
    parser.add_argument("--segment-bytes", type=int, default=64 << 20)
    parser.add_argument("--max-batch", type=int, default=2048)
    parser.add_argument("--queue-capacity", type=int, default=100_000)
    parser.add_argument(
        "--ipo-per-s", type=int, default=10_000, help="IPO lane: subscriptions admitted a second"
    )
    parser.add_argument(
        "--ipo-queue", type=int, default=20_000, help="IPO lane: subscriptions waiting at most"
    )
    parser.add_argument(
        "--ipo-per-batch", type=int, default=4, help="IPO lane: its share of each batch"
    )
    parser.add_argument(
        "--resume-after-halt",
        action="store_true",
        help="after a consistency halt was investigated: rebuild, check invariants, serve",
    )
    parser.add_argument("--matching-only", action="store_true", help="no funds or holds")
    args = parser.parse_args(argv)
    config = NodeConfig(
        data_dir=args.data,
        port=args.port,
        snapshot_every_commands=args.snapshot_every,
        snapshot_every_s=args.snapshot_seconds,
        keep_snapshots=args.keep_snapshots,
        segment_bytes=args.segment_bytes,
        max_batch=args.max_batch,
        queue_capacity=args.queue_capacity,
        resume_after_halt=args.resume_after_halt,
        ipo_lane=IpoLaneConfig(
            max_per_s=args.ipo_per_s,
            burst=max(1, min(args.ipo_queue, args.ipo_per_s // 5)),
            queue_capacity=args.ipo_queue,
            max_per_batch=args.ipo_per_batch,
        ),
    )
    return run_serve(config, EngineConfig(settle=not args.matching_only))


if __name__ == "__main__":
    sys.exit(main())
