"""Conditional orders (条件单), held by the trader: a condition on a contract's price and the
order to send when it holds.

A conditional order watches one price of one contract (last, best bid or best ask) and fires
when that price is at or beyond its trigger price (``>=`` or ``<=``). It is evaluated on every
tick of its contract, from the trader's tick handler (no polling loop), and only while the
venue is CONNECTED, the account is not HALTED and its market is open by the trader's session
rule (``core/sessions.py``, when it applies: a tick outside the sessions would fire an order the
risk rule refuses; paused otherwise: it stays PENDING). The
kill switch SUSPENDS every pending one; an operator re-arms them (``rearm``) after a resume.

**Fires at most once** (ARCHITECTURE.md, "Invariants"): when the condition holds, the order is
marked TRIGGERED and that is committed to the account's database first; the order is sent
after, in its own unit of work (``ConditionalBook._send``), never from inside the venue's tick.
A trader killed between the two finds it TRIGGERED at its restart with no order recorded and
never sends it again: it says so on the conditional order (``UNCONFIRMED``), and once the
venue's push at the reconnect is applied (``core/reconcile.py``) it names the order the venue
lists for it (``FOUND_AT_VENUE``: same contract and side, created from its trigger on, on no
record before) or says none went out (``NONE_AT_VENUE``).

The order it sends takes the road of every order (``RequestHandlers._place``: the risk rules,
the close policy's explicit offsets for a close); a refusal is kept on the conditional order
with its reason. A stop-loss or take-profit only ever closes its position's lots (no more than
is closable when it fires; hit while working close orders hold every lot, it waits; cancelled
once the position is flat, also when the venue's push after a restart lists it no more, so the stop and the take-profit
of one position never open anything nor close a later one). Trailing: the trigger price follows the watched price at
``trailing`` distance, only towards it, and is saved only when it moves by a tick or more.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from core.models import (
    CondExpiry,
    ConditionalOrder,
    ConditionalRequest,
    CondKind,
    CondPrice,
    CondState,
    Contract,
    Direction,
    GatewayStatus,
    Offset,
    OrderRequest,
    Tick,
    TradingState,
    TriggerOp,
    TriggerSource,
    conditional_id,
    now,
    on_tick_grid,
)
from core.oms import Oms, position_direction_closed_by
from core.protocol import MessageType, Reply
from core.sessions import trading_day_of

if TYPE_CHECKING:
    from storage import AccountDatabase

#: Test hook: a trader with this variable set to a file path kills itself (SIGKILL) after a
#: conditional order's TRIGGERED is committed and before its order is sent, once (it creates
#: the file first; with the file there it does nothing), to prove it is never sent twice.
KILL_BEFORE_SEND_ENV = "QTRADER_TEST_KILL_BEFORE_COND_SEND"

#: The message of a conditional order found TRIGGERED with no order at a restart.
UNCONFIRMED = (
    "the trader stopped after this fired and before its order was confirmed sent: it is not "
    "sent again; check the Orders panel (the venue lists it there if it went out)"
)
#: ... and once the venue's push at the reconnect lists an order that matches it.
FOUND_AT_VENUE = "the trader stopped after this fired; the venue lists its order (not sent again)"
#: ... or when it lists none: the order never went out.
NONE_AT_VENUE = (
    "the trader stopped after this fired and before its order went out (the venue lists none "
    "after the restart): not sent, and not sent again"
)
MATCH_SLACK_S = 1.0  # a venue's clock may stamp its order up to this long before the trigger

RECENT_FINISHED = 100  # finished conditional orders loaded at start and kept in the snapshot
MAX_LIVE = 200  # pending or suspended at once, per account: what a snapshot carries stays bounded


class BookHost(Protocol):
    """What the book needs of its trader."""

    account_id: str
    log: logging.Logger
    oms: Oms
    db: AccountDatabase | None
    gateway_status: GatewayStatus
    trading_state: TradingState
    auto_trading: bool

    def emit(self, msg_type: MessageType, data: Any) -> None: ...
    def contract_of(self, vt_symbol: str) -> Contract | None: ...
    def quote(self, vt_symbol: str) -> None: ...
    def venue_now(self) -> datetime: ...
    def market_closed(self, vt_symbol: str) -> str | None: ...
    def place_conditional_order(self, req: OrderRequest, *, manual: bool) -> Reply: ...
    def place_conditional_close(
        self, vt_symbol: str, closed: Direction, volume: float, price: float, reference: str
    ) -> Reply: ...
    def unit(self) -> Any: ...


# --------------------------------------------------------------------------- the rules


def watched(source: TriggerSource, tick: Tick) -> float:
    """The price a conditional order watches on ``tick`` (0: not reported)."""
    if source is TriggerSource.BID:
        return tick.bid_price_1
    if source is TriggerSource.ASK:
        return tick.ask_price_1
    return tick.last_price


def holds(op: TriggerOp, value: float, trigger_price: float) -> bool:
    """Whether the condition holds for ``value`` (a price of 0 is no price: never)."""
    if value <= 0:
        return False
    return value >= trigger_price if op is TriggerOp.GE else value <= trigger_price


def trailed(
    op: TriggerOp, value: float, trigger_price: float, distance: float, pricetick: float
) -> float | None:
    """The new trigger price of a trailing order, or None when it does not move: it follows
    ``value`` at ``distance`` only towards it (a ``<=`` stop rises with the price, a ``>=`` stop
    falls with it), and only by whole ticks (one at least: a bounded write rate)."""
    if distance <= 0 or value <= 0:
        return None
    tick = pricetick if pricetick > 0 else 0.0
    if op is TriggerOp.LE:
        level = value - distance
        if tick:
            level = (level // tick) * tick
        if level >= trigger_price + (tick or 1e-12) - 1e-9:
            return round(level, 10)
    else:
        level = value + distance
        if tick:
            level = -((-level) // tick) * tick
        if level <= trigger_price - (tick or 1e-12) + 1e-9:
            return round(level, 10)
    return None


def fire_price(cond: ConditionalOrder, tick: Tick, contract: Contract | None) -> float:
    """The price of the order sent when ``cond`` fires: its limit, or the opposite best (the
    last price when the venue reports no book) moved ``offset_ticks`` towards the other side,
    kept within the day's limits."""
    if cond.price_type is CondPrice.LIMIT:
        return cond.price
    buy = cond.direction is Direction.LONG
    best = tick.ask_price_1 if buy else tick.bid_price_1
    price = best if best > 0 else tick.last_price
    pricetick = contract.pricetick if contract is not None else 0.0
    price += (1 if buy else -1) * cond.offset_ticks * pricetick
    if buy and tick.limit_up > 0:
        price = min(price, tick.limit_up)
    if not buy and tick.limit_down > 0:
        price = max(price, tick.limit_down)
    return contract.round_price(price) if contract is not None else price


