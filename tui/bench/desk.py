"""The desk headless under --demo: key to first frame showing its effect, and the long soak."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import GOAL_DESK_P50_MS, GOAL_DESK_P99_MS, Context, percentile, risk_limits
from .machine import heap_figures, rss_mb


# -- the desk under the demo's load -------------------------------------------------------------------


class _DeskProbe:
    """The desk headless with --demo, and a way to time a key to the first frame showing it."""

    def __init__(self, tmp: str) -> None:
        from tui.app import DeskApp
        from tui.screens.ticket import TicketScreen

        self.app = app = DeskApp(seed=0, demo=True, settings_path=Path(tmp) / "settings.json", tune_gc=True)
        self.main_screen: Any = None

        def market_shows(symbol: str) -> Callable[[Any], bool]:
            title = f"Market · {symbol}"
            return lambda screen: screen is self.main_screen and app.market.border_title == title

        # Each press, and what the first frame after it must show.
        self.presses: list[tuple[str, Callable[[Any], bool]]] = [
            ("2", market_shows(app.symbols[1] if len(app.symbols) > 1 else app.symbols[0])),
            ("1", market_shows(app.symbols[0])),
            ("b", lambda screen: isinstance(screen, TicketScreen)),
            ("escape", lambda screen: screen is self.main_screen),
        ]
        self._pending: dict[str, Any] = {}
        # Textual has no public per-frame hook: App._display is where a screen hands over
        # each rendered frame (also headless, where it is then not written to a terminal).
        original_display = app._display
        pending = self._pending

        def display(screen: Any, renderable: Any) -> None:
            original_display(screen, renderable)
            if renderable is None or app._batch_count or not pending:
                return
            if pending["frame_at"] is None and pending["shows"](screen):
                pending["frame_at"] = time.perf_counter()  # the first such frame, not a later one
                pending["event"].set()

        app._display = display  # type: ignore[method-assign]

    def counters(self) -> tuple[int, int]:
        venues = list(self.app.engine.venues.values())
        return sum(v.counters.fills for v in venues), sum(v.counters.submitted for v in venues)

    async def press(self, pilot: Any, i: int) -> tuple[str, float | None]:
        """Press the i-th key of the cycle; its latency in ms, or None after 2 s without it."""
        key, shows = self.presses[i % len(self.presses)]
        event = asyncio.Event()
        self._pending.update(shows=shows, event=event, frame_at=None)
        t0 = time.perf_counter()
        await pilot.press(key)
        try:
            await asyncio.wait_for(event.wait(), timeout=2.0)
            latency: float | None = (self._pending["frame_at"] - t0) * 1e3
        except TimeoutError:
            latency = None
        self._pending.clear()
        return key, latency


def _latency_figures(latencies_ms: list[float], timeouts: int) -> dict[str, Any]:
    ordered = sorted(latencies_ms)
    p50, p99 = percentile(ordered, 50), percentile(ordered, 99)
    return {
        "presses": len(ordered),
        "timeouts": timeouts,
        "p50_ms": round(p50, 3),
        "p99_ms": round(p99, 3),
        "max_ms": round(ordered[-1], 3) if ordered else 0.0,
        "goal": f"p50 <= {GOAL_DESK_P50_MS:g} ms, p99 <= {GOAL_DESK_P99_MS:g} ms",
        "met": timeouts == 0 and p50 <= GOAL_DESK_P50_MS and p99 <= GOAL_DESK_P99_MS,
    }


def _restore_gc() -> None:
    # The probed desk tuned the collector for itself (tui.runtime): undo it so later
    # workloads of this run see Python's defaults.
    from tui.runtime import restore_garbage_collector

    restore_garbage_collector()


OPERATOR_PACE_S = 0.05  # between one key's frame and the next key; the demo keeps trading


def bench_desk_under_load(ctx: Context) -> dict[str, Any]:
    """The desk headless with --demo: time from a key press to the first frame showing its effect."""
    sizes = ctx.sizes
    with tempfile.TemporaryDirectory(prefix="execdesk-bench-") as tmp:
        probe = _DeskProbe(tmp)

        async def main() -> dict[str, Any]:
            latencies_ms: list[float] = []
            by_key: dict[str, list[float]] = {key: [] for key, _ in probe.presses}
            timeouts = 0
            async with probe.app.run_test(size=(160, 48)) as pilot:
                probe.main_screen = probe.app.screen
                await asyncio.sleep(sizes.desk_warmup_s)  # the demo gets going; first frames drawn
                fills0, orders0 = probe.counters()
                submitted0 = probe.app.engine.stats.submitted
                t_start = time.perf_counter()
                for i in range(sizes.desk_presses):
                    key, latency = await probe.press(pilot, i)
                    if latency is None:
                        timeouts += 1
                        latency = 2_000.0
                    latencies_ms.append(latency)
                    by_key[key].append(latency)
                    await asyncio.sleep(OPERATOR_PACE_S)
                elapsed = time.perf_counter() - t_start
                fills1, orders1 = probe.counters()
                submitted1 = probe.app.engine.stats.submitted
            return {
                "name": "desk_under_load",
                "risk_limits": risk_limits(probe.app.engine),
                "keys": [key for key, _ in probe.presses],
                "seconds": round(elapsed, 3),
                **_latency_figures(latencies_ms, timeouts),
                "p50_ms_by_key": {key: round(percentile(sorted(v), 50), 3) for key, v in by_key.items() if v},
                "fills_per_s": round((fills1 - fills0) / elapsed, 1),
                "venue_orders_per_s": round((orders1 - orders0) / elapsed, 1),
                # What the demo sent the Engine: a loaded machine's slow venue calls can open
                # every breaker for a while, and then nothing reaches a venue or fills.
                "submitted_per_s": round((submitted1 - submitted0) / elapsed, 1),
            }

        try:
            return asyncio.run(main())
        finally:
            _restore_gc()


def bench_desk_soak(ctx: Context) -> dict[str, Any]:
    """The desk under --demo for a long while (an hour by default; opt-in, never in a plain
    run): RSS, fills/s and key-to-frame latency per interval, to show memory stays flat."""
    sizes = ctx.sizes
    interval_s = max(sizes.desk_soak_s / 60, 5.0)
    with tempfile.TemporaryDirectory(prefix="execdesk-soak-") as tmp:
        probe = _DeskProbe(tmp)

        async def main() -> dict[str, Any]:
            samples: list[dict[str, Any]] = []
            all_ms: list[float] = []
            all_timeouts = 0
            async with probe.app.run_test(size=(160, 48)) as pilot:
                probe.main_screen = probe.app.screen
                await asyncio.sleep(sizes.desk_warmup_s)
                t_start = time.perf_counter()
                i = 0
                while time.perf_counter() - t_start < sizes.desk_soak_s:
                    fills0, orders0 = probe.counters()
                    t0 = time.perf_counter()
                    latencies_ms: list[float] = []
                    timeouts = 0
                    while time.perf_counter() - t0 < interval_s:
                        _, latency = await probe.press(pilot, i)
                        i += 1
                        if latency is None:
                            timeouts += 1
                        else:
                            latencies_ms.append(latency)
                        await asyncio.sleep(0.25)  # a busy operator, four keys a second
                    elapsed = time.perf_counter() - t0
                    fills1, orders1 = probe.counters()
                    figures = _latency_figures(latencies_ms, timeouts)
                    sample = {
                        "t_s": round(time.perf_counter() - t_start, 1),
                        "rss_mb": round(rss_mb(), 1),
                        "fills_per_s": round((fills1 - fills0) / elapsed, 1),
                        "venue_orders_per_s": round((orders1 - orders0) / elapsed, 1),
                        "p50_ms": figures["p50_ms"], "p99_ms": figures["p99_ms"], "timeouts": timeouts,
                        **heap_figures(),
                    }
                    samples.append(sample)
                    all_ms.extend(latencies_ms)
                    all_timeouts += timeouts
                    if ctx.progress is not None:
                        print(f"bench: desk_soak {json.dumps(sample)}", file=ctx.progress, flush=True)
                fills, orders = probe.counters()
            half = samples[len(samples) // 2:]
            rss = [s["rss_mb"] for s in samples]
            return {
                "name": "desk_soak",
                "risk_limits": risk_limits(probe.app.engine),
                "seconds": round(sizes.desk_soak_s, 1),
                **_latency_figures(all_ms, all_timeouts),
                "fills_total": fills,
                "venue_orders_total": orders,
                "fills_per_s": round(sum(s["fills_per_s"] for s in samples) / max(len(samples), 1), 1),
                "rss_mb_first": rss[0] if rss else None,
                "rss_mb_max": max(rss) if rss else None,
                "rss_mb_last": rss[-1] if rss else None,
                # Flat: the second half's growth, as a share of where it started.
                "rss_growth_second_half": round(half[-1]["rss_mb"] / half[0]["rss_mb"] - 1, 4) if half else None,
                "samples": samples,
            }

        try:
            return asyncio.run(main())
        finally:
            _restore_gc()
