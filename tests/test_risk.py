"""Pre-trade risk (engine/risk.py): the fat-finger limits every order, child and parent passes.

Each limit is shown refusing through the sync router with the reason an
operator reads, and the venue never seeing the order; then the async router
and optimizer, algorithm children and parents as a whole, an order the
smart router splits, an amend, the ticket's preview (the same verdict as
the router's), the Engine's defaults, the `--demo` flow under them, and the
TOML file: its error messages and its first-run write.
"""

from __future__ import annotations

import dataclasses
import os
import random
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import (
    AsyncExecutionOptimizer,
    AsyncOrderRouter,
    Engine,
    ExecutionOptimizer,
    MarketConfig,
    Order,
    OrderResult,
    OrderRouter,
    OrderSide,
    OrderStatus,
    RiskChecker,
    RiskLimits,
    RiskPreview,
    SimulatedExchange,
    SmartOrderRouter,
    SymbolLimits,
    VirtualClock,
)
from engine import risk as risk_module
from engine.errors import ConfigurationError
from engine.events import OrderDenied
from engine.risk import LIMIT_NAMES, load, load_or_create, write_default
from tests.conftest import VIRTUAL_START, virtual_anyio_backend

BTC = "BTC/USD"


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> Any:
    return virtual_anyio_backend(virtual_clock)


def venue(clock: VirtualClock, name: str = "sim", **market: Any) -> SimulatedExchange:
    """BTC/USD starts at a mid of 50,000; the book holds still until the clock moves."""
    return SimulatedExchange(name, clock=clock, seed=1, market=MarketConfig(**market))


def sync_router(clock: VirtualClock, limits: RiskLimits | None = RiskLimits(), **market: Any) -> tuple[OrderRouter, SimulatedExchange]:
    v = venue(clock, **market)
    router = OrderRouter(clock=clock, risk=limits)
    router.register_exchange("sim", v)
    return router, v


def market(oid: str, qty: float, side: str = "BUY", symbol: str = BTC) -> Order:
    return Order(id=oid, symbol=symbol, side=side, type="MARKET", quantity=qty)


def limit(oid: str, qty: float, price: float, side: str = "BUY", symbol: str = BTC) -> Order:
    return Order(id=oid, symbol=symbol, side=side, type="LIMIT", quantity=qty, price=price)


# -- each limit through the sync router --------------------------------------------------------

