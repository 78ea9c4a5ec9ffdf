"""One error family for the engine.

Venue errors come in three kinds because a retry must tell them apart:
transient (safe to retry), permanent (never retry) and unknown outcome (the
request may or may not have reached the book: reconcile by client order id
before anything is resent).
"""

from __future__ import annotations


class ExecdeskError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigurationError(ExecdeskError, ValueError):
    """A setting or argument the engine cannot work with."""


class JournalError(ExecdeskError):
    """The order journal could not be written (a full disk, a file gone read-only): what
    needed it (an order's write-ahead) did not happen."""


class AlgorithmParameterError(ExecdeskError, ValueError):
    """An algorithm parent that cannot run as stated on its instrument (a child under
    the lot or minimum, a limit off the tick): refused when the algorithm is built."""


class UnknownVenueError(ExecdeskError, KeyError):
    """A venue name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else "unknown venue"


class UnknownOrderError(ExecdeskError, KeyError):
    """A client order id the venue or engine does not know (or no longer remembers)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown order"


class VenueError(ExecdeskError):
    """A venue call failed."""

    def __init__(self, message: str, *, venue: str | None = None) -> None:
        super().__init__(message)
        self.venue = venue


class TransientVenueError(VenueError):
    """The call failed and nothing happened at the venue: safe to retry."""


class VenueUnavailableError(TransientVenueError):
    """The venue is down (outage) or unreachable."""


class RateLimitedError(TransientVenueError):
    """The venue refused the call for exceeding its request rate."""


class PermanentVenueError(VenueError):
    """The venue refused the request for good: retrying cannot help."""


class UnknownOutcomeError(VenueError):
    """The call timed out: the request may or may not have reached the book."""
