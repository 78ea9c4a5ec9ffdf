"""Per-venue circuit breaker: a sans-IO core shared by the sync and async routers.

The breaker never sleeps, waits, or does I/O. It reads the time from a `Clock`
(`now()` only) and is told about outcomes; the router decides which errors
count (a venue timeout or outage does, a risk refusal does not).

States and the only edges between them (h11 `_state.py` style). A move not in
this table is a bug and raises `BreakerStateError`::

    state        trigger          -> new state   when
    CLOSED       TRIP             -> OPEN        >= minimum_calls in the window and
                                                 failure rate or slow-call rate >= threshold
    OPEN         WAIT_ELAPSED     -> HALF_OPEN   first allow_request() once
                                                 wait_duration_open_s has passed
    HALF_OPEN    TRIALS_FAILED    -> OPEN        a rate over the trial calls is
                                                 certain to reach its threshold
    HALF_OPEN    TRIALS_PASSED    -> CLOSED      all trial outcomes in, both rates below
    any          FORCE_OPEN       -> OPEN        operator override
    any          FORCE_CLOSED     -> CLOSED      operator override
    any          RELEASE_FORCE    -> CLOSED      operator ends an override
    any          RESET            -> CLOSED      operator reset

Rules of this module:

* The window is count-based: the last `window_size` recorded outcomes, kept in
  a ring buffer with running counts, so recording is O(1) and allocates
  nothing. Only CLOSED records into it. Entering CLOSED (by any edge)
  clears it, so a recovered venue starts with a clean slate; OPEN and
  HALF_OPEN keep it as it was when the breaker tripped, for displays.
* A slow call is one whose duration exceeds `slow_call_duration_s`, success
  or failure. A failure recorded without a duration is not slow.
* HALF_OPEN admits at most `permitted_calls_half_open` trial calls; an admitted
  trial that ends without an outcome that counts must be `release()`d so its
  slot is handed back. The verdict is computed over the trial calls alone
  (resilience4j's rule): with all trial outcomes in, close if both rates are
  below their thresholds, else re-open. One refinement: the breaker re-opens
  as soon as the verdict is certain (e.g. 2 failures of 3 trials at a 50%
  threshold), so a venue that is still failing is cut off without waiting for
  the stragglers. The verdict is the same as waiting for all of them.
* Outcomes recorded while OPEN (stragglers admitted before the trip) are
  ignored. The breaker cannot tell which call an outcome belongs to, so a
  straggler admitted while CLOSED that finishes during HALF_OPEN counts as a
  trial: it is still a recent observation of the venue.
* Operator overrides. `force_open(reason)`: state OPEN, refuses every call,
  never half-opens, ignores outcomes. `force_closed(reason)`: state CLOSED,
  admits every call and never trips; outcomes are still recorded so the
  rates stay visible. Both stay until `release_force()` or `reset()`, which
  return to a plain CLOSED breaker with an empty window (`release_force()`
  is a no-op when nothing is forced). Every other operator action is
  reported as a transition, even when the state does not change (forcing an
  OPEN breaker open still changes who decides).
* Thread safety: the state is guarded by one `threading.Lock` (uncontended it
  costs well under a microsecond). `on_state_change` is called after the lock
  is released, so a listener may read the breaker; with several threads the
  listener may see two transitions in a different order than they happened
  (each carries its `ts`). A listener's exception propagates to the caller
  whose call made the transition, after the state has changed.
  The CLOSED fast path of `allow_request()` reads the state without the lock:
  a call admitted in the same instant as a trip is harmless.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from ..clock import Clock
from ..errors import ConfigurationError, ExecdeskError

__all__ = [
    "ALLOWED_EDGES",
    "AUTOMATIC_TRIGGERS",
    "TRANSITIONS",
    "BreakerConfig",
    "BreakerSnapshot",
    "BreakerState",
    "BreakerStateError",
    "BreakerTransition",
    "CircuitBreaker",
    "Trigger",
]


class BreakerState(str, Enum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class Trigger(str, Enum):
    """Why a breaker moved: the key of the transition table."""

    TRIP = "TRIP"
    WAIT_ELAPSED = "WAIT_ELAPSED"
    TRIALS_FAILED = "TRIALS_FAILED"
    TRIALS_PASSED = "TRIALS_PASSED"
    FORCE_OPEN = "FORCE_OPEN"
    FORCE_CLOSED = "FORCE_CLOSED"
    RELEASE_FORCE = "RELEASE_FORCE"
    RESET = "RESET"


_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN

# The table in the module docstring, as data. Automatic edges first; the
# operator's edges exist from every state.
_AUTOMATIC: dict[BreakerState, dict[Trigger, BreakerState]] = {
    _CLOSED: {Trigger.TRIP: _OPEN},
    _OPEN: {Trigger.WAIT_ELAPSED: _HALF_OPEN},
    _HALF_OPEN: {Trigger.TRIALS_FAILED: _OPEN, Trigger.TRIALS_PASSED: _CLOSED},
}
_OPERATOR: dict[Trigger, BreakerState] = {
    Trigger.FORCE_OPEN: _OPEN,
    Trigger.FORCE_CLOSED: _CLOSED,
    Trigger.RELEASE_FORCE: _CLOSED,
    Trigger.RESET: _CLOSED,
}
TRANSITIONS: dict[BreakerState, dict[Trigger, BreakerState]] = {
    state: {**_AUTOMATIC[state], **_OPERATOR} for state in BreakerState
}
AUTOMATIC_TRIGGERS: frozenset[Trigger] = frozenset(
    trigger for edges in _AUTOMATIC.values() for trigger in edges
)
ALLOWED_EDGES: frozenset[tuple[BreakerState, BreakerState]] = frozenset(
    (old, new) for old, edges in TRANSITIONS.items() for new in edges.values()
)

Forced = Literal["open", "closed"]


class BreakerStateError(ExecdeskError, RuntimeError):
    """Internal error: the breaker was asked to take an edge its table does not have."""


def next_state(name: str, old: BreakerState, trigger: Trigger, forced: Forced | None = None) -> BreakerState:
    """The state the table gives for `trigger` in `old` (the breaker's one rule of
    movement); BreakerStateError for an edge the table does not have, or an automatic
    edge while an operator forces the state."""
    new = TRANSITIONS[old].get(trigger)
    if new is None or (forced is not None and trigger in AUTOMATIC_TRIGGERS):
        raise BreakerStateError(
            f"breaker {name!r}: no edge from {old.value} on {trigger.value}"
            + (f" while forced {forced}" if forced is not None else "")
            + f" (allowed: {', '.join(t.value for t in TRANSITIONS[old])}); this is a bug"
        )
    return new


def _int_at_least(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigurationError(f"{name} must be an integer >= {low}, got {value!r}")


def _rate(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 < value <= 1
    ):
        raise ConfigurationError(f"{name} must be in (0, 1], got {value!r}")


def _seconds(name: str, value: object, *, allow_zero: bool) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        accepted = "finite and >= 0" if allow_zero else "finite and > 0"
        raise ConfigurationError(f"{name} must be {accepted} seconds, got {value!r}")


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Tuning of one breaker; resilience4j's count-based window, in seconds."""

    window_size: int = 100
    minimum_calls: int = 20
    failure_rate_threshold: float = 0.5
    slow_call_rate_threshold: float = 0.5
    slow_call_duration_s: float = 0.040
    wait_duration_open_s: float = 5.0
    permitted_calls_half_open: int = 3

    def __post_init__(self) -> None:
        _int_at_least("window_size", self.window_size, 1)
        _int_at_least("minimum_calls", self.minimum_calls, 1)
        if self.minimum_calls > self.window_size:
            raise ConfigurationError(
                f"minimum_calls must be <= window_size ({self.window_size}), "
                f"got {self.minimum_calls}: the window could never hold enough calls to trip"
            )
        _rate("failure_rate_threshold", self.failure_rate_threshold)
        _rate("slow_call_rate_threshold", self.slow_call_rate_threshold)
        _seconds("slow_call_duration_s", self.slow_call_duration_s, allow_zero=False)
        _seconds("wait_duration_open_s", self.wait_duration_open_s, allow_zero=True)
        _int_at_least("permitted_calls_half_open", self.permitted_calls_half_open, 1)


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """One move of a breaker, for the event bus and the desk's breaker panel."""

    name: str
    old: BreakerState
    new: BreakerState
    reason: str
    ts: float
    trigger: Trigger


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A consistent view of one breaker for displays (taken under the lock)."""

    name: str
    state: BreakerState
    forced: Forced | None
    failure_rate: float
    slow_call_rate: float
    calls_in_window: int
    minimum_calls: int
    opened_at: float | None
    retry_at: float | None
    half_open_calls: int  # trial slots taken (in flight or done) while HALF_OPEN
    refused_calls: int  # since the breaker was made
    reason: str  # of the last transition; "" before the first


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _threshold(x: float) -> str:
    return f"{x * 100:g}%"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:g} ms"


def _calls(n: int) -> str:
    return f"{n} call" if n == 1 else f"{n} calls"


_FAILED = 1  # flag bits of one ring slot
_SLOW = 2


class CircuitBreaker:
    """One venue's breaker. See the module docstring for the rules."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        config: BreakerConfig | None = None,
        on_state_change: Callable[[BreakerTransition], None] | None = None,
    ) -> None:
        self.name = name
        self.config = config if config is not None else BreakerConfig()
        self._clock = clock
        self._on_state_change = on_state_change
        self._lock = threading.Lock()
        cfg = self.config
        # Hot-path copies of the config, read without an attribute chain.
        self._size = cfg.window_size
        self._min_calls = cfg.minimum_calls
        self._fail_thr = cfg.failure_rate_threshold
        self._slow_thr = cfg.slow_call_rate_threshold
        self._slow_s = cfg.slow_call_duration_s
        self._wait_s = cfg.wait_duration_open_s
        self._trials = cfg.permitted_calls_half_open

        self._state: BreakerState = _CLOSED
        self._forced: Forced | None = None
        self._forced_by: str | None = None  # who forced it (force_open's `by`)
        self._reason = ""
        self._refused = 0
        # Sliding window: one byte of flags per call, with running counts.
        self._ring = bytearray(self._size)
        self._head = 0
        self._count = 0
        self._failures = 0
        self._slow = 0
        # OPEN / HALF_OPEN bookkeeping.
        self._opened_at: float | None = None
        self._retry_at = math.inf  # meaningful only while OPEN
        self._trials_admitted = 0
        self._trials_done = 0
        self._trial_failures = 0
        self._trial_slow = 0

    # -- the order path ------------------------------------------------------
    def allow_request(self) -> bool:
        """May a call go to the venue now? An admitted call must end in
        `record_success`, `record_failure` or `release`."""
        if self._state is _CLOSED:  # lock-free fast path; see module docstring
            return True
        with self._lock:
            state = self._state
            if state is _CLOSED:
                return True
            if state is _OPEN:
                if self._forced is not None:
                    self._refused += 1
                    return False
                now = self._clock.now()
                if now < self._retry_at:
                    self._refused += 1
                    return False
                elapsed = now - self._opened_at  # type: ignore[operator]
                transition = self._move(
                    Trigger.WAIT_ELAPSED,
                    f"open for {elapsed:.1f} s: trying {self._trials} half-open "
                    f"{'call' if self._trials == 1 else 'calls'}",
                    now,
                )
                self._trials_admitted = 1
            elif self._trials_admitted < self._trials:  # HALF_OPEN
                self._trials_admitted += 1
                return True
            else:
                self._refused += 1
                return False
        self._notify(transition)
        return True

    def record_success(self, duration_s: float) -> None:
        """An admitted call succeeded after `duration_s` seconds."""
        self._record(_SLOW if duration_s > self._slow_s else 0)

    def record_failure(self, duration_s: float | None = None) -> None:
        """An admitted call failed in a way that counts against the venue."""
        if duration_s is not None and duration_s > self._slow_s:
            self._record(_FAILED | _SLOW)
        else:
            self._record(_FAILED)

    def release(self) -> None:
        """An admitted call ended without an outcome that counts: hand back its
        half-open trial slot (a no-op in the other states)."""
        with self._lock:
            if self._state is _HALF_OPEN and self._trials_admitted > self._trials_done:
                self._trials_admitted -= 1

    def _record(self, flags: int) -> None:
        with self._lock:
            state = self._state
            if state is _CLOSED:
                # Ring buffer: evict the oldest slot once full, O(1), no allocation.
                head = self._head
                if self._count == self._size:
                    old = self._ring[head]
                    if old:
                        self._failures -= old & _FAILED
                        self._slow -= old >> 1
                else:
                    self._count += 1
                self._ring[head] = flags
                if flags:
                    self._failures += flags & _FAILED
                    self._slow += flags >> 1
                head += 1
                self._head = 0 if head == self._size else head
                n = self._count
                # A success can trip too: the call that brings the window up to
                # minimum_calls makes the rates count.
                if (self._failures or self._slow) and n >= self._min_calls and self._forced is None:
                    transition = self._check_trip(n)
                    if transition is None:
                        return
                else:
                    return
            elif state is _HALF_OPEN:
                transition = self._record_trial(flags)
                if transition is None:
                    return
            else:
                return  # OPEN: a straggler from before the trip; ignored
        self._notify(transition)

    def _check_trip(self, n: int) -> BreakerTransition | None:
        failure_rate = self._failures / n
        slow_rate = self._slow / n
        reasons = []
        if failure_rate >= self._fail_thr:
            reasons.append(
                f"failure rate {_pct(failure_rate)} >= {_threshold(self._fail_thr)} "
                f"over the last {_calls(n)}"
            )
        if slow_rate >= self._slow_thr:
            reasons.append(
                f"slow calls {_pct(slow_rate)} over {_ms(self._slow_s)} in the last {_calls(n)} "
                f"(threshold {_threshold(self._slow_thr)})"
            )
        if not reasons:
            return None
        now = self._clock.now()
        return self._move(Trigger.TRIP, "; ".join(reasons), now)

    def _record_trial(self, flags: int) -> BreakerTransition | None:
        self._trials_done += 1
        if self._trials_done > self._trials_admitted:
            self._trials_admitted = self._trials_done  # a straggler took a slot
        self._trial_failures += flags & _FAILED
        self._trial_slow += flags >> 1
        p = self._trials
        failed, slow, done = self._trial_failures, self._trial_slow, self._trials_done
        reasons = []
        # Rates over all p trials: once reached, later outcomes cannot lower them.
        if failed / p >= self._fail_thr:
            reasons.append(
                f"{failed} of {p} half-open calls failed: failure rate "
                f"{_pct(failed / p)} >= {_threshold(self._fail_thr)}"
            )
        if slow / p >= self._slow_thr:
            reasons.append(
                f"{slow} of {p} half-open calls over {_ms(self._slow_s)}: "
                f"{_pct(slow / p)} >= {_threshold(self._slow_thr)}"
            )
        now = self._clock.now()
        if reasons:
            return self._move(Trigger.TRIALS_FAILED, "; ".join(reasons), now)
        if done < p:
            return None
        reason = f"{done - failed} of {p} half-open calls succeeded"
        if failed or slow:
            reason += (
                f" (failure rate {_pct(failed / p)}, slow {_pct(slow / p)}: "
                f"both below thresholds)"
            )
        return self._move(Trigger.TRIALS_PASSED, reason, now)

    # -- operator overrides ------------------------------------------------
    def force_open(self, reason: str, *, by: str = "operator") -> None:
        """Refuse every call until `release_force()` or `reset()` (`by`: who holds it, for
        the reason's text and `forced_by`: the operator, or a venue's session that dropped)."""
        self._operator(Trigger.FORCE_OPEN, "open", f"forced open by {by}: {reason}", by)

    def force_closed(self, reason: str) -> None:
        """Admit every call and never trip until `release_force()` or `reset()`."""
        self._operator(Trigger.FORCE_CLOSED, "closed", f"forced closed by operator: {reason}")

    def release_force(self, reason: str = "", *, by: str = "operator", only_if_held_by: str | None = None) -> None:
        """End an override: back to a plain CLOSED breaker with an empty window.
        A no-op when nothing is forced, or when `only_if_held_by` is not who forced it
        (a session coming back must not lift what the operator forced since)."""
        text = f"force released by {by}" + (f": {reason}" if reason else "")
        self._operator(Trigger.RELEASE_FORCE, None, text, only_if_held_by=only_if_held_by)

    def reset(self, reason: str = "") -> None:
        """Back to a plain CLOSED breaker with an empty window, overrides cleared."""
        text = "reset by operator" + (f": {reason}" if reason else "")
        self._operator(Trigger.RESET, None, text)

    def _operator(self, trigger: Trigger, forced: Forced | None, reason: str, by: str = "operator", *,
                  only_if_held_by: str | None = None) -> None:
        with self._lock:
            now = self._clock.now()
            if trigger is Trigger.RELEASE_FORCE and (
                    self._forced is None or (only_if_held_by is not None and self._forced_by != only_if_held_by)):
                return  # nothing (of theirs) to release: an automatic OPEN stays OPEN
            transition = self._move(trigger, reason, now)
            self._forced = forced
            self._forced_by = by if forced is not None else None
        self._notify(transition)

    # -- moving ---------------------------------------------------------------
    def _move(self, trigger: Trigger, reason: str, now: float) -> BreakerTransition:
        """With the lock held: take the edge `trigger` names from the current state."""
        old = self._state
        new = next_state(self.name, old, trigger, self._forced)
        self._state = new
        self._reason = reason
        if new is _CLOSED:
            self._head = self._count = self._failures = self._slow = 0
            self._opened_at = None
            self._retry_at = math.inf
        elif new is _OPEN:
            self._opened_at = now
            self._retry_at = now + self._wait_s
        if new is _HALF_OPEN or old is _HALF_OPEN:
            self._trials_admitted = self._trials_done = 0
            self._trial_failures = self._trial_slow = 0
        return BreakerTransition(self.name, old, new, reason, now, trigger)

    def _notify(self, transition: BreakerTransition) -> None:
        if self._on_state_change is not None:
            self._on_state_change(transition)

    # -- reading --------------------------------------------------------------
    @property
    def state(self) -> BreakerState:
        """The state as of the last call; OPEN becomes HALF_OPEN on the first
        `allow_request()` after the wait, not by itself."""
        return self._state

    @property
    def forced(self) -> Forced | None:
        return self._forced

    @property
    def failure_rate(self) -> float:
        """Failures over the calls in the window (0.0 when it is empty)."""
        n = self._count
        return self._failures / n if n else 0.0

    @property
    def slow_call_rate(self) -> float:
        n = self._count
        return self._slow / n if n else 0.0

    @property
    def calls_in_window(self) -> int:
        return self._count

    @property
    def opened_at(self) -> float | None:
        """When the breaker last opened (None while CLOSED)."""
        return self._opened_at

    @property
    def retry_at(self) -> float | None:
        """When OPEN (and not forced): the time from which it may half-open."""
        if self._state is not _OPEN or self._forced is not None:
            return None
        return self._retry_at

    @property
    def refused_calls(self) -> int:
        return self._refused

    def snapshot(self) -> BreakerSnapshot:
        with self._lock:
            return BreakerSnapshot(
                name=self.name,
                state=self._state,
                forced=self._forced,
                failure_rate=self.failure_rate,
                slow_call_rate=self.slow_call_rate,
                calls_in_window=self._count,
                minimum_calls=self._min_calls,
                opened_at=self._opened_at,
                retry_at=self.retry_at,
                half_open_calls=self._trials_admitted if self._state is _HALF_OPEN else 0,
                refused_calls=self._refused,
                reason=self._reason,
            )

    def __repr__(self) -> str:
        forced = f" forced={self._forced}" if self._forced else ""
        return (
            f"<CircuitBreaker {self.name!r} {self._state.value}{forced} "
            f"calls={self._count} failure_rate={self.failure_rate:.2f} "
            f"slow_call_rate={self.slow_call_rate:.2f}>"
        )
