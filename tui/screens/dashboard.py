"""The dashboard: every account in one table, with totals and equity sparklines.

A sparkline is the account's curve of today's trading day (the stored history, thinned by
the trader, then the live points), resampled to the width its column got: narrower at 80
columns, never gone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

from core.client import AccountState
from core.models import EquityPoint
from tui import format as fmt
from tui.actions import bindings
from tui.dialogs.confirm import ConfirmDialog
from tui.dialogs.kill import KillDialog, protective_row
from tui.host import ConsoleHost
from tui.widgets.equity import RANGES, account_now, in_range, merge, sparkline
from tui.widgets.table import Cell, KeyedTable

TOTAL_KEY = "~total"
TODAY = RANGES[0]


class AccountsTable(KeyedTable[AccountState]):
    COLUMNS = (
        ("n", "#", 2),
        ("account", "Account", 10),
        ("status", "Status", 14),
        ("gateway", "Gateway", 7),
        ("state", "Trading", 8),
        ("balance", "Balance", 13),
        ("available", "Available", 13),
        ("margin", "Margin", 13),
        ("risk", "Risk", 6),
        ("pnl", "Today P&L", 11),
        ("pos", "Pos", 4),
        ("orders", "Working", 7),
        ("strats", "Strategies", 10),
        ("equity", "Equity today", 16),
    )
    HIDE_WHEN_NARROW = ("strats", "gateway", "available", "n", "margin", "risk", "pos", "orders", "equity")
    FLEX = {"equity": 8}
    SHORT_LABELS = {"equity": "Equity"}

    def __init__(
        self, *, scheme: str, order: list[str], risk_warning: float = 0.8, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.scheme = scheme
        self.risk_warning = risk_warning  # ui.risk_degree_warning
        self.order = order
        self.history: dict[str, list[EquityPoint]] = {}  # account -> today's stored curve

    def equity_today(self, item: AccountState) -> list[float]:
        start = TODAY.start(account_now(item))
        values = [
            p.balance for p in in_range(merge(self.history.get(item.account_id, []), item.equity), start)
        ]
        return values + ([item.account.balance] if item.account else [])

    def key_of(self, item: AccountState) -> str:
        return item.account_id

    def cells(self, item: AccountState) -> tuple[Cell, ...]:
        acc = item.account
        info = item.info
        running = sum(s.running for s in item.strategies.values())
        pnl = acc.today_pnl if acc else 0.0
        return (
            str(self.order.index(item.account_id) + 1),
            Text(item.account_id, style="bold"),
            fmt.status_light(item.status),
            item.gateway,
            info.trading_state.name if info else "-",
            fmt.right(fmt.amount(acc.balance if acc else None)),
            fmt.right(fmt.amount(acc.available if acc else None)),
            fmt.right(fmt.amount(acc.margin if acc else None)),
            fmt.risk_degree(acc.risk_degree if acc else None, self.risk_warning),
            fmt.signed(pnl, fmt.amount(pnl) if acc else "-", self.scheme),
            fmt.right(str(len(item.positions))),
            fmt.right(str(len(item.working_orders))),
            fmt.right(f"{running}/{len(item.strategies)}"),
            Text(sparkline(self.equity_today(item), self.column_width("equity")), style="cyan"),
        )


class HostAccountsTable(AccountsTable):
    """The accounts of several hosts (a console attached over Redis): a Host column first, the
    rows grouped by host (the client lists them so)."""

    COLUMNS = (AccountsTable.COLUMNS[0], ("host", "Host", 10), *AccountsTable.COLUMNS[1:])
    HIDE_WHEN_NARROW = AccountsTable.HIDE_WHEN_NARROW

    def __init__(self, *, host_of: Callable[[str], str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host_of = host_of

    def cells(self, item: AccountState) -> tuple[Cell, ...]:
        n, *rest = super().cells(item)
        return (n, Text(self.host_of(item.account_id), style="dim"), *rest)


class DashboardScreen(Screen[None]):
    """All accounts at a glance; Enter opens one."""

    BINDINGS = bindings("dashboard")

    @property
    def qapp(self) -> ConsoleHost:
        return cast(ConsoleHost, self.app)

    def compose(self) -> ComposeResult:
        yield Static(id="dashboard-bar")
        with Vertical(id="accounts-box", classes="panel"):
            client = self.qapp.client
            common = {
                "scheme": self.qapp.scheme,
                "order": client.account_ids,
                "risk_warning": self.qapp.risk_degree_warning,
                "id": "accounts",
            }
            if any(client.host_of(a) for a in client.account_ids):  # several hosts (over Redis)
                yield HostAccountsTable(host_of=client.host_of, **common)
            else:
                yield AccountsTable(**common)
            yield Static(id="totals")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#accounts-box").border_title = "Accounts"
        self.refresh_live(None)
        self.query_one("#accounts", AccountsTable).focus()
        for account_id in self.qapp.client.account_ids:
            self._load_equity(account_id)
        self.set_interval(fmt.CLOCK_REFRESH, self._show_bar)  # the trading day turns when nothing moves

    def on_resize(self) -> None:
        self.call_after_refresh(self.refresh_live, None)  # the sparklines, at their new width

    def _load_equity(self, account_id: str) -> None:
        """Today's stored curve of one account, thinned by its trader."""
        table = self.query_one("#accounts", AccountsTable)
        start = TODAY.start(account_now(self.qapp.client.state(account_id)))

        async def load() -> None:
            since = start.timestamp() if start is not None else None
            reply = await self.qapp.client.history(
                account_id, "account_snapshots", since=since, limit=TODAY.limit, every=TODAY.every
            )
            if reply.ok:
                table.history[account_id] = list(reply.result or [])
                self.refresh_live(None)

        self.run_worker(load(), group="equity")

    def _show_bar(self) -> None:
        line = Text(" Dashboard ", style="bold reverse")
        line.append("   │ ")
        line.append_text(fmt.clock_note(self.qapp.clock()))
        bar = self.query_one("#dashboard-bar", Static)
        if line != self._bar_shown:  # a header redraw relayouts the screen: only when it changed
            self._bar_shown = line
            bar.update(line, layout=False)

    _bar_shown: Text | None = None

    def refresh_live(self, dirty: object) -> None:
        self._show_bar()
        client = self.qapp.client
        states = [client.state(a) for a in client.account_ids]
        if isinstance(dirty, dict):  # a (re)connected trader: its stored curve again
            for account_id, kinds in dirty.items():
                if kinds and "snapshot" in kinds:
                    self._load_equity(account_id)
        self.query_one("#accounts", AccountsTable).sync(states)
        accounts = [s.account for s in states if s.account is not None]
        balance = sum(a.balance for a in accounts)
        available = sum(a.available for a in accounts)
        margin = sum(a.margin for a in accounts)
        pnl = sum(a.today_pnl for a in accounts)
        line = Text(" Total  ", style="bold")
        line.append(f"balance {balance:,.2f}   available {available:,.2f}   margin {margin:,.2f}   today ")
        line.append_text(fmt.signed(pnl, f"{pnl:,.2f}", self.qapp.scheme))
        line.append(
            f"   positions {sum(len(s.positions) for s in states)}"
            f"   working orders {sum(len(s.working_orders) for s in states)}"
        )
        self.query_one("#totals", Static).update(line)

    def _selected(self) -> str | None:
        return self.query_one("#accounts", AccountsTable).selected_key

    def on_keyed_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        """Enter on a row (the table takes Enter before the screen's binding)."""
        event.stop()
        self.qapp.show_account(event.row_key)

    def action_open_account(self) -> None:
        account_id = self._selected()
        if account_id is not None:
            self.qapp.show_account(account_id)

    def action_kill_all(self) -> None:
        client = self.qapp.client
        states = [client.state(a) for a in client.account_ids]
        guards = {
            s.account_id: [x for x in s.strategies.values() if x.running and x.protective] for s in states
        }
        labels = [f"{aid} {g.name} ({g.vt_symbol})" for aid, gs in guards.items() for g in gs]

        def rows_for(keep: bool) -> list[tuple[str, str | Text]]:
            rows: list[tuple[str, str | Text]] = []
            for s in states:
                running = sum(x.running for x in s.strategies.values())
                stopping = running - (len(guards[s.account_id]) if keep else 0)
                rows.append(
                    (s.account_id, f"{len(s.working_orders)} working orders, {stopping} strategies stop")
                )
            if labels:
                # each account's auto-trading switch decides whether a guard's signals execute
                rows.append(protective_row(labels, keep, auto_trading=None))
            rows.append(("Then", "every account HALTED; positions stay open"))
            return rows

        dialog = KillDialog("KILL SWITCH for ALL accounts?", rows_for, choice=bool(labels))

        def answered(ok: bool | None) -> None:
            if ok:
                keep = dialog.keep_protective
                label = "KILL SWITCH (all accounts)" + (" (protective strategies kept)" if keep else "")
                self.qapp.run_command(label, self.qapp.kill(None, keep_protective=keep))

        self.app.push_screen(dialog, answered)

    def action_start_trader(self) -> None:
        account_id = self._selected()
        if account_id is not None:
            self.qapp.run_command(f"start {account_id}", self.qapp.client.start_trader(account_id))

    def action_stop_trader(self) -> None:
        self._confirmed("stop", "Stop")

    def action_restart_trader(self) -> None:
        self._confirmed("restart", "Restart")

    def _confirmed(self, verb: str, title: str) -> None:
        account_id = self._selected()
        if account_id is None:
            return
        state = self.qapp.client.state(account_id)
        rows = [
            ("Account", account_id),
            ("Status", state.status.name),
            ("Working orders", f"{len(state.working_orders)} (they stay at the venue)"),
        ]

        def answered(ok: bool | None) -> None:
            if not ok:
                return
            call = self.qapp.client.stop_trader if verb == "stop" else self.qapp.client.restart_trader
            self.qapp.run_command(f"{verb} {account_id}", call(account_id))

        self.app.push_screen(
            ConfirmDialog(f"{title} the trader of {account_id}?", rows, danger=True), answered
        )
