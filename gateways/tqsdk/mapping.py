"""TqSdk's vocabulary in ours: symbols, offsets, order types and states, and TqSdk's quote,
order, trade, position and account entities as core.models objects.

Pure functions of their arguments: no TqApi, no thread, no state (what the gateway remembers of
its own orders arrives as a ``SentOrder``).

Symbols. TqSdk writes ``SHFE.rb2601`` where we write ``rb2601.SHFE``.

Ids. Trade ids are TqSdk's prefixed with the trade's trading day (``20260105-<id>``), as
exchanges reuse theirs across days.

Offsets. One request is one TqSdk order with the offset it names: the trader splits a plain
SHFE/INE close into CLOSETODAY and CLOSEYESTERDAY orders before the gateway sees it. TqSdk spells
SHFE/INE close-today ``CLOSETODAY`` and close-yesterday ``CLOSE``, so CLOSETODAY goes as
``CLOSETODAY`` and CLOSEYESTERDAY as ``CLOSE`` there (a plain CLOSE, too, goes as ``CLOSE``:
yesterday's lots only). Elsewhere any close goes as ``CLOSE`` and the exchange applies its own
rule, as TqSdk's ``insert_order`` asks. Orders are reported with the offset the trader gave.

Order states. ALIVE without an exchange order id is SUBMITTING, then NOTTRADED / PARTTRADED.
FINISHED with nothing left is ALLTRADED; with some fills CANCELLED; with no fill CANCELLED when
we asked to cancel it, when it was immediate-or-cancel (FAK, FOK, market) or when TqSdk's
message says it was withdrawn (contains 撤 and no 拒), otherwise REJECTED. Rejected and
cancelled orders carry TqSdk's ``last_msg`` in ``status_msg``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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

#: TqSdk also lists stocks and options of other venues; only these futures exchanges are ours
FUTURES_EXCHANGES = frozenset(e.value for e in Exchange)
LEVELS = range(1, DEPTH_LEVELS + 1)  # TqSdk's quote: bid_price1 .. bid_price5


# ====================================================================== symbols, numbers, times


def to_tq_symbol(vt_symbol: str) -> str:
    """``rb2601.SHFE`` -> ``SHFE.rb2601`` (ValueError if malformed)."""
    symbol, exchange = split_vt_symbol(vt_symbol)
    return f"{exchange.value}.{symbol}"


def to_vt_symbol(exchange_id: str, instrument_id: str) -> str:
    return f"{instrument_id}.{exchange_id}"


def _num(value: Any) -> float:
    """TqSdk's numbers (NaN while unknown) as plain floats, 0 for unknown."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _quote_time(text: str) -> datetime:
    """TqSdk's ``2026-01-05 10:00:00.000000`` (China time) as an aware datetime."""
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    return datetime.strptime(text, fmt).replace(tzinfo=CHINA_TZ)


def _ns_time(nanoseconds: Any) -> datetime:
    ns = int(_num(nanoseconds))
    return datetime.fromtimestamp(ns / 1e9, CHINA_TZ) if ns > 0 else now()


# ====================================================================== orders


@dataclass(frozen=True, slots=True)
class SentOrder:
    """What TqSdk does not keep about an order we sent: the request and when it was sent."""

    req: OrderRequest
    sent_at: datetime

    def as_order(self, account_id: str, order_id: str, status: Status, status_msg: str = "") -> Order:
        """This order in a state TqSdk does not report: submitted, refused before it was sent,
        lost with a session."""
        order = self.req.order(account_id, order_id, status, self.sent_at, status_msg)
        order.update_time = now()
        return order


def tq_offset(offset: Offset, exchange: Exchange) -> str:
    """Our offset as TqSdk's ``insert_order`` takes it: on SHFE/INE ``CLOSETODAY`` is today's
    lots and ``CLOSE`` yesterday's; elsewhere ``CLOSE``, the exchange choosing the lots."""
    if offset is Offset.OPEN:
        return "OPEN"
    if offset is Offset.CLOSETODAY and exchange.has_close_today:
        return "CLOSETODAY"
    return "CLOSE"


