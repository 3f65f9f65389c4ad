"""The floor of ``bench ui``'s start figure: the smallest Textual app (one Static), run as a
script in the same pseudo-terminal the same way as ``qtrader-tui``; ``q`` quits."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Static

FIRST_FRAME = b"au2612.SHFE"  # what the bench waits for on the terminal


class MinimalApp(App[None]):
    BINDINGS = [("q", "quit", "Quit")]

    def compose(self) -> ComposeResult:
        yield Static(FIRST_FRAME.decode() + "  912.00")


if __name__ == "__main__":
    MinimalApp().run()
