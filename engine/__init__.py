"""execdesk's execution engine: importable without Textual.

The names of the component document are imported from here.
"""

from .clock import Clock, RealClock, VirtualClock
from .errors import (
    ExecdeskError,
    PermanentVenueError,
    RateLimitedError,
    TransientVenueError,
    UnknownOrderError,
    UnknownOutcomeError,
    VenueError,
    VenueUnavailableError,
)
from .models import (
    FeeSchedule,
    Fill,
    Instrument,
    Liquidity,
    Order,
    OrderResult,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from .venue import AsyncVenue, BookLevel, BookSnapshot, ExecutionReport, PublicTrade, Venue

__all__ = [
    "AsyncVenue",
    "BookLevel",
    "BookSnapshot",
    "Clock",
    "ExecdeskError",
    "ExecutionReport",
    "FeeSchedule",
    "Fill",
    "Instrument",
    "Liquidity",
    "Order",
    "OrderResult",
    "OrderSide",
    "OrderStatus",
    "OrderType",
    "PermanentVenueError",
    "PublicTrade",
    "RateLimitedError",
    "RealClock",
    "TimeInForce",
    "TransientVenueError",
    "UnknownOrderError",
    "UnknownOutcomeError",
    "Venue",
    "VenueError",
    "VenueUnavailableError",
    "VirtualClock",
]
