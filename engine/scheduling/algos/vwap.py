"""VWAP: follow a volume profile over a window, never above a participation cap.

Rules:

* Window: `duration_s` from acceptance, or `start_time`..`end_time`.
  `buckets` (default one per minute, at most `MAX_BUCKETS`, or one per
  weight of a listed profile) cut it into equal buckets.
* `profile` gives each bucket's share of the quantity: `"u_shape"` (the
  default: an intraday curve, heavier at both ends), `"market"` (the
  volume the venues printed in the same buckets of the window just before
  this one, read from their public trades; no trades there falls back to
  u_shape and says so) or a list of weights.
* Each bucket is worked in `SUBSTEPS` decisions. At each, the target is the
  cumulative share due by the end of that sub-step; the child (an IOC that
  takes liquidity, limit at the far touch plus a collar, never past the
  parent's limit `price`) asks for what is owed. A shortfall is carried
  forward: later steps ask for it again.
* `max_participation` p: within each bucket, our filled quantity stays
  <= p x the volume others traded in that bucket so far (the venues'
  public trades, our own prints taken out). A child is sized to that
  allowance before it is sent, and children take liquidity at once (IOC),
  so a fill never lands after the volume that allowed it; decisions stop
  short of a bucket's end, so fills land in the bucket that allowed them.
  Hence in every bucket ours <= p x (all volume) and the cap is never
  exceeded, at the price of trading after the market has shown its volume.
* At the end of the window the parent ends: FILLED, or EXPIRED with the
  remainder and why (the cap, the limit, no liquidity). The status reports
  the market's interval VWAP, the schedule deviation and the highest
  bucket participation.
* A decision costs the same whatever the number of buckets or fills: our
  fills and the market's volume are counted per bucket as they arrive, and
  the highest participation is kept as buckets close (recounted only when a
  print lands in a bucket already closed).
"""

from __future__ import annotations

import math

from ...models import MAX_BUCKETS, OrderResult, OrderStatus
from ...market_data import PublicTrade
from .base import (
    Action,
    AlgoContext,
    MarketWatch,
    ParentState,
    PlaceChild,
    decides,
    marketable_child,
    refusal_note,
    resolve_window,
)

DEFAULT_BUCKET_S = 60.0
SUBSTEPS = 4
COLLAR_BPS = 25.0
U_DEPTH = 1.5  # how much heavier the ends of the u_shape are than its middle


def u_shape(n: int) -> list[float]:
    """Weights heavier at the open and the close: 1 + U_DEPTH * (2x - 1)^2 at bucket midpoints."""
    return [1.0 + U_DEPTH * (2 * (i + 0.5) / n - 1) ** 2 for i in range(n)]


def market_profile(trades: list[PublicTrade], start: float, bucket_s: float, n: int) -> list[float]:
    """Volume per bucket of the window [start, start + n * bucket_s)."""
    volumes = [0.0] * n
    end = start + n * bucket_s
    for t in trades:
        if start <= t.ts_event < end:
            volumes[min(int((t.ts_event - start) / bucket_s), n - 1)] += t.quantity
    return volumes


