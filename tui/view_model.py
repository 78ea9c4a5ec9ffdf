"""The desk's orders, fed by engine events: which rows an event touches, what the Events
log says about them (no Textual here).

Rules:

* The desk tracks the orders it shows: the operator's and, under `--demo`, the
  synthetic flow's, each marked as whose it is.
* An event concerns the row of its order, or of its parent when that parent is
  tracked (a child of a TWAP moves the TWAP's row). Whether a tracked order still
  works is what the engine said when its row was last drawn.
* A working order is never forgotten: forgetting the oldest orders whatever their
  state drops a one-minute TWAP after a few seconds of `--demo` flow, and from then
  on its events touch no row and its row freezes. Only finished orders go, oldest
  first, beyond `max_finished`.
* Nothing here asks the engine anything except, when the bound is reached, "is this
  old order really still working?" (the lossy subscription may have dropped the
  event that would have redrawn it as finished): the answer lets it go or keeps it.
* The Events log gets a line per fill and per ending of the operator's orders; the
  --demo flow's are counted and told in one line per `FLOW_SUMMARY_S`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.events import (
    BreakerStateChanged,
    EngineError,
    Halted,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    OrderUpdated,
    Resumed,
    VenueDisabled,
    VenueEnabled,
)

MAX_FINISHED = 5_000  # more than the blotter's rows: a finished row can still be selected
# The --demo flow is told in one line per this many seconds: at ~1,000 orders a second a
# line per order or fill would bury the operator's own news.
FLOW_SUMMARY_S = 10.0


def fmt_qty(value: float | None) -> str:
    return "" if value is None else f"{value:,.6g}"


def fmt_price(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.3f}" if value < 1000 else f"{value:,.2f}"


class DeskOrders:
    """Tracked orders: their type, whose they are, and which still work."""

    def __init__(self, *, max_finished: int = MAX_FINISHED,
                 still_working: Callable[[str], bool] | None = None) -> None:
        if isinstance(max_finished, bool) or not isinstance(max_finished, int) or max_finished < 1:
            raise ValueError(f"max_finished must be a whole number >= 1, got {max_finished!r}")
        self.max_finished = max_finished
        self._still_working = still_working
        self._types: OrderedDict[str, str] = OrderedDict()  # every tracked id -> order type, oldest first
        self._working: set[str] = set()
        self._mine: set[str] = set()
        self._sequence: dict[str, int] = {}  # every tracked id -> when it was tracked (its rank)
        self._tracked = 0

    # -- what is tracked -----------------------------------------------------------------
    def track(self, order_id: str, order_type: str, *, mine: bool) -> None:
        """Start showing this order (it works until an event or the engine says otherwise)."""
        if order_id not in self._sequence:
            self._tracked += 1
            self._sequence[order_id] = self._tracked
        self._types[order_id] = order_type
        self._types.move_to_end(order_id)
        self._working.add(order_id)
        if mine:
            self._mine.add(order_id)
        else:
            self._mine.discard(order_id)
        self._bound()

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._types

    def __len__(self) -> int:
        return len(self._types)

    def __iter__(self) -> Any:
        return iter(list(self._types))

    def type_of(self, order_id: str) -> str:
        return self._types.get(order_id, "")

    def sequence(self, order_id: str) -> int | None:
        """When the order was tracked, as a count (larger is newer): the Orders panel's
        time order, whichever of its events reaches the desk first. None: not tracked."""
        return self._sequence.get(order_id)

    def is_mine(self, order_id: str) -> bool:
        return order_id in self._mine

    def is_working(self, order_id: str) -> bool:
        return order_id in self._working

    @property
    def working(self) -> frozenset[str]:
        return frozenset(self._working)

    @property
    def working_count(self) -> int:
        return len(self._working)

    def mine_working(self) -> list[str]:
        return [oid for oid in self._working if oid in self._mine]

    # -- what events say ----------------------------------------------------------------
    def row_of(self, order_id: str | None, parent_id: str | None) -> str | None:
        """The tracked row an order's event concerns: its parent's, its own, or none."""
        if parent_id is not None and parent_id in self._types:
            return parent_id
        if order_id is not None and order_id in self._types:
            return order_id
        return None

    def rows_touched(self, events: Iterable[Any]) -> set[str]:
        """The tracked rows these events change (the app then reads each row's state)."""
        rows: set[str] = set()
        for event in events:
            order_id = getattr(event, "order_id", None)
            if order_id is not None:
                row = self.row_of(order_id, getattr(event, "parent_id", None))
                if row is not None:
                    rows.add(row)
        return rows

    def set_working(self, order_id: str, working: bool) -> None:
        """What the engine says of a tracked order: a finished one may be forgotten later."""
        if not working:
            self._working.discard(order_id)
            self._bound()
        elif order_id in self._types:
            self._working.add(order_id)

    # -- the bound ------------------------------------------------------------------------
    def _bound(self) -> None:
        over = len(self._types) - len(self._working) - self.max_finished
        # Oldest first. A working order met on the way stays (moved to the newest end);
        # each entry is visited at most once per call.
        visits = over + len(self._working)
        while over > 0 and visits > 0:
            visits -= 1
            order_id = next(iter(self._types))
            if order_id in self._working:
                if self._still_working is None or self._still_working(order_id):
                    self._types.move_to_end(order_id)
                    continue
                self._working.discard(order_id)  # its final event never reached the desk
            del self._types[order_id]
            del self._sequence[order_id]
            self._mine.discard(order_id)
            over -= 1


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
    if isinstance(event, EngineError):
        return f"ERROR in {event.where}: {event.message} (the desk keeps running)"
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
        orders = self.orders
        for event in events:
            order_id = getattr(event, "order_id", None)
            if order_id is None:
                line = describe(event)
                if line:
                    news.lines.append(line)
                continue
            if isinstance(event, OrderSubmitted):
                news.submitted += 1
            if isinstance(event, OrderFilled) and event.fill is not None:
                news.fills.append(event.fill)
            row = orders.row_of(order_id, event.parent_id)
            if row is None:
                continue
            news.rows.add(row)
            if orders.is_mine(row):
                line = self._mine(event, row)
                if line:
                    news.lines.append(line)
            else:
                self._count(event, row)
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
        if isinstance(event, OrderSubmitted) and event.order_id == row:
            self._flow_orders += 1
        elif isinstance(event, OrderFilled):
            self._flow_fills += 1
        elif isinstance(event, (OrderRejected, OrderDenied)):
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
