"""A flush of live data is on the terminal when the flush returns, not at Textual's next screen
tick (``tui/draw.py``). ``draw_now`` uses Textual's private names: these tests fail when Textual
changes them, and say so."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Static

from tests.fake_client import FakeClient, tick
from tui.app import QTraderApp
from tui.draw import draw_now
from tui.screens.help import HelpScreen
from tui.widgets.market import MarketTable

WIDE = (160, 45)
AU = "au2612.SHFE"  # the first row of DQ1's Market panel


async def until(pilot: Pilot[int], predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await pilot.pause(0.02)


def test_textual_still_has_what_draw_now_uses() -> None:
    """If this fails, Textual changed how a screen draws: see tui/draw.py before updating it."""
    screen, widget = Screen(), Widget()
    assert callable(getattr(Screen, "_on_timer_update", None)), "Textual: Screen._on_timer_update is gone"
    assert isinstance(getattr(screen, "_dirty_widgets", None), set), "Textual: Screen._dirty_widgets is gone"
    assert isinstance(getattr(widget, "_repaint_required", None), bool), "Textual: Widget._repaint_required"
    assert isinstance(getattr(widget, "_layout_required", None), bool), "Textual: Widget._layout_required"


def _capture(app: QTraderApp) -> list[str]:
    """What the app sends to the terminal, one string per display (headless: sent nowhere)."""
    shown: list[str] = []
    display = app._display

    def captured(screen: Screen[Any], renderable: Any) -> None:
        if renderable is not None and hasattr(renderable, "render_segments"):
            shown.append(renderable.render_segments(app.console))
        display(screen, renderable)

    app._display = captured  # type: ignore[method-assign]
    return shown


def _flushes(app: QTraderApp, shown: list[str]) -> list[list[str]]:
    """What each of the app's flushes displayed before it returned."""
    during: list[list[str]] = []
    flush = app._flush_changes

    def timed() -> None:
        before = len(shown)
        flush()
        during.append(shown[before:])

    app._flush_changes = timed  # type: ignore[method-assign]
    return during


async def test_a_flushed_quote_is_displayed_before_the_flush_returns() -> None:
    client = FakeClient()
    app = QTraderApp(client)
    async with app.run_test(size=WIDE) as pilot:
        market = app.screen.query_one("#market", MarketTable)
        await until(pilot, lambda: market.row_in_view(AU), "the Market panel")
        await pilot.pause(0.1)
        shown = _capture(app)
        during = _flushes(app, shown)
        for price in (913.48, 913.52, 913.56):  # each quote drawn by its own flush, the last one too
            flushed = len(during)
            client.apply("DQ1", "tick", tick(AU, "DQ1", last_price=price))
            await until(pilot, lambda n=flushed: len(during) > n, "a flush")
            assert any(f"{price:.2f}" in out for out in during[-1]), (price, during[-1])


async def test_under_a_dialog_the_panels_are_left_to_textual_and_the_newest_quote_shows() -> None:
    client = FakeClient()
    app = QTraderApp(client)
    async with app.run_test(size=WIDE) as pilot:
        market = app.screen.query_one("#market", MarketTable)
        await until(pilot, lambda: market.row_in_view(AU), "the Market panel")
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        shown = _capture(app)
        during = _flushes(app, shown)
        client.apply("DQ1", "tick", tick(AU, "DQ1", last_price=913.48))
        client.apply("DQ1", "tick", tick(AU, "DQ1", last_price=913.62))
        await until(pilot, lambda: during, "a flush")
        assert not any("913." in out for out in during[0])  # under the dialog: not drawn by the flush
        await pilot.press("escape")
        await until(pilot, lambda: any("913.62" in out for out in shown), "the newest quote on the terminal")


async def test_a_widget_waiting_for_its_layout_is_left_to_textuals_timer() -> None:
    client = FakeClient()
    app = QTraderApp(client)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause(0.1)
        screen = app.screen
        static = screen.query(Static).first()
        static.update("a longer text than before, which may need another size")
        assert static._layout_required
        assert not draw_now(screen, [static])  # not drawn in its old region
        assert static._repaint_required  # still pending: Textual lays it out and draws it
        await until(pilot, lambda: not static._repaint_required, "Textual's own draw")
