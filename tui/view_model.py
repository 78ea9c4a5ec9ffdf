"""The desk's orders as rows, fed by engine events: what each row shows, which rows an
event touches, what the Events log says about them (no Textual here).

Rules:

* The desk tracks the orders it shows: the operator's and, under `--demo`, the
  synthetic flow's, each marked as whose it is. Tracking seeds a row with what the
  desk sent (symbol, side, type, quantity, price); from then on only events change it.
* An event concerns the row of its order, or of its parent when that parent is
  tracked (a child of a TWAP moves the TWAP's row).
* A row's own events set its status, filled quantity and reason; its fills make its
  average price. A final status stays final (a late report never revives a row).
  `OrderAmended` changes quantity and price, never the status; `OrderPendingCancel`
  shows the cancel in flight.
* An algorithm parent's status, filled quantity and average come from its
  `OrderUpdated`; its children's events add to its children and fills only. A plain
  order the smart router split has no event of its own: its row sums its pieces (their
  quantities add up to the order's), until an `OrderUpdated` for it says otherwise.
* Nothing here asks the engine for an order's state. Two reads remain: the smart
  router's routing reason, once per order when its first piece is submitted (no event
  carries it yet), and `resync`, after the desk's lossy subscription dropped events.
* A working order is never forgotten: forgetting the oldest orders whatever their
  state drops a one-minute TWAP after a few seconds of `--demo` flow, and from then
  on its events touch no row and its row freezes. Only finished orders go, oldest
  first, beyond `max_finished`, once per frame (at the end of a digest).
* The Events log gets a line per fill and per ending of the operator's orders; the
  --demo flow's are counted and told in one line per `FLOW_SUMMARY_S`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.events import (
    BreakerStateChanged,
    EngineError,
    Halted,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderCancelRejected,
    OrderRejected,
    OrderSubmitted,
    OrderUpdated,
    Recovered,
    Resumed,
    VenueDisabled,
    VenueEnabled,
    VenueSessionChanged,
)
from engine.models import Fill, OrderResult, OrderSide, OrderStatus, OrderType

MAX_FINISHED = 5_000  # more than the blotter's rows: a finished row can still be selected
# The --demo flow is told in one line per this many seconds: at ~1,000 orders a second a
# line per order or fill would bury the operator's own news.
FLOW_SUMMARY_S = 10.0
FILLS_KEPT = 3  # per row, for the selected order's line (the detail screen reads them all)
ALGORITHM_TYPES = frozenset(t.value for t in OrderType if t.is_algorithm)

_PENDING_NEW = OrderStatus.PENDING_NEW
_NEW = OrderStatus.NEW
_PARTIAL = OrderStatus.PARTIALLY_FILLED
_FILLED = OrderStatus.FILLED
_CANCELED = OrderStatus.CANCELED
_EXPIRED = OrderStatus.EXPIRED
_REJECTED = OrderStatus.REJECTED
_PENDING_CANCEL = OrderStatus.PENDING_CANCEL
_FINAL = frozenset(status for status in OrderStatus if status.is_final)


def fmt_qty(value: float | None) -> str:
    return "" if value is None else f"{value:,.6g}"


def fmt_price(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.3f}" if value < 1000 else f"{value:,.2f}"


@dataclass(slots=True)
class ChildRow:
    """One child of a parent or piece of a split order, as its events told it."""

    order_id: str
    status: OrderStatus = _PENDING_NEW
    quantity: float | None = None  # None: refused before it was sent (its event has none)
    filled: float = 0.0
    venue: str | None = None


@dataclass(slots=True)
class OrderRow:
    """What the Orders panel and the selected order's line show of one tracked order."""

    order_id: str
    order_type: str
    mine: bool
    rank: int  # when the desk tracked it, as a count (larger is newer)
    symbol: str = ""
    side: OrderSide | None = None
    quantity: float = 0.0
    price: float | None = None
    status: OrderStatus = _PENDING_NEW
    filled: float = 0.0
    average_price: float | None = None
    venue: str | None = None  # a plain order's venue (parents and splits: `venues`)
    cause: str = ""  # why it ended or was refused (canceled by ..., a rejection)
    note: str = ""  # what routing or the algorithm says it does (the "Routing / reason" column)
    sent: str = ""  # what the desk said as it sent it ("sent to deep"), until events say more
    tca: Mapping[str, Any] | None = None  # a parent's figures (arrival, slippage...)
    children: dict[str, ChildRow] | None = None  # oldest first
    fills: list[Fill] | None = None  # the last FILLS_KEPT, oldest first (made at the first fill)
    # Fills of the row's own order or pieces: quantity and notional, for the average.
    fill_quantity: float = 0.0
    fill_notional: float = 0.0
    # An OrderUpdated speaks for the whole row (a parent's progress): children's events
    # no longer make its status.
    updated: bool = False

    @property
    def algorithm(self) -> bool:
        return self.order_type in ALGORITHM_TYPES

    @property
    def venues(self) -> str | None:
        """The venue, or every venue its children went to (sorted, comma-separated)."""
        if not self.children:
            return self.venue
        names = sorted({c.venue for c in self.children.values() if c.venue})
        return ",".join(names) if names else self.venue

    @property
    def why(self) -> str:
        """The "Routing / reason" column: a refusal's reason, else what routing or the
        algorithm says, else why it ended."""
        if self.status is _REJECTED and self.cause:
            return self.cause
        return self.note or self.cause or self.sent

    @property
    def slippage_bps(self) -> float | None:
        return self.tca.get("slippage_bps") if self.tca else None

    @property
    def arrival_price(self) -> float | None:
        return self.tca.get("arrival_price") if self.tca else None


