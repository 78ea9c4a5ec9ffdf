"""Latency profiling: constant-memory percentiles per category and venue.

Rules of this module:

* Units. Every latency is in nanoseconds: an `int` or a `float`, finite and
  >= 0. Anything else (negative, NaN, inf, a bool, a string) raises
  `ValueError` at the call that passed it, never later when it is folded.
* Categories. "submission", "acknowledgment" and "execution" exist from the
  start; any other non-empty string becomes a category on first use. Each
  sample may carry a venue; statistics exist per (category, venue) and per
  category (all its venues and venue-less samples combined).
* Bounds. A profiler keeps at most `MAX_CATEGORIES` (64) categories, the
  defaults included, and `MAX_VENUES` (32) named venues per category, each
  besides one more called `OTHER` ("other"). A sample for a category or venue
  past the bound is counted under `OTHER` in its place, never refused: a
  typo or a name made per order (the desk once kept 2,000 such categories,
  +267 MB) must neither grow memory for ever nor raise on the order path,
  where `record` runs inside the router and an error would fail an order
  over a statistic. So nothing is lost, the fold shows as an "other"
  category or venue, `folded()` counts it and names the first few, and one
  warning is logged.
* Why buffering. `record` sits on the order path, so it only checks the
  value and appends it to a per-(category, venue) list (~150-200 ns). The
  list is folded into the histogram with numpy, vectorised, when it reaches
  `BATCH_SIZE` samples and before anything is read, so a reader always sees
  every sample recorded before its call. Folding happens under a lock and
  takes samples with one slice (`buf[:n]`, then `del buf[:n]`): appends from
  other threads land after the slice and wait for the next fold, so no sample
  is lost or folded twice.
* Accuracy. The histogram is log-linear (HdrHistogram's idea, on the float's
  own bits): each power of two from 1 ns to 2**40 ns (about 18 minutes) is
  split into 1024 equal buckets, so a bucket is at most 1/1024 of its lower
  edge wide. A percentile is the midpoint of the bucket holding the sample
  that numpy's `np.percentile(data, q, method="inverted_cdf")` would pick,
  clamped to the exact min and max: within 0.05 % of it for samples >= 1 ns.
  Samples below 1 ns share one bucket [0, 1); samples at or above 2**40 ns
  share an overflow bucket (counted, reported as 2**40 ns at most).
  count, min, max and mean are exact. Memory per (category, venue) does not
  grow with the number of samples: a series holds only the stretch of
  buckets its samples reached, in quarter octaves (2 kB), so a series with
  one sample costs about 4 kB (tracemalloc), one whose samples span 20
  octaves about 160 kB, and none more than the whole scheme (330 kB plus
  41 kB for the current second), plus its rolling window below.
* Rolling windows. For live charts and the router's latency gate, each
  series also keeps one coarse histogram per second of the profiler's clock
  (128 buckets per power of two: percentiles within 0.4 %; count, min, max
  and mean exact), in a ring that forgets seconds older than `window_s`.
  A sample is stamped with the clock's second when it is *folded*, not when
  it is recorded (reading the clock on every `record` would double its
  cost). Folds happen on every read, on `flush()` and `maybe_autosave()`,
  and when a buffer fills; so as long as something reads or flushes at least
  once a second (the desk's charts do, at 1-2 Hz) a sample lands in the
  second it was recorded in; otherwise in the second of the next fold, never
  an earlier one.
* Persistence. `save` writes a versioned JSON document (sparse bucket counts
  plus exact count, sum, min, max) to a temporary file in the same
  directory, then `os.replace`s it over the target, so a crash leaves the old
  file or the new one, never half of one. A failed save removes its
  temporary file; one a killed process left behind is removed by the next
  save to the same target once older than `STALE_TEMP_S` (so that another
  process's save in progress is left alone). `load` raises
  `ProfilerFileError` (naming the file and the fault) for anything it cannot
  read entirely: corrupt, truncated, binary, nested beyond reason, larger
  than `MAX_FILE_BYTES`, another format, a newer version, inconsistent
  figures, more categories or venues than the bounds; `OSError` only when
  the file cannot be opened or read at all. The rolling windows are live
  data and are not saved.
* No threads, no I/O except `save`/`load`/`maybe_autosave`; the engine's
  edges decide when to call those.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import math
import numbers
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from .clock import Clock, RealClock
from .errors import ExecdeskError
from .models import quote

__all__ = [
    "BATCH_SIZE",
    "DEFAULT_CATEGORIES",
    "FILE_FORMAT",
    "FILE_VERSION",
    "MAX_CATEGORIES",
    "MAX_FILE_BYTES",
    "MAX_VENUES",
    "OTHER",
    "LatencyProfiler",
    "LatencyStats",
    "ProfilerFileError",
    "WindowPoint",
]

log = logging.getLogger("execdesk.profiler")

DEFAULT_CATEGORIES: tuple[str, ...] = ("submission", "acknowledgment", "execution")
FILE_FORMAT = "execdesk-latency"
FILE_VERSION = 1
# Large enough that numpy's per-call overhead vanishes per sample, small
# enough (32 kB of floats) that a buffer never matters for memory.
BATCH_SIZE = 4096
# Bounds on what a profiler keeps (see the module's rules): categories besides OTHER
# (the three defaults included), and named venues per category besides OTHER.
MAX_CATEGORIES = 64
MAX_VENUES = 32
OTHER = "other"
# The largest file `load` reads: far above what the bounds let `save` write in
# practice (a busy series saves a few hundred kB), far below what would exhaust memory.
MAX_FILE_BYTES = 256 * 2**20
# Temporary files of a save older than this belong to no save still running.
STALE_TEMP_S = 60.0
_TEMP_SUFFIX = ".tmp"
# Counts stay exact as floats and far from int64's end when every series is added up
# (2**48 samples: nine years at a million a second).
_MAX_COUNT = 2**48
_FOLDED_KEPT = 16
_WINDOW_CACHE_MAX = 64  # each holds a merged window (41 kB)

# -- bucket scheme --------------------------------------------------------
# Fine bucket of v >= 1: 1 + exponent * 1024 + the mantissa's top 10 bits,
# which is (float64 bits >> 42) - (1023 << 10) + 1; bucket 0 is [0, 1).
_SUB_BITS = 10
_OCTAVES = 40
_FINE_OVER = _OCTAVES * (1 << _SUB_BITS) + 1
_N_FINE = _FINE_OVER + 1
_FINE_BIAS = (1023 << _SUB_BITS) - 1
_SHIFT = 52 - _SUB_BITS
# Coarse bucket (rolling windows): 128 per octave, ((fine - 1) >> 3) + 1,
# which maps 0 to 0 and the fine overflow bucket to the coarse one.
_COARSE_BITS = 7
_COARSE_SHIFT = _SUB_BITS - _COARSE_BITS
_COARSE_OVER = _OCTAVES * (1 << _COARSE_BITS) + 1
_N_COARSE = _COARSE_OVER + 1
_TOP_NS = float(2**_OCTAVES)
# A series' histograms grow in blocks of a quarter octave (fine: 2 kB) and half an
# octave (coarse: 512 B) over the range its samples reach; see `_Span`.
_FINE_BLOCK = 1 << (_SUB_BITS - 2)
_COARSE_BLOCK = 1 << (_COARSE_BITS - 1)
_FLOAT_MAX = 1.7976931348623157e308
_INT_MAX = int(_FLOAT_MAX)  # the largest int a float can hold
# Below this many samples a fold runs in plain Python: numpy's fixed cost
# per call would dominate (reads fold after every few orders).
_SMALL_FOLD = 24

_QUANTILES = (50.0, 95.0, 99.0, 99.9)


def _midpoints(sub_bits: int) -> np.ndarray:
    """Value reported for each bucket: its midpoint (0.5 for [0, 1), 2**40 for overflow)."""
    sub = 1 << sub_bits
    i = np.arange(_OCTAVES * sub)
    exponent = i >> sub_bits
    mantissa = (i & (sub - 1)).astype(np.float64)
    low = np.ldexp(1.0 + mantissa / sub, exponent)
    high = np.ldexp(1.0 + (mantissa + 1.0) / sub, exponent)
    mids = np.empty(i.size + 2)
    mids[0] = 0.5
    mids[1:-1] = (low + high) / 2.0
    mids[-1] = _TOP_NS
    return mids


_FINE_MID = _midpoints(_SUB_BITS)
_COARSE_MID = _midpoints(_COARSE_BITS)


def _fine_index(values: np.ndarray) -> np.ndarray:
    """Fine bucket of each float64 value (values already checked: finite, >= 0)."""
    index = values.view(np.int64) >> _SHIFT
    index -= _FINE_BIAS
    np.clip(index, 0, _FINE_OVER, out=index)
    return index


def _fine_index_one(value: float) -> int:
    """The same as `_fine_index` for one Python float, without numpy's call cost."""
    if value < 1.0:
        return 0
    mantissa, exponent = math.frexp(value)  # value = mantissa * 2**exponent, mantissa in [0.5, 1)
    if exponent > _OCTAVES:
        return _FINE_OVER
    return ((exponent - 1) << _SUB_BITS) + int(mantissa * 2048.0) - 1023


