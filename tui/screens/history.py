"""The History screen of one account: its trades over a range of trading days (optionally one
contract) with each day's totals, and each strategy instance's record.

The figures come from the account's database through its trader (``trade_report`` and
``strategy_stats`` history, core/trade_stats.py); the screen only asks and shows. Dates are
trading days in exchange time (a night session belongs to the next trading day).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from core.protocol import MAX_HISTORY_ROWS
from core.sessions import trading_day_of
from core.trade_stats import DayTotal, InstanceStats, ReportTrade, TradeReport
from tui import format as fmt
from tui.host import ConsoleHost
from tui.reports import parse_day, report_notes, trading_day_range
from tui.widgets.table import Cell, KeyedTable

#: the range the screen opens with: this many trading days back to today's
DEFAULT_DAYS = 5


class HistoryTradesTable(KeyedTable[ReportTrade]):
    """The range's fills, newest first, with their close P&L."""

    COLUMNS = (
        ("day", "Day", 10),
        ("time", "Time", 8),
        ("symbol", "Symbol", 12),
        ("side", "Side", 4),
        ("offset", "Offset", 10),
        ("vol", "Vol", 4),
        ("price", "Price", 10),
        ("fee", "Fee", 9),
        ("pnl", "Close P&L", 11),
        ("ref", "By", 12),
    )
    HIDE_WHEN_NARROW = ("ref", "offset", "time", "fee")
    FLEX = {"ref": 8}
    NEWEST_FIRST = True

    def __init__(self, *, scheme: str = "cn", id: str | None = None) -> None:
        super().__init__(id=id)
        self.scheme = scheme

    def key_of(self, item: ReportTrade) -> str:
        return item.trade.trade_id

    def cells(self, item: ReportTrade) -> tuple[Cell, ...]:
        t = item.trade
        return (
            item.trading_day,
            f"{t.datetime:%H:%M:%S}",
            t.vt_symbol,
            "BUY" if t.direction.name == "LONG" else "SELL",
            t.offset.name,
            fmt.right(fmt.volume(t.volume)),
            fmt.right(f"{t.price:g}"),
            fmt.right(fmt.amount(t.commission)),
            fmt.signed(item.close_pnl, fmt.amount(item.close_pnl), self.scheme),
            t.reference,
        )


class DayTotalsTable(KeyedTable[DayTotal]):
    """One row per trading day, and the range's total last."""

    COLUMNS = (
        ("day", "Trading day", 11),
        ("trades", "Trades", 6),
        ("vol", "Volume", 7),
        ("fee", "Commission", 11),
        ("pnl", "Close P&L", 12),
        ("net", "Net", 12),
    )

    def __init__(self, *, scheme: str = "cn", id: str | None = None) -> None:
        super().__init__(id=id)
        self.scheme = scheme

    def key_of(self, item: DayTotal) -> str:
        return item.trading_day

    def cells(self, item: DayTotal) -> tuple[Cell, ...]:
        return (
            Text(item.trading_day, style="bold" if item.trading_day == "total" else ""),
            fmt.right(str(item.trades)),
            fmt.right(fmt.volume(item.volume)),
            fmt.right(fmt.amount(item.commission)),
            fmt.signed(item.close_pnl, fmt.amount(item.close_pnl), self.scheme),
            fmt.signed(item.net, fmt.amount(item.net), self.scheme),
        )


class StrategyStatsTable(KeyedTable[InstanceStats]):
    """One row per strategy instance."""

    COLUMNS = (
        ("name", "Instance", 14),
        ("triggers", "Triggers (action result)", 30),
        ("executed", "Executed", 8),
        ("trips", "Round trips", 11),
        ("win", "Win rate", 8),
        ("pnl", "P&L", 12),
        ("open", "Open", 5),
    )
    FLEX = {"triggers": 20}

    def __init__(self, *, scheme: str = "cn", id: str | None = None) -> None:
        super().__init__(id=id)
        self.scheme = scheme

    def key_of(self, item: InstanceStats) -> str:
        return item.instance

    def cells(self, item: InstanceStats) -> tuple[Cell, ...]:
        rate = f"{item.win_rate * 100:.1f}%" if item.win_rate is not None else "—"
        counts = ", ".join(f"{k} {n}" for k, n in sorted(item.triggers.items())) or "none"
        return (
            item.instance,
            counts,
            fmt.right(str(item.executed)),
            fmt.right(f"{item.wins}/{item.round_trips}"),
            fmt.right(rate),
            fmt.signed(item.pnl, fmt.amount(item.pnl), self.scheme),
            fmt.right(fmt.volume(item.open_volume)),
        )


