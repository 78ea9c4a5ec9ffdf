"""The Engine: what an operator does (halt, resume, cancel all, amend) and
the event stream the desk and the journal read, on Engine.default's three
simulated venues in virtual time.

"At the venue" checks read the venues' own open orders and status, not the
engine's bookkeeping.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from engine import Engine, FaultConfig, LatencyModel, Order, OrderStatus, PositionBook, VirtualClock
from engine.errors import ConfigurationError
from engine.events import (
    BreakerStateChanged,
    Halted,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderFilled,
    OrderSubmitted,
    Resumed,
    VenueDisabled,
)
from tests.conftest import virtual_anyio_backend

SYMBOL = "BTC/USD"


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> Any:
    return virtual_anyio_backend(virtual_clock)


@pytest.fixture
async def engine(virtual_clock: VirtualClock) -> AsyncIterator[Engine]:
    eng = Engine.default(seed=1, clock=virtual_clock)
    await eng.start(num_workers=4)
    try:
        yield eng
    finally:
        await eng.stop(drain=False)


def market(oid: str, qty: float = 0.01, side: str = "BUY") -> Order:
    return Order(id=oid, symbol=SYMBOL, side=side, type="MARKET", quantity=qty)


def resting(oid: str, engine: Engine, venue: str, qty: float = 0.01) -> Order:
    bid = engine.venues[venue].book(SYMBOL).best_bid
    return Order(id=oid, symbol=SYMBOL, side="BUY", type="LIMIT", quantity=qty, price=round(bid - 50, 2))


def open_at_venues(engine: Engine) -> dict[str, list[str]]:
    return {name: [r.order_id for r in v.open_orders()] for name, v in engine.venues.items()}


async def settle(engine: Engine, oid: str, status: OrderStatus = OrderStatus.NEW) -> None:
    """Wait (virtual time) until the order reaches `status` or is final."""
    with anyio.fail_after(60):
        while True:
            current = engine.status(oid).status
            if current is status or current.is_final:
                return
            await anyio.sleep(0.01)


async def _working_book(engine: Engine) -> list[str]:
    ids = []
    for name in engine.venues:
        oid = await engine.submit(resting(f"rest-{name}", engine, name), venue=name)
        ids.append(oid)
    bid = engine.venues["deep"].book(SYMBOL).best_bid
    ice = Order(id="ice", symbol=SYMBOL, side="BUY", type="ICEBERG", quantity=1.0,
                price=round(bid - 50, 2), metadata={"display_size": 0.1})
    ids.append(await engine.submit(ice))
    for oid in ids:
        await settle(engine, oid)
    assert all(engine.status(oid).status is OrderStatus.NEW for oid in ids)
    assert sum(len(v) for v in open_at_venues(engine).values()) == 4  # three + the iceberg's child
    return ids


# -- halt, resume, cancel all, amend --------------------------------------------------------------


@pytest.mark.anyio
async def test_halt_refuses_new_orders_and_cancels_everything_working(engine: Engine) -> None:
    sub = engine.subscribe(name="test")
    ids = await _working_book(engine)

    await engine.halt("risk limit breached")
    assert engine.halted_reason == "risk limit breached"
    for oid in ids:
        await settle(engine, oid, OrderStatus.CANCELED)
        assert engine.status(oid).status is OrderStatus.CANCELED
    assert open_at_venues(engine) == {name: [] for name in engine.venues}
    assert engine.working() == []

    # New orders are refused with the reason, plain and parent alike, and none reaches a venue.
    submitted = {name: v.counters.submitted for name, v in engine.venues.items()}
    plain = await engine.submit(market("while-halted"))
    parent = await engine.submit(Order(id="ice-halted", symbol=SYMBOL, side="BUY", type="ICEBERG",
                                       quantity=1.0, price=1000.0, metadata={"display_size": 0.1}))
    t = engine.clock.now()
    for oid in (plain, parent):
        result = await engine.wait(oid, timeout=30)
        assert result.status is OrderStatus.REJECTED, result
        assert result.reason == "trading halted: risk limit breached"
    assert engine.clock.now() - t < 0.5, "a refusal must not wait for the halt to end"

    engine.resume()
    await anyio.sleep(10)  # an order refused during the halt stays refused after it
    assert engine.status(parent).status is OrderStatus.REJECTED
    assert {name: v.counters.submitted for name, v in engine.venues.items()} == submitted
    assert engine.halted_reason is None
    after = await engine.wait(await engine.submit(market("after-resume")), timeout=30)
    assert after.status is OrderStatus.FILLED
    events = sub.drain()
    kinds = [type(e) for e in events]
    assert Halted in kinds and Resumed in kinds
    assert [e.reason for e in events if isinstance(e, Halted)] == ["risk limit breached"]


@pytest.mark.anyio
async def test_cancel_all_leaves_nothing_working(engine: Engine) -> None:
    ids = await _working_book(engine)
    count = await engine.cancel_all()
    assert count == 4
    for oid in ids:
        await settle(engine, oid, OrderStatus.CANCELED)
    assert open_at_venues(engine) == {name: [] for name in engine.venues}
    assert engine.working() == []
    assert engine.halted_reason is None  # cancel all is not a halt
    assert (await engine.wait(await engine.submit(market("next")), timeout=30)).status is OrderStatus.FILLED


@pytest.mark.anyio
async def test_amend_changes_the_order_at_the_venue(engine: Engine) -> None:
    order = resting("am1", engine, "swift", qty=0.02)
    await engine.submit(order, venue="swift")
    await settle(engine, "am1")
    new_price = round(order.price - 10, 2)
    result = await engine.amend("am1", quantity=0.05, price=new_price)
    assert result.status is OrderStatus.NEW, result.reason
    at_venue = engine.venues["swift"].status("am1")
    assert (at_venue.price, at_venue.quantity, at_venue.status) == (new_price, 0.05, OrderStatus.NEW)
    [open_order] = engine.venues["swift"].open_orders()
    assert (open_order.price, open_order.quantity) == (new_price, 0.05)
    assert engine.status("am1").price == new_price
    # A bad amend is refused and leaves the order as it was.
    refused = await engine.amend("am1", price=new_price + 0.001)
    assert refused.status is OrderStatus.REJECTED and "tick" in refused.reason
    assert engine.venues["swift"].status("am1").price == new_price
    assert engine.status("am1").status is OrderStatus.NEW


@pytest.mark.anyio
async def test_an_order_with_its_own_client_order_id_amends_by_either_id(engine: Engine) -> None:
    order = resting("am2", engine, "swift", qty=0.02).model_copy(update={"client_order_id": "venue-am2"})
    await engine.submit(order, venue="swift")
    await settle(engine, "am2")
    by_id = await engine.amend("am2", quantity=0.03)  # was "unknown order 'am2'"
    assert by_id.status is OrderStatus.NEW, by_id.reason
    by_cid = await engine.amend("venue-am2", quantity=0.04)
    assert by_cid.status is OrderStatus.NEW, by_cid.reason
    assert engine.venues["swift"].status("venue-am2").quantity == 0.04


@pytest.mark.anyio
async def test_every_amend_refusal_has_one_shape_whoever_refused(engine: Engine) -> None:
    order = resting("am2", engine, "swift", qty=0.02)
    await engine.submit(order, venue="swift")
    await settle(engine, "am2")
    bid = engine.venues["deep"].book(SYMBOL).best_bid
    await engine.submit(Order(id="ice2", symbol=SYMBOL, side="BUY", type="ICEBERG", quantity=1.0,
                              price=round(bid - 50, 2), metadata={"display_size": 0.1}))
    await settle(engine, "ice2")

    def shape(result: Any) -> tuple[Any, ...]:
        return (result.order_id, result.status, result.quantity, result.price, result.symbol,
                result.side, result.exchange_id)

    unchanged = ("am2", OrderStatus.REJECTED, 0.02, order.price, SYMBOL, order.side, "swift")
    by_risk = await engine.amend("am2", quantity=49_100.0, price=0.2)
    assert shape(by_risk) == unchanged
    assert by_risk.reason == "amend of 'am2' refused: quantity 49,100 > max 50 (BTC/USD); the order is unchanged"
    by_venue = await engine.amend("am2", price=order.price + 0.001)
    assert shape(by_venue) == unchanged
    assert by_venue.reason == (
        f"amend of 'am2' refused: price {order.price + 0.001!r} is not a multiple of the tick 0.01 for "
        "BTC/USD; the order is unchanged"
    )
    parent = await engine.amend("ice2", quantity=2.0)
    assert (parent.status, parent.quantity, parent.price) == (OrderStatus.REJECTED, 1.0, round(bid - 50, 2))
    assert parent.reason == (
        "amend of 'ice2' refused: it is an algorithm parent (ICEBERG), whose algorithm sends and prices "
        "the child orders; cancel it and send a new one"
    )
    unknown = await engine.amend("nope", quantity=1.0)
    assert (unknown.status, unknown.reason) == (OrderStatus.REJECTED, "amend of 'nope' refused: unknown order 'nope'")
    await engine.halt("test")
    halted = await engine.amend("am2", quantity=0.03)
    assert halted.reason == "amend of 'am2' refused: trading halted: test"
    assert (halted.quantity, halted.price) == (0.02, order.price)


# -- the event stream -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_subscribe_delivers_order_breaker_and_venue_events(engine: Engine) -> None:
    sub = engine.subscribe(name="desk")
    oid = await engine.submit(market("ev1"), venue="swift")
    assert (await engine.wait(oid, timeout=30)).status is OrderStatus.FILLED
    engine.router.breaker("thrift").force_open("test")
    engine.disable_venue("deep", "maintenance")
    seen = []
    with anyio.fail_after(30):
        async for event in sub:
            seen.append(event)
            if isinstance(event, VenueDisabled):
                break
    mine = [e for e in seen if getattr(e, "order_id", None) == "ev1"]
    assert [type(e) for e in mine][:2] == [OrderSubmitted, OrderAccepted]
    fills = [e for e in mine if isinstance(e, OrderFilled)]
    assert fills and fills[-1].status is OrderStatus.FILLED
    assert sum(f.last_qty for f in fills) == pytest.approx(0.01)
    [breaker] = [e for e in seen if isinstance(e, BreakerStateChanged)]
    assert (breaker.venue, breaker.old_state, breaker.new_state) == ("thrift", "CLOSED", "OPEN")
    assert "forced open by operator: test" in breaker.reason
    assert seen[-1] == VenueDisabled(seen[-1].ts_event, seen[-1].ts_init, "deep", "maintenance")
    for event in seen:
        assert event.ts_event <= event.ts_init + 1e-9


@pytest.mark.anyio
async def test_a_callback_subscriber_gets_events_on_its_own_thread(engine: Engine) -> None:
    got: list[Any] = []
    done = threading.Event()
    threads: set[str] = set()

    def on_event(event: Any) -> None:
        threads.add(threading.current_thread().name)
        got.append(event)
        if isinstance(event, OrderFilled) and event.status is OrderStatus.FILLED:
            done.set()

    engine.subscribe(name="cb", callback=on_event)
    await engine.wait(await engine.submit(market("cb1")), timeout=30)
    assert await anyio.to_thread.run_sync(done.wait, 30)
    assert threads == {"execdesk-bus-cb"}
    assert any(isinstance(e, OrderSubmitted) and e.order_id == "cb1" for e in got)


@pytest.mark.anyio
async def test_a_slow_lossy_subscriber_drops_the_oldest_and_the_engine_keeps_going(
    engine: Engine,
) -> None:
    slow = engine.subscribe(maxsize=5, name="slow")
    everything = engine.subscribe(maxsize=100_000, name="all")
    ids = [await engine.submit(market(f"l{i}", side="BUY" if i % 2 else "SELL")) for i in range(20)]
    for oid in ids:
        assert (await engine.wait(oid, timeout=30)).status is OrderStatus.FILLED
    assert slow.backlog == 5
    assert slow.dropped == engine.bus.published - 5 > 0
    # The newest were kept, in order.
    assert slow.drain() == everything.drain()[-5:]


@pytest.mark.anyio
async def test_a_lossless_subscriber_holds_the_workers_until_it_drains(
    virtual_clock: VirtualClock,
) -> None:
    engine = Engine.default(seed=1, clock=virtual_clock)
    journal = engine.subscribe(maxsize=5, lossless=True, name="journal")
    await engine.start(num_workers=1)
    try:
        ids = [await engine.submit(market(f"j{i}", side="BUY" if i % 2 else "SELL")) for i in range(6)]
        await anyio.sleep(10)  # plenty of virtual time: still blocked
        assert not engine.bus.has_capacity()
        statuses = [engine.status(oid).status for oid in ids]
        assert statuses[-1] is OrderStatus.PENDING_NEW
        assert engine.status(ids[-1]).reason == "queued for routing"
        stalled_at = sum(s.is_final for s in statuses)
        assert 0 < stalled_at < len(ids)
        received = []
        with anyio.fail_after(60):
            while not all(engine.status(oid).status.is_final for oid in ids):
                received.extend(journal.drain())
                await anyio.sleep(0.05)
        received.extend(journal.drain())
        assert journal.dropped == 0
        assert len(received) == engine.bus.published  # nothing lost
        assert {e.order_id for e in received if isinstance(e, OrderFilled)} == set(ids)
    finally:
        await engine.stop(drain=False)


@pytest.mark.anyio
async def test_denials_are_events_too(engine: Engine) -> None:
    sub = engine.subscribe()
    await engine.halt("drill")
    oid = await engine.submit(market("d1"))
    await engine.wait(oid, timeout=30)
    denied = [e for e in sub.drain() if isinstance(e, OrderDenied)]
    assert [(e.order_id, e.reason) for e in denied] == [("d1", "trading halted: drill")]
    assert not any(isinstance(e, OrderCanceled) for e in denied)


@pytest.mark.anyio
async def test_a_split_order_stays_final_after_the_router_forgets_its_pieces(virtual_clock: VirtualClock) -> None:
    # Each split order is two or more router entries, so the router forgets its pieces
    # before the optimizer forgets the order: its result must not go back to working.
    engine = Engine.default(seed=1, clock=virtual_clock, remember_orders=10)
    await engine.start()
    big = await engine.submit(Order(id="big", symbol="BTC/USD", side="BUY", type="MARKET", quantity=3.0))
    first = await engine.wait(big, timeout=30)
    assert first.status is OrderStatus.FILLED and len(first.children) >= 2  # it was split
    for i in range(9):
        await engine.wait(await engine.submit(
            Order(id=f"s{i}", symbol="BTC/USD", side="SELL" if i % 2 else "BUY", type="MARKET", quantity=0.01)
        ), timeout=30)
    assert engine.router.store.record(first.children[0].order_id) is None  # the router forgot a piece
    later = engine.status(big)
    assert (later.status, later.filled_quantity, len(later.children)) == (OrderStatus.FILLED, 3.0, len(first.children))
    assert later.average_price == first.average_price
    assert big not in engine.working()
    await engine.stop()


@pytest.mark.anyio
async def test_cancel_all_cancels_orders_still_queued_for_a_worker(engine: Engine) -> None:
    submitted = {name: v.counters.submitted for name, v in engine.venues.items()}
    # No await yields between these submits: every order still waits for a worker.
    ids = [await engine.submit(resting(f"q{i}", engine, "deep")) for i in range(20)]
    assert all(engine.status(oid).reason == "queued for routing" for oid in ids)
    assert await engine.cancel_all("desk closing") == 20
    for oid in ids:
        result = await engine.wait(oid, timeout=30)
        assert (result.status, result.reason) == (OrderStatus.CANCELED, "desk closing")
    await anyio.sleep(5)  # nothing goes out later either
    assert {name: v.counters.submitted for name, v in engine.venues.items()} == submitted
    assert open_at_venues(engine) == {name: [] for name in engine.venues} and engine.working() == []


@pytest.mark.anyio
async def test_a_parent_whose_cancel_outlived_stops_timeout_can_still_be_canceled(engine: Engine) -> None:
    for venue in engine.venues.values():
        venue.faults = FaultConfig()
    bid = engine.venues["deep"].book(SYMBOL).best_bid
    await engine.submit(Order(id="ice", symbol=SYMBOL, side="BUY", type="ICEBERG", quantity=1.0,
                              price=round(bid - 50, 2), metadata={"display_size": 0.1}))
    await settle(engine, "ice")
    [child] = engine.status("ice").children
    venue = engine.venues[child.exchange_id]
    venue.latency = LatencyModel(median_s=0.02, p99_s=0.03)  # its cancel takes longer than the stop waits
    await engine.stop(drain=False, timeout=0.01)
    await engine.cancel("ice")
    result = await engine.wait("ice", timeout=30)
    assert result.status is OrderStatus.CANCELED
    assert venue.status(child.order_id).status is OrderStatus.CANCELED
    assert engine.working() == []


@pytest.mark.anyio
async def test_an_old_fill_counts_once_though_the_position_book_forgot_its_key(engine: Engine) -> None:
    engine.position_book = PositionBook(remember=2)
    for venue in engine.venues.values():
        venue.faults = FaultConfig()
    swift = engine.venues["swift"]
    tick = float(swift.instruments()[SYMBOL].tick_size)
    bid = swift.book(SYMBOL, 1).best_bid
    await engine.submit(Order(id="maker", symbol=SYMBOL, side="BUY", type="LIMIT", quantity=0.02,
                              price=round(bid + tick, 2)), venue="swift")
    await settle(engine, "maker")
    await engine.wait(await engine.submit(market("hit", side="SELL"), venue="swift"), timeout=30)
    assert engine.status("maker").filled_quantity == pytest.approx(0.01)
    for i in range(3):  # other fills: the book forgets the maker's fill key
        await engine.wait(await engine.submit(Order(id=f"e{i}", symbol="ETH/USD", side="BUY", type="MARKET",
                                                    quantity=0.01), venue="deep"), timeout=30)
    await engine.cancel("maker")  # its answer carries the old fill again
    assert (await engine.wait("maker", timeout=30)).status is OrderStatus.CANCELED
    [btc] = [p for p in engine.positions() if p.symbol == SYMBOL]
    assert (btc.net_quantity, btc.fills) == (0.0, 2)  # bought 0.01 once, sold 0.01


def test_an_engine_that_would_forget_every_order_at_once_is_refused() -> None:
    with pytest.raises(ConfigurationError) as refused:
        Engine.default(seed=1, clock=VirtualClock(), remember_orders=0)
    assert str(refused.value) == ("remember_orders must be at least 1, got 0: the engine keeps each "
                                  "finished order at least until its status is read")
