"""The simulated exchange and broker: a pure, deterministic engine.

``SimExchange`` is one account at a little exchange. It owns a market per contract
(``gateways/sim_market.py``), matches orders against those books by the exchange's rules
(``gateways/sim_matching.py``) and keeps the broker's books (``gateways/sim_books.py``): account
funds, positions with yesterday/today volume, working orders and today's trades. It does no
asyncio and no I/O; time comes from an injected clock, and its state goes to and comes from the
records of ``gateways/sim_journal.py`` (``to_state`` / ``take_delta`` / ``state=``).
``gateways/sim.py`` adapts it to the ``Gateway`` interface.

Every call that changes the books returns an ``Update``: the order and trade events in the order
they happened (an order's trades come *before* the order update that counts them), then
snapshots of the positions it touched and of the account. Every object in an ``Update`` is a
fresh copy the engine never touches again, so receivers may keep or mutate it.

Rejections carry readable reasons: bad price tick, outside the price limits, insufficient funds,
insufficient closable position by the SHFE/INE close-today rules. At the trading-day change
(20:00 China time) working orders expire, positions settle and roll to yesterday's lots.

With ``sessions`` (the account's ``sim.sessions``) the exchange keeps the trading sessions of
``core/sessions.py``: outside them a market does not move and nothing matches; an order on a
closed market is rejected with the next open time; in the call auction a limit order is taken
and rests until the open (any other type is rejected).
"""

from __future__ import annotations

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
)
from core.sessions import MarketState, closed_reason, state_at, table_of, trading_day_end, trading_day_of
from gateways.sim_books import BookPosition, Books, PositionKey
from gateways.sim_contracts import get_contract, get_product, unknown_reason
from gateways.sim_journal import ExchangeState, StateDelta, WorkingOrderRecord
from gateways.sim_market import Market, format_day, parse_day
from gateways.sim_matching import (
    WorkingOrder,
    close_split,
    crossed,
    opening_cost,
    order_problem,
    price_problem,
    take_new,
    take_resting,
    volume_within_limit,
)

ORDER_MEMORY = 20_000  # finished orders of today kept for lookups (get_order, cancel messages)

_copy = msgspec.structs.replace  # a shallow copy; every field of our structs is immutable


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
    touched: dict[PositionKey, None] = field(default_factory=dict)
    account: bool = False
    rolled: bool = False


