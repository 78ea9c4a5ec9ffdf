"""The desk's small dialogs (help, amend) driven by keys, and a guard on Textual's own names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from textual.screen import ModalScreen

from tests.desk_support import make_app
from tui.screens.dialogs import AmendScreen, ConfirmScreen, DrillScreen, HelpScreen
from tui.screens.ticket import TicketScreen


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def until(pilot, condition: Callable[[], bool], tries: int = 100) -> None:
    for _ in range(tries):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("the desk never reached the expected state")


SCREENS: list[Callable[[], ModalScreen]] = [
    lambda: HelpScreen([("b", "Buy", "Open a buy ticket")]),
    lambda: ConfirmScreen("Quit?"),
    lambda: AmendScreen("T-1", 0.5, 49_100.0),
    lambda: DrillScreen("swift"),
    lambda: TicketScreen({}, ["BTC/USD"], ["swift"], "T-1"),
]


@pytest.mark.parametrize("make", SCREENS, ids=["help", "confirm", "amend", "drill", "ticket"])
def test_no_screen_reuses_a_name_textual_keeps_for_itself(make: Callable[[], ModalScreen]) -> None:
    # A screen that stores its own data in `_bindings` (Textual's key map) crashes on the next key.
    screen, plain = make(), ModalScreen()
    clobbered = {
        name: type(getattr(screen, name)).__name__
        for name, value in vars(plain).items()
        if type(getattr(screen, name)) is not type(value)
    }
    assert clobbered == {}, f"{type(screen).__name__} replaced Textual's attributes: {clobbered}"
    textual_names = set(dir(ModalScreen))
    own_private = {  # methods and properties of our own (Textual adds class attributes to each subclass)
        n for n, v in vars(type(screen)).items()
        if n.startswith("_") and not n.startswith("__") and (callable(v) or isinstance(v, property))
    }
    assert own_private & textual_names == set()


@pytest.mark.anyio
async def test_every_key_on_the_help_screen_leaves_the_desk_running(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        # The keys the help screen, its table and Textual's screen define (not the desk's own keys:
        # tests/test_keys.py presses those everywhere).
        keys = sorted(
            key for key, active in app.screen.active_bindings.items()
            if active.node is not app
        )
        assert {"escape", "question_mark", "q", "down", "up", "tab"} <= set(keys), keys
        closers = {k for b in HelpScreen.BINDINGS for k in b.key.split(",")}
        for key in keys:
            if not isinstance(app.screen, HelpScreen):
                await pilot.press("question_mark")
                await until(pilot, lambda: isinstance(app.screen, HelpScreen))
            await pilot.press(key)
            await pilot.pause()
            assert app.is_running, f"the desk died on {key!r} in help"
            assert isinstance(app.screen, HelpScreen) is (key not in closers), key
        # ...and still answers the next key.
        if isinstance(app.screen, HelpScreen):
            await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert app.screen.query_one("#help-table").row_count == len(app.key_map())
        await app.shutdown_engine()
