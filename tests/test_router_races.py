"""The routers under races: resends in flight, many threads and loops, late and early
execution reports, and the venue's time as the breaker sees it.

Everything here goes through public surfaces (routers, venue clients, the Venue
interface, listeners, events), so it holds whatever the routers keep inside.
Thread tests shorten the interpreter's switch interval so that threads interleave
inside the router's bookkeeping thousands of times per run; they assert outcomes
(no exception, one final state per order), never durations.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import (
    AsyncExchangeClient,
    AsyncOrderRouter,
    BreakerState,
    LatencyModel,
    Order,
    OrderResult,
    OrderRouter,
    OrderStatus,
    SimulatedExchange,
    VirtualClock,
)
from engine.events import Event, OrderFilled
from engine.models import Fill, Liquidity, OrderSide
from engine.market_data import ExecutionReport
from tests.conftest import VIRTUAL_START, virtual_anyio_backend

SYMBOL = "BTC/USD"


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> Any:
    return virtual_anyio_backend(virtual_clock)


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Threads hand the interpreter over every microsecond instead of every 5 ms."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def market(oid: str, qty: float = 0.001, side: str = "BUY") -> Order:
    return Order(id=oid, symbol=SYMBOL, side=side, type="MARKET", quantity=qty)


def limit(oid: str, price: float, qty: float = 0.01, side: str = "BUY") -> Order:
    return Order(id=oid, symbol=SYMBOL, side=side, type="LIMIT", quantity=qty, price=price)


def inside_the_spread(venue: SimulatedExchange) -> float:
    """A buy price one tick above the best bid: the best bid of the book, first in line."""
    return venue.book(SYMBOL, 1).best_bid + float(venue.instruments()[SYMBOL].tick_size)


# -- a resend while the first send is in flight --------------------------------------------


@pytest.mark.anyio
async def test_a_resend_in_flight_gets_the_first_sends_outcome_and_the_order_stays_tracked(
    virtual_clock: VirtualClock,
) -> None:
    venue = SimulatedExchange("sim", clock=virtual_clock, latency=LatencyModel(median_s=0.002))
    router = AsyncOrderRouter(clock=virtual_clock)
    router.register_exchange("sim", AsyncExchangeClient(venue))
    heard: list[OrderResult] = []
    router.add_order_listener(heard.append)
    order = limit("r1", inside_the_spread(venue))

    first, second = await asyncio.gather(router.submit_order_async(order), router.submit_order_async(order))

    assert first.status is OrderStatus.NEW and second is first
    assert venue.counters.submitted == 1 and venue.status("r1").status is OrderStatus.NEW
    assert router.get_order_status("r1").status is OrderStatus.NEW
    assert [r.order_id for r in router.working_orders()] == ["r1"]
    # The market trades through it: the fill reaches the router and its listeners once.
    with anyio.fail_after(120):
        while router.get_order_status("r1").status is not OrderStatus.FILLED:
            await anyio.sleep(1.0)
            venue.tick()
    fills = [f for r in heard if r.order_id == "r1" for f in r.fills]
    assert {f.trade_id for f in fills} == {f.trade_id for f in venue.status("r1").fills}
    assert router.get_order_status("r1").filled_quantity == 0.01
    assert router.working_orders() == []


@pytest.mark.anyio
async def test_a_different_order_under_an_id_in_flight_is_refused_and_changes_nothing(
    virtual_clock: VirtualClock,
) -> None:
    venue = SimulatedExchange("sim", clock=virtual_clock, latency=LatencyModel(median_s=0.002))
    router = AsyncOrderRouter(clock=virtual_clock)
    router.register_exchange("sim", AsyncExchangeClient(venue))

    first, other = await asyncio.gather(
        router.submit_order_async(limit("d1", 40_000.0)),
        router.submit_order_async(limit("d1", 40_000.0, qty=0.02)),
    )

    assert first.status is OrderStatus.NEW
    assert other.status is OrderStatus.REJECTED
    assert other.reason == "client order id 'd1' was already used for a different order"
    assert router.get_order_status("d1").status is OrderStatus.NEW
    assert router.get_order_status("d1").quantity == 0.01
    assert venue.counters.submitted == 1


@pytest.mark.anyio
async def test_a_halt_cancels_an_order_still_in_flight_once_the_venue_has_it(
    virtual_clock: VirtualClock,
) -> None:
    """What a halt does (Engine.halt): refuse new orders, then cancel every working order,
    those still on their way to the venue included."""
    venue = SimulatedExchange("sim", clock=virtual_clock, latency=LatencyModel(median_s=0.002))
    router = AsyncOrderRouter(clock=virtual_clock)
    router.register_exchange("sim", AsyncExchangeClient(venue))
    sending = asyncio.ensure_future(router.submit_order_async(limit("h1", 40_000.0)))
    await asyncio.sleep(0)  # admitted, now waiting for the venue's answer

    router.halt("kill switch")
    working = router.working_orders()
    canceled = [await router.cancel_order_async(r.order_id) for r in working]

    assert [(r.order_id, r.status) for r in working] == [("h1", OrderStatus.PENDING_NEW)]
    assert [r.status for r in canceled] == [OrderStatus.CANCELED]
    assert (await sending).status is OrderStatus.NEW  # the send's own answer
    assert venue.status("h1").status is OrderStatus.CANCELED
    assert router.get_order_status("h1").status is OrderStatus.CANCELED
    assert router.working_orders() == []


def test_a_resend_from_another_thread_waits_for_the_first_send(virtual_clock: VirtualClock) -> None:
    """Virtual time moves only when both threads wait, so whichever thread sends first,
    the other arrives while the order is in flight."""
    clock = virtual_clock
    venue = SimulatedExchange("sim", clock=clock, latency=LatencyModel(median_s=0.002))
    router = OrderRouter(clock=clock)
    router.register_exchange("sim", venue)
    order = limit("t1", 40_000.0)
    answers: dict[str, OrderResult] = {}

    def other() -> None:
        with clock.participate():
            answers["other"] = router.submit_order(order)

    clock.expect_participant()
    thread = threading.Thread(target=other)
    thread.start()
    answers["main"] = router.submit_order(order)
    thread.join()

    assert answers["main"].status is answers["other"].status is OrderStatus.NEW
    assert venue.counters.submitted == 1
    assert [r.order_id for r in router.working_orders()] == ["t1"]
    assert router.cancel_order("t1").status is OrderStatus.CANCELED


# -- many threads and loops on one router ------------------------------------------------


def test_threads_on_one_order_router_are_never_told_exception(
    virtual_clock: VirtualClock, busy_switching: None
) -> None:
    venue = SimulatedExchange("sim", clock=virtual_clock)
    # A small memory, so finished orders move to history all the time, beside resting ones.
    router = OrderRouter(clock=virtual_clock, remember_orders=20)
    router.register_exchange("sim", venue)
    for i in range(200):
        router.submit_order(limit(f"rest{i}", 40_000.0, qty=0.001))
    errors: list[BaseException] = []
    outcomes: Counter[OrderStatus] = Counter()

    def trade(t: int) -> None:
        for i in range(300):
            try:
                order = market(f"t{t}-{i}", side="BUY" if i % 2 else "SELL")
                outcomes[router.submit_order(order).status] += 1
            except Exception as exc:  # what the caller would be told
                errors.append(exc)

    threads = [threading.Thread(target=trade, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert outcomes == {OrderStatus.FILLED: 2400}
    assert venue.counters.submitted == 2600
    assert len(router.working_orders()) == 200


def test_the_async_routers_sync_form_from_threads_and_a_second_loop_is_never_told_exception(
    virtual_clock: VirtualClock, busy_switching: None
) -> None:
    clock = virtual_clock
    venue = SimulatedExchange("sim", clock=clock)
    router = AsyncOrderRouter(clock=clock, remember_orders=20)
    router.register_exchange("sim", AsyncExchangeClient(venue))
    errors: list[BaseException] = []
    outcomes: Counter[OrderStatus] = Counter()
    try:
        for i in range(200):
            router.submit_order(limit(f"rest{i}", 40_000.0, qty=0.001)).result(timeout=60)

        def from_thread(t: int) -> None:
            for i in range(200):
                try:
                    order = market(f"t{t}-{i}", side="BUY" if i % 2 else "SELL")
                    outcomes[router.submit_order(order).result(timeout=60).status] += 1
                except Exception as exc:
                    errors.append(exc)

        def from_another_loop() -> None:
            async def one(i: int) -> None:
                try:
                    order = market(f"loop-{i}", side="BUY" if i % 2 else "SELL")
                    outcomes[(await router.submit_order_async(order)).status] += 1
                except Exception as exc:
                    errors.append(exc)

            async def main() -> None:
                await asyncio.gather(*(one(i) for i in range(400)))

            with asyncio.Runner(loop_factory=clock.loop_factory) as runner:
                runner.run(main())

        threads = [threading.Thread(target=from_thread, args=(t,)) for t in range(8)]
        threads.append(threading.Thread(target=from_another_loop))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        router.close()

    assert errors == []
    assert outcomes == {OrderStatus.FILLED: 2000}
    assert venue.counters.submitted == 2200


# -- the venue's time, not the caller's ----------------------------------------------------


class _PushingVenue:
    """A simulated venue that, like any venue delivering queued news on the caller's
    thread, pushes a fill of a resting order to its listeners during each submit."""

    def __init__(self, clock: VirtualClock) -> None:
        self.inner = SimulatedExchange("push", clock=clock)
        self.name, self.fees = "push", self.inner.fees
        self.clock = clock
        self.listeners: list[Any] = []
        self.pushed = 0

    def add_report_listener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def submit(self, order: Order) -> OrderResult:
        result = self.inner.submit(order)
        if order.id != "rest":
            self.pushed += 1
            filled = 0.001 * self.pushed
            fill = Fill("rest", "push", SYMBOL, OrderSide.BUY, 40_000.0, 0.001, 0.0, Liquidity.MAKER,
                        self.clock.now(), f"T{self.pushed}")
            report = ExecutionReport("push", "rest", SYMBOL, OrderStatus.PARTIALLY_FILLED, filled,
                                     1.0 - filled, self.clock.now(), fill)
            for listener in self.listeners:
                listener(report)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_slow_consumer_of_the_routers_news_does_not_make_the_venue_look_slow(
    virtual_clock: VirtualClock,
) -> None:
    """Each fill the venue pushes reaches a consumer (a desk, a journal) that takes 50 ms;
    the breaker's slow-call limit is 40 ms. The venue itself answers at once."""
    clock = virtual_clock
    venue = _PushingVenue(clock)
    events: list[Event] = []

    def slow_consumer(event: Event) -> None:
        events.append(event)
        if isinstance(event, OrderFilled) and event.order_id == "rest":
            clock.advance(0.050)

    router = OrderRouter(clock=clock, on_event=slow_consumer, max_latency_s=None)
    router.register_exchange("push", venue)
    assert router.submit_order(limit("rest", 40_000.0, qty=1.0)).status is OrderStatus.NEW

    results = [router.submit_order(market(f"m{i}", side="BUY" if i % 2 else "SELL")) for i in range(40)]

    assert [r.status for r in results] == [OrderStatus.FILLED] * 40
    assert router.breaker("push").state is BreakerState.CLOSED
    assert max(r.ack_latency_ns for r in results) == 0  # the venue's time: virtual, instant
    # Every pushed fill still reached the consumer, after the call that carried it.
    assert sum(isinstance(e, OrderFilled) and e.order_id == "rest" for e in events) == 40
    assert router.get_order_status("rest").filled_quantity == pytest.approx(0.040)


