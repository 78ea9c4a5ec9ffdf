"""The order journal: every order and every order event on disk, in SQLite (stdlib `sqlite3`).

An order is written before it is sent (`record_order`, then `commit` once per batch:
group commit, so one fsync-free WAL append covers many orders); everything that
happens to it after is written by `subscriber`, the callback of a lossless
subscription to the engine's one event stream, in batched transactions. Finished
orders answer `status` from here once the engine's memory has forgotten them, and
`open_orders` is what a restart reconciles with the venues.

Rules:

* Nothing is on disk before `commit()` returns. `record_order` and `subscriber` only
  queue a row (a few microseconds, no I/O); `subscriber` commits by itself every
  `batch` events, and `idle` (its dispatcher's, when the stream pauses) within
  `max_delay` (20 ms): an event is on disk within about that long at any rate. `commit()`
  writes every queued row, orders first, in one transaction.
  A caller that must not send an order before it is on disk commits before sending.
* WAL mode with `synchronous=NORMAL` survives a kill -9 of the process (what was
  committed is there when the file is reopened), not a power cut or an OS crash;
  `durable=True` asks for `FULL` (an fsync per commit), which survives those too.
* Safe from any thread. One lock guards the queued rows, held only to append or to take
  them all, so `record_order` on the engine's path never waits for a transaction
  another thread is writing; a second lock lets one transaction or read use the
  connection at a time. Reads (`status`, `open_orders`, `fills`) commit what is queued
  first, so they see every event handed to the journal (when that commit fails, they
  read what is on disk). A commit that fails (disk full) puts its rows back in the
  queue and raises; the next commit writes them.
* A file that is not ours (another application's database, a corrupt or truncated
  file, one of a newer or an older schema version) is refused with
  `ConfigurationError` naming the file, and never written to.
* One writer per file: an open journal holds an exclusive lock on `<file>-lock` beside
  it (the holder's pid inside) until it is closed or its process dies. A second
  `Journal` on the file, in this process or another (a second desk), is refused with
  `ConfigurationError`: its recovery would end the first one's working orders. Reading
  the file with `sqlite3` takes no such lock.
* An order's latest status never goes back from a final one (a late event for a
  finished order is kept in `events` but does not change `orders`).

Tables (read the file with `sqlite3 journal.db`; `PRAGMA application_id` is 0x45584a4e,
"EXJN", `PRAGMA user_version` the schema version):

``orders``, one row per order (WITHOUT ROWID), keyed by client_order_id: the id every
event names the order by (the order's own id unless it gave a client order id):
    client_order_id, id, symbol, side ('BUY'/'SELL'), type ('LIMIT', 'TWAP'...),
    quantity, price, time_in_force, expire_at (epoch seconds), metadata (JSON text, NULL
    when empty), venue, parent_id (set for a child of an algorithm or split),
    recorded_at (epoch seconds: when `record_order` was called, or the first event's
    time for an order the journal learnt of from its events, such as a router's
    child), status (the latest, 'PENDING_NEW' until an event says otherwise),
    filled_quantity, reason (the latest refusal or cancel reason), updated_at (the
    latest event's time), final (1 once the status is FILLED, CANCELED, REJECTED or
    EXPIRED). A partial index holds the open ones. An amend changes quantity and price
    here (the event keeps what was asked).

``events``, one row per event, in the order they were published (seq):
    seq, ts (the event's ts_event), kind, order_id (the client order id), parent_id, venue, status, price,
    quantity, filled_quantity, fee, liquidity, trade_id, reason. Kinds and what they fill:

    - submitted: quantity, price (as sent); accepted; pending_cancel
    - filled: price, quantity, fee, liquidity, trade_id of the fill, ts its time,
      filled_quantity the order's total after it
    - denied (by the engine), rejected (by the venue), cancel_rejected: reason
    - canceled, expired: filled_quantity, reason
    - amended: quantity, price (the new terms)
    - updated (an algorithm parent's progress): quantity, filled_quantity, price (the
      average price), reason (its detail text)
    - halted, resumed, venue_enabled, venue_disabled, venue_session, breaker,
      engine_error, recovered: no order; venue where there is one, reason the event's text
      (breaker: "old -> new: reason"; venue_session: "state: detail")

    An order's fills: ``SELECT * FROM events WHERE order_id=? AND kind='filled'`` (a
    parent's: ``parent_id=?``); its average price: ``sum(price*quantity)/sum(quantity)``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from .errors import ConfigurationError
from .events import (
    BreakerStateChanged,
    EngineError,
    Event,
    Halted,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderCancelRejected,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderPendingCancel,
    OrderRejected,
    OrderSubmitted,
    OrderUpdated,
    Recovered,
    Resumed,
    VenueDisabled,
    VenueEnabled,
    VenueSessionChanged,
)
from .models import Fill, Liquidity, Order, OrderResult, OrderSide, OrderStatus
from .sqlite_file import open_database

log = logging.getLogger("execdesk.journal")

# A journal that cannot commit (disk full) says so at most this often.
FAILURE_LOG_S = 10.0

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "Journal", "JournaledOrder"]

#: PRAGMA application_id of an execdesk order journal ("EXJN").
APPLICATION_ID = 0x45584A4E
SCHEMA_VERSION = 1
#: The oldest schema version this one reads (no older one exists yet).
OLDEST_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    symbol TEXT,
    side TEXT,
    type TEXT,
    quantity REAL,
    price REAL,
    time_in_force TEXT,
    expire_at REAL,
    metadata TEXT,
    venue TEXT,
    parent_id TEXT,
    recorded_at REAL,
    status TEXT NOT NULL,
    filled_quantity REAL NOT NULL DEFAULT 0,
    reason TEXT,
    updated_at REAL,
    final INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS orders_open ON orders (client_order_id) WHERE final = 0;
CREATE INDEX IF NOT EXISTS orders_by_id ON orders (id) WHERE id != client_order_id;
CREATE INDEX IF NOT EXISTS orders_by_parent ON orders (parent_id) WHERE parent_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    order_id TEXT,
    parent_id TEXT,
    venue TEXT,
    status TEXT,
    price REAL,
    quantity REAL,
    filled_quantity REAL,
    fee REAL,
    liquidity TEXT,
    trade_id TEXT,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS events_fills ON events (order_id) WHERE kind = 'filled';
CREATE INDEX IF NOT EXISTS events_child_fills ON events (parent_id) WHERE kind = 'filled' AND parent_id IS NOT NULL;
"""

