"""The console's panels laid out by width (issue 15, defect 6), over ``FakeClient``'s fixed data.

At 160x45, 100x30 and 80x24: which columns each panel shows, headers that never run
together, numbers never cut, the Condition not cut while there is room, newest rows first,
an equity chart several lines tall whose time range ``e`` switches (today / 5 days / all,
loaded thinned from the account's stored curve), and dashboard sparklines at every width.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest
from textual.pilot import Pilot
from textual_plotext import PlotextPlot

from core.models import Direction, Offset, Trade
from tests.fake_client import NOW, FakeClient
from tui.app import QTraderApp
from tui.screens.dashboard import AccountsTable
from tui.widgets.activity import LogTable, TriggersTable, _trigger_key
from tui.widgets.equity import RANGES
from tui.widgets.funds import FundsPanel
from tui.widgets.market import MarketTable
from tui.widgets.orders import OrdersTable, TradesTable
from tui.widgets.positions import PositionsTable
from tui.widgets.table import KeyedTable

SIZES = [(160, 45), (100, 30), (80, 24)]
IDS = ["160x45", "100x30", "80x24"]


async def settle(pilot: Pilot[None]) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def text_of(table: KeyedTable, y: int) -> str:
    """A line as drawn, scrolled sideways or not (the whole table line)."""
    return (
        table._build_header().text if y == 0 else table._build_row(table._cells[table.row_keys[y - 1]]).text
    )


def assert_drawn_cleanly(table: KeyedTable) -> None:
    """Fits its panel (no sideways scrolling), one blank at least before every column,
    and every number shown whole."""
    assert table.virtual_size.width <= table.size.width, f"{table.id} scrolls sideways"
    header = text_of(table, 0)
    x = 0
    for key in table.shown_columns:
        assert header[x] == " ", f"{table.id}: no blank before {key}"
        x += 1 + table.column_width(key) + table.cell_padding
    for row_key in table.row_keys:
        for key in table.shown_columns:
            cell = table.get_cell(row_key, key)
            if getattr(cell, "justify", None) == "right":
                assert len(cell.plain.strip()) <= table.column_width(key), f"{table.id}.{key} cut"


EXPECTED: dict[str, dict[str, list[str]]] = {
    "160x45": {
        "orders": [
            "time",
            "id",
            "symbol",
            "side",
            "offset",
            "price",
            "vol",
            "traded",
            "status",
            "ref",
            "msg",
        ],
        "positions": ["symbol", "dir", "vol", "yd", "cost", "last", "pnl"],
        "market": [
            "symbol",
            "state",
            "last",
            "chg",
            "bid",
            "bidv",
            "ask",
            "askv",
            "vol",
            "oi",
            "pre",
            "up",
            "down",
        ],
    },
    "100x30": {  # the depth ladder beside Market and Positions, stacked
        "orders": ["symbol", "side", "price", "vol", "traded", "status"],
        "market": ["symbol", "state", "last", "chg", "bid", "bidv", "ask", "askv"],
        "positions": ["symbol", "dir", "vol", "yd", "cost", "last", "pnl"],
    },
    "80x24": {
        "orders": ["symbol", "side", "price", "vol", "status"],
        "market": ["symbol", "last", "chg"],
        "positions": ["symbol", "dir", "vol", "pnl"],
    },
}


@pytest.mark.parametrize("size", SIZES, ids=IDS)
async def test_panels_show_columns_by_priority(size: tuple[int, int]) -> None:
    app = QTraderApp(FakeClient())
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        screen = app.screen
        for name, columns in EXPECTED[f"{size[0]}x{size[1]}"].items():
            assert screen.query_one(f"#{name}", KeyedTable).shown_columns == columns, name
        for table_type in (MarketTable, PositionsTable, OrdersTable):
            assert_drawn_cleanly(screen.query_one(table_type))


async def test_orders_at_160_keep_their_columns_and_the_message_takes_what_is_left() -> None:
    app = QTraderApp(FakeClient())
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        orders = app.screen.query_one(OrdersTable)
        assert {"offset", "traded", "time", "id", "ref"} <= set(orders.shown_columns)
        assert 12 <= orders.column_width("msg") < 40
        assert orders._table_width == orders.size.width - orders.styles.scrollbar_size_vertical


@pytest.mark.parametrize("size", SIZES, ids=IDS)
async def test_the_tabs_fit_and_the_condition_is_whole_while_there_is_room(size: tuple[int, int]) -> None:
    client = FakeClient()
    app = QTraderApp(client)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        for tab, table_type in (
            ("tab-trades", TradesTable),
            ("tab-triggers", TriggersTable),
            ("tab-log", LogTable),
        ):
            app.screen.query_one("#lower").active = tab  # type: ignore[attr-defined]
            await settle(pilot)
            table = app.screen.query_one(table_type)
            assert_drawn_cleanly(table)
        if size[0] == 160:
            last = client.state("DQ1").triggers[-1]
            condition = "close 12,087 < MA20 12,140 and RSI14 27.5 < 30 and ATR stop 11,950 not hit"
            long = msgspec.structs.replace(last, datetime=NOW + timedelta(seconds=1), condition=condition)
            client.apply("DQ1", "trigger", long)
            app.screen.query_one("#lower").active = "tab-triggers"  # type: ignore[attr-defined]
            await settle(pilot)
            triggers = app.screen.query_one(TriggersTable)
            assert triggers.row_keys[0] == _trigger_key(long)
            assert triggers.column_width("condition") >= len(condition)  # whole: the room is there


async def test_newest_rows_first_and_a_new_trade_comes_on_top() -> None:
    client = FakeClient()
    app = QTraderApp(client)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        screen = app.screen
        state = client.state("DQ1")
        trades = screen.query_one(TradesTable)
        assert trades.row_keys == [t.trade_id for t in reversed(state.trades)]
        triggers = screen.query_one(TriggersTable)
        times = [str(triggers.get_cell(k, "time")) for k in triggers.row_keys]
        assert times == sorted(times, reverse=True)
        log = screen.query_one(LogTable)
        times = [str(log.get_cell(k, "time")) for k in log.row_keys]
        assert times == sorted(times, reverse=True)
        orders = screen.query_one(OrdersTable)
        await pilot.press("o")  # all orders
        created = [state.orders[k].datetime for k in orders.row_keys]
        assert created == sorted(created, reverse=True)
        last = state.trades[-1]
        new = Trade(
            account_id="DQ1",
            trade_id="T-NEW",
            order_id=last.order_id,
            vt_symbol=last.vt_symbol,
            direction=Direction.LONG,
            offset=Offset.OPEN,
            price=last.price,
            volume=1,
            datetime=NOW + timedelta(seconds=5),
        )
        client.apply("DQ1", "trade", new)
        await settle(pilot)
        assert trades.row_keys[0] == "T-NEW"


async def test_the_equity_chart_is_tall_and_e_switches_its_range() -> None:
    client = FakeClient()
    app = QTraderApp(client)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        funds = app.screen.query_one(FundsPanel)
        chart = app.screen.query_one("#equity-chart", PlotextPlot)
        assert chart.display and chart.size.height >= 8
        assert funds.range.name == "today"
        state = client.state("DQ1")
        today = funds.points(state)
        start = RANGES[0].start(NOW)
        assert start is not None and today[0].datetime >= start
        assert today[0].datetime < state.equity[0].datetime  # the stored day, not only the snapshot
        assert "today" in str(app.screen.query_one("#equity-title").render())

        await pilot.press("e")
        await settle(pilot)
        assert funds.range.name == "5 days"
        assert "5 days" in str(app.screen.query_one("#equity-title").render())
        args, kwargs = client.called("history")[-1]
        assert args == ("DQ1", "account_snapshots") and kwargs["every"] == RANGES[1].every
        five = funds.points(state)
        assert five[0].datetime < start - timedelta(days=3)
        assert five[-1].datetime == state.equity[-1].datetime  # up to the live end

        await pilot.press("e")
        await settle(pilot)
        assert funds.range.name == "all"
        assert client.called("history")[-1][1]["since"] is None
        assert funds.points(state)[0].datetime < start - timedelta(days=5)  # back to the first days
        await pilot.press("e")
        assert funds.range.name == "today"


@pytest.mark.parametrize("size", SIZES[1:], ids=IDS[1:])
async def test_a_small_screen_keeps_the_figures_and_a_chart_or_a_sparkline(size: tuple[int, int]) -> None:
    app = QTraderApp(FakeClient())
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        funds = app.screen.query_one(FundsPanel)
        shown = [figure[0] for figure in funds._figures[3:]]  # type: ignore[index]
        assert shown[:2] == ["Balance", "Today P&L"]  # the first by priority, whatever the size
        title = str(app.screen.query_one("#equity-title").render())
        chart = app.screen.query_one("#equity-chart", PlotextPlot)
        assert chart.display or any(c in title for c in "▁▂▃▄▅▆▇█")


@pytest.mark.parametrize("size", SIZES, ids=IDS)
async def test_dashboard_sparklines_show_the_day_at_every_width(size: tuple[int, int]) -> None:
    client = FakeClient()
    app = QTraderApp(client)
    async with app.run_test(size=size) as pilot:
        await pilot.press("d")
        await settle(pilot)
        table = app.screen.query_one(AccountsTable)
        assert "equity" in table.shown_columns
        assert_drawn_cleanly(table)
        width = table.column_width("equity")
        assert width >= 8
        line = str(table.get_cell("DQ1", "equity"))
        assert len(line) == width  # resampled to its column, not the last 16 points
        state = client.state("DQ1")
        day = table.equity_today(state)
        assert len(day) > len(state.equity)  # the stored day, not only what the snapshot had


@pytest.mark.parametrize("size", SIZES, ids=IDS)
async def test_the_conditional_tab_shows_each_condition_whole(size: tuple[int, int]) -> None:
    from core.models import ConditionalOrder, CondKind, CondPrice, Direction, Offset, TriggerOp, TriggerSource
    from tui.widgets.conditional import ConditionalTable

    client = FakeClient()
    cond = ConditionalOrder(
        account_id="DQ1",
        cond_id="COND.20260302140211.1-1",
        vt_symbol="rb2705.SHFE",
        kind=CondKind.STOP_LOSS,
        source=TriggerSource.LAST,
        op=TriggerOp.LE,
        trigger_price=3650.0,
        direction=Direction.SHORT,
        offset=Offset.CLOSE,
        volume=2,
        price_type=CondPrice.BEST,
        trailing=10.0,
        message="armed",
        created_at=NOW,
        updated_at=NOW,
    )
    client.apply("DQ1", "conditional", cond)
    app = QTraderApp(client)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        app.screen.query_one("#lower").active = "tab-conditional"  # type: ignore[attr-defined]
        await settle(pilot)
        table = app.screen.query_one(ConditionalTable)
        assert_drawn_cleanly(table)
        assert table.row_keys == [cond.cond_id]
        words = "last <= 3650 → SELL CLOSE 2 @ bid (stop-loss, trailing 10)"
        assert table.get_cell(cond.cond_id, "what") == words
        if size[0] >= 100:  # whole: the id, the time and the message give way first
            assert table.column_width("what") >= len(words)
