"""Component document, "Basic Order Submission", as written (imports added)."""
from engine import ExchangeClient, LatencyProfiler, Order, OrderRouter, OrderSide, OrderType

# Initialize components
profiler = LatencyProfiler()
router = OrderRouter(latency_profiler=profiler)
exchange = ExchangeClient()
router.register_exchange("exchange_name", exchange)

# Create and submit an order
order = Order(
    id="order_123",
    symbol="BTC/USD",
    side=OrderSide.BUY,
    type=OrderType.MARKET,
    quantity=1.0
)
result = router.submit_order(order, exchange_id="exchange_name")
