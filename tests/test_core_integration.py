"""The core with real trader processes on the sim exchange, under the manager."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct

import msgspec

from core.manager import TradingManager
from core.models import Direction, Offset, OrderRequest, OrderType, Status, TraderStatus, TradingState
from storage import AccountDatabase, database_path
from tests.conftest import CoreEnv, all_connected, pid_alive, sim_account, wait_until


def _marketable_buy(mgr: TradingManager, account_id: str, vt_symbol: str, volume: float = 1) -> OrderRequest:
    tick = mgr.state(account_id).ticks[vt_symbol]
    contract = mgr.state(account_id).contracts[vt_symbol]
    # a few ticks through the ask: fills against the book, never beyond the limit-up
    price = min(tick.ask_price_1 + 5 * contract.pricetick, tick.limit_up)
    return OrderRequest(
        vt_symbol=vt_symbol,
        direction=Direction.LONG,
        offset=Offset.OPEN,
        type=OrderType.LIMIT,
        price=contract.round_price(price),
        volume=volume,
    )


async def test_order_round_trip_to_a_persisted_fill(manager: TradingManager, core_env: CoreEnv) -> None:
    mgr = manager
    await wait_until(lambda: all_connected(mgr), what="three traders connected with quotes")
    assert sorted(mgr.proxies) == ["DQ1", "DQ2", "DQ3"]
    pids = {aid: mgr.proxies[aid].pid for aid in mgr.proxies}
    assert len(set(pids.values())) == 3 and os.getpid() not in pids.values()

    reply = await mgr.send_order("DQ1", _marketable_buy(mgr, "DQ1", "au2612.SHFE", 2))
    assert reply.ok, reply.error
    order_id = reply.result["order_id"]

    state = mgr.state("DQ1")
    await wait_until(lambda: state.orders.get(order_id) and state.orders[order_id].status is Status.ALLTRADED)
    await wait_until(lambda: ("au2612.SHFE", Direction.LONG) in state.positions, what="position")
    assert sum(t.volume for t in state.trades if t.order_id == order_id) == 2
    pos = state.positions[("au2612.SHFE", Direction.LONG)]
    assert pos.volume == 2
    await wait_until(lambda: state.account is not None and state.account.margin > 0, what="margin")

    # persisted: the account's own database has the order and its trades
    db = AccountDatabase(database_path(core_env.data_dir, "DQ1"), readonly=True)
    try:
        stored = db.load_order(order_id)
        assert stored is not None and stored.status is Status.ALLTRADED and stored.traded == 2
        assert sum(t.volume for t in db.load_trades() if t.order_id == order_id) == 2
    finally:
        db.close()
    # the other accounts were not touched
    assert not mgr.state("DQ2").positions and not mgr.state("DQ3").positions
    assert (core_env.data_dir / "trading_DQ2.db").exists()
    assert (core_env.data_dir / "trading_DQ3.db").exists()

    # history comes back typed through the manager
    hist = await mgr.history("DQ1", "orders")
    assert hist.ok and any(o.order_id == order_id for o in hist.result)


async def test_rejections_carry_readable_reasons_and_send_nothing(manager: TradingManager) -> None:
    mgr = manager
    await wait_until(lambda: all_connected(mgr))
    state = mgr.state("DQ1")
    good = _marketable_buy(mgr, "DQ1", "au2612.SHFE")

    off_grid = OrderRequest(**{**_asdict(good), "price": good.price + 0.01})
    reply = await mgr.send_order("DQ1", off_grid)
    assert not reply.ok and "tick_grid" in reply.error and "0.02" in reply.error

    zero = OrderRequest(**{**_asdict(good), "volume": 0})
    reply = await mgr.send_order("DQ1", zero)
    assert not reply.ok and "volume" in reply.error

    unknown = OrderRequest(**{**_asdict(good), "vt_symbol": "zz2612.SHFE"})
    reply = await mgr.send_order("DQ1", unknown)
    assert not reply.ok and "unknown contract" in reply.error

    close_nothing = OrderRequest(
        **{**_asdict(good), "direction": Direction.SHORT, "offset": Offset.CLOSETODAY}
    )
    reply = await mgr.send_order("DQ1", close_nothing)
    assert not reply.ok and "closable" in reply.error

    reply = await mgr.close_position("DQ1", "au2612.SHFE", Direction.LONG)
    assert not reply.ok and "no long au2612.SHFE position" in reply.error

    # every order refused by the rules is on record as REJECTED, none reached a fill (a request
    # out of bounds, the zero volume, is refused where it is decoded and leaves no record)
    await wait_until(lambda: sum(o.status is Status.REJECTED for o in state.orders.values()) >= 3)
    assert all(o.volume > 0 for o in state.orders.values())
    assert not state.trades
    assert not state.positions


async def test_halt_blocks_orders_and_cancel_all_leaves_nothing_working(manager: TradingManager) -> None:
    mgr = manager
    await wait_until(lambda: all_connected(mgr))
    state = mgr.state("DQ2")
    tick = state.ticks["m2705.DCE"]
    contract = state.contracts["m2705.DCE"]
    resting = OrderRequest(
        vt_symbol="m2705.DCE",
        direction=Direction.LONG,
        offset=Offset.OPEN,
        price=contract.round_price(tick.limit_down),
        volume=1,
    )
    ids = []
    for i in range(3):  # three different prices: identical orders would be refused as duplicates
        price = contract.round_price(tick.limit_down + i * contract.pricetick)
        reply = await mgr.send_order("DQ2", OrderRequest(**{**_asdict(resting), "price": price}))
        assert reply.ok, reply.error
        ids.append(reply.result["order_id"])
    await wait_until(lambda: len(state.working_orders) == 3)

    one = await mgr.cancel_order("DQ2", ids[0])
    assert one.ok
    await wait_until(lambda: state.orders[ids[0]].status is Status.CANCELLED)
    again = await mgr.cancel_order("DQ2", ids[0])
    assert not again.ok and "already CANCELLED" in again.error
    missing = await mgr.cancel_order("DQ2", "nope")
    assert not missing.ok and "unknown order nope" in missing.error

    assert (await mgr.set_trading_state("DQ2", TradingState.HALTED)).ok
    await wait_until(lambda: state.info is not None and state.info.trading_state is TradingState.HALTED)
    halted = await mgr.send_order("DQ2", resting)
    assert not halted.ok and "HALTED" in halted.error

    everything = await mgr.cancel_all("DQ2")  # cancels are allowed while halted
    assert everything.ok and everything.result["still_working"] == 0
    await wait_until(lambda: not state.working_orders)
    assert (await mgr.set_trading_state("DQ2", TradingState.ACTIVE)).ok
    again_price = contract.round_price(tick.limit_down + 5 * contract.pricetick)
    assert (await mgr.send_order("DQ2", OrderRequest(**{**_asdict(resting), "price": again_price}))).ok


async def test_close_position_through_the_manager(manager: TradingManager) -> None:
    mgr = manager
    await wait_until(lambda: all_connected(mgr))
    state = mgr.state("DQ1")
    reply = await mgr.send_order("DQ1", _marketable_buy(mgr, "DQ1", "rb2705.SHFE", 3))
    assert reply.ok, reply.error
    key = ("rb2705.SHFE", Direction.LONG)
    await wait_until(lambda: key in state.positions and state.positions[key].volume == 3)
    tick = state.ticks["rb2705.SHFE"]
    contract = state.contracts["rb2705.SHFE"]
    price = contract.round_price(max(tick.bid_price_1 - 5 * contract.pricetick, tick.limit_down))
    closed = await mgr.close_position("DQ1", "rb2705.SHFE", Direction.LONG, price=price)
    assert closed.ok, closed.error
    # today's position on SHFE closes with CLOSETODAY
    assert [leg["offset"] for leg in closed.result["orders"]] == ["CLOSETODAY"]
    await wait_until(lambda: key not in state.positions, what="position closed")


async def test_sigkilled_worker_comes_back_with_its_orders_while_others_stream(
    manager: TradingManager, core_env: CoreEnv
) -> None:
    mgr = manager
    await wait_until(lambda: all_connected(mgr))
    reply = await mgr.send_order("DQ3", _marketable_buy(mgr, "DQ3", "sc2701.INE"))
    assert reply.ok, reply.error
    order_id = reply.result["order_id"]
    state = mgr.state("DQ3")
    await wait_until(lambda: any(t.order_id == order_id for t in state.trades))
    trades_before = {t.trade_id for t in state.trades}
    old_pid = mgr.proxies["DQ3"].pid
    assert old_pid is not None

    versions = {a: mgr.state(a).versions["tick"] for a in ("DQ1", "DQ2")}
    os.kill(old_pid, signal.SIGKILL)
    await wait_until(lambda: state.restarts == 1, timeout=20, what="crash noticed")
    await wait_until(
        lambda: state.status is TraderStatus.CONNECTED and mgr.proxies["DQ3"].pid not in (None, old_pid),
        what="DQ3 restarted and connected",
    )
    assert state.restarts == 1
    assert not pid_alive(old_pid)
    # nothing lost: the order and trades came back in the new trader's snapshot
    assert state.orders[order_id].status is Status.ALLTRADED
    assert trades_before <= {t.trade_id for t in state.trades}
    await wait_until(lambda: ("sc2701.INE", Direction.LONG) in state.positions, what="position restored")
    # the other accounts kept streaming through the outage (which, forked from the zygote, may
    # be shorter than their tick interval: wait for their next ticks, not for the clock)
    await wait_until(
        lambda: all(mgr.state(aid).versions["tick"] > before for aid, before in versions.items()),
        what="the other accounts' next ticks",
    )
    for aid in versions:
        assert mgr.state(aid).status is TraderStatus.CONNECTED
        assert mgr.state(aid).restarts == 0


async def test_garbage_on_a_worker_socket_harms_nothing(manager: TradingManager) -> None:
    mgr = manager
    await wait_until(lambda: all_connected(mgr))
    pid = mgr.proxies["DQ1"].pid
    path = str(mgr.proxies["DQ1"].socket_path)

    def attack(payload: bytes) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(payload)
        s.close()

    attack(os.urandom(4096))  # random bytes: an absurd length header
    attack(struct.pack(">I", 10) + b"not json!!")  # a frame that is not JSON
    attack(struct.pack(">I", 2**31) + b"{")  # oversized
    attack(struct.pack(">I", 100) + b'{"type": "register"')  # truncated
    body = b'{"type": "register", "account_id": "DQ1", "data": {"account_id": "DQ2", "gateway": "sim", "pid": 1}}'
    attack(struct.pack(">I", len(body)) + body)  # valid frame, wrong account

    state = mgr.state("DQ1")
    version = state.versions["tick"]
    await wait_until(lambda: state.versions["tick"] > version + 5, what="DQ1 still streaming")
    assert mgr.proxies["DQ1"].pid == pid and state.restarts == 0
    assert state.status is TraderStatus.CONNECTED
    reply = await mgr.send_order("DQ1", _marketable_buy(mgr, "DQ1", "IF2612.CFFEX"))
    assert reply.ok, reply.error
    assert all(mgr.state(a).restarts == 0 for a in mgr.proxies)


async def test_hung_worker_is_killed_and_restarted(manager: TradingManager) -> None:
    mgr = manager
    await wait_until(lambda: all_connected(mgr))
    pid = mgr.proxies["DQ2"].pid
    assert pid is not None
    # short for this test only (the watchdog reads it each pass): elsewhere a loaded CI box
    # must never have a healthy trader killed for a slow heartbeat
    mgr.config.manager.heartbeat_timeout = 2.0
    os.kill(pid, signal.SIGSTOP)  # alive but silent: no heartbeats
    state = mgr.state("DQ2")
    try:
        await wait_until(lambda: state.restarts >= 1, timeout=20, what="hung trader killed")
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGCONT)
    await wait_until(lambda: state.status is TraderStatus.CONNECTED and mgr.proxies["DQ2"].pid != pid)
    assert not pid_alive(pid)


async def test_stop_start_and_restart_a_trader(manager: TradingManager) -> None:
    mgr = manager
    await wait_until(lambda: all_connected(mgr))
    pid = mgr.proxies["DQ1"].pid
    assert (await mgr.stop_trader("DQ1")).ok
    state = mgr.state("DQ1")
    assert state.status is TraderStatus.STOPPED
    assert pid is not None and not pid_alive(pid)
    refused = await mgr.send_order("DQ1", _marketable_buy(mgr, "DQ1", "au2612.SHFE"))
    assert not refused.ok and "not connected" in refused.error
    assert (await mgr.start_trader("DQ1")).ok
    await wait_until(lambda: state.status is TraderStatus.CONNECTED)
    pid2 = mgr.proxies["DQ1"].pid
    assert (await mgr.restart_trader("DQ1")).ok
    await wait_until(lambda: state.status is TraderStatus.CONNECTED and mgr.proxies["DQ1"].pid != pid2)
    assert state.restarts == 0  # operator actions are not crashes


async def test_restart_storm_cools_down(core_env: CoreEnv) -> None:
    # an account whose database path is a directory cannot start: it crashes at once
    config = core_env.write_config(sim_account("BAD", "au2612.SHFE"))
    config.manager.restart_backoff = [0.0, 0.05]
    config.manager.max_restarts = 3
    config.manager.cooldown = 600.0
    (core_env.data_dir / "trading_BAD.db").mkdir(parents=True)  # the database cannot open
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    await mgr.start()
    try:
        state = mgr.state("BAD")
        await wait_until(
            lambda: "exit code 1 (" in state.status_message, timeout=60, what="a crash with its reason"
        )
        assert "database" in state.status_message  # the trader's last words say why
        await wait_until(lambda: "cooling down" in state.status_message, timeout=60, what="cool-down")
        assert state.status is TraderStatus.CRASHED
        restarts = state.restarts
        assert restarts == 4  # three restarts, then the fourth exit starts the cool-down
        assert mgr.proxies["BAD"].restart_handle is not None
    finally:
        await mgr.stop()
    assert mgr.state("BAD").status is TraderStatus.STOPPED


async def test_embedded_mode_round_trip(core_env: CoreEnv) -> None:
    config = core_env.write_config(sim_account("EMB", "m2705.DCE", mode="embedded"))
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    await mgr.start()
    try:
        await wait_until(lambda: all_connected(mgr))
        assert mgr.state("EMB").pid == os.getpid()  # shown as ours, never killed as ours
        assert mgr.proxies["EMB"].pid is None
        reply = await mgr.send_order("EMB", _marketable_buy(mgr, "EMB", "m2705.DCE"))
        assert reply.ok, reply.error
        state = mgr.state("EMB")
        await wait_until(lambda: ("m2705.DCE", Direction.LONG) in state.positions)
    finally:
        await mgr.stop()
    assert mgr.state("EMB").status is TraderStatus.STOPPED


def _asdict(req: OrderRequest) -> dict:
    return msgspec.structs.asdict(req)


async def test_a_bad_request_is_refused_readably_and_the_link_stays(manager: TradingManager) -> None:
    mgr = manager
    await wait_until(lambda: all_connected(mgr))
    good = _marketable_buy(mgr, "DQ1", "au2612.SHFE")
    nan_price = OrderRequest(**{**_asdict(good), "price": float("nan")})  # travels as null
    bad, ok = await asyncio.gather(mgr.send_order("DQ1", nan_price), mgr.send_order("DQ1", good))
    assert not bad.ok and "price" in bad.error
    assert ok.ok, ok.error  # the request beside it was not lost
    assert mgr.state("DQ1").status is TraderStatus.CONNECTED
    assert mgr.state("DQ1").restarts == 0


async def test_stop_with_cancel_shows_the_cancels(manager: TradingManager) -> None:
    mgr = manager
    await wait_until(lambda: all_connected(mgr))
    state = mgr.state("DQ2")
    tick = state.ticks["m2705.DCE"]
    req = OrderRequest(vt_symbol="m2705.DCE", direction=Direction.LONG, price=tick.limit_down, volume=1)
    reply = await mgr.send_order("DQ2", req)
    assert reply.ok, reply.error
    order_id = reply.result["order_id"]
    assert (await mgr.stop_trader("DQ2", cancel_orders=True)).ok
    assert state.orders[order_id].status is Status.CANCELLED
    assert not state.working_orders


async def test_stop_while_starting_leaves_nothing_running(manager: TradingManager) -> None:
    mgr = manager
    await wait_until(lambda: all_connected(mgr))
    assert (await mgr.stop_trader("DQ3")).ok
    starting = asyncio.create_task(mgr.start_trader("DQ3"))
    await asyncio.sleep(0)  # the start is in flight
    assert (await mgr.stop_trader("DQ3")).ok
    await starting
    proxy = mgr.proxies["DQ3"]
    await wait_until(lambda: not proxy.running, timeout=10, what="the late start stopped")
    assert mgr.state("DQ3").status is TraderStatus.STOPPED


async def test_an_embedded_trader_that_crashes_is_restarted(core_env: CoreEnv) -> None:
    config = core_env.write_config(sim_account("EMB", "m2705.DCE", mode="embedded"))
    config.manager.restart_backoff = [0.0, 0.05]
    config.manager.max_restarts = 2
    (core_env.data_dir / "trading_EMB.db").mkdir(parents=True)  # cannot open: the trader fails
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    await mgr.start()
    try:
        state = mgr.state("EMB")
        await wait_until(lambda: "cooling down" in state.status_message, what="restarts, then cool-down")
        assert state.restarts == 3
        assert state.status is TraderStatus.CRASHED
    finally:
        await mgr.stop()


async def test_a_request_from_outside_cannot_claim_a_decision_to_escape_the_duplicate_rule(
    manager: TradingManager,
) -> None:
    """OrderRequest.decision exempts a strategy's new decision from the duplicate rule; only the
    trader's strategy engine sets it: the trader empties it in every order_req it receives."""
    mgr = manager
    await wait_until(lambda: all_connected(mgr))
    state = mgr.state("DQ2")
    tick, contract = state.ticks["m2705.DCE"], state.contracts["m2705.DCE"]
    resting = OrderRequest(
        vt_symbol="m2705.DCE",
        direction=Direction.LONG,
        offset=Offset.OPEN,
        price=contract.round_price(tick.limit_down),
        volume=1,
        decision="console:first",
    )
    assert (await mgr.send_order("DQ2", resting)).ok
    again = await mgr.send_order("DQ2", OrderRequest(**{**_asdict(resting), "decision": "console:second"}))
    assert not again.ok and again.error.startswith("duplicate: same order as "), again.error
