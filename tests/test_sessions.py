"""Trading sessions, the trading day and holidays (core/sessions.py); the sim exchange keeping
them (sim.sessions); window bars closed at session breaks."""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.symbols import PRODUCTS
from core import sessions
from core.models import CHINA_TZ, Bar, Direction, Offset, OrderRequest, OrderType, Status
from core.sessions import (
    MarketState,
    closed_reason,
    has_night_session,
    is_trading_day,
    next_open,
    session_of,
    state_at,
    table_of,
    trading_day_of,
)
from gateways.sim_contracts import PRODUCTS as SIM_PRODUCTS
from gateways.sim_exchange import SimExchange
from tests.conftest import kept_log
from tests.test_strategies import _FiveMinuteRecorder, make


def cst(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=CHINA_TZ)


RB, AU, CU, SC, M, SR, IF, T, WH, LH = (
    table_of(s)
    for s in (
        "rb2705.SHFE",
        "au2612.SHFE",
        "cu2701.SHFE",
        "sc2701.INE",
        "m2705.DCE",
        "SR705.CZCE",
        "IF2612.CFFEX",
        "T2703.CFFEX",
        "WH705.CZCE",
        "lh2705.DCE",
    )
)


# ====================================================================== the table


def test_every_listed_product_has_a_session_table() -> None:
    missing = [
        f"{p}.{exchange}"
        for exchange, ps in PRODUCTS.items()
        for p in ps
        if table_of(f"{p}2705.{exchange}") is None
    ]
    assert missing == []
    sim = [f"{spec.product}2705.{spec.exchange.value}" for spec in SIM_PRODUCTS.values()]
    assert all(table_of(vt) is not None for vt in sim), "every sim product keeps sessions"
    assert table_of("zz2705.SHFE") is None and table_of("rb2705.NOPE") is None and table_of("") is None


def test_night_sessions_end_per_product() -> None:
    assert [t.night_end for t in (AU, SC)] == [time(2, 30)] * 2
    assert CU.night_end == time(1, 0)
    assert [t.night_end for t in (RB, M, SR)] == [time(23, 0)] * 3
    assert [t.night_end for t in (IF, T, WH, LH)] == [None] * 4
    assert RB.day == ((time(9), time(10, 15)), (time(10, 30), time(11, 30)),
                      (time(13, 30), time(15)))  # fmt: skip
    assert IF.day == ((time(9, 30), time(11, 30)), (time(13), time(15)))
    assert T.day[-1] == (time(13), time(15, 15))  # bonds close a quarter later


# ====================================================================== the trading day


@pytest.mark.parametrize(
    ("moment", "day"),
    [
        (cst(2026, 12, 3, 14, 0), date(2026, 12, 3)),  # Thursday's day session
        (cst(2026, 12, 3, 19, 59), date(2026, 12, 3)),
        (cst(2026, 12, 3, 20, 0), date(2026, 12, 4)),  # from 20:00: Friday's
        (cst(2026, 12, 4, 21, 30), date(2026, 12, 7)),  # Friday night trades for Monday
        (cst(2026, 12, 5, 2, 29), date(2026, 12, 7)),  # ... until Saturday 02:30
        (cst(2026, 12, 6, 23, 0), date(2026, 12, 7)),  # Sunday
        (cst(2026, 9, 30, 21, 30), date(2026, 10, 8)),  # the eve of National Day: after the holiday
        (cst(2026, 10, 5, 10, 0), date(2026, 10, 8)),  # inside the holiday
        (cst(2026, 1, 1, 10, 0), date(2026, 1, 5)),  # New Year's day (Thursday) and its Friday off
    ],
)
def test_the_trading_day(moment: datetime, day: date) -> None:
    assert trading_day_of(moment) == day
    assert trading_day_of(moment.astimezone(sessions.CHINA_TZ).replace(tzinfo=CHINA_TZ)) == day


def test_holidays_and_their_eves() -> None:
    assert not is_trading_day(date(2026, 10, 1)) and not is_trading_day(date(2026, 10, 7))
    assert not is_trading_day(date(2026, 10, 10))  # a working Saturday is still no trading day
    assert is_trading_day(date(2026, 10, 8))
    assert not has_night_session(date(2026, 9, 30))  # the eve of a holiday has no night session
    assert has_night_session(date(2026, 12, 4))  # a plain Friday has one (it trades for Monday)
    assert has_night_session(date(2026, 10, 8))
    # so the first trading day after the holiday opens with its day session's auction
    assert state_at(RB, cst(2026, 9, 30, 21, 30)) == (MarketState.CLOSED, cst(2026, 10, 8, 8, 55))
    assert state_at(RB, cst(2026, 10, 8, 8, 56)) == (MarketState.AUCTION, cst(2026, 10, 8, 9, 0))
    assert closed_reason("rb2705.SHFE", cst(2026, 9, 30, 21, 30)) == (
        "market closed: rb2705.SHFE opens Thu 2026-10-08 09:00 CST"
    )


