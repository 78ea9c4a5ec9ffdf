"""The `journal_on` workload (issue 18): the Engine with its order journal, against the same
Engine without one, in batches of 1,000 through `Engine.submit_many`.

Rules of this module:

* A batch is timed from building its orders until the last of them is final (the router's
  report, as every async round) and, with the journal, until every event the engine
  published up to then is committed: the journal's lossless subscription has handed the
  journal as many events as the engine's bus published to it (`Journal.received`), and
  `Journal.wait_committed` has committed them. Nothing sleeps: the wait is a condition the
  journal's thread signals.
* The two Engines and the floor alternate in rounds, who goes first swapping each round
  (common.round_order); both Engines are built alike (instant venues, the desk's limits
  raised past this flow), one with `journal=<a temporary file>`.
* After the timing, the journal file is read back: every measured order's row is there
  and final, which the entry says (`journaled_final`).
"""

from __future__ import annotations

import gc
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from engine import Engine, RealClock

from .common import (
    GOAL_JOURNAL_BUILDS,
    GOAL_JOURNAL_SHARE,
    Context,
    Run,
    bench_order,
    instant_specs,
    merge,
    risk_limits,
    round_bounds,
    share_and_builds_goal,
    throughput_entry,
)
from .engine_async import EVENTS_RISK, AsyncTarget, _async_floor, _outcomes, alternated, engine_target, until_final

# How long a batch waits for its journal to catch up before the workload gives up.
COMMIT_TIMEOUT_S = 60.0

Settle = Callable[[], Awaitable[None]]


def committed(engine: Engine) -> Settle:
    """Wait until every event the engine has published is committed in its journal."""
    journal = engine.journal
    assert journal is not None

    async def settle() -> None:
        if not await engine.journal_caught_up(COMMIT_TIMEOUT_S):
            raise RuntimeError(f"the journal took {journal.received} of {engine.bus.published} events in "
                               f"{COMMIT_TIMEOUT_S:g} s")

    return settle


