"""Reverse (反手), done by the trader: close a position, then open the same volume the other way.

The close takes the one close policy (``Oms.close_requests``: CLOSEYESTERDAY then CLOSETODAY on
SHFE/INE) at the opposite best. The open is sent only once EVERY close leg has filled. If a leg
is refused, cancelled, or not filled within the request's ``timeout`` (10 s by default), the
open is never sent and the trader says why in its log (an ERROR line the console shows); a
close leg still working at the timeout is left working, and said so. The whole of it lives in
the trader, so a console that goes away in the middle changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.models import Direction, Offset, Order, OrderRequest, Status
from core.oms import Oms
from core.protocol import Reply


class ReverseHost(Protocol):
    account_id: str
    log: logging.Logger
    oms: Oms

    def place_reverse_open(self, req: OrderRequest) -> Reply: ...
    def unit(self) -> Any: ...


@dataclass
class Reversal:
    """One reverse in flight: its close legs (order ids) and the open that waits for them."""

    vt_symbol: str
    closed: Direction  # the position's direction before the reverse
    volume: float
    legs: list[str]
    timer: asyncio.TimerHandle | None = None
    done: bool = False
    why: str = ""  # why the open was not sent
    filled: dict[str, float] = field(default_factory=dict)

    @property
    def words(self) -> str:
        return f"reverse of {self.closed.name.lower()} {self.volume:g} {self.vt_symbol}"


class Reversals:
    """The reverses in flight of one trader, advanced by its order events."""

    def __init__(self, host: ReverseHost) -> None:
        self.host = host
        self._by_order: dict[str, Reversal] = {}

    def start(
        self, vt_symbol: str, closed: Direction, volume: float, legs: list[str], timeout: float
    ) -> Reversal:
        """Watch ``legs`` (the close orders sent); the open follows when all have filled."""
        rev = Reversal(vt_symbol=vt_symbol, closed=closed, volume=volume, legs=legs)
        for oid in legs:
            self._by_order[oid] = rev
        rev.timer = asyncio.get_running_loop().call_later(timeout, self._timed_out, rev, timeout)
        return rev

    def settle_now(self, rev: Reversal) -> Reply | None:
        """Inside the request that sent the close (a venue may fill at once): the open's reply
        if it went now, None while the close is still working (or the reverse was given up)."""
        if rev.done:
            return None
        outcome = self._outcome(rev)
        if outcome == "filled":
            return self._open(rev)
        if outcome:
            self._abandon(rev, outcome)
        return None

    def on_order(self, order: Order) -> None:
        """An order event (inside the venue's processing): the open, if due, leaves after it."""
        rev = self._by_order.get(order.order_id)
        if rev is None or rev.done:
            return
        outcome = self._outcome(rev)
        if outcome == "filled":
            asyncio.get_running_loop().call_soon(self._open_in_unit, rev)
        elif outcome:
            self._abandon(rev, outcome)

    def _outcome(self, rev: Reversal) -> str:
        """ "filled" when every leg has; a reason when one can no longer fill; "" meanwhile."""
        orders = self.host.oms.orders
        filled = True
        for oid in rev.legs:
            order = orders.get(oid)
            if order is None or order.status is not Status.ALLTRADED:
                filled = False
            if order is not None and order.status in (Status.CANCELLED, Status.REJECTED):
                why = f": {order.status_msg}" if order.status_msg else ""
                return f"close order {oid} {order.status.name} (filled {order.traded:g} of {order.volume:g}){why}"
        return "filled" if filled else ""

    def _abandon(self, rev: Reversal, why: str) -> None:
        self._finish(rev)
        rev.why = why
        self.host.log.error("%s: %s; the open is NOT sent", rev.words, why)

    def _timed_out(self, rev: Reversal, timeout: float) -> None:
        if rev.done:
            return
        orders = self.host.oms.orders
        working = [oid for oid in rev.legs if (o := orders.get(oid)) is not None and o.is_active]
        still = f"; close order(s) {', '.join(working)} still working" if working else ""
        self._abandon(rev, f"the close did not fill within {timeout:g} s{still}")

    def _finish(self, rev: Reversal) -> None:
        rev.done = True
        if rev.timer is not None:
            rev.timer.cancel()
        for oid in rev.legs:
            self._by_order.pop(oid, None)

    def _open_in_unit(self, rev: Reversal) -> None:
        if rev.done:
            return
        try:
            with self.host.unit():
                self._open(rev)
        except Exception:
            self.host.log.exception("%s: sending the open failed", rev.words)

    def _open(self, rev: Reversal) -> Reply:
        self._finish(rev)
        host = self.host
        direction = rev.closed.opposite
        tick = host.oms.ticks.get(rev.vt_symbol)
        price = 0.0
        if tick is not None:
            price = tick.ask_price_1 if direction is Direction.LONG else tick.bid_price_1
            price = price or tick.last_price
        req = OrderRequest(
            vt_symbol=rev.vt_symbol,
            direction=direction,
            offset=Offset.OPEN,
            price=price,
            volume=rev.volume,
            reference="manual",
            account_id=host.account_id,
        )
        reply = host.place_reverse_open(req)
        result = reply.result if isinstance(reply.result, dict) else {}
        if reply.ok:
            host.log.warning(
                "%s: close filled; open %s %g @ %g sent (order %s)",
                rev.words,
                direction.name,
                rev.volume,
                price,
                result.get("order_id", ""),
            )
        else:
            host.log.error("%s: close filled but the open was refused: %s", rev.words, reply.error)
        return reply