_FINAL = ("FILLED", "CANCELED", "REJECTED", "EXPIRED")

# Binding None costs the sqlite3 module an adapter lookup (~0.3 us a column, more than a
# number or a text): the common rows use statements that leave their empty columns out
# (NULL by default), the same rows as the full statements would write.
_ORDER_CONFLICT = """
ON CONFLICT (client_order_id) DO UPDATE SET
    id = excluded.id, symbol = excluded.symbol, side = excluded.side,
    type = excluded.type, quantity = excluded.quantity, price = excluded.price,
    time_in_force = excluded.time_in_force, expire_at = excluded.expire_at, metadata = excluded.metadata,
    venue = coalesce(excluded.venue, venue), parent_id = coalesce(excluded.parent_id, parent_id)
"""

_INSERT_ORDER = """
INSERT INTO orders (client_order_id, id, symbol, side, type, quantity, price, time_in_force, expire_at,
                    metadata, venue, parent_id, recorded_at, status)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'PENDING_NEW')""" + _ORDER_CONFLICT

# An order with no price, expiry, metadata, venue or parent (a smart-routed market order).
_INSERT_PLAIN_ORDER = """
INSERT INTO orders (client_order_id, id, symbol, side, type, quantity, time_in_force, recorded_at, status)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'PENDING_NEW')""" + _ORDER_CONFLICT

