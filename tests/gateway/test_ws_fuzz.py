"""WebSocket fuzzing (issue 12): random sequences of text and binary frames, small, oversized
and huge. Whatever arrives, the server answers JSON or closes with a close frame that carries a
code (and, when the gateway closes, a reason), and it keeps serving."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from openbell.gateway.ws import MAX_MESSAGE_BYTES

from .conftest import Venue

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning"),  # large reprs
]

JSONISH = st.one_of(
    st.text(max_size=60),
    st.builds(
        json.dumps,
        st.fixed_dictionaries(
            {"op": st.sampled_from(["subscribe", "unsubscribe", "x"])},
            optional={
                "channel": st.sampled_from(["book", "account", "nope"]),
                "symbol": st.sampled_from(["ACME", "NOPE", ""]),
                "account": st.integers(-5, 1 << 40),
            },
        ),
    ),
)
FRAME = st.one_of(
    JSONISH.map(lambda text: ("text", text)),
    st.binary(max_size=60).map(lambda data: ("binary", data)),
    st.sampled_from([MAX_MESSAGE_BYTES + 1, 20_000]).map(lambda n: ("text", "z" * n)),
    st.just(("text", "h" * 70_000)),  # over uvicorn's ws_max_size (64 KiB)
)


def _ws_url(venue: Venue) -> str:
    return venue.url.replace("http://", "ws://") + "/v1/ws"


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=st.lists(FRAME, min_size=1, max_size=5))
def test_any_frames_get_answers_or_a_close_frame(
    venue: Venue, frames: list[tuple[str, object]]
) -> None:
    def closes(kind: str, payload: object) -> bool:
        return kind == "binary" or len(str(payload)) > MAX_MESSAGE_BYTES

    # nothing is sent after a frame that closes the connection: the server has closed it, and
    # a write racing that close would reset the connection before its close frame is read
    cut = next((i + 1 for i, (kind, payload) in enumerate(frames) if closes(kind, payload)), 0)
    must_close = cut > 0
    frames = frames[:cut] if must_close else frames
    closed: ConnectionClosed | None = None
    with connect(_ws_url(venue), open_timeout=5, max_size=None) as ws:
        try:
            for _, payload in frames:
                ws.send(payload)  # type: ignore[arg-type]  # str: text frame, bytes: binary
            deadline = time.monotonic() + (5.0 if must_close else 0.3)
            while time.monotonic() < deadline:
                message = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
                assert isinstance(message, dict) and "type" in message
        except ConnectionClosed as error:
            closed = error
        except TimeoutError:
            pass
    if must_close:
        assert closed is not None and closed.rcvd is not None, frames
        assert closed.rcvd.code in (1003, 1009), closed.rcvd
        if closed.rcvd.code == 1003:
            assert "binary" in closed.rcvd.reason
    elif closed is not None:
        assert closed.rcvd is not None  # a close frame, never a dropped connection
    with connect(_ws_url(venue), open_timeout=5) as ws:  # the gateway keeps serving
        ws.send(json.dumps({"op": "subscribe", "channel": "book", "symbol": "ACME"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"
