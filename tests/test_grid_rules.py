"""The demo's grid against the demo's own risk rules: a falling, wobbling, then rising price sees
every level bought and sold back, and no order refused as a duplicate or beyond max_position.

The trader's pieces are real (OMS, RiskEngine with DQ1's risk section from config/demo.yaml, the
StrategyEngine running the demo's ag_grid); the venue is a stand-in that fills every working order
at its price when the next quote comes, 0.45 s later (the sim sends about 2 quotes a second).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest

from config import demo_config_path, load_config_file
from core.models import (
    CHINA_TZ,
    Direction,
    GatewayStatus,
    Offset,
    Order,
    OrderRequest,
    Position,
    Status,
    Tick,
    TradingState,
)
from core.oms import Oms
from core.protocol import Reply
from core.risk import RiskEngine
from core.strategy_engine import StrategyEngine
from gateways.sim_contracts import get_contract

T0 = datetime(2026, 12, 3, 21, 30, tzinfo=CHINA_TZ)


class Venue:
    """The engine's trader: real OMS and risk rules; the market fills what rests, one quote later."""

    account_id = "DQ1"

    def __init__(self, risk_config: Any, vt_symbol: str) -> None:
        self.vt_symbol = vt_symbol
        self.oms = Oms("DQ1")
        self.oms.update_contract(get_contract(vt_symbol, "DQ1"))  # type: ignore[arg-type]
        self.db = None
        self.auto_trading = True
        self.gateway_status = GatewayStatus.CONNECTED
        self.trading_state = TradingState.ACTIVE
        self.log = logging.getLogger("qtrader.test.grid")
        self.seconds = 0.0
        self.risk = RiskEngine(risk_config, self.oms, clock=lambda: self.seconds)
        self.refused: list[str] = []  # by the risk rules
        self.triggers: list[Any] = []  # the grid's decisions and what became of them
        self.engine: StrategyEngine | None = None
        self._n = 0

    def place_order(self, req: OrderRequest) -> Reply:
        contract = self.oms.contracts.get(req.vt_symbol)
        rejection = self.risk.check(
            req, trading_state=self.trading_state, gateway_status=self.gateway_status, contract=contract
        )
        if rejection is not None:
            self.refused.append(str(rejection))
            return Reply(ok=False, error=str(rejection))
        self._n += 1
        order_id = f"o{self._n}"
        self.risk.record_order(req, order_id)
        self.oms.update_order(req.order("DQ1", order_id, Status.NOTTRADED, self.now))
        return Reply(ok=True, result={"order_id": order_id, "status": "NOTTRADED"})

    def cancel_order(self, order_id: str) -> Reply:
        return Reply(ok=False, error="not in this test")

    def emit(self, msg_type: str, data: Any) -> None:
        if msg_type == "trigger":
            self.triggers.append(data)

    @property
    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.seconds)

    def fill_working(self) -> None:
        from core.models import Trade

        assert self.engine is not None
        for order in list(self.oms.active_orders.values()):
            done = Order(**{f: getattr(order, f) for f in order.__struct_fields__})
            done.status, done.traded = Status.ALLTRADED, order.volume
            self.oms.update_order(done)
            trade = Trade(
                account_id="DQ1",
                trade_id=f"t-{order.order_id}",
                order_id=order.order_id,
                vt_symbol=order.vt_symbol,
                direction=order.direction,
                offset=order.offset,
                price=order.price,
                volume=order.volume,
                datetime=self.now,
                reference=order.reference,
            )
            self.oms.add_trade(trade)
            self._move_position(order)
            self.engine.on_order(done)
            self.engine.on_trade(trade)

    def _move_position(self, order: Order) -> None:
        pos = self.oms.position(self.vt_symbol, Direction.LONG)
        volume = pos.volume if pos is not None else 0.0
        cost = pos.price if pos is not None else 0.0
        if order.offset is Offset.OPEN:
            assert order.direction is Direction.LONG  # a long-only grid
            cost = (cost * volume + order.price * order.volume) / (volume + order.volume)
            volume += order.volume
        else:
            volume -= order.volume
        self.oms.update_position(
            Position(
                account_id="DQ1",
                vt_symbol=self.vt_symbol,
                direction=Direction.LONG,
                volume=volume,
                price=cost,
            )
        )

    def quote(self, price: float) -> None:
        """A quote later (the sim sends about 2 a second, not exactly evenly): what rested
        fills, then the new quote reaches the grid."""
        assert self.engine is not None
        self.seconds += 0.45
        self.fill_working()
        tick = Tick(
            account_id="DQ1",
            vt_symbol=self.vt_symbol,
            datetime=self.now,
            last_price=price,
            bid_price_1=price,
            bid_volume_1=50,
            ask_price_1=price + 1,
            ask_volume_1=50,
        )
        self.oms.update_tick(tick)
        self.engine.on_tick(tick)


