"""A desk that renders the same way every time: frozen virtual clock, instant venues, fixed ids."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine import DEFAULT_VENUES, Engine, LatencyModel, VirtualClock
from engine.engine import VenueSpec
from tui.app import DeskApp

START = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC


def instant_specs() -> tuple[VenueSpec, ...]:
    """The default venues' characters, minus latency and faults (tests need no sleeping)."""
    return tuple(
        VenueSpec(s.name, s.fees, LatencyModel(), s.market, description=s.description) for s in DEFAULT_VENUES
    )


def make_engine(seed: int = 1, clock: VirtualClock | None = None) -> Engine:
    return Engine.default(seed=seed, clock=clock or VirtualClock(start=START), specs=instant_specs())


def make_app(
    tmp_path: Path, seed: int = 1, theme: str | None = None, engine: Engine | None = None,
    *, app_class: type[DeskApp] = DeskApp,
) -> DeskApp:
    return app_class(
        engine or make_engine(seed),
        seed=seed,
        theme=theme,
        live=False,
        settings_path=tmp_path / "settings.json",
        order_prefix="T",
    )


async def until(pilot: Any, condition: Callable[[], bool], tries: int = 100) -> None:
    """Let the app run until `condition` holds (a few frames at most); fail otherwise."""
    for _ in range(tries):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("the desk never reached the expected state")
