"""The order store's own rules, through its public methods.

- Bounded memory: finished records, finished splits, early answers and taken
  ids each forget their oldest past `remember`; working records, working splits
  and queued orders are never forgotten.
- The merge rule: a final state never changes, a fill counts once, filled
  quantity only grows, a report of an earlier stage changes nothing.
- One look-up answers what an id is; `is_final` says whether it is final.
- Events reach subscribers in the order the changes were posted, from any
  thread; a subscriber that raises is logged and the others still run.
"""

from __future__ import annotations

import logging
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.models import Fill, Liquidity, Order, OrderResult, OrderSide, OrderStatus
from engine.store import EARLY, QUEUED, RECORD, SPLIT, OrderRecord, OrderStore, merge_result

SYMBOL = "BTC/USD"
S = OrderStatus


def order(oid: str, qty: float = 1.0) -> Order:
    return Order(id=oid, symbol=SYMBOL, side="BUY", type="LIMIT", quantity=qty, price=100.0)


def result(oid: str, status: OrderStatus, filled: float = 0.0, qty: float = 1.0) -> OrderResult:
    return OrderResult(oid, "v", status, qty, filled, symbol=SYMBOL, side=OrderSide.BUY, price=100.0,
                       timestamp=1.0)


def add(store: OrderStore, oid: str, status: OrderStatus, filled: float = 0.0) -> None:
    with store.lock:
        store.add_record(oid, OrderRecord(order(oid), "v", result(oid, status, filled)))


def finish(store: OrderStore, oid: str) -> None:
    """A working record fills, as a router settles it."""
    with store.lock:
        record = store.live_record(oid)
        assert record is not None
        was_final = record.result.status.is_final
        record.result = result(oid, S.FILLED, 1.0)
        store.record_changed(oid, record, was_final)


# -- bounded memory --------------------------------------------------------------------------------


def test_finished_records_forget_their_oldest_past_remember_and_working_ones_never() -> None:
    store = OrderStore(remember=3, live=1)
    for i in range(10):
        add(store, f"w{i}", S.NEW)
    for i in range(6):
        add(store, f"f{i}", S.FILLED, 1.0)
    assert [store.result(f"f{i}") is None for i in range(6)] == [True] * 3 + [False] * 3
    assert store.result("f3").status is S.FILLED  # kept compactly: a copy, equal
    assert all(store.result(f"w{i}").status is S.NEW for i in range(10))
    assert store.record_count() == 10 + 1  # the working ones and the one newest finished
    # A working record that finishes joins the finished ones and the oldest leave.
    finish(store, "w0")
    assert store.result("w0").status is S.FILLED and store.result("f3") is None


def finished_split(store: OrderStore, oid: str) -> None:
    """A split whose two pieces were refused before any venue (no records)."""
    store.add_split(order(oid), [f"{oid}.1", f"{oid}.2"])
    for cid in (f"{oid}.1", f"{oid}.2"):
        store.piece_answered(cid, result(cid, S.REJECTED))


def test_splits_forget_their_oldest_past_remember_with_their_pieces_and_results() -> None:
    store = OrderStore(remember=2)
    for i in range(3):
        finished_split(store, f"s{i}")
        store.keep_split_result(f"s{i}", result(f"s{i}", S.FILLED, 1.0))
    assert store.split("s0") is None and store.split_of("s0.1") is None and store.split_result("s0") is None
    assert store.split_pieces("s0") is None and store.lookup("s0") is None
    for i in (1, 2):
        first, pieces = store.split(f"s{i}")
        assert first == order(f"s{i}") and pieces == (f"s{i}.1", f"s{i}.2")
        assert store.split_of(f"s{i}.2") == f"s{i}"
        assert store.split_result(f"s{i}").status is S.FILLED


def test_a_working_split_is_never_forgotten_only_finished_ones_are() -> None:
    store = OrderStore(remember=2)
    store.add_split(order("w"), ["w.1", "w.2"])
    add(store, "w.1", S.NEW)
    add(store, "w.2", S.FILLED, 0.5)
    for i in range(3):
        finished_split(store, f"s{i}")
    assert store.split_pieces("w") == ("w.1", "w.2") and store.is_final("w") is False
    assert [store.is_split(f"s{i}") for i in range(3)] == [False, True, True]
    # Once it finishes it is the newest finished split: the oldest other one leaves.
    finish(store, "w.1")
    assert store.is_final("w") is True
    assert [store.is_split(oid) for oid in ("s1", "s2", "w")] == [False, True, True]


