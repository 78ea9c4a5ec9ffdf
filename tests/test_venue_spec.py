"""`--venues`: one line names the venues; anything wrong is refused before anything starts."""

from __future__ import annotations

import pytest

from engine.errors import ConfigurationError
from engine.venue_spec import open_venues, parse_venues
from engine.venues.sim.exchange import SimulatedExchange


def test_simulated_and_fix_venues_mix_in_one_line() -> None:
    addresses = parse_venues("sim:swift, sim:deep,fix://127.0.0.1:9878,fix://localhost:9879/thrift?name=far&sender=D2")
    assert [(a.kind, a.name) for a in addresses] == [
        ("sim", "swift"), ("sim", "deep"), ("fix", "fix-9878"), ("fix", "far")]
    far = addresses[3]
    assert (far.host, far.port, far.destination, far.options["sender"]) == ("localhost", 9879, "thrift", "D2")
    assert [a.name for a in parse_venues("sim")] == ["swift", "deep", "thrift"]


@pytest.mark.parametrize(("line", "says"), [
    ("", "no venues given"),
    ("sim:nyse", "unknown simulated venue 'nyse'"),
    ("ccxt", "of no kind execdesk knows"),
    ("sim:swift,,sim:deep", "an empty venue"),
    ("fix://127.0.0.1", "needs a host and a port"),
    ("fix://127.0.0.1:99999", "Port out of range"),
    ("fix://127.0.0.1:abc", "Port could not be cast"),
    ("fix://:9878", "needs a host and a port"),
    ("fix://127.0.0.1:9878?colour=red", "unknown option(s) colour"),
    ("fix://127.0.0.1:9878?name=a b", "must be 1-32 letters"),
    ("fix://127.0.0.1:9878/x y", "is not a venue name"),
    ("sim:swift,sim:swift", "two venues are named 'swift'"),
    ("fix://127.0.0.1:9878,fix://127.0.0.2:9878", "two venues are named 'fix-9878'"),
])
def test_a_bad_line_is_refused_saying_what_was_wrong(line, says) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_venues(line)
    assert says in str(caught.value)


def test_simulated_venues_are_built_on_one_reference_market_in_the_order_given() -> None:
    venues = open_venues(parse_venues("sim:thrift,sim:swift"), seed=3)
    assert list(venues) == ["thrift", "swift"]
    assert all(isinstance(v, SimulatedExchange) for v in venues.values())
    mids = [v.book("BTC/USD", depth=1).mid for v in venues.values()]
    assert abs(mids[0] - mids[1]) / mids[0] < 0.01  # the same fair price under both


def test_a_fix_venue_nobody_listens_for_is_refused_naming_the_address() -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from tui.cli import main; sys.exit(main(sys.argv[1:]))",
         "--venues", f"sim:swift,fix://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"the FIX venue at 127.0.0.1:{port} cannot be reached" in proc.stderr
    assert "Traceback" not in proc.stderr
