"""Workloads of the async engine: the optimizer over an AsyncOrderRouter, with and without
venue latency, and the Engine running a TWAP in virtual time."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any

import anyio

from engine import (
    AsyncExchangeClient,
    AsyncExecutionOptimizer,
    AsyncOrderRouter,
    Engine,
    LatencyModel,
    LatencyProfiler,
    Order,
    OrderResult,
    OrderSide,
    OrderStatus,
    OrderType,
    RealClock,
    SimulatedExchange,
    VirtualClock,
)

from .common import (
    GOAL_ASYNC_LATENCY_SHARE,
    GOAL_ASYNC_OPTIMIZER,
    GOAL_TWAP_WALL_S,
    SAMPLE_EVERY,
    SEED_ASYNC_ROUTER,
    SYMBOL,
    Context,
    Run,
    Sizes,
    bench_order,
    instant_specs,
    merge,
    risk_limits,
    round_bounds,
    sim_venue,
    throughput_entry,
)


# -- async workloads -----------------------------------------------------------------------------


async def async_round(optimizer: AsyncExecutionOptimizer, prefix: str, first: int, stop: int) -> Run:
    """Queue orders on the running optimizer (back-pressure when its queue is full) and time
    until every one of them is final: one throughput round."""
    pc = time.perf_counter_ns
    submit = optimizer.submit_order_async
    make = bench_order
    start = pc()
    for i in range(first, stop):
        await submit(make(prefix, i))
    # Workers take orders in queue order, so the last is final (nearly) last; then the stragglers.
    await optimizer.wait_async(f"{prefix}-{stop - 1}")
    for i in range(first, stop):
        order_id = f"{prefix}-{i}"
        if not optimizer.get_order_status(order_id).status.is_final:
            await optimizer.wait_async(order_id)
    return Run(stop - first, (pc() - start) / 1e9, [], [])


async def _async_probe(optimizer: AsyncExecutionOptimizer, n: int, prefix: str) -> list[int]:
    """Round trips with one order in flight: submit_order_async to the order's final state."""
    samples = []
    pc = time.perf_counter_ns
    for i in range(n):
        order = bench_order(prefix, i)
        t0 = pc()
        await optimizer.submit_order_async(order)
        await optimizer.wait_async(order.id, timeout=10.0)
        samples.append(pc() - t0)
    return samples


async def _async_floor(clock: RealClock, prefix: str, first: int, stop: int) -> Run:
    now_ns = clock.now_ns

    async def submit(order: Order) -> tuple[str, int]:
        t0 = now_ns()
        return (order.id, now_ns() - t0)

    results: list[Any] = []
    samples: list[int] = []
    pc = time.perf_counter_ns
    start = pc()
    for i in range(first, stop):
        order = bench_order(prefix, i)
        if i % SAMPLE_EVERY:
            results.append(await submit(order))
        else:
            t0 = pc()
            results.append(await submit(order))
            samples.append(pc() - t0)
    return Run(stop - first, (pc() - start) / 1e9, samples, results)


def async_setup(
    latency: LatencyModel, clock: RealClock | None = None
) -> tuple[RealClock, SimulatedExchange, AsyncExecutionOptimizer]:
    """The component document's async form: AsyncOrderRouter, one AsyncExchangeClient, optimizer."""
    clock = clock or RealClock()
    profiler = LatencyProfiler(clock=clock)
    router = AsyncOrderRouter(latency_profiler=profiler, clock=clock)
    venue = sim_venue("bench", clock, latency=latency)
    router.register_exchange("bench", AsyncExchangeClient(venue))
    return clock, venue, AsyncExecutionOptimizer(order_router=router, latency_profiler=profiler)


def _async_outcomes(optimizer: AsyncExecutionOptimizer, prefix: str, n: int) -> tuple[int, int, int]:
    """(fills, rejected, not final) of the measured orders, from the optimizer's status store."""
    fills = rejected = unfinished = 0
    for i in range(n):
        result = optimizer.get_order_status(f"{prefix}-{i}")
        fills += len(result.fills)
        if result.status is OrderStatus.REJECTED:
            rejected += 1
        elif not result.status.is_final:
            unfinished += 1
    return fills, rejected, unfinished


@dataclass(slots=True)
class _AsyncSide:
    """One optimizer of an async workload, and what it did."""

    latency: LatencyModel
    workers: int
    venue: SimulatedExchange
    optimizer: AsyncExecutionOptimizer
    run: Run | None = None
    probe_ns: list[int] = field(default_factory=list)
    venue_fills: int = 0


def _async_workload(sizes: Sizes, n: int, configs: list[tuple[LatencyModel, int]]) -> tuple[Run, list[_AsyncSide]]:
    """Each config's optimizer and the floor, in alternating rounds on one event loop."""
    clock = RealClock()
    sides = []
    for latency, workers in configs:
        _clock, venue, optimizer = async_setup(latency, clock)
        sides.append(_AsyncSide(latency, workers, venue, optimizer))

    async def main() -> Run:
        for side in sides:
            await side.optimizer.start(num_workers=side.workers)
            await async_round(side.optimizer, "w", 0, sizes.warmup)
        await _async_floor(clock, "w", 0, sizes.warmup)
        gc.collect()
        before = [side.venue.counters.fills for side in sides]
        floors: list[Run] = []
        runs: list[list[Run]] = [[] for _ in sides]
        for first, stop in round_bounds(n, sizes.round_orders):
            floors.append(await _async_floor(clock, "m", first, stop))
            for side, done in zip(sides, runs):
                done.append(await async_round(side.optimizer, "m", first, stop))
        for side, done, fills in zip(sides, runs, before):
            side.run = merge(done)
            side.venue_fills = side.venue.counters.fills - fills
            side.probe_ns = await _async_probe(side.optimizer, sizes.probe, "p")
            await side.optimizer.stop(drain=True)
        return merge(floors)

    return anyio.run(main), sides


