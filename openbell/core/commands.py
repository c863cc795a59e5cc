"""Commands: the only way state changes. Tagged msgspec structs, encodable as msgpack and JSON.

The sequencer stamps each command with ``seq`` and ``ts_ns`` outside the struct (see
``Engine.apply``). Every client command carries a ``request_id`` chosen by the client; a repeat
of a (account, request_id) pair inside the idempotency window changes nothing.
"""

from __future__ import annotations

import msgspec

from openbell.core.ipo.messages import IpoCommand
from openbell.core.types import (
    AccountState,
    BandReference,
    Breaker,
    BreakerScope,
    CancelReason,
    OrderType,
    Phase,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

SCHEMA_VERSION = 1


class _Command(msgspec.Struct, tag=True, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    request_id: str = ""


class InstrumentSpec(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """Static description of a tradable instrument.

    ``lot_size`` is in base-asset minor units per lot; ``tick_value`` is the quote-asset minor
    units that one tick of price is worth on one lot, so a fill's cash is
    ``price_ticks * quantity_lots * tick_value`` exactly.
    """

    symbol: str
    base_asset: str
    quote_asset: str
    lot_size: int = 1
    tick_value: int = 1
    reference_price_ticks: int = 0
    band_bps: int = 0  # 0: no price band (e.g. an IPO's first day)
    market_protection_bps: int = 500
    maker_fee_bps: int = 0
    taker_fee_bps: int = 0
    max_order_lots: int = 1_000_000
    max_notional_minor: int = 1 << 60


class CreateAsset(_Command, frozen=True):
    asset: str
    scale: int  # digits after the decimal point of one whole unit


class CreateInstrument(_Command, frozen=True):
    spec: InstrumentSpec


class OpenAccounts(_Command, frozen=True):
    """Open ``count`` consecutive user accounts; ids are assigned densely by the engine."""

    count: int = 1


class Deposit(_Command, frozen=True):
    account: int
    asset: str
    amount_minor: int


class DepositMany(_Command, frozen=True):
    """Fund ``count`` consecutive accounts with the same amount (vectorised bulk funding)."""

    first_account: int
    count: int
    asset: str
    amount_minor: int


class DepositBatch(_Command, frozen=True):
    """Fund many accounts, each with its own amount, in one command (columnar bulk funding):
    ``accounts`` and ``amounts_minor`` are little-endian int64 arrays of the same length.
    Every row is checked first; any bad row refuses the whole batch."""

    asset: str
    accounts: bytes
    amounts_minor: bytes


class Withdraw(_Command, frozen=True):
    account: int
    asset: str
    amount_minor: int


class TransferLeg(msgspec.Struct, frozen=True, gc=False):
    from_account: int
    to_account: int
    asset: str
    amount_minor: int


class Transfer(_Command, frozen=True):
    """Linked transfers: every leg succeeds or none does."""

    legs: tuple[TransferLeg, ...]


class Freeze(_Command, frozen=True):
    """First phase of a two-phase transfer: move ``amount_minor`` from available to frozen."""

    hold_id: str
    account: int
    asset: str
    amount_minor: int


class PostHold(_Command, frozen=True):
    """Second phase: pay ``amount_minor`` of the hold to ``to_account``; the rest is released."""

    hold_id: str
    to_account: int
    amount_minor: int


class ReleaseHold(_Command, frozen=True):
    hold_id: str


class SetAccountState(_Command, frozen=True):
    account: int
    state: AccountState
    operator: str = ""
    reason: str = ""


class KillSwitch(_Command, frozen=True):
    """Cancel every open order of an account and suspend it."""

    account: int
    operator: str
    reason: str


class SetPhase(_Command, frozen=True):
    """Move an instrument between phases. PRE_OPEN -> CONTINUOUS uncrosses the call auction;
    -> CLOSED expires DAY orders and makes the last trade the next reference price."""

    symbol: str
    phase: Phase


class SetVenueHalt(_Command, frozen=True):
    halted: bool
    operator: str = ""
    reason: str = ""


class PlaceOrder(_Command, frozen=True):
    account: int
    symbol: str
    client_order_id: str
    side: Side
    quantity_lots: int
    price_ticks: int = 0  # limit price; ignored for MARKET and STOP
    order_type: OrderType = OrderType.LIMIT
    tif: TimeInForce = TimeInForce.GTC
    stop_price_ticks: int = 0
    post_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_NEWEST


class CancelOrder(_Command, frozen=True):
    account: int
    order_id: int


class ReplaceOrder(_Command, frozen=True):
    """Quantity down at the same price keeps time priority; a price change or more quantity
    loses it. ``quantity_lots`` is the new total (original) quantity."""

    account: int
    order_id: int
    price_ticks: int
    quantity_lots: int


class MassCancel(_Command, frozen=True):
    """Cancel open orders of one account, one instrument, or one account on one instrument."""

    account: int | None = None
    symbol: str | None = None


class CancelOrders(_Command, frozen=True):
    """Cancel the named open orders of one account in one command: what a trading session
    sends when it ends with cancel-on-disconnect. An order already filled or cancelled is
    skipped, not refused (the session raced with the market); one that belongs to another
    account refuses the whole command. At most ``MAX_CANCEL_ORDERS`` ids."""

    account: int
    order_ids: tuple[int, ...]
    reason: CancelReason = CancelReason.SESSION_ENDED


# ----------------------------------------------------------------------------------------------
# Circuit breakers (``breakers.py``): settings are state, set by journaled operator commands.
# ----------------------------------------------------------------------------------------------
class SetSurgeProtection(_Command, frozen=True):
    """Surge protection for the venue (all order entry) or for every account (each account's
    new orders and replaces). It trips when the commands counted in one second exceed
    ``ratio_pct`` % of the baseline (an EWMA of the per-second rate over ``baseline_window_s``)
    and also exceed ``floor_per_s``; it ends once no second has exceeded the threshold for
    ``hold_down_s`` seconds. ``enabled`` False turns the scope off (and ends its protection)."""

    scope: BreakerScope
    enabled: bool = True
    ratio_pct: int = 300
    floor_per_s: int = 1_000
    baseline_window_s: int = 300
    hold_down_s: int = 30
    operator: str = ""


class SetMarketMaker(_Command, frozen=True):
    """Mark an account as a market maker: it may still add orders while the venue is in
    protection mode."""

    account: int
    market_maker: bool = True
    operator: str = ""


class SetLossLimit(_Command, frozen=True):
    """A red line on floating loss over a rolling window, in ``asset`` minor units: the loss is
    the drop of (cash in ``asset`` + positions in instruments quoted in ``asset`` marked at
    their last trade price - net deposits) from its highest value in the window. ``account``:
    that account goes reduce-only and its orders are cancelled when it is crossed. ``account``
    None: the total of ``house_accounts``, and crossing it halts the venue. ``limit_minor`` 0
    removes the red line."""

    asset: str
    limit_minor: int
    account: int | None = None
    house_accounts: tuple[int, ...] = ()
    window_s: int = 900
    operator: str = ""


class SetVolatilityBand(_Command, frozen=True):
    """A dynamic band of ``band_bps`` around ``reference`` (the last auction price, or the
    average price of the trades over ``window_s``). A trade beyond it does not happen: the
    instrument moves to a volatility auction for ``auction_s`` seconds, then re-opens through
    the uncross. ``band_bps`` 0 removes the band."""

    symbol: str
    band_bps: int
    reference: BandReference = BandReference.AVERAGE
    window_s: int = 300
    auction_s: int = 120
    operator: str = ""


class ResumeBreaker(_Command, frozen=True):
    """An operator ends a trip: SURGE ends protection (``account`` None: the venue's);
    LOSS_LIMIT re-activates the account (None: resumes the halted venue) and restarts its loss
    window; VOLATILITY re-opens ``symbol``'s volatility auction now, through the uncross."""

    breaker: Breaker
    account: int | None = None
    asset: str = ""
    symbol: str = ""
    operator: str = ""
    reason: str = ""


class Tick(_Command, frozen=True):
    """Nothing but time: the sequencer sends it when a breaker's timer is due and no other
    command arrives (``Engine.next_timer_ns``), so auctions re-open and protection ends on time."""


Command = (
    CreateAsset
    | CreateInstrument
    | OpenAccounts
    | Deposit
    | DepositMany
    | DepositBatch
    | Withdraw
    | Transfer
    | Freeze
    | PostHold
    | ReleaseHold
    | SetAccountState
    | KillSwitch
    | SetPhase
    | SetVenueHalt
    | PlaceOrder
    | CancelOrder
    | ReplaceOrder
    | MassCancel
    | CancelOrders
    | SetSurgeProtection
    | SetMarketMaker
    | SetLossLimit
    | SetVolatilityBand
    | ResumeBreaker
    | Tick
    | IpoCommand
)
