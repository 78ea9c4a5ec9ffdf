"""Workloads of the sync engine objects: OrderRouter, SmartOrderRouter, batches, resting
orders, the profiler."""

from __future__ import annotations

import gc
import math
import random
import time
from collections.abc import Callable
from typing import Any

from engine import (
    ExchangeClient,
    LatencyProfiler,
    Order,
    OrderResult,
    OrderRouter,
    OrderSide,
    OrderStatus,
    OrderType,
    RealClock,
    SimulatedExchange,
    SmartOrderRouter,
)

from .common import (
    GOAL_BATCH_SHARE,
    GOAL_PROFILER_NS,
    GOAL_RESTING_SHARE,
    GOAL_SMART_ROUTER_BUILDS,
    GOAL_SYNC_ROUTER_BUILDS,
    QUANTITY,
    SEED_SMART_ROUTER,
    SEED_SYNC_ROUTER,
    SYMBOL,
    Context,
    Loop,
    Run,
    bench_order,
    builds_goal,
    count_outcomes,
    floor_call,
    instant_specs,
    measure,
    round_bounds,
    share_goal,
    sim_venue,
    sync_loop,
    throughput_entry,
    venue_fills,
    warm_up,
)


# -- sync workloads ---------------------------------------------------------------------------


def bench_sync_router(ctx: Context) -> dict[str, Any]:
    """OrderRouter, one venue, the component document's form; profiler and breaker on."""
    sizes = ctx.sizes
    clock = RealClock()
    router, venue = _one_venue_router(clock)

    def submit(order: Order) -> OrderResult:
        return router.submit_order(order, "bench")

    engine, floor = sync_loop(submit), sync_loop(floor_call(clock))
    warm_up(sizes, engine, floor)
    fills_before = venue.counters.fills
    floor_run, run = measure(sizes.orders, sizes.round_orders, floor, engine).runs
    fills, rejected = count_outcomes(run.results)
    return throughput_entry(
        "sync_router", run, floor_run, fills, rejected, seed=SEED_SYNC_ROUTER,
        goal=builds_goal(GOAL_SYNC_ROUTER_BUILDS),
        venue_fills=venue.counters.fills - fills_before,
    )


def bench_smart_router(ctx: Context) -> dict[str, Any]:
    """SmartOrderRouter over the three default venues (instant), the document's form."""
    sizes = ctx.sizes
    clock = RealClock()
    profiler = LatencyProfiler(clock=clock)
    router = OrderRouter(latency_profiler=profiler, clock=clock)
    venues = []
    for i, spec in enumerate(instant_specs()):
        venue = sim_venue(spec.name, clock, seed=i, fees=spec.fees, market=spec.market)
        router.register_exchange(spec.name, ExchangeClient(venue))
        venues.append(venue)
    smart = SmartOrderRouter(order_router=router, latency_profiler=profiler)
    engine, floor = sync_loop(smart.route_order), sync_loop(floor_call(clock))
    warm_up(sizes, engine, floor)
    fills_before, sent_before = venue_fills(venues), sum(v.counters.submitted for v in venues)
    floor_run, run = measure(sizes.orders, sizes.round_orders, floor, engine).runs
    fills = rejected = 0
    for children in run.results:
        child_fills, child_rejected = count_outcomes(children)
        fills += child_fills
        rejected += 1 if child_rejected else 0
    return throughput_entry(
        "smart_router", run, floor_run, fills, rejected, seed=SEED_SMART_ROUTER,
        goal=builds_goal(GOAL_SMART_ROUTER_BUILDS),
        venue_fills=venue_fills(venues) - fills_before,
        venue_orders=sum(v.counters.submitted for v in venues) - sent_before,
        venues=len(venues),
    )


def _one_venue_router(clock: RealClock) -> tuple[OrderRouter, SimulatedExchange]:
    router = OrderRouter(latency_profiler=LatencyProfiler(clock=clock), clock=clock)
    venue = sim_venue("bench", clock)
    router.register_exchange("bench", ExchangeClient(venue))
    return router, venue


