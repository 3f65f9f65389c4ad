"""The broker's commission rates: which to ask, what they are, and the fills that wait for them.

The broker's rates (``ReqQryInstrumentCommissionRate``) are asked for the contracts that matter:
those with a position (at each complete position answer), those subscribed (the watchlist,
``subscribe``), and any contract an order is sent for or a fill arrives for. They are asked only
once the gateway is CONNECTED (CONNECTED never waits for them), one query at a time in the same
chain as the other queries (queries.py). CTP answers with the instrument's own row (InstrumentID
``rb2610``) or, usually, its product's (``rb``): a product's row serves all its contracts, so a
product is asked once; an instrument's row serves that instrument alone. The rates go onto the
``Contract`` (``...ByMoney`` -> ``*_commission_rate``, ``...ByVolume`` -> ``*_commission_per_lot``;
open, close, close-today) and every contract they change is pushed again through ``on_contract``.

An empty answer is final (a WARNING, commission 0 for that product); an error answer or silence
is asked again, up to ``COMMISSION_QUERY_ATTEMPTS`` times, then given up with a WARNING
(commission 0) until the next login asks again.

A fill's ``commission`` is ``Contract.commission(price, volume, offset)`` with the fill's own
offset (SHFE/INE report CLOSETODAY / CLOSEYESTERDAY; the other exchanges report CLOSE, charged at
the close rate even when the exchange closed today's lots). A fill whose rates are still being
asked, once CONNECTED, is held for them (its query goes first) at most ``COMMISSION_HOLD_SECONDS``
and is then reported with commission 0 and a WARNING (``HeldFills``); fills pushed before
CONNECTED (the day's, at each login) are never held: they carry the rates known from an earlier
login of the process, else 0. Held fills are reported at ``close`` and before ``on_fatal``, never
dropped. The account's ``Commission`` is CTP's own either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from core.models import Contract, Trade
from gateways.ctp.fields import HUGE_PRICE

log = logging.getLogger(__name__)

COMMISSION_QUERY_ATTEMPTS = 3  # error answers (or silences) before a contract's rates are given up
COMMISSION_HOLD_SECONDS = 2.0  # a fill waits at most this long for its contract's commission rates


def _ratio(value: Any) -> float:
    """A commission ratio as CTP sends it; "no value" (DBL_MAX), NaN or negative is 0."""
    try:
        ratio = float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return ratio if 0.0 <= ratio < HUGE_PRICE else 0.0


@dataclass(frozen=True, slots=True)
class CommissionRates:
    """One row of CTP's ``OnRspQryInstrumentCommissionRate``: what the broker charges per fill,
    as a fraction of turnover (``...ByMoney``) plus currency per lot (``...ByVolume``)."""

    key: str  # CTP's InstrumentID of the row: an instrument ("rb2610") or its product ("rb")
    exchange: str  # "" when CTP leaves ExchangeID empty (older api versions, product rows)
    open_rate: float
    open_per_lot: float
    close_rate: float
    close_per_lot: float
    close_today_rate: float
    close_today_per_lot: float

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CommissionRates | None:
        key = str(row.get("InstrumentID") or "").strip()
        if not key:
            return None
        return cls(
            key=key,
            exchange=str(row.get("ExchangeID") or "").strip(),
            open_rate=_ratio(row.get("OpenRatioByMoney")),
            open_per_lot=_ratio(row.get("OpenRatioByVolume")),
            close_rate=_ratio(row.get("CloseRatioByMoney")),
            close_per_lot=_ratio(row.get("CloseRatioByVolume")),
            close_today_rate=_ratio(row.get("CloseTodayRatioByMoney")),
            close_today_per_lot=_ratio(row.get("CloseTodayRatioByVolume")),
        )

    def covers(self, contract: Contract) -> bool:
        return self.key in (contract.symbol, contract.product) and self.exchange in (
            "",
            contract.exchange.value,
        )

    def apply(self, contract: Contract) -> Contract:
        return msgspec.structs.replace(
            contract,
            commission_rate=self.open_rate,
            commission_per_lot=self.open_per_lot,
            close_commission_rate=self.close_rate,
            close_commission_per_lot=self.close_per_lot,
            close_today_commission_rate=self.close_today_rate,
            close_today_commission_per_lot=self.close_today_per_lot,
        )


class CommissionBook:
    """The rates known, kept by CTP's key for them, and the contracts still to ask for."""

    def __init__(self) -> None:
        self.symbols: dict[str, str] = {}  # symbol -> vt_symbol of the venue's contracts
        self.rates: dict[str, CommissionRates] = {}  # instrument or product -> rates
        self.needed: dict[str, None] = {}  # vt_symbols still without rates, in asking order
        self.empty: set[str] = set()  # symbols and products CTP has no rates for
        self.failed: set[str] = set()  # symbols and products given up on until the next login
        self.attempts: dict[str, int] = {}  # symbol -> error answers so far

    def known(self, contract: Contract) -> Contract:
        """A contract of the venue (instrument query), with the rates known for it."""
        self.symbols[contract.symbol] = contract.vt_symbol
        rates = self.rate_for(contract)  # known from an earlier login of this process
        return contract if rates is None else rates.apply(contract)

    def new_login(self) -> None:
        """What failed is asked again (what was answered empty is not)."""
        self.failed.clear()
        self.attempts.clear()

    def rate_for(self, contract: Contract) -> CommissionRates | None:
        """The instrument's own rates, else its product's (None: not known)."""
        for key in (contract.symbol, contract.product):
            rates = self.rates.get(key)
            if rates is not None and rates.covers(contract):
                return rates
        return None

    def resolved(self, contract: Contract) -> bool:
        """True when nothing more is to be learnt of the contract's rates for now."""
        keys = {contract.symbol, contract.product}
        return self.rate_for(contract) is not None or bool(keys & (self.empty | self.failed))

    def want(self, vt_symbol: str, *, urgent: bool) -> None:
        """``vt_symbol`` is to be asked; ``urgent``: before every other one."""
        if urgent:
            self.needed.pop(vt_symbol, None)
            self.needed = {vt_symbol: None, **self.needed}
        else:
            self.needed.setdefault(vt_symbol, None)

    def next_symbol(self, contracts: Mapping[str, Contract]) -> str | None:
        """The InstrumentID to ask next (None: nothing to ask now)."""
        for vt_symbol in list(self.needed):
            contract = contracts.get(vt_symbol)
            keys = {contract.symbol, contract.product} if contract is not None else set()
            if contract is None or self.rate_for(contract) is not None or keys & self.empty:
                del self.needed[vt_symbol]  # not a futures contract of the venue, or done
            elif not keys & self.failed:
                return contract.symbol
        return None

    def error(self, symbol: str, error: str, contracts: Mapping[str, Contract]) -> str | None:
        """An error answer (or silence) for ``symbol``; the WARNING to give when it is given up."""
        attempts = self.attempts[symbol] = self.attempts.get(symbol, 0) + 1
        if attempts < COMMISSION_QUERY_ATTEMPTS:
            return None  # still wanted: asked again at the chain's pace
        vt_symbol = self.symbols.get(symbol, symbol)
        contract = contracts.get(vt_symbol)
        self.failed.update({symbol, contract.product} if contract is not None else {symbol})
        return (
            f"CTP commission rates of {vt_symbol}: {error} ({attempts} attempts); its fills are "
            f"recorded with commission 0 (asked again at the next login)"
        )

    def store(
        self, symbol: str, rows: tuple[dict[str, Any], ...], contracts: Mapping[str, Contract]
    ) -> str | None:
        """The answer for ``symbol``; the WARNING to give when it had nothing for it."""
        for row in rows:
            rates = CommissionRates.from_row(row)
            if rates is not None:
                self.rates[rates.key] = rates
        contract = contracts.get(self.symbols.get(symbol, ""))
        if contract is None or self.rate_for(contract) is not None:
            return None
        # nothing for it: a definite answer, the product is not asked again
        self.empty.update({symbol, contract.product})
        return (
            f"CTP has no commission rates for {contract.vt_symbol}: its fills are recorded with commission 0"
        )

    def changed(self, contracts: Mapping[str, Contract]) -> Iterator[Contract]:
        """Every contract of ``contracts`` whose known rates differ from its own, with them."""
        for known in list(contracts.values()):
            rates = self.rate_for(known)
            if rates is not None and (updated := rates.apply(known)) != known:
                yield updated


