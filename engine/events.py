"""Typed engine events: small frozen dataclasses, NautilusTrader's names.

`ts_event` is when it happened (venue or engine clock), `ts_init` when the
event object was made. Every event that concerns an order carries its
client order id and, for children, the parent's id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .models import Fill, OrderSide, OrderStatus, OrderType


@dataclass(frozen=True, slots=True)
class Event:
    ts_event: float
    ts_init: float


@dataclass(frozen=True, slots=True)
class OrderEvent(Event):
    order_id: str
    venue: str | None
    status: OrderStatus
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class OrderSubmitted(OrderEvent):
    symbol: str = ""
    side: OrderSide | None = None
    order_type: OrderType | None = None
    quantity: float = 0.0
    price: float | None = None


@dataclass(frozen=True, slots=True)
class OrderAccepted(OrderEvent):
    pass


@dataclass(frozen=True, slots=True)
class OrderDenied(OrderEvent):
    """Refused by the engine itself (validation at a venue, risk, halt, breaker, latency gate)."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class OrderRejected(OrderEvent):
    """Refused by the venue."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class OrderFilled(OrderEvent):
    fill: Fill | None = None
    filled_quantity: float = 0.0
    leaves_quantity: float = 0.0

    @property
    def last_qty(self) -> float:
        return self.fill.quantity if self.fill else 0.0

    @property
    def last_px(self) -> float:
        return self.fill.price if self.fill else 0.0


@dataclass(frozen=True, slots=True)
class OrderPendingCancel(OrderEvent):
    pass


@dataclass(frozen=True, slots=True)
class OrderCanceled(OrderEvent):
    filled_quantity: float = 0.0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class OrderExpired(OrderEvent):
    filled_quantity: float = 0.0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class OrderAmended(OrderEvent):
    quantity: float = 0.0
    price: float | None = None


@dataclass(frozen=True, slots=True)
class OrderUpdated(OrderEvent):
    """Progress of a parent order (filled, average price, TCA), for displays."""

    filled_quantity: float = 0.0
    quantity: float = 0.0
    average_price: float | None = None
    detail: str = ""
    # The parent's TCA figures, as in get_order_status(...).detail (ParentState.tca).
    tca: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class BreakerStateChanged(Event):
    venue: str
    old_state: str
    new_state: str
    reason: str


@dataclass(frozen=True, slots=True)
class VenueEnabled(Event):
    venue: str


@dataclass(frozen=True, slots=True)
class VenueDisabled(Event):
    venue: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Halted(Event):
    reason: str


@dataclass(frozen=True, slots=True)
class Resumed(Event):
    pass


@dataclass(frozen=True, slots=True)
class EngineError(Event):
    """Something went wrong inside the engine; the engine kept running."""

    where: str
    message: str


@dataclass(frozen=True, slots=True)
class OrderCancelRejected(OrderEvent):
    """A cancel the venue refused or could not take (FIX OrderCancelReject, 9): the order
    is back in `status`, the state it had before the cancel was sent."""

    reason: str = ""