def test_a_split_becomes_final_when_its_last_piece_ends_though_earlier_records_are_gone() -> None:
    store = OrderStore(remember=2, live=1)
    store.add_split(order("s"), ["s.1", "s.2"])
    add(store, "s.1", S.FILLED, 0.5)
    add(store, "s.2", S.NEW)
    for i in range(3):
        add(store, f"o{i}", S.FILLED, 1.0)
    assert store.result("s.1") is None  # its record is forgotten
    finish(store, "s.2")
    assert store.is_final("s") is True
    found = store.lookup("s")
    assert [(p.order_id, p.status, p.filled_quantity) for p in found.pieces] == [
        ("s.1", S.FILLED, 0.5), ("s.2", S.FILLED, 1.0)]


def test_early_answers_and_taken_ids_forget_their_oldest_past_remember() -> None:
    store = OrderStore(remember=2)
    for i in range(3):
        assert store.take(order(f"e{i}")) is None
        store.routed(f"e{i}", result(f"e{i}", S.REJECTED))
    assert store.early("e0") is None and store.lookup("e0") is None
    assert [store.early(f"e{i}").status for i in (1, 2)] == [S.REJECTED, S.REJECTED]
    assert store.taken_ids() == ["e1", "e2"]
    # A forgotten id may be taken again; a remembered one may not.
    assert store.take(order("e0")) is None
    assert store.take(order("e2")) == "order id 'e2' is already in use"


def test_queued_orders_are_never_forgotten() -> None:
    store = OrderStore(remember=1)
    for i in range(5):
        assert store.take(order(f"q{i}")) is None
    for i in range(5, 10):
        store.take(order(f"q{i}"))
        store.routed(f"q{i}")
    assert store.queued_ids() == [f"q{i}" for i in range(5)]
    assert all(store.lookup(f"q{i}").kind == QUEUED for i in range(5))


@settings(max_examples=60, deadline=None)
@given(
    remember=st.integers(1, 6),
    steps=st.lists(st.sampled_from(["work", "done", "finish", "split", "wsplit", "early"]), max_size=40),
)
def test_whatever_comes_memory_stays_within_remember(remember: int, steps: list[str]) -> None:
    store = OrderStore(remember=remember, live=1)
    working: list[str] = []
    finished: list[str] = []
    splits: list[str] = []
    working_splits: list[str] = []
    early: list[str] = []
    for n, step in enumerate(steps):
        oid = f"o{n}"
        if step == "work":
            add(store, oid, S.NEW)
            working.append(oid)
        elif step == "done":
            add(store, oid, S.FILLED, 1.0)
            finished.append(oid)
        elif step == "finish" and working:
            done = working.pop(0)
            finish(store, done)
            finished.append(done)
        elif step == "split":
            finished_split(store, oid)
            splits.append(oid)
        elif step == "wsplit":  # no piece answered yet
            store.add_split(order(oid), [f"{oid}.1", f"{oid}.2"])
            working_splits.append(oid)
        elif step == "early":
            store.take(order(oid))
            store.routed(oid, result(oid, S.CANCELED))
            early.append(oid)
    assert all(store.result(oid).status is S.NEW for oid in working)
    assert [oid for oid in finished if store.result(oid) is not None] == finished[-remember:]
    assert [oid for oid in splits if store.is_split(oid)] == splits[-remember:]
    assert all(store.is_split(oid) for oid in working_splits)
    assert [oid for oid in early if store.early(oid) is not None] == early[-remember:]
    assert len(store.taken_ids()) == min(len(early), remember)


# -- one look-up --------------------------------------------------------------------------------------


def test_lookup_and_is_final_follow_an_order_from_queue_to_record() -> None:
    store = OrderStore()
    assert store.lookup("a") is None and store.is_final("a") is None
    store.take(order("a"))
    assert (store.lookup("a").kind, store.lookup("a").order) == (QUEUED, order("a"))
    assert store.claim("a") == order("a") and store.claim("a") is None  # one worker holds it
    assert store.unqueue("a") is None  # held: too late to cancel it as queued
    assert store.lookup("a").kind == QUEUED and store.is_final("a") is False
    add(store, "a", S.NEW)
    store.routed("a")
    assert (store.lookup("a").kind, store.lookup("a").result.status) == (RECORD, S.NEW)
    assert store.is_final("a") is False
    finish(store, "a")
    assert store.lookup("a").result.status is S.FILLED and store.is_final("a") is True


