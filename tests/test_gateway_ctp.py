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
from core.manager import TradingManager
from core.models import (
    Account,
    CancelRequest,
    Contract,
    Direction,
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
from gateways import ctp as ctp_module
from gateways.ctp import FAKE_FRONT_ENV, CtpGateway, ctp_order_type, disconnect_reason, vnpy_readable_order
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
    gateway = CtpGateway("UT1", {**SETTINGS, **overrides}, listener, tmp_path)
    front = fake_ctp.FRONTS[gateway.vnpy_name]
    if setup is not None:  # the front's day before the gateway connects
        setup(front)
    await gateway.connect()
    return Ctp(gateway, listener, front)


@pytest.fixture
async def ctp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Ctp]:
    env = await _start(tmp_path, monkeypatch)
    try:
        await wait_until(lambda: env.listener.status is GatewayStatus.CONNECTED, 5, "CONNECTED")
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
    assert set(contracts) == {"rb2601.SHFE", "m2605.DCE", "au2612.SHFE"}  # futures only, not the option
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
    await wait_until(lambda: len([t for t in rec.of("trade") if t.order_id == order_id]) == 2, 5, "two fills")
    await wait_until(lambda: rec.order(order_id).traded_price == 2801, 5, "average price")
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
    await wait_until(lambda: rec.order(resting).status is Status.CANCELLED, 5, "cancelled")
    assert rec.order(resting).status_msg == "已撤单"
    gw.cancel_order(CancelRequest(order_id=resting))  # finished: said so, state pushed again
    assert any("already CANCELLED" in m for _, m in rec.of("log"))


async def test_a_shfe_close_is_split_into_close_today_and_close_yesterday(ctp: Ctp) -> None:
    gw, rec, front = ctp.gateway, ctp.listener, ctp.front
    close = OrderRequest(
        vt_symbol="rb2601.SHFE", direction=Direction.SHORT, offset=Offset.CLOSE, price=3500, volume=3
    )
    first = gw.send_order(close)
    sent = front.requests[-2:]
    assert [(r["CombOffsetFlag"], r["VolumeTotalOriginal"]) for r in sent] == [("3", 2), ("4", 1)]
    second = f"{first.rsplit('_', 1)[0]}_{int(first.rsplit('_', 1)[1]) + 1}"
    await wait_until(
        lambda: all(rec.order(i) and rec.order(i).status is Status.ALLTRADED for i in (first, second))
    )
    assert rec.order(first).offset is Offset.CLOSETODAY and rec.order(second).offset is Offset.CLOSEYESTERDAY
    assert {rec.order(first).reference, rec.order(second).reference} == {"manual"}
    assert any("sent as CLOSETODAY 2" in m for _, m in rec.of("log"))

    # more than is left: refused here with the numbers, nothing sent
    sent_before = len(front.requests)
    refused = gw.send_order(OrderRequest(**{**_fields(close), "volume": 3}))
    assert len(front.requests) == sent_before
    assert rec.order(refused).status is Status.REJECTED
    assert "closable" in rec.order(refused).status_msg and "yesterday 2" in rec.order(refused).status_msg

    # a close-today the front refuses: REJECTED with CTP's reason
    today = gw.send_order(OrderRequest(**{**_fields(close), "offset": Offset.CLOSETODAY, "volume": 1}))
    await wait_until(lambda: rec.order(today) and rec.order(today).status is Status.REJECTED, 5)
    assert "平今仓位不足" in rec.order(today).status_msg and "50" in rec.order(today).status_msg


async def test_depth_market_data_becomes_ticks(ctp: Ctp) -> None:
    ctp.gateway.subscribe("rb2601.SHFE")
    ctp.gateway.subscribe("rb2601")  # malformed: a warning, nothing else
    await wait_until(lambda: len(ctp.listener.of("tick")) >= 2, 5, "two ticks")
    tick = ctp.listener.of("tick")[-1]
    assert tick.vt_symbol == "rb2601.SHFE" and tick.datetime.utcoffset().total_seconds() == 8 * 3600
    assert (tick.bid_price_1, tick.ask_price_1, tick.bid_volume_1, tick.ask_volume_1) == (3500, 3501, 10, 12)
    assert (tick.last_price, tick.pre_settlement, tick.limit_up, tick.limit_down) == (3500, 3495, 3740, 3250)
    assert tick.open_interest == 150_000 and tick.last_volume == 1
    assert any("rb2601" in m and "symbol.EXCHANGE" in m for _, m in ctp.listener.of("log"))


