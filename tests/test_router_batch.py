"""OrderRouter.submit_orders: one admission pass, one venue request per venue, a result per
order in order, and one bad order never sinks the rest."""

from __future__ import annotations

from typing import Any

from engine import ExchangeClient, FaultConfig, Order, OrderRouter, OrderStatus, SimulatedExchange, VirtualClock
from engine.events import Event, OrderSubmitted

SYMBOL = "BTC/USD"


class _Counting(ExchangeClient):
    def __init__(self, venue: SimulatedExchange) -> None:
        super().__init__(venue)
        self.batches: list[int] = []
        self.singles = 0
        self.explode = False

    def submit_many(self, orders: Any) -> Any:
        if self.explode:
            raise RuntimeError("venue adapter bug")
        self.batches.append(len(orders))
        return super().submit_many(orders)

    def submit(self, order: Order) -> Any:
        self.singles += 1
        return super().submit(order)


def market(oid: str, side: str = "BUY", qty: float = 0.01) -> Order:
    return Order(id=oid, symbol=SYMBOL, side=side, type="MARKET", quantity=qty)


def _router(clock: VirtualClock, **venue_kwargs: Any) -> tuple[OrderRouter, dict[str, _Counting]]:
    router = OrderRouter(clock=clock, max_latency_s=None)
    clients = {}
    for i, name in enumerate(("a", "b")):
        clients[name] = _Counting(SimulatedExchange(name, clock=clock, seed=i, **venue_kwargs))
        router.register_exchange(name, clients[name])
    return router, clients


def test_a_batch_is_one_request_per_venue_with_a_result_per_order_in_order(virtual_clock: VirtualClock) -> None:
    router, clients = _router(virtual_clock)
    orders = [market(f"m{i}", "BUY" if i % 2 else "SELL") for i in range(10)]

    results = router.submit_orders(orders, "a")

    assert [r.order_id for r in results] == [o.id for o in orders]
    assert all(r.status is OrderStatus.FILLED and r.exchange_id == "a" for r in results)
    assert clients["a"].batches == [10] and clients["a"].singles == 0 and clients["b"].batches == []
    assert all(router.get_order_status(o.id).status is OrderStatus.FILLED for o in orders)


def test_a_batch_publishes_every_order_in_order(virtual_clock: VirtualClock) -> None:
    router, _ = _router(virtual_clock)
    events: list[Event] = []
    router.store.subscribe(events.append)

    router.submit_orders([market(f"e{i}") for i in range(5)], "b")

    assert [e.order_id for e in events if isinstance(e, OrderSubmitted)] == [f"e{i}" for i in range(5)]


def test_an_id_twice_in_a_batch_is_sent_once(virtual_clock: VirtualClock) -> None:
    router, clients = _router(virtual_clock)
    order = market("twice")

    first, second = router.submit_orders([order, order], "a")

    assert first.status is OrderStatus.FILLED and second.status is OrderStatus.FILLED
    assert second.filled_quantity == first.filled_quantity and clients["a"].batches in ([1], [])
    assert clients["a"].venue.counters.submitted == 1


def test_refusals_in_a_batch_cost_only_their_own_order(virtual_clock: VirtualClock) -> None:
    router, clients = _router(virtual_clock)
    router.disable_exchange("b", "maintenance")
    orders = [market("ok-1"), Order(id="bad-sym", symbol="DOGE/USD", side="BUY", type="MARKET", quantity=1.0),
              market("ok-2")]

    results = router.submit_orders(orders, "a") + router.submit_orders([market("to-b")], "b")

    assert [r.status for r in results] == [OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.FILLED,
                                           OrderStatus.REJECTED]
    assert "unknown symbol 'DOGE/USD'" in (results[1].reason or "")
    assert results[3].reason == "b is disabled (maintenance)"


def test_a_fault_on_one_order_of_a_batch_is_retried_alone(virtual_clock: VirtualClock) -> None:
    router, clients = _router(virtual_clock, faults=FaultConfig(error_rate=0.3))
    orders = [market(f"f{i}", "BUY" if i % 2 else "SELL") for i in range(40)]

    results = router.submit_orders(orders, "a")

    venue = clients["a"].venue
    assert venue.counters.errors.get("TransientVenueError", 0) > 0  # faults did happen
    assert [r.order_id for r in results] == [o.id for o in orders]
    filled = [r for r in results if r.status is OrderStatus.FILLED]
    assert len(filled) >= 30  # retried after transient errors
    assert venue.counters.filled == len(filled)  # and never filled twice


def test_a_broken_venue_adapter_fails_its_batch_and_the_router_carries_on(virtual_clock: VirtualClock) -> None:
    router, clients = _router(virtual_clock)
    clients["a"].explode = True

    results = router.submit_orders([market("x1"), market("x2")], "a")

    assert [r.status for r in results] == [OrderStatus.REJECTED] * 2
    assert all("internal error: venue adapter bug" in (r.reason or "") for r in results)
    clients["a"].explode = False
    assert router.submit_orders([market("x3"), market("x4")], "a")[1].status is OrderStatus.FILLED


def test_a_batch_item_that_is_not_an_order_is_refused_in_its_place(virtual_clock: VirtualClock) -> None:
    router, clients = _router(virtual_clock)

    results = router.submit_orders([market("g1"), None, {"id": "x"}, market("g2")], "a")  # type: ignore[list-item]

    assert [r.status for r in results] == [OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.REJECTED,
                                           OrderStatus.FILLED]
    assert results[1].reason == "batch item 1 is not an Order: got NoneType"
    assert results[2].reason == "batch item 2 is not an Order: got dict"
    assert router.working_orders() == []  # nothing stranded in flight


class _PlainVenue:
    """A venue with submit() but no submit_many(), registered directly (no client)."""

    def __init__(self, venue: SimulatedExchange) -> None:
        self.venue = venue
        self.name, self.fees = venue.name, venue.fees

    def __getattr__(self, name: str) -> Any:
        if name == "submit_many":
            raise AttributeError(name)
        return getattr(self.venue, name)


def test_a_venue_without_submit_many_takes_a_batch_one_order_at_a_time(virtual_clock: VirtualClock) -> None:
    router = OrderRouter(clock=virtual_clock, max_latency_s=None)
    venue = SimulatedExchange("p", clock=virtual_clock, seed=3)
    router.register_exchange("p", _PlainVenue(venue))

    results = router.submit_orders([market(f"p{i}") for i in range(3)], "p")

    assert [r.status for r in results] == [OrderStatus.FILLED] * 3 and venue.counters.submitted == 3


def test_an_exchange_id_that_is_not_a_name_is_refused_in_words(virtual_clock: VirtualClock) -> None:
    router, _ = _router(virtual_clock)

    result = router.submit_orders([market("n1")], ["a"])[0]  # type: ignore[arg-type]

    assert result.status is OrderStatus.REJECTED
    assert result.reason == "exchange_id must be a venue's name (a string), got list ['a']"
    assert router.get_order_status(["a"]).reason == "an order id is a string, got list ['a']"  # type: ignore[arg-type]
