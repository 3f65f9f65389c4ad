"""History figures of an account, computed from its stored trades and triggers (in its trader,
so a console and the command line print the same numbers): each trade's close P&L, the totals of
each trading day, and each strategy instance's record.

Close P&L (平仓盈亏, trade by trade: 逐笔) of a closing fill is (close price - open price) x volume
x multiplier (negated for a short), the open prices taken first in, first out from the same
contract and position side; a close that names its lots (平今 CLOSETODAY: the lots opened on its
trading day; 平昨 CLOSEYESTERDAY, and CLOSE on SHFE/INE where it means yesterday's: the older
ones) takes them first in, first out among those. It is measured against the price each lot was opened at, not the
previous day's settlement (the venue's 逐日盯市 figure), so a lot held overnight counts its whole
move on the day it is closed. Opens before the report's range are read too (every trade up to
its end), so a close inside it is priced right; a close whose open is not in the database at all
(opened before the account's history) counts 0 and is reported as ``unmatched``.

A strategy instance's round trip is its own book on one contract going from flat back to flat:
from the fill that opens a position while the instance holds none there, to the fill that brings
it back to none. Its P&L is the close P&L of its closing fills less the commission of all its
fills; a round trip with P&L > 0 is a win. The instance's position still open is not a round trip,
nor is one whose opens were not read (older than the history read).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from datetime import datetime

import msgspec

from core.models import Direction, Offset, StrategyTrigger, Trade
from core.sessions import trading_day_of

__all__ = [
    "DayTotal",
    "InstanceStats",
    "ReportTrade",
    "TradeReport",
    "close_pnls",
    "strategy_stats",
    "trade_report",
]

#: results of a trigger whose orders went out (core/strategy_engine.py)
EXECUTED_RESULTS = frozenset({"success", "partial"})
_EPS = 1e-9


class ReportTrade(msgspec.Struct, kw_only=True):
    """One fill with the trading day it belongs to and its close P&L (0 for an open)."""

    trade: Trade
    trading_day: str  # YYYY-MM-DD
    close_pnl: float = 0.0


class DayTotal(msgspec.Struct, kw_only=True):
    """The fills of one trading day (or of the whole report: ``trading_day`` "total")."""

    trading_day: str
    trades: int = 0
    volume: float = 0.0
    commission: float = 0.0
    close_pnl: float = 0.0

    @property
    def net(self) -> float:
        return self.close_pnl - self.commission


class TradeReport(msgspec.Struct, kw_only=True):
    """The ``trade_report`` history: fills of a range (oldest first), their day totals."""

    trades: list[ReportTrade] = msgspec.field(default_factory=list)
    days: list[DayTotal] = msgspec.field(default_factory=list)
    total: DayTotal = msgspec.field(default_factory=lambda: DayTotal(trading_day="total"))
    #: closing volume with no open in the database to price it against (counted at 0)
    unmatched: float = 0.0
    #: fills of the range left out (the newest ``limit`` are kept)
    left_out: int = 0
    #: contracts whose multiplier the venue no longer gives: their closes count 0
    unpriced: list[str] = msgspec.field(default_factory=list)


class InstanceStats(msgspec.Struct, kw_only=True):
    """One strategy instance's record (``strategy_stats`` history)."""

    instance: str
    #: "action result" -> how many triggers, e.g. {"buy success": 3, "sell not executed": 1}
    triggers: dict[str, int] = msgspec.field(default_factory=dict)
    executed: int = 0  # triggers whose orders went out (success or partial)
    round_trips: int = 0
    wins: int = 0
    pnl: float = 0.0  # of the closed round trips, net of their commissions
    commission: float = 0.0  # of the closed round trips
    open_volume: float = 0.0  # the instance's lots still open (no round trip yet)

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.round_trips if self.round_trips else None


def _closes(trade: Trade) -> Direction | None:
    """The position side a fill closes (None: it opens)."""
    if trade.offset is Offset.OPEN or trade.offset is Offset.NONE:
        return None
    return trade.direction.opposite


def _named_lots(trade: Trade) -> str | None:
    """The lots a closing fill names: "today", "yesterday", or None (first in, first out)."""
    if trade.offset is Offset.CLOSETODAY:
        return "today"
    if trade.offset is Offset.CLOSEYESTERDAY or (
        trade.offset is Offset.CLOSE and trade.vt_symbol.endswith((".SHFE", ".INE"))
    ):
        return "yesterday"
    return None


