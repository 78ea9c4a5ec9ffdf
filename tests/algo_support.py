"""Helpers for the algorithm tests: engines on the virtual clock, and a scripted venue.

Every algorithm test runs a parent through the real path (Engine ->
optimizer -> scheduler -> smart router -> order router -> venue) on a
`VirtualClock`, so an hour of schedule takes a fraction of a second.

`ScriptedVenue` is a tiny venue whose book and tape the test sets by hand
(nothing moves unless the test says so), for figures computed by hand: a
marketable order fills against its fixed levels (they do not deplete
between orders), a resting order fills when the test calls
`fill_resting`, and every fill prints on the public tape, as at a real
venue.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any

import anyio

from engine import Engine, FeeSchedule, Instrument, MarketConfig, Order, SimulatedExchange, VirtualClock
from engine.venues.sim.config import DEFAULT_INSTRUMENTS
from engine.models import Fill, Liquidity, OrderResult, OrderSide, OrderStatus, OrderType, TimeInForce
from engine.market_data import BookLevel, BookSnapshot, ExecutionReport, PublicTrade

BTC = "BTC/USD"


def run_virtual(clock: VirtualClock, main: Callable[[], Awaitable[Any]]) -> Any:
    """Run `main` on an event loop that keeps the clock's time (for sync tests, e.g. Hypothesis)."""
    box: list[Any] = []

    async def wrapper() -> None:
        box.append(await main())

    anyio.run(wrapper, backend_options=clock.backend_options())
    return box[0]


def quiet_venue(clock: VirtualClock, seed: int = 1, name: str = "sim", **market: Any) -> SimulatedExchange:
    """One simulated venue listing only BTC/USD: no latency, no faults (the default)."""
    return SimulatedExchange(
        name, clock=clock, seed=seed, instruments=[DEFAULT_INSTRUMENTS[BTC]], market=MarketConfig(**market),
    )


def one_venue_engine(clock: VirtualClock, venue: Any, seed: int = 1) -> Engine:
    return Engine({venue.name: venue}, clock=clock, seed=seed)


def parent_fills(engine: Engine, order_id: str) -> list[Fill]:
    state = engine.scheduler.parent(order_id)
    assert state is not None
    return sorted(state.fills, key=lambda f: f.timestamp)


