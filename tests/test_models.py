"""Field rules of Order (each error names its field and says what is accepted),
the order-state vocabulary, and Instrument/FeeSchedule arithmetic.

The rules come from DESIGN.md ("Models", "Order states") and the component
document's examples; every refusal is checked at its `loc` and by a fragment
of its message, so a rule that moves to another field or loses its words fails.
"""

from __future__ import annotations

import math
import string
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from engine import (
    FeeSchedule,
    Fill,
    Instrument,
    Liquidity,
    Order,
    OrderResult,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from engine.models import MAX_QUANTITY, METADATA_KEYS

NAN, INF = math.nan, math.inf
ID_ALPHABET = string.ascii_letters + string.digits + "._:-"

# The least each type needs to build (quantity 10).
MINIMAL: dict[OrderType, dict[str, Any]] = {
    OrderType.MARKET: {},
    OrderType.LIMIT: {"price": 100.0},
    OrderType.ICEBERG: {"price": 100.0, "metadata": {"display_size": 1.0}},
    OrderType.TWAP: {"metadata": {"duration_s": 60}},
    OrderType.VWAP: {"metadata": {"duration_s": 60}},
    OrderType.SMART: {},
}
ALGORITHMS = [OrderType.ICEBERG, OrderType.TWAP, OrderType.VWAP, OrderType.SMART]


def build(type: OrderType | str = OrderType.MARKET, **overrides: Any) -> Order:
    t = OrderType(type)
    kwargs: dict[str, Any] = {
        "id": "o1",
        "symbol": "BTC/USD",
        "side": OrderSide.BUY,
        "type": t,
        "quantity": 10.0,
        **MINIMAL[t],
    }
    kwargs.update(overrides)
    return Order(**kwargs)


def meta(type: OrderType, **extra: Any) -> dict[str, Any]:
    """The minimal metadata of `type` plus (or minus, with None) `extra` keys."""
    m = dict(MINIMAL[type].get("metadata", {}))
    for key, value in extra.items():
        if value is None:
            m.pop(key, None)
        else:
            m[key] = value
    return m


def refused(field: str, fragment: str, type: OrderType | str = OrderType.MARKET, **overrides: Any) -> str:
    """Building must fail at `field` with `fragment` in the message; returns the message."""
    with pytest.raises(ValidationError) as info:
        build(type, **overrides)
    err = info.value.errors()[0]
    assert err["loc"] == (field,), info.value
    assert fragment in err["msg"], err["msg"]
    return err["msg"]


# -- the component document's examples ---------------------------------------


def test_document_market_example_builds_as_written() -> None:
    order = Order(id="order_123", symbol="BTC/USD", side=OrderSide.BUY, type=OrderType.MARKET, quantity=1.0)
    assert (order.id, order.symbol, order.side, order.type, order.quantity) == (
        "order_123", "BTC/USD", OrderSide.BUY, OrderType.MARKET, 1.0,
    )
    assert order.price is None
    assert order.metadata == {}
    assert order.time_in_force is TimeInForce.GTC
    assert order.expire_at is None
    assert order.client_order_id == "order_123"
    assert order.parent_id is None


def test_document_iceberg_example_builds_as_written() -> None:
    order = Order(
        id="order_123",
        symbol="BTC/USD",
        side=OrderSide.BUY,
        type=OrderType.ICEBERG,
        quantity=10.0,
        price=50000.0,
        metadata={'display_size': 1.0},
    )
    assert order.type is OrderType.ICEBERG
    assert order.price == 50000.0
    assert order.metadata == {"display_size": 1.0}


@pytest.mark.parametrize("t", list(OrderType))
def test_minimal_order_of_every_type_builds(t: OrderType) -> None:
    assert build(t).type is t


def test_validation_error_is_a_value_error() -> None:
    assert issubclass(ValidationError, ValueError)
    with pytest.raises(ValueError):
        build(quantity=-5)


def test_order_is_frozen() -> None:
    order = build()
    with pytest.raises(ValidationError, match="frozen"):
        order.quantity = 2.0  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        order.client_order_id = "other"  # type: ignore[misc]
    assert order.quantity == 10.0
    assert order.client_order_id == "o1"


def test_unknown_field_is_refused_by_name() -> None:
    refused("display_size", "Extra inputs are not permitted", display_size=1.0)


# -- quantity and price ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fragment"),
    [(0, "greater than 0"), (-5, "greater than 0"), (NAN, "finite"), (INF, "finite"), (-INF, "finite")],
)
def test_quantity_must_be_finite_and_positive(value: float, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        build(quantity=value)
    err = info.value.errors()[0]
    assert err["loc"] == ("quantity",)
    assert fragment in err["msg"]
    assert f"input_value={value!r}" in str(info.value)  # the refused value is shown


@given(st.floats(min_value=0.0, max_value=MAX_QUANTITY, exclude_min=True))
def test_any_positive_quantity_up_to_the_maximum_builds(q: float) -> None:
    assert build(quantity=q).quantity == q


@given(st.floats(max_value=0.0, allow_nan=False, allow_infinity=False))
def test_any_non_positive_quantity_is_refused(q: float) -> None:
    refused("quantity", "greater than 0", quantity=q)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [(0, "greater than 0"), (-1.5, "greater than 0"), (NAN, "finite"), (INF, "finite")],
)
@pytest.mark.parametrize("t", [OrderType.LIMIT, OrderType.ICEBERG, OrderType.TWAP])
def test_price_must_be_finite_and_positive(t: OrderType, value: float, fragment: str) -> None:
    refused("price", fragment, t, price=value)


