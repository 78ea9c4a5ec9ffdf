"""The algorithm contract: sans-IO parents that say which child to send next.

An algorithm never calls a venue, sleeps or reads a wall clock. The
scheduler asks it what to do at start, when a child's state changes and when
its wake-up time comes, passing an `AlgoContext` (the clock's now, the
market as the routers see it); it answers with actions (`PlaceChild`,
`CancelChild`) and one-line reasons. The scheduler performs the actions
through the routers, so every child passes the same checks as any order.

Child ids are derived from the parent id: a readable prefix, a short hash
of the whole parent id and a sequence number, at most 36 characters of the
client-order-id alphabet, so a restart regenerates the same ids.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import ExecdeskError
from ..models import Fill, Instrument, Order, OrderResult, OrderSide, OrderStatus, OrderType, TimeInForce
from ..tca import IntervalVWAP, implementation_shortfall, schedule_target, slippage_bps
from ..venue import BookLevel, BookSnapshot, PublicTrade


def child_id(parent_id: str, seq: int) -> str:
    """`<parent prefix>.<hash>.<seq>`: at most 36 characters, stable across restarts."""
    digest = hashlib.blake2b(parent_id.encode(), digest_size=5).hexdigest()
    return f"{parent_id[:16]}.{digest}.{seq}"


@dataclass(frozen=True, slots=True)
class PlaceChild:
    order: Order
    venue: str | None  # None: the smart router picks the best venue
    reason: str
    split: bool = False  # may the smart router split this child across venues?


@dataclass(frozen=True, slots=True)
class CancelChild:
    order_id: str
    reason: str


Action = PlaceChild | CancelChild

DECISIONS_KEPT = 500  # per parent: the desk shows the latest


@dataclass(frozen=True, slots=True)
class Decision:
    """One child decision of an algorithm, with its one-line reason."""

    ts: float
    action: str  # "place" or "cancel"
    child_id: str
    reason: str


class AlgoContext(Protocol):
    """What an algorithm may know about the world."""

    def now(self) -> float: ...

    def book(self, symbol: str) -> BookSnapshot | None:
        """The merged best view across eligible venues (None when no venue can quote)."""

    def instrument(self, symbol: str) -> Instrument | None: ...

    def trades(self, symbol: str, since: float) -> list[PublicTrade]: ...


@dataclass(slots=True)
class ParentState:
    """A parent order's progress, kept by the scheduler, read by the optimizer and the desk."""

    order: Order
    instrument: Instrument | None
    status: OrderStatus = OrderStatus.PENDING_NEW
    reason: str | None = None
    created_at: float = 0.0
    done_at: float | None = None
    arrival_price: float | None = None
    children: dict[str, OrderResult] = field(default_factory=dict)
    child_reasons: dict[str, str] = field(default_factory=dict)
    last_reason: str = ""
    seq: int = 0
    # What the algorithm saw of the market while it worked (for TCA).
    last_mid: float | None = None
    market: IntervalVWAP = field(default_factory=IntervalVWAP)
    updated_at: float = 0.0
    # TWAP/VWAP: the working window and the schedule, (time, cumulative quantity) steps.
    window: tuple[float, float] | None = None
    schedule: list[tuple[float, float]] = field(default_factory=list)
    # ICEBERG: the display ceiling and how many times it was shown.
    display_size: float | None = None
    refills: int = 0
    # Figures of one algorithm (profile, participation, urgency...), shown with the TCA.
    algo_detail: dict[str, Any] = field(default_factory=dict)
    # Every place and cancel the algorithm decided, with why (the latest DECISIONS_KEPT).
    decisions: deque[Decision] = field(default_factory=lambda: deque(maxlen=DECISIONS_KEPT))

    def next_child_id(self) -> str:
        self.seq += 1
        return child_id(self.order.id, self.seq)

    def _lots(self, quantity: float) -> int:
        inst = self.instrument
        if inst is None:
            return round(quantity * 1e8)
        lots = inst.quantity_to_lots(quantity)
        return lots if lots is not None else round(quantity * inst._lot[1] / inst._lot[0])

    @property
    def filled_lots(self) -> int:
        return sum(self._lots(c.filled_quantity) for c in self.children.values())

    @property
    def quantity_lots(self) -> int:
        return self._lots(self.order.quantity)

    @property
    def filled_quantity(self) -> float:
        if self.instrument is None:
            return sum(c.filled_quantity for c in self.children.values())
        return self.instrument.lots_to_quantity(self.filled_lots)

    @property
    def remaining_lots(self) -> int:
        return max(self.quantity_lots - self.filled_lots, 0)

    @property
    def working_lots(self) -> int:
        return sum(
            self._lots(c.quantity - c.filled_quantity)
            for c in self.children.values()
            if not c.status.is_final
        )

    @property
    def working_children(self) -> list[str]:
        return [cid for cid, c in self.children.items() if not c.status.is_final]

    @property
    def fills(self) -> list[Fill]:
        return [f for c in self.children.values() for f in c.fills]

    @property
    def average_price(self) -> float | None:
        fills = self.fills
        qty = sum(f.quantity for f in fills)
        return sum(f.price * f.quantity for f in fills) / qty if qty else None

    @property
    def fees(self) -> float:
        return sum(f.fee for f in self.fills)

    @property
    def slippage_bps(self) -> float | None:
        """Signed so that positive is a cost: paid above arrival on a buy, below on a sell."""
        return slippage_bps(self.order.side, self.average_price, self.arrival_price)

    def lots_to_quantity(self, lots: int) -> float:
        inst = self.instrument
        return inst.lots_to_quantity(lots) if inst else lots / 1e8

    def tca(self, now: float | None = None, children: list[OrderResult] | None = None) -> dict[str, Any]:
        """The parent's progress and transaction cost analysis, for status and events.

        Keys (None when not known yet): filled, quantity, remaining, progress,
        children_working, children_done, average_price, arrival_price,
        arrival_time, slippage_bps, fees, execution_cost, opportunity_cost,
        implementation_shortfall, implementation_shortfall_bps, market_vwap,
        market_volume, vwap_slippage_bps, last_mid, last_reason; for TWAP/VWAP
        window_start, window_end, schedule_target, schedule_deviation (filled
        minus target: positive is ahead) and schedule_deviation_pct (of the
        quantity); for ICEBERG display_size, hidden_quantity, refills; and the
        algorithm's own figures (`algo_detail`).

        Computed from one snapshot of the children (`list()` of a dict is
        atomic under the GIL), so a status read from another thread while the
        scheduler's driver updates the parent never sees a dict change size.
        """
        kids = list(self.children.values()) if children is None else children
        if now is None:
            now = self.done_at if self.done_at is not None else max(self.updated_at, self.created_at)
        order = self.order
        fills = [f for c in kids for f in c.fills]
        filled_lots = sum(self._lots(c.filled_quantity) for c in kids)
        working = [c for c in kids if not c.status.is_final]
        working_lots = sum(self._lots(c.quantity - c.filled_quantity) for c in working)
        remaining_lots = max(self.quantity_lots - filled_lots, 0)
        filled = self.lots_to_quantity(filled_lots) if self.instrument else sum(c.filled_quantity for c in kids)
        qty = sum(f.quantity for f in fills)
        avg = sum(f.price * f.quantity for f in fills) / qty if qty else None
        shortfall = implementation_shortfall(order.side, self.arrival_price, fills, order.quantity, self.last_mid)
        vwap = self.market.vwap
        out: dict[str, Any] = {
            "filled": filled,
            "quantity": order.quantity,
            "remaining": self.lots_to_quantity(remaining_lots),
            "progress": filled / order.quantity,
            "children_working": len(working),
            "children_done": len(kids) - len(working),
            "average_price": avg,
            "arrival_price": self.arrival_price,
            "arrival_time": self.created_at,
            "slippage_bps": slippage_bps(order.side, avg, self.arrival_price),
            "fees": sum(f.fee for f in fills),
            "execution_cost": shortfall.execution_cost if shortfall else None,
            "opportunity_cost": shortfall.opportunity_cost if shortfall else None,
            "implementation_shortfall": shortfall.total if shortfall else None,
            "implementation_shortfall_bps": shortfall.bps if shortfall else None,
            "market_vwap": vwap,
            "market_volume": self.market.volume,
            "vwap_slippage_bps": slippage_bps(order.side, avg, vwap),
            "last_mid": self.last_mid,
            "last_reason": self.last_reason,
        }
        if self.window is not None:
            target = schedule_target(self.schedule, now)
            out["window_start"], out["window_end"] = self.window
            out["schedule_target"] = target
            out["schedule_deviation"] = filled - target
            out["schedule_deviation_pct"] = (filled - target) / order.quantity * 100
        if self.display_size is not None:
            out["display_size"] = self.display_size
            out["hidden_quantity"] = self.lots_to_quantity(max(remaining_lots - working_lots, 0))
            out["refills"] = self.refills
        out["decisions"] = len(self.decisions)
        out["recent_decisions"] = [(d.ts, d.action, d.child_id, d.reason) for d in list(self.decisions)[-5:]]
        out.update(self.algo_detail)
        return out

    def to_result(self, now: float | None = None) -> OrderResult:
        """The parent as one result; `detail` holds `tca(now)`; one snapshot of the children."""
        kids = list(self.children.values())
        detail = self.tca(now, kids)
        venues = sorted({c.exchange_id for c in kids if c.exchange_id})
        return OrderResult(
            order_id=self.order.id,
            exchange_id=",".join(venues) if venues else None,
            status=self.status,
            quantity=self.order.quantity,
            filled_quantity=detail["filled"],
            average_price=detail["average_price"],
            fills=[f for c in kids for f in c.fills],
            reason=self.reason,
            symbol=self.order.symbol,
            side=self.order.side,
            price=self.order.price,
            timestamp=self.done_at or self.created_at,
            detail=detail,
        )