class DeskOrders:
    """Tracked orders as rows: whose they are, what events said of them, which still work.

    `routing_reason(order_id)`: the smart router's reason for sending an order (or a
    piece) where it went, read once per order (see the module rules).
    """

    def __init__(self, *, max_finished: int = MAX_FINISHED,
                 routing_reason: Callable[[str], str | None] | None = None) -> None:
        if isinstance(max_finished, bool) or not isinstance(max_finished, int) or max_finished < 1:
            raise ValueError(f"max_finished must be a whole number >= 1, got {max_finished!r}")
        self.max_finished = max_finished
        self._routing_reason = routing_reason
        self._rows: OrderedDict[str, OrderRow] = OrderedDict()  # oldest first
        self._working: set[str] = set()
        self._tracked = 0

    # -- what is tracked -----------------------------------------------------------------
    def track(self, order_id: str, order_type: str, *, mine: bool, symbol: str = "",
              side: OrderSide | None = None, quantity: float = 0.0, price: float | None = None,
              sent: str = "") -> OrderRow:
        """Start showing this order, as sent (it works until an event says otherwise).
        Tracked again, it keeps its place in time and what events said of it."""
        row = self._rows.get(order_id)
        if row is None:
            self._tracked += 1
            row = self._rows[order_id] = OrderRow(order_id, order_type, mine, self._tracked)
        else:
            self._rows.move_to_end(order_id)
            row.order_type, row.mine = order_type, mine
        if symbol:
            row.symbol = symbol
        if side is not None:
            row.side = side
        if quantity:
            row.quantity = quantity
        if price is not None:
            row.price = price
        if sent:
            row.sent = sent
        if row.status in _FINAL:
            self._working.discard(order_id)
        else:
            self._working.add(order_id)
        return row

    def refuse(self, order_id: str, reason: str) -> None:
        """The desk could not hand a tracked order to the engine: it ends REJECTED."""
        row = self._rows.get(order_id)
        if row is None:
            return
        row.status, row.cause = _REJECTED, reason
        self._working.discard(order_id)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Any:
        return iter(list(self._rows))

    def row(self, order_id: str) -> OrderRow | None:
        return self._rows.get(order_id)

    def type_of(self, order_id: str) -> str:
        row = self._rows.get(order_id)
        return row.order_type if row is not None else ""

    def sequence(self, order_id: str) -> int | None:
        """When the order was tracked, as a count (larger is newer): the Orders panel's
        time order, whichever of its events reaches the desk first. None: not tracked."""
        row = self._rows.get(order_id)
        return row.rank if row is not None else None

    def is_mine(self, order_id: str) -> bool:
        row = self._rows.get(order_id)
        return row is not None and row.mine

    def is_working(self, order_id: str) -> bool:
        return order_id in self._working

    @property
    def working(self) -> frozenset[str]:
        return frozenset(self._working)

    @property
    def working_count(self) -> int:
        return len(self._working)

    def mine_working(self) -> list[str]:
        rows = self._rows
        return [oid for oid in self._working if rows[oid].mine]

    # -- what events say ----------------------------------------------------------------
    def row_of(self, order_id: str | None, parent_id: str | None) -> str | None:
        """The tracked row an order's event concerns: its parent's, its own, or none."""
        if parent_id is not None and parent_id in self._rows:
            return parent_id
        if order_id is not None and order_id in self._rows:
            return order_id
        return None

    def rows_touched(self, events: Iterable[Any]) -> set[str]:
        """The tracked rows these events change."""
        rows: set[str] = set()
        for event in events:
            order_id = getattr(event, "order_id", None)
            if order_id is not None:
                row = self.row_of(order_id, getattr(event, "parent_id", None))
                if row is not None:
                    rows.add(row)
        return rows

    def apply(self, event: Any) -> OrderRow | None:
        """Apply one order event to the row it concerns (see `row_of`); None: no row."""
        rows = self._rows
        row = rows.get(event.parent_id) if event.parent_id is not None else None
        if row is not None:
            self._child(row, event)
        else:
            row = rows.get(event.order_id)
            if row is None:
                return None
            self._own(row, event)
        if row.status in _FINAL:
            self._working.discard(row.order_id)  # forgotten, if need be, at the digest's end
        else:
            self._working.add(row.order_id)
        return row

    def _own(self, row: OrderRow, event: Any) -> None:
        cls = type(event)
        if cls is OrderAmended:  # cancel/replace: new terms, same status
            row.quantity = event.quantity
            if event.price is not None:
                row.price = event.price
            return
        if row.status not in _FINAL:
            row.status = event.status
        if cls is OrderFilled:
            row.filled = max(row.filled, event.filled_quantity)
            fill = event.fill
            if fill is not None:
                _add_fill(row, fill)
            if event.venue:
                row.venue = event.venue
        elif cls is OrderUpdated:
            row.updated = True
            row.filled = event.filled_quantity
            if event.quantity:
                row.quantity = event.quantity
            row.average_price = event.average_price
            if event.detail:
                row.note = event.detail
            row.tca = event.tca
        elif cls is OrderSubmitted:
            row.venue = event.venue or row.venue
            if not row.symbol:
                row.symbol, row.side, row.quantity, row.price = (
                    event.symbol, event.side, event.quantity, event.price)
            self._note_routing(row, event.order_id)
        elif cls is OrderAccepted:
            row.venue = event.venue or row.venue
        elif cls is OrderCanceled or cls is OrderExpired:
            row.filled = max(row.filled, event.filled_quantity)
            row.cause = event.reason
        elif cls is OrderDenied or cls is OrderRejected:
            row.cause = event.reason
            row.venue = event.venue or row.venue

    def _child(self, row: OrderRow, event: Any) -> None:
        children = row.children
        if children is None:
            children = row.children = {}
        cid = event.order_id
        child = children.get(cid)
        if child is None:
            child = children[cid] = ChildRow(cid)
            if not row.algorithm and len(children) == 1:
                self._note_routing(row, cid)  # a split order: its first piece's reason
        cls = type(event)
        if event.venue:
            child.venue = event.venue
        if cls is OrderAmended:
            child.quantity = event.quantity
        elif child.status not in _FINAL:
            child.status = event.status
        if cls is OrderFilled:
            child.filled = max(child.filled, event.filled_quantity)
            fill = event.fill
            if fill is not None:
                _keep_fill(row, fill)
                if not row.algorithm:
                    row.fill_quantity += fill.quantity
                    row.fill_notional += fill.quantity * fill.price
        elif cls is OrderSubmitted:
            child.quantity = event.quantity
        elif cls is OrderCanceled or cls is OrderExpired:
            child.filled = max(child.filled, event.filled_quantity)
        elif (cls is OrderDenied or cls is OrderRejected) and not row.algorithm:
            row.cause = "; ".join(filter(None, (row.cause, event.reason)))
        if not row.algorithm and not row.updated:
            _sum_pieces(row)

    def _note_routing(self, row: OrderRow, order_id: str) -> None:
        if row.algorithm or self._routing_reason is None:
            return
        reason = self._routing_reason(order_id)
        if reason:
            row.note = reason

    def resync(self, status_of: Callable[[str], OrderResult | None]) -> set[str]:
        """After events were lost: read each working row's state once, as the engine
        has it now (None: it forgot the order, which therefore ended). Returns the rows read."""
        read = set(self._working)
        for order_id in read:
            row = self._rows[order_id]
            result = status_of(order_id)
            if result is None:
                self._working.discard(order_id)
                continue
            row.status, row.filled, row.average_price = result.status, result.filled_quantity, result.average_price
            row.quantity = result.quantity or row.quantity
            row.price = result.price if result.price is not None else row.price
            row.cause = result.reason or row.cause
            detail = result.detail or {}
            if row.algorithm:
                row.updated, row.tca = True, detail
                row.note = detail.get("algorithm") or detail.get("last_reason") or row.note
            if result.children:
                row.children = {c.order_id: ChildRow(c.order_id, c.status, c.quantity, c.filled_quantity,
                                                     c.exchange_id) for c in result.children}
            else:
                row.venue = result.exchange_id or row.venue
            row.fills = list(result.fills[-FILLS_KEPT:]) or None
            if row.status in _FINAL:
                self._working.discard(order_id)
        self.forget_finished()
        return read

    # -- the bound ------------------------------------------------------------------------
    def forget_finished(self) -> None:
        """Forget the oldest finished rows beyond `max_finished` (a digest does at its end)."""
        rows = self._rows
        working = self._working
        over = len(rows) - len(working) - self.max_finished
        # Oldest first. A working order met on the way stays (moved to the newest end);
        # each entry is visited at most once per call.
        visits = over + len(working)
        while over > 0 and visits > 0:
            visits -= 1
            order_id = next(iter(rows))
            if order_id in working:
                rows.move_to_end(order_id)
                continue
            del rows[order_id]
            over -= 1


