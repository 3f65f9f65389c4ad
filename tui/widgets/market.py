"""Market panel: the watchlist's quotes, with the day's limits, pre-settlement and open interest.

The row under the cursor is the selected contract: the Depth panel shows its book (the table
posts ``Highlighted`` when the cursor moves to another contract).

The State column says what each contract's market is doing by the exchange's sessions
(``core/sessions.py``): ``open``, ``night``, ``auction`` (the opening call auction) or ``closed``.
A state lasts until a known instant, so it is kept with that instant and looked up again only
once it has passed: a tick costs a dictionary look-up, and a timer set for the next change
redraws the rows when no quote moves them (a closed market sends none). The time is the
venue's: the console's clock plus the account's ``clock_offset`` (a sim started at
``sim.clock_start``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from rich.text import Text
from textual.message import Message
from textual.timer import Timer

from core.client import AccountState
from core.models import CHINA_TZ, Tick, now
from core.sessions import MarketState, state_at, table_of
from tui import format as fmt
from tui.widgets.table import Cell, KeyedTable


class MarketTable(KeyedTable[Tick]):
    COLUMNS = (
        ("symbol", "Symbol", 12),
        ("state", "State", 7),
        ("last", "Last", 9),
        ("chg", "Chg%", 7),
        ("bid", "Bid", 9),
        ("bidv", "BidV", 4),
        ("ask", "Ask", 9),
        ("askv", "AskV", 4),
        ("vol", "Volume", 9),
        ("oi", "OI", 9),
        ("pre", "PreSettle", 9),
        ("up", "Limit up", 9),
        ("down", "Limit dn", 9),
    )
    # at 80 columns the watchlist is symbol, last and change; bid and ask come back from 100
    HIDE_WHEN_NARROW = ("pre", "down", "up", "oi", "vol", "askv", "bidv", "state", "ask", "bid")

    class Highlighted(Message):
        """The cursor is on another contract (``vt_symbol``; None when the table is empty)."""

        def __init__(self, table: MarketTable, vt_symbol: str | None) -> None:
            super().__init__()
            self.table = table
            self.vt_symbol = vt_symbol

        @property
        def control(self) -> MarketTable:
            return self.table

    def __init__(
        self, *, scheme: str = "cn", clock: Callable[[], datetime] = now, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.scheme = scheme
        self.clock = clock
        self.state: AccountState | None = None
        #: per contract: its session state (None: no session table), from when and until when
        self._sessions: dict[str, tuple[MarketState | None, datetime, datetime]] = {}
        self._moment = clock()
        self._offset = timedelta()  # the venue's clock ahead of ours (``TraderInfo.clock_offset``)
        self._next_change = _NEVER  # the earliest instant a shown state ends
        self._timer: Timer | None = None

    def session_state(self, vt_symbol: str) -> MarketState | None:
        """``vt_symbol``'s state at the time of the last ``show`` (cached until it changes)."""
        moment = self._moment
        cached = self._sessions.get(vt_symbol)
        if cached is None or not cached[1] <= moment < cached[2]:
            table = table_of(vt_symbol)
            state, until = (None, _NEVER) if table is None else state_at(table, moment)
            cached = (state, moment, until)
            self._sessions[vt_symbol] = cached
        self._next_change = min(self._next_change, cached[2])
        return cached[0]

    def key_of(self, item: Tick) -> str:
        return item.vt_symbol

    def cells(self, item: Tick) -> tuple[Cell, ...]:
        contract = self.state.contracts.get(item.vt_symbol) if self.state else None
        change = item.change_pct
        return (
            item.vt_symbol,
            _state_cell(self.session_state(item.vt_symbol)),
            fmt.signed(change, fmt.price(item.last_price, contract), self.scheme),
            fmt.signed(change, fmt.pct(change), self.scheme),
            fmt.right(fmt.price(item.bid_price_1, contract)),
            fmt.right(fmt.volume(item.bid_volume_1)),
            fmt.right(fmt.price(item.ask_price_1, contract)),
            fmt.right(fmt.volume(item.ask_volume_1)),
            fmt.right(fmt.volume(item.volume)),
            fmt.right(fmt.volume(item.open_interest)),
            fmt.right(fmt.price(item.pre_settlement, contract)),
            fmt.right(fmt.price(item.limit_up, contract)),
            fmt.right(fmt.price(item.limit_down, contract)),
        )

    def move_cursor(self, row: int) -> None:
        before = self.selected_key
        super().move_cursor(row)
        if self.selected_key != before:
            self.post_message(self.Highlighted(self, self.selected_key))

    def show(self, state: AccountState, only: set[str] | None = None) -> None:
        self.state = state
        self._offset = timedelta(seconds=state.info.clock_offset if state.info is not None else 0.0)
        self._moment = self.clock() + self._offset
        if self._moment >= self._next_change:  # a state has ended since: every row again
            only = None
        if only is None:
            self._next_change = _NEVER
        elif self.has_rows(only):  # quotes of rows shown: no row comes, goes or moves
            ticks = state.ticks
            self.update_rows(ticks[s] for s in only if s in ticks)
            self._arm()
            return
        symbols = market_symbols(state)
        if symbols is None:
            self.sync(state.ticks.values(), only=only)
        else:
            self.sync([state.ticks[s] for s in symbols if s in state.ticks], only=only)
            self.reorder(symbols)
        self._arm()

    def refresh_states(self) -> None:
        """Redraw the rows whose session state has ended (the timer's call; a quote does it too)."""
        self._timer = None
        if self.state is not None and self.clock() + self._offset >= self._next_change:
            self.show(self.state)
        else:
            self._arm()

    def _arm(self) -> None:
        """A timer for the next change of state (looked at again within a minute at most:
        the console's clock may be another than the wall clock)."""
        if self._timer is not None or self._next_change == _NEVER or not self.is_mounted:
            return
        delay = (self._next_change - self.clock() - self._offset).total_seconds()
        self._timer = self.set_timer(min(max(delay, 0.0), 60.0) + 0.05, self.refresh_states)


def market_symbols(state: AccountState) -> list[str] | None:
    """The Market panel's contracts in order: the account's watchlist, then the contracts of
    its positions and strategies that are not in it (what the operator must see quoted); None
    when the trader has not said its watchlist (then every quote, as it comes)."""
    if state.watchlist is None:
        return None
    extra = [p.vt_symbol for p in state.positions.values()] + [s.vt_symbol for s in state.strategies.values()]
    return list(dict.fromkeys([*state.watchlist, *extra]))


_NEVER = datetime.max.replace(tzinfo=CHINA_TZ)

_STATE_STYLE = {
    MarketState.OPEN: "green",
    MarketState.NIGHT: "cyan",
    MarketState.AUCTION: "yellow",
    MarketState.CLOSED: "grey50",
}


def _state_cell(state: MarketState | None) -> Text:
    return Text("") if state is None else Text(state.value, style=_STATE_STYLE[state])
