"""How numbers look on screen: prices on the contract's tick precision, amounts with
thousands separators, and up/down colors by the configured scheme (cn: red is up)."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from core.models import Contract, Direction, Offset, Status, TraderStatus
from core.sessions import trading_day_of

UP_DOWN = {
    "cn": ("bold red", "bold green"),  # China convention: red up, green down
    "intl": ("bold green", "bold red"),
}

STATUS_LIGHT = {
    TraderStatus.CONNECTED: ("●", "green"),
    TraderStatus.CONNECTING: ("◐", "yellow"),
    TraderStatus.DISCONNECTED: ("○", "red"),
    TraderStatus.STOPPED: ("■", "grey50"),
    TraderStatus.CRASHED: ("✖", "bold red"),
}


def price(value: float, contract: Contract | None) -> str:
    """A price with exactly the decimals of the contract's tick (``912.34``, ``3,150``)."""
    if not value:
        return "-"
    digits = contract.decimals if contract is not None else 2
    return f"{value:,.{digits}f}"


def deal(
    direction: Direction, offset: Offset, volume: float, vt_symbol: str, at: float, contract: Contract | None
) -> str:
    """An order or a fill in one line, as the operator says it: ``BUY OPEN 2 au2612.SHFE @ 912.34``."""
    side = "BUY" if direction is Direction.LONG else "SELL"
    return f"{side} {offset.name} {volume:g} {vt_symbol} @ {price(at, contract) if at else 'market'}"


def amount(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def volume(value: float) -> str:
    return f"{value:,.0f}"


def pct(value: float) -> str:
    return f"{value:+.2f}%"


#: how the risk degree looks at or above ``ui.risk_degree_warning``
RISK_WARNING_STYLE = "bold red"


def risk_degree(value: float | None, warning: float) -> Text:
    """风险度 as a percentage (one decimal), in the warning colour at or above ``warning``;
    "—" when there is no balance (no account yet, or a balance of zero)."""
    if value is None:
        return Text("—", justify="right")
    return Text(
        risk_degree_text(value), style=RISK_WARNING_STYLE if value >= warning else "", justify="right"
    )


def risk_degree_text(value: float) -> str:
    """``81.2%``; ``>999%`` for margin held with no balance left (``inf``) or beyond."""
    return f"{value * 100:.1f}%" if value < 10 else ">999%"


def signed(value: float, text: str, scheme: str) -> Text:
    """``text`` colored as up (value > 0) or down (value < 0) in ``scheme``."""
    up, down = UP_DOWN.get(scheme, UP_DOWN["cn"])
    style = up if value > 0 else down if value < 0 else ""
    return Text(text, style=style, justify="right")


def right(text: str, style: str = "") -> Text:
    return Text(text, style=style, justify="right")


def side(direction: Direction, scheme: str) -> Text:
    up, down = UP_DOWN.get(scheme, UP_DOWN["cn"])
    if direction is Direction.LONG:
        return Text("LONG", style=up)
    return Text("SHORT", style=down)


def status_light(status: TraderStatus) -> Text:
    glyph, style = STATUS_LIGHT[status]
    return Text(f"{glyph} {status.name.lower()}", style=style)


ORDER_STATUS_STYLE = {
    Status.SUBMITTING: "yellow",
    Status.NOTTRADED: "cyan",
    Status.PARTTRADED: "bold cyan",
    Status.ALLTRADED: "green",
    Status.CANCELLED: "grey50",
    Status.REJECTED: "bold red",
}


def order_status(status: Status) -> Text:
    return Text(status.name, style=ORDER_STATUS_STYLE[status])


#: Seconds between the headers' looks at the clock: the trading day turns at 20:00, when no quote
#: moves them.
CLOCK_REFRESH = 30.0


def clock_note(moment: datetime, venue_day: str = "") -> Text:
    """The header's right end: the trading day (the night session from 21:00 trades for the
    next trading day; weekends and China's public holidays are skipped, ``core/sessions.py``)
    and, once for the whole console, the zone of every time shown: exchange time, China
    Standard Time. ``venue_day`` (``YYYYMMDD``): the day the account's venue reports (CTP's
    TradingDay), shown when it is not behind the calendar's (a venue says its day at login,
    so after the 20:00 roll it is yesterday's until it logs in again)."""
    day = f"{trading_day_of(moment):%Y%m%d}"
    if len(venue_day) == 8 and venue_day.isdigit() and venue_day > day:
        day = venue_day
    note = Text("trading day ", style="dim")
    note.append(f"{day[:4]}-{day[4:6]}-{day[6:]}", style="bold")
    note.append(" · times CST", style="dim")
    return note