@pytest.fixture
def demo_grid() -> tuple[Venue, StrategyEngine]:
    demo = load_config_file(demo_config_path())
    dq1 = demo.account("DQ1")
    (grid,) = [s for s in dq1.strategies if s.class_name == "GridStrategy"]
    venue = Venue(dq1.risk, grid.symbol)
    engine = StrategyEngine(venue, [grid], clock=lambda: venue.now)  # type: ignore[arg-type]
    venue.engine = engine
    engine.load()
    return venue, engine


def test_the_demo_grid_trades_a_falling_then_rising_market_without_refusals(
    demo_grid: tuple[Venue, StrategyEngine],
) -> None:
    venue, engine = demo_grid
    (grid,) = engine.instances.values()
    step = grid.grid_step  # type: ignore[attr-defined]  # ag: 1 yuan ticks
    base = 12000.0
    path = [base]
    for level in range(1, 6):  # down through every line, wobbling across each one on the way
        line = base - level * step
        path += [line + 1, line, line + step, line, line + step, line]
    path += [base - 5 * step - 3]  # below the grid: nothing more to buy
    for level in range(4, -1, -1):  # and back up, wobbling again
        line = base - level * step
        path += [line, line - step, line, line - step, line]
    for price in path:
        venue.quote(price)
    venue.quote(base)  # the last fill
    assert venue.refused == []
    assert [(t.action, t.result, t.error) for t in venue.triggers if t.result != "success"] == []
    assert len(venue.triggers) > 20  # every wobble was a level bought or sold back
    assert grid.held == 0 and grid.pos == 0  # type: ignore[attr-defined]
    left = venue.oms.position(grid.vt_symbol, Direction.LONG)
    assert left is None or left.volume == 0


def test_the_grid_never_asks_beyond_its_max_position(demo_grid: tuple[Venue, StrategyEngine]) -> None:
    """A level sold and bought back before the sale is reported holds no more than before."""
    venue, engine = demo_grid
    (grid,) = engine.instances.values()
    step = grid.grid_step  # type: ignore[attr-defined]
    base = 12000.0
    venue.quote(base)
    for level in range(1, 6):
        venue.quote(base - level * step)
    venue.quote(base - 5 * step)  # the five buys fill: the grid is full (max_position 5)
    assert grid.pos == 5  # type: ignore[attr-defined]
    # up one line (a close goes out) and down again at once, before that close is reported
    venue.seconds += 0.5
    tick = venue.oms.ticks[grid.vt_symbol]
    for price in (base - 4 * step, base - 5 * step):
        moved = Tick(**{f: getattr(tick, f) for f in tick.__struct_fields__})
        moved.last_price = moved.bid_price_1 = price
        moved.ask_price_1 = price + 1
        moved.datetime = venue.now
        venue.oms.update_tick(moved)
        engine.on_tick(moved)
    assert venue.refused == []
    working = venue.oms.active_orders.values()
    assert sorted((o.direction.name, o.offset.name) for o in working) == [
        ("LONG", "OPEN"),
        ("SHORT", "CLOSETODAY"),
    ]
    venue.quote(base - 5 * step)
    assert grid.pos == 5  # type: ignore[attr-defined]
