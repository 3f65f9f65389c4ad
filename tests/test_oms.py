"""OMS arithmetic: P&L with multipliers, long and short, today/yesterday closable volume."""

from __future__ import annotations

import itertools

import pytest

from core.models import (
    Account,
    Contract,
    Direction,
    Exchange,
    Offset,
    Order,
    OrderType,
    Position,
    Status,
    Tick,
    now,
    position_pnl,
)
from core.oms import Oms

AU = Contract(vt_symbol="au2612.SHFE", symbol="au2612", exchange=Exchange.SHFE, size=1000, pricetick=0.02)
IF = Contract(vt_symbol="IF2612.CFFEX", symbol="IF2612", exchange=Exchange.CFFEX, size=300, pricetick=0.2)
_ids = itertools.count(1)
M = Contract(vt_symbol="m2705.DCE", symbol="m2705", exchange=Exchange.DCE, size=10, pricetick=1)


def _oms() -> Oms:
    oms = Oms("DQ1")
    for c in (AU, IF, M):
        oms.update_contract(c)
    return oms


def _tick(vt: str, last: float) -> Tick:
    return Tick(vt_symbol=vt, datetime=now(), last_price=last, bid_price_1=last - 1, ask_price_1=last + 1)


def _pos(vt: str, direction: Direction, volume: float, yd: float, price: float) -> Position:
    return Position(
        account_id="DQ1", vt_symbol=vt, direction=direction, volume=volume, yd_volume=yd, price=price
    )


def _order(vt: str, direction: Direction, offset: Offset, volume: float, traded: float = 0) -> Order:
    return Order(
        account_id="DQ1",
        order_id=f"o{next(_ids)}",
        vt_symbol=vt,
        direction=direction,
        offset=offset,
        type=OrderType.LIMIT,
        price=1,
        volume=volume,
        traded=traded,
        status=Status.NOTTRADED if not traded else Status.PARTTRADED,
        datetime=now(),
    )


def test_pnl_formula_long_and_short() -> None:
    assert position_pnl(Direction.LONG, 900.00, 901.50, 2, 1000) == pytest.approx(3000.0)
    assert position_pnl(Direction.SHORT, 900.00, 901.50, 2, 1000) == pytest.approx(-3000.0)
    assert position_pnl(Direction.SHORT, 4600.0, 4590.2, 1, 300) == pytest.approx(2940.0)


def test_tick_marks_positions_with_multiplier() -> None:
    oms = _oms()
    oms.update_position(_pos("au2612.SHFE", Direction.LONG, 3, 1, 912.00))
    oms.update_position(_pos("IF2612.CFFEX", Direction.SHORT, 2, 0, 4600.0))
    changed = oms.update_tick(_tick("au2612.SHFE", 912.50))
    assert [p.direction for p in changed] == [Direction.LONG]
    assert oms.position("au2612.SHFE", Direction.LONG).pnl == pytest.approx(0.5 * 3 * 1000)
    oms.update_tick(_tick("IF2612.CFFEX", 4610.0))
    assert oms.position("IF2612.CFFEX", Direction.SHORT).pnl == pytest.approx(-10 * 2 * 300)


def test_unchanged_price_marks_nothing() -> None:
    oms = _oms()
    oms.update_position(_pos("au2612.SHFE", Direction.LONG, 1, 0, 900))
    assert oms.update_tick(_tick("au2612.SHFE", 901))
    assert oms.update_tick(_tick("au2612.SHFE", 901)) == []


def test_position_from_venue_is_marked_at_our_last_price() -> None:
    oms = _oms()
    oms.update_tick(_tick("m2705.DCE", 3000))
    pos = oms.update_position(_pos("m2705.DCE", Direction.LONG, 5, 0, 2990))
    assert pos.pnl == pytest.approx(10 * 5 * 10)
    assert pos.last_price == 3000


def test_flat_position_is_removed() -> None:
    oms = _oms()
    oms.update_position(_pos("m2705.DCE", Direction.LONG, 5, 0, 2990))
    oms.update_position(_pos("m2705.DCE", Direction.LONG, 0, 0, 0))
    assert oms.position("m2705.DCE", Direction.LONG) is None


