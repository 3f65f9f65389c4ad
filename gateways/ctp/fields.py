"""CTP's fields in our words: what its codes mean, and vnpy_ctp's objects as ``core.models``.

Everything here is a pure function of the field dictionaries CTP sends (``ThostFtdcUserApiDataType.h``)
or of the vnpy objects vnpy_ctp makes of them (read by attribute, never by importing vnpy: this
module is imported before vnpy may be).

- **Orders vnpy_ctp cannot read.** vnpy_ctp drops an order whose type or status it cannot map
  (another terminal's market order, BestPrice, statuses 2/4, conditional orders), and its fills
  with it. ``vnpy_readable_order`` rewrites such an order into the closest type and the status CTP
  means (2 and 4 are finished: CANCELLED, or REJECTED when refused), so it and its fills are
  reported. A broker's forced close is reported as a CLOSE.
- **Ids.** An order id is vnpy_ctp's ``frontid_sessionid_orderref``. CTP numbers trades per
  exchange per trading day, so a trade id is ``{trading_day}.{exchange}.{TradeID}``. A trade is
  tied to its order by (``ExchangeID``, ``OrderSysID``): exchanges number orders independently.
  A trade whose order never comes is a trade of order ``ctp-{exchange}-{OrderSysID}``.
- **Positions** are one row per (contract, direction) like the sim's: vnpy_ctp already merges
  SHFE/INE's today and history rows (``volume`` = both, ``yd_volume`` = the history row);
  ``margin`` and ``yd_frozen`` come from CTP's rows (``add_position_row``).
- **Contracts**: futures only (vnpy_ctp also lists options and spreads, which the console does not
  trade); ``margin_ratio`` is the exchange's from the instrument query. **Ticks** carry level 1
  (``Tick`` has no deeper levels), limits, volume, open interest and the pre-settlement price.
- **Stale snapshots.** A snapshot older than one already reported (the RESTART replay after a
  reconnect walks the day's notices again) is recognised by ``is_stale``, so no order goes
  backwards.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from core.models import (
    CHINA_TZ,
    DEPTH_LEVELS,
    Account,
    Contract,
    Direction,
    Exchange,
    Offset,
    Order,
    OrderRequest,
    OrderType,
    Position,
    Status,
    Tick,
    Trade,
    depth_fields,
    now,
    split_vt_symbol,
)
from core.sessions import trading_day_of

HUGE_PRICE = 1e300  # CTP's "no value" is DBL_MAX
DEFAULT_MARGIN_RATIO = 0.1  # when the instrument query gives no usable ratio
LEVELS = range(1, DEPTH_LEVELS + 1)  # vnpy's TickData: bid_price_1 .. bid_price_5

#: CTP's OnFrontDisconnected reasons.
DISCONNECT_REASONS = {
    0x1001: "network read failed",
    0x1002: "network write failed",
    0x2001: "heartbeat timeout",
    0x2002: "heartbeat send failed",
    0x2003: "malformed packet received",
}

_STATUS_RANK = {
    Status.SUBMITTING: 0,
    Status.NOTTRADED: 1,
    Status.PARTTRADED: 2,
    Status.ALLTRADED: 3,
    Status.CANCELLED: 3,
    Status.REJECTED: 3,
}

# CTP's order fields for the orders vnpy_ctp cannot read
_PRICE_MARKET = {"1", "3"}  # AnyPrice, BestPrice
_TC_IOC = "1"
_TYPE_FIELDS = ("OrderPriceType", "TimeCondition", "VolumeCondition")
_VC_CV = "3"  # CompleteVolume
_VNPY_TYPES = {  # our type -> vnpy_ctp's (OrderPriceType, TimeCondition, VolumeCondition)
    OrderType.LIMIT: ("2", "3", "1"),
    OrderType.MARKET: ("1", "3", "1"),
    OrderType.FAK: ("2", "1", "1"),
    OrderType.FOK: ("2", "1", "3"),
}
_VNPY_STATUSES = {"0", "1", "3", "5", "a"}
_FORCE_OFFSETS = {"2", "5", "6"}  # ForceClose, ForceOff, LocalForceClose: a close to us


# ---------------------------------------------------------------------- codes and values


def disconnect_reason(code: int) -> str:
    """OnFrontDisconnected's reason: ``4097`` -> ``network read failed (4097)``."""
    readable = DISCONNECT_REASONS.get(code)
    return f"{readable} ({code})" if readable else f"reason {code}"