class VwapAlgorithm:
    def __init__(self, state: ParentState, seed: int = 0) -> None:
        self.state = state
        meta = state.order.metadata
        self.cap: float | None = float(meta["max_participation"]) if "max_participation" in meta else None
        profile = meta.get("profile", "u_shape")
        self.profile_name: str = profile if isinstance(profile, str) else "weights"
        self._watch = MarketWatch(state, state.created_at)
        self.weights: list[float] = []
        self.times: list[float] = []  # decision times, SUBSTEPS per bucket
        self._cum: list[int] = []  # cumulative target lots at the end of each sub-step
        self.start_at = self.end_at = self.bucket_s = 0.0
        self._next = 0  # next decision index
        self._retry_at: float | None = None
        self.market_volume: list[float] = []  # per bucket, from the public trades
        self.own_volume: list[float] = []  # per bucket, our fills
        # Highest participation of the closed buckets (those before `_open`); the open
        # ones (the current bucket and the one before, which late prints still reach)
        # are looked at on each read.
        self._open = 0
        self._closed_max: float | None = None
        self._note = ""
        state.children.watch(self._on_child_change)

    # -- the plan -------------------------------------------------------------------------
    def _plan(self, ctx: AlgoContext, now: float) -> str | None:
        state = self.state
        meta = state.order.metadata
        start, end = resolve_window(meta, now)
        if end <= now:
            return f"window already over: end_time {end!r} is not after now {now!r}"
        duration = end - start
        profile = meta.get("profile", "u_shape")
        if "buckets" in meta:
            n = int(meta["buckets"])
        elif isinstance(profile, (list, tuple)):
            n = len(profile)
        else:
            # A default, not a request: a day-long window gets longer buckets, not more.
            n = min(max(1, math.ceil(duration / DEFAULT_BUCKET_S - 1e-9)), MAX_BUCKETS)
        bucket_s = duration / n
        if isinstance(profile, (list, tuple)):
            weights = [float(w) for w in profile]
        elif profile == "market":
            past = ctx.trades(state.order.symbol, math.nextafter(start - duration, -math.inf))
            weights = market_profile(past, start - duration, bucket_s, n)
            if sum(weights) <= 0:
                weights = u_shape(n)
                self._note = "market profile: no trades in the window before; using u_shape"
            else:
                self._note = f"market profile from {sum(weights):g} traded in the previous {duration:g} s"
        else:
            weights = u_shape(n)
        total_w = sum(weights)
        total = state.quantity_lots
        times, cum = [], []
        acc = 0.0
        for b, w in enumerate(weights):
            for j in range(SUBSTEPS):
                times.append(start + b * bucket_s + j * bucket_s / SUBSTEPS)
                cum.append(round(total * (acc + w * (j + 1) / SUBSTEPS) / total_w))
            acc += w
        cum[-1] = total
        self.weights, self.times, self._cum = weights, times, cum
        self.start_at, self.end_at, self.bucket_s = start, end, bucket_s
        self.market_volume = [0.0] * n
        self.own_volume = [0.0] * n
        state.window = (start, end)
        state.schedule = [(t, state.lots_to_quantity(c)) for t, c in zip(times, cum)]
        state.algo_detail.update({
            "profile": self.profile_name,
            "buckets": n,
            "bucket_s": bucket_s,
            "max_participation": self.cap,
            "max_bucket_participation": None,
        })
        if self._note:
            state.algo_detail["profile_note"] = self._note
        return None

    # -- participation ----------------------------------------------------------------------
    def _bucket(self, t: float) -> int:
        return min(max(int((t - self.start_at) / self.bucket_s), 0), len(self.weights) - 1)

    def _ours(self, b: int) -> float:
        return self.own_volume[b]

    def _on_child_change(self, old: OrderResult | None, new: OrderResult | None) -> None:
        """Count a child's new fills into their buckets (the scheduler records each change)."""
        if not self.own_volume:
            return  # not planned yet: no child has been sent
        old_fills = old.fills if old is not None else []
        new_fills = new.fills if new is not None else []
        n = len(old_fills)
        if len(new_fills) >= n and (not n or new_fills[n - 1] == old_fills[-1]):
            changes = [(f, 1) for f in new_fills[n:]]
        else:
            changes = [(f, -1) for f in old_fills] + [(f, 1) for f in new_fills]
        for f, sign in changes:
            if self.start_at <= f.timestamp < self.end_at:
                b = self._bucket(f.timestamp)
                self.own_volume[b] += sign * f.quantity
                self._changed(b)

    def _count(self, trades: list[PublicTrade]) -> None:
        for t in trades:
            if self.start_at <= t.ts_event < self.end_at:
                b = self._bucket(t.ts_event)
                self.market_volume[b] += t.quantity
                self._changed(b)

    def _bucket_participation(self, b: int) -> float | None:
        volume = self.market_volume[b]
        return self.own_volume[b] / volume if volume > 0 else None

    def _changed(self, b: int) -> None:
        if b < self._open:  # a print in a closed bucket (rare): count the closed ones again
            worst = None
            for c in range(self._open):
                p = self._bucket_participation(c)
                if p is not None and (worst is None or p > worst):
                    worst = p
            self._closed_max = worst

    def _close_until(self, t: float) -> None:
        """Fold the buckets now two or more behind `t` into the closed maximum."""
        upto = self._bucket(t) - 1
        while self._open < upto:
            p = self._bucket_participation(self._open)
            if p is not None and (self._closed_max is None or p > self._closed_max):
                self._closed_max = p
            self._open += 1

    def _participation(self, now: float) -> float | None:
        self._close_until(now)
        worst = self._closed_max
        for b in range(self._open, min(self._open + 3, len(self.market_volume))):
            p = self._bucket_participation(b)
            if p is not None and (worst is None or p > worst):
                worst = p
        return worst

    # -- decisions ----------------------------------------------------------------------------
    @decides
    def start(self, ctx: AlgoContext) -> list[Action]:
        now = ctx.now()
        problem = self._plan(ctx, now)
        if problem is not None:
            self.state.status, self.state.reason = OrderStatus.REJECTED, problem
            return []
        n = len(self.weights)
        cap = f", cap {self.cap:.0%} of market volume" if self.cap is not None else ""
        self.state.last_reason = (
            f"plan: {n} bucket{'s' if n != 1 else ''} of {self.bucket_s:g} s, {self.profile_name} profile{cap}"
            + (f"; {self._note}" if self._note else "")
        )
        if self.times[0] <= now:
            return self._step(ctx)
        self._count(self._watch.look(ctx)[1])
        return []

    def _step(self, ctx: AlgoContext) -> list[Action]:
        state = self.state
        now = ctx.now()
        book, trades = self._watch.look(ctx)
        self._count(trades)
        state.algo_detail["max_bucket_participation"] = self._participation(now)
        if state.remaining_lots <= 0:
            return []
        if now >= self.end_at:
            return self._expire()
        while self._next < len(self.times) and self.times[self._next] <= now:
            self._next += 1
        self._retry_at = None
        if state.working_children or self._next == 0:
            return []
        step = self._next - 1
        target = self._cum[step]
        owed = target - state.filled_lots - state.working_lots
        if owed <= 0:
            return []
        b, j = divmod(step, SUBSTEPS)
        where = f"bucket {b + 1}/{len(self.weights)} step {j + 1}/{SUBSTEPS}"
        lots = owed
        capped = ""
        if self.cap is not None:
            ours = self._ours(b)
            others = max(self.market_volume[b] - ours, 0.0)
            room = self.cap * others - ours
            inst = state.instrument
            if inst is not None:
                room_lots = inst.lots_at_most(room)
            else:
                room_lots = math.floor(max(room, 0.0) * 1e8 + 1e-9)
            if room_lots < lots:
                lots = max(room_lots, 0)
                capped = (
                    f"; capped: {self.cap:.0%} of {others:g} traded by others in the bucket "
                    f"allows {max(room, 0.0):g} more"
                )
        inst = state.instrument
        if lots <= 0 or (inst is not None and lots < inst.min_lots):
            state.last_reason = f"{where}: owe {state.lots_to_quantity(owed):g}, wait{capped or ' (under the minimum size)'}"
            return []
        child, how = marketable_child(state, lots, book, COLLAR_BPS)
        reason = (
            f"{where}: {child.quantity:g} {how}; target {state.lots_to_quantity(target):g} "
            f"of {state.order.quantity:g}{capped}"
        )
        return [PlaceChild(child, None, reason, split=True)]

    def largest_child(self) -> None:
        """None: each child is sized to the volume the market traded, and may be split."""
        return None

    def _expire(self) -> list[Action]:
        state = self.state
        left = state.lots_to_quantity(state.remaining_lots)
        why = []
        if self.cap is not None:
            why.append(f"participation cap {self.cap:.0%}")
        if state.order.price is not None:
            why.append(f"limit {state.order.price:g}")
        state.status = OrderStatus.EXPIRED
        refused = refusal_note(state)
        state.reason = (
            f"window ended with {left:g} of {state.order.quantity:g} unfilled"
            + (f" ({', '.join(why)})" if why else "" if refused else " (not enough liquidity)")
            + refused
        )
        return []

    @decides
    def on_child(self, ctx: AlgoContext, child: OrderResult) -> list[Action]:
        state = self.state
        if not child.status.is_final:
            return []
        if child.status is OrderStatus.REJECTED:
            state.last_reason = f"child refused: {child.reason}"
        if state.remaining_lots <= 0:
            self._count(self._watch.trades(ctx, final=True))
            state.algo_detail["max_bucket_participation"] = self._participation(ctx.now())
            return []
        if self._next and self._cum[self._next - 1] > state.filled_lots + state.working_lots:
            # Short of the step's target: try again halfway to the next step.
            self._retry_at = ctx.now() + self.bucket_s / SUBSTEPS / 2
        return []

    @decides
    def on_timer(self, ctx: AlgoContext) -> list[Action]:
        return self._step(ctx)

    def next_wake(self) -> float | None:
        state = self.state
        if state.remaining_lots <= 0 and not state.working_children:
            return None
        wakes = [self.end_at]
        if self._retry_at is not None:
            wakes.append(self._retry_at)
        if self._next < len(self.times):
            wakes.append(self.times[self._next])
        return min(wakes)

    def describe(self) -> str:
        s = self.state
        b = self._bucket(s.updated_at) + 1 if self.weights else 0
        p = s.algo_detail.get("max_bucket_participation")
        return (
            f"vwap: bucket {b}/{len(self.weights)}, filled {s.filled_quantity:g}/{s.order.quantity:g}"
            + (f", max participation {p:.1%}" if p is not None else "")
            + (f" (cap {self.cap:.0%})" if self.cap is not None else "")
        )
