"""Workloads of the async engine: the optimizer over an AsyncOrderRouter with and without
venue latency, the Engine with the desk's view model on its event stream, and the Engine
running a TWAP in virtual time.

Rules of this module:

* A throughput round is timed from its first submit until every one of its orders is
  final, and no longer: the router reports each final state to an order listener, the
  round waits for the last of them (`Completion`), and the outcomes (fills, refusals,
  anything unfinished) are read from the status store after the timing, never inside it.
* Setups compared with each other run on one event loop in alternating rounds, the order
  of runs reversed every other round (common.round_order).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
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
    RiskLimits,
    SimulatedExchange,
    VirtualClock,
)
from engine.events import Event
from tui.view_model import DeskOrders, EventDigest

from .common import (
    GOAL_ASYNC_LATENCY_SHARE,
    GOAL_ASYNC_OPTIMIZER_BUILDS,
    GOAL_EVENTS_SHARE,
    GOAL_TWAP_WALL_S,
    SAMPLE_EVERY,
    SEED_ASYNC_ROUTER,
    SYMBOL,
    Context,
    Run,
    Sizes,
    bench_order,
    builds_goal,
    instant_specs,
    merge,
    risk_limits,
    round_bounds,
    round_order,
    share_goal,
    sim_venue,
    throughput_entry,
)

# A round waits this long for the router's last final report before it waits for each
# order still missing one by one (an order that never reached the router).
STRAGGLERS_AFTER_S = 10.0
DESK_QUEUE = 50_000  # the desk's subscription (tui/app.py)
FRAME_S = 0.1  # the desk drains its subscription on a 10 Hz frame


# -- one round: submit, then wait for every order to be final ---------------------------------------


class Completion:
    """Which orders of the running round the router has not yet reported final.

    An order listener on the router takes each final report off `pending` and sets `done`
    when none is left; the listener is all the timed region pays for it.
    """

    def __init__(self, router: Any) -> None:
        self.pending: set[str] = set()
        self.done = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._router = router
        router.add_order_listener(self._on_result)

    def expect(self, order_ids: set[str]) -> None:
        self._loop = asyncio.get_running_loop()
        self.pending |= order_ids

    def _on_result(self, result: OrderResult) -> None:
        pending = self.pending
        if not pending or not result.status.is_final:
            return
        order_id = result.order_id
        if order_id not in pending:
            # A piece of an order the smart router split: the order is final when all its
            # pieces are (the store knows, without building anything).
            store = self._router.store
            order_id = store.split_of(order_id)
            if order_id is None or order_id not in pending or not store.is_final(order_id):
                return
        pending.discard(order_id)
        if not pending and self._loop is not None:
            # The router may report from another thread: the event belongs to the loop.
            self._loop.call_soon_threadsafe(self.done.set)

    def close(self) -> None:
        self._router.remove_order_listener(self._on_result)


@dataclass(slots=True)
class AsyncTarget:
    """What an async round drives: an optimizer, or an Engine (optionally watched by the desk's view)."""

    name: str
    submit: Callable[[Order], Awaitable[Any]]
    wait: Callable[[str], Awaitable[OrderResult]]
    status: Callable[[str], OrderResult]
    completion: Completion
    venues: list[SimulatedExchange]
    workers: int
    start: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]
    breakers: Callable[[], dict[str, str]]  # each venue's breaker state, for the entry
    on_order: Callable[[Order], None] | None = None  # called with each order before it is submitted
    after_round: Callable[[], None] | None = None  # called before the round's clock stops
    submit_many: Callable[[list[Order]], Awaitable[Any]] | None = None  # a batch at once (the Engine's)
    run: Run | None = None
    probe_ns: list[int] = field(default_factory=list)
    probe_refused: int = 0  # probe orders that ended REJECTED (a breaker open, say): their time is no round trip
    fills_before: int = 0

    def venue_fills(self) -> int:
        return sum(v.counters.fills for v in self.venues)


async def async_round(target: AsyncTarget, prefix: str, first: int, stop: int) -> Run:
    """Queue orders (back-pressure when the queue is full) and time until every one of them
    is final: one throughput round. `Run.waited`: orders waited for one by one because the
    router had not reported them final `STRAGGLERS_AFTER_S` after the last one was."""
    completion = target.completion
    completion.expect({f"{prefix}-{i}" for i in range(first, stop)})
    submit, make, track = target.submit, bench_order, target.on_order
    pc = time.perf_counter_ns
    start = pc()
    if track is None:
        for i in range(first, stop):
            await submit(make(prefix, i))
    else:
        for i in range(first, stop):
            order = make(prefix, i)
            track(order)
            await submit(order)
    waited = await until_final(target, f"{prefix}-{stop - 1}")
    if target.after_round is not None:
        target.after_round()
    return Run(stop - first, (pc() - start) / 1e9, [], [], waited)