def error_text(error: Mapping[str, Any] | None) -> str:
    """A CTP error field as text ("" when it is no error)."""
    if not error or not error.get("ErrorID"):
        return ""
    return f"代码：{error['ErrorID']}，信息：{error.get('ErrorMsg', '')}"


def price(value: float | None) -> float:
    """A CTP price; "no value" (DBL_MAX) is 0."""
    return 0.0 if value is None or value >= HUGE_PRICE else float(value)


def china_time(moment: datetime | None) -> datetime:
    """A venue time in China time (now when the venue gave none)."""
    if moment is None:
        return now()
    if moment.tzinfo is None:
        return moment.replace(tzinfo=CHINA_TZ)
    return moment.astimezone(CHINA_TZ)


def is_stale(new: Order, known: Order) -> bool:
    """True when ``new`` is an older snapshot of ``known`` (a replayed or late notice)."""
    if new.traded != known.traded:
        return new.traded < known.traded
    return _STATUS_RANK[new.status] < _STATUS_RANK[known.status]


def check_request(req: OrderRequest) -> None:
    """ValueError with a readable reason when CTP cannot take ``req``."""
    split_vt_symbol(req.vt_symbol)  # ValueError when it is not symbol.EXCHANGE
    if req.offset is Offset.NONE:
        raise ValueError("CTP needs an offset (OPEN, CLOSE, CLOSETODAY or CLOSEYESTERDAY)")
    if req.direction is Direction.NET:
        raise ValueError("CTP orders are LONG or SHORT, not NET")
    if req.type is OrderType.STOP:
        raise ValueError("CTP does not take STOP orders")
    if req.volume <= 0 or req.volume != int(req.volume):
        raise ValueError(f"CTP volume must be a whole number of lots, got {req.volume:g}")


# ---------------------------------------------------------------------- what vnpy_ctp cannot read


def ctp_order_type(data: Mapping[str, Any]) -> OrderType:
    """The closest of our types for CTP's price type, time and volume conditions."""
    price_type, time_cond = data.get("OrderPriceType"), data.get("TimeCondition")
    if price_type in _PRICE_MARKET:
        return OrderType.MARKET
    if time_cond == _TC_IOC:  # limit, or a price the exchange fills from the book at once
        return OrderType.FOK if data.get("VolumeCondition") == _VC_CV else OrderType.FAK
    return OrderType.LIMIT


def _refused(data: Mapping[str, Any]) -> bool:
    message = str(data.get("StatusMsg") or "")
    return data.get("OrderSubmitStatus") == "4" or "拒" in message or "reject" in message.lower()