# Events rows carry their seq: a commit numbers its events in the order they were
# published (after the file's last), so rows grouped by statement keep that order.
_INSERT_EVENT = """
INSERT INTO events (seq, ts, kind, order_id, parent_id, venue, status, price, quantity, filled_quantity, fee,
                    liquidity, trade_id, reason)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# The three events of most orders, without a parent: accepted; submitted without a
# price (a market order); a fill (with its fill's terms) and no reason.
_INSERT_ACCEPTED = "INSERT INTO events (seq, ts, kind, order_id, venue, status) VALUES (?, ?, 'accepted', ?, ?, ?)"
_INSERT_SUBMITTED = ("INSERT INTO events (seq, ts, kind, order_id, venue, status, quantity) "
                     "VALUES (?, ?, 'submitted', ?, ?, ?, ?)")
_INSERT_FILL = ("INSERT INTO events (seq, ts, kind, order_id, venue, status, price, quantity, filled_quantity, fee, "
                "liquidity, trade_id) VALUES (?, ?, 'filled', ?, ?, ?, ?, ?, ?, ?, ?, ?)")

# One row per order event: the order's latest state. A submitted event for an order
# never recorded (a child the router made) makes its row from the event's terms; an
# amend changes quantity and price. Parameters: client order id, symbol, side, type, quantity, price,
# venue, parent_id, ts (the latest), status, filled_quantity, reason, final, amended (0/1),
# recorded_at (the first event's ts).
_UPSERT_STATUS = """
INSERT INTO orders (client_order_id, id, symbol, side, type, quantity, price, venue, parent_id, recorded_at,
                    updated_at, status, filled_quantity, reason, final)
VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?15, ?9, ?10, coalesce(?11, 0), ?12, ?13)
ON CONFLICT (client_order_id) DO UPDATE SET
    symbol = coalesce(symbol, excluded.symbol),
    side = coalesce(side, excluded.side),
    type = coalesce(type, excluded.type),
    quantity = CASE WHEN ?14 OR quantity IS NULL THEN coalesce(excluded.quantity, quantity) ELSE quantity END,
    price = CASE WHEN ?14 THEN coalesce(excluded.price, price) ELSE coalesce(price, excluded.price) END,
    venue = coalesce(excluded.venue, venue),
    parent_id = coalesce(parent_id, excluded.parent_id),
    status = CASE WHEN final THEN status ELSE excluded.status END,
    filled_quantity = max(filled_quantity, coalesce(?11, 0)),
    reason = CASE WHEN final THEN reason ELSE coalesce(excluded.reason, reason) END,
    updated_at = excluded.updated_at,
    final = max(final, excluded.final)
