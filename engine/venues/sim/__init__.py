"""The simulated exchange: configuration, the market around its books, the venue."""
