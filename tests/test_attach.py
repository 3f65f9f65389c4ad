"""A console attached to a running daemon: RemoteConsoleClient over the control socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from textual.widgets import Static

from config import paths as cfg_paths
from core.client import DAEMON_LOST, RemoteConsoleClient
from core.control import ControlServer
from core.manager import TradingManager
from core.models import (
    OUTCOME_UNKNOWN,
    Direction,
    Offset,
    Order,
    OrderRequest,
    Status,
    TraderInfo,
    TraderStatus,
    TradingState,
)
from core.protocol import ConsoleState, Message, TraderStatusUpdate
from tests.conftest import CoreEnv, sim_account, wait_until
from tui.app import QTraderApp

ACCOUNTS = sim_account("A1", "m2705.DCE, rb2605.SHFE", seed=4) + sim_account("A2", "au2606.SHFE", seed=5)


@dataclass
class Daemon:
    manager: TradingManager
    control: ControlServer
    client: RemoteConsoleClient


@pytest.fixture
async def daemon(core_env: CoreEnv) -> AsyncIterator[Daemon]:
    config = core_env.write_config(ACCOUNTS)
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    path = cfg_paths.control_socket_path(mgr.sock_dir)
    await mgr.start()
    control = ControlServer(mgr, path)
    await control.start()
    client = RemoteConsoleClient(path, [(a.account_id, a.gateway) for a in config.accounts])
    client.RETRY_SECONDS = 0.1
    try:
        await client.connect()
        yield Daemon(mgr, control, client)
    finally:
        await client.close()
        await control.stop()
        await mgr.stop()


def _mirrors(d: Daemon, account_id: str) -> bool:
    ours, theirs = d.client.state(account_id), d.manager.state(account_id)
    return (
        ours.status is theirs.status is TraderStatus.CONNECTED
        and ours.info is not None
        and set(ours.ticks) == set(theirs.ticks) != set()
    )


def _buy(d: Daemon, account_id: str, vt_symbol: str, *, marketable: bool) -> OrderRequest:
    tick = d.client.state(account_id).ticks[vt_symbol]
    price = tick.limit_up if marketable else tick.limit_down
    return OrderRequest(
        vt_symbol=vt_symbol, direction=Direction.LONG, offset=Offset.OPEN, price=price, volume=1
    )


async def test_the_attached_console_sees_and_trades_what_the_daemon_runs(daemon: Daemon) -> None:
    d, client = daemon, daemon.client
    assert client.attached and client.account_ids == ["A1", "A2"]
    await wait_until(lambda: _mirrors(d, "A1") and _mirrors(d, "A2"), what="both accounts mirrored")
    assert client.state("A1").pid == d.manager.state("A1").pid

    filled = await client.send_order("A1", _buy(d, "A1", "m2705.DCE", marketable=True))
    assert filled.ok, filled.error
    resting = await client.send_order("A1", _buy(d, "A1", "rb2605.SHFE", marketable=False))
    assert resting.ok, resting.error
    state = client.state("A1")
    await wait_until(lambda: ("m2705.DCE", Direction.LONG) in state.positions, what="position streamed")
    await wait_until(lambda: resting.result["order_id"] in state.orders)
    assert state.orders[filled.result["order_id"]].status is Status.ALLTRADED

    refused = await client.send_order(
        "A1", OrderRequest(vt_symbol="m2705.DCE", direction=Direction.LONG, price=1.0, volume=1)
    )
    assert not refused.ok and "price_limit" in refused.error  # the trader's own words, through two hops

    cancelled = await client.cancel_order("A1", resting.result["order_id"])
    assert cancelled.ok, cancelled.error
    await wait_until(lambda: state.orders[resting.result["order_id"]].status is Status.CANCELLED)

    history = await client.history("A1", "orders")
    assert history.ok and all(isinstance(o, Order) for o in history.result)
    assert {filled.result["order_id"], resting.result["order_id"]} <= {o.order_id for o in history.result}
    info = await client.status("A2")
    assert info.ok and isinstance(info.result, TraderInfo) and info.result.account_id == "A2"

    closed = await client.close_position("A1", "m2705.DCE", Direction.LONG)
    assert closed.ok, closed.error
    await wait_until(lambda: ("m2705.DCE", Direction.LONG) not in state.positions, what="closed")

    replies = await client.kill_switch("A2")
    assert list(replies) == ["A2"] and replies["A2"].ok
    await wait_until(lambda: client.state("A2").info.trading_state is TradingState.HALTED)
    assert client.state("A1").info.trading_state is TradingState.ACTIVE
    resumed = await client.set_trading_state("A2", TradingState.ACTIVE)
    assert resumed.ok

    unknown = await client.send_order("NOPE", _buy(d, "A1", "m2705.DCE", marketable=True))
    assert not unknown.ok and "no account 'NOPE'" in unknown.error


async def test_the_attached_console_arms_cancels_conditional_orders_and_reverses(daemon: Daemon) -> None:
    from core.models import ConditionalRequest, CondState, TriggerOp
    from core.protocol import ConditionalCommand

    d, client = daemon, daemon.client
    await wait_until(lambda: _mirrors(d, "A1"), what="A1 mirrored")
    state = client.state("A1")
    last = state.ticks["m2705.DCE"].last_price
    req = ConditionalRequest(
        vt_symbol="m2705.DCE", op=TriggerOp.LE, trigger_price=last - 500, direction=Direction.LONG, volume=1
    )
    armed = await client.create_conditional("A1", req)
    assert armed.ok, armed.error
    cond_id = armed.result["cond_id"]
    await wait_until(lambda: cond_id in state.conditionals, what="the conditional order streamed")
    cancelled = await client.conditional_command("A1", ConditionalCommand(action="cancel", cond_id=cond_id))
    assert cancelled.ok, cancelled.error
    await wait_until(lambda: state.conditionals[cond_id].state is CondState.CANCELLED)
    rearm = await client.conditional_command("A1", ConditionalCommand(action="rearm"))
    assert rearm.ok and rearm.result["rearmed"] == 0

    assert (await client.send_order("A1", _buy(d, "A1", "m2705.DCE", marketable=True))).ok
    await wait_until(lambda: ("m2705.DCE", Direction.LONG) in state.positions)
    reversed_ = await client.reverse_position("A1", "m2705.DCE", Direction.LONG)
    assert reversed_.ok, reversed_.error
    await wait_until(lambda: ("m2705.DCE", Direction.SHORT) in state.positions, what="reversed")
    assert ("m2705.DCE", Direction.LONG) not in state.positions


async def test_a_trader_stopped_from_the_console_stops_in_the_daemon(daemon: Daemon) -> None:
    d, client = daemon, daemon.client
    await wait_until(lambda: _mirrors(d, "A2"))
    assert (await client.stop_trader("A2")).ok
    await wait_until(lambda: client.state("A2").status is TraderStatus.STOPPED, what="stopped, as streamed")
    assert d.manager.state("A2").status is TraderStatus.STOPPED
    assert (await client.start_trader("A2")).ok
    await wait_until(lambda: _mirrors(d, "A2"), what="started again")


async def test_the_daemon_going_away_is_shown_and_the_console_attaches_again(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, client = daemon, daemon.client
    await wait_until(lambda: _mirrors(d, "A1"))
    never = asyncio.Event()

    async def hangs(account_id: str, order_id: str) -> None:
        await never.wait()

    monkeypatch.setattr(d.manager, "cancel_order", hangs)
    in_flight = asyncio.create_task(client.cancel_order("A1", "42"))
    await wait_until(lambda: client._pending, what="the request on its way")
    # the daemon stops listening and hangs up on its consoles (promptly: an attached
    # console never hangs up by itself)
    await asyncio.wait_for(d.control.stop(), 5)
    reply = await in_flight
    assert not reply.ok and reply.error == f"{DAEMON_LOST}: {OUTCOME_UNKNOWN}"  # never "rejected"
    await wait_until(lambda: client.state("A1").status is TraderStatus.DISCONNECTED)
    refused = await client.send_order("A1", _buy(d, "A1", "m2705.DCE", marketable=True))
    assert not refused.ok and "nothing was sent" in refused.error
    await d.control.start()
    await wait_until(lambda: client.attached and _mirrors(d, "A1") and _mirrors(d, "A2"), what="re-attached")


async def test_the_console_app_runs_on_an_attached_client(daemon: Daemon) -> None:
    d = daemon
    await wait_until(lambda: _mirrors(d, "A1"))
    app = QTraderApp(d.client, stop_core=d.client.close, stop_message="detaching...")
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        bar = app.screen.query_one("#account-bar", Static).content.plain  # type: ignore[union-attr]
        assert "A1" in bar and "connected" in bar
        await pilot.press("q")
        await wait_until(lambda: not d.client._task or d.client._task.done(), what="detached")
    assert d.manager.state("A1").status is TraderStatus.CONNECTED  # the daemon's traders run on


async def test_an_attached_console_lists_the_daemons_accounts_not_its_own_configs(
    daemon: Daemon, core_env: CoreEnv
) -> None:
    """``--attach`` builds its account list from the daemon (its config may differ)."""
    path = cfg_paths.control_socket_path(daemon.manager.sock_dir)
    accounts = await RemoteConsoleClient.discover(path)
    assert accounts == [("A1", "sim"), ("A2", "sim")]
    client = RemoteConsoleClient(path, accounts)
    await client.connect()
    try:
        await wait_until(lambda: client.state("A2").status is TraderStatus.CONNECTED, what="A2 mirrored")
        assert client.account_ids == ["A1", "A2"]
    finally:
        await client.close()
    with pytest.raises(ConnectionError, match="no qtrader core"):
        await RemoteConsoleClient.discover(core_env.root / "nothing.sock")


async def test_a_console_re_attaching_shows_nothing_of_the_previous_run(daemon: Daemon) -> None:
    """After a daemon restart a trader that has not registered yet has no snapshot: the
    console must not keep showing the previous run's orders and positions."""
    d, client = daemon, daemon.client
    await wait_until(lambda: _mirrors(d, "A1"))
    reply = await client.send_order("A1", _buy(d, "A1", "m2705.DCE", marketable=True))
    assert reply.ok, reply.error
    state = client.state("A1")
    await wait_until(lambda: state.positions and state.orders)
    view = ConsoleState(
        account_id="A1",
        gateway="sim",
        trader=TraderStatusUpdate(status=TraderStatus.CONNECTING, message="starting", pid=4242, restarts=1),
    )
    seen: list[str] = []
    unsubscribe = client.subscribe(lambda change: seen.append(change.kind))
    client._on_message(Message.new(type="console_state", account_id="A1", data=view))
    unsubscribe()
    assert not state.positions and not state.orders and not state.trades and state.info is None
    assert (state.status, state.status_message, state.pid, state.restarts) == (
        TraderStatus.CONNECTING,
        "starting",
        4242,
        1,
    )
    assert {"position", "order", "trade", "status"} <= set(seen)  # the screens are told to redraw


async def test_a_console_that_falls_behind_is_cut_off_without_a_trace(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.control

    d, client = daemon, daemon.client
    await wait_until(lambda: _mirrors(d, "A1"))
    assert len(d.manager.aggregator._taps) == 1
    monkeypatch.setattr(core.control, "MAX_CONSOLE_BACKLOG", -1)  # every console is "behind"
    await wait_until(lambda: client.state("A1").status is TraderStatus.DISCONNECTED, what="cut off")
    await wait_until(lambda: not d.manager.aggregator._taps, what="its tap removed with it")
    monkeypatch.setattr(core.control, "MAX_CONSOLE_BACKLOG", 16 * 1024 * 1024)
    await wait_until(lambda: client.attached and _mirrors(d, "A1"), what="attached again, afresh")