def our_offset(tq: str, exchange_id: str) -> Offset:
    """A TqSdk order's offset in our terms (for orders placed elsewhere)."""
    if tq == "OPEN":
        return Offset.OPEN
    if tq == "CLOSETODAY":
        return Offset.CLOSETODAY
    return Offset.CLOSEYESTERDAY if exchange_id in ("SHFE", "INE") else Offset.CLOSE


def our_order_type(order: Mapping[str, Any]) -> OrderType:
    if order.get("price_type") in ("ANY", "BEST", "FIVELEVEL"):
        return OrderType.MARKET
    if order.get("time_condition") == "IOC":
        return OrderType.FOK if order.get("volume_condition") == "ALL" else OrderType.FAK
    return OrderType.LIMIT


def order_status(order: Mapping[str, Any], otype: OrderType, cancel_asked: bool) -> Status:
    """TqSdk's ALIVE/FINISHED plus volumes and message, as our status (module docstring)."""
    total = int(_num(order.get("volume_orign")))
    left = int(_num(order.get("volume_left")))
    if order.get("status") != "FINISHED":
        if not order.get("exchange_order_id"):
            return Status.SUBMITTING
        return Status.PARTTRADED if left < total else Status.NOTTRADED
    if left <= 0:
        return Status.ALLTRADED
    if left < total or cancel_asked or otype in (OrderType.FAK, OrderType.FOK, OrderType.MARKET):
        return Status.CANCELLED
    msg = str(order.get("last_msg") or "")
    return Status.CANCELLED if "撤" in msg and "拒" not in msg else Status.REJECTED


# ====================================================================== TqSdk entities


def contract_from_quote(account_id: str, tq_symbol: str, quote: Any) -> Contract:
    exchange_id, _, instrument = tq_symbol.partition(".")
    size = _num(quote.volume_multiple) or 1.0
    margin = _num(quote.get("margin"))
    settle = _num(quote.pre_settlement) or _num(quote.last_price)
    return Contract(
        vt_symbol=to_vt_symbol(exchange_id, instrument),
        symbol=instrument,
        exchange=Exchange(exchange_id),
        name=str(quote.instrument_name or instrument),
        product=str(quote.product_id or ""),
        size=size,
        pricetick=_num(quote.price_tick) or 1.0,
        min_volume=max(int(_num(quote.min_limit_order_volume)), 1),
        margin_ratio=margin / (settle * size) if margin and settle else 0.1,
        commission_per_lot=_num(quote.get("commission")),
        account_id=account_id,
    )


def tick_from_quote(account_id: str, tq_symbol: str, quote: Any) -> Tick:
    exchange_id, _, instrument = tq_symbol.partition(".")
    return Tick(
        account_id=account_id,
        vt_symbol=to_vt_symbol(exchange_id, instrument),
        datetime=_quote_time(quote.datetime) if quote.datetime else now(),
        last_price=_num(quote.last_price),
        volume=_num(quote.volume),
        turnover=_num(quote.amount),
        open_interest=_num(quote.open_interest),
        pre_settlement=_num(quote.pre_settlement),
        pre_close=_num(quote.pre_close),
        open_price=_num(quote.open),
        high_price=_num(quote.highest),
        low_price=_num(quote.lowest),
        limit_up=_num(quote.upper_limit),
        limit_down=_num(quote.lower_limit),
        **depth_fields(
            [(_num(getattr(quote, f"bid_price{n}")), _num(getattr(quote, f"bid_volume{n}"))) for n in LEVELS],
            [(_num(getattr(quote, f"ask_price{n}")), _num(getattr(quote, f"ask_volume{n}"))) for n in LEVELS],
        ),
    )


