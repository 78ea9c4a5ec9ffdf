"""Finished orders kept compactly: what the engine remembers still answers the same,
and it no longer holds live objects for the garbage collector to walk."""

from __future__ import annotations

import dataclasses
import gc
import pickle
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.history as history_module
import engine.store as store_module
import engine.routing.smart as smart_module
from engine import Order, OrderResult, OrderRouter, OrderStatus, SimulatedExchange, SmartOrderRouter, VirtualClock
from engine.history import History
from engine.models import (
    Fill,
    Liquidity,
    OrderSide,
    compact_order,
    compact_result,
    order_from_compact,
    result_from_compact,
)

SYMBOL = "BTC/USD"


def market(oid: str, qty: float = 0.01, side: str = "BUY") -> Order:
    return Order(id=oid, symbol=SYMBOL, side=side, type="MARKET", quantity=qty)


# -- History ------------------------------------------------------------------------------


def test_history_gives_back_an_equal_copy_and_forgets_its_oldest_past_the_limit() -> None:
    history: History[OrderResult] = History(limit=2)
    first = OrderResult("a", "x", OrderStatus.FILLED, 1.0, 1.0, 10.0)
    history.put("a", first)
    history.put("b", OrderResult("b", "x", OrderStatus.CANCELED, 2.0))
    copy = history.get("a")
    assert copy == first and copy is not first
    history.put("a", first)  # put again: now the newest
    history.put("c", OrderResult("c", "x", OrderStatus.REJECTED, 3.0, reason="no"))
    assert list(history) == ["a", "c"] and "b" not in history and history.get("b") is None
    assert history.pop("a") == first and "a" not in history and len(history) == 1


def test_the_newest_records_stay_as_they_are_older_ones_come_back_as_copies() -> None:
    history: History[OrderResult] = History(limit=3, live=1)
    a, b = OrderResult("a", "x", OrderStatus.FILLED, 1.0), OrderResult("b", "x", OrderStatus.FILLED, 2.0)
    history.put("a", a)
    assert history.get("a") is a and history.kept("a") is None  # the newest: not pickled
    history.put("b", b)
    assert history.get("b") is b and history.get("a") == a and history.get("a") is not a
    assert isinstance(history.kept("a"), bytes) and history.kept("b") is None
    history.put("c", OrderResult("c", "x", OrderStatus.FILLED, 3.0))
    history.put("d", OrderResult("d", "x", OrderStatus.FILLED, 4.0))
    assert list(history) == ["b", "c", "d"] and len(history) == 3  # the limit counts both kinds


def test_a_record_that_cannot_be_pickled_is_kept_live_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    import threading

    history: History[OrderResult] = History(limit=5)
    odd = OrderResult("odd", "x", OrderStatus.FILLED, 1.0, detail={"raw": threading.Lock()})
    history.put("odd", odd)
    assert history.get("odd") is odd and history.kept("odd") is None
    assert "history keeps 'odd' as a live object: it cannot be pickled (TypeError" in caplog.text


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(["MARKET", "LIMIT", "TWAP"]),
    side=st.sampled_from(["BUY", "SELL"]),
    tif=st.sampled_from(["GTC", "IOC", "DAY"]),
    qty=st.floats(0.001, 1e6),
    price=st.floats(0.01, 1e6),
    status=st.sampled_from(list(OrderStatus)),
    fills=st.lists(st.tuples(st.floats(0.01, 1e6), st.floats(0.001, 10.0), st.sampled_from(list(Liquidity))), max_size=4),
    reason=st.one_of(st.none(), st.text(max_size=20)),
    children=st.integers(0, 3),
    detail=st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=5)), max_size=3),
)
def test_the_compact_forms_build_equal_orders_and_results(
    kind: str, side: str, tif: str, qty: float, price: float, status: OrderStatus,
    fills: list[tuple[float, float, Liquidity]], reason: str | None, children: int, detail: dict,
) -> None:
    meta = {"duration_s": 60, "slices": 4} if kind == "TWAP" else {}
    order = Order(id="o-1", symbol=SYMBOL, side=side, type=kind, quantity=qty,
                  price=None if kind == "MARKET" else price, time_in_force=tif if kind != "TWAP" else "GTC",
                  metadata=meta, client_order_id="o-1.c", parent_id="p-1")
    back = order_from_compact(compact_order(order))
    assert back == order and back.model_fields_set == order.model_fields_set
    assert back.model_dump(exclude_unset=True) == order.model_dump(exclude_unset=True)
    made = [Fill("o-1", "x-1", SYMBOL, OrderSide(side), p, q, p * q * 1e-4, liq, 1.5 + n, f"t{n}")
            for n, (p, q, liq) in enumerate(fills)]
    result = OrderResult("o-1", "x-1", status, qty, sum(q for _, q, _ in fills), price, made, reason, SYMBOL,
                         OrderSide(side), price, 12.5, 1_000, None,
                         children=[OrderResult(f"o-1.{n}", None, OrderStatus.REJECTED, reason="no") for n in range(children)],
                         detail=detail)
    back = result_from_compact(compact_result(result))
    assert back == result
    assert all(type(f.side) is OrderSide and type(f.liquidity) is Liquidity for f in back.fills)


