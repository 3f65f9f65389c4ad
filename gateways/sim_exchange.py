"""The simulated exchange and broker: a pure, deterministic engine.

``SimExchange`` is one account at a little exchange. It owns a market per contract
(``gateways/sim_market.py``: a seeded random walk with a five-level book each side), matches
orders against that book, and keeps the broker's books: account funds, positions with
yesterday/today volume, working orders and today's trades. It does no asyncio and no I/O; time comes from an
injected clock, and its state goes to and comes from the records of ``gateways/sim_journal.py``
(``to_state`` / ``take_delta`` / ``state=``). ``gateways/sim.py`` adapts it to the ``Gateway``
interface.

Every call that changes the books returns an ``Update``: the order and trade events in the order
they happened (an order's trades come *before* the order update that counts them), then
snapshots of the positions it touched and of the account. Every object in an ``Update`` is a
fresh copy the engine never touches again, so receivers may keep or mutate it.

Matching
    LIMIT / FAK / FOK / MARKET orders take volume from the synthetic book level by level and
    fill at each level's price; taken volume stays taken until the next market step redraws the
    book. A LIMIT remainder rests; FAK and MARKET remainders are cancelled; FOK fills completely
    or is cancelled with nothing filled. A resting order fills on a later market step whose
    opposite best price crosses it, at its own limit price, for at most the opposite level-1
    volume. No fill is ever through a limit price. STOP orders are rejected: the exchange has
    no native stop orders.

Accounting (the CTP convention of daily mark-to-market, 逐日盯市)
    Within one trading day::

        balance   = pre_balance + close_pnl + position_pnl - commission
        available = balance - margin - frozen

    ``pre_balance`` is the balance at the start of the trading day; ``close_pnl`` and
    ``commission`` are today's; ``position_pnl`` is the sum of every position's
    ``(last - price) x volume x multiplier`` (negated for short), where a position's ``price`` is
    its cost basis: the average open price of lots opened today, and the previous settlement
    (our last price at the roll) for lots carried over a day change. Closing realises
    ``(fill - price) x volume x multiplier`` into ``close_pnl``. At the trading-day roll every
    position's cost basis becomes the settlement price, ``pre_balance`` takes the balance and
    the day counters reset, so the balance carries over unchanged and no P&L is counted twice.
    This is exactly how CTP reports positions (vnpy's ``PositionData.price`` is CTP's
    settlement-based position cost). Margin = cost basis x volume x multiplier x margin ratio.
    ``frozen`` holds margin + fee of the unfilled volume of working opening orders.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from core.models import (
    Account,
    Contract,
    Direction,
    Offset,
    Order,
    OrderRequest,
    OrderType,
    Position,
    Status,
    Tick,
    Trade,
    now,
    on_tick_grid,
    position_pnl,
    trading_day_of,
)
from gateways.sim_contracts import get_contract, get_product, unknown_reason
from gateways.sim_journal import ExchangeState, PositionRecord, StateDelta, WorkingOrderRecord
from gateways.sim_market import LEVELS, Market, format_day, parse_day, trading_day_end

ORDER_MEMORY = 20_000  # finished orders of today kept for lookups (get_order, cancel messages)

_copy = msgspec.structs.replace  # a shallow copy; every field of our structs is immutable


# ====================================================================== helpers


class SimError(Exception):
    """A request the exchange refuses outside any order's life, e.g. cancelling an unknown or
    finished order. ``order`` is a snapshot of the order concerned, if the exchange knows it."""

    def __init__(self, message: str, order: Order | None = None, *, update: Update | None = None) -> None:
        super().__init__(message)
        self.order = order
        self.update = update  # changes made before the refusal (a trading-day roll), to report


def _clock_seeded_id(moment: datetime) -> int:
    """The first id of an exchange that starts at ``moment``: the time in units of 10 us."""
    return int(moment.timestamp() * 100_000)


def _num(value: float) -> str:
    """A price as the user wrote it (``912.03``, ``1100``), for messages about bad input."""
    return format(value, ".10g")


# ====================================================================== engine internals


class _Position:
    """The broker's position in one (vt_symbol, direction). ``frozen`` counts lots held by
    working close orders; ``yd_frozen`` is the part of it taken from yesterday's lots."""

    __slots__ = (
        "contract",
        "direction",
        "frozen",
        "long",
        "margin",
        "price",
        "volume",
        "vt_symbol",
        "yd_frozen",
        "yd_volume",
    )

    def __init__(self, contract: Contract, direction: Direction) -> None:
        self.contract = contract
        self.vt_symbol = contract.vt_symbol
        self.direction = direction
        self.long = direction is Direction.LONG
        self.volume = 0
        self.yd_volume = 0
        self.frozen = 0
        self.yd_frozen = 0
        self.price = 0.0  # cost basis (see the module docstring)
        self.margin = 0.0  # cached: changes only with volume or cost basis

    def set_holding(self, volume: int, price: float) -> None:
        self.volume = volume
        self.price = price if volume else 0.0
        self.margin = self.contract.margin(self.price, volume)

    @property
    def yd_free(self) -> int:
        return self.yd_volume - self.yd_frozen

    @property
    def td_free(self) -> int:
        return (self.volume - self.yd_volume) - (self.frozen - self.yd_frozen)


