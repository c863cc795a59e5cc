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
    | IpoCommand
)
