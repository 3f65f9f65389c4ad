"""Equity curves on screen: the time ranges the operator switches between, the stored
history each one asks for, resampling to the cells there are, and the sparkline.

The stored curve is one point per ``database.snapshot_interval`` (10 s by default), far more
than a chart or a sparkline has cells: the trader returns it already thinned to one point
per ``every`` seconds (``HistoryRequest.every``), and the console resamples what it has to
its width.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.client import AccountState
from core.models import CHINA_TZ, EquityPoint, now
from core.sessions import TRADING_DAY_ROLL_HOUR, trading_day_of

SPARK = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True, slots=True)
class EquityRange:
    """A span of the curve: ``days`` trading days back (the current one counts), or all."""

    name: str
    days: int | None
    every: float  # seconds between the stored points asked for
    limit: int  # at most this many points
    tick_format: str  # x-axis labels

    def start(self, now: datetime) -> datetime | None:
        """Where the range begins: the start of the trading day ``days - 1`` trading days
        before today's (a trading day starts at 20:00 the business day before)."""
        if self.days is None:
            return None
        day = trading_day_of(now)
        for _ in range(self.days):
            day -= timedelta(days=1)
            while day.weekday() >= 5:
                day -= timedelta(days=1)
        return datetime(day.year, day.month, day.day, TRADING_DAY_ROLL_HOUR, tzinfo=CHINA_TZ)


RANGES: tuple[EquityRange, ...] = (
    EquityRange("today", 1, every=60.0, limit=2000, tick_format="%H:%M"),
    EquityRange("5 days", 5, every=300.0, limit=2000, tick_format="%m-%d"),
    EquityRange("all", None, every=4 * 3600.0, limit=5000, tick_format="%y-%m-%d"),
)


def account_now(state: AccountState) -> datetime:
    """The account's own now (its latest figures), which the ranges count back from; the
    wall clock only when it has none."""
    acc = state.account
    last = state.equity[-1].datetime if state.equity else None
    times = [t for t in (acc.datetime if acc is not None else None, last) if t is not None]
    return max(times) if times else now()


def in_range(points: Iterable[EquityPoint], start: datetime | None) -> list[EquityPoint]:
    return [p for p in points if start is None or p.datetime >= start]


def merge(stored: Sequence[EquityPoint], live: Iterable[EquityPoint]) -> list[EquityPoint]:
    """The stored history, then the live points that came after it."""
    last = stored[-1].datetime if stored else None
    return [*stored, *(p for p in live if last is None or p.datetime > last)]


def resample(values: Sequence[float], width: int) -> list[float]:
    """At most ``width`` values spread over the whole series: the last value of each of
    ``width`` equal slices (the end of the series is always kept)."""
    n = len(values)
    if width <= 0:
        return []
    if n <= width:
        return list(values)
    return [values[(i + 1) * n // width - 1] for i in range(width)]


def sparkline(values: Sequence[float], width: int) -> str:
    """A block sparkline of the whole series, ``width`` cells at most."""
    values = resample(values, width)
    if len(values) < 2:
        return ""
    lo, hi = min(values), max(values)
    if hi == lo:
        return SPARK[3] * len(values)
    top = len(SPARK) - 1
    return "".join(SPARK[round((v - lo) / (hi - lo) * top)] for v in values)
