"""LiveTable: a keyed table for rows that change many times a second.

DataTable re-renders through Rich for every change, which under `--demo`
(hundreds of orders a second) cost more than the engine itself. LiveTable
renders only the lines on screen (Textual's Line API, as toolong does),
from a strip cached per row until that row changes, so a frame costs what
is visible, not what happened.

Rules:

* Rows are kept in rank order (by default the order they came in; a caller may
  give each row its own rank, such as when its order was sent), newest at one
  end, so a row drawn late still lands where its time puts it.
* The cursor follows its row's key, not its position, so new rows never move
  the selection; and the selected row never leaves the view by itself. At the
  top of the table newer rows push in while the selection stays in view; once
  they would push it out, the view follows the selected row. A view the
  operator scrolled keeps its selected row on its line (or, with the selection
  out of view, its top row).
* Only `select_first` tables select their first row by themselves: in a table
  that fills faster than the operator reads, a selection nobody made would
  drag the view away from the newest rows.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, NamedTuple

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


class _View(NamedTuple):
    """Where the view stood before a batch of changes (LiveTable's rules)."""

    top: int  # index of the first row shown
    top_key: str | None
    cursor_key: str | None
    cursor_line: int | None  # the selected row's line in the view; None: not in view


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

    def __init__(self, columns: list[Column], *, newest_first: bool = True, select_first: bool | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.columns = columns
        self.newest_first = newest_first
        # A table of a few fixed rows selects its first; a flowing one waits for the operator.
        self.select_first = not newest_first if select_first is None else select_first
        self._cells: dict[str, tuple[Any, ...]] = {}
        self._order: list[str] = []  # display order: by rank, newest first when newest_first
        self._ranks: dict[str, float] = {}
        self._next_rank = 0.0
        self._strips: dict[tuple[str, int, bool], Strip] = {}
        self._cursor_key: str | None = None
        self._resize_pending = False
        self._view_before: _View | None = None  # set by a batch's first change
        self._reveal_cursor = False  # the batch moved the cursor: bring it into view
        self._layouts: dict[int, list[tuple[int, Column, int]]] = {}  # width -> (index, column, cells)

    # -- data ------------------------------------------------------------------------------
    def upsert(self, key: str, cells: tuple[Any, ...], *, rank: float | None = None) -> bool:
        """Show `cells` in row `key`; a new row goes where its `rank` puts it (larger is
        newer; by default after every row so far). A row keeps its first rank."""
        old = self._cells.get(key)
        if old == cells:
            return False
        if old is None:
            self._note_view()
            self._insert(key, self._next_rank if rank is None else rank)
            if self._cursor_key is None and self.select_first:
                self._cursor_key = key
            self._resize()
        self._cells[key] = cells
        self._uncache(key)
        self.refresh()
        return True

    def _insert(self, key: str, rank: float) -> None:
        self._ranks[key] = rank
        self._next_rank = max(self._next_rank, rank + 1)
        order, ranks = self._order, self._ranks
        if self.newest_first:
            if not order or rank >= ranks[order[0]]:
                order.insert(0, key)  # the usual case: the newest row
            else:
                order.insert(bisect.bisect_left(order, -rank, key=lambda k: -ranks[k]), key)
        elif not order or rank >= ranks[order[-1]]:
            order.append(key)
        else:
            order.insert(bisect.bisect_right(order, rank, key=ranks.__getitem__), key)

    def drop(self, key: str) -> None:
        if key not in self._cells:
            return
        self._note_view()
        index = self._order.index(key)
        del self._cells[key]
        del self._ranks[key]
        self._order.pop(index)
        self._uncache(key)
        if key == self._cursor_key:
            self._cursor_key = self._order[min(index, len(self._order) - 1)] if self._order else None
            self._reveal_cursor = True
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
        self._ranks.clear()
        self._strips.clear()
        self._cursor_key = None
        self._view_before = None
        self._reveal_cursor = False
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
        self._settle_view()

    # -- the view: the selected row stays in it (the module's rules) ---------------------------
    @property
    def rows_shown(self) -> int:
        """How many rows the view has room for (under the header)."""
        return max(self.scrollable_content_region.height - 1, 1)

    def _note_view(self) -> None:
        """Before a batch's first change to the rows: where the view stands."""
        if self._view_before is not None:
            return
        top = self.scroll_offset.y
        order = self._order
        line = None
        if self._cursor_key is not None:
            index = order.index(self._cursor_key)
            if 0 <= index - top < self.rows_shown:
                line = index - top
        self._view_before = _View(top, order[top] if top < len(order) else None, self._cursor_key, line)

    def _settle_view(self) -> None:
        """After a batch: scroll so the view keeps what the rules say it keeps."""
        before, self._view_before = self._view_before, None
        reveal, self._reveal_cursor = self._reveal_cursor, False
        order = self._order
        if not order:
            return
        rows = self.rows_shown
        top = self.scroll_offset.y
        cursor = self._cursor_key
        index = order.index(cursor) if cursor is not None else None
        target: int | None = None
        if reveal and index is not None:
            if index < top:
                target = index
            elif index >= top + rows:
                target = index - rows + 1
        elif before is not None and before.cursor_line is not None and index is not None:
            if before.top == 0:
                # At the top newer rows push in; once they would push the selection out,
                # the view follows it (it stays on the last line).
                target = 0 if index < rows else index - rows + 1
            else:
                target = index - before.cursor_line
        elif before is not None and before.top > 0 and before.top_key in self._cells:
            target = order.index(before.top_key)
        if target is None:
            return
        target = max(0, min(target, len(order) - rows))
        if target != top:
            self.scroll_to(y=target, animate=False, immediate=True, force=True)

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
        if self._cursor_key is None:  # nothing selected yet: Down (or End) starts at the top
            index = -1 if delta > 0 else 0
        else:
            index = self._order.index(self._cursor_key)
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
        # Scrolled into view once this batch's rows are in (_settle_view).
        self._reveal_cursor = True
        self._resize()
        self.refresh()
        self.post_message(self.Highlighted(self, key))

    def on_click(self, event: Any) -> None:
        index = self.scroll_offset.y + event.y - 1
        if 0 <= index < len(self._order):
            self.select(self._order[index])

    def on_resize(self) -> None:
        self._strips.clear()
        self._reveal_cursor = True  # a shorter view must still show the selected row
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
