"""FIX over the network: the asyncio edge of the sans-IO `engine.venues.fix` package.

`driver` runs a `FixSession` over an asyncio stream (the only FIX code that does I/O or
waits); `server` is `FixVenueServer`, a FIX 4.4 acceptor in front of simulated exchanges;
`venue` is `FixVenue`, the engine's venue behind a FIX 4.4 initiator.
Kept apart from `engine.venues.fix` so that package stays free of sockets, tasks and clocks.
"""

from engine.venues.fixio.driver import FixConnection, open_fix_connection
from engine.venues.fixio.server import FixVenueServer, fix_number
from engine.venues.fixio.venue import FixSessionInfo, FixVenue

__all__ = ["FixConnection", "FixSessionInfo", "FixVenue", "FixVenueServer", "fix_number", "open_fix_connection"]