class _SelfTimingVenue:
    """A venue that measures its own round trip (as a network venue can, at its socket)
    and says so in its answers, while its caller waits 100 ms for other reasons (the
    GIL, a busy loop): here the wait is the clock moved by hand."""

    def __init__(self, clock: VirtualClock) -> None:
        self.inner = SimulatedExchange("timed", clock=clock)
        self.name, self.fees = "timed", self.inner.fees
        self.clock = clock

    def submit(self, order: Order) -> OrderResult:
        result = self.inner.submit(order)
        result.ack_latency_ns = 2_000_000
        self.clock.advance(0.100)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_the_breaker_and_profiler_take_the_venues_own_measure_of_its_round_trip(
    virtual_clock: VirtualClock,
) -> None:
    router = OrderRouter(clock=virtual_clock, max_latency_s=None)
    router.register_exchange("timed", _SelfTimingVenue(virtual_clock))

    results = [router.submit_order(market(f"s{i}", side="BUY" if i % 2 else "SELL")) for i in range(40)]

    assert [r.status for r in results] == [OrderStatus.FILLED] * 40
    assert {r.ack_latency_ns for r in results} == {2_000_000}
    assert router.breaker("timed").state is BreakerState.CLOSED
    assert router.profiler.stats("acknowledgment", "timed").max < 2.1e6


