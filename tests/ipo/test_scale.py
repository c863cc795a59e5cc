"""One million subscriptions through batch subscribe -> close -> number -> draw -> settle."""

from __future__ import annotations

from .scale import run


def test_one_million_subscriptions_under_15_seconds() -> None:
    times = run(1_000_000, batch_rows=250_000, chunk_rows=250_000)
    assert times["total"] < 15, times
