"""The numbering file's bytes and SHA-256, computed by the core when numbers are assigned.

The numbering file (``account,first_number,count``, one row per numbered subscription in
number order, first numbers zero-padded to 12 digits, ``\\n`` line ends) is what the venue
publishes before the draw; its SHA-256 enters the draw's randomness (``lottery.draw_entropy``)
and anyone holding the file can check it against the hash the node recorded. The core renders
the bytes itself (vectorised, in chunks, never the whole file in memory), and the edge writes
the file with the same renderer, so the two always agree byte for byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
HEADER = b"account,first_number,count\n"
FIRST_NUMBER_DIGITS = 12
CHUNK_ROWS = 1 << 20
_COMMA, _NEWLINE, _ZERO = 44, 10, 48


def _width(values: I64) -> int:
    top = int(values.max()) if len(values) else 0
    return max(1, len(str(top)))


_QUAD = np.array([[ord(c) for c in f"{i:04d}"] for i in range(10_000)], dtype=np.uint8)
_QUAD32 = _QUAD.view("<u4").reshape(-1)  # the four ASCII digits of 0..9999 as one word


def _field(values: I64, width: int) -> npt.NDArray[np.uint8]:
    """Right-aligned, zero-padded decimal digits of non-negative ``values`` (rows x width),
    four digits per table look-up."""
    rows, quads = len(values), -(-width // 4)
    words = np.empty((rows, quads), dtype="<u4")
    v = values.copy()
    for q in range(quads - 1, -1, -1):
        words[:, q] = _QUAD32[v % 10_000]
        if q:
            v //= 10_000
    out: npt.NDArray[np.uint8] = words.view(np.uint8).reshape(rows, quads * 4)
    return out[:, quads * 4 - width :]


def _digit_counts(values: I64, width: int) -> I64:
    bounds = np.array([10**k for k in range(1, width)], dtype=np.int64)
    out: I64 = np.searchsorted(bounds, values, side="right") + 1
    return out


def render_rows(accounts: I64, first_numbers: I64, counts: I64) -> bytes:
    """The rows (no header) as the numbering file's bytes: each row rendered at fixed widths,
    then the leading zeros of the account and count dropped (one boolean compaction)."""
    rows = len(accounts)
    if not rows:
        return b""
    wa, wc = _width(accounts), _width(counts)
    separator = np.full((rows, 1), _COMMA, dtype=np.uint8)
    grid = np.concatenate(
        (
            _field(accounts, wa),
            separator,
            _field(first_numbers, FIRST_NUMBER_DIGITS),
            separator,
            _field(counts, wc),
            np.full((rows, 1), _NEWLINE, dtype=np.uint8),
        ),
        axis=1,
    )
    ragged = [
        (lo, w, values)
        for lo, w, values in ((0, wa, accounts), (wa + FIRST_NUMBER_DIGITS + 2, wc, counts))
        if w > 1 and int(values.min()) < 10 ** (w - 1)
    ]
    if not ragged:
        return grid.tobytes()
    keep = np.ones(grid.shape, dtype=bool)
    for lo, w, values in ragged:
        keep[:, lo : lo + w] = np.arange(w) >= (w - _digit_counts(values, w))[:, None]
    out: bytes = grid[keep].tobytes()
    return out


def chunks(accounts: I64, first_numbers: I64, counts: I64) -> Iterator[bytes]:
    """The whole file (header first) in pieces of at most CHUNK_ROWS rows."""
    yield HEADER
    for lo in range(0, len(accounts), CHUNK_ROWS):
        hi = lo + CHUNK_ROWS
        yield render_rows(accounts[lo:hi], first_numbers[lo:hi], counts[lo:hi])


def sha256(
    accounts: npt.NDArray[Any],
    first_numbers: I64,
    counts: I64,
    rows: npt.NDArray[np.bool_] | None = None,
) -> str:
    """The numbering file's SHA-256 (hex) of the rows where ``rows`` is True (all rows when
    None), in order; chunk by chunk, so no full-length copy is made."""
    digest = hashlib.sha256(HEADER)
    for lo in range(0, len(accounts), CHUNK_ROWS):
        hi = lo + CHUNK_ROWS
        a, f, c = accounts[lo:hi], first_numbers[lo:hi], counts[lo:hi]
        if rows is not None:
            keep = rows[lo:hi]
            a, f, c = a[keep], f[keep], c[keep]
        digest.update(render_rows(a.astype(np.int64), f, c))
    return digest.hexdigest()
