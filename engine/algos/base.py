"""The algorithm contract: sans-IO parents that say which child to send next.

An algorithm never calls a venue, sleeps or reads a wall clock. The
scheduler asks it what to do at start, when a child's state changes and when
its wake-up time comes, passing an `AlgoContext` (the clock's now, the
market as the routers see it); it answers with actions (`PlaceChild`,
`CancelChild`) and one-line reasons. The scheduler performs the actions
through the routers, so every child passes the same checks as any order.

Child ids are derived from the parent id: a readable prefix, a short hash
of the whole parent id and a sequence number, at most 36 characters of the
client-order-id alphabet, so a restart regenerates the same ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..models import Fill, Instrument, Order, OrderResult, OrderSide, OrderStatus, OrderType, TimeInForce
from ..venue import BookSnapshot, PublicTrade


def child_id(parent_id: str, seq: int) -> str:
    """`<parent prefix>.<hash>.<seq>`: at most 36 characters, stable across restarts."""
    digest = hashlib.blake2b(parent_id.encode(), digest_size=5).hexdigest()
    return f"{parent_id[:16]}.{digest}.{seq}"


@dataclass(frozen=True, slots=True)
class PlaceChild:
    order: Order
    venue: str | None  # None: the smart router picks the best venue
    reason: str
    split: bool = False  # may the smart router split this child across venues?


@dataclass(frozen=True, slots=True)
class CancelChild:
    order_id: str
    reason: str


Action = PlaceChild | CancelChild


class AlgoContext(Protocol):
    """What an algorithm may know about the world."""

    def now(self) -> float: ...

    def book(self, symbol: str) -> BookSnapshot | None:
        """The merged best view across eligible venues (None when no venue can quote)."""

    def instrument(self, symbol: str) -> Instrument | None: ...

    def trades(self, symbol: str, since: float) -> list[PublicTrade]: ...


@dataclass(slots=True)
class ParentState:
    """A parent order's progress, kept by the scheduler, read by the optimizer and the desk."""

    order: Order
    instrument: Instrument | None
    status: OrderStatus = OrderStatus.PENDING_NEW
    reason: str | None = None
    created_at: float = 0.0
    done_at: float | None = None
    arrival_price: float | None = None
    children: dict[str, OrderResult] = field(default_factory=dict)
    child_reasons: dict[str, str] = field(default_factory=dict)
    last_reason: str = ""
    seq: int = 0

    def next_child_id(self) -> str:
        self.seq += 1
        return child_id(self.order.id, self.seq)

    def _lots(self, quantity: float) -> int:
        inst = self.instrument
        if inst is None:
            return round(quantity * 1e8)
        lots = inst.quantity_to_lots(quantity)
        return lots if lots is not None else round(quantity * inst._lot[1] / inst._lot[0])

    @property
    def filled_lots(self) -> int:
        return sum(self._lots(c.filled_quantity) for c in self.children.values())

    @property
    def quantity_lots(self) -> int:
        return self._lots(self.order.quantity)

    @property
    def filled_quantity(self) -> float:
        if self.instrument is None:
            return sum(c.filled_quantity for c in self.children.values())
        return self.instrument.lots_to_quantity(self.filled_lots)

    @property
    def remaining_lots(self) -> int:
        return max(self.quantity_lots - self.filled_lots, 0)

    @property
    def working_lots(self) -> int:
        return sum(
            self._lots(c.quantity - c.filled_quantity)
            for c in self.children.values()
            if not c.status.is_final
        )

    @property
    def working_children(self) -> list[str]:
        return [cid for cid, c in self.children.items() if not c.status.is_final]

    @property
    def fills(self) -> list[Fill]:
        return [f for c in self.children.values() for f in c.fills]

    @property
    def average_price(self) -> float | None:
        fills = self.fills
        qty = sum(f.quantity for f in fills)
        return sum(f.price * f.quantity for f in fills) / qty if qty else None

    @property
    def fees(self) -> float:
        return sum(f.fee for f in self.fills)

    @property
    def slippage_bps(self) -> float | None:
        """Signed so that positive is a cost: paid above arrival on a buy, below on a sell."""
        avg, arrival = self.average_price, self.arrival_price
        if avg is None or not arrival:
            return None
        return self.order.side.sign * (avg - arrival) / arrival * 10_000

    def to_result(self) -> OrderResult:
        venues = sorted({c.exchange_id for c in self.children.values() if c.exchange_id})
        return OrderResult(
            order_id=self.order.id,
            exchange_id=",".join(venues) if venues else None,
            status=self.status,
            quantity=self.order.quantity,
            filled_quantity=self.filled_quantity,
            average_price=self.average_price,
            fills=self.fills,
            reason=self.reason,
            symbol=self.order.symbol,
            side=self.order.side,
            price=self.order.price,
            timestamp=self.done_at or self.created_at,
        )


class Algorithm(Protocol):
    """A parent order's decision maker (sans-IO)."""

    state: ParentState

    def start(self, ctx: AlgoContext) -> list[Action]: ...

    def on_child(self, ctx: AlgoContext, child: OrderResult) -> list[Action]: ...

    def on_timer(self, ctx: AlgoContext) -> list[Action]: ...

    def next_wake(self) -> float | None: ...

    def describe(self) -> str:
        """One line for the desk: what the parent is doing now."""


def limit_child(
    state: ParentState, quantity_lots: int, price: float | None, *, tif: TimeInForce = TimeInForce.GTC
) -> Order:
    """A child order of the parent's side and symbol (LIMIT with a price, else MARKET)."""
    parent = state.order
    inst = state.instrument
    quantity = inst.lots_to_quantity(quantity_lots) if inst else quantity_lots / 1e8
    return Order(
        id=state.next_child_id(),
        symbol=parent.symbol,
        side=parent.side,
        type=OrderType.LIMIT if price is not None else OrderType.MARKET,
        quantity=quantity,
        price=price,
        time_in_force=tif if price is not None else TimeInForce.GTC,
        parent_id=parent.id,
    )


AlgorithmFactory = Callable[[Order, ParentState], Algorithm]


def opposite_touch(book: BookSnapshot | None, side: OrderSide) -> float | None:
    if book is None:
        return None
    return book.best_ask if side is OrderSide.BUY else book.best_bid
