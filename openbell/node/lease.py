"""Leadership lease in a replicated NATS KV bucket: liveness only, never safety.

The bucket's TTL (``max_age``) is a few seconds; the holder renews several times per TTL with a
compare-and-set on the key's revision. A standby takes the lease with ``create`` once the key
has expired. Losing the lease (a renewal refused because someone else holds it) makes the
holder step down; safety never depends on it: a deposed leader's appends are refused by the
stream's fence (``Nats-Expected-Last-Sequence``). A holder that merely cannot reach NATS keeps
trying: if the others took over meanwhile, its next renewal or append tells it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import msgspec
import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from openbell.journal.nats import NatsJournal

log = logging.getLogger("openbell.node")

LEADER_KEY = "leader"
DEFAULT_TTL_S = 1.5
RENEWALS_PER_TTL = 5


class LeaseValue(msgspec.Struct, frozen=True):
    node: str
    pid: int
    since_ns: int


_TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.js.errors.ServiceUnavailableError,
    TimeoutError,
)


class Lease:
    """The lease of one node, over the journal's NATS connection."""

    def __init__(self, journal: NatsJournal, node: str, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.journal = journal
        self.node = node
        self.ttl_s = ttl_s
        self.bucket = f"{journal.stream}_lease"
        self.kv: KeyValue = journal.key_value(self.bucket, ttl_s=ttl_s)
        self.revision = 0
        self.value = b""

    def try_acquire(self, pid: int) -> bool:
        """Take the lease if nobody holds it (the key expired or never existed)."""
        value = msgspec.json.encode(LeaseValue(self.node, pid, time.time_ns()))
        try:
            revision = self.journal.loop.run(self.kv.create(LEADER_KEY, value), self.ttl_s * 2)
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        except _TRANSIENT:
            return False
        except nats.js.errors.APIError as error:
            log.info("lease: create failed (%s)", error)
            return False
        self.revision = int(revision)
        self.value = value
        return True

    def renew(self) -> bool | None:
        """True: renewed; False: someone else holds it (step down); None: NATS unreachable."""
        try:
            revision = self.journal.loop.run(
                self.kv.update(LEADER_KEY, self.value, last=self.revision), self.ttl_s
            )
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        except _TRANSIENT:
            return None
        except nats.js.errors.APIError as error:
            log.warning("lease: renewal failed (%s)", error)
            return None
        self.revision = int(revision)
        return True

    def holder(self) -> LeaseValue | None:
        try:
            entry = self.journal.loop.run(self.kv.get(LEADER_KEY), self.ttl_s * 2)
        except (nats.js.errors.KeyNotFoundError, *_TRANSIENT):
            return None
        if not entry.value:
            return None
        return msgspec.json.decode(entry.value, type=LeaseValue)

    def release(self) -> None:
        """Give the lease up at once (a clean stop), so a standby need not wait the TTL."""
        try:
            self.journal.loop.run(self.kv.purge(LEADER_KEY), self.ttl_s)
        except Exception as error:  # best effort: the TTL ends it anyway
            log.info("lease: release failed (%s)", error)


class LeaseKeeper:
    """Renews a held lease ``RENEWALS_PER_TTL`` times per TTL on a thread; calls ``on_lost``
    once if another node took it."""

    def __init__(self, lease: Lease, on_lost: Callable[[str], None]) -> None:
        self.lease = lease
        self.on_lost = on_lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease", daemon=True)
        self.last_renewed = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        interval = self.lease.ttl_s / RENEWALS_PER_TTL
        while not self._stop.wait(interval):
            renewed = self.lease.renew()
            if renewed:
                self.last_renewed = time.monotonic()
            elif renewed is False:
                log.warning("lease: another node holds the lease; stepping down")
                self.on_lost("lease taken by another node")
                return
