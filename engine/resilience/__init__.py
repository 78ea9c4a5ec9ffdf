"""Circuit breakers and retry policies."""
