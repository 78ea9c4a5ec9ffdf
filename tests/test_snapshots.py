"""How the desk looks: fixed seed, frozen virtual clock, instant venues, fixed size.

Update after an intended change with `python3 dev.py test tests/test_snapshots.py --snapshot-update`
and look at the new SVGs (../shared/tools/svg2png turns them into pictures).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.desk_support import make_app, make_engine

TYPES_FROM_LIMIT = {"LIMIT": 0, "ICEBERG": 1, "TWAP": 2, "VWAP": 3, "SMART": 4, "MARKET": 5}


def test_main_screen_wide(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=(160, 48))


def test_main_screen_compact(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=(80, 24))


@pytest.mark.parametrize("order_type", list(TYPES_FROM_LIMIT))
def test_ticket_for_each_order_type(snap_compare, tmp_path: Path, order_type: str) -> None:
    keys = ["b", *["ctrl+t"] * TYPES_FROM_LIMIT[order_type]]
    assert snap_compare(make_app(tmp_path), terminal_size=(160, 48), press=keys)


def test_ticket_with_a_validation_error(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=(160, 48), press=["s", "minus", "3"])


def test_ticket_over_a_venue_out_of_routing(snap_compare, tmp_path: Path) -> None:
    # The ticket hides the desk, so it carries the desk's loud news itself.
    engine = make_engine()
    engine.router.breaker("swift").force_open("drill: venue down")
    assert snap_compare(make_app(tmp_path, engine=engine), terminal_size=(160, 48), press=["b"])


def test_venue_with_an_open_breaker(snap_compare, tmp_path: Path) -> None:
    engine = make_engine()
    engine.router.breaker("swift").force_open("drill: venue down")
    assert snap_compare(make_app(tmp_path, engine=engine), terminal_size=(160, 48))


def test_help_screen(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=(160, 48), press=["question_mark"])


@pytest.mark.parametrize("theme", ["execdesk-dark", "execdesk-light", "execdesk-contrast"])
def test_each_theme(snap_compare, tmp_path: Path, theme: str) -> None:
    assert snap_compare(make_app(tmp_path, theme=theme), terminal_size=(160, 48))