class Algorithm(Protocol):
    """A parent order's decision maker (sans-IO)."""

    state: ParentState

    def start(self, ctx: AlgoContext) -> list[Action]: ...

    def on_child(self, ctx: AlgoContext, child: OrderResult) -> list[Action]: ...

    def on_timer(self, ctx: AlgoContext) -> list[Action]: ...

    def next_wake(self) -> float | None: ...

    def describe(self) -> str:
        """One line for the desk: what the parent is doing now."""


def limit_child(
    state: ParentState, quantity_lots: int, price: float | None, *, tif: TimeInForce = TimeInForce.GTC
) -> Order:
    """A child order of the parent's side and symbol (LIMIT with a price, else MARKET)."""
    parent = state.order
    inst = state.instrument
    quantity = inst.lots_to_quantity(quantity_lots) if inst else quantity_lots / 1e8
    return Order(
        id=state.next_child_id(),
        symbol=parent.symbol,
        side=parent.side,
        type=OrderType.LIMIT if price is not None else OrderType.MARKET,
        quantity=quantity,
        price=price,
        time_in_force=tif if price is not None else TimeInForce.GTC,
        parent_id=parent.id,
    )


AlgorithmFactory = Callable[[Order, ParentState], Algorithm]


def decides(method: Callable[..., list[Action]]) -> Callable[..., list[Action]]:
    """Wrap an algorithm's start/on_child/on_timer: every action it returns is kept in the
    parent's `decisions` with its reason, and a cancel's reason becomes the last reason
    (the scheduler records only placements)."""

    @functools.wraps(method)
    def wrapper(self: Any, ctx: AlgoContext, *args: Any) -> list[Action]:
        actions = method(self, ctx, *args)
        if actions:
            state: ParentState = self.state
            now = ctx.now()
            for a in actions:
                if isinstance(a, PlaceChild):
                    state.decisions.append(Decision(now, "place", a.order.id, a.reason))
                else:
                    state.decisions.append(Decision(now, "cancel", a.order_id, a.reason))
                    state.last_reason = a.reason
        return actions

    return wrapper


