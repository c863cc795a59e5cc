"""Venue administration commands: instrument phases and the call auction's open, venue halt,
account states and the kill switch, assets, instruments and accounts.

Handlers of ``Engine`` (cold path: interpreted or compiled, they run once in a while). Each
validates the whole command before it changes anything.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.commands import InstrumentSpec
from openbell.core.errors import Reject
from openbell.core.matching import Instrument
from openbell.core.types import (
    BPS_DENOMINATOR,
    FIRST_USER_ACCOUNT,
    MAX_ACCOUNTS,
    MAX_AMOUNT_MINOR,
    MAX_BATCH_ACCOUNTS,
    MAX_CANCEL_ORDERS,
    MAX_FEE_BPS,
    MAX_PRICE_TICKS,
    MAX_QUANTITY_LOTS,
    MAX_SYMBOL_LENGTH,
    AccountState,
    CancelReason,
    Phase,
    RejectReason,
)

if TYPE_CHECKING:
    from openbell.core.engine import Engine

R = RejectReason
ACCT_ACTIVE = AccountState.ACTIVE
ACCT_SUSPENDED = AccountState.SUSPENDED
CLOSED = Phase.CLOSED
CONTINUOUS = Phase.CONTINUOUS
HALTED = Phase.HALTED
CR_KILL_SWITCH = CancelReason.KILL_SWITCH
CR_MASS_CANCEL = CancelReason.MASS_CANCEL
_CODE_RE = re.compile(r"[A-Z0-9][A-Z0-9._-]*")


def valid_code(code: str) -> bool:
    return 0 < len(code) <= MAX_SYMBOL_LENGTH and _CODE_RE.fullmatch(code) is not None


def instrument(engine: Engine, symbol: str) -> Instrument:
    inst = engine.instruments.get(symbol)
    if inst is None:
        raise Reject(R.UNKNOWN_INSTRUMENT, symbol)
    return inst


def mass_cancel(engine: Engine, cmd: c.MassCancel) -> None:
    if cmd.account is None and cmd.symbol is None:
        raise Reject(R.INVALID_FIELD, "name an account, an instrument, or both")
    if cmd.symbol is not None:
        instrument(engine, cmd.symbol)
    if cmd.account is not None:
        engine.check_user_account(cmd.account)
    engine.cancel_matching(cmd.account, cmd.symbol, CR_MASS_CANCEL)


def cancel_orders(engine: Engine, cmd: c.CancelOrders) -> None:
    """Cancel-on-disconnect: the session's orders still open, in the order given. Checked
    whole before any is cancelled (an id of another account refuses all)."""
    engine.check_user_account(cmd.account)
    if not 0 < len(cmd.order_ids) <= MAX_CANCEL_ORDERS:
        raise Reject(R.INVALID_FIELD, f"name 1 to {MAX_CANCEL_ORDERS} order ids")
    if cmd.reason not in CancelReason.__members__.values():
        raise Reject(R.INVALID_FIELD, f"unknown cancel reason {cmd.reason!r}")
    slots: list[int] = []
    seen: set[int] = set()
    for order_id in cmd.order_ids:
        if type(order_id) is not int or not 0 < order_id < 1 << 63:
            raise Reject(R.INVALID_FIELD, f"order id {order_id!r} is not an order id")
        if order_id in seen:
            continue
        seen.add(order_id)
        try:
            slots.append(engine.owned_order(cmd.account, order_id))
        except Reject as why:
            if why.reason != R.UNKNOWN_ORDER:
                raise
    for slot in slots:
        engine.cancel_order(slot, cmd.reason)


# ======================================================================================
# Phases, halts, account states
# ======================================================================================
def set_phase(engine: Engine, cmd: c.SetPhase) -> None:
    inst = instrument(engine, cmd.symbol)
    old = inst.phase
    new = cmd.phase
    if new is old:
        raise Reject(R.WRONG_PHASE, f"already {old.value}")
    if new is HALTED and old is CLOSED:
        raise Reject(R.WRONG_PHASE, "a closed instrument cannot be halted")
    if new is CONTINUOUS and engine.venue_halted:
        raise Reject(R.VENUE_HALTED, "no trading while the venue is halted")
    inst.phase = new
    if new is CLOSED:
        if inst.band_free:  # a listed IPO's first close: the price band applies from now on
            inst.band_free = False
            inst.set_reference(inst.reference_price_ticks)
        if inst.last_price_ticks:
            inst.set_reference(inst.last_price_ticks)
        engine.expire_day_orders(inst)
    engine.events.append(
        e.PhaseChanged(engine.seq, inst.spec.symbol, new, inst.reference_price_ticks)
    )
    if new is CONTINUOUS:
        engine.uncross(inst)
        if inst.last_price_ticks:
            inst.note_price(inst.last_price_ticks)
        engine.after_trades(inst)


def set_venue_halt(engine: Engine, cmd: c.SetVenueHalt) -> None:
    if cmd.halted == engine.venue_halted:
        raise Reject(R.WRONG_PHASE, "venue already " + ("halted" if cmd.halted else "open"))
    engine.venue_halted = cmd.halted
    engine.events.append(e.VenueHaltChanged(engine.seq, cmd.halted, cmd.operator, cmd.reason))


def set_account_state(engine: Engine, cmd: c.SetAccountState) -> None:
    engine.check_user_account(cmd.account)
    if cmd.state is ACCT_ACTIVE:
        engine.account_states.pop(cmd.account, None)
    else:
        engine.account_states[cmd.account] = cmd.state
    engine.events.append(
        e.AccountStateChanged(engine.seq, cmd.account, cmd.state, cmd.operator, cmd.reason)
    )


def kill_switch(engine: Engine, cmd: c.KillSwitch) -> None:
    engine.check_user_account(cmd.account)
    cancelled = engine.cancel_matching(cmd.account, None, CR_KILL_SWITCH)
    engine.account_states[cmd.account] = ACCT_SUSPENDED
    engine.events.append(
        e.AccountStateChanged(engine.seq, cmd.account, ACCT_SUSPENDED, cmd.operator, cmd.reason)
    )
    engine.events.append(
        e.KillSwitchActivated(engine.seq, cmd.account, cmd.operator, cmd.reason, cancelled)
    )


# ======================================================================================
# Reference data
# ======================================================================================
def create_asset(engine: Engine, cmd: c.CreateAsset) -> None:
    if not valid_code(cmd.asset):
        raise Reject(R.INVALID_FIELD, f"asset code {cmd.asset!r}")
    if cmd.asset in engine.ledger.assets:
        raise Reject(R.DUPLICATE_ASSET, cmd.asset)
    if not 0 <= cmd.scale <= 18:
        raise Reject(R.INVALID_FIELD, "scale must be 0..18")
    engine.ledger.add_asset(cmd.asset, cmd.scale)
    engine.ledger.assets[cmd.asset].ensure(FIRST_USER_ACCOUNT - 1)
    engine.events.append(e.AssetCreated(engine.seq, cmd.asset, cmd.scale))


def create_instrument(engine: Engine, cmd: c.CreateInstrument) -> None:
    spec = cmd.spec
    check_instrument_spec(engine, spec)
    if spec.symbol in engine.ipo.offerings:
        raise Reject(R.DUPLICATE_INSTRUMENT, f"{spec.symbol} is reserved for its IPO listing")
    engine.add_instrument(spec)
    engine.events.append(e.InstrumentCreated(engine.seq, spec, CLOSED))


def check_instrument_spec(engine: Engine, spec: InstrumentSpec) -> None:
    """Everything a new instrument must satisfy (raises Reject; changes nothing)."""
    if not valid_code(spec.symbol):
        raise Reject(R.INVALID_FIELD, f"symbol {spec.symbol!r}")
    if spec.symbol in engine.instruments:
        raise Reject(R.DUPLICATE_INSTRUMENT, spec.symbol)
    assets = engine.ledger.assets
    if spec.base_asset not in assets or spec.quote_asset not in assets:
        raise Reject(R.UNKNOWN_ASSET, f"{spec.base_asset}/{spec.quote_asset}")
    if spec.base_asset == spec.quote_asset:
        raise Reject(R.INVALID_FIELD, "base and quote assets must differ")
    checks = (
        (1 <= spec.lot_size <= MAX_AMOUNT_MINOR, "lot_size"),
        (1 <= spec.tick_value <= MAX_AMOUNT_MINOR, "tick_value"),
        (0 <= spec.reference_price_ticks <= MAX_PRICE_TICKS, "reference_price_ticks"),
        (0 <= spec.band_bps <= BPS_DENOMINATOR, "band_bps"),
        (1 <= spec.market_protection_bps <= BPS_DENOMINATOR, "market_protection_bps"),
        (0 <= spec.maker_fee_bps <= MAX_FEE_BPS, "maker_fee_bps"),
        (0 <= spec.taker_fee_bps <= MAX_FEE_BPS, "taker_fee_bps"),
        (1 <= spec.max_order_lots <= MAX_QUANTITY_LOTS, "max_order_lots"),
        (1 <= spec.max_notional_minor <= MAX_AMOUNT_MINOR, "max_notional_minor"),
    )
    for ok, name in checks:
        if not ok:
            raise Reject(R.INVALID_FIELD, name)


def open_accounts(engine: Engine, cmd: c.OpenAccounts) -> None:
    if not 1 <= cmd.count <= MAX_BATCH_ACCOUNTS:
        raise Reject(R.INVALID_FIELD, f"count must be 1..{MAX_BATCH_ACCOUNTS}")
    if engine.ledger.accounts_count + cmd.count > MAX_ACCOUNTS:
        raise Reject(R.TOO_MANY_ACCOUNTS)
    first = engine.ledger.open_accounts(cmd.count)
    engine.events.append(e.AccountsOpened(engine.seq, first, cmd.count))
