"""A sans-IO limit order book: price-time priority on integer ticks and lots.

Rules of this module:

* Everything is an integer: prices in ticks, sizes in lots, so every sum is
  exact and quantity is conserved. The book knows no clock, no fees, no
  floats and does no I/O; `engine.venues.sim.exchange` turns its matches into fills.
* Price-time priority: a better price always fills first; at one price the
  order that arrived first fills first. An incoming order that crosses
  fills at the *resting* orders' prices, level by level, partially when a
  level has less than it needs.
* The book never rests crossed: an incoming limit order matches everything
  it crosses before its remainder rests; a market order never rests.
* What happens to the part of an order that does not fill at once is the
  caller's choice (`Remainder`): REST on the book (GTC, DAY, GTD), EXPIRE
  (IOC, and always for market orders), or ALL_OR_NONE (FOK: fill completely
  at once or not at all, leaving the book untouched).
* Amend is cancel/replace: an order keeps its place in the queue only when
  its size shrinks at the same price. A larger size or a new price makes it
  a new arrival at the back of its level (and a new price may cross, in
  which case it matches like a new order). Amending the quantity to no more
  than what already filled is refused with a `BookError`.
* Conservation: for every order, quantity == filled + resting leaves +
  canceled + expired, and no order is filled past its quantity.

Data layout, chosen for speed (a one-lot market order costs about a
microsecond): per side, a dict price -> level (a deque of orders in arrival
order) and a sorted list of keys with the best price at the end, so the best
level is `keys[-1]` and removing it is `list.pop()`. Canceled orders are
only marked dead (leaves 0) and skipped when matching reaches them, so a
cancel costs O(1) instead of a deque search; a level compacts itself when
dead entries outnumber live ones.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Hashable, Iterator
from enum import Enum
from typing import Any

from ..errors import ExecdeskError
from ..models import OrderSide

__all__ = ["BookError", "BookOrder", "Execution", "OrderBook", "Remainder"]

_BUY = OrderSide.BUY
_SELL = OrderSide.SELL
# A key every real price key is above: a market order crosses every level. Not a big
# int: prices in ticks are unbounded ints (1e12 at a 1e-8 tick is 1e20 ticks, past 2**62).
_ANY_PRICE = -math.inf
# Compact a level's deque once it holds this many dead entries and more dead than live.
_COMPACT_AFTER = 32


class BookError(ExecdeskError, ValueError):
    """A request the book cannot apply (unknown order, amend below what filled, bad size)."""


class Remainder(Enum):
    """What becomes of the part of an incoming order that does not fill at once."""

    REST = "REST"  # rests on the book (GTC, DAY, GTD limit orders)
    EXPIRE = "EXPIRE"  # is dropped (IOC, market orders)
    ALL_OR_NONE = "ALL_OR_NONE"  # FOK: fill all of it at once or none of it


_REST = Remainder.REST
_EXPIRE = Remainder.EXPIRE
_ALL_OR_NONE = Remainder.ALL_OR_NONE


class BookOrder:
    """An order as the book holds it. `owner` is the caller's, the book never looks at it.

    `quantity` is the order's total size in lots (amend changes it), `filled`
    what has traded, `leaves` what is open on the book (0 once the order is
    filled, canceled, expired or replaced).
    """

    __slots__ = ("order_id", "side", "price", "quantity", "filled", "leaves", "owner")

    def __init__(
        self,
        order_id: Hashable,
        side: OrderSide,
        price: int | None,
        quantity: int,
        filled: int = 0,
        owner: Any = None,
    ) -> None:
        self.order_id = order_id
        self.side = side
        self.price = price
        self.quantity = quantity
        self.filled = filled
        self.leaves = 0
        self.owner = owner

    def __repr__(self) -> str:
        return (
            f"BookOrder({self.order_id!r}, {self.side.value}, price={self.price}, "
            f"quantity={self.quantity}, filled={self.filled}, leaves={self.leaves})"
        )


class Execution:
    """What one submit or amend did.

    `fills` is a list of `(resting order, price in ticks, lots)` in the order
    they traded; `filled` their total; `resting` the incoming order if (part
    of) it now rests; `expired` the lots dropped (IOC, market, FOK refused).
    Conservation: requested == filled + expired + (resting.leaves if resting).
    """

    __slots__ = ("fills", "filled", "resting", "expired")

    def __init__(
        self,
        fills: list[tuple[BookOrder, int, int]],
        filled: int,
        resting: BookOrder | None,
        expired: int,
    ) -> None:
        self.fills = fills
        self.filled = filled
        self.resting = resting
        self.expired = expired

    def __repr__(self) -> str:
        return (
            f"Execution(filled={self.filled}, expired={self.expired}, "
            f"fills={len(self.fills)}, resting={self.resting!r})"
        )


class _Level:
    __slots__ = ("orders", "total", "count", "dead")

    def __init__(self) -> None:
        self.orders: deque[BookOrder] = deque()
        self.total = 0  # open lots of the live orders
        self.count = 0  # live orders
        self.dead = 0  # canceled/replaced entries still in the deque


class _Side:
    """One side of the book. Keys are price * sign, sorted ascending, best last:
    bids use +price (highest best), asks -price (lowest best)."""

    __slots__ = ("sign", "levels", "keys", "version")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.levels: dict[int, _Level] = {}
        self.keys: list[int] = []
        self.version = 0  # bumped on every change, so readers can reuse what they derived

    def drop_level(self, price: int) -> None:
        del self.levels[price]
        keys = self.keys
        key = price * self.sign
        if keys[-1] == key:
            keys.pop()
        else:
            del keys[bisect_left(keys, key)]


class OrderBook:
    """One symbol's book. See the module docstring for its rules."""

    __slots__ = ("symbol", "_bids", "_asks", "_orders")

    def __init__(self, symbol: str = "") -> None:
        self.symbol = symbol
        self._bids = _Side(1)
        self._asks = _Side(-1)
        self._orders: dict[Hashable, BookOrder] = {}

    # -- reading --------------------------------------------------------------
    def __len__(self) -> int:
        """Resting orders."""
        return len(self._orders)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders

    def get(self, order_id: Hashable) -> BookOrder | None:
        """The resting order with that id, or None."""
        return self._orders.get(order_id)

    def version(self, side: OrderSide) -> int:
        """A number that changes whenever that side of the book changes (for caches)."""
        return self._bids.version if side is _BUY else self._asks.version

    def best_bid(self) -> int | None:
        keys = self._bids.keys
        return keys[-1] if keys else None

    def best_ask(self) -> int | None:
        keys = self._asks.keys
        return -keys[-1] if keys else None

    def depth(self, side: OrderSide, levels: int = 10) -> list[tuple[int, int, int]]:
        """`(price, lots, orders)` of the best `levels` price levels of a side, best first."""
        s = self._bids if side is _BUY else self._asks
        sign, book = s.sign, s.levels
        out = []
        for key in reversed(s.keys[-levels:] if levels > 0 else ()):
            level = book[key * sign]
            out.append((key * sign, level.total, level.count))
        return out

    def volume(self, side: OrderSide) -> int:
        """Total open lots on a side."""
        s = self._bids if side is _BUY else self._asks
        return sum(level.total for level in s.levels.values())

    def orders(self, side: OrderSide | None = None) -> Iterator[BookOrder]:
        """Resting orders in priority order (best price first, then arrival)."""
        sides = (self._bids, self._asks) if side is None else (
            (self._bids,) if side is _BUY else (self._asks,)
        )
        for s in sides:
            for key in reversed(s.keys):
                for o in s.levels[key * s.sign].orders:
                    if o.leaves:
                        yield o

    def available(self, side: OrderSide, limit: int | None = None, needed: int | None = None) -> int:
        """Lots an incoming order of `side` could take at `limit` or better
        (any price when None); stops counting once `needed` is reached."""
        opp = self._asks if side is _BUY else self._bids
        limit_key = _ANY_PRICE if limit is None else limit * opp.sign
        total = 0
        levels, sign = opp.levels, opp.sign
        for key in reversed(opp.keys):
            if key < limit_key:
                break
            total += levels[key * sign].total
            if needed is not None and total >= needed:
                break
        return total

    # -- changing -------------------------------------------------------------
    def submit(
        self,
        order_id: Hashable,
        side: OrderSide,
        lots: int,
        price: int | None = None,
        remainder: Remainder = _REST,
        owner: Any = None,
    ) -> Execution:
        """Match an incoming order; `price` None is a market order (never rests).

        A resting order needs an id the book does not hold; a market order or
        a non-resting remainder may pass any id (even None).
        """
        if lots <= 0:
            raise BookError(f"lots must be a whole number > 0, got {lots!r}")
        if price is not None and price <= 0:
            raise BookError(f"price must be a whole number of ticks > 0, got {price!r}")
        if side is _BUY:
            opp = self._asks
        else:
            opp = self._bids
        limit_key = _ANY_PRICE if price is None else price * opp.sign
        if remainder is _ALL_OR_NONE:
            if self.available(side, price, lots) < lots:
                return Execution([], 0, None, lots)
        elif remainder is _REST and price is not None and order_id in self._orders:
            raise BookError(f"order id {order_id!r} is already resting on the book")
        fills: list[tuple[BookOrder, int, int]] = []
        left = self._take(opp, lots, limit_key, fills) if opp.keys else lots
        if not left:
            return Execution(fills, lots, None, 0)
        if price is None or remainder is not _REST:
            return Execution(fills, lots - left, None, left)
        o = BookOrder(order_id, side, price, lots, lots - left, owner)
        self._rest(o, left)
        return Execution(fills, lots - left, o, 0)

    def cancel(self, order_id: Hashable) -> int:
        """Take a resting order off the book; returns its open lots (0 if not resting)."""
        o = self._orders.pop(order_id, None)
        if o is None:
            return 0
        leaves = o.leaves
        self._unlink(o)
        return leaves

    def amend(
        self, order_id: Hashable, quantity: int | None = None, price: int | None = None
    ) -> Execution:
        """Cancel/replace a resting order to a new total `quantity` (lots, including
        what filled) and/or a new `price`. See the module rules for priority."""
        o = self._orders.get(order_id)
        if o is None:
            raise BookError(f"order {order_id!r} is not resting on the book")
        new_qty = o.quantity if quantity is None else quantity
        new_price = o.price if price is None else price
        if new_qty <= o.filled:
            raise BookError(
                f"quantity {new_qty} lots is not above the {o.filled} lots already filled "
                f"for order {order_id!r}; cancel it instead"
            )
        if new_price is None or new_price <= 0:
            raise BookError(f"price must be a whole number of ticks > 0, got {new_price!r}")
        if new_price == o.price and new_qty <= o.quantity:
            # Shrinking in place keeps time priority (nobody behind is worse off).
            cut = o.quantity - new_qty
            if cut:
                o.quantity = new_qty
                o.leaves -= cut
                s = self._bids if o.side is _BUY else self._asks
                s.levels[o.price].total -= cut  # type: ignore[index]
                s.version += 1
            return Execution([], 0, o, 0)
        # Replace: the old entry dies where it stands, a new one arrives now.
        del self._orders[order_id]
        self._unlink(o)
        side, filled, owner = o.side, o.filled, o.owner
        opp = self._asks if side is _BUY else self._bids
        fills: list[tuple[BookOrder, int, int]] = []
        open_lots = new_qty - filled
        left = self._take(opp, open_lots, new_price * opp.sign, fills) if opp.keys else open_lots
        traded = open_lots - left
        if not left:
            o.quantity, o.filled = new_qty, new_qty
            return Execution(fills, traded, None, 0)
        n = BookOrder(order_id, side, new_price, new_qty, filled + traded, owner)
        self._rest(n, left)
        return Execution(fills, traded, n, 0)

    # -- internals ----------------------------------------------------------------
    def _take(
        self, opp: _Side, lots: int, limit_key: float, fills: list[tuple[BookOrder, int, int]]
    ) -> int:
        """Fill up to `lots` from the best levels of `opp` down to `limit_key`; returns what is left."""
        keys, levels, sign, index = opp.keys, opp.levels, opp.sign, self._orders
        append = fills.append
        opp.version += 1
        while keys:
            key = keys[-1]
            if key < limit_key:
                break
            price = key * sign
            level = levels[price]
            queue = level.orders
            while queue:
                o = queue[0]
                leaves = o.leaves
                if not leaves:  # canceled or replaced earlier
                    queue.popleft()
                    level.dead -= 1
                    continue
                if leaves > lots:
                    o.leaves = leaves - lots
                    o.filled += lots
                    level.total -= lots
                    append((o, price, lots))
                    return 0
                o.leaves = 0
                o.filled += leaves
                level.total -= leaves
                level.count -= 1
                queue.popleft()
                del index[o.order_id]
                append((o, price, leaves))
                lots -= leaves
                if not lots:
                    break
            if not level.count:
                del levels[price]
                keys.pop()
            if not lots:
                return 0
        return lots

    def _rest(self, o: BookOrder, lots: int) -> None:
        o.leaves = lots
        s = self._bids if o.side is _BUY else self._asks
        s.version += 1
        price = o.price
        level = s.levels.get(price)  # type: ignore[arg-type]
        if level is None:
            level = s.levels[price] = _Level()  # type: ignore[index]
            key = price * s.sign  # type: ignore[operator]
            keys = s.keys
            if not keys or key > keys[-1]:
                keys.append(key)
            else:
                insort(keys, key)
        level.orders.append(o)
        level.total += lots
        level.count += 1
        self._orders[o.order_id] = o

    def _unlink(self, o: BookOrder) -> None:
        """Mark a resting order dead in its level (already removed from the id index)."""
        s = self._bids if o.side is _BUY else self._asks
        s.version += 1
        price = o.price
        level = s.levels[price]  # type: ignore[index]
        level.total -= o.leaves
        level.count -= 1
        o.leaves = 0
        if not level.count:
            s.drop_level(price)  # type: ignore[arg-type]
            return
        level.dead += 1
        if level.dead > _COMPACT_AFTER and level.dead > level.count:
            level.orders = deque(x for x in level.orders if x.leaves)
            level.dead = 0

    def entries_at(self, side: OrderSide, price: int) -> int:
        """How many entries a price level keeps, canceled ones not yet dropped included
        (0 for no level): what a level costs in memory."""
        level = (self._bids if side is OrderSide.BUY else self._asks).levels.get(price)
        return len(level.orders) if level is not None else 0

    def check(self) -> None:
        """Assert the book's internal invariants (for tests): sorted keys matching
        levels, totals and counts right, nothing crossed, the id index exact."""
        seen = 0
        for s in (self._bids, self._asks):
            assert s.keys == sorted(s.keys), "price keys out of order"
            assert sorted(k * s.sign for k in s.keys) == sorted(s.levels), "keys != levels"
            for price, level in s.levels.items():
                live = [o for o in level.orders if o.leaves]
                assert live, f"empty level {price} left on the book"
                assert len(live) == level.count, f"count wrong at {price}"
                assert len(level.orders) - len(live) == level.dead, f"dead count wrong at {price}"
                assert sum(o.leaves for o in live) == level.total, f"total wrong at {price}"
                for o in live:
                    assert o.price == price and self._orders.get(o.order_id) is o
                    assert o.filled + o.leaves <= o.quantity
                seen += len(live)
        assert seen == len(self._orders), "id index out of step with the levels"
        bid, ask = self.best_bid(), self.best_ask()
        assert bid is None or ask is None or bid < ask, f"book rests crossed: {bid} >= {ask}"
