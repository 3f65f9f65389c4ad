"""The history figures (core/trade_stats.py): close P&L first in first out, day totals by
trading day, strategy round trips."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from core.models import CHINA_TZ, Direction, Offset, StrategyTrigger, Trade
from core.trade_stats import close_pnls, strategy_stats, trade_report

T0 = datetime(2026, 12, 3, 14, 0, tzinfo=CHINA_TZ)  # a Thursday afternoon
SIZE = {"rb2705.SHFE": 10.0, "au2612.SHFE": 1000.0}
_n = iter(range(1_000_000))


def fill(
    direction: Direction,
    offset: Offset,
    price: float,
    volume: float,
    *,
    at: datetime = T0,
    symbol: str = "rb2705.SHFE",
    reference: str = "manual",
    fee: float = 1.0,
) -> Trade:
    n = next(_n)
    return Trade(
        account_id="A",
        trade_id=f"T{n}",
        order_id=f"O{n}",
        vt_symbol=symbol,
        direction=direction,
        offset=offset,
        price=price,
        volume=volume,
        datetime=at,
        commission=fee,
        reference=reference,
    )


L, S, OPEN, C = Direction.LONG, Direction.SHORT, Offset.OPEN, Offset.CLOSE


def test_close_pnl_is_first_in_first_out_per_side_and_contract() -> None:
    trades = [
        fill(L, OPEN, 3000, 2),
        fill(L, OPEN, 3010, 1),
        fill(S, OPEN, 3050, 1),  # a short beside the long: its own lots
        fill(S, C, 3020, 2),  # closes the first two longs at 3000: +40 x 10
        fill(S, Offset.CLOSETODAY, 3030, 1),  # the 3010 long: +20 x 10
        fill(L, C, 3040, 1),  # the short from 3050: +10 x 10
        fill(S, C, 3000, 1),  # nothing left to close: unmatched
    ]
    pnl, unmatched = close_pnls(trades, SIZE.get)
    assert [pnl[t.trade_id] for t in trades] == [0, 0, 0, 400, 200, 100, 0]
    assert unmatched == 1


def test_day_totals_follow_the_trading_day_and_opens_before_the_range_price_its_closes() -> None:
    day1 = fill(L, OPEN, 900, 1, symbol="au2612.SHFE", fee=10)  # Thursday 14:00: Thursday
    night = fill(S, C, 905, 1, symbol="au2612.SHFE", at=T0 + timedelta(hours=7), fee=10)  # 21:00: Friday
    friday = fill(L, OPEN, 3000, 2, at=T0 + timedelta(hours=20), fee=2)  # Friday 10:00
    report = trade_report([day1, night, friday], SIZE.get, since=T0 + timedelta(hours=6))
    assert [r.trade.trade_id for r in report.trades] == [night.trade_id, friday.trade_id]
    assert [(d.trading_day, d.trades, d.volume, d.commission, d.close_pnl) for d in report.days] == [
        ("2026-12-04", 2, 3, 12, 5000)
    ]
    assert report.total.net == 5000 - 12 and report.unmatched == 0
    only_rb = trade_report([day1, night, friday], SIZE.get, vt_symbol="rb2705.SHFE")
    assert [r.trade.trade_id for r in only_rb.trades] == [friday.trade_id]
    cut = trade_report([day1, night, friday], SIZE.get, limit=1)
    assert len(cut.trades) == 1 and cut.left_out == 2 and cut.total.trades == 3
    unknown = trade_report([fill(L, OPEN, 1, 1, symbol="zz1.X"), fill(S, C, 2, 1, symbol="zz1.X")], SIZE.get)
    assert unknown.unpriced == ["zz1.X"] and unknown.total.close_pnl == 0


def test_a_round_trip_is_flat_to_flat_in_the_instances_own_book() -> None:
    g = "grid"
    trades = [
        fill(L, OPEN, 3000, 1, reference=g),
        fill(L, OPEN, 2990, 1, reference=g),
        fill(S, OPEN, 3100, 5),  # the operator's own: not the instance's
        fill(S, C, 2995, 1, reference=g),  # the 3000 lot: -50; still 1 open: no round trip yet
        fill(S, C, 2985, 1, reference=g),  # the 2990 lot: -50; flat: -100 - fees 4, a loss
        fill(L, OPEN, 3000, 1, reference=g),
        fill(S, C, 3010, 1, reference=g),  # +100 - 2: a win
        fill(L, OPEN, 3000, 1, reference=g),  # still open
    ]
    triggers = [
        StrategyTrigger(
            account_id="A", datetime=T0, instance=g, vt_symbol="rb2705.SHFE", condition="x", price=1,
            action=action, result=result,
        )
        for action, result in [("buy", "success"), ("buy", "not executed"), ("close", "partial"), ("buy", "success")]
    ]  # fmt: skip
    (stats,) = [s for s in strategy_stats(trades, triggers, SIZE.get, ["grid"]) if s.instance == g]
    assert stats.triggers == {"buy success": 2, "buy not executed": 1, "close partial": 1}
    assert stats.executed == 3
    assert (stats.round_trips, stats.wins, stats.pnl, stats.commission) == (2, 1, -104 + 98, 6)
    assert stats.win_rate == 0.5 and stats.open_volume == 1
    # a history read from the middle of a trip: its closes before the first open are no trip
    late = strategy_stats(trades[3:], [], SIZE.get)
    (record,) = [s for s in late if s.instance == g]
    assert (record.round_trips, record.wins) == (1, 1)
    idle = strategy_stats([], [], SIZE.get, ["idle"])
    assert [(s.instance, s.round_trips, s.win_rate) for s in idle] == [("idle", 0, None)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 5), st.integers(2900, 3100)), max_size=30))
def test_a_book_that_ends_flat_made_what_it_sold_less_what_it_bought(
    steps: list[tuple[bool, int, int]],
) -> None:
    """Whatever the order of opens and closes, once flat the close P&L adds up to the money of
    the sells less the money of the buys (times the multiplier)."""
    trades: list[Trade] = []
    held = {L: 0, S: 0}
    for long_side, volume, price in steps:
        side = L if long_side else S
        trades.append(fill(side, OPEN, price, volume))
        held[side] += volume
        if held[side] and price % 3 == 0:  # now and then close some of it
            part = min(held[side], volume)
            trades.append(fill(side.opposite, C, price + price % 7, part))
            held[side] -= part
    for side in (L, S):  # flatten
        if held[side]:
            trades.append(fill(side.opposite, C, 3000, held[side]))
    pnl, unmatched = close_pnls(trades, SIZE.get)
    sold = sum(t.price * t.volume for t in trades if t.direction is S)
    bought = sum(t.price * t.volume for t in trades if t.direction is L)
    assert unmatched == 0
    assert abs(sum(pnl.values()) - (sold - bought) * 10) < 1e-6


def test_close_today_and_close_yesterday_are_priced_against_the_lots_they_close() -> None:
    """SHFE/INE close today's and yesterday's lots by name: a CLOSETODAY is measured against
    today's open, a CLOSEYESTERDAY (or a CLOSE, which is yesterday's there) against the older
    one, not first in first out across both (the venue's 平今 / 平昨 figures)."""
    yesterday = T0 - timedelta(days=1)  # Wednesday's trading day
    trades = [
        fill(L, OPEN, 3000, 1, at=yesterday),
        fill(L, OPEN, 3100, 1),
        fill(S, Offset.CLOSETODAY, 3110, 1, at=T0 + timedelta(minutes=1)),  # today's 3100: +10 x 10
        fill(L, OPEN, 3200, 1, at=T0 + timedelta(minutes=2)),
        fill(S, C, 3210, 1, at=T0 + timedelta(minutes=3)),  # SHFE CLOSE: yesterday's 3000: +210 x 10
    ]
    pnl, unmatched = close_pnls(trades, SIZE.get)
    assert [pnl[t.trade_id] for t in trades] == [0, 0, 100, 0, 2100]
    assert unmatched == 0
    day = trade_report(trades, SIZE.get, since=T0 - timedelta(hours=1)).days[-1]
    assert day.close_pnl == 2200
    # elsewhere (DCE) a CLOSE is first in first out; a CLOSEYESTERDAY still takes the older lot
    dce = {"m2705.DCE": 10.0}
    trades = [
        fill(L, OPEN, 3000, 1, at=yesterday, symbol="m2705.DCE"),
        fill(L, OPEN, 3100, 1, symbol="m2705.DCE"),
        fill(S, C, 3110, 1, at=T0 + timedelta(minutes=1), symbol="m2705.DCE"),
    ]
    pnl, _ = close_pnls(trades, dce.get)
    assert pnl[trades[2].trade_id] == 1100


@settings(max_examples=300, deadline=None)
@given(
    first=st.dates(min_value=datetime(2026, 1, 1).date(), max_value=datetime(2026, 12, 31).date()),
    span=st.integers(0, 10),
    minutes=st.integers(-3 * 24 * 60, 16 * 24 * 60),
)
def test_a_range_of_trading_days_holds_exactly_the_moments_of_those_days(first, span, minutes) -> None:  # type: ignore[no-untyped-def]
    """``--from`` / ``--to`` (and the History screen): a moment is in the range exactly when its
    trading day is, whatever day of the week the bounds fall on (``--to`` a Saturday does not
    take in Friday night, which trades for Monday; nor a holiday the night before it)."""
    from core.sessions import trading_day_of
    from tui.reports import trading_day_range

    last = first + timedelta(days=span)
    since, until = trading_day_range(first, last)
    assert since is not None and until is not None
    moment = datetime(first.year, first.month, first.day, tzinfo=CHINA_TZ) + timedelta(minutes=minutes)
    inside = since <= moment.timestamp() < until
    assert inside == (first <= trading_day_of(moment) <= last), (moment, trading_day_of(moment))