def test_a_year_beyond_the_calendar_counts_weekends_only_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    year = 2099
    # the warning is once per process and the answers are cached: another test in this worker
    # (hypothesis roams far) may have asked for 2099 already
    monkeypatch.setattr(sessions, "_warned_years", set())
    sessions.is_trading_day.cache_clear()
    # read from the module's own logger, whatever the rest of the suite did to logging
    for said in kept_log(sessions.log, logging.WARNING):
        assert is_trading_day(date(year, 1, 1))  # a Thursday: the package knows nothing of 2099
        assert not is_trading_day(date(year, 1, 3))  # Saturday
        assert trading_day_of(cst(year, 1, 2, 21, 0)) == date(year, 1, 5)
        assert state_at(RB, cst(year, 1, 5, 9, 30))[0] is MarketState.OPEN
        warnings = [line for line in said if str(year) in line]
    assert len(warnings) == 1 and "only weekends" in warnings[0] and "update the package" in warnings[0]


# ====================================================================== states through a day


def test_rb_through_a_thursday_and_a_friday_night() -> None:
    walk = [
        (cst(2026, 12, 3, 8, 56), MarketState.CLOSED, cst(2026, 12, 3, 9, 0)),  # night before: no day auction
        (cst(2026, 12, 3, 9, 0), MarketState.OPEN, cst(2026, 12, 3, 10, 15)),
        (cst(2026, 12, 3, 10, 15), MarketState.CLOSED, cst(2026, 12, 3, 10, 30)),
        (cst(2026, 12, 3, 11, 30), MarketState.CLOSED, cst(2026, 12, 3, 13, 30)),
        (cst(2026, 12, 3, 15, 0), MarketState.CLOSED, cst(2026, 12, 3, 20, 55)),
        (cst(2026, 12, 3, 20, 55), MarketState.AUCTION, cst(2026, 12, 3, 21, 0)),
        (cst(2026, 12, 3, 21, 0), MarketState.NIGHT, cst(2026, 12, 3, 23, 0)),
        (cst(2026, 12, 3, 23, 0), MarketState.CLOSED, cst(2026, 12, 4, 9, 0)),
        (cst(2026, 12, 4, 22, 0), MarketState.NIGHT, cst(2026, 12, 4, 23, 0)),  # Friday night
        (cst(2026, 12, 5, 10, 0), MarketState.CLOSED, cst(2026, 12, 7, 9, 0)),  # Saturday
    ]
    assert [(m, *state_at(RB, m)) for m, _, _ in walk] == walk
    assert (
        closed_reason("rb2705.SHFE", cst(2026, 12, 4, 16, 0)) == "market closed: rb2705.SHFE opens 21:00 CST"
    )
    assert closed_reason("rb2705.SHFE", cst(2026, 12, 4, 20, 57)) is None  # the auction takes orders


def test_the_small_hours_and_cffex() -> None:
    assert state_at(AU, cst(2026, 12, 5, 2, 29, 59))[0] is MarketState.NIGHT  # Friday night, Saturday 02:29
    assert state_at(AU, cst(2026, 12, 5, 2, 30)) == (MarketState.CLOSED, cst(2026, 12, 7, 9, 0))
    assert state_at(CU, cst(2026, 12, 4, 0, 59))[0] is MarketState.NIGHT
    assert state_at(CU, cst(2026, 12, 4, 1, 0))[0] is MarketState.CLOSED
    assert state_at(IF, cst(2026, 12, 3, 21, 30)) == (MarketState.CLOSED, cst(2026, 12, 4, 9, 25))
    assert state_at(IF, cst(2026, 12, 4, 9, 25)) == (MarketState.AUCTION, cst(2026, 12, 4, 9, 30))
    assert state_at(IF, cst(2026, 12, 4, 11, 30)) == (MarketState.CLOSED, cst(2026, 12, 4, 13, 0))
    assert state_at(T, cst(2026, 12, 4, 15, 10))[0] is MarketState.OPEN
    assert state_at(WH, cst(2026, 12, 3, 21, 30)) == (MarketState.CLOSED, cst(2026, 12, 4, 8, 55))
    assert (
        closed_reason("IF2612.CFFEX", cst(2026, 12, 4, 12, 0))
        == "market closed: IF2612.CFFEX opens 13:00 CST"
    )
    assert session_of(RB, cst(2026, 12, 3, 15, 0)) == (cst(2026, 12, 3, 13, 30), cst(2026, 12, 3, 15, 0))
    assert session_of(RB, cst(2026, 12, 3, 16, 0)) is None
    assert next_open(RB, cst(2026, 12, 3, 15, 0)) == cst(2026, 12, 3, 21, 0)


