"""A venue without Python: the venue file (TOML) and the operator's commands, in decimals.

``openbell serve --venue venue.toml`` applies the file at every start, idempotently: what the
node already has is left alone, what is missing is created, and what contradicts the file (an
asset with another scale, an instrument with other parameters) stops the start with a message
that says which value differs (the core has no command that changes a listed instrument, so
the file cannot silently disagree with the venue). ``openbell admin ...`` sends the same
commands one at a time. Both go through the node's local API (``NodeClient``), so every change
is a journaled command like any other.

The file::

    [[assets]]
    code = "USD"
    scale = 2                       # digits after the point

    [fee_schedules.standard]
    maker_bps = 1
    taker_bps = 5

    [[instruments]]
    symbol = "ACME"
    base = "ACME"
    quote = "USD"
    tick = "0.01"                   # price step, quote asset per share
    lot = "1"                       # quantity step, in shares
    reference_price = "100.00"
    band_bps = 1000                 # +-10 % around the reference price
    fees = "standard"               # or maker_fee_bps / taker_fee_bps here
    phase = "CONTINUOUS"            # set once, when the file creates the instrument

    [[accounts]]
    id = 16                         # the first user account
    name = "market maker"
    deposits = { USD = "1000000.00", ACME = "100000" }

Deposits are made once: each carries a request id derived from the file's entry, and the ones
durably made are recorded in ``DIR/venue-applied.json`` (a start that crashed half way makes
the rest at the next start; a repeat inside the node's idempotency window is a harmless
``DuplicateRequest``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.types import FIRST_USER_ACCOUNT, MAX_FEE_BPS, Phase
from openbell.gateway.convert import Venue as DecimalView
from openbell.gateway.errors import ApiError
from openbell.gateway.units import amount, amount_to_minor, instrument_spec
from openbell.journal.fsutil import write_atomic
from openbell.node.client import NodeClient
from openbell.node.protocol import Response

Code = Annotated[str, Meta(pattern=r"^[A-Z][A-Z0-9._-]{0,15}$")]
Bps = Annotated[int, Meta(ge=0, le=10_000)]
FeeBps = Annotated[int, Meta(ge=0, le=MAX_FEE_BPS)]
APPLIED_FILE = "venue-applied.json"


class VenueError(RuntimeError):
    """A venue file or an admin command that cannot be applied; the message says why."""


class AssetEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    code: Code
    scale: Annotated[int, Meta(ge=0, le=18)]


class FeeSchedule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    maker_bps: FeeBps = 0
    taker_bps: FeeBps = 0


class InstrumentEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    symbol: Code
    base: Code
    quote: Code
    tick: str
    lot: str = "1"
    reference_price: str | None = None
    band_bps: Bps = 0
    market_protection_bps: Bps = 500
    fees: str | None = None  # a fee schedule's name
    maker_fee_bps: FeeBps | None = None
    taker_fee_bps: FeeBps | None = None
    max_quantity: str | None = None
    max_notional: str | None = None
    phase: Phase | None = None


class AccountEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: Annotated[int, Meta(ge=int(FIRST_USER_ACCOUNT), le=(1 << 31) - 1)]
    name: str = ""
    deposits: dict[Code, str] = {}


class VenueFile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    assets: list[AssetEntry] = []
    fee_schedules: dict[str, FeeSchedule] = {}
    instruments: list[InstrumentEntry] = []
    accounts: list[AccountEntry] = []


def load_venue_file(path: Path) -> VenueFile:
    """Parse and check a venue file (a bad one raises VenueError naming the field)."""
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as error:
        raise VenueError(f"cannot read {path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise VenueError(f"{path}: not valid TOML: {error}") from None
    try:
        venue = msgspec.convert(raw, VenueFile)
    except msgspec.ValidationError as error:
        raise VenueError(f"{path}: {error}") from None
    seen: set[str] = set()
    for inst in venue.instruments:
        if inst.symbol in seen:
            raise VenueError(f"{path}: instrument {inst.symbol} appears twice")
        seen.add(inst.symbol)
        if inst.fees is not None and inst.fees not in venue.fee_schedules:
            raise VenueError(f"{path}: instrument {inst.symbol}: no fee schedule {inst.fees!r}")
    ids = [a.id for a in venue.accounts]
    if len(ids) != len(set(ids)):
        raise VenueError(f"{path}: an account id appears twice")
    return venue


# -- talking to the node ------------------------------------------------------------------------


class NodeView:
    """What the node has (assets, instruments, accounts), and the decimal view that renders
    its rejects in the user's units."""

    def __init__(self, scales: dict[str, int], specs: list[c.InstrumentSpec], accounts: int):
        self.scales = scales
        self.specs = {spec.symbol: spec for spec in specs}
        self.accounts_count = accounts
        self.decimals = DecimalView()
        self.decimals.load(scales, specs, {})

    @classmethod
    async def read(cls, client: NodeClient) -> NodeView:
        scales = await client.asset_scales()
        rows = await client.query("instruments")
        specs = [msgspec.convert(row["spec"], c.InstrumentSpec) for row in rows]
        return cls(scales, specs, await client.accounts_count())

    def scale(self, asset: str) -> int:
        scale = self.scales.get(asset)
        if scale is None:
            raise VenueError(f"no asset {asset!r} (create it first: openbell admin asset create)")
        return scale


