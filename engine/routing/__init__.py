"""Routing: the per-venue OrderRouter and the SmartOrderRouter that chooses venues."""
