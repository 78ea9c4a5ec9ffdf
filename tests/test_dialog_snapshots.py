"""The ticket and the key list at 80x24, the smallest terminal the desk supports.

Same setup as tests/test_snapshots.py (fixed seed, frozen virtual clock, instant venues).
Update after an intended change with `--snapshot-update` and look at the new SVGs.
"""

from __future__ import annotations

from pathlib import Path

from tests.desk_support import make_app


def test_help_screen_compact(snap_compare, tmp_path: Path) -> None:
    # Every description readable: wrapped in the 80 columns, keys as printed on them.
    assert snap_compare(make_app(tmp_path), terminal_size=(80, 24), press=["question_mark"])


def test_ticket_compact(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=(80, 24), press=["b"])


def test_ticket_compact_with_errors(snap_compare, tmp_path: Path) -> None:
    # The tallest ticket (VWAP) with a decimal comma and a bad number: each error whole on its
    # own line, the summary still inside the ticket.
    keys = ["b", "f6", "1", "comma", "5", "tab", "tab", "1", "x"]
    assert snap_compare(make_app(tmp_path), terminal_size=(80, 24), press=keys)
