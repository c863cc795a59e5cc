"""IPO commands, events, enums and reason codes.

The command and event structs are tagged msgspec structs with the same shape as
``openbell.core.commands._Command`` (keyword-only, ``request_id`` first) and
``openbell.core.events._Event`` (``seq`` first), so ``commands.Command`` and ``events.Event``
take them into their unions unchanged. This module imports nothing from commands/events.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from openbell.core.types import EXTERNAL_ACCOUNT, RejectReason


class IpoPhase(StrEnum):
    OPEN = "OPEN"  # subscriptions and cancellations
    CLOSED = "CLOSED"
    NUMBERED = "NUMBERED"  # allotment numbers assigned
    DRAWN = "DRAWN"  # winners known (tail lottery or external results); settling
    SETTLED = "SETTLED"  # every chunk settled
    LISTED = "LISTED"  # proceeds and unsold shares paid out to the issuer


class LotteryMethod(StrEnum):
    TAIL_LOTTERY = "tail_lottery"  # A-share style: winning tails of allotment numbers
    BALLOT = "ballot"  # Hong Kong style: a basis of allotment per size tier, seeded ballot
    EXTERNAL = "external"  # the exchange's results file


class SubscriptionStatus(StrEnum):
    """A stored subscription's status. SUBMITTED (in flight) and REJECTED (a refused command)
    live at the edges: the core stores only accepted subscriptions."""

    FROZEN = "FROZEN"  # accepted, funds held; before the draw
    WIN = "WIN"  # drawn, at least one unit won; not yet settled
    LOSE = "LOSE"  # drawn, nothing won; not yet refunded
    SETTLED = "SETTLED"  # won units paid for and shares delivered, the rest released
    REFUNDED = "REFUNDED"  # nothing won, the whole hold released
    CANCELLED = "CANCELLED"  # cancelled before close, the hold released


def _code(name: str, fallback: RejectReason) -> RejectReason:
    """The IPO reason code ``name`` once the engine wiring adds it to ``RejectReason``; until
    then the nearest existing code (the detail text says which)."""
    return RejectReason.__members__.get(name, fallback)


UNKNOWN_OFFERING = _code("IPO_UNKNOWN_OFFERING", RejectReason.UNKNOWN_INSTRUMENT)
DUPLICATE_OFFERING = _code("IPO_DUPLICATE_OFFERING", RejectReason.DUPLICATE_ASSET)
DUPLICATE_SUBSCRIPTION = _code("IPO_DUPLICATE_SUBSCRIPTION", RejectReason.INVALID_FIELD)
UNKNOWN_SUBSCRIPTION = _code("IPO_UNKNOWN_SUBSCRIPTION", RejectReason.UNKNOWN_HOLD)
SEED_MISMATCH = _code("IPO_SEED_MISMATCH", RejectReason.INVALID_FIELD)
CONTROL_TOTALS_MISMATCH = _code("IPO_CONTROL_TOTALS_MISMATCH", RejectReason.INVALID_AMOUNT)
DUPLICATE_ROWS = _code("IPO_DUPLICATE_ROWS", RejectReason.INVALID_FIELD)
CHUNK_ALREADY_SETTLED = _code("IPO_CHUNK_ALREADY_SETTLED", RejectReason.HOLD_ALREADY_RESOLVED)
WRONG_METHOD = _code("IPO_WRONG_METHOD", RejectReason.INVALID_FIELD)
CANCEL_NOT_ALLOWED = _code("IPO_CANCEL_NOT_ALLOWED", RejectReason.WRONG_PHASE)
PRICE_NOT_SET = _code("IPO_PRICE_NOT_SET", RejectReason.WRONG_PHASE)
PRICE_ALREADY_SET = _code("IPO_PRICE_ALREADY_SET", RejectReason.WRONG_PHASE)
INVALID_BASIS = _code("IPO_INVALID_BASIS", RejectReason.INVALID_FIELD)


class OfferingSpec(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """An offering. ``symbol`` becomes a new asset (the shares, scale ``share_scale``);
    ``price_minor`` is in ``cash_asset`` minor units per share. ``shares_offered`` (a multiple
    of ``unit_shares``) is issued at creation from the external account (the issuer) to the IPO
    escrow account. A subscription of n units freezes
    ``n * unit_shares * price_minor`` + fee, fee = floor(notional * fee_bps / 10000).
    ``seed_commitment`` is the lowercase hex SHA-256 of the lottery seed (tail_lottery and
    ballot). Settlement runs in chunks of ``chunk_rows`` consecutive subscriptions. At listing
    the proceeds and unsold shares go to ``issuer_account``.

    ``price_is_maximum``: ``price_minor`` is the maximum price; holds are taken at it, and
    ``IpoSetPrice`` fixes the final price (<= maximum) after close and before the draw.
    Settlement charges the final price and releases the rest of each hold.
    ``cancellable``: a subscription may be cancelled (hold released) while the offering is open;
    otherwise cancellation is refused (A-share and HK subscriptions are not revocable)."""

    symbol: str
    cash_asset: str
    price_minor: int
    unit_shares: int
    max_units: int
    shares_offered: int
    fee_bps: int = 0
    method: LotteryMethod = LotteryMethod.TAIL_LOTTERY
    seed_commitment: str = ""
    chunk_rows: int = 1_000_000
    issuer_account: int = EXTERNAL_ACCOUNT
    share_scale: int = 0
    price_is_maximum: bool = False
    cancellable: bool = False


class BallotTier(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """One row of a Hong Kong-style basis of allotment: applications of ``min_units`` to
    ``max_units`` units (inclusive) each receive ``base_units``, and ``winners`` of them,
    picked by the seeded ballot, receive ``extra_units`` more. Nobody receives more than they
    applied for: ``base_units + extra_units <= min_units``."""

    min_units: int
    max_units: int
    base_units: int = 0
    extra_units: int = 0
    winners: int = 0


class BallotTierResult(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A published basis row: the tier, how many applied in it, and what was allotted."""

    min_units: int
    max_units: int
    applicants: int
    units_applied: int
    base_units: int
    extra_units: int
    winners: int
    allotted_units: int


