"""The journal interface shared by the file journal and the NATS JetStream journal."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import msgspec


class JournalRecord(msgspec.Struct, frozen=True, gc=False):
    """One durable batch: ``count`` commands numbered ``first_seq .. last_seq``."""

    first_seq: int
    count: int
    payload: bytes

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1


class Journal(Protocol):
    """An append-only, fenced, durable log of command batches.

    Sequence numbers start at 1; a journal holding nothing has ``last_seq == 0``.
    """

    @property
    def last_seq(self) -> int:
        """Sequence number of the last durable command (0 when empty)."""
        ...

    def append(self, expected_last_seq: int, first_seq: int, count: int, payload: bytes) -> None:
        """Append one batch and make it durable before returning (one fsync per call).

        Raises FencedError if ``expected_last_seq != last_seq`` or ``first_seq != last_seq + 1``.
        """
        ...

    def read(self, from_seq: int) -> Iterator[JournalRecord]:
        """Yield, in order, every record whose ``last_seq >= from_seq``.

        A record containing ``from_seq`` in the middle of its batch is yielded whole.
        """
        ...

    def prune_before(self, seq: int) -> int:
        """Delete whole segments whose records all have ``last_seq < seq``.

        Returns the number of segments removed; never removes the active segment.
        """
        ...

    def close(self) -> None:
        """Release files and locks. Idempotent."""
        ...


@runtime_checkable
class PipelinedJournal(Journal, Protocol):
    """A journal that takes the next batch before the previous one is durable (a replicated
    log, whose round trip is most of an append's time)."""

    def append_async(
        self, expected_last_seq: int, first_seq: int, count: int, payload: bytes
    ) -> Future[int]:
        """Send one batch; ``expected_last_seq`` is the last seq *sent*. The future is set once
        this batch and every one sent before it are durable, in order; after a failure every
        later one fails too."""
        ...


class ClosingJournal:
    """``with journal: ...`` closes it: the context-manager half every journal shares."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