def _keep_fill(row: OrderRow, fill: Fill) -> None:
    fills = row.fills
    if fills is None:
        row.fills = [fill]
        return
    fills.append(fill)
    if len(fills) > FILLS_KEPT:
        del fills[0]


def _add_fill(row: OrderRow, fill: Fill) -> None:
    _keep_fill(row, fill)
    row.fill_quantity += fill.quantity
    row.fill_notional += fill.quantity * fill.price
    row.average_price = row.fill_notional / row.fill_quantity if row.fill_quantity else None


def _sum_pieces(row: OrderRow) -> None:
    """A split order's row from its pieces: what the optimizer's status of it says."""
    children = row.children
    assert children is not None
    filled = math.fsum(c.filled for c in children.values())
    row.filled = filled
    row.average_price = row.fill_notional / row.fill_quantity if row.fill_quantity else None
    statuses = {c.status for c in children.values()}
    sent = math.fsum(c.quantity or 0.0 for c in children.values())
    refused_unsized = any(c.quantity is None for c in children.values())
    # Every piece is known once their quantities add up to the order's (or one was refused
    # before it was sized, and none works).
    all_known = sent >= row.quantity * (1 - 1e-9) or refused_unsized
    if not all_known or any(not s.is_final for s in statuses):
        if filled:
            status = _PARTIAL
        elif any(s.is_working for s in statuses):
            status = _NEW
        else:
            status = _PENDING_NEW
    elif row.quantity and filled >= row.quantity * (1 - 1e-9):
        status = _FILLED
    elif statuses == {_REJECTED}:
        status = _REJECTED
    elif _EXPIRED in statuses:
        status = _EXPIRED
    else:
        status = _CANCELED
    row.status = status