async def until_final(target: AsyncTarget, last_id: str) -> int:
    """Wait until every order the completion expects is final (`last_id`, the last one
    queued, first); returns how many were waited for one by one (see `async_round`)."""
    completion = target.completion
    pending = completion.pending
    # Workers take orders in queue order, so the last is final about last.
    await target.wait(last_id)
    with anyio.move_on_after(STRAGGLERS_AFTER_S):
        while pending:
            completion.done.clear()
            if pending:
                await completion.done.wait()
    waited = 0
    while pending:
        await target.wait(pending.pop())
        waited += 1
    return waited


async def _async_probe(target: AsyncTarget, n: int, prefix: str) -> None:
    """Round trips with one order in flight: submit to the order's final state (an order
    refused is counted, not sampled)."""
    samples = target.probe_ns
    pc = time.perf_counter_ns
    for i in range(n):
        order = bench_order(prefix, i)
        t0 = pc()
        await target.submit(order)
        result = await target.wait(order.id)
        elapsed = pc() - t0
        if result.status is OrderStatus.REJECTED:
            target.probe_refused += 1
        else:
            samples.append(elapsed)


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


# -- targets ---------------------------------------------------------------------------------------------


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


def optimizer_target(name: str, latency: LatencyModel, workers: int, clock: RealClock) -> AsyncTarget:
    _clock, venue, optimizer = async_setup(latency, clock)

    async def start() -> None:
        await optimizer.start(num_workers=workers)

    async def stop() -> None:
        await optimizer.stop(drain=True)

    def breakers() -> dict[str, str]:
        return {"bench": optimizer.router.breaker("bench").state.value}

    return AsyncTarget(
        name, optimizer.submit_order_async, optimizer.wait_async, optimizer.get_order_status,
        Completion(optimizer.router), [venue], workers, start, stop, breakers,
    )


def engine_target(name: str, engine: Engine, workers: int = 10) -> AsyncTarget:
    async def start() -> None:
        await engine.start(num_workers=workers)

    async def stop() -> None:
        await engine.stop()

    def breakers() -> dict[str, str]:
        return {venue: engine.router.breaker(venue).state.value for venue in engine.venues}

    return AsyncTarget(
        name, engine.submit, engine.wait, engine.status, Completion(engine.router),
        list(engine.venues.values()), workers, start, stop, breakers, submit_many=engine.submit_many,
    )


def _outcomes(target: AsyncTarget, prefix: str, n: int) -> tuple[int, int, int]:
    """(fills, rejected, not final) of the measured orders, from the status store (untimed)."""
    fills = rejected = unfinished = 0
    for i in range(n):
        result = target.status(f"{prefix}-{i}")
        fills += len(result.fills) or sum(len(c.fills) for c in result.children)
        if result.status is OrderStatus.REJECTED:
            rejected += 1
        elif not result.status.is_final:
            unfinished += 1
    return fills, rejected, unfinished


@dataclass(slots=True)
class AsyncMeasured:
    floor: Run
    rounds: list[list[Run]]  # rounds[k][j]: the floor (j = 0), then each target, in round k
    orders: list[list[int]]  # the order they ran in, per round

    def round_order_names(self, targets: list[AsyncTarget]) -> list[list[str]]:
        names = ["floor", *(t.name for t in targets)]
        return [[names[j] for j in order] for order in self.orders]

    def orders_per_s_by_round(self, targets: list[AsyncTarget]) -> dict[str, list[float]]:
        names = ["floor", *(t.name for t in targets)]
        return {name: [round(r[j].orders_per_s, 1) for r in self.rounds] for j, name in enumerate(names)}


async def alternated(loops: Sequence[Callable[[str, int, int], Awaitable[Run]]],
                     bounds: Iterable[tuple[int, int]]) -> tuple[list[list[Run]], list[list[int]]]:
    """Run every loop over each round's orders, who goes first swapping each round
    (common.round_order): each round's runs, in the loops' order, and the order they ran."""
    rounds: list[list[Run]] = []
    orders: list[list[int]] = []
    for k, (first, stop) in enumerate(bounds):
        order = round_order(k, len(loops))
        done: list[Run | None] = [None] * len(loops)
        for j in order:
            done[j] = await loops[j]("m", first, stop)
        rounds.append([r for r in done if r is not None])
        orders.append(order)
    return rounds, orders


