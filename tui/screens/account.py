"""The account screen: where the operator works on one account.

Panels: Market, Positions, Depth (the book of the Market panel's selected contract),
Orders (working / all), Account (funds and equity),
and a tabbed strip with Trades, Conditional (the trader's conditional orders), Strategy
triggers, Strategies and Log. Every order-sending action goes through a confirmation that
shows exactly what will be sent; results come back as notifications, and so does what the
trader does later on its own (a conditional order firing, a reverse's open sent or not).
"""

from __future__ import annotations

import functools
from typing import cast

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane

from core.client import AccountState
from core.models import (
    ConditionalRequest,
    CondState,
    Direction,
    OrderRequest,
    Position,
    TradingState,
    product_of,
)
from core.protocol import ConditionalCommand, Reply, StrategyCommand
from tui import format as fmt
from tui.actions import bindings
from tui.dialogs.conditional import ConditionalDialog, conditional_rows
from tui.dialogs.confirm import ConfirmDialog
from tui.dialogs.kill import KillDialog, protective_row
from tui.dialogs.order_entry import OrderEntryDialog, closable, close_rows, order_rows
from tui.dialogs.watchlist import AddContractDialog
from tui.host import ConsoleHost
from tui.widgets.activity import LogTable, StrategiesTable, TriggersTable
from tui.widgets.conditional import ConditionalTable
from tui.widgets.depth import DepthView
from tui.widgets.equity import RANGES, account_now
from tui.widgets.funds import FundsPanel
from tui.widgets.market import MarketTable
from tui.widgets.orders import OrdersTable, TradesTable
from tui.widgets.positions import PositionsTable

#: the account screen has not looked at the account's log yet (its first look tells nothing)
_UNSEEN = object()


class AccountBar(Static):
    """The header line: which account the keys act on, and its state."""

    _shown: Text | None = None

    def show(self, app: ConsoleHost, state: AccountState) -> None:
        line = Text()
        line.append(f" {state.account_id} ", style="bold reverse")
        line.append(" ")
        line.append_text(fmt.status_light(state.status))
        line.append(f"  {state.gateway}")
        info = state.info
        if info is not None:
            trading = info.trading_state
            style = {"ACTIVE": "green", "REDUCING": "yellow", "HALTED": "bold red"}[trading.name]
            line.append("  ")
            line.append(trading.name, style=style)
            if info.protective_kept:  # the kill switch kept the stop guards: they may still close
                line.append(" (protective strategies run)", style="yellow")
            if trading is TradingState.HALTED and info.halt_reason:  # halted by the core itself
                line.append(f" ({info.halt_reason})", style="bold red")
            line.append(
                f"  auto {'ON' if info.auto_trading else 'off'}", style="bold" if info.auto_trading else ""
            )
        acc = state.account
        line.append("  risk ", style="dim")
        line.append_text(fmt.risk_degree(acc.risk_degree if acc else None, app.risk_degree_warning))
        if state.status_message and state.status.name != "CONNECTED":
            line.append(f"  {state.status_message}", style="italic")
        line.append("   │ ")
        for n, aid in enumerate(app.client.account_ids, start=1):
            style = "bold reverse" if aid == state.account_id else "dim"
            line.append(f"{n} {aid}", style=style)
            line.append(" ")
        line.append("  │ ")
        venue_day = state.account.trading_day if state.account is not None else ""
        line.append_text(fmt.clock_note(app.clock(), venue_day))
        if line != self._shown:  # a header redraw relayouts the screen: only when it changed
            self._shown = line
            self.update(line, layout=False)


