# Cython declarations that augment breakers.py when it is compiled (pure-Python mode).
# LossLine and LossGuard stay Python classes: they run on Python integers, off the hot path.
cimport cython

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
