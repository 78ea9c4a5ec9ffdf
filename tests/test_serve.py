"""`execdesk serve`, for real: the server runs as the operator runs it (`python -m tui.cli
serve --port 0`, its own config directory), the tests talk to it as the browser page does
(the page over HTTP, then its websocket at /ws/<token>, keys as ["stdin", ...] messages),
and they read what happened to the orders in the journal the desk process wrote.

Each test checks the processes it started are gone at its end (server and desks).
The screenshot test drives Debian's headless Chromium over the DevTools protocol and
saves the desk as a PNG (`python -m tests.test_serve docs/browser.png` remakes the
README's picture); it skips, saying why, only where no Chromium is installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sqlite3
import struct
import sys
import tomllib
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import psutil
import pytest
from textual.messages import ExitApp

from tests.desk_support import make_app, until
from tests.test_desk import open_orders, send_ticket
from tui.app import DeskApp
from tui.screens.dialogs import ConfirmScreen
from tui.serve import LISTENING

CSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]")
ROOT = Path(__file__).resolve().parent.parent
START_S = 60.0  # a desk starts in a few seconds; a loaded 2-core CI machine is slower
CHROMIUM = os.environ.get("EXECDESK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CTRL_U = "\x15"  # clears the field left of the cursor
REST_PRICE = "48500"  # a bid ~3% under the seed-0 BTC/USD mid: it rests, inside the 5% band


class Served:
    """An `execdesk serve` process and what it printed."""

    def __init__(self, process: asyncio.subprocess.Process, url: str, config: Path) -> None:
        self.process = process
        self.url = url
        self.base, self.token = url.split("/?token=")
        self.config = config
        self.journal = config / "journal.sqlite3"
        self.desks_seen: set[int] = set()

    def desks(self) -> list[psutil.Process]:
        """The desk processes it runs now."""
        try:
            found = [p for p in psutil.Process(self.process.pid).children(recursive=True)
                     if p.status() != psutil.STATUS_ZOMBIE]
        except psutil.NoSuchProcess:
            return []
        self.desks_seen.update(p.pid for p in found)
        return found

    async def desks_gone(self) -> None:
        with anyio.fail_after(START_S):
            while self.desks():
                await anyio.sleep(0.1)

    def ws_url(self, token: str | None = None, width: int = 140, height: int = 40) -> str:
        return self.base.replace("http://", "ws://") + f"/ws/{token or self.token}?width={width}&height={height}"


@asynccontextmanager
async def serve(tmp_path: Path, *args: str) -> AsyncIterator[Served]:
    config = tmp_path / "config"
    env = {**os.environ, "EXECDESK_CONFIG_DIR": str(config)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tui.cli", "serve", "--port", "0", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    served = None
    try:
        with anyio.fail_after(START_S):
            line = (await process.stdout.readline()).decode()
        prefix = LISTENING.split("{url}")[0]
        assert line.startswith(prefix), f"unexpected first line {line!r}"
        served = Served(process, line[len(prefix):].split()[0], config)
        yield served
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            with anyio.fail_after(START_S):
                code = await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError("execdesk serve did not stop on SIGTERM") from None
        assert code in (0, -signal.SIGKILL), (code, (await process.stderr.read()).decode()[-2000:])
        if served is not None:  # no desk outlived the server
            left = [pid for pid in served.desks_seen if psutil.pid_exists(pid)
                    and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
            for pid in left:  # said below; not left behind on the machine
                psutil.Process(pid).kill()
            assert not left, f"desk processes left running: {left}"


class Session:
    """A browser tab's websocket: what the desk drew, and keys to send."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.screen = bytearray()  # everything the desk wrote, escape codes and all

    async def pump(self) -> None:
        async for message in self.socket:
            if message.type == aiohttp.WSMsgType.BINARY:
                self.screen.extend(message.data)

    async def shows(self, text: bytes, since: int = 0) -> int:
        """Wait until the desk has drawn `text` (after byte `since`); where the screen stands."""
        try:
            with anyio.fail_after(START_S):
                while text not in self.text(since):
                    await anyio.sleep(0.05)
        except TimeoutError:
            drawn = re.findall(rb"[A-Za-z][A-Za-z /]{3,}", self.text(since))
            raise AssertionError(f"the desk did not draw {text!r}; it drew {drawn[-60:]}") from None
        return len(self.screen)

    def text(self, since: int = 0) -> bytes:
        """What the desk drew after byte `since`, its escape sequences (colours, moves) taken out."""
        return CSI.sub(b"", self.screen[since:])

    async def keys(self, text: str) -> None:
        await self.socket.send_str(json.dumps(["stdin", text]))


