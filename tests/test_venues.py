"""Venues as the manager sees them: logins refused on a back-off, paper accounts on real quotes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest

import core.trader
from config.schema import SimSettings
from core.manager import TradingManager
from core.models import (
    CancelRequest,
    Contract,
    Direction,
    GatewayStatus,
    Offset,
    OrderRequest,
    OrderType,
    Status,
    TraderStatus,
)
from gateways.base import Gateway, GatewayListener
from gateways.sim import SimGateway
from storage import AccountDatabase, database_path
from tests.conftest import CoreEnv, sim_account, wait_until
from tests.test_sim_gateway import Recorder

# ---------------------------------------------------------------- a venue that refuses logins


class RefusingGateway(Gateway):
    """Refuses the first ``refusals`` logins with a CTP-style error, then connects."""

    name: ClassVar[str] = "refusing"
    refusals: ClassVar[int] = 2
    attempts: ClassVar[int] = 0

    def __init__(
        self, account_id: str, settings: Mapping[str, Any], listener: GatewayListener, state_dir: Path
    ) -> None:
        super().__init__(account_id, settings, listener, state_dir)

    async def connect(self) -> None:
        cls = type(self)
        cls.attempts += 1
        if cls.attempts <= cls.refusals:
            self.listener.on_fatal("交易服务器登录失败，代码：3，信息：CTP:不合法的登录")
            return
        self.listener.on_status(GatewayStatus.CONNECTED, "logged in")

    async def close(self) -> None:
        pass

    def subscribe(self, vt_symbol: str) -> None:
        pass

    def send_order(self, req: OrderRequest) -> str:
        raise AssertionError("no order may reach a venue that refused the login")

    def cancel_order(self, req: CancelRequest) -> None:
        pass

    def query(self) -> None:
        pass

    def get_contract(self, vt_symbol: str) -> Contract | None:
        return None


async def test_a_refused_login_is_retried_on_the_venue_back_off(
    core_env: CoreEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(core.trader.GATEWAYS, "sim", f"{__name__}:RefusingGateway")
    monkeypatch.setattr(RefusingGateway, "attempts", 0)
    config = core_env.write_config(
        sim_account("V1", "m2705.DCE", mode="embedded"), manager="  venue_backoff: [0.3, 0.6]"
    )
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    seen: list[str] = []
    await mgr.start()
    try:
        state = mgr.state("V1")

        def record() -> bool:
            message = state.status_message
            if state.status is TraderStatus.DISCONNECTED and "retry" in message and message not in seen:
                seen.append(message)
            return state.status is TraderStatus.CONNECTED

        await wait_until(record, what="connected after two refused logins")
        assert RefusingGateway.attempts == 3
        # CTP's own words, the attempt, the delay and what follows; never "crashed"
        assert seen == [
            "交易服务器登录失败，代码：3，信息：CTP:不合法的登录; retry 1 in 0.3 s (then 0.6 s)",
            "交易服务器登录失败，代码：3，信息：CTP:不合法的登录; retry 2 in 0.6 s (then every 0.6 s)",
        ]
        assert state.restarts == 0  # not counted as crashes
        assert mgr.proxies["V1"].refusals == 0  # connected: the back-off starts over
    finally:
        await mgr.stop()


# ---------------------------------------------------------------- paper accounts


async def test_a_paper_gateway_matches_only_against_real_quotes(tmp_path: Path) -> None:
    rec = Recorder()
    gw = SimGateway("P1", SimSettings(tick_rate=5), rec, tmp_path, external_quotes=True)
    await gw.connect()
    assert gw._task is None  # no synthetic market
    gw.subscribe("m2705.DCE")
    assert not rec.of("tick")  # never a made-up quote
    req = OrderRequest(vt_symbol="m2705.DCE", direction=Direction.LONG, price=3000.0, volume=1)
    gw.send_order(req)
    (refused,) = rec.of("order")
    assert refused.status is Status.REJECTED and "no real quote for m2705.DCE yet" in refused.status_msg
    rec.clear()

    source = _quote("m2705.DCE", bid=2990.0, ask=2991.0, last=2990.0)
    gw.feed_quote(source)
    (tick,) = rec.of("tick")
    assert (tick.account_id, tick.bid_price_1, tick.ask_price_1, tick.last_price) == (
        "P1",
        2990.0,
        2991.0,
        2990.0,
    )
    assert tick.datetime == source.datetime
    rec.clear()
    resting = gw.send_order(
        OrderRequest(vt_symbol="m2705.DCE", direction=Direction.LONG, price=2985.0, volume=1)
    )
    assert rec.of("order")[-1].status is Status.NOTTRADED
    filled = gw.send_order(
        OrderRequest(vt_symbol="m2705.DCE", direction=Direction.LONG, price=2995.0, volume=1)
    )
    (trade,) = rec.of("trade")
    assert (trade.order_id, trade.price) == (filled, 2991.0)  # at the real ask
    rec.clear()
    gw.feed_quote(_quote("m2705.DCE", bid=2983.0, ask=2984.0, last=2984.0))  # the market comes down
    (trade,) = rec.of("trade")
    assert (trade.order_id, trade.price) == (resting, 2985.0)
    # a source gone quiet (down, or the market closed): no matching against an old book
    gw._quoted["m2705.DCE"] -= 61
    rec.clear()
    gw.send_order(OrderRequest(vt_symbol="m2705.DCE", direction=Direction.LONG, price=2995.0, volume=1))
    (stale,) = rec.of("order")
    assert stale.status is Status.REJECTED
    assert "the last real quote for m2705.DCE is 61 s old" in stale.status_msg
    assert not rec.of("trade")
    await gw.close()


async def test_a_paper_gateway_is_down_while_its_quote_source_is(tmp_path: Path) -> None:
    rec = Recorder()
    gw = SimGateway("P1", SimSettings(), rec, tmp_path, external_quotes=True)
    gw.set_quote_source("SRC", False, "CRASHED: killed by SIGKILL")  # told before it connected
    await gw.connect()
    assert rec.of("status")[-1] == (
        GatewayStatus.DISCONNECTED,
        "quote source SRC is down (CRASHED: killed by SIGKILL)",
    )
    gw.set_quote_source("SRC", False, "CRASHED: killed by SIGKILL")  # the same news: nothing new
    rec.clear()
    gw.set_quote_source("SRC", True)
    # back: the day's push first, then CONNECTED (the gateway contract)
    assert rec.kinds()[-1] == "status" and "account" in rec.kinds()
    assert rec.of("status")[-1] == (GatewayStatus.CONNECTED, "paper exchange ready (matching real quotes)")
    rec.clear()
    gw.set_quote_source("SRC", False, "")
    assert rec.of("status") == [(GatewayStatus.DISCONNECTED, "quote source SRC is down (no reason given)")]
    await gw.close()


def _quote(vt_symbol: str, *, bid: float, ask: float, last: float):
    from core.models import Tick, now

    return Tick(
        account_id="SRC",
        vt_symbol=vt_symbol,
        datetime=now(),
        last_price=last,
        volume=1000,
        open_interest=5000,
        limit_up=3200.0,
        limit_down=2800.0,
        pre_settlement=3000.0,
        bid_price_1=bid,
        bid_volume_1=10,
        ask_price_1=ask,
        ask_volume_1=10,
    )


async def test_a_paper_account_trades_on_another_accounts_quotes(core_env: CoreEnv) -> None:
    config = core_env.write_config(
        sim_account("SRC", "m2705.DCE", seed=7, rate=2.0)
        + """
  - account_id: PAPER
    gateway: sim
    market_data_from: SRC
    sim: {initial_balance: 500000}
    watchlist: [m2705.DCE, y2705.DCE]
