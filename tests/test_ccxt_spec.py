"""`--venues ccxt:EXCHANGE` and `--live`: what the venue line accepts and refuses, and the
desk's LIVE marker while a venue trades real money."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import Engine
from engine.errors import ConfigurationError
from engine.venue_spec import live_venues, open_venues, parse_venues
from tests.ccxt_support import offline_venue


def test_ccxt_venues_mix_with_the_others() -> None:
    addresses = parse_venues("sim:swift,ccxt:binance,fix://127.0.0.1:9878/deep,ccxt:bybit")
    assert [(a.kind, a.name) for a in addresses] == [
        ("sim", "swift"), ("ccxt", "binance"), ("fix", "deep"), ("ccxt", "bybit")]
    assert addresses[1].options == {"exchange": "binance", "live": ""}  # sandbox unless --live


def test_an_exchange_without_sandbox_is_refused_without_live() -> None:
    with pytest.raises(ConfigurationError, match=r"ccxt:kraken: kraken has no sandbox .* pass --live"):
        parse_venues("sim:swift,ccxt:kraken")
    (kraken,) = parse_venues("ccxt:kraken", live=True)
    assert kraken.options["live"] == "1"


@pytest.mark.parametrize("line, words", [
    ("ccxt:", "name the exchange by its CCXT id"),
    ("ccxt:Bin ance", "name the exchange by its CCXT id"),
    ("ccxt:binanze", "CCXT has no exchange 'binanze'"),
    ("ccxt:binance,ccxt:binance", "two venues are named 'binance'"),
])
def test_bad_ccxt_items_are_refused_by_name(line: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        parse_venues(line)


def test_a_key_without_its_secret_is_refused_before_anything_connects() -> None:
    with pytest.raises(ConfigurationError, match="EXECDESK_BINANCE_API_KEY is set but EXECDESK_BINANCE_SECRET"):
        open_venues(parse_venues("ccxt:binance"), environ={"EXECDESK_BINANCE_API_KEY": "abc"})


def test_the_desk_refuses_kraken_without_live(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from tui.cli import main; sys.exit(main(sys.argv[1:]))",
         "--venues", "sim:swift,ccxt:kraken"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "kraken has no sandbox (testnet) in CCXT, so trading it means real money; pass --live" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.anyio
async def test_the_top_bar_says_live_while_a_venue_trades_real_money(tmp_path: Path) -> None:
    from engine.venue_spec import simulated_venues
    from tui.app import DeskApp

    live, _ = offline_venue("binance", live=True)
    sandbox, _ = offline_venue("bybit")
    await live.connect_async()
    await sandbox.connect_async()
    venues = {**simulated_venues(3), "binance": live, "bybit": sandbox}
    assert live_venues(venues) == ["binance"]
    app = DeskApp(Engine(venues, seed=3), live=False, settings_path=tmp_path / "settings.json", order_prefix="T")
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.pause(0.05)
            app.draw_frame()
            top = str(app.topbar.render())
            assert "LIVE: binance" in top and "bybit" not in top
    finally:
        live.close()
        sandbox.close()
