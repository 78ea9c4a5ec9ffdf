"""ICEBERG: show `display_size` at a time at the parent's limit price and refill.

Rules:

* Never more than the display is working at once, as one child at one
  venue, so never more than the display is visible at any venue. A refill
  is sent only when the shown child is final (filled, or canceled/expired
  by the venue).
* With `display_variance` v, each refill shows display x uniform(1 - v, 1),
  rounded to the lot, so refills are harder to spot. The draw only ever
  shrinks the display: `display_size` is a ceiling the operator relies on.
* The parent's status shows the hidden remainder (neither filled nor
  shown) and the number of refills.
* A display under the instrument's lot or minimum quantity is refused when
  the algorithm is built (the parent is REJECTED saying what to show).
* A refused child (venue down, breaker open) is retried after a pause;
  after several refusals in a row the parent gives up with the last reason.
* The shown child learns of its fills from the venue's execution reports.
  Every `OBSERVE_S` the algorithm looks at the market for TCA (mid,
  interval VWAP); against the simulated venue that look is also what lets
  its market move in virtual time when nothing else calls it.
"""

from __future__ import annotations

import random

from ...errors import AlgorithmParameterError
from ...models import OrderResult, OrderStatus
from .base import (
    Action,
    AlgoContext,
    MarketWatch,
    ParentState,
    PlaceChild,
    PlannedChild,
    decides,
    limit_child,
    plain,
    refused_child,
)

RETRY_AFTER_S = 1.0
OBSERVE_S = 5.0


class IcebergAlgorithm:
    def __init__(self, state: ParentState, seed: int = 0) -> None:
        self.state = state
        meta = state.order.metadata
        self.display = float(meta["display_size"])
        self.variance = float(meta.get("display_variance", 0.0))
        self._ceiling = self._display_ceiling(state, self.display)
        state.display_size = self.display
        self._rng = random.Random(f"{seed}:{state.order.id}")
        self._retry_at: float | None = None
        self._refill_at: float | None = None
        self._observe_at: float | None = None
        self._refusals = 0
        self._watch = MarketWatch(state, state.created_at)

    @property
    def refills(self) -> int:
        return self.state.refills

    @staticmethod
    def _display_ceiling(state: ParentState, display: float) -> int:
        """The most lots a child shows: the display rounded down to the lot. A display
        under the lot or the minimum quantity is refused here: shown as one minimum-size
        child after another, it would make thousands of children where the operator meant
        a few, each a trip through the routers."""
        inst = state.instrument
        if inst is None:
            return max(round(display * 1e8), 1)
        symbol = state.order.symbol
        ceiling = inst.lots_at_most(display)
        if ceiling < 1:
            raise AlgorithmParameterError(
                f"display_size {plain(display)} is under the lot {inst.lot_size} of {symbol}: "
                f"show at least {inst.min_quantity}"
            )
        if ceiling < inst.min_lots:
            raise AlgorithmParameterError(
                f"display_size {plain(display)} is under the minimum quantity {inst.min_quantity} "
                f"of {symbol}: show at least {inst.min_quantity}"
            )
        return ceiling

    def _display_lots(self) -> int:
        inst = self.state.instrument
        ceiling = self._ceiling
        lots = ceiling
        if self.variance:
            drawn = round(ceiling * self._rng.uniform(1 - self.variance, 1.0))
            lots = min(ceiling, max(1, drawn))
        if inst is not None:
            lots = max(lots, inst.min_lots)
        return min(lots, self.state.remaining_lots)

    def _place(self, why: str) -> list[Action]:
        state = self.state
        if state.remaining_lots <= 0 or state.working_lots > 0 or state.working_children:
            return []
        lots = self._display_lots()
        child = limit_child(state, lots, state.order.price)
        state.refills += 1
        return [PlaceChild(child, None, f"{why}; show {child.quantity:g} at {child.price:g}")]

    @decides
    def start(self, ctx: AlgoContext) -> list[Action]:
        self._watch.look(ctx)
        self._observe_at = ctx.now() + OBSERVE_S
        o = self.state.order
        return self._place(f"start: {o.quantity:g} behind a display of {self.display:g}")

    @decides
    def on_child(self, ctx: AlgoContext, child: OrderResult) -> list[Action]:
        state = self.state
        if child.status is OrderStatus.REJECTED:
            self._refusals += 1
            retry_at = refused_child(state, child, self._refusals, ctx.now(), RETRY_AFTER_S)
            if retry_at is not None:
                self._retry_at = retry_at
            return []
        if child.status is not OrderStatus.PENDING_NEW:
            self._refusals = 0
        if child.status.is_final:
            if state.remaining_lots > 0:
                # The refill is the next decision, at once: not in this one, so a display that
                # fills as soon as it shows makes one decision per refill (with the loop's turn
                # between them), not one chain of them all.
                self._refill_at = ctx.now()
            else:
                self._watch.trades(ctx, final=True)
        return []

    @decides
    def on_timer(self, ctx: AlgoContext) -> list[Action]:
        now = ctx.now()
        actions: list[Action] = []
        if self._observe_at is not None and now >= self._observe_at:
            self._watch.look(ctx)
            self._observe_at = now + OBSERVE_S
        if self._refill_at is not None and now >= self._refill_at:
            self._refill_at = None
            state = self.state
            self._watch.trades(ctx)
            actions = self._place(
                f"refill {state.refills}: {state.filled_quantity:g} of {state.order.quantity:g} done"
            )
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            actions = self._place("retry after a refused child")
        return actions

    def next_wake(self) -> float | None:
        wakes = [w for w in (self._refill_at, self._retry_at, self._observe_at) if w is not None]
        return min(wakes) if wakes else None

    def largest_child(self) -> PlannedChild:
        return PlannedChild(
            min(self.display, self.state.order.quantity), f"display_size {plain(self.display)}",
            lambda most: f"show at most {plain(most)}",
        )

    def describe(self) -> str:
        s = self.state
        hidden = max(s.remaining_lots - s.working_lots, 0)
        return (
            f"iceberg: display {self.display:g}, hidden {s.lots_to_quantity(hidden):g}, "
            f"refills {s.refills}, filled {s.filled_quantity:g}/{s.order.quantity:g}"
        )
