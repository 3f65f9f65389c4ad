"""An account's watchlist: the contracts its Market panel lists, in the operator's order.

It starts as the configuration's ``watchlist``; once the operator edits it from the console
(``watchlist_req``, core/protocol.py) the trader saves it in the account's state directory
(``state/<ID>/watchlist.json``, written whole through a rename before the reply) and that list
wins over the configuration's from then on, across trader restarts. The YAML file is never
written.

The main contract (主力合约) of a product is the month with the largest open interest among
the product's contracts the venue lists. Open interest travels on ticks, so the console asks
the trader to subscribe the product's listed months (``probe``) and picks the main contract
from their first quotes (``main_contract``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated

import msgspec

from core.models import SymbolField, Tick
from core.protocol import MAX_WATCHLIST

__all__ = ["WATCHLIST_FILE", "load_watchlist", "main_contract", "of_product", "save_watchlist"]

WATCHLIST_FILE = "watchlist.json"


class _Saved(msgspec.Struct):
    #: held to the wire's bounds (``WatchlistRequest``): a damaged file is refused, not subscribed
    symbols: Annotated[list[SymbolField], msgspec.Meta(max_length=MAX_WATCHLIST)]


def load_watchlist(state_dir: Path) -> list[str] | None:
    """The watchlist the operator last saved for the account, or None if none was (the
    configuration's applies). Raises ``OSError`` / ``msgspec.DecodeError`` on a broken file,
    ``msgspec.ValidationError`` on one whose rows are not contracts or are too many."""
    try:
        data = (state_dir / WATCHLIST_FILE).read_bytes()
    except FileNotFoundError:
        return None
    return msgspec.json.decode(data, type=_Saved).symbols


def save_watchlist(state_dir: Path, symbols: list[str]) -> None:
    """Save ``symbols`` as the account's watchlist: a new file moved over the old one, so a
    crash leaves one or the other. Raises ``OSError``."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / WATCHLIST_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.encode(_Saved(symbols=symbols)))
    os.replace(tmp, path)


def of_product(product: str, vt_symbols: Iterable[str]) -> list[str]:
    """The futures of ``product`` (any case; "" for every product) among ``vt_symbols``: the
    product letters, then the month digits (options, ``rb2610C3000``, and spreads are not)."""
    pattern = re.compile(rf"^{re.escape(product)}\d{{3,4}}\." if product else r"^[A-Za-z]+\d{3,4}\.", re.I)
    return sorted({s for s in vt_symbols if pattern.match(s)})


def main_contract(
    ticks: Mapping[str, Tick], candidates: Iterable[str]
) -> tuple[str | None, dict[str, float]]:
    """The candidate with the largest open interest among those quoted in ``ticks`` (a tie:
    the nearer month, the first in sorted order), and the open interest of each quoted one."""
    interest = {s: ticks[s].open_interest for s in sorted(candidates) if s in ticks}
    if not interest:
        return None, interest
    best = max(interest, key=lambda s: interest[s])  # max keeps the first of equals
    return best, interest
