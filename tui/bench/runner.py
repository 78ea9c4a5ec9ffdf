"""Running workloads by name, and the `execdesk bench` command line."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from .common import FULL, QUICK, Context, Sizes, apply_yard_stick
from .desk import bench_desk_soak, bench_desk_under_load
from .engine_async import bench_async_latency, bench_async_optimizer, bench_engine_events, bench_twap_hour
from .fix import bench_fix_roundtrip
from .journal_on import bench_journal_on
from .engine_sync import bench_batch, bench_profiler_record, bench_resting, bench_smart_router, bench_sync_router
from .machine import machine_info, product_build_us
from .reference import reference_build_us
from .report import format_table
from .steady import bench_steady_state


WORKLOADS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "sync_router": bench_sync_router,
    "smart_router": bench_smart_router,
    "async_optimizer": bench_async_optimizer,
    "async_latency": bench_async_latency,
    "batch": bench_batch,
    "engine_events": bench_engine_events,
    "journal_on": bench_journal_on,
    "resting": bench_resting,
    "profiler_record": bench_profiler_record,
    "twap_hour": bench_twap_hour,
    "desk_under_load": bench_desk_under_load,
    "steady_state": bench_steady_state,
    "fix_roundtrip": bench_fix_roundtrip,
    "desk_soak": bench_desk_soak,
}
# Run only when asked for by name (--only): an hour long.
OPT_IN = {"desk_soak"}
YARD_STICK = ("engine.Order as at commit 0157938, a frozen copy in tui/bench/reference.py; "
              "order_builds_per_order = 1e6 / orders_per_s / order_build_us")
YARD_STICK_ROUNDS = 3  # before each workload (7 at the start)


class _LogCounter(logging.Handler):
    """Counts what the engine logs during a workload (the desk sends it to a file; here it
    would garble the table) and keeps the first few lines for the JSON."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 3:
            self.first.append(f"{record.levelname} {record.name}: {record.getMessage()}"[:300])


def run(names: Sequence[str], *, quick: bool = False, sizes: Sizes | None = None,
        progress: TextIO | None = None) -> dict[str, Any]:
    """Run the named workloads in the order of WORKLOADS; returns the JSON document."""
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workload {unknown[0]!r} (workloads: {', '.join(WORKLOADS)})")
    ctx = Context(sizes or (QUICK if quick else FULL), quick, progress=progress)
    machine = machine_info(quick)
    # The yard stick (reference.py), measured now and again before each workload: the best
    # of all, so a burst of load while it was built cannot make the engine look cheap.
    builds = [reference_build_us()]
    entries = []
    for name in WORKLOADS:
        if name not in names:
            continue
        if progress is not None:
            print(f"bench: {name} ...", file=progress, flush=True)
        gc.collect()
        builds.append(reference_build_us(rounds=YARD_STICK_ROUNDS))
        counter = _LogCounter()
        root = logging.getLogger()
        root.addHandler(counter)
        t0 = time.perf_counter()
        try:
            entry = WORKLOADS[name](ctx)
        except Exception as exc:  # one broken workload must not hide the others' figures
            traceback.print_exc(file=progress or sys.stderr)
            entry = {"name": name, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            root.removeHandler(counter)
        # Only the Engine's and the desk's workloads say limits; the rest use bare routers.
        entry.setdefault("risk_limits", "none")
        entry["wall_s"] = round(time.perf_counter() - t0, 3)
        entry["warnings_logged"] = counter.count
        if counter.first:
            entry["first_warnings"] = counter.first
        ctx.done[name] = entry
        entries.append(entry)
    build_us = min(builds)
    for entry in entries:
        apply_yard_stick(entry, build_us)
    machine["order_build_us"] = round(build_us, 4)
    machine["order_build_us_measured"] = [round(b, 4) for b in builds]
    machine["order_build_reference"] = YARD_STICK
    machine["product_order_build_us"] = round(product_build_us(), 4)
    return {"workloads": entries, "machine": machine}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="execdesk bench",
        description="Measure the engine: throughput and latency workloads on the simulated venues, each "
        "against a floor measured in the same run. JSON on stdout, a table on stderr.",
        epilog="workloads: " + ", ".join(n for n in WORKLOADS if n not in OPT_IN)
        + "; opt-in (only with --only): " + ", ".join(sorted(OPT_IN)),
    )
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks that everything runs")
    parser.add_argument("--only", metavar="NAME[,NAME...]", default=None,
                        help="run only these workloads (comma-separated)")
    parser.add_argument("--out", metavar="FILE", type=Path, default=None, help="also write the JSON to FILE")
    parser.add_argument("--soak-minutes", metavar="N", type=float, default=None,
                        help="how long desk_soak runs (default 60; 1/3 with --quick)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    names = [n for n in WORKLOADS if n not in OPT_IN]
    if args.only is not None:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in WORKLOADS]
        if unknown or not names:
            parser.error(
                f"unknown workload {', '.join(repr(n) for n in unknown) or '(none given)'} "
                f"(workloads: {', '.join(WORKLOADS)})"
            )
    sizes = QUICK if args.quick else FULL
    if args.soak_minutes is not None:
        if not args.soak_minutes > 0:
            parser.error(f"--soak-minutes must be > 0, got {args.soak_minutes:g}")
        sizes = replace(sizes, desk_soak_s=args.soak_minutes * 60)
    doc = run(names, quick=args.quick, sizes=sizes, progress=sys.stderr)
    text = json.dumps(doc, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    print(format_table(doc), file=sys.stderr, flush=True)
    print(text, flush=True)
    return 1 if any("error" in w for w in doc["workloads"]) else 0
