"""Retry and reconciliation decisions: a sans-IO core shared by the sync and async routers.

Nothing here sleeps or calls a venue. `RetryPolicy` holds the knobs;
`RetryState` follows one call's attempts and says what to do after each
failure. The router owns the loop, the clock and the venue, so the sync
router sleeps with `clock.sleep` and the async one with `clock.sleep_async`,
and the decision logic exists once. A router's loop::

    state = RetryState(policy, rng)
    while True:
        try:
            if not state.reconciling:
                return venue.submit(order)
            try:
                return venue.status(order.id)  # the venue has it: its status is the truth
            except UnknownOrderError:
                action = state.not_found()     # it never got there: safe to resend
        except VenueError as exc:
            action = state.status_failed(exc) if state.reconciling else state.next_action(exc)
        if action.kind is ActionKind.GIVE_UP:
            return rejected(order, action.reason)  # or raise, with action.error as the cause
        clock.sleep(action.after_s)

The idempotency rule. The client order id is the idempotency key: every
attempt of one order carries the same id, and a venue refuses an id it
still remembers. A transient error (`TransientVenueError`: nothing happened
at the venue) may be retried after a backoff. An unknown outcome
(`UnknownOutcomeError`: the request may have reached the book) is never
retried blindly: the router must ask the venue for the order's status by
client order id, and the order is resent only after a status query says the
venue does not have it (`UnknownOrderError`). If the venue never answers,
the router gives up without resending and the order stays PENDING_NEW until
a later status query (or the journal's reconciliation on the next start)
settles it. (A venue forgets finished
ids only after a bounded window, far longer than reconciliation takes, so
"not found" within it means "never arrived".)

Rules of this module:

* `max_retries` bounds resends, the resend after a "not found" included, so
  an order is sent at most `max_retries + 1` times.
* Delays grow as `retry_delay * backoff_multiplier ** (n - 1)` for the n-th
  retry, are multiplied by `uniform(1 - jitter, 1 + jitter)` from the
  caller's seeded `random.Random`, and never exceed `max_delay` (the cap
  holds after jitter too).
* Status queries after an unknown outcome are retried "until the venue
  answers", bounded by `reconcile_max_attempts` per unknown outcome, with the
  same backoff. Any `VenueError` from a status query except a permanent one
  counts as "no answer yet" (a status query has no side effect, so repeating
  it is safe).
* A permanent error gives up at once, also during reconciliation.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterator
from enum import Enum

from ..errors import ConfigurationError, PermanentVenueError, TransientVenueError, UnknownOutcomeError

__all__ = ["Action", "ActionKind", "RetryPolicy", "RetryState"]

# Never retried, whatever retry_on says: retrying cannot help (permanent) or
# could duplicate an order (unknown outcome: reconcile instead).
_NEVER_RETRIED: tuple[type[BaseException], ...] = (PermanentVenueError, UnknownOutcomeError)
_DEFAULT_MAX_DELAY = 2.0


def _number(name: str, value: object, *, low: float, low_ok: bool, high: float | None = None,
            high_ok: bool = False) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and (value >= low if low_ok else value > low)
        and (high is None or (value <= high if high_ok else value < high))
    )
    if not ok:
        lo = f"{'[' if low_ok else '('}{low:g}"
        hi = "inf)" if high is None else f"{high:g}{']' if high_ok else ')'}"
        raise ConfigurationError(f"{name} must be a finite number in {lo}, {hi}, got {value!r}")


def _count(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigurationError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently one call is retried (only for transient errors)."""

    max_retries: int = 3
    retry_delay: float = 0.05  # first backoff, seconds (the component document's keyword)
    backoff_multiplier: float = 2.0
    max_delay: float = _DEFAULT_MAX_DELAY
    jitter: float = 0.2  # each delay is multiplied by uniform(1 - jitter, 1 + jitter)
    retry_on: tuple[type[BaseException], ...] = (TransientVenueError,)
    reconcile_max_attempts: int = 50  # status queries after an unknown outcome

    def __post_init__(self) -> None:
        _count("max_retries", self.max_retries, 0)
        _number("retry_delay", self.retry_delay, low=0, low_ok=True)
        _number("backoff_multiplier", self.backoff_multiplier, low=1, low_ok=True)
        _number("max_delay", self.max_delay, low=0, low_ok=True)
        if self.max_delay < self.retry_delay:
            raise ConfigurationError(
                f"max_delay must be >= retry_delay ({self.retry_delay:g}), got {self.max_delay!r}"
            )
        _number("jitter", self.jitter, low=0, low_ok=True, high=1)
        _count("reconcile_max_attempts", self.reconcile_max_attempts, 1)
        retry_on = self.retry_on
        if isinstance(retry_on, type):
            retry_on = (retry_on,)
        elif isinstance(retry_on, list):
            retry_on = tuple(retry_on)
        if not isinstance(retry_on, tuple) or not retry_on:
            raise ConfigurationError(
                f"retry_on must be a non-empty tuple of exception classes, got {self.retry_on!r}"
            )
        for cls in retry_on:
            if not (isinstance(cls, type) and issubclass(cls, BaseException)):
                raise ConfigurationError(f"retry_on must hold exception classes, got {cls!r}")
            if issubclass(cls, _NEVER_RETRIED):
                raise ConfigurationError(
                    f"retry_on cannot include {cls.__name__}: permanent errors are never retried "
                    "and unknown outcomes are reconciled by client order id, not resent"
                )
        object.__setattr__(self, "retry_on", retry_on)

    @classmethod
    def from_kwargs(
        cls,
        max_retries: int | None = None,
        retry_delay: float | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> RetryPolicy:
        """The policy a router's keywords ask for: a full `retry_policy`, or the
        component document's `max_retries` / `retry_delay` over the defaults."""
        if retry_policy is not None:
            if max_retries is not None or retry_delay is not None:
                given = ", ".join(
                    name for name, value in (("max_retries", max_retries), ("retry_delay", retry_delay))
                    if value is not None
                )
                raise ConfigurationError(
                    f"pass either retry_policy or {given}, not both: "
                    "set them on the RetryPolicy instead"
                )
            if not isinstance(retry_policy, RetryPolicy):
                raise ConfigurationError(
                    f"retry_policy must be a RetryPolicy, got {type(retry_policy).__name__}"
                )
            return retry_policy
        kwargs: dict[str, float] = {}
        if max_retries is not None:
            kwargs["max_retries"] = max_retries
        if retry_delay is not None:
            kwargs["retry_delay"] = retry_delay
            # A first delay above the default cap raises the cap rather than fail on
            # a keyword the caller never set (the constructor checks the value).
            if isinstance(retry_delay, (int, float)) and retry_delay > _DEFAULT_MAX_DELAY:
                kwargs["max_delay"] = retry_delay
        return cls(**kwargs)  # type: ignore[arg-type]

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number `attempt` (1 = the first retry).

        Draws one number from `rng` when jitter is on, none otherwise, so a
        seeded rng gives the same delays every run."""
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise ValueError(f"attempt must be an integer >= 1, got {attempt!r}")
        if self.retry_delay == 0:
            return 0.0
        try:
            base = self.retry_delay * self.backoff_multiplier ** (attempt - 1)
        except OverflowError:
            base = math.inf
        base = min(base, self.max_delay)
        if self.jitter:
            base *= rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        return min(base, self.max_delay)

    def reconcile_delays(self, rng: random.Random | None = None) -> list[float]:
        """The waits before each of the `reconcile_max_attempts` status queries
        after an unknown outcome: the retry backoff, capped at `max_delay`.
        Without an rng, the nominal (unjittered) values: their sum is about the
        longest an order can stay unreconciled (~91 s with the defaults)."""
        policy = self
        if rng is None:
            policy, rng = dataclasses.replace(self, jitter=0.0), random.Random(0)  # rng unused
        return [policy.delay(n, rng) for n in range(1, self.reconcile_max_attempts + 1)]

    def is_retryable(self, exc: BaseException) -> bool:
        """May the call that raised `exc` be sent again as it is?"""
        return isinstance(exc, self.retry_on) and not isinstance(exc, _NEVER_RETRIED)


class ActionKind(str, Enum):
    RETRY = "retry"  # send the same request again after `after_s`
    RECONCILE = "reconcile"  # ask the venue for status by client order id after `after_s`
    GIVE_UP = "give_up"  # stop; `reason` says why


@dataclasses.dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    after_s: float = 0.0
    reason: str = ""
    error: BaseException | None = None  # the error that led here, for `raise ... from`


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class RetryState:
    """One call's attempts: told each failure, says RETRY, RECONCILE or GIVE_UP.

    Counts for reporting: `attempts` (sends made, the one in progress
    included), `retries` (resends), `reconciliations` (unknown outcomes that
    started a round of status queries). Not thread-safe: one call, one state.

    Two ways to drive the status queries after a RECONCILE action: report
    each failed query to `status_failed()` and follow its actions (the loop in
    the module docstring), or iterate `reconcile_delays()` in the router's own
    loop. Either way, call `not_found()` before resending, so the resend
    counts against `max_retries`.
    """

    __slots__ = (
        "policy", "_rng", "attempts", "retries", "reconciliations", "reconciling",
        "last_error", "_reconcile_round", "_unknown_error",
    )

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self.policy = policy
        self._rng = rng
        self.attempts = 1  # the first send is under way when the state is made
        self.retries = 0
        self.reconciliations = 0
        self.reconciling = False  # after RECONCILE, until not_found(): status queries, no sends
        self.last_error: BaseException | None = None
        self._reconcile_round = 0  # status queries asked for since the last unknown outcome
        self._unknown_error: BaseException | None = None  # the error that started them

    def next_action(self, exc: BaseException) -> Action:
        """A send (submit, cancel, amend) raised `exc`: retry, reconcile or give up?"""
        self.last_error = exc
        self.reconciling = False  # a send happened, so any earlier round is over
        policy = self.policy
        if isinstance(exc, PermanentVenueError):
            return self._give_up(f"permanent error, not retried: {_describe(exc)}", exc)
        if isinstance(exc, UnknownOutcomeError):
            self.reconciling = True
            self.reconciliations += 1
            self._reconcile_round = 0
            self._unknown_error = exc
            return self._reconcile(exc)
        if not policy.is_retryable(exc):
            return self._give_up(f"error not retried: {_describe(exc)}", exc)
        return self._retry(exc, policy.delay(self.retries + 1, self._rng))

    def status_failed(self, exc: BaseException) -> Action:
        """A status query after a RECONCILE action raised `exc`. A status query
        has no side effect, so any error but a permanent one means "ask again"."""
        if not self.reconciling:
            raise RuntimeError("status_failed() is only meaningful after a RECONCILE action")
        self.last_error = exc
        if isinstance(exc, PermanentVenueError):
            return self._give_up(
                f"outcome unknown and the status query was refused; order not resent: "
                f"{_describe(exc)}",
                exc,
            )
        return self._reconcile(exc)

    def not_found(self) -> Action:
        """A status query said the venue does not have the order: resending is safe."""
        if not self.reconciling:
            raise RuntimeError("not_found() is only meaningful after a RECONCILE action")
        self.reconciling = False
        # The venue just answered, so it is up: resend at once.
        return self._retry(self._unknown_error, 0.0)

    def reconcile_delays(self) -> Iterator[float]:
        """For a router that runs its own status-query loop: the waits after
        each failed query (`reconcile_max_attempts` of them, the backoff capped
        at `max_delay`, jittered from this state's rng). When it runs out, the
        venue has not answered: give up without resending."""
        for n in range(1, self.policy.reconcile_max_attempts + 1):
            yield self.policy.delay(n, self._rng)

    def _retry(self, exc: BaseException | None, after_s: float) -> Action:
        if self.retries >= self.policy.max_retries:
            last = _describe(exc) if exc is not None else "none"
            return self._give_up(
                f"gave up after {self.attempts} {'attempt' if self.attempts == 1 else 'attempts'} "
                f"({self.retries} {'retry' if self.retries == 1 else 'retries'}); "
                f"last error: {last}",
                exc,
            )
        self.retries += 1
        self.attempts += 1
        return Action(ActionKind.RETRY, after_s, f"retry {self.retries} of "
                      f"{self.policy.max_retries} after {_describe(exc) if exc else 'no answer'}",
                      exc)

    def _reconcile(self, exc: BaseException) -> Action:
        limit = self.policy.reconcile_max_attempts
        if self._reconcile_round >= limit:
            return self._give_up(
                f"outcome unknown: the venue did not answer {limit} status "
                f"{'query' if limit == 1 else 'queries'}; order not resent; "
                f"last error: {_describe(exc)}",
                exc,
            )
        self._reconcile_round += 1
        after_s = self.policy.delay(self._reconcile_round, self._rng)
        return Action(
            ActionKind.RECONCILE,
            after_s,
            f"status query {self._reconcile_round} of {limit} after {_describe(exc)}",
            exc,
        )

    def _give_up(self, reason: str, exc: BaseException | None) -> Action:
        return Action(ActionKind.GIVE_UP, 0.0, reason, exc)

    def __repr__(self) -> str:
        return (
            f"<RetryState attempts={self.attempts} retries={self.retries} "
            f"reconciliations={self.reconciliations} reconciling={self.reconciling}>"
        )
