"""Bounds where sizes enter the engine (issue 15, items 5, 8 and 10).

* The model: numbers must be numbers; quantity, price and algorithm parameters
  have absolute bounds, and a value past one is refused naming the bound.
* Instrument conversions never raise for a size and never make 0 ticks of a price.
* The simulated venue's instrument filters (maximum quantity, minimum and maximum
  notional) refuse an absurd order before anything matches, even through the bare
  seed classes, and the book is left as it was.
* Algorithms: a parent whose children would be under the lot or minimum is refused
  when it is built; a large schedule runs without holding the loop (the cost of a
  decision does not grow with the number of children).
* Algorithm parents against the venues' filters: a parent over 4 times what the
  venues take in one order each, or whose planned children (display, slice, SMART's
  one child) some venue would refuse, is refused when built, naming the filter.
"""

from __future__ import annotations

import math
import pickle
import random
from collections import Counter
from decimal import Decimal
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from engine import (
    BookLevel,
    BookSnapshot,
    Engine,
    ExchangeClient,
    Fill,
    Instrument,
    Liquidity,
    Order,
    OrderResult,
    OrderRouter,
    OrderSide,
    OrderStatus,
    OrderType,
    PublicTrade,
    SimulatedExchange,
    SmartOrderRouter,
    TimeInForce,
    VirtualClock,
)
from engine.scheduling.algos.base import Children, ParentState, PlaceChild, plain
from engine.scheduling.algos.registry import make_algorithm
from engine.errors import AlgorithmParameterError
from engine.venues.sim.config import DEFAULT_INSTRUMENTS, DEFAULT_START_PRICES
from engine.models import (
    MAX_BUCKETS,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_SLICES,
    MAX_WINDOW_S,
    MIN_INTERVAL_S,
    MIN_PRICE,
)
from tests.algo_support import one_venue_engine, quiet_venue
from tests.conftest import virtual_anyio_backend
from tui.demo import demo_order


def order(type: str = "MARKET", **fields: Any) -> Order:
    kwargs: dict[str, Any] = {"id": "o1", "symbol": "BTC/USD", "side": "buy", "type": type, "quantity": 1.0}
    kwargs.update(fields)
    return Order(**kwargs)


def refusal(type: str = "MARKET", **fields: Any) -> tuple[tuple[Any, ...], str]:
    """The (loc, message) of the first error building the order."""
    with pytest.raises(ValidationError) as info:
        order(type, **fields)
    err = info.value.errors()[0]
    return err["loc"], err["msg"]


# -- numbers must be numbers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"quantity": "5"}, ("quantity",)),
        ({"quantity": True}, ("quantity",)),
        ({"quantity": False}, ("quantity",)),
        ({"type": "LIMIT", "price": "1"}, ("price",)),
        ({"type": "LIMIT", "price": True}, ("price",)),
    ],
)
def test_strings_and_bools_are_not_numbers(fields: dict[str, Any], loc: tuple[str, ...]) -> None:
    type_ = fields.pop("type", "MARKET")
    if type_ == "LIMIT":
        fields.setdefault("price", 100.0)
    got_loc, msg = refusal(type_, **fields)
    assert got_loc == loc
    assert "valid number" in msg


def test_ints_are_numbers() -> None:
    o = order("LIMIT", quantity=1, price=50_000)
    assert (o.quantity, o.price) == (1.0, 50_000.0)
    assert isinstance(o.quantity, float) and isinstance(o.price, float)


# -- quantity and price bounds ----------------------------------------------------------------


@pytest.mark.parametrize("q", [1e300, 1e308, MAX_QUANTITY * 1.000001, 10**16])
def test_quantity_over_the_maximum_is_refused_naming_the_bound(q: float) -> None:
    loc, msg = refusal(quantity=q)
    assert loc == ("quantity",)
    assert "quantity must be at most 1,000,000,000,000,000 (MAX_QUANTITY)" in msg


def test_quantity_message_shows_the_value_exactly() -> None:
    _, msg = refusal(quantity=1e300)
    assert msg.endswith("got 1e+300")
    _, msg = refusal(quantity=1000000000000001.0)
    assert msg.endswith("got 1000000000000001.0")  # not rounded to look like the bound


def test_the_maximum_quantity_itself_builds() -> None:
    assert order(quantity=MAX_QUANTITY).quantity == MAX_QUANTITY


@pytest.mark.parametrize("p", [1e-300, 5e-324, MIN_PRICE / 2, 1e13, 1e308])
def test_price_outside_its_bounds_is_refused_naming_them(p: float) -> None:
    loc, msg = refusal("LIMIT", price=p)
    assert loc == ("price",)
    assert "price must be in [1e-12, 1,000,000,000,000] (MIN_PRICE, MAX_PRICE)" in msg


@pytest.mark.parametrize("p", [MIN_PRICE, MAX_PRICE])
def test_the_price_bounds_themselves_build(p: float) -> None:
    assert order("LIMIT", price=p).price == p


def test_bounds_multiply_to_a_finite_notional() -> None:
    assert math.isfinite(MAX_QUANTITY * MAX_PRICE)


# -- algorithm parameters ---------------------------------------------------------------------


@pytest.mark.parametrize("t", ["TWAP", "VWAP", "SMART"])
@pytest.mark.parametrize("duration", [MAX_WINDOW_S + 1, 1e9, 1e300])
def test_duration_over_a_day_is_refused(t: str, duration: float) -> None:
    loc, msg = refusal(t, metadata={"duration_s": duration})
    assert loc == ("metadata",)
    assert "metadata['duration_s'] must be at most 86,400 s" in msg


