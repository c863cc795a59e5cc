"""A small blocking FIX 4.4 initiator over TCP (simplefix): tests, the bench's load clients and
scripts. It signs its Logon like the acceptor expects (``logon.logon_signature``), numbers its
messages, keeps what it sent (to answer a ResendRequest), and reads messages one at a time.
"""

from __future__ import annotations

import socket
import time

import simplefix

from openbell.gateway.fix import codec as f
from openbell.gateway.fix.logon import logon_signature

Fields = list[tuple[bytes | int, bytes | str | int]]


class FixClient:
    def __init__(
        self,
        port: int,
        sender: str,
        key_id: str,
        secret: str,
        *,
        target: str = "OPENBELL",
        host: str = "127.0.0.1",
        timeout_s: float = 10.0,
    ) -> None:
        self.sender = sender.encode()
        self.target = target.encode()
        self.key_id = key_id
        self.secret = secret
        self.next_out = 1
        self.sent: dict[int, tuple[bytes, Fields]] = {}
        self.parser = f.new_parser()
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout_s = timeout_s

    # -- sending --------------------------------------------------------------------------------
    def encode(
        self, msg_type: bytes, fields: Fields, *, seq: int | None = None, poss_dup: bool = False
    ) -> bytes:
        """The next message (or ``seq``'s) as bytes; numbered and kept unless ``seq`` given."""
        if seq is None:
            seq = self.next_out
            self.next_out += 1
            self.sent[seq] = (msg_type, fields)
        sent = f.sending_time()
        return f.encode(
            msg_type,
            self.sender,
            self.target,
            seq,
            fields,
            sent=sent,
            orig_sent=sent if poss_dup else None,
        )

    def send(
        self, msg_type: bytes, fields: Fields, *, seq: int | None = None, poss_dup: bool = False
    ) -> int:
        """Send; returns its MsgSeqNum."""
        number = self.next_out if seq is None else seq
        self.sock.sendall(self.encode(msg_type, fields, seq=seq, poss_dup=poss_dup))
        return number

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def logon(
        self,
        *,
        heartbeat_s: int = 30,
        reset: bool = False,
        cancel_on_disconnect: bool = False,
        secret: str | None = None,
        extra: Fields | None = None,
    ) -> simplefix.FixMessage:
        """Send a signed Logon and return the acceptor's first answer."""
        if reset:
            self.next_out = 1
            self.sent = {}
        seq = self.next_out
        self.next_out += 1
        sent = f.sending_time()
        signature = logon_signature(
            secret or self.secret, sent, seq, self.sender, self.target, self.key_id.encode()
        )
        fields: Fields = [(f.ENCRYPT_METHOD, 0), (f.HEART_BT_INT, heartbeat_s)]
        if reset:
            fields.append((f.RESET_SEQ_NUM_FLAG, b"Y"))
        fields += [
            (f.USERNAME, self.key_id),
            (f.RAW_DATA_LENGTH, len(signature)),
            (f.RAW_DATA, signature),
        ]
        if cancel_on_disconnect:
            fields.append((f.CANCEL_ON_DISCONNECT, b"Y"))
        fields += extra or []
        self.sent[seq] = (f.LOGON, fields)
        self.sock.sendall(f.encode(f.LOGON, self.sender, self.target, seq, fields, sent=sent))
        return self.receive()

    def answer_resend(self, request: simplefix.FixMessage) -> None:
        """Answer a ResendRequest: application messages again (PossDupFlag=Y), session
        messages gap-filled."""
        begin = int(request.get(f.BEGIN_SEQ_NO))
        end = int(request.get(f.END_SEQ_NO)) or self.next_out - 1
        seq = begin
        while seq <= end:
            kept = self.sent.get(seq)
            if kept is None or kept[0] in f.ADMIN_TYPES:
                gap_end = seq
                while gap_end <= end and (
                    self.sent.get(gap_end) is None or self.sent[gap_end][0] in f.ADMIN_TYPES
                ):
                    gap_end += 1
                self.send(
                    f.SEQUENCE_RESET,
                    [(f.GAP_FILL_FLAG, b"Y"), (f.NEW_SEQ_NO, gap_end)],
                    seq=seq,
                    poss_dup=True,
                )
                seq = gap_end
                continue
            self.send(kept[0], kept[1], seq=seq, poss_dup=True)
            seq += 1

    # -- receiving ------------------------------------------------------------------------------
    def receive(self, timeout_s: float | None = None) -> simplefix.FixMessage:
        """The next message; raises TimeoutError, or ConnectionError when the acceptor closed."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            message = self.parser.get_message()
            if message is not None:
                return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no FIX message in time")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("no FIX message in time") from None
            if not data:
                raise ConnectionError("the acceptor closed the connection")
            self.parser.append_buffer(data)

    def expect(self, msg_type: bytes, timeout_s: float | None = None) -> simplefix.FixMessage:
        """The next message that is ``msg_type``, skipping heartbeats; anything else fails."""
        while True:
            message = self.receive(timeout_s)
            kind = message.get(f.MSG_TYPE)
            if kind == msg_type:
                return message
            if kind != f.HEARTBEAT:
                raise AssertionError(f"expected 35={msg_type!r}, got {message}")

    def closed(self, timeout_s: float = 5.0) -> bool:
        """True once the acceptor has closed the connection (messages before it are dropped)."""
        try:
            while True:
                self.receive(timeout_s)
        except ConnectionError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


__all__ = ["FixClient"]
