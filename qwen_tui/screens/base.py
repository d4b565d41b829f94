"""The base of the dashboard's full screens: each says what the poll should fetch for it.

The app polls on behalf of whichever full screen is on top (modals keep the
screen beneath them watched), so a screen declares its needs rather than
calling the daemon itself: the daemon is only ever called from one place.
"""

from __future__ import annotations

from textual.screen import Screen

from qwen_tui.poller import Wants


class DashboardScreen(Screen[None]):
    def wants(self) -> Wants:
        """The runs list and the host are always fetched; this is what comes on top."""
        return Wants()
