"""Typed errors raised by journal implementations."""

from __future__ import annotations


class JournalError(Exception):
    """Base class for every journal error."""


class FencedError(JournalError):
    """An append was rejected because the caller's view of the log tail is stale.

    Raised when ``expected_last_seq`` is not the journal's last sequence number, or when the batch
    does not start right after it. A deposed leader gets this error and must stop sequencing.
    """


class CorruptRecordError(JournalError):
    """A record failed validation somewhere other than a recoverable torn tail."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        self.path = path
        self.offset = offset
        self.reason = reason
        super().__init__(f"corrupt journal record in {path} at offset {offset}: {reason}")

    def __reduce__(self) -> tuple[type[CorruptRecordError], tuple[str, int, str]]:
        return (type(self), (self.path, self.offset, self.reason))


class JournalLockedError(JournalError):
    """Another writer (usually another process) already holds the journal directory."""


class SeqUnavailableError(JournalError):
    """The requested sequence number is no longer stored (pruned)."""


class ReplayMismatchError(JournalError):
    """Recovery found a journal that does not continue the state it rebuilds: a gap in the
    sequence, or a record whose payload does not match its header."""

    def __init__(self, seq: int, reason: str) -> None:
        self.seq = seq
        self.reason = reason
        super().__init__(f"journal does not continue the state at seq {seq}: {reason}")

    def __reduce__(self) -> tuple[type[ReplayMismatchError], tuple[int, str]]:
        return (type(self), (self.seq, self.reason))
