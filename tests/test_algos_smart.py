"""SMART (adaptive) through the real path, in virtual time: urgency, deadline, reasons, cancel."""

from __future__ import annotations

import anyio
import pytest
from pydantic import ValidationError

from engine import Engine, Order, OrderStatus, TransientVenueError, VirtualClock
from engine.scheduling.algos.adaptive import URGENCY
from tests.algo_support import BTC, one_venue_engine, parent_fills, quiet_venue, run_virtual
from tests.conftest import VIRTUAL_START, virtual_anyio_backend


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> tuple[str, dict]:
    return virtual_anyio_backend(virtual_clock)


def smart(qty: float, urgency: str | None = None, oid: str = "smart-1", side: str = "buy",
          price: float | None = None, **meta) -> Order:
    if urgency is not None:
        meta["urgency"] = urgency
    return Order(id=oid, symbol=BTC, side=side, type="SMART", quantity=qty, price=price, metadata=meta)


def venue_open_orders(venue) -> list:
    while True:
        try:
            return venue.open_orders()
        except TransientVenueError:  # thrift's injected errors: ask again
            continue


def open_children(engine: Engine, parent_id: str) -> list[tuple[str, str]]:
    """(venue, child id) of every order a venue still works for the parent."""
    return [
        (name, o.order_id)
        for name, venue in engine.venues.items()
        for o in venue_open_orders(venue)
        if o.order_id.startswith(parent_id[:16])
    ]


def run_on_default_market(seed: int, order: Order) -> tuple[float, float, float, list[str]]:
    """(time to fill, average price, slippage bps, child reasons) on Engine.default(seed)."""
    clock = VirtualClock(start=VIRTUAL_START)

    async def main() -> tuple[float, float, float, list[str]]:
        engine = Engine.default(seed=seed, clock=clock)
        await engine.start()
        oid = await engine.submit(order)
        result = await engine.wait(oid, timeout=3600)
        await engine.stop()
        assert result.status is OrderStatus.FILLED and result.filled_quantity == order.quantity
        state = engine.scheduler.parent(oid)
        reasons = [state.child_reasons[c] for c in state.children]
        return state.done_at - state.created_at, result.average_price, result.detail["slippage_bps"], reasons

    return run_virtual(clock, main)


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_high_urgency_fills_faster_and_at_a_worse_price_than_low(side: str) -> None:
    # Same seeded markets for both. Faster on every one; the price is worse on
    # average: a random-walk market can run away from a patient order on one seed.
    seeds = range(1, 7)
    runs = {u: [run_on_default_market(s, smart(2.0, u, side=side, duration_s=600)) for s in seeds]
            for u in ("low", "high")}
    for (t_low, *_), (t_high, *_) in zip(runs["low"], runs["high"]):
        assert t_high < t_low
    mean_slip = {u: sum(r[2] for r in runs[u]) / len(seeds) for u in runs}
    assert mean_slip["high"] > mean_slip["low"] + 0.5  # bps: high pays the spread
    sign = 1 if side == "buy" else -1
    mean_px = {u: sum(r[1] for r in runs[u]) / len(seeds) for u in runs}
    assert sign * mean_px["high"] > sign * mean_px["low"]  # a buyer pays more, a seller gets less
    for u, why in (("low", [w for r in runs["low"] for w in r[3]]), ("high", [w for r in runs["high"] for w in r[3]])):
        assert why and all(w.startswith(f"{u} ") and "a=" in w for w in why)
    assert any(" rest " in w for r in runs["low"] for w in r[3])
    assert all(" cross " in w for r in runs["high"] for w in r[3])


@pytest.mark.anyio
async def test_turns_aggressive_as_the_deadline_nears(virtual_clock: VirtualClock) -> None:
    # Nobody trades and the market stands still: resting never fills, only crossing does.
    venue = quiet_venue(virtual_clock, taker_rate_per_s=0.0, volatility_bps=0.0)
    engine = one_venue_engine(virtual_clock, venue)
    await engine.start()
    t0 = virtual_clock.now()
    oid = await engine.submit(smart(0.5, "low", duration_s=60))
    await anyio.sleep(20)
    early = engine.status(oid)
    assert early.filled_quantity == 0 and early.detail["aggression"] < 0.5
    await anyio.sleep(25)
    late = engine.status(oid)  # at +45 s, three quarters of the time
    assert late.filled_quantity == 0
    assert "deadline pressure at" in late.detail["last_reason"]
    assert "volatility" not in late.detail["last_reason"]  # a still market; our own bid is not the market
    result = await engine.wait(oid, timeout=600)
    await engine.stop()
    assert result.status is OrderStatus.FILLED
    fills = parent_fills(engine, oid)
    assert t0 + 30 < fills[0].timestamp <= t0 + 60  # pressure from half the time; crossed by the deadline
    state = engine.scheduler.parent(oid)
    reasons = list(state.child_reasons.values())
    assert "deadline" in reasons[-1] and "cross" in reasons[-1]
    assert any("reprice" in r or "unfilled reprices" in r for r in reasons)
    cancels = [d for d in state.decisions if d.action == "cancel"]
    assert cancels and all(d.reason.startswith("low") and "a=" in d.reason for d in cancels)  # each says why
    assert len(state.decisions) == len(state.children) + len(cancels)
    prices = [c.price for c in state.children.values() if c.price is not None]
    assert prices == sorted(prices)  # a buyer only ever improves


