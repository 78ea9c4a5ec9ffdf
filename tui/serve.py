"""`execdesk serve`: the desk in a browser tab, through textual-serve.

textual-serve gives the page (xterm.js) and `AppService`, which runs one desk process
per websocket and speaks the Textual web driver's protocol with it. The server around
them is ours, because a desk is not a demo app: it trades.

Rules:

- Loopback only, unless --allow-remote says a non-loopback --host is meant (anyone
  who reaches the port with the token can trade; plain http carries the token in clear).
- A random access token, printed with the URL to open when the server starts
  (`LISTENING`, one line on stdout), is required on the page (`/?token=...`) and on
  the websocket (`/ws/<token>`: the page's script appends `?width=..&height=..` to the
  websocket URL, so the token goes in the path). A wrong or missing token: HTTP 403 and
  a plain message. The token is compared in constant time and never logged.
- One live desk at a time: two desks on the same venues and journal would trade
  against each other's view of the orders. While a desk runs, another tab gets a page
  saying the desk is in use (HTTP 409), and its websocket is refused the same way. A
  desk whose tab has gone, or goes within `RELOAD_GRACE_S` (a reload's old websocket
  may close after its new page is asked for), is waited for: a reload reaches a new
  desk once the old one has exited, never beside it.
- Closing or reloading the tab ends the desk process (textual-serve sends it the web
  driver's "quit"; the desk exits as on SIGTERM) and the desk applies its --on-close
  choice to the orders still working: cancel them (default) or leave them working,
  journaled. The next tab's desk recovers from the journal. A desk that does not exit
  within `DESK_EXIT_S` is sent SIGTERM, then SIGKILL (logged: the journal still
  holds what it did).
- A tab that vanishes without closing (network gone) is noticed by the websocket's
  heartbeat (15 s) and handled as a closed tab. A server that dies (kill -9) closes the
  desk's input; the desk then quits the same way (tui/web_driver.py).
- SIGINT or SIGTERM: the live desk is ended as if its tab closed, then exit 0.
- Bad flags, a refused host, desk options the desk would refuse: a message on stderr
  and exit 2, before anything listens.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import secrets
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from socket import gethostname

import aiohttp_jinja2
import jinja2
import textual_serve
from aiohttp import WSMsgType, web
from textual_serve.app_service import AppService
from textual_serve.download_manager import DownloadManager

from engine.venues.fixio.server import is_loopback

from .serving import serve_until_signalled

LISTENING = "execdesk serve: open {url} (one desk at a time; orders working when its tab closes: {on_close})"
TOKEN_BYTES = 24
DESK_DRIVER = "tui.web_driver:DeskWebDriver"
# Quitting the desk cancels its orders and flushes the journal (the engine waits up to
# 2 s per step); generous, because a SIGKILL after it leaves orders unsaid until recovery.
DESK_EXIT_S = 20.0
# How long a page or websocket waits for the previous desk to finish ending (a reload).
HANDOVER_S = 25.0
# How long it waits for a live desk's tab to go before it is told the desk is in use.
RELOAD_GRACE_S = 3.0

log = logging.getLogger("execdesk.serve")

IN_USE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>execdesk: in use</title></head>
<body style="background:#0c181f;color:#eee;font-family:monospace;padding:3em">
<h1>execdesk is in use</h1>
<p>The desk is open in another tab or browser. One desk runs at a time: two desks would
trade the same venues and journal. Close the other tab (its working orders are handled as
configured on the server), then reload this page.</p>
</body></html>
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="execdesk serve",
        description="Serve the desk in a browser tab (textual-serve): one desk at a time, behind an access "
        "token printed at start. Every option of `execdesk` (--seed, --venues, --journal, --risk, --on-close, "
        "--on-restart, --theme) is passed to the desk.",
        epilog="Closing or reloading the tab quits the desk; --on-close says what becomes of the orders still "
        "working then. The next tab's desk recovers from the journal.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0: any free port, printed)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a --host that is not loopback: anyone who can reach the port and has the "
                        "token can trade, and plain http carries the token in clear (put TLS in front)")
    return parser


class DeskServer:
    """The web server: the page, the websocket and the one desk process behind it.

    `command` is the shell command of a desk process (textual-serve starts it with
    `create_subprocess_shell`); `token` the access token.
    """

    def __init__(self, command: str, token: str, *, host: str = "127.0.0.1", port: int = 8000,
                 title: str = "execdesk") -> None:
        self.command = command
        self.token = token
        self.host = host
        self.port = port
        self.title = title
        self._runner = None
        self._desk: asyncio.Task | None = None  # the live session's websocket handler
        self._desk_ending = False  # its tab has gone; the desk process is quitting
        self._tab_gone = asyncio.Event()  # set once the live desk's tab has gone
        self._ending = asyncio.Event()  # set while no desk runs
        self._ending.set()
        self.sessions = 0  # desks started, for the log and tests

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:

        base = Path(textual_serve.__file__).parent
        app = web.Application()
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(base / "templates"))
        # No /download route: the desk delivers no files, and textual-serve's is unguarded.
        app.add_routes([
            web.get("/", self.page),
            web.get("/ws/{token}", self.websocket),
            web.static("/static", base / "static"),
        ])
        app.on_shutdown.append(self._on_shutdown)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "::", ""):  # every address: this machine's name is one
            host = gethostname()
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/?token={self.token}"

    async def stop(self) -> None:
        """Stop listening and end the live desk as if its tab closed."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._end_live_desk()

    async def _on_shutdown(self, app) -> None:
        await self._end_live_desk()

    async def _end_live_desk(self) -> None:
        task = self._desk
        if task is None:
            return
        if not self._desk_ending:
            task.cancel()  # its handler ends the desk process in its finally
        try:
            await asyncio.wait_for(self._ending.wait(), DESK_EXIT_S + 30)
        except TimeoutError:
            log.error("the desk did not end; stopping anyway")

    # -- requests -------------------------------------------------------------------------------
    def _refused(self, given: str | None):

        if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
            return None
        what = "no access token" if not given else "a wrong access token"
        return web.Response(status=403, text=f"execdesk: {what}; open the URL `execdesk serve` printed "
                            "when it started (it ends with ?token=...).\n")

    async def _free(self) -> bool:
        """Whether no desk runs, after waiting for one that is ending (a reload).

        True means the caller may start one now (nothing awaited after the check)."""
        if self._desk is None:
            return True
        if not self._desk_ending:
            # A reload's new page can arrive before its old websocket's close: a moment's grace.
            try:
                await asyncio.wait_for(self._tab_gone.wait(), RELOAD_GRACE_S)
            except TimeoutError:
                return False
        try:
            await asyncio.wait_for(self._ending.wait(), HANDOVER_S)
        except TimeoutError:
            return False
        return self._desk is None

    def _in_use(self):

        return web.Response(status=409, text=IN_USE, content_type="text/html")

    async def page(self, request):

        refused = self._refused(request.query.get("token"))
        if refused is not None:
            return refused
        if not await self._free():
            return self._in_use()
        # The page's own websocket URL, on the host the browser used (the port may be 0's pick).
        scheme = "wss" if request.secure else "ws"
        context = {
            "font_size": _int(request.query.get("fontsize"), 16),
            "app_websocket_url": f"{scheme}://{request.host}/ws/{self.token}",
            "config": {"static": {"url": "/static/"}},
            "application": {"name": self.title},
        }
        response = aiohttp_jinja2.render_template("app_index.html", request, context)
        # The URL holds the token: never sent on as a Referer, never kept in a cache.
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    async def websocket(self, request):
        refused = self._refused(request.match_info.get("token"))
        if refused is not None:
            return refused
        if not await self._free():
            return self._in_use()
        task = asyncio.current_task()
        assert task is not None
        self._desk, self._desk_ending = task, False
        self._tab_gone.clear()
        self._ending.clear()
        self.sessions += 1
        socket = web.WebSocketResponse(heartbeat=15)
        service = None
        try:
            await socket.prepare(request)
            service = AppService(self.command, write_bytes=_to(socket, socket.send_bytes),
                                 write_str=_to(socket, socket.send_str), close=socket.close,
                                 download_manager=DownloadManager())
            await service.start(_int(request.query.get("width"), 80), _int(request.query.get("height"), 24))
            log.warning("desk session %d started", self.sessions)
            await self._relay(socket, service)
        except asyncio.CancelledError:
            pass  # the server is stopping: the desk ends below, as if the tab closed
        except Exception:
            log.exception("desk session %d failed", self.sessions)
        finally:
            # Its own task: the desk is waited for even if this handler is cancelled now.
            self._desk_ending = True
            self._tab_gone.set()
            await asyncio.shield(asyncio.ensure_future(self._finish(service, socket)))
        return socket

    async def _finish(self, service, socket) -> None:
        try:
            if service is not None:
                await _end_desk(service)
            if not socket.closed:
                await socket.close()
        finally:
            self._desk = None
            self._ending.set()
            log.warning("desk session %d ended", self.sessions)

    async def _relay(self, socket, service) -> None:
        """The browser's keys, sizes and focus to the desk, until the tab goes."""
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                envelope = message.json()
            except ValueError:
                envelope = None
            if not isinstance(envelope, list) or not envelope:
                continue  # not the page's protocol (["stdin", keys], ["focus"], ...): ignored
            kind, data = envelope[0], envelope[1] if len(envelope) > 1 else None
            if kind == "stdin" and isinstance(data, str):
                await service.send_bytes(data.encode("utf-8"))
            elif kind == "resize" and isinstance(data, dict):
                await service.set_terminal_size(_int(data.get("width"), 80), _int(data.get("height"), 24))
            elif kind == "ping":
                await socket.send_json(["pong", data])
            elif kind == "blur":
                await service.blur()
            elif kind == "focus":
                await service.focus()


