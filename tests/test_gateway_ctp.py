"""The CTP gateway offline: vnpy_ctp's real gateway code in front of a scripted CTP front
(``tests/fake_ctp.py``), first in-process with a recording listener (mapping details), then
in real trader processes under the manager (``QTRADER_CTP_FAKE_FRONT``), and once with the
real native CTP api against a port where nothing listens."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from config import paths as cfg_paths
from config.schema import CtpSettings
from core.manager import TradingManager
from core.models import (
    LOCAL_ORDER_PREFIX,
    Account,
    CancelRequest,
    Contract,
    Direction,
    Exchange,
    GatewayStatus,
    Offset,
    Order,
    OrderRequest,
    OrderType,
    Position,
    Status,
    Tick,
    Trade,
    TraderStatus,
)
from gateways.ctp import FAKE_FRONT_ENV, CtpGateway
from gateways.ctp import commission as ctp_commission
from gateways.ctp import gateway as ctp_gateway
from gateways.ctp import queries as ctp_queries
from gateways.ctp.commission import CommissionRates
from gateways.ctp.fields import ctp_order_type, disconnect_reason, vnpy_readable_order
from storage import AccountDatabase, database_path
from tests import fake_ctp
from tests.conftest import CoreEnv, wait_until

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "pw-S3cret!"
AUTH_CODE = "AUTHCODE-0000"
SETTINGS = {
    "userid": "000001",
    "password": PASSWORD,
    "brokerid": "9999",
    "td_address": "tcp://127.0.0.1:1",
    "md_address": "tcp://127.0.0.1:2",
    "appid": "client_qtrader_1.0",
    "auth_code": AUTH_CODE,
    "connect_timeout": 5.0,
}


@dataclass
class Recorder:
    """A listener that keeps everything, and checks it is only called on the loop's thread."""

    thread: int = field(default_factory=threading.get_ident)
    events: list[tuple[str, Any]] = field(default_factory=list)
    off_loop: list[str] = field(default_factory=list)
    fail_next_tick: bool = False

    def _record(self, kind: str, data: Any) -> None:
        if threading.get_ident() != self.thread:
            self.off_loop.append(kind)
        self.events.append((kind, data))

    def on_tick(self, tick: Tick) -> None:
        self._record("tick", tick)
        if self.fail_next_tick:
            self.fail_next_tick = False
            raise RuntimeError("listener bug")

    def on_order(self, order: Order) -> None:
        self._record("order", order)

    def on_trade(self, trade: Trade) -> None:
        self._record("trade", trade)

    def on_position(self, position: Position) -> None:
        self._record("position", position)

    def on_account(self, account: Account) -> None:
        self._record("account", account)

    def on_contract(self, contract: Contract) -> None:
        self._record("contract", contract)

    def on_status(self, status: GatewayStatus, message: str) -> None:
        self._record("status", (status, message))

    def on_log(self, level: str, message: str) -> None:
        self._record("log", (level, message))

    def on_fatal(self, message: str) -> None:
        self._record("fatal", message)

    def of(self, kind: str) -> list[Any]:
        return [data for k, data in self.events if k == kind]

    def index(self, kind: str) -> int:
        return next(i for i, (k, _) in enumerate(self.events) if k == kind)

    @property
    def status(self) -> GatewayStatus | None:
        statuses = self.of("status")
        return statuses[-1][0] if statuses else None

    def order(self, order_id: str) -> Order | None:
        found = [o for o in self.of("order") if o.order_id == order_id]
        return found[-1] if found else None

    def texts(self) -> list[str]:
        return [m for _, m in self.of("log")] + [m for _, m in self.of("status")] + self.of("fatal")


@dataclass
class Ctp:
    gateway: CtpGateway
    listener: Recorder
    front: fake_ctp.FakeFront


async def _start(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setup: Callable[[fake_ctp.FakeFront], object] | None = None,
    **overrides: Any,
) -> Ctp:
    monkeypatch.setenv(FAKE_FRONT_ENV, "tests.fake_ctp:attach")
    monkeypatch.chdir(tmp_path)
    listener = Recorder()
    gateway = CtpGateway("UT1", CtpSettings(**{**SETTINGS, **overrides}), listener, tmp_path)
    front = fake_ctp.FRONTS[gateway.vnpy_name]
    if setup is not None:  # the front's day before the gateway connects
        setup(front)
    await gateway.connect()
    return Ctp(gateway, listener, front)


@pytest.fixture
async def ctp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Ctp]:
    env = await _start(tmp_path, monkeypatch)
    try:
        await wait_until(lambda: env.listener.status is GatewayStatus.CONNECTED, 20, "CONNECTED")
        yield env
    finally:
        await env.gateway.close()
    assert not env.listener.off_loop, "listener called off the loop's thread"
    assert not any(PASSWORD in t or AUTH_CODE in t for t in env.listener.texts()), "a secret leaked"


def _trading_day(env: Ctp) -> str:
    return env.front.trading_day


# ====================================================================== in-process, mapping


async def test_login_then_contracts_then_the_day_then_connected(ctp: Ctp) -> None:
    rec = ctp.listener
    statuses = rec.of("status")
    assert statuses[0] == (GatewayStatus.CONNECTING, "connecting to CTP trade front tcp://127.0.0.1:1")
    assert [s for s, _ in statuses].count(GatewayStatus.CONNECTED) == 1
    assert "authenticated" in " ".join(m for _, m in statuses)  # an auth code: authenticate first
    connected = rec.events.index(("status", statuses[-1]))
    # the instrument query comes first; every order, trade, position and the account before CONNECTED
    first_contract = rec.index("contract")
    for kind in ("order", "trade", "position", "account"):
        assert first_contract < rec.index(kind) < connected, kind

    contracts = {c.vt_symbol: c for c in rec.of("contract")}
    assert set(contracts) == {"rb2601.SHFE", "rb2605.SHFE", "m2605.DCE", "au2612.SHFE"}  # not the option
    rb = contracts["rb2601.SHFE"]
    assert (rb.size, rb.pricetick, rb.product, rb.margin_ratio, rb.name) == (10, 1.0, "rb", 0.1, "螺纹钢2601")
    assert ctp.gateway.get_contract("rb2601.SHFE") == rb

    # SHFE: the history row (3) and the today row (2) are one position with yd_volume 3
    positions = {(p.vt_symbol, p.direction): p for p in rec.of("position")}
    long_rb = positions[("rb2601.SHFE", Direction.LONG)]
    assert (long_rb.volume, long_rb.yd_volume, long_rb.td_volume) == (5, 3, 2)
    assert long_rb.price == pytest.approx((3 * 3495 + 2 * 3490) / 5)
    assert long_rb.margin == pytest.approx((3 * 3495 + 2 * 3490) * 10 * 0.1)
    short_m = positions[("m2605.DCE", Direction.SHORT)]
    assert (short_m.volume, short_m.yd_volume) == (1, 1)

    account = rec.of("account")[-1]
    assert account.pre_balance == 1_000_000 and account.margin > 0
    assert account.balance == pytest.approx(1_000_000 + account.position_pnl)
    assert account.trading_day == _trading_day(ctp)

    # another session's order and fill: no reference (the trader decides), a day-unique trade id
    other = rec.order("9_77_1")
    assert other is not None and other.status is Status.ALLTRADED and other.reference == ""
    assert other.traded_price == 3490
    assert [t.trade_id for t in rec.of("trade")] == [f"{_trading_day(ctp)}.SHFE.1"]
    working = rec.order("9_77_2")
    assert working is not None and working.status is Status.NOTTRADED
    assert ctp.front.td.private_mode == 0  # RESTART: the day's notices replay at login
    assert ctp.front.td.logins[-1]["Password"] == PASSWORD  # it does reach the front, only there