class SimExchange:
    """One account at the simulated exchange: markets, matching and the broker's books.

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
        sessions: bool = False,
    ) -> None:
        self.account_id = account_id
        self.seed = seed
        self._clock = clock
        self.sessions = sessions
        #: per contract: (state, from, until) as last computed; states change at known instants
        self._states: dict[str, tuple[MarketState, datetime, datetime]] = {}
        self._contracts: dict[str, Contract] = {}
        self._markets: dict[str, Market] = {}  # shared with the books: never rebound
        self._symbols: tuple[str, ...] = ()
        self._books = Books(account_id, self._markets, initial_balance)
        self._orders: dict[str, Order] = {}  # today's orders, every status
        self._working: dict[str, WorkingOrder] = {}
        self._working_by_symbol: dict[str, list[WorkingOrder]] = {}
        self._trades: list[Trade] = []
        # what changed since the last delta or snapshot (see take_delta)
        self._generation = 0
        self._dirty_positions: dict[PositionKey, None] = {}
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

    def market_state(self, vt_symbol: str) -> MarketState | None:
        """The session state of ``vt_symbol``'s market now; None when the exchange does not
        keep sessions (or has no table for the product): then it is always open."""
        if not self.sessions:
            return None
        moment = self._clock()
        cached = self._states.get(vt_symbol)
        if cached is not None and cached[1] <= moment < cached[2]:
            return cached[0]
        table = table_of(vt_symbol)
        if table is None:
            return None
        state, until = state_at(table, moment)
        self._states[vt_symbol] = (state, moment, until)
        return state

    def trading(self, vt_symbol: str) -> bool:
        """Whether ``vt_symbol``'s market moves and matches now (always, without sessions)."""
        return self.market_state(vt_symbol) in (None, MarketState.OPEN, MarketState.NIGHT)

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
        return self._books.account(self.trading_day, self._clock())

    def positions(self) -> list[Position]:
        """Every position of today, flat ones included (a flat one was closed today)."""
        books = self._books
        return [books.snapshot(pos) for pos in books.positions.values()]

    def position(self, vt_symbol: str, direction: Direction) -> Position | None:
        pos = self._books.positions.get((vt_symbol, direction))
        return self._books.snapshot(pos) if pos is not None else None

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
        order = req.order(self.account_id, order_id, Status.SUBMITTING, moment)
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
        if not self.trading(vt_symbol):  # between sessions: nothing moves, nothing matches
            tick = market.to_tick(moment, self.account_id)
            return tick, (self._finish(batch) if batch is not None and batch.rolled else None)
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
        books, markets, working = self._books, self._markets, self._working
        positions = books.positions
        delta = StateDelta(
            trading_day=self.trading_day,
            next_id=self._next_id,
            pre_balance=books.pre_balance,
            close_pnl=books.close_pnl,
            commission=books.commission,
        )
        if self._dirty_markets:
            delta.markets = [markets[sym].record() for sym in self._dirty_markets]
            self._dirty_markets.clear()
        if self._dirty_positions:
            delta.positions = [positions[k].record() for k in self._dirty_positions if k in positions]
            self._dirty_positions.clear()
        if self._dirty_orders:
            delta.working_orders = [working[i].record() for i in self._dirty_orders if i in working]
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
        books = self._books
        return ExchangeState(
            generation=self._generation,
            account_id=self.account_id,
            trading_day=self.trading_day,
            next_id=self._next_id,
            pre_balance=books.pre_balance,
            close_pnl=books.close_pnl,
            commission=books.commission,
            markets=[m.record() for m in self._markets.values()],
            positions=[p.record() for p in books.positions.values()],
            working_orders=[w.record() for w in self._working.values()],
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
        books = self._books
        books.pre_balance = state.pre_balance
        books.close_pnl = state.close_pnl
        books.commission = state.commission
        for rec in state.markets:
            self._markets[rec.vt_symbol] = Market.from_record(self._require(rec.vt_symbol), self.seed, rec)
        self._symbols = tuple(self._markets)
        for prec in state.positions:
            pos = books.restore_position(prec, self._require)
            self._market(pos.contract)
        for wrec in state.working_orders:
            self._restore_working(wrec)
        self._trades = list(state.trades)
        self._journaled_trades = len(self._trades)
        self._dirty_positions.clear()
        self._dirty_orders.clear()
        self._dirty_markets.clear()

    def _restore_working(self, wrec: WorkingOrderRecord) -> None:
        """Put back a saved working order and what it holds; ``ValueError`` if that does not
        add up with the restored positions."""
        order = wrec.order
        if not order.is_active:
            raise ValueError(f"working order {order.order_id} has status {order.status.name}")
        w = WorkingOrder(order, self._market(self._require(order.vt_symbol)))
        w.frozen_per_lot, w.yd_part, w.td_part = wrec.frozen_per_lot, wrec.yd_part, wrec.td_part
        if order.offset.is_close:
            pos = self._books.positions.get((order.vt_symbol, order.direction.opposite))
            if pos is None or w.yd_part + w.td_part != w.remaining:
                raise ValueError(f"close order {order.order_id} holds lots of no position")
            pos.frozen += w.remaining
            pos.yd_frozen += w.yd_part
            if pos.yd_free < 0 or pos.td_free < 0:
                raise ValueError(f"close orders on {order.vt_symbol} hold more than the position")
        self._orders[order.order_id] = order
        self._add_working(w)

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

    def _finish(self, batch: _Batch, order_id: str = "") -> Update:
        books = self._books
        positions = books.positions
        return Update(
            order_id=order_id,
            events=batch.events,
            positions=[books.snapshot(positions[key]) for key in batch.touched if key in positions],
            account=self.account() if batch.account or batch.rolled else None,
            rolled=batch.rolled,
        )

    def _add_working(self, w: WorkingOrder) -> None:
        self._working[w.order.order_id] = w
        self._dirty_orders[w.order.order_id] = None
        self._working_by_symbol.setdefault(w.order.vt_symbol, []).append(w)
        self._books.frozen += w.frozen_per_lot * w.remaining

    def _retire(self, w: WorkingOrder, batch: _Batch) -> None:
        """Take ``w`` off the book and release what it held."""
        order, books = w.order, self._books
        if self._working.pop(order.order_id, None) is not None:
            self._working_by_symbol[order.vt_symbol].remove(w)
            self._dirty_orders[order.order_id] = None
            # a fresh sum when nothing works any more, so float dust cannot accumulate
            books.frozen = books.frozen - w.frozen_per_lot * w.remaining if self._working else 0.0
        if order.offset.is_close and (w.yd_part or w.td_part):
            key = (order.vt_symbol, order.direction.opposite)
            pos = books.positions[key]
            pos.frozen -= w.yd_part + w.td_part
            pos.yd_frozen -= w.yd_part
            w.yd_part = w.td_part = 0
            batch.touched[key] = None
        w.remaining = 0
        batch.account = True

    # ------------------------------------------------------------------ internals: orders

    def _accept(self, order: Order, moment: datetime, batch: _Batch) -> str | None:
        """Check ``order``; if it is acceptable, freeze what it needs and match it. Returns
        the rejection reason, or None once the order is accepted."""
        contract = self._contract(order.vt_symbol)
        if contract is None:
            return unknown_reason(order.vt_symbol)
        reason = order_problem(order)
        if reason is not None:
            return reason
        state = self.market_state(order.vt_symbol)
        if state is MarketState.CLOSED:
            return closed_reason(order.vt_symbol, moment) or "market closed"
        if state is MarketState.AUCTION and order.type is not OrderType.LIMIT:
            return f"call auction: only limit orders are taken before the open, not {order.type.name}"
        market = self._market(contract)  # only now: a malformed order opens no market
        reason = price_problem(order, contract, market)
        if reason is not None:
            return reason
        w = WorkingOrder(order, market)
        lots = int(order.volume)
        if order.offset is Offset.OPEN:
            reason = self._freeze_funds(w, lots)
        else:
            reason = self._freeze_position(w, lots, batch)
        if reason is not None:
            return reason
        batch.account = True
        if state is MarketState.AUCTION:  # taken, matched from the open on
            order.status = Status.NOTTRADED
            self._add_working(w)
            batch.events.append(_copy(order))
            return None
        self._match_new(w, moment, batch)
        return None

    def _freeze_funds(self, w: WorkingOrder, lots: int) -> str | None:
        """Reserve margin + fee for an opening order, priced at the worst fill it can get (see
        ``opening_cost``): accepting an order never drives ``available`` below zero."""
        per_lot, adverse = opening_cost(w)
        need = (per_lot + adverse) * lots
        available = self._books.available()
        if need > available + 1e-6:
            m = w.market
            detail = (
                f" (incl. {adverse * lots:,.2f} marked to last {m.price(m.last):.{m.dec}f})"
                if adverse
                else ""
            )
            return f"insufficient funds: needs {need:,.2f} margin+fee{detail}, available {available:,.2f}"
        w.frozen_per_lot = per_lot
        return None

    def _freeze_position(self, w: WorkingOrder, lots: int, batch: _Batch) -> str | None:
        """Hold the lots a close order will close (see ``close_split``)."""
        order = w.order
        key = (order.vt_symbol, order.direction.opposite)
        pos = self._books.positions.get(key)
        split = close_split(
            w, lots, pos.yd_free if pos is not None else 0, pos.td_free if pos is not None else 0
        )
        if isinstance(split, str):
            return split
        assert pos is not None
        yd_part, td_part = split
        pos.frozen += lots
        pos.yd_frozen += yd_part
        w.yd_part, w.td_part = yd_part, td_part
        batch.touched[key] = None
        return None

    def _match_new(self, w: WorkingOrder, moment: datetime, batch: _Batch) -> None:
        """Match a just-accepted order against the book, then rest or cancel what is left."""
        order, m = w.order, w.market
        if order.type is OrderType.FOK:
            available = volume_within_limit(w)
            if available < w.remaining:
                order.status = Status.CANCELLED
                order.status_msg = (
                    f"FOK cancelled: only {available} of {w.remaining} lots available at "
                    f"{m.price(w.limit):.{m.dec}f} or better; nothing filled"
                )
                order.update_time = moment
                self._retire(w, batch)
                batch.events.append(_copy(order))
                return
        for price, lots in take_new(w):
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
                    f"{m.price(w.limit):.{m.dec}f} or better"
                )
            order.status = Status.CANCELLED
            order.update_time = moment
            self._retire(w, batch)
        batch.events.append(_copy(order))

    def _match_resting(self, m: Market, resting: list[WorkingOrder], moment: datetime, batch: _Batch) -> None:
        """Fill resting orders the new book crosses: at their own limit price, for at most the
        opposite level-1 volume, best price first, then oldest first."""
        for w in crossed(m, resting):
            lots = take_resting(w)
            if lots <= 0:
                continue
            self._fill(w, w.limit, lots, moment, batch)
            if not w.remaining:
                self._retire(w, batch)
            batch.events.append(_copy(w.order))

    def _fill(self, w: WorkingOrder, price_ticks: int, lots: int, moment: datetime, batch: _Batch) -> None:
        """Book one fill: position, cash, order progress, and the trade event."""
        order, c, books = w.order, w.contract, self._books
        price = w.market.price(price_ticks)
        pos: BookPosition
        if order.offset is Offset.OPEN:
            pos, fee = books.fill_open(c, order.direction, price, lots)
        else:
            pos = books.positions[(order.vt_symbol, order.direction.opposite)]
            from_yd = min(lots, w.yd_part)
            w.yd_part -= from_yd
            w.td_part -= lots - from_yd
            fee = books.fill_close(pos, price, lots, from_yd)
        traded = order.traded + lots
        order.traded_price = (order.traded_price * order.traded + price * lots) / traded
        order.traded = traded
        order.status = Status.ALLTRADED if traded >= order.volume else Status.PARTTRADED
        order.update_time = moment
        w.remaining -= lots
        if order.order_id in self._working:
            books.frozen -= w.frozen_per_lot * lots
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
        for key in self._books.settle():
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
