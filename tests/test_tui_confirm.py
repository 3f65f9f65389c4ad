"""The confirmation dialog: only a fresh key press, made after it was shown, sends; it answers once."""

from __future__ import annotations

import pytest
from rich.text import Text
from textual import events
from textual.app import App
from textual.pilot import Pilot

from core.models import StrategyState
from tests.fake_client import FakeClient
from tui.app import QTraderApp
from tui.dialogs.confirm import ConfirmDialog
from tui.dialogs.kill import KillDialog


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Host(App[None]):
    def __init__(self, confirm_keys: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.answers: list[bool | None] = []
        if confirm_keys is not None:
            self.confirm_keys = confirm_keys

    def on_mount(self) -> None:
        self.push_screen(ConfirmDialog("Send?", [("Account", "DQ1")]), self.answers.append)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(ConfirmDialog, "clock", c)
    return c


async def _key(pilot: Pilot[None], clock: Clock, key: str, *, after: float) -> None:
    """``key`` reaches the dialog ``after`` seconds after the previous one."""
    clock.t += after
    pilot.app.post_message(events.Key(key, key if len(key) == 1 else None))
    await pilot.pause()


async def test_a_held_enter_goes_through_no_confirmation(clock: Clock) -> None:
    """30 Enters in 1.2 s (a held key: the form took the first) send nothing, even where
    Enter is configured to confirm: every one of them is a repeat."""
    for keys in (("y",), ("y", "enter")):
        app = Host(keys)
        async with app.run_test() as pilot:
            await _key(pilot, clock, "enter", after=0.5)  # the terminal's repeat delay
            for _ in range(29):
                await _key(pilot, clock, "enter", after=0.025)
            assert app.answers == []
            assert isinstance(app.screen, ConfirmDialog)


async def test_a_held_y_counts_only_once_released_and_pressed_again(clock: Clock) -> None:
    app = Host()
    async with app.run_test() as pilot:
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        await _key(pilot, clock, "y", after=0.1)  # before it could be read
        assert not dialog.armed and app.answers == []
        for _ in range(30):  # held on: repeats past the arming time
            await _key(pilot, clock, "y", after=0.03)
        assert dialog.armed and app.answers == []
        await _key(pilot, clock, "y", after=0.4)  # released, then a new press
        assert app.answers == [True]
        await _key(pilot, clock, "y", after=0.4)  # answered once: a second y does nothing
        assert app.answers == [True]


async def test_y_sends_enter_does_not_unless_configured(clock: Clock) -> None:
    app = Host()
    async with app.run_test() as pilot:
        await _key(pilot, clock, "enter", after=1.0)
        assert app.answers == []
        assert "y: confirm" in str(app.screen.query_one("#confirm-keys").render())
        await _key(pilot, clock, "y", after=1.0)
        assert app.answers == [True]
    app = Host(("y", "enter"))
    async with app.run_test() as pilot:
        assert "y / Enter: confirm" in str(app.screen.query_one("#confirm-keys").render())
        await _key(pilot, clock, "enter", after=1.0)
        assert app.answers == [True]


async def test_abort_works_at_once(clock: Clock) -> None:
    app = Host()
    async with app.run_test() as pilot:
        await pilot.press("escape")
        assert app.answers == [False]


# ---------------------------------------------------------------- the kill switch's one choice


def _with_guard() -> FakeClient:
    """The fixed accounts, DQ1 also running a stop guard (a protective strategy)."""
    client = FakeClient()
    client.apply(
        "DQ1",
        "strategy",
        StrategyState(
            account_id="DQ1",
            name="au_guard",
            class_name="StopGuardStrategy",
            vt_symbol="au2612.SHFE",
            running=True,
            protective=True,
        ),
    )
    return client


def _rows(dialog: ConfirmDialog) -> dict[str, str]:
    return {label: value.plain if isinstance(value, Text) else value for label, value in dialog.rows}


async def test_the_kill_switch_stops_everything_unless_the_operator_keeps_the_guards(clock: Clock) -> None:
    for keep in (False, True):
        client = _with_guard()
        app = QTraderApp(client)
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.press("h")
            dialog = app.screen
            assert isinstance(dialog, KillDialog) and not dialog.keep_protective  # the default
            assert _rows(dialog)["Protective"] == "STOPPED with the rest: au_guard (au2612.SHFE)"
            assert _rows(dialog)["Strategies"] == "2 of 2 running -> stopped"
            assert "p: keep them running" in str(dialog.query_one("#confirm-keys").render())
            if keep:
                await _key(pilot, clock, "p", after=1.0)
                assert dialog.keep_protective
                rows = _rows(dialog)
                assert rows["Protective"].startswith(
                    "KEEP RUNNING au_guard (au2612.SHFE): they may still close"
                )
                assert rows["Strategies"] == "1 of 2 running -> stopped"
                assert "p: stop them too" in str(dialog.query_one("#confirm-keys").render())
                # the rows changed: a y right after it is not read yet and does not send
                await _key(pilot, clock, "y", after=0.3)
                assert client.called("kill_switch") == []
            await _key(pilot, clock, "y", after=1.0)
            await pilot.pause()
            assert client.called("kill_switch") == [(("DQ1",), {"keep_protective": keep})]


async def test_p_toggles_back_and_without_a_guard_there_is_nothing_to_choose(clock: Clock) -> None:
    client = _with_guard()
    app = QTraderApp(client)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("h")
        dialog = app.screen
        assert isinstance(dialog, KillDialog)
        await _key(pilot, clock, "p", after=1.0)
        await _key(pilot, clock, "p", after=1.0)
        assert not dialog.keep_protective and _rows(dialog)["Protective"].startswith("STOPPED")
        await _key(pilot, clock, "n", after=1.0)
        assert client.called("kill_switch") == []

    client = FakeClient()  # nothing protective runs
    app = QTraderApp(client)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("h")
        dialog = app.screen
        assert isinstance(dialog, KillDialog) and "Protective" not in _rows(dialog)
        assert "p:" not in str(dialog.query_one("#confirm-keys").render())
        await _key(pilot, clock, "p", after=1.0)
        await _key(pilot, clock, "y", after=1.0)
        await pilot.pause()
        assert client.called("kill_switch") == [(("DQ1",), {"keep_protective": False})]


async def test_the_kill_all_dialog_offers_the_same_choice(clock: Clock) -> None:
    client = _with_guard()
    app = QTraderApp(client)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("d")  # the dashboard
        await pilot.press("K")
        dialog = app.screen
        assert isinstance(dialog, KillDialog)
        assert _rows(dialog)["Protective"] == "STOPPED with the rest: DQ1 au_guard (au2612.SHFE)"
        await _key(pilot, clock, "p", after=1.0)
        assert _rows(dialog)["DQ1"].endswith("1 strategies stop")
        await _key(pilot, clock, "y", after=1.0)
        await pilot.pause()
        assert client.called("kill_switch") == [((a,), {"keep_protective": True}) for a in client.account_ids]
