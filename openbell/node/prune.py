"""Stream pruning: the journal stream must not grow forever.

After the leader has stored a snapshot in the object store it purges the stream's messages
that nobody can need any more: those whose commands all come at or before

- the OLDEST snapshot the object store keeps (a node that finds the newest one unreadable boots
  from the older one, and still finds the stream's tail after it);
- the seq every live standby has applied (a standby that published its position within
  ``live_s``: it follows the stream and must find its next message there; a standby silent for
  longer boots from a snapshot when it comes back);
- and never a message the second site's mirror has not copied yet (its last stream seq; an
  unreachable mirror means no pruning at all).

``prune_target`` is the decision (pure); ``StreamPruner`` gathers its inputs from NATS.
"""

from __future__ import annotations

import logging
import time

import msgspec

from openbell.journal.nats import NatsJournal
from openbell.node.replica import Checkpointer, Position

log = logging.getLogger("openbell.node")

LIVE_S = 15.0  # a standby that published its position this recently is waited for


class PruneTarget(msgspec.Struct, frozen=True):
    """Purge every message whose commands all come before ``before_seq``, and none from
    stream seq ``keep_stream_seq`` on (None: no mirror to wait for)."""

    before_seq: int
    keep_stream_seq: int | None
    reason: str


def prune_target(
    snapshot_seqs: list[int],
    positions: dict[str, Position],
    now_ns: int,
    live_s: float = LIVE_S,
    mirrored_stream_seq: int | None = None,
) -> PruneTarget | None:
    """What may go (None: nothing, e.g. no snapshot yet)."""
    if not snapshot_seqs:
        return None
    limit = min(snapshot_seqs)
    reason = f"oldest snapshot {limit}"
    for node, position in sorted(positions.items()):
        if now_ns - position.time_ns > live_s * 1e9:
            continue  # not live: it boots from a snapshot when it comes back
        if position.seq < limit:
            limit = position.seq
            reason = f"standby {node} at {position.seq}"
    keep = None if mirrored_stream_seq is None else mirrored_stream_seq + 1
    if limit <= 0:
        return None
    return PruneTarget(limit + 1, keep, reason)


class StreamPruner:
    """Prunes the leader's stream after each snapshot (on the snapshot thread)."""

    def __init__(
        self,
        journal: NatsJournal,
        checkpointer: Checkpointer,
        dr_servers: list[str] | None = None,
        live_s: float = LIVE_S,
    ) -> None:
        self.journal = journal
        self.checkpointer = checkpointer
        self.dr_servers = dr_servers or []
        self.live_s = live_s
        self.pruned_messages = 0
        self.last: PruneTarget | None = None

    def _mirrored(self) -> int | None:
        from openbell.node.dr import mirror_state

        mirrored, _lag = mirror_state(self.dr_servers, self.journal.stream)
        return mirrored

    def prune(self) -> int:
        """Purge what nobody needs; returns how many messages went."""
        mirrored: int | None = None
        if self.dr_servers:
            try:
                mirrored = self._mirrored()
            except Exception as error:  # the mirror's needs are unknown: keep everything
                log.warning("stream not pruned: the second site is unreachable (%s)", error)
                return 0
        target = prune_target(
            self.journal.snapshot_seqs(),
            self.checkpointer.positions(),
            time.time_ns(),
            self.live_s,
            mirrored,
        )
        if target is None:
            return 0
        removed = self.journal.prune_before(target.before_seq, target.keep_stream_seq)
        self.pruned_messages += removed
        self.last = target
        if removed:
            log.info(
                "stream pruned: %d messages before seq %d (%s)",
                removed,
                target.before_seq,
                target.reason,
            )
        return removed