async def test_a_failing_handler_never_stops_the_events(ctp: Ctp) -> None:
    from vnpy.event import Event
    from vnpy.trader.event import EVENT_ORDER

    rec = ctp.listener
    rec.fail_next_tick = True
    ctp.gateway._engine.put(Event(EVENT_ORDER, object()))  # what no mapping can read
    ctp.gateway.subscribe("m2605.DCE")
    await wait_until(lambda: len(rec.of("tick")) >= 3, 5, "ticks after the failures")
    errors = [m for level, m in rec.of("log") if level == "ERROR"]
    assert any("listener bug" in m for m in errors) and any(EVENT_ORDER in m for m in errors)

    ctp.gateway._gateway.write_log(f"echo of {PASSWORD} and {AUTH_CODE}")  # scrubbed on the way out
    await wait_until(lambda: any("echo of ***" in m for _, m in rec.of("log")), 5)


async def test_a_front_disconnect_and_reconnect(ctp: Ctp) -> None:
    rec = ctp.listener
    before = {o.order_id: o.status for o in rec.of("order")}
    ctp.front.td.disconnect(0x1001)
    await wait_until(lambda: rec.status is GatewayStatus.DISCONNECTED, 5, "DISCONNECTED")
    assert rec.of("status")[-1][1] == "CTP trade front disconnected: network read failed (4097); reconnecting"
    mark = len(rec.events)
    await wait_until(lambda: rec.status is GatewayStatus.CONNECTED, 5, "CONNECTED again")
    # the replayed day changed nothing: no order went back, no fill twice
    assert {o.order_id: o.status for o in rec.of("order")} == before
    again = [data for kind, data in rec.events[mark:] if kind == "order"]
    assert {o.order_id for o in again} == set(before)  # every order listed again before CONNECTED
    trade_ids = [t.trade_id for t in rec.of("trade")]
    assert len(trade_ids) == len(set(trade_ids))


async def test_login_refused_is_fatal_with_ctps_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = await _start(tmp_path, monkeypatch, userid=fake_ctp.REFUSED_USER)
    try:
        await wait_until(lambda: env.listener.of("fatal"), 5, "on_fatal")
        (reason,) = env.listener.of("fatal")
        assert (
            reason == "CTP login failed for 9999/refused: 交易服务器登录失败，代码：3，信息：CTP:不合法的登录"
        )
        assert GatewayStatus.CONNECTED not in [s for s, _ in env.listener.of("status")]
    finally:
        await env.gateway.close()
    assert not any(PASSWORD in t or AUTH_CODE in t for t in env.listener.texts())


async def test_a_login_never_answered_is_fatal_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = await _start(tmp_path, monkeypatch, userid=fake_ctp.SILENT_USER, connect_timeout=0.5)
    try:
        await wait_until(lambda: env.listener.of("fatal"), 5, "on_fatal")
        (reason,) = env.listener.of("fatal")
        assert (
            reason == "CTP trade front tcp://127.0.0.1:1 connected, but the login was not answered in 0.5 s"
        )
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
    await wait_until(lambda: set(threading.enumerate()) <= before, 5, "threads gone")
    assert env.listener.status is GatewayStatus.DISCONNECTED


