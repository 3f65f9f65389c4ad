"""Snapshot tests of the console's screens (pytest-textual-snapshot).

Every screen is drawn from ``FakeClient``'s fixed data, so nothing moves: no
processes, no live market, times fixed in the data; the text cursor of the
order entry dialog does not blink. The SVGs live in ``tests/__snapshots__/``;
after an intended change of the screens, look at the new pictures and accept
them with ``pytest tests/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from tests.fake_client import NOW, FakeClient
from tui.app import QTraderApp

WIDE = (160, 45)  # where the console should shine
SMALL = (100, 30)  # where it must stay usable


def make_app() -> QTraderApp:
    return QTraderApp(FakeClient(), clock=lambda: NOW)  # the header's trading day stands still


async def steady_cursor(pilot: Pilot[Any]) -> None:
    """A blinking text cursor would make two screenshots differ."""
    await pilot.pause()
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False


@pytest.mark.parametrize("size", [WIDE, SMALL], ids=["160x45", "100x30"])
def test_account_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(), terminal_size=size)


@pytest.mark.parametrize("size", [WIDE, SMALL], ids=["160x45", "100x30"])
def test_dashboard(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(), press=["d"], terminal_size=size)


def test_order_entry_dialog(snap_compare: Any) -> None:
    """``b`` on the first quote (au2612.SHFE): buy, priced at the ask."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.press("b")
        await steady_cursor(pilot)

    assert snap_compare(make_app(), terminal_size=WIDE, run_before=run_before)


def test_order_confirmation(snap_compare: Any) -> None:
    """Enter on the prefilled form: the confirmation shows what will be sent and what it costs."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.press("b")
        await steady_cursor(pilot)
        await pilot.press("enter")

    assert snap_compare(make_app(), terminal_size=WIDE, run_before=run_before)
