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


_QUAD = np.array(
    [[ord(c) for c in f"{i:04d}"] for i in range(10_000)], dtype=np.uint8
)  # the four ASCII digits of 0..9999


def _digits(out: npt.NDArray[np.uint8], values: I64, width: int) -> None:
    """Right-aligned, zero-padded decimal digits of non-negative ``values`` into ``out``
    (rows x width), four at a time."""
    v = values.copy()
    right = width
    while right > 0:
        take = min(4, right)
        quad = _QUAD[v % 10_000]
        out[:, right - take : right] = quad[:, 4 - take :]
        right -= take
        if right:
            v //= 10_000


def render_rows(accounts: I64, first_numbers: I64, counts: I64) -> bytes:
    """The rows (no header) as the numbering file's bytes."""
    rows = len(accounts)
    if not rows:
        return b""
    wa, wc, wf = _width(accounts), _width(counts), FIRST_NUMBER_DIGITS
    at_f = wa + 1
    at_c = at_f + wf + 1
    width = at_c + wc + 1
    grid = np.empty((rows, width), dtype=np.uint8)
    _digits(grid[:, :wa], accounts, wa)
    grid[:, wa] = _COMMA
    _digits(grid[:, at_f : at_f + wf], first_numbers, wf)
    grid[:, at_c - 1] = _COMMA
    _digits(grid[:, at_c : at_c + wc], counts, wc)
    grid[:, width - 1] = _NEWLINE
    keep = np.ones((rows, width), dtype=bool)
    for lo, w, values in ((0, wa, accounts), (at_c, wc, counts)):
        if w > 1:
            digits = np.ones(rows, dtype=np.int64)
            for k in range(1, w):
                digits += values >= 10**k
            keep[:, lo : lo + w] = np.arange(w) >= (w - digits)[:, None]
    out: bytes = grid[keep].tobytes()
    return out


def chunks(accounts: I64, first_numbers: I64, counts: I64) -> Iterator[bytes]:
    """The whole file (header first) in pieces of at most CHUNK_ROWS rows."""
    yield HEADER
    for lo in range(0, len(accounts), CHUNK_ROWS):
        hi = lo + CHUNK_ROWS
        yield render_rows(accounts[lo:hi], first_numbers[lo:hi], counts[lo:hi])


def sha256(accounts: I64, first_numbers: I64, counts: I64) -> str:
    """The numbering file's SHA-256 (hex)."""
    digest = hashlib.sha256()
    for piece in chunks(accounts, first_numbers, counts):
        digest.update(piece)
    return digest.hexdigest()