def _async_entry(name: str, side: _AsyncSide, floor_run: Run, n: int, *, seed: int | None,
                 goal: float, goal_text: str, **extra: Any) -> dict[str, Any]:
    fills, rejected, unfinished = _async_outcomes(side.optimizer, "m", n)
    run = side.run
    assert run is not None
    run.samples_ns = side.probe_ns
    return throughput_entry(
        name, run, floor_run, fills, rejected + unfinished, seed=seed, goal=goal, goal_text=goal_text,
        workers=side.workers, venue_fills=side.venue_fills, unfinished=unfinished,
        breaker_state=side.optimizer.router.breaker("bench").state.value, **extra,
    )


def bench_async_optimizer(ctx: Context) -> dict[str, Any]:
    """AsyncExecutionOptimizer with 10 workers over an AsyncOrderRouter, one instant venue."""
    n = ctx.sizes.orders
    floor_run, (side,) = _async_workload(ctx.sizes, n, [(LatencyModel(), 10)])
    return _async_entry(
        "async_optimizer", side, floor_run, n, seed=SEED_ASYNC_ROUTER,
        goal=GOAL_ASYNC_OPTIMIZER, goal_text=f">= {GOAL_ASYNC_OPTIMIZER:,} orders/s",
        p_note="p50_us/p99_us: submit_order_async to final state, one order in flight",
    )


def bench_async_latency(ctx: Context) -> dict[str, Any]:
    """1 ms median venue latency, ~1,000 orders in flight: is the latency hidden by concurrency?

    Compared with async_optimizer's setup (instant venue, 10 workers) run in the same rounds,
    so both see the same machine load.
    """
    n = ctx.sizes.async_latency_orders
    latency = LatencyModel(median_s=0.001, p99_s=0.004)
    floor_run, (base, side) = _async_workload(ctx.sizes, n, [(LatencyModel(), 10), (latency, 1_000)])
    assert base.run is not None
    base_per_s = base.run.orders / base.run.seconds
    return _async_entry(
        "async_latency", side, floor_run, n, seed=None, goal=base_per_s * GOAL_ASYNC_LATENCY_SHARE,
        goal_text=f">= {GOAL_ASYNC_LATENCY_SHARE} x async_optimizer's orders/s (its setup, same rounds)",
        async_optimizer_orders_per_s=round(base_per_s, 1),
        venue_latency_median_ms=latency.median_s * 1e3, venue_latency_p99_ms=latency.p99_s * 1e3,
        p_note="p50_us/p99_us: submit_order_async to final state, one order in flight (includes the venue's latency)",
    )


# -- virtual time: a one-hour TWAP ------------------------------------------------------------------


def bench_twap_hour(ctx: Context) -> dict[str, Any]:
    """A one-hour TWAP of 60 slices through Engine -> optimizer -> scheduler -> routers -> venues."""
    from engine.algos.registry import ALGORITHMS

    if OrderType.TWAP not in ALGORITHMS:
        supported = ", ".join(t.value for t in ALGORITHMS) or "none"
        return {"name": "twap_hour", "skipped": f"TWAP not available (registered algorithms: {supported})"}
    clock = VirtualClock(start=1_767_225_600.0)
    engine = Engine.default(seed=0, clock=clock, specs=instant_specs())
    duration_s, slices, quantity = 3_600, 60, 0.6

    def twap(order_id: str, seconds: float, count: int) -> Order:
        return Order(id=order_id, symbol=SYMBOL, side=OrderSide.BUY, type=OrderType.TWAP, quantity=quantity,
                     metadata={"duration_s": seconds, "slices": count})

    async def main() -> tuple[float, float, OrderResult]:
        await engine.start()
        await engine.submit(twap("twap-warmup", 60, 6))
        await engine.wait("twap-warmup", timeout=600)
        virtual_start = clock.now()
        t0 = time.perf_counter()
        await engine.submit(twap("twap-hour", duration_s, slices))
        result = await engine.wait("twap-hour", timeout=2 * duration_s)
        wall = time.perf_counter() - t0
        virtual = clock.now() - virtual_start
        await engine.stop()
        return wall, virtual, result

    wall, virtual, result = anyio.run(main, backend_options=clock.backend_options())
    children = result.children or []
    return {
        "name": "twap_hour",
        "risk_limits": risk_limits(engine),
        "seconds": round(wall, 6),
        "virtual_seconds": round(virtual, 3),
        "slices": slices,
        "children": len(children),
        "status": result.status.value,
        "quantity": quantity,
        "filled_quantity": result.filled_quantity,
        "fills": len(result.fills) or sum(len(c.fills) for c in children),
        "goal": f"<= {GOAL_TWAP_WALL_S:g} s wall",
        "goal_met": wall <= GOAL_TWAP_WALL_S and result.status is OrderStatus.FILLED,
    }
