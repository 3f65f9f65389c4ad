"""Console flows driven like an operator: Textual's Pilot over a real TradingManager.

Three sim accounts run as embedded traders (fast to start). DQ1 and DQ2 have no market
timer (``tick_rate`` 0): a test moves their prices by hand, so fills and P&L are
deterministic; DQ3 ticks live the whole time, a busy account beside the one worked on.
Every wait is for a condition, with a deadline.
"""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
from rich.console import Console as RichConsole
from rich.text import Text
from textual import events
from textual.command import CommandInput, CommandList, CommandPalette
from textual.message import Message
from textual.notifications import Notification, Notify
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static

from core.aggregator import AccountState
from core.client import LocalConsoleClient
from core.manager import TradingManager
from core.models import Direction, Offset, Order, OrderRequest, Status, TradingState
from core.protocol import Reply
from gateways.sim import SimGateway
from tests.conftest import CoreEnv, all_connected, sim_account
from tui import format as fmt
from tui.app import QTraderApp
from tui.dialogs.confirm import ConfirmDialog
from tui.dialogs.order_entry import OrderEntryDialog
from tui.screens.account import AccountScreen
from tui.screens.dashboard import DashboardScreen
from tui.widgets.depth import DepthView
from tui.widgets.table import KeyedTable

DQ1_WATCH = ["au2612.SHFE", "rb2705.SHFE", "IF2612.CFFEX"]
DQ2_WATCH = ["ag2612.SHFE", "m2705.DCE"]
DQ3_WATCH = ["sc2701.INE", "TA705.CZCE"]
MAX_ORDER_VOLUME = 5
S = TypeVar("S")

ACCOUNTS = (
    sim_account("DQ1", ", ".join(DQ1_WATCH), seed=1, mode="embedded", rate=0)
    # low enough to be hit from the console; no duplicate window, so a double send would show
    + f"    risk: {{max_order_volume: {MAX_ORDER_VOLUME}, duplicate_window: 0}}\n"
    + sim_account("DQ2", ", ".join(DQ2_WATCH), seed=2, mode="embedded", rate=0)
    + sim_account("DQ3", ", ".join(DQ3_WATCH), seed=3, mode="embedded", rate=5)
)


class SpyClient(LocalConsoleClient):
    """The console's real client, remembering every command the console sends."""

    def __init__(self, manager: TradingManager) -> None:
        super().__init__(manager)
        self.sent: list[tuple[str, str]] = []  # (command, account)
        self.canned: dict[str, Reply] = {}  # command -> the reply to give instead of the core's
        self.kept_protective: list[bool] = []  # each kill switch's choice

    def count(self, command: str) -> int:
        return sum(1 for name, _ in self.sent if name == command)

    async def send_order(self, account_id: str, req: OrderRequest) -> Reply:
        self.sent.append(("send_order", account_id))
        return await super().send_order(account_id, req)

    async def cancel_order(self, account_id: str, order_id: str) -> Reply:
        self.sent.append(("cancel_order", account_id))
        return await super().cancel_order(account_id, order_id)

    async def cancel_all(self, account_id: str, vt_symbol: str | None = None) -> Reply:
        self.sent.append(("cancel_all", account_id))
        return await super().cancel_all(account_id, vt_symbol)

    async def close_position(
        self,
        account_id: str,
        vt_symbol: str,
        direction: Direction,
        *,
        volume: float | None = None,
        price: float | None = None,
    ) -> Reply:
        self.sent.append(("close_position", account_id))
        return await super().close_position(account_id, vt_symbol, direction, volume=volume, price=price)

    async def set_trading_state(self, account_id: str, state: TradingState) -> Reply:
        self.sent.append(("set_trading_state", account_id))
        if "set_trading_state" in self.canned:
            return self.canned["set_trading_state"]
        return await super().set_trading_state(account_id, state)

    async def kill_switch(
        self, account_id: str | None = None, *, keep_protective: bool = False
    ) -> dict[str, Reply]:
        self.sent.append(("kill_switch", account_id or "all"))
        self.kept_protective.append(keep_protective)
        if "kill_switch" in self.canned:
            return {account_id or "DQ1": self.canned["kill_switch"]}
        return await super().kill_switch(account_id, keep_protective=keep_protective)