class AccountScreen(Screen[None]):
    """One account's panels. The app tells it which account to show."""

    BINDINGS = bindings("account")

    def __init__(self, account_id: str) -> None:
        super().__init__()
        self.account_id = account_id
        #: what the operator has been told of: conditional orders' states, the last log line seen
        self._told: dict[str, tuple[CondState, str]] | None = None
        self._last_log: object = _UNSEEN

    @property
    def qapp(self) -> ConsoleHost:
        return cast(ConsoleHost, self.app)

    @property
    def state(self) -> AccountState:
        return self.qapp.client.state(self.account_id)

    def compose(self) -> ComposeResult:
        scheme = self.qapp.scheme
        yield AccountBar(id="account-bar")
        with Horizontal(id="upper"):
            with Vertical(id="upper-left"):
                with Vertical(id="market-box", classes="panel"):
                    yield MarketTable(scheme=scheme, clock=self.qapp.clock, id="market")
                with Vertical(id="positions-box", classes="panel"):
                    yield PositionsTable(scheme=scheme, id="positions")
            with Vertical(id="depth-box", classes="panel"):
                yield DepthView(scheme=scheme, id="depth")
        with Horizontal(id="middle"):
            with Vertical(id="orders-box", classes="panel"):
                yield OrdersTable(scheme=scheme, id="orders")
            with Vertical(id="funds-box", classes="panel"):
                yield FundsPanel(scheme=scheme, id="funds")
        with TabbedContent(id="lower"):
            with TabPane("Trades", id="tab-trades"):
                yield TradesTable(scheme=scheme, id="trades")
            with TabPane("Conditional", id="tab-conditional"):
                yield ConditionalTable(id="conditional")
            with TabPane("Triggers", id="tab-triggers"):
                yield TriggersTable(id="triggers")
            with TabPane("Strategies", id="tab-strategies"):
                yield StrategiesTable(scheme=scheme, id="strategies")
            with TabPane("Log", id="tab-log"):
                yield LogTable(id="log")
        yield Footer()

    NARROW = 100  # below this many columns the Account panel gives the Orders panel room

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < self.NARROW, "-narrow")

    def on_mount(self) -> None:
        self.query_one("#market-box").border_title = "Market"
        self.query_one("#positions-box").border_title = "Positions"
        self.query_one("#depth-box").border_title = "Depth"
        self.query_one("#funds-box").border_title = "Account"
        self._title_orders()
        self.refresh_live(None)
        self.query_one("#market", MarketTable).focus()
        self._load_equity()
        # the trading day turns at 20:00, when no quote moves the header: look at the clock too
        self.set_interval(fmt.CLOCK_REFRESH, self._show_bar)

    def _show_bar(self) -> None:
        self.query_one("#account-bar", AccountBar).show(self.qapp, self.state)

    def _title_orders(self) -> None:
        orders = self.query_one("#orders", OrdersTable)
        self.query_one("#orders-box").border_title = (
            "Orders (working)" if orders.working_only else "Orders (all)"
        )

    # ------------------------------------------------------------------ live data

    def show_account(self, account_id: str) -> None:
        """Switch the panels to another account."""
        if account_id == self.account_id:
            return
        self.account_id = account_id
        self._told, self._last_log = None, _UNSEEN
        for table in self.query("KeyedTable"):
            table.reset()  # type: ignore[attr-defined]
        self.refresh_live(None)
        self._load_equity()

    def refresh_live(self, dirty: dict[str, set[str] | None] | None) -> None:
        """Bring the panels up to date. ``dirty`` maps a kind of change to the keys that
        changed (None: all of that kind); ``None`` for everything."""
        state = self.state
        everything = dirty is None or "snapshot" in dirty

        def changed(*kinds: str) -> bool:
            return everything or any(k in dirty for k in kinds)  # type: ignore[operator]

        with self.app.batch_update():
            self.query_one("#account-bar", AccountBar).show(self.qapp, state)
            if changed("tick", "contract", "watchlist", "position", "strategy"):
                whole = everything or any(
                    k in dirty for k in ("contract", "watchlist", "position", "strategy")
                )  # type: ignore[operator]
                only = None if whole else dirty.get("tick")  # type: ignore[union-attr]
                market = self.query_one("#market", MarketTable)
                market.show(state, only=only)
                selected = market.selected_key
                depth = self.query_one("#depth", DepthView)
                if only is None or selected in only or selected != depth.vt_symbol:
                    depth.show(state, selected)
                entry = self.app.screen
                if isinstance(entry, OrderEntryDialog) and entry.account_id == self.account_id:
                    entry.show_quote(state, only)
            if changed("position", "contract"):
                self.query_one("#positions", PositionsTable).show(state)
            if changed("order"):
                self.query_one("#orders", OrdersTable).show(state)
            if changed("trade"):
                self.query_one("#trades", TradesTable).show(state)
            if changed("conditional"):
                self.query_one("#conditional", ConditionalTable).show(state)
                self._tell_conditionals(state, quiet=everything)
            if changed("account", "equity"):
                self.query_one("#funds", FundsPanel).show(state)
            if dirty is not None and "snapshot" in dirty:  # a (re)connected trader: fresh history
                self._load_equity()
            if changed("trigger"):
                self.query_one("#triggers", TriggersTable).show(state)
            if changed("strategy"):
                self.query_one("#strategies", StrategiesTable).show(state)
            if changed("log"):
                self.query_one("#log", LogTable).show(state)
                self._tell_reverses(state, quiet=everything)

    def _tell_conditionals(self, state: AccountState, *, quiet: bool) -> None:
        """A notification when one of the account's conditional orders fires, is refused or
        ends on its own (a snapshot only sets what is known: ``quiet``)."""
        now = {c.cond_id: (c.state, c.message) for c in state.conditionals.values()}
        told, self._told = self._told, now
        if told is None or quiet:
            return
        for cond_id, (cond_state, message) in now.items():
            if told.get(cond_id) == (cond_state, message) or cond_state is CondState.PENDING:
                continue
            if cond_state is CondState.TRIGGERED and (message.startswith(("refused", "the trader stopped"))):
                self.app.notify(
                    f"{state.account_id} conditional {cond_id}: {message}",
                    severity="error",
                    timeout=20,
                    markup=False,
                )
            elif cond_state is CondState.TRIGGERED and message.startswith("sent"):
                self.app.notify(f"{state.account_id} conditional fired: {message}", markup=False)
            elif cond_state in (CondState.EXPIRED, CondState.CANCELLED) and not message.startswith(
                "cancelled by"
            ):
                self.app.notify(
                    f"{state.account_id} conditional {cond_id}: {message}", severity="warning", markup=False
                )

    def _tell_reverses(self, state: AccountState, *, quiet: bool) -> None:
        """A reverse finishes in the trader after its reply: say how (its log lines)."""
        logs = state.logs
        last = logs[-1] if logs else None
        seen, self._last_log = self._last_log, last
        if quiet or seen is _UNSEEN or last is None or last is seen:
            return
        fresh = []
        for entry in reversed(logs):
            if entry is seen:  # (None: the log was empty, every line is new)
                break
            fresh.append(entry)
        for entry in reversed(fresh):
            if entry.message.startswith("reverse of "):
                severity = (
                    "error" if "NOT sent" in entry.message or "refused" in entry.message else "information"
                )
                self.app.notify(
                    f"{state.account_id}: {entry.message}", severity=severity, timeout=20, markup=False
                )

    def on_market_table_highlighted(self, event: MarketTable.Highlighted) -> None:
        """The Depth panel follows the Market panel's cursor."""
        self.query_one("#depth", DepthView).show(self.state, event.vt_symbol)

    # ------------------------------------------------------------------ selection

    def _selected_symbol(self) -> tuple[str | None, Direction | None]:
        """The contract the operator points at: the focused table's row."""
        focused = self.focused
        if isinstance(focused, PositionsTable):
            pos = focused.selected()
            if pos is not None:
                return pos.vt_symbol, pos.direction
        if isinstance(focused, OrdersTable):
            order = focused.selected()
            if order is not None:
                return order.vt_symbol, None
        market = self.query_one("#market", MarketTable)
        return market.selected_key, None

    # ------------------------------------------------------------------ actions

    def action_buy(self) -> None:
        self._enter_order(Direction.LONG)

    def action_sell(self) -> None:
        self._enter_order(Direction.SHORT)

    def _enter_order(self, direction: Direction) -> None:
        vt_symbol, pos_direction = self._selected_symbol()
        symbol = vt_symbol or next(iter(self.state.ticks), "")
        dialog = OrderEntryDialog(
            self.account_id,
            self.state,
            direction=direction,
            vt_symbol=vt_symbol,
            position_direction=pos_direction,
            volume=self.qapp.volumes.volume_for(self.account_id, symbol),
            volume_for=functools.partial(self.qapp.volumes.volume_for, self.account_id),
        )
        self.app.push_screen(dialog, self._confirm_order)

    def _confirm_order(self, req: OrderRequest | None) -> None:
        if req is None:
            return
        account_id = self.account_id
        rows = order_rows(account_id, req, self.state)
        side = "BUY" if req.direction is Direction.LONG else "SELL"
        title = f"Send this order to {account_id}?  {side} {req.volume:g} {req.vt_symbol}"

        def answered(ok: bool | None) -> None:
            if ok:
                self.qapp.volumes.remember(account_id, req.vt_symbol, req.volume)
                self.qapp.run_command(
                    f"{side} {req.volume:g} {req.vt_symbol}", self.qapp.client.send_order(account_id, req)
                )
            elif account_id == self.account_id:
                # not sent: back to the form with what was typed, to correct it or Esc again
                dialog = OrderEntryDialog(
                    account_id, self.state, direction=req.direction, vt_symbol=None, draft=req
                )
                self.app.push_screen(dialog, self._confirm_order)

        self.app.push_screen(ConfirmDialog(title, rows), answered)

    def action_close_position(self) -> None:
        positions = self.query_one("#positions", PositionsTable)
        pos = positions.selected() if self.focused is positions else None
        if pos is None:
            self.app.notify("Select a position in the Positions panel first (tab to it)", severity="warning")
            return
        account_id = self.account_id
        rows, price = close_rows(account_id, pos, self.state)
        if price is None:
            self.app.notify(f"No quote for {pos.vt_symbol}: cannot price the close", severity="error")
            return

        client = self.qapp.client
        halted = self._trading_state() is TradingState.HALTED

        async def close() -> Reply:
            if halted:  # the operator agreed to close-only first: a HALTED account sends nothing
                switched = await client.set_trading_state(account_id, TradingState.REDUCING)
                if not switched.ok:
                    return switched
            return await client.close_position(account_id, pos.vt_symbol, pos.direction, price=price)

        def answered(ok: bool | None) -> None:
            if ok:
                self.qapp.run_command(f"close {pos.direction.name.lower()} {pos.vt_symbol}", close())

        title = f"Close {pos.direction.name} {pos.volume:g} {pos.vt_symbol} in {account_id}?"
        if halted:
            title = f"{account_id} is HALTED: switch it to REDUCING (close-only) and close?"
            rows = [("Trading state", "HALTED -> REDUCING (only orders that reduce a position)"), *rows]
        self.app.push_screen(ConfirmDialog(title, rows, danger=halted), answered)

    def _trading_state(self) -> TradingState | None:
        info = self.state.info
        return info.trading_state if info is not None else None

    def action_reducing(self) -> None:
        """Close-only (REDUCING), or back to ACTIVE from it; after the kill switch, the way to
        flatten: closes go out, nothing that adds to a position does."""
        account_id = self.account_id
        current = self._trading_state()
        target = TradingState.ACTIVE if current is TradingState.REDUCING else TradingState.REDUCING
        what = {
            TradingState.REDUCING: "only orders that reduce a position",
            TradingState.ACTIVE: "every order, within the risk rules",
        }[target]
        rows = [
            ("Account", account_id),
            ("Trading state", f"{current.name if current else '?'} -> {target.name} ({what})"),
            ("Strategies", "unchanged (t starts or stops one)"),
        ]

        def answered(ok: bool | None) -> None:
            if ok:
                self.qapp.run_command(
                    f"{account_id} -> {target.name}", self.qapp.client.set_trading_state(account_id, target)
                )

        self.app.push_screen(ConfirmDialog(f"{account_id} to {target.name}?", rows), answered)

    def action_cancel_order(self) -> None:
        conditional = self.query_one("#conditional", ConditionalTable)
        if self.focused is conditional:
            self._cancel_conditional(conditional)
            return
        orders = self.query_one("#orders", OrdersTable)
        order = orders.selected() if self.focused is orders else None
        if order is None:
            self.app.notify("Select an order in the Orders panel first (tab to it)", severity="warning")
            return
        if not order.is_active:
            self.app.notify(
                f"Order {order.order_id} is {order.status.name}: nothing to cancel", severity="warning"
            )
            return
        self.qapp.run_command(
            f"cancel {order.order_id}", self.qapp.client.cancel_order(self.account_id, order.order_id)
        )

    def action_cancel_all(self) -> None:
        account_id = self.account_id
        working = self.state.working_orders
        if not working:
            self.app.notify(f"{account_id} has no working orders", severity="information")
            return

        def answered(ok: bool | None) -> None:
            if ok:
                self.qapp.run_command(f"cancel all in {account_id}", self.qapp.client.cancel_all(account_id))

        contracts = self.state.contracts
        rows = [("Account", account_id), ("Working orders", str(len(working)))]
        rows += [
            (
                o.order_id,
                fmt.deal(
                    o.direction, o.offset, o.remaining, o.vt_symbol, o.price, contracts.get(o.vt_symbol)
                ),
            )
            for o in working[:8]
        ]
        if len(working) > 8:
            rows.append(("", f"... and {len(working) - 8} more"))
        self.app.push_screen(
            ConfirmDialog(f"Cancel ALL working orders of {account_id}?", rows, danger=True), answered
        )

    # ------------------------------------------------------------------ watchlist

    def _watchlist(self) -> list[str] | None:
        """The account's watchlist (a copy); None (and said so) when its trader has not told it
        (not connected yet)."""
        if self.state.watchlist is None:
            self.app.notify(
                f"{self.account_id}: the trader has not sent its watchlist yet", severity="warning"
            )
            return None
        return list(self.state.watchlist)

    def _set_watchlist(self, label: str, symbols: list[str]) -> None:
        self.qapp.run_command(label, self.qapp.client.set_watchlist(self.account_id, symbols))

    def action_watch_add(self) -> None:
        """Add a contract after the selected one (typed, with completion)."""
        watchlist = self._watchlist()
        if watchlist is None:
            return
        account_id = self.account_id
        client = self.qapp.client
        selected = self.query_one("#market", MarketTable).selected_key
        dialog = AddContractDialog(
            account_id,
            self.state.contracts,
            listed=lambda: client.listed_contracts(account_id),
            watched=watchlist,
        )

        def added(symbol: str | None) -> None:
            if not symbol or account_id != self.account_id:
                return
            current = list(self.state.watchlist or watchlist)
            at = current.index(selected) + 1 if selected in current else len(current)
            self._set_watchlist(f"add {symbol} to the watchlist", [*current[:at], symbol, *current[at:]])

        self.app.push_screen(dialog, added)

    def action_watch_remove(self) -> None:
        watchlist = self._watchlist()
        if watchlist is None:
            return
        symbol = self.query_one("#market", MarketTable).selected_key
        if symbol is None or symbol not in watchlist:
            why = "it is quoted for a position or a strategy" if symbol else "nothing is selected"
            self.app.notify(f"{symbol or 'Market'}: not in the watchlist ({why})", severity="warning")
            return
        self._set_watchlist(f"remove {symbol} from the watchlist", [s for s in watchlist if s != symbol])

    def action_watch_move(self, step: int) -> None:
        watchlist = self._watchlist()
        if watchlist is None:
            return
        symbol = self.query_one("#market", MarketTable).selected_key
        if symbol is None or symbol not in watchlist:
            self.app.notify(f"{symbol or 'Market'}: not in the watchlist", severity="warning")
            return
        at = watchlist.index(symbol)
        to = max(0, min(len(watchlist) - 1, at + step))
        if to == at:
            return
        watchlist.insert(to, watchlist.pop(at))
        self._set_watchlist(f"move {symbol} {'up' if step < 0 else 'down'}", watchlist)

    def action_main_contract(self) -> None:
        """The selected contract's product: its main contract (largest open interest) in its place."""
        watchlist = self._watchlist()
        if watchlist is None:
            return
        symbol = self.query_one("#market", MarketTable).selected_key
        contract = self.state.contracts.get(symbol) if symbol else None
        product = (contract.product if contract is not None else "") or product_of(symbol or "")
        if symbol is None or not product:
            self.app.notify("Select a contract in the Market panel first", severity="warning")
            return
        account_id = self.account_id
        client = self.qapp.client

        async def switch() -> Reply:
            reply = await client.main_contract(account_id, product)
            if not reply.ok:
                return reply
            main = reply.result["main"]
            interest = reply.result["open_interest"]
            figures = ", ".join(
                f"{s.split('.')[0]} {v:,.0f}" for s, v in sorted(interest.items(), key=lambda kv: -kv[1])[:4]
            )
            if main == symbol:
                return Reply(ok=True, result={"summary": f"{symbol} is the main contract (OI {figures})"})
            current = list(self.qapp.client.state(account_id).watchlist or watchlist)
            at = current.index(symbol) if symbol in current else len(current)
            new = [s for s in current if s not in (symbol, main)]
            new.insert(min(at, len(new)), main)
            done = await client.set_watchlist(account_id, new)
            if not done.ok:
                return done
            return Reply(ok=True, result={"summary": f"{main} replaces {symbol} (OI {figures})"})

        self.qapp.run_command(f"{product} main contract", switch())

    def action_history(self) -> None:
        """The History screen of this account."""
        from tui.screens.history import HistoryScreen  # here: not needed for the first frame

        self.app.push_screen(HistoryScreen(self.account_id))

    def action_equity_range(self) -> None:
        """The equity chart's time range: today -> 5 days -> all -> today."""
        self.query_one("#funds", FundsPanel).next_range()
        self._load_equity(asked=True)

    def _load_equity(self, *, asked: bool = False) -> None:
        """Load the stored curve of the chart's range (thinned by the trader to about what
        the chart can show); the live points are added to it as they come."""
        funds = self.query_one("#funds", FundsPanel)
        account_id, index = self.account_id, funds.range_index
        equity = RANGES[index]
        start = equity.start(account_now(self.state))

        async def load() -> None:
            reply = await self.qapp.client.history(
                account_id,
                "account_snapshots",
                since=start.timestamp() if start is not None else None,
                limit=equity.limit,
                every=equity.every,
            )
            if reply.ok:
                funds.set_history(account_id, index, list(reply.result or []))
            elif asked:  # at start-up a trader not up yet is normal: its snapshot loads it again
                self.app.notify(f"{account_id} equity history: {reply.error}", severity="warning")

        self.run_worker(load(), group="equity")

    def action_toggle_orders(self) -> None:
        orders = self.query_one("#orders", OrdersTable)
        orders.working_only = not orders.working_only
        orders.reset()
        orders.show(self.state)
        self._title_orders()

    def action_halt(self) -> None:
        """The kill switch (HALT + stop strategies + cancel all), or resume when halted."""
        account_id = self.account_id
        state = self.state
        info = state.info
        halted = info is not None and info.trading_state is TradingState.HALTED
        if halted:
            rows = [
                ("Account", account_id),
                ("Trading state", "HALTED -> ACTIVE"),
                ("Strategies", "stay stopped (t)"),
            ]

            suspended = [c for c in state.conditionals.values() if c.state is CondState.SUSPENDED]

            def resume(ok: bool | None) -> None:
                if ok:
                    self.qapp.run_command(f"{account_id} -> ACTIVE", resumed())

            async def resumed() -> Reply:
                reply = await self.qapp.client.set_trading_state(account_id, TradingState.ACTIVE)
                if reply.ok and suspended:
                    self._ask_rearm(account_id)
                return reply

            if suspended:
                rows.append(
                    (
                        "Conditional orders",
                        f"{len(suspended)} suspended: you are asked next whether to re-arm them",
                    )
                )
            self.app.push_screen(ConfirmDialog(f"Resume trading in {account_id}?", rows), resume)
            return
        running = [s for s in state.strategies.values() if s.running]
        guards = [s for s in running if s.protective]
        labels = [f"{s.name} ({s.vt_symbol})" for s in guards]
        guard_names = {s.name for s in guards}
        working = state.working_orders

        def rows_for(keep: bool) -> list[tuple[str, str | Text]]:
            stopping = len(running) - (len(guards) if keep else 0)
            cancelled = [o for o in working if not (keep and o.reference in guard_names)]
            rows: list[tuple[str, str | Text]] = [
                ("Account", account_id),
                ("Trading state", f"{info.trading_state.name if info else '?'} -> HALTED (no new orders)"),
                ("Strategies", f"{stopping} of {len(running)} running -> stopped"),
            ]
            if guards:
                rows.append(protective_row(labels, keep, auto_trading=info.auto_trading if info else None))
            kept = len(working) - len(cancelled)
            rows += [
                (
                    "Working orders",
                    f"{len(cancelled)} -> cancelled" + (f", {kept} protective close(s) stay" if kept else ""),
                ),
                (
                    "Positions",
                    f"{len(state.positions)} stay open: c closes one (HALTED -> REDUCING first), R is close-only",
                ),
            ]
            return rows

        dialog = KillDialog(f"KILL SWITCH for {account_id}?", rows_for, choice=bool(guards))

        def kill(ok: bool | None) -> None:
            if ok:
                keep = dialog.keep_protective
                label = f"KILL SWITCH {account_id}" + (" (protective strategies kept)" if keep else "")
                self.qapp.run_command(label, self.qapp.kill(account_id, keep_protective=keep))

        self.app.push_screen(dialog, kill)

    def action_toggle_strategy(self) -> None:
        table = self.query_one("#strategies", StrategiesTable)
        name = table.selected_key
        if name is None:
            self.app.notify("Select a strategy in the Strategies tab first", severity="warning")
            return
        strategy = self.state.strategies.get(name)
        action = "stop" if strategy is not None and strategy.running else "start"
        self.qapp.run_command(
            f"{action} {name}",
            self.qapp.client.strategy_command(self.account_id, StrategyCommand(action=action, name=name)),
        )

    def action_auto_trading(self) -> None:
        account_id = self.account_id
        info = self.state.info
        if info is not None and info.auto_trading:
            self.qapp.run_command(
                "auto-trading off",
                self.qapp.client.strategy_command(account_id, StrategyCommand(action="auto_off")),
            )
            return

        def answered(ok: bool | None) -> None:
            if ok:
                self.qapp.run_command(
                    "auto-trading on",
                    self.qapp.client.strategy_command(account_id, StrategyCommand(action="auto_on")),
                )

        rows = [("Account", account_id), ("Effect", "strategy signals become orders")]
        self.app.push_screen(
            ConfirmDialog(f"Turn auto-trading ON in {account_id}?", rows, danger=True), answered
        )

    # ------------------------------------------------------------------ conditional orders

    def _ask_rearm(self, account_id: str) -> None:
        """After a resume: re-arm the conditional orders the kill switch suspended? (Each is
        listed: they may fire on the next tick.)"""
        suspended = [
            c
            for c in self.qapp.client.state(account_id).conditionals.values()
            if c.state is CondState.SUSPENDED
        ]
        if not suspended:
            return
        rows: list[tuple[str, str | Text]] = [("Account", account_id)]
        rows += [(c.vt_symbol, c.words()) for c in suspended[:8]]
        if len(suspended) > 8:
            rows.append(("", f"... and {len(suspended) - 8} more"))
        rows.append(("No", "they stay SUSPENDED (cancel them with x in the Conditional tab)"))

        def answered(ok: bool | None) -> None:
            if ok:
                self.qapp.run_command(
                    f"re-arm {len(suspended)} conditional orders",
                    self.qapp.client.conditional_command(account_id, ConditionalCommand(action="rearm")),
                )

        self.app.push_screen(
            ConfirmDialog(
                f"Re-arm {len(suspended)} suspended conditional orders of {account_id}?", rows, danger=True
            ),
            answered,
        )

    def action_conditional(self) -> None:
        """A conditional order on the selected quote, or a stop on the selected position."""
        positions = self.query_one("#positions", PositionsTable)
        pos = positions.selected() if self.focused is positions else None
        vt_symbol, _ = self._selected_symbol()
        if pos is None and vt_symbol is None:
            self.app.notify("Select a quote or a position first", severity="warning")
            return
        dialog = ConditionalDialog(self.account_id, self.state, vt_symbol=vt_symbol, position=pos)
        self.app.push_screen(dialog, self._confirm_conditional)

    def _confirm_conditional(self, req: ConditionalRequest | None) -> None:
        if req is None:
            return
        account_id = self.account_id
        rows = conditional_rows(account_id, req, self.state)

        def answered(ok: bool | None) -> None:
            if ok:
                self.qapp.run_command(
                    f"conditional {req.vt_symbol}", self.qapp.client.create_conditional(account_id, req)
                )

        self.app.push_screen(ConfirmDialog(f"Arm this conditional order in {account_id}?", rows), answered)

    def _cancel_conditional(self, table: ConditionalTable) -> None:
        cond = table.selected()
        if cond is None:
            self.app.notify("Select a conditional order first", severity="warning")
            return
        if not cond.is_live:
            self.app.notify(
                f"Conditional order {cond.cond_id} is {cond.state.name}: nothing to cancel",
                severity="warning",
            )
            return
        self.qapp.run_command(
            f"cancel conditional {cond.cond_id}",
            self.qapp.client.conditional_command(
                self.account_id, ConditionalCommand(action="cancel", cond_id=cond.cond_id)
            ),
        )

    # ------------------------------------------------------------------ reverse, close a contract

    def _selected_position(self) -> Position | None:
        positions = self.query_one("#positions", PositionsTable)
        pos = positions.selected() if self.focused is positions else None
        if pos is None:
            self.app.notify("Select a position in the Positions panel first (tab to it)", severity="warning")
        return pos

    def action_reverse(self) -> None:
        """反手: the confirmation lists the close legs and the open that follows their fill."""
        pos = self._selected_position()
        if pos is None:
            return
        account_id = self.account_id
        rows, price = close_rows(account_id, pos, self.state)
        if price is None:
            self.app.notify(f"No quote for {pos.vt_symbol}: cannot price the reverse", severity="error")
            return
        volume = sum(closable(self.state, pos.vt_symbol, pos.direction))  # what the close takes
        if volume <= 0:
            self.app.notify(
                f"Nothing closable in {pos.vt_symbol}: working close orders hold it all", severity="warning"
            )
            return
        side = "SELL" if pos.direction is Direction.LONG else "BUY"
        rows = [(f"1. close: {k}" if k in ("Side", "Offset", "Volume", "Price") else k, v) for k, v in rows]
        rows += [
            (
                "2. then open",
                Text(f"{side} OPEN {volume:g} {pos.vt_symbol} at the opposite best", style="bold"),
            ),
            (
                "When",
                "only once every close leg has filled; refused, cancelled or not filled in 10 s: NOT sent",
            ),
        ]

        def answered(ok: bool | None) -> None:
            if ok:
                self.qapp.run_command(
                    f"reverse {pos.direction.name.lower()} {pos.vt_symbol}",
                    self.qapp.client.reverse_position(
                        account_id, pos.vt_symbol, pos.direction, volume=volume
                    ),
                )

        title = f"Reverse {pos.direction.name} {volume:g} {pos.vt_symbol} in {account_id}?"
        self.app.push_screen(ConfirmDialog(title, rows, danger=True), answered)

    def action_close_contract(self) -> None:
        """Close both the long and the short of the selected contract: every order listed."""
        vt_symbol, _ = self._selected_symbol()
        state = self.state
        held = [
            p
            for d in (Direction.LONG, Direction.SHORT)
            if (p := state.positions.get((vt_symbol or "", d))) is not None
        ]
        if vt_symbol is None or not held:
            self.app.notify(
                f"No position in {vt_symbol or 'the selected contract'} to close", severity="warning"
            )
            return
        account_id = self.account_id
        rows: list[tuple[str, str | Text]] = [
            ("Account", Text(account_id, style="bold reverse")),
            ("Symbol", vt_symbol),
        ]
        prices: dict[Direction, float] = {}
        volumes: dict[Direction, float] = {}  # what the confirmation lists is what is sent
        for pos in held:
            legs, price = close_rows(account_id, pos, state)
            if price is None:
                self.app.notify(f"No quote for {vt_symbol}: cannot price the close", severity="error")
                return
            volume = sum(closable(state, vt_symbol, pos.direction))
            if volume <= 0:  # shown (its Offset row says why), nothing sent for it
                rows.append((f"close {pos.direction.name.lower()}", dict(legs)["Offset"]))
                continue
            prices[pos.direction] = price
            volumes[pos.direction] = volume
            parts = dict(legs)
            rows.append(
                (
                    f"close {pos.direction.name.lower()}",
                    f"{parts['Side']} {parts['Offset']} @ {parts['Price']}",
                )
            )
        if not volumes:
            self.app.notify(
                f"Nothing closable in {vt_symbol}: working close orders hold it all", severity="warning"
            )
            return
        client = self.qapp.client
        halted = self._trading_state() is TradingState.HALTED

        async def close_all() -> Reply:
            if halted:  # as with c: the operator agreed to close-only first
                switched = await client.set_trading_state(account_id, TradingState.REDUCING)
                if not switched.ok:
                    return switched
            replies = [
                await client.close_position(account_id, vt_symbol, d, volume=volumes[d], price=prices[d])
                for d in prices
            ]
            bad = [r for r in replies if not r.ok]
            if not bad:
                return Reply(ok=True, result={"summary": f"{len(replies)} close(s) sent"})
            return Reply(ok=False, error="; ".join(r.error for r in bad), result=bad[0].result)

        def answered(ok: bool | None) -> None:
            if ok:
                self.qapp.run_command(f"close all of {vt_symbol}", close_all())

        title = f"Close every position in {vt_symbol} ({account_id})?"
        if halted:
            title = f"{account_id} is HALTED: switch it to REDUCING (close-only) and close {vt_symbol}?"
            rows.insert(1, ("Trading state", "HALTED -> REDUCING (only orders that reduce a position)"))
        self.app.push_screen(ConfirmDialog(title, rows, danger=True), answered)
