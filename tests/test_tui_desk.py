"""The operator's desk in the console (issue 10): the proposed order volume, the risk degree,
driven with Pilot over the fixed FakeClient."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import msgspec
import pytest
from rich.text import Text
from textual.message import Message
from textual.notifications import Notification, Notify
from textual.widgets import Input, Static

from core.models import Direction
from core.protocol import Watchlist
from tests.fake_client import FakeClient, tick
from tui import format as fmt
from tui.app import QTraderApp
from tui.dialogs.confirm import ConfirmDialog
from tui.dialogs.order_entry import OrderEntryDialog
from tui.dialogs.watchlist import AddContractDialog
from tui.screens.account import AccountBar
from tui.screens.dashboard import DashboardScreen
from tui.volumes import VolumeMemory
from tui.widgets.market import MarketTable
from tui.widgets.table import KeyedTable


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
    # more lots than any order may carry (MAX_VOLUME) was never sent: a damaged file, not a proposal
    path.write_text(json.dumps({"last_volume": {"DQ1": {"rb2705.SHFE": 10**30, "au2612.SHFE": 100_001}}}))
    memory = VolumeMemory(DEFAULTS, path)
    assert memory.volume_for("DQ1", "rb2705.SHFE") == 5
    assert memory.volume_for("DQ1", "au2612.SHFE") == 2


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


async def test_a_symbol_typed_in_the_form_gets_its_own_proposed_volume(tmp_path: Path) -> None:
    """The volume proposed for the selected contract is not carried to another one typed in
    the form (5 lots of rb are not 5 lots of au); a volume the operator typed stays."""
    memory = VolumeMemory(DEFAULTS, tmp_path / "s.json")
    memory.remember("DQ1", "rb2705.SHFE", 40)
    app = QTraderApp(FakeClient(), volumes=memory)
    async with app.run_test(size=(160, 45)) as pilot:
        entry = await _entry(app, pilot, "rb2705.SHFE")
        assert entry.query_one("#volume", Input).value == "40"
        entry.query_one("#symbol", Input).value = "au2612.SHFE"
        await pilot.pause()
        assert entry.query_one("#volume", Input).value == "2", "au's own proposal, not rb's 40"
        entry.query_one("#symbol", Input).value = "rb2705.SHFE"
        await pilot.pause()
        assert entry.query_one("#volume", Input).value == "40"
        entry.query_one("#volume", Input).value = "3"  # the operator's own figure
        entry.query_one("#symbol", Input).value = "au2612.SHFE"
        await pilot.pause()
        assert entry.query_one("#volume", Input).value == "3", "what the operator typed is kept"


# --------------------------------------------------------------------------- risk degree


def _set_funds(client: FakeClient, account_id: str, balance: float, margin: float) -> None:
    acc = client.state(account_id).account
    assert acc is not None
    client.apply(account_id, "account", msgspec.structs.replace(acc, balance=balance, margin=margin))


def _risk_text(text: Text) -> tuple[str, str]:
    """The header's risk figure and its style."""
    plain = text.plain
    start = plain.index("risk ") + len("risk ")
    end = plain.index(" ", start) if " " in plain[start:] else len(plain)
    styles = [str(span.style) for span in text.spans if span.start <= start < span.end]
    return plain[start:end], styles[-1] if styles else ""