class ScriptedVenue:
    """A venue the test scripts (see the module docstring). Sync and async forms."""

    SYMBOL = "TEST/USD"

    def __init__(
        self,
        clock: VirtualClock,
        name: str = "script",
        *,
        bid: float = 99.0,
        ask: float = 101.0,
        size: float = 10.0,
        fees: FeeSchedule = FeeSchedule(maker_bps=0.0, taker_bps=10.0),
    ) -> None:
        self.name = name
        self.fees = fees
        self.clock = clock
        self.instrument = Instrument(self.SYMBOL, Decimal("0.01"), Decimal("0.01"), Decimal("0.01"))
        self.bids: list[tuple[float, float]] = [(bid, size)]
        self.asks: list[tuple[float, float]] = [(ask, size)]
        self._working: dict[str, tuple[Order, list[Fill]]] = {}
        self._done: dict[str, OrderResult] = {}
        self.tape: list[PublicTrade] = []
        self._reports: list[Callable[[ExecutionReport], None]] = []
        self._trade_listeners: list[Callable[[PublicTrade], None]] = []
        self._seq = 0
        self.submitted: list[tuple[float, Order]] = []

    # -- scripting -------------------------------------------------------------------
    def set_book(self, bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> None:
        self.bids, self.asks = list(bids), list(asks)

    def print_trade(self, price: float, quantity: float, aggressor: OrderSide = OrderSide.BUY) -> None:
        """Someone else traded: a public trade on the tape."""
        self.tape.append(PublicTrade(self.name, self.SYMBOL, price, quantity, aggressor, self.clock.now()))

    def fill_resting(self, cid: str, quantity: float) -> None:
        """A taker traded against our resting order `cid` at its limit price."""
        order, fills = self._working[cid]
        fill = self._fill(order, order.price, quantity, Liquidity.MAKER)  # type: ignore[arg-type]
        fills.append(fill)
        filled = sum(f.quantity for f in fills)
        done = filled >= order.quantity - 1e-12
        status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        if done:
            del self._working[cid]
            self._done[cid] = self._result(order, status, fills)
        report = ExecutionReport(self.name, cid, self.SYMBOL, status, filled, order.quantity - filled,
                                 self.clock.now(), fill)
        for listener in list(self._reports):
            listener(report)

    # -- the venue ---------------------------------------------------------------------
    def instruments(self) -> Mapping[str, Instrument]:
        return {self.SYMBOL: self.instrument}

    def _fill(self, order: Order, price: float, qty: float, liq: Liquidity) -> Fill:
        self._seq += 1
        fee = self.fees.fee(price * qty, liq)
        self.tape.append(PublicTrade(self.name, self.SYMBOL, price, qty, order.side, self.clock.now()))
        return Fill(order.client_order_id or order.id, self.name, order.symbol, order.side, price, qty, fee,
                    liq, self.clock.now(), f"{self.name}-{self._seq}")

    def _result(self, order: Order, status: OrderStatus, fills: list[Fill], reason: str | None = None) -> OrderResult:
        qty = sum(f.quantity for f in fills)
        avg = sum(f.price * f.quantity for f in fills) / qty if qty else None
        return OrderResult(order.client_order_id or order.id, self.name, status, order.quantity, qty, avg,
                           list(fills), reason, order.symbol, order.side, order.price, self.clock.now())

    def submit(self, order: Order) -> OrderResult:
        cid = order.client_order_id or order.id
        self.submitted.append((self.clock.now(), order))
        if cid in self._working or cid in self._done:
            return OrderResult(cid, self.name, OrderStatus.REJECTED, order.quantity, reason="duplicate id")
        if order.symbol != self.SYMBOL:
            return OrderResult(cid, self.name, OrderStatus.REJECTED, order.quantity, reason="unknown symbol")
        levels = self.asks if order.side is OrderSide.BUY else self.bids
        left = order.quantity
        fills: list[Fill] = []
        for price, size in levels:
            if left <= 1e-12:
                break
            if order.price is not None and order.side.sign * (price - order.price) > 0:
                break
            take = min(left, size)
            fills.append(self._fill(order, price, round(take, 8), Liquidity.TAKER))
            left = round(left - take, 8)
        if left <= 1e-12:
            result = self._result(order, OrderStatus.FILLED, fills)
            self._done[cid] = result
            return result
        if order.type is OrderType.MARKET or order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            result = self._result(order, OrderStatus.EXPIRED, fills, "IOC remainder")
            self._done[cid] = result
            return result
        self._working[cid] = (order, fills)
        return self._result(order, OrderStatus.PARTIALLY_FILLED if fills else OrderStatus.NEW, fills)

    def cancel(self, cid: str) -> OrderResult:
        if cid not in self._working:
            return OrderResult(cid, self.name, OrderStatus.REJECTED, reason=f"{cid} is not working")
        order, fills = self._working.pop(cid)
        result = self._result(order, OrderStatus.CANCELED, fills, "canceled")
        self._done[cid] = result
        return result

    def amend(self, cid: str, quantity: float | None = None, price: float | None = None) -> OrderResult:
        return OrderResult(cid, self.name, OrderStatus.REJECTED, reason="amend not scripted")

    def status(self, cid: str) -> OrderResult:
        if cid in self._working:
            order, fills = self._working[cid]
            return self._result(order, OrderStatus.PARTIALLY_FILLED if fills else OrderStatus.NEW, fills)
        return self._done[cid]

    def open_orders(self, symbol: str | None = None) -> list[OrderResult]:
        return [self.status(cid) for cid in self._working]

    def book(self, symbol: str, depth: int = 10) -> BookSnapshot:
        return BookSnapshot(self.name, symbol, tuple(BookLevel(p, q) for p, q in self.bids[:depth]),
                            tuple(BookLevel(p, q) for p, q in self.asks[:depth]), self.clock.now())

    def trades(self, symbol: str, since: float | None = None) -> list[PublicTrade]:
        return [t for t in self.tape if since is None or t.ts_event > since]

    def add_report_listener(self, listener: Callable[[ExecutionReport], None]) -> None:
        self._reports.append(listener)

    def remove_report_listener(self, listener: Callable[[ExecutionReport], None]) -> None:
        self._reports.remove(listener)

    def add_trade_listener(self, listener: Callable[[PublicTrade], None]) -> None:
        self._trade_listeners.append(listener)

    def remove_trade_listener(self, listener: Callable[[PublicTrade], None]) -> None:
        self._trade_listeners.remove(listener)

    async def submit_async(self, order: Order) -> OrderResult:
        return self.submit(order)

    async def cancel_async(self, cid: str) -> OrderResult:
        return self.cancel(cid)

    async def status_async(self, cid: str) -> OrderResult:
        return self.status(cid)

    async def open_orders_async(self, symbol: str | None = None) -> list[OrderResult]:
        return self.open_orders(symbol)

    async def book_async(self, symbol: str, depth: int = 10) -> BookSnapshot:
        return self.book(symbol, depth)

    async def amend_async(self, cid: str, quantity: float | None = None, price: float | None = None) -> OrderResult:
        return self.amend(cid, quantity, price)
