"""Conditional orders and reverse end to end: a manager, a real trader process on the sim venue
(its market moving on its own), requests over the socket, the account's database read back.

The fire-once test kills the trader with SIGKILL exactly between the commit of TRIGGERED and
the send of its order (``core.conditional.KILL_BEFORE_SEND_ENV``, once): the restarted trader
shows it TRIGGERED, "not confirmed sent", and never sends it."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator

import pytest

from core.conditional import KILL_BEFORE_SEND_ENV, NONE_AT_VENUE
from core.manager import TradingManager
from core.models import (
    ConditionalRequest,
    CondKind,
    CondState,
    Direction,
    Offset,
    OrderRequest,
    TraderStatus,
    TriggerOp,
)
from core.protocol import ConditionalCommand
from storage import AccountDatabase, database_path
from tests.conftest import CoreEnv, sim_account, wait_until

SYMBOL = "rb2705.SHFE"


async def _manager(env: CoreEnv, extra: str = "") -> TradingManager:
    account = sim_account("CP1", SYMBOL, rate=25)
    env.write_config(account + extra)
    from config import load_config_file

    mgr = TradingManager(
        load_config_file(env.config_path), config_path=env.config_path, data_dir=env.data_dir
    )
    await mgr.start()
    state = mgr.state("CP1")
    await wait_until(lambda: state.status is TraderStatus.CONNECTED and SYMBOL in state.ticks, what="CP1 up")
    return mgr


@pytest.fixture
async def manager(core_env: CoreEnv) -> AsyncIterator[TradingManager]:
    mgr = await _manager(core_env)
    try:
        yield mgr
    finally:
        await mgr.stop()


def _near(mgr: TradingManager, op: TriggerOp, ticks: int) -> ConditionalRequest:
    state = mgr.state("CP1")
    last = state.ticks[SYMBOL].last_price
    step = state.contracts[SYMBOL].pricetick
    return ConditionalRequest(
        vt_symbol=SYMBOL,
        op=op,
        trigger_price=last + ticks * step,
        direction=Direction.LONG,
        volume=1,
    )


async def test_fired_once_never_twice_across_a_sigkill_between_trigger_and_send(
    core_env: CoreEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = core_env.root / "killed"
    monkeypatch.setenv(KILL_BEFORE_SEND_ENV, str(marker))
    mgr = await _manager(core_env)
    try:
        state = mgr.state("CP1")
        up = await mgr.create_conditional("CP1", _near(mgr, TriggerOp.GE, 1))
        down = await mgr.create_conditional("CP1", _near(mgr, TriggerOp.LE, -1))
        far = await mgr.create_conditional("CP1", _near(mgr, TriggerOp.LE, -2000))
        assert up.ok and down.ok and far.ok, (up.error, down.error, far.error)
        ids = {up.result["cond_id"], down.result["cond_id"]}
        old_pid = mgr.proxies["CP1"].pid

        await wait_until(lambda: marker.exists(), what="one fired and its trader was killed before the send")
        killed = marker.read_text()
        assert killed in ids
        (other,) = ids - {killed}
        await wait_until(
            lambda: state.status is TraderStatus.CONNECTED and mgr.proxies["CP1"].pid not in (None, old_pid),
            what="CP1 restarted",
        )
        # the restarted trader says what became of it, and the far one is still armed
        await wait_until(
            lambda: killed in state.conditionals and state.conditionals[killed].message == NONE_AT_VENUE
        )
        cond = state.conditionals[killed]
        assert cond.state is CondState.TRIGGERED and cond.order_id == ""
        assert state.conditionals[far.result["cond_id"]].state is CondState.PENDING

        # the other one fires in the restarted trader and sends exactly one order
        await wait_until(lambda: state.conditionals[other].order_id, what="the other one fired")
        sent = state.conditionals[other].order_id
        await wait_until(lambda: sent in state.orders)
        ticks = state.versions["tick"]
        await wait_until(lambda: state.versions["tick"] > ticks + 20, what="more ticks")
    finally:
        await mgr.stop()
    with AccountDatabase(database_path(core_env.data_dir, "CP1"), readonly=True) as db:
        orders = db.load_orders()
        stored = {c.cond_id: c for c in db.load_conditionals()}
    assert [o.order_id for o in orders] == [sent], "the killed one never sent; the other sent once"
    assert stored[killed].state is CondState.TRIGGERED and stored[killed].order_id == ""
    assert stored[other].state is CondState.TRIGGERED and stored[other].order_id == sent


async def test_refused_by_the_risk_rules_when_it_fires(core_env: CoreEnv) -> None:
    mgr = await _manager(core_env, extra="    risk: {max_order_volume: 1}\n")
    try:
        state = mgr.state("CP1")
        up, down = _near(mgr, TriggerOp.GE, 1), _near(mgr, TriggerOp.LE, -1)
        up.volume = down.volume = 3
        replies = [await mgr.create_conditional("CP1", r) for r in (up, down)]
        assert all(r.ok for r in replies), [r.error for r in replies]
        ids = [r.result["cond_id"] for r in replies]
        await wait_until(lambda: any(state.conditionals[c].order_id for c in ids), what="one fired")
        (fired,) = [state.conditionals[c] for c in ids if state.conditionals[c].order_id]
        assert fired.state is CondState.TRIGGERED and fired.message.startswith("refused:")
        assert "max_order_volume" in fired.message or "volume" in fired.message, fired.message
        await wait_until(lambda: fired.order_id in state.orders)
        assert state.orders[fired.order_id].status.name == "REJECTED"
    finally:
        await mgr.stop()


async def test_the_console_sees_a_conditional_order_it_creates_and_cancels(manager: TradingManager) -> None:
    state = manager.state("CP1")
    reply = await manager.create_conditional("CP1", _near(manager, TriggerOp.LE, -2000))
    assert reply.ok, reply.error
    cond_id = reply.result["cond_id"]
    assert state.conditionals[cond_id].state is CondState.PENDING  # the change came with the reply
    cancelled = await manager.conditional_command("CP1", ConditionalCommand(action="cancel", cond_id=cond_id))
    assert cancelled.ok, cancelled.error
    assert state.conditionals[cond_id].state is CondState.CANCELLED


async def _long(mgr: TradingManager, lots: int, *, each: int | None = None) -> None:
    state = mgr.state("CP1")
    for _ in range(lots // (each or lots)):
        tick = state.ticks[SYMBOL]
        buy = OrderRequest(
            vt_symbol=SYMBOL, direction=Direction.LONG, price=tick.limit_up, volume=each or lots
        )
        reply = await mgr.send_order("CP1", buy)
        assert reply.ok, reply.error
    await wait_until(
        lambda: (p := state.positions.get((SYMBOL, Direction.LONG))) is not None and p.volume == lots,
        what=f"long {lots}",
    )


async def test_reverse_closes_then_opens_the_other_way(manager: TradingManager) -> None:
    state = manager.state("CP1")
    await _long(manager, 2)
    reply = await manager.reverse_position("CP1", SYMBOL, Direction.LONG)
    assert reply.ok, reply.error
    assert [leg["offset"] for leg in reply.result["close"]] == ["CLOSETODAY"]
    assert isinstance(reply.result["open"], dict) and reply.result["open"]["order_id"]
    await wait_until(
        lambda: (
            (SYMBOL, Direction.LONG) not in state.positions
            and (p := state.positions.get((SYMBOL, Direction.SHORT))) is not None
            and p.volume == 2
        ),
        what="short 2, long gone",
    )


async def test_reverse_whose_close_is_refused_sends_no_open(core_env: CoreEnv) -> None:
    mgr = await _manager(core_env, extra="    risk: {max_order_volume: 1, duplicate_window: 0}\n")
    try:
        state = mgr.state("CP1")
        await _long(mgr, 2, each=1)
        orders = set(state.orders)
        reply = await mgr.reverse_position("CP1", SYMBOL, Direction.LONG)
        assert not reply.ok
        assert reply.error.startswith("the open is NOT sent: close:"), reply.error
        new = [state.orders[o] for o in set(state.orders) - orders]
        assert all(o.offset.is_close and o.status.name == "REJECTED" for o in new), new
        assert state.positions[(SYMBOL, Direction.LONG)].volume == 2
        assert (SYMBOL, Direction.SHORT) not in state.positions
    finally:
        await mgr.stop()


async def test_an_armed_conditional_order_survives_a_restart_of_the_whole_core(core_env: CoreEnv) -> None:
    mgr = await _manager(core_env)
    try:
        armed = await mgr.create_conditional("CP1", _near(mgr, TriggerOp.LE, -2000))
        assert armed.ok, armed.error
        cond_id = armed.result["cond_id"]
    finally:
        await mgr.stop()  # the daemon goes, and its traders with it
    mgr = await _manager(core_env)
    try:
        state = mgr.state("CP1")
        await wait_until(lambda: cond_id in state.conditionals, what="the conditional order back")
        assert state.conditionals[cond_id].state is CondState.PENDING
        assert state.conditionals[cond_id].words().startswith("last <= ")
    finally:
        await mgr.stop()


async def test_a_stop_loss_on_a_position_survives_a_sigkill_of_its_trader(manager: TradingManager) -> None:
    """The issue's demo: a stop on a position, its worker SIGKILLed; the restarted trader
    still holds the position and the stop, PENDING (the sweep of stops whose position is gone,
    run once the venue's push is applied, leaves it)."""
    state = manager.state("CP1")
    await _long(manager, 1)
    step = state.contracts[SYMBOL].pricetick
    stop = ConditionalRequest(
        vt_symbol=SYMBOL,
        kind=CondKind.STOP_LOSS,
        op=TriggerOp.LE,
        trigger_price=state.ticks[SYMBOL].last_price - 2000 * step,
        direction=Direction.SHORT,
        offset=Offset.CLOSE,
        volume=1,
    )
    armed = await manager.create_conditional("CP1", stop)
    assert armed.ok, armed.error
    cond_id = armed.result["cond_id"]
    old_pid = manager.proxies["CP1"].pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    await wait_until(
        lambda: state.status is TraderStatus.CONNECTED and manager.proxies["CP1"].pid not in (None, old_pid),
        what="CP1 restarted",
    )
    ticks = state.versions["tick"]
    await wait_until(lambda: state.versions["tick"] > ticks + 5, what="ticks after the restart")
    assert state.positions[(SYMBOL, Direction.LONG)].volume == 1
    assert state.conditionals[cond_id].state is CondState.PENDING, state.conditionals[cond_id].message