class _IpoCommand(
    msgspec.Struct, tag=True, frozen=True, gc=False, kw_only=True, omit_defaults=True
):
    request_id: str = ""
    symbol: str


class IpoCreateOffering(_IpoCommand, frozen=True):
    spec: OfferingSpec


class IpoSubscribe(_IpoCommand, frozen=True):
    account: int
    units: int
    client_subscription_id: str


class IpoSubscribeBatch(_IpoCommand, frozen=True):
    """Many accounts at once: ``accounts`` and ``units`` are little-endian int64 arrays of the
    same length. All rows are validated first; any bad row rejects the whole batch."""

    accounts: bytes
    units: bytes


class IpoCancelSubscription(_IpoCommand, frozen=True):
    account: int


class IpoClose(_IpoCommand, frozen=True):
    pass


class IpoNumber(_IpoCommand, frozen=True):
    pass


class IpoSetPrice(_IpoCommand, frozen=True):
    """The final offer price of a ``price_is_maximum`` offering (phase CLOSED or NUMBERED)."""

    final_price_minor: int


class IpoDraw(_IpoCommand, frozen=True):
    """Reveal the seed and draw. sha256(seed) must equal the offering's ``seed_commitment``
    (made when the offering was created); the draw's randomness is
    ``lottery.draw_entropy(seed, numbering_sha256)``, the seed together with the SHA-256 of
    the numbering file recorded at ``IpoNumber``. ``basis`` is the ballot's basis of
    allotment (method ``ballot`` only: one tier for every application size, tiers disjoint)."""

    seed: bytes
    basis: list[BallotTier] = msgspec.field(default_factory=list)


class IpoImportResults(_IpoCommand, frozen=True):
    """External lottery results: winners only, ``accounts``/``won_units`` little-endian int64,
    with the file's control totals and content hash."""

    accounts: bytes
    won_units: bytes
    total_won_units: int
    total_shares: int
    total_amount_minor: int
    source_sha256: str = ""


class IpoImportTails(_IpoCommand, frozen=True):
    """External lottery results as the exchange's winning tails (A-share style: a number wins
    if it ends in one of them), matched against this venue's numbering, with the exchange's
    control totals: winning numbers, shares and amount."""

    tails: list[str]
    total_winning_numbers: int
    total_shares: int
    total_amount_minor: int
    source_sha256: str = ""


class IpoSettleChunk(_IpoCommand, frozen=True):
    chunk: int


class IpoList(_IpoCommand, frozen=True):
    """Pay out proceeds and unsold shares, and list the shares for trading: a new instrument
    ``symbol`` (base: the shares, quote: the cash asset) in its opening call auction (PRE_OPEN),
    reference price = the final offer price, no price band until the first close; from then on
    ``band_bps``. ``lot_shares``: shares (minor units) per lot; ``tick_minor``: cash minor
    units per share per tick (the final price must be a whole number of ticks)."""

    lot_shares: int = 1
    tick_minor: int = 1
    band_bps: int = 0


