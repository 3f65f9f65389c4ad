"""Recorded history for the sim: a CSV of 1-minute bars or of ticks, read and checked once.

Bars are vnpy's DataManager export: a header with ``datetime, open, high, low, close, volume,
turnover, open_interest`` (other columns, as its ``symbol`` and ``exchange``, are ignored).
Ticks: ``datetime, last_price`` and any of ``volume, turnover, open_interest, last_volume,
open_price, high_price, low_price, pre_close, limit_up, limit_down, bid_price_1..5,
bid_volume_1..5, ask_price_1..5, ask_volume_1..5`` (absent: 0). A file with a ``last_price``
column is ticks, else bars. Datetimes are ``YYYY-MM-DD HH:MM:SS`` (or ISO 8601); without a zone
they are China time. Rows must be in time order (equal times allowed for ticks; bars at
least a minute apart). Every problem is
a ``ReplayFileError`` naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import msgspec

from core.models import CHINA_TZ, MAX_PRICE, Bar, Contract, Tick

__all__ = [
    "BAR_COLUMNS",
    "TICK_COLUMNS",
    "ReplayData",
    "ReplayFeed",
    "ReplayFileError",
    "file_symbol",
    "load_position",
    "read_replay",
    "save_position",
]

BAR_COLUMNS = ("datetime", "open", "high", "low", "close", "volume", "turnover", "open_interest")
_BAR_PRICES = ("open", "high", "low", "close")
TICK_COLUMNS = (
    "datetime",
    "last_price",
    "volume",
    "turnover",
    "open_interest",
    "last_volume",
    "open_price",
    "high_price",
    "low_price",
    "pre_close",
    "limit_up",
    "limit_down",
    *(f"{side}_{what}_{n}" for n in range(1, 6) for side in ("bid", "ask") for what in ("price", "volume")),
)


#: columns that are prices: at most ``MAX_PRICE`` (1e300 is finite, but its turnover is not)
_PRICE_COLUMNS = frozenset(
    (*_BAR_PRICES, *(c for c in TICK_COLUMNS if "price" in c or c in ("pre_close", "limit_up", "limit_down")))
)


class ReplayFileError(ValueError):
    """A replay file that cannot be used: where and why."""

    def __init__(self, path: Path | str, problem: str, line: int | None = None, column: str | None = None):
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.column, self.problem = str(path), line, column, problem


@dataclass
class ReplayData:
    """What a replay file holds: ``kind`` "bars" or "ticks", oldest first."""

    kind: str
    bars: list[Bar]
    ticks: list[Tick]
    #: ``symbol.EXCHANGE`` of the first row when the file has ``symbol`` and ``exchange`` columns
    file_symbol: str = ""

    def __len__(self) -> int:
        return len(self.bars) if self.kind == "bars" else len(self.ticks)


def _datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip())
    return value if value.tzinfo is not None else value.replace(tzinfo=CHINA_TZ)


def read_replay(path: Path | str, vt_symbol: str, account_id: str = "") -> ReplayData:
    """The bars or ticks of ``path`` for ``vt_symbol``; ``ReplayFileError`` when unusable."""
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")  # a spreadsheet's BOM is not a column
    except OSError as exc:
        raise ReplayFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise ReplayFileError(path, "empty file (expected a header line)", 1)
            names = [h.strip().lower() for h in header]
            if "last_price" in names:
                data = ReplayData("ticks", [], _read_ticks(path, names, reader, vt_symbol, account_id))
            else:
                data = ReplayData("bars", _read_bars(path, names, reader, vt_symbol, account_id), [])
        except UnicodeDecodeError as exc:
            raise ReplayFileError(path, f"not UTF-8 text ({exc.reason})", reader.line_num + 1) from None
        except csv.Error as exc:
            raise ReplayFileError(path, f"not CSV ({exc})", reader.line_num) from None
    if "symbol" in names and "exchange" in names:
        data.file_symbol = _first_symbol(path, names)
    return data


def file_symbol(path: Path | str) -> str:
    """``symbol.EXCHANGE`` of a replay file's first row (its ``symbol`` and ``exchange``
    columns, as vnpy's DataManager exports them); "" when it has none."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return ""
    names = [h.strip().lower() for h in header or []]
    if "symbol" in names and "exchange" in names:
        return _first_symbol(path, names)
    return ""


def _first_symbol(path: Path, names: list[str]) -> str:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for row in reader:
            if any(cell.strip() for cell in row):
                i, j = names.index("symbol"), names.index("exchange")
                if max(i, j) < len(row) and row[i].strip() and row[j].strip():
                    return f"{row[i].strip()}.{row[j].strip().upper()}"
                return ""
    return ""