@dataclass(slots=True)
class FrameNews:
    """What one frame's events mean for the screen."""

    rows: set[str] = field(default_factory=set)  # tracked rows to redraw
    fills: list[Any] = field(default_factory=list)  # for the tape, in order
    lines: list[str] = field(default_factory=list)  # for the Events log
    submitted: int = 0  # orders and children sent (the orders/s rate)


def describe(event: Any) -> str | None:
    """A log line for an event that concerns no order (venues, breakers, halts, errors)."""
    if isinstance(event, BreakerStateChanged):
        return f"BREAKER {event.venue}: {event.old_state} → {event.new_state} ({event.reason})"
    if isinstance(event, Halted):
        return f"HALTED: {event.reason}"
    if isinstance(event, Resumed):
        return "RESUMED: trading is open again"
    if isinstance(event, VenueDisabled):
        return f"VENUE {event.venue} disabled: {event.reason}"
    if isinstance(event, VenueEnabled):
        return f"VENUE {event.venue} enabled"
    if isinstance(event, VenueSessionChanged):
        return f"SESSION {event.venue}: {event.state}" + (f" ({event.detail})" if event.detail else "")
    if isinstance(event, EngineError):
        return f"ERROR in {event.where}: {event.message} (the desk keeps running)"
    if isinstance(event, Recovered):
        return f"RECOVERED from the journal: {event.summary}"
    return None


