"""Who may see which of a command's events: the one place that decides it.

A command's answer (``"events"`` in every REST command response, on the fast path as on the
Starlette route) is its events AS THE CALLER MAY SEE THEM. Operators and auditors see every
event whole. A trader key sees, of its accounts only (``ApiKey.accounts``):

- execution reports and account events whose ``account`` is one of its accounts
  (``OWNED_EVENTS``; the private WebSocket channel delivers these, per account);
- ``Trade``: what the public trade feed shows (trade id, symbol, price, quantity, aggressor)
  plus ITS side of the trade; the other side's account, order id and fee are ``null`` (so a
  trade between two other accounts, e.g. a stop it triggered, shows no account at all);
- public market-data events, which name no account (``BookDelta``, ``PhaseChanged``,
  ``AuctionUncrossed``), and its own request's ``Rejected`` / ``DuplicateRequest``;
- IPO (``IPO_OWNED_EVENTS``, ``IPO_PUBLIC_EVENTS``, ``IPO_ISSUER_EVENTS``): its own
  subscription's ``IpoSubscribed`` / ``IpoSubscriptionCancelled`` (by ``account``; the private
  WebSocket channel of that account carries them too, ``ws.ACCOUNT_CHANNEL_EVENTS``);
  the offering-wide phase events, which are public facts about the offering and carry totals,
  never a row or an account (``IpoClosed``, ``IpoNumbered``, ``IpoPriceSet``, ``IpoDrawn`` with
  its tails or basis table and the revealed seed, ``IpoChunkSettled``); and ``IpoOfferingCreated``
  / ``IpoListed`` with the issuer's account number hidden (``null``) unless it is the trader's
  own (conservative: the issuer is public, its account number at this venue is not).
  ``IpoBatchSubscribed`` (many accounts' rows, operator tooling only) is never shown to a trader.

Everything else is left out of a trader's answer: other accounts' execution reports and
balances (the counterparty's, the fee account's), transfers, holds' resolutions, account
openings and deposits, operator events, and any event type not listed here (deny by default).

Filtering happens while the bridge converts a command's events to JSON (it has to be then: the
conversion reads the venue's state at that event), so an event the caller may not see is never
converted at all.
"""

from __future__ import annotations

from typing import Any

from openbell.core import events as e
from openbell.core.ipo import messages as ipo
from openbell.core.types import Side
from openbell.gateway.convert import QUOTE_AMOUNT_KEYS, Venue
from openbell.gateway.keys import ApiKey, Role

Viewer = frozenset[int] | None
"""The accounts a caller may see, or None: every account (operator, auditor)."""

OWNED_EVENTS: tuple[type[e.Event], ...] = (
    e.OrderAccepted,
    e.OrderTriggered,
    e.Execution,
    e.OrderCancelled,
    e.OrderExpired,
    e.OrderReplaced,
    e.BalanceChanged,
    e.AccountStateChanged,
    e.KillSwitchActivated,
    e.HoldFrozen,
    e.ProtectionStarted,  # the breakers' trips of one account (``account`` None: the venue's
    e.ProtectionEnded,  # or the house's, which only operators see)
    e.LossLimitTripped,
    e.LossLimitReset,
)
"""Events about one account, named by their ``account`` field."""

PUBLIC_EVENTS: tuple[type[e.Event], ...] = (
    e.BookDelta,
    e.PhaseChanged,
    e.AuctionUncrossed,
    e.VolatilityInterruption,
    e.Rejected,  # the caller's own request (request ids are namespaced by key)
    e.DuplicateRequest,
)
"""Events that name no account (market data, or the caller's own request)."""

IPO_OWNED_EVENTS: tuple[type, ...] = (ipo.IpoSubscribed, ipo.IpoSubscriptionCancelled)
"""One account's IPO subscription, named by ``account`` (command answers, and that account's
private WebSocket channel)."""

IPO_PUBLIC_EVENTS: tuple[type, ...] = (
    ipo.IpoClosed,
    ipo.IpoNumbered,
    ipo.IpoPriceSet,
    ipo.IpoDrawn,
    ipo.IpoChunkSettled,
)
"""Offering-wide facts: phases, totals, the draw's tails / basis table; no account."""

IPO_ISSUER_EVENTS: tuple[type, ...] = (ipo.IpoOfferingCreated, ipo.IpoListed)
"""Offering-wide facts that name the issuer's account (``issuer_account``, in ``spec`` for
``IpoOfferingCreated``): shown with it ``null`` unless the viewer owns that account."""