"""
    )
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    await mgr.start()
    try:
        src, paper = mgr.state("SRC"), mgr.state("PAPER")
        await wait_until(lambda: paper.status is TraderStatus.CONNECTED and "m2705.DCE" in paper.ticks)
        assert "paper exchange" in paper.status_message
        # the source was asked for the paper account's contracts too
        await wait_until(lambda: "y2705.DCE" in src.ticks and "y2705.DCE" in paper.ticks)

        def same_quote() -> bool:
            a, b = src.ticks.get("m2705.DCE"), paper.ticks.get("m2705.DCE")
            return bool(a and b and a.datetime == b.datetime and a.ask_price_1 == b.ask_price_1)

        await wait_until(same_quote, what="the paper quote is the source's quote")
        tick = paper.ticks["m2705.DCE"]
        req = OrderRequest(
            vt_symbol="m2705.DCE",
            direction=Direction.LONG,
            offset=Offset.OPEN,
            type=OrderType.LIMIT,
            price=tick.limit_up,
            volume=1,
        )
        reply = await mgr.send_order("PAPER", req)
        assert reply.ok, reply.error
        await wait_until(lambda: ("m2705.DCE", Direction.LONG) in paper.positions, what="paper position")
        assert not src.orders and not src.positions  # matched locally, nothing sent to the source
        with AccountDatabase(database_path(core_env.data_dir, "PAPER"), readonly=True) as db:
            assert [t.order_id for t in db.load_trades()] == [reply.result["order_id"]]

        # the source goes down: the paper account is down with the source's reason at once (no
        # real book to match against), without waiting for its quotes to go stale
        assert (await mgr.stop_trader("SRC")).ok
        await wait_until(lambda: paper.status is TraderStatus.DISCONNECTED, what="paper down")
        assert paper.status_message.startswith("quote source SRC is down (STOPPED"), paper.status_message
        refused = await mgr.send_order("PAPER", msgspec.structs.replace(req, volume=2))  # not a duplicate
        assert not refused.ok and "quote source SRC is down (STOPPED" in refused.error, refused
        assert ("m2705.DCE", Direction.LONG) in paper.positions  # what it holds is untouched
        # back: trading resumes on its fresh quotes
        assert (await mgr.start_trader("SRC")).ok
        await wait_until(lambda: paper.status is TraderStatus.CONNECTED, what="paper back with its source")
        assert "matching real quotes" in paper.status_message
        await wait_until(lambda: (paper.ticks["m2705.DCE"].datetime or 0) > (tick.datetime or 0))
        again = await mgr.send_order("PAPER", msgspec.structs.replace(req, volume=3))
        assert again.ok and again.result["status"] != "REJECTED", again
    finally:
        await mgr.stop()


# ---------------------------------------------------------------- CTP front unreachable (real vnpy_ctp)


async def test_an_unreachable_ctp_front_retries_while_sim_accounts_trade_on(
    core_env: CoreEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "pw-never-shown-8731"
    monkeypatch.setenv("QT_TEST_CTP_PASSWORD", secret)
    config = core_env.write_config(
        sim_account("SIM1", "m2705.DCE")
        + """
  - account_id: CTP1
    gateway: ctp
    ctp:
      userid: "000001"
      password: "${QT_TEST_CTP_PASSWORD}"
      brokerid: "9999"
      td_address: "tcp://127.0.0.1:9"
      md_address: "tcp://127.0.0.1:9"
      connect_timeout: 1
