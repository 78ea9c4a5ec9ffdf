"""Bounded state over a long run: the async path in a fresh process, RSS after many orders."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from typing import Any

import anyio

from engine import LatencyModel

from .common import GOAL_MEMORY_RATIO, Context, round_bounds
from .engine_async import async_round, async_setup
from .machine import peak_rss_bytes


# -- memory: bounded state over a long run ---------------------------------------------------------------


def _memory_child(small: int, large: int, budget_s: float, warmup: int) -> dict[str, Any]:
    """In a fresh process (no other workload's garbage counts): the async path, peak RSS
    after `small` orders and after `large`, in short rounds so the time budget holds."""
    _clock, venue, optimizer = async_setup(LatencyModel())
    chunk = max(1, small // 100)

    async def main() -> dict[str, Any]:
        await optimizer.start(num_workers=10)
        await async_round(optimizer, "w", 0, warmup)
        rss_small = 0
        stretch_rates: list[float] = []  # orders/s over each `small` orders (the last may be partial)
        stretch_orders = stretch_s = seconds = 0.0
        done = 0
        for first, stop in round_bounds(large, chunk):
            if seconds > budget_s:
                break
            run = await async_round(optimizer, "m", first, stop)
            seconds += run.seconds
            stretch_s += run.seconds
            stretch_orders += run.orders
            done = stop
            if done % small == 0 or done == large:
                stretch_rates.append(round(stretch_orders / stretch_s, 1))
                stretch_orders = stretch_s = 0.0
            if done == small:
                rss_small = peak_rss_bytes()
        if stretch_orders:
            stretch_rates.append(round(stretch_orders / stretch_s, 1))
        await optimizer.stop(drain=True)
        return {
            "orders": done,
            "seconds": seconds,
            "rss_small": rss_small,
            "rss_large": peak_rss_bytes(),
            "stretch_orders_per_s": stretch_rates,
            "fills": venue.counters.fills,
            "venue_rejected": venue.counters.rejected,
            "venue_orders": venue.counters.submitted,
        }

    return anyio.run(main)


def bench_memory(ctx: Context) -> dict[str, Any]:
    """Peak RSS after `memory_large` orders through the async path vs after `memory_small`."""
    sizes = ctx.sizes
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        child = pool.submit(
            _memory_child, sizes.memory_small, sizes.memory_large, sizes.memory_budget_s, sizes.warmup
        ).result()
    mb = 1024 * 1024
    complete = child["orders"] >= sizes.memory_large
    ratio = child["rss_large"] / child["rss_small"] if child["rss_small"] else None
    entry: dict[str, Any] = {
        "name": "memory",
        "orders_small": sizes.memory_small,
        "orders": child["orders"],
        "orders_goal": sizes.memory_large,
        "complete": complete,
        "seconds": round(child["seconds"], 3),
        "orders_per_s": round(child["orders"] / child["seconds"], 1),
        "orders_per_s_by_stretch": child["stretch_orders_per_s"],
        "stretch_orders": sizes.memory_small,
        "fills": child["fills"],
        "rejected": child["venue_rejected"] + child["orders"] + sizes.warmup - child["venue_orders"],
        "peak_rss_small_mb": round(child["rss_small"] / mb, 1),
        "peak_rss_mb": round(child["rss_large"] / mb, 1),
        "ratio": None if ratio is None else round(ratio, 3),
        "goal": f"peak RSS after {sizes.memory_large:,} orders <= {GOAL_MEMORY_RATIO:g} x after "
        f"{sizes.memory_small:,}",
        "goal_met": bool(complete and ratio is not None and ratio <= GOAL_MEMORY_RATIO),
    }
    if not complete:
        entry["incomplete"] = (
            f"stopped after {sizes.memory_budget_s:g} s with {child['orders']:,} of "
            f"{sizes.memory_large:,} orders sent; see orders_per_s_by_stretch"
        )
    return entry