def _to(socket, send):
    """`send` on the tab's socket, dropping what comes once the tab has gone.

    AppService stops reading the desk's output at the first failed send; the desk, still
    drawing while it cancels its orders, would then block on a full pipe and never exit."""
    async def write(data) -> None:
        if socket.closed:
            return
        try:
            await send(data)
        except (ConnectionError, RuntimeError):
            pass

    return write


async def _end_desk(service) -> None:
    """Quit the desk process (the web driver's "quit": the desk exits as on SIGTERM, applying
    --on-close) and wait for it; SIGTERM, then SIGKILL, if it hangs."""
    # textual-serve 1.1.3 keeps its process private; pinned in pyproject for this.
    process = service._process
    try:
        await asyncio.wait_for(asyncio.shield(service.stop()), DESK_EXIT_S)
    except TimeoutError:
        log.error("the desk did not end within %.0f s of its tab closing", DESK_EXIT_S)
    except Exception:
        log.exception("the desk's end failed")
    if process is None:
        return
    # It has closed its output (stop() returned); the exit itself follows at once.
    for grace, then in ((5.0, process.terminate), (DESK_EXIT_S, process.kill)):
        try:
            await asyncio.wait_for(process.wait(), grace)
            return
        except TimeoutError:
            log.error("the desk process %d did not exit; %s", process.pid, then.__name__)
            try:
                then()
            except ProcessLookupError:
                return
    await process.wait()


