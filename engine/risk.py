"""Pre-trade risk: the fat-finger limits every order and algorithm child passes.

`RiskLimits` says what is allowed; `RiskChecker` judges orders against it and
keeps the little state the flow limits need. The order router calls
`RiskChecker.admit` in its pre-trade step for every order and child it is
about to send to a venue; the scheduler calls `accept_parent` once for an
algorithm parent when it is accepted, and the smart router `check_whole` for
an order it splits, so a size is judged as the operator typed it, not piece
by piece. `preview` is the same judgement for the ticket, without counting
or recording anything.

Rules of this module:

* Pure. No I/O and no router imports: prices come from a `read_book(depth)`
  callable the caller passes (the venue's book for a child, the merged book
  for a parent or a preview), time from the caller's `now`. Only `load` and
  `write_default` touch files.
* The limits, in the order they are checked (the first breach is the reason):
  quantity (per symbol), notional (per order; per symbol override), price
  band (a LIMIT price, or a MARKET order's worst expected price in the book,
  against the mid), position (filled plus working on the same side, per
  symbol), open orders and order rate (both count venue orders, children
  included). A parent or a split order as a whole skips the last two: its
  pieces are counted when they are sent.
* The price band refuses the side that can trade through the market: a buy
  priced more than the band above the mid, a sell more than the band below
  it (as CME Globex price banding does). A passive price far from the
  market rests without harm, and an algorithm may work under such a limit;
  its notional still counts.
* A refusal is one line naming the limit and both values, formatted for
  people: "notional 226,000,000 > max 2,500,000 USD (BTC/USD)". Each refusal
  by `admit` or `check_whole` is counted per limit in `refusals`.
* An accepted parent reserves what it has yet to send: it counts as working on
  its side (so a second parent, or any order, meets the position limit with
  the first one's whole quantity in it) until `end_parent`. Its children draw
  on that reservation when they are admitted (a child's `parent_id` names the
  parent; the pieces of a split child are tied to it by `placing_child`), and
  what a child leaves unfilled returns to it. So the parent's exposure is its
  unfilled quantity throughout, as its children come and go.
* State changes are O(1) per order: the router reports each new state of an
  order it admitted (`update`); nothing scans the working orders.
* Thread-safe: one lock around the state; no call out of this module is made
  while it is held (a book read may deliver venue reports, which call
  `update`).
"""

from __future__ import annotations

import math
import os
import stat
import tempfile
import threading
import tomllib
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import ConfigurationError
from .models import Order, OrderResult, OrderSide, OrderType, quote, symbol_problem
from .market_data import BookLevel, BookSnapshot

__all__ = [
    "DEFAULT_RISK_LIMITS",
    "LIMIT_NAMES",
    "BookReader",
    "RiskChecker",
    "RiskLimits",
    "RiskPreview",
    "SymbolLimits",
    "load",
    "load_or_create",
    "write_default",
]

# Names of the limits, as `refusals` and `RiskPreview.limit` give them.
LIMIT_NAMES = ("quantity", "notional", "price_band", "position", "open_orders", "rate")

# A MARKET order larger than the touch is walked through this many levels of the book.
WALK_DEPTH = 50
# Finished orders whose filled quantity is remembered, so a late fill report still
# moves the position.
REMEMBER_FINISHED = 10_000

BookReader = Callable[[int], "BookSnapshot | None"]


