"""Parent orders: the Scheduler and the algorithms it drives."""
