"""`--demo`'s synthetic operator: its pacing and the orders it makes."""

from __future__ import annotations

import random

import anyio
import pytest

from engine import OrderType, TimeInForce
from tui import demo
from tui.demo import Pacer, demo_order


def test_orders_fall_due_at_the_target_rate_fractions_carried_over() -> None:
    pacer = Pacer(1_000)
    assert pacer.due(0.01) == 10
    # 1.5 orders per call: the half is owed, not lost.
    assert [pacer.due(0.0015) for _ in range(4)] == [1, 2, 1, 2]
    assert pacer.due(0.0) == 0


def test_a_stall_is_not_caught_up_beyond_the_burst_cap() -> None:
    pacer = Pacer(1_000, max_burst=50)
    assert pacer.due(10.0) == 50  # 10,000 owed after a 10 s stall: only 50 go
    assert pacer.due(0.001) == 1  # and nothing extra is left over
    assert pacer.due(-1.0) == 0  # a clock going backwards owes nothing


def test_late_wakeups_slow_it_down_and_on_time_ones_bring_it_back_to_target() -> None:
    pacer = Pacer(900)
    pacer.woke(demo.LAG_BUDGET_S * 2)
    assert pacer.rate == pytest.approx(900 * demo.SLOW_DOWN)
    for _ in range(100):
        pacer.woke(demo.LAG_BUDGET_S * 2)
    assert pacer.rate == demo.MIN_ORDERS_S  # a floor: the demo never stops
    for _ in range(2_000):
        pacer.woke(0.0)
    assert pacer.rate == 900  # back at the target and never above it
    assert pacer.due(0.1) == 50  # capped burst at the recovered rate


@pytest.mark.parametrize("bad", [0, -5, float("nan"), float("inf")])
def test_a_pacer_needs_a_finite_positive_rate(bad: float) -> None:
    with pytest.raises(ValueError, match="target_per_s must be a finite number > 0"):
        Pacer(bad)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_a_pacer_needs_a_whole_positive_burst(bad: object) -> None:
    with pytest.raises(ValueError, match="max_burst must be a whole number >= 1"):
        Pacer(100, max_burst=bad)  # type: ignore[arg-type]


def test_plain_orders_are_market_or_ioc_limit_and_parents_are_every_algorithm() -> None:
    rng = random.Random(7)
    plain = [demo_order(rng, f"p{i}", 50_000.0, "BTC/USD") for i in range(300)]
    assert {o.type for o in plain} == {OrderType.MARKET, OrderType.LIMIT}
    assert all(o.time_in_force is TimeInForce.IOC for o in plain if o.type is OrderType.LIMIT)
    parents = [demo_order(rng, f"a{i}", 50_000.0, "BTC/USD", parent=True) for i in range(300)]
    assert {o.type for o in parents} == {OrderType.ICEBERG, OrderType.TWAP, OrderType.VWAP, OrderType.SMART}
    # Without a mid price it cannot price a limit or a parent: market orders only.
    assert {demo_order(rng, f"m{i}", None, "BTC/USD", parent=True).type for i in range(50)} == {OrderType.MARKET}


class _Engine:
    """As much of an Engine as the demo uses; halted until told otherwise."""

    def __init__(self) -> None:
        self.halted_reason: str | None = "kill switch"
        self.sent: list[str] = []
        self.smart = self

    def supported_types(self) -> set[str]:
        return {t.value for t in OrderType}

    def merged_book(self, symbol: str, depth: int) -> None:
        return None  # no book: market orders only

    async def submit(self, order: object) -> str:
        self.sent.append(order.id)  # type: ignore[attr-defined]
        return order.id  # type: ignore[attr-defined]


class _App:
    def __init__(self) -> None:
        self.engine = _Engine()
        self.seed = 1
        self.symbols = ["BTC/USD"]
        self._n = 0

    def next_order_id(self) -> str:
        self._n += 1
        return str(self._n)

    def track_order(self, order: object, *, mine: bool = True) -> None:
        assert not mine  # the demo's flow is never the operator's


def test_the_demo_sends_nothing_while_trading_is_halted_and_resumes_after() -> None:
    app = _App()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(demo.run_demo, app)
            await anyio.sleep(demo.HALTED_POLL_S * 2.5)
            assert app.engine.sent == []  # halted: not one order (each would be refused)
            app.engine.halted_reason = None
            with anyio.move_on_after(30):
                while len(app.engine.sent) < 20:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()

    anyio.run(main)
    assert len(app.engine.sent) >= 20  # resumed