def opposite_touch(book: BookSnapshot | None, side: OrderSide) -> float | None:
    if book is None:
        return None
    return book.best_ask if side is OrderSide.BUY else book.best_bid


def near_touch(book: BookSnapshot | None, side: OrderSide) -> float | None:
    if book is None:
        return None
    return book.best_bid if side is OrderSide.BUY else book.best_ask


# -- prices on the tick ----------------------------------------------------------------

def snap_price(inst: Instrument | None, price: float, side: OrderSide) -> float:
    """The price on the tick, rounded the passive way: down for a buy, up for a sell.

    So a limit derived from a collar or a fraction of the spread is never
    more aggressive than asked.
    """
    if inst is None:
        return price
    num, den = inst._tick
    exact = price * den / num
    nearest = round(exact)
    if abs(exact - nearest) <= 1e-9 * max(abs(exact), 1.0):
        ticks = nearest
    else:
        ticks = math.floor(exact) if side is OrderSide.BUY else math.ceil(exact)
    return inst.ticks_to_price(max(ticks, 1))


def tick_size(inst: Instrument | None) -> float:
    return float(inst.tick_size) if inst is not None else 0.0


def within_limit(side: OrderSide, price: float, limit: float | None) -> float:
    """The more passive of a price and the parent's limit."""
    if limit is None:
        return price
    return min(price, limit) if side is OrderSide.BUY else max(price, limit)


def marketable_child(
    state: ParentState,
    lots: int,
    book: BookSnapshot | None,
    collar_bps: float,
) -> tuple[Order, str]:
    """An IOC child that takes liquidity: limit at the far touch plus a collar, never past
    the parent's limit. Without a book: IOC at the parent's limit, or MARKET without one.
    Returns the child and a few words on its price for the reason line."""
    side, limit = state.order.side, state.order.price
    far = opposite_touch(book, side)
    if far is None:
        if limit is None:
            return limit_child(state, lots, None), "at market (no book to price against)"
        return limit_child(state, lots, limit, tif=TimeInForce.IOC), f"IOC at the limit {limit:g} (no book)"
    collared = snap_price(state.instrument, far * (1 + side.sign * collar_bps / 10_000), side)
    price = within_limit(side, collared, limit)
    what = f"IOC up to {price:,.6g} (touch {far:,.6g}" + (
        f", limit {limit:g})" if price == limit and limit != collared else f", collar {collar_bps:g} bps)"
    )
    return limit_child(state, lots, price, tif=TimeInForce.IOC), what


