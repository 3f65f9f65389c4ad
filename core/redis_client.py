"""``RedisConsoleClient``: one console for every daemon publishing on a Redis
(``qtrader-tui --attach redis://HOST:PORT/DB``; the daemons' side is core/redis_publish.py,
the keys core/redis_link.py).

Like ``RemoteConsoleClient`` it keeps its own ``DataAggregator``. Each account starts from
its snapshot, then the account's stream is read after the snapshot's stream id: an entry
whose ``seq`` the snapshot already holds is skipped, one that is not the next ``seq`` (the
daemon restarted, Redis dropped what we had not read, the daemon lost its link) makes the
account start again from its next snapshot. Nothing is missed, nothing applied twice.

Commands go on the account's host's command stream with a deadline (``DEFAULT_DEADLINE`` s
after sending: the daemon answers "expired, not sent" past it); each gets exactly one reply
on this console's reply stream, or "outcome unknown" when none comes in time. Refused here
with the reason, nothing sent: while Redis is unreachable ("link down": every account shows
it, the client reconnects and starts again from fresh snapshots) and while the account's
host is down (its heartbeat lapsed). A Redis user that may only read gets "refused by Redis".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import socket
import time
from datetime import datetime
from typing import Any

import msgspec

from core.aggregator import DataAggregator
from core.client import WireConsoleClient
from core.models import (
    OUTCOME_UNKNOWN,
    TraderStatus,
)
from core.protocol import (
    ConsoleState,
    KillRequest,
    Message,
    ProtocolError,
    Reply,
    RequestType,
    TraderStatusUpdate,
)
from core.redis_link import (
    COMMAND_MAXLEN,
    DEFAULT_DEADLINE,
    HOST_DOWN,
    LINK_DOWN,
    HostBeat,
    command_key,
    connect,
    decode_beat,
    decode_message,
    encode_message,
    host_key,
    reply_key,
    snapshot_key,
    stream_key,
    where,
)
from core.requests import PendingReplies

log = logging.getLogger("qtrader.client")

#: How often the hosts' heartbeats are looked at (a lapsed one: "host down").
SCAN_SECONDS = 0.5
#: A reply may arrive this long after the command's deadline (started just before it).
REPLY_GRACE = 1.0


#: a stream entry id, as a snapshot's ``id`` must be (XREAD refuses every stream with another)
_STREAM_ID = re.compile(rb"\d{1,20}-\d{1,20}")


class _Position:
    """Where one account's stream is read from: the last entry id and the last seq held."""

    __slots__ = ("entry_id", "run", "seq")

    def __init__(self, entry_id: bytes, seq: int, run: int) -> None:
        self.entry_id, self.seq, self.run = entry_id, seq, run