class _Book:
    """FIFO lots per (key, contract, side): what close P&L is measured against."""

    def __init__(self, size_of: Callable[[str], float | None]) -> None:
        self.size_of = size_of
        self.unpriced: set[str] = set()  # contracts whose multiplier is unknown: closes count 0
        #: [volume left, price, trading day (ordinal)] oldest first
        self.lots: dict[tuple[object, str, Direction], deque[list[float]]] = defaultdict(deque)

    def fill(self, key: object, trade: Trade) -> tuple[float, float]:
        """Apply one fill; (its close P&L, its volume that found no open)."""
        side = _closes(trade)
        day = trading_day_of(trade.datetime).toordinal()
        if side is None:
            self.lots[(key, trade.vt_symbol, trade.direction)].append([trade.volume, trade.price, day])
            return 0.0, 0.0
        lots = self.lots[(key, trade.vt_symbol, side)]
        left, pnl = trade.volume, 0.0
        size = self.size_of(trade.vt_symbol)
        if size is None:
            self.unpriced.add(trade.vt_symbol)
            size = 0.0
        named = _named_lots(trade)
        # the lots the close names first (today's / yesterday's), then any (a history with gaps)
        passes = (lambda d: d == day, None) if named == "today" else (lambda d: d < day, None)
        for wanted in passes if named else (None,):
            for lot in lots:
                if left <= _EPS:
                    break
                if lot[0] <= _EPS or (wanted is not None and not wanted(lot[2])):
                    continue
                used = min(left, lot[0])
                move = trade.price - lot[1] if side is Direction.LONG else lot[1] - trade.price
                pnl += move * used * size
                lot[0] -= used
                left -= used
        while lots and lots[0][0] <= _EPS:
            lots.popleft()
        if named:  # lots emptied out of order
            self.lots[(key, trade.vt_symbol, side)] = deque(lot for lot in lots if lot[0] > _EPS)
        return pnl, max(0.0, left)

    def held(self, key: object, vt_symbol: str) -> float:
        return sum(lot[0] for side in Direction for lot in self.lots.get((key, vt_symbol, side), ()))


def close_pnls(
    trades: Iterable[Trade], size_of: Callable[[str], float | None]
) -> tuple[dict[str, float], float]:
    """Each fill's close P&L by trade id (``trades`` oldest first; ``size_of``: a contract's
    multiplier), and the closing volume that found no open."""
    book = _Book(size_of)
    out: dict[str, float] = {}
    unmatched = 0.0
    for trade in trades:
        pnl, missing = book.fill(None, trade)
        out[trade.trade_id] = pnl
        unmatched += missing
    return out, unmatched


def trade_report(
    trades: list[Trade],
    size_of: Callable[[str], float | None],
    *,
    since: datetime | None = None,
    vt_symbol: str | None = None,
    limit: int = 1000,
) -> TradeReport:
    """The fills at or after ``since`` (of ``vt_symbol``, if given) among ``trades`` (every
    stored fill up to the report's end, oldest first, so opens before ``since`` price the
    closes in it), with each day's totals and the whole range's. Day totals count every fill
    of the range; the list keeps the newest ``limit``."""
    book = _Book(size_of)
    unmatched = 0.0
    chosen: list[ReportTrade] = []
    for trade in trades:
        pnl, missing = book.fill(None, trade)
        if since is not None and trade.datetime < since:
            continue
        if vt_symbol is not None and trade.vt_symbol != vt_symbol:
            continue
        unmatched += missing
        day = trading_day_of(trade.datetime).isoformat()
        chosen.append(ReportTrade(trade=trade, trading_day=day, close_pnl=pnl))
    days: dict[str, DayTotal] = {}
    total = DayTotal(trading_day="total")
    for row in chosen:
        day = days.setdefault(row.trading_day, DayTotal(trading_day=row.trading_day))
        for figures in (day, total):
            figures.trades += 1
            figures.volume += row.trade.volume
            figures.commission += row.trade.commission
            figures.close_pnl += row.close_pnl
    kept = chosen[-limit:] if limit > 0 else []
    return TradeReport(
        trades=kept,
        days=sorted(days.values(), key=lambda d: d.trading_day),
        total=total,
        unmatched=unmatched,
        left_out=len(chosen) - len(kept),
        unpriced=sorted(book.unpriced),
    )


def strategy_stats(
    trades: Iterable[Trade],
    triggers: Iterable[StrategyTrigger],
    size_of: Callable[[str], float | None],
    instances: Iterable[str] = (),
) -> list[InstanceStats]:
    """Each strategy instance's record: ``instances`` (the configured ones, even with no
    history) and every instance that triggers or fills name, sorted by name. ``trades`` oldest
    first; only fills whose reference is an instance (not "manual") count."""
    stats: dict[str, InstanceStats] = {name: InstanceStats(instance=name) for name in instances}
    for trigger in triggers:
        record = stats.setdefault(trigger.instance, InstanceStats(instance=trigger.instance))
        key = f"{trigger.action} {trigger.result}"
        record.triggers[key] = record.triggers.get(key, 0) + 1
        if trigger.result in EXECUTED_RESULTS:
            record.executed += 1
    book = _Book(size_of)
    trip_pnl: dict[tuple[str, str], float] = defaultdict(float)
    trip_fee: dict[tuple[str, str], float] = defaultdict(float)
    opened: set[tuple[str, str]] = set()  # an open of the trip was read (else its start is older)
    for trade in trades:
        name = trade.reference
        if not name or name == "manual":
            continue
        record = stats.setdefault(name, InstanceStats(instance=name))
        key = (name, trade.vt_symbol)
        pnl, _ = book.fill(name, trade)
        trip_pnl[key] += pnl
        trip_fee[key] += trade.commission
        if _closes(trade) is None:
            opened.add(key)
        if book.held(name, trade.vt_symbol) <= _EPS:  # flat again: one round trip closed
            if _closes(trade) is not None and key in opened:
                net = trip_pnl[key] - trip_fee[key]
                record.round_trips += 1
                record.wins += net > 0
                record.pnl += net
                record.commission += trip_fee[key]
            trip_pnl.pop(key, None)
            trip_fee.pop(key, None)
            opened.discard(key)
    for (name, _symbol, _side), lots in book.lots.items():
        stats[str(name)].open_volume += sum(lot[0] for lot in lots)
    return [stats[name] for name in sorted(stats)]
