"""Pre-trade checks of the trader: each at its boundary, with the rule and numbers named."""

from __future__ import annotations

import pytest

from config.schema import RiskConfig
from core.models import (
    Contract,
    Direction,
    Exchange,
    GatewayStatus,
    Offset,
    OrderRequest,
    OrderType,
    Position,
    Tick,
    TradingState,
    now,
)
from core.oms import Oms
from core.risk import RiskEngine

AU = Contract(vt_symbol="au2612.SHFE", symbol="au2612", exchange=Exchange.SHFE, size=1000, pricetick=0.02)


def _engine(**limits: object) -> RiskEngine:
    oms = Oms("DQ1")
    oms.update_contract(AU)
    oms.update_tick(
        Tick(vt_symbol=AU.vt_symbol, datetime=now(), last_price=900.0, limit_up=954.0, limit_down=846.0)
    )
    return RiskEngine(RiskConfig(**limits), oms)


def _check(engine: RiskEngine, state: TradingState = TradingState.ACTIVE, **req: object) -> str | None:
    fields = {"vt_symbol": AU.vt_symbol, "direction": Direction.LONG, "price": 900.0, "volume": 1, **req}
    result = engine.check(
        OrderRequest(**fields), trading_state=state, gateway_status=GatewayStatus.CONNECTED, contract=AU
    )
    return None if result is None else str(result)


def test_a_plain_order_passes() -> None:
    assert _check(_engine()) is None


def test_max_order_volume_boundary() -> None:
    engine = _engine(max_order_volume=5)
    assert _check(engine, volume=5) is None
    assert _check(engine, volume=6) == "max_order_volume: volume 6 > limit 5"


def test_max_order_notional_boundary() -> None:
    engine = _engine(max_order_notional=1_800_000)
    assert _check(engine, volume=2, price=900.0) is None
    assert (
        _check(engine, volume=2, price=900.02)
        == "max_order_notional: notional 1,800,040.00 > limit 1,800,000.00"
    )


@pytest.mark.parametrize("volume", [0, -1, 1.5])
def test_volume_must_be_whole_and_positive(volume: float) -> None:
    assert _check(_engine(), volume=volume).startswith("volume: ")


def test_tick_grid_and_price_limits() -> None:
    engine = _engine()
    assert _check(engine, price=900.03) == "tick_grid: price 900.030 is not on the 0.02 grid of au2612.SHFE"
    assert _check(engine, price=954.0) is None
    assert _check(engine, price=954.02) == "price_limit: price 954.02 above limit-up 954.00"
    assert _check(engine, price=846.0) is None
    assert _check(engine, price=845.98) == "price_limit: price 845.98 below limit-down 846.00"
    assert _check(engine, type=OrderType.MARKET, price=0.0) is None  # market orders carry no price


def test_venue_and_contract() -> None:
    engine = _engine()
    req = OrderRequest(vt_symbol=AU.vt_symbol, direction=Direction.LONG, price=900.0, volume=1)
    down = engine.check(
        req, trading_state=TradingState.ACTIVE, gateway_status=GatewayStatus.DISCONNECTED, contract=AU
    )
    assert str(down) == "venue: not connected (disconnected); order not sent"
    why = engine.check(
        req,
        trading_state=TradingState.ACTIVE,
        gateway_status=GatewayStatus.DISCONNECTED,
        contract=AU,
        gateway_message="CTP trade front disconnected (4097)",
    )
    assert (
        str(why) == "venue: not connected (disconnected: CTP trade front disconnected (4097)); order not sent"
    )
    unknown = engine.check(
        req, trading_state=TradingState.ACTIVE, gateway_status=GatewayStatus.CONNECTED, contract=None
    )
    assert str(unknown) == "contract: unknown contract au2612.SHFE"


