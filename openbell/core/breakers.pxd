# Cython declarations that augment breakers.py when it is compiled (pure-Python mode).
# LossGuard stays a Python class: it plans, off the hot path.
cimport cython
from openbell.core.ledger cimport AssetBalances

cdef long long _MAX_SUM, _BPS, _MAX_PRICE, _NO_TIMER, _RING_START

cdef class SurgeSettings:
    cdef public bint enabled
    cdef public long long ratio_pct
    cdef public long long floor_per_s
    cdef public long long window_s
    cdef public long long hold_down_s
    cpdef list as_list(self)

cdef class RateMeter:
    cdef public SurgeSettings settings
    cdef public long long second
    cdef public long long count
    cdef public long long baseline_milli
    cdef public long long threshold
    cdef public bint protected
    cdef public long long last_over_second
    cdef public long long last_rate

    @cython.locals(count=cython.longlong)
    cpdef bint hit(self, long long now_s) except -1
    @cython.locals(settings=SurgeSettings, window=cython.longlong, b=cython.longlong,
                   idle=cython.longlong)
    cpdef roll(self, long long now_s)
    @cython.locals(settings=SurgeSettings, threshold=cython.longlong)
    cpdef refresh(self)
    cpdef long long calm_from_ns(self)
    cpdef long long rate_per_s(self, long long now_s)
    cpdef list as_list(self)
    cpdef load(self, list values)

cdef class VolatilityBand:
    cdef public long long band_bps
    cdef public bint average
    cdef public long long window_s
    cdef public long long auction_s
    cdef public long long anchor_ticks
    cdef public object bucket_notional
    cdef public object bucket_lots
    cdef long long[::1] notional_view
    cdef long long[::1] lots_view
    cdef public long long sum_notional
    cdef public long long sum_lots
    cdef public long long last_second
    cdef public long long auction_end_ns
    cdef public long long low_ticks
    cdef public long long high_ticks

    cpdef long long reference_ticks(self)
    @cython.locals(ref=cython.longlong, width=cython.longlong, low=cython.longlong,
                   high=cython.longlong)
    cpdef recompute(self)
    @cython.locals(last=cython.longlong, window=cython.longlong, s=cython.longlong,
                   i=cython.longlong)
    cpdef bint advance(self, long long now_s) except -1
    @cython.locals(i=cython.longlong, notional=cython.longlong)
    cpdef note_trade(self, long long now_s, long long price_ticks, long long lots_traded)
    @cython.locals(i=cython.longlong)
    cpdef restart(self, long long anchor_ticks)
    @cython.locals(i=cython.longlong)
    cpdef list window_state(self)
    cpdef load_window(self, list values)

cdef class LossLine:
    cdef public object account
    cdef public tuple accounts
    cdef public object account_ids
    cdef long long[::1] accounts_view
    cdef public str asset
    cdef public object limit_minor
    cdef public long long window_ns
    cdef public object flows_minor
    cdef public bint tripped
    cdef public long long last_gross
    cdef public bint gross_known
    cdef public object peak_ts
    cdef public object peak_until
    cdef long long[::1] ts_view
    cdef long long[::1] until_view
    cdef public list peak_values
    cdef public long long ring_mask
    cdef public long long head
    cdef public long long size
    cdef public object quote
    cdef public list marks
    cdef public list mark_bases
    cdef public object mark_prices
    cdef public object mark_tick_values
    cdef public object mark_lot_sizes
    cdef long long[::1] prices_view
    cdef long long[::1] tick_values_view
    cdef long long[::1] lot_sizes_view

    cpdef set_marks(self, object quote, list marks)
    @cython.locals(quote=AssetBalances, accounts="long long[::1]", bases=list,
                   base=AssetBalances, gross=cython.longlong, k=cython.Py_ssize_t,
                   j=cython.Py_ssize_t, account=cython.longlong, held=cython.longlong)
    cpdef long long gross(self) except? -1
    @cython.locals(gross=object, account=object, held=object)
    cpdef object gross_wide(self)
    cpdef object last_value(self)

    cpdef _new_ring(self, long long capacity)
    @cython.locals(mask=cython.longlong, head=cython.longlong, size=cython.longlong,
                   values=list, at=cython.longlong, start=cython.longlong, peak=object)
    cpdef object note(self, long long ts_ns, object value)
    cpdef _grow(self)
    cpdef object peak(self)
    cpdef restart(self, long long ts_ns, object value)
    @cython.locals(mask=cython.longlong, k=cython.longlong, i=cython.longlong, out=list)
    cpdef list peaks_list(self)
    @cython.locals(capacity=cython.longlong, i=cython.longlong)
    cpdef load_peaks(self, list peaks)

cdef class LossGuard:
    cdef public dict lines
    cdef public long long planned_for
