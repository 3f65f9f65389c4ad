"""Real quotes for paper accounts: the manager relays a source account's ticks.

A paper account (``market_data_from: SRC``) matches its orders locally against the real
book of another account. When either registers, the source is asked for the paper
account's contracts (``subscribe_req``); every tick the source streams is relayed to its
paper accounts (``quote``); and the paper accounts are told whether their source is up
(``quote_source``): while it is not, there is no real book, and they refuse orders.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from config import AccountConfig
from core.aggregator import Change, DataAggregator
from core.models import Tick, TraderStatus
from core.protocol import QuoteSourceStatus, SubscribeRequest
from core.supervisor import TraderProxy


class QuoteRelay:
    """The manager's relay of quotes from source accounts to their paper accounts."""

    def __init__(
        self, accounts: Iterable[AccountConfig], proxies: dict[str, TraderProxy], aggregator: DataAggregator
    ) -> None:
        self.proxies = proxies
        self.aggregator = aggregator
        #: source account -> the paper accounts matching against its quotes
        self.paper: dict[str, list[str]] = {}
        for account in accounts:
            if account.enabled and account.market_data_from is not None:
                self.paper.setdefault(account.market_data_from, []).append(account.account_id)
        if self.paper:
            aggregator.subscribe(self._watch_quote_sources)

    def registered(self, proxy: TraderProxy) -> list[str]:
        """An account's trader registered: ask for the quotes its side needs; returns the
        paper accounts its ticks are relayed to."""
        aid = proxy.account_id
        self._subscribe_for_paper(aid)
        if proxy.account.market_data_from is not None:
            self._tell_paper(proxy.account.market_data_from, [aid])
        return self.paper.get(aid, [])

    def _subscribe_for_paper(self, account_id: str) -> None:
        """Ask a paper account's quote source for the paper account's contracts."""
        account = self.proxies[account_id].account
        pairs = [(account_id, p) for p in self.paper.get(account_id, ())]
        if account.market_data_from is not None:
            pairs.append((account.market_data_from, account_id))
        for source_id, paper_id in pairs:
            source, paper = self.proxies.get(source_id), self.proxies.get(paper_id)
            if source is None or paper is None or source.link is None:
                continue
            acc = paper.account
            # the watchlist the operator saved for the paper account (core/watchlist.py), if known
            edited = (
                self.aggregator.states[paper_id].watchlist if paper_id in self.aggregator.states else None
            )
            symbols = list(
                dict.fromkeys([*acc.watchlist, *(edited or ()), *(s.symbol for s in acc.strategies)])
            )
            with contextlib.suppress(ConnectionError):  # its link is closing: it asks again on return
                source.link.send_nowait("subscribe_req", SubscribeRequest(symbols=symbols), 0)

    def _watch_quote_sources(self, change: Change) -> None:
        if change.kind == "status" and change.account_id in self.paper:
            self._tell_paper(change.account_id, self.paper[change.account_id])
        elif change.kind in ("watchlist", "snapshot") and self._is_paper(change.account_id):
            self._subscribe_for_paper(change.account_id)  # its source quotes what it now watches

    def _is_paper(self, account_id: str) -> bool:
        proxy = self.proxies.get(account_id)
        return proxy is not None and proxy.account.market_data_from is not None

    def _tell_paper(self, source_id: str, paper_ids: Iterable[str]) -> None:
        """Tell paper accounts whether their quote source is up (they refuse orders while
        it is not: no real book to match against)."""
        state = self.aggregator.states.get(source_id)
        if state is None:
            return
        up = state.status is TraderStatus.CONNECTED
        news = QuoteSourceStatus(
            source=source_id,
            up=up,
            message="" if up else f"{state.status.name}: {state.status_message or 'no reason given'}",
        )
        for paper_id in paper_ids:
            proxy = self.proxies.get(paper_id)
            if proxy is not None and proxy.link is not None:
                with contextlib.suppress(ConnectionError):
                    proxy.link.send_nowait("quote_source", news)

    def relay(self, paper_ids: Iterable[str], tick: Tick) -> None:
        """One of a source's ticks, to the paper accounts matching against it."""
        for paper_id in paper_ids:
            proxy = self.proxies.get(paper_id)
            if proxy is not None and proxy.link is not None:
                # a paper link going down must never cost the source's link (we are in its loop)
                with contextlib.suppress(ConnectionError):
                    proxy.link.send_nowait("quote", tick)