def _columns(
    path: Path, names: list[str], wanted: tuple[str, ...], required: tuple[str, ...]
) -> dict[str, int]:
    index = {name: i for i, name in enumerate(names) if name in wanted}
    missing = [c for c in required if c not in index]
    if missing:
        raise ReplayFileError(
            path,
            f"missing column '{missing[0]}' (the header has {', '.join(names) or 'nothing'}; "
            f"expected {', '.join(required)})",
            1,
        )
    return index


def _number(path: Path, row: list[str], index: dict[str, int], column: str, line: int) -> float:
    i = index.get(column)
    if i is None:
        return 0.0
    text = row[i].strip() if i < len(row) else ""
    if not text:
        raise ReplayFileError(path, "empty (expected a number)", line, column)
    try:
        value = float(text)
    except ValueError:
        raise ReplayFileError(path, f"'{text[:40]}' is not a number", line, column) from None
    if not math.isfinite(value) or value < 0:
        raise ReplayFileError(path, f"{text[:40]} is not a finite number >= 0", line, column)
    if value > MAX_PRICE and column in _PRICE_COLUMNS:
        raise ReplayFileError(
            path, f"{text[:40]} is above any futures price (at most {MAX_PRICE:g})", line, column
        )
    return value


def _when(
    path: Path, row: list[str], index: dict[str, int], line: int, previous: datetime | None
) -> datetime:
    text = row[index["datetime"]] if index["datetime"] < len(row) else ""
    try:
        value = _datetime(text)
    except ValueError:
        raise ReplayFileError(
            path, f"'{text.strip()[:40]}' is not a datetime (expected YYYY-MM-DD HH:MM:SS)", line, "datetime"
        ) from None
    if previous is not None and value < previous:
        raise ReplayFileError(
            path, f"{value:%Y-%m-%d %H:%M:%S} is before the line above's time", line, "datetime"
        )
    return value


def _read_bars(
    path: Path, names: list[str], reader: csv.reader, vt_symbol: str, account_id: str
) -> list[Bar]:  # type: ignore[valid-type]
    index = _columns(path, names, BAR_COLUMNS, BAR_COLUMNS[:5])
    bars: list[Bar] = []
    previous: datetime | None = None
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        when = _when(path, row, index, line, previous)
        if previous is not None and when == previous:
            raise ReplayFileError(path, f"a second bar at {when:%Y-%m-%d %H:%M:%S}", line, "datetime")
        if previous is not None and when - previous < timedelta(minutes=1):
            raise ReplayFileError(
                path,
                f"{when:%Y-%m-%d %H:%M:%S} is less than a minute after the bar above (1-minute bars)",
                line,
                "datetime",
            )
        o, h, lo, c = (_number(path, row, index, name, line) for name in _BAR_PRICES)
        for name, value in zip(_BAR_PRICES, (o, h, lo, c), strict=True):
            if value <= 0:
                raise ReplayFileError(path, "a price must be above 0", line, name)
        if h < max(o, lo, c):
            raise ReplayFileError(path, f"high {h:g} is below the bar's open, low or close", line, "high")
        if lo > min(o, c):
            raise ReplayFileError(path, f"low {lo:g} is above the bar's open or close", line, "low")
        bars.append(
            Bar(
                account_id=account_id,
                vt_symbol=vt_symbol,
                datetime=when,
                open_price=o,
                high_price=h,
                low_price=lo,
                close_price=c,
                volume=_number(path, row, index, "volume", line),
                turnover=_number(path, row, index, "turnover", line),
                open_interest=_number(path, row, index, "open_interest", line),
            )
        )
        previous = when
    if not bars:
        raise ReplayFileError(path, "no bars after the header", 2)
    return bars


def _read_ticks(
    path: Path, names: list[str], reader: csv.reader, vt_symbol: str, account_id: str
) -> list[Tick]:  # type: ignore[valid-type]
    index = _columns(path, names, TICK_COLUMNS, TICK_COLUMNS[:2])
    numbers = [c for c in TICK_COLUMNS[1:] if c in index]
    ticks: list[Tick] = []
    previous: datetime | None = None
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        when = _when(path, row, index, line, previous)
        values = {c: _number(path, row, index, c, line) for c in numbers}
        if values["last_price"] <= 0:
            raise ReplayFileError(path, "a price must be above 0", line, "last_price")
        ticks.append(Tick(account_id=account_id, vt_symbol=vt_symbol, datetime=when, **values))
        previous = when
    if not ticks:
        raise ReplayFileError(path, "no ticks after the header", 2)
    return ticks


