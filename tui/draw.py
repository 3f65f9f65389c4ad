"""Drawing a screen at once, right after a flush of live data.

Textual draws on a timer. A widget's ``refresh`` reaches its screen as a message, sent from
the widget's idle handler; the screen's idle handler then resumes its update timer, and the
timer draws on its next tick, at most ``TEXTUAL_FPS`` (60) a second, the tick after a skipped
one up to two periods late. So a flush of quotes waited for three hops through the event loop
(behind everything else the console's loop runs: eight traders' reads with the whole market)
and for the timer: up to 17-33 ms, for a draw of a few changed lines that takes about one.

``draw_now`` does at once what those steps would have done: it hands the screen the widgets
whose repaint is pending (as the screen's ``Update`` handler does) and runs the timer's own
callback (as its tick would). A widget that also waits for a new layout (its size may change)
is left to the timer, which lays out and draws it together: never new content in an old
region, not even for one frame. Textual has no public call for any of this (``App.refresh``
and ``Screen.refresh`` go the same way round, ``TEXTUAL_FPS`` only shortens the timer's period),
so this is the one place that uses its private names; tests/test_tui_draw.py fails if Textual
changes them. The flushes that call it come at most ``MIN_FRAME`` apart (tui/app.py);
everything else is drawn by Textual's timer, as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.screen import Screen
from textual.widget import Widget


def draw_now(screen: Screen[Any], widgets: Iterable[Widget]) -> bool:
    """Draw what is pending of ``widgets`` on ``screen`` now, if it is the screen on top and no
    batch of updates is open; False (nothing done: Textual's timer draws it) otherwise."""
    app = screen.app
    if app.screen is not screen or app._batch_count:
        return False
    dirty = screen._dirty_widgets
    for widget in widgets:
        if widget._repaint_required and not widget._layout_required and widget.display and widget.is_mounted:
            widget._repaint_required = False  # its idle handler would send it to the screen
            dirty.add(widget)
    if not dirty:
        return False
    screen._on_timer_update()  # what the screen's update timer calls: compose, render, display
    return True
