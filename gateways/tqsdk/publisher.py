"""What the trader was told of TqSdk's books, and pushing what changed since.

After every ``wait_update`` the TqSdk thread compares TqSdk's books (subscribed quotes, account,
positions, orders, trades) with what it pushed last and pushes the differences, so nothing is
missed when TqSdk waits internally (``insert_order`` may). Orders and trades come first, then
positions, then the account (pushed at most once a second unless an order or trade moved).
Contracts are pushed with a subscription's first quote.

What the trader was told survives a rebuilt session, so a position the new session lacks is
pushed flat and a working order it does not know is settled; a forced push sends everything,
changed or not (the trader reconciles on what it hears before CONNECTED).

Runs on the TqSdk thread only; events go out through the ``emit`` callback, in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from core.models import Direction, Position, Status
from gateways.tqsdk.mapping import (
    FUTURES_EXCHANGES,
    LEVELS,
    SentOrder,
    account_from_tq,
    contract_from_quote,
    order_from_tq,
    positions_from_tq,
    tick_from_quote,
    trade_from_tq,
)
from gateways.tqsdk.scrub import Scrubber

if TYPE_CHECKING:
    from tqsdk import TqApi

ACCOUNT_PUSH_SECONDS = 1.0  # the account moves with every quote: push it at most this often

#: what a new tick is pushed for: a change in any of these (the five levels too)
_QUOTE_SIGNATURE = attrgetter(
    "datetime",
    "last_price",
    "volume",
    "open_interest",
    "upper_limit",
    "lower_limit",
    "pre_settlement",
    *(f"{side}_{what}{n}" for n in LEVELS for side in ("bid", "ask") for what in ("price", "volume")),
)


class Publisher:
    """One account's pushed state: what each order, trade, position, quote and the account
    looked like when last pushed, plus what TqSdk does not keep about our own orders."""

    def __init__(self, account_id: str, scrub: Scrubber, emit: Callable[..., None]) -> None:
        self.account_id = account_id
        self.scrub = scrub
        self._emit = emit
        # our orders, across sessions
        self.sent: dict[str, SentOrder] = {}
        self.cancel_asked: set[str] = set()
        self.final: set[str] = set()  # no longer active: never pushed again
        # what the trader was told, across sessions
        self._order_sig: dict[str, tuple[Any, ...]] = {}
        self._trades_seen: set[str] = set()
        self._pos_sig: dict[tuple[str, Direction], tuple[Any, ...]] = {}
        self._account_sig: tuple[Any, ...] = ()
        self._account_due = 0.0
        # one session's quotes (a new TqApi hands out new quote objects)
        self.quotes: dict[str, Any] = {}
        self._quote_sig: dict[str, tuple[Any, ...]] = {}

    def new_session(self) -> None:
        """Forget the last session's quotes; the rest is compared against the new session."""
        self.quotes, self._quote_sig = {}, {}

    def repush_order(self, order_id: str) -> None:
        """Push ``order_id``'s real state again with the next round, changed or not."""
        self._order_sig.pop(order_id, None)
        self.final.discard(order_id)

    # ------------------------------------------------------------------ one round

    def publish(self, api: TqApi, force: bool = False) -> None:
        """Push what changed in TqSdk's books since the last push (everything if ``force``)."""
        self._publish_quotes(force)
        moved = self._publish_orders(api, force)
        moved = self._publish_trades(api, force) or moved
        self._publish_positions(api, force)
        self._publish_account(api, force or moved)

    def _publish_quotes(self, force: bool) -> None:
        for tq_symbol, quote in self.quotes.items():
            sig = _QUOTE_SIGNATURE(quote)
            first = tq_symbol not in self._quote_sig
            if not force and self._quote_sig.get(tq_symbol) == sig:
                continue
            self._quote_sig[tq_symbol] = sig
            if first:
                self._emit("on_contract", contract_from_quote(self.account_id, tq_symbol, quote))
            self._emit("on_tick", tick_from_quote(self.account_id, tq_symbol, quote))

    def _publish_orders(self, api: TqApi, force: bool) -> bool:
        moved = False
        for order_id, tq_order in api.get_order().items():
            if order_id in self.final or tq_order.exchange_id not in FUTURES_EXCHANGES:
                continue
            order = order_from_tq(
                self.account_id,
                order_id,
                tq_order,
                self.sent.get(order_id),
                order_id in self.cancel_asked,
                self.scrub,
            )
            sig = (order.status, order.traded, order.traded_price, order.status_msg)
            if force or self._order_sig.get(order_id) != sig:
                self._order_sig[order_id] = sig
                self._emit("on_order", order)
                moved = True
            if not order.is_active:
                self.final.add(order_id)
        return moved

    def _publish_trades(self, api: TqApi, force: bool) -> bool:
        moved = False
        for trade_id, tq_trade in api.get_trade().items():
            if (trade_id in self._trades_seen and not force) or tq_trade.exchange_id not in FUTURES_EXCHANGES:
                continue
            self._trades_seen.add(trade_id)
            sent = self.sent.get(tq_trade.order_id)
            self._emit("on_trade", trade_from_tq(self.account_id, trade_id, tq_trade, sent))
            moved = True
        return moved

    def _publish_positions(self, api: TqApi, force: bool) -> None:
        seen: set[tuple[str, Direction]] = set()
        for tq_pos in api.get_position().values():
            if tq_pos.exchange_id not in FUTURES_EXCHANGES:
                continue
            for position in positions_from_tq(self.account_id, tq_pos):
                seen.add(position.key)
                self._push_position(position, force)
        for key in [k for k in self._pos_sig if k not in seen]:  # gone with a rebuilt session
            self._push_position(
                Position(account_id=self.account_id, vt_symbol=key[0], direction=key[1]), force
            )

    def _push_position(self, position: Position, force: bool) -> None:
        sig = (
            position.volume,
            position.yd_volume,
            position.frozen,
            position.yd_frozen,
            position.price,
            position.margin,
        )
        known = self._pos_sig.get(position.key)
        if known is None and not position.volume:
            return  # a side never held: nothing to say
        if (force and position.volume) or known != sig:
            self._pos_sig[position.key] = sig
            self._emit("on_position", position)
        if not position.volume:
            self._pos_sig.pop(position.key, None)

    def _publish_account(self, api: TqApi, urgent: bool) -> None:
        account = account_from_tq(self.account_id, api.get_account())
        sig = (account.balance, account.available, account.margin, account.frozen, account.commission)
        clock = time.monotonic()
        if sig == self._account_sig and not urgent:
            return
        if not urgent and clock < self._account_due:
            return
        self._account_sig = sig
        self._account_due = clock + ACCOUNT_PUSH_SECONDS
        self._emit("on_account", account)

    # ------------------------------------------------------------------ after a rebuild

    def report_lost_orders(self, api: TqApi, reason: str) -> None:
        """Working orders the (rebuilt) session does not know will never be heard of again.

        Run after a forced push: every order the session lists was pushed there (known here by
        the same test ``_publish_orders`` applies), every other order of ours still working is
        settled here with ``reason``, so none is left for the trader to settle without one.
        """
        known = {
            order_id
            for order_id, tq_order in api.get_order().items()
            if tq_order.exchange_id in FUTURES_EXCHANGES
        }
        for order_id, sent in self.sent.items():
            if order_id in self.final or order_id in known:
                continue
            self.final.add(order_id)
            self._emit("on_order", sent.as_order(self.account_id, order_id, Status.CANCELLED, reason))