async def test_an_order_fills_in_parts_and_another_is_cancelled(ctp: Ctp) -> None:
    gw, rec = ctp.gateway, ctp.listener
    buy = OrderRequest(
        vt_symbol="m2605.DCE",
        direction=Direction.LONG,
        offset=Offset.OPEN,
        price=2801,
        volume=2,
        reference="s1",
    )
    order_id = gw.send_order(buy)
    await wait_until(
        lambda: len([t for t in rec.of("trade") if t.order_id == order_id]) == 2, 20, "two fills"
    )
    await wait_until(lambda: rec.order(order_id).traded_price == 2801, 20, "average price")
    statuses = [o.status for o in rec.of("order") if o.order_id == order_id]
    firsts = list(dict.fromkeys(statuses))
    assert firsts[-3:] == [Status.NOTTRADED, Status.PARTTRADED, Status.ALLTRADED]
    final = rec.order(order_id)
    assert final.traded == 2 and final.reference == "s1"
    fills = [t for t in rec.of("trade") if t.order_id == order_id]
    assert [t.volume for t in fills] == [1, 1] and {t.reference for t in fills} == {"s1"}
    day = _trading_day(ctp)
    # CTP numbers trades per exchange: DCE's first is "1" like SHFE's, the ids still differ
    assert [t.trade_id for t in fills] == [f"{day}.DCE.1", f"{day}.DCE.2"]

    resting = gw.send_order(OrderRequest(**{**_fields(buy), "price": 2700, "volume": 1}))
    await wait_until(lambda: rec.order(resting) and rec.order(resting).status is Status.NOTTRADED, 5)
    gw.cancel_order(CancelRequest(order_id=resting))
    await wait_until(lambda: rec.order(resting).status is Status.CANCELLED, 20, "cancelled")
    assert rec.order(resting).status_msg == "已撤单"
    gw.cancel_order(CancelRequest(order_id=resting))  # finished: said so, state pushed again
    assert any("already CANCELLED" in m for _, m in rec.of("log"))


async def test_each_request_is_one_ctp_order_with_the_offset_it_names(ctp: Ctp) -> None:
    """The trader splits SHFE/INE closes (its one close policy): the gateway sends each request
    as it is, one CTP order with the matching CombOffsetFlag, and reports that one order."""
    gw, rec, front = ctp.gateway, ctp.listener, ctp.front
    known = {o.order_id for o in rec.of("order")}
    sent_before = len(front.requests)
    # the long rb2601.SHFE position: 3 from yesterday, 2 of today
    close = OrderRequest(
        vt_symbol="rb2601.SHFE",
        direction=Direction.SHORT,
        offset=Offset.CLOSEYESTERDAY,
        price=3500,
        volume=3,
        reference="s1",
    )
    yesterday = gw.send_order(close)
    today = gw.send_order(OrderRequest(**{**_fields(close), "offset": Offset.CLOSETODAY, "volume": 2}))
    sent = front.requests[sent_before:]
    assert [(r["CombOffsetFlag"], r["VolumeTotalOriginal"]) for r in sent] == [("4", 3), ("3", 2)]
    await wait_until(
        lambda: len(_fills_of(rec, yesterday)) == 2 and len(_fills_of(rec, today)) == 2,
        20,
        "both closes filled",
    )
    for order_id, offset, volume in ((yesterday, Offset.CLOSEYESTERDAY, 3), (today, Offset.CLOSETODAY, 2)):
        order = rec.order(order_id)
        assert (order.offset, order.volume, order.status, order.reference) == (
            offset,
            volume,
            Status.ALLTRADED,
            "s1",
        )
        assert {t.offset for t in _fills_of(rec, order_id)} == {offset}
    assert {o.order_id for o in rec.of("order")} - known == {yesterday, today}  # one order each

    def long_rb() -> float | None:
        rows = [p for p in rec.of("position") if p.key == ("rb2601.SHFE", Direction.LONG)]
        return rows[-1].volume if rows else None

    await wait_until(lambda: long_rb() == 0, 20, "the long rb2601 position flat")

    # a plain CLOSE is CTP's close, unsplit; what the venue cannot close it refuses, with its reason
    plain = gw.send_order(OrderRequest(**{**_fields(close), "offset": Offset.CLOSE, "volume": 1}))
    assert [(r["CombOffsetFlag"], r["VolumeTotalOriginal"]) for r in front.requests[-1:]] == [("1", 1)]
    await wait_until(lambda: rec.order(plain) and rec.order(plain).status is Status.REJECTED, 5)
    assert "平昨仓位不足" in rec.order(plain).status_msg and "51" in rec.order(plain).status_msg
    today = gw.send_order(OrderRequest(**{**_fields(close), "offset": Offset.CLOSETODAY, "volume": 1}))
    await wait_until(lambda: rec.order(today) and rec.order(today).status is Status.REJECTED, 5)
    assert "平今仓位不足" in rec.order(today).status_msg and "50" in rec.order(today).status_msg

    # what CTP cannot take at all is refused here, under the one id scheme of local refusals
    sent_before = len(front.requests)
    stop = gw.send_order(OrderRequest(**{**_fields(close), "type": OrderType.STOP}))
    assert len(front.requests) == sent_before
    assert stop.startswith(LOCAL_ORDER_PREFIX) and rec.order(stop).status is Status.REJECTED
    assert rec.order(stop).status_msg == "CTP does not take STOP orders"


async def test_depth_market_data_becomes_ticks(ctp: Ctp) -> None:
    ctp.gateway.subscribe("rb2601.SHFE")
    ctp.gateway.subscribe("rb2601")  # malformed: a warning, nothing else
    await wait_until(lambda: len(ctp.listener.of("tick")) >= 2, 20, "two ticks")
    tick = ctp.listener.of("tick")[-1]
    assert tick.vt_symbol == "rb2601.SHFE" and tick.datetime.utcoffset().total_seconds() == 8 * 3600
    assert (tick.bid_price_1, tick.ask_price_1, tick.bid_volume_1, tick.ask_volume_1) == (3500, 3501, 10, 12)
    assert (tick.last_price, tick.pre_settlement, tick.limit_up, tick.limit_down) == (3500, 3495, 3740, 3250)
    assert tick.open_interest == 150_000 and tick.last_volume == 1
    assert any("rb2601" in m and "symbol.EXCHANGE" in m for _, m in ctp.listener.of("log"))
    # an SHFE front's five levels each side
    assert tick.bids == ((3500, 10), (3499, 20), (3498, 30), (3497, 40), (3496, 50))
    assert tick.asks == ((3501, 12), (3502, 24), (3503, 36), (3504, 48), (3505, 60))


async def test_a_level_1_front_leaves_the_deeper_levels_blank(ctp: Ctp) -> None:
    """DCE reports level 1 only (DBL_MAX prices, no volume after it): levels 2-5 are 0."""
    ctp.gateway.subscribe("m2605.DCE")
    await wait_until(lambda: any(t.vt_symbol == "m2605.DCE" for t in ctp.listener.of("tick")), 20, "a tick")
    tick = next(t for t in ctp.listener.of("tick") if t.vt_symbol == "m2605.DCE")
    assert tick.bids == ((2800, 10), *((0, 0),) * 4) and tick.asks == ((2801, 12), *((0, 0),) * 4)
    assert (tick.pre_settlement, tick.limit_up, tick.limit_down) == (
        2790,
        round(2790 * 1.07),
        round(2790 * 0.93),
    )


async def test_a_failing_handler_never_stops_the_events(ctp: Ctp) -> None:
    from vnpy.event import Event
    from vnpy.trader.event import EVENT_ORDER

    rec = ctp.listener
    rec.fail_next_tick = True
    ctp.gateway._engine.put(Event(EVENT_ORDER, object()))  # what no mapping can read
    ctp.gateway.subscribe("m2605.DCE")
    await wait_until(lambda: len(rec.of("tick")) >= 3, 20, "ticks after the failures")
    errors = [m for level, m in rec.of("log") if level == "ERROR"]
    assert any("listener bug" in m for m in errors) and any(EVENT_ORDER in m for m in errors)

    ctp.gateway._gateway.write_log(f"echo of {PASSWORD} and {AUTH_CODE}")  # scrubbed on the way out
    await wait_until(lambda: any("echo of ***" in m for _, m in rec.of("log")), 5)


