"""Process tuning (tui.runtime): the cycle collector's thresholds, freeze and key hold,
and glibc's allocator. Each test leaves the collector as Python has it."""

from __future__ import annotations

import gc
import platform
from collections.abc import Callable, Iterator

import pytest

from tui import runtime


@pytest.fixture(autouse=True)
def collector_as_python_has_it() -> Iterator[None]:
    runtime.restore_garbage_collector()
    yield
    runtime.restore_garbage_collector()


def test_tuning_freezes_what_exists_and_collects_less_often_and_restoring_undoes_it() -> None:
    assert gc.get_freeze_count() == 0
    runtime.tune_garbage_collector()
    assert gc.get_threshold() == runtime.GC_THRESHOLDS
    assert gc.get_freeze_count() > 0  # the modules, classes and objects made so far
    runtime.restore_garbage_collector()
    assert gc.get_threshold() == runtime.PYTHON_GC_THRESHOLDS
    assert gc.get_freeze_count() == 0 and gc.isenabled()


def test_the_allocator_is_tuned_only_where_it_is_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert runtime.tune_allocator() is True  # mallopt accepted the fixed threshold
    monkeypatch.setattr(runtime.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert runtime.tune_allocator() is False
    monkeypatch.setattr(runtime.platform, "system", lambda: "Darwin")
    assert runtime.tune_allocator() is False


class Later:
    """A fake event loop's call_later and a clock that only moves when told."""

    def __init__(self) -> None:
        self.now = 100.0
        self.calls: list[tuple[float, Callable[[], None]]] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.calls.append((self.now + delay, callback))

    def run_due(self, now: float) -> None:
        self.now = now
        due = [c for c in self.calls if c[0] <= now]
        self.calls = [c for c in self.calls if c[0] > now]
        for _, callback in due:
            callback()


def hold(later: Later) -> runtime.CollectorHold:
    return runtime.CollectorHold(0.15, 0.5, call_later=later.call_later, clock=lambda: later.now)


def test_a_key_holds_the_collector_until_its_effect_is_drawn() -> None:
    later = Later()
    collector = hold(later)
    collector.key_pressed()
    assert not gc.isenabled() and collector.held
    later.run_due(100.1)
    assert not gc.isenabled()  # too soon
    later.run_due(100.15)
    assert gc.isenabled() and not collector.held


def test_another_key_while_held_holds_it_longer_but_never_past_the_longest_deferral() -> None:
    later = Later()
    collector = hold(later)
    collector.key_pressed()
    for t in (100.1, 100.2, 100.3, 100.4):  # auto-repeat: a key every 0.1 s
        later.run_due(t)
        collector.key_pressed()
        assert not gc.isenabled()
    later.run_due(100.5)  # half a second since the hold began: given back, keys or not
    assert gc.isenabled()
    later.run_due(101.0)
    assert gc.isenabled()


def test_a_collector_someone_else_turned_off_stays_theirs() -> None:
    later = Later()
    collector = hold(later)
    gc.disable()
    collector.key_pressed()
    assert not collector.held and later.calls == []
    collector.give_back()
    assert not gc.isenabled()  # not ours to turn on


def test_closing_gives_the_collector_back_and_holds_it_no_more() -> None:
    later = Later()
    collector = hold(later)
    collector.key_pressed()
    collector.close()
    assert gc.isenabled()
    collector.key_pressed()
    assert gc.isenabled() and not collector.held
