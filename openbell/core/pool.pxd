# Cython declarations that augment pool.py when it is compiled (pure-Python mode).
cimport cython

cdef class OrderPool:
    cdef public long long capacity
    cdef public long long free_head
    cdef public long long live_count
    cdef public long long oldest
    cdef public long long newest
    cdef public list client_ids
    cdef public list id_objs
    cdef public list account_objs
    cdef public dict overflow
    cdef public long long index_size
    cdef object _index_arr
    cdef list _arrays
    cdef object _table
    cdef long long[::1] index
    cdef readonly long long[:] order_id
    cdef readonly long long[:] account
    cdef readonly long long[:] inst
    cdef readonly long long[:] side
    cdef readonly long long[:] order_type
    cdef readonly long long[:] tif
    cdef readonly long long[:] stp
    cdef readonly long long[:] post_only
    cdef readonly long long[:] price
    cdef readonly long long[:] quantity
    cdef readonly long long[:] leaves
    cdef readonly long long[:] cum
    cdef readonly long long[:] cum_notional
    cdef readonly long long[:] stop
    cdef readonly long long[:] hold
    cdef readonly long long[:] prev
    cdef readonly long long[:] next
    cdef readonly long long[:] older
    cdef readonly long long[:] newer

    cdef void _views(self) except *
    @cython.locals(table=cython.longlong[:, ::1])
    cdef void _table_views(self) except *
    cdef void _drop_views(self) except *
    cpdef grow(self, long long slots)
    @cython.locals(slot=cython.longlong, newest=cython.longlong)
    cpdef long long alloc(self, long long order_id) except -2
    cpdef long long insert_sorted(self, long long order_id) except -2
    cpdef release(self, long long slot)
    cdef void _unlink_open(self, long long slot) except *
    @cython.locals(slot=cython.longlong)
    cpdef long long find(self, long long order_id) except -2
    @cython.locals(at=cython.longlong, held=cython.longlong)
    cdef void _index_put(self, long long order_id, long long slot) except *
    @cython.locals(at=cython.longlong)
    cdef void _index_drop(self, long long order_id, long long slot) except *
    cpdef column(self, str name)
    cpdef list open_slots(self)
