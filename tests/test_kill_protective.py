"""The kill switch that keeps the protective strategies (stop guards) running.

A real trader in this process (sim venue, real engine, real risk rules, real fills): with
``keep_protective`` the account is HALTED for everyone but its running protective
strategies, whose closing orders pass as if the account were REDUCING; without it, the
kill switch stops everything, as it always did.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.manager import TradingManager
from core.models import Direction, GatewayStatus, Offset, OrderRequest, TradingState
from core.protocol import KillRequest, Message, Reply, StrategyCommand
from core.trader import Trader
from tests.conftest import CoreEnv, all_connected, sim_account, wait_until
from tests.test_trader_unit import FakeLink

SYMBOL = "m2705.DCE"

SCRIPTED = textwrap.dedent(
    """
    from strategies.base import Strategy


    class Scripted(Strategy):
        def bars_needed(self) -> int:
            return 0
    """
)

STRATEGIES = """
    strategies:
      - name: s1
        class: Scripted
        symbol: m2705.DCE
      - name: g1
        class: StopGuardStrategy
        symbol: m2705.DCE
        params: {stop_loss_pct: 50.0, first_take_profit_pct: 500.0}
"""


def _config(env: CoreEnv, strategy_dir: Path, *, mode: str = "process") -> None:
    account = sim_account("KP1", SYMBOL, rate=0, mode=mode).replace(
        "    gateway: sim\n", "    gateway: sim\n    auto_trading: true\n"
    )
    env.write_config(account + STRATEGIES, extra=f"strategy_path: {strategy_dir}")


@pytest.fixture
def strategy_dir(core_env: CoreEnv) -> Path:
    path = core_env.root / "user_strategies"
    path.mkdir()
    (path / "scripted.py").write_text(SCRIPTED)
    return path


async def _run(env: CoreEnv) -> tuple[Trader, asyncio.Task[None]]:
    from config import load_config_file

    config = load_config_file(env.config_path)
    t = Trader(config.accounts[0], config, data_dir=env.data_dir, socket_path=None)
    task = asyncio.create_task(t.run())
    await wait_until(lambda: t.gateway_status is GatewayStatus.CONNECTED and SYMBOL in t.oms.ticks)
    await wait_until(lambda: t.strategies is not None and {"s1", "g1"} <= set(t.strategies.instances))
    return t, task


@pytest.fixture
async def trader(core_env: CoreEnv, strategy_dir: Path) -> AsyncIterator[Trader]:
    _config(core_env, strategy_dir)
    t, task = await _run(core_env)
    try:
        yield t
    finally:
        t.stop()
        await task


def _request(trader: Trader, msg_type: str, data: object) -> Reply:
    """One request as the manager sends it (the manual road), its one reply."""
    link = FakeLink()
    trader.link = link  # type: ignore[assignment]
    trader._dispatch(link, Message.new(type=msg_type, req_id=7, data=data))  # type: ignore[arg-type]
    (reply,) = [d for t, d, r in link.sent if t == "reply" and r == 7]
    return reply


def _order(trader: Trader, direction: Direction, offset: Offset, *, marketable: bool) -> OrderRequest:
    tick = trader.oms.ticks[SYMBOL]
    if direction is Direction.LONG:
        price = tick.limit_up if marketable else tick.limit_down
    else:
        price = tick.limit_down if marketable else tick.limit_up
    return OrderRequest(vt_symbol=SYMBOL, direction=direction, offset=offset, price=price, volume=1)


async def _position_with_working_orders(trader: Trader) -> str:
    """A long of 2 lots (filled), a manual resting buy and s1's resting buy; returns the manual one's id."""
    buy = _order(trader, Direction.LONG, Offset.OPEN, marketable=True)
    buy.volume = 2
    assert _request(trader, "order_req", buy).ok
    await wait_until(lambda: (p := trader.oms.position(SYMBOL, Direction.LONG)) is not None and p.volume == 2)
    resting = _request(trader, "order_req", _order(trader, Direction.LONG, Offset.OPEN, marketable=False))
    assert resting.ok
    s1_order = _order(trader, Direction.LONG, Offset.OPEN, marketable=False)
    s1_order.reference = "s1"
    s1_order.price += trader.oms.contracts[SYMBOL].pricetick  # not a duplicate of the manual one
    assert trader.place_order(s1_order).ok
    assert len(trader.oms.active_orders) == 2
    return resting.result["order_id"]


def _guard_stop_loss(trader: Trader) -> None:
    """The guard sees its stop-loss hit now."""
    guard = trader.strategies.instances["g1"]  # type: ignore[union-attr]
    position = trader.oms.position(SYMBOL, Direction.LONG)
    assert position is not None
    guard.stop_loss_pct = 0.01
    guard.guard(Direction.LONG, position.price * 0.9)


async def test_kill_keeping_protective_strategies_lets_only_the_guard_close(trader: Trader) -> None:
    engine = trader.strategies
    assert engine is not None and engine.instances["s1"].running and engine.instances["g1"].running
    manual_id = await _position_with_working_orders(trader)

    killed = _request(trader, "kill_req", KillRequest(keep_protective=True))
    assert killed.ok, killed.error
    assert killed.result["strategies_stopped"] == 1 and killed.result["protective_running"] == 1
    assert killed.result["cancel_sent"] == 2
    assert trader.trading_state is TradingState.HALTED and trader.protective_kept
    assert trader.info().protective_kept
    assert engine.instances["g1"].running and not engine.instances["s1"].running
    await wait_until(lambda: not trader.oms.active_orders, what="working orders cancelled")
    assert not trader.oms.orders[manual_id].is_active

    # a manual open, and a manual close too: HALTED means the operator's orders are refused
    opened = _request(trader, "order_req", _order(trader, Direction.LONG, Offset.OPEN, marketable=True))
    assert not opened.ok and "HALTED" in opened.error
    closed = _request(trader, "order_req", _order(trader, Direction.SHORT, Offset.CLOSE, marketable=True))
    assert not closed.ok and "HALTED" in closed.error
    # ... also when it claims to be the guard's: only the engine's own orders pass
    disguised = _order(trader, Direction.SHORT, Offset.CLOSE, marketable=True)
    disguised.reference = "g1"
    refused = _request(trader, "order_req", disguised)
    assert not refused.ok and "HALTED" in refused.error

    _guard_stop_loss(trader)
    trigger = trader.db.load_triggers()[-1]  # type: ignore[union-attr]
    assert trigger.instance == "g1" and trigger.result == "success", trigger.error
    await wait_until(
        lambda: (
            trader.oms.position(SYMBOL, Direction.LONG) is None
            or trader.oms.position(SYMBOL, Direction.LONG).volume == 0
        ),
        what="the guard closed the long",
    )
    assert trader.trading_state is TradingState.HALTED  # still, for everything else

    # a stopped strategy started again by hand is no protective one: its signals stay refused
    assert _request(trader, "strategy_req", StrategyCommand(action="start", name="s1")).ok
    engine.instances["s1"].buy(trader.oms.ticks[SYMBOL].ask_price_1, 1, "test: buy", key="b")
    trigger = trader.db.load_triggers()[-1]  # type: ignore[union-attr]
    assert trigger.instance == "s1" and trigger.result == "not executed" and trigger.error == "account HALTED"


async def test_a_guard_may_only_reduce_through_the_halt(trader: Trader) -> None:
    await _position_with_working_orders(trader)
    assert _request(trader, "kill_req", KillRequest(keep_protective=True)).ok
    guard = trader.strategies.instances["g1"]  # type: ignore[union-attr]
    guard.buy(trader.oms.ticks[SYMBOL].ask_price_1, 1, "test: a guard that opens", key="o")
    trigger = trader.db.load_triggers()[-1]  # type: ignore[union-attr]
    assert trigger.result == "not executed" and trigger.error == "account HALTED"
    # a close larger than the position is refused by REDUCING's rule, in its words
    position = trader.oms.position(SYMBOL, Direction.LONG)
    assert position is not None
    too_many = OrderRequest(
        vt_symbol=SYMBOL,
        direction=Direction.SHORT,
        offset=Offset.CLOSE,
        price=trader.oms.ticks[SYMBOL].bid_price_1,
        volume=position.volume + 1,
        reference="g1",
    )
    reply = trader.place_order(too_many)
    assert not reply.ok and "REDUCING" in reply.error


async def test_the_default_kill_stops_the_guard_too(trader: Trader) -> None:
    engine = trader.strategies
    assert engine is not None
    await _position_with_working_orders(trader)
    killed = _request(trader, "kill_req", KillRequest())
    assert killed.ok and killed.result["strategies_stopped"] == 2
    assert "protective_running" not in killed.result
    assert not any(inst.running for inst in engine.instances.values())
    assert not trader.protective_kept
    await wait_until(lambda: not trader.oms.active_orders, what="working orders cancelled")
    _guard_stop_loss(trader)  # a stopped guard emits nothing
    assert not [t for t in trader.db.load_triggers() if t.instance == "g1"]  # type: ignore[union-attr]
    position = trader.oms.position(SYMBOL, Direction.LONG)
    closing = OrderRequest(
        vt_symbol=SYMBOL, direction=Direction.SHORT, offset=Offset.CLOSE, price=1.0, volume=1, reference="g1"
    )
    assert position is not None and position.volume == 2
    reply = trader.place_order(closing)
    assert not reply.ok and "HALTED" in reply.error


async def test_the_guards_own_working_close_survives_the_kill_that_keeps_it(trader: Trader) -> None:
    await _position_with_working_orders(trader)
    resting_close = OrderRequest(
        vt_symbol=SYMBOL,
        direction=Direction.SHORT,
        offset=Offset.CLOSE,
        price=trader.oms.ticks[SYMBOL].limit_up,
        volume=1,
        reference="g1",
    )
    guard_order = trader.place_order(resting_close)
    assert guard_order.ok
    killed = _request(trader, "kill_req", KillRequest(keep_protective=True))
    assert killed.ok and killed.result["protective_orders_working"] == 1
    assert killed.result["still_working"] == 0
    await wait_until(lambda: len(trader.oms.active_orders) == 1, what="the others cancelled")
    assert guard_order.result["order_id"] in trader.oms.active_orders


async def test_any_change_of_state_ends_the_exemption(trader: Trader) -> None:
    assert _request(trader, "kill_req", KillRequest(keep_protective=True)).ok
    assert _request(trader, "strategy_req", StrategyCommand(action="auto_off")).ok
    assert trader.protective_kept  # the auto-trading switch leaves the state as it is
    from core.protocol import StateRequest

    assert _request(trader, "state_req", StateRequest(state=TradingState.REDUCING)).ok
    assert not trader.protective_kept
    assert _request(trader, "kill_req", KillRequest(keep_protective=True)).ok
    assert _request(trader, "kill_req", KillRequest()).ok  # a second kill, stopping everything
    assert not trader.protective_kept
    assert not trader.strategies.instances["g1"].running  # type: ignore[union-attr]


async def test_after_a_restart_the_kept_guard_runs_again_and_nothing_else(
    core_env: CoreEnv, strategy_dir: Path
) -> None:
    _config(core_env, strategy_dir)
    first, task = await _run(core_env)
    assert _request(first, "kill_req", KillRequest(keep_protective=True)).ok
    first.stop()
    await task
    second, task = await _run(core_env)
    try:
        await wait_until(lambda: second.strategies.instances["g1"].running)  # type: ignore[union-attr]
        assert second.trading_state is TradingState.HALTED and second.protective_kept
        assert not second.strategies.instances["s1"].running  # type: ignore[union-attr]
    finally:
        second.stop()
        await task


async def test_the_choice_travels_from_the_manager_to_a_trader_process(
    core_env: CoreEnv, strategy_dir: Path
) -> None:
    _config(core_env, strategy_dir)
    from config import load_config_file

    config = load_config_file(core_env.config_path)
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    await mgr.start()
    try:
        await wait_until(lambda: all_connected(mgr) or bool(mgr.state("KP1").info), what="KP1 up")
        state = mgr.state("KP1")
        await wait_until(lambda: {s.name for s in state.strategies.values() if s.running} == {"s1", "g1"})
        assert state.strategies["g1"].protective and not state.strategies["s1"].protective
        (reply,) = (await mgr.kill_switch("KP1", keep_protective=True)).values()
        assert reply.ok and reply.result["protective_running"] == 1
        await wait_until(lambda: {s.name for s in state.strategies.values() if s.running} == {"g1"})
        await wait_until(lambda: state.info is not None and state.info.protective_kept)
        assert state.info is not None and state.info.trading_state is TradingState.HALTED
        tick = state.ticks[SYMBOL]
        refused = await mgr.send_order(
            "KP1", OrderRequest(vt_symbol=SYMBOL, direction=Direction.LONG, price=tick.limit_up, volume=1)
        )
        assert not refused.ok and "HALTED" in refused.error
    finally:
        await mgr.stop()