@pytest.mark.parametrize("t", ["TWAP", "VWAP", "SMART"])
def test_a_day_long_duration_builds(t: str) -> None:
    order(t, metadata={"duration_s": MAX_WINDOW_S})


@pytest.mark.parametrize("t", ["TWAP", "VWAP"])
def test_window_over_a_day_is_refused(t: str) -> None:
    start = 1.7e9
    _, msg = refusal(t, metadata={"start_time": start, "end_time": start + MAX_WINDOW_S + 60})
    assert "start_time..end_time must be at most 86,400 s (one day), got 86460 s" in msg
    order(t, metadata={"start_time": start, "end_time": start + MAX_WINDOW_S})


def test_twap_of_100000_slices_is_refused_not_capped() -> None:
    loc, msg = refusal("TWAP", metadata={"duration_s": 600, "slices": 100_000})
    assert loc == ("metadata",)
    assert "metadata['slices'] must be at most 1,000, got 100,000" in msg
    assert order("TWAP", metadata={"duration_s": 600, "slices": MAX_SLICES}).metadata["slices"] == 1_000


@pytest.mark.parametrize("buckets", [MAX_BUCKETS + 1, 10**8])
def test_vwap_buckets_over_the_maximum_are_refused(buckets: int) -> None:
    _, msg = refusal("VWAP", metadata={"duration_s": 600, "buckets": buckets})
    assert f"metadata['buckets'] must be at most 1,000, got {buckets:,}" in msg


def test_vwap_profile_list_is_bounded_before_its_weights_are_read() -> None:
    # A list of a million strings: refused for its length, not after checking each weight.
    _, msg = refusal("VWAP", metadata={"duration_s": 600, "profile": ["x"] * 1_000_000})
    assert "metadata['profile'] may list at most 1,000 weights, got 1,000,000" in msg
    order("VWAP", metadata={"duration_s": 600, "profile": [1.0] * MAX_BUCKETS})


def test_twap_interval_has_a_minimum() -> None:
    _, msg = refusal("TWAP", metadata={"duration_s": 60, "interval_s": 0.001})
    assert "metadata['interval_s'] must be at least 1 s, got 0.001" in msg
    order("TWAP", metadata={"duration_s": 60, "interval_s": MIN_INTERVAL_S})


def test_twap_interval_that_makes_too_many_slices_is_refused_with_the_interval_to_use() -> None:
    _, msg = refusal("TWAP", metadata={"duration_s": MAX_WINDOW_S, "interval_s": 1.0})
    assert "metadata['interval_s'] 1 over 86400 s makes 86,400 slices; at most 1,000 (use interval_s >= 86.4)" in msg
    order("TWAP", metadata={"duration_s": MAX_WINDOW_S, "interval_s": 86.4})


# -- Instrument conversions never raise ---------------------------------------------------------

