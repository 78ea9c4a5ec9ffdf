"""The desk's driver under `execdesk serve`: Textual's web driver, plus an end when the
server goes.

Textual's `WebDriver` quits the app when the server sends "quit" (a closed tab) or on
SIGINT/SIGTERM. When the server itself dies (kill -9, a crash), the desk's stdin reaches
end of file and its stdout breaks, and the stock driver only stops reading: the desk
would keep running with its orders, reachable by no one. Here end of input, or a write
to a broken pipe, quits the app the same way (ExitApp), so the desk applies --on-close,
stops the engine (journal flushed) and exits. Writes after the pipe broke are dropped.

`tui.serve.desk_command` selects it with TEXTUAL_DRIVER.
"""

from __future__ import annotations

from typing import Any

from textual import messages
from textual.drivers.web_driver import WebDriver


class DeskWebDriver(WebDriver):
    def __init__(self, app: Any, **options: Any) -> None:
        super().__init__(app, **options)
        self.server_gone = False
        write = self._write  # WebDriver writes every frame through this (os.write on stdout)

        def guarded(data: bytes) -> int:
            if not self.server_gone:
                try:
                    return write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self._server_went()
            return len(data)

        self._write = guarded

    def run_input_thread(self) -> None:
        super().run_input_thread()
        if not self.exit_event.is_set():  # not told to stop: stdin ended, the server is gone
            self._server_went()

    def _server_went(self) -> None:
        if self.server_gone:
            return
        self.server_gone = True
        self._app.post_message(messages.ExitApp())  # thread-safe in Textual
