"""LiveTable: a keyed table for rows that change many times a second.

DataTable re-renders through Rich for every change, which under `--demo`
(hundreds of orders a second) cost more than the engine itself. LiveTable
renders only the lines on screen (Textual's Line API, as toolong does),
from a strip cached per row until that row changes, so a frame costs what
is visible, not what happened. Newest rows go on top; the cursor follows
its row's key, not its position, so new rows never move the selection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int  # cells; the last column shown takes what is left
    right: bool = False
    keep_end: bool = False  # cut from the left ("…-9355"): for ids that differ at the end
    narrow: int | None = None  # width in a narrow table (None: the same; 0: not shown)
    crop: bool = False  # cut without an ellipsis (a cell whose start says it all: "45% ███")


class LiveTable(ScrollView, can_focus=True):
    # Below this many cells of width a table uses its columns' narrow widths (80x24).
    NARROW_BELOW = 100
    COMPONENT_CLASSES = {"live-table--header", "live-table--cursor"}
    DEFAULT_CSS = """
    LiveTable > .live-table--header { text-style: bold; background: $panel; }
    LiveTable > .live-table--cursor { background: $primary 35%; }
    LiveTable:focus > .live-table--cursor { background: $primary 60%; }
    """
    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False, id="table.up"),
        Binding("down", "move(1)", "Down", show=False, id="table.down"),
        Binding("pageup", "move(-10)", "Page up", show=False, id="table.pageup"),
        Binding("pagedown", "move(10)", "Page down", show=False, id="table.pagedown"),
        Binding("home", "move(-1000000)", "Top", show=False, id="table.home"),
        Binding("end", "move(1000000)", "Bottom", show=False, id="table.end"),
    ]

    class Highlighted(Message):
        def __init__(self, table: LiveTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

    def __init__(self, columns: list[Column], *, newest_first: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.columns = columns
        self.newest_first = newest_first
        self._cells: dict[str, tuple[Any, ...]] = {}
        self._order: list[str] = []  # display order, newest first
        self._strips: dict[tuple[str, int, bool], Strip] = {}
        self._cursor_key: str | None = None
        self._resize_pending = False
        self._layouts: dict[int, list[tuple[int, Column, int]]] = {}  # width -> (index, column, cells)

    # -- data ------------------------------------------------------------------------------
    def upsert(self, key: str, cells: tuple[Any, ...]) -> bool:
        old = self._cells.get(key)
        if old == cells:
            return False
        if old is None:
            if self.newest_first:
                self._order.insert(0, key)
            else:
                self._order.append(key)
            if self._cursor_key is None:
                self._cursor_key = key
            self._resize()
        self._cells[key] = cells
        self._uncache(key)
        self.refresh()
        return True

    def drop(self, key: str) -> None:
        if key not in self._cells:
            return
        index = self._order.index(key)
        del self._cells[key]
        self._order.remove(key)
        self._uncache(key)
        if key == self._cursor_key:
            self._cursor_key = self._order[min(index, len(self._order) - 1)] if self._order else None
            self.post_message(self.Highlighted(self, self._cursor_key))
        self._resize()
        self.refresh()

    def forget(self) -> None:
        """Drop every cached line and cell (a new theme): the next refresh redraws all."""
        self._cells = {key: () for key in self._cells}
        self._strips.clear()
        self.refresh()

    def clear(self) -> None:
        """Drop every row (a new filter fills the table again from scratch)."""
        had_cursor = self._cursor_key is not None
        self._cells.clear()
        self._order.clear()
        self._strips.clear()
        self._cursor_key = None
        if had_cursor:
            self.post_message(self.Highlighted(self, None))
        self._resize()
        self.refresh()

    def _uncache(self, key: str) -> None:
        for stale in [k for k in self._strips if k[0] == key]:
            del self._strips[stale]

    def _resize(self) -> None:
        # A new virtual size re-lays the whole screen out. Under load a bounded table adds
        # and drops a row per update (200 -> 201 -> 200), so the size is set once, after
        # this batch of updates, and then only when the row count really moved.
        if not self._resize_pending:
            self._resize_pending = True
            self.call_next(self._apply_size)

    def _apply_size(self) -> None:
        self._resize_pending = False
        # Rows are cut to the visible width: never a horizontal scrollbar.
        size = Size(0, len(self._order) + 1)
        if size != self.virtual_size:
            self.virtual_size = size

    @property
    def keys(self) -> list[str]:
        return list(self._order)

    @property
    def row_count(self) -> int:
        return len(self._order)

    def selected_key(self) -> str | None:
        return self._cursor_key

    def cell(self, key: str, column: str) -> Any:
        """What row `key` shows in `column` (by the column's key)."""
        index = next(i for i, c in enumerate(self.columns) if c.key == column)
        return self._cells[key][index]

    # -- colours from the theme ------------------------------------------------------------
    def paint(self, text: str, colour: str | None, bold: bool = False) -> Text:
        value = self.app.theme_variables.get(colour, "") if colour else ""
        return Text(text, style=f"{'bold ' if bold else ''}{value}".strip())

    def side(self, side: Any) -> Text:
        name = getattr(side, "value", str(side or ""))
        return self.paint(name, "buy" if name == "BUY" else "sell", bold=True)

    # -- cursor --------------------------------------------------------------------------------
    def action_move(self, delta: int) -> None:
        if not self._order:
            return
        index = self._order.index(self._cursor_key) if self._cursor_key in self._order else 0
        index = max(0, min(len(self._order) - 1, index + delta))
        self.select(self._order[index])

    def select(self, key: str) -> None:
        if key not in self._cells or key == self._cursor_key:
            return
        old = self._cursor_key
        self._cursor_key = key
        for k in (old, key):
            if k is not None:
                self._uncache(k)
        index = self._order.index(key) + 1  # + header
        top = self.scroll_offset.y
        height = max(self.size.height, 2)
        if index - 1 < top:
            self.scroll_to(y=index - 1, animate=False)
        elif index >= top + height:
            self.scroll_to(y=index - height + 1, animate=False)
        self.refresh()
        self.post_message(self.Highlighted(self, key))

    def on_click(self, event: Any) -> None:
        index = self.scroll_offset.y + event.y - 1
        if 0 <= index < len(self._order):
            self.select(self._order[index])

    def on_resize(self) -> None:
        self._strips.clear()
        self._resize()

    # -- rendering (only what is on screen) ----------------------------------------------------
    def _layout(self, width: int) -> list[tuple[int, Column, int]]:
        """The columns shown at this width, each with its cell index and width."""
        layout = self._layouts.get(width)
        if layout is None:
            narrow = width < self.NARROW_BELOW
            shown = [(i, c, c.narrow if narrow and c.narrow is not None else c.width)
                     for i, c in enumerate(self.columns)]
            shown = [entry for entry in shown if entry[2] > 0]
            if shown:
                i, column, w = shown[-1]
                if not column.right:
                    used = sum(entry[2] for entry in shown[:-1])
                    shown[-1] = (i, column, max(width - used, 0))
            layout = self._layouts[width] = shown
        return layout

    def _row_text(self, cells: tuple[Any, ...], width: int) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis")
        layout = self._layout(width)
        last = len(layout) - 1
        for n, (i, column, w) in enumerate(layout):
            cell = cells[i] if i < len(cells) else ""
            piece = cell.copy() if isinstance(cell, Text) else Text(str(cell))
            room = w - (0 if n == last else 1)
            if column.keep_end and piece.cell_len > room > 1:
                piece = Text("…") + piece[len(piece) - (room - 1):]
            piece.truncate(room, overflow="crop" if column.crop else "ellipsis")
            pad = w - piece.cell_len
            if column.right:
                line.append(" " * max(pad - 1, 0))
                line.append_text(piece)
                line.append(" " if n != last else "")
            else:
                line.append_text(piece)
                line.append(" " * max(pad, 0))
        return line

    def _strip(self, text: Text, width: int, style: Style) -> Strip:
        # One Strip per line, styled and cut to width here: Textual's Strip carries its own
        # caches, so building it once (not three times through apply/adjust) is cheaper.
        text.truncate(width, overflow="crop", pad=True)
        segments = list(Segment.apply_style(text.render(self.app.console), style))
        return Strip(segments, width) if segments else Strip([Segment(" " * width, style)], width)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            header = self._row_text(tuple(c.label for c in self.columns), width)
            return self._strip(header, width, base + self.get_component_rich_style("live-table--header"))
        scroll_y = self.scroll_offset.y
        index = scroll_y + y - 1
        if index >= len(self._order):
            return Strip.blank(width, base)
        key = self._order[index]
        selected = key == self._cursor_key
        cache_key = (key, width, selected)
        strip = self._strips.get(cache_key)
        if strip is None:
            style = base + self.get_component_rich_style("live-table--cursor") if selected else base
            strip = self._strip(self._row_text(self._cells[key], width), width, style)
            self._strips[cache_key] = strip
        return strip
