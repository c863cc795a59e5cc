"""The numbering hash the core records at IpoNumber, the draw's entropy, and the operator's
figures (winning rate, tails per length)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np

from openbell import ipo_io, ipo_ops
from openbell.core.ipo import lottery
from openbell.core.ipo import messages as m
from openbell.core.ipo.book import IpoBook, IpoState
from openbell.core.ipo.numbering import render_rows

from .helpers import SEED, Venue, batch, spec

S = "NEWCO"


def _numbered(units: list[int]) -> Venue:
    v = Venue(len(units), 10**10)
    v.run(m.IpoCreateOffering(symbol=S, spec=spec(max_units=100)))
    v.run(batch(S, np.arange(v.first, v.first + len(units)), units))
    v.run(m.IpoClose(symbol=S))
    return v


def test_numbering_hash_is_the_exported_files_and_survives_a_snapshot(tmp_path: Path) -> None:
    v = _numbered([3, 1, 99, 7, 12])
    (numbered,) = v.run(m.IpoNumber(symbol=S))
    path = tmp_path / "numbering.csv"
    ipo_io.write_numbering(v.book, S, path)
    assert numbered.numbering_sha256 == ipo_io.file_sha256(path)
    assert v.book.offering_view(S).numbering_sha256 == numbered.numbering_sha256
    assert path.read_text() == (
        "account,first_number,count\n"
        "16,000000000001,3\n17,000000000004,1\n18,000000000005,99\n"
        "19,000000000104,7\n20,000000000111,12\n"
    )
    back = ipo_io.read_numbering(path)
    assert back.counts.tolist() == [3, 1, 99, 7, 12]
    blob = msgspec.msgpack.encode(v.book.state())
    twin = IpoBook.from_state(msgspec.msgpack.decode(blob, type=IpoState))
    assert twin.offerings[S].numbering_sha256 == numbered.numbering_sha256
    assert msgspec.msgpack.encode(twin.state()) == blob
    # The draw takes the hash in: same seed, another numbering, another draw.
    (drawn,) = v.run(m.IpoDraw(symbol=S, seed=SEED))
    assert drawn.numbering_sha256 == numbered.numbering_sha256
    entropy = lottery.draw_entropy(SEED, numbered.numbering_sha256)
    want = lottery.draw_tails(entropy, S, 122, 10)
    assert drawn.tails == want.labels() and drawn.won_units == 10


def test_renderer_matches_duckdb_csv_at_every_width(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    accounts = rng.integers(16, 10**12, 2_000).astype(np.int64)
    accounts[:20] = np.arange(16, 36)
    counts = rng.integers(1, 10**6, 2_000).astype(np.int64)
    counts[:10] = np.arange(1, 11)
    first = np.cumsum(counts) - counts + 1
    expected = "".join(
        f"{a},{f:012d},{c}\n"
        for a, f, c in zip(accounts.tolist(), first.tolist(), counts.tolist(), strict=True)
    )
    assert render_rows(accounts, first, counts).decode() == expected


def test_winning_rate_as_the_announcements_print_it() -> None:
    # A percentage with 10 decimals, rounded half up: 0.02787852267.. -> 0.0278785227.
    assert ipo_ops.winning_rate(45_217, 162_192_956) == "0.0278785227 %"
    assert ipo_ops.winning_rate(1, 3) == "33.3333333333 %"
    assert ipo_ops.winning_rate(2, 3) == "66.6666666667 %"  # half up
    assert ipo_ops.winning_rate(1_300, 40_000) == "3.2500000000 %"
    assert ipo_ops.winning_rate(1, 10**12 - 1) == "0.0000000001 %"
    assert ipo_ops.winning_rate(5, 5) == "100 %"


def test_tails_by_length_add_up_to_the_winners() -> None:
    entropy = lottery.draw_entropy(b"seed", "")
    d = lottery.draw_tails(entropy, "REAL", 162_192_956, 45_217)
    groups = ipo_ops.tails_by_length(d.labels(), 162_192_956)
    assert [k for k, _, _ in groups][:5] == [4, 5, 6, 7, 8]
    assert [len(g) for _, g, _ in groups][:5] == [2, 7, 8, 7, 8]
    assert sum(won for _, _, won in groups) == 45_217
    assert ipo_ops.issuer_name(0).startswith("the issuer")
    assert ipo_ops.issuer_name(42) == "the issuer account 42"
