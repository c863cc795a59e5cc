"""The deterministic state machine: ``Engine.apply(seq, ts_ns, command) -> events``.

Pure: no I/O, no clock, no randomness, no threads. The same commands in give the same events and
the same ``state_hash()`` out, byte for byte, compiled or interpreted. Every handler validates the
whole command before it changes anything, so a ``Reject`` leaves the state untouched and becomes
one ``Rejected`` event. A broken invariant raises ``InvariantViolation`` and the engine refuses
all further commands.

The engine is split by job:

- ``matching.py`` (compiled): the entry point ``apply``, order entry, matching, stops, cancel,
  replace, DAY expiry and the auction's uncross, on the order pool (``pool.py``) and the books
  (``book.py``);
- ``admin.py``: phases, halts, account states, the kill switch, assets, instruments, accounts;
- ``money.py``: deposits, withdrawals, transfers and two-phase holds (``ledger.py`` below);
- ``ipo_wiring.py``: IPO commands into ``ipo/`` and listings into trading;
- this module: construction, queries, the invariant check, snapshots and the state hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any

import msgspec

from openbell.core import admin, breaker_commands, ipo_wiring, money
from openbell.core import commands as c
from openbell.core.book import BUY_CODE, SELL_CODE, Order
from openbell.core.breaker_commands import BreakersState
from openbell.core.commands import InstrumentSpec
from openbell.core.errors import InvariantViolation
from openbell.core.ipo import IpoBook, IpoState
from openbell.core.ipo.messages import IPO_COMMANDS
from openbell.core.matching import (
    STP_CODE,
    TIF_CODE,
    TYPE_CODE,
    Instrument,
    MatchingCore,
    order_of,
)
from openbell.core.money import Hold
from openbell.core.pool import GROW_SLOTS, NIL
from openbell.core.types import AccountState, Phase, Side

STATE_VERSION = 3  # bump on any change to EngineState's encoding
# Older encodings this one reads (what was added since has a default): 2 had no breakers.
READABLE_STATE_VERSIONS = (2, 3)


class EngineConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Venue-wide settings; part of the state (snapshotted, hashed)."""

    settle: bool = True  # False: matching only, no funds, holds or fees (a bare matching venue)
    max_open_orders_per_account: int = 10_000
    idempotency_window: int = 100_000  # request ids remembered, oldest forgotten first


class InstrumentState(msgspec.Struct, gc=False, omit_defaults=True):
    spec: InstrumentSpec
    phase: Phase
    reference_price_ticks: int
    last_price_ticks: int
    bids: list[Order]
    asks: list[Order]
    stops: list[Order]
    band_free: bool = False  # a listed IPO before its first close (omitted when False)


class AssetState(msgspec.Struct, gc=False):
    """Balance columns as views: encoded straight from the live arrays (no copy while the
    sequencer waits) and decoded as zero-copy views of the snapshot blob."""

    asset: str
    scale: int
    available: memoryview
    frozen: memoryview


class EngineState(msgspec.Struct, gc=False):
    version: int
    config: EngineConfig
    seq: int
    ts_ns: int
    next_order_id: int
    next_trade_id: int
    venue_halted: bool
    accounts_count: int
    account_states: list[tuple[int, AccountState]]
    assets: list[AssetState]
    instruments: list[InstrumentState]
    holds: list[Hold]  # unresolved two-phase holds
    results: list[tuple[str, int]]  # idempotency window: request id -> seq, oldest first
    ipo: IpoState = msgspec.field(default_factory=IpoState)
    resolved_holds: list[str] = msgspec.field(default_factory=list)  # window, oldest first
    breakers: BreakersState = msgspec.field(default_factory=BreakersState)


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(EngineState)