"""


def _leaving_out(sql: str, params: tuple[int, ...]) -> str:
    """`sql` with its numbered parameters `params` made NULL and the rest renumbered."""
    keep = [i for i in range(1, 1 + max(int(n) for n in re.findall(r"\?(\d+)", sql))) if i not in params]
    number = {old: new for new, old in enumerate(keep, 1)}
    return re.sub(r"\?(\d+)", lambda m: "NULL" if int(m[1]) in params else f"?{number[int(m[1])]}", sql)


# The status row of an order with no price, parent or reason (a smart-routed market order
# that filled), without the three NULLs: the same upsert.
_UPSERT_PLAIN_STATUS = _leaving_out(_UPSERT_STATUS, (6, 8, 12))


class JournaledOrder(NamedTuple):
    """An order as the journal knows it: `order` rebuilt (None when the journal only saw
    events that do not carry all its terms), its venue, latest status and filled quantity."""

    order_id: str
    client_order_id: str
    order: Order | None
    venue: str | None
    status: OrderStatus
    filled_quantity: float
    recorded_at: float | None = None


# Rows read an enum's text as `member._value_`: the `.value` property is a Python-level
# descriptor, a dozen calls an order on the journal's path.


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _order_event(kind: str, event: Any, price: Any = None, quantity: Any = None, filled: Any = None,
                 reason: Any = None) -> tuple[Any, ...]:
    return (event.ts_event, kind, event.order_id, event.parent_id, event.venue, event.status._value_, price,
            quantity, filled, None, None, None, reason)


def _filled(event: OrderFilled) -> tuple[Any, ...]:
    fill = event.fill
    if fill is None:
        return _order_event("filled", event, filled=event.filled_quantity)
    return (fill.timestamp, "filled", event.order_id, event.parent_id, event.venue or fill.exchange_id,
            event.status._value_, fill.price, fill.quantity, event.filled_quantity, fill.fee, fill.liquidity._value_,
            fill.trade_id, None)


def _other(kind: str, event: Any, venue: str | None = None, reason: str | None = None) -> tuple[Any, ...]:
    return (event.ts_event, kind, None, None, venue, None, None, None, None, None, None, None, reason)


# An event's class -> its events row. Looked up by exact class (one dict get per event).
_ROWS: dict[type, Callable[[Any], tuple[Any, ...]]] = {
    OrderSubmitted: lambda e: _order_event("submitted", e, e.price, e.quantity),
    OrderAccepted: lambda e: _order_event("accepted", e),
    OrderDenied: lambda e: _order_event("denied", e, reason=e.reason),
    OrderRejected: lambda e: _order_event("rejected", e, reason=e.reason),
    OrderFilled: _filled,
    OrderPendingCancel: lambda e: _order_event("pending_cancel", e),
    OrderCanceled: lambda e: _order_event("canceled", e, filled=e.filled_quantity, reason=e.reason),
    OrderExpired: lambda e: _order_event("expired", e, filled=e.filled_quantity, reason=e.reason),
    OrderAmended: lambda e: _order_event("amended", e, e.price, e.quantity),
    OrderUpdated: lambda e: _order_event("updated", e, e.average_price, e.quantity, e.filled_quantity,
                                         e.detail or None),
    OrderCancelRejected: lambda e: _order_event("cancel_rejected", e, reason=e.reason),
    Halted: lambda e: _other("halted", e, reason=e.reason),
    Resumed: lambda e: _other("resumed", e),
    VenueEnabled: lambda e: _other("venue_enabled", e, e.venue),
    VenueDisabled: lambda e: _other("venue_disabled", e, e.venue, e.reason or None),
    VenueSessionChanged: lambda e: _other("venue_session", e, e.venue,
                                          f"{e.state}: {e.detail}" if e.detail else e.state),
    BreakerStateChanged: lambda e: _other("breaker", e, e.venue, f"{e.old_state} -> {e.new_state}: {e.reason}"),
    EngineError: lambda e: _other("engine_error", e, reason=f"{e.where}: {e.message}"),
    Recovered: lambda e: _other("recovered", e, reason=e.summary),
}


def _status_row(event: OrderEvent, row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The orders upsert's parameters for an order event and its events row."""
    status = event.status._value_
    submitted = event.__class__ is OrderSubmitted
    amended = event.__class__ is OrderAmended
    symbol = side = kind = quantity = price = None
    if submitted:
        e: Any = event
        symbol = e.symbol or None
        side = e.side._value_ if e.side is not None else None
        kind = e.order_type._value_ if e.order_type is not None else None
        quantity, price = e.quantity or None, e.price
    elif amended:
        quantity, price = row[7] or None, row[6]
    return (event.order_id, symbol, side, kind, quantity, price, event.venue, event.parent_id, event.ts_event,
            status, row[8], row[12] if event.__class__ is not OrderUpdated or status in _FINAL else None,
            1 if status in _FINAL else 0, 1 if amended else 0, event.ts_event)


def _merge(old: tuple[Any, ...], new: tuple[Any, ...]) -> tuple[Any, ...]:
    """Two status rows of one order, in the order they came, as one: the upsert's rule,
    applied in memory, so a batch writes each order's row once."""
    cid, symbol, side, kind, quantity, price, venue, parent_id, _, status, filled, reason, final, amended, \
        recorded = old
    n_quantity, n_price, n_filled, n_amended = new[4], new[5], new[10], new[13]
    if (n_amended or quantity is None) and n_quantity is not None:
        quantity = n_quantity
    if n_price is not None and (n_amended or price is None):
        price = n_price
    if not final:
        status = new[9]
        if new[11] is not None:
            reason = new[11]
    if n_filled is not None and (filled is None or n_filled > filled):
        filled = n_filled
    return (cid, symbol or new[1], side or new[2], kind or new[3], quantity, price, new[6] or venue,
            parent_id or new[7], new[8], status, filled, reason, final or new[12], amended or n_amended, recorded)


