"""The operator's desk in the console (issue 10): the proposed order volume, the risk degree,
driven with Pilot over the fixed FakeClient."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from textual.widgets import Input

from core.models import Direction
from tests.fake_client import FakeClient
from tui.app import QTraderApp
from tui.dialogs.confirm import ConfirmDialog
from tui.dialogs.order_entry import OrderEntryDialog
from tui.volumes import VolumeMemory
from tui.widgets.market import MarketTable


async def _until(pilot, what, label: str, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, f"timed out waiting for {label}"
        await pilot.pause(0.01)


@pytest.fixture(autouse=True)
def confirm_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The confirmation's arming delay has its own tests (tests/test_tui_confirm.py)."""
    monkeypatch.setattr(ConfirmDialog, "ARM_DELAY", 0.0)
    monkeypatch.setattr(ConfirmDialog, "REPEAT_GAP", 0.0)


DEFAULTS = {"rb": 5, "au": 2, "IF2612.CFFEX": 3, "default": 4}


async def _entry(app: QTraderApp, pilot, vt_symbol: str, key: str = "b") -> OrderEntryDialog:  # type: ignore[no-untyped-def]
    market = app.screen.query_one("#market", MarketTable)
    market.move_cursor(market.row_keys.index(vt_symbol))
    await pilot.pause()
    await pilot.press(key)
    await pilot.pause()
    entry = app.screen
    assert isinstance(entry, OrderEntryDialog)
    assert entry.query_one("#symbol", Input).value == vt_symbol
    return entry


def test_the_proposed_volume_is_last_sent_then_contract_then_product_then_default(tmp_path: Path) -> None:
    memory = VolumeMemory(DEFAULTS, tmp_path / "console_state.json")
    assert memory.volume_for("DQ1", "rb2705.SHFE") == 5  # product
    assert memory.volume_for("DQ1", "IF2612.CFFEX") == 3  # full symbol before product
    assert memory.volume_for("DQ1", "m2705.DCE") == 4  # default
    assert VolumeMemory().volume_for("DQ1", "m2705.DCE") == 1  # nothing configured
    memory.remember("DQ1", "rb2705.SHFE", 7)
    assert memory.volume_for("DQ1", "rb2705.SHFE") == 7
    assert memory.volume_for("DQ2", "rb2705.SHFE") == 5, "per account"
    again = VolumeMemory(DEFAULTS, tmp_path / "console_state.json")
    assert again.volume_for("DQ1", "rb2705.SHFE") == 7, "kept across console restarts"


def test_an_unreadable_console_state_is_forgotten_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "console_state.json"
    path.write_text("{not json", encoding="utf-8")
    memory = VolumeMemory(DEFAULTS, path)
    assert memory.volume_for("DQ1", "rb2705.SHFE") == 5
    memory.remember("DQ1", "rb2705.SHFE", 2)
    assert json.loads(path.read_text(encoding="utf-8")) == {"last_volume": {"DQ1": {"rb2705.SHFE": 2}}}
    path.write_text(json.dumps({"last_volume": {"DQ1": {"rb2705.SHFE": -3, "au2612.SHFE": "x"}}}))
    assert VolumeMemory(DEFAULTS, path).volume_for("DQ1", "rb2705.SHFE") == 5, "a bad value is dropped"


async def test_b_and_s_open_prefilled_with_the_configured_then_the_last_volume(tmp_path: Path) -> None:
    path = tmp_path / "console_state.json"
    client = FakeClient()
    app = QTraderApp(client, volumes=VolumeMemory(DEFAULTS, path))
    async with app.run_test(size=(160, 45)) as pilot:
        entry = await _entry(app, pilot, "rb2705.SHFE")
        assert entry.query_one("#volume", Input).value == "5", "ui.default_volume rb"
        await pilot.press("escape")
        entry = await _entry(app, pilot, "au2612.SHFE", "s")
        assert entry.query_one("#volume", Input).value == "2"
        entry.query_one("#volume", Input).value = "6"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await _until(pilot, lambda: client.called("send_order"), "the order sent")
        (args, _), *_ = client.called("send_order")
        assert args[1].volume == 6 and args[1].direction is Direction.SHORT
        entry = await _entry(app, pilot, "au2612.SHFE")
        assert entry.query_one("#volume", Input).value == "6", "the last volume sent"
        await pilot.press("escape")
        entry = await _entry(app, pilot, "rb2705.SHFE")
        assert entry.query_one("#volume", Input).value == "5", "per contract"
        await pilot.press("escape")
    # a console started again proposes it too
    app = QTraderApp(FakeClient(), volumes=VolumeMemory(DEFAULTS, path))
    async with app.run_test(size=(160, 45)) as pilot:
        entry = await _entry(app, pilot, "au2612.SHFE")
        assert entry.query_one("#volume", Input).value == "6"


async def test_an_order_not_confirmed_is_not_remembered(tmp_path: Path) -> None:
    app = QTraderApp(FakeClient(), volumes=VolumeMemory(DEFAULTS, tmp_path / "s.json"))
    async with app.run_test(size=(160, 45)) as pilot:
        entry = await _entry(app, pilot, "rb2705.SHFE")
        entry.query_one("#volume", Input).value = "9"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")  # back to the form with the draft
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        entry = await _entry(app, pilot, "rb2705.SHFE")
        assert entry.query_one("#volume", Input).value == "5"