# -- limits ---------------------------------------------------------------------------------
def _number(name: str, value: Any, *, upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ConfigurationError(f"{name} must be a finite number > 0, got {value!r}")
    if upper is not None and number > upper:
        raise ConfigurationError(f"{name} must be > 0 and <= {upper:g}, got {value!r}")
    return number


def _whole(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class SymbolLimits:
    """One symbol's limits. `max_quantity` is in the base unit (BTC for BTC/USD);
    `max_notional` and `max_position`, in the quote currency, override the
    engine-wide values for this symbol. None: no quantity limit / the engine-wide value."""

    max_quantity: float | None = None
    max_notional: float | None = None
    max_position: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_quantity", "max_notional", "max_position"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _number(name, value))


SYMBOL_KEYS = ("max_quantity", "max_notional", "max_position")

DEFAULT_SYMBOL_LIMITS: Mapping[str, SymbolLimits] = MappingProxyType({
    "BTC/USD": SymbolLimits(max_quantity=50),
    "ETH/USD": SymbolLimits(max_quantity=500),
    "SOL/USD": SymbolLimits(max_quantity=10_000),
})


@dataclass(frozen=True)
class RiskLimits:
    """What one order, and the flow of orders, may be.

    `symbols` replaces the default per-symbol table as a whole (a symbol not in
    it has no quantity limit; the notional and position limits still apply).
    Amounts are in the quote currency (USD for BTC/USD).
    """

    symbols: Mapping[str, SymbolLimits] = field(default_factory=lambda: DEFAULT_SYMBOL_LIMITS)
    max_order_notional: float = 2_500_000.0
    price_band_pct: float = 5.0
    max_open_orders: int = 1_000
    max_orders_per_s: int = 2_000
    max_position_notional: float = 10_000_000.0
    confirm_share: float = 0.5

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "max_order_notional", _number("max_order_notional", self.max_order_notional))
        set_(self, "price_band_pct", _number("price_band_pct", self.price_band_pct, upper=100.0))
        _whole("max_open_orders", self.max_open_orders)
        _whole("max_orders_per_s", self.max_orders_per_s)
        set_(self, "max_position_notional", _number("max_position_notional", self.max_position_notional))
        set_(self, "confirm_share", _number("confirm_share", self.confirm_share, upper=1.0))
        if not isinstance(self.symbols, Mapping):
            raise ConfigurationError(
                f"symbols must map a symbol to its SymbolLimits, got {self.symbols!r}"
            )
        table = {}
        for symbol, limits in self.symbols.items():
            problem = symbol_problem(symbol)  # the rule an Order's symbol follows
            if problem is not None:
                raise ConfigurationError(f"symbols: {problem}")
            if not isinstance(limits, SymbolLimits):
                raise ConfigurationError(
                    f"symbols[{symbol!r}] must be a SymbolLimits, got {limits!r}"
                )
            table[symbol] = limits
        set_(self, "symbols", MappingProxyType(table))

    def for_symbol(self, symbol: str) -> tuple[float | None, float, float]:
        """(max quantity or None, max notional, max position) for one symbol."""
        own = self.symbols.get(symbol)
        if own is None:
            return None, self.max_order_notional, self.max_position_notional
        return (
            own.max_quantity,
            own.max_notional if own.max_notional is not None else self.max_order_notional,
            own.max_position if own.max_position is not None else self.max_position_notional,
        )

    def describe(self) -> dict[str, Any]:
        """The limits as plain values (for a report or a JSON document)."""
        return {
            "max_order_notional": self.max_order_notional,
            "price_band_pct": self.price_band_pct,
            "max_open_orders": self.max_open_orders,
            "max_orders_per_s": self.max_orders_per_s,
            "max_position_notional": self.max_position_notional,
            "confirm_share": self.confirm_share,
            "symbols": {
                symbol: {k: getattr(lim, k) for k in SYMBOL_KEYS if getattr(lim, k) is not None}
                for symbol, lim in self.symbols.items()
            },
        }


DEFAULT_RISK_LIMITS = RiskLimits()


# -- formatting for people ------------------------------------------------------------------
def _qty(x: float) -> str:
    return format(x, ",.10g")


def _price(x: float) -> str:
    return format(x, ",.10g")


def _money(x: float) -> str:
    if not math.isfinite(x) or abs(x) >= 1e15:
        return format(x, ".3g")
    if abs(x) >= 100:
        return format(round(x), ",")
    return format(x, ",.2f")


def _pct(x: float) -> str:
    # One decimal ("20.0%"), two under one percent, where bands of basis points live.
    return format(x, ".2f" if abs(x) < 1 else ".1f")


def _quote_currency(symbol: str) -> str:
    _, slash, quote = symbol.partition("/")
    return quote if slash and quote else "USD"


# -- the checker ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RiskPreview:
    """What the check says of an order before it is sent (for the ticket).

    reason: why the engine would refuse it (None: it would pass).
    notional: quantity x price (the limit price, or the book's worst expected
    price for a MARKET order, the mid for a parent without a price); None
    when no price is known.
    share: the highest fraction of a per-order limit (quantity, notional,
    price band, position) this order would use; open orders and rate are the
    desk's flow, not the order's size, and are left out.
    limit: the limit named by `reason`, or else the one `share` is about
    (None when the share is 0).
    needs_confirmation: it passes but `share` is above `confirm_share`.
    note: one line about `limit` ("quantity 30 is 60% of max 50 (BTC/USD)").
    """

    reason: str | None
    notional: float | None
    share: float
    limit: str | None
    needs_confirmation: bool = False
    note: str | None = None


@dataclass(slots=True)
class _Record:
    symbol: str
    side: OrderSide
    quantity: float
    filled: float = 0.0
    leaves: float = 0.0
    owner: str | None = None  # the parent whose reservation it drew on


@dataclass(slots=True)
class _Reservation:
    """An accepted parent: `left` is its quantity not filled by its children yet, `out`
    its children's leaves at the venues; `reserved` = left - out (>= 0) is what it has yet
    to send, and is counted in the working quantity of its side."""

    symbol: str
    side: OrderSide
    left: float
    out: float = 0.0
    reserved: float = 0.0
    placing: str | None = None  # the child being placed (its split pieces name it)


@dataclass(slots=True)
class _Pricing:
    price: float | None  # for notional and position
    mid: float | None
    band_price: float | None  # the price judged against the band (None: not judged)
    band_what: str = "price"


class RiskChecker:
    """Judges orders against `RiskLimits`; keeps the rate window, open orders, working
    quantity per symbol and side, and filled position per symbol (see the module rules)."""

    def __init__(self, limits: RiskLimits = DEFAULT_RISK_LIMITS) -> None:
        if not isinstance(limits, RiskLimits):
            raise ConfigurationError(f"limits must be a RiskLimits, got {limits!r}")
        self._limits = limits
        self._lock = threading.Lock()
        self._sent: deque[float] = deque()  # send times within the last second
        self._orders: dict[str, _Record] = {}  # admitted and not final, by client order id
        self._finished: OrderedDict[str, _Record] = OrderedDict()
        self._working: dict[tuple[str, OrderSide], float] = {}
        self._working_count: dict[tuple[str, OrderSide], int] = {}
        self._parents: dict[str, _Reservation] = {}
        self._placing: dict[str, str] = {}  # a child being placed -> its parent
        self._net: dict[str, float] = {}
        self._last_mid: dict[str, float] = {}
        self._refusals = dict.fromkeys(LIMIT_NAMES, 0)

    # -- what others read -------------------------------------------------------------
    @property
    def limits(self) -> RiskLimits:
        return self._limits

    def set_limits(self, limits: RiskLimits) -> None:
        """New limits from now on; what is working and filled stays counted."""
        if not isinstance(limits, RiskLimits):
            raise ConfigurationError(f"limits must be a RiskLimits, got {limits!r}")
        self._limits = limits

    @property
    def refusals(self) -> dict[str, int]:
        """Refusals so far per limit name (every name of LIMIT_NAMES, 0 included)."""
        with self._lock:
            return dict(self._refusals)

    @property
    def open_orders(self) -> int:
        return len(self._orders)

    def working_quantity(self, symbol: str, side: OrderSide | str) -> float:
        return self._working.get((symbol, OrderSide(side)), 0.0)

    def position(self, symbol: str) -> float:
        """Net filled quantity of orders this checker admitted (> 0 long)."""
        return self._net.get(symbol, 0.0)

    def reserved_quantity(self, parent_id: str) -> float:
        """What an accepted parent has yet to send (0 for one not accepted or ended)."""
        res = self._parents.get(parent_id)
        return res.reserved if res is not None else 0.0

    # -- judging ----------------------------------------------------------------------------
    def admit(self, order: Order, read_book: BookReader, now: float) -> str | None:
        """The router's pre-trade check of one venue order: None and the order is counted
        as sent and working, or the reason it is refused (counted in `refusals`)."""
        pricing = self._pricing(order, read_book)
        with self._lock:
            owner = self._owner(order)
            draw = min(order.quantity, owner[1].reserved) if owner is not None else 0.0
            limit, reason = self._judge(order, pricing, flow=True, now=now, draw=draw)
            if reason is not None:
                self._refusals[limit] += 1  # type: ignore[index]
                return reason
            sent = self._sent
            sent.append(now)
            cid = order.client_order_id or order.id
            key = (order.symbol, order.side)
            rec = _Record(order.symbol, order.side, order.quantity, 0.0, order.quantity)
            self._orders[cid] = rec
            self._working[key] = self._working.get(key, 0.0) + order.quantity
            self._working_count[key] = self._working_count.get(key, 0) + 1
            if owner is not None:
                rec.owner, res = owner
                res.out += order.quantity
                self._rebalance(res)
        return None

    def accept_parent(self, order: Order, read_book: BookReader) -> str | None:
        """An algorithm parent judged once as a whole, as `check_whole` does; accepted (None),
        its quantity is reserved as working on its side until `end_parent`."""
        pricing = self._pricing(order, read_book)
        with self._lock:
            limit, reason = self._judge(order, pricing, flow=False, now=0.0)
            if reason is not None:
                self._refusals[limit] += 1  # type: ignore[index]
                return reason
            if order.id not in self._parents:
                key = (order.symbol, order.side)
                res = _Reservation(order.symbol, order.side, order.quantity)
                self._parents[order.id] = res
                self._working_count[key] = self._working_count.get(key, 0) + 1
                self._rebalance(res)
        return None

    def end_parent(self, parent_id: str) -> None:
        """The parent is final: what it had yet to send is no longer reserved (its children
        still working stay counted as orders of their own)."""
        with self._lock:
            res = self._parents.pop(parent_id, None)
            if res is None:
                return
            if res.placing is not None:
                self._placing.pop(res.placing, None)
            res.left = res.out = 0.0
            self._rebalance(res)
            self._uncount((res.symbol, res.side))

    def placing_child(self, parent_id: str, child_id: str) -> None:
        """A parent's child is about to be placed: orders whose `parent_id` is `child_id` (the
        pieces of a split) draw on the parent's reservation too, until `placed_child`."""
        with self._lock:
            res = self._parents.get(parent_id)
            if res is None:
                return
            if res.placing is not None:
                self._placing.pop(res.placing, None)
            res.placing = child_id
            self._placing[child_id] = parent_id

    def placed_child(self, child_id: str) -> None:
        with self._lock:
            parent_id = self._placing.pop(child_id, None)
            res = self._parents.get(parent_id) if parent_id is not None else None
            if res is not None and res.placing == child_id:
                res.placing = None

    def check_whole(self, order: Order, read_book: BookReader) -> str | None:
        """An order about to be split judged once as a whole (per-order limits and
        position; its pieces meet the flow limits when sent). Nothing is reserved: a
        parent is accepted with `accept_parent`."""
        pricing = self._pricing(order, read_book)
        with self._lock:
            owner = self._owner(order)
            draw = min(order.quantity, owner[1].reserved) if owner is not None else 0.0
            limit, reason = self._judge(order, pricing, flow=False, now=0.0, draw=draw)
            if reason is not None:
                self._refusals[limit] += 1  # type: ignore[index]
        return reason

    def check_replace(self, order: Order, read_book: BookReader) -> str | None:
        """An amend: `order` is the working order with its new quantity and price; its
        current working quantity is replaced by the new one, not added to it."""
        pricing = self._pricing(order, read_book)
        with self._lock:
            rec = self._orders.get(order.client_order_id or order.id)
            limit, reason = self._judge(order, pricing, flow=False, now=0.0, replacing=rec)
            if reason is not None:
                self._refusals[limit] += 1  # type: ignore[index]
        return reason

    def preview(self, order: Order, read_book: BookReader, now: float) -> RiskPreview:
        """What `admit` (a plain order) or `check_whole` (a parent) would say, with the
        notional and the share of the limits it uses; counts and records nothing."""
        pricing = self._pricing(order, read_book)
        flow = not order.type.is_algorithm
        shares: dict[str, tuple[float, str]] = {}
        with self._lock:
            limit, reason = self._judge(order, pricing, flow=flow, now=now, shares=shares)
        notional = order.quantity * pricing.price if pricing.price is not None else None
        top, share, note = None, 0.0, None
        for name, (value, text) in shares.items():
            if value > share:
                top, share, note = name, value, text
        if reason is not None:
            return RiskPreview(reason, notional, share, limit, False, note if top == limit else None)
        return RiskPreview(None, notional, share, top, share > self._limits.confirm_share, note)

    def release(self, client_order_id: str) -> None:
        """An admitted order that never went out (a failure before the venue call)."""
        with self._lock:
            rec = self._orders.pop(client_order_id, None)
            if rec is not None:
                self._unwork(rec)

    def update(self, result: OrderResult) -> None:
        """A new state of an order (the router's bookkeeping): fills move the position,
        the working quantity follows what is left, a final state frees its slot."""
        with self._lock:
            cid = result.order_id
            rec = self._orders.get(cid)
            live = rec is not None
            if rec is None:
                rec = self._finished.get(cid)
                if rec is None:
                    return
            filled = result.filled_quantity
            res = self._parents.get(rec.owner) if rec.owner is not None else None
            if filled > rec.filled:
                delta = filled - rec.filled
                self._net[rec.symbol] = self._net.get(rec.symbol, 0.0) + (
                    delta if rec.side is OrderSide.BUY else -delta
                )
                rec.filled = filled
                if res is not None:
                    res.left -= delta
            if not live:
                if res is not None:
                    self._rebalance(res)
                return
            if result.quantity > 0:
                rec.quantity = result.quantity  # an amend may change it
            if result.status.is_final:
                del self._orders[cid]
                self._unwork(rec)
                finished = self._finished
                finished[cid] = rec
                if len(finished) > REMEMBER_FINISHED:
                    finished.popitem(last=False)
                return
            leaves = max(rec.quantity - rec.filled, 0.0)
            key = (rec.symbol, rec.side)
            self._working[key] = self._working.get(key, 0.0) + leaves - rec.leaves
            if res is not None:
                res.out += leaves - rec.leaves
                self._rebalance(res)
            rec.leaves = leaves

    # -- inside (lock held unless said) -----------------------------------------------------
    def _unwork(self, rec: _Record) -> None:
        key = (rec.symbol, rec.side)
        self._working[key] = self._working.get(key, 0.0) - rec.leaves
        res = self._parents.get(rec.owner) if rec.owner is not None else None
        if res is not None:
            # What the child leaves unfilled, its parent has yet to send again.
            res.out -= rec.leaves
            self._rebalance(res)
        rec.leaves = 0.0
        self._uncount(key)

    def _uncount(self, key: tuple[str, OrderSide]) -> None:
        """One order or parent less working on a side."""
        count = self._working_count.get(key, 0) - 1
        if count <= 0:
            # Exactly 0 once nothing works: float sums of many orders would drift.
            self._working_count.pop(key, None)
            self._working.pop(key, None)
        else:
            self._working_count[key] = count

    def _rebalance(self, res: _Reservation) -> None:
        """The parent's reservation follows left - out; the side's working quantity with it."""
        reserved = max(res.left - res.out, 0.0)
        if reserved != res.reserved:
            key = (res.symbol, res.side)
            self._working[key] = self._working.get(key, 0.0) + reserved - res.reserved
            res.reserved = reserved

    def _owner(self, order: Order) -> tuple[str, _Reservation] | None:
        """The accepted parent a child (or a split child's piece) draws on, if any."""
        pid = order.parent_id
        if pid is None:
            return None
        res = self._parents.get(pid)
        if res is None:
            pid = self._placing.get(pid)  # type: ignore[assignment]
            res = self._parents.get(pid) if pid is not None else None
        if res is None or res.symbol != order.symbol or res.side is not order.side:
            return None
        return pid, res  # type: ignore[return-value]

    def _pricing(self, order: Order, read_book: BookReader) -> _Pricing:
        """The prices the limits need (lock not held: reading a book may call `update`).

        Cost per order: one read of the touch (depth 1). For the simulated venue that
        is a lock, two version checks and a snapshot of cached levels (a microsecond or
        two); a MARKET order larger than the touch reads up to WALK_DEPTH levels once more.
        """
        book = read_book(1)
        symbol = order.symbol
        mid = book.mid if book is not None else None
        if mid is not None:
            self._last_mid[symbol] = mid  # a lone dict store: atomic under the GIL
        else:
            mid = self._last_mid.get(symbol)
        if order.price is not None:
            return _Pricing(order.price, mid, order.price)
        if order.type is not OrderType.MARKET:
            # A parent without a price: judged at the mid; its children meet the band.
            return _Pricing(mid, mid, None)
        buying = order.side is OrderSide.BUY
        levels: tuple[BookLevel, ...] = ()
        if book is not None:
            levels = book.asks if buying else book.bids
        if levels and levels[0].quantity < order.quantity:
            deep = read_book(WALK_DEPTH)
            if deep is not None:
                levels = deep.asks if buying else deep.bids
        if not levels:
            # Nothing to walk: the venue will say there is no liquidity.
            return _Pricing(mid, mid, None)
        if mid is None:
            mid = levels[0].price
        band = self._limits.price_band_pct / 100.0
        edge = mid * (1 + band) if buying else mid * (1 - band)
        worst = levels[0].price
        left = order.quantity
        for level in levels:
            worst = level.price
            if (worst > edge) if buying else (worst < edge):
                break  # past the band: that is the price to report
            left -= level.quantity
            if left <= 0:
                break
        return _Pricing(worst, mid, worst, "worst expected price")

    def _judge(
        self,
        order: Order,
        pricing: _Pricing,
        *,
        flow: bool,
        now: float,
        replacing: _Record | None = None,
        shares: dict[str, tuple[float, str]] | None = None,
        draw: float = 0.0,
    ) -> tuple[str | None, str | None]:
        """(limit, reason) of the first breach, or (None, None). Given `shares`, every
        per-order limit's share of use goes there with a line about it, and the judging
        goes on past a breach (the ticket shows the notional of a refused order too);
        without, nothing is formatted unless refused: this runs for every order. `draw`:
        how much of the order its parent's reservation, counted as working, already holds."""
        limits = self._limits
        symbol, qty, side = order.symbol, order.quantity, order.side
        max_qty, max_notional, max_position = limits.for_symbol(symbol)
        found: tuple[str | None, str | None] = (None, None)
        if max_qty is not None:
            if shares is not None:
                share = qty / max_qty
                shares["quantity"] = (share, f"quantity {_qty(qty)} is {share:.0%} of max {_qty(max_qty)} ({symbol})")
            if qty > max_qty:
                found = ("quantity", f"quantity {_qty(qty)} > max {_qty(max_qty)} ({symbol})")
                if shares is None:
                    return found
        price = pricing.price
        if price is None:
            if found[0] is not None:
                return found
            return ("price_band", f"no price for {symbol} to judge a {order.type.value} order by: "
                                  "the book is empty and no mid was seen before")
        ccy = _quote_currency(symbol)
        notional = qty * price
        if shares is not None:
            share = notional / max_notional
            shares["notional"] = (share, f"notional {_money(notional)} is {share:.0%} of max "
                                         f"{_money(max_notional)} {ccy} ({symbol})")
        if notional > max_notional and found[0] is None:
            found = ("notional", f"notional {_money(notional)} > max {_money(max_notional)} {ccy} ({symbol})")
            if shares is None:
                return found
        mid, judged = pricing.mid, pricing.band_price
        if judged is not None and mid is not None and mid > 0:
            band = limits.price_band_pct
            # Through the mid in the order's direction (see the module rules); < 0 is passive.
            away = (judged - mid if side is OrderSide.BUY else mid - judged) / mid * 100.0
            if shares is not None:
                shares["price_band"] = (max(away, 0.0) / band, f"{pricing.band_what} {_price(judged)} is "
                                        f"{_pct(away)}% from the mid {_price(mid)} (band {band:g}%)")
            if away > band and found[0] is None:
                found = ("price_band", f"{pricing.band_what} {_price(judged)} is {_pct(away)}% from the mid "
                                       f"{_price(mid)}: outside the {band:g}% band")
                if shares is None:
                    return found
        net = self._net.get(symbol, 0.0)
        held = net if side is OrderSide.BUY else -net
        working = max(self._working.get((symbol, side), 0.0) - draw, 0.0)
        this = qty
        if replacing is not None:
            working -= replacing.leaves
            this = max(qty - replacing.filled, 0.0)
        exposure = (held + working + this) * price
        if shares is not None:
            share = max(exposure, 0.0) / max_position
            shares["position"] = (share, f"position {_money(exposure)} is {share:.0%} of max "
                                         f"{_money(max_position)} {ccy} ({symbol} {side.value})")
        if exposure > max_position and found[0] is None:
            found = ("position", f"position {_money(exposure)} > max {_money(max_position)} {ccy} "
                                 f"({symbol} {side.value}: {_qty(held)} filled, {_qty(working)} working, "
                                 f"{_qty(this)} this order)")
            if shares is None:
                return found
        if found[0] is not None or not flow:
            return found
        open_now = len(self._orders) + 1
        if open_now > limits.max_open_orders:
            return ("open_orders", f"open orders {open_now:,} > max {limits.max_open_orders:,}")
        sent = self._sent
        while sent and sent[0] <= now - 1.0:
            sent.popleft()
        rate = len(sent) + 1
        if rate > limits.max_orders_per_s:
            return ("rate", f"order rate {rate:,} in the last second > max {limits.max_orders_per_s:,}/s")
        return found


# -- the file -------------------------------------------------------------------------------
TOP_KEYS = (
    "max_order_notional", "price_band_pct", "max_open_orders", "max_orders_per_s",
    "max_position_notional", "confirm_share", "symbols",
)

_HEADER = """\
# execdesk pre-trade risk limits (the fat-finger check).
#
# Every order and algorithm child is checked against these before it reaches a
# venue, and an algorithm parent once as a whole when it is accepted. A breach
# is refused (REJECTED) with a reason naming the limit and both values.
# Amounts are in the quote currency (USD for BTC/USD). Every value must be a
# finite number > 0. Edit, then restart the desk to apply.

# Largest notional of one order.
max_order_notional = {max_order_notional}

# A LIMIT price farther than this from the mid, in percent, is refused; so is a
# MARKET order whose worst expected price in the book would be.
price_band_pct = {price_band_pct}

# Orders working at the venues at once (algorithm children included).
max_open_orders = {max_open_orders}

# Orders sent to venues in any one second (algorithm children included).
max_orders_per_s = {max_orders_per_s}

# Per symbol: the filled position plus working orders on the same side.
max_position_notional = {max_position_notional}

# The ticket asks for an explicit confirmation for an order that uses more
# than this share (0-1) of any of its limits.
confirm_share = {confirm_share}

# Per symbol: max_quantity (in the base unit, BTC for BTC/USD); max_notional
# and max_position override the values above for that symbol. A symbol not
# listed has no quantity limit.
"""


def _toml_number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):_}"
    return repr(float(value))


