"""Read endpoints the web screens need beyond the trading API (``openbell.gateway.web``).

- ``GET /v1/session``: who the signing key is (role, accounts), so a screen knows what to show;
- ``GET /v1/ipo/offerings``: every IPO offering (as ``GET /v1/ipo/offerings/{symbol}`` shows
  one), and ``GET /v1/ipo/accounts/{account}/subscriptions``: an account's subscriptions;
- ``GET /v1/admin/overview`` (operator, auditor): the operator console in one read — the node's
  positions (last applied seq, journal end, newest snapshot, recovery), the venue halt,
  instruments with their phases, accounts not ACTIVE, IPO offerings with their control totals,
  and refusals by reason (engine rejects since start, the last ``RECENT_REJECTS`` of them with
  their detail in decimals, and the gateway's own refusals by code). ``cluster`` is null: this
  gateway runs one node in its own process.

Engine state is read through ``Bridge.query`` (on the sequencer thread, between batches), like
every other read of the gateway.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from openbell.core import events as e
from openbell.core.engine import Engine
from openbell.gateway.bridge import Bridge
from openbell.gateway.handling import ALL_ROLES, Ctx, Endpoint, path_id
from openbell.gateway.ipo import OfferingRead, offering_json, subscription_json
from openbell.gateway.ipo import offering_of as read_one
from openbell.gateway.keys import Role

READERS = frozenset({Role.OPERATOR, Role.AUDITOR})
RECENT_REJECTS = 100


class RejectLog:
    """The last ``RECENT_REJECTS`` engine rejects, newest last, with their detail in the user's
    units; fed by the bridge's event listeners (on the event loop, in sequence order)."""

    def __init__(self, bridge: Bridge, size: int = RECENT_REJECTS) -> None:
        self._venue = bridge.venue
        self.recent: deque[dict[str, Any]] = deque(maxlen=size)
        bridge.listen(self.on_event, frozenset({e.Rejected}))

    def on_event(self, event: e.Event) -> None:
        if type(event) is not e.Rejected:
            return
        assert isinstance(event, e.Rejected)
        key_id, _, request_id = event.request_id.partition(":")
        self.recent.append(
            {
                "seq": event.seq,
                "time_ms": time.time_ns() // 1_000_000,
                "key_id": key_id if request_id else None,
                "reason": event.reason.value,
                "detail": self._venue.reject_detail(event),
            }
        )


def _offerings(engine: Engine, account: int | None) -> list[OfferingRead]:
    """Every offering as ``GET /v1/ipo/offerings/{symbol}`` reads it (with ``account``'s
    subscription)."""
    reads = (read_one(engine, symbol, account) for symbol in engine.ipo.offerings)
    return [read for read in reads if read is not None]


async def session(ctx: Ctx) -> Any:
    key = ctx.require_key()
    return {"key_id": key.key_id, "role": key.role.value, "accounts": list(key.accounts)}


async def list_offerings(ctx: Ctx) -> Any:
    viewer = ctx.viewer()
    reads: list[OfferingRead] = await ctx.bridge.query(lambda eng: _offerings(eng, None))
    return [offering_json(read, viewer) for read in reads]


async def account_subscriptions(ctx: Ctx) -> Any:
    account = path_id(ctx, "account", "UNKNOWN_ACCOUNT")
    ctx.require_account(account)
    reads: list[OfferingRead] = await ctx.bridge.query(lambda eng: _offerings(eng, account))
    return [
        subscription_json(read, read.subscription)
        for read in reads
        if read.subscription is not None
    ]


class _EngineState:
    """What the overview reads from the engine in one query."""

    def __init__(self, engine: Engine) -> None:
        self.seq = engine.seq
        self.state_hash = engine.state_hash()
        self.venue_halted = bool(engine.venue_halted)
        self.instruments = [
            (i.spec.symbol, i.phase.value, i.reference_price_ticks, i.last_price_ticks)
            for i in engine.instruments.values()
        ]
        self.account_states = [(a, s.value) for a, s in engine.account_states.items()]
        self.accounts = engine.ledger.accounts_count
        self.open_orders = len(engine.orders)
        self.offerings = _offerings(engine, None)


async def overview(ctx: Ctx) -> Any:
    gateway = ctx.gateway
    node = gateway.node
    state: _EngineState = await ctx.bridge.query(_EngineState)
    venue = ctx.bridge.venue
    metrics = gateway.metrics
    recovery = node.recovery
    written = node.snapshotter.written
    instruments = []
    for symbol, phase, ref, last in state.instruments:
        units = venue.instruments.get(symbol)
        if units is None:  # created in a batch not delivered yet
            continue
        instruments.append(
            {
                "symbol": symbol,
                "phase": phase,
                "reference_price": units.price(ref) if ref else None,
                "last_price": units.price(last) if last else None,
            }
        )
    viewer = ctx.viewer()
    return {
        "node": {
            "seq": state.seq,
            "state_hash": state.state_hash,
            "journal_last_seq": node.journal.last_seq,
            # the newest snapshot written since start, else the one recovery started from
            "snapshot_seq": written[-1] if written else (recovery and recovery.snapshot_seq),
            "snapshots_written": len(written),
            "queue_depth": node.sequencer.queue_depth,
            "recovered": None
            if recovery is None
            else {
                "snapshot_seq": recovery.snapshot_seq,
                "replayed": recovery.replayed_commands,
                "seq": recovery.last_seq,
            },
        },
        "cluster": None,
        "venue_halted": state.venue_halted,
        "instruments": instruments,
        "accounts": state.accounts,
        "open_orders": state.open_orders,
        "account_states": [{"account": a, "state": s} for a, s in state.account_states],
        "offerings": [offering_json(read, viewer) for read in state.offerings],
        "rejects_by_reason": dict(sorted(metrics.rejections.items())),
        "refusals_by_code": {
            f"{status} {code}": n for (status, code), n in sorted(metrics.http_errors.items())
        },
        "recent_rejects": list(reversed(gateway.rejects.recent)),
    }


def console_endpoints() -> list[Endpoint]:
    return [
        Endpoint("GET", "/v1/session", session, "Who the signing key is (role, accounts)",
                 ALL_ROLES, tag="screens"),
        Endpoint("GET", "/v1/ipo/offerings", list_offerings, "Every IPO offering", ALL_ROLES,
                 tag="ipo", description="Each as GET /v1/ipo/offerings/{symbol} shows it."),
        Endpoint("GET", "/v1/ipo/accounts/{account:int}/subscriptions", account_subscriptions,
                 "An account's IPO subscriptions", ALL_ROLES, tag="ipo",
                 description="Each as GET /v1/ipo/offerings/{symbol}/subscriptions/{account} "
                 "shows it."),
        Endpoint("GET", "/v1/admin/overview", overview,
                 "The operator console: node positions, phases, account states, IPO totals, "
                 "rejects by reason", READERS, tag="operator"),
    ]  # fmt: skip


__all__ = ["RECENT_REJECTS", "RejectLog", "console_endpoints"]
