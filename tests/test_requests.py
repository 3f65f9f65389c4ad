"""PendingReplies: every request ends in exactly one reply, and an unknown outcome is never a rejection."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from core.control import send_control
from core.models import OUTCOME_UNKNOWN
from core.protocol import Empty, Reply
from core.requests import PendingReplies
from tests.conftest import wait_until


async def test_the_peers_reply_resolves_its_request() -> None:
    pending = PendingReplies()
    sent: list[int] = []
    asking = asyncio.create_task(pending.request(sent.append, timeout=30, unanswered="no answer"))
    await wait_until(lambda: sent, what="the request sent")
    assert len(pending) == 1
    assert not pending.resolve(sent[0] + 1, Reply(ok=True))  # someone else's id
    assert pending.resolve(sent[0], Reply(ok=True, result=7))
    reply = await asyncio.wait_for(asking, 5)
    assert reply.ok and reply.result == 7
    assert len(pending) == 0
    assert not pending.resolve(sent[0], Reply(ok=True))  # a second answer changes nothing


async def test_no_reply_in_time_is_an_unknown_outcome_and_a_late_reply_is_ignored() -> None:
    pending = PendingReplies()
    sent: list[int] = []
    reply = await pending.request(sent.append, timeout=0.01, unanswered="DQ1 did not answer order_req")
    assert not reply.ok
    assert reply.error == f"DQ1 did not answer order_req: {OUTCOME_UNKNOWN}"
    assert len(pending) == 0
    assert not pending.resolve(sent[0], Reply(ok=True))


async def test_a_lost_link_answers_every_waiting_request() -> None:
    pending = PendingReplies()
    sent: list[int] = []
    asking = [
        asyncio.create_task(pending.request(sent.append, timeout=30, unanswered="no answer"))
        for _ in range(3)
    ]
    await wait_until(lambda: len(sent) == 3, what="three requests sent")
    assert len(set(sent)) == 3  # one id each
    pending.fail_all("connection to the daemon lost")
    replies = await asyncio.wait_for(asyncio.gather(*asking), 5)
    assert [r.error for r in replies] == [f"connection to the daemon lost: {OUTCOME_UNKNOWN}"] * 3
    assert not any(r.ok for r in replies)
    assert len(pending) == 0


async def test_a_send_that_fails_leaves_nothing_waiting() -> None:
    pending = PendingReplies()

    def closed(req_id: int) -> None:
        raise ConnectionError("link is closed")

    with pytest.raises(ConnectionError):
        await pending.request(closed, timeout=30, unanswered="no answer")
    assert len(pending) == 0


async def test_a_caller_that_gives_up_leaves_nothing_waiting() -> None:
    pending = PendingReplies()
    sent: list[int] = []
    asking = asyncio.create_task(pending.request(sent.append, timeout=30, unanswered="no answer"))
    await wait_until(lambda: sent, what="the request sent")
    asking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asking
    assert len(pending) == 0
    assert not pending.resolve(sent[0], Reply(ok=True))


async def test_ids_can_come_from_a_shared_counter() -> None:
    ids = itertools.count(41)
    first, second = PendingReplies(ids), PendingReplies(ids)
    sent: list[int] = []
    for pending in (first, second):
        await pending.request(sent.append, timeout=0.001, unanswered="no answer")
    assert sent == [41, 42]


async def test_a_daemon_that_takes_a_command_and_never_answers_is_an_unknown_outcome(tmp_path: Path) -> None:
    """The command line's one request (``--kill``, ``--status``): sent, then silence, is not
    'refused' but 'outcome unknown': the daemon may have pulled the kill switch."""
    received: list[bytes] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(4096))
        await asyncio.sleep(30)  # never answers; cancelled when the server closes

    path = tmp_path / "control.sock"
    server = await asyncio.start_unix_server(silent, path=str(path))
    try:
        reply = await send_control(path, "status_req", Empty(), timeout=0.2)
    finally:
        server.close()
    assert received and received[0]  # the request went out
    assert not reply.ok and reply.error.startswith("the core did not answer (TimeoutError)")
    assert reply.error.endswith(OUTCOME_UNKNOWN)
