# Cython declarations that augment ledger.py when it is compiled (pure-Python mode).
cdef class AssetBalances:
    cdef public str asset
    cdef public object scale
    cdef public object available
    cdef public object frozen
    cdef long long[::1] av
    cdef long long[::1] fr
    cdef public object marks
    cdef long long[::1] mk
    cpdef ensure(self, long long account)
    cpdef grow_marks(self, long long account)

cdef class Ledger:
    cdef public dict assets
    cdef public long long accounts_count