def check(response: Response, what: str, view: NodeView) -> list[e.Event]:
    """The events of a durable command; a refusal or reject raises VenueError in decimals."""
    if response.error:
        raise VenueError(f"{what}: the node refused it: {response.error}")
    events = response.events or []
    first = events[0] if events else None
    if isinstance(first, e.DuplicateRequest):
        return response.original or events
    if isinstance(first, e.Rejected):
        raise VenueError(f"{what} rejected: {first.reason.value}: {reject_text(first, view)}")
    return events


def reject_text(event: e.Rejected, view: NodeView) -> str:
    return view.decimals.reject_detail(event) or event.reason.value


def _decimal(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Gateway conversions raise ApiError (a 400 with a message): here it is a VenueError."""
    try:
        return fn(*args, **kwargs)
    except ApiError as error:
        raise VenueError(error.message) from None


def asset_command(code: str, scale: int, request_id: str = "") -> c.CreateAsset:
    return c.CreateAsset(request_id=request_id, asset=code, scale=scale)


def instrument_command(
    view: NodeView, entry: InstrumentEntry, fee_schedules: dict[str, FeeSchedule] | None = None
) -> c.CreateInstrument:
    schedule = (fee_schedules or {}).get(entry.fees or "", FeeSchedule())
    spec = _decimal(
        instrument_spec,
        symbol=entry.symbol,
        base_asset=entry.base,
        quote_asset=entry.quote,
        base_scale=view.scale(entry.base),
        quote_scale=view.scale(entry.quote),
        tick_size=entry.tick,
        lot_quantity=entry.lot,
        reference_price=entry.reference_price,
        band_bps=entry.band_bps,
        market_protection_bps=entry.market_protection_bps,
        maker_fee_bps=schedule.maker_bps if entry.maker_fee_bps is None else entry.maker_fee_bps,
        taker_fee_bps=schedule.taker_bps if entry.taker_fee_bps is None else entry.taker_fee_bps,
        max_order_quantity=entry.max_quantity,
        max_notional=entry.max_notional,
    )
    return c.CreateInstrument(request_id=f"venue:instrument:{entry.symbol}", spec=spec)


def deposit_command(
    view: NodeView, account: int, asset: str, amount: str, request_id: str = ""
) -> c.Deposit:
    minor = _decimal(amount_to_minor, amount, view.scale(asset), f"deposit of {asset}")
    return c.Deposit(request_id=request_id, account=account, asset=asset, amount_minor=minor)


# -- applying a venue file ----------------------------------------------------------------------


class ApplyReport(msgspec.Struct):
    created: list[str] = msgspec.field(default_factory=list)
    unchanged: list[str] = msgspec.field(default_factory=list)

    def render(self) -> str:
        lines = [f"venue file: {len(self.created)} created, {len(self.unchanged)} already there"]
        lines += [f"  created {what}" for what in self.created]
        return "\n".join(lines)


def _spec_differences(have: c.InstrumentSpec, want: c.InstrumentSpec) -> list[str]:
    return [
        f"{name} {getattr(have, name)} (file: {getattr(want, name)})"
        for name in have.__struct_fields__
        if getattr(have, name) != getattr(want, name)
    ]


def _load_applied(data_dir: Path) -> set[str]:
    path = data_dir / APPLIED_FILE
    if not path.exists():
        return set()
    return set(msgspec.json.decode(path.read_bytes(), type=list[str]))


async def apply_venue(client: NodeClient, venue: VenueFile, data_dir: Path) -> ApplyReport:
    """Make the node have what ``venue`` says (see the module docstring)."""
    report = ApplyReport()
    view = await NodeView.read(client)
    for asset in venue.assets:
        have = view.scales.get(asset.code)
        if have is None:
            create = asset_command(asset.code, asset.scale, f"venue:asset:{asset.code}")
            check(await client.submit(create), f"asset {asset.code}", view)
            report.created.append(f"asset {asset.code} (scale {asset.scale})")
        elif have != asset.scale:
            raise VenueError(
                f"asset {asset.code} exists with scale {have}; the venue file says {asset.scale}"
            )
        else:
            report.unchanged.append(f"asset {asset.code}")
    view = await NodeView.read(client)
    for entry in venue.instruments:
        listing = instrument_command(view, entry, venue.fee_schedules)
        existing = view.specs.get(entry.symbol)
        if existing is None:
            check(await client.submit(listing), f"instrument {entry.symbol}", view)
            report.created.append(f"instrument {entry.symbol}")
            if entry.phase is not None:
                phase = c.SetPhase(
                    request_id=f"venue:phase:{entry.symbol}", symbol=entry.symbol, phase=entry.phase
                )
                check(await client.submit(phase), f"phase of {entry.symbol}", view)
        elif existing != listing.spec:
            differences = "; ".join(_spec_differences(existing, listing.spec))
            raise VenueError(
                f"instrument {entry.symbol} exists with other parameters: {differences}"
            )
        else:
            report.unchanged.append(f"instrument {entry.symbol}")
    view = await NodeView.read(client)
    if venue.accounts:
        wanted = max(a.id for a in venue.accounts) + 1
        if view.accounts_count < wanted:
            count = wanted - view.accounts_count
            opened = c.OpenAccounts(request_id=f"venue:accounts:{wanted}", count=count)
            check(await client.submit(opened), "opening accounts", view)
            report.created.append(f"accounts {view.accounts_count}..{wanted - 1}")
    applied = _load_applied(data_dir)
    for account in venue.accounts:
        for code, text in account.deposits.items():
            deposit = deposit_command(view, account.id, code, text)
            rid = f"venue:deposit:{account.id}:{code}:{deposit.amount_minor}"
            if rid in applied:
                report.unchanged.append(f"deposit {text} {code} to {account.id}")
                continue
            deposit = msgspec.structs.replace(deposit, request_id=rid)
            check(await client.submit(deposit), f"deposit to account {account.id}", view)
            applied.add(rid)
            write_atomic(data_dir / APPLIED_FILE, msgspec.json.encode(sorted(applied)))
            report.created.append(f"deposit {text} {code} to account {account.id}")
    return report


def events_summary(events: Sequence[e.Event], view: NodeView) -> str:
    """One line per event that says what changed (for ``openbell admin``), in decimals."""
    lines = []
    for event in events:
        if isinstance(event, e.AccountsOpened):
            last = event.first_account + event.count - 1
            lines.append(f"accounts {event.first_account}..{last} opened")
        elif isinstance(event, e.AssetCreated):
            lines.append(f"asset {event.asset} created (scale {event.scale})")
        elif isinstance(event, e.InstrumentCreated):
            lines.append(f"instrument {event.spec.symbol} created ({event.phase.value})")
        elif isinstance(event, e.PhaseChanged):
            lines.append(f"{event.symbol}: {event.phase.value}")
        elif isinstance(event, e.BalanceChanged):
            scale = view.scales.get(event.asset, 0)
            available = amount(event.available_minor, scale)
            frozen = amount(event.frozen_minor, scale)
            lines.append(
                f"account {event.account} {event.asset}: available {available}, frozen {frozen}"
            )
    return "\n".join(lines) or "done"