async def test_a_front_disconnect_and_reconnect(ctp: Ctp) -> None:
    rec = ctp.listener
    before = {o.order_id: o.status for o in rec.of("order")}
    start = len(rec.events)
    ctp.front.td.disconnect(0x1001)
    # from the recorded history: the fake front reconnects by itself at once
    down = (
        "status",
        (
            GatewayStatus.DISCONNECTED,
            "CTP trade front disconnected: network read failed (4097); reconnecting",
        ),
    )
    await wait_until(lambda: down in rec.events[start:], 20, "DISCONNECTED with CTP's reason")
    mark = start + rec.events[start:].index(down) + 1
    await wait_until(
        lambda: any(k == "status" and d[0] is GatewayStatus.CONNECTED for k, d in rec.events[mark:]),
        20,
        "CONNECTED again",
    )
    # the replayed day changed nothing: no order went back, no fill twice
    assert {o.order_id: o.status for o in rec.of("order")} == before
    again = [data for kind, data in rec.events[mark:] if kind == "order"]
    assert {o.order_id for o in again} == set(before)  # every order listed again before CONNECTED
    trade_ids = [t.trade_id for t in rec.of("trade")]
    assert len(trade_ids) == len(set(trade_ids))


async def test_login_refused_is_fatal_with_ctps_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = await _start(tmp_path, monkeypatch, userid=fake_ctp.REFUSED_USER)
    try:
        await wait_until(lambda: env.listener.of("fatal"), 20, "on_fatal")
        (reason,) = env.listener.of("fatal")
        assert reason == "CTP login failed for 9999/refused: 代码：3，信息：CTP:不合法的登录"
        assert GatewayStatus.CONNECTED not in [s for s, _ in env.listener.of("status")]
    finally:
        await env.gateway.close()
    assert not any(PASSWORD in t or AUTH_CODE in t for t in env.listener.texts())


async def test_a_login_never_answered_is_fatal_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = await _start(tmp_path, monkeypatch, userid=fake_ctp.SILENT_USER, connect_timeout=2.0)
    try:
        await wait_until(lambda: env.listener.of("fatal"), 20, "on_fatal")
        (reason,) = env.listener.of("fatal")
        assert reason == "CTP trade front tcp://127.0.0.1:1 connected, but the login was not answered in 2 s"
        statuses = [m for _, m in env.listener.of("status")]
        assert any("trade front connected" in m for m in statuses)  # it did connect first
    finally:
        await env.gateway.close()


async def test_close_leaves_no_thread_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = set(threading.enumerate())
    env = await _start(tmp_path, monkeypatch)
    await wait_until(lambda: env.listener.status is GatewayStatus.CONNECTED, 5)
    env.gateway.subscribe("rb2601.SHFE")
    await env.gateway.close()
    await wait_until(lambda: set(threading.enumerate()) <= before, 20, "threads gone")
    assert env.listener.status is GatewayStatus.DISCONNECTED


# ---------------------------------------------------------------- status from the api's callbacks

#: What every vnpy_ctp log line says in the tests below: the wording of some other release, and a
#: misleading one (a status read from log text would take the first line for a refused login).
GARBLED_LOG = "交易服务器登录失败，代码：99，信息：wording of another vnpy_ctp release"


def _garble_vnpy_logs(monkeypatch: pytest.MonkeyPatch, said: list[str]) -> None:
    """Every log line vnpy_ctp writes becomes ``GARBLED_LOG``; ``said`` gets the real wording.
    Called once the gateway has imported vnpy (it picks its working folder at import)."""
    from vnpy.trader.gateway import BaseGateway
    from vnpy_ctp.gateway import ctp_gateway

    def write_log(gateway: Any, msg: str) -> None:
        said.append(msg)
        BaseGateway.write_log(gateway, GARBLED_LOG)

    monkeypatch.setattr(ctp_gateway.CtpGateway, "write_log", write_log)


async def test_the_status_follows_the_api_callbacks_whatever_vnpy_ctp_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    said: list[str] = []
    env = await _start(tmp_path, monkeypatch, lambda _: _garble_vnpy_logs(monkeypatch, said))
    rec, front = env.listener, env.front
    try:
        await wait_until(lambda: rec.status is GatewayStatus.CONNECTED, 20, "CONNECTED")
        assert not rec.of("fatal")
        assert {"交易服务器连接成功", "交易服务器登录成功", "合约信息查询成功"} <= set(said)  # garbled
        assert any(m == f"CTP: {GARBLED_LOG}" for _, m in rec.of("log"))  # logs are still logs
        steps = [m for s, m in rec.of("status") if s is GatewayStatus.CONNECTING]
        for step in ("trade front connected", "authenticated", "logged in as", "settlement confirmed"):
            assert any(step in m for m in steps), step
        assert any("4 contracts; querying orders" in m for m in steps)
        connected = rec.events.index(("status", rec.of("status")[-1]))
        for kind in ("order", "trade", "position", "account"):  # the whole day before CONNECTED
            assert rec.index(kind) < connected, kind
        assert "2 positions, 1 working orders, 1 trades" in rec.of("status")[-1][1]

        # the trade front drops with CTP's reason, and the login starts again
        mark = len(rec.events)
        front.td.disconnect(0x1001)
        down = (
            "status",
            (
                GatewayStatus.DISCONNECTED,
                "CTP trade front disconnected: network read failed (4097); reconnecting",
            ),
        )
        await wait_until(lambda: down in rec.events[mark:], 20, "DISCONNECTED with CTP's reason")
        mark += rec.events[mark:].index(down) + 1
        await wait_until(
            lambda: any(k == "status" and d[0] is GatewayStatus.CONNECTED for k, d in rec.events[mark:]),
            20,
            "CONNECTED again",
        )

        # the market data front drops and comes back: said in the status, trading goes on
        front.md.disconnect(0x2001)
        await wait_until(
            lambda: "market data front disconnected (heartbeat timeout (8193))" in rec.of("status")[-1][1],
            20,
            "the md loss in the status",
        )
        assert rec.status is GatewayStatus.CONNECTED
        front.md.reconnect()
        await wait_until(lambda: rec.of("status")[-1][1].startswith("CTP logged in as"), 20, "quotes live")
        assert not rec.of("fatal")
    finally:
        await env.gateway.close()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"userid": fake_ctp.REFUSED_USER},
            "CTP login failed for 9999/refused: 代码：3，信息：CTP:不合法的登录",
        ),
        (
            {"appid": fake_ctp.REFUSED_APPID},
            "CTP authentication failed for 9999/000001: 代码：63，信息：CTP:客户端认证失败",
        ),
    ],
    ids=["login", "authentication"],
)
async def test_a_refusal_is_fatal_with_ctps_own_text_whatever_vnpy_ctp_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, str], expected: str
) -> None:
    said: list[str] = []
    env = await _start(tmp_path, monkeypatch, lambda _: _garble_vnpy_logs(monkeypatch, said), **overrides)
    try:
        await wait_until(lambda: env.listener.of("fatal"), 20, "on_fatal")
        assert env.listener.of("fatal") == [expected]
        assert GatewayStatus.CONNECTED not in [s for s, _ in env.listener.of("status")]
        assert said  # vnpy_ctp did log, in words that were not read
    finally:
        await env.gateway.close()


def test_disconnect_reasons_read_well() -> None:
    assert disconnect_reason(0x1001) == "network read failed (4097)"
    assert disconnect_reason(0x2001) == "heartbeat timeout (8193)"
    assert disconnect_reason(7) == "reason 7"


# ---------------------------------------------------------------- no fill lost, errors, md front


