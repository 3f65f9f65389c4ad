"""Exits kept at the market: a strategy's close order follows a market that runs away.

A strategy's close order (a stop-loss, a take-profit, a turn-around) is a limit at the
opposite best price, and a market running away would leave it working while the loss
grows. When such an order has worked for ``CHASE_AFTER`` seconds and the best price has
moved past it, the engine cancels it and, once the venue confirms that cancel, sends the
rest again at the new best price, at most ``MAX_CHASES`` times (then it stays working and
an ERROR says the operator must act). Only cancels the engine asked for are re-sent: an
order cancelled by the operator or the kill switch stays cancelled, and nothing is re-sent
while the account is HALTED (but a protective strategy's exits, when the kill switch kept
it running), auto-trading is off or the venue is down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from core.models import Direction, GatewayStatus, Order, OrderRequest, OrderType, Status, Tick, TradingState

if TYPE_CHECKING:
    from core.strategy_engine import EngineHost

CHASE_AFTER = 2.0  # seconds an exit order may work at a price the market has left
MAX_CHASES = 5  # re-prices of one exit, then it is left to the operator


@dataclass(slots=True)
class _Chase:
    """An exit order the engine keeps at the market."""

    strategy: str
    placed: datetime
    chases: int = 0
    cancelling: bool = False


class ExitChaser:
    """The strategy engine's working exit orders, kept at the market (by order id)."""

    def __init__(
        self,
        host: EngineHost,
        *,
        clock: Callable[[], datetime],
        price: Callable[[str, Direction, float], float],
        passes_halt: Callable[[str], bool] = lambda _name: False,
    ) -> None:
        """``price``: the engine's marketable limit for a side (the opposite best price);
        ``passes_halt``: whether a strategy's exits still go while HALTED (a protective one
        that the kill switch kept)."""
        self.host = host
        self.clock = clock
        self._price = price
        self._passes_halt = passes_halt
        self._chases: dict[str, _Chase] = {}  # working exit orders, by order id

    @property
    def logger(self) -> logging.Logger:
        return self.host.log

    def follow(self, order_id: str, strategy: str, chases: int = 0) -> None:
        """Keep ``order_id``, an exit of ``strategy``, at the market while it works."""
        order = self.host.oms.orders.get(order_id)
        if order is not None and order.is_active:
            self._chases[order_id] = _Chase(strategy=strategy, placed=self.clock(), chases=chases)

    def on_tick(self, tick: Tick) -> None:
        if self._chases:
            self._later(lambda: self._chase(tick))

    def on_order(self, order: Order) -> None:
        chase = self._chases.get(order.order_id)
        if chase is not None and not order.is_active:
            del self._chases[order.order_id]
            if chase.cancelling and order.status is Status.CANCELLED and order.remaining > 0:
                self._later(lambda: self._reprice(order, chase))

    def _later(self, call: Callable[[], None]) -> None:
        """Orders are never sent from inside a gateway event (see ``StrategyEngine.emit``)."""
        if getattr(self.host, "_event_depth", 0) > 0:
            asyncio.get_running_loop().call_soon(call)
        else:
            call()

    def _can_act(self, strategy: str) -> str | None:
        if not self.host.auto_trading:
            return "auto-trading is off"
        if self.host.trading_state is TradingState.HALTED and not self._passes_halt(strategy):
            return "account HALTED"
        if self.host.gateway_status is not GatewayStatus.CONNECTED:
            return f"venue {self.host.gateway_status.name.lower()}"
        return None

    def _chase(self, tick: Tick) -> None:
        """Cancel exit orders the market has left behind (they are re-sent on the cancel)."""
        moment = self.clock()
        for order_id, chase in list(self._chases.items()):
            order = self.host.oms.orders.get(order_id)
            if order is None or order.vt_symbol != tick.vt_symbol or chase.cancelling:
                continue
            if not order.is_active:
                del self._chases[order_id]
                continue
            best = tick.bid_price_1 if order.direction is Direction.SHORT else tick.ask_price_1
            left_behind = best > 0 and (
                best < order.price if order.direction is Direction.SHORT else best > order.price
            )
            if not left_behind or (moment - chase.placed).total_seconds() < CHASE_AFTER:
                continue
            if chase.chases >= MAX_CHASES:
                del self._chases[order_id]
                self.logger.error(
                    "strategy %s: exit order %s %s %g %s still working at %g after %d re-prices "
                    "(market %g): left to the operator",
                    chase.strategy,
                    order_id,
                    order.direction.name,
                    order.remaining,
                    order.vt_symbol,
                    order.price,
                    MAX_CHASES,
                    best,
                )
                continue
            if self._can_act(chase.strategy) is not None:
                continue
            chase.cancelling = True  # before: a venue may confirm the cancel inside the call
            reply = self.host.cancel_order(order_id)
            if not reply.ok:
                chase.cancelling = False
                self.logger.warning(
                    "strategy %s: re-pricing exit %s: cancel refused: %s",
                    chase.strategy,
                    order_id,
                    reply.error,
                )

    def _reprice(self, cancelled: Order, chase: _Chase) -> None:
        """The engine's own cancel of an exit came back: send the rest at the best price now."""
        why = self._can_act(chase.strategy)
        if why is not None:
            self.logger.error(
                "strategy %s: exit %s cancelled for re-pricing, NOT re-sent (%s): %g %s left open",
                chase.strategy,
                cancelled.order_id,
                why,
                cancelled.remaining,
                cancelled.vt_symbol,
            )
            return
        price = self._price(cancelled.vt_symbol, cancelled.direction, cancelled.price)
        reply = self.host.place_order(
            OrderRequest(
                vt_symbol=cancelled.vt_symbol,
                direction=cancelled.direction,
                offset=cancelled.offset,
                type=OrderType.LIMIT,
                price=price,
                volume=cancelled.remaining,
                reference=cancelled.reference,
                account_id=self.host.account_id,
            )
        )
        new_id = str(reply.result.get("order_id")) if isinstance(reply.result, dict) else "?"
        if not reply.ok:
            self.logger.error(
                "strategy %s: exit re-price of %s refused: %s: %g %s left open",
                chase.strategy,
                cancelled.order_id,
                reply.error,
                cancelled.remaining,
                cancelled.vt_symbol,
            )
            return
        self.logger.warning(
            "strategy %s: exit %s re-priced %g -> %g as %s (%d of %d)",
            chase.strategy,
            cancelled.order_id,
            cancelled.price,
            price,
            new_id,
            chase.chases + 1,
            MAX_CHASES,
        )
        self.follow(new_id, chase.strategy, chase.chases + 1)
