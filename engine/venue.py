"""The venue interface: what the routers need of any exchange.

Kept small on purpose, so a FIX counterparty or a CCXT exchange can stand
behind it later. A venue answers requests (submit, cancel, amend, status,
open orders, book) and pushes what happens without being asked: execution
reports for resting orders and public trades per symbol.

Errors a venue raises are the three kinds of `engine.errors`:
`TransientVenueError` (retry), `PermanentVenueError` (never retry) and
`UnknownOutcomeError` (reconcile by client order id before resending).
Request-level refusals that concern one order (unknown symbol, off tick,
duplicate client order id, a breach of the instrument's filters) are not
errors: they come back as an `OrderResult` with status REJECTED and a reason.

`instruments()` gives each symbol's tick, lot and minimum, and the filters a
real exchange puts on each order (maximum quantity, minimum and maximum
notional; `Instrument.filter_refusal` words a breach). A venue checks them
before anything matches, so no order it accepts can be absurd for the symbol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .models import Fill, FeeSchedule, Instrument, Order, OrderResult, OrderSide, OrderStatus


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    """Something happened to an order without a request: a fill of a resting
    order, an expiry, an unsolicited cancel. `fill` is set for fills."""

    venue: str
    client_order_id: str
    symbol: str
    status: OrderStatus
    filled_quantity: float
    leaves_quantity: float
    ts_event: float
    fill: Fill | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PublicTrade:
    """A trade printed on the venue's tape (any participant's)."""

    venue: str
    symbol: str
    price: float
    quantity: float
    aggressor: OrderSide
    ts_event: float


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: float
    quantity: float
    orders: int = 1


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """Aggregated price levels, best first on each side."""

    venue: str
    symbol: str
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    ts_event: float

    @property
    def best_bid(self) -> float | None:
        return self.bids[0].price if self.bids else None

    @property
    def best_ask(self) -> float | None:
        return self.asks[0].price if self.asks else None

    @property
    def mid(self) -> float | None:
        if self.bids and self.asks:
            return (self.bids[0].price + self.asks[0].price) / 2
        return None

    @property
    def spread(self) -> float | None:
        if self.bids and self.asks:
            return self.asks[0].price - self.bids[0].price
        return None


ReportListener = Callable[[ExecutionReport], None]
TradeListener = Callable[[PublicTrade], None]


@runtime_checkable
class Venue(Protocol):
    """The sync form of a venue (the simulator; a network venue behind ExchangeClient)."""

    name: str
    fees: FeeSchedule

    def instruments(self) -> Mapping[str, Instrument]: ...

    def submit(self, order: Order) -> OrderResult:
        """Send a new order. The result says what happened at once: NEW, (partly)
        FILLED with the fills, EXPIRED (IOC/FOK remainder) or REJECTED."""

    def cancel(self, client_order_id: str) -> OrderResult: ...

    def amend(
        self, client_order_id: str, quantity: float | None = None, price: float | None = None
    ) -> OrderResult:
        """Cancel/replace: time priority is lost when the size grows or the price moves."""

    def status(self, client_order_id: str) -> OrderResult:
        """Raises UnknownOrderError when the venue does not know (or no longer remembers) it."""

    def open_orders(self, symbol: str | None = None) -> list[OrderResult]: ...

    def book(self, symbol: str, depth: int = 10) -> BookSnapshot: ...

    def trades(self, symbol: str, since: float | None = None) -> list[PublicTrade]:
        """Recent public trades (a bounded history), oldest first."""

    def add_report_listener(self, listener: ReportListener) -> None: ...

    def remove_report_listener(self, listener: ReportListener) -> None: ...

    def add_trade_listener(self, listener: TradeListener) -> None: ...

    def remove_trade_listener(self, listener: TradeListener) -> None: ...


@runtime_checkable
class AsyncVenue(Protocol):
    """The async form (network venues; the simulator offers it too).

    Same operations as `Venue`, as coroutines with an `_async` suffix; the
    listeners and `instruments()` stay synchronous.
    """

    name: str
    fees: FeeSchedule

    def instruments(self) -> Mapping[str, Instrument]: ...

    async def submit_async(self, order: Order) -> OrderResult: ...

    async def cancel_async(self, client_order_id: str) -> OrderResult: ...

    async def amend_async(
        self, client_order_id: str, quantity: float | None = None, price: float | None = None
    ) -> OrderResult: ...

    async def status_async(self, client_order_id: str) -> OrderResult: ...

    async def open_orders_async(self, symbol: str | None = None) -> list[OrderResult]: ...

    async def book_async(self, symbol: str, depth: int = 10) -> BookSnapshot: ...

    def add_report_listener(self, listener: ReportListener) -> None: ...

    def add_trade_listener(self, listener: TradeListener) -> None: ...