@pytest.mark.parametrize("t", [OrderType.LIMIT, OrderType.ICEBERG])
def test_price_is_required_for_limit_and_iceberg(t: OrderType) -> None:
    refused("price", f"price is required for {t.value} orders", t, price=None)


def test_price_is_refused_for_market() -> None:
    refused("price", "price must not be set for MARKET orders", OrderType.MARKET, price=100.0)


@pytest.mark.parametrize("t", [OrderType.TWAP, OrderType.VWAP, OrderType.SMART])
def test_price_is_optional_for_time_and_smart_algorithms(t: OrderType) -> None:
    assert build(t).price is None
    assert build(t, price=99.5).price == 99.5


# -- ids -----------------------------------------------------------------------------

ID_FIELDS = ["id", "client_order_id", "parent_id"]


@pytest.mark.parametrize("field", ID_FIELDS)
@pytest.mark.parametrize("bad", ["x" * 37, "", " ", "a b", "a/b", "order#1", "é", "a\n", " a"])
def test_id_rule_refuses(field: str, bad: str) -> None:
    msg = refused(field, f"{field} must be 1-36 characters of A-Z a-z 0-9 . _ : -", **{field: bad})
    assert repr(bad) in msg


@pytest.mark.parametrize("field", ID_FIELDS)
@pytest.mark.parametrize("good", ["x" * 36, "a", "A-z_0.9:Q", "BTC-USD:0001.a_b"])
def test_id_rule_accepts(field: str, good: str) -> None:
    assert getattr(build(**{field: good}), field) == good


@given(st.text(alphabet=ID_ALPHABET, min_size=1, max_size=36))
def test_any_id_of_the_alphabet_up_to_36_builds(ident: str) -> None:
    order = build(id=ident, parent_id=ident)
    assert order.id == order.client_order_id == order.parent_id == ident


@given(
    st.tuples(
        st.text(alphabet=ID_ALPHABET, max_size=20),
        st.characters(codec="utf-8").filter(lambda c: c not in ID_ALPHABET),
        st.text(max_size=20),
    ).map("".join),
    st.sampled_from(ID_FIELDS),
)
def test_any_id_with_a_character_outside_the_alphabet_is_refused(ident: str, field: str) -> None:
    refused(field, "must be 1-36 characters", **{field: ident})