BTC = Instrument("BTC/USD", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"))


@pytest.mark.parametrize("value", [1e308, math.inf, -math.inf, math.nan, 1.7e308])
def test_conversions_of_values_past_any_venue_give_none(value: float) -> None:
    assert BTC.quantity_to_lots(value) is None
    assert BTC.price_to_ticks(value) is None


@pytest.mark.parametrize("value", [1e-300, 5e-324, 0.004])
def test_a_positive_price_under_half_a_tick_is_not_zero_ticks(value: float) -> None:
    assert BTC.price_to_ticks(value) is None


@pytest.mark.parametrize("value", [1e-300, 5e-324, 0.00004])
def test_a_positive_quantity_under_half_a_lot_is_not_zero_lots(value: float) -> None:
    assert BTC.quantity_to_lots(value) is None


def test_zero_is_still_zero_units() -> None:
    # filled quantities of 0 are counted as 0 lots, not refused
    assert BTC.quantity_to_lots(0.0) == 0
    assert BTC.price_to_ticks(0.0) == 0


def test_lots_at_most_rounds_down_and_never_raises() -> None:
    assert BTC.lots_at_most(0.00025) == 2
    assert BTC.lots_at_most(0.0003) == 3  # on the lot: exact, not 2.9999
    assert BTC.lots_at_most(0.00001) == 0
    assert BTC.lots_at_most(1e308) == 0
    assert BTC.lots_at_most(-1.0) == 0


# -- Instrument filters -------------------------------------------------------------------------

FILTERED = Instrument(
    "BTC/USD", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"),
    max_quantity=Decimal("1000"), min_notional=Decimal("1"), max_notional=Decimal("10000000"),
)


def test_filter_refusal_names_the_filter_and_both_values() -> None:
    assert FILTERED.filter_refusal(1e12, None) == "quantity 1e+12 over the maximum 1,000 of BTC/USD"
    assert FILTERED.filter_refusal(500.0, 50_000.0) == (
        "notional 25,000,000.00 (500 at 50000) over the maximum 10,000,000 of BTC/USD"
    )
    assert FILTERED.filter_refusal(0.0001, 100.0) == (
        "notional 0.01 (0.0001 at 100) under the minimum 1 of BTC/USD"
    )
    assert FILTERED.filter_refusal(1.0, 50_000.0) is None
    assert FILTERED.filter_refusal(1000.0, None) is None  # the maximum itself passes


def test_instrument_without_filters_refuses_nothing() -> None:
    assert BTC.filter_refusal(1e15, 1e12) is None


@pytest.mark.parametrize(
    ("sizes", "fragment"),
    [
        ({"max_quantity": Decimal("0")}, "max_quantity of X must be > 0"),
        ({"max_quantity": Decimal("0.0001")}, "max_quantity of X must be >= min_quantity 0.001"),
        ({"min_notional": Decimal("-1")}, "min_notional of X must be > 0"),
        ({"min_notional": Decimal("10"), "max_notional": Decimal("5")},
         "max_notional of X must be >= min_notional 10"),
    ],
)
def test_instrument_refuses_inconsistent_filters(sizes: dict[str, Decimal], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        Instrument("X", Decimal("0.01"), Decimal("0.001"), Decimal("0.001"), **sizes)


# -- the simulated venue's filters ------------------------------------------------------------

START = 1_700_000_000.0


def seed_classes() -> tuple[OrderRouter, SimulatedExchange]:
    """The component document's bare classes (OrderRouter + ExchangeClient), on a still clock."""
    clock = VirtualClock(START)
    exchange = SimulatedExchange(clock=clock)
    router = OrderRouter(clock=clock)
    router.register_exchange("exchange_name", ExchangeClient(exchange, clock=clock))
    return router, exchange


def ordinary_buy(router: OrderRouter, oid: str) -> OrderResult:
    return router.submit_order(
        Order(id=oid, symbol="BTC/USD", side="buy", type="MARKET", quantity=1.0), exchange_id="exchange_name"
    )


@pytest.mark.parametrize(
    ("quantity", "shown"), [(1e12, "1e+12"), (MAX_QUANTITY, "1e+15"), (1000.0001, "1000.0001")]
)
def test_seed_classes_refuse_an_absurd_market_order_and_keep_the_book(quantity: float, shown: str) -> None:
    router, exchange = seed_classes()
    twin_router, _ = seed_classes()
    before = exchange.book("BTC/USD", 100)
    result = router.submit_order(
        Order(id="fat", symbol="BTC/USD", side="buy", type="MARKET", quantity=quantity),
        exchange_id="exchange_name",
    )
    assert result.status is OrderStatus.REJECTED
    assert result.reason == f"quantity {shown} over the maximum 1,000 of BTC/USD"
    assert result.filled_quantity == 0 and result.fills == []
    assert exchange.book("BTC/USD", 100) == before  # nothing was swept
    after = ordinary_buy(router, "next")
    usual = ordinary_buy(twin_router, "next")  # the same order on an untouched twin venue
    assert after.status is OrderStatus.FILLED and after.filled_quantity == 1.0
    assert after.average_price == usual.average_price
    assert [(f.price, f.quantity) for f in after.fills] == [(f.price, f.quantity) for f in usual.fills]


def test_a_market_order_over_the_maximum_notional_is_judged_at_the_touch() -> None:
    router, exchange = seed_classes()
    ask = exchange.book("BTC/USD").best_ask
    result = router.submit_order(
        Order(id="big", symbol="BTC/USD", side="buy", type="MARKET", quantity=500.0), exchange_id="exchange_name"
    )
    assert result.status is OrderStatus.REJECTED
    assert result.reason == (
        f"notional {500 * ask:,.2f} (500 at {ask:g}) over the maximum 10,000,000 of BTC/USD "
        "(a market order is judged at the touch)"
    )


def test_a_limit_far_over_the_market_is_refused_for_its_notional() -> None:
    router, _ = seed_classes()
    result = router.submit_order(
        Order(id="l", symbol="BTC/USD", side="buy", type="LIMIT", quantity=1.0, price=1e9),
        exchange_id="exchange_name",
    )
    assert result.status is OrderStatus.REJECTED
    assert result.reason == "notional 1,000,000,000.00 (1 at 1e+09) over the maximum 10,000,000 of BTC/USD"


def test_a_limit_under_the_minimum_notional_is_refused() -> None:
    _, exchange = seed_classes()
    result = exchange.submit(
        Order(id="tiny", symbol="BTC/USD", side="buy", type="LIMIT", quantity=0.0001, price=5_000.0)
    )
    assert result.status is OrderStatus.REJECTED
    assert result.reason == "notional 0.50 (0.0001 at 5000) under the minimum 1 of BTC/USD"


@pytest.mark.parametrize("price", [MIN_PRICE, 0.004])
def test_a_limit_that_rounds_to_zero_ticks_is_refused_with_a_reason(price: float) -> None:
    router, exchange = seed_classes()
    result = router.submit_order(
        Order(id="z", symbol="BTC/USD", side="buy", type="LIMIT", quantity=1.0, price=price),
        exchange_id="exchange_name",
    )
    assert result.status is OrderStatus.REJECTED
    assert result.reason == f"price {price!r} is not a multiple of the tick 0.01 for BTC/USD"
    assert exchange.book("BTC/USD").best_bid < 60_000  # nothing rested


def test_venue_refuses_a_zero_tick_price_even_from_an_unchecked_order() -> None:
    # A venue hears from more than our model (a FIX counterparty, a journal replay):
    # an order built without validation still gets a REJECTED reason, never a BookError.
    _, exchange = seed_classes()
    raw = Order.model_construct(
        id="raw", symbol="BTC/USD", side=OrderSide.BUY, type=OrderType.LIMIT, quantity=1.0, price=1e-300,
        metadata={}, time_in_force=TimeInForce.GTC, expire_at=None, client_order_id="raw", parent_id=None,
    )
    result = exchange.submit(raw)
    assert result.status is OrderStatus.REJECTED
    assert result.reason == "price 1e-300 is not a multiple of the tick 0.01 for BTC/USD"


def test_amend_is_held_to_the_filters_too() -> None:
    _, exchange = seed_classes()
    bid = exchange.book("BTC/USD").best_bid
    rest = exchange.submit(
        Order(id="r", symbol="BTC/USD", side="buy", type="LIMIT", quantity=1.0, price=bid - 100)
    )
    assert rest.status is OrderStatus.NEW
    result = exchange.amend("r", quantity=5_000.0)
    assert result.status is OrderStatus.REJECTED
    assert result.reason == (
        "amend of 'r' refused: quantity 5000 over the maximum 1,000 of BTC/USD; the order is unchanged"
    )
    result = exchange.amend("r", price=1e9)
    assert result.reason == (
        "amend of 'r' refused: notional 1,000,000,000.00 (1 at 1e+09) over the maximum 10,000,000 "
        "of BTC/USD; the order is unchanged"
    )
    assert exchange.status("r").status is OrderStatus.NEW
    assert exchange.status("r").price == bid - 100


@pytest.mark.parametrize(
    ("symbol", "quantity", "maximum"), [("ETH/USD", 10_000.001, "10,000"), ("SOL/USD", 100_000.01, "100,000")]
)
def test_every_default_instrument_has_a_maximum_quantity(symbol: str, quantity: float, maximum: str) -> None:
    _, exchange = seed_classes()
    result = exchange.submit(Order(id="q", symbol=symbol, side="sell", type="MARKET", quantity=quantity))
    assert result.status is OrderStatus.REJECTED
    assert result.reason == f"quantity {quantity!r} over the maximum {maximum} of {symbol}"


def test_default_instruments_accept_the_minimum_quantity_at_market() -> None:
    # The minimum notional never refuses an ordinary small order.
    _, exchange = seed_classes()
    for symbol, inst in DEFAULT_INSTRUMENTS.items():
        for side in ("buy", "sell"):
            result = exchange.submit(
                Order(id=f"min-{symbol[:3]}-{side}", symbol=symbol, side=side, type="MARKET",
                      quantity=float(inst.min_quantity))
            )
            assert result.status is OrderStatus.FILLED, result.reason


# -- algorithms: refused when built, or run without holding the loop -------------------------

LOT_BTC = DEFAULT_INSTRUMENTS["BTC/USD"]


def parent(type: str, quantity: float, price: float | None = None, **meta: Any) -> Order:
    return Order(id=f"p-{type.lower()}", symbol="BTC/USD", side="buy", type=type, quantity=quantity,
                 price=price, metadata=meta)


def built(order: Order, instrument: Instrument = LOT_BTC) -> Any:
    return make_algorithm(ParentState(order, instrument, created_at=START))


def refused_when_built(order: Order, instrument: Instrument = LOT_BTC) -> str:
    with pytest.raises(AlgorithmParameterError) as info:
        built(order, instrument)
    assert isinstance(info.value, ValueError)  # what the scheduler turns into REJECTED
    return str(info.value)


def test_iceberg_display_under_the_lot_is_refused_saying_what_to_show() -> None:
    msg = refused_when_built(parent("ICEBERG", 1.0, 50_000.0, display_size=0.00001))
    assert msg == "display_size 0.00001 is under the lot 0.0001 of BTC/USD: show at least 0.0001"


def test_iceberg_display_on_the_lot_but_under_the_minimum_is_refused() -> None:
    inst = Instrument("BTC/USD", Decimal("0.01"), Decimal("0.0001"), Decimal("0.001"))
    msg = refused_when_built(parent("ICEBERG", 1.0, 50_000.0, display_size=0.0005), inst)
    assert msg == "display_size 0.0005 is under the minimum quantity 0.001 of BTC/USD: show at least 0.001"
    built(parent("ICEBERG", 1.0, 50_000.0, display_size=0.001), inst)


def test_twap_slices_under_the_minimum_are_refused_with_the_count_allowed() -> None:
    msg = refused_when_built(parent("TWAP", 0.05, duration_s=600, slices=1_000))
    assert msg == (
        "TWAP slice 0.00005 (0.05 in 1,000 slices) is under the minimum quantity 0.0001 of BTC/USD: "
        "use at most 500 slices, or a larger quantity"
    )
    built(parent("TWAP", 0.05, duration_s=600, slices=500))


def test_twap_interval_that_makes_slices_under_the_minimum_says_which_interval() -> None:
    msg = refused_when_built(parent("TWAP", 0.0005, duration_s=600, interval_s=60))
    assert msg == (
        "TWAP slice 0.00005 (0.0005 in 10 slices) is under the minimum quantity 0.0001 of BTC/USD: "
        "use an interval_s of at least 120, or a larger quantity"
    )
    built(parent("TWAP", 0.0005, duration_s=600, interval_s=120))


def test_twap_default_slices_fit_the_quantity() -> None:
    # Not asked for: one a minute would be 10 slices, but 0.0005 has 5 minimum sizes.
    algo = built(parent("TWAP", 0.0005, duration_s=600))
    algo.start(StillMarket(START))
    assert len(algo.sizes) == 5 and set(algo.sizes) == {1}
    assert "plan: 5 slices of about 0.0001 every 120 s" in algo.state.last_reason


@pytest.mark.parametrize("t", ["ICEBERG", "TWAP", "VWAP", "SMART"])
def test_a_parent_off_the_lot_or_tick_is_refused_for_every_algorithm(t: str) -> None:
    extra: dict[str, Any] = {
        "ICEBERG": {"display_size": 0.001}, "TWAP": {"duration_s": 60}, "VWAP": {"duration_s": 60}, "SMART": {},
    }[t]
    price = 50_000.0 if t == "ICEBERG" else None
    assert refused_when_built(parent(t, 1.00005, price, **extra)) == (
        "quantity 1.00005 is not a multiple of the lot 0.0001 of BTC/USD"
    )
    inst = Instrument("BTC/USD", Decimal("0.01"), Decimal("0.0001"), Decimal("0.01"))
    assert refused_when_built(parent(t, 0.005, price, **extra), inst) == (
        "quantity 0.005 is under the minimum quantity 0.01 of BTC/USD"
    )
    assert refused_when_built(parent(t, 1.0, 50_000.005, **{**extra})) == (
        "price 50000.005 is not on the tick 0.01 of BTC/USD"
    )


class StillMarket:
    """An AlgoContext whose market stands still; a decision's trades are printed by `print`."""

    def __init__(self, now: float) -> None:
        self.t = now
        self.tape: list[PublicTrade] = []
        self.served = 0  # trades handed out by `trades`: what reading the tape cost

    def now(self) -> float:
        return self.t

    def book(self, symbol: str) -> BookSnapshot:
        return BookSnapshot("v", symbol, (BookLevel(49_999.0, 1_000.0),), (BookLevel(50_001.0, 1_000.0),), self.t)

    def instrument(self, symbol: str) -> Instrument:
        return LOT_BTC

    def trades(self, symbol: str, since: float) -> list[PublicTrade]:
        out = []
        for trade in reversed(self.tape):
            if trade.ts_event <= since:
                break
            out.append(trade)
        self.served += len(out)
        return out[::-1]

    def print(self, quantity: float) -> None:
        self.tape.append(PublicTrade("v", "BTC/USD", 50_000.0, quantity, OrderSide.SELL, self.t))


class Watched(OrderResult):
    """A child result that counts every read of its fields (by object)."""

    reads: Counter[int] = Counter()

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("__"):
            Watched.reads[id(self)] += 1
        return object.__getattribute__(self, name)


def fill_child(ctx: StillMarket, action: PlaceChild) -> Watched:
    child = action.order
    fill = Fill(child.id, "v", child.symbol, child.side, 50_001.0, child.quantity, 0.0, Liquidity.TAKER, ctx.t)
    return Watched(child.id, "v", OrderStatus.FILLED, child.quantity, child.quantity, 50_001.0, [fill],
                   None, child.symbol, child.side, child.price, ctx.t)


def drive(algo: Any, ctx: StillMarket, actions: list[Any], decisions: int) -> tuple[list[Watched], list[Any]]:
    """What the scheduler does, by hand: each child fills at once, then the next wake-up.
    Returns the children filled and the actions decided last (for the next drive)."""
    done: list[Watched] = []
    for _ in range(decisions):
        for action in actions:
            if isinstance(action, PlaceChild):
                result = fill_child(ctx, action)
                algo.state.children[action.order.id] = result
                done.append(result)
                algo.on_child(ctx, result)
        wake = algo.next_wake()
        if wake is None:
            break
        ctx.t = max(wake, ctx.t)
        ctx.print(0.5)
        actions = algo.on_timer(ctx)
    return done, actions


def reads_of(children: list[Watched]) -> int:
    return sum(Watched.reads[id(c)] for c in children)


@pytest.mark.parametrize(
    "order",
    [
        parent("TWAP", 1.0, duration_s=3_600, slices=MAX_SLICES),
        parent("VWAP", 1.0, duration_s=MAX_WINDOW_S, buckets=MAX_BUCKETS, max_participation=0.5),
        parent("VWAP", 1.0, duration_s=3_600, buckets=MAX_BUCKETS),
    ],
    ids=["twap", "vwap-capped", "vwap"],
)
def test_a_decision_reads_none_of_the_finished_children(order: Order) -> None:
    # The cost of a decision must not grow with the children: a TWAP of 1,000 slices
    # held the loop for seconds when every decision summed over every child (and a VWAP
    # summed every fill for every bucket). Here, once some hundreds of children have
    # finished, the next decisions must not look at any of them again.
    ctx = StillMarket(START)
    algo = built(order)
    finished, pending = drive(algo, ctx, algo.start(ctx), decisions=600)
    assert len(finished) >= 150
    Watched.reads.clear()
    later, _ = drive(algo, ctx, pending, decisions=40)
    assert later, "the parent kept deciding"
    assert reads_of(finished) == 0
    state = algo.state
    assert state.filled_quantity == pytest.approx(sum(c.filled_quantity for c in finished + later))


def test_the_figures_of_a_parent_read_no_child() -> None:
    ctx = StillMarket(START)
    algo = built(parent("TWAP", 1.0, duration_s=3_600, slices=MAX_SLICES))
    algo.state.arrival_price = 50_000.0  # the scheduler sets it from the book at start
    finished, _ = drive(algo, ctx, algo.start(ctx), decisions=300)
    state = algo.state
    Watched.reads.clear()
    figures = (state.filled_lots, state.remaining_lots, state.working_lots, state.filled_quantity,
               state.average_price, state.fees, state.working_children, state.tca(ctx.t))
    assert reads_of(finished) == 0
    filled = sum(c.filled_quantity for c in finished)
    assert figures[3] == pytest.approx(filled)
    assert figures[0] + figures[1] == state.quantity_lots
    assert figures[4] == pytest.approx(50_001.0)
    tca = figures[-1]
    assert tca["filled"] == figures[3] and tca["children_done"] == len(finished)
    assert tca["execution_cost"] == pytest.approx((50_001.0 - 50_000.0) * filled)


def test_iceberg_refills_read_none_of_the_shown_children() -> None:
    # A display that fills as soon as it shows: every refill is the next decision, at the
    # same instant; none of them may look at the children shown before.
    ctx = StillMarket(START)
    algo = built(parent("ICEBERG", 1.0, 50_001.0, display_size=0.0001))
    shown, pending = drive(algo, ctx, algo.start(ctx), decisions=500)
    assert ctx.t == START and len(shown) == 500
    Watched.reads.clear()
    ctx.served = 0
    later, _ = drive(algo, ctx, pending, decisions=20)
    assert len(later) == 20
    assert reads_of(shown) == 0
    # Nor do they read the tape again: its 520 prints of this instant were read once.
    assert ctx.served == 0
    assert algo.state.refills == 521
    # Once time moves on, the parent's market figures catch up with every print.
    ctx.t += 10.0
    algo.on_timer(ctx)
    assert algo.state.market.volume == pytest.approx(0.5 * len(ctx.tape))


# -- the running totals -------------------------------------------------------------------------


def _result(cid: str, status: OrderStatus, quantity: float, fills: list[Fill], venue: str = "v") -> OrderResult:
    filled = round(sum(f.quantity for f in fills), 4)
    return OrderResult(cid, venue, status, quantity, filled, None, fills, None, "BTC/USD", OrderSide.BUY)


def _fill(cid: str, price: float, quantity: float, ts: float) -> Fill:
    return Fill(cid, "v", "BTC/USD", OrderSide.BUY, price, quantity, price * quantity * 1e-4, Liquidity.TAKER, ts)


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 4), st.booleans(), st.booleans()), max_size=60))
def test_children_totals_equal_the_sums_after_any_changes(ops: list[tuple[int, int, bool, bool]]) -> None:
    kids = Children(LOT_BTC)
    fills: dict[str, list[Fill]] = {}
    for step, (k, n_new, final, drop) in enumerate(ops):
        cid = f"c{k}"
        if drop:
            kids.pop(cid, None)
            fills.pop(cid, None)
            continue
        have = fills.get(cid, [])
        # a later report keeps the earlier fills (the usual case) or, now and then, not
        kept = have if step % 3 else have[:1]
        new = kept + [_fill(cid, 50_000.0 + step, 0.0001 * (i + 1), float(step)) for i in range(n_new)]
        fills[cid] = new
        quantity = round(sum(f.quantity for f in new), 4) + (0.0 if final else 0.001)
        kids[cid] = _result(cid, OrderStatus.FILLED if final else OrderStatus.PARTIALLY_FILLED, quantity or 0.001, new)
    every = [f for c in kids.values() for f in c.fills]
    assert kids.filled_lots == sum(LOT_BTC.quantity_to_lots(c.filled_quantity) for c in kids.values())
    assert kids.working_lots == sum(
        LOT_BTC.quantity_to_lots(round(c.quantity - c.filled_quantity, 4)) for c in kids.values() if not c.is_final
    )
    assert sorted(kids.working) == sorted(cid for cid, c in kids.items() if not c.is_final)
    assert kids.fill_quantity == pytest.approx(sum(f.quantity for f in every), abs=1e-9)
    assert kids.fill_notional == pytest.approx(sum(f.price * f.quantity for f in every), abs=1e-6)
    assert kids.fees == pytest.approx(sum(f.fee for f in every), abs=1e-9)
    assert dict(kids.venues) == ({"v": len(kids)} if kids else {})


