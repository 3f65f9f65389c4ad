"""The volume the order entry proposes: the last one sent for the contract, else the configured
default (``ui.default_volume``: full vt_symbol, then product, then ``default``), else 1 lot.

The last volumes are the console's own memory, per account and contract, kept in
``<data_dir>/console_state.json`` (written whole, through a temporary file and a rename, so a
crash leaves the previous file), so a console started again, or attached, proposes what was
sent before. It is a preference, never an order: a file that cannot be read is logged and
forgotten, a write that fails is logged and the console goes on.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

from core.models import MAX_VOLUME, product_of

__all__ = ["STATE_FILE_NAME", "VolumeMemory"]

log = logging.getLogger("qtrader.console")

STATE_FILE_NAME = "console_state.json"
#: contracts remembered per account (the oldest used is forgotten first)
MAX_REMEMBERED = 500


class VolumeMemory:
    """Last volume sent per (account, contract), and the configured defaults."""

    def __init__(self, defaults: Mapping[str, int] | None = None, path: Path | None = None) -> None:
        """``defaults``: ``ui.default_volume``; ``path``: the file the last volumes live in
        (None: remembered for this run only)."""
        self.defaults = dict(defaults or {})
        self.path = path
        self._last: dict[str, dict[str, int]] = self._load()

    def volume_for(self, account_id: str, vt_symbol: str) -> int:
        """Last used > configured for the contract > for its product > ``default`` > 1."""
        last = self._last.get(account_id, {}).get(vt_symbol)
        if last is not None:
            return last
        for key in (vt_symbol, product_of(vt_symbol), "default"):
            if key and key in self.defaults:
                return self.defaults[key]
        return 1

    def remember(self, account_id: str, vt_symbol: str, volume: float) -> None:
        """The operator sent ``volume`` lots of ``vt_symbol`` from ``account_id``: propose it next."""
        if not math.isfinite(volume) or not 1 <= volume <= MAX_VOLUME or volume != int(volume):
            return
        book = self._last.setdefault(account_id, {})
        if book.get(vt_symbol) == int(volume):
            return
        book.pop(vt_symbol, None)  # the newest last, so the oldest used goes first
        book[vt_symbol] = int(volume)
        while len(book) > MAX_REMEMBERED:
            del book[next(iter(book))]
        self._save()

    def _load(self) -> dict[str, dict[str, int]]:
        if self.path is None:
            return {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("console state %s not read (%s): last volumes forgotten", self.path, exc)
            return {}
        books = raw.get("last_volume") if isinstance(raw, dict) else None
        if not isinstance(books, dict):
            return {}
        out: dict[str, dict[str, int]] = {}
        for account_id, book in books.items():
            if not isinstance(book, dict):
                continue
            kept = {
                str(symbol): int(volume)
                for symbol, volume in book.items()
                if isinstance(volume, int) and not isinstance(volume, bool) and 1 <= volume <= MAX_VOLUME
            }
            out[str(account_id)] = dict(list(kept.items())[-MAX_REMEMBERED:])
        return out

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"last_volume": self._last}, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("console state %s not written (%s): last volumes kept for this run", self.path, exc)
