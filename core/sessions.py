"""Trading sessions, the trading day and exchange holidays: when each China futures market is open.

Shared like ``core.models`` (every layer may import it, it imports nothing of ours but
``core.models``): the trader's risk rule, the sim exchange, the strategies' bars and the console
all ask the same calendar (ARCHITECTURE.md, "Layers").

- **Sessions per product** (``SESSIONS``): commodity day sessions 09:00-10:15, 10:30-11:30,
  13:30-15:00 (SHFE, INE, DCE, CZCE, GFEX); CFFEX index futures 09:30-11:30, 13:00-15:00;
  CFFEX treasury futures 09:30-11:30, 13:00-15:15. Night sessions start at 21:00 and end per
  product: 02:30 (au, ag, sc), 01:00 (cu, al, zn, pb, ni, sn, ss, ao, bc), 23:00 (the rest
  that trade at night); CFFEX, GFEX and many agricultural products have none. The call auction
  takes the five minutes before the first session of a trading day (20:55-21:00 when there is
  a night session, else 08:55-09:00; 09:25-09:30 at CFFEX). An exchange that changes its hours
  needs one line here.
- **The trading day**: from 20:00 China time the night session trades for the next trading day;
  what is after midnight belongs to it too (Friday night, until Saturday 02:30, belongs to
  Monday). Trading days are weekdays that are not public holidays; the night before a holiday
  has no night session (the exchanges' rule: the last trading day before a holiday of more
  than a weekend ends at 15:00).
- **Holidays** come from the ``chinese_calendar`` package (the State Council's yearly notice,
  maintained upstream; pinned in pyproject.toml), never a hand-typed list. A venue that reports
  its own trading day (CTP's ``TradingDay``) is believed over this for that venue's records. A
  year the package does not cover yet counts only weekends as closed, with one WARNING per year
  saying so: update the package.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum

import chinese_calendar

from core.models import CHINA_TZ

__all__ = [
    "AUCTION_MINUTES",
    "NIGHT_START",
    "SESSIONS",
    "TRADING_DAY_ROLL_HOUR",
    "MarketState",
    "SessionTable",
    "closed_reason",
    "has_night_session",
    "is_trading_day",
    "next_open",
    "next_trading_day",
    "session_of",
    "state_at",
    "table_of",
    "trading_day_end",
    "trading_day_of",
    "trading_day_start",
    "when_closed",
]

log = logging.getLogger(__name__)

TRADING_DAY_ROLL_HOUR = 20  # from 20:00 the night session already trades for the next day
NIGHT_START = time(21, 0)
AUCTION_MINUTES = 5  # the opening call auction before the first session of a trading day


class MarketState(StrEnum):
    """What a contract's market is doing at an instant."""

    OPEN = "open"  # a day session
    NIGHT = "night"  # the night session
    AUCTION = "auction"  # the opening call auction: orders are taken, nothing trades yet
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SessionTable:
    """One product's hours: its day sessions (start, end) and the end of its night session
    (None: no night session). Times are China time; a night end before 21:00 is after midnight."""

    day: tuple[tuple[time, time], ...]
    night_end: time | None = None


_COMMODITY_DAY = ((time(9, 0), time(10, 15)), (time(10, 30), time(11, 30)), (time(13, 30), time(15, 0)))
_INDEX_DAY = ((time(9, 30), time(11, 30)), (time(13, 0), time(15, 0)))
_BOND_DAY = ((time(9, 30), time(11, 30)), (time(13, 0), time(15, 15)))

_T2300, _T0100, _T0230 = time(23, 0), time(1, 0), time(2, 30)
_NO_NIGHT = None