async def measure_async(sizes: Sizes, n: int, clock: RealClock, targets: list[AsyncTarget]) -> AsyncMeasured:
    """Start the targets, warm them up, run them and the floor in alternating rounds (who goes
    first swapping each round), probe one-in-flight latency, stop them."""
    for target in targets:
        await target.start()
        await async_round(target, "w", 0, sizes.warmup)
    await _async_floor(clock, "w", 0, sizes.warmup)
    gc.collect()
    for target in targets:
        target.fills_before = target.venue_fills()
    loops: list[Callable[[str, int, int], Awaitable[Run]]] = [
        lambda prefix, first, stop: _async_floor(clock, prefix, first, stop),
        *((lambda prefix, first, stop, t=t: async_round(t, prefix, first, stop)) for t in targets),
    ]
    rounds, orders = await alternated(loops, round_bounds(n, sizes.round_orders))
    for j, target in enumerate(targets, start=1):
        target.run = merge([r[j] for r in rounds])
        target.fills_before = target.venue_fills() - target.fills_before  # now: the measured fills
        await _async_probe(target, sizes.probe, "p")
    for target in targets:
        await target.stop()
        target.completion.close()
    return AsyncMeasured(merge([r[0] for r in rounds]), rounds, orders)


def _async_entry(name: str, target: AsyncTarget, floor_run: Run, n: int, *, seed: int | None,
                 goal: dict[str, Any], **extra: Any) -> dict[str, Any]:
    fills, rejected, unfinished = _outcomes(target, "m", n)
    run = target.run
    assert run is not None
    run.samples_ns = target.probe_ns
    return throughput_entry(
        name, run, floor_run, fills, rejected + unfinished, seed=seed, goal=goal,
        workers=target.workers, venue_fills=target.fills_before, unfinished=unfinished,
        breaker_state=target.breakers(), probe_refused=target.probe_refused,
        completion=("timed until the router reported every order final (an order listener) and "
                    "the optimizer's wait returned for the last; waited_one_by_one: orders still "
                    f"unreported {STRAGGLERS_AFTER_S:g} s after that, then waited for one by one"),
        waited_one_by_one=run.waited,
        **extra,
    )


def _baseline_ok(target: AsyncTarget, n: int) -> bool:
    fills, rejected, unfinished = _outcomes(target, "m", n)
    return rejected == 0 and unfinished == 0 and fills >= n


# -- workloads --------------------------------------------------------------------------------------------


def bench_async_optimizer(ctx: Context) -> dict[str, Any]:
    """AsyncExecutionOptimizer with 10 workers over an AsyncOrderRouter, one instant venue."""
    n = ctx.sizes.orders
    clock = RealClock()
    target = optimizer_target("async_optimizer", LatencyModel(), 10, clock)
    measured = anyio.run(measure_async, ctx.sizes, n, clock, [target])
    return _async_entry(
        "async_optimizer", target, measured.floor, n, seed=SEED_ASYNC_ROUTER,
        goal=builds_goal(GOAL_ASYNC_OPTIMIZER_BUILDS),
        p_note="p50_us/p99_us: submit_order_async to final state, one order in flight",
    )


def bench_async_latency(ctx: Context) -> dict[str, Any]:
    """1 ms median venue latency, ~1,000 orders in flight: is the latency hidden by concurrency?

    Compared with async_optimizer's setup (instant venue, 10 workers) in the same run and the
    same rounds, so both see the same machine load.
    """
    n = ctx.sizes.async_latency_orders
    latency = LatencyModel(median_s=0.001, p99_s=0.004)
    clock = RealClock()
    base = optimizer_target("async_optimizer", LatencyModel(), 10, clock)
    side = optimizer_target("async_latency", latency, 1_000, clock)
    measured = anyio.run(measure_async, ctx.sizes, n, clock, [base, side])
    assert base.run is not None
    base_per_s = base.run.orders_per_s
    return _async_entry(
        "async_latency", side, measured.floor, n, seed=None,
        goal=share_goal(GOAL_ASYNC_LATENCY_SHARE, base_per_s,
                        "async_optimizer (its setup, this run, same rounds)", baseline_ok=_baseline_ok(base, n)),
        async_optimizer_orders_per_s=round(base_per_s, 1),
        venue_latency_median_ms=latency.median_s * 1e3, venue_latency_p99_ms=latency.p99_s * 1e3,
        round_order=measured.round_order_names([base, side]),
        orders_per_s_by_round=measured.orders_per_s_by_round([base, side]),
        p_note="p50_us/p99_us: submit_order_async to final state, one order in flight (includes the venue's latency)",
    )


