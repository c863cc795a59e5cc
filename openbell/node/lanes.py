"""Admission lanes: IPO traffic queues in its own lane, never in front of trading.

A subscription flood (millions of ``IpoSubscribe`` in the minutes an offering is open) must not
slow normal trading. The sequencer therefore keeps two FIFO lanes:

- the *trading* lane: every command that is not an IPO command (and every read query);
- the *IPO* lane: every IPO command (``openbell.core.ipo.messages.IPO_COMMANDS``), so an
  offering's own commands stay in order (a close submitted after a subscription is sequenced
  after it). Subscription commands (subscribe, batch subscribe, cancel a subscription) are
  admitted through a token-bucket rate limit and a bounded queue; a refusal is a typed
  ``LaneBusy`` (``BUSY``: nothing happened, retry later). Operator IPO commands (create,
  close, number, draw, settle, list) are rare and always admitted.

Each batch takes trading commands first (up to ``max_batch``) and then at most
``IpoLaneConfig.max_per_batch`` IPO commands; when no trading command is waiting, the IPO lane
gets a batch of its own, but only once the journal has caught up, so a trading command arriving
meanwhile waits behind at most one IPO share. Determinism is unaffected: the journal records the
interleaving the sequencer chose, and replay applies exactly that.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from openbell.core.ipo.messages import (
    IPO_COMMANDS,
    IpoCancelSubscription,
    IpoSubscribe,
    IpoSubscribeBatch,
)

if TYPE_CHECKING:
    from openbell.node.sequencer import Pending

IPO_LANE_COMMANDS: tuple[type, ...] = IPO_COMMANDS
# Client traffic that can flood: rate-limited and bounded. Other IPO commands are the operator's.
SUBSCRIPTION_COMMANDS: tuple[type, ...] = (IpoSubscribe, IpoSubscribeBatch, IpoCancelSubscription)


class Busy(Exception):
    """The inbound queue is full: try again later."""


class LaneBusy(Busy):
    """The IPO lane refused a subscription: its queue is full or its rate limit is reached.
    Nothing happened; retry after ``retry_after_s``."""

    def __init__(self, lane: str, why: str, retry_after_s: float) -> None:
        super().__init__(f"the {lane} lane is busy ({why}); retry in {retry_after_s:.3f} s")
        self.lane = lane
        self.why = why
        self.retry_after_s = retry_after_s


class IpoLaneConfig(msgspec.Struct, kw_only=True, frozen=True):
    """``max_per_s``: subscription commands admitted per second (token bucket, bursts of
    ``burst`` commands); ``queue_capacity``: subscription commands waiting at most;
    ``max_per_batch``: IPO commands per sequencer batch (the lane's share: an IPO subscription
    costs about 65 us to apply, so 4 of them add about 0.3 ms to a batch; measured: 4 keeps
    trading ack p99 within 2x of a quiet venue at 10 k/s, 8 and 16 did not)."""

    max_per_s: int = 10_000
    burst: int = 2_000
    queue_capacity: int = 20_000
    max_per_batch: int = 4

    def __post_init__(self) -> None:
        if self.max_per_s <= 0 or self.burst <= 0:
            raise ValueError("the IPO lane's rate and burst must be positive")
        if self.queue_capacity <= 0 or self.max_per_batch <= 0:
            raise ValueError("the IPO lane's queue capacity and batch share must be positive")


# Whether each command type seen so far goes to the IPO lane. ``isinstance`` against the tuple
# costs about 350 ns for a trading command (it tries every IPO type through msgspec's metaclass);
# a dict lookup on the type is about 30 ns, and the sequencer asks once per submitted command.
_IPO_BY_TYPE: dict[type, bool] = {}


def _is_ipo_type(kind: type) -> bool:
    answer = _IPO_BY_TYPE.get(kind)
    if answer is None:
        answer = _IPO_BY_TYPE[kind] = issubclass(kind, IPO_LANE_COMMANDS)
    return answer


def is_ipo(command: Any) -> bool:
    answer = _IPO_BY_TYPE.get(type(command))
    return _is_ipo_type(type(command)) if answer is None else answer


def any_ipo(commands: Iterable[Any]) -> bool:
    """Whether any of ``commands`` is an IPO lane command (each distinct type looked at once)."""
    return any(map(_is_ipo_type, set(map(type, commands))))


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved up. Thread-safe."""

    def __init__(
        self, rate_per_s: int, burst: int, clock_s: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock_s = clock_s
        self._tokens = float(burst)
        self._at_s = clock_s()
        self._lock = threading.Lock()

    def take(self, count: int) -> float:
        """Take ``count`` tokens: 0.0 when granted, else the seconds until they would be."""
        with self._lock:
            now = self._clock_s()
            self._tokens = min(
                float(self.burst), self._tokens + (now - self._at_s) * self.rate_per_s
            )
            self._at_s = now
            if count > self.burst:  # one item larger than any burst: admit it on a full bucket
                if self._tokens >= self.burst:
                    self._tokens = 0.0
                    return 0.0
                return (self.burst - self._tokens) / self.rate_per_s
            if self._tokens >= count:
                self._tokens -= count
                return 0.0
            return (count - self._tokens) / self.rate_per_s


class IpoLane:
    """The IPO lane's FIFO queue, admission checks and counters."""

    def __init__(self, config: IpoLaneConfig, clock_s: Callable[[], float] = time.monotonic):
        self.config = config
        self.queue: collections.deque[Pending] = collections.deque()
        self.bucket = TokenBucket(config.max_per_s, config.burst, clock_s)
        self.admitted = 0
        self.refused_rate = 0
        self.refused_full = 0
        self.sequenced = 0

    def __len__(self) -> int:
        return len(self.queue)

    def admit(self, items: list[Pending]) -> None:
        """Queue ``items`` (all IPO commands, in order) or raise LaneBusy and queue none."""
        subscriptions = sum(1 for p in items if isinstance(p.command, SUBSCRIPTION_COMMANDS))
        if subscriptions:
            if len(self.queue) + subscriptions > self.config.queue_capacity:
                self.refused_full += 1
                wait_s = subscriptions / self.config.max_per_s
                raise LaneBusy("IPO", "queue full", max(wait_s, 0.001))
            wait_s = self.bucket.take(subscriptions)
            if wait_s:
                self.refused_rate += 1
                raise LaneBusy("IPO", f"rate limit {self.config.max_per_s}/s", wait_s)
        self.queue.extend(items)
        self.admitted += len(items)

    def take(self, limit: int) -> list[Pending]:
        """Up to ``limit`` commands from the front (sequencer thread only)."""
        queue = self.queue
        out: list[Pending] = []
        while queue and len(out) < limit:
            out.append(queue.popleft())
        self.sequenced += len(out)
        return out

    def drain(self) -> list[Pending]:
        out = list(self.queue)
        self.queue.clear()
        return out