@given(st.text(alphabet=ID_ALPHABET, min_size=37, max_size=80))
def test_any_id_longer_than_36_is_refused(ident: str) -> None:
    refused("id", "must be 1-36 characters", id=ident)


def test_client_order_id_defaults_to_id() -> None:
    assert build(id="abc").client_order_id == "abc"
    assert build(id="abc", client_order_id="venue-1").client_order_id == "venue-1"
    assert build(id="abc").parent_id is None


@pytest.mark.parametrize("bad", ["", " BTC/USD", "BTC/USD ", "BTC/USD\u202e", "BTC\nUSD", "X" * 65])
def test_symbol_must_be_a_bare_non_empty_name(bad: str) -> None:
    refused("symbol", "symbol must be 1-64 printable characters", symbol=bad)


# -- enums by name ---------------------------------------------------------------------


def test_enums_accept_names_in_any_case() -> None:
    order = build("Iceberg", side="buy", time_in_force="gtc")
    assert (order.type, order.side, order.time_in_force) == (
        OrderType.ICEBERG, OrderSide.BUY, TimeInForce.GTC,
    )
    order = build("market", side="Sell", time_in_force="Day")
    assert (order.type, order.side, order.time_in_force) == (
        OrderType.MARKET, OrderSide.SELL, TimeInForce.DAY,
    )
    assert OrderSide("sElL") is OrderSide.SELL
    assert OrderType(" twap ") is OrderType.TWAP
    assert TimeInForce("ioc") is TimeInForce.IOC
    assert OrderStatus("partially_filled") is OrderStatus.PARTIALLY_FILLED
    assert str(OrderSide.BUY) == "BUY"


@pytest.mark.parametrize(
    ("field", "bad", "accepted"),
    [
        ("side", "hold", "'BUY' or 'SELL'"),
        ("type", "stop", "'MARKET', 'LIMIT', 'ICEBERG', 'TWAP', 'VWAP' or 'SMART'"),
        ("time_in_force", "gtx", "'GTC', 'IOC', 'FOK', 'DAY' or 'GTD'"),
        ("side", 1, "'BUY' or 'SELL'"),
    ],
)
def test_unknown_enum_name_is_refused_listing_the_accepted(field: str, bad: Any, accepted: str) -> None:
    kwargs = {"id": "o1", "symbol": "X", "side": "buy", "type": "market", "quantity": 1.0, field: bad}
    with pytest.raises(ValidationError) as info:
        Order(**kwargs)
    err = info.value.errors()[0]
    assert err["loc"] == (field,)
    assert accepted in err["msg"]


def test_unknown_enum_name_raises_value_error_directly() -> None:
    with pytest.raises(ValueError):
        OrderSide("hold")


def test_side_and_type_helpers() -> None:
    assert (OrderSide.BUY.sign, OrderSide.SELL.sign) == (1, -1)
    assert OrderSide.BUY.opposite is OrderSide.SELL and OrderSide.SELL.opposite is OrderSide.BUY
    assert {t for t in OrderType if t.is_algorithm} == set(ALGORITHMS)


# -- metadata keys by type --------------------------------------------------------------


def test_metadata_keys_match_the_design_table() -> None:
    window = {"duration_s", "start_time", "end_time"}
    assert METADATA_KEYS == {
        OrderType.MARKET: frozenset(),
        OrderType.LIMIT: frozenset(),
        OrderType.ICEBERG: {"display_size", "display_variance"},
        OrderType.TWAP: window | {"slices", "interval_s", "randomize", "allow_past_end"},
        OrderType.VWAP: window | {"buckets", "profile", "max_participation"},
        OrderType.SMART: {"urgency", "duration_s"},
    }


