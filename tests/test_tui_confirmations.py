"""What confirmations say: orders as the operator says them, and a margin the account lacks, in red."""

from __future__ import annotations

import pytest
from rich.text import Text
from textual.widgets import Input

from tests.fake_client import FakeClient
from tui.app import QTraderApp
from tui.dialogs.confirm import ConfirmDialog
from tui.dialogs.order_entry import OrderEntryDialog
from tui.screens.account import AccountScreen


@pytest.fixture(autouse=True)
def confirm_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ConfirmDialog, "ARM_DELAY", 0.0)
    monkeypatch.setattr(ConfirmDialog, "REPEAT_GAP", 0.0)


def _rows(dialog: ConfirmDialog) -> dict[str, Text | str]:
    return dict(dialog.rows)


def _plain(cell: Text | str) -> str:
    return cell.plain if isinstance(cell, Text) else cell


async def test_cancel_all_lists_each_order_with_side_offset_and_tick_precision() -> None:
    client = FakeClient()
    app = QTraderApp(client)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("X")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        rows = {label: _plain(value) for label, value in app.screen.rows}
        # au ticks 0.02: two decimals; cu ticks 10: none, with a thousands separator
        assert rows["DQ1-0005"] == "BUY OPEN 2 au2612.SHFE @ 910.00"
        assert rows["DQ1-0004"] == "SELL OPEN 1 cu2701.SHFE @ 86,300"  # its remaining lot
        await pilot.press("n")
        await pilot.pause()
        assert not client.called("cancel_all"), "nothing cancelled on n"


async def _review(app: QTraderApp, pilot, volume: str) -> ConfirmDialog:  # type: ignore[no-untyped-def]
    await pilot.press("b")
    await pilot.pause()
    entry = app.screen
    assert isinstance(entry, OrderEntryDialog)
    entry.query_one("#volume", Input).value = volume
    entry.query_one("#volume", Input).focus()
    await pilot.press("enter")
    await pilot.pause()
    assert isinstance(app.screen, ConfirmDialog)
    return app.screen


async def test_an_open_needing_more_margin_than_available_is_flagged_in_red() -> None:
    client = FakeClient()
    app = QTraderApp(client)
    async with app.run_test(size=(160, 45)) as pilot:
        # DQ1 has 290,241.98 available; one au lot (1000 g at ~912, 12 %) needs ~109,000
        dialog = await _review(app, pilot, "1")
        rows = _rows(dialog)
        assert "WARNING" not in rows
        margin = rows["Est. margin"]
        assert isinstance(margin, Text) and "red" not in str(margin.style)
        await pilot.press("n")  # back to the form with its values
        await pilot.pause()
        assert isinstance(app.screen, OrderEntryDialog)
        await pilot.press("escape")
        await pilot.pause()

        dialog = await _review(app, pilot, "5")
        rows = _rows(dialog)
        margin, available, warning = rows["Est. margin"], rows["Available"], rows["WARNING"]
        assert isinstance(margin, Text) and margin.style == "bold red"
        assert isinstance(available, Text) and available.style == "bold red"
        assert isinstance(warning, Text) and warning.style == "bold red"
        assert warning.plain.startswith("margin exceeds available by ")
        await pilot.press("n")
        await pilot.pause()
        assert not client.called("send_order"), "a warning sends nothing"


# ---------------------------------------------------------------- notifications


def _toasts(app: QTraderApp) -> list:  # type: ignore[type-arg]
    from textual.widgets._toast import Toast

    return list(app.screen.query(Toast))


async def _notified(app: QTraderApp, pilot, n: int) -> list:  # type: ignore[no-untyped-def,type-arg]
    for i in range(n):
        app.notify(f"DQ1 filled BUY OPEN {i + 1} au2612.SHFE @ 912.36", markup=False)
    app.notify("cancel all in DQ1: REJECTED - halted: account is HALTED", severity="error", markup=False)
    for _ in range(100):
        await pilot.pause(0.02)
        toasts = _toasts(app)
        if len(toasts) == min(n + 1, QTraderApp.MAX_TOASTS) and all(t.region.height for t in toasts):
            return toasts
    raise AssertionError("the notifications were not shown")


@pytest.mark.parametrize("size", [(160, 45), (100, 30), (80, 24)])
async def test_notifications_never_cover_the_account_figures(size: tuple[int, int]) -> None:
    app = QTraderApp(FakeClient())
    async with app.run_test(size=size, notifications=True) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, AccountScreen)
        funds = app.screen.query_one("#funds")
        toasts = await _notified(app, pilot, 5)  # a burst: the newest stay, on screen
        assert len(toasts) == QTraderApp.MAX_TOASTS
        assert "REJECTED" in str(toasts[-1].render())
        for toast in toasts:
            assert not toast.region.overlaps(funds.region), (toast.region, funds.region)
            assert toast.region.bottom <= size[1] - 1, "above the footer, inside the screen"


async def test_notifications_on_the_dashboard_stay_above_the_total_line() -> None:
    app = QTraderApp(FakeClient())
    async with app.run_test(size=(160, 45), notifications=True) as pilot:
        await pilot.press("d")
        await pilot.pause()
        totals = app.screen.query_one("#totals")
        toasts = await _notified(app, pilot, 2)
        for toast in toasts:
            assert not toast.region.overlaps(totals.region), (toast.region, totals.region)