def test_orders_vnpy_cannot_read_get_the_closest_type_and_the_status_ctp_means() -> None:
    base = {
        "OrderPriceType": "2",
        "TimeCondition": "3",
        "VolumeCondition": "1",
        "OrderStatus": "3",
        "OrderSubmitStatus": "3",
        "CombOffsetFlag": "0",
        "VolumeTraded": 0,
        "VolumeTotalOriginal": 2,
        "StatusMsg": "未成交",
    }

    def read(**fields: Any) -> dict[str, Any]:
        readable, note = vnpy_readable_order({**base, **fields})
        assert bool(note) is bool(set(readable.items()) - set({**base, **fields}.items()))
        return readable

    assert vnpy_readable_order(base) == (base, "")  # vnpy reads it: untouched
    kinds = {
        ("1", "1", "1"): OrderType.MARKET,  # CTP's market order (another terminal's): AnyPrice + IOC
        ("3", "3", "1"): OrderType.MARKET,  # BestPrice
        ("4", "1", "1"): OrderType.FAK,  # LastPrice, IOC
        ("2", "1", "2"): OrderType.FAK,  # limit IOC with a minimum volume
        ("C", "1", "3"): OrderType.FOK,  # BidPrice1, IOC, all or nothing
        ("2", "2", "1"): OrderType.LIMIT,  # good for the session
        ("G", "3", "1"): OrderType.LIMIT,  # anything else
    }
    vnpy_fields = {  # what vnpy_ctp maps to each of our types
        OrderType.LIMIT: ("2", "3", "1"),
        OrderType.MARKET: ("1", "3", "1"),
        OrderType.FAK: ("2", "1", "1"),
        OrderType.FOK: ("2", "1", "3"),
    }
    for (price_type, time_cond, volume_cond), expected in kinds.items():
        fields = {"OrderPriceType": price_type, "TimeCondition": time_cond, "VolumeCondition": volume_cond}
        assert ctp_order_type(fields) is expected, fields
        readable = read(**fields)
        got = (readable["OrderPriceType"], readable["TimeCondition"], readable["VolumeCondition"])
        assert got == vnpy_fields[expected], fields

    # 2 and 4 are finished: CANCELLED (vnpy's 5), REJECTED (5 + InsertRejected) when refused
    part = read(OrderStatus="2", VolumeTraded=1, StatusMsg="部分成交不在队列中")
    assert (part["OrderStatus"], part["OrderSubmitStatus"], part["VolumeTraded"]) == ("5", "3", 1)
    assert read(OrderStatus="2", VolumeTraded=1, OrderSubmitStatus="4")["OrderSubmitStatus"] == "3"
    gone = read(OrderStatus="4", StatusMsg="已撤单")
    assert (gone["OrderStatus"], gone["OrderSubmitStatus"]) == ("5", "3")
    for refusal in ({"OrderSubmitStatus": "4"}, {"StatusMsg": "报单被拒绝"}):
        refused = read(OrderStatus="4", **refusal)
        assert (refused["OrderStatus"], refused["OrderSubmitStatus"]) == ("5", "4"), refusal
    # a conditional order waiting for its trigger, or triggered, is working
    assert read(OrderStatus="b")["OrderStatus"] == "3"
    assert read(OrderStatus="c", VolumeTraded=1)["OrderStatus"] == "1"
    assert read(OrderStatus="z", VolumeTraded=2)["OrderStatus"] == "0"
    assert read(CombOffsetFlag="2")["CombOffsetFlag"] == "1"  # the broker's forced close is a close


async def test_external_orders_vnpy_cannot_read_are_reported_with_their_fills(ctp: Ctp) -> None:
    front, rec = ctp.front, ctp.listener
    # another terminal's market order on SHFE (AnyPrice + IOC), the exchange's order 500
    market = front.external_order(
        "rb2601", "0", "0", 0.0, 2, sysid="500", OrderPriceType="1", TimeCondition="1"
    )
    # DCE numbers its orders on its own: its order 500 is another order, still working
    dce = front.external_order("m2605", "1", "0", 2900.0, 1, sysid="500")
    front.fill(market, 3501.0, 1)
    front.update_order(market, OrderStatus="2", StatusMsg="部分成交不在队列中")
    market_id, dce_id = "5_88_1", "5_88_2"
    await wait_until(lambda: (o := rec.order(market_id)) and o.status is Status.CANCELLED, 20, "market order")
    order = rec.order(market_id)
    assert (order.type, order.traded, order.volume, order.reference) == (OrderType.MARKET, 1, 2, "")
    assert order.status_msg == "部分成交不在队列中"
    await wait_until(lambda: [t for t in rec.of("trade") if t.order_id == market_id], 20, "its fill")
    (fill,) = [t for t in rec.of("trade") if t.order_id == market_id]
    assert (fill.vt_symbol, fill.direction, fill.volume, fill.price) == (
        "rb2601.SHFE",
        Direction.LONG,
        1,
        3501,
    )
    await wait_until(lambda: rec.order(market_id).traded_price == 3501, 20, "average price")
    assert rec.order(dce_id).status is Status.NOTTRADED
    assert not [t for t in rec.of("trade") if t.order_id == dce_id]  # not credited SHFE's fill

    # a DCE fill notified before its BestPrice order: held, then reported with the order
    best = front.external_order("m2605", "0", "0", 0.0, 1, sysid="501", push=False, OrderPriceType="3")
    front.fill(best, 2801.0, 1)
    front.update_order(best, OrderStatus="0", StatusMsg="全部成交")
    best_id = "5_88_3"
    await wait_until(lambda: [t for t in rec.of("trade") if t.order_id == best_id], 20, "the held fill")
    assert (rec.order(best_id).type, rec.order(best_id).status) == (OrderType.MARKET, Status.ALLTRADED)

    # 4: no longer queueing, nothing traded: cancelled, or rejected when refused
    front.update_order(dce, OrderStatus="4", StatusMsg="已撤单")
    front.external_order(
        "m2605",
        "0",
        "0",
        2000.0,
        1,
        sysid="502",
        OrderStatus="4",
        OrderSubmitStatus="4",
        StatusMsg="报单被拒绝",
    )
    await wait_until(lambda: (o := rec.order("5_88_4")) and o.status is Status.REJECTED, 20, "refused")
    assert rec.order("5_88_4").status_msg == "报单被拒绝"
    await wait_until(lambda: rec.order(dce_id).status is Status.CANCELLED, 20, "DCE order cancelled")
    assert not [m for level, m in rec.of("log") if level == "ERROR"]
    trade_ids = [t.trade_id for t in rec.of("trade")]
    assert len(trade_ids) == len(set(trade_ids)) == 3  # the other session's, and these two


async def test_a_trade_whose_order_never_comes_is_logged_then_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # held for long enough that CONNECTED surely comes first, however slow the machine
    monkeypatch.setattr(ctp_gateway, "ORPHAN_TRADE_SECONDS", 600.0)
    env = await _start(tmp_path, monkeypatch, lambda f: f.orphan_trade("rb2601", "1", "0", 3500.0, 2, "900"))
    rec = env.listener
    try:
        await wait_until(lambda: rec.status is GatewayStatus.CONNECTED, 20, "CONNECTED")
        trade_id = f"{_trading_day(env)}.SHFE.2"  # the seeded session's is SHFE's 1
        assert trade_id not in [t.trade_id for t in rec.of("trade")]  # held: no order to tie it to
        (at_connected,) = [m for level, m in rec.of("log") if level == "ERROR"]  # once: replay and query
        for part in (trade_id, "sell 2 rb2601 @ 3500", "OrderSysID 900", "ctp-SHFE-900"):
            assert part in at_connected, part
        monkeypatch.setattr(ctp_gateway, "ORPHAN_TRADE_SECONDS", 0.0)
        env.gateway._release_orphans()  # what the timer does when the hold is over
        await wait_until(lambda: trade_id in [t.trade_id for t in rec.of("trade")], 20, "reported anyway")
        (trade,) = [t for t in rec.of("trade") if t.trade_id == trade_id]
        assert (trade.order_id, trade.vt_symbol, trade.direction, trade.offset) == (
            "ctp-SHFE-900",
            "rb2601.SHFE",
            Direction.SHORT,
            Offset.OPEN,
        )
        assert (trade.volume, trade.price, trade.reference) == (2, 3500, "")
        errors = [m for level, m in rec.of("log") if level == "ERROR"]
        assert len(errors) == 2 and "reported as a trade of order ctp-SHFE-900" in errors[1]
    finally:
        await env.gateway.close()


NOT_READY = {"ErrorID": 90, "ErrorMsg": "CTP:查询未就绪，请稍后重试"}


