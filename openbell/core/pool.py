"""The order pool: every open order lives in a slot of preallocated integer columns.

Layout (structure of arrays): one ``array('q')`` column per field, indexed by slot. An order
costs 8 bytes a field (19 fields, 152 bytes) plus one reference for its client order id; no
Python object exists per order while it rests. Compiled (``pool.pxd``), every column is also a
typed memoryview, so the matching core reads and writes order fields as C array elements.

- **Slots** are handed out from a free list (LIFO, so a slot freed a moment ago is reused while
  it is still in the CPU cache) and the pool grows by whole chunks of ``GROW_SLOTS`` when the free
  list runs dry. Size it from the configuration (``EngineConfig.order_pool_slots``) so that a
  running venue never grows: growing copies every column once.
- **Links are slot indices**, never object references: ``prev``/``next`` chain an order into its
  price level's FIFO queue (or its instrument's list of pending stops), ``older``/``newer`` into
  the pool-wide list of open orders in order-id order (mass cancel, DAY expiry and snapshots
  walk it). ``NIL`` (-1) ends a chain. Unlinking is O(1) and leaves nothing behind; freeing a
  million orders is a loop, not a recursive release.
- **Order id to slot** is a ring of ``INDEX_SLOTS`` entries indexed by ``order_id % size``. The
  entry holds the slot; the slot's ``order_id`` column confirms the match. Order ids are handed
  out in sequence, so two open orders share an entry only when one has rested while
  ``INDEX_SLOTS`` newer orders arrived; the older one then moves to a small overflow dict.
  Lookup, insert and delete are O(1) with no hashing in the common case.

Enumerations are stored as small integer codes (``BUY``/``SELL``, ``TYPE_*``, ``TIF_*``,
``STP_*``); ``types.py`` maps them to the public enums at the edges of the core.
"""

from __future__ import annotations

from array import array
from typing import Any

from openbell.core.errors import InvariantViolation

try:
    import cython

    _COMPILED: bool = cython.compiled
except ImportError:  # Cython is a build requirement; the interpreted core runs without it
    _COMPILED = False

NIL = -1
GROW_SLOTS = 1 << 16
INDEX_SLOTS = 1 << 20

_EMPTY: array[int] = array("q")


# Compiled, the pool is one table of rows (array of structures): an order's fields are
# neighbours in memory, so touching an order costs one or two cache lines, not one per field.
# Each field is then a strided view of its column of the table. The row puts what the matching
# walk reads first. Interpreted, each field is its own array (one index operation per access).
_ROW = (
    "next", "leaves", "account", "cum", "cum_notional", "hold", "price", "side",
    "prev", "order_id", "stop", "inst", "order_type", "tif", "stp", "post_only",
    "quantity", "older", "newer",
)  # fmt: skip
ROW_FIELDS = len(_ROW)
_FIELDS = (
    "order_id", "account", "inst", "side", "order_type", "tif", "stp", "post_only", "price",
    "quantity", "leaves", "cum", "cum_notional", "stop", "hold", "prev", "next", "older", "newer",
)  # fmt: skip


def _column(size: int, fill: int = 0) -> array[int]:
    if fill == 0:
        return array("q", bytes(8 * size))
    return array("q", [fill]) * size


