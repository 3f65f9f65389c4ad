"""The confirmation dialog: armed only after a moment, answers once."""

from __future__ import annotations

import time

from textual.app import App

from tui.dialogs.confirm import ConfirmDialog


class Host(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.answers: list[bool | None] = []

    def on_mount(self) -> None:
        self.push_screen(ConfirmDialog("Send?", [("Account", "DQ1")]), self.answers.append)


async def test_a_held_key_cannot_confirm_and_a_second_press_does_nothing() -> None:
    app = Host()
    async with app.run_test() as pilot:
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        await pilot.press("enter", "y")  # keys already on their way when it appeared
        assert app.answers == []
        assert app.screen is dialog
        deadline = time.monotonic() + 5
        while not dialog.armed:
            assert time.monotonic() < deadline, "the dialog never armed"
            await pilot.pause(0.02)
        dialog.action_confirm()
        dialog.action_confirm()  # a repeat: ignored
        await pilot.pause()
        assert app.answers == [True]


async def test_abort_works_at_once() -> None:
    app = Host()
    async with app.run_test() as pilot:
        await pilot.press("escape")
        assert app.answers == [False]
