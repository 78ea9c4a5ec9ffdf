"""Market data and execution reports: what venues push and the routers, algorithms and desk read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .models import Fill, OrderSide, OrderStatus


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
