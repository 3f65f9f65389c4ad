"""The strategy engine inside a trader: triggers, validation, execution, isolation, kill switch."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from core.manager import TradingManager
from core.models import Direction, GatewayStatus, OrderRequest, TraderStatus, TradingState, now
from core.trader import Trader
from tests.conftest import CoreEnv, all_connected, sim_account, wait_until

SCRIPTED = textwrap.dedent(
    """
    from strategies.base import Param, Strategy


    class Scripted(Strategy):
        \"\"\"Does what the test tells it; counts ticks; raises when told to.\"\"\"

        parameters = {"volume": Param(1, int, min=1)}
        boom = False

        def bars_needed(self) -> int:
            return 0

        def on_start(self) -> None:
            super().on_start()
            self.ticks = 0

        def on_tick(self, tick) -> None:
            super().on_tick(tick)
            self.ticks += 1
            if self.boom:
                raise RuntimeError("strategy bug")

        buy_on_fill = False

        def on_trade(self, trade) -> None:
            if self.buy_on_fill:
                self.buy(trade.price, 1, "again after a fill", key="again")
    """
)


def _strategy_yaml(name: str, symbol: str, *, max_position: int = 5, autostart: bool = True) -> str:
    return f"""
      - name: {name}
        class: Scripted
        symbol: {symbol}
        risk: {{max_position: {max_position}}}
        autostart: {str(autostart).lower()}
