"""Request bodies (msgspec structs; unknown fields are refused). Numbers that carry money,
prices or quantities are decimal strings, never JSON numbers."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from openbell.core.ipo.messages import LotteryMethod
from openbell.core.types import (
    BPS_DENOMINATOR,
    EXTERNAL_ACCOUNT,
    MAX_AMOUNT_MINOR,
    MAX_BATCH_ACCOUNTS,
    MAX_FEE_BPS,
    MAX_QUANTITY_LOTS,
    OrderType,
    Phase,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

RequestId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]{1,40}$", description="idempotency key")]
ClientOrderId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]{1,40}$")]
AccountNo = Annotated[int, Meta(ge=0, le=(1 << 31) - 1)]
# a setting the core range-checks in the user's words; beyond 64 bits it could not even be sent
Int64 = Annotated[int, Meta(ge=-(1 << 63), le=(1 << 63) - 1)]
Decimal = Annotated[str, Meta(max_length=40, examples=["101.25"], description="decimal string")]
Symbol = Annotated[str, Meta(min_length=1, max_length=16)]
Asset = Annotated[str, Meta(min_length=1, max_length=16)]
Reason = Annotated[str, Meta(max_length=200)]


class _Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    request_id: RequestId | None = None


class PlaceOrderBody(_Body):
    account: AccountNo
    symbol: Symbol
    side: Side
    quantity: Decimal
    price: Decimal | None = None
    order_type: OrderType = OrderType.LIMIT
    tif: TimeInForce = TimeInForce.GTC
    stop_price: Decimal | None = None
    post_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_NEWEST
    client_order_id: ClientOrderId | None = None


MAX_BATCH_ORDERS = 100
"""Orders in one batch (``POST /v1/orders/batch``, the WebSocket order entry's ``batch``)."""


class OrderBatchBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Each item is a ``PlaceOrderBody``, checked on its own (one bad item refuses itself)."""

    orders: Annotated[list[msgspec.Raw], Meta(min_length=1, max_length=MAX_BATCH_ORDERS)]


class ReplaceOrderBody(_Body):
    price: Decimal
    quantity: Decimal


class MassCancelBody(_Body):
    account: AccountNo | None = None
    symbol: Symbol | None = None


class MoneyBody(_Body):
    account: AccountNo
    asset: Asset
    amount: Decimal


class PhaseBody(_Body):
    phase: Phase


class HaltBody(_Body):
    halted: bool
    reason: Reason = ""


class KillSwitchBody(_Body):
    reason: Reason = ""


# -- IPO (openbell.gateway.ipo) ----------------------------------------------------------------
Count = Annotated[int, Meta(ge=1, le=MAX_QUANTITY_LOTS)]
Count0 = Annotated[int, Meta(ge=0, le=MAX_QUANTITY_LOTS)]
ClientSubscriptionId = Annotated[
    str, Meta(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="idempotency key of the subscription")
]
SeedCommitment = Annotated[
    str, Meta(pattern=r"^([0-9a-f]{64})?$", description="lowercase hex SHA-256 of the seed")
]
SeedHex = Annotated[
    str, Meta(pattern=r"^([0-9a-fA-F]{2}){1,1024}$", description="the revealed seed, hex")
]


class IpoOfferingBody(_Body):
    """An ``OfferingSpec`` with the price as a decimal string (cash asset per share). Shares
    (``unit_shares``, ``shares_offered``) are integers in minor units of the new share asset
    (``10**share_scale`` a share); units are integers."""

    symbol: Symbol
    cash_asset: Asset
    price: Decimal
    unit_shares: Count
    max_units: Count
    shares_offered: Annotated[int, Meta(ge=1, le=MAX_AMOUNT_MINOR)]
    fee_bps: Annotated[int, Meta(ge=0, le=MAX_FEE_BPS)] = 0
    method: LotteryMethod = LotteryMethod.TAIL_LOTTERY
    seed_commitment: SeedCommitment = ""
    chunk_rows: Annotated[int, Meta(ge=1, le=MAX_BATCH_ACCOUNTS)] = 1_000_000
    issuer_account: AccountNo = EXTERNAL_ACCOUNT
    share_scale: Annotated[int, Meta(ge=0, le=18)] = 0
    price_is_maximum: bool = False
    cancellable: bool = False


class IpoSubscribeBody(_Body):
    account: AccountNo
    units: Count
    client_subscription_id: ClientSubscriptionId


class IpoStepBody(_Body):
    """A phase step that takes nothing but an optional request id (close, number)."""


class IpoPriceBody(_Body):
    final_price: Decimal


class IpoBasisTier(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One row of a ballot's basis of allotment (``BallotTier``)."""

    min_units: Count
    max_units: Count
    base_units: Count0 = 0
    extra_units: Count0 = 0
    winners: Count0 = 0


class IpoDrawBody(_Body):
    seed_hex: SeedHex
    basis: Annotated[list[IpoBasisTier], Meta(max_length=1000)] = msgspec.field(
        default_factory=list
    )


class IpoSettleBody(_Body):
    chunk: Count0


class IpoSettleAllBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Settle every chunk not yet settled (at most ``max_chunks`` in this request). No request
    id: settling is idempotent per chunk (a settled chunk is skipped)."""

    max_chunks: Annotated[int, Meta(ge=1, le=10_000)] = 1000


class IpoListBody(_Body):
    lot_shares: Count = 1
    tick: Decimal | None = None  # cash asset per share; None: one minor unit
    band_bps: Annotated[int, Meta(ge=0, le=BPS_DENOMINATOR)] = 0


AssetCode = Annotated[str, Meta(pattern=r"^[A-Z][A-Z0-9._-]{0,15}$")]
Bps = Annotated[int, Meta(ge=0, le=BPS_DENOMINATOR)]


class AssetBody(_Body):
    """A new asset: its code and its scale (digits after the point of one whole unit)."""

    asset: AssetCode
    scale: Annotated[int, Meta(ge=0, le=18)]


class InstrumentBody(_Body):
    """A new instrument, in decimals: ``tick_size`` is the price step (quote asset per one
    whole base unit), ``lot_quantity`` the quantity step (whole base units)."""

    symbol: AssetCode
    base_asset: AssetCode
    quote_asset: AssetCode
    tick_size: Decimal
    lot_quantity: Decimal = "1"
    reference_price: Decimal | None = None
    band_bps: Bps = 0
    market_protection_bps: Bps = 500
    maker_fee_bps: Annotated[int, Meta(ge=0, le=MAX_FEE_BPS)] = 0
    taker_fee_bps: Annotated[int, Meta(ge=0, le=MAX_FEE_BPS)] = 0
    max_order_quantity: Decimal | None = None
    max_notional: Decimal | None = None


class AccountsBody(_Body):
    count: Annotated[int, Meta(ge=1, le=1_000_000)] = 1


class ErrorBody(msgspec.Struct):
    code: str
    message: str


class CommandResponse(msgspec.Struct):
    seq: int
    request_id: str
    duplicate: bool
    events: list[dict[str, object]]
