# Cython declarations that augment matching.py when it is compiled (pure-Python mode).
# Hot locals are C integers; objects from commands are range-checked before they become one.
cimport cython
from openbell.core.pool cimport OrderPool
from openbell.core.book cimport Book, Level
from openbell.core.ledger cimport AssetBalances, Ledger
from openbell.core.breakers cimport LossGuard, LossLine, RateMeter, SurgeSettings, VolatilityBand

cdef long long _BUY, _SELL, FIRST_USER
cdef long long TYPE_LIMIT, TYPE_MARKET, TYPE_STOP, TYPE_STOP_LIMIT
cdef long long TIF_GTC, TIF_DAY, TIF_IOC, TIF_FOK
cdef long long STP_CANCEL_NEWEST, STP_CANCEL_OLDEST, STP_CANCEL_BOTH, STP_DECREMENT_AND_CANCEL
cdef long long NO_AGGRESSOR, _BPS, _NS_PER_S
cdef Py_ssize_t P_ACCOUNT, P_SYMBOL, P_CLIENT_ID, P_SIDE, P_LOTS, P_PRICE, P_TYPE, P_TIF
cdef Py_ssize_t P_POST_ONLY, P_STP, P_REQUEST_ID, C_ACCOUNT, C_ORDER_ID, C_REQUEST_ID

cpdef long long fee_of(long long notional, long long bps) noexcept

cdef class Instrument:
    cdef public long long index
    cdef public object spec
    cdef public str symbol
    cdef public Book book
    cdef public OrderPool pool
    cdef public object phase
    cdef public AssetBalances base
    cdef public AssetBalances quote
    cdef public long long lot_size
    cdef public long long tick_value
    cdef public long long band_bps
    cdef public long long market_protection_bps
    cdef public long long maker_fee_bps
    cdef public long long taker_fee_bps
    cdef public long long max_fee_bps
    cdef public long long max_order_lots
    cdef public long long max_notional_minor
    cdef public long long reference_price_ticks
    cdef public long long last_price_ticks
    cdef public list stop_slots
    cdef public long long band_low_ticks
    cdef public long long band_high_ticks
    cdef public bint band_free
    cdef public long long scan_high_ticks
    cdef public long long scan_low_ticks
    cdef public VolatilityBand vol
    cdef public long long vol_low_ticks
    cdef public long long vol_high_ticks

    cpdef note_price(self, long long price_ticks)
    cpdef reset_scan(self)
    @cython.locals(vol=VolatilityBand)
    cpdef copy_band(self)
    @cython.locals(vol=VolatilityBand)
    cpdef band_now(self, long long now_s)
    @cython.locals(band=cython.longlong, width=cython.longlong, vol=VolatilityBand)
    cpdef set_reference(self, long long price_ticks)
    @cython.locals(notional=cython.longlong)
    cpdef long long buy_hold(self, long long price, long long lots) except? -1
    cpdef long long hold_need(self, long long side, long long price, long long lots) except? -1

cpdef object order_of(OrderPool pool, str symbol, long long slot)