@pytest.mark.parametrize(
    ("t", "key", "value"),
    [
        (OrderType.MARKET, "display_size", 1.0),
        (OrderType.LIMIT, "duration_s", 60),
        (OrderType.ICEBERG, "duration_s", 60),
        (OrderType.TWAP, "urgency", "high"),
        (OrderType.TWAP, "max_participation", 0.1),
        (OrderType.VWAP, "slices", 5),
        (OrderType.SMART, "display_size", 1.0),
        (OrderType.TWAP, "colour", "red"),
    ],
)
def test_metadata_key_of_another_type_is_refused_by_name(t: OrderType, key: str, value: Any) -> None:
    msg = refused("metadata", f"metadata key {key!r} is not accepted for {t.value} orders", t,
                  metadata=meta(t, **{key: value}))
    accepted = ", ".join(sorted(METADATA_KEYS[t])) or "none"
    assert f"(accepted: {accepted})" in msg


def test_every_documented_key_is_accepted() -> None:
    build(OrderType.ICEBERG, metadata={"display_size": 2.0, "display_variance": 0.2})
    build(OrderType.TWAP, metadata={"duration_s": 600, "slices": 10, "randomize": True, "allow_past_end": False})
    build(OrderType.TWAP, metadata={"start_time": 1.0e9, "end_time": 1.0e9 + 60, "interval_s": 5})
    build(OrderType.VWAP, metadata={"duration_s": 600, "buckets": 3, "profile": [1, 2, 1], "max_participation": 0.2})
    build(OrderType.VWAP, metadata={"start_time": 1.0e9, "end_time": 1.0e9 + 60, "profile": "market"})
    build(OrderType.SMART, metadata={"urgency": "low", "duration_s": 30})


# -- ICEBERG --------------------------------------------------------------------------------


def test_iceberg_requires_display_size() -> None:
    refused("metadata", "metadata['display_size'] is required for ICEBERG orders", OrderType.ICEBERG,
            metadata={})
    refused("metadata", "display_size", OrderType.ICEBERG, metadata={"display_variance": 0.1})


@pytest.mark.parametrize("bad", [0, -1.0, NAN, INF, "1", True, None])
def test_iceberg_display_size_must_be_positive_and_finite(bad: Any) -> None:
    refused("metadata", "metadata['display_size'] must be", OrderType.ICEBERG,
            metadata={"display_size": bad})


def test_iceberg_display_size_is_at_most_the_quantity() -> None:
    refused("metadata", "metadata['display_size'] must be in (0, quantity=10]", OrderType.ICEBERG,
            metadata={"display_size": 10.5})
    assert build(OrderType.ICEBERG, metadata={"display_size": 10.0}).metadata["display_size"] == 10.0


@given(st.floats(min_value=1e-9, max_value=1e9), st.floats(min_value=0.0, max_value=1.0, exclude_min=True))
def test_any_display_size_in_the_quantity_builds(quantity: float, fraction: float) -> None:
    display = quantity * fraction
    assume(0 < display <= quantity)  # rounding at the edges
    build(OrderType.ICEBERG, quantity=quantity, metadata={"display_size": display})


@pytest.mark.parametrize("good", [0, 0.0, 0.5, 0.999])
def test_iceberg_display_variance_accepted_in_0_to_1(good: float) -> None:
    build(OrderType.ICEBERG, metadata=meta(OrderType.ICEBERG, display_variance=good))


@pytest.mark.parametrize("bad", [1, 1.0, -0.1, NAN, INF, "0.1", True])
def test_iceberg_display_variance_refused_outside_0_to_1(bad: Any) -> None:
    refused("metadata", "metadata['display_variance'] must be a fraction in [0, 1)", OrderType.ICEBERG,
            metadata=meta(OrderType.ICEBERG, display_variance=bad))


# -- TWAP / VWAP windows --------------------------------------------------------------------

WINDOWED = [OrderType.TWAP, OrderType.VWAP]


@pytest.mark.parametrize("t", WINDOWED)
def test_window_by_duration_or_by_start_and_end(t: OrderType) -> None:
    assert build(t, metadata={"duration_s": 0.5}).metadata == {"duration_s": 0.5}
    build(t, metadata={"start_time": 1_700_000_000, "end_time": 1_700_003_600})


