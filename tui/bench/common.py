"""What every workload shares: the order it sends, sizes, timed loops in alternating rounds,
the goals' arithmetic and the throughput entry with its floor.

Rules of this module:

* Loops compared with each other run in alternating rounds, and the order of runs within
  a round is reversed every other round (`round_order`): a loop that always ran first
  would meet a warmer or quieter machine than the one after it.
* A throughput entry states its cost in builds of the reference order
  (`order_builds_per_order`, see reference.py) and its goal in one of two forms: a
  ceiling in such builds (`builds_goal`), a share of another setup measured in the
  same rounds (`share_goal`), or both (`share_and_builds_goal`: `met` needs both, and
  `met_share`, `met_builds` say which held). `met` is decided on the unrounded figures.
"""

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

# Goals (issue 16), in builds of the reference order per order: 120k / 80k / 100k orders/s
# where the reference builds in 1.7 us.
GOAL_SYNC_ROUTER_BUILDS = 4.9
GOAL_SMART_ROUTER_BUILDS = 7.4
GOAL_ASYNC_OPTIMIZER_BUILDS = 5.9
# ... and as shares of another setup's orders/s, measured in the same rounds.
GOAL_ASYNC_LATENCY_SHARE = 0.8  # of async_optimizer's setup
GOAL_BATCH_SHARE = 1.3  # of single submit_order calls
GOAL_EVENTS_SHARE = 0.8  # of the same Engine without a subscriber
GOAL_JOURNAL_SHARE = 0.5  # of the same Engine without a journal (issue 18) ...
GOAL_JOURNAL_BUILDS = 10.0  # ... and at most this many reference builds per order
GOAL_RESTING_SHARE = 0.9  # of the same router with no order resting
GOAL_STEADY_SHARE = 0.9  # the last stretch's orders/s, of the first stretch's
GOAL_PROFILER_NS = 250.0
GOAL_TWAP_WALL_S = 1.0
GOAL_DESK_P50_MS = 50.0
GOAL_DESK_P99_MS = 100.0
GOAL_MEMORY_RATIO = 1.5


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work each workload does."""

    orders: int  # measured orders of sync_router, smart_router, async_optimizer, batch, engine_events
    round_orders: int  # compared loops alternate in rounds of this many orders
    warmup: int  # orders (or samples) before measuring
    async_latency_orders: int
    probe: int  # one-in-flight round trips timed for the async workloads' p50/p99
    batch_size: int
    resting: int  # orders resting at the venue in the resting workload
    resting_orders: int  # measured orders of the resting workload
    profiler_samples: int
    desk_presses: int
    desk_warmup_s: float
    desk_soak_s: float  # the opt-in desk_soak workload
    steady_stretch: int  # steady_state compares its first and last stretch of this many orders
    steady_orders: int
    steady_budget_s: float  # steady_state stops here and says so


FULL = Sizes(
    orders=50_000, round_orders=5_000, warmup=5_000, async_latency_orders=50_000, probe=2_000, batch_size=1_000,
    resting=10_000, resting_orders=20_000,
    profiler_samples=2_000_000, desk_presses=100, desk_warmup_s=2.0, desk_soak_s=3_600.0,
    steady_stretch=100_000, steady_orders=1_000_000, steady_budget_s=300.0,
)
QUICK = Sizes(
    orders=2_000, round_orders=500, warmup=200, async_latency_orders=2_000, probe=50, batch_size=1_000,
    resting=1_000, resting_orders=1_000,
    profiler_samples=20_000, desk_presses=8, desk_warmup_s=0.5, desk_soak_s=20.0,
    steady_stretch=2_000, steady_orders=20_000, steady_budget_s=60.0,
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


def p50_p99_us(samples_ns: list[int]) -> tuple[float | None, float | None]:
    """p50 and p99 in microseconds (None without samples: every probed order was refused)."""
    if not samples_ns:
        return None, None
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


def risk_limits(engine: Engine) -> dict[str, Any] | str:
    """The limits an Engine's orders were checked against, as the JSON states them."""
    risk = engine.risk
    return risk.limits.describe() if risk is not None else "none"


# -- timed loops in alternating rounds -----------------------------------------------------------


@dataclass(slots=True)
class Run:
    """One timed loop: how many orders, how long, per-order samples, what came back."""

    orders: int
    seconds: float
    samples_ns: list[int]
    results: list[Any]
    waited: int = 0  # async rounds: orders waited for one by one (see engine_async.async_round)

    @property
    def orders_per_s(self) -> float:
        return self.orders / self.seconds


def round_bounds(n: int, size: int) -> list[tuple[int, int]]:
    return [(first, min(first + size, n)) for first in range(0, n, size)]


def merge(runs: list[Run]) -> Run:
    return Run(
        sum(r.orders for r in runs), sum(r.seconds for r in runs),
        [s for r in runs for s in r.samples_ns], [x for r in runs for x in r.results],
        sum(r.waited for r in runs),
    )


def round_order(round_index: int, count: int) -> list[int]:
    """Which loop runs when in round `round_index`: as given in even rounds, reversed in odd ones."""
    order = list(range(count))
    return order if round_index % 2 == 0 else order[::-1]


Loop = Callable[[str, int, int], Run]  # (id prefix, first index, stop index) -> the timed run