def test_a_canceled_queued_order_frees_its_id_unless_it_is_answered() -> None:
    store = OrderStore()
    store.take(order("c"))
    assert store.unqueue("c") == order("c") and store.claim("c") is None
    assert store.lookup("c") is None and store.take(order("c")) is None  # free again
    store.unqueue("c")
    store.routed("c", result("c", S.CANCELED))
    assert (store.lookup("c").kind, store.is_final("c")) == (EARLY, True)
    assert store.take(order("c")) == "order id 'c' is already in use"


def test_a_split_is_final_when_every_piece_is_and_then_keeps_its_result() -> None:
    store = OrderStore()
    store.add_split(order("s"), ["s.1", "s.2"])
    found = store.lookup("s")
    assert (found.kind, found.result, found.pieces) == (SPLIT, None, [None, None])
    assert store.is_final("s") is False
    add(store, "s.1", S.FILLED, 0.5)
    add(store, "s.2", S.NEW)
    assert [p.status for p in store.lookup("s").pieces] == [S.FILLED, S.NEW]
    assert store.is_final("s") is False
    finish(store, "s.2")
    assert store.is_final("s") is True
    store.keep_split_result("s", result("s", S.FILLED, 1.0))
    found = store.lookup("s")
    assert (found.result.status, found.pieces) == (S.FILLED, None)


# -- the merge rule ------------------------------------------------------------------------------------

FINAL = [S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED]
WORKING = [S.PENDING_NEW, S.NEW, S.PENDING_CANCEL, S.PARTIALLY_FILLED]
STAGE = {S.PENDING_NEW: 0, S.NEW: 1, S.PENDING_CANCEL: 1, S.PARTIALLY_FILLED: 2}


def fill(n: int, *, traded: bool) -> Fill:
    return Fill("m", "v", SYMBOL, OrderSide.BUY, 100.0 + n, 0.1, 0.0, Liquidity.TAKER, 1.0 + n,
                trade_id=f"t{n}" if traded else "")


reports = st.lists(
    st.tuples(
        st.sampled_from(WORKING + FINAL),
        st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0]),
        st.lists(st.builds(fill, st.integers(0, 5), traded=st.booleans()), max_size=3),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(reports=reports)
def test_the_merge_rule_holds_for_any_order_of_reports(reports: list) -> None:
    cur = result("m", S.PENDING_NEW)
    for status, filled, fills in reports:
        merged = merge_result(cur, status, filled, fills, "why", 2.0)
        known = {(f.trade_id,) if f.trade_id else (f.timestamp, f.price, f.quantity) for f in cur.fills}
        fresh = {(f.trade_id,) if f.trade_id else (f.timestamp, f.price, f.quantity) for f in fills} - known
        stale = not status.is_final and (filled < cur.filled_quantity or STAGE[status] < STAGE.get(cur.status, 1))
        if merged is None:
            # Nothing changed: no new fill, no more filled, and no newer state.
            assert not fresh and filled <= cur.filled_quantity
            assert cur.status.is_final or stale or status is cur.status
            continue
        new, added = merged
        if cur.status.is_final:
            assert new.status is cur.status  # a final state never changes
        elif stale:
            assert new.status is cur.status  # an earlier stage changes nothing
        else:
            assert new.status is status
        assert new.filled_quantity == max(cur.filled_quantity, filled)  # filled only grows
        assert len(added) == len(fresh) and new.fills == cur.fills + added  # a fill counts once
        cur = new


def test_a_late_fill_after_cancel_counts_once_and_keeps_the_cancel() -> None:
    canceled = result("m", S.CANCELED, 0.1)
    canceled.fills = [fill(1, traded=True)]
    late = merge_result(canceled, S.PARTIALLY_FILLED, 0.2, [fill(1, traded=True), fill(2, traded=True)], None, 3.0)
    assert late is not None
    new, added = late
    assert (new.status, new.filled_quantity, [f.trade_id for f in added]) == (S.CANCELED, 0.2, ["t2"])
    assert merge_result(new, S.PARTIALLY_FILLED, 0.2, [fill(2, traded=True)], None, 4.0) is None


