"""Engine events (engine.events): plain slots classes, built positionally or by keyword,
equal by class and fields, and never changed once published."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import anyio
import pytest

from engine import Engine, Fill, Order, OrderSide, OrderStatus, VirtualClock
from engine.events import (
    BreakerStateChanged,
    EngineError,
    Event,
    Halted,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderPendingCancel,
    OrderRejected,
    OrderSubmitted,
    OrderUpdated,
    Resumed,
    VenueDisabled,
    VenueEnabled,
)
from engine.models import Liquidity
from engine.risk import RiskLimits
from tests.conftest import virtual_anyio_backend

SYMBOL = "BTC/USD"
FILL = Fill("c-1", "deep", SYMBOL, OrderSide.BUY, 50_000.0, 0.1, 0.2, Liquidity.TAKER, 7.0)

# Every event class with its fields in order: what routers, the optimizer and the Engine
# build positionally, and what subscribers read by name.
FIELDS = {
    Event: ("ts_event", "ts_init"),
    OrderEvent: ("ts_event", "ts_init", "order_id", "venue", "status", "parent_id"),
    OrderSubmitted: ("ts_event", "ts_init", "order_id", "venue", "status", "parent_id",
                     "symbol", "side", "order_type", "quantity", "price"),
    OrderAccepted: ("ts_event", "ts_init", "order_id", "venue", "status", "parent_id"),
    OrderDenied: ("ts_event", "ts_init", "order_id", "venue", "status", "parent_id", "reason"),
    OrderRejected: ("ts_event", "ts_init", "order_id", "venue", "status", "parent_id", "reason"),
    OrderFilled: ("ts_event", "ts_init", "order_id", "venue", "status", "parent_id",
                  "fill", "filled_quantity", "leaves_quantity"),
    OrderPendingCancel: ("ts_event", "ts_init", "order_id", "venue", "status", "parent_id"),
    OrderCanceled: ("ts_event", "ts_init", "order_id", "venue", "status", "parent_id",
                    "filled_quantity", "reason"),
    OrderExpired: ("ts_event", "ts_init", "order_id", "venue", "status", "parent_id",
                   "filled_quantity", "reason"),
    OrderAmended: ("ts_event", "ts_init", "order_id", "venue", "status", "parent_id", "quantity", "price"),
    OrderUpdated: ("ts_event", "ts_init", "order_id", "venue", "status", "parent_id",
                   "filled_quantity", "quantity", "average_price", "detail", "tca"),
    BreakerStateChanged: ("ts_event", "ts_init", "venue", "old_state", "new_state", "reason"),
    VenueEnabled: ("ts_event", "ts_init", "venue"),
    VenueDisabled: ("ts_event", "ts_init", "venue", "reason"),
    Halted: ("ts_event", "ts_init", "reason"),
    Resumed: ("ts_event", "ts_init"),
    EngineError: ("ts_event", "ts_init", "where", "message"),
}

# The defaults of the fields that have one, per class.
DEFAULTS = {
    OrderSubmitted: {"parent_id": None, "symbol": "", "side": None, "order_type": None, "quantity": 0.0,
                     "price": None},
    OrderDenied: {"parent_id": None, "reason": ""},
    OrderFilled: {"parent_id": None, "fill": None, "filled_quantity": 0.0, "leaves_quantity": 0.0},
    OrderCanceled: {"parent_id": None, "filled_quantity": 0.0, "reason": ""},
    OrderExpired: {"parent_id": None, "filled_quantity": 0.0, "reason": ""},
    OrderAmended: {"parent_id": None, "quantity": 0.0, "price": None},
    OrderUpdated: {"parent_id": None, "filled_quantity": 0.0, "quantity": 0.0, "average_price": None,
                   "detail": "", "tca": None},
    VenueDisabled: {"reason": ""},
}


def sample_values(fields: tuple[str, ...]) -> tuple[Any, ...]:
    """A distinct value per field (so a field read from the wrong slot shows)."""
    return tuple(f"v{i}" for i in range(len(fields)))


@pytest.mark.parametrize("cls", list(FIELDS), ids=lambda c: c.__name__)
def test_each_event_builds_positionally_and_by_keyword_with_the_same_fields(cls: type[Event]) -> None:
    fields = FIELDS[cls]
    values = sample_values(fields)
    by_position = cls(*values)
    by_keyword = cls(**dict(zip(fields, values)))
    assert cls.__match_args__ == fields
    assert [getattr(by_position, name) for name in fields] == list(values)
    assert by_position == by_keyword
    with pytest.raises(TypeError):
        cls(*values, "one too many")
    with pytest.raises(AttributeError):  # slots: no attribute outside the fields
        by_position.note = "x"  # type: ignore[attr-defined]


@pytest.mark.parametrize("cls", list(DEFAULTS), ids=lambda c: c.__name__)
def test_optional_fields_keep_their_defaults(cls: type[Event]) -> None:
    fields = FIELDS[cls]
    defaults = DEFAULTS[cls]
    required = [name for name in fields if name not in defaults]
    event = cls(*sample_values(tuple(required)))
    assert {name: getattr(event, name) for name in defaults} == defaults


def test_a_fill_event_says_its_last_quantity_and_price() -> None:
    filled = OrderFilled(7.0, 7.5, "c-1", "deep", OrderStatus.PARTIALLY_FILLED, None, FILL, 0.1, 0.2)
    assert (filled.last_qty, filled.last_px) == (0.1, 50_000.0)
    bare = OrderFilled(7.0, 7.5, "c-1", "deep", OrderStatus.FILLED)  # a fill report without the fill
    assert (bare.last_qty, bare.last_px) == (0.0, 0.0)


def test_events_are_equal_by_class_and_fields_and_hash_alike() -> None:
    accepted = OrderAccepted(1.0, 2.0, "c-1", "deep", OrderStatus.NEW)
    assert accepted == OrderAccepted(1.0, 2.0, "c-1", "deep", OrderStatus.NEW, None)
    assert hash(accepted) == hash(OrderAccepted(1.0, 2.0, "c-1", "deep", OrderStatus.NEW))
    assert accepted != OrderAccepted(1.0, 2.0, "c-1", "swift", OrderStatus.NEW)
    # Same fields, another class: another event.
    assert accepted != OrderPendingCancel(1.0, 2.0, "c-1", "deep", OrderStatus.NEW)
    assert accepted != (1.0, 2.0, "c-1", "deep", OrderStatus.NEW, None)
    assert len({accepted, OrderAccepted(1.0, 2.0, "c-1", "deep", OrderStatus.NEW)}) == 1


def test_repr_names_the_class_and_every_field() -> None:
    canceled = OrderCanceled(1.0, 2.0, "c-1", "deep", OrderStatus.CANCELED, "P", 0.5, "by operator")
    assert repr(canceled) == (
        "OrderCanceled(ts_event=1.0, ts_init=2.0, order_id='c-1', venue='deep', "
        f"status={OrderStatus.CANCELED!r}, parent_id='P', filled_quantity=0.5, reason='by operator')"
    )
    assert repr(Resumed(3.0, 3.0)) == "Resumed(ts_event=3.0, ts_init=3.0)"


def test_events_pickle_and_copy_whole() -> None:
    events = [
        OrderFilled(1.0, 2.0, "c-1", "deep", OrderStatus.FILLED, "P", FILL, 0.1, 0.0),
        OrderUpdated(1.0, 2.0, "P", None, OrderStatus.NEW, None, 0.0, 1.0, None, "waiting", {"slippage_bps": 1.5}),
        Halted(1.0, 2.0, "drill"),
        Resumed(3.0, 3.0),
    ]
    for event in events:
        assert pickle.loads(pickle.dumps(event)) == event
        assert copy.copy(event) == event


def test_a_new_event_class_must_declare_its_slots() -> None:
    with pytest.raises(TypeError, match="Unslotted must declare __slots__"):
        class Unslotted(Event):  # noqa: F841 - refused as it is defined
            pass


# -- nobody changes a published event ------------------------------------------------------------


@pytest.fixture
def anyio_backend(virtual_clock: VirtualClock) -> Any:
    return virtual_anyio_backend(virtual_clock)


def fields_of(event: Event) -> tuple[Any, ...]:
    # A deep copy: a Fill or a TCA mapping changed in place counts as a change too.
    return copy.deepcopy(tuple(getattr(event, name) for name in type(event).__match_args__))


@pytest.mark.anyio
async def test_no_published_event_changes_after_a_subscriber_received_it(virtual_clock: VirtualClock) -> None:
    limits = RiskLimits(symbols={})  # no per-symbol quantity cap: the refusal below is by notional
    engine = Engine.default(seed=3, clock=virtual_clock, risk=limits)
    subscription = engine.subscribe(maxsize=100_000, name="watcher")
    received: list[tuple[Event, tuple[Any, ...]]] = []

    async def watch() -> None:
        async for event in subscription:
            received.append((event, fields_of(event)))

    def order(oid: str, kind: str, qty: float, **kwargs: Any) -> Order:
        return Order(id=oid, symbol=SYMBOL, side=kwargs.pop("side", "BUY"), type=kind, quantity=qty, **kwargs)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await engine.start(num_workers=4)
        book = engine.venues["deep"].book(SYMBOL)
        bid, ask = book.best_bid, book.best_ask
        await engine.submit(order("mkt", "MARKET", 0.05))  # fills
        await engine.submit(order("rest", "LIMIT", 0.02, price=round(bid - 100, 2)), venue="deep")
        await engine.submit(order("gone", "LIMIT", 0.02, price=round(bid - 120, 2)), venue="swift")
        await engine.submit(order("ioc", "LIMIT", 0.02, price=round(bid - 100, 2), time_in_force="IOC"))
        await engine.submit(order("fat", "LIMIT", 5_000.0, price=round(ask, 2)))  # refused: notional
        await engine.submit(order("twap", "TWAP", 0.06, metadata={"duration_s": 6, "slices": 3}))
        for oid in ("mkt", "ioc", "fat"):
            await engine.wait(oid, timeout=30)
        for oid in ("rest", "gone"):
            while engine.status(oid).status is OrderStatus.PENDING_NEW:
                await anyio.sleep(0.01)
        assert (await engine.amend("rest", quantity=0.03)).status is not OrderStatus.REJECTED
        await engine.cancel("gone")
        engine.disable_venue("thrift", "drill")
        engine.enable_venue("thrift")
        assert (await engine.wait("twap", timeout=60)).status is OrderStatus.FILLED
        await engine.halt("end of test")  # cancels "rest"
        engine.resume()
        await engine.wait("rest", timeout=30)
        await anyio.sleep(1)  # everything published so far reaches the watcher
        await engine.stop(drain=False)
        subscription.close()

    kinds = {type(event) for event, _ in received}
    assert {OrderSubmitted, OrderAccepted, OrderFilled, OrderCanceled, OrderExpired, OrderDenied,
            OrderUpdated, VenueDisabled, VenueEnabled, Halted, Resumed} <= kinds, kinds
    assert any(e.parent_id == "twap" for e, _ in received if isinstance(e, OrderFilled))
    changed = [event for event, seen in received if fields_of(event) != seen]
    assert changed == []