def closes(cond: ConditionalOrder | ConditionalRequest) -> bool:
    return cond.kind is not CondKind.ENTRY or cond.offset.is_close


def creation_refusal(
    req: ConditionalRequest,
    *,
    contract: Contract | None,
    tick: Tick | None,
    oms: Oms,
    trading_state: TradingState,
) -> str | None:
    """Why ``req`` cannot be created (None: it can), in words an operator reads."""
    if trading_state is TradingState.HALTED:
        return "account HALTED: no new conditional orders (resume it first)"
    if contract is None:
        return f"unknown contract {req.vt_symbol}"
    grid = contract.pricetick
    if not on_tick_grid(req.trigger_price, grid):
        return f"trigger price {req.trigger_price:g} is not on {req.vt_symbol}'s tick grid ({grid:g})"
    if req.price_type is CondPrice.LIMIT:
        if req.price <= 0:
            return "a LIMIT conditional order needs its price"
        if not on_tick_grid(req.price, grid):
            return f"price {req.price:g} is not on {req.vt_symbol}'s tick grid ({grid:g})"
    if req.trailing and req.trailing < grid - 1e-9:
        return f"trailing distance {req.trailing:g} is less than one tick ({grid:g})"
    if req.kind is not CondKind.ENTRY:
        closed = position_direction_closed_by(req.direction)
        if not req.offset.is_close:
            return f"a {_kind_words(req.kind)} only closes: its offset must be a close, not {req.offset.name}"
        pos = oms.position(req.vt_symbol, closed)
        if pos is None or pos.volume <= 0:
            return f"no {closed.name.lower()} {req.vt_symbol} position to protect"
        if req.volume > pos.volume + 1e-9:
            return f"{req.volume:g} lots > the {closed.name.lower()} position's {pos.volume:g}"
        # a stop on a long fires on a fall, a take-profit on a rise (the other way for a short)
        falls = (closed is Direction.LONG) == (req.kind is CondKind.STOP_LOSS)
        wanted = TriggerOp.LE if falls else TriggerOp.GE
        if req.op is not wanted:
            return (
                f"a {_kind_words(req.kind)} on a {closed.name.lower()} fires when the price "
                f"{'falls' if falls else 'rises'}: use {wanted.sign}"
            )
    if tick is not None:
        value = watched(req.source, tick)
        if holds(req.op, value, req.trigger_price):
            return (
                f"the condition already holds ({req.source.name.lower()} {value:g} {req.op.sign} "
                f"{req.trigger_price:g}): it would fire at once; send an order instead"
            )
    return None


