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
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from engine import Instrument, Order
from engine.models import (
    MAX_BUCKETS,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_SLICES,
    MAX_WINDOW_S,
    MIN_INTERVAL_S,
    MIN_PRICE,
)


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
