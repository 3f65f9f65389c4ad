"""CtpGateway: a CTP futures account through vnpy_ctp, driven by a bare vnpy ``EventEngine``.

vnpy_ctp's ``CtpGateway`` does the CTP protocol; this adapter runs it inside the trader process
and turns its world into ours:

- **Threads.** The CTP api calls back on its own threads and vnpy_ctp puts what it makes of
  those callbacks on the EventEngine's queue; the EventEngine's thread hands every event to
  the trader's asyncio loop with ``loop.call_soon_threadsafe`` and does nothing else, so the
  listener, our caches and vnpy's ``OffsetConverter`` are only ever touched on the loop. Each
  handler on either side is wrapped: vnpy's EventEngine thread dies silently when a handler
  raises, and one bad event must never stop the ones behind it (the error goes to ``on_log``).
  vnpy's ``MainEngine`` is never used (it changes the process's directory).
- **Status from log text.** vnpy_ctp reports connection and login only as log lines
  (``交易服务器连接成功``, ``交易服务器登录失败，代码：3，信息：...``, ``交易服务器连接断开，原因4097``
  ...). They drive ``on_status``: CONNECTING from ``connect`` through front connection,
  authentication, login, settlement confirmation and the instrument query; then, still
  CONNECTING, four queries in a row: today's orders (``ReqQryOrder``), today's trades
  (``ReqQryTrade``), funds and positions. CONNECTED follows the position answer, so everything
  of the day has been pushed before it (``gateways/base.py``). The private flow is also
  subscribed in RESTART mode, as vnpy_ctp does, so the day's order and trade notices replay at
  every login; the queries make the list complete whatever the flow delivers. Each query is sent when the previous one has answered (CTP
  allows one in flight, about one a second) and is resent after ``QUERY_RETRY_SECONDS`` when
  CTP refuses it for flow control or answers it with an error (``查询未就绪`` ...: an error
  answer is never taken for a complete one, so positions are not flattened by it), or after
  ``QUERY_TIMEOUT_SECONDS`` without an answer.
  A front disconnect is DISCONNECTED with a readable reason; the CTP api reconnects by itself
  and the sequence starts again from CONNECTING. The market data front is separate: its loss
  leaves the status CONNECTED (trading goes on) but says so in the status message and a
  WARNING (quotes are stale) until it logs in again.
- **Refusals are fatal.** A failed login or authentication is ``on_fatal`` with CTP's own text
  (vnpy_ctp never retries either), and so is a trade front that does not connect within
  ``connect_timeout`` seconds (15 by default) of ``connect``, or connects but does not answer
  the login in that time: the trader exits and its manager restarts it on the venue back-off.
  A front lost later is the api's to reconnect (no timeout).
- **Ids.** An order id is vnpy_ctp's ``frontid_sessionid_orderref``. CTP numbers trades per
  exchange per trading day, so a trade id is ``{trading_day}.{exchange}.{TradeID}``. CTP does
  not carry our ``reference``: orders sent by this process get theirs back from a map kept by
  ``send_order``; any other order (earlier process, another terminal) is reported with
  ``reference=""`` for the trader to resolve. A snapshot older than one already reported
  (the RESTART replay after a reconnect walks the day's notices again) is never reported as
  news: the newer state we hold is pushed again instead, so no order goes backwards.
- **No fill is lost.** A trade is tied to its order by (``ExchangeID``, ``OrderSysID``)
  (exchanges number orders independently; vnpy_ctp's own map is by ``OrderSysID`` alone and is
  only set from ours, trade by trade). vnpy_ctp drops an order whose type or status it cannot
  map (another terminal's market order, BestPrice, statuses 2/4, conditional orders); such an
  order is reported anyway with the closest type and the status CTP means (2 and 4 are finished:
  CANCELLED, or REJECTED when refused), so its fills are too. A trade whose order is not known
  yet is held for it; one still held at CONNECTED is logged at ERROR, and any held
  ``ORPHAN_TRADE_SECONDS`` is reported as a trade of order ``ctp-{exchange}-{OrderSysID}``
  (which the trader records as external). A broker's forced close is reported as a CLOSE.
- **Closes.** ``send_order`` with ``Offset.CLOSE`` on SHFE/INE goes through vnpy's
  ``OffsetConverter`` (fed with positions, orders and trades as vnpy's OmsEngine feeds it):
  close-today first, then close-yesterday. When that takes two CTP orders, both are sent and
  both are reported through ``on_order`` with the request's reference; ``send_order`` returns
  the first id and logs the split. A close larger than the converter's closable volume is
  refused locally (a REJECTED order with the numbers), never sent in part.
- **Positions** are one row per (contract, direction) like the sim's: vnpy_ctp already merges
  SHFE/INE's today and history rows (``volume`` = both, ``yd_volume`` = the history row);
  ``margin`` and ``yd_frozen`` come from CTP's rows. After each complete position answer, a
  position that CTP no longer lists is pushed flat.
- **Contracts**: futures only (vnpy_ctp also lists options and spreads, which the console
  does not trade); ``margin_ratio`` is the exchange's from the instrument query; commission
  rates as below. **Ticks** carry level 1 (``Tick`` has no deeper levels), limits, volume,
  open interest and the pre-settlement price; ``last_volume`` is the volume since the previous
  tick.
- **Commissions.** The broker's rates (``ReqQryInstrumentCommissionRate``) are asked for the
  contracts that matter: those with a position (at each complete position answer), those
  subscribed (the watchlist, ``subscribe``), and any contract an order is sent for or a fill
  arrives for. They are asked only once the gateway is CONNECTED (CONNECTED never waits for
  them), one query at a time in the same chain as the other queries, each at least
  ``COMMISSION_QUERY_INTERVAL`` seconds after the chain's previous request (CTP allows about one
  query a second; vnpy's own periodic funds/positions queries are not counted). CTP answers
  with the instrument's own row (InstrumentID ``rb2610``) or, usually, its product's (``rb``):
  a product's row serves all its contracts, so a product is asked once; an instrument's row
  serves that instrument alone. The rates go onto the ``Contract`` (``...ByMoney`` ->
  ``*_commission_rate``, ``...ByVolume`` -> ``*_commission_per_lot``; open, close, close-today)
  and every contract they change is pushed again through ``on_contract``. An empty answer
  is final (a WARNING, commission 0 for that product); an error answer or silence
  (``QUERY_TIMEOUT_SECONDS``) is asked again, up to ``COMMISSION_QUERY_ATTEMPTS`` times, then
  given up with a WARNING (commission 0) until the next login asks again. A fill's
  ``commission`` is ``Contract.commission(price, volume, offset)`` with the fill's own offset
  (SHFE/INE report CLOSETODAY / CLOSEYESTERDAY; the other exchanges report CLOSE, charged at
  the close rate even when the exchange closed today's lots). A fill whose rates are still
  being asked, once CONNECTED, is held for them (its query goes first) at most
  ``COMMISSION_HOLD_SECONDS`` and is then reported with commission 0 and a WARNING; fills
  pushed before CONNECTED (the day's, at each login) are never held: they carry the rates
  known from an earlier login of the process, else 0. Held fills are reported at ``close`` and
  before ``on_fatal``, never dropped. The account's ``Commission`` is CTP's own either way.

Flow files: vnpy_ctp writes them under ``<vnpy's .vntrader>/ctp_<account>`` (the vnpy gateway
is named ``CTP_<account_id>``). vnpy picks ``.vntrader`` from the current directory when it is
first imported; the trader process runs in the account's state directory, and this module
creates ``<state_dir>/.vntrader`` before it imports vnpy, so each account's flow files stay in
its own state directory. When vnpy was imported elsewhere first (an embedded trader), a
WARNING says where the flow files go.

Settings (the account's ``ctp:`` section): ``userid``, ``password``, ``brokerid``,
``td_address``, ``md_address``, ``appid``, ``auth_code``, ``product_info`` (sent as
``UserProductInfo`` at login), ``environment`` (``实盘`` or ``测试``), ``connect_timeout``.
``password`` and ``auth_code`` never reach a log line, status or error: every text this
gateway passes on is scrubbed of them (secrets of at least ``MIN_SECRET_LENGTH`` characters).

Test seam: when the environment variable ``QTRADER_CTP_FAKE_FRONT`` is ``"module:function"``,
that function is imported and called as ``function(vnpy_gateway, state_dir)`` before anything
touches the network, so an offline test can replace the native request methods of
``vnpy_gateway.td_api`` / ``md_api`` with a scripted front (``tests/fake_ctp.py``). A trader
process inherits it from its manager's environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, Protocol

from core.models import (
    CHINA_TZ,
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
    now,
    split_vt_symbol,
    trading_day_of,
)
from gateways.base import Gateway, GatewayListener

log = logging.getLogger(__name__)

FAKE_FRONT_ENV = "QTRADER_CTP_FAKE_FRONT"
QUERY_RETRY_SECONDS = 1.1  # CTP refuses more than about one query a second
QUERY_TIMEOUT_SECONDS = 10.0  # an unanswered query is sent again
FILL_QUERY_DELAY = 0.2  # positions and funds are asked for this long after a fill (fills come in bursts)
MIN_SECRET_LENGTH = 4  # shorter secrets are not scrubbed from texts (it would mangle them)
CLOSE_WAIT_SECONDS = 10.0
EVENT_QUERY_DONE = "eQtraderCtpQueryDone"
EVENT_ORPHAN = "eQtraderCtpOrphanTrade"
ORPHAN_TRADE_SECONDS = 5.0  # a trade whose order CTP has not reported is reported anyway after this
INITIAL_QUERIES = ("orders", "trades", "account", "positions")
COMMISSION_QUERY = "commission:"  # a commission rate query in the chain: this + the InstrumentID asked
COMMISSION_QUERY_INTERVAL = 1.1  # a commission query goes this long after the previous query at least
COMMISSION_QUERY_ATTEMPTS = 3  # error answers (or silences) before a contract's rates are given up
COMMISSION_HOLD_SECONDS = 2.0  # a fill waits at most this long for its contract's commission rates
HUGE_PRICE = 1e300  # CTP's "no value" is DBL_MAX

#: CTP's OnFrontDisconnected reasons.
DISCONNECT_REASONS = {
    0x1001: "network read failed",
    0x1002: "network write failed",
    0x2001: "heartbeat timeout",
    0x2002: "heartbeat send failed",
    0x2003: "malformed packet received",
}

# vnpy_ctp's log lines that carry connection state (ctp_gateway.py, vnpy_ctp 6.7)
TD_CONNECTED = "交易服务器连接成功"
TD_DISCONNECTED = "交易服务器连接断开"
TD_AUTH_OK = "交易服务器授权验证成功"
TD_AUTH_FAILED = "交易服务器授权验证失败"
TD_LOGIN_OK = "交易服务器登录成功"
TD_LOGIN_FAILED = "交易服务器登录失败"
SETTLEMENT_OK = "结算信息确认成功"
CONTRACTS_OK = "合约信息查询成功"
MD_DISCONNECTED = "行情服务器连接断开"
MD_LOGIN_OK = "行情服务器登录成功"
MD_LOGIN_FAILED = "行情服务器登录失败"
_TROUBLE = ("失败", "报错", "断开", "不支持")

_STATUS_RANK = {
    Status.SUBMITTING: 0,
    Status.NOTTRADED: 1,
    Status.PARTTRADED: 2,
    Status.ALLTRADED: 3,
    Status.CANCELLED: 3,
    Status.REJECTED: 3,
}


@dataclass(frozen=True, slots=True)
class QueryDone:
    """Our event after the last answer of a CTP query (vnpy_ctp does not mark it)."""

    name: str  # orders / trades / account / positions / commission:<InstrumentID>
    extras: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    error: str = ""
    rows: tuple[dict[str, Any], ...] = ()  # a commission query's answer rows


@dataclass(frozen=True, slots=True)
class CommissionRates:
    """One row of CTP's ``OnRspQryInstrumentCommissionRate``: what the broker charges per fill,
    as a fraction of turnover (``...ByMoney``) plus currency per lot (``...ByVolume``)."""

    key: str  # CTP's InstrumentID of the row: an instrument ("rb2610") or its product ("rb")
    exchange: str  # "" when CTP leaves ExchangeID empty (older api versions, product rows)
    open_rate: float
    open_per_lot: float
    close_rate: float
    close_per_lot: float
    close_today_rate: float
    close_today_per_lot: float

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CommissionRates | None:
        key = str(row.get("InstrumentID") or "").strip()
        if not key:
            return None
        return cls(
            key=key,
            exchange=str(row.get("ExchangeID") or "").strip(),
            open_rate=_ratio(row.get("OpenRatioByMoney")),
            open_per_lot=_ratio(row.get("OpenRatioByVolume")),
            close_rate=_ratio(row.get("CloseRatioByMoney")),
            close_per_lot=_ratio(row.get("CloseRatioByVolume")),
            close_today_rate=_ratio(row.get("CloseTodayRatioByMoney")),
            close_today_per_lot=_ratio(row.get("CloseTodayRatioByVolume")),
        )

    def covers(self, contract: Contract) -> bool:
        return self.key in (contract.symbol, contract.product) and self.exchange in (
            "",
            contract.exchange.value,
        )

    def apply(self, contract: Contract) -> Contract:
        return Contract(
            **{
                **_fields(contract),
                "commission_rate": self.open_rate,
                "commission_per_lot": self.open_per_lot,
                "close_commission_rate": self.close_rate,
                "close_commission_per_lot": self.close_per_lot,
                "close_today_commission_rate": self.close_today_rate,
                "close_today_commission_per_lot": self.close_today_per_lot,
            }
        )


class CtpSettingsView(Protocol):
    """What the gateway reads of its validated ``ctp:`` settings (config.schema.CtpSettings)."""

    userid: str
    password: str
    brokerid: str
    td_address: str
    md_address: str
    appid: str
    auth_code: str
    product_info: str
    environment: str
    connect_timeout: float


def vnpy_setting(settings: CtpSettingsView) -> dict[str, str]:
    """The ``ctp:`` section as vnpy_ctp's ``CtpGateway.default_setting`` keys."""
    return {
        "用户名": settings.userid,
        "密码": settings.password,
        "经纪商代码": settings.brokerid,
        "交易服务器": settings.td_address,
        "行情服务器": settings.md_address,
        "产品名称": settings.appid,
        "授权编码": settings.auth_code,
        "柜台环境": settings.environment,
    }


