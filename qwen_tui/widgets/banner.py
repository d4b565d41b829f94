"""The connection banner: says plainly when the daemon cannot be reached.

It is hidden while polls succeed. When one fails it shows the client's own
message (which names the socket and how to start the daemon), that the
dashboard keeps retrying, and how old the data still on screen is, so nothing
below it is mistaken for live.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from qwen_daemon.protocol.display import SCREEN
from qwen_tui.poller import Connection


def banner_text(connection: Connection, now: float | None = None) -> Text:
    text = Text()
    text.append("daemon unreachable: ", style="bold")
    text.append(connection.error or "")
    text.append(f"\nretrying every {connection.interval:g}s; ")
    if connection.last_ok is None:
        text.append("no data received yet")
    else:
        text.append(
            f"figures below are from {SCREEN.clock(connection.last_ok, now)} "
            f"({SCREEN.age(connection.last_ok, now)}) and are not live"
        )
    return text


class ConnectionBanner(Static):
    """Bound to the app's `connection` reactive."""

    def on_mount(self) -> None:
        self.watch(self.app, "connection", self._show, init=True)

    def _show(self, connection: Connection | None) -> None:
        if connection is None or connection.error is None:
            self.display = False
            return
        self.update(banner_text(connection))
        self.display = True