# -- the event stream ----------------------------------------------------------------------------------


def test_events_reach_every_subscriber_in_the_order_posted_from_any_thread() -> None:
    store = OrderStore()
    seen: list[tuple[str, int]] = []
    also: list[tuple[str, int]] = []
    store.subscribe(seen.append)
    store.subscribe(also.append)
    posted: list[tuple[str, int]] = []

    def writer(name: str) -> None:
        for i in range(500):
            with store.lock:
                event = (name, i)
                posted.append(event)
                store.post_locked([event])
            store.deliver()

    threads = [threading.Thread(target=writer, args=(name,)) for name in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.deliver()
    assert len(posted) == 2_000 and seen == posted and also == posted


def test_a_subscriber_that_raises_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    store = OrderStore()
    before: list[str] = []
    after: list[str] = []
    results: list[str] = []

    def broken(event: str) -> None:
        raise RuntimeError(f"cannot take {event}")

    store.subscribe(before.append)
    store.subscribe(broken)
    store.subscribe(after.append)
    store.add_order_listener(lambda r: results.append(r.order_id))
    with caplog.at_level(logging.ERROR, logger="execdesk.store"):
        store.publish("one")
        with store.lock:
            store.post_locked(["two", "three"], result("x", S.NEW))
        store.deliver()
    assert before == after == ["one", "two", "three"] and results == ["x"]
    failures = [r for r in caplog.records if r.getMessage().startswith("event subscriber failed")]
    assert [r.getMessage() for r in failures] == [
        "event subscriber failed on 'one'", "event subscriber failed on 'two'", "event subscriber failed on 'three'",
    ]
    assert all("cannot take" in str(r.exc_info[1]) for r in failures)
    store.unsubscribe(broken)
    store.publish("four")
    assert after[-1] == "four" and len(caplog.records) == 3


def test_a_result_read_from_history_equals_the_one_kept_whatever_form_it_is_kept_in() -> None:
    store = OrderStore(remember=5, live=1)
    odd = result("odd", S.FILLED, 1.0)
    odd.detail["raw"] = threading.Lock()  # cannot be pickled: history keeps it as it is
    with store.lock:
        store.add_record("odd", OrderRecord(order("odd"), "v", odd))
    kept = {}
    for i in range(3):
        kept[f"f{i}"] = result(f"f{i}", S.FILLED, 1.0)
        kept[f"f{i}"].fills = [fill(i, traded=True)]
        with store.lock:
            store.add_record(f"f{i}", OrderRecord(order(f"f{i}"), "v", kept[f"f{i}"]))
    assert store.archived("f0") and store.archived("odd")
    for oid, first in kept.items():
        again = store.result(oid)
        assert again == first and again == store.record(oid).result
    assert store.result("f0") is not kept["f0"] and store.result("f2") is kept["f2"]  # the newest is live
    assert store.result("odd") is odd and store.result("nobody") is None


def test_an_id_the_store_knows_as_another_orders_cannot_be_queued() -> None:
    """A user order under a parent's child's id (child ids are derived, so guessable) or a
    parent's own id must be refused, or that order's state would answer for it."""
    store = OrderStore(10)
    with store.lock:
        store.add_record("ice.abc.1", OrderRecord(order("ice.abc.1"), "v", result("ice.abc.1", OrderStatus.NEW)))
    store.add_parent("twap-1", object())

    assert store.take(order("ice.abc.1")) == "order id 'ice.abc.1' is already in use by another order"
    assert store.take(order("twap-1")) == "order id 'twap-1' is already in use by another order"
    assert store.take(order("fresh")) is None and store.queued("fresh") is not None


def test_a_split_is_final_with_its_last_piece_while_its_worker_still_holds_it() -> None:
    """The worker lets go of an order after its pieces went out; a listener told of the
    last piece's end asks before that, and must hear 'final' (the bench waited 10 s)."""
    store = OrderStore(10)
    parent = order("sp")
    assert store.take(parent) is None and store.claim("sp") is not None
    store.add_split(parent, ["sp.1", "sp.2"])
    add(store, "sp.1", S.FILLED, 1.0)
    assert store.is_final("sp") is False
    add(store, "sp.2", S.FILLED, 1.0)

    assert store.is_final("sp") is True
