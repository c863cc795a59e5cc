"""Assemble a projector from options (the CLI, ``python -m openbell.projections``, the gateway)."""

from __future__ import annotations

from pathlib import Path

from openbell.projections import db
from openbell.projections.projector import Projector, Sink
from openbell.projections.sql import ReadModel


def open_projector(
    data_dir: Path,
    db_url: str | None = None,
    audit: bool = False,
    sql: bool = True,
    chunk: int = 20_000,
    bus_url: str | None = None,
) -> Projector:
    data_dir = Path(data_dir)
    url = db_url or db.default_url(data_dir)
    sinks: list[Sink] = []
    if sql:
        sinks.append(ReadModel(url))
    if audit:
        from openbell.projections.audit import AuditLog

        sinks.append(AuditLog.open(data_dir, url))
    if bus_url:
        from openbell.projections.bus import BusPublisher

        sinks.append(BusPublisher(data_dir, bus_url))
    return Projector(data_dir, sinks, chunk_commands=chunk)