async def test_risk_degree_in_the_header_and_dashboard_warns_once_per_crossing() -> None:
    client = FakeClient()
    notes: list[Notification] = []

    def hook(message: Message) -> None:
        if isinstance(message, Notify):
            notes.append(message.notification)

    def warnings() -> list[str]:
        return [n.message for n in notes if "risk degree" in n.message]

    app = QTraderApp(client, risk_degree_warning=0.8)
    async with app.run_test(size=(160, 45), message_hook=hook) as pilot:
        bar = app.screen.query_one("#account-bar", AccountBar)
        _set_funds(client, "DQ1", 1_000_000, 420_000)
        await _until(pilot, lambda: bar._shown is not None and "risk 42.0%" in bar._shown.plain, "42 %")
        assert _risk_text(bar._shown)[1] != fmt.RISK_WARNING_STYLE  # type: ignore[arg-type]
        assert warnings() == []

        _set_funds(client, "DQ1", 1_000_000, 812_500)
        await _until(pilot, lambda: "risk 81.2%" in bar._shown.plain, "81.2 %")  # type: ignore[union-attr]
        assert _risk_text(bar._shown) == ("81.2%", fmt.RISK_WARNING_STYLE)  # type: ignore[arg-type]
        await _until(pilot, lambda: len(warnings()) == 1, "one warning")
        assert "DQ1 risk degree 81.2%" in warnings()[0] and "80%" in warnings()[0]

        # hovering at the threshold: no new warning until it has fallen 5 points below it
        for margin in (790_000, 805_000, 760_000, 900_000):
            _set_funds(client, "DQ1", 1_000_000, margin)
            await pilot.pause()
        assert len(warnings()) == 1
        _set_funds(client, "DQ1", 1_000_000, 700_000)
        await pilot.pause()
        _set_funds(client, "DQ1", 1_000_000, 850_000)
        await _until(pilot, lambda: len(warnings()) == 2, "a second crossing warns again")

        # another account crosses: its own warning, whatever screen is shown
        _set_funds(client, "DQ2", 500_000, 450_000)
        await _until(pilot, lambda: any(w.startswith("DQ2 risk degree 90.0%") for w in warnings()), "DQ2")

        _set_funds(client, "DQ1", 0, 0)
        await _until(pilot, lambda: "risk —" in bar._shown.plain, "no balance: a dash")  # type: ignore[union-attr]

        await pilot.press("d")
        await _until(pilot, lambda: isinstance(app.screen, DashboardScreen), "the dashboard")
        table = app.screen.query_one("#accounts", KeyedTable)
        await _until(pilot, lambda: table.get_cell("DQ2", "risk").plain == "90.0%", "DQ2's risk cell")  # type: ignore[union-attr]
        cell = table.get_cell("DQ2", "risk")
        assert isinstance(cell, Text) and str(cell.style) == fmt.RISK_WARNING_STYLE
        assert table.get_cell("DQ1", "risk").plain == "—"  # type: ignore[union-attr]
        dq3 = client.state("DQ3").account
        assert dq3 is not None and dq3.risk_degree is not None
        assert table.get_cell("DQ3", "risk").plain == f"{dq3.risk_degree * 100:.1f}%"  # type: ignore[union-attr]


def test_risk_degree_is_margin_over_balance() -> None:
    from core.models import Account

    assert Account(account_id="A", balance=200.0, margin=50.0).risk_degree == 0.25
    assert Account(account_id="A", balance=0.0, margin=0.0).risk_degree is None
    # margin held with no balance left (穿仓): beyond any threshold, not "no figure"
    assert Account(account_id="A", balance=0.0, margin=50.0).risk_degree == math.inf
    assert Account(account_id="A", balance=-10.0, margin=5.0).risk_degree == math.inf


async def test_a_balance_gone_negative_under_margin_warns_in_red() -> None:
    """The worst case an account can be in (margin held, balance at or below 0) shows in the
    warning colour and notifies, not as a dash."""
    client = FakeClient()
    notes: list[Notification] = []

    def hook(message: Message) -> None:
        if isinstance(message, Notify):
            notes.append(message.notification)

    app = QTraderApp(client, risk_degree_warning=0.8)
    async with app.run_test(size=(160, 45), message_hook=hook) as pilot:
        bar = app.screen.query_one("#account-bar", AccountBar)
        _set_funds(client, "DQ1", -25_000, 300_000)
        await _until(pilot, lambda: any("DQ1 risk degree" in n.message for n in notes), "a warning")
        (note,) = [n.message for n in notes if "DQ1 risk degree" in n.message]
        assert "balance -25,000.00" in note and "inf" not in note, note
        shown = bar._shown
        assert shown is not None
        figure, style = _risk_text(shown)
        assert figure != "—" and "inf" not in figure and style == fmt.RISK_WARNING_STYLE, (figure, style)


# --------------------------------------------------------------------------- watchlist

DQ1_LIST = ["au2612.SHFE", "rb2705.SHFE", "IF2612.CFFEX"]


async def _watching(app: QTraderApp, client: FakeClient, pilot, symbols: list[str]) -> MarketTable:  # type: ignore[no-untyped-def]
    """DQ1's trader says its watchlist: the Market panel lists it, in order."""
    client.apply("DQ1", "watchlist", Watchlist(symbols=symbols))
    market = app.screen.query_one("#market", MarketTable)
    await _until(pilot, lambda: market.row_keys[: len(symbols)] == symbols, f"Market lists {symbols}")
    return market


def _sets(client: FakeClient) -> list[list[str]]:
    return [list(args[1].symbols) for args, _ in client.called("watchlist") if args[1].action == "set"]


