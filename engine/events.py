"""Typed engine events: small slots classes, NautilusTrader's names.

`ts_event` is when it happened (venue or engine clock), `ts_init` when the
event object was made. Every event that concerns an order carries its
client order id and, for children, the parent's id.

Rules:

* An event is never changed once published: every subscriber (the desk, the
  journal) holds the same object. Nothing enforces it at run time, because
  every guard costs on the hot path, where routers build three or four events
  per order: a frozen slots dataclass of 9 fields builds in ~7x the time of
  this plain slots class, a read-only `__setattr__` with slot setters in ~4x,
  a tuple subclass in ~1.7x (and its reads are slower). tests/test_events.py
  runs orders of every kind through an Engine and checks that no subscriber
  ever sees an event change.
* Each class declares `__slots__` for the fields it adds (no `__dict__`) and
  writes its own `__init__`, all fields assigned in one function (a chain of
  `super().__init__` calls would cost more than the event). Fields are in
  slot order, base class first, and build positionally or by keyword.
* Equality, hashing and `repr` are written once, in `Event`, over the fields:
  two events are equal when they are of the same class with equal fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import attrgetter
from typing import Any, ClassVar

from .models import Fill, OrderSide, OrderStatus, OrderType


class Event:
    __slots__ = ("ts_event", "ts_init")
    ts_event: float
    ts_init: float

    # Every field, base class first (set for each subclass from its __slots__).
    _fields: ClassVar[tuple[str, ...]] = ("ts_event", "ts_init")
    _values: ClassVar[Any] = attrgetter("ts_event", "ts_init")
    __match_args__: ClassVar[tuple[str, ...]] = ("ts_event", "ts_init")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__slots__")
        if own is None or isinstance(own, str):
            raise TypeError(f"{cls.__name__} must declare __slots__ as a tuple of its own fields")
        cls._fields = cls._fields + tuple(own)
        cls._values = attrgetter(*cls._fields)
        cls.__match_args__ = cls._fields

    def __init__(self, ts_event: float, ts_init: float) -> None:
        self.ts_event = ts_event
        self.ts_init = ts_init

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values(self) == self._values(other)  # type: ignore[no-any-return]

    def __hash__(self) -> int:
        return hash(self._values(self))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in zip(self._fields, self._values(self)))
        return f"{type(self).__qualname__}({fields})"


class OrderEvent(Event):
    __slots__ = ("order_id", "venue", "status", "parent_id")
    order_id: str
    venue: str | None
    status: OrderStatus
    parent_id: str | None

    def __init__(self, ts_event: float, ts_init: float, order_id: str, venue: str | None,
                 status: OrderStatus, parent_id: str | None = None) -> None:
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.order_id = order_id
        self.venue = venue
        self.status = status
        self.parent_id = parent_id


class OrderSubmitted(OrderEvent):
    __slots__ = ("symbol", "side", "order_type", "quantity", "price")
    symbol: str
    side: OrderSide | None
    order_type: OrderType | None
    quantity: float
    price: float | None

    def __init__(self, ts_event: float, ts_init: float, order_id: str, venue: str | None,
                 status: OrderStatus, parent_id: str | None = None, symbol: str = "",
                 side: OrderSide | None = None, order_type: OrderType | None = None,
                 quantity: float = 0.0, price: float | None = None) -> None:
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.order_id = order_id
        self.venue = venue
        self.status = status
        self.parent_id = parent_id
        self.symbol = symbol
        self.side = side
        self.order_type = order_type
        self.quantity = quantity
        self.price = price


class OrderAccepted(OrderEvent):
    __slots__ = ()


class OrderDenied(OrderEvent):
    """Refused by the engine itself (validation at a venue, risk, halt, breaker, latency gate)."""

    __slots__ = ("reason",)
    reason: str

    def __init__(self, ts_event: float, ts_init: float, order_id: str, venue: str | None,
                 status: OrderStatus, parent_id: str | None = None, reason: str = "") -> None:
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.order_id = order_id
        self.venue = venue
        self.status = status
        self.parent_id = parent_id
        self.reason = reason


class OrderRejected(OrderEvent):
    """Refused by the venue."""

    __slots__ = ("reason",)
    reason: str

    def __init__(self, ts_event: float, ts_init: float, order_id: str, venue: str | None,
                 status: OrderStatus, parent_id: str | None = None, reason: str = "") -> None:
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.order_id = order_id
        self.venue = venue
        self.status = status
        self.parent_id = parent_id
        self.reason = reason


class OrderFilled(OrderEvent):
    __slots__ = ("fill", "filled_quantity", "leaves_quantity")
    fill: Fill | None
    filled_quantity: float
    leaves_quantity: float

    def __init__(self, ts_event: float, ts_init: float, order_id: str, venue: str | None,
                 status: OrderStatus, parent_id: str | None = None, fill: Fill | None = None,
                 filled_quantity: float = 0.0, leaves_quantity: float = 0.0) -> None:
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.order_id = order_id
        self.venue = venue
        self.status = status
        self.parent_id = parent_id
        self.fill = fill
        self.filled_quantity = filled_quantity
        self.leaves_quantity = leaves_quantity

    @property
    def last_qty(self) -> float:
        return self.fill.quantity if self.fill else 0.0

    @property
    def last_px(self) -> float:
        return self.fill.price if self.fill else 0.0


class OrderPendingCancel(OrderEvent):
    __slots__ = ()


class OrderCanceled(OrderEvent):
    __slots__ = ("filled_quantity", "reason")
    filled_quantity: float
    reason: str

    def __init__(self, ts_event: float, ts_init: float, order_id: str, venue: str | None,
                 status: OrderStatus, parent_id: str | None = None, filled_quantity: float = 0.0,
                 reason: str = "") -> None:
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.order_id = order_id
        self.venue = venue
        self.status = status
        self.parent_id = parent_id
        self.filled_quantity = filled_quantity
        self.reason = reason


class OrderExpired(OrderEvent):
    __slots__ = ("filled_quantity", "reason")
    filled_quantity: float
    reason: str

    def __init__(self, ts_event: float, ts_init: float, order_id: str, venue: str | None,
                 status: OrderStatus, parent_id: str | None = None, filled_quantity: float = 0.0,
                 reason: str = "") -> None:
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.order_id = order_id
        self.venue = venue
        self.status = status
        self.parent_id = parent_id
        self.filled_quantity = filled_quantity
        self.reason = reason


class OrderAmended(OrderEvent):
    __slots__ = ("quantity", "price")
    quantity: float
    price: float | None

    def __init__(self, ts_event: float, ts_init: float, order_id: str, venue: str | None,
                 status: OrderStatus, parent_id: str | None = None, quantity: float = 0.0,
                 price: float | None = None) -> None:
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.order_id = order_id
        self.venue = venue
        self.status = status
        self.parent_id = parent_id
        self.quantity = quantity
        self.price = price


class OrderUpdated(OrderEvent):
    """Progress of a parent order (filled, average price, TCA), for displays.

    `tca`: the parent's TCA figures, as in get_order_status(...).detail (ParentState.tca).
    """

    __slots__ = ("filled_quantity", "quantity", "average_price", "detail", "tca")
    filled_quantity: float
    quantity: float
    average_price: float | None
    detail: str
    tca: Mapping[str, Any] | None

    def __init__(self, ts_event: float, ts_init: float, order_id: str, venue: str | None,
                 status: OrderStatus, parent_id: str | None = None, filled_quantity: float = 0.0,
                 quantity: float = 0.0, average_price: float | None = None, detail: str = "",
                 tca: Mapping[str, Any] | None = None) -> None:
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.order_id = order_id
        self.venue = venue
        self.status = status
        self.parent_id = parent_id
        self.filled_quantity = filled_quantity
        self.quantity = quantity
        self.average_price = average_price
        self.detail = detail
        self.tca = tca


class BreakerStateChanged(Event):
    __slots__ = ("venue", "old_state", "new_state", "reason")
    venue: str
    old_state: str
    new_state: str
    reason: str

    def __init__(self, ts_event: float, ts_init: float, venue: str, old_state: str, new_state: str,
                 reason: str) -> None:
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.venue = venue
        self.old_state = old_state
        self.new_state = new_state
        self.reason = reason


class VenueEnabled(Event):
    __slots__ = ("venue",)
    venue: str

    def __init__(self, ts_event: float, ts_init: float, venue: str) -> None:
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.venue = venue


class VenueDisabled(Event):
    __slots__ = ("venue", "reason")
    venue: str
    reason: str

    def __init__(self, ts_event: float, ts_init: float, venue: str, reason: str = "") -> None:
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.venue = venue
        self.reason = reason


class VenueSessionChanged(Event):
    """A network venue's session went up, down or is being re-established: `state` is
    "logged on", "reconnecting", "closed"...; `detail` says why or with what numbers."""

    __slots__ = ("venue", "state", "detail")
    venue: str
    state: str
    detail: str

    def __init__(self, ts_event: float, ts_init: float, venue: str, state: str, detail: str = "") -> None:
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.venue = venue
        self.state = state
        self.detail = detail


class Halted(Event):
    __slots__ = ("reason",)
    reason: str

    def __init__(self, ts_event: float, ts_init: float, reason: str) -> None:
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.reason = reason


class Resumed(Event):
    __slots__ = ()


class Recovered(Event):
    """A restart's recovery from the journal is done: what became of the orders the
    previous process left open (see engine.recovery)."""

    __slots__ = ("summary", "tracked", "finished", "never_sent", "unresolved")
    summary: str
    tracked: int
    finished: int
    never_sent: int
    unresolved: int

    def __init__(self, ts_event: float, ts_init: float, summary: str, tracked: int = 0, finished: int = 0,
                 never_sent: int = 0, unresolved: int = 0) -> None:
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.summary = summary
        self.tracked = tracked
        self.finished = finished
        self.never_sent = never_sent
        self.unresolved = unresolved


class EngineError(Event):
    """Something went wrong inside the engine; the engine kept running."""

    __slots__ = ("where", "message")
    where: str
    message: str

    def __init__(self, ts_event: float, ts_init: float, where: str, message: str) -> None:
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.where = where
        self.message = message


class OrderCancelRejected(OrderEvent):
    """A cancel the venue refused or could not take (FIX OrderCancelReject, 9): the order
    is back in `status`, the state it had before the cancel was sent."""

    __slots__ = ("reason",)
    reason: str

    def __init__(self, ts_event: float, ts_init: float, order_id: str, venue: str | None,
                 status: OrderStatus, parent_id: str | None = None, reason: str = "") -> None:
        self.ts_event = ts_event
        self.ts_init = ts_init
        self.order_id = order_id
        self.venue = venue
        self.status = status
        self.parent_id = parent_id
        self.reason = reason
