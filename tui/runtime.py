"""Process tuning for the running desk: Python's cycle collector and glibc's allocator.

Rules:

* Only the running desk (the `execdesk` command, `DeskApp(tune_gc=True)`) tunes the
  process, once it has started: tests build many apps in one process and keep
  Python's defaults. `restore_garbage_collector` undoes the collector's tuning for a
  process that goes on after a desk (the benchmark, tests).
* The cycle collector never runs while a key's effect is drawn (`CollectorHold`),
  and is never left off: the hold ends `first_s` after the last key, `max_defer_s`
  after it began at most, and when the desk closes. A collector someone else turned
  off stays theirs to turn on.
"""

from __future__ import annotations

import ctypes
import gc
import platform
import time
from collections.abc import Callable
from typing import Any

# Python's cycle collector, tuned for a process that must answer keys within 100 ms.
# Under --demo, with the defaults (700, 10, 10), it ran ~110 times a second and took
# 15% of the time, in pauses up to 290 ms (full collections walking everything the
# desk and the engine keep). Textual's rendered lines form reference cycles (a Strip
# caches itself), so garbage does reach the collector. Fewer, larger young collections
# let those lines die young, and freezing what exists after start-up (modules, classes,
# widgets: all long-lived) takes it out of every later walk.
GC_THRESHOLDS = (10_000, 10, 10)
PYTHON_GC_THRESHOLDS = (700, 10, 10)  # CPython's defaults

# glibc's malloc serves a block of 128 KiB or more from its own mapping, returned to the
# system when freed, but after the first such free it raises that threshold to the freed
# size. A remembered-orders store is a dict of ~1 MB that is rebuilt now and then as
# orders come and go; once the threshold rose, each rebuild took a new 1 MB stretch of the
# heap and left the old one as a hole that small blocks then split, and the desk's RSS
# rose in steps of several MB every few minutes. A fixed threshold stops the raising.
M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 128 * 1024


def tune_garbage_collector() -> None:
    """Collect once, freeze what survives (long-lived), and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def restore_garbage_collector() -> None:
    """Python's defaults again: nothing frozen, default thresholds, collector on."""
    gc.unfreeze()
    gc.set_threshold(*PYTHON_GC_THRESHOLDS)
    gc.enable()


def tune_allocator() -> bool:
    """Fix glibc's mmap threshold; False where that is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def tune_process() -> bool:
    """Everything the running desk tunes; True when the allocator was tuned too."""
    tune_garbage_collector()
    return tune_allocator()


class CollectorHold:
    """No cycle collection while a key's effect is drawn: from a key for `first_s`.

    Drawing a key's effect allocates a lot (a ticket's layout, a table's new lines), so
    it was often what crossed a collection threshold: under --demo the slowest presses
    each held a 20-80 ms collection. The collection runs just after instead, and a held
    key (auto-repeat) postpones it `max_defer_s` at most.

    `call_later(delay_s, callback)` schedules the release (the desk's event loop);
    `clock` is a monotonic clock in seconds.
    """

    def __init__(self, first_s: float, max_defer_s: float, *,
                 call_later: Callable[[float, Callable[[], None]], Any],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.first_s = first_s
        self.max_defer_s = max_defer_s
        self._call_later = call_later
        self._clock = clock
        self._key_at = 0.0
        self._held_at: float | None = None  # None: not held by us
        self._closed = False

    @property
    def held(self) -> bool:
        return self._held_at is not None

    def key_pressed(self) -> None:
        """A key arrived: hold the collector (or keep holding it) from now."""
        if self._closed:
            return
        self._key_at = now = self._clock()
        if self._held_at is None and gc.isenabled():  # never re-enables what someone else turned off
            gc.disable()
            self._held_at = now
            self._call_later(self.first_s, self.release)

    def release(self) -> None:
        """Give the collector back, unless a key came less than `first_s` ago and the hold
        has not lasted `max_defer_s` yet (then look again when it would have)."""
        if self._held_at is None:
            return
        now = self._clock()
        wait = self._key_at + self.first_s - now
        if wait > 0 and now - self._held_at < self.max_defer_s and not self._closed:
            self._call_later(wait, self.release)
            return
        self.give_back()

    def give_back(self) -> None:
        """Turn the collector back on now, if this hold turned it off."""
        if self._held_at is not None:
            self._held_at = None
            gc.enable()

    def close(self) -> None:
        """The desk is closing: give the collector back and hold it no more."""
        self._closed = True
        self.give_back()