async def test_the_market_panel_follows_the_watchlist_and_its_keys_edit_it() -> None:
    client = FakeClient()
    app = QTraderApp(client)
    async with app.run_test(size=(160, 45)) as pilot:
        market = await _watching(app, client, pilot, DQ1_LIST)
        positions = {p.vt_symbol for p in client.state("DQ1").positions.values()}
        strategies = {s.vt_symbol for s in client.state("DQ1").strategies.values()}
        # the contracts of positions and strategies stay quoted, after the watchlist
        assert set(market.row_keys) == (set(DQ1_LIST) | positions | strategies) & set(
            client.state("DQ1").ticks
        )

        # move rb2705 up (ctrl+up), then down twice (J, the tmux-proof key)
        market.move_cursor(market.row_keys.index("rb2705.SHFE"))
        await pilot.press("ctrl+up")
        await _until(
            pilot, lambda: market.row_keys[:3] == ["rb2705.SHFE", "au2612.SHFE", "IF2612.CFFEX"], "moved up"
        )
        assert market.selected_key == "rb2705.SHFE", "the cursor moves with the row"
        await pilot.press("J")
        await _until(pilot, lambda: market.row_keys[:3] == DQ1_LIST, "moved down")
        await pilot.press("J")
        await _until(
            pilot, lambda: market.row_keys[:3] == ["au2612.SHFE", "IF2612.CFFEX", "rb2705.SHFE"], "down"
        )
        assert market.selected_key == "rb2705.SHFE"

        # remove it
        await pilot.press("delete")
        await _until(pilot, lambda: _sets(client)[-1] == ["au2612.SHFE", "IF2612.CFFEX"], "removed")
        assert client.state("DQ1").watchlist == ["au2612.SHFE", "IF2612.CFFEX"]


async def test_i_adds_a_contract_completed_from_the_venues_list_after_the_selected_one() -> None:
    client = FakeClient()
    app = QTraderApp(client)
    async with app.run_test(size=(160, 45)) as pilot:
        market = await _watching(app, client, pilot, DQ1_LIST)
        market.move_cursor(market.row_keys.index("au2612.SHFE"))
        await pilot.press("i")
        await _until(pilot, lambda: isinstance(app.screen, AddContractDialog), "the add dialog")
        dialog = app.screen
        assert isinstance(dialog, AddContractDialog)
        await _until(pilot, lambda: "rb2710.SHFE" in dialog.candidates, "the venue's list loaded")
        assert "au2612.SHFE" not in dialog.candidates, "what is watched is not proposed"
        await pilot.press("r", "b")
        shown = dialog.query_one("#watch-matches", Static)
        await _until(pilot, lambda: "rb2701.SHFE" in str(shown.render()), "the rb months listed")
        assert "rb2705.SHFE" not in str(shown.render())
        await pilot.press("2", "7", "1")
        await pilot.press("tab")  # completes to the one match
        assert dialog.query_one("#watch-symbol", Input).value == "rb2710.SHFE"
        await pilot.press("enter")
        await _until(
            pilot, lambda: market.row_keys[:4] == ["au2612.SHFE", "rb2710.SHFE", *DQ1_LIST[1:]], "added"
        )
        assert _sets(client) == [["au2612.SHFE", "rb2710.SHFE", "rb2705.SHFE", "IF2612.CFFEX"]]

        # one already watched is refused in the dialog; an unknown one by the trader, with its reason
        await pilot.press("i")
        await _until(pilot, lambda: isinstance(app.screen, AddContractDialog), "the add dialog")
        dialog = app.screen
        assert isinstance(dialog, AddContractDialog)
        dialog.query_one("#watch-symbol", Input).value = "rb2705.SHFE"
        await pilot.press("enter")
        error = dialog.query_one("#watch-error", Static)
        await _until(pilot, lambda: "in the watchlist already" in str(error.render()), "refused")
        dialog.query_one("#watch-symbol", Input).value = "zz2705.SHFE"
        await pilot.press("enter")
        await _until(pilot, lambda: not isinstance(app.screen, AddContractDialog), "sent")
        await _until(pilot, lambda: len(client.called("watchlist")) >= 4, "the refused set")
        assert client.state("DQ1").watchlist == ["au2612.SHFE", "rb2710.SHFE", "rb2705.SHFE", "IF2612.CFFEX"]


async def test_m_puts_the_products_main_contract_in_the_selected_ones_place() -> None:
    client = FakeClient()
    notes: list[Notification] = []

    def hook(message: Message) -> None:
        if isinstance(message, Notify):
            notes.append(message.notification)

    app = QTraderApp(client)
    async with app.run_test(size=(160, 45), message_hook=hook) as pilot:
        market = await _watching(app, client, pilot, DQ1_LIST)
        market.move_cursor(market.row_keys.index("rb2705.SHFE"))
        await pilot.press("m")
        # rb2710 has the largest open interest of the rb months the venue lists
        await _until(
            pilot,
            lambda: client.state("DQ1").watchlist == ["au2612.SHFE", "rb2710.SHFE", "IF2612.CFFEX"],
            "rb2710 in rb2705's place",
        )
        await _until(
            pilot, lambda: any("rb2710.SHFE replaces rb2705.SHFE" in n.message for n in notes), "said so"
        )
        note = next(n.message for n in notes if "replaces" in n.message)
        assert "rb2710 2,904,455" in note and "rb2705 2,311,870" in note
        await _until(pilot, lambda: market.row_keys[1] == "rb2710.SHFE", "the Market panel follows")
        market.move_cursor(1)
        await pilot.press("m")  # already the main contract: said, nothing changes
        await _until(
            pilot, lambda: any("rb2710.SHFE is the main contract" in n.message for n in notes), "said"
        )
        assert len(_sets(client)) == 1


