"""The command palette (ctrl+p): every desk action by name, following the desk's state."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from .app import DeskApp


class DeskCommands(Provider):
    def _commands(self) -> list[tuple[str, Any, str]]:
        app: DeskApp = self.app  # type: ignore[assignment]
        engine = app.engine
        cmds: list[tuple[str, Any, str]] = [
            ("Place buy order", partial(app.action_ticket, "BUY"), "Open a buy ticket"),
            ("Place sell order", partial(app.action_ticket, "SELL"), "Open a sell ticket"),
            ("Cancel all working orders", app.action_cancel_all, "Asks for confirmation"),
        ]
        if engine.halted_reason:
            cmds.append(("Resume trading", app.action_resume, f"Halted: {engine.halted_reason}"))
        else:
            cmds.append(("Halt trading (kill switch)", app.action_halt, "Refuse new orders, cancel everything"))
        for venue in engine.venues:
            on = engine.router.is_enabled(venue)
            cmds.append((f"{'Disable' if on else 'Enable'} venue {venue}", partial(app.action_toggle_venue, venue),
                         "Stop or start routing there"))
            cmds.append((f"Fault drill on {venue}", partial(app.action_drill, venue),
                         "Outage, latency spike or error burst"))
            breaker = engine.router.breaker(venue)
            if breaker.forced:
                cmds.append((f"Release breaker override on {venue}", partial(app.action_breaker, venue, "release"),
                             f"now forced {breaker.forced}"))
            else:
                cmds.append((f"Force breaker OPEN on {venue}", partial(app.action_breaker, venue, "open"),
                             "Refuse everything until released"))
        for name in app.desk_themes:
            cmds.append((f"Theme: {name}", partial(app.set_desk_theme, name), "Switch and remember"))
        for i, symbol in enumerate(app.symbols):
            cmds.append((f"Select symbol {symbol}", partial(app.action_symbol, i), "Market panel and tickets"))
        cmds.append(("Latency chart: next category", app.action_latency_category, "submission / ack / execution"))
        cmds.append(("Latency chart: next venue", app.action_latency_venue, "one venue or all"))
        cmds.append(("Latency chart: live / history", app.action_latency_history, "saved metrics"))
        cmds.append(("Positions per venue / per symbol", app.action_positions_by_venue, ""))
        if app.tabbed:
            from .app import PANELS

            for name, label in PANELS.items():
                cmds.append((f"Show panel: {label}", partial(app.show_panel, name), "under the orders (] and [ too)"))
        cmds.append(("Orders: show all" if app.mine_only else "Orders: only mine", app.action_mine_only,
                     "the --demo flow's orders, dimmed, or not"))
        cmds.append(("Order detail", app.action_order_detail, "full id, children, fills and reasons of the selected order"))
        cmds.append(("Show keys", app.action_help, "Every key binding"))
        return cmds

    async def discover(self) -> Hits:
        for name, callback, help_text in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
