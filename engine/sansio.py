"""One sans-IO shape for the engine's decisions, and its two drivers.

Decision code (a router's retry and reconciliation, the scheduler's work, a
venue's request flow) is a generator that yields the `Request`s it wants
performed (a venue call, a wait) and receives each answer, or has the error
it raised thrown back in, h11-style. It never performs I/O or sleeps itself.
A front end performs the requests: `drive` from sync code, `drive_async` in an
event loop. So the logic exists once and each front end is a `perform`
function of a few lines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

__all__ = ["Request", "drive", "drive_async"]

T = TypeVar("T")


class Request:
    """What a decision wants done: `op` names it ("submit", "status", "sleep", ...),
    `arg` is its argument."""

    __slots__ = ("op", "arg")

    def __init__(self, op: str, arg: Any = None) -> None:
        self.op = op
        self.arg = arg

    def __repr__(self) -> str:
        return f"Request({self.op!r}, {self.arg!r})"


Decision = Generator[Request, Any, T]


def drive(
    decision: Decision[T],
    perform: Callable[[Request], Any],
    answers: tuple[type[BaseException], ...] = (),
) -> T:
    """Run `decision` to its end, performing each request with `perform`. An exception of
    one of the `answers` classes is an answer: it is thrown into the decision, which
    decides what it means; any other propagates to the caller."""
    reply: Any = None
    error: BaseException | None = None
    send, throw = decision.send, decision.throw
    while True:
        try:
            request = send(reply) if error is None else throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        reply, error = None, None
        try:
            reply = perform(request)
        except answers as exc:
            error = exc


async def drive_async(
    decision: Decision[T],
    perform: Callable[[Request], Awaitable[Any]],
    answers: tuple[type[BaseException], ...] = (),
) -> T:
    """`drive` for an event loop: `perform` is awaited."""
    reply: Any = None
    error: BaseException | None = None
    send, throw = decision.send, decision.throw
    while True:
        try:
            request = send(reply) if error is None else throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        reply, error = None, None
        try:
            reply = await perform(request)
        except answers as exc:
            error = exc
