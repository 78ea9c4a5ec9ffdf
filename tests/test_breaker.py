"""CircuitBreaker: explicit cases plus a reference model driven by hypothesis.

No sleeping: time is a VirtualClock moved by hand.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.resilience.breaker import (
    ALLOWED_EDGES,
    AUTOMATIC_TRIGGERS,
    TRANSITIONS,
    BreakerConfig,
    BreakerState,
    BreakerStateError,
    BreakerTransition,
    CircuitBreaker,
    Trigger,
    next_state,
)
from engine.clock import VirtualClock
from engine.errors import ConfigurationError

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
FAST, SLOW = 0.010, 0.050  # against the default slow_call_duration_s of 0.040


def make(**config: object) -> tuple[CircuitBreaker, VirtualClock, list[BreakerTransition]]:
    clock = VirtualClock(start=1000.0)
    seen: list[BreakerTransition] = []
    breaker = CircuitBreaker("venue-a", clock, BreakerConfig(**config), seen.append)  # type: ignore[arg-type]
    return breaker, clock, seen


def trip_on_failures(breaker: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        assert breaker.allow_request()
        breaker.record_failure(FAST)


# -- the table ---------------------------------------------------------------


def test_table_has_only_the_documented_edges() -> None:
    assert ALLOWED_EDGES == {
        (CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (HALF_OPEN, CLOSED),
        # operator edges, from every state
        (CLOSED, CLOSED), (OPEN, OPEN), (HALF_OPEN, OPEN),
        (OPEN, CLOSED), (HALF_OPEN, CLOSED),
    }
    assert not any(new is HALF_OPEN for old, new in ALLOWED_EDGES if old is not OPEN)


def test_an_edge_outside_the_table_is_a_clear_internal_error() -> None:
    with pytest.raises(BreakerStateError, match="breaker 'v': no edge from CLOSED on WAIT_ELAPSED"):
        next_state("v", CLOSED, Trigger.WAIT_ELAPSED)
    assert next_state("v", CLOSED, Trigger.TRIP) is OPEN


def test_automatic_edges_are_refused_while_forced() -> None:
    with pytest.raises(BreakerStateError, match="while forced closed"):
        next_state("v", CLOSED, Trigger.TRIP, forced="closed")
    assert next_state("v", CLOSED, Trigger.FORCE_OPEN, forced="closed") is OPEN  # the operator's edges stay


def test_every_move_a_breaker_makes_is_an_edge_of_the_table() -> None:
    seen: list[BreakerTransition] = []
    clock = VirtualClock(start=0.0)
    breaker = CircuitBreaker("v", clock, BreakerConfig(window_size=4, minimum_calls=4, wait_duration_open_s=1.0, permitted_calls_half_open=1), seen.append)
    for _ in range(4):
        breaker.record_failure()
    clock.advance(1.5)
    assert breaker.allow_request()
    breaker.record_success(0.001)
    breaker.force_open("drill")
    breaker.reset()
    assert [(t.old, t.new) for t in seen] and all((t.old, t.new) in ALLOWED_EDGES for t in seen)
    assert all(next_state("v", t.old, t.trigger) is t.new for t in seen)


# -- tripping ----------------------------------------------------------------


def test_never_trips_below_minimum_calls_then_trips_at_it() -> None:
    breaker, _, seen = make(window_size=100, minimum_calls=20)
    trip_on_failures(breaker, 19)
    assert breaker.state is CLOSED and breaker.failure_rate == 1.0
    trip_on_failures(breaker, 1)
    assert breaker.state is OPEN
    assert seen[-1].reason == "failure rate 100% >= 50% over the last 20 calls"


def test_a_success_that_completes_minimum_calls_can_trip() -> None:
    breaker, _, _ = make(window_size=100, minimum_calls=20)
    trip_on_failures(breaker, 15)
    for _ in range(4):
        breaker.record_success(FAST)
    assert breaker.state is CLOSED  # 19 calls
    breaker.record_success(FAST)  # 15 / 20 = 75%
    assert breaker.state is OPEN


def test_failure_rate_trip_reason() -> None:
    breaker, clock, seen = make(window_size=100, minimum_calls=100)
    for i in range(100):
        assert breaker.allow_request()
        if i < 45:
            breaker.record_success(FAST)
        else:
            breaker.record_failure()
    assert breaker.state is OPEN
    (transition,) = seen
    assert (transition.old, transition.new, transition.trigger) == (CLOSED, OPEN, Trigger.TRIP)
    assert transition.reason == "failure rate 55% >= 50% over the last 100 calls"
    assert transition.ts == clock.now() and transition.name == "venue-a"


def test_slow_call_trip_reason_counts_slow_successes() -> None:
    breaker, _, seen = make(window_size=100, minimum_calls=100)
    for i in range(100):
        breaker.record_success(SLOW if i >= 37 else FAST)
    assert breaker.state is OPEN
    assert seen[-1].reason == "slow calls 63% over 40 ms in the last 100 calls (threshold 50%)"
    assert breaker.slow_call_rate == pytest.approx(0.63)
    assert breaker.failure_rate == 0.0


def test_slow_failures_count_as_slow_and_exactly_the_limit_is_not_slow() -> None:
    breaker, _, _ = make(window_size=4, minimum_calls=4, failure_rate_threshold=1.0)
    breaker.record_failure(SLOW)
    breaker.record_failure(0.040)  # not over the limit
    breaker.record_failure(None)
    breaker.record_success(0.040)
    assert breaker.slow_call_rate == 0.25
    assert breaker.state is CLOSED


def test_window_slides_old_outcomes_out() -> None:
    breaker, _, _ = make(window_size=10, minimum_calls=10)
    for _ in range(4):
        breaker.record_failure()
    for _ in range(6):
        breaker.record_success(FAST)
    assert breaker.failure_rate == 0.4
    for _ in range(4):  # pushes the four failures out
        breaker.record_success(FAST)
    assert breaker.calls_in_window == 10 and breaker.failure_rate == 0.0
    trip_on_failures(breaker, 4)
    assert breaker.state is CLOSED and breaker.failure_rate == 0.4
    trip_on_failures(breaker, 1)
    assert breaker.state is OPEN


# -- open and half-open -----------------------------------------------------


def test_open_refuses_until_the_wait_passes_then_half_opens() -> None:
    breaker, clock, seen = make(window_size=20, minimum_calls=20, wait_duration_open_s=5.0)
    trip_on_failures(breaker, 20)
    opened = clock.now()
    assert breaker.opened_at == opened and breaker.retry_at == opened + 5.0
    clock.advance(4.999)
    assert not breaker.allow_request()
    assert breaker.state is OPEN and breaker.refused_calls == 1
    clock.advance(0.001)
    assert breaker.allow_request()
    assert breaker.state is HALF_OPEN and breaker.retry_at is None
    assert seen[-1].reason == "open for 5.0 s: trying 3 half-open calls"
    assert seen[-1].trigger is Trigger.WAIT_ELAPSED


def half_open(**config: object) -> tuple[CircuitBreaker, VirtualClock, list[BreakerTransition]]:
    config = {"window_size": 10, "minimum_calls": 10, "wait_duration_open_s": 1.0, **config}
    breaker, clock, seen = make(**config)
    trip_on_failures(breaker, 10)
    clock.advance(1.0)
    assert breaker.allow_request() and breaker.state is HALF_OPEN  # first trial admitted
    return breaker, clock, seen


def test_half_open_admits_only_the_permitted_trials_and_closes_after_them() -> None:
    breaker, _, seen = half_open(permitted_calls_half_open=3)
    assert breaker.allow_request() and breaker.allow_request()
    assert not breaker.allow_request()
    for _ in range(3):
        breaker.record_success(FAST)
    assert breaker.state is CLOSED
    assert seen[-1].reason == "3 of 3 half-open calls succeeded"
    assert breaker.calls_in_window == 0 and breaker.failure_rate == 0.0  # window cleared
    assert breaker.opened_at is None


def test_half_open_closes_when_the_trial_rate_stays_below_threshold() -> None:
    breaker, _, seen = half_open(permitted_calls_half_open=3)
    breaker.allow_request(), breaker.allow_request()
    breaker.record_failure()
    breaker.record_success(SLOW)
    assert breaker.state is HALF_OPEN
    breaker.record_success(FAST)
    assert breaker.state is CLOSED
    assert seen[-1].reason.startswith("2 of 3 half-open calls succeeded (failure rate 33%, slow 33%")


def test_half_open_reopens_as_soon_as_the_verdict_is_certain() -> None:
    breaker, clock, seen = half_open(permitted_calls_half_open=3)
    breaker.allow_request(), breaker.allow_request()
    breaker.record_failure()
    assert breaker.state is HALF_OPEN
    breaker.record_failure()  # 2 of 3 >= 50% whatever the third does
    assert breaker.state is OPEN
    assert seen[-1].trigger is Trigger.TRIALS_FAILED
    assert seen[-1].reason == "2 of 3 half-open calls failed: failure rate 67% >= 50%"
    assert breaker.retry_at == clock.now() + 1.0
    breaker.record_success(FAST)  # the straggler: ignored while OPEN
    assert breaker.state is OPEN and len(seen) == 3


def test_half_open_reopens_on_slow_trials() -> None:
    breaker, _, seen = half_open(permitted_calls_half_open=2)
    breaker.allow_request()
    breaker.record_success(SLOW)
    assert breaker.state is OPEN
    assert seen[-1].reason == "1 of 2 half-open calls over 40 ms: 50% >= 50%"


def test_release_returns_a_trial_slot() -> None:
    breaker, _, _ = half_open(permitted_calls_half_open=2)
    assert breaker.allow_request()
    assert not breaker.allow_request()
    breaker.release()
    assert breaker.snapshot().half_open_calls == 1
    assert breaker.allow_request()
    assert not breaker.allow_request()
    breaker.record_success(FAST)  # one trial done, one still in flight
    breaker.release()  # the one in flight ends without a counting outcome
    assert breaker.snapshot().half_open_calls == 1
    breaker.release()  # nothing in flight: a done trial's slot is not handed back
    assert breaker.snapshot().half_open_calls == 1
    assert breaker.allow_request()
    assert not breaker.allow_request()


def test_stragglers_from_before_the_trip_count_as_trials() -> None:
    breaker, clock, _ = make(
        window_size=4, minimum_calls=4, wait_duration_open_s=1.0, permitted_calls_half_open=3
    )
    assert breaker.allow_request() and breaker.allow_request()  # two slow calls in flight
    trip_on_failures(breaker, 4)
    clock.advance(1.0)
    assert breaker.allow_request() and breaker.state is HALF_OPEN  # trial 1 of 3
    breaker.record_success(FAST)  # the stragglers land: they take trial slots
    breaker.record_success(FAST)
    assert breaker.snapshot().half_open_calls == 2
    assert breaker.allow_request()  # trial 3 of 3
    assert not breaker.allow_request()
    breaker.record_success(FAST)
    assert breaker.state is CLOSED


def test_release_is_a_no_op_when_closed() -> None:
    breaker, _, seen = make()
    breaker.release()
    assert breaker.state is CLOSED and breaker.calls_in_window == 0 and not seen


# -- operator overrides ------------------------------------------------------


def test_force_open_refuses_everything_and_stays_until_released() -> None:
    breaker, clock, seen = make(wait_duration_open_s=1.0)
    breaker.force_open("drill")
    assert breaker.state is OPEN and breaker.forced == "open"
    assert seen[-1].reason == "forced open by operator: drill"
    assert (seen[-1].old, seen[-1].new, seen[-1].trigger) == (CLOSED, OPEN, Trigger.FORCE_OPEN)
    clock.advance(3600)
    assert not breaker.allow_request()
    assert breaker.state is OPEN and breaker.retry_at is None
    breaker.record_success(FAST)  # ignored
    assert breaker.calls_in_window == 0
    breaker.release_force()
    assert breaker.state is CLOSED and breaker.forced is None
    assert seen[-1].reason == "force released by operator"
    assert breaker.allow_request()


def test_force_closed_admits_everything_never_trips_and_keeps_rates() -> None:
    breaker, _, seen = make(window_size=10, minimum_calls=5)
    trip_on_failures(breaker, 5)
    assert breaker.state is OPEN
    breaker.force_closed("venue says it is fine")
    assert breaker.state is CLOSED and breaker.forced == "closed"
    assert seen[-1].reason == "forced closed by operator: venue says it is fine"
    trip_on_failures(breaker, 50)
    assert breaker.state is CLOSED and breaker.failure_rate == 1.0 and breaker.calls_in_window == 10
    breaker.reset("done")
    assert breaker.forced is None and breaker.calls_in_window == 0
    assert seen[-1].reason == "reset by operator: done" and seen[-1].trigger is Trigger.RESET
    trip_on_failures(breaker, 5)
    assert breaker.state is OPEN  # trips again once not forced


def test_force_open_from_open_and_half_open_are_reported() -> None:
    breaker, _, seen = half_open()
    breaker.force_open("a")
    breaker.force_open("b")
    assert [(t.old, t.new) for t in seen[-2:]] == [(HALF_OPEN, OPEN), (OPEN, OPEN)]


def test_release_force_without_a_force_changes_nothing() -> None:
    breaker, _, seen = make(window_size=5, minimum_calls=5)
    trip_on_failures(breaker, 5)
    n = len(seen)
    breaker.release_force()
    assert breaker.state is OPEN and len(seen) == n


def test_reset_from_open_closes_and_clears() -> None:
    breaker, _, seen = make(window_size=5, minimum_calls=5)
    trip_on_failures(breaker, 5)
    breaker.reset()
    assert breaker.state is CLOSED and breaker.calls_in_window == 0
    assert seen[-1].reason == "reset by operator" and breaker.allow_request()


# -- reading -----------------------------------------------------------------


def test_snapshot_for_displays() -> None:
    breaker, clock, _ = make(window_size=10, minimum_calls=10, wait_duration_open_s=2.0)
    trip_on_failures(breaker, 10)
    breaker.allow_request()
    snap = breaker.snapshot()
    assert snap.state is OPEN and snap.forced is None
    assert snap.failure_rate == 1.0 and snap.calls_in_window == 10 and snap.minimum_calls == 10
    assert snap.opened_at == clock.now() and snap.retry_at == clock.now() + 2.0
    assert snap.refused_calls == 1
    assert snap.reason == "failure rate 100% >= 50% over the last 10 calls"
    with pytest.raises(AttributeError):
        snap.state = CLOSED  # type: ignore[misc]


def test_listener_runs_outside_the_lock() -> None:
    clock = VirtualClock(start=0.0)
    lock_free: list[bool] = []

    def listener(transition: BreakerTransition) -> None:
        # Another thread reads the breaker (which takes its lock): it gets through only
        # when the listener runs outside the lock.
        reader = threading.Thread(target=breaker.snapshot, daemon=True)
        reader.start()
        reader.join(timeout=1.0)
        lock_free.append(not reader.is_alive())

    breaker = CircuitBreaker("v", clock, BreakerConfig(window_size=1, minimum_calls=1), listener)
    breaker.record_failure()
    breaker.force_closed("x")
    assert lock_free == [True, True]


def test_concurrent_recording_loses_no_updates() -> None:
    breaker, _, _ = make(window_size=1000, minimum_calls=1000)
    breaker.force_closed("count only")
    per_thread, threads = 5000, 4
    counted = []

    def work() -> None:
        for _ in range(per_thread):
            breaker.record_failure()
        counted.append(per_thread)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sum(counted) == per_thread * threads
    assert breaker.calls_in_window == 1000 and breaker.snapshot().failure_rate == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_rate_threshold": 1.5}, "failure_rate_threshold must be in (0, 1], got 1.5"),
        ({"failure_rate_threshold": 0}, "failure_rate_threshold must be in (0, 1], got 0"),
        ({"slow_call_rate_threshold": float("nan")}, "slow_call_rate_threshold must be in (0, 1]"),
        ({"window_size": 0}, "window_size must be an integer >= 1, got 0"),
        ({"window_size": 10.0}, "window_size must be an integer >= 1, got 10.0"),
        ({"minimum_calls": 0}, "minimum_calls must be an integer >= 1, got 0"),
        ({"window_size": 10, "minimum_calls": 11}, "minimum_calls must be <= window_size (10), got 11"),
        ({"slow_call_duration_s": 0}, "slow_call_duration_s must be finite and > 0 seconds, got 0"),
        ({"wait_duration_open_s": -1}, "wait_duration_open_s must be finite and >= 0 seconds, got -1"),
        ({"wait_duration_open_s": float("inf")}, "wait_duration_open_s must be finite"),
        ({"permitted_calls_half_open": 0}, "permitted_calls_half_open must be an integer >= 1, got 0"),
        ({"permitted_calls_half_open": True}, "permitted_calls_half_open must be an integer >= 1"),
    ],
)
def test_config_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        BreakerConfig(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ConfigurationError)
    assert message in str(info.value)


# -- the reference model -----------------------------------------------------


@dataclass
class Model:
    """The breaker's rules written the slow, obvious way: a list for the window."""

    cfg: BreakerConfig
    state: BreakerState = CLOSED
    window: list[tuple[bool, bool]] = field(default_factory=list)  # (failed, slow)
    retry_at: float = 0.0
    admitted: int = 0  # half-open trial slots taken
    trials: list[tuple[bool, bool]] = field(default_factory=list)

    def allow(self, now: float) -> bool:
        if self.state is CLOSED:
            return True
        if self.state is OPEN:
            if now < self.retry_at:
                return False
            self.state, self.admitted, self.trials = HALF_OPEN, 1, []
            return True
        if self.admitted < self.cfg.permitted_calls_half_open:
            self.admitted += 1
            return True
        return False

    def release(self) -> None:
        if self.state is HALF_OPEN and self.admitted > len(self.trials):
            self.admitted -= 1

    def record(self, failed: bool, slow: bool, now: float) -> None:
        cfg = self.cfg
        if self.state is CLOSED:
            self.window = (self.window + [(failed, slow)])[-cfg.window_size :]
            n = len(self.window)
            f = sum(x for x, _ in self.window)
            s = sum(y for _, y in self.window)
            if n >= cfg.minimum_calls and (
                f / n >= cfg.failure_rate_threshold or s / n >= cfg.slow_call_rate_threshold
            ):
                self.state, self.retry_at = OPEN, now + cfg.wait_duration_open_s
        elif self.state is HALF_OPEN:
            self.trials.append((failed, slow))
            self.admitted = max(self.admitted, len(self.trials))
            p = cfg.permitted_calls_half_open
            f = sum(x for x, _ in self.trials)
            s = sum(y for _, y in self.trials)
            if f / p >= cfg.failure_rate_threshold or s / p >= cfg.slow_call_rate_threshold:
                self.state, self.retry_at = OPEN, now + cfg.wait_duration_open_s
            elif len(self.trials) == p:
                self.state, self.window = CLOSED, []


