"""A scripted CTP front for offline tests of the CTP gateway (``gateways/ctp/``).

``attach(vnpy_gateway, state_dir)`` replaces the native request methods of vnpy_ctp's td and
md api objects (``createFtdcTraderApi``, ``init``, ``reqUserLogin``, ``reqOrderInsert``, ...)
with Python fakes that answer the way the CTP api does: by calling the api's own callbacks
(``onFrontConnected``, ``onRspUserLogin``, ``onRtnOrder``, ``onRtnTrade``,
``onRspQryInvestorPosition``, ``onRtnDepthMarketData``, ...) with CTP field dictionaries, from
one worker thread per api. ``install`` is the same for the ``QTRADER_CTP_FAKE_FRONT`` seam
(``tests.fake_ctp:install``) inside a trader process, where SIGUSR1 also drops the trade front
(reason 4097) and it reconnects after ``RECONNECT_DELAY``.

The script:

- contracts ``rb2601.SHFE`` (book 3500 / 3501), ``rb2605.SHFE`` (3450 / 3451), ``m2605.DCE``
  (2800 / 2801), ``au2612.SHFE`` and one option (which the gateway does not report);
- the broker's commission rates (``FakeFront.commission_rates``, by product as CTP usually
  answers: rb 0.0001 of turnover open / close / close-today, au 2 yuan a lot open and close and
  0 close-today, m 1.5 yuan a lot; a test may add an instrument's own row or remove one, which
  makes the answer empty), answered to ``ReqQryInstrumentCommissionRate`` and charged at every
  fill (the account's ``Commission``); ``FakeTd.rate_requests`` / ``rate_answers`` keep when each
  commission query came and was answered, and a query in ``FakeTd.unanswered`` is never answered;
- the account starts long 5 ``rb2601.SHFE`` (3 from yesterday in the history row, 2 bought
  today by another session: its order and trade are in the private flow, with a second order
  of that session still working) and short 1 ``m2605.DCE`` from yesterday;
- an order priced through the opposite best price (buy >= ask, sell <= bid) fills at that
  price in two parts: NoTradeQueueing -> PartTradedQueueing + trade -> AllTraded + trade (one
  lot fills at once); any other order queues until it is cancelled;
- a close needs the lots: SHFE close-today takes today's, close and close-yesterday take
  yesterday's (``CTP:平今仓位不足`` / ``CTP:平昨仓位不足`` otherwise);
- user ``REFUSED_USER`` fails the login with ErrorID 3 (``CTP:不合法的登录``), AppID
  ``REFUSED_APPID`` the authentication with ErrorID 63 (``CTP:客户端认证失败``);
- user ``SILENT_USER``'s login is never answered (a front that hangs after connecting);
- every order insert request is kept (``FakeFront.requests``) and appended as a JSON line to
  ``<state_dir>/fake_ctp_orders.jsonl``, so a test can check the ``CombOffsetFlag`` it got;
- the md front sends a tick for every subscribed contract at once and every ``TICK_INTERVAL``;
  ``FakeMd.disconnect`` drops it (no reconnect until ``FakeMd.reconnect``);
- a test can add another terminal's orders with any CTP fields (``external_order``,
  ``update_order``, ``fill``), a trade whose order never comes (``orphan_trade``), and have a
  query answered with an error (``FakeTd.query_errors``: per query name, answered in turn before
  the real answer; a commission query's name is ``commission:<InstrumentID>``); ``FakeTd.queries``
  lists every query received.

The books (orders, trades, positions, funds, the day's private flow, the session and id counters)
live in memory, or, when the environment variable ``QTRADER_CTP_FAKE_BOOKS`` is set (``BOOKS_ENV``),
in ``<state_dir>/fake_ctp_books.json``, like a real broker's: loaded when a front is installed and
saved at every change, so they outlive the trader process (a crashed worker's successor logs in to
the same day). The file is only read or written under an exclusive ``flock`` of
``<state_dir>/fake_ctp_books.lock``; ``offline_books(state_dir)`` holds it and yields the books as a
front with no api behind it, for a test to change them (fill a resting order: ``execute``; another
terminal's order: ``external_order``) while no worker runs. A front being installed waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import os
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.models import now
from core.sessions import trading_day_of

REFUSED_USER = "refused"
REFUSED_APPID = "refused_app"  # the authentication of this AppID fails
SILENT_USER = "silent"  # the front connects, but never answers this user's login
TICK_INTERVAL = 0.2
RECONNECT_DELAY = 0.3
ORDER_LOG = "fake_ctp_orders.jsonl"
BOOKS_ENV = "QTRADER_CTP_FAKE_BOOKS"  # set: the books persist in the state directory
BOOKS_FILE = "fake_ctp_books.json"
BOOKS_LOCK = "fake_ctp_books.lock"
BOOKS_LOCK_TIMEOUT = 10.0  # seconds to wait for the books (a test holding them, another process)
OK = {"ErrorID": 0, "ErrorMsg": "正确"}
DBL_MAX = 1.7976931348623157e308  # CTP's "no value" in a price field

#: Fronts by vnpy gateway name, for in-process tests.
FRONTS: dict[str, FakeFront] = {}


@dataclass
class Instrument:
    symbol: str
    exchange: str
    name: str
    product_id: str
    size: int
    tick: float
    bid: float
    ask: float
    pre_settlement: float
    product_class: str = "1"  # futures

    @property
    def close_today_rules(self) -> bool:
        return self.exchange in ("SHFE", "INE")


def commission_row(
    key: str,
    exchange: str = "",
    *,
    open_money: float = 0.0,
    open_volume: float = 0.0,
    close_money: float = 0.0,
    close_volume: float = 0.0,
    close_today_money: float = 0.0,
    close_today_volume: float = 0.0,
) -> dict[str, Any]:
    """A CThostFtdcInstrumentCommissionRateField as the api delivers it; ``key`` is the
    InstrumentID CTP answers with: an instrument, or (most brokers) its product."""
    return {
        "InstrumentID": key,
        "InvestorRange": "1",  # all investors
        "BrokerID": "9999",
        "InvestorID": "00000000",
        "OpenRatioByMoney": open_money,
        "OpenRatioByVolume": open_volume,
        "CloseRatioByMoney": close_money,
        "CloseRatioByVolume": close_volume,
        "CloseTodayRatioByMoney": close_today_money,
        "CloseTodayRatioByVolume": close_today_volume,
        "ExchangeID": exchange,
        "BizType": "",
        "InvestUnitID": "",
    }


def default_commission_rates() -> dict[str, dict[str, Any]]:
    return {
        "rb": commission_row("rb", "SHFE", open_money=0.0001, close_money=0.0001, close_today_money=0.0001),
        "au": commission_row(
            "au", open_volume=2.0, close_volume=2.0, close_today_volume=0.0
        ),  # no ExchangeID
        "m": commission_row("m", "DCE", open_volume=1.5, close_volume=1.5, close_today_volume=1.5),
    }


@dataclass
class Holding:
    """One (contract, PosiDirection) of the broker's book."""

    yd_open: int = 0  # YdPosition: yesterday's volume at the start of the day
    yd: int = 0
    td: int = 0
    yd_price: float = 0.0  # pre-settlement: yesterday's lots' cost basis
    td_notional: float = 0.0  # sum of today's open prices x lots
    frozen_yd: int = 0
    frozen_td: int = 0