def test_a_finished_parent_pickles_with_its_totals() -> None:
    state = ParentState(parent("TWAP", 1.0, duration_s=60), LOT_BTC, created_at=START)
    state.children["a"] = _result("a", OrderStatus.FILLED, 0.3, [_fill("a", 50_000.0, 0.3, START)])
    state.children["b"] = _result("b", OrderStatus.NEW, 0.2, [])
    back = pickle.loads(pickle.dumps(state))
    assert isinstance(back.children, Children)
    assert (back.filled_lots, back.working_lots, back.remaining_lots) == (3_000, 2_000, 7_000)
    assert back.working_children == ["b"] and back.average_price == 50_000.0
    assert list(back.children) == ["a", "b"]


# -- the real path on the virtual clock: refused, or runs to the end ----------------------------


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> tuple[str, dict]:
    return virtual_anyio_backend(virtual_clock)


async def run_parent(clock: VirtualClock, order: Order, timeout: float = 7_200.0) -> tuple[OrderResult, Any]:
    venue = quiet_venue(clock, level_notional=2_000_000.0)
    engine = one_venue_engine(clock, venue)
    await engine.start()
    oid = await engine.submit(order)
    result = await engine.wait(oid, timeout=timeout)
    await engine.stop()
    return result, engine


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("order", "reason"),
    [
        (parent("ICEBERG", 1.0, 50_000.0, display_size=0.00001),
         "display_size 0.00001 is under the lot 0.0001 of BTC/USD: show at least 0.0001"),
        (parent("TWAP", 0.05, duration_s=600, slices=1_000),
         "TWAP slice 0.00005 (0.05 in 1,000 slices) is under the minimum quantity 0.0001 of BTC/USD: "
         "use at most 500 slices, or a larger quantity"),
    ],
    ids=["iceberg", "twap"],
)
async def test_the_engine_rejects_a_parent_its_instrument_cannot_carry(
    virtual_clock: VirtualClock, order: Order, reason: str
) -> None:
    result, engine = await run_parent(virtual_clock, order)
    assert result.status is OrderStatus.REJECTED
    assert result.reason == reason
    assert virtual_clock.now() == START  # refused at once: nothing was worked