@asynccontextmanager
async def session(served: Served, http: aiohttp.ClientSession) -> AsyncIterator[Session]:
    async with http.ws_connect(served.ws_url()) as socket:
        tab = Session(socket)
        async with anyio.create_task_group() as tg:
            tg.start_soon(tab.pump)
            # What the page sends as it opens: its size, and focus (the terminal has it).
            await socket.send_str(json.dumps(["resize", {"width": 140, "height": 40}]))
            await socket.send_str(json.dumps(["focus"]))
            # The desk is up: the last line its start writes in the Events log, at the bottom of
            # the panel (the welcome above it may never be drawn: a 3-line panel scrolls first).
            await tab.shows(b"RISK limits")
            yield tab
            tg.cancel_scope.cancel()


async def rest_a_bid(tab: Session) -> None:
    """Type a resting LIMIT buy on the ticket, as an operator would."""
    mark = len(tab.screen)
    await tab.keys("b")
    mark = await tab.shows(b"BUY  BTC/USD  LIMIT", mark)  # the ticket, LIMIT (a new desk's), on quantity
    await tab.keys("\t" + CTRL_U)  # to the price, cleared
    mark = await tab.shows(b"Limit price is required", mark)
    await tab.keys(REST_PRICE)
    await tab.shows(b"Ready", mark)  # the ticket checked the price as typed: it would send
    await tab.keys("\r")


def journaled(path: Path) -> list[tuple[Any, ...]]:
    """(client order id, price, status, final, reason) of every order in the journal."""
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=10)
    try:
        return db.execute("SELECT client_order_id, price, status, final, reason FROM orders").fetchall()
    finally:
        db.close()


async def resting(served: Served, tab: Session) -> tuple[Any, ...]:
    """The bid, once the journal has it working at its venue."""
    try:
        with anyio.fail_after(START_S):
            while not (rows := [row for row in journaled(served.journal) if row[2] == "NEW"]):
                await anyio.sleep(0.1)
    except TimeoutError:
        drawn = re.findall(rb"[A-Za-z][A-Za-z /]{3,}", tab.text(len(tab.screen) - 20000))
        raise AssertionError(f"no working order in the journal: {journaled(served.journal)}; "
                             f"the desk drew {drawn[-80:]}") from None
    assert rows[0][1] == float(REST_PRICE)
    return rows[0]


@pytest.mark.anyio
async def test_the_page_and_the_websocket_need_the_token(tmp_path: Path) -> None:
    async with serve(tmp_path) as served, aiohttp.ClientSession() as http:
        assert served.base.startswith("http://127.0.0.1:"), served.url  # loopback by default
        async with http.get(served.url) as page:
            assert page.status == 200
            html = await page.text()
            assert f"/ws/{served.token}" in html and "execdesk" in html
            assert page.headers["Referrer-Policy"] == "no-referrer"  # the URL holds the token
        for url, what in ((served.base + "/?token=guess", "a wrong access token"),
                          (served.base + "/", "no access token"),
                          (served.base + f"/?token={served.token[:-1]}", "a wrong access token")):
            async with http.get(url) as refused:
                assert refused.status == 403
                assert what in await refused.text()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused_ws:
            await http.ws_connect(served.ws_url(token="guess"))
        assert refused_ws.value.status == 403
        assert served.desks() == []  # a refused tab started no desk


