"""One helper for the one cross-thread rule the engine has.

An asyncio Event belongs to its loop: set it directly from that loop's
thread, through `call_soon_threadsafe` from any other (a venue listener may
run on a caller's thread). Bus, scheduler and optimizer all wake waiters
this way.
"""

from __future__ import annotations

import asyncio
from typing import Any


def set_event(loop: asyncio.AbstractEventLoop | None, event: Any) -> None:
    """Set `event` (an asyncio or anyio Event of `loop`) from whichever thread we are on."""
    if event is None or loop is None or loop.is_closed():
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        event.set()
    else:
        loop.call_soon_threadsafe(event.set)
