"""RetryPolicy and RetryState: backoff, jitter, what is retried, reconciliation.

No sleeping: the router loop at the bottom collects the waits it would sleep.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import (
    ConfigurationError,
    PermanentVenueError,
    RateLimitedError,
    TransientVenueError,
    UnknownOrderError,
    UnknownOutcomeError,
    VenueError,
    VenueUnavailableError,
)
from engine.resilience.retry import Action, ActionKind, RetryPolicy, RetryState

RETRY, RECONCILE, GIVE_UP = ActionKind.RETRY, ActionKind.RECONCILE, ActionKind.GIVE_UP
NO_JITTER = RetryPolicy(jitter=0.0)


# -- delays --------------------------------------------------------------------


def test_delays_grow_exponentially_and_are_capped() -> None:
    rng = random.Random(1)
    assert [NO_JITTER.delay(n, rng) for n in range(1, 10)] == [
        0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0,
    ]
    policy = RetryPolicy(retry_delay=1.0, backoff_multiplier=3.0, max_delay=10.0, jitter=0.0)
    assert [policy.delay(n, rng) for n in range(1, 5)] == [1.0, 3.0, 9.0, 10.0]


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    policy = RetryPolicy(backoff_multiplier=10.0)
    assert policy.delay(10_000, random.Random(0)) <= 2.0
    assert NO_JITTER.delay(10_000, random.Random(0)) == 2.0


def test_zero_delay_and_multiplier_one() -> None:
    assert RetryPolicy(retry_delay=0.0).delay(5, random.Random(0)) == 0.0
    flat = RetryPolicy(retry_delay=0.3, backoff_multiplier=1.0, jitter=0.0)
    assert {flat.delay(n, random.Random(0)) for n in range(1, 6)} == {0.3}


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    attempt=st.integers(1, 40),
    jitter=st.sampled_from([0.0, 0.1, 0.2, 0.5, 0.99]),
    multiplier=st.sampled_from([1.0, 1.5, 2.0, 3.0]),
)
def test_jitter_stays_in_bounds_and_is_deterministic(
    seed: int, attempt: int, jitter: float, multiplier: float
) -> None:
    policy = RetryPolicy(jitter=jitter, backoff_multiplier=multiplier)
    nominal = min(0.05 * multiplier ** (attempt - 1), 2.0)
    delay = policy.delay(attempt, random.Random(seed))
    assert nominal * (1 - jitter) - 1e-12 <= delay <= min(nominal * (1 + jitter), 2.0) + 1e-12
    assert delay <= policy.max_delay
    assert delay == policy.delay(attempt, random.Random(seed))


def test_jittered_delays_repeat_under_a_seed_and_differ_across_seeds() -> None:
    policy = RetryPolicy()
    first = [policy.delay(n, rng) for rng in [random.Random(7)] for n in range(1, 6)]
    again = [policy.delay(n, rng) for rng in [random.Random(7)] for n in range(1, 6)]
    other = [policy.delay(n, rng) for rng in [random.Random(8)] for n in range(1, 6)]
    assert first == again
    assert first != other
    assert len(set(first[:3])) == 3  # jitter actually moves them


def test_jitter_still_spreads_delays_at_the_cap() -> None:
    # Many clients backing off at the cap must not retry in lockstep.
    policy = RetryPolicy(jitter=0.2)
    delays = [policy.delay(30, random.Random(seed)) for seed in range(20)]
    below_cap = {d for d in delays if d < 2.0}  # the upper half is clamped to the cap
    assert len(below_cap) >= 5
    assert all(1.6 <= d <= 2.0 for d in delays)


def test_no_jitter_draws_nothing_from_the_rng() -> None:
    rng = random.Random(3)
    state = rng.getstate()
    NO_JITTER.delay(2, rng)
    assert rng.getstate() == state


@pytest.mark.parametrize("attempt", [0, -1, 1.0, True])
def test_delay_refuses_a_bad_attempt_number(attempt: object) -> None:
    with pytest.raises(ValueError, match="attempt must be an integer >= 1"):
        NO_JITTER.delay(attempt, random.Random(0))  # type: ignore[arg-type]


def test_reconcile_delays_follow_the_backoff_with_a_bound() -> None:
    policy = RetryPolicy(reconcile_max_attempts=50)
    nominal = policy.reconcile_delays()
    assert len(nominal) == 50
    assert nominal[:7] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    assert max(nominal) == 2.0
    assert sum(nominal) == pytest.approx(91.15)
    jittered = policy.reconcile_delays(random.Random(5))
    assert jittered == policy.reconcile_delays(random.Random(5))
    assert all(0.8 * n - 1e-12 <= j <= min(1.2 * n, 2.0) + 1e-12 for n, j in zip(nominal, jittered))


# -- what is retried ---------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (TransientVenueError("blip"), True),
        (VenueUnavailableError("down"), True),
        (RateLimitedError("slow down"), True),
        (PermanentVenueError("bad symbol"), False),
        (UnknownOutcomeError("timeout"), False),
        (VenueError("generic"), False),
        (ValueError("not a venue error"), False),
        (TimeoutError("raw"), False),
    ],
)
def test_only_transient_errors_are_retryable(exc: BaseException, retryable: bool) -> None:
    assert RetryPolicy().is_retryable(exc) is retryable


def test_a_wide_retry_on_still_never_retries_permanent_or_unknown() -> None:
    policy = RetryPolicy(retry_on=(VenueError,))
    assert policy.is_retryable(VenueError("x"))
    assert not policy.is_retryable(PermanentVenueError("x"))
    assert not policy.is_retryable(UnknownOutcomeError("x"))


# -- one call's attempts -----------------------------------------------------


def test_transient_errors_are_retried_with_the_policy_delays() -> None:
    policy = RetryPolicy()
    state = RetryState(policy, random.Random(11))
    expected_rng = random.Random(11)
    for n in range(1, 4):
        action = state.next_action(VenueUnavailableError("down"))
        assert action.kind is RETRY
        assert action.after_s == policy.delay(n, expected_rng)
        assert (state.attempts, state.retries) == (n + 1, n)
        assert action.reason == f"retry {n} of 3 after VenueUnavailableError: down"


def test_exhausted_retries_give_up_naming_attempts_and_the_last_error() -> None:
    state = RetryState(RetryPolicy(max_retries=3), random.Random(0))
    for _ in range(3):
        assert state.next_action(VenueUnavailableError("down")).kind is RETRY
    last = RateLimitedError("429 too many requests")
    action = state.next_action(last)
    assert action.kind is GIVE_UP
    assert action.reason == (
        "gave up after 4 attempts (3 retries); last error: RateLimitedError: 429 too many requests"
    )
    assert action.error is last
    assert (state.attempts, state.retries) == (4, 3)


def test_zero_retries_gives_up_after_one_attempt() -> None:
    state = RetryState(RetryPolicy(max_retries=0), random.Random(0))
    action = state.next_action(TransientVenueError(""))
    assert action.kind is GIVE_UP
    assert action.reason == "gave up after 1 attempt (0 retries); last error: TransientVenueError"


def test_permanent_error_gives_up_at_once() -> None:
    state = RetryState(RetryPolicy(), random.Random(0))
    action = state.next_action(PermanentVenueError("unknown symbol XYZ"))
    assert action.kind is GIVE_UP
    assert action.reason == "permanent error, not retried: PermanentVenueError: unknown symbol XYZ"
    assert (state.attempts, state.retries, state.reconciliations) == (1, 0, 0)


def test_an_error_outside_retry_on_gives_up() -> None:
    state = RetryState(RetryPolicy(), random.Random(0))
    action = state.next_action(ValueError("bug"))
    assert action.kind is GIVE_UP and action.reason == "error not retried: ValueError: bug"


def test_unknown_outcome_asks_for_status_instead_of_resending() -> None:
    policy = RetryPolicy()
    state = RetryState(policy, random.Random(4))
    expected_rng = random.Random(4)
    action = state.next_action(UnknownOutcomeError("timed out after 2 s"))
    assert action.kind is RECONCILE
    assert action.after_s == policy.delay(1, expected_rng)
    assert state.reconciling and state.reconciliations == 1
    assert (state.attempts, state.retries) == (1, 0)  # nothing resent
    assert action.reason == "status query 1 of 50 after UnknownOutcomeError: timed out after 2 s"
    # The status query fails transiently: ask again, still no resend.
    action = state.status_failed(VenueUnavailableError("down"))
    assert action.kind is RECONCILE and action.after_s == policy.delay(2, expected_rng)
    assert state.reconciling and state.reconciliations == 1 and state.retries == 0
    assert action.reason == "status query 2 of 50 after VenueUnavailableError: down"


def test_not_found_after_reconciling_resends_at_once_and_counts_as_a_retry() -> None:
    state = RetryState(RetryPolicy(), random.Random(0))
    state.next_action(UnknownOutcomeError("timeout"))
    action = state.not_found()
    assert action.kind is RETRY and action.after_s == 0.0
    assert not state.reconciling
    assert (state.attempts, state.retries, state.reconciliations) == (2, 1, 1)


def test_not_found_with_no_retries_left_gives_up_naming_the_unknown_outcome() -> None:
    state = RetryState(RetryPolicy(max_retries=0), random.Random(0))
    state.next_action(UnknownOutcomeError("timeout"))
    state.status_failed(RateLimitedError("429"))  # a failed status query in between
    action = state.not_found()
    assert action.kind is GIVE_UP
    assert action.reason == (
        "gave up after 1 attempt (0 retries); last error: UnknownOutcomeError: timeout"
    )


def test_not_found_or_status_failed_without_reconciling_is_a_bug() -> None:
    state = RetryState(RetryPolicy(), random.Random(0))
    with pytest.raises(RuntimeError, match="not_found.. is only meaningful after a RECONCILE"):
        state.not_found()
    with pytest.raises(RuntimeError, match="status_failed.. is only meaningful after a RECONCILE"):
        state.status_failed(VenueUnavailableError("down"))


def test_a_send_failure_after_reconciling_is_judged_as_a_send() -> None:
    # A router that resent without calling not_found(): the next send error is
    # still a send error (retried), not a status-query failure.
    state = RetryState(RetryPolicy(), random.Random(0))
    state.next_action(UnknownOutcomeError("timeout"))
    action = state.next_action(VenueUnavailableError("down"))
    assert action.kind is RETRY and not state.reconciling


def test_reconcile_delays_of_a_state_use_its_rng() -> None:
    policy = RetryPolicy(reconcile_max_attempts=6)
    delays = list(RetryState(policy, random.Random(9)).reconcile_delays())
    assert delays == policy.reconcile_delays(random.Random(9))
    assert len(delays) == 6 and max(delays) <= policy.max_delay


def test_action_kinds_compare_equal_to_their_lowercase_names() -> None:
    assert [k.value for k in ActionKind] == ["retry", "reconcile", "give_up"]
    assert GIVE_UP == "give_up" and RECONCILE == "reconcile" and RETRY == "retry"


def test_reconciliation_is_bounded_and_never_resends() -> None:
    state = RetryState(RetryPolicy(reconcile_max_attempts=5), random.Random(0))
    kinds = [state.next_action(UnknownOutcomeError("timeout")).kind]
    kinds += [state.status_failed(UnknownOutcomeError("status timeout")).kind for _ in range(5)]
    assert kinds == [RECONCILE] * 5 + [GIVE_UP]
    assert state.retries == 0 and state.attempts == 1 and state.reconciliations == 1
    assert state.status_failed(UnknownOutcomeError("x")).reason == (
        "outcome unknown: the venue did not answer 5 status queries; order not resent; "
        "last error: UnknownOutcomeError: x"
    )


def test_a_permanent_error_during_reconciliation_gives_up() -> None:
    state = RetryState(RetryPolicy(), random.Random(0))
    state.next_action(UnknownOutcomeError("timeout"))
    action = state.status_failed(PermanentVenueError("auth revoked"))
    assert action.kind is GIVE_UP
    assert action.reason == (
        "outcome unknown and the status query was refused; order not resent: "
        "PermanentVenueError: auth revoked"
    )


def test_each_unknown_outcome_gets_its_own_reconciliation_budget() -> None:
    state = RetryState(RetryPolicy(reconcile_max_attempts=2), random.Random(0))
    for _ in range(2):  # two sends, each timing out, each reconciled and not found
        assert state.next_action(UnknownOutcomeError("t")).kind is RECONCILE
        assert state.status_failed(UnknownOutcomeError("t")).kind is RECONCILE
        assert state.not_found().kind is RETRY
    assert state.reconciliations == 2 and state.retries == 2


# -- the router loop from the module docstring, against a scripted venue -------


class ScriptedVenue:
    """Answers sends and status queries from scripts; remembers what reached it."""

    def __init__(self, sends: list[object], statuses: list[object] | None = None) -> None:
        self.sends = list(sends)
        self.statuses = list(statuses or [])
        self.sent = 0
        self.queried = 0

    @staticmethod
    def _answer(script: list[object]) -> str:
        step = script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return str(step)

    def submit(self, order_id: str) -> str:
        self.sent += 1
        return self._answer(self.sends)

    def status(self, order_id: str) -> str:
        self.queried += 1
        return self._answer(self.statuses)


def route(venue: ScriptedVenue, policy: RetryPolicy, slept: list[float]) -> tuple[str, RetryState]:
    state = RetryState(policy, random.Random(0))
    sleep: Callable[[float], None] = slept.append
    while True:
        try:
            if state.reconciling:
                try:
                    return venue.status("o-1"), state
                except UnknownOrderError:
                    action = state.not_found()
            else:
                return venue.submit("o-1"), state
        except VenueError as exc:
            action = state.status_failed(exc) if state.reconciling else state.next_action(exc)
        if action.kind is GIVE_UP:
            return f"REJECTED: {action.reason}", state
        sleep(action.after_s)


def test_loop_retries_transients_then_succeeds() -> None:
    venue = ScriptedVenue([VenueUnavailableError("down"), RateLimitedError("429"), "NEW"])
    slept: list[float] = []
    result, state = route(venue, NO_JITTER, slept)
    assert result == "NEW" and venue.sent == 3 and slept == [0.05, 0.1]
    assert (state.attempts, state.retries) == (3, 2)


def test_loop_never_resends_an_order_the_venue_has() -> None:
    venue = ScriptedVenue(
        [UnknownOutcomeError("timeout")],
        [VenueUnavailableError("down"), UnknownOutcomeError("slow"), "NEW (found)"],
    )
    slept: list[float] = []
    result, state = route(venue, NO_JITTER, slept)
    assert result == "NEW (found)"
    assert venue.sent == 1 and venue.queried == 3
    assert slept == [0.05, 0.1, 0.2]
    assert state.reconciliations == 1 and state.retries == 0


def test_loop_resends_only_after_the_venue_says_it_does_not_have_it() -> None:
    venue = ScriptedVenue([UnknownOutcomeError("timeout"), "NEW"], [UnknownOrderError("o-1")])
    slept: list[float] = []
    result, state = route(venue, NO_JITTER, slept)
    assert result == "NEW" and venue.sent == 2 and venue.queried == 1
    assert slept == [0.05, 0.0]


def test_loop_gives_up_without_resending_when_the_venue_never_answers() -> None:
    policy = RetryPolicy(jitter=0.0, reconcile_max_attempts=4)
    venue = ScriptedVenue([UnknownOutcomeError("timeout")], [VenueUnavailableError("down")] * 4)
    result, _ = route(venue, policy, [])
    assert venue.sent == 1 and venue.queried == 4
    assert result.startswith("REJECTED: outcome unknown: the venue did not answer 4 status queries")


# -- building policies -------------------------------------------------------


def test_from_kwargs_defaults_and_keywords() -> None:
    assert RetryPolicy.from_kwargs() == RetryPolicy()
    assert RetryPolicy.from_kwargs(max_retries=5).max_retries == 5
    policy = RetryPolicy.from_kwargs(max_retries=1, retry_delay=0.2)
    assert (policy.max_retries, policy.retry_delay, policy.max_delay) == (1, 0.2, 2.0)


def test_from_kwargs_a_first_delay_above_the_default_cap_raises_the_cap() -> None:
    policy = RetryPolicy.from_kwargs(retry_delay=5.0)
    assert policy.retry_delay == 5.0 and policy.max_delay == 5.0


def test_from_kwargs_a_full_policy_wins() -> None:
    policy = RetryPolicy(max_retries=7, jitter=0.0)
    assert RetryPolicy.from_kwargs(retry_policy=policy) is policy


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retry_policy": RetryPolicy(), "max_retries": 2},
         "pass either retry_policy or max_retries, not both"),
        ({"retry_policy": RetryPolicy(), "retry_delay": 0.1},
         "pass either retry_policy or retry_delay, not both"),
        ({"retry_policy": RetryPolicy(), "max_retries": 2, "retry_delay": 0.1},
         "pass either retry_policy or max_retries, retry_delay, not both"),
        ({"retry_policy": {"max_retries": 2}}, "retry_policy must be a RetryPolicy, got dict"),
        ({"max_retries": -1}, "max_retries must be an integer >= 0, got -1"),
        ({"retry_delay": -0.5}, "retry_delay must be a finite number in [0, inf), got -0.5"),
        ({"retry_delay": float("nan")}, "retry_delay must be a finite number in [0, inf), got nan"),
    ],
)
def test_from_kwargs_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        RetryPolicy.from_kwargs(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ConfigurationError)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": 1.5}, "max_retries must be an integer >= 0, got 1.5"),
        ({"max_retries": True}, "max_retries must be an integer >= 0, got True"),
        ({"backoff_multiplier": 0.5}, "backoff_multiplier must be a finite number in [1, inf), got 0.5"),
        ({"max_delay": float("inf")}, "max_delay must be a finite number in [0, inf), got inf"),
        ({"retry_delay": 3.0}, "max_delay must be >= retry_delay (3), got 2.0"),
        ({"jitter": 1.0}, "jitter must be a finite number in [0, 1), got 1.0"),
        ({"jitter": -0.1}, "jitter must be a finite number in [0, 1), got -0.1"),
        ({"reconcile_max_attempts": 0}, "reconcile_max_attempts must be an integer >= 1, got 0"),
        ({"retry_on": ()}, "retry_on must be a non-empty tuple of exception classes, got ()"),
        ({"retry_on": ("TransientVenueError",)}, "retry_on must hold exception classes, got 'TransientVenueError'"),
        ({"retry_on": (PermanentVenueError,)}, "retry_on cannot include PermanentVenueError"),
        ({"retry_on": (TransientVenueError, UnknownOutcomeError)}, "retry_on cannot include UnknownOutcomeError"),
    ],
)
def test_policy_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_retry_on_accepts_a_single_class_or_a_list() -> None:
    assert RetryPolicy(retry_on=RateLimitedError).retry_on == (RateLimitedError,)  # type: ignore[arg-type]
    policy = RetryPolicy(retry_on=[RateLimitedError, VenueUnavailableError])  # type: ignore[arg-type]
    assert policy.retry_on == (RateLimitedError, VenueUnavailableError)
    assert policy.is_retryable(RateLimitedError("x")) and not policy.is_retryable(TransientVenueError("x"))


def test_action_and_policy_are_frozen() -> None:
    with pytest.raises(AttributeError):
        RetryPolicy().max_retries = 9  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Action(RETRY).after_s = 1.0  # type: ignore[misc]
