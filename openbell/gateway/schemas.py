"""Request bodies (msgspec structs; unknown fields are refused). Numbers that carry money,
prices or quantities are decimal strings, never JSON numbers."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from openbell.core.types import OrderType, Phase, SelfTradePrevention, Side, TimeInForce

RequestId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]{1,40}$", description="idempotency key")]
ClientOrderId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]{1,40}$")]
AccountNo = Annotated[int, Meta(ge=0, le=(1 << 31) - 1)]
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


class ErrorBody(msgspec.Struct):
    code: str
    message: str


class CommandResponse(msgspec.Struct):
    seq: int
    request_id: str
    duplicate: bool
    events: list[dict[str, object]]