def test_disconnect_reasons_read_well() -> None:
    assert disconnect_reason("交易服务器连接断开，原因4097") == "network read failed (4097)"
    assert disconnect_reason("交易服务器连接断开，原因：8193") == "heartbeat timeout (8193)"
    assert disconnect_reason("交易服务器连接断开，原因7") == "reason 7"


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
    await wait_until(lambda: (o := rec.order(market_id)) and o.status is Status.CANCELLED, 5, "market order")
    order = rec.order(market_id)
    assert (order.type, order.traded, order.volume, order.reference) == (OrderType.MARKET, 1, 2, "")
    assert order.status_msg == "部分成交不在队列中"
    await wait_until(lambda: [t for t in rec.of("trade") if t.order_id == market_id], 5, "its fill")
    (fill,) = [t for t in rec.of("trade") if t.order_id == market_id]
    assert (fill.vt_symbol, fill.direction, fill.volume, fill.price) == (
        "rb2601.SHFE",
        Direction.LONG,
        1,
        3501,
    )
    await wait_until(lambda: rec.order(market_id).traded_price == 3501, 5, "average price")
    assert rec.order(dce_id).status is Status.NOTTRADED
    assert not [t for t in rec.of("trade") if t.order_id == dce_id]  # not credited SHFE's fill

    # a DCE fill notified before its BestPrice order: held, then reported with the order
    best = front.external_order("m2605", "0", "0", 0.0, 1, sysid="501", push=False, OrderPriceType="3")
    front.fill(best, 2801.0, 1)
    front.update_order(best, OrderStatus="0", StatusMsg="全部成交")
    best_id = "5_88_3"
    await wait_until(lambda: [t for t in rec.of("trade") if t.order_id == best_id], 5, "the held fill")
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
    await wait_until(lambda: (o := rec.order("5_88_4")) and o.status is Status.REJECTED, 5, "refused")
    assert rec.order("5_88_4").status_msg == "报单被拒绝"
    await wait_until(lambda: rec.order(dce_id).status is Status.CANCELLED, 5, "DCE order cancelled")
    assert not [m for level, m in rec.of("log") if level == "ERROR"]
    trade_ids = [t.trade_id for t in rec.of("trade")]
    assert len(trade_ids) == len(set(trade_ids)) == 3  # the other session's, and these two


async def test_a_trade_whose_order_never_comes_is_logged_then_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # held for long enough that CONNECTED surely comes first, however slow the machine
    monkeypatch.setattr(ctp_module, "ORPHAN_TRADE_SECONDS", 600.0)
    env = await _start(tmp_path, monkeypatch, lambda f: f.orphan_trade("rb2601", "1", "0", 3500.0, 2, "900"))
    rec = env.listener
    try:
        await wait_until(lambda: rec.status is GatewayStatus.CONNECTED, 5, "CONNECTED")
        trade_id = f"{_trading_day(env)}.SHFE.2"  # the seeded session's is SHFE's 1
        assert trade_id not in [t.trade_id for t in rec.of("trade")]  # held: no order to tie it to
        (at_connected,) = [m for level, m in rec.of("log") if level == "ERROR"]  # once: replay and query
        for part in (trade_id, "sell 2 rb2601 @ 3500", "OrderSysID 900", "ctp-SHFE-900"):
            assert part in at_connected, part
        monkeypatch.setattr(ctp_module, "ORPHAN_TRADE_SECONDS", 0.0)
        env.gateway._release_orphans()  # what the timer does when the hold is over
        await wait_until(lambda: trade_id in [t.trade_id for t in rec.of("trade")], 5, "reported anyway")
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
    monkeypatch.setattr(ctp_module, "QUERY_RETRY_SECONDS", 0.1)

    def refuse_once(front: fake_ctp.FakeFront) -> None:
        for name in ("orders", "trades", "account", "positions"):
            front.td.query_errors[name] = [dict(NOT_READY)]
        front.td.query_errors["positions"].append(dict(NOT_READY))

    env = await _start(tmp_path, monkeypatch, refuse_once)
    gw, rec, front = env.gateway, env.listener, env.front
    try:
        await wait_until(lambda: rec.status is GatewayStatus.CONNECTED, 5, "CONNECTED")
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
        await wait_until(lambda: front.td.queries.count("positions") >= asked + 2, 5, "positions asked again")
        await wait_until(lambda: any(k == "position" for k, _ in rec.events[mark:]), 5, "positions again")
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
    await wait_until(lambda: rec.of("tick"), 5, "a tick")
    md.disconnect(0x2001)
    await wait_until(lambda: "market data" in rec.of("status")[-1][1], 5, "the md loss in the status")
    assert rec.of("status")[-1] == (
        GatewayStatus.CONNECTED,
        "CTP market data front disconnected (heartbeat timeout (8193)); quotes stale, reconnecting "
        "(trade front logged in as 9999/000001)",
    )
    assert any(lv == "WARNING" and "market data front disconnected" in m for lv, m in rec.of("log"))
    mark = len(rec.events)
    md.reconnect()
    await wait_until(lambda: rec.of("status")[-1][1].startswith("CTP logged in as"), 5, "normal message")
    assert rec.status is GatewayStatus.CONNECTED
    await wait_until(lambda: any(k == "tick" for k, _ in rec.events[mark:]), 5, "quotes again")


# ====================================================================== real trader processes