def test_account_balance_follows_live_pnl() -> None:
    oms = _oms()
    oms.update_tick(_tick("au2612.SHFE", 900))
    oms.update_position(_pos("au2612.SHFE", Direction.LONG, 1, 0, 900))
    oms.update_account(Account(account_id="DQ1", balance=1_000_000, available=900_000, position_pnl=0))
    oms.update_tick(_tick("au2612.SHFE", 902))
    acc = oms.account
    assert acc is not None
    assert acc.position_pnl == pytest.approx(2000)
    assert acc.balance == pytest.approx(1_002_000)
    assert acc.available == pytest.approx(902_000)
    oms.update_tick(_tick("au2612.SHFE", 899))
    assert acc.balance == pytest.approx(999_000)


def test_shfe_closable_splits_today_and_yesterday_minus_working_closes() -> None:
    oms = _oms()
    oms.update_position(_pos("au2612.SHFE", Direction.LONG, 5, 2, 900))
    c = oms.closable("au2612.SHFE", Direction.LONG)
    assert (c.today, c.yesterday) == (3, 2)
    # a working SELL CLOSETODAY of 2 with 1 filled keeps 1 lot of today frozen
    oms.update_order(_order("au2612.SHFE", Direction.SHORT, Offset.CLOSETODAY, 2, traded=1))
    # a SELL CLOSEYESTERDAY of 1 freezes yesterday's
    oms.update_order(_order("au2612.SHFE", Direction.SHORT, Offset.CLOSEYESTERDAY, 1))
    # a BUY close concerns the SHORT position, not this one
    oms.update_order(_order("au2612.SHFE", Direction.LONG, Offset.CLOSETODAY, 1))
    c = oms.closable("au2612.SHFE", Direction.LONG)
    assert (c.today, c.yesterday) == (2, 1)


def test_shfe_close_split_prefers_yesterday_then_today() -> None:
    oms = _oms()
    oms.update_position(_pos("au2612.SHFE", Direction.SHORT, 5, 2, 900))
    assert oms.split_close("au2612.SHFE", Direction.SHORT, 4) == [
        (Offset.CLOSEYESTERDAY, 2),
        (Offset.CLOSETODAY, 2),
    ]
    assert oms.split_close("au2612.SHFE", Direction.SHORT, 1) == [(Offset.CLOSEYESTERDAY, 1)]
    oms.update_position(_pos("au2612.SHFE", Direction.SHORT, 3, 0, 900))
    assert oms.split_close("au2612.SHFE", Direction.SHORT, 3) == [(Offset.CLOSETODAY, 3)]


def test_other_exchanges_close_with_one_close_order() -> None:
    oms = _oms()
    oms.update_position(_pos("m2705.DCE", Direction.LONG, 4, 1, 3000))
    assert oms.split_close("m2705.DCE", Direction.LONG, 4) == [(Offset.CLOSE, 4)]
    # a working CLOSE takes yesterday's first, then today's
    oms.update_order(_order("m2705.DCE", Direction.SHORT, Offset.CLOSE, 2))
    c = oms.closable("m2705.DCE", Direction.LONG)
    assert (c.today, c.yesterday) == (2, 0)


def test_close_more_than_closable_names_the_numbers() -> None:
    oms = _oms()
    oms.update_position(_pos("au2612.SHFE", Direction.LONG, 2, 1, 900))
    with pytest.raises(ValueError, match=r"close 3 > closable 2 \(long au2612.SHFE: today 1, yesterday 1\)"):
        oms.split_close("au2612.SHFE", Direction.LONG, 3)
    with pytest.raises(ValueError, match="positive"):
        oms.split_close("au2612.SHFE", Direction.LONG, 0)
    assert oms.closable("IF2612.CFFEX", Direction.LONG).total == 0


def test_orders_leave_the_working_set_when_finished_and_trades_dedupe() -> None:
    from core.models import Trade

    oms = _oms()
    order = _order("m2705.DCE", Direction.LONG, Offset.OPEN, 1)
    oms.update_order(order)
    assert oms.working_orders() == [order]
    done = _order("m2705.DCE", Direction.LONG, Offset.OPEN, 1)
    done.order_id = order.order_id
    done.status = Status.ALLTRADED
    oms.update_order(done)
    assert oms.working_orders() == []
    trade = Trade(
        account_id="DQ1",
        trade_id="t1",
        order_id=order.order_id,
        vt_symbol="m2705.DCE",
        direction=Direction.LONG,
        offset=Offset.OPEN,
        price=3000,
        volume=1,
        datetime=now(),
    )
    assert oms.add_trade(trade) is True
    assert oms.add_trade(trade) is False
