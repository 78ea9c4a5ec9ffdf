"""Component document, "Synchronous Integration" (imports added; `order` as in
the first example, since the document leaves it undefined here)."""
from engine import (ExchangeClient, ExecutionOptimizer, LatencyProfiler, Order, OrderRouter, OrderSide,
                    OrderType, SmartOrderRouter)

order = Order(
    id="order_123",
    symbol="BTC/USD",
    side=OrderSide.BUY,
    type=OrderType.MARKET,
    quantity=1.0
)

# Initialize components
profiler = LatencyProfiler()
router = OrderRouter(latency_profiler=profiler)
exchange = ExchangeClient()
router.register_exchange("exchange_name", exchange)
smart_router = SmartOrderRouter(order_router=router, latency_profiler=profiler)
optimizer = ExecutionOptimizer(order_router=smart_router, latency_profiler=profiler)

# Submit an order
order_id = optimizer.submit_order(order)
