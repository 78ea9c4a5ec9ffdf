"""TWAP through the real path (Engine -> optimizer -> scheduler -> routers -> venue), in virtual time."""

from __future__ import annotations

import asyncio
import math

import anyio
import pytest
from pydantic import ValidationError

from engine import Engine, Order, OrderStatus, VirtualClock
from engine.scheduling import scheduler
from engine.scheduling.algos import twap
from engine.scheduling.algos.twap import split_lots
from tests.algo_support import BTC, one_venue_engine, parent_fills, quiet_venue
from tests.conftest import virtual_anyio_backend


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> tuple[str, dict]:
    return virtual_anyio_backend(virtual_clock)


def twap_order(qty: float = 1.0, oid: str = "twap-1", side: str = "buy", price: float | None = None, **meta) -> Order:
    return Order(id=oid, symbol=BTC, side=side, type="TWAP", quantity=qty, price=price, metadata=meta)


def children_by_time(engine: Engine, oid: str) -> list[tuple[float, float]]:
    """(first fill time at the venue, filled quantity) of each child that filled, in time order."""
    state = engine.scheduler.parent(oid)
    out = []
    for child in state.children.values():
        if child.fills:
            out.append((min(f.timestamp for f in child.fills), child.filled_quantity))
    return sorted(out)


@pytest.mark.anyio
async def test_slices_at_their_times_and_sizes(virtual_clock: VirtualClock) -> None:
    # A deep book: each slice fills in one child, at the venue, at the slice's time.
    venue = quiet_venue(virtual_clock, level_notional=2_000_000.0)
    engine = one_venue_engine(virtual_clock, venue)
    await engine.start()
    t0 = virtual_clock.now()
    oid = await engine.submit(twap_order(1.0, duration_s=600, slices=10))
    result = await engine.wait(oid, timeout=3600)
    await engine.stop()

    assert result.status is OrderStatus.FILLED
    assert result.filled_quantity == 1.0  # exactly
    kids = children_by_time(engine, oid)
    assert len(kids) == 10
    for i, (t, qty) in enumerate(kids):
        assert t0 + i * 60 <= t < t0 + i * 60 + 60  # within its own interval
        assert t == pytest.approx(t0 + i * 60, abs=1e-6)  # and, not randomized, at its start
        assert qty == pytest.approx(0.1, abs=1e-12)
    state = engine.scheduler.parent(oid)
    assert all(state.child_reasons[c] for c in state.children)
    assert state.child_reasons[next(iter(state.children))].startswith("slice 1/10: 0.1 IOC")
    detail = result.detail
    assert detail["schedule_target"] == pytest.approx(1.0)
    assert detail["schedule_deviation"] == pytest.approx(0.0)
    assert [q for _, q in state.schedule] == pytest.approx([0.1 * (i + 1) for i in range(10)])


@pytest.mark.anyio
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_randomized_slices_stay_within_bounds(virtual_clock: VirtualClock, seed: int) -> None:
    venue = quiet_venue(virtual_clock, seed=seed, level_notional=2_000_000.0)
    engine = one_venue_engine(virtual_clock, venue, seed=seed)
    await engine.start()
    t0 = virtual_clock.now()
    oid = await engine.submit(twap_order(1.0, oid=f"twap-r{seed}", duration_s=600, slices=10, randomize=True))
    result = await engine.wait(oid, timeout=3600)
    await engine.stop()

    assert result.status is OrderStatus.FILLED and result.filled_quantity == 1.0
    kids = children_by_time(engine, oid)
    assert len(kids) == 10
    interval, even = 60.0, 0.1
    lot = 0.0001
    offsets = []
    for i, (t, qty) in enumerate(kids):
        assert t0 + i * interval <= t <= t0 + (i + twap.TIME_JITTER) * interval + 1e-6
        assert even * (1 - twap.SIZE_JITTER) - lot <= qty <= even * (1 + twap.SIZE_JITTER) + lot
        offsets.append(t - (t0 + i * interval))
    sizes = {round(q, 8) for _, q in kids}
    assert len(sizes) > 3, "sizes were not randomized"
    assert sum(1 for o in offsets if o > 1.0) > 3, "times were not randomized"
    assert math.fsum(q for _, q in kids) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.anyio
