"""The clients that wrap any venue: `ExchangeClient` (sync) and `AsyncExchangeClient` (async)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

import anyio.to_thread

from ..clock import Clock
from ..errors import (
    ConfigurationError,
    VenueError,
)
from ..models import (
    FeeSchedule,
    Instrument,
    Order,
    OrderResult,
)
from ..market_data import (
    BookSnapshot,
    PublicTrade,
    ReportListener,
    TradeListener,
)
from .sim.exchange import SimulatedExchange

__all__ = ["AsyncExchangeClient", "ExchangeClient"]



def _loop_for(clock: Clock | None) -> asyncio.AbstractEventLoop:
    factory = (clock.backend_options() if clock is not None else {}).get("loop_factory")
    return factory() if factory is not None else asyncio.new_event_loop()


class _LoopThread:
    """A daemon thread running an event loop, for an async-only venue under the sync client.

    A daemon, so a client nobody closed never keeps the process alive at exit.
    """

    def __init__(self, clock: Clock | None) -> None:
        self.loop = _loop_for(clock)
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="execdesk-venue-loop", daemon=True
        )
        self._thread.start()

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(fn(*args), self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class _VenueFace:
    """What both clients say the same way: the venue's name, fees, instruments,
    tape and listeners (the sync reads the smart router and the desk use)."""

    venue: Any

    @property
    def name(self) -> str:
        return self.venue.name

    @property
    def fees(self) -> FeeSchedule:
        return self.venue.fees

    @property
    def in_process(self) -> bool:
        """The venue lives and dies with this process (see base.py)."""
        return bool(getattr(self.venue, "in_process", False))

    @property
    def status_is_immediate(self) -> bool:
        """The venue's status query sees an order as soon as it is taken (see base.py)."""
        return bool(getattr(self.venue, "status_is_immediate", False))

    def instruments(self) -> Mapping[str, Instrument]:
        return self.venue.instruments()

    def trades(self, symbol: str, since: float | None = None) -> list[PublicTrade]:
        trades = getattr(self.venue, "trades", None)
        return trades(symbol, since) if trades is not None else []

    def tick(self) -> None:
        tick = getattr(self.venue, "tick", None)
        if tick is not None:
            tick()

    def add_report_listener(self, listener: ReportListener) -> None:
        self.venue.add_report_listener(listener)

    def remove_report_listener(self, listener: ReportListener) -> None:
        remove = getattr(self.venue, "remove_report_listener", None)
        if remove is not None:
            remove(listener)

    def add_trade_listener(self, listener: TradeListener) -> None:
        self.venue.add_trade_listener(listener)

    def remove_trade_listener(self, listener: TradeListener) -> None:
        remove = getattr(self.venue, "remove_trade_listener", None)
        if remove is not None:
            remove(listener)


