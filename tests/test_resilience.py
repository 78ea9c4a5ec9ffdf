"""Resilience end to end, in virtual time: retries and reconciliation under
injected faults, the circuit breaker in the order path, the latency gate and
graceful degradation when every venue is down.

The breaker's own state machine is property-tested in tests/test_breaker.py
and the retry decisions in tests/test_retry.py; here they run inside the real
router against real simulated venues.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

import pytest

from engine import (
    AsyncOrderRouter,
    BreakerConfig,
    BreakerState,
    ExchangeClient,
    FaultConfig,
    LatencyModel,
    Order,
    OrderResult,
    OrderRouter,
    OrderStatus,
    RetryPolicy,
    SimulatedExchange,
    SmartOrderRouter,
    UnknownOrderError,
    VirtualClock,
)
from engine.events import BreakerStateChanged, Event
from tests.conftest import virtual_anyio_backend

SYMBOL = "BTC/USD"


def market(i: int, qty: float = 0.001, prefix: str = "o") -> Order:
    return Order(
        id=f"{prefix}{i}", symbol=SYMBOL, side="BUY" if i % 2 == 0 else "SELL",
        type="MARKET", quantity=qty,
    )


# -- faults in virtual time ---------------------------------------------------------------


class _Counting:
    """A venue client that counts the requests the router makes, per client order id."""

    def __init__(self, client: ExchangeClient) -> None:
        self.client = client
        self.submits: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()

    def submit(self, order: Order) -> OrderResult:
        self.submits[order.client_order_id] += 1
        return self.client.submit(order)

    def status(self, cid: str) -> OrderResult:
        self.statuses[cid] += 1
        return self.client.status(cid)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_ten_thousand_orders_under_faults_end_in_one_final_state_each(
    virtual_clock: VirtualClock,
) -> None:
    """20% transient errors and 5% timeouts on three venues, then faults cleared.

    A status query may fail too (same 20%), and the policy allows one status
    query per timeout, so some outcomes stay unknown until reconcile_pending()
    runs after the faults are gone: both reconciliation paths are exercised.
    """
    clock = virtual_clock
    n = 10_000
    venues = [
        SimulatedExchange(
            f"v{i}", clock=clock, seed=i,
            latency=LatencyModel(median_s=0.001, p99_s=0.005),
            faults=FaultConfig(error_rate=0.2, timeout_rate=0.05, timeout_s=0.5),
        )
        for i in range(3)
    ]
    router = OrderRouter(
        clock=clock,
        retry_policy=RetryPolicy(max_retries=3, retry_delay=0.01, reconcile_max_attempts=1),
    )
    clients = [_Counting(ExchangeClient(venue)) for venue in venues]
    for venue, client in zip(venues, clients):
        router.register_exchange(venue.name, client)
    updates: dict[str, list[OrderStatus]] = defaultdict(list)
    router.add_order_listener(lambda r: updates[r.order_id].append(r.status))

    orders = [market(i) for i in range(n)]
    first = [router.submit_order(o, venues[i % 3].name) for i, o in enumerate(orders)]
    first_counts = Counter(r.status for r in first)
    pending_after_submit = len(router.unreconciled)
    # Only the two legitimate answers under faults: final, or outcome unknown.
    assert set(first_counts) <= {OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.PENDING_NEW}
    assert first_counts[OrderStatus.PENDING_NEW] == pending_after_submit > 0

    for venue in venues:
        venue.faults = FaultConfig()
        venue.latency = LatencyModel()
    rounds = 0
    while router.unreconciled:
        router.reconcile_pending()
        rounds += 1
        assert rounds <= 3, "reconciliation must finish once the venues answer"

    final = {o.id: router.get_order_status(o.id) for o in orders}
    counts = Counter(r.status for r in final.values())
    stats = [router.venue_stats(v.name) for v in venues]
    resends = sum(s.retried for s in stats)
    unknown_outcomes = sum(s.reconciled for s in stats)
    sends = Counter({cid: k for c in clients for cid, k in c.submits.items()})
    queried = {cid for c in clients for cid in c.statuses}
    retried = sum(1 for k in sends.values() if k > 1)
    print(
        f"\nfaults: {n} orders; {retried} orders retried ({resends} resends), {len(queried)} orders "
        f"reconciled by status query ({unknown_outcomes} timeouts), {pending_after_submit} still "
        f"unknown after submit, final states {dict((s.value, c) for s, c in counts.items())}"
    )
    assert retried > 0 and queried and unknown_outcomes > 0
    assert max(sends.values()) <= router.retry_policy.max_retries + 1
    assert set(router.unreconciled) == set()

    # Every order ends in exactly one final state, and listeners heard it once.
    for oid, result in final.items():
        assert result.status.is_final, (oid, result)
        finals = [s for s in updates[oid] if s.is_final]
        assert finals == [result.status], (oid, updates[oid])
        if result.status is OrderStatus.REJECTED:
            assert result.reason
    assert set(counts) <= {OrderStatus.FILLED, OrderStatus.REJECTED}
    refused = counts[OrderStatus.REJECTED]
    assert counts[OrderStatus.FILLED] == n - refused

    # The venues together hold exactly one order per client order id.
    for venue in venues:
        assert venue.counters.rejected == 0, f"{venue.name} saw a duplicate client order id"
    accepted = sum(v.counters.submitted - v.counters.rejected for v in venues)
    assert accepted == n - refused
    for i, order in enumerate(orders):
        holders = []
        for venue in venues:
            try:
                status = venue.status(order.id)
            except UnknownOrderError:
                continue
            holders.append(venue.name)
            assert status.filled_quantity == pytest.approx(order.quantity)
        if final[order.id].status is OrderStatus.REJECTED:
            assert holders == [], (order.id, final[order.id].reason)
        else:
            assert holders == [venues[i % 3].name]


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> Any:
    return virtual_anyio_backend(virtual_clock)


@pytest.mark.anyio
async def test_the_async_router_under_faults_with_concurrent_orders(virtual_clock: VirtualClock) -> None:
    """The same decision loop, driven by the async driver, many orders at once."""
    clock = virtual_clock
    venues = [
        SimulatedExchange(
            f"a{i}", clock=clock, seed=10 + i, latency=LatencyModel(median_s=0.002, p99_s=0.01),
            faults=FaultConfig(error_rate=0.2, timeout_rate=0.05, timeout_s=0.5),
        )
        for i in range(3)
    ]
    router = AsyncOrderRouter(
        clock=clock,
        retry_policy=RetryPolicy(max_retries=3, retry_delay=0.01, reconcile_max_attempts=1),
    )
    for venue in venues:
        router.register_exchange(venue.name, venue)
    n = 600
    orders = [market(i, prefix="c") for i in range(n)]
    results = []
    for k, venue in enumerate(venues):  # each batch sent concurrently to one venue
        results += await router.submit_orders_async(orders[k::3], venue.name)
    assert len(results) == n and router.unreconciled
    for venue in venues:
        venue.faults = FaultConfig()
    while router.unreconciled:
        await router.reconcile_pending_async()
    final = {o.id: router.get_order_status(o.id) for o in orders}
    assert all(r.status in (OrderStatus.FILLED, OrderStatus.REJECTED) for r in final.values())
    assert sum(v.counters.rejected for v in venues) == 0
    filled = sum(r.status is OrderStatus.FILLED for r in final.values())
    assert sum(v.counters.submitted for v in venues) == filled
    for k, order in enumerate(orders):
        held = []
        for venue in venues:
            try:
                venue.status(order.id)
                held.append(venue.name)
            except UnknownOrderError:
                pass
        assert held == ([venues[k % 3].name] if final[order.id].status is OrderStatus.FILLED else [])
    assert sum(router.venue_stats(v.name).retried for v in venues) > 0


# -- the breaker in the order path ----------------------------------------------------------


def _breaker_events(events: list[Event], venue: str) -> list[BreakerStateChanged]:
    return [e for e in events if isinstance(e, BreakerStateChanged) and e.venue == venue]


def test_an_outage_opens_the_breaker_refuses_at_once_then_half_opens_and_closes(
    virtual_clock: VirtualClock,
) -> None:
    clock = virtual_clock
    venue = SimulatedExchange("down", clock=clock, seed=1)
    events: list[Event] = []
    config = BreakerConfig(minimum_calls=10, wait_duration_open_s=5.0, permitted_calls_half_open=3)
    router = OrderRouter(clock=clock, max_retries=2, retry_delay=0.01, breaker_config=config,
                         on_event=events.append)
    router.register_exchange("down", venue)
    breaker = router.breaker("down")

    venue.start_outage(3600.0)
    results = []
    for i in range(20):
        results.append(router.submit_order(market(i), "down"))
        if breaker.state is BreakerState.OPEN:
            break
    assert breaker.state is BreakerState.OPEN
    assert all(r.status is OrderStatus.REJECTED and r.reason for r in results)
    opened = _breaker_events(events, "down")
    assert [(e.old_state, e.new_state) for e in opened] == [("CLOSED", "OPEN")]
    assert "failure rate" in opened[0].reason

    # While OPEN: refused at once, no venue call, no retry sleep.
    submitted_before, t = venue.counters.errors.copy(), clock.now()
    refused = router.submit_order(market(100), "down")
    assert refused.status is OrderStatus.REJECTED
    assert "down" in refused.reason and "circuit breaker" in refused.reason and "OPEN" in refused.reason
    assert clock.now() == t
    assert venue.counters.errors == submitted_before

    # After the wait, with the venue recovered: HALF_OPEN trials, then CLOSED.
    venue.end_outage()
    clock.sleep(config.wait_duration_open_s)
    trials = [router.submit_order(market(200 + i), "down") for i in range(3)]
    assert [r.status for r in trials] == [OrderStatus.FILLED] * 3
    assert breaker.state is BreakerState.CLOSED
    moves = [(e.old_state, e.new_state) for e in _breaker_events(events, "down")]
    assert moves == [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]
    assert all(e.reason for e in _breaker_events(events, "down"))


def test_a_venue_still_failing_in_half_open_opens_again(virtual_clock: VirtualClock) -> None:
    clock = virtual_clock
    venue = SimulatedExchange("flaky", clock=clock, seed=2)
    events: list[Event] = []
    config = BreakerConfig(minimum_calls=10, wait_duration_open_s=5.0)
    router = OrderRouter(clock=clock, max_retries=0, breaker_config=config, on_event=events.append)
    router.register_exchange("flaky", venue)
    venue.set_faults(error_rate=1.0)
    for i in range(10):
        router.submit_order(market(i), "flaky")
    assert router.breaker("flaky").state is BreakerState.OPEN
    clock.sleep(5.0)
    # Two failed trials of three at a 50% threshold: the verdict is certain.
    trials = [router.submit_order(market(50 + i), "flaky") for i in range(2)]
    assert all(r.status is OrderStatus.REJECTED for r in trials)
    assert router.breaker("flaky").state is BreakerState.OPEN
    moves = [(e.old_state, e.new_state) for e in _breaker_events(events, "flaky")]
    assert moves[-2:] == [("OPEN", "HALF_OPEN"), ("HALF_OPEN", "OPEN")]
    assert "half-open" in _breaker_events(events, "flaky")[-1].reason


class _AdapterBug:
    """A venue adapter whose submit raises a plain RuntimeError for ids starting "boom"."""

    def __init__(self, inner: SimulatedExchange) -> None:
        self.inner, self.name, self.fees = inner, inner.name, inner.fees

    def submit(self, order: Order) -> OrderResult:
        if order.id.startswith("boom"):
            raise RuntimeError("adapter bug")
        return self.inner.submit(order)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_an_adapter_bug_during_half_open_does_not_wedge_the_breaker(virtual_clock: VirtualClock) -> None:
    clock = virtual_clock
    venue = SimulatedExchange("v", clock=clock)
    router = OrderRouter(clock=clock, max_retries=0,
                         breaker_config=BreakerConfig(minimum_calls=5, wait_duration_open_s=1.0))
    router.register_exchange("v", _AdapterBug(venue))
    venue.set_faults(error_rate=1.0)
    for i in range(5):
        router.submit_order(market(i), "v")
    assert router.breaker("v").state is BreakerState.OPEN
    venue.set_faults(error_rate=0.0)
    clock.sleep(1.0)
    with pytest.raises(RuntimeError, match="adapter bug"):
        router.submit_order(market(0, prefix="boom"), "v")  # takes a half-open trial slot
    results = [router.submit_order(market(10 + i), "v") for i in range(5)]
    assert [r.status for r in results] == [OrderStatus.FILLED] * 5
    assert router.breaker("v").state is BreakerState.CLOSED


# -- the latency gate ----------------------------------------------------------------------


def test_a_slow_venue_is_refused_naming_venue_figure_and_limit(virtual_clock: VirtualClock) -> None:
    clock = virtual_clock
    slow = SimulatedExchange("slow", clock=clock, seed=3, latency=LatencyModel(median_s=0.8))
    router = OrderRouter(clock=clock, max_latency_s=0.5)
    router.register_exchange("slow", slow)
    results = []
    for i in range(20):
        results.append(router.submit_order(market(i), "slow"))
        if results[-1].status is OrderStatus.REJECTED:
            break
    gated = results[-1]
    assert gated.status is OrderStatus.REJECTED, "the latency gate never closed"
    assert all(r.status is OrderStatus.FILLED for r in results[:-1])
    assert len(results) >= 6  # at least five measurements before judging
    reason = gated.reason
    assert reason.startswith("slow latency p95")
    figure = float(re.search(r"p95 ([\d.]+) ms", reason).group(1))
    assert figure == pytest.approx(800, rel=0.02)
    assert "over the limit 500 ms" in reason
    # Refused before the venue saw it: no venue call, no time spent.
    t, submitted = clock.now(), slow.counters.submitted
    again = router.submit_order(market(99), "slow")
    assert again.status is OrderStatus.REJECTED and again.reason.startswith("slow latency p95")
    assert (clock.now(), slow.counters.submitted) == (t, submitted)


def test_the_smart_router_routes_around_a_slow_venue(virtual_clock: VirtualClock) -> None:
    clock = virtual_clock
    # The slow venue is the cheaper one: without the gate it would win.
    from engine import FeeSchedule

    slow = SimulatedExchange("slow", clock=clock, seed=3, latency=LatencyModel(median_s=0.8),
                             fees=FeeSchedule(0.0, 0.0))
    fast = SimulatedExchange("fast", clock=clock, seed=3, fees=FeeSchedule(0.0, 20.0))
    router = OrderRouter(clock=clock, max_latency_s=0.5)
    router.register_exchange("slow", slow)
    router.register_exchange("fast", fast)
    smart = SmartOrderRouter(order_router=router)
    [before] = smart.route_order(market(0))
    assert before.exchange_id == "slow"
    for i in range(1, 20):  # measure the slow venue until the gate closes
        if router.submit_order(market(i), "slow").status is OrderStatus.REJECTED:
            break
    assert router.latency_gate("slow") is not None
    [after] = smart.route_order(market(100))
    assert after.status is OrderStatus.FILLED
    assert after.exchange_id == "fast"
    assert smart.routing_reason(after.order_id).startswith("fast")


# -- graceful degradation ------------------------------------------------------------------


def test_one_venue_down_the_others_keep_trading(virtual_clock: VirtualClock) -> None:
    clock = virtual_clock
    venues = {name: SimulatedExchange(name, clock=clock, seed=i) for i, name in enumerate("abc")}
    router = OrderRouter(clock=clock, max_retries=1, retry_delay=0.01,
                         breaker_config=BreakerConfig(minimum_calls=5))
    for name, venue in venues.items():
        router.register_exchange(name, venue)
    venues["a"].start_outage(3600.0)
    smart = SmartOrderRouter(order_router=router)
    for i in range(10):  # trip a's breaker through its own failures
        router.submit_order(market(i), "a")
    assert router.breaker("a").state is BreakerState.OPEN
    results = [r for i in range(30) for r in smart.route_order(market(100 + i))]
    assert all(r.status is OrderStatus.FILLED for r in results)
    assert {r.exchange_id for r in results} <= {"b", "c"}


def test_all_venues_down_is_refused_at_once_saying_so(virtual_clock: VirtualClock) -> None:
    clock = virtual_clock
    venues = {name: SimulatedExchange(name, clock=clock, seed=i) for i, name in enumerate("abc")}
    router = OrderRouter(clock=clock, max_retries=1, retry_delay=0.01,
                         breaker_config=BreakerConfig(minimum_calls=5))
    for name, venue in venues.items():
        router.register_exchange(name, venue)
    smart = SmartOrderRouter(order_router=router)
    router.disable_exchange("a", "maintenance")
    router.breaker("b").force_open("operator pulled it")
    venues["c"].start_outage(3600.0)
    for i in range(10):
        router.submit_order(market(i), "c")
    assert router.breaker("c").state is BreakerState.OPEN

    t = clock.now()
    calls = {name: v.counters.submitted for name, v in venues.items()}
    [result] = smart.route_order(market(1000))
    assert result.status is OrderStatus.REJECTED
    assert clock.now() == t, "an all-down rejection must not wait or retry"
    assert {name: v.counters.submitted for name, v in venues.items()} == calls
    reason = result.reason
    assert reason.startswith("no venue can take BTC/USD now")
    assert "a is disabled (maintenance)" in reason
    assert "b circuit breaker is OPEN" in reason
    assert "c circuit breaker is OPEN" in reason
    # Each venue directly: refused at once too.
    for name in "abc":
        direct = router.submit_order(market(2000 + ord(name)), name)
        assert direct.status is OrderStatus.REJECTED and name in direct.reason
    assert clock.now() == t
