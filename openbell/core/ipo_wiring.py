"""The IPO back office's place in the state machine: routing IPO commands to ``IpoBook``
(``core/ipo``), the venue's checks that apply to subscribers, and the listing of an offering's
shares as a new instrument that opens in its call auction.

Handlers of ``Engine`` (cold path).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from openbell.core import admin
from openbell.core import events as e
from openbell.core.commands import InstrumentSpec
from openbell.core.errors import Reject
from openbell.core.ipo.messages import (
    IpoCommand,
    IpoCreateOffering,
    IpoList,
    IpoSubscribe,
    IpoSubscribeBatch,
)
from openbell.core.types import AccountState, Phase, RejectReason

if TYPE_CHECKING:
    from openbell.core.engine import Engine

R = RejectReason
ACCT_SUSPENDED = AccountState.SUSPENDED
CLOSED = Phase.CLOSED
PRE_OPEN = Phase.PRE_OPEN


def apply_ipo(engine: Engine, cmd: IpoCommand) -> None:
    if isinstance(cmd, IpoSubscribe | IpoSubscribeBatch):
        check_ipo_subscribers(engine, cmd)
    elif isinstance(cmd, IpoCreateOffering) and cmd.symbol in engine.instruments:
        raise Reject(R.DUPLICATE_INSTRUMENT, f"{cmd.symbol} is already an instrument")
    listing = ipo_listing_spec(engine, cmd) if isinstance(cmd, IpoList) else None
    events, touched = engine.ipo.apply(engine.ledger, engine.seq, cmd)
    for account, asset in touched:
        engine.touch(account, engine.ledger.assets[asset])
    engine.events.extend(events)
    if listing is not None:
        list_ipo(engine, listing)


def ipo_listing_spec(engine: Engine, cmd: IpoList) -> InstrumentSpec:
    """The instrument an IpoList opens, fully validated before anything changes: the
    offering's own checks (IpoBook.check_listing) and every instrument check."""
    reference = engine.ipo.check_listing(engine.ledger, cmd)
    offering = engine.ipo.offerings[cmd.symbol].spec
    spec = InstrumentSpec(
        symbol=cmd.symbol,
        base_asset=cmd.symbol,
        quote_asset=offering.cash_asset,
        lot_size=cmd.lot_shares,
        tick_value=cmd.tick_minor * cmd.lot_shares,
        reference_price_ticks=reference,
        band_bps=cmd.band_bps,
    )
    admin.check_instrument_spec(engine, spec)
    return spec


def list_ipo(engine: Engine, spec: InstrumentSpec) -> None:
    """Open a listed IPO's instrument straight into its opening call auction (PRE_OPEN),
    with no price band until its first close."""
    inst = engine.add_instrument(spec)
    inst.band_free = True
    inst.set_reference(spec.reference_price_ticks)
    inst.phase = PRE_OPEN
    engine.events.append(e.InstrumentCreated(engine.seq, spec, CLOSED))
    engine.events.append(
        e.PhaseChanged(engine.seq, spec.symbol, PRE_OPEN, inst.reference_price_ticks)
    )


def check_ipo_subscribers(engine: Engine, cmd: IpoSubscribe | IpoSubscribeBatch) -> None:
    """Subscribing is trading: the venue halt and account states apply (a reduce-only
    account may not add exposure either)."""
    if engine.venue_halted:
        raise Reject(R.VENUE_HALTED)
    states = engine.account_states
    if not states:
        return
    if isinstance(cmd, IpoSubscribe):
        blocked = [cmd.account] if cmd.account in states else []
    else:
        accounts = np.frombuffer(cmd.accounts, dtype="<i8")
        flagged = np.fromiter(states, dtype=np.int64, count=len(states))
        blocked = [int(a) for a in accounts[np.isin(accounts, flagged)][:1]]
    if blocked:
        state = states[blocked[0]]
        reason = R.ACCOUNT_SUSPENDED if state is ACCT_SUSPENDED else R.REDUCE_ONLY
        raise Reject(reason, f"account {blocked[0]} is {state.value}")