""",
        manager="  venue_backoff: [0.5, 1.0]",
    )
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    shown: list[str] = []  # every CTP1 status the console is told of, transient ones included
    mgr.aggregator.subscribe(
        lambda change: (
            change.account_id == "CTP1"
            and change.kind == "status"
            and shown.append(mgr.state("CTP1").status_message)
        )
    )
    await mgr.start()
    try:
        ctp, sim = mgr.state("CTP1"), mgr.state("SIM1")

        def refusals() -> list[str]:  # from every status shown: a 0.5 s one is never missed
            return list(dict.fromkeys(m for m in shown if "; retry " in m))

        await wait_until(lambda: len(refusals()) >= 2, timeout=30, what="two refused connection attempts")
        messages = refusals()
        assert "unreachable" in messages[0] and messages[0].endswith("retry 1 in 0.5 s (then 1 s)")
        assert messages[1].endswith("retry 2 in 1 s (then every 1 s)")
        assert ctp.restarts == 0
        # a trader leaving because the venue refused it is expected to drop its link: no scare
        assert "link to trader lost" not in shown, shown
        # the sim account in the same config trades on
        await wait_until(lambda: sim.status is TraderStatus.CONNECTED and "m2705.DCE" in sim.ticks)
        tick = sim.ticks["m2705.DCE"]
        reply = await mgr.send_order(
            "SIM1",
            OrderRequest(vt_symbol="m2705.DCE", direction=Direction.LONG, price=tick.limit_up, volume=1),
        )
        assert reply.ok, reply.error
        await wait_until(lambda: ("m2705.DCE", Direction.LONG) in sim.positions)
    finally:
        await mgr.stop()
    # the password is nowhere: not in a status line, a log or a database
    assert all(secret not in m for m in messages)
    for path in core_env.data_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