@pytest.mark.parametrize("t", WINDOWED)
def test_window_both_forms_refused(t: OrderType) -> None:
    refused("metadata", f"metadata for {t.value} takes duration_s or start_time + end_time, not both", t,
            metadata={"duration_s": 60, "start_time": 1.0, "end_time": 100.0})
    refused("metadata", "not both", t, metadata={"duration_s": 60, "start_time": 1.0})


@pytest.mark.parametrize("t", WINDOWED)
def test_window_neither_form_refused(t: OrderType) -> None:
    refused("metadata", f"metadata for {t.value} requires duration_s (seconds > 0) or start_time + end_time",
            t, metadata={})


@pytest.mark.parametrize("t", WINDOWED)
def test_window_half_open_refused(t: OrderType) -> None:
    refused("metadata", "metadata['end_time'] is required", t, metadata={"start_time": 10.0})
    refused("metadata", "metadata['start_time'] is required", t, metadata={"end_time": 10.0})


@pytest.mark.parametrize("t", WINDOWED)
@pytest.mark.parametrize(("start", "end"), [(100.0, 100.0), (100.0, 50.0)])
def test_window_end_must_be_after_start(t: OrderType, start: float, end: float) -> None:
    refused("metadata", "metadata['end_time'] must be after start_time", t,
            metadata={"start_time": start, "end_time": end})


@pytest.mark.parametrize("t", WINDOWED + [OrderType.SMART])
@pytest.mark.parametrize("bad", [0, -60, NAN, INF, "60"])
def test_duration_must_be_finite_and_positive(t: OrderType, bad: Any) -> None:
    refused("metadata", "metadata['duration_s'] must be", t, metadata={"duration_s": bad})


@pytest.mark.parametrize("t", WINDOWED)
@pytest.mark.parametrize("key", ["start_time", "end_time"])
@pytest.mark.parametrize("bad", [-1.0, NAN, "soon"])
def test_window_times_must_be_finite_positive(t: OrderType, key: str, bad: Any) -> None:
    window = {"start_time": 100.0, "end_time": 200.0, key: bad}
    refused("metadata", f"metadata['{key}'] must be", t, metadata=window)


# -- TWAP slicing -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4"])
def test_twap_slices_must_be_a_whole_number_from_1(bad: Any) -> None:
    refused("metadata", "metadata['slices'] must be a whole number >= 1", OrderType.TWAP,
            metadata=meta(OrderType.TWAP, slices=bad))


@pytest.mark.parametrize("bad", [0, -5.0, NAN, INF])
def test_twap_interval_must_be_finite_and_positive(bad: Any) -> None:
    refused("metadata", "metadata['interval_s'] must be", OrderType.TWAP,
            metadata=meta(OrderType.TWAP, interval_s=bad))


def test_twap_slices_and_interval_together_refused() -> None:
    refused("metadata", "metadata for TWAP takes slices or interval_s, not both", OrderType.TWAP,
            metadata=meta(OrderType.TWAP, slices=10, interval_s=6))
    assert build(OrderType.TWAP, metadata=meta(OrderType.TWAP, slices=1)).metadata["slices"] == 1


@pytest.mark.parametrize("key", ["randomize", "allow_past_end"])
@pytest.mark.parametrize("bad", [1, "yes", None])
def test_twap_flags_must_be_booleans(key: str, bad: Any) -> None:
    refused("metadata", f"metadata['{key}'] must be true or false", OrderType.TWAP,
            metadata={"duration_s": 60, key: bad})


# -- VWAP -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, 0.0, 1.5, -0.1, NAN, INF, True])
def test_vwap_max_participation_in_0_to_1(bad: Any) -> None:
    refused("metadata", "metadata['max_participation'] must be in (0, 1]", OrderType.VWAP,
            metadata=meta(OrderType.VWAP, max_participation=bad))


@pytest.mark.parametrize("good", [1, 1.0, 0.5, 1e-6])
def test_vwap_max_participation_accepted(good: float) -> None:
    build(OrderType.VWAP, metadata=meta(OrderType.VWAP, max_participation=good))