def _coarse_of(fine: int) -> int:
    """The coarse bucket holding fine bucket `fine`."""
    return ((fine - 1) >> _COARSE_SHIFT) + 1


def _rank(n: int, q: float) -> int:
    """1-based rank of the sample numpy's inverted_cdf picks for percentile q of n samples.

    Same float arithmetic as numpy (`n * (q / 100) - 1`, kept if whole, else
    rounded up), so a boundary case picks the same sample, not its neighbour.
    """
    virtual = n * (q / 100.0) - 1.0
    position = math.floor(virtual)
    if virtual - position != 0:
        position += 1
    return min(max(position, 0), n - 1) + 1


def _percentiles(
    index: np.ndarray, counts: np.ndarray, mids: np.ndarray, low: float, high: float
) -> list[float]:
    """p50, p95, p99, p99.9 from sorted non-empty buckets, clamped to the exact [low, high]."""
    cumulative = np.cumsum(counts)
    n = int(cumulative[-1])
    ranks = [_rank(n, q) for q in _QUANTILES]
    where = np.searchsorted(cumulative, ranks, side="left")
    values = mids[index[where]]
    return [min(max(float(v), low), high) for v in values]


def _format_latency_error(value: object) -> str:
    if isinstance(value, bool):
        got = f"{value!r} (a bool, not a number)"
    elif isinstance(value, (numbers.Real, str)):
        got = repr(value)
    else:
        got = f"{value!r} (a {type(value).__name__})"
    return f"latency must be a finite number of nanoseconds >= 0, got {got}"


def _check_latency(value: object) -> float | int:
    """The value as a plain int or float if it is a valid latency; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(_format_latency_error(value))
    if isinstance(value, int):
        if value < 0:
            raise ValueError(_format_latency_error(value))
        if value > _FLOAT_MAX:
            raise ValueError(
                f"latency must be a finite number of nanoseconds >= 0, got an int of "
                f"{len(str(value))} digits (too large for a float)"
            )
        return int(value)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(_format_latency_error(value)) from exc
    if not (0.0 <= number <= _FLOAT_MAX):  # also refuses NaN
        raise ValueError(_format_latency_error(value))
    return number


def _check_category(category: object) -> str:
    if not isinstance(category, str) or not category:
        raise ValueError(f"category must be a non-empty string, got {category!r}")
    return category


def _check_venue(venue: object) -> str | None:
    if venue is not None and (not isinstance(venue, str) or not venue):
        raise ValueError(f"venue must be None or a non-empty string, got {venue!r}")
    return venue


def _check_seconds(seconds: object) -> int:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, numbers.Real)
        or not math.isfinite(seconds)
        or seconds <= 0
    ):
        raise ValueError(f"seconds must be a finite number > 0, got {seconds!r}")
    return max(1, math.ceil(seconds))


class ProfilerFileError(ExecdeskError, ValueError):
    """A saved profiler file that cannot be read: corrupt, truncated, another format or version."""


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Summary of a set of latencies, all in nanoseconds; all zero when there were none."""

    count: int = 0
    min: float = 0.0
    max: float = 0.0
    mean: float = 0.0
    median: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    p999: float = 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "median": self.median,
            "p95": self.p95,
            "p99": self.p99,
            "p999": self.p999,
        }