@pytest.mark.anyio
async def test_a_twap_of_the_most_slices_runs_every_slice(virtual_clock: VirtualClock) -> None:
    result, engine = await run_parent(virtual_clock, parent("TWAP", 1.0, duration_s=3_600, slices=MAX_SLICES))
    assert result.status is OrderStatus.FILLED and result.filled_quantity == 1.0
    state = engine.scheduler.parent(result.order_id)
    assert len(state.children) == MAX_SLICES  # as asked: not fewer, not more
    assert {c.filled_quantity for c in state.children.values()} == {0.001}
    assert virtual_clock.now() < START + 3_600


@pytest.mark.anyio
async def test_a_day_long_vwap_of_the_most_buckets_works_and_answers(virtual_clock: VirtualClock) -> None:
    venue = quiet_venue(virtual_clock, level_notional=2_000_000.0)
    engine = one_venue_engine(virtual_clock, venue)
    await engine.start()
    oid = await engine.submit(parent("VWAP", 1.0, duration_s=MAX_WINDOW_S, buckets=MAX_BUCKETS))
    await anyio.sleep(3 * 3_600)  # three hours of the day, in virtual time
    status = engine.status(oid)
    assert status.status is OrderStatus.PARTIALLY_FILLED
    assert status.detail["buckets"] == MAX_BUCKETS and status.detail["bucket_s"] == pytest.approx(86.4)
    assert 0 < status.filled_quantity < 1.0
    assert status.filled_quantity == pytest.approx(status.detail["schedule_target"], abs=0.002)
    await engine.cancel(oid)
    result = await engine.wait(oid, timeout=60)
    await engine.stop()
    assert result.status is OrderStatus.CANCELED


