"""The shared vocabulary: symbols, tick grid, contract arithmetic."""

from __future__ import annotations

from datetime import UTC

import msgspec
import pytest

from core.models import (
    Contract,
    Direction,
    Exchange,
    Offset,
    Status,
    Tick,
    decimals_of,
    now,
    on_tick_grid,
    split_vt_symbol,
)


def test_split_vt_symbol() -> None:
    assert split_vt_symbol("au2612.SHFE") == ("au2612", Exchange.SHFE)
    assert split_vt_symbol("TA705.CZCE") == ("TA705", Exchange.CZCE)
    with pytest.raises(ValueError, match=r"not symbol\.EXCHANGE"):
        split_vt_symbol("au2612")
    with pytest.raises(ValueError, match="unknown exchange 'NYMEX'"):
        split_vt_symbol("cl2612.NYMEX")


@pytest.mark.parametrize(
    ("price", "tick", "ok"),
    [(912.34, 0.02, True), (912.35, 0.02, False), (4600.2, 0.2, True), (4600.3, 0.2, False), (3150, 1, True)],
)
def test_tick_grid(price: float, tick: float, ok: bool) -> None:
    assert on_tick_grid(price, tick) is ok


def test_decimals_and_rounding() -> None:
    assert [decimals_of(t) for t in (1, 0.5, 0.2, 0.02, 0.1, 10)] == [0, 1, 1, 2, 1, 0]
    au = Contract(vt_symbol="au2612.SHFE", symbol="au2612", exchange=Exchange.SHFE, size=1000, pricetick=0.02)
    assert au.round_price(912.349) == 912.34
    assert au.round_price(912.351) == 912.36


def test_contract_money() -> None:
    c = Contract(
        vt_symbol="IF2612.CFFEX",
        symbol="IF2612",
        exchange=Exchange.CFFEX,
        size=300,
        pricetick=0.2,
        margin_ratio=0.12,
        commission_rate=0.000023,
        close_today_commission_rate=0.00023,
    )
    assert c.notional(4600.0, 2) == pytest.approx(2_760_000)
    assert c.margin(4600.0, 2) == pytest.approx(331_200)
    assert c.commission(4600.0, 2, Offset.OPEN) == pytest.approx(63.48)
    assert c.commission(4600.0, 2, Offset.CLOSETODAY) == pytest.approx(634.8)
    per_lot = Contract(
        vt_symbol="rb2705.SHFE",
        symbol="rb2705",
        exchange=Exchange.SHFE,
        size=10,
        pricetick=1,
        commission_per_lot=3,
    )
    assert per_lot.commission(3100, 4) == pytest.approx(12)


def test_contract_commission_by_offset() -> None:
    """Open, close (and close-yesterday) and close-today each at their own rates; None is the open's."""
    c = Contract(
        vt_symbol="m2605.DCE",
        symbol="m2605",
        exchange=Exchange.DCE,
        size=10,
        pricetick=1,
        commission_rate=0.0001,
        commission_per_lot=1.5,
        close_commission_rate=0.0002,
        close_commission_per_lot=1.0,
        close_today_commission_rate=0.0,
        close_today_commission_per_lot=0.5,
    )
    turnover = 2800 * 2 * 10
    assert c.commission(2800, 2, Offset.OPEN) == pytest.approx(turnover * 0.0001 + 3.0)
    assert c.commission(2800, 2, Offset.NONE) == c.commission(2800, 2, Offset.OPEN)
    assert c.commission(2800, 2, Offset.CLOSE) == pytest.approx(turnover * 0.0002 + 2.0)
    assert c.commission(2800, 2, Offset.CLOSEYESTERDAY) == c.commission(2800, 2, Offset.CLOSE)
    assert c.commission(2800, 2, Offset.CLOSETODAY) == pytest.approx(1.0)
    # only the per-lot close rate set: the money rate of a close is the open's
    partial = msgspec.structs.replace(c, close_commission_rate=None, close_today_commission_per_lot=None)
    assert partial.commission(2800, 2, Offset.CLOSE) == pytest.approx(turnover * 0.0001 + 2.0)
    assert partial.commission(2800, 2, Offset.CLOSETODAY) == pytest.approx(3.0)


def test_enums_and_tick_change() -> None:
    assert Direction.LONG.opposite is Direction.SHORT
    assert Offset.CLOSEYESTERDAY.is_close and not Offset.OPEN.is_close
    assert Status.PARTTRADED.is_active and not Status.CANCELLED.is_active
    assert Exchange.INE.has_close_today and not Exchange.DCE.has_close_today
    tick = Tick(vt_symbol="au2612.SHFE", datetime=now(), last_price=101.0, pre_settlement=100.0)
    assert tick.change_pct == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("moment", "day"),
    [
        ((2026, 12, 3, 9, 0), (2026, 12, 3)),  # Thursday's day session
        ((2026, 12, 3, 21, 5), (2026, 12, 4)),  # Thursday night trades for Friday
        ((2026, 12, 4, 1, 30), (2026, 12, 4)),  # after midnight, still Friday's
        ((2026, 12, 4, 21, 0), (2026, 12, 7)),  # Friday night trades for Monday
        ((2026, 12, 5, 2, 0), (2026, 12, 7)),  # Saturday small hours: Friday's night session
        ((2026, 12, 6, 12, 0), (2026, 12, 7)),  # Sunday
    ],
)
def test_the_night_session_belongs_to_the_next_trading_day(
    moment: tuple[int, ...], day: tuple[int, int, int]
) -> None:
    from datetime import date, datetime

    from core.models import CHINA_TZ
    from core.sessions import trading_day_of

    assert trading_day_of(datetime(*moment, tzinfo=CHINA_TZ)) == date(*day)
    # the same instant written in UTC (a server's clock) belongs to the same day
    utc = datetime(*moment, tzinfo=CHINA_TZ).astimezone(UTC)
    assert trading_day_of(utc) == date(*day)