class HeldFills:
    """Fills waiting for their contract's rates, each at most ``COMMISSION_HOLD_SECONDS``.

    ``resolved(trade)``: nothing more is to come for the trade's rates; ``report(trade)``: the
    fill to the listener; ``log(level, text)``: a line for the listener's log. ``loop`` is set
    when the gateway connects (no fill is held before).
    """

    def __init__(
        self,
        resolved: Callable[[Trade], bool],
        report: Callable[[Trade], None],
        log_line: Callable[[str, str], None],
    ) -> None:
        self.resolved = resolved
        self.report = report
        self.log_line = log_line
        self.loop: asyncio.AbstractEventLoop | None = None
        self.trades: list[tuple[float, Trade]] = []  # (loop time due, fill)
        self.ids: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None

    def __contains__(self, trade_id: object) -> bool:
        return trade_id in self.ids

    def hold(self, trade: Trade) -> None:
        assert self.loop is not None
        self.trades.append((self.loop.time() + COMMISSION_HOLD_SECONDS, trade))
        self.ids.add(trade.trade_id)
        if self._timer is None:
            self._timer = self.loop.call_later(COMMISSION_HOLD_SECONDS, self.release)

    def release(self, *, force: bool = False) -> None:
        """Report the fills held for rates that are now known (or will not be), or held long
        enough (``force``: all of them). One that fails never stops the others."""
        self.cancel()
        if not self.trades or self.loop is None:
            return
        moment = self.loop.time()
        waiting, self.trades = self.trades, []
        for due, trade in waiting:
            resolved = self.resolved(trade)
            if not (resolved or force or due <= moment):
                self.trades.append((due, trade))
                continue
            self.ids.discard(trade.trade_id)
            if not resolved:
                self.log_line(
                    "WARNING",
                    f"CTP fill {trade.trade_id} ({trade.vt_symbol}): commission rates not known "
                    f"within {COMMISSION_HOLD_SECONDS:g} s; recorded with commission 0",
                )
            try:
                self.report(trade)
            except Exception as exc:
                log.exception("CTP fill %s could not be reported", trade.trade_id)
                with contextlib.suppress(Exception):
                    self.log_line("ERROR", f"CTP fill {trade.trade_id} could not be reported: {exc!r}")
        if self.trades:
            due = min(d for d, _ in self.trades)
            self._timer = self.loop.call_later(max(due - moment, 0.01), self.release)

    def cancel(self) -> None:
        """Stop the timer (the fills stay held)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
