"""TWAP: the quantity in equal slices at equal intervals over a window.

Rules:

* Window: `duration_s` from acceptance, or `start_time`..`end_time` (epoch
  seconds; a start already past means now). Slices: `slices`, or one per
  `interval_s`, as asked: a count that would make slices under the
  instrument's minimum quantity is refused when the algorithm is built,
  saying how many slices the quantity allows (never quietly fewer). By
  default one a minute, as many as the quantity has minimum sizes and at
  most `MAX_SLICES` (a long window gets longer intervals).
* Slice i is due at start + i * interval. With `randomize`, its time moves
  later by up to `TIME_JITTER` of an interval (so it stays inside its own
  interval) and its size by up to +/-`SIZE_JITTER` of the even size (plus
  one lot of rounding); sizes are rounded to the lot so they still sum to
  the quantity exactly.
* Each slice is an IOC child that takes liquidity: limit at the far touch
  plus a `COLLAR_BPS` collar, never past the parent's limit `price`; the
  smart router may split it across venues. What a slice could not fill
  (thin book, limit) stays owed.
* Falling behind (an outage, no liquidity, a limit out of reach): the next
  child asks for what is owed, but at most `CATCHUP_FACTOR` slices' worth,
  and while behind the algorithm tries again every half interval. That is
  the bound on catching up: no burst, at most twice the planned rate plus
  the slice itself.
* At the end of the window: `allow_past_end` false (default) sends what
  is left at once (IOC at the limit, or MARKET without one; a few tries),
  then ends; whatever is still unfilled is reported and the parent ends
  EXPIRED. `allow_past_end` true keeps working past the end at the
  catch-up pace until filled or canceled; the status shows the remainder.
* Every child has a one-line reason; the schedule is in the parent's
  status so the desk can show the deviation from it.
"""

from __future__ import annotations

import heapq
import math
import random

from ...errors import AlgorithmParameterError
from ...models import MAX_SLICES, OrderResult, OrderStatus, show
from .base import (
    Action,
    AlgoContext,
    MarketWatch,
    ParentState,
    PlaceChild,
    PlannedChild,
    decides,
    limit_child,
    marketable_child,
    plain,
    refusal_note,
    resolve_window,
)

DEFAULT_INTERVAL_S = 60.0
TIME_JITTER = 0.5  # of an interval, later only
SIZE_JITTER = 0.25  # +/- of the even slice
COLLAR_BPS = 25.0
CATCHUP_FACTOR = 2
FINAL_TRIES = 3
FINAL_RETRY_S = 1.0


def split_lots(total: int, weights: list[float], min_lots: int = 1) -> list[int]:
    """`total` lots in proportion to `weights` (largest remainder), summing to `total` exactly.

    Pieces are at least `min_lots` unless that is impossible; callers keep the
    number of pieces <= total // min_lots.
    """
    wsum = sum(weights)
    raw = [total * w / wsum for w in weights]
    lots = [math.floor(r) for r in raw]
    left = total - sum(lots)
    order = sorted(range(len(raw)), key=lambda i: raw[i] - lots[i], reverse=True)
    for i in order[:left]:
        lots[i] += 1
    # Lift pieces under the minimum a lot at a time from the largest piece (the first of
    # equals). A heap finds it: a scan per lot made this quadratic in the slices.
    if min(lots, default=min_lots) >= min_lots:
        return lots
    heap = [(-n, j) for j, n in enumerate(lots)]
    heapq.heapify(heap)
    for i in range(len(lots)):
        while lots[i] < min_lots:
            while True:  # entries go stale as pieces change: skip to a current one
                neg, j = heap[0]
                if -neg == lots[j]:
                    break
                heapq.heapreplace(heap, (-lots[j], j))
            if lots[j] - 1 < min_lots:
                return lots
            lots[j] -= 1
            lots[i] += 1
            heapq.heapreplace(heap, (-lots[j], j))
            heapq.heappush(heap, (-lots[i], i))
    return lots


