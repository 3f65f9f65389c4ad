"""Whose lots a close takes: a guard closing the account's position closes the others' lots."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from config.schema import StrategyConfig
from core.models import CHINA_TZ, Contract, Direction, Exchange, GatewayStatus, Offset, Trade, TradingState
from core.oms import Oms
from core.protocol import Reply
from core.strategy_engine import StrategyEngine
from storage import AccountDatabase
from tests.test_exit_chase import T0

SYMBOL = "rb2605.SHFE"


class Host:
    account_id = "X1"

    def __init__(self, db: AccountDatabase) -> None:
        self.oms = Oms("X1")
        self.oms.update_contract(
            Contract(vt_symbol=SYMBOL, symbol="rb2605", exchange=Exchange.SHFE, size=10, pricetick=1)
        )
        self.db = db
        self.auto_trading = True
        self.gateway_status = GatewayStatus.CONNECTED
        self.trading_state = TradingState.ACTIVE
        self.protective_kept = False
        self.log = logging.getLogger("qtrader.test.attribution")

    def place_order(self, req: Any) -> Reply:
        raise AssertionError("no orders in this test")

    def cancel_order(self, order_id: str) -> Reply:
        raise AssertionError("no cancels in this test")

    def emit(self, msg_type: str, data: Any) -> None:
        pass


CONFIGS = [
    StrategyConfig(name="trend", class_name="MaCrossStrategy", symbol=SYMBOL),
    StrategyConfig(name="grid", class_name="GridStrategy", symbol=SYMBOL),
    StrategyConfig(name="guard", class_name="StopGuardStrategy", symbol=SYMBOL),
]


def _trade(
    n: int, reference: str, direction: Direction, offset: Offset, volume: float, price: float
) -> Trade:
    return Trade(
        account_id="X1",
        trade_id=f"t{n}",
        order_id=f"o{n}",
        vt_symbol=SYMBOL,
        direction=direction,
        offset=offset,
        price=price,
        volume=volume,
        datetime=T0.astimezone(CHINA_TZ),
        reference=reference,
    )


def _engine(db: AccountDatabase) -> StrategyEngine:
    engine = StrategyEngine(Host(db), CONFIGS)  # type: ignore[arg-type]
    engine.load(autostart=False)
    return engine


def test_a_guard_closing_the_account_position_closes_the_owners_lots_live_and_after_a_restart(
    tmp_path: Path,
) -> None:
    trades = [
        _trade(1, "trend", Direction.LONG, Offset.OPEN, 2, 3100),
        _trade(2, "grid", Direction.LONG, Offset.OPEN, 1, 3090),
        _trade(3, "manual", Direction.LONG, Offset.OPEN, 4, 3080),  # the operator's own lots
        # the stop guard sells 5 of the account's 7 long lots
        _trade(4, "guard", Direction.SHORT, Offset.CLOSETODAY, 5, 3050),
    ]
    with AccountDatabase(tmp_path / "x.db") as db:
        engine = _engine(db)
        for trade in trades:
            db.save_trade(trade)
            engine.on_trade(trade)
        pos = {name: inst.pos for name, inst in engine.instances.items()}
        # the strategies' lots first (configuration order), the rest was the operator's
        assert pos == {"trend": 0, "grid": 0, "guard": 0}
        trend = engine.instances["trend"]
        assert trend.realized_pnl == (3050 - 3100) * 2 * 10  # the loss is the owner's
        # a restart books the recorded trades the same way
        again = _engine(db)
        assert {name: inst.pos for name, inst in again.instances.items()} == pos
        assert again.instances["trend"].realized_pnl == trend.realized_pnl


def test_a_close_within_the_instances_own_lots_touches_nobody_else(tmp_path: Path) -> None:
    with AccountDatabase(tmp_path / "x.db") as db:
        engine = _engine(db)
        for trade in (
            _trade(1, "trend", Direction.LONG, Offset.OPEN, 2, 3100),
            _trade(2, "grid", Direction.LONG, Offset.OPEN, 1, 3090),
            _trade(3, "grid", Direction.SHORT, Offset.CLOSETODAY, 1, 3095),
        ):
            engine.on_trade(trade)
        assert (engine.instances["trend"].pos, engine.instances["grid"].pos) == (2, 0)


def test_a_grid_comes_back_where_it_was_after_a_restart_unless_its_parameters_changed(
    tmp_path: Path,
) -> None:
    grid_cfg = StrategyConfig(name="grid", class_name="GridStrategy", symbol=SYMBOL, params={"grid_step": 5})

    def engine(cfg: StrategyConfig) -> StrategyEngine:
        host = Host(db)
        host.state_dir = tmp_path  # type: ignore[attr-defined]
        e = StrategyEngine(host, [cfg])  # type: ignore[arg-type]
        e.load(autostart=False)
        return e

    with AccountDatabase(tmp_path / "x.db") as db:
        first = engine(grid_cfg)
        grid = first.instances["grid"]
        grid.base, grid.step, grid.held = 3100.0, 5.0, 2  # set up on its first tick, two levels down
        first.on_timer()  # saved about once a second
        again = engine(grid_cfg)
        restored = again.instances["grid"]
        assert (restored.base, restored.step, restored.held) == (3100.0, 5.0, 2)
        changed = engine(grid_cfg.model_copy(update={"params": {"grid_step": 8}}))
        fresh = changed.instances["grid"]
        assert (fresh.base, fresh.held) == (None, 0)  # another grid: it starts afresh