class _Working:
    """A working order with what it holds while it works."""

    __slots__ = (
        "buy",
        "contract",
        "frozen_per_lot",
        "limit",
        "market",
        "order",
        "remaining",
        "td_part",
        "yd_part",
    )

    def __init__(self, order: Order, market: Market, limit: int) -> None:
        self.order = order
        self.market = market
        self.contract = market.contract
        self.buy = order.direction is Direction.LONG
        self.limit = limit  # in ticks; for MARKET the limit price on the order's side
        self.remaining = int(order.volume - order.traded)
        self.frozen_per_lot = 0.0  # margin + fee per unfilled lot of an opening order
        self.yd_part = 0  # yesterday's lots a close order still holds
        self.td_part = 0  # today's lots a close order still holds


@dataclass(slots=True)
class Update:
    """What one engine call changed, ready to be reported in this order: ``events`` (order
    updates and trades as they happened), then ``positions``, then ``account``."""

    order_id: str = ""
    events: list[Order | Trade] = field(default_factory=list)
    positions: list[Position] = field(default_factory=list)
    account: Account | None = None
    rolled: bool = False  # the trading day changed during this call


@dataclass(slots=True)
class _Batch:
    events: list[Order | Trade] = field(default_factory=list)
    touched: dict[tuple[str, Direction], None] = field(default_factory=dict)
    account: bool = False
    rolled: bool = False


# ====================================================================== the engine