@dataclass
class Console:
    """The app under test, its pilot, the core behind it and every notification shown."""

    app: QTraderApp
    pilot: Pilot
    manager: TradingManager
    client: SpyClient
    notes: list[Notification] = field(default_factory=list)

    async def until(self, predicate: Callable[[], object], what: str, timeout: float = 20.0) -> None:
        """Let the app run until ``predicate`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
            await self.pilot.pause(0.05)

    async def settled(self) -> None:
        """Every command the console started has had its reply (and said so)."""
        await self.until(
            lambda: not any(w.group == "commands" and not w.is_finished for w in self.app.workers),
            "the console's commands to be answered",
        )
        await self.pilot.pause()

    async def type(self, text: str) -> None:
        await self.pilot.press(*text)

    def state(self, account_id: str) -> AccountState:
        return self.manager.state(account_id)

    async def step(self, account_id: str, vt_symbol: str) -> None:
        """Move one market of a hand-driven account (tick_rate 0) one step; wait for its quote."""
        trader = self.manager.proxies[account_id].embedded
        assert trader is not None and isinstance(trader.gateway, SimGateway)
        state = self.state(account_id)
        before = state.ticks[vt_symbol]
        trader.gateway.step(vt_symbol)
        await self.until(lambda: state.ticks[vt_symbol] is not before, f"the next {vt_symbol} quote")

    @property
    def screen(self) -> AccountScreen:
        screen = self.app.screen
        assert isinstance(screen, AccountScreen), f"expected the account screen, got {screen!r}"
        return screen

    def dialog(self, kind: type[S]) -> S:
        screen = self.app.screen
        assert isinstance(screen, kind), f"expected {kind.__name__}, got {screen!r}"
        return screen

    def header(self) -> str:
        return self.screen.query_one("#account-bar", Static).content.plain  # type: ignore[union-attr]

    def rows(self, table_id: str) -> list[str]:
        table = self.screen.query_one(f"#{table_id}", KeyedTable)
        return table.row_keys

    def cell(self, table_id: str, row: str, column: str) -> Text:
        cell = self.screen.query_one(f"#{table_id}", KeyedTable).get_cell(row, column)
        assert isinstance(cell, Text)
        return cell

    def no_dialog(self) -> None:
        """The account screen is on top again: nothing is waiting for an answer."""
        self.screen  # noqa: B018 - asserts

    async def notified(self, *parts: str, after: int = 0) -> str:
        """Wait for the (``after`` + 1)th notification containing every one of ``parts``."""
        await self.until(lambda: len(self.said(*parts)) > after, f"a notification with {parts}")
        return self.said(*parts)[after]

    def errors(self) -> list[str]:
        return [n.message for n in self.notes if n.severity == "error"]

    def said(self, *parts: str) -> list[str]:
        return [n.message for n in self.notes if all(p in n.message for p in parts)]


@asynccontextmanager
async def console(
    core_env: CoreEnv, *, notifications: bool = False, quit_stops_core: bool = False
) -> AsyncIterator[Console]:
    """The console as ``run_console`` builds it, every trader connected; the core always stops.
    (``run_console`` also asks before quitting: ``quit_stops_core``, off here so that the
    tests' own quit is at once.)"""
    config = core_env.write_config(ACCOUNTS)
    manager = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    client = SpyClient(manager)
    app = QTraderApp(
        client,
        scheme=config.ui.color_scheme,
        start_core=manager.start,
        stop_core=manager.stop,
        quit_stops_core=quit_stops_core,
    )
    notes: list[Notification] = []

    def hook(message: Message) -> None:
        if isinstance(message, Notify):  # kept here: toasts expire
            notes.append(message.notification)

    try:
        async with app.run_test(size=(160, 45), notifications=notifications, message_hook=hook) as pilot:
            c = Console(app=app, pilot=pilot, manager=manager, client=client, notes=notes)
            try:
                await c.until(lambda: all_connected(manager), "every trader connected with quotes", 60)
                await c.until(lambda: len(c.rows("market")) == len(DQ1_WATCH), "DQ1's quotes on screen")
                yield c
            finally:
                await app.action_quit()  # stops the core, as `q` does
    finally:
        await manager.stop()  # whatever happened above


def rendered(renderable: object, width: int = 70) -> str:
    out = RichConsole(file=io.StringIO(), width=width, color_system=None)
    out.print(renderable)
    return out.file.getvalue()  # type: ignore[attr-defined]


def new_orders(c: Console, account_id: str, before: set[str]) -> list[Order]:
    return [o for oid, o in c.state(account_id).orders.items() if oid not in before]


async def shows_account(c: Console, account_id: str, watchlist: list[str]) -> None:
    """The header names ``account_id`` as the one the keys act on; Market shows its symbols."""
    await c.until(lambda: isinstance(c.app.screen, AccountScreen), "the account screen")
    assert c.app.account_id == account_id
    assert c.screen.account_id == account_id
    assert c.header().startswith(f" {account_id} ")
    state = c.state(account_id)

    def quotes_shown() -> bool:
        if sorted(c.rows("market")) != sorted(watchlist):
            return False
        return all(
            c.cell("market", symbol, "last").plain == fmt.price(tick.last_price, state.contracts.get(symbol))
            for symbol, tick in state.ticks.items()
        )

    await c.until(quotes_shown, f"{account_id}'s quotes in the Market panel")


async def focus_panel(c: Console, table_id: str) -> None:
    """Tab to a panel, as the operator does."""
    for _ in range(12):
        if c.app.focused is not None and c.app.focused.id == table_id:
            return
        await c.pilot.press("tab")
    raise AssertionError(f"tab never reached #{table_id}")


async def select_row(c: Console, table_id: str, key: str) -> None:
    """Move the cursor of the focused table down to ``key``'s row."""
    await focus_panel(c, table_id)
    table = c.screen.query_one(f"#{table_id}", KeyedTable)
    for _ in range(table.row_count):
        if table.selected_key == key:
            return
        await c.pilot.press("down")
    assert table.selected_key == key


async def buy_from_market(c: Console, vt_symbol: str, volume: str = "1") -> OrderEntryDialog:
    """Select ``vt_symbol`` in Market, ``b``, type the volume: the order entry dialog."""
    await select_row(c, "market", vt_symbol)
    await c.pilot.press("b")
    entry = c.dialog(OrderEntryDialog)
    assert entry.query_one("#symbol", Input).value == vt_symbol
    await c.type(volume)  # the volume field has the focus, its text selected
    assert entry.query_one("#volume", Input).value == volume
    return entry


def confirm_rows(dialog: ConfirmDialog) -> dict[str, str]:
    return {label: value.plain if isinstance(value, Text) else value for label, value in dialog.rows}


def resting_buy(c: Console, account_id: str, vt_symbol: str, ticks_above_limit_down: int) -> OrderRequest:
    """An order that rests: a bid at (or just above) the limit-down price."""
    tick = c.state(account_id).ticks[vt_symbol]
    contract = c.state(account_id).contracts[vt_symbol]
    return OrderRequest(
        vt_symbol=vt_symbol,
        direction=Direction.LONG,
        offset=Offset.OPEN,
        price=contract.round_price(tick.limit_down + ticks_above_limit_down * contract.pricetick),
        volume=1,
    )


# ====================================================================== 1. switching accounts


@pytest.fixture(autouse=True)
def confirm_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the flows; the confirmation's arming delay and its fresh-press
    rule have their own tests (tests/test_tui_confirm.py)."""
    monkeypatch.setattr(ConfirmDialog, "ARM_DELAY", 0.0)
    monkeypatch.setattr(ConfirmDialog, "REPEAT_GAP", 0.0)


async def test_switching_accounts_by_keys_dashboard_and_palette(core_env: CoreEnv) -> None:
    async with console(core_env) as c:
        await shows_account(c, "DQ1", DQ1_WATCH)
        await c.pilot.press("right_square_bracket")
        await shows_account(c, "DQ2", DQ2_WATCH)
        await c.pilot.press("right_square_bracket")
        await shows_account(c, "DQ3", DQ3_WATCH)
        await c.pilot.press("right_square_bracket")  # wraps around
        await shows_account(c, "DQ1", DQ1_WATCH)
        await c.pilot.press("left_square_bracket")  # and back
        await shows_account(c, "DQ3", DQ3_WATCH)
        await c.pilot.press("2")
        await shows_account(c, "DQ2", DQ2_WATCH)
        await c.pilot.press("7")  # no such account: said so, nothing changes
        assert c.said("there is no account 7")
        await shows_account(c, "DQ2", DQ2_WATCH)

        # the keys act on the account the header names: b opens DQ2's order entry
        await c.pilot.press("b")
        entry = c.dialog(OrderEntryDialog)
        assert entry.account_id == "DQ2"
        assert entry.query_one("#symbol", Input).value in DQ2_WATCH
        await c.pilot.press("escape")
        c.no_dialog()

        # dashboard, then Enter on a row opens that account
        await c.pilot.press("d")
        await c.until(lambda: isinstance(c.app.screen, DashboardScreen), "the dashboard")
        table = c.app.screen.query_one("#accounts", KeyedTable)
        await c.until(lambda: table.row_count == 3, "every account on the dashboard")
        assert c.app.focused is table
        await c.pilot.press("down", "down")
        assert table.selected_key == "DQ3"
        await c.pilot.press("enter")
        await shows_account(c, "DQ3", DQ3_WATCH)
        await c.pilot.press("1")
        await shows_account(c, "DQ1", DQ1_WATCH)

        # command palette: "Switch to account DQ2"
        await c.pilot.press("ctrl+p")
        palette = c.dialog(CommandPalette)
        await c.type("DQ2")
        commands = palette.query_one(CommandList)
        await c.until(
            lambda: (
                commands.highlighted is not None
                and "Switch to account DQ2" in str(commands.get_option_at_index(commands.highlighted).prompt)
            ),
            "the palette to offer 'Switch to account DQ2'",
        )
        assert palette.query_one(CommandInput).value == "DQ2"
        await c.pilot.press("enter")
        await shows_account(c, "DQ2", DQ2_WATCH)


# ====================================================================== 2. buy, fill, P&L


async def test_buy_through_entry_and_confirmation_fills_and_shows_pnl(core_env: CoreEnv) -> None:
    async with console(core_env) as c:
        state = c.state("DQ1")
        symbol = "rb2705.SHFE"  # not the first row: the dialog follows the cursor
        contract = state.contracts[symbol]
        ask = state.ticks[symbol].ask_price_1
        before = set(state.orders)

        entry = await buy_from_market(c, symbol, "2")
        assert str(entry.query_one("#direction", Select).value) == "LONG"
        assert entry.query_one("#price", Input).value == fmt.price(ask, contract).replace(",", "")
        await c.pilot.press("enter")

        confirm = c.dialog(ConfirmDialog)
        rows = confirm_rows(confirm)
        assert rows["Account"] == "DQ1"
        assert rows["Side"] == "BUY"
        assert rows["Offset"] == "OPEN"
        assert rows["Volume"] == "2"
        assert rows["Symbol"] == symbol
        assert rows["Price"] == fmt.price(ask, contract)
        assert rows["Notional"] == fmt.amount(contract.notional(ask, 2))
        assert rows["Est. margin"] == fmt.amount(contract.margin(ask, 2))
        shown = rendered(confirm.query_one("#confirm-rows", Static).content)
        for label, value in rows.items():
            assert label in shown and value in shown, (label, value, shown)
        assert not new_orders(c, "DQ1", before)  # nothing sent before `y`

        await c.pilot.press("y")
        await c.until(lambda: new_orders(c, "DQ1", before), "the order in DQ1's orders")
        [order] = new_orders(c, "DQ1", before)
        await c.until(lambda: state.orders[order.order_id].status is Status.ALLTRADED, "the fill")
        order = state.orders[order.order_id]
        assert (order.vt_symbol, order.direction, order.offset, order.volume, order.price) == (
            symbol,
            Direction.LONG,
            Offset.OPEN,
            2,
            ask,
        )
        await c.notified(f"BUY 2 {symbol}: accepted (order {order.order_id})")
        await c.notified(f"DQ1 filled BUY OPEN 2 {symbol} @ {fmt.price(ask, contract)}")
        assert not c.errors()

        # the position is in the Positions panel; the order moved out of "working"
        row = f"{symbol}|LONG"
        await c.until(lambda: row in c.rows("positions"), "the position on screen")
        assert c.cell("positions", row, "vol").plain == "2"
        assert order.order_id not in c.rows("orders")
        await c.pilot.press("o")  # all orders
        assert order.order_id in c.rows("orders")
        assert c.cell("orders", order.order_id, "status").plain == "ALLTRADED"
        stored = await c.client.history("DQ1", "orders")
        assert stored.ok and [o.order_id for o in stored.result if o.vt_symbol == symbol] == [order.order_id]

        # the price moves: the P&L cell has the sign (and color) of last - cost, both ways
        up, down = fmt.UP_DOWN[c.app.scheme]
        seen: set[int] = set()
        for _ in range(300):
            await c.step("DQ1", symbol)
            last = state.ticks[symbol].last_price
            await c.until(
                lambda last=last: state.positions[(symbol, Direction.LONG)].last_price == last,
                "the position marked to the new price",
            )
            pos = state.positions[(symbol, Direction.LONG)]
            sign = (pos.last_price > pos.price) - (pos.last_price < pos.price)
            if sign == 0 or sign in seen:
                continue
            await c.until(
                lambda pos=pos: c.cell("positions", row, "last").plain == fmt.price(pos.last_price, contract),
                "the new last price on screen",
            )
            pnl = c.cell("positions", row, "pnl")
            assert pnl.plain == fmt.amount(pos.pnl)
            assert pnl.plain.startswith("-") is (sign < 0), (pnl.plain, pos)
            assert pnl.style == (up if sign > 0 else down)
            seen.add(sign)
            if len(seen) == 2:
                break
        assert seen == {1, -1}, "the market never went both ways"


# ====================================================================== 3. close a position


async def test_the_depth_panel_and_the_order_form_follow_the_sims_five_level_book(core_env: CoreEnv) -> None:
    """The sim's five levels come through the trader, the manager and the client: the Depth panel
    shows the selected contract's book and the order form's quote moves with the market."""
    async with console(core_env) as c:
        state = c.state("DQ1")
        symbol = "rb2705.SHFE"
        contract = state.contracts[symbol]
        await select_row(c, "market", symbol)
        depth = c.screen.query_one("#depth", DepthView)

        def ladder() -> list[str]:
            lines = depth.content.plain.splitlines()  # type: ignore[union-attr]
            return [line.split()[2] for line in lines if line.startswith(("Ask", "Bid"))]

        def book() -> list[str]:
            t = state.ticks[symbol]
            return [fmt.price(p, contract) for p, _ in (*reversed(t.asks), *t.bids)]

        await c.until(lambda: ladder() == book(), "the rb2705 book in the Depth panel")
        assert len(set(book())) == 10 and "-" not in book()  # five real levels each side
        await c.step("DQ1", symbol)
        await c.until(lambda: ladder() == book(), "the next rb2705 book in the Depth panel")

        await c.pilot.press("b")
        entry = c.dialog(OrderEntryDialog)
        quote = entry.query_one("#entry-quote", Static)

        def best() -> str:
            t = state.ticks[symbol]
            return f"Bid {fmt.price(t.bid_price_1, contract)} x{t.bid_volume_1:,.0f}   Ask {fmt.price(t.ask_price_1, contract)}"

        assert best() in quote.content.plain  # type: ignore[union-attr]
        for _ in range(5):  # a step may leave the best prices where they were: until they move
            before = best()
            await c.step("DQ1", symbol)
            if best() != before:
                break
        assert best() != before
        await c.until(lambda: best() in quote.content.plain, "the new quote in the order form")  # type: ignore[union-attr]
        await c.pilot.press("escape")
        c.no_dialog()
        assert c.client.count("send_order") == 0


async def test_close_the_selected_position_through_its_confirmation(core_env: CoreEnv) -> None:
    async with console(core_env) as c:
        state = c.state("DQ1")
        for symbol, volume in (("au2612.SHFE", 1), ("IF2612.CFFEX", 2)):
            tick, contract = state.ticks[symbol], state.contracts[symbol]
            req = OrderRequest(
                vt_symbol=symbol,
                direction=Direction.LONG,
                price=contract.round_price(min(tick.ask_price_1 + 5 * contract.pricetick, tick.limit_up)),
                volume=volume,
            )
            assert (await c.manager.send_order("DQ1", req)).ok
        await c.until(lambda: len(c.rows("positions")) == 2, "two positions on screen")

        # `c` needs a position selected: from the Market panel it only says so
        await c.pilot.press("c")
        assert c.said("Select a position in the Positions panel first")
        c.no_dialog()

        target = "IF2612.CFFEX"
        await select_row(c, "positions", f"{target}|LONG")
        bid = state.ticks[target].bid_price_1
        await c.pilot.press("c")
        confirm = c.dialog(ConfirmDialog)
        assert confirm.title_text == f"Close LONG 2 {target} in DQ1?"
        rows = confirm_rows(confirm)
        assert (rows["Account"], rows["Side"], rows["Volume"], rows["Symbol"]) == ("DQ1", "SELL", "2", target)
        assert rows["Offset"] == "CLOSE 2"
        assert rows["Price"] == fmt.price(bid, state.contracts[target])
        assert c.client.count("close_position") == 0

        await c.pilot.press("y")
        await c.until(lambda: (target, Direction.LONG) not in state.positions, "the position closed")
        await c.until(lambda: f"{target}|LONG" not in c.rows("positions"), "the position gone from the panel")
        assert c.rows("positions") == ["au2612.SHFE|LONG"]  # the other one was not touched
        assert ("au2612.SHFE", Direction.LONG) in state.positions
        await c.notified(f"close long {target}: accepted")
        await c.notified(f"DQ1 filled SELL CLOSE 2 {target} @ {fmt.price(bid, state.contracts[target])}")
        await c.settled()
        assert c.client.count("close_position") == 1
        assert not c.errors()


# ====================================================================== 4. rejections


async def test_invalid_fields_are_explained_in_the_dialog_and_send_nothing(core_env: CoreEnv) -> None:
    async with console(core_env) as c:
        state = c.state("DQ1")
        symbol = "au2612.SHFE"
        contract = state.contracts[symbol]
        before = set(state.orders)
        entry = await buy_from_market(c, symbol, "0")
        error = entry.query_one("#entry-error", Static)

        async def refused(*parts: str) -> None:
            await c.pilot.press("enter")
            assert c.app.screen is entry, "the form went on to a confirmation"
            text = error.content.plain  # type: ignore[union-attr]
            for part in parts:
                assert part in text, (part, text)

        await refused("Volume: must be a whole number of lots above 0, got 0")
        await c.pilot.press("backspace")
        await c.type("1.5")
        await refused("Volume: must be a whole number of lots above 0, got 1.5")
        await c.pilot.press(*["backspace"] * 3)
        await c.type("1")

        await c.pilot.press("shift+tab")  # to the price
        assert c.app.focused is entry.query_one("#price", Input)
        off_grid = f"{state.ticks[symbol].ask_price_1 + contract.pricetick / 2:.{contract.decimals + 1}f}"
        await c.type(off_grid)
        await refused(f"Price: {off_grid} is not on the {contract.pricetick:g} tick grid of {symbol}")
        above = fmt.price(state.ticks[symbol].limit_up + contract.pricetick, contract).replace(",", "")
        await c.pilot.press("home", "shift+end")  # select it all
        await c.type(above)
        await refused(f"Price: {above} is above today's limit-up")

        for _ in range(4):  # back to the symbol
            await c.pilot.press("shift+tab")
        assert c.app.focused is entry.query_one("#symbol", Input)
        await c.type("zz2612.SHFE")
        await refused("Symbol: unknown contract 'zz2612.SHFE' in DQ1", symbol)

        await c.pilot.press("escape")
        c.no_dialog()  # nothing was confirmed
        await c.settled()
        assert c.client.count("send_order") == 0
        assert not new_orders(c, "DQ1", before)
        assert not c.errors()


async def test_a_risk_rejection_is_an_error_notification_and_nothing_fills(core_env: CoreEnv) -> None:
    async with console(core_env) as c:
        state = c.state("DQ1")
        symbol = "au2612.SHFE"
        before = set(state.orders)
        too_many = str(MAX_ORDER_VOLUME + 1)
        await buy_from_market(c, symbol, too_many)  # the dialog has no volume limit: the trader has
        await c.pilot.press("enter")
        c.dialog(ConfirmDialog)
        await c.pilot.press("y")
        reason = f"max_order_volume: volume {too_many} > limit {MAX_ORDER_VOLUME}"
        await c.notified("REJECTED")
        await c.settled()
        assert c.errors() == [f"BUY {too_many} {symbol}: REJECTED - {reason}"]
        await c.until(lambda: new_orders(c, "DQ1", before), "the refused order on record")
        [order] = new_orders(c, "DQ1", before)
        assert order.status is Status.REJECTED and order.status_msg == reason
        assert order.traded == 0
        assert not state.trades and not state.positions
        assert not c.rows("positions")
        assert not c.said("filled")


async def test_a_close_sent_in_part_is_a_warning_that_says_what_is_working(core_env: CoreEnv) -> None:
    async with console(core_env) as c:
        error = (
            "sent CLOSEYESTERDAY 3 (order v1); refused CLOSETODAY 2: order_rate: 2 orders in 1 s > limit 1"
        )

        async def partly() -> Reply:
            return Reply(
                ok=False, error=error, result={"order_id": "v1,LOCAL.x", "partial": True, "orders": []}
            )

        c.app.run_command("SELL 5 rb2705.SHFE", partly())
        said = await c.notified("PARTLY SENT")
        assert said == f"SELL 5 rb2705.SHFE: PARTLY SENT - {error}"
        assert not c.errors()  # not shown as a rejection: those orders are working


# ====================================================================== 5. one confirmation, one order


async def test_a_confirmation_sends_once_however_often_it_is_confirmed(core_env: CoreEnv) -> None:
    async with console(core_env) as c:
        state = c.state("DQ1")
        symbol = "au2612.SHFE"

        async def count_orders(expected: int) -> None:
            await c.settled()
            await c.until(lambda: len(state.orders) == expected, f"{expected} orders in DQ1's state")
            stored = await c.client.history("DQ1", "orders")
            assert stored.ok and len(stored.result) == expected
            assert c.client.count("send_order") == expected

        # two presses, each waited for
        await buy_from_market(c, symbol)
        await c.pilot.press("enter")
        c.dialog(ConfirmDialog)
        await c.pilot.press("y", "y")
        await count_orders(1)

        # key repeat: both keys queued before the first is handled (y, then y / Enter)
        for second in ("y", "enter"):
            await buy_from_market(c, symbol)
            await c.pilot.press("enter")
            c.dialog(ConfirmDialog)
            for key in ("y", second):
                c.app.post_message(events.Key(key, key if len(key) == 1 else None))
            await c.until(lambda: isinstance(c.app.screen, AccountScreen), "the confirmation closed")
        await count_orders(3)

        # and the dialog itself answers once, should two confirmations reach it
        await buy_from_market(c, symbol)
        await c.pilot.press("enter")
        confirm = c.dialog(ConfirmDialog)
        confirm.action_confirm()
        confirm.action_confirm()
        await c.until(lambda: isinstance(c.app.screen, AccountScreen), "the confirmation closed")
        await count_orders(4)
        assert not c.errors()
        assert all(o.status is Status.ALLTRADED for o in state.orders.values())


# ====================================================================== 6. cancel, cancel all


async def test_cancel_the_selected_order_and_cancel_all_with_its_confirmation(core_env: CoreEnv) -> None:
    async with console(core_env) as c:
        await c.pilot.press("2")
        await shows_account(c, "DQ2", DQ2_WATCH)
        state = c.state("DQ2")
        ids = []
        for n in range(3):  # resting bids, each a tick apart (never a duplicate)
            reply = await c.manager.send_order("DQ2", resting_buy(c, "DQ2", "m2705.DCE", n))
            assert reply.ok, reply.error
            ids.append(reply.result["order_id"])
        await c.until(lambda: c.rows("orders") == ids[::-1], "three working orders on screen, newest first")

        # x on the Market panel: nothing is selected in Orders, nothing is sent
        await c.pilot.press("x")
        assert c.said("Select an order in the Orders panel first")

        await select_row(c, "orders", ids[1])
        await c.pilot.press("x")
        await c.until(lambda: state.orders[ids[1]].status is Status.CANCELLED, "the selected order cancelled")
        await c.until(lambda: c.rows("orders") == [ids[2], ids[0]], "the cancelled order gone from 'working'")
        await c.notified(f"cancel {ids[1]}: accepted")
        await c.settled()
        assert c.client.count("cancel_order") == 1

        # X asks first; n and Esc send nothing
        for abort in ("n", "escape"):
            await c.pilot.press("X")
            confirm = c.dialog(ConfirmDialog)
            assert confirm.title_text == "Cancel ALL working orders of DQ2?"
            assert confirm_rows(confirm)["Working orders"] == "2"
            await c.pilot.press(abort)
            c.no_dialog()
            await c.settled()
            assert c.client.count("cancel_all") == 0
            assert [o.order_id for o in state.working_orders] == [ids[0], ids[2]]
            assert c.rows("orders") == [ids[2], ids[0]]

        await c.pilot.press("X")
        c.dialog(ConfirmDialog)
        await c.pilot.press("y")
        await c.until(lambda: not state.working_orders, "no working orders")
        await c.until(lambda: not c.rows("orders"), "an empty Orders panel")
        await c.notified("cancel all in DQ2: accepted")
        await c.settled()
        assert c.client.count("cancel_all") == 1  # and so none from n / Esc
        assert all(state.orders[i].status is Status.CANCELLED for i in ids)
        assert not c.errors()

        await c.pilot.press("X")  # nothing left: no confirmation, just the news
        c.no_dialog()
        assert c.said("DQ2 has no working orders")
        assert not c.state("DQ1").orders  # the other accounts were never touched


# ====================================================================== 7. halt


async def test_after_the_kill_switch_a_position_can_be_flattened_through_reducing(core_env: CoreEnv) -> None:
    async with console(core_env) as c:
        state = c.state("DQ1")
        target = "IF2612.CFFEX"

        def trading_state() -> TradingState | None:
            return state.info.trading_state if state.info is not None else None

        tick, contract = state.ticks[target], state.contracts[target]
        req = OrderRequest(
            vt_symbol=target,
            direction=Direction.LONG,
            price=contract.round_price(min(tick.ask_price_1 + 5 * contract.pricetick, tick.limit_up)),
            volume=2,
        )
        assert (await c.manager.send_order("DQ1", req)).ok
        await c.until(lambda: (target, Direction.LONG) in state.positions, "a position")
        await c.pilot.press("h")
        kill = c.dialog(ConfirmDialog)
        assert "R is close-only" in confirm_rows(kill)["Positions"]  # what the dialog says is possible
        await c.pilot.press("y")
        await c.until(lambda: trading_state() is TradingState.HALTED, "DQ1 halted")

        await select_row(c, "positions", f"{target}|LONG")
        await c.pilot.press("c")
        confirm = c.dialog(ConfirmDialog)
        assert confirm.title_text == "DQ1 is HALTED: switch it to REDUCING (close-only) and close?"
        assert confirm_rows(confirm)["Trading state"].startswith("HALTED -> REDUCING")
        await c.pilot.press("y")
        await c.until(lambda: (target, Direction.LONG) not in state.positions, "the position closed")
        assert trading_state() is TradingState.REDUCING
        await c.notified(f"close long {target}: accepted")
        assert not c.errors()

        # R: close-only off again, and on
        await c.pilot.press("R")
        back = c.dialog(ConfirmDialog)
        assert back.title_text == "DQ1 to ACTIVE?"
        await c.pilot.press("y")
        await c.until(lambda: trading_state() is TradingState.ACTIVE, "DQ1 active")
        await c.pilot.press("R")
        assert c.dialog(ConfirmDialog).title_text == "DQ1 to REDUCING?"
        await c.pilot.press("y")
        await c.until(lambda: trading_state() is TradingState.REDUCING, "DQ1 reducing")


async def test_halt_blocks_new_orders_until_resumed(core_env: CoreEnv) -> None:
    async with console(core_env) as c:
        state = c.state("DQ1")
        symbol = "au2612.SHFE"

        def trading_state() -> TradingState | None:
            return state.info.trading_state if state.info is not None else None

        async def buy() -> str:
            """Buy 1 through entry and confirmation; what the console said of it."""
            earlier = len(c.said(f"BUY 1 {symbol}: "))
            await buy_from_market(c, symbol)
            await c.pilot.press("enter")
            c.dialog(ConfirmDialog)
            await c.pilot.press("y")
            return await c.notified(f"BUY 1 {symbol}: ", after=earlier)

        assert "ACTIVE" in c.header()
        await c.pilot.press("h")
        confirm = c.dialog(ConfirmDialog)
        assert confirm.title_text == "KILL SWITCH for DQ1?"  # halt + stop strategies + cancel all
        await c.pilot.press("y")
        await c.until(lambda: trading_state() is TradingState.HALTED, "DQ1 halted")
        await c.until(lambda: "HALTED" in c.header(), "HALTED in the header")

        said = await buy()
        assert said.startswith(f"BUY 1 {symbol}: REJECTED - ") and "HALTED" in said
        assert c.errors() == [said]
        assert not state.trades and not state.positions
        assert [o.status for o in state.orders.values()] == [Status.REJECTED]

        await c.pilot.press("h")  # again: resume, confirmed
        confirm = c.dialog(ConfirmDialog)
        assert confirm.title_text == "Resume trading in DQ1?"
        await c.pilot.press("y")
        await c.until(lambda: trading_state() is TradingState.ACTIVE, "DQ1 active again")
        await c.until(lambda: "ACTIVE" in c.header(), "ACTIVE in the header")
        assert c.client.count("kill_switch") == 1  # halting is the kill switch
        assert c.client.count("set_trading_state") == 1  # resuming sets ACTIVE

        assert "accepted" in await buy()
        await c.until(lambda: (symbol, Direction.LONG) in state.positions, "the order filled")
        assert len(c.errors()) == 1


# ====================================================================== 8. keys inside dialogs


async def test_the_order_form_is_driven_from_the_keyboard_and_its_lists_never_send(core_env: CoreEnv) -> None:
    """Enter on Side/Offset/Type opens the list and picks from it, never sends the form; Esc in
    an open list closes the list only; n at the confirmation brings the form back as it was."""
    async with console(core_env) as c:
        symbol = "au2612.SHFE"
        entry = await buy_from_market(c, symbol, "2")
        price = entry.query_one("#price", Input).value
        await c.pilot.press("shift+tab", "shift+tab")  # the Type select
        kind = entry.query_one("#type", Select)
        assert c.app.focused is kind
        await c.pilot.press("enter")  # opens the list
        await c.until(lambda: kind.expanded, "the Type list open")
        assert c.app.screen is entry
        await c.pilot.press("escape")  # closes the list, not the form
        await c.until(lambda: not kind.expanded, "the Type list closed")
        assert c.app.screen is entry and str(kind.value) == "LIMIT"
        await c.pilot.press("enter", "down", "enter")  # open, next item (MARKET), pick
        await c.until(lambda: str(kind.value) == "MARKET", "MARKET picked")
        assert c.app.screen is entry, "picking from a list sent the form"
        await c.pilot.press("enter", "up", "enter")  # and back to LIMIT
        await c.until(lambda: str(kind.value) == "LIMIT", "LIMIT picked")
        await c.pilot.press("shift+tab")  # Offset: pick CLOSE? no position: pick OPEN
        offset = entry.query_one("#offset", Select)
        assert c.app.focused is offset
        await c.pilot.press("enter", "down", "enter")
        await c.until(lambda: str(offset.value) == "OPEN", "OPEN picked")
        assert c.app.screen is entry
        assert c.client.count("send_order") == 0
        await c.pilot.press("tab", "tab", "tab")  # to the volume: Enter in a field reviews
        assert c.app.focused is entry.query_one("#volume", Input)
        await c.pilot.press("enter")
        confirm = c.dialog(ConfirmDialog)
        assert (confirm_rows(confirm)["Offset"], confirm_rows(confirm)["Volume"]) == ("OPEN", "2")
        await c.pilot.press("n")
        again = c.dialog(OrderEntryDialog)
        assert again is not entry
        assert again.query_one("#volume", Input).value == "2"
        assert again.query_one("#price", Input).value == price
        assert (
            str(again.query_one("#offset", Select).value),
            str(again.query_one("#type", Select).value),
        ) == (
            "OPEN",
            "LIMIT",
        )
        await c.pilot.press("escape")
        c.no_dialog()
        await c.settled()
        assert c.client.count("send_order") == 0


async def test_keys_typed_into_a_dialog_never_switch_accounts(core_env: CoreEnv) -> None:
    async with console(core_env) as c:
        entry = await buy_from_market(c, "au2612.SHFE", "23")  # digits into the volume field
        assert entry.query_one("#volume", Input).value == "23"
        await c.pilot.press("shift+tab", "shift+tab")  # the Type select: not a text field
        assert isinstance(c.app.focused, Select)
        await c.pilot.press(
            "2", "3", "right_square_bracket", "left_square_bracket", "d", "q", "question_mark"
        )
        assert c.app.screen is entry, "a navigation key left the dialog"
        assert c.app.account_id == "DQ1" and entry.account_id == "DQ1"
        assert str(entry.query_one("#type", Select).value) == "LIMIT"
        assert not c.said("stopping the traders") and all_connected(c.manager)  # `q` did not quit

        await c.pilot.press("tab", "tab")  # back to the volume: Enter there reviews the form
        assert c.app.focused is entry.query_one("#volume", Input)
        await c.pilot.press("enter")
        confirm = c.dialog(ConfirmDialog)
        assert confirm_rows(confirm)["Volume"] == "23"
        await c.pilot.press("2", "3", "right_square_bracket", "d", "q")
        assert c.app.screen is confirm
        assert c.app.account_id == "DQ1"
        await c.pilot.press("n")  # not sent: back to the form, as it was
        again = c.dialog(OrderEntryDialog)
        assert again.query_one("#volume", Input).value == "23"
        await c.pilot.press("escape")
        await shows_account(c, "DQ1", DQ1_WATCH)
        assert "1 DQ1" in c.header()
        await c.settled()
        assert c.client.count("send_order") == 0

        # the same keys outside a dialog do navigate
        await c.pilot.press("3")
        await shows_account(c, "DQ3", DQ3_WATCH)


async def test_quitting_a_console_that_hosts_the_core_asks_first_and_names_what_stops(
    core_env: CoreEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with console(core_env, quit_stops_core=True) as c:
        for quit_key in ("q", "ctrl+q"):
            await c.pilot.press(quit_key)
            dialog = c.dialog(ConfirmDialog)
            said = " ".join(str(value) for _, value in dialog.rows)
            assert dialog.title_text == "Quit and stop the trading core?"
            assert "3 traders" in said and "running strategies" in said and "--no-ui" in said
            await c.pilot.press("n")
            await c.until(lambda: isinstance(c.app.screen, AccountScreen), "back on the account screen")
            assert all_connected(c.manager) and c.app.is_running
        # a stray y right after q does not quit: the question has not been read yet
        monkeypatch.setattr(ConfirmDialog, "ARM_DELAY", 60.0)
        await c.pilot.press("q", "y", "y")
        dialog = c.dialog(ConfirmDialog)
        assert all_connected(c.manager)
        dialog.action_confirm()  # a deliberate y, once it has been read
        await c.until(lambda: not c.app.is_running, "the console quit", 30)
        assert all(p.proc is None or p.proc.returncode is not None for p in c.manager.proxies.values())


async def test_printing_while_the_console_runs_breaks_nothing(core_env: CoreEnv) -> None:
    """Libraries print (and flush) on the console's captured stdout; the live refresh goes on."""
    async with console(core_env) as c:
        print("a library talks", flush=True)
        frames = c.app.frames
        await c.step("DQ1", "au2612.SHFE")
        await c.until(lambda: c.app.frames > frames, "a redraw after the print")


async def test_a_reason_is_shown_as_it_is_even_when_it_looks_like_markup(core_env: CoreEnv) -> None:
    """The venue's words are not Textual markup: a ``[/]`` in them must not stop the console."""
    async with console(core_env, notifications=True) as c:  # toasts drawn
        reason = "venue says [/] no [bold]way[/bold] [@click=app.quit]here[/]"
        c.client.canned["kill_switch"] = Reply(ok=False, error=reason)
        await c.pilot.press("h")
        c.dialog(ConfirmDialog)
        await c.pilot.press("y")
        assert await c.notified("REJECTED") == f"KILL SWITCH DQ1: REJECTED - DQ1: {reason}"
        await c.until(  # queried afresh each time: the toast is mounted after the notification
            lambda: any(reason in str(t.render()) for t in c.app.screen.query("Toast")),
            "the reason in a toast",
        )
        await c.pilot.press("right_square_bracket")  # still running, still listening
        await shows_account(c, "DQ2", DQ2_WATCH)
