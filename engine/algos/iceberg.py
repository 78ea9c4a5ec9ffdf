"""ICEBERG: show `display_size` at a time at the parent's limit price and refill.

Never more than the display is working at once (so never more than the
display visible at any venue). With `display_variance` v, each refill shows
display × uniform(1 - v, 1 + v), capped at the display ceiling the order
states and rounded to the lot, so refills are harder to spot. A refused
child (venue down, breaker open) is retried after a pause; after several
refusals in a row the parent gives up with the last reason.
"""

from __future__ import annotations

import random

from ..models import OrderResult, OrderStatus
from .base import Action, AlgoContext, ParentState, PlaceChild, limit_child

RETRY_AFTER_S = 1.0
MAX_REFUSALS = 5


class IcebergAlgorithm:
    def __init__(self, state: ParentState, seed: int = 0) -> None:
        self.state = state
        meta = state.order.metadata
        self.display = float(meta["display_size"])
        self.variance = float(meta.get("display_variance", 0.0))
        self._rng = random.Random(f"{seed}:{state.order.id}")
        self._wake: float | None = None
        self._refusals = 0
        self.refills = 0

    def _display_lots(self) -> int:
        inst = self.state.instrument
        ceiling = inst.quantity_to_lots(self.display) if inst else None
        if ceiling is None:  # display not on the lot: round down, at least one lot
            ceiling = max(int(self.display * (inst._lot[1] / inst._lot[0])) if inst else 1, 1)
        lots = ceiling
        if self.variance:
            lots = min(ceiling, max(1, round(ceiling * self._rng.uniform(1 - self.variance, 1 + self.variance))))
        if inst is not None:
            lots = max(lots, inst.min_lots)
        return min(lots, self.state.remaining_lots)

    def _place(self, why: str) -> list[Action]:
        state = self.state
        if state.remaining_lots <= 0 or state.working_lots > 0:
            return []
        lots = self._display_lots()
        child = limit_child(state, lots, state.order.price)
        self.refills += 1
        return [PlaceChild(child, None, why)]

    def start(self, ctx: AlgoContext) -> list[Action]:
        return self._place(f"show {self.display:g} of {self.state.order.quantity:g} at {self.state.order.price:g}")

    def on_child(self, ctx: AlgoContext, child: OrderResult) -> list[Action]:
        state = self.state
        if child.status is OrderStatus.REJECTED:
            self._refusals += 1
            if self._refusals >= MAX_REFUSALS:
                state.status = OrderStatus.REJECTED if not state.filled_lots else OrderStatus.CANCELED
                state.reason = f"gave up after {self._refusals} refused children: {child.reason}"
                return []
            self._wake = ctx.now() + RETRY_AFTER_S
            state.last_reason = f"child refused ({child.reason}); retrying in {RETRY_AFTER_S:g} s"
            return []
        self._refusals = 0
        if child.status.is_final and state.remaining_lots > 0:
            return self._place(f"refill {self.refills}: {state.filled_quantity:g} of {state.order.quantity:g} done")
        return []

    def on_timer(self, ctx: AlgoContext) -> list[Action]:
        self._wake = None
        return self._place("retry after a refused child")

    def next_wake(self) -> float | None:
        return self._wake

    def describe(self) -> str:
        s = self.state
        hidden = s.remaining_lots - s.working_lots
        inst = s.instrument
        hidden_qty = inst.lots_to_quantity(hidden) if inst else hidden
        return f"iceberg: display {self.display:g}, hidden {hidden_qty:g}, refills {self.refills}"
