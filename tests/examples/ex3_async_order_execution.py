"""Component document, "Asynchronous Order Execution" (imports added; the await
lines inside an async def run by asyncio.run)."""
import asyncio

from engine import (AsyncExchangeClient, AsyncExecutionOptimizer, AsyncOrderRouter, LatencyProfiler,
                    Order, OrderSide, OrderType)


async def main():
    global order_id, status, optimizer
    # Initialize components
    profiler = LatencyProfiler()
    router = AsyncOrderRouter(latency_profiler=profiler)
    exchange = AsyncExchangeClient()
    router.register_exchange("exchange_name", exchange)
    optimizer = AsyncExecutionOptimizer(order_router=router, latency_profiler=profiler)

    # Start the optimizer
    await optimizer.start(num_workers=10)

    # Create and submit an order
    order = Order(
        id="order_123",
        symbol="BTC/USD",
        side=OrderSide.BUY,
        type=OrderType.MARKET,
        quantity=1.0
    )
    order_id = await optimizer.submit_order_async(order)

    # Get order status
    status = await optimizer.get_order_status_async(order_id)

    # Stop the optimizer when done
    await optimizer.stop()


asyncio.run(main())
