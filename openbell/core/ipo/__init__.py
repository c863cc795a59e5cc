"""IPO back office: offerings, columnar subscriptions, numbering, tail lottery, settlement."""

from openbell.core.ipo.book import IpoBook, IpoState
from openbell.core.ipo.messages import IpoPhase, LotteryMethod, OfferingSpec

__all__ = ["IpoBook", "IpoPhase", "IpoState", "LotteryMethod", "OfferingSpec"]
