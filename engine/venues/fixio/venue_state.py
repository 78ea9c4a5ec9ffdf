"""The FIX venue server's own record on disk: every order it acknowledged and every fill.

Rules:

- The FIX session stores (sequence numbers, sent and parked messages) are
  `sessions.sqlite3` next to it, one `SqliteSessionStore` per counterparty
  (`session_store`), checked when the state is opened.
- One SQLite file, `venue.sqlite3`, in the state directory (stdlib `sqlite3`, WAL,
  synchronous=NORMAL): a killed process loses nothing committed; a power cut may lose
  the last commits (the price of not syncing per order).
- Writes are batched: the server marks an order changed (`order_changed`), adds ClOrdIDs
  (`add_id`) and fills (`add_fill`) as it goes, and calls `commit()` once per event-loop
  iteration; an order changed five times in one batch is written once. Never one commit
  per order.
- The file says what it is (`PRAGMA application_id`, schema version in `user_version`).
  A file that is not SQLite, or is another program's database, or a newer schema, or
  fails SQLite's `quick_check`, or holds a row that is not an order (a status FIX does
  not define, a quantity that is not a number), is refused with `VenueStateError`
  naming the file and what is wrong; it is never overwritten. An empty file (or none)
  becomes a new state.
- One venue process per directory: an exclusive lock on `venue.lock` (held until the
  process ends) refuses a second one, which would take the same ClOrdIDs twice.
- A commit that fails keeps its changes for the next one (a lock or a full disk may
  pass) and says why in `failing` until one succeeds.
"""

from __future__ import annotations

import math
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from engine.errors import ConfigurationError, ExecdeskError
from engine.models import Fill
from engine.venues.fix.tags import OrdStatus
from engine.venues.fixio.store import SqliteSessionStore, open_session_database

