"""What the desk's server processes share (`execdesk venue`, `execdesk serve`): run a server
until SIGINT or SIGTERM, then stop it cleanly."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any


async def serve_until_signalled(server: Any, ready_line: Callable[[], str]) -> int:
    """`await server.start()`, print `ready_line()` (what tests and operators wait for),
    run until SIGINT or SIGTERM, then `await server.stop()`; 0."""
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(ready_line(), flush=True)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await server.stop()
    return 0
