"""China futures symbols as the exchanges spell them: which products each exchange lists, the
case and month digits of each, and when a month is over.

A symbol is ``<product><month>.<EXCHANGE>``. SHFE, INE, DCE and GFEX write the product in lower
case with a four-digit ``YYMM`` month (``rb2705.SHFE``, ``i2705.DCE``); CFFEX in upper case with
``YYMM`` (``IF2612.CFFEX``); CZCE in upper case with a three-digit ``YMM`` month (``SA705.CZCE``).
A symbol spelled otherwise is not the venue's contract: it would never get a quote, and an order on
it would be refused by the venue. ``symbol_problem`` says what is wrong and what was probably meant
(``did you mean rb2705.SHFE``).

``PRODUCTS`` lists the products of the six exchanges (commodity and financial futures, not
options). The simulated exchange lists a subset of them with its own trading parameters
(``gateways/sim_contracts.py``; a test keeps that subset inside this table, on the same
exchanges). Kept here, not imported from there, because config imports nothing of ours
(ARCHITECTURE.md, "Layers"). An exchange that lists a new product needs one line here.

Months: ``contract_month`` reads the month a symbol names; CZCE's one-digit year is the year of
that digit nearest to today (``505`` in 2026 is May 2025). Whether a month is over depends on the
date, so the loader does not check it (a trader restarted by its manager on the first day of a
month must not refuse the file its manager accepted): the console and daemon entry points do, at
start, with the date in exchange time.
"""

from __future__ import annotations

import difflib
import re
from datetime import date

__all__ = ["PRODUCTS", "contract_month", "month_expired", "product_problem", "symbol_problem"]

#: Product codes by exchange, in the exchange's own spelling.
PRODUCTS: dict[str, tuple[str, ...]] = {
    "SHFE": (
        "cu", "al", "zn", "pb", "ni", "sn", "ao", "au", "ag", "rb", "wr", "hc", "ss",
        "fu", "bu", "ru", "br", "sp", "op",
    ),
    "INE": ("sc", "lu", "nr", "bc", "ec"),
    "DCE": (
        "a", "b", "m", "y", "p", "c", "cs", "rr", "jd", "lh", "fb", "bb", "lg",
        "l", "v", "pp", "eg", "eb", "pg", "j", "jm", "i",
    ),
    "CZCE": (
        "WH", "PM", "RI", "LR", "JR", "CF", "CY", "SR", "OI", "RS", "RM", "AP", "CJ", "PK",
        "TA", "MA", "FG", "SA", "UR", "SF", "SM", "ZC", "PF", "SH", "PX", "PR",
    ),
    "CFFEX": ("IF", "IH", "IC", "IM", "TS", "TF", "T", "TL"),
    "GFEX": ("si", "lc", "ps", "pt", "pd"),
}  # fmt: skip

_UPPER = frozenset({"CZCE", "CFFEX"})
_EXCHANGE_OF: dict[str, str] = {
    product.lower(): exchange for exchange, ps in PRODUCTS.items() for product in ps
}
_SYMBOL = re.compile(r"([A-Za-z]{1,3})(\d+)")


def _spelled(product: str, exchange: str) -> str:
    return product.upper() if exchange in _UPPER else product.lower()


def _month_digits(exchange: str) -> int:
    return 3 if exchange == "CZCE" else 4


def _respell(product: str, month: str, exchange: str, today: date | None) -> str:
    """The symbol written the exchange's way (the month re-digited: ``2505`` <-> ``505``)."""
    if _month_digits(exchange) == 3 and len(month) == 4:
        month = month[1:]
    elif _month_digits(exchange) == 4 and len(month) == 3:
        year = _czce_year(int(month[0]), today or date.today())
        month = f"{year % 100:02d}{month[1:]}"
    return f"{_spelled(product, exchange)}{month}.{exchange}"


def symbol_problem(symbol: str, exchange: str) -> str | None:
    """What is wrong with ``symbol`` on ``exchange`` (a known exchange name), or None if it is
    spelled as that exchange lists it: a known product, its case, the month's digits, month 01-12."""
    vt_symbol = f"{symbol}.{exchange}"
    match = _SYMBOL.fullmatch(symbol)
    if match is None:
        return f"'{vt_symbol}': expected product letters and month digits (e.g. rb2705.SHFE, SA705.CZCE)"
    product, month = match.group(1), match.group(2)
    home = _EXCHANGE_OF.get(product.lower())
    if home is None:
        known = PRODUCTS[exchange]
        detail = f"'{vt_symbol}': unknown product '{product}' on {exchange}"
        close = difflib.get_close_matches(_spelled(product, exchange), known, n=1, cutoff=0.5)
        if close:
            detail += f"; did you mean {close[0]}{month}.{exchange}?"
        return f"{detail} (listed: {', '.join(known)})"
    if home != exchange:
        return (
            f"'{vt_symbol}': {_spelled(product, home)} is listed on {home}, not {exchange}; "
            f"did you mean {_respell(product, month, home, None)}?"
        )
    digits = _month_digits(exchange)
    if len(month) != digits:
        shape = "YMM, e.g. SA705" if digits == 3 else "YYMM, e.g. 2705"
        hint = ""
        if len(month) in (3, 4):
            hint = f"; did you mean {_respell(product, month, exchange, None)}?"
        return f"'{vt_symbol}': {exchange} months have {digits} digits ({shape}){hint}"
    if product != _spelled(product, exchange):
        case = "upper" if exchange in _UPPER else "lower"
        return (
            f"'{vt_symbol}': {exchange} writes products in {case} case; "
            f"did you mean {_spelled(product, exchange)}{month}.{exchange}?"
        )
    if not 1 <= int(month[-2:]) <= 12:
        return f"'{vt_symbol}': month {month[-2:]} is not 01..12"
    return None


def product_problem(product: str) -> str | None:
    """What is wrong with ``product`` as a product code (``rb``, ``SA``, ``IF``), or None if an
    exchange lists it, spelled its way."""
    home = _EXCHANGE_OF.get(product.lower())
    if home is None:
        every = [p for ps in PRODUCTS.values() for p in ps]
        close = difflib.get_close_matches(product, every, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"unknown product '{product}'{hint}"
    if product != _spelled(product, home):
        return f"{home} writes '{product}' as '{_spelled(product, home)}'"
    return None


def _czce_year(digit: int, today: date) -> int:
    """The year ending in ``digit`` nearest to ``today``'s (ties: the earlier one)."""
    base = today.year - today.year % 10 + digit
    return min((base - 10, base, base + 10), key=lambda y: (abs(y - today.year), y))


def contract_month(symbol: str, exchange: str, today: date) -> date | None:
    """The first day of the month ``symbol`` names (None if it does not name one)."""
    match = _SYMBOL.fullmatch(symbol)
    if match is None:
        return None
    month = match.group(2)
    if len(month) == 3:
        year = _czce_year(int(month[0]), today)
    elif len(month) == 4:
        year = 2000 + int(month[:2])
    else:
        return None
    number = int(month[-2:])
    return date(year, number, 1) if 1 <= number <= 12 else None


def month_expired(symbol: str, exchange: str, today: date) -> bool:
    """True if the month ``symbol`` names ended before ``today``'s month began: the contract has
    stopped trading (its last trading day is in its own month or before)."""
    first = contract_month(symbol, exchange, today)
    return first is not None and first < today.replace(day=1)
