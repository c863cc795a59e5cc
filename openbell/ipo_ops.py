"""The IPO phase runner behind ``openbell ipo ...``: each phase of an offering as one step
against a running node, safe to re-run.

How re-running stays safe:

- Phase commands (create, close, number, set-price, draw, import-results, settle, list) go
  WITHOUT request ids. Each step first reads the offering (the ``ipo_offering`` query) and
  submits only what is missing; a re-run of a finished phase prints "already done". If a
  command's acknowledgement is lost (a crash, a dropped connection), the step reconnects, reads
  the offering again and carries on; the core's per-phase checks refuse a command that already
  took effect (WRONG_PHASE, IPO_CHUNK_ALREADY_SETTLED), changing nothing, so the state hash of a
  crashed-and-resumed run equals that of an uninterrupted one.
- Subscription batches and funding commands carry request ids derived from the file's content
  hash and the batch index: a retry after a lost acknowledgement is answered DuplicateRequest.
  Funding also resumes by position (deposits are applied in account order, so the first
  account without cash marks where to resume), which holds beyond the engine's idempotency
  window.
- BUSY is retried after a pause; a lost connection is retried with bounded, growing pauses
  (``RetryPolicy``), then the step fails with ``OpsError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from openbell import ipo_io
from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.ipo import lottery
from openbell.core.ipo import messages as m
from openbell.core.ipo.messages import IpoPhase, LotteryMethod, OfferingSpec, OfferingView
from openbell.core.ledger import exact_sum
from openbell.core.types import EXTERNAL_ACCOUNT, MAX_ID_LENGTH, RejectReason
from openbell.demo import fixed
from openbell.gateway.errors import ApiError
from openbell.gateway.units import parse_decimal
from openbell.node.client import NodeClient, NodeError
from openbell.node.protocol import MAX_FRAME_BYTES, Response
from openbell.sim.ipo import read_offering

I64 = npt.NDArray[np.int64]
T = TypeVar("T")

PAGE_ROWS = 1_000_000  # rows per ipo_numbering / ipo_results query (the node's maximum)
FRAME_OVERHEAD_BYTES = 4096  # room for a command's other fields in a request frame
MAX_BATCH_ROWS = (MAX_FRAME_BYTES - FRAME_OVERHEAD_BYTES) // 16
DEFAULT_BATCH_ROWS = 50_000
DRAWN_PHASES = (IpoPhase.DRAWN, IpoPhase.SETTLED, IpoPhase.LISTED)
_AFTER: dict[IpoPhase, int] = {phase: i for i, phase in enumerate(IpoPhase)}
_READ_ONLY = ("status", "basis", "results")  # reports of steps that change nothing

stderr = Console(stderr=True)


class OpsError(RuntimeError):
    """A phase that cannot run (bad input, a refused command, an unreachable node)."""


class Target(msgspec.Struct, frozen=True):
    """Where the node is: its data directory (the port is read from DIR/node.port at every
    connection, so a restarted node on a new port is found), or host and port."""

    data: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    token: str | None = None  # the node's TCP token (DIR/node.token); not needed for --data


class RetryPolicy(msgspec.Struct, frozen=True):
    attempts: int = 8
    first_delay_s: float = 0.1
    max_delay_s: float = 2.0


class RunOptions(msgspec.Struct, frozen=True):
    quiet: bool = False  # no progress bars
    retry: RetryPolicy = RetryPolicy()
    timeout_s: float = 300.0  # per request
    window: int = 8  # commands in flight at once (subscription batches, settlement chunks)
    deposit_chunk: int = 2048  # funding commands sent with one write
    deposit_rows: int = 1_000_000  # accounts per DepositBatch (16 bytes each in the frame)


DEFAULT_OPTIONS = RunOptions()


class PhaseReport(msgspec.Struct):
    """What a phase did: ``numbers`` for programs, ``lines`` for people."""

    phase: str
    already_done: bool = False
    numbers: dict[str, Any] = msgspec.field(default_factory=dict)
    lines: list[str] = msgspec.field(default_factory=list)

    def render(self) -> str:
        if self.phase in _READ_ONLY:
            head = f"{self.phase}:"
        else:
            head = f"{self.phase}: already done" if self.already_done else f"{self.phase}: done"
        return "\n".join([head, *(f"  {line}" for line in self.lines)])


# -- the connection --------------------------------------------------------------------------


class Session:
    """One node connection, re-made on demand (bounded retries, growing pauses)."""

    def __init__(self, target: Target, options: RunOptions) -> None:
        self.target = target
        self.options = options
        self._client: NodeClient | None = None

    async def _connect(self) -> NodeClient:
        target = self.target
        if target.port is not None:
            return await NodeClient.connect(target.host, target.port, target.token)
        if target.data is None:
            raise OpsError("say where the node is: --data DIR or --port PORT")
        return await NodeClient.connect_data_dir(Path(target.data), target.host)

    async def client(self) -> NodeClient:
        if self._client is None:
            self._client = await asyncio.wait_for(self._connect(), self.options.timeout_s)
        return self._client

    async def reset(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(OSError):
                await client.close()

    async def query(self, what: str, **args: str | int) -> Any:
        client = await self.client()
        return await asyncio.wait_for(client.query(what, **args), self.options.timeout_s)

    async def offering(self, symbol: str) -> OfferingView | None:
        """The offering's view; None if the node has no such offering."""
        client = await self.client()
        try:
            return await asyncio.wait_for(client.ipo_offering(symbol), self.options.timeout_s)
        except NodeError as error:
            if "unknown offering" in str(error):
                return None
            raise OpsError(str(error)) from None

    async def submit(self, command: c.Command) -> Response:
        """Submit once; BUSY is retried (it means not accepted). A lost connection raises."""
        policy = self.options.retry
        delay = policy.first_delay_s
        for _ in range(max(policy.attempts, 1) * 4):
            client = await self.client()
            response = await asyncio.wait_for(client.submit(command), self.options.timeout_s)
            if response.error.startswith("BUSY"):
                await asyncio.sleep(delay)
                delay = min(delay * 2, policy.max_delay_s)
                continue
            if response.error.startswith("NODE_STOPPING"):
                raise ConnectionError(response.error)
            if response.error:
                raise OpsError(f"the node refused {type(command).__name__}: {response.error}")
            return response
        raise OpsError(f"the node stayed BUSY for {type(command).__name__}")

    async def resilient(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run ``step`` until it completes; on a lost connection, reconnect and run it again
        (each step re-reads the node's state first, so a repeat submits only what is missing)."""
        policy = self.options.retry
        delay = policy.first_delay_s
        last: BaseException | None = None
        for _ in range(max(policy.attempts, 1)):
            try:
                return await step()
            except (OSError, EOFError) as error:  # ConnectionError and TimeoutError included
                last = error
                await self.reset()
                await asyncio.sleep(delay)
                delay = min(delay * 2, policy.max_delay_s)
        raise OpsError(f"node unreachable after {policy.attempts} attempts: {last}")

    async def pipeline(
        self,
        items: Iterable[tuple[int, c.Command]],
        on_response: Callable[[int, Response], None],
    ) -> None:
        """Submit ``items`` in order with at most ``window`` in flight on one connection (the
        node sequences them in this order). Raises the first failure after the in-flight
        ones finish."""
        gate = asyncio.Semaphore(max(self.options.window, 1))
        failures: list[BaseException] = []

        async def one(key: int, command: c.Command) -> None:
            try:
                response = await self.submit(command)
                on_response(key, response)
            except BaseException as error:
                failures.append(error)
            finally:
                gate.release()

        tasks: list[asyncio.Task[None]] = []
        for key, command in items:
            await gate.acquire()
            if failures:
                gate.release()
                break
            tasks.append(asyncio.create_task(one(key, command)))
        await asyncio.gather(*tasks)
        if failures:
            lost = [f for f in failures if isinstance(f, OSError | EOFError)]
            raise lost[0] if lost else failures[0]

    async def submit_chunks(
        self,
        items: Iterable[tuple[int, c.Command]],
        on_response: Callable[[int, Response], None],
        chunk: int,
    ) -> None:
        """Many small commands, ``chunk`` at a time with one write each (``submit_many``);
        commands answered BUSY are sent again after a pause."""
        policy = self.options.retry
        batch: list[tuple[int, c.Command]] = []

        async def flush() -> None:
            todo, delay = list(batch), policy.first_delay_s
            for _ in range(max(policy.attempts, 1) * 4):
                client = await self.client()
                responses = await asyncio.wait_for(
                    client.submit_many([command for _, command in todo]), self.options.timeout_s
                )
                busy: list[tuple[int, c.Command]] = []
                for (key, command), response in zip(todo, responses, strict=True):
                    if response.error.startswith("BUSY"):
                        busy.append((key, command))
                    elif response.error.startswith("NODE_STOPPING"):
                        raise ConnectionError(response.error)
                    elif response.error:
                        raise OpsError(
                            f"the node refused {type(command).__name__}: {response.error}"
                        )
                    else:
                        on_response(key, response)
                if not busy:
                    return
                todo = busy
                await asyncio.sleep(delay)
                delay = min(delay * 2, policy.max_delay_s)
            raise OpsError("the node stayed BUSY")

        for item in items:
            batch.append(item)
            if len(batch) >= chunk:
                await flush()
                batch.clear()
        if batch:
            await flush()


def _run(target: Target, options: RunOptions, body: Callable[[Session], Awaitable[T]]) -> T:
    async def main() -> T:
        session = Session(target, options)
        try:
            return await body(session)
        finally:
            await session.reset()

    return asyncio.run(main())


def _progress(options: RunOptions) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        disable=options.quiet,
        transient=False,
    )


def _events(response: Response) -> list[e.Event]:
    return list(response.events or [])


def _rejected(response: Response) -> e.Rejected | None:
    events = _events(response)
    first = events[0] if events else None
    return first if isinstance(first, e.Rejected) else None


def _is_duplicate(response: Response) -> bool:
    events = _events(response)
    return bool(events) and isinstance(events[0], e.DuplicateRequest)


def _refusal(what: str, rejected: e.Rejected) -> OpsError:
    return OpsError(f"{what} refused: {rejected.reason}: {rejected.detail}")


def _first_of(response: Response, kind: type[T]) -> T | None:
    for event in _events(response):
        if isinstance(event, kind):
            return event
    return None


# -- formatting ------------------------------------------------------------------------------


def money(amount_minor: int, scale: int, asset: str) -> str:
    return f"{fixed(amount_minor, scale, group=True)} {asset}"


def percent(part: int, whole: int, decimals: int = 4) -> str:
    """``part / whole`` as a percentage, truncated to ``decimals`` (integers only)."""
    if whole <= 0:
        return "-"
    return fixed(part * 100 * 10**decimals // whole, decimals) + "%"


RATE_DECIMALS = 10  # decimals of a published winning rate (a percentage)


def winning_rate(units_offered: int, numbers: int, decimals: int = RATE_DECIMALS) -> str:
    """units offered / numbers issued as a percentage with ``decimals`` decimals (half up), as
    the announcements print it: 45,217 / 162,192,956 -> "0.0278785227 %". Exact integer
    arithmetic, never float; 100 % when every number wins."""
    if numbers <= 0:
        return "-"
    if units_offered >= numbers:
        return "100 %"
    scaled, rest = divmod(units_offered * 100 * 10**decimals, numbers)
    if 2 * rest >= numbers:
        scaled += 1
    return f"{Decimal(scaled).scaleb(-decimals):f} %"


def issuer_name(account: int) -> str:
    """The issuer's account, named as such."""
    if account == EXTERNAL_ACCOUNT:
        return f"the issuer (account {account}, the venue's external account)"
    return f"the issuer account {account}"


def tails_by_length(tails: list[str], numbers: int) -> list[tuple[int, list[str], int]]:
    """(length, tails, winning numbers they give in 1..numbers) per length, ascending."""
    by_length: dict[int, list[str]] = {}
    for t in tails:
        by_length.setdefault(len(t), []).append(t)
    return [
        (k, group, lottery.count_upto(numbers, lottery.TailGroup(k, tuple(int(t) for t in group))))
        for k, group in sorted(by_length.items())
    ]


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _tail_lines(tails: list[str], numbers: int) -> list[str]:
    """The full list of winning tails per length (what the announcement publishes)."""
    lines: list[str] = []
    total = 0
    for k, group, won in tails_by_length(tails, numbers):
        total += won
        lines.append(
            f"  last {k} digits ({_plural(len(group), 'tail')}, "
            f"{_plural(won, 'winning number')}): " + ", ".join(group)
        )
    if lines:
        lines.append(f"  winning numbers in all: {total:,}")
    return lines


def _need(view: OfferingView | None, symbol: str) -> OfferingView:
    if view is None:
        raise OpsError(f"the node has no offering {symbol!r} (run `openbell ipo create`)")
    return view


def _at_least(view: OfferingView, phase: IpoPhase) -> bool:
    return _AFTER[view.phase] >= _AFTER[phase]


def _drawn_lines(view: OfferingView, scale: int) -> tuple[dict[str, Any], list[str]]:
    drawn = view.drawn
    spec = view.spec
    if drawn is None:
        return {}, []
    cash = spec.cash_asset
    numbers: dict[str, Any] = {
        "method": str(drawn.method),
        "units_subscribed": drawn.units_subscribed,
        "units_offered": drawn.units_offered,
        "winners": drawn.winners,
        "won_units": drawn.won_units,
        "won_shares": drawn.won_shares,
        "amount_minor": drawn.amount_minor,
        "fee_minor": drawn.fee_minor,
        "price_minor": drawn.price_minor or view.final_price_minor,
        "tails": list(drawn.tails),
        "rate_digits": drawn.rate_digits,
        "source": drawn.source,
        "numbering_sha256": drawn.numbering_sha256,
        "winning_rate": winning_rate(drawn.units_offered, drawn.units_subscribed),
    }
    lines = [
        f"method {drawn.method}: {drawn.units_subscribed:,} units subscribed, "
        f"{drawn.units_offered:,} on offer",
        f"winning rate {numbers['winning_rate']} ({drawn.units_offered:,} units on offer / "
        f"{drawn.units_subscribed:,} numbers); {drawn.won_units:,} units won by "
        f"{drawn.winners:,} subscribers",
        f"won shares {drawn.won_shares:,}; to pay "
        f"{money(drawn.amount_minor, scale, cash)} + fees {money(drawn.fee_minor, scale, cash)}",
    ]
    if drawn.won_units < drawn.units_offered:
        unsold = (drawn.units_offered - drawn.won_units) * spec.unit_shares
        lines.append(
            f"{unsold:,} unsold shares go to {issuer_name(spec.issuer_account)} at listing"
        )
    if drawn.numbering_sha256:
        lines.append(f"numbering file sha256 {drawn.numbering_sha256}")
    if drawn.method is LotteryMethod.TAIL_LOTTERY:
        if not drawn.tails:
            lines.append(f"rate digits {drawn.rate_digits}; winning tails: (all win)")
        else:
            lines.append(f"rate digits {drawn.rate_digits}; winning tails per length:")
            lines.extend(_tail_lines(list(drawn.tails), drawn.units_subscribed))
    elif drawn.method is LotteryMethod.BALLOT:
        lines.append("basis of allotment (units: applicants, applied, base+extra x winners):")
        for t in drawn.basis[:40]:
            lines.append(
                f"  {t.min_units}..{t.max_units}: {t.applicants:,} applicants, "
                f"{t.units_applied:,} applied, {t.base_units}+{t.extra_units} x "
                f"{t.winners:,} -> {t.allotted_units:,} units"
            )
        if len(drawn.basis) > 40:
            lines.append(f"  ... {len(drawn.basis) - 40} more tiers")
    else:
        lines.append(f"results file sha256 {drawn.source}")
        if drawn.tails:
            lines.append("the exchange's winning tails per length:")
            lines.extend(_tail_lines(list(drawn.tails), drawn.units_subscribed))
    return numbers, lines


def _view_numbers(view: OfferingView) -> dict[str, Any]:
    return {
        "phase": str(view.phase),
        "subscriptions": view.subscriptions,
        "active_subscriptions": view.active_subscriptions,
        "active_units": view.active_units,
        "active_frozen_minor": view.active_frozen_minor,
        "final_price_minor": view.final_price_minor,
        "chunks": view.chunks,
        "chunks_done": sum(view.chunk_done),
        "settled_rows": view.settled_rows,
        "settled_winners": view.settled_winners,
        "settled_won_shares": view.settled_won_shares,
        "paid_minor": view.paid_minor,
        "fee_minor": view.fee_minor,
        "released_minor": view.released_minor,
    }


def symbol_of(offering: Path | None, symbol: str | None) -> str:
    if symbol:
        return symbol
    if offering is None:
        raise OpsError("say which offering: --symbol SYMBOL or --offering offering.json")
    return read_offering(offering).symbol


def parse_amount(text: str, scale: int, what: str) -> int:
    """A positive decimal string in whole units (``"12.50"``) -> minor units, exactly."""
    try:
        digits, decimals = parse_decimal(text, "INVALID_AMOUNT", what)
    except ApiError as error:
        raise OpsError(error.message) from None
    if decimals > scale:
        raise OpsError(f"{what} {text} has more than {scale} decimals")
    value: int = digits * 10 ** (scale - decimals)
    if value <= 0:
        raise OpsError(f"{what} must be positive")
    return value


def cash_scale_of(target: Target, symbol: str, options: RunOptions = DEFAULT_OPTIONS) -> int:
    """The decimals of an offering's cash asset, from the node."""

    async def body(session: Session) -> int:
        view = _need(await session.resilient(lambda: session.offering(symbol)), symbol)
        return await _scale(session, view)

    return _run(target, options, body)


def _request_id(*parts: object) -> str:
    rid = ":".join(str(p) for p in parts)
    if len(rid) > MAX_ID_LENGTH:
        raise OpsError(f"request id {rid!r} is longer than {MAX_ID_LENGTH}")
    return rid


# -- fund ------------------------------------------------------------------------------------


class DepositBlocks(msgspec.Struct, frozen=True):
    """Deposits in account order, ``rows`` accounts per DepositBatch: block i funds
    ``accounts[starts[i]:starts[i + 1]]`` (accounts with no cash are left out)."""

    accounts: I64
    amounts_minor: I64
    starts: I64  # len(blocks) + 1 offsets

    def __len__(self) -> int:
        return len(self.starts) - 1

    def first_account(self, i: int) -> int:
        return int(self.accounts[self.starts[i]])

    def command(self, i: int, asset: str, request_id: str) -> c.DepositBatch:
        lo, hi = int(self.starts[i]), int(self.starts[i + 1])
        return c.DepositBatch(
            request_id=request_id,
            asset=asset,
            accounts=self.accounts[lo:hi].astype("<i8").tobytes(),
            amounts_minor=self.amounts_minor[lo:hi].astype("<i8").tobytes(),
        )


def deposit_blocks(accounts: I64, cash_minor: I64, rows: int) -> DepositBlocks:
    if rows < 1:
        raise OpsError("deposit rows must be at least 1")
    order = np.argsort(accounts, kind="stable")
    acc, cash = accounts[order], cash_minor[order]
    keep = cash > 0
    acc, cash = acc[keep], cash[keep]
    starts = np.append(np.arange(0, len(acc), rows, dtype=np.int64), len(acc))
    return DepositBlocks(acc, cash, starts if len(acc) else np.zeros(1, dtype=np.int64))


def fund(
    target: Target,
    offering: Path,
    population: Path,
    *,
    cash_scale: int = 2,
    uniform: bool = False,
    options: RunOptions = DEFAULT_OPTIONS,
) -> PhaseReport:
    """Create the cash asset if missing, open the population's accounts (the node's next
    account id must equal the file's first account) and deposit each account's cash.

    Resumable: deposits go in account order with request ids, so after a crash the first
    account without cash marks where to carry on; once the offering exists (funding comes
    before ``create``) a re-run deposits nothing."""
    spec = read_offering(offering)
    pop = ipo_io.read_population(population)
    accounts = pop.accounts
    if not len(accounts):
        raise OpsError(f"{population}: no accounts")
    first, count = int(accounts.min()), len(accounts)
    if int(accounts.max()) - first + 1 != count:
        raise OpsError(f"{population}: accounts are not dense from {first}")
    digest = pop.sha256[:16]
    asset = spec.cash_asset
    largest = int(pop.cash_minor.max())
    runs = deposit_blocks(accounts, pop.cash_minor, options.deposit_rows)
    if uniform:
        runs = DepositBlocks(
            np.array([first], dtype=np.int64),
            np.array([largest], dtype=np.int64),
            np.array([0, 1], dtype=np.int64),
        )

    def deposit_command(i: int) -> c.Command:
        if uniform:
            return c.DepositMany(
                request_id=_request_id("fund", digest, "u", i),
                first_account=first,
                count=count,
                asset=asset,
                amount_minor=largest,
            )
        return runs.command(i, asset, _request_id("fund", digest, "b", options.deposit_rows, i))

    report = PhaseReport("fund")

    async def body(session: Session) -> PhaseReport:
        scales = await session.resilient(lambda: _asset_scales(session))
        if asset not in scales:
            response = await session.resilient(
                lambda: session.submit(
                    c.CreateAsset(
                        request_id=_request_id("fund", digest, "asset"),
                        asset=asset,
                        scale=cash_scale,
                    )
                )
            )
            rejected = _rejected(response)
            if rejected is not None and rejected.reason is not RejectReason.DUPLICATE_ASSET:
                raise _refusal(f"creating asset {asset}", rejected)
            scales = await session.resilient(lambda: _asset_scales(session))
        scale = scales[asset]
        next_account = await session.resilient(lambda: _accounts_count(session))
        opened = False
        if next_account == first:
            response = await session.resilient(
                lambda: session.submit(
                    c.OpenAccounts(request_id=_request_id("fund", digest, "open"), count=count)
                )
            )
            rejected = _rejected(response)
            if rejected is not None:
                raise _refusal("opening accounts", rejected)
            got = _first_of(response, e.AccountsOpened)
            if got is not None and got.first_account != first:
                raise OpsError(f"accounts opened from {got.first_account}, the file has {first}")
            opened = not _is_duplicate(response)
        elif next_account < first + count:
            raise OpsError(
                f"the node's next account id is {next_account}, the population's accounts "
                f"are {first}..{first + count - 1}: fund a fresh venue, or regenerate the "
                f"population with --first-account {next_account}"
            )
        existing = await session.resilient(lambda: session.offering(spec.symbol))
        if not opened and existing is not None:
            start = len(runs)  # the offering exists: funding was finished before it
        else:
            start = await session.resilient(lambda: _first_unfunded(session, runs, asset))
        done = {"commands": 0, "duplicates": 0}
        with _progress(options) as progress:
            task = progress.add_task("funding", total=max(len(runs), 1), completed=start)

            def acknowledged(i: int, response: Response) -> None:
                rejected = _rejected(response)
                if rejected is not None:
                    raise _refusal(f"deposit {i}", rejected)
                done["commands"] += 1
                done["duplicates"] += int(_is_duplicate(response))
                progress.advance(task)

            acked = np.zeros(len(runs), dtype=bool)
            acked[:start] = True

            async def deposit() -> None:
                todo = np.flatnonzero(~acked).tolist()
                pending = ((i, deposit_command(i)) for i in todo)

                def mark(i: int, response: Response) -> None:
                    acknowledged(i, response)
                    acked[i] = True

                await session.submit_chunks(pending, mark, options.deposit_chunk)

            await session.resilient(deposit)
        # What the deposits add up to (uniform: the largest cash, to every account).
        total = largest * count if uniform else exact_sum(pop.cash_minor)
        report.already_done = not opened and start == len(runs)
        report.numbers = {
            "accounts": count,
            "first_account": first,
            "accounts_opened": count if opened else 0,
            "deposit_commands": len(runs),
            "deposit_commands_sent": done["commands"],
            "cash_minor": total,
        }
        report.lines = [
            f"accounts {first}..{first + count - 1} ({count:,}; "
            f"{'opened now' if opened else 'already open'})",
            f"cash {money(total, scale, asset)} in {len(runs):,} deposit commands "
            f"({done['commands']:,} sent now, {start:,} found done)",
        ]
        return report

    return _run(target, options, body)


async def _asset_scales(session: Session) -> dict[str, int]:
    return await (await session.client()).asset_scales()


async def _accounts_count(session: Session) -> int:
    return await (await session.client()).accounts_count()


async def _funded(session: Session, account: int, asset: str) -> bool:
    available, frozen = await _balance(session, account, asset)
    return available + frozen > 0


async def _balance(session: Session, account: int, asset: str) -> tuple[int, int]:
    answer = await session.query("balance", account=account, asset=asset)
    return int(answer["available_minor"]), int(answer["frozen_minor"])


async def _first_unfunded(session: Session, runs: DepositBlocks, asset: str) -> int:
    """Deposit blocks are applied in account order and each one whole, so the funded blocks
    are a prefix: the first block whose first account holds nothing yet (binary search; 0 on
    a fresh venue)."""
    lo, hi = 0, len(runs)
    firsts = [runs.first_account(i) for i in range(len(runs))]
    if not firsts or not await _funded(session, firsts[0], asset):
        return 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if await _funded(session, firsts[mid], asset):
            lo = mid
        else:
            hi = mid
    return hi


# -- create, subscribe, close ----------------------------------------------------------------


def create(target: Target, offering: Path, *, options: RunOptions = DEFAULT_OPTIONS) -> PhaseReport:
    spec = read_offering(offering)

    async def body(session: Session) -> PhaseReport:
        report = PhaseReport("create")
        view = await session.resilient(lambda: session.offering(spec.symbol))
        if view is not None:
            if view.spec != spec:
                raise OpsError(f"the node has a different offering {spec.symbol!r}")
            report.already_done = True
        else:

            async def step() -> None:
                if await session.offering(spec.symbol) is not None:
                    return  # the create took effect before the connection was lost
                response = await session.submit(m.IpoCreateOffering(symbol=spec.symbol, spec=spec))
                rejected = _rejected(response)
                if rejected is not None:
                    raise _refusal(f"creating {spec.symbol}", rejected)

            await session.resilient(step)
        scale = int(
            (await session.resilient(lambda: _asset_scales(session))).get(spec.cash_asset, 0)
        )
        report.numbers = {"symbol": spec.symbol, "shares_offered": spec.shares_offered}
        report.lines = _spec_lines(spec, scale)
        return report

    return _run(target, options, body)


def _spec_lines(spec: OfferingSpec, scale: int) -> list[str]:
    price = money(spec.price_minor, scale, spec.cash_asset)
    return [
        f"{spec.symbol}: {spec.shares_offered:,} shares in units of {spec.unit_shares:,} "
        f"({spec.shares_offered // spec.unit_shares:,} units), "
        f"{'maximum ' if spec.price_is_maximum else ''}price {price} per share, "
        f"fee {spec.fee_bps} bps, at most {spec.max_units:,} units per applicant",
        f"method {spec.method}; settlement in chunks of {spec.chunk_rows:,} subscriptions",
    ]


def subscribe(
    target: Target,
    symbol: str,
    population: Path,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    options: RunOptions = DEFAULT_OPTIONS,
) -> PhaseReport:
    """IpoSubscribeBatch commands of ``batch_rows`` rows in file order, request ids from the
    file's content hash and the batch index."""
    if not 1 <= batch_rows <= MAX_BATCH_ROWS:
        raise OpsError(
            f"--batch-rows must be 1..{MAX_BATCH_ROWS} (a request frame is at most "
            f"{MAX_FRAME_BYTES} bytes)"
        )
    pop = ipo_io.read_population(population)
    rows = len(pop.accounts)
    digest = pop.sha256[:12]
    accounts = pop.accounts.astype("<i8")
    units = pop.units.astype("<i8")
    batches = -(-rows // batch_rows)

    def batch(i: int) -> m.IpoSubscribeBatch:
        lo = i * batch_rows
        return m.IpoSubscribeBatch(
            request_id=_request_id("sub", symbol, digest, batch_rows, i),
            symbol=symbol,
            accounts=accounts[lo : lo + batch_rows].tobytes(),
            units=units[lo : lo + batch_rows].tobytes(),
        )

    async def body(session: Session) -> PhaseReport:
        report = PhaseReport("subscribe")
        view = _need(await session.resilient(lambda: session.offering(symbol)), symbol)
        if view.phase is not IpoPhase.OPEN:
            if view.subscriptions >= rows:
                report.already_done = True
                return _subscribed_report(report, view, await _scale(session, view))
            raise OpsError(f"{symbol} is {view.phase}: subscriptions are over")
        acked: dict[int, str] = {}
        refused: list[str] = []
        refused_batches: set[int] = set()
        with _progress(options) as progress:
            task = progress.add_task("subscribing", total=rows)

            def on_response(i: int, response: Response) -> None:
                rejected = _rejected(response)
                lo = i * batch_rows
                n = min(batch_rows, rows - lo)
                if rejected is not None:
                    refused_batches.add(i)
                    refused.append(
                        f"batch {i} (rows {lo + 1}..{lo + n}): {rejected.reason}: {rejected.detail}"
                    )
                else:
                    acked[i] = "duplicate" if _is_duplicate(response) else "new"
                progress.advance(task, n)

            async def step() -> None:
                pending = (
                    (i, batch(i))
                    for i in range(batches)
                    if i not in acked and i not in refused_batches
                )
                await session.pipeline(pending, on_response)

            await session.resilient(step)
        if refused:
            shown = "\n  ".join(refused[:20])
            raise OpsError(f"{len(refused)} of {batches} batches refused:\n  {shown}")
        view = _need(await session.resilient(lambda: session.offering(symbol)), symbol)
        report.already_done = bool(acked) and all(v == "duplicate" for v in acked.values())
        report.numbers["batches"] = batches
        report.numbers["batches_new"] = sum(1 for v in acked.values() if v == "new")
        return _subscribed_report(report, view, await _scale(session, view))

    return _run(target, options, body)


async def _scale(session: Session, view: OfferingView) -> int:
    scales = await session.resilient(lambda: _asset_scales(session))
    return int(scales.get(view.spec.cash_asset, 0))


def _subscribed_report(report: PhaseReport, view: OfferingView, scale: int) -> PhaseReport:
    report.numbers.update(_view_numbers(view))
    report.lines.append(
        f"{view.spec.symbol} {view.phase}: {view.active_subscriptions:,} active subscriptions "
        f"({view.subscriptions:,} accepted), {view.active_units:,} units, frozen "
        f"{money(view.active_frozen_minor, scale, view.spec.cash_asset)}"
    )
    return report


async def _phase_step(
    session: Session,
    symbol: str,
    ready: IpoPhase,
    command: c.Command,
    what: str,
) -> bool:
    """Submit ``command`` if the offering is in phase ``ready``; False if it is already past
    it. A lost acknowledgement re-reads the phase (the command carries no request id)."""

    async def step() -> bool:
        view = _need(await session.offering(symbol), symbol)
        if view.phase is not ready:
            if _at_least(view, ready):
                return False
            raise OpsError(f"{symbol} is {view.phase}: {what} needs {ready}")
        response = await session.submit(command)
        rejected = _rejected(response)
        if rejected is not None:
            after = _need(await session.offering(symbol), symbol)
            if rejected.reason is RejectReason.WRONG_PHASE and _AFTER[after.phase] > _AFTER[ready]:
                return False
            raise _refusal(what, rejected)
        return True

    return await session.resilient(step)


def close(target: Target, symbol: str, *, options: RunOptions = DEFAULT_OPTIONS) -> PhaseReport:
    async def body(session: Session) -> PhaseReport:
        report = PhaseReport("close")
        submitted = await _phase_step(
            session, symbol, IpoPhase.OPEN, m.IpoClose(symbol=symbol), "close"
        )
        report.already_done = not submitted
        view = _need(await session.resilient(lambda: session.offering(symbol)), symbol)
        return _subscribed_report(report, view, await _scale(session, view))

    return _run(target, options, body)


# -- number, set-price, basis ----------------------------------------------------------------


async def _paged(
    session: Session,
    fetch: Callable[[NodeClient, int], Awaitable[tuple[I64, ...]]],
    columns: int,
    on_rows: Callable[[int], None] | None = None,
) -> list[I64]:
    """Every page of a bulk query (``fetch(client, offset)``), concatenated per column."""
    parts: list[tuple[I64, ...]] = []
    offset = 0
    while True:

        async def page(at: int = offset) -> tuple[I64, ...]:
            client = await session.client()
            return await asyncio.wait_for(fetch(client, at), session.options.timeout_s)

        got = await session.resilient(page)
        rows = len(got[0])
        if rows:
            parts.append(got)
            offset += rows
            if on_rows is not None:
                on_rows(offset)
        if rows < PAGE_ROWS:
            break
    if not parts:
        return [np.zeros(0, dtype=np.int64) for _ in range(columns)]
    return [np.concatenate([p[i] for p in parts]) for i in range(columns)]


async def _numbering(
    session: Session, symbol: str, options: RunOptions, total: int
) -> ipo_io.Numbering:
    with _progress(options) as progress:
        task = progress.add_task("reading numbering", total=max(total, 1))
        accounts, first, counts = await _paged(
            session,
            lambda client, at: client.ipo_numbering(symbol, at, PAGE_ROWS),
            3,
            lambda done: progress.update(task, completed=done),
        )
    return ipo_io.Numbering(accounts, first, counts, "")


def number(
    target: Target,
    symbol: str,
    *,
    export: Path | None = None,
    options: RunOptions = DEFAULT_OPTIONS,
) -> PhaseReport:
    """Assign allotment numbers (once), and optionally write the numbering file."""

    async def body(session: Session) -> PhaseReport:
        report = PhaseReport("number")
        submitted = await _phase_step(
            session, symbol, IpoPhase.CLOSED, m.IpoNumber(symbol=symbol), "number"
        )
        report.already_done = not submitted
        view = _need(await session.resilient(lambda: session.offering(symbol)), symbol)
        numbering = await _numbering(session, symbol, options, view.subscriptions)
        applicants = len(numbering.accounts)
        units = exact_sum(numbering.counts)
        stored = view.numbering_sha256
        report.numbers = {"numbered": applicants, "units": units, "numbering_sha256": stored}
        report.lines = [
            f"{applicants:,} subscriptions numbered 000000000001.."
            f"{str(units).zfill(lottery.NUMBER_DIGITS)} ({units:,} units)",
            f"numbering file sha256 recorded by the node: {stored or '(none)'}",
        ]
        if export is not None:
            ipo_io.write_numbering_arrays(
                export, numbering.accounts, numbering.first_numbers, numbering.counts
            )
            written = ipo_io.file_sha256(export)
            report.numbers["numbering_file"] = str(export)
            if stored and written != stored:
                raise OpsError(
                    f"{export}: sha256 {written} differs from the node's numbering hash {stored}"
                )
            report.lines.append(f"numbering file {export} written (sha256 {written})")
        return report

    return _run(target, options, body)


def set_price(
    target: Target, symbol: str, final_price_minor: int, *, options: RunOptions = DEFAULT_OPTIONS
) -> PhaseReport:
    async def body(session: Session) -> PhaseReport:
        report = PhaseReport("set-price")
        view = _need(await session.resilient(lambda: session.offering(symbol)), symbol)
        scale = await _scale(session, view)
        if not view.spec.price_is_maximum:
            raise OpsError(f"{symbol} has a fixed price")
        if view.price_set:
            if view.final_price_minor != final_price_minor:
                raise OpsError(
                    f"{symbol}'s final price is already "
                    f"{money(view.final_price_minor, scale, view.spec.cash_asset)}"
                )
            report.already_done = True
        else:

            async def step() -> None:
                now = _need(await session.offering(symbol), symbol)
                if now.price_set and now.final_price_minor == final_price_minor:
                    return
                response = await session.submit(
                    m.IpoSetPrice(symbol=symbol, final_price_minor=final_price_minor)
                )
                rejected = _rejected(response)
                if rejected is not None:
                    raise _refusal("set-price", rejected)

            await session.resilient(step)
        report.numbers = {"final_price_minor": final_price_minor}
        report.lines = [
            f"final price {money(final_price_minor, scale, view.spec.cash_asset)} per share "
            f"(maximum {money(view.spec.price_minor, scale, view.spec.cash_asset)})"
        ]
        return report

    return _run(target, options, body)


def basis(
    target: Target, symbol: str, out: Path, *, options: RunOptions = DEFAULT_OPTIONS
) -> PhaseReport:
    """Propose a basis of allotment from the demand (the numbered application sizes)."""

    async def body(session: Session) -> PhaseReport:
        view = _need(await session.resilient(lambda: session.offering(symbol)), symbol)
        if not _at_least(view, IpoPhase.NUMBERED):
            raise OpsError(f"{symbol} is {view.phase}: number it first")
        numbering = await _numbering(session, symbol, options, view.subscriptions)
        units_offered = view.spec.shares_offered // view.spec.unit_shares
        tiers = lottery.propose_basis(numbering.counts, units_offered)
        ipo_io.write_basis(out, tiers)
        sizes, applicants = np.unique(numbering.counts, return_counts=True)
        by_size = dict(zip(sizes.tolist(), applicants.tolist(), strict=True))
        allotted = 0
        lines = [
            f"{len(numbering.counts):,} applications, {exact_sum(numbering.counts):,} units "
            f"applied for, {units_offered:,} on offer; basis written to {out}",
            "size: applicants, base + extra x winners",
        ]
        for t in tiers:
            n = sum(by_size.get(s, 0) for s in range(t.min_units, t.max_units + 1))
            allotted += n * t.base_units + t.winners * t.extra_units
            if len(lines) < 42:
                lines.append(
                    f"  {t.min_units}..{t.max_units}: {n:,}, {t.base_units} + "
                    f"{t.extra_units} x {t.winners:,}"
                )
        lines.append(f"allots {allotted:,} units")
        return PhaseReport(
            "basis", numbers={"tiers": len(tiers), "allotted_units": allotted}, lines=lines
        )

    return _run(target, options, body)


# -- draw, import-results --------------------------------------------------------------------


def read_seed(path: Path) -> bytes:
    try:
        text = path.read_text().strip()
    except OSError as error:
        raise OpsError(f"{path}: {error.strerror or error}") from None
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise OpsError(f"{path}: the seed file holds hex digits only") from None


def _drawn_report(report: PhaseReport, view: OfferingView, scale: int) -> PhaseReport:
    numbers, lines = _drawn_lines(view, scale)
    report.numbers.update(numbers)
    report.lines.extend(lines)
    return report


def draw(
    target: Target,
    symbol: str,
    seed_file: Path,
    *,
    basis_file: Path | None = None,
    options: RunOptions = DEFAULT_OPTIONS,
) -> PhaseReport:
    """Reveal the seed and draw (tail lottery, or ballot with the basis file)."""
    seed = read_seed(seed_file)
    tiers = ipo_io.read_basis(basis_file) if basis_file is not None else []

    async def body(session: Session) -> PhaseReport:
        report = PhaseReport("draw")
        view = _need(await session.resilient(lambda: session.offering(symbol)), symbol)
        spec = view.spec
        if spec.method is LotteryMethod.EXTERNAL:
            raise OpsError(f"{symbol} takes the exchange's results: use `ipo import-results`")
        if hashlib.sha256(seed).hexdigest() != spec.seed_commitment:
            raise OpsError(f"{seed_file}: sha256(seed) differs from the offering's commitment")
        if spec.method is LotteryMethod.BALLOT and not tiers and view.phase is IpoPhase.NUMBERED:
            raise OpsError("a ballot needs --basis basis.csv (see `openbell ipo basis`)")
        submitted = await _phase_step(
            session,
            symbol,
            IpoPhase.NUMBERED,
            m.IpoDraw(symbol=symbol, seed=seed, basis=tiers),
            "draw",
        )
        report.already_done = not submitted
        view = _need(await session.resilient(lambda: session.offering(symbol)), symbol)
        return _drawn_report(report, view, await _scale(session, view))

    return _run(target, options, body)


def import_results(
    target: Target, symbol: str, results: Path, *, options: RunOptions = DEFAULT_OPTIONS
) -> PhaseReport:
    """Check the exchange's results file (winners per account, or winning tails: told apart
    by the header; refused as a whole with a report) and import it."""

    async def body(session: Session) -> PhaseReport:
        report = PhaseReport("import-results")
        view = _need(await session.resilient(lambda: session.offering(symbol)), symbol)
        spec = view.spec
        if spec.method is not LotteryMethod.EXTERNAL:
            raise OpsError(f"{symbol} is drawn by {spec.method}: use `ipo draw`")
        sha256 = ipo_io.file_sha256(results)
        if _at_least(view, IpoPhase.DRAWN):
            if view.drawn is not None and view.drawn.source != sha256:
                raise OpsError(
                    f"{symbol} already has results from another file (sha256 {view.drawn.source})"
                )
            report.already_done = True
            return _drawn_report(report, view, await _scale(session, view))
        command: c.Command
        if ipo_io.results_kind(results) == "tails":
            command = ipo_io.read_tails(
                symbol, results, unit_shares=spec.unit_shares, price_minor=view.final_price_minor
            )
        else:
            command = ipo_io.read_results(
                symbol, results, unit_shares=spec.unit_shares, price_minor=view.final_price_minor
            )
            size = len(command.accounts) + len(command.won_units) + FRAME_OVERHEAD_BYTES
            if size > MAX_FRAME_BYTES:
                raise OpsError(
                    f"{results}: {len(command.accounts) // 8:,} winners do not fit one request "
                    f"frame ({MAX_FRAME_BYTES} bytes, about {MAX_BATCH_ROWS:,} winners)"
                )
        submitted = await _phase_step(session, symbol, IpoPhase.NUMBERED, command, "import-results")
        report.already_done = not submitted
        view = _need(await session.resilient(lambda: session.offering(symbol)), symbol)
        return _drawn_report(report, view, await _scale(session, view))

    return _run(target, options, body)


# -- settle, list, status, results -----------------------------------------------------------


def settle(
    target: Target,
    symbol: str,
    *,
    options: RunOptions = DEFAULT_OPTIONS,
    on_chunk: Callable[[int], None] | None = None,
) -> PhaseReport:
    """Settle every chunk not yet settled (resumable: reads ``chunk_done`` first; a chunk
    refused as already settled counts as done). ``on_chunk(n)`` is called after the n-th
    acknowledgement of this run (tests use it to crash the node mid-way)."""

    async def body(session: Session) -> PhaseReport:
        report = PhaseReport("settle")
        acks = {"n": 0, "new": 0}
        view = _need(await session.resilient(lambda: session.offering(symbol)), symbol)
        if not _at_least(view, IpoPhase.DRAWN):
            raise OpsError(f"{symbol} is {view.phase}: draw (or import results) first")
        done_before = sum(view.chunk_done)
        with _progress(options) as progress:
            task = progress.add_task("settling", total=max(view.chunks, 1), completed=done_before)

            def on_response(chunk: int, response: Response) -> None:
                rejected = _rejected(response)
                if rejected is not None and rejected.reason is not m.CHUNK_ALREADY_SETTLED:
                    raise _refusal(f"chunk {chunk}", rejected)
                acks["n"] += 1
                acks["new"] += int(rejected is None)
                progress.advance(task)
                if on_chunk is not None:
                    on_chunk(acks["n"])

            async def step() -> None:
                now = _need(await session.offering(symbol), symbol)
                if now.phase is not IpoPhase.DRAWN:
                    return
                missing = [i for i, done in enumerate(now.chunk_done) if not done]
                progress.update(task, completed=now.chunks - len(missing))
                await session.pipeline(
                    ((i, m.IpoSettleChunk(symbol=symbol, chunk=i)) for i in missing), on_response
                )

            await session.resilient(step)
        view = _need(await session.resilient(lambda: session.offering(symbol)), symbol)
        if not _at_least(view, IpoPhase.SETTLED):
            raise OpsError(f"{symbol} is still {view.phase} after settling")
        report.already_done = acks["new"] == 0
        scale = await _scale(session, view)
        cash = view.spec.cash_asset
        report.numbers = _view_numbers(view)
        report.numbers["chunks_settled_now"] = acks["new"]
        report.lines = [
            f"{view.chunks:,} chunks settled ({acks['new']:,} now, {done_before:,} before)",
            f"{view.settled_rows:,} subscriptions settled, {view.settled_winners:,} winners "
            f"received {view.settled_won_shares:,} shares",
            f"paid {money(view.paid_minor, scale, cash)} to escrow, fees "
            f"{money(view.fee_minor, scale, cash)}, "
            f"released {money(view.released_minor, scale, cash)}",
        ]
        return report

    return _run(target, options, body)


def list_offering(
    target: Target,
    symbol: str,
    *,
    lot_shares: int = 1,
    tick_minor: int = 1,
    band_bps: int = 0,
    options: RunOptions = DEFAULT_OPTIONS,
) -> PhaseReport:
    """Pay out proceeds and unsold shares, and open the instrument in its opening auction."""

    async def body(session: Session) -> PhaseReport:
        report = PhaseReport("list")
        listed: dict[str, Any] = {}

        async def step() -> bool:
            view = _need(await session.offering(symbol), symbol)
            if view.phase is IpoPhase.LISTED:
                return False
            if view.phase is not IpoPhase.SETTLED:
                raise OpsError(f"{symbol} is {view.phase}: listing needs SETTLED")
            response = await session.submit(
                m.IpoList(
                    symbol=symbol, lot_shares=lot_shares, tick_minor=tick_minor, band_bps=band_bps
                )
            )
            rejected = _rejected(response)
            if rejected is not None:
                if (await session.offering(symbol) or view).phase is IpoPhase.LISTED:
                    return False
                raise _refusal("list", rejected)
            event = _first_of(response, m.IpoListed)
            if event is not None:
                listed.update(msgspec.to_builtins(event))
            return True

        submitted = await session.resilient(step)
        report.already_done = not submitted
        view = _need(await session.resilient(lambda: session.offering(symbol)), symbol)
        scale = await _scale(session, view)
        spec = view.spec
        unsold = spec.shares_offered - view.settled_won_shares
        report.numbers = {
            "proceeds_minor": view.paid_minor,
            "unsold_shares": unsold,
            "issuer_account": spec.issuer_account,
            **({"reference_price_ticks": listed["reference_price_ticks"]} if listed else {}),
        }
        report.lines = [
            f"{symbol} listed: proceeds {money(view.paid_minor, scale, spec.cash_asset)} and "
            f"{unsold:,} unsold shares to {issuer_name(spec.issuer_account)}",
            f"instrument {symbol} in its opening auction (PRE_OPEN): lot {lot_shares} shares, "
            f"tick {tick_minor} minor, band {band_bps} bps after the first close",
        ]
        return report

    return _run(target, options, body)


def status(target: Target, symbol: str, *, options: RunOptions = DEFAULT_OPTIONS) -> PhaseReport:
    async def body(session: Session) -> PhaseReport:
        view = _need(await session.resilient(lambda: session.offering(symbol)), symbol)
        scale = await _scale(session, view)
        report = PhaseReport("status", numbers=_view_numbers(view))
        report.lines = _spec_lines(view.spec, scale)
        if _at_least(view, IpoPhase.SETTLED):
            report.lines.extend(_settled_lines(view, scale))
        else:
            _subscribed_report(report, view, scale)
        if view.spec.price_is_maximum:
            report.lines.append(
                "final price "
                + (
                    money(view.final_price_minor, scale, view.spec.cash_asset)
                    if view.price_set
                    else "not set"
                )
            )
        if view.numbering_sha256:
            report.lines.append(f"numbering file sha256 {view.numbering_sha256}")
        _drawn_report(report, view, scale)
        if view.drawn is not None and not _at_least(view, IpoPhase.SETTLED):
            report.lines.append(
                f"settlement: {sum(view.chunk_done):,} of {view.chunks:,} chunks, "
                f"{view.settled_rows:,} subscriptions"
            )
        return report

    return _run(target, options, body)


def _settled_lines(view: OfferingView, scale: int) -> list[str]:
    """After settlement: winners, shares, amounts paid and refunded (not "0 active")."""
    spec = view.spec
    cash = spec.cash_asset
    losers = view.settled_rows - view.settled_winners
    unsold = spec.shares_offered - view.settled_won_shares
    where = (
        f"paid out to {issuer_name(spec.issuer_account)}"
        if view.phase is IpoPhase.LISTED
        else f"held in escrow for {issuer_name(spec.issuer_account)} until listing"
    )
    return [
        f"{spec.symbol} {view.phase}: {view.settled_rows:,} subscriptions settled in "
        f"{view.chunks:,} chunks: {view.settled_winners:,} winners, {losers:,} refunded in full",
        f"winners received {view.settled_won_shares:,} shares and paid "
        f"{money(view.paid_minor, scale, cash)} + fees {money(view.fee_minor, scale, cash)}",
        f"refunded (released holds) {money(view.released_minor, scale, cash)}",
        f"proceeds {money(view.paid_minor, scale, cash)} and {unsold:,} unsold shares {where}",
    ]


async def _results(session: Session, symbol: str) -> tuple[I64, I64]:
    accounts, won = await _paged(
        session, lambda client, at: client.ipo_results(symbol, at, PAGE_ROWS), 2
    )
    return accounts, won


def export_results(
    target: Target, symbol: str, out: Path, *, options: RunOptions = DEFAULT_OPTIONS
) -> PhaseReport:
    """Write the published draw (winners and won units) as a results file."""

    async def body(session: Session) -> PhaseReport:
        view = _need(await session.resilient(lambda: session.offering(symbol)), symbol)
        if view.drawn is None:
            raise OpsError(f"{symbol} is {view.phase}: nothing drawn yet")
        accounts, won = await _results(session, symbol)
        order = np.argsort(accounts, kind="stable")
        ipo_io.write_results(
            out, accounts[order], won[order], view.spec.unit_shares, view.final_price_minor
        )
        return PhaseReport(
            "results",
            numbers={"winners": len(accounts), "won_units": exact_sum(won)},
            lines=[f"{len(accounts):,} winners, {exact_sum(won):,} units written to {out}"],
        )

    return _run(target, options, body)


def export_tails(
    target: Target, symbol: str, out: Path | None, *, options: RunOptions = DEFAULT_OPTIONS
) -> PhaseReport:
    """The full list of winning tails per length (the announcement), and with ``out`` a tails
    file (``tail`` lines and the ``TOTAL,<winning numbers>,<shares>,<amount minor>``
    trailer, the format ``import-results`` reads)."""

    async def body(session: Session) -> PhaseReport:
        view = _need(await session.resilient(lambda: session.offering(symbol)), symbol)
        drawn = view.drawn
        if drawn is None:
            raise OpsError(f"{symbol} is {view.phase}: nothing drawn yet")
        if not drawn.tails:
            raise OpsError(f"{symbol}: the draw ({drawn.method}) published no winning tails")
        groups = tails_by_length(list(drawn.tails), drawn.units_subscribed)
        total = sum(won for _, _, won in groups)
        report = PhaseReport(
            "tails",
            numbers={
                "tails": list(drawn.tails),
                "winning_numbers": total,
                "per_length": {str(k): len(group) for k, group, _ in groups},
                "winning_rate": winning_rate(drawn.units_offered, drawn.units_subscribed),
            },
        )
        report.lines = [
            f"{symbol}: winning rate {report.numbers['winning_rate']} "
            f"({drawn.units_offered:,} units on offer / {drawn.units_subscribed:,} numbers)",
            f"{len(drawn.tails):,} winning tails:",
            *_tail_lines(list(drawn.tails), drawn.units_subscribed),
        ]
        if out is not None:
            ipo_io.write_tails(
                out, list(drawn.tails), total, view.spec.unit_shares, drawn.price_minor
            )
            report.numbers["tails_file"] = str(out)
            report.lines.append(f"tails file {out} written (sha256 {ipo_io.file_sha256(out)})")
        return report

    return _run(target, options, body)


# -- verify-draw (offline) -------------------------------------------------------------------


class VerifyUsageError(OpsError):
    """verify-draw was asked something it cannot answer (exit code 2)."""


class DrawCheck(msgspec.Struct):
    """verify-draw's verdict: VERIFIED, or MISMATCH with every reason found."""

    ok: bool
    reasons: list[str]
    summary: str = ""
    numbers: dict[str, Any] = msgspec.field(default_factory=dict)

    def render(self) -> str:
        """One line."""
        if self.ok:
            return f"VERIFIED: {self.summary}"
        return "MISMATCH: " + "; ".join(self.reasons)


def recompute_draw(
    spec: OfferingSpec,
    numbering: ipo_io.Numbering,
    seed: bytes,
    tiers: list[m.BallotTier],
    numbering_sha256: str,
) -> tuple[I64, list[str], str, list[m.BallotTierResult]]:
    """Won units per numbered application, from the published inputs only (the draw's
    entropy is the revealed seed with the numbering file's SHA-256); and the tails and rate
    digits (tail lottery) or the tier results (ballot)."""
    units_offered = spec.shares_offered // spec.unit_shares
    entropy = lottery.draw_entropy(seed, numbering_sha256)
    if spec.method is LotteryMethod.TAIL_LOTTERY:
        draw_ = lottery.draw_tails(entropy, spec.symbol, exact_sum(numbering.counts), units_offered)
        return lottery.won_units(numbering.counts, draw_), draw_.labels(), draw_.rate_digits, []
    if spec.method is LotteryMethod.BALLOT:
        problems = lottery.basis_problems(tiers, numbering.counts, units_offered)
        if problems:
            raise OpsError("the basis does not fit the numbering: " + "; ".join(problems[:5]))
        won, results = lottery.ballot(
            entropy, spec.symbol, tiers, numbering.first_numbers, numbering.counts
        )
        return won, [], "", results
    raise OpsError("external results are the exchange's own draw: there is nothing to recompute")


def _compare_winners(
    want_accounts: I64, want_won: I64, got_accounts: I64, got_won: I64
) -> list[str]:
    """Differences between two winner lists (account -> won units), at most 10 quoted."""
    want = dict(zip(want_accounts.tolist(), want_won.tolist(), strict=True))
    got = dict(zip(got_accounts.tolist(), got_won.tolist(), strict=True))
    problems: list[str] = []
    missing = [a for a in want if a not in got]
    extra = [a for a in got if a not in want]
    differ = [a for a in want if a in got and want[a] != got[a]]
    if missing:
        problems.append(
            f"{len(missing):,} recomputed winners missing from the published draw, "
            f"e.g. {', '.join(map(str, missing[:10]))}"
        )
    if extra:
        problems.append(
            f"{len(extra):,} published winners the recomputation does not have, "
            f"e.g. {', '.join(map(str, extra[:10]))}"
        )
    if differ:
        shown = ", ".join(f"{a}: {want[a]} vs {got[a]}" for a in differ[:10])
        problems.append(f"{len(differ):,} accounts with different won units, e.g. {shown}")
    return problems


def _file_refusal(error: ipo_io.IpoFileError) -> str:
    """A refused file in one clause: what is wrong, where first."""
    report = error.report
    kinds = ", ".join(f"{kind} ({count})" for kind, count in report.counts.items())
    first = report.examples[0] if report.examples else None
    where = (
        f"; first at line {first.line}: {first.text}" if first is not None and first.line else ""
    )
    return f"{report.what} {report.path} is malformed: {kinds}{where}"


def verify_draw(
    offering: Path,
    numbering_file: Path,
    seed_file: Path,
    *,
    basis_file: Path | None = None,
    results_file: Path | None = None,
    target: Target | None = None,
    numbering_sha256: str | None = None,
    options: RunOptions = DEFAULT_OPTIONS,
) -> DrawCheck:
    """Check a published draw from the outside:

    - the numbering file is the one the node recorded (its SHA-256 equals the hash stored at
      numbering: from the node, or ``numbering_sha256`` as published);
    - the revealed seed matches the offering's commitment;
    - every winner follows from the rule: the draw recomputed from the seed and the stored
      hash over the file's numbering gives exactly the published winners (a results file,
      or the node's results) and, from the node, the published tails.

    Usage problems (a method with nothing to recompute, a missing basis, nothing to compare
    with, unreadable inputs) raise ``VerifyUsageError``; everything else is a verdict."""
    try:
        spec = read_offering(offering)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as error:
        raise VerifyUsageError(f"{offering}: {error}") from None
    if spec.method is LotteryMethod.EXTERNAL:
        raise VerifyUsageError(
            "external results are the exchange's own draw: there is nothing to recompute"
        )
    if spec.method is LotteryMethod.BALLOT and basis_file is None:
        raise VerifyUsageError("a ballot is recomputed from its basis: --basis basis.csv")
    if results_file is None and target is None:
        raise VerifyUsageError("compare with --results results.csv or a node (--data / --port)")
    if target is None and not numbering_sha256:
        raise VerifyUsageError(
            "offline, give the numbering hash the node recorded (--numbering-sha256, in the "
            "draw's announcement or `ipo status`)"
        )
    if not numbering_file.is_file() or not seed_file.is_file():
        missing = numbering_file if not numbering_file.is_file() else seed_file
        raise VerifyUsageError(f"{missing}: no such file")
    try:
        tiers = ipo_io.read_basis(basis_file) if basis_file is not None else []
    except ipo_io.IpoFileError as error:
        raise VerifyUsageError(_file_refusal(error)) from None
    reasons: list[str] = []
    try:
        seed = read_seed(seed_file)
    except OpsError as error:
        return DrawCheck(False, [str(error)])
    digest = hashlib.sha256(seed).hexdigest()
    if digest != spec.seed_commitment:
        reasons.append(
            f"the revealed seed's sha256 {digest} differs from the commitment "
            f"{spec.seed_commitment} made when the offering was created"
        )
    got_accounts: I64 | None = None
    got_won: I64 | None = None
    drawn: m.IpoDrawn | None = None
    stored = numbering_sha256 or ""
    if target is not None:

        async def body(session: Session) -> tuple[I64, I64, OfferingView]:
            view = _need(
                await session.resilient(lambda: session.offering(spec.symbol)), spec.symbol
            )
            accounts, won_units = await _results(session, spec.symbol)
            return accounts, won_units, view

        got_accounts, got_won, view = _run(target, options, body)
        if view.spec != spec:
            reasons.append("the node's offering differs from the offering file")
        if numbering_sha256 and numbering_sha256 != view.numbering_sha256:
            reasons.append(
                f"the given numbering hash {numbering_sha256} is not the node's "
                f"{view.numbering_sha256}"
            )
        stored = view.numbering_sha256
        drawn = view.drawn
        if drawn is None:
            reasons.append(f"{spec.symbol} is {view.phase}: nothing drawn yet")
        elif drawn.source != seed.hex():
            reasons.append("the node's draw revealed a different seed")
    if results_file is not None:
        try:
            published = ipo_io.read_results_file(results_file)
        except ipo_io.IpoFileError as error:
            reasons.append(_file_refusal(error))
        else:
            got_accounts, got_won = published.accounts, published.won_units
    file_sha256 = ipo_io.file_sha256(numbering_file)
    if file_sha256 != stored:
        reasons.append(
            f"numbering file {numbering_file} has sha256 {file_sha256}, not the {stored} "
            "recorded at numbering: it is not the published numbering"
        )
    try:
        numbering = ipo_io.read_numbering(numbering_file)
    except ipo_io.IpoFileError as error:
        return DrawCheck(False, [*reasons, _file_refusal(error)])
    try:
        won, tails, digits, tier_results = recompute_draw(spec, numbering, seed, tiers, stored)
    except OpsError as error:
        return DrawCheck(False, [*reasons, str(error)])
    winning = won > 0
    want_accounts, want_won = numbering.accounts[winning], won[winning]
    units = exact_sum(numbering.counts)
    offered = spec.shares_offered // spec.unit_shares
    won_total = exact_sum(want_won)
    if spec.method is LotteryMethod.TAIL_LOTTERY and won_total != min(units, offered):
        reasons.append(f"the rule gives {won_total:,} winning numbers, {offered:,} on offer")
    if drawn is not None:
        if list(drawn.tails) != tails or drawn.rate_digits != digits:
            reasons.append(
                f"the published tails ({len(drawn.tails)}, digits {drawn.rate_digits}) differ "
                f"from the recomputed ({len(tails)}, digits {digits})"
            )
        if spec.method is LotteryMethod.BALLOT and list(drawn.basis) != tier_results:
            reasons.append("the published basis results differ from the recomputed ones")
    if got_accounts is not None and got_won is not None:
        reasons.extend(_compare_winners(want_accounts, want_won, got_accounts, got_won))
    summary = (
        f"{len(want_accounts):,} winners, {won_total:,} units from {len(numbering.accounts):,} "
        f"numbered applications ({units:,} units); numbering sha256 {stored}; seed matches "
        "the commitment"
    )
    numbers: dict[str, Any] = {
        "winners": len(want_accounts),
        "won_units": won_total,
        "tails": tails,
        "rate_digits": digits,
        "numbering_sha256": stored,
        "published_winners": 0 if got_accounts is None else len(got_accounts),
    }
    return DrawCheck(not reasons, reasons, summary, numbers)