def _render(limits: RiskLimits) -> str:
    text = _HEADER.format(**{k: _toml_number(getattr(limits, k)) for k in TOP_KEYS if k != "symbols"})
    for symbol, own in limits.symbols.items():
        text += f'\n[symbols."{symbol}"]\n'
        for key in SYMBOL_KEYS:
            value = getattr(own, key)
            if value is not None:
                text += f"{key} = {_toml_number(value)}\n"
    return text


def _from_mapping(data: Mapping[str, Any]) -> RiskLimits:
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise ConfigurationError(
            f"unknown key {unknown[0]!r} (accepted: {', '.join(sorted(TOP_KEYS))})"
        )
    kwargs = {k: v for k, v in data.items() if k != "symbols"}
    if "symbols" in data:
        table = data["symbols"]
        if not isinstance(table, Mapping):
            raise ConfigurationError(
                f"symbols must be tables like [symbols.\"BTC/USD\"], got {table!r}"
            )
        symbols = {}
        for symbol, entry in table.items():
            where = f'symbols."{symbol}"'
            if not isinstance(entry, Mapping):
                raise ConfigurationError(
                    f"{where} must be a table of {', '.join(SYMBOL_KEYS)}, got {entry!r}"
                )
            odd = sorted(set(entry) - set(SYMBOL_KEYS))
            if odd:
                raise ConfigurationError(
                    f"unknown key {where}.{odd[0]} (accepted: {', '.join(SYMBOL_KEYS)})"
                )
            try:
                symbols[symbol] = SymbolLimits(**entry)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{where}.{exc}") from None
        kwargs["symbols"] = symbols
    return RiskLimits(**kwargs)