def slice_count(meta: dict, window_s: float, total_lots: int, min_lots: int) -> tuple[int, bool]:
    """How many slices, and whether the operator asked for that many (`slices` or
    `interval_s`) rather than took the default."""
    if "slices" in meta:
        return int(meta["slices"]), True
    if "interval_s" in meta:
        return max(1, math.ceil(window_s / float(meta["interval_s"]) - 1e-9)), True
    n = max(1, math.ceil(window_s / DEFAULT_INTERVAL_S - 1e-9))
    return max(1, min(n, MAX_SLICES, total_lots // max(min_lots, 1))), False


def slices_problem(state: ParentState, n: int, window_s: float) -> str | None:
    """Why `n` slices cannot all be of the instrument's minimum quantity, or None."""
    inst = state.instrument
    if inst is None:
        return None
    total, min_lots = state.quantity_lots, max(inst.min_lots, 1)
    if total >= n * min_lots:
        return None
    order = state.order
    most = max(total // min_lots, 1)
    how = (
        f"an interval_s of at least {show(window_s / most)}" if "interval_s" in order.metadata
        else f"at most {most:,} slices"
    )
    return (
        f"TWAP slice {plain(order.quantity / n)} ({plain(order.quantity)} in {n:,} slices) is under "
        f"the minimum quantity {inst.min_quantity} of {order.symbol}: use {how}, or a larger quantity"
    )


class TwapAlgorithm:
    def __init__(self, state: ParentState, seed: int = 0) -> None:
        self.state = state
        meta = state.order.metadata
        start, end = resolve_window(meta, state.created_at)
        self._planned_slices: int | None = None
        if end > start:
            inst = state.instrument
            n, asked = slice_count(meta, end - start, state.quantity_lots, inst.min_lots if inst else 1)
            problem = slices_problem(state, n, end - start) if asked else None
            if problem is not None:
                raise AlgorithmParameterError(problem)
            self._planned_slices = n
        self.randomize = bool(meta.get("randomize", False))
        self.allow_past_end = bool(meta.get("allow_past_end", False))
        self._rng = random.Random(f"{seed}:{state.order.id}")
        self._watch = MarketWatch(state, state.created_at)
        self.times: list[float] = []
        self.sizes: list[int] = []  # lots per slice
        self._cum: list[int] = [0]  # lots due after slice i
        self.interval = 0.0
        self.start_at = self.end_at = 0.0
        self._next = 0  # index of the next slice not yet due
        self._catchup_at: float | None = None
        self._final_at: float | None = None
        self._final_tries = 0
        self._slice_lots = 1
        self._past_end = False

    # -- the plan -----------------------------------------------------------------------
    def _plan(self, now: float) -> str | None:
        state = self.state
        meta = state.order.metadata
        start, end = resolve_window(meta, now)
        if end <= now:
            return f"window already over: end_time {end!r} is not after now {now!r}"
        duration = end - start
        inst = state.instrument
        min_lots = inst.min_lots if inst else 1
        total = state.quantity_lots
        n, asked = slice_count(meta, duration, total, min_lots)
        if asked:
            # Checked when built; the window may have moved since (a start already past).
            problem = slices_problem(state, n, duration)
            if problem is not None:
                return problem
        interval = duration / n
        weights = [1.0] * n
        times = [start + i * interval for i in range(n)]
        if self.randomize:
            # Jitter in +d/-d pairs, shuffled: the weights still sum to n, so no slice
            # leaves +/-SIZE_JITTER of the even size once normalized.
            deltas = [self._rng.uniform(0.0, SIZE_JITTER) for _ in range(n // 2)]
            signed = [d for x in deltas for d in (x, -x)] + [0.0] * (n % 2)
            self._rng.shuffle(signed)
            weights = [1.0 + d for d in signed]
            times = [t + self._rng.uniform(0.0, TIME_JITTER) * interval for t in times]
        self.sizes = split_lots(total, weights, min_lots)
        self.times = times
        self.interval = interval
        self.start_at, self.end_at = start, end
        self._cum = [0]
        for lots in self.sizes:
            self._cum.append(self._cum[-1] + lots)
        self._slice_lots = max(self.sizes)
        state.window = (start, end)
        state.schedule = [(t, state.lots_to_quantity(c)) for t, c in zip(times, self._cum[1:])]
        return None

    # -- decisions ------------------------------------------------------------------------
    @decides
    def start(self, ctx: AlgoContext) -> list[Action]:
        now = ctx.now()
        problem = self._plan(now)
        if problem is not None:
            self.state.status, self.state.reason = OrderStatus.REJECTED, problem
            return []
        n = len(self.sizes)
        self.state.last_reason = (
            f"plan: {n} slice{'s' if n != 1 else ''} of about "
            f"{self.state.lots_to_quantity(self._slice_lots):g} every {self.interval:g} s"
            + (" (randomized)" if self.randomize else "")
        )
        if self.times[0] <= now:
            return self._step(ctx)
        self._watch.look(ctx)
        return []

    def _owed(self) -> int:
        s = self.state
        due = self._cum[self._next]
        return due - s.filled_lots - s.working_lots

    def _step(self, ctx: AlgoContext) -> list[Action]:
        state = self.state
        now = ctx.now()
        book, _ = self._watch.look(ctx)
        if state.remaining_lots <= 0:
            return []
        if now >= self.end_at and not self.allow_past_end:
            return self._finish(ctx, book)
        first_due = self._next
        while self._next < len(self.times) and self.times[self._next] <= now:
            self._next += 1
        self._catchup_at = None
        if state.working_children:
            return []
        owed = self._owed()
        if self._next == len(self.times) and now >= self.end_at:
            self._past_end = True
            owed = state.remaining_lots
        if owed <= 0:
            return []
        inst = state.instrument
        min_lots = inst.min_lots if inst else 1
        lots = min(owed, CATCHUP_FACTOR * self._slice_lots, state.remaining_lots)
        if lots < min_lots:
            lots = min(min_lots, state.remaining_lots)
        child, how = marketable_child(state, lots, book, COLLAR_BPS)
        if self._next > first_due:
            which = f"slice {self._next}/{len(self.times)}"
            if self._next - first_due > 1:
                which = f"slices {first_due + 1}-{self._next}/{len(self.times)}"
        else:
            which = "catch-up" if not self._past_end else "past the end"
        behind = state.lots_to_quantity(max(owed - lots, 0))
        reason = f"{which}: {child.quantity:g} {how}"
        if behind > 0:
            reason += f"; still {behind:g} behind, next try in {self.interval / 2:g} s"
        return [PlaceChild(child, None, reason, split=True)]

    def _finish(self, ctx: AlgoContext, book: object) -> list[Action]:
        """End of window without allow_past_end: send the rest at once."""
        state = self.state
        self._next = len(self.times)
        self._catchup_at = None
        if state.working_children:
            return []
        if self._final_tries >= FINAL_TRIES:
            left = state.lots_to_quantity(state.remaining_lots)
            state.status = OrderStatus.EXPIRED
            state.reason = (
                f"window ended with {left:g} of {state.order.quantity:g} unfilled after "
                f"{FINAL_TRIES} tries to complete"
                + (f" (limit {state.order.price:g})" if state.order.price is not None else "")
                + refusal_note(state)
            )
            return []
        self._final_tries += 1
        self._final_at = ctx.now() + FINAL_RETRY_S
        lots = state.remaining_lots
        if state.order.price is None:
            child = limit_child(state, lots, None)
            how = "at market"
        else:
            child, how = marketable_child(state, lots, book, COLLAR_BPS)  # type: ignore[arg-type]
        return [PlaceChild(
            child, None,
            f"end of window: complete the remaining {child.quantity:g} {how} "
            f"(try {self._final_tries}/{FINAL_TRIES})",
            split=True,
        )]

    @decides
    def on_child(self, ctx: AlgoContext, child: OrderResult) -> list[Action]:
        state = self.state
        if not child.status.is_final:
            return []
        if child.status is OrderStatus.REJECTED:
            state.last_reason = f"child refused: {child.reason}"
        if state.remaining_lots <= 0:
            self._watch.trades(ctx, final=True)
            return []
        if self._owed() > 0 or self._past_end:
            self._catchup_at = ctx.now() + self.interval / 2
        return []

    @decides
    def on_timer(self, ctx: AlgoContext) -> list[Action]:
        self._final_at = None
        return self._step(ctx)

    def next_wake(self) -> float | None:
        if self.state.remaining_lots <= 0 and not self.state.working_children:
            return None
        wakes = [w for w in (self._catchup_at, self._final_at) if w is not None]
        if self._next < len(self.times):
            wakes.append(self.times[self._next])
        elif not self.allow_past_end and self._final_tries == 0:
            wakes.append(self.end_at)
        return min(wakes) if wakes else None

    def largest_child(self) -> PlannedChild | None:
        """The largest planned slice (a randomized one up to SIZE_JITTER over the even size).
        Catching up sends up to CATCHUP_FACTOR slices, split across venues as the books allow."""
        n = self._planned_slices
        if n is None:
            return None  # the window is refused when the parent starts
        state = self.state
        stretch = 1.0 + (SIZE_JITTER if self.randomize else 0.0)
        total = state.quantity_lots
        size = state.lots_to_quantity(min(math.ceil(total / n * stretch), total))
        quantity = state.order.quantity
        what = f"TWAP slice {plain(size)} ({plain(quantity)} in {n:,} slice{'s' if n != 1 else ''}"
        what += ", randomized)" if self.randomize else ")"
        return PlannedChild(size, what, lambda most: f"use at least {math.ceil(quantity * stretch / most):,} slices")

    def describe(self) -> str:
        s = self.state
        n = len(self.times)
        due = s.lots_to_quantity(self._cum[self._next]) if self._cum else 0.0
        return (
            f"twap: {self._next}/{n} slices due, filled {s.filled_quantity:g}/{s.order.quantity:g} "
            f"(schedule {due:g})" + (", past the end" if self._past_end else "")
        )

