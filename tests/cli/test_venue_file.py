"""Venue files that cannot be applied say why, naming the field, before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from openbell.venue import VenueError, load_venue_file

REPO = Path(__file__).resolve().parents[2]


def test_the_example_file_loads() -> None:
    venue = load_venue_file(REPO / "docs" / "venue.toml")
    assert [a.code for a in venue.assets] == ["USD", "ACME", "GLOBEX"]
    assert [i.symbol for i in venue.instruments] == ["ACME", "GLOBEX"]
    assert venue.fee_schedules["standard"].taker_bps == 5
    assert venue.accounts[0].deposits == {"USD": "1000000.00", "ACME": "50000", "GLOBEX": "20000"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[[assets]\ncode = 'USD'", ["not valid TOML"]),
        ("[[assets]]\ncode = 'USD'\nscale = 2\ncolour = 'red'", ["colour"]),
        ("[[assets]]\ncode = 'usd'\nscale = 2", ["assets[0].code"]),
        ("[[assets]]\ncode = 'USD'\nscale = 40", ["assets[0].scale"]),
        (
            "[[instruments]]\nsymbol='A'\nbase='A'\nquote='USD'\ntick='0.01'\nfees='gold'",
            ["no fee schedule 'gold'"],
        ),
        (
            "[[instruments]]\nsymbol='A'\nbase='A'\nquote='USD'\ntick='0.01'\n"
            "[[instruments]]\nsymbol='A'\nbase='A'\nquote='USD'\ntick='0.01'",
            ["instrument A appears twice"],
        ),
        ("[[accounts]]\nid = 3", ["accounts[0].id"]),  # a system account
        ("[[accounts]]\nid = 16\n[[accounts]]\nid = 16", ["appears twice"]),
        (
            "[[instruments]]\nsymbol='A'\nbase='A'\nquote='USD'\ntick='0.01'\nphase='OPEN'",
            ["instruments[0].phase"],
        ),
    ],
)
def test_bad_files_are_refused_with_the_field(tmp_path: Path, text: str, words: list[str]) -> None:
    path = tmp_path / "venue.toml"
    path.write_text(text)
    with pytest.raises(VenueError) as err:
        load_venue_file(path)
    for word in words:
        assert word in str(err.value), str(err.value)
    assert str(path) in str(err.value)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VenueError, match="cannot read"):
        load_venue_file(tmp_path / "nope.toml")
