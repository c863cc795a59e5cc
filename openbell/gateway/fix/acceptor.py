"""The FIX 4.4 acceptor: a TCP server (asyncio, 127.0.0.1) on the gateway's event loop, talking
to the node through the gateway's ``Bridge`` like the REST routes do, with the same API keys
(``Authenticator``).

It keeps the logged-on sessions (by SenderCompID, and by account for execution reports), the
FIX view of every open order (``OrderTracker``, a bridge listener) and one ``SessionStore`` per
session under ``DATA_DIR/fix/sessions``. A session with CancelOnDisconnect cancels its open
orders when it ends, in one ``CancelOrders`` command per account.

Started by the gateway when ``GatewayConfig.fix_port`` is set (``openbell serve --fix-port``),
or on its own on any loop whose bridge is running: ``await FixAcceptor(...).start()``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import msgspec

from openbell.core import commands as c
from openbell.core.engine import Engine
from openbell.core.types import CancelReason, OrderType, Side, TimeInForce
from openbell.gateway.auth import Authenticator
from openbell.gateway.bridge import Bridge, CommandResult, Waiter
from openbell.gateway.errors import ApiError
from openbell.gateway.fix.orders import TRACKED_EVENTS, OrderTracker, SessionOrders
from openbell.gateway.fix.session import FixSession
from openbell.gateway.fix.store import SessionStore
from openbell.gateway.keys import ApiKey, KeyStore

log = logging.getLogger("openbell.fix")
DEFAULT_FIX_PORT = 9878
STOP_WAIT_S = 5.0


class FixConfig(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = DEFAULT_FIX_PORT  # 0: any free port
    comp_id: str = "OPENBELL"  # the acceptor's SenderCompID (the clients' TargetCompID)


OpenOrder = tuple[int, int, str, str, Side, OrderType, TimeInForce, int, int, int, int, int]


def _open_orders(engine: Engine) -> list[OpenOrder]:
    return [
        (
            o.order_id,
            o.account,
            o.symbol,
            o.client_order_id,
            o.side,
            o.order_type,
            o.tif,
            o.price_ticks,
            o.quantity_lots,
            o.stop_price_ticks,
            o.cum_lots,
            o.cum_notional_ticks,
        )
        for o in engine.orders.values()
    ]


class _LoggedWaiter(Waiter):
    """The answer to a cancel-on-disconnect: logged (its session is gone)."""

    __slots__ = ("done_future", "what")

    def __init__(self, what: str, done_future: asyncio.Future[None]) -> None:
        super().__init__(None)
        self.what = what
        self.done_future = done_future

    def resolve(self, result: CommandResult) -> None:
        cancelled = sum(1 for ev in result.raw if type(ev).__name__ == "OrderCancelled")
        log.info(
            "fix %s: cancel-on-disconnect seq %d, %d cancelled%s",
            self.what,
            result.seq,
            cancelled,
            f" ({result.detail})" if result.detail else "",
        )
        if not self.done_future.done():
            self.done_future.set_result(None)

    def fail(self, error: ApiError) -> None:
        log.warning("fix %s: cancel-on-disconnect failed: %s", self.what, error.message)
        if not self.done_future.done():
            self.done_future.set_result(None)


class FixAcceptor:
    def __init__(
        self, bridge: Bridge, auth: Authenticator, data_dir: Path | str, config: FixConfig
    ) -> None:
        self.bridge = bridge
        self.auth = auth
        self.config = config
        self.sessions_dir = Path(data_dir) / "fix" / "sessions"
        self.tracker = OrderTracker(self)
        self.connections: set[FixSession] = set()
        self.sessions: dict[bytes, FixSession] = {}  # logged on, by SenderCompID
        self.by_account: dict[int, list[FixSession]] = {}
        self.port = 0
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancels: set[asyncio.Future[None]] = set()
        self._to_flush: list[FixSession] = []  # sessions with messages queued (``flush_soon``)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    async def start(self) -> int:
        """Listen (after loading the open orders); returns the port."""
        self._loop = loop = asyncio.get_running_loop()
        loaded: asyncio.Future[None] = loop.create_future()

        def on_loop(orders: list[OpenOrder], error: str) -> None:
            # no await between the engine's answer and the listener: no event is missed
            if error:
                loaded.set_exception(RuntimeError(error))
                return
            self.tracker.load(orders)
            self.bridge.listen(self.tracker.on_event, TRACKED_EVENTS)
            loaded.set_result(None)

        self.bridge.query_then(_open_orders, on_loop)
        await loaded
        self.sessions_dir.mkdir(parents=True, exist_ok=True)
        self._server = await loop.create_server(
            lambda: FixSession(self), self.config.host, self.config.port
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Log every session out (cancel-on-disconnect sessions cancel), stop listening."""
        if self._server is not None:
            self._server.close()
        for session in list(self.connections):
            session.logout(b"the venue is shutting down")
            session.connection_lost(None)  # its end (and cancels) now, not after the loop stops
        if self._cancels:
            await asyncio.wait(set(self._cancels), timeout=STOP_WAIT_S)
        self.bridge.unlisten(self.tracker.on_event)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def flush_soon(self, session: FixSession) -> None:
        """Write ``session``'s queued messages at the end of the loop's current round, with
        every other session's: one callback for them all (an ExecutionReport batch reaches
        many sessions), not one per session."""
        if not self._to_flush:
            self.loop.call_soon(self._flush_all)
        self._to_flush.append(session)

    def _flush_all(self) -> None:
        sessions = self._to_flush
        self._to_flush = []
        for session in sessions:
            if session.flush_due:
                session.flush()

    # -- sessions -------------------------------------------------------------------------------
    def open_store(self, sender: bytes) -> SessionStore:
        store = SessionStore(self.sessions_dir / f"{sender.decode()}.log")
        store.open()
        return store

    def session_started(self, session: FixSession, key: ApiKey) -> None:
        session.logged_on = True
        session.orders = SessionOrders(session, self, key)
        self.sessions[session.sender] = session
        for account in session.orders.accounts:
            self.watch(session, account)
        log.info(
            "fix %s: logged on (key %s, heartbeat %d s%s)",
            session.sender.decode(),
            key.key_id,
            session.heartbeat_s,
            ", cancel on disconnect" if session.cancel_on_disconnect else "",
        )

    def drop_stale_keys(self, keys: KeyStore) -> None:
        """Log out every session whose key is gone or changed (revoked, rotated, re-scoped)."""
        for session in list(self.sessions.values()):
            orders = session.orders
            if orders is not None and keys.cached(orders.key.key_id) != orders.key:
                session.logout(b"this key was revoked or changed")
                session.flush()

    def watch(self, session: FixSession, account: int) -> None:
        listeners = self.by_account.setdefault(account, [])
        if session not in listeners:
            listeners.append(session)

    def session_ended(self, session: FixSession) -> None:
        if self.sessions.get(session.sender) is session:
            del self.sessions[session.sender]
        orders = session.orders
        if orders is None:
            return
        for account in orders.accounts:
            listeners = self.by_account.get(account)
            if listeners is not None and session in listeners:
                listeners.remove(session)
                if not listeners:
                    del self.by_account[account]
        log.info("fix %s: session ended", session.sender.decode())
        if session.cancel_on_disconnect:
            for account, order_ids in orders.open_orders().items():
                done: asyncio.Future[None] = self.loop.create_future()
                self._cancels.add(done)
                done.add_done_callback(self._cancels.discard)
                command = c.CancelOrders(
                    account=account, order_ids=tuple(order_ids), reason=CancelReason.SESSION_ENDED
                )
                try:
                    self.bridge.submit_waiter(command, _LoggedWaiter(session.sender.decode(), done))
                except ApiError as error:
                    log.warning(
                        "fix %s: cancel-on-disconnect refused: %s",
                        session.sender.decode(),
                        error.message,
                    )
                    done.set_result(None)


__all__ = ["DEFAULT_FIX_PORT", "FixAcceptor", "FixConfig"]