class OpenOrders(Mapping[int, Order]):
    """Open orders (resting or pending trigger) by id, in id order: copies made on demand from
    the order pool, for queries and tests. The engine itself never goes through this."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __getitem__(self, order_id: int) -> Order:
        engine = self._engine
        slot = engine.pool.find(order_id) if isinstance(order_id, int) else NIL
        if slot == NIL:
            raise KeyError(order_id)
        return engine.order_at(slot)

    def __iter__(self) -> Iterator[int]:
        pool = self._engine.pool
        return iter([pool.order_id[slot] for slot in pool.open_slots()])

    def __len__(self) -> int:
        return int(self._engine.pool.live_count)


class Engine(MatchingCore):
    def __init__(self, config: EngineConfig | None = None, *, pool_slots: int = GROW_SLOTS) -> None:
        """``pool_slots``: open orders the order pool holds before it grows (capacity only, not
        part of the state)."""
        self.config = config or EngineConfig()
        MatchingCore.__init__(
            self,
            self.config.settle,
            self.config.max_open_orders_per_account,
            self.config.idempotency_window,
            pool_slots,
        )
        self.holds: dict[str, Hold] = {}
        self.ipo = IpoBook()
        # Resolved two-phase holds are forgotten like request ids: the newest
        # ``idempotency_window`` ids are kept (so a second post/release, or a new hold reusing
        # the id, is refused); an older id is unknown. Hold ids must be unique in that window.
        self._resolved_holds: dict[str, None] = {}
        self.orders = OpenOrders(self)
        handlers: dict[type, Any] = {
            c.MassCancel: admin.mass_cancel,
            c.CancelOrders: admin.cancel_orders,
            c.CreateAsset: admin.create_asset,
            c.CreateInstrument: admin.create_instrument,
            c.OpenAccounts: admin.open_accounts,
            c.SetAccountState: admin.set_account_state,
            c.KillSwitch: admin.kill_switch,
            c.SetPhase: admin.set_phase,
            c.SetVenueHalt: admin.set_venue_halt,
            c.Deposit: money.deposit,
            c.DepositMany: money.deposit_many,
            c.DepositBatch: money.deposit_batch,
            c.Withdraw: money.withdraw,
            c.Transfer: money.transfer,
            c.SetSurgeProtection: breaker_commands.set_surge_protection,
            c.SetMarketMaker: breaker_commands.set_market_maker,
            c.SetLossLimit: breaker_commands.set_loss_limit,
            c.SetVolatilityBand: breaker_commands.set_volatility_band,
            c.ResumeBreaker: breaker_commands.resume_breaker,
            c.Tick: breaker_commands.tick,
            c.Freeze: money.freeze,
            c.PostHold: money.post_hold,
            c.ReleaseHold: money.release_hold,
        }
        handlers.update(dict.fromkeys(IPO_COMMANDS, ipo_wiring.apply_ipo))
        for kind, handler in handlers.items():
            self.handlers[kind] = partial(handler, self)

    def add_instrument(self, spec: InstrumentSpec) -> Instrument:
        """A new instrument in CLOSED (the caller validated ``spec``)."""
        inst = Instrument(
            len(self.inst_list),
            spec,
            self.ledger.assets[spec.base_asset],
            self.ledger.assets[spec.quote_asset],
            self.pool,
        )
        self.inst_list.append(inst)
        self.instruments[spec.symbol] = inst
        return inst

    def _timers(self) -> None:
        breaker_commands.run_timers(self)

    def trip_lines(self, crossed: list[Any]) -> None:
        breaker_commands.trip_lines(self, crossed)

    def breakers_view(self) -> dict[str, Any]:
        """Every circuit breaker's settings, state and live figures (internal units)."""
        return breaker_commands.view(self)

    def original_seq(self, request_id: str) -> int | None:
        """The seq of the command a remembered request id belongs to."""
        return self.results.get(request_id)

    # ======================================================================================
    # Queries
    # ======================================================================================
    def order_at(self, slot: int) -> Order:
        pool = self.pool
        return order_of(pool, self.inst_list[pool.inst[slot]].symbol, slot)

    def l1(self, symbol: str) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """(best bid (price, lots), best ask (price, lots)); None for an empty side."""
        book = self.instruments[symbol].book
        bid = book.best_bid()
        ask = book.best_ask()
        return (
            (bid, book.bids[bid].lots) if bid else None,
            (ask, book.asks[ask].lots) if ask else None,
        )

    def l2(self, symbol: str, levels: int = 10) -> dict[str, list[tuple[int, int, int]]]:
        book = self.instruments[symbol].book
        return {"bids": book.depth(BUY_CODE, levels), "asks": book.depth(SELL_CODE, levels)}

    def l3(self, symbol: str) -> dict[str, list[Order]]:
        inst = self.instruments[symbol]
        pool = self.pool
        return {
            "bids": [order_of(pool, symbol, s) for s in inst.book.slots(BUY_CODE)],
            "asks": [order_of(pool, symbol, s) for s in inst.book.slots(SELL_CODE)],
        }

    def balance(self, account: int, asset: str) -> tuple[int, int]:
        return self.ledger.assets[asset].get(account)

    # ======================================================================================
    # Invariants, snapshot, hash
    # ======================================================================================
    def check_invariants(self) -> None:
        """Full (O(state)) check of every invariant; raises InvariantViolation."""
        held: dict[tuple[int, str], int] = {}
        seen: set[int] = set()
        pool = self.pool
        for inst in self.inst_list:
            inst.book.check_invariants(allow_crossed=inst.phase is not Phase.CONTINUOUS)
            resting = inst.book.slots(BUY_CODE) + inst.book.slots(SELL_CODE)
            for slot in resting + list(inst.stop_slots):
                order_id = pool.order_id[slot]
                if pool.find(order_id) != slot or pool.inst[slot] != inst.index:
                    raise InvariantViolation(f"order {order_id} missing from the index")
                if slot in seen:
                    raise InvariantViolation(f"order {order_id} is in two places")
                seen.add(slot)
                if self.settle:
                    side = pool.side[slot]
                    need = inst.hold_need(side, pool.price[slot], pool.leaves[slot])
                    asset = inst.quote.asset if side == BUY_CODE else inst.base.asset
                    if pool.hold[slot] != need:
                        raise InvariantViolation(
                            f"order {order_id} holds {pool.hold[slot]}, needs {need}"
                        )
                    key = (pool.account[slot], asset)
                    held[key] = held.get(key, 0) + need
        if seen != set(pool.open_slots()) or len(seen) != pool.live_count:
            raise InvariantViolation("order index holds orders that are not in any book")
        if sum(len(ids) for ids in self.client_index if ids) != pool.live_count:
            raise InvariantViolation("client order id index out of step")
        for slot in seen:
            if self.live_order_id(pool.account[slot], pool.client_ids[slot]) != pool.order_id[slot]:
                raise InvariantViolation(f"client order id of order {pool.order_id[slot]} lost")
        if sum(self.open_counts_arr) != pool.live_count:
            raise InvariantViolation("open order counts out of step")
        for hold in self.holds.values():
            if hold.resolved or hold.hold_id in self._resolved_holds:
                raise InvariantViolation(f"hold {hold.hold_id} is both pending and resolved")
            key = (hold.account, hold.asset)
            held[key] = held.get(key, 0) + hold.amount_minor
        for account, asset, amount in self.ipo.holds():
            held[(account, asset)] = held.get((account, asset), 0) + amount
        self.ledger.check_invariants()
        for asset, bal in self.ledger.assets.items():
            for account in range(len(bal.frozen)):
                if bal.frozen[account] != held.get((account, asset), 0):
                    raise InvariantViolation(
                        f"account {account} frozen {asset} {bal.frozen[account]} "
                        f"!= holds {held.get((account, asset), 0)}"
                    )

    def snapshot(self) -> bytes:
        """The whole state, canonically encoded (msgpack)."""
        return _state_encoder.encode(self._state(self.seq, self.ts_ns))

    def _state(self, seq: int, ts_ns: int) -> EngineState:
        pool = self.pool
        return EngineState(
            version=STATE_VERSION,
            config=self.config,
            seq=seq,
            ts_ns=ts_ns,
            next_order_id=self.next_order_id,
            next_trade_id=self.next_trade_id,
            venue_halted=self.venue_halted,
            accounts_count=self.ledger.accounts_count,
            account_states=list(self.account_states.items()),
            assets=[
                AssetState(b.asset, b.scale, memoryview(b.available), memoryview(b.frozen))
                for b in self.ledger.assets.values()
            ],
            instruments=[
                InstrumentState(
                    i.spec,
                    i.phase,
                    i.reference_price_ticks,
                    i.last_price_ticks,
                    [order_of(pool, i.symbol, s) for s in i.book.slots(BUY_CODE)],
                    [order_of(pool, i.symbol, s) for s in i.book.slots(SELL_CODE)],
                    [order_of(pool, i.symbol, s) for s in i.stop_slots],
                    i.band_free,
                )
                for i in self.inst_list
            ],
            holds=list(self.holds.values()),
            results=list(self.results.items()),
            resolved_holds=list(self._resolved_holds),
            ipo=self.ipo.state(),
            breakers=breaker_commands.state(self),
        )

    @classmethod
    def restore(cls, blob: bytes, *, pool_slots: int = GROW_SLOTS) -> Engine:
        state = _state_decoder.decode(blob)
        if state.version not in READABLE_STATE_VERSIONS:
            raise ValueError(f"snapshot version {state.version}, expected {STATE_VERSION}")
        open_orders = sum(len(s.bids) + len(s.asks) + len(s.stops) for s in state.instruments)
        engine = cls(state.config, pool_slots=max(pool_slots, open_orders + 1))
        engine.seq = state.seq
        engine.ts_ns = state.ts_ns
        engine.next_order_id = state.next_order_id
        engine.next_trade_id = state.next_trade_id
        engine.venue_halted = state.venue_halted
        engine.ledger.accounts_count = state.accounts_count
        engine.account_states = dict(state.account_states)
        for a in state.assets:
            engine.ledger.add_asset(a.asset, a.scale)
            engine.ledger.assets[a.asset].load(a.available, a.frozen)
        for s in state.instruments:
            inst = engine.add_instrument(s.spec)
            inst.phase = s.phase
            inst.band_free = s.band_free
            inst.set_reference(s.reference_price_ticks)
            inst.last_price_ticks = s.last_price_ticks
            for order in s.bids + s.asks:
                inst.book.add(engine._restore_order(inst, order))
            inst.stop_slots = [engine._restore_order(inst, order) for order in s.stops]
        # Snapshots from before resolved holds were windowed still list them as resolved.
        engine.holds = {h.hold_id: h for h in state.holds if not h.resolved}
        engine._resolved_holds = dict.fromkeys(
            [h.hold_id for h in state.holds if h.resolved] + state.resolved_holds
        )
        engine.ipo = IpoBook.from_state(state.ipo)
        engine.remember_all(dict(state.results))
        breaker_commands.load(engine, state.breakers)
        return engine

    def _restore_order(self, inst: Instrument, order: Order) -> int:
        """Put a snapshot's open order into the pool (linked into the open-order list at its
        id's place) and the indexes; returns its slot."""
        pool = self.pool
        slot = pool.insert_sorted(order.order_id)
        pool.account[slot] = order.account
        pool.inst[slot] = inst.index
        pool.side[slot] = BUY_CODE if order.side is Side.BUY else SELL_CODE
        pool.order_type[slot] = TYPE_CODE[order.order_type]
        pool.tif[slot] = TIF_CODE[order.tif]
        pool.stp[slot] = STP_CODE[order.stp]
        pool.post_only[slot] = 1 if order.post_only else 0
        pool.price[slot] = order.price_ticks
        pool.quantity[slot] = order.quantity_lots
        pool.leaves[slot] = order.leaves_lots
        pool.cum[slot] = order.cum_lots
        pool.cum_notional[slot] = order.cum_notional_ticks
        pool.stop[slot] = order.stop_price_ticks
        pool.hold[slot] = order.hold_minor
        pool.client_ids[slot] = order.client_order_id
        pool.id_objs[slot] = order.order_id
        pool.account_objs[slot] = order.account
        self.remember_client_id(order.account, order.client_order_id, order.order_id)
        self.count_open_order(order.account)
        return slot

    def state_hash(self) -> str:
        """SHA-256 of the canonical encoding of the venue's state: equal on leader, replicas and
        after replay. It leaves out the log position (seq, ts_ns), which every sequenced command
        advances, so a rejected or repeated command leaves the hash unchanged."""
        return hashlib.sha256(_state_encoder.encode(self._state(0, 0))).hexdigest()


__all__ = ["Engine", "EngineConfig", "EngineState", "Instrument", "Order"]