class ExchangeClient(_VenueFace):
    """The sync face of any venue: a `Venue` directly, an `AsyncVenue` on a loop thread.

    With no venue it wraps a default `SimulatedExchange` (seed 0, no latency,
    no faults) on `clock`.
    """

    def __init__(self, venue: Any = None, *, clock: Clock | None = None) -> None:
        if venue is None:
            venue = SimulatedExchange(clock=clock)
        self.venue = venue
        self._loop: _LoopThread | None = None
        if callable(getattr(venue, "submit", None)):
            self._submit = venue.submit
            self._cancel = venue.cancel
            self._amend = venue.amend
            self._status = venue.status
            self._open_orders = venue.open_orders
            self._book = venue.book
        elif callable(getattr(venue, "submit_async", None)):
            self._loop = _LoopThread(clock if clock is not None else getattr(venue, "clock", None))
            call = self._loop.call
            self._submit = partial(call, venue.submit_async)
            self._cancel = partial(call, venue.cancel_async)
            self._amend = partial(call, venue.amend_async)
            self._status = partial(call, venue.status_async)
            self._open_orders = partial(call, venue.open_orders_async)
            self._book = partial(call, venue.book_async)
        else:
            raise ConfigurationError(
                f"{type(venue).__name__} is not a venue: it has neither submit() nor submit_async()"
            )

    def submit(self, order: Order) -> OrderResult:
        return self._submit(order)

    def submit_many(self, orders: Sequence[Order]) -> list[OrderResult | VenueError]:
        """Per order its answer or the error its request raised, in order: in one request
        where the venue takes batches (`submit_many`), else one `submit` after another."""
        many = getattr(self.venue, "submit_many", None)
        if many is not None:
            return many(orders)  # type: ignore[no-any-return]
        answers: list[OrderResult | VenueError] = []
        for order in orders:
            try:
                answers.append(self._submit(order))
            except VenueError as exc:
                answers.append(exc)
        return answers

    def cancel(self, client_order_id: str) -> OrderResult:
        return self._cancel(client_order_id)

    def amend(
        self, client_order_id: str, quantity: float | None = None, price: float | None = None
    ) -> OrderResult:
        return self._amend(client_order_id, quantity, price)

    def status(self, client_order_id: str) -> OrderResult:
        return self._status(client_order_id)

    def open_orders(self, symbol: str | None = None) -> list[OrderResult]:
        return self._open_orders(symbol)

    def book(self, symbol: str, depth: int = 10) -> BookSnapshot:
        return self._book(symbol, depth)

    def close(self) -> None:
        """Stop the loop thread of an async venue (nothing to do for a sync one)."""
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def __enter__(self) -> ExchangeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _in_thread(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """A sync venue call run in a worker thread, so it never blocks the event loop."""

    async def call(*args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args)

    return call


class AsyncExchangeClient(_VenueFace):
    """The async face of any venue: an `AsyncVenue` directly, a sync `Venue` in threads.

    With no venue it wraps a default `SimulatedExchange` (seed 0, no latency,
    no faults) on `clock`. The read-only sync calls (book, instruments,
    trades, listeners) are there for ranking venues without awaiting.
    """

    def __init__(self, venue: Any = None, *, clock: Clock | None = None) -> None:
        if venue is None:
            venue = SimulatedExchange(clock=clock)
        self.venue = venue
        if callable(getattr(venue, "submit_async", None)):
            self._submit = venue.submit_async
            self._cancel = venue.cancel_async
            self._amend = venue.amend_async
            self._status = venue.status_async
            self._open_orders = venue.open_orders_async
            self._book = venue.book_async
        elif callable(getattr(venue, "submit", None)):
            self._submit = _in_thread(venue.submit)
            self._cancel = _in_thread(venue.cancel)
            self._amend = _in_thread(venue.amend)
            self._status = _in_thread(venue.status)
            self._open_orders = _in_thread(venue.open_orders)
            self._book = _in_thread(venue.book)
        else:
            raise ConfigurationError(
                f"{type(venue).__name__} is not a venue: it has neither submit_async() nor submit()"
            )

    async def submit_async(self, order: Order) -> OrderResult:
        return await self._submit(order)

    async def cancel_async(self, client_order_id: str) -> OrderResult:
        return await self._cancel(client_order_id)

    async def amend_async(
        self, client_order_id: str, quantity: float | None = None, price: float | None = None
    ) -> OrderResult:
        return await self._amend(client_order_id, quantity, price)

    async def status_async(self, client_order_id: str) -> OrderResult:
        return await self._status(client_order_id)

    async def open_orders_async(self, symbol: str | None = None) -> list[OrderResult]:
        return await self._open_orders(symbol)

    async def book_async(self, symbol: str, depth: int = 10) -> BookSnapshot:
        return await self._book(symbol, depth)

    def book(self, symbol: str, depth: int = 10) -> BookSnapshot:
        book = getattr(self.venue, "book", None)
        if book is None:
            raise ConfigurationError(
                f"{type(self.venue).__name__} has no sync book(); await book_async() instead"
            )
        return book(symbol, depth)

