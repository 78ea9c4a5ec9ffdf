"""fix_roundtrip: orders through a FixVenue to an `execdesk venue` process on loopback.

Two figures, both against the same venue process: one order in flight (round trip p50/p99,
submit to its answer), and ~1,000 in flight (orders/s, and the round trips under that
load). The floor is the transport alone: a bare asyncio echo process on loopback,
answering frames of a NewOrderSingle's size with the same number in flight, measured in
the same run; `ratio_to_floor` is how much of the bare loopback's rate FIX keeps.

The venue process runs the built-in simulators with no simulated latency or faults (its
defaults), so what is measured is the two processes' FIX and matching work. The FixVenue
runs on the workload's own loop (`connect_async`), as an async engine would use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from .common import Context, bench_order, p50_p99_us

GOAL_FIX_ORDERS_PER_S = 10_000.0
GOAL_FIX_P50_US = 1_000.0
IN_FLIGHT = 1_000
_LISTENING = re.compile(r"on ([0-9.]+):(\d+)")
_FRAME = b"8=FIX.4.4\x019=160\x01" + b"x" * 180 + b"\x01"  # a NewOrderSingle's size

_ECHO = """
import asyncio, sys
async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    print(f"echo on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


@contextlib.contextmanager
def _process(argv: list[str], timeout: float = 30.0) -> Iterator[tuple[str, int]]:
    """Start a process that prints "... on HOST:PORT" when it listens; stop it after."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + timeout
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline()
            found = _LISTENING.search(line)
            if found:
                yield found.group(1), int(found.group(2))
                return
            if not line and proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"{argv[2:]} did not start: {line!r} {err[-500:]!r}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def venue_process_argv(*extra: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from tui.cli import main; sys.exit(main(sys.argv[1:]))",
            "venue", "--port", "0", *extra]


async def _echo_rate(host: str, port: int, frames: int, in_flight: int) -> float:
    reader, writer = await asyncio.open_connection(host, port)
    size = len(_FRAME)
    try:
        t0 = time.perf_counter()
        sent = received = received_bytes = 0
        while received < frames:
            burst = min(in_flight - (sent - received), frames - sent)
            if burst > 0:
                writer.write(_FRAME * burst)
                sent += burst
            received_bytes += len(await reader.read(1 << 20))
            received = received_bytes // size
        return frames / (time.perf_counter() - t0)
    finally:
        writer.close()


async def _one_in_flight(venue: Any, prefix: str, n: int) -> list[int]:
    samples = []
    for i in range(n):
        order = bench_order(prefix, i)
        t0 = time.perf_counter_ns()
        await venue.submit_async(order)
        samples.append(time.perf_counter_ns() - t0)
    return samples


async def _many_in_flight(venue: Any, prefix: str, n: int, in_flight: int) -> tuple[float, list[int], int, int]:
    """Keep `in_flight` orders outstanding until n are answered: orders/s, round trips, fills, refusals."""
    samples: list[int] = []
    fills = refused = 0
    next_i = 0

    async def worker() -> None:
        nonlocal next_i, fills, refused
        while next_i < n:
            i = next_i
            next_i += 1
            t0 = time.perf_counter_ns()
            result = await venue.submit_async(bench_order(prefix, i))
            samples.append(time.perf_counter_ns() - t0)
            fills += len(result.fills)
            refused += result.status.value == "REJECTED"

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return n / (time.perf_counter() - t0), samples, fills, refused


def bench_fix_roundtrip(ctx: Context) -> dict[str, Any]:
    from engine.venues.fixio.venue import FixVenue

    sizes = ctx.sizes
    n_one, n_many = sizes.probe, sizes.orders // 2
    with _process([sys.executable, "-c", _ECHO]) as (host, port):
        floor = asyncio.run(_echo_rate(host, port, n_many, IN_FLIGHT))
    async def orders(host: str, port: int) -> tuple[list[int], float, list[int], int, int]:
        venue = await FixVenue(host, port, name="bench", request_timeout=60.0).connect_async()
        try:
            await _many_in_flight(venue, "fixwarm", sizes.warmup, IN_FLIGHT)
            one = await _one_in_flight(venue, "fix1", n_one)
            return (one, *await _many_in_flight(venue, "fixn", n_many, IN_FLIGHT))
        finally:
            await venue.close_async()

    with _process(venue_process_argv()) as (host, port):
        one, rate, samples, fills, refused = asyncio.run(orders(host, port))
    one_p50, one_p99 = p50_p99_us(one)
    p50, p99 = p50_p99_us(samples)
    met = rate >= GOAL_FIX_ORDERS_PER_S and one_p50 is not None and one_p50 <= GOAL_FIX_P50_US
    return {
        "name": "fix_roundtrip",
        "orders": n_many,
        "fills": fills,
        "rejected": refused,
        "in_flight": IN_FLIGHT,
        "orders_per_s": round(rate, 1),
        "p50_us": p50,
        "p99_us": p99,
        "one_in_flight_orders": n_one,
        "one_in_flight_p50_us": one_p50,
        "one_in_flight_p99_us": one_p99,
        "floor": f"bare asyncio echo over loopback, {len(_FRAME)}-byte frames, {IN_FLIGHT} in flight",
        "floor_frames_per_s": round(floor, 1),
        "ratio_to_floor": round(rate / floor, 4),
        "goal": f">= {GOAL_FIX_ORDERS_PER_S:,.0f} orders/s with {IN_FLIGHT} in flight, "
                f"p50 <= {GOAL_FIX_P50_US / 1000:g} ms with one in flight",
        "met": met,
        "p_note": "p50_us/p99_us: submit_async to its answer with ~1,000 in flight; one_in_flight_*: alone",
    }