# -- the Engine's event stream, applied to the desk's view model ---------------------------------------


class DeskView:
    """The desk's view model fed by the engine's event stream, as the desk's frame feeds it:
    the same subscription size, `DeskOrders` tracking what it sends (with the smart router's
    routing reason read once per order, as the desk does), `EventDigest` applying each
    frame's events to the rows and turning them into fills and log lines. The view asks the
    engine for no order's state."""

    def __init__(self, engine: Engine) -> None:
        self.subscription = engine.subscribe(maxsize=DESK_QUEUE, name="desk")
        self.orders = DeskOrders(routing_reason=engine.smart.routing_reason)
        self.digest = EventDigest(self.orders)
        self.clock = engine.clock
        self.events = 0
        self.frames = 0
        self.rows = 0

    def track(self, order: Order) -> None:
        self.orders.track(order.id, order.type.value, mine=False, symbol=order.symbol, side=order.side,
                          quantity=order.quantity, price=order.price)

    def frame(self) -> None:
        events: list[Event] = self.subscription.drain()
        if not events:
            return
        news = self.digest.digest(events, self.clock.now())
        self.events += len(events)
        self.frames += 1
        self.rows += len(news.rows)

    async def run_frames(self) -> None:
        while True:
            await anyio.sleep(FRAME_S)
            self.frame()


# The desk's limits, with the rate and open-order limits raised past what this flow sends
# (tens of thousands of orders a second); every other limit is the default.
EVENTS_RISK = RiskLimits(max_orders_per_s=1_000_000, max_open_orders=100_000)


def bench_engine_events(ctx: Context) -> dict[str, Any]:
    """The Engine with its event stream and one subscriber applying each event to the desk's
    view model, against the same Engine with no subscriber, in alternating rounds."""
    sizes = ctx.sizes
    n = sizes.orders
    clock = RealClock()
    quiet_engine = Engine.default(seed=0, clock=clock, specs=instant_specs(), risk=EVENTS_RISK)
    watched_engine = Engine.default(seed=0, clock=clock, specs=instant_specs(), risk=EVENTS_RISK)
    view = DeskView(watched_engine)
    quiet = engine_target("no_subscriber", quiet_engine)
    watched = engine_target("engine_events", watched_engine)
    watched.on_order, watched.after_round = view.track, view.frame

    async def main() -> AsyncMeasured:
        async with anyio.create_task_group() as tg:
            tg.start_soon(view.run_frames)
            measured = await measure_async(sizes, n, clock, [quiet, watched])
            tg.cancel_scope.cancel()
        view.frame()
        return measured

    measured = anyio.run(main)
    assert quiet.run is not None
    view.subscription.close()
    return _async_entry(
        "engine_events", watched, measured.floor, n, seed=None,
        goal=share_goal(GOAL_EVENTS_SHARE, quiet.run.orders_per_s,
                        "the same Engine without a subscriber (same rounds)", baseline_ok=_baseline_ok(quiet, n)),
        risk_limits=risk_limits(watched_engine),
        no_subscriber_orders_per_s=round(quiet.run.orders_per_s, 1),
        events=view.events,
        events_per_order=round(view.events / max(1, n + sizes.warmup + sizes.probe), 3),
        events_dropped=view.subscription.dropped,
        frames=view.frames,
        round_order=measured.round_order_names([quiet, watched]),
        orders_per_s_by_round=measured.orders_per_s_by_round([quiet, watched]),
        p_note="p50_us/p99_us: Engine.submit to final state, one order in flight, the view subscribed",
    )


# -- virtual time: a one-hour TWAP ------------------------------------------------------------------


def bench_twap_hour(ctx: Context) -> dict[str, Any]:
    """A one-hour TWAP of 60 slices through Engine -> optimizer -> scheduler -> routers -> venues."""
    clock = VirtualClock(start=1_767_225_600.0)
    engine = Engine.default(seed=0, clock=clock, specs=instant_specs())
    supported = engine.supported_types()
    if OrderType.TWAP.value not in supported:
        return {"name": "twap_hour",
                "skipped": f"TWAP not available (order types: {', '.join(sorted(supported)) or 'none'})"}
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
        "met": wall <= GOAL_TWAP_WALL_S and result.status is OrderStatus.FILLED,
    }
