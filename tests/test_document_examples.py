"""The component document's five usage examples, run as written.

Each example lives in tests/examples/ with only imports added. Each test runs
it in-process (runpy) to check that the result makes sense, and as a script in
a subprocess that must exit promptly: no router loop or scheduler thread may
keep a process alive.
"""

from __future__ import annotations

import concurrent.futures
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from engine import OrderStatus

EXAMPLES = Path(__file__).parent / "examples"
ROOT = Path(__file__).parent.parent


def run_example(name: str) -> dict:
    return runpy.run_path(str(EXAMPLES / name), run_name="__main__")


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("ex*.py")))
def test_example_runs_as_a_script_and_exits_promptly(name: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


def _check_market_fill(result, venue) -> None:
    assert result.status is OrderStatus.FILLED, result.reason
    assert result.filled_quantity == 1.0  # exact: integer lots inside
    inst = venue.instruments()["BTC/USD"]
    assert result.fills
    for fill in result.fills:
        assert inst.price_to_ticks(fill.price) is not None, "fill off the tick"
        assert fill.liquidity.value == "TAKER"
        assert fill.fee == pytest.approx(fill.price * fill.quantity * venue.fees.taker_bps / 10_000)
    prices = [f.price for f in result.fills]
    assert min(prices) <= result.average_price <= max(prices)
    assert sum(f.quantity for f in result.fills) == pytest.approx(1.0)
    # A buy walks the asks: every fill is at or above the best bid the book shows now.
    book = getattr(venue, "venue", venue).book("BTC/USD")
    assert min(prices) > book.best_bid * 0.99


def test_basic_order_submission_fills_at_book_prices() -> None:
    g = run_example("ex1_basic_order_submission.py")
    result = g["result"]
    assert result.order_id == "order_123"
    assert result.exchange_id == "exchange_name"
    _check_market_fill(result, g["exchange"])
    assert g["profiler"].stats("acknowledgment").count == 1


def test_smart_order_routing_iceberg_shows_display_size_and_keeps_working() -> None:
    g = run_example("ex2_smart_order_routing.py")
    results = g["results"]
    assert results, "route_order returns at least the first child's result"
    first = results[0]
    assert first.order_id != "order_123" and first.order_id.startswith("order_123.")
    assert first.quantity <= 1.0  # never more than display_size
    assert first.status in {OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED}
    smart = g["smart_router"]
    parent = smart.scheduler.parent("order_123")
    assert parent is not None and parent.status is not OrderStatus.REJECTED
    # Never more than the display working at the venue.
    working = [o for o in g["exchange"].open_orders("BTC/USD") if o.order_id.startswith("order_123.")]
    assert sum(o.quantity - o.filled_quantity for o in working) <= 1.0
    # Leave no scheduler thread working on the real clock for the tests that follow.
    smart.scheduler.cancel("order_123")
    smart.scheduler.close()


def test_async_order_execution_drains_on_stop() -> None:
    g = run_example("ex3_async_order_execution.py")
    assert g["order_id"] == "order_123"
    assert g["status"].status in set(OrderStatus)
    final = g["optimizer"].get_order_status("order_123")
    assert final.status is OrderStatus.FILLED, final.reason
    assert final.filled_quantity == 1.0


def test_synchronous_integration_returns_the_id_and_fills() -> None:
    g = run_example("ex4_synchronous_integration.py")
    assert g["order_id"] == "order_123"
    final = g["optimizer"].wait("order_123", timeout=10)
    _check_market_fill(final, g["exchange"])


def test_mixed_integration_future_then_second_loop_is_idempotent() -> None:
    g = run_example("ex5_mixed_integration.py")
    future = g["order_result"]
    assert isinstance(future, concurrent.futures.Future)
    first = future.result(timeout=10)
    _check_market_fill(first, g["exchange"])
    # The async part resubmitted the same order from a second loop: the router
    # answers with the order it already has, and the venue holds exactly one.
    again = g["router"].get_order_status("order_123")
    assert again.status is OrderStatus.FILLED
    venue = g["exchange"].venue
    assert venue.status("order_123").filled_quantity == 1.0
    assert venue.counters.submitted == 1  # the second loop's submit never reached the venue
    g["router"].close()
