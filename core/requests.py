"""Requests in flight on one link, waiting for their reply by ``req_id``.

Every request gets exactly one ``Reply``. A ``PendingReplies`` guarantees it for the
side that asks (the manager asking a trader, an attached console asking the daemon):
the peer's reply resolves the request; past its deadline, or when the link is lost,
it is answered here instead, and that answer always ends in ``OUTCOME_UNKNOWN``.
Never a rejection: a request that went out may have been acted on.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator

from core.models import OUTCOME_UNKNOWN
from core.protocol import Reply


class PendingReplies:
    """The unanswered requests of one link (or of several links in turn: a manager keeps
    one per account, across the trader's reconnects)."""

    def __init__(self, ids: Iterator[int] | None = None) -> None:
        """``ids``: where request ids come from (shared, to keep them unique beyond this
        link); by default 1, 2, 3, ... (0 is left for messages that want no answer)."""
        self._ids = ids if ids is not None else itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Reply]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    async def request(self, send: Callable[[int], object], *, timeout: float, unanswered: str) -> Reply:
        """Send one request and return its one reply.

        ``send(req_id)`` writes the request; a ``ConnectionError`` it raises propagates
        (nothing was sent: the caller says so in its own words). With no reply within
        ``timeout`` seconds the answer is ``"<unanswered>: <OUTCOME_UNKNOWN>"``.
        """
        loop = asyncio.get_running_loop()
        req_id = next(self._ids)
        reply: asyncio.Future[Reply] = loop.create_future()
        self._waiting[req_id] = reply  # before the send: nothing can answer in between
        try:
            send(req_id)
        except BaseException:
            del self._waiting[req_id]
            raise
        # a timer on the future, not wait_for(): no extra task on the order path
        timer = loop.call_later(timeout, self._expire, req_id, unanswered)
        try:
            return await reply
        finally:
            timer.cancel()
            if self._waiting.get(req_id) is reply:  # the caller gave up (cancelled)
                del self._waiting[req_id]

    def resolve(self, req_id: int | None, reply: Reply) -> bool:
        """The peer's reply to ``req_id``; False when no request waits for it (too late,
        or an answer to a message sent with no wish for one)."""
        fut = self._waiting.pop(req_id, None) if req_id is not None else None
        if fut is None or fut.done():
            return False
        fut.set_result(reply)
        return True

    def fail_all(self, why: str) -> None:
        """The link is gone: every request still waiting is answered ``"<why>: <OUTCOME_UNKNOWN>"``."""
        waiting, self._waiting = self._waiting, {}
        error = f"{why}: {OUTCOME_UNKNOWN}"
        for fut in waiting.values():
            if not fut.done():
                fut.set_result(Reply(ok=False, error=error))

    def _expire(self, req_id: int, unanswered: str) -> None:
        fut = self._waiting.pop(req_id, None)
        if fut is not None and not fut.done():
            fut.set_result(Reply(ok=False, error=f"{unanswered}: {OUTCOME_UNKNOWN}"))
