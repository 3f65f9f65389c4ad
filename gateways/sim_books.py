"""The broker's books of one sim account: funds and positions, marked to market daily.

Accounting follows the CTP convention of daily mark-to-market (逐日盯市). Within one trading
day::

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

The matching engine (``gateways/sim_exchange.py``) decides what is held and filled; these books
do the arithmetic and hand out snapshots. Last prices come from the engine's markets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from core.models import Account, Contract, Direction, Offset, Position, position_pnl
from gateways.sim_journal import PositionRecord
from gateways.sim_market import Market

PositionKey = tuple[str, Direction]  # (vt_symbol, direction)


class BookPosition:
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

    def record(self) -> PositionRecord:
        return PositionRecord(
            vt_symbol=self.vt_symbol,
            direction=self.direction,
            volume=self.volume,
            yd_volume=self.yd_volume,
            price=self.price,
        )


class Books:
    """One account's funds and positions. ``markets`` is the engine's own (live) mapping of
    open markets, read for last prices; every position's contract has a market in it."""

    def __init__(self, account_id: str, markets: Mapping[str, Market], pre_balance: float) -> None:
        self.account_id = account_id
        self._markets = markets
        self.positions: dict[PositionKey, BookPosition] = {}
        self.pre_balance = float(pre_balance)
        self.close_pnl = 0.0
        self.commission = 0.0
        self.frozen = 0.0  # margin + fee held by working opening orders (kept incrementally)

    def position(self, contract: Contract, direction: Direction) -> BookPosition:
        """The position in ``contract`` on ``direction``, opened (flat) if there is none."""
        key = (contract.vt_symbol, direction)
        pos = self.positions.get(key)
        if pos is None:
            pos = self.positions[key] = BookPosition(contract, direction)
        return pos

    def restore_position(self, rec: PositionRecord, contract_of: Callable[[str], Contract]) -> BookPosition:
        """Put back a saved position; ``ValueError`` if its volumes do not add up (or, from
        ``contract_of``, if its contract is unknown)."""
        if not 0 <= rec.yd_volume <= rec.volume:
            raise ValueError(f"position {rec.vt_symbol} {rec.direction.name}: bad volumes")
        pos = BookPosition(contract_of(rec.vt_symbol), rec.direction)
        pos.set_holding(rec.volume, rec.price)
        pos.yd_volume = rec.yd_volume
        self.positions[(rec.vt_symbol, rec.direction)] = pos
        return pos

    # ------------------------------------------------------------------ valuation

    def mark_to_market(self) -> tuple[float, float]:
        """(position P&L, margin) over every position, at the markets' last prices."""
        # the hot path of every account snapshot and funds check: inlined position_pnl
        pnl = margin = 0.0
        markets = self._markets
        for pos in self.positions.values():
            if pos.volume:
                m = markets[pos.vt_symbol]
                gain = (m.last * m.tick - pos.price) * pos.volume * m.size
                pnl += gain if pos.long else -gain
                margin += pos.margin
        return pnl, margin

    def available(self) -> float:
        pnl, margin = self.mark_to_market()
        return self.pre_balance + self.close_pnl + pnl - self.commission - margin - self.frozen

    def account(self, trading_day: str, moment: datetime) -> Account:
        pnl, margin = self.mark_to_market()
        frozen = self.frozen
        balance = self.pre_balance + self.close_pnl + pnl - self.commission
        return Account(
            account_id=self.account_id,
            balance=balance,
            available=balance - margin - frozen,
            margin=margin,
            frozen=frozen,
            commission=self.commission,
            close_pnl=self.close_pnl,
            position_pnl=pnl,
            pre_balance=self.pre_balance,
            trading_day=trading_day,
            datetime=moment,
        )

    def snapshot(self, pos: BookPosition) -> Position:
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

    # ------------------------------------------------------------------ fills and the roll

    def fill_open(
        self, contract: Contract, direction: Direction, price: float, lots: int
    ) -> tuple[BookPosition, float]:
        """Book ``lots`` opened at ``price``: the new average cost, and the fee (returned)."""
        pos = self.position(contract, direction)
        total = pos.volume + lots
        pos.set_holding(total, (pos.price * pos.volume + price * lots) / total)
        fee = contract.commission(price, lots, Offset.OPEN)
        self.commission += fee
        return pos, fee

    def fill_close(self, pos: BookPosition, price: float, lots: int, from_yd: int) -> float:
        """Book ``lots`` of ``pos`` closed at ``price``, ``from_yd`` of them yesterday's (all of
        them held by the close order): the realised P&L, and the fee (returned)."""
        c = pos.contract
        from_td = lots - from_yd
        self.close_pnl += position_pnl(pos.direction, pos.price, price, lots, c.size)
        pos.set_holding(pos.volume - lots, pos.price)
        pos.yd_volume -= from_yd
        pos.frozen -= lots
        pos.yd_frozen -= from_yd
        # closing today's lots costs the close-today fee on every exchange that has one
        fee = c.commission(price, from_yd, Offset.CLOSE) + c.commission(price, from_td, Offset.CLOSETODAY)
        self.commission += fee
        return fee

    def settle(self) -> list[PositionKey]:
        """End the trading day at the markets' last prices (working orders already gone): the
        balance becomes tomorrow's ``pre_balance``, every open position's cost basis the
        settlement price and all its lots yesterday's; flat positions are dropped. Returns the
        positions still held."""
        pnl, _ = self.mark_to_market()
        self.pre_balance += self.close_pnl + pnl - self.commission
        self.close_pnl = 0.0
        self.commission = 0.0
        held = []
        for key, pos in list(self.positions.items()):
            if not pos.volume:
                del self.positions[key]
                continue
            m = self._markets[pos.vt_symbol]
            pos.set_holding(pos.volume, m.price(m.last))  # settle: cost basis = settlement price
            pos.yd_volume = pos.volume
            held.append(key)
        return held
