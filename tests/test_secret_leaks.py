"""A planted FIX password never leaks: a venue process that requires it, the desk (headless,
with a journal and FIX stores on disk) trading through it with `--venues fix://...`, a fill,
a Logon refused for a wrong password, a venue killed and restarted (a re-Logon); then every
place a secret could land is searched for both passwords: the logs (every logger at DEBUG
in this process, the venue process's stdout and stderr), every file under the test's
directories (journal, FIX session stores, venue state, settings, the desk's log), every
event published, the screen (the SVG export and the event log), and the exceptions' texts."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Engine, OrderStatus
from engine.venue_spec import open_venues, parse_venues
from engine.venues.fixio.venue import BadCredentialsError
from tests.desk_support import until
from tests.test_desk import log_text, send_ticket
from tests.test_desk_fix import Venue, free_port
from tui.app import DeskApp

ROOT = Path(__file__).resolve().parents[1]
SECRET = "Zq7-PLANTED-fix-secret-4471"
WRONG = "Wx2-PLANTED-wrong-guess-9083"
PLANTED = (SECRET, WRONG)
LISTENING = re.compile(r"on 127\.0\.0\.1:(\d+).*password required")


class VenueProcess(Venue):
    """`execdesk venue` requiring SECRET (from an owner-only file); its output in files."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.password_file = root / "venue.password"
        self.password_file.write_text(SECRET + "\n")
        self.password_file.chmod(0o600)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        out = open(self.root / f"venue-{self.starts}.stdout", "wb")
        err = open(self.root / f"venue-{self.starts}.stderr", "wb")
        with out, err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tui.cli", "venue", "--port", str(self.port), "--venues", "swift", "--seed",
                 "3", "--state", str(self.root / "venue-state"), "--tick-interval", "3600", "--verbose",
                 "--password-file", str(self.password_file)],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=out, stderr=err)
        deadline = time.monotonic() + 60
        while not LISTENING.search((self.root / f"venue-{self.starts}.stdout").read_text()):
            assert self.proc.poll() is None, (self.root / f"venue-{self.starts}.stderr").read_text()
            assert time.monotonic() < deadline, "the venue process never listened"
            time.sleep(0.02)

    def output(self) -> str:
        return "".join(path.read_text(errors="replace") for path in sorted(self.root.glob("venue-*.std*")))


def texts_of(event: Any) -> list[str]:
    """An event's repr and the str of each of its fields (nested dataclasses too)."""
    out = [repr(event), str(event)]
    if is_dataclass(event):
        for f in fields(event):
            value = getattr(event, f.name, None)
            out += texts_of(value) if is_dataclass(value) else [str(value), repr(value)]
    elif hasattr(event, "__slots__"):
        for name in getattr(type(event), "__slots__", ()):
            out.append(repr(getattr(event, name, None)))
    return out


def leaks(where: str, text: str | bytes) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    return [f"{planted!r} in {where}" for planted in PLANTED if planted.encode() in data]


@pytest.mark.anyio
async def test_a_planted_fix_password_appears_in_no_log_file_event_screen_or_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, DEBUG included
    monkeypatch.setenv("EXECDESK_FIX_PASSWORD_SWIFT", SECRET)
    venue = VenueProcess(tmp_path, free_port())
    await anyio.to_thread.run_sync(venue.start)
    errors: list[str] = []
    events: list[Any] = []
    screens: list[str] = []
    fix = None
    try:
        venues = await anyio.to_thread.run_sync(lambda: open_venues(
            parse_venues(f"fix://127.0.0.1:{venue.port}/swift"), connect_timeout=10.0,
            state_dir=tmp_path / "desk-fix"))
        fix = venues["swift"]
        engine = Engine(venues, seed=3, journal=tmp_path / "journal.sqlite3")
        engine.subscribe(maxsize=1_000_000, name="leak-test", callback=events.append)
        app = DeskApp(engine, live=False, settings_path=tmp_path / "settings.json", order_prefix="T")
        async with app.run_test(size=(160, 48)) as pilot:
            app.draw_slow_panels()
            assert str(app.venues_panel.cell("swift", "link")).startswith("FIX logged on ")
            # An order fills over the password-protected session.
            await send_ticket(pilot, ["f2", "enter"], side="s")
            await until(pilot, lambda: "T-1" in app.blotter.keys
                        and app.engine.status("T-1").status is OrderStatus.FILLED, tries=500)

            # Someone logs on with a wrong password (the same CompID, another venue name):
            # refused, and the desk's live session is not disturbed.
            with pytest.raises(BadCredentialsError) as caught:
                await anyio.to_thread.run_sync(lambda: open_venues(
                    parse_venues(f"fix://127.0.0.1:{venue.port}/swift?name=guess"),
                    connect_timeout=10.0, environ={"EXECDESK_FIX_PASSWORD_GUESS": WRONG}))
            errors += [str(caught.value), repr(caught.value), repr(caught.value.args)]
            assert str(caught.value).startswith("venue guess refused our logon: bad credentials")
            assert fix.session_info().state == "logged on"

            # The venue dies and comes back: the desk logs on again, with the password.
            await anyio.to_thread.run_sync(venue.kill)
            await until(pilot, lambda: fix.session_info().state == "reconnecting", tries=500)
            await anyio.to_thread.run_sync(venue.start)
            await until(pilot, lambda: fix.session_info().state == "logged on", tries=1500)
            await until(pilot, lambda: "SESSION swift: logged on" in log_text(app), tries=500)
            await send_ticket(pilot, ["f2", "enter"], side="s")
            await until(pilot, lambda: "T-2" in app.blotter.keys
                        and app.engine.status("T-2").status is OrderStatus.FILLED, tries=500)

            app.draw_slow_panels()
            app.draw_frame()
            await pilot.pause()
            screens += [app.export_screenshot(), log_text(app)]
            await app.shutdown_engine()
    finally:
        if fix is not None:
            await anyio.to_thread.run_sync(fix.close)
        await anyio.to_thread.run_sync(venue.stop)

    # What the search below must cover really was produced.
    assert any(type(e).__name__ == "VenueSessionChanged" for e in events)
    assert "refused: bad credentials" in venue.output()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"journal.sqlite3", "fix-session.sqlite", "sessions.sqlite3", "settings.json"} <= names, names

    found: list[str] = []
    found += leaks("this process's logs", caplog.text)
    found += leaks("log records' args", repr([(r.msg, r.args) for r in caplog.records]))
    found += leaks("the venue process's output", venue.output())
    for path in files:
        if path != venue.password_file:
            found += leaks(str(path.relative_to(tmp_path)), path.read_bytes())
    for event in events:
        for text in texts_of(event):
            found += leaks(f"event {type(event).__name__}", text)
    for text in screens:
        found += leaks("the screen", text)
    for text in errors:
        found += leaks("an exception", text)
    assert not found, found
