"""Enumerations, identifier types and hard limits shared by commands, events and state.

Every number here is an integer: prices in ticks, quantities in lots, money in minor units.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, NewType

AccountId = NewType("AccountId", int)
OrderId = NewType("OrderId", int)

# Hard limits (TigerBeetle style: everything has a bound, checked before any mutation).
# Price x quantity must fit a signed 64-bit integer (cumulative notional in events, msgpack).
MAX_PRICE_TICKS: Final = (1 << 31) - 1
MAX_QUANTITY_LOTS: Final = (1 << 31) - 1
MAX_AMOUNT_MINOR: Final = (1 << 62) - 1  # balances are stored as signed 64-bit integers
MAX_FEE_BPS: Final = 1_000
MAX_ID_LENGTH: Final = 64
MAX_SYMBOL_LENGTH: Final = 16
MAX_ACCOUNTS: Final = 1 << 31
MAX_BATCH_ACCOUNTS: Final = 100_000_000
MAX_CANCEL_ORDERS: Final = 100_000  # order ids in one CancelOrders (a session's open orders)
BPS_DENOMINATOR: Final = 10_000

# System accounts: every asset sums to zero over all accounts, these included.
EXTERNAL_ACCOUNT: Final = AccountId(0)  # the outside world (bank, custodian); may go negative
FEE_ACCOUNT: Final = AccountId(1)  # fee income
CLEARING_ACCOUNT: Final = AccountId(2)
IPO_ESCROW_ACCOUNT: Final = AccountId(3)
FIRST_USER_ACCOUNT: Final = AccountId(16)


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"
    STOP = "STOP"  # stop-market: on trigger becomes a market order (protected)
    STOP_LIMIT = "STOP_LIMIT"  # on trigger becomes a limit order


class TimeInForce(StrEnum):
    GTC = "GTC"
    DAY = "DAY"
    IOC = "IOC"
    FOK = "FOK"


class SelfTradePrevention(StrEnum):
    CANCEL_NEWEST = "CANCEL_NEWEST"
    CANCEL_OLDEST = "CANCEL_OLDEST"
    CANCEL_BOTH = "CANCEL_BOTH"
    DECREMENT_AND_CANCEL = "DECREMENT_AND_CANCEL"


class Phase(StrEnum):
    CLOSED = "CLOSED"
    PRE_OPEN = "PRE_OPEN"  # call auction: orders rest, nothing matches
    CONTINUOUS = "CONTINUOUS"
    HALTED = "HALTED"  # only cancels
    # A call auction the volatility breaker started: orders rest, nothing matches, and the
    # instrument re-opens through the uncross when its time is up (``SetVolatilityBand``).
    VOLATILITY_AUCTION = "VOLATILITY_AUCTION"


class AccountState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCE_ONLY = "REDUCE_ONLY"
    SUSPENDED = "SUSPENDED"


class OrderStatus(StrEnum):
    NEW = "NEW"
    PENDING_TRIGGER = "PENDING_TRIGGER"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


class CancelReason(StrEnum):
    USER = "USER"
    MASS_CANCEL = "MASS_CANCEL"
    KILL_SWITCH = "KILL_SWITCH"
    IOC_REMAINDER = "IOC_REMAINDER"
    FOK_UNFILLED = "FOK_UNFILLED"
    MARKET_REMAINDER = "MARKET_REMAINDER"
    PROTECTION_PRICE = "PROTECTION_PRICE"
    SELF_TRADE = "SELF_TRADE"
    DAY_EXPIRY = "DAY_EXPIRY"
    REPLACE = "REPLACE"
    ACCOUNT_SUSPENDED = "ACCOUNT_SUSPENDED"  # a pending stop of a suspended account triggered
    LOSS_LIMIT = "LOSS_LIMIT"  # the account's floating loss crossed its red line
    SESSION_ENDED = "SESSION_ENDED"  # cancel-on-disconnect: the session that placed it ended


class RejectReason(StrEnum):
    """Typed reason codes: a rejected command changes nothing and emits one Rejected event."""

    UNKNOWN_INSTRUMENT = "UNKNOWN_INSTRUMENT"
    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
    UNKNOWN_ASSET = "UNKNOWN_ASSET"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    UNKNOWN_HOLD = "UNKNOWN_HOLD"
    DUPLICATE_INSTRUMENT = "DUPLICATE_INSTRUMENT"
    DUPLICATE_ASSET = "DUPLICATE_ASSET"
    DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"
    DUPLICATE_HOLD = "DUPLICATE_HOLD"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    INVALID_PRICE = "INVALID_PRICE"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    INVALID_FIELD = "INVALID_FIELD"
    INVALID_ORDER_TYPE = "INVALID_ORDER_TYPE"
    PRICE_OUT_OF_BAND = "PRICE_OUT_OF_BAND"
    MAX_QUANTITY_EXCEEDED = "MAX_QUANTITY_EXCEEDED"
    MAX_NOTIONAL_EXCEEDED = "MAX_NOTIONAL_EXCEEDED"
    MAX_OPEN_ORDERS_EXCEEDED = "MAX_OPEN_ORDERS_EXCEEDED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    INSUFFICIENT_POSITION = "INSUFFICIENT_POSITION"
    BALANCE_OVERFLOW = "BALANCE_OVERFLOW"
    WRONG_PHASE = "WRONG_PHASE"
    INSTRUMENT_HALTED = "INSTRUMENT_HALTED"
    VENUE_HALTED = "VENUE_HALTED"
    ACCOUNT_SUSPENDED = "ACCOUNT_SUSPENDED"
    REDUCE_ONLY = "REDUCE_ONLY"
    POST_ONLY_WOULD_TAKE = "POST_ONLY_WOULD_TAKE"
    FOK_NOT_FILLABLE = "FOK_NOT_FILLABLE"
    NO_LIQUIDITY = "NO_LIQUIDITY"
    NO_REFERENCE_PRICE = "NO_REFERENCE_PRICE"
    NOT_ORDER_OWNER = "NOT_ORDER_OWNER"
    HOLD_ALREADY_RESOLVED = "HOLD_ALREADY_RESOLVED"
    TOO_MANY_ACCOUNTS = "TOO_MANY_ACCOUNTS"
    SYSTEM_ACCOUNT = "SYSTEM_ACCOUNT"
    PROTECTION_MODE = "PROTECTION_MODE"  # surge protection: new orders refused, cancels taken
    IPO_UNKNOWN_OFFERING = "IPO_UNKNOWN_OFFERING"
    IPO_DUPLICATE_OFFERING = "IPO_DUPLICATE_OFFERING"
    IPO_DUPLICATE_SUBSCRIPTION = "IPO_DUPLICATE_SUBSCRIPTION"
    IPO_UNKNOWN_SUBSCRIPTION = "IPO_UNKNOWN_SUBSCRIPTION"
    IPO_SEED_MISMATCH = "IPO_SEED_MISMATCH"
    IPO_CONTROL_TOTALS_MISMATCH = "IPO_CONTROL_TOTALS_MISMATCH"
    IPO_DUPLICATE_ROWS = "IPO_DUPLICATE_ROWS"
    IPO_CHUNK_ALREADY_SETTLED = "IPO_CHUNK_ALREADY_SETTLED"
    IPO_WRONG_METHOD = "IPO_WRONG_METHOD"
    IPO_CANCEL_NOT_ALLOWED = "IPO_CANCEL_NOT_ALLOWED"
    IPO_PRICE_NOT_SET = "IPO_PRICE_NOT_SET"
    IPO_INVALID_BASIS = "IPO_INVALID_BASIS"
    IPO_PRICE_ALREADY_SET = "IPO_PRICE_ALREADY_SET"


class BreakerScope(StrEnum):
    """What a circuit breaker watches: the whole venue, one account, or the house accounts."""

    VENUE = "VENUE"
    ACCOUNT = "ACCOUNT"
    HOUSE = "HOUSE"


class Breaker(StrEnum):
    SURGE = "SURGE"
    LOSS_LIMIT = "LOSS_LIMIT"
    VOLATILITY = "VOLATILITY"


class BandReference(StrEnum):
    """Where a volatility band is centred: the last auction's price, or the volume-weighted
    average price of the instrument's trades over the band's window."""

    AUCTION = "AUCTION"
    AVERAGE = "AVERAGE"
