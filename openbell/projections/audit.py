"""The hash-chained audit trail: every money movement and every operator action, in journal
order, with periodic anchors carrying the engine's state hash.

Entry ``idx`` (1, 2, ...) holds ``seq`` (the command that caused it), ``kind`` (the event type,
or ``ANCHOR``), ``content`` (the event's fields as canonical JSON: sorted keys, no spaces,
integers only), ``prev_hash`` (the previous entry's hash; 64 zeros for the first) and
``hash = sha256(prev_hash | idx | seq | kind | content)``. An anchor is written after every
seq that is a multiple of ``anchor_every`` with the engine's ``state_hash()`` at that seq.

The chain is stored twice: a JSON-lines file (``DATA/audit/audit.jsonl``, fsynced before the
SQL commit) and the ``audit_log`` table, with the sink's position in the same transaction. On
restart the file is cut back to the SQL position (a crash between the two writes leaves the file
ahead), so both hold every entry exactly once.

``verify`` recomputes the chain from the journal (replaying it through an engine) and compares
every stored entry, field by field, in both stores; the first difference is reported with its
seq, field, expected and found values. ``verify_chain`` checks only the links and hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa

from openbell.core import commands as c
from openbell.core import events as e
from openbell.core.engine import Engine
from openbell.core.ipo import messages as m
from openbell.projections import db
from openbell.projections.migrate import upgrade
from openbell.projections.source import FileJournalTail, JournalSource, Replayer, engine_config

SINK_NAME = "audit"
GENESIS = "0" * 64
DEFAULT_ANCHOR_EVERY = 10_000
AUDIT_DIR = "audit"
AUDIT_FILE = "audit.jsonl"

MONEY = (
    e.Transferred, e.BulkDeposited, e.BatchDeposited, e.HoldFrozen, e.HoldResolved, e.Trade,
    m.IpoOfferingCreated, m.IpoSubscribed, m.IpoBatchSubscribed, m.IpoSubscriptionCancelled,
    m.IpoChunkSettled, m.IpoListed,
)  # fmt: skip
OPERATOR = (
    e.AssetCreated, e.InstrumentCreated, e.AccountsOpened, e.AccountStateChanged,
    e.KillSwitchActivated, e.VenueHaltChanged, e.PhaseChanged, m.IpoClosed, m.IpoNumbered,
    m.IpoPriceSet, m.IpoDrawn,
)  # fmt: skip
AUDITED: frozenset[type] = frozenset(MONEY + OPERATOR)
ANCHOR = "ANCHOR"


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    idx: int
    seq: int
    kind: str
    content: str
    prev_hash: str
    hash: str


def entry_hash(prev_hash: str, idx: int, seq: int, kind: str, content: str) -> str:
    return hashlib.sha256(f"{prev_hash}|{idx}|{seq}|{kind}|{content}".encode()).hexdigest()


def canonical(value: Any) -> str:
    return msgspec.json.encode(value, order="sorted").decode()


def event_content(event: Any) -> str:
    fields = msgspec.to_builtins(event)
    fields.pop("seq", None)
    fields.pop("type", None)
    return canonical(fields)


class ChainBuilder:
    """Turns commands' events into chained entries (shared by the sink and ``verify``)."""

    def __init__(self, anchor_every: int = DEFAULT_ANCHOR_EVERY, last_idx: int = 0,
                 last_hash: str = GENESIS) -> None:  # fmt: skip
        self.anchor_every = anchor_every
        self.idx = last_idx
        self.prev = last_hash

    def _append(self, out: list[AuditEntry], seq: int, kind: str, content: str) -> None:
        self.idx += 1
        digest = entry_hash(self.prev, self.idx, seq, kind, content)
        out.append(AuditEntry(idx=self.idx, seq=seq, kind=kind, content=content,
                              prev_hash=self.prev, hash=digest))  # fmt: skip
        self.prev = digest

    def entries(
        self, seq: int, events: list[e.Event], engine: Engine, out: list[AuditEntry]
    ) -> None:
        for event in events:
            if type(event) in AUDITED:
                self._append(out, seq, type(event).__name__, event_content(event))
        if seq % self.anchor_every == 0:
            self._append(out, seq, ANCHOR, canonical({"state_hash": engine.state_hash()}))


def _entry_line(entry: AuditEntry) -> bytes:
    return msgspec.json.encode(entry) + b"\n"


_decode_entry = msgspec.json.Decoder(AuditEntry).decode


_decode_lines = msgspec.json.Decoder(AuditEntry).decode_lines


def read_file(path: Path) -> Iterator[AuditEntry | str]:
    """Stored entries of the audit file; a line that does not decode yields its error text."""
    if not path.exists():
        return
    data = path.read_bytes()
    try:  # the whole file at once (fast); line by line only to locate a bad line
        yield from _decode_lines(data)
        return
    except msgspec.DecodeError:
        pass
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                yield _decode_entry(line)
            except msgspec.DecodeError as error:
                yield f"line {number}: {error}"


