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