class OrderPool:
    """Typed in ``pool.pxd`` (a C class when compiled)."""

    def __init__(self, slots: int = GROW_SLOTS, index_slots: int = INDEX_SLOTS) -> None:
        if slots < 1 or index_slots < 1:
            raise ValueError("the pool needs at least one slot and one index entry")
        self.capacity = 0
        self.free_head = NIL
        self.live_count = 0
        self.oldest = NIL  # the open order with the smallest id
        self.newest = NIL
        self.client_ids: list[str] = []
        # The order id and account as Python ints, made once per order: every event of the
        # order reuses them instead of boxing the C integers again.
        self.id_objs: list[int] = []
        self.account_objs: list[int] = []
        self.overflow: dict[int, int] = {}  # order id -> slot, for ids the ring had to evict
        self.index_size = index_slots
        self._index_arr = _column(index_slots, NIL)
        self.index = self._index_arr
        self._arrays: list[array[int]] = []  # interpreted: one array per field
        self._table: array[int] = array("q")  # compiled: rows of ROW_FIELDS
        self._views()
        self.grow(slots)

    # -- storage --------------------------------------------------------------------------
    def _views(self) -> None:
        """Point the typed views at the columns (after they were created or grown)."""
        if _COMPILED:
            if self.capacity:
                self._table_views()
            else:
                self._drop_views()
            return
        arrays = self._arrays
        if not arrays:
            arrays.extend(array("q") for _ in _FIELDS)
        (
            self.order_id,
            self.account,
            self.inst,
            self.side,
            self.order_type,
            self.tif,
            self.stp,
            self.post_only,
            self.price,
            self.quantity,
            self.leaves,
            self.cum,
            self.cum_notional,
            self.stop,
            self.hold,
            self.prev,
            self.next,
            self.older,
            self.newer,
        ) = arrays

    def _table_views(self) -> None:
        # Compiled only: a 2-D view of the table, and each field a strided column of it.
        table: Any = memoryview(self._table).cast("B").cast("q", (self.capacity, ROW_FIELDS))
        self.next = table[:, 0]
        self.leaves = table[:, 1]
        self.account = table[:, 2]
        self.cum = table[:, 3]
        self.cum_notional = table[:, 4]
        self.hold = table[:, 5]
        self.price = table[:, 6]
        self.side = table[:, 7]
        self.prev = table[:, 8]
        self.order_id = table[:, 9]
        self.stop = table[:, 10]
        self.inst = table[:, 11]
        self.order_type = table[:, 12]
        self.tif = table[:, 13]
        self.stp = table[:, 14]
        self.post_only = table[:, 15]
        self.quantity = table[:, 16]
        self.older = table[:, 17]
        self.newer = table[:, 18]

    def _drop_views(self) -> None:
        e = _EMPTY
        self.order_id = self.account = self.inst = self.side = self.order_type = e
        self.tif = self.stp = self.post_only = self.price = self.quantity = e
        self.leaves = self.cum = self.cum_notional = self.stop = self.hold = e
        self.prev = self.next = self.older = self.newer = e

    def grow(self, slots: int) -> None:
        """Add ``slots`` free slots (copies every column once: size the pool up front)."""
        old = self.capacity
        new = old + slots
        self._drop_views()
        if _COMPILED:
            self._table.extend(_column(slots * ROW_FIELDS))
        else:
            for column in self._arrays:
                column.extend(_column(slots))
        self.capacity = new
        self._views()
        self.client_ids.extend([""] * slots)
        self.id_objs.extend([0] * slots)
        self.account_objs.extend([0] * slots)
        # New slots go on the free list in ascending order.
        nxt = self.next
        for slot in range(old, new - 1):
            nxt[slot] = slot + 1
        nxt[new - 1] = self.free_head
        self.free_head = old

    # -- slots ----------------------------------------------------------------------------
    def alloc(self, order_id: int) -> int:
        """A free slot for a new order (the newest open order), indexed by ``order_id``.
        Every field but the links is the caller's to set."""
        slot = self.free_head
        if slot == NIL:
            self.grow(GROW_SLOTS)
            slot = self.free_head
        self.free_head = self.next[slot]
        self.order_id[slot] = order_id
        self.prev[slot] = NIL
        self.next[slot] = NIL
        # Open orders in id order: a new order is always the newest.
        newest = self.newest
        self.older[slot] = newest
        self.newer[slot] = NIL
        if newest == NIL:
            self.oldest = slot
        else:
            self.newer[newest] = slot
        self.newest = slot
        self.live_count += 1
        self._index_put(order_id, slot)
        return slot

    def insert_sorted(self, order_id: int) -> int:
        """Like ``alloc`` for an order that may be older than open ones (a snapshot's restore
        adds orders level by level): it is linked into the open list at its id's place."""
        slot = self.alloc(order_id)
        older = self.older[slot]
        if older == NIL or self.order_id[older] < order_id:
            return slot
        self._unlink_open(slot)
        after = older
        while self.older[after] != NIL and self.order_id[self.older[after]] > order_id:
            after = self.older[after]
        before = self.older[after]
        self.older[slot] = before
        self.newer[slot] = after
        self.older[after] = slot
        if before == NIL:
            self.oldest = slot
        else:
            self.newer[before] = slot
        self.live_count += 1
        return slot

    def release(self, slot: int) -> None:
        """Return a closed order's slot to the free list and forget its id."""
        self._index_drop(self.order_id[slot], slot)
        self._unlink_open(slot)
        self.client_ids[slot] = ""
        self.id_objs[slot] = 0
        self.account_objs[slot] = 0
        self.order_id[slot] = 0
        self.next[slot] = self.free_head
        self.prev[slot] = NIL
        self.free_head = slot

    def _unlink_open(self, slot: int) -> None:
        older = self.older[slot]
        newer = self.newer[slot]
        if older == NIL:
            self.oldest = newer
        else:
            self.newer[older] = newer
        if newer == NIL:
            self.newest = older
        else:
            self.older[newer] = older
        self.live_count -= 1

    # -- order id -> slot -----------------------------------------------------------------
    def find(self, order_id: int) -> int:
        """The slot of open order ``order_id``, or NIL."""
        if order_id <= 0:
            return NIL
        slot = self.index[order_id % self.index_size]
        if slot != NIL and self.order_id[slot] == order_id:
            return slot
        if self.overflow:
            return self.overflow.get(order_id, NIL)
        return NIL

    def _index_put(self, order_id: int, slot: int) -> None:
        at = order_id % self.index_size
        held = self.index[at]
        if held != NIL:
            # An older open order has this entry: it moves to the overflow dict.
            self.overflow[self.order_id[held]] = held
        self.index[at] = slot

    def _index_drop(self, order_id: int, slot: int) -> None:
        at = order_id % self.index_size
        if self.index[at] == slot:
            self.index[at] = NIL
        elif self.overflow.pop(order_id, NIL) != slot:
            raise InvariantViolation(f"order {order_id} missing from the order index")

    def column(self, name: str) -> array[int]:
        """The storage of one field (``"hold"``, ``"price"``, ...): for diagnostics and tests;
        writing to it changes the order."""
        if name not in _FIELDS:
            raise KeyError(name)
        column: array[int] = getattr(self, name)
        return column

    def open_slots(self) -> list[int]:
        """Every open order's slot in order-id order."""
        out: list[int] = []
        slot = self.oldest
        newer = self.newer
        while slot != NIL:
            out.append(slot)
            slot = newer[slot]
        return out
