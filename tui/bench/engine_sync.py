"""Workloads of the sync engine objects: OrderRouter, SmartOrderRouter, batches, the profiler."""

from __future__ import annotations

import gc
import math
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from engine import ExchangeClient, LatencyProfiler, Order, OrderResult, OrderRouter, RealClock, SmartOrderRouter

from .common import (
    GOAL_PROFILER_NS,
    GOAL_SMART_ROUTER,
    GOAL_SYNC_ROUTER,
    SEED_SMART_ROUTER,
    SEED_SYNC_ROUTER,
    Context,
    Loop,
    Run,
    bench_order,
    count_outcomes,
    floor_call,
    instant_specs,
    measure,
    round_bounds,
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
    router = OrderRouter(latency_profiler=LatencyProfiler(clock=clock), clock=clock)
    venue = sim_venue("bench", clock)
    router.register_exchange("bench", ExchangeClient(venue))

    def submit(order: Order) -> OrderResult:
        return router.submit_order(order, "bench")

    engine, floor = sync_loop(submit), sync_loop(floor_call(clock))
    warm_up(sizes, engine, floor)
    fills_before = venue.counters.fills
    floor_run, run = measure(sizes, floor, engine)
    fills, rejected = count_outcomes(run.results)
    return throughput_entry(
        "sync_router", run, floor_run, fills, rejected, seed=SEED_SYNC_ROUTER, goal=GOAL_SYNC_ROUTER,
        goal_text=f">= {GOAL_SYNC_ROUTER:,} orders/s",
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
    floor_run, run = measure(sizes, floor, engine)
    fills = rejected = 0
    for children in run.results:
        child_fills, child_rejected = count_outcomes(children)
        fills += child_fills
        rejected += 1 if child_rejected else 0
    return throughput_entry(
        "smart_router", run, floor_run, fills, rejected, seed=SEED_SMART_ROUTER, goal=GOAL_SMART_ROUTER,
        goal_text=f">= {GOAL_SMART_ROUTER:,} orders/s",
        venue_fills=venue_fills(venues) - fills_before,
        venue_orders=sum(v.counters.submitted for v in venues) - sent_before,
        venues=len(venues),
    )


def _one_venue_router(clock: RealClock) -> OrderRouter:
    router = OrderRouter(latency_profiler=LatencyProfiler(clock=clock), clock=clock)
    router.register_exchange("bench", ExchangeClient(sim_venue("bench", clock)))
    return router


def bench_batch(ctx: Context) -> dict[str, Any]:
    """OrderRouter.submit_orders in batches, against single submit_order calls on a twin
    router in the same rounds (so the comparison sees the same machine load)."""
    sizes = ctx.sizes
    clock = RealClock()
    router, single = _one_venue_router(clock), _one_venue_router(clock)
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

    engine, floor, one_by_one = batches(submit), batches(floor_batch), sync_loop(submit_one)
    sizes = replace(sizes, round_orders=max(sizes.round_orders, sizes.batch_size))
    warm_up(sizes, engine, floor, one_by_one)
    floor_run, run, single_run = measure(sizes, floor, engine, one_by_one)
    fills, rejected = count_outcomes(run.results)
    single_per_s = single_run.orders / single_run.seconds
    return throughput_entry(
        "batch", run, floor_run, fills, rejected, seed=None, goal=single_per_s,
        goal_text="faster per order than sync_router (single submit_order, same rounds)",
        batch_size=sizes.batch_size,
        single_orders_per_s=round(single_per_s, 1),
        p_note="p50_us/p99_us: per-order average within each batch",
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
        "goal_met": ns <= GOAL_PROFILER_NS,
        "floor_note": "floor: the same loop calling a function that does nothing; ratio = floor ns / ns",
    }
