"""``openbell serve --fix-port``: the FIX 4.4 acceptor in the venue process, and a session whose
sequence numbers and sent messages survive stopping and starting the venue."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.serving import REPO, Serve
from openbell.gateway.fix import codec as f
from openbell.gateway.fix.client import FixClient
from openbell.gateway.keys import create_key

FIX_LINE = re.compile(r"openbell fix: 127\.0\.0\.1:(\d+) \(FIX 4\.4, TargetCompID OPENBELL\)")
VENUE = REPO / "docs" / "venue.toml"


@pytest.fixture
def serving() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    try:
        yield started
    finally:
        for process in started:
            process.kill()


def serve(serving: list[Serve], logs: Path, data: Path, name: str) -> int:
    process = Serve(logs, "--data", data, "--http-port", "0", "--fix-port", "0",
                    "--venue", VENUE, name=name)  # fmt: skip
    serving.append(process)
    return int(process.wait_for(FIX_LINE).group(1))


def test_fix_session_across_a_venue_restart(serving: list[Serve], tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = create_key(data, "trader", [17])
    port = serve(serving, tmp_path / "logs", data, "first")
    client = FixClient(port, "DESK1", *key)
    assert client.logon().get(f.MSG_TYPE) == f.LOGON
    client.send(f.NEW_ORDER_SINGLE, [
        (f.CL_ORD_ID, "O1"), (f.SYMBOL, "ACME"), (f.SIDE, b"1"), (f.ORDER_QTY, "3"),
        (f.ORD_TYPE, b"2"), (f.PRICE, "99.00"), (f.TIME_IN_FORCE, b"1"),
    ])  # fmt: skip
    placed = client.expect(f.EXECUTION_REPORT)
    assert placed.get(f.EXEC_TYPE) == b"0" and placed.get(f.PRICE) == b"99.00"
    placed_seq = int(placed.get(f.MSG_SEQ_NUM))
    assert serving[0].stop() == 0  # SIGTERM: the session is logged out
    assert b"shutting down" in client.expect(f.LOGOUT).get(f.TEXT)
    client.close()

    port = serve(serving, tmp_path / "logs", data, "second")
    again = FixClient(port, "DESK1", *key)
    again.next_out = client.next_out
    answer = again.logon()
    assert answer.get(f.MSG_TYPE) == f.LOGON
    assert int(answer.get(f.MSG_SEQ_NUM)) == placed_seq + 2  # after the ER and the Logout
    again.send(f.RESEND_REQUEST, [(f.BEGIN_SEQ_NO, placed_seq), (f.END_SEQ_NO, placed_seq)])
    resent = again.expect(f.EXECUTION_REPORT)
    assert resent.get(f.POSS_DUP_FLAG) == b"Y" and resent.get(f.CL_ORD_ID) == b"O1"
    again.send(f.ORDER_CANCEL_REQUEST, [(f.ORIG_CL_ORD_ID, "O1"), (f.CL_ORD_ID, "O2")])
    cancelled = again.expect(f.EXECUTION_REPORT)
    assert cancelled.get(f.EXEC_TYPE) == b"4" and cancelled.get(f.LEAVES_QTY) == b"0"
    again.close()
    assert serving[1].stop() == 0
