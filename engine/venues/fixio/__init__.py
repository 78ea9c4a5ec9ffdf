"""FIX over the network: the asyncio edge of the sans-IO `engine.venues.fix` package.

`driver` runs a `FixSession` over an asyncio stream (the only FIX code that does I/O or
waits); `server` is `FixVenueServer`, a FIX 4.4 acceptor in front of simulated exchanges.
Kept apart from `engine.venues.fix` so that package stays free of sockets, tasks and clocks.
"""

from engine.venues.fixio.driver import FixConnection, open_fix_connection
from engine.venues.fixio.server import FixVenueServer, fix_number

__all__ = ["FixConnection", "FixVenueServer", "fix_number", "open_fix_connection"]