def _kind_words(kind: CondKind) -> str:
    return kind.name.lower().replace("_", "-")


# --------------------------------------------------------------------------- the book


class ConditionalBook:
    """One trader's conditional orders: created, evaluated on ticks, fired once, kept."""

    def __init__(self, host: BookHost) -> None:
        self.host = host
        self.live: dict[str, ConditionalOrder] = {}
        self.finished: dict[str, ConditionalOrder] = {}
        self._by_symbol: dict[str, set[str]] = {}
        self._unconfirmed: list[ConditionalOrder] = []  # fired, order unknown: settled at CONNECTED
        self._recorded: set[str] = set()  # orders on record at the start: not an unconfirmed one's

    # ------------------------------------------------------------------ state

    def load(self, db: AccountDatabase) -> None:
        """What the database holds: every live one, the recent finished ones; a TRIGGERED one
        whose order was never recorded is said so (``UNCONFIRMED``), never sent again.
        Called once the trader has loaded its orders from the database."""
        self._recorded = set(self.host.oms.orders)
        for cond in db.load_conditionals(limit=RECENT_FINISHED):
            if (
                cond.state is CondState.TRIGGERED
                and not cond.order_id
                and not cond.message.startswith("refused")
            ):
                cond.message = UNCONFIRMED
                cond.updated_at = now()
                db.save_conditional(cond)
                self.host.log.error("conditional order %s (%s): %s", cond.cond_id, cond.words(), UNCONFIRMED)
            if cond.state is CondState.TRIGGERED and cond.message == UNCONFIRMED:
                self._unconfirmed.append(cond)
            self.finished[cond.cond_id] = cond
        for cond in db.load_conditionals(live_only=True, limit=100_000):
            self.finished.pop(cond.cond_id, None)
            self._keep(cond)
        self.expire_due()

    def settle_unconfirmed(self) -> None:
        """At CONNECTED (the venue's push applied): a conditional order that fired just before a
        crash and whose order the venue lists (same contract and side, created from its trigger
        on, not any other one's) gets that order's id; the others stay UNCONFIRMED. Nothing is
        ever sent for them."""
        pending, self._unconfirmed = self._unconfirmed, []
        if not pending:
            return
        taken = {
            oid
            for c in [*self.finished.values(), *self.live.values()]
            for oid in c.order_id.split(",")
            if oid
        }
        for cond in pending:
            since = cond.triggered_at or cond.updated_at
            found = [
                o
                for o in self.host.oms.orders.values()
                if o.vt_symbol == cond.vt_symbol
                and o.direction is cond.direction
                and o.offset.is_close == closes(cond)
                and o.order_id not in taken
                and o.order_id not in self._recorded
                and (o.datetime - since).total_seconds() >= -MATCH_SLACK_S
            ]
            if not found:
                self._save(cond, message=NONE_AT_VENUE)
                self.host.log.error("conditional order %s: %s", cond.cond_id, NONE_AT_VENUE)
                continue
            cond.order_id = ",".join(o.order_id for o in found)[:1000]
            taken.update(o.order_id for o in found)
            self._save(cond, message=f"{FOUND_AT_VENUE}: order {cond.order_id}")
            self.host.log.warning(
                "conditional order %s: %s: order %s", cond.cond_id, FOUND_AT_VENUE, cond.order_id
            )

    def all(self) -> list[ConditionalOrder]:
        finished = list(self.finished.values())[-RECENT_FINISHED:]
        return [*finished, *self.live.values()]

    def symbols(self) -> list[str]:
        """Contracts that live conditional orders watch (subscribed at start)."""
        return list(self._by_symbol)

    def _keep(self, cond: ConditionalOrder) -> None:
        if cond.is_live:
            self.live[cond.cond_id] = cond
            self._by_symbol.setdefault(cond.vt_symbol, set()).add(cond.cond_id)
            return
        if self.live.pop(cond.cond_id, None) is not None:
            ids = self._by_symbol.get(cond.vt_symbol)
            if ids is not None:
                ids.discard(cond.cond_id)
                if not ids:
                    del self._by_symbol[cond.vt_symbol]
        self.finished[cond.cond_id] = cond
        if len(self.finished) > 2 * RECENT_FINISHED:
            for old in list(self.finished)[: len(self.finished) - RECENT_FINISHED]:
                del self.finished[old]

    def _save(
        self, cond: ConditionalOrder, state: CondState | None = None, message: str | None = None
    ) -> None:
        """Durable first (the database), then kept and reported."""
        if state is not None:
            cond.state = state
        if message is not None:
            cond.message = message
        cond.updated_at = now()
        db = self.host.db
        assert db is not None
        db.save_conditional(cond)
        self._keep(cond)
        self.host.emit("conditional", cond)

    # ------------------------------------------------------------------ requests

    def create(self, req: ConditionalRequest) -> Reply:
        host = self.host
        tick = host.oms.ticks.get(req.vt_symbol)
        contract = host.contract_of(req.vt_symbol)
        why = creation_refusal(
            req, contract=contract, tick=tick, oms=host.oms, trading_state=host.trading_state
        )
        if why is None and len(self.live) >= MAX_LIVE:
            why = f"{MAX_LIVE} conditional orders are already armed in {host.account_id}: cancel some first"
        if why is not None:
            return Reply(ok=False, error=why)
        stamp = now()
        offset = Offset.CLOSE if req.kind is not CondKind.ENTRY and req.offset.is_close else req.offset
        cond = ConditionalOrder(
            account_id=host.account_id,
            cond_id=conditional_id(stamp),
            vt_symbol=req.vt_symbol,
            kind=req.kind,
            source=req.source,
            op=req.op,
            trigger_price=req.trigger_price,
            direction=req.direction,
            offset=offset,
            volume=req.volume,
            price_type=req.price_type,
            price=req.price if req.price_type is CondPrice.LIMIT else 0.0,
            offset_ticks=req.offset_ticks,
            trailing=req.trailing,
            expiry=req.expiry,
            trading_day=trading_day_of(host.venue_now()).isoformat(),
            reference=req.reference,
            created_at=stamp,
            updated_at=stamp,
        )
        self._save(cond, message="armed")
        if tick is None:  # a position's contract off the watchlist: its ticks are what it watches
            host.quote(req.vt_symbol)
        host.log.info("conditional order %s armed: %s %s", cond.cond_id, cond.vt_symbol, cond.words())
        return Reply(ok=True, result={"cond_id": cond.cond_id, "words": cond.words()})

    def cancel(self, cond_id: str, *, reference: str | None = None) -> Reply:
        """Cancel a live one (``reference``: only if it is that strategy's own)."""
        cond = self.live.get(cond_id)
        if cond is not None and reference is not None and cond.reference != reference:
            return Reply(ok=False, error=f"conditional order {cond_id} is not one of {reference}'s")
        if cond is None:
            known = self.finished.get(cond_id)
            if known is not None:
                return Reply(ok=False, error=f"conditional order {cond_id} is already {known.state.name}")
            return Reply(ok=False, error=f"unknown conditional order {cond_id}")
        by = "the operator" if reference is None else reference
        self._save(cond, CondState.CANCELLED, f"cancelled by {by}")
        self.host.log.info("conditional order %s cancelled", cond_id)
        return Reply(ok=True, result={"cond_id": cond_id, "state": cond.state.name})

    def suspend_all(self) -> int:
        """The kill switch: every pending one SUSPENDED (re-armed only by an operator)."""
        pending = [c for c in self.live.values() if c.state is CondState.PENDING]
        for cond in pending:
            self._save(cond, CondState.SUSPENDED, "suspended by the kill switch: re-arm after resuming")
        return len(pending)

    def rearm(self) -> Reply:
        if self.host.trading_state is TradingState.HALTED:
            return Reply(ok=False, error="account HALTED: resume it before re-arming its conditional orders")
        suspended = [c for c in self.live.values() if c.state is CondState.SUSPENDED]
        for cond in suspended:
            self._save(cond, CondState.PENDING, "re-armed by the operator")
        if suspended:
            self.host.log.warning("%d conditional orders re-armed", len(suspended))
        return Reply(ok=True, result={"rearmed": len(suspended)})

    def position_flat(self, vt_symbol: str, direction: Direction) -> None:
        """The ``direction`` position of ``vt_symbol`` is flat (closed by hand, by another
        conditional order, by a strategy): the stop-losses and take-profits that protected it
        are cancelled, so they never close a position opened later."""
        for cond_id in list(self._by_symbol.get(vt_symbol, ())):
            cond = self.live.get(cond_id)
            if cond is None or cond.kind is CondKind.ENTRY:
                continue
            if position_direction_closed_by(cond.direction) is direction:
                self._save(cond, CondState.CANCELLED, f"its {direction.name.lower()} position was closed")
                self.host.log.info("conditional order %s cancelled: its position was closed", cond_id)

    def sweep_flat(self) -> None:
        """Once the venue's push is applied (a start, a reconnect): the stop-losses and
        take-profits whose position it no longer lists are cancelled, as ``position_flat`` would
        have done had the trader heard the close as it happened."""
        for cond in list(self.live.values()):
            if cond.kind is CondKind.ENTRY:
                continue
            closed = position_direction_closed_by(cond.direction)
            pos = self.host.oms.position(cond.vt_symbol, closed)
            if pos is None or pos.volume <= 0:
                self.position_flat(cond.vt_symbol, closed)

    def suspended(self) -> int:
        return sum(c.state is CondState.SUSPENDED for c in self.live.values())

    # ------------------------------------------------------------------ evaluation

    def expire_due(self, moment: datetime | None = None, ids: Iterable[str] | None = None) -> None:
        """DAY orders whose trading day is over are EXPIRED."""
        day = trading_day_of(moment or self.host.venue_now()).isoformat()
        for cond_id in list(self.live if ids is None else ids):
            cond = self.live.get(cond_id)
            if cond is not None and cond.expiry is CondExpiry.DAY and cond.trading_day != day:
                self._save(cond, CondState.EXPIRED, f"expired with its trading day {cond.trading_day}")
                self.host.log.info(
                    "conditional order %s expired (trading day %s over)", cond_id, cond.trading_day
                )

    def on_tick(self, tick: Tick) -> None:
        """Evaluate the conditional orders of ``tick``'s contract (the trader's tick handler)."""
        ids = self._by_symbol.get(tick.vt_symbol)
        if not ids:
            return
        host = self.host
        if host.gateway_status is not GatewayStatus.CONNECTED or host.trading_state is TradingState.HALTED:
            return  # paused: the venue is down or the account HALTED
        self.expire_due(tick.datetime, list(ids))
        if host.market_closed(tick.vt_symbol) is not None:
            return  # a tick outside the sessions (a closing print, a settlement): its order would be refused
        contract = host.contract_of(tick.vt_symbol)
        pricetick = contract.pricetick if contract is not None else 0.0
        for cond_id in list(ids):
            cond = self.live.get(cond_id)
            if cond is None or cond.state is not CondState.PENDING:
                continue
            value = watched(cond.source, tick)
            if holds(cond.op, value, cond.trigger_price):
                held = self._all_held(cond) if closes(cond) else None
                if held is None:
                    self._trigger(cond, value, tick)
                elif cond.message != held:  # said once, not on every tick
                    self._save(cond, message=held)
                    host.log.warning("conditional order %s: %s", cond.cond_id, held)
                continue
            level = trailed(cond.op, value, cond.trigger_price, cond.trailing, pricetick)
            if level is not None:
                cond.trigger_price = contract.round_price(level) if contract is not None else level
                self._save(
                    cond,
                    message=f"trailing: moved to {cond.trigger_price:g} ({cond.source.name.lower()} {value:g})",
                )

    def _all_held(self, cond: ConditionalOrder) -> str | None:
        """Why a close cannot fire now though its position is there: working close orders
        hold every lot (it waits, PENDING: firing would send nothing and use it up); None
        otherwise (a flat position is ``_send_in_unit``'s and ``position_flat``'s)."""
        closed = position_direction_closed_by(cond.direction)
        pos = self.host.oms.position(cond.vt_symbol, closed)
        if pos is None or pos.volume <= 0 or self.host.oms.closable(cond.vt_symbol, closed).total > 0:
            return None
        return (
            f"hit, but working close orders hold all {pos.volume:g} lots of the {closed.name.lower()} "
            f"{cond.vt_symbol} position: waits (fires on a tick once they are cancelled)"
        )

    def _trigger(self, cond: ConditionalOrder, value: float, tick: Tick) -> None:
        """TRIGGERED, committed before anything is sent; the order leaves after the tick."""
        cond.triggered_at = now()
        self._save(
            cond,
            CondState.TRIGGERED,
            f"fired at {cond.source.name.lower()} {value:g}: sending {cond.order_words()}",
        )
        self.host.log.warning(
            "conditional order %s fired: %s %s at %g", cond.cond_id, cond.vt_symbol, cond.words(), value
        )
        # after the venue's tick processing, and after the commit of the unit this tick may be in
        asyncio.get_running_loop().call_soon(self._send, cond, tick)

    def _send(self, cond: ConditionalOrder, tick: Tick) -> None:
        marker = os.environ.get(KILL_BEFORE_SEND_ENV)
        if marker and not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(cond.cond_id)
            os.kill(os.getpid(), signal.SIGKILL)
        host = self.host
        try:
            with host.unit():
                self._send_in_unit(cond, tick)
        except Exception as exc:  # the unit has halted the account for a failed write
            host.log.exception("conditional order %s: sending its order failed", cond.cond_id)
            if not cond.order_id:
                cond.message = f"refused: internal error: {exc}"

    def _send_in_unit(self, cond: ConditionalOrder, tick: Tick) -> None:
        host = self.host
        # the kill switch or a lost venue came between the tick and this send: nothing goes out,
        # and it pauses as a pending one does (nothing was sent: firing later is still once)
        if host.trading_state is TradingState.HALTED:
            cond.triggered_at = None
            self._save(
                cond,
                CondState.SUSPENDED,
                "the kill switch was pulled as it fired: not sent; re-arm after resuming",
            )
            host.log.warning(
                "conditional order %s: fired as the account was HALTED: suspended, not sent", cond.cond_id
            )
            return
        if host.gateway_status is not GatewayStatus.CONNECTED:
            cond.triggered_at = None
            self._save(cond, CondState.PENDING, "fired as the venue went away: not sent; armed again")
            host.log.warning(
                "conditional order %s: fired as the venue went away: armed again, not sent", cond.cond_id
            )
            return
        if cond.reference != "manual" and not host.auto_trading:
            self._save(cond, message=f"refused: auto-trading is off ({cond.reference}'s order not sent)")
            host.log.error(
                "conditional order %s of %s: auto-trading is off, not sent", cond.cond_id, cond.reference
            )
            return
        contract = host.contract_of(cond.vt_symbol)
        price = fire_price(cond, tick, contract)
        if closes(cond):
            closed = position_direction_closed_by(cond.direction)
            volume = min(cond.volume, host.oms.closable(cond.vt_symbol, closed).total)
            if volume <= 0:
                what = f"{closed.name.lower()} {cond.vt_symbol}"
                pos = host.oms.position(cond.vt_symbol, closed)
                why = (
                    f"nothing sent: working close orders already hold all {pos.volume:g} lots of the {what} position"
                    if pos is not None and pos.volume > 0
                    else f"nothing sent: no {what} position left to close"
                )
                self._save(cond, CondState.CANCELLED, why)
                host.log.warning(
                    "conditional order %s: no %s position left, nothing sent", cond.cond_id, what
                )
                return
            reply = host.place_conditional_close(cond.vt_symbol, closed, volume, price, cond.reference)
        else:
            req = OrderRequest(
                vt_symbol=cond.vt_symbol,
                direction=cond.direction,
                offset=cond.offset,
                price=price,
                volume=cond.volume,
                reference=cond.reference,
                account_id=host.account_id,
                decision=f"{cond.reference}:{cond.cond_id}",
            )
            reply = host.place_conditional_order(req, manual=cond.reference == "manual")
        result = reply.result if isinstance(reply.result, dict) else {}
        cond.order_id = str(result.get("order_id", ""))[:1000]
        if reply.ok:
            message = f"sent {cond.order_words()} at {price:g} (order {cond.order_id})"
        else:
            message = f"refused: {reply.error}"
        self._save(cond, message=message)
        log = host.log.info if reply.ok else host.log.error
        log("conditional order %s: %s", cond.cond_id, message)


__all__ = [
    "FOUND_AT_VENUE",
    "KILL_BEFORE_SEND_ENV",
    "NONE_AT_VENUE",
    "UNCONFIRMED",
    "BookHost",
    "ConditionalBook",
    "closes",
    "creation_refusal",
    "fire_price",
    "holds",
    "trailed",
    "watched",
]