async def batch_round(target: AsyncTarget, settle: Settle | None, prefix: str, first: int, stop: int,
                      batch: int) -> Run:
    """Orders first..stop in batches of `batch`, each through `submit_many` and timed until
    its last order is final (and `settle` returned); samples: per order, averaged within
    each batch. The clock runs only inside each batch."""
    completion = target.completion
    submit_many = target.submit_many
    assert submit_many is not None
    pc = time.perf_counter_ns
    samples: list[int] = []
    elapsed = waited = 0
    for lo in range(first, stop, batch):
        hi = min(lo + batch, stop)
        completion.expect({f"{prefix}-{i}" for i in range(lo, hi)})
        t0 = pc()
        await submit_many([bench_order(prefix, i) for i in range(lo, hi)])
        waited += await until_final(target, f"{prefix}-{hi - 1}")
        if settle is not None:
            await settle()
        took = pc() - t0
        elapsed += took
        samples.append(took // (hi - lo))
    return Run(stop - first, elapsed / 1e9, samples, [], waited)


def _journal_rows(path: Path, prefix: str, n: int) -> tuple[int, int, int]:
    """(rows, of which final, events rows) of the measured orders (prefix-0..n-1) in the
    journal file."""
    ids = {f"{prefix}-{i}" for i in range(n)}
    db = sqlite3.connect(path)
    try:
        like = f"{prefix}-%"
        rows = [(oid, final) for oid, final in db.execute("SELECT id, final FROM orders WHERE id LIKE ?", (like,))
                if oid in ids]
        events = sum(1 for (oid,) in db.execute("SELECT order_id FROM events WHERE order_id LIKE ?", (like,))
                     if oid in ids)
        return len(rows), sum(final for _, final in rows), events
    finally:
        db.close()


def bench_journal_on(ctx: Context) -> dict[str, Any]:
    """The Engine with a journal against the same Engine without one, batches of 1,000
    through `submit_many`, each timed until final and (with the journal) committed."""
    sizes = ctx.sizes
    n = sizes.orders
    batch = sizes.batch_size
    clock = RealClock()
    with tempfile.TemporaryDirectory(prefix="execdesk-bench-") as tmp:
        path = Path(tmp) / "journal.sqlite3"
        bare_engine = Engine.default(seed=0, clock=clock, specs=instant_specs(), risk=EVENTS_RISK)
        journaled_engine = Engine.default(seed=0, clock=clock, specs=instant_specs(), risk=EVENTS_RISK,
                                          journal=path)
        journal = journaled_engine.journal
        assert journal is not None
        bare = engine_target("no_journal", bare_engine)
        journaled = engine_target("journal_on", journaled_engine)
        settles: dict[str, Settle | None] = {"no_journal": None, "journal_on": committed(journaled_engine)}

        async def main() -> tuple[Run, list[list[Run]], list[list[int]]]:
            targets = [bare, journaled]
            for target in targets:
                await target.start()
                await batch_round(target, settles[target.name], "w", 0, sizes.warmup, batch)
            await _async_floor(clock, "w", 0, sizes.warmup)
            gc.collect()
            for target in targets:
                target.fills_before = target.venue_fills()
            commits_before = journal.commits
            loops = [lambda p, a, b: _async_floor(clock, p, a, b),
                     *((lambda p, a, b, t=t: batch_round(t, settles[t.name], p, a, b, batch)) for t in targets)]
            rounds, orders = await alternated(loops, round_bounds(n, max(sizes.round_orders, batch)))
            commits[0] = journal.commits - commits_before
            for j, target in enumerate(targets, start=1):
                target.run = merge([r[j] for r in rounds])
                target.fills_before = target.venue_fills() - target.fills_before
            for target in targets:
                await target.stop()
                target.completion.close()
            return merge([r[0] for r in rounds]), rounds, orders

        commits = [0]
        floor, rounds, orders = anyio.run(main)
        names = ["floor", "no_journal", "journal_on"]
        bytes_on_disk = sum(p.stat().st_size for p in Path(tmp).iterdir())
        journal_orders, journal_final, journal_events = _journal_rows(path, "m", n)
        fills, rejected, unfinished = _outcomes(journaled, "m", n)
        bare_fills, bare_rejected, bare_unfinished = _outcomes(bare, "m", n)
    run, bare_run = journaled.run, bare.run
    assert run is not None and bare_run is not None
    bare_ok = bare_rejected == 0 and bare_unfinished == 0 and bare_fills >= n
    all_orders = n + sizes.warmup
    return throughput_entry(
        "journal_on", run, floor, fills, rejected + unfinished, seed=None,
        goal=share_and_builds_goal(GOAL_JOURNAL_SHARE, bare_run.orders_per_s,
                                   "the same Engine without a journal (same rounds)", GOAL_JOURNAL_BUILDS,
                                   baseline_ok=bare_ok),
        risk_limits=risk_limits(journaled_engine),
        batch_size=batch,
        no_journal_orders_per_s=round(bare_run.orders_per_s, 1),
        ratio_to_no_journal=round(run.orders_per_s / bare_run.orders_per_s, 4),
        unfinished=unfinished,
        venue_fills=journaled.fills_before,
        waited_one_by_one=run.waited + bare_run.waited,
        journal_commits=commits[0],
        journaled_orders=journal_orders,
        journaled_final=journal_final,
        journal_events_per_order=round(journal_events / max(1, journal_orders), 3),
        journal_bytes_per_order=round(bytes_on_disk / all_orders, 1),
        completion=("each batch timed from building its orders until the router reported every one final "
                    "and, with the journal, every event published until then was committed "
                    "(Journal.wait_committed)"),
        round_order=[[names[j] for j in o] for o in orders],
        orders_per_s_by_round={name: [round(r[j].orders_per_s, 1) for r in rounds] for j, name in enumerate(names)},
        p_note="p50_us/p99_us: per-order average within each batch, with the journal",
    )
