"""Strategies, Strategy triggers and Log panels."""

from __future__ import annotations

from rich.text import Text

from core.client import AccountState
from core.models import LogEntry, StrategyState, StrategyTrigger
from tui import format as fmt
from tui.widgets.table import Cell, KeyedTable

RESULT_STYLE = {
    "success": "green",
    "partial": "bold yellow",
    "failed": "bold red",
    "rejected": "bold red",
    "pending": "yellow",
    "not executed": "grey62",
}
LEVEL_STYLE = {
    "DEBUG": "grey50",
    "INFO": "",
    "WARNING": "yellow",
    "ERROR": "bold red",
    "CRITICAL": "bold red",
}


class StrategiesTable(KeyedTable[StrategyState]):
    COLUMNS = (
        ("name", "Instance", 16),
        ("class", "Class", 16),
        ("symbol", "Symbol", 13),
        ("state", "State", 8),
        ("pos", "Pos", 4),
        ("pnl", "P&L", 12),
        ("error", "Error", 30),
    )
    HIDE_WHEN_NARROW = ("class", "error")
    FLEX = {"error": 10}

    def __init__(self, *, scheme: str = "cn", id: str | None = None) -> None:
        super().__init__(id=id)
        self.scheme = scheme

    def key_of(self, item: StrategyState) -> str:
        return item.name

    def cells(self, item: StrategyState) -> tuple[Cell, ...]:
        return (
            item.name,
            item.class_name,
            item.vt_symbol,
            Text("running", style="green") if item.running else Text("stopped", style="grey50"),
            fmt.right(fmt.volume(item.position)),
            fmt.signed(item.pnl, fmt.amount(item.pnl), self.scheme),
            Text(item.error, style="red"),
        )

    def show(self, state: AccountState) -> None:
        self.sync(state.strategies.values())


def _trigger_key(t: StrategyTrigger) -> str:
    return f"{t.datetime.timestamp():.6f}|{t.instance}|{t.action}"


class TriggersTable(KeyedTable[StrategyTrigger]):
    """Newest first; the condition and the order / error share the width left over."""

    COLUMNS = (
        ("time", "Time", 8),
        ("instance", "Instance", 14),
        ("condition", "Condition", 60),
        ("price", "Price", 10),
        ("action", "Action", 6),
        ("result", "Result", 12),
        ("order", "Order / error", 24),
    )
    HIDE_WHEN_NARROW = ("order", "instance", "price")
    FLEX = {"condition": 20, "order": 16}
    NEWEST_FIRST = True

    def key_of(self, item: StrategyTrigger) -> str:
        return _trigger_key(item)

    def cells(self, item: StrategyTrigger) -> tuple[Cell, ...]:
        return (
            f"{item.datetime:%H:%M:%S}",
            item.instance,
            item.condition,
            fmt.right(f"{item.price:,.2f}"),
            item.action,
            Text(item.result, style=RESULT_STYLE.get(item.result, "")),
            item.error or item.order_id,
        )

    def show(self, state: AccountState) -> None:
        self.sync(state.triggers)


class LogTable(KeyedTable[LogEntry]):
    """Newest first; the message takes the width left over."""

    COLUMNS = (
        ("time", "Time", 8),
        ("level", "Level", 8),
        ("source", "Source", 10),
        ("message", "Message", 100),
    )
    HIDE_WHEN_NARROW = ("source",)
    FLEX = {"message": 30}
    NEWEST_FIRST = True

    def key_of(self, item: LogEntry) -> str:
        return f"{item.datetime.timestamp():.6f}|{hash(item.message)}"

    def cells(self, item: LogEntry) -> tuple[Cell, ...]:
        return (
            f"{item.datetime:%H:%M:%S}",
            Text(item.level, style=LEVEL_STYLE.get(item.level, "")),
            item.source,
            item.message,
        )

    def show(self, state: AccountState) -> None:
        self.sync(state.logs)
