"""The sim's market of one contract, and the trading-day calendar it lives by.

A ``Market`` is a seeded random walk on the contract's price-tick grid with a five-level book
each side (or, for a paper account, a real quote from another venue: its levels that fall on
the five ticks each side of its best prices). Prices are kept
as whole numbers of ticks, so every price it produces is on the grid by construction, and the
walk is reflected inside the limit-up/limit-down band drawn from the previous settlement. The
walk is reseeded from ``(seed, contract, step count)``, so a market reloaded from its
``MarketRecord`` continues exactly as it would have without the restart, and the same seed gives
the same market in every process (``stable_hash``, never ``hash()``).

The matching engine (``gateways/sim_exchange.py``) owns the markets: it takes volume from a
market's book when orders fill (taken volume stays taken until the next step redraws the book)
and moves the markets one step at a time.
"""

from __future__ import annotations

import hashlib
import math
import random
from datetime import date, datetime

from core.models import DEPTH_LEVELS, Contract, Tick, depth_fields
from gateways.sim_journal import MarketRecord

LEVELS = DEPTH_LEVELS  # depth of the book, each side: five, as a tick carries


def stable_hash(text: str) -> int:
    """A 64-bit hash of ``text`` that is the same in every process (unlike ``hash()``)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


# ====================================================================== trading-day calendar


def format_day(day: date) -> str:
    """``date(2026, 11, 20)`` -> ``"20261120"`` (CTP's spelling of a trading day)."""
    return day.strftime("%Y%m%d")


def parse_day(text: str) -> date:
    """``"20261120"`` -> ``date(2026, 11, 20)``, the inverse of ``format_day``."""
    return datetime.strptime(text, "%Y%m%d").date()


# ====================================================================== the market


class Market:
    """One contract's market: last price, day statistics, price limits and the book, in ticks."""

    __slots__ = (
        "ask1",
        "ask_vol",
        "bid1",
        "bid_vol",
        "contract",
        "dec",
        "down",
        "high",
        "last",
        "last_volume",
        "low",
        "open",
        "open_interest",
        "pre_close",
        "pre_settlement",
        "rand",
        "size",
        "steps",
        "tick",
        "turnover",
        "up",
        "volume",
        "vt_symbol",
    )

    def __init__(self, contract: Contract, seed: int, last: int, steps: int = 0) -> None:
        self.contract = contract
        self.vt_symbol = contract.vt_symbol
        self.tick = contract.pricetick
        self.dec = contract.decimals
        self.size = contract.size
        self.steps = steps
        # reseeded from the step count so a reloaded market continues deterministically
        self.rand = random.Random(stable_hash(f"{seed}|{self.vt_symbol}|{steps}")).random
        self.last = last
        self.pre_settlement = last
        self.pre_close = last
        self.open = self.high = self.low = last
        self.volume = 0
        self.turnover = 0.0
        self.open_interest = 0.0
        self.last_volume = 0
        self.up = self.down = 0
        self.bid1 = self.ask1 = last
        self.bid_vol = [0] * LEVELS
        self.ask_vol = [0] * LEVELS
        self.set_limits()
        self.draw_book()

    @classmethod
    def opening(cls, contract: Contract, base_price: float, seed: int) -> Market:
        """A contract's market on its first day in this account: each month starts a little
        away from its product's ``base_price``, reproducibly for a given seed."""
        h = stable_hash(f"{seed}|{contract.vt_symbol}|start")
        start = base_price * (1.0 + 0.04 * ((h & 0xFFFF) / 0xFFFF - 0.5))
        market = cls(contract, seed, round(start / contract.pricetick))
        market.open_interest = float(20_000 + (h >> 16) % 180_000)
        return market

    @classmethod
    def from_record(cls, contract: Contract, seed: int, rec: MarketRecord) -> Market:
        """The market as it was saved in ``rec``; its book is drawn afresh."""
        m = cls(contract, seed, round(rec.last_price / contract.pricetick), rec.steps)
        ticks = contract.pricetick
        m.pre_settlement = round(rec.pre_settlement / ticks)
        m.pre_close = round(rec.pre_close / ticks)
        m.open, m.high, m.low = (round(x / ticks) for x in (rec.open_price, rec.high_price, rec.low_price))
        m.volume, m.turnover, m.open_interest = int(rec.volume), rec.turnover, rec.open_interest
        m.set_limits()
        m.draw_book()
        return m

    def price(self, ticks: int) -> float:
        return round(ticks * self.tick, self.dec)

    def set_limits(self) -> None:
        """limit-up/down = pre-settlement x (1 +- limit_pct), rounded inward to the grid."""
        pct = self.contract.limit_pct
        if pct <= 0:
            self.up, self.down = 1 << 62, 1
            return
        base = self.pre_settlement * self.tick
        self.up = math.floor(base * (1 + pct) / self.tick + 1e-9)
        self.down = max(1, math.ceil(base * (1 - pct) / self.tick - 1e-9))

    def draw_book(self) -> None:
        r = self.rand
        spread = 1 if r() < 0.85 else 2
        if r() < 0.5:  # the last trade hit the ask
            ask1, bid1 = self.last, self.last - spread
        else:
            bid1, ask1 = self.last, self.last + spread
        if ask1 > self.up:
            ask1, bid1 = self.up, self.up - spread
        if bid1 < self.down:
            bid1, ask1 = self.down, self.down + spread
        self.bid1, self.ask1 = bid1, ask1
        up, down, bid_vol, ask_vol = self.up, self.down, self.bid_vol, self.ask_vol
        for i in range(LEVELS):
            depth = 20 + 12 * i  # thinner at the top of the book, as in real markets
            ask_vol[i] = int(r() * depth) + 1 if ask1 + i <= up else 0
            bid_vol[i] = int(r() * depth) + 1 if bid1 - i >= down else 0

    def advance(self) -> None:
        """One random-walk step: a few ticks, reflected inside the limit band, then a new book."""
        r = self.rand
        u = r()
        move = 0 if u < 0.35 else 1 if u < 0.75 else 2 if u < 0.93 else 3
        if r() < 0.5:
            move = -move
        last = self.last + move
        if last > self.up:
            last = 2 * self.up - last
        if last < self.down:
            last = 2 * self.down - last
        last = min(max(last, self.down), self.up)
        self.last = last
        if last > self.high:
            self.high = last
        if last < self.low:
            self.low = last
        vol = int(r() * 20) + 1
        self.last_volume = vol
        self.volume += vol
        self.turnover += vol * last * self.tick * self.size
        self.open_interest = max(0.0, self.open_interest + int((r() - 0.5) * 2 * vol))
        self.steps += 1
        self.draw_book()

    def apply(self, quote: Tick) -> None:
        """Take a real quote instead of a random step (paper trading): the top of the book,
        the price limits and the day's statistics; a side with no quote has no volume."""
        t = self.tick

        def ticks(price: float) -> int:
            return round(price / t)

        if quote.last_price > 0:
            self.last = ticks(quote.last_price)
        if quote.limit_up > 0 and quote.limit_down > 0:
            self.up, self.down = ticks(quote.limit_up), max(1, ticks(quote.limit_down))
        for attr, value in (
            ("pre_settlement", quote.pre_settlement),
            ("pre_close", quote.pre_close),
            ("open", quote.open_price),
            ("high", quote.high_price),
            ("low", quote.low_price),
        ):
            if value > 0:
                setattr(self, attr, ticks(value))
        self.volume = int(quote.volume)
        self.turnover = quote.turnover
        self.open_interest = quote.open_interest
        self.last_volume = int(quote.last_volume)
        has_bid = quote.bid_price_1 > 0 and quote.bid_volume_1 > 0
        has_ask = quote.ask_price_1 > 0 and quote.ask_volume_1 > 0
        self.bid1 = ticks(quote.bid_price_1) if has_bid else self.down
        self.ask1 = ticks(quote.ask_price_1) if has_ask else self.up
        self.bid_vol = [0] * LEVELS
        self.ask_vol = [0] * LEVELS
        # the quote's deeper levels that fall on the book's five ticks each side (a level-1
        # front has none): the paper account fills against what the venue shows, no more
        if has_bid:
            for price, volume in quote.bids:
                i = self.bid1 - ticks(price)
                if price > 0 and volume > 0 and 0 <= i < LEVELS:
                    self.bid_vol[i] = int(volume)
        if has_ask:
            for price, volume in quote.asks:
                i = ticks(price) - self.ask1
                if price > 0 and volume > 0 and 0 <= i < LEVELS:
                    self.ask_vol[i] = int(volume)
        self.steps += 1

    def new_day(self) -> None:
        """Settle at the last price and start the day's statistics afresh."""
        self.pre_settlement = self.pre_close = self.last
        self.open = self.high = self.low = self.last
        self.volume = 0
        self.turnover = 0.0
        self.last_volume = 0
        self.set_limits()
        self.draw_book()

    def depth(self) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
        """The book: (bids best first, asks best first) as (price, volume), empty levels left out."""
        bids = [(self.price(self.bid1 - i), self.bid_vol[i]) for i in range(LEVELS) if self.bid_vol[i] > 0]
        asks = [(self.price(self.ask1 + i), self.ask_vol[i]) for i in range(LEVELS) if self.ask_vol[i] > 0]
        return bids, asks

    def levels(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """The book as a venue reports it, best first: level 1 is the best price (its volume 0
        once taken, until the next step), levels 2-5 the next prices that have volume."""
        bids = [(self.price(self.bid1), float(self.bid_vol[0]))]
        bids += [(self.price(self.bid1 - i), float(v)) for i, v in enumerate(self.bid_vol) if i and v > 0]
        asks = [(self.price(self.ask1), float(self.ask_vol[0]))]
        asks += [(self.price(self.ask1 + i), float(v)) for i, v in enumerate(self.ask_vol) if i and v > 0]
        return bids, asks

    def to_tick(self, moment: datetime, account_id: str) -> Tick:
        p = self.price
        no_limit = self.contract.limit_pct <= 0
        bids, asks = self.levels()
        return Tick(
            account_id=account_id,
            vt_symbol=self.vt_symbol,
            datetime=moment,
            last_price=p(self.last),
            volume=self.volume,
            turnover=self.turnover,
            open_interest=self.open_interest,
            last_volume=self.last_volume,
            pre_settlement=p(self.pre_settlement),
            pre_close=p(self.pre_close),
            open_price=p(self.open),
            high_price=p(self.high),
            low_price=p(self.low),
            limit_up=0.0 if no_limit else p(self.up),
            limit_down=0.0 if no_limit else p(self.down),
            **depth_fields(bids, asks),
        )

    def record(self) -> MarketRecord:
        p = self.price
        return MarketRecord(
            vt_symbol=self.vt_symbol,
            last_price=p(self.last),
            pre_settlement=p(self.pre_settlement),
            pre_close=p(self.pre_close),
            open_price=p(self.open),
            high_price=p(self.high),
            low_price=p(self.low),
            volume=self.volume,
            turnover=self.turnover,
            open_interest=self.open_interest,
            steps=self.steps,
        )
