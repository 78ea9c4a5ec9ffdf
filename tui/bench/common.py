"""What every workload shares: the order it sends, sizes, timed loops in alternating rounds,
and the throughput entry with its floor."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from engine import (
    DEFAULT_VENUES,
    Engine,
    FaultConfig,
    LatencyModel,
    Order,
    OrderResult,
    OrderSide,
    OrderStatus,
    OrderType,
    RealClock,
    SimulatedExchange,
    VenueSpec,
)


SYMBOL = "BTC/USD"
QUANTITY = 0.001  # ten lots: far below a level's size, so every market order fills at the touch
SIDES = (OrderSide.BUY, OrderSide.SELL)
MARKET = OrderType.MARKET
SAMPLE_EVERY = 4  # time one order in this many (perf_counter_ns costs ~0.1 us a call)
REJECTED_TOLERANCE = 0.001  # at most this share of orders refused for a throughput figure to count

# The component document's figures (orders per second).
SEED_SYNC_ROUTER = 6_250
SEED_SMART_ROUTER = 6_000
SEED_ASYNC_ROUTER = 59_000

# Goals on a 2-core machine (issue 7).
GOAL_SYNC_ROUTER = 120_000
GOAL_SMART_ROUTER = 80_000
GOAL_ASYNC_OPTIMIZER = 100_000
GOAL_ASYNC_LATENCY_SHARE = 0.5  # of async_optimizer's orders/s
GOAL_PROFILER_NS = 250.0
GOAL_TWAP_WALL_S = 1.0
GOAL_DESK_P50_MS = 50.0
GOAL_DESK_P99_MS = 100.0
GOAL_MEMORY_RATIO = 1.5


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work each workload does."""

    orders: int  # measured orders of sync_router, smart_router, async_optimizer, batch
    round_orders: int  # floor and engine alternate in rounds of this many orders
    warmup: int  # orders (or samples) before measuring
    async_latency_orders: int
    probe: int  # one-in-flight round trips timed for the async workloads' p50/p99
    batch_size: int
    profiler_samples: int
    desk_presses: int
    desk_warmup_s: float
    desk_soak_s: float  # the opt-in desk_soak workload
    memory_small: int
    memory_large: int
    memory_budget_s: float  # the memory workload stops here and says so


FULL = Sizes(
    orders=50_000, round_orders=5_000, warmup=5_000, async_latency_orders=50_000, probe=2_000, batch_size=1_000,
    profiler_samples=2_000_000, desk_presses=100, desk_warmup_s=2.0, desk_soak_s=3_600.0,
    memory_small=100_000, memory_large=1_000_000, memory_budget_s=300.0,
)
QUICK = Sizes(
    orders=2_000, round_orders=500, warmup=200, async_latency_orders=2_000, probe=50, batch_size=1_000,
    profiler_samples=20_000, desk_presses=8, desk_warmup_s=0.5, desk_soak_s=20.0,
    memory_small=2_000, memory_large=20_000, memory_budget_s=60.0,
)


@dataclass(slots=True)
class Context:
    sizes: Sizes
    quick: bool
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # earlier workloads of this run
    progress: TextIO | None = None


# -- small helpers -------------------------------------------------------------------------


def bench_order(prefix: str, i: int) -> Order:
    """The one order every workload sends: a small market order, sides alternating."""
    return Order(id=f"{prefix}-{i}", symbol=SYMBOL, side=SIDES[i & 1], type=MARKET, quantity=QUANTITY)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def p50_p99_us(samples_ns: list[int]) -> tuple[float, float]:
    """p50 and p99 in microseconds."""
    samples_ns.sort()
    return round(percentile(samples_ns, 50) / 1e3, 3), round(percentile(samples_ns, 99) / 1e3, 3)


def instant_specs() -> tuple[VenueSpec, ...]:
    """The default venues' fees and markets, with no simulated latency and no faults."""
    return tuple(
        replace(spec, latency=LatencyModel(), faults=FaultConfig()) for spec in DEFAULT_VENUES
    )


def sim_venue(name: str, clock: RealClock, seed: int = 0, **kwargs: Any) -> SimulatedExchange:
    return SimulatedExchange(name, clock=clock, seed=seed, **kwargs)