def bench_batch(ctx: Context) -> dict[str, Any]:
    """OrderRouter.submit_orders in batches, against single submit_order calls on a twin
    router: the two (and the floor) alternate in rounds, who goes first swapping each round."""
    sizes = ctx.sizes
    clock = RealClock()
    (router, _), (single, _) = _one_venue_router(clock), _one_venue_router(clock)
    now_ns = clock.now_ns

    def floor_batch(orders: list[Order]) -> list[Any]:
        out = []
        for order in orders:
            t0 = now_ns()
            out.append((order.id, now_ns() - t0))
        return out

    def batches(call: Callable[[list[Order]], list[Any]]) -> Loop:
        def loop(prefix: str, first: int, stop: int) -> Run:
            results: list[Any] = []
            samples: list[int] = []
            pc = time.perf_counter_ns
            start = pc()
            for lo, hi in round_bounds(stop - first, sizes.batch_size):
                batch = [bench_order(prefix, i) for i in range(first + lo, first + hi)]
                t0 = pc()
                results.extend(call(batch))
                samples.append((pc() - t0) // len(batch))  # per order, averaged over its batch
            return Run(stop - first, (pc() - start) / 1e9, samples, results)

        return loop

    def submit(batch: list[Order]) -> list[OrderResult]:
        return router.submit_orders(batch, "bench")

    def submit_one(order: Order) -> OrderResult:
        return single.submit_order(order, "bench")

    names = ("floor", "batch", "single")
    loops = (batches(floor_batch), batches(submit), sync_loop(submit_one))
    warm_up(sizes, *loops)
    measured = measure(sizes.orders, max(sizes.round_orders, sizes.batch_size), *loops)
    floor_run, run, single_run = measured.runs
    fills, rejected = count_outcomes(run.results)
    single_fills, single_rejected = count_outcomes(single_run.results)
    single_ok = single_rejected == 0 and single_fills >= single_run.orders
    return throughput_entry(
        "batch", run, floor_run, fills, rejected, seed=None,
        goal=share_goal(GOAL_BATCH_SHARE, single_run.orders_per_s,
                        "single submit_order calls (a twin router, same rounds)", baseline_ok=single_ok),
        batch_size=sizes.batch_size,
        single_orders_per_s=round(single_run.orders_per_s, 1),
        round_order=measured.round_order_names(names),
        orders_per_s_by_round=measured.orders_per_s_by_round(names),
        p_note="p50_us/p99_us: per-order average within each batch",
    )


# -- orders resting at the venue ----------------------------------------------------------------------

RESTING_AWAY = (0.02, 0.04)  # resting prices, as a share of the mid away from it: inside a 5% risk band


def _rest(router: OrderRouter, venue: SimulatedExchange, count: int) -> int:
    """Place `count` LIMIT orders far from the touch (buys below, sells above), through the
    router as any order goes; how many rest."""
    book = venue.book(SYMBOL, depth=1)
    mid = book.mid
    if mid is None:
        raise RuntimeError(f"the venue's {SYMBOL} book has no two sides to rest orders around: {book!r}")
    instrument = venue.instruments()[SYMBOL]
    tick = float(instrument.tick_size)
    low, high = RESTING_AWAY
    resting = 0
    for i in range(count):
        side = OrderSide.BUY if i % 2 == 0 else OrderSide.SELL
        away = low + (high - low) * (i % 100) / 100  # a hundred price levels on each side
        price = instrument.ticks_to_price(round(mid * (1 - side.sign * away) / tick))
        result = router.submit_order(
            Order(id=f"rest-{i}", symbol=SYMBOL, side=side, type=OrderType.LIMIT, quantity=QUANTITY, price=price),
            "bench",
        )
        resting += result.status is OrderStatus.NEW
    return resting


def bench_resting(ctx: Context) -> dict[str, Any]:
    """One order's cost while many LIMIT orders rest at the venue (placed through the same
    router), against a twin router with none resting, in alternating rounds."""
    sizes = ctx.sizes
    clock = RealClock()
    (busy, busy_venue), (idle, _) = _one_venue_router(clock), _one_venue_router(clock)
    placed = _rest(busy, busy_venue, sizes.resting)

    def submit_busy(order: Order) -> OrderResult:
        return busy.submit_order(order, "bench")

    def submit_idle(order: Order) -> OrderResult:
        return idle.submit_order(order, "bench")

    names = ("floor", "resting", "none_resting")
    loops = (sync_loop(floor_call(clock)), sync_loop(submit_busy), sync_loop(submit_idle))
    warm_up(sizes, *loops)
    measured = measure(sizes.resting_orders, sizes.round_orders, *loops)
    floor_run, run, idle_run = measured.runs
    fills, rejected = count_outcomes(run.results)
    idle_fills, idle_rejected = count_outcomes(idle_run.results)
    still_resting = len(busy_venue.open_orders(SYMBOL))
    return throughput_entry(
        "resting", run, floor_run, fills, rejected, seed=None,
        goal=share_goal(GOAL_RESTING_SHARE, idle_run.orders_per_s,
                        "the same with none resting (a twin router, same rounds)",
                        baseline_ok=idle_rejected == 0 and idle_fills >= idle_run.orders),
        resting=sizes.resting,
        resting_placed=placed,
        resting_at_end=still_resting,
        resting_prices=f"LIMIT {RESTING_AWAY[0]:.0%}-{RESTING_AWAY[1]:.0%} from the mid, buys below, sells above",
        none_resting_orders_per_s=round(idle_run.orders_per_s, 1),
        round_order=measured.round_order_names(names),
        orders_per_s_by_round=measured.orders_per_s_by_round(names),
    )


# -- the profiler ---------------------------------------------------------------------------------


def bench_profiler_record(ctx: Context) -> dict[str, Any]:
    """LatencyProfiler.record, one venue-tagged category, realistic values; folds included."""
    n = ctx.sizes.profiler_samples
    rng = random.Random(7)
    values = [int(rng.lognormvariate(math.log(5_000), 0.8)) for _ in range(10_000)]
    rounds = max(1, n // len(values))
    profiler = LatencyProfiler(clock=RealClock())
    record = profiler.record

    def noop(category: str, nanoseconds: int, venue: str | None = None) -> None:
        return None

    def loop(fn: Callable[[str, int, str | None], None], count: int) -> float:
        pc = time.perf_counter_ns
        start = pc()
        for _ in range(count):
            for value in values:
                fn("acknowledgment", value, "bench")
        if fn is record:
            profiler.flush()  # the fold of what is still buffered is part of the cost
        return (pc() - start) / (count * len(values))

    loop(record, max(1, rounds // 10))
    loop(noop, max(1, rounds // 10))
    gc.collect()
    before = profiler.stats("acknowledgment", "bench").count
    floor_ns = ns = 0.0
    for _ in range(rounds):  # interleaved, one pass over the values each
        floor_ns += loop(noop, 1) / rounds
        ns += loop(record, 1) / rounds
    recorded = profiler.stats("acknowledgment", "bench").count - before
    return {
        "name": "profiler_record",
        "samples": rounds * len(values),
        "seconds": round(ns * rounds * len(values) / 1e9, 6),
        "ns_per_sample": round(ns, 1),
        "floor_ns_per_sample": round(floor_ns, 1),
        "ratio_to_floor": round(floor_ns / ns, 4),
        "recorded": recorded,
        "goal": f"<= {GOAL_PROFILER_NS:g} ns per sample",
        "met": ns <= GOAL_PROFILER_NS,
        "floor_note": "floor: the same loop calling a function that does nothing; ratio = floor ns / ns",
    }
