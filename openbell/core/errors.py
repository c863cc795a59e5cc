"""Errors raised by the core.

``Reject`` is the ordinary, expected outcome of bad input: the engine turns it into one
``Rejected`` event and nothing changes. ``InvariantViolation`` means the state itself is wrong:
the node must halt (fail-stop) and never continue.
"""

from __future__ import annotations

from openbell.core.types import RejectReason


class Reject(Exception):
    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class InvariantViolation(AssertionError):
    """A broken invariant. Fatal: the engine refuses every further command."""
