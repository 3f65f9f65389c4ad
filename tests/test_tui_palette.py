"""The command palette offers what applies on the screen under it, and runs it there."""

from __future__ import annotations

from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot
from textual.screen import Screen

from tests.fake_client import FakeClient
from tui.app import QTraderApp
from tui.dialogs.confirm import ConfirmDialog
from tui.dialogs.order_entry import OrderEntryDialog
from tui.screens.account import AccountScreen
from tui.screens.dashboard import DashboardScreen


def _titles(app: QTraderApp) -> set[str]:
    return {command.title for command in app.get_system_commands(app.screen)}


async def _run_from_palette(app: QTraderApp, pilot: Pilot[None], title: str, expect: type[Screen]) -> None:
    """Type ``title`` into the palette, pick that command, and wait for the ``expect`` screen."""
    await pilot.press("ctrl+p")
    await pilot.pause()
    assert isinstance(app.screen, CommandPalette)
    await pilot.press(*title)
    commands = app.screen.query_one(CommandList)
    for _ in range(100):
        prompts = [str(commands.get_option_at_index(i).prompt) for i in range(commands.option_count)]
        picks = [i for i, prompt in enumerate(prompts) if prompt.split("\n")[0] == title]
        if picks:
            commands.highlighted = picks[0]
            break
        await pilot.pause(0.02)
    else:
        raise AssertionError(f"the palette does not offer {title!r}")
    await pilot.press("enter")
    for _ in range(100):
        if isinstance(app.screen, expect):
            return
        await pilot.pause(0.02)
    raise AssertionError(f"{title!r} from the palette did not open {expect.__name__}")


async def test_the_account_screen_palette_runs_account_actions_there() -> None:
    app = QTraderApp(FakeClient())
    async with app.run_test(size=(160, 45)) as pilot:
        assert isinstance(app.screen, AccountScreen)
        titles = _titles(app)
        assert {"Buy", "Sell", "Close", "Cancel all", "Halt", "Dash", "Quit"} <= titles
        assert not {"Kill all", "Start", "Stop", "Restart", "Open"} & titles  # the dashboard's
        quits = [c for c in app.get_system_commands(app.screen) if c.title == "Quit"]
        assert [c.help for c in quits] == ["Quit (stops the traders this console started)"]
        await _run_from_palette(app, pilot, "Buy", OrderEntryDialog)
        assert app.screen.account_id == "DQ1"


async def test_the_dashboard_palette_offers_its_own_actions_not_the_account_ones() -> None:
    app = QTraderApp(FakeClient())
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        titles = _titles(app)
        assert {"Kill all", "Start", "Stop", "Restart", "Open", "Quit"} <= titles
        assert not {"Buy", "Sell", "Close", "Cancel all", "Halt"} & titles
        await _run_from_palette(app, pilot, "Kill all", ConfirmDialog)