_EMPTY = LatencyStats()


@dataclass(frozen=True, slots=True)
class WindowPoint:
    """One second of a rolling window: `ts` is the second's start (clock seconds)."""

    ts: float
    count: int
    p50: float
    p95: float
    p99: float

    def to_dict(self) -> dict[str, float | int]:
        return {"ts": self.ts, "count": self.count, "p50": self.p50, "p95": self.p95, "p99": self.p99}


class _Span:
    """Bucket counts for a run of bucket indexes [base, base + counts.size), grown on demand.

    A series allocates only the stretch of its scheme its samples have reached, in
    blocks of `block` buckets, so a category that got one sample (a typo) costs a
    few kB, not the whole scheme (330 kB fine plus 41 kB coarse). A stretch only
    grows (a growth copies it: rare, as a series' range settles within seconds)
    and never beyond the whole scheme, so memory stays bounded per series.
    """

    __slots__ = ("base", "block", "counts", "limit")

    def __init__(self, block: int, limit: int) -> None:
        self.block = block
        self.limit = limit  # one past the last bucket index of the scheme
        self.base = 0
        self.counts = np.zeros(0, dtype=np.int64)

    def cover(self, low: int, high: int) -> None:
        """Make room for bucket indexes low..high (inclusive); both within the scheme."""
        base = self.base
        end = base + self.counts.size
        if self.counts.size and base <= low and high < end:
            return
        new_base = (low // self.block) * self.block
        new_end = min(-(-(high + 1) // self.block) * self.block, self.limit)
        if self.counts.size:
            new_base = min(new_base, base)
            new_end = max(new_end, end)
        counts = np.zeros(new_end - new_base, dtype=np.int64)
        if self.counts.size:
            counts[base - new_base : end - new_base] = self.counts
        self.base = new_base
        self.counts = counts

    def nonzero(self) -> tuple[np.ndarray, np.ndarray]:
        """Indexes (in the whole scheme) of the non-empty buckets, ascending, and their counts."""
        at = np.flatnonzero(self.counts)
        return at + self.base, self.counts[at]

    def add_into(self, dense: np.ndarray) -> None:
        """Add these counts into an array indexed by the whole scheme."""
        dense[self.base : self.base + self.counts.size] += self.counts

    @staticmethod
    def merged(spans: Sequence[_Span]) -> _Span:
        """One span holding the sum of `spans` (all of the same scheme)."""
        first = spans[0]
        result = _Span(first.block, first.limit)
        filled = [s for s in spans if s.counts.size]
        if filled:
            result.cover(min(s.base for s in filled), max(s.base + s.counts.size for s in filled) - 1)
            for span in filled:
                at = span.base - result.base
                result.counts[at : at + span.counts.size] += span.counts
        return result


class _Second:
    """A finished second of one series: sparse coarse buckets plus exact aggregates.

    `index` and `counts` are views of buffers whose lengths are powers of two. A window
    keeps each second for minutes and drops the oldest every second; buffers of a few
    sizes let the C allocator reuse a dropped second's memory for the next one, where
    exact sizes (every second hits its own number of buckets) left the heap a hole of
    every size and the desk's RSS rising all through an hour. The padding (about half
    again, on average) is paid for by 32-bit counts: no bucket gets 2**32 samples in a
    second. Readers add them into int64 arrays, or take their cumulative sum (uint64).
    """

    __slots__ = ("count", "counts", "high", "index", "low", "total")

    def __init__(
        self, count: int, total: float, low: float, high: float, index: np.ndarray, counts: np.ndarray
    ) -> None:
        self.count = count
        self.total = total
        self.low = low
        self.high = high
        n = int(index.size)
        size = 1 << max(n - 1, 15).bit_length()  # at least 16
        index_buffer = np.empty(size, dtype=np.uint16)
        counts_buffer = np.empty(size, dtype=np.uint32)
        index_buffer[:n] = index
        counts_buffer[:n] = counts
        self.index = index_buffer[:n]
        self.counts = counts_buffer[:n]

    @property
    def nbytes(self) -> int:
        """What the second's buffers take (their whole length, not just the used part)."""
        base = self.index.base
        counts_base = self.counts.base
        assert isinstance(base, np.ndarray) and isinstance(counts_base, np.ndarray)
        return base.nbytes + counts_base.nbytes


class _Series:
    """Everything kept for one (category, venue): buffer, histogram, rolling ring."""

    __slots__ = (
        "category",
        "venue",
        "buf",
        "hist",
        "count",
        "total",
        "low",
        "high",
        "version",
        "cached",
        "cur_second",
        "cur_dense",
        "cur_count",
        "cur_total",
        "cur_low",
        "cur_high",
        "past",
    )

    def __init__(self, category: str, venue: str | None) -> None:
        self.category = category
        self.venue = venue
        self.buf: list[float | int] = []
        self.hist = _Span(_FINE_BLOCK, _N_FINE)
        self.count = 0
        self.total = 0.0
        self.low = math.inf
        self.high = -math.inf
        self.version = 0  # bumped by every fold: stats caches key on it
        self.cached: tuple[int, LatencyStats] | None = None
        # The second now being filled, dense (cheap to add to); finished
        # seconds move to `past` in sparse form, oldest first.
        self.cur_second: int | None = None
        self.cur_dense = _Span(_COARSE_BLOCK, _N_COARSE)
        self.cur_count = 0
        self.cur_total = 0.0
        self.cur_low = math.inf
        self.cur_high = -math.inf
        self.past: dict[int, _Second] = {}

    def storage_bytes(self) -> int:
        size = self.hist.counts.nbytes + self.cur_dense.counts.nbytes
        for second in self.past.values():
            size += second.nbytes
        return size


class _Measurement:
    """Context manager of `LatencyProfiler.measure`; `elapsed_ns` is set on exit."""

    __slots__ = ("_profiler", "_category", "_venue", "_start", "elapsed_ns")

    def __init__(self, profiler: LatencyProfiler, category: str, venue: str | None) -> None:
        self._profiler = profiler
        self._category = category
        self._venue = venue
        self._start = 0
        self.elapsed_ns: int | None = None

    def __enter__(self) -> _Measurement:
        self._start = self._profiler.clock.now_ns()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A failed call took time too, and a timeout is exactly the latency
        # an operator wants to see: the body's outcome does not matter here.
        elapsed = self._profiler.clock.now_ns() - self._start
        self.elapsed_ns = elapsed if elapsed > 0 else 0
        self._profiler.record(self._category, self.elapsed_ns, self._venue)


class LatencyProfiler:
    """Latency statistics per category and venue; see the module docstring for the rules.

    `record(category, ns, venue)` or `with profiler.measure(category, venue):`
    add samples; `stats`, `window_stats`, `rolling`, `get_stats` and
    `snapshot` read them; `save`/`load` keep them across runs.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        window_s: float = 600.0,
        autosave_path: str | os.PathLike[str] | None = None,
        autosave_interval_s: float = 60.0,
    ) -> None:
        if (
            isinstance(window_s, bool)
            or not isinstance(window_s, numbers.Real)
            or not math.isfinite(window_s)
            or window_s < 1
        ):
            raise ValueError(f"window_s must be a finite number of seconds >= 1, got {window_s!r}")
        if (
            isinstance(autosave_interval_s, bool)
            or not isinstance(autosave_interval_s, numbers.Real)
            or not math.isfinite(autosave_interval_s)
            or autosave_interval_s < 0
        ):
            raise ValueError(
                f"autosave_interval_s must be a finite number of seconds >= 0, got {autosave_interval_s!r}"
            )
        self.clock: Clock = clock if clock is not None else RealClock()
        self.window_s = float(window_s)
        self._window_len = math.ceil(window_s)
        self.autosave_path: Path | None = Path(autosave_path) if autosave_path is not None else None
        self.autosave_interval_s = float(autosave_interval_s)
        self._last_autosave = self.clock.now()
        self._lock = threading.Lock()
        self._init_state()

    def _init_state(self) -> None:
        # Two views of the same series: `_buffers` holds only the lists, so
        # `record` reaches its list in two dict lookups and nothing else.
        self._buffers: dict[str, dict[str | None, list[float | int]]] = {}
        self._series: dict[str, dict[str | None, _Series]] = {}
        for category in DEFAULT_CATEGORIES:
            self._buffers[category] = {}
            self._series[category] = {}
        self._category_cache: dict[str, tuple[tuple[int, ...], LatencyStats]] = {}
        # Finished seconds never change, so their merge is kept per window
        # and redone only when the clock's second or the set of series moves.
        self._window_cache: dict[tuple[str, str | None, int], tuple[Any, ...]] = {}
        # Names past the bounds: how often, and the first few (to find the typo).
        self._folded_count = 0
        self._folded: list[str] = []

    # -- recording --------------------------------------------------------------
    def record(self, category: str, nanoseconds: int | float, venue: str | None = None) -> None:
        """Add one latency sample, in nanoseconds, to `category` (and `venue`)."""
        kind = type(nanoseconds)
        # Ints are compared with an int bound: int-to-float comparison is
        # the slowest step CPython would otherwise take here.
        if (kind is int and 0 <= nanoseconds <= _INT_MAX) or (
            kind is float and 0.0 <= nanoseconds <= _FLOAT_MAX
        ):
            try:
                buf = self._buffers[category][venue]
            except (KeyError, TypeError):
                self._record_slow(category, nanoseconds, venue)
                return
            buf.append(nanoseconds)
            if len(buf) >= BATCH_SIZE:
                self._fold_full(category, venue)
            return
        self._record_slow(category, nanoseconds, venue)

    def _record_slow(self, category: object, nanoseconds: object, venue: object) -> None:
        value = _check_latency(nanoseconds)
        series = self._series_for(category, venue)
        series.buf.append(value)
        if len(series.buf) >= BATCH_SIZE:
            self._fold_full(series.category, series.venue)

    def record_many(
        self, category: str, nanoseconds: Iterable[int | float] | np.ndarray, venue: str | None = None
    ) -> None:
        """Add many samples at once (a list or a numpy array), all stamped with the current second."""
        if isinstance(nanoseconds, np.ndarray):
            values = nanoseconds
        else:
            items = list(nanoseconds)
            # numpy would quietly turn a bool among ints into 0 or 1.
            for at, item in enumerate(items):
                if isinstance(item, bool):
                    raise ValueError(f"{_format_latency_error(item)} (at index {at})")
            values = np.asarray(items)
        if values.dtype.kind not in "iuf" or values.ndim > 1:
            raise ValueError(
                "latencies must be a flat sequence of finite numbers of nanoseconds >= 0, "
                f"got an array of dtype {values.dtype} and shape {values.shape}"
            )
        values = values.astype(np.float64, copy=False).ravel()
        bad = ~((values >= 0.0) & (values <= _FLOAT_MAX))
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{_format_latency_error(values[at].item())} (at index {at})")
        series = self._series_for(category, venue)
        if values.size == 0:
            return
        with self._lock:
            second = self._now_second()
            self._fold_locked(series, second)
            self._advance(series, second)
            self._add_array(series, values)

    def measure(self, category: str, venue: str | None = None) -> _Measurement:
        """Context manager timing its body with the profiler's clock (`now_ns`) into `category`.

        The duration is recorded even if the body raises. The category and
        venue are checked here, before the body runs.
        """
        series = self._series_for(category, venue)
        return _Measurement(self, series.category, series.venue)

    def _series_for(self, category: object, venue: object) -> _Series:
        """The series of (category, venue), created (checked, under the lock) on first use.

        Past the bounds (`MAX_CATEGORIES`, `MAX_VENUES`) the series is the
        `OTHER` category's (or the category's `OTHER` venue's) instead.
        """
        try:
            return self._series[category][venue]  # type: ignore[index]
        except (KeyError, TypeError):
            pass
        name = _check_category(category)
        where = _check_venue(venue)
        with self._lock:
            by_venue = self._series.get(name)
            if by_venue is None:
                if name != OTHER and len(self._series) - (OTHER in self._series) >= MAX_CATEGORIES:
                    self._note_folded(f"category {name!r}")
                    name = OTHER
                by_venue = self._series.setdefault(name, {})
            series = by_venue.get(where)
            if series is None and where is not None and where != OTHER:
                named = len(by_venue) - (None in by_venue) - (OTHER in by_venue)
                if named >= MAX_VENUES:
                    self._note_folded(f"venue {where!r} of category {name!r}")
                    where = OTHER
                    series = by_venue.get(where)
            if series is None:
                series = _Series(name, where)
                by_venue[where] = series
                # Published last: `record` must find the list only once the
                # series that folds it exists.
                self._buffers.setdefault(name, {})[where] = series.buf
            return series

    def _note_folded(self, what: str) -> None:
        self._folded_count += 1
        if len(self._folded) < _FOLDED_KEPT and what not in self._folded:
            self._folded.append(what)
        if self._folded_count == 1:
            log.warning(
                "latency profiler: %s is counted under %r: at most %d categories and %d venues per "
                "category are kept (a name made per order or a typo?)", what, OTHER, MAX_CATEGORIES, MAX_VENUES,
            )

    def folded(self) -> tuple[int, list[str]]:
        """How many calls went to `OTHER` past the bounds, and the first names that did.

        One call is one `record`, `record_many` or `measure`; at most 16 names are kept.
        """
        with self._lock:
            return self._folded_count, list(self._folded)

    # -- folding ----------------------------------------------------------------
    def _now_second(self) -> int:
        return math.floor(self.clock.now())

    def _fold_full(self, category: str, venue: str | None) -> None:
        with self._lock:
            series = self._series.get(category, {}).get(venue)
            if series is not None:  # None only if reset() ran meanwhile
                self._fold_locked(series, self._now_second())

    def _flush_locked(self, second: int) -> None:
        # Every read folds every series, not only the one it reads, so that
        # any reader keeps every series' rolling window to the second.
        for by_venue in self._series.values():
            for series in by_venue.values():
                self._fold_locked(series, second)
                self._advance(series, second)

    def _fold_locked(self, series: _Series, second: int) -> None:
        buf = series.buf
        n = len(buf)
        if not n:
            return
        # One slice, then delete exactly what was taken: appends racing with
        # this land after index n and stay for the next fold.
        chunk = buf[:n]
        del buf[:n]
        self._advance(series, second)
        if n <= _SMALL_FOLD:
            self._add_few(series, chunk)
        else:
            self._add_array(series, np.fromiter(chunk, dtype=np.float64, count=n))

    @staticmethod
    def _cover(series: _Series, low: float, high: float) -> None:
        """Grow the series' spans to hold buckets of values in [low, high] (indexes are monotone in value)."""
        fine_low = _fine_index_one(low)
        fine_high = _fine_index_one(high)
        series.hist.cover(fine_low, fine_high)
        series.cur_dense.cover(_coarse_of(fine_low), _coarse_of(fine_high))

    def _add_array(self, series: _Series, values: np.ndarray) -> None:
        n = int(values.size)
        total = float(values.sum())
        low = float(values.min())
        high = float(values.max())
        self._cover(series, low, high)
        hist = series.hist
        dense = series.cur_dense
        fine = _fine_index(values)
        coarse = fine - 1
        coarse >>= _COARSE_SHIFT
        coarse += 1
        if hist.base:
            fine -= hist.base
        if dense.base:
            coarse -= dense.base
        # add.at, not bincount: bincount allocates and adds a histogram-sized
        # array per fold, which costs more than the 4096 samples themselves.
        np.add.at(hist.counts, fine, 1)
        np.add.at(dense.counts, coarse, 1)
        series.count += n
        series.total += total
        series.low = min(series.low, low)
        series.high = max(series.high, high)
        series.cur_count += n
        series.cur_total += total
        series.cur_low = min(series.cur_low, low)
        series.cur_high = max(series.cur_high, high)
        series.version += 1

    def _add_few(self, series: _Series, chunk: Sequence[float | int]) -> None:
        values = [float(raw) for raw in chunk]
        low = min(values)
        high = max(values)
        self._cover(series, low, high)
        hist = series.hist.counts
        hist_base = series.hist.base
        dense = series.cur_dense.counts
        dense_base = series.cur_dense.base
        total = 0.0
        for value in values:
            fine = _fine_index_one(value)
            hist[fine - hist_base] += 1
            dense[((fine - 1) >> _COARSE_SHIFT) + 1 - dense_base] += 1
            total += value
        n = len(chunk)
        series.count += n
        series.total += total
        series.low = min(series.low, low)
        series.high = max(series.high, high)
        series.cur_count += n
        series.cur_total += total
        series.cur_low = min(series.cur_low, low)
        series.cur_high = max(series.cur_high, high)
        series.version += 1

    def _advance(self, series: _Series, second: int) -> None:
        """Make `second` the series' current second: close the previous one, forget old ones."""
        current = series.cur_second
        if current is None:
            series.cur_second = second
            return
        if second <= current:
            # A clock that stepped back: keep filling the current second, so
            # finished seconds stay finished (the window cache relies on it).
            return
        if series.cur_count:
            dense = series.cur_dense
            index, counts = dense.nonzero()
            series.past[current] = _Second(
                series.cur_count,
                series.cur_total,
                series.cur_low,
                series.cur_high,
                index,
                counts,
            )
            dense.counts[index - dense.base] = 0
            series.cur_count = 0
            series.cur_total = 0.0
            series.cur_low = math.inf
            series.cur_high = -math.inf
        series.cur_second = second
        cutoff = second - self._window_len + 1
        past = series.past
        while past:
            oldest = next(iter(past))
            if oldest >= cutoff:
                break
            del past[oldest]

    def flush(self) -> None:
        """Fold every pending sample now (stamping it with the current second)."""
        with self._lock:
            self._flush_locked(self._now_second())

    # -- whole-run statistics ------------------------------------------------------
    def stats(self, category: str, venue: str | None = None) -> LatencyStats:
        """Statistics of `category` at `venue`, or of all its venues when venue is None.

        An unknown category or venue has count 0 and every other field 0.0.
        """
        _check_category(category)
        _check_venue(venue)
        with self._lock:
            self._flush_locked(self._now_second())
            return self._stats_locked(category, venue)

    def _stats_locked(self, category: str, venue: str | None) -> LatencyStats:
        by_venue = self._series.get(category)
        if not by_venue:
            return _EMPTY
        if venue is not None:
            series = by_venue.get(venue)
            return _EMPTY if series is None else self._series_stats(series)
        members = list(by_venue.values())
        if len(members) == 1:
            return self._series_stats(members[0])
        versions = tuple(s.version for s in members)
        cached = self._category_cache.get(category)
        if cached is not None and cached[0] == versions:
            return cached[1]
        filled = [s for s in members if s.count]
        if not filled:
            result = _EMPTY
        else:
            result = self._summarise(
                _Span.merged([s.hist for s in filled]),
                sum(s.count for s in filled),
                sum(s.total for s in filled),
                min(s.low for s in filled),
                max(s.high for s in filled),
            )
        self._category_cache[category] = (versions, result)
        return result

    def _series_stats(self, series: _Series) -> LatencyStats:
        cached = series.cached
        if cached is not None and cached[0] == series.version:
            return cached[1]
        if not series.count:
            result = _EMPTY
        else:
            result = self._summarise(series.hist, series.count, series.total, series.low, series.high)
        series.cached = (series.version, result)
        return result

    @staticmethod
    def _summarise(hist: _Span, count: int, total: float, low: float, high: float) -> LatencyStats:
        index, counts = hist.nonzero()
        p50, p95, p99, p999 = _percentiles(index, counts, _FINE_MID, low, high)
        return LatencyStats(count, low, high, total / count, p50, p95, p99, p999)

    def categories(self) -> list[str]:
        """Every category: the three defaults first, then the others in order of first use."""
        with self._lock:
            return list(self._series)

    def venues(self, category: str | None = None) -> list[str]:
        """Venues seen in `category` (or in any category), sorted."""
        with self._lock:
            if category is None:
                groups = list(self._series.values())
            else:
                groups = [self._series.get(category, {})]
            return sorted({v for by_venue in groups for v in by_venue if v is not None})

    def get_stats(self) -> dict[str, dict[str, float | int]]:
        """Category -> its combined statistics as a dict (the component document's analysis)."""
        with self._lock:
            self._flush_locked(self._now_second())
            return {category: self._stats_locked(category, None).to_dict() for category in self._series}

    def snapshot(self) -> dict[str, Any]:
        """Plain data for a UI: per category its combined stats and each venue's."""
        with self._lock:
            now = self.clock.now()
            self._flush_locked(math.floor(now))
            categories: dict[str, Any] = {}
            for category, by_venue in self._series.items():
                categories[category] = {
                    "all": self._stats_locked(category, None).to_dict(),
                    "venues": {
                        venue: self._series_stats(series).to_dict()
                        for venue, series in sorted(by_venue.items(), key=lambda kv: kv[0] or "")
                        if venue is not None
                    },
                }
            return {"ts": now, "categories": categories}

    def reset(self) -> None:
        """Forget every sample and every dynamic category.

        Samples recorded by other threads while this runs may be kept or dropped.
        """
        with self._lock:
            self._init_state()

    # -- rolling windows -------------------------------------------------------------
    def _window_members(self, category: str, venue: str | None) -> list[_Series]:
        by_venue = self._series.get(category)
        if not by_venue:
            return []
        if venue is None:
            return list(by_venue.values())
        series = by_venue.get(venue)
        return [] if series is None else [series]

    def window_stats(self, category: str, venue: str | None = None, seconds: float = 60) -> LatencyStats:
        """Statistics of the last `seconds` seconds (the current one included), at most `window_s`.

        Percentiles come from the coarse per-second histograms (within 0.4 %);
        count, min, max and mean are exact.
        """
        _check_category(category)
        _check_venue(venue)
        span = min(_check_seconds(seconds), self._window_len)
        with self._lock:
            second = self._now_second()
            self._flush_locked(second)
            members = self._window_members(category, venue)
            if not members:
                return _EMPTY
            key = (category, venue, span)
            cached = self._window_cache.get(key)
            if cached is None or cached[0] != second or cached[1] != len(members):
                cached = self._merge_finished(members, second, span)
                if len(self._window_cache) >= _WINDOW_CACHE_MAX:
                    self._window_cache.clear()  # a caller asking for many spans: start over
                self._window_cache[key] = cached
            _, _, dense, count, total, low, high = cached
            live = [s for s in members if s.cur_count and s.cur_second == second]
            if live:
                dense = dense.copy()
                for series in live:
                    series.cur_dense.add_into(dense)
                    count += series.cur_count
                    total += series.cur_total
                    low = min(low, series.cur_low)
                    high = max(high, series.cur_high)
            if not count:
                return _EMPTY
            index = np.flatnonzero(dense)
            p50, p95, p99, p999 = _percentiles(index, dense[index], _COARSE_MID, low, high)
            return LatencyStats(count, low, high, total / count, p50, p95, p99, p999)

    def _merge_finished(self, members: list[_Series], second: int, span: int) -> tuple[Any, ...]:
        dense = np.zeros(_N_COARSE, dtype=np.int64)
        count = 0
        total = 0.0
        low = math.inf
        high = -math.inf
        first = second - span + 1
        for series in members:
            for ts, done in series.past.items():
                if first <= ts < second:
                    dense[done.index] += done.counts
                    count += done.count
                    total += done.total
                    low = min(low, done.low)
                    high = max(high, done.high)
        return (second, len(members), dense, count, total, low, high)

    def rolling(self, category: str, venue: str | None = None, seconds: float = 60) -> list[WindowPoint]:
        """One point per second that had samples in the last `seconds` (at most `window_s`), oldest first."""
        _check_category(category)
        _check_venue(venue)
        span = min(_check_seconds(seconds), self._window_len)
        with self._lock:
            second = self._now_second()
            self._flush_locked(second)
            first = second - span + 1
            per_second: dict[int, list[tuple[int, np.ndarray, np.ndarray, float, float]]] = {}
            for series in self._window_members(category, venue):
                for ts, done in series.past.items():
                    if ts >= first:
                        per_second.setdefault(ts, []).append(
                            (done.count, done.index, done.counts, done.low, done.high)
                        )
                if series.cur_count and series.cur_second is not None and series.cur_second >= first:
                    index, counts = series.cur_dense.nonzero()
                    per_second.setdefault(series.cur_second, []).append(
                        (series.cur_count, index, counts, series.cur_low, series.cur_high)
                    )
            points = []
            for ts in sorted(per_second):
                parts = per_second[ts]
                count = sum(p[0] for p in parts)
                low = min(p[3] for p in parts)
                high = max(p[4] for p in parts)
                if len(parts) == 1:
                    index, counts = parts[0][1], parts[0][2]
                else:
                    merged = np.zeros(_N_COARSE, dtype=np.int64)
                    for part in parts:
                        merged[part[1]] += part[2]
                    index = np.flatnonzero(merged)
                    counts = merged[index]
                p50, p95, p99, _ = _percentiles(index, counts, _COARSE_MID, low, high)
                points.append(WindowPoint(float(ts), count, p50, p95, p99))
            return points

    # -- persistence ----------------------------------------------------------------
    def _document(self) -> dict[str, Any]:
        series_docs = []
        for by_venue in self._series.values():
            for series in by_venue.values():
                if not series.count:
                    continue
                index, counts = series.hist.nonzero()
                series_docs.append(
                    {
                        "category": series.category,
                        "venue": series.venue,
                        "count": series.count,
                        "sum": series.total,
                        "min": series.low,
                        "max": series.high,
                        "buckets": index.tolist(),
                        "counts": counts.tolist(),
                    }
                )
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "unit": "ns",
            "scheme": {"sub_buckets_per_octave": 1 << _SUB_BITS, "octaves": _OCTAVES},
            "saved_at": self.clock.now(),
            "categories": list(self._series),
            "series": series_docs,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write every series' histogram and exact aggregates to `path`, atomically."""
        with self._lock:
            self._flush_locked(self._now_second())
            document = self._document()
        target = Path(path)
        directory = target.parent
        _remove_stale_temps(target)
        fd, temp_name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=_TEMP_SUFFIX, dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise
        # Make the rename itself survive a power cut; not every platform can.
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def maybe_autosave(self) -> bool:
        """Save to `autosave_path` if `autosave_interval_s` passed since the last autosave.

        Also folds pending samples, so calling it about once a second keeps
        rolling windows to the second. Returns whether it saved; a failed save
        raises (the next attempt waits a full interval).
        """
        self.flush()
        if self.autosave_path is None:
            return False
        now = self.clock.now()
        if now - self._last_autosave < self.autosave_interval_s:
            return False
        self._last_autosave = now
        self.save(self.autosave_path)
        return True

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        clock: Clock | None = None,
        *,
        window_s: float = 600.0,
        autosave_path: str | os.PathLike[str] | None = None,
        autosave_interval_s: float = 60.0,
    ) -> LatencyProfiler:
        """A profiler holding the statistics saved in `path` (rolling windows start empty).

        Raises ProfilerFileError (naming the file and the fault) if it is not a
        complete, consistent execdesk latency file of a version this code reads,
        within the bounds; OSError (FileNotFoundError included) if it cannot be
        opened or read at all.
        """
        where = os.fspath(path)
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise ProfilerFileError(
                f"{where}: over {MAX_FILE_BYTES:,} bytes, larger than any execdesk latency file; not read"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProfilerFileError(f"{where}: not an execdesk latency file (not UTF-8 text: {exc})") from exc
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProfilerFileError(
                f"{where}: not a readable execdesk latency file: invalid JSON at line {exc.lineno} "
                f"column {exc.colno} ({exc.msg}); the file is truncated or corrupt"
            ) from exc
        except ValueError as exc:  # a number of more digits than Python converts
            raise ProfilerFileError(f"{where}: not an execdesk latency file ({exc})") from exc
        except RecursionError as exc:
            raise ProfilerFileError(
                f"{where}: not an execdesk latency file (JSON nested too deeply to read)"
            ) from exc
        profiler = cls(clock, window_s, autosave_path, autosave_interval_s)
        profiler._install(_parse_document(document, where))
        return profiler

    def _install(self, parsed: tuple[list[str], list[dict[str, Any]]]) -> None:
        categories, series_docs = parsed
        with self._lock:
            for category in categories:
                self._series.setdefault(category, {})
                self._buffers.setdefault(category, {})
            for doc in series_docs:
                series = _Series(doc["category"], doc["venue"])
                buckets = np.asarray(doc["buckets"], dtype=np.int64)
                series.hist.cover(int(buckets[0]), int(buckets[-1]))
                series.hist.counts[buckets - series.hist.base] = np.asarray(doc["counts"], dtype=np.int64)
                series.count = doc["count"]
                series.total = doc["sum"]
                series.low = doc["min"]
                series.high = doc["max"]
                series.version = 1
                self._series.setdefault(series.category, {})[series.venue] = series
                self._buffers.setdefault(series.category, {})[series.venue] = series.buf

    def storage_bytes(self) -> int:
        """Bytes held in histograms, rolling windows and pending buffers (fixed per series and window)."""
        with self._lock:
            size = 0
            for by_venue in self._series.values():
                for series in by_venue.values():
                    size += series.storage_bytes() + 8 * len(series.buf)
            return size

    def __repr__(self) -> str:
        return f"<LatencyProfiler categories={len(self._series)} window_s={self.window_s:g}>"


# -- reading saved files -------------------------------------------------------------
def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def _remove_stale_temps(target: Path) -> None:
    """Delete temporary files that killed saves to `target` left, once older than STALE_TEMP_S."""
    cutoff = time.time() - STALE_TEMP_S
    try:
        candidates = list(target.parent.glob(f"{glob.escape(_temp_prefix(target))}*{_TEMP_SUFFIX}"))
    except OSError:
        return
    for candidate in candidates:
        with contextlib.suppress(OSError):  # gone already, or not ours to delete: the save goes on
            if candidate.stat().st_mtime < cutoff:
                candidate.unlink()


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _parse_document(document: object, where: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Check a loaded JSON document in full; ProfilerFileError naming the first fault."""

    def fail(problem: str) -> ProfilerFileError:
        return ProfilerFileError(f"{where}: {problem}")

    if not isinstance(document, dict):
        raise fail(
            f"not an execdesk latency file (a JSON {type(document).__name__}, "
            f"expected an object with format {FILE_FORMAT!r})"
        )
    if document.get("format") != FILE_FORMAT:
        found = document.get("format")
        raise fail(f"not an execdesk latency file (format {found!r}, expected {FILE_FORMAT!r})")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise fail(f"has no valid version (got {version!r}; this execdesk reads version {FILE_VERSION})")
    if version > FILE_VERSION:
        raise ProfilerFileError(
            f"{where} was written by a newer execdesk (version {version}); "
            f"this one reads version {FILE_VERSION}"
        )
    scheme = document.get("scheme")
    expected_scheme = {"sub_buckets_per_octave": 1 << _SUB_BITS, "octaves": _OCTAVES}
    if scheme != expected_scheme:
        raise fail(f"bucket scheme {scheme!r} is not the one this execdesk reads ({expected_scheme!r})")
    if document.get("unit") != "ns":
        raise fail(f"unit {document.get('unit')!r} is not 'ns'")
    categories = document.get("categories")
    if not isinstance(categories, list) or not all(isinstance(c, str) and c for c in categories):
        raise fail(f"'categories' must be a list of non-empty strings, got {categories!r}")
    series_docs = document.get("series")
    if not isinstance(series_docs, list):
        raise fail(f"'series' must be a list, got {type(series_docs).__name__}")
    seen: set[tuple[str, str | None]] = set()
    venues_of: dict[str, set[str | None]] = {}
    for number, doc in enumerate(series_docs):
        if not isinstance(doc, dict):
            raise fail(f"series #{number} must be an object, got {type(doc).__name__}")
        category = doc.get("category")
        venue = doc.get("venue")
        label = f"series #{number} ({quote(category)}, {quote(venue)})"
        if not isinstance(category, str) or not category:
            raise fail(f"{label}: category must be a non-empty string")
        if venue is not None and (not isinstance(venue, str) or not venue):
            raise fail(f"{label}: venue must be null or a non-empty string")
        for field, name in (("category", category), ("venue", venue)):
            # A name shown on the chart: one that prints as another (a right-to-left
            # override, a control character) or runs off the screen is not one we wrote.
            if name is not None and (len(name) > 64 or not name.isprintable()):
                raise fail(f"{label}: {field} must be 1-64 printable characters")
        if (category, venue) in seen:
            raise fail(f"{label} appears twice")
        seen.add((category, venue))
        count = doc.get("count")
        if not _is_count(count) or count == 0 or count > _MAX_COUNT:
            raise fail(f"{label}: count must be an integer in [1, 2**48], got {count!r}")
        for field in ("sum", "min", "max"):
            value = doc.get(field)
            if not _is_number(value) or value < 0:
                raise fail(f"{label}: {field} must be a finite number >= 0, got {value!r}")
        if doc["min"] > doc["max"]:
            raise fail(f"{label}: min {doc['min']!r} is above max {doc['max']!r}")
        buckets = doc.get("buckets")
        counts = doc.get("counts")
        if not isinstance(buckets, list) or not isinstance(counts, list) or len(buckets) != len(counts):
            raise fail(f"{label}: 'buckets' and 'counts' must be lists of the same length")
        previous = -1
        for bucket in buckets:
            if not _is_count(bucket) or bucket <= previous or bucket >= _N_FINE:
                raise fail(
                    f"{label}: bucket indexes must be increasing integers in [0, {_N_FINE}), got {bucket!r}"
                )
            previous = bucket
        if not all(_is_count(c) and 0 < c <= _MAX_COUNT for c in counts):
            raise fail(f"{label}: bucket counts must be integers in [1, 2**48]")
        if sum(counts) != count:
            raise fail(f"{label}: bucket counts add up to {sum(counts)} but count is {count}")
        if category not in categories:
            categories.append(category)
        venues_of.setdefault(category, set()).add(venue)
    categories = list(dict.fromkeys(categories))
    # Counted as a loaded profiler would hold them: the defaults are always there.
    regular = [c for c in dict.fromkeys([*DEFAULT_CATEGORIES, *categories]) if c != OTHER]
    if len(regular) > MAX_CATEGORIES:
        raise fail(
            f"{len(regular)} categories besides {OTHER!r}; a profiler keeps at most {MAX_CATEGORIES}"
        )
    for category, venues in venues_of.items():
        named = len(venues - {None, OTHER})
        if named > MAX_VENUES:
            raise fail(
                f"category {category!r} has {named} venues besides {OTHER!r}; a profiler keeps at most "
                f"{MAX_VENUES} per category"
            )
    return categories, series_docs
