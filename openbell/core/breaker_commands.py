"""The circuit breakers' commands, timers and red-line checks (handlers of ``Engine``; cold path).

The meters are in ``breakers.py`` and their hooks in ``matching.py``. This module sets them up
from journaled operator commands, runs what is due when time moves on (a volatility auction's
end, a protection's end after its hold-down), values the red lines after a command that traded,
and lays the whole state out for operators (``view``) and snapshots (``state``/``load``).
Every setting is validated whole before anything changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.breakers import (
    MAX_AUCTION_S,
    MAX_RATE_PER_S,
    MAX_RATIO_PCT,
    MAX_WINDOW_S,
    NO_TIMER,
    NS_PER_S,
    LossLine,
    RateMeter,
    SurgeSettings,
    VolatilityBand,
)
from openbell.core.errors import Reject
from openbell.core.types import (
    BPS_DENOMINATOR,
    MAX_AMOUNT_MINOR,
    AccountState,
    BandReference,
    Breaker,
    BreakerScope,
    CancelReason,
    Phase,
    RejectReason,
)

if TYPE_CHECKING:
    from openbell.core.engine import Engine
    from openbell.core.matching import Instrument

R = RejectReason
VENUE = BreakerScope.VENUE
ACCOUNT = BreakerScope.ACCOUNT
HOUSE = BreakerScope.HOUSE
MAX_HOUSE_ACCOUNTS = 64
MAX_LOSS_LINES = 1_024


# ======================================================================================
# Snapshot layout (part of EngineState: hashed, replayed)
# ======================================================================================
class BandState(msgspec.Struct, gc=False):
    symbol: str
    band_bps: int
    average: bool
    window_s: int
    auction_s: int
    anchor_ticks: int
    auction_end_ns: int
    window: list[int]  # VolatilityBand.window_state()


class LossLineState(msgspec.Struct, gc=False):
    account: int | None
    accounts: list[int]
    asset: str
    limit_minor: int
    window_s: int
    flows_minor: int
    tripped: bool
    peaks: list[list[int]]


class BreakersState(msgspec.Struct, gc=False):
    surge_venue: list[int] = msgspec.field(default_factory=list)  # SurgeSettings.as_list()
    surge_account: list[int] = msgspec.field(default_factory=list)
    venue_meter: list[int] = msgspec.field(default_factory=list)  # RateMeter.as_list()
    account_meters: list[tuple[int, list[int]]] = msgspec.field(default_factory=list)
    market_makers: list[int] = msgspec.field(default_factory=list)
    bands: list[BandState] = msgspec.field(default_factory=list)
    loss_lines: list[LossLineState] = msgspec.field(default_factory=list)


def state(engine: Engine) -> BreakersState:
    return BreakersState(
        surge_venue=engine.surge_venue.as_list(),
        surge_account=engine.surge_account.as_list(),
        venue_meter=engine.venue_meter.as_list(),
        account_meters=[
            (account, meter.as_list())
            for account, meter in enumerate(engine.account_meters)
            if meter is not None
        ],
        market_makers=sorted(engine.market_makers),
        bands=[
            BandState(
                inst.symbol,
                inst.vol.band_bps,
                inst.vol.average,
                inst.vol.window_s,
                inst.vol.auction_s,
                inst.vol.anchor_ticks,
                inst.vol.auction_end_ns,
                inst.vol.window_state(),
            )
            for inst in engine.inst_list
            if inst.vol is not None
        ],
        loss_lines=[
            LossLineState(
                line.account,
                list(line.accounts),
                line.asset,
                line.limit_minor,
                line.window_ns // NS_PER_S,
                line.flows_minor,
                line.tripped,
                line.peaks_list(),
            )
            for line in engine.loss.lines.values()
        ],
    )


def load(engine: Engine, saved: BreakersState) -> None:
    """Restore the breakers of a snapshot (after its instruments)."""
    if saved.surge_venue:
        _load_settings(engine.surge_venue, saved.surge_venue)
        _load_settings(engine.surge_account, saved.surge_account)
        engine.venue_meter.load(saved.venue_meter)
    for account, values in saved.account_meters:
        engine.meter_of(account).load(values)
    engine.market_makers = dict.fromkeys(saved.market_makers)
    for band in saved.bands:
        inst = engine.instruments[band.symbol]
        vol = VolatilityBand(
            band.band_bps, band.average, band.window_s, band.auction_s, band.anchor_ticks
        )
        vol.load_window(band.window)
        vol.auction_end_ns = band.auction_end_ns
        inst.vol = vol
        inst.copy_band()
    for saved_line in saved.loss_lines:
        line = LossLine(
            saved_line.account,
            tuple(saved_line.accounts),
            saved_line.asset,
            saved_line.limit_minor,
            saved_line.window_s,
        )
        line.flows_minor = saved_line.flows_minor
        line.tripped = saved_line.tripped
        line.load_peaks([list(p) for p in saved_line.peaks])
        engine.loss.lines[line.key] = line
    engine.loss.plan(engine)
    _refresh_switches(engine)
    schedule(engine)


def _load_settings(settings: SurgeSettings, values: list[int]) -> None:
    enabled, settings.ratio_pct, settings.floor_per_s, settings.window_s, hold = values
    settings.enabled = enabled != 0
    settings.hold_down_s = hold


def _refresh_switches(engine: Engine) -> None:
    engine.surge_on = engine.surge_venue.enabled or engine.surge_account.enabled
    engine.loss_on = bool(engine.loss.lines)


# ======================================================================================
# Timers
# ======================================================================================
def schedule(engine: Engine) -> None:
    """The earliest time a breaker needs a look: a volatility auction's end or a protection's
    end (``Engine.next_timer_ns``; the node sends a ``Tick`` when it passes)."""
    due = NO_TIMER
    for inst in engine.inst_list:
        vol = inst.vol
        if vol is not None and vol.auction_end_ns and vol.auction_end_ns < due:
            due = vol.auction_end_ns
    for meter in _protected_meters(engine):
        due = min(due, meter.calm_from_ns())
    engine.next_timer_ns = due


def _protected_meters(engine: Engine) -> list[RateMeter]:
    meters = [engine.venue_meter] if engine.venue_meter.protected else []
    meters.extend(m for m in engine.account_meters if m is not None and m.protected)
    return meters


def run_timers(engine: Engine) -> None:
    """What is due at ``engine.ts_ns``: ended protections, then re-opened auctions. Events go
    to ``engine.pre_events`` (they happen before the command that brought the time)."""
    now = engine.ts_ns
    events = engine.events
    engine.events = engine.pre_events
    try:
        if engine.venue_meter.protected and engine.venue_meter.calm_from_ns() <= now:
            _end_protection(engine, engine.venue_meter, VENUE, None, "")
        for account, meter in enumerate(engine.account_meters):
            if meter is not None and meter.protected and meter.calm_from_ns() <= now:
                _end_protection(engine, meter, ACCOUNT, account, "")
        for inst in engine.inst_list:
            vol = inst.vol
            if vol is not None and vol.auction_end_ns and vol.auction_end_ns <= now:
                if inst.phase is Phase.VOLATILITY_AUCTION and not engine.venue_halted:
                    reopen(engine, inst)
                elif inst.phase is not Phase.VOLATILITY_AUCTION:
                    vol.auction_end_ns = 0  # an operator moved it on already
        engine.flush_balances()
    finally:
        engine.events = events
    schedule(engine)
    if engine.venue_halted and engine.next_timer_ns <= now:
        # An auction that cannot re-open while the venue is halted: look again each second.
        engine.next_timer_ns = now + NS_PER_S


def _end_protection(
    engine: Engine, meter: RateMeter, scope: BreakerScope, account: int | None, operator: str
) -> None:
    meter.protected = False
    if engine.ts_s > meter.second:
        meter.roll(engine.ts_s)
    else:
        meter.refresh()
    engine.events.append(
        e.ProtectionEnded(
            engine.seq_obj, scope, account, meter.last_rate, meter.baseline_milli, operator
        )
    )


def reopen(engine: Engine, inst: Instrument) -> None:
    """End a volatility auction: continuous trading again, through the uncross."""
    assert inst.vol is not None
    inst.vol.auction_end_ns = 0
    inst.phase = Phase.CONTINUOUS
    engine.events.append(
        e.PhaseChanged(engine.seq, inst.symbol, Phase.CONTINUOUS, inst.reference_price_ticks)
    )
    engine.uncross(inst)
    if inst.last_price_ticks:
        inst.note_price(inst.last_price_ticks)
    engine.after_trades(inst)


# ======================================================================================
# Red lines
# ======================================================================================
def trip_lines(engine: Engine, crossed: list[tuple[LossLine, int, int]]) -> None:
    """Red lines crossed by the command that just traded (``MatchingCore.check_losses``): an
    account's goes reduce-only with its orders cancelled; the house's halts the venue."""
    for line, loss, value in crossed:
        line.tripped = True
        cancelled = 0
        if line.account is not None:
            cancelled = engine.cancel_matching(line.account, None, CancelReason.LOSS_LIMIT)
            engine.account_states[line.account] = AccountState.REDUCE_ONLY
        engine.events.append(
            e.LossLimitTripped(
                engine.seq,
                ACCOUNT if line.account is not None else HOUSE,
                line.account,
                line.asset,
                loss,
                line.limit_minor,
                line.peak(),
                value,
                cancelled,
            )
        )
        if line.account is not None:
            engine.events.append(
                e.AccountStateChanged(
                    engine.seq, line.account, AccountState.REDUCE_ONLY, "", "loss limit"
                )
            )
        elif not engine.venue_halted:
            engine.venue_halted = True
            engine.events.append(e.VenueHaltChanged(engine.seq, True, "", "house loss limit"))


# ======================================================================================
# Commands
# ======================================================================================
def set_surge_protection(engine: Engine, cmd: c.SetSurgeProtection) -> None:
    if cmd.scope not in (VENUE, ACCOUNT):
        raise Reject(R.INVALID_FIELD, "surge protection is for the VENUE or each ACCOUNT")
    _check_range("ratio_pct", cmd.ratio_pct, 101, MAX_RATIO_PCT)
    _check_range("floor_per_s", cmd.floor_per_s, 1, MAX_RATE_PER_S)
    _check_range("baseline_window_s", cmd.baseline_window_s, 1, MAX_WINDOW_S)
    _check_range("hold_down_s", cmd.hold_down_s, 0, MAX_WINDOW_S)
    settings = engine.surge_venue if cmd.scope is VENUE else engine.surge_account
    settings.enabled = cmd.enabled
    settings.ratio_pct = cmd.ratio_pct
    settings.floor_per_s = cmd.floor_per_s
    settings.window_s = cmd.baseline_window_s
    settings.hold_down_s = cmd.hold_down_s
    meters = [engine.venue_meter] if cmd.scope is VENUE else engine.account_meters
    for i, meter in enumerate(meters):
        if meter is None:
            continue
        if not cmd.enabled and meter.protected:
            account = None if cmd.scope is VENUE else i
            _end_protection(engine, meter, cmd.scope, account, cmd.operator or "operator")
        meter.refresh()
    _refresh_switches(engine)
    engine.events.append(
        e.BreakerSettingsChanged(
            engine.seq,
            Breaker.SURGE,
            cmd.scope,
            "",
            {
                "enabled": cmd.enabled,
                "ratio_pct": cmd.ratio_pct,
                "floor_per_s": cmd.floor_per_s,
                "baseline_window_s": cmd.baseline_window_s,
                "hold_down_s": cmd.hold_down_s,
            },
            cmd.operator,
        )
    )
    schedule(engine)


def set_market_maker(engine: Engine, cmd: c.SetMarketMaker) -> None:
    engine.check_user_account(cmd.account)
    if cmd.market_maker:
        engine.market_makers[cmd.account] = None
    else:
        engine.market_makers.pop(cmd.account, None)
    engine.events.append(
        e.BreakerSettingsChanged(
            engine.seq,
            Breaker.SURGE,
            ACCOUNT,
            str(cmd.account),
            {"market_maker": cmd.market_maker},
            cmd.operator,
        )
    )


def set_loss_limit(engine: Engine, cmd: c.SetLossLimit) -> None:
    if cmd.asset not in engine.ledger.assets:
        raise Reject(R.UNKNOWN_ASSET, cmd.asset)
    _check_range("limit_minor", cmd.limit_minor, 0, MAX_AMOUNT_MINOR)
    _check_range("window_s", cmd.window_s, 1, MAX_WINDOW_S)
    if cmd.account is not None:
        engine.check_user_account(cmd.account)
        if cmd.house_accounts:
            raise Reject(R.INVALID_FIELD, "house_accounts go with the house red line only")
        accounts: tuple[int, ...] = (cmd.account,)
    else:
        if not 0 < len(cmd.house_accounts) <= MAX_HOUSE_ACCOUNTS and cmd.limit_minor:
            raise Reject(R.INVALID_FIELD, f"name 1 to {MAX_HOUSE_ACCOUNTS} house accounts")
        for account in cmd.house_accounts:
            engine.check_user_account(account)
        if len(set(cmd.house_accounts)) != len(cmd.house_accounts):
            raise Reject(R.INVALID_FIELD, "a house account is named twice")
        accounts = tuple(cmd.house_accounts)
    key = f"{cmd.asset}:{'house' if cmd.account is None else cmd.account}"
    lines = engine.loss.lines
    if cmd.limit_minor == 0:
        if key not in lines:
            raise Reject(R.INVALID_FIELD, f"no red line on {key}")
        del lines[key]
    else:
        if key not in lines and len(lines) >= MAX_LOSS_LINES:
            raise Reject(R.INVALID_FIELD, f"at most {MAX_LOSS_LINES} red lines")
        line = LossLine(cmd.account, accounts, cmd.asset, cmd.limit_minor, cmd.window_s)
        old = lines.get(key)
        lines[key] = line
        engine.loss.plan(engine)
        line.restart(engine.ts_ns, engine.loss.line_value(engine, line))
        line.tripped = old.tripped if old is not None and old.accounts == accounts else False
    _refresh_switches(engine)
    engine.events.append(
        e.BreakerSettingsChanged(
            engine.seq,
            Breaker.LOSS_LIMIT,
            ACCOUNT if cmd.account is not None else HOUSE,
            key,
            {
                "limit_minor": cmd.limit_minor,
                "window_s": cmd.window_s,
                "house_accounts": list(cmd.house_accounts),
            },
            cmd.operator,
        )
    )


def set_volatility_band(engine: Engine, cmd: c.SetVolatilityBand) -> None:
    inst = engine.instruments.get(cmd.symbol)
    if inst is None:
        raise Reject(R.UNKNOWN_INSTRUMENT, cmd.symbol)
    _check_range("band_bps", cmd.band_bps, 0, BPS_DENOMINATOR)
    _check_range("window_s", cmd.window_s, 1, MAX_WINDOW_S)
    _check_range("auction_s", cmd.auction_s, 1, MAX_AUCTION_S)
    if cmd.reference not in (BandReference.AUCTION, BandReference.AVERAGE):
        raise Reject(R.INVALID_FIELD, f"reference {cmd.reference!r}")
    if cmd.band_bps == 0:
        if inst.vol is None:
            raise Reject(R.INVALID_FIELD, f"{cmd.symbol} has no volatility band")
        if inst.phase is Phase.VOLATILITY_AUCTION:
            raise Reject(R.WRONG_PHASE, "resume the volatility auction first")
        inst.vol = None
    else:
        old = inst.vol
        vol = VolatilityBand(
            cmd.band_bps,
            cmd.reference is BandReference.AVERAGE,
            cmd.window_s,
            cmd.auction_s,
            inst.reference_price_ticks,
        )
        if old is not None:
            vol.auction_end_ns = old.auction_end_ns
        vol.last_second = engine.ts_s
        inst.vol = vol
    inst.copy_band()
    engine.events.append(
        e.BreakerSettingsChanged(
            engine.seq,
            Breaker.VOLATILITY,
            VENUE,
            cmd.symbol,
            {
                "band_bps": cmd.band_bps,
                "reference": cmd.reference.value,
                "window_s": cmd.window_s,
                "auction_s": cmd.auction_s,
            },
            cmd.operator,
        )
    )
    schedule(engine)


def resume_breaker(engine: Engine, cmd: c.ResumeBreaker) -> None:
    operator = cmd.operator or "operator"
    if cmd.breaker is Breaker.SURGE:
        meter: RateMeter | None
        if cmd.account is None:
            meter = engine.venue_meter
        else:
            engine.check_user_account(cmd.account)
            meter = (
                engine.account_meters[cmd.account]
                if cmd.account < len(engine.account_meters)
                else None
            )
        if meter is None or not meter.protected:
            raise Reject(R.INVALID_FIELD, "not in protection mode")
        scope = VENUE if cmd.account is None else ACCOUNT
        _end_protection(engine, meter, scope, cmd.account, operator)
        # A fresh start: the surge that tripped it is not held against it any more.
        meter.last_over_second = meter.second
        meter.count = 0
        schedule(engine)
    elif cmd.breaker is Breaker.LOSS_LIMIT:
        key = f"{cmd.asset}:{'house' if cmd.account is None else cmd.account}"
        line = engine.loss.lines.get(key)
        if line is None:
            raise Reject(R.INVALID_FIELD, f"no red line on {key}")
        if not line.tripped:
            raise Reject(R.INVALID_FIELD, f"the red line on {key} has not tripped")
        line.restart(engine.ts_ns, engine.loss.line_value(engine, line))
        engine.events.append(
            e.LossLimitReset(
                engine.seq,
                ACCOUNT if cmd.account is not None else HOUSE,
                cmd.account,
                cmd.asset,
                operator,
                cmd.reason,
            )
        )
        if cmd.account is not None:
            if engine.account_states.get(cmd.account) is AccountState.REDUCE_ONLY:
                del engine.account_states[cmd.account]
                engine.events.append(
                    e.AccountStateChanged(
                        engine.seq, cmd.account, AccountState.ACTIVE, operator, cmd.reason
                    )
                )
        elif engine.venue_halted:
            engine.venue_halted = False
            engine.events.append(e.VenueHaltChanged(engine.seq, False, operator, cmd.reason))
    elif cmd.breaker is Breaker.VOLATILITY:
        inst = engine.instruments.get(cmd.symbol)
        if inst is None:
            raise Reject(R.UNKNOWN_INSTRUMENT, cmd.symbol)
        if inst.phase is not Phase.VOLATILITY_AUCTION:
            raise Reject(R.WRONG_PHASE, f"{cmd.symbol} is not in a volatility auction")
        if engine.venue_halted:
            raise Reject(R.VENUE_HALTED, "no trading while the venue is halted")
        reopen(engine, inst)
        schedule(engine)
    else:
        raise Reject(R.INVALID_FIELD, f"breaker {cmd.breaker!r}")


def tick(engine: Engine, cmd: c.Tick) -> None:
    """Time only: the timers already ran when the command's time was taken."""


