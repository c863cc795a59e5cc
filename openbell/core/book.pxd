# Cython declarations that augment book.py when it is compiled (pure-Python mode).
cimport cython
from openbell.core.pool cimport OrderPool

cdef class Level:
    cdef public long long price_ticks
    cdef public long long lots
    cdef public long long count
    cdef public long long head
    cdef public long long tail

@cython.locals(level=Level)
cdef Level new_level(long long price_ticks)

cdef class Book:
    cdef public str symbol
    cdef public OrderPool pool
    cdef public dict bids
    cdef public dict asks
    cdef public list bid_prices
    cdef public list ask_keys

    cpdef long long best_bid(self) except -1
    cpdef long long best_ask(self) except -1
    cpdef Level level(self, long long side, long long price)
    @cython.locals(price=cython.longlong, level=Level, tail=cython.longlong, key=cython.longlong)
    cpdef Level add(self, long long slot)
    @cython.locals(prev=cython.longlong, nxt=cython.longlong)
    cpdef unlink(self, Level level, long long slot)
    @cython.locals(level=Level)
    cpdef Level remove(self, long long slot)
    cpdef drop_level(self, long long side, long long price)