#: Night session end by exchange and product (lower case); a product missing from its
#: exchange's map is not listed there (no table: no session rule applies to it).
_NIGHT_ENDS: dict[str, dict[str, time | None]] = {
    "SHFE": {
        **dict.fromkeys(("au", "ag"), _T0230),
        **dict.fromkeys(("cu", "al", "zn", "pb", "ni", "sn", "ss", "ao"), _T0100),
        **dict.fromkeys(("rb", "hc", "bu", "ru", "fu", "sp", "br", "op"), _T2300),
        "wr": _NO_NIGHT,
    },
    "INE": {"sc": _T0230, "bc": _T0100, "lu": _T2300, "nr": _T2300, "ec": _NO_NIGHT},
    "DCE": {
        **dict.fromkeys(
            (
                "a",
                "b",
                "m",
                "y",
                "p",
                "c",
                "cs",
                "rr",
                "l",
                "v",
                "pp",
                "eg",
                "eb",
                "pg",
                "j",
                "jm",
                "i",
                "fb",
            ),
            _T2300,
        ),
        **dict.fromkeys(("jd", "lh", "bb", "lg"), _NO_NIGHT),
    },
    "CZCE": {
        **dict.fromkeys(
            ("sr", "cf", "cy", "ta", "oi", "rm", "ma", "fg", "sa", "zc", "pf", "px", "sh", "pr", "sf", "sm"),
            _T2300,
        ),
        **dict.fromkeys(("wh", "pm", "ri", "lr", "jr", "rs", "ap", "cj", "pk", "ur"), _NO_NIGHT),
    },
    "GFEX": dict.fromkeys(("si", "lc", "ps", "pt", "pd"), _NO_NIGHT),
}

#: Every product's session table, by ``(exchange, product in lower case)``.
SESSIONS: dict[tuple[str, str], SessionTable] = {
    **{
        (exchange, product): SessionTable(_COMMODITY_DAY, end)
        for exchange, products in _NIGHT_ENDS.items()
        for product, end in products.items()
    },
    **{("CFFEX", p): SessionTable(_INDEX_DAY) for p in ("if", "ih", "ic", "im")},
    **{("CFFEX", p): SessionTable(_BOND_DAY) for p in ("ts", "tf", "t", "tl")},
}

_PRODUCT = re.compile(r"([A-Za-z]{1,3})\d")


@functools.lru_cache(maxsize=4096)
def table_of(vt_symbol: str) -> SessionTable | None:
    """The session table of ``vt_symbol`` (``rb2705.SHFE``); None for a product we do not know."""
    symbol, _, exchange = vt_symbol.rpartition(".")
    match = _PRODUCT.match(symbol)
    if match is None:
        return None
    return SESSIONS.get((exchange.upper(), match.group(1).lower()))


# ====================================================================== the calendar

_warned_years: set[int] = set()


def _holiday(day: date) -> bool | None:
    """True for a public holiday (a weekend that is part of one counts), False for any other
    day, None when the calendar package does not cover the year."""
    try:
        holiday, name = chinese_calendar.get_holiday_detail(day)
    except NotImplementedError:
        return None
    return holiday and name is not None


@functools.lru_cache(maxsize=4096)
def is_trading_day(day: date) -> bool:
    """A weekday that is not a public holiday (a working Saturday is still no trading day)."""
    if day.weekday() >= 5:
        return False
    holiday = _holiday(day)
    if holiday is None:
        if day.year not in _warned_years:
            _warned_years.add(day.year)
            log.warning(
                "exchange holidays of %d are not in chinese_calendar %s: only weekends count as "
                "closed for that year (update the package)",
                day.year,
                getattr(chinese_calendar, "__version__", "?"),
            )
        return True
    return not holiday


def next_trading_day(day: date) -> date:
    """The first trading day after ``day``."""
    day += timedelta(days=1)
    while not is_trading_day(day):
        day += timedelta(days=1)
    return day


def _first_trading_day_from(day: date) -> date:
    return day if is_trading_day(day) else next_trading_day(day)


@functools.lru_cache(maxsize=4096)
def has_night_session(day: date) -> bool:
    """Whether the evening of trading day ``day`` has a night session: not when a public
    holiday lies between it and the next trading day (a plain weekend does not count)."""
    if not is_trading_day(day):
        return False
    following = next_trading_day(day)
    gap = day + timedelta(days=1)
    while gap < following:
        if _holiday(gap):
            return False
        gap += timedelta(days=1)
    return True


def trading_day_start(day: date) -> datetime:
    """When trading day ``day`` begins: 20:00 China time of the trading day before it (Friday
    for a Monday, the last day before a holiday for the first after it), the moment
    ``trading_day_of`` turns to it. Trading days ``first..last`` are
    ``trading_day_start(first) <= t < trading_day_end(last)``."""
    before = _previous_trading_day(day)
    return datetime(before.year, before.month, before.day, TRADING_DAY_ROLL_HOUR, tzinfo=CHINA_TZ)