def _cut_file(path: Path, position: int) -> tuple[int, str]:
    """Drop a torn last line and every entry after ``position``; (last idx, last hash) kept."""
    if not path.exists():
        return 0, GENESIS
    keep_bytes = 0
    last = (0, GENESIS)
    with open(path, "rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break
            try:
                entry = _decode_entry(line)
            except msgspec.DecodeError:
                break
            if entry.seq > position:
                break
            keep_bytes += len(line)
            last = (entry.idx, entry.hash)
    if keep_bytes != path.stat().st_size:
        with open(path, "r+b") as handle:
            handle.truncate(keep_bytes)
            os.fsync(handle.fileno())
    return last


class AuditLog:
    """Projection sink: the chain in the audit file and the SQL ``audit_log`` table."""

    name = SINK_NAME

    def __init__(self, data_dir: Path, url: str, anchor_every: int = DEFAULT_ANCHOR_EVERY) -> None:
        self.path = Path(data_dir) / AUDIT_DIR / AUDIT_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = db.make_engine(url)
        upgrade(self.db)
        self.anchor_every = anchor_every
        self._position = self._stored_position()
        with self.db.connect() as conn:
            row = conn.execute(
                sa.text("SELECT idx, hash FROM audit_log ORDER BY idx DESC LIMIT 1")
            ).first()
        sql_last = (int(row[0]), str(row[1])) if row is not None else (0, GENESIS)
        file_last = _cut_file(self.path, self._position)
        if file_last != sql_last:
            raise RuntimeError(
                f"the audit file ends at entry {file_last[0]} but the SQL audit log at "
                f"{sql_last[0]}: run `openbell audit verify`"
            )
        self.chain = ChainBuilder(anchor_every, *sql_last)
        self._pending: list[AuditEntry] = []
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()

    @classmethod
    def open(cls, data_dir: Path, url: str) -> AuditLog:
        return cls(data_dir, url)

    def _stored_position(self) -> int:
        with self.db.connect() as conn:
            value = conn.execute(
                sa.text("SELECT last_seq FROM projector_state WHERE name = :n"), {"n": self.name}
            ).scalar()
        return int(value or 0)

    def position(self) -> int:
        return self._position

    def start(self, engine: Engine) -> None:
        pass

    def on_command(
        self, seq: int, ts_ns: int, command: c.Command, events: list[e.Event], engine: Engine
    ) -> None:
        self.chain.entries(seq, events, engine, self._pending)

    def write_file(self) -> None:
        """Append the pending entries to the file and fsync (before the SQL commit)."""
        if self._pending:
            self._file.write(b"".join(_entry_line(entry) for entry in self._pending))
            self._file.flush()
            os.fsync(self._file.fileno())

    def commit(self, seq: int, ts_ns: int) -> None:
        pending = self._pending
        self.write_file()
        with self.db.begin() as conn:
            db.insert_rows(
                conn, "audit_log", ("idx", "seq", "kind", "content", "prev_hash", "hash"),
                [(x.idx, x.seq, x.kind, x.content, x.prev_hash, x.hash) for x in pending],
            )  # fmt: skip
            db.upsert_rows(
                conn, "projector_state", ("name", "last_seq", "last_ts_ns"), ("name",),
                [(self.name, seq, ts_ns)],
            )  # fmt: skip
        self._position = seq
        self._pending = []

    def close(self) -> None:
        self._file.close()
        self.db.dispose()


# ------------------------------------------------------------------------------------------
# verification
# ------------------------------------------------------------------------------------------
class Tampered(msgspec.Struct, frozen=True, kw_only=True):
    """The first stored entry that differs from the chain recomputed from the journal."""

    store: str  # "file" or "sql"
    idx: int
    seq: int
    field: str  # e.g. "content.amount_minor", "hash", "kind", "missing", "extra"
    expected: str
    found: str


class VerifyReport(msgspec.Struct, frozen=True, kw_only=True):
    entries: int  # recomputed from the journal
    anchors: int
    last_seq: int
    file_entries: int
    sql_entries: int
    tampered: list[Tampered]

    @property
    def ok(self) -> bool:
        return not self.tampered


def _field_difference(expected: AuditEntry, found: AuditEntry) -> tuple[str, str, str] | None:
    for name in ("idx", "seq", "kind"):
        want, got = getattr(expected, name), getattr(found, name)
        if want != got:
            return name, str(want), str(got)
    if expected.content != found.content:
        try:
            want_fields = json.loads(expected.content)
            got_fields = json.loads(found.content)
        except ValueError:
            return "content", expected.content, found.content
        if isinstance(got_fields, dict):
            for key in sorted(set(want_fields) | set(got_fields)):
                if want_fields.get(key) != got_fields.get(key):
                    return (f"content.{key}", json.dumps(want_fields.get(key)),
                            json.dumps(got_fields.get(key)))  # fmt: skip
        return "content", expected.content, found.content
    for name in ("prev_hash", "hash"):
        want, got = getattr(expected, name), getattr(found, name)
        if want != got:
            return name, want, got
    return None


def _compare(
    store: str, expected: list[AuditEntry], found: list[AuditEntry | str]
) -> Tampered | None:
    for index, want in enumerate(expected):
        if index >= len(found):
            return Tampered(store=store, idx=want.idx, seq=want.seq, field="missing",
                            expected=want.hash, found="")  # fmt: skip
        got = found[index]
        if isinstance(got, str):
            return Tampered(store=store, idx=want.idx, seq=want.seq, field="line",
                            expected=want.hash, found=got)  # fmt: skip
        difference = _field_difference(want, got)
        if difference is not None:
            field, want_value, got_value = difference
            return Tampered(store=store, idx=want.idx, seq=want.seq, field=field,
                            expected=want_value, found=got_value)  # fmt: skip
    if len(found) > len(expected):
        extra = found[len(expected)]
        idx = extra.idx if isinstance(extra, AuditEntry) else len(expected) + 1
        seq = extra.seq if isinstance(extra, AuditEntry) else 0
        return Tampered(store=store, idx=idx, seq=seq, field="extra", expected="",
                        found=str(extra))  # fmt: skip
    return None


def sql_entries(url: str) -> list[AuditEntry | str]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT idx, seq, kind, content, prev_hash, hash FROM audit_log ORDER BY idx"
                )
            ).all()
    finally:
        engine.dispose()
    return [AuditEntry(idx=int(r[0]), seq=int(r[1]), kind=str(r[2]), content=str(r[3]),
                       prev_hash=str(r[4]), hash=str(r[5])) for r in rows]  # fmt: skip


