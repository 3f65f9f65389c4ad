"""The history and statistics as text: ``qtrader-tui --history`` and ``--trigger-stats`` print
these, one line per trade, day or strategy instance (or CSV with a header). The figures are the
trader's (core/trade_stats.py); this only words them. Times are exchange time (CST).
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime

from core.models import CHINA_TZ, Direction
from core.sessions import trading_day_end, trading_day_start
from core.trade_stats import DayTotal, InstanceStats, ReportTrade, TradeReport

__all__ = [
    "CSV_HEADER",
    "day_line",
    "instance_line",
    "parse_day",
    "report_csv",
    "report_lines",
    "trade_line",
    "trading_day_range",
]

CSV_HEADER = [
    "trading_day",
    "datetime",
    "trade_id",
    "order_id",
    "vt_symbol",
    "direction",
    "offset",
    "price",
    "volume",
    "commission",
    "close_pnl",
    "reference",
]


def parse_day(text: str, option: str) -> date:
    """``YYYY-MM-DD`` -> date; ValueError naming the option otherwise."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option}: '{text}' is not a date (YYYY-MM-DD, a trading day)") from None


def trading_day_range(first: date | None, last: date | None) -> tuple[float | None, float | None]:
    """Epoch seconds from the start of trading day ``first`` to the end of trading day ``last``
    (exclusive): a night session counts for the next trading day, Friday night for Monday."""
    if first is not None and last is not None and first > last:
        raise ValueError(f"--from {first} is after --to {last}")
    since = trading_day_start(first).timestamp() if first is not None else None
    until = trading_day_end(last).timestamp() if last is not None else None
    return since, until


def _side(direction: Direction) -> str:
    return "BUY" if direction is Direction.LONG else "SELL"


def _when(moment: datetime) -> str:
    return moment.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


def trade_line(row: ReportTrade) -> str:
    t = row.trade
    return (
        f"{row.trading_day}  {_when(t.datetime)}  {t.vt_symbol:<14} {_side(t.direction):<4} "
        f"{t.offset.name:<14} {t.volume:>5g} @ {t.price:<12g} fee {t.commission:>10,.2f}  "
        f"close P&L {row.close_pnl:>12,.2f}  {t.reference}  {t.trade_id}"
    )


def day_line(day: DayTotal) -> str:
    label = "total" if day.trading_day == "total" else f"day {day.trading_day}"
    return (
        f"{label}: {day.trades} trades, volume {day.volume:g}, commission {day.commission:,.2f}, "
        f"close P&L {day.close_pnl:,.2f}, net {day.net:,.2f}"
    )


def report_lines(report: TradeReport) -> list[str]:
    """The trades one per line, then one line per trading day and the total; notes last."""
    lines = [trade_line(row) for row in report.trades]
    lines += [day_line(day) for day in report.days]
    lines.append(day_line(report.total))
    lines += report_notes(report)
    return lines


def report_notes(report: TradeReport) -> list[str]:
    """What the figures leave out, in words (for stderr with CSV)."""
    notes = []
    if report.left_out:
        notes.append(f"note: {report.left_out} older trades of the range not listed (they are in the totals)")
    if report.unmatched:
        notes.append(
            f"note: {report.unmatched:g} closed lots had no open in the database (close P&L counted 0)"
        )
    if report.unpriced:
        notes.append(f"note: no multiplier for {', '.join(report.unpriced)} (their close P&L counted 0)")
    return notes


def report_csv(report: TradeReport) -> str:
    """The trades as CSV with a header (``CSV_HEADER``), oldest first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for row in report.trades:
        t = row.trade
        writer.writerow(
            [
                row.trading_day,
                t.datetime.astimezone(CHINA_TZ).isoformat(),
                t.trade_id,
                t.order_id,
                t.vt_symbol,
                t.direction.name,
                t.offset.name,
                repr(t.price),
                f"{t.volume:g}",
                f"{t.commission:.2f}",
                f"{row.close_pnl:.2f}",
                t.reference,
            ]
        )
    return out.getvalue()


def instance_line(stats: InstanceStats) -> str:
    """One strategy instance: its triggers by action and result, what was executed, its round trips."""
    counts = ", ".join(f"{key} {n}" for key, n in sorted(stats.triggers.items())) or "none"
    total = sum(stats.triggers.values())
    rate = f"{stats.win_rate * 100:.1f}%" if stats.win_rate is not None else "—"
    line = (
        f"{stats.instance}: triggers {total} ({counts}); executed {stats.executed}; "
        f"round trips {stats.round_trips}, won {stats.wins}, win rate {rate}, P&L {stats.pnl:,.2f} "
        f"(commission {stats.commission:,.2f})"
    )
    if stats.open_volume:
        line += f"; {stats.open_volume:g} lots still open"
    return line
