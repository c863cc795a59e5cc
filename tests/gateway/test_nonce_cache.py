"""Replay protection: a nonce is remembered for as long as its request could be replayed."""

from __future__ import annotations

import pytest

from openbell.gateway.auth import WINDOW_MS, NonceCache, NonceCacheFull


def test_a_nonce_is_never_forgotten_while_its_request_could_be_replayed() -> None:
    cache = NonceCache(per_key=50_000)
    t0 = 1_000_000
    assert cache.check_and_add("k", "first-nonce", t0)
    for i in range(20_000):  # more traffic than a count-bounded cache of 10k would keep
        assert cache.check_and_add("k", f"n{i:08d}", t0 + i)
    assert not cache.check_and_add("k", "first-nonce", t0 + 2 * WINDOW_MS - 1)
    assert cache.check_and_add("other-key", "first-nonce", t0)  # nonces are per key
    # Two windows later its timestamp is refused anyway, so it may be forgotten.
    assert cache.check_and_add("k", "first-nonce", t0 + 2 * WINDOW_MS + 30_000)


def test_a_full_cache_refuses_new_nonces_instead_of_forgetting_live_ones() -> None:
    cache = NonceCache(per_key=3)
    t0 = 5_000_000
    for n in ("aaaaaaaa", "bbbbbbbb", "cccccccc"):
        assert cache.check_and_add("k", n, t0)
    with pytest.raises(NonceCacheFull):
        cache.check_and_add("k", "dddddddd", t0 + 10)
    assert not cache.check_and_add("k", "aaaaaaaa", t0 + 20)  # still remembered
    assert cache.check_and_add("k", "dddddddd", t0 + 2 * WINDOW_MS + 1)  # room again