def test_a_parent_under_the_minimum_says_so_rather_than_off_the_lot() -> None:
    assert refused_when_built(parent("SMART", 0.00001)) == (
        "quantity 0.00001 is under the minimum quantity 0.0001 of BTC/USD"
    )


# -- algorithm parents against the venues' per-order filters -------------------------------------


def test_seed_classes_refuse_a_parent_far_over_what_the_venue_takes_at_once() -> None:
    # The probe's case: an ICEBERG of 999 BTC at 50,000 (~50M USD) was accepted by a venue that
    # takes at most 10M in one order. A parent may work up to 4 times that, not 5.
    router, exchange = seed_classes()
    smart = SmartOrderRouter(order_router=router)
    iceberg = parent("ICEBERG", 999.0, 50_000.0, display_size=1.0)
    (result,) = smart.route_order(iceberg)
    assert result.status is OrderStatus.REJECTED
    assert result.reason == (
        "notional 49,950,000.00 (999 at 50000) is over 4 times the maximum notional 10,000,000 of BTC/USD "
        "per order at exchange_name: send a parent of at most 800"
    )
    assert exchange.counters.submitted == 0
    (fits,) = smart.route_order(iceberg.model_copy(update={"id": "p-800", "quantity": 800.0}))
    assert fits.status is OrderStatus.NEW


