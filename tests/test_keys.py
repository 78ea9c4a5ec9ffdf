"""No key crashes the desk: every binding of every screen, pressed where it is live.

The keys come from the bindings themselves: each class's `BINDINGS` along its MRO
(the desk's, its widgets', its dialogs' and Textual's own: ctrl+q, ctrl+c, tab,
shift+tab) and the palette's key, never from a list kept by hand. A widget's keys are
pressed with that widget focused. After each key the desk must still run and answer
the next key (a priority probe key it counts). The screens walked are the main screen
and every dialog (ticket, amend, order detail, confirm, drill, help, palette); a meta-test fails
when a screen appears that the walk does not open, or a key is live that the walk
would not press.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.binding import Binding
from textual.command import CommandPalette
from textual.screen import Screen
from textual.widget import Widget

import tui
from engine import Order
from tests.desk_support import make_app
from tests.test_desk import until
from tui.app import DeskApp

PROBE = "f24"  # bound by nothing else: the desk's answer to it shows it still takes keys


class ProbedDesk(DeskApp):
    """The desk plus the probe: a priority key, so it reaches the app from any screen."""

    BINDINGS = [Binding(PROBE, "probe", "Probe", show=False, priority=True)]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.probes = 0

    def action_probe(self) -> None:
        self.probes += 1


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- the keys, from the bindings -----------------------------------------------------------


def own_keys(klass: type) -> set[str]:
    """The keys one class declares in its own `BINDINGS`."""
    keys: set[str] = set()
    for binding in vars(klass).get("BINDINGS", ()):
        key = binding.key if isinstance(binding, Binding) else binding[0]
        keys.update(k.strip() for k in key.split(",") if k.strip())
    return keys


def declared_keys(cls: type) -> set[str]:
    """Every key a class binds, its bases' included (Textual merges them the same way)."""
    return set().union(*(own_keys(klass) for klass in cls.__mro__))


@dataclass(frozen=True)
class Press:
    key: str
    widget: str | None  # where to put the focus first: "#id" or "Type:n"; None leaves it


def locator(screen: Screen, widget: Widget) -> str:
    if widget.id:
        return f"#{widget.id}"
    same = [w for w in screen.query(type(widget).__name__) if type(w) is type(widget)]
    return f"{type(widget).__name__}:{same.index(widget)}"


def find(screen: Screen, where: str) -> Widget | None:
    if where.startswith("#"):
        found = screen.query(where)
        return found.first() if found else None
    name, _, index = where.partition(":")
    same = [w for w in screen.query(name) if type(w).__name__ == name]
    return same[int(index)] if int(index) < len(same) else None


def presses(app: DeskApp, screen: Screen) -> list[Press]:
    """Every key live on `screen`: the app's and the screen's with the focus where it
    is, each widget's with that widget focused."""
    keys = declared_keys(type(app)) | declared_keys(type(screen))
    if app.ENABLE_COMMAND_PALETTE:
        keys.add(app.COMMAND_PALETTE_BINDING)
    keys.discard(PROBE)
    out = [Press(key, None) for key in sorted(keys)]
    reachable = set(screen.focus_chain)
    done = set(type(screen).__mro__)
    # A binding is pressed once, on a widget of the class that declares it (LiveTable's
    # arrows on one table, Blotter's c and a on the Orders panel). The focus goes only
    # where the operator can put it (the focus chain); a class with no such widget (a
    # closed dropdown's list) gets its keys with the focus left where it is.
    widgets = sorted(screen.query("*"), key=lambda w: w not in reachable)
    for widget in widgets:
        where = locator(screen, widget) if widget in reachable else None
        for klass in type(widget).__mro__:
            if klass in done:
                continue
            done.add(klass)
            out.extend(Press(key, where) for key in sorted(own_keys(klass)))
    return list(dict.fromkeys(out))


# -- the screens, and how to reach each ----------------------------------------------------