STATE_FILE = "venue.sqlite3"
SESSIONS_FILE = "sessions.sqlite3"  # the FIX session stores (engine.venues.fixio.store)
APPLICATION_ID = 0x45584456  # "EXDV": an execdesk venue's state
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE orders (
    key TEXT PRIMARY KEY, venue TEXT NOT NULL, owner TEXT NOT NULL, symbol TEXT NOT NULL,
    side TEXT NOT NULL, quantity REAL NOT NULL, ord_type TEXT NOT NULL, price REAL, tif TEXT NOT NULL,
    status TEXT NOT NULL, cum_qty REAL NOT NULL, avg_px REAL NOT NULL, text TEXT
);
CREATE TABLE cl_ord_ids (cl_ord_id TEXT PRIMARY KEY, key TEXT NOT NULL);
CREATE TABLE fills (
    exec_id TEXT PRIMARY KEY, key TEXT NOT NULL, price REAL NOT NULL, quantity REAL NOT NULL,
    fee REAL NOT NULL, liquidity TEXT NOT NULL, trade_id TEXT, ts REAL NOT NULL
);
CREATE INDEX fills_by_order ON fills (key);
"""

_UPSERT_ORDER = (
    "INSERT INTO orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (key) DO UPDATE SET "
    "quantity=excluded.quantity, price=excluded.price, status=excluded.status, cum_qty=excluded.cum_qty, "
    "avg_px=excluded.avg_px, text=excluded.text"
)


class VenueStateError(ExecdeskError):
    """The state directory or file cannot be used (corrupt, another program's, unwritable)."""


class _OrderLike(Protocol):
    key: str
    owner: str
    symbol: str
    side: str
    quantity: float
    ord_type: str
    price: float | None
    tif: str
    status: Any
    cum_qty: float
    text: str | None

    @property
    def avg_px(self) -> float: ...

    @property
    def venue(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One order as stored: FIX codes for side, type, tif and status."""

    key: str
    venue: str
    owner: str
    symbol: str
    side: str
    quantity: float
    ord_type: str
    price: float | None
    tif: str
    status: str
    cum_qty: float
    avg_px: float
    text: str | None
    cl_ord_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FillRecord:
    exec_id: str
    key: str
    price: float
    quantity: float
    fee: float
    liquidity: str
    trade_id: str | None
    ts: float


class VenueState:
    """The server's orders and fills in `directory`/venue.sqlite3 (see the module rules)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / STATE_FILE
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VenueStateError(f"state directory {self.directory} cannot be created: {exc}") from None
        if not self.directory.is_dir():
            raise VenueStateError(f"state directory {self.directory} is not a directory")
        self._lock = _lock_directory(self.directory)
        self.failing: str | None = None  # why the last commit failed (None: it did not)
        try:
            self._conn = self._open()
        except BaseException:
            self._lock.close()
            raise
        # The session stores' file is checked now, so a bad one stops the start, not a Logon;
        # its one connection serves every counterparty's store.
        try:
            self._sessions = open_session_database(self.directory / SESSIONS_FILE)
        except ConfigurationError as exc:
            self._conn.close()
            self._lock.close()
            raise VenueStateError(str(exc)) from None
        self._orders: dict[str, _OrderLike] = {}
        self._ids: list[tuple[str, str]] = []
        self._fills: list[tuple[Any, ...]] = []

    def _open(self) -> sqlite3.Connection:
        path = self.path
        if path.exists() and not path.is_file():
            raise VenueStateError(f"state file {path} is not a regular file")
        try:
            conn = sqlite3.connect(path, check_same_thread=False)
        except sqlite3.Error as exc:
            raise VenueStateError(f"state file {path} cannot be opened: {exc}") from None
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise VenueStateError(
                f"state file {path} is not an execdesk venue state ({exc}); it was left as it is: "
                "point --state at another directory or move the file away") from None
        if app_id == 0 and not tables:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.commit()
            except sqlite3.Error as exc:
                conn.close()
                raise VenueStateError(f"state file {path} cannot be written: {exc}") from None
        elif app_id != APPLICATION_ID:
            conn.close()
            raise VenueStateError(
                f"state file {path} is another program's SQLite database (application_id {app_id:#x}, tables "
                f"{', '.join(tables) or 'none'}); it was left as it is: point --state at another directory")
        elif version != SCHEMA_VERSION:
            conn.close()
            raise VenueStateError(
                f"state file {path} has schema version {version}; this execdesk reads version {SCHEMA_VERSION}")
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            check = str(exc)
        if check != "ok":
            conn.close()
            raise VenueStateError(
                f"state file {path} is damaged (SQLite quick_check: {check}); it was left as it is: "
                "restore it from a copy or point --state at another directory")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def session_store(self, comp_id: str, counterparty: str) -> SqliteSessionStore:
        """The FIX session store of `counterparty` (ours is `comp_id`), in the same directory."""
        return SqliteSessionStore(self.directory / SESSIONS_FILE, f"{comp_id}->{counterparty}", db=self._sessions)

    # -- writing (batched) -----------------------------------------------------------------------

    def order_changed(self, order: _OrderLike) -> None:
        self._orders[order.key] = order

    def add_id(self, cl_ord_id: str, order: _OrderLike) -> None:
        self._ids.append((cl_ord_id, order.key))
        self._orders[order.key] = order

    def add_fill(self, key: str, exec_id: str, fill: Fill) -> None:
        self._fills.append((exec_id, key, fill.price, fill.quantity, fill.fee, fill.liquidity.value,
                            fill.trade_id or None, fill.timestamp))

    @property
    def pending(self) -> int:
        """Changes not committed yet."""
        return len(self._orders) + len(self._ids) + len(self._fills)

    def commit(self) -> None:
        """Write every change since the last commit in one transaction."""
        if not (self._orders or self._ids or self._fills):
            return
        orders, ids, fills = self._orders, self._ids, self._fills
        conn = self._conn
        try:
            with conn:
                if orders:
                    conn.executemany(_UPSERT_ORDER, [_order_row(o) for o in orders.values()])
                if ids:
                    conn.executemany("INSERT OR IGNORE INTO cl_ord_ids VALUES (?,?)", ids)
                if fills:
                    conn.executemany("INSERT OR IGNORE INTO fills VALUES (?,?,?,?,?,?,?,?)", fills)
        except sqlite3.Error as exc:
            # Kept for the next commit; the server refuses new orders while this is set.
            self.failing = f"the venue cannot save its state in {self.path}: {exc}"
            raise VenueStateError(self.failing) from None
        self._orders, self._ids, self._fills = {}, [], []
        self.failing = None

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._conn.close()
            self._sessions.close()
            self._lock.close()

    # -- reading ----------------------------------------------------------------------------------

    def load_orders(self) -> list[OrderRecord]:
        """Every order stored, oldest first, with its ClOrdIDs in the order they were taken."""
        ids: dict[str, list[str]] = {}
        for cid, key in self._conn.execute("SELECT cl_ord_id, key FROM cl_ord_ids ORDER BY rowid"):
            ids.setdefault(key, []).append(cid)
        out = []
        for row in self._conn.execute("SELECT * FROM orders ORDER BY rowid"):
            key = row[0]
            record = OrderRecord(*row, cl_ord_ids=tuple(ids.get(key) or (key,)))
            problem = _record_problem(record)
            if problem is not None:
                raise VenueStateError(f"state file {self.path}: order {key!r} {problem}; the file was left as it is")
            out.append(record)
        return out

    def fills(self, key: str | None = None) -> list[FillRecord]:
        query = "SELECT * FROM fills" + (" WHERE key = ?" if key is not None else "") + " ORDER BY rowid"
        return [FillRecord(*row) for row in self._conn.execute(query, (key,) if key is not None else ())]


_STATUSES = frozenset(s.value for s in OrdStatus)


def _record_problem(r: OrderRecord) -> str | None:
    if r.status not in _STATUSES:
        return f"has status {r.status!r}, which FIX does not define"
    for name in ("quantity", "cum_qty", "avg_px") + (("price",) if r.price is not None else ()):
        value = getattr(r, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            return f"has {name} {value!r}, which is not a quantity"
    if not all(isinstance(v, str) and v for v in (r.key, r.venue, r.owner, r.symbol, r.side, r.ord_type, r.tif)):
        return "has an empty or non-text identifier field"
    return None


class _DirectoryLock:
    """An exclusive lock on `directory`/venue.lock for as long as it is open."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "venue.lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # not a POSIX system: no lock to take (documented)
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(self._fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(self._fd)
            raise VenueStateError(
                f"state directory {directory} is in use by another execdesk venue (pid {holder}); "
                "one venue process per state directory") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = -1


def _lock_directory(directory: Path) -> _DirectoryLock:
    try:
        return _DirectoryLock(directory)
    except OSError as exc:
        raise VenueStateError(f"state directory {directory} cannot be locked: {exc}") from None


def _order_row(o: _OrderLike) -> tuple[Any, ...]:
    status = o.status
    return (o.key, o.venue.name, o.owner, o.symbol, o.side, o.quantity, o.ord_type, o.price, o.tif,
            getattr(status, "value", status), o.cum_qty, o.avg_px, o.text)


__all__ = ["FillRecord", "OrderRecord", "VenueState", "VenueStateError", "STATE_FILE"]
