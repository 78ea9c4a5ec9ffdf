"""LatencyProfiler: accuracy against numpy, bounded memory, files, windows, API rules."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.clock import VirtualClock
from engine.errors import ExecdeskError
from engine import profiler as profiler_module
from engine.profiler import (
    BATCH_SIZE,
    DEFAULT_CATEGORIES,
    MAX_CATEGORIES,
    MAX_VENUES,
    OTHER,
    STALE_TEMP_S,
    LatencyProfiler,
    LatencyStats,
    ProfilerFileError,
    WindowPoint,
    _COARSE_SHIFT,
    _N_COARSE,
    _fine_index,
    _fine_index_one,
)

T0 = 1_700_000_000.0
QUANTILES = {"median": 50, "p95": 95, "p99": 99, "p999": 99.9}
FINE_TOLERANCE = 1e-3  # the accuracy the module promises for whole-run stats
COARSE_TOLERANCE = 4e-3  # ... and for rolling windows


def virtual_profiler(**kwargs: object) -> tuple[LatencyProfiler, VirtualClock]:
    clock = VirtualClock(start=T0)
    return LatencyProfiler(clock=clock, **kwargs), clock  # type: ignore[arg-type]


def assert_matches_numpy(stats: LatencyStats, data: list[float] | np.ndarray, tolerance: float) -> None:
    values = np.asarray(data, dtype=np.float64)
    assert stats.count == values.size
    assert stats.min == values.min()
    assert stats.max == values.max()
    assert stats.mean == pytest.approx(values.mean(), rel=1e-9)
    for field, q in QUANTILES.items():
        expected = np.percentile(values, q, method="inverted_cdf")
        got = getattr(stats, field)
        assert abs(got - expected) <= tolerance * expected, (field, got, expected)
    assert stats.min <= stats.median <= stats.p95 <= stats.p99 <= stats.p999 <= stats.max


# -- accuracy -------------------------------------------------------------------------

latency_values = st.one_of(
    st.integers(min_value=1, max_value=60_000_000_000),
    st.floats(min_value=1.0, max_value=6e10, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(latency_values, min_size=1, max_size=400))
def test_percentiles_agree_with_numpy_inverted_cdf(data: list[float]) -> None:
    profiler = LatencyProfiler()
    for value in data:
        profiler.record("submission", value)
    assert_matches_numpy(profiler.stats("submission"), data, FINE_TOLERANCE)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    size=st.sampled_from([1, 2, 23, 25, 1000, BATCH_SIZE, BATCH_SIZE + 1, 20_000]),
    shape=st.sampled_from(["lognormal", "uniform", "integers", "clustered"]),
)
def test_percentiles_agree_with_numpy_on_larger_samples(seed: int, size: int, shape: str) -> None:
    rng = np.random.default_rng(seed)
    if shape == "lognormal":
        data = np.clip(rng.lognormal(13.0, 2.0, size), 1.0, 6e10)
    elif shape == "uniform":
        data = rng.uniform(1.0, 6e10, size)
    elif shape == "integers":
        data = rng.integers(1, 5000, size).astype(np.float64)
    else:  # few distinct values: ties at every percentile
        data = rng.choice([1.0, 999.0, 1000.0, 1e6, 5e10], size)
    profiler = LatencyProfiler()
    for value in data.tolist():  # through record(), buffers and both fold paths
        profiler.record("execution", value, "X")
    assert_matches_numpy(profiler.stats("execution", "X"), data, FINE_TOLERANCE)
    assert_matches_numpy(profiler.stats("execution"), data, FINE_TOLERANCE)


@settings(max_examples=100, deadline=None)
@given(st.lists(latency_values, min_size=1, max_size=300))
def test_window_stats_percentiles_within_coarse_tolerance(data: list[float]) -> None:
    profiler, _ = virtual_profiler()
    profiler.record_many("acknowledgment", data, venue="A")
    assert_matches_numpy(profiler.window_stats("acknowledgment", "A"), data, COARSE_TOLERANCE)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0.0, max_value=1e14, allow_nan=False, allow_infinity=False))
def test_python_and_numpy_bucket_paths_agree(value: float) -> None:
    # Small folds index in Python, large ones in numpy: both must pick the same bucket.
    assert _fine_index_one(value) == int(_fine_index(np.array([value]))[0])


def test_values_outside_the_range_are_counted_and_exact_where_promised() -> None:
    profiler = LatencyProfiler()
    for value in (0, 0.5, 2e12, 3e12):  # below 1 ns and above 2**40 ns
        profiler.record("submission", value)
    stats = profiler.stats("submission")
    assert stats.count == 4
    assert stats.min == 0.0
    assert stats.max == 3e12
    assert stats.mean == pytest.approx((0.5 + 2e12 + 3e12) / 4)
    assert stats.median == 0.5  # the [0, 1) bucket, clamped to its midpoint
    assert stats.p99 == 2.0**40  # the overflow bucket reports the top of the range


# -- memory -----------------------------------------------------------------------------


def test_memory_stays_flat_from_one_to_ten_million_samples() -> None:
    profiler, _ = virtual_profiler()
    rng = np.random.default_rng(7)
    chunk = rng.lognormal(13.0, 1.5, 100_000)
    for value in rng.lognormal(13.0, 1.5, 1_000_000).tolist():
        profiler.record("submission", value, "X")
    profiler.flush()
    size_at_one_million = profiler.storage_bytes()

    # tracemalloc sees every thread; count only what the profiler's own code allocated,
    # so another test's leftover background thread cannot make this one fail.
    only_profiler = [tracemalloc.Filter(True, "*engine/profiler.py")]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces(only_profiler)
        for _ in range(90):
            profiler.record_many("submission", chunk, venue="X")
        profiler.flush()
        after = tracemalloc.take_snapshot().filter_traces(only_profiler)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kept = sum(s.size for s in after.statistics("filename")) - sum(s.size for s in before.statistics("filename"))

    assert profiler.stats("submission").count == 10_000_000
    assert profiler.storage_bytes() == size_at_one_million
    assert kept < 64 * 1024  # nothing kept per sample
    assert peak < 8 * 1024 * 1024  # 9M samples would be 72 MB as floats


def test_rolling_ring_is_bounded_by_the_window() -> None:
    profiler, clock = virtual_profiler(window_s=30)
    for _ in range(200):
        profiler.record("execution", 1000.0)
        profiler.flush()
        clock.advance(1.0)
    series = profiler._series["execution"][None]
    assert len(series.past) <= 30
    assert len(profiler.rolling("execution", seconds=600)) <= 30



def test_finished_seconds_use_buffers_of_a_few_sizes_and_read_back_what_was_recorded() -> None:
    # Seconds leave the window one a second, each after minutes: from buffers of exact
    # sizes the C heap kept a hole of every size (the desk's RSS rose all hour).
    profiler, clock = virtual_profiler(window_s=30)
    rng = np.random.default_rng(3)
    sizes = set()
    for n in (1, 16, 17, 300, 2_000):
        values = rng.lognormal(13.0, 1.5, n)
        profiler.record_many("execution", values, venue="X")
        profiler.flush()
        clock.advance(1.0)
        profiler.flush()
        series = profiler._series["execution"]["X"]
        done = series.past[max(series.past)]
        buckets = done.index.size
        expected = np.bincount(((_fine_index(values) - 1) >> _COARSE_SHIFT) + 1, minlength=_N_COARSE)
        assert np.array_equal(done.index, np.flatnonzero(expected))
        assert np.array_equal(done.counts, expected[np.flatnonzero(expected)]) and done.count == n
        length = done.index.base.size
        assert length == done.counts.base.size and length >= max(buckets, 16)
        assert length & (length - 1) == 0 and length < 2 * max(buckets, 16)  # the next power of two
        sizes.add(length)
    assert len(sizes) >= 3
    points = profiler.rolling("execution", venue="X", seconds=30)
    assert [p.count for p in points] == [1, 16, 17, 300, 2_000]


# -- files --------------------------------------------------------------------------------


def filled_profiler() -> LatencyProfiler:
    profiler, _ = virtual_profiler()
    rng = np.random.default_rng(3)
    for venue in ("A", "B", None):
        for value in rng.lognormal(12.0, 1.0, 3000).tolist():
            profiler.record("submission", value, venue)
    profiler.record("execution", 1234, "A")
    profiler.record("custom_fast_path", 5.5)
    profiler.stats("never_used")  # reading does not create a category
    profiler.measure("declared_but_empty")  # using does
    return profiler


def all_stats(profiler: LatencyProfiler) -> dict[tuple[str, str | None], LatencyStats]:
    result = {}
    for category in profiler.categories():
        result[(category, None)] = profiler.stats(category)
        for venue in profiler.venues(category):
            result[(category, venue)] = profiler.stats(category, venue)
    return result


def test_save_then_load_gives_the_same_stats(tmp_path: Path) -> None:
    profiler = filled_profiler()
    path = tmp_path / "latency.json"
    profiler.save(path)
    loaded = LatencyProfiler.load(path, clock=VirtualClock(start=T0))
    assert loaded.categories() == profiler.categories()
    assert "declared_but_empty" in loaded.categories()
    assert loaded.venues() == ["A", "B"]
    assert all_stats(loaded) == all_stats(profiler)
    assert loaded.get_stats() == profiler.get_stats()
    # A loaded profiler keeps recording on top of what it read.
    loaded.record("submission", 1.0, "A")
    assert loaded.stats("submission", "A").count == 3001
    assert loaded.stats("submission", "A").min == 1.0


def test_saved_file_is_versioned_json(tmp_path: Path) -> None:
    path = tmp_path / "latency.json"
    filled_profiler().save(path)
    document = json.loads(path.read_text())
    assert document["format"] == "execdesk-latency"
    assert document["version"] == 1
    assert {s["category"] for s in document["series"]} == {"submission", "execution", "custom_fast_path"}


def test_corrupt_file_is_refused_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "latency.json"
    path.write_bytes(b"\x00\x17 not json at all")
    with pytest.raises(ProfilerFileError, match="invalid JSON") as caught:
        LatencyProfiler.load(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ExecdeskError) and isinstance(caught.value, ValueError)


def test_non_text_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latency.json"
    path.write_bytes(b"\xff\xfe\xfa binary")
    with pytest.raises(ProfilerFileError, match="not UTF-8"):
        LatencyProfiler.load(path)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latency.json"
    filled_profiler().save(path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ProfilerFileError, match="truncated or corrupt") as caught:
        LatencyProfiler.load(path)
    assert str(path) in str(caught.value)


def test_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latency.json"
    filled_profiler().save(path)
    document = json.loads(path.read_text())
    document["version"] = 2
    path.write_text(json.dumps(document))
    with pytest.raises(ProfilerFileError) as caught:
        LatencyProfiler.load(path)
    assert str(caught.value) == (
        f"{path} was written by a newer execdesk (version 2); this one reads version 1"
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: {"format": "something-else", "version": 1}, "not an execdesk latency file"),
        (lambda d: [1, 2, 3], "not an execdesk latency file"),
        (lambda d: {**d, "version": "1"}, "no valid version"),
        (lambda d: {**d, "scheme": {"sub_buckets_per_octave": 2048, "octaves": 40}}, "bucket scheme"),
        (lambda d: {**d, "series": "nope"}, "'series' must be a list"),
        (lambda d: d["series"][0].update(count=d["series"][0]["count"] + 1) or d, "add up to"),
        (lambda d: d["series"][0].update(min=-1.0) or d, "min must be a finite number"),
        (lambda d: d["series"][0].update(buckets=d["series"][0]["buckets"][::-1]) or d, "increasing"),
        (lambda d: d["series"][0].update(counts=[]) or d, "same length"),
        (lambda d: {**d, "series": d["series"] + d["series"][:1]}, "appears twice"),
    ],
)
def test_inconsistent_file_is_refused(tmp_path: Path, mutate, message: str) -> None:
    path = tmp_path / "latency.json"
    filled_profiler().save(path)
    path.write_text(json.dumps(mutate(json.loads(path.read_text()))))
    with pytest.raises(ProfilerFileError, match=message):
        LatencyProfiler.load(path)


def test_missing_file_is_an_os_error_not_an_empty_profiler(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        LatencyProfiler.load(tmp_path / "absent.json")


@pytest.mark.parametrize("failing", ["json.dump", "os.replace"])
def test_failed_save_leaves_the_old_file_intact(tmp_path: Path, monkeypatch, failing: str) -> None:
    profiler, _ = virtual_profiler()
    profiler.record("submission", 1000)
    path = tmp_path / "latency.json"
    profiler.save(path)
    before = path.read_bytes()
    profiler.record("submission", 9_000_000)

    def write_half_then_fail(obj, handle, **kwargs):
        handle.write(json.dumps(obj)[:20])
        raise OSError("disk full")

    def fail(*args, **kwargs):
        raise OSError("rename failed")

    if failing == "json.dump":
        monkeypatch.setattr(json, "dump", write_half_then_fail)
    else:
        monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        profiler.save(path)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latency.json"]  # no temp file left
    assert LatencyProfiler.load(path).stats("submission").count == 1


def test_a_save_removes_temporary_files_a_killed_save_left_but_not_a_save_in_progress(tmp_path: Path) -> None:
    path = tmp_path / "latency.json"
    killed = tmp_path / ".latency.json.k1ll3d.tmp"
    running = tmp_path / ".latency.json.runn1ng.tmp"
    another_target = tmp_path / ".other.json.k1ll3d.tmp"
    for leftover in (killed, running, another_target):
        leftover.write_text('{"format": "execdesk-lat')
    old = time.time() - STALE_TEMP_S - 60
    for leftover in (killed, another_target):
        os.utime(leftover, (old, old))
    profiler, _ = virtual_profiler()
    profiler.record("submission", 1000)
    profiler.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".latency.json.runn1ng.tmp", ".other.json.k1ll3d.tmp", "latency.json"]
    )
    assert LatencyProfiler.load(path).stats("submission").count == 1


def saved_document(tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "latency.json"
    filled_profiler().save(path)
    return path, json.loads(path.read_text())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000, "JSON nested too deeply to read"),
        ('{"format": "execdesk-latency", "version": ' + "9" * 5000 + "}", "Exceeds the limit (4300 digits)"),
        ("", "invalid JSON at line 1 column 1"),
        ("null", "not an execdesk latency file (a JSON NoneType"),
    ],
    ids=["deep", "huge-int", "empty", "null"],
)
def test_foreign_files_are_refused_with_the_one_error_type(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "latency.json"
    path.write_text(text)
    with pytest.raises(ProfilerFileError, match=re.escape(message)) as caught:
        LatencyProfiler.load(path)
    assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        # A count numpy cannot hold used to escape as OverflowError.
        (lambda d: d["series"][0].update(count=2**70, counts=[2**70], buckets=[5]) or d,
         "count must be an integer in [1, 2**48], got 1180591620717411303424"),
        (lambda d: d["series"][0].update(sum=float("nan")) or d, "sum must be a finite number >= 0, got nan"),
        (lambda d: d["series"][0].update(buckets=[40_962], counts=[d["series"][0]["count"]]) or d,
         "bucket indexes must be increasing integers in [0, 40962), got 40962"),
        (lambda d: {**d, "series": [], "categories": [f"c{i}" for i in range(MAX_CATEGORIES - 2)]},
         f"{MAX_CATEGORIES + 1} categories besides 'other'; a profiler keeps at most {MAX_CATEGORIES}"),
        (lambda d: {**d, "series": [{**d["series"][0], "venue": f"v{i}"} for i in range(MAX_VENUES + 1)]},
         f"has {MAX_VENUES + 1} venues besides 'other'; a profiler keeps at most {MAX_VENUES} per category"),
    ],
    ids=["huge-count", "nan-sum", "bucket-past-the-scheme", "too-many-categories",
         "too-many-venues"],
)
def test_hand_edited_files_are_refused_naming_the_fault(tmp_path: Path, mutate, message: str) -> None:
    path, document = saved_document(tmp_path)
    path.write_text(json.dumps(mutate(document)))
    with pytest.raises(ProfilerFileError, match=re.escape(message)) as caught:
        LatencyProfiler.load(path)
    assert str(path) in str(caught.value)


def test_a_file_at_the_bounds_loads(tmp_path: Path) -> None:
    path, document = saved_document(tmp_path)
    names = [f"c{i}" for i in range(MAX_CATEGORIES - len(DEFAULT_CATEGORIES))]
    series = [{**document["series"][0], "category": "c0", "venue": f"v{i}"} for i in range(MAX_VENUES)]
    series.append({**document["series"][0], "category": "c0", "venue": OTHER})
    path.write_text(json.dumps({**document, "categories": [*names, OTHER], "series": series}))
    loaded = LatencyProfiler.load(path)
    assert loaded.categories() == [*DEFAULT_CATEGORIES, *names, OTHER]
    assert len(loaded.venues("c0")) == MAX_VENUES + 1
    loaded.record("c0", 1.0, "v_new")  # past the bound once loaded: counted under other
    assert loaded.stats("c0", OTHER).count == document["series"][0]["count"] + 1


def test_a_file_past_the_size_bound_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = saved_document(tmp_path)
    size = path.stat().st_size
    monkeypatch.setattr(profiler_module, "MAX_FILE_BYTES", size)
    assert LatencyProfiler.load(path).stats("submission").count == 9000  # at the bound: read
    monkeypatch.setattr(profiler_module, "MAX_FILE_BYTES", size - 1)
    with pytest.raises(ProfilerFileError, match=f"over {size - 1:,} bytes, larger than any execdesk latency"):
        LatencyProfiler.load(path)


def test_a_directory_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        LatencyProfiler.load(tmp_path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
SERIES_FIELDS = ("category", "venue", "count", "sum", "min", "max", "buckets", "counts")
TOP_FIELDS = ("format", "version", "unit", "scheme", "categories", "series")


@settings(max_examples=60, deadline=None)
@given(
    where=st.one_of(st.sampled_from(TOP_FIELDS), st.tuples(st.integers(0, 3), st.sampled_from(SERIES_FIELDS))),
    value=json_values,
)
def test_any_hand_edit_loads_or_raises_the_one_error_type(tmp_path_factory, where, value) -> None:
    path = tmp_path_factory.mktemp("edit") / "latency.json"
    filled_profiler().save(path)
    document = json.loads(path.read_text())
    if isinstance(where, str):
        document[where] = value
    else:
        document["series"][where[0]][where[1]] = value
    path.write_text(json.dumps(document))
    try:
        loaded = LatencyProfiler.load(path)
    except ProfilerFileError as exc:
        assert str(exc).startswith(str(path))
        return
    loaded.get_stats()  # what loaded must also read
    loaded.snapshot()


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_damaged_byte_loads_or_raises_the_one_error_type(tmp_path_factory, data) -> None:
    path = tmp_path_factory.mktemp("bytes") / "latency.json"
    filled_profiler().save(path)
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    path.write_bytes(bytes(raw[:cut]))
    try:
        loaded = LatencyProfiler.load(path)
    except ProfilerFileError as exc:
        assert str(exc).startswith(str(path))
        return
    loaded.get_stats()


def test_maybe_autosave_saves_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "auto.json"
    clock = VirtualClock(start=T0)
    profiler = LatencyProfiler(clock=clock, autosave_path=path, autosave_interval_s=60.0)
    profiler.record("submission", 500)
    assert profiler.maybe_autosave() is False
    assert not path.exists()
    clock.advance(60.0)
    assert profiler.maybe_autosave() is True
    assert LatencyProfiler.load(path).stats("submission").count == 1
    clock.advance(30.0)
    assert profiler.maybe_autosave() is False
    assert LatencyProfiler(clock=clock).maybe_autosave() is False  # no path, no save


# -- categories, venues, API rules ----------------------------------------------------------


def test_default_categories_exist_and_others_are_created_on_first_use() -> None:
    profiler = LatencyProfiler()
    assert profiler.categories() == list(DEFAULT_CATEGORIES)
    assert profiler.stats("submission") == LatencyStats()
    profiler.record("risk_check", 700)
    profiler.record("risk_check", 900)
    assert profiler.categories() == [*DEFAULT_CATEGORIES, "risk_check"]
    stats = profiler.stats("risk_check")
    assert (stats.count, stats.min, stats.max, stats.mean) == (2, 700.0, 900.0, 800.0)


def test_categories_past_the_bound_are_counted_under_other_not_kept(caplog: pytest.LogCaptureFixture) -> None:
    profiler, _ = virtual_profiler()  # a measured body takes 0 ns of virtual time
    extra = [f"typo{i}" for i in range(MAX_CATEGORIES - len(DEFAULT_CATEGORIES))]
    for name in extra:
        profiler.record(name, 100)
    assert profiler.categories() == [*DEFAULT_CATEGORIES, *extra]
    assert profiler.folded() == (0, [])

    profiler.record("one_too_many", 1_000)
    profiler.record("one_too_many", 3_000)
    profiler.record_many("another", [5_000, 7_000], venue="X")
    with profiler.measure("a_third"):
        pass
    assert profiler.categories() == [*DEFAULT_CATEGORIES, *extra, OTHER]
    other = profiler.stats(OTHER)
    assert (other.count, other.min, other.max) == (5, 0.0, 7_000.0)
    assert profiler.stats(OTHER, "X").count == 2
    assert profiler.stats("one_too_many") == LatencyStats()  # never became a category
    count, names = profiler.folded()
    assert count == 4
    assert names == ["category 'one_too_many'", "category 'another'", "category 'a_third'"]
    profiler.record(OTHER, 9_000)  # the bucket itself is always there
    assert profiler.stats(OTHER).count == 6
    warnings = [r.getMessage() for r in caplog.records if r.name == "execdesk.profiler"]
    assert warnings == [  # once, not per sample
        "latency profiler: category 'one_too_many' is counted under 'other': at most 64 categories and 32 "
        "venues per category are kept (a name made per order or a typo?)"
    ]


def test_venues_past_the_bound_are_counted_under_other() -> None:
    profiler = LatencyProfiler()
    for i in range(MAX_VENUES):
        profiler.record("acknowledgment", 100, f"v{i}")
    profiler.record("acknowledgment", 200)  # venue-less samples do not count against the bound
    profiler.record("acknowledgment", 5_000, "v_late")
    profiler.record("acknowledgment", 6_000, "v_later")
    assert profiler.venues("acknowledgment") == sorted([*(f"v{i}" for i in range(MAX_VENUES)), OTHER])
    assert profiler.stats("acknowledgment", OTHER).count == 2
    assert profiler.stats("acknowledgment").count == MAX_VENUES + 3
    assert profiler.folded() == (2, ["venue 'v_late' of category 'acknowledgment'",
                                     "venue 'v_later' of category 'acknowledgment'"])
    profiler.record("submission", 100, "v_late")  # the bound is per category
    assert profiler.venues("submission") == ["v_late"]


def test_two_thousand_typo_categories_cost_little_memory() -> None:
    # The case: each new category was kept for ever at ~370 kB (2,000: +267 MB RSS).
    profiler, _ = virtual_profiler()
    only_profiler = [tracemalloc.Filter(True, "*engine/profiler.py")]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces(only_profiler)
        for i in range(2_000):
            profiler.record(f"subimssion{i}", 50_000.0 + i, "X")
        profiler.flush()
        after = tracemalloc.take_snapshot().filter_traces(only_profiler)
    finally:
        tracemalloc.stop()
    kept = sum(s.size for s in after.statistics("filename")) - sum(s.size for s in before.statistics("filename"))
    assert len(profiler.categories()) == MAX_CATEGORIES + 1
    assert profiler.stats(OTHER).count == 2_000 - (MAX_CATEGORIES - len(DEFAULT_CATEGORIES))
    # 61 one-sample categories and the other bucket, at a few kB each (measured ~4 kB).
    assert kept < 62 * 8 * 1024, kept


def test_a_series_holds_only_the_buckets_its_samples_reach() -> None:
    profiler, _ = virtual_profiler()
    profiler.record("one", 50_000.0)
    one_sample = profiler.storage_bytes()
    assert one_sample <= 4 * 1024  # a quarter octave fine plus half an octave coarse (int64)
    for value in (1.0, 2.0**39):  # the whole range: still bounded by the whole scheme
        profiler.record("one", value)
    profiler.flush()
    assert one_sample < profiler.storage_bytes() <= 8 * (40_962 + 5_122)
    stats = profiler.stats("one")
    assert (stats.count, stats.min, stats.median, stats.max) == (3, 1.0, pytest.approx(50_000.0, rel=1e-3), 2.0**39)


def test_window_stats_over_many_spans_keeps_a_bounded_cache() -> None:
    profiler, clock = virtual_profiler()
    for _ in range(5):  # one sample in each of the last five seconds before now
        profiler.record("execution", 1_000.0, "X")
        profiler.flush()
        clock.advance(1.0)
    only_profiler = [tracemalloc.Filter(True, "*engine/profiler.py")]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces(only_profiler)
        for seconds in range(1, 601):
            assert profiler.window_stats("execution", "X", seconds=seconds).count == min(seconds - 1, 5)
        after = tracemalloc.take_snapshot().filter_traces(only_profiler)
    finally:
        tracemalloc.stop()
    kept = sum(s.size for s in after.statistics("filename")) - sum(s.size for s in before.statistics("filename"))
    assert kept < 3 * 2**20, kept  # at most 64 merged windows of 41 kB; all 600 would be ~25 MB


def test_stats_per_venue_and_combined() -> None:
    profiler = LatencyProfiler()
    a = [100.0, 200.0, 300.0]
    b = [1e6, 2e6]
    none = [5e3]
    for venue, values in (("binance", a), ("kraken", b), (None, none)):
        for value in values:
            profiler.record("acknowledgment", value, venue)
    assert profiler.venues("acknowledgment") == ["binance", "kraken"]
    assert profiler.venues() == ["binance", "kraken"]
    assert profiler.venues("submission") == []
    assert_matches_numpy(profiler.stats("acknowledgment", "binance"), a, FINE_TOLERANCE)
    assert_matches_numpy(profiler.stats("acknowledgment", "kraken"), b, FINE_TOLERANCE)
    assert_matches_numpy(profiler.stats("acknowledgment"), a + b + none, FINE_TOLERANCE)
    assert profiler.stats("acknowledgment", "coinbase").count == 0


def test_empty_and_unknown_categories_have_zero_stats() -> None:
    profiler = LatencyProfiler()
    empty = LatencyStats(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert profiler.stats("execution") == empty
    assert profiler.stats("no_such_category") == empty
    assert profiler.window_stats("no_such_category") == empty
    assert profiler.rolling("no_such_category") == []
    assert "no_such_category" not in profiler.categories()
    assert empty.to_dict() == {
        "count": 0, "min": 0.0, "max": 0.0, "mean": 0.0,
        "median": 0.0, "p95": 0.0, "p99": 0.0, "p999": 0.0,
    }


class NotANumber:
    pass


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (-5, "-5"),
        (-0.001, "-0.001"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        ("5", "'5'"),
        (None, "None (a NoneType)"),
        (True, "True (a bool, not a number)"),
        (1 + 2j, "(1+2j) (a complex)"),
        (NotANumber(), "(a NotANumber)"),
        (np.float64("nan"), "nan"),
    ],
)
@pytest.mark.parametrize("venue", [None, "A"])
def test_bad_values_raise_at_the_call(value: object, shown: str, venue: str | None) -> None:
    profiler = LatencyProfiler()
    profiler.record("submission", 10, venue)  # the fast path: the series exists
    with pytest.raises(ValueError) as caught:
        profiler.record("submission", value, venue)  # type: ignore[arg-type]
    assert str(caught.value).startswith("latency must be a finite number of nanoseconds >= 0, got ")
    assert shown in str(caught.value)
    with pytest.raises(ValueError, match="latency must be a finite number"):
        profiler.record("brand_new", value, venue)  # type: ignore[arg-type]
    assert profiler.stats("submission").count == 1
    assert "brand_new" not in profiler.categories()


def test_bad_value_message_is_exact() -> None:
    with pytest.raises(ValueError) as caught:
        LatencyProfiler().record("submission", -5)
    assert str(caught.value) == "latency must be a finite number of nanoseconds >= 0, got -5"


def test_numpy_scalars_and_huge_ints() -> None:
    profiler = LatencyProfiler()
    profiler.record("submission", np.int64(300))
    profiler.record("submission", np.float32(100.0))
    assert profiler.stats("submission").mean == 200.0
    with pytest.raises(ValueError, match="too large for a float"):
        profiler.record("submission", 10**400)


@pytest.mark.parametrize("category", ["", 5, None, b"submission"])
def test_bad_category_raises(category: object) -> None:
    profiler = LatencyProfiler()
    with pytest.raises(ValueError, match=r"category must be a non-empty string, got "):
        profiler.record(category, 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="category must be a non-empty string"):
        profiler.measure(category)  # type: ignore[arg-type]


@pytest.mark.parametrize("venue", ["", 3, ["A"]])
def test_bad_venue_raises(venue: object) -> None:
    with pytest.raises(ValueError, match="venue must be None or a non-empty string, got "):
        LatencyProfiler().record("submission", 10, venue)  # type: ignore[arg-type]


def test_record_many_checks_every_value() -> None:
    profiler = LatencyProfiler()
    with pytest.raises(ValueError, match=r"got -1.0 \(at index 2\)"):
        profiler.record_many("submission", [1.0, 2.0, -1.0])
    with pytest.raises(ValueError, match="dtype"):
        profiler.record_many("submission", ["1"])
    with pytest.raises(ValueError, match=r"a bool, not a number\) \(at index 1\)"):
        profiler.record_many("submission", [5, True])
    assert profiler.stats("submission").count == 0
    profiler.record_many("submission", np.array([1, 2, 3], dtype=np.int32))
    assert profiler.stats("submission").mean == 2.0
    profiler.record_many("submission", (float(v) for v in (4, 5)))
    assert profiler.stats("submission").count == 5


def test_measure_records_the_virtual_duration_of_its_body() -> None:
    # A start near 1.7e9 s would leave the clock's float only ~240 ns of
    # resolution; a small start keeps now_ns() exact to the nanosecond.
    clock = VirtualClock(start=1000.0)
    profiler = LatencyProfiler(clock=clock)
    with profiler.measure("submission", "A") as measurement:
        clock.advance(0.0025)
    assert measurement.elapsed_ns == 2_500_000
    stats = profiler.stats("submission", "A")
    assert (stats.count, stats.min, stats.max) == (1, 2_500_000.0, 2_500_000.0)


def test_measure_records_when_the_body_raises_and_checks_names_first() -> None:
    profiler, clock = virtual_profiler()
    with pytest.raises(RuntimeError):
        with profiler.measure("venue_call"):
            clock.advance(1.0)
            raise RuntimeError("timeout")
    assert profiler.stats("venue_call").max == 1e9
    ran = []
    with pytest.raises(ValueError):
        with profiler.measure(""):
            ran.append(True)
    assert ran == []


def test_constructor_defaults_and_checks() -> None:
    profiler = LatencyProfiler()
    assert profiler.window_s == 600.0
    assert profiler.autosave_path is None
    with profiler.measure("submission"):
        pass
    assert profiler.stats("submission").count == 1  # real clock, some ns >= 0
    with pytest.raises(ValueError, match="window_s must be"):
        LatencyProfiler(window_s=0)
    with pytest.raises(ValueError, match="autosave_interval_s must be"):
        LatencyProfiler(autosave_interval_s=float("nan"))


def test_get_stats_snapshot_and_reset() -> None:
    profiler = LatencyProfiler()
    profiler.record("submission", 100, "A")
    profiler.record("submission", 300, "B")
    profiler.record("custom", 7)
    stats = profiler.get_stats()
    assert list(stats) == [*DEFAULT_CATEGORIES, "custom"]
    assert stats["submission"]["count"] == 2 and stats["submission"]["mean"] == 200.0
    assert stats["execution"]["count"] == 0
    snapshot = profiler.snapshot()
    assert snapshot["categories"]["submission"]["all"] == stats["submission"]
    assert snapshot["categories"]["submission"]["venues"]["B"]["max"] == 300.0
    assert list(snapshot["categories"]["submission"]["venues"]) == ["A", "B"]
    json.dumps(snapshot)  # plain data a UI or a log can take as it is
    profiler.reset()
    assert profiler.categories() == list(DEFAULT_CATEGORIES)
    assert profiler.stats("submission").count == 0
    assert profiler.venues() == []


def test_concurrent_recording_loses_and_duplicates_nothing() -> None:
    profiler = LatencyProfiler()
    per_thread = 12 * BATCH_SIZE + 17
    threads_n = 4
    start = threading.Barrier(threads_n + 1)
    done = threading.Event()

    def writer(offset: int) -> None:
        start.wait()
        for i in range(per_thread):
            profiler.record("submission", offset + i % 1000, "A")

    def reader() -> None:
        start.wait()
        while not done.is_set():
            profiler.stats("submission")
            profiler.window_stats("submission", "A")

    writers = [threading.Thread(target=writer, args=(k * 1000,)) for k in range(threads_n)]
    watcher = threading.Thread(target=reader)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so folds and appends interleave
    try:
        for thread in [*writers, watcher]:
            thread.start()
        for thread in writers:
            thread.join()
        done.set()
        watcher.join()
    finally:
        sys.setswitchinterval(interval)
    expected = np.concatenate(
        [k * 1000 + np.arange(per_thread) % 1000 for k in range(threads_n)]
    ).astype(np.float64)
    assert_matches_numpy(profiler.stats("submission"), expected, FINE_TOLERANCE)


# -- rolling windows ---------------------------------------------------------------------------


def test_samples_land_in_the_second_they_were_recorded_in() -> None:
    profiler, clock = virtual_profiler(window_s=10)
    clock.advance(0.2)  # T0 + 0.2
    for value in (100.0, 200.0, 300.0):
        profiler.record("acknowledgment", value, "A")
    profiler.flush()  # the desk reads (or flushes) at least once a second
    clock.advance(1.3)  # T0 + 1.5
    profiler.record("acknowledgment", 5000.0, "B")
    profiler.stats("submission")  # any read folds every pending sample
    clock.advance(3.0)  # T0 + 4.5
    profiler.record("acknowledgment", 7000.0, "A")

    points = profiler.rolling("acknowledgment")
    assert [p.ts for p in points] == [T0, T0 + 1, T0 + 4]
    assert [p.count for p in points] == [3, 1, 1]
    assert points[0].p50 == pytest.approx(200.0, rel=COARSE_TOLERANCE)
    assert points[0].p99 == 300.0
    assert points[1].p95 == 5000.0
    assert isinstance(points[0], WindowPoint)
    assert points[0].to_dict()["ts"] == T0

    only_a = profiler.rolling("acknowledgment", "A")
    assert [(p.ts, p.count) for p in only_a] == [(T0, 3), (T0 + 4, 1)]
    assert [p.ts for p in profiler.rolling("acknowledgment", seconds=2)] == [T0 + 4]


def test_unread_samples_land_in_the_second_of_the_next_fold() -> None:
    # The documented cost of a cheap record(): stamping happens at the fold.
    profiler, clock = virtual_profiler()
    profiler.record("execution", 100.0)
    clock.advance(2.5)
    assert [(p.ts, p.count) for p in profiler.rolling("execution")] == [(T0 + 2, 1)]


def test_a_full_buffer_folds_without_a_read() -> None:
    profiler, clock = virtual_profiler()
    for _ in range(BATCH_SIZE):
        profiler.record("execution", 100.0)
    assert profiler._series["execution"][None].buf == []
    clock.advance(5.0)
    assert [(p.ts, p.count) for p in profiler.rolling("execution")] == [(T0, BATCH_SIZE)]


def test_old_seconds_drop_out_after_the_window() -> None:
    profiler, clock = virtual_profiler(window_s=10)
    profiler.record("execution", 100.0)
    profiler.flush()
    clock.advance(9.0)
    profiler.record("execution", 900.0)
    assert [p.ts for p in profiler.rolling("execution", seconds=60)] == [T0, T0 + 9]
    clock.advance(1.0)
    assert [p.ts for p in profiler.rolling("execution", seconds=60)] == [T0 + 9]
    assert profiler.window_stats("execution", seconds=600).count == 1
    assert profiler.stats("execution").count == 2  # the whole-run stats keep everything
    clock.advance(20.0)
    assert profiler.rolling("execution") == []
    assert profiler.window_stats("execution") == LatencyStats()


def test_window_stats_merges_only_the_last_n_seconds() -> None:
    profiler, clock = virtual_profiler()
    for second in range(10):
        for value in (1000.0 * (second + 1), 1000.0 * (second + 1) + 10):
            profiler.record("acknowledgment", value, "X")
        profiler.flush()
        clock.advance(1.0)
    # Now at T0 + 10, nothing recorded yet in this second.
    last3 = profiler.window_stats("acknowledgment", "X", seconds=3)  # T0+8 .. T0+10
    assert last3.count == 4
    assert (last3.min, last3.max) == (9000.0, 10010.0)
    assert last3.mean == pytest.approx((9000 + 9010 + 10000 + 10010) / 4)
    whole = profiler.window_stats("acknowledgment", seconds=60)
    assert whole.count == 20 and whole.min == 1000.0
    assert whole.p95 == pytest.approx(np.percentile(
        [1000.0 * k + d for k in range(1, 11) for d in (0, 10)], 95, method="inverted_cdf"
    ), rel=COARSE_TOLERANCE)
    # Cached finished seconds plus the live one: a sample just recorded counts at once.
    profiler.record("acknowledgment", 50.0, "X")
    now = profiler.window_stats("acknowledgment", "X", seconds=3)
    assert (now.count, now.min) == (5, 50.0)
    clock.advance(1.0)
    assert profiler.window_stats("acknowledgment", "X", seconds=3).count == 3


def test_window_stats_sees_a_new_venue_in_the_same_second() -> None:
    profiler, clock = virtual_profiler()
    profiler.record("submission", 100.0, "A")
    clock.advance(1.0)
    assert profiler.window_stats("submission").count == 1
    profiler.record("submission", 200.0, "B")
    assert profiler.window_stats("submission").count == 2


def test_window_seconds_must_be_positive() -> None:
    profiler = LatencyProfiler()
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="seconds must be a finite number > 0"):
            profiler.window_stats("submission", seconds=bad)
        with pytest.raises(ValueError, match="seconds must be a finite number > 0"):
            profiler.rolling("submission", seconds=bad)


# -- hygiene -----------------------------------------------------------------------------------


def test_importing_the_profiler_loads_no_textual() -> None:
    code = "import engine.profiler, sys; assert 'textual' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_stats_are_frozen() -> None:
    stats = LatencyStats(1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(AttributeError):
        stats.count = 2  # type: ignore[misc]
    assert math.isclose(stats.to_dict()["p999"], 1.0)
