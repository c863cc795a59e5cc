"""One FIX 4.4 connection: the session layer (asyncio ``Protocol``, on the gateway's loop).

Per message, in order: frame (simplefix parses; a bad BodyLength or CheckSum, or bytes that do
not parse, are garbled and ignored, the MsgSeqNum not consumed) -> BeginString (not FIX.4.4:
Logout and disconnect) -> first message must be a Logon (else disconnect) -> CompIDs (wrong:
Reject and Logout) -> MsgSeqNum (missing: Logout; too high: ResendRequest, the message dropped
until the client resends it; too low without PossDupFlag=Y: Logout; too low with it: ignored)
-> the message: session messages here, application messages to ``openbell.gateway.fix.orders``.

Logon: see ``openbell.gateway.fix.logon``. Heartbeats: every HeartBtInt of silence from the
acceptor a Heartbeat; HeartBtInt (+20%) of silence from the client a TestRequest, and another
HeartBtInt without an answer ends the session. Sent messages and sequence numbers go through
``SessionStore`` (see there), so a ResendRequest after a reconnect or a venue restart resends
application messages (PossDupFlag=Y, OrigSendingTime) and gap-fills administrative ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, cast

import simplefix

from openbell.gateway.fix import codec as f
from openbell.gateway.fix.store import SessionStore

if TYPE_CHECKING:
    from openbell.gateway.fix.acceptor import FixAcceptor
    from openbell.gateway.fix.orders import SessionOrders

log = logging.getLogger("openbell.fix")

LOGON_TIMEOUT_S = 10.0
FEED_BYTES = 1024  # a read is given to the parser in pieces of this size (``data_received``)
MAX_PENDING_BYTES = 1 << 20  # an incomplete message longer than this ends the connection
RESENT_HEADER_TAGS = frozenset(
    {b"8", b"9", b"35", b"49", b"56", b"34", b"52", b"43", b"122", b"10"}
)


class FixSession(asyncio.Protocol):
    def __init__(self, acceptor: FixAcceptor) -> None:
        self.acceptor = acceptor
        self.parser = f.new_parser()
        self.transport: asyncio.Transport | None = None
        self.store: SessionStore | None = None
        self.orders: SessionOrders | None = None
        self.sender = b""  # the client's SenderCompID (our TargetCompID)
        self.comp_id = acceptor.config.comp_id.encode()
        self.logged_on = False
        self.closing = False
        self.heartbeat_s = 30
        self.cancel_on_disconnect = False
        self.last_in = time.monotonic()
        self.last_out = time.monotonic()
        self.test_sent_at = 0.0
        self.test_count = 0
        self.resend_until = 0  # > 0: a ResendRequest of ours is outstanding up to this seq
        self._out: list[bytes] = []
        self._starts: dict[bytes, bytes] = {}  # MsgType -> its header's start (``send_body``)
        self.flush_due = False
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.acceptor.connections.add(self)
        self._timer = asyncio.get_running_loop().call_later(LOGON_TIMEOUT_S, self._logon_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.acceptor.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.logged_on:
            self.logged_on = False
            self.acceptor.session_ended(self)
        if self.store is not None:
            self.store.close()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last_in = time.monotonic()
        self.test_sent_at = 0.0
        # simplefix's parser cuts every field it reads off the front of its buffer (a copy of
        # the rest): fed a whole read (tens of messages), that copying is a tenth of its time
        size = len(data)
        if size <= FEED_BYTES:
            self._parse(data)
        else:
            for start in range(0, size, FEED_BYTES):
                if self.closing:
                    break
                self._parse(data[start : start + FEED_BYTES])
        # written at the end of the loop's round, with the other sessions' and the reports
        if not self.flush_due:
            self.flush_due = True
            self.acceptor.flush_soon(self)

    def _parse(self, data: bytes) -> None:
        """Feed ``data`` to the session's simplefix parser and handle every message it
        completes."""
        parser = self.parser
        parser.append_buffer(data)
        while not self.closing:
            pending = len(parser.buf)
            try:
                message = parser.get_message()
            except f.ParsingError as error:  # not FIX: skip to the next BeginString, if any
                log.info("fix %s: unparsable bytes ignored (%s)", self.sender, error)
                rest = parser.buf
                parser.reset()
                start = rest.find(b"8=FIX")
                if start >= 0:
                    parser.append_buffer(rest[start:])
                    continue
                # a BeginString may begin in these last bytes and end in the next piece
                begin = rest.find(b"8", len(rest) - 4)
                if begin >= 0:
                    parser.append_buffer(rest[begin:])
                break
            if message is None:
                if parser.buf and len(parser.buf) < pending:
                    continue  # simplefix dropped fields outside a message: read on
                held = len(parser.buf) + sum(len(value) + 8 for _, value in parser.pairs)
                if held > MAX_PENDING_BYTES:  # no end in sight (no CheckSum, a huge RawData)
                    log.info("fix %s: message too long: disconnected", self.sender)
                    self.logout(b"message too long")
                break
            try:
                self._on_message(message)
            except Exception:  # one message must never take the session or the loop down
                log.exception("fix %s: message failed", self.sender)
                self.logout(b"internal error", close=True)

    # -- sending --------------------------------------------------------------------------------
    def send(self, msg_type: bytes, fields: list[tuple[bytes, bytes | str | int]]) -> None:
        store = self.store
        if store is None or self.transport is None or self.transport.is_closing():
            return
        seq = store.next_out
        store.next_out = seq + 1
        encoded = f.encode(msg_type, self.comp_id, self.sender, seq, fields)
        if msg_type in f.ADMIN_TYPES:
            store.record_admin(seq)
        else:
            store.record_app(seq, encoded)
        self._queue(encoded)

    def send_body(self, msg_type: bytes, body: bytes, sent: bytes) -> None:
        """An application message whose fields after the header simplefix already encoded
        (``body``, shared by every session it goes to), sent at ``sent``."""
        store = self.store
        if store is None or self.closing or self.transport is None:
            return
        seq = store.next_out
        store.next_out = seq + 1
        start = self._starts.get(msg_type)
        if start is None:
            start = self._starts[msg_type] = f.header_start(msg_type, self.comp_id, self.sender)
        encoded = f.encode_body(start, seq, sent, body)
        store.record_app(seq, encoded)
        self._queue(encoded)

    def send_raw(self, encoded: bytes) -> None:
        """A resent message (its seq already used)."""
        self._queue(encoded)

    def _queue(self, encoded: bytes) -> None:
        self._out.append(encoded)
        if not self.flush_due:
            self.flush_due = True
            self.acceptor.flush_soon(self)

    def flush(self) -> None:
        """The store's records first, then the bytes to the socket (one write)."""
        self.flush_due = False
        if self.store is not None:
            self.store.flush()
        if self._out:
            out = b"".join(self._out)
            self._out = []
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(out)
                self.last_out = time.monotonic()

    def logout(self, text: bytes, close: bool = True) -> None:
        """Send Logout (if logged on, else just disconnect) and close after it is written."""
        if self.store is not None and self.sender:
            self.send(f.LOGOUT, [(f.TEXT, text)])
        self.flush()
        if close:
            self.close()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()  # writes what is buffered first

    def reject(
        self, ref_seq: int, reason: int, text: str, ref_tag: bytes = b"", ref_type: bytes = b""
    ) -> None:
        fields: list[tuple[bytes, bytes | str | int]] = [(f.REF_SEQ_NUM, ref_seq)]
        if ref_tag:
            fields.append((f.REF_TAG_ID, ref_tag))
        if ref_type:
            fields.append((f.REF_MSG_TYPE, ref_type))
        fields += [(f.SESSION_REJECT_REASON, reason), (f.TEXT, text)]
        self.send(f.REJECT, fields)

    # -- receiving ------------------------------------------------------------------------------
    def _on_message(self, parsed: simplefix.FixMessage) -> None:
        problem = f.frame_problem(parsed)
        if problem:
            log.info("fix %s: garbled message ignored: %s", self.sender, problem)
            return
        message = f.fields_of(parsed)
        if message.get(b"8") != f.BEGIN_STRING:
            log.info("fix %s: BeginString %r refused", self.sender, message.get(b"8"))
            self.logout(b"BeginString must be FIX.4.4")
            if self.store is None:
                self.close()
            return
        msg_type = message.get(f.MSG_TYPE)
        seq_text = message.get(f.MSG_SEQ_NUM)
        if not self.logged_on:
            if msg_type != f.LOGON:
                log.info("fix: first message is not a Logon: disconnected")
                self.close()
                return
            from openbell.gateway.fix.logon import accept_logon

            accept_logon(self, message)
            return
        if (
            message.get(f.SENDER_COMP_ID) != self.sender
            or message.get(f.TARGET_COMP_ID) != self.comp_id
        ):
            seq = int(seq_text) if seq_text is not None and seq_text.isdigit() else 0
            self.reject(seq, f.COMP_ID_PROBLEM, "SenderCompID or TargetCompID is wrong")
            self.logout(b"CompID problem")
            return
        if seq_text is None or not seq_text.isdigit():
            self.logout(b"MsgSeqNum missing or not a number")
            return
        seq = int(seq_text)
        store = self.store
        assert store is not None
        expected = store.next_in
        if msg_type == f.SEQUENCE_RESET and message.get(f.GAP_FILL_FLAG) != b"Y":
            self._sequence_reset(message, seq)  # reset mode: MsgSeqNum is ignored
            return
        if seq > expected:
            if msg_type == f.LOGOUT:
                self.logout(b"logout acknowledged")
                return
            if msg_type == f.RESEND_REQUEST:
                self._resend(message, seq)
            if self.resend_until == 0:  # one outstanding request (to infinity) at a time
                self.resend_until = seq - 1
                self.send(f.RESEND_REQUEST, [(f.BEGIN_SEQ_NO, expected), (f.END_SEQ_NO, 0)])
            return
        if seq < expected:
            if message.get(f.POSS_DUP_FLAG) == b"Y":
                return  # already processed
            self.logout(f"MsgSeqNum too low, expecting {expected} but received {seq}".encode())
            return
        if msg_type == f.SEQUENCE_RESET:  # gap fill
            self._sequence_reset(message, seq)
            return
        store.next_in = seq + 1
        store.record_in(seq)
        if self.resend_until and seq >= self.resend_until:
            self.resend_until = 0
        twice = f.duplicate_tag(parsed, message)
        if twice is not None:
            self.reject(
                seq,
                f.TAG_APPEARS_MORE_THAN_ONCE,
                f"tag {twice.decode()} appears twice",
                twice,
                msg_type or b"",
            )
            return
        self._dispatch(message, msg_type, seq)

    def _dispatch(self, message: f.Fields, msg_type: bytes | None, seq: int) -> None:
        if msg_type is not None and msg_type not in f.ADMIN_TYPES:
            assert self.orders is not None
            self.orders.on_message(message, msg_type, seq)
        elif msg_type is None:
            self.reject(seq, f.REQUIRED_TAG_MISSING, "MsgType missing", f.MSG_TYPE)
        elif msg_type == f.HEARTBEAT:
            pass
        elif msg_type == f.TEST_REQUEST:
            test_id = message.get(f.TEST_REQ_ID)
            if test_id is None:
                self.reject(
                    seq, f.REQUIRED_TAG_MISSING, "TestReqID missing", f.TEST_REQ_ID, msg_type
                )
            else:
                self.send(f.HEARTBEAT, [(f.TEST_REQ_ID, test_id)])
        elif msg_type == f.RESEND_REQUEST:
            self._resend(message, seq)
        elif msg_type == f.LOGOUT:
            self.logout(b"logout acknowledged")
        elif msg_type == f.REJECT:
            log.info("fix %s: client rejected %r", self.sender, message.get(f.REF_SEQ_NUM))
        elif msg_type == f.LOGON:
            self.reject(seq, f.VALUE_INCORRECT, "already logged on", b"", msg_type)

    def _sequence_reset(self, message: f.Fields, seq: int) -> None:
        store = self.store
        assert store is not None
        new_text = message.get(f.NEW_SEQ_NO)
        if new_text is None or not new_text.isdigit():
            self.reject(
                seq, f.REQUIRED_TAG_MISSING, "NewSeqNo missing", f.NEW_SEQ_NO, f.SEQUENCE_RESET
            )
            return
        new_seq = int(new_text)
        if new_seq < store.next_in:
            self.reject(
                seq,
                f.VALUE_INCORRECT,
                f"NewSeqNo {new_seq} is below the expected {store.next_in}",
                f.NEW_SEQ_NO,
                f.SEQUENCE_RESET,
            )
            return
        store.set_next_in(new_seq)
        if self.resend_until and new_seq > self.resend_until:
            self.resend_until = 0

    def _resend(self, message: f.Fields, seq: int) -> None:
        store = self.store
        assert store is not None
        begin_text = message.get(f.BEGIN_SEQ_NO)
        end_text = message.get(f.END_SEQ_NO)
        if begin_text is None or not begin_text.isdigit():
            self.reject(
                seq, f.REQUIRED_TAG_MISSING, "BeginSeqNo missing", f.BEGIN_SEQ_NO, f.RESEND_REQUEST
            )
            return
        if end_text is None or not end_text.isdigit():
            self.reject(
                seq, f.REQUIRED_TAG_MISSING, "EndSeqNo missing", f.END_SEQ_NO, f.RESEND_REQUEST
            )
            return
        last = store.next_out - 1
        begin = max(1, int(begin_text))
        end = int(end_text)
        end = last if end == 0 or end > last else end
        gap_start = 0
        current = begin
        while current <= end:
            stored = store.read_sent(current)
            resent = None if stored is None else self._resent(stored, current)
            if resent is None:
                if not gap_start:
                    gap_start = current
            else:
                if gap_start:
                    self._gap_fill(gap_start, current)
                    gap_start = 0
                self.send_raw(resent)
            current += 1
        if gap_start:
            self._gap_fill(gap_start, end + 1)

    def _resent(self, stored: bytes, seq: int) -> bytes | None:
        original = f.parse_one(stored)
        if original is None or original.message_type is None:
            return None
        body = [(t, v) for t, v in original.pairs if t not in RESENT_HEADER_TAGS]
        orig_sent = f.fields_of(original).get(f.SENDING_TIME) or f.sending_time()
        return f.encode(
            original.message_type, self.comp_id, self.sender, seq, list(body), orig_sent=orig_sent
        )

    def _gap_fill(self, first: int, new_seq: int) -> None:
        self.send_raw(
            f.encode(
                f.SEQUENCE_RESET,
                self.comp_id,
                self.sender,
                first,
                [(f.GAP_FILL_FLAG, b"Y"), (f.NEW_SEQ_NO, new_seq)],
                orig_sent=f.sending_time(),
            )
        )

    # -- timers ---------------------------------------------------------------------------------
    def _logon_timeout(self) -> None:
        self._timer = None
        if not self.logged_on:
            log.info("fix: no Logon in %.0f s: disconnected", LOGON_TIMEOUT_S)
            self.close()

    def start_heartbeats(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.acceptor.loop.call_later(1.0, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.closing or not self.logged_on:
            return
        now = time.monotonic()
        interval = self.heartbeat_s
        if self.test_sent_at and now - self.test_sent_at > interval:
            log.info("fix %s: no answer to a TestRequest: disconnected", self.sender)
            self.logout(b"heartbeat timeout")
            return
        if not self.test_sent_at and now - self.last_in > interval * 1.2:
            self.test_count += 1
            self.test_sent_at = now
            self.send(f.TEST_REQUEST, [(f.TEST_REQ_ID, f"TEST{self.test_count}")])
        elif now - self.last_out >= interval:
            self.send(f.HEARTBEAT, [])
        self.flush()
        self._timer = self.acceptor.loop.call_later(1.0, self._tick)


__all__ = ["FixSession"]