# -- execution reports: late, early, repeated ------------------------------------------------


class _ScriptedVenue:
    """A venue the test drives: its orders rest until the test fills them, and its
    execution reports reach listeners only when the test delivers them (a venue or a
    network that delivers late, twice, or out of order)."""

    name = "v"

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.listeners: list[Any] = []
        self.orders: dict[str, tuple[Order, list[Fill]]] = {}
        self.finished: dict[str, OrderStatus] = {}
        self.on_submit: Any = None

    def add_report_listener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def remove_report_listener(self, listener: Any) -> None:
        self.listeners.remove(listener)

    def _result(self, cid: str, status: OrderStatus, reason: str | None = None,
                with_fills: bool = True) -> OrderResult:
        order, fills = self.orders[cid]
        filled = round(sum(f.quantity for f in fills), 9)
        return OrderResult(cid, self.name, status, order.quantity, filled, order.price if fills else None,
                           list(fills) if with_fills else [], reason, order.symbol, order.side, order.price,
                           self.clock.now())

    def submit(self, order: Order) -> OrderResult:
        cid = order.client_order_id
        assert cid is not None
        self.orders[cid] = (order, [])
        answer = self._result(cid, OrderStatus.NEW)
        if self.on_submit is not None:
            self.on_submit(cid)  # news of it that overtakes the answer
        return answer

    def fill(self, cid: str, quantity: float, trade_id: str) -> ExecutionReport:
        """A trade at the venue; its report is returned, for the test to deliver."""
        order, fills = self.orders[cid]
        fill = Fill(cid, self.name, order.symbol, order.side, order.price or 0.0, quantity, 0.0,
                    Liquidity.MAKER, self.clock.now(), trade_id)
        fills.append(fill)
        filled = round(sum(f.quantity for f in fills), 9)
        status = OrderStatus.FILLED if filled >= order.quantity else OrderStatus.PARTIALLY_FILLED
        if status is OrderStatus.FILLED:
            self.finished[cid] = status
        return ExecutionReport(self.name, cid, order.symbol, status, filled,
                               round(order.quantity - filled, 9), self.clock.now(), fill)

    def deliver(self, report: ExecutionReport) -> None:
        for listener in list(self.listeners):
            listener(report)

    def cancel(self, cid: str, *, with_fills: bool = True) -> OrderResult:
        if cid in self.finished:
            return self._result(cid, OrderStatus.REJECTED, f"cancel refused: {cid} is already "
                                f"{self.finished[cid].value}")
        self.finished[cid] = OrderStatus.CANCELED
        return self._result(cid, OrderStatus.CANCELED, "canceled by request", with_fills=with_fills)

    def status(self, cid: str) -> OrderResult:
        return self._result(cid, self.finished.get(cid, OrderStatus.NEW))