# (order, limits, the reason, the limit counted). The mid is 50,000.
CASES = {
    "quantity": (limit("q", 1e12, 50_000.0), RiskLimits(), "quantity 1e+12 > max 50 (BTC/USD)"),
    "notional": (
        limit("n", 45.2, 50_000.0), RiskLimits(), "notional 2,260,000 > max 1,000,000 USD (BTC/USD)"
    ),
    "price_band": (
        limit("p", 1.0, 60_000.0), RiskLimits(), "price 60,000 is 20.0% from the mid 50,000: outside the 5% band"
    ),
    "sell_price_band": (
        limit("s", 1.0, 40_000.0, side="SELL"), RiskLimits(),
        "price 40,000 is 20.0% from the mid 50,000: outside the 5% band",
    ),
    "position": (
        limit("pos", 30.0, 50_000.0), RiskLimits(max_position_notional=1_000_000),
        "position 1,500,000 > max 1,000,000 USD (BTC/USD BUY: 0 filled, 0 working, 30 this order)",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_per_order_limit_refuses_with_both_values_and_the_venue_never_sees_it(
    virtual_clock: VirtualClock, name: str
) -> None:
    order, limits, reason = CASES[name]
    if name == "notional":
        limits = dataclasses.replace(limits, symbols={BTC: SymbolLimits(max_quantity=50, max_notional=1_000_000)})
    router, v = sync_router(virtual_clock, limits)
    result = router.submit_order(order)
    assert result.status is OrderStatus.REJECTED
    assert result.reason == reason
    assert v.counters.submitted == 0
    assert router.risk is not None
    counted = "price_band" if name == "sell_price_band" else name
    assert router.risk.refusals == {n: int(n == counted) for n in LIMIT_NAMES}


def test_a_passive_price_far_from_the_mid_rests_it_cannot_trade_through(virtual_clock: VirtualClock) -> None:
    router, v = sync_router(virtual_clock)
    bid = router.submit_order(limit("far-bid", 1.0, 40_000.0))
    offer = router.submit_order(limit("far-offer", 1.0, 60_000.0, side="SELL"))
    assert (bid.status, offer.status) == (OrderStatus.NEW, OrderStatus.NEW)
    assert v.counters.submitted == 2


def test_a_market_order_is_judged_by_its_worst_expected_price_in_the_book(virtual_clock: VirtualClock) -> None:
    # Levels 1% apart: 10 BTC walks the asks past 52,500 (the 5% band's edge).
    router, v = sync_router(virtual_clock, level_spacing_bps=100.0)
    asks = v.book(BTC, 50).asks
    walked, worst = 0.0, None
    for level in asks:
        worst = level.price
        if level.price > 52_500.0:
            break
        walked += level.quantity
    assert walked < 10.0 and worst is not None
    result = router.submit_order(market("walk", 10.0))
    away = (worst - 50_000.0) / 50_000.0 * 100
    assert result.reason == (
        f"worst expected price {worst:,.10g} is {away:.1f}% from the mid 50,000: outside the 5% band"
    )
    assert v.counters.submitted == 0
    # What the book covers inside the band goes.
    assert router.submit_order(market("within", walked - 0.5)).status is OrderStatus.FILLED


def test_open_orders_are_counted_until_they_finish(virtual_clock: VirtualClock) -> None:
    router, v = sync_router(virtual_clock, RiskLimits(max_open_orders=2))
    assert router.submit_order(limit("r1", 0.1, 49_000.0)).status is OrderStatus.NEW
    assert router.submit_order(limit("r2", 0.1, 49_000.0)).status is OrderStatus.NEW
    third = router.submit_order(limit("r3", 0.1, 49_000.0))
    assert third.reason == "open orders 3 > max 2"
    assert v.counters.submitted == 2
    assert router.cancel_order("r1").status is OrderStatus.CANCELED
    assert router.submit_order(limit("r4", 0.1, 49_000.0)).status is OrderStatus.NEW


def test_the_rate_is_counted_over_a_sliding_second(virtual_clock: VirtualClock) -> None:
    router, v = sync_router(virtual_clock, RiskLimits(max_orders_per_s=3))
    for i in range(3):
        assert router.submit_order(market(f"m{i}", 0.01)).status is OrderStatus.FILLED
    assert router.submit_order(market("m3", 0.01)).reason == "order rate 4 in the last second > max 3/s"
    virtual_clock.advance(0.5)
    assert router.submit_order(market("m4", 0.01)).status is OrderStatus.REJECTED  # still the same second
    virtual_clock.advance(0.5)
    assert router.submit_order(market("m5", 0.01)).status is OrderStatus.FILLED
    assert v.counters.submitted == 4
    assert router.risk is not None and router.risk.refusals["rate"] == 2


def test_the_position_counts_fills_and_working_orders_on_the_same_side(virtual_clock: VirtualClock) -> None:
    router, _ = sync_router(virtual_clock, RiskLimits(max_position_notional=200_000))
    assert router.submit_order(market("b1", 2.0)).status is OrderStatus.FILLED
    assert router.submit_order(limit("w1", 1.0, 49_000.0)).status is OrderStatus.NEW
    refused = router.submit_order(limit("w2", 1.5, 49_000.0))
    assert refused.reason == (
        "position 220,500 > max 200,000 USD (BTC/USD BUY: 2 filled, 1 working, 1.5 this order)"
    )
    # A sell reduces what is held: it is judged on its own side.
    assert router.submit_order(market("s1", 3.0, side="SELL")).status is OrderStatus.FILLED
    assert router.risk is not None and router.risk.position(BTC) == pytest.approx(-1.0)
    assert router.submit_order(limit("w3", 1.5, 49_000.0)).status is OrderStatus.NEW


def test_an_amend_is_judged_as_the_order_it_would_make(virtual_clock: VirtualClock) -> None:
    router, v = sync_router(virtual_clock)
    assert router.submit_order(limit("a1", 0.2, 49_100.0)).status is OrderStatus.NEW
    # The swap: 49,100 BTC at 0.2.
    swapped = router.amend_order("a1", quantity=49_100.0, price=0.2)
    assert swapped.status is OrderStatus.REJECTED
    assert swapped.reason == "amend refused: quantity 49,100 > max 50 (BTC/USD); the order is unchanged"
    assert v.counters.amended == 0
    assert v.status("a1").price == 49_100.0
    assert router.amend_order("a1", quantity=0.3).status is OrderStatus.NEW


def test_the_bare_classes_apply_limits_only_when_given_them(virtual_clock: VirtualClock) -> None:
    router, v = sync_router(virtual_clock, None)
    assert router.risk is None
    assert router.submit_order(limit("far", 1.0, 60_000.0)).status is OrderStatus.FILLED
    smart = SmartOrderRouter(router, risk=RiskLimits())
    assert router.risk is not None
    assert smart.route_order(limit("far2", 1.0, 60_000.0))[0].reason == (
        "price 60,000 is 20.0% from the mid 50,000: outside the 5% band"
    )
    ExecutionOptimizer(router, risk=RiskLimits(price_band_pct=50))
    assert router.risk.limits.price_band_pct == 50  # new limits, the same counts
    assert router.risk.refusals["price_band"] == 1


# -- a refused order never reaches its venue ---------------------------------------------------


@settings(max_examples=40)
@given(
    qty=st.floats(0.01, 200.0),
    offset_pct=st.floats(-30.0, 30.0),
    side=st.sampled_from(["BUY", "SELL"]),
    kind=st.sampled_from(["MARKET", "LIMIT"]),
)
def test_the_preview_is_the_routers_verdict_and_a_refusal_never_reaches_the_venue(
    qty: float, offset_pct: float, side: str, kind: str
) -> None:
    clock = VirtualClock(start=VIRTUAL_START)
    limits = RiskLimits(max_position_notional=3_000_000)
    router, v = sync_router(clock, limits, level_spacing_bps=50.0)
    smart = SmartOrderRouter(router)
    # Something already filled, so the position limit has a past to count.
    assert router.submit_order(market("seed", 20.0)).status is OrderStatus.FILLED
    price = round(50_000.0 * (1 + offset_pct / 100), 2) if kind == "LIMIT" else None
    order = Order(id="o", symbol=BTC, side=side, type=kind, quantity=round(qty, 4), price=price)
    preview = smart.check_risk(order)
    before = v.counters.submitted
    result = smart.route_order(order)[0]
    if preview.reason is None:
        assert v.counters.submitted == before + 1
        assert result.status is not OrderStatus.REJECTED or not result.reason.startswith(LIMIT_PREFIXES)
    else:
        assert result.status is OrderStatus.REJECTED
        assert result.reason == preview.reason
        assert v.counters.submitted == before


LIMIT_PREFIXES = ("quantity ", "notional ", "price ", "worst expected price ", "position ", "open orders ",
                  "order rate ")


def test_the_preview_says_the_notional_and_asks_for_a_confirmation_above_the_share(
    virtual_clock: VirtualClock,
) -> None:
    router, v = sync_router(virtual_clock)
    smart = SmartOrderRouter(router)
    small = smart.check_risk(limit("t1", 1.0, 50_000.0))
    assert small == RiskPreview(None, 50_000.0, 0.02, "quantity", False, "quantity 1 is 2% of max 50 (BTC/USD)")
    big = smart.check_risk(limit("t2", 30.0, 50_000.0))
    assert (big.reason, big.notional, big.limit, big.needs_confirmation) == (None, 1_500_000.0, "quantity", True)
    assert big.share == pytest.approx(0.6)
    refused = smart.check_risk(limit("t3", 60.0, 50_000.0))
    assert refused.reason == "quantity 60 > max 50 (BTC/USD)"
    assert refused.limit == "quantity" and not refused.needs_confirmation
    # A preview counts nothing and sends nothing.
    assert router.risk is not None and sum(router.risk.refusals.values()) == 0
    assert v.counters.submitted == 0


# -- the async router and optimizer ------------------------------------------------------------


@pytest.mark.anyio
async def test_limits_through_the_async_router_and_optimizer(virtual_clock: VirtualClock) -> None:
    v = venue(virtual_clock)
    router = AsyncOrderRouter(clock=virtual_clock, risk=RiskLimits())
    router.register_exchange("sim", v)
    result = await router.submit_order_async(limit("a1", 1.0, 60_000.0))
    assert result.reason == "price 60,000 is 20.0% from the mid 50,000: outside the 5% band"
    optimizer = AsyncExecutionOptimizer(router)
    await optimizer.start(num_workers=2)
    try:
        oid = await optimizer.submit_order_async(market("a2", 51.0))
        done = await optimizer.wait_async(oid, timeout=5)
    finally:
        await optimizer.stop()
    assert done.status is OrderStatus.REJECTED
    assert done.reason == "quantity 51 > max 50 (BTC/USD)"
    assert v.counters.submitted == 0


# -- the Engine: on by default, parents as a whole, children, the demo --------------------------


@pytest.mark.anyio
async def test_the_engine_refuses_a_twap_as_a_whole_not_child_by_child(virtual_clock: VirtualClock) -> None:
    engine = Engine.default(seed=1, clock=virtual_clock)
    assert engine.risk is not None and engine.risk.limits == RiskLimits()
    events = engine.subscribe()
    await engine.start(num_workers=2)
    try:
        twap = Order(id="big", symbol=BTC, side="BUY", type="TWAP", quantity=1e6,
                     metadata={"duration_s": 600, "slices": 10})
        assert engine.check_risk(twap).reason == "quantity 1,000,000 > max 50 (BTC/USD)"
        result = await engine.wait(await engine.submit(twap), timeout=5)
    finally:
        await engine.stop()
    assert result.status is OrderStatus.REJECTED
    assert result.reason == "quantity 1,000,000 > max 50 (BTC/USD)"
    assert result.children == []
    assert all(v.counters.submitted == 0 for v in engine.venues.values())
    assert engine.risk.refusals["quantity"] == 1
    denied = [e for e in events.drain() if isinstance(e, OrderDenied)]
    assert [(e.order_id, e.reason) for e in denied] == [("big", result.reason)]


@pytest.mark.anyio
async def test_an_order_the_smart_router_splits_is_judged_as_a_whole(virtual_clock: VirtualClock) -> None:
    # Thin books: 1.5 BTC splits into pieces under the 1 BTC limit; the order is not.
    venues = {name: venue(virtual_clock, name, level_notional=10_000.0) for name in ("a", "b", "c")}
    limits = RiskLimits(symbols={BTC: SymbolLimits(max_quantity=1)})
    engine = Engine(venues, clock=virtual_clock, risk=limits)
    order = market("split", 1.5)
    assert len(engine.smart.plan(order)) > 1
    await engine.start(num_workers=2)
    try:
        result = await engine.wait(await engine.submit(order), timeout=5)
    finally:
        await engine.stop()
    assert result.reason == "quantity 1.5 > max 1 (BTC/USD)"
    assert all(v.counters.submitted == 0 for v in venues.values())


def _child(oid: str, parent: str, qty: float) -> Order:
    return Order(id=oid, symbol=BTC, side="BUY", type="LIMIT", quantity=qty, price=50_000.0, parent_id=parent)


def _report(oid: str, status: OrderStatus, qty: float, filled: float) -> OrderResult:
    return OrderResult(oid, "sim", status, quantity=qty, filled_quantity=filled, symbol=BTC, side=OrderSide.BUY)


def test_a_parent_reserves_what_it_has_yet_to_send_and_its_children_draw_on_it() -> None:
    checker = RiskChecker(RiskLimits(max_position_notional=1_000_000))
    no_book = lambda depth: None  # noqa: E731  (the orders' own prices are judged)
    parent = Order(id="P", symbol=BTC, side="BUY", type="ICEBERG", quantity=19.0, price=50_000.0,
                   metadata={"display_size": 5.0})
    assert checker.accept_parent(parent, no_book) is None
    assert (checker.working_quantity(BTC, "BUY"), checker.reserved_quantity("P")) == (19.0, 19.0)
    # Another parent, or any order, meets the limit with the first parent's quantity in it.
    second = parent.model_copy(update={"id": "Q", "quantity": 2.0})
    assert checker.accept_parent(second, no_book) == (
        "position 1,050,000 > max 1,000,000 USD (BTC/USD BUY: 0 filled, 19 working, 2 this order)"
    )
    assert checker.admit(limit("plain", 1.5, 50_000.0), no_book, 0.0) == (
        "position 1,025,000 > max 1,000,000 USD (BTC/USD BUY: 0 filled, 19 working, 1.5 this order)"
    )
    # A child draws on its parent: it is not counted twice.
    assert checker.admit(_child("c1", "P", 5.0), no_book, 0.0) is None
    assert (checker.working_quantity(BTC, "BUY"), checker.reserved_quantity("P")) == (19.0, 14.0)
    checker.update(_report("c1", OrderStatus.PARTIALLY_FILLED, 5.0, 2.0))
    assert (checker.position(BTC), checker.working_quantity(BTC, "BUY")) == (2.0, 17.0)
    # What a child leaves unfilled, its parent has yet to send again.
    checker.update(_report("c1", OrderStatus.EXPIRED, 5.0, 2.0))
    assert (checker.working_quantity(BTC, "BUY"), checker.reserved_quantity("P")) == (17.0, 17.0)
    # The pieces of a split child name the child: placing_child ties them to the parent.
    checker.placing_child("P", "c2")
    assert checker.admit(_child("c2.1", "c2", 4.0), no_book, 0.0) is None
    checker.placed_child("c2")
    assert (checker.working_quantity(BTC, "BUY"), checker.reserved_quantity("P")) == (17.0, 13.0)
    # Ended, the parent holds nothing more; its piece still working is counted on its own.
    checker.end_parent("P")
    assert (checker.working_quantity(BTC, "BUY"), checker.reserved_quantity("P")) == (4.0, 0.0)
    checker.update(_report("c2.1", OrderStatus.FILLED, 4.0, 4.0))
    assert (checker.position(BTC), checker.working_quantity(BTC, "BUY")) == (6.0, 0.0)
    assert checker.refusals["position"] == 2


@pytest.mark.anyio
async def test_parents_accepted_one_after_another_are_held_to_the_position_limit_together(
    virtual_clock: VirtualClock,
) -> None:
    # The probe's case: three TWAPs of 19 BTC (~950,000 USD each) under a 1,000,000 limit were
    # all accepted, and their children refused 29 times.
    engine = Engine.default(seed=5, clock=virtual_clock, risk=RiskLimits(max_position_notional=1_000_000))
    await engine.start(num_workers=4)
    try:
        ids = [
            await engine.submit(Order(id=f"T{i}", symbol=BTC, side="BUY", type="TWAP", quantity=19.0,
                                      metadata={"duration_s": 5, "slices": 5}))
            for i in range(3)
        ]
        results = [await engine.wait(oid, timeout=60) for oid in ids]
    finally:
        await engine.stop()
    first, *others = results
    assert (first.status, first.filled_quantity) == (OrderStatus.FILLED, 19.0)
    assert all(c.status is not OrderStatus.REJECTED for c in first.children), first.children
    for result in others:
        assert result.status is OrderStatus.REJECTED and result.children == []
        assert result.reason.startswith("position ")
        assert result.reason.endswith("> max 1,000,000 USD (BTC/USD BUY: 0 filled, 19 working, 19 this order)")
    risk = engine.risk
    assert risk is not None
    assert risk.refusals == {n: 2 if n == "position" else 0 for n in LIMIT_NAMES}
    assert (risk.position(BTC), risk.working_quantity(BTC, "BUY")) == (pytest.approx(19.0), 0.0)


@pytest.mark.anyio
async def test_a_working_twap_holds_its_unfilled_quantity_against_other_orders(virtual_clock: VirtualClock) -> None:
    limits = RiskLimits(max_position_notional=60_000)  # about 1.2 BTC
    engine = Engine.default(seed=1, clock=virtual_clock, risk=limits)
    await engine.start(num_workers=2)
    try:
        twap = Order(id="tw", symbol=BTC, side="BUY", type="TWAP", quantity=1.0,
                     metadata={"duration_s": 40, "slices": 4})
        await engine.submit(twap)
        with anyio.fail_after(60):
            while engine.status("tw").filled_quantity < 0.25:
                await anyio.sleep(0.1)
        other = await engine.wait(await engine.submit(market("other", 0.9)), timeout=5)
        parent = await engine.wait("tw", timeout=600)
        after = await engine.wait(await engine.submit(market("after", 0.1)), timeout=5)
    finally:
        await engine.stop()
    assert other.status is OrderStatus.REJECTED
    assert other.reason.startswith("position ")
    assert other.reason.endswith("> max 60,000 USD (BTC/USD BUY: 0.25 filled, 0.75 working, 0.9 this order)")
    assert (parent.status, parent.filled_quantity) == (OrderStatus.FILLED, 1.0)
    assert all(c.status is not OrderStatus.REJECTED for c in parent.children)
    assert after.status is OrderStatus.FILLED  # the TWAP ended: nothing is reserved for it now


@pytest.mark.anyio
async def test_a_parent_whose_children_are_refused_ends_naming_the_refusal(virtual_clock: VirtualClock) -> None:
    engine = Engine.default(seed=1, clock=virtual_clock, risk=RiskLimits(max_position_notional=60_000))
    await engine.start(num_workers=2)
    try:
        twap = Order(id="tw", symbol=BTC, side="BUY", type="TWAP", quantity=1.0,
                     metadata={"duration_s": 40, "slices": 4})
        await engine.submit(twap)
        with anyio.fail_after(60):
            while engine.status("tw").filled_quantity < 0.25:
                await anyio.sleep(0.1)
        # The operator tightens the limit under the working parent: its next children are refused.
        engine.set_risk_limits(RiskLimits(max_position_notional=20_000))
        parent = await engine.wait("tw", timeout=600)
    finally:
        await engine.stop()
    refused = [c for c in parent.children if c.status is OrderStatus.REJECTED]
    assert refused and all(c.reason.startswith("position ") for c in refused)
    assert parent.status is OrderStatus.EXPIRED
    assert parent.reason == (
        f"window ended with 0.75 of 1 unfilled after 3 tries to complete; children refused: {refused[-1].reason}"
    )


@pytest.mark.anyio
async def test_a_twap_child_over_the_rate_is_refused(virtual_clock: VirtualClock) -> None:
    engine = Engine.default(seed=1, clock=virtual_clock, risk=RiskLimits(max_orders_per_s=2))
    await engine.start(num_workers=2)
    try:
        for i in range(2):
            await engine.wait(await engine.submit(market(f"m{i}", 0.01)), timeout=5)
        twap = Order(id="tw", symbol=BTC, side="BUY", type="TWAP", quantity=0.1,
                     metadata={"duration_s": 10, "slices": 2})
        await engine.submit(twap)
        parent = await engine.wait("tw", timeout=600)
    finally:
        await engine.stop()
    first = parent.children[0]
    assert first.status is OrderStatus.REJECTED
    assert first.reason == "order rate 3 in the last second > max 2/s"


@pytest.mark.anyio
async def test_risk_none_switches_the_engine_limits_off(virtual_clock: VirtualClock) -> None:
    engine = Engine.default(seed=1, clock=virtual_clock, risk=None)
    assert engine.risk is None
    preview = engine.check_risk(limit("far", 1.0, 60_000.0))
    assert preview.reason is None and preview.notional == 60_000.0


@pytest.mark.anyio
async def test_the_demo_flow_runs_under_the_default_limits_without_a_refusal(virtual_clock: VirtualClock) -> None:
    from tui.demo import PARENT_EVERY_S, demo_order

    engine = Engine.default(seed=3, clock=virtual_clock)
    rng = random.Random(3)
    symbols = [BTC, "ETH/USD", "SOL/USD"]
    await engine.start(num_workers=4)
    try:
        n, next_parent, start = 0, virtual_clock.now(), virtual_clock.now()
        while virtual_clock.now() < start + 5.0:  # 1,000 orders a second, as --demo aims for
            symbol = symbols[0] if rng.random() < 0.7 else rng.choice(symbols)
            book = engine.smart.merged_book(symbol, depth=1)
            for _ in range(10):
                parent = virtual_clock.now() >= next_parent
                if parent:
                    next_parent += PARENT_EVERY_S
                n += 1
                await engine.submit(demo_order(rng, f"demo-{n}", book.mid if book else None, symbol, parent=parent))
            await anyio.sleep(0.01)
        await anyio.sleep(1.0)
    finally:
        await engine.stop(drain=True)
    assert n >= 5_000
    assert engine.risk is not None and engine.risk.refusals == dict.fromkeys(LIMIT_NAMES, 0)


# -- the file ----------------------------------------------------------------------------------


def test_first_run_writes_the_commented_defaults_and_reads_them_back(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "risk.toml"
    limits, problem = load_or_create(path)
    assert (limits, problem) == (RiskLimits(), None)
    text = path.read_text()
    assert "# Largest notional of one order." in text and '[symbols."BTC/USD"]' in text
    assert load(path) == RiskLimits()
    assert [p.name for p in path.parent.iterdir()] == ["risk.toml"]  # no temporary left


def test_an_edited_file_is_read_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "risk.toml"
    path.write_text('price_band_pct = 2.5\nmax_open_orders = 10\n[symbols."DOGE/USD"]\nmax_quantity = 1e6\n')
    limits, problem = load_or_create(path)
    assert problem is None
    assert (limits.price_band_pct, limits.max_open_orders, limits.max_orders_per_s) == (2.5, 10, 2_000)
    assert dict(limits.symbols) == {"DOGE/USD": SymbolLimits(max_quantity=1e6)}
    with pytest.raises(FileExistsError):
        write_default(path)
    assert path.read_text().startswith("price_band_pct = 2.5")


BAD_FILES = {
    "unknown key": ("max_notional = 5\n", "unknown key 'max_notional' (accepted: confirm_share, max_open_orders"),
    "wrong type": ('max_open_orders = "many"\n', "max_open_orders must be a whole number >= 1, got 'many'"),
    "float count": ("max_orders_per_s = 2000.5\n", "max_orders_per_s must be a whole number >= 1, got 2000.5"),
    "negative": ("max_order_notional = -5\n", "max_order_notional must be a finite number > 0, got -5"),
    "not finite": ("max_position_notional = inf\n", "max_position_notional must be a finite number > 0, got inf"),
    "nan": ("price_band_pct = nan\n", "price_band_pct must be a finite number > 0, got nan"),
    "band over 100": ("price_band_pct = 150\n", "price_band_pct must be > 0 and <= 100, got 150"),
    "share over 1": ("confirm_share = 2\n", "confirm_share must be > 0 and <= 1, got 2"),
    "boolean": ("max_open_orders = true\n", "max_open_orders must be a whole number >= 1, got True"),
    "symbol value": ('[symbols."BTC/USD"]\nmax_quantity = -1\n',
                     'symbols."BTC/USD".max_quantity must be a finite number > 0, got -1'),
    "symbol key": ('[symbols."BTC/USD"]\nmax_qty = 1\n',
                   'unknown key symbols."BTC/USD".max_qty (accepted: max_quantity, max_notional, max_position)'),
    "symbol not a table": ("symbols = 5\n", "symbols must be tables like [symbols.\"BTC/USD\"], got 5"),
    "not toml": ("max_open_orders = = 3\n", "is not valid TOML: "),
    "not utf-8": (b"max_open_orders = 1 # \xff\n", "is not UTF-8 text: invalid start byte at byte 22"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_is_one_clear_error_naming_the_file_and_the_key(tmp_path: Path, case: str) -> None:
    content, message = BAD_FILES[case]
    path = tmp_path / "risk.toml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigurationError) as caught:
        load(path)
    text = str(caught.value)
    assert str(path) in text
    assert message in text
    # The desk's form: the built-in defaults, the same message, the file untouched.
    limits, problem = load_or_create(path)
    assert limits == RiskLimits()
    assert problem is not None and message in problem and problem.endswith("until it is fixed")
    assert path.read_bytes() == (content if isinstance(content, bytes) else content.encode())


def test_a_directory_is_refused_saying_what_it_is(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load(tmp_path)
    assert str(caught.value) == f"cannot read the risk limits file {tmp_path}: it is a directory, not a regular file"


def test_a_file_over_the_size_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "risk.toml"
    # Valid TOML (a comment) one byte over the cap: the size alone refuses it.
    path.write_bytes(b"#" * risk_module.MAX_FILE_BYTES + b"\n")
    with pytest.raises(ConfigurationError) as caught:
        load(path)
    assert str(caught.value) == (
        f"cannot read the risk limits file {path}: it is 1,048,577 bytes, over the 1,048,576 (1 MiB) "
        "a limits file may be"
    )
    limits, problem = load_or_create(path)
    assert limits == RiskLimits()
    assert problem == f"{caught.value}; using the built-in risk limits until it is fixed"
    path.write_bytes(b"#" * (risk_module.MAX_FILE_BYTES - 1) + b"\n")  # the cap itself is read
    assert load(path) == RiskLimits()


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs a character device")
def test_a_device_is_refused_not_read() -> None:
    # /dev/zero would be read until memory ran out; /dev/null reads as an empty file.
    for device in ("/dev/null", "/dev/zero"):
        with pytest.raises(ConfigurationError) as caught:
            load(device)
        assert str(caught.value) == (
            f"cannot read the risk limits file {device}: it is a character device, not a regular file"
        )
        limits, problem = load_or_create(device)
        assert limits == RiskLimits() and problem is not None and problem.startswith(str(caught.value))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "risk.toml"
    os.mkfifo(path)

    def writer() -> None:  # would feed a reader a valid file, had it opened the pipe
        with open(path, "w") as pipe:
            pipe.write("max_open_orders = 3\n")

    feeding = threading.Thread(target=writer, daemon=True)
    feeding.start()
    try:
        with pytest.raises(ConfigurationError) as caught:
            load(path)
        assert str(caught.value) == (
            f"cannot read the risk limits file {path}: it is a FIFO (named pipe), not a regular file"
        )
        assert load_or_create(path)[0] == RiskLimits()
    finally:
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer finish
        feeding.join()
        os.close(reader)


def test_a_failed_first_write_leaves_no_temporary_file_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(risk_module.os, "fsync", disk_full)
    path = tmp_path / "risk.toml"
    limits, problem = load_or_create(path)
    assert limits == RiskLimits()
    assert problem == (
        f"could not write the default risk limits to {path} (No space left on device); "
        "using the built-in defaults"
    )
    assert os.listdir(tmp_path) == []


def test_without_hard_links_the_first_write_still_lands_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(src: Any, dst: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(risk_module.os, "link", unsupported)
    path = tmp_path / "risk.toml"
    assert load_or_create(path) == (RiskLimits(), None)
    assert load(path) == RiskLimits()
    assert os.listdir(tmp_path) == ["risk.toml"]
    with pytest.raises(FileExistsError):
        write_default(path)  # and still never over an existing file
    assert os.listdir(tmp_path) == ["risk.toml"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_open_orders": 0}, "max_open_orders must be a whole number >= 1, got 0"),
        ({"symbols": {BTC: 50}}, "symbols['BTC/USD'] must be a SymbolLimits, got 50"),
        ({"confirm_share": 0}, "confirm_share must be a finite number > 0, got 0"),
    ],
)
def test_limits_built_in_code_say_what_is_wrong(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RiskLimits(**kwargs)
    assert str(caught.value) == message


def test_the_bench_states_the_limits_each_workload_ran_under() -> None:
    from tui.bench import run

    doc = run(["sync_router", "twap_hour"], quick=True)
    by_name = {w["name"]: w for w in doc["workloads"]}
    assert by_name["sync_router"]["risk_limits"] == "none"  # the bare router, as the document builds it
    assert by_name["twap_hour"]["risk_limits"] == RiskLimits().describe()
    assert by_name["twap_hour"]["status"] == "FILLED"  # and the defaults refused none of it