#: Where in its minute each of a bar's four quotes falls (seconds): open, then the extreme the bar
#: went to first (the low when it closed up, else the high), the other extreme, the close.
BAR_QUOTE_SECONDS = (0, 15, 30, 45)


class ReplayFeed:
    """The quotes a replay file gives the sim's market of ``contract``, in order.

    A bar becomes four quotes (open, low/high, high/low, close; ``BAR_QUOTE_SECONDS``), its
    volume spread over them; a tick is taken as it is. Each quote gets what the file may lack:
    a book one tick each side of the last price when it has none (volume: the quote's own, at
    least 1 lot), the day's open, high, low and volume so far, the previous day's last price as
    pre-close and pre-settlement, and the limit band around it (the contract's ``limit_pct``).
    Days are the calendar days of the file's times.
    """

    def __init__(self, data: ReplayData, contract: Contract) -> None:
        self.data, self.contract = data, contract
        self.count = 0  # quotes given so far
        self._day: date | None = None
        self._last = 0.0
        self._open = self._high = self._low = self._pre = 0.0
        self._up = self._down = 0.0
        self._volume = 0.0

    def __iter__(self) -> Iterator[Tick]:
        if self.data.kind == "ticks":
            for tick in self.data.ticks:
                yield self._dress(msgspec.structs.replace(tick), bar=False)
            return
        for bar in self.data.bars:
            share = max(1.0, float(round(bar.volume / 4)))
            up = bar.close_price >= bar.open_price
            lo_hi = (bar.low_price, bar.high_price) if up else (bar.high_price, bar.low_price)
            path = (bar.open_price, *lo_hi, bar.close_price)
            for price, second in zip(path, BAR_QUOTE_SECONDS, strict=True):
                quote = Tick(
                    account_id=bar.account_id,
                    vt_symbol=bar.vt_symbol,
                    datetime=bar.datetime + timedelta(seconds=second),
                    last_price=price,
                    last_volume=share,
                    volume=share,
                    turnover=bar.turnover / 4,
                    open_interest=bar.open_interest,
                )
                yield self._dress(quote, bar=True)

    def _dress(self, q: Tick, *, bar: bool) -> Tick:
        self.count += 1
        day = q.datetime.date()
        price = q.last_price
        if day != self._day:
            self._day = day
            self._pre = self._last or price
            self._open = self._high = self._low = price
            self._volume = 0.0
            self._up, self._down = self._limits(self._pre)
        self._last = price
        self._high, self._low = max(self._high, price), min(self._low, price)
        tick = self.contract.pricetick
        if bar:
            self._volume += q.volume
            q.volume = self._volume
        if q.bid_price_1 <= 0 or q.bid_volume_1 <= 0:
            q.bid_price_1 = round(price - tick, 10)
            q.bid_volume_1 = max(1.0, q.last_volume)
        if q.ask_price_1 <= 0 or q.ask_volume_1 <= 0:
            q.ask_price_1 = round(price + tick, 10)
            q.ask_volume_1 = max(1.0, q.last_volume)
        q.open_price, q.high_price, q.low_price = (q.open_price or self._open), self._high, self._low
        q.pre_close, q.pre_settlement = (q.pre_close or self._pre), (q.pre_settlement or self._pre)
        if q.limit_up <= 0 or q.limit_down <= 0:
            q.limit_up, q.limit_down = self._up, self._down
        return q

    def _limits(self, pre: float) -> tuple[float, float]:
        pct, tick = self.contract.limit_pct, self.contract.pricetick
        if pct <= 0:
            return 0.0, 0.0
        decimals = self.contract.decimals
        up = round(math.floor(pre * (1 + pct) / tick + 1e-9) * tick, decimals)
        down = round(max(1, math.ceil(pre * (1 - pct) / tick - 1e-9)) * tick, decimals)
        return up, down


# ====================================================================== where a replay got to


def _identity(replay_file: Path) -> dict[str, object]:
    stat = replay_file.stat()
    return {"file": str(replay_file.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def load_position(position_file: Path, replay_file: Path | str) -> datetime | None:
    """The time of the last quote played from ``replay_file`` by an earlier run, kept in
    ``position_file``; None when there is none, or the file has changed since (played afresh)."""
    try:
        saved = json.loads(position_file.read_text())
        if {k: saved.get(k) for k in ("file", "size", "mtime_ns")} != _identity(Path(replay_file)):
            return None
        return datetime.fromisoformat(saved["time"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def save_position(position_file: Path, replay_file: Path | str, at: datetime) -> None:
    """Keep where the replay of ``replay_file`` got to (written aside, then renamed over)."""
    record = {**_identity(Path(replay_file)), "time": at.isoformat()}
    tmp = position_file.with_name(position_file.name + ".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, position_file)
