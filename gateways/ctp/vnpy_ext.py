"""vnpy_ctp's gateway with what this adapter needs beyond it, and our requests in vnpy's words.

vnpy picks its working folder (``.vntrader``) when it is first imported, so this module (which
imports vnpy) is imported by ``CtpGateway`` only once that folder exists; nothing else imports it.

What the subclasses add to vnpy_ctp's ``CtpTdApi`` / ``CtpMdApi`` / ``CtpGateway``:

- each callback's raw CTP fields travel with the vnpy object they produce (``extra``): status
  messages, rejection errors, margins, funds detail, pre-settlement prices;
- a ``CtpLinkEvent`` after each connection callback of either front (link.py): connection state
  never depends on vnpy_ctp's log wording;
- the trading day of the login, and ``UserProductInfo`` in the login request;
- today's orders and trades by query, and a ``QueryDone`` event after each query;
- the answer to a commission rate query, with the InstrumentID that was asked;
- a trade whose order is not known yet waits for it instead of failing (vnpy_ctp's own map from
  ``OrderSysID`` to order is only set from ours, trade by trade, keyed by exchange too);
- vnpy's periodic query handler cannot raise into the EventEngine thread.

The private flow is subscribed in RESTART mode, as vnpy_ctp does, so the day's order and trade
notices replay at every login.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vnpy.event import Event, EventEngine
from vnpy.trader import constant
from vnpy.trader import event as vn_event
from vnpy.trader import object as vn_object
from vnpy.trader.utility import TEMP_DIR
from vnpy_ctp.gateway import ctp_gateway

from core.models import OrderRequest, split_vt_symbol
from gateways.ctp.fields import (
    add_position_row,
    error_text,
    orphan_order_id,
    sysid_key,
    vnpy_readable_order,
    vnpy_readable_trade,
)
from gateways.ctp.link import CtpLinkEvent, LinkKind
from gateways.ctp.queries import QueryDone, rate_query

EVENT_QUERY_DONE = "eQtraderCtpQueryDone"
EVENT_ORPHAN = "eQtraderCtpOrphanTrade"
EVENT_LINK = "eQtraderCtpLink"

#: Our names of the EventEngine events the gateway handles.
EVENT_TYPES = {
    "tick": vn_event.EVENT_TICK,
    "order": vn_event.EVENT_ORDER,
    "trade": vn_event.EVENT_TRADE,
    "position": vn_event.EVENT_POSITION,
    "account": vn_event.EVENT_ACCOUNT,
    "contract": vn_event.EVENT_CONTRACT,
    "log": vn_event.EVENT_LOG,
    "query_done": EVENT_QUERY_DONE,
    "orphan": EVENT_ORPHAN,
    "link": EVENT_LINK,
}

TEMP_DIR_PATH = Path(TEMP_DIR)  # vnpy's working folder, chosen when vnpy was first imported


class TdApi(ctp_gateway.CtpTdApi):  # type: ignore[misc]
    """vnpy_ctp's trade api, reporting what vnpy_ctp drops or cannot read."""

    def __init__(self, gateway: VnpyCtpGateway, product_info: str) -> None:
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

    # ------------------------------------------------------------------ connection and login

    def onFrontConnected(self) -> None:
        super().onFrontConnected()
        self.gateway.link(CtpLinkEvent(LinkKind.TD_CONNECTED))

    def onFrontDisconnected(self, reason: int) -> None:
        super().onFrontDisconnected(reason)
        self.gateway.link(CtpLinkEvent(LinkKind.TD_DISCONNECTED, reason=reason))

    def onRspAuthenticate(self, data: dict, error: dict, reqid: int, last: bool) -> None:
        super().onRspAuthenticate(data, error, reqid, last)
        self.gateway.link(CtpLinkEvent.answer(LinkKind.AUTHENTICATED, LinkKind.AUTH_FAILED, error))

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
        self.gateway.link(CtpLinkEvent.answer(LinkKind.LOGGED_IN, LinkKind.LOGIN_FAILED, error))

    def onRspSettlementInfoConfirm(self, data: dict, error: dict, reqid: int, last: bool) -> None:
        super().onRspSettlementInfoConfirm(data, error, reqid, last)  # asks for the instruments
        self.gateway.link(CtpLinkEvent(LinkKind.SETTLEMENT_CONFIRMED))

    def onRspQryInstrument(self, data: dict, error: dict, reqid: int, last: bool) -> None:
        with self.gateway.raw(data):
            super().onRspQryInstrument(data, error, reqid, last)
        if last:  # behind the contracts, and the day's notices vnpy kept until now
            self.gateway.link(CtpLinkEvent(LinkKind.CONTRACTS_LOADED))

    # ------------------------------------------------------------------ orders and trades

    def onRtnOrder(self, data: dict) -> None:
        if not self.contract_inited:
            super().onRtnOrder(data)  # vnpy keeps it until the contracts are known
            return
        with self.lock:
            orderid = f"{data.get('FrontID')}_{data.get('SessionID')}_{data.get('OrderRef')}"
            key = sysid_key(data)
            if key is not None:  # whatever vnpy makes of the order, its fills are its own
                self.order_ids[key] = orderid
            readable, note = vnpy_readable_order(data)
            if note and orderid not in self.adapted:
                self.adapted.add(orderid)
                self.gateway.write_log(f"CTP order {orderid}: {note}")
            with self.gateway.raw(data):  # our mapping reads the raw fields as CTP sent them
                super().onRtnOrder(readable)
            if self.orphan_trades:
                self._report_orphans_of_known_orders()

    def _report_orphans_of_known_orders(self) -> None:
        """The held trades whose order is now known (under ``lock``)."""
        waiting, self.orphan_trades = self.orphan_trades, []
        for held, trade in waiting:
            known = self.order_ids.get(sysid_key(trade) or ("", ""))
            if known is None:
                self.orphan_trades.append((held, trade))
            else:
                self.report_safely(trade, known)

    def onRtnTrade(self, data: dict) -> None:
        if not self.contract_inited:
            super().onRtnTrade(data)  # vnpy keeps it until the contracts are known
            return
        with self.lock:
            orderid = self.order_ids.get(sysid_key(data) or ("", ""))
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
                key = sysid_key(trade)
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

    # ------------------------------------------------------------------ query answers

    def onRspQryOrder(self, data: dict, error: dict, reqid: int, last: bool) -> None:
        if data:
            self.onRtnOrder(data)
        if last:
            self.gateway.query_done("orders", error=error_text(error))

    def onRspQryTrade(self, data: dict, error: dict, reqid: int, last: bool) -> None:
        if data:
            self.onRtnTrade(data)
        if last:
            self.gateway.query_done("trades", error=error_text(error))

    def onRspQryTradingAccount(self, data: dict, error: dict, reqid: int, last: bool) -> None:
        with self.gateway.raw(data):
            super().onRspQryTradingAccount(data, error, reqid, last)
        if last:
            self.gateway.query_done("account", error=error_text(error))

    def onRspQryInvestorPosition(self, data: dict, error: dict, reqid: int, last: bool) -> None:
        if data:
            add_position_row(self.position_extras, data)
        super().onRspQryInvestorPosition(data, error, reqid, last)
        if last:
            extras, self.position_extras = self.position_extras, {}
            self.gateway.query_done("positions", extras, error_text(error))

    def onRspQryInstrumentCommissionRate(self, data: dict, error: dict, reqid: int, last: bool) -> None:
        rows = self.rate_rows.setdefault(reqid, [])
        if data and data.get("InstrumentID"):
            rows.append(dict(data))
        if last:
            self.rate_rows.pop(reqid, None)
            asked = self.rate_requests.pop(reqid, "")
            self.gateway.query_done(rate_query(asked), error=error_text(error), rows=tuple(rows))