def order_from_tq(
    account_id: str,
    order_id: str,
    tq: Any,
    sent: SentOrder | None,
    cancel_asked: bool,
    scrub: Callable[[str], str],
) -> Order:
    """A TqSdk order as ours; ``sent`` is None for an order placed elsewhere."""
    req = sent.req if sent is not None else None
    total = _num(tq.volume_orign)
    traded = total - _num(tq.volume_left)
    otype = req.type if req is not None else our_order_type(tq)
    status = order_status(tq, otype, cancel_asked)
    final_msg = status in (Status.REJECTED, Status.CANCELLED)
    return Order(
        account_id=account_id,
        order_id=order_id,
        vt_symbol=to_vt_symbol(tq.exchange_id, tq.instrument_id),
        direction=Direction.LONG if tq.direction == "BUY" else Direction.SHORT,
        offset=req.offset if req is not None else our_offset(tq.offset, tq.exchange_id),
        type=otype,
        price=req.price if req is not None else _num(tq.limit_price),
        volume=total,
        traded=traded,
        traded_price=_num(tq.trade_price) if traded else 0.0,
        status=status,
        datetime=sent.sent_at if sent is not None else _ns_time(tq.insert_date_time),
        update_time=now(),
        reference=req.reference if req is not None else "",  # the trader knows it, or it is external
        status_msg=scrub(str(tq.last_msg or "")) if final_msg else "",
    )


def trade_from_tq(account_id: str, trade_id: str, tq: Any, sent: SentOrder | None) -> Trade:
    """A TqSdk trade as ours; ``sent`` is its order's, None for an order placed elsewhere."""
    req = sent.req if sent is not None else None
    moment = _ns_time(tq.trade_date_time)
    return Trade(
        account_id=account_id,
        trade_id=f"{trading_day_of(moment):%Y%m%d}-{trade_id}",
        order_id=tq.order_id,
        vt_symbol=to_vt_symbol(tq.exchange_id, tq.instrument_id),
        direction=Direction.LONG if tq.direction == "BUY" else Direction.SHORT,
        offset=req.offset if req is not None else our_offset(tq.offset, tq.exchange_id),
        price=_num(tq.price),
        volume=_num(tq.volume),
        datetime=moment,
        commission=_num(tq.get("commission")),
        reference=req.reference if req is not None else "",  # the trader knows it, or it is external
    )


def positions_from_tq(account_id: str, tq: Any) -> list[Position]:
    """TqSdk's one row per contract as our two, long and short (either may be flat)."""
    vt_symbol = to_vt_symbol(tq.exchange_id, tq.instrument_id)
    rows = []
    for direction, side in ((Direction.LONG, "long"), (Direction.SHORT, "short")):
        rows.append(
            Position(
                account_id=account_id,
                vt_symbol=vt_symbol,
                direction=direction,
                volume=_num(tq[f"pos_{side}_his"]) + _num(tq[f"pos_{side}_today"]),
                yd_volume=_num(tq[f"pos_{side}_his"]),
                frozen=_num(tq[f"volume_{side}_frozen"]),
                yd_frozen=_num(tq[f"volume_{side}_frozen_his"]),
                price=_num(tq[f"position_price_{side}"]),
                pnl=_num(tq[f"position_profit_{side}"]),
                last_price=_num(tq.get("last_price")),
                margin=_num(tq[f"margin_{side}"]),
            )
        )
    return rows


def account_from_tq(account_id: str, tq: Any) -> Account:
    return Account(
        account_id=account_id,
        balance=_num(tq.balance),
        available=_num(tq.available),
        margin=_num(tq.margin),
        frozen=_num(tq.frozen_margin) + _num(tq.frozen_commission) + _num(tq.frozen_premium),
        commission=_num(tq.commission),
        close_pnl=_num(tq.close_profit),
        position_pnl=_num(tq.position_profit),
        pre_balance=_num(tq.pre_balance),
        trading_day=f"{trading_day_of(now()):%Y%m%d}",
        datetime=now(),
    )