def vnpy_readable_order(data: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """``data`` as vnpy_ctp's ``onRtnOrder`` can read it, and what was adapted ("": nothing).

    vnpy_ctp drops an order whose type or status is not in its maps (a market order from another
    terminal, BestPrice, statuses 2/4, conditional orders...), and its fills with it. Such an
    order is reported with the closest type and the status CTP means: 2 (part traded, no longer
    queueing) and 4 (nothing traded, no longer queueing) are finished, CANCELLED (REJECTED when
    the exchange or broker refused it); a conditional order's NotTouched/Touched is working.
    """
    changes: dict[str, Any] = {}
    if tuple(data.get(name) for name in _TYPE_FIELDS) not in _VNPY_TYPES.values():
        changes.update(zip(_TYPE_FIELDS, _VNPY_TYPES[ctp_order_type(data)], strict=True))
    status = data.get("OrderStatus")
    if status not in _VNPY_STATUSES:
        traded = float(data.get("VolumeTraded") or 0)
        if status in ("2", "4"):
            changes["OrderStatus"] = "5"
            if status == "4" and _refused(data):
                changes["OrderSubmitStatus"] = "4"  # vnpy's REJECTED: Canceled + InsertRejected
            elif data.get("OrderSubmitStatus") == "4":
                changes["OrderSubmitStatus"] = "3"  # part traded: cancelled, not refused
        elif traded >= float(data.get("VolumeTotalOriginal") or 0) > 0:
            changes["OrderStatus"] = "0"
        else:  # NotTouched, Touched, or a status of a newer api: still working
            changes["OrderStatus"] = "1" if traded else "3"
    if data.get("CombOffsetFlag") in _FORCE_OFFSETS:
        changes["CombOffsetFlag"] = "1"
    if not changes:
        return data, ""
    shown = ", ".join(f"{k} {data.get(k)!r} -> {v!r}" for k, v in changes.items())
    return {**data, **changes}, f"fields vnpy_ctp cannot read adapted ({shown})"


def vnpy_readable_trade(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as vnpy_ctp's ``onRtnTrade`` can read it (a forced close is a close)."""
    if data.get("OffsetFlag") in _FORCE_OFFSETS:
        return {**data, "OffsetFlag": "1"}
    return data


# ---------------------------------------------------------------------- trades without orders, positions


def sysid_key(data: Mapping[str, Any]) -> tuple[str, str] | None:
    """An order's or trade's (ExchangeID, OrderSysID); None before the exchange numbered it."""
    sysid = str(data.get("OrderSysID") or "").strip()
    return (str(data.get("ExchangeID") or ""), sysid) if sysid else None


def orphan_order_id(data: Mapping[str, Any]) -> str:
    """The order id of a trade whose order CTP never reported: from its exchange's numbering."""
    return f"ctp-{data.get('ExchangeID') or '?'}-{str(data.get('OrderSysID') or '').strip() or '?'}"


def trade_text(data: Mapping[str, Any]) -> str:
    """A CTP trade field, readable in a log line."""
    day = data.get("TradingDay") or "?"
    side = {"0": "buy", "1": "sell"}.get(str(data.get("Direction")), "?")
    return (
        f"trade {day}.{data.get('ExchangeID')}.{str(data.get('TradeID') or '').strip()} "
        f"({side} {data.get('Volume')} {data.get('InstrumentID')} @ {data.get('Price')}, "
        f"OrderSysID {str(data.get('OrderSysID') or '').strip()})"
    )


def add_position_row(extras: dict[tuple[str, str], dict[str, float]], row: dict[str, Any]) -> None:
    """Margin and yesterday's frozen lots of one CTP position row (vnpy_ctp drops them)."""
    direction = "LONG" if row.get("PosiDirection") == "2" else "SHORT"
    extra = extras.setdefault((row.get("InstrumentID", ""), direction), {"margin": 0.0, "yd_frozen": 0.0})
    extra["margin"] += float(row.get("UseMargin") or 0.0)
    frozen = float(row.get("ShortFrozen" if direction == "LONG" else "LongFrozen") or 0.0)
    if row.get("ExchangeID") in ("SHFE", "INE"):
        if row.get("PositionDate") == "2":  # the history row
            extra["yd_frozen"] += frozen
    else:  # one row; the exchange closes yesterday's lots first
        yd = float(row.get("Position") or 0) - float(row.get("TodayPosition") or 0)
        extra["yd_frozen"] += min(frozen, max(yd, 0.0))


# ---------------------------------------------------------------------- vnpy objects -> core.models
# ``data`` is the vnpy object; ``data.extra`` the raw CTP fields it was made of (vnpy_ext.py).


def contract_from_vnpy(data: Any, account_id: str) -> Contract | None:
    """A futures contract (None: an option or spread, which the console does not trade)."""
    if data.product.name != "FUTURES":
        return None
    raw = data.extra or {}
    ratio = max(float(raw.get("LongMarginRatio") or 0), float(raw.get("ShortMarginRatio") or 0))
    return Contract(
        vt_symbol=data.vt_symbol,
        symbol=data.symbol,
        exchange=Exchange(data.exchange.value),
        name=data.name,
        product=raw.get("ProductID") or re.sub(r"\d.*$", "", data.symbol),
        size=float(data.size),
        pricetick=float(data.pricetick),
        min_volume=int(data.min_volume or 1),
        margin_ratio=ratio if 0 < ratio < 1 else DEFAULT_MARGIN_RATIO,
        account_id=account_id,
    )


def tick_from_vnpy(data: Any, account_id: str, last_volume: float) -> Tick:
    """A depth market data notice; ``last_volume`` is the volume since the previous tick. Levels
    2-5 are there where the front reports them (SHFE/INE level-5 fronts), else 0."""
    raw = data.extra or {}
    bids = [(price(getattr(data, f"bid_price_{n}")), getattr(data, f"bid_volume_{n}")) for n in LEVELS]
    asks = [(price(getattr(data, f"ask_price_{n}")), getattr(data, f"ask_volume_{n}")) for n in LEVELS]
    return Tick(
        account_id=account_id,
        vt_symbol=data.vt_symbol,
        datetime=china_time(data.datetime),
        last_price=price(data.last_price),
        volume=data.volume,
        turnover=data.turnover,
        open_interest=data.open_interest,
        last_volume=last_volume,
        pre_settlement=price(raw.get("PreSettlementPrice")),
        pre_close=price(data.pre_close),
        open_price=price(data.open_price),
        high_price=price(data.high_price),
        low_price=price(data.low_price),
        limit_up=price(data.limit_up),
        limit_down=price(data.limit_down),
        **depth_fields(bids, asks),
    )


def account_from_vnpy(data: Any, account_id: str, trading_day: str) -> Account:
    """The funds, with the detail vnpy_ctp drops (margin, commission, P&L, pre-balance)."""
    raw = data.extra or {}
    return Account(
        account_id=account_id,
        balance=data.balance,
        available=data.available,
        frozen=data.frozen,
        margin=float(raw.get("CurrMargin") or 0.0),
        commission=float(raw.get("Commission") or 0.0),
        close_pnl=float(raw.get("CloseProfit") or 0.0),
        position_pnl=float(raw.get("PositionProfit") or 0.0),
        pre_balance=float(raw.get("PreBalance") or 0.0),
        trading_day=raw.get("TradingDay") or trading_day,
        datetime=now(),
    )


def order_from_vnpy(data: Any, account_id: str, known: Order | None, reference: str) -> Order:
    """An order notice (or a refusal of ours, with CTP's error in ``extra["_error"]``).

    ``known`` is the order as reported before, if it was: a refusal keeps its type and time."""
    raw = data.extra or {}
    status = Status(data.status.name)
    status_msg = ""
    error = raw.get("_error")
    if error:
        status_msg = f"{error.get('ErrorMsg', '')} (CTP error {error.get('ErrorID')})"
    elif status in (Status.CANCELLED, Status.REJECTED):
        status_msg = str(raw.get("StatusMsg", ""))
    moment = data.datetime or (known.datetime if known is not None else None)
    return Order(
        account_id=account_id,
        order_id=data.orderid,
        vt_symbol=data.vt_symbol,
        direction=Direction(data.direction.name) if data.direction else Direction.NET,
        offset=Offset(data.offset.name),
        type=OrderType(data.type.name) if not error or known is None else known.type,
        price=data.price,
        volume=data.volume,
        traded=data.traded,
        status=status,
        datetime=china_time(moment),
        update_time=now(),
        reference=reference,
        status_msg=status_msg,
    )


def trade_from_vnpy(data: Any, account_id: str, trading_day: str, reference: str) -> Trade:
    """A fill, its id made unique for the account's life with the trading day and exchange."""
    raw = data.extra or {}
    moment = china_time(data.datetime)
    day = raw.get("TradingDay") or trading_day or f"{trading_day_of(moment):%Y%m%d}"
    return Trade(
        account_id=account_id,
        trade_id=f"{day}.{data.exchange.value}.{str(data.tradeid).strip()}",
        order_id=data.orderid,
        vt_symbol=data.vt_symbol,
        direction=Direction(data.direction.name),
        offset=Offset(data.offset.name),
        price=data.price,
        volume=data.volume,
        datetime=moment,
        reference=reference,
    )


def position_from_vnpy(data: Any, account_id: str, extra: Mapping[str, float]) -> Position:
    """One (contract, direction) of a position answer; ``extra`` from ``add_position_row``."""
    return Position(
        account_id=account_id,
        vt_symbol=data.vt_symbol,
        direction=Direction(data.direction.name),
        volume=data.volume,
        yd_volume=data.yd_volume,
        frozen=data.frozen,
        yd_frozen=extra.get("yd_frozen", 0.0),
        price=data.price,
        pnl=data.pnl,
        margin=extra.get("margin", 0.0),
    )