_TABLES = sorted(set(sessions.SESSIONS.values()), key=repr)


@settings(max_examples=300, deadline=None)
@given(
    seconds=st.integers(0, 3 * 366 * 86_400),
    table=st.sampled_from(_TABLES),
    later=st.integers(1, 5 * 86_400),
)
def test_every_instant_has_one_trading_day_and_one_state(seconds: int, table: object, later: int) -> None:
    assert isinstance(table, sessions.SessionTable)
    moment = cst(2025, 1, 1) + timedelta(seconds=seconds)
    day = trading_day_of(moment)
    assert is_trading_day(day) and day >= moment.date() - timedelta(days=1)
    assert trading_day_of(moment + timedelta(seconds=later)) >= day  # days never go back
    state, until = state_at(table, moment)
    assert until > moment
    # the state holds until its end, and changes there
    assert state_at(table, until - timedelta(microseconds=1))[0] is state
    assert state_at(table, until)[0] is not state
    trading = session_of(table, moment)
    if state in (MarketState.OPEN, MarketState.NIGHT):
        assert trading is not None and trading[0] <= moment < trading[1] == until
        assert trading_day_of(trading[0]) == day  # a session belongs to one trading day
    else:
        assert next_open(table, moment) > moment


# ====================================================================== the sim exchange


class _Clock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def _buy(vt_symbol: str, price: float, order_type: OrderType = OrderType.LIMIT) -> OrderRequest:
    return OrderRequest(
        vt_symbol=vt_symbol,
        direction=Direction.LONG,
        offset=Offset.OPEN,
        type=order_type,
        price=price,
        volume=1,
    )


def test_the_sim_keeps_sessions_when_asked() -> None:
    clock = _Clock(cst(2026, 12, 4, 16, 0))  # Friday afternoon: rb closed until 20:55
    engine = SimExchange("S1", seed=3, clock=clock, sessions=True)
    assert engine.open_market("rb2705.SHFE")
    before = engine.tick("rb2705.SHFE")
    assert before is not None
    for _ in range(20):
        tick, update = engine.step("rb2705.SHFE")  # between sessions nothing moves
        assert update is None and tick.last_price == before.last_price and tick.volume == before.volume
    high = before.limit_up
    update = engine.send_order(_buy("rb2705.SHFE", high))
    assert update.events[-1].status is Status.REJECTED
    assert update.events[-1].status_msg == "market closed: rb2705.SHFE opens 21:00 CST"

    clock.moment = cst(2026, 12, 4, 20, 57)  # the call auction: a limit order rests, unmatched
    update = engine.send_order(_buy("rb2705.SHFE", high, OrderType.FAK))
    assert update.events[-1].status is Status.REJECTED and "only limit orders" in update.events[-1].status_msg
    update = engine.send_order(_buy("rb2705.SHFE", high))
    rested = update.order_id
    assert update.events[-1].status is Status.NOTTRADED
    engine.step("rb2705.SHFE")
    assert engine.get_order(rested).status is Status.NOTTRADED  # type: ignore[union-attr]

    clock.moment = cst(2026, 12, 4, 21, 0, 1)  # the night session: it matches at once
    _, update = engine.step("rb2705.SHFE")
    assert update is not None and engine.get_order(rested).status is Status.ALLTRADED  # type: ignore[union-attr]
    assert engine.trading_day == "20261207"  # Friday night trades for Monday


def test_without_sessions_the_sim_trades_at_any_hour() -> None:
    engine = SimExchange("S2", seed=3, clock=_Clock(cst(2026, 12, 5, 4, 0)))
    assert engine.open_market("rb2705.SHFE")
    tick = engine.tick("rb2705.SHFE")
    assert tick is not None
    update = engine.send_order(_buy("rb2705.SHFE", tick.limit_up))
    assert update.events[-1].status is Status.ALLTRADED


# ====================================================================== bars and breaks


def _minute_bars(starts: list[datetime]) -> list[Bar]:
    return [
        Bar(
            vt_symbol="rb2601.SHFE",
            datetime=start,
            open_price=100 + i,
            high_price=100 + i,
            low_price=100 + i,
            close_price=100 + i,
            volume=1,
        )
        for i, start in enumerate(starts)
    ]


class _HalfHourRecorder(_FiveMinuteRecorder):
    bar_window = 30


