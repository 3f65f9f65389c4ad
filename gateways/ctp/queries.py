"""The gateway's CTP queries, one at a time, paced and retried (``QueryChain``).

CTP allows one query in flight and about one a second. After the instrument query of each login
the gateway asks, in a row: today's orders (``ReqQryOrder``), today's trades (``ReqQryTrade``),
funds and positions (``INITIAL_QUERIES``); later, funds and positions again after fills and on
``query``, and the broker's commission rates (``commission:<InstrumentID>``, commission.py).

Each query is sent when the previous one has answered (vnpy_ctp does not mark the last answer of
a query: vnpy_ext.py puts a ``QueryDone`` event after it). It is resent after
``QUERY_RETRY_SECONDS`` when CTP refuses it for flow control or answers it with an error
(``查询未就绪`` ...: an error answer is never taken for a complete one, so positions are not
flattened by it), or after ``QUERY_TIMEOUT_SECONDS`` without an answer. A commission query goes
at least ``COMMISSION_QUERY_INTERVAL`` seconds after the chain's previous request (vnpy's own
periodic funds/positions queries are not counted), and its silence is an error answer (the
gateway counts its attempts) instead of a resend.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

QUERY_RETRY_SECONDS = 1.1  # CTP refuses more than about one query a second
QUERY_TIMEOUT_SECONDS = 10.0  # an unanswered query is sent again
COMMISSION_QUERY_INTERVAL = 1.1  # a commission query goes this long after the previous query at least
INITIAL_QUERIES = ("orders", "trades", "account", "positions")
COMMISSION_QUERY = "commission:"  # a commission rate query in the chain: this + the InstrumentID asked


@dataclass(frozen=True, slots=True)
class QueryDone:
    """Our event after the last answer of a CTP query (vnpy_ctp does not mark it)."""

    name: str  # orders / trades / account / positions / commission:<InstrumentID>
    extras: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    error: str = ""
    rows: tuple[dict[str, Any], ...] = ()  # a commission query's answer rows


def rate_query(symbol: str) -> str:
    """The chain's name of the commission rate query for InstrumentID ``symbol``."""
    return f"{COMMISSION_QUERY}{symbol}"


def rate_symbol(query: str) -> str | None:
    """The InstrumentID of a commission query's name (None: another query)."""
    return query[len(COMMISSION_QUERY) :] if query.startswith(COMMISSION_QUERY) else None


class QueryChain:
    """The queries to ask, in order: the head is the one asked (or about to be).

    ``td`` is vnpy_ctp's td api (its native ``reqQry...`` methods and request counter);
    ``can_send`` says whether the trade front is logged in and the gateway open;
    ``on_unanswered`` receives a commission query's silence as an error answer.
    ``loop`` is set when the gateway connects; nothing is sent before.
    """

    def __init__(
        self, td: Any, can_send: Callable[[], bool], on_unanswered: Callable[[QueryDone], None]
    ) -> None:
        self.td = td
        self.can_send = can_send
        self.on_unanswered = on_unanswered
        self.loop: asyncio.AbstractEventLoop | None = None
        self.names: list[str] = []
        self.in_flight: str | None = None  # the head, once CTP took it
        self.last_sent = float("-inf")  # loop time of the chain's last request
        self.errors: dict[str, str] = {}  # query -> its last error, said once
        self._timer: asyncio.TimerHandle | None = None

    def is_head(self, name: str) -> bool:
        """True when ``name`` is the query the chain is waiting for (an answer that is ours)."""
        return bool(self.names) and self.names[0] == name

    def start(self, names: tuple[str, ...]) -> None:
        """A new chain of ``names`` (whatever was running is dropped)."""
        self.stop()
        self.names = list(names)
        self.send()

    def stop(self) -> None:
        self.names.clear()
        self.in_flight = None
        self._cancel_timer()

    def ask(self, names: tuple[str, ...]) -> None:
        """``names`` asked now, or after the running chain (where the part not sent yet is new enough)."""
        if not self.names:
            self.start(names)
            return
        for name in names:
            if name not in self.names[1:]:
                self.names.append(name)

    def add_rate(self, name: str, *, urgent: bool) -> None:
        """Put commission query ``name`` in the chain: at its end when it is idle, right behind the
        query in flight when ``urgent``. One commission query in the chain at a time."""
        if not self.names:
            self.names.append(name)
            self.send()
            return
        if not urgent:
            return  # asked when the chain is done
        queued = [i for i, q in enumerate(self.names) if rate_symbol(q) is not None]
        if not queued:
            self.names.insert(1, name)
        elif self.names[queued[0]] != self.in_flight:  # not sent yet: this one instead, now
            self.names[queued[0]] = name  # (the other stays wanted, and is asked after it)

    def advance(self) -> bool:
        """The head is answered: send the next query. True when the chain is done."""
        self.names.pop(0)
        self.in_flight = None
        self._cancel_timer()
        if self.names:
            self.send()
            return False
        return True

    def retry(self) -> None:
        """The head was answered with an error: ask it again a little later."""
        self._cancel_timer()
        assert self.loop is not None
        self._timer = self.loop.call_later(QUERY_RETRY_SECONDS, self.send)

    def new_error(self, name: str, error: str) -> bool:
        """Note ``error`` as ``name``'s last; True when it is not the one noted before."""
        if self.errors.get(name) == error:
            return False
        self.errors[name] = error
        return True

    def send(self) -> None:
        """Send the query at the head of the chain; resend it if CTP refuses or stays silent."""
        self._timer = None
        if not self.names or not self.can_send() or self.loop is None:
            return
        loop, name, td = self.loop, self.names[0], self.td
        symbol = rate_symbol(name)
        investor = {"BrokerID": td.brokerid, "InvestorID": td.userid}
        if symbol is not None:
            wait = self.last_sent + COMMISSION_QUERY_INTERVAL - loop.time()
            if wait > 0:  # CTP counts every query against its limit of about one a second
                self._timer = loop.call_later(wait, self.send)
                return
            request = (td.reqQryInstrumentCommissionRate, {**investor, "InstrumentID": symbol})
        else:
            request = {
                "orders": (td.reqQryOrder, investor),
                "trades": (td.reqQryTrade, investor),
                "account": (td.reqQryTradingAccount, {}),
                "positions": (td.reqQryInvestorPosition, investor),
            }[name]
        td.reqid += 1
        reqid = td.reqid
        if symbol is not None:
            td.rate_requests[reqid] = symbol
        refused = request[0](request[1], reqid)
        self.last_sent = loop.time()
        if refused:
            td.rate_requests.pop(reqid, None)
            self._timer = loop.call_later(QUERY_RETRY_SECONDS, self.send)
            return
        self.in_flight = name
        on_silence = self.send if symbol is None else functools.partial(self._unanswered, name)
        self._timer = loop.call_later(QUERY_TIMEOUT_SECONDS, on_silence)

    def _unanswered(self, name: str) -> None:
        self._timer = None
        if self.is_head(name):
            self.on_unanswered(QueryDone(name, error=f"no answer in {QUERY_TIMEOUT_SECONDS:g} s"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