def disconnect_reason(text: str) -> str:
    """``交易服务器连接断开，原因4097`` -> ``network read failed (4097)``."""
    match = re.search(r"(\d+)", text)
    if match is None:
        return text
    code = int(match.group(1))
    readable = DISCONNECT_REASONS.get(code)
    return f"{readable} ({code})" if readable else f"reason {code}"


def _price(value: float | None) -> float:
    return 0.0 if value is None or value >= HUGE_PRICE else float(value)


def _ratio(value: Any) -> float:
    """A commission ratio as CTP sends it; "no value" (DBL_MAX), NaN or negative is 0."""
    try:
        ratio = float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return ratio if 0.0 <= ratio < HUGE_PRICE else 0.0


def _rate_symbol(query: str) -> str | None:
    """The InstrumentID of a commission query's name (None: another query)."""
    return query[len(COMMISSION_QUERY) :] if query.startswith(COMMISSION_QUERY) else None


def _china(moment: datetime | None) -> datetime:
    if moment is None:
        return now()
    if moment.tzinfo is None:
        return moment.replace(tzinfo=CHINA_TZ)
    return moment.astimezone(CHINA_TZ)


def _is_stale(new: Order, known: Order) -> bool:
    """True when ``new`` is an older snapshot of ``known`` (a replayed or late notice)."""
    if new.traded != known.traded:
        return new.traded < known.traded
    return _STATUS_RANK[new.status] < _STATUS_RANK[known.status]


# ====================================================================== vnpy, imported late


@dataclass(frozen=True, slots=True)
class _Vnpy:
    """vnpy's names used here; imported on first use, once the working folder exists."""

    Event: Any
    EventEngine: Any
    OffsetConverter: Any
    OrderRequest: Any
    CancelRequest: Any
    SubscribeRequest: Any
    Exchange: Any
    Direction: Any
    Offset: Any
    OrderType: Any
    Product: Any
    event_types: dict[str, str]
    Gateway: Any  # vnpy_ctp's CtpGateway, extended below
    temp_dir: Path


@functools.cache
def _vnpy() -> _Vnpy:
    from vnpy.event import Event, EventEngine
    from vnpy.trader import constant, event, object
    from vnpy.trader.converter import OffsetConverter
    from vnpy.trader.utility import TEMP_DIR
    from vnpy_ctp.gateway import ctp_gateway

    return _Vnpy(
        Event=Event,
        EventEngine=EventEngine,
        OffsetConverter=OffsetConverter,
        OrderRequest=object.OrderRequest,
        CancelRequest=object.CancelRequest,
        SubscribeRequest=object.SubscribeRequest,
        Exchange=constant.Exchange,
        Direction=constant.Direction,
        Offset=constant.Offset,
        OrderType=constant.OrderType,
        Product=constant.Product,
        event_types={
            "tick": event.EVENT_TICK,
            "order": event.EVENT_ORDER,
            "trade": event.EVENT_TRADE,
            "position": event.EVENT_POSITION,
            "account": event.EVENT_ACCOUNT,
            "contract": event.EVENT_CONTRACT,
            "log": event.EVENT_LOG,
            "query_done": EVENT_QUERY_DONE,
            "orphan": EVENT_ORPHAN,
        },
        Gateway=_extend_vnpy_ctp(ctp_gateway, Event),
        temp_dir=Path(TEMP_DIR),
    )