def test_a_parent_over_four_times_the_maximum_quantity_is_refused() -> None:
    assert refused_when_built(parent("TWAP", 4_000.5, duration_s=600, slices=100)) == (
        "quantity 4000.5 is over 4 times the maximum quantity 1,000 of BTC/USD per order at the venue: "
        "send a parent of at most 4000"
    )
    built(parent("TWAP", 4_000.0, duration_s=600, slices=100))


@pytest.mark.anyio
async def test_several_venues_carry_a_parent_together(virtual_clock: VirtualClock) -> None:
    engine = Engine.default(seed=1, clock=virtual_clock, risk=None)
    await engine.start()
    try:
        big = parent("TWAP", 13_000.0, duration_s=600, slices=100)
        result = await engine.wait(await engine.submit(big), timeout=5)
    finally:
        await engine.stop()
    assert result.status is OrderStatus.REJECTED
    assert result.reason == (
        "quantity 13000 is over 4 times the maximum quantity of BTC/USD per order at deep, swift and thrift "
        "together (3,000): send a parent of at most 12000"
    )


@pytest.mark.parametrize(
    ("order", "reason"),
    [
        (parent("ICEBERG", 400.0, 50_000.0, display_size=300.0),
         "display_size 300 at 50000 is a notional of 15,000,000.00, over the maximum notional 10,000,000 of "
         "BTC/USD per order at the venue: show at most 200"),
        (parent("ICEBERG", 2_000.0, display_size=1_500.0, price=1.0),
         "display_size 1500 is over the maximum quantity 1,000 of BTC/USD per order at the venue: show at most 1000"),
        (parent("ICEBERG", 1.0, 5.0, display_size=0.0001),
         "display_size 0.0001 at 5 is a notional of 0.0005, under the minimum notional 1 of BTC/USD per order at "
         "the venue"),
        (parent("TWAP", 300.0, 50_000.0, duration_s=60, slices=1),
         "TWAP slice 300 (300 in 1 slice) at 50000 is a notional of 15,000,000.00, over the maximum notional "
         "10,000,000 of BTC/USD per order at the venue: use at least 2 slices"),
        # 175 each if even; randomized, a slice may be up to 25% larger.
        (parent("TWAP", 700.0, 50_000.0, duration_s=60, slices=4, randomize=True),
         "TWAP slice 218.75 (700 in 4 slices, randomized) at 50000 is a notional of 10,937,500.00, over the "
         "maximum notional 10,000,000 of BTC/USD per order at the venue: use at least 5 slices"),
        (parent("SMART", 300.0, 50_000.0),
         "SMART child 300 (it rests all that is left as one order) at 50000 is a notional of 15,000,000.00, "
         "over the maximum notional 10,000,000 of BTC/USD per order at the venue: send at most 200, or use a TWAP"),
    ],
    ids=["iceberg-notional", "iceberg-quantity", "iceberg-min-notional", "twap", "twap-randomized", "smart"],
)
def test_a_parent_whose_children_no_venue_takes_is_refused_naming_the_filter(order: Order, reason: str) -> None:
    assert refused_when_built(order) == reason