@pytest.mark.parametrize("side", ["buy", "sell"])
async def test_total_filled_equals_quantity_on_the_default_market(virtual_clock: VirtualClock, side: str) -> None:
    engine = Engine.default(seed=1, clock=virtual_clock)
    await engine.start()
    oid = await engine.submit(twap_order(5.0, oid=f"twap-{side}", side=side, duration_s=600, slices=10))
    result = await engine.wait(oid, timeout=3600)
    await engine.stop()
    assert result.status is OrderStatus.FILLED
    assert result.filled_quantity == 5.0
    assert sum(f.quantity for f in result.fills) == pytest.approx(5.0, abs=1e-9)
    assert result.detail["slippage_bps"] is not None
    assert result.detail["implementation_shortfall"] is not None
    assert result.detail["market_vwap"] is not None and result.detail["market_volume"] > 0


@pytest.mark.anyio
async def test_catches_up_after_an_outage_within_bounds(virtual_clock: VirtualClock) -> None:
    venue = quiet_venue(virtual_clock, level_notional=2_000_000.0)
    engine = one_venue_engine(virtual_clock, venue)
    await engine.start()
    t0 = virtual_clock.now()
    oid = await engine.submit(twap_order(1.0, duration_s=600, slices=10))
    await anyio.sleep(90)
    venue.start_outage(150)  # down from +90 s to +240 s: the slices at 120 and 180 cannot go
    await anyio.sleep(149)
    behind = engine.status(oid)  # at +239: four slices due, two done
    assert behind.filled_quantity == pytest.approx(0.2)
    assert behind.detail["schedule_deviation"] == pytest.approx(-0.2)
    result = await engine.wait(oid, timeout=3600)
    await engine.stop()

    assert result.status is OrderStatus.FILLED and result.filled_quantity == 1.0
    fills = parent_fills(engine, oid)
    assert not [f for f in fills if t0 + 90 <= f.timestamp < t0 + 240], "filled during the outage"
    kids = children_by_time(engine, oid)
    # Bounded catch-up: no child above twice a slice, and back on schedule one slice later.
    assert max(q for _, q in kids) == pytest.approx(0.2)
    done_by = {round(t - t0): q for t, q in kids}
    assert done_by[240] == pytest.approx(0.2)  # owed 0.3 at +240: sends at most 2 slices
    assert sum(q for t, q in kids if t <= t0 + 300) == pytest.approx(0.6)  # on schedule at +300
    state = engine.scheduler.parent(oid)
    assert any(r.startswith("catch-up") for r in state.child_reasons.values())


@pytest.mark.anyio
@pytest.mark.parametrize("allow_past_end", [False, True])
async def test_end_of_window(virtual_clock: VirtualClock, allow_past_end: bool) -> None:
    venue = quiet_venue(virtual_clock, level_notional=2_000_000.0)
    engine = one_venue_engine(virtual_clock, venue)
    await engine.start()
    t0 = virtual_clock.now()
    oid = await engine.submit(twap_order(1.0, duration_s=600, slices=10, allow_past_end=allow_past_end))
    await anyio.sleep(470)
    venue.start_outage(129)  # down from +470 to +599: slices 9 and 10 cannot go
    await anyio.sleep(130)
    mid = engine.status(oid)
    assert mid.filled_quantity == pytest.approx(0.8)
    result = await engine.wait(oid, timeout=3600)
    await engine.stop()
    assert result.status is OrderStatus.FILLED and result.filled_quantity == 1.0
    kids = children_by_time(engine, oid)
    late = [(t - t0, q) for t, q in kids if t >= t0 + 599]
    if not allow_past_end:
        # Complete aggressively at the end: the whole 0.2 at once, at +600.
        assert late == [(pytest.approx(600), pytest.approx(0.2))]
        reasons = engine.scheduler.parent(oid).child_reasons.values()
        assert any(r.startswith("end of window: complete the remaining 0.2") for r in reasons)
    else:
        # Keep working past the end at the catch-up pace.
        assert late and all(t >= 600 for t, _ in late)
        assert sum(q for _, q in late) == pytest.approx(0.2)
        assert max(q for _, q in late) <= 0.2 + 1e-12


@pytest.mark.anyio
async def test_limit_out_of_reach_expires_with_the_remainder(virtual_clock: VirtualClock) -> None:
    venue = quiet_venue(virtual_clock, level_notional=2_000_000.0, volatility_bps=0.0, taker_rate_per_s=0.0)
    engine = one_venue_engine(virtual_clock, venue)
    await engine.start()
    far = 40_000.0  # a buy limit far under the market: nothing can fill
    oid = await engine.submit(twap_order(1.0, price=far, duration_s=120, slices=2))
    result = await engine.wait(oid, timeout=3600)
    await engine.stop()
    assert result.status is OrderStatus.EXPIRED
    assert result.filled_quantity == 0
    assert "1 of 1 unfilled" in result.reason and "limit 40000" in result.reason