def _extend_vnpy_ctp(ctp: Any, event_cls: Any) -> type:
    """vnpy_ctp's gateway with what this adapter needs beyond it.

    - each callback's raw CTP fields travel with the vnpy object they produce (``extra``):
      status messages, rejection errors, margins, funds detail, pre-settlement prices;
    - the trading day of the login, and ``UserProductInfo`` in the login request;
    - today's orders and trades by query, and a ``QueryDone`` event after each query;
    - the answer to a commission rate query, with the InstrumentID that was asked;
    - a trade whose order is not known yet waits for it instead of failing;
    - vnpy's periodic query handler cannot raise into the EventEngine thread.
    """

    class TdApi(ctp.CtpTdApi):  # type: ignore[misc, name-defined]
        def __init__(self, gateway: Any, product_info: str) -> None:
            super().__init__(gateway)
            self.product_info = product_info
            self.trading_day = ""
            self.position_extras: dict[tuple[str, str], dict[str, float]] = {}
            # (ExchangeID, OrderSysID) -> order id: exchanges number their orders independently,
            # so vnpy's own map (by OrderSysID alone) is only ever set from this one, per trade
            self.order_ids: dict[tuple[str, str], str] = {}
            self.orphan_trades: list[tuple[float, dict[str, Any]]] = []  # (time.monotonic(), trade)
            self.adapted: set[str] = set()  # orders reported under a type/status vnpy cannot read
            self.rate_requests: dict[int, str] = {}  # reqid -> InstrumentID of a commission query
            self.rate_rows: dict[int, list[dict[str, Any]]] = {}  # reqid -> its answer so far
            # the CTP thread and the loop (releasing an orphan) both report trades
            self.lock = threading.RLock()

        def login(self) -> None:
            if self.login_failed:
                return
            req = {"UserID": self.userid, "Password": self.password, "BrokerID": self.brokerid}
            if self.product_info:
                req["UserProductInfo"] = self.product_info
            self.reqid += 1
            self.reqUserLogin(req, self.reqid)

        def onRspUserLogin(self, data: dict, error: dict, reqid: int, last: bool) -> None:
            if data and not error.get("ErrorID"):
                self.trading_day = data.get("TradingDay") or self.trading_day
            super().onRspUserLogin(data, error, reqid, last)

        def onRspQryInstrument(self, data: dict, error: dict, reqid: int, last: bool) -> None:
            with self.gateway.raw(data):
                super().onRspQryInstrument(data, error, reqid, last)

        def onRtnOrder(self, data: dict) -> None:
            if not self.contract_inited:
                super().onRtnOrder(data)  # vnpy keeps it until the contracts are known
                return
            with self.lock:
                orderid = f"{data.get('FrontID')}_{data.get('SessionID')}_{data.get('OrderRef')}"
                key = _sysid_key(data)
                if key is not None:  # whatever vnpy makes of the order, its fills are its own
                    self.order_ids[key] = orderid
                readable, note = vnpy_readable_order(data)
                if note and orderid not in self.adapted:
                    self.adapted.add(orderid)
                    self.gateway.write_log(f"CTP order {orderid}: {note}")
                with self.gateway.raw(data):  # our mapping reads the raw fields as CTP sent them
                    super().onRtnOrder(readable)
                if self.orphan_trades:
                    waiting, self.orphan_trades = self.orphan_trades, []
                    for held, trade in waiting:
                        known = self.order_ids.get(_sysid_key(trade) or ("", ""))
                        if known is None:
                            self.orphan_trades.append((held, trade))
                        else:
                            self.report_safely(trade, known)

        def onRtnTrade(self, data: dict) -> None:
            if not self.contract_inited:
                super().onRtnTrade(data)  # vnpy keeps it until the contracts are known
                return
            with self.lock:
                orderid = self.order_ids.get(_sysid_key(data) or ("", ""))
                if orderid is None:  # reported once its order is (held once: replay and query)
                    same = (data.get("ExchangeID"), data.get("TradeID"))
                    if all((t.get("ExchangeID"), t.get("TradeID")) != same for _, t in self.orphan_trades):
                        self.orphan_trades.append((time.monotonic(), data))
                        self.gateway.orphan_held()
                    return
                self.report_trade(data, orderid)

        def report_trade(self, data: dict, orderid: str) -> None:
            """vnpy's trade mapping, for the order ``orderid`` (under ``lock``)."""
            readable = vnpy_readable_trade(data)
            self.sysid_orderid_map[readable["OrderSysID"]] = orderid
            with self.gateway.raw(data):
                super().onRtnTrade(readable)

        def report_safely(self, data: dict, orderid: str) -> bool:
            """``report_trade`` for a held trade: one that fails never stops the others."""
            try:
                self.report_trade(data, orderid)
            except Exception as exc:  # e.g. a contract vnpy does not know
                self.gateway.write_log(f"CTP trade {data.get('TradeID')} could not be reported: {exc!r}")
                return False
            return True

        def release_orphans(self, max_age: float) -> tuple[list[tuple[dict, str]], float | None]:
            """Report every trade held ``max_age`` seconds without its order, as a trade of the
            order id derived from its exchange and OrderSysID. Returns what was released (trade,
            order id) and how long until the next held one is due (None: none left)."""
            released: list[tuple[dict, str]] = []
            with self.lock:
                moment = time.monotonic()
                waiting, self.orphan_trades = self.orphan_trades, []
                for held, trade in waiting:
                    if moment - held < max_age:
                        self.orphan_trades.append((held, trade))
                        continue
                    key = _sysid_key(trade)
                    orderid = self.order_ids.get(key or ("", "")) or orphan_order_id(trade)
                    if key is not None:  # its other fills go the same way, at once
                        self.order_ids.setdefault(key, orderid)
                    if self.report_safely(trade, orderid):
                        released.append((trade, orderid))
                due = min((max_age - (moment - held) for held, _ in self.orphan_trades), default=None)
            return released, due

        def held_orphans(self) -> list[dict[str, Any]]:
            with self.lock:
                return [trade for _, trade in self.orphan_trades]

        def onRspOrderInsert(self, data: dict, error: dict, reqid: int, last: bool) -> None:
            with self.gateway.raw({**data, "_error": error}):
                super().onRspOrderInsert(data, error, reqid, last)

        def onRspQryOrder(self, data: dict, error: dict, reqid: int, last: bool) -> None:
            if data:
                self.onRtnOrder(data)
            if last:
                self.gateway.query_done("orders", error=_error_text(error))

        def onRspQryTrade(self, data: dict, error: dict, reqid: int, last: bool) -> None:
            if data:
                self.onRtnTrade(data)
            if last:
                self.gateway.query_done("trades", error=_error_text(error))

        def onRspQryTradingAccount(self, data: dict, error: dict, reqid: int, last: bool) -> None:
            with self.gateway.raw(data):
                super().onRspQryTradingAccount(data, error, reqid, last)
            if last:
                self.gateway.query_done("account", error=_error_text(error))

        def onRspQryInvestorPosition(self, data: dict, error: dict, reqid: int, last: bool) -> None:
            if data:
                _add_position_row(self.position_extras, data)
            super().onRspQryInvestorPosition(data, error, reqid, last)
            if last:
                extras, self.position_extras = self.position_extras, {}
                self.gateway.query_done("positions", extras, _error_text(error))

        def onRspQryInstrumentCommissionRate(self, data: dict, error: dict, reqid: int, last: bool) -> None:
            rows = self.rate_rows.setdefault(reqid, [])
            if data and data.get("InstrumentID"):
                rows.append(dict(data))
            if last:
                self.rate_rows.pop(reqid, None)
                asked = self.rate_requests.pop(reqid, "")
                self.gateway.query_done(
                    f"{COMMISSION_QUERY}{asked}", error=_error_text(error), rows=tuple(rows)
                )

    class MdApi(ctp.CtpMdApi):  # type: ignore[misc, name-defined]
        def onRtnDepthMarketData(self, data: dict) -> None:
            with self.gateway.raw(data):
                super().onRtnDepthMarketData(data)

    class VnpyCtpGateway(ctp.CtpGateway):  # type: ignore[misc, name-defined]
        def __init__(self, event_engine: Any, gateway_name: str, product_info: str = "") -> None:
            super().__init__(event_engine, gateway_name)
            self._raw = threading.local()
            self.td_api = TdApi(self, product_info)
            self.md_api = MdApi(self)

        @contextlib.contextmanager
        def raw(self, data: dict[str, Any]) -> Iterator[None]:
            previous = getattr(self._raw, "data", None)
            self._raw.data = data
            try:
                yield
            finally:
                self._raw.data = previous

        def _with_raw(self, obj: Any) -> Any:
            data = getattr(self._raw, "data", None)
            if data is not None:
                obj.extra = data
            return obj

        def on_tick(self, tick: Any) -> None:
            super().on_tick(self._with_raw(tick))

        def on_order(self, order: Any) -> None:
            super().on_order(self._with_raw(order))

        def on_trade(self, trade: Any) -> None:
            super().on_trade(self._with_raw(trade))

        def on_account(self, account: Any) -> None:
            super().on_account(self._with_raw(account))

        def on_contract(self, contract: Any) -> None:
            super().on_contract(self._with_raw(contract))

        def query_done(
            self, name: str, extras: dict | None = None, error: str = "", rows: tuple[dict, ...] = ()
        ) -> None:
            self.event_engine.put(event_cls(EVENT_QUERY_DONE, QueryDone(name, extras or {}, error, rows)))

        def orphan_held(self) -> None:
            self.event_engine.put(event_cls(EVENT_ORPHAN, None))

        def process_timer_event(self, event: Any) -> None:
            try:
                super().process_timer_event(event)
            except Exception as exc:  # never into the EventEngine thread
                self.write_log(f"periodic CTP query failed: {exc!r}")

    return VnpyCtpGateway