def test_halted_and_reducing() -> None:
    engine = _engine()
    assert "HALTED" in _check(engine, TradingState.HALTED)
    # REDUCING: an opening order is refused, a close of an existing position passes
    assert "REDUCING" in _check(engine, TradingState.REDUCING)
    engine.oms.update_position(
        Position(account_id="DQ1", vt_symbol=AU.vt_symbol, direction=Direction.LONG, volume=2, price=890.0)
    )
    close = {"direction": Direction.SHORT, "offset": Offset.CLOSETODAY}
    assert _check(engine, TradingState.REDUCING, volume=2, **close) is None
    assert "REDUCING" in _check(engine, TradingState.REDUCING, volume=3, **close)  # more than the position


# --- rules with memory: rates, daily totals, exposure, self-trade, duplicates ---


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _flow_engine(**limits: object) -> tuple[RiskEngine, Clock]:
    engine = _engine(**limits)
    clock = Clock()
    engine.clock = clock
    engine.start_day([])
    return engine, clock


def _req(**fields: object) -> OrderRequest:
    return OrderRequest(
        **{"vt_symbol": AU.vt_symbol, "direction": Direction.LONG, "price": 900.0, "volume": 1, **fields}
    )


def _working(
    engine: RiskEngine, order_id: str, direction: Direction, price: float, offset: Offset = Offset.OPEN
) -> None:
    from core.models import Order, Status

    engine.oms.update_order(
        Order(
            account_id="DQ1",
            order_id=order_id,
            vt_symbol=AU.vt_symbol,
            direction=direction,
            offset=offset,
            type=OrderType.LIMIT,
            price=price,
            volume=1,
            status=Status.NOTTRADED,
            datetime=now(),
        )
    )


def test_order_rate_boundary_and_window() -> None:
    engine, clock = _flow_engine(max_orders_per_second=3, duplicate_window=0)
    for i in range(2):
        engine.record_order(_req(price=900.0 + i * 0.02), f"o{i}")
    assert _check(engine) is None  # the 3rd in a second: at the limit
    engine.record_order(_req(price=901.0), "o2")
    assert _check(engine, price=902.0) == "order_rate: 4 orders in 1 s > limit 3"
    clock.t += 1.0  # the window has passed
    assert _check(engine, price=902.0) is None


def test_cancel_rate_and_daily_cancels() -> None:
    engine, clock = _flow_engine(max_cancels_per_second=2, max_daily_cancels=3)
    engine.record_cancel()
    assert engine.check_cancel() is None
    engine.record_cancel()
    assert str(engine.check_cancel()) == "cancel_rate: 3 cancels in 1 s > limit 2"
    clock.t += 1.0
    assert engine.check_cancel() is None  # 3rd today: at the daily limit
    engine.record_cancel()
    assert str(engine.check_cancel()) == "daily_cancels: 4 cancels today > limit 3"


def test_active_orders_boundary() -> None:
    engine, _ = _flow_engine(max_active_orders=2, check_self_trade=False)
    _working(engine, "w1", Direction.LONG, 899.0)
    assert _check(engine) is None
    _working(engine, "w2", Direction.LONG, 898.0)
    assert _check(engine) == "active_orders: 3 working orders > limit 2"


def test_daily_orders_boundary_and_count_after_restart() -> None:
    from core.models import Order, Status

    engine, clock = _flow_engine(max_daily_orders=3, duplicate_window=0)
    earlier = [
        Order(
            account_id="DQ1",
            order_id=f"x{i}",
            vt_symbol=AU.vt_symbol,
            direction=Direction.LONG,
            offset=Offset.OPEN,
            type=OrderType.LIMIT,
            price=900,
            volume=1,
            status=Status.CANCELLED,
            datetime=now(),
        )
        for i in range(2)
    ]
    engine.start_day(earlier)  # two orders already sent today, before a restart
    assert engine.orders_today == 2
    assert _check(engine) is None
    clock.t += 5
    engine.record_order(_req(), "o3")
    assert _check(engine, price=901.0) == "daily_orders: 4 orders today > limit 3"