def trading_day_end(day: date) -> datetime:
    """When trading day ``day`` ends: 20:00 China time of ``day``; for a day that is no trading
    day (a weekend, a holiday), that of the trading day before it, so that a range ending there
    does not take in the night session after it (which trades for the next trading day)."""
    if not is_trading_day(day):
        day = _previous_trading_day(day)
    return datetime(day.year, day.month, day.day, TRADING_DAY_ROLL_HOUR, tzinfo=CHINA_TZ)


def trading_day_of(moment: datetime) -> date:
    """The China futures trading day ``moment`` belongs to: from 20:00 the next trading day;
    before, the first trading day from that date on (after midnight of a Friday night, Monday)."""
    local = moment.astimezone(CHINA_TZ)
    day = local.date()
    if local.hour >= TRADING_DAY_ROLL_HOUR:
        return next_trading_day(day)
    return _first_trading_day_from(day)


# ====================================================================== a contract's state

_Interval = tuple[datetime, datetime, MarketState]


def _at(day: date, t: time) -> datetime:
    return datetime(day.year, day.month, day.day, t.hour, t.minute, tzinfo=CHINA_TZ)


@functools.lru_cache(maxsize=2048)
def _intervals(table: SessionTable, day: date) -> tuple[_Interval, ...]:
    """Trading day ``day``'s auction and sessions, in time order (starts included, ends not)."""
    out: list[_Interval] = []
    auction = timedelta(minutes=AUCTION_MINUTES)
    previous = _previous_trading_day(day)
    if table.night_end is not None and has_night_session(previous):
        start = _at(previous, NIGHT_START)
        end_day = previous + timedelta(days=1) if table.night_end < NIGHT_START else previous
        out.append((start - auction, start, MarketState.AUCTION))
        out.append((start, _at(end_day, table.night_end), MarketState.NIGHT))
    for index, (start_t, end_t) in enumerate(table.day):
        start = _at(day, start_t)
        if index == 0 and not out:
            out.append((start - auction, start, MarketState.AUCTION))
        out.append((start, _at(day, end_t), MarketState.OPEN))
    return tuple(out)


def _previous_trading_day(day: date) -> date:
    day -= timedelta(days=1)
    while not is_trading_day(day):
        day -= timedelta(days=1)
    return day


def state_at(table: SessionTable, moment: datetime) -> tuple[MarketState, datetime]:
    """The market's state at ``moment`` and the instant it next changes."""
    day = trading_day_of(moment)
    for start, end, state in _intervals(table, day):
        if moment < start:
            return MarketState.CLOSED, start
        if moment < end:
            return state, end
    return MarketState.CLOSED, _intervals(table, next_trading_day(day))[0][0]


def session_of(table: SessionTable, moment: datetime) -> tuple[datetime, datetime] | None:
    """The trading session (start, end) that ``moment`` lies in, its end included (the
    closing print at 15:00:00 belongs to the session it closes); None outside every session."""
    day = trading_day_of(moment)
    for candidate in (day, next_trading_day(day)):
        for start, end, state in _intervals(table, candidate):
            if state is not MarketState.AUCTION and start <= moment <= end:
                return start, end
    return None


def next_open(table: SessionTable, moment: datetime) -> datetime:
    """The start of the first trading session (not the auction) after ``moment``."""
    day = trading_day_of(moment)
    while True:
        for start, _end, state in _intervals(table, day):
            if state is not MarketState.AUCTION and start > moment:
                return start
        day = next_trading_day(day)


def when_closed(vt_symbol: str, moment: datetime) -> str | None:
    """When ``vt_symbol``'s closed market opens (``rb2705.SHFE opens 21:00 CST``; the date too
    when it is not today), or None while it is open, in its night session or in the call
    auction (which takes orders). A product without a session table is never closed here."""
    table = table_of(vt_symbol)
    if table is None:
        return None
    state, _ = state_at(table, moment)
    if state is not MarketState.CLOSED:
        return None
    opens = next_open(table, moment)
    local = moment.astimezone(CHINA_TZ)
    when = f"{opens:%H:%M}" if opens.date() == local.date() else f"{opens:%a %Y-%m-%d %H:%M}"
    return f"{vt_symbol} opens {when} CST"


def closed_reason(vt_symbol: str, moment: datetime) -> str | None:
    """Why an order on ``vt_symbol`` cannot trade at ``moment``: ``market closed: rb2705.SHFE
    opens 21:00 CST`` (see ``when_closed``); None when it can."""
    when = when_closed(vt_symbol, moment)
    return None if when is None else f"market closed: {when}"