def _ctp_account(
    account_id: str, userid: str = "000001", *, td: str = "tcp://127.0.0.1:1", timeout: float = 5
) -> str:
    return f"""
  - account_id: {account_id}
    gateway: ctp
    ctp:
      userid: "{userid}"
      password: "{PASSWORD}"
      brokerid: "9999"
      td_address: "{td}"
      md_address: "tcp://127.0.0.1:2"
      connect_timeout: {timeout}
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
        await wait_until(lambda: state.account is not None and state.account.margin > 0, 5, "account")
        assert state.account.pre_balance == 1_000_000
        # another terminal's order and fill of today: recorded, marked external by the trader
        assert state.orders["9_77_1"].status is Status.ALLTRADED

        # an order through the ask fills in two parts
        known = set(state.orders)
        buy = OrderRequest(
            vt_symbol="m2605.DCE", direction=Direction.LONG, offset=Offset.OPEN, price=2801, volume=2
        )
        reply = await mgr.send_order("CT1", buy)
        assert reply.ok, reply.error
        bought = reply.result["order_id"]
        await wait_until(
            lambda: bought in state.orders and state.orders[bought].status is Status.ALLTRADED, 5
        )
        assert sorted(t.volume for t in state.trades if t.order_id == bought) == [1, 1]
        await wait_until(
            lambda: state.positions.get(("m2605.DCE", Direction.LONG)) is not None, 10, "new position"
        )

        # one below the ask rests until cancelled
        reply = await mgr.send_order("CT1", OrderRequest(**{**_fields(buy), "price": 2790, "volume": 1}))
        assert reply.ok, reply.error
        resting = reply.result["order_id"]
        await wait_until(
            lambda: resting in state.orders and state.orders[resting].status is Status.NOTTRADED, 5
        )
        assert (await mgr.cancel_order("CT1", resting)).ok
        await wait_until(lambda: state.orders[resting].status is Status.CANCELLED, 5, "cancelled")

        # CLOSE 3 of the SHFE long (2 today, 3 yesterday): close-today 2 + close-yesterday 1 at the front
        close = OrderRequest(
            vt_symbol="rb2601.SHFE", direction=Direction.SHORT, offset=Offset.CLOSE, price=3500, volume=3
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
            5,
            "both close legs filled",
        )
        log_file = cfg_paths.account_state_dir(core_env.data_dir, "CT1") / fake_ctp.ORDER_LOG
        received = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]
        assert [(r["CombOffsetFlag"], r["VolumeTotalOriginal"]) for r in received[-2:]] == [
            ("3", 2),
            ("4", 1),
        ]
        legs = [
            state.orders[i] for i in _order_ids(state, known) if state.orders[i].vt_symbol == "rb2601.SHFE"
        ]
        assert sorted(o.offset.name for o in legs) == ["CLOSETODAY", "CLOSEYESTERDAY"]
        assert {o.reference for o in legs} == {"manual"}
        await wait_until(
            lambda: (p := state.positions.get(("rb2601.SHFE", Direction.LONG))) is not None and p.volume == 2,
            10,
            "the long position down to 2",
        )

        # the trade front drops (SIGUSR1 to the fake), the api reconnects, the trader follows
        pid = mgr.proxies["CT1"].pid
        assert pid is not None
        os.kill(pid, signal.SIGUSR1)
        await wait_until(
            lambda: state.info is not None and state.info.gateway_status is GatewayStatus.DISCONNECTED,
            5,
            "down",
        )
        assert "network read failed (4097)" in state.info.message
        await wait_until(lambda: state.info.gateway_status is GatewayStatus.CONNECTED, 10, "CONNECTED again")
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
            5,
            "one order filled, one resting",
        )
        recorded = {t.trade_id for t in state.trades}  # on disk before reported (core/trader.py)
        assert len(recorded) == 1 + 2  # the other session's fill of the day, and ours

        # the worker dies; while no worker runs, the broker's day goes on
        pid = mgr.proxies["CT4"].pid
        assert pid is not None
        with fake_ctp.offline_books(state_dir) as broker:  # held: the successor waits for them
            os.kill(pid, signal.SIGKILL)
            await wait_until(lambda: mgr.proxies["CT4"].pid != pid, 5, "the killed worker reaped")
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

        await wait_until(caught_up, 10, "the restarted worker caught up with the broker")
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
        await wait_until(lambda: "不合法的登录" in state.status_message, 20, "the refusal in the status")
        assert "代码：3" in state.status_message and state.pid is None
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