async def test_an_error_answer_is_not_a_complete_one_and_is_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ctp_queries, "QUERY_RETRY_SECONDS", 0.1)

    def refuse_once(front: fake_ctp.FakeFront) -> None:
        for name in ("orders", "trades", "account", "positions"):
            front.td.query_errors[name] = [dict(NOT_READY)]
        front.td.query_errors["positions"].append(dict(NOT_READY))

    env = await _start(tmp_path, monkeypatch, refuse_once)
    gw, rec, front = env.gateway, env.listener, env.front
    try:
        await wait_until(lambda: rec.status is GatewayStatus.CONNECTED, 20, "CONNECTED")
        connected = rec.events.index(("status", rec.of("status")[-1]))
        # every query was asked again; CONNECTED came with the whole book, nothing flattened
        assert all(front.td.queries.count(name) >= 2 for name in ("orders", "trades", "account"))
        assert front.td.queries.count("positions") >= 3
        before = [data for kind, data in rec.events[:connected] if kind == "position"]
        assert {(p.vt_symbol, p.direction, p.volume) for p in before} == {
            ("rb2601.SHFE", Direction.LONG, 5),
            ("m2605.DCE", Direction.SHORT, 1),
        }
        assert rec.index("account") < connected and rec.order("9_77_2") is not None
        assert "2 positions" in rec.of("status")[-1][1]
        statuses = " ".join(m for s, m in rec.of("status") if s is GatewayStatus.CONNECTING)
        assert "orders query answered with an error (代码：90，信息：CTP:查询未就绪" in statuses
        for name in ("orders", "trades", "account", "positions"):  # once each, not at every retry
            said = [
                m
                for lv, m in rec.of("log")
                if lv == "WARNING" and f"{name} query answered with an error" in m
            ]
            assert len(said) == 1, (name, said)

        # later too: an error answer keeps the positions, the retry brings them again
        mark = len(rec.events)
        asked = front.td.queries.count("positions")
        front.td.query_errors["positions"] = [dict(NOT_READY)]
        gw.query()
        await wait_until(
            lambda: front.td.queries.count("positions") >= asked + 2, 20, "positions asked again"
        )
        await wait_until(lambda: any(k == "position" for k, _ in rec.events[mark:]), 20, "positions again")
        after = [data for kind, data in rec.events[mark:] if kind == "position"]
        assert all(p.volume for p in after), after  # never pushed flat by the error
        assert rec.status is GatewayStatus.CONNECTED
    finally:
        await gw.close()


async def test_a_market_data_front_loss_is_reported_while_trading_goes_on(ctp: Ctp) -> None:
    rec, md = ctp.listener, ctp.front.md
    normal = rec.of("status")[-1]
    assert normal[1].startswith("CTP logged in as 9999/000001")
    ctp.gateway.subscribe("rb2601.SHFE")
    await wait_until(lambda: rec.of("tick"), 20, "a tick")
    md.disconnect(0x2001)
    await wait_until(lambda: "market data" in rec.of("status")[-1][1], 20, "the md loss in the status")
    assert rec.of("status")[-1] == (
        GatewayStatus.CONNECTED,
        "CTP market data front disconnected (heartbeat timeout (8193)); quotes stale, reconnecting "
        "(trade front logged in as 9999/000001)",
    )
    assert any(lv == "WARNING" and "market data front disconnected" in m for lv, m in rec.of("log"))
    mark = len(rec.events)
    md.reconnect()
    await wait_until(lambda: rec.of("status")[-1][1].startswith("CTP logged in as"), 20, "normal message")
    assert rec.status is GatewayStatus.CONNECTED
    await wait_until(lambda: any(k == "tick" for k, _ in rec.events[mark:]), 20, "quotes again")


# ---------------------------------------------------------------- commission rates


def _fills_of(rec: Recorder, order_id: str) -> list[Trade]:
    return [t for t in rec.of("trade") if t.order_id == order_id]


def _has_rates(gw: CtpGateway, vt_symbol: str) -> bool:
    c = gw.get_contract(vt_symbol)
    return c is not None and c.close_today_commission_rate is not None


def test_commission_rate_rows_read_as_ctp_sends_them() -> None:
    row = fake_ctp.commission_row("rb", "SHFE", open_money=0.0001, close_today_money=1.7976931348623157e308)
    rates = CommissionRates.from_row(row)
    assert rates is not None and (rates.open_rate, rates.close_today_rate) == (0.0001, 0.0)  # DBL_MAX: none
    rb = Contract(
        vt_symbol="rb2601.SHFE", symbol="rb2601", exchange=Exchange.SHFE, product="rb", size=10, pricetick=1
    )
    assert rates.covers(rb)
    assert not rates.covers(Contract(**{**_fields(rb), "exchange": Exchange.DCE}))  # another exchange's rb
    assert CommissionRates.from_row({"InstrumentID": "", "OpenRatioByMoney": 0.1}) is None


async def test_commission_rates_are_asked_after_connected_once_per_product_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ctp_queries, "COMMISSION_QUERY_INTERVAL", 0.2)
    env = await _start(tmp_path, monkeypatch)
    gw, rec, front = env.gateway, env.listener, env.front
    try:
        await wait_until(lambda: rec.status is GatewayStatus.CONNECTED, 20, "CONNECTED")
        gw.subscribe("rb2605.SHFE")  # rb: asked for the position already
        gw.subscribe("au2612.SHFE")
        gw.subscribe("m2605-C-3000.DCE")  # an option: not a contract here, never asked
        everything = ("rb2601.SHFE", "rb2605.SHFE", "m2605.DCE", "au2612.SHFE")
        await wait_until(lambda: all(_has_rates(gw, vt) for vt in everything), 20, "every contract's rates")

        # the positions' contracts first, then the subscription; one query per product
        assert [symbol for _, symbol in front.td.rate_requests] == ["rb2601", "m2605", "au2612"]
        # after the day's queries (CONNECTED never waits for rates) ...
        first = front.td.queries.index("commission:rb2601")
        assert {"orders", "trades", "account", "positions"} <= set(front.td.queries[:first])
        connected = next(
            i for i, (k, d) in enumerate(rec.events) if k == "status" and d[0] is GatewayStatus.CONNECTED
        )
        assert all(c.commission_rate == 0 for k, c in rec.events[:connected] if k == "contract")
        # ... one at a time: each asked once the previous one is answered, and paced
        requests, answers = front.td.rate_requests, front.td.rate_answers
        for (asked, _), (answered, _), (following, _) in zip(requests, answers, requests[1:], strict=False):
            assert answered <= following
            assert following - asked >= 0.2 - 0.005

        rb, rb5, m, au = (gw.get_contract(vt) for vt in everything)
        assert (rb.commission_rate, rb.close_commission_rate, rb.close_today_commission_rate) == (0.0001,) * 3
        assert (rb.commission_per_lot, rb.close_commission_per_lot, rb.close_today_commission_per_lot) == (
            0,
        ) * 3
        assert rb5.commission_rate == 0.0001 and rb5.margin_ratio == 0.1  # rb's row serves rb2605 too
        assert (m.commission_per_lot, m.close_commission_per_lot, m.close_today_commission_per_lot) == (
            1.5,
        ) * 3
        assert (au.commission_per_lot, au.close_commission_per_lot, au.close_today_commission_per_lot) == (
            2.0,
            2.0,
            0.0,
        )
        # pushed again to the listener, each once
        pushed = [c.vt_symbol for k, c in rec.events[connected:] if k == "contract"]
        assert sorted(pushed) == sorted(everything)

        # a known product is not asked again, whatever asks for it
        gw.subscribe("rb2605.SHFE")
        order_id = gw.send_order(
            OrderRequest(
                vt_symbol="au2612.SHFE", direction=Direction.LONG, offset=Offset.OPEN, price=600.02, volume=1
            )
        )
        await wait_until(lambda: _fills_of(rec, order_id), 20, "the au fill")
        assert _fills_of(rec, order_id)[0].commission == 2.0
        assert len(front.td.rate_requests) == 3

        # a new login: the contracts come again with their rates, nothing is asked again
        mark = len(rec.events)
        front.td.disconnect()

        def statuses() -> list[GatewayStatus]:  # the history: the fake front reconnects at once
            return [d[0] for k, d in rec.events[mark:] if k == "status"]

        await wait_until(lambda: GatewayStatus.DISCONNECTED in statuses(), 20, "DISCONNECTED")
        await wait_until(lambda: statuses()[-1] is GatewayStatus.CONNECTED, 20, "CONNECTED again")
        again = {c.vt_symbol: c for k, c in rec.events[mark:] if k == "contract"}
        assert set(again) == set(everything) and all(
            c.close_today_commission_rate is not None for c in again.values()
        )
        assert len(front.td.rate_requests) == 3
    finally:
        await gw.close()


