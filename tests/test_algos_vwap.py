"""VWAP through the real path, in virtual time: the participation cap, the profile, the benchmark."""

from __future__ import annotations

import math

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from engine import Engine, Order, OrderStatus, RiskLimits, VirtualClock
from engine.scheduling.algos.vwap import SUBSTEPS, u_shape
from tests.algo_support import BTC, ScriptedVenue, one_venue_engine, parent_fills, quiet_venue, run_virtual
from tests.conftest import VIRTUAL_START, virtual_anyio_backend


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> tuple[str, dict]:
    return virtual_anyio_backend(virtual_clock)


def vwap_order(qty: float, oid: str = "vwap-1", symbol: str = BTC, price: float | None = None, **meta) -> Order:
    return Order(id=oid, symbol=symbol, side="buy", type="VWAP", quantity=qty, price=price, metadata=meta)


def per_bucket(times_qty: list[tuple[float, float]], start: float, bucket_s: float, n: int) -> list[float]:
    out = [0.0] * n
    for t, q in times_qty:
        if start <= t < start + n * bucket_s:
            out[int((t - start) / bucket_s)] += q
    return out


@settings(max_examples=25)
@given(
    taker_rate=st.floats(0.5, 4.0),
    taker_notional=st.floats(2_000.0, 20_000.0),
    cap=st.floats(0.02, 0.3),
    seed=st.integers(0, 10_000),
)
def test_participation_never_above_the_cap_in_any_bucket(
    taker_rate: float, taker_notional: float, cap: float, seed: int
) -> None:
    clock = VirtualClock(start=VIRTUAL_START)
    venue = quiet_venue(clock, seed=seed, taker_rate_per_s=taker_rate, taker_mean_notional=taker_notional)
    buckets, bucket_s = 6, 10.0

    async def main() -> tuple[float, list[tuple[float, float]], list[tuple[float, float]]]:
        engine = one_venue_engine(clock, venue, seed=seed)
        await engine.start()
        start = clock.now()
        # More than the cap lets it trade in a minute (takers print ~100 BTC a minute at
        # most here, and 0.3 of that is ~30), yet inside the default risk limits.
        oid = await engine.submit(vwap_order(45.0, duration_s=60, buckets=buckets, max_participation=cap))
        result = await engine.wait(oid, timeout=600)
        await engine.stop()
        assert result.status is OrderStatus.EXPIRED
        assert f"participation cap {cap:.0%}" in result.reason
        ours = [(f.timestamp, f.quantity) for f in parent_fills(engine, oid)]
        tape = [(t.ts_event, t.quantity) for t in venue.trades(BTC, start - 1e-6)]
        return start, ours, tape

    start, ours, tape = run_virtual(clock, main)
    ours_b = per_bucket(ours, start, bucket_s, buckets)
    market_b = per_bucket(tape, start, bucket_s, buckets)
    assert sum(ours_b) > 0  # it did trade
    for b in range(buckets):
        assert ours_b[b] <= cap * market_b[b] + 1e-9, (b, ours_b, market_b, cap)


