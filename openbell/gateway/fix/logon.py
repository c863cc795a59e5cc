"""The FIX Logon (35=A) with the REST API's key credentials.

A Logon carries the key id in Username (553) and, in RawData (96) with RawDataLength (95), the
lowercase hex HMAC-SHA256 keyed with ``sha256(secret)`` (the REST request signature's key) of

    SendingTime \\x01 MsgType \\x01 MsgSeqNum \\x01 SenderCompID \\x01 TargetCompID \\x01 Username

with the values exactly as they appear in the Logon (MsgType is ``A``). SendingTime must be
within +-30 s of the venue's clock. Also required: EncryptMethod (98) = 0, HeartBtInt (108)
1..300 s. Optional: ResetSeqNumFlag (141) = Y (both sides start again at 1; the Logon's own
MsgSeqNum must be 1) and the custom CancelOnDisconnect (8013) = Y (the session's open orders
are cancelled, in one journaled command per account, when the session ends for any reason).

A trader key's session acts for its accounts (Account (1) picks one when there are several);
an operator key's session names the Account on every order. An auditor key may not log on.
The SenderCompID names the session (its sequence numbers and sent messages); the first key to
log on with it owns it. One connection per SenderCompID at a time.

A refused Logon is answered with a Logout (MsgSeqNum 1, outside the session's numbering) whose
Text (58) says why, then the connection is closed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import TYPE_CHECKING

from openbell.gateway.auth import WINDOW_MS
from openbell.gateway.fix import codec as f
from openbell.gateway.fix.store import StoreError
from openbell.gateway.keys import Role, hmac_key_for

if TYPE_CHECKING:
    from openbell.gateway.fix.session import FixSession

COMP_ID_RE = re.compile(rb"^[A-Za-z0-9_.-]{1,32}$")
MAX_HEARTBEAT_S = 300


def logon_payload(
    sending_time: bytes, seq: int, sender: bytes, target: bytes, key_id: bytes
) -> bytes:
    return b"\x01".join((sending_time, f.LOGON, str(seq).encode(), sender, target, key_id))


def logon_signature(
    secret: str, sending_time: bytes, seq: int, sender: bytes, target: bytes, key_id: bytes
) -> bytes:
    """What a client puts in RawData (96): hex HMAC-SHA256(sha256(secret), payload)."""
    payload = logon_payload(sending_time, seq, sender, target, key_id)
    return hmac.new(hmac_key_for(secret), payload, hashlib.sha256).hexdigest().encode()


def refuse(session: FixSession, text: str) -> None:
    sender = session.sender or b"UNKNOWN"
    session.send_raw(f.encode(f.LOGOUT, session.comp_id, sender, 1, [(f.TEXT, text)]))
    session.flush()
    session.close()


def accept_logon(session: FixSession, message: f.Fields) -> None:
    acceptor = session.acceptor
    sender = message.get(f.SENDER_COMP_ID) or b""
    target = message.get(f.TARGET_COMP_ID) or b""
    seq_text = message.get(f.MSG_SEQ_NUM) or b""
    sent = message.get(f.SENDING_TIME) or b""
    key_id = message.get(f.USERNAME) or b""
    signature = message.get(f.RAW_DATA) or b""
    if not COMP_ID_RE.match(sender):
        return refuse(session, "SenderCompID must be 1..32 of [A-Za-z0-9_.-]")
    session.sender = sender
    if target != session.comp_id:
        return refuse(session, f"TargetCompID must be {session.comp_id.decode()}")
    if not seq_text.isdigit():
        return refuse(session, "MsgSeqNum missing or not a number")
    seq = int(seq_text)
    if message.get(f.ENCRYPT_METHOD) != b"0":
        return refuse(session, "EncryptMethod (98) must be 0")
    heartbeat = message.get(f.HEART_BT_INT) or b""
    if not heartbeat.isdigit() or not 1 <= int(heartbeat) <= MAX_HEARTBEAT_S:
        return refuse(session, f"HeartBtInt (108) must be 1..{MAX_HEARTBEAT_S}")
    if not key_id or not signature:
        return refuse(session, "Username (553) and RawData (96) are required")
    key = acceptor.auth.keys.get(key_id.decode("ascii", "replace"))
    if key is None:
        return refuse(session, "logon refused: unknown key or bad signature")
    payload = logon_payload(sent, seq, sender, target, key_id)
    expected = hmac.new(key.hmac_key, payload, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(expected, signature.lower()):
        return refuse(session, "logon refused: unknown key or bad signature")
    sent_ns = f.parse_sending_time(sent)
    if sent_ns is None or abs(time.time_ns() - sent_ns) > WINDOW_MS * 1_000_000:
        return refuse(session, "SendingTime is outside +-30 s of the venue's clock")
    if key.role is Role.AUDITOR:
        return refuse(session, "an auditor key may not trade")
    if sender in acceptor.sessions:
        return refuse(session, "this SenderCompID is already logged on")
    reset = message.get(f.RESET_SEQ_NUM_FLAG) == b"Y"
    if reset and seq != 1:
        return refuse(session, "ResetSeqNumFlag=Y needs MsgSeqNum 1")
    store = acceptor.open_store(sender)
    try:
        store.bind(key.key_id)
    except StoreError as error:
        store.close()
        return refuse(session, str(error))
    if reset:
        store.reset()
    session.store = store
    expected_seq = store.next_in
    if seq < expected_seq:
        session.logout(f"MsgSeqNum too low, expecting {expected_seq} but received {seq}".encode())
        return
    session.heartbeat_s = int(heartbeat)
    session.cancel_on_disconnect = message.get(f.CANCEL_ON_DISCONNECT) == b"Y"
    acceptor.session_started(session, key)
    answer: list[tuple[bytes, bytes | str | int]] = [
        (f.ENCRYPT_METHOD, 0),
        (f.HEART_BT_INT, session.heartbeat_s),
    ]
    if reset:
        answer.append((f.RESET_SEQ_NUM_FLAG, b"Y"))
    session.send(f.LOGON, answer)
    if seq == expected_seq:
        store.next_in = seq + 1
        store.record_in(seq)
    else:  # messages missed while away: ask for them (the client gap-fills its Logon too)
        session.resend_until = seq
        session.send(f.RESEND_REQUEST, [(f.BEGIN_SEQ_NO, expected_seq), (f.END_SEQ_NO, 0)])
    session.start_heartbeats()


__all__ = ["accept_logon", "logon_payload", "logon_signature"]
