"""The settings file: whatever is on disk, the desk starts (defaults and one warning), and saves leave no litter."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.desk_support import make_app, until
from tui.screens.ticket import TicketScreen
from tui.settings import MAX_FILE_BYTES, STALE_TEMP_S, Settings, remove_stale_temps
from tui.ticket_model import DEFAULTS

GOOD_TICKET = {"side": "SELL", "symbol": "ETH/USD", "type": "TWAP", "quantity": "2.5", "duration_s": "120",
               "slices": "12", "venue": "SMART", "tif": "IOC", "profile": "market", "urgency": "high"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def write(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "settings.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob(".settings-*.tmp"))


# -- the bad values, one ticket key at a time ------------------------------------------
BAD_TICKET_VALUES = [
    ("type", "BOGUS", "'BOGUS' is not one of MARKET, LIMIT, ICEBERG, TWAP, VWAP, SMART"),
    ("tif", "XYZ", "'XYZ' is not one of GTC, IOC, FOK, DAY"),
    ("profile", "flat", "'flat' is not one of u_shape, market"),
    ("urgency", None, "None is null, not a string"),
    ("quantity", 5, "5 is a number, not a string"),
    ("quantity", None, "None is null, not a string"),
    ("quantity", "1e120.1", "'1e120.1' is not a number"),
    ("quantity", "nan", "'nan' is not a finite number"),
    ("duration_s", "inf", "'inf' is not a finite number"),
    ("slices", "10.5", "'10.5' is not a whole number"),
    ("side", "sell", "'sell' is not one of BUY, SELL"),
    ("symbol", ["BTC/USD"], "['BTC/USD'] is a list, not a string"),
    ("venue", {"name": "alpha"}, "{'name': 'alpha'} is an object, not a string"),
    ("display_size", True, "True is a boolean, not a string"),
    ("colour", "red", "unknown key"),
]


@pytest.mark.parametrize(("key", "value", "why"), BAD_TICKET_VALUES)
def test_a_bad_ticket_value_is_dropped_and_named_and_the_good_ones_are_kept(
    tmp_path: Path, key: str, value: object, why: str
) -> None:
    ticket = {**GOOD_TICKET, key: value}
    path = write(tmp_path, {"theme": "execdesk-light", "ticket": ticket})
    settings, problem = Settings.load(path)
    expected = {k: v for k, v in GOOD_TICKET.items() if k != key}
    assert settings.ticket == expected
    assert settings.theme == "execdesk-light"
    label = repr(key) if why == "unknown key" else key  # a name the desk does not know is quoted as found
    assert problem == f"settings file {path}: ignored ticket.{label}: {why} (defaults used instead)"


@pytest.mark.parametrize(
    ("value", "kept"),
    [("0.5", "0.5"), (" 1,000 ", " 1,000 "), ("1e3", "1e3"), ("", None)],
)
def test_numbers_are_kept_as_typed_when_they_parse(tmp_path: Path, value: str, kept: str | None) -> None:
    settings, problem = Settings.load(write(tmp_path, {"ticket": {"quantity": value}}))
    assert settings.ticket.get("quantity") == kept
    assert (problem is None) is (kept is not None)


def test_every_dropped_key_is_named_in_one_warning_and_a_long_list_is_cut(tmp_path: Path) -> None:
    path = write(tmp_path, {"ticket": {"type": "BOGUS", "tif": "XYZ", "quantity": "2"}, "extra": 1})
    settings, problem = Settings.load(path)
    assert settings.ticket == {"quantity": "2"}
    assert problem is not None
    assert "ticket.type: 'BOGUS'" in problem and "ticket.tif: 'XYZ'" in problem and "'extra': unknown key" in problem

    many = {f"k{i}": "x" for i in range(20)}
    _, problem = Settings.load(write(tmp_path, {"ticket": many}))
    assert problem is not None
    assert "ticket.'k7': unknown key" in problem and "'k8'" not in problem
    assert problem.endswith("; and 12 more (defaults used instead)")


def test_the_saved_price_is_not_carried_into_a_new_run_and_not_complained_about(tmp_path: Path) -> None:
    settings, problem = Settings.load(write(tmp_path, {"ticket": {"price": "61000", "quantity": "1"}}))
    assert settings.ticket == {"quantity": "1"} and problem is None
    settings, problem = Settings.load(write(tmp_path, {"ticket": {"price": None}}))
    assert settings.ticket == {} and problem is None


def test_a_theme_that_is_not_a_string_is_dropped(tmp_path: Path) -> None:
    settings, problem = Settings.load(write(tmp_path, {"theme": 7, "ticket": {"side": "BUY"}}))
    assert settings.theme is None and settings.ticket == {"side": "BUY"}
    assert problem is not None and "theme: 7 is a number, not a string" in problem


# -- files that are not settings at all ----------------------------------------------------------
WHOLE_FILE_PROBLEMS = [
    ("null", "holds null, not an object"),
    ("[1, 2, 3]", "holds a list, not an object"),
    ('"settings"', "holds a string, not an object"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe junk", "is not UTF-8 text"),
    ('{"theme": "execdesk-light", "ticket": {"quan', "is not valid JSON (Unterminated string"),
    ("", "is not valid JSON (Expecting value: line 1 column 1 (char 0)"),
    ("[" * 100_000, "is nested too deeply"),
    ('{"ticket": 5}', "ignored ticket: a number, not an object"),
    ('{"ticket": null}', "ignored ticket: null, not an object"),
]


@pytest.mark.parametrize(
    ("content", "why"), WHOLE_FILE_PROBLEMS,
    ids=["null", "list", "string", "binary", "truncated", "empty", "deep", "ticket-number", "ticket-null"],
)
def test_a_file_that_is_not_settings_gives_defaults_and_one_warning(
    tmp_path: Path, content: str | bytes, why: str
) -> None:
    path = write(tmp_path, content)
    settings, problem = Settings.load(path)
    assert settings == Settings()
    assert problem is not None and problem.startswith(f"settings file {path}")
    assert why in problem


def test_a_huge_file_is_not_read_whole(tmp_path: Path) -> None:
    path = write(tmp_path, '{"ticket": {}, "pad": "' + "x" * MAX_FILE_BYTES + '"}')
    settings, problem = Settings.load(path)
    assert settings == Settings()
    assert problem == (f"settings file {path} is over {MAX_FILE_BYTES:,} bytes, not a settings file this desk "
                       "wrote; using defaults")


def test_a_missing_file_is_silent_and_an_unreadable_one_is_not(tmp_path: Path) -> None:
    assert Settings.load(tmp_path / "none.json") == (Settings(), None)
    (tmp_path / "dir.json").mkdir()
    settings, problem = Settings.load(tmp_path / "dir.json")
    assert settings == Settings()
    assert problem is not None and "could not be read" in problem and "using defaults" in problem


# -- saving --------------------------------------------------------------------------------------
def test_what_is_saved_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "settings.json"
    assert Settings(theme="execdesk-light", ticket={**GOOD_TICKET, "price": "3000"}).save(path) is None
    assert Settings.load(path) == (Settings(theme="execdesk-light", ticket=GOOD_TICKET), None)
    assert temps(path.parent) == []


def test_a_failed_save_says_why_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "settings.json"
    target.mkdir()  # os.replace cannot put a file over a directory
    (target / "keep").write_text("x")
    problem = Settings(ticket={"quantity": "1"}).save(target)
    assert problem is not None and problem.startswith(f"settings could not be saved to {target}: ")
    assert temps(tmp_path) == []


def test_a_value_json_cannot_write_is_a_message_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    problem = Settings(ticket={"quantity": object()}).save(path)
    assert problem is not None and "Object of type object is not JSON serializable" in problem
    assert not path.exists() and temps(tmp_path) == []


def test_an_interrupted_save_removes_its_temporary_file_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "settings.json"
    Settings(theme="old").save(path)

    def interrupted(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Settings(theme="new").save(path)
    monkeypatch.undo()
    assert temps(tmp_path) == []
    assert Settings.load(path)[0].theme == "old"


def test_load_removes_temporary_files_a_killed_save_left_but_not_a_save_in_progress(tmp_path: Path) -> None:
    stale = tmp_path / ".settings-killed.tmp"
    fresh = tmp_path / ".settings-running.tmp"
    other = tmp_path / ".other-file.tmp"
    for p in (stale, fresh, other):
        p.write_text("{")
    old = time.time() - STALE_TEMP_S - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    Settings.load(tmp_path / "settings.json")
    assert not stale.exists()
    assert fresh.exists() and other.exists()
    assert remove_stale_temps(tmp_path, older_than_s=-60) == 1  # now even the fresh one is "old"
    assert not fresh.exists()


# -- the desk: a bad file on disk never costs the operator a crash ----------------------------------


@pytest.mark.anyio
async def test_the_desk_opens_a_ticket_with_defaults_for_the_fields_a_bad_file_got_wrong(tmp_path: Path) -> None:
    ticket = {"type": "BOGUS", "tif": "XYZ", "profile": "flat", "urgency": None, "quantity": 5,
              "display_size": "0.07", "side": "SELL"}
    write(tmp_path, {"theme": None, "ticket": ticket})
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, TicketScreen))
        screen = app.screen
        assert isinstance(screen, TicketScreen)
        assert screen.values["type"] == DEFAULTS["type"] and screen.values["side"] == "BUY"
        assert screen.values["tif"] == DEFAULTS["tif"]
        assert screen.query_one("#field-quantity").value == DEFAULTS["quantity"]
        assert screen.values["display_size"] == "0.07"  # the good key survived
        await pilot.press("ctrl+t")  # cycle the order type through every field set: none crashes
        for _ in range(6):
            await pilot.press("ctrl+t")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, TicketScreen))
        assert app.is_running
        await app.shutdown_engine()
