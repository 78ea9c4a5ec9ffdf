"""The desk's orders, fed by engine events: which rows an event touches (no Textual here).

Rules:

* The desk tracks the orders it shows: the operator's and, under `--demo`, the
  synthetic flow's, each marked as whose it is.
* An event concerns the row of its order, or of its parent when that parent is
  tracked (a child of a TWAP moves the TWAP's row). Whether a tracked order still
  works is what the engine said when its row was last drawn.
* A working order is never forgotten: forgetting the oldest orders whatever their
  state drops a one-minute TWAP after a few seconds of `--demo` flow, and from then
  on its events touch no row and its row freezes. Only finished orders go, oldest
  first, beyond `max_finished`.
* Nothing here asks the engine anything except, when the bound is reached, "is this
  old order really still working?" (the lossy subscription may have dropped the
  event that would have redrawn it as finished): the answer lets it go or keeps it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

MAX_FINISHED = 5_000  # more than the blotter's rows: a finished row can still be selected


class DeskOrders:
    """Tracked orders: their type, whose they are, and which still work."""

    def __init__(self, *, max_finished: int = MAX_FINISHED,
                 still_working: Callable[[str], bool] | None = None) -> None:
        if isinstance(max_finished, bool) or not isinstance(max_finished, int) or max_finished < 1:
            raise ValueError(f"max_finished must be a whole number >= 1, got {max_finished!r}")
        self.max_finished = max_finished
        self._still_working = still_working
        self._types: OrderedDict[str, str] = OrderedDict()  # every tracked id -> order type, oldest first
        self._working: set[str] = set()
        self._mine: set[str] = set()

    # -- what is tracked -----------------------------------------------------------------
    def track(self, order_id: str, order_type: str, *, mine: bool) -> None:
        """Start showing this order (it works until an event or the engine says otherwise)."""
        self._types[order_id] = order_type
        self._types.move_to_end(order_id)
        self._working.add(order_id)
        if mine:
            self._mine.add(order_id)
        else:
            self._mine.discard(order_id)
        self._bound()

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._types

    def __len__(self) -> int:
        return len(self._types)

    def __iter__(self) -> Any:
        return iter(list(self._types))

    def type_of(self, order_id: str) -> str:
        return self._types.get(order_id, "")

    def is_mine(self, order_id: str) -> bool:
        return order_id in self._mine

    def is_working(self, order_id: str) -> bool:
        return order_id in self._working

    @property
    def working(self) -> frozenset[str]:
        return frozenset(self._working)

    @property
    def working_count(self) -> int:
        return len(self._working)

    def mine_working(self) -> list[str]:
        return [oid for oid in self._working if oid in self._mine]

    # -- what events say ----------------------------------------------------------------
    def row_of(self, order_id: str | None, parent_id: str | None) -> str | None:
        """The tracked row an order's event concerns: its parent's, its own, or none."""
        if parent_id is not None and parent_id in self._types:
            return parent_id
        if order_id is not None and order_id in self._types:
            return order_id
        return None

    def rows_touched(self, events: Iterable[Any]) -> set[str]:
        """The tracked rows these events change (the app then reads each row's state)."""
        rows: set[str] = set()
        for event in events:
            order_id = getattr(event, "order_id", None)
            if order_id is not None:
                row = self.row_of(order_id, getattr(event, "parent_id", None))
                if row is not None:
                    rows.add(row)
        return rows

    def set_working(self, order_id: str, working: bool) -> None:
        """What the engine says of a tracked order: a finished one may be forgotten later."""
        if not working:
            self._working.discard(order_id)
            self._bound()
        elif order_id in self._types:
            self._working.add(order_id)

    # -- the bound ------------------------------------------------------------------------
    def _bound(self) -> None:
        over = len(self._types) - len(self._working) - self.max_finished
        # Oldest first. A working order met on the way stays (moved to the newest end);
        # each entry is visited at most once per call.
        visits = over + len(self._working)
        while over > 0 and visits > 0:
            visits -= 1
            order_id = next(iter(self._types))
            if order_id in self._working:
                if self._still_working is None or self._still_working(order_id):
                    self._types.move_to_end(order_id)
                    continue
                self._working.discard(order_id)  # its final event never reached the desk
            del self._types[order_id]
            self._mine.discard(order_id)
            over -= 1