def count_outcomes(results: list[OrderResult]) -> tuple[int, int]:
    """(fills, rejected) over results."""
    fills = rejected = 0
    for result in results:
        fills += len(result.fills)
        if result.status is OrderStatus.REJECTED:
            rejected += 1
    return fills, rejected


def venue_fills(venues: Sequence[SimulatedExchange]) -> int:
    return sum(v.counters.fills for v in venues)


@dataclass(slots=True)
class Run:
    """One timed loop: how many orders, how long, per-order samples, what came back."""

    orders: int
    seconds: float
    samples_ns: list[int]
    results: list[Any]


def round_bounds(n: int, size: int) -> list[tuple[int, int]]:
    return [(first, min(first + size, n)) for first in range(0, n, size)]


def merge(runs: list[Run]) -> Run:
    return Run(
        sum(r.orders for r in runs), sum(r.seconds for r in runs),
        [s for r in runs for s in r.samples_ns], [x for r in runs for x in r.results],
    )


Loop = Callable[[str, int, int], Run]  # (id prefix, first index, stop index) -> the timed run


def warm_up(sizes: Sizes, *loops: Loop) -> None:
    for loop in loops:
        loop("w", 0, sizes.warmup)
    gc.collect()


def measure(sizes: Sizes, *loops: Loop) -> list[Run]:
    """Run the loops in alternating rounds (after `warm_up`): one merged run per loop.

    Loops compared with each other (the floor, or batch against single orders) so see
    the same load from other processes.
    """
    runs: list[list[Run]] = [[] for _ in loops]
    for first, stop in round_bounds(sizes.orders, sizes.round_orders):
        for loop, done in zip(loops, runs):
            done.append(loop("m", first, stop))
    return [merge(done) for done in runs]


def sync_loop(call: Callable[[Order], Any]) -> Loop:
    """A loop that builds each order and hands it to `call`, timing it all and some calls."""

    def loop(prefix: str, first: int, stop: int) -> Run:
        return run_sync(prefix, first, stop, call)

    return loop


def run_sync(prefix: str, first: int, stop: int, call: Callable[[Order], Any]) -> Run:
    results: list[Any] = []
    append = results.append
    samples: list[int] = []
    clock = time.perf_counter_ns
    make = bench_order
    start = clock()
    for i in range(first, stop):
        order = make(prefix, i)
        if i % SAMPLE_EVERY:
            append(call(order))
        else:
            t0 = clock()
            result = call(order)
            samples.append(clock() - t0)
            append(result)
    return Run(stop - first, (clock() - start) / 1e9, samples, results)


def floor_call(clock: RealClock) -> Callable[[Order], Any]:
    """The least an engine could do with an order: read the clock twice, answer."""
    now_ns = clock.now_ns

    def submit(order: Order) -> tuple[str, int]:
        t0 = now_ns()
        return (order.id, now_ns() - t0)

    return submit


def risk_limits(engine: Engine) -> dict[str, Any] | str:
    """The limits an Engine's orders were checked against, as the JSON states them."""
    risk = engine.risk
    return risk.limits.describe() if risk is not None else "none"


def throughput_entry(
    name: str, run: Run, floor: Run, fills: int, rejected: int, *,
    seed: int | None, goal: float | None, goal_text: str, **extra: Any,
) -> dict[str, Any]:
    orders_per_s = run.orders / run.seconds
    floor_per_s = floor.orders / floor.seconds
    p50, p99 = p50_p99_us(run.samples_ns)
    floor_p50, _ = p50_p99_us(floor.samples_ns)
    negligible = rejected <= run.orders * REJECTED_TOLERANCE
    entry: dict[str, Any] = {
        "name": name,
        "orders": run.orders,
        "fills": fills,
        "rejected": rejected,
        "rejections_negligible": negligible,
        "seconds": round(run.seconds, 6),
        "orders_per_s": round(orders_per_s, 1),
        "p50_us": p50,
        "p99_us": p99,
        "seed_orders_per_s": seed,
        "floor_orders_per_s": round(floor_per_s, 1),
        "floor_p50_us": floor_p50,
        "ratio_to_floor": round(orders_per_s / floor_per_s, 4),
        "goal": goal_text,
        "goal_orders_per_s": None if goal is None else round(goal, 1),
        "goal_met": None if goal is None else bool(negligible and orders_per_s >= goal),
    }
    entry.update(extra)
    return entry
