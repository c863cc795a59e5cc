"""Durable command journal: one interface (`Journal`), a file implementation, snapshots."""

from openbell.journal.base import Journal, JournalRecord
from openbell.journal.errors import (
    CorruptRecordError,
    FencedError,
    JournalError,
    JournalLockedError,
    SeqUnavailableError,
)
from openbell.journal.file import FileJournal, VerifyReport, verify
from openbell.journal.snapshot import Snapshot, SnapshotStore

__all__ = [
    "CorruptRecordError",
    "FencedError",
    "FileJournal",
    "Journal",
    "JournalError",
    "JournalLockedError",
    "JournalRecord",
    "SeqUnavailableError",
    "Snapshot",
    "SnapshotStore",
    "VerifyReport",
    "verify",
]
