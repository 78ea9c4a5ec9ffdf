"""Transaction cost analysis: how a parent order did against its benchmarks.

Pure functions of fills, a benchmark price and the market tape; no clock,
no venue. The parent's state (`engine.scheduling.algos.base.ParentState`) feeds them
and the optimizer shows the result in `get_order_status(...).detail`.

Sign convention (all figures): a positive cost is money lost. A buy that
paid above its benchmark, or a sell that received below it, has positive
slippage. Basis points are of the benchmark price.

* slippage vs arrival: side * (average fill - arrival mid) / arrival, in bps.
* implementation shortfall (Perold): what the fills cost against the arrival
  mid (execution cost), plus fees, plus the opportunity cost of what was not
  filled (side * (last mid - arrival) * unfilled). In quote currency, and in
  bps of the order's whole arrival notional (arrival * quantity).
* interval VWAP: the volume-weighted price of every public trade printed on
  the parent's symbol while it worked (ours included, as the market saw them).
* schedule deviation: filled minus what the schedule wanted filled by now;
  positive is ahead of schedule. The schedule is a step function of
  (time, cumulative quantity) points.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .models import Fill, OrderSide

__all__ = [
    "IntervalVWAP",
    "Shortfall",
    "implementation_shortfall",
    "schedule_target",
    "slippage_bps",
]


def slippage_bps(side: OrderSide, price: float | None, benchmark: float | None) -> float | None:
    """Signed so that positive is a cost (see the module docstring)."""
    if price is None or not benchmark:
        return None
    return side.sign * (price - benchmark) / benchmark * 10_000


@dataclass(frozen=True, slots=True)
class Shortfall:
    execution_cost: float  # side * (fill price - arrival) summed over fills
    fees: float
    opportunity_cost: float  # side * (last mid - arrival) * unfilled quantity
    total: float
    bps: float | None  # total in bps of arrival * order quantity


def implementation_shortfall(
    side: OrderSide,
    arrival: float | None,
    fills: Iterable[Fill],
    quantity: float,
    last_price: float | None = None,
) -> Shortfall | None:
    """Perold's implementation shortfall with fees; None without an arrival price."""
    if not arrival:
        return None
    execution = fees = filled = 0.0
    for f in fills:
        execution += side.sign * (f.price - arrival) * f.quantity
        fees += f.fee
        filled += f.quantity
    unfilled = max(quantity - filled, 0.0)
    opportunity = 0.0
    if unfilled > 1e-12 and last_price is not None:
        opportunity = side.sign * (last_price - arrival) * unfilled
    total = execution + fees + opportunity
    notional = arrival * quantity
    return Shortfall(execution, fees, opportunity, total, total / notional * 10_000 if notional else None)


class IntervalVWAP:
    """The market's volume-weighted average price over an interval, accumulated trade by trade."""

    __slots__ = ("volume", "notional", "trades")

    def __init__(self) -> None:
        self.volume = 0.0
        self.notional = 0.0
        self.trades = 0

    def add(self, price: float, quantity: float) -> None:
        self.volume += quantity
        self.notional += price * quantity
        self.trades += 1

    @property
    def vwap(self) -> float | None:
        return self.notional / self.volume if self.volume > 0 else None


def schedule_target(schedule: Sequence[tuple[float, float]], t: float) -> float:
    """Cumulative quantity the schedule wants done at time t (0 before its first point)."""
    if not schedule:
        return 0.0
    i = bisect.bisect_right(schedule, (t, float("inf")))
    return schedule[i - 1][1] if i else 0.0