def test_the_main_contract_is_the_largest_open_interest_nearest_first_on_a_tie() -> None:
    from core.watchlist import main_contract, of_product

    ticks = {
        s: tick("rb2705.SHFE", "DQ1", open_interest=oi).__copy__()
        for s, oi in (("rb2701.SHFE", 5.0), ("rb2705.SHFE", 9.0), ("rb2710.SHFE", 9.0))
    }
    for s, t in ticks.items():
        t.vt_symbol = s
    assert main_contract(ticks, ["rb2710.SHFE", "rb2705.SHFE", "rb2701.SHFE", "rb2801.SHFE"]) == (
        "rb2705.SHFE",
        {"rb2701.SHFE": 5.0, "rb2705.SHFE": 9.0, "rb2710.SHFE": 9.0},
    )
    assert main_contract(ticks, ["rb2801.SHFE"]) == (None, {})
    listed = ["rb2705.SHFE", "rb2705C3000.SHFE", "rbx2705.SHFE", "ru2705.SHFE", "RB2710.SHFE"]
    assert of_product("rb", listed) == ["RB2710.SHFE", "rb2705.SHFE"]
    assert of_product("", listed) == ["RB2710.SHFE", "rb2705.SHFE", "rbx2705.SHFE", "ru2705.SHFE"]


# --------------------------------------------------------------------------- history


async def test_h_opens_the_history_of_the_account_with_day_totals_and_strategy_records() -> None:
    from core.trade_stats import strategy_stats, trade_report
    from tests.fake_client import NOW
    from tui.screens.history import HistoryScreen

    client = FakeClient()
    state = client.state("DQ1")
    trades = list(state.trades)
    assert trades, "the fake's DQ1 traded"

    def size(vt_symbol: str) -> float | None:
        known = state.contracts.get(vt_symbol)
        return known.size if known is not None else None

    expected = trade_report(trades, size)
    app = QTraderApp(client, clock=lambda: NOW)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("H")
        await _until(pilot, lambda: isinstance(app.screen, HistoryScreen), "the History screen")
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        rows = screen.query_one("#history-trades", KeyedTable)
        await _until(pilot, lambda: rows.row_count == len(trades), "DQ1's trades listed")
        (_args, kwargs), *_ = [c for c in client.called("history") if c[0][1] == "trade_report"]
        assert kwargs["since"] is not None and kwargs["until"] is not None, "a range of trading days"
        days = screen.query_one("#history-days", KeyedTable)
        assert days.row_keys[-1] == "total"
        total = days.get_cell("total", "pnl")
        assert isinstance(total, Text) and total.plain == fmt.amount(expected.total.close_pnl)
        assert days.get_cell("total", "fee").plain == fmt.amount(expected.total.commission)  # type: ignore[union-attr]
        day = trades[-1].datetime.date().isoformat()
        assert day in days.row_keys
        stats = screen.query_one("#history-stats", KeyedTable)
        names = sorted(state.strategies)
        assert stats.row_keys == names
        records = {s.instance: s for s in strategy_stats(trades, state.triggers, size, names)}
        for name in names:
            record = records[name]
            assert stats.get_cell(name, "executed").plain == str(record.executed)  # type: ignore[union-attr]
            assert stats.get_cell(name, "trips").plain == f"{record.wins}/{record.round_trips}"  # type: ignore[union-attr]

        # one contract: only its fills
        symbol = trades[0].vt_symbol
        field = screen.query_one("#history-symbol", Input)
        field.value = symbol
        field.focus()
        await pilot.press("enter")
        mine = [t for t in trades if t.vt_symbol == symbol]
        await _until(pilot, lambda: rows.row_count == len(mine), f"only {symbol}")

        # a range before the fills: none; a date that is not one: said, nothing asked
        screen.query_one("#history-to", Input).value = "2020-01-03"
        screen.query_one("#history-from", Input).value = "2020-01-01"
        await pilot.press("enter")
        await _until(pilot, lambda: rows.row_count == 0, "no trades in 2020")
        asked = len(client.called("history"))
        screen.query_one("#history-from", Input).value = "2026-02-30"
        await pilot.press("enter")
        note = screen.query_one("#history-note", Static)
        await _until(pilot, lambda: "not a date" in str(note.render()), "the bad date said")
        assert len(client.called("history")) == asked
        await pilot.press("escape")
        await _until(pilot, lambda: not isinstance(app.screen, HistoryScreen), "back to the account")
