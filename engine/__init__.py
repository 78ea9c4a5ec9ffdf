"""execdesk's execution engine: importable without Textual.

The names of the component document are imported from here.
"""

from .resilience.breaker import BreakerConfig, BreakerState, CircuitBreaker
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
from .venues.clients import AsyncExchangeClient, ExchangeClient
from .venues.sim.config import FaultConfig, LatencyModel, MarketConfig
from .venues.sim.exchange import SimulatedExchange
from .optimizer import AsyncExecutionOptimizer, ExecutionOptimizer, OptimizerStoppedError
from .positions import Position, PositionBook
from .profiler import LatencyProfiler, LatencyStats, ProfilerFileError
from .resilience.retry import RetryPolicy
from .risk import RiskChecker, RiskLimits, RiskPreview, SymbolLimits
from .routing.router import AsyncOrderRouter, OrderRouter
from .scheduling.scheduler import Scheduler
from .routing.smart import SmartOrderRouter, set_default_parents
from .venues.base import AsyncVenue, Venue
from .market_data import BookLevel, BookSnapshot, ExecutionReport, PublicTrade

# The bare SmartOrderRouter(router) of the component document works parents with a Scheduler.
set_default_parents(Scheduler.for_router)

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
