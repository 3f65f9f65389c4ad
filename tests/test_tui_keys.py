"""Keys from the config, and the color scheme."""

from __future__ import annotations

import pytest

from tests.fake_client import FakeClient
from tui import format as fmt
from tui.actions import ACTIONS, BY_ID, validate_keymap
from tui.app import QTraderApp
from tui.dialogs.order_entry import OrderEntryDialog


def test_every_action_has_a_unique_id_and_ctrl_c_is_free() -> None:
    assert len(BY_ID) == len(ACTIONS)
    assert all("ctrl+c" not in a.key for a in ACTIONS)


def test_keymap_validation_names_the_problem() -> None:
    assert validate_keymap({"buy": "f"}) == {"buy": "f"}
    with pytest.raises(ValueError, match=r"ui\.keys\.buyy: unknown action \(expected one of: .*buy"):
        validate_keymap({"buyy": "f"})
    with pytest.raises(ValueError, match="ctrl\\+c is never bound to a trading action"):
        validate_keymap({"cancel_all": "ctrl+c"})


async def test_a_rebound_key_opens_order_entry_and_the_old_one_does_not() -> None:
    app = QTraderApp(FakeClient(), keymap={"buy": "f"})
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("b")
        await pilot.pause()
        assert not isinstance(app.screen, OrderEntryDialog)
        await pilot.press("f")
        await pilot.pause()
        assert isinstance(app.screen, OrderEntryDialog)


def test_color_schemes() -> None:
    assert fmt.signed(1.0, "+1", "cn").style == "bold red"  # China: red is up
    assert fmt.signed(-1.0, "-1", "cn").style == "bold green"
    assert fmt.signed(1.0, "+1", "intl").style == "bold green"
    assert fmt.signed(-1.0, "-1", "intl").style == "bold red"
    assert fmt.signed(0.0, "0", "cn").style == ""


def test_prices_follow_the_tick_and_amounts_have_separators() -> None:
    from core.models import Contract, Exchange

    au = Contract(vt_symbol="au2612.SHFE", symbol="au2612", exchange=Exchange.SHFE, size=1000, pricetick=0.02)
    rb = Contract(vt_symbol="rb2705.SHFE", symbol="rb2705", exchange=Exchange.SHFE, size=10, pricetick=1)
    assert fmt.price(912.3, au) == "912.30"
    assert fmt.price(3150, rb) == "3,150"
    assert fmt.amount(1234567.891) == "1,234,567.89"


async def test_an_account_going_down_interrupts_once_until_it_is_back() -> None:
    from core.models import TraderStatus

    client = FakeClient()
    app = QTraderApp(client)
    shown: list[str] = []
    async with app.run_test(size=(160, 45)) as pilot:
        app.notify = lambda message, **kw: shown.append(message)  # type: ignore[method-assign]
        set_status = client.aggregator.set_status
        set_status("DQ2", TraderStatus.DISCONNECTED, "CTP login failed; retry 1 in 5 s")
        set_status("DQ2", TraderStatus.CONNECTING, "starting")
        set_status("DQ2", TraderStatus.DISCONNECTED, "CTP login failed; retry 2 in 10 s")  # still down
        await pilot.pause()
        assert shown == ["DQ2 disconnected: CTP login failed; retry 1 in 5 s"]
        set_status("DQ2", TraderStatus.CONNECTED)
        set_status("DQ2", TraderStatus.DISCONNECTED, "CTP trade front disconnected: 4097")
        await pilot.pause()
        assert shown[1:] == ["DQ2 disconnected: CTP trade front disconnected: 4097"]


async def test_the_header_shows_the_trading_day_and_the_zone_once() -> None:
    from datetime import datetime

    from core.models import CHINA_TZ
    from tui.screens.account import AccountBar

    moment = [datetime(2026, 12, 4, 20, 59, tzinfo=CHINA_TZ)]  # Friday, before the night session
    app = QTraderApp(FakeClient(), clock=lambda: moment[0])
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        bar = app.screen.query_one("#account-bar", AccountBar)
        assert "trading day 2026-12-07 · times CST" in str(bar.render())  # 20:00 passed: Monday's
        moment[0] = datetime(2026, 12, 4, 14, 0, tzinfo=CHINA_TZ)
        app.screen._show_bar()  # type: ignore[attr-defined]  # what the header's timer does
        assert "trading day 2026-12-04 · times CST" in str(bar.render())
        await pilot.press("d")
        await pilot.pause()
        assert "trading day 2026-12-04 · times CST" in str(app.screen.query_one("#dashboard-bar").render())


async def test_the_header_says_why_the_core_halted_the_account() -> None:
    import msgspec

    from core.models import TradingState
    from tui.screens.account import AccountBar

    client = FakeClient()
    app = QTraderApp(client)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        bar = app.screen.query_one("#account-bar", AccountBar)
        assert "HALTED" not in str(bar.render())
        info = client.state("DQ1").info
        assert info is not None
        halted = msgspec.structs.replace(
            info, trading_state=TradingState.HALTED, halt_reason="database write failed: disk full"
        )
        client.apply("DQ1", "heartbeat", halted)
        await pilot.pause()
        assert "HALTED (database write failed: disk full)" in str(bar.render())
        # the operator's own halt (the kill switch) has no reason to show
        client.apply("DQ1", "heartbeat", msgspec.structs.replace(halted, halt_reason=""))
        await pilot.pause()
        assert "HALTED" in str(bar.render()) and "disk full" not in str(bar.render())
