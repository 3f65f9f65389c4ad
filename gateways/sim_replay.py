"""Recorded history for the sim: a CSV of 1-minute bars or of ticks, read and checked once.

Bars are vnpy's DataManager export: a header with ``datetime, open, high, low, close, volume,
turnover, open_interest`` (other columns, as its ``symbol`` and ``exchange``, are ignored).
Ticks: ``datetime, last_price`` and any of ``volume, turnover, open_interest, last_volume,
open_price, high_price, low_price, pre_close, limit_up, limit_down, bid_price_1..5,
bid_volume_1..5, ask_price_1..5, ask_volume_1..5`` (absent: 0). A file with a ``last_price``
column is ticks, else bars. Datetimes are ``YYYY-MM-DD HH:MM:SS`` (or ISO 8601); without a zone
they are China time. Rows must be in time order (equal times allowed for ticks). Every problem is
a ``ReplayFileError`` naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.models import CHINA_TZ, Bar, Tick

__all__ = ["BAR_COLUMNS", "TICK_COLUMNS", "ReplayData", "ReplayFileError", "read_replay"]

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
                return ReplayData("ticks", [], _read_ticks(path, names, reader, vt_symbol, account_id))
            return ReplayData("bars", _read_bars(path, names, reader, vt_symbol, account_id), [])
        except UnicodeDecodeError as exc:
            raise ReplayFileError(path, f"not UTF-8 text ({exc.reason})", reader.line_num + 1) from None
        except csv.Error as exc:
            raise ReplayFileError(path, f"not CSV ({exc})", reader.line_num) from None


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
