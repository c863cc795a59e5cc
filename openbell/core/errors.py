"""Errors raised by the core.

``Reject`` is the ordinary, expected outcome of bad input: the engine turns it into one
``Rejected`` event and nothing changes. ``InvariantViolation`` means the state itself is wrong:
the node must halt (fail-stop) and never continue.
"""

from __future__ import annotations

from openbell.core.figures import Figure
from openbell.core.types import RejectReason


class Reject(Exception):
    """A refused command. With ``figures``, ``detail`` is a template whose ``{0}``, ``{1}``, ...
    stand for the figures: the core fills them in internal units (ticks, lots, minor units) for
    its own log, and the edges render them in the user's decimals (see ``events.Figure``)."""

    def __init__(
        self, reason: RejectReason, detail: str = "", figures: tuple[Figure, ...] = ()
    ) -> None:
        self.reason = reason
        self.template = detail if figures else ""
        self.figures = figures
        self.detail = detail.format(*[f.value for f in figures]) if figures else detail
        super().__init__(f"{reason.value}: {self.detail}")


class InvariantViolation(AssertionError):
    """A broken invariant. Fatal: the engine refuses every further command."""