def _error_text(error: dict | None) -> str:
    if not error or not error.get("ErrorID"):
        return ""
    return f"代码：{error['ErrorID']}，信息：{error.get('ErrorMsg', '')}"


# CTP's order fields (ThostFtdcUserApiDataType.h) for the orders vnpy_ctp cannot read
_PRICE_MARKET = {"1", "3"}  # AnyPrice, BestPrice
_TC_IOC = "1"
_TYPE_FIELDS = ("OrderPriceType", "TimeCondition", "VolumeCondition")
_VC_CV = "3"  # CompleteVolume
_VNPY_TYPES = {  # our type -> vnpy_ctp's (OrderPriceType, TimeCondition, VolumeCondition)
    OrderType.LIMIT: ("2", "3", "1"),
    OrderType.MARKET: ("1", "3", "1"),
    OrderType.FAK: ("2", "1", "1"),
    OrderType.FOK: ("2", "1", "3"),
}
_VNPY_STATUSES = {"0", "1", "3", "5", "a"}
_FORCE_OFFSETS = {"2", "5", "6"}  # ForceClose, ForceOff, LocalForceClose: a close to us


def ctp_order_type(data: Mapping[str, Any]) -> OrderType:
    """The closest of our types for CTP's price type, time and volume conditions."""
    price_type, time_cond = data.get("OrderPriceType"), data.get("TimeCondition")
    if price_type in _PRICE_MARKET:
        return OrderType.MARKET
    if time_cond == _TC_IOC:  # limit, or a price the exchange fills from the book at once
        return OrderType.FOK if data.get("VolumeCondition") == _VC_CV else OrderType.FAK
    return OrderType.LIMIT


def _refused(data: Mapping[str, Any]) -> bool:
    message = str(data.get("StatusMsg") or "")
    return data.get("OrderSubmitStatus") == "4" or "拒" in message or "reject" in message.lower()


