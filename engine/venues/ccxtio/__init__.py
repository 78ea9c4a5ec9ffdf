"""Real exchanges through CCXT (the optional extra `execdesk[ccxt]`): `CcxtVenue`.

Importing this package imports ccxt; nothing else in the engine does (`import engine`
stays free of it), so the desk runs without the extra until a `ccxt:` venue is named.
"""

from engine.venues.ccxtio.venue import CcxtVenue, credentials_from_env, has_sandbox, key_variables, venue_error

__all__ = ["CcxtVenue", "credentials_from_env", "has_sandbox", "key_variables", "venue_error"]
