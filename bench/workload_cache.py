"""The standard workload, generated once per (operations, seed) and cached in bench/out/."""

from __future__ import annotations

from pathlib import Path

import msgspec

from openbell.core.commands import CancelOrder, Command, PlaceOrder
from openbell.sim.workload import standard_workload

OUT = Path(__file__).parent / "out"


class _Cached(msgspec.Struct):
    setup: list[Command]
    work: list[PlaceOrder | CancelOrder]


def load(operations: int, seed: int = 1) -> tuple[list[Command], list[PlaceOrder | CancelOrder]]:
    OUT.mkdir(exist_ok=True)
    path = OUT / f"standard-{operations}-{seed}.msgpack"
    if path.exists():
        cached = msgspec.msgpack.decode(path.read_bytes(), type=_Cached)
        return cached.setup, cached.work
    setup, work = standard_workload(operations, seed)
    path.write_bytes(msgspec.msgpack.encode(_Cached(setup, work)))
    return setup, work
