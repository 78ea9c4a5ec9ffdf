"""Shared test fixtures: generic, small, and documented here.

Hypothesis
    The "ci" profile is loaded unless HYPOTHESIS_PROFILE names another one
    ("thorough" runs many more examples, for a local hunt). Examples stay
    random (a failure prints the blob to reproduce it with
    ``@reproduce_failure``); there is no per-example deadline, because a
    shared 2-core CI machine makes wall-time deadlines flaky.

Virtual time
    ``virtual_clock`` gives a fresh :class:`engine.VirtualClock` (start
    1_700_000_000.0). It is created in the test's thread, so that thread is
    a registered participant: time jumps when it waits in the clock.

    For async tests on a loop that keeps the clock's time, override the anyio
    plugin's ``anyio_backend`` fixture in the test module::

        from tests.conftest import virtual_anyio_backend

        @pytest.fixture
        def anyio_backend(virtual_clock):
            return virtual_anyio_backend(virtual_clock)

        @pytest.mark.anyio
        async def test_something(virtual_clock):
            await anyio.sleep(3600)          # instant: virtual
            assert virtual_clock.now() == 1_700_003_600.0

    Every ``anyio.sleep``, ``fail_after`` and ``move_on_after`` on that loop
    is then virtual.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from engine.clock import VirtualClock

settings.register_profile(
    "dev",
    max_examples=60,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# CI runs the same examples every time, so a submission never fails on an input no
# one has seen; local runs ("dev") keep exploring new ones and print how to replay them.
settings.register_profile("ci", parent=settings.get_profile("dev"), derandomize=True)
settings.register_profile("thorough", parent=settings.get_profile("dev"), max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

VIRTUAL_START = 1_700_000_000.0


def virtual_anyio_backend(clock: VirtualClock) -> tuple[str, dict[str, Any]]:
    """The value for an ``anyio_backend`` fixture: asyncio on a loop keeping `clock`'s time."""
    return ("asyncio", clock.backend_options())


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A fresh VirtualClock at VIRTUAL_START; the test's thread takes part in it."""
    return VirtualClock(start=VIRTUAL_START)


@pytest.fixture
def net() -> Iterator[Any]:
    """A network loop in a thread for a FIX test's servers, closed after the test."""
    from tests.fix_venue_helpers import NetLoop

    loop = NetLoop()
    try:
        yield loop
    finally:
        loop.close()
