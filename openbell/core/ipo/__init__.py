"""IPO back office: offerings, columnar subscriptions, numbering, tail lottery, ballot,
external results, settlement, listing, and read views."""

from openbell.core.ipo.book import IpoBook, IpoState
from openbell.core.ipo.messages import (
    BallotTier,
    BallotTierResult,
    IpoPhase,
    LotteryMethod,
    OfferingSpec,
    OfferingView,
    SubscriptionStatus,
    SubscriptionView,
)

__all__ = [
    "BallotTier",
    "BallotTierResult",
    "IpoBook",
    "IpoPhase",
    "IpoState",
    "LotteryMethod",
    "OfferingSpec",
    "OfferingView",
    "SubscriptionStatus",
    "SubscriptionView",
]
