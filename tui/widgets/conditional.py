"""The Conditional panel: the account's conditional orders (条件单) held by its trader (pending,
suspended, triggered, cancelled, expired), each with its condition and its order in words."""

from __future__ import annotations

from rich.text import Text

from core.client import AccountState
from core.models import ConditionalOrder, CondState
from tui.widgets.table import Cell, KeyedTable

#: how each state reads: a pending one is armed; a suspended one waits for a re-arm
STATE_STYLES = {
    CondState.PENDING: "bold green",
    CondState.SUSPENDED: "bold yellow",
    CondState.TRIGGERED: "bold",
    CondState.CANCELLED: "dim",
    CondState.EXPIRED: "dim",
}


class ConditionalTable(KeyedTable[ConditionalOrder]):
    """Newest first; the state column tells the live ones (pending, suspended) from the rest."""

    COLUMNS = (
        ("time", "Created", 8),
        ("symbol", "Symbol", 12),
        ("state", "State", 9),
        ("what", "Condition → order", 66),
        ("msg", "Message", 30),
        ("id", "Id", 16),
    )
    # the condition in words is what the panel is for: the id and the message give way first
    # (a refusal's reason is also notified when it happens)
    HIDE_WHEN_NARROW = ("id", "msg", "time")
    FLEX = {"what": 40}
    NEWEST_FIRST = True

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state: AccountState | None = None

    def key_of(self, item: ConditionalOrder) -> str:
        return item.cond_id

    def cells(self, item: ConditionalOrder) -> tuple[Cell, ...]:
        return (
            f"{item.created_at:%H:%M:%S}",
            item.vt_symbol,
            Text(item.state.name, style=STATE_STYLES[item.state]),
            item.words(),
            item.message,
            item.cond_id,
        )

    def show(self, state: AccountState) -> None:
        self.state = state
        self.sync(sorted(state.conditionals.values(), key=lambda c: c.created_at))

    def selected(self) -> ConditionalOrder | None:
        key = self.selected_key
        if key is None or self.state is None:
            return None
        return self.state.conditionals.get(key)
