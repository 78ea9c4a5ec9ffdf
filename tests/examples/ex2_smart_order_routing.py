"""Component document, "Smart Order Routing", as written (imports added)."""
from engine import (ExchangeClient, LatencyProfiler, Order, OrderRouter, OrderSide, OrderType,
                    SmartOrderRouter)

# Initialize components
profiler = LatencyProfiler()
router = OrderRouter(latency_profiler=profiler)
exchange = ExchangeClient()
router.register_exchange("exchange_name", exchange)
smart_router = SmartOrderRouter(order_router=router, latency_profiler=profiler)

# Create and route an iceberg order
order = Order(
    id="order_123",
    symbol="BTC/USD",
    side=OrderSide.BUY,
    type=OrderType.ICEBERG,
    quantity=10.0,
    price=50000.0,
    metadata={'display_size': 1.0}
)
results = smart_router.route_order(order)