def test_a_packed_history_keeps_the_small_form_and_gives_back_the_record() -> None:
    history: History[Order] = History(limit=5, pack=compact_order, unpack=order_from_compact)
    order = market("m-1")
    history.put("m-1", order)
    kept = history.kept("m-1")
    assert isinstance(kept, bytes) and len(kept) < len(pickle.dumps(order, pickle.HIGHEST_PROTOCOL)) / 2
    assert history.get("m-1") == order and history.pop("m-1") == order
    with pytest.raises(ValueError, match="pack and unpack go together"):
        History(limit=5, pack=compact_order)



def test_a_long_record_is_kept_in_pieces_the_small_object_allocator_serves() -> None:
    # Records from malloc, freed in another order than made, left the C heap full of holes.
    history: History[object] = History(limit=5)
    long_record = {"fills": [(f"fill-{i}", 50_000.0 + i, 0.01 * i) for i in range(60)]}
    history.put("long", long_record)
    history.put("short", ("s", 1.0))
    pieces = history.kept("long")
    assert isinstance(pieces, tuple) and len(pieces) > 2
    assert all(sys.getsizeof(piece) <= 512 for piece in pieces)
    assert b"".join(pieces) == pickle.dumps(long_record, pickle.HIGHEST_PROTOCOL)
    short = history.kept("short")
    assert isinstance(short, bytes) and sys.getsizeof(short) <= 512
    assert history.get("long") == long_record and history.pop("long") == long_record
    assert history.get("short") == ("s", 1.0) and "long" not in history


def test_a_short_record_is_kept_as_a_copy_not_as_the_block_dumps_wrote(monkeypatch: pytest.MonkeyPatch) -> None:
    # dumps' result is a 4 KiB malloc block shrunk in place: kept, it pins a hole behind it.
    written = b"\x80\x05K\x07."  # what pickle.dumps(7) writes
    monkeypatch.setattr(history_module.pickle, "dumps", lambda value, protocol: written)
    history: History[int] = History(limit=5)
    history.put("k", 7)
    assert history.kept("k") == written and history.kept("k") is not written
    assert history.get("k") == 7

def test_history_with_no_room_keeps_nothing_and_a_negative_limit_is_refused() -> None:
    empty: History[int] = History(limit=0)
    empty.put("a", 1)
    assert len(empty) == 0 and empty.get("a") is None
    with pytest.raises(ValueError, match="limit must be >= 0, got -1"):
        History(limit=-1)


# -- the router ----------------------------------------------------------------------------


def one_venue_router(clock: VirtualClock, remember: int) -> tuple[OrderRouter, SimulatedExchange]:
    venue = SimulatedExchange("a", clock=clock)
    router = OrderRouter(clock=clock, remember_orders=remember)
    router.register_exchange("a", venue)
    return router, venue


