"""What a screen may ask of the console app: the client and a few callables.

Screens are given this, not the app class, so ``tui.app`` (which builds the screens) and
the screens never import each other. ``QTraderApp`` is the one implementation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from core.client import ConsoleClient
from core.protocol import Reply
from tui.volumes import VolumeMemory


class ConsoleHost(Protocol):
    """The app as its screens see it."""

    client: ConsoleClient
    #: ui.color_scheme: cn (red = up) or intl (green = up)
    scheme: str
    #: the current time in exchange time (CST); a test freezes it
    clock: Callable[[], datetime]
    #: what the order entry proposes (last volume sent, ui.default_volume)
    volumes: VolumeMemory
    #: ui.risk_degree_warning (a fraction: 0.8 is 80 %)
    risk_degree_warning: float

    def run_command(self, label: str, call: Awaitable[Reply]) -> None:
        """Await a command's one reply in the background and tell the operator how it went."""

    async def kill(self, account_id: str | None, *, keep_protective: bool = False) -> Reply:
        """The kill switch for one account, or every account with None; ``keep_protective``:
        the protective strategies keep running (the kill dialog's choice)."""

    def show_account(self, account_id: str) -> None:
        """Switch to that account's screen."""
