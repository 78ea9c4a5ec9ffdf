"""Offline CCXT: a `CcxtVenue` whose exchange's HTTP layer (`fetch`) answers from canned replies.

`FakeHttp` replaces the exchange instance's `fetch` (CCXT's one door to the network). Each
request is recorded (method, path, the query and body parameters, decoded) and answered
by the next reply queued for its method and path; an unexpected request fails the test
naming it. A reply goes through CCXT's own `handle_errors` and `handle_http_status_code`,
as the real `fetch` does after reading the body, so error replies raise exactly the CCXT
exception the exchange's reply would. A reply may also be an exception to raise (a
RequestTimeout: the request went out, no answer came back).

The canned replies and the markets are JSON files under tests/fixtures/ccxt/, each saying
where it came from.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from engine.secrets import Secret
from engine.venues.ccxtio import CcxtVenue

FIXTURES = Path(__file__).parent / "fixtures" / "ccxt"
API_KEY = "test-api-key-0123456789"
API_SECRET = "test-api-secret-9876543210"


def replies(exchange: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{exchange}_replies.json").read_text())


def markets(exchange: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{exchange}_markets.json").read_text())["markets"]


@dataclass
class Sent:
    method: str
    path: str
    params: dict[str, str]
    url: str


class FakeHttp:
    def __init__(self, exchange: Any, canned: dict[str, Any]) -> None:
        self.exchange = exchange
        self.canned = canned
        self.sent: list[Sent] = []
        self._queues: dict[tuple[str, str], deque[Any]] = {}

    def on(self, method: str, path: str, *answers: str | BaseException) -> FakeHttp:
        """Queue answers (names of canned replies, or exceptions) for METHOD PATH."""
        self._queues.setdefault((method, path), deque()).extend(answers)
        return self

    def to(self, method: str, path: str) -> list[Sent]:
        return [s for s in self.sent if s.method == method and s.path == path]

    async def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        parts = urlsplit(url)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        if body:
            text = body.decode() if isinstance(body, bytes) else str(body)
            if text.lstrip().startswith("{"):
                params.update({k: str(v) for k, v in json.loads(text).items()})
            else:
                params.update(parse_qsl(text, keep_blank_values=True))
        self.sent.append(Sent(method, parts.path, params, url))
        queue = self._queues.get((method, parts.path))
        if not queue:
            raise AssertionError(f"unexpected request {method} {parts.path} {params}")
        answer = queue.popleft()
        if isinstance(answer, BaseException):
            raise answer
        reply = self.canned[answer]
        status, data = reply["status"], reply["body"]
        text = json.dumps(data)
        ex = self.exchange
        ex.last_response_headers = reply.get("headers", {})
        parsed = ex.parse_json(text)
        reason = "OK" if status == 200 else "Error"
        ex.handle_errors(status, reason, url, method, {}, text, parsed, headers, body)
        ex.handle_http_status_code(status, reason, url, method, text)
        return parsed


def offline_venue(exchange: str, **kwargs: Any) -> tuple[CcxtVenue, FakeHttp]:
    """A sandbox venue on `exchange` with test keys, markets from the fixture file, CCXT's rate
    limiter off (canned replies need no pacing; it sleeps in real time) and no poller."""
    kwargs.setdefault("poll_interval", None)
    kwargs.setdefault("rate_limit", False)
    kwargs.setdefault("symbols", ["BTC/USDT", "ETH/USDT"])
    venue = CcxtVenue(exchange, api_key=Secret(API_KEY), secret=Secret(API_SECRET), markets=markets(exchange),
                      **kwargs)
    http = FakeHttp(venue.exchange, replies(exchange))
    venue.exchange.fetch = http.fetch
    return venue, http