def _windows(received: list[Bar], minutes: int) -> list[tuple[str, str, float, float, float]]:
    return [
        (
            f"{b.datetime:%H:%M}",
            f"{b.datetime + timedelta(minutes=minutes):%H:%M}",
            b.open_price,
            b.close_price,
            b.volume,
        )
        for b in received
    ]


def test_a_window_bar_never_spans_a_session_break() -> None:
    strategy, _ = make(_HalfHourRecorder)
    day = [cst(2026, 12, 3, 10, 0) + timedelta(minutes=i) for i in range(15)]  # 10:00 .. 10:14
    day += [cst(2026, 12, 3, 10, 30) + timedelta(minutes=i) for i in range(30)]  # 10:30 .. 10:59
    day += [cst(2026, 12, 3, 14, 45) + timedelta(minutes=i) for i in range(15)]  # 14:45 .. 14:59
    day += [cst(2026, 12, 3, 21, 0) + timedelta(minutes=i) for i in range(3)]
    for bar in _minute_bars(day):
        strategy.feed_bar(bar)
    # vnpy's BarGenerator would have made one 10:00-10:59 bar of 45 minutes across the break
    assert _windows(strategy.received, 30) == [
        ("09:45", "10:15", 100, 114, 15),  # closed at the 10:15 break (a short window, dated by its end)
        ("10:30", "11:00", 115, 144, 30),
        ("14:30", "15:00", 145, 159, 15),  # closed at 15:00, never merged with the night's minutes
    ]
    assert strategy._bg.window_bar is not None and strategy._bg.window_bar.volume == 3  # the night's, open


def test_a_window_closes_at_a_break_that_its_last_minutes_never_reached() -> None:
    strategy, _ = make(_FiveMinuteRecorder)
    quiet = [cst(2026, 12, 3, 10, 11), cst(2026, 12, 3, 10, 12)]  # nothing traded 10:13-10:14
    after = [cst(2026, 12, 3, 10, 30) + timedelta(minutes=i) for i in range(5)]
    for bar in _minute_bars(quiet + after):
        strategy.feed_bar(bar)
    assert _windows(strategy.received, 5) == [
        ("10:08", "10:13", 100, 101, 2),  # closed when the next session's first minute came
        ("10:30", "10:35", 102, 106, 5),
    ]


def test_a_vnpy_templates_window_bars_close_at_session_breaks_too() -> None:
    from vnpy.trader.constant import Exchange, Interval
    from vnpy.trader.object import BarData
    from vnpy.trader.utility import BarGenerator

    from strategies.cta_host import keep_windows_in_sessions

    windows: list[BarData] = []
    bg = BarGenerator(lambda bar: None, 30, windows.append)
    table = table_of("rb2705.SHFE")
    assert table is not None
    keep_windows_in_sessions(bg, table)
    keep_windows_in_sessions(bg, table)  # once per generator
    minutes = [cst(2026, 12, 3, 10, 0) + timedelta(minutes=i) for i in range(15)]  # 10:00 .. 10:14
    minutes += [cst(2026, 12, 3, 10, 30) + timedelta(minutes=i) for i in range(30)]  # 10:30 .. 10:59
    minutes += [cst(2026, 12, 3, 11, 0) + timedelta(minutes=i) for i in range(20)]  # 11:00 .. 11:19 (quiet)
    minutes += [cst(2026, 12, 3, 13, 30) + timedelta(minutes=i) for i in range(2)]
    for i, start in enumerate(minutes):
        price = 100.0 + i
        bg.update_bar(
            BarData(
                symbol="rb2705", exchange=Exchange.SHFE, datetime=start, interval=Interval.MINUTE, volume=1,
                open_price=price, high_price=price, low_price=price, close_price=price, gateway_name="t",
            )
        )  # fmt: skip
    got = [(f"{w.datetime:%H:%M}", w.open_price, w.close_price, w.volume) for w in windows]
    assert got == [
        ("10:00", 100, 114, 15),  # at 10:15, not with 10:30-10:44 as vnpy alone would
        ("10:30", 115, 144, 30),
        ("11:00", 145, 164, 20),  # the quiet end of the morning: closed when 13:30 came
    ]


def test_sessions_and_a_shifted_clock_are_refused_with_a_replay() -> None:
    from tests.test_config import error_of

    base = "accounts:\n  - {account_id: A, gateway: sim, sim: {replay: bars.csv, %s}}\n"
    assert error_of(base % "sessions: true") == (
        "config.yaml: accounts[0].sim.sessions: not with replay (a replay plays the file's own hours)"
    )
    assert error_of(base % "clock_start: 2026-12-04T21:00:00+08:00") == (
        "config.yaml: accounts[0].sim.clock_start: not with replay (a replay's quotes carry the file's times)"
    )