# A limits file is a few hundred bytes; one this large is not a limits file, and reading
# it whole (or a device that never ends) would hold the desk's start for seconds.
MAX_FILE_BYTES = 1 << 20

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_a_limits_file(path: Path, st: os.stat_result) -> str | None:
    """Why a file with this stat is refused before a byte of it is read (None: read it)."""
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "a special file")
        return f"cannot read the risk limits file {path}: it is {kind}, not a regular file"
    if st.st_size > MAX_FILE_BYTES:
        return (
            f"cannot read the risk limits file {path}: it is {st.st_size:,} bytes, over the "
            f"{MAX_FILE_BYTES:,} (1 MiB) a limits file may be"
        )
    return None


def _read_limits_file(path: Path) -> bytes:
    """The file's bytes, once it is known to be a regular file of at most MAX_FILE_BYTES."""
    try:
        problem = _not_a_limits_file(path, os.stat(path))
        if problem is not None:
            raise ConfigurationError(problem)
        # Opened without blocking and judged again by what was opened: a FIFO put in the
        # file's place after the stat must not hang the desk.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as file:
            problem = _not_a_limits_file(path, os.fstat(file.fileno()))
            if problem is not None:
                raise ConfigurationError(problem)
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the risk limits file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:  # it grew after the stat
        raise ConfigurationError(
            f"cannot read the risk limits file {path}: it is over the {MAX_FILE_BYTES:,} (1 MiB) bytes "
            "a limits file may be"
        )
    return raw