async def test_fills_carry_the_commission_of_their_own_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ctp_queries, "COMMISSION_QUERY_INTERVAL", 0.05)
    monkeypatch.setattr(ctp_commission, "COMMISSION_HOLD_SECONDS", 30.0)  # held until answered, however slow

    def m2605_own_rates(front: fake_ctp.FakeFront) -> None:  # an instrument's own row, close != open
        row = fake_ctp.commission_row(
            "m2605", "DCE", open_volume=1.5, close_volume=1.0, close_today_volume=0.5
        )
        front.commission_rates["m2605"] = row

    env = await _start(tmp_path, monkeypatch, m2605_own_rates)
    gw, rec, front = env.gateway, env.listener, env.front
    try:
        await wait_until(lambda: rec.status is GatewayStatus.CONNECTED, 20, "CONNECTED")
        await wait_until(lambda: _has_rates(gw, "rb2601.SHFE") and _has_rates(gw, "m2605.DCE"), 20, "rates")
        m = gw.get_contract("m2605.DCE")
        assert (m.commission_per_lot, m.close_commission_per_lot, m.close_today_commission_per_lot) == (
            1.5,
            1.0,
            0.5,
        )
        charged_before = front.commission
        ours: list[str] = []

        # another terminal buys au, whose rates nobody asked for yet: the fill waits for them
        other = front.external_order("au2612", "0", "0", 600.02, 1, session=66)
        front.update_order(other, OrderStatus="0", VolumeTraded=1, VolumeTotal=0, StatusMsg="全部成交")
        front.fill(other, 600.02, 1)
        other_id = f"5_66_{other['OrderRef']}"
        await wait_until(lambda: _fills_of(rec, other_id), 20, "the au fill")
        (fill,) = _fills_of(rec, other_id)
        assert (fill.offset, fill.commission) == (Offset.OPEN, 2.0)
        au_rates = next(
            i
            for i, (k, d) in enumerate(rec.events)
            if k == "contract" and d.vt_symbol == "au2612.SHFE" and d.commission_per_lot
        )
        assert au_rates < rec.events.index(("trade", fill))  # reported once the rates were known
        assert "commission:au2612" in front.td.queries

        # closing today's au lot on SHFE: close-today, at the close-today rate (0, not 2)
        req = OrderRequest(
            vt_symbol="au2612.SHFE",
            direction=Direction.SHORT,
            offset=Offset.CLOSETODAY,
            price=600.0,
            volume=1,
        )
        ours.append(gw.send_order(req))
        await wait_until(lambda: _fills_of(rec, ours[-1]), 20, "the au close")
        (fill,) = _fills_of(rec, ours[-1])
        assert (fill.offset, fill.commission) == (Offset.CLOSETODAY, 0.0)

        # rb: close-today 2 (two fills) and close-yesterday 1, at 0.0001 of the turnover
        req = OrderRequest(
            vt_symbol="rb2601.SHFE", direction=Direction.SHORT, offset=Offset.CLOSETODAY, price=3500, volume=2
        )
        first = gw.send_order(req)
        second = gw.send_order(OrderRequest(**{**_fields(req), "offset": Offset.CLOSEYESTERDAY, "volume": 1}))
        ours += [first, second]
        await wait_until(
            lambda: len(_fills_of(rec, first) + _fills_of(rec, second)) == 3, 20, "the rb closes"
        )
        fees = sorted(
            (t.offset.name, t.volume, round(t.commission, 6))
            for t in _fills_of(rec, first) + _fills_of(rec, second)
        )
        assert fees == [("CLOSETODAY", 1, 3.5), ("CLOSETODAY", 1, 3.5), ("CLOSEYESTERDAY", 1, 3.5)]

        # DCE: buying back yesterday's short is a CLOSE, at m2605's own close rate
        req = OrderRequest(
            vt_symbol="m2605.DCE", direction=Direction.LONG, offset=Offset.CLOSE, price=2801, volume=1
        )
        ours.append(gw.send_order(req))
        await wait_until(lambda: _fills_of(rec, ours[-1]), 20, "the m close")
        assert [(t.offset, t.commission) for t in _fills_of(rec, ours[-1])] == [(Offset.CLOSE, 1.0)]

        # what we recorded per fill is what the broker charged
        recorded = sum(t.commission for i in [other_id, *ours] for t in _fills_of(rec, i))
        assert recorded == pytest.approx(front.commission - charged_before)
        assert not [m for level, m in rec.of("log") if level in ("WARNING", "ERROR") and "commission 0" in m]
    finally:
        await gw.close()


async def test_failing_or_empty_commission_answers_leave_trading_unaffected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ctp_queries, "COMMISSION_QUERY_INTERVAL", 0.05)
    monkeypatch.setattr(ctp_queries, "QUERY_TIMEOUT_SECONDS", 0.3)
    monkeypatch.setattr(ctp_commission, "COMMISSION_HOLD_SECONDS", 0.2)
    attempts = ctp_commission.COMMISSION_QUERY_ATTEMPTS

    def trouble(front: fake_ctp.FakeFront) -> None:
        del front.commission_rates["rb"]  # the broker has no rates for rb: an empty answer
        front.td.query_errors["commission:m2605"] = [dict(NOT_READY) for _ in range(attempts)]
        front.td.unanswered.add("commission:au2612")  # never answered

    env = await _start(tmp_path, monkeypatch, trouble)
    gw, rec, front = env.gateway, env.listener, env.front

    def warnings(part: str) -> list[str]:
        return [m for level, m in rec.of("log") if level == "WARNING" and part in m]

    try:
        await wait_until(lambda: rec.status is GatewayStatus.CONNECTED, 20, "CONNECTED")
        await wait_until(lambda: warnings("commission rates of m2605.DCE"), 20, "m given up")
        assert front.td.queries.count("commission:m2605") == attempts
        assert front.td.queries.count("commission:rb2601") == 1  # an empty answer is final
        (empty,) = warnings("no commission rates for rb2601.SHFE")
        assert "commission 0" in empty
        (failed,) = warnings("commission rates of m2605.DCE")
        assert "查询未就绪" in failed and f"({attempts} attempts)" in failed

        # trading goes on: an order fills at once (nothing held), with commission 0
        buy = OrderRequest(
            vt_symbol="m2605.DCE", direction=Direction.LONG, offset=Offset.OPEN, price=2801, volume=2
        )
        bought = gw.send_order(buy)
        await wait_until(lambda: len(_fills_of(rec, bought)) == 2, 20, "both fills")
        assert [t.commission for t in _fills_of(rec, bought)] == [0.0, 0.0]
        await wait_until(
            lambda: any(
                p.vt_symbol == "m2605.DCE" and p.direction is Direction.LONG for p in rec.of("position")
            ),
            20,
            "the new position",
        )

        # a fill of a contract whose rates never come: held a moment, then reported with 0
        other = front.external_order("au2612", "1", "0", 600.0, 1, session=66)
        front.fill(other, 600.0, 1)
        other_id = f"5_66_{other['OrderRef']}"
        await wait_until(lambda: _fills_of(rec, other_id), 20, "the au fill")
        assert _fills_of(rec, other_id)[0].commission == 0.0
        assert len(warnings("commission rates not known within 0.2 s")) == 1
        await wait_until(lambda: warnings("commission rates of au2612.SHFE"), 20, "au given up")
        assert "no answer in 0.3 s" in warnings("commission rates of au2612.SHFE")[0]
        assert front.td.queries.count("commission:au2612") == attempts
        assert rec.status is GatewayStatus.CONNECTED
        for part in ("rb2601", "m2605", "au2612"):  # said once each
            assert len([m for m in warnings(part) if "commission" in m and "not known" not in m]) == 1, part

        # the next login asks again what failed (not what was answered empty)
        front.td.unanswered.clear()
        front.td.disconnect()
        await wait_until(lambda: rec.status is GatewayStatus.DISCONNECTED, 20, "DISCONNECTED")
        await wait_until(
            lambda: _has_rates(gw, "m2605.DCE") and _has_rates(gw, "au2612.SHFE"), 20, "asked again"
        )
        assert front.td.queries.count("commission:rb2601") == 1
        trade_ids = [t.trade_id for t in rec.of("trade")]
        assert len(trade_ids) == len(set(trade_ids))  # nothing reported twice
    finally:
        await gw.close()