class EventDigest:
    """Turns each frame's engine events into rows to redraw, fills and log lines.

    The operator's orders get a line for each fill and each ending (filled, canceled,
    expired, rejected with its reason); the --demo flow's are counted and told in one
    line every `summary_every_s`.
    """

    def __init__(self, orders: DeskOrders, *, summary_every_s: float = FLOW_SUMMARY_S) -> None:
        self.orders = orders
        self.summary_every_s = summary_every_s
        self._flow_since: float | None = None
        self._flow_orders = 0
        self._flow_fills = 0
        self._flow_rejected = 0
        self._flow_last_reason = ""

    def digest(self, events: Iterable[Any], now: float) -> FrameNews:
        """`now`: any steady clock in seconds (it only spaces the flow's summaries)."""
        news = FrameNews()
        apply = self.orders.apply
        rows = news.rows
        for event in events:
            order_id = getattr(event, "order_id", None)
            if order_id is None:
                line = describe(event)
                if line:
                    news.lines.append(line)
                continue
            cls = type(event)
            if cls is OrderSubmitted:
                news.submitted += 1
            elif cls is OrderFilled and event.fill is not None:
                news.fills.append(event.fill)
            row = apply(event)
            if row is None:
                continue
            rows.add(row.order_id)
            if row.mine:
                line = self._mine(event, row.order_id)
                if line:
                    news.lines.append(line)
            else:
                self._count(event, row.order_id)
        self.orders.forget_finished()
        summary = self._summary(now)
        if summary:
            news.lines.append(summary)
        return news

    # -- the operator's orders: every fill and ending ---------------------------------------
    def _mine(self, event: Any, row: str) -> str | None:
        order_id = event.order_id
        if isinstance(event, (OrderRejected, OrderDenied)):
            who = "venue" if isinstance(event, OrderRejected) else "engine"
            return f"REJECTED {order_id} by {who}: {event.reason}"
        if isinstance(event, OrderFilled) and event.fill is not None:
            fill = event.fill
            what = "filled" if order_id == row and event.status.is_final else f"{event.leaves_quantity:g} left"
            of = "" if order_id == row else f" (child of {row})"
            return (f"FILL {order_id}{of} {fill.side.value} {fmt_qty(fill.quantity)} {fill.symbol} "
                    f"@ {fmt_price(fill.price)} on {fill.exchange_id}: {what}")
        if order_id != row:
            return None  # a child's other news shows in its parent's row
        if isinstance(event, OrderCancelRejected):
            return f"CANCEL REFUSED {order_id}, still {event.status.value}: {event.reason}"
        if isinstance(event, OrderCanceled):
            return f"CANCELED {order_id} after {event.filled_quantity:g} filled: {event.reason or 'canceled'}"
        if isinstance(event, OrderExpired):
            return f"EXPIRED {order_id} after {event.filled_quantity:g} filled: {event.reason or 'time in force'}"
        if isinstance(event, OrderUpdated) and event.status.is_final:
            avg = f" avg {fmt_price(event.average_price)}" if event.average_price else ""
            kind = self.orders.type_of(order_id) or "parent"
            return (f"{event.status.value} {kind} {order_id}: {event.filled_quantity:g}/{event.quantity:g}"
                    f" filled{avg}" + (f" ({event.detail})" if event.detail else ""))
        return None

    # -- the --demo flow: counted ----------------------------------------------------------
    def _count(self, event: Any, row: str) -> None:
        cls = type(event)
        if cls is OrderSubmitted:
            if event.order_id == row:
                self._flow_orders += 1
        elif cls is OrderFilled:
            self._flow_fills += 1
        elif cls is OrderRejected or cls is OrderDenied:
            self._flow_rejected += 1
            self._flow_last_reason = event.reason

    def _summary(self, now: float) -> str | None:
        if self._flow_since is None:
            self._flow_since = now
            return None
        span = now - self._flow_since
        if span < self.summary_every_s:
            return None
        self._flow_since = now
        orders, fills, rejected = self._flow_orders, self._flow_fills, self._flow_rejected
        if not (orders or fills or rejected):
            return None
        line = f"DEMO flow in {span:.0f} s: {orders:,} orders, {fills:,} fills"
        if rejected:
            line += f", {rejected:,} rejected (last: {self._flow_last_reason})"
        self._flow_orders = self._flow_fills = self._flow_rejected = 0
        self._flow_last_reason = ""
        return line
