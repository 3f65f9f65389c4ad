"""CtpGateway: one CTP account, vnpy_ctp's gateway turned into our ``Gateway``.

- **Status from the api's callbacks.** The td and md apis' connection callbacks arrive as
  ``CtpLinkEvent`` (link.py), with CTP's own error fields and disconnect reason; vnpy_ctp's log
  lines are only passed on as logs, their wording decides nothing. The events drive
  ``on_status``: CONNECTING from ``connect`` through front connection, authentication, login,
  settlement confirmation and the instrument query; then, still CONNECTING, the day's queries
  (queries.py): today's orders, today's trades, funds and positions. CONNECTED follows the
  position answer, so everything of the day has been pushed before it (``gateways/base.py``);
  the queries make the list complete whatever the private flow delivers. A front disconnect is
  DISCONNECTED with a readable reason; the CTP api reconnects by itself and the sequence starts
  again from CONNECTING. The market data front is separate: its loss leaves the status
  CONNECTED (trading goes on) but says so in the status message and a WARNING (quotes are
  stale) until it logs in again.
- **Refusals are fatal.** A failed login or authentication is ``on_fatal`` with CTP's own text
  (vnpy_ctp never retries either), and so is a trade front that does not connect within
  ``connect_timeout`` seconds of ``connect``, or connects but does not answer the login in that
  time: the trader exits and its manager restarts it on the venue back-off. A front lost later
  is the api's to reconnect (no timeout).
- **One order per request, with the offset it names.** OPEN, CLOSE, CLOSETODAY and
  CLOSEYESTERDAY go out as CTP's open, close, close-today and close-yesterday flags: the trader
  has already split a close of SHFE/INE lots into CLOSEYESTERDAY / CLOSETODAY (its one close
  policy), so nothing here splits or converts (vnpy's ``OffsetConverter`` is not used). What the
  venue cannot close it refuses, and the refusal is the order's REJECTED with CTP's reason.
  A request CTP cannot take at all (no offset, NET, STOP, a fraction of a lot), or one sent
  while the trade front is not logged in, is refused here: a REJECTED order with a
  ``local_order_id``, never sent.
- **No fill is lost.** A trade whose order is not known yet is held for it (vnpy_ext.py); one
  still held at CONNECTED is logged at ERROR, and any held ``ORPHAN_TRADE_SECONDS`` is reported
  as a trade of order ``ctp-{exchange}-{OrderSysID}`` (which the trader records as external).
  A fill whose commission rates are being asked waits for them a moment (commission.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from core.models import (
    CancelRequest,
    Contract,
    GatewayStatus,
    OrderRequest,
    Trade,
    local_order_id,
    now,
    split_vt_symbol,
)
from gateways.base import Gateway, GatewayListener
from gateways.ctp.book import DayBook
from gateways.ctp.commission import CommissionBook, HeldFills
from gateways.ctp.fields import (
    check_request,
    contract_from_vnpy,
    disconnect_reason,
    orphan_order_id,
    trade_text,
)
from gateways.ctp.link import CtpLinkEvent, LinkKind
from gateways.ctp.queries import INITIAL_QUERIES, QueryChain, QueryDone, rate_query, rate_symbol
from gateways.ctp.settings import CtpSettingsView, secrets, vnpy_setting

log = logging.getLogger(__name__)

FAKE_FRONT_ENV = "QTRADER_CTP_FAKE_FRONT"
FILL_QUERY_DELAY = 0.2  # positions and funds are asked for this long after a fill (fills come in bursts)
CLOSE_WAIT_SECONDS = 10.0
ORPHAN_TRADE_SECONDS = 5.0  # a trade whose order CTP has not reported is reported anyway after this

# words of vnpy_ctp's log lines that make them WARNINGs (their level only: never a state)
_TROUBLE = ("失败", "报错", "断开", "不支持")


class CtpGateway(Gateway):
    """One CTP account (see the package and module docstrings)."""

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
        self.td_address = settings.td_address
        self.who = f"{settings.brokerid}/{settings.userid}"
        self._secrets = secrets(settings)
        self.vnpy_name = f"CTP_{account_id}"
        vn = self._vn = self._import_vnpy()
        self._engine = vn.EventEngine()
        self._gateway = vn.VnpyCtpGateway(self._engine, self.vnpy_name, settings.product_info)
        self._handlers: dict[str, Callable[[Any], None]] = {
            vn.EVENT_TYPES["tick"]: self._on_tick,
            vn.EVENT_TYPES["order"]: self._on_order,
            vn.EVENT_TYPES["trade"]: self._on_trade,
            vn.EVENT_TYPES["position"]: self._on_position,
            vn.EVENT_TYPES["account"]: self._on_account,
            vn.EVENT_TYPES["contract"]: self._on_contract,
            vn.EVENT_TYPES["log"]: self._on_log,
            vn.EVENT_TYPES["query_done"]: self._on_query_done,
            vn.EVENT_TYPES["orphan"]: self._on_orphan,
            vn.EVENT_TYPES["link"]: self._on_link,
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._closed = False
        self._fatal: str | None = None
        self._td_connected = False
        self._logged_in = False
        self._ready = False
        self._md_down: str | None = None  # why the market data front is down (None: it is up)
        self._connect_timer: asyncio.TimerHandle | None = None
        self._fill_query: asyncio.TimerHandle | None = None
        self._orphan_timer: asyncio.TimerHandle | None = None
        self._queries = QueryChain(self._gateway.td_api, self._can_query, self._on_query_done)
        self._contracts: dict[str, Contract] = {}  # the venue's futures, with the rates known
        self._book = DayBook(account_id)
        self._commission = CommissionBook()
        self._held = HeldFills(self._rates_settled, self._report_trade, self._log)
        self._install_fake_front()

    # ------------------------------------------------------------------ Gateway interface

    async def connect(self) -> None:
        if self._started or self._closed:
            return
        self._started = True
        self._loop = self._queries.loop = self._held.loop = asyncio.get_running_loop()
        for event_type in self._handlers:
            self._engine.register(event_type, self._bridge)
        self._engine.start()
        self._set_status(GatewayStatus.CONNECTING, f"connecting to CTP trade front {self.td_address}")
        self._connect_timer = self._loop.call_later(self.connect_timeout, self._front_timeout)
        self._gateway.connect(dict(self._setting))

    async def close(self) -> None:
        if self._closed:
            return
        self._held.release(force=True)  # reported, with whatever rates are known, before we go
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
        self._gateway.subscribe(self._vn.subscribe_request(symbol, exchange.value))

    def send_order(self, req: OrderRequest) -> str:
        try:
            check_request(req)
        except ValueError as exc:
            return self._reject_locally(req, str(exc))
        if self._closed or not self._logged_in:
            return self._reject_locally(req, "CTP trade front not logged in")
        vt_orderid = self._gateway.send_order(self._vn.order_request(req))
        if not vt_orderid:  # vnpy_ctp logged why (the api refused the request)
            return self._reject_locally(req, "the CTP api refused to send the order (see the log)")
        order_id = vt_orderid.partition(".")[2]
        self._book.references[order_id] = req.reference
        self._want_rate(req.vt_symbol, urgent=True)  # its fills are on their way
        return order_id

    def cancel_order(self, req: CancelRequest) -> None:
        order = self._book.orders.get(req.order_id)
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
        self._gateway.cancel_order(self._vn.cancel_request(order.order_id, order.vt_symbol))

    def query(self) -> None:
        listener, book = self.listener, self._book
        if book.account is not None:
            listener.on_account(book.account)
        for position in book.positions.values():
            listener.on_position(position)
        for order in book.orders.values():
            if order.is_active:
                listener.on_order(order)
        for trade in book.trades.values():
            listener.on_trade(trade)
        if self._ready:
            self._queries.ask(("account", "positions"))

    def get_contract(self, vt_symbol: str) -> Contract | None:
        return self._contracts.get(vt_symbol)

    # ------------------------------------------------------------------ setup

    def _import_vnpy(self) -> ModuleType:
        folder = self.state_dir / ".vntrader"
        folder.mkdir(parents=True, exist_ok=True)  # vnpy's working folder, chosen at its import
        from gateways.ctp import vnpy_ext  # imports vnpy: only once the folder exists

        if vnpy_ext.TEMP_DIR_PATH.resolve() != folder.resolve():
            self._log(
                "WARNING",
                f"vnpy was imported from another directory: CTP flow files go to "
                f"{vnpy_ext.TEMP_DIR_PATH / self.vnpy_name.lower()}, not under {self.state_dir}",
            )
        return vnpy_ext

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

    # ------------------------------------------------------------------ status from the api's callbacks

    def _on_log(self, data: Any) -> None:
        """vnpy_ctp's log lines, passed on as log lines: no state is read from their wording."""
        text = self._scrub(str(getattr(data, "msg", data)))
        self._log("WARNING" if any(w in text for w in _TROUBLE) else "INFO", f"CTP: {text}")

    def _on_link(self, event: CtpLinkEvent) -> None:
        """A connection callback of either front (link.py) moves the status on."""
        if self._fatal is not None:
            return
        who = self.who
        match event.kind:
            case LinkKind.TD_CONNECTED:
                self._td_connected = True
                self._set_status(GatewayStatus.CONNECTING, f"CTP trade front connected; logging in as {who}")
            case LinkKind.AUTHENTICATED:
                self._set_status(GatewayStatus.CONNECTING, f"CTP authenticated; logging in as {who}")
            case LinkKind.AUTH_FAILED:
                self._fail(f"CTP authentication failed for {who}: {event.error}")
            case LinkKind.LOGGED_IN:
                self._logged_in = True
                if self._connect_timer is not None:
                    self._connect_timer.cancel()
                    self._connect_timer = None
                self._set_status(GatewayStatus.CONNECTING, f"CTP logged in as {who}; loading contracts")
            case LinkKind.LOGIN_FAILED:
                self._fail(f"CTP login failed for {who}: {event.error}")
            case LinkKind.SETTLEMENT_CONFIRMED:
                self._set_status(GatewayStatus.CONNECTING, "CTP settlement confirmed; loading contracts")
            case LinkKind.CONTRACTS_LOADED:
                self._commission.new_login()  # what failed is asked again after CONNECTED
                self._set_status(
                    GatewayStatus.CONNECTING,
                    f"CTP: {len(self._contracts)} contracts; querying orders, trades, funds and positions",
                )
                self._queries.start(INITIAL_QUERIES)
            case LinkKind.TD_DISCONNECTED:
                self._logged_in = self._ready = False
                self._queries.stop()
                reason = disconnect_reason(event.reason)
                self._set_status(
                    GatewayStatus.DISCONNECTED, f"CTP trade front disconnected: {reason}; reconnecting"
                )
            case LinkKind.MD_DISCONNECTED:
                self._md_trouble(f"market data front disconnected ({disconnect_reason(event.reason)})")
            case LinkKind.MD_LOGIN_FAILED:
                self._md_trouble(f"market data login failed ({event.error})")
            case LinkKind.MD_LOGGED_IN:
                self._md_back()

    def _md_trouble(self, what: str) -> None:
        """Quotes stop while trading goes on: said in the log and in the (CONNECTED) status."""
        self._md_down = what
        self._log("WARNING", f"CTP {what}: quotes stale until it is back (the api reconnects by itself)")
        if self._ready:
            self._set_status(GatewayStatus.CONNECTED, self._connected_message())

    def _md_back(self) -> None:
        if self._md_down is None:
            return  # its first login, or again after a front loss already said
        self._md_down = None
        self._log("INFO", "CTP market data front logged in again: quotes live")
        if self._ready:
            self._set_status(GatewayStatus.CONNECTED, self._connected_message())

    def _connected_message(self) -> str:
        if self._md_down is not None:
            return f"CTP {self._md_down}; quotes stale, reconnecting (trade front logged in as {self.who})"
        day, book = self._gateway.td_api.trading_day or "?", self._book
        return (
            f"CTP logged in as {self.who}, trading day {day}: {len(self._contracts)} contracts, "
            f"{len(book.positions)} positions, {book.working} working orders, {len(book.trades)} trades"
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
        self._held.release(force=True)
        self._cancel_timers()
        self.listener.on_fatal(reason)

    def _set_status(self, status: GatewayStatus, message: str) -> None:
        self.listener.on_status(status, self._scrub(message))

    # ------------------------------------------------------------------ query answers

    def _can_query(self) -> bool:
        return self._logged_in and not self._closed

    def _on_query_done(self, done: QueryDone) -> None:
        ours = self._queries.is_head(done.name)
        if rate_symbol(done.name) is not None:
            self._on_rates(done, ours)
            return
        if done.error:
            self._query_failed(done, ours)
            return
        self._queries.errors.pop(done.name, None)
        if done.name == "positions":
            self._flush_positions(done.extras)
        if not ours:
            return  # a periodic query of vnpy's, or an answer we had given up on
        self._next_query()

    def _next_query(self) -> None:
        """The chain's head is answered: the next query; CONNECTED at the end of the first chain of
        a login; then the commission rates still wanted, one at a time."""
        if not self._queries.advance():
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
            self._book.positions_failed()
        if self._queries.new_error(done.name, error):  # once per error, not at every retry
            self._log("WARNING", f"CTP {done.name} query answered with an error: {error}; asking again")
        if not ours:
            return  # vnpy's periodic query: its next round asks again
        if not self._ready:
            self._set_status(
                GatewayStatus.CONNECTING, f"CTP {done.name} query answered with an error ({error}); retrying"
            )
        self._queries.retry()

    def _query_after_fill(self) -> None:
        """CTP does not push positions or funds: ask soon after fills, not at vnpy's next round."""
        if self._ready and self._fill_query is None and self._loop is not None:
            self._fill_query = self._loop.call_later(FILL_QUERY_DELAY, self._fill_queries)

    def _fill_queries(self) -> None:
        self._fill_query = None
        if self._ready:
            self._queries.ask(("positions", "account"))

    def _cancel_timers(self) -> None:
        for timer in (self._connect_timer, self._fill_query, self._orphan_timer):
            if timer is not None:
                timer.cancel()
        self._connect_timer = self._fill_query = self._orphan_timer = None
        self._held.cancel()
        self._queries.stop()

    # ------------------------------------------------------------------ trades without their order

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
                f"CTP {trade_text(trade)}: its order was not reported in {ORPHAN_TRADE_SECONDS:g} s; "
                f"reported as a trade of order {order_id}",
            )
        if due is not None and self._loop is not None:
            self._orphan_timer = self._loop.call_later(max(due, 0.05), self._release_orphans)

    def _report_held_orphans(self) -> None:
        """At CONNECTED every order of the day is listed: a trade still held is an anomaly."""
        for trade in self._gateway.td_api.held_orphans():
            self._log(
                "ERROR",
                f"CTP {trade_text(trade)}: its order (exchange {trade.get('ExchangeID')}) is not among "
                f"the day's orders; reported as a trade of order {orphan_order_id(trade)} if it does "
                f"not come within {ORPHAN_TRADE_SECONDS:g} s",
            )

    # ------------------------------------------------------------------ commission rates

    def _want_rate(self, vt_symbol: str, *, urgent: bool = False) -> None:
        """``vt_symbol`` matters (a position, a subscription, an order or a fill): have its
        commission rates asked, once per product, one query at a time, after CONNECTED. ``urgent``:
        a fill is coming or waiting, so it goes before any other query not sent yet."""
        contract = self._contracts.get(vt_symbol)
        if contract is not None and self._commission.resolved(contract):
            return
        self._commission.want(vt_symbol, urgent=urgent)
        self._pump_rates(urgent=urgent)

    def _pump_rates(self, *, urgent: bool = False) -> None:
        """The next commission query into the chain (commission.py, queries.py)."""
        if not self._ready or self._closed or not self._logged_in:
            return  # CONNECTED never waits for rates: they are asked once it is there
        symbol = self._commission.next_symbol(self._contracts)
        if symbol is not None:
            self._queries.add_rate(rate_query(symbol), urgent=urgent)

    def _rates_settled(self, trade: Trade) -> bool:
        contract = self._contracts.get(trade.vt_symbol)
        return contract is None or self._commission.resolved(contract)

    def _on_rates(self, done: QueryDone, ours: bool) -> None:
        symbol = rate_symbol(done.name) or ""
        if done.error:
            if ours:  # an error of a query we had given up on was counted already
                warning = self._commission.error(symbol, self._scrub(done.error), self._contracts)
                if warning:
                    self._log("WARNING", warning)
        else:
            warning = self._commission.store(symbol, done.rows, self._contracts)
            if warning:
                self._log("WARNING", warning)
            for updated in self._commission.changed(self._contracts):
                self._contracts[updated.vt_symbol] = updated
                self.listener.on_contract(updated)
        self._held.release()
        if ours:
            self._next_query()

    # ------------------------------------------------------------------ vnpy events

    def _on_contract(self, data: Any) -> None:
        contract = contract_from_vnpy(data, self.account_id)
        if contract is None:
            return
        contract = self._commission.known(contract)
        self._contracts[contract.vt_symbol] = contract
        self.listener.on_contract(contract)

    def _on_tick(self, data: Any) -> None:
        self.listener.on_tick(self._book.tick(data))

    def _on_order(self, data: Any) -> None:
        self.listener.on_order(self._book.order(data, self._scrub))

    def _on_trade(self, data: Any) -> None:
        trade = self._book.trade(data, self._gateway.td_api.trading_day)
        if trade.trade_id in self._book.trades or trade.trade_id in self._held:
            return  # replayed: already reported or held
        contract = self._contracts.get(trade.vt_symbol)
        if contract is not None and not self._commission.resolved(contract):
            self._want_rate(trade.vt_symbol, urgent=True)
            if self._ready:  # before CONNECTED the day is pushed as it comes: never held
                self._held.hold(trade)
                return
        self._report_trade(trade)

    def _report_trade(self, trade: Trade) -> None:
        """A new fill to the listener, with its commission at the contract's rates as known now."""
        contract = self._contracts.get(trade.vt_symbol)
        if contract is not None:
            trade.commission = contract.commission(trade.price, trade.volume, trade.offset)
        order = self._book.add_fill(trade)
        self.listener.on_trade(trade)
        self._query_after_fill()
        if order is not None:  # the order's average fill price moved
            self.listener.on_order(order)

    def _on_position(self, data: Any) -> None:
        self._book.position_row(data)

    def _flush_positions(self, extras: dict[tuple[str, str], dict[str, float]]) -> None:
        """One complete position answer: report it, and flatten what it no longer lists."""
        for position in self._book.positions_answered(extras):
            self.listener.on_position(position)
        for vt_symbol, _ in self._book.positions:
            self._want_rate(vt_symbol)

    def _on_account(self, data: Any) -> None:
        self.listener.on_account(self._book.funds(data, self._gateway.td_api.trading_day))

    # ------------------------------------------------------------------ refusals

    def _reject_locally(self, req: OrderRequest, reason: str) -> str:
        """``req`` refused before it reached CTP: a REJECTED order with the reason, reported now."""
        moment = now()
        order = req.refused(self.account_id, local_order_id(moment), reason, moment)
        self.listener.on_order(order)
        return order.order_id

    # ------------------------------------------------------------------ texts

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _log(self, level: str, message: str) -> None:
        self.listener.on_log(level, self._scrub(message))