@pytest.fixture
def small_live_window(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(store_module, "LIVE_FINISHED_ORDERS", 2)
    return 2


def test_orders_past_the_live_window_answer_as_before_and_old_ones_expire(
    virtual_clock: VirtualClock, small_live_window: int
) -> None:
    router, venue = one_venue_router(virtual_clock, 5)
    working = Order(id="w", symbol=SYMBOL, side="BUY", type="LIMIT", quantity=0.01, price=40_000.0)
    router.submit_order(working)
    sent = {f"f{i}": router.submit_order(market(f"f{i}", side="BUY" if i % 2 else "SELL")) for i in range(8)}
    # Live: the working order and the newest finished ones, answered as they are; the
    # rest are history, answered with equal copies.
    assert [router.get_order_status(oid) is sent[oid] for oid in ("f6", "f7")] == [True, True]
    for oid in ("f3", "f4", "f5"):
        again = router.get_order_status(oid)
        assert again is not sent[oid]
        assert dataclasses.asdict(again) == dataclasses.asdict(sent[oid])  # fills, prices, status
        assert again.status is OrderStatus.FILLED and again.fills
    for oid in ("f0", "f1", "f2"):
        assert "expired from memory" in router.get_order_status(oid).reason
    assert router.get_order_status("w").status is OrderStatus.NEW


def test_idempotency_and_refusals_hold_for_an_order_in_history(
    virtual_clock: VirtualClock, small_live_window: int
) -> None:
    router, venue = one_venue_router(virtual_clock, 10)
    first = router.submit_order(market("old", qty=0.01))
    for i in range(5):
        router.submit_order(market(f"n{i}", side="SELL" if i % 2 else "BUY"))
    assert router.get_order_status("old") is not first  # a copy: it is in history
    again = router.submit_order(market("old", qty=0.01))
    assert again.status is OrderStatus.FILLED and again.filled_quantity == first.filled_quantity
    other = router.submit_order(market("old", qty=0.02))
    assert other.status is OrderStatus.REJECTED
    assert other.reason == "client order id 'old' was already used for a different order"
    assert router.cancel_order("old").status is OrderStatus.REJECTED
    assert venue.counters.submitted == 6  # nothing was sent twice


def test_finished_orders_in_history_hold_no_live_results(
    virtual_clock: VirtualClock, small_live_window: int
) -> None:
    router, venue = one_venue_router(virtual_clock, 1_000)
    for i in range(300):
        router.submit_order(market(f"o{i}", side="BUY" if i % 2 else "SELL"))
    gc.collect()
    live = sum(1 for o in gc.get_objects() if isinstance(o, OrderResult) and o.order_id.startswith("o"))
    assert live <= small_live_window + 5, f"{live} of 300 finished results still live"
    assert router.get_order_status("o0").status is OrderStatus.FILLED


# -- the smart router's reasons ------------------------------------------------------------


def test_older_routing_reasons_become_text_and_read_the_same(
    virtual_clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(smart_module, "LAZY_REASONS", 3)
    router = OrderRouter(clock=virtual_clock)
    for name in ("a", "b"):
        router.register_exchange(name, SimulatedExchange(name, clock=virtual_clock, seed=len(name)))
    smart = SmartOrderRouter(router, clock=virtual_clock)
    said = {}
    for i in range(10):
        order = market(f"s{i}", side="BUY" if i % 2 else "SELL")
        results = smart.route_order(order)
        said[i] = [smart.routing_reason(r.order_id) for r in results]
        assert all(said[i]), said[i]
    for i in range(10):
        ids = [cid for cid in smart.last_reasons if cid == f"s{i}" or cid.startswith(f"s{i}.")]
        assert [smart.routing_reason(cid) for cid in ids] == said[i]
    oldest = next(iter(smart.last_reasons))
    assert isinstance(smart.last_reasons[oldest], str)


def test_reading_statuses_from_two_threads_never_loses_an_order_in_history(
    virtual_clock: VirtualClock, small_live_window: int
) -> None:
    import threading

    router, venue = one_venue_router(virtual_clock, 1_000)
    ids = [f"o{i}" for i in range(200)]
    for i, oid in enumerate(ids):
        router.submit_order(market(oid, side="BUY" if i % 2 else "SELL"))
    unknown: list[str] = []

    def read() -> None:
        for _ in range(5):
            for oid in ids:
                if router.get_order_status(oid).status is not OrderStatus.FILLED:
                    unknown.append(oid)
            router.working_orders()

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert unknown == []
    # Reading brought nothing back to life: old orders still answer with fresh copies.
    assert router.get_order_status("o0") is not router.get_order_status("o0")
    assert router.get_order_status("o199") is router.get_order_status("o199")


@pytest.mark.anyio
async def test_the_working_list_does_not_rebuild_finished_orders(small_live_window: int) -> None:
    from engine import Engine, LatencyModel
    from engine.engine import DEFAULT_VENUES, VenueSpec

    specs = tuple(VenueSpec(s.name, s.fees, LatencyModel(), s.market) for s in DEFAULT_VENUES)
    engine = Engine.default(seed=1, specs=specs)
    await engine.start(num_workers=2)
    for i in range(40):
        await engine.submit(market(f"w{i}", side="BUY" if i % 2 else "SELL"))
    for i in range(40):
        await engine.wait(f"w{i}", timeout=5)
    assert engine.working() == []
    # Nothing came back to life: an old order still answers with a fresh copy each time.
    router = engine.router
    assert router.get_order_status("w0").status is OrderStatus.FILLED
    assert router.get_order_status("w0") is not router.get_order_status("w0")
    await engine.stop()


def test_packed_gives_a_pickled_records_packed_form_without_building_it_back() -> None:
    history: History[Order] = History(limit=5, live=1, pack=compact_order, unpack=order_from_compact)
    first, second = market("p-1"), market("p-2")
    history.put("p-1", first)
    assert history.packed("p-1") is None  # the newest is kept as it is
    history.put("p-2", second)
    assert history.packed("p-1") == compact_order(first) and history.packed("p-2") is None
    assert history.packed("nobody") is None
    long_history: History[object] = History(limit=5)
    long_record = {"fills": [(f"fill-{i}", 50_000.0 + i, 0.01 * i) for i in range(60)]}
    long_history.put("long", long_record)
    assert isinstance(long_history.kept("long"), tuple) and long_history.packed("long") == long_record
