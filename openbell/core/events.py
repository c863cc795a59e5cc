"""Events: everything the core says. Tagged msgspec structs; every event carries the ``seq`` of
the command that caused it, so consumers can apply them exactly once.

Execution reports: ``OrderAccepted``, ``OrderCancelled``, ``OrderExpired`` and
``OrderReplaced`` report those transitions; ``Execution`` reports each fill for each side with
cumulative and leaves quantity and the cumulative notional (in tick-lots), so the average price
``cum_notional_ticks / cum_lots`` is exact.
"""

from __future__ import annotations

import msgspec

from openbell.core.commands import InstrumentSpec
from openbell.core.figures import Figure
from openbell.core.ipo.messages import IpoEvent
from openbell.core.types import (
    AccountState,
    Breaker,
    BreakerScope,
    CancelReason,
    OrderStatus,
    OrderType,
    Phase,
    RejectReason,
    Side,
    TimeInForce,
)


class _Event(msgspec.Struct, tag=True, frozen=True, gc=False):
    seq: int


class Rejected(_Event, frozen=True):
    """A refused command; nothing changed. ``detail`` is in the core's integer units; where it
    quotes figures, ``template`` is the same text with ``{0}``, ``{1}``, ... in their place and
    ``figures`` carries them with their units, for the edges to render in decimals."""

    request_id: str
    reason: RejectReason
    detail: str
    template: str = ""
    figures: tuple[Figure, ...] = ()


class DuplicateRequest(_Event, frozen=True):
    """A repeated request id: nothing changed; the original result is ``original_seq``'s."""

    request_id: str
    original_seq: int


class AssetCreated(_Event, frozen=True):
    asset: str
    scale: int


class InstrumentCreated(_Event, frozen=True):
    spec: InstrumentSpec
    phase: Phase


class AccountsOpened(_Event, frozen=True):
    first_account: int
    count: int


class BalanceChanged(_Event, frozen=True):
    """The balances of one (account, asset) after the command."""

    account: int
    asset: str
    available_minor: int
    frozen_minor: int


class Transferred(_Event, frozen=True):
    """A money movement outside trading (deposit, withdrawal, operator transfer, posted hold)."""

    kind: str
    from_account: int
    to_account: int
    asset: str
    amount_minor: int


class BulkDeposited(_Event, frozen=True):
    first_account: int
    count: int
    asset: str
    amount_minor: int  # per account


class BatchDeposited(_Event, frozen=True):
    """A DepositBatch: ``rows`` accounts in ``first_account``..``last_account`` received
    ``total_minor`` in all (the per-account amounts are in the command)."""

    asset: str
    rows: int
    first_account: int
    last_account: int
    total_minor: int


class HoldFrozen(_Event, frozen=True):
    hold_id: str
    account: int
    asset: str
    amount_minor: int


class HoldResolved(_Event, frozen=True):
    hold_id: str
    posted_minor: int
    released_minor: int
    to_account: int


class OrderAccepted(_Event, frozen=True):
    order_id: int
    account: int
    symbol: str
    client_order_id: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price_ticks: int
    quantity_lots: int
    stop_price_ticks: int
    status: OrderStatus


class OrderTriggered(_Event, frozen=True):
    order_id: int
    account: int
    symbol: str
    last_price_ticks: int


class Trade(_Event, frozen=True):
    trade_id: int
    symbol: str
    price_ticks: int
    quantity_lots: int
    aggressor: Side | None  # None: the trade came out of a call auction
    maker_order_id: int
    taker_order_id: int
    buy_account: int
    sell_account: int
    buy_fee_minor: int
    sell_fee_minor: int


class Execution(_Event, frozen=True):
    order_id: int
    account: int
    status: OrderStatus
    last_price_ticks: int
    last_lots: int
    cum_lots: int
    leaves_lots: int
    cum_notional_ticks: int