configs = st.builds(
    lambda size, min_frac, fail, slow, wait, trials: BreakerConfig(
        window_size=size,
        minimum_calls=max(1, round(size * min_frac)),
        failure_rate_threshold=fail,
        slow_call_rate_threshold=slow,
        wait_duration_open_s=wait,
        permitted_calls_half_open=trials,
    ),
    size=st.integers(1, 12),
    min_frac=st.floats(0.0, 1.0),
    fail=st.sampled_from([0.2, 0.3, 0.5, 0.55, 2 / 3, 1.0]),
    slow=st.sampled_from([0.25, 0.5, 0.7, 1.0]),
    wait=st.sampled_from([0.0, 0.5, 1.0]),
    trials=st.integers(1, 4),
)
outcomes = st.tuples(
    st.sampled_from(["success", "success", "failure", "failure", "release"]),
    st.sampled_from([None, 0.001, 0.040, 0.041, 0.5]),
)
ops = st.lists(
    st.one_of(
        # "call": admitted and finished at once, the common case; weighted up so
        # sequences reach OPEN, HALF_OPEN and both verdicts often.
        st.tuples(st.just("call"), outcomes),
        st.tuples(st.just("call"), outcomes),
        st.tuples(st.just("burst"), st.tuples(st.integers(2, 12), outcomes)),
        st.tuples(st.just("advance"), st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0])),
        st.tuples(st.just("admit"), st.none()),
        st.tuples(st.just("finish"), outcomes),
    ),
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(cfg=configs, ops=ops)
def test_breaker_matches_the_reference_model(cfg: BreakerConfig, ops: list) -> None:
    clock = VirtualClock(start=0.0)
    seen: list[BreakerTransition] = []
    breaker = CircuitBreaker("v", clock, cfg, seen.append)
    model = Model(cfg)
    in_flight = 0

    def finish(outcome: str, latency: float | None) -> None:
        if outcome == "release":
            breaker.release()
            model.release()
        elif outcome == "success":
            breaker.record_success(latency or 0.0)
            model.record(False, (latency or 0.0) > cfg.slow_call_duration_s, clock.now())
        else:
            breaker.record_failure(latency)
            model.record(True, latency is not None and latency > cfg.slow_call_duration_s, clock.now())

    expanded = []  # a burst is k calls with one outcome
    for op, arg in ops:
        expanded.extend([("call", arg[1])] * arg[0] if op == "burst" else [(op, arg)])
    for op, arg in expanded:
        before = len(seen)
        if op == "advance":
            clock.advance(arg)
        elif op in ("admit", "call"):
            allowed = breaker.allow_request()
            assert allowed == model.allow(clock.now())
            if allowed and op == "call":
                finish(*arg)
            else:
                in_flight += allowed
        elif in_flight:  # finish the oldest admitted call
            in_flight -= 1
            finish(*arg)
        assert breaker.state is model.state
        if model.state is CLOSED:
            n = len(model.window)
            assert breaker.calls_in_window == n
            assert breaker.failure_rate == (sum(f for f, _ in model.window) / n if n else 0.0)
            assert breaker.slow_call_rate == (sum(s for _, s in model.window) / n if n else 0.0)
        if model.state is OPEN:
            assert breaker.retry_at == model.retry_at
        if model.state is HALF_OPEN:
            assert breaker.snapshot().half_open_calls == model.admitted <= cfg.permitted_calls_half_open
        for transition in seen[before:]:
            if transition.trigger is Trigger.TRIP:
                # the reason names a window at least minimum_calls long
                n = int(transition.reason.rsplit("the last ", 1)[1].split()[0])
                assert cfg.minimum_calls <= n <= cfg.window_size
        # one operation, at most two moves (half-open on admission, then a verdict)
        assert len(seen) - before <= 2
    # Every move is an automatic edge of the table, and they chain.
    state = CLOSED
    for transition in seen:
        assert transition.old is state
        assert (transition.old, transition.new) in ALLOWED_EDGES
        assert transition.trigger in AUTOMATIC_TRIGGERS
        assert TRANSITIONS[transition.old][transition.trigger] is transition.new
        state = transition.new
    assert state is breaker.state