def load(path: str | os.PathLike[str]) -> RiskLimits:
    """Read limits from a TOML file; any problem is a ConfigurationError naming the
    file and the key. Keys left out keep their defaults (the symbols table as a whole).
    Only a regular file of at most MAX_FILE_BYTES is read."""
    path = Path(path)
    raw = _read_limits_file(path)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"risk limits file {path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"risk limits file {path} is not valid TOML: {exc}") from None
    try:
        return _from_mapping(data)
    except ConfigurationError as exc:
        raise ConfigurationError(f"risk limits file {path}: {exc}") from None


def write_default(path: str | os.PathLike[str], limits: RiskLimits = DEFAULT_RISK_LIMITS) -> Path:
    """Write `limits` as a commented TOML file an operator can edit. Atomic: the file
    appears whole or not at all, and no temporary file is left behind on failure.
    Never replaces an existing file (FileExistsError)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(_render(limits))
            out.flush()
            os.fsync(out.fileno())
        # A hard link publishes the whole file and fails if one appeared meanwhile:
        # an operator's file is never replaced.
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:
            # A file system without hard links (FAT, some network shares): replace, once
            # more sure there is nothing to replace.
            if path.exists():
                raise FileExistsError(f"{path} exists") from None
            os.replace(tmp, path)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    return path


def load_or_create(path: str | os.PathLike[str],
                   known_symbols: Collection[str] | None = None) -> tuple[RiskLimits, str | None]:
    """The limits to run under, and a problem to show the operator (or None).

    No file: the defaults are written there (so they can be edited) and used. A
    file that cannot be read or is wrong: the built-in defaults, and a message
    naming the file and the key; the file is left as it is. `known_symbols` (what
    the venues list): a file setting limits for a symbol none of them lists is
    wrong too (a typo such as BTC/UDS leaves the symbol meant without its limit).
    """
    path = Path(path)
    if not path.exists():
        try:
            write_default(path)
        except FileExistsError:
            pass  # written meanwhile: read it below
        except OSError as exc:
            return DEFAULT_RISK_LIMITS, (
                f"could not write the default risk limits to {path} ({exc.strerror or exc}); "
                "using the built-in defaults"
            )
        else:
            return DEFAULT_RISK_LIMITS, None
    try:
        limits = load(path)
    except ConfigurationError as exc:
        return DEFAULT_RISK_LIMITS, f"{exc}; using the built-in risk limits until it is fixed"
    if known_symbols is not None:
        unknown = [symbol for symbol in limits.symbols if symbol not in known_symbols]
        if unknown:
            listed = ", ".join(sorted(known_symbols)[:6]) or "none"
            return DEFAULT_RISK_LIMITS, (
                f"risk limits file {path}: symbols.{quote(unknown[0])} names a symbol no venue lists (they list "
                f"{listed}); using the built-in risk limits until it is fixed")
    return limits, None
