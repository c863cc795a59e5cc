"""A demo venue behind the gateway: seeded market flow plus demo API keys.

``openbell serve --demo`` (``openbell.gateway.run``) opens (or recovers) a node, builds the demo
venue the first time (``setup_demo``: ``openbell.sim.flow.venue_setup``, ACME, GLOBEX, INITECH in
USD, and one extra funded account for you), creates demo keys (``demo_keys``: operator, auditor,
and a trader for your account), and keeps a market maker and noisy traders (``MarketFlow``)
trading through the sequencer on a background thread (``FlowThread``) until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from openbell.core import commands as c
from openbell.core.engine import Engine
from openbell.core.types import FIRST_USER_ACCOUNT
from openbell.gateway.app import Gateway
from openbell.gateway.keys import create_key
from openbell.sim.flow import DEFAULT_SYMBOLS, LISTINGS, USD, MarketFlow, venue_setup

FLOW_ACCOUNTS = 50
YOUR_ACCOUNT = int(FIRST_USER_ACCOUNT) + FLOW_ACCOUNTS
YOUR_USD_MINOR = 100_000_000  # 1,000,000.00 USD


class FlowThread:
    """Generates each batch on the sequencer thread (a query: it reads the engine safely), then
    submits it and waits until it is durable; ``rate`` batches a second."""

    def __init__(self, gateway: Gateway, seed: int, batch: int = 20, rate: float = 10.0) -> None:
        self.gateway = gateway
        self.batch = batch
        self.interval = 1.0 / rate
        self.stopping = threading.Event()
        self.flow: MarketFlow | None = None
        self.seed = seed
        self.thread = threading.Thread(target=self._run, name="demo-flow", daemon=True)

    def _next(self, engine: Engine) -> list[c.Command]:
        if self.flow is None:
            self.flow = MarketFlow(self.seed, engine, DEFAULT_SYMBOLS, FLOW_ACCOUNTS)
        return self.flow.next_commands(self.batch)

    def _run(self) -> None:
        sequencer = self.gateway.node.sequencer
        while not self.stopping.wait(self.interval):
            done = threading.Event()
            box: list[Any] = []

            def reply(answer: Any, error: str, box: list[Any] = box, done: threading.Event = done)\
                    -> None:  # fmt: skip
                box.append(answer if not error else [])
                done.set()

            try:
                sequencer.query(self._next, reply)
                if not done.wait(10) or not box[0]:
                    continue
                self.gateway.bridge.submit_blocking(box[0])
            except Exception:  # the node stopped or is busy: the demo just stops trading
                return

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(15)


def setup_demo(gateway: Gateway) -> None:
    """Build the venue in a fresh data directory (nothing when it already has a venue)."""
    done = threading.Event()
    box: list[int] = []

    def reply(answer: Any, error: str) -> None:
        box.append(int(answer) if not error else -1)
        done.set()

    gateway.node.sequencer.query(lambda engine: len(engine.instruments), reply)
    done.wait(10)
    if box and box[0] > 0:
        return
    commands = venue_setup(FLOW_ACCOUNTS)
    commands.append(c.OpenAccounts(count=1))
    commands.append(c.Deposit(account=YOUR_ACCOUNT, asset=USD, amount_minor=YOUR_USD_MINOR))
    for symbol in DEFAULT_SYMBOLS:
        shares = LISTINGS[symbol].trader_shares
        commands.append(c.Deposit(account=YOUR_ACCOUNT, asset=symbol, amount_minor=shares))
    gateway.bridge.submit_blocking(commands)


def demo_keys(data_dir: str | Path) -> dict[str, tuple[str, str]]:
    """Demo API keys (operator, auditor, a trader for your account): role -> (id, secret)."""
    return {
        "operator": create_key(data_dir, "operator"),
        "auditor": create_key(data_dir, "auditor"),
        f"trader (account {YOUR_ACCOUNT})": create_key(data_dir, "trader", [YOUR_ACCOUNT]),
    }
