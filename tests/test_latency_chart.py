"""The latency chart's history view: whatever the saved file holds, `h` shows a message, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import LatencyProfiler
from tests.desk_support import make_app, make_engine, until
from tui.screens.ticket import TicketScreen
from tui.widgets.latency_chart import LatencyChart


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    ("content", "shown"),
    [
        (b"\x00\x17 garbage", "invalid JSON at line 1 column 1"),
        (b"\xff\xfe\xfa binary", "not UTF-8 text"),
        (b"[" * 100_000, "JSON nested too deeply to read"),
        (b'{"format": "execdesk-latency", "version": 1, "unit": "ns"', "truncated or corrupt"),
        (b'{"format": "execdesk-latency", "version": 7}', "written by a newer execdesk (version 7)"),
    ],
    ids=["garbage", "binary", "deep", "truncated", "newer"],
)
def test_a_bad_history_file_is_a_message(tmp_path: Path, content: bytes, shown: str) -> None:
    path = tmp_path / "latency.json"
    path.write_bytes(content)
    chart = LatencyChart()
    problem = chart.toggle_history(path)
    assert problem is not None and problem.startswith("latency history not shown: ") and shown in problem
    assert str(path) in problem
    assert chart.history is None  # still live


def test_an_unreadable_history_path_is_a_message(tmp_path: Path) -> None:
    chart = LatencyChart()
    problem = chart.toggle_history(tmp_path)  # a directory: IsADirectoryError, an OSError
    assert problem == f"latency history not shown: {tmp_path} could not be read (Is a directory)"
    assert chart.history is None
    missing = tmp_path / "absent.json"
    assert chart.toggle_history(missing) == (
        f"no saved latency history yet at {missing} (saved on exit and every minute)"
    )


def test_a_good_history_file_toggles_history_on_and_off(tmp_path: Path) -> None:
    path = tmp_path / "latency.json"
    saved = LatencyProfiler()
    saved.record("acknowledgment", 2_000_000, "alpha")
    saved.save(path)
    chart = LatencyChart()
    assert chart.toggle_history(path) is None
    assert chart.history is not None and chart.history.stats("acknowledgment", "alpha").count == 1
    assert chart.toggle_history(path) is None
    assert chart.history is None




@pytest.mark.anyio
async def test_h_on_a_garbage_history_file_keeps_the_desk_running(tmp_path: Path) -> None:
    path = tmp_path / "latency.json"
    path.write_bytes(b"[" * 100_000)  # JSON nested past the parser's depth: once a RecursionError
    engine = make_engine()
    engine.profiler.autosave_path = path
    app = make_app(tmp_path, engine=engine)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("h")
        await pilot.press("h")
        await pilot.pause()
        assert app.is_running
        chart = app.query_one(LatencyChart)
        assert chart.history is None
        await pilot.press("b")  # the next key is still answered
        await until(pilot, lambda: isinstance(app.screen, TicketScreen))
        await pilot.press("escape")
        await app.shutdown_engine()