@pytest.mark.anyio
@pytest.mark.parametrize("profile", ["u_shape", [1, 2, 3, 4, 5, 5, 4, 3, 2, 1]])
async def test_realized_curve_follows_the_profile_on_a_calm_market(virtual_clock: VirtualClock, profile) -> None:
    venue = quiet_venue(virtual_clock, level_notional=1_000_000.0, volatility_bps=0.2)
    engine = one_venue_engine(virtual_clock, venue)
    await engine.start()
    start = virtual_clock.now()
    oid = await engine.submit(vwap_order(3.0, duration_s=600, buckets=10, profile=profile))
    result = await engine.wait(oid, timeout=3600)
    await engine.stop()
    assert result.status is OrderStatus.FILLED and result.filled_quantity == 3.0
    weights = u_shape(10) if profile == "u_shape" else [float(w) for w in profile]
    fills = parent_fills(engine, oid)
    for b in range(1, 11):
        end = start + b * 60
        realized = sum(f.quantity for f in fills if f.timestamp < end) / 3.0
        target = sum(weights[:b]) / sum(weights)
        assert abs(realized - target) <= 0.02, (b, realized, target)
    assert result.detail["schedule_deviation"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.anyio
async def test_reports_the_interval_vwap_of_the_market(virtual_clock: VirtualClock) -> None:
    venue = quiet_venue(virtual_clock, level_notional=1_000_000.0)
    engine = one_venue_engine(virtual_clock, venue)
    await engine.start()
    oid = await engine.submit(vwap_order(1.0, duration_s=120, buckets=4))
    result = await engine.wait(oid, timeout=3600)
    await engine.stop()
    state = engine.scheduler.parent(oid)
    tape = [t for t in venue.trades(BTC, state.created_at - 1e-6) if t.ts_event <= state.done_at]
    expected = math.fsum(t.price * t.quantity for t in tape) / math.fsum(t.quantity for t in tape)
    assert result.detail["market_vwap"] == pytest.approx(expected, rel=1e-12)
    assert result.detail["market_volume"] == pytest.approx(math.fsum(t.quantity for t in tape))
    avg = result.average_price
    assert result.detail["vwap_slippage_bps"] == pytest.approx((avg - expected) / expected * 1e4)


@pytest.mark.anyio
async def test_market_profile_follows_the_volume_traded_before(virtual_clock: VirtualClock) -> None:
    venue = ScriptedVenue(virtual_clock)
    engine = one_venue_engine(virtual_clock, venue)
    await engine.start()
    # The minute before: 1 traded in its first half, 3 in its second.
    venue.print_trade(100.0, 1.0)
    await anyio.sleep(30)
    venue.print_trade(100.0, 3.0)
    await anyio.sleep(30)
    start = virtual_clock.now()
    oid = await engine.submit(vwap_order(4.0, symbol=venue.SYMBOL, duration_s=60, buckets=2, profile="market"))
    result = await engine.wait(oid, timeout=600)
    await engine.stop()
    assert result.status is OrderStatus.FILLED
    fills = parent_fills(engine, oid)
    first = sum(f.quantity for f in fills if f.timestamp < start + 30)
    assert first == pytest.approx(1.0)  # a quarter, as the market traded
    assert result.detail["profile"] == "market"
    assert result.detail["profile_note"] == "market profile from 4 traded in the previous 60 s"


@pytest.mark.anyio
async def test_market_profile_without_history_falls_back_and_says_so(virtual_clock: VirtualClock) -> None:
    venue = ScriptedVenue(virtual_clock)
    engine = one_venue_engine(virtual_clock, venue)
    await engine.start()
    oid = await engine.submit(vwap_order(1.0, symbol=venue.SYMBOL, duration_s=60, buckets=2, profile="market"))
    await anyio.sleep(1)
    state = engine.scheduler.parent(oid)
    result = await engine.wait(oid, timeout=600)
    await engine.stop()
    assert result.status is OrderStatus.FILLED
    assert state.schedule[SUBSTEPS - 1][1] == pytest.approx(0.5)  # u_shape of 2 buckets: halves
    assert "no trades in the window before; using u_shape" in result.detail["profile_note"]


@pytest.mark.anyio
async def test_every_child_has_a_reason_and_default_engine_fills(virtual_clock: VirtualClock) -> None:
    engine = Engine.default(seed=1, clock=virtual_clock)
    await engine.start()
    oid = await engine.submit(vwap_order(5.0, duration_s=600))
    result = await engine.wait(oid, timeout=3600)
    await engine.stop()
    assert result.status is OrderStatus.FILLED and result.filled_quantity == 5.0
    state = engine.scheduler.parent(oid)
    assert state.children and all(state.child_reasons.get(c) for c in state.children)
    assert all(r.startswith("bucket ") for r in state.child_reasons.values())


@pytest.mark.parametrize(
    ("meta", "words"),
    [
        ({"duration_s": 60, "max_participation": 0}, "max_participation"),
        ({"duration_s": 60, "max_participation": 1.5}, "(0, 1]"),
        ({"duration_s": 60, "profile": "sideways"}, "u_shape, market"),
        ({"duration_s": 60, "profile": [0, 0]}, "sum to a positive number"),
        ({"duration_s": 60, "profile": [1, 2], "buckets": 3}, "buckets"),
        ({"duration_s": 60, "buckets": 0}, "buckets"),
        ({"duration_s": 60, "slices": 4}, "not accepted for VWAP"),
    ],
)
def test_bad_parameters_are_refused_when_the_order_is_built(meta: dict, words: str) -> None:
    with pytest.raises(ValidationError) as err:
        vwap_order(1.0, **meta)
    assert "metadata" in str(err.value) and words in str(err.value)


@pytest.mark.anyio
async def test_a_started_parent_is_new_before_its_first_child(virtual_clock: VirtualClock) -> None:
    # A participation cap on a market where nobody else trades: the VWAP may not send
    # a child yet. Accepted and working on the scheduler, it is NEW meanwhile, not
    # PENDING_NEW (which reads as stuck on the desk's blotter).
    engine = one_venue_engine(virtual_clock, quiet_venue(virtual_clock, taker_rate_per_s=0.0))
    await engine.start()
    oid = await engine.submit(vwap_order(1.0, duration_s=120, buckets=1, max_participation=0.1))
    await anyio.sleep(60)
    early = engine.status(oid)
    assert (early.status, early.children, early.filled_quantity) == (OrderStatus.NEW, [], 0.0)
    await engine.cancel(oid)
    assert (await engine.wait(oid, timeout=10)).status is OrderStatus.CANCELED
    await engine.stop()


@pytest.mark.anyio
async def test_a_vwap_whose_children_are_refused_ends_naming_the_refusal(virtual_clock: VirtualClock) -> None:
    engine = Engine.default(seed=1, clock=virtual_clock, risk=RiskLimits(max_position_notional=60_000))
    await engine.start()
    oid = await engine.submit(vwap_order(1.0, duration_s=40, buckets=4))
    with anyio.fail_after(60):
        while engine.status(oid).filled_quantity <= 0:
            await anyio.sleep(0.1)
    # The operator tightens the limit under the working parent: its next children are refused.
    engine.set_risk_limits(RiskLimits(max_position_notional=1_000))
    result = await engine.wait(oid, timeout=600)
    await engine.stop()
    refused = [c for c in result.children if c.status is OrderStatus.REJECTED]
    assert refused and all(c.reason.startswith("position ") for c in refused)
    assert result.status is OrderStatus.EXPIRED
    left = 1.0 - result.filled_quantity
    assert result.reason == (
        f"window ended with {left:g} of 1 unfilled; children refused: {refused[-1].reason}"
    )
