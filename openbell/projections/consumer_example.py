"""A consumer of the OpenBell event bus with nats-py (run: ``python -m
openbell.projections.consumer_example nats://127.0.0.1:4222 ACME 17``).

The publisher (``python -m openbell.projections DATA --follow --bus nats://...``) writes every
durable event to the JetStream stream ``OPENBELL``:

    openbell.md.<symbol>     trades, book deltas, auction results
    openbell.exec.<account>  execution reports, balances, holds, transfers
    openbell.ipo.<offering>  IPO events
    openbell.admin           halts, phases, kill switches, account states

A message holds one command's events for its subject, in order, as a JSON array (integers:
ticks, lots, minor units), with ``Nats-Msg-Id`` = ``<seq>/<index of its first event>``; a
durable consumer resumes where it stopped, and ``seq`` orders events across subjects. The
essential part::

    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    sub = await js.subscribe("openbell.md.ACME", durable="acme-tape")
    async for msg in sub.messages:
        for event in json.loads(msg.data):  # [{"type": "Trade", "price_ticks": ...}, ...]
            ...
        seq, index = msg.headers["Nats-Msg-Id"].split("/")
        await msg.ack()
"""

from __future__ import annotations

import asyncio
import json
import sys

import nats


async def follow(url: str, symbol: str, account: int, limit: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    subs = [
        await js.subscribe(f"openbell.md.{symbol}", ordered_consumer=True),
        await js.subscribe(f"openbell.exec.{account}", ordered_consumer=True),
        await js.subscribe("openbell.admin", ordered_consumer=True),
    ]
    seen = 0

    async def pump(sub: nats.js.JetStreamContext.PushSubscription) -> None:
        nonlocal seen
        async for msg in sub.messages:
            msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
            for event in json.loads(msg.data):
                print(f"{msg.subject:<28} {msg_id:<12} {event['type']}")
                seen += 1
            if seen >= limit:
                return

    _done, pending = await asyncio.wait(
        [asyncio.create_task(pump(sub)) for sub in subs], return_when=asyncio.FIRST_COMPLETED
    )
    for task in pending:
        task.cancel()
    await nc.close()


if __name__ == "__main__":
    url, symbol, account = sys.argv[1], sys.argv[2], int(sys.argv[3])
    asyncio.run(follow(url, symbol, account, limit=int(sys.argv[4]) if len(sys.argv) > 4 else 50))
