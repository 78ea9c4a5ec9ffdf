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
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import chain
from typing import Any, Protocol

from ...errors import AlgorithmParameterError, ExecdeskError
from ...models import (
    child_id,
    Fill,
    Instrument,
    Liquidity,
    Order,
    OrderResult,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
    show,
)
from ...tca import IntervalVWAP, implementation_shortfall, schedule_target, slippage_bps
from ...market_data import BookLevel, BookSnapshot, PublicTrade


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


def _to_lots(inst: Instrument | None, quantity: float) -> int:
    """A child's quantity in the parent's lots (the nearest, when a float sum left it off the lot)."""
    if inst is None:
        return round(quantity * 1e8)
    lots = inst.quantity_to_lots(quantity)
    return lots if lots is not None else inst.nearest_lots(quantity)


ChildWatcher = Callable[[OrderResult | None, OrderResult | None], None]
_MISSING: Any = object()


class Children(dict[str, OrderResult]):
    """A parent's children by client order id, with running totals kept as they change.

    The scheduler records each child's new state by assignment (`children[cid] = result`)
    and drops a split child's placeholder with `pop`. Each change moves the totals by
    the difference between that child's old and new figures, so asking what is filled,
    working or owed costs the same for a parent of 3 children as for one of 3,000:
    summed over the children at every decision, a schedule's cost would grow with the
    square of its slices (or an iceberg's with the square of its refills).

    `watch(fn)` calls `fn(old, new)` after every change (None for a child that was not
    there, or is gone), so an algorithm keeps its own figures (fills per bucket) alike.

    `last_refusal` is the reason of the latest child refused (REJECTED), until a child
    is accepted after it: what to tell the operator when a parent ends short.
    """

    __slots__ = (
        "instrument", "filled_lots", "working_lots", "filled_sum", "fill_quantity",
        "fill_notional", "fees", "venues", "last_refusal", "_working", "_watchers",
    )

    def __init__(self, instrument: Instrument | None = None,
                 items: Iterable[tuple[str, OrderResult]] = ()) -> None:
        super().__init__()
        self.instrument = instrument
        self.filled_lots = 0
        self.working_lots = 0
        self.filled_sum = 0.0  # the children's filled quantities (read without an instrument)
        self.fill_quantity = 0.0
        self.fill_notional = 0.0
        self.fees = 0.0
        self.venues: Counter[str] = Counter()  # children per venue
        self.last_refusal: str | None = None
        self._working: dict[str, None] = {}  # ids of working children, in the order they started
        self._watchers: list[ChildWatcher] = []
        for key, value in items:
            self[key] = value

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt by assignment, so the totals are made again (a finished parent is pickled).
        return (Children, (self.instrument,), None, None, iter(list(self.items())))

    def watch(self, watcher: ChildWatcher) -> None:
        self._watchers.append(watcher)

    @property
    def working(self) -> list[str]:
        return list(self._working)

    def _fills(self, fills: Iterable[Fill], sign: int) -> None:
        for f in fills:
            self.fill_quantity += sign * f.quantity
            self.fill_notional += sign * f.price * f.quantity
            self.fees += sign * f.fee

    def _move(self, cid: str, old: OrderResult | None, new: OrderResult | None) -> None:
        inst = self.instrument
        lots = working = 0
        filled = 0.0
        venues = self.venues
        if old is not None:
            if old.exchange_id:
                venues[old.exchange_id] -= 1
                if not venues[old.exchange_id]:
                    del venues[old.exchange_id]
            filled -= old.filled_quantity
            lots -= _to_lots(inst, old.filled_quantity)
            if not old.status.is_final:
                working -= _to_lots(inst, old.quantity - old.filled_quantity)
        if new is not None:
            if new.exchange_id:
                venues[new.exchange_id] += 1
            status = new.status
            if status is OrderStatus.REJECTED:
                self.last_refusal = new.reason or "no reason given"
            elif status is not OrderStatus.PENDING_NEW and (old is None or old.status is OrderStatus.PENDING_NEW):
                self.last_refusal = None  # a child got through since
            filled += new.filled_quantity
            lots += _to_lots(inst, new.filled_quantity)
            if not new.status.is_final:
                working += _to_lots(inst, new.quantity - new.filled_quantity)
                if cid not in self._working:
                    self._working[cid] = None
            else:
                self._working.pop(cid, None)
        else:
            self._working.pop(cid, None)
        self.filled_lots += lots
        self.working_lots += working
        self.filled_sum += filled
        old_fills = old.fills if old is not None else []
        new_fills = new.fills if new is not None else []
        n = len(old_fills)
        # A venue's later report of a child carries its earlier fills too: add only the new.
        if len(new_fills) >= n and (not n or new_fills[n - 1] == old_fills[-1]):
            self._fills(new_fills[n:], +1)
        else:
            self._fills(old_fills, -1)
            self._fills(new_fills, +1)
        for watcher in self._watchers:
            watcher(old, new)

    def __setitem__(self, cid: str, result: OrderResult) -> None:
        old = dict.get(self, cid)
        dict.__setitem__(self, cid, result)
        self._move(cid, old, result)

    def __delitem__(self, cid: str) -> None:
        self.pop(cid)

    def pop(self, cid: str, default: Any = _MISSING) -> Any:  # type: ignore[override]
        if cid not in self:
            if default is _MISSING:
                raise KeyError(cid)
            return default
        old = dict.pop(self, cid)
        self._move(cid, old, None)
        return old

    def popitem(self) -> tuple[str, OrderResult]:
        cid = next(reversed(self))
        return cid, self.pop(cid)

    def clear(self) -> None:
        for cid in list(self):
            self.pop(cid)

    def setdefault(self, cid: str, default: OrderResult) -> OrderResult:  # type: ignore[override]
        if cid not in self:
            self[cid] = default
        return self[cid]

    def update(self, *args: Any, **kwargs: Any) -> None:
        for cid, result in dict(*args, **kwargs).items():
            self[cid] = result