@pytest.mark.anyio
async def test_a_closed_tab_cancels_its_orders_and_one_desk_runs_at_a_time(tmp_path: Path) -> None:
    async with serve(tmp_path) as served, aiohttp.ClientSession() as http:
        async with session(served, http) as tab:
            assert b"execdesk" in tab.text()
            [desk] = served.desks()
            # What the page never sends is ignored; the session goes on (the bid below).
            for junk in ("not json", "{}", "[]", "5", '["stdin", 5]', '["resize", "big"]', '["nope"]'):
                await tab.socket.send_str(junk)
            await tab.socket.send_bytes(b"\x00binary")
            await rest_a_bid(tab)
            cid, *_ = await resting(served, tab)
            # A second tab, while this one is live: told the desk is in use, given no desk.
            async with http.get(served.url) as second:
                assert second.status == 409
                assert "execdesk is in use" in await second.text()
            with pytest.raises(aiohttp.WSServerHandshakeError) as second_ws:
                await http.ws_connect(served.ws_url())
            assert second_ws.value.status == 409
            assert [p.pid for p in served.desks()] == [desk.pid]
        # The tab closed and, as a reload does, asked for the page again at once: the page
        # comes once the old desk has quit (canceling the bid) and exited, never beside it.
        async with http.get(served.url) as again:
            assert again.status == 200
            assert served.desks() == []
        assert [(row[0], row[2], row[3]) for row in journaled(served.journal)] == [(cid, "CANCELED", 1)]


@pytest.mark.anyio
async def test_on_close_leave_keeps_the_order_and_the_next_desk_recovers_it(tmp_path: Path) -> None:
    async with serve(tmp_path, "--on-close", "leave") as served, aiohttp.ClientSession() as http:
        async with session(served, http) as tab:
            await rest_a_bid(tab)
            cid, *_ = await resting(served, tab)
        await served.desks_gone()
        # Left working, as journaled: nothing canceled it.
        assert [(row[0], row[2], row[3]) for row in journaled(served.journal)] == [(cid, "NEW", 0)]
        async with session(served, http) as tab:
            # The next desk recovered it from the journal: the simulated venue it rested on
            # ended with the last desk process, and the desk says so.
            # Said in the Events log and in a notice (which a small Events panel cannot scroll away).
            await tab.shows(b"from the journal: ")
            with anyio.fail_after(START_S):
                while journaled(served.journal)[0][3] != 1:
                    await anyio.sleep(0.1)
        [(_, _, status, _, reason)] = journaled(served.journal)
        assert status == "CANCELED" and "ended with the previous process" in reason


@pytest.mark.anyio
async def test_stopping_the_server_ends_the_live_desk_by_its_on_close_choice(tmp_path: Path) -> None:
    async with serve(tmp_path) as served, aiohttp.ClientSession() as http:
        async with session(served, http) as tab:
            await rest_a_bid(tab)
            cid, *_ = await resting(served, tab)
            served.process.send_signal(signal.SIGTERM)  # the tab is still open
            with anyio.fail_after(START_S):
                assert await served.process.wait() == 0
        assert served.desks() == []
        assert [(row[0], row[2]) for row in journaled(served.journal)] == [(cid, "CANCELED")]


@pytest.mark.anyio
async def test_a_killed_server_does_not_orphan_the_desk(tmp_path: Path) -> None:
    async with serve(tmp_path) as served, aiohttp.ClientSession() as http:
        async with session(served, http) as tab:
            await rest_a_bid(tab)
            cid, *_ = await resting(served, tab)
            [desk] = served.desks()
            served.process.kill()  # no chance to quit its desk: the desk sees its input end
            await served.process.wait()
            with anyio.fail_after(START_S):
                while desk.is_running() and desk.status() != psutil.STATUS_ZOMBIE:
                    await anyio.sleep(0.1)
        assert [(row[0], row[2]) for row in journaled(served.journal)] == [(cid, "CANCELED")]


# -- the desk's own end, in process ------------------------------------------------------------


@pytest.mark.parametrize("on_close, left", [("cancel", 0), ("leave", 1)])
@pytest.mark.anyio
async def test_a_desk_ended_from_outside_applies_on_close(tmp_path: Path, on_close: str, left: int) -> None:
    # ExitApp is what Textual's web driver posts on the server's "quit" (a closed tab) and
    # on SIGTERM/SIGINT, and what tui/web_driver.py posts when the server is gone.
    app = make_app(tmp_path)
    app.on_close = on_close
    async with app.run_test(size=(160, 48)) as pilot:
        await send_ticket(pilot, ["enter"])  # a LIMIT at the bid: it rests
        await until(pilot, lambda: len(open_orders(app)) == 1)
        app.post_message(ExitApp())
        await until(pilot, lambda: not app.is_running)
    assert len(open_orders(app)) == left


