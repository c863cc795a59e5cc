"""The FIX 4.4 acceptor against a real FIX client (simplefix over TCP) and a real gateway and node
(the gateway's loop, ephemeral ports, a temporary data directory)."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import simplefix

from openbell.core.engine import Engine
from openbell.gateway.app import Gateway, GatewayConfig, GatewayServer
from openbell.gateway.fix import codec as f
from openbell.gateway.fix.client import FixClient
from openbell.gateway.fix.orders import PLACED_PRUNE_MIN
from openbell.gateway.fix.session import FEED_BYTES
from openbell.gateway.keys import create_key
from openbell.sim.flow import venue_setup

from .conftest import OPEN_LIMITS

TRADER_A = 17
TRADER_B = 18
_names = itertools.count(1)


@dataclass
class FixVenue:
    gateway: Gateway
    port: int
    data_dir: Path
    key_a: tuple[str, str]
    key_b: tuple[str, str]
    operator: tuple[str, str]
    auditor: tuple[str, str]

    def client(self, key: tuple[str, str], sender: str | None = None) -> FixClient:
        name = sender or f"T{next(_names)}"
        return FixClient(self.port, name, *key, timeout_s=10)

    def open_order_ids(self, account: int) -> set[int]:
        def read(engine: Engine) -> set[int]:
            return {oid for oid, o in engine.orders.items() if o.account == account}

        import asyncio

        loop = self.gateway.bridge.loop
        assert loop is not None
        future = asyncio.run_coroutine_threadsafe(self.gateway.bridge.query(read), loop)
        result: set[int] = future.result(10)
        return result


def start_gateway(data_dir: Path, setup: bool) -> tuple[GatewayServer, int]:
    gateway = Gateway(GatewayConfig(data_dir=str(data_dir), port=0, limits=OPEN_LIMITS, fix_port=0))
    server = GatewayServer(gateway)
    server.start()
    if setup:
        gateway.bridge.submit_blocking(venue_setup(6))
    assert gateway.fix is not None
    return server, gateway.fix.port


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FixVenue]:
    data_dir = tmp_path_factory.mktemp("fix")
    keys = [
        create_key(data_dir, "trader", [TRADER_A], rate_per_s=10_000, burst=10_000),
        create_key(data_dir, "trader", [TRADER_B], rate_per_s=10_000, burst=10_000),
        create_key(data_dir, "operator", rate_per_s=10_000, burst=10_000),
        create_key(data_dir, "auditor"),
    ]
    server, port = start_gateway(data_dir, setup=True)
    try:
        yield FixVenue(server.gateway, port, data_dir, *keys)
    finally:
        server.stop()


def logged_on(venue: FixVenue, key: tuple[str, str], **logon: object) -> FixClient:
    client = venue.client(key)
    answer = client.logon(**logon)  # type: ignore[arg-type]
    assert answer.get(f.MSG_TYPE) == f.LOGON, str(answer)
    return client


def order(cl: str, side: bytes, qty: str, price: str, symbol: str = "ACME") -> list:
    return [(f.CL_ORD_ID, cl), (f.SYMBOL, symbol), (f.SIDE, side), (f.ORDER_QTY, qty),
            (f.ORD_TYPE, b"2"), (f.PRICE, price), (f.TIME_IN_FORCE, b"1"),
            (f.TRANSACT_TIME, f.sending_time())]  # fmt: skip


def report(client: FixClient) -> simplefix.FixMessage:
    return client.expect(f.EXECUTION_REPORT)


def test_logon_and_logout(venue: FixVenue) -> None:
    client = venue.client(venue.key_a)
    answer = client.logon(heartbeat_s=20)
    assert answer.get(f.MSG_TYPE) == f.LOGON
    assert answer.get(f.HEART_BT_INT) == b"20"
    assert answer.get(f.SENDER_COMP_ID) == b"OPENBELL"
    client.send(f.LOGOUT, [])
    assert client.expect(f.LOGOUT) is not None
    assert client.closed()


@pytest.mark.parametrize("problem", ["bad secret", "unknown key", "auditor", "old time"])
def test_logon_refused(venue: FixVenue, problem: str) -> None:
    key = venue.auditor if problem == "auditor" else venue.key_a
    client = venue.client(key)
    if problem == "unknown key":
        client.key_id = "k0000000000000000"
    if problem == "old time":
        sent = f.sending_time(time.time_ns() - 120 * 10**9)
        from openbell.gateway.fix.logon import logon_signature

        sig = logon_signature(key[1], sent, 1, client.sender, client.target, key[0].encode())
        fields = [(f.ENCRYPT_METHOD, 0), (f.HEART_BT_INT, 30), (f.USERNAME, key[0]),
                  (f.RAW_DATA_LENGTH, len(sig)), (f.RAW_DATA, sig)]  # fmt: skip
        client.send_raw(f.encode(f.LOGON, client.sender, client.target, 1, fields, sent=sent))
        answer = client.receive()
    else:
        answer = client.logon(secret="wrong" if problem == "bad secret" else None)
    assert answer.get(f.MSG_TYPE) == f.LOGOUT
    text = answer.get(f.TEXT).decode()
    expected = {"bad secret": "bad signature", "unknown key": "bad signature",
                "auditor": "auditor", "old time": "SendingTime"}[problem]  # fmt: skip
    assert expected in text
    assert client.closed()


def test_fill_between_two_sessions(venue: FixVenue) -> None:
    seller = logged_on(venue, venue.key_a)
    buyer = logged_on(venue, venue.key_b)
    seller.send(f.NEW_ORDER_SINGLE, order("S1", b"2", "10", "100.10"))
    new = report(seller)
    assert (new.get(f.EXEC_TYPE), new.get(f.ORD_STATUS)) == (b"0", b"0")
    assert new.get(f.LEAVES_QTY) == b"10" and new.get(f.PRICE) == b"100.10"
    assert new.get(f.ACCOUNT) == str(TRADER_A).encode()
    buyer.send(f.NEW_ORDER_SINGLE, order("B1", b"1", "10", "100.10"))
    assert report(buyer).get(f.EXEC_TYPE) == b"0"
    bought = report(buyer)
    sold = report(seller)
    for fill, cl in ((bought, b"B1"), (sold, b"S1")):
        assert fill.get(f.CL_ORD_ID) == cl
        assert (fill.get(f.EXEC_TYPE), fill.get(f.ORD_STATUS)) == (b"F", b"2")
        assert fill.get(f.LAST_PX) == b"100.10" and fill.get(f.LAST_QTY) == b"10"
        assert fill.get(f.CUM_QTY) == b"10" and fill.get(f.LEAVES_QTY) == b"0"
        assert fill.get(f.AVG_PX) == b"100.1"
        assert fill.get(f.COMM_TYPE) == b"3" and fill.get(f.COMM_CURRENCY) == b"USD"
    assert bought.get(f.TRADE_ID) == sold.get(f.TRADE_ID) is not None
    # maker 1 bp, taker 3 bps of 1001.00 USD, in USD minor units (scale 2)
    assert sold.get(f.COMMISSION) == b"0.10" and bought.get(f.COMMISSION) == b"0.30"
    for client in (seller, buyer):
        client.close()


def test_cancel_replace_and_cancel_reject(venue: FixVenue) -> None:
    client = logged_on(venue, venue.key_a)
    client.send(f.NEW_ORDER_SINGLE, order("C1", b"1", "5", "95.00"))
    order_id = report(client).get(f.ORDER_ID)
    client.send(f.ORDER_CANCEL_REPLACE, [
        (f.ORIG_CL_ORD_ID, "C1"), (f.CL_ORD_ID, "C2"), (f.SYMBOL, "ACME"), (f.SIDE, b"1"),
        (f.ORDER_QTY, "3"), (f.ORD_TYPE, b"2"), (f.PRICE, "95.50"),
    ])  # fmt: skip
    replaced = report(client)
    assert (replaced.get(f.EXEC_TYPE), replaced.get(f.ORD_STATUS)) == (b"5", b"0")
    assert replaced.get(f.CL_ORD_ID) == b"C2" and replaced.get(f.ORIG_CL_ORD_ID) == b"C1"
    assert replaced.get(f.PRICE) == b"95.50" and replaced.get(f.ORDER_QTY) == b"3"
    assert replaced.get(f.ORDER_ID) == order_id
    client.send(f.ORDER_CANCEL_REQUEST, [(f.ORIG_CL_ORD_ID, "C2"), (f.CL_ORD_ID, "C3"),
                                         (f.SYMBOL, "ACME"), (f.SIDE, b"1")])  # fmt: skip
    cancelled = report(client)
    assert (cancelled.get(f.EXEC_TYPE), cancelled.get(f.ORD_STATUS)) == (b"4", b"4")
    assert cancelled.get(f.CL_ORD_ID) == b"C3" and cancelled.get(f.ORIG_CL_ORD_ID) == b"C2"
    assert int(order_id) not in venue.open_order_ids(TRADER_A)
    client.send(f.ORDER_CANCEL_REQUEST, [(f.ORIG_CL_ORD_ID, "C2"), (f.CL_ORD_ID, "C4"),
                                         (f.SYMBOL, "ACME"), (f.SIDE, b"1")])  # fmt: skip
    refused = client.expect(f.ORDER_CANCEL_REJECT)
    assert refused.get(f.CXL_REJ_REASON) == b"1" and refused.get(f.CXL_REJ_RESPONSE_TO) == b"1"
    client.close()


def test_mass_cancel(venue: FixVenue) -> None:
    client = logged_on(venue, venue.key_b)
    for n in range(3):
        client.send(f.NEW_ORDER_SINGLE, order(f"M{n}", b"1", "1", f"9{n + 5}.00"))
        assert report(client).get(f.EXEC_TYPE) == b"0"
    before = venue.open_order_ids(TRADER_B)
    client.send(f.ORDER_MASS_CANCEL_REQUEST, [(f.CL_ORD_ID, "MC1"),
                                              (f.MASS_CANCEL_REQUEST_TYPE, b"7")])  # fmt: skip
    cancelled = {report(client).get(f.CL_ORD_ID) for _ in range(len(before))}
    assert {b"M0", b"M1", b"M2"} <= cancelled
    answer = client.expect(f.ORDER_MASS_CANCEL_REPORT)
    assert answer.get(f.MASS_CANCEL_RESPONSE) == b"7"
    assert answer.get(f.TOTAL_AFFECTED_ORDERS) == str(len(before)).encode()
    assert venue.open_order_ids(TRADER_B) == set()
    client.close()


def test_business_rejects_speak_decimals(venue: FixVenue) -> None:
    client = logged_on(venue, venue.key_a)
    client.send(f.NEW_ORDER_SINGLE, order("R1", b"1", "1", "100.101"))
    refused = report(client)
    assert (refused.get(f.EXEC_TYPE), refused.get(f.ORD_STATUS)) == (b"8", b"8")
    assert b"100.101" in refused.get(f.TEXT) and b"decimals" in refused.get(f.TEXT)
    client.send(f.NEW_ORDER_SINGLE, order("R2", b"1", "90000", "100.00"))
    poor = report(client)
    assert poor.get(f.EXEC_TYPE) == b"8"
    assert b"USD" in poor.get(f.TEXT) and b"." in poor.get(f.TEXT)  # decimals, not minor units
    client.send(f.NEW_ORDER_SINGLE, order("R3", b"1", "1", "100.00", symbol="NOPE"))
    assert report(client).get(f.ORD_REJ_REASON) == b"1"
    client.send(b"V", [(262, "md1")])  # MarketDataRequest: not taken here
    business = client.expect(f.BUSINESS_REJECT)
    assert business.get(f.BUSINESS_REJECT_REASON) == b"3" and business.get(f.REF_MSG_TYPE) == b"V"
    client.close()


def test_missing_tags_and_bad_values_get_session_rejects(venue: FixVenue) -> None:
    client = logged_on(venue, venue.key_a)
    fields = [t for t in order("X1", b"1", "1", "95.00") if t[0] != f.SYMBOL]
    seq = client.send(f.NEW_ORDER_SINGLE, fields)
    reject = client.expect(f.REJECT)
    assert reject.get(f.SESSION_REJECT_REASON) == b"1" and reject.get(f.REF_TAG_ID) == b"55"
    assert reject.get(f.REF_SEQ_NUM) == str(seq).encode()
    bad_side = [(t, b"9" if t == f.SIDE else v) for t, v in order("X2", b"1", "1", "95.00")]
    client.send(f.NEW_ORDER_SINGLE, bad_side)
    reject = client.expect(f.REJECT)
    assert reject.get(f.SESSION_REJECT_REASON) == b"5" and reject.get(f.REF_TAG_ID) == b"54"
    client.send(f.NEW_ORDER_SINGLE, [*order("X3", b"1", "1", "95.00"), (f.SIDE, b"2")])
    reject = client.expect(f.REJECT)
    assert reject.get(f.SESSION_REJECT_REASON) == b"13" and reject.get(f.REF_TAG_ID) == b"54"
    client.send(f.TEST_REQUEST, [(f.TEST_REQ_ID, "still-alive")])
    assert client.expect(f.HEARTBEAT).get(f.TEST_REQ_ID) == b"still-alive"
    client.close()


def test_garbage_and_wrong_checksum_are_ignored(venue: FixVenue) -> None:
    client = logged_on(venue, venue.key_a)
    client.send_raw(b"this is not FIX at all\x01\x01==\x01")
    time.sleep(0.2)
    good = client.encode(f.TEST_REQUEST, [(f.TEST_REQ_ID, "t1")], seq=client.next_out)
    client.send_raw(good[:-4] + b"%03d\x01" % ((int(good[-4:-1]) + 1) % 256))  # checksum off
    wrong_length = good.replace(b"\x019=", b"\x019=1", 1)
    client.send_raw(wrong_length)
    client.send(f.TEST_REQUEST, [(f.TEST_REQ_ID, "t2")])  # the same MsgSeqNum, well formed
    answer = client.expect(f.HEARTBEAT)
    assert answer.get(f.TEST_REQ_ID) == b"t2"
    client.close()


def test_a_burst_of_messages_in_one_write_after_garbage(venue: FixVenue) -> None:
    """Reads are parsed in pieces (FEED_BYTES): messages straddle the pieces, and garbage
    whose recovery point (the next BeginString) is cut in two still finds it."""
    client = logged_on(venue, venue.key_a)
    burst = b"".join(client.encode(f.TEST_REQUEST, [(f.TEST_REQ_ID, f"b{n}")]) for n in range(40))
    assert len(burst) > 3 * FEED_BYTES
    garbage = b"not FIX\x01"
    pad = b"x" * (FEED_BYTES - len(garbage) - 3)  # "8=F" ends the first piece, "IX" starts the next
    client.send_raw(garbage + pad + burst)
    for n in range(40):
        assert client.expect(f.HEARTBEAT).get(f.TEST_REQ_ID) == f"b{n}".encode()
    client.close()


def test_wrong_begin_string(venue: FixVenue) -> None:
    client = logged_on(venue, venue.key_a)
    wrong = simplefix.FixMessage()
    wrong.append_pair(8, "FIX.4.2")
    wrong.append_pair(35, "1")
    for tag, value in ((49, client.sender), (56, b"OPENBELL"), (34, client.next_out),
                       (52, f.sending_time()), (112, "x")):  # fmt: skip
        wrong.append_pair(tag, value)
    client.send_raw(wrong.encode())
    assert b"BeginString" in client.expect(f.LOGOUT).get(f.TEXT)
    assert client.closed()
    stranger = venue.client(venue.key_a)
    stranger.send_raw(wrong.encode())  # before any Logon: just closed
    assert stranger.closed()


def test_first_message_must_be_logon_and_seq_too_low_logs_out(venue: FixVenue) -> None:
    client = venue.client(venue.key_a)
    client.send(f.TEST_REQUEST, [(f.TEST_REQ_ID, "x")])
    assert client.closed()
    client = logged_on(venue, venue.key_a)
    client.send(f.TEST_REQUEST, [(f.TEST_REQ_ID, "x")], seq=1)
    assert b"too low" in client.expect(f.LOGOUT).get(f.TEXT)
    assert client.closed()


def test_gap_in_client_sequence_is_resent(venue: FixVenue) -> None:
    client = logged_on(venue, venue.key_a)
    client.next_out += 1  # a message the acceptor never sees
    client.send(f.NEW_ORDER_SINGLE, order("G1", b"1", "1", "94.00"))
    request = client.expect(f.RESEND_REQUEST)
    assert request.get(f.BEGIN_SEQ_NO) == str(client.next_out - 2).encode()
    client.answer_resend(request)  # gap fill for the missing one, the order again (PossDup)
    placed = report(client)
    assert placed.get(f.CL_ORD_ID) == b"G1" and placed.get(f.EXEC_TYPE) == b"0"
    client.send(f.TEST_REQUEST, [(f.TEST_REQ_ID, "after")])
    assert client.expect(f.HEARTBEAT).get(f.TEST_REQ_ID) == b"after"  # no second report
    client.send(f.ORDER_CANCEL_REQUEST, [(f.ORIG_CL_ORD_ID, "G1"), (f.CL_ORD_ID, "G2")])
    assert report(client).get(f.EXEC_TYPE) == b"4"
    client.close()


def test_sequence_reset(venue: FixVenue) -> None:
    client = logged_on(venue, venue.key_a)
    jump = client.next_out + 10
    client.send(f.SEQUENCE_RESET, [(f.NEW_SEQ_NO, jump)])
    client.next_out = jump
    client.send(f.TEST_REQUEST, [(f.TEST_REQ_ID, "r1")])
    assert client.expect(f.HEARTBEAT).get(f.TEST_REQ_ID) == b"r1"
    # backwards: refused (reset mode ignores MsgSeqNum: the client's numbering stays)
    client.send(f.SEQUENCE_RESET, [(f.NEW_SEQ_NO, 2)], seq=client.next_out)
    reject = client.expect(f.REJECT)
    assert reject.get(f.SESSION_REJECT_REASON) == b"5"
    client.send(f.SEQUENCE_RESET, [(f.GAP_FILL_FLAG, b"Y"), (f.NEW_SEQ_NO, client.next_out + 5)])
    client.next_out += 4
    client.send(f.TEST_REQUEST, [(f.TEST_REQ_ID, "r2")])
    assert client.expect(f.HEARTBEAT).get(f.TEST_REQ_ID) == b"r2"
    client.close()


def test_resend_after_reconnect(venue: FixVenue) -> None:
    client = logged_on(venue, venue.key_b)
    sender = client.sender.decode()
    client.send(f.NEW_ORDER_SINGLE, order("D1", b"1", "2", "93.00"))
    first = report(client)
    first_seq = int(first.get(f.MSG_SEQ_NUM))
    client.sock.close()  # dropped, no Logout
    time.sleep(0.2)
    again = FixClient(venue.port, sender, *venue.key_b)
    again.next_out = client.next_out
    again.sent = client.sent
    answer = again.logon()
    assert int(answer.get(f.MSG_SEQ_NUM)) == first_seq + 1  # numbering went on
    again.send(f.RESEND_REQUEST, [(f.BEGIN_SEQ_NO, 1), (f.END_SEQ_NO, 0)])
    gap = again.expect(f.SEQUENCE_RESET)  # the Logon: gap-filled
    assert gap.get(f.GAP_FILL_FLAG) == b"Y" and gap.get(f.NEW_SEQ_NO) == str(first_seq).encode()
    resent = again.expect(f.EXECUTION_REPORT)
    assert resent.get(f.MSG_SEQ_NUM) == str(first_seq).encode()
    assert resent.get(f.POSS_DUP_FLAG) == b"Y"
    assert resent.get(f.ORIG_SENDING_TIME) == first.get(f.SENDING_TIME)
    assert resent.get(f.CL_ORD_ID) == b"D1" and resent.get(f.ORDER_ID) == first.get(f.ORDER_ID)
    assert again.expect(f.SEQUENCE_RESET).get(f.NEW_SEQ_NO) == str(first_seq + 2).encode()
    again.send(f.ORDER_MASS_CANCEL_REQUEST, [(f.CL_ORD_ID, "DMC"),
                                             (f.MASS_CANCEL_REQUEST_TYPE, b"7")])  # fmt: skip
    assert report(again).get(f.EXEC_TYPE) == b"4"
    again.close()


def test_second_connection_for_a_logged_on_session_is_refused(venue: FixVenue) -> None:
    client = logged_on(venue, venue.key_a)
    twin = FixClient(venue.port, client.sender.decode(), *venue.key_a)
    assert b"already logged on" in twin.logon().get(f.TEXT)
    other_key = FixClient(venue.port, client.sender.decode(), *venue.key_b)
    assert other_key.logon().get(f.MSG_TYPE) == f.LOGOUT
    client.close()


def test_cancel_on_disconnect(venue: FixVenue) -> None:
    client = logged_on(venue, venue.key_a, cancel_on_disconnect=True)
    client.send(f.NEW_ORDER_SINGLE, order("COD1", b"1", "1", "96.50"))
    order_id = int(report(client).get(f.ORDER_ID))
    assert order_id in venue.open_order_ids(TRADER_A)
    client.sock.close()
    deadline = time.monotonic() + 5
    while order_id in venue.open_order_ids(TRADER_A):
        assert time.monotonic() < deadline, "cancel-on-disconnect did not cancel"
        time.sleep(0.05)


def test_missed_heartbeats_test_request_then_disconnect(venue: FixVenue) -> None:
    client = logged_on(venue, venue.key_a, heartbeat_s=1)
    started = time.monotonic()
    probe = client.receive(timeout_s=5)
    while probe.get(f.MSG_TYPE) == f.HEARTBEAT:
        probe = client.receive(timeout_s=5)
    assert probe.get(f.MSG_TYPE) == f.TEST_REQUEST
    assert b"heartbeat timeout" in client.expect(f.LOGOUT, timeout_s=5).get(f.TEXT)
    assert client.closed()
    assert time.monotonic() - started < 6


def test_operator_session_names_the_account(venue: FixVenue) -> None:
    client = logged_on(venue, venue.operator)
    client.send(f.NEW_ORDER_SINGLE, order("OP1", b"1", "1", "96.00"))
    assert client.expect(f.REJECT).get(f.REF_TAG_ID) == b"1"  # Account required
    client.send(f.NEW_ORDER_SINGLE, [*order("OP2", b"1", "1", "96.00"), (f.ACCOUNT, TRADER_B)])
    placed = report(client)
    assert placed.get(f.ACCOUNT) == str(TRADER_B).encode()
    client.send(f.ORDER_CANCEL_REQUEST, [(f.ORIG_CL_ORD_ID, "OP2"), (f.CL_ORD_ID, "OP3"),
                                         (f.ACCOUNT, TRADER_B)])  # fmt: skip
    assert report(client).get(f.EXEC_TYPE) == b"4"
    client.close()


def test_sequence_numbers_survive_a_venue_restart(tmp_path: Path) -> None:
    key = create_key(tmp_path, "trader", [TRADER_A])
    server, port = start_gateway(tmp_path, setup=True)
    try:
        client = FixClient(port, "RESTART1", *key)
        client.logon()
        client.send(f.NEW_ORDER_SINGLE, order("P1", b"1", "1", "95.10"))
        placed = report(client)
        placed_seq = int(placed.get(f.MSG_SEQ_NUM))
        client.close()
    finally:
        server.stop()
    server, port = start_gateway(tmp_path, setup=False)
    try:
        again = FixClient(port, "RESTART1", *key)
        again.next_out = client.next_out
        answer = again.logon()
        assert int(answer.get(f.MSG_SEQ_NUM)) > placed_seq
        again.send(f.RESEND_REQUEST, [(f.BEGIN_SEQ_NO, placed_seq), (f.END_SEQ_NO, placed_seq)])
        resent = again.expect(f.EXECUTION_REPORT)
        assert resent.get(f.POSS_DUP_FLAG) == b"Y" and resent.get(f.CL_ORD_ID) == b"P1"
        # the order is still open after the restart, and the acceptor still knows its ClOrdID
        again.send(f.ORDER_CANCEL_REQUEST, [(f.ORIG_CL_ORD_ID, "P1"), (f.CL_ORD_ID, "P2")])
        cancelled = report(again)
        assert cancelled.get(f.EXEC_TYPE) == b"4" and cancelled.get(f.ORIG_CL_ORD_ID) == b"P1"
        again.close()
    finally:
        server.stop()


def test_bytes_after_close_do_not_crash(venue: FixVenue) -> None:
    raw = socket.create_connection(("127.0.0.1", venue.port))
    raw.sendall(b"8=FIX.4.4\x019=5\x0135=A\x0110=000\x01" * 3 + b"\xff" * 1000)
    raw.close()
    client = logged_on(venue, venue.key_a)  # the acceptor still serves
    client.close()


def test_mutated_messages_never_break_the_acceptor(
    venue: FixVenue, caplog: pytest.LogCaptureFixture
) -> None:
    """Bounded fuzz: valid messages with random bytes flipped, cut or repeated. Each connection
    ends up answering a TestRequest or closed by the acceptor (a Logout, or a clean close); no
    message ever fails inside the acceptor, and it keeps serving."""
    import random

    rng = random.Random(7)
    outcomes: list[str] = []
    caplog.set_level("INFO", logger="openbell.fix")
    for round_ in range(12):
        client = logged_on(venue, venue.key_a)
        for n in range(25):
            good = client.encode(f.NEW_ORDER_SINGLE, order(f"Z{round_}-{n}", b"1", "1", "94.50"),
                                 seq=client.next_out)  # fmt: skip
            data = bytearray(good)
            for _ in range(rng.randint(1, 4)):
                at = rng.randrange(len(data))
                choice = rng.random()
                if choice < 0.5:
                    data[at] = rng.choice(b"0123456789=\x01AZ.-\xff")
                elif choice < 0.75:
                    del data[at : at + rng.randint(1, 10)]
                else:
                    data[at:at] = data[at : at + rng.randint(1, 10)]
            try:
                client.send_raw(bytes(data))
            except OSError:
                break
        outcome = "closed"
        try:
            # a lone CheckSum field ends whatever partial message the parser holds (ignored as
            # garbled), so the probe after it is read as sent
            client.send_raw(b"10=000\x01")
            client.send(f.TEST_REQUEST, [(f.TEST_REQ_ID, "alive")])
            while True:
                message = client.receive(timeout_s=5)
                kind = message.get(f.MSG_TYPE)
                if kind == f.HEARTBEAT and message.get(f.TEST_REQ_ID) == b"alive":
                    outcome = "answered"
                    break
                if kind == f.LOGOUT:
                    assert client.closed()
                    break
        except ConnectionError:
            pass
        outcomes.append(outcome)
        client.close()
    assert not [r for r in caplog.records if "failed" in r.getMessage()]
    assert [r for r in caplog.records if "garbled" in r.getMessage()]  # the fuzz reached it
    assert "answered" in outcomes
    client = logged_on(venue, venue.key_a)  # still serving
    client.send(f.ORDER_MASS_CANCEL_REQUEST, [(f.CL_ORD_ID, "ZMC"),
                                              (f.MASS_CANCEL_REQUEST_TYPE, b"7")])  # fmt: skip
    while client.receive().get(f.MSG_TYPE) != f.ORDER_MASS_CANCEL_REPORT:
        pass  # the cancelled orders' reports first
    assert venue.open_order_ids(TRADER_A) == set()
    client.close()


def test_a_message_without_end_is_cut_off(venue: FixVenue) -> None:
    client = logged_on(venue, venue.key_a)
    start = client.encode(f.NEW_ORDER_SINGLE, order("L1", b"1", "1", "94.00"), seq=client.next_out)
    client.send_raw(start[: start.rindex(b"10=")])  # no CheckSum: the message never ends
    try:
        for _ in range(40):
            client.send_raw(b"58=" + b"x" * 32_000 + b"\x01")
    except OSError:
        pass  # closed while sending
    assert b"too long" in client.expect(f.LOGOUT).get(f.TEXT)
    assert client.closed()


def test_clordid_used_again(venue: FixVenue) -> None:
    client = logged_on(venue, venue.key_b)
    client.send(f.NEW_ORDER_SINGLE, order("U1", b"1", "1", "94.20"))
    assert report(client).get(f.EXEC_TYPE) == b"0"
    client.send(f.NEW_ORDER_SINGLE, order("U1", b"1", "1", "94.30"))
    again = report(client)
    assert again.get(f.EXEC_TYPE) == b"8" and again.get(f.ORD_REJ_REASON) == b"6"
    # the same request resent (PossDupFlag=Y, as after a venue restart that lost the record of
    # its MsgSeqNum): carried out once, answered once
    client.send(f.NEW_ORDER_SINGLE, order("U1", b"1", "1", "94.20"), poss_dup=True)
    client.send(f.TEST_REQUEST, [(f.TEST_REQ_ID, "quiet")])
    assert client.expect(f.HEARTBEAT).get(f.TEST_REQ_ID) == b"quiet"
    client.send(f.ORDER_MASS_CANCEL_REQUEST, [(f.CL_ORD_ID, "UMC"),
                                              (f.MASS_CANCEL_REQUEST_TYPE, b"7")])  # fmt: skip
    assert report(client).get(f.CL_ORD_ID) == b"U1"
    assert client.expect(f.ORDER_MASS_CANCEL_REPORT).get(f.TOTAL_AFFECTED_ORDERS) == b"1"
    client.close()


def test_revoked_key_logs_the_session_out(venue: FixVenue) -> None:
    from openbell.gateway.keys import revoke_key

    key = create_key(venue.data_dir, "trader", [TRADER_A])
    client = logged_on(venue, key)
    revoke_key(venue.data_dir, key[0])
    assert b"revoked" in client.expect(f.LOGOUT, timeout_s=5).get(f.TEXT)
    assert client.closed()
    assert client.__class__(venue.port, "REVOKED2", *key).logon().get(f.MSG_TYPE) == f.LOGOUT


def test_logon_with_reset_starts_both_sides_at_one(venue: FixVenue) -> None:
    client = logged_on(venue, venue.key_b)
    client.send(f.TEST_REQUEST, [(f.TEST_REQ_ID, "before")])
    assert int(client.expect(f.HEARTBEAT).get(f.MSG_SEQ_NUM)) == 2
    sender = client.sender.decode()
    client.send(f.LOGOUT, [])
    client.expect(f.LOGOUT)
    client.close()
    again = FixClient(venue.port, sender, *venue.key_b)
    again.next_out = 5
    answer = again.logon(reset=True)
    assert answer.get(f.RESET_SEQ_NUM_FLAG) == b"Y" and answer.get(f.MSG_SEQ_NUM) == b"1"
    again.send(f.TEST_REQUEST, [(f.TEST_REQ_ID, "after")])  # MsgSeqNum 2
    heartbeat = again.expect(f.HEARTBEAT)
    assert heartbeat.get(f.TEST_REQ_ID) == b"after" and heartbeat.get(f.MSG_SEQ_NUM) == b"2"
    again.send(f.RESEND_REQUEST, [(f.BEGIN_SEQ_NO, 1), (f.END_SEQ_NO, 0)])
    gap = again.expect(f.SEQUENCE_RESET)  # nothing from before the reset comes back
    assert gap.get(f.NEW_SEQ_NO) == b"3"
    again.close()


def test_ended_orders_do_not_pile_up_in_the_session(venue: FixVenue) -> None:
    """A session remembers the orders it placed, for cancel-on-disconnect. Orders that ended
    (here IOC orders whose rest is cancelled at once, ending before their acceptance reaches
    the session) are pruned: the set is bounded by open orders, not by every order sent."""
    client = logged_on(venue, venue.key_a, cancel_on_disconnect=True)
    count = PLACED_PRUNE_MIN + 200
    for n in range(count):
        ioc = order(f"IOC{n}", b"1", "1", "95.00")
        ioc[6] = (f.TIME_IN_FORCE, b"3")
        client.send(f.NEW_ORDER_SINGLE, ioc)
    for _ in range(count):
        assert report(client).get(f.EXEC_TYPE) == b"0"
        assert report(client).get(f.EXEC_TYPE) == b"4"  # the unfilled rest, cancelled
    assert venue.gateway.fix is not None
    session = venue.gateway.fix.sessions[client.sender]
    assert session.orders is not None
    assert len(session.orders.placed) < PLACED_PRUNE_MIN
    client.close()
