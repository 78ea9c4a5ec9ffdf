"""SMART (adaptive): how hard to push, from the urgency, the spread, volatility and the clock.

Rules:

* One number decides each child: the aggression a in [0, 1]. A buy rests at
  bid + a x spread (a sell at ask - a x spread), on the tick, strictly
  inside the spread; a >= 1 crosses it with an IOC at the far touch plus a
  collar (the smart router may split it across venues). The parent's limit
  `price` is never passed.
* The urgency sets where a starts and how it moves:
  - low: 0 (rest at the touch), +0.05 per reprice that saw no fill
    ("improves slowly"), deadline pressure from half the time; when the
    market runs away it does not chase: its price moves toward the far
    side by at most a quarter of the spread per reprice (it follows a
    market coming its way at once);
  - normal: 0.5 (between touch and mid), +0.1 per unfilled reprice,
    deadline pressure from a quarter of the time, chases half a spread
    per reprice at most;
  - high: 1 (cross at once; retry what the book could not give).
* It adapts to what it measures at each reprice: volatility (the standard
  deviation of the mid's moves between looks) relative to the spread adds
  up to +0.3, since a moving market leaves a passive order behind; a spread
  much wider than usual (over `WIDE_SPREAD` x its median so far) takes 0.2
  off for low and normal, since crossing it then costs more than waiting.
* Deadline (`duration_s`, default per urgency): after the pressure point, a
  rises quadratically to 1 at the deadline, so the rest is crossed by then.
  What a limit keeps from filling is tried for a grace period of
  `GRACE` x the duration, then the parent ends EXPIRED with the remainder.
* One child works at a time. A reprice cancels it, and the replacement is
  sent when the cancel is confirmed, so the working quantity never exceeds
  what is left. Passive children learn of fills from execution reports.
* Every child decision has a one-line reason with the figures above.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

from ...models import OrderResult, OrderSide, OrderStatus
from ...market_data import BookSnapshot
from .base import (
    Action,
    AlgoContext,
    CancelChild,
    MarketWatch,
    ParentState,
    PlaceChild,
    PlannedChild,
    decides,
    limit_child,
    marketable_child,
    plain,
    refusal_note,
    refused_child,
    snap_price,
    tick_size,
    within_limit,
)


@dataclass(frozen=True, slots=True)
class Urgency:
    name: str
    base: float  # starting aggression: 0 rests at the near touch, 1 crosses
    improve: float  # added per reprice that saw no fill
    pressure_from: float  # share of the time after which the deadline pushes
    reprice_s: float
    default_duration_s: float
    chase: float  # spreads a resting price may move toward the far side per reprice


URGENCY: dict[str, Urgency] = {
    "low": Urgency("low", 0.0, 0.05, 0.5, 5.0, 600.0, 0.25),
    "normal": Urgency("normal", 0.5, 0.1, 0.25, 3.0, 300.0, 0.5),
    "high": Urgency("high", 1.0, 0.0, 0.0, 1.0, 60.0, 1.0),
}
PASSIVE_CAP = 0.9  # drift and volatility alone never cross the spread
VOL_WEIGHT = 0.1
VOL_MAX = 0.3
WIDE_SPREAD = 2.0
WIDE_PENALTY = 0.2
HISTORY = 30
COLLAR_BPS = 25.0
RETRY_S = 1.0
GRACE = 0.1


class AdaptiveAlgorithm:
    def __init__(self, state: ParentState, seed: int = 0) -> None:
        self.state = state
        meta = state.order.metadata
        self.urgency = URGENCY[str(meta.get("urgency", "normal")).strip().lower()]
        self.duration = float(meta.get("duration_s", self.urgency.default_duration_s))
        self._watch = MarketWatch(state, state.created_at)
        self.start_at = state.created_at
        self.deadline = self.start_at + self.duration
        self._mids: deque[float] = deque(maxlen=HISTORY)
        self._spreads: deque[float] = deque(maxlen=HISTORY)
        self._stale = 0
        self._filled_at_reprice = 0
        self._reprice_at: float | None = None
        self._retry_at: float | None = None
        self._refusals = 0
        self.aggression = self.urgency.base
        self._why = ""
        self._child_price: dict[str, float | None] = {}
        self._last_rest: float | None = None  # price of the last resting child
        state.algo_detail.update({"urgency": self.urgency.name, "deadline": self.deadline})

    # -- measuring -------------------------------------------------------------------------
    def _measure(self, ctx: AlgoContext) -> BookSnapshot | None:
        book, _ = self._watch.look(ctx)
        if book is not None and book.mid is not None and book.spread is not None:
            self._mids.append(book.mid)
            if book.spread > 0:
                self._spreads.append(book.spread)
        return book

    def _decide(self, now: float, book: BookSnapshot | None) -> float:
        """The aggression now, with its one-line explanation in self._why."""
        u = self.urgency
        frac = (now - self.start_at) / self.duration if self.duration > 0 else 1.0
        parts = [f"base {u.base:g}"]
        a = u.base
        if self._stale and u.improve:
            a += u.improve * self._stale
            parts.append(f"+{u.improve * self._stale:.2f} after {self._stale} unfilled reprices")
        spread = book.spread if book is not None else None
        if spread is not None and spread <= 0:
            spread = None  # venues crossed each other: no spread to measure against
        if spread and len(self._mids) >= 3:
            moves = [b - a_ for a_, b in zip(list(self._mids)[:-1], list(self._mids)[1:])]
            vol = statistics.pstdev(moves)
            bump = min(VOL_MAX, VOL_WEIGHT * vol / spread)
            if bump >= 0.005:
                a += bump
                parts.append(f"+{bump:.2f} volatility {vol:.4g}/look vs spread {spread:.4g}")
        a = min(a, PASSIVE_CAP) if u.base < 1 else a
        if spread and u.base < 1 and len(self._spreads) >= 3:
            usual = statistics.median(self._spreads)
            if usual > 0 and spread > WIDE_SPREAD * usual:
                a -= WIDE_PENALTY
                parts.append(f"-{WIDE_PENALTY:g} spread {spread:.4g} over {WIDE_SPREAD:g}x usual {usual:.4g}")
        a = max(a, 0.0)
        if frac >= 1:
            a = 1.0
            parts.append("deadline reached")
        elif frac > u.pressure_from and u.base < 1:
            p = (frac - u.pressure_from) / (1 - u.pressure_from)
            a = a + (1 - a) * p * p
            parts.append(f"deadline pressure at {frac:.0%} of the time")
        self.aggression = min(a, 1.0)
        spread_txt = ""
        if book is not None and book.spread is not None and book.mid:
            spread_txt = f"; spread {book.spread / book.mid * 1e4:.1f} bps"
            if book.spread <= 0:
                spread_txt += " (venues crossed)"
        self._why = f"a={self.aggression:.2f} ({', '.join(parts)}){spread_txt}"
        self.state.algo_detail["aggression"] = round(self.aggression, 4)
        return self.aggression

    def _passive_price(self, book: BookSnapshot, a: float) -> float | None:
        side = self.state.order.side
        bid, ask = book.best_bid, book.best_ask
        if bid is None or ask is None:
            return None
        inst = self.state.instrument
        tick = tick_size(inst)
        # Venues' books may cross each other (the merged bid above the merged ask):
        # a passive child still never reaches any venue's far touch.
        if side is OrderSide.BUY:
            price = snap_price(inst, bid + a * max(ask - bid, 0.0), side)
            if price >= ask:
                price = ask - tick
        else:
            price = snap_price(inst, ask - a * max(ask - bid, 0.0), side)
            if price <= bid:
                price = bid + tick
        if price <= 0:
            return None
        return within_limit(side, price, self.state.order.price)

    # -- acting --------------------------------------------------------------------------------
    def _act(self, ctx: AlgoContext, book: BookSnapshot | None, trigger: str) -> list[Action]:
        """Send what the aggression says, or reprice the working child."""
        state = self.state
        now = ctx.now()
        if state.remaining_lots <= 0:
            return []
        if now >= self.deadline + GRACE * self.duration:
            return self._expire()
        a = self._decide(now, book)
        u = self.urgency.name
        working = state.working_children
        if a >= 1:
            if working:
                return [CancelChild(cid, f"{u}: cross now ({self._why}); pull the resting child") for cid in working]
            lots = state.remaining_lots
            child, how = marketable_child(state, lots, book, COLLAR_BPS)
            self._child_price[child.id] = None
            return [PlaceChild(child, None, f"{u} {trigger}: cross {child.quantity:g} {how}; {self._why}", split=True)]
        price = self._passive_price(book, a) if book is not None else None
        if price is None:
            if state.order.price is None:
                state.last_reason = f"{u}: no book to price against; waiting"
                return []
            price = state.order.price
        slow = ""
        last = self._last_rest
        if last is not None and book is not None:
            side = state.order.side
            spread = max(book.spread or 0.0, tick_size(state.instrument))
            step = self.urgency.chase * spread
            if side.sign * (price - last) > step:
                price = snap_price(state.instrument, last + side.sign * step, side)
                slow = f", moving at most {step:.4g} per reprice"
        if working:
            stale = [cid for cid in working if self._child_price.get(cid) not in (None, price)]
            if stale:
                old = self._child_price.get(stale[0])
                return [CancelChild(cid, f"{u} reprice: {old:.10g} -> {price:.10g}{slow}; {self._why}")
                        for cid in stale]
            return []
        lots = state.remaining_lots - state.working_lots
        if lots <= 0:
            return []
        child = limit_child(state, lots, price)
        self._child_price[child.id] = price
        self._last_rest = price
        book_txt = f" (bid {book.best_bid:.10g} / ask {book.best_ask:.10g})" if book is not None else ""
        return [PlaceChild(
            child, None, f"{u} {trigger}: rest {child.quantity:g} at {price:.10g}{book_txt}{slow}; {self._why}"
        )]

    def largest_child(self) -> PlannedChild:
        """Everything left rests as one child at one venue."""
        quantity = self.state.order.quantity
        return PlannedChild(
            quantity, f"SMART child {plain(quantity)} (it rests all that is left as one order)",
            lambda most: f"send at most {plain(most)}, or use a TWAP",
        )

    def _expire(self) -> list[Action]:
        state = self.state
        left = state.lots_to_quantity(state.remaining_lots)
        state.status = OrderStatus.EXPIRED
        limit = f" at the limit {state.order.price:g}" if state.order.price is not None else ""
        state.reason = (
            f"deadline passed with {left:g} of {state.order.quantity:g} unfilled{limit}{refusal_note(state)}"
        )
        return []

    # -- the contract ------------------------------------------------------------------------------
    @decides
    def start(self, ctx: AlgoContext) -> list[Action]:
        now = ctx.now()
        self.start_at = now
        self.deadline = now + self.duration
        self.state.algo_detail["deadline"] = self.deadline
        book = self._measure(ctx)
        self._reprice_at = now + self.urgency.reprice_s
        return self._act(ctx, book, "start")

    @decides
    def on_child(self, ctx: AlgoContext, child: OrderResult) -> list[Action]:
        state = self.state
        if child.status is OrderStatus.REJECTED:
            self._refusals += 1
            retry_at = refused_child(state, child, self._refusals, ctx.now(), RETRY_S)
            if retry_at is not None:
                self._retry_at = retry_at
            return []
        if child.status is not OrderStatus.PENDING_NEW:
            self._refusals = 0
        if not child.status.is_final:
            return []
        self._child_price.pop(child.order_id, None)
        if state.remaining_lots <= 0:
            self._watch.trades(ctx, final=True)
            return []
        if state.working_children:
            return []
        if child.status is OrderStatus.EXPIRED:
            # A cross took what the book had: let it refill before the next try.
            self._retry_at = ctx.now() + RETRY_S
            return []
        # A reprice's cancel was confirmed (or a piece filled): send the replacement now.
        return self._act(ctx, self._measure(ctx), "replace")

    @decides
    def on_timer(self, ctx: AlgoContext) -> list[Action]:
        now = ctx.now()
        state = self.state
        self._retry_at = None
        book = self._measure(ctx)
        if self._reprice_at is not None and now >= self._reprice_at:
            filled = state.filled_lots
            self._stale = self._stale + 1 if filled == self._filled_at_reprice else 0
            self._filled_at_reprice = filled
            self._reprice_at = now + self.urgency.reprice_s
        return self._act(ctx, book, "reprice")

    def next_wake(self) -> float | None:
        if self.state.remaining_lots <= 0 and not self.state.working_children:
            return None
        wakes = [w for w in (self._reprice_at, self._retry_at) if w is not None]
        wakes.append(self.deadline if self.aggression < 1 else self.deadline + GRACE * self.duration)
        now_min = min(wakes)
        return now_min

    def describe(self) -> str:
        s = self.state
        return (
            f"smart {self.urgency.name}: a={self.aggression:.2f}, filled {s.filled_quantity:g}/"
            f"{s.order.quantity:g}, deadline in {max(self.deadline - s.updated_at, 0):.0f} s"
        )