@pytest.mark.parametrize("bad", [0, -1, 2.0])
def test_vwap_buckets_must_be_a_whole_number_from_1(bad: Any) -> None:
    refused("metadata", "metadata['buckets'] must be a whole number >= 1", OrderType.VWAP,
            metadata=meta(OrderType.VWAP, buckets=bad))


@pytest.mark.parametrize("good", ["u_shape", "market", [1.0], [0, 1, 2], (3, 1)])
def test_vwap_profile_names_and_weights_accepted(good: Any) -> None:
    build(OrderType.VWAP, metadata=meta(OrderType.VWAP, profile=good))


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("flat", "metadata['profile'] must be one of u_shape, market or a list of weights, got 'flat'"),
        ([], "non-empty list of weights"),
        (5, "non-empty list of weights"),
        ([1.0, -0.5], "weights must be finite numbers >= 0, got -0.5"),
        ([1.0, NAN], "weights must be finite numbers >= 0"),
        ([1.0, "2"], "weights must be finite numbers >= 0"),
        ([0, 0.0], "weights must sum to a positive number"),
    ],
)
def test_vwap_profile_refused(bad: Any, fragment: str) -> None:
    refused("metadata", fragment, OrderType.VWAP, metadata=meta(OrderType.VWAP, profile=bad))


def test_vwap_profile_length_must_match_buckets() -> None:
    refused("metadata", "metadata['profile'] has 2 weights but buckets is 3", OrderType.VWAP,
            metadata=meta(OrderType.VWAP, buckets=3, profile=[1, 2]))
    build(OrderType.VWAP, metadata=meta(OrderType.VWAP, buckets=3, profile=[1, 2, 1]))


# -- SMART ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["low", "normal", "high"])
def test_smart_urgency_accepted(good: str) -> None:
    assert build(OrderType.SMART, metadata={"urgency": good}).metadata["urgency"] == good


@pytest.mark.parametrize("bad", ["urgent", "", 3, None])
def test_smart_urgency_refused_listing_the_accepted(bad: Any) -> None:
    refused("metadata", "metadata['urgency'] must be one of low, normal, high", OrderType.SMART,
            metadata={"urgency": bad})


# -- time in force --------------------------------------------------------------------------------


def test_gtd_requires_expire_at() -> None:
    refused("expire_at", "expire_at is required when time_in_force is GTD", time_in_force="GTD")
    order = build(OrderType.LIMIT, time_in_force=TimeInForce.GTD, expire_at=1_700_000_060.0)
    assert order.expire_at == 1_700_000_060.0


@pytest.mark.parametrize("tif", ["GTC", "IOC", "FOK", "DAY"])
def test_expire_at_refused_without_gtd(tif: str) -> None:
    refused("expire_at", f"expire_at is only accepted with time_in_force GTD, not {tif}",
            OrderType.LIMIT, time_in_force=tif, expire_at=1_700_000_060.0)


@pytest.mark.parametrize(("bad", "fragment"), [(0, "greater than 0"), (NAN, "finite")])
def test_expire_at_must_be_finite_and_positive(bad: float, fragment: str) -> None:
    refused("expire_at", fragment, OrderType.LIMIT, time_in_force="GTD", expire_at=bad)


@pytest.mark.parametrize("t", ALGORITHMS)
@pytest.mark.parametrize("tif", [TimeInForce.IOC, TimeInForce.FOK])
def test_algorithms_refuse_ioc_and_fok(t: OrderType, tif: TimeInForce) -> None:
    refused("time_in_force", f"time_in_force {tif.value} is not accepted for {t.value} orders "
            "(accepted: GTC, DAY)", t, time_in_force=tif)


@pytest.mark.parametrize("t", ALGORITHMS)
@pytest.mark.parametrize("tif", [TimeInForce.GTC, TimeInForce.DAY])
def test_algorithms_accept_gtc_and_day(t: OrderType, tif: TimeInForce) -> None:
    assert build(t, time_in_force=tif).time_in_force is tif