class _ScriptedClient:
    """The scripted venue as a router registers it; `answer_fills` says whether a
    cancel's answer lists the fills (some venues give only the filled quantity)."""

    def __init__(self, venue: _ScriptedVenue, answer_fills: bool = True) -> None:
        self.venue = venue
        self.answer_fills = answer_fills

    def submit(self, order: Order) -> OrderResult:
        return self.venue.submit(order)

    def cancel(self, cid: str) -> OrderResult:
        return self.venue.cancel(cid, with_fills=self.answer_fills)

    def status(self, cid: str) -> OrderResult:
        return self.venue.status(cid)

    def add_report_listener(self, listener: Any) -> None:
        self.venue.add_report_listener(listener)


def scripted_router(clock: VirtualClock, answer_fills: bool = True) -> tuple[OrderRouter, _ScriptedVenue]:
    venue = _ScriptedVenue(clock)
    router = OrderRouter(clock=clock, max_latency_s=None)
    router.register_exchange("v", _ScriptedClient(venue, answer_fills))
    return router, venue


def test_a_late_fill_report_never_revives_a_canceled_order(virtual_clock: VirtualClock) -> None:
    router, venue = scripted_router(virtual_clock)
    assert router.submit_order(limit("c1", 40_000.0, qty=1.0)).status is OrderStatus.NEW
    late = venue.fill("c1", 0.4, "T1")  # traded, but its report is still on its way

    canceled = router.cancel_order("c1")
    venue.deliver(late)

    assert canceled.status is OrderStatus.CANCELED and canceled.filled_quantity == 0.4
    now = router.get_order_status("c1")
    assert now.status is OrderStatus.CANCELED
    assert now.filled_quantity == 0.4 and [f.trade_id for f in now.fills] == ["T1"]
    assert router.working_orders() == []