@pytest.mark.anyio
async def test_limit_price_is_never_passed_and_expiry_reports_the_rest(virtual_clock: VirtualClock) -> None:
    venue = quiet_venue(virtual_clock, taker_rate_per_s=0.0, volatility_bps=0.0)
    engine = one_venue_engine(virtual_clock, venue)
    await engine.start()
    limit = venue.book(BTC).best_bid - 50  # under the bid: a buy can only rest there
    oid = await engine.submit(smart(0.5, "high", price=limit, duration_s=10))
    result = await engine.wait(oid, timeout=600)
    await engine.stop()
    assert result.status is OrderStatus.EXPIRED
    assert "0.5 of 0.5 unfilled at the limit" in result.reason
    state = engine.scheduler.parent(oid)
    assert all(c.price is None or c.price <= limit for c in state.children.values())
    assert venue.open_orders(BTC) == []


@pytest.mark.anyio
@pytest.mark.parametrize("urgency", ["low", "normal"])
async def test_cancel_mid_flight_leaves_no_child_working_at_any_venue(
    virtual_clock: VirtualClock, urgency: str
) -> None:
    engine = Engine.default(seed=3, clock=virtual_clock)
    await engine.start()
    oid = await engine.submit(smart(40.0, urgency, oid=f"smart-{urgency}", duration_s=3600))
    await anyio.sleep(12)
    working = engine.status(oid)
    assert not working.is_final and open_children(engine, oid)
    await engine.cancel(oid)
    result = await engine.wait(oid, timeout=60)
    assert result.status is OrderStatus.CANCELED
    assert result.filled_quantity < 40
    assert open_children(engine, oid) == []
    assert all(c.status.is_final for c in result.children)
    await anyio.sleep(30)
    assert engine.status(oid).filled_quantity == result.filled_quantity
    assert open_children(engine, oid) == []
    await engine.stop()


@pytest.mark.anyio
async def test_working_quantity_never_exceeds_what_is_left(virtual_clock: VirtualClock) -> None:
    engine = Engine.default(seed=4, clock=virtual_clock)
    await engine.start()
    oid = await engine.submit(smart(3.0, "normal", duration_s=120))
    worst = 0.0
    while not engine.status(oid).is_final:
        state = engine.scheduler.parent(oid)
        if state is None:  # still queued at the optimizer
            await anyio.sleep(0.1)
            continue
        shown = sum(
            o.quantity - o.filled_quantity
            for venue in engine.venues.values()
            for o in venue_open_orders(venue)
            if engine.scheduler.owns_child(o.order_id) == oid
        )
        worst = max(worst, shown - state.lots_to_quantity(state.remaining_lots))
        await anyio.sleep(0.5)
    await engine.stop()
    assert worst <= 1e-9


@pytest.mark.parametrize(
    ("meta", "words"),
    [
        ({"urgency": "urgent"}, "low, normal, high"),
        ({"urgency": 3}, "urgency"),
        ({"duration_s": 0}, "duration_s"),
        ({"duration_s": 60, "slices": 3}, "not accepted for SMART"),
    ],
)
def test_bad_parameters_are_refused_when_the_order_is_built(meta: dict, words: str) -> None:
    with pytest.raises(ValidationError) as err:
        Order(id="x", symbol=BTC, side="buy", type="SMART", quantity=1.0, metadata=meta)
    assert "metadata" in str(err.value) and words in str(err.value)


def test_urgency_table_orders_the_aggression() -> None:
    low, normal, high = URGENCY["low"], URGENCY["normal"], URGENCY["high"]
    assert low.base < normal.base < high.base == 1.0
    assert low.pressure_from > normal.pressure_from


@pytest.mark.anyio
async def test_engine_stop_cancels_working_parents_and_their_children(virtual_clock: VirtualClock) -> None:
    engine = Engine.default(seed=3, clock=virtual_clock)
    await engine.start()
    oids = [
        await engine.submit(smart(40.0, "low", oid="stop-smart", duration_s=3600)),
        await engine.submit(Order(id="stop-ice", symbol=BTC, side="buy", type="ICEBERG", quantity=40.0,
                                  price=engine.smart.merged_book(BTC).best_bid, metadata={"display_size": 1.0})),
    ]
    await anyio.sleep(12)
    assert any(open_children(engine, oid) for oid in oids)
    await engine.stop()
    for oid in oids:
        assert engine.status(oid).status is OrderStatus.CANCELED
        assert open_children(engine, oid) == []