def vnpy_readable_order(data: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """``data`` as vnpy_ctp's ``onRtnOrder`` can read it, and what was adapted ("": nothing).

    vnpy_ctp drops an order whose type or status is not in its maps (a market order from another
    terminal, BestPrice, statuses 2/4, conditional orders...), and its fills with it. Such an
    order is reported with the closest type and the status CTP means: 2 (part traded, no longer
    queueing) and 4 (nothing traded, no longer queueing) are finished, CANCELLED (REJECTED when
    the exchange or broker refused it); a conditional order's NotTouched/Touched is working.
    """
    changes: dict[str, Any] = {}
    if tuple(data.get(name) for name in _TYPE_FIELDS) not in _VNPY_TYPES.values():
        changes.update(zip(_TYPE_FIELDS, _VNPY_TYPES[ctp_order_type(data)], strict=True))
    status = data.get("OrderStatus")
    if status not in _VNPY_STATUSES:
        traded = float(data.get("VolumeTraded") or 0)
        if status in ("2", "4"):
            changes["OrderStatus"] = "5"
            if status == "4" and _refused(data):
                changes["OrderSubmitStatus"] = "4"  # vnpy's REJECTED: Canceled + InsertRejected
            elif data.get("OrderSubmitStatus") == "4":
                changes["OrderSubmitStatus"] = "3"  # part traded: cancelled, not refused
        elif traded >= float(data.get("VolumeTotalOriginal") or 0) > 0:
            changes["OrderStatus"] = "0"
        else:  # NotTouched, Touched, or a status of a newer api: still working
            changes["OrderStatus"] = "1" if traded else "3"
    if data.get("CombOffsetFlag") in _FORCE_OFFSETS:
        changes["CombOffsetFlag"] = "1"
    if not changes:
        return data, ""
    shown = ", ".join(f"{k} {data.get(k)!r} -> {v!r}" for k, v in changes.items())
    return {**data, **changes}, f"fields vnpy_ctp cannot read adapted ({shown})"


def vnpy_readable_trade(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as vnpy_ctp's ``onRtnTrade`` can read it (a forced close is a close)."""
    if data.get("OffsetFlag") in _FORCE_OFFSETS:
        return {**data, "OffsetFlag": "1"}
    return data


def _sysid_key(data: Mapping[str, Any]) -> tuple[str, str] | None:
    """An order's or trade's (ExchangeID, OrderSysID); None before the exchange numbered it."""
    sysid = str(data.get("OrderSysID") or "").strip()
    return (str(data.get("ExchangeID") or ""), sysid) if sysid else None


def orphan_order_id(data: Mapping[str, Any]) -> str:
    """The order id of a trade whose order CTP never reported: from its exchange's numbering."""
    return f"ctp-{data.get('ExchangeID') or '?'}-{str(data.get('OrderSysID') or '').strip() or '?'}"


def _trade_text(data: Mapping[str, Any]) -> str:
    day = data.get("TradingDay") or "?"
    side = {"0": "buy", "1": "sell"}.get(str(data.get("Direction")), "?")
    return (
        f"trade {day}.{data.get('ExchangeID')}.{str(data.get('TradeID') or '').strip()} "
        f"({side} {data.get('Volume')} {data.get('InstrumentID')} @ {data.get('Price')}, "
        f"OrderSysID {str(data.get('OrderSysID') or '').strip()})"
    )


def _add_position_row(extras: dict[tuple[str, str], dict[str, float]], row: dict[str, Any]) -> None:
    """Margin and yesterday's frozen lots of one CTP position row (vnpy_ctp drops them)."""
    direction = "LONG" if row.get("PosiDirection") == "2" else "SHORT"
    extra = extras.setdefault((row.get("InstrumentID", ""), direction), {"margin": 0.0, "yd_frozen": 0.0})
    extra["margin"] += float(row.get("UseMargin") or 0.0)
    frozen = float(row.get("ShortFrozen" if direction == "LONG" else "LongFrozen") or 0.0)
    if row.get("ExchangeID") in ("SHFE", "INE"):
        if row.get("PositionDate") == "2":  # the history row
            extra["yd_frozen"] += frozen
    else:  # one row; the exchange closes yesterday's lots first
        yd = float(row.get("Position") or 0) - float(row.get("TodayPosition") or 0)
        extra["yd_frozen"] += min(frozen, max(yd, 0.0))


# ====================================================================== the gateway


class CtpGateway(Gateway):
    """One CTP account (see the module docstring)."""

    name: ClassVar[str] = "ctp"

    def __init__(
        self,
        account_id: str,
        settings: CtpSettingsView,
        listener: GatewayListener,
        state_dir: Path,
    ) -> None:
        super().__init__(account_id, settings, listener, state_dir)
        self._setting = vnpy_setting(settings)
        self.connect_timeout = settings.connect_timeout
        self.td_address = self._setting["交易服务器"]
        self.who = f"{self._setting['经纪商代码']}/{self._setting['用户名']}"
        self._secrets = [
            s for s in (self._setting["密码"], self._setting["授权编码"]) if len(s) >= MIN_SECRET_LENGTH
        ]
        self.vnpy_name = f"CTP_{account_id}"
        vn = self._vn = self._import_vnpy()
        self._engine = vn.EventEngine()
        self._gateway = vn.Gateway(self._engine, self.vnpy_name, settings.product_info)
        self._vn_contracts: dict[str, Any] = {}
        # OffsetConverter reads contracts from an "OmsEngine": vnpy's own, by vt_symbol
        self._converter = vn.OffsetConverter(SimpleNamespace(get_contract=self._vn_contracts.get))
        self._handlers: dict[str, Callable[[Any], None]] = {
            vn.event_types["tick"]: self._on_tick,
            vn.event_types["order"]: self._on_order,
            vn.event_types["trade"]: self._on_trade,
            vn.event_types["position"]: self._on_position,
            vn.event_types["account"]: self._on_account,
            vn.event_types["contract"]: self._on_contract,
            vn.event_types["log"]: self._on_log,
            vn.event_types["query_done"]: self._on_query_done,
            vn.event_types["orphan"]: self._on_orphan,
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._closed = False
        self._fatal: str | None = None
        self._td_connected = False
        self._logged_in = False
        self._ready = False
        self._connect_timer: asyncio.TimerHandle | None = None
        self._queries: list[str] = []  # the query chain: its head is the one asked (or about to be)
        self._in_flight: str | None = None  # the head, once CTP took it
        self._last_query_sent = float("-inf")  # loop time of the chain's last request
        self._query_timer: asyncio.TimerHandle | None = None
        self._fill_query: asyncio.TimerHandle | None = None
        self._orphan_timer: asyncio.TimerHandle | None = None
        self._query_errors: dict[str, str] = {}  # query -> its last error, logged once
        self._md_down: str | None = None  # why the market data front is down (None: it is up)
        # the venue's state as reported, for query() and for ids and references
        self._contracts: dict[str, Contract] = {}
        self._orders: dict[str, Order] = {}
        self._trades: dict[str, Trade] = {}
        self._references: dict[str, str] = {}
        self._fills: dict[str, tuple[float, float]] = {}  # order id -> (volume, notional)
        self._positions: dict[tuple[str, Direction], Position] = {}
        self._pending_positions: dict[tuple[str, Direction], Any] = {}
        self._account: Account | None = None
        self._volumes: dict[str, float] = {}
        self._local_seq = 0
        # commission rates, asked for the contracts that matter and kept by CTP's key for them
        self._symbols: dict[str, str] = {}  # symbol -> vt_symbol
        self._rates: dict[str, CommissionRates] = {}  # instrument or product -> rates
        self._rate_needed: dict[str, None] = {}  # vt_symbols still without rates, in asking order
        self._rate_empty: set[str] = set()  # symbols and products CTP has no rates for
        self._rate_failed: set[str] = set()  # symbols and products given up on until the next login
        self._rate_attempts: dict[str, int] = {}  # symbol -> error answers so far
        self._held: list[tuple[float, Trade]] = []  # fills waiting for their rates (loop time due)
        self._held_ids: set[str] = set()
        self._hold_timer: asyncio.TimerHandle | None = None
        self._install_fake_front()

    # ------------------------------------------------------------------ Gateway interface

    async def connect(self) -> None:
        if self._started or self._closed:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        for event_type in self._handlers:
            self._engine.register(event_type, self._bridge)
        self._engine.start()
        self._set_status(GatewayStatus.CONNECTING, f"connecting to CTP trade front {self.td_address}")
        self._connect_timer = self._loop.call_later(self.connect_timeout, self._front_timeout)
        self._gateway.connect(dict(self._setting))

    async def close(self) -> None:
        if self._closed:
            return
        self._release_held(force=True)  # reported, with whatever rates are known, before we go
        self._closed = True
        self._cancel_timers()
        if not self._started:
            return
        for event_type in self._handlers:
            self._engine.unregister(event_type, self._bridge)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stop() -> None:
            # the EventEngine first (as vnpy's MainEngine does): its timer handler queries the
            # native api, and a query after the api's release is a segmentation fault
            try:
                self._engine.stop()
                self._gateway.close()
            except Exception:
                log.exception("closing vnpy_ctp failed")
            finally:
                loop.call_soon_threadsafe(done.set)

        # vnpy's EventEngine takes up to a second to stop: off the loop, on a thread that ends
        threading.Thread(target=stop, name=f"ctp-close-{self.account_id}", daemon=True).start()
        try:
            await asyncio.wait_for(done.wait(), CLOSE_WAIT_SECONDS)
        except TimeoutError:
            log.error("CTP gateway %s did not stop within %g s", self.account_id, CLOSE_WAIT_SECONDS)
        if self._fatal is None:
            self._set_status(GatewayStatus.DISCONNECTED, "CTP gateway closed")

    def subscribe(self, vt_symbol: str) -> None:
        if self._closed:  # the native api is released: never call it again
            return
        try:
            symbol, exchange = split_vt_symbol(vt_symbol)
        except ValueError as exc:
            self._log("WARNING", f"subscribe: {exc}")
            return
        self._want_rate(vt_symbol)
        vn = self._vn
        self._gateway.subscribe(vn.SubscribeRequest(symbol=symbol, exchange=vn.Exchange(exchange.value)))

    def send_order(self, req: OrderRequest) -> str:
        try:
            vn_req = self._vnpy_request(req)
        except ValueError as exc:
            return self._reject_locally(req, str(exc))
        if self._closed or not self._logged_in:
            return self._reject_locally(req, "CTP trade front not logged in")
        legs = [vn_req]
        exchange = Exchange(vn_req.exchange.value)
        if req.offset is Offset.CLOSE and exchange.has_close_today:
            legs = self._converter.convert_order_request(vn_req, lock=False, net=False)
            if not legs:
                return self._reject_locally(req, self._not_closable(req))
        ids = [self._send_leg(req, leg) for leg in legs]
        self._want_rate(req.vt_symbol, urgent=True)  # its fills are on their way
        if len(ids) > 1:
            parts = " + ".join(
                f"{leg.offset.name} {leg.volume:g} (order {i})" for leg, i in zip(legs, ids, strict=True)
            )
            self._log("INFO", f"CTP close of {req.volume:g} {req.vt_symbol} sent as {parts}")
        return ids[0]

    def cancel_order(self, req: CancelRequest) -> None:
        order = self._orders.get(req.order_id)
        if order is None:
            self._log("WARNING", f"cancel {req.order_id}: not an order of this CTP session's day")
            return
        if not order.is_active:
            self._log("WARNING", f"cancel {req.order_id}: already {order.status.name}")
            self.listener.on_order(order)
            return
        if self._closed or not self._logged_in:
            self._log("WARNING", f"cancel {req.order_id}: CTP trade front not logged in")
            return
        symbol, exchange = split_vt_symbol(order.vt_symbol)
        vn = self._vn
        self._gateway.cancel_order(
            vn.CancelRequest(orderid=order.order_id, symbol=symbol, exchange=vn.Exchange(exchange.value))
        )

    def query(self) -> None:
        listener = self.listener
        if self._account is not None:
            listener.on_account(self._account)
        for position in self._positions.values():
            listener.on_position(position)
        for order in self._orders.values():
            if order.is_active:
                listener.on_order(order)
        for trade in self._trades.values():
            listener.on_trade(trade)
        if self._ready:
            self._ask(("account", "positions"))

    def get_contract(self, vt_symbol: str) -> Contract | None:
        return self._contracts.get(vt_symbol)

    # ------------------------------------------------------------------ setup

    def _import_vnpy(self) -> _Vnpy:
        folder = self.state_dir / ".vntrader"
        folder.mkdir(parents=True, exist_ok=True)  # vnpy's working folder, chosen at its import
        vn = _vnpy()
        if vn.temp_dir.resolve() != folder.resolve():
            self._log(
                "WARNING",
                f"vnpy was imported from another directory: CTP flow files go to "
                f"{vn.temp_dir / self.vnpy_name.lower()}, not under {self.state_dir}",
            )
        return vn

    def _install_fake_front(self) -> None:
        target = os.environ.get(FAKE_FRONT_ENV, "")
        if not target:
            return
        module_name, _, func_name = target.partition(":")
        install = getattr(importlib.import_module(module_name), func_name)
        install(self._gateway, self.state_dir)
        self._log("WARNING", f"CTP front replaced by {target} ({FAKE_FRONT_ENV}): not a real venue")

    # ------------------------------------------------------------------ threads -> loop

    def _bridge(self, event: Any) -> None:
        """On the EventEngine thread: hand the event to the loop, never raise."""
        loop = self._loop
        if loop is None or self._closed:
            return
        try:
            loop.call_soon_threadsafe(self._dispatch, event)
        except RuntimeError:  # the loop is closing: the trader is shutting down
            pass
        except Exception:
            log.exception("CTP event %s could not reach the loop", getattr(event, "type", "?"))

    def _dispatch(self, event: Any) -> None:
        """On the loop: one vnpy event; an error is logged and the next event goes on."""
        if self._closed:
            return
        try:
            self._handlers[event.type](event.data)
        except Exception as exc:
            log.exception("CTP %s event failed", event.type)
            with contextlib.suppress(Exception):
                self._log("ERROR", f"CTP {event.type} event failed: {exc!r}")

    # ------------------------------------------------------------------ status from log text

    def _on_log(self, data: Any) -> None:
        text = self._scrub(str(getattr(data, "msg", data)))
        self._log("WARNING" if any(w in text for w in _TROUBLE) else "INFO", f"CTP: {text}")
        if self._fatal is not None:
            return
        if text.startswith(TD_CONNECTED):
            self._td_connected = True
            self._set_status(GatewayStatus.CONNECTING, f"CTP trade front connected; logging in as {self.who}")
        elif text.startswith(TD_AUTH_OK):
            self._set_status(GatewayStatus.CONNECTING, f"CTP authenticated; logging in as {self.who}")
        elif text.startswith(TD_AUTH_FAILED):
            self._fail(f"CTP authentication failed for {self.who}: {text}")
        elif text.startswith(TD_LOGIN_OK):
            self._logged_in = True
            if self._connect_timer is not None:
                self._connect_timer.cancel()
                self._connect_timer = None
            self._set_status(GatewayStatus.CONNECTING, f"CTP logged in as {self.who}; loading contracts")
        elif text.startswith(TD_LOGIN_FAILED):
            self._fail(f"CTP login failed for {self.who}: {text}")
        elif text.startswith(SETTLEMENT_OK):
            self._set_status(GatewayStatus.CONNECTING, "CTP settlement confirmed; loading contracts")
        elif text.startswith(CONTRACTS_OK):
            self._rate_failed.clear()  # a new login: what failed is asked again after CONNECTED
            self._rate_attempts.clear()
            self._set_status(
                GatewayStatus.CONNECTING,
                f"CTP: {len(self._contracts)} contracts; querying orders, trades, funds and positions",
            )
            self._start_queries(INITIAL_QUERIES)
        elif text.startswith(TD_DISCONNECTED):
            self._logged_in = self._ready = False
            self._stop_queries()
            self._set_status(
                GatewayStatus.DISCONNECTED,
                f"CTP trade front disconnected: {disconnect_reason(text)}; reconnecting",
            )
        elif text.startswith(MD_DISCONNECTED):
            self._md_trouble(f"market data front disconnected ({disconnect_reason(text)})")
        elif text.startswith(MD_LOGIN_FAILED):
            self._md_trouble(f"market data login failed ({text})")
        elif text.startswith(MD_LOGIN_OK) and self._md_down is not None:
            self._md_down = None
            self._log("INFO", "CTP market data front logged in again: quotes live")
            if self._ready:
                self._set_status(GatewayStatus.CONNECTED, self._connected_message())

    def _md_trouble(self, what: str) -> None:
        """Quotes stop while trading goes on: said in the log and in the (CONNECTED) status."""
        self._md_down = what
        self._log("WARNING", f"CTP {what}: quotes stale until it is back (the api reconnects by itself)")
        if self._ready:
            self._set_status(GatewayStatus.CONNECTED, self._connected_message())

    def _connected_message(self) -> str:
        if self._md_down is not None:
            return f"CTP {self._md_down}; quotes stale, reconnecting (trade front logged in as {self.who})"
        day = self._gateway.td_api.trading_day or "?"
        working = sum(o.is_active for o in self._orders.values())
        return (
            f"CTP logged in as {self.who}, trading day {day}: {len(self._contracts)} contracts, "
            f"{len(self._positions)} positions, {working} working orders, {len(self._trades)} trades"
        )

    def _front_timeout(self) -> None:
        self._connect_timer = None
        if self._logged_in or self._closed:
            return
        if not self._td_connected:
            self._fail(
                f"CTP trade front {self.td_address} unreachable: no connection in {self.connect_timeout:g} s"
            )
        else:
            self._fail(
                f"CTP trade front {self.td_address} connected, but the login was not answered "
                f"in {self.connect_timeout:g} s"
            )

    def _fail(self, reason: str) -> None:
        if self._fatal is not None:
            return
        self._fatal = reason = self._scrub(reason)
        self._logged_in = self._ready = False
        self._release_held(force=True)
        self._cancel_timers()
        self._queries.clear()
        self.listener.on_fatal(reason)

    def _set_status(self, status: GatewayStatus, message: str) -> None:
        self.listener.on_status(status, self._scrub(message))

    # ------------------------------------------------------------------ the query chain

    def _start_queries(self, names: tuple[str, ...]) -> None:
        self._stop_queries()
        self._queries = list(names)
        self._send_query()

    def _stop_queries(self) -> None:
        self._queries.clear()
        self._in_flight = None
        if self._query_timer is not None:
            self._query_timer.cancel()
            self._query_timer = None

    def _ask(self, names: tuple[str, ...]) -> None:
        """``names`` asked now, or after the running chain (where the part not sent yet is new enough)."""
        if not self._queries:
            self._start_queries(names)
            return
        for name in names:
            if name not in self._queries[1:]:
                self._queries.append(name)

    def _send_query(self) -> None:
        """Send the query at the head of the chain; resend it if CTP refuses or stays silent."""
        self._query_timer = None
        if not self._queries or not self._logged_in or self._closed:
            return
        assert self._loop is not None
        name = self._queries[0]
        symbol = _rate_symbol(name)
        td = self._gateway.td_api
        investor = {"BrokerID": td.brokerid, "InvestorID": td.userid}
        if symbol is not None:
            wait = self._last_query_sent + COMMISSION_QUERY_INTERVAL - self._loop.time()
            if wait > 0:  # CTP counts every query against its limit of about one a second
                self._query_timer = self._loop.call_later(wait, self._send_query)
                return
            request = (td.reqQryInstrumentCommissionRate, {**investor, "InstrumentID": symbol})
        else:
            request = {
                "orders": (td.reqQryOrder, investor),
                "trades": (td.reqQryTrade, investor),
                "account": (td.reqQryTradingAccount, {}),
                "positions": (td.reqQryInvestorPosition, investor),
            }[name]
        td.reqid += 1
        reqid = td.reqid
        if symbol is not None:
            td.rate_requests[reqid] = symbol
        refused = request[0](request[1], reqid)
        self._last_query_sent = self._loop.time()
        if refused:
            td.rate_requests.pop(reqid, None)
            self._query_timer = self._loop.call_later(QUERY_RETRY_SECONDS, self._send_query)
            return
        self._in_flight = name
        on_silence = self._send_query if symbol is None else functools.partial(self._rate_unanswered, name)
        self._query_timer = self._loop.call_later(QUERY_TIMEOUT_SECONDS, on_silence)

    def _on_query_done(self, done: QueryDone) -> None:
        ours = bool(self._queries) and self._queries[0] == done.name
        if _rate_symbol(done.name) is not None:
            self._on_rates(done, ours)
            return
        if done.error:
            self._query_failed(done, ours)
            return
        self._query_errors.pop(done.name, None)
        if done.name == "positions":
            self._flush_positions(done.extras)
        if not ours:
            return  # a periodic query of vnpy's, or an answer we had given up on
        self._next_query()

    def _next_query(self) -> None:
        """The chain's head is answered: the next query; CONNECTED at the end of the first chain of
        a login; then the commission rates still wanted, one at a time."""
        self._queries.pop(0)
        self._in_flight = None
        if self._query_timer is not None:
            self._query_timer.cancel()
            self._query_timer = None
        if self._queries:
            self._send_query()
            return
        if not self._ready and self._logged_in:
            self._ready = True
            self._set_status(GatewayStatus.CONNECTED, self._connected_message())
            self._report_held_orphans()
        self._pump_rates()

    def _query_failed(self, done: QueryDone, ours: bool) -> None:
        """An error answer is not a complete one: nothing is flushed, and ours is asked again."""
        error = self._scrub(done.error)
        if done.name == "positions":
            # the positions reported stay as they are; rows that came with the error are not the
            # whole book (a key left over from them could outlive its position): dropped, the
            # next complete answer lists every row again
            self._pending_positions.clear()
        if self._query_errors.get(done.name) != error:  # once per error, not at every retry
            self._query_errors[done.name] = error
            self._log("WARNING", f"CTP {done.name} query answered with an error: {error}; asking again")
        if not ours:
            return  # vnpy's periodic query: its next round asks again
        if not self._ready:
            self._set_status(
                GatewayStatus.CONNECTING, f"CTP {done.name} query answered with an error ({error}); retrying"
            )
        if self._query_timer is not None:
            self._query_timer.cancel()
        assert self._loop is not None
        self._query_timer = self._loop.call_later(QUERY_RETRY_SECONDS, self._send_query)

    def _on_orphan(self, _: Any) -> None:
        """A trade is held for its order: report it anyway if the order does not come."""
        if self._orphan_timer is None and self._loop is not None and not self._closed:
            self._orphan_timer = self._loop.call_later(ORPHAN_TRADE_SECONDS, self._release_orphans)

    def _release_orphans(self) -> None:
        self._orphan_timer = None
        if self._closed:
            return
        released, due = self._gateway.td_api.release_orphans(ORPHAN_TRADE_SECONDS)
        for trade, order_id in released:
            self._log(
                "ERROR",
                f"CTP {_trade_text(trade)}: its order was not reported in {ORPHAN_TRADE_SECONDS:g} s; "
                f"reported as a trade of order {order_id}",
            )
        if due is not None and self._loop is not None:
            self._orphan_timer = self._loop.call_later(max(due, 0.05), self._release_orphans)

    def _report_held_orphans(self) -> None:
        """At CONNECTED every order of the day is listed: a trade still held is an anomaly."""
        for trade in self._gateway.td_api.held_orphans():
            self._log(
                "ERROR",
                f"CTP {_trade_text(trade)}: its order (exchange {trade.get('ExchangeID')}) is not among "
                f"the day's orders; reported as a trade of order {orphan_order_id(trade)} if it does "
                f"not come within {ORPHAN_TRADE_SECONDS:g} s",
            )

    def _query_after_fill(self) -> None:
        """CTP does not push positions or funds: ask soon after fills, not at vnpy's next round."""
        if self._ready and self._fill_query is None and self._loop is not None:
            self._fill_query = self._loop.call_later(FILL_QUERY_DELAY, self._fill_queries)

    def _fill_queries(self) -> None:
        self._fill_query = None
        if self._ready:
            self._ask(("positions", "account"))

    def _cancel_timers(self) -> None:
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        if self._fill_query is not None:
            self._fill_query.cancel()
            self._fill_query = None
        if self._orphan_timer is not None:
            self._orphan_timer.cancel()
            self._orphan_timer = None
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        self._stop_queries()

    # ------------------------------------------------------------------ commission rates

    def _want_rate(self, vt_symbol: str, *, urgent: bool = False) -> None:
        """``vt_symbol`` matters (a position, a subscription, an order or a fill): have its
        commission rates asked, once per product, one query at a time, after CONNECTED. ``urgent``:
        a fill is coming or waiting, so it goes before any other query not sent yet."""
        contract = self._contracts.get(vt_symbol)
        if contract is not None and self._rate_resolved(contract):
            return
        if urgent:
            self._rate_needed.pop(vt_symbol, None)
            self._rate_needed = {vt_symbol: None, **self._rate_needed}
        else:
            self._rate_needed.setdefault(vt_symbol, None)
        self._pump_rates(urgent=urgent)

    def _pump_rates(self, *, urgent: bool = False) -> None:
        """Put the next commission query in the chain: at its end when it is idle, right behind
        the query in flight when ``urgent``. One commission query in the chain at a time."""
        if not self._ready or self._closed or not self._logged_in:
            return  # CONNECTED never waits for rates: they are asked once it is there
        symbol = self._next_rate_symbol()
        if symbol is None:
            return
        name = f"{COMMISSION_QUERY}{symbol}"
        if not self._queries:
            self._queries.append(name)
            self._send_query()
            return
        if not urgent:
            return  # asked when the chain is done
        queued = [i for i, q in enumerate(self._queries) if _rate_symbol(q) is not None]
        if not queued:
            self._queries.insert(1, name)
        elif self._queries[queued[0]] != self._in_flight:  # not sent yet: this one instead, now
            self._queries[queued[0]] = name  # (the other stays wanted, and is asked after it)

    def _next_rate_symbol(self) -> str | None:
        for vt_symbol in list(self._rate_needed):
            contract = self._contracts.get(vt_symbol)
            keys = {contract.symbol, contract.product} if contract is not None else set()
            if contract is None or self._rate_for(contract) is not None or keys & self._rate_empty:
                del self._rate_needed[vt_symbol]  # not a futures contract of the venue, or done
            elif not keys & self._rate_failed:
                return contract.symbol
        return None

    def _rate_for(self, contract: Contract) -> CommissionRates | None:
        """The instrument's own rates, else its product's (None: not known)."""
        for key in (contract.symbol, contract.product):
            rates = self._rates.get(key)
            if rates is not None and rates.covers(contract):
                return rates
        return None

    def _rate_resolved(self, contract: Contract) -> bool:
        """True when nothing more is to be learnt of the contract's rates for now."""
        keys = {contract.symbol, contract.product}
        return self._rate_for(contract) is not None or bool(keys & (self._rate_empty | self._rate_failed))

    def _on_rates(self, done: QueryDone, ours: bool) -> None:
        symbol = _rate_symbol(done.name) or ""
        if done.error:
            if ours:  # an error of a query we had given up on was counted already
                self._rate_error(symbol, self._scrub(done.error))
        else:
            self._store_rates(symbol, done.rows)
        self._release_held()
        if ours:
            self._next_query()

    def _rate_unanswered(self, name: str) -> None:
        self._query_timer = None
        if self._queries and self._queries[0] == name:
            self._on_query_done(QueryDone(name, error=f"no answer in {QUERY_TIMEOUT_SECONDS:g} s"))

    def _rate_error(self, symbol: str, error: str) -> None:
        attempts = self._rate_attempts[symbol] = self._rate_attempts.get(symbol, 0) + 1
        if attempts < COMMISSION_QUERY_ATTEMPTS:
            return  # still wanted: asked again at the chain's pace
        vt_symbol = self._symbols.get(symbol, symbol)
        contract = self._contracts.get(vt_symbol)
        self._rate_failed.update({symbol, contract.product} if contract is not None else {symbol})
        self._log(
            "WARNING",
            f"CTP commission rates of {vt_symbol}: {error} ({attempts} attempts); its fills are "
            f"recorded with commission 0 (asked again at the next login)",
        )

    def _store_rates(self, symbol: str, rows: tuple[dict[str, Any], ...]) -> None:
        for row in rows:
            rates = CommissionRates.from_row(row)
            if rates is not None:
                self._rates[rates.key] = rates
        contract = self._contracts.get(self._symbols.get(symbol, ""))
        if contract is not None and self._rate_for(contract) is None:
            # nothing for it: a definite answer, the product is not asked again
            self._rate_empty.update({symbol, contract.product})
            self._log(
                "WARNING",
                f"CTP has no commission rates for {contract.vt_symbol}: its fills are recorded "
                f"with commission 0",
            )
        for vt_symbol, known in list(self._contracts.items()):
            rates = self._rate_for(known)
            if rates is None:
                continue
            updated = rates.apply(known)
            if updated != known:
                self._contracts[vt_symbol] = updated
                self.listener.on_contract(updated)

    def _hold(self, trade: Trade) -> None:
        assert self._loop is not None
        self._held.append((self._loop.time() + COMMISSION_HOLD_SECONDS, trade))
        self._held_ids.add(trade.trade_id)
        if self._hold_timer is None:
            self._hold_timer = self._loop.call_later(COMMISSION_HOLD_SECONDS, self._release_held)

    def _release_held(self, *, force: bool = False) -> None:
        """Report the fills held for rates that are now known (or will not be), or held long
        enough (``force``: all of them). One that fails never stops the others."""
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        if not self._held or self._loop is None:
            return
        moment = self._loop.time()
        waiting, self._held = self._held, []
        for due, trade in waiting:
            contract = self._contracts.get(trade.vt_symbol)
            resolved = contract is None or self._rate_resolved(contract)
            if not (resolved or force or due <= moment):
                self._held.append((due, trade))
                continue
            self._held_ids.discard(trade.trade_id)
            if not resolved:
                self._log(
                    "WARNING",
                    f"CTP fill {trade.trade_id} ({trade.vt_symbol}): commission rates not known "
                    f"within {COMMISSION_HOLD_SECONDS:g} s; recorded with commission 0",
                )
            try:
                self._report_trade(trade)
            except Exception as exc:
                log.exception("CTP fill %s could not be reported", trade.trade_id)
                with contextlib.suppress(Exception):
                    self._log("ERROR", f"CTP fill {trade.trade_id} could not be reported: {exc!r}")
        if self._held:
            due = min(d for d, _ in self._held)
            self._hold_timer = self._loop.call_later(max(due - moment, 0.01), self._release_held)

    # ------------------------------------------------------------------ vnpy events

    def _on_contract(self, data: Any) -> None:
        self._vn_contracts[data.vt_symbol] = data
        if data.product != self._vn.Product.FUTURES:
            return
        raw = data.extra or {}
        ratio = max(float(raw.get("LongMarginRatio") or 0), float(raw.get("ShortMarginRatio") or 0))
        product = raw.get("ProductID") or re.sub(r"\d.*$", "", data.symbol)
        contract = Contract(
            vt_symbol=data.vt_symbol,
            symbol=data.symbol,
            exchange=Exchange(data.exchange.value),
            name=data.name,
            product=product,
            size=float(data.size),
            pricetick=float(data.pricetick),
            min_volume=int(data.min_volume or 1),
            margin_ratio=ratio if 0 < ratio < 1 else 0.1,
            account_id=self.account_id,
        )
        rates = self._rate_for(contract)  # known from an earlier login of this process
        if rates is not None:
            contract = rates.apply(contract)
        self._symbols[contract.symbol] = contract.vt_symbol
        self._contracts[contract.vt_symbol] = contract
        self.listener.on_contract(contract)

    def _on_tick(self, data: Any) -> None:
        raw = data.extra or {}
        previous = self._volumes.get(data.vt_symbol)
        self._volumes[data.vt_symbol] = data.volume
        last_volume = data.volume - previous if previous is not None and data.volume >= previous else 0
        tick = Tick(
            account_id=self.account_id,
            vt_symbol=data.vt_symbol,
            datetime=_china(data.datetime),
            last_price=_price(data.last_price),
            volume=data.volume,
            turnover=data.turnover,
            open_interest=data.open_interest,
            last_volume=last_volume,
            pre_settlement=_price(raw.get("PreSettlementPrice")),
            pre_close=_price(data.pre_close),
            open_price=_price(data.open_price),
            high_price=_price(data.high_price),
            low_price=_price(data.low_price),
            limit_up=_price(data.limit_up),
            limit_down=_price(data.limit_down),
            bid_price_1=_price(data.bid_price_1),
            bid_volume_1=data.bid_volume_1,
            ask_price_1=_price(data.ask_price_1),
            ask_volume_1=data.ask_volume_1,
        )
        self.listener.on_tick(tick)

    def _on_order(self, data: Any) -> None:
        order = self._map_order(data)
        known = self._orders.get(order.order_id)
        if known is not None and _is_stale(order, known):
            self.listener.on_order(known)  # still listed at the venue: its newest state
            return
        self._converter.update_order(data)
        self._orders[order.order_id] = order
        self.listener.on_order(order)

    def _on_trade(self, data: Any) -> None:
        trade = self._map_trade(data)
        if trade.trade_id in self._trades or trade.trade_id in self._held_ids:
            return  # replayed: already reported or held (and counted by the converter)
        self._converter.update_trade(data)
        contract = self._contracts.get(trade.vt_symbol)
        if contract is not None and not self._rate_resolved(contract):
            self._want_rate(trade.vt_symbol, urgent=True)
            if self._ready:  # before CONNECTED the day is pushed as it comes: never held
                self._hold(trade)
                return
        self._report_trade(trade)

    def _report_trade(self, trade: Trade) -> None:
        """A new fill to the listener, with its commission at the contract's rates as known now."""
        contract = self._contracts.get(trade.vt_symbol)
        if contract is not None:
            trade.commission = contract.commission(trade.price, trade.volume, trade.offset)
        self._trades[trade.trade_id] = trade
        volume, notional = self._fills.get(trade.order_id, (0.0, 0.0))
        self._fills[trade.order_id] = (volume + trade.volume, notional + trade.volume * trade.price)
        self.listener.on_trade(trade)
        self._query_after_fill()
        order = self._orders.get(trade.order_id)
        if order is not None:  # the order's average fill price moved
            updated = self._with_fills(order)
            if updated.traded_price != order.traded_price:
                self._orders[order.order_id] = updated
                self.listener.on_order(updated)

    def _on_position(self, data: Any) -> None:
        direction = Direction(data.direction.name)
        self._pending_positions[(data.vt_symbol, direction)] = data

    def _flush_positions(self, extras: dict[tuple[str, str], dict[str, float]]) -> None:
        """One complete position answer: report it, and flatten what it no longer lists."""
        pending, self._pending_positions = self._pending_positions, {}
        reported: dict[tuple[str, Direction], Position] = {}
        for key, data in pending.items():
            self._converter.update_position(data)
            extra = extras.get((data.symbol, key[1].name), {})
            reported[key] = Position(
                account_id=self.account_id,
                vt_symbol=data.vt_symbol,
                direction=key[1],
                volume=data.volume,
                yd_volume=data.yd_volume,
                frozen=data.frozen,
                yd_frozen=extra.get("yd_frozen", 0.0),
                price=data.price,
                pnl=data.pnl,
                margin=extra.get("margin", 0.0),
            )
        for key, gone in self._positions.items():
            if key not in reported and gone.volume:
                reported[key] = Position(account_id=self.account_id, vt_symbol=key[0], direction=key[1])
        self._positions = {k: p for k, p in reported.items() if p.volume}
        for position in reported.values():
            self.listener.on_position(position)
        for vt_symbol, _ in self._positions:
            self._want_rate(vt_symbol)

    def _on_account(self, data: Any) -> None:
        raw = data.extra or {}
        account = Account(
            account_id=self.account_id,
            balance=data.balance,
            available=data.available,
            frozen=data.frozen,
            margin=float(raw.get("CurrMargin") or 0.0),
            commission=float(raw.get("Commission") or 0.0),
            close_pnl=float(raw.get("CloseProfit") or 0.0),
            position_pnl=float(raw.get("PositionProfit") or 0.0),
            pre_balance=float(raw.get("PreBalance") or 0.0),
            trading_day=raw.get("TradingDay") or self._gateway.td_api.trading_day,
            datetime=now(),
        )
        self._account = account
        self.listener.on_account(account)

    # ------------------------------------------------------------------ mapping

    def _map_order(self, data: Any) -> Order:
        raw = data.extra or {}
        known = self._orders.get(data.orderid)
        status = Status(data.status.name)
        status_msg = ""
        error = raw.get("_error")
        if error:
            status_msg = f"{error.get('ErrorMsg', '')} (CTP error {error.get('ErrorID')})"
        elif status in (Status.CANCELLED, Status.REJECTED):
            status_msg = str(raw.get("StatusMsg", ""))
        moment = data.datetime or (known.datetime if known is not None else None)
        order = Order(
            account_id=self.account_id,
            order_id=data.orderid,
            vt_symbol=data.vt_symbol,
            direction=Direction(data.direction.name) if data.direction else Direction.NET,
            offset=Offset(data.offset.name),
            type=OrderType(data.type.name) if not error or known is None else known.type,
            price=data.price,
            volume=data.volume,
            traded=data.traded,
            status=status,
            datetime=_china(moment),
            update_time=now(),
            reference=self._references.get(data.orderid, ""),
            status_msg=self._scrub(status_msg),
        )
        return self._with_fills(order)

    def _with_fills(self, order: Order) -> Order:
        volume, notional = self._fills.get(order.order_id, (0.0, 0.0))
        if not volume:
            return order
        return Order(**{**_fields(order), "traded_price": notional / volume})

    def _map_trade(self, data: Any) -> Trade:
        raw = data.extra or {}
        moment = _china(data.datetime)
        day = raw.get("TradingDay") or self._gateway.td_api.trading_day or f"{trading_day_of(moment):%Y%m%d}"
        return Trade(
            account_id=self.account_id,
            trade_id=f"{day}.{data.exchange.value}.{str(data.tradeid).strip()}",
            order_id=data.orderid,
            vt_symbol=data.vt_symbol,
            direction=Direction(data.direction.name),
            offset=Offset(data.offset.name),
            price=data.price,
            volume=data.volume,
            datetime=moment,
            reference=self._references.get(data.orderid, ""),
        )

    def _vnpy_request(self, req: OrderRequest) -> Any:
        """Our request as vnpy's; ValueError with a readable reason if CTP cannot take it."""
        symbol, exchange = split_vt_symbol(req.vt_symbol)
        if req.offset is Offset.NONE:
            raise ValueError("CTP needs an offset (OPEN, CLOSE, CLOSETODAY or CLOSEYESTERDAY)")
        if req.direction is Direction.NET:
            raise ValueError("CTP orders are LONG or SHORT, not NET")
        if req.type is OrderType.STOP:
            raise ValueError("CTP does not take STOP orders")
        if req.volume <= 0 or req.volume != int(req.volume):
            raise ValueError(f"CTP volume must be a whole number of lots, got {req.volume:g}")
        vn = self._vn
        return vn.OrderRequest(
            symbol=symbol,
            exchange=vn.Exchange(exchange.value),
            direction=vn.Direction[req.direction.name],
            type=vn.OrderType[req.type.name],
            volume=req.volume,
            price=req.price,
            offset=vn.Offset[req.offset.name],
            reference=req.reference,
        )

    def _send_leg(self, req: OrderRequest, leg: Any) -> str:
        vt_orderid = self._gateway.send_order(leg)
        if not vt_orderid:  # vnpy_ctp logged why (the api refused the request)
            part = OrderRequest(**{**_fields(req), "offset": Offset(leg.offset.name), "volume": leg.volume})
            return self._reject_locally(part, "the CTP api refused to send the order (see the log)")
        order_id = vt_orderid.partition(".")[2]
        self._references[order_id] = req.reference
        self._converter.update_order_request(leg, vt_orderid)
        return order_id

    def _not_closable(self, req: OrderRequest) -> str:
        holding = self._converter.get_position_holding(req.vt_symbol)
        if holding is None:
            return f"close {req.volume:g} {req.vt_symbol}: no position at CTP"
        if req.direction is Direction.LONG:  # a buy closes the short position
            td, yd = holding.short_td - holding.short_td_frozen, holding.short_yd - holding.short_yd_frozen
        else:
            td, yd = holding.long_td - holding.long_td_frozen, holding.long_yd - holding.long_yd_frozen
        return (
            f"close {req.volume:g} {req.vt_symbol}: more than the closable position at CTP "
            f"(today {max(td, 0):g}, yesterday {max(yd, 0):g})"
        )

    def _reject_locally(self, req: OrderRequest, reason: str) -> str:
        self._local_seq += 1
        moment = now()
        order_id = f"ctp-local-{moment:%Y%m%d%H%M%S}-{self._local_seq}"
        order = req.refused(self.account_id, order_id, reason, moment)
        self.listener.on_order(order)
        return order.order_id

    # ------------------------------------------------------------------ texts

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _log(self, level: str, message: str) -> None:
        self.listener.on_log(level, self._scrub(message))


def _fields(struct: Any) -> dict[str, Any]:
    return {name: getattr(struct, name) for name in struct.__struct_fields__}
