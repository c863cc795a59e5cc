"""``python -m openbell.projections DATA_DIR [--db URL] [--chunk N] [--follow] [--until-seq N]``:
run the read-model projector (and the audit log with ``--audit``) beside a node."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from openbell.projections.runner import open_projector


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openbell.projections")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument(
        "--db", default=None, help="SQLAlchemy URL (default: DATA/readmodel.sqlite)"
    )
    parser.add_argument("--chunk", type=int, default=20_000, help="commands per transaction")
    parser.add_argument("--follow", action="store_true", help="keep following the journal")
    parser.add_argument("--until-seq", type=int, default=None)
    parser.add_argument("--audit", action="store_true", help="also write the audit log")
    parser.add_argument("--no-sql", action="store_true", help="no read model")
    parser.add_argument("--bus", default=None, help="publish events to this NATS server")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    projector = open_projector(
        args.data_dir,
        db_url=args.db,
        audit=args.audit,
        sql=not args.no_sql,
        chunk=args.chunk,
        bus_url=args.bus,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if args.follow:
            seq = projector.follow(stop, until_seq=args.until_seq)
        else:
            seq = projector.catch_up(args.until_seq)
    finally:
        projector.close()
    print(seq)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