async def working_order(pilot) -> str:
    """A plain order resting at a venue, so quitting asks and amend has something to amend."""
    app: DeskApp = pilot.app
    if app.engine.halted_reason:
        app.engine.resume()
    for order_id in app.engine.working():
        if app.engine.scheduler.parent(order_id) is None:
            return order_id
    book = app.engine.smart.merged_book(app.symbol, depth=1)
    order = Order(id=app.next_order_id(), symbol=app.symbol, side="BUY", type="LIMIT", quantity=0.01,
                  price=round(book.best_bid * 0.999, 2))
    app.track_order(order)
    await app.engine.submit(order)
    await until(pilot, lambda: order.id in app.engine.working())
    return order.id


async def back_to_the_desk(pilot) -> None:
    app = pilot.app
    while app.desk_covered:
        app.pop_screen()
        await pilot.pause()


async def press_and_wait(pilot, key: str, screen_name: str) -> None:
    await pilot.press(key)
    await until(pilot, lambda: type(pilot.app.screen).__name__ == screen_name)


async def open_main(pilot) -> None:
    await back_to_the_desk(pilot)


async def open_ticket(pilot) -> None:
    await back_to_the_desk(pilot)
    await press_and_wait(pilot, "b", "TicketScreen")


async def on_a_working_order(pilot, key: str, screen: str) -> None:
    """Select a working order in the Orders panel and press `key`, which opens `screen`."""
    order_id = await working_order(pilot)
    await back_to_the_desk(pilot)
    app = pilot.app
    await until(pilot, lambda: order_id in app.blotter.keys)
    app.blotter.select(order_id)
    app.blotter.focus()
    await press_and_wait(pilot, key, screen)


async def open_amend(pilot) -> None:
    await on_a_working_order(pilot, "a", "AmendScreen")


async def open_detail(pilot) -> None:
    await on_a_working_order(pilot, "enter", "OrderScreen")


async def open_confirm(pilot) -> None:
    await back_to_the_desk(pilot)
    await press_and_wait(pilot, "x", "ConfirmScreen")  # cancel all: harmless to answer


async def open_drill(pilot) -> None:
    await back_to_the_desk(pilot)
    pilot.app.venues_panel.focus()
    await press_and_wait(pilot, "d", "DrillScreen")


async def open_help(pilot) -> None:
    await back_to_the_desk(pilot)
    await press_and_wait(pilot, "question_mark", "HelpScreen")


async def open_palette(pilot) -> None:
    await back_to_the_desk(pilot)
    await press_and_wait(pilot, "ctrl+p", "CommandPalette")


OPENERS: dict[str, Callable[..., Awaitable[None]]] = {
    "Screen": open_main,
    "TicketScreen": open_ticket,
    "AmendScreen": open_amend,
    "OrderScreen": open_detail,
    "ConfirmScreen": open_confirm,
    "DrillScreen": open_drill,
    "HelpScreen": open_help,
    "CommandPalette": open_palette,
}


def desk_screens() -> set[str]:
    """Every screen class in the tui package, plus Textual's palette and the main screen."""
    names = {"Screen", CommandPalette.__name__}
    for info in pkgutil.walk_packages(tui.__path__, "tui."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # a package's entry point runs its command when imported
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Screen) and cls.__module__ == module.__name__:
                names.add(name)
    return names


# -- the walk -----------------------------------------------------------------------------


async def still_answers(pilot, what: str) -> None:
    app: ProbedDesk = pilot.app
    assert app.is_running, f"{what} ended the desk"
    before = app.probes
    app.simulate_key(PROBE)  # queued behind whatever the last key started
    try:
        await until(pilot, lambda: app.probes == before + 1 or not app.is_running, tries=250)
    except AssertionError:
        raise AssertionError(f"the desk stopped answering keys after {what}") from None
    assert app.is_running, f"{what} ended the desk"


WALKS = [(name, (160, 48)) for name in sorted(OPENERS)] + [("Screen", (80, 24))]  # the tabbed desk too