class HistoryScreen(ModalScreen[None]):
    """Enter in a field loads the range; Esc goes back to the account."""

    BINDINGS = [Binding("escape", "close", "Back", priority=True)]

    def __init__(self, account_id: str) -> None:
        super().__init__()
        self.account_id = account_id
        self.report: TradeReport | None = None
        self.stats: list[InstanceStats] = []

    @property
    def qapp(self) -> ConsoleHost:
        return cast(ConsoleHost, self.app)

    def compose(self) -> ComposeResult:
        today = trading_day_of(self.qapp.clock())
        first = today - timedelta(days=DEFAULT_DAYS + 2)  # a business week and its weekend
        scheme = self.qapp.scheme
        with Vertical(id="history-box"):
            yield Static(Text(f"History — {self.account_id}", style="bold"), id="history-title")
            with Horizontal(id="history-form"):
                yield Label("From")
                yield Input(first.isoformat(), id="history-from", placeholder="YYYY-MM-DD")
                yield Label("To")
                yield Input(today.isoformat(), id="history-to", placeholder="YYYY-MM-DD")
                yield Label("Symbol")
                yield Input("", id="history-symbol", placeholder="all contracts")
            yield Static("", id="history-note")
            with Vertical(id="history-trades-box", classes="panel"):
                yield HistoryTradesTable(scheme=scheme, id="history-trades")
            with Horizontal(id="history-lower"):
                with Vertical(id="history-days-box", classes="panel"):
                    yield DayTotalsTable(scheme=scheme, id="history-days")
                with Vertical(id="history-stats-box", classes="panel"):
                    yield StrategyStatsTable(scheme=scheme, id="history-stats")
            yield Static(
                Text("Enter: load  Tab: next field / table  Esc: back", style="italic"), id="history-keys"
            )

    def on_mount(self) -> None:
        self.query_one("#history-trades-box").border_title = "Trades"
        self.query_one("#history-days-box").border_title = "Day totals"
        self.query_one("#history-stats-box").border_title = "Strategies"
        self.query_one("#history-from", Input).focus()
        self.load()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.load()

    def _range(self) -> tuple[float | None, float | None, str | None] | str:
        """(since, until, symbol) from the fields, or what is wrong with them."""
        try:
            first_text = self.query_one("#history-from", Input).value.strip()
            last_text = self.query_one("#history-to", Input).value.strip()
            first: date | None = parse_day(first_text, "From") if first_text else None
            last: date | None = parse_day(last_text, "To") if last_text else None
            since, until = trading_day_range(first, last)
        except ValueError as exc:
            return str(exc).replace("--from", "From").replace("--to", "To")
        symbol = self.query_one("#history-symbol", Input).value.strip() or None
        return since, until, symbol

    def load(self) -> None:
        """Ask the account's trader for the range's trades and its strategies' records."""
        wanted = self._range()
        if isinstance(wanted, str):
            self._note(wanted, error=True)
            return
        since, until, symbol = wanted
        client = self.qapp.client
        account_id = self.account_id
        self._note("loading...")

        async def fetch() -> None:
            report = await client.history(
                account_id, "trade_report", since=since, until=until, vt_symbol=symbol, limit=MAX_HISTORY_ROWS
            )
            stats = await client.history(account_id, "strategy_stats", since=since, until=until)
            if not report.ok:
                self._note(f"{account_id} history: {report.error}", error=True)
                return
            self.show(report.result, stats.result if stats.ok else [])
            if not stats.ok:
                self._note(f"{account_id} strategy statistics: {stats.error}", error=True)

        self.run_worker(fetch(), group="history", exclusive=True)

    def show(self, report: TradeReport, stats: list[InstanceStats]) -> None:
        self.report, self.stats = report, stats
        trades = self.query_one("#history-trades", HistoryTradesTable)
        trades.reset()
        trades.sync(report.trades)
        days = self.query_one("#history-days", DayTotalsTable)
        days.reset()
        days.sync([*report.days, report.total])
        table = self.query_one("#history-stats", StrategyStatsTable)
        table.reset()
        table.sync(stats)
        notes = report_notes(report)
        self._note("; ".join(n.removeprefix("note: ") for n in notes) or f"{report.total.trades} trades")

    def _note(self, text: str, *, error: bool = False) -> None:
        self.query_one("#history-note", Static).update(Text(text, style="bold red" if error else "italic"))

    def action_close(self) -> None:
        self.dismiss(None)
