"""The execdesk Textual app: one Engine hosted in the app's event loop.

How the screen keeps up with the engine (DESIGN.md, TUI):

* The engine runs as tasks in Textual's own loop. The desk reads the engine's
  event stream through one bounded, lossy subscription (drops the oldest and
  counts drops), so the engine never waits on the screen.
* One frame timer (10 Hz) drains whatever arrived, applies it to the view
  model's rows (tui.view_model: the orders as the events describe them; the
  frame asks the engine for no order's state), and updates only the changed
  rows' cells by key inside one `batch_update()`; panels that are not
  displayed are skipped. Venues and market refresh at 4 Hz, the latency chart
  at 1 Hz. Never a refresh per event.
* What the operator's own keys change (a sent ticket showing PENDING_NEW, a
  venue toggle, a cancel) is drawn at once, not at the next frame.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import anyio
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import CommandPalette
from textual.containers import Horizontal, Vertical
from textual.events import Event as TextualEvent
from textual.events import Key, Resize
from textual.markup import escape
from textual.widgets import Static

from engine import Engine, Order, OrderStatus
from engine.engine import simulated_venues
from engine.errors import ExecdeskError
from engine.risk import LIMIT_NAMES
from engine.risk import load_or_create as load_risk_limits

from . import runtime
from .commands import DeskCommands
from .order_detail import OrderScreen
from .screens.dialogs import AmendScreen, ConfirmScreen, DrillScreen, HelpScreen
from .screens.ticket import TicketAlert, TicketScreen
from .ticket_model import plain
from .settings import Settings, config_dir
from .themes import DEFAULT_THEME, FALLBACK, load_themes
from .view_model import ALGORITHM_TYPES, DeskOrders, EventDigest, OrderRow, fmt_price
from .widgets.latency_chart import LatencyChart
from .widgets.live_table import LiveTable
from .widgets.panels import (
    Blotter,
    DeskFooter,
    EventLog,
    FillsTape,
    MarketPanel,
    PositionsPanel,
    StatusBar,
    VenuesPanel,
)

log = logging.getLogger("execdesk.tui")

# What the desk's own engine remembers of finished work. The library's defaults
# (100,000 orders, 200,000 ids per venue) take hours to fill at the --demo rate
# of ~1,000 orders a second (a slow venue gets a few dozen of those), so the
# desk's memory climbed all through an hour's soak. These fill within minutes,
# after which what the engine keeps stops growing. At an operator's pace 20,000
# orders is weeks; older ones are past the blotter's rows and would come from the
# journal.
DESK_REMEMBER_ORDERS = 20_000
DESK_VENUE_REMEMBER_IDS = 20_000
# Orders the engine works at once. Each worker waits out a venue's round trip
# (deep's median is 8 ms), so 10 capped the desk near 1,000 orders a second and,
# under --demo, an operator's ticket queued behind ~1,400 synthetic orders.
DESK_WORKERS = 64

FRAME_S = 0.1  # orders, fills, log, status: 10 times a second
# The desk's event queue: a frame's worth of events many times over. It is lossy (the
# engine never waits on the screen); a loss makes the desk re-read its working rows once.
EVENT_QUEUE = 50_000
SLOW_PANEL_S = 0.25  # venues, market, positions
CHART_S = 0.5  # the latency chart (plotext redraws the whole plot)
HOUSEKEEPING_S = 0.2
# After an operator's key the periodic redraws (a table batch, the chart: 10-40 ms each
# under --demo) wait this long, so the frame showing the key is not queued behind them.
KEY_FIRST_S = 0.15
KEY_FIRST_MAX_DEFER_S = 0.5  # a held key (auto-repeat) never freezes the desk longer
MAX_LOG_LINES_PER_FRAME = 20
TAPE_ROWS = 200

# Below this size (80x24 is the classic terminal) the desk shows one panel at a time
# under the orders, as tabs: ] and [ move between them.
TABBED_BELOW = (120, 40)  # columns, rows
PANELS = {"market": "Market", "venues": "Venues", "fills": "Fills", "positions": "Positions",
          "latency": "Latency", "events": "Events"}

# The screens the desk opens over itself, as the operator knows them, and how each is left.
OPEN_SCREENS: dict[type, tuple[str, str]] = {
    TicketScreen: ("a ticket", "Enter sends it, Esc closes it, ctrl+f flips its side"),
    AmendScreen: ("the amend dialog", "Enter amends, Esc closes it"),
    ConfirmScreen: ("a question", "y or n answers it"),
    DrillScreen: ("the drill dialog", "Esc closes it"),
    HelpScreen: ("the key list", "Esc closes it"),
    OrderScreen: ("the order detail", "Esc closes it"),
}


class DeskApp(App[None]):
    CSS_PATH = Path(__file__).with_name("desk.tcss")  # absolute: a subclass elsewhere finds it too
    TITLE = "execdesk"
    COMMANDS = App.COMMANDS | {DeskCommands}
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("b", "ticket('BUY')", "Buy", id="buy", tooltip="Open a buy ticket on the selected symbol"),
        Binding("s", "ticket('SELL')", "Sell", id="sell", tooltip="Open a sell ticket on the selected symbol"),
        Binding("x", "cancel_all", "Cancel all", id="cancel_all", tooltip="Cancel every working order (asks first)"),
        Binding("k", "halt", "HALT", id="halt", tooltip="Kill switch: refuse new orders and cancel everything"),
        Binding("r", "resume", "Resume", id="resume", tooltip="Resume trading after a halt (asks first)", show=False),
        Binding("1", "symbol(0)", "BTC", id="symbol1", tooltip="Select the first symbol", show=False),
        Binding("2", "symbol(1)", "ETH", id="symbol2", tooltip="Select the second symbol", show=False),
        Binding("3", "symbol(2)", "SOL", id="symbol3", tooltip="Select the third symbol", show=False),
        Binding("l", "latency_category", "Latency cat.", id="latency_category",
                tooltip="Chart the next latency category (submission, acknowledgment, execution)", show=False),
        Binding("g", "latency_venue", "Chart venue", id="latency_venue",
                tooltip="Chart the next venue (or all venues)", show=False),
        Binding("h", "latency_history", "History", id="latency_history",
                tooltip="Switch the chart between live and the saved history", show=False),
        Binding("p", "positions_by_venue", "Pos. by venue", id="positions_by_venue",
                tooltip="Show positions per venue or per symbol", show=False),
        Binding("t", "next_theme", "Theme", id="theme", tooltip="Switch to the next theme", show=False),
        Binding("right_square_bracket", "panel(1)", "Panel", id="panel.next", key_display="]",
                tooltip="Show the next panel under the orders (a small terminal shows one at a time)"),
        Binding("left_square_bracket", "panel(-1)", "Prev. panel", id="panel.previous", key_display="[",
                tooltip="Show the previous panel under the orders", show=False),
        Binding("m", "mine_only", "Mine only", id="mine",
                tooltip="Orders: only yours, or the --demo flow's too (shown dimmed)", show=False),
        Binding("question_mark", "help", "Keys", id="help", tooltip="Show every key"),
        Binding("q", "quit_desk", "Quit", id="quit", tooltip="Quit (asks first while orders work)"),
        # The Venues panel's keys, from wherever the focus is: they act on the venue it
        # has selected (the footer shows them when it has the focus).
        *(dataclasses.replace(binding, show=False) for binding in VenuesPanel.BINDINGS),
    ]

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        seed: int = 0,
        theme: str | None = None,
        demo: bool = False,
        live: bool = True,
        settings_path: Path | None = None,
        order_prefix: str | None = None,
        tune_gc: bool = False,
        risk_path: Path | None = None,
        venues: Mapping[str, Any] | None = None,
        journal_path: Path | None = None,
        on_restart: str = "stop",
        on_close: str = "cancel",
    ) -> None:
        """`venues`: what the engine trades (`execdesk --venues`); None: the built-in
        simulators. `journal_path`: the order journal (default journal.sqlite3 beside the
        settings); `on_restart`: what becomes of algorithm orders the previous run left
        working ("stop" or "resume", see engine.recovery). All ignored when an `engine`
        is given. `on_close`: what becomes of orders still working when the desk ends
        without its quit question (SIGTERM, SIGINT, a browser tab closed): "cancel" them
        or "leave" them working, journaled (algorithm parents stop with the engine)."""
        if on_close not in ("cancel", "leave"):
            raise ValueError(f"on_close must be 'cancel' or 'leave', got {on_close!r}")
        super().__init__()
        self.tune_gc = tune_gc
        self.settings_path = settings_path or config_dir() / "settings.json"
        self.settings, settings_problem = Settings.load(self.settings_path)
        self._startup_notices: list[str] = [settings_problem] if settings_problem else []
        # Where the limits came from, for the welcome line (None: the engine was given).
        self.risk_path: Path | None = None
        # Why the built-in limits run instead of the file's (None: the file's run). Said in
        # the Events log and, for as long as the desk runs, on the top bar: a notice alone
        # goes, and the operator would take the file's limits to be in force.
        self.risk_problem: str | None = None
        self._risk_file_refused = False
        if engine is None:
            profiler_path = self.settings_path.parent / "latency.json"
            # The operator's limits file (written with the defaults on the first run, so
            # it can be edited); a bad one gives the built-in limits and a notice.
            self.risk_path = risk_path or self.settings_path.parent / "risk.toml"
            if venues is None:  # built here, so the limits file can be checked against their symbols
                venues = simulated_venues(seed, remember_ids=DESK_VENUE_REMEMBER_IDS)
            listed = {symbol for venue in venues.values() for symbol in venue.instruments()}
            limits, self.risk_problem = load_risk_limits(self.risk_path, known_symbols=listed)
            # A file that is there was refused; one that is not could not be written.
            self._risk_file_refused = self.risk_path.exists()
            if self.risk_problem:
                self._startup_notices.append(self.risk_problem)
            # Every order and event on disk (engine.journal); a file that is not a journal of
            # ours stops the start (ConfigurationError), it is never overwritten.
            self.journal_path = journal_path or self.settings_path.parent / "journal.sqlite3"
            self.journal_path.parent.mkdir(parents=True, exist_ok=True)
            engine = Engine(venues, seed=seed, remember_orders=DESK_REMEMBER_ORDERS, risk=limits,
                            journal=self.journal_path, on_restart=on_restart)
            engine.profiler.autosave_path = profiler_path
        self.engine = engine
        self.seed = seed
        self.demo = demo
        self.live = live
        self.order_prefix = order_prefix or time.strftime("D%H%M%S", time.localtime())
        self.symbols = sorted({s for v in engine.venues.values() for s in v.instruments()})
        self.symbol = self.symbols[0] if self.symbols else "BTC/USD"
        self._order_seq = 0
        # The orders the blotter shows, as rows the engine's events keep up to date (the
        # desk never asks the engine for an order's state on a frame).
        self.orders = DeskOrders(routing_reason=engine.smart.routing_reason)
        self.digest = EventDigest(self.orders)
        self.mine_only = False  # the Orders panel hides the --demo flow's orders
        self.panel = "market"  # the one panel shown under the orders when tabbed
        self._dirty: set[str] = set()
        self._texts: dict[str | None, str] = {}
        self._ticket: TicketScreen | None = None  # installed once, reused (composing costs)
        self._subscription = engine.subscribe(maxsize=EVENT_QUEUE, name="desk")
        self._dropped_seen = 0  # the subscription's drops the rows have been resynced after
        # Fills that came while the desk was covered (no more than the tape shows).
        self._held_fills: deque[Any] = deque(maxlen=TAPE_ROWS)
        self._key_at = -math.inf  # monotonic time of the operator's last key
        # With tune_gc: no cycle collection while a key's effect is drawn (made at mount,
        # where the event loop is).
        self.collector_hold: runtime.CollectorHold | None = None
        self._redrawn_at: dict[str, float] = {}  # each periodic redraw's last run
        self._fills_window: deque[tuple[float, int]] = deque()
        self._orders_window: deque[tuple[float, int]] = deque()
        self._last_slow = 0.0
        self._last_chart = 0.0
        self._requested_theme = theme
        loaded = load_themes()
        self._themes = loaded.themes
        self._startup_notices.extend(loaded.problems)
        self._demo_task: Any = None
        self._engine_stopped = False
        # What went wrong while the desk closed (a save that failed): the command prints
        # it on the terminal after the screen is gone, where the operator still sees it.
        self.exit_problems: list[str] = []
        self._quit_question: ConfirmScreen | None = None
        self.on_close = on_close

    def get_theme_variable_defaults(self) -> dict[str, str]:
        # The CSS uses $buy, $sell, $breaker-* ...: defined before any theme file is read.
        return {**super().get_theme_variable_defaults(), **FALLBACK.variables}

    # -- layout ----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        # The main screen's widgets are kept by reference: while a dialog is open,
        # queries would search the dialog, and the frame timer keeps running.
        self.topbar = Static(id="topbar")
        self.tabs = Static(id="tabs")
        links = any(hasattr(venue, "session_info") for venue in self.engine.venues.values())
        self.venues_panel = VenuesPanel(links=links, id="venues")
        self.market = MarketPanel(id="market")
        self.blotter = Blotter(id="orders")
        self.tape = FillsTape(max_rows=TAPE_ROWS, id="fills")
        self.positions = PositionsPanel(id="positions")
        self.chart = LatencyChart(id="latency")
        self.detail = Static(id="detail")
        self.event_log = EventLog(id="events")
        self.status_bar = StatusBar(id="status")
        self.footer = DeskFooter()
        yield self.topbar
        yield self.tabs
        with Horizontal(id="upper") as self._upper:
            yield self.venues_panel
            yield self.market
        yield self.blotter
        with Horizontal(id="lower"):
            yield self.tape
            with Vertical(id="right"):
                yield self.positions
                yield self.chart
        yield self.detail
        yield self.event_log
        yield self.status_bar
        yield self.footer

    async def on_mount(self) -> None:
        for theme in self._themes.values():
            self.register_theme(theme)
        self._apply_theme(self._requested_theme or self.settings.theme or DEFAULT_THEME, remember=False)
        for notice in self._startup_notices:
            self.notify(notice, severity="warning", timeout=8)
        self.market.symbol = self.symbol
        self.set_class(True, f"-panel-{self.panel}")
        self._fit(self.size.width, self.size.height)
        self._title_orders()
        await self.engine.start(num_workers=DESK_WORKERS)
        self.chart.venues = list(self.engine.venues)
        self.draw_frame()
        self.draw_slow_panels()
        self.chart.redraw(self.engine)
        self.set_interval(FRAME_S, self._after_keys(self.draw_frame), name="frame")
        self.set_interval(SLOW_PANEL_S, self._after_keys(self.draw_slow_panels), name="panels")
        self.set_interval(CHART_S, self._after_keys(self._chart), name="chart")
        if self.live:
            self.set_interval(HOUSEKEEPING_S, self.housekeep, name="housekeeping")
        venues = ", ".join(self.engine.venues)
        self.event_log.write(
            f"Ready on {venues} ({'simulated' if self.live else 'frozen'} markets). "
            f"Press b to buy or s to sell {self.symbol}: the ticket opens at your side's touch, "
            "Enter sends it. 1/2/3 pick a symbol, ? shows every key, ctrl+p finds any action."
            + (" ] shows the next panel." if self.tabbed else ""),
        )
        self.event_log.write(self._risk_line())
        recovery = self.engine.recovery
        if recovery is not None and recovery.top_level:
            # What the last run left open is on the blotter again, as the engine has it now.
            for oid, order_type in recovery.top_level.items():
                result = self.engine.order_status_or_none(oid)
                if result is not None:
                    self.orders.track(oid, order_type, mine=True, symbol=result.symbol, side=result.side,
                                      quantity=result.quantity, price=result.price)
            self.orders.resync(self.engine.order_status_or_none)
            self._dirty.update(recovery.top_level)
            self.draw_frame()
        if recovery is not None and (recovery.orders or recovery.parents_stopped or recovery.parents_resumed
                                     or recovery.halted):
            self.notify(f"Recovered from the journal: {recovery.summary()}",
                        severity="warning" if recovery.halted or recovery.unresolved else "information", timeout=12)
        if self.demo:
            self._start_demo()
        self.blotter.focus()
        if self.tune_gc:
            runtime.tune_process()
            loop = asyncio.get_running_loop()
            self.collector_hold = runtime.CollectorHold(
                KEY_FIRST_S, KEY_FIRST_MAX_DEFER_S, call_later=lambda delay, release: loop.call_later(delay, release))

    # -- themes --------------------------------------------------------------------------------
    def _apply_theme(self, name: str, *, remember: bool = True) -> None:
        if name not in self._themes:
            known = ", ".join(sorted(self._themes))
            self.notify(f"unknown theme {name!r}; using {DEFAULT_THEME} (themes: {known})",
                        severity="warning", timeout=8)
            name = DEFAULT_THEME
        self.theme = name
        if self.is_mounted(self.blotter) if hasattr(self, "blotter") else False:
            self._recolour()
        if remember:
            self.settings.theme = name
            problem = self.settings.save(self.settings_path)
            if problem:
                self.notify(problem, severity="warning")

    def _recolour(self) -> None:
        """Tables hold concrete colours: redraw every row in the new theme's."""
        for table in (self.venues_panel, self.market, self.blotter, self.positions):
            table.forget()
        self.tape.redraw(self._clock_text)
        self._dirty.update(self.orders)
        self.draw_frame()
        self.draw_slow_panels()

    def action_next_theme(self) -> None:
        names = sorted(self._themes)
        current = self.theme if self.theme in names else names[0]
        self.set_desk_theme(names[(names.index(current) + 1) % len(names)])

    def set_desk_theme(self, name: str) -> None:
        self._apply_theme(name)
        self.notify(f"theme: {self.theme}", timeout=2)

    @property
    def desk_themes(self) -> list[str]:
        return sorted(self._themes)

    # -- panels: all of them on a large terminal, one at a time (tabs) on a small one -----------
    @property
    def tabbed(self) -> bool:
        return self.has_class("-tabbed")

    def on_resize(self, event: Resize) -> None:
        self._fit(event.size.width, event.size.height)

    def _fit(self, width: int, height: int) -> None:
        tabbed = width < TABBED_BELOW[0] or height < TABBED_BELOW[1]
        if tabbed == self.tabbed:
            return
        self.set_class(tabbed, "-tabbed")
        # Tabbed, every panel takes the one place under the orders (Venues and Market
        # sit above them on a large terminal).
        desk = self._upper.parent
        if tabbed:  # tabs, orders, the selected order's line, the panel shown, status
            desk.move_child(self.detail, after=self.blotter)
            desk.move_child(self._upper, after=self.detail)
        else:  # venues and market, orders, fills and the rest, the selected order, events
            desk.move_child(self._upper, before=self.blotter)
            desk.move_child(self.detail, before=self.event_log)
        self.footer.compact = tabbed
        self.footer.show_command_palette = not tabbed  # ctrl+p: in the welcome line and ?
        self.refresh_bindings()  # ] and [ show in the footer only when tabbed
        self._update_tabs()
        self.call_after_refresh(self._panels_shown)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "panel":
            return self.tabbed
        return True

    def action_panel(self, step: int) -> None:
        names = list(PANELS)
        self.show_panel(names[(names.index(self.panel) + step) % len(names)])

    def show_panel(self, name: str) -> None:
        """The panel shown under the orders when tabbed (a large terminal shows them all)."""
        if name not in PANELS:
            raise ValueError(f"unknown panel {name!r} (panels: {', '.join(PANELS)})")
        if name != self.panel:
            self.set_class(False, f"-panel-{self.panel}")
            self.panel = name
            self.set_class(True, f"-panel-{name}")
            self._update_tabs()
        self.call_after_refresh(self._panels_shown)
        if name == "venues" and self.tabbed:
            self.venues_panel.focus()  # its keys (v, d) work on its selected row

    def _reveal(self, name: str) -> None:
        """A key about a panel brings that panel into view when tabbed (p, l, g, h)."""
        if self.tabbed and self.panel != name:
            self.show_panel(name)

    def _panels_shown(self) -> None:
        """Panels that just came into view catch up at once, not at their next tick."""
        desk = self.screen_stack[0]
        focused = desk.focused
        panels = self._panel_widgets()
        hidden = self.tabbed and focused in panels.values() and focused is not panels[self.panel]
        if focused is None or hidden:
            # The focus never stays on (or is lost with) a hidden panel: back to the orders.
            desk.set_focus(self.blotter)
        if self.desk_covered:
            return
        self.draw_slow_panels()
        self._chart()
        self.draw_frame()

    def _panel_widgets(self) -> dict[str, Any]:
        return {"market": self.market, "venues": self.venues_panel, "fills": self.tape,
                "positions": self.positions, "latency": self.chart, "events": self.event_log}

    def _update_tabs(self) -> None:
        if not self.tabbed:
            return
        names = "  ".join(f"[b reverse] {label} [/]" if key == self.panel else f" {label} "
                          for key, label in PANELS.items())
        alert = self._venue_alert()
        self._set_text(self.tabs, names + (f"  [b $error]{escape(alert)}[/]" if alert else ""))

    def _venue_alert(self) -> str | None:
        """Venues out of routing (disabled, breaker not closed), for lines that must say so."""
        router = self.engine.router
        out = []
        for name in router.exchanges:
            state = router.breaker(name).state.value
            if not router.is_enabled(name):
                out.append(f"{name} OFF")
            elif state != "CLOSED":
                out.append(f"{name} {state.replace('_', '-')}")
        return "⚠ " + " · ".join(out) if out else None

    def _risk_line(self) -> str:
        """The limits every order passes, said once at the start (and where to change them)."""
        risk = self.engine.risk
        if risk is None:
            return "RISK limits are OFF: no order is checked before it goes to a venue."
        limits = risk.limits
        per_symbol = ", ".join(f"{symbol} {lim.max_quantity:g}" for symbol, lim in limits.symbols.items()
                               if lim.max_quantity is not None)
        if self.risk_problem:
            where = f": the built-in ones are in force, {self._risk_file_fate()} ({self.risk_problem}). They allow"
        else:
            where = f" (from {self.risk_path}):" if self.risk_path else ":"
        return (f"RISK limits{where} per order at most {limits.max_order_notional:,.0f} notional"
                + (f" and {per_symbol}" if per_symbol else "")
                + f", within {limits.price_band_pct:g}% of the mid; {limits.max_open_orders:,} open orders,"
                f" {limits.max_orders_per_s:,} orders/s, position {limits.max_position_notional:,.0f} per symbol.")

    def _risk_file_fate(self, *, short: bool = False) -> str:
        """What became of the limits file the built-in limits stand in for."""
        name = self.risk_path.name if self.risk_path else "the limits file"
        if self._risk_file_refused:
            return f"{name} refused" if short else f"{name} was refused"
        return f"{name} not written" if short else f"{name} could not be written"

    def _risk_marker(self) -> str:
        """The top bar's lasting word that the built-in limits stand in for the operator's file."""
        if not self.risk_problem:
            return ""
        if self.tabbed:  # 80 columns: the file's name could push it off the line
            fate = "file refused" if self._risk_file_refused else "file not written"
            return f"  [b $warning]RISK: built-in, {fate}[/]"
        return f"  [b $warning]RISK: built-in limits ({escape(self._risk_file_fate(short=True))})[/]"

    # -- the Orders panel: everyone's, or only the operator's --------------------------------------
    def action_mine_only(self) -> None:
        self.mine_only = not self.mine_only
        blotter = self.blotter
        selected = blotter.selected_key()
        blotter.clear()
        orders = self.orders
        shown = [oid for oid in orders if orders.is_mine(oid)] if self.mine_only else list(orders)
        self._update_orders(shown[-blotter.max_rows:])  # each row lands by its rank
        if selected is not None:
            blotter.select(selected)  # still the operator's choice, if it is still shown
        self._title_orders()
        self.notify("Orders: only yours" if self.mine_only else "Orders: yours and the demo flow's (dimmed)",
                    timeout=2)

    def _title_orders(self) -> None:
        title = "Orders"
        if self.mine_only:
            title += " · only yours (m: all)"
        elif self.demo:
            title += " · demo flow dimmed (m: only yours)"
        self.blotter.border_title = title

    def action_order_detail(self) -> None:
        if self._already_open("order detail"):
            return
        order_id = self._selected_order()
        if order_id is None:
            return
        self.push_screen(OrderScreen(order_id, self.engine, mine=self.orders.is_mine(order_id),
                                     order_type=self.orders.type_of(order_id)))

    # -- the frame: events in, cells out ----------------------------------------------------------
    def draw_frame(self) -> None:
        """Apply the events since the last frame to the view model and redraw what changed
        (the frame timer calls it; a test calls it to see the next frame at once)."""
        # The engine's clock (real on the desk): rates and summaries follow market time,
        # so a desk on a virtual clock (tests, snapshots) shows the same figures every run.
        now = self.engine.clock.now()
        subscription = self._subscription
        news = self.digest.digest(subscription.drain(), now)
        if subscription.dropped != self._dropped_seen:
            # Events were lost, so a row may miss its last change: read the working ones once.
            self._dropped_seen = subscription.dropped
            news.rows |= self.orders.resync(self.engine.order_status_or_none)
        self._count(self._fills_window, now, len(news.fills))
        self._count(self._orders_window, now, news.submitted)
        self._dirty.update(news.rows)
        tape = self.tape
        fills = news.fills
        if self._held_fills or self.desk_covered or not tape.display:
            self._held_fills.extend(fills)
            if self.desk_covered:
                # A ticket or dialog is on top: the desk behind is hidden or dimmed, and
                # each change to it re-composed the whole screen under it (~20 ms a frame;
                # Textual counts even a hidden screen as visible). Orders and fills are
                # drawn when the desk shows again; the log's lines are written at once,
                # for the dialogs' dimmed view. The ticket says a halt or a venue out of
                # routing itself (_ticket_alert).
                self._write_log(news.lines)
                return
            # The Fills tab is not shown (a small terminal): the tape catches up when it is.
            fills = list(self._held_fills) if tape.display else []
            if tape.display:
                self._held_fills.clear()
        with self.batch_update():
            dirty = self._dirty
            if dirty:
                self._update_orders(dirty)
                dirty.clear()
            if fills:
                tape.add_fills(fills[-tape.max_rows:], self._clock_text)
            self._write_log(news.lines)
            self._update_status()

    async def on_event(self, event: TextualEvent) -> None:
        if isinstance(event, Key):
            self._key_at = time.monotonic()
            if self.collector_hold is not None:
                self.collector_hold.key_pressed()
        await super().on_event(event)

    def _after_keys(self, redraw: Callable[[], None]) -> Callable[[], None]:
        """`redraw` for a timer: skipped (the next tick does it) just after a key, unless
        it has already waited `KEY_FIRST_MAX_DEFER_S`."""
        name = redraw.__name__
        self._redrawn_at[name] = time.monotonic()

        def tick() -> None:
            now = time.monotonic()
            if now - self._key_at < KEY_FIRST_S and now - self._redrawn_at[name] < KEY_FIRST_MAX_DEFER_S:
                return
            self._redrawn_at[name] = now
            redraw()

        return tick

    def _write_log(self, log_lines: list[str]) -> None:
        if not log_lines:
            return
        events_log = self.event_log
        for line in log_lines[:MAX_LOG_LINES_PER_FRAME]:
            events_log.write(f"{self._clock_text(self.engine.clock.now())}  {line}")
        if len(log_lines) > MAX_LOG_LINES_PER_FRAME:
            events_log.write(f"… and {len(log_lines) - MAX_LOG_LINES_PER_FRAME} more this frame")

    @staticmethod
    def _count(window: deque[tuple[float, int]], now: float, n: int) -> None:
        window.append((now, n))
        while window and window[0][0] < now - 1.0:
            window.popleft()

    def _update_orders(self, ids: Iterable[str]) -> None:
        for order_id in ids:
            self._show_order(order_id)
        selected = self.blotter.selected_key()
        if selected in ids:
            self._show_detail(selected)

    def _show_order(self, order_id: str) -> None:
        """Draw one order's row from the view model (unless the Orders panel hides it)."""
        row = self.orders.row(order_id)
        if row is None or (self.mine_only and not row.mine):
            return
        self.blotter.show(row)

    def _update_status(self) -> None:
        engine = self.engine
        fills_s = sum(n for _, n in self._fills_window)
        orders_s = sum(n for _, n in self._orders_window)
        orders = self.orders
        dropped = self._subscription.dropped
        halted = engine.halted_reason
        # Both lines fit 80 columns: the symbol sits on the top line, a halt's reason
        # (the operator's own words: never markup) on this one.
        state = f"[b reverse $halted] HALTED: {escape(halted)} [/]" if halted else "[b $success]● TRADING[/]"
        working = f"working {orders.working_count:>4}"
        if self.demo:
            working += f" (mine {len(orders.mine_working())})"
        self._set_text(self.status_bar,
            f"{state}  orders/s {orders_s:>4}  fills/s {fills_s:>4}  {working}"
            + self._refusals_text()
            + (f"  [dim]dropped events {dropped}[/]" if dropped else "")
        )
        self._set_text(self.topbar,
            f"[b]execdesk[/]  {self._clock_text(engine.clock.now())}  [b]{self.symbol}[/]  seed {self.seed}"
            + ("  [b $warning]DEMO[/]" if self.demo else "")
            + ("   [b reverse $halted] ■ HALTED: press r to resume [/]" if halted else "")
            + self._risk_marker()
            + self._live_marker()
        )
        self.topbar.set_class(bool(halted), "halted")

    def _live_marker(self) -> str:
        """Venues trading real money (a CCXT venue out of its sandbox): said at all times."""
        live = [name for name, venue in self.engine.venues.items() if getattr(venue, "live", False) is True]
        return f"  [b reverse $error] LIVE: {escape(', '.join(live))} [/]" if live else ""

    def _refusals_text(self) -> str:
        """Orders the risk limits refused since the start: the total, and on a wide
        desk the count per limit (the reasons are on each order's row and in Events)."""
        risk = self.engine.risk
        if risk is None:
            return "  [b $warning]risk limits OFF[/]"
        refusals = risk.refusals
        total = sum(refusals.values())
        if not total:
            return ""
        text = f"  [b $error]risk refused {total:,}[/]"
        if not self.tabbed:
            text += " (" + ", ".join(f"{name.replace('_', ' ')} {refusals[name]:,}"
                                     for name in LIMIT_NAMES if refusals.get(name)) + ")"
        return text

    def _set_text(self, widget: Static, text: str) -> None:
        """Update a fixed-size line only when its text changed, and without a re-layout:
        Static.update lays the whole screen out again by default, which under --demo
        made most frames a full compositor pass."""
        if self._texts.get(widget.id) != text:
            self._texts[widget.id] = text
            widget.update(text, layout=False)

    def _clock_text(self, ts: float) -> str:
        return time.strftime("%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}"

    @property
    def desk_covered(self) -> bool:
        """A ticket, dialog, help or the palette is on top of the desk."""
        return len(self.screen_stack) > 1

    def _already_open(self, what: str) -> bool:
        """True, and the operator told why `what` does not open, while a ticket or dialog is open.

        Tickets and dialogs open one at a time, over the desk. The palette reaches every
        desk action from inside any of them (it runs its command once it has closed
        itself), and a ticket over the ticket would be the same installed screen twice:
        its Enter sends one order and leaves a ticket up. Quitting is the exception: it
        asks over anything (action_quit_desk).
        """
        screen = next((s for s in reversed(self.screen_stack[1:]) if not isinstance(s, CommandPalette)), None)
        if screen is None:
            return False
        name, how = OPEN_SCREENS.get(type(screen), ("a dialog", "Esc closes it"))
        self.notify(f"{what} not opened: {name} is open ({how})", severity="warning", timeout=4)
        return True

    def draw_slow_panels(self) -> None:
        if self.desk_covered:
            return
        with self.batch_update():
            for panel in (self.venues_panel, self.market, self.positions):
                if panel.display:
                    panel.refresh_from(self.engine)
            self._update_tabs()  # its venue alert stands in for the hidden Venues panel

    def _chart(self) -> None:
        chart = self.chart
        if chart.display and not self.desk_covered:
            chart.redraw(self.engine)

    async def housekeep(self) -> None:
        try:
            await self.engine.housekeeping()
        except Exception as exc:  # an edge failed: tell the operator, keep the desk up
            self.engine.report_error("housekeeping", exc)

    # -- detail of the selected order ------------------------------------------------------------
    def on_live_table_highlighted(self, event: LiveTable.Highlighted) -> None:
        if event.table is self.blotter:
            self._show_detail(event.key)

    def _show_detail(self, order_id: str | None) -> None:
        """The selected order's line under the orders, from its row (Enter shows everything)."""
        widget = self.detail
        if order_id is None:
            self._set_text(widget, "")
            return
        row = self.orders.row(order_id)
        if row is None:
            self._set_text(widget, f"{escape(order_id)}: no longer tracked by the desk (Enter shows the engine's record)")
            return
        lines = [f"[b]{escape(order_id)}[/] {row.status.value}  filled {row.filled:g}/{row.quantity:g}"
                 + (f"  avg {row.average_price:,.2f}" if row.average_price else "")
                 + (f"  reason: {escape(row.cause)}" if row.cause else "")]
        arrival = row.arrival_price
        if arrival:
            slip = row.slippage_bps
            lines[0] += f"  arrival {arrival:,.2f}" + (f"  slippage {slip:+.2f} bps" if slip is not None else "")
        children = list(row.children.values()) if row.children else []
        if children:
            shown = children[-4:]
            lines.append("children: " + "  ".join(
                f"{c.order_id.rsplit('.', 1)[-1]}:{c.status.value[:4]} {c.filled:g}/{c.quantity or 0:g}@{c.venue or '?'}"
                for c in shown) + (f"  (+{len(children) - len(shown)} earlier)" if len(children) > len(shown) else ""))
        if row.fills:
            lines.append("fills: " + "  ".join(f"{f.quantity:g}@{f.price:,.2f} {f.exchange_id}" for f in row.fills))
        self._set_text(widget, "\n".join(lines))

    # -- orders ------------------------------------------------------------------------------------
    def next_order_id(self) -> str:
        self._order_seq += 1
        return f"{self.order_prefix}-{self._order_seq}"

    def action_ticket(self, side: str) -> None:
        if self._already_open(f"{side.lower()} ticket"):
            return
        if self.engine.halted_reason:
            self.notify(f"trading is halted ({self.engine.halted_reason}): press r to resume first",
                        severity="error")
            return
        remembered = self.settings.ticket
        values = {**remembered, "side": side, "symbol": self.symbol}
        same = remembered.get("symbol") == self.symbol and remembered.get("side") == side
        if not same or not remembered.get("price"):
            # A price remembered for another symbol or side is a trap (a sell at the
            # bid crosses): start at this side's touch instead.
            touch = self._touch(self.symbol, side)
            values["price"] = plain(touch) if touch else ""
        order_id = self.next_order_id()
        screen = self._ticket
        if screen is None:
            screen = self._ticket = TicketScreen(values, self.symbols, list(self.engine.venues), order_id,
                                                 blink=self.live, quote=self._quote, alert=self._ticket_alert,
                                                 touch=self._touch, risk=self.engine.check_risk,
                                                 instrument=self.engine.smart.instrument)
            self.install_screen(screen, name="ticket")
        else:
            screen.prepare(values, order_id)
        self.push_screen("ticket", lambda sent, s=screen: self._ticket_closed(s, sent))

    def _touch(self, symbol: str, side: str) -> float | None:
        """Where a ticket's price starts: the best bid for a buy, the best ask for a sell
        (passive, never through the market), over every venue routing can use."""
        book = self.engine.smart.merged_book(symbol, depth=1)
        if book is None:
            return None
        return book.best_bid if side == "BUY" else book.best_ask

    def _quote(self, symbol: str) -> str | None:
        """Best bid / ask over every venue routing can use, for the ticket's title line."""
        book = self.engine.smart.merged_book(symbol, depth=1)
        if book is None or not book.bids or not book.asks:
            return None
        bid, ask = book.bids[0].price, book.asks[0].price
        spread = (ask - bid) / ((ask + bid) / 2) * 1e4
        return f"bid {fmt_price(bid)} · ask {fmt_price(ask)} · {spread:.1f} bps"

    def _ticket_alert(self) -> TicketAlert | None:
        """What the desk hidden behind an open ticket shows loudly: a halt, venues out of routing."""
        engine = self.engine
        if engine.halted_reason:
            return TicketAlert(f"HALTED ({engine.halted_reason}): orders are refused. Esc, then r resumes trading.",
                               refuses=True)
        router = engine.router
        out = []
        for name in router.exchanges:
            state = router.breaker(name).state.value
            if not router.is_enabled(name):
                out.append(f"{name} OFF")
            elif state != "CLOSED":
                out.append(f"{name} breaker {state.replace('_', '-')}")
        return TicketAlert("Venues: " + " · ".join(out)) if out else None

    def _ticket_closed(self, screen: TicketScreen, sent: tuple[Order, str | None] | None) -> None:
        if sent is None:
            # Abandoned: what was typed may be half-done or invalid ("1e120.1"), and the
            # next ticket must not open with it. Only a sent ticket is remembered.
            self._order_seq -= 1  # the id was not used
            return
        self.settings.ticket = dict(screen.values)
        problem = self.settings.save(self.settings_path)
        if problem:
            self.notify(problem, severity="warning")
        order, venue = sent
        self.send_order(order, venue)

    def track_order(self, order: Order, *, mine: bool = True, sent: str = "") -> OrderRow:
        """Show this order's life in the blotter: the operator's, or (mine=False) --demo's."""
        return self.orders.track(order.id, order.type.value, mine=mine, symbol=order.symbol, side=order.side,
                                 quantity=order.quantity, price=order.price, sent=sent)

    @work(group="orders")
    async def send_order(self, order: Order, venue: str | None = None) -> None:
        """Send an order and show it at once as PENDING_NEW."""
        row = self.track_order(order, sent=f"sent to {venue or 'smart routing'}")
        row.venue = venue
        blotter = self.blotter
        blotter.show(row)
        blotter.select(order.id)
        try:
            await self.engine.submit(order, venue)
        except (ExecdeskError, ValueError) as exc:
            self.notify(f"{order.id} not sent: {exc}", severity="error")
            self.event_log.write(f"NOT SENT {order.id}: {exc}")
            self.orders.refuse(order.id, str(exc))
            blotter.show(row)
            return
        self._dirty.add(order.id)

    def _selected_order(self) -> str | None:
        key = self.blotter.selected_key()
        if key is None:
            self.notify("select an order in the Orders panel first", severity="warning")
        return key

    async def action_cancel_selected(self) -> None:
        order_id = self._selected_order()
        if order_id is None:
            return
        result = await self.engine.cancel(order_id)
        if result.status is OrderStatus.REJECTED:
            self.notify(f"cancel {order_id}: {result.reason}", severity="warning")
        else:
            self.notify(f"cancel sent for {order_id}", timeout=2)
        self._dirty.add(order_id)
        self.draw_frame()

    def action_amend_selected(self) -> None:
        if self._already_open("amend"):
            return
        order_id = self._selected_order()
        if order_id is None:
            return
        result = self.engine.order_status_or_none(order_id)
        if result is None or result.status.is_final:
            self.notify(f"{order_id} is not working: nothing to amend", severity="warning")
            return
        order_type = self.orders.type_of(order_id)
        if order_type in ALGORITHM_TYPES or self.engine.scheduler.parent(order_id) is not None:
            # Said before the dialog opens, not after the operator has filled it in.
            self.notify(f"{order_id} is a {order_type or 'algorithm'} parent: it cannot be amended "
                        "(its algorithm sends and prices the child orders); cancel it (c) and send a new one",
                        severity="warning", timeout=6)
            return
        self.push_screen(AmendScreen(order_id, result.quantity, result.price, symbol=result.symbol or "",
                                     side=result.side),
                         lambda change, oid=order_id: self._amend(oid, change))

    @work(group="orders")
    async def _amend(self, order_id: str, change: tuple[float | None, float | None] | None) -> None:
        if change is None:
            return
        quantity, price = change
        result = await self.engine.amend(order_id, quantity=quantity, price=price)
        if result.status is OrderStatus.REJECTED:
            self.notify(f"amend {order_id}: {result.reason}", severity="error")
        else:
            self.notify(f"amended {order_id}", timeout=2)
        self._dirty.add(order_id)
        self.draw_frame()

    def action_cancel_all(self) -> None:
        if self._already_open("cancel all"):
            return
        # The engine's own list: cancel all cancels every order it works, the ones the
        # blotter has forgotten too.
        n = len(self.engine.working())
        if not n:
            self.notify("cancel all: nothing is working", timeout=3)
            return
        what = "the 1 working order" if n == 1 else f"all {n} working orders"
        self.push_screen(ConfirmScreen(f"Cancel {what}?"), self._cancel_all_confirmed)

    @work(group="orders")
    async def _cancel_all_confirmed(self, yes: bool | None) -> None:
        if not yes:
            return
        count = await self.engine.cancel_all("cancel all by operator")
        self.notify(f"cancel all: {count} orders asked to cancel")
        self._dirty.update(self.orders)
        self.draw_frame()

    @work(group="orders")
    async def action_halt(self) -> None:
        report = await self.engine.halt("kill switch pressed by operator")
        self.notify(f"HALTED: {report.summary()}; new orders refused until resume (r)", severity="error",
                    timeout=10 if report.failed else 5)
        self._dirty.update(self.orders)
        self.draw_frame()

    def action_resume(self) -> None:
        if not self.engine.halted_reason:
            self.notify("trading is not halted", timeout=2)
            return
        if self._already_open("resume"):
            return
        self.push_screen(ConfirmScreen("Resume trading?"), self._resume_confirmed)

    def _resume_confirmed(self, yes: bool | None) -> None:
        if yes:
            self.engine.resume()
            self.notify("trading resumed")
            self.draw_frame()

    # -- venues --------------------------------------------------------------------------------------
    def selected_venue(self) -> str | None:
        return self.venues_panel.selected_key() or next(iter(self.engine.venues), None)

    def _venue_in_view(self, key: str) -> str | None:
        """The venue `key` (v, d) acts on: the one selected in the Venues panel, when the
        panel is in view. On a small terminal with another tab shown the operator cannot
        see which that is: the Venues tab comes into view, and the key waits for a choice."""
        if self.tabbed and self.panel != "venues":
            self.show_panel("venues")
            self.notify(f"{key}: select a venue first (Venues is shown now: ↑/↓, then {key})",
                        severity="warning", timeout=4)
            return None
        return self.selected_venue()

    def action_toggle_venue(self, venue: str | None = None) -> None:
        venue = venue or self._venue_in_view("v")
        if venue is None:
            return
        enabled = self.engine.toggle_venue(venue)
        self.notify(f"{venue} {'enabled' if enabled else 'disabled'}: "
                    f"{'orders may route there' if enabled else 'no new orders go there'}", timeout=3)
        self.draw_frame()
        self.draw_slow_panels()

    def action_drill(self, venue: str | None = None) -> None:
        if self._already_open("fault drill"):
            return
        venue = venue or self._venue_in_view("d")
        if venue is None:
            return
        self.push_screen(DrillScreen(venue), lambda choice, v=venue: self._drill(v, choice))

    def _drill(self, venue: str, choice: tuple[str, float] | None) -> None:
        if choice is None:
            return
        kind, seconds = choice
        sim = self.engine.venues[venue]
        try:
            if kind == "outage":
                sim.start_outage(seconds)
            elif kind == "latency":
                sim.start_latency_spike(0.25, seconds)
            else:
                self._error_burst(venue, seconds)
        except (AttributeError, ExecdeskError, ValueError) as exc:
            self.notify(f"drill on {venue} failed: {exc}", severity="error")
            return
        self.event_log.write(
            f"{self._clock_text(self.engine.clock.now())}  DRILL {venue}: {kind} for {seconds:g} s "
            "(watch its breaker open, half-open and close)")

    @work(group="drill")
    async def _error_burst(self, venue: str, seconds: float) -> None:
        sim = self.engine.venues[venue]
        before = sim.faults
        sim.set_faults(error_rate=0.6)
        try:
            # The drill lasts in the operator's time, whatever clock the engine keeps.
            await anyio.sleep(seconds)
        finally:
            sim.faults = before

    def action_breaker(self, venue: str, how: str) -> None:
        breaker = self.engine.router.breaker(venue)
        # The breaker says "forced open by operator" itself: the desk adds where from.
        source = "from the desk's palette"
        {"open": lambda: breaker.force_open(source),
         "closed": lambda: breaker.force_closed(source),
         "release": lambda: breaker.release_force(source)}[how]()
        self.draw_slow_panels()

    # -- view ------------------------------------------------------------------------------------------
    def action_symbol(self, index: int) -> None:
        if 0 <= index < len(self.symbols):
            self.symbol = self.symbols[index]
            self.market.symbol = self.symbol
            self.draw_slow_panels()
            self._update_status()

    def action_latency_category(self) -> None:
        self._reveal("latency")
        chart = self.chart
        chart.next_category()
        chart.redraw(self.engine)

    def action_latency_venue(self) -> None:
        self._reveal("latency")
        chart = self.chart
        chart.next_venue()
        chart.redraw(self.engine)

    def action_latency_history(self) -> None:
        self._reveal("latency")
        chart = self.chart
        path = self.engine.profiler.autosave_path
        problem = chart.toggle_history(Path(path) if path else None)
        if problem:
            self.notify(problem, severity="warning")
        chart.redraw(self.engine)

    def action_positions_by_venue(self) -> None:
        self._reveal("positions")
        panel = self.positions
        panel.by_venue = not panel.by_venue
        for key in panel.keys:
            panel.drop(key)
        panel.refresh_from(self.engine)

    def action_help(self) -> None:
        if self._already_open("key list"):
            return
        self.push_screen(HelpScreen(self.key_map()))

    def key_map(self) -> list[tuple[str, str, str]]:
        """(key, action, what it does) for every binding the desk defines."""
        rows = []
        seen = set()
        # The desk's own bindings, a subclass's included (its BINDINGS do not replace ours).
        desk = [vars(klass).get("BINDINGS", []) for klass in reversed(type(self).__mro__)
                if issubclass(klass, DeskApp)]
        sources = [*desk, *(source.BINDINGS for source in (VenuesPanel, Blotter, TicketScreen, DrillScreen))]
        for bindings in sources:
            for binding in bindings:
                if not isinstance(binding, Binding) or binding.id in seen:
                    continue
                seen.add(binding.id)
                key = binding.key_display or binding.key.replace("question_mark", "?")
                rows.append((key, binding.description, binding.tooltip))
        rows.append(("ctrl+p", "Palette", "Find any action by name (place order, toggle venue, drill, theme...)"))
        rows.append(("tab", "Next panel", "Move focus between panels"))
        return rows

    # -- demo and quitting ------------------------------------------------------------------------------
    def _start_demo(self) -> None:
        from .demo import run_demo

        self._demo_task = self.run_worker(run_demo(self), group="demo", exclusive=True)

    def action_quit_desk(self) -> None:
        """Every way out (q, ctrl+q, ctrl+c, the palette's Quit) asks first while orders work.

        It asks over an open ticket or dialog too: the way out is never blocked, and its
        question is a new screen each time, never pushed twice."""
        if self._quit_question is not None and self._quit_question in self.screen_stack:
            return  # already asking: a second press neither stacks a question nor skips it
        # The engine's own list, not the desk's bounded bookkeeping: an order the blotter
        # has forgotten still works at a venue.
        n = len(self.engine.working())
        if n:
            what = "1 order is working. Cancel it" if n == 1 else f"{n} orders are working. Cancel them"
            self._quit_question = ConfirmScreen(f"{what} and quit?")
            self.push_screen(self._quit_question, self._quit_confirmed)
        else:
            self._quit_confirmed(True)

    async def action_quit(self) -> None:
        # Textual binds ctrl+q (a priority binding) and the palette's "Quit" to this
        # action, which exits at once: on a desk it must ask like q.
        self.action_quit_desk()

    def action_help_quit(self) -> None:
        # Textual 8.2 binds ctrl+c to a hint naming the quit key; an operator's ctrl+c
        # means "get me out", so it gets the same question (an Input still copies with it).
        self.action_quit_desk()

    @work(group="quit", exclusive=True)
    async def _quit_confirmed(self, yes: bool | None) -> None:
        if not yes:
            return
        await self.shutdown_engine(cancel=True)  # the operator said so
        self.exit()

    async def on_unmount(self) -> None:
        # However the app ends (q, ctrl+c, a test), the engine stops and the profiler saves.
        if self.collector_hold is not None:
            self.collector_hold.close()  # a key may have held it just before
        await self.shutdown_engine()

    async def shutdown_engine(self, cancel: bool | None = None) -> None:
        """Stop the engine cleanly: cancel what works (`cancel`; None: as on_close says),
        stop workers, save the profiler, flush the journal."""
        if self._engine_stopped:
            return
        self._engine_stopped = True
        if self._demo_task is not None:
            self._demo_task.cancel()
        try:
            left = self.engine.working()
            if cancel is None:
                cancel = self.on_close == "cancel"
            if left and not cancel:
                # The journal has them; the next start reconciles them with their venues.
                log.warning("desk closing: %d working order(s) left working (on_close=leave)", len(left))
            elif left:
                await self.engine.cancel_all("desk closing")
            await self.engine.stop(drain=False, timeout=2.0)
        except Exception as exc:  # the desk is closing whatever failed: say what did
            log.exception("engine stop failed")
            problem = self._stop_problem(exc)
            self.exit_problems.append(problem)
            self.notify(problem, severity="error")

    def _stop_problem(self, exc: Exception) -> str:
        """What a failure while the engine stopped means to the operator."""
        path = self.engine.profiler.autosave_path
        if isinstance(exc, OSError) and path is not None and str(path) in (str(exc.filename), str(exc.filename2)):
            return f"latency history not saved to {path}: {exc.strerror or exc}"
        return f"engine stop failed: {type(exc).__name__}: {exc}"