def _int(value: object, default: int) -> int:
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return number if 1 <= number <= 10_000 else default


def desk_command(desk_argv: Sequence[str]) -> str:
    """The shell command of one desk process: this Python, `execdesk` with the desk's options.

    `exec`, so the process textual-serve holds (and signals) is the desk itself, not a shell;
    our web driver (tui/web_driver.py), so the desk also ends when the server dies."""
    return f"TEXTUAL_DRIVER={DESK_DRIVER} exec " + shlex.join([sys.executable, "-m", "tui.cli", *desk_argv])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, desk_argv = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    from .cli import build_parser as desk_parser

    # The desk's options are checked here, once, not in every tab: a typo fails the server.
    desk = desk_parser()
    desk.prog = "execdesk serve"
    desk_args = desk.parse_args(desk_argv)
    if desk_args.demo:
        parser.error("--demo is for the terminal desk (it trades by itself)")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0-65535, got {args.port}")
    if not is_loopback(args.host) and not args.allow_remote:
        parser.exit(2, f"execdesk serve: --host {args.host} is not a loopback address: anyone who can reach it "
                       "and has the token could trade on your venues, and plain http carries the token in "
                       "clear; add --allow-remote to mean it (and put TLS in front)\n")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = DeskServer(desk_command(desk_argv), secrets.token_urlsafe(TOKEN_BYTES), host=args.host, port=args.port)
    try:
        return asyncio.run(_serve(server, desk_args.on_close))
    except OSError as exc:
        parser.exit(2, f"execdesk serve: {exc}\n")
    return 0


async def _serve(server: DeskServer, on_close: str) -> int:
    return await serve_until_signalled(server, lambda: LISTENING.format(
        url=server.url, on_close="canceled" if on_close == "cancel" else "left working"))