class RedisConsoleClient(WireConsoleClient):
    """ConsoleClient over every daemon publishing on one Redis."""

    RETRY_SECONDS = 1.0

    @staticmethod
    async def discover(
        url: str, *, username: str | None = None, password: str | None = None
    ) -> list[tuple[str, str, str]]:
        """(account_id, gateway, host) of every live daemon's accounts, by host. Raises
        ``ConnectionError`` with the reason when Redis cannot be read."""
        redis = connect(url, username=username, password=password)
        try:
            beats = await _beats(redis)
        except Exception as exc:
            raise ConnectionError(f"cannot read Redis at {where(url)}: {exc}") from None
        finally:
            await redis.aclose()
        return [
            (aid, gateway, b.host)
            for b in sorted(beats.values(), key=lambda b: b.host)
            for aid, gateway in b.accounts
        ]

    def __init__(
        self,
        url: str,
        accounts: list[tuple[str, str, str]],
        *,
        username: str | None = None,
        password: str | None = None,
        deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        """``accounts``: (account_id, gateway, host), as ``discover`` gives them."""
        self.url = url
        self.where = where(url)
        self.username, self._password = username, password
        self.deadline = deadline
        self.aggregator = DataAggregator()
        self._hosts: dict[str, str] = {}  # account -> host
        self._unseen: set[str] = set()  # published by a host that came later (logged once)
        for account_id, gateway, host in accounts:
            self._add(account_id, gateway, host)
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40]
        self.console = f"{name}-{os.getpid()}-{secrets.token_hex(4)}"
        self._reply_key = reply_key(self.console)
        self._beats: dict[str, HostBeat] = {}  # live hosts
        self._seen: dict[str, float] = {}  # host -> when its heartbeat was last seen (epoch)
        self._said_down: set[str] = set()  # hosts whose accounts show "host down"
        self._positions: dict[str, _Position] = {}
        self._redis: Any = None
        self._down = f"{LINK_DOWN}: not connected to Redis at {self.where} yet"
        self._pending = PendingReplies()
        self._sending: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._attached = asyncio.Event()
        self._closing = False

    def _add(self, account_id: str, gateway: str, host: str) -> None:
        self.aggregator.add_account(account_id, gateway)
        self.aggregator.set_status(account_id, TraderStatus.CONNECTING, f"attaching to host {host}")
        self._hosts[account_id] = host

    def host_of(self, account_id: str) -> str:
        return self._hosts.get(account_id, "")

    # ------------------------------------------------------------------ connection

    async def connect(self, wait: float = 5.0) -> None:
        """Start reading (and reconnecting); wait up to ``wait`` s for the first snapshots."""
        self._task = asyncio.create_task(self._run(), name="console-redis")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._attached.wait(), wait)

    async def close(self) -> None:
        """Detach; the daemons and their traders keep running."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=5.0)
            if not done:
                log.error("redis: the console's reader did not stop within 5 s; leaving it")
        for task in list(self._sending):
            task.cancel()
        self._pending.fail_all("the console detached")

    @property
    def attached(self) -> bool:
        return self._attached.is_set()

    async def _run(self) -> None:
        while not self._closing:
            redis = connect(self.url, username=self.username, password=self._password)
            try:
                await redis.ping()
                self._redis = redis
                self._positions.clear()  # everything from fresh snapshots
                await self._read(redis)
            except Exception as exc:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                self._lost(f"{LINK_DOWN}: Redis at {self.where} ({exc or type(exc).__name__}); reconnecting")
            finally:
                self._redis = None
                with contextlib.suppress(Exception):
                    await redis.aclose()
            await asyncio.sleep(self.RETRY_SECONDS)

    async def _read(self, redis: Any) -> None:
        next_scan = 0.0
        reply_id = b"0-0"  # this console's own stream: everything in it is ours
        while not self._closing:  # a cancel that a library swallowed still ends it
            if time.monotonic() >= next_scan:
                next_scan = time.monotonic() + SCAN_SECONDS
                await self._scan(redis)
                if not self.attached and all(a in self._positions for a in self._live_accounts()):
                    self._attached.set()
            streams: dict[Any, Any] = {self._reply_key: reply_id}
            for account_id, pos in self._positions.items():
                streams[stream_key(account_id)] = pos.entry_id
            got = await redis.xread(streams, count=2000, block=int(SCAN_SECONDS * 1000))
            resync: set[str] = set()
            for key, entries in got or ():
                name = key.decode()
                if name == self._reply_key:
                    for entry_id, fields in entries:
                        reply_id = entry_id
                        self._on_reply(fields)
                    continue
                account_id = name.removeprefix(stream_key(""))
                for entry_id, fields in entries:
                    if not self._on_entry(account_id, entry_id, fields):
                        resync.add(account_id)
                        break
            for account_id in resync:
                self._positions.pop(account_id, None)
                await self._load(redis, account_id)

    def _live_accounts(self) -> list[str]:
        return [a for a, h in self._hosts.items() if h in self._beats]

    async def _scan(self, redis: Any) -> None:
        beats = await _beats(redis)
        now = time.time()
        for host, beat in beats.items():
            old = self._beats.get(host)
            self._seen[host] = now
            for account_id, _gateway in beat.accounts:
                if account_id not in self.aggregator.states and account_id not in self._unseen:
                    # the screens are laid out for the accounts there were at the start
                    self._unseen.add(account_id)
                    log.warning(
                        "redis: host %s publishes %s, not there when this console started: "
                        "attach again to see it",
                        host,
                        account_id,
                    )
                elif self._hosts.get(account_id) != host:
                    self._hosts[account_id] = host  # moved to another host (its daemon did)
            if old is None or old.run != beat.run:  # up again, or restarted: start afresh
                for account_id, _ in beat.accounts:
                    self._positions.pop(account_id, None)
        # a host without a heartbeat: one that lapsed since the last look, or one that died
        # while Redis was away (the link coming back finds no heartbeat of it at all)
        lapsed = set(self._hosts.values()) - set(beats) - self._said_down
        self._said_down = (self._said_down | lapsed) - set(beats)
        for host in lapsed:
            log.warning("redis: host %s down (no heartbeat)", host)
            seen = self._seen.get(host)
            since = datetime.fromtimestamp(seen).strftime("%H:%M:%S") if seen else "this console attached"
            why = (
                f"{HOST_DOWN}: {host} has sent no heartbeat since {since} (the host, or its link "
                f"to Redis, is down; its traders may trade on)"
            )
            for account_id, h in self._hosts.items():
                if h == host:
                    self._positions.pop(account_id, None)
                    self.aggregator.set_status(account_id, TraderStatus.DISCONNECTED, why)
        self._beats = beats
        for account_id in self._live_accounts():
            if account_id not in self._positions:
                await self._load(redis, account_id)

    async def _load(self, redis: Any, account_id: str) -> None:
        """Start the account from its snapshot (when its host's current run has written one)."""
        log.debug("redis: %s from its snapshot", account_id)
        beat = self._beats.get(self._hosts.get(account_id, ""))
        raw = await redis.hgetall(snapshot_key(account_id))
        if beat is None or not raw:
            return  # not yet: the next scan looks again
        try:  # another writer's hash refused here, not by dropping the link of every account
            run, entry_id = int(raw.get(b"run", b"0")), raw[b"id"]
            msg = decode_message(raw.get(b"m", b""))
            if not isinstance(msg.data, ConsoleState):
                raise ProtocolError(f"a '{msg.type}' message, not a console_state")
            if not _STREAM_ID.fullmatch(entry_id):
                raise ValueError(f"{entry_id[:40]!r} is no stream id")
        except (ProtocolError, ValueError, KeyError) as exc:
            why = "it has no stream id" if isinstance(exc, KeyError) else str(exc)
            log.error("redis: %s snapshot unreadable (left waiting): %s", account_id, why)
            return
        if run != beat.run:
            return  # not yet: the next scan looks again
        view: ConsoleState = msg.data
        agg = self.aggregator
        agg.reset(account_id)
        if view.snapshot is not None:
            agg.apply(account_id, Message.new(type="snapshot", account_id=account_id, data=view.snapshot))
        for entry in view.logs:
            agg.apply(account_id, Message.new(type="log", account_id=account_id, data=entry))
        self._apply_status(account_id, view.trader)
        self._positions[account_id] = _Position(entry_id, msg.seq, beat.run)

    def _on_entry(self, account_id: str, entry_id: bytes, fields: dict[bytes, bytes]) -> bool:
        """Fold one stream entry in; False when it is not the next one (resync)."""
        pos = self._positions.get(account_id)
        if pos is None:
            return True
        try:
            msg = decode_message(fields.get(b"m", b""))
        except ProtocolError as exc:
            # passed over (another writer's): the next snapshot would be read from before it,
            # again and again; a real entry it stood for shows as a gap in seq at the next one
            log.error("redis: %s stream entry %s unreadable (passed over): %s", account_id, entry_id, exc)
            pos.entry_id = entry_id
            return True
        pos.entry_id = entry_id
        if msg.seq <= pos.seq:
            return True  # the snapshot holds it already
        if msg.seq != pos.seq + 1:
            log.info(
                "redis: %s stream jumped from %d to %d; from the next snapshot", account_id, pos.seq, msg.seq
            )
            return False
        pos.seq = msg.seq
        if msg.type == "trader_status":
            self._apply_status(account_id, msg.data)
        else:
            self.aggregator.apply(account_id, msg)
        return True

    def _on_reply(self, fields: dict[bytes, bytes]) -> None:
        try:
            msg = decode_message(fields.get(b"m", b""))
        except ProtocolError as exc:
            log.error("redis: unreadable reply: %s", exc)
            return
        if isinstance(msg.data, Reply):
            self._pending.resolve(msg.req_id, msg.data)

    def _apply_status(self, account_id: str, update: TraderStatusUpdate) -> None:
        self.aggregator.set_trader(account_id, update.status, update.message, update.pid, update.restarts)

    def _lost(self, why: str) -> None:
        self._attached.clear()
        self._down = why
        self._beats.clear()
        self._said_down.clear()  # every account says "link down" now; back, each host is looked at again
        self._positions.clear()
        self._pending.fail_all(LINK_DOWN)
        for account_id, state in self.aggregator.states.items():
            if state.status is not TraderStatus.DISCONNECTED or state.status_message != why:
                self.aggregator.set_status(account_id, TraderStatus.DISCONNECTED, why)

    # ------------------------------------------------------------------ commands

    async def _request(
        self, account_id: str, msg_type: RequestType, data: Any, timeout: float | None = None
    ) -> Reply:
        redis = self._redis
        if redis is None:
            return Reply(ok=False, error=f"{self._down}; nothing was sent")
        host = self._hosts.get(account_id)
        if host is None:
            known = ", ".join(self._hosts) or "none"
            return Reply(ok=False, error=f"no account '{account_id}' on {self.where} (known: {known})")
        if host not in self._beats:
            return Reply(ok=False, error=f"{HOST_DOWN}: {host} (no heartbeat); nothing was sent")
        # no reply by the deadline (and the time a reply takes back): it may have run, or not
        limit = timeout or self.deadline + REPLY_GRACE

        def send(req_id: int) -> None:
            task = asyncio.create_task(self._send(redis, host, account_id, msg_type, data, req_id))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

        return await self._pending.request(
            send, timeout=limit, unanswered=f"host {host} did not answer within {limit:g} s"
        )

    async def _send(
        self, redis: Any, host: str, account_id: str, msg_type: RequestType, data: Any, req_id: int
    ) -> None:
        payload = encode_message(msg_type, data, account_id=account_id, req_id=req_id)
        fields = {"m": payload, "deadline": repr(time.time() + self.deadline), "reply": self._reply_key}
        try:
            await redis.xadd(command_key(host), fields, maxlen=COMMAND_MAXLEN, approximate=True)
        except Exception as exc:
            text = str(exc)
            if "NOPERM" in text or "no permissions" in text:
                error = (
                    f"refused by Redis ({text}): this console's Redis user may only watch; nothing was sent"
                )
            elif (
                isinstance(exc, (ConnectionError, OSError, TimeoutError))
                or "Connection" in type(exc).__name__
            ):
                error = f"{LINK_DOWN} while sending: {OUTCOME_UNKNOWN}"
            else:
                error = f"refused by Redis ({text}); nothing was sent"
            self._pending.resolve(req_id, Reply(ok=False, error=error))

    # ------------------------------------------------------------------ ConsoleClient

    SLOW_REQUEST_TIMEOUT = 20.0  # a report read from the database; quotes waited for

    def _reverse_timeout(self, timeout: float) -> float:
        # the trader may take up to its timeout once it started (before the deadline)
        return self.deadline + timeout + REPLY_GRACE

    async def kill_switch(
        self, account_id: str | None = None, *, keep_protective: bool = False
    ) -> dict[str, Reply]:
        """Each account on its own host's command stream, all at once."""
        req = KillRequest(keep_protective=keep_protective)
        targets = [account_id] if account_id else self.account_ids

        async def one(aid: str) -> Reply:
            reply = await self._request(aid, "kill_req", req, timeout=60.0)
            if isinstance(reply.result, dict) and aid in reply.result:
                return msgspec.convert(reply.result[aid], Reply)
            return reply

        replies = await asyncio.gather(*(one(a) for a in targets))
        return dict(zip(targets, replies, strict=True))


async def _beats(redis: Any) -> dict[str, HostBeat]:
    """Every live host's heartbeat (a lapsed one is gone: its key had a TTL)."""
    keys = [key async for key in redis.scan_iter(match=host_key("*"), count=1000)]
    if not keys:
        return {}
    out: dict[str, HostBeat] = {}
    for raw in await redis.mget(keys):
        if raw is None:
            continue
        try:
            beat = decode_beat(raw)
        except msgspec.MsgspecError as exc:
            log.error("redis: unreadable heartbeat: %s", exc)
            continue
        out[beat.host] = beat
    return out
