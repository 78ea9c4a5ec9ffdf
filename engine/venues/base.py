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

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from ..market_data import BookSnapshot, PublicTrade, ReportListener, TradeListener
from ..models import FeeSchedule, Instrument, Order, OrderResult




@runtime_checkable
class Venue(Protocol):
    """The sync form of a venue (the simulator; a network venue behind ExchangeClient)."""

    name: str
    fees: FeeSchedule

    def instruments(self) -> Mapping[str, Instrument]: ...

    def submit(self, order: Order) -> OrderResult:
        """Send a new order. The result says what happened at once: NEW, (partly)
        FILLED with the fills, EXPIRED (IOC/FOK remainder) or REJECTED."""

    # Optional: `submit_many(orders) -> list[OrderResult | VenueError]`, a batch in one
    # request (per order its answer or the error its request raised). The simulator has
    # it; a venue without it is sent one `submit` after another.
    # Optional: `in_process = True`, a venue whose orders live and die with this process
    # (the simulator): a restart's recovery ends them instead of asking it. Any other
    # venue is asked by client order id, its orders outliving ours.
    # Optional: `status_is_immediate = True`, a venue whose status query sees an order as
    # soon as it took it (the simulator, our FIX venue): after a timeout, its first "not
    # found" is believed; any other venue's is asked again a backoff later before the
    # order is sent again (an exchange may not list an order it has just taken).
    # Optional: `add_session_listener(fn)`, a network venue's session news: fn(state,
    # detail) on any thread ("logged on", "reconnecting", ...); the Engine publishes each
    # as a VenueSessionChanged event.

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
