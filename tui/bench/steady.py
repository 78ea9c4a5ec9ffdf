"""Steady state over a long run: the async path in a fresh process, its speed and RSS stretch
by stretch, so that the engine's bounded stores fill up and their eviction is timed too.

The run is a fresh process (spawned), so no other workload's garbage counts. Outcomes come
from the venue's counters after the timing (fills, refusals), never from a status sweep.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from typing import Any

import anyio

from engine import LatencyModel, RealClock

from .common import GOAL_MEMORY_RATIO, GOAL_STEADY_SHARE, Context, round_bounds
from .engine_async import async_round, optimizer_target
from .machine import peak_rss_bytes, rss_mb

ROUNDS_PER_STRETCH = 100  # short rounds, so the time budget is checked often


def _steady_child(stretch: int, total: int, budget_s: float, warmup: int) -> dict[str, Any]:
    """In a fresh process: `total` orders through the optimizer, in stretches of `stretch`;
    each stretch's orders/s, RSS at its end and peak RSS. Stops after `budget_s` of timed work."""
    target = optimizer_target("steady_state", LatencyModel(), 10, RealClock())
    (venue,) = target.venues
    chunk = max(1, stretch // ROUNDS_PER_STRETCH)

    async def main() -> dict[str, Any]:
        await target.start()
        await async_round(target, "w", 0, warmup)
        stretches: list[dict[str, Any]] = []
        orders = seconds = waited = 0
        stretch_orders, stretch_s = 0, 0.0
        sent_before = venue.counters.submitted
        fills_before, rejected_before = venue.counters.fills, venue.counters.rejected
        for first, stop in round_bounds(total, chunk):
            if seconds > budget_s:
                break
            run = await async_round(target, "m", first, stop)
            seconds += run.seconds
            waited += run.waited
            stretch_s += run.seconds
            stretch_orders += run.orders
            orders = stop
            if stretch_orders >= stretch or orders == total:
                stretches.append({
                    "orders": stretch_orders,
                    "orders_per_s": round(stretch_orders / stretch_s, 1),
                    "rss_mb": round(rss_mb(), 1),
                    "peak_rss_mb": round(peak_rss_bytes() / 2**20, 1),
                })
                stretch_orders, stretch_s = 0, 0.0
        if stretch_orders:  # the budget ran out in the middle of a stretch
            stretches.append({
                "orders": stretch_orders, "orders_per_s": round(stretch_orders / stretch_s, 1),
                "rss_mb": round(rss_mb(), 1), "peak_rss_mb": round(peak_rss_bytes() / 2**20, 1),
            })
        counters = venue.counters
        sent, fills, rejected = (counters.submitted - sent_before, counters.fills - fills_before,
                                 counters.rejected - rejected_before)
        await target.stop()
        return {
            "orders": orders, "seconds": seconds, "waited": waited, "stretches": stretches,
            "venue_orders": sent, "fills": fills, "venue_rejected": rejected,
        }

    return anyio.run(main)


def steady_figures(stretches: list[dict[str, Any]], stretch: int, complete: bool) -> dict[str, Any]:
    """The goals' arithmetic: the last full stretch's speed against the first's, and peak RSS
    at the end against peak RSS after the first stretch."""
    full = [s for s in stretches if s["orders"] >= stretch]
    first, last = (full[0], full[-1]) if len(full) >= 2 else (None, None)
    speed = None if first is None else last["orders_per_s"] / first["orders_per_s"]  # type: ignore[index]
    rss = None if first is None else stretches[-1]["peak_rss_mb"] / first["peak_rss_mb"]
    met_speed = speed is not None and complete and speed >= GOAL_STEADY_SHARE
    met_rss = rss is not None and complete and rss <= GOAL_MEMORY_RATIO
    return {
        "first_stretch_orders_per_s": None if first is None else first["orders_per_s"],
        "last_stretch_orders_per_s": None if last is None else last["orders_per_s"],
        "speed_ratio": None if speed is None else round(speed, 4),
        "peak_rss_first_stretch_mb": None if first is None else first["peak_rss_mb"],
        "peak_rss_mb": stretches[-1]["peak_rss_mb"] if stretches else None,
        "rss_ratio": None if rss is None else round(rss, 4),
        "met_speed": met_speed,
        "met_rss": met_rss,
        "met": met_speed and met_rss,
    }


def bench_steady_state(ctx: Context) -> dict[str, Any]:
    """`steady_orders` orders through the async path: the last stretch as fast as the first,
    peak RSS at the end within a bound of its peak after the first stretch."""
    sizes = ctx.sizes
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        child = pool.submit(
            _steady_child, sizes.steady_stretch, sizes.steady_orders, sizes.steady_budget_s, sizes.warmup
        ).result()
    complete = child["orders"] >= sizes.steady_orders
    stretch = sizes.steady_stretch
    entry: dict[str, Any] = {
        "name": "steady_state",
        "orders": child["orders"],
        "orders_goal": sizes.steady_orders,
        "complete": complete,
        "seconds": round(child["seconds"], 3),
        "orders_per_s": round(child["orders"] / child["seconds"], 1),
        "stretch_orders": stretch,
        "stretches": child["stretches"],
        "fills": child["fills"],
        "rejected": child["venue_rejected"] + child["orders"] - child["venue_orders"],
        "waited_one_by_one": child["waited"],
        "goal": f"last {stretch:,} orders >= {GOAL_STEADY_SHARE:g} x as fast as the first {stretch:,}, "
        f"peak RSS after {sizes.steady_orders:,} <= {GOAL_MEMORY_RATIO:g} x after {stretch:,}",
        "goal_speed_share": GOAL_STEADY_SHARE,
        "goal_rss_ratio": GOAL_MEMORY_RATIO,
        **steady_figures(child["stretches"], stretch, complete),
    }
    if not complete:
        entry["incomplete"] = (
            f"stopped after {sizes.steady_budget_s:g} s with {child['orders']:,} of "
            f"{sizes.steady_orders:,} orders sent; see stretches"
        )
    return entry
