"""Venues: the interface, the order book, the clients, and the venues themselves."""