_OWNED, _PUBLIC, _TRADE, _ISSUER = 1, 2, 3, 4
_RULES: dict[type, int] = {
    **dict.fromkeys(OWNED_EVENTS, _OWNED),
    **dict.fromkeys(PUBLIC_EVENTS, _PUBLIC),
    e.Trade: _TRADE,
    **dict.fromkeys(IPO_OWNED_EVENTS, _OWNED),
    **dict.fromkeys(IPO_PUBLIC_EVENTS, _PUBLIC),
    **dict.fromkeys(IPO_ISSUER_EVENTS, _ISSUER),
}
_BUY_FEE = QUOTE_AMOUNT_KEYS["buy_fee_minor"]
_SELL_FEE = QUOTE_AMOUNT_KEYS["sell_fee_minor"]


def viewer_for(key: ApiKey) -> Viewer:
    """What ``key`` may see: its accounts for a trader, everything for the other roles."""
    return frozenset(key.accounts) if key.role is Role.TRADER else None


def sees(viewer: Viewer, shown_to: Viewer) -> bool:
    """True when ``viewer`` may see everything that was shown to ``shown_to``."""
    if viewer is None:
        return True
    return shown_to is not None and shown_to <= viewer


def event_view(
    venue: Venue, events: list[e.Event], index: int, viewer: Viewer
) -> dict[str, Any] | None:
    """``events[index]`` as JSON for ``viewer`` (None: not shown to it). Call it where the
    bridge converts events: after ``venue.before`` and before ``venue.after`` of that event."""
    event = events[index]
    if viewer is None:
        return venue.event_json(event)
    rule = _RULES.get(type(event))
    if rule == _OWNED:
        if event.account in viewer:  # type: ignore[union-attr,operator]
            return venue.event_json(event)
        return None
    if rule == _PUBLIC:
        return venue.event_json(event)
    if rule == _TRADE:
        return _trade_view(venue, events, index, viewer)
    if rule == _ISSUER:
        return hide_issuer(venue.event_json(event), viewer)
    return None


def hide_issuer(document: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    """An IPO offering document (an ``IpoOfferingCreated`` / ``IpoListed`` event, or an
    offering as the REST API shows it) with ``issuer_account`` (top level or in ``spec``) set
    to ``null`` unless ``viewer`` may see that account. Returns a copy; the input is kept."""
    out = dict(document)
    spec = out.get("spec")
    if isinstance(spec, dict) and "issuer_account" in spec:
        spec = out["spec"] = dict(spec)
        if not _may_see(viewer, spec["issuer_account"]):
            spec["issuer_account"] = None
    if "issuer_account" in out and not _may_see(viewer, out["issuer_account"]):
        out["issuer_account"] = None
    return out


def _may_see(viewer: Viewer, account: object) -> bool:
    return viewer is None or (isinstance(account, int) and account in viewer)


def _trade_view(
    venue: Venue, events: list[e.Event], index: int, viewer: frozenset[int]
) -> dict[str, Any]:
    trade = events[index]
    assert type(trade) is e.Trade
    out = venue.event_json(trade)
    buy_account, sell_account = trade.buy_account, trade.sell_account
    if buy_account not in viewer:
        out["buy_account"] = None
        out[_BUY_FEE if _BUY_FEE in out else "buy_fee_minor"] = None
    if sell_account not in viewer:
        out["sell_account"] = None
        out[_SELL_FEE if _SELL_FEE in out else "sell_fee_minor"] = None
    maker_account = _maker_account(trade, events, index)
    if maker_account is None:  # not known: neither order id is shown
        out["maker_order_id"] = out["taker_order_id"] = None
        return out
    taker_account = sell_account if maker_account == buy_account else buy_account
    if maker_account not in viewer:
        out["maker_order_id"] = None
    if taker_account not in viewer:
        out["taker_order_id"] = None
    return out


def _maker_account(trade: e.Trade, events: list[e.Event], index: int) -> int | None:
    """The maker's account: the side opposite the aggressor; in a call auction (no aggressor)
    the account of the maker order's ``Execution``, which follows its trade in the same
    command's events."""
    if trade.aggressor is not None:
        return trade.sell_account if trade.aggressor is Side.BUY else trade.buy_account
    maker = trade.maker_order_id
    for later in range(index + 1, len(events)):
        event = events[later]
        if type(event) is e.Execution and event.order_id == maker:
            return event.account
    return None


__all__ = [
    "IPO_ISSUER_EVENTS",
    "IPO_OWNED_EVENTS",
    "IPO_PUBLIC_EVENTS",
    "OWNED_EVENTS",
    "PUBLIC_EVENTS",
    "Viewer",
    "event_view",
    "hide_issuer",
    "sees",
    "viewer_for",
]
