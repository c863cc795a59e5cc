"""The read model against the ledger: equal totals at the same seq, or the venue halts.

``check_read_model`` asks the running node for its ledger totals (``ledger_totals``, computed on
the sequencer thread at a batch boundary, seq N), waits until the read model's position is N
(the projector follows the durable journal; N is durable once the answer arrives), reads the read
model's totals at N in one transaction and compares them (``openbell.recon.totals``). If the read
model moved past N before it was read, it asks again (bounded); a venue that never pauses long
enough gives an inconclusive answer, never a false alarm. A difference halts the venue through
the node API (``halt`` READ_MODEL_MISMATCH), which writes the diagnostic bundle.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec

from openbell.node.client import NodeClient
from openbell.node.halt import HaltReason
from openbell.projections import db
from openbell.projections.sql import SINK_NAME
from openbell.recon.totals import LedgerTotals, differences, read_model_totals


class ConsistencyCheck(msgspec.Struct, frozen=True):
    seq: int  # the seq compared (0 when inconclusive)
    checked: bool  # False: the read model never sat at the node's seq within the time allowed
    differences: list[str]
    halted: bool  # the venue was halted because of the differences


def _read_model(url: str) -> LedgerTotals:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn, conn.begin():
            return read_model_totals(conn, SINK_NAME)
    finally:
        engine.dispose()


async def check_read_model(
    data_dir: Path,
    db_url: str | None = None,
    attempts: int = 10,
    wait_s: float = 10.0,
    halt: bool = True,
) -> ConsistencyCheck:
    """Compare once (see the module docstring); ``halt``: halt the venue on a difference."""
    url = db_url or db.default_url(Path(data_dir))
    client = await NodeClient.connect_data_dir(Path(data_dir))
    try:
        for _attempt in range(attempts):
            node = msgspec.convert(await client.query("ledger_totals"), LedgerTotals)
            deadline = time.monotonic() + wait_s
            read_model = await asyncio.to_thread(_read_model, url)
            while read_model.seq < node.seq and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                read_model = await asyncio.to_thread(_read_model, url)
            if read_model.seq != node.seq:
                continue  # behind for too long, or already past N: ask the node again
            found = differences(node, read_model)
            if found and halt:
                detail = f"read model totals differ at seq {node.seq}: " + "; ".join(found)
                await client.query(
                    "halt", reason=HaltReason.READ_MODEL_MISMATCH.value, detail=detail
                )
            return ConsistencyCheck(node.seq, True, found, bool(found and halt))
        return ConsistencyCheck(0, False, [], False)
    finally:
        await client.close()


async def request_halt(data_dir: Path, reason: HaltReason, detail: str) -> None:
    """Halt the running node of ``data_dir`` (its diagnostic bundle says ``detail``)."""
    client = await NodeClient.connect_data_dir(Path(data_dir))
    try:
        await client.query("halt", reason=reason.value, detail=detail)
    finally:
        await client.close()