async def test_a_held_fill_is_reported_when_the_gateway_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ctp_queries, "COMMISSION_QUERY_INTERVAL", 0.05)
    monkeypatch.setattr(ctp_commission, "COMMISSION_HOLD_SECONDS", 600.0)
    env = await _start(tmp_path, monkeypatch, lambda f: f.td.unanswered.add("commission:au2612"))
    gw, rec, front = env.gateway, env.listener, env.front
    try:
        await wait_until(lambda: rec.status is GatewayStatus.CONNECTED, 20, "CONNECTED")
        other = front.external_order("au2612", "0", "0", 600.02, 1, session=66)
        front.fill(other, 600.02, 1)
        await wait_until(lambda: "commission:au2612" in front.td.queries, 20, "au asked")
        await wait_until(lambda: gw._held.trades, 20, "the fill held")
        assert not _fills_of(rec, f"5_66_{other['OrderRef']}")
    finally:
        await gw.close()
    (fill,) = _fills_of(rec, f"5_66_{other['OrderRef']}")
    assert (fill.volume, fill.price, fill.commission) == (1, 600.02, 0.0)


# ====================================================================== real trader processes


@pytest.fixture(autouse=True)
def _ctp_password_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A configuration file names secrets by variable; a trader process inherits it."""
    monkeypatch.setenv("QT_TEST_CTP_PASSWORD", PASSWORD)


def _ctp_account(
    account_id: str, userid: str = "000001", *, td: str = "tcp://127.0.0.1:1", timeout: float = 5
) -> str:
    return f"""
  - account_id: {account_id}
    gateway: ctp
    ctp:
      userid: "{userid}"
      password: "${{QT_TEST_CTP_PASSWORD}}"
      brokerid: "9999"
      td_address: "{td}"
      md_address: "tcp://127.0.0.1:2"
      connect_timeout: {timeout}
    # the fake front trades at any hour: no session rule (core/sessions.py)
    risk: {{market_hours: false}}
    watchlist: [rb2601.SHFE, m2605.DCE]
"""


@pytest.fixture
def fake_front_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trader processes inherit the seam, and find ``tests`` on their path."""
    monkeypatch.setenv(FAKE_FRONT_ENV, "tests.fake_ctp:install")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    )


async def _manager(core_env: CoreEnv, accounts: str) -> TradingManager:
    config = core_env.write_config(accounts)
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    await mgr.start()
    return mgr


def _order_ids(state: Any, before: set[str]) -> list[str]:
    return [i for i in state.orders if i not in before]


@pytest.mark.usefixtures("fake_front_env")
async def test_a_ctp_trader_under_the_manager(core_env: CoreEnv) -> None:
    mgr = await _manager(core_env, _ctp_account("CT1"))
    try:
        state = mgr.state("CT1")
        await wait_until(
            lambda: state.status is TraderStatus.CONNECTED and len(state.ticks) == 2,
            20,
            "CT1 connected with quotes",
        )
        assert {"rb2601.SHFE", "m2605.DCE", "au2612.SHFE"} <= set(state.contracts)
        tick = state.ticks["rb2601.SHFE"]
        assert (tick.bid_price_1, tick.ask_price_1, tick.pre_settlement) == (3500, 3501, 3495)
        long_rb = state.positions[("rb2601.SHFE", Direction.LONG)]
        assert (long_rb.volume, long_rb.yd_volume) == (5, 3)
        await wait_until(lambda: state.account is not None and state.account.margin > 0, 20, "account")
        assert state.account.pre_balance == 1_000_000
        # another terminal's order and fill of today: recorded, marked external by the trader
        assert state.orders["9_77_1"].status is Status.ALLTRADED

        # the broker's commission rates follow CONNECTED (paced, one query at a time), onto the contracts
        await wait_until(
            lambda: (
                state.contracts["m2605.DCE"].commission_per_lot == 1.5
                and state.contracts["rb2601.SHFE"].commission_rate == 0.0001
            ),
            20,
            "commission rates of the positions' contracts",
        )
        rb = state.contracts["rb2601.SHFE"]
        assert (rb.close_commission_rate, rb.close_today_commission_rate, rb.commission_per_lot) == (
            0.0001,
            0.0001,
            0.0,
        )
        assert state.contracts["rb2605.SHFE"].commission_rate == 0.0001  # the product's row serves it

        # an order through the ask fills in two parts, each with its commission
        known = set(state.orders)
        buy = OrderRequest(
            vt_symbol="m2605.DCE", direction=Direction.LONG, offset=Offset.OPEN, price=2801, volume=2
        )
        reply = await mgr.send_order("CT1", buy)
        assert reply.ok, reply.error
        bought = reply.result["order_id"]
        await wait_until(
            lambda: (
                bought in state.orders
                and state.orders[bought].status is Status.ALLTRADED
                and sum(t.order_id == bought for t in state.trades) == 2
            ),
            20,
        )
        assert sorted((t.volume, t.commission) for t in state.trades if t.order_id == bought) == [
            (1, 1.5),
            (1, 1.5),
        ]
        await wait_until(
            lambda: state.positions.get(("m2605.DCE", Direction.LONG)) is not None, 20, "new position"
        )

        # one below the ask rests until cancelled
        reply = await mgr.send_order("CT1", OrderRequest(**{**_fields(buy), "price": 2790, "volume": 1}))
        assert reply.ok, reply.error
        resting = reply.result["order_id"]
        await wait_until(
            lambda: resting in state.orders and state.orders[resting].status is Status.NOTTRADED, 5
        )
        assert (await mgr.cancel_order("CT1", resting)).ok
        await wait_until(lambda: state.orders[resting].status is Status.CANCELLED, 20, "cancelled")

        # CLOSE 4 of the SHFE long (3 yesterday, 2 today): the trader's close policy sends
        # close-yesterday 3 + close-today 1, and the front gets exactly those
        close = OrderRequest(
            vt_symbol="rb2601.SHFE", direction=Direction.SHORT, offset=Offset.CLOSE, price=3500, volume=4
        )
        reply = await mgr.send_order("CT1", close)
        assert reply.ok, reply.error
        await wait_until(
            lambda: (
                sum(
                    o.status is Status.ALLTRADED and o.vt_symbol == "rb2601.SHFE"
                    for o in state.orders.values()
                )
                >= 3
            ),
            20,
            "both close legs filled",
        )
        log_file = cfg_paths.account_state_dir(core_env.data_dir, "CT1") / fake_ctp.ORDER_LOG
        received = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]
        assert [(r["CombOffsetFlag"], r["VolumeTotalOriginal"]) for r in received[-2:]] == [
            ("4", 3),
            ("3", 1),
        ]
        legs = [
            state.orders[i] for i in _order_ids(state, known) if state.orders[i].vt_symbol == "rb2601.SHFE"
        ]
        assert sorted(o.offset.name for o in legs) == ["CLOSETODAY", "CLOSEYESTERDAY"]
        assert {o.reference for o in legs} == {"manual"}
        await wait_until(
            lambda: (p := state.positions.get(("rb2601.SHFE", Direction.LONG))) is not None and p.volume == 1,
            20,
            "the long position down to 1",
        )

        # the trade front drops (SIGUSR1 to the fake), the api reconnects, the trader follows
        pid = mgr.proxies["CT1"].pid
        assert pid is not None
        seen: list[tuple[GatewayStatus, str]] = []  # every status the trader reports, in order
        mgr.aggregator.subscribe(
            lambda ch: (
                ch.account_id == "CT1"
                and ch.kind == "status"
                and state.info is not None
                and seen.append((state.info.gateway_status, state.info.message))
            )
        )
        os.kill(pid, signal.SIGUSR1)

        def down() -> list[str]:
            return [message for status, message in seen if status is GatewayStatus.DISCONNECTED]

        await wait_until(down, 20, "down")
        assert "network read failed (4097)" in down()[0]
        await wait_until(lambda: seen[-1][0] is GatewayStatus.CONNECTED, 20, "CONNECTED again")
        assert mgr.proxies["CT1"].pid == pid  # the same process: nothing restarted

        # everything is in the account's database, each fill once
        ours = _order_ids(state, known)
        db = AccountDatabase(database_path(core_env.data_dir, "CT1"), readonly=True)
        try:
            orders = {o.order_id: o for o in db.load_orders()}
            trades = db.load_trades()
        finally:
            db.close()
        assert orders[bought].status is Status.ALLTRADED and orders[resting].status is Status.CANCELLED
        assert all(orders[i].status is state.orders[i].status for i in ours)
        ids = [t.trade_id for t in trades]
        assert len(ids) == len(set(ids)) == 1 + 2 + 3  # the other session's, our two, the close's three
        assert orders["9_77_1"].reference == "external"  # the trader's word for it
        # each fill's commission at the broker's rates, by its own offset (rb: 0.0001 of turnover)
        fees = [(t.offset.name, t.volume, round(t.commission, 6)) for t in trades if t.order_id in ours]
        assert sorted(fees) == [
            ("CLOSETODAY", 1, 3.5),
            ("CLOSEYESTERDAY", 1, 3.5),
            ("CLOSEYESTERDAY", 2, 7.0),
            ("OPEN", 1, 1.5),
            ("OPEN", 1, 1.5),
        ]
        # the day's fills pushed before CONNECTED (rates not known yet in a new process) carry 0
        assert next(t.commission for t in trades if t.order_id == "9_77_1") == 0
        # and ours add up to what CTP charged the account
        await wait_until(
            lambda: state.account.commission == pytest.approx(sum(c for _, _, c in fees)),
            20,
            "the account's commission",
        )
    finally:
        await mgr.stop()
    _assert_no_secret_in_logs(core_env, "CT1")