@settings(max_examples=100, deadline=None)
@given(
    cfg=configs,
    ops=ops,
    overrides=st.lists(st.sampled_from(["open", "closed", "release", "reset"]), max_size=6),
)
def test_operator_moves_stay_on_the_table(cfg: BreakerConfig, ops: list, overrides: list[str]) -> None:
    clock = VirtualClock(start=0.0)
    seen: list[BreakerTransition] = []
    breaker = CircuitBreaker("v", clock, cfg, seen.append)
    actions = {
        "open": lambda: breaker.force_open("t"),
        "closed": lambda: breaker.force_closed("t"),
        "release": breaker.release_force,
        "reset": breaker.reset,
    }
    expanded = []
    for op, arg in ops:
        expanded.extend([("call", arg[1])] * arg[0] if op == "burst" else [(op, arg)])
    step = max(1, len(expanded) // max(1, len(overrides)))
    for i, (op, arg) in enumerate(expanded):
        if overrides and i % step == 0:
            actions[overrides.pop()]()
        if op == "advance":
            clock.advance(arg)
        elif op in ("admit", "call"):
            allowed = breaker.allow_request()
            if breaker.forced == "open":
                assert not allowed
            if breaker.forced == "closed":
                assert allowed
        if op in ("finish", "call"):
            outcome, latency = arg
            if outcome == "failure":
                breaker.record_failure(latency)
            elif outcome == "success":
                breaker.record_success(latency or 0.0)
            else:
                breaker.release()
        if breaker.forced == "open":
            assert breaker.state is OPEN
        if breaker.forced == "closed":
            assert breaker.state is CLOSED
    state = CLOSED
    for transition in seen:
        assert transition.old is state
        assert TRANSITIONS[transition.old][transition.trigger] is transition.new
        state = transition.new


def test_a_hold_is_released_only_by_its_holder_and_not_over_the_operators_own() -> None:
    breaker, _, _ = make()
    breaker.force_open("reconnecting", by="FIX session")
    breaker.release_force("someone else", only_if_held_by="operator")
    assert breaker.forced == "open"  # not theirs to lift
    breaker.release_force("logged on again", by="FIX session", only_if_held_by="FIX session")
    assert breaker.forced is None and breaker.state is BreakerState.CLOSED
    breaker.force_open("reconnecting", by="FIX session")
    breaker.force_open("drill", by="operator")  # the operator forced it since
    breaker.release_force("logged on again", by="FIX session", only_if_held_by="FIX session")
    assert breaker.forced == "open" and breaker.snapshot().reason == "forced open by operator: drill"
