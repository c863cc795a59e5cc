"""An IPO subscription flood: many funded accounts, one open offering, one subscription each.

For the IPO lane's tests and bench (``openbell.node.lanes``): the set-up commands and the
subscriptions, in the order a flood of clients would send them.
"""

from __future__ import annotations

import hashlib

from openbell.core import commands as c
from openbell.core.ipo import messages as m

FLOOD_SYMBOL = "FLOOD"
FLOOD_SEED = b"ipo flood seed"
UNIT_SHARES = 100
PRICE_MINOR = 1_000  # per share, in the cash asset's minor units
MAX_UNITS = 10


def flood_setup(first_account: int, accounts: int, cash_asset: str) -> list[c.Command]:
    """Open ``accounts`` accounts (they get ids ``first_account`` on: the caller knows how many
    exist before), fund each for a full subscription, and open the offering."""
    spec = m.OfferingSpec(
        symbol=FLOOD_SYMBOL,
        cash_asset=cash_asset,
        price_minor=PRICE_MINOR,
        unit_shares=UNIT_SHARES,
        max_units=MAX_UNITS,
        shares_offered=UNIT_SHARES * accounts,
        seed_commitment=hashlib.sha256(FLOOD_SEED).hexdigest(),
    )
    return [
        c.OpenAccounts(count=accounts),
        c.DepositMany(
            first_account=first_account,
            count=accounts,
            asset=cash_asset,
            amount_minor=PRICE_MINOR * UNIT_SHARES * MAX_UNITS,
        ),
        m.IpoCreateOffering(symbol=FLOOD_SYMBOL, spec=spec),
    ]


def subscriptions(first_account: int, start: int, count: int) -> list[m.IpoSubscribe]:
    """Subscriptions ``start`` .. ``start + count - 1``: one unit each, one per account."""
    return [
        m.IpoSubscribe(
            symbol=FLOOD_SYMBOL,
            account=first_account + i,
            units=1,
            client_subscription_id=f"f{i}",
        )
        for i in range(start, start + count)
    ]