IpoCommand = (
    IpoCreateOffering
    | IpoSubscribe
    | IpoSubscribeBatch
    | IpoCancelSubscription
    | IpoClose
    | IpoNumber
    | IpoSetPrice
    | IpoDraw
    | IpoImportResults
    | IpoImportTails
    | IpoSettleChunk
    | IpoList
)
IPO_COMMANDS: tuple[type, ...] = (
    IpoCreateOffering,
    IpoSubscribe,
    IpoSubscribeBatch,
    IpoCancelSubscription,
    IpoClose,
    IpoNumber,
    IpoSetPrice,
    IpoDraw,
    IpoImportResults,
    IpoImportTails,
    IpoSettleChunk,
    IpoList,
)


class _IpoEvent(msgspec.Struct, tag=True, frozen=True, gc=False):
    seq: int
    symbol: str


class IpoOfferingCreated(_IpoEvent, frozen=True):
    spec: OfferingSpec  # shares_offered issued external -> escrow


class IpoSubscribed(_IpoEvent, frozen=True):
    account: int
    units: int
    frozen_minor: int
    client_subscription_id: str
    repeated: bool  # an idempotent repeat: nothing changed


class IpoBatchSubscribed(_IpoEvent, frozen=True):
    first_row: int
    rows: int
    units: int
    frozen_minor: int


class IpoSubscriptionCancelled(_IpoEvent, frozen=True):
    account: int
    units: int
    released_minor: int


class IpoClosed(_IpoEvent, frozen=True):
    subscriptions: int
    units: int
    frozen_minor: int


class IpoNumbered(_IpoEvent, frozen=True):
    subscriptions: int
    first_number: int
    last_number: int  # first_number - 1 when nothing was subscribed
    numbering_sha256: str = ""  # SHA-256 (hex) of the numbering file; the draw's entropy uses it


class IpoPriceSet(_IpoEvent, frozen=True):
    final_price_minor: int
    max_price_minor: int


class IpoDrawn(_IpoEvent, frozen=True):
    method: LotteryMethod
    units_subscribed: int
    units_offered: int
    rate_digits: str  # tail_lottery: digits of the rate used ("1": everyone wins)
    tails: list[str]  # tail_lottery: winning tails, zero-padded to their length
    winners: int  # subscriptions with at least one winning unit
    won_units: int
    won_shares: int
    amount_minor: int  # won shares x price (fees excluded)
    fee_minor: int
    source: str  # seeded methods: the revealed seed (hex); external: the file's SHA-256
    price_minor: int = 0  # the price charged per share (the final price)
    basis: list[BallotTierResult] = msgspec.field(default_factory=list)  # ballot: published
    numbering_sha256: str = ""  # seeded methods: the numbering file's SHA-256 the draw used


class IpoChunkSettled(_IpoEvent, frozen=True):
    chunk: int
    first_row: int
    rows: int
    winners: int
    won_shares: int
    paid_minor: int  # to the escrow account
    fee_minor: int  # to the fee account
    released_minor: int
    chunks_done: int
    chunks: int


class IpoListed(_IpoEvent, frozen=True):
    issuer_account: int
    proceeds_minor: int
    unsold_shares: int
    reference_price_ticks: int = 0  # of the new instrument ``symbol``, now in PRE_OPEN


IpoEvent = (
    IpoOfferingCreated
    | IpoSubscribed
    | IpoBatchSubscribed
    | IpoSubscriptionCancelled
    | IpoClosed
    | IpoNumbered
    | IpoPriceSet
    | IpoDrawn
    | IpoChunkSettled
    | IpoListed
)


# -- read-only views (queries; not journaled) ----------------------------------------------


class OfferingView(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """An offering at a glance. ``chunk_done`` has one byte per settlement chunk (1: settled;
    empty before the draw). ``drawn`` is the draw's (or the imported results') event."""

    spec: OfferingSpec
    phase: IpoPhase
    final_price_minor: int  # the price settlement charges (spec.price_minor until set)
    price_set: bool  # False while a price_is_maximum offering still awaits IpoSetPrice
    subscriptions: int  # rows ever accepted (cancelled ones included)
    active_subscriptions: int  # not cancelled and not yet settled
    active_units: int
    active_frozen_minor: int
    chunks: int
    chunk_done: bytes
    drawn: IpoDrawn | None
    settled_rows: int
    settled_winners: int
    settled_won_shares: int
    paid_minor: int
    fee_minor: int
    released_minor: int
    numbering_sha256: str = ""  # the numbering file's SHA-256 (hex), recorded at IpoNumber


class SubscriptionView(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """One account's latest subscription to an offering."""

    symbol: str
    account: int
    row: int
    units: int
    frozen_minor: int  # the hold taken at subscription
    first_number: int  # 0 before numbering (or when cancelled)
    won_units: int  # 0 before the draw
    status: SubscriptionStatus
