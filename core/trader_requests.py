"""What a trader does when asked: the manager's requests and the strategy engine's orders.

Each request from the manager is one unit of work (``Trader._unit``: one database commit,
its messages sent after it, the reply in the same write) and gets exactly one ``Reply``,
even when a handler has a bug. Orders from the console and from strategies take the same
road: ``place_order`` risk-checks and sends; every close goes through the one close policy
(``Oms.close_requests``) before any gateway sees it; an order refused before any venue is
kept as a REJECTED order with its reason and a ``local_order_id``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config import AccountConfig
from core.conditional import ConditionalBook
from core.models import (
    CHINA_TZ,
    LOCAL_ORDER_PREFIX,
    CancelRequest,
    CloseRequest,
    ConditionalRequest,
    Contract,
    Direction,
    GatewayStatus,
    Offset,
    Order,
    OrderRequest,
    ReverseRequest,
    Status,
    Tick,
    TraderInfo,
    TradingState,
    local_order_id,
    now,
    split_vt_symbol,
)
from core.oms import Oms, position_direction_closed_by
from core.protocol import (
    MAX_PROBE,
    MAX_SUBSCRIBE,
    CancelAllRequest,
    ConditionalCommand,
    HistoryRequest,
    KillRequest,
    Link,
    Message,
    MessageType,
    Outgoing,
    QuoteSourceStatus,
    Reply,
    ShutdownRequest,
    StateRequest,
    StrategyCommand,
    SubscribeRequest,
    Watchlist,
    WatchlistRequest,
    fit_rows,
)
from core.reverse import Reversals
from core.risk import Rejection, RiskEngine, venue_state
from core.sessions import when_closed
from core.strategy_engine import StrategyEngine
from core.trade_stats import strategy_stats, trade_report
from core.watchlist import of_product, save_watchlist
from gateways.base import Gateway

if TYPE_CHECKING:
    from storage import AccountDatabase


def _close_to_split(req: OrderRequest) -> bool:
    """A plain CLOSE of whole lots on SHFE/INE; any other request (a bad volume or symbol
    included) goes to the risk rules as it is, to be refused there with their words."""
    if req.offset is not Offset.CLOSE:
        return False
    if not (math.isfinite(req.volume) and req.volume > 0 and req.volume == int(req.volume)):
        return False
    try:
        _, exchange = split_vt_symbol(req.vt_symbol)
    except ValueError:
        return False
    return exchange.has_close_today


def _one_reply(replies: list[Reply]) -> Reply:
    """The replies of the orders one request became, as that request's one reply.

    ok when every order went out. When some went out and some were refused, the reply is
    not ok but says so (``partial``, and an error that starts with what was sent): those
    orders are working at the venue. ``order_id`` lists every order kept, sent or refused;
    ``orders`` has each leg's result (``offset``, ``volume``, ``order_id``, and ``status``
    for the ones sent).
    """
    results = [r.result if isinstance(r.result, dict) else {} for r in replies]
    legs = [f"{res.get('offset', '?')} {res.get('volume', 0):g}" for res in results]
    refused = [f"{leg}: {r.error}" for r, leg in zip(replies, legs, strict=True) if not r.ok]
    sent = [
        f"{leg} (order {res.get('order_id')})"
        for r, res, leg in zip(replies, results, legs, strict=True)
        if r.ok
    ]
    ids = ",".join(str(res["order_id"]) for res in results if res.get("order_id"))
    result: dict[str, Any] = {"order_id": ids, "orders": results}
    if not refused:
        return Reply(ok=True, result=result)
    if sent:
        result["partial"] = True
        return Reply(ok=False, error=f"sent {', '.join(sent)}; refused {'; '.join(refused)}", result=result)
    return Reply(ok=False, error="; ".join(refused), result=result)


#: stored trades (and triggers) a report reads at most, newest first: its range and the opens
#: before it. Read and computed on the trader's loop (as every history request): 20,000 trades
#: take about 0.3 s (measured on the 2-core build machine; 200,000 took 2.5 s, too long a pause
#: for a trader). Older opens are then missing: their closes are counted 0 and said (``unmatched``).
REPORT_ROWS = 20_000


class RequestHandlers:
    """Mixed into ``Trader``: its answers to the manager and its order entry points."""

    if TYPE_CHECKING:  # provided by Trader
        account_id: str
        account: AccountConfig
        log: logging.Logger
        oms: Oms
        risk: RiskEngine
        db: AccountDatabase | None
        gateway: Gateway | None
        strategies: StrategyEngine | None
        conditionals: ConditionalBook
        reversals: Reversals
        gateway_status: GatewayStatus
        gateway_message: str
        trading_state: TradingState
        auto_trading: bool
        _handlers: dict[MessageType, Callable[[Any], Reply]]
        _cancel_on_reconnect: bool
        _kill_keeps: frozenset[str]
        state_dir: Path
        watchlist: list[str]

        def info(self) -> TraderInfo: ...
        def emit(self, msg_type: MessageType, data: Any) -> None: ...
        def stop(self, *, cancel_orders: bool = False) -> None: ...
        def on_order(self, order: Order) -> None: ...
        def _unit(self) -> contextlib.AbstractContextManager[list[Outgoing]]: ...
        def _send(self, messages: list[Outgoing]) -> None: ...
        def _set_trading_state(self, state: TradingState, auto_trading: bool | None = None) -> None: ...

    def _request_handlers(self) -> dict[MessageType, Callable[[Any], Reply]]:
        """The manager's messages this trader answers, by type."""
        return {
            "order_req": self._on_order_req,
            "cancel_req": self._on_cancel_req,
            "cancel_all_req": self._on_cancel_all_req,
            "close_req": self._on_close_req,
            "reverse_req": self._on_reverse_req,
            "cond_req": self._on_cond_req,
            "cond_cmd_req": self._on_cond_cmd_req,
            "strategy_req": self._on_strategy_req,
            "state_req": self._on_state_req,
            "status_req": lambda _: Reply(ok=True, result=self.info()),
            "history_req": self._on_history_req,
            "subscribe_req": self._on_subscribe_req,
            "watchlist_req": self._on_watchlist_req,
            "quote": self._on_quote,
            "quote_source": self._on_quote_source,
            "kill_req": self._on_kill_req,
            "shutdown": self._on_shutdown,
        }

    def _dispatch(self, link: Link, msg: Message) -> None:
        handler = self._handlers.get(msg.type)
        if handler is None:
            self.log.error("unexpected message type '%s' from manager", msg.type)
            if msg.req_id is not None:
                link.send_nowait("reply", Reply(ok=False, error=f"not a request: {msg.type}"), msg.req_id)
            return
        reply: Reply | None = None
        try:
            with self._unit() as outbox:
                reply = handler(msg.data)
                if msg.req_id is not None:
                    outbox.append(("reply", reply, msg.req_id))  # in the same write as its updates
        except sqlite3.Error as exc:  # the HALT that it caused has said so (Trader._storage_failed)
            if reply is None and msg.req_id is not None:
                error = f"NOT SAVED: the database failed ({exc}) in {msg.type}; {self.account_id} is HALTED"
                self._send([("reply", Reply(ok=False, error=error), msg.req_id)])
        except Exception as exc:
            self.log.exception("%s failed", msg.type)
            if reply is None and msg.req_id is not None:
                self._send(
                    [("reply", Reply(ok=False, error=f"internal error in {msg.type}: {exc}"), msg.req_id)]
                )

    def _on_order_req(self, req: OrderRequest) -> Reply:
        req.account_id = self.account_id
        req.decision = ""  # the operator's order: no client exempts it from the duplicate rule
        return self._place(req, manual=True)

    def place_order(self, req: OrderRequest) -> Reply:
        """Risk-check and send an order: the strategy engine's entry point (a manual order
        from the manager takes the same road, see ``_place``). The reply carries
        ``order_id`` either way."""
        return self._place(req, manual=False)

    def _place(self, req: OrderRequest, *, manual: bool) -> Reply:
        """Risk-check and send an order. ``manual``: from the manager (the console, the
        command line), never let through a HALT whatever its reference says.

        A plain CLOSE on an exchange that tells today's lots from yesterday's (SHFE, INE)
        is sent as the close policy's explicit CLOSEYESTERDAY / CLOSETODAY orders (see
        ``Oms.close_requests``), whatever the venue: no gateway decides what a plain CLOSE means.
        """
        if not _close_to_split(req):
            return self._place_one(req, manual=manual)
        # the whole request first: the venue's state, the contract, the size and notional
        # limits and the account's state answer for it in their own words, before it is legs
        rejection = self._risk_check(req, manual=manual)
        if rejection is not None:
            return self._refuse(req, str(rejection))
        closed = position_direction_closed_by(req.direction)
        try:
            legs = self.oms.close_requests(
                req.vt_symbol, closed, req.volume, req.price, order_type=req.type, reference=req.reference
            )
        except ValueError as exc:
            return self._refuse(req, f"closable: {exc}")
        for leg in legs:
            leg.decision = req.decision
        replies = self._place_legs(legs, manual=manual)
        return replies[0] if len(replies) == 1 else _one_reply(replies)

    def _place_legs(self, requests: list[OrderRequest], *, manual: bool) -> list[Reply]:
        """Send the orders a close became (``Oms.close_requests``: the one close policy, for
        the console's close, a plain CLOSE order and the strategies alike). One reply per
        order, its result carrying the leg's ``offset`` and ``volume``."""
        replies: list[Reply] = []
        for req in requests:
            reply = self._place_one(req, manual=manual)
            reply.result = {"offset": req.offset.name, "volume": req.volume, **(reply.result or {})}
            replies.append(reply)
        return replies

    def _risk_check(self, req: OrderRequest, *, manual: bool) -> Rejection | None:
        assert self.gateway is not None
        contract = self.oms.contracts.get(req.vt_symbol) or self.gateway.get_contract(req.vt_symbol)
        state = self.trading_state
        if state is TradingState.HALTED and not manual and self._passes_halt(req.reference):
            # a protective strategy that the kill switch kept: its orders are held to what
            # REDUCING allows (they must reduce a position), every other rule as always
            state = TradingState.REDUCING
        return self.risk.check(
            req,
            trading_state=state,
            gateway_status=self.gateway_status,
            contract=contract,
            gateway_message=self.gateway_message,
            moment=self.gateway.now() if self._keeps_sessions() else None,
        )

    def _keeps_sessions(self) -> bool:
        """Whether orders on a closed market are refused: a sim account follows
        ``sim.sessions``, a real venue ``risk.market_hours`` (ARCHITECTURE.md, "Orders and risk")."""
        if self.account.gateway == "sim":
            return self.account.sim.sessions
        return self.account.risk.market_hours

    def _passes_halt(self, reference: str) -> bool:
        return self.strategies is not None and self.strategies.passes_halt(reference)

    def _refuse(self, req: OrderRequest, reason: str) -> Reply:
        order = self._record_local_rejection(req, reason)
        return Reply(ok=False, error=reason, result={"order_id": order.order_id})

    def _place_one(self, req: OrderRequest, *, manual: bool) -> Reply:
        """Risk-check and send one order, offsets as they are."""
        assert self.gateway is not None
        rejection = self._risk_check(req, manual=manual)
        if rejection is not None:
            return self._refuse(req, str(rejection))
        sent = self.risk.record_order(req)
        try:
            order_id = self.gateway.send_order(req)
        except Exception as exc:
            self.log.exception("gateway send_order failed")
            self.risk.withdraw(sent)
            return self._refuse(req, f"gateway error: {exc}")
        sent.order_id = order_id
        order = self.oms.orders.get(order_id)
        status = order.status if order is not None else Status.SUBMITTING
        if status is Status.REJECTED:
            assert order is not None
            if order_id.startswith(LOCAL_ORDER_PREFIX):  # the gateway's own refusal: never left us
                self.risk.withdraw(sent)
            return Reply(ok=False, error=order.status_msg, result={"order_id": order_id})
        return Reply(ok=True, result={"order_id": order_id, "status": status.name})

    def _record_local_rejection(self, req: OrderRequest, reason: str) -> Order:
        """A refused order is kept too, so the operator can see what was refused and why."""
        stamp = now()
        order = req.refused(self.account_id, local_order_id(stamp), reason, stamp)
        self.on_order(order)
        return order

    def _venue_down(self) -> Reply | None:
        if self.gateway_status is GatewayStatus.CONNECTED:
            return None
        why = venue_state(self.gateway_status, self.gateway_message)
        return Reply(ok=False, error=f"venue not connected ({why}); cancel not sent")

    def _on_cancel_req(self, req: CancelRequest) -> Reply:
        if (down := self._venue_down()) is not None:
            return down
        order = self.oms.orders.get(req.order_id)
        if order is None:
            return Reply(ok=False, error=f"unknown order {req.order_id}")
        if not order.is_active:
            return Reply(ok=False, error=f"order {req.order_id} is already {order.status.name}")
        rejection = self.risk.check_cancel()
        if rejection is not None:
            return Reply(ok=False, error=str(rejection))
        assert self.gateway is not None
        self.gateway.cancel_order(CancelRequest(order_id=req.order_id, account_id=self.account_id))
        self.risk.record_cancel()
        status = self.oms.orders[req.order_id].status
        return Reply(ok=True, result={"order_id": req.order_id, "status": status.name})

    def cancel_order(self, order_id: str) -> Reply:
        """Cancel one working order (the strategy engine re-pricing an exit)."""
        return self._on_cancel_req(CancelRequest(order_id=order_id, account_id=self.account_id))

    def _cancel_all(self, vt_symbol: str | None, *, keep: frozenset[str] = frozenset()) -> int:
        """Cancel every working order (but those whose reference is in ``keep``). Not held
        back by the cancel-rate limits: emptying the book is the safe direction (kill
        switch, shutdown, the operator's X)."""
        assert self.gateway is not None
        orders = [o for o in self.oms.working_orders(vt_symbol) if o.reference not in keep]
        for order in orders:
            self.gateway.cancel_order(CancelRequest(order_id=order.order_id, account_id=self.account_id))
            self.risk.record_cancel()
        return len(orders)

    def _on_cancel_all_req(self, req: CancelAllRequest) -> Reply:
        if (down := self._venue_down()) is not None:
            return down
        n = self._cancel_all(req.vt_symbol)
        still = len(self.oms.working_orders(req.vt_symbol))
        return Reply(ok=True, result={"cancel_sent": n, "still_working": still})

    def _on_close_req(self, req: CloseRequest) -> Reply:
        pos = self.oms.position(req.vt_symbol, req.direction)
        what = f"{req.direction.name.lower()} {req.vt_symbol}"
        if pos is None:
            return Reply(ok=False, error=f"no {what} position to close")
        volume = (
            req.volume if req.volume is not None else self.oms.closable(req.vt_symbol, req.direction).total
        )
        if volume <= 0:
            return Reply(ok=False, error=f"nothing closable in {what}: all of it is in working close orders")
        price = req.price
        if price is None:
            tick = self.oms.ticks.get(req.vt_symbol)
            if tick is None:
                return Reply(ok=False, error=f"no quote for {req.vt_symbol}: give a price")
            price = tick.bid_price_1 if req.direction is Direction.LONG else tick.ask_price_1
        try:
            legs = self.oms.close_requests(
                req.vt_symbol, req.direction, volume, price, order_type=req.type, reference=req.reference
            )
        except ValueError as exc:
            return Reply(ok=False, error=str(exc))
        combined = _one_reply(self._place_legs(legs, manual=True))
        assert isinstance(combined.result, dict)
        combined.result.pop("order_id", None)  # a close answers with its orders, leg by leg
        return combined

    def _on_reverse_req(self, req: ReverseRequest) -> Reply:
        """反手 (``core/reverse.py``): the close now, the open once the close has filled."""
        what = f"{req.direction.name.lower()} {req.vt_symbol}"
        if self.oms.position(req.vt_symbol, req.direction) is None:
            return Reply(ok=False, error=f"no {what} position to reverse")
        if self.trading_state is not TradingState.ACTIVE:
            return Reply(
                ok=False,
                error=f"account {self.trading_state.name}: a reverse opens a position; nothing was sent",
            )
        if (down := self._venue_down()) is not None:
            return Reply(ok=False, error=down.error.replace("cancel not sent", "nothing was sent"))
        others = [  # not a close of this position: it would fill into what nobody confirmed
            o
            for o in self.oms.working_orders(req.vt_symbol)
            if not (o.offset.is_close and position_direction_closed_by(o.direction) is req.direction)
        ]
        if others:
            ids = ", ".join(
                f"{o.order_id} ({o.direction.name} {o.offset.name} {o.remaining:g})" for o in others[:5]
            )
            return Reply(
                ok=False,
                error=f"working order(s) on {req.vt_symbol} besides this position's closes: {ids}; "
                "cancel them first; nothing was sent",
            )
        volume = (
            req.volume if req.volume is not None else self.oms.closable(req.vt_symbol, req.direction).total
        )
        if volume <= 0:
            return Reply(ok=False, error=f"nothing closable in {what}: all of it is in working close orders")
        close = self._on_close_req(
            CloseRequest(vt_symbol=req.vt_symbol, direction=req.direction, volume=volume)
        )
        legs = close.result.get("orders", []) if isinstance(close.result, dict) else []
        if not close.ok:
            return Reply(
                ok=False, error=f"the open is NOT sent: close: {close.error}", result={"close": legs}
            )
        rev = self.reversals.start(
            req.vt_symbol, req.direction, volume, [str(leg["order_id"]) for leg in legs], req.timeout
        )
        opened = self.reversals.settle_now(rev)
        result: dict[str, Any] = {"close": legs, "open": None if opened is None else opened.result}
        if opened is not None:
            if opened.ok:
                return Reply(ok=True, result=result)
            return Reply(
                ok=False, error=f"the close filled; the open was refused: {opened.error}", result=result
            )
        if rev.done:
            return Reply(ok=False, error=f"the open is NOT sent: {rev.why}", result=result)
        result["open"] = f"sent once the close fills (within {req.timeout:g} s)"
        return Reply(ok=True, result=result)

    def _on_cond_req(self, req: ConditionalRequest) -> Reply:
        req.account_id = self.account_id
        req.reference = "manual"  # from outside: the operator's, whatever it says
        return self.conditionals.create(req)

    def _on_cond_cmd_req(self, cmd: ConditionalCommand) -> Reply:
        if cmd.action == "rearm":
            return self.conditionals.rearm()
        return self.conditionals.cancel(cmd.cond_id)

    # --- what the conditional orders and the reverses ask of their trader

    def contract_of(self, vt_symbol: str) -> Contract | None:
        contract = self.oms.contracts.get(vt_symbol)
        if contract is None and self.gateway is not None:
            contract = self.gateway.get_contract(vt_symbol)
        return contract

    def venue_now(self) -> datetime:
        """The venue's time (a sim started at ``sim.clock_start`` runs its own clock): the
        trading day a DAY conditional order belongs to is the venue's."""
        return self.gateway.now() if self.gateway is not None else now()

    def market_closed(self, vt_symbol: str) -> str | None:
        """Why ``vt_symbol``'s market takes no order now (the risk rule's ``market closed``), None
        when it does or the sessions do not apply to this account."""
        if self.gateway is None or not self._keeps_sessions():
            return None
        return when_closed(vt_symbol, self.gateway.now())

    def quote(self, vt_symbol: str) -> None:
        """Subscribe ``vt_symbol``'s market data (a conditional order watches it)."""
        if self.gateway is not None:
            self.gateway.subscribe(vt_symbol)

    def place_conditional_order(self, req: OrderRequest, *, manual: bool) -> Reply:
        return self._place(req, manual=manual)

    def place_conditional_close(
        self, vt_symbol: str, closed: Direction, volume: float, price: float, reference: str
    ) -> Reply:
        try:
            legs = self.oms.close_requests(vt_symbol, closed, volume, price, reference=reference)
        except ValueError as exc:
            return Reply(ok=False, error=f"closable: {exc}")
        return _one_reply(self._place_legs(legs, manual=reference == "manual"))

    def create_conditional(self, req: ConditionalRequest) -> Reply:
        """A strategy's conditional order (the engine's ``place_conditional``)."""
        return self.conditionals.create(req)

    def cancel_conditional(self, cond_id: str, *, reference: str) -> Reply:
        """A strategy cancels one of its own conditional orders."""
        return self.conditionals.cancel(cond_id, reference=reference)

    def place_reverse_open(self, req: OrderRequest) -> Reply:
        return self._place(req, manual=True)

    def unit(self) -> contextlib.AbstractContextManager[list[Outgoing]]:
        return self._unit()

    def _on_strategy_req(self, cmd: StrategyCommand) -> Reply:
        if cmd.action in ("auto_on", "auto_off"):
            self._set_trading_state(self.trading_state, auto_trading=cmd.action == "auto_on")
            self.log.warning("auto-trading %s", "ON" if self.auto_trading else "OFF")
            self.emit("status", self.info())
            return Reply(ok=True, result=self.info())
        if self.strategies is None:
            return Reply(
                ok=False, error=f"{self.account_id} runs no strategies (unknown instance '{cmd.name}')"
            )
        if cmd.action == "start":
            return self.strategies.start(cmd.name)
        return self.strategies.stop(cmd.name)

    def _on_kill_req(self, req: KillRequest | None) -> Reply:
        """The kill switch: HALTED, every strategy stopped, every working order cancelled.
        With ``keep_protective``, the running protective strategies go on (their closes
        pass the HALT as if REDUCING) and their own working closes stay working."""
        keep = req is not None and req.keep_protective
        self._set_trading_state(TradingState.HALTED, protective_kept=keep)
        engine = self.strategies
        stopped = engine.stop_all(keep_protective=keep) if engine is not None else 0
        kept = frozenset(engine.protective_running()) if keep and engine is not None else frozenset()
        self._kill_keeps = kept
        cancelled = self._cancel_all(None, keep=kept) if self.gateway_status is GatewayStatus.CONNECTED else 0
        suspended = self.conditionals.suspend_all()
        self.log.critical(
            "KILL SWITCH: %s HALTED, %d strategies stopped, %d cancels sent, %d conditional orders suspended%s",
            self.account_id,
            stopped,
            cancelled,
            suspended,
            f"; protective strategies kept running: {', '.join(sorted(kept))}" if keep else "",
        )
        self.emit("status", self.info())
        kept_working = sum(o.reference in kept for o in self.oms.active_orders.values())
        still = len(self.oms.active_orders) - kept_working
        result: dict[str, Any] = {
            "strategies_stopped": stopped,
            "cancel_sent": cancelled,
            "still_working": still,
            "conditionals_suspended": suspended,
        }
        if keep:
            result["protective_running"] = len(kept)
            result["protective_orders_working"] = kept_working
        if still and self.gateway_status is not GatewayStatus.CONNECTED:
            self._cancel_on_reconnect = True
            return Reply(
                ok=False,
                error=f"venue not connected: {still} orders could not be cancelled yet "
                "(they will be the moment it reconnects)",
                result=result,
            )
        return Reply(ok=True, result=result)

    def _on_state_req(self, req: StateRequest) -> Reply:
        if req.state is not self.trading_state:
            self.log.warning("trading state %s -> %s", self.trading_state.name, req.state.name)
        self._set_trading_state(req.state)
        self.emit("status", self.info())
        return Reply(ok=True, result=self.info())

    def _on_subscribe_req(self, req: SubscribeRequest) -> Reply:
        assert self.gateway is not None
        for vt_symbol in req.symbols:
            self.gateway.subscribe(vt_symbol)
        return Reply(ok=True)

    def _on_watchlist_req(self, req: WatchlistRequest) -> Reply:
        """The console edits the watchlist (``set``), completes a symbol (``listed``) or looks
        for a product's main contract (``probe``): core/watchlist.py."""
        assert self.gateway is not None
        if req.action == "listed":
            return Reply(ok=True, result={"contracts": self._listed(req.product)[:MAX_SUBSCRIBE]})
        if req.action == "probe":
            if not req.product:
                return Reply(ok=False, error="main contract: name a product (e.g. rb)")
            listed = self._listed(req.product)[:MAX_PROBE]
            for vt_symbol in listed:
                self.gateway.subscribe(vt_symbol)
            return Reply(ok=True, result={"contracts": listed})
        symbols = list(dict.fromkeys(req.symbols))
        unknown = [s for s in symbols if s not in self.oms.contracts and self.gateway.get_contract(s) is None]
        if unknown:
            down = (
                ""
                if self.gateway_status is GatewayStatus.CONNECTED
                else " (not connected: it cannot be looked up now)"
            )
            return Reply(
                ok=False,
                error=f"unknown at the venue{down}: {', '.join(unknown)}; the watchlist is unchanged",
            )
        try:
            save_watchlist(self.state_dir, symbols)
        except OSError as exc:
            return Reply(ok=False, error=f"watchlist NOT SAVED ({exc}); it is unchanged")
        new = [s for s in symbols if s not in self.watchlist]
        self.watchlist = symbols
        for vt_symbol in new:
            self.gateway.subscribe(vt_symbol)
        self.log.info("watchlist set: %s", ", ".join(symbols) or "(empty)")
        self.emit("watchlist", Watchlist(symbols=symbols))
        return Reply(ok=True, result={"watchlist": symbols, "subscribed": new})

    def _listed(self, product: str) -> list[str]:
        """The futures of ``product`` ("" for all) that the venue reported or lists."""
        assert self.gateway is not None
        return of_product(product, [*self.oms.contracts, *self.gateway.listed_contracts(product)])

    def _on_quote(self, tick: Tick) -> Reply:
        """A real quote from this paper account's ``market_data_from`` account."""
        feed = getattr(self.gateway, "feed_quote", None)
        if self.account.market_data_from is None or feed is None:
            return Reply(ok=False, error="quotes are relayed only to paper (sim) accounts")
        feed(tick)
        return Reply(ok=True)

    def _on_quote_source(self, news: QuoteSourceStatus) -> Reply:
        """Whether this paper account's quote source is up (see ``gateways/sim.py``)."""
        tell = getattr(self.gateway, "set_quote_source", None)
        if self.account.market_data_from is None or tell is None:
            return Reply(ok=False, error="quote source news is only for paper (sim) accounts")
        tell(news.source, news.up, news.message)
        return Reply(ok=True)

    def _on_history_req(self, req: HistoryRequest) -> Reply:
        db = self.db
        assert db is not None
        limit = max(1, min(req.limit, 20_000))
        since = datetime.fromtimestamp(req.since, CHINA_TZ) if req.since is not None else None
        until = datetime.fromtimestamp(req.until, CHINA_TZ) if req.until is not None else None
        if req.kind == "trade_report":  # every fill up to the end: opens before ``since`` price closes
            trades = db.load_trades(until=until, vt_symbol=req.vt_symbol, limit=REPORT_ROWS)
            report = trade_report(trades, self._multiplier, since=since, vt_symbol=req.vt_symbol, limit=limit)
            report.trades, left_out = fit_rows(report.trades, self.app.socket.max_frame_bytes // 2)
            report.left_out += left_out
            return Reply(ok=True, result=report)
        if req.kind == "strategy_stats":
            trades = db.load_trades(since=since, until=until, limit=REPORT_ROWS)
            triggers = db.load_triggers(since=since, until=until, limit=REPORT_ROWS)
            names = [s.name for s in self.account.strategies]
            return Reply(ok=True, result=strategy_stats(trades, triggers, self._multiplier, names))
        if req.kind == "orders":
            result: Any = db.load_orders(since=since, limit=limit)
        elif req.kind == "trades":
            result = db.load_trades(since=since, until=until, vt_symbol=req.vt_symbol, limit=limit)
        elif req.kind == "account_snapshots":
            result = db.load_equity(since=since, limit=limit, every=req.every)
        elif req.kind == "triggers":
            result = db.load_triggers(since=since, limit=limit)
        elif req.kind == "bars":
            if not req.vt_symbol:
                return Reply(ok=False, error="bars history needs vt_symbol")
            result = db.load_bars(req.vt_symbol, limit=limit)
        else:
            return Reply(ok=False, error=f"history of '{req.kind}' is not kept")
        rows, left_out = fit_rows(result, self.app.socket.max_frame_bytes // 2)
        if left_out:
            self.log.warning("history of %s: %d rows left out (too large for one reply)", req.kind, left_out)
        return Reply(ok=True, result=rows)

    def _multiplier(self, vt_symbol: str) -> float | None:
        """A contract's multiplier, for close P&L (None: the venue no longer knows it)."""
        assert self.gateway is not None
        contract = self.oms.contracts.get(vt_symbol) or self.gateway.get_contract(vt_symbol)
        return contract.size if contract is not None else None

    def _on_shutdown(self, req: ShutdownRequest) -> Reply:
        self.stop(cancel_orders=req.cancel_orders)
        return Reply(ok=True)
