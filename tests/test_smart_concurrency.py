"""SmartOrderRouter under concurrency: the same order routed by two callers at once goes
out once. The first pass moves the books, so a second plan would split the order
differently under the same child ids; the order id is claimed in the store from the
duplicate check to the last piece out, and the second caller gets the first's outcome."""

from __future__ import annotations

import threading
import time
from typing import Any

from engine import (
    FeeSchedule,
    MarketConfig,
    Order,
    OrderRouter,
    SimulatedExchange,
    SmartOrderRouter,
    UnknownOrderError,
    VirtualClock,
)

SYMBOL = "BTC/USD"
JOIN_TIMEOUT = 10.0


class _Gated:
    """A venue adapter whose first submit fills at the venue (the book moves) and then
    holds its answer until the test opens the gate."""

    def __init__(self, inner: SimulatedExchange) -> None:
        self.inner, self.name, self.fees = inner, inner.name, inner.fees
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.held = False

    def submit(self, order: Order) -> Any:
        result = self.inner.submit(order)
        if not self.held:
            self.held = True
            self.entered.set()
            assert self.gate.wait(JOIN_TIMEOUT), "the test never opened the gate"
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _until_parked(clock: VirtualClock, ident: int) -> None:
    """Block (in real time) until thread `ident` waits inside the clock (as in test_clock)."""
    deadline = time.monotonic() + JOIN_TIMEOUT
    while not clock.is_waiting(ident):
        assert time.monotonic() < deadline, "the second caller never waited for the first"
        time.sleep(0.0005)  # yield to the other threads; not a timing assumption


def test_the_same_order_routed_twice_at_once_goes_out_once(virtual_clock: VirtualClock) -> None:
    clock = virtual_clock
    thin = MarketConfig(level_notional=2_000.0, taker_rate_per_s=0.0)
    inner = {n: SimulatedExchange(n, clock=clock, seed=i, fees=FeeSchedule(0.0, 1.0), market=thin)
             for i, n in enumerate(["a", "b"])}
    gated = _Gated(inner["a"])
    router = OrderRouter(clock=clock, max_latency_s=None)
    router.register_exchange("a", gated)
    router.register_exchange("b", inner["b"])
    smart = SmartOrderRouter(router)
    ask = min(v.book(SYMBOL, 1).best_ask for v in inner.values())
    order = Order(id="big", symbol=SYMBOL, side="BUY", type="LIMIT", quantity=0.3, price=round(ask * 1.0001, 2))
    assert len(smart.plan(order)) > 1  # it is split

    answers: dict[str, list[Any]] = {}
    idents: dict[str, int] = {}

    def route(name: str) -> None:
        with clock.participate():
            idents[name] = threading.get_ident()
            answers[name] = smart.route_order(order)

    clock.expect_participant()
    first = threading.Thread(target=route, args=("first",), daemon=True)
    first.start()
    assert gated.entered.wait(JOIN_TIMEOUT)  # its first piece filled at "a"; no answer yet
    clock.expect_participant()
    second = threading.Thread(target=route, args=("second",), daemon=True)
    second.start()
    while "second" not in idents:
        time.sleep(0.0005)  # yield until the thread has told its id
    _until_parked(clock, idents["second"])
    gated.gate.set()
    first.join(JOIN_TIMEOUT)
    second.join(JOIN_TIMEOUT)
    assert not first.is_alive() and not second.is_alive()

    pieces = smart.store.split_pieces("big")
    assert pieces is not None and len(pieces) > 1
    # What the venues hold is exactly the recorded pieces, no more than the order's size.
    at_venues: dict[str, float] = {}
    for venue in inner.values():
        for oid in ("big", *pieces):
            try:
                at_venues[oid] = at_venues.get(oid, 0.0) + venue.status(oid).quantity
            except UnknownOrderError:
                pass
    assert set(at_venues) == set(pieces)
    assert sum(at_venues.values()) <= order.quantity + 1e-9
    # Both callers were told the same pieces.
    assert [r.order_id for r in answers["second"]] == [r.order_id for r in answers["first"]] == list(pieces)
    assert sum(v.counters.submitted for v in inner.values()) == len(pieces)