@pytest.mark.anyio
async def test_the_operators_quit_cancels_even_when_on_close_leaves(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    app.on_close = "leave"  # for ends nobody was asked about; q asks, and yes means cancel
    async with app.run_test(size=(160, 48)) as pilot:
        await send_ticket(pilot, ["enter"])
        await until(pilot, lambda: len(open_orders(app)) == 1)
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running)
    assert open_orders(app) == []


def test_an_unknown_on_close_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_close must be 'cancel' or 'leave', got 'later'"):
        DeskApp(settings_path=tmp_path / "settings.json", on_close="later")


def run_cli(*args: str) -> tuple[int, str]:
    import subprocess

    done = subprocess.run([sys.executable, "-m", "tui.cli", "serve", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    return done.returncode, done.stderr


def test_a_non_loopback_host_needs_allow_remote_and_says_why() -> None:
    code, err = run_cli("--host", "0.0.0.0", "--port", "0")
    assert code == 2
    assert "not a loopback address" in err and "could trade" in err and "--allow-remote" in err


def test_the_desks_options_are_checked_before_serving() -> None:
    code, err = run_cli("--port", "0", "--on-close", "sometimes")
    assert code == 2 and "--on-close" in err and "'cancel', 'leave'" in err


# -- the desk in headless Chromium ------------------------------------------------------------

# Kept before the page's own script runs: every byte the page's websocket brings, as text,
# so the test can read what the canvas shows.
RECORD_SOCKET = """
window.__desk = "";
const Native = window.WebSocket;
window.WebSocket = function (url, protocols) {
  const socket = new Native(url, protocols);
  socket.addEventListener("message", (e) => {
    if (e.data instanceof ArrayBuffer) window.__desk += new TextDecoder().decode(e.data);
  });
  return socket;
};
"""
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,900", "--remote-debugging-port=0", "--remote-allow-origins=*")


class DevTools:
    """Just enough of the DevTools protocol: one page, commands in order."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.next_id = 0
        self.session: str | None = None

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if self.session is not None:
            message["sessionId"] = self.session
        await self.socket.send_str(json.dumps(message))
        while True:
            reply = json.loads((await self.socket.receive()).data)
            if reply.get("id") == self.next_id:
                assert "error" not in reply, (method, reply["error"])
                return reply["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        return result["result"].get("value")


# Keys as xterm.js hears them from the keyboard (DevTools Input.dispatchKeyEvent).
KEYS = {"\t": ("Tab", 9, "\t"), "\r": ("Enter", 13, "\r"), "\x15": ("u", 85, "")}


async def press(tools: DevTools, text: str) -> None:
    for char in text:
        key, code, typed = KEYS.get(char, (char, ord(char.upper()), char))
        modifiers = 2 if char == "\x15" else 0  # ctrl
        await tools.call("Input.dispatchKeyEvent", type="keyDown", key=key, windowsVirtualKeyCode=code,
                         modifiers=modifiers, text=typed)
        await tools.call("Input.dispatchKeyEvent", type="keyUp", key=key, windowsVirtualKeyCode=code,
                         modifiers=modifiers)


async def trade_a_little(tools: DevTools) -> None:
    """For the README's picture: a buy at the touch (it fills) and a bid that rests."""
    await tools.evaluate("document.querySelector('.xterm-helper-textarea').focus()")
    for keys in ("b", "\r", "b", "\t\x15", REST_PRICE.replace("48", "49", 1), "\r"):
        await press(tools, keys)
        await anyio.sleep(1.5)


async def screenshot_desk(url: str, profile: Path, trade: bool = False) -> tuple[bytes, str]:
    """The desk's page in headless Chromium: (PNG bytes, the text its websocket brought);
    `trade`: with two orders typed first."""
    profile.mkdir(parents=True, exist_ok=True)
    browser = await asyncio.create_subprocess_exec(
        CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        with anyio.fail_after(START_S):
            while b"DevTools listening on " not in (line := await browser.stderr.readline()):
                assert line, "chromium exited before it listened"
        endpoint = line.split(b"DevTools listening on ")[1].strip().decode()
        # Chromium's stderr is read no more: drained, so it never blocks on a full pipe.
        drain = asyncio.ensure_future(browser.stderr.read())
        async with aiohttp.ClientSession() as http, http.ws_connect(endpoint, max_msg_size=0) as socket:
            tools = DevTools(socket)
            target = (await tools.call("Target.createTarget", url="about:blank"))["targetId"]
            tools.session = (await tools.call("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
            await tools.call("Page.enable")
            await tools.call("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1,
                             mobile=False)
            await tools.call("Page.addScriptToEvaluateOnNewDocument", source=RECORD_SOCKET)
            await tools.call("Page.navigate", url=url)
            with anyio.fail_after(START_S):
                while not await tools.evaluate(
                        "!!window.__desk && __desk.includes('Orders') && __desk.includes('Latency')"):
                    await anyio.sleep(0.2)
            if trade:
                await trade_a_little(tools)
            # The frame is in xterm.js; two animation frames later it is on the canvas.
            await anyio.sleep(1.0)
            await tools.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            text = await tools.evaluate("window.__desk")
            shot = await tools.call("Page.captureScreenshot", format="png")
            await tools.call("Target.closeTarget", targetId=target)
            helpers = psutil.Process(browser.pid).children(recursive=True)
            tools.session = None
            await tools.call("Browser.close")  # it ends its helper processes itself
        with anyio.fail_after(START_S):
            await browser.wait()
        drain.cancel()
        with anyio.fail_after(START_S):  # none of its helpers outlives it
            while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in helpers):
                await anyio.sleep(0.1)
        import base64

        return base64.b64decode(shot["data"]), text
    finally:
        if browser.returncode is None:
            browser.terminate()
            try:
                with anyio.fail_after(20):
                    await browser.wait()
            except TimeoutError:
                browser.kill()
                await browser.wait()


def png_colours(data: bytes) -> tuple[int, int, set[bytes]]:
    """(width, height, the distinct pixel values) of an 8-bit RGB/RGBA PNG (stdlib only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, bytearray(), None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(bytes(idat))
    stride = width * bpp
    previous = bytearray(stride)
    colours: set[bytes] = set()
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            corner = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        if y % 4 == 0:  # every 4th row is plenty to count colours
            colours.update(bytes(line[x:x + 3]) for x in range(0, stride, bpp * 2))
        previous = line
    return width, height, colours


async def desk_picture(tmp_path: Path, trade: bool = False) -> tuple[bytes, str]:
    async with serve(tmp_path) as served:
        picture = await screenshot_desk(served.url, tmp_path / "chromium", trade)
        await served.desks_gone()  # the closed page ended the desk
        return picture


@pytest.mark.anyio
async def test_the_desk_in_headless_chromium(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install -y chromium; .ci/run installs it)")
    png, text = await desk_picture(tmp_path)
    # The page's own websocket brought the desk: its title and panels.
    for panel in ("execdesk", "Orders", "Venues", "Market", "Latency"):
        assert panel in text
    width, height, colours = png_colours(png)
    assert (width, height) == (1400, 900)
    # Painted on the canvas, not only received: the default theme's own colours are on the
    # picture (its background; bids in the buy colour, asks in the sell colour, in the Market
    # panel), which neither a blank page nor the page's splash has.
    theme = tomllib.loads((ROOT / "themes" / "execdesk-dark.toml").read_text())
    for name, value in (("background", theme["background"]), ("buy", theme["variables"]["buy"]),
                        ("sell", theme["variables"]["sell"])):
        assert bytes.fromhex(value.lstrip("#")) in colours, f"no {name} colour {value} on the picture"
    assert len(colours) >= 24, f"only {len(colours)} colours: nothing drawn?"
    (tmp_path / "desk.png").write_bytes(png)


if __name__ == "__main__":  # python -m tests.test_serve docs/browser.png
    import tempfile

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/browser.png")
    with tempfile.TemporaryDirectory() as scratch:
        png, _ = anyio.run(desk_picture, Path(scratch), True)
    out.write_bytes(png)
    print(f"wrote {out} ({len(png)} bytes)")