def _write_orders(db: sqlite3.Connection, orders: list[tuple[Any, ...]]) -> None:
    """Insert record_order rows: those with no price, expiry, metadata, venue or parent by
    the plain statement, the rest by the full one (all by the full one, in the order they
    came, when an order was recorded twice: the later row must land last)."""
    plain = [row[:6] + (row[7], row[12]) for row in orders
             if row[6] is None and row[8] is None and row[9] is None and row[10] is None and row[11] is None]
    if len(plain) == len(orders):
        db.executemany(_INSERT_PLAIN_ORDER, plain)
    elif not plain or len({row[0] for row in orders}) < len(orders):
        db.executemany(_INSERT_ORDER, orders)
    else:
        db.executemany(_INSERT_PLAIN_ORDER, plain)
        db.executemany(_INSERT_ORDER, [row for row in orders if not (
            row[6] is None and row[8] is None and row[9] is None and row[10] is None and row[11] is None)])


def _event_rows(events: list[Event], seq: int) -> tuple[list[tuple[str, list[tuple[Any, ...]]]],
                                                        dict[str, tuple[Any, ...]]]:
    """The rows of queued events, numbered from `seq` in the order they came: the events
    rows by statement, and the orders-table row each order's events make (one per order).
    An event whose row cannot be made is logged and left out (it would fail every commit)."""
    generic: list[tuple[Any, ...]] = []
    accepted: list[tuple[Any, ...]] = []
    submitted: list[tuple[Any, ...]] = []
    fills: list[tuple[Any, ...]] = []
    statuses: dict[str, tuple[Any, ...]] = {}
    rows = _ROWS
    for event in events:
        cls = event.__class__
        try:
            row = rows[cls](event)
            status = _status_row(event, row) if isinstance(event, OrderEvent) else None  # type: ignore[arg-type]
        except Exception:
            log.exception("the journal left out an event it could not write: %r", event)
            continue
        if row[3] is not None:
            generic.append((seq, *row))  # a child's: the full statement
        elif cls is OrderAccepted:
            accepted.append((seq, row[0], row[2], row[4], row[5]))
        elif cls is OrderFilled and row[6] is not None and row[12] is None:
            fills.append((seq, row[0], row[2], row[4], row[5], row[6], row[7], row[8], row[9], row[10], row[11]))
        elif cls is OrderSubmitted and row[6] is None:
            submitted.append((seq, row[0], row[2], row[4], row[5], row[7]))
        else:
            generic.append((seq, *row))
        seq += 1
        if status is not None:
            old = statuses.get(status[0])
            statuses[status[0]] = status if old is None else _merge(old, status)
    groups = [(_INSERT_EVENT, generic), (_INSERT_SUBMITTED, submitted), (_INSERT_ACCEPTED, accepted),
              (_INSERT_FILL, fills)]
    return groups, statuses