"""


def _account_with(name: str, symbol: str, strategies: str, *, rate: float = 0, mode: str = "process") -> str:
    return sim_account(name, symbol, rate=rate, mode=mode) + "    strategies:" + strategies


@pytest.fixture
def strategy_dir(core_env: CoreEnv) -> Path:
    path = core_env.root / "user_strategies"
    path.mkdir()
    (path / "scripted.py").write_text(SCRIPTED)
    return path


@pytest.fixture
async def trader(core_env: CoreEnv, strategy_dir: Path) -> AsyncIterator[Trader]:
    config = core_env.write_config(
        _account_with(
            "SE1",
            "m2705.DCE",
            _strategy_yaml("s1", "m2705.DCE", max_position=1) + _strategy_yaml("s2", "m2705.DCE"),
        ),
        extra=f"strategy_path: {strategy_dir}",
    )
    t = Trader(config.accounts[0], config, data_dir=core_env.data_dir, socket_path=None)
    task = asyncio.create_task(t.run())
    await wait_until(lambda: t.strategies is not None and t.gateway_status is GatewayStatus.CONNECTED)
    await wait_until(lambda: "m2705.DCE" in t.oms.ticks)
    try:
        yield t
    finally:
        t.stop()
        await task


def _triggers(t: Trader) -> list:
    assert t.db is not None
    return t.db.load_triggers()


async def test_with_auto_trading_off_signals_are_recorded_not_executed(trader: Trader) -> None:
    assert trader.auto_trading is False
    s1 = trader.strategies.instances["s1"]  # type: ignore[union-attr]
    s1.buy(trader.oms.ticks["m2705.DCE"].ask_price_1, 1, "test: buy now", key="k1")
    (trigger,) = _triggers(trader)
    assert trigger.result == "not executed"
    assert trigger.error == "auto-trading is off"
    assert trigger.condition == "test: buy now" and trigger.instance == "s1" and trigger.action == "buy"
    assert not trader.oms.orders  # nothing was sent


async def test_executed_signal_is_an_attributed_order_and_the_instance_books_it(trader: Trader) -> None:
    trader.auto_trading = True
    engine = trader.strategies
    assert engine is not None
    s1 = engine.instances["s1"]
    price = trader.oms.ticks["m2705.DCE"].ask_price_1
    s1.buy(price, 1, "test: buy now", key="k1")
    (trigger,) = _triggers(trader)
    assert trigger.result == "success", trigger.error
    order = trader.oms.orders[trigger.order_id]
    assert order.reference == "s1"  # orders carry the instance's name
    await wait_until(lambda: s1.pos == 1, what="the fill booked to the instance")
    assert all(t.reference == "s1" for t in trader.oms.trades.values())
    # the same signal again within 5 minutes: not repeated
    s1.buy(price, 1, "test: buy now", key="k1")
    assert _triggers(trader)[-1].result == "rejected"
    assert "duplicate" in _triggers(trader)[-1].error
    # a new signal beyond the instance's max_position (1)
    s1.buy(price, 1, "test: buy more", key="k2")
    last = _triggers(trader)[-1]
    assert last.result == "rejected" and last.error.startswith(
        "max_position: instance position +1 -> +2 > limit 1"
    )
    # closing it works, and the position is booked back to flat
    s1.close(trader.oms.ticks["m2705.DCE"].bid_price_1, "test: close", key="k3")
    assert _triggers(trader)[-1].result == "success", _triggers(trader)[-1].error
    await wait_until(lambda: s1.pos == 0, what="flat again")


async def test_stale_signals_and_closes_of_nothing_are_rejected(trader: Trader) -> None:
    from strategies.base import Signal

    trader.auto_trading = True
    engine = trader.strategies
    assert engine is not None
    s2 = engine.instances["s2"]
    old = Signal(action="buy", condition="late", price=3000, volume=1, datetime=now() - timedelta(seconds=75))
    engine.emit(s2, old)
    assert _triggers(trader)[-1].result == "rejected"
    assert _triggers(trader)[-1].error.startswith("stale: signal 75 s old > 60 s")
    nothing = Signal(
        action="close", condition="close", price=3000, volume=1, direction=Direction.LONG, datetime=now()
    )
    engine.emit(s2, nothing)
    assert _triggers(trader)[-1].result == "rejected"
    assert "closable 0 < 1" in _triggers(trader)[-1].error
    assert not trader.oms.orders


async def test_while_the_venue_is_down_execution_pauses(trader: Trader) -> None:
    trader.auto_trading = True
    trader.gateway_status = GatewayStatus.DISCONNECTED
    try:
        trader.strategies.instances["s2"].buy(3000, 1, "test", key="x")  # type: ignore[union-attr]
    finally:
        trader.gateway_status = GatewayStatus.CONNECTED
    last = _triggers(trader)[-1]
    assert last.result == "not executed" and "execution paused" in last.error
    assert not trader.oms.orders


async def test_a_raising_strategy_is_stopped_and_the_others_carry_on(trader: Trader) -> None:
    engine = trader.strategies
    assert engine is not None
    s1, s2 = engine.instances["s1"], engine.instances["s2"]
    s1.boom = True
    before = s2.ticks
    for _ in range(3):
        trader.gateway.step("m2705.DCE")  # type: ignore[union-attr]
    assert not s1.running
    assert s1.error == "on_tick: RuntimeError: strategy bug"
    assert s2.running and s2.ticks == before + 3
    # the console sees it
    assert {s.name: s.running for s in engine.states()} == {"s1": False, "s2": True}
    # and it can be started again once fixed
    s1.boom = False
    assert engine.start("s1").ok and s1.running and s1.error == ""


async def test_kill_switch_across_real_processes(core_env: CoreEnv, strategy_dir: Path) -> None:
    accounts = _account_with("K1", "m2705.DCE", _strategy_yaml("k1s", "m2705.DCE"), rate=5) + _account_with(
        "K2", "i2705.DCE", _strategy_yaml("k2s", "i2705.DCE"), rate=5
    )
    config = core_env.write_config(accounts, extra=f"strategy_path: {strategy_dir}")
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    await mgr.start()
    try:
        await wait_until(lambda: all_connected(mgr))
        await wait_until(
            lambda: all(any(s.running for s in mgr.state(a).strategies.values()) for a in ("K1", "K2"))
        )
        for aid, vt in (("K1", "m2705.DCE"), ("K2", "i2705.DCE")):
            tick = mgr.state(aid).ticks[vt]
            contract = mgr.state(aid).contracts[vt]
            for i in range(2):
                price = contract.round_price(tick.limit_down + i * contract.pricetick)
                req = OrderRequest(vt_symbol=vt, direction=Direction.LONG, price=price, volume=1)
                assert (await mgr.send_order(aid, req)).ok
        await wait_until(lambda: all(len(mgr.state(a).working_orders) == 2 for a in ("K1", "K2")))

        replies = await mgr.kill_switch(None)
        assert all(r.ok for r in replies.values()), replies
        for aid in ("K1", "K2"):
            state = mgr.state(aid)
            await wait_until(
                lambda state=state: not state.working_orders, what=f"{aid} has no working orders"
            )
            await wait_until(lambda state=state: not any(s.running for s in state.strategies.values()))
            await wait_until(
                lambda state=state: state.info is not None and state.info.trading_state is TradingState.HALTED
            )
            assert state.status is TraderStatus.CONNECTED
        refused = await mgr.send_order(
            "K1", OrderRequest(vt_symbol="m2705.DCE", direction=Direction.LONG, price=3000, volume=1)
        )
        assert not refused.ok and "HALTED" in refused.error
    finally:
        await mgr.stop()


async def test_an_instance_position_survives_a_trader_restart(core_env: CoreEnv, strategy_dir: Path) -> None:
    config = core_env.write_config(
        _account_with("SE2", "m2705.DCE", _strategy_yaml("r1", "m2705.DCE")),
        extra=f"strategy_path: {strategy_dir}",
    )

    async def run_trader() -> tuple[Trader, asyncio.Task[None]]:
        t = Trader(config.accounts[0], config, data_dir=core_env.data_dir, socket_path=None)
        task = asyncio.create_task(t.run())
        await wait_until(lambda: t.strategies is not None and "m2705.DCE" in t.oms.ticks)
        return t, task

    first, task = await run_trader()
    first.auto_trading = True
    r1 = first.strategies.instances["r1"]  # type: ignore[union-attr]
    r1.buy(first.oms.ticks["m2705.DCE"].ask_price_1, 2, "test: buy 2", key="b")
    await wait_until(lambda: r1.pos == 2)
    first.stop()
    await task

    second, task = await run_trader()
    try:
        assert second.strategies.instances["r1"].pos == 2  # type: ignore[union-attr]
    finally:
        second.stop()
        await task


async def test_the_demo_trades_by_itself_within_a_minute(core_env: CoreEnv) -> None:
    from config import demo_config_path, load_config_file

    config = load_config_file(demo_config_path())
    mgr = TradingManager(
        config, config_path=demo_config_path(), data_dir=core_env.data_dir, sock_dir=core_env.sock_dir
    )
    await mgr.start()
    try:
        dq1, dq2, dq3 = (mgr.state(a) for a in ("DQ1", "DQ2", "DQ3"))
        await wait_until(
            lambda: any(t.reference != "manual" for t in dq1.trades), timeout=60, what="DQ1 fills"
        )
        await wait_until(lambda: dq2.triggers, timeout=60, what="DQ2 triggers")
        assert all(t.result == "not executed" for t in dq2.triggers if t.action != "hold")
        assert not dq2.trades  # auto-trading off: nothing sent
        await wait_until(lambda: dq3.triggers, timeout=60, what="DQ3 grid triggers")
        assert any(t.instance == "sr_grid" for t in dq3.triggers)
        assert {s.name for s in dq1.strategies.values() if s.running} == {
            "au_ma_rsi",
            "ag_grid",
            "au_guard",
            "cu_double_ma",
        }
    finally:
        await mgr.stop()


async def test_a_signal_from_inside_a_fill_runs_after_it_and_obeys_the_rate_limit(trader: Trader) -> None:
    trader.auto_trading = True
    trader.risk.config.max_orders_per_second = 1
    trader.risk.clock = lambda: 1000.0  # both orders in the same second, however slow the machine
    s2 = trader.strategies.instances["s2"]  # type: ignore[union-attr]
    s2.buy_on_fill = True
    s2.buy(trader.oms.ticks["m2705.DCE"].ask_price_1, 1, "first", key="first")
    # the fill's signal was not executed inside the fill: it waits for the event to end
    assert [t.condition for t in _triggers(trader)] == ["first"]
    await wait_until(lambda: len(_triggers(trader)) == 2, what="the deferred signal")
    second = _triggers(trader)[1]
    assert second.condition == "again after a fill"
    assert second.result == "rejected" and "order_rate: 2 orders in 1 s > limit 1" in second.error


async def test_max_position_counts_working_orders(trader: Trader) -> None:
    trader.auto_trading = True
    s1 = trader.strategies.instances["s1"]  # type: ignore[union-attr]
    tick = trader.oms.ticks["m2705.DCE"]
    resting = OrderRequest(
        vt_symbol="m2705.DCE", direction=Direction.LONG, price=tick.limit_down, volume=1, reference="s1"
    )
    assert trader.place_order(resting).ok  # the instance's order, resting (not yet in its position)
    assert s1.pos == 0
    s1.buy(tick.ask_price_1, 1, "more", key="b")
    last = _triggers(trader)[-1]
    assert last.result == "rejected"
    assert last.error.startswith("max_position: instance position +0 (+1 working) -> +2 > limit 1")


async def test_a_halt_outlives_a_restart_and_strategies_stay_stopped(
    core_env: CoreEnv, strategy_dir: Path
) -> None:
    config = core_env.write_config(
        _account_with("SE3", "m2705.DCE", _strategy_yaml("h1", "m2705.DCE")),
        extra=f"strategy_path: {strategy_dir}",
    )

    async def run_trader() -> tuple[Trader, asyncio.Task[None]]:
        t = Trader(config.accounts[0], config, data_dir=core_env.data_dir, socket_path=None)
        task = asyncio.create_task(t.run())
        await wait_until(lambda: t.strategies is not None and "h1" in t.strategies.instances)
        return t, task

    first, task = await run_trader()
    assert first.strategies.instances["h1"].running  # type: ignore[union-attr]
    assert first._on_kill_req(None).ok
    first.stop()
    await task

    second, task = await run_trader()
    try:
        assert second.trading_state is TradingState.HALTED
        assert not second.strategies.instances["h1"].running  # type: ignore[union-attr]
    finally:
        second.stop()
        await task


async def test_strategy_started_is_info_not_a_warning(
    trader: Trader, caplog: pytest.LogCaptureFixture
) -> None:
    engine = trader.strategies
    assert engine is not None
    engine.stop("s1")
    with caplog.at_level(logging.DEBUG, logger=engine.logger.name):
        assert engine.start("s1").ok
    (record,) = [r for r in caplog.records if r.getMessage() == "strategy s1 started"]
    assert record.levelno == logging.INFO  # an operator's routine action, not something gone wrong