@pytest.mark.parametrize(("screen_name", "size"), WALKS, ids=[f"{n}-{w}x{h}" for n, (w, h) in WALKS])
@pytest.mark.anyio
async def test_every_key_of_every_screen_leaves_the_desk_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, screen_name: str, size: tuple[int, int],
) -> None:
    monkeypatch.chdir(tmp_path)  # a palette command may save a screenshot: never into the checkout
    app = make_app(tmp_path, app_class=ProbedDesk)
    opener = OPENERS[screen_name]
    async with app.run_test(size=size) as pilot:
        await working_order(pilot)  # so every way out asks instead of quitting
        await opener(pilot)
        walk = presses(app, app.screen)
        assert walk, f"no keys found on {screen_name}"
        for press in walk:
            await working_order(pilot)
            if type(app.screen).__name__ != screen_name or len(app.screen_stack) > 2:
                await opener(pilot)  # (a quit question over a confirm is a confirm too: not ours)
            if press.widget is not None:
                widget = find(app.screen, press.widget)
                if widget is not None and widget in app.screen.focus_chain:
                    widget.focus()
                    await pilot.pause()
            await pilot.press(press.key)
            await still_answers(pilot, f"{press.key!r} on {screen_name}" + (f" in {press.widget}" if press.widget else ""))
        await app.shutdown_engine()


@pytest.mark.anyio
async def test_help_then_any_key_never_crashes(tmp_path: Path) -> None:
    # The report: ? then Escape (or ?, q, Down) killed the desk.
    app = make_app(tmp_path, app_class=ProbedDesk)
    async with app.run_test(size=(160, 48)) as pilot:
        for keys in (["escape"], ["q"], ["down", "escape"], ["question_mark"]):
            await open_help(pilot)
            await pilot.press(*keys)
            await pilot.pause()
            await still_answers(pilot, f"? then {' '.join(keys)}")
        await app.shutdown_engine()


# -- the meta-test: nothing escapes the walk -----------------------------------------------


@pytest.mark.anyio
async def test_the_walk_opens_every_screen_and_presses_every_live_key(tmp_path: Path) -> None:
    assert desk_screens() == set(OPENERS), (
        "a screen the key walk does not open (add an opener to OPENERS): "
        f"{sorted(desk_screens() - set(OPENERS))}"
    )
    app = make_app(tmp_path, app_class=ProbedDesk)
    async with app.run_test(size=(160, 48)) as pilot:
        await working_order(pilot)
        for name, opener in OPENERS.items():
            await opener(pilot)
            screen = app.screen
            walked = {(p.key, p.widget) for p in presses(app, screen)}
            walked_keys = {key for key, _ in walked}
            # What Textual itself says is live, with the focus on each focusable widget in turn.
            targets = [None, *screen.focus_chain]
            for widget in targets:
                if widget is not None:
                    widget.focus()
                    await pilot.pause()
                live = {key for key in app.active_bindings if key != PROBE}
                where = locator(screen, widget) if widget is not None else None
                missed = {key for key in live if key not in walked_keys}
                assert not missed, f"live on {name} (focus {where}) but never pressed: {sorted(missed)}"
        await app.shutdown_engine()


def test_a_new_binding_is_pressed_without_editing_this_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from tui.screens.dialogs import DrillScreen
    from tui.widgets.panels import Blotter

    monkeypatch.setattr(DrillScreen, "BINDINGS", [*DrillScreen.BINDINGS, Binding("w", "pick('wobble')", "Wobble")])
    monkeypatch.setattr(Blotter, "BINDINGS", [*Blotter.BINDINGS, ("z,ctrl+z", "app.zap", "Zap")])
    assert "w" in declared_keys(DrillScreen) and {"escape", "tab", "shift+tab"} <= declared_keys(DrillScreen)
    assert {"z", "ctrl+z", "c", "up"} <= declared_keys(Blotter)
    assert {"ctrl+q", "ctrl+c", "b", "q", PROBE} <= declared_keys(ProbedDesk)