@pytest.mark.usefixtures("fake_front_env")
async def test_nothing_the_venue_did_is_lost_when_a_ctp_worker_is_killed(
    core_env: CoreEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL a CTP trader process; while it is dead the broker fills its resting order and
    another terminal's; the restarted worker logs in to the same day (the fake front's books
    persist, like a broker's) and the trader's reconciliation records exactly what it missed."""
    monkeypatch.setenv(fake_ctp.BOOKS_ENV, "1")
    mgr = await _manager(core_env, _ctp_account("CT4"))
    state_dir = cfg_paths.account_state_dir(core_env.data_dir, "CT4")
    try:
        state = mgr.state("CT4")
        await wait_until(lambda: state.status is TraderStatus.CONNECTED, 20, "CT4 connected")

        # one order fills (two trades), one rests
        buy = OrderRequest(
            vt_symbol="m2605.DCE", direction=Direction.LONG, offset=Offset.OPEN, price=2801, volume=2
        )
        reply = await mgr.send_order("CT4", buy)
        assert reply.ok, reply.error
        filled = reply.result["order_id"]
        reply = await mgr.send_order("CT4", OrderRequest(**{**_fields(buy), "price": 2790, "volume": 1}))
        assert reply.ok, reply.error
        resting = reply.result["order_id"]
        await wait_until(
            lambda: (
                filled in state.orders
                and state.orders[filled].status is Status.ALLTRADED
                and sum(t.order_id == filled for t in state.trades) == 2
                and resting in state.orders
                and state.orders[resting].status is Status.NOTTRADED
            ),
            20,
            "one order filled, one resting",
        )
        recorded = {t.trade_id for t in state.trades}  # on disk before reported (core/trader.py)
        assert len(recorded) == 1 + 2  # the other session's fill of the day, and ours

        # the worker dies; while no worker runs, the broker's day goes on
        pid = mgr.proxies["CT4"].pid
        assert pid is not None
        with fake_ctp.offline_books(state_dir) as broker:  # held: the successor waits for them
            os.kill(pid, signal.SIGKILL)
            await wait_until(lambda: mgr.proxies["CT4"].pid != pid, 20, "the killed worker reaped")
            assert state.restarts == 1
            broker.execute(broker.order(resting), 2790.0)
            # another terminal sells 1 rb2601 close-today, filled at once
            other = broker.external_order("rb2601", "1", "3", 3500.0, 1)
            broker.execute(other, 3500.0)
            external = f"{other['FrontID']}_{other['SessionID']}_{other['OrderRef']}"
            books = {
                (vt_symbol, Direction(direction)): volumes
                for (vt_symbol, direction), volumes in broker.book_positions().items()
            }
        assert books[("rb2601.SHFE", Direction.LONG)] == (4, 3)
        assert books[("m2605.DCE", Direction.LONG)] == (3, 0)

        # the restarted worker: the aggregator shows the broker's day
        def caught_up() -> bool:
            info, order = state.info, state.orders.get(resting)
            return (
                info is not None
                and info.pid not in (None, pid)
                and info.gateway_status is GatewayStatus.CONNECTED
                and order is not None
                and order.status is Status.ALLTRADED
                and {k: (p.volume, p.yd_volume) for k, p in state.positions.items()} == books
            )

        await wait_until(caught_up, 60, "the restarted worker caught up with the broker")
        new_pid = state.info.pid
        order = state.orders[resting]
        assert (order.traded, order.traded_price, order.reference) == (1, 2790.0, "manual")
        assert state.orders[external].reference == "external"
        assert state.orders[external].status is Status.ALLTRADED
        shown = [t.trade_id for t in state.trades]
        assert len(shown) == len(set(shown)) == 1 + 2 + 1 + 1

        # the database: every trade once, references kept or resolved
        db = AccountDatabase(database_path(core_env.data_dir, "CT4"), readonly=True)
        try:
            orders = {o.order_id: o for o in db.load_orders()}
            trades = db.load_trades()
        finally:
            db.close()
        ids = [t.trade_id for t in trades]
        assert len(ids) == len(set(ids)) == 1 + 2 + 1 + 1, ids
        assert recorded < set(ids)
        missed = {t.order_id: t for t in trades if t.trade_id not in recorded}
        assert set(missed) == {resting, external}
        assert (missed[resting].price, missed[resting].volume, missed[resting].reference) == (
            2790,
            1,
            "manual",
        )
        assert (missed[external].price, missed[external].reference) == (3500, "external")
        done = orders[resting]
        assert (done.status, done.traded, done.traded_price, done.reference) == (
            Status.ALLTRADED,
            1,
            2790,
            "manual",
        )
        assert orders[filled].reference == "manual" and orders[filled].status is Status.ALLTRADED
        assert orders[external].reference == "external"

        # the restarted trader's log sums it up
        log_text = (cfg_paths.account_log_dir(core_env.data_dir, "CT4") / "trader.log").read_text("utf-8")
        after = log_text.split(f"starting: gateway ctp, pid {new_pid}\n", 1)[1]
        summary = [line for line in after.splitlines() if "reconciled after start" in line]
        assert len(summary) == 1, summary
        assert "2 missed fill(s) recorded" in summary[0], summary[0]
        assert "1 external order(s)" in summary[0] and "0 working order(s) settled" in summary[0]
        assert "1 order(s) updated" in summary[0], summary[0]  # the resting order, however many notices
    finally:
        await mgr.stop()
    _assert_no_secret_in_logs(core_env, "CT4")


@pytest.mark.usefixtures("fake_front_env")
async def test_a_refused_login_shows_ctps_text_and_the_trader_exits(core_env: CoreEnv) -> None:
    mgr = await _manager(core_env, _ctp_account("CT2", userid=fake_ctp.REFUSED_USER))
    try:
        state = mgr.state("CT2")
        # the manager's part (restart on the venue back-off) is the lead's: see core/manager.py
        await wait_until(  # the trader has exited (its own status says it first, while it stops)
            lambda: state.pid is None and "不合法的登录" in state.status_message, 30, "the refusal, exited"
        )
        assert "代码：3" in state.status_message
        assert PASSWORD not in state.status_message
    finally:
        await mgr.stop()
    _assert_no_secret_in_logs(core_env, "CT2")


async def test_an_unreachable_front_with_the_real_ctp_api(core_env: CoreEnv) -> None:
    mgr = await _manager(core_env, _ctp_account("CT3", td="tcp://127.0.0.1:1", timeout=1))
    try:
        state = mgr.state("CT3")
        await wait_until(lambda: "unreachable" in state.status_message, 20, "the front reported unreachable")
        assert "CTP trade front tcp://127.0.0.1:1 unreachable: no connection in 1 s" in state.status_message
        # the native api's flow files are in the account's own state directory
        folder = cfg_paths.account_state_dir(core_env.data_dir, "CT3") / ".vntrader" / "ctp_ct3"
        flow = {p.name for p in folder.iterdir()}
        assert {"TdDialogRsp.con", "MdDialogRsp.con"} <= flow, flow
    finally:
        await mgr.stop()


def _assert_no_secret_in_logs(core_env: CoreEnv, account_id: str) -> None:
    logs = list(cfg_paths.account_log_dir(core_env.data_dir, account_id).iterdir())
    assert logs
    for path in logs:
        assert PASSWORD not in path.read_text(encoding="utf-8", errors="replace"), path


def _fields(struct: Any) -> dict[str, Any]:
    return {name: getattr(struct, name) for name in struct.__struct_fields__}