def test_position_limit_counts_holdings_and_working_opens() -> None:
    engine, _ = _flow_engine(max_position_per_contract=5, check_self_trade=False)
    engine.oms.update_position(
        Position(account_id="DQ1", vt_symbol=AU.vt_symbol, direction=Direction.LONG, volume=3, price=890.0)
    )
    _working(engine, "w1", Direction.LONG, 899.0)
    assert _check(engine, volume=1) is None  # 3 + 1 + 1 = 5
    assert _check(engine, volume=2) == "position_limit: 4 + 2 lots long au2612.SHFE > limit 5"
    # closing is never limited by it
    assert _check(engine, direction=Direction.SHORT, offset=Offset.CLOSETODAY, volume=3, price=900.0) is None


def test_self_trade_boundary() -> None:
    engine, _ = _flow_engine()
    _working(engine, "S1", Direction.SHORT, 900.0)
    assert _check(engine, price=899.98) is None
    assert (
        _check(engine, price=900.0) == "self_trade: buy at 900 would cross our working sell at 900 (order S1)"
    )
    assert _check(engine, type=OrderType.MARKET, price=0.0).startswith("self_trade: buy at market")
    engine.config = RiskConfig(check_self_trade=False)
    assert _check(engine, price=900.0) is None


def test_duplicate_within_the_window_only() -> None:
    engine, clock = _flow_engine(duplicate_window=1.0)
    engine.record_order(_req(), "O1")
    clock.t += 0.5
    assert _check(engine) == "duplicate: same order as O1 0.50 s ago (window 1 s)"
    assert _check(engine, price=900.02) is None  # not the same order
    clock.t += 0.5
    assert _check(engine) is None  # the window has passed


def test_an_order_that_never_left_us_counts_for_no_limit() -> None:
    engine, _ = _flow_engine(max_orders_per_second=1, max_daily_orders=5, duplicate_window=5)
    sent = engine.record_order(_req(), "LOCAL.1")
    assert engine.orders_today == 1
    assert _check(engine, price=901.0) == "order_rate: 2 orders in 1 s > limit 1"
    engine.withdraw(sent)  # the gateway refused it on our side
    assert engine.orders_today == 0
    assert _check(engine) is None  # neither the rate, nor a duplicate of it


def test_a_new_decision_is_not_a_duplicate_of_an_alike_order() -> None:
    """A grid's close of a level it bought back is its own decision (OrderRequest.decision): alike
    orders of different decisions pass; the same decision twice, or the operator's twice, do not."""
    engine, clock = _flow_engine(duplicate_window=1.0)
    engine.record_order(_req(reference="g", decision="g:grid:close:3-3#4@21:05:03"), "O1")
    clock.t += 0.5
    assert _check(engine, reference="g", decision="g:grid:close:3-3#6@21:05:03") is None
    assert _check(engine, reference="g", decision="g:grid:close:3-3#4@21:05:03") == (
        "duplicate: same order as O1 0.50 s ago (window 1 s)"
    )
    engine.record_order(_req(), "O2")
    assert _check(engine) == "duplicate: same order as O2 0.00 s ago (window 1 s)"


def test_an_order_on_a_closed_market_is_refused_with_the_next_open_time() -> None:
    from datetime import datetime

    from core.models import CHINA_TZ

    engine = _engine()
    order = OrderRequest(vt_symbol=AU.vt_symbol, direction=Direction.LONG, price=900.0, volume=1)

    def at(*moment: int) -> str | None:
        result = engine.check(
            order,
            trading_state=TradingState.ACTIVE,
            gateway_status=GatewayStatus.CONNECTED,
            contract=AU,
            moment=datetime(*moment, tzinfo=CHINA_TZ),
        )
        return None if result is None else str(result)

    assert at(2026, 12, 4, 12, 0) == "market closed: au2612.SHFE opens 13:30 CST"  # lunch
    assert at(2026, 12, 5, 3, 0) == "market closed: au2612.SHFE opens Mon 2026-12-07 09:00 CST"
    assert at(2026, 12, 4, 20, 56) is None  # the call auction takes orders
    assert at(2026, 12, 5, 2, 0) is None  # Friday's night session, after midnight
    assert _check(engine) is None  # no moment: the sessions do not apply (a sim without sim.sessions)