def warm_up(sizes: Sizes, *loops: Loop) -> None:
    for loop in loops:
        loop("w", 0, sizes.warmup)
    gc.collect()


@dataclass(slots=True)
class Measured:
    """Loops measured in alternating rounds: one merged run per loop, and each round's runs."""

    runs: list[Run]
    rounds: list[list[Run]]  # rounds[k][j]: loop j in round k
    orders: list[list[int]]  # orders[k]: the loops' indexes in the order they ran in round k

    def round_order_names(self, names: Sequence[str]) -> list[list[str]]:
        return [[names[j] for j in order] for order in self.orders]

    def orders_per_s_by_round(self, names: Sequence[str]) -> dict[str, list[float]]:
        return {name: [round(r[j].orders_per_s, 1) for r in self.rounds] for j, name in enumerate(names)}


def measure(n: int, round_size: int, *loops: Loop) -> Measured:
    """Run the loops (after `warm_up`) over orders 0..n in rounds of `round_size`, the order
    of runs reversed every other round (`round_order`)."""
    rounds: list[list[Run]] = []
    orders: list[list[int]] = []
    for k, (first, stop) in enumerate(round_bounds(n, round_size)):
        order = round_order(k, len(loops))
        done: list[Run | None] = [None] * len(loops)
        for j in order:
            done[j] = loops[j]("m", first, stop)
        rounds.append([r for r in done if r is not None])
        orders.append(order)
    return Measured([merge([r[j] for r in rounds]) for j in range(len(loops))], rounds, orders)


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


# -- goals and the entry ------------------------------------------------------------------------


def order_builds_per_order(orders_per_s: float, build_us: float) -> float:
    """What one order cost, in builds of the reference order: 1e6 / orders_per_s / build_us."""
    return 1e6 / orders_per_s / build_us


def builds_goal(max_builds: float) -> dict[str, Any]:
    """A ceiling on the cost per order, in reference builds (this machine's orders/s
    threshold is filled in once the yard stick is known: `apply_yard_stick`)."""
    return {"goal": f"<= {max_builds:g} Order builds per order", "goal_builds_per_order": max_builds}


def share_goal(share: float, baseline_per_s: float, of: str, *, baseline_ok: bool = True) -> dict[str, Any]:
    """At least `share` of another setup's orders/s, measured in the same rounds."""
    return {
        "goal": f">= {share:g} x {of}",
        "goal_share": share,
        "baseline": of,
        "baseline_orders_per_s": round(baseline_per_s, 1),
        "baseline_ok": baseline_ok,
        "goal_orders_per_s": share * baseline_per_s,
    }


def share_and_builds_goal(share: float, baseline_per_s: float, of: str, max_builds: float, *,
                          baseline_ok: bool = True) -> dict[str, Any]:
    """Both: at least `share` of another setup's orders/s in the same rounds, and at most
    `max_builds` reference builds per order (decided once the yard stick is known)."""
    goal = share_goal(share, baseline_per_s, of, baseline_ok=baseline_ok)
    goal["goal"] += f" and <= {max_builds:g} Order builds per order"
    goal["goal_builds_per_order"] = max_builds
    return goal


def throughput_entry(
    name: str, run: Run, floor: Run, fills: int, rejected: int, *,
    seed: int | None, goal: dict[str, Any], **extra: Any,
) -> dict[str, Any]:
    """The entry of a throughput workload. Its cost in reference builds and a builds goal's
    verdict are added by `apply_yard_stick` once the run's yard stick is known."""
    orders_per_s = run.orders_per_s
    floor_per_s = floor.orders_per_s
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
        **goal,
        "met": None,
    }
    entry.setdefault("goal_orders_per_s", None)  # a builds goal's: known with the yard stick
    if "goal_share" in goal:
        threshold = goal["goal_orders_per_s"]
        entry["goal_orders_per_s"] = round(threshold, 1)
        entry["met"] = bool(negligible and goal["baseline_ok"] and orders_per_s >= threshold)
        if "goal_builds_per_order" in goal:
            entry["met_share"] = entry["met"]
            entry["met_builds"] = None  # known with the yard stick
    entry.update(extra)
    return entry


def apply_yard_stick(entry: dict[str, Any], build_us: float) -> None:
    """State a throughput entry's cost in reference builds (`build_us`: the run's yard stick)
    and decide a builds goal."""
    if "floor_orders_per_s" not in entry:
        return  # not a throughput entry
    builds = order_builds_per_order(entry["orders"] / entry["seconds"], build_us)
    entry["order_build_us"] = round(build_us, 4)
    entry["order_builds_per_order"] = round(builds, 3)
    limit = entry.get("goal_builds_per_order")
    if limit is None:
        return
    met_builds = bool(entry["rejections_negligible"] and builds <= limit)
    if "met_share" in entry:  # a share and a ceiling: the share's threshold stays the headline
        entry["goal_builds_orders_per_s"] = round(1e6 / (limit * build_us), 1)
        entry["met_builds"] = met_builds
        entry["met"] = bool(entry["met_share"] and met_builds)
    else:
        entry["goal_orders_per_s"] = round(1e6 / (limit * build_us), 1)
        entry["met"] = met_builds