@dataclass(slots=True)
class ParentState:
    """A parent order's progress: held by the order store, changed by the scheduler's
    driver alone, read by the optimizer and the desk.

    Every figure read at a decision (filled, working, remaining, average price) is a
    running total kept by `children` (see `Children`), never a sum over the children.
    """

    order: Order
    instrument: Instrument | None
    status: OrderStatus = OrderStatus.PENDING_NEW
    reason: str | None = None
    created_at: float = 0.0
    done_at: float | None = None
    arrival_price: float | None = None
    children: Children = field(default_factory=Children)
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
    quantity_lots: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        kids = self.children
        if not isinstance(kids, Children) or kids.instrument is not self.instrument:
            self.children = Children(self.instrument, kids.items())
        self.quantity_lots = _to_lots(self.instrument, self.order.quantity)

    def next_child_id(self) -> str:
        self.seq += 1
        return child_id(self.order.id, self.seq)

    @property
    def filled_lots(self) -> int:
        return self.children.filled_lots

    @property
    def filled_quantity(self) -> float:
        if self.instrument is None:
            return self.children.filled_sum
        return self.instrument.lots_to_quantity(self.children.filled_lots)

    @property
    def remaining_lots(self) -> int:
        return max(self.quantity_lots - self.children.filled_lots, 0)

    @property
    def working_lots(self) -> int:
        return self.children.working_lots

    @property
    def working_children(self) -> list[str]:
        return self.children.working

    @property
    def fills(self) -> list[Fill]:
        """Every fill of every child (a copy: for a result, not for a decision)."""
        return [f for c in list(self.children.values()) for f in c.fills]

    @property
    def average_price(self) -> float | None:
        kids = self.children
        qty = kids.fill_quantity
        return kids.fill_notional / qty if qty > 1e-15 else None

    @property
    def fees(self) -> float:
        return self.children.fees

    @property
    def slippage_bps(self) -> float | None:
        """Signed so that positive is a cost: paid above arrival on a buy, below on a sell."""
        return slippage_bps(self.order.side, self.average_price, self.arrival_price)

    def lots_to_quantity(self, lots: int) -> float:
        inst = self.instrument
        return inst.lots_to_quantity(lots) if inst else lots / 1e8

    def tca(self, now: float | None = None) -> dict[str, Any]:
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

        Made of the running totals, so its cost does not grow with the children; a
        status read from another thread while the driver works sees each figure whole.
        """
        kids = self.children
        if now is None:
            now = self.done_at if self.done_at is not None else max(self.updated_at, self.created_at)
        order = self.order
        filled_lots = kids.filled_lots
        working = len(kids.working)
        remaining_lots = max(self.quantity_lots - filled_lots, 0)
        filled = self.filled_quantity
        avg = self.average_price
        fees = kids.fees
        # Perold's shortfall needs only the fills' total quantity, notional and fees.
        summary = (
            [Fill("", "", order.symbol, order.side, avg, kids.fill_quantity, fees, Liquidity.TAKER, now)]
            if avg is not None else []
        )
        shortfall = implementation_shortfall(order.side, self.arrival_price, summary, order.quantity, self.last_mid)
        vwap = self.market.vwap
        out: dict[str, Any] = {
            "filled": filled,
            "quantity": order.quantity,
            "remaining": self.lots_to_quantity(remaining_lots),
            "progress": filled / order.quantity,
            "children_working": working,
            "children_done": max(len(kids) - working, 0),
            "average_price": avg,
            "arrival_price": self.arrival_price,
            "arrival_time": self.created_at,
            "slippage_bps": slippage_bps(order.side, avg, self.arrival_price),
            "fees": fees,
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
            out["hidden_quantity"] = self.lots_to_quantity(max(remaining_lots - kids.working_lots, 0))
            out["refills"] = self.refills
        decisions = self.decisions
        n = len(decisions)
        out["decisions"] = n
        # By index from the end: a deque is not copied whole (and indexing it is safe
        # while the driver appends on another thread; iterating it is not).
        recent = []
        for i in range(max(n - 5, 0), n):
            d = decisions[i]
            recent.append((d.ts, d.action, d.child_id, d.reason))
        out["recent_decisions"] = recent
        out.update(self.algo_detail)
        return out

    def to_result(self, now: float | None = None) -> OrderResult:
        """The parent as one result; `detail` holds `tca(now)`."""
        kids = list(self.children.values())
        detail = self.tca(now)
        venues = sorted(list(self.children.venues))
        return OrderResult(
            order_id=self.order.id,
            exchange_id=",".join(venues) if venues else None,
            status=self.status,
            quantity=self.order.quantity,
            filled_quantity=detail["filled"],
            average_price=detail["average_price"],
            fills=list(chain.from_iterable([c.fills for c in kids])),
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

    def largest_child(self) -> PlannedChild | None:
        """The largest child it plans to send (None: sized by the market, as VWAP's are)."""


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
    ticks = inst.ticks_toward(price, up=side is OrderSide.SELL)
    if ticks is None:  # not finite: no tick is passive enough; the parent's limit decides
        return price
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
    children = state.children
    for cid in children.working:  # the working ones only: finished children rest nowhere
        c = children.get(cid)
        if c is not None and c.price is not None and c.status is not OrderStatus.PENDING_NEW:
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

    That read costs as many trades as were printed at the last instant seen, so it is
    done once per instant: a second look at the same instant returns nothing, and the
    next look, later, catches up (or `trades(final=True)` when the parent is done).
    Otherwise a run of decisions at one instant (an iceberg whose every refill fills at
    once) would re-read every print of that instant at each decision: quadratic.
    """

    __slots__ = ("state", "_t", "_at_t", "_looked_at")

    def __init__(self, state: ParentState, since: float) -> None:
        self.state = state
        self._t = since
        self._at_t: Counter[tuple[str, float, float, OrderSide]] = Counter()
        self._looked_at: float | None = None

    @staticmethod
    def _key(t: PublicTrade) -> tuple[str, float, float, OrderSide]:
        return (t.venue, t.price, t.quantity, t.aggressor)

    def trades(self, ctx: AlgoContext, *, final: bool = False) -> list[PublicTrade]:
        """The trades printed since the last call (oldest first), added to the interval VWAP;
        nothing at an instant already looked at, unless `final` (the parent is done)."""
        now = ctx.now()
        if now == self._looked_at and not final:
            return []
        self._looked_at = now
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


# -- what a parent's instrument can carry -----------------------------------------------------

def plain(value: float) -> str:
    """A small size for a message without an exponent: 0.00001, not 1e-05 (large ones keep
    theirs: 1e+12)."""
    text = show(value)
    return format(Decimal(text), "f") if "e-" in text else text


def check_parent(state: ParentState) -> None:
    """Refuse, when the algorithm is built, a parent its instrument cannot carry: a
    quantity off the lot or under the minimum, a limit price off the tick. Every child
    would be refused by the venue (or the remainder could never be sent); saying so at
    once, with what to change, beats a parent that retries and gives up later."""
    inst = state.instrument
    if inst is None:
        return
    order = state.order
    symbol = order.symbol
    lots = inst.quantity_to_lots(order.quantity)
    if lots is None and order.quantity >= float(inst.min_quantity):
        raise AlgorithmParameterError(
            f"quantity {plain(order.quantity)} is not a multiple of the lot {inst.lot_size} of {symbol}"
        )
    if lots is None or lots < inst.min_lots:
        raise AlgorithmParameterError(
            f"quantity {plain(order.quantity)} is under the minimum quantity {inst.min_quantity} of {symbol}"
        )
    if order.price is not None and inst.price_to_ticks(order.price) is None:
        raise AlgorithmParameterError(
            f"price {plain(order.price)} is not on the tick {inst.tick_size} of {symbol}"
        )


def refusal_note(state: ParentState) -> str:
    """"; children refused: <why>" when the parent's latest child was refused (its end
    reason then says why it fell short, not only by how much), else ""."""
    why = state.children.last_refusal
    return f"; children refused: {why}" if why is not None else ""


# What a parent may be against the venues' per-order filters. An algorithm exists to work
# more than one order's maximum, and IB and Nautilus let it; but a parent over this many
# times what the venues listing the symbol take at once (one order of the largest size at
# each) is a slip, not a plan. Four is the ratio of the desk's default position limit to
# its default order limit (10,000,000 to 2,500,000 USD).
PARENT_MAX_MULTIPLE = 4


@dataclass(frozen=True, slots=True)
class PlannedChild:
    """The largest child an algorithm plans to send, for the venues' per-order filters.

    what: how the operator calls it ("display_size 5", "TWAP slice 2.5 (10 in 4 slices)").
    advise: given the largest child every venue takes, what to change ("show at most 2").
    """

    quantity: float
    what: str
    advise: Callable[[float], str]


def _amount(value: float) -> str:
    return f"{value:,.2f}" if value >= 1 else plain(value)


def _at(venues: list[str], one: str, total: str) -> str:
    """'<one> of X per order at a' for one venue, '... at a, b and c together (<total>)' for more."""
    if len(venues) == 1:
        return f"{one} per order at {venues[0]}"
    return f"per order at {', '.join(venues[:-1])} and {venues[-1]} together ({total})"


def check_filters(
    state: ParentState, listings: Mapping[str, Instrument], price: float | None, child: PlannedChild | None
) -> None:
    """Refuse, when the algorithm is built, a parent the venues' per-order filters cannot carry:
    its total over PARENT_MAX_MULTIPLE times what the venues listing its symbol take at once,
    or its largest planned child over (or, in notional, under) what some venue takes in one
    order. Every such child would be refused at a venue, and the parent would give up later.

    `listings`: each venue's instrument for the parent's symbol; `price`: the parent's limit,
    else the market's mid (None: notionals are not judged)."""
    if not listings:
        return
    order = state.order
    symbol, qty = order.symbol, order.quantity
    names = sorted(listings)
    insts = [listings[n] for n in names]
    inst = state.instrument or insts[0]
    k = PARENT_MAX_MULTIPLE

    def at_most(quantity: float) -> str:
        return plain(inst.lots_to_quantity(inst.lots_at_most(quantity)))

    # The total, against what the venues take at once.
    if all(i.max_quantity is not None for i in insts):
        cap = float(sum(i.max_quantity for i in insts))  # type: ignore[misc]
        if qty > k * cap:
            where = _at(names, f"{insts[0].max_quantity:,} of {symbol}", f"{cap:,g}")
            raise AlgorithmParameterError(
                f"quantity {plain(qty)} is over {k} times the maximum quantity"
                + ("" if len(names) == 1 else f" of {symbol}")
                + f" {where}: send a parent of at most {at_most(k * cap)}"
            )
    if price is not None and all(i.max_notional is not None for i in insts):
        cap = float(sum(i.max_notional for i in insts))  # type: ignore[misc]
        if qty * price > k * cap:
            where = _at(names, f"{insts[0].max_notional:,} of {symbol}", _amount(cap))
            raise AlgorithmParameterError(
                f"notional {_amount(qty * price)} ({show(qty)} at {show(price)}) is over {k} times the "
                "maximum notional" + ("" if len(names) == 1 else f" of {symbol}")
                + f" {where}: send a parent of at most {at_most(k * cap / price)}"
            )
    if child is None:
        return
    # The largest child: it must suit every venue, since any of them may be chosen for it.
    size = child.quantity
    for name, i in zip(names, insts):
        max_quantity, min_notional, max_notional = (
            math.inf if i.max_quantity is None else float(i.max_quantity),
            0.0 if i.min_notional is None else float(i.min_notional),
            math.inf if i.max_notional is None else float(i.max_notional),
        )
        largest = max_quantity if price is None else min(max_quantity, max_notional / price)
        advice = f": {child.advise(i.lots_to_quantity(i.lots_at_most(largest)))}" if largest < math.inf else ""
        if size > max_quantity:
            raise AlgorithmParameterError(
                f"{child.what} is over the maximum quantity {i.max_quantity:,} of {symbol} per order "
                f"at {name}{advice}"
            )
        if price is None:
            continue
        notional = size * price
        if notional > max_notional:
            raise AlgorithmParameterError(
                f"{child.what} at {show(price)} is a notional of {_amount(notional)}, over the maximum "
                f"notional {i.max_notional:,} of {symbol} per order at {name}{advice}"
            )
        if notional < min_notional:
            raise AlgorithmParameterError(
                f"{child.what} at {show(price)} is a notional of {_amount(notional)}, under the minimum "
                f"notional {i.min_notional:,} of {symbol} per order at {name}"
            )


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
