"""The confirmation dialog: only a fresh key press, made after it was shown, sends; it answers once."""

from __future__ import annotations

import pytest
from textual import events
from textual.app import App
from textual.pilot import Pilot

from tui.dialogs.confirm import ConfirmDialog


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
