"""A FIX session's sequence numbers and sent messages, kept across reconnects and restarts.

One append-only file per session, ``DATA_DIR/fix/sessions/<SenderCompID>.log``, of records:

- ``K <key id>\\n``: the API key the session belongs to (its first record);
- ``R <next out> <next in>\\n``: sequence numbers set (a new file, or a reset);
- ``O <seq> <length>\\n<message>``: an application message sent (kept for a ResendRequest);
- ``A <seq>\\n``: an administrative message sent (a resend gap-fills it);
- ``I <seq>\\n``: the client's messages processed up to ``seq``.

Recovery reads the records in order and stops at the first incomplete one (a torn tail from a
crash), which it truncates. Records are written (``os.write``, no ``fsync``) once per burst of
messages, before the messages themselves go to the socket: a killed process loses nothing it
sent; a machine crash may lose the tail (the client's ResendRequest / the acceptor's own then
bridges the gap). The venue's state is in the node's journal, not here.

A Logon with ResetSeqNumFlag=Y starts the file anew (sequence numbers 1 and 1).
"""

from __future__ import annotations

import os
from pathlib import Path


class StoreError(Exception):
    """The session's file belongs to another key, or cannot be read."""


class SessionStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.key_id = ""
        self.next_out = 1  # MsgSeqNum of the next message the acceptor sends
        self.next_in = 1  # MsgSeqNum expected from the client
        self.sent: dict[int, tuple[int, int]] = {}  # app message seq -> (offset, length)
        self._pending = bytearray()
        self._last_in = -1  # the client's last message processed, not yet in ``_pending``
        self._fd = -1
        self._size = 0

    # -- opening --------------------------------------------------------------------------------
    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        data = b""
        with open(self.path, "rb") as f:
            data = f.read()
        end = self._replay(data)
        if end != len(data):
            os.ftruncate(self._fd, end)
        self._size = end
        os.lseek(self._fd, end, os.SEEK_SET)

    def _replay(self, data: bytes) -> int:
        """Apply the records of ``data``; returns the offset after the last complete one."""
        pos = 0
        size = len(data)
        while pos < size:
            line_end = data.find(b"\n", pos)
            if line_end < 0:
                break
            words = data[pos:line_end].split(b" ")
            kind = words[0]
            try:
                if kind == b"O" and len(words) == 3:
                    seq, length = int(words[1]), int(words[2])
                    if line_end + 1 + length > size:
                        break
                    self.sent[seq] = (line_end + 1, length)
                    self.next_out = seq + 1
                    pos = line_end + 1 + length
                    continue
                if kind == b"A" and len(words) == 2:
                    self.next_out = int(words[1]) + 1
                elif kind == b"I" and len(words) == 2:
                    self.next_in = int(words[1]) + 1
                elif kind == b"R" and len(words) == 3:
                    self.next_out, self.next_in = int(words[1]), int(words[2])
                    self.sent = {}
                elif kind == b"K" and len(words) == 2:
                    self.key_id = words[1].decode()
                else:
                    break
            except ValueError:
                break
            pos = line_end + 1
        return pos

    def bind(self, key_id: str) -> None:
        """Bind a new session to ``key_id``; a session of another key is refused."""
        if self.key_id and self.key_id != key_id:
            raise StoreError("this SenderCompID belongs to another API key")
        if not self.key_id:
            self.key_id = key_id
            self._pending += b"K " + key_id.encode() + b"\n"
            self._pending += b"R %d %d\n" % (self.next_out, self.next_in)
            self.flush()

    def reset(self) -> None:
        """Sequence numbers back to 1 and 1, sent messages forgotten (a new file)."""
        self.flush()
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        self._size = 0
        self.next_out = self.next_in = 1
        self.sent = {}
        self._pending += b"K " + self.key_id.encode() + b"\n" + b"R 1 1\n"
        self.flush()

    # -- recording ------------------------------------------------------------------------------
    def record_app(self, seq: int, encoded: bytes) -> None:
        header = b"O %d %d\n" % (seq, len(encoded))
        offset = self._size + len(self._pending) + len(header)
        self._pending += header
        self._pending += encoded
        self.sent[seq] = (offset, len(encoded))

    def record_admin(self, seq: int) -> None:
        self._pending += b"A %d\n" % seq

    def record_in(self, seq: int) -> None:
        """The client's message ``seq`` is processed: one ``I`` record per flush, the last
        (a read brings tens of messages, and recovery keeps only the last ``I`` anyway)."""
        self._last_in = seq

    def set_next_in(self, next_in: int) -> None:
        """After a SequenceReset: the next MsgSeqNum expected."""
        self.next_in = next_in
        self._last_in = next_in - 1

    def flush(self) -> None:
        if self._last_in >= 0:
            self._pending += b"I %d\n" % self._last_in
            self._last_in = -1
        if self._pending and self._fd >= 0:
            view = memoryview(self._pending)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            self._size += len(self._pending)
            self._pending = bytearray()

    def read_sent(self, seq: int) -> bytes | None:
        """The application message sent as ``seq`` (None: an admin message, or not kept)."""
        where = self.sent.get(seq)
        if where is None:
            return None
        self.flush()
        offset, length = where
        return os.pread(self._fd, length, offset)

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1


__all__ = ["SessionStore", "StoreError"]