class MdApi(ctp_gateway.CtpMdApi):  # type: ignore[misc]
    """vnpy_ctp's market data api; ticks carry their raw fields (the pre-settlement price)."""

    def onFrontDisconnected(self, reason: int) -> None:
        super().onFrontDisconnected(reason)
        self.gateway.link(CtpLinkEvent(LinkKind.MD_DISCONNECTED, reason=reason))

    def onRspUserLogin(self, data: dict, error: dict, reqid: int, last: bool) -> None:
        super().onRspUserLogin(data, error, reqid, last)
        self.gateway.link(CtpLinkEvent.answer(LinkKind.MD_LOGGED_IN, LinkKind.MD_LOGIN_FAILED, error))

    def onRtnDepthMarketData(self, data: dict) -> None:
        with self.gateway.raw(data):
            super().onRtnDepthMarketData(data)


class VnpyCtpGateway(ctp_gateway.CtpGateway):  # type: ignore[misc]
    """vnpy_ctp's gateway with our apis, raw fields on its objects, and our own events."""

    def __init__(self, event_engine: EventEngine, gateway_name: str, product_info: str = "") -> None:
        super().__init__(event_engine, gateway_name)
        self._raw = threading.local()
        self.td_api = TdApi(self, product_info)
        self.md_api = MdApi(self)

    @contextlib.contextmanager
    def raw(self, data: dict[str, Any]) -> Iterator[None]:
        """The vnpy objects made inside the block carry ``data`` as their ``extra``."""
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
        self.event_engine.put(Event(EVENT_QUERY_DONE, QueryDone(name, extras or {}, error, rows)))

    def link(self, event: CtpLinkEvent) -> None:
        self.event_engine.put(Event(EVENT_LINK, event))

    def orphan_held(self) -> None:
        self.event_engine.put(Event(EVENT_ORPHAN, None))

    def process_timer_event(self, event: Any) -> None:
        try:
            super().process_timer_event(event)
        except Exception as exc:  # never into the EventEngine thread
            self.write_log(f"periodic CTP query failed: {exc!r}")


# ---------------------------------------------------------------------- our requests as vnpy's


def order_request(req: OrderRequest) -> vn_object.OrderRequest:
    """``req`` (checked by ``fields.check_request``) as vnpy's order request."""
    symbol, exchange = split_vt_symbol(req.vt_symbol)
    return vn_object.OrderRequest(
        symbol=symbol,
        exchange=constant.Exchange(exchange.value),
        direction=constant.Direction[req.direction.name],
        type=constant.OrderType[req.type.name],
        volume=req.volume,
        price=req.price,
        offset=constant.Offset[req.offset.name],
        reference=req.reference,
    )


def cancel_request(order_id: str, vt_symbol: str) -> vn_object.CancelRequest:
    symbol, exchange = split_vt_symbol(vt_symbol)
    return vn_object.CancelRequest(
        orderid=order_id, symbol=symbol, exchange=constant.Exchange(exchange.value)
    )


def subscribe_request(symbol: str, exchange: str) -> vn_object.SubscribeRequest:
    return vn_object.SubscribeRequest(symbol=symbol, exchange=constant.Exchange(exchange))