class Worker:
    """One callback thread, like the CTP api's: runs queued calls in order."""

    def __init__(self, name: str, idle: Callable[[], None] | None = None) -> None:
        self._queue: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.Queue()
        self._idle = idle
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        self._queue.put((fn, args))

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=TICK_INTERVAL)
            except queue.Empty:
                if self._idle is not None:
                    self._call(self._idle, ())
                continue
            if item is None:
                return
            self._call(*item)

    @staticmethod
    def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except Exception:  # as the C++ wrapper does: print and go on
            traceback.print_exc()


class BookFile:
    """The broker's books on disk: one JSON file, replaced atomically, read and written only
    under an exclusive ``flock`` (one process at a time; re-entrant within a process)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / BOOKS_FILE
        self.lock_path = Path(state_dir) / BOOKS_LOCK
        self._guard = threading.RLock()
        self._fd: int | None = None
        self._depth = 0

    @contextlib.contextmanager
    def locked(self, timeout: float = BOOKS_LOCK_TIMEOUT) -> Iterator[None]:
        with self._guard:
            if self._depth == 0:
                self._fd = _flock(self.lock_path, timeout)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    os.close(self._fd)  # releases the flock
                    self._fd = None

    def read(self) -> dict[str, Any] | None:
        with self.locked():
            try:
                return json.loads(self.path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                return None

    def write(self, books: dict[str, Any]) -> None:
        with self.locked():
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(books, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, self.path)


def _flock(path: Path, timeout: float) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise TimeoutError(f"{path} still locked after {timeout:g} s") from None
            time.sleep(0.01)


class FakeFront:
    """The broker and exchange behind one vnpy_ctp gateway (see the module docstring).

    ``gateway`` None: the books alone, with no api to push to (``offline_books``); ``books``: where
    they persist (None: in memory only).
    """

    def __init__(self, gateway: Any | None, state_dir: Path, books: BookFile | None = None) -> None:
        self.lock = threading.RLock()
        self.state_dir = Path(state_dir)
        self.books = books
        self.trading_day = f"{trading_day_of(now()):%Y%m%d}"
        self.instruments = {
            i.symbol: i
            for i in (
                Instrument("rb2601", "SHFE", "螺纹钢2601", "rb", 10, 1.0, 3500.0, 3501.0, 3495.0),
                Instrument("rb2605", "SHFE", "螺纹钢2605", "rb", 10, 1.0, 3450.0, 3451.0, 3440.0),
                Instrument("m2605", "DCE", "豆粕2605", "m", 10, 1.0, 2800.0, 2801.0, 2790.0),
                Instrument("au2612", "SHFE", "黄金2612", "au", 1000, 0.02, 600.0, 600.02, 598.0),
                Instrument("m2605-C-3000", "DCE", "豆粕看涨3000", "m_o", 10, 0.5, 20.0, 21.0, 20.0, "2"),
            )
        }
        self.holdings: dict[tuple[str, str], Holding] = {
            ("rb2601", "2"): Holding(yd_open=3, yd=3, td=2, yd_price=3495.0, td_notional=2 * 3490.0),
            ("m2605", "3"): Holding(yd_open=1, yd=1, yd_price=2790.0),
        }
        self.orders: dict[tuple[int, int, str], dict[str, Any]] = {}
        self.trades: list[dict[str, Any]] = []
        self.flow: list[tuple[str, dict[str, Any]]] = []  # the private flow of the day
        self.requests: list[dict[str, Any]] = []
        self.commission = 0.0
        self.commission_rates = default_commission_rates()  # InstrumentID (instrument or product) -> row
        self.session_id = 1000  # the last login's SessionID: unique for the day, whatever process asks
        self._sysid = 0
        self._trade_ids: dict[str, int] = {}
        self.td = FakeTd(self, gateway.td_api) if gateway is not None else None
        self.md = FakeMd(self, gateway.md_api) if gateway is not None else None
        if books is None:
            self._seed_other_session()
            return
        with books.locked():
            saved = books.read()
            if saved is None:
                self._seed_other_session()
            else:
                self._restore(saved)

    # ------------------------------------------------------------------ persistence

    def save(self) -> None:
        """The books changed: on disk before anyone hears of it (when they persist)."""
        if self.books is not None:
            with self.lock:
                self.books.write(self._dump())

    def _dump(self) -> dict[str, Any]:
        return {
            "trading_day": self.trading_day,
            "holdings": [
                [symbol, posi, dataclasses.asdict(h)] for (symbol, posi), h in self.holdings.items()
            ],
            "orders": list(self.orders.values()),
            "trades": self.trades,
            "flow": [[kind, item] for kind, item in self.flow],
            "commission": self.commission,
            "session_id": self.session_id,
            "sysid": self._sysid,
            "trade_ids": self._trade_ids,
        }

    def _restore(self, books: dict[str, Any]) -> None:
        self.trading_day = books["trading_day"]
        self.holdings = {(symbol, posi): Holding(**h) for symbol, posi, h in books["holdings"]}
        self.orders = {(o["FrontID"], o["SessionID"], o["OrderRef"]): o for o in books["orders"]}
        self.trades = books["trades"]
        self.flow = [(kind, item) for kind, item in books["flow"]]
        self.commission = books["commission"]
        self.session_id = books["session_id"]
        self._sysid = books["sysid"]
        self._trade_ids = books["trade_ids"]

    # ------------------------------------------------------------------ the book

    def _seed_other_session(self) -> None:
        """Another terminal bought the 2 today lots and left an order working."""
        filled = self._new_order(9, 77, "1", "rb2601", "0", "0", 3490.0, 2)
        self._publish(filled)
        filled.update(OrderStatus="0", VolumeTraded=2, StatusMsg="全部成交")
        self._publish(filled)
        self._publish_trade(filled, 3490.0, 2)
        working = self._new_order(9, 77, "2", "rb2601", "0", "0", 3400.0, 1)
        self._publish(working)

    def _new_order(
        self,
        front: int,
        session: int,
        ref: str,
        symbol: str,
        direction: str,
        offset: str,
        price: float,
        volume: int,
        sysid: str | None = None,
    ) -> dict[str, Any]:
        self._sysid += 1
        stamp = now()
        order = {
            "BrokerID": "9999",
            "InvestorID": "000001",
            "InstrumentID": symbol,
            "ExchangeID": self.instruments[symbol].exchange,
            "OrderRef": ref,
            "FrontID": front,
            "SessionID": session,
            "OrderSysID": f"{sysid or self._sysid:>12}",
            "Direction": direction,
            "CombOffsetFlag": offset,
            "CombHedgeFlag": "1",
            "LimitPrice": price,
            "VolumeTotalOriginal": volume,
            "VolumeTraded": 0,
            "VolumeTotal": volume,
            "OrderPriceType": "2",
            "TimeCondition": "3",
            "VolumeCondition": "1",
            "OrderStatus": "3",
            "OrderSubmitStatus": "3",
            "StatusMsg": "未成交",
            "InsertDate": f"{stamp:%Y%m%d}",
            "InsertTime": f"{stamp:%H:%M:%S}",
            "TradingDay": self.trading_day,
        }
        self.orders[(front, session, ref)] = order
        return order

    def _publish(self, order: dict[str, Any]) -> dict[str, Any]:
        snapshot = dict(order)
        self.flow.append(("order", snapshot))
        self.save()
        return snapshot

    def _publish_trade(self, order: dict[str, Any], price: float, volume: int) -> dict[str, Any]:
        exchange = order["ExchangeID"]
        self._trade_ids[exchange] = self._trade_ids.get(exchange, 0) + 1
        stamp = now()
        trade = {
            "BrokerID": "9999",
            "InvestorID": "000001",
            "InstrumentID": order["InstrumentID"],
            "ExchangeID": exchange,
            "OrderRef": order["OrderRef"],
            "OrderSysID": order["OrderSysID"],
            "TradeID": f"{self._trade_ids[exchange]:>12}",  # numbered per exchange per day
            "Direction": order["Direction"],
            "OffsetFlag": order["CombOffsetFlag"],
            "HedgeFlag": "1",
            "Price": price,
            "Volume": volume,
            "TradeDate": f"{stamp:%Y%m%d}",
            "TradeTime": f"{stamp:%H:%M:%S}",
            "TradingDay": self.trading_day,
        }
        self.trades.append(trade)
        self.flow.append(("trade", trade))
        self.save()
        return trade

    # ------------------------------------------------------------------ scripted by tests

    def external_order(
        self,
        symbol: str,
        direction: str,
        offset: str,
        price: float,
        volume: int,
        *,
        session: int = 88,
        sysid: str | None = None,
        push: bool = True,
        **fields: Any,
    ) -> dict[str, Any]:
        """Another terminal's order, with any CTP ``fields``: published (and pushed if ``push``)."""
        with self.lock:
            ref = str(sum(1 for k in self.orders if k[:2] == (5, session)) + 1)
            order = self._new_order(5, session, ref, symbol, direction, offset, price, volume, sysid)
            order.update(fields)
            snapshot = self._publish(order)
        if push:
            self._push("order", snapshot)
        return order

    def update_order(self, order: dict[str, Any], **fields: Any) -> None:
        """A new notice of ``order`` with ``fields`` changed."""
        with self.lock:
            order.update(fields)
            snapshot = self._publish(order)
        self._push("order", snapshot)

    def fill(self, order: dict[str, Any], price: float, volume: int, *, push: bool = True) -> dict[str, Any]:
        """A trade of ``order`` (its notices are the test's, with ``update_order``)."""
        with self.lock:
            order["VolumeTraded"] += volume
            order["VolumeTotal"] = order["VolumeTotalOriginal"] - order["VolumeTraded"]
            self.apply_fill(order, price, volume)
            trade = self._publish_trade(order, price, volume)
        if push:
            self._push("trade", trade)
        return trade

    def execute(self, order: dict[str, Any], price: float, volume: int | None = None) -> dict[str, Any]:
        """The exchange fills ``volume`` of a working ``order`` (all that is left by default) at
        ``price``: the order's notice, then the trade, as CTP sends them."""
        with self.lock:
            left = order["VolumeTotalOriginal"] - order["VolumeTraded"]
            volume = left if volume is None else volume
            if not 0 < volume <= left or order["OrderStatus"] not in ("1", "3", "a"):
                raise ValueError(
                    f"order {order['OrderRef']} cannot fill {volume} (status {order['OrderStatus']})"
                )
            order["VolumeTraded"] += volume
            done = volume == left
            order.update(
                OrderStatus="0" if done else "1",
                VolumeTotal=left - volume,
                StatusMsg="全部成交" if done else "部分成交",
            )
            self.apply_fill(order, price, volume)
            snapshot = self._publish(order)
            trade = self._publish_trade(order, price, volume)
        self._push("order", snapshot)
        self._push("trade", trade)
        return trade

    def order(self, order_id: str) -> dict[str, Any]:
        """An order by its vnpy (and qtrader) id, ``{FrontID}_{SessionID}_{OrderRef}``."""
        front, session, ref = order_id.split("_")
        return self.orders[(int(front), int(session), ref)]

    def book_positions(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(vt_symbol, LONG/SHORT) -> (volume, yesterday's volume) of every position held."""
        return {
            (f"{symbol}.{self.instruments[symbol].exchange}", "LONG" if posi == "2" else "SHORT"): (
                h.yd + h.td,
                h.yd,
            )
            for (symbol, posi), h in self.holdings.items()
            if h.yd + h.td
        }

    def _push(self, kind: str, item: dict[str, Any]) -> None:
        if self.td is not None:
            self.td.push(kind, item)

    def orphan_trade(
        self, symbol: str, direction: str, offset: str, price: float, volume: int, sysid: str
    ) -> dict[str, Any]:
        """A trade of the day whose order CTP never lists (nor sends)."""
        inst = self.instruments[symbol]
        order = {
            "InstrumentID": symbol,
            "ExchangeID": inst.exchange,
            "OrderRef": "",
            "OrderSysID": f"{sysid:>12}",
            "Direction": direction,
            "CombOffsetFlag": offset,
        }
        with self.lock:
            trade = self._publish_trade(order, price, volume)
        self._push("trade", trade)
        return trade

    def closable(self, symbol: str, posi: str, offset: str) -> int:
        holding = self.holdings.get((symbol, posi), Holding())
        if not self.instruments[symbol].close_today_rules:
            return holding.yd + holding.td - holding.frozen_yd - holding.frozen_td
        if offset == "3":
            return holding.td - holding.frozen_td
        return holding.yd - holding.frozen_yd

    def freeze(self, symbol: str, posi: str, offset: str, volume: int) -> None:
        holding = self.holdings[(symbol, posi)]
        if self.instruments[symbol].close_today_rules:
            if offset == "3":
                holding.frozen_td += volume
            else:
                holding.frozen_yd += volume
            return
        from_yd = min(volume, holding.yd - holding.frozen_yd)  # yesterday's lots close first
        holding.frozen_yd += from_yd
        holding.frozen_td += volume - from_yd

    def commission_row(self, symbol: str) -> dict[str, Any] | None:
        """The broker's rates for ``symbol``: its own row, else its product's (None: none)."""
        inst = self.instruments.get(symbol)
        row = self.commission_rates.get(symbol)
        if row is None and inst is not None:
            row = self.commission_rates.get(inst.product_id)
        return dict(row) if row is not None else None

    def fee(self, symbol: str, offset: str, price: float, volume: int) -> float:
        """What the broker charges for a fill (CombOffsetFlag ``offset``): 3 is close-today."""
        row = self.commission_row(symbol) or {}
        kind = "Open" if offset == "0" else "CloseToday" if offset == "3" else "Close"
        turnover = price * volume * self.instruments[symbol].size
        return turnover * row.get(f"{kind}RatioByMoney", 0.0) + volume * row.get(f"{kind}RatioByVolume", 0.0)

    def apply_fill(self, order: dict[str, Any], price: float, volume: int) -> None:
        symbol, offset, buy = order["InstrumentID"], order["CombOffsetFlag"], order["Direction"] == "0"
        self.commission += self.fee(symbol, offset, price, volume)
        if offset == "0":
            holding = self.holdings.setdefault((symbol, "2" if buy else "3"), Holding())
            holding.td += volume
            holding.td_notional += price * volume
            return
        holding = self.holdings[(symbol, "3" if buy else "2")]
        rules = self.instruments[symbol].close_today_rules
        from_td = volume if offset == "3" else 0 if rules else max(0, volume - holding.yd)
        from_yd = volume - from_td
        if holding.td:
            holding.td_notional -= holding.td_notional / holding.td * from_td
        holding.td -= from_td
        holding.yd -= from_yd
        holding.frozen_td = max(0, holding.frozen_td - from_td)
        holding.frozen_yd = max(0, holding.frozen_yd - from_yd)

    def unfreeze(self, order: dict[str, Any]) -> None:
        offset = order["CombOffsetFlag"]
        if offset == "0":
            return
        left = order["VolumeTotalOriginal"] - order["VolumeTraded"]
        holding = self.holdings[(order["InstrumentID"], "3" if order["Direction"] == "0" else "2")]
        if self.instruments[order["InstrumentID"]].close_today_rules:
            from_td = left if offset == "3" else 0
        else:
            from_td = min(left, holding.frozen_td)
        holding.frozen_td -= from_td
        holding.frozen_yd = max(0, holding.frozen_yd - (left - from_td))

    # ------------------------------------------------------------------ query answers

    def position_rows(self) -> list[dict[str, Any]]:
        rows = []
        for (symbol, posi), h in self.holdings.items():
            inst = self.instruments[symbol]
            sign = 1 if posi == "2" else -1
            base = {
                "BrokerID": "9999",
                "InvestorID": "000001",
                "InstrumentID": symbol,
                "ExchangeID": inst.exchange,
                "PosiDirection": posi,
                "HedgeFlag": "1",
                "LongFrozen": 0,
                "ShortFrozen": 0,
            }
            frozen_key = "ShortFrozen" if posi == "2" else "LongFrozen"
            parts: list[tuple[str, int, int, int, float, int]] = []  # date, pos, yd, today, cost, frozen
            if inst.close_today_rules:
                if h.yd_open:
                    parts.append(("2", h.yd, h.yd_open, 0, h.yd * h.yd_price, h.frozen_yd))
                if h.td or h.td_notional:
                    parts.append(("1", h.td, 0, h.td, h.td_notional, h.frozen_td))
            else:
                cost = h.yd * h.yd_price + h.td_notional
                parts.append(("1", h.yd + h.td, h.yd_open, h.td, cost, h.frozen_yd + h.frozen_td))
            for date, position, yd_open, today, cost, frozen in parts:
                rows.append(
                    {
                        **base,
                        "PositionDate": date,
                        "Position": position,
                        "YdPosition": yd_open,
                        "TodayPosition": today,
                        "PositionCost": cost * inst.size,
                        "UseMargin": cost * inst.size * 0.1,
                        "PositionProfit": sign * (inst.bid * position - cost) * inst.size,
                        frozen_key: frozen,
                    }
                )
        return rows

    def account(self, userid: str) -> dict[str, Any]:
        rows = self.position_rows()
        profit = sum(r["PositionProfit"] for r in rows)
        margin = sum(r["UseMargin"] for r in rows)
        balance = 1_000_000.0 + profit - self.commission
        return {
            "BrokerID": "9999",
            "AccountID": userid,
            "PreBalance": 1_000_000.0,
            "Balance": balance,
            "Available": balance - margin,
            "CurrMargin": margin,
            "FrozenMargin": 0.0,
            "FrozenCash": 0.0,
            "FrozenCommission": 0.0,
            "Commission": self.commission,
            "CloseProfit": 0.0,
            "PositionProfit": profit,
            "TradingDay": self.trading_day,
        }

    def instrument_field(self, inst: Instrument) -> dict[str, Any]:
        option = inst.product_class == "2"
        return {
            "InstrumentID": inst.symbol,
            "ExchangeID": inst.exchange,
            "InstrumentName": inst.name,
            "ProductClass": inst.product_class,
            "ProductID": inst.product_id,
            "VolumeMultiple": inst.size,
            "PriceTick": inst.tick,
            "MinLimitOrderVolume": 1,
            "MaxLimitOrderVolume": 500,
            "LongMarginRatio": 0.1,
            "ShortMarginRatio": 0.1,
            "UnderlyingInstrID": "m2605" if option else "",
            "OptionsType": "1" if option else "",
            "StrikePrice": 3000.0 if option else 0.0,
            "OpenDate": "20250515",
            "ExpireDate": "20260415",
        }

    def depth(self, inst: Instrument, volume: int) -> dict[str, Any]:
        stamp = now()
        levels = {}
        # SHFE/INE fronts report five levels; the others level 1 and CTP's "no value" after it
        deep = range(1, 6) if inst.close_today_rules else range(1, 2)
        for n in range(1, 6):
            levels[f"BidPrice{n}"] = inst.bid - (n - 1) * inst.tick if n in deep else DBL_MAX
            levels[f"AskPrice{n}"] = inst.ask + (n - 1) * inst.tick if n in deep else DBL_MAX
            levels[f"BidVolume{n}"] = 10 * n if n in deep else 0
            levels[f"AskVolume{n}"] = 12 * n if n in deep else 0
        return {
            "TradingDay": self.trading_day,
            "ActionDay": f"{stamp:%Y%m%d}",
            "UpdateTime": f"{stamp:%H:%M:%S}",
            "UpdateMillisec": 500 if stamp.microsecond >= 500_000 else 0,  # as CTP sends it
            "InstrumentID": inst.symbol,
            "ExchangeID": "",
            "LastPrice": inst.bid,
            "PreSettlementPrice": inst.pre_settlement,
            "PreClosePrice": inst.pre_settlement + inst.tick,
            "OpenPrice": inst.pre_settlement,
            "HighestPrice": inst.ask,
            "LowestPrice": inst.bid - 10 * inst.tick,
            "Volume": volume,
            "Turnover": volume * inst.bid * inst.size,
            "OpenInterest": 150_000.0,
            "UpperLimitPrice": round(inst.pre_settlement * 1.07),
            "LowerLimitPrice": round(inst.pre_settlement * 0.93),
            "SettlementPrice": DBL_MAX,  # no value yet
            **levels,
        }


class FakeTd:
    """The trade front: vnpy_ctp's ``CtpTdApi`` native requests, answered on a worker thread."""

    REQUESTS = (
        "createFtdcTraderApi",
        "subscribePrivateTopic",
        "subscribePublicTopic",
        "registerFront",
        "init",
        "exit",
        "reqAuthenticate",
        "reqUserLogin",
        "reqSettlementInfoConfirm",
        "reqQryInstrument",
        "reqQryOrder",
        "reqQryTrade",
        "reqQryTradingAccount",
        "reqQryInvestorPosition",
        "reqQryInstrumentCommissionRate",
        "reqOrderInsert",
        "reqOrderAction",
    )

    def __init__(self, front: FakeFront, api: Any) -> None:
        self.front = front
        self.api = api
        self.worker = Worker(f"fake-ctp-td-{id(self):x}")
        self.connected = False
        self.private_mode: int | None = None
        self.address = ""
        self.flow_path = ""
        self.logins: list[dict[str, Any]] = []
        self.queries: list[str] = []  # orders / trades / account / positions, as received
        self.query_errors: dict[str, list[dict[str, Any]]] = {}  # name -> errors to answer first
        self.unanswered: set[str] = set()  # query names received but never answered
        self.rate_requests: list[tuple[float, str]] = []  # (time.monotonic(), InstrumentID) asked
        self.rate_answers: list[tuple[float, str]] = []  # (time.monotonic(), InstrumentID) answered
        for name in self.REQUESTS:
            setattr(api, name, getattr(self, name))

    # ------------------------------------------------------------------ session

    def createFtdcTraderApi(self, path: bytes | str, production_mode: bool = True) -> None:
        self.flow_path = path.decode("GBK") if isinstance(path, bytes) else path

    def subscribePrivateTopic(self, mode: int) -> None:
        self.private_mode = mode

    def subscribePublicTopic(self, mode: int) -> None:
        pass

    def registerFront(self, address: str) -> None:
        self.address = address

    def init(self) -> None:
        self.worker.start()
        self.worker.call(self._connected)

    def exit(self) -> int:
        self.connected = False
        self.worker.stop()
        return 0

    def disconnect(self, reason: int = 0x1001) -> None:
        """Drop the connection; the api reconnects after ``RECONNECT_DELAY`` (as CTP's does)."""
        self.worker.call(self._disconnected, reason)

    def _connected(self) -> None:
        self.connected = True
        self.api.onFrontConnected()

    def _disconnected(self, reason: int) -> None:
        self.connected = False
        self.api.onFrontDisconnected(reason)
        time.sleep(RECONNECT_DELAY)  # the api's own reconnect delay, on its thread
        self._connected()

    def push(self, kind: str, item: dict[str, Any]) -> None:
        """An order or trade notice to the api, on its thread (when the front is connected)."""
        if self.connected:
            self.worker.call(self.api.onRtnOrder if kind == "order" else self.api.onRtnTrade, dict(item))

    def _query(self, name: str, callback: Callable[..., None], answer: Callable[..., Any], *args: Any) -> int:
        """Answer query ``name`` with its next scripted error, if any, else with ``answer``."""
        with self.front.lock:
            self.queries.append(name)
            errors = self.query_errors.get(name)
            error = errors.pop(0) if errors else None
        if error is not None:
            return self._request(callback, {}, error, args[-1], True)
        return self._request(answer, *args)

    def _request(self, fn: Callable[..., None], *args: Any) -> int:
        if not self.connected:
            return -1  # CTP: network failure
        self.worker.call(fn, *args)
        return 0

    def reqAuthenticate(self, req: dict[str, Any], reqid: int) -> int:
        data = {"BrokerID": req["BrokerID"], "UserID": req["UserID"], "AppID": req.get("AppID", "")}
        error = {"ErrorID": 63, "ErrorMsg": "CTP:客户端认证失败"} if data["AppID"] == REFUSED_APPID else OK
        return self._request(self.api.onRspAuthenticate, data, error, reqid, True)

    def reqUserLogin(self, req: dict[str, Any], reqid: int) -> int:
        self.logins.append(dict(req))
        return self._request(self._login, req, reqid)

    def _login(self, req: dict[str, Any], reqid: int) -> None:
        if req["UserID"] == SILENT_USER:
            return
        if req["UserID"] == REFUSED_USER:
            self.api.onRspUserLogin({}, {"ErrorID": 3, "ErrorMsg": "CTP:不合法的登录"}, reqid, True)
            return
        with self.front.lock:
            self.front.session_id += 1
            session = self.front.session_id
            self.front.save()
        stamp = now()
        data = {
            "TradingDay": self.front.trading_day,
            "LoginTime": f"{stamp:%H:%M:%S}",
            "BrokerID": req["BrokerID"],
            "UserID": req["UserID"],
            "SystemName": "FakeCTP",
            "FrontID": 1,
            "SessionID": session,
            "MaxOrderRef": "0",
        }
        self.api.onRspUserLogin(data, OK, reqid, True)
        if self.private_mode == 0:  # THOST_TERT_RESTART: the day's private flow again
            with self.front.lock:
                flow = list(self.front.flow)
            for kind, item in flow:
                (self.api.onRtnOrder if kind == "order" else self.api.onRtnTrade)(dict(item))

    def reqSettlementInfoConfirm(self, req: dict[str, Any], reqid: int) -> int:
        stamp = now()
        data = {**req, "ConfirmDate": f"{stamp:%Y%m%d}", "ConfirmTime": f"{stamp:%H:%M:%S}"}
        return self._request(self.api.onRspSettlementInfoConfirm, data, OK, reqid, True)

    # ------------------------------------------------------------------ queries

    def _answer(self, callback: Callable[..., None], rows: list[dict[str, Any]], reqid: int) -> None:
        if not rows:
            callback({}, {}, reqid, True)
        for i, row in enumerate(rows):
            callback(row, {}, reqid, i == len(rows) - 1)

    def reqQryInstrument(self, req: dict[str, Any], reqid: int) -> int:
        rows = [self.front.instrument_field(i) for i in self.front.instruments.values()]
        return self._request(self._answer, self.api.onRspQryInstrument, rows, reqid)

    def reqQryOrder(self, req: dict[str, Any], reqid: int) -> int:
        with self.front.lock:
            rows = [dict(o) for o in self.front.orders.values()]
        callback = self.api.onRspQryOrder
        return self._query("orders", callback, self._answer, callback, rows, reqid)

    def reqQryTrade(self, req: dict[str, Any], reqid: int) -> int:
        with self.front.lock:
            rows = [dict(t) for t in self.front.trades]
        callback = self.api.onRspQryTrade
        return self._query("trades", callback, self._answer, callback, rows, reqid)

    def reqQryTradingAccount(self, req: dict[str, Any], reqid: int) -> int:
        return self._query("account", self.api.onRspQryTradingAccount, self._account, reqid)

    def _account(self, reqid: int) -> None:
        with self.front.lock:
            data = self.front.account(self.logins[-1]["UserID"] if self.logins else "")
        self.api.onRspQryTradingAccount(data, {}, reqid, True)

    def reqQryInvestorPosition(self, req: dict[str, Any], reqid: int) -> int:
        return self._query("positions", self.api.onRspQryInvestorPosition, self._positions, reqid)

    def _positions(self, reqid: int) -> None:
        with self.front.lock:
            rows = self.front.position_rows()
        self._answer(self.api.onRspQryInvestorPosition, rows, reqid)

    def reqQryInstrumentCommissionRate(self, req: dict[str, Any], reqid: int) -> int:
        symbol = str(req.get("InstrumentID") or "")
        name = f"commission:{symbol}"
        with self.front.lock:
            self.rate_requests.append((time.monotonic(), symbol))
            if name in self.unanswered:
                self.queries.append(name)
                return 0 if self.connected else -1

        def error_answer(data: dict[str, Any], error: dict[str, Any], reqid: int, last: bool) -> None:
            with self.front.lock:
                self.rate_answers.append((time.monotonic(), symbol))
            self.api.onRspQryInstrumentCommissionRate(data, error, reqid, last)

        return self._query(name, error_answer, self._rates, symbol, reqid)

    def _rates(self, symbol: str, reqid: int) -> None:
        with self.front.lock:
            row = self.front.commission_row(symbol)
            self.rate_answers.append((time.monotonic(), symbol))
        self._answer(self.api.onRspQryInstrumentCommissionRate, [row] if row else [], reqid)

    # ------------------------------------------------------------------ orders

    def reqOrderInsert(self, req: dict[str, Any], reqid: int) -> int:
        with self.front.lock:
            self.front.requests.append(dict(req))
            with (
                contextlib.suppress(OSError),
                open(self.front.state_dir / ORDER_LOG, "a", encoding="utf-8") as f,
            ):
                f.write(json.dumps(req, ensure_ascii=False) + "\n")
        return self._request(self._insert, dict(req), reqid, self.front.session_id)

    def _refuse(self, req: dict[str, Any], reqid: int, error_id: int, message: str) -> None:
        self.api.onRspOrderInsert(req, {"ErrorID": error_id, "ErrorMsg": message}, reqid, True)

    def _insert(self, req: dict[str, Any], reqid: int, session: int) -> None:
        front = self.front
        symbol, offset, volume = req["InstrumentID"], req["CombOffsetFlag"], int(req["VolumeTotalOriginal"])
        inst = front.instruments.get(symbol)
        if inst is None:
            self._refuse(req, reqid, 16, "CTP:找不到合约")
            return
        buy = req["Direction"] == "0"
        with front.lock:
            if offset != "0":
                posi = "3" if buy else "2"
                if front.closable(symbol, posi, offset) < volume:
                    today = inst.close_today_rules and offset == "3"
                    self._refuse(
                        req, reqid, 50 if today else 51, "CTP:平今仓位不足" if today else "CTP:平昨仓位不足"
                    )
                    return
                front.freeze(symbol, posi, offset, volume)
            order = front._new_order(
                1, session, req["OrderRef"], symbol, req["Direction"], offset, req["LimitPrice"], volume
            )
            order.update(
                OrderPriceType=req["OrderPriceType"],
                TimeCondition=req["TimeCondition"],
                VolumeCondition=req["VolumeCondition"],
                OrderStatus="a",
                OrderSubmitStatus="0",
                StatusMsg="报单已提交",
            )
            events: list[tuple[str, dict[str, Any]]] = [("order", front._publish(order))]
            order.update(OrderStatus="3", OrderSubmitStatus="3", StatusMsg="未成交")
            events.append(("order", front._publish(order)))
            price = inst.ask if buy else inst.bid
            if (buy and req["LimitPrice"] >= inst.ask) or (not buy and req["LimitPrice"] <= inst.bid):
                parts = [volume // 2, volume - volume // 2] if volume > 1 else [volume]
                for part in parts:
                    order["VolumeTraded"] += part
                    done = order["VolumeTraded"] == volume
                    order.update(
                        OrderStatus="0" if done else "1",
                        VolumeTotal=volume - order["VolumeTraded"],
                        StatusMsg="全部成交" if done else "部分成交",
                    )
                    events.append(("order", front._publish(order)))
                    front.apply_fill(order, price, part)
                    events.append(("trade", front._publish_trade(order, price, part)))
        for kind, item in events:
            (self.api.onRtnOrder if kind == "order" else self.api.onRtnTrade)(dict(item))

    def reqOrderAction(self, req: dict[str, Any], reqid: int) -> int:
        return self._request(self._cancel, dict(req), reqid)

    def _cancel(self, req: dict[str, Any], reqid: int) -> None:
        front = self.front
        with front.lock:
            order = front.orders.get((int(req["FrontID"]), int(req["SessionID"]), str(req["OrderRef"])))
            if order is not None and order["OrderStatus"] in ("1", "3", "a"):
                front.unfreeze(order)
                order.update(OrderStatus="5", StatusMsg="已撤单", VolumeTotal=0)
                snapshot: dict[str, Any] | None = front._publish(order)
            else:
                snapshot = None
        if snapshot is None:
            error = {"ErrorID": 26, "ErrorMsg": "CTP:报单已全成交或已撤销，不能再撤"}
            self.api.onRspOrderAction(dict(req), error, reqid, True)
            return
        self.api.onRtnOrder(dict(snapshot))


class FakeMd:
    """The market data front: logs in, takes subscriptions and sends ticks."""

    REQUESTS = ("createFtdcMdApi", "registerFront", "init", "exit", "reqUserLogin", "subscribeMarketData")

    def __init__(self, front: FakeFront, api: Any) -> None:
        self.front = front
        self.api = api
        self.worker = Worker(f"fake-ctp-md-{id(self):x}", idle=self.push_ticks)
        self.subscribed: set[str] = set()
        self.logged_in = False
        self._volume = 1000
        for name in self.REQUESTS:
            setattr(api, name, getattr(self, name))

    def createFtdcMdApi(self, path: bytes | str, production_mode: bool = True) -> None:
        pass

    def registerFront(self, address: str) -> None:
        pass

    def init(self) -> None:
        self.worker.start()
        self.worker.call(self.api.onFrontConnected)

    def exit(self) -> int:
        self.worker.stop()
        return 0

    def disconnect(self, reason: int = 0x1001) -> None:
        """Drop the md front; it stays down until ``reconnect``."""
        self.worker.call(self._disconnected, reason)

    def _disconnected(self, reason: int) -> None:
        self.logged_in = False
        self.api.onFrontDisconnected(reason)

    def reconnect(self) -> None:
        """The md api reconnects (and vnpy_ctp logs in again)."""
        self.worker.call(self.api.onFrontConnected)

    def reqUserLogin(self, req: dict[str, Any], reqid: int) -> int:
        self.worker.call(self._login, reqid)
        return 0

    def _login(self, reqid: int) -> None:
        self.logged_in = True
        self.api.onRspUserLogin({"TradingDay": self.front.trading_day}, OK, reqid, True)

    def subscribeMarketData(self, symbol: str) -> int:
        self.worker.call(self._subscribe, symbol)
        return 0

    def _subscribe(self, symbol: str) -> None:
        self.subscribed.add(symbol)
        self.api.onRspSubMarketData({"InstrumentID": symbol}, OK, 0, True)
        self.push_tick(symbol)

    def push_ticks(self) -> None:
        if self.logged_in:
            for symbol in sorted(self.subscribed):
                self.push_tick(symbol)

    def push_tick(self, symbol: str) -> None:
        inst = self.front.instruments.get(symbol)
        if inst is not None:
            self._volume += 1
            self.api.onRtnDepthMarketData(self.front.depth(inst, self._volume))


def attach(gateway: Any, state_dir: Path) -> FakeFront:
    """Put a fake front behind ``gateway`` (vnpy_ctp's CtpGateway) and return it; its books
    persist in ``state_dir`` when ``BOOKS_ENV`` is set (waiting for them if a test holds them)."""
    books = BookFile(state_dir) if os.environ.get(BOOKS_ENV) else None
    front = FakeFront(gateway, state_dir, books)
    FRONTS[gateway.gateway_name] = front
    return front


def install(gateway: Any, state_dir: Path) -> None:
    """The ``QTRADER_CTP_FAKE_FRONT`` hook: ``attach``, and SIGUSR1 drops the trade front."""
    front = attach(gateway, state_dir)
    with contextlib.suppress(RuntimeError, NotImplementedError):  # no running loop: no signal
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, front.td.disconnect)


@contextlib.contextmanager
def offline_books(state_dir: Path) -> Iterator[FakeFront]:
    """The persisted books of the account at ``state_dir``, held (no front can load or save them)
    until the block ends: a test changes them with the front's methods (each change is saved) as
    the broker does while no trader is logged in. Take them before killing a worker, so that its
    successor loads them only once the block is done."""
    books = BookFile(state_dir)
    with books.locked():
        yield FakeFront(None, state_dir, books)