class OrderCancelled(_Event, frozen=True):
    order_id: int
    account: int
    reason: CancelReason
    cum_lots: int
    cancelled_lots: int
    leaves_lots: int  # > 0: only part was cancelled (self-trade decrement); the order lives on


class OrderExpired(_Event, frozen=True):
    order_id: int
    account: int
    cum_lots: int
    expired_lots: int


class OrderReplaced(_Event, frozen=True):
    order_id: int
    account: int
    price_ticks: int
    quantity_lots: int
    leaves_lots: int
    priority_kept: bool


class BookDelta(_Event, frozen=True):
    """Level-2 change: the new total of a price level (0: the level is gone)."""

    symbol: str
    side: Side
    price_ticks: int
    quantity_lots: int


class PhaseChanged(_Event, frozen=True):
    symbol: str
    phase: Phase
    reference_price_ticks: int


class AuctionUncrossed(_Event, frozen=True):
    symbol: str
    price_ticks: int
    volume_lots: int
    imbalance_lots: int


class AccountStateChanged(_Event, frozen=True):
    account: int
    state: AccountState
    operator: str
    reason: str


class KillSwitchActivated(_Event, frozen=True):
    account: int
    operator: str
    reason: str
    cancelled_orders: int


class VenueHaltChanged(_Event, frozen=True):
    halted: bool
    operator: str
    reason: str


class ProtectionStarted(_Event, frozen=True):
    """Surge protection tripped: ``rate_per_s`` commands this second against a baseline of
    ``baseline_milli_per_s`` / 1000 per second (threshold ``threshold_per_s``)."""

    scope: BreakerScope
    account: int | None
    rate_per_s: int
    baseline_milli_per_s: int
    threshold_per_s: int


class ProtectionEnded(_Event, frozen=True):
    scope: BreakerScope
    account: int | None
    rate_per_s: int  # the last second's count
    baseline_milli_per_s: int
    operator: str  # empty: ended by itself after the hold-down


class LossLimitTripped(_Event, frozen=True):
    """A red line crossed: ``loss_minor`` = ``peak_minor`` - ``value_minor`` > ``limit_minor``
    (values net of deposits, in ``asset`` minor units)."""

    scope: BreakerScope
    account: int | None
    asset: str
    loss_minor: int
    limit_minor: int
    peak_minor: int
    value_minor: int
    cancelled: int  # the account's orders cancelled (0 for the house)


class LossLimitReset(_Event, frozen=True):
    scope: BreakerScope
    account: int | None
    asset: str
    operator: str
    reason: str


class VolatilityInterruption(_Event, frozen=True):
    """A trade at ``price_ticks`` would have printed outside ``[low_ticks, high_ticks]`` around
    ``reference_ticks``: it did not, and ``symbol`` is in a volatility auction until
    ``until_ns``."""

    symbol: str
    price_ticks: int
    reference_ticks: int
    low_ticks: int
    high_ticks: int
    until_ns: int


class BreakerSettingsChanged(_Event, frozen=True):
    """A breaker's settings as an operator set them (``subject``: account, symbol or asset)."""

    breaker: Breaker
    scope: BreakerScope
    subject: str
    settings: dict[str, int | str | bool | list[int]]
    operator: str


Event = (
    Rejected
    | DuplicateRequest
    | AssetCreated
    | InstrumentCreated
    | AccountsOpened
    | BalanceChanged
    | Transferred
    | BulkDeposited
    | BatchDeposited
    | HoldFrozen
    | HoldResolved
    | OrderAccepted
    | OrderTriggered
    | Trade
    | Execution
    | OrderCancelled
    | OrderExpired
    | OrderReplaced
    | BookDelta
    | PhaseChanged
    | AuctionUncrossed
    | AccountStateChanged
    | KillSwitchActivated
    | VenueHaltChanged
    | ProtectionStarted
    | ProtectionEnded
    | LossLimitTripped
    | LossLimitReset
    | VolatilityInterruption
    | BreakerSettingsChanged
    | IpoEvent
)