class SimExchange:
    """One account at the simulated exchange: synthetic markets, matching and the broker's books.

    ``clock`` returns the current aware datetime; every timestamp and the trading day come from
    it, so tests can cross the 20:00 roll. Pass ``state`` (from ``load_state``) to continue a
    saved exchange; ``initial_balance`` then does not matter.
    """

    def __init__(
        self,
        account_id: str,
        *,
        initial_balance: float = 1_000_000.0,
        seed: int = 0,
        clock: Callable[[], datetime] = now,
        state: ExchangeState | None = None,
    ) -> None:
        self.account_id = account_id
        self.seed = seed
        self._clock = clock
        self._contracts: dict[str, Contract] = {}
        self._markets: dict[str, Market] = {}
        self._symbols: tuple[str, ...] = ()
        self._positions: dict[tuple[str, Direction], _Position] = {}
        self._orders: dict[str, Order] = {}  # today's orders, every status
        self._working: dict[str, _Working] = {}
        self._working_by_symbol: dict[str, list[_Working]] = {}
        self._frozen_total = 0.0  # margin + fee held by working opening orders (kept incrementally)
        self._trades: list[Trade] = []
        self._pre_balance = float(initial_balance)
        self._close_pnl = 0.0
        self._commission = 0.0
        # what changed since the last delta or snapshot (see take_delta)
        self._generation = 0
        self._dirty_positions: dict[tuple[str, Direction], None] = {}
        self._dirty_orders: dict[str, None] = {}
        self._dirty_markets: dict[str, None] = {}
        self._journaled_trades = 0
        self._needs_snapshot = False
        if state is None:
            started = clock()
            self._trading_day = trading_day_of(started)
            # ids keep growing across restarts; with no saved counter, start from the clock
            # so a fresh exchange never reuses an id a previous one issued
            self._next_id = _clock_seeded_id(started)
        else:
            self._restore(state)
        self._roll_at = trading_day_end(self._trading_day)
        self._trading_day_text = format_day(self._trading_day)

    # ------------------------------------------------------------------ queries

    @property
    def trading_day(self) -> str:
        return self._trading_day_text

    @property
    def symbols(self) -> tuple[str, ...]:
        """Contracts with a live market, in the order they were opened (the adapter steps these)."""
        return self._symbols

    def get_contract(self, vt_symbol: str) -> Contract | None:
        contract = self._contract(vt_symbol)
        return _copy(contract) if contract is not None else None

    def open_market(self, vt_symbol: str) -> bool:
        """Start the synthetic market of ``vt_symbol``; False if the contract is unknown."""
        contract = self._contract(vt_symbol)
        if contract is None:
            return False
        self._market(contract)
        return True

    def tick(self, vt_symbol: str) -> Tick | None:
        """The current quote of an open market, without moving it."""
        market = self._markets.get(vt_symbol)
        return market.to_tick(self._clock(), self.account_id) if market is not None else None

    def depth(self, vt_symbol: str) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
        """The book of an open market: (bids best first, asks best first) as (price, volume)."""
        return self._markets[vt_symbol].depth()

    def account(self) -> Account:
        pnl, margin = self._mark_to_market()
        frozen = self._frozen()
        balance = self._pre_balance + self._close_pnl + pnl - self._commission
        return Account(
            account_id=self.account_id,
            balance=balance,
            available=balance - margin - frozen,
            margin=margin,
            frozen=frozen,
            commission=self._commission,
            close_pnl=self._close_pnl,
            position_pnl=pnl,
            pre_balance=self._pre_balance,
            trading_day=self.trading_day,
            datetime=self._clock(),
        )

    def positions(self) -> list[Position]:
        """Every position of today, flat ones included (a flat one was closed today)."""
        return [self._snapshot(pos) for pos in self._positions.values()]

    def position(self, vt_symbol: str, direction: Direction) -> Position | None:
        pos = self._positions.get((vt_symbol, direction))
        return self._snapshot(pos) if pos is not None else None

    def working_orders(self) -> list[Order]:
        return [_copy(w.order) for w in self._working.values()]

    def get_order(self, order_id: str) -> Order | None:
        order = self._orders.get(order_id)
        return _copy(order) if order is not None else None

    def orders(self) -> list[Order]:
        """Today's orders: every working one, and the latest finished ones."""
        return [_copy(o) for o in self._orders.values()]

    def trades(self) -> list[Trade]:
        """Today's trades, oldest first."""
        return [_copy(t) for t in self._trades]

    # ------------------------------------------------------------------ actions

    def check_roll(self) -> Update | None:
        """Roll to a new trading day if the clock has crossed 20:00; None if nothing changed."""
        moment = self._clock()
        if moment < self._roll_at:
            return None
        batch = _Batch()
        self._roll(moment, batch)
        return self._finish(batch) if batch.rolled else None

    def send_order(self, req: OrderRequest) -> Update:
        """Accept or reject ``req`` and match it at once. ``Update.order_id`` names the order;
        its first event is the SUBMITTING snapshot, the last one the order's state now."""
        moment = self._clock()
        batch = _Batch()
        if moment >= self._roll_at:
            self._roll(moment, batch)
        order_id = self._new_id()
        order = Order(
            account_id=self.account_id,
            order_id=order_id,
            vt_symbol=req.vt_symbol,
            direction=req.direction,
            offset=req.offset,
            type=req.type,
            price=req.price,
            volume=req.volume,
            status=Status.SUBMITTING,
            datetime=moment,
            update_time=moment,
            reference=req.reference,
        )
        self._remember(order)
        batch.events.append(_copy(order))
        reason = self._accept(order, moment, batch)
        if reason is not None:
            order.status = Status.REJECTED
            order.status_msg = reason
            batch.events.append(_copy(order))
        return self._finish(batch, order_id)

    def cancel_order(self, order_id: str) -> Update:
        """Cancel a working order. Raises ``SimError`` (with a readable message and, if the
        order is known, its unchanged snapshot) for an unknown or finished order."""
        moment = self._clock()
        batch = _Batch()
        if moment >= self._roll_at:
            self._roll(moment, batch)
        w = self._working.get(order_id)
        if w is None:
            rolled = self._finish(batch) if batch.rolled else None
            if rolled is not None and any(e.order_id == order_id for e in rolled.events):
                return rolled  # the day just ended and expired it: that is the answer
            order = self._orders.get(order_id)
            if order is None:
                raise SimError(
                    f"cancel {order_id}: unknown order (not a working order of today)", update=rolled
                )
            raise SimError(
                f"cancel {order_id}: order is already {order.status.name}, nothing to cancel",
                _copy(order),
                update=rolled,
            )
        order = w.order
        order.status = Status.CANCELLED
        order.status_msg = "cancelled on request"
        order.update_time = moment
        self._retire(w, batch)
        batch.events.append(_copy(order))
        return self._finish(batch, order_id)

    def step(self, vt_symbol: str, quote: Tick | None = None) -> tuple[Tick, Update | None]:
        """Move the market of ``vt_symbol`` one step (or to the real ``quote`` of a paper
        account), fill crossed resting orders, and return the new quote plus an ``Update``
        if anything besides the quote changed."""
        moment = self._clock()
        batch: _Batch | None = None
        if moment >= self._roll_at:
            batch = _Batch()
            self._roll(moment, batch)
        market = self._markets[vt_symbol]
        if quote is None:
            market.advance()
        else:
            market.apply(quote)
        resting = self._working_by_symbol.get(vt_symbol)
        if resting:
            batch = batch or _Batch()
            self._match_resting(market, resting, moment, batch)
        tick = market.to_tick(moment, self.account_id)
        if batch is None or not (batch.events or batch.rolled):
            return tick, None
        return tick, self._finish(batch)

    # ------------------------------------------------------------------ persistence

    @property
    def generation(self) -> int:
        """The snapshot generation the current journal extends."""
        return self._generation

    def take_delta(self) -> StateDelta | None:
        """What changed since the last delta or snapshot, as one journal line; None when the
        change cannot be written as a delta (a trading-day roll): write a snapshot instead."""
        if self._needs_snapshot:
            return None
        positions, markets, working = self._positions, self._markets, self._working
        delta = StateDelta(
            trading_day=self.trading_day,
            next_id=self._next_id,
            pre_balance=self._pre_balance,
            close_pnl=self._close_pnl,
            commission=self._commission,
        )
        if self._dirty_markets:
            delta.markets = [markets[sym].record() for sym in self._dirty_markets]
            self._dirty_markets.clear()
        if self._dirty_positions:
            delta.positions = [
                _position_record(positions[k]) for k in self._dirty_positions if k in positions
            ]
            self._dirty_positions.clear()
        if self._dirty_orders:
            delta.working_orders = [_working_record(working[i]) for i in self._dirty_orders if i in working]
            delta.finished_orders = [i for i in self._dirty_orders if i not in working]
            self._dirty_orders.clear()
        if self._journaled_trades < len(self._trades):
            delta.trades = self._trades[self._journaled_trades :]
            self._journaled_trades = len(self._trades)
        return delta

    def to_state(self, *, new_generation: bool = False) -> ExchangeState:
        """The whole state, as a snapshot. ``new_generation`` starts a new journal generation
        (compaction); either way every change so far is in it, so nothing is left for
        ``take_delta``."""
        if new_generation:
            self._generation += 1
        self._dirty_positions.clear()
        self._dirty_orders.clear()
        self._dirty_markets.clear()
        self._journaled_trades = len(self._trades)
        self._needs_snapshot = False
        return ExchangeState(
            generation=self._generation,
            account_id=self.account_id,
            trading_day=self.trading_day,
            next_id=self._next_id,
            pre_balance=self._pre_balance,
            close_pnl=self._close_pnl,
            commission=self._commission,
            markets=[m.record() for m in self._markets.values()],
            positions=[_position_record(p) for p in self._positions.values()],
            working_orders=[_working_record(w) for w in self._working.values()],
            trades=list(self._trades),
            saved_at=self._clock(),
        )

    def _restore(self, state: ExchangeState) -> None:
        """Rebuild the books from ``state``; ``ValueError`` if it does not add up."""
        if state.account_id != self.account_id:
            raise ValueError(f"state belongs to account {state.account_id!r}, not {self.account_id!r}")
        self._generation = state.generation
        self._trading_day = parse_day(state.trading_day)
        # never below the clock-seeded value: if the last save was lost in a crash, ids issued
        # after it are still never reused (ids are issued far slower than 100,000 a second)
        self._next_id = max(state.next_id, _clock_seeded_id(self._clock()))
        self._pre_balance = state.pre_balance
        self._close_pnl = state.close_pnl
        self._commission = state.commission
        for rec in state.markets:
            self._markets[rec.vt_symbol] = Market.from_record(self._require(rec.vt_symbol), self.seed, rec)
        self._symbols = tuple(self._markets)
        for prec in state.positions:
            if not 0 <= prec.yd_volume <= prec.volume:
                raise ValueError(f"position {prec.vt_symbol} {prec.direction.name}: bad volumes")
            pos = _Position(self._require(prec.vt_symbol), prec.direction)
            pos.set_holding(prec.volume, prec.price)
            pos.yd_volume = prec.yd_volume
            self._positions[(prec.vt_symbol, prec.direction)] = pos
            self._market(pos.contract)
        for wrec in state.working_orders:
            order = wrec.order
            if not order.is_active:
                raise ValueError(f"working order {order.order_id} has status {order.status.name}")
            market = self._market(self._require(order.vt_symbol))
            limit = self._limit_ticks(order, market)
            w = _Working(order, market, limit)
            w.frozen_per_lot, w.yd_part, w.td_part = wrec.frozen_per_lot, wrec.yd_part, wrec.td_part
            if order.offset.is_close:
                pos = self._positions.get((order.vt_symbol, order.direction.opposite))
                if pos is None or w.yd_part + w.td_part != w.remaining:
                    raise ValueError(f"close order {order.order_id} holds lots of no position")
                pos.frozen += w.remaining
                pos.yd_frozen += w.yd_part
                if pos.yd_free < 0 or pos.td_free < 0:
                    raise ValueError(f"close orders on {order.vt_symbol} hold more than the position")
            self._orders[order.order_id] = order
            self._add_working(w)
        self._trades = list(state.trades)
        self._journaled_trades = len(self._trades)
        self._dirty_positions.clear()
        self._dirty_orders.clear()
        self._dirty_markets.clear()

    def _require(self, vt_symbol: str) -> Contract:
        contract = self._contract(vt_symbol)
        if contract is None:
            raise ValueError(f"state refers to {vt_symbol}, which the sim exchange does not list")
        return contract

    # ------------------------------------------------------------------ internals: books

    def _remember(self, order: Order) -> None:
        """Keep today's orders for lookups, but only the latest ``ORDER_MEMORY`` finished ones:
        an order flood must not grow memory without bound. Working orders are never dropped."""
        orders = self._orders
        orders[order.order_id] = order
        for _ in range(4):
            if len(orders) <= ORDER_MEMORY:
                break
            oldest = next(iter(orders))
            kept = orders.pop(oldest)
            if oldest in self._working:
                orders[oldest] = kept  # still working: move it to the young end

    def _new_id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    def _contract(self, vt_symbol: str) -> Contract | None:
        contract = self._contracts.get(vt_symbol)
        if contract is None:
            contract = get_contract(vt_symbol, self.account_id)
            if contract is not None:
                self._contracts[vt_symbol] = contract
        return contract

    def _market(self, contract: Contract) -> Market:
        market = self._markets.get(contract.vt_symbol)
        if market is None:
            spec = get_product(contract.vt_symbol)
            assert spec is not None
            market = Market.opening(contract, spec.base_price, self.seed)
            self._markets[contract.vt_symbol] = market
            self._symbols = (*self._symbols, contract.vt_symbol)
            self._dirty_markets[contract.vt_symbol] = None
        return market

    def _position(self, contract: Contract, direction: Direction) -> _Position:
        key = (contract.vt_symbol, direction)
        pos = self._positions.get(key)
        if pos is None:
            pos = self._positions[key] = _Position(contract, direction)
        return pos

    def _mark_to_market(self) -> tuple[float, float]:
        """(position P&L, margin) over every position, at the markets' last prices."""
        # the hot path of every account snapshot and funds check: inlined position_pnl
        pnl = margin = 0.0
        markets = self._markets
        for pos in self._positions.values():
            if pos.volume:
                m = markets[pos.vt_symbol]
                gain = (m.last * m.tick - pos.price) * pos.volume * m.size
                pnl += gain if pos.long else -gain
                margin += pos.margin
        return pnl, margin

    def _frozen(self) -> float:
        return self._frozen_total

    def _available(self) -> float:
        pnl, margin = self._mark_to_market()
        return self._pre_balance + self._close_pnl + pnl - self._commission - margin - self._frozen()

    def _snapshot(self, pos: _Position) -> Position:
        m = self._markets[pos.vt_symbol]
        last = m.price(m.last)
        return Position(
            account_id=self.account_id,
            vt_symbol=pos.vt_symbol,
            direction=pos.direction,
            volume=pos.volume,
            yd_volume=pos.yd_volume,
            frozen=pos.frozen,
            yd_frozen=pos.yd_frozen,
            price=pos.price,
            pnl=position_pnl(pos.direction, pos.price, last, pos.volume, m.size) if pos.volume else 0.0,
            last_price=last,
            margin=pos.margin,
        )

    def _finish(self, batch: _Batch, order_id: str = "") -> Update:
        positions = self._positions
        return Update(
            order_id=order_id,
            events=batch.events,
            positions=[self._snapshot(positions[key]) for key in batch.touched if key in positions],
            account=self.account() if batch.account or batch.rolled else None,
            rolled=batch.rolled,
        )

    def _add_working(self, w: _Working) -> None:
        self._working[w.order.order_id] = w
        self._dirty_orders[w.order.order_id] = None
        self._working_by_symbol.setdefault(w.order.vt_symbol, []).append(w)
        self._frozen_total += w.frozen_per_lot * w.remaining

    def _retire(self, w: _Working, batch: _Batch) -> None:
        """Take ``w`` off the book and release what it held."""
        order = w.order
        if self._working.pop(order.order_id, None) is not None:
            self._working_by_symbol[order.vt_symbol].remove(w)
            self._dirty_orders[order.order_id] = None
            # a fresh sum when nothing works any more, so float dust cannot accumulate
            self._frozen_total = self._frozen_total - w.frozen_per_lot * w.remaining if self._working else 0.0
        if order.offset.is_close and (w.yd_part or w.td_part):
            key = (order.vt_symbol, order.direction.opposite)
            pos = self._positions[key]
            pos.frozen -= w.yd_part + w.td_part
            pos.yd_frozen -= w.yd_part
            w.yd_part = w.td_part = 0
            batch.touched[key] = None
        w.remaining = 0
        batch.account = True

    # ------------------------------------------------------------------ internals: orders

    @staticmethod
    def _limit_ticks(order: Order, market: Market) -> int:
        if order.type is OrderType.MARKET:
            return market.up if order.direction is Direction.LONG else market.down
        return round(order.price / market.tick)

    def _accept(self, order: Order, moment: datetime, batch: _Batch) -> str | None:
        """Check ``order``; if it is acceptable, freeze what it needs and match it. Returns
        the rejection reason, or None once the order is accepted."""
        vt_symbol = order.vt_symbol
        contract = self._contract(vt_symbol)
        if contract is None:
            return unknown_reason(vt_symbol)
        if order.type is OrderType.STOP:
            return "STOP orders are not supported: the sim exchange has no native stop orders"
        if order.direction not in (Direction.LONG, Direction.SHORT):
            return f"direction {order.direction.name} is not valid for an order (use LONG or SHORT)"
        if order.offset is Offset.NONE:
            return "offset NONE is not valid for futures (use OPEN, CLOSE, CLOSETODAY or CLOSEYESTERDAY)"
        volume = order.volume
        if not math.isfinite(volume) or volume <= 0:
            return f"volume must be a positive whole number of lots, got {_num(volume)}"
        if volume != int(volume):
            return f"volume {_num(volume)} is not a whole number of lots"
        lots = int(volume)
        market = self._market(contract)
        fmt = market.dec
        if order.type is not OrderType.MARKET:
            price = order.price
            if not math.isfinite(price) or price <= 0:
                return f"price must be a positive number, got {_num(price)}"
            if not on_tick_grid(price, contract.pricetick):
                return (
                    f"price {_num(price)} is not on the {_num(contract.pricetick)} tick grid of {vt_symbol}"
                )
            ticks = round(price / market.tick)
            if ticks > market.up:
                return f"price {price:.{fmt}f} above limit-up {market.price(market.up):.{fmt}f}"
            if ticks < market.down:
                return f"price {price:.{fmt}f} below limit-down {market.price(market.down):.{fmt}f}"
        w = _Working(order, market, self._limit_ticks(order, market))
        if order.offset is Offset.OPEN:
            reason = self._freeze_funds(w, lots)
        else:
            reason = self._freeze_position(w, lots, batch)
        if reason is not None:
            return reason
        batch.account = True
        self._match_new(w, moment, batch)
        return None

    def _freeze_funds(self, w: _Working, lots: int) -> str | None:
        """Reserve margin + fee for an opening order, priced at the worst fill it can get.

        Buys fill at or below their limit; sells at or above theirs (at most the best bid right
        now, or the limit price itself when resting); a MARKET order only takes today's book.
        The immediate mark-to-market loss of filling away from the last price is checked too,
        so accepting an order can never drive ``available`` below zero.
        """
        m, c = w.market, w.contract
        if w.order.type is OrderType.MARKET:
            if w.buy:
                levels = [m.ask1 + i for i in range(LEVELS) if m.ask_vol[i] > 0]
                high = low = levels[-1] if levels else m.ask1
            else:
                levels = [m.bid1 - i for i in range(LEVELS) if m.bid_vol[i] > 0]
                high, low = m.bid1, levels[-1] if levels else m.bid1
        elif w.buy:
            high = low = w.limit
        else:
            high, low = max(w.limit, m.bid1), w.limit
        worst = m.price(high)
        per_lot = c.margin(worst, 1) + c.commission(worst, 1, Offset.OPEN)
        move = (high - m.last) if w.buy else (m.last - low)
        adverse = max(0, move) * m.tick * m.size
        need = (per_lot + adverse) * lots
        available = self._available()
        if need > available + 1e-6:
            detail = (
                f" (incl. {adverse * lots:,.2f} marked to last {m.price(m.last):.{m.dec}f})"
                if adverse
                else ""
            )
            return f"insufficient funds: needs {need:,.2f} margin+fee{detail}, available {available:,.2f}"
        w.frozen_per_lot = per_lot
        return None

    def _freeze_position(self, w: _Working, lots: int, batch: _Batch) -> str | None:
        """Hold the lots a close order will close, by the exchange's close-today rules."""
        order = w.order
        side = order.direction.opposite
        key = (order.vt_symbol, side)
        pos = self._positions.get(key)
        yd_free = pos.yd_free if pos is not None else 0
        td_free = pos.td_free if pos is not None else 0
        where = f"{side.name.lower()} {order.vt_symbol}"
        if w.contract.exchange.has_close_today:
            if order.offset is Offset.CLOSETODAY:
                if lots > td_free:
                    hint = f"; yesterday's {yd_free} close with CLOSE/CLOSEYESTERDAY" if yd_free else ""
                    return f"close-today {lots} > closable today {td_free} ({where}){hint}"
                yd_part, td_part = 0, lots
            else:
                if lots > yd_free:
                    hint = f"; today's {td_free} close only with CLOSETODAY" if td_free else ""
                    return f"close {lots} > closable {yd_free} ({where}, yesterday's volume){hint}"
                yd_part, td_part = lots, 0
        else:
            # other exchanges close yesterday's lots first, whatever close offset is used
            closable = yd_free + td_free
            if lots > closable:
                return f"close {lots} > closable {closable} ({where})"
            yd_part = min(lots, yd_free)
            td_part = lots - yd_part
        assert pos is not None
        pos.frozen += lots
        pos.yd_frozen += yd_part
        w.yd_part, w.td_part = yd_part, td_part
        batch.touched[key] = None
        return None

    def _match_new(self, w: _Working, moment: datetime, batch: _Batch) -> None:
        """Match a just-accepted order against the book, then rest or cancel what is left."""
        order, m = w.order, w.market
        if w.buy:
            base, sign, vols = m.ask1, 1, m.ask_vol
        else:
            base, sign, vols = m.bid1, -1, m.bid_vol
        limit = w.limit
        if order.type is OrderType.FOK:
            available = 0
            for i in range(LEVELS):
                price = base + sign * i
                if (price > limit) if w.buy else (price < limit):
                    break
                available += vols[i]
            if available < w.remaining:
                order.status = Status.CANCELLED
                order.status_msg = (
                    f"FOK cancelled: only {available} of {w.remaining} lots available at "
                    f"{m.price(limit):.{m.dec}f} or better; nothing filled"
                )
                order.update_time = moment
                self._retire(w, batch)
                batch.events.append(_copy(order))
                return
        for i in range(LEVELS):
            if not w.remaining:
                break
            price = base + sign * i
            if (price > limit) if w.buy else (price < limit):
                break  # never through the limit price
            lots = min(vols[i], w.remaining)
            if lots > 0:
                vols[i] -= lots
                self._fill(w, price, lots, moment, batch)
        if w.remaining and order.type is OrderType.LIMIT:
            if not order.traded:
                order.status = Status.NOTTRADED
            self._add_working(w)
        elif w.remaining:
            left, total = w.remaining, int(order.volume)
            if order.type is OrderType.MARKET:
                order.status_msg = (
                    f"MARKET remainder cancelled: {left} of {total} lots found no opposite volume "
                    "within the price limits"
                )
            else:
                order.status_msg = (
                    f"FAK remainder cancelled: {left} of {total} lots unfilled at "
                    f"{m.price(limit):.{m.dec}f} or better"
                )
            order.status = Status.CANCELLED
            order.update_time = moment
            self._retire(w, batch)
        batch.events.append(_copy(order))

    def _match_resting(self, m: Market, resting: list[_Working], moment: datetime, batch: _Batch) -> None:
        """Fill resting orders the new book crosses: at their own limit price, for at most the
        opposite level-1 volume, best price first, then oldest first."""
        crossing = [w for w in resting if (w.limit >= m.ask1 if w.buy else w.limit <= m.bid1)]
        if not crossing:
            return
        crossing.sort(key=lambda w: (-w.limit if w.buy else w.limit, int(w.order.order_id)))
        for w in crossing:
            vols = m.ask_vol if w.buy else m.bid_vol
            lots = min(vols[0], w.remaining)
            if lots <= 0:
                continue
            vols[0] -= lots
            self._fill(w, w.limit, lots, moment, batch)
            if not w.remaining:
                self._retire(w, batch)
            batch.events.append(_copy(w.order))

    def _fill(self, w: _Working, price_ticks: int, lots: int, moment: datetime, batch: _Batch) -> None:
        """Book one fill: position, cash, order progress, and the trade event."""
        order, c, m = w.order, w.contract, w.market
        price = m.price(price_ticks)
        if order.offset is Offset.OPEN:
            pos = self._position(c, order.direction)
            total = pos.volume + lots
            pos.set_holding(total, (pos.price * pos.volume + price * lots) / total)
            fee = c.commission(price, lots, Offset.OPEN)
        else:
            pos = self._positions[(order.vt_symbol, order.direction.opposite)]
            from_yd = min(lots, w.yd_part)
            from_td = lots - from_yd
            w.yd_part -= from_yd
            w.td_part -= from_td
            self._close_pnl += position_pnl(pos.direction, pos.price, price, lots, c.size)
            pos.set_holding(pos.volume - lots, pos.price)
            pos.yd_volume -= from_yd
            pos.frozen -= lots
            pos.yd_frozen -= from_yd
            # closing today's lots costs the close-today fee on every exchange that has one
            fee = c.commission(price, from_yd, Offset.CLOSE) + c.commission(price, from_td, Offset.CLOSETODAY)
        self._commission += fee
        traded = order.traded + lots
        order.traded_price = (order.traded_price * order.traded + price * lots) / traded
        order.traded = traded
        order.status = Status.ALLTRADED if traded >= order.volume else Status.PARTTRADED
        order.update_time = moment
        w.remaining -= lots
        if order.order_id in self._working:
            self._frozen_total -= w.frozen_per_lot * lots
            self._dirty_orders[order.order_id] = None
        trade = Trade(
            account_id=self.account_id,
            trade_id=self._new_id(),
            order_id=order.order_id,
            vt_symbol=order.vt_symbol,
            direction=order.direction,
            offset=order.offset,
            price=price,
            volume=lots,
            datetime=moment,
            commission=fee,
            reference=order.reference,
        )
        self._trades.append(trade)
        batch.events.append(_copy(trade))
        key = (pos.vt_symbol, pos.direction)
        batch.touched[key] = None
        batch.account = True
        self._dirty_positions[key] = None
        self._dirty_markets[pos.vt_symbol] = None  # keep the position's last price fresh on disk

    # ------------------------------------------------------------------ internals: the roll

    def _roll(self, moment: datetime, batch: _Batch) -> None:
        """End the trading day: expire working orders, settle at the last prices, move today's
        lots to yesterday's and start the day's counters afresh."""
        new_day = trading_day_of(moment)
        if new_day <= self._trading_day:  # the clock went backwards: keep the day we have
            self._roll_at = trading_day_end(self._trading_day)
            return
        ended = self.trading_day
        for w in list(self._working.values()):
            order = w.order
            order.status = Status.CANCELLED
            order.status_msg = f"expired at end of trading day {ended}"
            order.update_time = moment
            self._retire(w, batch)
            batch.events.append(_copy(order))
        pnl, _ = self._mark_to_market()
        self._pre_balance += self._close_pnl + pnl - self._commission
        self._close_pnl = 0.0
        self._commission = 0.0
        for key, pos in list(self._positions.items()):
            if not pos.volume:
                del self._positions[key]
                continue
            m = self._markets[pos.vt_symbol]
            pos.set_holding(pos.volume, m.price(m.last))  # settle: cost basis = settlement price
            pos.yd_volume = pos.volume
            batch.touched[key] = None
        for m in self._markets.values():
            m.new_day()
        self._orders.clear()
        self._trades.clear()
        self._trading_day = new_day
        self._trading_day_text = format_day(new_day)
        self._roll_at = trading_day_end(new_day)
        self._needs_snapshot = True
        batch.rolled = True
        batch.account = True


def _position_record(pos: _Position) -> PositionRecord:
    return PositionRecord(
        vt_symbol=pos.vt_symbol,
        direction=pos.direction,
        volume=pos.volume,
        yd_volume=pos.yd_volume,
        price=pos.price,
    )


def _working_record(w: _Working) -> WorkingOrderRecord:
    return WorkingOrderRecord(
        order=_copy(w.order), frozen_per_lot=w.frozen_per_lot, yd_part=w.yd_part, td_part=w.td_part
    )