def test_a_fill_reported_after_the_cancel_still_counts_once_and_the_order_stays_canceled(
    virtual_clock: VirtualClock,
) -> None:
    """The cancel's answer gives the filled quantity without the fills: the late report
    brings the fill itself; a second copy of it changes nothing."""
    router, venue = scripted_router(virtual_clock, answer_fills=False)
    events: list[Event] = []
    router.store.subscribe(events.append)
    router.submit_order(limit("c2", 40_000.0, qty=1.0))
    late = venue.fill("c2", 0.3, "T7")

    router.cancel_order("c2")
    venue.deliver(late)
    venue.deliver(late)

    now = router.get_order_status("c2")
    assert now.status is OrderStatus.CANCELED and now.filled_quantity == 0.3
    assert [f.trade_id for f in now.fills] == ["T7"] and now.average_price == 40_000.0
    fills = [e for e in events if isinstance(e, OrderFilled)]
    assert [(e.fill.trade_id, e.status) for e in fills] == [("T7", OrderStatus.CANCELED)]


def test_reports_that_overtake_the_submit_answer_are_applied_after_it(virtual_clock: VirtualClock) -> None:
    """A fill can reach the router before the venue's answer to the submit (separate
    messages on a network): it is kept until the answer and then applied."""
    router, venue = scripted_router(virtual_clock)
    venue.on_submit = lambda cid: venue.deliver(venue.fill(cid, 0.25, "E1"))
    heard: list[OrderResult] = []
    router.add_order_listener(heard.append)

    answer = router.submit_order(limit("e1", 40_000.0, qty=1.0))

    assert answer.status is OrderStatus.PARTIALLY_FILLED and answer.filled_quantity == 0.25
    assert router.get_order_status("e1").fills[0].trade_id == "E1"
    assert [(r.status, r.filled_quantity) for r in heard] == [
        (OrderStatus.NEW, 0.0), (OrderStatus.PARTIALLY_FILLED, 0.25),
    ]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_interleaving_of_one_orders_reports_keeps_its_state_true(data: st.DataObject) -> None:
    """Fills at the venue (tenths of 1.0), perhaps a cancel by the router at any point,
    and every report delivered in any order, some twice: filled never exceeds the
    quantity, no fill counts twice, a final state never changes, and at the end the
    router knows what the venue knows."""
    clock = VirtualClock(start=VIRTUAL_START)
    answer_fills = data.draw(st.booleans(), label="cancel answer lists fills")
    router, venue = scripted_router(clock, answer_fills)
    router.submit_order(limit("p1", 40_000.0, qty=1.0))
    tenths = data.draw(st.lists(st.integers(1, 4), max_size=6), label="fills (tenths)")
    reports, done = [], 0
    for i, n in enumerate(tenths):
        n = min(n, 10 - done)
        if n == 0:
            break
        done += n
        reports.append(venue.fill("p1", n / 10, f"T{i}"))
    traded = {r.fill.trade_id for r in reports if r.fill is not None}
    order = data.draw(st.permutations(reports), label="delivery order")
    again = data.draw(st.lists(st.sampled_from(reports), max_size=3) if reports else st.just([]),
                      label="delivered twice")
    deliveries: list[ExecutionReport | None] = [*order, *again]
    cancel_at = data.draw(st.none() | st.integers(0, len(deliveries)), label="cancel after")
    if cancel_at is not None:
        deliveries.insert(cancel_at, None)  # None: the router cancels here

    final: OrderStatus | None = None
    for report in deliveries:
        if report is None:
            router.cancel_order("p1")
        else:
            venue.deliver(report)
        now = router.get_order_status("p1")
        assert now.filled_quantity <= 1.0 + 1e-9
        ids = [f.trade_id for f in now.fills]
        assert len(ids) == len(set(ids)) and set(ids) <= traded
        if final is not None:
            assert now.status is final
        elif now.status.is_final:
            final = now.status

    now = router.get_order_status("p1")
    assert {f.trade_id for f in now.fills} == traded
    assert now.filled_quantity == pytest.approx(done / 10)
    expected = venue.finished.get("p1") or (OrderStatus.PARTIALLY_FILLED if done else OrderStatus.NEW)
    assert now.status is expected
    assert [r.order_id for r in router.working_orders()] == ([] if expected.is_final else ["p1"])


# -- cost per order -------------------------------------------------------------------------


def python_calls(fn: Any) -> int:
    """How many Python functions `fn()` runs: the work it does, counted, not timed."""
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    gc.collect()
    gc.disable()  # a collection would run other objects' finalizers inside the count
    sys.setprofile(count)
    try:
        fn()
    finally:
        sys.setprofile(None)
        gc.enable()
    return calls


@pytest.mark.parametrize("resting", [500, 2_000])
def test_an_orders_cost_does_not_depend_on_how_many_orders_rest(
    virtual_clock: VirtualClock, resting: int
) -> None:
    def calls_for_one_order(resting: int) -> int:
        venue = SimulatedExchange("sim", clock=virtual_clock)
        router = OrderRouter(clock=virtual_clock, remember_orders=50, max_latency_s=None)
        router.register_exchange("sim", venue)
        for i in range(resting):
            router.submit_order(limit(f"rest{i}", 40_000.0, qty=0.001))
        for i in range(60):  # past the memory's bound: finished orders move to history
            router.submit_order(market(f"warm{i}", side="BUY" if i % 2 else "SELL"))
        return python_calls(lambda: router.submit_order(market("measured")))

    assert calls_for_one_order(resting) == calls_for_one_order(0)
