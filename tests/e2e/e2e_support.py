"""What the browser tests (conftest.py) and `make screenshots` (screenshots.py) share: finding
Debian's chromium, launching it, serving the app on a free port, logging in."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

#: Debian's chromium; the arguments are the ones the team's browser notes verified.
CHROMIUM_FALLBACK = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}


def chromium_executable() -> str | None:
    """Debian's chromium (`apt-get install chromium`), or TAKTFLOW_CHROMIUM; None if absent."""
    chosen = os.environ.get("TAKTFLOW_CHROMIUM")
    if chosen:
        return chosen if Path(chosen).exists() else None
    found = shutil.which("chromium")
    if found:
        return found
    return CHROMIUM_FALLBACK if Path(CHROMIUM_FALLBACK).exists() else None


def launch_chromium(playwright: Any, executable: str) -> Any:
    """Headless chromium at `executable` (never a browser Playwright downloaded)."""
    return playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)


class LiveServer:
    """A WSGI app served by waitress (as `taktflow serve` does, without its worker) on
    127.0.0.1 and a free port, in a background thread."""

    def __init__(self, app: Any, threads: int = 4) -> None:
        from waitress.server import create_server

        self.app = app
        self._server = create_server(app, host="127.0.0.1", port=0, threads=threads)
        self.port = self._server.effective_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.run, name="e2e-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        from waitress import wasyncore

        server = self._server

        def close() -> None:  # runs inside the server's loop, which ends with no sockets left
            server.task_dispatcher.shutdown()
            wasyncore.close_all(server._map)

        server.trigger.pull_trigger(close)
        self._thread.join(timeout=10)


def log_in(page: Any, username: str, password: str) -> None:
    """Log in through /login (the form carries its CSRF token); wait for the next page."""
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("form button[type=submit]")
    if page.url.split("?")[0].endswith("/login"):
        raise AssertionError(f"login as {username} failed")
    page.wait_for_selector("#user-menu")