def test_children_within_the_filters_build_and_vwap_children_follow_the_market() -> None:
    built(parent("ICEBERG", 400.0, 50_000.0, display_size=200.0))
    built(parent("TWAP", 300.0, 50_000.0, duration_s=60, slices=2))
    built(parent("TWAP", 700.0, 50_000.0, duration_s=60, slices=4))
    built(parent("TWAP", 700.0, 50_000.0, duration_s=60, slices=5, randomize=True))
    built(parent("SMART", 200.0, 50_000.0))
    built(parent("VWAP", 300.0, 50_000.0, duration_s=60))  # sized by the volume, split across venues


@pytest.mark.anyio
async def test_the_engine_refuses_a_parent_the_venues_cannot_carry_when_it_is_built(
    virtual_clock: VirtualClock,
) -> None:
    venue = quiet_venue(virtual_clock)
    engine = Engine({venue.name: venue}, clock=virtual_clock, risk=None)  # the filters alone
    await engine.start()
    try:
        iceberg = parent("ICEBERG", 400.0, 50_000.0, display_size=300.0)
        result = await engine.wait(await engine.submit(iceberg), timeout=5)
    finally:
        await engine.stop()
    assert result.status is OrderStatus.REJECTED
    assert result.reason == (
        "display_size 300 at 50000 is a notional of 15,000,000.00, over the maximum notional 10,000,000 of "
        "BTC/USD per order at sim: show at most 200"
    )
    assert virtual_clock.now() == START


def test_sizes_in_messages_are_plain_when_small_and_short_when_large() -> None:
    assert plain(0.00001) == "0.00001"
    assert plain(0.5) == "0.5"
    assert plain(1e12) == "1e+12"
    assert plain(1e308) == "1e+308"


@pytest.mark.parametrize("t", ["MARKET", "LIMIT"])
def test_routers_answer_an_unvalidated_huge_order_with_a_reason(t: str) -> None:
    # An order that skipped the model (built with model_construct, as a journal replay
    # does) used to raise OverflowError in the routers when its size was converted.
    router, exchange = seed_classes()
    smart = SmartOrderRouter(order_router=router)
    for oid, send in (("r", lambda o: [router.submit_order(o, exchange_id="exchange_name")]),
                      ("s", smart.route_order)):
        raw = Order.model_construct(
            id=oid, symbol="BTC/USD", side=OrderSide.BUY, type=OrderType(t), quantity=1e308,
            price=50_000.0 if t == "LIMIT" else None, metadata={}, time_in_force=TimeInForce.GTC,
            expire_at=None, client_order_id=oid, parent_id=None,
        )
        (result,) = send(raw)
        assert result.status is OrderStatus.REJECTED
        assert result.reason == "quantity 1e+308 is not a multiple of the lot 0.0001 for BTC/USD"
    assert ordinary_buy(router, "after").status is OrderStatus.FILLED


def test_the_demo_flow_passes_the_default_filters() -> None:
    # The desk's --demo must never be refused by a venue: its orders at the start prices.
    rng = random.Random(7)
    for i in range(3_000):
        symbol = rng.choice(list(DEFAULT_INSTRUMENTS))
        mid = DEFAULT_START_PRICES[symbol]
        order = demo_order(rng, f"d{i}", mid, symbol, parent=i % 5 == 0)
        inst = DEFAULT_INSTRUMENTS[symbol]
        assert inst.filter_refusal(order.quantity, order.price or mid, market=order.price is None) is None
        display = order.metadata.get("display_size")
        if display is not None:
            assert inst.filter_refusal(display, order.price) is None
        if order.type.is_algorithm:  # and its children (display, slices) as the scheduler judges them
            make_algorithm(ParentState(order, inst, created_at=START), listings={"sim": inst}, price=order.price or mid)


def test_rounding_helpers_never_raise() -> None:
    assert BTC.ticks_toward(50_000.005, up=True) == 5_000_001
    assert BTC.ticks_toward(50_000.005, up=False) == 5_000_000
    assert BTC.ticks_toward(0.1 + 0.2, up=True) == 30  # float noise is on the tick, not above it
    assert BTC.ticks_toward(math.inf, up=True) is None
    assert BTC.nearest_lots(0.00031) == 3
    assert BTC.nearest_lots(math.inf) == 0 and BTC.nearest_lots(math.nan) == 0
