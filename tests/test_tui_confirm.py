"""The confirmation dialog: armed only after a moment, answers once."""

from __future__ import annotations

import pytest
from textual.app import App

from tui.dialogs.confirm import ConfirmDialog


class Host(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.answers: list[bool | None] = []

    def on_mount(self) -> None:
        self.push_screen(ConfirmDialog("Send?", [("Account", "DQ1")]), self.answers.append)


async def test_a_held_key_cannot_confirm_and_a_second_press_does_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a long delay, so a loaded machine cannot make the keys below arrive after it
    monkeypatch.setattr(ConfirmDialog, "ARM_DELAY", 60.0)
    app = Host()
    async with app.run_test() as pilot:
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        await pilot.press("enter", "y")  # keys already on their way when it appeared
        assert app.answers == []
        assert app.screen is dialog
        assert not dialog.armed
        dialog._arm()  # what the timer does when the delay is over
        dialog.action_confirm()
        dialog.action_confirm()  # a repeat: ignored
        await pilot.pause()
        assert app.answers == [True]


async def test_abort_works_at_once() -> None:
    app = Host()
    async with app.run_test() as pilot:
        await pilot.press("escape")
        assert app.answers == [False]