@pytest.mark.anyio
async def test_start_time_in_the_future_waits(virtual_clock: VirtualClock) -> None:
    venue = quiet_venue(virtual_clock, level_notional=2_000_000.0)
    engine = one_venue_engine(virtual_clock, venue)
    await engine.start()
    t0 = virtual_clock.now()
    oid = await engine.submit(twap_order(0.5, start_time=t0 + 300, end_time=t0 + 600, interval_s=60))
    await anyio.sleep(299)
    assert engine.status(oid).filled_quantity == 0
    result = await engine.wait(oid, timeout=3600)
    await engine.stop()
    assert result.status is OrderStatus.FILLED
    kids = children_by_time(engine, oid)
    assert [round(t - t0) for t, _ in kids] == [300, 360, 420, 480, 540]


def test_split_lots_sums_exactly_and_respects_the_minimum() -> None:
    assert split_lots(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(split_lots(10_001, [1.1, 0.9, 1.3, 0.7])) == 10_001
    assert min(split_lots(12, [10, 1, 1], min_lots=3)) >= 3


@pytest.mark.parametrize(
    ("meta", "field_words"),
    [
        ({"duration_s": -5}, "duration_s"),
        ({"duration_s": 60, "slices": 0}, "slices"),
        ({"duration_s": 60, "interval_s": 0}, "interval_s"),
        ({"duration_s": 60, "randomize": "yes"}, "randomize"),
        ({"duration_s": 60, "urgency": "high"}, "urgency"),
        ({"slices": 3}, "duration_s"),
    ],
)
def test_bad_parameters_are_refused_when_the_order_is_built(meta: dict, field_words: str) -> None:
    with pytest.raises(ValidationError) as err:
        twap_order(1.0, **meta)
    assert "metadata" in str(err.value) and field_words in str(err.value)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the real clock, on a plain loop
@pytest.mark.anyio
async def test_real_time_twap_and_smart_run_to_the_end() -> None:
    # The desk runs algorithms in real time: the same code on RealClock, briefly.
    engine = Engine.default(seed=1)
    await engine.start()
    twap_id = await engine.submit(twap_order(0.2, oid="rt-twap", duration_s=0.6, slices=3))
    smart_id = await engine.submit(Order(id="rt-smart", symbol=BTC, side="sell", type="SMART", quantity=0.2,
                                         metadata={"urgency": "high", "duration_s": 5}))
    twap_result = await engine.wait(twap_id, timeout=30)
    smart_result = await engine.wait(smart_id, timeout=30)
    await engine.stop()
    assert twap_result.status is OrderStatus.FILLED and twap_result.filled_quantity == 0.2
    assert len(twap_result.children) >= 3
    assert smart_result.status is OrderStatus.FILLED


@pytest.mark.anyio
async def test_parents_due_together_let_the_loop_run_between_their_decisions(
    virtual_clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under load each decision reads thousands of trades: several parents due at the same
    # moment must not hold the event loop (and an operator's key) for all of them at once.
    turns = [0]  # loop turns taken since the first decision
    seen: list[int] = []
    on_timer = twap.TwapAlgorithm.on_timer

    def recording(self, ctx):
        seen.append(turns[0])
        # Runs as soon as the loop gets a turn: before the next decision only if the
        # scheduler gave it one.
        asyncio.get_running_loop().call_soon(lambda: turns.__setitem__(0, turns[0] + 1))
        return on_timer(self, ctx)

    monkeypatch.setattr(twap.TwapAlgorithm, "on_timer", recording)
    monkeypatch.setattr(scheduler, "TURN_AFTER_S", 0.0)  # a turn after every decision (else ~5 ms of them)
    venue = quiet_venue(virtual_clock, level_notional=2_000_000.0)  # answers without awaiting
    engine = one_venue_engine(virtual_clock, venue)
    await engine.start()
    ids = [await engine.submit(twap_order(0.3, oid=f"twap-{i}", duration_s=90, slices=3)) for i in range(3)]
    results = [await engine.wait(oid, timeout=600) for oid in ids]
    await engine.stop()

    assert all(r.status is OrderStatus.FILLED for r in results)
    assert len(seen) >= 6  # slices 2 and 3 of each parent, due at the same moments
    assert len(set(seen)) == len(seen), seen  # never two decisions in one turn of the loop
