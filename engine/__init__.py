"""execdesk's execution engine: importable without Textual.

The names of the component document are imported from here.
"""

from .breaker import BreakerConfig, BreakerState, CircuitBreaker
from .bus import EventBus, Subscription
from .clock import Clock, RealClock, VirtualClock
from .engine import DEFAULT_VENUES, Engine, VenueSpec
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
from .exchange import (
    AsyncExchangeClient,
    ExchangeClient,
    FaultConfig,
    LatencyModel,
    MarketConfig,
    SimulatedExchange,
)
from .optimizer import AsyncExecutionOptimizer, ExecutionOptimizer, OptimizerStoppedError
from .positions import Position, PositionBook
from .profiler import LatencyProfiler, LatencyStats, ProfilerFileError
from .retry import RetryPolicy
from .risk import RiskChecker, RiskLimits, RiskPreview, SymbolLimits
from .router import AsyncOrderRouter, OrderRouter
from .scheduler import Scheduler
from .smart import SmartOrderRouter
from .venue import AsyncVenue, BookLevel, BookSnapshot, ExecutionReport, PublicTrade, Venue

__all__ = [
    "AsyncExchangeClient",
    "AsyncExecutionOptimizer",
    "AsyncOrderRouter",
    "BreakerConfig",
    "BreakerState",
    "CircuitBreaker",
    "DEFAULT_VENUES",
    "Engine",
    "EventBus",
    "ExchangeClient",
    "ExecutionOptimizer",
    "FaultConfig",
    "LatencyModel",
    "LatencyProfiler",
    "LatencyStats",
    "MarketConfig",
    "OptimizerStoppedError",
    "OrderRouter",
    "Position",
    "PositionBook",
    "ProfilerFileError",
    "RetryPolicy",
    "RiskChecker",
    "RiskLimits",
    "RiskPreview",
    "SymbolLimits",
    "Scheduler",
    "SimulatedExchange",
    "SmartOrderRouter",
    "Subscription",
    "VenueSpec",
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