@pytest.mark.parametrize("t", [OrderType.MARKET, OrderType.LIMIT])
@pytest.mark.parametrize("tif", [TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY])
def test_plain_orders_accept_every_time_in_force(t: OrderType, tif: TimeInForce) -> None:
    assert build(t, time_in_force=tif).time_in_force is tif


# -- OrderStatus ----------------------------------------------------------------------------------

# DESIGN.md, "Order states and events": status -> FIX 39
DESIGN_FIX_CODES = {
    "PENDING_NEW": "A",
    "NEW": "0",
    "PARTIALLY_FILLED": "1",
    "FILLED": "2",
    "PENDING_CANCEL": "6",
    "CANCELED": "4",
    "REJECTED": "8",
    "EXPIRED": "C",
}


def test_statuses_are_exactly_the_design_table() -> None:
    assert [s.name for s in OrderStatus] == list(DESIGN_FIX_CODES)
    assert all(s.value == s.name for s in OrderStatus)


@pytest.mark.parametrize(("name", "code"), list(DESIGN_FIX_CODES.items()))
def test_status_fix_code(name: str, code: str) -> None:
    assert OrderStatus[name].fix_code == code


def test_final_and_working_statuses() -> None:
    final = {s for s in OrderStatus if s.is_final}
    working = {s for s in OrderStatus if s.is_working}
    assert final == {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
    assert working == {OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_CANCEL}
    # PENDING_NEW: no answer yet (or unknown outcome); neither live at the venue nor over
    assert set(OrderStatus) - final - working == {OrderStatus.PENDING_NEW}


# -- Fill, OrderResult ----------------------------------------------------------------------------


def _fill(qty: float, price: float, fee: float) -> Fill:
    return Fill("o1", "sim", "BTC/USD", OrderSide.BUY, price, qty, fee, Liquidity.TAKER, 1.0)


def test_fill_notional_and_result_sums() -> None:
    f1, f2 = _fill(0.5, 100.0, 0.05), _fill(0.25, 102.0, -0.01)
    assert f1.notional == 50.0
    result = OrderResult("o1", "sim", OrderStatus.PARTIALLY_FILLED, quantity=1.0,
                         filled_quantity=0.75, fills=[f1, f2])
    assert result.remaining_quantity == 0.25
    assert result.fees == pytest.approx(0.04)
    assert not result.is_final
    done = OrderResult("o1", None, OrderStatus.REJECTED, quantity=1.0, reason="halted")
    assert done.is_final and done.fees == 0 and done.remaining_quantity == 1.0
    over = OrderResult("o1", "sim", OrderStatus.FILLED, quantity=1.0, filled_quantity=1.5)
    assert over.remaining_quantity == 0.0
    with pytest.raises(AttributeError):
        f1.price = 1.0  # type: ignore[misc]


# -- Instrument -------------------------------------------------------------------------------------

STEPS = ["0.01", "0.001", "0.5", "0.0001", "5", "0.25", "1", "0.00000001", "100"]


def _inst(tick: str, lot: str = "0.001", min_q: str | None = None) -> Instrument:
    return Instrument("BTC/USD", Decimal(tick), Decimal(lot), Decimal(min_q or lot))


@given(st.sampled_from(STEPS), st.integers(min_value=1, max_value=10**11))
def test_ticks_round_trip_exactly(tick: str, ticks: int) -> None:
    inst = _inst(tick)
    price = inst.ticks_to_price(ticks)
    assert price == float(ticks * Decimal(tick))  # the nearest float to the exact price
    assert inst.price_to_ticks(price) == ticks


@given(st.sampled_from(STEPS), st.integers(min_value=1, max_value=10**11))
def test_lots_round_trip_exactly(lot: str, lots: int) -> None:
    inst = _inst("0.01", lot)
    quantity = inst.lots_to_quantity(lots)
    assert quantity == float(lots * Decimal(lot))
    assert inst.quantity_to_lots(quantity) == lots


@given(
    st.sampled_from(STEPS),
    st.integers(min_value=0, max_value=10**10),  # 1e-12 tolerance: 0.01 unit here
    st.sampled_from(["0.5", "0.25", "0.1", "0.9"]),
)
def test_off_tick_and_off_lot_give_none(step: str, units: int, off: str) -> None:
    value = float((units + Decimal(off)) * Decimal(step))
    assert _inst(step).price_to_ticks(value) is None
    assert _inst("0.01", step).quantity_to_lots(value) is None


def test_large_counts_off_by_half_a_unit_are_not_rounded() -> None:
    # a 1e-9 relative tolerance once accepted these as whole counts
    assert _inst("1", "1").quantity_to_lots(1_000_000_000.5) is None
    assert _inst("0.01", "0.00000001").quantity_to_lots(10.000000005) is None
    assert _inst("0.1").price_to_ticks(100_000_000.05) is None


def test_float_noise_is_still_on_the_tick() -> None:
    assert _inst("0.1").price_to_ticks(0.1 + 0.2) == 3
    assert _inst("0.01", "0.1").quantity_to_lots(sum([0.1] * 10)) == 10
    assert _inst("0.01").price_to_ticks(50_000.01) == 5_000_001


def test_instrument_sizes_from_floats_strings_or_decimals_agree() -> None:
    a = Instrument("X", 0.01, 0.001, 0.001)  # type: ignore[arg-type]
    b = Instrument("X", "0.01", "0.001", "0.001")  # type: ignore[arg-type]
    assert a == b == Instrument("X", Decimal("0.01"), Decimal("0.001"), Decimal("0.001"))
    assert (a.tick_size, a.lot_size) == (Decimal("0.01"), Decimal("0.001"))


@pytest.mark.parametrize("field", ["tick_size", "lot_size", "min_quantity"])
@pytest.mark.parametrize("bad", ["0", "-0.01", "NaN", "Infinity"])
def test_instrument_refuses_non_positive_sizes(field: str, bad: str) -> None:
    sizes = {"tick_size": Decimal("0.01"), "lot_size": Decimal("0.001"), "min_quantity": Decimal("0.001")}
    sizes[field] = Decimal(bad)
    with pytest.raises(ValueError, match=f"{field} of X must be > 0"):
        Instrument("X", **sizes)


@pytest.mark.parametrize(
    ("lot", "min_q", "expected"),
    [("0.001", "0.001", 1), ("0.001", "0.0015", 2), ("0.001", "0.01", 10), ("0.5", "0.2", 1), ("5", "12", 3)],
)
def test_min_lots_rounds_the_minimum_up(lot: str, min_q: str, expected: int) -> None:
    assert _inst("0.01", lot, min_q).min_lots == expected


# -- FeeSchedule --------------------------------------------------------------------------------------


def test_fee_schedule_maker_and_taker_bps() -> None:
    fees = FeeSchedule(maker_bps=-1.0, taker_bps=5.0)
    assert fees.fee(10_000.0, Liquidity.TAKER) == pytest.approx(5.0)
    assert fees.fee(10_000.0, Liquidity.MAKER) == pytest.approx(-1.0)  # a rebate
    assert fees.fee(0.0, Liquidity.TAKER) == 0.0
    assert FeeSchedule().fee(1e6, Liquidity.TAKER) == 0.0


@given(
    st.floats(min_value=0, max_value=1e9),
    st.floats(min_value=-10, max_value=50),
    st.floats(min_value=-10, max_value=50),
)
def test_fee_is_notional_times_bps(notional: float, maker: float, taker: float) -> None:
    fees = FeeSchedule(maker_bps=maker, taker_bps=taker)
    assert fees.fee(notional, Liquidity.MAKER) == pytest.approx(notional * maker / 10_000)
    assert fees.fee(notional, Liquidity.TAKER) == pytest.approx(notional * taker / 10_000)