# -- windows ---------------------------------------------------------------------------

def resolve_window(meta: Mapping[str, Any], now: float) -> tuple[float, float]:
    """(start, end) of a TWAP/VWAP: `duration_s` from now, or `start_time`..`end_time`
    (a start already past means now)."""
    if "duration_s" in meta:
        return now, now + float(meta["duration_s"])
    return max(float(meta["start_time"]), now), float(meta["end_time"])


# -- watching the market ---------------------------------------------------------------

def without_own(book: BookSnapshot | None, state: ParentState) -> BookSnapshot | None:
    """`book` less the leaves of the parent's working limit children at their prices."""
    if book is None:
        return None
    mine: dict[float, float] = {}
    for c in state.children.values():
        if c.price is not None and not c.status.is_final and c.status is not OrderStatus.PENDING_NEW:
            mine[c.price] = mine.get(c.price, 0.0) + max(c.quantity - c.filled_quantity, 0.0)
    if not mine:
        return book
    own_side = book.bids if state.order.side is OrderSide.BUY else book.asks
    levels = []
    for level in own_side:
        left = level.quantity - mine.get(level.price, 0.0)
        if left > 1e-12:
            levels.append(BookLevel(level.price, left, level.orders))
    if state.order.side is OrderSide.BUY:
        return BookSnapshot(book.venue, book.symbol, tuple(levels), book.asks, book.ts_event)
    return BookSnapshot(book.venue, book.symbol, book.bids, tuple(levels), book.ts_event)


class MarketWatch:
    """What an algorithm reads of the market at each decision: the merged book's mid and
    the public trades printed since it last looked, each trade once.

    Trades are read through `AlgoContext.trades(symbol, since)`, which returns those
    strictly after `since`. Reading from just before the last trade time seen and
    skipping the trades at that instant already counted neither loses a trade printed
    at the same instant after the last read (our own fill, say) nor counts one twice.
    Every trade read goes into the parent's interval VWAP.
    """

    __slots__ = ("state", "_t", "_at_t")

    def __init__(self, state: ParentState, since: float) -> None:
        self.state = state
        self._t = since
        self._at_t: Counter[tuple[str, float, float, OrderSide]] = Counter()

    @staticmethod
    def _key(t: PublicTrade) -> tuple[str, float, float, OrderSide]:
        return (t.venue, t.price, t.quantity, t.aggressor)

    def trades(self, ctx: AlgoContext) -> list[PublicTrade]:
        """The trades printed since the last call (oldest first), added to the interval VWAP."""
        try:
            got = ctx.trades(self.state.order.symbol, math.nextafter(self._t, -math.inf))
        except ExecdeskError:
            return []  # no venue can tell us now: the next look catches up
        if not got:
            return []
        skip = Counter(self._at_t)
        new = []
        for t in got:
            if t.ts_event < self._t:
                continue
            if t.ts_event == self._t:
                k = self._key(t)
                if skip[k] > 0:
                    skip[k] -= 1
                    continue
            new.append(t)
        last = max(t.ts_event for t in got)
        if last >= self._t:
            self._at_t = Counter(self._key(t) for t in got if t.ts_event == last)
            self._t = last
        market = self.state.market
        for t in new:
            market.add(t.price, t.quantity)
        return new

    def book(self, ctx: AlgoContext) -> BookSnapshot | None:
        """The merged book without the parent's own resting children: the market as
        others make it (our own bid must not count as the touch we price from)."""
        book = without_own(ctx.book(self.state.order.symbol), self.state)
        if book is not None and book.mid is not None:
            self.state.last_mid = book.mid
        return book

    def look(self, ctx: AlgoContext) -> tuple[BookSnapshot | None, list[PublicTrade]]:
        """Book and new trades; stamps the parent's `updated_at`."""
        book = self.book(ctx)
        trades = self.trades(ctx)
        self.state.updated_at = ctx.now()
        return book, trades


MAX_REFUSALS = 5  # refused children in a row before a parent gives up


def refused_child(state: ParentState, child: OrderResult, refusals: int, now: float,
                  retry_s: float) -> float | None:
    """A child was refused (venue down, breaker open, halt): give up after
    MAX_REFUSALS in a row (`refusals` counts this one), else say when to try
    again. Returns that time, or None when the parent has given up."""
    if refusals >= MAX_REFUSALS:
        state.status = OrderStatus.REJECTED if not state.filled_lots else OrderStatus.CANCELED
        state.reason = f"gave up after {refusals} refused children: {child.reason}"
        return None
    state.last_reason = f"child refused ({child.reason}); retrying in {retry_s:g} s"
    return now + retry_s
