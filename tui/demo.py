"""`--demo`: a synthetic operator, so the desk can be seen busy and measured.

A steady stream of every order type through the same Engine calls the
ticket uses: mostly small market and IOC limit orders alternating sides
(about 1,000 fills a second on the default venues, as the machine allows),
and every two seconds an ICEBERG, TWAP, VWAP or SMART parent. It yields to the event loop between
bursts, so the operator's keys stay responsive.
"""

from __future__ import annotations

import math
import random
import time
from typing import TYPE_CHECKING

import anyio

from engine import Order, OrderSide, OrderType, TimeInForce
from engine.errors import ExecdeskError

if TYPE_CHECKING:
    from .app import DeskApp

# Orders a second the synthetic operator aims for. With the pauses it takes when the
# loop is late it sends ~900, at ~1.1 fills each: the issue's ~1,000 fills a second
# (988 measured by `execdesk bench --only desk_under_load`). Paced by rate, not
# by bursts and pauses: "10 orders, then sleep 10 ms" settled near 650 orders a
# second whatever the machine could do, because each round also waited its turn
# on the event loop.
TARGET_ORDERS_S = 1_000.0
PAUSE_S = 0.01  # between wake-ups; each sends the orders that fell due since the last
BURST = 10  # orders sent against one symbol and one read of its book
MAX_BURST = 50  # owed orders beyond this after a stall are dropped, not caught up
# The synthetic operator shares the event loop with the engine and the screen.
# When the loop wakes it later than asked by more than this, it slows down, so
# the desk stays responsive and venue latencies are not inflated by our own load.
LAG_BUDGET_S = 0.05
MIN_ORDERS_S = 20.0
HALTED_POLL_S = 0.5
SLOW_DOWN = 0.7  # the rate, after a late wake-up
SPEED_UP = 1.01  # the rate, after a wake-up on time (back to the target in ~0.5 s)
# One algorithm parent per this many seconds. By time, not by share of orders: a share
# of ~600 orders a second started ~9 parents a second, 500 working at once (each a
# minute long), which is no operator's flow and made the scheduler the desk's lump.
PARENT_EVERY_S = 2.0
# About $3,000-$15,000 an order. Smart routing finds most of that within one level of
# deep or thrift, so an order brings ~1.1 fills (measured), more on the thin venue.
SIZES = {"BTC/USD": 0.15, "ETH/USD": 2.0, "SOL/USD": 40.0}


def demo_order(rng: random.Random, order_id: str, mid: float | None, symbol: str, *, parent: bool = False) -> Order:
    side = OrderSide.BUY if rng.random() < 0.5 else OrderSide.SELL
    size = SIZES.get(symbol, 1.0)
    roll = rng.random()
    if not parent or mid is None:
        if roll < 0.7 or mid is None:
            return Order(id=order_id, symbol=symbol, side=side, type=OrderType.MARKET,
                         quantity=round(size * rng.uniform(0.5, 2.0), 2))
        offset = mid * 0.0004 * side.sign
        return Order(id=order_id, symbol=symbol, side=side, type=OrderType.LIMIT,
                     quantity=round(size * rng.uniform(0.5, 2.0), 2), price=round(mid + offset, 2),
                     time_in_force=TimeInForce.IOC)
    kind = rng.choice([OrderType.ICEBERG, OrderType.TWAP, OrderType.VWAP, OrderType.SMART])
    qty = round(size * 5, 2)
    if kind is OrderType.ICEBERG:
        return Order(id=order_id, symbol=symbol, side=side, type=kind, quantity=qty,
                     price=round(mid * (1 + 0.0003 * side.sign), 2), metadata={"display_size": round(size, 2)})
    if kind is OrderType.TWAP:
        return Order(id=order_id, symbol=symbol, side=side, type=kind, quantity=qty,
                     metadata={"duration_s": 60, "slices": 12})
    if kind is OrderType.VWAP:
        return Order(id=order_id, symbol=symbol, side=side, type=kind, quantity=qty,
                     metadata={"duration_s": 60, "max_participation": 0.3})
    return Order(id=order_id, symbol=symbol, side=side, type=kind, quantity=qty,
                 metadata={"urgency": rng.choice(["low", "normal", "high"]), "duration_s": 60})


class Pacer:
    """How many orders fall due at each wake-up (no clock of its own: easy to test).

    Orders accrue at `rate` a second, up to `max_burst` owed. A wake-up later than
    LAG_BUDGET_S cuts the rate (the desk is busy); each one on time brings it back
    towards the target.
    """

    def __init__(self, target_per_s: float = TARGET_ORDERS_S, *, max_burst: int = MAX_BURST) -> None:
        if not 0 < target_per_s < math.inf:
            raise ValueError(f"target_per_s must be a finite number > 0, got {target_per_s!r}")
        if isinstance(max_burst, bool) or not isinstance(max_burst, int) or max_burst < 1:
            raise ValueError(f"max_burst must be a whole number >= 1, got {max_burst!r}")
        self.target_per_s = target_per_s
        self.max_burst = max_burst
        self.rate = target_per_s
        self._owed = 0.0

    def due(self, elapsed_s: float) -> int:
        """Orders to send now, `elapsed_s` after the last call."""
        self._owed = min(self._owed + self.rate * max(elapsed_s, 0.0), float(self.max_burst))
        n = int(self._owed)
        self._owed -= n
        return n

    def woke(self, lag_s: float) -> None:
        """The loop woke us `lag_s` later than asked."""
        if lag_s > LAG_BUDGET_S:
            self.rate = max(self.rate * SLOW_DOWN, min(MIN_ORDERS_S, self.target_per_s))
        else:
            self.rate = min(self.rate * SPEED_UP, self.target_per_s)


async def run_demo(app: DeskApp) -> None:
    engine = app.engine
    rng = random.Random(app.seed)
    symbols = app.symbols or ["BTC/USD"]
    supported = engine.supported_types()
    pacer = Pacer()
    last = time.perf_counter()
    next_parent = time.monotonic() + PARENT_EVERY_S / 2
    while True:
        if engine.halted_reason is not None:
            # Halted: the engine would refuse every order (REJECTED, "trading halted"),
            # a flood of rejections on the blotter and the log. Wait for the operator.
            await anyio.sleep(HALTED_POLL_S)
            last = time.perf_counter()
            continue
        now = time.perf_counter()
        due = pacer.due(now - last)
        last = now
        while due > 0:
            symbol = symbols[0] if rng.random() < 0.7 else rng.choice(symbols)
            book = engine.smart.merged_book(symbol, depth=1)  # once per burst: it reads every venue
            mid = book.mid if book else None
            for _ in range(min(due, BURST)):
                due -= 1
                order_id = f"demo-{app.next_order_id()}"
                parent = time.monotonic() >= next_parent
                if parent:
                    next_parent = time.monotonic() + PARENT_EVERY_S
                try:
                    order = demo_order(rng, order_id, mid, symbol, parent=parent)
                except ValueError:
                    continue  # a generated value off the rules: skip it, never stop the demo
                if order.type.is_algorithm and order.type.value not in supported:
                    continue
                app.track_order(order, mine=False)
                try:
                    await engine.submit(order)
                except ExecdeskError:
                    app.orders.refuse(order.id, "not sent: the engine is stopping")
                    due = 0
                    await anyio.sleep(HALTED_POLL_S)  # the engine is stopping
                    break
        asked = time.perf_counter()
        await anyio.sleep(PAUSE_S)
        pacer.woke(time.perf_counter() - asked - PAUSE_S)
