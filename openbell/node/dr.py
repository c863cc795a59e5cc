"""Second site (disaster recovery): an asynchronous mirror of the journal stream in a second
NATS cluster, and its promotion to primary.

Each site is its own JetStream domain (``primary``, ``dr``), so each keeps its own meta group
and the DR site can act alone when the primary site is gone; the DR servers connect to the
primary's as leafnodes. The DR stream has the primary stream's name and mirrors it through the
primary domain's API (``$JS.primary.API``): same sequence numbers, same headers. The mirror is
asynchronous: what the primary acknowledged in the last moments before a disaster may be
missing at the DR site (the RPO of the second site, measured by ``bench/cluster_bench.py``).

``promote`` removes the mirror configuration (nats-server >= 2.12) and gives the stream its
subjects back: OpenBell nodes pointed at the DR servers then boot from it as from the primary.
"""

from __future__ import annotations

import asyncio
import time

import nats.js.errors
from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource

from openbell.journal.nats import DUPLICATE_WINDOW_S, connect, retry_api

PRIMARY_DOMAIN = "primary"
DR_DOMAIN = "dr"


def create_mirror(
    dr_servers: list[str],
    stream: str,
    primary_domain: str = PRIMARY_DOMAIN,
    replicas: int = 3,
    deadline_s: float = 60.0,
) -> None:
    """Create (if absent) the DR site's mirror of ``stream``."""

    async def create() -> None:
        nc = await connect(dr_servers, "openbell-dr", deadline_s)
        try:
            js = nc.jetstream(timeout=5)
            try:
                await retry_api(js.stream_info, deadline_s, stream)
                return
            except nats.js.errors.NotFoundError:
                pass
            config = StreamConfig(
                name=stream,
                storage=StorageType.FILE,
                num_replicas=replicas,
                mirror=StreamSource(
                    name=stream, external=ExternalStream(api=f"$JS.{primary_domain}.API")
                ),
            )
            await retry_api(js.add_stream, deadline_s, config)
        finally:
            await nc.close()

    asyncio.run(create())


def mirror_state(dr_servers: list[str], stream: str) -> tuple[int, int | None]:
    """(last stream seq at the DR site, the mirror's lag in messages as the server reports it;
    None once promoted)."""

    async def state() -> tuple[int, int | None]:
        nc = await connect(dr_servers, "openbell-dr", 10)
        try:
            js = nc.jetstream(timeout=5)
            info = await retry_api(js.stream_info, 10, stream)
            lag = None if info.mirror is None else info.mirror.lag
            return int(info.state.last_seq), lag
        finally:
            await nc.close()

    return asyncio.run(state())


def promote(dr_servers: list[str], stream: str, deadline_s: float = 60.0) -> int:
    """Turn the DR mirror into the primary stream; returns its last stream seq."""

    async def run() -> int:
        nc = await connect(dr_servers, "openbell-dr-promote", deadline_s)
        try:
            js = nc.jetstream(timeout=5)
            info = await retry_api(js.stream_info, deadline_s, stream)
            config = StreamConfig(
                name=stream,
                subjects=[f"{stream}.*"],
                storage=StorageType.FILE,
                num_replicas=info.config.num_replicas,
                duplicate_window=DUPLICATE_WINDOW_S,
                max_msg_size=8 << 20,
                allow_atomic=True,  # a new leader's epoch record is an atomic batch
            )
            deadline = time.monotonic() + deadline_s
            while True:
                try:
                    updated = await js.update_stream(config)
                    break
                except nats.js.errors.APIError as error:
                    if error.code not in (500, 503) or time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            if updated.config.mirror is not None:
                raise RuntimeError("the server kept the mirror configuration (needs >= 2.12)")
            return int(updated.state.last_seq)
        finally:
            await nc.close()

    return asyncio.run(run())
