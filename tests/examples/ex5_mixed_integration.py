"""Component document, "Mixed Synchronous/Asynchronous Integration" (imports
added; `order` as in the first example; asyncio.run(async_function()) called
after the synchronous part)."""
import asyncio

from engine import AsyncExchangeClient, AsyncOrderRouter, LatencyProfiler, Order, OrderSide, OrderType

order = Order(
    id="order_123",
    symbol="BTC/USD",
    side=OrderSide.BUY,
    type=OrderType.MARKET,
    quantity=1.0
)

# Initialize components
profiler = LatencyProfiler()
router = AsyncOrderRouter(latency_profiler=profiler)
exchange = AsyncExchangeClient()
router.register_exchange("exchange_name", exchange)

# Use in synchronous context
order_result = router.submit_order(order)  # Returns immediately with a future

# Use in asynchronous context
async def async_function():
    order_result = await router.submit_order_async(order)

asyncio.run(async_function())