cdef class MatchingCore:
    cdef public bint settle
    cdef public long long max_open_orders
    cdef public long long idempotency_window
    cdef public OrderPool pool
    cdef public Ledger ledger
    cdef public dict instruments
    cdef public list inst_list
    cdef public dict account_states
    cdef public bint venue_halted
    cdef public long long seq
    cdef public long long ts_ns
    cdef public long long next_order_id
    cdef public long long next_trade_id
    cdef public object failure
    cdef public list client_index
    cdef public str last_symbol
    cdef public Instrument last_inst
    cdef public object open_counts_arr
    cdef long long[::1] open_counts
    cdef public dict results
    cdef public list results_ring
    cdef public long long results_next
    cdef public object seq_obj
    cdef public list events
    cdef public list touched_accounts
    cdef public list touched_bals
    cdef public long long touch_gen
    cdef public dict handlers
    cdef public bint emit
    cdef public long long ts_s
    cdef public long long next_timer_ns
    cdef public list pre_events
    cdef public bint surge_on
    cdef public SurgeSettings surge_venue
    cdef public SurgeSettings surge_account
    cdef public RateMeter venue_meter
    cdef public list account_meters
    cdef public dict market_makers
    cdef public LossGuard loss
    cdef public bint loss_on

    @cython.locals(events=list, kind=object)
    cpdef list apply(self, long long seq, long long ts_ns, object cmd)
    @cython.locals(events=list, kind=object, trades_before=cython.longlong, fields=tuple)
    cdef list _apply(self, long long seq, long long ts_ns, object cmd)
    cdef list _after_pre(self, list first)
    cpdef _timers(self)
    @cython.locals(guard=LossGuard, crossed=list, now=cython.longlong, line=LossLine,
                   gross=cython.longlong)
    cdef void check_losses(self) except *
    cpdef trip_lines(self, list crossed)
    cpdef RateMeter meter_of(self, long long account)
    @cython.locals(meters=list, meter=RateMeter)
    cdef RateMeter _meter_of(self, long long account)
    cpdef object line_value(self, LossLine line)
    @cython.locals(marks=list, prices="long long[::1]", j=cython.Py_ssize_t, inst=Instrument)
    cdef void _mark(self, LossLine line) except *
    @cython.locals(gross=object, value=object)
    cdef object _line_value(self, LossLine line)
    @cython.locals(now_s=cython.longlong, venue=RateMeter, meter=RateMeter)
    cdef void _surge(self, long long account, bint adds, bint buys) except *
    @cython.locals(calm=cython.longlong)
    cdef void _protection_started(self, RateMeter meter, object scope, object account,
                                  long long now_s) except *
    @cython.locals(vol=VolatilityBand, until=cython.longlong)
    cpdef _volatility_trip(self, Instrument inst, long long price)
    @cython.locals(out=list, seq=cython.longlong, events=list)
    cpdef list apply_batch(self, long long first_seq, long long ts_ns, list commands, bint emit=*)
    @cython.locals(events=list, account=cython.longlong, bal=AssetBalances, accounts=list,
                   bals=list, i=cython.Py_ssize_t)
    cdef void _balance_events(self) except *
    @cython.locals(ring=list, at=cython.longlong)
    cdef void _remember(self, object request_id) except *
    cpdef remember_all(self, dict results)
    cpdef flush_balances(self)
    cpdef object live_order_id(self, long long account, str client_order_id)
    cpdef remember_client_id(self, long long account, str client_order_id, object order_id)
    cpdef touch(self, long long account, AssetBalances bal)
    cdef void _touch(self, long long account, AssetBalances bal) except *
    cdef void _grow_open_counts(self, long long account) except *
    cpdef count_open_order(self, long long account)
    cpdef long long open_orders_of(self, long long account)

    @cython.locals(inst=Instrument, account=cython.longlong, lots=cython.longlong,
                   side=cython.longlong, price=cython.longlong, tif=cython.longlong,
                   stop=cython.longlong, hold=cython.longlong, bal=AssetBalances,
                   pool=OrderPool, slot=cython.longlong, client_ids=dict, last=Instrument,
                   order_type=cython.longlong, open_count=cython.longlong)
    cdef void _place(self, object cmd, tuple fields) except *
    cpdef check_user_account(self, object account)
    @cython.locals(band=cython.longlong, ref=cython.longlong, width=cython.longlong)
    cdef void _check_price(self, Instrument inst, object price) except *
    @cython.locals(width=cython.longlong)
    cdef long long _protection_price(self, Instrument inst, long long side, long long ref) except? -1
    @cython.locals(tif=cython.longlong, stop=cython.longlong, price=cython.longlong,
                   ref=cython.longlong)
    cdef tuple _check_special_order(self, Instrument inst, object cmd, long long side)
    @cython.locals(need=cython.longlong, book=Book, pool=OrderPool, level=Level,
                   slot=cython.longlong, account=cython.longlong, cancel_oldest=cython.bint)
    cdef bint _fok_fillable(self, Instrument inst, object cmd, long long side, long long price) except -1

    @cython.locals(level=Level)
    cdef void _rest(self, Instrument inst, long long slot) except *
    cdef void _level_changed(self, Instrument inst, long long side, Level level) except *
    @cython.locals(pool=OrderPool, book=Book, events=list,
                   limit=cython.longlong, taker_id=cython.longlong,
                   taker_account=cython.longlong, is_buy=cython.bint, keys=list, levels=dict,
                   maker_side=cython.longlong, aggressor=cython.longlong, stopped=cython.bint,
                   price=cython.longlong, level=Level, maker=cython.longlong,
                   lots=cython.longlong, tif=cython.longlong, order_type=cython.longlong,
                   market=cython.bint)
    cdef void _take(self, Instrument inst, long long taker) except *
    @cython.locals(pool=OrderPool, mode=cython.longlong, lots=cython.longlong,
                   taker_id=cython.longlong)
    cdef bint _self_trade(self, Instrument inst, long long maker, long long taker) except -1
    @cython.locals(pool=OrderPool, notional_ticks=cython.longlong, buyer=cython.longlong,
                   seller=cython.longlong, buy_fee=cython.longlong, sell_fee=cython.longlong,
                   notional=cython.longlong, maker_bps=cython.longlong,
                   taker_bps=cython.longlong, quote=AssetBalances, base=AssetBalances,
                   b=cython.longlong, s=cython.longlong, new_hold=cython.longlong,
                   paid=cython.longlong, refund=cython.longlong, shares=cython.longlong,
                   trade_id=cython.longlong, events=list,
                   leaves=cython.longlong)
    cdef void _execute(self, Instrument inst, long long maker, long long taker, long long price,
                      long long lots, long long aggressor) except *
    @cython.locals(pool=OrderPool, account=cython.longlong, count=cython.longlong,
                   client_ids=dict)
    cdef void _finish(self, long long slot) except *
    @cython.locals(pool=OrderPool, side=cython.longlong, need=cython.longlong,
                   release=cython.longlong, bal=AssetBalances, account=cython.longlong)
    cpdef release_hold(self, Instrument inst, long long slot)
    @cython.locals(pool=OrderPool, side=cython.longlong, need=cython.longlong,
                   release=cython.longlong, bal=AssetBalances, account=cython.longlong)
    cdef void _release_hold(self, Instrument inst, long long slot) except *
    @cython.locals(pool=OrderPool, level=Level, leaves=cython.longlong)
    cdef void _reduce(self, Instrument inst, long long slot, long long lots, object reason,
                     bint resting) except *
    cpdef after_trades(self, Instrument inst)
    cdef void _after_trades(self, Instrument inst) except *
    @cython.locals(pool=OrderPool, high=cython.longlong, low=cython.longlong,
                   last=cython.longlong, slot=cython.longlong)
    cdef void _trigger_stops(self, Instrument inst) except *
    @cython.locals(slot=cython.longlong)
    cpdef long long owned_order(self, object account, object order_id) except? -1
    @cython.locals(slot=cython.longlong)
    cdef long long _owned_order(self, object account, object order_id) except? -1
    cdef void _cancel(self, tuple fields) except *
    @cython.locals(pool=OrderPool, inst=Instrument, events=list,
                   level=Level, leaves=cython.longlong, hold=cython.longlong,
                   bal=AssetBalances, account=cython.longlong)
    @cython.locals(pool=OrderPool, level=Level, leaves=cython.longlong)
    cdef long long _withdraw(self, Instrument inst, long long slot) except? -1
    cpdef cancel_order(self, long long slot, object reason)
    @cython.locals(pool=OrderPool, inst=Instrument, events=list,
                   level=Level, leaves=cython.longlong, hold=cython.longlong,
                   bal=AssetBalances, account=cython.longlong)
    cdef void _cancel_order(self, long long slot, object reason) except *
    @cython.locals(pool=OrderPool, slot=cython.longlong, inst=Instrument, price=cython.longlong,
                   lots=cython.longlong, cum=cython.longlong, account=cython.longlong,
                   side=cython.longlong, new_leaves=cython.longlong, book=Book,
                   need=cython.longlong, bal=AssetBalances, extra=cython.longlong,
                   available=cython.longlong, order_id=cython.longlong, level=Level)
    cdef void _replace(self, object cmd) except *
    cpdef long long cancel_matching(self, object account, object symbol, object reason) except? -1
    cpdef expire_day_orders(self, Instrument inst)
    cpdef uncross(self, Instrument inst)
    cpdef list queue(self, Level level)
    cpdef long long _auction_self_trade(self, Book book, long long price) except? -2

cpdef check_post_only(Book book, long long side, long long price)