def _lock_file(path: Path) -> int:
    """An exclusive lock on `<path>-lock` (its descriptor), or ConfigurationError naming
    the process that holds it. No lock on a system without `fcntl` (not POSIX)."""
    lock = path.with_name(path.name + "-lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigurationError(f"the order journal {str(path)!r} cannot be locked ({exc})") from None
    try:
        import fcntl
    except ImportError:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise ConfigurationError(
            f"the order journal {str(path)!r} is in use by another execdesk (pid {holder}): one engine per "
            "journal; stop it, or give this one another --journal") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


class Journal:
    """`Journal(path, durable=False, batch=512, max_delay=0.02)`: open (or create) the
    journal at `path`.

    `batch`: `subscriber` commits by itself once this many rows are queued; `max_delay`:
    once its subscription is idle (`idle`), what is queued is committed at most this
    many seconds after the last commit."""

    def __init__(self, path: Path | str, *, durable: bool = False, batch: int = 512,
                 max_delay: float = 0.02) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.path = Path(path)
        self.durable = durable
        self.batch = batch
        self._db = open_database(self.path, application_id=APPLICATION_ID, schema=_SCHEMA,
                                 version=SCHEMA_VERSION, what="order journal", durable=durable,
                                 oldest=OLDEST_SCHEMA_VERSION, verify=True)
        self._lock_fd = -1
        try:
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(orders)")}
            if not {"id", "status", "final"} <= columns:
                raise ConfigurationError(
                    f"the order journal {str(self.path)!r} has no usable orders table; it was left untouched"
                )
            # Locked once the file is known to be ours (a refused file gets no lock file).
            self._lock_fd = _lock_file(self.path)
        except (sqlite3.DatabaseError, ConfigurationError) as exc:
            self._db.close()
            if isinstance(exc, ConfigurationError):
                raise
            raise ConfigurationError(f"the order journal {str(self.path)!r} is corrupt ({exc})") from None
        self._lock = threading.Lock()  # the queues, held for an append or a swap
        self._write_lock = threading.RLock()  # the connection: one transaction or read at a time
        self._orders: list[tuple[Any, ...]] = []
        # Events of a kind the schema knows, as they came: their rows are made when they
        # are committed (`_event_rows`), off the path that hands them over.
        self._events: list[Event] = []
        self.closed = False
        self.commits = 0
        self.max_delay = max_delay
        self._failure_logged = 0.0  # when a failing background commit was last logged (0: none failing)
        self._last_commit = time.monotonic()
        # Events handed to `subscriber` so far (kept or skipped), and who waits for a count
        # of them (`wait_committed`): only then does `subscriber` notify.
        self.received = 0
        self._received = threading.Condition(self._lock)
        self._waiting = 0

    # -- writing ---------------------------------------------------------------------------
    def record_order(self, order: Order, venue: str | None = None) -> None:
        """Queue `order` (and the venue it goes to, if chosen) for the next commit.

        Returns at once; the order is on disk when the next `commit()` returns."""
        metadata = json.dumps(order.metadata, separators=(",", ":"), default=str) if order.metadata else None
        row = (order.client_order_id or order.id, order.id, order.symbol, order.side._value_, order.type._value_, order.quantity,
               order.price, order.time_in_force._value_, order.expire_at, metadata, venue, order.parent_id,
               time.time())
        with self._lock:
            self._orders.append(row)

    def unrecord(self, order_ids: list[str]) -> None:
        """Drop the queued, uncommitted rows of these orders (by client order id): a
        write-ahead whose commit failed, whose orders were not sent after all."""
        drop = set(order_ids)
        with self._lock:
            self._orders = [row for row in self._orders if row[0] not in drop]

    def subscriber(self, event: Event) -> None:
        """Queue one event (the callback of a lossless subscription); commits every `batch`.
        An event of a kind this schema does not know (a newer engine's, display-only) is
        counted and skipped."""
        with self._lock:
            if event.__class__ in _ROWS:
                events = self._events
                events.append(event)
                full = len(events) + len(self._orders) >= self.batch
            else:
                full = False
            self._count_received()
        if full:
            self._commit_in_background()

    def _commit_in_background(self) -> None:
        """A commit the subscription's own thread makes: one that fails (disk full) keeps
        its rows for the next and is logged at most every FAILURE_LOG_S, not per event."""
        try:
            self.commit()
        except Exception as exc:
            now = time.monotonic()
            if now - self._failure_logged >= FAILURE_LOG_S:
                self._failure_logged = now
                log.error("the order journal %s cannot commit (%s); what it holds waits in memory (%d rows "
                          "now) and is written once it can", self.path, exc, self.pending)
            return
        if self._failure_logged:
            self._failure_logged = 0.0
            log.warning("the order journal %s commits again; nothing was lost", self.path)

    def idle(self) -> None:
        """The subscription has nothing more for now (its dispatcher's `on_idle`): commit
        what is queued once `max_delay` has passed since the last commit, so events reach
        the disk within about that long at any rate (at high rates `batch` commits first)."""
        if self.closed:
            return
        if (self._events or self._orders) and time.monotonic() - self._last_commit >= self.max_delay:
            self._commit_in_background()

    def _count_received(self) -> None:
        # The caller holds _lock (the condition's).
        self.received += 1
        if self._waiting:
            self._received.notify_all()

    def wait_committed(self, events: int, timeout: float | None = None) -> bool:
        """Block until `subscriber` has been handed `events` events in all (`received`),
        then commit: True once they are on disk, False if `timeout` passed first (then
        nothing was committed by this call). A writer that knows how many events it
        published to the journal's subscription waits here for them to be durable."""
        with self._received:
            self._waiting += 1
            try:
                if not self._received.wait_for(lambda: self.received >= events, timeout):
                    return False
            finally:
                self._waiting -= 1
        self.commit()
        return True

    def commit(self) -> None:
        """Write every order and event queued before the call in one transaction (no-op
        when none); on disk when it returns."""
        with self._write_lock:
            self._commit_locked()

    flush = commit

    @property
    def pending(self) -> int:
        """Rows queued and not yet committed."""
        return len(self._orders) + len(self._events)

    def _commit_locked(self) -> None:
        """Take the queued rows (the queue lock held only for the swap: `record_order`
        never waits for a transaction) and write them; the caller holds `_write_lock`,
        so transactions land in the order their rows were taken."""
        with self._lock:
            orders, events = self._orders, self._events
            if not (orders or events):
                return
            if self.closed:
                raise ConfigurationError(f"the order journal {str(self.path)!r} is closed")
            self._orders, self._events = [], []
        db = self._db
        try:
            db.execute("BEGIN")
            if orders:
                _write_orders(db, orders)
            if events:
                (last,) = db.execute("SELECT max(seq) FROM events").fetchone()
                groups, statuses = _event_rows(events, (last or 0) + 1)
                for sql, rows in groups:
                    if rows:
                        db.executemany(sql, rows)
                if statuses:
                    plain = [(r[0], r[1], r[2], r[3], r[4], r[6], r[8], r[9], r[10], r[12], r[13], r[14])
                             for r in statuses.values() if r[5] is None and r[7] is None and r[11] is None]
                    if plain:
                        db.executemany(_UPSERT_PLAIN_STATUS, plain)
                    if len(plain) < len(statuses):
                        db.executemany(_UPSERT_STATUS, [r for r in statuses.values()
                                                        if not (r[5] is None and r[7] is None and r[11] is None)])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed ROLLBACK must not hide why the commit failed
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            with self._lock:  # nothing is lost: the rows go back ahead of what came since
                self._orders[:0] = orders
                self._events[:0] = events
            raise
        self.commits += 1
        self._last_commit = time.monotonic()

    def close(self) -> None:
        """Commit what is queued and close the file (a second call does nothing)."""
        with self._write_lock:
            if self.closed:
                return
            try:
                self._commit_locked()
            finally:
                self.closed = True
                self._db.close()
                if self._lock_fd >= 0:
                    os.close(self._lock_fd)  # releases the lock
                    self._lock_fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------
    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._write_lock:
            try:
                self._commit_locked()
            except sqlite3.Error as exc:  # a full disk: what is on it still reads
                log.error("the order journal %s could not be written (%s); reading what it holds", self.path, exc)
            return self._db.execute(sql, params).fetchall()

    def known_ids(self, ids: list[str]) -> set[str]:
        """Which of `ids` name an order the journal holds (by its id or client order id),
        committed or queued. Reads without committing."""
        found: set[str] = set()
        if not ids:
            return found
        with self._lock:
            for row in self._orders:
                if row[0] in ids or row[1] in ids:
                    found.update(x for x in (row[0], row[1]) if x in ids)
        with self._write_lock:
            for start in range(0, len(ids), 400):
                chunk = ids[start:start + 400]
                marks = ",".join("?" * len(chunk))
                for cid, oid in self._db.execute(
                        f"SELECT client_order_id, id FROM orders WHERE client_order_id IN ({marks}) "
                        f"OR (id IN ({marks}) AND id != client_order_id)", (*chunk, *chunk)):
                    found.update(x for x in (cid, oid) if x in chunk)
        return found

    def fills(self, order_id: str | None = None) -> list[Fill]:
        """The fills of `order_id` (its client order id), with its children's when it is a
        parent (all orders' when None), in the order they came."""
        sql = ("SELECT e.order_id, e.venue, o.symbol, o.side, e.price, e.quantity, e.fee, e.liquidity, e.ts, "
               "e.trade_id, e.seq FROM events e LEFT JOIN orders o ON o.client_order_id = e.order_id WHERE e.kind = 'filled'"
               " AND e.price IS NOT NULL")
        if order_id is None:
            rows = self._read(sql + " ORDER BY 11")
        else:
            rows = self._read(sql + " AND e.order_id = ?1 UNION ALL " + sql + " AND e.parent_id = ?1 ORDER BY 11",
                              (order_id,))
        return [
            Fill(oid, venue or "", symbol or "", OrderSide(side) if side else OrderSide.BUY, price, quantity,
                 fee or 0.0, Liquidity(liquidity) if liquidity else Liquidity.TAKER, ts, trade_id or "")
            for oid, venue, symbol, side, price, quantity, fee, liquidity, ts, trade_id, _ in rows
        ]

    def status(self, order_id: str) -> OrderResult | None:
        """The order's last known state (None when the journal never saw it): status,
        quantity, filled quantity, average price, fills, reason, venue, symbol, side, price."""
        columns = ("SELECT client_order_id, id, venue, status, quantity, filled_quantity, reason, symbol, side, price, "
                   "updated_at, recorded_at FROM orders WHERE ")
        rows = self._read(columns + "client_order_id = ?", (order_id,)) or self._read(
            columns + "id = ? AND id != client_order_id", (order_id,))
        if not rows:
            return None
        cid, oid, venue, status, quantity, filled, reason, symbol, side, price, updated_at, recorded_at = rows[0]
        fills = self.fills(cid)
        filled_by_fills = math.fsum(f.quantity for f in fills)
        average = math.fsum(f.price * f.quantity for f in fills) / filled_by_fills if filled_by_fills > 0 else None
        return OrderResult(
            order_id=oid,
            exchange_id=venue,
            status=OrderStatus(status),
            quantity=quantity or 0.0,
            filled_quantity=max(filled or 0.0, filled_by_fills),
            average_price=average,
            fills=fills,
            reason=reason,
            symbol=symbol or "",
            side=OrderSide(side) if side else None,
            price=price,
            timestamp=updated_at or recorded_at or 0.0,
        )

    def open_orders(self) -> list[JournaledOrder]:
        """Every order whose latest status is not final (PENDING_NEW included: recorded,
        perhaps never sent), oldest first: what a restart reconciles with its venues."""
        rows = self._read(
            "SELECT id, client_order_id, symbol, side, type, quantity, price, time_in_force, expire_at, metadata, "
            "venue, parent_id, status, filled_quantity, recorded_at FROM orders WHERE final = 0 "
            "ORDER BY recorded_at, client_order_id")
        out = []
        for (oid, cid, symbol, side, kind, quantity, price, tif, expire_at, metadata, venue, parent_id, status,
             filled, recorded_at) in rows:
            order = None
            if symbol and side and kind and quantity:
                fields: dict[str, Any] = {"id": oid, "symbol": symbol, "side": side, "type": kind,
                                          "quantity": quantity, "price": price, "client_order_id": cid,
                                          "parent_id": parent_id, "expire_at": expire_at}
                if tif:
                    fields["time_in_force"] = tif
                try:
                    if metadata:
                        fields["metadata"] = json.loads(metadata)
                    order = Order(**fields)
                except ValueError as exc:
                    raise ConfigurationError(
                        f"the order journal {str(self.path)!r} holds order {oid!r} that is not a valid order: {exc}"
                    ) from None
            out.append(JournaledOrder(oid, cid, order, venue, OrderStatus(status), filled or 0.0, recorded_at))
        return out

    def children(self, parent_id: str) -> list[JournaledOrder]:
        """The orders whose parent is `parent_id` (an algorithm's children, a split's
        pieces), final ones included, oldest first; `order` is None for these."""
        rows = self._read("SELECT id, client_order_id, venue, status, filled_quantity, recorded_at FROM orders "
                          "WHERE parent_id = ? ORDER BY recorded_at, client_order_id", (parent_id,))
        return [JournaledOrder(oid, cid, None, venue, OrderStatus(status), filled or 0.0, recorded_at)
                for oid, cid, venue, status, filled, recorded_at in rows]

    def halted(self) -> str | None:
        """The reason of the last halt, when no resume followed it (the kill switch holds
        across restarts); None when trading was open."""
        rows = self._read("SELECT kind, reason FROM events WHERE kind IN ('halted', 'resumed') "
                          "ORDER BY seq DESC LIMIT 1")
        if rows and rows[0][0] == "halted":
            return rows[0][1] or "kill switch"
        return None