def verify(
    data_dir: Path,
    url: str | None = None,
    journal: JournalSource | None = None,
    anchor_every: int = DEFAULT_ANCHOR_EVERY,
) -> VerifyReport:
    """Recompute the chain from the journal (seq 1 to the audit's position) and compare both
    stores entry by entry."""
    data_dir = Path(data_dir)
    url = url or db.default_url(data_dir)
    stored_sql = sql_entries(url)
    stored_file = list(read_file(data_dir / AUDIT_DIR / AUDIT_FILE))
    engine = db.make_engine(url)
    with engine.connect() as conn:
        position = int(conn.execute(
            sa.text("SELECT last_seq FROM projector_state WHERE name = :n"), {"n": SINK_NAME}
        ).scalar() or 0)  # fmt: skip
    engine.dispose()
    replayer = Replayer(journal or FileJournalTail(data_dir / "journal"), engine_config(data_dir))
    chain = ChainBuilder(anchor_every)
    expected: list[AuditEntry] = []

    def collect(seq: int, ts: int, cmd: c.Command, events: list[e.Event], eng: Engine) -> None:
        chain.entries(seq, events, eng, expected)

    replayer.pump(collect, until_seq=position)
    tampered = [
        t for t in (_compare("file", expected, stored_file), _compare("sql", expected, stored_sql))
        if t is not None
    ]  # fmt: skip
    return VerifyReport(
        entries=len(expected),
        anchors=sum(1 for x in expected if x.kind == ANCHOR),
        last_seq=replayer.seq,
        file_entries=len(stored_file),
        sql_entries=len(stored_sql),
        tampered=tampered,
    )


def verify_chain(entries: list[AuditEntry]) -> Tampered | None:
    """Links and hashes only (no journal): the first entry whose hash does not recompute."""
    prev = GENESIS
    for index, entry in enumerate(entries, 1):
        if entry.idx != index:
            return Tampered(store="chain", idx=entry.idx, seq=entry.seq, field="idx",
                            expected=str(index), found=str(entry.idx))  # fmt: skip
        if entry.prev_hash != prev:
            return Tampered(store="chain", idx=entry.idx, seq=entry.seq, field="prev_hash",
                            expected=prev, found=entry.prev_hash)  # fmt: skip
        digest = entry_hash(prev, entry.idx, entry.seq, entry.kind, entry.content)
        if digest != entry.hash:
            return Tampered(store="chain", idx=entry.idx, seq=entry.seq, field="hash",
                            expected=digest, found=entry.hash)  # fmt: skip
        prev = digest
    return None


# ------------------------------------------------------------------------------------------
# operator actions outside the journal (e.g. an override of a reconciliation check)
# ------------------------------------------------------------------------------------------
OPERATOR_FILE = "operator.jsonl"


def append_operator_action(data_dir: Path, kind: str, content: dict[str, Any]) -> AuditEntry:
    """Append one entry to the operator log, its own hash chain (seq 0: not a journal command),
    fsynced before returning."""
    path = Path(data_dir) / AUDIT_DIR / OPERATOR_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    last_idx, last_hash = _cut_file(path, 0)
    chain = ChainBuilder(last_idx=last_idx, last_hash=last_hash)
    out: list[AuditEntry] = []
    chain._append(out, 0, kind, canonical(content))
    with open(path, "ab") as handle:
        handle.write(_entry_line(out[0]))
        handle.flush()
        os.fsync(handle.fileno())
    return out[0]


def operator_actions(data_dir: Path) -> list[AuditEntry]:
    path = Path(data_dir) / AUDIT_DIR / OPERATOR_FILE
    return [entry for entry in read_file(path) if isinstance(entry, AuditEntry)]
