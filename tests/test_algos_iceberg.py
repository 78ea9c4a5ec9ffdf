"""ICEBERG through the real path, in virtual time: what the venue shows, never the algorithm's belief."""

from __future__ import annotations

import anyio
import pytest
from pydantic import ValidationError

from engine import Engine, Order, OrderStatus, TransientVenueError, VirtualClock
from tests.algo_support import BTC, one_venue_engine, quiet_venue
from tests.conftest import virtual_anyio_backend


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> tuple[str, dict]:
    return virtual_anyio_backend(virtual_clock)


class VisibleWatch:
    """After every order update the router sees (submits, fills, cancels), asks each venue
    what it has working for the parent: the venue's open orders, not the algorithm's view."""

    def __init__(self, engine: Engine, parent_id: str) -> None:
        self.engine = engine
        self.parent_id = parent_id
        self.max_per_venue = 0.0
        self.max_total = 0.0
        self.samples = 0
        engine.router.add_order_listener(self.check)

    def visible(self) -> dict[str, float]:
        out = {}
        for name, venue in self.engine.venues.items():
            while True:
                try:
                    orders = venue.open_orders(BTC)
                    break
                except TransientVenueError:  # thrift's injected errors: ask again
                    continue
            out[name] = sum(
                o.quantity - o.filled_quantity
                for o in orders
                if self.engine.scheduler.owns_child(o.order_id) == self.parent_id
            )
        return out

    def check(self, _result: object = None) -> None:
        shown = self.visible()
        self.samples += 1
        self.max_per_venue = max(self.max_per_venue, *shown.values())
        self.max_total = max(self.max_total, sum(shown.values()))


def iceberg(qty: float, price: float, display: float, oid: str = "ice-1", variance: float | None = None,
            side: str = "buy") -> Order:
    meta: dict = {"display_size": display}
    if variance is not None:
        meta["display_variance"] = variance
    return Order(id=oid, symbol=BTC, side=side, type="ICEBERG", quantity=qty, price=price, metadata=meta)


@pytest.mark.anyio
async def test_visible_quantity_at_the_venue_never_above_the_display(virtual_clock: VirtualClock) -> None:
    venue = quiet_venue(virtual_clock, taker_rate_per_s=6.0, volatility_bps=0.3)
    engine = one_venue_engine(virtual_clock, venue)
    await engine.start()
    bid = venue.book(BTC).best_bid
    watch = VisibleWatch(engine, "ice-1")
    oid = await engine.submit(iceberg(2.0, bid, display=0.3, variance=0.4))
    # Also look between events, every half second of market time.
    while not engine.status(oid).is_final:
        watch.check()
        await anyio.sleep(0.5)
    result = await engine.wait(oid, timeout=3600)
    await engine.stop()

    assert result.status is OrderStatus.FILLED and result.filled_quantity == 2.0
    assert watch.samples > 50
    assert 0 < watch.max_total <= 0.3 + 1e-12
    state = engine.scheduler.parent(oid)
    sizes = [c.quantity for c in state.children.values()]
    assert max(sizes) <= 0.3 and len(set(sizes)) > 2  # varied refills, none above the display
    assert state.refills == len(state.children) > 6
    assert all(r for r in state.child_reasons.values())


@pytest.mark.anyio
async def test_visible_at_any_venue_of_the_default_market(virtual_clock: VirtualClock) -> None:
    engine = Engine.default(seed=1, clock=virtual_clock)
    await engine.start()
    book = engine.smart.merged_book(BTC)
    watch = VisibleWatch(engine, "ice-2")
    oid = await engine.submit(iceberg(1.5, book.best_bid, display=0.25, oid="ice-2", side="buy"))
    while not engine.status(oid).is_final:
        watch.check()
        await anyio.sleep(0.5)
    result = await engine.wait(oid, timeout=3600)
    await engine.stop()
    assert result.status is OrderStatus.FILLED
    assert 0 < watch.max_total <= 0.25 + 1e-12


@pytest.mark.anyio
async def test_status_shows_hidden_remainder_and_refills(virtual_clock: VirtualClock) -> None:
    # No takers and a still market: the first display rests, nothing fills.
    venue = quiet_venue(virtual_clock, taker_rate_per_s=0.0, volatility_bps=0.0)
    engine = one_venue_engine(virtual_clock, venue)
    await engine.start()
    bid = venue.book(BTC).best_bid
    oid = await engine.submit(iceberg(1.0, bid, display=0.2))
    await anyio.sleep(10)
    status = engine.status(oid)
    assert status.status is OrderStatus.NEW
    d = status.detail
    assert d["display_size"] == 0.2
    assert d["hidden_quantity"] == pytest.approx(0.8)  # neither filled nor shown
    assert d["refills"] == 1
    assert d["remaining"] == pytest.approx(1.0)
    assert "hidden 0.8" in d["algorithm"]
    canceled = await engine.cancel(oid)
    result = await engine.wait(oid, timeout=60)
    await engine.stop()
    assert result.status is OrderStatus.CANCELED
    assert venue.open_orders(BTC) == []
    assert canceled is not None


@pytest.mark.anyio
async def test_cancel_mid_flight_leaves_nothing_at_the_venue(virtual_clock: VirtualClock) -> None:
    venue = quiet_venue(virtual_clock, taker_rate_per_s=6.0, volatility_bps=0.3)
    engine = one_venue_engine(virtual_clock, venue)
    await engine.start()
    bid = venue.book(BTC).best_bid
    oid = await engine.submit(iceberg(50.0, bid, display=0.5, oid="ice-big"))
    await anyio.sleep(30)
    assert engine.status(oid).filled_quantity > 0
    assert venue.open_orders(BTC)
    await engine.cancel(oid)
    result = await engine.wait(oid, timeout=60)
    assert result.status is OrderStatus.CANCELED
    assert 0 < result.filled_quantity < 50
    assert venue.open_orders(BTC) == []
    filled_then = result.filled_quantity
    await anyio.sleep(60)  # nothing keeps working behind the operator's back
    assert engine.status(oid).filled_quantity == filled_then
    assert venue.open_orders(BTC) == []
    await engine.stop()


@pytest.mark.parametrize(
    ("meta", "words"),
    [
        ({}, "display_size"),
        ({"display_size": 0}, "display_size"),
        ({"display_size": 2.0}, "(0, quantity=1]"),
        ({"display_size": 0.1, "display_variance": 1.0}, "[0, 1)"),
        ({"display_size": 0.1, "urgency": "low"}, "not accepted for ICEBERG"),
    ],
)
def test_bad_parameters_are_refused_when_the_order_is_built(meta: dict, words: str) -> None:
    with pytest.raises(ValidationError) as err:
        Order(id="x", symbol=BTC, side="buy", type="ICEBERG", quantity=1.0, price=100.0, metadata=meta)
    assert "metadata" in str(err.value) and words in str(err.value)