def _check_range(name: str, value: Any, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise Reject(R.INVALID_FIELD, f"{name} must be an integer from {low} to {high}")


# ======================================================================================
# Operators' view
# ======================================================================================
def view(engine: Engine) -> dict[str, Any]:
    """Every breaker's settings, state and live figures (internal units; the edges convert)."""
    now_s = engine.ts_s

    def meter_view(meter: RateMeter) -> dict[str, Any]:
        return {
            "protected": meter.protected,
            "rate_per_s": meter.rate_per_s(now_s),
            "last_second_rate_per_s": meter.last_rate,
            "baseline_milli_per_s": meter.baseline_milli,
            "threshold_per_s": meter.threshold,
        }

    def settings_view(settings: SurgeSettings) -> dict[str, Any]:
        return {
            "enabled": settings.enabled,
            "ratio_pct": settings.ratio_pct,
            "floor_per_s": settings.floor_per_s,
            "baseline_window_s": settings.window_s,
            "hold_down_s": settings.hold_down_s,
        }

    guard = engine.loss
    return {
        "ts_ns": engine.ts_ns,
        "surge": {
            "venue": {**settings_view(engine.surge_venue), **meter_view(engine.venue_meter)},
            "accounts": settings_view(engine.surge_account),
            "protected_accounts": [
                {"account": account, **meter_view(meter)}
                for account, meter in enumerate(engine.account_meters)
                if meter is not None and meter.protected
            ],
            "market_makers": sorted(engine.market_makers),
        },
        "loss_limits": [
            {
                "scope": (ACCOUNT if line.account is not None else HOUSE).value,
                "account": line.account,
                "accounts": list(line.accounts),
                "asset": line.asset,
                "limit_minor": line.limit_minor,
                "window_s": line.window_ns // NS_PER_S,
                "value_minor": (value := guard.line_value(engine, line)),
                "peak_minor": max(line.peak(), value),
                "loss_minor": max(0, max(line.peak(), value) - value),
                "tripped": line.tripped,
            }
            for line in guard.lines.values()
        ],
        "volatility": [
            {
                "symbol": inst.symbol,
                "band_bps": inst.vol.band_bps,
                "band_reference": "AVERAGE" if inst.vol.average else "AUCTION",
                "window_s": inst.vol.window_s,
                "auction_s": inst.vol.auction_s,
                "reference_ticks": inst.vol.reference_ticks(),
                "low_ticks": inst.vol.low_ticks,
                "high_ticks": inst.vol.high_ticks,
                "in_auction": inst.phase is Phase.VOLATILITY_AUCTION,
                "auction_end_ns": inst.vol.auction_end_ns,
            }
            for inst in engine.inst_list
            if inst.vol is not None
        ],
        "next_timer_ns": None if engine.next_timer_ns == NO_TIMER else engine.next_timer_ns,
    }
