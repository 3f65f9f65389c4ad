"""Reconciliation: what a venue's (re)connect says that the account's records did not know.

From the moment a venue drops (or a trader starts) until the gateway reports
CONNECTED, the trader refuses orders and strategies only record their signals;
everything the gateway pushes in between is the venue's view of the day (account,
positions, orders, trades). A ``Reconciliation`` counts how that view differs
from the database as it is applied, the trader's normal event handlers do the
recording (a trade id already stored is never recorded twice), and at CONNECTED
``finish`` settles the orders the venue no longer lists and sums it all up in
one line for the log. Only then does trading resume.

A fill may reach the database without its order: the write of the request that sent it
failed (a full disk: the account halted, the venue kept the order and its fill), and a venue
lists only today's working orders and trades, not the finished orders. ``finish`` writes such
an order back from its fills (``recovered``), so every trade on record has its order.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable

from core.models import EXTERNAL, NOT_AT_VENUE, Order, OrderType, Status, Trade, now

#: The status message of an order written back from its fills (``orders_from_fills``).
RECOVERED_FROM_FILLS = "recovered from the venue's fills: the order's own record was not saved"


class Reconciliation:
    """One reconnect's tally."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.started = time.monotonic()
        self.seen_orders: set[str] = set()
        # per order: what the records said before this reconnect, and what the venue says now
        self._before: dict[str, tuple[Status, float] | None] = {}
        self._now: dict[str, tuple[Status, float]] = {}
        self._external: set[str] = set()
        self.missed_fills = 0
        self.settled = 0
        self.recovered = 0
        self._orderless: dict[str, list[Trade]] = {}  # fills whose order is on no record

    def order(self, known: Order | None, order: Order) -> None:
        """Note a venue order against what we had recorded for it (``known``)."""
        oid = order.order_id
        self.seen_orders.add(oid)
        if oid not in self._before:  # the first notice: ``known`` is still the record
            self._before[oid] = (known.status, known.traded) if known is not None else None
            if known is None and order.reference == EXTERNAL:
                self._external.add(oid)
        self._now[oid] = (order.status, order.traded)

    @property
    def orders_updated(self) -> int:
        """Orders we had on record whose state the venue changed (however many notices it took)."""
        return sum(
            1 for oid, before in self._before.items() if before is not None and before != self._now[oid]
        )

    @property
    def external_orders(self) -> int:
        return len(self._external)

    def fill(self, trade: Trade | None = None) -> None:
        """A trade the database did not have (it is being recorded now); ``trade`` when its
        order is on no record either."""
        self.missed_fills += 1
        if trade is not None:
            self._orderless.setdefault(trade.order_id, []).append(trade)

    def orders_from_fills(self, known: Collection[str]) -> list[Order]:
        """The orders of fills that came without one (the venue did not list them, and they
        are not in ``known``), written back from those fills: finished, as much as they
        traded (what the order asked for is gone with its lost record), and saying so."""
        recovered = []
        for order_id, fills in self._orderless.items():
            if order_id in self.seen_orders or order_id in known:
                continue
            first = min(fills, key=lambda t: t.datetime)
            traded = sum(t.volume for t in fills)
            recovered.append(
                Order(
                    account_id=first.account_id,
                    order_id=order_id,
                    vt_symbol=first.vt_symbol,
                    direction=first.direction,
                    offset=first.offset,
                    type=OrderType.LIMIT,
                    price=first.price,
                    volume=traded,
                    traded=traded,
                    traded_price=sum(t.volume * t.price for t in fills) / traded,
                    status=Status.ALLTRADED,
                    datetime=first.datetime,
                    update_time=now(),
                    reference=first.reference,
                    status_msg=RECOVERED_FROM_FILLS,
                )
            )
        self.recovered = len(recovered)
        return recovered

    def unlisted(self, active: dict[str, Order], trades: Iterable[Trade]) -> list[Order]:
        """Our working orders the venue did not list, settled by the day's fills: filled in
        full, or cancelled as not working at the venue. Every gateway lists all working
        orders and all of today's trades before CONNECTED (gateways/base.py)."""
        filled: dict[str, tuple[float, float]] = {}
        for t in trades:
            volume, cost = filled.get(t.order_id, (0.0, 0.0))
            filled[t.order_id] = (volume + t.volume, cost + t.volume * t.price)
        settled = []
        for order in active.values():
            if order.order_id in self.seen_orders:
                continue
            traded, cost = filled.get(order.order_id, (0.0, 0.0))
            if traded < order.traded:  # some fills are older than what was loaded: keep ours
                traded, cost = order.traded, order.traded * order.traded_price
            done = traded >= order.volume
            settled.append(
                Order(
                    account_id=order.account_id,
                    order_id=order.order_id,
                    vt_symbol=order.vt_symbol,
                    direction=order.direction,
                    offset=order.offset,
                    type=order.type,
                    price=order.price,
                    volume=order.volume,
                    traded=traded,
                    traded_price=cost / traded if traded else 0.0,
                    status=Status.ALLTRADED if done else Status.CANCELLED,
                    datetime=order.datetime,
                    update_time=now(),
                    reference=order.reference,
                    status_msg="" if done else NOT_AT_VENUE,
                )
            )
        self.settled = len(settled)
        return settled

    @property
    def changed(self) -> bool:
        return bool(
            self.orders_updated or self.external_orders or self.missed_fills or self.settled or self.recovered
        )

    def summary(self) -> str:
        took = time.monotonic() - self.started
        if not self.changed:
            return f"reconciled after {self.reason} in {took:.1f} s: records match the venue"
        parts = [
            f"{self.missed_fills} missed fill(s) recorded",
            f"{self.orders_updated} order(s) updated",
            f"{self.external_orders} external order(s)",
            f"{self.settled} working order(s) settled from the venue's fills",
        ]
        if self.recovered:
            parts.append(f"{self.recovered} unsaved order(s) written back from their fills")
        return f"reconciled after {self.reason} in {took:.1f} s: " + ", ".join(parts)
